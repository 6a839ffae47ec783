"""Compiled drawing kernels (numba) for the overlay's per-frame parts that are all gather and scatter.

Lighting the diagram's nodes and painting the feature-map thumbnails are a few tens of thousands of byte
moves through index tables. NumPy does them as fancy indexing over int64 index arrays, several passes and
temporaries per part; these loops do each in one pass, ~2x faster, with the very same bytes as the NumPy
scatter for the nodes and as each map's own nearest-neighbour ``cv2.resize`` for the thumbnails (tested).

Each kernel is compiled on first use (~0.6-0.8 s for both) and cached in ``render/draw/__pycache__``, or in a per-user
cache folder where that is not writable; with neither writable, they are compiled in every process instead. They
run without the GIL, so the encoder's thread is never kept waiting by them. They check no bounds: their callers
check the shapes first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import numpy as np


def _compiled(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` compiled by numba without the GIL, cached on disk where numba finds a folder to write."""
    try:
        return numba.njit(cache=True, nogil=True)(function)
    except RuntimeError:  # "cannot cache function ...: no locator available" (a read-only install and home)
        return numba.njit(nogil=True)(function)


@_compiled
def light_nodes(
    pixels: np.ndarray,
    shades: np.ndarray,
    ramp: np.ndarray,
    inner_pixels: np.ndarray,
    inner_nodes: np.ndarray,
    rim_pixels: np.ndarray,
    rim_nodes: np.ndarray,
    rim_coverage: np.ndarray,
    rim_background: np.ndarray,
) -> None:  # pragma: no cover - compiled; exercised through NetworkDiagram.draw
    """Colour node pixels: ``pixels`` is the image as ``(H * W, 3)``; node ``k`` takes ``ramp[shades[k]]``.

    Inner pixels take the colour as is; rim pixel ``i`` becomes ``rim_background[i] + colour * rim_coverage[i]``
    in float32, truncated to uint8 (the background already weighted by ``1 - coverage``).
    """
    for i in range(inner_pixels.size):
        p = inner_pixels[i]
        s = shades[inner_nodes[i]]
        pixels[p, 0] = ramp[s, 0]
        pixels[p, 1] = ramp[s, 1]
        pixels[p, 2] = ramp[s, 2]
    for i in range(rim_pixels.size):
        p = rim_pixels[i]
        s = shades[rim_nodes[i]]
        c = rim_coverage[i]
        for channel in range(3):
            pixels[p, channel] = np.uint8(rim_background[i, channel] + np.float32(ramp[s, channel]) * c)


@_compiled
def paint_thumbnails(
    image: np.ndarray,
    stack: np.ndarray,
    ramp: np.ndarray,
    grey: bool,
    top: int,
    lefts: np.ndarray,
    source_rows: np.ndarray,
    source_columns: np.ndarray,
) -> None:  # pragma: no cover - compiled; exercised through FeatureMaps.draw
    """Paint map ``k`` of ``stack`` (``(count, h, w)`` uint8) enlarged into the square cell at ``(lefts[k],
    top)`` of ``image``: cell pixel ``(y, x)`` shows ``stack[k, source_rows[y], source_columns[x]]``, in grey
    or through ``ramp`` (``(256, 3)``)."""
    size = source_rows.size
    for k in range(stack.shape[0]):
        left = lefts[k]
        for y in range(size):
            row = image[top + y, left : left + size]
            if y and source_rows[y] == source_rows[y - 1]:  # enlarged: the row above, again
                above = image[top + y - 1, left : left + size]
                for x in range(size):
                    row[x, 0] = above[x, 0]
                    row[x, 1] = above[x, 1]
                    row[x, 2] = above[x, 2]
                continue
            source = stack[k, source_rows[y]]
            for x in range(size):
                v = source[source_columns[x]]
                if grey:
                    row[x, 0] = v
                    row[x, 1] = v
                    row[x, 2] = v
                else:
                    row[x, 0] = ramp[v, 0]
                    row[x, 1] = ramp[v, 1]
                    row[x, 2] = ramp[v, 2]
