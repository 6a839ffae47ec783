"""Checkpoint files: round trips, the version lookup, and every way a file can be wrong."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from replay.errors import CheckpointError
from replay.train.checkpoints import (
    CheckpointIndex,
    CheckpointRef,
    checkpoint_path,
    load_policy,
    load_resume_state,
    read_checkpoint_ref,
    save_checkpoint,
    save_resume_state,
)
from replay.train.network import ActorCritic

BREAKOUT = "ALE/Breakout-v5"


@pytest.fixture
def model() -> ActorCritic:
    torch.manual_seed(0)
    return ActorCritic(4)


def _save(directory: Path, model: ActorCritic, version: int, **kwargs: object) -> CheckpointRef:
    return save_checkpoint(
        directory, model, policy_version=version, global_step=version * 1024, env_id=BREAKOUT, **kwargs
    )


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_round_trip_holds_metadata_and_weights(tmp_path: Path, model: ActorCritic, dtype: str) -> None:
    ref = _save(tmp_path, model, 12, dtype=dtype, milestone=0.3)
    assert ref == read_checkpoint_ref(tmp_path / "v000012.pt")
    assert (ref.policy_version, ref.global_step, ref.milestone, ref.dtype) == (12, 12 * 1024, 0.3, dtype)
    loaded, loaded_ref = load_policy(ref.path, env_id=BREAKOUT, n_actions=4)
    assert loaded_ref == ref and not loaded.training
    for name, tensor in loaded.state_dict().items():
        assert tensor.dtype == torch.float32
        expected = model.state_dict()[name].to(getattr(torch, dtype)).float()
        assert torch.equal(tensor, expected)


def test_lookup_is_exact_or_the_nearest_earlier_with_its_lag(tmp_path: Path, model: ActorCritic) -> None:
    for version in (0, 10, 25):
        _save(tmp_path, model, version, milestone=0.5 if version == 10 else None)
    index = CheckpointIndex(tmp_path)
    assert [(index.lookup(v)[0].policy_version, index.lookup(v)[1]) for v in (0, 9, 10, 24, 25, 99)] == [
        (0, 0),
        (0, 9),
        (10, 0),
        (10, 14),
        (25, 0),
        (25, 74),
    ]
    assert [ref.policy_version for ref in index.milestones()] == [10]


def test_lookup_before_the_first_checkpoint_is_an_error(tmp_path: Path, model: ActorCritic) -> None:
    _save(tmp_path, model, 5)
    with pytest.raises(CheckpointError, match="policy_version=4"):
        CheckpointIndex(tmp_path).lookup(4)
    with pytest.raises(CheckpointError, match="does not exist"):
        CheckpointIndex(tmp_path / "nowhere")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"v000003\.pt does not exist"):
        load_policy(checkpoint_path(tmp_path, 3))


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_corrupt_bytes(tmp_path: Path, model: ActorCritic, damage: str) -> None:
    path = _save(tmp_path, model, 1).path
    data = path.read_bytes()
    path.write_bytes(
        {"garbage": b"\x00not a checkpoint" * 100, "truncated": data[: len(data) // 2], "empty": b""}[damage]
    )
    with pytest.raises(CheckpointError, match=rf"{path.name} is corrupt or truncated"):
        load_policy(path)


def test_other_game_is_refused(tmp_path: Path, model: ActorCritic) -> None:
    path = save_checkpoint(tmp_path, model, policy_version=1, global_step=0, env_id="ALE/Pong-v5").path
    with pytest.raises(CheckpointError, match="env_id='ALE/Pong-v5', not 'ALE/Breakout-v5'"):
        load_policy(path, env_id=BREAKOUT)


def test_other_shape_is_refused(tmp_path: Path, model: ActorCritic) -> None:
    path = _save(tmp_path, model, 1).path
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["fc.0.weight"] = torch.zeros(256, 3136)
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=r"fc\.0\.weight of shape \(256, 3136\)"):
        load_policy(path)
    with pytest.raises(CheckpointError, match="n_actions=4, expected 6"):
        load_policy(_save(tmp_path, model, 2).path, n_actions=6)


def test_not_a_checkpoint_dict_is_refused(tmp_path: Path, model: ActorCritic) -> None:
    path = tmp_path / "v000001.pt"
    torch.save(model.state_dict(), path)
    with pytest.raises(CheckpointError, match="format=None"):
        load_policy(path)


class _Exploit:
    def __reduce__(self) -> tuple:
        return (exec, ("open(__import__('os').environ['EXPLOIT_MARKER'], 'w').write('pwned')",))


def test_pickle_that_would_run_code_is_refused(tmp_path: Path, model: ActorCritic, monkeypatch) -> None:
    marker = tmp_path / "marker"
    monkeypatch.setenv("EXPLOIT_MARKER", str(marker))
    path = tmp_path / "v000001.pt"
    torch.save({"format": "ale-replay/checkpoint", "state_dict": model.state_dict(), "x": _Exploit()}, path)
    with pytest.raises(CheckpointError, match="refused by torch.load\\(weights_only=True\\)"):
        load_policy(path)
    assert not marker.exists()
    with open(path, "wb") as f:
        pickle.dump(_Exploit(), f)
    with pytest.raises(CheckpointError):
        load_policy(path)
    assert not marker.exists()


def test_resume_state_restores_model_optimizer_and_rng(tmp_path: Path, model: ActorCritic) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-5)
    logits, value = model(torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8))
    (logits.sum() + value.sum()).backward()
    optimizer.step()
    save_resume_state(tmp_path, model, optimizer, policy_version=7, global_step=7168, env_id=BREAKOUT)
    expected_draw = torch.rand(3)

    torch.manual_seed(99)
    fresh = ActorCritic(4)
    fresh_optimizer = torch.optim.Adam(fresh.parameters(), lr=1e-3, eps=1e-5)
    assert load_resume_state(tmp_path, fresh, fresh_optimizer, env_id=BREAKOUT) == (7, 7168)
    assert torch.equal(torch.rand(3), expected_draw)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values(), strict=True))
    assert fresh_optimizer.state_dict()["state"][0]["exp_avg"].equal(optimizer.state_dict()["state"][0]["exp_avg"])
    with pytest.raises(CheckpointError, match="not 'ALE/Pong-v5'"):
        load_resume_state(tmp_path, fresh, fresh_optimizer, env_id="ALE/Pong-v5")
