"""The hostile-input corpus, end to end through the command line (in process, no signals involved).

Each case builds its files in a fresh folder and states its expected outcome: either a correct
result (the input is merely unusual) or exit code non-zero with exactly one line on stderr,
``grade: error: ...``, naming the problem and the file. For every case, whatever the outcome:
no traceback, every file that existed before is byte-identical after (sources are never touched),
nothing new appears on failure (no partial output), and no temporary file is left anywhere.
RELIABILITY.md lists the cases and what each one found.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import opentimelineio as otio
import pytest
from clips import cli_args, make_clip, make_still, read_all

from grade.cli import main
from grade.cube import write_cube
from grade.io.atomic import TMP_MARK
from grade.lut import identity_lut
from grade.presets import build_preset, write_preset

from . import media as M


@dataclass
class Ctx:
    """The case's folder and the few ordinary files most cases need (made on first use)."""

    root: Path
    good_preset: Path

    def p(self, name: str) -> Path:
        return self.root / name

    @property
    def ref(self) -> Path:
        path = self.p("reference.png")
        return path if path.exists() else make_still(path, size=(80, 60), scene=1)

    @property
    def clip(self) -> Path:
        path = self.p("shot.mp4")
        return path if path.exists() else make_clip(path, frames=6)

    @property
    def media(self) -> Path:
        """A media folder with one reel, A001 (30 frames from 01:00:00:00), and a mild .cube look."""
        folder = self.p("media")
        if not folder.exists():
            folder.mkdir()
            make_clip(folder / "A001.mp4", frames=30, timecode="01:00:00:00", audio=False)
            write_cube(self.p("id.cube"), identity_lut(5))
        return folder

    def conform(self, edit: Path, *extra) -> list:
        return ["conform", edit, "--media", self.media, "--look", self.p("id.cube"), "-o", self.p("graded"), *extra]


@dataclass
class Case:
    id: str
    build: Callable[[Ctx], list]  # makes the files, returns the command line
    expect: str  # "ok" or "error"
    match: str = ""  # text the error line must hold (the problem)
    names: str = ""  # file name the error line must hold (the culprit)
    code: int | None = None
    outputs: tuple[str, ...] = ()  # ok: these exist and decode; error: they do not exist
    check: Callable[[Ctx, str], None] | None = None
    allow_new: tuple[str, ...] = ()  # files a failing case may leave (a complete output before a failed preview)
    group: str = "media"
    root_only: bool = False  # a folder only root may try to write into (others are refused up front)


def _frames(path: Path) -> int:
    with av.open(str(path)) as box:
        return sum(1 for _ in box.decode(video=0))


def _valid(path: Path) -> None:
    """A complete output: a still that decodes, or a video whose every frame decodes."""
    if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".tif", ".tiff"):
        assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED) is not None, path
    else:
        assert _frames(path) > 0, path


def _report(out: str) -> dict:
    return json.loads(out)


# ----------------------------------------------------------------------------------------- checks


def _check_partial(ctx: Ctx, out: str) -> None:
    r = _report(out)
    assert 0 < r["frames"] < 48 and _frames(Path(r["output"])) == r["frames"]


def _check_single(ctx: Ctx, out: str) -> None:
    assert _report(out)["frames"] == 1 == _frames(Path(_report(out)["output"]))


def _check_res_change(ctx: Ctx, out: str) -> None:
    r = _report(out)
    frames, _ = read_all(Path(r["output"]))
    assert len(frames) >= 10 and {f.shape for f in frames} == {(48, 64, 3)}  # scaled to the opening size


def _check_vfr(ctx: Ctx, out: str) -> None:
    _, src_t = read_all(ctx.p("vfr.mp4"))
    _, out_t = read_all(Path(_report(out)["output"]))
    assert out_t == pytest.approx(src_t, abs=1e-3)


def _check_tiny(size):
    def check(ctx: Ctx, out: str) -> None:
        r = _report(out)
        frames, _ = read_all(Path(r["output"]))
        assert (r["width"], r["height"]) == size and frames[0].shape[:2] == (size[1], size[0])

    return check


def _check_ten_bit(ctx: Ctx, out: str) -> None:
    r = _report(out)
    assert "10" in r["pix_fmt"], r["pix_fmt"]
    with av.open(r["output"]) as box:
        assert "10" in box.streams.video[0].codec_context.pix_fmt


