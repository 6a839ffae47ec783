"""Bit-exact frames and observations, re-simulated in a fresh process, across games, settings and env kinds."""

from __future__ import annotations

import hashlib

import gymnasium as gym
import h5py
import numpy as np
import pytest
from helpers import (
    GYM_STICKY,
    PREPROCESSED,
    RANDOM_SKIP,
    STICKY,
    TIME_LIMITED,
    make_env,
    record_single,
    record_vector,
    replay_in_fresh_process,
)

from replay import RecordTrajectory, TrajectoryLog, emulator, rebuild, resim, verify
from replay import log_format as fmt
from replay.train.envs import EnvConfig
from replay.train.envs import make_env as trainer_env

GAMES = ["Breakout", "Pong", "MsPacman", "Seaquest"]


def _assert_same(recorded, replayed, path):
    assert set(replayed) == set(recorded), f"{path}: episodes differ"
    for key, digest in recorded.items():
        frames, observations = replayed[key]
        assert frames == digest.frames, f"frames of lane/start {key} differ"
        assert observations == digest.observations, f"observations of lane/start {key} differ"


@pytest.mark.parametrize("setting", [STICKY, PREPROCESSED])
@pytest.mark.parametrize("game", GAMES)
def test_single_env_replays_bit_exactly_in_fresh_process(tmp_path, game, setting):
    path = tmp_path / "log.h5"
    recorded = record_single(path, game, setting, 700, snapshot_interval=97, sync_interval=16)
    _assert_same(recorded, replay_in_fresh_process(path), path)


def test_a_random_frameskip_replays_bit_exactly_in_fresh_process(tmp_path):
    """JSON turns ale-py's ``frameskip=(2, 5)`` into a list, which ale-py refuses: replay turns it back."""
    path = tmp_path / "log.h5"
    recorded = record_single(path, "Breakout", RANDOM_SKIP, 400, snapshot_interval=97, sync_interval=16)
    _assert_same(recorded, replay_in_fresh_process(path), path)


@pytest.mark.parametrize(
    ("game", "setting", "asynchronous"),
    [
        ("Breakout", STICKY, False),
        pytest.param("Breakout", PREPROCESSED, False, marks=pytest.mark.slow),  # slow: the fast suite's 5 minutes
        pytest.param("MsPacman", STICKY, True, marks=pytest.mark.slow),
        ("Seaquest", PREPROCESSED, True),
    ],
)
def test_vector_env_replays_bit_exactly_in_fresh_process(tmp_path, game, setting, asynchronous):
    path = tmp_path / "log.h5"
    recorded = record_vector(
        path, game, setting, 600, n_envs=3, asynchronous=asynchronous, snapshot_interval=101, sync_interval=16
    )
    _assert_same(recorded, replay_in_fresh_process(path), path)
    with TrajectoryLog(path) as log:
        late = [e for e in log.episodes if e.start_step > 0]
        assert late, "expected episodes that start after autoresets"


