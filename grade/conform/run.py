"""Running a conform: scene looks trained once, events rendered (resumably), edits written, the programme assembled."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import numpy as np

from grade.conform.assemble import assemble
from grade.conform.audio import plan_sound
from grade.conform.edit import read_edit
from grade.conform.job import (
    EventStatus,
    deal_shards,
    ensure_output_folder,
    file_fingerprint,
    fingerprint,
    folder_lock,
    load_job,
    output_name,
    output_suffix,
    record_event,
    save_job,
)
from grade.conform.looks import LooksFile, number_ranges, read_looks
from grade.conform.media import MediaIndex
from grade.conform.plan import ConformReport, ConformSettings, EventReport, Planned, plan_events
from grade.conform.render import event_colour, render_event, render_parallel
from grade.conform.write import write_edits
from grade.errors import InputError, OutputError, setting


def run_conform(edit_path: str | Path, out_dir: str | Path, settings: ConformSettings, options, progress=None):
    """Conform an edit into ``out_dir``; see the module docstring. ``options`` is a GradeOptions."""
    import time

    from grade.progress import NullProgress
    from grade.shotgrade import resolve_device

    progress = progress or NullProgress()
    out_dir = Path(out_dir)
    edit = read_edit(edit_path, settings.rate)
    looks = read_looks(settings.looks) if settings.looks else None
    if looks is None and settings.look is None and options.preset is None:
        raise InputError(
            f"no look: give {setting('looks', 'FILE.toml')}, {setting('look', 'REF|FILE.cube')} "
            f"or {setting('preset', 'NAME')}"
        )
    index = MediaIndex(settings.media)
    plans = plan_events(edit, index, settings, looks)
    missing = [p for p in plans if p.problem]
    if missing and not settings.skip_missing:
        first = "; ".join(f"event {p.event.number} {p.event.name}: {p.problem}" for p in missing[:3])
        more = f" (+{len(missing) - 3} more)" if len(missing) > 3 else ""
        raise InputError(
            f"{len(missing)} of {len(plans)} events cannot be relinked: {first}{more} ({setting('skip_missing')})"
        )
    ensure_output_folder(out_dir)
    warnings = [
        f"event {p.event.number} {p.event.name}: {p.event.speed_effect} not supported (graded at normal speed)"
        for p in plans
        if p.event.speed_effect
    ]
    warnings += edit.warnings
    untimed = sorted({p.media.path.name for p in plans if p.media is not None and not p.media.timecoded})
    warnings += [f"media {n} has no timecode tag: taken to start at 00:00:00:00" for n in untimed]
    if not any(p.problem is None for p in plans):  # --skip-missing and nothing relinked: no "graded" edit
        raise InputError(f"none of the {len(plans)} events could be relinked: nothing to grade (see --media)")
    device = resolve_device(options.device)
    job = load_job(out_dir, edit.path)
    todo = [p for p in plans if p.problem is None]

    # the look of each scene: the key frames of its events, trained/fitted once (kept as a preset)
    sources = _scene_sources(looks, settings, options)
    grading = options.settings_of("training", "look", "picture", "encode")  # what changes a clip, not run policy
    for p in todo:
        src_fp = sources[p.scene][1] if p.scene in sources else None
        if src_fp is None:
            raise InputError(f"event {p.event.number} {p.event.name}: no look for scene {p.scene!r} (no default)")
        cdl = p.event.cdl.__dict__ if settings.apply_cdl and p.event.cdl else None
        p.fingerprint = fingerprint(
            file_fingerprint(p.media.path),
            p.first,
            p.end,
            src_fp,
            grading,
            cdl,
            *([p.input_space] * bool(p.input_space)),
        )
        p.output = out_dir / output_name(p.event, output_suffix(p.media.path))

    def done(p: Planned) -> bool:
        st = job.events.get(str(p.event.number))
        return bool(
            st
            and st.status == "done"
            and st.fingerprint == p.fingerprint
            and p.output.exists()
            and st.output_bytes == p.output.stat().st_size
        )

    chosen = _chosen_events(todo, settings)  # None: every event (one whole run)
    if settings.finish:  # the farm's last step: every event must be there, nothing is rendered
        missing = [p.event.number for p in todo if not done(p)]
        if missing:
            shown = ", ".join(str(n) for n in missing[:10]) + (" ..." if len(missing) > 10 else "")
            raise InputError(f"--finish: {len(missing)} of {len(todo)} events are not graded yet: {shown}")
    pending = [p for p in todo if not done(p) and (chosen is None or p.event.number in chosen)]
    if not options.force:  # never replace a file this job did not write
        ours = {st.output for st in job.events.values() if st.output}
        foreign = [p.output for p in pending if p.output.exists() and str(p.output) not in ours]
        if settings.assemble is not None and settings.assemble.exists() and str(settings.assemble) != job.assembled:
            foreign.append(settings.assemble)
        if foreign:
            more = f" (+{len(foreign) - 1} more)" if len(foreign) > 1 else ""
            raise OutputError(
                f"output exists and was not written by this conform: {foreign[0]}{more} (use {setting('force')})"
            )
    grades, specs, trained = {}, {}, []
    trainer = None  # --engine ray on shared storage: each scene's look is trained as a Ray task
    if settings.engine == "ray" and settings.transfer == "shared" and pending:
        from grade.conform.ray_train import SceneTrainer

        trainer = SceneTrainer(settings.ray_address, out_dir)
    try:
        working = {s: _preset_working(d) for s, (d, _) in sources.items()}  # a preset's look keeps its working space
        if trainer is not None:  # every scene still to train goes to the cluster at once: they train side by side
            for scene in sorted({p.scene for p in pending}):
                desc = sources[scene][0]
                if "cube" in desc or "preset" in desc:
                    continue
                scene_plans = [p for p in todo if p.scene == scene]
                key_fp, cache = _scene_cache(scene, sources[scene], scene_plans, out_dir, settings, options)
                if not cache.exists():
                    trainer.submit(scene, desc, scene_plans, settings, options, key_fp)
        for scene in sorted({p.scene for p in pending}):
            # shards started together: the first trains the scene's look, the others wait and load it
            with folder_lock(out_dir / ".looks", "scene-" + re.sub(r"[^A-Za-z0-9_.+-]", "_", scene)[:40]):
                grades[scene], specs[scene], was_trained = _scene_grade(
                    scene,
                    sources[scene],
                    [p for p in todo if p.scene == scene],
                    out_dir,
                    settings,
                    options,
                    device,
                    progress,
                    trainer,
                )
            if was_trained:
                trained.append(scene)

        jobs = options.jobs if options.jobs > 1 and len(pending) > 1 else None
        if settings.engine == "ray" and pending:
            jobs = options.jobs  # Ray renders every pending event (its workers, not --jobs, set the parallelism)

        def finish(p: Planned, rep: EventReport, frames: int, seconds: float) -> None:
            rep.status, rep.frames, rep.seconds = "done", frames, round(seconds, 3)
            if frames < p.end - p.first:  # the media broke off inside the event's range
                rep.message = f"{p.media.path} is damaged: graded {frames} of {p.end - p.first} frames"
                warnings.append(f"event {p.event.number} {p.event.name}: {rep.message}")
            status = EventStatus(
                number=p.event.number,
                status="done",
                fingerprint=p.fingerprint,
                output=str(p.output),
                output_bytes=p.output.stat().st_size,
                scene=p.scene,
                frames=frames,
                seconds=rep.seconds,
            )
            # after the clip is in place: an interruption redoes only this event; other shards' events kept
            job.events.update(record_event(out_dir, edit.path, status).events)

        reports = []
        with progress.stage("conform", len(todo)) as task:
            for p in plans:
                ev = p.event
                rep = EventReport(
                    number=ev.number,
                    name=ev.name,
                    reel=ev.reel,
                    scene=p.scene if not p.problem else None,
                    status="skipped",
                    message=p.problem,
                )
                if p.problem is None:
                    rep.media, rep.source_range, rep.output = str(p.media.path), (p.first, p.end), str(p.output)
                    if p in pending:
                        if jobs is None:
                            t = time.perf_counter()
                            frames = render_event(
                                grades[p.scene],
                                p.media.path,
                                p.output,
                                p.first,
                                p.end,
                                ev.cdl if settings.apply_cdl else None,
                                options,
                                p.input_space,
                                working.get(p.scene),
                            )
                            finish(p, rep, frames, time.perf_counter() - t)
                        else:
                            rep.status = "queued"
                    elif not done(p):
                        rep.status, rep.message = "other shard", "left to the shard that holds it"
                    else:
                        st = job.events[str(ev.number)]
                        rep.status, rep.frames = "unchanged", st.frames or 0
                    if rep.status != "queued":
                        task.advance()
                reports.append(rep)
            if jobs is not None and settings.engine == "ray":
                from grade.conform.ray_engine import render_ray

                render_ray(pending, specs, reports, settings, options, finish, task, working, settings.ray_address)
            elif jobs is not None:
                render_parallel(jobs, [p for p in pending], specs, reports, settings, options, finish, task, working)
    finally:
        if trainer is not None:
            trainer.close()
    failed = [r for r in reports if r.status == "failed"]
    if failed:  # no edit or programme pointing at clips that are not there; a re-run redoes these events
        warnings.append(
            f"{len(failed)} of {len(todo)} events failed; the graded edits are written once every event is done"
        )
    for g in grades.values():
        g.release()
    if chosen is not None or failed:  # a shard (or failed events): the edits and the programme are --finish's
        return ConformReport(
            edit=str(edit.path), output_dir=str(out_dir), rate=edit.rate, events=reports, scenes_trained=trained,
            warnings=warnings,
        )  # fmt: skip
    written = write_edits(edit, plans, out_dir, cdl_applied=settings.apply_cdl)
    if settings.assemble is not None:
        target = settings.assemble
        sounds, notes = plan_sound(edit, plans, index, settings.match)  # the edit's audio events, cut from their media
        warnings += notes
        heard = [(str(s.media), file_fingerprint(s.media), s.rec_in, s.rec_out, s.source_at, s.fade_in, s.fade_out)
                 for s in sounds]  # fmt: skip
        assembly_fp = fingerprint(str(target), [(p.event.number, p.fingerprint) for p in plans], grading, heard)
        unchanged = (
            job.assembled == str(target)
            and job.assembled_fingerprint == assembly_fp
            and target.exists()
            and target.stat().st_size == job.assembled_bytes
        )
        if not unchanged:  # a re-run with nothing changed does not render the programme again
            with progress.stage("assemble", max(1, plans[-1].event.rec_out - plans[0].event.rec_in)) as task:
                assemble(plans, target, options, on_frame=lambda: task.advance(), sounds=sounds)
            with folder_lock(out_dir, "job"):
                job = load_job(out_dir, edit.path)
                job.assembled, job.assembled_fingerprint = str(target), assembly_fp
                job.assembled_bytes = target.stat().st_size
                save_job(out_dir, job)
        written.append(str(target))
    return ConformReport(
        edit=str(edit.path),
        output_dir=str(out_dir),
        rate=edit.rate,
        events=reports,
        edits_written=written,
        scenes_trained=trained,
        warnings=warnings,
    )


def _chosen_events(todo: list[Planned], settings: ConformSettings) -> set[int] | None:
    """The event numbers this run renders: ``--events 3,7-12``, shard I of N (dealt out by estimated cost:
    frames), or None for all."""
    if settings.events is not None:
        try:
            ranges = number_ranges(settings.events)
        except ValueError as e:
            raise InputError(f"{setting('events', 'LIST')}: {e}") from None
        chosen = {p.event.number for p in todo if any(a <= p.event.number <= b for a, b in ranges)}
        if not chosen:
            raise InputError(f"{setting('events', 'LIST')}: no event of the edit is numbered {settings.events}")
        return chosen
    if settings.shard is not None:
        i, n = settings.shard
        costs = {p.event.number: float(max(1, p.end - p.first)) for p in todo}
        return set(deal_shards(costs, n)[i - 1])
    return None


def list_events(edit_path: str | Path, settings: ConformSettings, options) -> list[dict]:
    """Every event of the edit for a farm manager: number, clip, reel, scene, media, frames (handles
    included), estimated cost (frames to decode, grade and encode), or why it cannot be relinked."""
    edit = read_edit(edit_path, settings.rate)
    looks = read_looks(settings.looks) if settings.looks else None
    plans = plan_events(edit, MediaIndex(settings.media), settings, looks)
    return [
        {
            "number": p.event.number,
            "name": p.event.name,
            "reel": p.event.reel,
            "scene": p.scene,
            "media": str(p.media.path) if p.media else None,
            "frames": p.end - p.first if p.problem is None else 0,
            "cost": float(max(1, p.end - p.first)) if p.problem is None else 0.0,
            "problem": p.problem,
        }
        for p in plans
    ]


def _preset_working(desc: dict) -> str | None:
    """The working space a scene's preset look was made in (None for a reference or a .cube)."""
    if "preset" not in desc:
        return None
    from grade.presets import read_preset

    return read_preset(desc["preset"]).manifest.working_space


