"""The three overlays (``raw``, ``minimal``, ``full``) and the progression title card.

Every overlay is pure numpy: ``render(context)`` takes a :class:`~render.frame.FrameContext` and returns a
uint8 ``(height, width, 3)`` RGB image. Overlays return the same buffer every call, redrawn in place where
something changed (copy it if you keep it); ``damage()`` then names the rectangles that changed, so the
encoder converts only those to YUV.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from render.draw.compose import Canvas, Due, GameView, Rect, always, blank, fill, upscale_into
from render.draw.diagram import DiagramLayer, NetworkDiagram
from render.draw.panels import FeatureMaps, PolicyBars, ReturnChart, StatsPanel, TextRoomError, ValueChart
from render.draw.saliency import POLICY_COLOUR, VALUE_COLOUR, saliency_overlay
from render.draw.style import Style, TextPainter
from render.frame import FrameContext

GAME_HEIGHT, GAME_WIDTH = 210, 160


class Overlay(Protocol):
    """Turns one frame's context into one video frame of a fixed size."""

    width: int
    height: int

    def render(self, context: FrameContext) -> np.ndarray: ...

    def damage(self) -> tuple[Rect, ...] | None:
        """Rectangles of the last :meth:`render` that may differ from the one before (``None``: any)."""
        ...


def short_number(value: float) -> str:
    """``0.00017`` as ``1.7e-4``, ``0.5`` as ``0.5``: a number legible in a video."""
    if value == 0 or 1e-3 <= abs(value) < 1e4:
        return f"{value:.3g}"
    mantissa, exponent = f"{value:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def phase_line(context: FrameContext) -> str:
    """``Training episode 983 - learning rate 1.7e-4``; evaluation frames have no learning rate (nothing learns
    while the network is evaluated)."""
    line = f"{context.phase} episode {context.episode}"
    if context.phase != "Evaluation" and context.learning_rate is not None:
        line += f"  -  learning rate {short_number(context.learning_rate)}"
    return line


def progress_line(context: FrameContext | None) -> str:
    """``training progress 33.7%`` (``-`` when unknown); with no context, the widest it gets."""
    if context is None:
        return "training progress 100.0%"
    return "training progress -" if context.progress is None else f"training progress {context.progress:.1%}"


def update_name(version: int) -> str:
    return "the initial network" if version == 0 else f"update {version}"


def lag_line(context: FrameContext, *, played_by: bool = True) -> str:
    """Which network explains the frame, in words: ``network from update 294, 36 updates before this play``,
    with ``played_by`` followed by ``(played by update 330)``."""
    use = context.checkpoint
    if use is None:
        return ""
    played = context.policy_version
    if use.lag == 0:
        return f"network: the one that played this frame ({update_name(played)})"
    source = use.policy_version
    when = "before" if use.lag > 0 else "after"
    count = abs(use.lag)
    noun = "update" if count == 1 else "updates"
    name = "the initial network" if source == 0 else f"network from update {source}"
    line = f"{name}, {count} {noun} {when} this play"
    if played_by:
        line += f" (played by {update_name(played)})"
    return line if use.note is None else f"{use.note}: {line}"


class _ProgressBar:
    """A thin bar whose filled share is the training progress."""

    def __init__(self, rect: Rect, style: Style) -> None:
        self.rect = rect
        self._style = style
        self.dirty = (rect,)

    def draw_static(self, template: np.ndarray) -> None:
        fill(template, self.rect, self._style.palette.bar_track)

    def draw(self, image: np.ndarray, progress: float | None, due: Due = always) -> None:
        """Fill the bar up to ``progress`` over its track (restored from the template)."""
        filled = 0 if progress is None else round(float(np.clip(progress, 0.0, 1.0)) * self.rect.w)
        if due("progress", filled, self.dirty):
            fill(image, Rect(self.rect.x, self.rect.y, filled, self.rect.h), self._style.palette.accent)


