"""Footage as it comes from an edit: black becomes the reference's black, fades grade as their shot's
look darkened, dissolves cross-fade their two shots' looks, and titles and black never drive a look."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from clips import edit_frames, read_all, write_frames

from grade.cli import main
from grade.color import delta_e2000, srgb_to_lab

X264 = {"crf": "10", "preset": "ultrafast"}
FACTORS = {"fade_out": [1 - (t + 1) / 13 for t in range(12)], "fade_in": [(t + 1) / 13 for t in range(12)]}


def _reference(path: Path, warm: bool) -> Path:
    """A reference with real shadows: a warm (sunset) or a cold (night) gradient."""
    h, w = 60, 80
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.array([0.95, 0.55, 0.25] if warm else [0.2, 0.35, 0.7], np.float32)
    light = (1 - yy / h)[..., None] * 0.9 + 0.05 + 0.05 * np.sin(xx / 4)[..., None]
    img = np.clip(base * light, 0, 1)
    img[-8:, :20] = 0.02  # its darkest corner: the black level
    cv2.imwrite(str(path), cv2.cvtColor((img * 255 + 0.5).astype(np.uint8), cv2.COLOR_RGB2BGR))
    return path


def _black_level(reference: Path) -> np.ndarray:
    """The reference's black point in Lab: L* at its 1st percentile, the median tint of its darkest 2 %."""
    lab = srgb_to_lab(cv2.imread(str(reference))[..., ::-1] / 255.0).reshape(-1, 3)
    dark = lab[lab[:, 0] <= np.percentile(lab[:, 0], 2)]
    return np.array([np.percentile(lab[:, 0], 1), *np.median(dark[:, 1:], axis=0)])


@pytest.fixture(scope="module")
def edit(tmp_path_factory):
    folder = tmp_path_factory.mktemp("edit")
    frames, parts = edit_frames()
    clip = write_frames(folder / "edit.mp4", frames, options=X264)
    plain = write_frames(folder / "undarkened.mp4", edit_frames(faded=False)[0], options=X264)
    refs = {"warm": _reference(folder / "warm.png", True), "cold": _reference(folder / "cold.png", False)}
    return folder, clip, plain, parts, refs


def _lab(frame: np.ndarray) -> np.ndarray:
    return srgb_to_lab(frame.reshape(-1, 3) / 255.0)


def _check(out: Path | list, plain_out: Path | list, parts: dict, reference: Path, fade_de: float = 5.0) -> None:
    """The graded edit ``out`` against the graded undarkened edit ``plain_out`` (videos, or frames), and
    the black level of ``reference`` (as it is shown in the output)."""
    frames = read_all(out)[0] if isinstance(out, Path) else out
    plain = read_all(plain_out)[0] if isinstance(plain_out, Path) else plain_out
    black = _black_level(reference)
    # black frames: the reference's black level (ΔE2000 within 3), never brighter
    for i in parts["black"]:
        lab = _lab(frames[i])
        med = np.median(lab, axis=0)
        assert float(delta_e2000(med[None], black[None])[0]) < 3, (i, med, black)
        assert float(lab[:, 0].max()) < black[0] + 3, i
    for name, factors in FACTORS.items():
        # each fade's L* monotone, down to black and up from it
        lum = [float(_lab(frames[i])[:, 0].mean()) for i in parts[name]]
        sign = -1 if name == "fade_out" else 1
        assert all(sign * (b - a) > -0.3 for a, b in zip(lum, lum[1:])), (name, np.round(lum, 1))
        # each frame of a fade: the grade of its undarkened frame, darkened by the fade's factor
        for i, k in zip(parts[name], factors):
            expected = plain[i].astype(np.float64) * k
            de = float(delta_e2000(_lab(frames[i]), _lab(expected)).mean())
            assert de < fade_de, (name, i, round(k, 2), de)
    # no colour fog: the darkest fade frames are near-neutral at the reference's black tint
    for i in (parts["fade_out"][-1], parts["fade_in"][0]):
        assert float(np.abs(np.median(_lab(frames[i])[:, 1:], axis=0) - black[1:]).max()) < 6, i


