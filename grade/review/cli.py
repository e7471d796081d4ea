"""``grade review CLIP --look REF [--port N] [--no-open]``: the review page's command.

The parser needs nothing beyond the standard library (``grade --help`` and ``grade help review`` do
not import the web server); :func:`run_review` imports Starlette and uvicorn (the ``review`` extra).
"""

from __future__ import annotations

import argparse
import secrets
import socket
import sys
import threading
import webbrowser
from pathlib import Path

from grade.cli.parsers import Parser, grading_options
from grade.errors import InputError

# grading options that the review cannot honour yet: refused in one line rather than ignored
_UNSUPPORTED = {
    "refine": "--refine",
    "save_preset": "--save-preset (use the page's 'save preset')",
    "preview": "--preview",
}


def review_parser() -> argparse.ArgumentParser:
    """The parser of ``grade review``: the single-shot command's grading options, ``--look`` repeatable."""
    p = Parser(
        prog="grade review",
        conflict_handler="resolve",  # our --look (repeatable) replaces the grading options' one
        description="Open a local page that shows a clip's shots before and after the look (a wipe, scopes), "
        "with per-shot controls, a render button and 'save preset'. Stop it with Ctrl-C.",
    )
    p.add_argument("input", type=Path, nargs="?", help="the video to review (or upload one on the page)")
    p.add_argument("-o", "--output", type=Path, help="where a render writes (default: <stem>.graded.<ext> beside it)")
    grading_options(p)
    p.add_argument(
        "--look",
        type=Path,
        action="append",
        metavar="REF",
        help="reference still (or a .cube LUT); repeat it to choose among several on the page",
    )
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    p.add_argument("--no-open", dest="open", action="store_false", help="print the address, open no browser")
    p.add_argument(
        "--max-upload-mb", type=int, default=2048, metavar="MB", help="largest upload on the page (default 2048 MiB)"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print only the address")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    return p


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_session(args: argparse.Namespace):
    """The :class:`grade.review.session.ReviewSession` of the command's arguments (checks them all)."""
    from grade.review.colour import COLOUR_FIELDS
    from grade.review.session import ReviewSession

    for field, flag in _UNSUPPORTED.items():
        if getattr(args, field, None):
            raise InputError(f"review: {flag} is not supported by the review page (grade the clip with `grade`)")
    if not 0 <= args.port <= 65535:
        raise InputError(f"--port: 0 to 65535, got {args.port}")
    if args.max_upload_mb < 1:
        raise InputError(f"--max-upload-mb: at least 1, got {args.max_upload_mb}")
    looks = list(args.look or [])
    if args.input is not None and not looks and args.preset is None:
        raise InputError("no look given: use --look REFERENCE (a still or a .cube LUT) or --preset NAME")
    fit = {"seed": args.seed, "steps": args.steps, "look_side": args.look_side, "device": args.device}
    render = {"codec": args.codec, "crf": args.crf, "force": args.force or None, "strict": args.strict or None}
    if not args.stabilise:
        render["stabilise"] = False
    return ReviewSession(
        [args.input] if args.input is not None else [],
        looks,
        preset=args.preset,
        mode=args.mode,
        strength=args.strength,
        regional=args.regional,
        fit=fit,
        render=render,
        output=args.output,
        library=args.library,
        max_upload=args.max_upload_mb * 1024 * 1024,
        colour={f: getattr(args, f, None) for f in COLOUR_FIELDS},
    )


def run_review(args: argparse.Namespace) -> int:
    """Serve the page until Ctrl-C (exit 130, the project's code for an interrupt); the temporary
    folder (uploads, downloads) is removed on the way out. The first line on stdout is the address."""
    try:
        import uvicorn

        from grade.review.server import make_app
    except ImportError as e:
        why = f"grade review needs the review extra: pip install 'grade[review]' (missing {e.name})"
        raise InputError(why) from None
    session = make_session(args)
    try:
        if args.port:  # a port in use: one line, before uvicorn logs its own
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.bind(("127.0.0.1", args.port))
            except OSError as e:
                raise InputError(f"--port: cannot listen on 127.0.0.1:{args.port} ({e.strerror or e})") from None
        port = args.port or _free_port()
        token = secrets.token_urlsafe(24)
        app = make_app(session, token)
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", access_log=False, timeout_graceful_shutdown=3
        )
        server = uvicorn.Server(config)
        # the server runs in a thread: Ctrl-C (and SIGTERM, which grade's main turns into it) reaches this one
        thread = threading.Thread(target=server.run, name="review-server", daemon=True)
        thread.start()
        try:
            while not server.started and thread.is_alive():
                thread.join(0.02)
            if not server.started:
                raise InputError(f"--port: cannot listen on 127.0.0.1:{port} (in use?)")
            url = f"http://127.0.0.1:{port}/?token={token}"
            print(f"review: {url}", flush=True)
            if not args.quiet:
                print("Ctrl-C stops the server.", file=sys.stderr, flush=True)
            if session.clips():  # detect the shots while the browser starts
                threading.Thread(target=_warm, args=(session,), daemon=True).start()
            if args.open:
                webbrowser.open(url)
            while thread.is_alive():
                thread.join(0.25)
            return 0
        finally:
            server.should_exit = True
            thread.join(10)
    except KeyboardInterrupt:
        print("grade: review stopped", file=sys.stderr, flush=True)
        return 130
    finally:
        session.close()


def _warm(session) -> None:
    """Shots and the first shot's picture ahead of the first request (errors show on the page instead)."""
    try:
        clip = session.clips()[0].id
        session.shot_list(clip)
        session.picture(clip, 0, None, "wipe")
    except Exception:
        pass
