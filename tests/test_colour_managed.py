"""Colour-managed grading: one linear scene shot by two cameras (S-Log3 / S-Gamut3.Cine and ARRI LogC3 /
AWG3), encoded with colour-science (independent of the OCIO code under test) into 16-bit FFV1, graded
with the same preset and each camera's own ``--input-space``."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from clips import cli_args, make_still, write_frames

from grade.cli import main
from grade.color import delta_e2000, srgb_to_lab
from grade.io.video import probe

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # colour-science warns that SciPy is not installed
    import colour

H, W, FRAMES = 48, 64, 6
ACES = colour.RGB_COLOURSPACES["ACES2065-1"]


def linear_scene(t: int) -> np.ndarray:
    """ACES2065-1 linear light: a grey ramp, a warm patch, a blue sky band, a highlight above 1."""
    y, x = np.mgrid[0:H, 0:W] / np.array([H, W], float)[:, None, None]
    lin = np.stack([0.02 + 0.5 * x, 0.03 + 0.4 * x, 0.04 + 0.3 * x], -1) * (0.9 + 0.1 * y[..., None])
    lin[8:20, 6:26] = [0.45, 0.18, 0.07]
    lin[:6] = [0.12, 0.2, 0.45]
    lin[30:40, 40 + t : 50 + t] = [1.6, 1.5, 1.3]
    return lin


def camera(lin: np.ndarray, kind: str) -> np.ndarray:
    """The camera's log code values in [0, 1] for linear ACES light."""
    if kind == "slog3":
        rgb = colour.RGB_to_RGB(lin, ACES, colour.RGB_COLOURSPACES["S-Gamut3.Cine"], "CAT02")
        return colour.models.log_encoding_SLog3(rgb)
    rgb = colour.RGB_to_RGB(lin, ACES, colour.RGB_COLOURSPACES["ARRI Wide Gamut 3"], "CAT02")
    return colour.models.log_encoding_ARRILogC3(rgb)


def write_rgb16(path: Path, frames: list[np.ndarray], timecode: str | None = None) -> Path:
    """Log code values in [0, 1] as 16-bit lossless FFV1."""
    codes = [(np.clip(c, 0, 1) * 65535 + 0.5).astype(np.uint16) for c in frames]
    return write_frames(path, codes, codec="ffv1", pix_fmt="gbrp16le", timecode=timecode)


def read_rgb(path: Path, fmt: str = "rgb48le") -> np.ndarray:
    with av.open(str(path)) as box:
        return np.stack([f.to_ndarray(format=fmt) for f in box.decode(video=0)])


