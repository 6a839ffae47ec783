"""Training from the viewer over real HTTP: a uvicorn server in a thread with the training routes, starting the
real ``python -m replay.train`` into a runs folder under ``tmp_path``, watching it live, stopping it as Ctrl-C
does, verifying its log and resuming it; and the requests it refuses."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from served import Server

from render.config import VideoConfig
from render.draw.compose import upscale_nearest
from render.viewer.training import TrainingManager, choose_destination
from replay import TrajectoryLog, verify

# A run that ends episodes every few seconds and trains until stopped: 2 envs, 32-step rollouts, 100-step
# episodes, no evaluation, a flush every 0.2 s.
TINY = {
    "ppo.num_envs": 2,
    "ppo.num_steps": 32,
    "ppo.num_minibatches": 1,
    "ppo.update_epochs": 1,
    "env.max_episode_frames": 400,
    "eval.episodes": 0,
    "checkpoint.milestones": 1,
    "record.flush_seconds": 0.2,
}
TIMEOUT = 180


def _until(check: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def viewer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    runs = tmp_path_factory.mktemp("runs")
    server = Server([runs], training=TrainingManager([runs], stop_seconds=60))
    yield server
    server.stop()


@pytest.mark.parametrize(
    ("body", "status", "named"),
    [
        ({"game": "Brekout", "total_steps": 1000, "seed": 1}, 400, "did you mean Breakout"),
        ({"game": "ALE/Breakout-v4", "total_steps": 1000, "seed": 1}, 400, "the 104 games are"),
        ({"game": "Breakout", "total_steps": 0, "seed": 1}, 400, "total_steps to be an integer in 1.."),
        ({"game": "Breakout", "total_steps": True, "seed": 1}, 400, "total_steps"),
        ({"game": "Breakout", "total_steps": "1000", "seed": 1}, 400, "total_steps"),
        ({"game": "Breakout", "total_steps": 1000, "seed": -1}, 400, "seed to be an integer in 0.."),
        ({"game": "Breakout", "total_steps": 1000}, 400, "missing seed"),
        ({"game": "Breakout", "total_steps": 1000, "seed": 1, "gpu": 1}, 400, "unknown gpu"),
        ({"game": "Breakout", "total_steps": 1000, "seed": 1, "settings": {"run_dir": "/"}}, 400, "unknown setting"),
        ({"game": "Breakout", "total_steps": 1000, "seed": 1, "settings": {"ppo.num_envs": "2,3"}}, 400, "an integer"),
        ({"game": "Breakout", "total_steps": 1000, "seed": 1, "settings": {"device": "${oc.env:HOME}"}}, 400, "a word"),
        ({"game": "Breakout", "total_steps": 1000, "seed": 1, "settings": {"ppo.num_envs": 0}}, 400, "ppo.num_envs >="),
        (b"game=Breakout", 400, "not JSON"),
        ([1, 2], 400, "expected a JSON object"),
    ],
)
def test_a_start_the_trainer_cannot_use_is_refused_with_what_is_valid(
    viewer: Server, body: object, status: int, named: str
) -> None:
    answer = viewer.call("POST", "/api/training", body, status=status)
    assert named in answer["error"], answer
    assert viewer.call("GET", "/api/training") == []  # nothing started
    assert not list(viewer.training.destination.iterdir())  # and no run folder made


def test_unknown_trainers_and_runs_are_404_and_games_are_listed(viewer: Server, tmp_path: Path) -> None:
    assert "no trainer '7'" in viewer.call("POST", "/api/training/7/stop", status=404)["error"]
    assert "no trainer 'x'" in viewer.call("GET", "/api/training/x", status=404)["error"]
    assert "no run 'nope'" in viewer.call("POST", "/api/runs/nope/resume", status=404)["error"]
    games = viewer.call("GET", "/api/training/games")
    assert {"game": "Breakout", "env_id": "ALE/Breakout-v5"} in games and len(games) == 104


def test_resuming_a_folder_without_a_config_is_refused(viewer: Server) -> None:
    (viewer.training.destination / "notes").mkdir()
    run_id = next(r["id"] for r in viewer.call("GET", "/api/runs") if r["path"].endswith("notes"))
    answer = viewer.call("POST", f"/api/runs/{run_id}/resume", status=422)
    assert "has no config.yaml" in answer["error"]
    (viewer.training.destination / "notes").rmdir()


def test_new_runs_go_to_data_runs_or_the_first_writable_folder(tmp_path: Path) -> None:
    run = tmp_path / "a-run"
    run.mkdir()
    (run / "trajectories.h5").write_bytes(b"")
    assert choose_destination([run, tmp_path / "new" / "runs"]) == tmp_path / "new" / "runs"
    (tmp_path / "file").write_text("")
    assert choose_destination([tmp_path / "file" / "runs", tmp_path]) == tmp_path  # cannot be made
    assert choose_destination([Path("data/sample"), Path("data/runs")]) == Path("data/runs")
    assert choose_destination([run]) is None


def _run(viewer: Server, run_id: str) -> dict[str, Any]:
    return next(r for r in viewer.call("GET", "/api/runs") if r["id"] == run_id)


def _finished(viewer: Server, run_id: str) -> list[dict[str, Any]]:
    status, _, body = viewer.get(f"/api/runs/{run_id}/episodes")
    return [e for e in json.loads(body) if e["finished"]] if status == 200 else []


@pytest.mark.slow
def test_a_run_started_from_the_viewer_is_live_stops_whole_and_resumes(viewer: Server) -> None:
    body = {"game": "breakout", "total_steps": 1_000_000, "seed": 5, "settings": TINY}
    started = viewer.call("POST", "/api/training", body, status=202)
    run_dir = Path(started["run_dir"])
    assert started["state"] == "running" and run_dir.parent == viewer.training.destination.resolve()
    assert "env.id=ALE/Breakout-v5" in started["command"] and f"run_dir={run_dir}" in started["command"]
    run_id = started["run_id"]

    # Live: listed with live=true, episodes appearing while the trainer writes, the newest one's frames served, and
    # the list still growing while the viewer holds the log open for those frames (HDF5 shares one view per process).
    _until(lambda: _run(viewer, run_id)["live"] and len(_finished(viewer, run_id)) >= 2, "two finished episodes")
    for _ in range(2):
        first = len(_finished(viewer, run_id))
        newest = _until(lambda n=first: _finished(viewer, run_id)[n:], "the episode list to grow")[-1]
        step = newest["length"]
        status, kind, png = viewer.get(f"/api/runs/{run_id}/episodes/{newest['index']}/frames/{step}.png?overlay=raw")
        assert (status, kind) == (200, "image/png"), png[:500]
        with TrajectoryLog(run_dir / "trajectories.h5") as log:  # read while the trainer writes it
            recorded = list(log.frames(newest["index"]))
        picture = cv2.cvtColor(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        assert np.array_equal(picture, upscale_nearest(recorded[step], VideoConfig().scale))
    assert _run(viewer, run_id)["live"]
    assert "being trained now" in viewer.call("POST", f"/api/runs/{run_id}/resume", status=409)["error"]

    # Stop: SIGINT, exit 130, the log whole and verified, no longer live.
    stopping = viewer.call("POST", f"/api/training/{started['id']}/stop", status=202)
    assert stopping["state"] == "stopping"
    stopped = _until(lambda: (r := viewer.call("GET", f"/api/training/{started['id']}"))["state"] != "stopping" and r,
                     "the trainer to stop")  # fmt: skip
    assert (stopped["state"], stopped["returncode"]) == ("stopped", 130), stopped["output"]
    assert any("the log is whole" in line for line in stopped["output"]), stopped["output"]
    assert "already ended" in viewer.call("POST", f"/api/training/{started['id']}/stop", status=409)["error"]
    assert not _run(viewer, run_id)["live"]
    report = verify(run_dir / "trajectories.h5", progress=False)
    assert report.ok and report.episodes >= first + 1, report

    # Resume: a new trainer with resume=<run_dir>, live again, and stopped by the viewer's shutdown.
    resumed = viewer.call("POST", f"/api/runs/{run_id}/resume", status=202)
    assert resumed["resumed"] and f"resume={run_dir}" in resumed["command"] and resumed["run_id"] == run_id
    assert "being trained now" in viewer.call("POST", f"/api/runs/{run_id}/resume", status=409)["error"]
    before = len(_finished(viewer, run_id))
    _until(lambda: _run(viewer, run_id)["live"] and len(_finished(viewer, run_id)) > before, "resumed episodes")
    viewer.training.close()
    closed = viewer.call("GET", f"/api/training/{resumed['id']}")
    assert (closed["state"], closed["returncode"]) == ("stopped", 130), closed["output"]
    assert [r["state"] for r in viewer.call("GET", "/api/training")] == ["stopped", "stopped"]
    assert verify(run_dir / "trajectories.h5", progress=False).ok
    assert "shutting down" in viewer.call("POST", "/api/training", body, status=409)["error"]
