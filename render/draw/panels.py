"""Overlay panels: the stats table, the policy bars, the value chart, the return chart and the feature-map
thumbnails.

Each panel splits its drawing in two: ``draw_static`` paints labels, boxes and tracks into the template once;
``draw`` paints only what changes per frame and stays inside the panel's ``dirty`` rectangles. ``draw`` asks
its ``due`` (see :class:`render.draw.compose.Due`) before each part (a stats row, the bars, the value number, the
value plot, a thumbnail row), so on a persistent canvas only parts whose inputs changed are redrawn.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from render.draw.compose import Due, Rect, always, fill
from render.draw.kernels import paint_thumbnails
from render.draw.style import Palette, TextPainter


class TextRoomError(ValueError):
    """A layout cannot hold its text at the asked font scale (a smaller ``font_scale`` makes room)."""


class StatsPanel:
    """Label/value rows such as ``Frame  1234``; labels are static, values are redrawn each frame.

    A row is ``inset`` pixels of padding, the label column (the widest label and a ``gap``), then the value's
    cell; values are drawn at ``size`` in weight 600, labels at ``size`` in 400.
    """

    size = 17.0
    inset = 8
    gap = 14

    def __init__(
        self,
        rect: Rect,
        labels: Sequence[str],
        palette: Palette,
        painter: TextPainter,
        *,
        size: float = size,
        label_width: int | None = None,
    ) -> None:
        self.rect = rect
        self.labels = tuple(labels)
        self._palette = palette
        self._painter = painter
        self._size = size
        self._row = rect.h // max(1, len(self.labels))
        self._label_width = label_width or max(painter.width(label, size) for label in self.labels) + self.gap
        value_x = rect.x + self.inset + self._label_width
        self.cells = tuple(
            Rect(value_x, rect.y + i * self._row, rect.right - value_x, self._row) for i in range(len(self.labels))
        )
        self.dirty = (Rect(value_x, rect.y, rect.right - value_x, rect.h),)

    def draw_static(self, template: np.ndarray) -> None:
        for i, label in enumerate(self.labels):
            origin = (self.rect.x + self.inset, self._baseline(i))
            self._painter.draw(template, label, origin, self._size, self._palette.muted)

    def draw(self, image: np.ndarray, values: Sequence[str], due: Due = always) -> None:
        """Draw each value clipped to its row's cell, so a row can be redrawn on its own."""
        for row, (value, cell) in enumerate(zip(values, self.cells, strict=True)):
            if due(f"stats{row}", value, (cell,)):
                origin = (0, self._baseline(row) - cell.y)
                self._painter.draw(image[cell.slices], value, origin, self._size, self._palette.text, 600)

    def _baseline(self, row: int) -> int:
        return self.rect.y + row * self._row + (self._row + self._painter.pixels(self._size) * 7 // 10) // 2


class PolicyBars:
    """One horizontal bar per action with its probability; the action taken is highlighted.

    ``q_values=True`` draws a Q network's action values instead: each number is the Q-value, the bars run from the
    frame's lowest Q-value (empty) to its highest (full), and the greedy action's bar is drawn in the accent colour.
    """

    def __init__(
        self,
        rect: Rect,
        action_names: Sequence[str],
        palette: Palette,
        painter: TextPainter,
        *,
        title: str,
        q_values: bool = False,
    ) -> None:
        if not action_names:
            raise ValueError("expected at least one action name, got none")
        self.q_values = q_values
        self.rect = rect
        self.names = tuple(action_names)
        self._palette = palette
        self._painter = painter
        self._title = title
        self._title_size = 15.0
        head = painter.pixels(self._title_size) + 10
        self._row = (rect.h - head) / len(self.names)
        self._size = float(np.clip(self._row * 0.62 * 720 / max(1, painter.pixels(720)), 9.0, 14.0))
        label_width = max(painter.width(name, self._size) for name in self.names) + 18
        number_width = painter.width("-00.000" if q_values else "100%", self._size) + 8
        self._top = rect.y + head
        self._track = Rect(
            rect.x + label_width,
            0,
            max(8, rect.w - label_width - number_width - 4),
            max(3, int(self._row * 0.55)),
        )
        column = rect.bottom - self._top
        self._arrows = Rect(rect.x, self._top, 14, column)
        self._fills = Rect(self._track.x, self._top, self._track.w, column)
        self._numbers = Rect(self._track.right, self._top, rect.right - self._track.right, column)
        self.dirty = (self._arrows, self._fills, self._numbers)

    def draw_static(self, template: np.ndarray) -> None:
        baseline = self.rect.y + self._painter.pixels(self._title_size)
        self._painter.draw(template, self._title, (self.rect.x, baseline), self._title_size, self._palette.accent, 600)
        for i, name in enumerate(self.names):
            y = self._row_top(i)
            self._painter.draw(
                template, name, (self.rect.x + 14, self._text_baseline(i)), self._size, self._palette.text
            )
            fill(template, Rect(self._track.x, y, self._track.w, self._track.h), self._palette.bar_track)

    def draw(self, image: np.ndarray, probabilities: np.ndarray, taken: int | None, due: Due = always) -> None:
        """``probabilities`` (or, with ``q_values``, the Q-values) of each action; ``taken`` the action played."""
        greedy = None
        if self.q_values:
            values = np.asarray(probabilities, np.float64)
            greedy = int(np.argmax(values))
            low, high = float(values.min()), float(values.max())
            fractions = (values - low) / (high - low) if high > low else np.ones_like(values)
            texts = tuple(f"{q:+.3f}" for q in values)
        else:
            fractions = np.clip(probabilities, 0.0, 1.0)
            texts = tuple(f"{p:4.0%}" for p in probabilities)
        widths = tuple(np.rint(fractions * self._track.w).astype(int).tolist())
        # The bars move with every small change of a probability, the rounded percentages far less often.
        if due("bars", (widths, taken), (self._arrows, self._fills)):
            for i, width in enumerate(widths):
                if width:
                    color = self._palette.highlight if i == taken else self._palette.bar
                    if i == greedy and i != taken:
                        color = self._palette.accent
                    fill(image, Rect(self._track.x, self._row_top(i), int(width), self._track.h), color)
            if taken is not None and 0 <= taken < len(self.names):
                y = self._row_top(taken) + self._track.h // 2
                triangle = np.array([[self.rect.x + 2, y - 5], [self.rect.x + 10, y], [self.rect.x + 2, y + 5]])
                cv2.fillConvexPoly(image, triangle, self._palette.highlight, cv2.LINE_AA)
        if due("bar-numbers", (texts, taken), (self._numbers,)):
            numbers = image[self._numbers.slices]  # clipped to its rectangle
            for i, text in enumerate(texts):
                color = self._palette.highlight if i == taken else self._palette.muted
                origin = (6, self._text_baseline(i) - self._numbers.y)
                self._painter.draw(numbers, text, origin, self._size, color)

    def _row_top(self, i: int) -> int:
        return int(self._top + i * self._row + (self._row - self._track.h) / 2)

    def _text_baseline(self, i: int) -> int:
        return int(self._top + i * self._row + (self._row + self._painter.pixels(self._size) * 0.7) / 2)


class ValueChart:
    """The critic's value estimate against the return that actually followed, over the recent frames.

    Two numbers head the panel, each in its line's colour: the value of this frame, and the discounted return
    that followed it (known because the whole episode is recorded). Below, both histories share one axis whose
    range (from the scene: it holds 0, the episode's returns and every value seen, at least 1 wide) is labelled
    at its ends and at 0, with the zero line drawn, so a flat estimate looks flat and a negative one shows as
    such. ``note`` (e.g. ``discounted with gamma 0.99, rewards clipped to +-1``) says how the return is counted.
    """

    def __init__(self, rect: Rect, palette: Palette, painter: TextPainter, *, note: str = "") -> None:
        self.rect = rect
        self._palette = palette
        self._painter = painter
        self._size, self._note_size, self._tick_size = 14.0, 11.0, 11.0
        line = painter.pixels(self._size) + 6
        note_line = painter.pixels(self._note_size) + 5 if note else 0
        self._labels = ("Value estimate", "Return that followed")
        label_width = max(painter.width(text, self._size, 600) for text in self._labels) + painter.pixels(8)
        self._numbers = tuple(
            Rect(rect.x + label_width, rect.y + i * line, rect.w - label_width, line) for i in range(2)
        )
        self._note = note
        head = 2 * line + note_line + 4
        tick_width = painter.width("-10.0", self._tick_size) + 6
        self._axis = Rect(rect.x, rect.y + head, tick_width, rect.h - head)
        self._plot = Rect(rect.x + tick_width, rect.y + head, rect.w - tick_width, rect.h - head)
        self.dirty = (*self._numbers, self._axis, self._plot)
        self._columns: dict[int, np.ndarray] = {}  # x of each point, per history length

    def draw_static(self, template: np.ndarray) -> None:
        colours = (self._palette.accent, self._palette.outcome)
        for i, (text, colour) in enumerate(zip(self._labels, colours, strict=True)):
            baseline = self._numbers[i].y + self._painter.pixels(self._size)
            self._painter.draw(template, text, (self.rect.x, baseline), self._size, colour, 600)
        if self._note:
            baseline = self._numbers[1].bottom + self._painter.pixels(self._note_size)
            self._painter.draw(template, self._note, (self.rect.x, baseline), self._note_size, self._palette.muted)
        fill(template, self._plot, self._palette.panel)

    def draw(
        self,
        image: np.ndarray,
        value: float,
        history: np.ndarray,
        due: Due = always,
        *,
        followed: float | None = None,
        followed_history: np.ndarray | None = None,
        span: tuple[float, float] | None = None,
    ) -> None:
        texts = (f"{value:+.3f}", "-" if followed is None else f"{followed:+.3f}")
        colours = (self._palette.accent, self._palette.outcome)
        for i, (text, colour, cell) in enumerate(zip(texts, colours, self._numbers, strict=True)):
            if due(f"value{i}", text, (cell,)):
                origin = (0, self._painter.pixels(self._size))  # clipped to its rectangle
                self._painter.draw(image[cell.slices], text, origin, self._size, colour, 600)
        low, high = span if span is not None else _span(history, followed_history)
        plot = self._plot.inset(6, 6)  # the end marker's antialiased rim stays inside the plot
        if due("value-axis", (low, high), (self._axis,)):  # the ticks move only when the axis does
            labelled: list[int] = []
            for level in (0.0, high, low):  # 0 first: an end too close to it goes unlabelled
                y = _y(level, plot, low, high)
                if any(abs(y - other) < self._painter.pixels(self._tick_size) for other in labelled):
                    continue
                labelled.append(y)
                text = f"{level:g}"
                x = self._axis.w - 4 - self._painter.width(text, self._tick_size)
                size = self._painter.pixels(self._tick_size)
                baseline = int(np.clip(y - self._axis.y + size * 0.35, size, self._axis.h - 2))
                area = image[self._axis.slices]  # clipped to its rectangle
                self._painter.draw(area, text, (x, baseline), self._tick_size, self._palette.muted)
        values = self._points(history, plot, low, high)
        outcomes = self._points(followed_history, plot, low, high) if followed_history is not None else None
        key = (low, high, values.tobytes(), None if outcomes is None else outcomes.tobytes())
        if not due("value-plot", key, (self._plot,)):
            return
        zero = _y(0.0, plot, low, high)
        cv2.line(image, (plot.x, zero), (plot.right - 1, zero), self._palette.frame_border, 1)
        for points, colour in ((outcomes, self._palette.outcome), (values, self._palette.accent)):
            if points is not None and len(points) >= 2:
                cv2.polylines(image, [points], False, colour, 1, cv2.LINE_AA)
                cv2.circle(image, tuple(int(v) for v in points[-1]), 3, colour, -1, cv2.LINE_AA)

    def _points(self, history: np.ndarray, plot: Rect, low: float, high: float) -> np.ndarray:
        """The chart's pixel points for ``history`` (none for fewer than two values)."""
        n = history.size
        if n < 2:
            return np.empty((0, 2), np.int32)
        columns = self._columns.get(n)
        if columns is None:  # x depends only on the length (which grows anew every episode): kept per length
            if len(self._columns) >= 4096:
                self._columns.clear()
            columns = self._columns[n] = np.rint(plot.x + np.linspace(0, plot.w - 1, n)).astype(np.int32)
        points = np.empty((n, 2), np.int32)
        points[:, 0] = columns
        points[:, 1] = np.rint(plot.bottom - 1 - (np.clip(history, low, high) - low) / (high - low) * (plot.h - 1))
        return points


def _span(history: np.ndarray, followed: np.ndarray | None) -> tuple[float, float]:
    """The chart's range when the scene gives none: 0 and every value shown, at least 1 wide."""
    shown = history if followed is None else np.concatenate([history, followed])
    return value_axis(float(shown.min(initial=0.0)), float(shown.max(initial=0.0)))


def value_axis(low: float, high: float) -> tuple[float, float]:
    """A chart range holding ``low..high`` and 0, spanning at least 1 (a value that barely moves draws flat), its
    ends rounded out to a round number (1, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 times a power of ten).

    Example:
        >>> value_axis(0.15, 0.17), value_axis(-3.3, 2.1)
        ((0.0, 1.0), (-5.0, 5.0))
    """
    low, high = min(0.0, low), max(0.0, high)
    if high - low < 1.0:  # widened on the side the values lie
        if high > 0 or low == 0:
            high = low + 1.0
        else:
            low = high - 1.0

    def nice(x: float) -> float:
        if x <= 0:
            return 0.0
        power = 10.0 ** np.floor(np.log10(x))
        return float(next(m * power for m in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10) if m * power >= x - 1e-9))

    return -nice(-low) + 0.0, nice(high)  # + 0.0: no -0.0


