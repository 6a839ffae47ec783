"""Drawing the story of a run: the learning curve (a closing card, or a strip under an overlay with a marker where
the episode on screen was played) and screens of compact cells that play several episodes side by side.

Pure numpy and OpenCV like the overlays: RGB uint8 images, persistent buffers redrawn where something changed,
with the changed rectangles reported as damage (see :mod:`render.draw.compose`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from render.draw.compose import Canvas, Rect, blank, fill, upscale_into
from render.draw.overlays import GAME_HEIGHT, GAME_WIDTH, Overlay, TextRoomError
from render.draw.style import RGB, Style, TextPainter
from render.frame import FrameContext
from render.pipeline import Rendered
from render.story import LearningCurve


def strip_height(overlay_height: int) -> int:
    """The height of the caption strip :class:`CaptionedOverlay` puts under an overlay this high: a sixth of it,
    even (yuv420p)."""
    height = max(24, round(overlay_height * 0.16))
    return height + height % 2


def mix(background: RGB, colour: RGB, share: float) -> RGB:
    """``colour`` laid over ``background`` at opacity ``share``."""
    return tuple(round(b + (c - b) * share) for b, c in zip(background, colour, strict=True))


def fit_game(width: int, height: int) -> tuple[int, int]:
    """The largest game size (160x210 proportions) within ``width`` x ``height``."""
    if width * GAME_HEIGHT >= height * GAME_WIDTH:
        return height * GAME_WIDTH // GAME_HEIGHT, height
    return width, width * GAME_HEIGHT // GAME_WIDTH


def draw_game(target: np.ndarray, frame: np.ndarray) -> None:
    """Draw the game ``frame`` enlarged to fill ``target`` (a view of a :func:`fit_game` size): crisp blocks at
    an integer scale, area-weighted at any other (nearest-neighbour at a fractional scale makes the ball and
    paddle change size as they move)."""
    height, width = target.shape[:2]
    scale, rest = divmod(height, GAME_HEIGHT)
    if not rest and width == GAME_WIDTH * scale:
        upscale_into(target, frame, scale)
    else:
        target[...] = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)


def tick_step(span: float, ticks: int = 4) -> float:
    """A step of 1, 2 or 5 times a power of ten that divides ``span`` into about ``ticks`` parts."""
    span = max(span, 1e-9)
    power = 10.0 ** math.floor(math.log10(span / ticks))
    return next(m * power for m in (1, 2, 5, 10) if span / (m * power) <= ticks + 0.5)


@dataclass(frozen=True)
class Mark:
    """A point marked on the learning curve: an episode shown (its place in the run and its return)."""

    position: float
    value: float


class CurvePlot:
    """A learning curve drawn into ``rect``: faint dots for the training episodes, a line for their rolling mean.

    The value axis spans the returns up to their 99th percentile and every value in ``include`` (the marks): a
    rare outlier (one lucky episode ten times the others) is drawn at the top edge rather than squashing the
    curve flat.
    """

    def __init__(self, rect: Rect, curve: LearningCurve, style: Style, *, include: Sequence[float] = ()) -> None:
        self.rect, self.curve, self.style = rect, curve, style
        values = [0.0, 1.0, *include]
        if len(curve.returns):
            low, high = np.percentile(curve.returns, [1, 99])
            values += [low, high + 0.1 * (high - low)]
        self.step = tick_step(max(values) - min(values))
        self.bottom, self.top = math.floor(min(values) / self.step) * self.step, max(values)

    def x(self, position: float) -> int:
        return self.rect.x + round(float(np.clip(position, 0.0, 1.0)) * (self.rect.w - 1))

    def y(self, value: float) -> int:
        share = (value - self.bottom) / (self.top - self.bottom)
        return self.rect.bottom - 1 - round(float(np.clip(share, 0.0, 1.0)) * (self.rect.h - 1))

    def draw(self, image: np.ndarray, *, dot: int = 1, thickness: int = 1) -> None:
        """Dots of ``dot`` pixels and the mean line ``thickness`` pixels wide."""
        curve, palette = self.curve, self.style.palette
        if not len(curve.returns):
            return
        xs = np.array([self.x(p) for p in curve.positions])
        ys = np.array([self.y(v) for v in curve.returns])
        faint = np.array(mix(palette.background, palette.muted, 0.5), np.uint8)
        for dy in range(dot):
            for dx in range(dot):
                rows = np.clip(ys - dot // 2 + dy, self.rect.y, self.rect.bottom - 1)
                cols = np.clip(xs - dot // 2 + dx, self.rect.x, self.rect.right - 1)
                image[rows, cols] = faint
        line = np.stack([xs, [self.y(v) for v in curve.mean]], axis=1).astype(np.int32)
        cv2.polylines(image, [line], False, palette.accent, thickness, cv2.LINE_AA)


def learning_curve_card(
    width: int,
    height: int,
    curve: LearningCurve,
    marks: Sequence[Mark],
    *,
    title: str,
    style: Style | None = None,
) -> np.ndarray:
    """A card of the learning curve: ``title``, a legend, the training episodes' returns against their place in
    the run with their rolling mean, and ``marks`` (the episodes the video showed) labelled with their return."""
    style = style or Style()
    palette = style.palette
    painter = TextPainter(style.typeface, height)
    image = blank(width, height, palette.background)
    px = painter.pixels
    margin = max(4, width // 40)
    size = painter.fit(title, 30.0, width - 2 * margin, 700)
    painter.draw(image, title, (margin, margin + px(size)), size, palette.text, 700)
    legend = (
        f"dots: the {len(curve.returns)} training episodes' returns - line: the mean of the last {curve.window} - "
        "marked: the episodes shown, with their return"
    )
    legend_y = margin + px(size) + round(px(16) * 1.8)
    legend_size = painter.fit(legend, 16.0, width - 2 * margin)
    painter.draw(image, legend, (margin, legend_y), legend_size, palette.muted)
    label = px(14)
    plot = Rect(
        margin + 2 * label + painter.width("-0000", 14),
        legend_y + 2 * label,
        width - 2 * margin - 2 * label - painter.width("-0000", 14),
        height - legend_y - 2 * label - margin - 3 * label,
    )
    if plot.w < 20 or plot.h < 20:
        raise TextRoomError(f"a {width}x{height} card leaves no room for the learning curve at this font scale")
    chart = CurvePlot(plot, curve, style, include=[m.value for m in marks])
    fill(image, Rect(plot.x, plot.bottom, plot.w, 1), palette.frame_border)
    fill(image, Rect(plot.x - 1, plot.y, 1, plot.h + 1), palette.frame_border)
    value = chart.bottom
    while value <= chart.top + 1e-9:
        y = chart.y(value)
        fill(image, Rect(plot.x, y, plot.w, 1), palette.bar_track)
        text = f"{value:g}"
        painter.draw(image, text, (plot.x - painter.width(text, 14) - label // 2, y + label // 3), 14, palette.muted)
        value += chart.step
    for share in np.linspace(0.0, 1.0, 5):
        text = f"{share:.0%}" if curve.schedule.num_updates else str(round(share * curve.last_version))
        x = chart.x(share) - painter.width(text, 14) // 2
        painter.draw(image, text, (min(max(x, 0), width - painter.width(text, 14)), plot.bottom + 2 * label), 14,
                     palette.muted)  # fmt: skip
    axis = curve.axis
    painter.draw(image, axis, (plot.x + (plot.w - painter.width(axis, 14)) // 2, height - margin), 14, palette.muted)
    _vertical_label(image, "episode return", (margin, plot.y + plot.h // 2), painter, palette.muted)
    unit = max(1, round(height / 360))  # a dot, a line: 2 pixels at 720 high
    chart.draw(image, dot=unit, thickness=unit)
    radius = 3 * unit
    for mark in marks:
        x, y = chart.x(mark.position), chart.y(mark.value)
        cv2.line(image, (x, plot.bottom - 1), (x, y), mix(palette.background, palette.highlight, 0.45), 1)
        cv2.circle(image, (x, y), radius, palette.highlight, -1, cv2.LINE_AA)
        text = f"{mark.value:g}"
        tx = min(max(x - painter.width(text, 15, 600) // 2, 0), width - painter.width(text, 15, 600))
        painter.draw(image, text, (tx, max(y - radius - label // 2, label)), 15, palette.highlight, 600)
    return image


def _vertical_label(image: np.ndarray, text: str, centre: tuple[int, int], painter: TextPainter, colour: RGB) -> None:
    """``text`` read bottom to top, its baseline's left end at ``centre[0]``, centred on ``centre[1]``."""
    width, height = painter.width(text, 14) + 2, painter.pixels(14) * 3 // 2
    stamp = np.empty((height, width, 3), np.uint8)
    stamp[...] = image[centre[1], centre[0]]
    painter.draw(stamp, text, (1, height - height // 4), 14, colour)
    turned = np.rot90(stamp)
    top = max(0, centre[1] - turned.shape[0] // 2)
    rows = min(turned.shape[0], image.shape[0] - top)
    image[top : top + rows, centre[0] : centre[0] + turned.shape[1]] = turned[:rows]


@dataclass(frozen=True)
class StripCaption:
    """What the strip under an overlay says: a line of ``text``, and the marker on the learning curve at
    ``position`` with a dot at ``value`` (the return so far; ``None``: no dot). ``finished``: the episode
    ended (the text is highlighted)."""

    text: str
    position: float
    value: float | None = None
    finished: bool = False


class CaptionedOverlay:
    """An overlay's frames with a caption strip under them: a line of text over the run's learning curve, marked
    where the episode on screen was played.

    The overlay is drawn as it is (its size read from it, ``width`` x ``height`` plus the strip); its damage is
    copied into this buffer, so the encoder still converts only what changed. ``text`` and ``band`` are where the
    caption's line and the learning curve go.
    """

    def __init__(self, overlay: Overlay, curve: LearningCurve, style: Style | None = None) -> None:
        self.overlay, self.style = overlay, style or Style()
        palette = self.style.palette
        self.width, self.height = overlay.width, overlay.height + strip_height(overlay.height)
        self._painter = TextPainter(self.style.typeface, overlay.height)
        margin = max(3, overlay.width // 80)
        self._text_size = 18.0
        line = round(self._painter.pixels(self._text_size) * 1.5)
        top = overlay.height + margin // 2
        self.text = Rect(margin, top, self.width - 2 * margin, line)
        self.band = Rect(margin, top + line, self.width - 2 * margin, self.height - margin - top - line)
        if self.band.h < 6:
            raise TextRoomError(
                f"the caption strip under a {overlay.width}x{overlay.height} overlay leaves no room for the learning "
                "curve at this font scale (a smaller font_scale or a larger video.scale makes room)"
            )
        self._radius = max(2, self.band.h // 8)  # of the marker's dot, which stays inside the band
        self._chart = CurvePlot(self.band.inset(0, self._radius), curve, self.style)
        template = blank(self.width, self.height, palette.background)
        fill(template, Rect(0, overlay.height, self.width, 1), palette.frame_border)
        self._chart.draw(template, dot=1, thickness=max(1, self.band.h // 24))
        self._canvas = Canvas(template)

    def render(self, context: FrameContext, caption: StripCaption) -> Rendered:
        """The overlay's picture of ``context`` with ``caption`` under it."""
        frame = self.overlay.render(context)
        damage = self.overlay.damage()
        canvas = self._canvas
        image = canvas.begin()
        above = Rect(0, 0, self.overlay.width, self.overlay.height)
        for rect in (above,) if damage is None else damage:
            image[rect.slices] = frame[rect.slices]
        canvas.mark((above,) if damage is None else damage)
        palette, painter = self.style.palette, self._painter
        if canvas.changed("caption", (caption.text, caption.finished), (self.text,)):
            colour = palette.highlight if caption.finished else palette.text
            size = painter.fit(caption.text, self._text_size, self.text.w, 600)
            baseline = (self.text.h + painter.pixels(size) * 7 // 10) // 2
            painter.draw(image[self.text.slices], caption.text, (0, baseline), size, colour, 600)
        chart, band = self._chart, self.band
        x = chart.x(caption.position) - band.x
        y = None if caption.value is None else chart.y(caption.value) - band.y
        if canvas.changed("marker", (x, y), (band,)):
            inside = image[band.slices]  # drawn into the band alone, which the next marker restores
            cv2.line(inside, (x, 0), (x, band.h - 1), palette.highlight, max(1, band.h // 24))
            if y is not None:
                cv2.circle(inside, (x, y), self._radius, palette.highlight, -1, cv2.LINE_AA)
        return Rendered(image, canvas.damage())


@dataclass(frozen=True)
class CellCaption:
    """What a cell says about its clip.

    Attributes:
        title: The milestone, e.g. ``30% - 300k steps``.
        detail: Which episode, e.g. ``evaluation 899 - v294``.
        reward: The return so far (the final return once ``finished``).
        finished: The episode has ended: the cell holds its last frame, dimmed, and says ``final return``.
        speed: Recorded frames per video frame (``x3`` is shown when above 1).
        action: The name of the action taken, when the network's analytics are known.
        probability: The policy's probability of that action.
    """

    title: str
    detail: str
    reward: float
    finished: bool = False
    speed: int = 1
    action: str | None = None
    probability: float | None = None

    def lines(self) -> tuple[str, str, str]:
        title = self.title if self.speed == 1 else f"{self.title} - x{self.speed}"
        reward = f"final return {self.reward:g}" if self.finished else f"return {self.reward:g}"
        return title, self.detail, reward


@dataclass(frozen=True)
class CellView:
    """One cell's frame: the game screen and its caption."""

    frame: np.ndarray
    caption: CellCaption


@dataclass(frozen=True)
class CellLayout:
    """Where a cell's parts go: the game, then its caption lines (title, detail, return, action) beside it where
    the cell is wide, under it where it is tall, whichever leaves the game larger."""

    cell: Rect
    game: Rect
    lines: tuple[Rect, Rect, Rect, Rect]

    @classmethod
    def fit(cls, cell: Rect, painter: TextPainter, action_names: Sequence[str], margin: int) -> CellLayout:
        heights = [round(painter.pixels(size) * 1.55) for size in CellScreen.sizes]
        text_w = max(
            painter.width("100% - 9.99M steps - x99", CellScreen.sizes[0], 700),
            painter.width("evaluation 99999 - v99999", CellScreen.sizes[1]),
            painter.width("final return -9999", CellScreen.sizes[2], 600),
            max((painter.width(f"{name} 100%", CellScreen.sizes[3]) for name in action_names), default=0)
            + 4 * painter.pixels(CellScreen.sizes[3]),
        )
        beside = fit_game(cell.w - 3 * margin - text_w, cell.h - 2 * margin)
        below = fit_game(cell.w - 2 * margin, cell.h - 3 * margin - sum(heights))
        if max(beside[1], below[1]) < GAME_HEIGHT // 3:
            raise TextRoomError(
                f"a {cell.w}x{cell.h} cell leaves the game under a third of its size beside or under its caption at "
                "this font scale (a smaller font_scale, a larger canvas or fewer cells a screen make room)"
            )
        if beside[1] >= below[1]:
            w, h = beside
            x = cell.x + (cell.w - (w + margin + text_w)) // 2
            game = Rect(x, cell.y + (cell.h - h) // 2, w, h)
            left, top, room = game.right + margin, game.y, cell.right - margin - game.right - margin
        else:
            w, h = below
            block = h + margin + sum(heights)
            game = Rect(cell.x + (cell.w - w) // 2, cell.y + (cell.h - block) // 2, w, h)
            left = max(cell.x + margin, min(game.x, cell.right - margin - text_w))
            top, room = game.bottom + margin, cell.right - margin - left
        rects, y = [], top
        for height in heights:
            rects.append(Rect(left, y, room, height))
            y += height
        return cls(cell, game, tuple(rects))


class CellScreen:
    """A screen of ``columns`` x ``rows`` equal cells, each a compact overlay of one clip: the game, the
    milestone, the episode, the return and, with the network's analytics, the chosen action's probability bar.

    A finished clip's cell holds its last frame, dimmed, saying ``final return``; a cell given no view stays
    empty.
    """

    sizes = (20.0, 15.0, 18.0, 15.0)  # title, detail, return, action: at a 720-pixel-high canvas

    def __init__(
        self,
        width: int,
        height: int,
        columns: int,
        rows: int,
        action_names: Sequence[str],
        style: Style | None = None,
    ) -> None:
        self.width, self.height = width, height
        self.style = style or Style()
        self.action_names = tuple(action_names)
        self._painter = painter = TextPainter(self.style.typeface, height)
        margin = max(3, height // 60)
        cell_w, cell_h = (width - (columns + 1) * margin) // columns, (height - (rows + 1) * margin) // rows
        used_w, used_h = columns * cell_w + (columns - 1) * margin, rows * cell_h + (rows - 1) * margin
        left, top = (width - used_w) // 2, (height - used_h) // 2
        self.layouts = tuple(
            CellLayout.fit(
                Rect(left + c * (cell_w + margin), top + r * (cell_h + margin), cell_w, cell_h),
                painter,
                self.action_names,
                margin,
            )
            for r in range(rows)
            for c in range(columns)
        )
        self._canvas = Canvas(blank(width, height, self.style.palette.background))
        self._shown: list[tuple[np.ndarray, bool] | None] = [None] * len(self.layouts)

    def render(self, views: Sequence[CellView | None]) -> Rendered:
        """The screen with each cell showing its view (a cell past the end of ``views`` stays empty)."""
        if len(views) > len(self.layouts):
            raise ValueError(f"expected at most {len(self.layouts)} cells, got {len(views)}")
        canvas = self._canvas
        image = canvas.begin()
        for k, view in enumerate(views):
            if view is not None:
                self._draw_cell(image, k, view)
        return Rendered(image, canvas.damage())

    def _draw_cell(self, image: np.ndarray, k: int, view: CellView) -> None:
        layout, canvas, palette, painter = self.layouts[k], self._canvas, self.style.palette, self._painter
        caption = view.caption
        shown = self._shown[k]
        if shown is None or shown[1] != caption.finished or not np.array_equal(shown[0], view.frame):
            target = image[layout.game.slices]
            draw_game(target, view.frame)
            if caption.finished:  # held: dimmed towards the background
                target[...] = (target * 0.45 + np.array(palette.background) * 0.55).astype(np.uint8)
            self._shown[k] = (view.frame.copy(), caption.finished)
            canvas.mark((layout.game,))
        colours = (palette.text, palette.muted, palette.highlight if caption.finished else palette.text)
        weights = (700, 400, 600)
        for i, (text, colour, weight) in enumerate(zip(caption.lines(), colours, weights, strict=True)):
            rect = layout.lines[i]
            if canvas.changed(f"cell{k}.line{i}", (text, colour), (rect,)):
                size = painter.fit(text, self.sizes[i], rect.w, weight)
                baseline = (rect.h + painter.pixels(size) * 7 // 10) // 2
                painter.draw(image[rect.slices], text, (0, baseline), size, colour, weight)
        rect = layout.lines[3]
        probability = caption.probability
        filled = None if probability is None else round(float(probability) * 100)
        if canvas.changed(f"cell{k}.action", (caption.action, filled), (rect,)) and caption.action is not None:
            label = f"{caption.action} {filled}%" if filled is not None else caption.action
            size = self.sizes[3]
            baseline = (rect.h + painter.pixels(size) * 7 // 10) // 2
            end = painter.draw(image[rect.slices], label, (0, baseline), size, palette.muted)
            if filled is not None:
                label_w = max((painter.width(f"{n} 100%", size) for n in self.action_names), default=end)
                gap = painter.pixels(size) // 2
                bar = Rect(rect.x + label_w + gap, rect.y + rect.h // 3, max(0, rect.w - label_w - gap), rect.h // 3)
                fill(image, bar, palette.bar_track)
                fill(image, Rect(bar.x, bar.y, round(bar.w * filled / 100), bar.h), palette.accent)
