"""What a request to the review page may carry, validated (pydantic): ids, never paths."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from grade.review.session import Kind, Scope, Which

CLIP_ID = r"^c[0-9]{1,6}$"


LOOK_ID = r"^r[0-9]{1,6}$"


JOB_ID = r"^j[0-9]{1,6}$"


class Query(BaseModel):
    model_config = ConfigDict(extra="ignore")  # token, v (a cache breaker)


class PageQuery(Query):
    clip: str | None = Field(None, pattern=CLIP_ID)
    shot: int = Field(0, ge=0, le=1_000_000)
    frame: int | None = Field(None, ge=0)
    pos: float = Field(0.5, ge=0.0, le=1.0)
    msg: str | None = Field(None, max_length=400)
    err: bool = False


class ShotQuery(Query):
    clip: str = Field(pattern=CLIP_ID)
    shot: int = Field(0, ge=0, le=1_000_000)


class ViewQuery(ShotQuery):
    kind: Kind = "wipe"
    frame: int | None = Field(None, ge=0)
    pos: float = Field(0.5, ge=0.0, le=1.0)


class ScopeQuery(ShotQuery):
    frame: int | None = Field(None, ge=0)
    which: Which = "after"
    scope: Scope = "waveform"


class ClipQuery(Query):
    clip: str = Field(pattern=CLIP_ID)


class LookQuery(Query):
    id: str = Field(pattern=LOOK_ID)


class JobQuery(Query):
    id: str = Field(pattern=JOB_ID)


class RenderBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    overwrite: bool = False


class PresetBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str = Field(min_length=1, max_length=64)
    force: bool = False


class BadRequest(Exception):
    """A request we refuse, with its status and a one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def why(e: ValidationError) -> str:
    first = e.errors()[0]
    where = ".".join(str(x) for x in first.get("loc", ())) or "request"
    return f"{where}: {first.get('msg', 'invalid value')}"
