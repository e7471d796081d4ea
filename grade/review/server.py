"""The review page's web app (Starlette): :func:`make_app`.

Security: the server binds to 127.0.0.1 only (:mod:`grade.review.cli`); every request carries the
random token (a ``token`` query parameter, or the cookie set on the first visit), else 403; a
request names media by id (``c0``, ``r1``, ``j2``), never by path, and every parameter is validated
(pydantic) before use; uploads are limited in size while they stream and checked for their type
before anything decodes them; they live in the session's temporary folder.
"""

from __future__ import annotations

import itertools
import re
import secrets
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import cv2
import numpy as np
from pydantic import BaseModel, ValidationError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from grade.errors import GradeError, OutputError
from grade.review.page import render_page
from grade.review.queries import (
    CLIP_ID,
    BadRequest,
    ClipQuery,
    JobQuery,
    LookQuery,
    PageQuery,
    PresetBody,
    RenderBody,
    ScopeQuery,
    ShotQuery,
    ViewQuery,
    why,
)
from grade.review.session import ID_PATTERN, ReviewSession, Update

COOKIE = "grade_review_token"


_MULTIPART_SLACK = 64 * 1024  # headers and boundaries around the files of an upload


def _query(request: Request, model: type[BaseModel]) -> Any:
    try:
        return model.model_validate(dict(request.query_params))
    except ValidationError as e:
        raise BadRequest(400, why(e)) from None


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


async def _body(request: Request, model: type[BaseModel]) -> Any:
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            data = await request.json()
        except ValueError:
            raise BadRequest(400, "the request body is not JSON") from None
        if not isinstance(data, dict):
            raise BadRequest(400, "the request body is not a JSON object")
    else:
        form = await request.form(max_files=0, max_fields=32, max_part_size=64 * 1024)
        data = {k: v for k, v in form.items() if isinstance(v, str)}
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise BadRequest(400, why(e)) from None


def _image(rgb: np.ndarray, fmt: str = ".jpg") -> Response:
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, 90] if fmt == ".jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 1]
    ok, data = cv2.imencode(fmt, bgr, params)
    if not ok:
        raise BadRequest(500, "could not encode the picture")
    media = "image/jpeg" if fmt == ".jpg" else "image/png"
    return Response(data.tobytes(), media_type=media, headers={"Cache-Control": "no-store"})


