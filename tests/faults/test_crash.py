"""A recording process killed with SIGKILL leaves a log whose flushed episodes all replay exactly."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time

import ale_py
import gymnasium as gym
import h5py
import pytest

from replay import RecordingError, RecordTrajectory, TrajectoryLog, TrajectoryWriter, storage, verify
from replay import log_format as fmt

gym.register_envs(ale_py)

RECORDER = textwrap.dedent(
    """
    import sys, numpy as np, gymnasium as gym, ale_py
    from replay import RecordVectorTrajectory
    gym.register_envs(ale_py)
    envs = gym.vector.SyncVectorEnv([lambda: gym.make("ALE/Breakout-v5")] * 2)
    envs = RecordVectorTrajectory(envs, sys.argv[1], flush_seconds=0.3, snapshot_interval=200)
    rng = np.random.default_rng(0)
    envs.reset(seed=3)
    print("recording", flush=True)
    while True:
        envs.step(rng.integers(4, size=2))
    """
)


def _record_then_kill(path, seconds):
    process = subprocess.Popen([sys.executable, "-c", RECORDER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "recording"
        time.sleep(seconds)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()


@pytest.mark.slow  # fault injection with real processes; runs in CI's slow suite
def test_sigkill_mid_recording_loses_only_the_unflushed_tail(tmp_path):
    path = tmp_path / "killed.h5"
    _record_then_kill(path, 4.0)
    with TrajectoryLog(path) as log:
        assert len(log.episodes) >= 4, "several episodes should have been flushed in 4 s"
    report = verify(path, progress=False)
    assert report.ok, str(report)


def _lanes_running_on_disk(path):
    """Lanes whose latest flushed reset began an episode the episodes table does not hold yet (raw h5py reads)."""
    with storage.open_for_reading(path) as handle:
        resets = handle[fmt.GROUP_STREAMS][fmt.stream_name(0)][fmt.DATASET_RESETS][:]
        listed = handle[fmt.DATASET_EPISODES][:]
    running = 0
    for lane in (0, 1):
        last_reset = resets["position"][resets["lane"] == lane].max()
        running += bool(last_reset not in listed["start"][listed["lane"] == lane])
    return running


@pytest.mark.slow  # fault injection with real processes; runs in CI's slow suite
def test_episodes_in_flight_at_the_kill_are_listed_and_replay(tmp_path):
    # An episode is in flight on disk once its reset was flushed. Flushes happen at full positions, episode ends
    # among them, so a kill can land when a lane's next reset has not reached the file yet: then try again, so
    # that in-flight episodes are really exercised.
    for attempt in range(4):
        path = tmp_path / f"killed-{attempt}.h5"
        _record_then_kill(path, 2.0)
        running = _lanes_running_on_disk(path)
        if running == 2:
            break
    with TrajectoryLog(path) as log:
        in_flight = [e for e in log.episodes if math.isnan(e.total_reward)]
        assert len(in_flight) == running >= 1, "every episode running on disk when the process died is listed"
        assert all(not e.finished and e.index >= len(log.episodes) - running for e in in_flight)
        for episode in in_flight:
            assert len(list(log.frames(episode.index))) == episode.length + 1
    assert verify(path, progress=False).ok


def _episode_rows(path):
    with storage.open_for_reading(path) as handle:
        return handle[fmt.DATASET_EPISODES][:].tobytes()


@pytest.mark.slow  # in the slow suite, for the fast suite's 5 minutes on the slower machines
def test_a_killed_writers_log_takes_new_recordings_and_keeps_every_byte(tmp_path):
    path = tmp_path / "killed.h5"
    _record_then_kill(path, 2.0)
    before = _episode_rows(path)
    with pytest.raises(OSError, match="already open for write"):
        h5py.File(path, "r", locking=False).close()  # SWMR flags left set: an ordinary open refuses
    env = gym.make("ALE/Breakout-v5", repeat_action_probability=0.0)  # the same game, other settings
    with RecordTrajectory(env, path, snapshot_interval=50) as recorder:  # recovers the file, then appends
        recorder.reset(seed=1)
        for _ in range(120):
            recorder.step(recorder.action_space.sample())
    assert _episode_rows(path)[: len(before)] == before, "recovery changed what was recorded"
    with h5py.File(path, "r", locking=False) as handle:  # closed cleanly: any HDF5 reader opens it again
        assert len(handle[fmt.GROUP_STREAMS]) == 2
    with TrajectoryLog(path) as log:
        assert [s.env_id for s in log.streams] == ["ALE/Breakout-v5", "ALE/Breakout-v5"]
        assert [json.loads(s.spec_json)["kwargs"].get("repeat_action_probability") for s in log.streams] == [0.25, 0.0]
    assert verify(path, progress=False).ok


def test_a_second_writer_on_a_live_log_is_refused(tmp_path):
    path = tmp_path / "live.h5"
    env = gym.make("ALE/Breakout-v5")
    with RecordTrajectory(env, path) as recorder:
        recorder.reset(seed=0)
        with pytest.raises(RecordingError, match=r"another process is recording to this log"):
            TrajectoryWriter(path)
        recorder.step(0)
    with TrajectoryLog(path) as log:
        assert len(log.episodes) == 1


@pytest.mark.slow  # in the slow suite, for the fast suite's 5 minutes on the slower machines
def test_a_closed_log_is_compacted_and_its_lock_file_removed(tmp_path):
    path = tmp_path / "flushy.h5"
    env = RecordTrajectory(gym.make("ALE/Breakout-v5"), path, flush_seconds=0.001, sync_interval=4)
    env.reset(seed=0)
    for _ in range(3000):  # a flush per step: each rewrites the compressed tail chunks elsewhere in the file
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    grown = path.stat().st_size
    env.close()
    assert not (tmp_path / "flushy.h5.lock").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["flushy.h5"], "no temporary file is left behind"
    assert path.stat().st_size < grown / 3, (path.stat().st_size, grown)
    assert storage.wasted_bytes(path) < 64 << 10
    assert verify(path, progress=False).ok


def test_flushes_stay_on_time_when_checks_are_rare(tmp_path):
    """Quiet positions skip the flush deadline check; a full position still comes at least every 256."""
    path = tmp_path / "rare.h5"
    env = RecordTrajectory(
        gym.make("ALE/Pong-v5"), path, sync_interval=10**9, snapshot_interval=10**9, flush_seconds=0.05
    )
    env.reset(seed=0)
    for _ in range(900):
        _, _, terminated, truncated, _ = env.step(0)
        if terminated or truncated:
            env.reset()
        time.sleep(0.001)  # >= 0.9 s of recording: many flush deadlines pass
    with storage.open_for_reading(path) as handle:
        on_disk = handle[fmt.GROUP_STREAMS][fmt.stream_name(0)][fmt.DATASET_ACTIONS].shape[1]
    env.close()
    assert on_disk >= 900 - 256 - 60, on_disk


def _contents(path):
    """Every dataset's bytes and every attribute of a log, by name."""
    found = {}
    with storage.open_for_reading(path) as handle:
        found["/"] = sorted((k, str(v)) for k, v in handle.attrs.items())

        def visit(name, item):
            found[name] = sorted((k, str(v)) for k, v in item.attrs.items())
            if isinstance(item, h5py.Dataset):
                found[name + ":data"] = item[()].tobytes()

        handle.visititems(visit)
    return found


def test_rewriting_a_killed_writers_log_keeps_every_dataset_byte_and_attribute(tmp_path):
    path = tmp_path / "killed.h5"
    _record_then_kill(path, 1.5)
    before = _contents(path)
    storage.rewrite(path)  # what recovery and compaction do
    assert _contents(path) == before
    h5py.File(path, "r", locking=False).close()  # and it is a clean file again