def _scene_sources(looks: LooksFile | None, settings: ConformSettings, options) -> dict[str, tuple[dict, str]]:
    """Scene name -> (look description, fingerprint of the look's inputs)."""
    out: dict[str, tuple[dict, str]] = {}

    def describe(kind: str, value: str) -> tuple[dict, str]:
        if kind in ("reference", "cube"):
            p = Path(value)
            if not p.is_file():
                raise InputError(f"no such {kind} file: {p}")
            return {kind: str(p)}, fingerprint(kind, file_fingerprint(p))
        from grade.library import Library

        path, _ = Library(options.library).locate(value)
        return {"preset": str(path)}, fingerprint("preset", file_fingerprint(path))

    if looks is not None:
        for name, scene in looks.scenes.items():
            kind = "reference" if scene.reference else ("cube" if scene.cube else "preset")
            out[name] = describe(kind, getattr(scene, kind))
    if "default" not in out or (looks is not None and looks.default is None):
        if settings.look is not None:
            out["default"] = describe(
                "cube" if settings.look.suffix.lower() == ".cube" else "reference", str(settings.look)
            )
        elif options.preset is not None:
            out["default"] = describe("preset", options.preset)
    return out


def _scene_grade(
    scene: str,
    source: tuple[dict, str],
    plans: list[Planned],
    out_dir: Path,
    settings,
    options,
    device,
    progress,
    trainer=None,
):
    """The scene's ShotGrade: loaded from a preset or cube, or fitted/trained on the key frames of its
    events once and cached in ``out_dir/.looks`` (a re-run reuses it). ``trainer`` (the Ray engine's
    :func:`~grade.conform.ray_engine.train_scene_ray`) trains elsewhere and returns the preset's bytes."""
    from grade.io.atomic import atomic_output
    from grade.library import read_look
    from grade.presets import preset_bytes, read_preset
    from grade.shotgrade import preset_grade

    desc, _ = source
    for kind in ("cube", "preset"):  # a look kept on disk: one reader for both
        if kind in desc:
            grade = preset_grade(read_look(desc[kind]), options.strength, options.stabilise, options.regional)
            return grade, (kind, desc[kind]), False
    key_fp, cache = _scene_cache(scene, source, plans, out_dir, settings, options)
    if cache.exists():
        with contextlib.suppress(InputError):  # a damaged cache is trained again
            grade = preset_grade(read_preset(cache), options.strength, options.stabilise, options.regional)
            return grade, ("preset", str(cache)), False
    if trainer is not None:
        with progress.stage(f"train {scene} (Ray task)", None):
            data = trainer(scene, desc, plans, settings, options, key_fp)
    else:
        data = preset_bytes(train_scene_preset(scene, desc, plans, settings, options, device, progress, key_fp))
    cache.parent.mkdir(exist_ok=True)
    with atomic_output(cache, force=True) as tmp:
        tmp.write_bytes(data)
    grade = preset_grade(read_preset(cache), options.strength, options.stabilise, options.regional)
    return grade, ("preset", str(cache)), True