# the preprocessed stack (~6 s) in the slow suite, for the fast suite's 5 minutes
@pytest.mark.parametrize("setting", [STICKY, pytest.param(PREPROCESSED, marks=pytest.mark.slow)])
def test_seeks_into_the_middle_match_the_recording(tmp_path, setting):
    path = tmp_path / "log.h5"
    recorded = record_vector(path, "Breakout", setting, 900, n_envs=2, snapshot_interval=64, sync_interval=8)
    with TrajectoryLog(path) as log:
        sought = 0
        for episode in log.episodes:
            digest = recorded[(episode.env_index, episode.start_step)]
            for start in (episode.length // 3, episode.length - 2):
                if start <= 0:
                    continue
                with TrajectoryLog(path) as fresh:  # no live env to reuse: the seek must anchor on its own
                    steps = list(fresh.replay(episode.index, start, start + 2))
                assert [hashlib.sha256(s.frame.data).hexdigest() for s in steps] == digest.frames[start : start + 2]
                assert [hashlib.sha256(s.observation.data).hexdigest() for s in steps] == (
                    digest.observations[start : start + 2]
                )
                assert [s.step for s in steps] == [start, start + 1]
                sought += 1
        assert sought >= 4


@pytest.mark.slow  # two long recordings: runs in CI's slow suite
@pytest.mark.parametrize("asynchronous", [False, True])
def test_seeks_restore_a_time_limit_that_counts_frames(tmp_path, asynchronous):
    """A TimeLimit under AtariPreprocessing counts emulated frames and no-ops, not positions: a snapshot must
    restore its count, or a seek into an episode it truncates diverges (format 2 derived it from positions)."""
    path = tmp_path / "log.h5"
    recorded = record_vector(
        path, "Seaquest", TIME_LIMITED, 500, n_envs=2, asynchronous=asynchronous, snapshot_interval=16
    )
    with TrajectoryLog(path) as log:
        truncated = [e for e in log.episodes if e.truncated]
        assert len(truncated) >= 2
    for episode in truncated:
        digest = recorded[(episode.env_index, episode.start_step)]
        for start in (episode.length // 2, episode.length - 1):
            with TrajectoryLog(path) as fresh:
                steps = list(fresh.replay(episode.index, start))
            assert [hashlib.sha256(s.frame.data).hexdigest() for s in steps] == digest.frames[start:]
            assert [hashlib.sha256(s.observation.data).hexdigest() for s in steps] == digest.observations[start:]
            assert steps[-1].truncated


def test_seeks_restore_a_sticky_action_wrapper(tmp_path):
    """gymnasium's StickyAction holds the action it may repeat: snapshots carry it (format 3), so restores
    verify instead of falling back to the seeded reset (which gave the same frames, slowly)."""
    path = tmp_path / "log.h5"
    recorded = record_single(path, "Breakout", GYM_STICKY, 600, snapshot_interval=32, sync_interval=8)
    sought = 0
    with TrajectoryLog(path) as log:
        episodes = [e for e in log.episodes if e.length > 80]
    for episode in episodes:
        start = episode.length // 2
        digest = recorded[(0, episode.start_step)]
        with TrajectoryLog(path) as fresh:
            steps = list(fresh.replay(episode.index, start, start + 5))
            assert sum(lane.restore_failures for lane in fresh._lanes.values()) == 0
        assert [hashlib.sha256(s.frame.data).hexdigest() for s in steps] == digest.frames[start : start + 5]
        assert [hashlib.sha256(s.observation.data).hexdigest() for s in steps] == digest.observations[start : start + 5]
        sought += 1
    assert sought >= 2


def test_a_sticky_action_wrapper_holding_a_0d_array_action_records(tmp_path):
    """The recorder accepts 0-d array actions, which StickyAction then holds: its snapshot state is stored as a
    number (json.dumps refused the array, mid-recording)."""
    path = tmp_path / "log.h5"
    env = RecordTrajectory(make_env("Breakout", GYM_STICKY), path, snapshot_interval=16)
    env.reset(seed=0)
    for t in range(100):
        _, _, terminated, truncated, _ = env.step(np.array(t % 4))
        if terminated or truncated:
            env.reset()
    env.close()
    assert verify(path, progress=False).ok


def test_a_snapshot_that_restores_wrongly_falls_back_to_an_earlier_anchor(tmp_path):
    """The replayer never emits a frame from an unverified restore: a snapshot whose (valid, decodable) state is
    another position's fails its first sync check, and the seek starts again from the anchor before it."""
    path = tmp_path / "log.h5"
    recorded = record_single(path, "Breakout", STICKY, 700, snapshot_interval=64, sync_interval=16)
    with TrajectoryLog(path) as log:
        lane = log.lane(0, 0)
        rows = [int(s["position"]) for s in lane.snapshots]
        target, donor = len(rows) // 2, 0
        wrong = resim._snapshot_state(lane, donor)  # whole: its generator put back, its dictionary applied
        episode = next(e for e in log.episodes if e.start_step < rows[target] < e.start_step + e.length - 24)
    blob = np.frombuffer(emulator.encode_snapshot(wrong, None), dtype=np.uint8)
    with h5py.File(path, "a") as handle:
        group = handle[fmt.GROUP_STREAMS][fmt.stream_name(0)]
        data, table = group[fmt.DATASET_SNAPSHOT_BYTES], group[fmt.DATASET_SNAPSHOTS]
        offset = data.shape[0]
        data.resize((offset + blob.size,))
        data[offset:] = blob
        row = table[target]
        row["offset"], row["nbytes"], row["ref"] = offset, blob.size, fmt.NO_REF
        table[target] = row
    start = rows[target] + 20 - episode.start_step  # past a sync check: observations come from the snapshot
    digest = recorded[(0, episode.start_step)]
    with TrajectoryLog(path) as log:
        steps = list(log.replay(episode.index, start, start + 3))
        assert sum(lane.restore_failures for lane in log._lanes.values()) == 1
    assert [hashlib.sha256(s.frame.data).hexdigest() for s in steps] == digest.frames[start : start + 3]
    assert [hashlib.sha256(s.observation.data).hexdigest() for s in steps] == digest.observations[start : start + 3]


def test_episode_records_describe_what_happened(tmp_path):
    path = tmp_path / "log.h5"
    record_single(path, "Pong", STICKY, 300)
    with TrajectoryLog(path) as log:
        (episode,) = log.episodes
        assert not episode.finished and episode.ended_by == "unfinished"
        assert episode.length == 300
        assert episode.policy_versions == tuple(range(6))  # version p // 50 is set before step p + 1
        rewards = [s.reward for s in log.replay(0, frames=False, observations=False)]
        assert sum(rewards) == episode.total_reward
        assert log.game == "Pong" and log.action_meanings[0] == "NOOP"


def test_frames_stream_lazily(tmp_path):
    path = tmp_path / "log.h5"
    record_single(path, "Breakout", STICKY, 150)
    with TrajectoryLog(path) as log:
        frames = log.frames(0)
        first = next(frames)
        assert first.shape == (210, 160, 3) and first.dtype == np.uint8
        frames.close()


def test_verify_passes_on_a_good_log(tmp_path):
    path = tmp_path / "log.h5"
    record_vector(path, "Pong", STICKY, 300, n_envs=2, snapshot_interval=50)
    report = verify(path, progress=False)
    assert report.ok, str(report)
    assert report.episodes == 2 and report.steps == 602
    assert verify(path, progress=False, workers=2) == report  # lanes split over processes


def test_verify_stays_callable_after_its_command_is_imported(tmp_path):
    """The command (``python -m replay.verify``, the console script) lives in ``replay.verification``: importing it
    leaves ``replay.verify`` the function."""
    import importlib

    import replay

    assert callable(importlib.import_module("replay.verification").main)  # what ale-replay-verify imports
    path = tmp_path / "log.h5"
    record_vector(path, "Breakout", STICKY, 60, n_envs=1, snapshot_interval=20)
    assert replay.verify(path, progress=False).ok


def test_replay_skips_only_screens_no_one_reads():
    # the trainer's stack: AtariPreprocessing discards the base env's observation, so replay need not copy it

    preprocessed = rebuild.make_env(trainer_env(EnvConfig(id="ALE/Pong-v5")).spec)
    assert emulator.base_env(preprocessed)._get_obs().size == 0
    observation, _ = preprocessed.reset(seed=3)
    assert np.asarray(observation).shape == (4, 84, 84) and np.asarray(observation).any()
    # without AtariPreprocessing the base observation is what the agent sees: left alone
    plain = rebuild.make_env(make_env("Pong", STICKY).spec)
    observation, _ = plain.reset(seed=3)
    assert observation.shape == (210, 160, 3)
    assert not rebuild.skip_unread_screens(plain)
    # a wrapper that may read observations below AtariPreprocessing keeps them coming
    inner = gym.wrappers.TransformObservation(gym.make("ALE/Pong-v5", frameskip=1), lambda o: o, None)
    assert not rebuild.skip_unread_screens(gym.wrappers.AtariPreprocessing(inner, frame_skip=4))
    for env in (preprocessed, plain, inner):
        env.close()