def _check_444(ctx: Ctx, out: str) -> None:
    assert _report(out)["pix_fmt"].startswith("yuv444")


def _check_rotation_sar(ctx: Ctx, out: str) -> None:
    from grade.io.video import probe

    info = probe(Path(_report(out)["output"]))
    assert info.rotation in (90, -270) and info.sample_aspect_ratio == "4/3", info


def _check_raw_h264(ctx: Ctx, out: str) -> None:
    r = _report(out)
    _, times = read_all(Path(r["output"]))
    assert r["frames"] == len(times) == 12 and r["fps"] == pytest.approx(24)
    assert np.diff(times) == pytest.approx(1 / 24, abs=1e-3)  # frames keep their spacing (no collapse)


def _check_shots(frames: int):
    def check(ctx: Ctx, out: str) -> None:
        r = _report(out)
        assert r["frames"] == frames and r["shots"][0]["start"] == 0 and r["shots"][-1]["end"] == frames

    return check


def _check_reencoded(codec: str):
    def check(ctx: Ctx, out: str) -> None:
        r = _report(out)
        assert any(codec in s and "aac" in s for s in r["streams_reencoded"]), r
        with av.open(r["output"]) as box:
            assert box.streams.audio[0].codec_context.name == "aac"

    return check


def _check_flat(value: int):
    def check(ctx: Ctx, out: str) -> None:
        """A black shot takes the reference's black level, a white one its white level (1st / 99th
        percentile of its L*), never brighter / darker."""
        from grade.color import srgb_to_lab

        frames, _ = read_all(Path(_report(out)["output"]))
        ref_l = srgb_to_lab(cv2.imread(str(ctx.ref))[..., ::-1] / 255.0)[..., 0]
        level = float(np.percentile(ref_l, 1 if value == 0 else 99))
        got = float(np.mean([np.median(srgb_to_lab(f / 255.0)[..., 0]) for f in frames]))
        assert abs(got - level) < 3, (got, level)

    return check


def _check_still_shape(ctx: Ctx, out: str) -> None:
    r = _report(out)
    assert cv2.imread(r["output"]).shape[:2] == (r["height"], r["width"])


def _check_conform_inside(ctx: Ctx, out: str) -> None:
    events = _report(out)["events"]
    assert events[0]["status"] == "done"
    assert Path(events[0]["media"]).resolve().is_relative_to(ctx.media.resolve())  # never the outside file


def _check_conform_done(ctx: Ctx, out: str) -> None:
    assert [e["status"] for e in _report(out)["events"]] == ["done"]


# ---------------------------------------------------------------------------------------- builders


def _write(ctx: Ctx, name: str, data: bytes | str) -> Path:
    path = ctx.p(name)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def _grade(src: Path, ctx: Ctx, *extra, out: str | None = "out.mp4") -> list:
    return [src, "--look", ctx.ref, *(["-o", ctx.p(out)] if out else []), "--json", *extra]


def _with_ref(make_ref: Callable[[Ctx], Path]):
    return lambda ctx: [ctx.clip, "--look", make_ref(ctx), "-o", ctx.p("out.mp4"), "--json"]


def _png(name: str, img: np.ndarray):
    def make(ctx: Ctx) -> Path:
        path = ctx.p(name)
        assert cv2.imwrite(str(path), img)
        return path

    return make


def _cube(name: str, text: str):
    return lambda ctx: [ctx.clip, "--look", _write(ctx, name, text), "-o", ctx.p("out.mp4")]


def _preset(damage: str):
    def build(ctx: Ctx) -> list:
        bad = M.damaged_preset(ctx.good_preset, ctx.p(f"{damage}.gpreset"), damage)
        return [ctx.clip, "--preset", bad, "-o", ctx.p("out.mp4")]

    return build


