"""Policy checkpoints: tensors-only files named by the policy version they hold, and the lookup from versions.

A run keeps two kinds of file in ``<run_dir>/checkpoints/``:

- ``v000123.pt``: the policy after 123 updates, weights stored in ``float32`` or ``float16``, with metadata
  (policy version, global step, env id, action count, architecture, dtype, milestone fraction or None).
- ``resume.pt``: the latest full training state (float32 weights, optimizer, counters, torch RNG), overwritten
  after each update so a killed run loses at most one rollout.
- ``resume_points/v000120.pt``: the same state kept at a cadence and at each resume: where exact rebuilds of
  later versions start (``replay.train.rebuild``).

Both are plain dicts of tensors, numbers, strings and lists written with ``torch.save`` and read only with
``torch.load(..., weights_only=True)``: a file that would need pickle to execute code is refused.
"""

from __future__ import annotations

import bisect
import os
import pickle
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from replay.errors import CheckpointError
from replay.run_folder import CHECKPOINT_FILE, RESUME_STATE, checkpoint_name
from replay.train import digests
from replay.train.network import ARCH, OBS_SHAPE, ActorCritic

FORMAT = "ale-replay/checkpoint"
RESUME_FORMAT = "ale-replay/resume-state"
FORMAT_VERSION = 1
RESUME_FILE = RESUME_STATE
DTYPES = {"float32": torch.float32, "float16": torch.float16}


@dataclass(frozen=True)
class CheckpointRef:
    """One saved policy: where it is and what it holds."""

    path: Path
    policy_version: int
    global_step: int
    milestone: float | None
    env_id: str
    n_actions: int
    arch: str
    dtype: str


def checkpoint_path(directory: Path, policy_version: int) -> Path:
    """The file that holds ``policy_version`` in a checkpoint directory."""
    return Path(directory) / checkpoint_name(policy_version)


def _atomic_save(payload: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(payload, partial)
    os.replace(partial, path)


def _load(path: Path, expected_format: str) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(
            f"checkpoint {path} is a folder; name a checkpoint file in it (v<version>.pt), or pass the run folder "
            "(run=<run_dir>) to explain each frame with the checkpoint that matches it"
        )
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path, or the run folder it should be in")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated, or no checkpoint at all (not a torch zip archive, "
            f"{path.stat().st_size} B); name a v<version>.pt file written by replay.train (if this is one, it is "
            "damaged: use an earlier checkpoint, or re-run training from the last good one)"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        reasons = [line.strip() for line in str(error).splitlines() if "GLOBAL" in line or "Unsupported" in line]
        raise CheckpointError(
            f"checkpoint {path} was refused by torch.load(weights_only=True): it holds objects other than "
            f"tensors and plain values ({reasons[0] if reasons else type(error).__name__}); only load "
            "checkpoints written by replay.train.checkpoints, and never unpickle this file"
        ) from error
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as error:
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({type(error).__name__}: {error}); "
            "use an earlier checkpoint, or re-run training from the last good one"
        ) from error
    found = payload.get("format") if isinstance(payload, dict) else None
    if found != expected_format:
        raise CheckpointError(f"{path} is not an {expected_format!r} file (format={found!r}); pass another file")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format_version={payload.get('format_version')!r}, this version reads "
            f"{FORMAT_VERSION}; upgrade ale-replay or re-save the checkpoint"
        )
    return payload


def _check_matches(path: Path, payload: dict[str, Any], env_id: str | None, n_actions: int | None) -> None:
    if payload["arch"] != ARCH or list(payload["obs_shape"]) != list(OBS_SHAPE):
        raise CheckpointError(
            f"checkpoint {path} holds arch={payload['arch']!r} with obs_shape={payload['obs_shape']}, this "
            f"network is {ARCH!r} with {list(OBS_SHAPE)}; use a checkpoint of the same architecture"
        )
    if env_id is not None and payload["env_id"] != env_id:
        raise CheckpointError(
            f"checkpoint {path} was trained on env_id={payload['env_id']!r}, not {env_id!r}; "
            "use a checkpoint from a run of the same game"
        )
    if n_actions is not None and payload["n_actions"] != n_actions:
        raise CheckpointError(
            f"checkpoint {path} has n_actions={payload['n_actions']}, expected {n_actions}; "
            "use a checkpoint made with the same action set (full_action_space=False)"
        )


