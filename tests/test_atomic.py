"""Outputs appear complete or not at all; sources are never touched."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from conftest import no_temp_files, sha

from grade.errors import OutputError
from grade.io.atomic import atomic_output, check_output_path
from grade.io.video import probe, render_video


def test_failure_mid_render_leaves_nothing(clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    before = sha(clip)

    def explode(i: int, px: np.ndarray) -> np.ndarray:
        if i == 4:
            raise KeyboardInterrupt
        return px

    with pytest.raises(KeyboardInterrupt), atomic_output(out, force=False) as tmp:
        render_video(clip, tmp, probe(clip), explode)
    assert not out.exists()
    assert no_temp_files(tmp_path)
    assert sha(clip) == before


def test_existing_output_needs_force(clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    out.write_bytes(b"precious")
    with pytest.raises(OutputError, match="exists"):
        check_output_path(out, [clip], force=False)
    check_output_path(out, [clip], force=True)
    with atomic_output(out, force=True) as tmp:
        tmp.write_bytes(b"new")
    assert out.read_bytes() == b"new"


def test_output_equal_to_input_is_refused(clip: Path) -> None:
    with pytest.raises(OutputError, match="input file itself"):
        check_output_path(clip, [clip], force=True)
    link = clip.with_name("alias.mp4")
    os.link(clip, link)
    with pytest.raises(OutputError, match="input file itself"):
        check_output_path(link, [clip], force=True)


def test_race_between_two_writers_keeps_the_first(tmp_path: Path) -> None:
    out = tmp_path / "o.bin"
    with pytest.raises(OutputError, match="meanwhile"), atomic_output(out, force=False) as tmp:
        tmp.write_bytes(b"second")
        out.write_bytes(b"first")  # another run finished first
    assert out.read_bytes() == b"first"
    assert no_temp_files(tmp_path)


def test_missing_or_readonly_folder(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="does not exist"):
        check_output_path(tmp_path / "nope" / "o.mp4", [], force=False)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as a user that ignores permissions")
        with pytest.raises(OutputError, match="not writable"):
            check_output_path(ro / "o.mp4", [], force=False)
    finally:
        ro.chmod(0o700)


def test_a_killed_writer_not_yet_reaped_leaves_a_stale_temp(tmp_path: Path) -> None:
    """A temporary file whose writer is a zombie (killed, its parent gone or not waiting: a lost Ray node's
    worker) is stale; a live writer's is kept."""
    import subprocess
    import time

    from grade.io.atomic import TMP_MARK, remove_stale_temps

    out = tmp_path / "clip.mp4"
    child = subprocess.Popen(["sleep", "30"])
    live = tmp_path / f".clip{TMP_MARK}{child.pid}-aaaa.mp4"
    live.write_bytes(b"x")
    assert remove_stale_temps(out) == [] and live.exists()  # its writer lives
    child.kill()
    time.sleep(0.2)  # dead, not reaped: a zombie until wait()
    assert remove_stale_temps(out) == [live] and not live.exists()
    child.wait()
    other = tmp_path / f".clip{TMP_MARK}{os.getpid()}-bbbb.mp4"  # this process's own: kept unless any_writer
    other.write_bytes(b"x")
    assert remove_stale_temps(out) == [] and remove_stale_temps(out, any_writer=True) == [other]