def _outside_otio(ctx: Ctx, target: str, inside: bool) -> list:
    """An .otio whose clip names a file outside --media; with ``inside`` a same-named file is in --media."""
    secret = ctx.p("secret")
    secret.mkdir()
    make_clip(secret / "S001.mp4", frames=30, timecode="01:00:00:00", audio=False)
    if inside:
        shutil.copy(ctx.media / "A001.mp4", ctx.media / "S001.mp4")
    else:
        ctx.media  # noqa: B018  (makes the media folder and the cube)
    tl = otio.schema.Timeline(name="outside")
    track = otio.schema.Track(kind=otio.schema.TrackKind.Video)
    tl.tracks.append(track)
    rng = otio.opentime.TimeRange(otio.opentime.RationalTime(86400 + 5, 24), otio.opentime.RationalTime(5, 24))
    clip = otio.schema.Clip(name="S001", source_range=rng)
    clip.media_reference = otio.schema.ExternalReference(target_url=target.format(secret=secret))
    track.append(clip)
    path = ctx.p("outside.otio")
    otio.adapters.write_to_file(tl, str(path))
    return [*ctx.conform(path), "--json"]


def _otio_cdl(ctx: Ctx, slope: list) -> list:
    """An .otio event whose ASC CDL metadata is malformed (what an adapter or a script may write)."""
    ctx.media  # noqa: B018  (makes the media folder and the cube)
    tl = otio.schema.Timeline(name="cdl")
    track = otio.schema.Track(kind=otio.schema.TrackKind.Video)
    tl.tracks.append(track)
    rng = otio.opentime.TimeRange(otio.opentime.RationalTime(86400 + 5, 24), otio.opentime.RationalTime(5, 24))
    clip = otio.schema.Clip(name="A001", source_range=rng)
    clip.metadata["cdl"] = {"asc_sop": {"slope": slope, "offset": [0, 0, 0], "power": [1, 1, 1]}, "asc_sat": 1}
    track.append(clip)
    otio.adapters.write_to_file(tl, str(ctx.p("cut.otio")))
    return [*ctx.conform(ctx.p("cut.otio")), "--apply-cdl"]


def _bad_timecode_media(ctx: Ctx) -> list:
    folder = ctx.p("media")
    folder.mkdir()
    make_clip(folder / "A001.mkv", frames=30, timecode="not a timecode", audio=False)
    write_cube(ctx.p("id.cube"), identity_lut(5))
    return ctx.conform(M.edl(ctx.p("cut.edl"), M.event()))


