"""The trainer's settings: one dataclass per Hydra group, registered as the schema of ``conf/train.yaml``."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from hydra.core.config_store import ConfigStore

from replay.train.checkpoints import DTYPES
from replay.train.envs import EnvConfig, check_env_id
from replay.train.ppo import PPOConfig


@dataclass
class RecordConfig:
    """Recording of training and evaluation episodes (Hydra group ``record``); see ``RecordVectorTrajectory``.

    Attributes:
        enabled: Record into ``<run_dir>/trajectories.h5``; off only for benchmarks and debugging.
        snapshot_interval: Vector positions between emulator snapshots (seek time vs bytes).
        sync_interval: Positions between sync checks.
        flush_seconds: About this much recording is lost at most when the process is killed.
    """

    enabled: bool = True
    snapshot_interval: int = 1024
    sync_interval: int = 64
    flush_seconds: float = 10.0


@dataclass
class CheckpointConfig:
    """When and how policies are saved.

    Attributes:
        every_updates: Save ``v<version>.pt`` every this many updates (0: only version 0, milestones, final).
        milestones: Milestone checkpoints (with evaluation) at every ``1/milestones`` of training.
        dtype: Weight storage, ``float32`` or ``float16``; evaluation uses the weights as stored.
        resume_every_updates: Overwrite ``resume.pt`` every this many updates (1: lose at most one rollout).
        resume_point_every: Keep the full training state (~3x a float32 checkpoint: weights and Adam's moments) in
            ``checkpoints/resume_points/`` every this many updates; an exact rebuild of a version replays the
            learning from the nearest one before it, so this bounds its time. 0: none (rebuilds start from
            version 0, which derives from the seed, or from a resume).
    """

    every_updates: int = 0
    milestones: int = 10
    dtype: str = "float32"
    resume_every_updates: int = 1
    resume_point_every: int = 250


@dataclass
class EvalConfig:
    """Milestone evaluation in a separate single env with the training stack.

    Attributes:
        episodes: Episodes per milestone (0 disables evaluation).
        greedy: Argmax actions instead of sampling.
        max_episode_frames: Emulator-frame cap of an evaluation episode (108,000 = 27,000 agent steps).
        at_start: Also evaluate the initial policy (version 0).
    """

    episodes: int = 2
    greedy: bool = False
    max_episode_frames: int = 108_000
    at_start: bool = True


@dataclass
class TrainConfig:
    """A training run (``python -m replay.train``; ``conf/train.yaml`` sets the same defaults).

    Attributes:
        total_steps: Agent steps over all envs (rounded up to whole rollouts).
        seed: The one seed: env resets, torch, evaluation seeds derive from it.
        run_dir: Run folder; relative paths resolve against the launch directory. None: a new folder under
            ``data/runs/``.
        resume: A run folder to continue from its ``resume.pt``, or from the start if it was killed before its
            first one (with ``python -m replay.train``, its ``config.yaml`` is reused and other command-line
            overrides apply on top).
        torch_threads: ``torch.set_num_threads``. One trains fastest when anything else runs beside it (a second
            thread waits on the busy core); on an idle 2-core machine two are ~1.46x faster (``bench_threads.py``).
        device: ``auto`` (CUDA when torch sees a GPU, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``: where the
            network trains; the envs always run on the CPU.
        progress: Show a tqdm progress bar.
    """

    env: EnvConfig = field(default_factory=EnvConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    record: RecordConfig = field(default_factory=RecordConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    total_steps: int = 10_000_000
    seed: int = 1
    run_dir: str | None = None
    resume: str | None = None
    torch_threads: int = 1
    device: str = "auto"
    progress: bool = True


def validate(config: TrainConfig) -> None:
    p = config.ppo
    check_env_id(config.env.id)  # before the run folder is made
    if config.total_steps <= 0:
        raise ValueError(f"expected a positive total_steps, got {config.total_steps}")
    least = {
        "ppo.num_envs": (p.num_envs, 1),
        "ppo.num_steps": (p.num_steps, 1),
        "ppo.num_minibatches": (p.num_minibatches, 1),
        "ppo.update_epochs": (p.update_epochs, 1),
        "checkpoint.every_updates": (config.checkpoint.every_updates, 0),
        "checkpoint.resume_every_updates": (config.checkpoint.resume_every_updates, 1),
        "checkpoint.resume_point_every": (config.checkpoint.resume_point_every, 0),
        "eval.episodes": (config.eval.episodes, 0),
        "record.snapshot_interval": (config.record.snapshot_interval, 1),
        "record.sync_interval": (config.record.sync_interval, 1),
        "torch_threads": (config.torch_threads, 1),
        "env.frame_skip": (config.env.frame_skip, 1),
        "env.frame_stack": (config.env.frame_stack, 1),
        "env.screen_size": (config.env.screen_size, 1),
        "env.noop_max": (config.env.noop_max, 0),
        "env.max_episode_frames": (config.env.max_episode_frames, 1),
        "eval.max_episode_frames": (config.eval.max_episode_frames, 1),
    }
    for key, (value, bound) in least.items():
        if value < bound:
            raise ValueError(f"expected {key} >= {bound}, got {value}")
    if config.env.vector not in ("sync", "async"):
        raise ValueError(f"expected env.vector sync or async, got {config.env.vector!r}")
    if not 0.0 <= config.env.repeat_action_probability <= 1.0:
        raise ValueError(f"expected env.repeat_action_probability in 0..1, got {config.env.repeat_action_probability}")
    if not config.record.flush_seconds > 0:
        raise ValueError(f"expected a positive record.flush_seconds, got {config.record.flush_seconds}")
    if p.batch_size % p.num_minibatches:
        raise ValueError(
            f"expected ppo.num_envs * ppo.num_steps ({p.batch_size}) divisible by ppo.num_minibatches "
            f"({p.num_minibatches})"
        )
    if config.checkpoint.dtype not in DTYPES:
        raise ValueError(f"expected checkpoint.dtype in {sorted(DTYPES)}, got {config.checkpoint.dtype!r}")
    if config.checkpoint.milestones < 1:
        raise ValueError(f"expected at least 1 checkpoint milestone, got {config.checkpoint.milestones}")


def resolve_device(name: str) -> torch.device:
    """The torch device ``name`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``) stands for on this machine.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"expected device auto, cpu, cuda or cuda:N, got device={name!r}") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"expected device auto, cpu, cuda or cuda:N, got device={name!r}")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(
                f"device={name!r}, but torch sees no CUDA GPU here (torch {torch.__version__}); use device=cpu, "
                "or device=auto to take a GPU where there is one"
            )
        if device.index is not None and device.index >= count:
            raise ValueError(f"device={name!r}, but torch sees {count} CUDA GPU(s): cuda:0..cuda:{count - 1}")
    return device


def register_configs() -> None:
    """Make ``TrainConfig`` the schema ``conf/train.yaml`` extends (its ``train_schema`` default)."""
    ConfigStore.instance().store(name="train_schema", node=TrainConfig)
