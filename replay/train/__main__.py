"""``python -m replay.train`` (or ``ale-replay-train``): train PPO on an Atari game, recording every episode.

Hydra composes ``conf/train.yaml`` with the command line's overrides; with ``resume=<run>`` the run's own
``config.yaml`` is the base instead, and the other overrides apply on top.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from replay.command import refuse, register_help, run_app
from replay.errors import ReplayError
from replay.train.config import TrainConfig, register_configs
from replay.train.loop import train
from replay.train.run import REFUSED, hydra_dir, resume_config

COMMAND = "python -m replay.train"
CONFIG_DIR = Path(__file__).resolve().parents[2] / "conf"

register_configs()
register_help("train", TrainConfig, CONFIG_DIR)
OmegaConf.register_new_resolver("replay_hydra_dir", hydra_dir, replace=True)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def main(cfg: DictConfig) -> None:
    try:
        if cfg.resume is not None:
            overrides = [o for o in HydraConfig.get().overrides.task if not o.startswith("resume=")]
            config = resume_config(cfg.resume, overrides)
        else:
            config = OmegaConf.to_object(cfg)
        train(config)
    except (ReplayError, ValueError, OSError, OmegaConfBaseException) as error:
        refused = REFUSED in getattr(error, "__notes__", ()) or "config" not in locals()
        if not refused:
            raise  # a fault during training keeps its traceback
        refuse(error)  # a setting or a run folder that cannot be used, explained by its message


def cli() -> None:
    """The console script ``ale-replay-train``."""
    run_app(main, COMMAND, interrupted="interrupted; a run that saved its config resumes: resume=<run_dir>")


if __name__ == "__main__":
    cli()
