"""Errors raised by ``replay``: one small hierarchy, every message names the file, the value and the fix."""

from __future__ import annotations


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


class CheckpointError(ReplayError):
    """A checkpoint is missing, corrupt, unsafe or does not match the log or network it is used with."""
