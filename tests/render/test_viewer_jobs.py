"""Render jobs and the video gallery over real HTTP: a uvicorn server in a thread over a copy of the sample run
(without its checkpoints: ``overlay=full`` must fail with the renderer's own message), the real renderer in a
subprocess, videos decoded back with PyAV."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import served
from helpers import FAST, ROOT, compose_config, decode_video

import render
from render import RenderSource, render_still
from render.config import OverlayConfig
from render.viewer import RunCatalogue
from render.viewer.errors import QueueFullError
from render.viewer.jobs import JobQueue
from render.viewer.render_request import RenderRequest
from replay import TrajectoryLog
from replay.run_folder import RunFolder
from replay.train import train
from replay.train.rebuild import Rebuilder

SAMPLE = ROOT / "data" / "sample" / "breakout"
EPISODE = 15  # a short finished training episode of the sample run: 118 steps,
EPISODE_FRAMES = 119  # so 119 frames, the reset frame first


class Server(served.Server):
    """The viewer with a render queue of the test's."""

    def __init__(self, folders: list[Path], jobs: JobQueue) -> None:
        super().__init__(folders, jobs=jobs)
        self.jobs = jobs

    def submit(self, run_id: str, body: object, status: int = 202) -> dict:
        return self.call("POST", f"/api/runs/{run_id}/jobs", body, status)  # type: ignore[return-value]

    def wait(self, job_id: str, until: set[str], timeout: float = 240) -> dict:
        deadline = time.monotonic() + timeout
        while (job := self.call("GET", f"/api/jobs/{job_id}"))["state"] not in until:
            assert time.monotonic() < deadline, job
            time.sleep(0.1)
        return job

    def stop(self) -> None:
        self.jobs.close()
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A runs folder: ``breakout``, the sample run without checkpoints, and ``garbage``, whose log is not HDF5."""
    folder = tmp_path_factory.mktemp("runs")
    shutil.copytree(SAMPLE, folder / "breakout", ignore=shutil.ignore_patterns("checkpoints"))
    (folder / "garbage").mkdir()
    (folder / "garbage" / "trajectories.h5").write_bytes(b"not a log\n" * 100)
    return folder


@pytest.fixture(scope="module")
def viewer(runs: Path) -> Iterator[Server]:
    server = Server([runs], JobQueue())
    yield server
    server.stop()


def _run_id(runs: Path, name: str) -> str:
    return next(entry.id for entry in RunCatalogue([runs]).scan() if entry.path.name == name)


@pytest.fixture(scope="module")
def run_id(runs: Path) -> str:
    return _run_id(runs, "breakout")


def _videos(runs: Path) -> list[str]:
    folder = runs / "breakout" / "videos"
    return sorted(os.listdir(folder)) if folder.is_dir() else []


@pytest.mark.parametrize(
    ("body", "names"),
    [
        (b"{not json", ["not JSON"]),
        ([1, 2], ["JSON object"]),
        ({}, ["product=None", "episode, timelapse, progression"]),
        ({"product": "film"}, ["'film'", "episode, timelapse, progression"]),
        ({"product": "episode", "overlay": "neon"}, ["'neon'", "raw, minimal, full"]),
        ({"product": "episode", "episode": 2194}, ["episode 2194", "0..2193", "best"]),
        ({"product": "episode", "episode": -1}, ["episode -1", "0..2193"]),
        ({"product": "episode", "episode": "12"}, ["episode '12'", "0..2193"]),
        ({"product": "episode", "episode": True}, ["episode True"]),
        ({"product": "episode", "duration": 10}, ["'duration'", "product, overlay, episode and checkpoint"]),
        ({"product": "episode", "overlay": "raw", "checkpoint": "exact"}, ["checkpoint='exact'", "overlay='full'"]),
        ({"product": "episode", "overlay": "full", "checkpoint": "latest"}, ["'latest'", "nearest, exact"]),
        ({"product": "timelapse", "duration": 0}, ["duration=0", "1..600"]),
        ({"product": "timelapse", "duration": 1e9}, ["duration=1000000000.0", "1..600"]),
        ({"product": "timelapse", "duration": "60"}, ["duration='60'"]),
        ({"product": "progression", "layout": "mosaic"}, ["'mosaic'", "sequential, side_by_side, grid"]),
        ({"product": "progression", "layout": "grid", "episode": 3}, ["'episode'", "layout"]),
    ],
)
def test_a_bad_job_is_refused_with_what_is_valid(viewer: Server, run_id: str, body: object, names: list[str]) -> None:
    before = [job["id"] for job in viewer.call("GET", "/api/jobs")]
    message = viewer.submit(run_id, body, 400)["error"]
    assert all(name in message for name in names), message
    assert [job["id"] for job in viewer.call("GET", "/api/jobs")] == before


def test_unknown_runs_jobs_and_unreadable_runs_are_refused(viewer: Server, runs: Path, run_id: str) -> None:
    body = {"product": "episode", "overlay": "raw"}
    assert run_id in viewer.call("POST", "/api/runs/nope/jobs", body, status=404)["error"]
    garbage = _run_id(runs, "garbage")
    assert "cannot be read" in viewer.call("POST", f"/api/runs/{garbage}/jobs", body, status=422)["error"]
    for method in ("GET", "DELETE"):
        assert "no render job '0123456789ab'" in viewer.call(method, "/api/jobs/0123456789ab", status=404)["error"]
        assert "no render job '..'" in viewer.call(method, "/api/jobs/..", status=404)["error"]


@pytest.fixture
def gallery(runs: Path) -> Iterator[Path]:
    """Two fake videos in the run's videos folder, one with a sidecar, and a file beside the folder."""
    folder = runs / "breakout" / "videos"
    folder.mkdir(exist_ok=True)
    (folder / "old.mp4").write_bytes(b"old video")
    os.utime(folder / "old.mp4", (1_000_000_000, 1_000_000_000))
    (folder / "clip.v2.mp4").write_bytes(bytes(range(256)) * 40)
    (folder / "clip.v2.mp4.json").write_text(json.dumps({"product": "episode", "frames": 3}))
    (folder / ".clip.mp4.1234abcd.part.mp4").write_bytes(b"a render in progress")
    (folder / "notes.txt").write_text("not a video")
    (folder / "escape.mp4").symlink_to(runs / "breakout" / "config.yaml")
    yield folder
    shutil.rmtree(folder)


