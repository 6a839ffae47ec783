"""Networks trained elsewhere: Stable-Baselines3 ``.zip`` files and CleanRL model files, read as tensors only.

An SB3 zip holds ``policy.pth`` (a torch state dict) and ``data``, a JSON document some of whose entries are
base64 cloudpickle (``":serialized:"``). Unpickling those would run whatever code the file names, so they are
never decoded: the state dict is read with ``torch.load(..., weights_only=True)`` and only plain JSON fields
(``num_timesteps``, ``_n_updates``, the action space's ``n``, the observation space's ``_shape``) are read.
CleanRL's ``ppo_atari`` and ``dqn_atari`` save ``agent.state_dict()`` / ``q_network.state_dict()`` with
``torch.save``: read with ``weights_only=True`` too.

All of them are the Nature CNN (three convolutions and a 512-wide linear layer on ``(4, 84, 84)`` uint8 frames
scaled to [0, 1]): their tensors are renamed into this project's layout, an actor-critic
(:class:`replay.train.network.ActorCritic`: ``policy`` and ``value`` heads) or a Q network (:class:`QNetwork`:
one ``q`` head), so :class:`render.analytics.NetworkProbe` hooks the same layers ``conv1``..``fc``.
"""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from replay.errors import CheckpointError
from replay.train.network import OBS_SHAPE, ActorCritic

SB3_POLICY = "policy.pth"
SB3_DATA = "data"
_MAX_MEMBER_BYTES = 2**31  # a policy of the Nature CNN is ~7 MB; refuse members that would fill memory
_TORSO = ("conv1.0", "conv2.0", "conv3.0", "fc.0")

# Each layout: a tensor-name prefix only it has, its four torso layers (in _TORSO's order), and its heads by this
# project's names (the heads of ActorCritic / QNetwork).
_LAYOUTS: dict[str, tuple[str, tuple[str, ...], dict[str, str]]] = {
    "sb3-actor-critic": (
        "features_extractor.",
        ("features_extractor.cnn.0", "features_extractor.cnn.2", "features_extractor.cnn.4",
         "features_extractor.linear.0"),
        {"policy": "action_net", "value": "value_net"},
    ),
    "sb3-dqn": (
        "q_net.q_net.",
        ("q_net.features_extractor.cnn.0", "q_net.features_extractor.cnn.2", "q_net.features_extractor.cnn.4",
         "q_net.features_extractor.linear.0"),
        {"q": "q_net.q_net.0"},
    ),
    "cleanrl-ppo": (
        "actor.", ("network.0", "network.2", "network.4", "network.7"), {"policy": "actor", "value": "critic"}
    ),
    "cleanrl-dqn": ("network.9.", ("network.0", "network.2", "network.4", "network.7"), {"q": "network.9"}),
}  # fmt: skip
_KEPT_APART = {
    # tensors a layout holds that the network does not need: SB3's copies of the shared torso and DQN's target
    "sb3-actor-critic": ("pi_features_extractor.", "vf_features_extractor."),
    "sb3-dqn": ("q_net_target.",),
    "cleanrl-ppo": (),
    "cleanrl-dqn": (),
}


