"""``python -m replay.train.rebuild_jobs``: a run's rebuild shared out as Hydra jobs, for launchers past one machine.

The run's segments (one per start: version 0 and each resume point) are independent replays. Job ``part`` of
``parts`` takes its share of them (balanced by updates, the same in every job whatever the others have rebuilt
already) and rebuilds the versions of its share not rebuilt yet into ``<run>/rebuilt/``. The shares are computed
from the ledger as each job reads it, so share out a finished run: a trainer still writing it adds resume points,
and jobs started at different times could then disagree (a version no job rebuilt is rebuilt when first asked
for, never drawn wrong). With a shared file system, a
sweep over ``part`` on any Hydra launcher rebuilds the whole run, each machine one share::

    python -m replay.train.rebuild_jobs -m run=data/runs/breakout-1 parts=4 part=0,1,2,3 \\
        hydra/launcher=submitit_slurm

A job killed part way leaves what it verified; run it again and it continues.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig

from replay.command import refuse, run_app
from replay.errors import ReplayError
from replay.train.rebuild import Rebuilder, share

COMMAND = "python -m replay.train.rebuild_jobs"
CONFIG_DIR = Path(__file__).resolve().parents[2] / "conf"


@dataclass
class RebuildJob:
    """One job of a rebuild.

    Attributes:
        run: The run folder (shared by every job).
        parts: Jobs the run is shared out to.
        part: This job's share, ``0..parts - 1``.
        threads: Torch threads; ``None``: as the run trained (another count fails its digests).
        progress: Show a progress bar per segment.
    """

    run: str = MISSING
    parts: int = 1
    part: int = 0
    threads: int | None = None
    progress: bool = True


ConfigStore.instance().store(name="rebuild_schema", node=RebuildJob)


def rebuild_part(run: str | Path, part: int, parts: int, *, threads: int | None = None, progress: bool = True) -> int:
    """Rebuild share ``part`` of ``parts`` of ``run``; returns the versions rebuilt (those on disk already are
    skipped)."""
    share([], part, parts)  # refuse a part outside the parts before opening the run
    rebuilder = Rebuilder(run, threads=threads, keep=None, progress=progress)
    mine = share(rebuilder.segments(), part, parts)
    left = [version for segment in mine for version in segment.targets if not rebuilder.cached(version)]
    rebuilder.prepare(left)  # each version starts where its segment does, so these are the share's replays
    return len(left)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="rebuild")
def main(cfg: DictConfig) -> None:
    started = time.perf_counter()
    try:
        count = rebuild_part(cfg.run, cfg.part, cfg.parts, threads=cfg.threads, progress=cfg.progress)
    except (ReplayError, ValueError, OSError) as error:
        refuse(error)
    seconds = time.perf_counter() - started
    print(f"part {cfg.part} of {cfg.parts}: rebuilt {count} versions of {cfg.run} in {seconds:.0f} s", file=sys.stderr)


def cli() -> None:
    run_app(main, COMMAND)


if __name__ == "__main__":
    cli()
