"""The local web viewer: ``python -m render.viewer`` serves the runs in ``data/sample`` and ``data/runs``.

Its design is in ``docs/design.md`` (The viewer).
"""

from __future__ import annotations

from render.viewer.app import create_app
from render.viewer.errors import BadRequestError, NotFoundError, UnreadableError, ViewerError
from render.viewer.frames import FrameCache, encode_png
from render.viewer.jobs import JobQueue
from render.viewer.readings import Readings, read_metrics
from render.viewer.runs import RunCatalogue, RunEntry, is_live
from render.viewer.training import TrainingManager

__all__ = [
    "BadRequestError",
    "FrameCache",
    "JobQueue",
    "NotFoundError",
    "Readings",
    "RunCatalogue",
    "RunEntry",
    "TrainingManager",
    "UnreadableError",
    "ViewerError",
    "create_app",
    "encode_png",
    "is_live",
    "read_metrics",
]
