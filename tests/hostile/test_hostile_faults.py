"""Faults from outside, in real child processes: signals during render and training, a full disk,
two runs writing one output, and decompression bombs measured for the memory they cost.

Outcome for each: a one-line error (or a clean kill), the source byte-identical, nothing at the
output path unless complete and valid, no temporary file left (a run killed outright cannot clean
up: its temporary file is removed by the next run that writes the same output), no hang.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest
from clips import cli_args, make_clip, make_still
from conftest import no_temp_files, sha

from grade.cli import main
from grade.io.atomic import TMP_MARK

from . import media as M

CHILD = Path(__file__).with_name("child.py")


def spawn(tmp: Path, args: list, seconds: float = 0.05, **kw) -> tuple[subprocess.Popen, Path]:
    """The command line in a child that touches ``markers/render`` / ``markers/train`` as it goes."""
    markers = tmp / "markers"
    markers.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(CHILD), str(markers), str(seconds), *[str(a) for a in args]]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    return proc, markers


def wait_for(marker: Path, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not marker.exists():
        assert proc.poll() is None, f"finished before {marker.name}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"no {marker.name} after {timeout} s"
        time.sleep(0.02)


def _frames(path: Path) -> int:
    with av.open(str(path)) as box:
        return sum(1 for _ in box.decode(video=0))


def one_error_line(err: str, text: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("grade: error: ") and text in lines[0], err
    assert "Traceback" not in err


@pytest.fixture
def long_clip(tmp_path: Path) -> Path:
    return make_clip(tmp_path / "long.mp4", frames=40)


def test_sigint_during_render(tmp_path: Path, long_clip: Path, reference: Path) -> None:
    before, out = sha(long_clip), tmp_path / "out.mp4"
    proc, markers = spawn(tmp_path, [long_clip, "--look", reference, "-o", out, "-q"])
    wait_for(markers / "render", proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    one_error_line(err, "interrupted")
    assert not out.exists() and no_temp_files(tmp_path) and sha(long_clip) == before


def test_sigkill_during_render_then_the_next_run_cleans_up(tmp_path: Path, long_clip: Path, reference: Path) -> None:
    before, out = sha(long_clip), tmp_path / "out.mp4"
    proc, markers = spawn(tmp_path, [long_clip, "--look", reference, "-o", out, "-q"])
    wait_for(markers / "render", proc)
    proc.kill()
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists() and sha(long_clip) == before
    stale = list(tmp_path.glob(f".out{TMP_MARK}*"))
    assert len(stale) == 1  # killed outright: nothing could remove it ...
    assert main(cli_args([long_clip, "--look", reference, "-o", out, "-q"])) == 0
    assert _frames(out) == 40 and no_temp_files(tmp_path)  # ... until the next run for that output


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_signal_during_training(tmp_path: Path, reference: Path, sig: signal.Signals) -> None:
    src = make_clip(tmp_path / "shot.mp4", frames=6)
    before, out = sha(src), tmp_path / "out.mp4"
    args = [src, "--look", reference, "-o", out, "--mode", "learned", "--steps", "400", "-q"]
    args += ["--save-preset", "night", "--library", tmp_path / "library", "--preview", tmp_path / "sheet.png"]
    proc, markers = spawn(tmp_path, args)
    wait_for(markers / "train", proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    if sig == signal.SIGINT:
        assert proc.returncode == 130
        one_error_line(err, "interrupted")
    else:
        assert proc.returncode == -signal.SIGKILL
    # no output, preview, preset or temporary file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["markers", "reference.png", "shot.mp4"]
    assert sha(src) == before


def _limit_file_size(limit: int):
    import resource

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.parametrize(
    "source, output, limit",
    [("clip.mp4", "out.mov", 20_000), ("photo.png", "out.png", 2_000), ("clip.mp4", "out.mkv", 3_000)],
)
def test_disk_full(tmp_path: Path, reference: Path, source: str, output: str, limit: int) -> None:
    src = tmp_path / source
    if source.endswith(".png"):
        make_still(src, size=(96, 72), scene=0, sixteen_bit=True)
    else:
        make_clip(src, frames=12, audio=True)
    before, out = sha(src), tmp_path / output
    proc = subprocess.run(
        [sys.executable, "-m", "grade", str(src), "--look", str(reference), "-o", str(out), "-q"],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_limit_file_size(limit),
    )
    assert proc.returncode == 3, proc.stderr
    one_error_line(proc.stderr, "too large")
    assert output in proc.stderr and TMP_MARK not in proc.stderr
    assert not out.exists() and no_temp_files(tmp_path) and sha(src) == before


@pytest.mark.slow
@pytest.mark.parametrize("force", [False, True])
def test_two_runs_write_the_same_output(tmp_path: Path, reference: Path, force: bool) -> None:
    src = make_clip(tmp_path / "shot.mp4", frames=24)
    out = tmp_path / "out.mp4"
    args = [src, "--look", reference, "-o", out, "-q", *(["--force"] if force else [])]
    procs = [spawn(tmp_path / f"run{i}", args, seconds=0.02)[0] for i in range(2)]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    if force:
        assert codes == [0, 0], results  # the last one wins, whole
    else:
        assert codes == [0, 3], results  # one writes it, the other is told it exists
        one_error_line(next(err for code, err in results if code == 3), "exists")
    assert _frames(out) == 24 and no_temp_files(tmp_path)


def test_decompression_bombs_cost_no_memory(tmp_path: Path, reference: Path) -> None:
    """Forged headers (a 192 M pixel video frame, 20000x20000 PNG and TIFF references) are refused
    before anything that size is allocated: the peak memory of the process barely moves."""
    huge = M.huge_frames_in_mov(tmp_path / "huge.mov")
    png = tmp_path / "bomb.png"
    png.write_bytes(M.forged_png(20000, 20000))
    tif = M.forged_tiff(tmp_path / "bomb.tif", 20000, 20000)
    code = (
        "import resource, sys\n"
        "from grade.cli import main\n"
        "import torch\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        f"codes = [main([{str(huge)!r}, '--look', {str(reference)!r}, '--mode', 'fast', '-q']),\n"
        f"         main([{str(reference)!r}, '--look', {str(png)!r}, '-o', {str(tmp_path / 'a.png')!r}, '-q']),\n"
        f"         main([{str(reference)!r}, '--look', {str(tif)!r}, '-o', {str(tmp_path / 'b.png')!r}, '-q'])]\n"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(codes, (peak - base) // 1024)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    codes, grown_mib = proc.stdout.rsplit("]", 1)
    assert codes.strip() == "[2, 2, 2", proc.stdout + proc.stderr
    assert int(grown_mib) < 150, f"peak memory grew by {grown_mib} MiB"
    assert len(proc.stderr.strip().splitlines()) == 3 and "Traceback" not in proc.stderr
    assert no_temp_files(tmp_path)


@pytest.mark.parametrize("error", [MemoryError, RuntimeError])
def test_out_of_memory_and_internal_errors_are_one_line(
    capsys, monkeypatch, clip: Path, reference: Path, error
) -> None:
    """Out of memory names only options that exist; a bug is one line too (the traceback with --debug)."""

    def fail(*a, **kw):
        raise error("boom\nsecond line")

    monkeypatch.setattr("grade.pipeline.grade_files", fail)
    code = main([str(clip), "--look", str(reference), "-q"])
    err = capsys.readouterr().err
    assert code == 1
    one_error_line(err, "out of memory" if error is MemoryError else "internal error: RuntimeError: boom second line")
    assert "--working-side" not in err and "jobs" not in err
    assert "--mode fast" in err or error is RuntimeError