class RawOverlay:
    """The game frame alone, enlarged by an integer ``scale`` with nearest-neighbour sampling.

    With ``progress_bar`` a thin training-progress bar is drawn along the bottom edge (time-lapses use it).
    """

    def __init__(self, scale: int = 4, *, progress_bar: bool = False, style: Style | None = None) -> None:
        if scale < 1:
            raise ValueError(f"expected a positive integer video scale, got {scale}")
        self.scale = scale
        self.width, self.height = GAME_WIDTH * scale, GAME_HEIGHT * scale
        self._game = GameView(Rect(0, 0, self.width, self.height), scale)
        self._bar = None
        if progress_bar:
            self._bar = _ProgressBar(Rect(0, self.height - max(3, scale), self.width, max(3, scale)), style or Style())
        self._canvas = Canvas(np.zeros((self.height, self.width, 3), np.uint8))

    def render(self, context: FrameContext) -> np.ndarray:
        canvas = self._canvas
        image = canvas.begin()
        game = self._game.draw(image, context.frame)
        canvas.mark(game)
        bar = self._bar
        if bar is not None:
            # The bar lies over the game's bottom rows (there is no template under it): its track is repainted
            # when it moves, and the whole bar again where the game was just redrawn under it.
            def due(name: str, key: object, rects: Sequence[Rect], *, restore: bool = True) -> bool:
                if canvas.changed(name, key, rects, restore=False):  # moved: recorded as damage
                    pass
                elif any(r.bottom > bar.rect.y for r in game):
                    canvas.mark(rects)
                else:
                    return False
                bar.draw_static(image)
                return True

            bar.draw(image, context.progress, due)
        return image

    def damage(self) -> tuple[Rect, ...] | None:
        return self._canvas.damage()


