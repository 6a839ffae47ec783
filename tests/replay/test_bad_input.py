"""Bad input gives a clear error naming the file, the value and the fix; the file itself is never changed."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys

import gymnasium as gym
import h5py
import numpy as np
import pytest
from helpers import PREPROCESSED, STICKY, make_env, record_single

from replay import (
    DesyncError,
    EnvironmentMismatchError,
    EpisodeIndexError,
    LogFormatError,
    RecordingError,
    RecordTrajectory,
    RecordVectorTrajectory,
    TrajectoryLog,
    verify,
)
from replay import log_format as fmt


@pytest.fixture(scope="module")
def good_log(tmp_path_factory):
    path = tmp_path_factory.mktemp("logs") / "good.h5"
    record_single(path, "Breakout", STICKY, 400, snapshot_interval=64, sync_interval=8)
    return path


def _copy(good_log, tmp_path, name="copy.h5"):
    target = tmp_path / name
    shutil.copy(good_log, target)
    return target


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_missing_file(tmp_path):
    with pytest.raises(LogFormatError, match=r"nope\.h5: no such file"):
        TrajectoryLog(tmp_path / "nope.h5")


def test_a_folder_is_refused_naming_the_log_inside(good_log, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(good_log, run / "trajectories.h5")
    with pytest.raises(LogFormatError, match=rf"run: a folder, not a log file; pass {run / 'trajectories.h5'}"):
        TrajectoryLog(run)
    with pytest.raises(LogFormatError, match=r"a folder, not a log file; pass the trajectory log file"):
        TrajectoryLog(tmp_path)


def test_not_hdf5(tmp_path):
    path = tmp_path / "trajectories.h5"
    path.write_text("hello")
    with pytest.raises(LogFormatError, match=r"trajectories\.h5: not an HDF5 file"):
        TrajectoryLog(path)


def test_hdf5_but_not_a_log(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as handle:
        handle["x"] = [1, 2, 3]
    with pytest.raises(LogFormatError, match=r"other\.h5: not an ale-replay trajectory log.*RecordTrajectory"):
        TrajectoryLog(path)


def test_newer_format_version(good_log, tmp_path):
    path = _copy(good_log, tmp_path)
    with h5py.File(path, "a") as handle:
        handle.attrs[fmt.ATTR_FORMAT_VERSION] = fmt.FORMAT_VERSION + 1
    before = _digest(path)
    with pytest.raises(LogFormatError, match=rf"format version {fmt.FORMAT_VERSION + 1} is newer.*upgrade"):
        TrajectoryLog(path)
    assert _digest(path) == before


def test_other_ale_py_version(good_log, tmp_path):
    path = _copy(good_log, tmp_path)
    with h5py.File(path, "a") as handle:
        handle.attrs[fmt.ATTR_ALE_PY_VERSION] = "0.7.0"
    with TrajectoryLog(path) as log:
        assert len(log.episodes) >= 1  # listing still works
        with pytest.raises(EnvironmentMismatchError, match=r"recorded with ale-py 0\.7\.0.*install ale-py==0\.7\.0"):
            next(log.frames(0))
    with TrajectoryLog(path, check_environment=False) as log:
        assert next(log.frames(0)).shape == (210, 160, 3)


def test_other_rom(good_log, tmp_path):
    path = _copy(good_log, tmp_path)
    with h5py.File(path, "a") as handle:
        handle[fmt.GROUP_STREAMS][fmt.stream_name(0)].attrs[fmt.ATTR_ROM_MD5] = "0" * 32
    with TrajectoryLog(path) as log, pytest.raises(EnvironmentMismatchError, match="ROM differs"):
        next(log.frames(0))


def test_truncated_file(good_log, tmp_path):
    path = tmp_path / "cut.h5"
    data = good_log.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(LogFormatError, match=r"cut\.h5: .*(truncated|damaged)"):
        with TrajectoryLog(path) as log:
            for episode in log.episodes:
                list(log.frames(episode.index))


def test_appending_another_game_is_refused_and_the_log_untouched(good_log, tmp_path):
    path = _copy(good_log, tmp_path)
    before = _digest(path)
    with pytest.raises(RecordingError, match=r"holds ALE/Breakout-v5 \(breakout, 4 actions\); ALE/Pong-v5"):
        RecordTrajectory(make_env("Pong", STICKY), path)
    assert _digest(path) == before
    with TrajectoryLog(good_log) as log:
        recorded = len(log.episodes)
    record_single(path, "Breakout", STICKY, 30, seed=5)  # the same game appends, and the lock was released
    with TrajectoryLog(path) as log:
        assert len(log.episodes) == recorded + 1 and len(log.streams) == 2
    shared = RecordTrajectory(make_env("Breakout", STICKY), tmp_path / "shared.h5")
    with pytest.raises(RecordingError, match="cannot be appended, as one log holds one game"):
        RecordTrajectory(make_env("Pong", STICKY), shared.writer, tag="eval")  # through an open writer too
    shared.close()


class _Unrecorded(gym.Wrapper):
    """A wrapper that does not record its constructor arguments: the env spec cannot rebuild it."""


@pytest.mark.parametrize("kind", ["single", "sync", "async"])
def test_a_wrapper_the_spec_cannot_rebuild_is_refused_before_the_file_is_made(tmp_path, kind):
    def make():
        return _Unrecorded(make_env("Pong", STICKY))

    path = tmp_path / "log.h5"
    message = r"wrapper _Unrecorded is not in the env spec with its arguments .* subclass gymnasium.utils.RecordConstr"
    if kind == "single":
        env = make()
        with pytest.raises(RecordingError, match=message):
            RecordTrajectory(env, path)
    else:
        vector = gym.vector.SyncVectorEnv if kind == "sync" else gym.vector.AsyncVectorEnv
        env = vector([make, make])
        with pytest.raises(RecordingError, match=message):
            RecordVectorTrajectory(env, path)
    env.close()
    assert not path.exists()


class _ElsewhereRecorded(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """A wrapper that records its arguments but lives outside gymnasium and replay: replay will not import it."""

    def __init__(self, env, strength=1):
        gym.utils.RecordConstructorArgs.__init__(self, strength=strength)
        gym.Wrapper.__init__(self, env)


def test_a_wrapper_replay_would_not_import_is_refused_before_the_file_is_made(tmp_path):
    env = _ElsewhereRecorded(make_env("Breakout", STICKY), strength=2)
    with pytest.raises(RecordingError, match=r"_ElsewhereRecorded \(test_bad_input:_ElsewhereRecorded\) would have"):
        RecordTrajectory(env, tmp_path / "log.h5")
    env.close()
    assert not (tmp_path / "log.h5").exists()


def test_a_time_limit_the_spec_would_move_is_refused_before_the_file_is_made(tmp_path):
    """An env spec keeps a TimeLimit as max_episode_steps, which gym.make applies to the base env: one above
    AtariPreprocessing would count frames at replay, not agent steps (such logs did not replay)."""
    outer = gym.wrappers.TimeLimit(make_env("Breakout", PREPROCESSED), 100)
    with pytest.raises(RecordingError, match="a TimeLimit above FrameStackObservation cannot be rebuilt"):
        RecordTrajectory(outer, tmp_path / "log.h5")
    twice = gym.wrappers.TimeLimit(gym.make("ALE/Breakout-v5", max_episode_steps=50), 100)
    with pytest.raises(RecordingError, match="2 TimeLimit wrappers are stacked"):
        RecordTrajectory(twice, tmp_path / "log.h5")
    assert not (tmp_path / "log.h5").exists()
    RecordTrajectory(gym.wrappers.TimeLimit(gym.make("ALE/Breakout-v5"), 100), tmp_path / "log.h5").close()


def test_episode_index_out_of_range(good_log):
    with TrajectoryLog(good_log) as log:
        n = len(log.episodes)
        with pytest.raises(EpisodeIndexError, match=rf"episode {n} is out of range; the log has {n} episodes"):
            log.frames(n)
        length = log.episodes[0].length
        with pytest.raises(EpisodeIndexError, match=rf"outside episode 0, whose steps are 0..{length} \(the reset"):
            log.replay(0, start=0, stop=10**9)
        with pytest.raises(EpisodeIndexError, match=r"start=5 is after stop=2"):
            log.replay(0, start=5, stop=2)
        with pytest.raises(EpisodeIndexError, match=r"start=1.5 must be a whole step number"):
            log.replay(0, start=1.5)
    with pytest.raises(LogFormatError, match="this TrajectoryLog is closed; open it again"):
        log.frames(0)


def test_hostile_entry_point_is_refused(good_log, tmp_path):
    path = _copy(good_log, tmp_path)
    with h5py.File(path, "a") as handle:
        attrs = handle[fmt.GROUP_STREAMS][fmt.stream_name(0)].attrs
        spec = json.loads(attrs[fmt.ATTR_SPEC_JSON])
        spec["entry_point"] = "os:system"
        attrs[fmt.ATTR_SPEC_JSON] = json.dumps(spec)
    with TrajectoryLog(path) as log, pytest.raises(LogFormatError, match=r"'os:system'.*refusing"):
        next(log.frames(0))


def test_tampered_action_is_reported_with_episode_and_step(good_log, tmp_path):
    path = _copy(good_log, tmp_path)
    with TrajectoryLog(path) as log:
        episode = max(log.episodes, key=lambda e: e.length)
    tampered = episode.start_step + episode.length // 2
    with h5py.File(path, "a") as handle:
        actions = handle[fmt.GROUP_STREAMS][fmt.stream_name(0)][fmt.DATASET_ACTIONS]
        original = int(actions[0, tampered])
        actions[0, tampered] = 3 if original != 3 else 2  # LEFT/RIGHT move the paddle: the RAM changes
    report = verify(path, progress=False)
    assert not report.ok
    (problem,) = [p for p in report.problems if p.episode == episode.index]
    assert verify(path, progress=False, workers=2).problems == report.problems
    # The first sync check after the tampered step finds it, and the window it names holds that step.
    interval = log.streams[0].sync_interval
    assert problem.step == -(-tampered // interval) * interval - episode.start_step
    assert problem.matched is not None and problem.matched < tampered - episode.start_step <= problem.step
    result = subprocess.run(
        [sys.executable, "-m", "replay.verify", "--quiet", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 1
    assert f"episode {episode.index}: diverges at step {problem.step} (began after step {problem.matched}" in (
        result.stdout
    )
    assert all(p.step is None or p.step >= 0 for p in report.problems)  # never a step before an episode began
    with TrajectoryLog(path) as log, pytest.raises(DesyncError, match=r"python -m replay.verify <log>` lists every"):
        list(log.replay(episode.index))  # a replay's own error says what to do next


def test_verify_cli_exit_codes(good_log, tmp_path):
    ok = subprocess.run([sys.executable, "-m", "replay.verify", "--quiet", str(good_log)], capture_output=True)
    assert ok.returncode == 0
    missing = subprocess.run(
        [sys.executable, "-m", "replay.verify", str(tmp_path / "missing.h5")], capture_output=True, text=True
    )
    assert missing.returncode == 2 and "no such file" in missing.stderr
    for workers in ("0", "-3", "two"):  # a bad argument is a usage error (2), not "an episode diverged" (1)
        bad = subprocess.run(
            [sys.executable, "-m", "replay.verify", "--workers", workers, str(good_log)], capture_output=True, text=True
        )
        assert bad.returncode == 2 and "expected a positive number of processes" in bad.stderr, bad.stderr


def test_verifying_a_log_without_episodes_says_so(tmp_path):
    path = tmp_path / "empty.h5"
    RecordTrajectory(make_env("Breakout", STICKY), path).close()  # never reset: a log without episodes
    done = subprocess.run([sys.executable, "-m", "replay.verify", "--quiet", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"{path}: 0 episodes, 0 steps re-simulated",
        "the log holds no episodes: nothing was checked",
    ]


def test_values_the_log_cannot_hold_are_refused_before_the_env_moves(tmp_path):
    path = tmp_path / "log.h5"
    env = RecordTrajectory(make_env("Breakout", STICKY), path)
    env.reset(seed=3)
    for _ in range(5):
        env.step(1)
    for bad in (-1, 4, 1.0, "1"):
        with pytest.raises(RecordingError, match=r"expected (integer )?actions in 0..3"):
            env.step(bad)
    for bad in (2**63 + 5, -2, 3.7, "7", None, True):
        with pytest.raises(RecordingError, match=r"policy_version must be an integer in 0..2\*\*63-1"):
            env.policy_version = bad
    with pytest.raises(RecordingError, match=r"a reset seed must be an integer in 0..2\*\*63-1 or None"):
        env.reset(seed=2**63 + 5)
    env.step(2)
    env.close()
    with pytest.raises(RecordingError, match="is closed; open a new one"):
        env.step(1)
    with pytest.raises(RecordingError, match="is closed; open a new one"):
        env.reset(seed=1)
    report = verify(path)
    assert report.ok and [e.length for e in TrajectoryLog(path).episodes] == [6]


def test_a_vector_step_with_an_action_out_of_range_is_refused(tmp_path):
    envs = RecordVectorTrajectory(gym.vector.SyncVectorEnv([lambda: make_env("Pong", STICKY)] * 2), tmp_path / "v.h5")
    envs.reset(seed=1)
    with pytest.raises(RecordingError, match=r"expected actions in 0..5 .*got \[-1, 1\]"):
        envs.step(np.array([-1, 1]))
    with pytest.raises(RecordingError, match="expected 2 seeds, one per env, got 1"):
        envs.reset(seed=[1])
    envs.step(np.array([0, 1]))
    envs.close()
    with pytest.raises(RecordingError, match="is closed"):
        envs.step(np.array([0, 1]))
    assert verify(tmp_path / "v.h5").ok


def test_episodes_after_a_divergence_in_their_lane_point_back_to_it(tmp_path):
    path = tmp_path / "log.h5"
    record_single(path, "Breakout", STICKY, 500, snapshot_interval=10_000, sync_interval=8)  # one anchor: the reset
    with TrajectoryLog(path) as log:
        first, *later = sorted(log.episodes, key=lambda e: e.start_step)
    assert later, "the recording should hold several episodes"
    with h5py.File(path, "a") as handle:
        actions = handle[fmt.GROUP_STREAMS][fmt.stream_name(0)][fmt.DATASET_ACTIONS]
        actions[0, first.start_step + 5] = 3 if int(actions[0, first.start_step + 5]) != 3 else 2
    problems = {p.episode: p for p in verify(path, progress=False).problems}
    assert problems[first.index].step is not None and problems[first.index].step >= 5
    for episode in later:
        assert problems[episode.index].step is None
        assert "before it began, in an earlier episode" in problems[episode.index].message
