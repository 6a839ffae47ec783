"""The local web viewer: ``python -m render.viewer`` serves the runs in ``data/sample`` and ``data/runs``.

Its design is in ``docs/design.md`` (The viewer). Names are imported on first use, so ``python -m render.viewer
--help`` answers before the server's imports (Starlette, the renderer, torch).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BadRequestError": "render.viewer.errors",
    "FrameCache": "render.viewer.frames",
    "JobQueue": "render.viewer.jobs",
    "NotFoundError": "render.viewer.errors",
    "Readings": "render.viewer.readings",
    "RunCatalogue": "render.viewer.runs",
    "RunEntry": "render.viewer.runs",
    "TrainingManager": "render.viewer.training",
    "UnreadableError": "render.viewer.errors",
    "ViewerError": "render.viewer.errors",
    "create_app": "render.viewer.app",
    "encode_png": "render.viewer.frames",
    "is_live": "render.viewer.runs",
    "read_metrics": "render.viewer.readings",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'render.viewer' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
