"""Run-folder bookkeeping: a new folder's name, the config it keeps, and what a resume cuts back.

A resumed run restores weights, optimizer, counters and the torch RNG; the emulators restart from fresh seeded
resets, so it is not bit-identical to an uninterrupted run, and episodes in flight at the kill stay in the log as
unfinished. ``updates.csv`` is cut back to the resume state and ``episodes.csv`` to the finished episodes the log
holds (rows of episodes that ended after its last flush go). A run killed before its first ``resume.pt`` (while
saving or evaluating version 0) resumes from the start: version 0 with the same seed, so the same initial weights
as its ``v000000.pt``, into the same log, keeping the evaluation episodes it recorded.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from omegaconf import OmegaConf

from replay.errors import CheckpointError
from replay.reader import EpisodeRecord, TrajectoryLog
from replay.run_folder import RunFolder
from replay.train import ledger
from replay.train.checkpoints import DTYPES, CheckpointIndex, checkpoint_path, load_policy, resume_point_path
from replay.train.config import TrainConfig
from replay.train.metrics import EpisodeKey, prune_rows, rewrite_rows, rows_of_held_episodes
from replay.train.network import ActorCritic

# Added (PEP 678) to an error raised before training began, the run folder untouched: a refusal to report in a
# line, not a fault mid-run whose traceback matters.
REFUSED = "replay.train: refused before training began; the run folder is unchanged"


def refused(error: Exception) -> Exception:
    error.add_note(REFUSED)
    return error


def new_run_dir(config: TrainConfig) -> Path:
    game = config.env.id.split("/")[-1].split("-")[0].lower()
    base = Path("data/runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{game}-s{config.seed}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def episodes_held(
    config: TrainConfig, log_path: Path, redone: Sequence[EpisodeRecord]
) -> dict[str, list[EpisodeKey]] | None:
    """The finished episodes the log holds per tag, keyed as ``episodes.csv`` rows, in the order they finished;
    ``None`` if the run records no log. ``redone``: episodes whose rows the resume writes again (see
    :func:`replay.train.evaluation.evaluation_missing`), left out."""
    if not config.record.enabled or not log_path.is_file():
        return None
    with TrajectoryLog(log_path) as log:
        return {
            tag: [
                (e.env_index if tag == "train" else -1, e.total_reward, e.length)
                for e in log.episodes
                if e.tag == tag and e.finished and e not in redone
            ]
            for tag in ("train", "eval")
        }


def forget_lost_updates(
    run_dir: Path, version: int, global_step: int, held: dict[str, list[EpisodeKey]] | None
) -> None:
    """Drop what a killed run wrote after its resume state: those updates are redone with other data.

    Update rows, checkpoints, resume points and ledger lines of versions after ``version`` go. Episode rows keep
    to the episodes the log holds (``held``, see :func:`episodes_held`): rows of episodes that ended after the
    log's last flush go, while those of the redone rollout that reached the log stay, as they were played and
    recorded. Without a log, the rows after ``global_step`` go.
    """
    folder = RunFolder(run_dir)
    checkpoints = folder.checkpoints
    for stale in CheckpointIndex(checkpoints).versions:
        if stale > version:
            checkpoint_path(checkpoints, stale).unlink()
    if folder.resume_points.is_dir():
        for stale in CheckpointIndex(folder.resume_points).versions:
            if stale > version:
                resume_point_path(folder.resume_points, stale).unlink()
    ledger.prune(folder.ledger, version)
    prune_rows(folder.updates, "policy_version", version)
    if held is None:
        prune_rows(folder.episodes, "global_step", global_step)
    else:
        rewrite_rows(folder.episodes, lambda rows: rows_of_held_episodes(rows, held))


def check_initial_weights(path: Path, model: ActorCritic, config: TrainConfig) -> None:
    """A run resumed from the start must begin with the policy its ``v000000.pt`` holds (and its logged evaluation
    played): the same seed gives the same weights."""
    saved, ref = load_policy(path, env_id=config.env.id, n_actions=model.n_actions)
    fresh = model.state_dict()
    if not all(torch.equal(fresh[k].to(DTYPES[ref.dtype]).float(), v) for k, v in saved.state_dict().items()):
        raise CheckpointError(
            f"cannot resume {config.resume} from the start: {path} holds other initial weights than seed="
            f"{config.seed} gives; resume it with the seed of its config.yaml"
        )


def save_config(path: Path, config: TrainConfig, *, new: bool) -> None:
    """Write ``config.yaml`` whole or not at all: a kill mid-write would leave a run that resumes with the defaults.
    ``new``: raise :class:`FileExistsError` rather than replace one (a run launched into the folder a moment ago)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(OmegaConf.to_yaml(OmegaConf.structured(config)))
    if new:
        try:
            os.link(partial, path)
        finally:
            partial.unlink(missing_ok=True)
    else:
        partial.replace(path)


def resume_config(run_dir: str | Path, overrides: Sequence[str] = ()) -> TrainConfig:
    """The stored config of a run with ``key=value`` overrides applied and ``resume`` set to the run."""
    path = RunFolder(run_dir).config
    if not path.is_file():
        raise CheckpointError(f"cannot resume {run_dir}: {path} does not exist; pass a run folder made by replay.train")
    merged = OmegaConf.merge(
        OmegaConf.structured(TrainConfig), OmegaConf.load(path), OmegaConf.from_dotlist(list(overrides))
    )
    merged.resume = str(run_dir)
    merged.run_dir = None
    return OmegaConf.to_object(merged)


def hydra_dir(run_dir: str | None, resume: str | None, stamp: str) -> str:
    """Hydra's own files go into the run folder, unless it cannot hold them: a resume of something that is no
    run folder, or a ``run_dir`` that is a file. Then they go to ``outputs/`` and :func:`train` explains."""
    if resume is not None:
        usable = RunFolder(resume).config.is_file()
        folder = resume
    else:
        usable = run_dir is not None and not Path(run_dir).is_file()
        folder = run_dir
    return f"{folder}/hydra/{stamp}" if usable else f"outputs/train/{stamp}"
