"""Batched forward passes with hooks: what the network thought on each frame, reduced to what is drawn.

Observations run through the checkpoint in batches (64 by default: ~4x the frames/s of batch 1 on CPU).
Forward hooks capture every layer; per frame only the overlay's share is kept: each conv layer's per-channel
mean, a fixed sample of hidden units, the action probabilities, the value and a few feature-map thumbnails.

Levels are normalised per layer by a scale fixed from the first batch a :class:`NetworkProbe` sees after
:meth:`NetworkProbe.recalibrate` (the renderer recalibrates at every episode's start), so nodes do not flicker
as batches change; thumbnails show the channels that were most active in that batch, and the diagram the
hidden units that varied most in it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from render.draw.diagram import DiagramLayer
from render.frame import FrameAnalytics, NetworkWiring
from render.saliency import SaliencyProbe, SaliencySettings

CONV_LAYERS = ("conv1", "conv2", "conv3")
HIDDEN_LAYER = "fc"
HIDDEN_LINKS = 24  # diagram edges between two hidden layers: the strongest weights of the pair
OUTPUT_LINKS = 4  # diagram edges into each output: its strongest weights


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
    ``fc``, and either ``policy`` and ``value`` (as :class:`replay.train.network.ActorCritic` has, with
    ``forward(obs uint8 (B, 4, 84, 84)) -> (logits, value)``) or, for a Q network (``model.head == "q"``, as
    :class:`render.foreign.QNetwork`), one ``q`` head with ``forward(obs) -> q_values``. A Q network's frames carry
    its Q-values, its value is the largest of them and its ``probabilities`` the greedy policy (one-hot).

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
        self.head = getattr(model, "head", "policy")
        self.heads = ("q",) if self.head == "q" else ("policy", "value")
        missing = [name for name in (*CONV_LAYERS, HIDDEN_LAYER, *self.heads) if name not in modules]
        if missing:
            raise ValueError(
                f"the network lacks layers {missing}; expected replay.train.network.ActorCritic's layout (or "
                "render.foreign.QNetwork's)"
            )
        self._modules = modules
        self.n_actions = self._width(self.head)
        self._captured: dict[str, torch.Tensor] = {}
        for name in (*CONV_LAYERS, HIDDEN_LAYER):
            modules[name].register_forward_hook(self._hook(name))
        self._scales: np.ndarray | None = None
        self._channels: list[np.ndarray] = []
        self._units: np.ndarray | None = None
        self._wiring: NetworkWiring | None = None
        self._saliency: SaliencyProbe | None = None

    def saliency(self, settings: SaliencySettings) -> SaliencyProbe:
        """A perturbation saliency probe of this network (kept while the settings stay). Run it after
        :meth:`analyze` on the same batch: this probe's hooks fire on the perturbed batches too."""
        if self.head == "q":
            raise ValueError("perturbation saliency reads a policy and a value head; this is a Q network")
        if self._saliency is None or self._saliency.settings != settings:
            self._saliency = SaliencyProbe(self.model, settings, str(self.device))
        return self._saliency

    def recalibrate(self) -> None:
        """Choose scales, thumbnails and hidden units afresh from the next batch (e.g. a new episode's first)."""
        self._scales = None
        self._wiring = None

    @property
    def channels(self) -> tuple[tuple[int, ...], ...]:
        """Per conv layer, the channel numbers the thumbnails show (known after the first batch)."""
        return tuple(tuple(int(c) for c in channels) for channels in self._channels)

    def wiring(self, name: str = "") -> NetworkWiring:
        """The strongest real connections between the units the diagram shows (after the first batch).

        A conv layer's link to a channel of the next is the sum of the kernel joining them (what a uniformly
        active source channel adds); ``fc``'s link to a conv3 channel sums its weights over the 7x7 positions; the
        heads' links are their weights on the hidden units shown. Between hidden layers the strongest
        ``HIDDEN_LINKS`` links are kept, each output keeps its ``OUTPUT_LINKS`` strongest, and each pair of layers is
        scaled so its strongest link is 1.
        ``name`` (the checkpoint's) goes into the wiring's key.
        """
        if self._units is None:
            raise RuntimeError("NetworkProbe.wiring needs a first batch (analyze) to know the hidden units shown")
        if self._wiring is None:
            weights = {
                key: self._layer(key).weight.detach().float().cpu().numpy()
                for key in (*CONV_LAYERS, HIDDEN_LAYER, *self.heads)
            }
            conv3_channels = weights["conv3"].shape[0]
            fc = weights[HIDDEN_LAYER][self._units]
            fc = fc.reshape(len(self._units), conv3_channels, -1).sum(axis=2)
            # (source layer, target layer, strength[target, source]) in diagram layer order
            pairs = [
                (0, 1, weights["conv2"].sum(axis=(2, 3)), None),
                (1, 2, weights["conv3"].sum(axis=(2, 3)), None),
                (2, 3, fc, None),
                *((3, 4 + k, weights[head][:, self._units], OUTPUT_LINKS) for k, head in enumerate(self.heads)),
            ]
            links = []
            for source, target, strength, per_target in pairs:
                if per_target is None:  # the strongest of the whole pair
                    flat = np.argsort(-np.abs(strength), axis=None, kind="stable")[:HIDDEN_LINKS]
                    chosen = zip(*np.unravel_index(flat, strength.shape), strict=True)
                else:  # the strongest into each output
                    top = np.argsort(-np.abs(strength), axis=1, kind="stable")[:, :per_target]
                    chosen = ((t, s) for t in range(len(strength)) for s in top[t])
                rows = [(int(s), int(t), float(strength[t, s])) for t, s in chosen]
                table = np.array(rows, np.float64).reshape(-1, 3)
                table[:, 2] /= max(float(np.abs(table[:, 2]).max()), 1e-12)
                links.append((source, target, table))
            key = f"{name}:{self._units.tobytes().hex()}"
            self._wiring = NetworkWiring(key, tuple(links))
        return self._wiring

    def diagram_layers(self) -> list[DiagramLayer]:
        """The diagram columns matching :meth:`analyze`'s ``levels``."""
        layers = [DiagramLayer(name, self._width(name), f"{self._width(name)} ch") for name in CONV_LAYERS]
        width = self._width(HIDDEN_LAYER)
        hidden = min(self.settings.hidden_sample, width)
        heads = (
            [DiagramLayer("q", self.n_actions)]
            if self.head == "q"
            else [
                DiagramLayer("policy", self.n_actions),
                DiagramLayer("value", 1),
            ]
        )
        return [*layers, DiagramLayer(HIDDEN_LAYER, hidden, f"{hidden} of {width}"), *heads]

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
        q_values = None
        with torch.inference_mode():
            outputs = self.model(torch.from_numpy(np.ascontiguousarray(observations)).to(self.device))
            if self.head == "q":
                q = outputs.float()
                q_values, values = q.cpu().numpy(), q.max(dim=-1).values
                probabilities = torch.nn.functional.one_hot(q.argmax(dim=-1), self.n_actions).float().cpu().numpy()
            else:
                logits, values = outputs
                # as torch.distributions.Categorical(logits=...) computes them: what SB3 and CleanRL sample from
                logits = logits.float()
                probabilities = torch.softmax(logits - logits.logsumexp(-1, keepdim=True), -1).cpu().numpy()
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
        if q_values is None:
            value_levels = np.clip(0.5 + values / (2.0 * scales[4]), 0.0, 1.0)
            outputs = [(probabilities[i], value_levels[i : i + 1]) for i in range(len(observations))]
        else:  # each frame's Q-values spread over [0, 1]: which action the network prefers, and by how much
            low, high = q_values.min(axis=1, keepdims=True), q_values.max(axis=1, keepdims=True)
            spread = (q_values - low) / np.maximum(high - low, 1e-12)
            outputs = [(spread[i],) for i in range(len(observations))]
        channels = self.channels
        return [
            FrameAnalytics(
                probabilities=probabilities[i],
                value=float(values[i]),
                levels=(*(level[i] for level in levels), *outputs[i]),
                feature_maps=tuple(t[i] for t in thumbnails),
                channels=channels,
                q_values=None if q_values is None else q_values[i],
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

    def _layer(self, name: str) -> nn.Module:
        module = self._modules[name]
        return module[0] if isinstance(module, nn.Sequential) else module

    def _width(self, name: str) -> int:
        layer = self._layer(name)
        return int(getattr(layer, "out_channels", None) or layer.out_features)
