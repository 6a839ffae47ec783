"""Recording Stable-Baselines3 runs (``replay.sb3``): real SB3 training on real ALE games, one run folder whatever
the worker processes, versions and checkpoints checked against what the training itself saw."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from sb3_helpers import VersionProbe, check_versions, policy_tensors
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.callbacks import CheckpointCallback
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecFrameStack

from replay import TrajectoryLog, verify
from replay.errors import RecordingError
from replay.run_folder import RunFolder
from replay.sb3 import RecordCallback, checkpoint_versions, make_atari_env
from replay.writer import TrajectoryWriter

GAME = "BreakoutNoFrameskip-v4"
ROOT = Path(__file__).resolve().parents[2]


def test_a_random_frame_skip_under_sb3s_noop_starts_is_refused_naming_the_fix(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match=r"Breakout-v4 skips a random number.*'BreakoutNoFrameskip-v4'"):
        make_atari_env("Breakout-v4", 2, run_dir=tmp_path / "run", seed=0)
    with pytest.raises(RecordingError, match=r"frameskip=\(2, 5\).*env_kwargs=\{'frameskip': 1\}"):
        make_atari_env("ALE/Breakout-v5", run_dir=tmp_path / "run", env_kwargs={"frameskip": (2, 5)})
    assert not (tmp_path / "run").exists()  # refused before anything was made


def test_an_open_writer_sent_to_another_process_is_refused_naming_the_fix(tmp_path: Path) -> None:
    with TrajectoryWriter(tmp_path / "log.h5") as writer:
        with pytest.raises(RecordingError, match=r"cannot be sent to another process.*replay\.sb3\.make_atari_env"):
            pickle.dumps(writer)


def test_a_second_writer_of_one_log_names_the_way_to_share_it(tmp_path: Path) -> None:
    with TrajectoryWriter(tmp_path / "log.h5"):
        with pytest.raises(RecordingError, match=r"another process.*or another writer in this one.*replay\.sb3"):
            TrajectoryWriter(tmp_path / "log.h5")


def _train(algorithm: str, vec_env_cls: type, run_dir: Path, steps: int) -> tuple[VersionProbe, list[int]]:
    """Tiny real training (CnnPolicy, 2 envs, 4-frame stack) with the recipe, watched by a VersionProbe."""
    torch.set_num_threads(1)
    venv = VecFrameStack(make_atari_env(GAME, 2, run_dir=run_dir, seed=3, vec_env_cls=vec_env_cls), 4)
    if algorithm == "PPO":
        model = PPO("CnnPolicy", venv, n_steps=32, batch_size=64, n_epochs=2, seed=0)
    elif algorithm == "A2C":
        model = A2C("CnnPolicy", venv, n_steps=16, seed=0)
    else:
        model = DQN("CnnPolicy", venv, buffer_size=1000, learning_starts=64, train_freq=16, seed=0)
    probe = VersionProbe()
    saver = CheckpointCallback(save_freq=40, save_path=str(run_dir / "sb3"))
    model.learn(steps, callback=[RecordCallback(run_dir, checkpoint_every=2), probe, saver])
    with TrajectoryLog(RunFolder(run_dir).log) as log:
        streams = log.metadata["sb3"]["streams"]
    venv.close()
    return probe, streams


@pytest.mark.slow
@pytest.mark.parametrize(
    ("algorithm", "vec_env_cls"),
    [(algorithm, vec) for algorithm in ("PPO", "A2C", "DQN") for vec in (DummyVecEnv, SubprocVecEnv)],
)
def test_a_trained_run_is_one_run_that_replays_with_the_versions_training_saw(
    tmp_path: Path, algorithm: str, vec_env_cls: type
) -> None:
    run_dir = tmp_path / "run"
    probe, streams = _train(algorithm, vec_env_cls, run_dir, 256)
    assert probe.updates >= 3 and probe.starts[-1][0] == probe.updates - 1
    assert streams == [0, 1]

    report = verify(RunFolder(run_dir).log, progress=False)
    assert report.ok and report.steps > 1000, str(report)
    assert check_versions(RunFolder(run_dir).log, probe, streams) == report.steps

    shown = subprocess.run(
        [sys.executable, "-m", "replay.show", str(run_dir), "--json"], capture_output=True, text=True, check=True
    )
    summary = json.loads(shown.stdout)["summary"]
    assert summary["env_steps"] > 1000 and summary["log"] == str(RunFolder(run_dir).log)

    versions = checkpoint_versions(run_dir)
    own = {path.name: v for path, v in versions.items() if path.parent == RunFolder(run_dir).checkpoints}
    last = probe.updates
    assert own == {f"v{v:06d}.zip": v for v in sorted({0, *range(2, last + 1, 2), last})}
    assert summary["checkpoints"] == sorted(own.values())
    saved = {path: v for path, v in versions.items() if path.parent == run_dir / "sb3"}
    assert saved and all(v == probe.version_at[int(path.name.split("_")[-2])] for path, v in saved.items())
    for path, version in saved.items():  # the network a CheckpointCallback file holds is that version's
        if (RunFolder(run_dir).checkpoints / f"v{version:06d}.zip").exists():
            mine = policy_tensors(RunFolder(run_dir).checkpoints / f"v{version:06d}.zip")
            theirs = policy_tensors(path)
            assert all(torch.equal(mine[name], theirs[name]) for name in mine)


@pytest.mark.slow
def test_workers_and_in_process_envs_record_the_same_run(tmp_path: Path) -> None:
    """And set_attr("policy_version", n), which SB3 would leave on the outermost wrapper, reaches every recorder."""
    runs = {}
    for name, cls in (("dummy", DummyVecEnv), ("subproc", SubprocVecEnv)):
        venv = make_atari_env(GAME, 3, run_dir=tmp_path / name, seed=5, vec_env_cls=cls)
        venv.reset()
        venv.action_space.seed(0)
        for t in range(120):
            if t == 60:
                venv.set_attr("policy_version", 7)
            venv.step([venv.action_space.sample() for _ in range(3)])
        venv.close()
        with TrajectoryLog(RunFolder(tmp_path / name).log) as log:
            runs[name] = sorted(
                (e.stream, e.start_step, e.length, e.total_reward, e.policy_versions) for e in log.episodes
            )
            assert len(log.streams) == 3 and min(s.length for s in log.streams) > 480
    assert runs["dummy"] == runs["subproc"]
    assert {versions for *_, versions in runs["dummy"]} == {(0, 7)}


_NO_CLOSE = textwrap.dedent(
    """
    import sys
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv
    from replay.sb3 import make_atari_env

    if __name__ == "__main__":
        cls = SubprocVecEnv if sys.argv[2] == "subproc" else DummyVecEnv
        venv = make_atari_env("BreakoutNoFrameskip-v4", 2, run_dir=sys.argv[1], seed=1, vec_env_cls=cls,
                              flush_seconds=3600)
        venv.reset()
        venv.action_space.seed(0)
        for _ in range(150):
            venv.step([venv.action_space.sample() for _ in range(2)])
        if sys.argv[2] == "dummy":
            venv.close()
        # a SubprocVecEnv never closed: its workers are terminated at exit
    """
)


@pytest.mark.slow
def test_a_script_that_never_closes_its_subproc_env_loses_nothing(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(_NO_CLOSE)
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    for kind in ("dummy", "subproc"):
        subprocess.run([sys.executable, str(script), str(tmp_path / kind), kind], check=True, env=environment)
    lengths = {}
    for kind in ("dummy", "subproc"):
        with TrajectoryLog(RunFolder(tmp_path / kind).log) as log:
            episodes = sorted((e.stream, e.start_step, e.length, e.finished) for e in log.episodes)
            lengths[kind] = ([s.length for s in log.streams], episodes)
    assert lengths["subproc"] == lengths["dummy"] and min(lengths["dummy"][0]) > 150
    assert verify(RunFolder(tmp_path / "subproc").log, progress=False).ok


@pytest.mark.slow
def test_the_callback_refuses_a_model_whose_env_is_not_recorded(tmp_path: Path) -> None:
    from stable_baselines3.common.env_util import make_atari_env as sb3_make_atari_env

    model = A2C("CnnPolicy", VecFrameStack(sb3_make_atari_env(GAME, 1, seed=0), 4), n_steps=4)
    with pytest.raises(RecordingError, match=r"not recorded.*replay\.sb3\.make_atari_env"):
        model.learn(8, callback=RecordCallback(tmp_path / "run", checkpoint_every=1))


RECIPE = textwrap.dedent(
    """
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import SubprocVecEnv, VecFrameStack

    from replay.sb3 import RecordCallback, make_atari_env  # instead of stable_baselines3's

    if __name__ == "__main__":
        venv = make_atari_env("BreakoutNoFrameskip-v4", 2, run_dir="runs/ppo", seed=0, vec_env_cls=SubprocVecEnv)
        model = PPO("CnnPolicy", VecFrameStack(venv, 4), n_steps=64, batch_size=64, seed=0)
        model.learn(256, callback=RecordCallback("runs/ppo", checkpoint_every=2))
    """
)


@pytest.mark.slow
def test_the_recipe_records_a_run_every_tool_takes(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(RECIPE)
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "train.py"], cwd=tmp_path, check=True, env=environment)
    run_dir = tmp_path / "runs" / "ppo"
    verified = subprocess.run(
        [sys.executable, "-m", "replay.verify", "--quiet", str(RunFolder(run_dir).log)], env=environment, check=False
    )
    assert verified.returncode == 0
    assert sorted(checkpoint_versions(run_dir).values()) == [0, 2]  # 2 rollouts of 128 steps: 2 updates
