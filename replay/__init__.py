"""ale-replay: record RL training on Atari as tiny logs, re-simulate any episode bit-exactly."""

from replay.errors import (
    CheckpointError,
    DesyncError,
    EnvironmentMismatchError,
    EpisodeIndexError,
    LogFormatError,
    RecordingError,
    ReplayError,
    ScreenCaptureError,
)
from replay.reader import EpisodeRecord, ReplayStep, TrajectoryLog
from replay.recorder import RecordTrajectory, RecordVectorTrajectory
from replay.run_folder import RunFolder
from replay.verification import VerifyReport, verify
from replay.writer import TrajectoryWriter

__all__ = [
    "CheckpointError",
    "DesyncError",
    "EnvironmentMismatchError",
    "EpisodeIndexError",
    "EpisodeRecord",
    "LogFormatError",
    "RecordTrajectory",
    "RecordVectorTrajectory",
    "RecordingError",
    "RunFolder",
    "ReplayError",
    "ReplayStep",
    "ScreenCaptureError",
    "TrajectoryLog",
    "TrajectoryWriter",
    "VerifyReport",
    "verify",
]
