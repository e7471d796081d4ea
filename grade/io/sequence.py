"""Image sequences (EXR, DPX, 16-bit TIFF, PNG) in and out, through OpenImageIO.

A sequence is named by a printf pattern (``shot.%06d.exr``), a ``#`` pattern (``shot.######.exr``) or
its folder (every image of one extension and one name pattern in it). Frame numbers are kept: the
graded sequence has the same numbers as the source, from the same start frame. A gap in the
numbering is an error naming the first missing frame, unless ``allow_gaps``.

Frames travel as float32 ``(H, W, 3)`` RGB, unclipped: scene-linear EXR values above 1.0 stay what they
are until a transform decides. Writing keeps the source's kind: half-float EXR (float where the source
was float), 10-bit DPX, 16-bit TIFF, 8- or 16-bit PNG.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from grade.errors import InputError, OutputError

SEQUENCE_EXTENSIONS = {".exr", ".dpx", ".tif", ".tiff", ".png"}
_PRINTF = re.compile(r"%0?(\d*)d")
_HASHES = re.compile(r"#+")


class Sequence(BaseModel):
    """What an image sequence holds."""

    folder: Path
    prefix: str  # the file name before the frame number
    suffix: str  # after it, extension included
    digits: int  # zero padding (0: none)
    numbers: list[int]  # frame numbers present, ascending
    width: int
    height: int
    channels: int
    format: str  # OIIO's pixel type of the first frame: half, float, uint16, uint8, ...
    bits: int  # bits per sample as stored (10 for a 10-bit DPX)
    fps: float = 24.0
    # an EXR's colour as its files state it (read; every frame must state the same unless ``--input-space``
    # says what they are) or are to state it (written): :func:`exr_statement`
    statement: tuple[str | None, str | None, tuple[float, ...] | None] | None = None
    check_statement: bool = True

    @property
    def pattern(self) -> str:
        return f"{self.prefix}%0{self.digits}d{self.suffix}" if self.digits else f"{self.prefix}%d{self.suffix}"

    def path(self, number: int) -> Path:
        return self.folder / (self.pattern % number)

    @property
    def frames(self) -> int:
        return len(self.numbers)


def is_sequence_path(path: str | Path) -> bool:
    """Whether ``path`` names an image sequence: a printf or ``#`` pattern, or a folder of images.

    >>> is_sequence_path("shot.%06d.exr"), is_sequence_path("plate.####.dpx"), is_sequence_path("still.exr")
    (True, True, False)
    """
    p = Path(path)
    return bool(_PRINTF.search(p.name) or _HASHES.search(p.name)) or p.is_dir()


def _split(name: str) -> tuple[str, str, int]:
    """``shot.%06d.exr`` / ``shot.######.exr`` -> ``("shot.", ".exr", 6)``."""
    m = _PRINTF.search(name)
    if m:
        return name[: m.start()], name[m.end() :], int(m.group(1) or 0)
    m = _HASHES.search(name)
    if m:
        return name[: m.start()], name[m.end() :], len(m.group(0))
    raise InputError(f"not a sequence pattern: {name} (use shot.%06d.exr or shot.######.exr)")


def _from_folder(folder: Path) -> tuple[str, str, int]:
    """The one sequence in a folder: the commonest name pattern of its images."""
    found: dict[tuple[str, str, int], int] = {}
    for f in folder.iterdir():
        if f.suffix.lower() not in SEQUENCE_EXTENSIONS:
            continue
        m = re.fullmatch(r"(.*?)(\d+)(\.[^.]+)", f.name)
        if m:
            key = (m.group(1), m.group(3), len(m.group(2)))
            found[key] = found.get(key, 0) + 1
    if not found:
        raise InputError(
            f"input is a directory with no image sequence in it: {folder} (EXR, DPX, TIFF or PNG files numbered like "
            "shot.000001.exr)"
        )
    return max(found, key=lambda k: found[k])


