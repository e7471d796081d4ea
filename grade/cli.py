"""Command line: arguments -> library calls, rich progress, one-line errors. No grading logic here.

grade SHOT --look REFERENCE|LUT.cube [-o OUT] [--mode fast] [--strength S] [--regional R] [--preview PNG] ...
grade SHOT --preset NAME [--refine]
grade scene --look REFERENCE SHOT1 SHOT2 ... [--save-preset NAME]
grade shots CLIP [--json]
grade presets list | show NAME | rename OLD NEW | delete NAME | export NAME --cube F | import FILE
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from pydantic import ValidationError

from grade import __version__
from grade.errors import GradeError, InputError, Interrupted, as_flags

ENV_LIBRARY = "GRADE_PRESETS"

SUBCOMMANDS = ("shots", "scene", "presets", "conform")


def _positive_float01(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text}") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1: {text}")
    return v


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage + message)
        self.exit(2, f"grade: error: {message}\n")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summary")
    p.add_argument("--json", action="store_true", help="print a machine-readable report on stdout")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")


def _grading_options(p: argparse.ArgumentParser) -> None:
    """Options shared by ``grade`` and ``grade scene``."""
    p.add_argument(
        "--look", type=Path, metavar="REF", help="reference still whose look to take, or a .cube 3D LUT to apply"
    )
    p.add_argument("--preset", metavar="NAME", help="grade with a saved preset (library name or .gpreset path)")
    p.add_argument(
        "--refine", action="store_true", help="with --preset: fine-tune it on this footage's key frames (fast)"
    )
    p.add_argument("--save-preset", metavar="NAME", help="save the look as a preset (one look for all shots)")
    p.add_argument("--scene", help="scene name stored in the saved preset")
    p.add_argument("--notes", default="", help="notes stored in the saved preset")
    p.add_argument(
        "--library",
        type=Path,
        metavar="DIR",
        help=f"presets directory (default: ${ENV_LIBRARY} or the platform's data directory)",
    )
    p.add_argument(
        "--mode",
        choices=["fast", "learned"],
        default="learned",
        help="learned (default): per shot, one colour map per material of the key frame, trained (~6 s on 2 CPU "
        "cores) on top of the global transfer so that each material takes the colours of the reference's "
        "matching content; fast: the global colour transfer alone (instant previews)",
    )
    p.add_argument("--steps", type=int, help="learned mode: training steps per shot (default 120; 40 with --refine)")
    p.add_argument(
        "--look-side",
        type=int,
        metavar="PX",
        help="learned mode: long side the look is fitted and evaluated at (default 192)",
    )
    p.add_argument("--strength", type=_positive_float01, default=1.0, help="blend of the grade, 0..1 (default 1)")
    p.add_argument(
        "--regional",
        type=_positive_float01,
        default=1.0,
        help="learned looks: 0 is the global look of fast mode, 1 the full per-material look (default 1)",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="a damaged input (a truncated or cut file: decoding ends early) is an error, and nothing is written",
    )
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--codec", help="video codec (h264, hevc, prores, ffv1, vp9, av1 or an FFmpeg encoder name)")
    p.add_argument("--crf", type=int, help="quality for CRF codecs (lower is better; default 16 for H.264)")
    p.add_argument(
        "--preview", type=Path, metavar="PNG", help="write a contact sheet: reference, key frames before/after"
    )
    p.add_argument(
        "--no-stabilise",
        dest="stabilise",
        action="store_false",
        help="learned looks: no temporal stabilisation (for comparison; may flicker)",
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing output or preset")
    p.add_argument("--seed", type=int, default=0, help="random seed (results are deterministic for a seed)")


def grade_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="grade",
        usage="grade INPUT --look REF|--preset NAME [options]\n       grade {shots,scene,presets,conform,help} ...",
        description="Grade a shot (video or still) to the look of a reference still, a .cube LUT or a preset.",
        epilog="commands:\n  shots CLIP      list shots, key frames and transitions\n"
        "  scene SHOT...   grade several shots with one look\n  presets         manage saved looks\n"
        "  conform EDIT    grade a whole edit (EDL, FCP XML, OTIO)\n  help [COMMAND]  this help, or a command's",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", type=Path, help="video or still to grade (never modified)")
    p.add_argument("-o", "--output", type=Path, help="output path (default: <stem>.graded.<ext> beside the input)")
    _grading_options(p)
    p.add_argument("--version", action="version", version=f"grade {__version__}")
    _common(p)
    return p


def scene_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="grade scene",
        description="Grade the shots of one scene with one look trained on all their key frames together.",
    )
    p.add_argument("inputs", type=Path, nargs="+", help="videos or stills of the scene (never modified)")
    p.add_argument("--output-dir", type=Path, help="folder for the graded files (default: beside each input)")
    _grading_options(p)
    _common(p)
    return p


def conform_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="grade conform",
        description="Grade every event of an edit (EDL, FCP 7 XML, .otio) into graded clips and a relinkable edit.",
    )
    p.add_argument("edit", type=Path, help="the edit: .edl, .xml, .fcpxml or .otio")
    p.add_argument(
        "--media", type=Path, action="append", required=True, metavar="DIR", help="media folder (repeatable)"
    )
    p.add_argument("--looks", type=Path, metavar="TOML", help="scenes and the rules that map events to them")
    p.add_argument("-o", "--output-dir", type=Path, required=True, help="folder for graded clips, job file and edits")
    p.add_argument("--handles", type=int, default=12, help="extra frames each side of an event (default 12)")
    p.add_argument("--match", default="file,clip,reel", help="relink order: file, clip, reel (default file,clip,reel)")
    p.add_argument("--skip-missing", action="store_true", help="skip events without media instead of stopping")
    p.add_argument("--apply-cdl", action="store_true", help="apply each event's ASC CDL from the edit before the look")
    p.add_argument("--rate", type=float, help="frame rate of an EDL (default 24; other formats carry theirs)")
    p.add_argument("--jobs", type=int, default=1, help="render events in N parallel processes (default 1)")
    p.add_argument("--assemble", type=Path, metavar="FILE", help="also render the whole timeline (cuts, dissolves)")
    _grading_options(p)
    _common(p)
    return p


def presets_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="grade presets", description="List, inspect, rename, delete, export and import presets.")
    p.add_argument(
        "--library",
        type=Path,
        metavar="DIR",
        help=f"presets directory (default: ${ENV_LIBRARY} or the platform's data directory)",
    )
    _common(p)
    sub = p.add_subparsers(dest="action", required=True, parser_class=_Parser)
    sub.add_parser("list", help="list the presets")
    show = sub.add_parser("show", help="print a preset's manifest")
    show.add_argument("name", help="preset name (or a .gpreset file)")
    show.add_argument("--preview", type=Path, metavar="PNG", help="write the reference and key frames before/after")
    show.add_argument("--force", action="store_true")
    ren = sub.add_parser("rename", help="rename a preset")
    ren.add_argument("name", help="the preset's current name")
    ren.add_argument("new_name", help="its new name (letters, digits, _ . + -)")
    ren.add_argument("--force", action="store_true")
    dele = sub.add_parser("delete", help="delete a preset")
    dele.add_argument("name", help="preset to delete")
    exp = sub.add_parser("export", help="export a preset as a .cube 3D LUT (and/or an ASC CDL)")
    exp.add_argument("name", help="preset to export (name or .gpreset file)")
    exp.add_argument("--cube", type=Path, metavar="FILE", help="the .cube file to write")
    exp.add_argument("--size", type=int, choices=[17, 33, 65], default=33, help="points per axis (default 33)")
    exp.add_argument("--cdl", type=Path, metavar="FILE", help="also write the best-fitting ASC CDL (.cc)")
    exp.add_argument("--force", action="store_true")
    imp = sub.add_parser("import", help="add a .gpreset file or a .cube LUT to the library")
    imp.add_argument("file", type=Path, help="a .gpreset or .cube file to add to the library")
    imp.add_argument("--name", help="name in the library (default: the file's)")
    imp.add_argument("--force", action="store_true")
    for sp in sub.choices.values():
        _common(sp)
        sp.add_argument("--library", type=Path, metavar="DIR", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return p


def shots_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="grade shots", description="List the shots of a clip with timecodes and key frames.")
    p.add_argument("input", type=Path, help="video to analyse")
    _common(p)
    return p


class RichProgress:
    """Draws one rich progress bar per stage (with ETA) on stderr."""

    def __init__(self, console) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]{task.description:<8}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )

        self._started = False

    def __enter__(self) -> RichProgress:
        return self

    def __exit__(self, *exc) -> None:
        if self._started:  # started on the first stage: an early error stays a single line
            self._progress.stop()

    @contextlib.contextmanager
    def stage(self, name: str, total: int | None) -> Iterator:
        progress = self._progress
        if not self._started:
            progress.start()
            self._started = True
        task_id = progress.add_task(name, total=total, info="")

        class _Task:
            def advance(self, n: int = 1) -> None:
                progress.advance(task_id, n)

            def update(self, completed=None, total=None, info=None) -> None:
                kw = {k: v for k, v in (("completed", completed), ("total", total), ("info", info)) if v is not None}
                progress.update(task_id, **kw)

        try:
            yield _Task()
        finally:
            t = next((t for t in progress.tasks if t.id == task_id), None)  # stages may overlap
            if t is not None and t.total is not None and t.completed < t.total:
                progress.update(task_id, total=t.completed)  # estimates were high: show it done


class LineProgress:
    """Progress without a terminal (a log file, CI, a pipe): plain lines on stderr, at most one every
    ``every`` seconds per stage, and one when a stage ends: ``render 120/720 17% 0:12 ETA 1:00``."""

    def __init__(self, stream=None, every: float = 5.0) -> None:
        self.stream = stream or sys.stderr
        self.every = every

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc) -> None:
        pass

    @contextlib.contextmanager
    def stage(self, name: str, total: int | None) -> Iterator:
        state = {"done": 0, "total": total, "info": "", "shown": 0.0}
        t0 = time.monotonic()
        out = self.stream

        def clock(seconds: float) -> str:
            m, s = divmod(int(seconds), 60)
            return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"

        def show(force: bool = False) -> None:
            now = time.monotonic()
            if not force and now - state["shown"] < self.every:
                return
            state["shown"] = now
            done, tot, spent = state["done"], state["total"], now - t0
            line = f"{name} {done}" + (f"/{tot} {100 * done // max(1, tot)}%" if tot else "") + f" {clock(spent)}"
            if tot and 0 < done < tot:
                line += f" ETA {clock(spent / done * (tot - done))}"
            if state["info"]:
                line += f"  {state['info']}"
            print(line, file=out, flush=True)

        class _Task:
            def advance(self, n: int = 1) -> None:
                state["done"] += n
                show()

            def update(self, completed=None, total=None, info=None) -> None:
                if completed is not None:
                    state["done"] = completed
                if total is not None:
                    state["total"] = total
                if info is not None:
                    state["info"] = info
                show()

        state["shown"] = time.monotonic()  # the first line after `every` seconds, or at the end
        try:
            yield _Task()
        finally:
            if state["total"] is not None and state["done"] < state["total"]:
                state["total"] = state["done"]
            show(force=True)


def make_progress(console) -> RichProgress | LineProgress:
    """Bars on a terminal, plain periodic lines otherwise."""
    return RichProgress(console) if console.is_terminal else LineProgress()


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _options(args: argparse.Namespace, **extra):
    from grade.pipeline import GradeOptions

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
        **extra,
    )


def _check_look_args(args: argparse.Namespace) -> None:
    if args.look is None and args.preset is None:
        raise InputError("no look given: use --look REFERENCE (a still or a .cube LUT) or --preset NAME")
    if args.look is not None and args.preset is not None and not args.refine:
        raise InputError("--look and --preset together only with --refine (fine-tune the preset toward REFERENCE)")


def _run_graded(args: argparse.Namespace, console, run) -> list:
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


def _run_grade(args: argparse.Namespace, console) -> int:
    from grade.pipeline import grade_file

    _check_look_args(args)
    options = _options(args)
    t0 = time.perf_counter()
    reports = _run_graded(args, console, lambda pr: [grade_file(args.input, args.look, options, args.output, pr)])
    return _finish(console, args, reports, time.perf_counter() - t0, single=True)


def _run_scene(args: argparse.Namespace, console) -> int:
    from grade.pipeline import grade_files

    _check_look_args(args)
    options = _options(args, joint=True, output_dir=args.output_dir)
    t0 = time.perf_counter()
    reports = _run_graded(args, console, lambda pr: grade_files(args.inputs, args.look, options, None, pr))
    return _finish(console, args, reports, time.perf_counter() - t0, single=False)


def _run_conform(args: argparse.Namespace, console) -> int:
    from grade.conform import ConformSettings, run_conform

    if args.save_preset or args.refine:
        raise InputError("conform: scenes keep their looks in the output folder; --save-preset/--refine do not apply")
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
    )
    if args.preset is not None and args.look is not None:
        raise InputError("give the default look as --look or --preset, not both")
    options = _options(args, jobs=args.jobs)
    t0 = time.perf_counter()
    report = _run_graded(args, console, lambda pr: run_conform(args.edit, args.output_dir, settings, options, pr))
    elapsed = time.perf_counter() - t0
    if args.json:
        data = report.model_dump(mode="json")
        data["seconds"] = round(elapsed, 3)
        print(json.dumps(data))
        return 0
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
    return 0


def _run_presets(args: argparse.Namespace, console) -> int:
    from grade import preset_cli

    return preset_cli.run(args, console)


def _run_shots(args: argparse.Namespace, console) -> int:
    from grade.io.video import probe
    from grade.shots import detect_shots

    info = probe(args.input)
    if args.quiet or args.json:
        shots = detect_shots(args.input, info)
    else:
        with make_progress(console) as progress, progress.stage("analyse", info.frames) as task:
            shots = detect_shots(args.input, info, on_frame=lambda i: task.update(completed=i))
    if args.json:
        print(
            json.dumps(
                {
                    "input": str(args.input),
                    "fps": info.fps,
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
    from grade.preset_cli import data_console

    out = data_console()  # the shot list is data: stdout
    out.print(f"{args.input} — {len(shots.shots)} shots, {shots.frames} frames @ {info.fps:.3f} fps")
    out.print(table)
    for t in shots.transitions:
        out.print(f"{t.kind}: frames {t.start}-{t.end - 1} ({t.start_tc} - {t.end_tc})")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from rich.console import Console

    console = Console(stderr=True, soft_wrap=True)  # messages in a log are not wrapped at 80 columns
    parsers = {"shots": shots_parser, "scene": scene_parser, "presets": presets_parser, "conform": conform_parser}
    if argv and argv[0] == "help" and not Path(argv[0]).is_file():  # grade help [COMMAND]
        topic = argv[1] if len(argv) > 1 else None
        if topic is not None and topic not in parsers:
            print(f"grade: error: no command {topic!r} (commands: {', '.join(parsers)})", file=sys.stderr)
            return 2
        (parsers[topic]() if topic else grade_parser()).print_help(sys.stdout)
        return 0
    if argv and argv[0] in SUBCOMMANDS and not Path(argv[0]).is_file():
        command = argv.pop(0)
        parser = parsers[command]()
    else:
        command, parser = "grade", grade_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error already printed on one line
        return int(e.code or 0)
    debug = args.debug or os.environ.get("GRADE_DEBUG") == "1"
    old = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        import torch

        torch.set_num_threads(max(1, min(8, os.cpu_count() or 1)))
        runner = {
            "shots": _run_shots,
            "scene": _run_scene,
            "presets": _run_presets,
            "conform": _run_conform,
            "grade": _run_grade,
        }[command]
        return runner(args, console)
    except GradeError as e:
        if debug:
            raise
        print(f"grade: error: {as_flags(str(e))}", file=sys.stderr)  # the library's settings as our flags
        return e.exit_code
    except ValidationError as e:  # an option out of range that argparse let through
        if debug:
            raise
        first = e.errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ())) or "option"
        print(f"grade: error: --{where.replace('_', '-')}: {first.get('msg', 'invalid value')}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"grade: error: {Interrupted('interrupted; no output was written')}", file=sys.stderr)
        return Interrupted.exit_code
    except MemoryError:
        hint = "fewer --jobs, " if command == "conform" else ""
        print(f"grade: error: out of memory (try {hint}--mode fast, or a smaller reference or input)", file=sys.stderr)
        return 1
    except Exception as e:  # a bug: still one line unless --debug
        if debug:
            raise
        why = " ".join(str(e).split())
        msg = f"internal error: {type(e).__name__}: {why} (run with --debug for details)"
        print(f"grade: error: {msg}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, old)


def entry() -> None:
    """The ``grade`` command: :func:`main`, then exit.

    After an interruption everything is already cleaned up (temporary files removed, job files
    consistent), so the process leaves at once: a normal interpreter shutdown can crash (SIGSEGV,
    seen once in CI) while decoder or OpenMP threads from the interrupted stage are still alive.
    """
    code = main()
    if code == Interrupted.exit_code:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise SystemExit(code)


if __name__ == "__main__":
    entry()
