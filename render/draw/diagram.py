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
    """One column of the diagram: its label and how many nodes it shows."""

    label: str
    size: int


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
        edges_per_node: int = 3,
        seed: int = 0,
    ) -> None:
        if not layers:
            raise ValueError("expected at least one diagram layer, got none")
        self.rect = rect
        self.layers = tuple(layers)
        self._palette = palette
        self._ramp = palette.ramp()
        self._painter = painter
        self._label_size = 13.0
        label_height = painter.pixels(self._label_size) + 8
        self._body = Rect(rect.x, rect.y, rect.w, rect.h - label_height)
        self._centres, self._radii = self._place()
        self._edges = self._wire(edges_per_node, np.random.default_rng(seed))
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

    @property
    def edges(self) -> list[tuple[tuple[int, int], tuple[int, int]]]:
        """The drawn connections as ``((x0, y0), (x1, y1))`` pixel pairs."""
        return list(self._edges)

    def draw_static(self, template: np.ndarray) -> None:
        """Draw edges and layer labels."""
        edge_color = self._palette.edge
        for start, end in self._edges:
            cv2.line(template, start, end, edge_color, 1, cv2.LINE_AA)
        baseline = self.rect.bottom - 6
        for centres, layer in zip(self._centres, self.layers, strict=True):
            text = f"{layer.label}"
            width = self._painter.width(text, self._label_size)
            x = int(np.clip(centres[:, 0].mean() - width / 2, self.rect.x, self.rect.right - width))
            self._painter.draw(template, text, (x, baseline), self._label_size, self._palette.muted)

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
        body = self._body
        column_width = body.w / len(self.layers)
        centres, radii = [], []
        for i, layer in enumerate(self.layers):
            sub_columns = 1
            while body.h / math.ceil(layer.size / sub_columns) < _MIN_SPACING and sub_columns < 8:
                sub_columns += 1
            rows = math.ceil(layer.size / sub_columns)
            spacing = min(_MAX_SPACING, body.h / rows, column_width / (sub_columns + 0.5))
            cx = body.x + column_width * (i + 0.5)
            n = np.arange(layer.size)
            col, row = n // rows, n % rows
            rows_here = np.where(col < sub_columns - 1, rows, layer.size - rows * (sub_columns - 1))
            x = cx + (col - (sub_columns - 1) / 2) * spacing
            y = body.y + body.h / 2 + (row - (rows_here - 1) / 2) * spacing
            centres.append(np.stack([x, y], axis=1))
            radii.append(np.full(layer.size, max(1.5, spacing * 0.36)))
        return centres, np.concatenate(radii)

    def _wire(self, per_node: int, rng: np.random.Generator) -> list[tuple[tuple[int, int], tuple[int, int]]]:
        edges = []
        for source, target in zip(self._centres[:-1], self._centres[1:], strict=True):
            for end in target:
                for start in source[rng.choice(len(source), min(per_node, len(source)), replace=False)]:
                    edges.append(((round(start[0]), round(start[1])), (round(end[0]), round(end[1]))))
        return edges

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