class MinimalOverlay:
    """The enlarged game beside a panel on a 16:9 canvas: the game's name and the frame's phase, stats rows, the
    training progress, and the episode's return as it builds up from start to end with the frame marked.

    It needs no checkpoint. The canvas is 16:9 at the game's height (``210 * scale``), or wider where the panel's
    texts need more than ``panel_width`` (at least) at this size and font scale.
    """

    rows = ("Episode", "Step", "Game frame", "Return so far", "Action taken", "Played by")
    _widest_values = ("Evaluation", "99999 / 99999", "999999", "-99999", "the initial network")
    _progress_label = progress_line(None)

    def __init__(
        self,
        game: str,
        action_names: Sequence[str],
        scale: int = 4,
        *,
        panel_width: int = 360,
        style: Style | None = None,
    ) -> None:
        if scale < 1:
            raise ValueError(f"expected a positive integer video scale, got {scale}")
        style = style or Style()
        palette = style.palette
        self.game = game
        self.action_names = tuple(action_names)
        self.scale = scale
        self.height = GAME_HEIGHT * scale
        self.painter = painter = TextPainter(style.typeface, max(self.height, 540))
        margin = painter.pixels(16)
        label_width = max(painter.width(label, StatsPanel.size) for label in self.rows) + StatsPanel.gap
        longest = max(painter.width(text, StatsPanel.size, 600) for text in (*self.action_names, *self._widest_values))
        needed = 2 * margin + StatsPanel.inset + label_width + longest + 2
        needed = max(needed, 2 * margin + painter.width(game, 24.0, 700))
        game_width = GAME_WIDTH * scale
        width = max(game_width + max(panel_width, needed), round(self.height * 16 / 9))
        self.width = width + width % 2  # even: yuv420p needs an even frame width
        self._game_rect = Rect(0, 0, game_width, self.height)
        x, w = game_width + margin, self.width - game_width - 2 * margin
        self._title = (x, margin + painter.pixels(24.0))
        self._phase = Rect(x, self._title[1] + 6, w, painter.pixels(16.0) + 8)
        stats = Rect(x, self._phase.bottom + margin // 2, w, painter.pixels(30) * len(self.rows))
        label = Rect(
            x, stats.bottom + margin // 2, painter.width(self._progress_label, 13.0) + 12, painter.pixels(13.0) + 6
        )
        bar = Rect(
            label.right,
            label.y + label.h // 2 - painter.pixels(3),
            self.width - margin - label.right,
            painter.pixels(6),
        )
        chart = Rect(x, label.bottom + margin, w, self.height - margin - label.bottom - margin)
        try:
            self._chart = ReturnChart(chart, palette, painter)
        except TextRoomError:
            raise TextRoomError(
                f"the minimal overlay's title, {len(self.rows)} stats rows and return chart at font_scale "
                f"{style.typeface.scale:g} need more height than video scale {scale} gives ({self.height} pixels; a "
                "smaller font_scale makes room, and so does a larger video.scale up to 3, above which text grows "
                "with the game)"
            ) from None
        self._progress_text = label
        self._stats = StatsPanel(stats, self.rows, palette, painter, label_width=label_width)
        self._bar = _ProgressBar(bar, style)
        self._style = style
        template = blank(self.width, self.height, palette.background)
        painter.draw(template, game, self._title, 24.0, palette.text, 700)
        self._stats.draw_static(template)
        self._bar.draw_static(template)
        self._chart.draw_static(template)
        self._canvas = Canvas(template)
        self._game = GameView(self._game_rect, scale)

    def render(self, context: FrameContext) -> np.ndarray:
        canvas, painter, palette = self._canvas, self.painter, self._style.palette
        image = canvas.begin()
        canvas.mark(self._game.draw(image, context.frame))
        phase = phase_line(context)
        if canvas.changed("phase", phase, (self._phase,)):
            painter.draw(image[self._phase.slices], phase, (0, painter.pixels(16.0)), 16.0, palette.muted)
        action = "- (the last frame)" if context.action is None else self.action_names[context.action]
        length = "" if context.episode_length is None else f" / {context.episode_length}"
        frame = "-" if context.frame_skip is None else str(context.step * context.frame_skip)
        values = (
            f"{context.episode} ({context.phase.lower()})",
            f"{context.step}{length}",
            frame,
            f"{context.episode_reward:g}",
            action,
            update_name(context.policy_version),
        )
        self._stats.draw(image, values, canvas.changed)
        progress = progress_line(context)
        if canvas.changed("progress-text", progress, (self._progress_text,)):
            area = image[self._progress_text.slices]
            painter.draw(area, progress, (0, painter.pixels(13.0)), 13.0, palette.muted)
        self._bar.draw(image, context.progress, canvas.changed)
        self._chart.draw(image, context.rewards, context.step, canvas.changed, key=context.episode)
        return image

    def damage(self) -> tuple[Rect, ...] | None:
        return self._canvas.damage()


@dataclass(frozen=True)
class FullLayout:
    """Where each part of the full overlay goes on a ``width`` x ``height`` canvas (proportional to
    1280x720).

    Everything that holds text (the header, the stats rows, the middle column, the headroom of the bars) grows
    with ``text_scale``, the overlay's ``font_scale``, so bigger text pushes the parts apart instead of
    overflowing them; the game drops to the next integer scale when the taller header or the wider middle
    column leaves it too little room.
    """

    width: int
    height: int
    scale: int
    game: Rect
    title: tuple[int, int]
    subtitle: Rect
    progress: Rect
    stats: Rect
    bars: Rect
    value: Rect
    diagram: Rect
    maps: Rect

    @classmethod
    def fit(cls, width: int, height: int, n_actions: int, stats_rows: int, text_scale: float = 1.0) -> FullLayout:
        if text_scale <= 0:
            raise ValueError(f"expected a positive text scale, got {text_scale}")
        s = height / 720.0
        t = s * text_scale  # lengths that hold text
        margin, header, middle_w = round(16 * s), round(76 * t), round(300 * t)
        # the game takes what the header above it and the middle and right columns beside it leave
        beside = width - 4 * margin - middle_w - round(200 * s)
        scale = int(
            min((height - header - round(6 * s)) // GAME_HEIGHT, (width * 0.40) // GAME_WIDTH, beside // GAME_WIDTH)
        )
        if scale < 1:
            raise TextRoomError(
                f"a {width}x{height} canvas is too small for the full overlay at font_scale {text_scale:g} (text "
                "grows with the canvas height: a smaller font_scale makes room, and at 1 it needs 640x360 at 16:9)"
            )
        top = header + (height - header - GAME_HEIGHT * scale) // 2
        game = Rect(margin, top, GAME_WIDTH * scale, GAME_HEIGHT * scale)
        middle_x = game.right + margin
        right_x = middle_x + middle_w + margin
        right_w, body_h = width - margin - right_x, height - header - margin  # right_w >= 200 * s, by `beside`
        stats_h = round(28 * t) * stats_rows
        bars_top = header + stats_h + margin
        chart_h = round(25 * t) + round(95 * s)  # the value chart: its two numbers, then at least this much plot
        bars_h = min(body_h - stats_h - chart_h - 2 * margin, round((30 + 26 * n_actions) * t))
        if bars_h < round((30 + 10 * n_actions) * t):  # each bar's row must hold its action's name
            raise TextRoomError(
                f"a {width}x{height} canvas leaves no room for {n_actions} policy bars at font_scale "
                f"{text_scale:g} (text grows with the canvas height: a smaller font_scale makes room)"
            )
        value_top = bars_top + bars_h + margin
        diagram_h = round(body_h * 0.58)
        maps_top = header + diagram_h + margin
        return cls(
            width=width,
            height=height,
            scale=scale,
            game=game,
            title=(margin, round(32 * t)),
            subtitle=Rect(margin, round(38 * t), width - 2 * margin, round(21 * t)),
            progress=Rect(margin, round(70 * t) - max(2, round(4 * s)), width - 2 * margin, max(2, round(4 * s))),
            stats=Rect(middle_x, header, middle_w, stats_h),
            bars=Rect(middle_x, bars_top, middle_w, bars_h),
            value=Rect(middle_x, value_top, middle_w, height - margin - value_top),
            diagram=Rect(right_x, header, right_w, diagram_h),
            maps=Rect(right_x, maps_top, right_w, height - margin - maps_top),
        )


class FullOverlay:
    """The "Neural Activity Viewer": game, stats, policy bars, value against the return that followed, the lit
    network diagram (its edges the network's strongest real weights) and feature maps.

    ``diagram_layers`` names the diagram's columns and node counts; ``feature_rows`` names the thumbnail rows
    (the first is the agent's stacked input frames) and how many thumbnails each shows. Both must match the
    :class:`~render.frame.FrameAnalytics` the products pass in
    (:meth:`render.analytics.NetworkProbe.diagram_layers` and ``feature_rows`` give them). The ``policy`` and
    ``value`` layers are drawn as named outputs (``action_names``, ``value``). ``return_note`` says how the
    return that followed is counted (discount, clipping).

    Everything static is drawn once into a template; :meth:`render` restores the changing regions and draws
    only the per-frame parts. The template holds the diagram's edges, so a frame explained by another network
    (:attr:`FrameContext.network`) gets a new template and is redrawn whole.
    """

    stats_rows = ("Step", "Game frame", "Episode", "Return so far", "Played by")
    _progress_label = progress_line(None)

    def __init__(
        self,
        game: str,
        action_names: Sequence[str],
        diagram_layers: Sequence[DiagramLayer],
        feature_rows: Sequence[tuple[str, int]],
        *,
        width: int = 1280,
        height: int = 720,
        style: Style | None = None,
        title: str = "PPO Neural Activity Viewer",
        return_note: str = "",
        saliency: bool = False,
        q_values: bool = False,
    ) -> None:
        self.style = style or Style()
        self.q_values = q_values
        self.width, self.height = width, height
        self.title = f"{game.upper()} - {title}"
        self.action_names = tuple(action_names)
        self.layout = layout = FullLayout.fit(
            width, height, len(self.action_names), len(self.stats_rows), self.style.typeface.scale
        )
        self.scale = layout.scale
        palette = self.style.palette
        self.painter = painter = TextPainter(self.style.typeface, height)
        # the title at its size, or smaller where a long game name would run past the canvas edge
        room = width - 2 * layout.title[0]
        self.title_size = 26.0
        while self.title_size > 10 and painter.width(self.title, self.title_size, 700) > room:
            self.title_size -= 1.0
        label_width = painter.width(self._progress_label, 11.0) + 10
        bar = layout.progress
        top = layout.subtitle.bottom  # the label's rectangle lies below the subtitle's: each redraws alone
        self._progress_text = Rect(bar.x, top, label_width, bar.bottom + 3 - top)
        self.progress_bar = _ProgressBar(Rect(bar.x + label_width, bar.y, bar.w - label_width, bar.h), self.style)
        self.stats = StatsPanel(layout.stats, self.stats_rows, palette, painter)
        bars_title = "Q-values (greedy action in accent)" if q_values else "Policy: action probabilities"
        self.bars = PolicyBars(layout.bars, self.action_names, palette, painter, title=bars_title, q_values=q_values)
        self.value = ValueChart(layout.value, palette, painter, note=return_note)
        layers = [
            DiagramLayer(layer.label, layer.size, layer.detail, _output_names(layer, self.action_names))
            for layer in diagram_layers
        ]
        self.diagram = NetworkDiagram(layout.diagram, layers, palette, painter, title="Network")
        self.maps = FeatureMaps(
            layout.maps, feature_rows, palette, painter, title="Feature maps (most active channels this episode)"
        )
        self.saliency = saliency
        self._wiring: str | None = None
        self._canvas = self._new_canvas()
        self._game = GameView(layout.game, self.scale)

    def _new_canvas(self) -> Canvas:
        template = blank(self.width, self.height, self.style.palette.background)
        self.draw_static(template)
        self.diagram.bind(template)
        return Canvas(template)

    def render(self, context: FrameContext) -> np.ndarray:
        self._rewire(context)
        image = self._canvas.begin()
        self._draw(image, context, self._canvas)
        return image

    def _rewire(self, context: FrameContext) -> None:
        """A frame explained by another network than the last gets that network's edges (a new template)."""
        network = context.network
        if network is None or network.key == self._wiring:
            return
        self._wiring = network.key
        self.diagram.wire(network.links)
        self._canvas = self._new_canvas()
        self._game = GameView(self.layout.game, self.scale)

    def damage(self) -> tuple[Rect, ...] | None:
        return self._canvas.damage()

    def draw_static(self, image: np.ndarray) -> None:
        """Everything that never changes: title, frame border, labels, tracks, network edges."""
        palette = self.style.palette
        self.painter.draw(image, self.title, self.layout.title, self.title_size, palette.text, 700)
        if self.saliency:  # the key to the colours over the game, at the title's right
            self._draw_saliency_key(image)
        fill(image, self.layout.game.inset(-2), palette.frame_border)
        for part in (self.progress_bar, self.stats, self.bars, self.value, self.diagram, self.maps):
            part.draw_static(image)

    def _draw_saliency_key(self, image: np.ndarray) -> None:
        painter, size, baseline = self.painter, 13.0, self.layout.title[1]
        parts = (("saliency:", self.style.palette.muted), ("policy", POLICY_COLOUR), ("value", VALUE_COLOUR))
        widths = [painter.width(text, size, 600) for text, _ in parts]
        x = self.width - self.layout.title[0] - sum(widths) - 8 * (len(parts) - 1)
        for (text, colour), width in zip(parts, widths, strict=True):
            painter.draw(image, text, (x, baseline), size, colour, 600)
            x += width + 8

    def draw_dynamic(self, image: np.ndarray, context: FrameContext, *, circles: bool = False) -> None:
        """Everything that changes per frame, drawn in full over :meth:`draw_static`'s picture (:meth:`render`
        draws the same pixels, redrawing only the parts whose inputs changed).

        ``circles`` lights the nodes one ``cv2.circle`` at a time instead of by the precomputed scatter (the
        reference the fast path is tested and benchmarked against).
        """
        self._draw(image, context, None, circles=circles)

    def _draw(self, image: np.ndarray, context: FrameContext, canvas: Canvas | None, *, circles: bool = False) -> None:
        """Draw the dynamic parts; with ``canvas`` (whose buffer ``image`` is) only those whose key changed."""
        analytics = context.analytics
        if analytics is None:
            raise ValueError(
                f"the full overlay needs network analytics for episode {context.episode} step {context.step}"
            )

        due: Due = always if canvas is None else canvas.changed
        layout, palette, painter = self.layout, self.style.palette, self.painter
        frame = context.frame
        if analytics.saliency is not None and context.saliency_scale is not None:
            frame = saliency_overlay(frame, *analytics.saliency, context.saliency_scale)
        if canvas is None:
            upscale_into(image[layout.game.slices], frame, self.scale)
        else:
            canvas.mark(self._game.draw(image, frame))
        phase, lag = phase_line(context), lag_line(context)
        if due("subtitle", (phase, lag), (layout.subtitle,)):
            # clipped to its rectangle, like every redrawn text, so a redraw covers all it ever painted
            area = image[layout.subtitle.slices]
            baseline = painter.pixels(16)
            painter.draw(area, phase, (0, baseline), 16, palette.muted)
            if lag:
                lagging = context.checkpoint is not None and context.checkpoint.lag != 0
                weight, colour = (600, palette.highlight) if lagging else (400, palette.muted)
                room = layout.subtitle.w - painter.width(phase, 16) - painter.pixels(24)
                if painter.width(lag, 16, weight) > room:
                    lag = lag_line(context, played_by=False)  # the statistics name the version that played
                size = painter.fit(lag, 16, room, weight)
                x = layout.subtitle.w - painter.width(lag, size, weight) - 2
                painter.draw(area, lag, (max(0, x), baseline), size, colour, weight)
        progress = progress_line(context)
        if due("progress-text", progress, (self._progress_text,)):
            area = image[self._progress_text.slices]
            painter.draw(area, progress, (0, self._progress_text.h - 4), 11.0, palette.muted)
        self.progress_bar.draw(image, context.progress, due)
        length = "" if context.episode_length is None else f" / {context.episode_length}"
        frame = "-" if context.frame_skip is None else f"{context.step * context.frame_skip}"
        values = (
            f"{context.step}{length}",
            frame,
            str(context.episode),
            f"{context.episode_reward:g}",
            update_name(context.policy_version),
        )
        self.stats.draw(image, values, due)
        if self.q_values and analytics.q_values is None:
            raise ValueError(f"the Q-value overlay got no Q-values for episode {context.episode} step {context.step}")
        shown = analytics.q_values if self.q_values else analytics.probabilities
        self.bars.draw(image, shown, context.action, due)
        history = context.value_history if context.value_history is not None else np.array([analytics.value])
        self.value.draw(
            image,
            analytics.value,
            history,
            due,
            followed=context.return_followed,
            followed_history=context.return_history,
            span=context.value_range,
        )
        if circles:
            self.diagram.draw_circles(image, analytics.levels)
        else:
            self.diagram.draw(image, analytics.levels, due)
        inputs = np.empty((0, 1, 1), np.uint8) if context.observation is None else context.observation
        captions = [[f"t-{k}" if k else "t" for k in range(len(inputs) - 1, -1, -1)]]
        captions += [[f"ch {c}" for c in channels] for channels in analytics.channels]
        self.maps.draw(image, (inputs, *analytics.feature_maps), due, captions if analytics.channels else None)


def _output_names(layer: DiagramLayer, action_names: Sequence[str]) -> tuple[str, ...]:
    """The names of an output layer's nodes: the actions for ``policy`` (or a Q network's ``q``), ``value`` for
    the critic."""
    if layer.names:
        return layer.names
    if layer.label in ("policy", "q") and layer.size == len(action_names):
        return tuple(action_names)
    if layer.label == "value" and layer.size == 1:
        return ("value",)
    return ()


def title_card(width: int, height: int, lines: Sequence[str], style: Style | None = None) -> np.ndarray:
    """A centred title card, first line large (e.g. ``10% - 100k steps - return 7``), the rest smaller; a line
    too wide for the card (a narrow video) is drawn smaller until it fits."""
    style = style or Style()
    painter = TextPainter(style.typeface, height)
    image = blank(width, height, style.palette.background)
    room = width - 2 * max(2, width // 40)
    sizes = []
    for i, line in enumerate(lines):
        size, weight = (40.0, 700) if i == 0 else (20.0, 400)
        while size > 6 and painter.width(line, size, weight) > room:
            size -= 1.0
        sizes.append(size)
    steps = [painter.pixels(size) * 2.0 for size in sizes]
    y = (height - sum(steps)) / 2
    for i, (line, size, step) in enumerate(zip(lines, sizes, steps, strict=True)):
        y += step
        weight = 700 if i == 0 else 400
        x = (width - painter.width(line, size, weight)) // 2
        painter.draw(image, line, (x, round(y)), size, style.palette.text if i == 0 else style.palette.muted, weight)
    return image
