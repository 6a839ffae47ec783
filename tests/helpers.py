"""Helpers the tests share: tiny real trajectories (real ALE games, real HDF5 files), digests, decoded videos."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import ale_py
import gymnasium as gym
import numpy as np

if TYPE_CHECKING:
    from replay.train import TrainConfig

gym.register_envs(ale_py)

STICKY = "sticky"  # ALE v5 defaults: frameskip 4, repeat_action_probability 0.25
PREPROCESSED = "preprocessed"  # frameskip 1 + AtariPreprocessing + 4-frame stack
RANDOM_SKIP = "random-skip"  # ALE v5 with a random frameskip of 2..4 each step (ale-py's (low, high) tuple)
# PREPROCESSED with gym.make's max_episode_steps=400: a TimeLimit under AtariPreprocessing, counting frames
TIME_LIMITED = "time-limited"
# ALE without sticky actions, gymnasium's StickyAction over AtariPreprocessing: a wrapper with hidden state
GYM_STICKY = "gym-sticky"
TRAINER = "trainer"  # the trainer's own stack (replay.train.envs): PREPROCESSED with FireOnLifeLoss


def make_env(game: str, setting: str) -> gym.Env:
    if setting == TRAINER:
        from replay.train.envs import EnvConfig
        from replay.train.envs import make_env as trainer_env

        return trainer_env(EnvConfig(id=f"ALE/{game}-v5"), render_mode="rgb_array")
    if setting == STICKY:
        return gym.make(f"ALE/{game}-v5", render_mode="rgb_array")
    if setting == RANDOM_SKIP:
        return gym.make(f"ALE/{game}-v5", frameskip=(2, 5), render_mode="rgb_array")
    limit = 400 if setting == TIME_LIMITED else None
    sticky = {"repeat_action_probability": 0.0} if setting == GYM_STICKY else {}
    env = gym.make(f"ALE/{game}-v5", frameskip=1, render_mode="rgb_array", max_episode_steps=limit, **sticky)
    env = gym.wrappers.AtariPreprocessing(env, noop_max=30, frame_skip=4, screen_size=84)
    if setting == GYM_STICKY:
        env = gym.wrappers.StickyAction(env, repeat_action_probability=0.25, repeat_action_duration=(1, 3))
    return gym.wrappers.FrameStackObservation(env, 4)


def decode_video(path: Path) -> list[np.ndarray]:
    """Every frame of a video file, decoded back with PyAV as RGB."""
    import av

    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def assert_video_close(actual: np.ndarray, expected: np.ndarray) -> None:
    """A decoded frame against the RGB it was encoded from: x264 at crf 23 in yuv420p is close, not equal."""
    error = np.abs(actual.astype(int) - expected.astype(int))
    assert error.mean() < 1.5 and np.percentile(error, 99) < 24, (error.mean(), np.percentile(error, 99))


class Digest:
    """Running sha256 of the frames and observations of one episode."""

    def __init__(self) -> None:
        self.frames: list[str] = []
        self.observations: list[str] = []

    def add(self, frame: np.ndarray, observation: np.ndarray) -> None:
        self.frames.append(hashlib.sha256(np.ascontiguousarray(frame).data).hexdigest())
        self.observations.append(hashlib.sha256(np.ascontiguousarray(observation).data).hexdigest())


def record_single(
    path: Path, game: str, setting: str, steps: int, *, seed: int = 0, **options: object
) -> dict[tuple[int, int], Digest]:
    """Random play with RecordTrajectory; returns digests keyed by (lane, start position)."""
    from replay import RecordTrajectory

    env = RecordTrajectory(make_env(game, setting), path, **options)
    rng = np.random.default_rng(seed)
    digests: dict[tuple[int, int], Digest] = {}
    position = 0
    observation, _ = env.reset(seed=seed)
    current = digests.setdefault((0, position), Digest())
    current.add(env.unwrapped.render(), observation)
    for _ in range(steps):
        env.policy_version = position // 50
        observation, _, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
        position += 1
        current.add(env.unwrapped.render(), observation)
        if terminated or truncated:
            observation, _ = env.reset()
            position += 1
            current = digests.setdefault((0, position), Digest())
            current.add(env.unwrapped.render(), observation)
    env.close()
    return digests


def record_vector(
    path: Path,
    game: str,
    setting: str,
    steps: int,
    *,
    n_envs: int = 3,
    asynchronous: bool = False,
    seed: int = 0,
    **options: object,
) -> dict[tuple[int, int], Digest]:
    from replay import RecordVectorTrajectory

    factory = [lambda: make_env(game, setting)] * n_envs
    vector = gym.vector.AsyncVectorEnv(factory) if asynchronous else gym.vector.SyncVectorEnv(factory)
    env = RecordVectorTrajectory(vector, path, **options)
    rng = np.random.default_rng(seed)
    observations, _ = env.reset(seed=seed)
    digests: dict[tuple[int, int], Digest] = {}
    current = []
    for lane, frame in enumerate(env.call("render")):
        current.append(digests.setdefault((lane, 0), Digest()))
        current[lane].add(frame, observations[lane])
    autoreset = np.zeros(n_envs, dtype=bool)
    for position in range(1, steps + 1):
        env.policy_version = position // 50
        observations, _, terminated, truncated, _ = env.step(rng.integers(env.single_action_space.n, size=n_envs))
        for lane, frame in enumerate(env.call("render")):
            if autoreset[lane]:
                current[lane] = digests.setdefault((lane, position), Digest())
            current[lane].add(frame, observations[lane])
        autoreset = np.asarray(terminated) | np.asarray(truncated)
    env.close()
    return digests


REPLAY_SCRIPT = textwrap.dedent(
    """
    import hashlib, json, sys
    from replay import TrajectoryLog
    out = {}
    with TrajectoryLog(sys.argv[1]) as log:
        for e in log.episodes:
            frames, observations = [], []
            for step in log.replay(e.index):
                frames.append(hashlib.sha256(step.frame.data).hexdigest())
                observations.append(hashlib.sha256(step.observation.data).hexdigest())
            out[f"{e.stream} {e.env_index} {e.start_step}"] = [frames, observations]
    json.dump(out, sys.stdout)
    """
)


def replay_in_fresh_process(path: Path) -> dict[tuple[int, int], tuple[list[str], list[str]]]:
    """Digests of every episode, re-simulated by a new Python process."""
    result = subprocess.run(
        [sys.executable, "-c", REPLAY_SCRIPT, str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    decoded = json.loads(result.stdout)
    return {(int(k.split()[1]), int(k.split()[2])): tuple(v) for k, v in decoded.items()}


ROOT = Path(__file__).resolve().parents[1]  # the repository

# A trainer run small enough for a test: 2 envs, milestone checkpoints at half and end, fast flushes.
FAST = [
    "ppo.num_envs=2",
    "ppo.num_steps=128",
    "eval.episodes=1",
    "eval.max_episode_frames=2000",
    "checkpoint.dtype=float16",
    "checkpoint.milestones=2",
    "torch_threads=1",
    "progress=false",
    "record.flush_seconds=0.2",
]


def start_train_cli(cwd: Path, *args: str, terminal: bool = False) -> subprocess.Popen[str]:
    """``python -m replay.train <args>`` started from ``cwd``; its stderr is kept for the failure message. With
    ``terminal``, as a terminal's foreground job: a process group of its own (a Ctrl-C reaches all of it) and
    SIGINT not ignored (as a background job from a non-interactive shell, how CI may run, would have it)."""
    group = {"start_new_session": True, "preexec_fn": lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)}
    return subprocess.Popen(
        [sys.executable, "-m", "replay.train", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        **(group if terminal else {}),
    )


def compose_config(overrides: list[str]) -> TrainConfig:
    """The trainer's config as ``python -m replay.train <overrides>`` composes it."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from replay.train.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    return OmegaConf.to_object(cfg)