def _scene_cache(scene: str, source: tuple[dict, str], plans: list[Planned], out_dir: Path, settings, options):
    """``(key_fp, path)``: the fingerprint of what a scene's fitted look depends on (its reference, the
    training settings, its events' media, ranges, CDLs and cameras) and its file in the look cache."""
    from grade.presets import SUFFIX

    _, fp = source
    grading = options.settings_of("training")
    cdls = [p.event.cdl.__dict__ if settings.apply_cdl and p.event.cdl else None for p in plans]
    spaces = [p.input_space for p in plans]
    key_fp = fingerprint(
        fp, grading, [(file_fingerprint(p.media.path), p.first, p.end) for p in plans], cdls, *([spaces] * any(spaces))
    )
    return key_fp, out_dir / ".looks" / f"{re.sub(r'[^A-Za-z0-9_.+-]', '_', scene)[:40]}-{key_fp[:12]}{SUFFIX}"


def train_scene_preset(scene: str, desc: dict, plans: list[Planned], settings, options, device, progress, key_fp: str):
    """Fit (fast) or train (learned) one scene's look on the key frames of all its events (each camera
    brought into the working space; black and title shots left out) and return it as a preset."""
    import torch

    from grade.cdl import apply_cdl
    from grade.io import image as image_io
    from grade.presets import build_preset
    from grade.shotgrade import fit_shots
    from grade.shots import detect_shots

    keys, blank, colour = [], [], None
    for p in plans:
        shots = detect_shots(p.media.path, frames=(p.first, p.end))
        ev_colour = event_colour(p.media.path, options, p.input_space)  # each camera into the one working space
        colour = colour or ev_colour
        for shot, k in zip(shots.shots, shots.keys):
            if settings.apply_cdl and p.event.cdl and not p.event.cdl.is_identity:
                k = (apply_cdl(p.event.cdl, torch.from_numpy(k).float() / 255).numpy() * 255 + 0.5).astype(np.uint8)
            if ev_colour is not None:
                k = ev_colour.frame_in(np.ascontiguousarray(k))
            (blank if shot.flat else keys).append(np.ascontiguousarray(k))  # black/titles never enter the look
    keys = keys or blank  # a scene of black and titles only: fitted on them (the tone mapping is all there is)
    ref, thumb = image_io.load_reference(desc["reference"], options.working_side)
    if colour is not None:
        ref = colour.reference(ref)
    grade = fit_shots(keys, ref, options, device, progress, joint=True)[0]
    learned = grade.learned
    mode = "learned" if learned is not None else "fast"
    return build_preset(
        f"scene-{key_fp[:12]}",
        mode=mode,
        lut=grade.full_lut,
        learned=learned,
        reference=thumb,
        reference_name=Path(desc["reference"]).name,
        keys=keys,
        scene=scene,
        working_space=colour.working if colour is not None else None,
    )
