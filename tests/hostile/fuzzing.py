"""Generators of hostile inputs for the parsers of everything grade reads from disk, and the
contract each parser keeps: refuse with :class:`~grade.errors.InputError`, or return a valid result.

Shared by the property tests (``tests/hostile/test_hostile_parsers.py``, a small budget) and the
fuzzing harness (``benchmarks/fuzz.py``, a large one). A target takes the generated input and a
scratch folder and returns ``"refused"`` or ``"accepted"``; any other exception is a finding.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np
import torch
from hypothesis import strategies as st

from grade.errors import InputError

# ------------------------------------------------------------------------------------ mutations


@st.composite
def mutated_bytes(draw, seed: bytes, hot: int | None = None) -> bytes:
    """``seed`` with a few byte-level edits; ``hot`` bytes at the start get half of them (a header)."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            data += draw(st.binary(min_size=1, max_size=8))
            continue
        limit = len(data) - 1
        if hot and draw(st.booleans()):
            limit = min(limit, hot)
        pos = draw(st.integers(0, limit))
        op = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete", "digit"]))
        if op == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[pos] = draw(st.integers(0, 255))
        elif op == "truncate":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 16))]
        else:  # numbers are where parsers are most fragile
            data[pos] = ord(draw(st.sampled_from("0123456789-+.eE")))
    return bytes(data)


TOKENS = [
    "0",
    "1",
    "-1",
    "0.5",
    "1e999",
    "-1e-999",
    "nan",
    "inf",
    "-inf",
    "1e308",
    "99999999999999999999",
    "0x10",
    "",
    " ",
    "\t",
    "\x00",
    "\r",
    "é",
    "\u2028",
    "#",
    '"',
    "'",
    "..",
    "../../etc/passwd",
    "00:00:00:00",
    "01:00:00:00",
    "99:99:99:99",
    "00:00:00;00",
    "-01:00:00:00",
    "*",
]


@st.composite
def mutated_text(draw, seed: str, vocabulary: list[str]) -> str:
    """``seed`` with line-, token- and character-level edits drawn from ``vocabulary`` and :data:`TOKENS`."""
    lines = seed.split("\n")
    pool = vocabulary + TOKENS
    for _ in range(draw(st.integers(1, 5))):
        op = draw(st.sampled_from(["del-line", "dup-line", "swap", "new-line", "token", "char", "join"]))
        i = draw(st.integers(0, max(0, len(lines) - 1)))
        if op == "del-line" and lines:
            del lines[i]
        elif op == "dup-line" and lines:
            lines.insert(i, lines[i])
        elif op == "swap" and len(lines) > 1:
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "new-line":
            lines.insert(i, " ".join(draw(st.lists(st.sampled_from(pool), max_size=8))))
        elif op == "token" and lines:
            parts = lines[i].split(" ")
            k = draw(st.integers(0, max(0, len(parts) - 1)))
            parts[k] = draw(st.sampled_from(pool) | st.text(max_size=6))
            lines[i] = " ".join(parts)
        elif op == "char" and lines:
            line = lines[i]
            k = draw(st.integers(0, len(line)))
            lines[i] = line[:k] + draw(st.text(min_size=0, max_size=2)) + line[k + draw(st.integers(0, 2)) :]
        elif op == "join" and len(lines) > 1 and i + 1 < len(lines):
            lines[i : i + 2] = [lines[i] + lines[i + 1]]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------- .cube


def valid_cube_text(n: int = 2, seed: int = 0) -> str:
    from grade.cube import cube_text

    g = torch.Generator().manual_seed(seed)
    return cube_text(torch.rand(3, n, n, n, generator=g), title="seed")


CUBE_WORDS = ["TITLE", 'TITLE "x"', "LUT_3D_SIZE", "LUT_3D_SIZE 2", "LUT_1D_SIZE 4", "DOMAIN_MIN", "DOMAIN_MAX"]
CUBE_WORDS += ["DOMAIN_MIN 0 0 0", "DOMAIN_MAX 1 1 1", "LUT_3D_INPUT_RANGE 0 1", "0 0 0", "1 1 1", "0.5 0.5"]


def cube_inputs() -> st.SearchStrategy:
    """Garbage for ``read_cube``: bytes, keyword soup, and edits of a valid file (text or bytes)."""
    seed = valid_cube_text()
    soup = st.lists(st.sampled_from(CUBE_WORDS + TOKENS), max_size=40).map(lambda w: "\n".join(w))
    return st.one_of(
        st.binary(max_size=300),
        st.text(max_size=300),
        soup,
        mutated_text(seed, CUBE_WORDS),
        mutated_bytes(seed.encode()),
    )


