"""Errors raised by ``replay``: one small hierarchy, every message names the file, the value and the fix."""

from __future__ import annotations

import errno
import os
import re


class ReplayError(Exception):
    """Base class of every error this package raises on purpose."""


class LogFormatError(ReplayError):
    """A file is missing, is not a trajectory log, is damaged, or has a layout this version cannot read."""


class EnvironmentMismatchError(ReplayError):
    """The log was recorded with another emulator, ROM or gymnasium than the one installed."""


class EpisodeIndexError(ReplayError, IndexError):
    """An episode index outside the log."""


class DesyncError(ReplayError):
    """Re-simulation stopped matching what was recorded.

    ``step`` is the position of the first sync check that differs and ``matched`` the last position known to
    match (an earlier check or the anchor): checks are sparse, so the divergence began in ``matched+1..step``.
    """

    def __init__(
        self, message: str, *, episode: int | None = None, step: int | None = None, matched: int | None = None
    ) -> None:
        super().__init__(message)
        self.episode = episode
        self.step = step
        self.matched = matched


class RecordingError(ReplayError):
    """The recorder was used in a way it cannot record exactly (e.g. an env without an ALE base)."""


class ScreenCaptureError(ReplayError, ValueError):
    """Every emulated frame of a step was asked for, from an env stack whose frames cannot all be captured."""


class CheckpointError(ReplayError):
    """A checkpoint is missing, corrupt, unsafe or does not match the log or network it is used with."""


class RebuildError(ReplayError):
    """A policy version cannot be rebuilt exactly from a run's files (``replay.train.rebuild``).

    ``brief`` says why in a few words, for an overlay's one line; the message says it in full.
    """

    brief = "this version cannot be rebuilt"

    def __init__(self, message: str, *, brief: str | None = None) -> None:
        super().__init__(message)
        if brief is not None:
            self.brief = brief


class NotRebuildableError(RebuildError):
    """The run's files do not hold what a rebuild needs: a run recorded before exact rebuilds, without a log, or
    a version whose rollouts the log does not hold."""

    brief = "the run's files cannot rebuild this version"


class UnverifiedRebuildError(RebuildError):
    """A rebuild ran but does not reproduce the recorded digests or actions: another thread count, machine or
    torch. ``version`` is the first version that differs."""

    brief = "its rebuild differs from the recorded one"

    def __init__(self, message: str, *, version: int, brief: str | None = None) -> None:
        super().__init__(message, brief=brief)
        self.version = version


class DamagedRecordError(RebuildError):
    """A record a rebuild relies on (the learning ledger, a resume point) is damaged: never drawn as exact."""

    brief = "a rebuild record is damaged"


def describe_os_error(error: BaseException) -> str:
    """``File too large (EFBIG)``: the OS's words and the code to search for, also behind an h5py error that only
    carries them in its text; otherwise the message without HDF5's details."""
    code = getattr(error, "errno", None)
    if code is None:
        found = re.search(r"errno = (\d+)", str(error))
        code = int(found.group(1)) if found else None
    if code:
        return f"{os.strerror(code)} ({errno.errorcode.get(code, f'errno {code}')})"
    return str(error).split(" (", 1)[0]
