"""grade review: how soon the first picture shows, and how fast a strength change is.

1. Start: ``grade review samples/sample.mp4 --look samples/reference.jpg --mode fast --no-open`` in a
   subprocess; seconds until the address is printed, the page is served, and its first picture (the
   before/after wipe of shot 1) has arrived. Median of ``--repeats`` starts.
2. Strength at 1080p (fast mode): the bundled sample scaled to 1920x1080 (FFV1, 24 frames); with the
   real server running, one change is ``POST /shot`` with a new strength and ``GET`` of the wipe
   picture (a 1920x1080 JPEG); median of ``--changes`` changes after a warm-up. Also the server's
   share alone (the picture made in-process, no HTTP, no JPEG).

    python benchmarks/review.py [--repeats 3] [--changes 15] [--json out.json]
"""

from __future__ import annotations

import json
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from common import REPO_ROOT, copy_video, make_parser, print_system, save_json, system_info, table

SAMPLE = REPO_ROOT / "samples" / "sample.mp4"
REFERENCE = REPO_ROOT / "samples" / "reference.jpg"


def _start(clip: Path) -> tuple[subprocess.Popen, str, float]:
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "grade", "review", str(clip), "--look", str(REFERENCE), "--mode", "fast"]
    proc = subprocess.Popen([*cmd, "--no-open", "-q"], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    m = re.fullmatch(r"review: (\S+)\n", line)
    if not m:
        proc.kill()
        sys.exit(f"grade review did not start: {line!r}")
    return proc, m.group(1), time.perf_counter() - t0


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    proc.wait(30)


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=120) as r:
        return r.read()


def first_picture(repeats: int) -> dict[str, list[float]]:
    runs: dict[str, list[float]] = {"address": [], "page": [], "picture": []}
    for _ in range(repeats):
        t0 = time.perf_counter()
        proc, url, address = _start(SAMPLE)
        try:
            page = _get(url).decode()
            t_page = time.perf_counter() - t0
            src = re.search(r'id="wipe"[^>]* src="([^"]+)"', page).group(1).replace("&amp;", "&")
            _get(url.split("/?")[0] + src)
            t_picture = time.perf_counter() - t0
        finally:
            _stop(proc)
        runs["address"].append(address)
        runs["page"].append(t_page)
        runs["picture"].append(t_picture)
    return runs


def strength_changes(changes: int) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory(prefix="review-bench-") as tmp:
        clip = Path(tmp) / "sample_1080p.mkv"
        copy_video(SAMPLE, clip, size=(1920, 1080), frames=24)
        proc, url, _ = _start(clip)
        base, token = url.split("/?")[0], url.split("token=")[1]
        http: list[float] = []
        try:
            page = _get(url).decode()
            src = re.search(r'id="wipe"[^>]* src="([^"]+)"', page).group(1).replace("&amp;", "&")
            _get(base + src)  # fit, decode and grade the frame once
            for i in range(changes + 2):
                s = 0.2 + 0.6 * (i % 7) / 6
                t = time.perf_counter()
                body = json.dumps({"strength": round(s, 3)}).encode()
                req = urllib.request.Request(
                    f"{base}/shot?clip=c0&shot=0&token={token}",
                    data=body,
                    headers={"Content-Type": "application/json", "Accept": "application/json"},
                )
                urllib.request.urlopen(req, timeout=60).read()
                picture = _get(f"{base}{src}&v={i}")
                if i >= 2:  # after a warm-up
                    http.append(time.perf_counter() - t)
        finally:
            _stop(proc)
        size = len(picture)

        from grade.review.session import ReviewSession, Update

        session = ReviewSession([clip], [REFERENCE], mode="fast")
        local: list[float] = []
        try:
            session.picture("c0", 0, None, "wipe")
            for i in range(changes):
                t = time.perf_counter()
                session.update("c0", 0, Update(strength=0.2 + 0.6 * (i % 7) / 6))
                session.picture("c0", 0, None, "wipe")
                local.append(time.perf_counter() - t)
        finally:
            session.close()
    return {"http": http, "server": local, "jpeg_bytes": [size]}


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--repeats", type=int, default=3, help="starts of the server (default 3)")
    parser.add_argument("--changes", type=int, default=15, help="strength changes timed (default 15)")
    args = parser.parse_args()
    info = system_info()
    print_system(info)
    start = first_picture(args.repeats)
    strength = strength_changes(args.changes)
    med = {k: statistics.median(v) for k, v in start.items()}
    print(f"\nstart to first picture, bundled sample (480x270, 2 shots, fast mode), median of {args.repeats}:")
    print(
        table(
            ["step", "median s", "min s", "max s"],
            [[k, med[k], min(v), max(v)] for k, v in start.items()],
        )
    )
    print(f"\nstrength change at 1920x1080, fast mode, median of {args.changes} (after a warm-up):")
    rows = [
        ["POST strength + GET wipe JPEG (HTTP)", 1000 * statistics.median(strength["http"])]
        + [1000 * min(strength["http"]), 1000 * max(strength["http"])],
        ["server only: blend + wipe (no HTTP, no JPEG)", 1000 * statistics.median(strength["server"])]
        + [1000 * min(strength["server"]), 1000 * max(strength["server"])],
    ]
    print(table(["change", "median ms", "min ms", "max ms"], rows))
    print(f"(wipe JPEG: {strength['jpeg_bytes'][0] / 1024:.0f} KiB)")
    save_json(args.json, {"system": info, "start": start, "strength": strength})


if __name__ == "__main__":
    main()