def run_cube(data: str | bytes, folder: Path) -> str:
    """``read_cube`` of ``data``: refused, or a finite-shape ``(3, N, N, N)`` float32 table."""
    from grade.cube import read_cube

    path = folder / "fuzz.cube"
    path.write_bytes(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
    try:
        lut = read_cube(path)
    except InputError as e:
        assert "\n" not in str(e) and str(path) in str(e), str(e)
        return "refused"
    n = lut.shape[-1]
    assert lut.dtype == torch.float32 and tuple(lut.shape) == (3, n, n, n) and 2 <= n <= 256
    assert torch.isfinite(lut).all()
    return "accepted"


# ----------------------------------------------------------------------------------- looks TOML

LOOKS_KEYS = ["default", "scenes", "rules", "reference", "preset", "cube", "scene", "reel", "clip", "marker", "events"]
VALID_LOOKS = (
    'default = "night"\n'
    '[scenes.day]\nreference = "stills/day.jpg"\n'
    '[scenes.night]\npreset = "night-v2"\n'
    '[scenes.graded]\ncube = "luts/day.cube"\n'
    '[[rules]]\nscene = "day"\nreel = "A0*"\n'
    '[[rules]]\nscene = "graded"\nevents = "1-5,9"\nmarker = "INTERCUT"\nclip = "117*"\n'
)

_SCALARS = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["day", "night", "A0*", "1-5,9", "3", "9-3", "1-99999999999", "x.png", "", "..", "\x00"]),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
)


def _toml_key(k: str) -> str:
    return k if k and all(c.isalnum() or c in "_-" for c in k) and k.isascii() else json.dumps(k)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"


def toml_text(doc: dict) -> str:
    """A TOML document for a dict of TOML-able values (inline tables for nesting)."""
    return "".join(f"{_toml_key(k)} = {_toml_value(v)}\n" for k, v in doc.items())


def looks_inputs() -> st.SearchStrategy:
    """Random TOML documents shaped like looks files (and not), and edits of a valid one."""
    keys = st.sampled_from(LOOKS_KEYS) | st.text(max_size=6)
    values = st.recursive(_SCALARS, lambda kids: st.lists(kids, max_size=3) | st.dictionaries(keys, kids, max_size=4))
    scene = st.dictionaries(st.sampled_from(["reference", "preset", "cube"]) | keys, _SCALARS, max_size=3)
    shaped = st.fixed_dictionaries(
        {},
        optional={
            "default": _SCALARS,
            "scenes": st.dictionaries(st.sampled_from(["day", "night"]) | st.text(max_size=4), scene, max_size=3),
            "rules": st.lists(st.dictionaries(st.sampled_from(LOOKS_KEYS) | keys, _SCALARS, max_size=4), max_size=3),
        },
    )
    docs = st.one_of(shaped, st.dictionaries(keys, values, max_size=4)).map(toml_text)
    return st.one_of(docs, mutated_text(VALID_LOOKS, LOOKS_KEYS + ['"day"', "= ", "[[rules]]", "[scenes.x]"]))


def run_looks(text: str, folder: Path) -> str:
    """``read_looks`` of ``text``: refused, or a LooksFile whose rules can be applied to events."""
    from grade.conform import Event, LooksFile, read_looks, scene_of

    path = folder / "looks.toml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        looks = read_looks(path)
    except InputError as e:
        assert "\n" not in str(e) and str(path) in str(e), str(e)
        return "refused"
    assert isinstance(looks, LooksFile)
    for number in (1, 4, 10**12):
        ev = Event(number, "117_a", "A001", None, 0, 1, 0, 1, markers=["INTERCUT"], comments=["LOOK: day"])
        scene = scene_of(ev, looks)
        assert scene is None or scene in looks.scenes
    return "accepted"


# -------------------------------------------------------------------------------------- presets


def valid_preset_bytes(learned: bool = False) -> bytes:
    """A small, valid preset file's bytes: a LUT preset, or a learned one (trained for a few steps)."""
    from grade.lut import identity_lut
    from grade.presets import build_preset, preset_bytes

    lut = identity_lut(5)
    lut[0] = lut[0] * 0.8 + 0.1
    keys = [np.full((8, 12, 3), 90, np.uint8)]
    look = None
    if learned:
        from grade.io.image import to_tensor
        from grade.model.look import LookSettings
        from grade.train import TrainSettings, train_look

        key = (np.indices((24, 32)).sum(0) % 255).astype(np.uint8)[..., None].repeat(3, 2)
        look, _ = train_look(
            to_tensor(key), to_tensor(255 - key), lut, LookSettings(working_side=64), TrainSettings(steps=2)
        )
        keys = [key]
    mode = "learned" if learned else "lut"
    preset = build_preset("fuzz", mode=mode, lut=lut, learned=look, reference=keys[0], keys=keys)
    return preset_bytes(preset)


def header_size(data: bytes) -> int:
    return 8 + struct.unpack("<Q", data[:8])[0]


SAFETENSORS_DTYPES = ["BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16", "I32", "U32", "F32"]
SAFETENSORS_DTYPES += ["F64", "I64", "U64", "C64", "F4", "F6_E2M3", "E8M0", "X"]


