"""Helpers of the Stable-Baselines3 tests: a callback that watches versions from inside training, and checks of
a recorded run against it."""

from __future__ import annotations

import bisect
import io
import zipfile
from pathlib import Path

import torch
from stable_baselines3.common.callbacks import BaseCallback

from replay import TrajectoryLog


class VersionProbe(BaseCallback):
    """Counts ``train()`` calls on its own (SB3's ``_n_updates`` moves in each) and notes, at each rollout start,
    every env recorder's next position: positions from there on were chosen by the policy after that many updates.
    Also the count at each ``num_timesteps`` a step reached, for checkpoints saved then."""

    def __init__(self) -> None:
        super().__init__()
        self.updates = 0
        self.starts: list[tuple[int, list[int]]] = []  # (version, next position of each env's stream)
        self.version_at: dict[int, int] = {}  # num_timesteps -> version acting then

    def _on_training_start(self) -> None:
        self._seen = self.model._n_updates
        self._note()

    def _on_rollout_start(self) -> None:
        if self.model._n_updates != self._seen:
            self._seen = self.model._n_updates
            self.updates += 1
            self._note()

    def _on_training_end(self) -> None:
        if self.model._n_updates != self._seen:  # the last train() acted on nothing: counted, no positions
            self.updates += 1

    def _on_step(self) -> bool:
        self.version_at[self.model.num_timesteps] = self.updates
        return True

    def _note(self) -> None:
        self.starts.append((self.updates, list(self.training_env.env_method("get_wrapper_attr", "recorded_positions"))))

    def expected_version(self, env: int, position: int) -> int:
        """The version acting when env ``env`` recorded ``position`` (resets before training: 0)."""
        firsts = [positions[env] for _, positions in self.starts]
        at = bisect.bisect_right(firsts, position) - 1
        return self.starts[at][0] if at >= 0 else 0


def check_versions(log_path: Path, probe: VersionProbe, streams: list[int]) -> int:
    """Every recorded step's policy version against the probe's; returns how many steps were checked."""
    checked = 0
    with TrajectoryLog(log_path) as log:
        for episode in log.episodes:
            env = streams.index(episode.stream)
            for step in log.replay(episode.index, frames=False, observations=False):
                expected = probe.expected_version(env, episode.start_step + step.step)
                assert step.policy_version == expected, (episode.index, step.step, step.policy_version, expected)
                checked += 1
    return checked


def policy_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The policy weights of an SB3 ``.zip``, read as tensors only."""
    with zipfile.ZipFile(path) as archive:
        return torch.load(io.BytesIO(archive.read("policy.pth")), weights_only=True, map_location="cpu")
