"""Unit tests at the seams: the conform parts (edit reading, relinking, looks rules, job file), ASC CDL
and the preview sheet, each called directly through the library."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest
import torch
from clips import write_frames

from grade.cdl import CDL, apply_cdl, cc_text, fit_cdl
from grade.conform import Event, EventStatus, Job, MediaIndex, load_job, read_edit, read_looks, save_job, scene_of
from grade.errors import InputError
from grade.preview import colour_ramp, contact_sheet

EDL = """TITLE: seams
FCM: NON-DROP FRAME

001  A001     V     C        01:00:00:10 01:00:00:22 10:00:00:00 10:00:00:12
* FROM CLIP NAME: shotA
* LOC: 10:00:00:02 RED LOOK: night

002  B002     V     C        02:00:00:20 02:00:01:04 10:00:00:12 10:00:00:20
* FROM CLIP NAME: shotB
*ASC_SOP (1.2 1.0 0.8)(0.01 0.0 -0.01)(1.0 1.0 1.0)
*ASC_SAT 0.9
"""


def _event(number: int, name: str, reel: str, **kw) -> Event:
    return Event(number, name, reel, None, 0, 10, 0, 10, **kw)


def test_read_edit_gives_events_in_frames_with_cdl_and_markers(tmp_path: Path) -> None:
    path = tmp_path / "cut.edl"
    path.write_text(EDL)
    edit = read_edit(path, rate=24)
    assert [(e.number, e.name, e.reel) for e in edit.events] == [(1, "shotA", "A001"), (2, "shotB", "B002")]
    a, b = edit.events
    assert (a.src_in, a.src_out, a.rec_in, a.rec_out) == (86400 + 10, 86400 + 22, 864000, 864000 + 12)
    assert b.cdl is not None and b.cdl.slope == (1.2, 1.0, 0.8) and b.cdl.saturation == 0.9
    assert a.look_comment == "night"


def test_a_broken_edit_is_one_line_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.edl"
    path.write_text("TITLE: x\n\n001  AX V C 01:00:00:00 01:00:0X:00 01:00:00:00 01:00:01:00\n")
    with pytest.raises(InputError, match="line 3"):
        read_edit(path, rate=24)


def test_relinking_by_file_clip_or_reel(tmp_path: Path) -> None:
    media = tmp_path / "media"
    (media / "day").mkdir(parents=True)
    frame = np.zeros((16, 16, 3), np.uint8)
    write_frames(media / "day" / "A001.mov", [frame] * 2)
    write_frames(media / "shotB.mp4", [frame] * 2)
    index = MediaIndex([media])
    by_reel = _event(1, "nothing", "A001")
    by_clip = _event(2, "shotB", "ZZZ")
    assert index.find(by_reel, ["file", "clip", "reel"]) == media / "day" / "A001.mov"
    assert index.find(by_clip, ["file", "clip", "reel"]) == media / "shotB.mp4"
    assert index.find(by_clip, ["reel"]) is None  # only what --match allows
    with pytest.raises(InputError, match="not a folder"):
        MediaIndex([tmp_path / "missing"])


def test_looks_rules_pick_scenes(tmp_path: Path) -> None:
    path = tmp_path / "looks.toml"
    path.write_text(
        'default = "day"\n[scenes.day]\nreference = "day.jpg"\n[scenes.night]\npreset = "night-v2"\n'
        '[[rules]]\nscene = "night"\nreel = "B*"\n[[rules]]\nscene = "night"\nevents = "7-9"\n'
    )
    looks = read_looks(path)
    assert looks.scenes["day"].reference == str(tmp_path / "day.jpg")  # relative to the looks file
    assert scene_of(_event(1, "x", "B002"), looks) == "night"
    assert scene_of(_event(8, "x", "A001"), looks) == "night"
    assert scene_of(_event(2, "x", "A001"), looks) == "day"
    assert scene_of(_event(2, "x", "A001", comments=["LOOK: night"]), looks) == "night"
    path.write_text('[scenes.day]\nreference = "a.jpg"\ncube = "b.cube"\n')
    with pytest.raises(InputError, match="exactly one of reference, preset or cube"):
        read_looks(path)


def test_job_file_round_trip_and_damage(tmp_path: Path) -> None:
    job = Job(edit="cut.edl", events={"1": EventStatus(number=1, status="done", fingerprint="abc", frames=12)})
    save_job(tmp_path, job)
    again = load_job(tmp_path, Path("cut.edl"))
    assert again.events["1"].status == "done" and again.events["1"].fingerprint == "abc"
    (tmp_path / "conform-job.json").write_text("{not json")
    assert load_job(tmp_path, Path("cut.edl")).events == {}  # unreadable: start over, never crash


def test_cdl_fit_recovers_a_known_cdl_and_writes_valid_xml() -> None:
    truth = CDL(slope=(1.1, 0.95, 0.8), offset=(0.02, 0.0, -0.01), power=(1.0, 1.1, 0.9), saturation=0.85)
    src = torch.rand(4000, 3, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.1
    dst = apply_cdl(truth, src)
    fitted = fit_cdl(src, dst, steps=800)
    assert float((apply_cdl(fitted, src) - dst).abs().max()) < 0.01
    root = ElementTree.fromstring(cc_text(fitted, 'shot "1"'))
    assert root.get("id") == 'shot "1"' and len(root.find("SOPNode/Slope").text.split()) == 3


def test_contact_sheet_lays_out_reference_and_rows() -> None:
    ref = np.full((60, 80, 3), 200, np.uint8)
    ramp = colour_ramp()
    sheet = contact_sheet(ref, [("shot 1", ramp, ramp[::-1]), ("shot 2", ramp, ramp)])
    assert sheet.dtype == np.uint8 and sheet.ndim == 3 and sheet.shape[1] > 2 * ramp.shape[1] // 2
    many = contact_sheet(ref, [("s", ramp, ramp)] * 30, max_rows=4)
    assert many.shape[0] < sheet.shape[0] * 3  # capped at 4 rows and a note


def test_every_grade_option_says_what_it_is() -> None:
    """A new option must declare its role, or conform's fingerprints would not know whether it changes
    a clip."""
    from grade.pipeline import GradeOptions

    roles = ("training", "look", "picture", "encode", "run")
    assert sorted(GradeOptions.fields_of(*roles)) == sorted(GradeOptions.model_fields)
    changed = GradeOptions(strength=0.5).settings_of("picture")
    policy = GradeOptions(force=True, jobs=4, notes="x").settings_of("training", "look", "picture", "encode")
    assert changed != GradeOptions().settings_of("picture")
    assert policy == GradeOptions().settings_of("training", "look", "picture", "encode")
