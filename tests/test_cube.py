"""``.cube`` reading and writing (grade.cube), CIEDE2000 (grade.color), and ffmpeg's lut3d agreeing with us."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import cv2
import kornia.color as KC
import numpy as np
import pytest
import torch

from grade.color import delta_e2000, srgb_to_lab
from grade.cube import read_cube, write_cube
from grade.errors import InputError, OutputError
from grade.lut import apply_lut, identity_lut

# Sharma, Wu and Dalal (2005), Table 1: all 34 pairs (L1 a1 b1, L2 a2 b2, dE00)
SHARMA = np.array([
    [50.0000, 2.6772, -79.7751, 50.0000, 0.0000, -82.7485, 2.0425],
    [50.0000, 3.1571, -77.2803, 50.0000, 0.0000, -82.7485, 2.8615],
    [50.0000, 2.8361, -74.0200, 50.0000, 0.0000, -82.7485, 3.4412],
    [50.0000, -1.3802, -84.2814, 50.0000, 0.0000, -82.7485, 1.0000],
    [50.0000, -1.1848, -84.8006, 50.0000, 0.0000, -82.7485, 1.0000],
    [50.0000, -0.9009, -85.5211, 50.0000, 0.0000, -82.7485, 1.0000],
    [50.0000, 0.0000, 0.0000, 50.0000, -1.0000, 2.0000, 2.3669],
    [50.0000, -1.0000, 2.0000, 50.0000, 0.0000, 0.0000, 2.3669],
    [50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0009, 7.1792],
    [50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0010, 7.1792],
    [50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0011, 7.2195],
    [50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0012, 7.2195],
    [50.0000, -0.0010, 2.4900, 50.0000, 0.0009, -2.4900, 4.8045],
    [50.0000, -0.0010, 2.4900, 50.0000, 0.0010, -2.4900, 4.8045],
    [50.0000, -0.0010, 2.4900, 50.0000, 0.0011, -2.4900, 4.7461],
    [50.0000, 2.5000, 0.0000, 50.0000, 0.0000, -2.5000, 4.3065],
    [50.0000, 2.5000, 0.0000, 73.0000, 25.0000, -18.0000, 27.1492],
    [50.0000, 2.5000, 0.0000, 61.0000, -5.0000, 29.0000, 22.8977],
    [50.0000, 2.5000, 0.0000, 56.0000, -27.0000, -3.0000, 31.9030],
    [50.0000, 2.5000, 0.0000, 58.0000, 24.0000, 15.0000, 19.4535],
    [50.0000, 2.5000, 0.0000, 50.0000, 3.1736, 0.5854, 1.0000],
    [50.0000, 2.5000, 0.0000, 50.0000, 3.2972, 0.0000, 1.0000],
    [50.0000, 2.5000, 0.0000, 50.0000, 1.8634, 0.5757, 1.0000],
    [50.0000, 2.5000, 0.0000, 50.0000, 3.2592, 0.3350, 1.0000],
    [60.2574, -34.0099, 36.2677, 60.4626, -34.1751, 39.4387, 1.2644],
    [63.0109, -31.0961, -5.8663, 62.8187, -29.7946, -4.0864, 1.2630],
    [61.2901, 3.7196, -5.3901, 61.4292, 2.2480, -4.9620, 1.8731],
    [35.0831, -44.1164, 3.7933, 35.0232, -40.0716, 1.5901, 1.8645],
    [22.7233, 20.0904, -46.6940, 23.0331, 14.9730, -42.5619, 2.0373],
    [36.4612, 47.8580, 18.3852, 36.2715, 50.5065, 21.2231, 1.4146],
    [90.8027, -2.0831, 1.4410, 91.1528, -1.6435, 0.0447, 1.4441],
    [90.9257, -0.5406, -0.9208, 88.6381, -0.8985, -0.7239, 1.5381],
    [6.7747, -0.2908, -2.4247, 5.8714, -0.0985, -2.2286, 0.6377],
    [2.0776, 0.0795, -1.1350, 0.9033, -0.0636, -0.5514, 0.9082],
])  # fmt: skip


def graded_lut(n: int) -> torch.Tensor:
    """A smooth, non-trivial colour transform (channel mixing, per-channel gamma), in [0, 1]."""
    r, g, b = identity_lut(n)
    return torch.stack([
        0.92 * r**0.8 + 0.05 * g + 0.02,
        (0.85 * g + 0.12 * b) ** 1.1,
        0.18 * r + 0.72 * b**1.3 + 0.05,
    ]).clamp(0, 1)  # fmt: skip


def identity_rows(n: int) -> np.ndarray:
    """The identity's data rows in .cube order: red fastest, then green, then blue."""
    idx = np.arange(n**3)
    return np.stack([idx % n, idx // n % n, idx // n**2], 1) / (n - 1)


def data_rows(text: str) -> np.ndarray:
    return np.array([[float(v) for v in ln.split()] for ln in text.splitlines() if ln[:1].isdigit()])


def test_delta_e2000_matches_all_sharma_pairs() -> None:
    got = delta_e2000(SHARMA[:, :3], SHARMA[:, 3:6])
    assert np.abs(got - SHARMA[:, 6]).max() < 1e-4
    assert np.abs(delta_e2000(SHARMA[:, 3:6], SHARMA[:, :3]) - SHARMA[:, 6]).max() < 1e-4  # symmetric
    lab = SHARMA[:, :3].reshape(2, 17, 3)  # any leading shape
    assert delta_e2000(lab, lab).shape == (2, 17) and np.all(delta_e2000(lab, lab) == 0)


def test_srgb_to_lab_matches_kornia() -> None:
    rgb = np.random.default_rng(3).random((500, 3))
    ours = srgb_to_lab(rgb)
    theirs = KC.rgb_to_lab(torch.from_numpy(rgb).T.reshape(1, 3, -1, 1)).reshape(3, -1).T.numpy()
    assert np.abs(ours - theirs).max() < 1e-6
    assert np.allclose(srgb_to_lab(np.ones(3)), [100, 0, 0], atol=0.01)
    assert np.allclose(srgb_to_lab(np.array([1.0, 0.0, 0.0])), [53.24, 80.09, 67.20], atol=0.05)


@pytest.mark.parametrize("n", [2, 17, 33])
def test_round_trip(tmp_path: Path, n: int) -> None:
    lut = graded_lut(n)
    path = tmp_path / "look.cube"
    write_cube(path, lut, title="warm look")
    back = read_cube(path)
    assert back.dtype == torch.float32 and back.shape == (3, n, n, n)
    assert (back - lut).abs().max() <= 1e-6
    assert [p.name for p in tmp_path.iterdir()] == ["look.cube"]  # no temporary left


def test_write_clips_and_header(tmp_path: Path) -> None:
    lut = identity_lut(5) * 1.3 - 0.1  # outside [0, 1] at both ends
    path = tmp_path / "clip.cube"
    write_cube(path, lut, title='say "hi"\nthere')
    text = path.read_text()
    header = ["TITLE \"say 'hi' there\"", "LUT_3D_SIZE 5", "DOMAIN_MIN 0 0 0", "DOMAIN_MAX 1 1 1"]
    assert text.splitlines()[:4] == header
    assert "-0.000000" not in text and text.endswith("\n") and "\r" not in text
    assert all(len(v.split(".")[1]) == 6 for ln in text.splitlines()[4:] for v in ln.split())
    assert torch.allclose(read_cube(path), lut.clamp(0, 1), atol=1e-6)
    write_cube(path, identity_lut(2))  # replaces; no TITLE without a title
    assert path.read_text().startswith("LUT_3D_SIZE 2\n")


def test_axis_order_red_fastest(tmp_path: Path) -> None:
    n = 9
    lut = identity_lut(n)
    lut[0] = lut[0] ** 0.5  # only red changes, as a function of red only
    path = tmp_path / "red.cube"
    write_cube(path, lut)
    rows = data_rows(path.read_text())
    assert rows.shape == (n**3, 3)
    assert rows[0].tolist() == [0, 0, 0]
    # red increases along the first lines with green and blue at 0; then green steps, then blue
    assert np.allclose(rows[:n, 0], np.linspace(0, 1, n) ** 0.5, atol=1e-6) and not rows[:n, 1:].any()
    assert np.allclose(rows[n], [0, 1 / (n - 1), 0], atol=1e-6)
    assert np.allclose(rows[n * n], [0, 0, 1 / (n - 1)], atol=1e-6)
    want = identity_rows(n)
    want[:, 0] **= 0.5
    assert np.abs(rows - want).max() <= 5e-7
    back = read_cube(path)
    assert (back[1:] - identity_lut(n)[1:]).abs().max() < 1e-6
    assert (back[0] - lut[0]).abs().max() < 1e-6


def test_read_hand_written_channel_swap(tmp_path: Path) -> None:
    """A file written by hand in the .cube order (red fastest) that maps (r, g, b) -> (b, g, r)."""
    rows = identity_rows(2)[:, ::-1]
    path = tmp_path / "swap.cube"
    path.write_text("LUT_3D_SIZE 2\n" + "".join(f"{r:g} {g:g} {b:g}\n" for r, g, b in rows))
    lut = read_cube(path)
    red = torch.tensor([1.0, 0.2, 0.0]).view(1, 3, 1, 1)
    assert torch.allclose(apply_lut(lut, red).flatten(), torch.tensor([0.0, 0.2, 1.0]), atol=1e-6)


def test_read_accepts_crlf_comments_bom_and_variants(tmp_path: Path) -> None:
    rows = identity_rows(2)
    rows[0] = [-0.01, 0.0, 1e-3]  # slightly outside [0, 1] is kept as written
    rows[7] = [1.02, 1.0, 1.0]
    lines = [
        "# written by some grading tool",
        'TITLE "a # in the title"',
        "",
        "   # indented comment",
        "LUT_3D_SIZE 2",
        "LUT_3D_INPUT_RANGE 0.0 1.0",
        "DOMAIN_MIN 0.0 0.0 0.0",
        "DOMAIN_MAX 1 1.000000 1",
        "",
    ]
    data = [f"  {r:.6g}\t{g:.6g}  {b:.6g} " for r, g, b in rows]
    data[0] = "-1e-2 0 1E-3"
    data.insert(4, "# a comment among the data")
    path = tmp_path / "crlf.cube"
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines + data + ["", ""]).encode())
    lut = read_cube(path)
    flat = lut.permute(3, 2, 1, 0).reshape(-1, 3).double().numpy()  # back to file order
    assert np.allclose(flat, rows, atol=1e-7)
    assert lut.min() < 0 and lut.max() > 1


