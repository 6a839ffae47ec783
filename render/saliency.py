"""Perturbation saliency (Greydanus et al. 2018, "Visualizing and Understanding Atari Agents"), batched.

A patch of the observation is blurred under a Gaussian mask ``M`` centred at ``(i, j)``, on every frame of the
4-frame stack: ``phi = obs * (1 - M) + blur(obs) * M``. How much the network's output moves is that patch's
saliency: ``0.5 * ||logits(obs) - logits(phi)||^2`` for the policy, ``0.5 * (V(obs) - V(phi))^2`` for the value.
Patch centres lie on a grid of spacing ``stride``; the coarse scores are interpolated bilinearly back to 84x84.
:mod:`render.draw.saliency` draws the maps over the game.

What makes it affordable (``tests/bench/bench_saliency.py`` has the figures):

- the masks (truncated at 4 sigma, as ``scipy.ndimage.gaussian_filter`` truncates Greydanus' masks) and the
  interpolation are computed once per probe, the blur once per frame;
- ``phi = obs + (blur(obs) - obs) * M`` is one fused ``addcmul`` into a reused buffer, in float32 (the network
  scales whatever it is given by 1/255, so the blend is not rounded to uint8);
- a patch whose mask covers only pixels the blur leaves unchanged cannot move the output: it scores exactly 0
  without a forward pass (in Breakout nearly every mask, reaching 20 pixels, touches an edge; a blank screen
  costs nothing);
- every other patch of every frame goes through the network in batches of ``batch_size``, frames mixed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import nn

from replay.train.network import OBS_SHAPE

TRUNCATE = 4.0  # mask radius in sigmas beyond which it is 0 (scipy's default, which Greydanus' masks used)


@dataclass(frozen=True)
class SaliencySettings:
    """How finely a :class:`SaliencyProbe` perturbs each observation.

    Attributes:
        stride: Spacing of the patch centres in observation pixels: ``ceil(84 / stride)`` squared patches a
            frame. Greydanus used 5 on 80x80 frames (17x17 = 289 here); 6 (14x14 = 196) gives maps nearly as
            close to a dense stride-1 map for 2/3 of the cost, 7 (12x12) clearly coarser ones.
        sigma: Standard deviation of each patch's Gaussian mask, in pixels (Greydanus: 5).
        blur: Standard deviation of the blur the patch blends in (Greydanus: 3).
        batch_size: Perturbed observations per forward pass. On one CPU thread 64 runs as fast as 128 and
            faster than 256, whose activations outgrow the caches.
    """

    stride: int = 6
    sigma: float = 5.0
    blur: float = 3.0
    batch_size: int = 64

    def __post_init__(self) -> None:
        height = OBS_SHAPE[1]
        if not isinstance(self.stride, (int, np.integer)) or not 1 <= self.stride <= height:
            raise ValueError(f"expected a whole stride in 1..{height} pixels, got {self.stride!r}")
        for name in ("sigma", "blur"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"expected a positive finite {name} in pixels, got {value!r}")
        if not isinstance(self.batch_size, (int, np.integer)) or self.batch_size < 1:
            raise ValueError(f"expected a positive whole batch_size, got {self.batch_size!r}")


def patch_centres(size: int, stride: int) -> np.ndarray:
    """Centres ``stride`` apart along an axis of ``size`` pixels, the grid centred on the axis."""
    count = -(-size // stride)
    return (size - 1 - (count - 1) * stride) / 2.0 + stride * np.arange(count)


def blur_stack(stack: np.ndarray, sigma: float) -> np.ndarray:
    """Each frame of a ``(4, 84, 84)`` uint8 stack Gaussian-blurred, as uint8 (edges reflected, as scipy does).

    OpenCV's uint8 blur is bit-exact: a flat region stays exactly flat, so "the blur changes nothing here" is an
    exact test.
    """
    image = np.ascontiguousarray(stack.transpose(1, 2, 0))
    return cv2.GaussianBlur(image, (0, 0), sigma, borderType=cv2.BORDER_REFLECT).transpose(2, 0, 1)


def _interpolation(size: int, centres: np.ndarray) -> np.ndarray:
    """``(size, len(centres))`` weights: a pixel's value is the linear interpolation of its two nearest centres
    (the nearest one's value beyond the first and last centre)."""
    weights = np.zeros((size, len(centres)), np.float32)
    if len(centres) == 1:
        weights[:, 0] = 1.0
        return weights
    position = np.clip((np.arange(size) - centres[0]) / (centres[1] - centres[0]), 0, len(centres) - 1)
    low = np.minimum(np.floor(position).astype(int), len(centres) - 2)
    rows = np.arange(size)
    weights[rows, low] = 1.0 - (position - low)
    weights[rows, low + 1] = position - low
    return weights


class SaliencyProbe:
    """Perturbation saliency of a policy network's logits and value, for batches of observations.

    The model needs ``forward(obs (B, 4, 84, 84)) -> (logits (B, A), value (B,))`` and must accept float32
    observations in [0, 255], as :class:`replay.train.network.ActorCritic` does. Forward hooks on it (such as a
    :class:`render.analytics.NetworkProbe`'s) fire on every perturbed batch too.

    Args:
        model: The policy network; it is put in eval mode and moved to ``device``.
        settings: Grid, mask and batch; the defaults when omitted.
        device: The torch device the network runs on; maps come back as NumPy arrays.

    Example:
        >>> from replay.train.network import ActorCritic
        >>> probe = SaliencyProbe(ActorCritic(4), SaliencySettings(stride=12))
        >>> policy, value = probe.maps(np.zeros((2, 4, 84, 84), np.uint8))
        >>> policy.shape, value.dtype, float(policy.max())
        ((2, 84, 84), dtype('float32'), 0.0)
    """

    def __init__(self, model: nn.Module, settings: SaliencySettings | None = None, device: str = "cpu") -> None:
        self.settings = settings or SaliencySettings()
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        size = OBS_SHAPE[1]
        self.centres = patch_centres(size, self.settings.stride)
        self._upsample = _interpolation(size, self.centres)
        pixels = np.arange(size)
        offsets = (pixels[None, :] - self.centres[:, None]) ** 2  # (n, 84): squared distance along one axis
        squared = (offsets[:, None, :, None] + offsets[None, :, None, :]).reshape(-1, size, size)
        sigma = self.settings.sigma
        masks = np.exp(-squared / (2.0 * sigma**2)).astype(np.float32)
        masks[squared > (TRUNCATE * sigma) ** 2] = 0.0
        self._support = (masks > 0).reshape(len(masks), -1).astype(np.float32)  # (K, 84*84)
        self._masks = torch.from_numpy(masks).to(self.device)  # (K, 84, 84), row-major over the grid

    @property
    def grid(self) -> int:
        """Patch centres along each axis (``grid ** 2`` perturbations a frame)."""
        return len(self.centres)

    def maps(self, observations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw saliency of ``(N, 4, 84, 84)`` uint8 observations: policy and value maps, each ``(N, 84, 84)``
        float32, non-negative, in squared logit and squared value units (not normalised).

        All ``N`` frames are held as float32 on the device (~0.2 MB a frame): pass an episode in chunks.
        """
        policy, value = self.grid_scores(observations)
        return self._to_pixels(policy), self._to_pixels(value)

    def grid_scores(self, observations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The scores of the patches themselves, before interpolation: policy and value, each ``(N, grid,
        grid)`` float32, row ``a`` and column ``b`` being the patch centred at ``(centres[a], centres[b])``."""
        observations = np.asarray(observations)
        if observations.ndim != 4 or observations.shape[1:] != OBS_SHAPE or observations.dtype != np.uint8:
            raise ValueError(
                f"expected uint8 observations of shape (N, {', '.join(map(str, OBS_SHAPE))}), got "
                f"{observations.dtype} {observations.shape}"
            )
        count = len(observations)
        policy = np.zeros((count, len(self._support)), np.float32)
        value = np.zeros((count, len(self._support)), np.float32)
        if count:
            blurred = np.stack([blur_stack(frame, self.settings.blur) for frame in observations])
            changed = np.any(blurred != observations, axis=1).reshape(count, -1).astype(np.float32)
            live = (changed @ self._support.T) > 0  # (N, K): patches whose mask touches a changed pixel
            with torch.inference_mode():
                self._score(observations, blurred, live, policy, value)
        shape = (count, self.grid, self.grid)
        return policy.reshape(shape), value.reshape(shape)

    def _score(
        self, observations: np.ndarray, blurred: np.ndarray, live: np.ndarray, policy: np.ndarray, value: np.ndarray
    ) -> None:
        """Fill ``policy`` and ``value`` ``(N, K)`` with the scores of the ``live`` patches."""
        size = self.settings.batch_size
        originals = torch.from_numpy(observations).to(self.device, torch.float32)
        deltas = torch.from_numpy(blurred).to(self.device, torch.float32) - originals
        outputs = [self._forward(originals[start : start + size]) for start in range(0, len(originals), size)]
        base_logits = torch.cat([logits for logits, _ in outputs])
        base_values = torch.cat([values for _, values in outputs])
        frames, patches = np.nonzero(live)  # frame-major: a batch holds runs of a few frames
        buffer = torch.empty((min(size, len(frames)), *OBS_SHAPE), dtype=torch.float32, device=self.device)
        for start in range(0, len(frames), size):
            batch_frames, batch_patches = frames[start : start + size], patches[start : start + size]
            batch = buffer[: len(batch_frames)]
            self._perturb(originals, deltas, batch_frames, batch_patches, out=batch)
            logits, values = self._forward(batch)
            index = torch.from_numpy(batch_frames).to(self.device)
            policy[batch_frames, batch_patches] = (0.5 * (logits - base_logits[index]).square().sum(-1)).cpu().numpy()
            value[batch_frames, batch_patches] = (0.5 * (values - base_values[index]).square()).cpu().numpy()

    def _forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, values = self.model(batch)
        return logits.float(), values.float().reshape(-1)

    def _perturb(
        self, originals: torch.Tensor, deltas: torch.Tensor, frames: np.ndarray, patches: np.ndarray, out: torch.Tensor
    ) -> None:
        """``out[i] = obs + (blur(obs) - obs) * mask`` for frame ``frames[i]`` and patch ``patches[i]``, one fused
        pass per run of one frame."""
        bounds = np.flatnonzero(np.diff(frames)) + 1
        for first, stop in zip((0, *bounds), (*bounds, len(frames)), strict=True):
            frame = int(frames[first])
            masks = self._masks[torch.from_numpy(patches[first:stop]).to(self.device)].unsqueeze(1)
            torch.addcmul(originals[frame], deltas[frame], masks, out=out[first:stop])

    def _to_pixels(self, grids: np.ndarray) -> np.ndarray:
        """``(N, grid, grid)`` scores to ``(N, 84, 84)`` maps by bilinear interpolation between patch centres."""
        return np.ascontiguousarray(self._upsample @ grids @ self._upsample.T, dtype=np.float32)


def saliency_scale(maps: np.ndarray, percentile: float = 99.5) -> float:
    """A normalising scale for a set of maps: their ``percentile``-th value, or their maximum where that is 0,
    or 1 where every value is 0 (never 0, so dividing by it is safe)."""
    values = np.asarray(maps, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if not values.size:
        return 1.0
    scale = float(np.percentile(values, percentile))
    if scale <= 0:
        scale = float(values.max())
    return scale if scale > 0 else 1.0
