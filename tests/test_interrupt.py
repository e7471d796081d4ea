"""A run stopped by the user (SIGINT) or the system (SIGTERM) leaves no file at the output path."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from clips import make_clip
from conftest import no_temp_files, sha


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_during_render_leaves_nothing(tmp_path: Path, reference: Path, sig: signal.Signals) -> None:
    src = make_clip(tmp_path / "long.mp4", frames=400, size=(320, 240), audio=True)
    before = sha(src)
    out = tmp_path / "out.mov"  # ProRes: slow enough to be caught mid-render
    proc = subprocess.Popen(
        [sys.executable, "-m", "grade", str(src), "--look", str(reference), "--mode", "fast", "-o", str(out), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(tmp_path.glob(".out.grade-tmp-*")):
        time.sleep(0.05)  # wait until the temporary output exists: rendering has begun
    assert proc.poll() is None, "finished before it could be interrupted"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("grade: error: interrupted")
    assert "Traceback" not in err
    assert not out.exists()
    assert no_temp_files(tmp_path)
    assert sha(src) == before


def _limit_file_size(limit: int):
    import resource

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.parametrize("limit", [8_000, 40_000])
def test_disk_full_during_encode_publishes_nothing(tmp_path: Path, reference: Path, limit: int) -> None:
    src = make_clip(tmp_path / "clip.mp4", frames=60, size=(320, 240), audio=True)
    out = tmp_path / "out.mp4"
    proc = subprocess.run(
        [sys.executable, "-m", "grade", str(src), "--look", str(reference), "--mode", "fast", "-o", str(out), "-q"],
        capture_output=True,
        text=True,
        timeout=120,  # a writer that dies must not leave the renderer waiting forever
        preexec_fn=_limit_file_size(limit),
    )
    assert proc.returncode == 3, proc.stderr
    assert "too large" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()
    assert no_temp_files(tmp_path)


def test_an_interrupt_does_not_cut_the_wait_for_the_render_threads_short() -> None:
    """The decode and encode stages may still be inside FFmpeg with the containers when an interruption
    arrives; one that comes while the render waits for them must not let it close the containers under
    them (that crashed the process with SIGSEGV: on Python 3.11 an interrupted ``join()`` marks a running
    thread as stopped)."""
    import concurrent.futures
    import os
    import threading

    from grade.io.encode import _settle, _Worker

    done = threading.Event()
    main = threading.main_thread().ident

    def waiting_in_settle() -> bool:
        frame = sys._current_frames().get(main)
        while frame is not None and frame.f_code is not _settle.__code__:
            frame = frame.f_back
        return frame is not None

    def busy() -> None:  # a stage still running when the render starts waiting for it
        while not waiting_in_settle():
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)  # the interruption arrives during the wait
        time.sleep(0.5)
        done.set()

    worker = _Worker(busy, threading.Event())
    pool = concurrent.futures.ThreadPoolExecutor(1)
    graded = pool.submit(done.wait, 30)  # a frame still being graded on the pool
    worker.start()
    settled, again = _settle([worker], [graded])
    assert settled and done.is_set() and graded.done()
    assert isinstance(again, KeyboardInterrupt)  # kept, for the caller to raise once the stages are done
    pool.shutdown()
