"""Image sequences through OpenImageIO: EXR (scene-linear, values above 1), 10-bit DPX, 16-bit PNG;
frame numbers kept, gaps refused by name, a broken frame is one line and nothing is written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import pytest
from clips import cli_args, make_still

from grade.cli import main

H, W = 48, 64


def write(path: Path, rgb: np.ndarray, fmt: str, bits: int = 0) -> Path:
    spec = oiio.ImageSpec(W, H, 3, fmt)
    if bits:
        spec.attribute("oiio:BitsPerSample", bits)
    out = oiio.ImageOutput.create(str(path))
    assert out.open(str(path), spec)
    assert out.write_image(np.ascontiguousarray(rgb))
    out.close()
    return path


def read(path: Path) -> tuple[np.ndarray, int]:
    inp = oiio.ImageInput.open(str(path))
    px = inp.read_image(0, 0, 0, 3, "float")
    bits = inp.spec().get_int_attribute("oiio:BitsPerSample", 0)
    inp.close()
    return np.asarray(px, np.float32), bits


def linear(t: int) -> np.ndarray:
    y, x = np.mgrid[0:H, 0:W] / np.array([H, W], float)[:, None, None]
    lin = np.stack([0.04 + 0.6 * x, 0.05 + 0.4 * y, 0.08 + 0.05 * t + 0 * x], -1)
    lin[30:40, 40:50] = [3.5, 2.8, 2.0]  # a highlight well above 1
    return lin.astype(np.float32)


def run(capsys, *args) -> tuple[int, str, str]:
    code = main(cli_args(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def ref(tmp_path: Path) -> Path:
    return make_still(tmp_path / "ref.png", size=(64, 48), scene=1)


def test_exr_to_exr_keeps_values_above_one_and_the_frame_numbers(capsys, tmp_path: Path, ref: Path) -> None:
    """Scene-linear values above 1, and below 0 (a wide-gamut render's saturated blue, outside what the
    working space's [0, 1] holds), come back from a grade at strength 0."""
    for n in (1001, 1002, 1003):
        frame = linear(n - 1001)
        frame[2:8, 2:12] = [-0.3, 0.1, 0.9]  # negative in ACEScct's AP1 too
        write(tmp_path / f"plate.{n:04d}.exr", frame, "half")
    plate = tmp_path / "plate.%04d.exr"
    code, o, err = run(capsys, plate, "--look", ref, "--mode", "fast", "--strength", "0", "--json")
    assert code == 0, err
    report = json.loads(o)
    assert report["kind"] == "sequence" and report["frames"] == 3
    assert report["colour"]["input"] == report["colour"]["output"] == "Linear Rec.709 (sRGB)"
    for n in (1001, 1002, 1003):
        src, _ = read(tmp_path / f"plate.{n:04d}.exr")
        out, _ = read(tmp_path / f"plate.graded.{n:04d}.exr")
        assert out.max() > 3.0  # the highlight survived
        np.testing.assert_allclose(out, src, rtol=0.01, atol=1e-3)
    # with the look at full strength the picture changes (the test can tell a grade from a copy)
    out_dir = tmp_path / "graded"
    code, _, err = run(capsys, tmp_path / "plate.####.exr", "--look", ref, "--mode", "fast", "-o", out_dir, "-q")
    assert code == 0, err
    src, _ = read(tmp_path / "plate.1002.exr")
    out, _ = read(out_dir / "plate.1002.exr")
    assert np.abs(out - src).mean() > 0.02


def _stated(path: Path) -> tuple[str, tuple | None]:
    inp = oiio.ImageInput.open(str(path))
    spec = inp.spec()
    inp.close()
    return spec.get_string_attribute("oiio:ColorSpace"), spec.getattribute("chromaticities")


def test_an_exr_states_its_colour_space_and_is_read_as_it_states(capsys, tmp_path: Path, ref: Path) -> None:
    """EXR frames say what they hold (OpenImageIO's ``oiio:ColorSpace`` as a colour interop id, OpenEXR's
    ``chromaticities``), and an EXR is read as the space it states: ACEScg plates come out in linear Rec.709
    as colour-science converts them (an unstated EXR is taken as linear Rec.709 already, and passes unchanged);
    an ACES2065-1 file that states only its chromaticities (AP0) is read as ACES2065-1."""
    import warnings

    from grade.colourspace import sequence_space
    from grade.io.sequence import find_sequence

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # colour-science: no SciPy
        import colour
    cg = linear(0).astype(np.float32)
    cg[8:20, 6:26] = [0.05, 0.6, 0.1]  # a saturated AP1 green, outside Rec.709
    for name, space in (("cg", "lin_ap1_scene"), ("plain", None)):
        spec = oiio.ImageSpec(W, H, 3, "half")
        if space:
            spec.attribute("oiio:ColorSpace", space)
        out = oiio.ImageOutput.create(str(tmp_path / f"{name}.0001.exr"))
        assert out.open(str(tmp_path / f"{name}.0001.exr"), spec) and out.write_image(cg)
        out.close()
    args = ["--look", ref, "--mode", "fast", "--strength", "0", "--output-space", "linear-rec709", "--json"]
    code, o, err = run(capsys, tmp_path / "cg.%04d.exr", *args, "-o", tmp_path / "cg709" / "f.%04d.exr")
    assert code == 0, err
    assert json.loads(o)["colour"]["input"] == "ACEScg"
    got, _ = read(tmp_path / "cg709" / "f.0001.exr")
    aces_cg, bt709 = colour.RGB_COLOURSPACES["ACEScg"], colour.RGB_COLOURSPACES["ITU-R BT.709"]
    want = colour.RGB_to_RGB(cg, aces_cg, bt709, "Bradford")
    assert np.abs(got - want).max() < 0.01 * np.abs(want).max(), np.abs(got - want).max()
    assert want[8:20, 6:26, 0].max() < -0.05  # the green's red is negative in Rec.709, and kept
    stated, chroma = _stated(tmp_path / "cg709" / "f.0001.exr")
    assert stated == "lin_rec709_scene"
    np.testing.assert_allclose(chroma, [0.64, 0.33, 0.3, 0.6, 0.15, 0.06, 0.3127, 0.329], atol=1e-4)
    code, o, err = run(capsys, tmp_path / "plain.%04d.exr", *args, "-o", tmp_path / "plain709" / "f.%04d.exr")
    assert code == 0 and json.loads(o)["colour"]["input"] == "Linear Rec.709 (sRGB)", err
    np.testing.assert_allclose(read(tmp_path / "plain709" / "f.0001.exr")[0], cg, rtol=0.01, atol=1e-3)
    # EXR to EXR into a folder stays in the space the plates state (it went through the Rec.709 view), and says so
    code, _, err = run(capsys, tmp_path / "cg.%04d.exr", "--look", ref, "--mode", "fast", "-o", tmp_path / "same", "-q")
    assert code == 0, err
    stated, chroma = _stated(tmp_path / "same" / "cg.0001.exr")
    assert stated == "lin_ap1_scene" and np.allclose(chroma[:2], [0.713, 0.293], atol=1e-4)
    # chromaticities alone (another tool's ACES2065-1 file)
    spec = oiio.ImageSpec(W, H, 3, "half")
    spec.attribute(
        "chromaticities", oiio.TypeDesc("float[8]"), (0.7347, 0.2653, 0.0, 1.0, 0.0001, -0.077, 0.32168, 0.33767)
    )
    out = oiio.ImageOutput.create(str(tmp_path / "ap0.0001.exr"))
    assert out.open(str(tmp_path / "ap0.0001.exr"), spec) and out.write_image(cg)
    out.close()
    seq = find_sequence(tmp_path / "ap0.%04d.exr")
    assert sequence_space(seq.suffix, seq.statement) == "ACES2065-1"
    # a name the config does not know, "data" (Raw), or a role (the config's own choice) states nothing
    for said in ("foo", "data", "scene_linear", "compositing_log"):
        assert sequence_space(".exr", (said, said, None)) == "Linear Rec.709 (sRGB)", said
    # frames of one sequence that state different spaces: one line naming the frame, nothing written
    write(tmp_path / "cg.0002.exr", cg, "half")  # states nothing, after an ACEScg frame
    code, _, err = run(capsys, tmp_path / "cg.%04d.exr", *args[:-1], "-o", tmp_path / "mixed" / "f.%04d.exr")
    assert code == 2 and err.count("\n") == 1 and "cg.0002.exr" in err and "--input-space" in err, err
    assert not (tmp_path / "mixed").exists()
    code, _, err = run(capsys, tmp_path / "cg.%04d.exr", *args[:-1], "--input-space", "acescg", "-o", tmp_path / "as")
    assert code == 0, err  # --input-space says what they all are


def test_a_gap_is_named_unless_allowed(capsys, tmp_path: Path, ref: Path) -> None:
    for n in (1, 2, 4):
        write(tmp_path / f"s_{n:03d}.png", np.full((H, W, 3), 30000 + n, np.uint16), "uint16")
    code, o, err = run(capsys, tmp_path / "s_%03d.png", "--look", ref, "--mode", "fast", "-o", tmp_path / "o_%03d.png")
    assert code == 2 and err.count("\n") == 1
    assert "s_003.png is missing" in err and "--allow-gaps" in err
    assert not list(tmp_path.glob("o_*"))
    code, o, err = run(
        capsys, tmp_path / "s_%03d.png", "--look", ref, "--mode", "fast", "-o", tmp_path / "o_%03d.png", "--allow-gaps"
    )
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.glob("o_*")) == ["o_001.png", "o_002.png", "o_004.png"]
    assert read(tmp_path / "o_004.png")[0].dtype == np.float32  # readable, 16-bit PNG
    inp = oiio.ImageInput.open(str(tmp_path / "o_004.png"))
    assert str(inp.spec().format) == "uint16"
    inp.close()
    code, o, err = run(capsys, "shots", tmp_path / "s_%03d.png", "--allow-gaps", "--json")
    shots = json.loads(o)["shots"]
    assert code == 0 and [(s["start"], s["end"], s["start_number"], s["end_number"]) for s in shots] == [(0, 3, 1, 4)]


