"""What the viewer's pages read beside the frames: a run's metrics (its CSV files as columns) and an episode's
network readings (``render.explain``: the policy's distribution and the value at every step), both as JSON-ready
data with ``None`` for what is unknown (the API's JSON is strict: no NaN).
"""

from __future__ import annotations

import csv
import math
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from render.explanations import explain
from render.policies import REBUILT, rebuilt_versions
from replay.reader import TrajectoryLog
from replay.run_folder import RunFolder

# on a frame of the full overlay: its episode's versions in rebuilt/ when it was drawn ("501,502"), to compare
# with the readings' "rebuilt"
REBUILT_HEADER = "X-Rebuilt-Versions"
METRIC_FILES = {"episodes": "episodes.csv", "updates": "updates.csv"}


class Metrics:
    """:func:`read_metrics` of each run, read again only when one of its files changed (size or time)."""

    def __init__(self) -> None:
        self._read: dict[Path, tuple[tuple[Any, ...], dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def of(self, run: Path) -> dict[str, Any]:
        key = tuple(_stamp(run / name) for name in METRIC_FILES.values())
        with self._lock:
            known = self._read.get(run)
            if known is not None and known[0] == key:
                return known[1]
        metrics = read_metrics(run)
        with self._lock:
            self._read[run] = (key, metrics)
        return metrics


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def read_metrics(run: Path) -> dict[str, Any]:
    """The run's ``episodes.csv`` and ``updates.csv`` as ``{"episodes": {column: [...]}, "updates": {...}}``:
    numbers where a cell reads as one (finite), else the text; a missing file is ``{}`` with its name in
    ``missing``; a file that is not CSV with a header names the file and the line in ``errors``."""
    result: dict[str, Any] = {"missing": [], "errors": []}
    for key, name in METRIC_FILES.items():
        path = run / name
        result[key] = {}
        if not path.is_file():
            result["missing"].append(name)
            continue
        try:
            with path.open(newline="") as file:
                reader = csv.DictReader(file)
                columns: dict[str, list[Any]] = {field: [] for field in reader.fieldnames or []}
                for row in reader:
                    for field in columns:
                        columns[field].append(_cell(row.get(field)))
        except (OSError, UnicodeDecodeError, csv.Error) as error:
            result["errors"].append(f"{path}: {error}")
            continue
        result[key] = columns
    return result


def _cell(text: str | None) -> float | int | str | None:
    if text is None or text == "":
        return None
    try:
        number = float(text)
    except ValueError:
        return text
    if not math.isfinite(number):
        return None
    return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number


class Readings:
    """Network readings of episodes, computed once per (log, size, mtime, files in ``rebuilt/``, episode) and kept for
    the ``capacity`` most recently asked; computing one replays the episode with its networks (about a second per
    thousand steps here). Safe across threads: one computation per episode at a time."""

    def __init__(self, capacity: int = 16) -> None:
        self.capacity = capacity
        self._done: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()
        self._locks: dict[tuple[Any, ...], threading.Lock] = {}
        self._lock = threading.Lock()

    def episode(self, run: Path, index: int) -> dict[str, Any]:
        """``{"episode", "actions", "explained", "rebuilt", "frames": [...]}``, one frame per step ``0..length``
        with ``step``, ``action``, ``policy_version``, ``checkpoint_version``, ``probabilities``, ``q_values`` and
        ``value`` (``None`` where the run has no network to explain the frame). ``rebuilt``: the episode's versions
        on disk in ``rebuilt/``, which explain their frames where they verify (``checkpoint=rebuilt``)."""
        log = RunFolder(run).log
        stat = log.stat()
        key = (str(log.resolve()), stat.st_size, stat.st_mtime_ns, _rebuilt_files(run), index)
        with self._lock:
            if key in self._done:
                self._done.move_to_end(key)
                return self._done[key]
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            with self._lock:
                if key in self._done:
                    return self._done[key]
            reading = _read(run, log, index)
            with self._lock:
                self._done[key] = reading
                self._locks.pop(key, None)
                while len(self._done) > self.capacity:
                    self._done.popitem(last=False)
            return reading


def _read(run: Path, log: Path, index: int) -> dict[str, Any]:
    has_networks = RunFolder(run).checkpoints.is_dir()
    with TrajectoryLog(log, check_environment=False) as opened:
        actions = list(opened.action_meanings)
        played = opened.episodes[index].policy_versions
    rebuilt = sorted(rebuilt_versions(run, played)) if has_networks else []
    frames = []
    # the versions rebuilt already explain their frames exactly, as in the episode player
    for frame in explain(run, index, checkpoint=REBUILT if has_networks else None):
        frames.append(
            {
                "step": frame.step,
                "action": frame.action,
                "policy_version": frame.policy_version,
                "checkpoint_version": frame.checkpoint_version,
                "probabilities": None if frame.probabilities is None else [float(p) for p in frame.probabilities],
                "q_values": None if frame.q_values is None else [float(q) for q in frame.q_values],
                "value": None if frame.value is None or not math.isfinite(frame.value) else float(frame.value),
            }
        )
    return {"episode": index, "actions": actions, "explained": has_networks, "rebuilt": rebuilt, "frames": frames}


def _rebuilt_files(run: Path) -> frozenset[str]:
    """The versions in ``run``'s ``rebuilt/`` folder, as file names (files land there by rename)."""
    try:
        return frozenset(name for name in os.listdir(RunFolder(run).rebuilt) if name.endswith(".pt"))
    except OSError:
        return frozenset()
