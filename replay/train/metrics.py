"""The trainer's metric tables: CSV files in the run folder, appended to across resumes.

- ``episodes.csv``: one row per finished episode. ``kind`` is ``train`` or ``eval``; ``global_step`` is the
  training step count when it ended; ``policy_version`` the update index that played its last step;
  ``env_index`` the vector sub-env (``-1`` for evaluation).
- ``updates.csv``: one row per PPO update with its losses, learning rate and steps per second.

A resume rewrites both to what the run keeps (see ``replay.train``): updates up to its resume state, and the
episodes its trajectory log holds.
"""

from __future__ import annotations

import csv
import math
import time
from collections import defaultdict, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

EPISODE_FIELDS = (
    "kind",
    "global_step",
    "policy_version",
    "env_index",
    "episode_return",
    "episode_length",
    "terminated",
    "truncated",
    "wall_time",
)
UPDATE_FIELDS = (
    "policy_version",
    "global_step",
    "learning_rate",
    "policy_loss",
    "value_loss",
    "entropy",
    "approx_kl",
    "clipfrac",
    "explained_variance",
    "steps_per_second",
    "wall_time",
)


class CsvTable:
    """Append rows with fixed columns to a CSV file (header only for a new file), flushing every row."""

    def __init__(self, path: Path, fields: tuple[str, ...]) -> None:
        self.path = Path(path)
        self.fields = fields
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        self._file = self.path.open("a", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=fields)
        if fresh:
            self._writer.writeheader()

    def append(self, row: dict[str, Any]) -> None:
        self._writer.writerow(row)
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> CsvTable:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """A table's columns and rows (none if it does not exist)."""
    if not path.exists():
        return [], []
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def rewrite_rows(path: Path, keep: Callable[[list[dict[str, str]]], list[dict[str, str]]]) -> None:
    """Rewrite a table with the rows ``keep`` returns of its rows (no-op if absent or all are kept).

    The new table is written to a temporary file renamed over the old one: a kill leaves one or the other.
    """
    if not path.exists():
        return
    fields, rows = read_rows(path)
    kept = keep(rows)
    if len(kept) == len(rows):
        return
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(kept)
    partial.replace(path)


def prune_rows(path: Path, column: str, last: int) -> None:
    """Rewrite a table without the rows whose integer ``column`` exceeds ``last`` (no-op if absent)."""
    rewrite_rows(path, lambda rows: [row for row in rows if int(row[column]) <= last])


EpisodeKey = tuple[int, float, int]
"""An episode as ``episodes.csv`` tells it apart: ``(env_index, episode_return, episode_length)``."""


def _episode_key(row: dict[str, str]) -> EpisodeKey:
    return int(row["env_index"]), float(row["episode_return"]), int(row["episode_length"])


def rows_of_held_episodes(rows: list[dict[str, str]], held: dict[str, list[EpisodeKey]]) -> list[dict[str, str]]:
    """The rows of ``episodes.csv`` whose episodes ``held`` lists (per kind, in the order they finished).

    Rows are matched to the held episodes in order, so a row whose episode is not held goes even when a later
    episode looks the same; a held episode without a row is passed over. Rows of a kind not in ``held`` stay.
    """
    where: dict[tuple[str, EpisodeKey], deque[int]] = defaultdict(deque)
    for i, row in enumerate(rows):
        if row["kind"] in held:
            where[row["kind"], _episode_key(row)].append(i)
    kept = {i for i, row in enumerate(rows) if row["kind"] not in held}
    for kind, keys in held.items():
        last = -1
        for key in keys:
            candidates = where[kind, key]
            while candidates and candidates[0] < last:  # rows passed over for an earlier match are not held
                candidates.popleft()
            if candidates:
                last = candidates.popleft()
                kept.add(last)
    return [row for i, row in enumerate(rows) if i in kept]


class EpisodeTracker:
    """Running returns and lengths of the sub-envs of a NEXT_STEP vector env, and a recent-return window."""

    def __init__(self, num_envs: int, window: int = 100) -> None:
        self.returns = np.zeros(num_envs, dtype=np.float64)
        self.lengths = np.zeros(num_envs, dtype=np.int64)
        self.recent: deque[float] = deque(maxlen=window)

    def step(
        self, rewards: np.ndarray, terminated: np.ndarray, truncated: np.ndarray, stepped: np.ndarray
    ) -> list[tuple[int, float, int, bool, bool]]:
        """Account one vector step (``stepped``: False in autoreset lanes); returns finished episodes."""
        self.returns[stepped] += rewards[stepped]
        self.lengths[stepped] += 1
        finished = []
        for lane in np.flatnonzero((terminated | truncated) & stepped):
            episode = (
                int(lane),
                float(self.returns[lane]),
                int(self.lengths[lane]),
                bool(terminated[lane]),
                bool(truncated[lane]),
            )
            finished.append(episode)
            self.recent.append(episode[1])
            self.returns[lane] = 0.0
            self.lengths[lane] = 0
        return finished

    def remember(self, returns: list[float]) -> None:
        """Start the window with returns of episodes that finished before (a resumed run's last ones)."""
        self.recent.extend(returns)

    def mean_of_last(self, n: int) -> float:
        """Mean return of the last ``n`` finished episodes (fewer if fewer finished; NaN if none)."""
        last = list(self.recent)[-n:]
        return float(np.mean(last)) if last else math.nan


def recent_train_returns(path: Path, n: int) -> list[float]:
    """The returns of the last ``n`` training episodes in ``episodes.csv`` (none if it does not exist yet)."""
    _, rows = read_rows(path)
    return [float(row["episode_return"]) for row in rows if row.get("kind") == "train"][-n:]


class Scalars:
    """The metrics as TensorBoard scalars, with the tags CleanRL uses, when the ``tensorboard`` extra is installed.

    Without the ``tensorboard`` package every call does nothing: the CSV files hold the same numbers.
    """

    def __init__(self, writer: Any | None) -> None:
        self._writer = writer

    @classmethod
    def open(cls, folder: Path) -> Scalars:
        """Scalars written into ``folder`` (``<run>/tensorboard``), appended to across resumes."""
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # torch raises it when the tensorboard package is missing
            return cls(None)
        return cls(SummaryWriter(log_dir=str(folder)))

    @property
    def enabled(self) -> bool:
        return self._writer is not None

    def episode(self, global_step: int, episode_return: float, length: int) -> None:
        if self._writer is not None:
            self._writer.add_scalar("charts/episodic_return", episode_return, global_step)
            self._writer.add_scalar("charts/episodic_length", length, global_step)

    def update(self, global_step: int, learning_rate: float, stats: dict[str, float], steps_per_second: float) -> None:
        if self._writer is None:
            return
        self._writer.add_scalar("charts/learning_rate", learning_rate, global_step)
        for name in ("value_loss", "policy_loss", "entropy", "approx_kl", "clipfrac", "explained_variance"):
            self._writer.add_scalar(f"losses/{name}", stats[name], global_step)
        self._writer.add_scalar("charts/SPS", steps_per_second, global_step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def episode_row(
    kind: str,
    global_step: int,
    policy_version: int,
    env_index: int,
    episode_return: float,
    length: int,
    terminated: bool,
    truncated: bool,
) -> dict[str, Any]:
    """A row of ``episodes.csv``."""
    return {
        "kind": kind,
        "global_step": global_step,
        "policy_version": policy_version,
        "env_index": env_index,
        "episode_return": episode_return,
        "episode_length": length,
        "terminated": int(terminated),
        "truncated": int(truncated),
        "wall_time": round(time.time(), 3),
    }
