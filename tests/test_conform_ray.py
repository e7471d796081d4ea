"""``grade conform --engine ray``: the same clips as one process, a killed worker retried, failed events
reported, and the shared-storage probe. One local Ray instance (2 CPUs) for the whole file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

import opentimelineio as otio  # noqa: E402
import test_conform  # noqa: E402
from clips import read_all  # noqa: E402
from conftest import no_temp_files, sha  # noqa: E402
from test_conform import HOUR, clip, indexed_clip, run, tc  # noqa: E402

from grade.conform.ray_engine import CRASH_HOOK, PROBE_PREFIX, probe_shared_storage  # noqa: E402
from grade.errors import InputError  # noqa: E402

project = test_conform.project  # the fixture: two reels of media and an edit of four events


@pytest.fixture(scope="module", autouse=True)
def ray_instance():
    """One local instance for the file (render_ray then leaves it running: it did not start it)."""
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False)  # no GPU, even where one is
    yield
    ray.shutdown()


def _events(out: str) -> list[dict]:
    return json.loads(out)["events"]


def test_ray_gives_the_same_clips_as_one_process_and_resumes(capsys, project) -> None:
    root, media, edl = project
    base = ["conform", edl, "--media", media, "--look", root / "mild.cube", "--codec", "ffv1", "--json", "-o"]
    code, o1, err = run(capsys, *base, root / "one")
    assert code == 0, err
    code, o2, err = run(capsys, *base, root / "ray", "--engine", "ray")  # --jobs 1: Ray still renders
    assert code == 0, err
    e1, e2 = _events(o1), _events(o2)
    assert [e["status"] for e in e2] == ["done"] * 4
    assert [sha(Path(e["output"])) for e in e1] == [sha(Path(e["output"])) for e in e2]
    job = json.loads((root / "ray" / "conform-job.json").read_text())
    assert sorted(job["events"]) == ["1", "2", "3", "4"]  # written by the driver, one per finished event
    assert (root / "ray" / "cut.graded.edl").exists() and no_temp_files(root / "ray")
    assert not list((root / "ray").glob(f"{PROBE_PREFIX}*"))
    code, o3, err = run(capsys, *base, root / "ray", "--engine", "ray")
    assert code == 0, err
    assert [e["status"] for e in _events(o3)] == ["unchanged"] * 4


def test_a_worker_killed_mid_event_is_retried(capsys, project, tmp_path: Path, monkeypatch) -> None:
    root, media, edl = project
    base = ["conform", edl, "--media", media, "--look", root / "mild.cube", "--codec", "ffv1", "--json", "-o"]
    code, o1, err = run(capsys, *base, root / "one")
    assert code == 0, err
    marker = tmp_path / "crashed"
    monkeypatch.setenv(CRASH_HOOK, str(marker))  # the first task to grade 3 frames kills its worker
    code, o2, err = run(capsys, *base, root / "ray", "--engine", "ray", "--jobs", "2")
    assert code == 0, err
    assert marker.exists()  # a worker did die mid-event
    e1, e2 = _events(o1), _events(o2)
    assert [e["status"] for e in e2] == ["done"] * 4
    assert [sha(Path(e["output"])) for e in e1] == [sha(Path(e["output"])) for e in e2]
    assert no_temp_files(root / "ray")  # the dead worker's half-written clip was cleaned up by the retry


def test_an_event_on_bad_media_fails_and_the_others_finish(capsys, tmp_path: Path) -> None:
    from test_damaged import _cut

    from grade.cube import write_cube
    from grade.lut import identity_lut

    media = tmp_path / "media"
    media.mkdir()
    indexed_clip(media / "A001.mp4", 30, "01:00:00:00")
    assert len(read_all(_cut(indexed_clip(media / "B002.mkv", 60, "02:00:00:00", 1), 0.3))[0]) < 40
    track = otio.schema.Track(kind=otio.schema.TrackKind.Video)
    track.append(clip("good", "A001", HOUR + 2, 10))
    track.append(clip("bad", "B002", 2 * HOUR + 45, 10))  # past where the file breaks: nothing decodes
    track.append(clip("good2", "A001", HOUR + 14, 6))
    timeline = otio.schema.Timeline(name="cut", global_start_time=tc(10 * HOUR))
    timeline.tracks.append(track)
    edl = tmp_path / "cut.edl"
    otio.adapters.write_to_file(timeline, str(edl), adapter_name="cmx_3600")
    write_cube(tmp_path / "id.cube", identity_lut(9))
    out = tmp_path / "out"
    args = ["conform", edl, "--media", media, "--look", tmp_path / "id.cube", "--handles", "0", "-o", out]
    code, o, err = run(capsys, *args, "--engine", "ray", "--json")
    assert code == 2
    assert "grade: error: event 2 bad failed: no decodable video frame in" in err
    events = _events(o)
    assert [e["status"] for e in events] == ["done", "failed", "done"]
    assert "no decodable video frame" in events[1]["message"]
    assert sorted(json.loads((out / "conform-job.json").read_text())["events"]) == ["1", "3"]
    assert not list(out.glob("*.graded.*")) and no_temp_files(out)  # no edit pointing at a missing clip


def test_shared_storage_probe(tmp_path: Path) -> None:
    """The probe's real round trip: a Ray task writes, this process reads back. A folder the workers cannot
    write to (here: one that does not exist where they run, as a path local to the driver's machine would
    be on another node) is refused in one line; a shared one passes and keeps no probe file."""
    assert probe_shared_storage(tmp_path)
    assert not list(tmp_path.glob(f"{PROBE_PREFIX}*"))
    unseen = tmp_path / "only-on-the-driver"
    with pytest.raises(InputError) as e:
        probe_shared_storage(unseen)
    assert str(e.value) == f"the output folder {unseen} is not visible to the Ray workers (shared storage needed)"


def test_missing_ray_is_one_line(capsys, project, monkeypatch) -> None:
    root, media, edl = project
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as where it is not installed
    code, _, err = run(capsys, "conform", edl, "--media", media, "--look", root / "mild.cube", "-o", root / "o",
                       "--engine", "ray")  # fmt: skip
    assert code == 2
    assert err.strip() == 'grade: error: --engine ray needs Ray: pip install "grade[ray]"'


def test_gpus_per_task_on_a_cluster_without_a_gpu(capsys, project) -> None:
    """N > 0 on a cluster with no GPU: one line at once (Ray would queue the tasks forever); 0 renders."""
    root, media, edl = project
    base = ["conform", edl, "--media", media, "--look", root / "mild.cube", "--handles", "0", "-o"]
    code, _, err = run(capsys, *base, root / "gpu", "--engine", "ray", "--gpus-per-task", "1")
    assert code == 2
    assert err.strip().splitlines()[-1] == (  # (above it: the progress line of a non-terminal stderr)
        "grade: error: --gpus-per-task 1: the Ray cluster has no GPU (use --gpus-per-task 0 to render on CPUs)"
    )
    assert not list((root / "gpu").glob("E*"))  # nothing rendered
    code, o, err = run(capsys, *base, root / "cpu", "--engine", "ray", "--gpus-per-task", "0", "--json")
    assert code == 0, err
    assert [e["status"] for e in _events(o)] == ["done"] * 4
    code, _, err = run(capsys, *base, root / "local", "--gpus-per-task", "1")  # not a Ray run
    assert code == 2 and err.strip().splitlines()[-1].startswith("grade: error: ") and "need --engine ray" in err


def test_object_store_transfer_gives_the_same_clips(capsys, project) -> None:
    """No shared storage: media go to the tasks as bytes, clips come back as bytes and are published by
    the driver; the same clips as one process, no probe and no temporary file left."""
    root, media, edl = project
    base = ["conform", edl, "--media", media, "--look", root / "mild.cube", "--codec", "ffv1", "--json", "-o"]
    code, o1, err = run(capsys, *base, root / "one", "--jobs", "1")
    assert code == 0, err
    code, o2, err = run(capsys, *base, root / "store", "--engine", "ray", "--transfer", "object-store")
    assert code == 0, err
    e1, e2 = _events(o1), _events(o2)
    assert [e["status"] for e in e2] == ["done"] * 4
    assert [sha(Path(e["output"])) for e in e1] == [sha(Path(e["output"])) for e in e2]
    assert sorted(json.loads((root / "store" / "conform-job.json").read_text())["events"]) == ["1", "2", "3", "4"]
    assert no_temp_files(root / "store") and not list((root / "store").glob(f"{PROBE_PREFIX}*"))


def test_object_store_transfer_limit_names_the_event(capsys, project) -> None:
    root, media, edl = project
    args = ["conform", edl, "--media", media, "--look", root / "mild.cube", "-o", root / "o", "--engine", "ray"]
    code, _, err = run(capsys, *args, "--transfer", "object-store", "--transfer-limit", "1K")
    assert code == 2
    line = err.strip().splitlines()[-1]
    assert line.startswith("grade: error: event 1 shotA: media ")
    assert "A001.mp4 is" in line and "above the object-store transfer limit of 1.0 KiB" in line
    assert "--transfer-limit" in line
    code, _, err = run(capsys, *args, "--transfer", "object-store", "--transfer-limit", "lots")
    assert code == 2 and "not a size: 'lots'" in err


def test_scene_looks_are_trained_as_ray_tasks(capsys, project, monkeypatch) -> None:
    """With --engine ray, the scene's look is trained by a Ray task (whose preset bytes the driver writes
    into the look cache): the same preset and clips as one process, trained once, reused on a re-run."""
    from clips import make_still

    from grade.conform import ray_train

    root, media, edl = project
    ref = make_still(root / "ref.png", size=(80, 60), scene=1)
    calls = []
    real = ray_train.SceneTrainer.__call__

    def spy(self, scene, *args):
        calls.append(scene)
        return real(self, scene, *args)

    monkeypatch.setattr(ray_train.SceneTrainer, "__call__", spy)
    base = ["conform", edl, "--media", media, "--look", ref, "--mode", "fast", "--codec", "ffv1", "--json", "-o"]
    code, o1, err = run(capsys, *base, root / "one")
    assert code == 0, err
    assert calls == []  # the local engine trains in this process
    code, o2, err = run(capsys, *base, root / "ray", "--engine", "ray")
    assert code == 0, err
    assert len(calls) == 1 and json.loads(o2)["scenes_trained"] == calls
    e1, e2 = _events(o1), _events(o2)
    assert [sha(Path(e["output"])) for e in e1] == [sha(Path(e["output"])) for e in e2]
    cached = sorted((root / "ray" / ".looks").glob("*.gpreset"))
    assert [p.name for p in cached] == [p.name for p in sorted((root / "one" / ".looks").glob("*.gpreset"))]
    code, o3, err = run(capsys, *base, root / "ray", "--engine", "ray", "--force")
    assert code == 0, err
    assert len(calls) == 1 and json.loads(o3)["scenes_trained"] == []  # the cached look, not trained again


def test_scenes_are_submitted_together_and_train_side_by_side(capsys, project, monkeypatch) -> None:
    """Two scenes of a looks file, --engine ray: both training tasks are on the cluster before the
    driver waits for the first, and the clips are those of one process."""
    from clips import make_still

    from grade.conform import ray_train

    root, media, edl = project
    make_still(root / "day.png", size=(80, 60), scene=1)
    make_still(root / "night.png", size=(80, 60), scene=0)
    (root / "looks.toml").write_text(
        'default = "night"\n[scenes.day]\nreference = "day.png"\n[scenes.night]\nreference = "night.png"\n'
        '[[rules]]\nscene = "day"\nreel = "A0*"\n'
    )
    seen = []
    submit, call = ray_train.SceneTrainer.submit, ray_train.SceneTrainer.__call__

    def spy_submit(self, scene, *args):
        seen.append(("submit", scene))
        return submit(self, scene, *args)

    def spy_call(self, scene, *args):
        seen.append(("wait", scene))
        return call(self, scene, *args)

    monkeypatch.setattr(ray_train.SceneTrainer, "submit", spy_submit)
    monkeypatch.setattr(ray_train.SceneTrainer, "__call__", spy_call)
    base = ["conform", edl, "--media", media, "--looks", root / "looks.toml", "--mode", "fast", "--codec", "ffv1",
            "--json", "-o"]  # fmt: skip
    code, o1, err = run(capsys, *base, root / "one")
    assert code == 0, err
    code, o2, err = run(capsys, *base, root / "ray", "--engine", "ray")
    assert code == 0, err
    assert seen[:3] == [("submit", "day"), ("submit", "night"), ("wait", "day")], seen
    assert sorted(json.loads(o2)["scenes_trained"]) == ["day", "night"]
    assert [sha(Path(e["output"])) for e in _events(o1)] == [sha(Path(e["output"])) for e in _events(o2)]
