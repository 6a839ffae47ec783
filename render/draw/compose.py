"""Compositing primitives: rectangles, nearest-neighbour upscaling and the static-template canvas.

The overlays draw what never changes (title, labels, network edges, panel boxes) once into a template. Each
frame only the parts whose inputs changed are restored from the template and redrawn, and the game only in
the rows that changed; the changed rectangles (the frame's *damage*) let the encoder's colour conversion skip
the rest too. A 1280x720 frame costs a few small copies instead of a full redraw.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from render.draw.style import RGB


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


class Due(Protocol):
    """Asked by a part before it draws: whether part ``name``, whose pixels in ``rects`` depend only on ``key``,
    must be drawn now (:meth:`Canvas.changed` is one; :func:`always` draws everything)."""

    def __call__(self, name: str, key: object, rects: Sequence[Rect], *, restore: bool = True) -> bool: ...


def always(name: str, key: object, rects: Sequence[Rect], *, restore: bool = True) -> bool:
    """The :class:`Due` of a full redraw onto a fresh template: every part is drawn."""
    return True


class Canvas:
    """A persistent frame buffer over a static template that redraws only the parts whose inputs changed.

    Per frame: :meth:`begin`; then for every dynamic part ``if canvas.changed(name, key, rects): draw it``;
    then :meth:`damage` tells which rectangles may differ from the previous frame. A part's ``key`` holds
    everything its pixels depend on (strings, numbers, bytes): an equal key means equal pixels, so the part
    keeps last frame's. Parts that paint every pixel of their rectangles pass ``restore=False``; the others
    get their rectangles reset to the template before drawing. The returned array is reused by the next
    frame: copy it if you keep it.
    """

    def __init__(self, template: np.ndarray) -> None:
        self.template = template
        self.image = template.copy()
        self._height, self._width = template.shape[:2]
        self._keys: dict[str, object] = {}
        self._damage: list[Rect] | None = None
        self._first = True

    def begin(self) -> np.ndarray:
        """Start a frame; the buffer still shows the previous one."""
        self._damage = None if self._first else []
        self._first = False
        return self.image

    def changed(self, name: str, key: object, rects: Sequence[Rect], *, restore: bool = True) -> bool:
        """Whether part ``name`` must be drawn this frame: its ``key`` differs from the last frame's (or it is
        new). If so its ``rects`` are restored from the template (unless ``restore`` is false) and recorded
        as damage."""
        known = name in self._keys
        if known and self._keys[name] == key:
            return False
        if not known:  # a part's rectangles never move: checked once
            for rect in rects:
                if not rect.within(self._width, self._height):
                    size = f"{self._width}x{self._height}"
                    raise ValueError(f"part {name!r}: rectangle {rect} lies outside the {size} canvas")
        if restore:
            for rect in rects:
                rows, cols = rect.slices
                self.image[rows, cols] = self.template[rows, cols]
        self._keys[name] = key
        self.mark(rects)
        return True

    def mark(self, rects: Iterable[Rect]) -> None:
        """Record ``rects`` as changed this frame (for parts that track their own changes)."""
        if self._damage is not None:
            self._damage.extend(rects)

    def damage(self) -> tuple[Rect, ...] | None:
        """Rectangles that may differ from the previous frame; ``None`` on the first frame (all of it)."""
        return None if self._damage is None else tuple(self._damage)


class GameView:
    """The game frame enlarged by ``scale`` into ``rect`` of a persistent buffer.

    :meth:`draw` redraws only the bands of rows that changed since the frame it drew last (Atari screens
    change in a few places a frame: a ball, a paddle, a score), and returns them as rectangles.
    """

    def __init__(self, rect: Rect, scale: int) -> None:
        self.rect, self.scale = rect, scale
        self._last: np.ndarray | None = None

    def draw(self, image: np.ndarray, frame: np.ndarray, *, full: bool = False) -> tuple[Rect, ...]:
        """Draw ``frame`` into ``image[rect]``; ``full`` redraws all of it (``image`` is not the buffer drawn
        last time)."""
        target, scale = image[self.rect.slices], self.scale
        last = self._last
        if full or last is None or last.shape != frame.shape:
            upscale_into(target, frame, scale)
            self._last = frame.copy()
            return (self.rect,)
        words = _row_words(frame)
        changed_words = words != _row_words(last)  # (rows, words of a row)
        rows = np.flatnonzero(changed_words.any(axis=1)).tolist()
        if not rows:
            return ()
        # contiguous bands of changed rows (gaps of a few rows are bridged: one call is cheaper than two); a
        # few bands a frame, so plain Python beats NumPy's per-call cost here
        bands, start, previous = [], rows[0], rows[0]
        for row in rows[1:]:
            if row - previous > 4:
                bands.append((start, previous + 1))
                start = row
            previous = row
        bands.append((start, previous + 1))
        unit = frame[0].nbytes // words.shape[1]  # bytes a word covers
        pixel = frame[0, 0].nbytes  # bytes a pixel takes
        width = frame.shape[1]
        changed = []
        for a, b in bands:
            # the band's changed columns, from the words compared above: every changed pixel lies in a word
            # that differs, so the pixels those words overlap cover them all
            cols = np.flatnonzero(changed_words[a:b].any(axis=0))
            left = int(cols[0]) * unit // pixel
            right = min(width, ((int(cols[-1]) + 1) * unit - 1) // pixel + 1)
            upscale_into(target[a * scale : b * scale, left * scale : right * scale], frame[a:b, left:right], scale)
            x, y = self.rect.x + left * scale, self.rect.y + a * scale
            changed.append(Rect(x, y, (right - left) * scale, (b - a) * scale))
        last[...] = frame
        return tuple(changed)


def _row_words(frame: np.ndarray) -> np.ndarray:
    """``frame``'s rows as 8-byte words where they divide evenly (comparing words is ~30x faster than comparing
    pixels and reducing over channels), else as bytes."""
    rows = np.ascontiguousarray(frame).reshape(frame.shape[0], -1)
    return rows.view(np.uint64) if rows.shape[1] % 8 == 0 else rows


# OpenCV converts RGB to I420 in vector runs of 128 columns and the rest of a row one pixel at a time, ~8x
# slower a pixel (here: 0.32 ns a pixel in whole runs, ~2.5 ns in the tail; a 480-wide region costs as much as a
# 1,100-wide one). So a region whose tail is longer than ``SCALAR_TAIL`` columns is widened to whole runs:
# converting more pixels costs less. The conversion is local to each 2x2 block, so the widened region's extra
# columns are the very bytes a whole-frame conversion gives (tested).
VECTOR_COLUMNS = 128
SCALAR_TAIL = 16
CALL_PIXELS = 9000  # a conversion call's own cost, in pixels of whole runs (~3 us)


def conversion_cost(region: Rect) -> int:
    """What :class:`I420Converter` pays to convert ``region``, in pixels of whole runs: its rows times its width
    widened to whole runs, plus the call. Parts that report damage use it to decide whether neighbouring
    rectangles cost less merged."""
    return region.h * -(-region.w // VECTOR_COLUMNS) * VECTOR_COLUMNS + CALL_PIXELS
