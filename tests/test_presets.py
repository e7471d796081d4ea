"""Presets: save, load, apply, refine, scene looks, library management, .cube in and out, refusals."""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from clips import make_clip, read_all, scene_frame
from conftest import no_temp_files, sha
from safetensors.torch import save_file

from grade.cli import main
from grade.cube import read_cube, write_cube
from grade.errors import InputError, OutputError
from grade.io.image import to_tensor
from grade.library import Library
from grade.lut import apply_lut, identity_lut
from grade.model.look import LookSettings
from grade.pipeline import preset_grade
from grade.presets import SUFFIX, build_preset, preset_bytes, read_preset, validate_name, write_preset
from grade.train import TrainSettings, train_look
from grade.transfer import fast_lut


def run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def library(tmp_path: Path, monkeypatch) -> Path:
    lib = tmp_path / "library"
    monkeypatch.setenv("GRADE_PRESETS", str(lib))
    return lib


@pytest.fixture(scope="module")
def learned_preset():
    key_rgb, ref_rgb = scene_frame(96, 64, 2, 0), scene_frame(80, 60, 5, 1)
    key, ref = to_tensor(key_rgb), to_tensor(ref_rgb)
    lut = fast_lut(key, ref)
    look, _ = train_look(key, ref, lut, LookSettings(working_side=64), TrainSettings(steps=8))
    return build_preset("learned-one", mode="learned", lut=lut, learned=look, reference=ref_rgb, keys=[key_rgb])


def test_learned_preset_round_trip_gives_identical_frames(tmp_path: Path, learned_preset) -> None:
    path = write_preset(learned_preset, tmp_path / f"x{SUFFIX}")
    again = read_preset(path)
    assert again.manifest.model_dump(mode="json") == learned_preset.manifest.model_dump(mode="json")
    frame = scene_frame(120, 80, 4, 0)
    a = preset_grade(learned_preset, 1.0).grade_still(frame)
    b = preset_grade(again, 1.0).grade_still(frame)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, frame)  # it does grade
    assert again.manifest.lut_error is not None and again.manifest.lut_error.mean_de2000 < 10
    assert torch.equal(again.fitted_lut, learned_preset.fitted_lut)
    assert np.array_equal(again.reference, learned_preset.reference)


def test_fitted_lut_follows_the_look(learned_preset) -> None:
    """The exported LUT is closer to the full look than the look's own global base LUT."""
    from grade.presets import lut_error

    p = learned_preset
    base_err = lut_error(p.learned, p.lut, p.lut, p.keys)
    assert p.manifest.lut_error.mean_de2000 <= base_err.mean_de2000 + 1e-6


def _raw(path: Path) -> tuple[dict, dict]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return f.metadata(), {k: f.get_tensor(k) for k in f.keys()}


@pytest.mark.parametrize("damage", ["pickle", "truncated", "hash", "manifest", "future", "foreign", "empty"])
def test_bad_preset_files_are_refused(tmp_path: Path, learned_preset, damage: str) -> None:
    path = write_preset(learned_preset, tmp_path / f"good{SUFFIX}")
    bad = tmp_path / f"bad{SUFFIX}"
    if damage == "pickle":
        bad.write_bytes(pickle.dumps({"lut": torch.zeros(3)}))
    elif damage == "truncated":
        bad.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "empty":
        bad.write_bytes(b"")
    else:
        meta, tensors = _raw(path)
        if damage == "hash":
            weight = sorted(k for k in tensors if k.startswith("look.net."))[-1]
            tensors[weight] = tensors[weight] + 0.01
        elif damage == "manifest":
            m = json.loads(meta["manifest"])
            m["name"] = "someone-else"
            meta["manifest"] = json.dumps(m)
        elif damage == "future":
            meta["schema_version"] = "99"
        elif damage == "foreign":
            meta = {"format": "something.else"}
        save_file(tensors, str(bad), metadata=meta)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(InputError) as e:
        read_preset(bad)
    msg = str(e.value)
    assert "\n" not in msg and str(bad) in msg
    expected = {"hash": "hash mismatch", "manifest": "hash mismatch", "future": "newer grade", "foreign": "another"}
    assert expected.get(damage, "not a grade preset") in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no side effect


