"""Which runs the viewer shows: every run folder directly in the folders it was given, by a stable id.

A run folder holds ``trajectories.h5`` (:class:`replay.run_folder.RunFolder`). Each folder given with ``--runs``
may itself be a run; each of its sub-folders (hidden ones aside) is listed, a run or not: a folder without a
readable log is listed with its error, never hidden and never fatal. Ids are slugs made from the given folder's
name and the run's name (``sample-breakout``); a request names a run only by such an id, looked up among those
found, never by a path, so nothing outside the given folders can be reached.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from replay.errors import ReplayError
from replay.reader import TrajectoryLog
from replay.run_folder import RunFolder
from replay.show import RunSummary, episode_json, summarise
from replay.storage import LOCK_SUFFIX

_UNSAFE = re.compile(r"[^a-z0-9._]+")
RUN_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,199}$")  # what discovery makes; anything else is refused at once


@dataclass(frozen=True)
class RunEntry:
    """One folder found: its id, path and, when its log reads, the summary and episodes (as
    :func:`replay.show.episode_json` gives them) ``python -m replay.show --json`` prints; else its error."""

    id: str
    path: Path
    summary: RunSummary | None
    episodes: tuple[dict[str, Any], ...]
    error: str | None

    @property
    def log(self) -> Path:
        return RunFolder(self.path).log

    def as_json(self) -> dict[str, Any]:
        """The ``GET /api/runs`` record: ``live`` is whether a trainer holds the log's writer lock now."""
        s = self.summary
        return {
            "id": self.id,
            "path": str(self.path),
            "game": s.game if s else None,
            "env_steps": s.env_steps if s else None,
            "episodes": sum(n["finished"] + n["unfinished"] for n in s.episodes.values()) if s else None,
            "live": is_live(self.log),
            "error": self.error,
        }


class RunCatalogue:
    """The runs in ``folders``, found again on every :meth:`scan`; a log's summary is read again only when the
    file's size or modification time changed."""

    def __init__(self, folders: list[Path]) -> None:
        self.folders = [Path(f) for f in folders]
        self._read: dict[Path, tuple[tuple[int, int], RunSummary, tuple[dict[str, Any], ...]]] = {}
        self._entries: dict[str, RunEntry] = {}
        self._lock = threading.Lock()

    def scan(self) -> list[RunEntry]:
        with self._lock:
            entries: dict[str, RunEntry] = {}
            for root in self.folders:
                for folder in _candidates(root):
                    run_id = _unique(_slug(root, folder), entries)
                    entries[run_id] = self._entry(run_id, folder)
            self._entries = entries
            return list(entries.values())

    def get(self, run_id: str) -> RunEntry | None:
        """The run ``run_id``, its log read again if it changed since (a live run's episodes grow); scanning again
        when the id is not known yet."""
        if not RUN_ID.match(run_id):
            return None
        if run_id not in self._entries:
            self.scan()
        with self._lock:
            entry = self._entries.get(run_id)
            if entry is not None:
                entry = self._entries[run_id] = self._entry(run_id, entry.path)
            return entry

    def _entry(self, run_id: str, folder: Path) -> RunEntry:
        log = RunFolder(folder).log
        if not log.is_file():
            error = f"{folder}: not a run folder (no {log.name}); runs are made by python -m replay.train"
            return RunEntry(run_id, folder, None, (), error)
        try:
            stat = log.stat()
            key = (stat.st_size, stat.st_mtime_ns)
            cached = self._read.get(log)
            if cached is None or cached[0] != key:
                with TrajectoryLog(log, check_environment=False) as opened:
                    summary = summarise(folder, opened)
                    episodes = tuple(episode_json(e) for e in opened.episodes)
                cached = self._read[log] = (key, summary, episodes)
        except (ReplayError, OSError) as error:
            return RunEntry(run_id, folder, None, (), str(error))
        return RunEntry(run_id, folder, cached[1], cached[2], None)


def is_live(log: Path) -> bool:
    """Whether a trainer is writing ``log`` now: its ``<log>.lock`` exists and the kernel lists an ``flock`` on
    that file (``/proc/locks``). Probing with a lock of our own would make a trainer starting at that moment
    refuse to record, so the viewer only looks. Without ``/proc`` (not Linux), a lock file left is taken as live.
    """
    lock = log.with_name(log.name + LOCK_SUFFIX)
    try:
        inode = lock.stat().st_ino
    except OSError:
        return False
    try:
        table = Path("/proc/locks").read_text()
    except OSError:
        return True
    for line in table.splitlines():
        fields = line.split()
        if len(fields) > 5 and fields[1] == "FLOCK" and fields[5].rsplit(":", 1)[-1] == str(inode):
            return True
    return False


def _candidates(root: Path) -> list[Path]:
    """``root`` if it is a run, else its sub-folders in name order (none if ``root`` is not a folder)."""
    if not root.is_dir():
        return []
    if RunFolder(root).log.is_file():
        return [root]
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and not p.is_symlink())


def _slug(root: Path, folder: Path) -> str:
    parts = [root.resolve().name] + ([folder.name] if folder != root else [])
    text = _UNSAFE.sub("-", "-".join(parts).lower()).strip("-.") or "run"
    return text[:180]


def _unique(run_id: str, taken: dict[str, RunEntry]) -> str:
    candidate, n = run_id, 2
    while candidate in taken:
        candidate, n = f"{run_id}-{n}", n + 1
    return candidate