def exr_statement(spec) -> tuple[str | None, str | None, tuple[float, ...] | None]:
    """What an EXR header says of its colour: OpenImageIO's ``oiio:ColorSpace`` (a colour interop id; OIIO
    keeps only the ids it knows, so not a camera log's ``ocio:`` ids), ``grade:ColorSpace`` (the OCIO name
    ``grade`` wrote) and OpenEXR's ``chromaticities`` (8 floats), each None where absent."""
    chroma = spec.getattribute("chromaticities")
    return (
        spec.get_string_attribute("oiio:ColorSpace") or None,
        spec.get_string_attribute("grade:ColorSpace") or None,
        tuple(round(float(v), 6) for v in chroma) if chroma is not None and len(chroma) == 8 else None,
    )


def _described(statement: tuple | None) -> str:
    interop, name, chroma = statement or (None, None, None)
    return repr(name or interop) if (name or interop) else ("chromaticities " + str(chroma) if chroma else "nothing")


def find_sequence(
    path: str | Path, *, fps: float | None = None, allow_gaps: bool = False, read_statement: bool = True
) -> Sequence:
    """The sequence ``path`` names, checked: its frames exist, numbered without gaps (unless
    ``allow_gaps``), and the first one is a readable image. An EXR's colour statement is read from it
    (:func:`exr_statement`) unless ``read_statement`` is False (``--input-space`` says what the frames are).

    Raises:
        InputError: no such frames, a gap (naming the missing frame), or an unreadable first frame.
    """
    p = Path(path)
    folder, (prefix, suffix, digits) = (p, _from_folder(p)) if p.is_dir() else (p.parent, _split(p.name))
    if suffix.lower().rsplit(".", 1)[-1] not in {e[1:] for e in SEQUENCE_EXTENSIONS}:
        raise InputError(f"{p}: image sequences are EXR, DPX, TIFF or PNG, not {suffix}")
    if not folder.is_dir():
        raise InputError(f"no such folder: {folder}")
    rx = re.compile(re.escape(prefix) + (rf"(\d{{{digits},}})" if digits else r"(\d+)") + re.escape(suffix) + "$")
    numbers = sorted(int(m.group(1)) for f in folder.iterdir() if (m := rx.match(f.name)))
    if not numbers:
        raise InputError(f"no frames of {folder / (prefix + '%0' + str(digits) + 'd' + suffix)}")
    seq = Sequence(
        folder=folder, prefix=prefix, suffix=suffix, digits=digits, numbers=numbers,
        width=0, height=0, channels=0, format="", bits=0, fps=fps or 24.0,
    )  # fmt: skip
    if not allow_gaps:
        have = set(numbers)
        missing = next((n for n in range(numbers[0], numbers[-1] + 1) if n not in have), None)
        if missing is not None:
            raise InputError(
                f"{seq.path(missing).name} is missing: the sequence {seq.pattern} has a gap at frame {missing} "
                "(--allow-gaps grades the frames there are)"
            )
    spec = _spec(seq.path(numbers[0]))
    seq.width, seq.height, seq.channels = spec.width, spec.height, spec.nchannels
    seq.format = str(spec.format)
    seq.bits = spec.get_int_attribute("oiio:BitsPerSample", 0) or _bits(seq.format)
    if suffix.lower().endswith(".exr") and read_statement:  # PNG and TIFF readers state sRGB of themselves
        seq.statement = exr_statement(spec)
    seq.check_statement = read_statement and suffix.lower().endswith(".exr")
    return seq


def _bits(fmt: str) -> int:
    return {"uint8": 8, "uint16": 16, "half": 16, "float": 32}.get(fmt, 16)


def _spec(path: Path):
    import OpenImageIO as oiio

    inp = oiio.ImageInput.open(str(path))
    if inp is None:
        raise InputError(f"cannot read frame {path}: {_oiio_error(oiio)}")
    try:
        return inp.spec()
    finally:
        inp.close()


