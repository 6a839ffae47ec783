"""The trainer: PPO on Atari as CleanRL's ``ppo_atari``, every episode recorded into the run's log.

Modules, in the order a run uses them: :mod:`~replay.train.config` (settings), :mod:`~replay.train.run` (the
run folder's bookkeeping), :mod:`~replay.train.envs` (the env stack), :mod:`~replay.train.network`,
:mod:`~replay.train.ppo`, :mod:`~replay.train.checkpoints`, :mod:`~replay.train.evaluation`,
:mod:`~replay.train.metrics` and :mod:`~replay.train.loop`, the loop itself. ``python -m replay.train`` is the
Hydra entry point (``__main__``). The trainer imports the engine (``replay``); the engine never imports it.
"""

from replay.train.config import CheckpointConfig, EvalConfig, RecordConfig, TrainConfig
from replay.train.envs import EnvConfig
from replay.train.evaluation import eval_seeds, milestone_versions
from replay.train.loop import train
from replay.train.ppo import PPOConfig
from replay.train.run import resume_config

__all__ = [
    "CheckpointConfig",
    "EnvConfig",
    "EvalConfig",
    "PPOConfig",
    "RecordConfig",
    "TrainConfig",
    "eval_seeds",
    "milestone_versions",
    "resume_config",
    "train",
]