def _restore_weights(path: Path, model: ActorCritic, state: dict[str, torch.Tensor]) -> None:
    expected = model.state_dict()
    for name, tensor in expected.items():
        if name not in state:
            raise CheckpointError(f"checkpoint {path} lacks tensor {name!r}; it was made by another network")
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"checkpoint {path} has {name} of shape {tuple(state[name].shape)}, the network expects "
                f"{tuple(tensor.shape)}; use a checkpoint of the same game and architecture"
            )
    extra = sorted(set(state) - set(expected))
    if extra:
        raise CheckpointError(f"checkpoint {path} has tensors {extra} this network lacks; it is another network")
    weights = {name: state[name].to(torch.float32).contiguous() for name in expected}
    model.load_state_dict(weights, assign=model.conv1[0].weight.is_meta)


def _ref(path: Path, payload: dict[str, Any]) -> CheckpointRef:
    return CheckpointRef(
        path=Path(path),
        policy_version=int(payload["policy_version"]),
        global_step=int(payload["global_step"]),
        milestone=payload["milestone"],
        env_id=payload["env_id"],
        n_actions=int(payload["n_actions"]),
        arch=payload["arch"],
        dtype=payload["dtype"],
    )


def _header(kind: str, model: ActorCritic, policy_version: int, global_step: int, env_id: str) -> dict:
    """The fields a checkpoint and a resume file share: what they are and which network they fit."""
    return {
        "format": kind,
        "format_version": FORMAT_VERSION,
        "policy_version": int(policy_version),
        "global_step": int(global_step),
        "env_id": env_id,
        "n_actions": model.n_actions,
        "arch": ARCH,
        "obs_shape": list(OBS_SHAPE),
    }


def save_checkpoint(
    directory: Path,
    model: ActorCritic,
    *,
    policy_version: int,
    global_step: int,
    env_id: str,
    dtype: str = "float32",
    milestone: float | None = None,
) -> CheckpointRef:
    """Write ``v<policy_version>.pt`` with the model's weights cast to ``dtype``; returns its reference."""
    if dtype not in DTYPES:
        raise ValueError(f"expected checkpoint dtype in {sorted(DTYPES)}, got {dtype!r}")
    path = checkpoint_path(directory, policy_version)
    payload = {
        **_header(FORMAT, model, policy_version, global_step, env_id),
        "dtype": dtype,
        "milestone": None if milestone is None else float(milestone),
        "state_dict": {k: v.detach().to("cpu", DTYPES[dtype], copy=True) for k, v in model.state_dict().items()},
    }
    _atomic_save(payload, path)
    return _ref(path, payload)


def read_checkpoint_ref(path: Path) -> CheckpointRef:
    """The metadata of a checkpoint file (the file is validated and read whole)."""
    path = Path(path)
    return _ref(path, _load(path, FORMAT))


def load_policy(
    path: Path, *, env_id: str | None = None, n_actions: int | None = None
) -> tuple[ActorCritic, CheckpointRef]:
    """A float32 :class:`ActorCritic` (eval mode) with the checkpoint's weights, and its reference.

    ``env_id`` / ``n_actions``, when given, must match the checkpoint or :class:`CheckpointError` is raised.
    """
    path = Path(path)
    payload = _load(path, FORMAT)
    _check_matches(path, payload, env_id, n_actions)
    # Built without storage (skipping the orthogonal initialisation, ~0.1 s a load), then given the saved tensors.
    with torch.device("meta"):
        model = ActorCritic(int(payload["n_actions"]))
    _restore_weights(path, model, payload["state_dict"])
    return model.eval(), _ref(path, payload)