def _y(level: float, plot: Rect, low: float, high: float) -> int:
    return int(round(plot.bottom - 1 - (level - low) / (high - low) * (plot.h - 1)))


class ReturnChart:
    """The episode's return as it builds up, start to end, with a marker at the frame shown.

    The whole episode is recorded, so its future is known: the part already played is drawn in the accent
    colour, the part still to come in the muted one. The axes are labelled with the steps and the return.
    """

    def __init__(self, rect: Rect, palette: Palette, painter: TextPainter, *, title: str = "Return over the episode"):
        self.rect = rect
        self._palette = palette
        self._painter = painter
        self._title, self._size, self._tick = title, 15.0, 11.0
        head = painter.pixels(self._size) + 10
        tick_width = painter.width("99999", self._tick) + 8
        bottom = painter.pixels(self._tick) + 6
        self._plot = Rect(rect.x + tick_width, rect.y + head, rect.w - tick_width, rect.h - head - bottom)
        if self._plot.h < 16 or self._plot.w < 16:
            raise TextRoomError(f"the {rect.w}x{rect.h} return chart has no room for its plot at this font scale")
        # anti-aliased lines and the marker's disc (radius 4) reach past the plot's top and right edges: restored
        # with it, or a redraw blends over the last one's and a frame's pixels depend on the frames before it
        bleed = 6
        self.dirty = (Rect(rect.x, rect.y + head - bleed, rect.w + bleed, rect.h - head + bleed),)
        self._curve: tuple | None = None  # the episode's curve: key, x, y, top, bottom, steps

    def draw_static(self, template: np.ndarray) -> None:
        baseline = self.rect.y + self._painter.pixels(self._size)
        self._painter.draw(template, self._title, (self.rect.x, baseline), self._size, self._palette.accent, 600)

    def draw(
        self, image: np.ndarray, rewards: np.ndarray | None, step: int, due: Due = always, *, key: object = None
    ) -> None:
        """``rewards``: every step's reward of the episode (``None``: unknown, nothing drawn); ``step``: the frame;
        ``key``: names the episode (its curve is computed once)."""
        if rewards is None:
            return
        x, y, total, low, n = self._points(rewards, key)
        px, py = self._pixel(min(max(step, 0), n), n)
        if not due("return-chart", (key, px, py), self.dirty):
            return
        palette, painter, plot = self._palette, self._painter, self._plot
        fill(image, plot, palette.panel)
        points = np.stack([x, y], axis=1).astype(np.int32)
        split = int(np.searchsorted(x, px, side="right"))
        if split >= 1:
            cv2.polylines(image, [points[:split]], False, palette.accent, 2, cv2.LINE_AA)
        if split < len(points):
            cv2.polylines(image, [points[max(0, split - 1) :]], False, palette.muted, 1, cv2.LINE_AA)
        cv2.line(image, (px, plot.y), (px, plot.bottom - 1), palette.frame_border, 1)
        cv2.circle(image, (px, py), 4, palette.highlight, -1, cv2.LINE_AA)
        for level, yy in ((total, plot.y + painter.pixels(self._tick)), (low, plot.bottom - 1)):
            text = f"{level:g}"
            painter.draw(image, text, (plot.x - 6 - painter.width(text, self._tick), yy), self._tick, palette.muted)
        baseline = plot.bottom + painter.pixels(self._tick) + 3
        painter.draw(image, "step 0", (plot.x, baseline), self._tick, palette.muted)
        end = f"step {n}"
        painter.draw(image, end, (plot.right - painter.width(end, self._tick), baseline), self._tick, palette.muted)

    def _pixel(self, step: int, n: int) -> tuple[int, int]:
        x, y = self._curve[1], self._curve[2]
        column = int(round(step / max(n, 1) * (len(x) - 1))) if len(x) > 1 else 0
        return int(x[column]), int(y[column])

    def _points(self, rewards: np.ndarray, key: object) -> tuple[np.ndarray, np.ndarray, float, float, int]:
        """The curve's pixels (one point per plot column at most), its top and bottom values and its steps."""
        if self._curve is None or self._curve[0] != (key, len(rewards)):
            cumulative = np.concatenate([[0.0], np.cumsum(rewards)])
            low, top = min(0.0, float(cumulative.min())), max(1.0, float(cumulative.max()))
            plot = self._plot
            n = len(cumulative) - 1
            count = min(len(cumulative), plot.w)
            steps = np.rint(np.linspace(0, n, count)).astype(np.int64)
            xs = np.rint(plot.x + np.linspace(0, plot.w - 1, count)).astype(np.int32)
            ys = np.rint(plot.bottom - 1 - (cumulative[steps] - low) / (top - low) * (plot.h - 1)).astype(np.int32)
            self._curve = ((key, len(rewards)), xs, ys, top, low, n)
        return self._curve[1], self._curve[2], self._curve[3], self._curve[4], self._curve[5]


