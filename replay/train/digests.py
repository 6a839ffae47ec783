"""Short digests of training states: how a rebuilt policy is checked against the one that trained.

A digest is the first 16 hex digits (64 bits) of a SHA-256 over every tensor's name, dtype, shape and bytes, in
a fixed order. :func:`weights_digest` covers a network's float32 weights, recorded after every update;
:func:`state_digest` a whole resume point (weights and optimizer state), recorded when one is saved.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

LENGTH = 16
PATTERN = re.compile(rf"^[0-9a-f]{{{LENGTH}}}$")


def _feed(hasher: Any, value: Any) -> None:
    """Hash a nest of dicts, lists, tensors and plain values in a fixed order (dict keys sorted as text)."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach().to("cpu").contiguous()
        hasher.update(f"T{tensor.dtype}{tuple(tensor.shape)}".encode())
        hasher.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, Mapping):
        hasher.update(b"{")
        for key in sorted(value, key=str):
            hasher.update(f"{key!s}:".encode())
            _feed(hasher, value[key])
        hasher.update(b"}")
    elif isinstance(value, (list, tuple)):
        hasher.update(b"[")
        for item in value:
            _feed(hasher, item)
        hasher.update(b"]")
    else:
        hasher.update(repr(value).encode())


def digest(value: Any) -> str:
    """The digest of a nest of tensors and plain values.

    Example:
        >>> digest({"w": torch.zeros(2)}) == digest({"w": torch.zeros(2)}) != digest({"w": torch.ones(2)})
        True
    """
    hasher = hashlib.sha256()
    _feed(hasher, value)
    return hasher.hexdigest()[:LENGTH]


def weights_digest(model: nn.Module | Mapping[str, torch.Tensor]) -> str:
    """The digest of a network's weights as float32 (a module or its ``state_dict``)."""
    state = model.state_dict() if isinstance(model, nn.Module) else model
    return digest({name: tensor.to(torch.float32) for name, tensor in state.items()})


def state_digest(weights: Mapping[str, torch.Tensor], optimizer: Mapping[str, Any]) -> str:
    """The digest of a training state: the weights and the optimizer's ``state_dict``."""
    return digest({"weights": dict(weights), "optimizer": optimizer})
