"""Drawing: everything that turns a frame's analytics into pixels, in pure NumPy (uint8 HWC in and out).

:mod:`~render.draw.style` (palette, fonts, text), :mod:`~render.draw.compose` (rectangles, damage, templates),
:mod:`~render.draw.kernels` (compiled gather and scatter), :mod:`~render.draw.panels` (stats, policy bars,
value chart, feature maps), :mod:`~render.draw.diagram` (the network diagram) and :mod:`~render.draw.overlays`
(the three overlays that lay them out). Nothing here encodes video or runs the network.
"""

from render.draw.overlays import FullOverlay, MinimalOverlay, Overlay, RawOverlay
from render.draw.style import Palette, Style

__all__ = ["FullOverlay", "MinimalOverlay", "Overlay", "Palette", "RawOverlay", "Style"]