def _corrupt_media(ctx: Ctx) -> list:
    """The edit's reel is in --media, but the file there is damaged."""
    folder = ctx.p("media")
    folder.mkdir()
    (folder / "A001.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(500))
    write_cube(ctx.p("id.cube"), identity_lut(5))
    return ctx.conform(M.edl(ctx.p("cut.edl"), M.event()))


def _looks(ctx: Ctx, text: str) -> list:
    make_still(ctx.p("day.png"), size=(40, 30), scene=1)
    (ctx.p("looks.toml")).write_text(text)
    return ["conform", M.edl(ctx.p("cut.edl"), M.event()), "--media", ctx.media, "--looks", ctx.p("looks.toml")]


def _stale_temp(ctx: Ctx) -> list:
    """A temporary file left by a run that was killed outright (its process is gone)."""
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = ctx.p(f".out{TMP_MARK}{int(dead.stdout)}-deadbeef.mp4")
    stale.write_bytes(b"half a file")
    return _grade(ctx.clip, ctx)


def _fifo(ctx: Ctx) -> list:
    os.mkfifo(ctx.p("pipe.mp4"))
    return _grade(ctx.p("pipe.mp4"), ctx)


# ------------------------------------------------------------------------------------------ corpus

BLACK, WHITE = np.zeros((30, 40, 3), np.uint8), np.full((30, 40, 3), 255, np.uint8)
TEXTURE = cv2.cvtColor(M.scene_frame(40, 30, 2, 1), cv2.COLOR_RGB2BGR)

MEDIA = [
    Case("empty-file", lambda c: _grade(_write(c, "empty.mp4", b""), c), "error", "empty file", "empty.mp4", 2),
    Case("truncated-moov-missing", lambda c: _grade(M.moov_missing(c.p("cut.mp4")), c), "error", "cannot", "cut.mp4"),
    Case("truncated-mid-mdat", lambda c: _grade(M.faststart_cut(c.p("cut.mp4")), c), "ok", check=_check_partial),
    Case(
        "truncated-first-packet",
        lambda c: _grade(M.first_frame_cut(c.p("cut.mp4")), c),
        "error",
        "cannot decode video",
        "cut.mp4",
    ),
    Case("header-only", lambda c: _grade(_write(c, "h.mp4", c.clip.read_bytes()[:64]), c), "error", "cannot", "h.mp4"),
    Case(
        "video-named-png",
        lambda c: _grade(_write(c, "frame.png", c.clip.read_bytes()), c, out=None),
        "error",
        "not a readable image",
        "frame.png",
    ),
    Case(
        "mp4-named-avi",
        lambda c: _grade(_write(c, "clip.avi", c.clip.read_bytes()), c, out="out.avi"),
        "ok",
        outputs=("out.avi",),
    ),
    Case("audio-only", lambda c: _grade(M.audio_only(c.p("song.m4a")), c), "error", "no video stream", "song.m4a"),
    Case("single-frame", lambda c: _grade(make_clip(c.p("one.mp4"), frames=1), c), "ok", check=_check_single),
    Case("resolution-change", lambda c: _grade(M.resolution_change(c.p("grow.ts")), c), "ok", check=_check_res_change),
    Case("vfr", lambda c: _grade(make_clip(c.p("vfr.mp4"), frames=10, vfr=True), c), "ok", check=_check_vfr),
    Case(
        "tiny-1x1",
        lambda c: _grade(make_clip(c.p("dot.mkv"), frames=4, size=(1, 1), pix_fmt="yuv444p", audio=False), c),
        "ok",
        check=_check_tiny((1, 1)),
    ),
    Case(
        "tiny-2x2",
        lambda c: _grade(make_clip(c.p("px.mp4"), frames=4, size=(2, 2), audio=False), c),
        "ok",
        check=_check_tiny((2, 2)),
    ),
    Case(
        "odd-size-3x5",
        lambda c: _grade(make_clip(c.p("odd.mkv"), frames=4, size=(3, 5), pix_fmt="yuv444p", audio=False), c),
        "ok",
        check=_check_tiny((3, 5)),
    ),
    Case(
        "huge-declared-frames",
        lambda c: _grade(M.huge_frames_in_mov(c.p("huge.mov")), c),
        "error",
        "larger than",
        "huge.mov",
        2,
    ),
    Case("huge-y4m-header", lambda c: _grade(M.huge_y4m(c.p("huge.y4m")), c), "error", "cannot read", "huge.y4m", 2),
    Case(
        "ten-bit-hevc",
        lambda c: _grade(
            make_clip(c.p("ten.mkv"), frames=4, codec="libx265", pix_fmt="yuv420p10le", audio=False),
            c,
            out="out.mkv",
        ),
        "ok",
        check=_check_ten_bit,
    ),
    Case(
        "four-four-four",
        lambda c: _grade(make_clip(c.p("full.mp4"), frames=4, pix_fmt="yuv444p", audio=False), c),
        "ok",
        check=_check_444,
    ),
    Case(
        "rotation-and-non-square-pixels",
        lambda c: _grade(make_clip(c.p("rot.mp4"), frames=4, rotation=90, sar=Fraction(4, 3)), c),
        "ok",
        check=_check_rotation_sar,
    ),
    Case(
        "random-bytes",
        lambda c: _grade(_write(c, "noise.mp4", np.random.default_rng(0).bytes(6000)), c),
        "error",
        "cannot read media",
        "noise.mp4",
    ),
    Case("text-file", lambda c: _grade(_write(c, "notes.mov", "hello " * 300), c), "error", "cannot read", "notes.mov"),
    Case("directory", lambda c: _grade(_mkdir(c, "folder.mp4"), c), "error", "directory", "folder.mp4"),
    Case("missing-file", lambda c: _grade(c.p("nowhere.mp4"), c), "error", "no such file", "nowhere.mp4"),
    Case("fifo", _fifo, "error", "not a regular file", "pipe.mp4"),
    Case("raw-h264-no-timestamps", lambda c: _grade(M.raw_h264(c.p("cam.h264")), c), "ok", check=_check_raw_h264),
    Case(
        "flac-into-mov",
        lambda c: _grade(make_clip(c.p("a.mkv"), frames=6, audio_codec="flac"), c, out="out.mov"),
        "ok",
        check=_check_reencoded("flac"),
    ),
    Case(
        "opus-into-mov",
        lambda c: _grade(make_clip(c.p("a.mkv"), frames=6, audio_codec="libopus"), c, out="out.mov"),
        "ok",
        check=_check_reencoded("opus"),
    ),
    Case("shots-raw-h264", lambda c: ["shots", M.raw_h264(c.p("cam.h264")), "--json"], "ok", check=_check_shots(12)),
    Case("shots-empty-file", lambda c: ["shots", _write(c, "none.mp4", b"")], "error", "empty file", "none.mp4"),
    Case("shots-audio-only", lambda c: ["shots", M.audio_only(c.p("a.m4a"))], "error", "no video stream", "a.m4a"),
    Case("flat-black-shot", lambda c: _grade(M.flat_clip(c.p("black.mp4"), 0), c), "ok", check=_check_flat(0)),
    Case("flat-white-shot", lambda c: _grade(M.flat_clip(c.p("white.mp4"), 255), c), "ok", check=_check_flat(255)),
]


def _mkdir(ctx: Ctx, name: str) -> Path:
    ctx.p(name).mkdir()
    return ctx.p(name)


REFERENCES = [
    Case("ref-grayscale", _with_ref(_png("grey.png", TEXTURE[..., 0])), "ok", outputs=("out.mp4",)),
    Case("ref-rgba", _with_ref(_png("rgba.png", np.dstack([TEXTURE, np.full((30, 40), 90, np.uint8)]))), "ok"),
    Case("ref-cmyk-jpeg", _with_ref(lambda c: _write(c, "cmyk.jpg", M.CMYK_JPEG)), "ok", outputs=("out.mp4",)),
    Case("ref-16-bit-png", _with_ref(_png("deep.png", TEXTURE.astype(np.uint16) * 257)), "ok"),
    Case("ref-radiance-hdr", _with_ref(_png("sky.hdr", TEXTURE.astype(np.float32) / 64)), "ok"),
    Case("ref-float-tiff", _with_ref(_png("float.tif", TEXTURE.astype(np.float32) / 255)), "ok"),
    Case(
        "ref-openexr",
        _with_ref(lambda c: _write(c, "plate.exr", b"\x76\x2f\x31\x01" + bytes(300))),
        "error",
        "OpenEXR",
        "plate.exr",
    ),
    Case("ref-1x1", _with_ref(_png("dot.png", TEXTURE[:1, :1])), "ok"),
    Case("ref-flat-black", _with_ref(_png("black.png", BLACK)), "ok"),
    Case(
        "ref-png-bomb-20000",
        _with_ref(lambda c: _write(c, "bomb.png", M.forged_png(20000, 20000))),
        "error",
        "too large",
        "bomb.png",
    ),
    Case(
        "ref-tiff-bomb-20000",
        _with_ref(lambda c: M.forged_tiff(c.p("bomb.tif"), 20000, 20000)),
        "error",
        "too large",
        "bomb.tif",
    ),
    Case(
        "ref-corrupt-jpeg",
        _with_ref(lambda c: _write(c, "bad.jpg", cv2.imencode(".jpg", TEXTURE)[1].tobytes()[:300])),
        "error",
        "not a readable image",
        "bad.jpg",
    ),
    Case("ref-is-a-video", lambda c: [c.clip, "--look", c.clip], "error", "reference is a video", "shot.mp4"),
    Case(
        "ref-video-named-jpg",
        _with_ref(lambda c: _write(c, "still.jpg", c.clip.read_bytes())),
        "error",
        "not a readable image",
        "still.jpg",
    ),
    Case("ref-empty", _with_ref(lambda c: _write(c, "void.png", b"")), "error", "empty file", "void.png"),
    Case("ref-directory", _with_ref(lambda c: _mkdir(c, "refs.png")), "error", "directory", "refs.png"),
]
for _c in REFERENCES:
    _c.group = "reference"

LOOKS = [
    Case(
        "preset-pickle",
        lambda c: [c.clip, "--preset", M.pickle_preset(c.p("evil.gpreset"))],
        "error",
        "not a grade preset",
        "evil.gpreset",
    ),
    Case("preset-truncated", _preset("truncated"), "error", "damaged", "truncated.gpreset"),
    Case("preset-wrong-hash", _preset("hash"), "error", "hash mismatch", "hash.gpreset"),
    Case("preset-unknown-version", _preset("future"), "error", "newer grade", "future.gpreset"),
    Case("preset-float8-tensor", _preset("float8"), "error", "damaged preset", "float8.gpreset"),
    Case(
        "preset-name-traversal-load",
        lambda c: [c.clip, "--preset", "../../etc/passwd"],
        "error",
        "no such preset file",
        "passwd",
    ),
    Case(
        "preset-name-traversal-save",
        lambda c: [c.clip, "--look", c.ref, "-o", c.p("out.mp4"), "--save-preset", "../evil"],
        "error",
        "invalid preset name",
        "../evil",
    ),
    Case(
        "preset-import-pickle",
        lambda c: ["presets", "import", M.pickle_preset(c.p("evil.gpreset"))],
        "error",
        "not a grade preset",
        "evil.gpreset",
    ),
    Case("cube-bad-size-line", _cube("size.cube", "LUT_3D_SIZE two\n"), "error", "line 1", "size.cube"),
    Case("cube-size-1", _cube("one.cube", "LUT_3D_SIZE 1\n0 0 0\n"), "error", "out of range", "one.cube"),
    Case(
        "cube-huge-size-no-data",
        _cube("big.cube", "LUT_3D_SIZE 256\n0 0 0\n"),
        "error",
        "needs 16777216 data lines",
        "big.cube",
    ),
    Case(
        "cube-nan",
        _cube("nan.cube", "LUT_3D_SIZE 2\n" + "0 0 0\n" * 3 + "nan 0 0\n" + "1 1 1\n" * 4),
        "error",
        "non-finite",
        "nan.cube",
    ),
    Case(
        "cube-missing-rows",
        _cube("short.cube", "LUT_3D_SIZE 2\n" + "0 0 0\n" * 7),
        "error",
        "needs 8 data lines, found 7",
        "short.cube",
    ),
    Case(
        "cube-value-beyond-float32",
        _cube("far.cube", "LUT_3D_SIZE 2\n" + "0 0 0\n" * 2 + "1e308 0 0\n" + "1 1 1\n" * 5),
        "error",
        "line 4: value out of range",
        "far.cube",
    ),
    Case("cube-binary", _cube("bin.cube", "LUT_3D_SIZE 2\n\x00\x01"), "error", "binary", "bin.cube"),
]
for _c in LOOKS:
    _c.group = "preset/LUT"

EDITS = [
    Case(
        "edl-garbage-line-ignored",
        lambda c: [*c.conform(M.edl(c.p("cut.edl"), M.event(), "this line is not an event")), "--json"],
        "ok",
        check=_check_conform_done,
    ),
    Case(
        "edl-short-event-line",
        lambda c: c.conform(M.edl(c.p("cut.edl"), "001  A001 V C 01:00:00:05")),
        "error",
        "incorrect number of fields",
        "cut.edl",
    ),
    Case(
        "edl-bad-timecode",
        lambda c: c.conform(M.edl(c.p("cut.edl"), M.event(src=("01:00:00:05", "01:00:00:99")))),
        "error",
        "frames beyond",
        "cut.edl",
    ),
    Case(
        "edl-reversed-range",
        lambda c: c.conform(M.edl(c.p("cut.edl"), M.event(src=("01:00:00:10", "01:00:00:05")))),
        "error",
        "(line 4)",
        "cut.edl",
    ),
    Case(
        "edl-event-outside-media",
        lambda c: c.conform(M.edl(c.p("cut.edl"), M.event(src=("01:00:10:00", "01:00:10:05")))),
        "error",
        "is outside A001.mp4",
        "A001.mp4",
    ),
    Case(
        "edl-event-before-media",
        lambda c: c.conform(M.edl(c.p("cut.edl"), M.event(src=("00:59:59:00", "00:59:59:05")))),
        "error",
        "source 00:59:59:00-00:59:59:05 is outside",  # in timecode, as the edit gives it
        "A001.mp4",
    ),
    Case(
        "edl-duplicate-event-numbers",
        lambda c: c.conform(
            M.edl(c.p("cut.edl"), M.event(), M.event(rec=("00:00:00:05", "00:00:00:10"))),
        ),
        "error",
        "event number 001 on line 5 repeats line 4",
        "cut.edl",
    ),
    Case(
        "edl-unknown-frame-rate",
        lambda c: [*c.conform(M.edl(c.p("cut.edl"), M.event())), "--rate", "23.5"],
        "error",
        "does not support this rate",
        "cut.edl",
    ),
    Case(
        "edl-binary",
        lambda c: c.conform(_write(c, "cut.edl", b"\x00\x01\x02 binary")),
        "error",
        "binary",
        "cut.edl",
    ),
    Case("edl-empty", lambda c: c.conform(_write(c, "cut.edl", "")), "error", "no video track", "cut.edl"),
    Case(
        "edl-unparsable-cdl",
        lambda c: [
            *c.conform(M.edl(c.p("cut.edl"), M.event(), "*ASC_SOP (1 1 nan)(0 0 0)(1 1 1)", "*ASC_SAT 1")),
            "--apply-cdl",
        ],
        "error",
        "Invalid ASC_SOP",
        "cut.edl",
    ),
    Case("otio-malformed-cdl", lambda c: _otio_cdl(c, [1, "x", 1]), "error", "malformed ASC CDL", "cut.otio"),
    Case("otio-two-value-cdl", lambda c: _otio_cdl(c, [1, 1]), "error", "malformed ASC CDL", "cut.otio"),
    Case(
        "edl-source-file-outside-media",
        lambda c: c.conform(
            M.edl(c.p("cut.edl"), M.event(reel="S001"), f"* SOURCE FILE: {c.p('secret')}/S001.mp4"),
        ),
        "error",
        "no media found",
        "S001",
    ),
    Case(
        "otio-target-outside-media",
        lambda c: _outside_otio(c, "file://{secret}/S001.mp4", inside=False),
        "error",
        "no media found (looked for file 'S001.mp4'",
        "S001",
    ),
    Case(
        "otio-target-outside-relinked-inside",
        lambda c: _outside_otio(c, "file://{secret}/../secret/S001.mp4", inside=True),
        "ok",
        check=_check_conform_inside,
    ),
    Case(
        "otio-unknown-schema",
        lambda c: c.conform(_write(c, "cut.otio", '{"OTIO_SCHEMA": "Nope.9"}')),
        "error",
        "no timeline",
        "cut.otio",
    ),
    Case("media-bad-timecode-tag", _bad_timecode_media, "error", "malformed timecode", "A001.mkv"),
    Case("media-corrupt-file", _corrupt_media, "error", "cannot read media", "A001.mp4"),
    Case(
        "looks-huge-event-range",
        lambda c: [
            *_looks(c, '[scenes.day]\nreference = "day.png"\n[[rules]]\nscene = "day"\nevents = "1-99999999999"\n'),
            "-o",
            c.p("graded"),
            "--json",
        ],
        "ok",
        check=_check_conform_done,
    ),
    Case(
        "looks-backwards-range",
        lambda c: [
            *_looks(c, '[scenes.day]\nreference = "day.png"\n[[rules]]\nscene = "day"\nevents = "9-3"\n'),
            "-o",
            c.p("graded"),
        ],
        "error",
        "runs backwards",
        "looks.toml",
    ),
    Case(
        "looks-not-toml",
        lambda c: [*_looks(c, "[scenes\nbroken = "), "-o", c.p("graded")],
        "error",
        "not valid TOML",
        "looks.toml",
    ),
]
for _c in EDITS:
    _c.group = "edit"

OUTPUTS = [
    Case(
        "output-is-input",
        lambda c: [c.clip, "--look", c.ref, "-o", c.clip, "--force"],
        "error",
        "input file itself",
        "shot.mp4",
        3,
    ),
    Case(
        "output-is-existing-folder",
        lambda c: [c.clip, "--look", c.ref, "-o", _mkdir(c, "renders")],
        "error",
        "is a folder",
        "renders",
        3,
    ),
    Case(
        "output-parent-is-a-file",
        lambda c: [c.clip, "--look", c.ref, "-o", c.ref / "out.mp4"],
        "error",
        "is a file, not a folder",
        "reference.png",
        3,
    ),
    Case(
        "output-name-255-bytes",
        lambda c: _grade(c.clip, c, out="x" * 251 + ".mp4"),
        "ok",
        outputs=("x" * 251 + ".mp4",),
    ),
    Case("output-name-256-bytes", lambda c: _grade(c.clip, c, out="y" * 252 + ".mp4"), "error", "too long", "yyyy", 3),
    Case(
        "output-under-proc",
        lambda c: [c.clip, "--look", c.ref, "-o", "/proc/graded.mp4"],
        "error",
        "failed",
        "/proc/graded.mp4",
        3,
        root_only=True,
    ),
    Case(
        "output-under-sys-read-only",
        lambda c: [c.ref, "--look", c.ref, "-o", "/sys/graded.png"],
        "error",
        "cannot write",
        "/sys/graded.png",
        3,
        root_only=True,
    ),
    Case(
        "still-output-under-proc",
        lambda c: [c.ref, "--look", c.ref, "-o", "/proc/graded.png"],
        "error",
        "cannot write /proc/graded.png",
        "/proc/graded.png",
        3,
        root_only=True,
    ),
    Case("output-qt", lambda c: _grade(c.clip, c, out="out.qt"), "ok", outputs=("out.qt",)),
    Case("output-mxf", lambda c: _grade(c.clip, c, out="out.mxf"), "error", "cannot write video as .mxf", ".mxf", 2),
    Case(
        "output-webm-with-h264",
        lambda c: [*_grade(c.clip, c, out="out.webm"), "--codec", "h264"],
        "error",
        "cannot write libx264 video into .webm",
        ".webm",
        2,
    ),
    Case(
        "preview-not-an-image",
        lambda c: [*_grade(c.clip, c), "--preview", c.p("sheet.mp4")],
        "error",
        "--preview FILE writes an image",
        "sheet.mp4",
        2,
    ),
    Case(
        "preview-fails-after-output",
        lambda c: [*_grade(c.clip, c), "--preview", "/proc/sheet.png"],
        "error",
        "the graded output is complete",
        "/proc/sheet.png",
        3,
        allow_new=("out.mp4",),
        root_only=True,
    ),
    Case("stale-temp-of-killed-run", _stale_temp, "ok", outputs=("out.mp4",)),
    Case("still-output", lambda c: _grade(c.ref, c, out="graded.png"), "ok", check=_check_still_shape),
]
for _c in OUTPUTS:
    _c.group = "output"

CASES = [*MEDIA, *REFERENCES, *LOOKS, *EDITS, *OUTPUTS]


@pytest.fixture(scope="module")
def good_preset(tmp_path_factory) -> Path:
    lut = identity_lut(9)
    lut[0] = lut[0] * 0.8 + 0.1
    path = tmp_path_factory.mktemp("preset") / "good.gpreset"
    ref, key = M.scene_frame(40, 30, 1, 1), M.scene_frame(40, 30, 2, 0)
    return write_preset(build_preset("good", mode="lut", lut=lut, reference=ref, keys=[key]), path)


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file() and not p.is_symlink()
    }