def test_the_gallery_lists_videos_with_provenance_and_serves_byte_ranges(
    viewer: Server, gallery: Path, run_id: str
) -> None:
    videos = viewer.call("GET", f"/api/runs/{run_id}/videos")
    assert [v["name"] for v in videos] == ["clip.v2.mp4", "old.mp4"]  # newest first; no hidden, link or non-video
    clip, old = videos
    assert clip["provenance"] == {"product": "episode", "frames": 3} and clip["error"] is None
    assert clip["size"] == 10240 and clip["url"] == f"/api/runs/{run_id}/videos/clip.v2.mp4"
    assert old["provenance"] is None and "no sidecar old.mp4.json" in old["error"] and old["created"] == 1e9
    whole = viewer.request("GET", clip["url"])
    assert whole.status == 200 and whole.getheader("content-type") == "video/mp4"
    assert whole.getheader("accept-ranges") == "bytes" and whole.getheader("content-disposition") is None
    part = viewer.request("GET", clip["url"], headers={"Range": "bytes=1000-1999"})
    assert part.status == 206 and part.body == (bytes(range(256)) * 40)[1000:2000]  # type: ignore[attr-defined]
    assert part.getheader("content-range") == "bytes 1000-1999/10240"
    download = viewer.request("GET", clip["url"] + "?download=1")
    assert download.getheader("content-disposition") == 'attachment; filename="clip.v2.mp4"'
    deleted = viewer.call("DELETE", clip["url"])
    assert deleted["name"] == "clip.v2.mp4" and not (gallery / "clip.v2.mp4").exists()
    assert not (gallery / "clip.v2.mp4.json").exists()
    assert "its videos are: old.mp4" in viewer.call("GET", clip["url"], status=404)["error"]
    assert viewer.call("GET", "/api/runs/nope/videos", status=404)["error"].startswith("no run 'nope'")


