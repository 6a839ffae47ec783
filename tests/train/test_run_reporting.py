"""What a training run tells its user: the closing summary, rounding notes, the device, TensorBoard scalars, and
the recent mean return carried across a resume."""

from __future__ import annotations

import contextlib
import csv
import io
import math
import shutil
from pathlib import Path

import pytest
import torch
from helpers import FAST, compose_config

from replay import TrajectoryLog
from replay.train import resume_config, train
from replay.train.config import resolve_device
from replay.train.metrics import EpisodeTracker, Scalars, recent_train_returns

CLEANRL_TAGS = {
    "charts/episodic_return",
    "charts/episodic_length",
    "charts/learning_rate",
    "charts/SPS",
    "losses/value_loss",
    "losses/policy_loss",
    "losses/entropy",
}


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A run whose total_steps (600) round up to 3 rollouts of 2 envs x 128 steps, and what it printed."""
    run_dir = tmp_path_factory.mktemp("reporting") / "run"
    config = compose_config([*FAST, "eval.episodes=0", "total_steps=600", "seed=4", f"run_dir={run_dir}"])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert train(config) == run_dir
    return run_dir, out.getvalue()


def test_a_finished_run_ends_with_a_summary_and_the_command_that_renders_it(finished: tuple[Path, str]) -> None:
    run_dir, out = finished
    lines = out.strip().splitlines()
    with (run_dir / "episodes.csv").open() as f:
        returns = [float(r["episode_return"]) for r in csv.DictReader(f) if r["kind"] == "train"]
    mean = f"mean return {sum(returns) / len(returns):.1f}" if returns else "no finished episode"
    assert lines[-2].startswith("trained 768 env steps in ") and mean in lines[-2] and str(run_dir) in lines[-2]
    assert lines[-1] == f"render its best episode: python -m render run={run_dir} episode=best overlay=full"


def test_total_steps_that_are_no_whole_rollouts_are_rounded_with_a_note(finished: tuple[Path, str]) -> None:
    _, out = finished
    assert (
        "note: total_steps=600 is not a whole number of rollouts (2 envs x 128 steps = 256); training 3 updates, "
        "768 steps" in out
    )


def test_the_log_records_the_device_the_run_trained_on(finished: tuple[Path, str]) -> None:
    run_dir, _ = finished
    with TrajectoryLog(run_dir / "trajectories.h5") as log:
        recorded = log.metadata["train_config_v000000"]
    assert recorded["device"] == "cpu"  # device=auto, on a machine without a GPU


def test_tensorboard_scalars_carry_cleanrls_tags(finished: tuple[Path, str]) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir, _ = finished
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert CLEANRL_TAGS <= tags
    with (run_dir / "updates.csv").open() as f:
        updates = list(csv.DictReader(f))
    logged = [(e.step, e.value) for e in events.Scalars("losses/value_loss")]
    assert [s for s, _ in logged] == [int(r["global_step"]) for r in updates]
    assert [v for _, v in logged] == pytest.approx([float(r["value_loss"]) for r in updates], rel=1e-6)


def test_without_tensorboard_the_scalars_are_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name: str, *args: object, **kwargs: object) -> object:
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    scalars = Scalars.open(tmp_path / "tensorboard")
    assert not scalars.enabled
    scalars.update(1, 0.1, {}, 10.0)
    scalars.close()
    assert not (tmp_path / "tensorboard").exists()


def test_a_resumed_run_knows_its_recent_mean_return_at_once(finished: tuple[Path, str]) -> None:
    run_dir, _ = finished
    returns = recent_train_returns(run_dir / "episodes.csv", 100)
    tracker = EpisodeTracker(2)
    assert math.isnan(tracker.mean_of_last(20))
    tracker.remember(returns)
    if returns:
        assert tracker.mean_of_last(20) == pytest.approx(sum(returns[-20:]) / len(returns[-20:]))
    assert recent_train_returns(run_dir / "missing.csv", 100) == []


def test_resuming_a_finished_run_says_so_and_changes_nothing(finished: tuple[Path, str], capsys) -> None:
    run_dir, _ = finished
    before = (run_dir / "updates.csv").read_bytes()
    assert train(resume_config(run_dir)) == run_dir
    assert "has finished: 3 of 3 updates" in capsys.readouterr().out
    assert (run_dir / "updates.csv").read_bytes() == before


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("cuda", "torch sees no CUDA GPU here"),
        ("cuda:1", "torch sees no CUDA GPU here"),
        ("tpu", "expected device auto, cpu, cuda or cuda:N, got device='tpu'"),
        ("gpu0", "expected device auto, cpu, cuda or cuda:N"),
    ],
)
def test_a_device_this_machine_lacks_is_one_clear_error(name: str, message: str) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match=message):
        resolve_device(name)


def test_a_run_asking_for_cuda_without_one_is_refused_before_its_folder_is_made(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    run_dir = tmp_path / "run"
    config = compose_config([*FAST, "device=cuda", f"run_dir={run_dir}"])
    with pytest.raises(ValueError, match="use device=cpu"):
        train(config)
    assert not run_dir.exists()


def test_auto_is_the_cpu_here_and_cpu_is_cpu() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")


def test_a_resumed_runs_progress_bar_shows_its_recent_return_at_once(
    finished: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(finished[0], run_dir)
    returns = recent_train_returns(run_dir / "episodes.csv", 20)
    assert returns, "the run finished training episodes"
    train(resume_config(run_dir, ["total_steps=1024", "progress=true"]))
    first_bar = capsys.readouterr().err.split("\r")[0:3]
    assert any(f"ret={sum(returns) / len(returns):.1f}" in line for line in first_bar), first_bar
