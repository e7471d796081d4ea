"""Property-based tests of the parsers of everything grade reads from disk (.cube LUTs, looks TOML,
preset files, EDLs): whatever the bytes, each either refuses them with one InputError line or
returns a valid result; never another exception. ``benchmarks/fuzz.py`` runs the same properties
with a large budget."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grade.cube import read_cube, write_cube

from . import fuzzing as F

FAST = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@FAST
@given(n=st.integers(2, 6), data=st.data())
def test_cube_round_trip(folder: Path, n: int, data) -> None:
    values = data.draw(
        st.lists(st.floats(0, 1, allow_nan=False, width=32), min_size=3 * n**3, max_size=3 * n**3), label="values"
    )
    lut = torch.tensor(values, dtype=torch.float32).reshape(3, n, n, n)
    path = folder / "round.cube"
    write_cube(path, lut, title=data.draw(st.text(max_size=20), label="title"))
    back = read_cube(path)
    assert back.shape == lut.shape and torch.allclose(back, lut, atol=5e-7)


@FAST
@given(F.cube_inputs())
def test_cube_garbage_is_refused_or_read(folder: Path, data) -> None:
    F.run_cube(data, folder)


@FAST
@given(F.looks_inputs())
def test_looks_toml_is_refused_or_valid(folder: Path, text: str) -> None:
    F.run_looks(text, folder)


SEED = F.valid_preset_bytes()


@FAST
@given(F.preset_inputs(SEED))
def test_preset_mutations_are_refused_or_identical(folder: Path, data: bytes) -> None:
    F.run_preset(data, folder, SEED)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(F.edl_inputs())
def test_edl_edits_are_refused_or_read(folder: Path, case) -> None:
    F.run_edl(case, folder)


def test_the_seeds_are_valid(folder: Path) -> None:
    """The unmutated seeds are accepted (else every mutation would be refused for the wrong reason)."""
    assert F.run_cube(F.valid_cube_text(), folder) == "accepted"
    assert F.run_looks(F.VALID_LOOKS, folder) == "accepted"
    assert F.run_preset(SEED, folder, SEED) == "accepted"
    assert F.run_edl((F.VALID_EDL, None), folder) == "accepted"
