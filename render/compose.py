"""Compositing primitives: rectangles, nearest-neighbour upscaling and the static-template canvas.

The overlays draw what never changes (title, labels, network edges, panel boxes) once into a template. Each
frame only the *dirty* rectangles are restored from the template and redrawn, so a 1280x720 frame costs a few
small copies instead of a full redraw.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np

from render.style import RGB


@dataclass(frozen=True)
class Rect:
    """An axis-aligned pixel rectangle: left ``x``, top ``y``, width ``w``, height ``h``."""

    x: int
    y: int
    w: int
    h: int

    @property
    def slices(self) -> tuple[slice, slice]:
        """Row and column slices that index this rectangle in an ``(H, W, ...)`` array."""
        return slice(self.y, self.y + self.h), slice(self.x, self.x + self.w)

    @property
    def right(self) -> int:
        return self.x + self.w

    @property
    def bottom(self) -> int:
        return self.y + self.h

    def inset(self, dx: int, dy: int | None = None) -> Rect:
        """This rectangle shrunk by ``dx`` on the left and right and ``dy`` (default ``dx``) on top and
        bottom."""
        dy = dx if dy is None else dy
        return Rect(self.x + dx, self.y + dy, max(0, self.w - 2 * dx), max(0, self.h - 2 * dy))

    def within(self, width: int, height: int) -> bool:
        """Whether the rectangle lies entirely inside a ``width`` x ``height`` image."""
        return self.x >= 0 and self.y >= 0 and self.right <= width and self.bottom <= height


def upscale_nearest(image: np.ndarray, scale: int) -> np.ndarray:
    """Enlarge ``image`` by an integer ``scale``, every source pixel becoming a ``scale`` x ``scale`` block.

    Example:
        >>> upscale_nearest(np.arange(4, dtype=np.uint8).reshape(2, 2), 2).tolist()
        [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]
    """
    if scale < 1:
        raise ValueError(f"expected a positive integer scale, got {scale}")
    h, w = image.shape[:2]
    out = np.empty((h * scale, w * scale, *image.shape[2:]), dtype=image.dtype)
    upscale_into(out, image, scale)
    return out


def upscale_into(destination: np.ndarray, image: np.ndarray, scale: int) -> None:
    """Write ``image`` enlarged by ``scale`` into ``destination`` (a view of exactly that size, e.g. a canvas
    region).

    OpenCV widens the rows (its nearest-neighbour resize is slow on 3-channel images when it also has to
    repeat rows); NumPy then repeats each widened row ``scale`` times by broadcasting, straight into the
    destination.
    """
    h, w = image.shape[:2]
    if destination.shape[:2] != (h * scale, w * scale):
        raise ValueError(
            f"expected a {(h * scale, w * scale)} destination for scale {scale}, got {destination.shape[:2]}"
        )
    wide = image if scale == 1 else cv2.resize(image, (w * scale, h), interpolation=cv2.INTER_NEAREST)
    destination.reshape(h, scale, w * scale, *image.shape[2:])[:] = wide[:, None]


def fill(image: np.ndarray, rect: Rect, color: RGB) -> None:
    """Paint ``rect`` of ``image`` in a solid colour."""
    image[rect.slices] = color


def blank(width: int, height: int, color: RGB) -> np.ndarray:
    """A new ``(height, width, 3)`` uint8 image in one colour."""
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[...] = color
    return image


class Canvas:
    """A persistent frame buffer that restores only its dirty rectangles from a static template.

    ``begin()`` returns the buffer with every dirty rectangle reset to the template; the caller then draws the
    dynamic parts, which must stay inside those rectangles (regions every frame overwrites completely, such as
    the game, need no restoring and are not listed). The returned array is reused by the next ``begin()``:
    copy it if you keep it.
    """

    def __init__(self, template: np.ndarray, dirty: Iterable[Rect]) -> None:
        height, width = template.shape[:2]
        self.template = template
        self.dirty = tuple(dirty)
        for rect in self.dirty:
            if not rect.within(width, height):
                raise ValueError(f"dirty rectangle {rect} lies outside the {width}x{height} canvas")
        self._buffer = template.copy()

    def begin(self) -> np.ndarray:
        for rect in self.dirty:
            rows, cols = rect.slices
            self._buffer[rows, cols] = self.template[rows, cols]
        return self._buffer