@pytest.mark.parametrize(
    "name",
    [
        "..%2Fconfig.yaml",
        "..%2F..%2F..%2Fetc%2Fpasswd",
        "%2e%2e%2fconfig.yaml",
        "..",
        "%2e%2e",
        "..%5Cconfig.yaml",
        "%2Fetc%2Fpasswd",
        "old.mp4%2F..%2F..%2Fconfig.yaml",
        "escape.mp4",
        ".clip.mp4.1234abcd.part.mp4",
        "clip..mp4",
        "notes.txt",
        "old.mp4.json",
        "old.mp4%00.txt",
        "a" * 300 + ".mp4",
    ],
)
@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_no_video_name_reaches_outside_the_videos(
    viewer: Server, gallery: Path, run_id: str, name: str, method: str
) -> None:
    response = viewer.request(method, f"/api/runs/{run_id}/videos/{name}")
    body = response.body  # type: ignore[attr-defined]
    assert response.status in (400, 404), (response.status, body[:200])
    assert body == b"Not Found" or set(json.loads(body)) == {"error"}, body[:200]
    assert sorted(os.listdir(gallery)) == [
        ".clip.mp4.1234abcd.part.mp4", "clip.v2.mp4", "clip.v2.mp4.json", "escape.mp4", "notes.txt", "old.mp4",
    ]  # fmt: skip
    assert (gallery.parent / "config.yaml").is_file()


@pytest.mark.parametrize(
    "path",
    ["/api/runs/../../etc/passwd/videos", "/api/runs/..%2F..%2Fetc/videos", "/api/runs/%2e%2e/videos/old.mp4"],
)
def test_no_run_path_reaches_outside_the_runs(viewer: Server, gallery: Path, path: str) -> None:
    response = viewer.request("GET", path)
    assert response.status == 404 and b"root:" not in response.body  # type: ignore[attr-defined]


@pytest.mark.slow
def test_an_episode_job_renders_the_episode_with_progress(viewer: Server, runs: Path, run_id: str) -> None:
    job = viewer.submit(run_id, {"product": "episode", "overlay": "raw", "episode": EPISODE})
    assert job["state"] in ("queued", "running") and job["params"] == {"overlay": "raw", "episode": EPISODE}
    seen = []
    deadline = time.monotonic() + 240
    while (job := viewer.call("GET", f"/api/jobs/{job['id']}"))["state"] in ("queued", "running"):
        seen.append((job["frames"], job["progress"]))
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
    assert job["state"] == "done", job
    assert job["error"] is None and job["progress"] == 1.0 and job["frames"] == job["total"] == EPISODE_FRAMES
    assert any(0 < progress < 1 for _, progress in seen), seen  # the bar was followed
    assert [p for _, p in seen] == sorted(p for _, p in seen)
    frames = decode_video(runs / "breakout" / "videos" / job["video"])
    assert len(frames) == EPISODE_FRAMES and frames[0].shape == (840, 640, 3)
    [video] = [v for v in viewer.call("GET", f"/api/runs/{run_id}/videos") if v["name"] == job["video"]]
    assert video["provenance"]["episodes"][0]["index"] == EPISODE and video["provenance"]["overlay"] == "raw"
    assert video["provenance"]["frames"] == EPISODE_FRAMES
    assert viewer.call("GET", "/api/jobs")[0]["id"] == job["id"]
    assert viewer.call("DELETE", f"/api/jobs/{job['id']}")["state"] == "done"  # forgotten, the video kept
    assert job["id"] not in [j["id"] for j in viewer.call("GET", "/api/jobs")]
    viewer.call("DELETE", video["url"])
    assert _videos(runs) == []


