"""ale-replay's renderer: videos of recorded Atari runs with the network's activity drawn over the game.

Names are imported on first use, so ``import render.feed`` in a re-simulation worker process does not pull in
torch and the overlays.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "EncoderError": "render.errors",
    "EpisodeFrames": "render.episode",
    "FrameExplanation": "render.explanations",
    "FullOverlay": "render.draw.overlays",
    "MinimalOverlay": "render.draw.overlays",
    "MissingCheckpointError": "render.errors",
    "RawOverlay": "render.draw.overlays",
    "RenderConfigError": "render.errors",
    "RenderError": "render.errors",
    "RenderResult": "render.source",
    "RenderSource": "render.source",
    "SelectionError": "render.errors",
    "VideoEncoder": "render.encoder",
    "explain": "render.explanations",
    "render_episode": "render.products",
    "render_progression": "render.products",
    "render_still": "render.episode",
    "render_timelapse": "render.products",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'render' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
