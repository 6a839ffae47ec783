"""What a render job is asked to make: the ``POST /api/runs/{id}/jobs`` body, validated, and the command line
overrides and video name it gives. A bad body is a :class:`BadRequestError` naming the field, the value and what
is valid.

Paths go to the child through environment variables that the overrides interpolate (``run=${oc.env:...}``),
so no run folder name, however odd, needs quoting for Hydra's override grammar.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from render.config import LAYOUTS, OVERLAYS, OverlayConfig, ProgressionProductConfig, TimelapseProductConfig
from render.viewer.errors import BadRequestError
from render.viewer.runs import RunEntry

PRODUCTS = ("episode", "timelapse", "progression")
CHECKPOINTS = ("nearest", "exact")  # checkpoint=exact, or the nearest saved checkpoints (the renderer's default)
EPISODE_ALIASES = ("best", "worst", "last")
MAX_DURATION = 600.0  # seconds of time-lapse a request may ask for: ten minutes already take long to render
RUN_ENV, OUTPUT_ENV = "ALE_REPLAY_JOB_RUN", "ALE_REPLAY_JOB_OUTPUT"
_FIELDS = {"episode": "episode", "timelapse": "duration", "progression": "layout"}  # each product's own field


@dataclass(frozen=True)
class RenderRequest:
    """What to render, as the ``POST /api/runs/{id}/jobs`` body gives it, validated: ``product``, ``overlay``,
    the product's own setting: ``episode`` (an index or best/worst/last), ``duration`` (the time-lapse's target
    seconds) or ``layout`` (the progression's), and ``checkpoint`` (``exact``: the full overlay's network is the
    very version that played each frame, rebuilt the first time; ``nearest``, the default)."""

    product: str
    overlay: str
    setting: int | float | str
    checkpoint: str = "nearest"

    @classmethod
    def parse(cls, body: Any, entry: RunEntry) -> RenderRequest:
        """The request ``body`` asks of run ``entry``; a :class:`BadRequestError` naming the field, the value and
        what is valid."""
        if not isinstance(body, dict):
            raise BadRequestError(f'expected a JSON object such as {{"product": "episode"}}, got {body!r:.80}')
        product = body.get("product")
        if product not in PRODUCTS:
            raise BadRequestError(f"product={product!r:.80} is not one of {', '.join(PRODUCTS)}")
        own = _FIELDS[product]
        unknown = sorted(set(body) - {"product", "overlay", own, "checkpoint"})
        if unknown:
            raise BadRequestError(
                f"{', '.join(map(repr, unknown))} do not apply to product={product!r}; its fields are product, "
                f"overlay, {own} and checkpoint"
            )
        overlay = body.get("overlay", OverlayConfig().kind)
        if overlay not in OVERLAYS:
            raise BadRequestError(f"overlay={overlay!r:.80} is not one of {', '.join(OVERLAYS)}")
        checkpoint = body.get("checkpoint", "nearest")
        if checkpoint not in CHECKPOINTS:
            raise BadRequestError(f"checkpoint={checkpoint!r:.80} is not one of {', '.join(CHECKPOINTS)}")
        if checkpoint == "exact" and overlay != "full":
            raise BadRequestError(
                f"checkpoint='exact' chooses the network the full overlay shows; overlay={overlay!r} shows none: "
                "ask for overlay='full', or leave checkpoint out"
            )
        parse_setting = {"episode": _episode, "timelapse": _duration, "progression": _layout}[product]
        return cls(product, overlay, parse_setting(body.get(own), entry), checkpoint)

    def params(self) -> dict[str, Any]:
        exact = {"checkpoint": "exact"} if self.checkpoint == "exact" else {}
        return {"overlay": self.overlay, _FIELDS[self.product]: self.setting, **exact}

    def overrides(self) -> list[str]:
        """The command line's overrides (the run and the output come from the environment, see the module)."""
        common = [f"run=${{oc.env:{RUN_ENV}}}", f"output=${{oc.env:{OUTPUT_ENV}}}", "video.progress=true"]
        own = {
            "episode": f"episode={self.setting}",
            "timelapse": f"product.target_duration={self.setting!r}",
            "progression": f"product.layout={self.setting}",
        }[self.product]
        exact = ["checkpoint=exact"] if self.checkpoint == "exact" else []
        return [*common, f"product={self.product}", f"overlay={self.overlay}", own, *exact]

    def video_name(self, job_id: str, when: float) -> str:
        detail = f"{self.setting:g}s" if self.product == "timelapse" else str(self.setting)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(when))
        overlay = f"{self.overlay}-exact" if self.checkpoint == "exact" else self.overlay
        return f"{self.product}-{detail.replace('_', '-')}-{overlay}-{stamp}-{job_id}.mp4"


def _episode(value: Any, entry: RunEntry) -> int | str:
    count = len(entry.episodes)
    if value is None:
        return "best"
    if value in EPISODE_ALIASES or (type(value) is int and 0 <= value < count):
        return value
    raise BadRequestError(
        f"run {entry.id!r} has no episode {value!r:.80}; give an index in 0..{count - 1} or one of "
        f"{', '.join(EPISODE_ALIASES)}"
    )


def _duration(value: Any, entry: RunEntry) -> float:
    if value is None:
        return TimelapseProductConfig().target_duration
    if type(value) in (int, float) and math.isfinite(value) and 1 <= value <= MAX_DURATION:
        return float(value)
    raise BadRequestError(f"duration={value!r:.80} is not a number of seconds in 1..{MAX_DURATION:g}")


def _layout(value: Any, entry: RunEntry) -> str:
    if value is None:
        return ProgressionProductConfig().layout
    if value in LAYOUTS:
        return value
    raise BadRequestError(f"layout={value!r:.80} is not one of {', '.join(LAYOUTS)}")
