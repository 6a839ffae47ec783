"""Batched forward passes with hooks: what the network thought on each frame, reduced to what is drawn.

Observations run through the checkpoint in batches (64 by default: ~4x the frames/s of batch 1 on CPU).
Forward hooks capture every layer; per frame only the overlay's share is kept: each conv layer's per-channel
mean, a fixed sample of hidden units, the action probabilities, the value and a few feature-map thumbnails.

Levels are normalised per layer by a scale fixed from the first batch a :class:`NetworkProbe` sees, so nodes
do not flicker as batches change; thumbnails show the channels that were most active in that first batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from render.draw.diagram import DiagramLayer
from render.frame import FrameAnalytics

CONV_LAYERS = ("conv1", "conv2", "conv3")
HIDDEN_LAYER = "fc"


@dataclass(frozen=True)
class ProbeSettings:
    """What a :class:`NetworkProbe` keeps per frame.

    Attributes:
        batch_size: Observations per forward pass.
        hidden_sample: Hidden units of ``fc`` in the diagram (the most variable ones of the first batch).
        thumbnails: Feature maps shown per conv layer (the most active channels of the first batch).
        device: The torch device the network runs on (``cpu``, ``cuda``, ``cuda:1``); results come back to the CPU.
    """

    batch_size: int = 64
    hidden_sample: int = 32
    thumbnails: int = 4
    device: str = "cpu"

    def __post_init__(self) -> None:
        for name in ("batch_size", "hidden_sample", "thumbnails"):
            if getattr(self, name) < 1:
                raise ValueError(f"expected a positive {name}, got {getattr(self, name)}")


class NetworkProbe:
    """Runs a policy network on observations and returns one :class:`FrameAnalytics` per observation.

    The probe hooks the model's layers for good: give it a model of its own (as
    :class:`render.policies.PolicyLibrary` does). The model needs submodules ``conv1``, ``conv2``, ``conv3``,
    ``fc``, ``policy`` and ``value`` (as :class:`replay.train.network.ActorCritic` has) and ``forward(obs uint8 (B,
    4, 84, 84)) -> (logits, value)``.

    Example:
        >>> from replay.train.network import ActorCritic
        >>> probe = NetworkProbe(ActorCritic(4))
        >>> frames = probe.analyze(np.zeros((3, 4, 84, 84), np.uint8))
        >>> len(frames), frames[0].probabilities.shape
        (3, (4,))
    """

    def __init__(self, model: nn.Module, settings: ProbeSettings | None = None) -> None:
        self.settings = settings or ProbeSettings()
        self.device = torch.device(self.settings.device)
        self.model = model.eval().to(self.device)
        modules = dict(model.named_children())
        missing = [name for name in (*CONV_LAYERS, HIDDEN_LAYER, "policy", "value") if name not in modules]
        if missing:
            raise ValueError(f"the network lacks layers {missing}; expected replay.train.network.ActorCritic's layout")
        self._modules = modules
        self.n_actions = self._width("policy")
        self._captured: dict[str, torch.Tensor] = {}
        for name in (*CONV_LAYERS, HIDDEN_LAYER):
            modules[name].register_forward_hook(self._hook(name))
        self._scales: np.ndarray | None = None
        self._channels: list[np.ndarray] = []
        self._units: np.ndarray | None = None

    def diagram_layers(self) -> list[DiagramLayer]:
        """The diagram columns matching :meth:`analyze`'s ``levels``."""
        layers = [DiagramLayer(name, self._width(name)) for name in CONV_LAYERS]
        hidden = min(self.settings.hidden_sample, self._width(HIDDEN_LAYER))
        return [
            *layers,
            DiagramLayer(HIDDEN_LAYER, hidden),
            DiagramLayer("policy", self.n_actions),
            DiagramLayer("value", 1),
        ]

    def feature_rows(self) -> list[tuple[str, int]]:
        """The thumbnail rows matching :meth:`analyze`'s ``feature_maps``, after the 4-frame input row."""
        return [
            ("input", 4),
            *((name, min(self.settings.thumbnails, self._width(name))) for name in CONV_LAYERS),
        ]

    def analyze(self, observations: np.ndarray) -> list[FrameAnalytics]:
        """One record per observation of a ``(N, 4, 84, 84)`` uint8 array, in order."""
        observations = np.asarray(observations)
        results: list[FrameAnalytics] = []
        size = self.settings.batch_size
        for start in range(0, len(observations), size):
            results.extend(self._batch(observations[start : start + size]))
        return results

    def _batch(self, observations: np.ndarray) -> list[FrameAnalytics]:
        with torch.inference_mode():
            logits, values = self.model(torch.from_numpy(np.ascontiguousarray(observations)).to(self.device))
        probabilities = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        values = values.float().reshape(-1).cpu().numpy()
        # The network's blocks end in ReLU; clamping keeps a bare Conv2d/Linear layer honest too.
        maps = [self._captured[name].clamp_min(0).cpu().numpy() for name in CONV_LAYERS]
        hidden = self._captured[HIDDEN_LAYER].clamp_min(0).cpu().numpy()
        self._captured.clear()
        means = [m.mean(axis=(2, 3)) for m in maps]
        if self._scales is None:
            self._calibrate(maps, means, hidden, values)
        scales = self._scales
        levels = [np.clip(mean / scale, 0.0, 1.0) for mean, scale in zip(means, scales[:3], strict=True)]
        levels.append(np.clip(hidden[:, self._units] / scales[3], 0.0, 1.0))
        thumbnails = [
            np.clip(m[:, channels] / (scale * 2.0) * 255.0, 0, 255).astype(np.uint8)
            for m, channels, scale in zip(maps, self._channels, scales[:3], strict=True)
        ]
        value_levels = np.clip(0.5 + values / (2.0 * scales[4]), 0.0, 1.0)
        return [
            FrameAnalytics(
                probabilities=probabilities[i],
                value=float(values[i]),
                levels=(*(level[i] for level in levels), probabilities[i], value_levels[i : i + 1]),
                feature_maps=tuple(t[i] for t in thumbnails),
            )
            for i in range(len(observations))
        ]

    def _calibrate(
        self, maps: Sequence[np.ndarray], means: Sequence[np.ndarray], hidden: np.ndarray, values: np.ndarray
    ) -> None:
        scales = [float(np.percentile(mean, 99)) for mean in means]
        scales.append(float(np.percentile(hidden, 99)))
        scales.append(float(np.abs(values).max()))
        self._scales = np.maximum(np.array(scales), 1e-6)
        k = self.settings.thumbnails
        self._channels = [np.sort(np.argsort(-mean.mean(axis=0), kind="stable")[:k]) for mean in means]
        n = min(self.settings.hidden_sample, hidden.shape[1])
        self._units = np.sort(np.argsort(-hidden.std(axis=0), kind="stable")[:n])

    def _hook(self, name: str) -> Callable[[nn.Module, object, torch.Tensor], None]:
        def capture(module: nn.Module, inputs: object, output: torch.Tensor) -> None:
            self._captured[name] = output.detach()

        return capture

    def _width(self, name: str) -> int:
        module = self._modules[name]
        layer = module[0] if isinstance(module, nn.Sequential) else module
        return int(getattr(layer, "out_channels", None) or layer.out_features)
