# ruff: noqa: I001  (grade is imported before torch on purpose)
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import grade  # noqa: F401  (first: sets OpenMP's passive wait policy before torch loads)
import torch
from clips import make_clip, make_still

torch.set_num_threads(2)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    """8 frames of 64x48 H.264 with an AAC track."""
    return make_clip(tmp_path / "shot.mp4", frames=8)


@pytest.fixture
def reference(tmp_path: Path) -> Path:
    """A warm, differently lit still."""
    return make_still(tmp_path / "reference.png", size=(80, 60), scene=1)


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if ".grade-tmp-" in p.name]