@pytest.mark.parametrize("name", ["../evil", "a/b", "..", ".hidden", "", "x" * 65, "semi;colon", "new\nline"])
def test_unsafe_names_are_refused(name: str) -> None:
    with pytest.raises(InputError):
        validate_name(name)


def test_save_preset_cli_then_apply_without_training(capsys, tmp_path: Path, library: Path) -> None:
    clip = make_clip(tmp_path / "a.mp4", frames=24, cut_at=12)
    ref = tmp_path / "ref.png"
    import cv2

    cv2.imwrite(str(ref), cv2.cvtColor(scene_frame(80, 60, 3, 1), cv2.COLOR_RGB2BGR))
    code, out, err = run(
        capsys,
        *(clip, "--look", ref, "--mode", "fast", "-o", tmp_path / "one.mkv", "--codec", "ffv1"),
        *("--save-preset", "warm", "--scene", "s1", "--json"),
    )
    assert code == 0, err
    assert json.loads(out)["preset_saved"] == str(library / f"warm{SUFFIX}")
    preset = read_preset(library / f"warm{SUFFIX}")
    assert preset.manifest.scene == "s1" and preset.manifest.mode == "fast"
    assert [k.frame for k in preset.manifest.key_frames] == [s["key_frame"] for s in json.loads(out)["shots"]]
    assert len(preset.keys) == 2 and preset.manifest.reference == "ref.png"

    code, out, err = run(capsys, clip, "--preset", "warm", "-o", tmp_path / "two.mkv", "--codec", "ffv1", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["mode"] == "preset:fast" and "train" not in report["seconds"]
    # FFV1 (lossless, deterministic): x264 is not bit-exact from run to run on a loaded machine
    a, _ = read_all(tmp_path / "one.mkv")
    b, _ = read_all(tmp_path / "two.mkv")
    assert all(np.array_equal(x, y) for x, y in zip(a, b)) and len(a) == len(b) == 24

    # the name is taken: refused before any work, nothing written
    code, out, err = run(capsys, clip, "--look", ref, "-o", tmp_path / "three.mp4", "--save-preset", "warm")
    assert code == 3 and "already exists" in err and "--force" in err
    assert not (tmp_path / "three.mp4").exists()


def test_traversal_name_on_the_command_line_writes_nothing(capsys, tmp_path: Path, library: Path, clip, reference):
    code, out, err = run(capsys, clip, "--look", reference, "--save-preset", "../evil")
    assert code == 2 and "invalid preset name" in err and err.count("\n") == 1
    assert not clip.with_name("shot.graded.mp4").exists()
    assert not (tmp_path / f"evil{SUFFIX}").exists() and not library.exists()


def test_scene_preset_and_refine(capsys, tmp_path: Path, library: Path) -> None:
    a = make_clip(tmp_path / "a.mp4", frames=6)
    b = make_clip(tmp_path / "b.mp4", frames=6, cut_at=0)
    ref = tmp_path / "ref.png"
    import cv2

    cv2.imwrite(str(ref), cv2.cvtColor(scene_frame(80, 60, 3, 1), cv2.COLOR_RGB2BGR))
    outdir = tmp_path / "out"
    outdir.mkdir()
    args = ["scene", "--look", ref, a, b, "--save-preset", "sc", "--mode", "learned", "--steps", "3"]
    code, out, err = run(capsys, *args, "--output-dir", outdir, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert [Path(o["output"]).name for o in data["outputs"]] == ["a.graded.mp4", "b.graded.mp4"]
    preset = read_preset(library / f"sc{SUFFIX}")
    assert preset.manifest.mode == "learned" and len(preset.keys) == 2
    assert [k.source for k in preset.manifest.key_frames] == ["a.mp4", "b.mp4"]

    code, out, err = run(
        capsys, b, "--preset", "sc", "--refine", "--steps", "2", "-o", tmp_path / "r.mp4", "--save-preset", "sc2"
    )
    assert code == 0, err
    refined = read_preset(library / f"sc2{SUFFIX}")
    assert refined.manifest.train_settings["refined_from"] == "sc"
    changed = any(
        not torch.equal(x, y)
        for x, y in zip(refined.learned.net.state_dict().values(), preset.learned.net.state_dict().values())
    )
    assert changed


def test_library_management(capsys, tmp_path: Path, library: Path, learned_preset) -> None:
    lib = Library(library, shipped=tmp_path / "shipped")
    (tmp_path / "shipped").mkdir()
    write_preset(learned_preset, tmp_path / "shipped" / f"stock{SUFFIX}")
    lib.save(learned_preset)
    assert [n for n, _, _ in lib.entries()] == ["learned-one", "stock"]
    with pytest.raises(OutputError):
        lib.save(learned_preset)  # no clobbering without force
    lib.save(learned_preset, force=True)
    with pytest.raises(InputError, match="read-only"):
        lib.delete("stock")
    with pytest.raises(InputError, match="read-only"):
        lib.rename("stock", "mine")
    lib.rename("learned-one", "renamed")
    assert read_preset(library / f"renamed{SUFFIX}").name == "renamed"
    assert not (library / f"learned-one{SUFFIX}").exists()
    lib.delete("renamed")
    assert [n for n, _, _ in lib.entries()] == ["stock"]
    assert no_temp_files(library)

    code, out, err = run(capsys, "presets", "list", "--json")
    assert code == 0, err
    assert json.loads(out)["library"] == str(library)
    code, out, err = run(capsys, "presets", "delete", "nothing")
    assert code == 2 and "no preset named 'nothing'" in err


def test_export_cube_round_trip_and_look_from_cube(capsys, tmp_path: Path, library: Path, learned_preset) -> None:
    Library(library).save(learned_preset)
    cube = tmp_path / "look.cube"
    code, out, err = run(
        capsys, "presets", "export", "learned-one", "--cube", cube, "--cdl", tmp_path / "l.cc", "--json"
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["size"] == 33 and data["mean_de2000"] == learned_preset.manifest.lut_error.mean_de2000
    assert torch.allclose(read_cube(cube), learned_preset.fitted_lut.clamp(0, 1), atol=1e-6)
    assert "<Slope>" in (tmp_path / "l.cc").read_text()
    code, out, err = run(capsys, "presets", "export", "learned-one", "--cube", tmp_path / "s.cube", "--size", "17")
    assert code == 0, err
    assert read_cube(tmp_path / "s.cube").shape == (3, 17, 17, 17)
    # exporting onto an existing file needs --force
    code, out, err = run(capsys, "presets", "export", "learned-one", "--cube", cube)
    assert code == 3

    # a colourist's LUT in: graded by the same pipeline
    lut = identity_lut(9)
    lut[0] = lut[0] ** 0.5  # lift red
    write_cube(tmp_path / "lift.cube", lut)
    clip = make_clip(tmp_path / "c.mp4", frames=4, audio=False)
    code, out, err = run(capsys, clip, "--look", tmp_path / "lift.cube", "--json")
    assert code == 0, err
    assert json.loads(out)["mode"] == "lut"
    src, _ = read_all(clip)
    graded, _ = read_all(tmp_path / "c.graded.mp4")
    expect = apply_lut(lut, to_tensor(src[0])[None])[0].permute(1, 2, 0).numpy() * 255
    assert np.abs(graded[0].astype(float) - expect).mean() < 3.0
    assert graded[0][..., 0].mean() > src[0][..., 0].mean() + 10

    # and as a preset
    code, out, err = run(capsys, "presets", "import", tmp_path / "lift.cube", "--name", "lift")
    assert code == 0, err
    assert read_preset(library / f"lift{SUFFIX}").manifest.mode == "lut"


def test_malformed_cube_look_is_one_line_error(capsys, tmp_path: Path, clip) -> None:
    bad = tmp_path / "bad.cube"
    bad.write_text("LUT_3D_SIZE 2\n0 0 0\n1 1\n")
    before = sha(clip)
    code, out, err = run(capsys, clip, "--look", bad)
    assert code == 2 and err.count("\n") == 1 and "bad.cube" in err
    assert sha(clip) == before and not clip.with_name("shot.graded.mp4").exists()


def test_preset_bytes_are_safetensors_without_code(learned_preset) -> None:
    data = preset_bytes(learned_preset)
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    assert header["__metadata__"]["format"] == "grade.preset"
    assert b"pickle" not in data[: 8 + n] and not data[8 + n :].startswith(b"\x80")