_GAP = 6  # pixels between feature-map thumbnails, across and down


class FeatureMaps:
    """Rows of small feature-map thumbnails, one row per layer, with the layer name at the left and a caption
    under each thumbnail (``ch 12``, ``t-3``).

    Rows named in ``grey_rows`` (the agent's input frames) are drawn in grey, each frame's brightest pixel
    stretched to white and small bright objects (a ball of 2x2 pixels) grown to the thumbnail's pixel size first,
    so they survive the reduction; the others are drawn through the palette's cold-to-hot ramp.
    """

    def __init__(
        self,
        rect: Rect,
        rows: Sequence[tuple[str, int]],
        palette: Palette,
        painter: TextPainter,
        *,
        title: str = "Feature Maps",
        grey_rows: Sequence[str] = ("input",),
    ) -> None:
        if not rows:
            raise ValueError("expected at least one feature-map row, got none")
        if rect.x < 0 or rect.y < 0:  # the thumbnail kernel checks no bounds
            raise ValueError(f"the feature-map panel {rect} starts outside the image; give it a rectangle inside")
        self.rect = rect
        self.rows = tuple(rows)
        self._grey = [name in grey_rows for name, _ in self.rows]
        self._palette = palette
        self._painter = painter
        self._ramp = np.ascontiguousarray(palette.ramp().reshape(256, 3))
        self._title = title
        self._size, self._caption_size = 13.0, 10.0
        head = painter.pixels(15.0) + 8
        self._caption_height = painter.pixels(self._caption_size) + 3
        label_width = max(painter.width(name, self._size) for name, _ in self.rows) + 10
        most = max(count for _, count in self.rows)
        row_height = (rect.h - head) // len(self.rows)
        self._cell = max(8, min(row_height - _GAP - self._caption_height, (rect.w - label_width) // most - _GAP))
        if row_height < 8 + _GAP + self._caption_height:
            raise ValueError(
                f"the {rect.w}x{rect.h} feature-map panel is too short for {len(self.rows)} rows of thumbnails "
                "(8 pixels or more each); make the canvas taller"
            )
        if label_width + most * (self._cell + _GAP) - _GAP > rect.w:
            fits = max(0, (rect.w - label_width + _GAP) // (8 + _GAP))
            raise ValueError(
                f"{most} feature-map thumbnails in a row (of {len(self.rows)} rows) do not fit in the "
                f"{rect.w}x{rect.h} feature-map panel at 8 pixels or more each (at most {fits} in a row fit); "
                "show fewer with overlay.thumbnails"
            )
        self._cells: list[list[Rect]] = []
        for r, (_, count) in enumerate(self.rows):
            y = rect.y + head + r * row_height
            self._cells.append(
                [Rect(rect.x + label_width + c * (self._cell + _GAP), y, self._cell, self._cell) for c in range(count)]
            )
        self.dirty = tuple(cell for row in self._cells for cell in row)
        self.row_rects = tuple(
            Rect(row[0].x, row[0].y, row[-1].right - row[0].x, self._cell) if row else Rect(rect.x, rect.y, 0, 0)
            for row in self._cells
        )
        self._lefts = [np.array([cell.x for cell in row], np.int32) for row in self._cells]
        self.caption_rects = tuple(
            Rect(row[0].x, row[0].bottom + 1, row[-1].right - row[0].x, self._caption_height) if row else None
            for row in self._cells
        )
        self._extent = (max(cell.bottom for cell in self.dirty), max(cell.right for cell in self.dirty))
        self._sources: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self._legible: dict[tuple, np.ndarray] = {}  # input frames made legible, by content (see _visible)

    def draw_static(self, template: np.ndarray) -> None:
        self._painter.draw(
            template,
            self._title,
            (self.rect.x, self.rect.y + self._painter.pixels(15.0)),
            15.0,
            self._palette.accent,
            600,
        )
        for (name, _), cells in zip(self.rows, self._cells, strict=True):
            baseline = cells[0].y + (self._cell + self._painter.pixels(self._size) * 7 // 10) // 2
            self._painter.draw(template, name, (self.rect.x, baseline), self._size, self._palette.muted)
            for cell in cells:
                fill(template, cell.inset(-1), self._palette.frame_border)

    def draw(
        self,
        image: np.ndarray,
        maps: Sequence[np.ndarray],
        due: Due = always,
        captions: Sequence[Sequence[str]] | None = None,
    ) -> None:
        """``maps[r]``: a ``(count, h, w)`` uint8 stack for row ``r`` (255 hottest); empty rows stay blank.
        ``captions[r]`` names row ``r``'s thumbnails, one short text each, drawn under them."""
        if captions is not None:
            self._draw_captions(image, captions, due)
        if len(maps) != len(self.rows):
            raise ValueError(f"expected {len(self.rows)} feature-map stacks, one per row, got {len(maps)}")
        if image.shape[0] < self._extent[0] or image.shape[1] < self._extent[1] or image.shape[2:] != (3,):
            raise ValueError(
                f"expected an RGB image of at least {self._extent[0]}x{self._extent[1]} pixels (the thumbnails' "
                f"cells), got {image.shape}"
            )
        for row, (stack, cells, grey) in enumerate(zip(maps, self._cells, self._grey, strict=True)):
            if stack.dtype != np.uint8 or stack.ndim != 3 or 0 in stack.shape[1:]:
                raise ValueError(
                    f"expected a (count, h, w) uint8 stack for feature-map row {row}, got {stack.shape} {stack.dtype}"
                )
            shown = stack[: len(cells)]
            if grey and shown.size:
                shown = self._visible(shown)
            count = len(shown)
            # a full row paints every cell (the gaps between them never change): nothing to restore first
            restore = count < len(cells)
            if not due(f"maps{row}", (shown.shape, shown.tobytes()), self.row_rects[row : row + 1], restore=restore):
                continue
            if not count:
                continue
            rows, columns = self._source_pixels(shown.shape[1], shown.shape[2])
            paint_thumbnails(image, shown, self._ramp, grey, cells[0].y, self._lefts[row], rows, columns)

    def _draw_captions(self, image: np.ndarray, captions: Sequence[Sequence[str]], due: Due) -> None:
        for row, (texts, cells, rect) in enumerate(zip(captions, self._cells, self.caption_rects, strict=False)):
            if rect is None or not due(f"captions{row}", tuple(texts), (rect,)):
                continue
            area = image[rect.slices]  # clipped to its rectangle
            baseline = self._painter.pixels(self._caption_size)
            for text, cell in zip(texts, cells, strict=False):
                x = cell.x - rect.x + max(0, (cell.w - self._painter.width(text, self._caption_size)) // 2)
                self._painter.draw(area, text, (x, baseline), self._caption_size, self._palette.muted)

    def _visible(self, frames: np.ndarray) -> np.ndarray:
        """Grey input frames made legible at thumbnail size: each pixel the brightest of its neighbourhood as
        wide as one thumbnail pixel (a small ball survives the reduction), then stretched so the brightest is
        white. A stack shares all but one frame with the step before: frames seen lately are kept, by content."""
        shown = []
        for frame in frames:
            key = (frame.shape, frame.tobytes())
            found = self._legible.get(key)
            if found is None:
                found = self._legible[key] = self._legible_one(frame)
                while len(self._legible) > 16:
                    del self._legible[next(iter(self._legible))]  # the oldest
            shown.append(found)
        return np.stack(shown)

    def _legible_one(self, frame: np.ndarray) -> np.ndarray:
        reach = max(1, round(frame.shape[0] / self._cell))
        if reach > 1:
            frame = cv2.dilate(frame, np.ones((reach, reach), np.uint8))
        gain = 255.0 / max(float(frame.max()), 1.0)
        return np.clip(frame * np.float32(gain) + 0.5, 0, 255).astype(np.uint8)

    def _source_pixels(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """For a ``height`` x ``width`` map, the source row and column each cell row and column shows: exactly
        OpenCV's nearest-neighbour resize to the cell (taken from resizing the indices themselves)."""
        found = self._sources.get((height, width))
        if found is None:
            size = self._cell

            def nearest(n: int) -> np.ndarray:
                index = np.arange(n, dtype=np.int32)[None, :]
                return cv2.resize(index, (size, 1), interpolation=cv2.INTER_NEAREST)[0].astype(np.int32)

            found = self._sources[(height, width)] = (nearest(height), nearest(width))
        return found
