"""The Hydra entry point behind ``python -m render``: it unpacks the config and calls a product function.

Examples:
    python -m render product=episode episode=best overlay=full output=best.mp4
    python -m render run=data/runs/<run> product=timelapse product.target_duration=60
    python -m render log=some.h5 overlay=raw output=raw.mp4
    python -m render -m overlay=raw,full video=preview,hq            # one video per job
    python -m render -m overlay=raw,full hydra/launcher=joblib         # jobs in parallel
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from render.config import RenderConfig, register_configs
from render.errors import RenderConfigError, RenderError
from render.policies import EXACT, REBUILT
from render.products import render_episode, render_progression, render_timelapse
from render.source import RenderResult, RenderSource
from replay.command import refuse, register_help, run_app
from replay.errors import ReplayError
from replay.run_folder import RunFolder

register_configs()
log = logging.getLogger(__name__)
# Absolute, because the entry point runs as ``render.__main__`` importing this module (Hydra would otherwise
# look for a Python package named ``conf``).
CONFIG_DIR = Path(__file__).resolve().parent.parent / "conf"
register_help("render", RenderConfig, CONFIG_DIR)


def default_output(kind: str, source: RenderSource, sweep_dir: Path | None) -> Path:
    """Where a render without ``output=`` goes: ``<product>.mp4`` in a sweep job's own folder; otherwise
    ``<product>-<time>.mp4`` in the ``videos/`` folder of the run (or beside the log given by ``log=``)."""
    if sweep_dir is not None:
        return sweep_dir / f"{kind}.mp4"
    folder = RunFolder(source.run if source.run is not None else source.log.parent).videos
    return folder / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}.mp4"


def run_product(cfg: DictConfig, sweep_dir: Path | None = None) -> RenderResult:
    """Render what a composed ``render`` config asks for; ``sweep_dir``: a sweep job's folder, where a video
    without ``output`` goes (see :func:`default_output`)."""
    try:
        config = OmegaConf.to_container(cfg, resolve=True)
        settings = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as error:  # an interpolation on the command line that resolves to nothing
        problem = str(error).strip().splitlines()[0]
        raise RenderConfigError(f"the settings cannot be resolved ({problem}); fix or quote that override") from None
    # Paths absolute once, for the product and its sidecar alike (not resolved: an output that is a symlink is
    # replaced, not followed); no run when a log= replaced it.
    for key in ("run", "log", "checkpoint", "output"):
        if config.get(key) and not (
            key == "checkpoint" and config[key] in (EXACT, REBUILT)
        ):  # empty output=: default place
            config[key] = os.path.abspath(to_absolute_path(config[key]))
    if config.get("log") is not None:
        config["run"] = None
    torch.set_num_threads(settings.torch_threads)
    source = RenderSource.resolve(run=config["run"], log=config["log"], checkpoint=config["checkpoint"])
    kind = settings.product.kind
    output = Path(config["output"]) if config["output"] else default_output(kind, source, sweep_dir)
    common = {
        "overlay": settings.overlay,
        "video": settings.video,
        "config": config,
        "workers": settings.workers,
        "device": settings.device,
    }
    if kind == "episode":
        return render_episode(source, output, episode=settings.episode, product=settings.product, **common)
    if kind == "timelapse":
        return render_timelapse(source, output, selection=settings.selection, product=settings.product, **common)
    return render_progression(source, output, product=settings.product, **common)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="render")
def main(cfg: DictConfig) -> None:
    hydra_config = HydraConfig.get()
    if hydra_config.mode == RunMode.MULTIRUN and cfg.output and "${" not in str(OmegaConf.to_container(cfg)["output"]):
        log.warning(
            "output=%s names one file: jobs of this sweep that write it overwrite each other (the last to finish "
            "wins); leave output unset for a video per job folder, or put ${hydra:job.num} in its name",
            cfg.output,
        )
    with _terminate_as_exit():
        try:
            sweep_dir = Path(hydra_config.runtime.output_dir) if hydra_config.mode == RunMode.MULTIRUN else None
            result = run_product(cfg, sweep_dir)
        except (RenderError, ReplayError) as error:
            refuse(error)  # a mistake in the input, explained by its message: no traceback (as replay.verify does)
    log.info("wrote %s (%d frames, episodes %s)", result.output, result.frames, list(result.episodes))


@contextmanager
def _terminate_as_exit() -> Iterator[None]:
    """Turn SIGTERM (``kill``, ``timeout``, a cluster's pre-emption) into ``SystemExit(143)`` while rendering, so
    the encoder discards its temporary file and worker processes stop, as on Ctrl-C."""

    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, terminate)
    except ValueError:  # not the main thread (some launchers): leave the default
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def cli() -> None:
    """``python -m render`` and the console script ``ale-replay-render``."""
    run_app(main, "python -m render", interrupted="interrupted; the video being written was discarded")
