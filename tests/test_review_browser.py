"""``grade review`` in a real browser: Playwright (the Python package) driving Debian's chromium.

Run as a script with ``GRADE_SCREENSHOT=docs/review.png`` to save the README's screenshot of the
page on the bundled sample: ``GRADE_SCREENSHOT=docs/review.png python tests/test_review_browser.py``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from clips import make_clip, make_still  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@contextmanager
def review_server(*words: str) -> Iterator[str]:
    """``grade review WORDS --no-open`` in a subprocess; yields the page's address, stops it with Ctrl-C."""
    cmd = [sys.executable, "-m", "grade", "review", *words, "--no-open", "-q"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        match = re.fullmatch(r"review: (http://127\.0\.0\.1:\d+/\?token=[\w-]+)\n", line)
        assert match, f"first line {line!r}; stderr: {proc.stderr.read() if proc.poll() is not None else ''}"
        yield match.group(1)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, proc.stderr.read()


@contextmanager
def browser_page(width: int = 1400, height: int = 900):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()


def _set_range(page, selector: str, value: float) -> None:
    page.eval_on_selector(
        selector, "(el, v) => { el.value = v; el.dispatchEvent(new Event('input', {bubbles: true})); }", str(value)
    )


def _picture_loaded(page) -> None:
    page.wait_for_function(
        "() => { const i = document.getElementById('wipe'); return i.complete && i.naturalWidth > 0; }"
    )


def save_screenshot(path: Path) -> Path:
    """The page on the bundled sample (fast mode, wipe at 40 %), as a PNG at ``path``."""
    words = ("samples/sample.mp4", "--look", "samples/reference.jpg", "--mode", "fast")  # relative: shown on the page
    with review_server(*words) as url, browser_page() as page:
        page.goto(url + "&shot=1&pos=0.4")
        _picture_loaded(page)
        page.wait_for_function("() => [...document.images].every((i) => i.complete && i.naturalWidth > 0)")
        path.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path), full_page=True)
    return path


def test_review_page_in_a_browser(tmp_path: Path) -> None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("playwright is not installed")
    if CHROMIUM is None:
        pytest.skip("no chromium on this machine (apt-get install chromium)")
    clip = make_clip(tmp_path / "clip.mp4", frames=8, size=(64, 48))
    ref = make_still(tmp_path / "ref.png")
    out = tmp_path / "clip.graded.mp4"
    with review_server(str(clip), "--look", str(ref), "--mode", "fast", "-o", str(out)) as url, browser_page() as page:
        page.goto(url)
        _picture_loaded(page)
        wipe = page.locator("#wipe")
        first_src = wipe.get_attribute("src")
        _set_range(page, "#pos", 0.2)  # move the wipe
        page.wait_for_function("() => document.getElementById('wipe').src.includes('pos=0.2')")
        _picture_loaded(page)
        assert wipe.get_attribute("src") != first_src
        before = wipe.screenshot()
        _set_range(page, "#strength", 0.0)  # strength 0: the right of the wipe is the source too
        page.wait_for_function("() => new URL(document.getElementById('wipe').src).searchParams.get('v') === '1'")
        _picture_loaded(page)
        page.wait_for_timeout(100)
        assert wipe.screenshot() != before, "the picture did not change with the strength"
        page.click("#render-go")
        link = page.locator("#output-link")
        link.wait_for(timeout=120_000)
        assert link.inner_text() == out.name
        response = page.request.get(link.evaluate("a => a.href"))
        assert response.status == 200 and len(response.body()) == out.stat().st_size > 0


if __name__ == "__main__":
    target = os.environ.get("GRADE_SCREENSHOT")
    if not target:
        sys.exit("set GRADE_SCREENSHOT=docs/review.png to save the page's screenshot")
    print(save_screenshot(ROOT / target))
