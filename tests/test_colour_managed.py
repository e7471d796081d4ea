"""Colour-managed grading: one linear scene shot by two cameras (S-Log3 / S-Gamut3.Cine and ARRI LogC3 /
AWG3), encoded with colour-science (independent of the OCIO code under test) into 16-bit FFV1, graded
with the same preset and each camera's own ``--input-space``."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import av
import numpy as np
import pytest
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


def test_two_cameras_graded_with_one_preset_agree(capsys, cameras) -> None:
    root, library = cameras["root"], cameras["root"] / "library"
    base = ["--mode", "fast", "--library", library, "--codec", "ffv1", "--force", "-q"]
    code, _, err = run(
        capsys, cameras["slog3"], "--look", cameras["reference"], "--input-space", "slog3",
        "--save-preset", "night", "-o", root / "made.mkv", *base,
    )  # fmt: skip
    assert code == 0, err
    outs = {}
    for cam, space in (("slog3", "slog3"), ("logc3", "logc3"), ("wrong", "slog3")):
        src = cameras["logc3" if cam == "wrong" else cam]
        out = root / f"{cam}.graded.mkv"
        code, o, err = run(capsys, src, "--preset", "night", "--input-space", space, "-o", out, *base[:-1], "--json")
        assert code == 0, err
        report = json.loads(o)
        assert report["colour"]["working"] == "ACEScct"
        assert report["colour"]["output"] == "Rec.1886 Rec.709 - Display"
        outs[cam] = read_rgb(out)
    agree = mean_delta_e(outs["slog3"], outs["logc3"])
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
    code, _, err = run(
        capsys, "presets", "export", "dusk", "--cube", cube, "--size", "65", "--cube-input", "slog3",
        "--cube-output", "rec709", "--library", library, "--force", "-q",
    )  # fmt: skip
    assert code == 0, err
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
    # a display-RGB preset has no spaces to bake
    code, _, err = run(capsys, cameras["slog3"], "--look", cameras["reference"], "--save-preset", "plain", "-o",
                       root / "plain.mkv", *base)  # fmt: skip
    assert code == 0, err
    code, _, err = run(capsys, "presets", "export", "plain", "--cube", root / "p.cube", "--cube-input", "slog3",
                       "--library", library)  # fmt: skip
    assert code == 2 and "display-RGB" in err and err.count("\n") == 1