def test_10bit_dpx_log_round_trip_stays_within_one_code(capsys, tmp_path: Path, ref: Path) -> None:
    """S-Log3 10-bit DPX in (a linear scene encoded by colour-science), ``--keep-log --strength 0`` out:
    10-bit DPX, the same codes (±1)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # colour-science: no SciPy
        import colour

    codes = {}
    for n in (86400, 86401):
        rgb = colour.RGB_to_RGB(
            linear(n - 86400), colour.RGB_COLOURSPACES["ACES2065-1"], colour.RGB_COLOURSPACES["S-Gamut3.Cine"], "CAT02"
        )
        rgb = np.clip(rgb, 0, None)  # what a camera records: no negative light
        c = np.round(colour.models.log_encoding_SLog3(rgb) * 1023).astype(np.uint16)
        codes[n] = c
        write(tmp_path / f"a.{n}.dpx", (c * 64).astype(np.uint16), "uint16", bits=10)
    code, o, err = run(
        capsys, tmp_path / "a.%d.dpx", "--look", ref, "--mode", "fast", "--strength", "0", "--input-space", "slog3",
        "--keep-log", "-o", tmp_path / "b.%d.dpx", "--json",
    )  # fmt: skip
    assert code == 0, err
    for n, c in codes.items():
        out, bits = read(tmp_path / f"b.{n}.dpx")
        assert bits == 10
        assert np.abs(np.round(out * 1023).astype(int) - c.astype(int)).max() <= 1


def test_a_scanned_reel_is_graded_shot_by_shot(capsys, tmp_path: Path, ref: Path) -> None:
    """A 16-bit PNG sequence with a hard cut: two shots, each fitted on its own key frame, so the second
    shot comes out as it does when it is graded as a sequence of its own."""
    from clips import scene_frame

    (tmp_path / "reel").mkdir()
    (tmp_path / "alone").mkdir()
    for i in range(24):
        rgb = scene_frame(W, H, i % 12, 0 if i < 12 else 2).astype(np.uint16) * 257
        write(tmp_path / "reel" / f"r.{1001 + i}.png", rgb, "uint16")
        if i >= 12:
            write(tmp_path / "alone" / f"r.{1001 + i}.png", rgb, "uint16")
    code, o, err = run(capsys, tmp_path / "reel" / "r.%d.png", "--look", ref, "--mode", "fast",
                       "-o", tmp_path / "out" / "g.%d.png", "--json")  # fmt: skip
    assert code == 0, err
    report = json.loads(o)
    assert [(s["start"], s["end"]) for s in report["shots"]] == [(0, 12), (12, 24)]
    assert all(s["start"] <= s["key_frame"] < s["end"] for s in report["shots"])
    # and in the files' own numbers
    assert [(s["start_number"], s["end_number"]) for s in report["shots"]] == [(1001, 1012), (1013, 1024)]
    assert all(s["key_number"] == 1001 + s["key_frame"] for s in report["shots"])
    code, o, err = run(capsys, tmp_path / "alone" / "r.%d.png", "--look", ref, "--mode", "fast",
                       "-o", tmp_path / "out2" / "g.%d.png", "--json")  # fmt: skip
    assert code == 0 and len(json.loads(o)["shots"]) == 1, err
    for n in range(1013, 1025):
        a, b = read(tmp_path / "out" / f"g.{n}.png")[0], read(tmp_path / "out2" / f"g.{n}.png")[0]
        assert np.abs(a - b).max() <= 1 / 65535, n
    first, second = read(tmp_path / "out" / "g.1006.png")[0], read(tmp_path / "out" / "g.1018.png")[0]
    assert not np.allclose(first, second, atol=0.02)  # the shots are not one picture


def test_a_learned_look_on_a_sequence_is_stabilised(capsys, tmp_path: Path, ref: Path) -> None:
    """The default mode on a PNG sequence: frames go through the temporal stabiliser (as video frames
    do), which carries the field between frames of the shot instead of fitting it on every one."""
    from clips import scene_frame

    for i in range(12):
        write(tmp_path / f"p.{i + 1}.png", scene_frame(W, H, i // 4, 0).astype(np.uint16) * 257, "uint16")
    code, o, err = run(capsys, tmp_path / "p.%d.png", "--look", ref, "--mode", "learned", "--steps", "5",
                       "-o", tmp_path / "out" / "g.%d.png", "--json")  # fmt: skip
    assert code == 0, err
    report = json.loads(o)
    assert report["mode"] == "learned" and report["frames"] == 12
    assert report["network_frames"] is not None and 1 <= report["network_frames"] < 12, report["network_frames"]
    assert report["stabiliser_ms_per_frame"] is not None
    assert all((tmp_path / "out" / f"g.{n}.png").is_file() for n in range(1, 13))


def test_a_broken_frame_is_one_line_and_nothing_is_written(capsys, tmp_path: Path, ref: Path) -> None:
    for n in (1, 2, 3):
        write(tmp_path / f"f.{n}.exr", linear(n), "half")
    (tmp_path / "f.2.exr").write_bytes(b"\x76\x2f\x31\x01" + b"\x00" * 40)  # an EXR header cut short
    out = tmp_path / "out"
    code, o, err = run(capsys, tmp_path / "f.%d.exr", "--look", ref, "--mode", "fast", "-o", out / "g.%d.exr")
    assert code == 2 and err.count("\n") == 1, err
    assert "frame 2" in err and "f.2.exr" in err
    assert not out.exists() or not any(out.iterdir())  # no frame, no temporary folder


def test_sequence_errors(capsys, tmp_path: Path, ref: Path) -> None:
    code, o, err = run(capsys, tmp_path / "none.%04d.exr", "--look", ref)
    assert code == 2 and "no frames" in err
    write(tmp_path / "x.0001.exr", linear(0), "half")
    code, o, err = run(capsys, tmp_path / "x.%04d.exr", "--look", ref, "-o", tmp_path / "x.%04d.exr")
    assert code == 2 and "overwrite the source" in err
    code, o, err = run(capsys, "shots", tmp_path / "x.%04d.exr", "--json")
    assert code == 0 and json.loads(o)["frames"] == 1, err
    for fps in ("0", "-5", "nan"):
        code, o, err = run(capsys, "shots", tmp_path / "x.%04d.exr", f"--fps={fps}")
        assert code == 2 and err.count("\n") == 1 and "--fps" in err, err


def test_plates_graded_into_one_video(capsys, tmp_path: Path, ref: Path) -> None:
    """An EXR sequence graded into a video file (plates to a review or finishing clip): the same pictures as
    the graded frames written as 16-bit TIFFs, one video frame per plate at ``--fps``, tagged as the Rec.709
    view it holds; a broken plate leaves no video behind."""
    import av

    from grade.io.decode import probe, rgb_kwargs

    for n in (1001, 1002, 1003, 1004):
        write(tmp_path / f"plate.{n:04d}.exr", linear(n - 1001), "half")
    plate = tmp_path / "plate.%04d.exr"
    args = ["--look", ref, "--mode", "fast", "--fps", "25"]
    code, _, err = run(capsys, plate, *args, "-o", tmp_path / "tif" / "g.%04d.tif", "-q")
    assert code == 0, err
    video = tmp_path / "graded.mkv"
    code, o, err = run(capsys, plate, *args, "--codec", "ffv1", "-o", video, "--json")
    assert code == 0, err
    assert json.loads(o)["encoder"] == "ffv1" and json.loads(o)["colour"]["output"] == "Rec.1886 Rec.709 - Display"
    info = probe(video)
    assert (info.frames, info.rate, info.width, info.height) == (4, "25", W, H)
    assert (info.color_primaries, info.color_trc) == (1, 1)
    with av.open(str(video)) as box:
        frames = [f.to_ndarray(format="rgb48le") / 65535.0 for f in box.decode(video=0)]
    for n, got in zip((1001, 1002, 1003, 1004), frames, strict=True):
        want, _ = read(tmp_path / "tif" / f"g.{n:04d}.tif")
        assert np.abs(got - want).max() < 1.5 / 65535, n  # lossless: the graded frames themselves
    assert np.abs(frames[0] - frames[3]).mean() > 0.01  # the plates differ, and so do the frames
    # ProRes 4444 from the same plates: 12-bit 4:4:4, within a 10-bit code of the frames on average
    code, _, err = run(capsys, plate, *args, "--codec", "prores4444", "-o", tmp_path / "graded.mov", "-q")
    assert code == 0, err
    prores = probe(tmp_path / "graded.mov")
    assert prores.pix_fmt == "yuv444p12le"
    with av.open(str(tmp_path / "graded.mov")) as box:
        first = next(iter(box.decode(video=0))).to_ndarray(format="rgb48le", **rgb_kwargs(prores)) / 65535.0
    want, _ = read(tmp_path / "tif" / "g.1001.tif")
    assert np.abs(first - want).mean() * 1023 < 1.0  # 10-bit codes (measured 0.41; ProRes is lossy)
    # a broken plate: one line, and no video (not even a partial one)
    (tmp_path / "plate.1003.exr").write_bytes(b"\x76\x2f\x31\x01" + b"\x00" * 40)
    code, _, err = run(capsys, plate, *args, "--codec", "ffv1", "-o", tmp_path / "broken.mkv")
    assert code == 2 and err.count("\n") == 1 and "plate.1003.exr" in err, err
    assert not (tmp_path / "broken.mkv").exists() and not list(tmp_path.glob("*.tmp*"))


def test_a_video_graded_into_an_image_sequence(capsys, tmp_path: Path, ref: Path) -> None:
    """A video graded into DPX / TIFF frames (a VFX pull): the same pictures as the graded video, one file a
    frame, numbered from the source's timecode, written all at once (an existing frame is refused)."""
    from clips import write_frames

    y, x = np.mgrid[0:H, 0:W] / np.array([H, W], float)[:, None, None]
    pics = [(np.stack([x, 1 - x, 0.2 + 0.1 * t + 0 * y], -1) * 65535).astype(np.uint16) for t in range(5)]
    src = write_frames(tmp_path / "cam.mkv", pics, codec="ffv1", pix_fmt="gbrp16le", timecode="00:00:01:00")
    args = ["--look", ref, "--mode", "fast"]
    code, _, err = run(capsys, src, *args, "--codec", "ffv1", "-o", tmp_path / "graded.mkv", "-q")
    assert code == 0, err
    import av

    with av.open(str(tmp_path / "graded.mkv")) as box:
        video = [f.to_ndarray(format="rgb48le") / 65535.0 for f in box.decode(video=0)]
    code, o, err = run(capsys, src, *args, "-o", tmp_path / "pull" / "cam.%06d.tif", "--json")
    assert code == 0, err
    assert json.loads(o)["frames"] == 5
    names = sorted(p.name for p in (tmp_path / "pull").iterdir())
    assert names == [f"cam.{n:06d}.tif" for n in range(24, 29)]  # 00:00:01:00 at 24 fps is frame 24
    for n, want in zip(range(24, 29), video, strict=True):
        got, bits = read(tmp_path / "pull" / f"cam.{n:06d}.tif")
        assert bits == 16 and np.abs(got - want).max() < 1.5 / 65535, n
    code, _, err = run(capsys, src, *args, "-o", tmp_path / "pull" / "cam.%06d.dpx", "-q")
    assert code == 0, err
    assert read(tmp_path / "pull" / "cam.000024.dpx")[1] == 10
    # frames already there are not overwritten without --force; a name without a frame number is refused
    before = (tmp_path / "pull" / "cam.000026.tif").read_bytes()
    code, _, err = run(capsys, src, *args, "-o", tmp_path / "pull" / "cam.%06d.tif")
    assert code != 0 and err.count("\n") == 1 and "output exists" in err and "--force" in err, err
    assert (tmp_path / "pull" / "cam.000026.tif").read_bytes() == before
    code, _, err = run(capsys, src, *args, "-o", tmp_path / "pull" / "one.exr")
    assert code == 2 and err.count("\n") == 1 and "%06d" in err, err
    assert not list((tmp_path / "pull").glob(".*"))  # no temporary folder left behind
    # an 8-bit clip is graded at 16 bits for its frames (not 256 levels), and a scene-linear pull into TIFFs,
    # whose 16-bit codes would clip at 1.0, is refused in one line (EXR frames hold it: test_colour_managed)
    from clips import make_clip

    clip8 = make_clip(tmp_path / "cam8.mp4", frames=3, size=(64, 48), audio=False)
    code, _, err = run(capsys, clip8, *args, "-o", tmp_path / "pull8" / "c.%04d.tif", "-q")
    assert code == 0, err
    got, bits = read(tmp_path / "pull8" / "c.0001.tif")
    assert bits == 16 and len(np.unique(got)) > 256
    code, _, err = run(capsys, clip8, *args, "--output-space", "linear-rec709", "-o", tmp_path / "lin" / "c.%04d.tif")
    assert code == 2 and err.count("\n") == 1 and "clip" in err and not (tmp_path / "lin").exists(), err
