"""What a run folder holds, by name: the one place that spells its files.

A run folder, as ``python -m replay.train`` makes it and ``python -m render``, ``python -m replay.show`` and the
viewer read it::

    <run>/
        trajectories.h5        the log: every training and evaluation episode (replay.TrajectoryLog)
        checkpoints/           v<version>.pt policies, and resume.pt, the trainer's state to continue from;
                               v<version>.zip for a Stable-Baselines3 run (replay.sb3.RecordCallback)
            resume_points/     v<version>.pt: full training states kept at a cadence, where rebuilds start
        learning.jsonl         the learning ledger: per update its weights' digest, per launch what decides the bits
        rebuilt/               v<version>.pt: policy versions rebuilt exactly from the ledger (a bounded cache)
        config.yaml            the trainer's effective config
        episodes.csv           every finished episode: tag, global step, policy version, return, length
        updates.csv            every update: losses, learning rate, steps/s
        tensorboard/           the same scalars for TensorBoard (when the tensorboard extra is installed)
        videos/                what python -m render makes of the run when no output= is given
        hydra/                 Hydra's record of each launch
        sb3-versions.csv       a Stable-Baselines3 run: the num_timesteps at which each policy version began
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

LOG = "trajectories.h5"
CHECKPOINTS = "checkpoints"
RESUME_STATE = "resume.pt"
RESUME_POINTS = "resume_points"
LEDGER = "learning.jsonl"
REBUILT = "rebuilt"
CONFIG = "config.yaml"
EPISODES = "episodes.csv"
UPDATES = "updates.csv"
TENSORBOARD = "tensorboard"
VIDEOS = "videos"
HYDRA = "hydra"
SB3_VERSIONS = "sb3-versions.csv"
CHECKPOINT_FILE = re.compile(r"^v(\d{6,})\.pt$")  # v<policy version, 6 digits or more>.pt
SB3_CHECKPOINT_FILE = re.compile(r"^v(\d{6,})\.zip$")  # the same, saved by Stable-Baselines3's model.save


def checkpoint_name(policy_version: int) -> str:
    """The file name of a policy version's checkpoint.

    Example:
        >>> checkpoint_name(42)
        'v000042.pt'
    """
    return f"v{policy_version:06d}.pt"


def sb3_checkpoint_name(policy_version: int) -> str:
    """The file name of a Stable-Baselines3 run's checkpoint of a policy version (``replay.sb3``).

    Example:
        >>> sb3_checkpoint_name(42)
        'v000042.zip'
    """
    return f"v{policy_version:06d}.zip"


@dataclass(frozen=True)
class RunFolder:
    """The paths of one run folder (nothing is read or made by building one).

    Example:
        >>> RunFolder("data/sample/breakout").log.as_posix()
        'data/sample/breakout/trajectories.h5'
    """

    path: Path

    def __init__(self, path: str | Path) -> None:
        object.__setattr__(self, "path", Path(path))

    @property
    def log(self) -> Path:
        return self.path / LOG

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def resume_state(self) -> Path:
        return self.checkpoints / RESUME_STATE

    @property
    def resume_points(self) -> Path:
        return self.checkpoints / RESUME_POINTS

    @property
    def ledger(self) -> Path:
        return self.path / LEDGER

    @property
    def rebuilt(self) -> Path:
        return self.path / REBUILT

    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def episodes(self) -> Path:
        return self.path / EPISODES

    @property
    def updates(self) -> Path:
        return self.path / UPDATES

    @property
    def tensorboard(self) -> Path:
        return self.path / TENSORBOARD

    @property
    def videos(self) -> Path:
        return self.path / VIDEOS

    @property
    def hydra(self) -> Path:
        return self.path / HYDRA

    def checkpoint_versions(self) -> list[int]:
        """The policy versions with a checkpoint file in ``checkpoints/`` (the trainer's ``.pt`` or an SB3 run's
        ``.zip``), in order (none if it does not exist). SB3 ``CheckpointCallback`` files:
        ``replay.sb3.checkpoint_versions``."""
        if not self.checkpoints.is_dir():
            return []
        found = (CHECKPOINT_FILE.match(p.name) or SB3_CHECKPOINT_FILE.match(p.name) for p in self.checkpoints.iterdir())
        return sorted({int(m.group(1)) for m in found if m})
