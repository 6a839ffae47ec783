"""End to end: real Breakout logs and checkpoints built in fixtures, rendered, decoded back with PyAV."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from replay import RecordTrajectory, TrajectoryLog
from replay.atari import EnvConfig, make_env
from replay.checkpoints import save_checkpoint
from replay.network import ActorCritic

from render.__main__ import run_product
from render.compose import upscale_nearest
from render.config import EpisodeProductConfig, OverlayConfig, ProgressionProductConfig, VideoConfig
from render.errors import MissingCheckpointError
from render.products import RenderSource, render_episode, render_progression, render_timelapse

CONF = Path(__file__).resolve().parents[1] / "conf"
ENV_ID = "ALE/Breakout-v5"
TOTAL_STEPS, NUM_STEPS = 1024, 64  # 16 updates of one env
QUICK = VideoConfig(fps=30, crf=18, preset="ultrafast", scale=2, progress=False)


def _play(env, rng: np.random.Generator, *, seed: int, version_every: int | None, start_version: int) -> None:
    env.reset(seed=seed)
    done, t = False, 0
    while not done:
        if version_every:
            env.policy_version = start_version + t // version_every
        _, _, terminated, truncated, _ = env.step(int(rng.integers(4)))
        done, t = terminated or truncated, t + 1


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny real run: 3 training episodes over policy versions 0..~7, milestone checkpoints 0, 4, 8 and one
    evaluation episode at each, recorded like ``replay.train`` does (short episodes: 400 emulator frames)."""
    run = tmp_path_factory.mktemp("run")
    checkpoints = run / "checkpoints"
    torch.manual_seed(0)
    model = ActorCritic(4)
    config = EnvConfig(id=ENV_ID, max_episode_frames=400)
    rng = np.random.default_rng(0)
    train = RecordTrajectory(make_env(config), run / "trajectories.h5", tag="train", snapshot_interval=64)
    train.writer.set_metadata(
        "train_config_v000000",
        {"total_steps": TOTAL_STEPS, "ppo": {"num_envs": 1, "num_steps": NUM_STEPS, "learning_rate": 2.5e-4,
                                              "anneal_lr": True}},
    )
    evaluation = RecordTrajectory(make_env(config), train.writer, tag="eval")
    try:
        for version, milestone in ((0, 0.0), (8, 0.5), (16, 1.0)):
            with torch.no_grad():
                for parameter in model.parameters():
                    parameter.add_(0.05 * torch.randn_like(parameter))
            save_checkpoint(checkpoints, model, policy_version=version, global_step=version * NUM_STEPS,
                            env_id=ENV_ID, milestone=milestone)
            evaluation.policy_version = version
            _play(evaluation, rng, seed=100 + version, version_every=None, start_version=version)
        for episode in range(3):
            _play(train, rng, seed=episode, version_every=NUM_STEPS, start_version=5 * episode)
    finally:
        evaluation.close()
        train.close()
    return run
