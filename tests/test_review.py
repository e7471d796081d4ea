"""``grade review``: the app (Starlette's TestClient), its security rules, uploads, pictures, scopes,
jobs, and the command (a real server in a subprocess, stopped with Ctrl-C)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

from clips import make_clip, make_still  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from grade.cli import main  # noqa: E402
from grade.review import scopes  # noqa: E402
from grade.review.server import make_app  # noqa: E402
from grade.review.session import ReviewSession  # noqa: E402

TOKEN = "test-token"
JSON = {"Accept": "application/json"}


@pytest.fixture
def media(tmp_path: Path) -> tuple[Path, Path]:
    return make_clip(tmp_path / "clip.mp4", frames=8, size=(64, 48)), make_still(tmp_path / "ref.png")


def _session(tmp_path: Path, media, **kw) -> ReviewSession:
    clip, ref = media
    kw.setdefault("mode", "fast")
    return ReviewSession([clip], [ref], library=tmp_path / "library", output=tmp_path / "out.mp4", **kw)


@pytest.fixture
def client(tmp_path: Path, media):
    session = _session(tmp_path, media, fit={"steps": 3})
    with TestClient(make_app(session, TOKEN), base_url="http://127.0.0.1") as c:
        c.session = session
        yield c
    session.close()


def _get(c: TestClient, path: str, **params):
    return c.get(path, params={**params, "token": TOKEN})


def _decode(data: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None, "not a picture"
    return img


def _wait(c: TestClient, job: str, seconds: float = 120) -> dict:
    t = time.time()
    while time.time() - t < seconds:
        j = _get(c, "/api/job", id=job).json()
        if j["state"] not in ("queued", "running"):
            return j
        time.sleep(0.1)
    raise AssertionError(f"job {job} still running")


def test_token_is_required(client: TestClient) -> None:
    assert client.get("/").status_code == 403
    assert client.get("/", params={"token": "wrong"}).status_code == 403
    assert client.get("/image/thumb.jpg", params={"clip": "c0", "shot": 0}).status_code == 403
    assert client.post("/render", params={"clip": "c0"}).status_code == 403
    page = _get(client, "/")
    assert page.status_code == 200 and "<img" in page.text
    assert "grade_review_token" in page.headers["set-cookie"] and "HttpOnly" in page.headers["set-cookie"]
    assert client.get("/").status_code == 200  # the cookie now carries the token
    client.cookies.clear()
    assert client.get("/").status_code == 403


def test_other_hosts_are_refused(client: TestClient) -> None:
    r = client.get("/", params={"token": TOKEN}, headers={"Host": "evil.example:80"})
    assert r.status_code == 403


@pytest.mark.parametrize(
    "path, params",
    [
        ("/image/../../etc/passwd", {}),
        ("/image/%2e%2e/%2e%2e/etc/passwd", {}),
        ("/image/reference.jpg", {"id": "../x"}),
        ("/image/reference.jpg", {"id": "/etc/passwd"}),
        ("/image/view.jpg", {"clip": "../../etc/passwd", "shot": 0}),
        ("/image/thumb.jpg", {"clip": "c0/../../x", "shot": 0}),
        ("/output", {"id": "../../etc/passwd"}),
        ("/api/job", {"id": "..%2Fx"}),
        ("/image/reference.jpg", {"id": "r9"}),
        ("/output", {"id": "j99"}),
    ],
)
def test_paths_in_requests_are_never_opened(client: TestClient, path: str, params: dict) -> None:
    r = _get(client, path, **params)
    assert r.status_code in (400, 404), r.status_code
    assert "root:" not in r.text
    if params and r.status_code == 400:
        assert r.text.startswith("error: ") and len(r.text.splitlines()) == 1


def _upload(c: TestClient, **files):
    return c.post("/upload", params={"token": TOKEN}, files=files, headers=JSON)


def test_uploads_too_large_are_refused(tmp_path: Path, media) -> None:
    session = _session(tmp_path, media, max_upload=1000)
    with TestClient(make_app(session, TOKEN), base_url="http://127.0.0.1") as c:
        r = _upload(c, clip=("big.mp4", b"\0" * 200_000, "video/mp4"))
        assert r.status_code == 413
        assert "upload too large: over 1000 bytes" in r.json()["error"]
        assert not any((session.workdir / "uploads").glob("*")) if (session.workdir / "uploads").exists() else True
    session.close()
    assert not session.workdir.exists()


def test_uploads_of_the_wrong_kind_are_refused(client: TestClient, tmp_path: Path) -> None:
    r = _upload(client, clip=("notes.txt", b"hello", "text/plain"))
    assert r.status_code == 400 and "notes.txt: not a video file" in r.json()["error"]
    r = _upload(client, clip=("fake.mp4", b"this is text, not a video\n" * 50, "video/mp4"))
    error = r.json()["error"]
    assert r.status_code == 400 and "fake.mp4" in error
    assert str(client.session.workdir) not in error  # the user's name for it, not our temporary path
    r = _upload(client, reference=("ref.png", b"not a png", "image/png"))
    assert r.status_code == 400 and "ref.png" in r.json()["error"] and "not a readable image" in r.json()["error"]
    r = _upload(client, reference=("clip.mp4", b"x", "video/mp4"))
    assert r.status_code == 400 and "still image" in r.json()["error"]
    r = client.post("/upload", params={"token": TOKEN}, content=b"x", headers={**JSON, "Content-Type": "text/plain"})
    assert r.status_code == 415
    assert not list((client.session.workdir / "uploads").glob("*"))  # refused files are deleted


def test_upload_a_clip_and_a_reference(client: TestClient, tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "other.mp4", frames=6, size=(48, 32))
    still = make_still(tmp_path / "other.jpg", scene=0)
    r = _upload(client, clip=("other.mp4", clip.read_bytes(), "video/mp4"), reference=("r.jpg", still.read_bytes()))
    assert r.status_code == 200, r.text
    assert r.json()["clip"] == "c1" and [a["kind"] for a in r.json()["added"]] == ["clip", "reference"]
    page = _get(client, "/", clip="c1")
    assert page.status_code == 200 and "other.mp4" in page.text and "r.jpg" in page.text
    view = _get(client, "/image/view.jpg", clip="c1", shot=0, kind="after")
    assert _decode(view.content).shape == (32, 48, 3)
    workdir = client.session.workdir
    assert any((workdir / "uploads").iterdir())
    client.session.close()
    assert not workdir.exists()  # a stopped server leaves no temporary files


def test_wipe_is_a_picture_of_the_frame(client: TestClient) -> None:
    r = _get(client, "/image/view.jpg", clip="c0", shot=0, kind="wipe", pos=0.5)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg" and r.content[:2] == b"\xff\xd8"
    wipe = _decode(r.content).astype(int)
    before = _decode(_get(client, "/image/view.jpg", clip="c0", shot=0, kind="before").content).astype(int)
    after = _decode(_get(client, "/image/view.jpg", clip="c0", shot=0, kind="after").content).astype(int)
    assert wipe.shape == before.shape == (48, 64, 3)
    assert np.abs(before - after).mean() > 3  # the look changes the picture
    assert np.abs(wipe[:, :28] - before[:, :28]).mean() < np.abs(wipe[:, :28] - after[:, :28]).mean()
    assert np.abs(wipe[:, 36:] - after[:, 36:]).mean() < np.abs(wipe[:, 36:] - before[:, 36:]).mean()
    frame = _get(client, "/image/view.jpg", clip="c0", shot=0, kind="before", frame=7)
    assert frame.status_code == 200 and _decode(frame.content).shape == (48, 64, 3)
    assert _get(client, "/image/view.jpg", clip="c0", shot=0, frame=8).status_code == 404  # not in the shot
    assert _get(client, "/image/view.jpg", clip="c0", shot=3).status_code == 404
    assert _get(client, "/image/view.jpg", clip="c0", shot=0, pos=2).status_code == 400


def test_strength_change_never_refits(client: TestClient, monkeypatch) -> None:
    import grade.api

    calls = []
    real = grade.api.fit_look
    monkeypatch.setattr(grade.api, "fit_look", lambda *a, **k: calls.append(1) or real(*a, **k))
    pictures = []
    for s in (1.0, 0.5, 0.0, 0.75):
        r = client.post("/shot", params={"clip": "c0", "shot": 0, "token": TOKEN}, json={"strength": s}, headers=JSON)
        assert r.status_code == 200 and r.json()["choice"]["strength"] == s
        pictures.append(_decode(_get(client, "/image/view.jpg", clip="c0", shot=0, kind="after").content))
    before = _decode(_get(client, "/image/view.jpg", clip="c0", shot=0, kind="before").content)
    assert len(calls) == 1
    assert np.abs(pictures[2].astype(int) - before).mean() < 1.0  # strength 0: the source
    assert np.abs(pictures[0].astype(int) - pictures[1]).mean() > 1.0
    bad = client.post("/shot", params={"clip": "c0", "shot": 0, "token": TOKEN}, json={"strength": 3}, headers=JSON)
    assert bad.status_code == 400 and "strength" in bad.json()["error"]


def test_form_posts_work_without_javascript(client: TestClient) -> None:
    r = client.post(
        "/shot", params={"clip": "c0", "shot": 0, "token": TOKEN}, data={"strength": "0.4"}, follow_redirects=False
    )
    assert r.status_code == 303 and f"token={TOKEN}" in r.headers["location"]
    assert client.session.choice("c0", 0).strength == 0.4
    r = client.post(
        "/preset", params={"clip": "c0", "shot": 0, "token": TOKEN}, data={"name": "../x"}, follow_redirects=False
    )
    assert r.status_code == 303 and "err=true" in r.headers["location"]
    assert "invalid+preset+name" in r.headers["location"]


def test_scopes_of_known_frames() -> None:
    red = np.full((20, 30, 3), (255, 0, 0), np.uint8)
    counts = scopes.vectorscope_counts(red, 255)
    r, c = np.unravel_index(counts.argmax(), counts.shape)
    angle = np.degrees(np.arctan2(127 - r, c - 127)) % 360
    assert counts.max() == counts.sum()  # one point
    assert abs(angle - float(scopes.hue_angle(red[:1, :1])[0, 0])) < 1.5 and abs(angle - 102.9) < 1.5
    grey = np.full((20, 30, 3), 100, np.uint8)
    wave = scopes.waveform_counts(scopes.luma(grey))
    lit = np.nonzero(wave.sum(axis=1))[0]
    assert lit.tolist() == [255 - 100] and (wave[lit[0]] == 20).all()  # one line, every column
    img = scopes.waveform(grey)
    assert [row for row in range(256) if img[row, 5].max() > 200] == [155]
    assert scopes.vectorscope(grey).shape == (256, 256, 3) and scopes.parade(grey).shape[0] == 256


def test_scope_pictures(client: TestClient) -> None:
    for which in ("before", "after", "reference"):
        for kind in ("waveform", "parade", "vectorscope"):
            r = _get(client, "/image/scope.png", clip="c0", shot=0, which=which, scope=kind)
            assert r.status_code == 200 and r.content[:8] == b"\x89PNG\r\n\x1a\n", (which, kind)
    assert _get(client, "/image/scope.png", clip="c0", shot=0, scope="histogram").status_code == 400


def test_learned_trains_in_the_background(client: TestClient) -> None:
    r = client.post("/shot", params={"clip": "c0", "shot": 0, "token": TOKEN}, json={"mode": "learned"}, headers=JSON)
    assert r.status_code == 200 and r.json()["choice"]["mode"] == "learned"
    job = r.json()["job"]
    if job is not None:  # else trained already
        assert _wait(client, job)["state"] == "done"
    r = client.post("/shot", params={"clip": "c0", "shot": 0, "token": TOKEN}, json={}, headers=JSON)
    assert r.json()["state"] == "ready"
    assert _get(client, "/image/view.jpg", clip="c0", shot=0, kind="after").status_code == 200


def test_render_preset_and_download(client: TestClient, tmp_path: Path) -> None:
    r = client.post("/render", params={"clip": "c0", "token": TOKEN}, json={}, headers=JSON)
    assert r.status_code == 200
    done = _wait(client, r.json()["id"])
    assert done["state"] == "done", done
    assert (tmp_path / "out.mp4").is_file()
    out = client.get(f"{done['output']}&token={TOKEN}")
    assert out.status_code == 200 and out.content == (tmp_path / "out.mp4").read_bytes()
    again = _wait(
        client, client.post("/render", params={"clip": "c0", "token": TOKEN}, json={}, headers=JSON).json()["id"]
    )
    assert again["state"] == "failed" and "output exists" in again["message"] and "--force" not in again["message"]
    r = client.post("/preset", params={"clip": "c0", "shot": 0, "token": TOKEN}, json={"name": "dusk"}, headers=JSON)
    assert r.status_code == 200 and (tmp_path / "library" / "dusk.gpreset").is_file()
    r = client.post("/preset", params={"clip": "c0", "shot": 0, "token": TOKEN}, json={"name": "dusk"}, headers=JSON)
    assert r.status_code == 409 and "already exists" in r.json()["error"]
    dl = _get(client, "/preset.gpreset", clip="c0", shot=0)
    assert dl.status_code == 200 and len(dl.content) > 1000
    from grade.api import load_look

    assert load_look(tmp_path / "library" / "dusk.gpreset").mode == "fast"


def test_render_refuses_mixed_settings(client: TestClient, tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "cut.mp4", frames=30, size=(64, 48), cut_at=15, audio=False)
    session = ReviewSession([clip], [make_still(tmp_path / "r.png")], mode="fast")
    try:
        assert len(session.shot_list("c0").shots) == 2
        from grade.review.session import Update

        session.update("c0", 1, Update(strength=0.3))
        with pytest.raises(Exception, match="different settings"):
            session.start_render("c0")
    finally:
        session.close()


def test_command_line_errors(media, capsys) -> None:
    clip, ref = media
    assert main(["review", str(clip), "--no-open"]) == 2
    assert "no look given" in capsys.readouterr().err
    assert main(["review", str(clip), "--look", str(ref), "--preview", "x.png", "--no-open"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("grade: error: review: --preview") and err.count("\n") == 1
    assert main(["review", str(ref), "--look", str(ref), "--no-open"]) == 2
    assert "not a still" in capsys.readouterr().err
    assert main(["help", "review"]) == 0
    assert "--no-open" in capsys.readouterr().out


def test_grade_help_does_not_import_the_web_server() -> None:
    code = "import sys; from grade.cli import main; main(['--help']); main(['help', 'review']); "
    code += "print('web', 'starlette' in sys.modules or 'uvicorn' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "review CLIP" in done.stdout and done.stdout.strip().endswith("web False")


def test_command_serves_and_stops_on_ctrl_c(media, tmp_path: Path) -> None:
    clip, ref = media
    cmd = [sys.executable, "-m", "grade", "review", str(clip), "--look", str(ref), "--look", str(ref), "--no-open"]
    proc = subprocess.Popen(
        [*cmd, "--mode", "fast"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**__import__("os").environ, "TMPDIR": str(tmp_path)},
    )
    try:
        line = proc.stdout.readline()
        m = re.fullmatch(r"review: http://127\.0\.0\.1:(\d+)/\?token=([\w-]{20,})\n", line)
        assert m, line
        with urllib.request.urlopen(line.split()[1], timeout=60) as r:
            page = r.read().decode()
        assert r.status == 200 and page.count("<figure>") == 2  # two references to choose from
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{m.group(1)}/", timeout=10)
            raise AssertionError("served without the token")
        except urllib.error.HTTPError as e:
            assert e.code == 403
        assert [p.name for p in tmp_path.glob("grade-review-*")]  # its temporary folder, while it runs
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "review stopped" in err
    assert not list(tmp_path.glob("grade-review-*"))
