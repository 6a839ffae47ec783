"""The viewer's API over real HTTP: a uvicorn server on a free port serving the bundled sample run and a folder
of damaged runs, checked against ``python -m replay.show --json``, ``TrajectoryLog.frames`` and
``render.render_still``."""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from served import Server

from render import RenderSource, render_still
from render.config import OverlayConfig, VideoConfig
from render.draw.compose import upscale_nearest
from render.viewer import is_live
from replay import TrajectoryLog
from replay.storage import WriterLock

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "sample"
RUN = "sample-breakout"
EPISODE = 1  # a short evaluation episode of the sample run (119 steps)


@pytest.fixture(scope="module")
def damaged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A runs folder: a log that is not HDF5, a truncated copy of the sample log, and a folder with no log."""
    folder = tmp_path_factory.mktemp("runs")
    (folder / "garbage").mkdir()
    (folder / "garbage" / "trajectories.h5").write_bytes(b"not a log\n" * 100)
    (folder / "truncated").mkdir()
    with open(SAMPLE / "breakout" / "trajectories.h5", "rb") as log:
        (folder / "truncated" / "trajectories.h5").write_bytes(log.read(200_000))
    (folder / "notes").mkdir()
    return folder


@pytest.fixture(scope="module")
def viewer(damaged: Path) -> Iterator[Server]:
    server = Server([SAMPLE, damaged])
    yield server
    server.stop()


def _png(body: bytes) -> np.ndarray:
    decoded = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_UNCHANGED)
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


def test_runs_lists_the_sample_run_and_every_damaged_folder_with_its_error(viewer: Server, damaged: Path) -> None:
    runs = {run["id"]: run for run in viewer.json("/api/runs")}
    with TrajectoryLog(SAMPLE / "breakout" / "trajectories.h5") as log:
        episodes = len(log.episodes)
        env_steps = sum(e.length for e in log.episodes if e.tag == "train")
    assert runs[RUN] == {
        "id": RUN, "path": str(SAMPLE / "breakout"), "game": "Breakout", "env_steps": env_steps,
        "episodes": episodes, "live": False, "error": None,
    }  # fmt: skip
    prefix = re.sub(r"[^a-z0-9._]+", "-", damaged.name.lower())
    for name in ("garbage", "truncated", "notes"):
        run = runs[f"{prefix}-{name}"]
        assert set(run) == {"id", "path", "game", "env_steps", "episodes", "live", "error"}
        assert run["path"] == str(damaged / name) and run["game"] is None and run["live"] is False
        assert str(damaged / name) in run["error"], run["error"]
    assert "not an HDF5 file" in runs[f"{prefix}-garbage"]["error"]
    assert "no trajectories.h5" in runs[f"{prefix}-notes"]["error"]
    status, _, body = viewer.get(f"/api/runs/{prefix}-truncated/episodes")
    assert status == 422 and str(damaged / "truncated") in json.loads(body)["error"]  # and the server still serves
    assert viewer.json(f"/api/runs/{RUN}")["summary"]["game"] == "Breakout"


def test_episodes_are_those_replay_show_json_lists(viewer: Server) -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "replay.show", str(SAMPLE / "breakout"), "--json"],
        capture_output=True, text=True, check=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    expected = json.loads(shown.stdout)["episodes"]
    _, _, body = viewer.get(f"/api/runs/{RUN}/episodes")
    assert b"NaN" not in body and json.loads(body) == expected


def test_a_raw_frame_is_the_recorded_frame_upscaled_byte_for_byte(viewer: Server) -> None:
    with TrajectoryLog(SAMPLE / "breakout" / "trajectories.h5") as log:
        recorded = list(log.frames(EPISODE))
    scale = VideoConfig().scale
    for step in (0, 60, 61, 5, len(recorded) - 1):  # forwards, the next step, backwards, the terminal frame
        status, kind, body = viewer.get(f"/api/runs/{RUN}/episodes/{EPISODE}/frames/{step}.png?overlay=raw")
        assert (status, kind) == (200, "image/png")
        image = _png(body)
        assert image.dtype == np.uint8 and image.shape == (210 * scale, 160 * scale, 3)
        assert np.array_equal(image, upscale_nearest(recorded[step], scale)), step


@pytest.mark.slow
@pytest.mark.parametrize("overlay", ["minimal", "full"])
def test_an_overlay_frame_is_what_render_still_draws(viewer: Server, overlay: str) -> None:
    source = RenderSource.resolve(run=SAMPLE / "breakout", log=None, checkpoint=None)
    for step in (40, 12):
        status, _, body = viewer.get(f"/api/runs/{RUN}/episodes/{EPISODE}/frames/{step}.png?overlay={overlay}")
        assert status == 200, body[:500]
        expected = render_still(source, episode=EPISODE, step=step, overlay=OverlayConfig(kind=overlay))
        assert np.array_equal(_png(body), expected), step


@pytest.mark.parametrize(
    ("path", "status", "names"),
    [
        ("/api/runs/nope/episodes", 404, ["'nope'", RUN]),
        (f"/api/runs/{RUN}/episodes/2194/frames/0.png", 404, ["episode '2194'", "0..2193"]),
        (f"/api/runs/{RUN}/episodes/-1/frames/0.png", 404, ["episode '-1'", "0..2193"]),
        (f"/api/runs/{RUN}/episodes/{EPISODE}/frames/120.png", 404, ["episode 1", "step '120'", "0..119"]),
        (f"/api/runs/{RUN}/episodes/{EPISODE}/frames/x.png", 404, ["step 'x'", "0..119"]),
        (f"/api/runs/{RUN}/episodes/{EPISODE}/frames/0.png?overlay=neon", 400, ["'neon'", "raw, minimal, full"]),
        ("/api/nothing", 404, ["/api/nothing"]),
    ],
)
def test_errors_are_json_naming_what_is_wrong_and_what_is_valid(
    viewer: Server, path: str, status: int, names: list[str]
) -> None:
    message = viewer.json(path, status)["error"]
    assert all(name in message for name in names), message


@pytest.mark.parametrize(
    "path",
    [
        "/api/runs/../../etc/passwd",
        "/api/runs/..%2F..%2Fetc%2Fpasswd/episodes",
        "/api/runs/%2e%2e/episodes",
        f"/api/runs/{RUN}%2F..%2F..%2F..%2Fpyproject.toml/episodes",
        "/api/runs/%2Fetc%2Fpasswd/episodes",
        "/api/runs/data%2Fsample%2Fbreakout/episodes",
        "/api/runs/..%5C..%5Cetc/episodes",
        f"/api/runs/{RUN}/episodes/..%2F..%2F..%2F/frames/0.png",
        "/../../../etc/passwd",
        "/static/../../../pyproject.toml",
        "/static/..%2F..%2F..%2Fpyproject.toml",
        "/static/%2e%2e/app.py",
        "/runs/..%2F..%2Fetc",
    ],
)
def test_paths_outside_the_runs_are_refused(viewer: Server, path: str) -> None:
    status, kind, body = viewer.get(path)
    assert status in (400, 404) and kind == "application/json", (status, body[:200])
    assert "error" in json.loads(body) and b"root:" not in body


def test_live_is_whether_a_writer_holds_the_log_lock(tmp_path: Path) -> None:
    log = tmp_path / "trajectories.h5"
    assert not is_live(log)
    lock = WriterLock(log)
    try:
        assert is_live(log)
    finally:
        lock.release()
    assert not is_live(log)


@pytest.mark.slow
def test_the_command_prints_its_url_and_serves_the_runs(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "render.viewer", "--runs", str(tmp_path), "--port", "0"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = process.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert url, (line, process.stderr.read() if process.poll() is not None else "")
        connection = http.client.HTTPConnection("127.0.0.1", int(url[1]), timeout=30)
        connection.request("GET", "/api/runs")
        response = connection.getresponse()
        assert response.status == 200 and json.loads(response.read()) == []
        connection.close()
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_charts_bundle_is_npms_basic_one_when_installed_else_the_python_packages(
    viewer: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import plotly

    from render.viewer import app

    full = Path(plotly.__file__).with_name("package_data") / "plotly.min.js"
    status, kind, body = viewer.get("/vendor/plotly.min.js")
    assert status == 200 and kind.startswith("text/javascript")
    expected = app.PLOTLY_BASIC if app.PLOTLY_BASIC.is_file() else full  # `npm ci --prefix render/viewer` or not
    assert body == expected.read_bytes()
    monkeypatch.setattr(app, "PLOTLY_BASIC", tmp_path / "not-installed.js")
    assert viewer.get("/vendor/plotly.min.js")[2] == full.read_bytes()


@pytest.mark.skipif(not (ROOT / "render/viewer/package-lock.json").is_file(), reason="no npm lock file")
def test_ci_installs_the_basic_bundle_the_lock_file_pins() -> None:
    from render.viewer.app import PLOTLY_BASIC

    lock = json.loads((ROOT / "render/viewer/package-lock.json").read_text())
    version = lock["packages"]["node_modules/plotly.js-basic-dist-min"]["version"]
    if not PLOTLY_BASIC.is_file():
        pytest.skip("npm ci --prefix render/viewer has not run in this checkout")
    assert f"plotly.js (basic - minified) v{version}" in PLOTLY_BASIC.read_text()[:200]
