"""``grade conform --engine ray --ray-address``: a real two-node Ray cluster started with Ray's own CLI
(``ray start --head`` and ``ray start --address``, both on this machine, one CPU each, token authentication
on as Ray's default), and ``grade conform`` run as a separate process that connects to it as a user's would.
The clips must be those of one local process, also when a whole node is lost mid-event."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

import test_conform  # noqa: E402
from conftest import no_temp_files, sha  # noqa: E402
from test_conform import run  # noqa: E402

from grade.conform.ray_engine import NODE_HOOK  # noqa: E402

project = test_conform.project  # the fixture: two reels of media and an edit of four events

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_cli() -> str:
    cli = Path(sys.executable).with_name("ray")
    return str(cli) if cli.exists() else shutil.which("ray") or "ray"


@pytest.fixture(scope="module")
def cluster():
    """``(address, env)`` of a head and a worker node; ``env`` holds the cluster's auth token."""
    temp = tempfile.mkdtemp(prefix="gr", dir="/tmp")  # short: Ray's socket paths must stay under 108 bytes
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32), RAY_USAGE_STATS_ENABLED="0")
    port = _free_port()
    address = f"127.0.0.1:{port}"
    common = ["--num-cpus", "1", "--num-gpus", "0", "--object-store-memory", str(150 * 2**20)]
    ray_cli = _ray_cli()
    try:
        subprocess.run([ray_cli, "start", "--head", "--port", str(port), "--include-dashboard=false",
                        "--disable-usage-stats", "--temp-dir", temp, *common],
                       env=env, check=True, capture_output=True, timeout=120)  # fmt: skip
        subprocess.run([ray_cli, "start", "--address", address, *common],
                       env=env, check=True, capture_output=True, timeout=120)  # fmt: skip
        yield address, env
    finally:
        subprocess.run([ray_cli, "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)


def _conform(address: str, env: dict, *args) -> tuple[int, list[dict], str]:
    cmd = [sys.executable, "-m", "grade", "conform", *map(str, args), "--engine", "ray", "--ray-address", address]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    events = json.loads(done.stdout)["events"] if done.stdout.strip() else []
    return done.returncode, events, done.stderr


def _nodes(address: str, env: dict, expect: int) -> int:
    """The cluster's live nodes, as soon as they are ``expect`` (within a minute: a lost node is marked dead by
    Ray's health checks, which may come after the conform that lost it has finished)."""
    code = f"""import ray, time
ray.init(address={address!r}, log_to_driver=False)
for _ in range(120):
    alive = sum(n['Alive'] for n in ray.nodes())
    if alive == {expect}:
        break
    time.sleep(0.5)
print(alive)"""
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180)
    return int(done.stdout.split()[-1])


def test_a_cluster_at_an_address_gives_the_clips_of_one_process(capsys, project, cluster) -> None:
    """Also: a node lost mid-event (its raylet killed by the test hook) is retried on the node left."""
    address, env = cluster
    root, media, edl = project
    base = ["conform", edl, "--media", media, "--look", root / "mild.cube", "--codec", "ffv1", "--json", "-o"]
    code, o, err = run(capsys, *base, root / "one")
    assert code == 0, err
    one = [sha(Path(e["output"])) for e in json.loads(o)["events"]]
    assert _nodes(address, env, 2) == 2

    code, events, err = _conform(address, env, *base[1:], root / "cluster")
    assert code == 0, err
    assert [e["status"] for e in events] == ["done"] * 4
    assert [sha(Path(e["output"])) for e in events] == one
    assert (root / "cluster" / "cut.graded.edl").exists() and no_temp_files(root / "cluster")

    marker = root / "node-killed"
    code, events, err = _conform(address, dict(env, **{NODE_HOOK: str(marker)}), *base[1:], root / "lost")
    assert code == 0, err
    assert marker.exists()  # the worker node did die mid-event
    assert _nodes(address, env, 1) == 1
    assert [e["status"] for e in events] == ["done"] * 4
    assert [sha(Path(e["output"])) for e in events] == one
    assert no_temp_files(root / "lost")


def test_a_cluster_that_refuses_the_token_is_one_line(project, cluster) -> None:
    address, env = cluster
    root, media, edl = project
    env = dict(env, RAY_AUTH_TOKEN=secrets.token_hex(32))  # not the cluster's
    env["RAY_gcs_server_port_wait_time_s"] = "3"  # Ray tries for 3 s, not 20
    code, events, err = _conform(address, env, edl, "--media", media, "--look", root / "mild.cube", "-o", root / "o")
    assert code == 2 and not events
    assert err.strip().splitlines() == [
        f"grade: error: --engine ray: the Ray cluster at {address} refused this machine's token (a cluster started "
        "with token authentication: set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH as on its nodes)"
    ]
    assert not list(root.glob("o/*.mkv")) and not list(root.glob("o/*.mp4")) and not list(root.glob("o/*.edl"))