def _oiio_error(oiio) -> str:
    text = (oiio.geterror() or "not a readable image").strip().splitlines()
    return text[0] if text else "not a readable image"


def read_frame(seq: Sequence, number: int) -> np.ndarray:
    """Frame ``number`` as float32 ``(H, W, 3)`` RGB (integer files scaled to [0, 1]; floats as they are).

    Raises:
        InputError: the file is missing, damaged, or not the sequence's size.
    """
    import OpenImageIO as oiio

    path = seq.path(number)
    inp = oiio.ImageInput.open(str(path))
    if inp is None:
        raise InputError(f"cannot read frame {number} ({path}): {_oiio_error(oiio)}")
    try:
        spec = inp.spec()
        pixels = inp.read_image(0, 0, 0, min(spec.nchannels, 3), "float")
        if pixels is None or inp.has_error:
            raise InputError(f"cannot read frame {number} ({path}): {(inp.geterror() or 'damaged').splitlines()[0]}")
    finally:
        inp.close()
    if (spec.width, spec.height) != (seq.width, seq.height):
        raise InputError(f"frame {number} ({path}) is {spec.width}x{spec.height}, not {seq.width}x{seq.height}")
    if seq.check_statement and exr_statement(spec) != seq.statement:  # one sequence, one colour space
        raise InputError(
            f"frame {number} ({path}) states colour space {_described(exr_statement(spec))}, frame "
            f"{seq.numbers[0]} states {_described(seq.statement)}: give --input-space to read them all as one"
        )
    px = np.asarray(pixels, dtype=np.float32).reshape(spec.height, spec.width, -1)
    if px.shape[2] == 1:
        px = np.repeat(px, 3, axis=2)
    return np.ascontiguousarray(px[..., :3])


def output_sequence(source: Sequence, target: str | Path) -> Sequence:
    """The sequence to write for ``target`` (a pattern, or a folder: the source's names in it)."""
    t = Path(target)
    if is_sequence_path(t) and not t.is_dir():
        prefix, suffix, digits = _split(t.name)
        folder = t.parent
    else:
        folder, prefix, suffix, digits = t, source.prefix, source.suffix, source.digits
    ext = suffix.lower().rsplit(".", 1)[-1]
    if f".{ext}" not in SEQUENCE_EXTENSIONS:
        raise InputError(f"a graded sequence is written as EXR, DPX, TIFF or PNG, not {suffix}")
    return source.model_copy(update={"folder": folder, "prefix": prefix, "suffix": suffix, "digits": digits})


def video_sequence(target: str | Path, width: int, height: int, deep: bool, fps: float, first: int) -> Sequence:
    """The image sequence a video's graded frames are written as: ``target``'s pattern (``out.%06d.exr``),
    numbered from ``first`` (files as :func:`write_frame` writes them: a PNG is 8-bit from an 8-bit video,
    else 16-bit).

    Raises:
        InputError: ``target`` has no frame number in its name, or is not a sequence's kind of file.
    """
    t = Path(target)
    if t.is_dir() or not is_sequence_path(t):
        raise InputError(f"a video is written as an image sequence through a pattern, e.g. {t / 'frame.%06d.exr'}")
    prefix, suffix, digits = _split(t.name)
    if "." + suffix.lower().rsplit(".", 1)[-1] not in SEQUENCE_EXTENSIONS:
        raise InputError(f"a graded sequence is written as EXR, DPX, TIFF or PNG, not {suffix}")
    return Sequence(
        folder=t.parent, prefix=prefix, suffix=suffix, digits=digits, numbers=[first], width=width,
        height=height, channels=3, format="half", bits=16 if deep else 8, fps=fps,
    )  # fmt: skip


