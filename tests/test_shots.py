"""Cut detection and key frames on real encoded clips."""

from __future__ import annotations

from pathlib import Path

import pytest
from clips import make_clip

from grade.shots import ShotSettings, detect_shots, timecode


def test_a_hard_cut_splits_the_clip(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "cut.mp4", frames=40, cut_at=22, audio=False)
    shots = detect_shots(src)
    assert [(s.start, s.end) for s in shots.shots] == [(0, 22), (22, 40)]
    for s, key in zip(shots.shots, shots.keys):
        assert s.start <= s.key_frame < s.end
        assert key.shape[2] == 3 and key.dtype.name == "uint8"
    assert shots.shots[1].start_tc == "00:00:00:22"


def test_a_continuous_shot_has_no_cut(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "one.mp4", frames=30, audio=False)
    shots = detect_shots(src)
    assert len(shots.shots) == 1 and shots.frames == 30


def test_cuts_closer_than_min_shot_are_merged(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "cut.mp4", frames=30, cut_at=5, audio=False)
    assert len(detect_shots(src, settings=ShotSettings(min_shot=10)).shots) == 1


def test_long_shots_keep_bounded_candidates(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "long.mp4", frames=120, audio=False)
    shots = detect_shots(src, settings=ShotSettings(candidates=3))
    assert len(shots.shots) == 1 and 0 <= shots.shots[0].key_frame < 120


@pytest.mark.parametrize(
    ("seconds", "fps", "tc"), [(0, 24, "00:00:00:00"), (61.5, 24, "00:01:01:12"), (3600, 25, "01:00:00:00")]
)
def test_timecode(seconds: float, fps: float, tc: str) -> None:
    assert timecode(seconds, fps) == tc


def test_each_key_frame_comes_with_the_frame_after_it(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "cut.mp4", frames=40, cut_at=22, audio=False)
    assert detect_shots(src).neighbours == [None, None]  # kept only when asked for
    shots = detect_shots(src, keep_next=True)
    assert len(shots.neighbours) == len(shots.keys) == 2
    for shot, key, nxt in zip(shots.shots, shots.keys, shots.neighbours):
        if shot.key_frame + 1 < shot.end:
            assert nxt is not None and nxt.shape == key.shape and not (nxt == key).all()  # the content moves
        else:
            assert nxt is None  # the next frame belongs to another shot