class QNetwork(nn.Module):
    """The Nature-CNN Q network of DQN: the torso of :class:`ActorCritic` and one ``q`` head of action values.

    Example:
        >>> net = QNetwork(4)
        >>> tuple(net(torch.zeros(2, 4, 84, 84, dtype=torch.uint8)).shape)
        (2, 4)
    """

    head = "q"

    def __init__(self, n_actions: int) -> None:
        super().__init__()
        if n_actions <= 0:
            raise ValueError(f"expected a positive number of actions, got {n_actions}")
        self.n_actions = n_actions
        self.conv1 = nn.Sequential(nn.Conv2d(OBS_SHAPE[0], 32, 8, stride=4), nn.ReLU())
        self.conv2 = nn.Sequential(nn.Conv2d(32, 64, 4, stride=2), nn.ReLU())
        self.conv3 = nn.Sequential(nn.Conv2d(64, 64, 3, stride=1), nn.ReLU())
        self.fc = nn.Sequential(nn.Linear(64 * 7 * 7, 512), nn.ReLU())
        self.q = nn.Linear(512, n_actions)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Q-values ``(B, n_actions)`` for uint8 observations ``(B, 4, 84, 84)`` (scaled to [0, 1] here)."""
        x = obs.to(torch.float32, copy=True).div_(255.0)  # as SB3's preprocess_obs and CleanRL's x / 255.0
        x = self.conv3(self.conv2(self.conv1(x)))
        return self.q(self.fc(torch.flatten(x, 1)))


@dataclass(frozen=True)
class ForeignCheckpoint:
    """What a checkpoint made by another trainer holds.

    Attributes:
        path: The file.
        layout: ``sb3-actor-critic`` (PPO, A2C), ``sb3-dqn``, ``cleanrl-ppo`` or ``cleanrl-dqn``.
        n_actions: Outputs of its policy or Q head.
        num_timesteps: Agent steps trained (SB3's ``num_timesteps``), when the file says.
        n_updates: SB3's count of gradient steps (``_n_updates``), when the file says.
    """

    path: Path
    layout: str
    n_actions: int
    num_timesteps: int | None = None
    n_updates: int | None = None

    @property
    def head(self) -> str:
        """``q`` for a Q network, ``policy`` for an actor-critic."""
        return "q" if self.layout.endswith("dqn") else "policy"


def is_foreign(path: Path) -> bool:
    """Whether ``path`` looks like an SB3 zip (a ``.zip`` holding ``policy.pth``) or a CleanRL model file rather
    than this project's ``v<version>.pt`` (read nothing but the zip's directory)."""
    path = Path(path)
    if path.suffix == ".cleanrl_model":
        return True
    if path.suffix != ".zip" or not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return SB3_POLICY in archive.namelist()


def load_foreign_policy(path: Path, *, n_actions: int | None = None) -> tuple[nn.Module, ForeignCheckpoint]:
    """The network of an SB3 zip or a CleanRL model file, float32 in eval mode, and what the file holds.

    Only tensors are read (``weights_only=True``); pickled entries of SB3's ``data`` are left undecoded.
    ``n_actions``, when given, must match the file's head (the log's action set).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path, or the run folder it should be in")
    info: dict[str, Any] = {}
    if path.suffix == ".zip":
        state, info = _read_sb3(path)
    else:
        state = _torch_load(path, path.read_bytes())
    layout = _layout(path, state)
    model = _build(path, layout, state)
    found = model.n_actions
    if n_actions is not None and found != n_actions:
        raise CheckpointError(
            f"checkpoint {path} has {found} actions, the log {n_actions}; use a checkpoint trained on the log's "
            "game with the same action set (full_action_space=False)"
        )
    spaces = info.get("action_space")
    declared = spaces.get("n") if isinstance(spaces, dict) else None
    if declared is not None and str(declared) != str(found):
        raise CheckpointError(
            f"checkpoint {path}: its data says the action space has n={declared}, its policy {found} outputs; the "
            "file is damaged or was edited, use another"
        )
    checkpoint = ForeignCheckpoint(
        path, layout, found, _plain_int(info, "num_timesteps"), _plain_int(info, "_n_updates")
    )
    return model.eval(), checkpoint


def _read_sb3(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if SB3_POLICY not in names:
                raise CheckpointError(
                    f"checkpoint {path} is a zip without {SB3_POLICY} (it holds {sorted(names)[:6]}); pass a file "
                    "saved by a Stable-Baselines3 model's save()"
                )
            for name in (SB3_POLICY, SB3_DATA):
                if name in names and archive.getinfo(name).file_size > _MAX_MEMBER_BYTES:
                    raise CheckpointError(
                        f"checkpoint {path}: {name} inflates to {archive.getinfo(name).file_size} B, more than a "
                        "policy of the Nature CNN can hold; the file is damaged or not a checkpoint"
                    )
            policy = archive.read(SB3_POLICY)
            data = archive.read(SB3_DATA) if SB3_DATA in names else b"{}"
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({type(error).__name__}: {error}); save the model again or "
            "use another checkpoint"
        ) from error
    try:
        info = json.loads(data)  # plain JSON; the ":serialized:" strings in it stay strings
    except ValueError as error:
        raise CheckpointError(
            f"checkpoint {path}: its {SB3_DATA} entry is not JSON ({error}); the file is damaged"
        ) from None
    return _torch_load(path, policy, member=SB3_POLICY), info if isinstance(info, dict) else {}