def _run(args: list, capsys) -> dict:
    code = main([str(a) for a in args] + ["--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


@pytest.mark.parametrize("tone", ["warm", "cold"])
@pytest.mark.parametrize("mode", ["fast", "learned"])
def test_black_fades_and_dissolve_per_shot(capsys, edit, mode: str, tone: str) -> None:
    folder, clip, plain, parts, refs = edit
    ref = refs[tone]
    out, plain_out = folder / f"{mode}-{tone}.mp4", folder / f"{mode}-{tone}-plain.mp4"
    steps = ["--steps", "20"] if mode == "learned" else []
    report = _run([clip, "--look", ref, "--mode", mode, *steps, "-o", out, "--force"], capsys)
    _run([plain, "--look", ref, "--mode", mode, *steps, "-o", plain_out, "--force"], capsys)
    _check(out, plain_out, parts, ref)
    shots = report["shots"]
    # black and the title card are shots of their own, graded by the tone mapping only, never key frames
    blank = [s for s in shots if s["flat"]]
    assert [(s["start"], s["end"]) for s in blank] == [(36, 48), (120, 140)]
    for s in shots:
        if not s["flat"]:
            assert s["key_frame"] not in parts["black"] and s["key_frame"] not in parts["title"]
            assert s["key_frame"] not in parts["fade_out"] and s["key_frame"] not in parts["fade_in"]
    # the dissolve: its two sides are two shots, each with its own look, cross-faded without a jump
    frames, _ = read_all(out)
    d = parts["dissolve"]
    assert any(d.start < s["start"] < d.stop for s in shots)
    steps_de = [float(delta_e2000(_lab(frames[i]), _lab(frames[i + 1])).mean()) for i in range(d.start - 2, d.stop + 1)]
    assert max(steps_de) < 3 * np.median(steps_de) + 2, np.round(steps_de, 1)


@pytest.mark.parametrize(("mode", "kind"), [("fast", "png"), ("learned", "png"), ("fast", "exr")])
def test_an_image_sequence_is_handled_as_its_video(capsys, tmp_path: Path, mode: str, kind: str) -> None:
    """The same edit as an image sequence (a conformed export, a scan with leader): black and the title are
    shots of their own and never key frames, fades grade as their shot's look darkened, and the dissolve
    is found and cross-faded, as on video. As scene-linear EXR (colour-managed, analysed through a power,
    graded in ACEScct, out through the display view) the fades are a multiply in linear light."""
    import OpenImageIO as oiio

    frames, parts = edit_frames()
    for name, pictures in (("edit", frames), ("plain", edit_frames(faded=False)[0])):
        (tmp_path / name).mkdir()
        for n, rgb in enumerate(pictures):
            path = tmp_path / name / f"f.{1001 + n}.{kind}"
            if kind == "png":
                cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
                continue
            out = oiio.ImageOutput.create(str(path))
            assert out.open(str(path), oiio.ImageSpec(rgb.shape[1], rgb.shape[0], 3, "half"))
            assert out.write_image(np.ascontiguousarray((rgb / 255.0) ** 2.2, np.float32))
            out.close()
    ref = _reference(tmp_path / "warm.png", True)
    steps = ["--steps", "20"] if mode == "learned" else []
    report = _run([tmp_path / "edit" / f"f.%d.{kind}", "--look", ref, "--mode", mode, *steps,
                   "-o", tmp_path / "out" / "g.%d.png"], capsys)  # fmt: skip
    _run([tmp_path / "plain" / f"f.%d.{kind}", "--look", ref, "--mode", mode, *steps,
          "-o", tmp_path / "po" / "g.%d.png"], capsys)  # fmt: skip

    def graded(folder: str) -> list[np.ndarray]:
        return [cv2.imread(str(tmp_path / folder / f"g.{1001 + n}.png"))[..., ::-1] for n in range(len(frames))]

    out = graded("out")
    shown = ref
    if kind == "exr":  # the reference's black as the colour-managed output shows it (ACEScct, the display view)
        from grade.colourspace import colour_pipeline, sequence_space
        from grade.io.image import to_tensor

        colour = colour_pipeline(None, None, None, False, None, sequence_space(".exr"))
        still = cv2.imread(str(ref))[..., ::-1]
        working = colour.reference(to_tensor(np.ascontiguousarray(still))).permute(1, 2, 0).numpy()
        display = np.clip(colour.float_out(np.ascontiguousarray(working, np.float32)), 0, 1)
        shown = tmp_path / "shown.png"
        cv2.imwrite(str(shown), cv2.cvtColor((display * 255 + 0.5).astype(np.uint8), cv2.COLOR_RGB2BGR))
    # lossless frames hold the fades to their darkened grade closely; through the display view the looks'
    # black sits above 0 (L* ~6), which the darkened-copy expectation leaves out
    _check(out, graded("po"), parts, shown, fade_de=2.0 if kind == "png" else 5.0)
    shots = report["shots"]
    assert [(s["start"], s["end"]) for s in shots if s["flat"]] == [(36, 48), (120, 140)]
    for s in shots:
        if not s["flat"]:
            for part in ("black", "title", "fade_out", "fade_in"):
                assert s["key_frame"] not in parts[part], (s, part)
    d = parts["dissolve"]
    assert any(d.start < s["start"] < d.stop for s in shots)
    steps_de = [float(delta_e2000(_lab(out[i]), _lab(out[i + 1])).mean()) for i in range(d.start - 2, d.stop + 1)]
    assert max(steps_de) < 3 * np.median(steps_de) + 2, np.round(steps_de, 1)
    # `grade shots` lists the shots `grade` graded, and the transitions
    listed = _run(["shots", tmp_path / "edit" / f"f.%d.{kind}"], capsys)

    def cuts(found: list[dict]) -> list[tuple]:
        return [(s["start"], s["end"], s["flat"]) for s in found]

    assert cuts(listed["shots"]) == cuts(shots)
    kinds = [t["kind"] for t in listed["transitions"]]
    assert kinds == ["fade-out", "fade-in", "dissolve"] and listed["frames"] == len(frames), listed["transitions"]


def test_shots_lists_transitions(capsys, edit) -> None:
    _, clip, _, parts, _ = edit
    code = main(["shots", str(clip), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    kinds = {(t["kind"], t["start"], t["end"]) for t in out["transitions"]}
    d = parts["dissolve"]
    dissolve = [t for t in out["transitions"] if t["kind"] == "dissolve"]
    assert len(dissolve) == 1 and abs(dissolve[0]["start"] - d.start) <= 2 and abs(dissolve[0]["end"] - d.stop) <= 2
    assert any(k == "fade-out" and abs(e - parts["fade_out"].stop) <= 1 for k, _, e in kinds)
    assert any(k == "fade-in" and abs(s - parts["fade_in"].start) <= 1 for k, s, _ in kinds)
    assert all(t["start_tc"] and t["end_tc"] for t in out["transitions"])


@pytest.mark.parametrize("mode", ["fast", "learned"])
def test_scene_preset_and_its_cube_keep_black(capsys, edit, tmp_path: Path, mode: str) -> None:
    """One scene look over the whole edit: black, title and fades do not enter it, and the preset and
    its exported .cube map black to the reference's black on other footage too."""
    folder, clip, plain, parts, refs = edit
    ref = refs["warm"] if mode == "fast" else refs["cold"]
    lib = ["--library", tmp_path / "lib"]
    out = tmp_path / "scene.mp4"
    steps = ["--steps", "20"] if mode == "learned" else []
    _run([clip, "--look", ref, "--mode", mode, *steps, "--save-preset", "warm", *lib, "-o", out], capsys)
    via_preset, plain_out = tmp_path / "preset.mp4", tmp_path / "preset-plain.mp4"
    _run([clip, "--preset", "warm", *lib, "-o", via_preset], capsys)
    _run([plain, "--preset", "warm", *lib, "-o", plain_out], capsys)
    _check(via_preset, plain_out, parts, ref)
    cube = tmp_path / "warm.cube"
    assert main(["presets", "export", "warm", "--cube", str(cube), *map(str, lib)]) == 0
    capsys.readouterr()
    via_cube, cube_plain = tmp_path / "cube.mp4", tmp_path / "cube-plain.mp4"
    _run([clip, "--look", cube, "-o", via_cube], capsys)
    _run([plain, "--look", cube, "-o", cube_plain], capsys)
    _check(via_cube, cube_plain, parts, ref)


def test_an_all_black_clip_makes_no_preset(capsys, tmp_path: Path) -> None:
    clip = write_frames(tmp_path / "black.mp4", [np.zeros((48, 64, 3), np.uint8)] * 12)
    ref = _reference(tmp_path / "warm.png", True)
    code = main([str(clip), "--look", str(ref), "--save-preset", "x", "--library", str(tmp_path / "lib"), "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "nothing to learn a look from" in err[0]
    assert not (tmp_path / "lib" / "x.gpreset").exists()


@pytest.mark.parametrize("mode", ["fast", "learned"])
def test_every_look_is_monotone_in_luminance(mode: str, tmp_path: Path) -> None:
    """Darker copies of a colour come out darker (L*), for colours in and far outside the key frame."""
    import torch

    from grade.io.image import to_tensor
    from grade.lut import apply_lut
    from grade.model.look import LookSettings
    from grade.train import TrainSettings, train_look
    from grade.transfer import fast_lut, rgb_to_lab_points

    frames, parts = edit_frames()
    key = to_tensor(frames[parts["b"].start + 5])
    ref = to_tensor(cv2.imread(str(_reference(tmp_path / "warm.png", True)))[..., ::-1].copy())
    lut = fast_lut(key, ref)
    if mode == "learned":
        look, _ = train_look(key, ref, lut, LookSettings(working_side=64), TrainSettings(steps=20))
    hues = torch.tensor([[1.0, 0.2, 0.1], [0.1, 0.9, 0.3], [0.2, 0.3, 1.0], [0.8, 0.8, 0.8], [1.0, 0.9, 0.2]])
    ramp = torch.linspace(0, 1, 48)
    img = (hues[:, None, :] * ramp[None, :, None]).permute(2, 0, 1)[None]  # (1, 3, 5, 48): 5 ramps to black
    img = img.repeat_interleave(8, dim=2)
    out = apply_lut(lut, img) if mode == "fast" else look.apply(img)
    lum = rgb_to_lab_points(out[0].reshape(3, -1).T).reshape(5, 8, 48, 3)[:, 4, :, 0]
    assert bool((lum.diff(dim=1) > -0.5).all()), lum.diff(dim=1).min()


def test_conform_keeps_titles_out_of_the_scene_look(capsys, tmp_path: Path) -> None:
    import opentimelineio as otio
    from clips import cli_args
    from test_conform import HOUR, clip, tc

    from grade.presets import read_preset

    frames, parts = edit_frames()
    media = tmp_path / "media"
    media.mkdir()
    reel = frames[parts["c"].start : parts["c"].stop] + frames[parts["title"].start : parts["title"].stop]
    write_frames(media / "A001.mp4", reel, options=X264, timecode="01:00:00:00")
    track = otio.schema.Track(kind=otio.schema.TrackKind.Video)
    track.append(clip("shot-and-title", "A001", HOUR, len(reel)))
    timeline = otio.schema.Timeline(name="cut", global_start_time=tc(10 * HOUR))
    timeline.tracks.append(track)
    edl = tmp_path / "cut.edl"
    otio.adapters.write_to_file(timeline, str(edl), adapter_name="cmx_3600")
    ref = _reference(tmp_path / "warm.png", True)
    args = ["conform", edl, "--media", media, "--look", ref, "--mode", "fast", "--handles", "0", "-o", tmp_path / "out"]
    assert main(cli_args(args + ["-q"])) == 0, capsys.readouterr().err
    cached = list((tmp_path / "out" / ".looks").glob("*.gpreset"))
    assert len(cached) == 1
    keys = read_preset(cached[0]).keys
    assert keys and all(float(k.mean()) > 40 for k in keys)  # the shot's key frame, not the title card
