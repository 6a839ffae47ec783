"""What a product renders from and what it wrote: a log with, optionally, a run's checkpoints or one checkpoint file
(:class:`RenderSource`), and the video written with the episodes and checkpoints it shows (:class:`RenderResult`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from render.errors import RenderConfigError
from render.policies import EXACT, REBUILT
from replay.run_folder import RunFolder


@dataclass(frozen=True)
class RenderSource:
    """Where frames and networks come from: a log and, optionally, a run's checkpoints or one checkpoint
    file."""

    log: Path
    run: Path | None = None
    checkpoint: Path | None = None
    exact: bool = False  # checkpoint=exact: each frame by the version that played it, rebuilt
    rebuilt: bool = False  # checkpoint=rebuilt: the versions rebuilt already, the nearest checkpoints for the rest

    @classmethod
    def resolve(cls, *, run: str | Path | None, log: str | Path | None, checkpoint: str | Path | None) -> RenderSource:
        """``log`` wins over ``run``; a run folder must hold ``trajectories.h5``."""
        exact, rebuilt = checkpoint == EXACT, checkpoint == REBUILT
        file = None if checkpoint is None or exact or rebuilt else Path(checkpoint)
        if (exact or rebuilt) and (log is not None or run is None):
            raise RenderConfigError(
                f"checkpoint={checkpoint} uses the rebuilt networks of a training run: pass run=<run_dir>, not "
                "log=<file>"
            )
        if log is not None:
            if Path(log).is_dir():
                raise RenderConfigError(
                    f"log={log} is a folder; pass run={log} for a run folder, or log=<the .h5 file> for a log"
                )
            return cls(Path(log), None, file)
        if run is None:
            raise RenderConfigError("nothing to render: pass run=<run_dir> or log=<file.h5>")
        folder = Path(run)
        if folder.is_file():
            raise RenderConfigError(f"run={run} is a file; pass log={run} for a log file, or run=<the run's folder>")
        if not folder.exists():
            raise RenderConfigError(
                f"run={run}: there is no such folder ({folder.resolve()}); a relative run= is taken from the folder "
                "you run the command in: pass run=<the run's folder> or log=<file.h5>"
            )
        if not RunFolder(folder).log.is_file():
            raise RenderConfigError(
                f"{folder} holds no {RunFolder(folder).log.name}; pass run=<a folder made by python -m replay.train> "
                "or log=<file.h5>"
            )
        return cls(RunFolder(folder).log, folder, file, exact, rebuilt)

    @property
    def checkpoints(self) -> Path | None:
        if self.run is None or not RunFolder(self.run).checkpoints.is_dir():
            return None
        return RunFolder(self.run).checkpoints


@dataclass(frozen=True)
class RenderResult:
    """What a product wrote."""

    output: Path
    frames: int
    episodes: tuple[int, ...]
    checkpoints: Mapping[str, int]