def cube(*header: str, rows: int = 8, data: list[str] | None = None) -> str:
    body = data if data is not None else [f"{r:g} {g:g} {b:g}" for r, g, b in identity_rows(2)[:rows]]
    return "\n".join([*header, *body]) + "\n"


MALFORMED: dict[str, tuple[str | bytes, list[str]]] = {
    "empty": ("", ["no LUT_3D_SIZE"]),
    "no size": (cube('TITLE "x"', data=[]), ["no LUT_3D_SIZE"]),
    "data before size": (cube("# c", data=["0 0 0", "LUT_3D_SIZE 2"]), ["line 2", "data before LUT_3D_SIZE"]),
    "size 1": (cube("LUT_3D_SIZE 1", data=["0 0 0"]), ["line 1", "LUT_3D_SIZE 1 is out of range", "2..256"]),
    "size 257": (cube("LUT_3D_SIZE 257"), ["line 1", "out of range"]),
    "size not a number": (cube("LUT_3D_SIZE 33.0"), ["line 1", "whole number"]),
    "size missing": (cube("LUT_3D_SIZE"), ["line 1", "whole number"]),
    "1D": ("LUT_1D_SIZE 2\n0 0 0\n1 1 1\n", ["line 1", "1D LUTs are not supported"]),
    "1D range": ("LUT_1D_INPUT_RANGE 0 1\nLUT_1D_SIZE 2\n0 0 0\n1 1 1\n", ["1D LUTs are not supported"]),
    "1D and 3D": (cube("LUT_1D_SIZE 2", "LUT_3D_SIZE 2"), ["line 1", "both a 1D and a 3D"]),
    "3D and 1D": (cube("LUT_3D_SIZE 2", "LUT_1D_SIZE 2"), ["line 2", "both a 1D and a 3D"]),
    "keyword after data": (
        cube("LUT_3D_SIZE 2", data=["0 0 0", "1 0 0", "DOMAIN_MIN 0 0 0"]),
        ["line 4", "after the LUT data started (line 2)"],
    ),
    "two values": (cube("LUT_3D_SIZE 2", data=["0 0 0", "1 0"]), ["line 3", "expected 3 numbers", "found 2"]),
    "four values": (cube("LUT_3D_SIZE 2", data=["0 0 0 0"]), ["line 2", "found 4"]),
    "comma separated": (cube("LUT_3D_SIZE 2", data=["0,0,0"]), ["line 2", "found 1"]),
    "inline comment": (cube("LUT_3D_SIZE 2", data=["0 0 0 # black"]), ["line 2", "found 5"]),
    "not a number": (cube("LUT_3D_SIZE 2", data=["0 0 0", "1 abc 0"]), ["line 3", "not a number", "abc"]),
    "hex": (cube("LUT_3D_SIZE 2", data=["0x1 0 0"]), ["line 2", "not a number"]),
    "nan": (cube("LUT_3D_SIZE 2", data=["0 0 0", "0 nan 0"]), ["line 3", "non-finite", "nan"]),
    "nan first": (cube("LUT_3D_SIZE 2", data=["NaN 0 0"]), ["line 2", "non-finite"]),
    "inf": (cube("LUT_3D_SIZE 2", data=["0 0 -inf"]), ["line 2", "non-finite"]),
    "overflow": (cube("LUT_3D_SIZE 2", data=[*(["0 0 0"] * 5), "0 1e999 0", "0 0 0", "0 0 0"]), ["line 7", "range"]),
    "too few": (cube("LUT_3D_SIZE 2", rows=7), ["needs 8 data lines, found 7", "line 1"]),
    "too many": (cube("LUT_3D_SIZE 2", data=["0 0 0"] * 9), ["needs 8 data lines, found 9"]),
    "domain count": (cube("LUT_3D_SIZE 2", "DOMAIN_MIN 0 0"), ["line 2", "DOMAIN_MIN needs 3 numbers, found 2"]),
    "domain text": (cube("LUT_3D_SIZE 2", "DOMAIN_MAX 1 x 1"), ["line 2", "DOMAIN_MAX values must be numbers"]),
    "domain nan": (cube("LUT_3D_SIZE 2", "DOMAIN_MAX 1 nan 1"), ["line 2", "finite"]),
    "domain min >= max": (cube("LUT_3D_SIZE 2", "DOMAIN_MIN 1 1 1", "DOMAIN_MAX 1 1 1"), ["line 3", "not below"]),
    "domain other": (cube("LUT_3D_SIZE 2", "DOMAIN_MAX 1 2 1"), ["line 2", "only a 0..1 domain"]),
    "input range other": (cube("LUT_3D_INPUT_RANGE -0.5 2", "LUT_3D_SIZE 2"), ["line 1", "only a 0..1 domain"]),
    "input range reversed": (cube("LUT_3D_SIZE 2", "LUT_3D_INPUT_RANGE 1 0"), ["line 2", "not below"]),
    "unknown keyword": (cube("LUT_3D_SIZE 2", "LUT_IN_VIDEO_RANGE"), ["line 2", "unknown keyword"]),
    "size twice": (cube("LUT_3D_SIZE 2", "LUT_3D_SIZE 2"), ["line 2", "given twice", "line 1"]),
    "binary": (b"LUT_3D_SIZE 2\n\x00\x01\x02", ["binary"]),
    "not utf-8": (b"LUT_3D_SIZE 2\n\xff\xfe 0 0\n", ["not UTF-8"]),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_read_refuses_malformed(tmp_path: Path, case: str) -> None:
    content, expected = MALFORMED[case]
    path = tmp_path / "bad.cube"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(InputError) as err:
        read_cube(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    for part in expected:
        assert part in message, (part, message)


def test_read_refuses_missing_folder_and_huge(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        read_cube(tmp_path / "nope.cube")
    with pytest.raises(InputError, match="folder"):
        read_cube(tmp_path)
    path = tmp_path / "big.cube"
    write_cube(path, identity_lut(5))
    with pytest.raises(InputError, match="too large"):
        read_cube(path, max_bytes=1000)


def test_write_refuses_bad_luts_and_paths(tmp_path: Path) -> None:
    for bad in (torch.zeros(3, 4, 4), torch.zeros(3, 4, 4, 5), torch.zeros(1, 1, 1, 1), torch.zeros(3, 257, 1, 1)):
        with pytest.raises(ValueError):
            write_cube(tmp_path / "x.cube", bad)
    with pytest.raises(ValueError, match="2 to 256 points per axis"):
        write_cube(tmp_path / "x.cube", torch.zeros(3, 1, 1, 1))
    nan = identity_lut(3)
    nan[1, 1, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        write_cube(tmp_path / "x.cube", nan)
    with pytest.raises(OutputError, match="cannot write"):
        write_cube(tmp_path / "missing" / "x.cube", identity_lut(3))
    (tmp_path / "dir.cube").mkdir()
    with pytest.raises(OutputError):
        write_cube(tmp_path / "dir.cube", identity_lut(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.cube"]  # nothing else written, no temporary


def sample_image() -> np.ndarray:
    """128x96 RGB uint8: smooth gradients plus noise (every region of the cube gets visited)."""
    h, w = 96, 128
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x / (w - 1), y / (h - 1), 0.5 + 0.5 * np.sin(x / 9 + y / 7)], -1) * 255
    noise = np.random.default_rng(0).normal(0, 12, img.shape)
    return np.clip(img + noise, 0, 255).round().astype(np.uint8)


def ffmpeg_lut3d(folder: Path, image: np.ndarray, lut: torch.Tensor) -> np.ndarray:
    cv2.imwrite(str(folder / "in.png"), np.ascontiguousarray(image[..., ::-1]))
    write_cube(folder / "look.cube", lut)
    # run in the folder with a relative name: no filter-graph quoting of the path needed
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", "in.png"]
    cmd += ["-vf", "lut3d=file=look.cube:interp=trilinear", "-pix_fmt", "rgb24", "out.png"]
    subprocess.run(cmd, cwd=folder, check=True, capture_output=True, timeout=60)
    return cv2.imread(str(folder / "out.png"), cv2.IMREAD_COLOR)[..., ::-1].astype(np.float64)


def mean_delta_e(a: np.ndarray, b: np.ndarray) -> float:
    """Mean CIEDE2000 between two RGB images in 0..255."""
    return float(delta_e2000(srgb_to_lab(a / 255.0), srgb_to_lab(b / 255.0)).mean())


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg CLI not installed")
def test_ffmpeg_lut3d_agrees_with_apply_lut(tmp_path: Path) -> None:
    image = sample_image()
    lut = graded_lut(33)
    out = ffmpeg_lut3d(tmp_path, image, lut)
    src = torch.from_numpy(image / 255.0).permute(2, 0, 1)[None].float()
    ours = apply_lut(lut, src)[0].permute(1, 2, 0).double().numpy() * 255
    rounded = np.clip(np.round(ours), 0, 255)
    assert mean_delta_e(out, image) > 5  # the LUT does something
    # measured 0.26 with ffmpeg 5.1: its lut3d truncates to 8 bits (half a code value darker on average)
    de = mean_delta_e(out, rounded)
    assert de <= 0.5, de
    assert np.abs(out - rounded).max() <= 1
    # either rounding convention reproduces ffmpeg almost exactly (same axis order, same interpolation)
    truncated = np.clip(np.floor(ours + 1e-4), 0, 255)
    assert min(de, mean_delta_e(out, truncated)) < 0.05


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg CLI not installed")
def test_ffmpeg_identity_lut_keeps_the_image(tmp_path: Path) -> None:
    image = sample_image()
    out = ffmpeg_lut3d(tmp_path, image, identity_lut(33))
    assert mean_delta_e(out, image.astype(np.float64)) < 0.3