class TokenGuard:
    """ASGI middleware: 403 unless the request names a host of ours and carries the token (query
    parameter or cookie); a request that brings it as a query parameter gets the cookie."""

    def __init__(self, app, token: str, hosts: tuple[str, ...]) -> None:
        self.app, self.token, self.hosts = app, token.encode(), hosts

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host = re.sub(r":\d+$", "", headers.get("host", ""))
        if host not in self.hosts:
            await PlainTextResponse("forbidden: this server answers 127.0.0.1 only", 403)(scope, receive, send)
            return
        given = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [""])[0]
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # a malformed cookie header is no token
            cookie = SimpleCookie()
        kept = cookie[COOKIE].value if COOKIE in cookie else ""
        by_query = secrets.compare_digest(given.encode("utf-8", "replace"), self.token)
        if not (by_query or secrets.compare_digest(kept.encode("utf-8", "replace"), self.token)):
            text = "forbidden: open the address that `grade review` printed (it carries the page's token)"
            await PlainTextResponse(text, 403)(scope, receive, send)
            return
        if not by_query or kept == self.token.decode():
            await self.app(scope, receive, send)
            return

        async def send_with_cookie(message) -> None:
            if message["type"] == "http.response.start":
                value = f"{COOKIE}={self.token.decode()}; Path=/; HttpOnly; SameSite=Strict"
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", value.encode())]}
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def make_app(
    session: ReviewSession,
    token: str,
    *,
    hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
) -> Starlette:
    """The review app for ``session``; every request must carry ``token``. ``session.max_upload``
    limits uploads (bytes)."""

    def page_url(**params: Any) -> str:
        return "/?" + urlencode({**{k: v for k, v in params.items() if v is not None}, "token": token})

    def fail(request: Request, status: int, message: str, back: dict[str, Any] | None = None) -> Response:
        if _wants_json(request):
            return JSONResponse({"error": message}, status)
        if request.method == "POST" and back is not None:  # a form without JavaScript: back to the page
            return RedirectResponse(page_url(**back, msg=message, err="true"), 303)
        return PlainTextResponse(f"error: {message}\n", status)

    def endpoint(handler, back_of=None):
        async def run(request: Request) -> Response:
            back = None
            try:
                if back_of is not None:
                    back = back_of(request)
                return await handler(request)
            except BadRequest as e:
                return fail(request, e.status, str(e), back)
            except KeyError:
                return fail(request, 404, "not found", back)
            except OutputError as e:
                return fail(request, 409, str(e), back)
            except GradeError as e:
                return fail(request, 400, str(e), back)

        return run

    def back_to_shot(request: Request) -> dict[str, Any]:
        q = request.query_params
        clip = q.get("clip") if re.fullmatch(CLIP_ID, q.get("clip", "")) else None
        shot = q.get("shot") if q.get("shot", "").isdigit() else None
        return {"clip": clip, "shot": shot}

    async def page(request: Request) -> Response:
        q = _query(request, PageQuery)
        html = await run_in_threadpool(render_page, session, token, q.clip, q.shot, q.frame, q.pos, q.msg, q.err)
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    async def view(request: Request) -> Response:
        q = _query(request, ViewQuery)
        rgb = await run_in_threadpool(session.picture, q.clip, q.shot, q.frame, q.kind, q.pos)
        return await run_in_threadpool(_image, rgb)

    async def scope(request: Request) -> Response:
        q = _query(request, ScopeQuery)
        rgb = await run_in_threadpool(session.scope, q.clip, q.shot, q.frame, q.which, q.scope)
        return await run_in_threadpool(_image, rgb, ".png")

    async def thumb(request: Request) -> Response:
        q = _query(request, ShotQuery)
        return await run_in_threadpool(lambda: _image(session.thumb(q.clip, q.shot)))

    async def reference(request: Request) -> Response:
        q = _query(request, LookQuery)
        pic = session.reference_picture(q.id)
        if pic is None:
            raise KeyError(q.id)
        return await run_in_threadpool(_image, pic)

    def shot_reply(clip: str, n: int) -> dict[str, Any]:
        choice = session.choice(clip, n)
        _, state, job = session.look(clip, n)
        fixed = session.get(choice.look, "look").kind == "look"
        return {"choice": choice.model_dump(), "state": state, "job": job.id if job else None, "fixed": fixed}

    async def shot(request: Request) -> Response:
        q = _query(request, ShotQuery)
        change = await _body(request, Update)
        await run_in_threadpool(session.update, q.clip, q.shot, change)
        if _wants_json(request):
            return JSONResponse(await run_in_threadpool(shot_reply, q.clip, q.shot))
        return RedirectResponse(page_url(clip=q.clip, shot=q.shot), 303)

    async def render(request: Request) -> Response:
        q = _query(request, ClipQuery)
        body = await _body(request, RenderBody)
        job = await run_in_threadpool(session.start_render, q.clip, body.overwrite)
        if _wants_json(request):
            return JSONResponse(job.as_dict())
        return RedirectResponse(page_url(clip=q.clip, msg=f"rendering ({job.id})"), 303)

    async def preset(request: Request) -> Response:
        q = _query(request, ShotQuery)
        body = await _body(request, PresetBody)
        path = await run_in_threadpool(session.save_preset, q.clip, q.shot, body.name, body.force)
        if _wants_json(request):
            return JSONResponse({"saved": body.name, "file": str(path)})
        return RedirectResponse(page_url(clip=q.clip, shot=q.shot, msg=f"preset saved: {body.name} ({path})"), 303)

    async def preset_download(request: Request) -> Response:
        q = _query(request, ShotQuery)
        path = await run_in_threadpool(session.preset_file, q.clip, q.shot)
        return FileResponse(path, media_type="application/octet-stream", filename=path.name)

    async def output(request: Request) -> Response:
        q = _query(request, JobQuery)
        path = session.output_file(q.id)
        return FileResponse(path, filename=path.name, headers={"Cache-Control": "no-store"})

    async def job(request: Request) -> Response:
        q = _query(request, JobQuery)
        return JSONResponse(session.jobs[q.id].as_dict())

    async def state(request: Request) -> Response:
        clip = request.query_params.get("clip")
        if clip is not None and not re.fullmatch(CLIP_ID, clip):
            raise BadRequest(400, "clip: not a clip id")
        return JSONResponse(await run_in_threadpool(session.state, clip))

    counter = itertools.count()

    async def upload(request: Request) -> Response:
        made = await _receive_upload(request, session, counter)
        try:
            added = []
            for kind, path, name in made:
                added.append(await run_in_threadpool(session.add_upload, kind, path, name))
        except BaseException:
            for _, path, _ in made:
                path.unlink(missing_ok=True)
            raise
        if not added:
            raise BadRequest(400, "no file in the upload (fields: clip, reference)")
        clip = next((m.id for m in added if m.kind == "clip"), None)
        reply = {"clip": clip, "added": [{"id": m.id, "kind": m.kind, "name": m.name} for m in added]}
        if _wants_json(request):
            return JSONResponse(reply)
        names = ", ".join(m.name for m in added)
        return RedirectResponse(page_url(clip=clip, msg=f"uploaded: {names}"), 303)

    routes = [
        Route("/", endpoint(page), methods=["GET"]),
        Route("/image/view.jpg", endpoint(view), methods=["GET"]),
        Route("/image/scope.png", endpoint(scope), methods=["GET"]),
        Route("/image/thumb.jpg", endpoint(thumb), methods=["GET"]),
        Route("/image/reference.jpg", endpoint(reference), methods=["GET"]),
        Route("/shot", endpoint(shot, back_to_shot), methods=["POST"]),
        Route("/render", endpoint(render, back_to_shot), methods=["POST"]),
        Route("/preset", endpoint(preset, back_to_shot), methods=["POST"]),
        Route("/preset.gpreset", endpoint(preset_download), methods=["GET"]),
        Route("/output", endpoint(output), methods=["GET"]),
        Route("/api/job", endpoint(job), methods=["GET"]),
        Route("/api/state", endpoint(state), methods=["GET"]),
        Route("/upload", endpoint(upload, lambda r: {}), methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    app.add_middleware(TokenGuard, token=token, hosts=hosts)
    app.state.session = session
    return app


def _mib(n: int) -> str:
    if n >= 1024**3:
        return f"{n / 1024**3:.1f} GiB"
    return f"{n / 1024**2:.1f} MiB" if n >= 1024**2 else f"{n} bytes"


async def _receive_upload(request: Request, session: ReviewSession, counter) -> list[tuple[str, Path, str]]:
    """Stream a multipart upload into the session's folder: ``(field, file, name as uploaded)`` per file.

    The request is refused before reading when its declared length is over ``session.max_upload``,
    and stopped as soon as the bytes read pass it. Only the fields ``clip`` and ``reference`` are
    taken; each file is stored under a name of ours (the uploaded name is only shown)."""
    limit = session.max_upload
    too_large = f"upload too large: over {_mib(limit)} (the limit; grade review --max-upload-mb)"
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or b"boundary" not in params:
        raise BadRequest(415, "an upload is a multipart/form-data POST (fields: clip, reference)")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit + _MULTIPART_SLACK:
        raise BadRequest(413, too_large)
    folder = session.workdir / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    files: list[tuple[str, Path, str]] = []
    part: dict[str, Any] = {}
    header: dict[str, bytes] = {}

    def on_part_begin() -> None:
        part.clear()
        part["headers"] = {}

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header["field"] = header.get("field", b"") + data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header["value"] = header.get("value", b"") + data[start:end]

    def on_header_end() -> None:
        part["headers"][header.get("field", b"").decode("latin-1").lower()] = header.get("value", b"")
        header.clear()

    def on_headers_finished() -> None:
        _, disp = parse_options_header(part["headers"].get("content-disposition", b""))
        field = disp.get(b"name", b"").decode("utf-8", "replace")
        name = disp.get(b"filename")
        if field not in ("clip", "reference") or name is None:
            part["file"] = None
            return
        shown = Path(name.decode("utf-8", "replace").replace("\\", "/")).name[:200]
        if not shown:
            part["file"] = None  # an empty file input
            return
        suffix = Path(shown).suffix.lower()
        suffix = suffix if re.fullmatch(r"\.[a-z0-9]{1,6}", suffix) else ""
        path = folder / f"u{next(counter)}{suffix}"
        part["file"] = open(path, "wb")  # noqa: SIM115 (closed in on_part_end or on failure)
        files.append((field, path, shown))

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if part.get("file") is not None:
            part["file"].write(data[start:end])

    def on_part_end() -> None:
        if part.get("file") is not None:
            part["file"].close()
            part["file"] = None

    callbacks = {
        "on_part_begin": on_part_begin,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished,
        "on_part_data": on_part_data,
        "on_part_end": on_part_end,
    }
    parser = MultipartParser(params[b"boundary"], callbacks)
    total = 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit + _MULTIPART_SLACK:
                raise BadRequest(413, too_large)
            await run_in_threadpool(parser.write, chunk)
        parser.finalize()
        for _, path, _ in files:
            if path.stat().st_size > limit:
                raise BadRequest(413, too_large)
    except BaseException as e:
        if part.get("file") is not None:
            part["file"].close()
        for _, path, _ in files:
            path.unlink(missing_ok=True)
        if isinstance(e, BadRequest):
            raise
        if isinstance(e, Exception):
            raise BadRequest(400, f"the upload is not a well-formed multipart form ({type(e).__name__})") from None
        raise
    return [(field, path, name) for field, path, name in files if path.stat().st_size > 0 or _drop(path)]


def _drop(path: Path) -> bool:
    path.unlink(missing_ok=True)  # an empty part: nothing uploaded in that field
    return False


__all__ = ["ID_PATTERN", "TokenGuard", "make_app"]
