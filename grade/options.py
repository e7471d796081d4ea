"""What a grade is asked to do: :class:`GradeOptions` (each field with its role: training, look,
picture, encode or run policy), and what it did: :class:`GradeReport`, :class:`Damage`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from grade import __version__
from grade.io import video as video_io
from grade.model.look import LookSettings
from grade.shots import Shot

Mode = Literal["fast", "learned"]


Role = Literal["training", "look", "picture", "encode", "run"]


def _role(role: Role, default=None, **kw):
    """A field with its role: what it changes (see :meth:`GradeOptions.settings_of`)."""
    return Field(default, json_schema_extra={"role": role}, **kw)


class GradeOptions(BaseModel):
    """Everything a user can set for one grade (validated: these come from the command line or a caller).

    Each field says what it is (:meth:`settings_of`): ``training`` shapes a fitted or trained look,
    ``look`` picks the look, ``picture`` changes pixels given the look, ``encode`` the output's
    encoding, ``run`` only how the run goes (overwriting, previews, where presets live). A conform's
    fingerprints hash the roles that change a clip, not the run policy.
    """

    model_config = ConfigDict(extra="forbid")

    mode: Mode = _role("training", "learned")
    seed: int = _role("training", 0)
    steps: int | None = _role("training", None, ge=1, le=100_000)  # learned: training steps per shot
    working_side: int = _role("training", 512, ge=64, le=4096)  # key frames and reference are fitted this size
    look_side: int = _role("training", LookSettings().working_side, ge=32, le=1024)  # learned: the look's long side
    preset: str | None = _role("look")  # grade with a saved preset (library name or file path)
    refine: bool = _role("look", False)  # fine-tune the preset on this input's key frames
    joint: bool = _role("look", False)  # one look for all shots of all inputs (a scene)
    # colour management (grade.colourspace): none unless a space is named, a preset was made in a working
    # space, or the container's tags say PQ / HLG
    input_space: str | None = _role("training")  # the footage's colour space (OCIO name or alias: slog3, ...)
    working_space: str | None = _role("training")  # where the look is fitted and applied (default ACEScct)
    ocio_config: str | None = _role("training")  # an OCIO config file or ocio:// name (default: ACES studio)
    output_space: str | None = _role("picture")  # default: Rec.709 for log input, else the input's own space
    keep_log: bool = _role("picture", False)  # write the graded picture back in the input's space
    fps: float | None = _role("encode", None, gt=0, le=1000)  # image sequences: their frame rate (default 24)
    allow_gaps: bool = _role("run", False)  # image sequences: grade the frames there are, gaps and all
    strength: float = _role("picture", 1.0, ge=0.0, le=1.0)
    # learned looks: how much of the regional (per-material) grade goes on top of the global one
    # (0: the global look of fast mode, 1: the full regional look)
    regional: float = _role("picture", 1.0, ge=0.0, le=1.0)
    stabilise: bool = _role("picture", True)  # learned looks: motion-compensated temporal stabilisation
    device: Literal["auto", "cpu", "cuda"] = _role("picture", "auto")
    codec: str | None = _role("encode")
    crf: int | None = _role("encode", None, ge=0, le=63)
    force: bool = _role("run", False)
    preview: Path | None = _role("run")
    output_dir: Path | None = _role("run")  # default outputs go here instead of beside each input
    save_preset: str | None = _role("run")  # save the look as a preset of this name (implies joint)
    force_preset: bool = _role("run", False)  # replace an existing preset of that name
    scene: str | None = _role("run")  # scene name stored in a saved preset
    notes: str = _role("run", "")
    library: Path | None = _role("run")  # presets directory (default: $GRADE_PRESETS or the platform's)
    jobs: int = _role("run", 1, ge=1, le=64)  # conform: events rendered in parallel processes
    strict: bool = _role("run", False)  # a damaged input (decoding ends early) is an error, not a warning

    @classmethod
    def fields_of(cls, *roles: Role) -> list[str]:
        """The names of the fields of these roles.

        >>> GradeOptions.fields_of("encode")
        ['fps', 'codec', 'crf']
        """
        return [n for n, f in cls.model_fields.items() if (f.json_schema_extra or {}).get("role") in roles]

    def settings_of(self, *roles: Role) -> dict:
        """These roles' settings, as a JSON-ready dict (what a fingerprint hashes).

        >>> GradeOptions(strength=0.5, force=True).settings_of("picture")["strength"]
        0.5
        """
        data = self.model_dump(mode="json")
        return {n: data[n] for n in self.fields_of(*roles)}


class Damage(BaseModel):
    """A video that ends before its header says it does (a truncated or cut file)."""

    frames_graded: int
    frames_expected: int
    broke_at: float  # seconds into the source where decoding stopped
    timecode: str  # the same as HH:MM:SS:FF of the source's clock
    error: str | None = None  # the decoder's words, when it failed rather than ran out

    def message(self, source: Path | str) -> str:
        why = f" ({self.error})" if self.error else ""
        return (
            f"{source} is damaged: it breaks at {self.timecode} (frame {self.frames_graded}){why}; "
            f"graded {self.frames_graded} of {self.frames_expected} frames"
        )


def damage_of(info: video_io.VideoInfo, frames: int, error: str | None) -> Damage | None:
    """Whether a decode that gave ``frames`` frames (and stopped on ``error``, if any) ended early: on a
    decoder error, or more than 2 % (at least 2 frames) short of the frames the container declares."""
    short = info.frames - frames
    if error is None and short <= max(2, 0.02 * info.frames):
        return None
    at = frames / info.fps if info.fps else 0.0
    return Damage(
        frames_graded=frames,
        frames_expected=max(info.frames, frames),
        broke_at=round(at, 3),
        timecode=video_io.shift_timecode(info.timecode, frames, info.fps)
        if info.timecode
        else video_io.frames_timecode(frames, info.fps or 1),
        error=error,
    )


class GradeReport(BaseModel):
    """What was done (the CLI's ``--json`` output)."""

    grade_version: str = __version__
    input: str
    output: str
    reference: str
    kind: Literal["video", "still", "sequence"]
    mode: str
    device: str
    strength: float
    width: int
    height: int
    frames: int
    fps: float | None = None
    duration: float | None = None
    shots: list[Shot] = []
    encoder: str | None = None
    pix_fmt: str | None = None
    streams_copied: list[str] = []
    streams_reencoded: list[str] = []
    streams_dropped: list[str] = []
    preview: str | None = None
    look_kind: Literal["reference", "cube", "preset"] = "reference"
    stabiliser_ms_per_frame: float | None = None  # learned looks: cost of the temporal stabiliser
    network_frames: int | None = None  # stabilised learned looks: frames the network ran on (the rest carried)
    preset_saved: str | None = None
    damaged: Damage | None = None  # the input broke off: what was graded, and where it broke
    warnings: list[str] = []
    colour: dict[str, str] | None = None  # colour-managed: the input, working and output spaces
    seconds: dict[str, float] = {}
