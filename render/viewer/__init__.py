"""The local web viewer: ``python -m render.viewer`` serves the runs in ``data/sample`` and ``data/runs``.

See ``STATUS.md`` next to this file for what is built and what is still to do.
"""

from __future__ import annotations

from render.viewer.app import create_app
from render.viewer.errors import BadRequestError, NotFoundError, UnreadableError, ViewerError
from render.viewer.frames import FrameCache, encode_png
from render.viewer.runs import RunCatalogue, RunEntry, is_live

__all__ = [
    "BadRequestError",
    "FrameCache",
    "NotFoundError",
    "RunCatalogue",
    "RunEntry",
    "UnreadableError",
    "ViewerError",
    "create_app",
    "encode_png",
    "is_live",
]
