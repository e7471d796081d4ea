"""Command line: arguments -> library calls, rich progress, one-line errors. No grading logic here.

grade SHOT --look REFERENCE|LUT.cube [-o OUT] [--mode fast] [--strength S] [--regional R] [--preview PNG] ...
grade SHOT --preset NAME [--refine]
grade scene --look REFERENCE SHOT1 SHOT2 ... [--save-preset NAME]
grade shots CLIP [--json]
grade presets list | show NAME | rename OLD NEW | delete NAME | export NAME --cube F | import FILE
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from pydantic import ValidationError

from grade.cli.commands import raise_interrupt, run_conform, run_grade, run_presets, run_scene, run_shots
from grade.cli.parsers import (
    ENV_LIBRARY,
    SUBCOMMANDS,
    conform_parser,
    grade_parser,
    presets_parser,
    scene_parser,
    shots_parser,
)
from grade.cli.progress import LineProgress, RichProgress, make_progress
from grade.errors import GradeError, Interrupted, as_flags

__all__ = [
    "ENV_LIBRARY",
    "SUBCOMMANDS",
    "LineProgress",
    "RichProgress",
    "conform_parser",
    "entry",
    "grade_parser",
    "main",
    "make_progress",
    "presets_parser",
    "scene_parser",
    "shots_parser",
]


def _review_parser():
    from grade.review.cli import review_parser  # imports no web server (only run_review does)

    return review_parser()


def _run_review(args, console) -> int:
    from grade.review.cli import run_review

    return run_review(args)


def _threads() -> int:
    """torch's threads: ``OMP_NUM_THREADS`` where the user set it (1 makes a retrain bit-identical: the
    training otherwise times its threads against one and keeps the faster, which follows the load), else
    the cores, up to 8."""
    try:
        wanted = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        wanted = 0
    return wanted if wanted >= 1 else max(1, min(8, os.cpu_count() or 1))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from rich.console import Console

    console = Console(stderr=True, soft_wrap=True)  # messages in a log are not wrapped at 80 columns
    parsers = {
        "shots": shots_parser,
        "scene": scene_parser,
        "presets": presets_parser,
        "conform": conform_parser,
        "review": _review_parser,
    }
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
    old = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        import torch

        torch.set_num_threads(_threads())
        runner = {
            "shots": run_shots,
            "scene": run_scene,
            "presets": run_presets,
            "conform": run_conform,
            "review": _run_review,
            "grade": run_grade,
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
        # a conform keeps the clips it finished (and a grade of several inputs the outputs it published)
        what = (
            "clips already conformed are kept: run the same command to resume"
            if command == "conform"
            else "no half-written output was left"
        )
        print(f"grade: error: {Interrupted(f'interrupted; {what}')}", file=sys.stderr)
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
    consistent), so the process leaves at once rather than wait for an interpreter shutdown among the
    interrupted stage's leftover threads (decoders, OpenMP). The render itself waits for its decode and
    encode stages before closing their files (:func:`grade.io.encode.render_video`): closing them under
    a running stage was what crashed interrupted runs in CI (SIGSEGV).
    """
    code = main()
    if code == Interrupted.exit_code:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise SystemExit(code)