def test_the_corpus_is_large_and_distinct() -> None:
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input(case: Case, tmp_path: Path, good_preset: Path, capsys, monkeypatch) -> None:
    if case.root_only and os.geteuid() != 0:
        pytest.skip("only root gets past the writable-folder check to fail while writing")
    monkeypatch.setenv("GRADE_PRESETS", str(tmp_path / "library"))
    monkeypatch.chdir(tmp_path)
    ctx = Ctx(tmp_path, good_preset)
    args = cli_args(case.build(ctx))
    if "--json" not in args:
        args.append("-q")  # no progress bars: stderr holds the error line alone
    before = {k: v for k, v in _snapshot(tmp_path).items() if TMP_MARK not in k}  # stale ones may go
    capsys.readouterr()

    code = main(args)
    out, err = capsys.readouterr()

    assert "Traceback" not in err and "Traceback" not in out
    after = _snapshot(tmp_path)
    assert {k: after.get(k) for k in before} == before, "a file that existed before was modified or removed"
    leftovers = [p for p in tmp_path.rglob(f"*{TMP_MARK}*")] + list(Path("/proc").glob(f"*{TMP_MARK}*"))
    assert not leftovers, leftovers
    if case.expect == "ok":
        assert code == 0, err
        for name in case.outputs:
            _valid(tmp_path / name)
        if case.check is not None:
            case.check(ctx, out)
        elif out.strip().startswith("{"):
            _valid(Path(_report(out)["output"]))
        return
    lines = err.splitlines()
    assert code != 0 and len(lines) == 1 and err.endswith("\n"), err
    assert lines[0].startswith("grade: error: "), err
    assert case.match in lines[0] and case.names in lines[0], err
    assert TMP_MARK not in lines[0], err  # never the hidden temporary file's name
    if case.code is not None:
        assert code == case.code, err
    new = sorted(set(after) - set(before))
    assert new == sorted(case.allow_new), f"a failed run left files: {new}"
    for name in case.allow_new:
        _valid(tmp_path / name)  # complete, or not there at all
    for name in case.outputs:
        assert not (tmp_path / name).exists()
