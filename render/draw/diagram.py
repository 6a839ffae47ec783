"""The network diagram: columns of nodes, one per layer, lit each frame by that layer's real activations.

Edges, labels and node outlines go into the static template once. Each frame the nodes are recoloured in one
pass of a compiled kernel (:func:`render.draw.kernels.light_nodes`): every node pixel's index, node id and
antialiasing coverage are computed up front, so lighting hundreds of nodes costs one gather and one blend over
a few thousand pixels instead of hundreds of circle calls.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from render.draw.compose import Due, Rect, always, conversion_cost
from render.draw.kernels import light_nodes
from render.draw.style import Palette, TextPainter

_MIN_SPACING = 7.0
_MAX_SPACING = 26.0


@dataclass(frozen=True)
class DiagramLayer:
    """One layer of the diagram: its label, how many nodes it shows, a detail under the label (``32 of 512``)
    and, for output layers, a name per node (the actions, ``value``): named layers share the last column, each
    node labelled at its right."""

    label: str
    size: int
    detail: str = ""
    names: tuple[str, ...] = ()


class NetworkDiagram:
    """Draws a layered network into ``rect`` and lights its nodes by activation levels in [0, 1].

    Example:
        >>> from render.draw.style import Typeface
        >>> layers = [DiagramLayer("conv1", 8), DiagramLayer("out", 2)]
        >>> diagram = NetworkDiagram(Rect(0, 0, 200, 120), layers, Palette(), TextPainter(Typeface(), 720))
        >>> image = np.zeros((120, 200, 3), np.uint8)
        >>> diagram.draw_static(image)
        >>> diagram.bind(image)
        >>> diagram.draw(image, [np.ones(8), np.zeros(2)])
    """

    def __init__(
        self,
        rect: Rect,
        layers: Sequence[DiagramLayer],
        palette: Palette,
        painter: TextPainter,
        *,
        title: str = "",
    ) -> None:
        if not layers:
            raise ValueError("expected at least one diagram layer, got none")
        for layer in layers:
            if layer.names and len(layer.names) != layer.size:
                raise ValueError(f"diagram layer {layer.label!r} has {layer.size} nodes but {len(layer.names)} names")
        self.rect = rect
        self.layers = tuple(layers)
        self._palette = palette
        self._ramp = palette.ramp()
        self._painter = painter
        self._title = title
        self._label_size, self._name_size, self._legend_size = 13.0, 12.0, 11.0
        head = painter.pixels(15.0) + painter.pixels(self._legend_size) + 14 if title else 0
        details = any(layer.detail for layer in self.layers)
        label_height = (painter.pixels(self._label_size) + 6) * (2 if details else 1) + 4
        names = [name for layer in self.layers for name in layer.names]
        self._names_width = max((painter.width(name, self._name_size) for name in names), default=0)
        self._names_width += 8 if names else 0
        self._head = head
        self._body = Rect(rect.x, rect.y + head, rect.w - self._names_width, rect.h - head - label_height)
        self._centres, self._radii = self._place()
        self._edges: list[tuple[tuple[int, int], tuple[int, int], tuple[int, int, int]]] = []
        self._pixels: tuple[np.ndarray, ...] | None = None
        self._shape: tuple[int, ...] = ()
        self.boxes: tuple[Rect, ...] = ()  # per layer, the rectangle its nodes paint (set by bind)
        self._damage: tuple[Rect, ...] = ()  # the boxes, neighbours grouped (set by bind)

    @property
    def node_count(self) -> int:
        return sum(layer.size for layer in self.layers)

    @property
    def nodes(self) -> tuple[np.ndarray, np.ndarray]:
        """Node centres ``(N, 2)`` as ``(x, y)`` and radii ``(N,)``, layer by layer."""
        return np.concatenate(self._centres), self._radii

    def wire(self, links: Sequence[tuple[int, int, np.ndarray]]) -> None:
        """Draw these connections from the next :meth:`draw_static` on: ``(source layer, target layer, rows of
        (source node, target node, weight in -1..1))``, each an edge whose colour says the sign and whose
        strength the brightness (see :class:`render.frame.NetworkWiring`)."""
        palette = self._palette
        back = np.array(palette.background, np.float32)
        edges = []
        for source, target, table in links:
            for s, t, weight in np.asarray(table, np.float64).reshape(-1, 3):
                start, end = self._centres[source][int(s)], self._centres[target][int(t)]
                tone = np.array(palette.edge_positive if weight >= 0 else palette.edge_negative, np.float32)
                strength = 0.25 + 0.75 * min(1.0, abs(float(weight)))
                colour = tuple(int(c) for c in np.rint(back + (tone - back) * strength))
                edges.append(((round(start[0]), round(start[1])), (round(end[0]), round(end[1])), colour))
        edges.sort(key=lambda edge: sum(edge[2]))  # the strongest drawn last, on top
        self._edges = edges

    def draw_static(self, template: np.ndarray) -> None:
        """Draw the title and colour scale, the edges, the layer labels and the output nodes' names."""
        painter, palette = self._painter, self._palette
        if self._title:
            baseline = self.rect.y + painter.pixels(15.0)
            painter.draw(template, self._title, (self.rect.x, baseline), 15.0, palette.accent, 600)
            self._draw_scale(template, baseline + painter.pixels(self._legend_size) + 8)
        for start, end, colour in self._edges:
            cv2.line(template, start, end, colour, 1, cv2.LINE_AA)
        line = painter.pixels(self._label_size) + 6
        shared = [i for i, layer in enumerate(self.layers) if layer.names]
        for i, (centres, layer) in enumerate(zip(self._centres, self.layers, strict=True)):
            if layer.names:
                for name, (x, y) in zip(layer.names, centres, strict=True):
                    origin = (int(x + self._radii.max() + 5), int(y + painter.pixels(self._name_size) * 0.35))
                    painter.draw(template, name, origin, self._name_size, palette.text)
                if i != shared[-1]:
                    continue
                texts, centre = ("outputs", ""), float(centres[:, 0].mean())
            else:
                texts, centre = (layer.label, layer.detail), float(centres[:, 0].mean())
            for k, text in enumerate(texts):
                if not text:
                    continue
                width = painter.width(text, self._label_size)
                x = int(np.clip(centre - width / 2, self.rect.x, self.rect.right - width))
                baseline = self._body.bottom + 4 + line * (k + 1) - 6
                colour = palette.text if k == 0 else palette.muted
                painter.draw(template, text, (x, baseline), self._label_size, colour)

    def _draw_scale(self, template: np.ndarray, baseline: int) -> None:
        """The colour scale: ``activation  low [cold..hot] high (each layer's own scale)``."""
        painter, palette, size = self._painter, self._palette, self._legend_size
        x = self.rect.x
        x = painter.draw(template, "activation: low", (x, baseline), size, palette.muted) + 6
        width, height = 60, max(4, painter.pixels(size) // 2)
        ramp = self._ramp[np.linspace(0, 255, width).astype(np.intp)]
        top = baseline - height
        template[top:baseline, x : x + width] = ramp[None, :, :]
        for text in ("high    edges: strongest weights, + red / - blue", "high    edges: strongest weights", "high"):
            if x + width + 6 + painter.width(text, size) <= self.rect.right:
                painter.draw(template, text, (x + width + 6, baseline), size, palette.muted)
                break

    def bind(self, template: np.ndarray) -> None:
        """Precompute every node pixel and the finished template's background under it, for :meth:`draw`."""
        self._pixels = self._rasterise(template)
        self._shape = template.shape
        height, width = template.shape[:2]
        boxes = []
        per_layer = np.split(self._radii, np.cumsum([len(c) for c in self._centres])[:-1])
        for centres, radii in zip(self._centres, per_layer, strict=True):
            left = max(0, math.floor((centres[:, 0] - radii).min() - 1))
            top = max(0, math.floor((centres[:, 1] - radii).min() - 1))
            right = min(width, math.ceil((centres[:, 0] + radii).max() + 1) + 1)
            bottom = min(height, math.ceil((centres[:, 1] + radii).max() + 1) + 1)
            boxes.append(Rect(left, top, right - left, bottom - top))
        self.boxes = tuple(boxes)
        self._damage = _grouped(self.boxes)

    def draw(self, image: np.ndarray, levels: Sequence[np.ndarray], due: Due = always) -> None:
        """Colour every node by its level (0 cold, 1 hot); ``levels`` holds one array per layer.

        The pixels depend only on each node's step on the palette ramp (its ``due`` key). Every node pixel is
        overwritten (the rims blended over the template's background), so whatever the image held there does
        not matter and nothing is restored first; the changed pixels lie inside :attr:`boxes`, reported in groups
        of neighbours.
        """
        if self._pixels is None:
            raise RuntimeError("call NetworkDiagram.bind(template) once the template is drawn, before draw")
        if not image.flags.c_contiguous or image.shape != self._shape:
            raise ValueError(
                f"NetworkDiagram.draw needs a C-contiguous image shaped like the template it was bound to "
                f"({self._shape}; it scatters into its flat pixels), got {image.shape}"
            )
        shades = np.clip(self._levels(levels) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        if not due("diagram", shades.tobytes(), self._damage, restore=False):
            return
        light_nodes(image.reshape(-1, 3), shades, self._ramp, *self._pixels)

    def draw_circles(self, image: np.ndarray, levels: Sequence[np.ndarray]) -> None:
        """Like :meth:`draw`, one antialiased ``cv2.circle`` per node: the straightforward, slower
        reference."""
        colours = self._ramp[np.clip(self._levels(levels) * 255.0 + 0.5, 0, 255).astype(np.intp)]
        centres, radii = self.nodes
        for (x, y), radius, colour in zip(centres, radii, colours, strict=True):
            centre = (round(x * 16), round(y * 16))
            cv2.circle(image, centre, round(radius * 16), tuple(int(c) for c in colour), -1, cv2.LINE_AA, 4)

    def _levels(self, levels: Sequence[np.ndarray]) -> np.ndarray:
        if len(levels) != len(self.layers):
            raise ValueError(f"expected {len(self.layers)} level arrays, one per layer, got {len(levels)}")
        flat = np.concatenate([np.asarray(level, dtype=np.float32).ravel() for level in levels])
        if flat.size != self.node_count:
            raise ValueError(f"expected {self.node_count} node levels in all, got {flat.size}")
        return flat

    def _place(self) -> tuple[list[np.ndarray], np.ndarray]:
        """Node centres per layer: one column per unnamed layer, and the named (output) layers stacked in the last
        column, their nodes spaced for their names."""
        body = self._body
        named = [i for i, layer in enumerate(self.layers) if layer.names]
        columns = len(self.layers) - len(named) + (1 if named else 0)
        column_width = body.w / columns
        centres: list[np.ndarray] = [np.empty((0, 2))] * len(self.layers)
        radii: list[np.ndarray] = [np.empty(0)] * len(self.layers)
        plain = [i for i in range(len(self.layers)) if i not in named]
        for column, i in enumerate(plain):
            layer = self.layers[i]
            sub_columns = 1
            while body.h / math.ceil(layer.size / sub_columns) < _MIN_SPACING and sub_columns < 8:
                sub_columns += 1
            rows = math.ceil(layer.size / sub_columns)
            spacing = min(_MAX_SPACING, body.h / rows, column_width / (sub_columns + 0.5))
            cx = body.x + column_width * (column + 0.5)
            n = np.arange(layer.size)
            col, row = n // rows, n % rows
            rows_here = np.where(col < sub_columns - 1, rows, layer.size - rows * (sub_columns - 1))
            x = cx + (col - (sub_columns - 1) / 2) * spacing
            y = body.y + body.h / 2 + (row - (rows_here - 1) / 2) * spacing
            centres[i] = np.stack([x, y], axis=1)
            radii[i] = np.full(layer.size, max(1.5, spacing * 0.36))
        if named:
            total = sum(self.layers[i].size for i in named) + (len(named) - 1)  # a gap of one node between layers
            spacing = min(_MAX_SPACING, body.h / max(1, total), column_width)
            cx = body.x + column_width * (columns - 0.5)
            y = body.y + body.h / 2 - (total - 1) / 2 * spacing
            for i in named:
                size = self.layers[i].size
                ys = y + np.arange(size) * spacing
                centres[i] = np.stack([np.full(size, cx), ys], axis=1)
                radii[i] = np.full(size, max(1.5, min(spacing * 0.36, 9.0)))
                y += (size + 1) * spacing
        return centres, np.concatenate(radii)

    def _rasterise(self, template: np.ndarray) -> tuple[np.ndarray, ...]:
        height, width = template.shape[:2]
        radius = self._radii[:, None, None]
        reach = math.ceil(self._radii.max() + 1)
        dy, dx = np.mgrid[-reach : reach + 1, -reach : reach + 1]
        centres = np.concatenate(self._centres)
        base = np.rint(centres).astype(np.int64)
        px = base[:, 0, None, None] + dx
        py = base[:, 1, None, None] + dy
        distance = np.hypot(px - centres[:, 0, None, None], py - centres[:, 1, None, None])
        coverage = np.clip(radius + 1.0 - distance, 0.0, 1.0)
        node = np.broadcast_to(np.arange(len(centres))[:, None, None], coverage.shape)
        keep = (coverage > 0) & (px >= 0) & (px < width) & (py >= 0) & (py < height)
        index, node, coverage = (py * width + px)[keep], node[keep], coverage[keep].astype(np.float32)
        # Pixels fully inside a node take its colour as is; only the antialiased rim is blended, over the
        # template's background weighted by what the node leaves uncovered.
        inner = coverage >= 1.0
        rim = ~inner
        rim_coverage = coverage[rim]
        rim_background = template.reshape(-1, 3)[index[rim]].astype(np.float32) * (1.0 - rim_coverage)[:, None]
        tables = (index[inner], node[inner], index[rim], node[rim])
        return (*(np.ascontiguousarray(a, dtype=np.int32) for a in tables), rim_coverage, rim_background)


def _grouped(boxes: Sequence[Rect]) -> tuple[Rect, ...]:
    """``boxes`` (left to right) with neighbours merged into their bounding box wherever converting the merged box
    costs the encoder less than converting each: the diagram's narrow columns cost less together."""
    groups: list[Rect] = []
    for box in sorted(boxes, key=lambda b: b.x):
        if groups:
            last = groups[-1]
            left, top = min(last.x, box.x), min(last.y, box.y)
            merged = Rect(left, top, max(last.right, box.right) - left, max(last.bottom, box.bottom) - top)
            if conversion_cost(merged) <= conversion_cost(last) + conversion_cost(box):
                groups[-1] = merged
                continue
        groups.append(box)
    return tuple(groups)
