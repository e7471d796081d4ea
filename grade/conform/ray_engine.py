"""``grade conform --engine ray``: the conform's events rendered as Ray tasks, on one machine or a cluster.

The driver (the ``grade conform`` process) plans and fingerprints as for a local run; each scene's look is
trained as one Ray task (:mod:`grade.conform.ray_train`) and each event renders as one. Each scene's look
travels to the workers as the BYTES of its ``.cube`` or ``.gpreset`` file through Ray's object store (a
worker writes them to a temporary file and reads them with :func:`grade.library.read_look`, which verifies a
preset: no user file is ever unpickled). Each event is one task (``num_cpus=1``, retried ``retries`` times
when its worker dies) that writes its clip with :func:`grade.io.atomic.atomic_output` into the output
folder, which every node must see at the same path (shared storage; checked by a probe task at start). The
driver records every finished event in the job file (``finish``), so the job file stays the one source of
truth and a re-run after a kill resumes. An event whose task fails (bad media) is reported ``failed``; the
others finish.

``--gpus-per-task N`` reserves N GPUs per render task (Ray's ``num_gpus``; refused in one line when the
cluster has fewer, where the tasks would otherwise wait forever); a task given a GPU runs the look's
coefficient network with CUDA (``ray.get_gpu_ids()``), one without runs on its CPU. ``--transfer
object-store`` is for clusters without shared storage (scene looks are then trained on the driver): no probe; each
media file travels once to the tasks as bytes through the object store (``ray.put``, at most
``transfer_limit`` bytes per file), and each task returns its graded clip's bytes, which the driver
publishes atomically at the final path.

Ray is optional (``pip install "grade[ray]"``): it is imported only here, when the engine is used.

Test hooks, not for users: ``GRADE_RAY_TEST_CRASH_ONCE=<marker path>`` in the driver's environment makes the
first task that renders a frame create the marker and kill its own worker process (``os._exit``) mid-event,
to show that a lost worker is retried (``max_retries``) and leaves no half-written clip.
``GRADE_RAY_TEST_KILL_NODE=<marker path>`` does the same on the first node that is not the head, and kills
that whole node first (its raylet, the worker's parent): a node lost mid-event.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from grade.errors import GradeError, InputError
from grade.io.atomic import atomic_output, remove_stale_temps

CRASH_HOOK = "GRADE_RAY_TEST_CRASH_ONCE"  # test hooks (see the module docstring)
NODE_HOOK = "GRADE_RAY_TEST_KILL_NODE"
PROBE_PREFIX = ".grade-ray-probe-"

_RAY_GRADES: dict = {}  # in a worker process: (look digest, strength, stabilise, regional) -> ShotGrade


def _import_ray():
    try:
        import ray
    except ImportError:
        raise InputError('--engine ray needs Ray: pip install "grade[ray]"') from None
    return ray


def _start(ray, address: str | None) -> bool:
    """Connect to the cluster at ``address``, or start a local instance; True if this call started it."""
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = dict(
        include_dashboard=False, log_to_driver=False, ignore_reinit_error=True, logging_level=logging.ERROR
    )  # Ray's start-up lines stay off the terminal (grade's own stderr is for warnings and errors)
    if not address:
        kwargs["num_cpus"] = os.cpu_count() or 1
    try:
        with _quiet_stderr() if address else contextlib.nullcontext():
            ray.init(address=address or None, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        if _refused_token(e):
            raise InputError(
                f"--engine ray: {where} refused this machine's token (a cluster started with token "
                "authentication: set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH as on its nodes)"
            ) from None
        raise InputError(f"--engine ray: cannot start or reach {where}: {' '.join(str(e).split())}") from None
    return True


@contextlib.contextmanager
def _quiet_stderr():
    """File descriptor 2 to a discarded temporary file: while connecting to a cluster, Ray's core logs a
    warning a second (from C++, below Python's logging) on every failed try; the failure is one line of ours."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def _refused_token(e: BaseException | None) -> bool:
    """Whether a failed ``ray.init`` (or what caused it) was the cluster refusing the auth token."""
    while e is not None:
        if "InvalidAuthToken" in str(e) or type(e).__name__ == "AuthenticationError":
            return True
        e = e.__cause__ or e.__context__
    return False


# ---- the tasks (plain functions, wrapped with ray.remote by the driver: this module imports without Ray)


def _probe_task(folder: str, name: str, token: str) -> str:
    """Worker side of the shared-storage probe: write ``token`` to ``folder/name``; return the node's name."""
    import socket

    with open(os.path.join(folder, name), "w", encoding="ascii") as f:
        f.write(token)
    return socket.gethostname()


class _CrashOnce:
    """Test hook: a ShotGrade stand-in that kills its worker process on the 3rd frame, once per marker;
    with ``node``, only on a node that is not the head, and that node's raylet (the worker's parent) too."""

    def __init__(self, grade, marker: str, node: bool = False) -> None:
        self._grade, self._marker, self._node, self._frames = grade, marker, node, 0

    def __getattr__(self, name: str):  # the rest of a ShotGrade's interface (black, learned, lut, release, ...)
        return getattr(self._grade, name)

    def prepare(self, *args, **kwargs):
        return self._grade.prepare(*args, **kwargs)

    def grade(self, *args, **kwargs):
        self._frames += 1
        if self._frames == 3 and not (self._node and _on_head()):
            try:
                os.close(os.open(self._marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                pass  # already crashed once: render normally
            else:
                if self._node:
                    os.kill(os.getppid(), signal.SIGKILL)  # the node's raylet: the whole node is lost
                os._exit(1)  # the worker dies mid-event, its temporary clip half-written
        return self._grade.grade(*args, **kwargs)


def _on_head() -> bool:
    """Whether this Ray task runs on the cluster's head node."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    return any(n["NodeID"] == node and "node:__internal_head__" in n["Resources"] for n in ray.nodes())


def _task_device():
    """The torch device of this task: CUDA when Ray gave it a GPU (``ray.get_gpu_ids()``; Ray sets
    ``CUDA_VISIBLE_DEVICES`` to it), else the CPU."""
    import ray
    import torch

    if ray.get_gpu_ids() and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def _on_device(grade, device) -> None:
    """Run a learned look's coefficient network on ``device`` (the frame's other work stays on the CPU:
    inputs are moved there and the coefficients back). Per-material looks and LUTs are unchanged."""
    import torch

    from grade.model.material import MaterialMaps

    learned = getattr(grade, "learned", None)
    if device.type == "cpu" or learned is None or isinstance(learned.net, MaterialMaps):
        return

    class NetOn(torch.nn.Module):
        def __init__(self, net) -> None:
            super().__init__()
            self.inner = net.to(device)

        def forward(self, x):
            return self.inner(x.to(device)).cpu()

    learned.net = NetOn(learned.net).eval()


def _look_grade(kind: str, look: bytes, strength: float, stabilise: bool, regional: bool, device=None):
    """The scene's ShotGrade from the bytes of its ``.cube``/``.gpreset`` (built once per worker and look)."""
    from grade.library import read_look
    from grade.presets import SUFFIX
    from grade.shotgrade import preset_grade

    key = (hashlib.sha256(look).hexdigest(), strength, stabilise, regional, str(device))
    if key not in _RAY_GRADES:
        for g in _RAY_GRADES.values():
            g.release()
        _RAY_GRADES.clear()
        with tempfile.TemporaryDirectory(prefix="grade-ray-look-") as d:
            path = Path(d) / ("look.cube" if kind == "cube" else f"look{SUFFIX}")
            path.write_bytes(look)
            _RAY_GRADES[key] = preset_grade(read_look(path), strength, stabilise, regional)
        if device is not None:
            _on_device(_RAY_GRADES[key], device)
    return _RAY_GRADES[key]


def _render_task(
    kind: str,
    look: bytes,
    media: str,
    output: str,
    first: int,
    end: int,
    cdl,
    options_json: str,
    input_space: str | None,
    preset_working: str | None,
    crash_marker: str | None,
    media_bytes: bytes | None = None,
    crash_node: bool = False,
) -> tuple[int, float, bytes | None]:
    """One event as a Ray task: render ``media[first:end)`` through the scene's look into ``output``.

    ``media`` and ``output`` are paths every node sees (``--transfer shared``: the clip is written at
    ``output``); with ``media_bytes`` (``object-store``) the media file's bytes are written under its
    own name in a temporary folder of the worker, the clip rendered there and its bytes returned for the
    driver to publish. Returns (frames, seconds, the clip's bytes or None).
    """
    from grade.conform.render import render_event
    from grade.options import GradeOptions

    t = time.perf_counter()
    device = _task_device()
    options = GradeOptions.model_validate_json(options_json).model_copy(update={"device": device.type})
    grade = _look_grade(kind, look, options.strength, options.stabilise, options.regional, device)
    if crash_marker:
        grade = _CrashOnce(grade, crash_marker, crash_node)
    if media_bytes is None:
        frames = render_event(grade, Path(media), Path(output), first, end, cdl, options, input_space, preset_working)
        return frames, time.perf_counter() - t, None
    with tempfile.TemporaryDirectory(prefix="grade-ray-event-") as d:
        source, clip = Path(d) / "media" / Path(media).name, Path(d) / Path(output).name
        source.parent.mkdir()
        source.write_bytes(media_bytes)
        frames = render_event(grade, source, clip, first, end, cdl, options, input_space, preset_working)
        return frames, time.perf_counter() - t, clip.read_bytes()


# ---- the driver


def probe_shared_storage(folder: Path, timeout: float = 120.0) -> str:
    """Run one Ray task that writes a probe file in ``folder`` and read it back here.

    Returns the worker node's host name. Ray must be initialised.

    Raises:
        InputError: the workers cannot write there, or what they wrote is not visible to this process.
    """
    ray = _import_ray()
    folder = Path(folder).absolute()
    name, token = f"{PROBE_PREFIX}{secrets.token_hex(6)}", secrets.token_hex(16)
    error = InputError(f"the output folder {folder} is not visible to the Ray workers (shared storage needed)")
    try:
        probe = ray.remote(num_cpus=1, max_retries=0)(_probe_task)
        node = ray.get(probe.remote(str(folder), name, token), timeout=timeout)
    except ray.exceptions.RayTaskError:  # the worker could not write there
        raise error from None
    except ray.exceptions.GetTimeoutError:
        raise InputError(f"--engine ray: no Ray worker ran the storage probe within {timeout:.0f} s") from None
    path = folder / name
    try:
        seen = path.read_text(encoding="ascii")
    except OSError:
        raise error from None
    finally:
        path.unlink(missing_ok=True)
    if seen != token:
        raise error
    return node


def check_gpus(ray, gpus: float) -> None:
    """Refuse ``--gpus-per-task`` on a cluster without that many GPUs (its tasks would wait forever).

    Raises:
        InputError: the cluster's ``GPU`` resource is below ``gpus``.
    """
    have = float(ray.cluster_resources().get("GPU", 0))
    if have < gpus:
        what = "has no GPU" if have == 0 else f"has {have:g} GPU{'s' if have != 1 else ''}"
        raise InputError(f"--gpus-per-task {gpus:g}: the Ray cluster {what} (use --gpus-per-task 0 to render on CPUs)")


def check_transfer_sizes(pending: list, limit: int) -> None:
    """``--transfer object-store``: every event's media file at most ``limit`` bytes.

    Raises:
        InputError: the first event whose media is larger (named, with both sizes).
    """
    for p in pending:
        size = Path(p.media.path).stat().st_size
        if size > limit:
            raise InputError(
                f"event {p.event.number} {p.event.name}: media {p.media.path} is {_size(size)}, above the "
                f"object-store transfer limit of {_size(limit)} (raise --transfer-limit, or use shared storage)"
            )


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _failure(ray, e: BaseException) -> str:
    """One line for a failed event task: the grade error's own message, else the exception's."""
    cause = getattr(e, "cause", None)
    if isinstance(cause, GradeError):
        return str(cause)
    if isinstance(e, ray.exceptions.WorkerCrashedError | ray.exceptions.NodeDiedError):
        return "its Ray worker died (after every retry)"
    if cause is not None:
        return f"{type(cause).__name__}: {' '.join(str(cause).split())}"
    return f"{type(e).__name__}: {' '.join(str(e).split())}"


def render_ray(
    pending: list,
    specs: dict,
    reports: list,
    settings,
    options,
    finish,
    task,
    working: dict | None = None,
    address: str | None = None,
    retries: int = 2,
) -> None:
    """``--engine ray``: events rendered as Ray tasks; the job file is written by this process only.

    ``pending`` are the Planned events to render, ``specs`` scene -> ``(kind, path)`` of its look on disk,
    ``reports`` the EventReports (by event number), ``finish(p, report, frames, seconds)`` records a
    done event, ``task`` the progress stage, ``working`` scene -> the working space its preset was made
    in. ``address``: a running cluster (``ray://host:10001``, ``host:6379`` or ``auto``); None starts a
    local instance with every core, shut down at the end. A task whose worker dies is retried
    ``retries`` times; an event that fails is marked ``failed`` in its report and the others go on.

    ``settings.gpus_per_task`` GPUs are reserved by each render task (which then runs the look's network
    with CUDA). ``settings.transfer``: ``shared`` (the output folder is shared storage, checked by a
    probe) or ``object-store`` (no probe: each event's media travels to its task as bytes, at most
    ``settings.transfer_limit`` per file, and the graded clip comes back as bytes that this process
    publishes atomically at its final path).

    Raises:
        InputError: Ray is missing, the cluster cannot be reached or has no GPU for ``gpus_per_task``,
            the output folder is not shared, or (object store) a media file is above the size limit.
    """
    ray = _import_ray()
    working = working or {}
    by_number = {r.number: r for r in reports}
    gpus, by_store = float(getattr(settings, "gpus_per_task", 0) or 0), settings.transfer == "object-store"
    if by_store:
        check_transfer_sizes(pending, settings.transfer_limit)
    started = _start(ray, address)
    refs: dict = {}
    # Ray's driver prints a dead worker's notice to sys.stdout from a thread: onto stderr while events render,
    # so that --json's stdout holds the report only
    quiet = contextlib.redirect_stdout(sys.stderr)
    quiet.__enter__()
    try:
        if gpus > 0:
            check_gpus(ray, gpus)
        if pending and not by_store:
            probe_shared_storage(Path(pending[0].output).absolute().parent)
        media = {}  # object store: each media file's bytes, put once for all its events
        if by_store:
            for path in dict.fromkeys(Path(p.media.path) for p in pending):
                media[path] = ray.put(path.read_bytes())
        looks = {
            scene: (kind, ray.put(Path(path).read_bytes()))
            for scene, (kind, path) in specs.items()
            if any(p.scene == scene for p in pending)
        }
        render = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=retries)(_render_task)
        crash_node = bool(os.environ.get(NODE_HOOK))
        crash = os.environ.get(NODE_HOOK) or os.environ.get(CRASH_HOOK) or None
        options_json = options.model_dump_json()
        for p in pending:
            kind, look = looks[p.scene]
            ref = render.remote(
                kind,
                look,
                str(Path(p.media.path).absolute()),
                str(Path(p.output).absolute()),  # every node sees the output folder at the same path
                p.first,
                p.end,
                p.event.cdl if settings.apply_cdl else None,
                options_json,
                p.input_space,
                working.get(p.scene),
                crash,
                media.get(Path(p.media.path)),
                crash_node,
            )
            refs[ref] = p
        waiting = list(refs)
        while waiting:
            ready, waiting = ray.wait(waiting, num_returns=1)
            p = refs[ready[0]]
            rep = by_number[p.event.number]
            try:
                frames, seconds, clip = ray.get(ready[0])
            except ray.exceptions.RayError as e:  # the task raised, or its worker died every time
                rep.status, rep.message = "failed", _failure(ray, e)
            else:
                if clip is not None:  # object store: the clip published here, complete or not at all
                    with atomic_output(Path(p.output), force=True) as tmp:
                        Path(tmp).write_bytes(clip)
                finish(p, rep, frames, seconds)
            task.advance()
    except BaseException:
        for ref in refs:  # running events stop and remove their temporary clips (atomic_output)
            ray.cancel(ref)
        raise
    else:  # every task has ended: what is left beside a clip was written by a worker that died (on any node)
        for p in pending:
            remove_stale_temps(Path(p.output), any_writer=True)
    finally:
        if started:
            ray.shutdown()
        quiet.__exit__(None, None, None)
