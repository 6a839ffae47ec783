"""The Nature-CNN actor-critic the trainer learns and the renderer inspects.

Each named submodule is one layer of the network diagram: ``conv1``, ``conv2``, ``conv3`` and ``fc`` are
``Sequential(layer, ReLU)`` blocks, so a forward hook on any of them sees that layer's activation;
``policy`` gives the action logits and ``value`` the state value.
"""

from __future__ import annotations

import math

import torch
from torch import nn

ARCH = "nature-cnn"
OBS_SHAPE = (4, 84, 84)
LAYER_NAMES = ("conv1", "conv2", "conv3", "fc", "policy", "value")


def _orthogonal(layer: nn.Conv2d | nn.Linear, gain: float) -> nn.Conv2d | nn.Linear:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.constant_(layer.bias, 0.0)
    return layer


class ActorCritic(nn.Module):
    """Shared Nature-CNN torso with policy and value heads, initialised as in CleanRL's ``ppo_atari``.

    Example:
        >>> import torch
        >>> from replay.train.network import ActorCritic
        >>> net = ActorCritic(n_actions=4)
        >>> logits, value = net(torch.zeros(2, 4, 84, 84, dtype=torch.uint8))
        >>> tuple(logits.shape), tuple(value.shape)
        ((2, 4), (2,))
    """

    arch = ARCH

    def __init__(self, n_actions: int) -> None:
        super().__init__()
        if n_actions <= 0:
            raise ValueError(f"expected a positive number of actions, got {n_actions}")
        self.n_actions = n_actions
        relu_gain = math.sqrt(2)
        self.conv1 = nn.Sequential(_orthogonal(nn.Conv2d(4, 32, 8, stride=4), relu_gain), nn.ReLU())
        self.conv2 = nn.Sequential(_orthogonal(nn.Conv2d(32, 64, 4, stride=2), relu_gain), nn.ReLU())
        self.conv3 = nn.Sequential(_orthogonal(nn.Conv2d(64, 64, 3, stride=1), relu_gain), nn.ReLU())
        self.fc = nn.Sequential(_orthogonal(nn.Linear(64 * 7 * 7, 512), relu_gain), nn.ReLU())
        self.policy = _orthogonal(nn.Linear(512, n_actions), 0.01)
        self.value = _orthogonal(nn.Linear(512, 1), 1.0)

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        """The 512-wide torso output for uint8 observations ``(B, 4, 84, 84)`` (scaled to [0, 1] here)."""
        x = obs.to(torch.float32, copy=True).div_(255.0)  # in place on our copy: one temporary less
        x = self.conv3(self.conv2(self.conv1(x)))
        return self.fc(torch.flatten(x, 1))

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Action logits ``(B, n_actions)`` and values ``(B,)``."""
        hidden = self.features(obs)
        return self.policy(hidden), self.value(hidden).squeeze(-1)

    def act(self, obs: torch.Tensor, *, greedy: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        """Actions for a batch: argmax if ``greedy`` else sampled (from ``generator`` when given)."""
        logits, _ = self(obs)
        if greedy:
            return logits.argmax(dim=-1)
        probs = torch.softmax(logits, dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
