"""Overlay panels: the stats table, the policy bars, the value chart and the feature-map thumbnails.

Each panel splits its drawing in two: ``draw_static`` paints labels, boxes and tracks into the template once;
``draw`` paints only what changes per frame and stays inside the panel's ``dirty`` rectangles. ``draw`` asks
its ``due`` (see :class:`render.draw.compose.Due`) before each part (a stats row, the bars, the value number, the
sparkline, a thumbnail row), so on a persistent canvas only parts whose inputs changed are redrawn.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from render.draw.compose import Due, Rect, always, fill
from render.draw.kernels import paint_thumbnails
from render.draw.style import Palette, TextPainter


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
    """One horizontal bar per action with its probability; the action taken is highlighted."""

    def __init__(
        self, rect: Rect, action_names: Sequence[str], palette: Palette, painter: TextPainter, *, title: str
    ) -> None:
        if not action_names:
            raise ValueError("expected at least one action name, got none")
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
        number_width = painter.width("100%", self._size) + 8
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
        widths = tuple(np.rint(np.clip(probabilities, 0.0, 1.0) * self._track.w).astype(int).tolist())
        texts = tuple(f"{p:4.0%}" for p in probabilities)
        # The bars move with every small change of a probability, the rounded percentages far less often.
        if due("bars", (widths, taken), (self._arrows, self._fills)):
            for i, width in enumerate(widths):
                if width:
                    color = self._palette.highlight if i == taken else self._palette.bar
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
    """The value estimate as a number and a sparkline of its recent history."""

    def __init__(self, rect: Rect, palette: Palette, painter: TextPainter, *, title: str = "Value Estimate") -> None:
        self.rect = rect
        self._palette = palette
        self._painter = painter
        self._title = title
        self._size = 15.0
        head = painter.pixels(self._size) + 10
        title_width = painter.width(title, self._size, 600) + painter.pixels(self._size) // 2  # bold, as drawn
        self._number = Rect(rect.x + title_width, rect.y, rect.w - title_width, head)
        self._plot = Rect(rect.x, rect.y + head, rect.w, rect.h - head).inset(2)
        self.dirty = (self._number, self._plot)
        self._columns: dict[int, np.ndarray] = {}  # x of each point, per history length

    def draw_static(self, template: np.ndarray) -> None:
        baseline = self.rect.y + self._painter.pixels(self._size)
        self._painter.draw(template, self._title, (self.rect.x, baseline), self._size, self._palette.accent, 600)
        fill(template, self._plot, self._palette.panel)

    def draw(self, image: np.ndarray, value: float, history: np.ndarray, due: Due = always) -> None:
        text = f"{value:+.3f}"
        if due("value", text, (self._number,)):
            origin = (0, self._painter.pixels(self._size))  # clipped to its rectangle
            self._painter.draw(image[self._number.slices], text, origin, self._size, self._palette.text, 600)
        points = self._points(history)
        if due("sparkline", points.tobytes(), (self._plot,)) and len(points) >= 2:
            cv2.polylines(image, [points], False, self._palette.accent, 1, cv2.LINE_AA)
            cv2.circle(image, tuple(int(v) for v in points[-1]), 3, self._palette.highlight, -1, cv2.LINE_AA)

    def _points(self, history: np.ndarray) -> np.ndarray:
        """The sparkline's pixel points for ``history`` (none for fewer than two values)."""
        n = history.size
        if n < 2:
            return np.empty((0, 2), np.int32)
        plot = self._plot.inset(4)
        columns = self._columns.get(n)
        if columns is None:  # x depends only on the length (which grows anew every episode): kept per length
            if len(self._columns) >= 4096:
                self._columns.clear()
            columns = self._columns[n] = np.rint(plot.x + np.linspace(0, plot.w - 1, n)).astype(np.int32)
        low, high = float(history.min()), float(history.max())
        span = max(high - low, 1e-6)
        points = np.empty((n, 2), np.int32)
        points[:, 0] = columns
        points[:, 1] = np.rint(plot.bottom - 1 - (history - low) / span * (plot.h - 1))
        return points


_GAP = 6  # pixels between feature-map thumbnails, across and down


class FeatureMaps:
    """Rows of small feature-map thumbnails, one row per layer, with the layer name at the left.

    Rows named in ``grey_rows`` (the agent's input frames) are drawn in grey, the others through the palette's
    cold-to-hot ramp.
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
        self._size = 13.0
        head = painter.pixels(15.0) + 8
        label_width = max(painter.width(name, self._size) for name, _ in self.rows) + 10
        most = max(count for _, count in self.rows)
        row_height = (rect.h - head) // len(self.rows)
        self._cell = max(8, min(row_height - _GAP, (rect.w - label_width) // most - _GAP))
        if row_height < 8 + _GAP:
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
        self._extent = (max(cell.bottom for cell in self.dirty), max(cell.right for cell in self.dirty))
        self._sources: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

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

    def draw(self, image: np.ndarray, maps: Sequence[np.ndarray], due: Due = always) -> None:
        """``maps[r]``: a ``(count, h, w)`` uint8 stack for row ``r`` (255 hottest); empty rows stay blank."""
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
            count = len(shown)
            # a full row paints every cell (the gaps between them never change): nothing to restore first
            restore = count < len(cells)
            if not due(f"maps{row}", (shown.shape, shown.tobytes()), self.row_rects[row : row + 1], restore=restore):
                continue
            if not count:
                continue
            rows, columns = self._source_pixels(shown.shape[1], shown.shape[2])
            paint_thumbnails(image, shown, self._ramp, grey, cells[0].y, self._lefts[row], rows, columns)

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
