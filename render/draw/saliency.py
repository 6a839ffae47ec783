"""The perturbation saliency drawn over the game: the policy's in blue-cyan, the value's in red-orange, added to
the frame as Greydanus et al. do (the maps come from :class:`render.saliency.SaliencyProbe`). Pure NumPy and
OpenCV, like the rest of :mod:`render.draw`.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

OBSERVATION = (84, 84)  # the maps' size: the agent's observation

POLICY_COLOUR = (0, 150, 255)  # RGB: blue-cyan, Greydanus' actor in blue
VALUE_COLOUR = (255, 80, 0)  # RGB: red-orange, Greydanus' critic in red
COLOURS = np.array((POLICY_COLOUR, VALUE_COLOUR), np.float32)


def saliency_overlay(
    frame: np.ndarray, policy: np.ndarray, value: np.ndarray, scale: float | tuple[float, float]
) -> np.ndarray:
    """The RGB game ``frame`` with the policy saliency added in blue-cyan and the value saliency in red-orange.

    Each 84x84 map is divided by ``scale`` and clipped to [0, 1], added as that much of its colour, as Greydanus
    does, and resized to the frame (the observation is ``AtariPreprocessing``'s resize of the whole screen).
    ``scale`` is one positive number for both maps or a ``(policy, value)`` pair; keep it fixed over an episode
    (e.g. :func:`saliency_scale` of its maps) so brightness compares across frames. Returns a new uint8 frame;
    where both maps are 0 it equals ``frame``.
    """
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 frame (H, W, 3), got {frame.dtype} {frame.shape}")
    if any(np.shape(saliency) != OBSERVATION for saliency in (policy, value)):
        raise ValueError(f"expected 84x84 saliency maps, got {np.shape(policy)} and {np.shape(value)}")
    policy_scale, value_scale = (scale, scale) if np.isscalar(scale) else scale
    for name, factor in (("policy", policy_scale), ("value", value_scale)):
        if not (math.isfinite(factor) and factor > 0):
            raise ValueError(f"expected a positive finite {name} scale, got {factor!r}")
    # The colour layer is made at 84x84 and resized once: a fraction of the work of blending at the frame's size.
    strengths = np.stack([np.asarray(policy, np.float32) / policy_scale, np.asarray(value, np.float32) / value_scale])
    strengths = np.clip(strengths.reshape(2, -1), 0.0, 1.0, dtype=np.float32)
    layer = cv2.convertScaleAbs((strengths.T @ COLOURS).reshape(*OBSERVATION, 3))  # rounded, saturated uint8
    height, width = frame.shape[:2]
    return cv2.add(frame, cv2.resize(layer, (width, height), interpolation=cv2.INTER_LINEAR))  # saturates at 255
