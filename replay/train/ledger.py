"""The learning ledger (``<run>/learning.jsonl``): what replaying a run's learning needs, one JSON line each.

- ``session``: written at each launch and resume, before its first update: the version it starts from, the log
  stream its rollouts go to, the seed, the PPO settings, and what decides the bits of an update besides its inputs
  (torch's version, thread count, CPU capability, machine, device), the processor's name (a hint for messages),
  with the digest of the starting weights.
- ``update``: after each update: the version it made, the learning rate it used, the digest of the weights.
- ``resume_point``: after a resume point is written: its version, file and the digest of its whole state.

Every line carries a CRC of its other fields, so a damaged digest is told apart from a rebuild that differs.
Lines are appended and flushed one at a time; an unterminated last line is one a kill cut short, and is ignored.
A resume cuts the ledger back to its resume state (:func:`prune`), as it does ``updates.csv``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from replay.errors import DamagedRecordError, NotRebuildableError
from replay.train import digests
from replay.train.ppo import PPOConfig

FORMAT = "ale-replay/learning-ledger"
FORMAT_VERSION = 1
FIX = (
    "exact rebuilds of this run are not available: render it with its saved checkpoints (leave checkpoint=exact "
    "out), or restore the file from a copy"
)


@dataclass(frozen=True)
class Session:
    """One launch or resume of the trainer, from ``from_version`` on."""

    from_version: int
    stream: int | None  # the log stream of its training rollouts; None when the run recorded no log
    seed: int
    ppo: Mapping[str, Any]
    torch: str
    threads: int
    cpu: str
    machine: str
    device: str
    digest: str  # the weights it started from
    cpu_model: str = ""  # the processor's name; not recorded by the first ledgers

    @property
    def ppo_config(self) -> PPOConfig:
        return PPOConfig(**self.ppo)

    def brief(self, threads: int) -> str:
        """Why a rebuild here with ``threads`` torch threads may differ, in a few words."""
        if threads != self.threads:
            return f"{threads} torch thread{'s' * (threads != 1)} here, {self.threads} in training"
        for key, recorded, here in self._differing()[:1]:
            return f"{_NAMES[key]} {here} here, {recorded} in training"
        return "its rebuild differs from the recorded one"

    def differences(self) -> list[str]:
        """What differs between this machine and the one that trained this session (threads aside): torch, the
        CPU capability torch dispatches to and the architecture, which decide an update's bits."""
        return [f"{key} {recorded!r} here {here!r}" for key, recorded, here in self._differing() if key in DECISIVE]

    def other_processor(self) -> str | None:
        """The processor that trained this session where it is not this one's (the same capability may still
        run other code: a BLAS picks its kernels by processor too); ``None`` where it is or was not recorded."""
        found = [
            f"processor {recorded!r} here {here!r}" for key, recorded, here in self._differing() if key == "cpu_model"
        ]
        return found[0] if found else None

    def _differing(self) -> list[tuple[str, str, str]]:
        """``(key, recorded, here)`` for each decisive setting that differs, then the processor's name (where the
        ledger recorded one)."""
        here = current_setup()
        keys = [*DECISIVE, *(["cpu_model"] if self.cpu_model else [])]
        return [(key, getattr(self, key), here[key]) for key in keys if here[key] != getattr(self, key)]


DECISIVE = ("cpu", "torch", "machine")  # what decides an update's bits, besides the thread count and device
_NAMES = {"cpu": "CPU", "torch": "torch", "machine": "machine", "cpu_model": "CPU"}


@dataclass(frozen=True)
class Update:
    version: int  # the version the update made
    learning_rate: float
    digest: str


@dataclass(frozen=True)
class ResumePoint:
    version: int
    file: str  # its name in checkpoints/resume_points/
    digest: str


def current_setup() -> dict[str, str]:
    """What decides an update's bits on this machine, besides the thread count and device."""
    return {
        "torch": torch.__version__,
        "cpu": torch.backends.cpu.get_cpu_capability(),
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
    }


def cpu_model() -> str:
    """The processor's name (``model name`` in ``/proc/cpuinfo``, else what :mod:`platform` says)."""
    try:
        found = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
    except OSError:
        found = None
    return found[1].strip() if found else platform.processor()


