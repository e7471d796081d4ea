"""The command line's parsers: the single-shot command and its subcommands (arguments only)."""

from __future__ import annotations

import argparse
from pathlib import Path

from grade import __version__

ENV_LIBRARY = "GRADE_PRESETS"

SUBCOMMANDS = ("shots", "scene", "presets", "conform", "review")


def _positive_float01(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text}") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1: {text}")
    return v


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage + message)
        self.exit(2, f"grade: error: {message}\n")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summary")
    p.add_argument("--json", action="store_true", help="print a machine-readable report on stdout")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")


def grading_options(p: argparse.ArgumentParser) -> None:
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
        help="learned (default): per shot, one colour map per material of the key frame, trained (~10 s on 2 CPU "
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
    _footage_args(p)
    p.add_argument(
        "--output-space",
        metavar="NAME",
        help="colour space written (default: Rec.709 through the ACES view for log input, else the input's own)",
    )
    p.add_argument("--keep-log", action="store_true", help="write the graded picture back in the input's space")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument(
        "--codec",
        help="video codec: h264, hevc, prores, ffv1, vp9, av1, the finishing codecs prores4444, prores422hq, "
        "dnxhr_hqx (10-bit), dnxhr_hq, hevc10, or an FFmpeg encoder name",
    )
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
    p = Parser(
        prog="grade",
        usage="grade INPUT --look REF|--preset NAME [options]\n       grade {shots,scene,presets,conform,help} ...",
        description="Grade a shot (video or still) to the look of a reference still, a .cube LUT or a preset.",
        epilog="commands:\n  shots CLIP      list shots, key frames and transitions\n"
        "  scene SHOT...   grade several shots with one look\n  presets         manage saved looks\n"
        "  conform EDIT    grade a whole edit (EDL, FCP XML, OTIO)\n"
        "  review CLIP     a local page: shots, a before/after wipe and scopes before the render\n"
        "  help [COMMAND]  this help, or a command's",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", type=Path, help="video or still to grade (never modified)")
    p.add_argument("-o", "--output", type=Path, help="output path (default: <stem>.graded.<ext> beside the input)")
    grading_options(p)
    p.add_argument("--version", action="version", version=f"grade {__version__}")
    _common(p)
    return p


def scene_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="grade scene",
        description="Grade the shots of one scene with one look trained on all their key frames together.",
    )
    p.add_argument("inputs", type=Path, nargs="+", help="videos or stills of the scene (never modified)")
    p.add_argument("--output-dir", type=Path, help="folder for the graded files (default: beside each input)")
    grading_options(p)
    _common(p)
    return p


def byte_size(text: str) -> int:
    """``2G``, ``500M``, ``64K`` or a plain number of bytes, as an int (binary units).

    >>> byte_size("2G"), byte_size("1.5k"), byte_size("100")
    (2147483648, 1536, 100)
    """
    units = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    try:
        value = float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 2G, 500M)") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 2G, 500M)")
    return int(value)


def conform_parser() -> argparse.ArgumentParser:
    p = Parser(
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
    p.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="where events render: local (--jobs N processes, default) or ray (Ray tasks; needs grade[ray])",
    )
    p.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="--engine ray: the running Ray cluster (e.g. ray://head:10001 or auto; default: a local instance); "
        "-o must be shared storage every node sees at the same path",
    )
    p.add_argument(
        "--gpus-per-task",
        type=float,
        default=0,
        metavar="N",
        help="--engine ray: GPUs each render task reserves (default 0: CPU; the cluster must have them)",
    )
    p.add_argument(
        "--transfer",
        choices=["shared", "object-store"],
        default="shared",
        help="--engine ray: clips and media through the shared -o folder (default) or Ray's object store "
        "(clusters without shared storage)",
    )
    p.add_argument(
        "--transfer-limit",
        type=byte_size,
        default=2 * 1024**3,
        metavar="SIZE",
        help="--transfer object-store: largest media file sent to a task (default 2G; K, M, G suffixes)",
    )
    farm = p.add_argument_group("render farms (any manager: Deadline, OpenCue, Slurm, a shell loop)")
    farm.add_argument(
        "--list-events", action="store_true", help="list the events (number, scene, frames, cost) and stop"
    )
    farm.add_argument("--shard", metavar="I/N", help="render shard I of N (events dealt out by cost; 1-based)")
    farm.add_argument("--events", metavar="LIST", help="render only these events, e.g. 3,7-12")
    farm.add_argument(
        "--finish", action="store_true", help="once every shard is done: write the graded edits and --assemble"
    )
    grading_options(p)
    _common(p)
    return p


def presets_parser() -> argparse.ArgumentParser:
    p = Parser(prog="grade presets", description="List, inspect, rename, delete, export and import presets.")
    p.add_argument(
        "--library",
        type=Path,
        metavar="DIR",
        help=f"presets directory (default: ${ENV_LIBRARY} or the platform's data directory)",
    )
    _common(p)
    sub = p.add_subparsers(dest="action", required=True, parser_class=Parser)
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
    exp.add_argument(
        "--cube-input",
        metavar="NAME",
        help="colour-managed presets: bake the input transform in (the LUT takes this space, e.g. slog3)",
    )
    exp.add_argument(
        "--cube-output",
        metavar="NAME",
        help="colour-managed presets: bake the output transform in (the LUT gives this space, e.g. rec709)",
    )
    exp.add_argument("--force", action="store_true")
    imp = sub.add_parser("import", help="add a .gpreset file or a .cube LUT to the library")
    imp.add_argument("file", type=Path, help="a .gpreset or .cube file to add to the library")
    imp.add_argument("--name", help="name in the library (default: the file's)")
    imp.add_argument("--force", action="store_true")
    for sp in sub.choices.values():
        _common(sp)
        sp.add_argument("--library", type=Path, metavar="DIR", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return p


def _footage_args(p: argparse.ArgumentParser) -> None:
    """What the footage is: its colour space and the working space (where a sequence is analysed too), an
    OCIO config, and an image sequence's rate and gaps (``grade`` and ``grade shots``)."""
    p.add_argument(
        "--input-space",
        metavar="NAME",
        help="the footage's colour space: an OCIO name or rec709, srgb, slog3, logc3, logc4, vlog, clog3, log3g10, "
        "applelog, davinci-intermediate, acescct, linear-rec709, rec2100-pq, rec2100-hlg (default: PQ/HLG from "
        "the container's tags, else Rec.709 display video, graded without colour management)",
    )
    p.add_argument(
        "--working-space", metavar="NAME", help="colour space the look is fitted and applied in (default ACEScct)"
    )
    p.add_argument("--fps", type=float, help="image sequences (shot.%%06d.exr, a folder): frame rate (default 24)")
    p.add_argument(
        "--allow-gaps", action="store_true", help="image sequences: grade the frames there are when numbers are missing"
    )
    p.add_argument("--ocio-config", metavar="FILE", help="an OCIO config (file or ocio://...; default: ACES studio)")


def shots_parser() -> argparse.ArgumentParser:
    p = Parser(prog="grade shots", description="List the shots of a clip with timecodes and key frames.")
    p.add_argument("input", type=Path, help="video or image sequence (shot.%%06d.exr, a folder) to analyse")
    _footage_args(p)
    _common(p)
    return p