def _torch_load(path: Path, payload: bytes, member: str | None = None) -> dict[str, torch.Tensor]:
    where = f"{path} ({member})" if member else str(path)
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        reasons = [line.strip() for line in str(error).splitlines() if "GLOBAL" in line or "Unsupported" in line]
        raise CheckpointError(
            f"checkpoint {where} was refused by torch.load(weights_only=True): it holds objects other than tensors "
            f"({reasons[0] if reasons else type(error).__name__}); never unpickle it, and load only state dicts "
            "saved from an SB3 model or a CleanRL agent"
        ) from error
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as error:
        raise CheckpointError(
            f"checkpoint {where} is corrupt or truncated ({type(error).__name__}: {error}); use another checkpoint"
        ) from error
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(
            f"checkpoint {where} holds a {type(state).__name__}, not a state dict of tensors; pass what "
            "torch.save(agent.state_dict(), path) or an SB3 model's save() wrote"
        )
    return state


def _layout(path: Path, state: dict[str, torch.Tensor]) -> str:
    for layout, (marker, *_) in _LAYOUTS.items():
        if any(key.startswith(marker) for key in state):
            return layout
    if any(key.startswith("mlp_extractor.") for key in state):
        raise CheckpointError(f"checkpoint {path} is an SB3 MlpPolicy or a CnnPolicy with net_arch; {_ONLY}")
    raise CheckpointError(f"checkpoint {path} has tensors {sorted(state)[:4]}..., no layout known here; {_ONLY}")


_ONLY = (
    "the renderer reads SB3 CnnPolicy (PPO, A2C, DQN) zips with the default NatureCNN and no net_arch, and CleanRL "
    "ppo_atari / dqn_atari model files"
)


def _build(path: Path, layout: str, state: dict[str, torch.Tensor]) -> nn.Module:
    _, torso, heads = _LAYOUTS[layout]
    renamed: dict[str, torch.Tensor] = {}
    for ours, theirs in (*zip(_TORSO, torso, strict=True), *heads.items()):
        for kind in ("weight", "bias"):
            key = f"{theirs}.{kind}"
            if key not in state:
                raise CheckpointError(f"checkpoint {path} lacks tensor {key!r} of the {layout} layout; {_ONLY}")
            renamed[f"{ours}.{kind}"] = state[key].to(torch.float32).contiguous()
    used = {f"{theirs}.{kind}" for theirs in (*torso, *heads.values()) for kind in ("weight", "bias")}
    extra = sorted(k for k in state if k not in used and not k.startswith(_KEPT_APART[layout]))
    if extra:
        raise CheckpointError(f"checkpoint {path} has tensors {extra[:4]} beyond the Nature CNN; {_ONLY}")
    if layout == "sb3-actor-critic":
        _check_shared(path, state)
    head = renamed[f"{next(iter(heads))}.weight"]
    with torch.device("meta"):
        model = QNetwork(head.shape[0]) if "q" in heads else ActorCritic(head.shape[0])
    expected = model.state_dict()
    for name, tensor in renamed.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise CheckpointError(
                f"checkpoint {path} has {name} of shape {tuple(tensor.shape)} where the Nature CNN on "
                f"{list(OBS_SHAPE)} frames has {tuple(expected[name].shape)}; {_ONLY}"
            )
    model.load_state_dict(renamed, assign=True)
    return model


def _check_shared(path: Path, state: dict[str, torch.Tensor]) -> None:
    """SB3 saves the shared torso three times; a policy trained with ``share_features_extractor=False`` has a
    value torso of its own, which the diagram (one torso) cannot show."""
    for key, tensor in state.items():
        if key.startswith("vf_features_extractor."):
            shared = state.get(key.replace("vf_features_extractor.", "features_extractor.", 1))
            if shared is None or not torch.equal(shared, tensor):
                raise CheckpointError(
                    f"checkpoint {path} has a value network with its own features extractor "
                    "(share_features_extractor=False); the renderer draws one shared torso: train with the default "
                    "share_features_extractor=True to render it"
                )


def _plain_int(info: dict[str, Any], key: str) -> int | None:
    value = info.get(key)
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None
