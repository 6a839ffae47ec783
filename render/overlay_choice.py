"""The overlay a config names, built for one log's game and network, with a settings error when it cannot be.

:func:`make_overlay` picks the overlay class (``raw``, ``minimal``, ``full``) and its settings; a size, scale or
font the layout cannot hold is refused naming the settings that led there and, for text that does not fit, the
largest ``overlay.font_scale`` that does. :func:`return_note` says how the value chart counts the return that
followed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

from render.config import OVERLAYS, OverlayConfig, VideoConfig
from render.draw.overlays import FullOverlay, MinimalOverlay, Overlay, RawOverlay, TextRoomError
from render.draw.style import Style
from render.errors import MissingCheckpointError, RenderConfigError
from render.policies import PolicyLibrary
from render.scenes import DEFAULT_GAMMA
from render.schedule import TrainingSchedule


def make_overlay(
    overlay: OverlayConfig,
    video: VideoConfig,
    game: str,
    action_names: Sequence[str],
    policies: PolicyLibrary | None = None,
    first_version: int = 0,
    *,
    progress_bar: bool = False,
    return_note: str = "",
    algorithm: str = "PPO",
) -> Overlay:
    """Build the overlay ``overlay.kind`` names; ``full`` takes its diagram layout from the policies'
    network; ``progress_bar`` draws training progress along the bottom of ``raw`` (the others show it anyway);
    ``return_note`` says how the value chart counts the return that followed."""
    style = overlay.style()
    if overlay.kind not in OVERLAYS:
        raise RenderConfigError(f"unknown overlay {overlay.kind!r}; choose one of {', '.join(OVERLAYS)}")
    if overlay.kind == "full":
        if policies is None:
            raise MissingCheckpointError("overlay=full needs policies to explain the frames")
        probe, _ = policies.lookup(first_version)

    def build(style: Style) -> Overlay:
        if overlay.kind == "raw":
            return RawOverlay(video.scale, progress_bar=progress_bar, style=style)
        if overlay.kind == "minimal":
            return MinimalOverlay(game, action_names, video.scale, panel_width=overlay.panel_width, style=style)
        return FullOverlay(
            game,
            action_names,
            probe.diagram_layers(),
            probe.feature_rows(),
            width=overlay.width,
            height=overlay.height,
            style=style,
            title=f"{algorithm} Neural Activity Viewer",
            return_note=return_note if probe.head != "q" else f"value: max Q; {return_note}".strip("; "),
            saliency=overlay.saliency,
            q_values=probe.head == "q",
        )

    try:
        return build(style)
    except ValueError as error:  # a size, scale or font the layout cannot hold: say which settings led there
        settings = (
            f"overlay.width={overlay.width} overlay.height={overlay.height}"
            if overlay.kind == "full"
            else f"video.scale={video.scale}"
        )
        fix = ""
        if isinstance(error, TextRoomError):  # text that does not fit: name the font scale that does
            fits = _largest_font_scale(build, style)
            bigger = "a bigger canvas (at least 640x360 at 16:9)" if overlay.kind == "full" else "a larger video.scale"
            fix = (
                f". the largest overlay.font_scale that fits is {fits:g}"
                if fits is not None
                else f". no font_scale fits; use {bigger}"
            )
        raise RenderConfigError(
            f"overlay={overlay.kind} with {settings} overlay.font_scale={overlay.font_scale:g}: {error}{fix}"
        ) from None


def _largest_font_scale(build: Callable[[Style], Overlay], style: Style, step: float = 0.05) -> float | None:
    """The largest multiple of ``step`` below ``style``'s font scale with which ``build`` succeeds (text grows
    with the canvas height, so for a given canvas this is the fix), or ``None``."""

    def fits(k: int) -> bool:
        try:
            build(dataclasses.replace(style, typeface=dataclasses.replace(style.typeface, scale=k * step)))
        except ValueError:  # this overlay cannot be built at that scale either
            return False
        return True

    low, high = 1, math.ceil(style.typeface.scale / step) - 1  # where some scale fits, every smaller one does
    if high < low or not fits(low):
        return None
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return round(low * step, 2)


def return_note(schedule: TrainingSchedule) -> str:
    """How the value chart counts the return that followed: the trainer's discount and reward clipping."""
    if schedule.gamma is None:
        return f"gamma {DEFAULT_GAMMA:g} assumed (log has none)"
    clipped = ", rewards clipped to -1..1" if schedule.clip_reward else ""
    return f"gamma {schedule.gamma:g}{clipped}"