@pytest.mark.slow
def test_a_full_overlay_without_checkpoints_fails_with_the_renderers_message(
    viewer: Server, runs: Path, run_id: str
) -> None:
    job = viewer.submit(run_id, {"product": "episode", "overlay": "full", "episode": EPISODE})
    job = viewer.wait(job["id"], {"done", "failed", "cancelled"})
    assert job["state"] == "failed" and "overlay=full needs the network that played" in job["error"], job
    assert job["video"] is None and _videos(runs) == []


@pytest.fixture(scope="module")
def tiny(runs: Path) -> str:
    """A short run trained here, in the viewer's runs folder: its learning rebuilds exactly on this machine."""
    train(compose_config([*FAST, "total_steps=1536", "seed=5", f"run_dir={runs / 'tiny'}"]))
    return _run_id(runs, "tiny")


@pytest.mark.slow
def test_an_exact_job_rebuilds_the_versions_that_played_and_shows_the_rebuild(
    viewer: Server, runs: Path, tiny: str
) -> None:
    with TrajectoryLog(runs / "tiny" / "trajectories.h5") as log:
        saved = {int(p.stem[1:]) for p in (runs / "tiny" / "checkpoints").glob("v*.pt")}
        episode = next(
            e for e in log.episodes if e.tag == "train" and e.finished and not set(e.policy_versions) & saved
        )
    body = {"product": "episode", "overlay": "full", "episode": episode.index, "checkpoint": "exact"}
    job = viewer.submit(tiny, body)
    assert job["params"] == {"overlay": "full", "episode": episode.index, "checkpoint": "exact"}
    job = viewer.wait(job["id"], {"done", "failed", "cancelled"}, timeout=600)
    assert job["state"] == "done", job
    rebuilt = job["rebuilding"]
    assert rebuilt["updates"] == rebuilt["total"] > 0 and rebuilt["versions"].startswith("v0.."), rebuilt
    assert "-full-exact-" in job["video"]
    sidecar = json.loads((runs / "tiny" / "videos" / f"{job['video']}.json").read_text())
    assert sidecar["exact"] == {"fallback": None, "brief": None}
    played = set(episode.policy_versions)
    assert {name: lag for name, lag in sidecar["checkpoints"].items()} == {f"rebuilt/v{v:06d}.pt": 0 for v in played}
    assert len(decode_video(runs / "tiny" / "videos" / job["video"])) == episode.length + 1


@pytest.mark.slow
def test_the_episode_player_shows_the_versions_rebuilt_already(viewer: Server, runs: Path, tiny: str) -> None:
    """Frames and readings come from the rebuilt versions once they are on disk (an exact job made them), from
    the nearest checkpoints before, and the player notices the change while the viewer runs."""
    run = runs / "tiny"
    shutil.rmtree(RunFolder(run).rebuilt, ignore_errors=True)  # as before any exact render
    with TrajectoryLog(RunFolder(run).log) as log:
        saved = set(RunFolder(run).checkpoint_versions())
        episode = next(
            e for e in log.episodes if e.tag == "train" and e.finished and not set(e.policy_versions) & saved
        )
    step, full = episode.length // 2, OverlayConfig(kind="full")
    path = f"/api/runs/{tiny}/episodes/{episode.index}"

    def shown(rebuilt: str) -> tuple[list[dict], np.ndarray]:
        response = viewer.request("GET", f"{path}/frames/{step}.png?overlay=full")
        assert response.status == 200, response.body[:500]
        assert response.getheader("X-Rebuilt-Versions") == rebuilt  # what the page compares with the readings'
        raw = np.frombuffer(response.body, np.uint8)
        image = cv2.cvtColor(cv2.imdecode(raw, cv2.IMREAD_UNCHANGED), cv2.COLOR_BGR2RGB)
        readings = viewer.call("GET", f"{path}/readings")
        assert ",".join(map(str, readings["rebuilt"])) == rebuilt
        return readings["frames"], image

    frames, image = shown("")
    nearest = render_still(
        RenderSource.resolve(run=run, log=None, checkpoint=None), episode=episode.index, step=step, overlay=full
    )
    assert np.array_equal(image, nearest)
    assert all(f["checkpoint_version"] < f["policy_version"] for f in frames)

    Rebuilder(run, progress=False).prepare(episode.policy_versions)
    frames, image = shown(",".join(map(str, sorted(set(episode.policy_versions)))))
    exact = render_still(
        RenderSource.resolve(run=run, log=None, checkpoint="exact"), episode=episode.index, step=step, overlay=full
    )
    assert np.array_equal(image, exact) and not np.array_equal(exact, nearest)
    explained = list(render.explain(run, episode.index, checkpoint="exact"))
    for frame, want in zip(frames, explained, strict=True):
        assert frame["checkpoint_version"] == frame["policy_version"] == want.checkpoint_version
        assert frame["probabilities"] == [float(p) for p in want.probabilities]
        assert frame["value"] == float(want.value)