@st.composite
def header_edits(draw, seed: bytes) -> bytes:
    """Structured edits of a preset's safetensors header: a tensor's dtype, shape or offsets, a
    metadata value, or the manifest's JSON; the header is re-serialised (so it still parses)."""
    n = header_size(seed)
    header = json.loads(seed[8:n])
    names = sorted(k for k in header if k != "__metadata__")
    for _ in range(draw(st.integers(1, 3))):
        what = draw(st.sampled_from(["dtype", "shape", "offsets", "metadata", "manifest", "drop"]))
        name = draw(st.sampled_from(names))
        entry = header[name]
        if what == "dtype":
            entry["dtype"] = draw(st.sampled_from(SAFETENSORS_DTYPES))
        elif what == "shape":
            entry["shape"] = draw(st.lists(st.integers(0, 70), max_size=5))
        elif what == "offsets":
            a, b = entry["data_offsets"]
            entry["data_offsets"] = [a + draw(st.integers(-8, 8)), b + draw(st.integers(-8, 8))]
        elif what == "metadata":
            key = draw(st.sampled_from(["format", "schema_version", "manifest", "extra"]))
            header["__metadata__"][key] = draw(st.sampled_from(["", "0", "1", "2", "-1", "99", " 1", "grade.preset"]))
        elif what == "manifest":
            text = header["__metadata__"]["manifest"]
            words = ['"learned"', '"fast"', '"lut"', "null", "[]", "{}", "-1", "1e999", '"x"', "true"]
            header["__metadata__"]["manifest"] = draw(mutated_text(text.replace(",", ",\n"), words)).replace("\n", "")
        else:
            del header[name]
            names.remove(name)
            if not names:
                break
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + seed[n:]


def preset_inputs(seed: bytes) -> st.SearchStrategy:
    """Byte edits of a valid preset file (half of them in its JSON header), and structured header edits."""
    return mutated_bytes(seed, hot=header_size(seed)) | header_edits(seed)


def run_preset(data: bytes, folder: Path, seed: bytes) -> str:
    """``read_preset`` of ``data``: refused, or exactly the preset the seed file holds."""
    from grade.presets import read_preset

    path = folder / "fuzz.gpreset"
    path.write_bytes(data)
    try:
        got = read_preset(path)
    except InputError as e:
        assert "\n" not in str(e) and str(path) in str(e), str(e)
        return "refused"
    (folder / "seed.gpreset").write_bytes(seed)
    want = read_preset(folder / "seed.gpreset")
    assert got.manifest == want.manifest
    assert torch.equal(got.lut, want.lut) and torch.equal(got.fitted_lut, want.fitted_lut)
    assert len(got.keys) == len(want.keys) and all(np.array_equal(a, b) for a, b in zip(got.keys, want.keys))
    return "accepted"


# ------------------------------------------------------------------------------------------- EDL

VALID_EDL = """TITLE: fuzz cut
FCM: NON-DROP FRAME

001  A001     V     C        01:00:00:05 01:00:00:17 10:00:00:00 10:00:00:12
* FROM CLIP NAME: shotA
* SOURCE FILE: A001.mp4
* LOC: 10:00:00:03 RED day scene
*ASC_SOP (1.4 1.0 0.7)(0.0 0.0 0.0)(1.0 1.0 1.0)
*ASC_SAT 1.0

002  B002     V     C        02:00:00:10 02:00:00:10 10:00:00:12 10:00:00:12
002  B002     V     D    006 02:00:00:10 02:00:00:18 10:00:00:12 10:00:00:20
* FROM CLIP NAME: shotB

003  A001     V     C        01:00:01:16 01:00:01:20 10:00:00:20 10:00:01:00
M2   A001       048.0                01:00:01:16
* LOOK: night
"""

EDL_WORDS = ["001", "002", "003", "004", "AX", "A001", "B002", "V", "A", "B", "AA/V", "C", "D", "W001", "K", "KB"]
EDL_WORDS += ["006", "030", "* FROM CLIP NAME:", "* SOURCE FILE:", "* LOC:", "*ASC_SOP", "*ASC_SAT", "M2", "FCM:"]
EDL_WORDS += ["DROP FRAME", "NON-DROP FRAME", "TITLE:", "(1 1 1)(0 0 0)(1 1 1)", "(a b c)", "048.0", "-024.0"]
EDL_RATES = [None, 24, 25, 30, 29.97, 23.976, 60, 48, 1]


def edl_inputs() -> st.SearchStrategy:
    return st.tuples(mutated_text(VALID_EDL, EDL_WORDS), st.sampled_from(EDL_RATES))


def run_edl(case: tuple[str, float | None], folder: Path) -> str:
    """``read_edit`` of an EDL text at a rate: refused, or an Edit whose events are usable numbers."""
    from grade.conform import Edit, read_edit

    text, rate = case
    path = folder / "fuzz.edl"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        edit = read_edit(path, rate)
    except InputError as e:
        assert "\n" not in str(e), str(e)
        return "refused"
    assert isinstance(edit, Edit) and edit.rate > 0 and math.isfinite(edit.rate)
    for ev in edit.events:
        assert all(isinstance(v, int) for v in (ev.src_in, ev.src_out, ev.rec_in, ev.rec_out, ev.number))
        if ev.cdl is not None:
            assert all(math.isfinite(v) for v in (*ev.cdl.slope, *ev.cdl.offset, *ev.cdl.power, ev.cdl.saturation))
        _ = ev.look_comment
    return "accepted"
