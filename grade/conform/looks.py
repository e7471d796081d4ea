"""The looks file (``looks.toml``): which look and scene each event takes, by reel, clip glob or event number."""

from __future__ import annotations

import fnmatch
from pathlib import Path

import tomllib
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from grade.conform.edit import Event
from grade.errors import InputError


class SceneLook(BaseModel):
    """A scene's look: exactly one of a reference still, a preset, or a .cube LUT."""

    model_config = ConfigDict(extra="forbid")

    reference: str | None = None
    preset: str | None = None
    cube: str | None = None

    @model_validator(mode="after")
    def _one(self) -> SceneLook:
        if sum(x is not None for x in (self.reference, self.preset, self.cube)) != 1:
            raise ValueError("give exactly one of reference, preset or cube")
        return self


class Rule(BaseModel):
    """Events that match every given condition take ``scene``."""

    model_config = ConfigDict(extra="forbid")

    scene: str
    reel: str | None = None  # glob, case-insensitive
    clip: str | None = None  # glob on the clip name, case-insensitive
    marker: str | None = None  # text contained in a marker/locator or comment, case-insensitive
    events: str | None = None  # "3", "1-5", "2,4,7-9"

    def matches(self, e: Event) -> bool:
        if self.reel is not None and not fnmatch.fnmatch((e.reel or "").lower(), self.reel.lower()):
            return False
        if self.clip is not None and not fnmatch.fnmatch(e.name.lower(), self.clip.lower()):
            return False
        if self.marker is not None and not any(self.marker.lower() in t.lower() for t in [*e.markers, *e.comments]):
            return False
        return not (self.events is not None and not any(a <= e.number <= b for a, b in number_ranges(self.events)))


def number_ranges(text: str) -> list[tuple[int, int]]:
    """``"2,4,7-9"`` -> ``[(2, 2), (4, 4), (7, 9)]`` (ranges, not sets: ``1-99999999999`` costs nothing)."""
    out: list[tuple[int, int]] = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        a, _, b = part.partition("-")
        if not (a.isascii() and a.isdigit()) or (b and not (b.isascii() and b.isdigit())):
            raise ValueError(f"bad event range {text!r} (use 3, 1-5 or 2,4,7-9)")
        lo, hi = int(a), int(b or a)
        if hi < lo:
            raise ValueError(f"bad event range {part!r} in {text!r}: it runs backwards")
        out.append((lo, hi))
    return out


class InputRule(BaseModel):
    """Events whose reel / clip name match (globs, case-insensitive) were shot in ``input_space``
    (a mixed-camera edit: each camera's log is read as what it is; the scene look is shared)."""

    model_config = ConfigDict(extra="forbid")

    input_space: str
    reel: str | None = None
    clip: str | None = None

    def matches(self, e: Event) -> bool:
        if self.reel is not None and not fnmatch.fnmatch((e.reel or "").lower(), self.reel.lower()):
            return False
        return self.clip is None or fnmatch.fnmatch(e.name.lower(), self.clip.lower())


class LooksFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default: str | None = None  # name of a scene
    scenes: dict[str, SceneLook] = Field(default_factory=dict)
    rules: list[Rule] = Field(default_factory=list)
    inputs: list[InputRule] = Field(default_factory=list)  # colour space per reel / clip (first match)

    def input_space_of(self, event: Event) -> str | None:
        """The colour space the first matching ``[[inputs]]`` entry gives the event, else None."""
        return next((r.input_space for r in self.inputs if r.matches(event)), None)

    @model_validator(mode="after")
    def _names(self) -> LooksFile:
        for r in self.rules:
            if r.events is not None:
                number_ranges(r.events)
            if r.scene not in self.scenes:
                raise ValueError(f"rule names unknown scene {r.scene!r}")
        if self.default is not None and self.default not in self.scenes:
            raise ValueError(f"default names unknown scene {self.default!r}")
        return self


def read_looks(path: Path) -> LooksFile:
    """Read and validate a looks file; relative paths are resolved against its folder."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"no such looks file: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"looks file {path} is not valid TOML: {' '.join(str(e).split())}") from None
    except OSError as e:
        raise InputError(f"cannot read looks file {path}: {e.strerror or e}") from None
    try:
        looks = LooksFile.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ())) or "file"
        raise InputError(f"looks file {path}: {where}: {first.get('msg')}") from None
    for name, scene in looks.scenes.items():
        for attr in ("reference", "cube", "preset"):
            v = getattr(scene, attr)
            if v is not None and ("\x00" in v or not v.strip()):
                raise InputError(f"looks file {path}: scenes.{name}.{attr}: not a usable file name: {v!r}")
            if v is not None and attr != "preset" and not Path(v).is_absolute():
                setattr(scene, attr, str(path.parent / v))
    return looks


def scene_of(event: Event, looks: LooksFile | None) -> str | None:
    """The event's scene: a ``LOOK:`` comment, else the first matching rule, else the default."""
    if looks is None:
        return None
    tag = event.look_comment
    if tag and tag in looks.scenes:
        return tag
    for rule in looks.rules:
        if rule.matches(event):
            return rule.scene
    return looks.default