class SequenceWriter:
    """Graded video frames (the render's layouts: 8-bit RGBA, 16-bit RGB) written as the image sequence
    ``target`` (:func:`video_sequence`), frame after frame, into a temporary folder beside it; :meth:`publish`
    moves them all into place once every frame is written, and :meth:`discard` removes them (nothing is
    half-written). The ``encode`` / ``flush`` of :class:`grade.io.encode.FrameEncoder`, so that
    :func:`grade.io.encode.render_video` takes it as its sink."""

    def __init__(self, target: Sequence) -> None:
        import os
        import tempfile

        from grade.io.atomic import TMP_MARK

        self.target = target
        target.folder.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_MARK}{os.getpid()}-seq-", dir=target.folder))
        self.numbers: list[int] = []

    def write(self, number: int, rgb: np.ndarray) -> None:
        """Frame ``number``: float32 RGB ``(H, W, 3)``, as :func:`write_frame` writes the target's kind."""
        write_frame(self.tmp / self.target.path(number).name, rgb, self.target)
        self.numbers.append(number)

    def encode(self, pixels: np.ndarray, pts=None, time_base=None, duration=None) -> None:
        """The next frame after the last written (numbered from the target's first): integer codes, or
        float32 RGB as it is (a scene-linear pull: values above 1 and below 0 kept in an EXR)."""
        number = self.target.numbers[0] + len(self.numbers)
        if pixels.dtype == np.float32:
            self.write(number, pixels[..., :3])
            return
        scale = 65535.0 if pixels.dtype == np.uint16 else 255.0
        self.write(number, pixels[..., :3].astype(np.float32) / scale)

    def flush(self) -> None:
        pass

    def existing(self) -> list[Path]:
        """The target's frames already on disk (for the numbers written so far)."""
        return [self.target.path(n) for n in self.numbers if self.target.path(n).exists()]

    def publish(self) -> None:
        import os

        for n in self.numbers:
            os.replace(self.tmp / self.target.path(n).name, self.target.path(n))
        self.discard()

    def discard(self) -> None:
        import shutil

        shutil.rmtree(self.tmp, ignore_errors=True)


def write_frame(path: Path, rgb: np.ndarray, like: Sequence) -> None:
    """Write float32 ``(H, W, 3)`` RGB in the kind of ``like`` for this extension: EXR half (float for a
    float source), DPX 10-bit, TIFF 16-bit, PNG 16-bit (8-bit for an 8-bit source). Values are clipped to
    [0, 1] for integer files only. An EXR states ``like``'s colour (its :attr:`Sequence.statement`).

    Raises:
        OutputError: the file cannot be written.
    """
    import OpenImageIO as oiio

    ext = path.suffix.lower()
    if ext == ".exr":
        fmt, data, bits = ("float" if like.format == "float" else "half"), rgb.astype(np.float32), 0
    else:
        bits = 10 if ext == ".dpx" else (8 if ext == ".png" and like.bits <= 8 else 16)
        fmt = "uint8" if bits == 8 else "uint16"
        scale = 255.0 if bits == 8 else 65535.0
        data = (np.clip(rgb, 0, 1) * scale + 0.5).astype(np.uint8 if bits == 8 else np.uint16)
    spec = oiio.ImageSpec(rgb.shape[1], rgb.shape[0], 3, fmt)
    if bits == 10:
        spec.attribute("oiio:BitsPerSample", 10)
    if ext == ".exr" and like.statement:
        interop, name, chroma = like.statement
        if interop:
            spec.attribute("oiio:ColorSpace", interop)
        if name:
            spec.attribute("grade:ColorSpace", name)
        if chroma:
            spec.attribute("chromaticities", oiio.TypeDesc("float[8]"), tuple(chroma))
    out = oiio.ImageOutput.create(str(path))
    if out is None or not out.open(str(path), spec):
        raise OutputError(f"cannot write {path}: {_oiio_error(oiio)}")
    ok = out.write_image(np.ascontiguousarray(data))
    out.close()
    if not ok:
        raise OutputError(f"cannot write {path}: {_oiio_error(oiio)}")