def run(capsys, *args) -> tuple[int, str, str]:
    code = main(cli_args(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def cameras(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cameras")
    scenes = [linear_scene(t) for t in range(FRAMES)]
    clips = {k: write_rgb16(root / f"{k}.mkv", [camera(s, k) for s in scenes]) for k in ("slog3", "logc3")}
    clips["reference"] = make_still(root / "reference.png", size=(64, 48), scene=1)
    clips["root"] = root
    return clips


def mean_delta_e(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(delta_e2000(srgb_to_lab(a / 65535.0), srgb_to_lab(b / 65535.0))))


@pytest.mark.parametrize("mode", ["fast", "learned"])
def test_two_cameras_graded_with_one_preset_agree(capsys, cameras, mode: str) -> None:
    """One preset made on the S-Log3 clip grades the LogC3 clip of the same scene to the same picture, in
    fast and in learned mode (the fold itself is checked by the test of the folded base table below)."""
    root, library = cameras["root"], cameras["root"] / f"library-{mode}"
    base = ["--mode", mode, "--library", library, "--codec", "ffv1", "--force", "-q"]
    code, _, err = run(
        capsys, cameras["slog3"], "--look", cameras["reference"], "--input-space", "slog3",
        "--save-preset", "night", "-o", root / f"made-{mode}.mkv", *base,
    )  # fmt: skip
    assert code == 0, err
    outs = {}
    for cam, space in (("slog3", "slog3"), ("logc3", "logc3"), ("wrong", "slog3")):
        src = cameras["logc3" if cam == "wrong" else cam]
        out = root / f"{cam}.{mode}.graded.mkv"
        code, o, err = run(capsys, src, "--preset", "night", "--input-space", space, "-o", out, *base[:-1], "--json")
        assert code == 0, err
        report = json.loads(o)
        assert report["colour"]["working"] == "ACEScct"
        assert report["colour"]["output"] == "Rec.1886 Rec.709 - Display"
        outs[cam] = read_rgb(out)
    agree = mean_delta_e(outs["slog3"], outs["logc3"])
    print(mode, "agreement", agree, "wrong camera", mean_delta_e(outs["slog3"], outs["wrong"]))
    assert agree <= 1.0, agree
    # the same preset on the LogC3 clip read as if it were S-Log3: visibly off (the test can tell)
    assert mean_delta_e(outs["slog3"], outs["wrong"]) > 3 * max(agree, 0.5)
    # the preset knows its working space
    from grade.library import Library

    assert Library(library).load("night").manifest.working_space == "ACEScct"


def test_keep_log_round_trip_is_within_one_10bit_code(capsys, cameras) -> None:
    out = cameras["root"] / "identity.mkv"
    code, _, err = run(
        capsys, cameras["slog3"], "--look", cameras["reference"], "--mode", "fast", "--strength", "0",
        "--input-space", "slog3", "--keep-log", "--codec", "ffv1", "-o", out, "--force", "-q",
    )  # fmt: skip
    assert code == 0, err
    a, b = read_rgb(cameras["slog3"]).astype(int), read_rgb(out).astype(int)
    assert np.abs(a - b).max() <= 65535 // 1023, np.abs(a - b).max()


@pytest.mark.parametrize("mode", ["fast", "learned"])
def test_keep_log_returns_saturated_wide_gamut_colours(capsys, tmp_path: Path, mode: str) -> None:
    """Colours of S-Gamut3.Cine that lie outside ACEScct's AP1 primaries (near-primary reds, greens and
    blues: negative working values) come back from a ``--keep-log`` identity grade as they went in, not
    clipped at the working space's 0 (which moved them by hundreds of 10-bit codes): through the fast
    look's composed table, and around a learned look (two lookups, the clipped part added back)."""
    lin = np.full((H, W, 3), 0.18)
    for i, c in enumerate(([0.4, 5e-4, 5e-4], [5e-4, 0.3, 5e-4], [5e-4, 5e-4, 0.3], [2.0, 0.02, 0.9])):
        lin[8:40, 4 + 15 * i : 16 + 15 * i] = c  # S-Gamut3.Cine linear
    codes = np.clip(colour.models.log_encoding_SLog3(lin), 0, 1)
    src = write_rgb16(tmp_path / "saturated.mkv", [codes] * 2)
    out = tmp_path / "identity.mkv"
    code, _, err = run(
        capsys, src, "--look", make_still(tmp_path / "ref.png"), "--mode", mode, "--strength", "0",
        "--input-space", "slog3", "--keep-log", "--codec", "ffv1", "-o", out, "-q",
    )  # fmt: skip
    assert code == 0, err
    a, b = read_rgb(src).astype(int), read_rgb(out).astype(int)
    assert np.abs(a - b).max() <= 65535 // 1023, np.abs(a - b).max()


@pytest.mark.parametrize("mode", ["fast", "learned"])
def test_a_log_clip_pulled_into_scene_linear_exr_frames_keeps_its_highlights(capsys, tmp_path: Path, mode) -> None:
    """A VFX pull: a 16-bit S-Log3 clip graded into linear Rec.709 EXR frames at ``--strength 0`` gives the
    scene's own light back (colour-science's transform, independent of the OCIO code under test): the
    highlights above 1 as they were (16-bit codes clipped them at 1.0), and the negative values of
    S-Gamut3.Cine colours outside Rec.709 below 0. DPX frames, integer codes, are refused in one line."""
    import OpenImageIO as oiio

    gamut = colour.RGB_COLOURSPACES["S-Gamut3.Cine"]
    y, x = np.mgrid[0:H, 0:W] / np.array([H, W], float)[:, None, None]
    lin = np.stack([0.02 + 0.5 * x, 0.03 + 0.4 * x, 0.04 + 0.3 * y], -1)  # S-Gamut3.Cine linear light
    lin[30:40, 40:50] = [6.0, 5.0, 4.0]  # a highlight well above 1
    lin[8:20, 6:26] = [0.4, 0.004, 0.004]  # a saturated red outside Rec.709: negative green and blue there
    src = write_rgb16(tmp_path / "slog3.mkv", [np.clip(colour.models.log_encoding_SLog3(lin), 0, 1)] * 3)
    want = colour.RGB_to_RGB(lin, gamut, colour.RGB_COLOURSPACES["ITU-R BT.709"])  # both D65: no adaptation
    args = ["--look", make_still(tmp_path / "ref.png"), "--mode", mode, "--strength", "0", "--input-space", "slog3"]
    pull, preview = tmp_path / "pull" / "f.%04d.exr", tmp_path / "preview.png"
    code, _, err = run(capsys, src, *args, "--output-space", "linear-rec709", "-o", pull, "--preview", preview, "-q")
    assert code == 0 and preview.stat().st_size > 0, err
    names = sorted(p.name for p in (tmp_path / "pull").iterdir())
    assert names == ["f.0000.exr", "f.0001.exr", "f.0002.exr"], names
    inp = oiio.ImageInput.open(str(tmp_path / "pull" / "f.0001.exr"))
    got = np.asarray(inp.read_image(0, 0, 0, 3, "float"), np.float64)
    inp.close()
    # OCIO's S-Gamut3.Cine goes through ACES2065-1: colour-science's direct matrix differs by ~0.002 near 0
    err = np.abs(got - want) / (np.abs(want) + 0.05)
    assert np.median(err) < 0.005 and err.max() < 0.06, (np.median(err), err.max())
    assert got[30:40, 40:50].min() > 3.5  # highlights kept, not clipped at 1.0
    assert want[8:20, 6:26, 1:].max() < -0.01 and np.abs(got[8:20, 6:26] - want[8:20, 6:26]).max() < 0.01
    # without --output-space a log clip is pulled into EXR as scene-linear (linear Rec.709: what an EXR is read as)
    code, _, err = run(capsys, src, *args, "-o", tmp_path / "default" / "f.%04d.exr", "-q")
    assert code == 0, err
    inp = oiio.ImageInput.open(str(tmp_path / "default" / "f.0001.exr"))
    assert np.abs(np.asarray(inp.read_image(0, 0, 0, 3, "float")) - got).max() < 1e-3
    inp.close()
    # a --keep-log pull states its camera log (OpenImageIO drops the ocio: interop ids of camera spaces,
    # grade:ColorSpace keeps the name), and is read back as S-Log3
    code, _, err = run(capsys, src, *args, "--keep-log", "-o", tmp_path / "keep" / "f.%04d.exr", "-q")
    assert code == 0, err
    code, o, err = run(capsys, tmp_path / "keep" / "f.%04d.exr", *args[:-2], "-o", tmp_path / "again", "--json")
    assert code == 0 and json.loads(o)["colour"]["input"] == "S-Log3 S-Gamut3.Cine", err
    # a show's config without a linear Rec.709 space: an EXR that states nothing is one line, not a guess
    import PyOpenColorIO as ocio

    from grade.colourspace import linear_rec709, sequence_space
    from grade.errors import InputError

    show = ocio.Config.CreateFromBuiltinConfig("studio-config-latest")
    show.removeColorSpace("Linear Rec.709 (sRGB)")
    assert linear_rec709(show) is None
    with pytest.raises(InputError, match="input.space"):
        sequence_space(".exr", None, show)
    # integer frames cannot hold scene-linear light: one line, nothing written
    code, _, err = run(capsys, src, *args, "--output-space", "linear-rec709", "-o", tmp_path / "dpx" / "f.%04d.dpx")
    assert code == 2 and err.count("\n") == 1 and "EXR" in err and not (tmp_path / "dpx").exists(), err


def test_keep_log_lookups_around_a_learned_look_send_the_cells_the_tables_miss_to_ocio() -> None:
    """The two baked lookups around a learned look (``--keep-log``: S-Log3 -> ACEScct -> S-Log3) on any
    S-Log3 code values, no grade between: where the tables clip or bend away from the transform, the
    pixels go through OCIO's exact processors: at 16 bits 1.8 % of the pixels come back more than one
    10-bit code off (the plain tables: 80 %, up to 737 codes), at 8 bits 6.4 % more than one 8-bit
    code (72.5 %)."""
    from grade.colourspace import colour_pipeline

    cp = colour_pipeline("slog3", None, None, True, None)
    codes = np.random.default_rng(0).uniform(0.093, 1.0, (120, 160, 3))
    for scale, dtype in ((65535, np.uint16), (255, np.uint8)):
        px = (codes * scale + 0.5).astype(dtype)
        if dtype == np.uint8:
            px = np.dstack([px, np.full(px.shape[:2], 255, np.uint8)])  # the render's 8-bit RGBA layout
        working = cp.frame_in(px)
        back = cp.frame_out(working, cp.outside(px, working))
        plain = cp._apply("from_working", working)
        off = (np.abs(back[..., :3].astype(float) - px[..., :3]) * 1023 / scale).max(-1)
        off_plain = (np.abs(plain[..., :3].astype(float) - px[..., :3]) * 1023 / scale).max(-1)
        tol = 1.001 * (1.0 if dtype == np.uint16 else 1023 / 255)  # one code of the frame's depth
        # 8 bits: the learned look works on an 8-bit working frame, and one working code moves a saturated
        # colour by several output codes where the log-to-log transform is steep (the plain tables: 72 %)
        assert (off > tol).mean() < (0.03 if dtype == np.uint16 else 0.10), (dtype, (off > tol).mean())
        assert (off_plain > tol).mean() > 2 * (off > tol).mean()  # the test can tell the fix
        if dtype == np.uint8:
            assert (back[..., 3] == 255).all()


def test_log_to_rec709_output_is_tagged(capsys, cameras) -> None:
    out = cameras["root"] / "tagged.mp4"
    code, _, err = run(
        capsys, cameras["logc3"], "--look", cameras["reference"], "--mode", "fast", "--input-space", "logc3",
        "-o", out, "--force", "-q",
    )  # fmt: skip
    assert code == 0, err
    info = probe(out)
    assert (info.color_primaries, info.color_trc, info.colorspace) == (1, 1, 1)
    # a log picture seen through the ACES view: not the flat log (its contrast is larger than the log's)
    graded, flat = read_rgb(out, "rgb24").astype(float), read_rgb(cameras["logc3"], "rgb24").astype(float)
    assert graded.std() > 1.3 * flat.std()


@pytest.mark.parametrize(
    "flag, value, hint",
    [("--input-space", "slog4", "'slog3'"), ("--working-space", "ACEScc t", "'ACEScct'")],
)
def test_unknown_colour_space_is_one_line_with_the_closest_names(capsys, cameras, flag, value, hint) -> None:
    out = cameras["root"] / "never.mkv"
    code, o, err = run(capsys, cameras["slog3"], "--look", cameras["reference"], flag, value, "-o", out)
    assert code == 2 and err.count("\n") == 1, err
    assert flag in err and "closest" in err and hint in err
    assert not out.exists()


def test_mixed_camera_conform_shares_one_scene_look(capsys, cameras, tmp_path: Path) -> None:
    """An edit cutting between the two cameras: the looks file says which reel is which camera, the scene
    look is trained once in ACEScct, and both events come out alike (in one process and in workers)."""
    import opentimelineio as otio

    media = tmp_path / "media"
    media.mkdir()
    scenes = [linear_scene(t) for t in range(FRAMES)]
    write_rgb16(media / "A001.mkv", [camera(s, "slog3") for s in scenes], "01:00:00:00")
    write_rgb16(media / "B001.mkv", [camera(s, "logc3") for s in scenes], "02:00:00:00")
    rate = 24
    track = otio.schema.Track(kind=otio.schema.TrackKind.Video)
    for name, reel, start in (("a", "A001", 3600 * rate), ("b", "B001", 2 * 3600 * rate)):
        c = otio.schema.Clip(
            name=name,
            source_range=otio.opentime.TimeRange(
                otio.opentime.RationalTime(start, rate), otio.opentime.RationalTime(FRAMES, rate)
            ),
        )
        c.metadata["cmx_3600"] = {"reel": reel}
        track.append(c)
    timeline = otio.schema.Timeline(name="mixed", global_start_time=otio.opentime.RationalTime(3600 * rate, rate))
    timeline.tracks.append(track)
    otio.adapters.write_to_file(timeline, str(tmp_path / "cut.otio"))
    (tmp_path / "looks.toml").write_text(
        f'default = "night"\n[scenes.night]\nreference = "{cameras["reference"]}"\n'
        '[[inputs]]\nreel = "A0*"\ninput_space = "slog3"\n[[inputs]]\nreel = "B0*"\ninput_space = "logc3"\n'
    )
    outs = {}
    for jobs in ("1", "2"):
        out = tmp_path / f"graded{jobs}"
        code, o, err = run(
            capsys, "conform", tmp_path / "cut.otio", "--media", media, "--looks", tmp_path / "looks.toml",
            "-o", out, "--handles", "0", "--match", "reel", "--mode", "fast", "--jobs", jobs, "--json",
        )  # fmt: skip
        assert code == 0, err
        report = json.loads(o)
        assert [e["status"] for e in report["events"]] == ["done", "done"]
        outs[jobs] = [Path(e["output"]) for e in report["events"]]
    a, b = read_rgb(outs["1"][0]), read_rgb(outs["1"][1])
    assert mean_delta_e(a, b) <= 1.0, mean_delta_e(a, b)
    assert probe(outs["1"][0]).color_trc == 1  # Rec.709 out, tagged
    for one, two in zip(outs["1"], outs["2"]):  # the worker processes render the same clips
        assert np.array_equal(read_rgb(one), read_rgb(two))


def test_cube_export_bakes_the_camera_and_display_transforms(capsys, cameras) -> None:
    """``presets export --cube-input slog3 --cube-output rec709``: the .cube alone, applied to the S-Log3
    clip by a LUT-only grade, gives the colour-managed render of the preset; its header names its spaces."""
    root, library = cameras["root"], cameras["root"] / "lib-cube"
    base = ["--mode", "fast", "--library", library, "--codec", "ffv1", "--force", "-q"]
    code, _, err = run(
        capsys, cameras["slog3"], "--look", cameras["reference"], "--input-space", "slog3",
        "--save-preset", "dusk", "-o", root / "dusk.mkv", *base,
    )  # fmt: skip
    assert code == 0, err
    cube = root / "dusk.cube"
    reported = {}
    for size in ("17", "65"):
        code, out, err = run(
            capsys, "presets", "export", "dusk", "--cube", cube, "--size", size, "--cube-input", "slog3",
            "--cube-output", "rec709", "--library", library, "--force", "--json",
        )  # fmt: skip
        assert code == 0, err
        reported[size] = json.loads(out)
    # the error it reports is the baked .cube's against the colour-managed render, not the look's own LUT's
    assert reported["65"]["baked"] and reported["65"]["mean_de2000"] < reported["17"]["mean_de2000"], reported
    head = cube.read_text().splitlines()[:4]
    assert "# input: S-Log3 S-Gamut3.Cine" in head and "# output: Rec.1886 Rec.709 - Display" in head
    code, _, err = run(capsys, cameras["slog3"], "--look", cube, "-o", root / "by-cube.mkv", *base)
    assert code == 0, err
    code, _, err = run(
        capsys, cameras["slog3"], "--preset", "dusk", "--input-space", "slog3", "-o", root / "cm.mkv", *base
    )
    assert code == 0, err
    agree = mean_delta_e(read_rgb(root / "by-cube.mkv"), read_rgb(root / "cm.mkv"))
    assert agree <= 1.0, agree
    # and it is what the .cube is off by on the clip (measured: 0.398 reported, 0.396 on the clip; 5.28 at 17)
    assert abs(reported["65"]["mean_de2000"] - agree) < 0.2, (reported["65"], agree)
    # a display-RGB preset has no spaces to bake
    code, _, err = run(capsys, cameras["slog3"], "--look", cameras["reference"], "--save-preset", "plain", "-o",
                       root / "plain.mkv", *base)  # fmt: skip
    assert code == 0, err
    code, _, err = run(capsys, "presets", "export", "plain", "--cube", root / "p.cube", "--cube-input", "slog3",
                       "--library", library)  # fmt: skip
    assert code == 2 and "display-RGB" in err and err.count("\n") == 1


# --- the composed table (grade.colourgrade): input transform, look and output transform in one lookup ---


def _look_lut() -> torch.Tensor:
    """A fitted working-space look (the fast mode's, of the S-Log3 scene against a scene still): its kinks
    are what a composed table must not smooth away."""
    from clips import scene_frame

    from grade.colourspace import colour_pipeline
    from grade.io.image import to_tensor
    from grade.transfer import TransferSettings, fast_lut

    cp = colour_pipeline("slog3", None, None, False, None)
    key = (np.clip(cp.float_in(_log_pictures()[0]), 0, 1) * 255 + 0.5).astype(np.uint8)
    reference = cp.reference(to_tensor(scene_frame(64, 48, 0, 1)))
    return fast_lut([to_tensor(key)], reference, TransferSettings(seed=0))


def _exact(cp, lut: torch.Tensor, rgb: np.ndarray) -> np.ndarray:
    """OCIO's processors around the look LUT, in float: the reference both paths approximate."""
    from grade.lut import apply_lut

    work = np.clip(cp.float_in(rgb.astype(np.float32)), 0, 1)
    graded = apply_lut(lut, torch.from_numpy(work).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
    return np.clip(cp.float_out(graded), 0, 1)


def _de(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(delta_e2000(srgb_to_lab(a), srgb_to_lab(b))))


def _log_pictures(kind: str = "slog3") -> np.ndarray:
    """Camera code values in [0, 1] of the linear scene, ``(FRAMES, H, W, 3)`` float."""
    return np.stack([np.clip(camera(linear_scene(t), kind), 0, 1) for t in range(FRAMES)]).astype(np.float32)


@pytest.mark.parametrize("space", ["slog3", "logc3"])
def test_composed_table_agrees_with_the_processor_and_the_separate_path(space) -> None:
    """One composed lookup a frame (16-bit RGB, 8-bit RGBA) against OCIO's exact chain and against the two
    baked lookups around the look: both within mean ΔE2000 0.2 of the processor (at the frame's own bit
    depth), and on 8-bit frames the composed one closer to it than the separate path (which rounds the
    log picture to 8 bits in the working space between its lookups)."""
    from grade.colourgrade import managed
    from grade.colourspace import colour_pipeline
    from grade.shotgrade import ShotGrade

    cp = colour_pipeline(space, None, None, False, None)
    grade = ShotGrade(_look_lut(), 0.8)
    composed = managed(cp, grade)
    assert composed.kind == "composed"
    grade.prepare(False, 1, False)
    composed.prepare(False, 1, False)
    logs = _log_pictures(space)[:2]
    for pic in logs:
        exact = _exact(cp, grade.lut, pic)
        deep = (pic * 65535 + 0.5).astype(np.uint16)
        one = composed.grade(deep, H, W) / 65535.0
        two = cp.frame_out(grade.grade(cp.frame_in(deep), H, W)) / 65535.0
        # each path within 0.2 of the processor, and of each other (S-Log3: 0.07 and 0.13 off it, 0.15 apart,
        # measured; with the look before its smoothing, 0.12 and 0.09, 0.17 apart, and 0.15 and 0.09,
        # 0.20 apart, before the composed nodes were unbiased)
        assert _de(exact, one) <= 0.2 and _de(exact, two) <= 0.2, (_de(exact, one), _de(exact, two))
        assert _de(one, two) <= 0.2, _de(one, two)
        print(space, "16-bit", _de(exact, one), _de(exact, two), _de(one, two))
        rgba = np.dstack([(pic * 255 + 0.5).astype(np.uint8), np.full((H, W), 255, np.uint8)])
        one = composed.grade(rgba, H, W)[..., :3] / 255.0
        two = cp.frame_out(grade.grade(cp.frame_in(rgba), H, W))[..., :3] / 255.0
        exact = _exact(cp, grade.lut, rgba[..., :3] / 255.0)  # of the same 8-bit codes
        rounded = (exact * 255 + 0.5).astype(np.uint8) / 255.0
        assert _de(rounded, one) <= 0.2, _de(rounded, one)
        assert _de(rounded, one) <= _de(rounded, two)
        print(space, "8-bit", _de(rounded, one), _de(rounded, two), _de(one, two))
    # one managed grade per grade and pipeline; none without colour management
    assert managed(cp, grade) is composed and managed(None, grade) is grade
    # the grade's release frees its view's tables (25 MiB composed, 64 MiB expanded); prepare rebuilds them
    grade.release()
    assert composed._lut is None and composed._table is None
    composed.prepare(False, 1, False)
    assert composed._table is not None and np.array_equal(composed.grade(rgba, H, W), composed.grade(rgba, H, W))
    assert colour_pipeline(None, None, None, False, None) is None


def test_learned_look_to_a_display_folds_the_input_transform_into_its_base() -> None:
    """A learned look on S-Log3 frames to the Rec.709 view: one lookup from input codes to the look's base,
    the field fitted on the frame brought to the working space at half size, then the output lookup
    (``folded``: no full-size input-to-working pass). Against OCIO's exact chain around the look's float
    path it is as close as the two lookups around the look at 16 bits, and closer at 8 bits (no 8-bit
    working frame is rounded). A scene-referred output, or a look below full strength, keeps the two
    lookups."""
    import cv2
    from clips import scene_frame

    from grade.colourgrade import managed
    from grade.colourspace import colour_pipeline
    from grade.io.image import to_tensor
    from grade.model.look import LearnedLook, LookSettings
    from grade.shotgrade import ShotGrade
    from grade.train import TrainSettings, train_look
    from grade.transfer import fast_lut

    cp = colour_pipeline("slog3", None, None, False, None)
    big = (192, 256)  # four times the working side of 64: the half-size step is taken
    # grain (10 10-bit codes) inside the working resolution's blocks: what a fit on a frame shrunk in log codes
    # gets wrong (measured: 0.095 folded, 0.091 separate; with grain of 40 codes the fold is 0.31, separate 0.07)
    noise = np.random.default_rng(3).normal(0, 0.01, (*big, 3)).astype(np.float32)
    logs = [(cv2.resize(p, big[::-1], interpolation=cv2.INTER_CUBIC) + noise).clip(0, 1) for p in _log_pictures()[:2]]
    key = torch.from_numpy(np.clip(cp.float_in(logs[0]), 0, 1)).permute(2, 0, 1).contiguous()
    ref = cp.reference(to_tensor(scene_frame(64, 48, 0, 1)))
    lut = fast_lut(key, ref)
    look, _ = train_look(key, ref, lut, LookSettings(working_side=64), TrainSettings(steps=20))
    grade = ShotGrade(lut, 1.0, look, stabilise=False)
    other = ShotGrade(lut, 1.0, look, stabilise=False)  # held: a managed grade keeps its grade weakly
    folded, two = managed(cp, grade), managed(cp, other)
    two.kind = "separate"  # the path it replaced, for comparison
    assert folded.kind == "folded" and folded.base_lut.shape == (3, 129, 129, 129)
    for m in (folded, two):
        m.prepare(False, 1, False)
    h, w = big
    for pic in logs:
        work = np.clip(cp.float_in(pic), 0, 1).astype(np.float32)
        graded = look.apply(torch.from_numpy(work).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
        exact = np.clip(cp.float_out(graded), 0, 1)
        deep = (pic * 65535 + 0.5).astype(np.uint16)
        one, sep = folded.grade(deep, h, w) / 65535.0, two.grade(deep, h, w) / 65535.0
        print("16-bit", _de(exact, one), _de(exact, sep))
        assert _de(exact, one) <= 0.2 and _de(exact, one) <= _de(exact, sep) + 0.05, (_de(exact, one), _de(exact, sep))
        rgba = np.dstack([(pic * 255 + 0.5).astype(np.uint8), np.full((h, w), 255, np.uint8)])
        one, sep = folded.grade(rgba, h, w), two.grade(rgba, h, w)
        assert (one[..., 3] == 255).all()
        print("8-bit", _de(exact, one[..., :3] / 255.0), _de(exact, sep[..., :3] / 255.0))
        assert _de(exact, one[..., :3] / 255.0) < _de(exact, sep[..., :3] / 255.0)
    # what the fold needs: a display output (its view clamps what the working space clipped), full strength
    assert managed(colour_pipeline("slog3", None, None, True, None), grade).kind == "separate"  # --keep-log
    soft = LearnedLook(lut, look.net, look.settings, strength=0.5)
    assert managed(cp, ShotGrade(lut, 0.5, soft)).kind == "separate"
    # the folded path's stabiliser: prepare() starts a shot afresh (nothing carried across a cut), and
    # reset=False (the other side of a dissolve) keeps what the frames before left
    steady = ShotGrade(lut, 1.0, look, stabilise=True)
    still = managed(cp, steady)
    assert still.kind == "folded" and still.stabiliser is steady.stabiliser is not None
    first = np.dstack([(logs[0] * 255 + 0.5).astype(np.uint8), np.full((h, w), 255, np.uint8)])
    later = first.copy()
    later[..., :3] = np.clip(first[..., :3].astype(np.int16) + 6, 0, 255).astype(np.uint8)  # a little brighter
    still.prepare(False, 1, False)
    fresh = still.grade(later, h, w)
    still.prepare(False, 1, False)
    still.grade(first, h, w)
    carried = still.grade(later, h, w)
    assert not np.array_equal(carried, fresh)  # the field was carried from the frame before
    still.prepare(False, 1, False)
    still.grade(first, h, w)
    still.prepare(False, 1, False, reset=False)
    assert np.array_equal(still.grade(later, h, w), carried)  # kept across the prepare
    still.prepare(False, 1, False)
    assert np.array_equal(still.grade(later, h, w), fresh)  # a new shot: as if it were the first frame
    grade.release()
    assert folded._base is None and folded._table is None


def _tagged_yuv420(path: Path, frames: list[np.ndarray]) -> Path:
    """8-bit 4:2:0 FFV1 tagged BT.709 (matrix, primaries, transfer): the container of an 8-bit log camera."""
    return write_frames(path, frames, codec="ffv1", pix_fmt="yuv420p", tags=1)


def _planes_rgb(planes: np.ndarray) -> np.ndarray:
    """yuv420p planes ``(H * 3 // 2, W)`` (BT.709, limited range) as R'G'B' ``(H, W, 3)`` in [0, 1], chroma
    repeated over its 2x2 block: the conversion the 4:2:0 tables are built on (swscale's rounds differently
    by a code or two, which a log picture seen through a display view turns into several ΔE)."""
    from grade.lut import yuv_to_rgb

    cb, cr = (np.repeat(np.repeat(c, 2, 0), 2, 1) for c in planes[H:].reshape(2, H // 2, W // 2))
    yuv = np.stack([planes[:H], cb, cr], -1).astype(np.float64)
    return yuv_to_rgb(torch.from_numpy(yuv), 1, False).numpy()


def test_yuv420_log_footage_is_graded_in_its_own_ycbcr_through_the_composed_table(capsys, tmp_path: Path) -> None:
    """8-bit 4:2:0 S-Log3 with a .cube look: the composed table grades the planes as they are (no RGB round
    trip, as for Rec.709 footage), close to OCIO's exact chain; the render takes that path."""
    from grade.colourgrade import managed
    from grade.colourspace import colour_pipeline
    from grade.cube import write_cube
    from grade.shotgrade import ShotGrade

    pics = [(p * 255 + 0.5).astype(np.uint8) for p in _log_pictures()]
    src = _tagged_yuv420(tmp_path / "slog3-420.mkv", pics)
    cp = colour_pipeline("slog3", None, None, False, None)
    assert cp.yuv_native(1) and not cp.yuv_native(5)  # Rec.709 out: the source's BT.709 matrix kept
    look = _look_lut()
    m = managed(cp, ShotGrade(look, 1.0))
    m.prepare(True, 1, False)
    with av.open(str(src)) as box:
        planes = [f.to_ndarray() for f in box.decode(video=0)]
    ours = [m.grade(p, H, W) for p in planes]
    assert ours[0].shape == planes[0].shape and ours[0].dtype == np.uint8  # still 4:2:0 planes
    for p, out in zip(planes[:2], ours):
        rgb = _planes_rgb(p)
        exact = cp.exact(look, rgb.reshape(-1, 3).astype(np.float32)).reshape(rgb.shape)
        # 0.41 and 0.52 measured (0.53 and 0.63 before the table's nodes were unbiased)
        assert _de(exact, _planes_rgb(out)) <= 0.6, _de(exact, _planes_rgb(out))
    write_cube(tmp_path / "look.cube", look)
    graded = tmp_path / "graded.mkv"
    code, _, err = run(
        capsys, src, "--look", tmp_path / "look.cube", "--input-space", "slog3", "--codec", "ffv1",
        "-o", graded, "--force", "-q",
    )  # fmt: skip
    assert code == 0, err
    got = probe(graded)
    assert (got.pix_fmt, got.colorspace, got.color_trc) == ("yuv420p", 1, 1)
    with av.open(str(graded)) as box:
        rendered = [f.to_ndarray() for f in box.decode(video=0)]
    assert all(np.array_equal(a, b) for a, b in zip(rendered, ours))  # the planes, graded as they are


# --- the review page, colour-managed (grade.review.colour) ---


def test_review_shows_log_footage_as_the_render_writes_it(cameras, tmp_path: Path) -> None:
    """``grade review --input-space slog3``: "before" is the log clip through the display's view (not the
    flat log picture), "after" the look as the render writes it, and a look fitted on the page is made in
    the working space (its preset says so)."""
    from grade.colourspace import colour_pipeline
    from grade.cube import write_cube
    from grade.library import read_look
    from grade.lut import identity_lut
    from grade.review.page import render_page
    from grade.review.session import ReviewSession, Update

    write_cube(tmp_path / "look.cube", _look_lut())
    session = ReviewSession(
        [cameras["slog3"]], [tmp_path / "look.cube", cameras["reference"]], mode="fast",
        library=tmp_path / "library", output=tmp_path / "out.mkv", render={"codec": "ffv1"},
        colour={"input_space": "slog3"}, fit={"steps": 3},
    )  # fmt: skip
    try:
        raw = session.frame("c0", 2, deep=True) / 65535.0  # the 16-bit clip, shown from its 16-bit decode
        before = session.picture("c0", 0, 2, "before")
        cp = colour_pipeline("slog3", None, None, False, None)
        exact = cp.exact(identity_lut(2), raw.reshape(-1, 3).astype(np.float32)).reshape(raw.shape)
        assert _de(exact, before / 255.0) <= 0.5 and _de(raw, before / 255.0) > 5
        after = session.picture("c0", 0, 2, "after")
        job = session.start_render("c0")
        for _ in range(600):
            if job.state in ("done", "failed", "cancelled"):
                break
            time.sleep(0.1)
        assert job.state == "done", job.message
        rendered = read_rgb(tmp_path / "out.mkv", "rgb24")[2]
        assert _de(rendered / 255.0, after / 255.0) <= 0.5, _de(rendered / 255.0, after / 255.0)  # 0.28 measured
        assert _de(before / 255.0, after / 255.0) > 2  # the look is there
        page = render_page(session, "t", "c0", 0, None, 0.5)
        assert "colour managed: S-Log3 S-Gamut3.Cine → working ACEScct → Rec.1886 Rec.709" in page
        session.update("c0", 0, Update(look="r1"))
        fitted = session.picture("c0", 0, 2, "after")
        assert _de(fitted / 255.0, before / 255.0) > 1
        saved = session.save_preset("c0", 0, "page-look")
        assert read_look(saved).manifest.working_space == "ACEScct"
        session.update("c0", 0, Update(mode="learned"))  # trained in the background, in the working space
        _, state, job = session.look("c0", 0)
        for _ in range(1200):
            if job.state in ("done", "failed", "cancelled"):
                break
            time.sleep(0.1)
        assert job.state == "done", job.message
        learned = session.picture("c0", 0, 2, "after")
        assert session.look("c0", 0)[1] == "ready" and _de(learned / 255.0, before / 255.0) > 1
        assert read_look(session.save_preset("c0", 0, "page-learned")).manifest.mode == "learned"
    finally:
        session.close()


def test_review_refuses_an_unknown_colour_space_in_one_line(cameras, capsys) -> None:
    code, _, err = run(capsys, "review", cameras["slog3"], "--look", cameras["reference"], "--input-space", "slog4",
                       "--no-open")  # fmt: skip
    assert code == 2 and "'slog3'" in err and err.count("\n") == 1
    code, _, err = run(capsys, "review", cameras["slog3"], "--look", cameras["reference"], "--input-space", "slog3",
                       "--keep-log", "--output-space", "rec709", "--no-open")  # fmt: skip
    assert code == 2 and "--keep-log" in err and err.count("\n") == 1  # the combination, before any page
