"""Every emulated frame of a step (``emulator_frames=True``): as many screens as the emulator ran, the last the
step's frame, consecutive ones frame by frame, and nothing else replayed changes by a byte."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from helpers import GYM_STICKY, PREPROCESSED, RANDOM_SKIP, STICKY, TIME_LIMITED, TRAINER, make_env

from replay import RecordTrajectory, ReplayStep, ScreenCaptureError, TrajectoryLog
from replay.screens import ScreenTap


def record_counting_frames(path: Path, game: str, setting: str, steps: int) -> dict[int, list[int]]:
    """Random play recorded to ``path``; per episode (by start position), the screens each step should carry:
    the frames the emulator ran (ALE's frame counter), plus the screen a reset starts the game from."""
    env = RecordTrajectory(make_env(game, setting), path, snapshot_interval=50, sync_interval=16)
    ale = env.unwrapped.ale
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    episodes = {0: [1 + ale.getEpisodeFrameNumber()]}
    current = episodes[0]
    position = 0  # in the log's stream: a reset takes a position too
    for _ in range(steps):
        before = ale.getFrameNumber()
        _, _, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
        position += 1
        current.append(ale.getFrameNumber() - before)
        if terminated or truncated:
            env.reset()
            position += 1
            current = episodes[position] = [1 + ale.getEpisodeFrameNumber()]
    env.close()
    return episodes


@dataclass(frozen=True)
class Replayed:
    """A recorded log, its episodes replayed with and without every emulated frame."""

    path: Path
    expected: dict[int, list[int]]
    plain: dict[int, list[ReplayStep]]
    tapped: dict[int, list[ReplayStep]]


def replay_both_ways(path: Path, game: str, setting: str, steps: int) -> Replayed:
    expected = record_counting_frames(path, game, setting, steps)
    with TrajectoryLog(path) as log:
        plain = {e.start_step: list(log.replay(e.index)) for e in log.episodes}
        tapped = {e.start_step: list(log.replay(e.index, emulator_frames=True)) for e in log.episodes}
    return Replayed(path, expected, plain, tapped)


# The trainer's stack (frame skip 4 in AtariPreprocessing over frameskip 1, no-op starts, a FIRE after reset and
# each lost life) on Breakout; plain ALE v5 (frameskip 4 in ale-py, sticky actions) on Pong.
FAST = [("Breakout", TRAINER), ("Pong", STICKY)]


@pytest.fixture(scope="module", params=FAST, ids=["-".join(p) for p in FAST])
def replayed(request, tmp_path_factory) -> Replayed:
    game, setting = request.param
    return replay_both_ways(tmp_path_factory.mktemp("emuframes") / "log.h5", game, setting, 200)


def assert_every_emulated_frame(replayed: Replayed) -> None:
    assert replayed.tapped.keys() == replayed.expected.keys()
    for start, steps in replayed.tapped.items():
        assert [len(s.screens) for s in steps] == replayed.expected[start], f"episode at {start}"
        for step in steps:
            assert all(s.shape == (210, 160, 3) and s.dtype == np.uint8 for s in step.screens)
            assert step.screens[-1].tobytes() == step.frame.tobytes(), f"step {step.step} of the episode at {start}"


def assert_nothing_else_changes(replayed: Replayed) -> None:
    for start, steps in replayed.plain.items():
        tapped = replayed.tapped[start]
        assert len(tapped) == len(steps)
        for plain, with_screens in zip(steps, tapped, strict=True):
            assert plain.screens is None
            assert plain.frame.tobytes() == with_screens.frame.tobytes()
            assert plain.observation.tobytes() == with_screens.observation.tobytes()
            assert (plain.reward, plain.action, plain.terminated, plain.truncated) == (
                with_screens.reward,
                with_screens.action,
                with_screens.terminated,
                with_screens.truncated,
            )


def test_each_step_carries_every_frame_it_emulated(replayed):
    assert_every_emulated_frame(replayed)
    counts = Counter(len(s.screens) for steps in replayed.tapped.values() for s in steps[1:])
    assert counts.most_common(1)[0][0] == 4  # the frame skip, both stacks


def test_the_screens_change_no_frame_observation_or_reward(replayed):
    assert_nothing_else_changes(replayed)


def test_consecutive_screens_are_consecutive_frames(replayed):
    # the ball moves every emulated frame while in play: most screens differ from the one before
    pairs = [
        not np.array_equal(earlier, later)
        for steps in replayed.tapped.values()
        for step in steps
        for earlier, later in zip(step.screens, step.screens[1:], strict=False)
    ]
    assert len(pairs) > 500 and np.mean(pairs) > 0.8


def test_a_seek_gives_the_screens_of_a_whole_replay(replayed):
    start, whole = max(replayed.tapped.items(), key=lambda item: len(item[1]))
    middle = len(whole) // 2
    with TrajectoryLog(replayed.path) as log:
        (index,) = [e.index for e in log.episodes if e.start_step == start]
        # from a snapshot, then on from the env each read leaves (once without screens in between)
        first = list(log.replay(index, middle, middle + 10, emulator_frames=True))
        assert all(s.screens is None for s in log.replay(index, middle + 10, middle + 15))
        then = list(log.replay(index, middle + 20, len(whole), emulator_frames=True))
    for step in first + then:
        expected = whole[step.step].screens
        assert [s.tobytes() for s in step.screens] == [s.tobytes() for s in expected], f"step {step.step}"


class KeepsTheALE(gym.Wrapper):
    """A wrapper that keeps its own handle on the emulator, as gym's AtariPreprocessing once did."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.ale = env.unwrapped.ale


def test_a_stack_that_hides_emulated_frames_is_refused():
    env = gym.make("ALE/Breakout-v5")
    try:
        env.unwrapped.ale.setInt("frame_skip", 4)  # the ALE would run 4 frames per act, out of Python's sight
        with pytest.raises(ScreenCaptureError, match=r"ALE/Breakout-v5: its ALE emulates 4 frames per act"):
            ScreenTap(env)
        env.unwrapped.ale.setInt("frame_skip", 1)
        with pytest.raises(ValueError, match=r"ALE/Breakout-v5: wrapper KeepsTheALE keeps its own handle"):
            ScreenTap(KeepsTheALE(env))
        ScreenTap(env).remove()
    finally:
        env.close()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("game", "setting"),
    [
        ("Pong", TRAINER),
        ("Breakout", STICKY),
        ("MsPacman", PREPROCESSED),
        ("Seaquest", RANDOM_SKIP),
        ("Breakout", TIME_LIMITED),
        ("Breakout", GYM_STICKY),
    ],
)
def test_every_stack_a_log_names_gives_every_emulated_frame(tmp_path, game, setting):
    replayed = replay_both_ways(tmp_path / "log.h5", game, setting, 700)
    assert_every_emulated_frame(replayed)
    assert_nothing_else_changes(replayed)
