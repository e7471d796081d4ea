"""Presets: a trained look as one safe, portable file, and the libraries that hold them.

A preset file (``NAME.gpreset``) is a safetensors file: tensors (the look's global LUT and network
weights, a 3D LUT fitted to the whole look, the reference's and key frames' thumbnails) and a JSON
manifest in its header, validated by :class:`Manifest`. Nothing in it is executable: loading a
preset from a stranger cannot run code. A SHA-256 over every tensor and the manifest is stored in
the manifest; a damaged, truncated, tampered or future-version file is refused with one line.

Libraries: the user's presets directory (``--library``, else ``$GRADE_PRESETS``, else the
platform's data directory) and, read-only, the ``presets/`` folder shipped with the project.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import kornia.color as KC
import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from grade import __version__
from grade.errors import InputError, OutputError, setting
from grade.io.atomic import atomic_output
from grade.io.image import thumbnail
from grade.lut import apply_lut, fit_lut, grid_points, resample_lut
from grade.model.look import LearnedLook, settings_from_json

PRESET_FORMAT = "grade.preset"


SCHEMA_VERSION = 1


SUFFIX = ".gpreset"


MAX_PRESET_BYTES = 256 * 2**20


FITTED_LUT_SIZE = 33


REFERENCE_SIDE = 384  # long side of the stored reference (enough to refine: training sees 192 px)


KEY_SIDE = 256  # long side of the stored key frames


PRESET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")


Mode = Literal["fast", "learned", "lut"]


class ColourStats(BaseModel):
    """CIELAB statistics of an image (the reference's, for ``presets show``)."""

    model_config = ConfigDict(extra="forbid")

    lab_mean: list[float] = Field(min_length=3, max_length=3)
    lab_std: list[float] = Field(min_length=3, max_length=3)
    l_percentiles: dict[str, float]  # "5", "50", "95"


class KeyFrame(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str
    frame: int = Field(ge=0)
    time: float = Field(ge=0)


class LutError(BaseModel):
    """How far the fitted 3D LUT is from the full (spatially varying) look on its key frames."""

    model_config = ConfigDict(extra="forbid")

    size: int
    mean_de2000: float
    p95_de2000: float


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal["grade.preset"] = PRESET_FORMAT
    schema_version: int = SCHEMA_VERSION
    name: str
    scene: str | None = None
    notes: str = ""
    created: datetime
    grade_version: str = __version__
    torch_version: str = torch.__version__
    mode: Mode
    look_settings: dict | None = None
    train_settings: dict | None = None
    reference: str | None = None  # file name of the reference still (no folders: nothing private)
    reference_stats: ColourStats | None = None
    key_frames: list[KeyFrame] = []
    lut_size: int = Field(ge=2, le=256)
    lut_error: LutError | None = None
    working_space: str | None = None  # the OCIO colour space the look works in (None: display RGB)
    content_sha256: str = ""


@dataclass
class Preset:
    """A loaded (or freshly built) preset."""

    manifest: Manifest
    lut: torch.Tensor  # the global LUT (3, N, N, N): fast mode's grade, or the learned look's base
    fitted_lut: torch.Tensor  # the whole look as one 3D LUT (what .cube export writes)
    learned: LearnedLook | None = None
    reference: np.ndarray | None = None  # RGB uint8, long side <= REFERENCE_SIDE
    keys: list[np.ndarray] = field(default_factory=list)  # RGB uint8, long side <= KEY_SIDE

    @property
    def name(self) -> str:
        return self.manifest.name


def validate_name(name: str) -> str:
    """A preset name: letters, digits, ``_ . + -``, at most 64, no path parts. Raises InputError."""
    if not isinstance(name, str) or not PRESET_NAME.fullmatch(name) or ".." in name or name.endswith("."):
        raise InputError(
            f"invalid preset name {name!r}: use letters, digits and _ . + - (at most 64, starting with a letter "
            "or digit; no folders)"
        )
    return name


def colour_stats(rgb: np.ndarray) -> ColourStats:
    from grade.color import srgb_to_lab

    lab = srgb_to_lab(rgb.reshape(-1, 3).astype(np.float64) / 255.0)
    pct = np.percentile(lab[:, 0], [5, 50, 95])
    return ColourStats(
        lab_mean=[round(float(v), 3) for v in lab.mean(0)],
        lab_std=[round(float(v), 3) for v in lab.std(0)],
        l_percentiles={k: round(float(v), 3) for k, v in zip(("5", "50", "95"), pct)},
    )


def _rgb_thumb(rgb: np.ndarray, side: int) -> np.ndarray:
    return np.ascontiguousarray(thumbnail(rgb, side)[..., :3])


def _grade_keys(look: LearnedLook | None, lut: torch.Tensor, keys: list[np.ndarray]) -> list[np.ndarray]:
    """The full look applied to each key frame: float RGB ``(h, w, 3)`` in [0, 1] at full strength."""
    from grade.io.image import to_tensor

    out = []
    for k in keys:
        x = to_tensor(k)[None]
        with torch.inference_mode():
            if look is not None:
                strength, look.strength = look.strength, 1.0
                try:
                    y = look.apply(x)
                finally:
                    look.strength = strength
            else:
                y = apply_lut(lut, x)
        out.append(y[0].permute(1, 2, 0).numpy())
    return out


def lut_error(
    preset_look: LearnedLook | None,
    lut: torch.Tensor,
    fitted: torch.Tensor,
    keys: list[np.ndarray],
    full: list[np.ndarray] | None = None,
):
    """Mean and 95th-percentile CIEDE2000 between ``fitted`` and the full look on ``keys`` (``full``:
    the look's output on them, when the caller has it already)."""
    from grade.io.image import to_tensor

    if not keys:
        return None
    if full is None:
        full = _grade_keys(preset_look, lut, keys)
    pairs = []
    for k, y in zip(keys, full):
        with torch.inference_mode():
            pairs.append((y, apply_lut(fitted, to_tensor(k)[None])[0].permute(1, 2, 0).numpy()))
    return _error_of(pairs, fitted.shape[-1])


def _error_of(pairs: list[tuple[np.ndarray, np.ndarray]], size: int) -> LutError:
    """CIEDE2000 statistics of ``(wanted, got)`` pictures ``(H, W, 3)`` (R'G'B' in [0, 1], read as sRGB)."""
    from grade.color import delta_e2000, srgb_to_lab

    de = np.concatenate(
        [delta_e2000(srgb_to_lab(np.clip(y, 0, 1)), srgb_to_lab(np.clip(z, 0, 1))).reshape(-1) for y, z in pairs]
    )
    return LutError(
        size=size, mean_de2000=round(float(de.mean()), 4), p95_de2000=round(float(np.percentile(de, 95)), 4)
    )


def baked_lut_error(
    look: LearnedLook | None,
    lut: torch.Tensor,
    baked: torch.Tensor,
    keys: list[np.ndarray],
    spaces: tuple[str, str],
    working: str,
    config,
) -> LutError | None:
    """How far a LUT with the input and/or output transforms baked in (``spaces``: what it takes and
    gives) is from ``grade``'s colour-managed render of the key frames (working space, RGB uint8): each
    key taken to the LUT's input space through OCIO, through ``baked``, against the full look on the key
    taken to the output space through OCIO. What a ``.cube`` applied by another tool to the camera's
    footage would be off by. Without key frames (a LUT's preset), the working space's 17-point grid stands in
    for them. ``ΔE`` is taken on what a display shows: a scene-referred output (log, linear, the working
    space of an input-only bake) is seen through the Rec.709 view first, both sides alike."""
    from grade.colourspace import ALIASES, is_display, ocio_apply
    from grade.io.image import to_tensor

    if not keys:
        if look is not None:
            return None
        keys = [(grid_points(17).numpy().reshape(17 * 17, 17, 3) * 255 + 0.5).astype(np.uint8)]
    src, dst = spaces
    pairs = []
    for k, y in zip(keys, _grade_keys(look, lut, keys)):
        x = k.astype(np.float32) / 255.0
        if src != working:
            x = np.clip(np.nan_to_num(ocio_apply(x, working, src, config)), 0, 1)
        wanted = np.clip(y, 0, 1)
        if dst != working:
            wanted = np.nan_to_num(ocio_apply(wanted, working, dst, config))
        with torch.inference_mode():
            got = apply_lut(baked, to_tensor(x)[None])[0].permute(1, 2, 0).numpy()
        if not is_display(dst, config):
            view = ALIASES["rec709"]
            wanted, got = (np.nan_to_num(ocio_apply(np.clip(v, 0, 1), dst, view, config)) for v in (wanted, got))
        pairs.append((wanted, got))
    return _error_of(pairs, baked.shape[-1])


def fit_look_lut(
    look: LearnedLook | None, lut: torch.Tensor, keys: list[np.ndarray], size: int = FITTED_LUT_SIZE
) -> tuple[torch.Tensor, LutError | None]:
    """One 3D LUT for the whole look, fitted to its mapping over the key frames, and its error."""
    if look is None or not keys:
        fitted = resample_lut(lut, size)
        return fitted, lut_error(None, lut, fitted, keys)
    from grade.io.image import to_tensor

    full = _grade_keys(look, lut, keys)
    src = torch.cat([to_tensor(k).reshape(3, -1).T for k in keys])
    dst = torch.cat([torch.from_numpy(np.ascontiguousarray(y)).reshape(-1, 3) for y in full])
    # colours darker or lighter than the key frames hold keep the look's global part (its black and
    # white are the reference's): pinned, so that the fit's correction does not spread over them
    nodes = grid_points(size)
    lum = KC.rgb_to_lab(nodes.T.reshape(1, 3, -1, 1).clamp(1e-6, 1))[0, 0, :, 0]
    key_l = KC.rgb_to_lab(src.T.reshape(1, 3, -1, 1).clamp(1e-6, 1))[0, 0, :, 0]
    lo, hi = (float(v) for v in torch.quantile(key_l[:: max(1, len(key_l) // 20000)], torch.tensor([0.005, 0.995])))
    pin = (lum < lo - 3) | (lum > hi + 3)
    if bool(pin.any()):
        pinned = nodes[pin]
        prior = apply_lut(look.lut, pinned.T.reshape(1, 3, -1, 1))[0, :, :, 0].T
        repeat = max(1, len(src) // (20 * len(pinned)))
        src, dst = torch.cat([src, pinned.repeat(repeat, 1)]), torch.cat([dst, prior.repeat(repeat, 1)])
    fitted = fit_lut(src, dst, look.lut, size)
    return fitted, lut_error(look, lut, fitted, keys, full)


def build_preset(
    name: str,
    *,
    mode: Mode,
    lut: torch.Tensor,
    learned: LearnedLook | None = None,
    reference: np.ndarray | None = None,
    reference_name: str | None = None,
    keys: list[np.ndarray] | None = None,
    key_frames: list[KeyFrame] | None = None,
    scene: str | None = None,
    notes: str = "",
    train_settings: dict | None = None,
    working_space: str | None = None,
) -> Preset:
    """Assemble a preset from a fitted or trained look (computes the fitted LUT and its error)."""
    validate_name(name)
    keys = [_rgb_thumb(k, KEY_SIDE) for k in (keys or [])]
    ref = _rgb_thumb(reference, REFERENCE_SIDE) if reference is not None else None
    fitted, err = fit_look_lut(learned, lut, keys)
    manifest = Manifest(
        name=name,
        scene=scene,
        notes=notes,
        created=datetime.now(timezone.utc).replace(microsecond=0),
        mode=mode,
        look_settings=asdict(learned.settings) if learned is not None else None,
        train_settings=train_settings,
        reference=reference_name,
        reference_stats=colour_stats(ref) if ref is not None else None,
        key_frames=key_frames or [],
        lut_size=lut.shape[-1],
        lut_error=err,
        working_space=working_space,
    )
    return Preset(manifest, lut.float().contiguous(), fitted, learned, ref, keys)


def _tensors(preset: Preset) -> dict[str, torch.Tensor]:
    t: dict[str, torch.Tensor] = {"lut": preset.lut.float().contiguous(), "fitted_lut": preset.fitted_lut.contiguous()}
    if preset.learned is not None:
        t.update({k: v for k, v in preset.learned.tensors("look.").items() if k != "look.lut"})
    # copies: two images may be one array (a reference that is also the key frame), and safetensors
    # refuses tensors that share memory
    if preset.reference is not None:
        t["reference"] = torch.from_numpy(np.array(preset.reference, copy=True))
    for i, k in enumerate(preset.keys):
        t[f"key.{i}"] = torch.from_numpy(np.array(k, copy=True))
    return t


def _digest(tensors: dict[str, torch.Tensor], manifest: Manifest) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        v = tensors[name].contiguous()
        h.update(f"{name}|{v.dtype}|{tuple(v.shape)}|".encode())
        h.update(v.numpy().tobytes() if v.numel() else b"")
    body = manifest.model_dump(mode="json", exclude={"content_sha256"})
    h.update(json.dumps(body, sort_keys=True).encode())
    return h.hexdigest()


def preset_bytes(preset: Preset) -> bytes:
    """The preset file's bytes (the manifest gets its content hash)."""
    tensors = _tensors(preset)
    preset.manifest.content_sha256 = _digest(tensors, preset.manifest)
    meta = {
        "format": PRESET_FORMAT,
        "schema_version": str(SCHEMA_VERSION),
        "manifest": preset.manifest.model_dump_json(),
    }
    return save(tensors, metadata=meta)


def write_preset(preset: Preset, path: Path, force: bool = False) -> Path:
    """Write atomically (temporary file + rename); never clobbers without ``force``."""
    data = preset_bytes(preset)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not force:
        raise OutputError(f"preset {preset.name!r} already exists: {path} (use {setting('force')} to replace it)")
    with atomic_output(path, force=force) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return path


def read_preset(path: str | Path) -> Preset:
    """Load and verify a preset file.

    Raises:
        InputError: missing, not a preset, damaged/truncated/tampered, or from a newer grade.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such preset file: {path}")
    size = path.stat().st_size
    if size > MAX_PRESET_BYTES:
        raise InputError(f"not a grade preset (file of {size >> 20} MiB is far too large): {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        why = " ".join(str(e).split())[:160]
        raise InputError(f"not a grade preset, or damaged/truncated: {path} ({why})") from None
    if meta.get("format") != PRESET_FORMAT:
        raise InputError(f"not a grade preset (a safetensors file of another kind): {path}")
    try:
        version = int(meta.get("schema_version", ""))
    except ValueError:
        raise InputError(f"damaged preset (no schema version): {path}") from None
    if version > SCHEMA_VERSION:
        raise InputError(
            f"preset {path} was written by a newer grade (schema {version}; this grade reads {SCHEMA_VERSION})"
        )
    try:
        manifest = Manifest.model_validate_json(meta.get("manifest", ""))
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ())) or "manifest"
        raise InputError(f"damaged preset manifest ({where}: {first.get('msg')}): {path}") from None
    if manifest.schema_version != version:
        raise InputError(f"damaged preset (schema versions disagree): {path}")
    try:
        digest = _digest(tensors, manifest)
    except (TypeError, ValueError, RuntimeError) as e:  # a tensor type NumPy cannot hold (float8...)
        raise InputError(f"damaged preset: {path} ({' '.join(str(e).split())[:160]})") from None
    if digest != manifest.content_sha256:
        raise InputError(f"preset was damaged or modified since it was written (hash mismatch): {path}")
    try:
        return _from_tensors(manifest, tensors)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise InputError(f"damaged preset: {path} ({' '.join(str(e).split())[:160]})") from None


def _check_lut(t: torch.Tensor, what: str) -> torch.Tensor:
    if t.dtype != torch.float32 or t.dim() != 4 or t.shape[0] != 3 or not (t.shape[1] == t.shape[2] == t.shape[3] >= 2):
        raise ValueError(f"{what} has dtype {t.dtype} and shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{what} holds non-finite values")
    return t


def _check_image(t: torch.Tensor, what: str) -> np.ndarray:
    if t.dtype != torch.uint8 or t.dim() != 3 or t.shape[2] != 3 or min(t.shape[:2]) < 1:
        raise ValueError(f"{what} is not an RGB thumbnail")
    return t.numpy().copy()


def _from_tensors(manifest: Manifest, tensors: dict[str, torch.Tensor]) -> Preset:
    lut = _check_lut(tensors["lut"], "lut")
    fitted = _check_lut(tensors["fitted_lut"], "fitted_lut")
    learned = None
    if manifest.mode == "learned":
        if manifest.look_settings is None:
            raise ValueError("a learned preset without look settings")
        settings = settings_from_json(json.dumps(manifest.look_settings))
        learned = LearnedLook.from_tensors({"look.lut": lut, **tensors}, settings, prefix="look.")
    reference = _check_image(tensors["reference"], "reference") if "reference" in tensors else None
    keys = []
    while f"key.{len(keys)}" in tensors:
        keys.append(_check_image(tensors[f"key.{len(keys)}"], f"key frame {len(keys)}"))
    return Preset(manifest, lut, fitted, learned, reference, keys)
