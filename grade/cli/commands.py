"""What each command does: its arguments turned into library calls, its results into output."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from grade.cli.progress import make_progress
from grade.errors import InputError


def raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _options(args: argparse.Namespace, **extra):
    from grade.options import GradeOptions

    return GradeOptions(
        mode=args.mode,
        strength=args.strength,
        regional=args.regional,
        device=args.device,
        codec=args.codec,
        crf=args.crf,
        force=args.force,
        force_preset=args.force,
        preview=args.preview,
        seed=args.seed,
        steps=args.steps,
        **({"look_side": args.look_side} if args.look_side is not None else {}),
        preset=args.preset,
        refine=args.refine,
        save_preset=args.save_preset,
        scene=args.scene,
        notes=args.notes,
        library=args.library,
        stabilise=args.stabilise,
        strict=getattr(args, "strict", False),
        input_space=args.input_space,
        working_space=args.working_space,
        output_space=args.output_space,
        keep_log=args.keep_log,
        ocio_config=args.ocio_config,
        fps=args.fps,
        allow_gaps=args.allow_gaps,
        **extra,
    )


def _check_look_args(args: argparse.Namespace) -> None:
    if args.look is None and args.preset is None:
        raise InputError("no look given: use --look REFERENCE (a still or a .cube LUT) or --preset NAME")
    if args.look is not None and args.preset is not None and not args.refine:
        raise InputError("--look and --preset together only with --refine (fine-tune the preset toward REFERENCE)")


def run_graded(args: argparse.Namespace, console, run) -> list:
    from grade.progress import NullProgress

    if args.quiet or args.json:
        return run(NullProgress())
    with make_progress(console) as progress:
        return run(progress)


def _summary(console, report, elapsed: float) -> None:
    extra = ""
    if report.streams_copied or report.streams_reencoded:
        copied, reenc = len(report.streams_copied), len(report.streams_reencoded)
        extra = f"; audio/other streams copied: {copied}, re-encoded: {reenc}"
    if report.streams_dropped:
        extra += f"; dropped: {', '.join(report.streams_dropped)}"
    console.print(
        f"[green]graded[/green] {report.input} -> [bold]{report.output}[/bold]  "
        f"({report.kind}, {len(report.shots)} shot{'s' if len(report.shots) != 1 else ''}, "
        f"{report.frames} frame{'s' if report.frames != 1 else ''}, mode {report.mode}, {elapsed:.1f} s{extra})"
    )


def _finish(console, args, reports: list, elapsed: float, single: bool) -> int:
    for r in reports:
        for w in r.warnings:  # on stderr, also with --json / --quiet: a damaged input is never silent
            print(f"grade: warning: {w}", file=sys.stderr)
    if args.json:
        data = [r.model_dump(mode="json") for r in reports]
        for d in data:
            d["seconds"]["total"] = round(elapsed, 3)
        print(json.dumps(data[0] if single else {"outputs": data, "preset_saved": reports[0].preset_saved}))
        return 0
    if args.quiet:
        return 0
    for r in reports:
        _summary(console, r, elapsed)
    if reports[0].preview:
        console.print(f"preview: {reports[0].preview}")
    if reports[0].preset_saved:
        console.print(f"preset saved: {reports[0].preset_saved}")
    return 0


def run_grade(args: argparse.Namespace, console) -> int:
    from grade.pipeline import grade_file

    _check_look_args(args)
    options = _options(args)
    t0 = time.perf_counter()
    reports = run_graded(args, console, lambda pr: [grade_file(args.input, args.look, options, args.output, pr)])
    return _finish(console, args, reports, time.perf_counter() - t0, single=True)


def run_scene(args: argparse.Namespace, console) -> int:
    from grade.pipeline import grade_files

    _check_look_args(args)
    options = _options(args, joint=True, output_dir=args.output_dir)
    t0 = time.perf_counter()
    reports = run_graded(args, console, lambda pr: grade_files(args.inputs, args.look, options, None, pr))
    return _finish(console, args, reports, time.perf_counter() - t0, single=False)


def run_conform(args: argparse.Namespace, console) -> int:
    from grade.conform import ConformSettings, run_conform

    if args.save_preset or args.refine:
        raise InputError("conform: scenes keep their looks in the output folder; --save-preset/--refine do not apply")
    if args.engine != "ray" and (args.gpus_per_task or args.transfer != "shared"):
        raise InputError("--gpus-per-task and --transfer object-store need --engine ray")
    settings = ConformSettings(
        media=args.media,
        looks=args.looks,
        look=args.look,
        handles=args.handles,
        match=[m.strip() for m in args.match.split(",") if m.strip()],
        skip_missing=args.skip_missing,
        apply_cdl=args.apply_cdl,
        rate=args.rate,
        assemble=args.assemble,
        events=args.events,
        shard=_shard(args.shard),
        finish=args.finish,
        engine=args.engine,
        ray_address=args.ray_address,
        gpus_per_task=args.gpus_per_task,
        transfer=args.transfer,
        transfer_limit=args.transfer_limit,
    )
    if args.engine == "ray":  # before any work: a missing Ray is one line
        try:
            import ray  # noqa: F401
        except ImportError:
            raise InputError('--engine ray needs Ray: pip install "grade[ray]"') from None
    if args.preset is not None and args.look is not None:
        raise InputError("give the default look as --look or --preset, not both")
    options = _options(args, jobs=args.jobs)
    if args.list_events:
        from grade.conform import list_events

        events = list_events(args.edit, settings, options)
        if args.json:
            print(json.dumps({"edit": str(args.edit), "events": events}))
        else:
            from rich.table import Table

            from grade.cli.presets import data_console

            table = Table(title=f"{args.edit}: {len(events)} events")
            for col in ("#", "clip", "reel", "scene", "frames", "cost", "note"):
                table.add_column(col)
            for e in events:
                table.add_row(
                    str(e["number"]), e["name"], e["reel"] or "", e["scene"], str(e["frames"]), f"{e['cost']:.0f}",
                    e["problem"] or "",
                )  # fmt: skip
            data_console().print(table)
        return 0
    t0 = time.perf_counter()
    report = run_graded(args, console, lambda pr: run_conform(args.edit, args.output_dir, settings, options, pr))
    elapsed = time.perf_counter() - t0
    failed = [e for e in report.events if e.status == "failed"]
    code = 2 if failed else 0  # some events failed (--engine ray): each named on stderr
    for e in failed:
        print(f"grade: error: event {e.number} {e.name} failed: {e.message}", file=sys.stderr)
    if args.json:
        data = report.model_dump(mode="json")
        data["seconds"] = round(elapsed, 3)
        print(json.dumps(data))
        return code
    if not args.quiet:
        from rich.table import Table

        table = Table(title=f"{report.edit}: {len(report.events)} events -> {report.output_dir}")
        for col in ("#", "clip", "reel", "scene", "status", "frames", "s", "output / note"):
            table.add_column(col)
        for e in report.events:
            note = Path(e.output).name if e.output else (e.message or "")
            table.add_row(
                str(e.number), e.name, e.reel or "", e.scene or "", e.status, str(e.frames), f"{e.seconds:.1f}", note
            )
        console.print(table)
        for w in report.warnings:
            console.print(f"[yellow]warning[/yellow]: {w}")
        console.print(f"edits: {', '.join(report.edits_written)}  ({elapsed:.1f} s)")
    return code


def _shard(text: str | None) -> tuple[int, int] | None:
    """``--shard 2/4`` -> ``(2, 4)``."""
    if text is None:
        return None
    a, sep, b = text.partition("/")
    if not (sep and a.strip().isdigit() and b.strip().isdigit()):
        raise InputError(f"--shard takes I/N (for example 2/4), not {text!r}")
    return int(a), int(b)


def run_presets(args: argparse.Namespace, console) -> int:
    from grade.cli import presets as preset_cli

    return preset_cli.run(args, console)


def run_shots(args: argparse.Namespace, console) -> int:
    from grade.io.sequence import find_sequence, is_sequence_path

    if args.fps is not None and not (math.isfinite(args.fps) and 0 < args.fps <= 1000):
        raise InputError(f"--fps: a frame rate above 0 and at most 1000, not {args.fps:g}")
    if is_sequence_path(args.input):  # analysed as `grade` analyses it
        from grade.colourspace import colour_pipeline, load_config, sequence_space
        from grade.render import sequence_shots

        seq = find_sequence(args.input, fps=args.fps, allow_gaps=args.allow_gaps, read_statement=not args.input_space)
        stated = None if args.input_space else sequence_space(seq.suffix, seq.statement, load_config(args.ocio_config))
        colour = colour_pipeline(args.input_space, args.working_space, None, False, args.ocio_config, stated)
        frames, fps = seq.frames, seq.fps

        def analyse(on_frame=None):
            return sequence_shots(seq, colour, on_frame=on_frame)
    else:
        from grade.io.video import probe
        from grade.shots import detect_shots

        info = probe(args.input)
        frames, fps = info.frames, info.fps

        def analyse(on_frame=None):
            return detect_shots(args.input, info, on_frame=on_frame)

    if args.quiet or args.json:
        shots = analyse()
    else:
        with make_progress(console) as progress, progress.stage("analyse", frames) as task:
            shots = analyse(lambda i: task.update(completed=i))
    if args.json:
        print(
            json.dumps(
                {
                    "input": str(args.input),
                    "fps": fps,
                    "frames": shots.frames,
                    "shots": [s.model_dump() for s in shots.shots],
                    "transitions": [t.model_dump() for t in shots.transitions],
                }
            )
        )
        return 0
    if args.quiet:
        for s in shots.shots:
            print(f"{s.index + 1}\t{s.start}\t{s.end}\t{s.start_tc}\t{s.end_tc}\t{s.key_frame}\t{s.key_tc}")
        return 0
    from rich.table import Table

    table = Table()
    for col in ("shot", "in", "out", "frames", "key frame", "key tc", "note"):
        table.add_column(col, justify="right")
    for s in shots.shots:
        note = "blank: tone only" if s.flat else ""
        table.add_row(str(s.index + 1), s.start_tc, s.end_tc, str(s.frames), str(s.key_frame), s.key_tc, note)
    from grade.cli.presets import data_console

    out = data_console()  # the shot list is data: stdout
    out.print(f"{args.input} — {len(shots.shots)} shots, {shots.frames} frames @ {fps:.3f} fps")
    out.print(table)
    for t in shots.transitions:
        out.print(f"{t.kind}: frames {t.start}-{t.end - 1} ({t.start_tc} - {t.end_tc})")
    return 0
