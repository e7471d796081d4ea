"""``grade conform --engine ray``: each scene's look trained as a Ray task, on the key frames of all its events.

The task reads the events' media and the reference still at the paths the driver sees (``--transfer
shared``: shared storage, checked by the probe before the first task), trains on the device Ray gave it
(CUDA with ``--gpus-per-task``, else its CPU) and returns the look as the BYTES of a ``.gpreset`` file,
which the driver writes into the output folder's look cache (the one place a scene's look is kept:
later runs and other shards load it, and the render tasks receive it through the object store). With
``--transfer object-store`` the workers may not see the media, so the looks are trained on the driver.
"""

from __future__ import annotations

from pathlib import Path

from grade.conform.ray_engine import _failure, _import_ray, _start, _task_device, probe_shared_storage
from grade.errors import InputError


def _train_task(scene: str, desc: dict, plans: list, settings, options_json: str, key_fp: str) -> bytes:
    """Worker side: the scene's preset, as file bytes (:func:`grade.conform.run.train_scene_preset`)."""
    from grade.conform.run import train_scene_preset
    from grade.options import GradeOptions
    from grade.presets import preset_bytes
    from grade.progress import NullProgress

    device = _task_device()
    options = GradeOptions.model_validate_json(options_json).model_copy(update={"device": device.type})
    return preset_bytes(train_scene_preset(scene, desc, plans, settings, options, device, NullProgress(), key_fp))


class SceneTrainer:
    """The ``trainer`` of :func:`grade.conform.run._scene_grade` for ``--engine ray``: connects to (or
    starts) Ray on first use, probes the output folder, then trains each scene as one task (retried
    ``retries`` times when its worker dies); scenes submitted together train side by side. :meth:`close`
    shuts down a Ray instance it started."""

    def __init__(self, address: str | None, out_dir: Path, retries: int = 2) -> None:
        self.address, self.out_dir, self.retries = address, Path(out_dir), retries
        self.started: bool | None = None
        self.submitted: dict[tuple[str, str], object] = {}  # (scene, key_fp) -> the task's ObjectRef

    def submit(self, scene: str, desc: dict, plans: list, settings, options, key_fp: str) -> None:
        """Start training the scene's look on the cluster (:meth:`__call__` waits for it): the conform
        submits every scene first, so that they train side by side on the cluster's workers."""
        ray = _import_ray()
        if self.started is None:
            self.started = _start(ray, self.address)
            self.out_dir.mkdir(parents=True, exist_ok=True)
            probe_shared_storage(self.out_dir.absolute())
        if (scene, key_fp) in self.submitted:
            return
        gpus = float(settings.gpus_per_task or 0)
        train = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=self.retries)(_train_task)
        ref = train.remote(scene, desc, plans, settings, options.model_dump_json(), key_fp)
        self.submitted[(scene, key_fp)] = ref

    def __call__(self, scene: str, desc: dict, plans: list, settings, options, key_fp: str) -> bytes:
        """The scene's preset as file bytes, from the task :meth:`submit` started (or one started now)."""
        ray = _import_ray()
        self.submit(scene, desc, plans, settings, options, key_fp)
        ref = self.submitted.pop((scene, key_fp))
        try:
            return ray.get(ref)
        except ray.exceptions.RayError as e:
            raise InputError(f"scene {scene}: its look could not be trained on Ray: {_failure(ray, e)}") from None

    def close(self) -> None:
        """Cancel what was submitted and not collected (a conform that stopped early), then shut down
        a Ray instance this trainer started."""
        if self.submitted:
            ray = _import_ray()
            for ref in self.submitted.values():
                ray.cancel(ref)
            self.submitted.clear()
        if self.started:
            _import_ray().shutdown()
        self.started = None