@pytest.mark.slow
def test_a_cancelled_job_stops_and_leaves_no_video(viewer: Server, runs: Path, run_id: str) -> None:
    body = {"product": "timelapse", "overlay": "raw", "duration": 60}
    job = viewer.submit(run_id, body)
    queued = viewer.submit(run_id, {"product": "progression", "overlay": "raw"})
    assert viewer.call("GET", f"/api/jobs/{queued['id']}")["state"] == "queued"  # one runs at a time
    deadline = time.monotonic() + 240
    while (job := viewer.call("GET", f"/api/jobs/{job['id']}"))["frames"] < 10:
        assert job["state"] == "running" and time.monotonic() < deadline, job
        time.sleep(0.1)
    assert 0 < job["progress"] < 1 and job["total"] > 1000
    [temporary] = _videos(runs)  # the encoder writes a hidden file, moved into place only when complete
    assert temporary.startswith(".timelapse-60s-raw-") and f"-{job['id']}.mp4." in temporary, temporary
    assert temporary.endswith(".part.mp4")
    assert viewer.call("GET", f"/api/runs/{run_id}/videos") == []
    assert viewer.call("DELETE", f"/api/jobs/{queued['id']}")["state"] == "cancelled"
    started = time.monotonic()
    cancelled = viewer.call("DELETE", f"/api/jobs/{job['id']}")
    assert cancelled["state"] == "cancelled" and cancelled["video"] is None and cancelled["error"] is None
    assert time.monotonic() - started < 10
    assert _videos(runs) == []  # neither the video nor the encoder's temporary file
    assert [j["state"] for j in viewer.call("GET", "/api/jobs")][:2] == ["cancelled", "cancelled"]


@pytest.mark.slow
def test_the_queue_is_bounded_and_close_stops_every_job(runs: Path, run_id: str) -> None:
    server = Server([runs], JobQueue(max_running=1, max_waiting=2))
    try:
        body = {"product": "timelapse", "overlay": "raw", "duration": 30}
        ids = [server.submit(run_id, body)["id"] for _ in range(3)]
        message = server.submit(run_id, body, 503)["error"]
        assert "2 render jobs are waiting already (at most 2)" in message
        assert [j["state"] for j in server.call("GET", "/api/jobs")] == ["queued", "queued", "running"]
        server.wait(ids[0], {"running"})
        time.sleep(1.0)  # the renderer is importing or rendering: close must stop it either way
    finally:
        server.stop()
    assert [j["state"] for j in server.jobs.records()] == ["cancelled"] * 3
    assert "shutting down" in _refused(server.jobs, runs)
    assert _videos(runs) == []


def _refused(jobs: JobQueue, runs: Path) -> str:
    [entry] = [e for e in RunCatalogue([runs]).scan() if e.path.name == "breakout"]
    with pytest.raises(QueueFullError) as refused:
        jobs.submit(entry, RenderRequest("episode", "raw", EPISODE))
    return str(refused.value)