class CheckpointIndex:
    """The checkpoints of one run, looked up by policy version.

    ``lookup(v)`` returns the checkpoint holding version ``v`` with lag 0, or else the nearest earlier one and
    the lag ``v - saved_version``; a version older than every checkpoint raises :class:`CheckpointError`.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise CheckpointError(f"checkpoint directory {self.directory} does not exist; pass <run_dir>/checkpoints")
        found = []
        for path in self.directory.iterdir():
            match = CHECKPOINT_FILE.match(path.name)
            if match:
                found.append((int(match.group(1)), path))
        found.sort()
        self.versions: list[int] = [version for version, _ in found]
        self._paths = [path for _, path in found]
        self._refs: dict[int, CheckpointRef] = {}

    def __len__(self) -> int:
        return len(self.versions)

    def ref(self, policy_version: int) -> CheckpointRef:
        """The reference of the checkpoint that holds exactly ``policy_version``."""
        if policy_version not in self._refs:
            position = bisect.bisect_left(self.versions, policy_version)
            if position == len(self.versions) or self.versions[position] != policy_version:
                raise CheckpointError(
                    f"no checkpoint holds policy_version={policy_version} in {self.directory}; "
                    f"saved versions: {self.versions}"
                )
            ref = read_checkpoint_ref(self._paths[position])
            if ref.policy_version != policy_version:
                raise CheckpointError(
                    f"checkpoint {ref.path} holds policy_version={ref.policy_version}, its name says "
                    f"{policy_version}; rename or delete the file"
                )
            self._refs[policy_version] = ref
        return self._refs[policy_version]

    def lookup(self, policy_version: int) -> tuple[CheckpointRef, int]:
        """The checkpoint for ``policy_version`` (exact, else nearest earlier) and the version lag."""
        position = bisect.bisect_right(self.versions, policy_version) - 1
        if position < 0:
            raise CheckpointError(
                f"no checkpoint at or before policy_version={policy_version} in {self.directory} "
                f"(saved versions: {self.versions}); the run may not have saved its first checkpoint yet: render "
                "its later episodes, or pass checkpoint=<file> to explain every frame with that one"
            )
        saved = self.versions[position]
        return self.ref(saved), policy_version - saved

    def milestones(self) -> list[CheckpointRef]:
        """The milestone checkpoints in version order (reads every file's metadata once)."""
        return [ref for ref in (self.ref(v) for v in self.versions) if ref.milestone is not None]


@dataclass(frozen=True)
class ResumeState:
    """A full training state as read back (weights and optimizer go into the objects passed in)."""

    path: Path
    policy_version: int
    global_step: int
    torch_rng: torch.Tensor
    digest: str  # of the weights and optimizer state, as the ledger records it for a resume point


def resume_point_path(directory: Path, policy_version: int) -> Path:
    """The resume point of ``policy_version`` in a run's ``checkpoints/resume_points/``."""
    return Path(directory) / checkpoint_name(policy_version)


def save_resume_state(
    directory: Path,
    model: ActorCritic,
    optimizer: torch.optim.Optimizer,
    *,
    policy_version: int,
    global_step: int,
    env_id: str,
    keep_as: Path | None = None,
) -> str:
    """Overwrite ``resume.pt`` with all it takes to continue training after ``policy_version`` updates; with
    ``keep_as``, also keep that state there as a resume point (a hard link: ``resume.pt`` is later replaced by a
    rename, so the point keeps these bytes). Returns the state's digest (:func:`digests.state_digest`)."""
    path = Path(directory) / RESUME_FILE
    payload = {
        **_header(RESUME_FORMAT, model, policy_version, global_step, env_id),
        "state_dict": {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "torch_rng": torch.get_rng_state(),
    }
    _atomic_save(payload, path)
    if keep_as is not None:
        keep_as.parent.mkdir(parents=True, exist_ok=True)
        partial = keep_as.with_name(keep_as.name + ".partial")
        partial.unlink(missing_ok=True)
        try:
            os.link(path, partial)
        except OSError:  # a file system without hard links
            shutil.copyfile(path, partial)
        os.replace(partial, keep_as)
    return digests.state_digest(payload["state_dict"], payload["optimizer"])


def read_resume_state(
    path: Path, model: ActorCritic, optimizer: torch.optim.Optimizer, *, env_id: str | None
) -> ResumeState:
    """Put a resume file's weights and optimizer state into ``model`` and ``optimizer``; the global torch RNG is
    left alone (the state read carries it)."""
    path = Path(path)
    payload = _load(path, RESUME_FORMAT)
    _check_matches(path, payload, env_id, model.n_actions)
    _restore_weights(path, model, payload["state_dict"])
    try:
        optimizer.load_state_dict(payload["optimizer"])
    except (ValueError, KeyError) as error:
        raise CheckpointError(
            f"optimizer state in {path} does not fit this optimizer ({error}); keep the ppo config"
        ) from error
    return ResumeState(
        path=path,
        policy_version=int(payload["policy_version"]),
        global_step=int(payload["global_step"]),
        torch_rng=payload["torch_rng"],
        digest=digests.state_digest(payload["state_dict"], payload["optimizer"]),
    )


def load_resume_state(
    directory: Path, model: ActorCritic, optimizer: torch.optim.Optimizer, *, env_id: str
) -> tuple[int, int]:
    """Restore model, optimizer, torch RNG from ``resume.pt``; returns ``(policy_version, global_step)``."""
    state = read_resume_state(Path(directory) / RESUME_FILE, model, optimizer, env_id=env_id)
    torch.set_rng_state(state.torch_rng)
    return state.policy_version, state.global_step
