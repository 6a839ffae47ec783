"""Colours and type for every overlay: one place to restyle the videos.

Images are RGB, so every colour here is an ``(r, g, b)`` tuple, not OpenCV's usual BGR. Font sizes are in
pixels at a 720-pixel-high canvas and scale with the canvas height, so text stays legible at any resolution.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

RGB = tuple[int, int, int]
BUILTIN_FACES = ("sans", "uni", "italic")
_FONT_MAGIC = (b"\x00\x01\x00\x00", b"OTTO", b"true", b"ttcf")  # TrueType, OpenType CFF, Apple, collection


@dataclass(frozen=True)
class Palette:
    """The colours of the overlays."""

    background: RGB = (11, 13, 22)
    panel: RGB = (22, 26, 40)
    frame_border: RGB = (60, 68, 96)
    text: RGB = (232, 234, 242)
    muted: RGB = (138, 145, 168)
    accent: RGB = (96, 200, 255)
    highlight: RGB = (255, 190, 60)
    bar: RGB = (64, 104, 172)
    bar_track: RGB = (34, 40, 60)
    edge: RGB = (44, 52, 78)
    node_cold: RGB = (30, 36, 58)
    node_warm: RGB = (240, 80, 120)
    node_hot: RGB = (255, 236, 140)
    outcome: RGB = (120, 222, 140)
    edge_positive: RGB = (226, 96, 120)
    edge_negative: RGB = (80, 150, 255)

    def ramp(self) -> np.ndarray:
        """A 256-entry colour map from cold through warm to hot, as a ``(256, 3)`` uint8 lookup table."""
        stops = np.array([self.node_cold, self.node_warm, self.node_hot], dtype=np.float32)
        position = np.linspace(0.0, 2.0, 256, dtype=np.float32)
        low = np.minimum(position.astype(np.int64), 1)
        t = (position - low)[:, None]
        return np.rint(stops[low] * (1.0 - t) + stops[low + 1] * t).astype(np.uint8)


@dataclass(frozen=True)
class Typeface:
    """Which font to draw text with and how big.

    ``name`` is an OpenCV 5 font face (``"sans"``, ``"uni"``, ``"italic"`` or a path to a TrueType/OpenType
    file); OpenCV 4 has no font faces and falls back to its Hershey font. ``scale`` multiplies every size.
    """

    name: str = "sans"
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.scale <= 0:
            raise ValueError(f"expected a positive font scale, got {self.scale}")
        if self.name in BUILTIN_FACES:
            return
        # OpenCV crashes the process (SIGSEGV) on a file that is not a font, so a path is checked here first.
        path = Path(self.name)
        if not path.is_file():
            raise ValueError(
                f"font {self.name!r} is neither a built-in face ({', '.join(BUILTIN_FACES)}) nor an existing font "
                "file; name one of those or the path of a .ttf/.otf file"
            )
        with path.open("rb") as file:
            magic = file.read(4)
        if magic not in _FONT_MAGIC:
            raise ValueError(
                f"{path} is not a TrueType/OpenType font (it starts with {magic!r}); name a .ttf or .otf file, "
                f"or one of {', '.join(BUILTIN_FACES)}"
            )


@dataclass(frozen=True)
class Style:
    """Palette and typeface together, as the overlays take them."""

    palette: Palette = field(default_factory=Palette)
    typeface: Typeface = field(default_factory=Typeface)


class TextPainter:
    """Draws antialiased text into RGB arrays with a size in pixels, whatever OpenCV version is installed.

    Example:
        >>> import numpy as np
        >>> painter = TextPainter(Typeface(), canvas_height=720)
        >>> image = np.zeros((40, 200, 3), np.uint8)
        >>> end = painter.draw(image, "Frame 12", (4, 30), 18, (255, 255, 255))
        >>> bool(image.any()), end > 4
        (True, True)
    """

    def __init__(self, typeface: Typeface, canvas_height: int) -> None:
        if typeface.scale <= 0:
            raise ValueError(f"expected a positive font scale, got {typeface.scale}")
        self._factor = typeface.scale * canvas_height / 720.0
        face_type = getattr(cv2, "FontFace", None)
        self._face = face_type(typeface.name) if face_type is not None else None
        if self._face is not None and not self._face.getName():
            raise ValueError(
                f"OpenCV has no font face {typeface.name!r}; use 'sans', 'uni', 'italic' or a font file path"
            )

    def pixels(self, size: float) -> int:
        """The pixel size that a nominal 720p ``size`` becomes on this canvas."""
        return max(6, round(size * self._factor))

    def draw(
        self,
        image: np.ndarray,
        text: str,
        origin: tuple[int, int],
        size: float,
        color: RGB,
        weight: int = 400,
    ) -> int:
        """Draw ``text`` with its baseline starting at ``origin``; returns the x coordinate where it ends."""
        px = self.pixels(size)
        if self._face is not None:
            end, _ = cv2.putText(image, text, origin, color, self._face, px, weight)
            return int(end[0])
        scale, thickness = self._hershey(px, weight)
        cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, color, thickness, cv2.LINE_AA)
        return origin[0] + self.width(text, size, weight)

    def width(self, text: str, size: float, weight: int = 400) -> int:
        """How many pixels wide ``text`` is drawn."""
        px = self.pixels(size)
        if self._face is not None:
            x, _, w, _ = cv2.getTextSize((0, 0), text, (0, 0), self._face, px, weight)
            return int(x + w)
        scale, thickness = self._hershey(px, weight)
        (w, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        return int(w)

    def fit(self, text: str, size: float, room: int, weight: int = 400) -> float:
        """``size``, or smaller until ``text`` fits ``room`` pixels."""
        while size > 6 and self.width(text, size, weight) > room:
            size -= 1.0
        return size

    @staticmethod
    def _hershey(px: int, weight: int) -> tuple[float, int]:
        # Hershey simplex capitals are ~22 units high at scale 1; size here is the em size, capitals ~0.7 em.
        return px * 0.7 / 22.0, 2 if weight >= 600 else 1
