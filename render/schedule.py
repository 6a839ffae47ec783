"""Where a policy version sits in its run: training progress and learning rate, from the log's metadata.

The trainer stores its whole config under ``train_config_v<version>`` (one entry per launch, resumed runs add
one). Progress is ``policy_version / num_updates`` with ``num_updates = ceil(total_steps / batch)``, the same
arithmetic the trainer uses for milestones and the learning-rate schedule.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from replay import rebuild
from replay.reader import TrajectoryLog

_CONFIG_PREFIX = "train_config_v"


@dataclass(frozen=True)
class TrainingSchedule:
    """The parts of a training config that place a policy version in the run; ``None`` when unknown."""

    num_updates: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    anneal_lr: bool = False
    gamma: float | None = None
    clip_reward: bool = False
    frame_skip: int | None = None

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> TrainingSchedule:
        """Read the latest ``train_config_v*`` entry; an empty schedule for logs not written by the
        trainer."""
        keys = sorted(key for key in metadata if key.startswith(_CONFIG_PREFIX))
        if not keys:
            return cls()
        config = metadata[keys[-1]]
        ppo = config.get("ppo", {})
        try:
            batch = int(ppo["num_envs"]) * int(ppo["num_steps"])
            updates = math.ceil(int(config["total_steps"]) / batch)
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            return cls()
        rate, gamma = ppo.get("learning_rate"), ppo.get("gamma")
        skip = config.get("env", {}).get("frame_skip")
        return cls(
            updates,
            batch,
            None if rate is None else float(rate),
            bool(ppo.get("anneal_lr", False)),
            None if gamma is None else float(gamma),
            bool(ppo.get("clip_reward", False)),
            None if skip is None else int(skip),
        )

    @classmethod
    def of_log(cls, log: TrajectoryLog) -> TrainingSchedule:
        """:meth:`from_metadata` of ``log``'s metadata. A Stable-Baselines3 run (``replay.sb3``) records below
        SB3's own frame skip, on the base env: a recorded step there is one step of the base env, its ``frameskip``
        frames (1 for ``*NoFrameskip-v4``), so that is its frame skip (a random frame skip, which ``replay.sb3``
        refuses, would leave it unknown)."""
        schedule = cls.from_metadata(log.metadata)
        if schedule.frame_skip is not None or "sb3" not in log.metadata or not log.streams:
            return schedule
        spec = rebuild.spec_from_json(log.streams[0].spec_json, str(log.path))
        skip = spec.kwargs.get("frameskip")
        if isinstance(skip, int) and not isinstance(skip, bool) and skip > 0:
            return dataclasses.replace(schedule, frame_skip=skip)
        return schedule

    def progress(self, policy_version: int) -> float | None:
        """Training progress in [0, 1] of the policy after ``policy_version`` updates."""
        if not self.num_updates:
            return None
        return min(1.0, max(0.0, policy_version / self.num_updates))

    def global_step(self, policy_version: int) -> int | None:
        """Agent steps taken (over all envs) before ``policy_version`` was reached."""
        return None if self.batch_size is None else policy_version * self.batch_size

    def learning_rate_at(self, policy_version: int) -> float | None:
        """The learning rate of the update that produced ``policy_version`` (annealed linearly if
        configured)."""
        if self.learning_rate is None:
            return None
        if not self.anneal_lr or not self.num_updates:
            return self.learning_rate
        return self.learning_rate * (1.0 - min(policy_version, self.num_updates) / self.num_updates)
