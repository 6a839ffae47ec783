"""The renderer's feed of re-simulated steps, with every emulated frame of the kept steps."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import STICKY, record_single

from render.feed import HELD_BYTES, KeptStep, ReplayFeed, kept_steps, rewards_and_steps
from replay import TrajectoryLog


@pytest.fixture(scope="module")
def log_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("feed") / "log.h5"
    record_single(path, "Breakout", STICKY, 300, snapshot_interval=50, sync_interval=16)  # two episodes
    return path


def fed(path: Path, stride: int, workers: int) -> list[list[KeptStep]]:
    with TrajectoryLog(path) as log:
        episodes = log.episodes
    with ReplayFeed(path, episodes, stride, observations=False, emulator_frames=True, workers=workers, chunk=8) as feed:
        return [list(feed.steps(k)) for k in range(len(episodes))]


def as_bytes(steps: list[KeptStep]) -> list[tuple[int, bytes, list[bytes]]]:
    return [(s.step, s.frame.tobytes(), [screen.tobytes() for screen in s.screens]) for s in steps]


def test_kept_frames_carry_the_screens_until_the_next_agent_frame(log_path):
    with TrajectoryLog(log_path) as log:
        episode = log.episodes[0]
        replayed = {s.step: s for s in log.replay(episode.index, observations=False, emulator_frames=True)}
        kept = list(kept_steps(log, episode, 3, observations=False, emulator_frames=True))
        assert [k.step for k in kept] == [*range(0, episode.length + 1, 3), episode.length]
        for step in kept:
            # this frame, then what its action's emulation showed before the next agent frame
            after = replayed[step.step + 1].screens[:-1] if step.step < episode.length else ()
            expected = [step.frame.tobytes(), *(s.tobytes() for s in after)]
            assert [s.tobytes() for s in step.screens] == expected
            assert step.screens[0].tobytes() == replayed[step.step].frame.tobytes()
            if step.step < episode.length:
                assert step.action == replayed[step.step + 1].action  # the action taken from this frame
        assert all(k.screens is None for k in kept_steps(log, episode, 3, observations=False))


def test_a_worker_process_sends_the_screens_replayed_in_process(log_path):
    in_process = fed(log_path, 3, workers=0)
    assert len(in_process) == 2 and all(len(steps) > 10 for steps in in_process)
    assert [as_bytes(steps) for steps in fed(log_path, 3, workers=1)] == [as_bytes(steps) for steps in in_process]


def test_the_rewards_come_first_from_one_replay_or_from_a_pass_of_their_own(log_path):
    """Held (one replay gives rewards and frames) and streamed (a picture-less pass first) give the same rewards
    and the same frames, in this process and from a worker."""
    with TrajectoryLog(log_path) as log, TrajectoryLog(log_path) as ahead:
        episode = log.episodes[0]
        expected = [s.reward for s in log.replay(episode.index, frames=False, observations=False)][1:]
        found = [
            rewards_and_steps(log, lambda: ahead, episode, 3, observations=True, budget=budget)
            for budget in (HELD_BYTES, 0)
        ]
        held, streamed = ((rewards, list(steps)) for rewards, steps in found)
        assert isinstance(found[0][1], list) and not isinstance(found[1][1], list)  # held, then streamed
        assert held[0].tolist() == streamed[0].tolist() == expected and any(expected)
        assert [(s.step, s.frame.tobytes(), s.observation.tobytes()) for s in held[1]] == [
            (s.step, s.frame.tobytes(), s.observation.tobytes()) for s in streamed[1]
        ]
    with ReplayFeed(log_path, [episode], 3, observations=True, workers=1, rewards=True) as feed:
        assert feed.rewards(0).tolist() == expected
        assert [s.frame.tobytes() for s in feed.steps(0)] == [s.frame.tobytes() for s in held[1]]
