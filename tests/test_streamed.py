"""One video in fast mode: shots are analysed and fitted in a background thread while the render runs.

The result must be the one of analysing first, fitting, then rendering (the path several inputs take).
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from clips import make_clip, read_all

from grade.errors import InputError
from grade.pipeline import GradeOptions, ShotGrade, grade_file, grade_files
from grade.render import ShotFeed, Stopped
from grade.shots import detect_shots


def test_streamed_render_equals_analyse_then_render(tmp_path: Path, reference: Path) -> None:
    clip = make_clip(tmp_path / "cut.mp4", frames=40, cut_at=22)
    twin = tmp_path / "twin.mp4"
    shutil.copyfile(clip, twin)
    # FFV1: lossless and deterministic (x264 is not bit-exact from run to run on a loaded machine)
    options = GradeOptions(mode="fast", codec="ffv1")
    streamed = grade_file(clip, reference, options, output=tmp_path / "streamed.mkv")
    # two inputs take the sequential path: analyse both, fit every shot, then render
    sequential, _ = grade_files(
        [clip, twin], reference, options, outputs=[tmp_path / "sequential.mkv", tmp_path / "twin.graded.mkv"]
    )
    assert [(s.start, s.end) for s in streamed.shots] == [(0, 22), (22, 40)]
    assert streamed.shots == sequential.shots == detect_shots(clip).shots
    assert streamed.pix_fmt == "yuv420p"  # graded in YCbCr directly, as an .mp4 would be
    a, _ = read_all(tmp_path / "streamed.mkv")
    b, _ = read_all(tmp_path / "sequential.mkv")
    src, _ = read_all(clip)
    assert len(a) == len(b) == len(src) == 40
    for x, y in zip(a, b):
        assert np.array_equal(x, y)
    assert {"analyse", "fit", "render"} <= set(streamed.seconds)
    assert streamed.frames == 40 and streamed.streams_copied == sequential.streams_copied


def test_feed_prepares_at_most_one_shot_ahead_of_the_render() -> None:
    feed = ShotFeed(ahead=1)
    prepared: list[int] = []
    peak = [0]

    def produce() -> None:
        for n in range(6):
            feed.add(10 * (n + 1), ShotGrade.__new__(ShotGrade), lambda g, n=n: prepared.append(n))
        feed.close()

    worker = threading.Thread(target=produce)
    worker.start()
    for index in range(60):
        shot, _ = feed.grade_for(index)
        assert shot == index // 10
        peak[0] = max(peak[0], len(prepared) - shot)
        time.sleep(0.001)
    worker.join(5)
    assert not worker.is_alive() and prepared == list(range(6))
    assert peak[0] <= 2  # the shot being rendered and the next one
    assert feed.grade_for(75)[0] == 5  # frames past the last analysed one take the last shot's grade


def test_an_analysis_error_reaches_the_render_as_itself() -> None:
    feed = ShotFeed()
    feed.close(InputError("cannot decode video in x.mp4: broken"))
    with pytest.raises(InputError, match="cannot decode"):
        feed.grade_for(0)
    empty = ShotFeed()
    empty.close()
    with pytest.raises(InputError, match="no decodable video frame"):
        empty.grade_for(0)


def test_feed_after_the_render_ends() -> None:
    """A complete render lets the analysis finish without waiting or building tables; a failed one stops it."""
    done = ShotFeed(ahead=0)
    built: list[int] = []
    done.add(10, ShotGrade.__new__(ShotGrade), lambda g: built.append(1))
    done.end_render(True)
    for n in range(3):  # far beyond the render: no wait for room, no table
        done.add(20 + n, ShotGrade.__new__(ShotGrade), lambda g: built.append(1))
    assert built == [1] and len(done.grades) == 4
    failed = ShotFeed()
    failed.end_render(False)
    with pytest.raises(Stopped):
        failed.add(10, ShotGrade.__new__(ShotGrade), lambda g: None)