class LedgerWriter:
    """Appends lines to a run's ledger, each flushed at once."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._file = self.path.open("a", encoding="utf-8")

    def session(
        self,
        *,
        from_version: int,
        stream: int | None,
        seed: int,
        ppo: PPOConfig,
        threads: int,
        device: torch.device,
        weights: torch.nn.Module,
    ) -> None:
        record = Session(
            from_version=from_version,
            stream=stream,
            seed=seed,
            ppo=dataclasses.asdict(ppo),
            threads=threads,
            device=str(device),
            digest=digests.weights_digest(weights),
            **current_setup(),
        )
        self._append(
            {"kind": "session", "format": FORMAT, "format_version": FORMAT_VERSION, **dataclasses.asdict(record)}
        )

    def update(self, version: int, learning_rate: float, weights: torch.nn.Module) -> None:
        record = Update(version, float(learning_rate), digests.weights_digest(weights))
        self._append({"kind": "update", **dataclasses.asdict(record)})

    def resume_point(self, version: int, file: str, digest: str) -> None:
        self._append({"kind": "resume_point", **dataclasses.asdict(ResumePoint(version, file, digest))})

    def _append(self, fields: dict[str, Any]) -> None:
        self._file.write(_line(fields))
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> LedgerWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _line(fields: dict[str, Any]) -> str:
    body = json.dumps(fields, sort_keys=True, allow_nan=False)
    return json.dumps({**fields, "crc": zlib.crc32(body.encode())}, sort_keys=True, allow_nan=False) + "\n"


@dataclass(frozen=True)
class Ledger:
    """A run's ledger as read: its sessions in order, and every update and resume point by version."""

    path: Path
    sessions: tuple[Session, ...]
    updates: Mapping[int, Update]
    resume_points: Mapping[int, ResumePoint]

    def session_of(self, update: int) -> Session:
        """The session that ran update ``update`` (the rollout of version ``update``, learning version + 1)."""
        found = [s for s in self.sessions if s.from_version <= update]
        if not found:
            raise NotRebuildableError(f"{self.path}: no session of the trainer starts at or before version {update}")
        return found[-1]

    def digest(self, version: int) -> str:
        """The recorded digest of ``version``'s weights."""
        if version in self.updates:
            return self.updates[version].digest
        starts = [s.digest for s in self.sessions if s.from_version == version]
        if not starts:
            last = max(self.updates, default=0)
            raise NotRebuildableError(
                f"{self.path}: version {version} has no recorded digest (the ledger holds versions 0..{last}); "
                "it was never trained, or the run was killed before it"
            )
        return starts[-1]

    @property
    def last_version(self) -> int:
        return max([*self.updates, *(s.from_version for s in self.sessions)], default=0)


def read(path: Path) -> Ledger:
    """Read and check a ledger; :class:`NotRebuildableError` if there is none, :class:`DamagedRecordError` if a
    line is damaged."""
    path = Path(path)
    if not path.is_file():
        raise NotRebuildableError(
            f"{path} does not exist: the run was trained before exact rebuilds were recorded (or by another "
            "trainer); its frames are explained by the nearest saved checkpoints",
            brief="the run was recorded before exact rebuilds",
        )
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.split("\n")[:-1]  # the last piece is empty, or a line a kill cut short
    sessions: list[Session] = []
    updates: dict[int, Update] = {}
    points: dict[int, ResumePoint] = {}
    for number, line in enumerate(lines, 1):
        fields = _parse(path, number, line)
        kind = fields.pop("kind")
        try:
            if kind == "session":
                fields.pop("format"), fields.pop("format_version")
                session = Session(**fields)
                PPOConfig(**session.ppo)
                _check_digest(path, number, session.digest)
                sessions.append(session)
            elif kind == "update":
                update = Update(**fields)
                _check_digest(path, number, update.digest)
                updates[update.version] = update
            elif kind == "resume_point":
                point = ResumePoint(**fields)
                _check_digest(path, number, point.digest)
                points[point.version] = point
            else:
                raise TypeError(f"unknown kind {kind!r}")
        except TypeError as error:
            raise DamagedRecordError(
                f"{path} line {number} is not a ledger record ({error}): {line[:120]!r}; {FIX}"
            ) from None
    if not sessions:
        raise DamagedRecordError(f"{path} holds no session line; the file is damaged or was cut short; {FIX}")
    return Ledger(path, tuple(sessions), updates, points)


def _parse(path: Path, number: int, line: str) -> dict[str, Any]:
    try:
        fields = json.loads(line)
        crc = fields.pop("crc")
    except (ValueError, KeyError, AttributeError, TypeError):
        raise DamagedRecordError(
            f"{path} line {number} is damaged (not a ledger line): {line[:120]!r}; {FIX}"
        ) from None
    body = json.dumps(fields, sort_keys=True, allow_nan=False)
    if zlib.crc32(body.encode()) != crc:
        raise DamagedRecordError(
            f"{path} line {number} is damaged: its CRC {crc} does not match its content {line[:120]!r}; {FIX}"
        )
    if fields.get("format", FORMAT) != FORMAT or fields.get("format_version", FORMAT_VERSION) > FORMAT_VERSION:
        raise DamagedRecordError(
            f"{path} line {number} is {fields.get('format')!r} version {fields.get('format_version')!r}; this "
            f"ale-replay reads {FORMAT!r} up to version {FORMAT_VERSION}: upgrade ale-replay"
        )
    return fields


def _check_digest(path: Path, number: int, value: object) -> None:
    if not isinstance(value, str) or not digests.PATTERN.match(value):
        raise DamagedRecordError(f"{path} line {number} holds digest {value!r}, not {digests.LENGTH} hex digits; {FIX}")


def prune(path: Path, version: int) -> None:
    """Cut the ledger back to ``version`` (a resume's state): what came after is redone with other data."""
    path = Path(path)
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").split("\n")[:-1]:
        try:
            fields = json.loads(line)
            at = fields.get("from_version", fields.get("version"))
        except (ValueError, AttributeError):
            at = None  # a damaged line is kept, for read() to report
        if at is None or at <= version:
            kept.append(line + "\n")
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", encoding="utf-8") as f:
        f.writelines(kept)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)
