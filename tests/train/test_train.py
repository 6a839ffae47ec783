"""The trainer end to end on real emulators: a short run, its log, checkpoints, evals, a killed resume."""

from __future__ import annotations

import csv
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import gymnasium as gym
import h5py
import numpy as np
import pytest
import torch
from helpers import FAST, ROOT, compose_config, start_train_cli

from replay import verify
from replay.errors import CheckpointError
from replay.reader import TrajectoryLog
from replay.train import TrainConfig, eval_seeds, milestone_versions, resume_config, train
from replay.train.checkpoints import CheckpointIndex, load_policy
from replay.train.envs import EnvConfig, make_env, make_vector_env
from replay.train.network import LAYER_NAMES, ActorCritic
from replay.train.ppo import Rollout, advantages
from replay.wrappers import FireOnLifeLoss


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TrainConfig]:
    run_dir = tmp_path_factory.mktemp("run") / "breakout"
    config = compose_config([*FAST, "total_steps=1024", "seed=3", f"run_dir={run_dir}"])
    assert train(config) == run_dir
    return run_dir, config


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_run_folder_holds_log_checkpoints_config_and_metrics(run: tuple[Path, TrainConfig]) -> None:
    run_dir, config = run
    for name in ("trajectories.h5", "config.yaml", "episodes.csv", "updates.csv", "checkpoints/resume.pt"):
        assert (run_dir / name).is_file(), name
    assert [int(r["policy_version"]) for r in _rows(run_dir / "updates.csv")] == [1, 2, 3, 4]
    assert resume_config(run_dir).total_steps == config.total_steps


def test_log_verifies_and_matches_the_metrics(run: tuple[Path, TrainConfig]) -> None:
    run_dir, _ = run
    report = verify(run_dir / "trajectories.h5", progress=False)
    assert report.ok, str(report)
    with TrajectoryLog(run_dir / "trajectories.h5") as log:
        finished = sorted((e.tag, e.length, e.total_reward) for e in log.episodes if e.finished)
        train_versions = {v for e in log.episodes if e.tag == "train" for v in e.policy_versions}
    rows = _rows(run_dir / "episodes.csv")
    assert finished == sorted((r["kind"], int(r["episode_length"]), float(r["episode_return"])) for r in rows)
    assert train_versions == {0, 1, 2, 3}


def test_every_train_version_finds_its_checkpoint(run: tuple[Path, TrainConfig]) -> None:
    run_dir, _ = run
    index = CheckpointIndex(run_dir / "checkpoints")
    assert index.versions == [0, 2, 4]
    ref, lag = index.lookup(3)
    assert (ref.policy_version, lag, ref.dtype, ref.env_id) == (2, 1, "float16", "ALE/Breakout-v5")
    assert ref.global_step == 2 * 256
    assert index.lookup(4)[1] == 0
    assert [m.milestone for m in index.milestones()] == [0.0, 0.5, 1.0]


def test_eval_episodes_replay_from_the_checkpoint_file_alone(run: tuple[Path, TrainConfig]) -> None:
    """Each eval episode is re-played from its checkpoint file and the seeds in the log, action for action."""
    run_dir, config = run
    with TrajectoryLog(run_dir / "trajectories.h5") as log:
        evals = [e for e in log.episodes if e.tag == "eval"]
        assert sorted(e.policy_versions for e in evals) == [(0,), (2,), (4,)]
        for episode in evals:
            version = episode.policy_versions[0]
            facts = log.metadata[f"eval_v{version:06d}"]
            logged = [s.action for s in log.replay(episode.index, frames=False, observations=False)][1:]
            model, ref = load_policy(run_dir / facts["checkpoint"], env_id=config.env.id)
            assert ref.policy_version == version
            env = make_env(config.env, max_episode_frames=facts["max_episode_frames"])
            generator = torch.Generator().manual_seed(facts["action_seeds"][0])
            obs, _ = env.reset(seed=facts["env_seeds"][0])
            actions, total, done = [], 0.0, False
            while not done:
                with torch.no_grad():
                    action = int(model.act(torch.from_numpy(obs)[None], generator=generator))
                actions.append(action)
                obs, reward, terminated, truncated, _ = env.step(action)
                total += float(reward)
                done = terminated or truncated
            env.close()
            assert actions == logged
            assert total == episode.total_reward


def test_checkpoint_weights_are_the_stored_float16_values(run: tuple[Path, TrainConfig]) -> None:
    run_dir, _ = run
    path = run_dir / "checkpoints" / "v000004.pt"
    raw = torch.load(path, weights_only=True)
    model, _ = load_policy(path)
    for name, tensor in model.state_dict().items():
        assert raw["state_dict"][name].dtype == torch.float16
        assert torch.equal(tensor, raw["state_dict"][name].float())
    obs = torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8)
    reference = ActorCritic(model.n_actions)
    reference.load_state_dict({k: v.float() for k, v in raw["state_dict"].items()})
    assert all(torch.equal(a, b) for a, b in zip(model(obs), reference(obs), strict=True))
    assert [name for name, _ in model.named_children()] == list(LAYER_NAMES)


def _train_cli(cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``python -m replay.train <args>`` run to its end from ``cwd``, with this checkout importable."""
    return subprocess.run(
        [sys.executable, "-m", "replay.train", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _finished_episodes(log: TrajectoryLog, tag: str) -> list[tuple[float, int]]:
    return [(e.total_reward, e.length) for e in log.episodes if e.tag == tag and e.finished]


def _episode_rows(run_dir: Path, kind: str) -> list[tuple[float, int]]:
    rows = _rows(run_dir / "episodes.csv")
    return [(float(r["episode_return"]), int(r["episode_length"])) for r in rows if r["kind"] == kind]


@pytest.mark.slow  # fault injection with real processes; runs in CI's slow suite
def test_resume_after_sigkill_keeps_the_log_and_completes(tmp_path: Path) -> None:
    run_dir = tmp_path / "killed"
    fast = [o for o in FAST if not o.startswith("record.flush_seconds=")]
    # Flushes seconds apart: the kill below comes after episodes ended (their rows in episodes.csv) but before
    # the log's next flush, so the resume has rows of episodes the log never received to drop.
    args = [*fast, "record.flush_seconds=2", "eval.episodes=0", "total_steps=1536", "seed=5", f"run_dir={run_dir}"]
    process = start_train_cli(tmp_path, *args)
    updates = run_dir / "updates.csv"
    updated = -1  # updates in the table when the kill comes
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and process.poll() is None:
        if updates.exists() and len(updates.read_text().splitlines()) >= 3:  # header + 2 updates
            process.send_signal(signal.SIGSTOP)  # still while the log and the table are compared
            with TrajectoryLog(run_dir / "trajectories.h5") as log:
                flushed = len(_finished_episodes(log, "train"))
            # Some finished episodes in the log, and rows of more: on a fast machine two updates can end before
            # the first flush, when there are only the latter (failed once in CI).
            if 0 < flushed < len(_episode_rows(run_dir, "train")):
                updated = updates.read_text().count("\n") - 1  # whole rows: the updates that have ended
                break
            process.send_signal(signal.SIGCONT)
        time.sleep(0.1)
    assert process.poll() is None, process.stderr.read()
    process.send_signal(signal.SIGKILL)
    process.wait()
    with TrajectoryLog(run_dir / "trajectories.h5") as log:
        before = [(e.stream, e.env_index, e.start_step, e.length, e.finished) for e in log.episodes]
        # Episodes in flight at the kill are listed after the recorded ones (NaN reward) until more are appended.
        recorded = [key for key, e in zip(before, log.episodes, strict=True) if not math.isnan(e.total_reward)]
        lost = len(_episode_rows(run_dir, "train")) - len(_finished_episodes(log, "train"))
    assert any(finished for *_, finished in before)
    assert len(recorded) < len(before), "the envs were mid-episode when killed"
    assert lost > 0, "episodes ended after the log's last flush"

    resumed = _train_cli(tmp_path, f"resume={run_dir}", timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    with TrajectoryLog(run_dir / "trajectories.h5") as log:
        after = [(e.stream, e.env_index, e.start_step, e.length, e.finished) for e in log.episodes]
        resumed_versions = {v for e in log.episodes if e.stream > 0 for v in e.policy_versions}
    assert after[: len(recorded)] == recorded
    assert set(before) <= set(after), "nothing recorded before the kill is lost"
    assert len(after) > len(before)
    # An update's row is written just before its resume state (so a kill between them cannot lose the row of the
    # final update): the resume continues from the last update in the table or the one before it.
    assert updated - 1 <= min(resumed_versions) <= updated, (updated, sorted(resumed_versions))
    versions = [int(r["policy_version"]) for r in _rows(updates)]
    assert versions[-1] == 6 and versions == sorted(set(versions))
    assert CheckpointIndex(run_dir / "checkpoints").versions[-1] == 6
    assert verify(run_dir / "trajectories.h5", progress=False).ok
    with TrajectoryLog(run_dir / "trajectories.h5") as log:
        for kind in ("train", "eval"):  # the rows the kill left without a logged episode are gone
            assert _episode_rows(run_dir, kind) == _finished_episodes(log, kind), kind


def test_async_env_workers_leave_ctrl_c_to_the_main_process() -> None:
    # the signal a terminal's Ctrl-C sends every process of the group: the workers keep serving, and the main
    # process (which does not ignore it) closes them cleanly
    handler = signal.getsignal(signal.SIGINT)
    envs = make_vector_env(EnvConfig(id="ALE/Breakout-v5", vector="async"), 2)
    try:
        assert signal.getsignal(signal.SIGINT) is handler  # gymnasium calls a factory here too, for the spaces
        envs.reset(seed=0)
        for process in envs.processes:
            os.kill(process.pid, signal.SIGINT)
        time.sleep(0.5)
        assert all(process.is_alive() for process in envs.processes)
        envs.step(np.zeros(2, dtype=np.int64))
    finally:
        envs.close()
    assert not any(process.is_alive() for process in envs.processes)


def test_async_envs_close_quietly_after_a_worker_died() -> None:
    envs = make_vector_env(EnvConfig(id="ALE/Breakout-v5", vector="async"), 2)
    try:
        envs.reset(seed=0)
        envs.processes[0].kill()
        envs.processes[0].join()
        envs.close()  # the dead worker's pipe is broken: was a BrokenPipeError
        assert not any(process.is_alive() for process in envs.processes)
    finally:
        for process in envs.processes:
            if process.is_alive():
                process.kill()


def test_async_envs_close_when_a_step_was_cut_short() -> None:
    # Ctrl-C between reading a step's replies and marking the step done: gymnasium's close waited for replies
    # already read, for ever (the end-to-end test below hung about one time in six)
    envs = make_vector_env(EnvConfig(id="ALE/Breakout-v5", vector="async"), 2)
    try:
        envs.reset(seed=0)
        envs.step_async(np.zeros(2, dtype=np.int64))
        for pipe in envs.parent_pipes:
            pipe.recv()  # every reply read, the env still waiting for the step
        closing = threading.Thread(target=envs.close, daemon=True)
        closing.start()
        closing.join(timeout=30)
        assert not closing.is_alive(), "close() waited for replies that were already read"
        assert not any(process.is_alive() for process in envs.processes)
    finally:
        for process in envs.processes:
            if process.is_alive():
                process.kill()


@pytest.mark.slow  # a trainer with async workers, interrupted: runs in CI's slow suite
def test_ctrl_c_to_training_with_async_envs_is_one_line_and_keeps_the_log(tmp_path: Path) -> None:
    # A terminal's Ctrl-C signals the whole process group: the async env's workers stop too, and closing the env
    # met their broken pipes (a BrokenPipeError traceback and exit code 1 instead of the one line and 130).
    run_dir = tmp_path / "interrupted"
    args = [*FAST, "env.vector=async", "eval.episodes=0", "total_steps=100000", f"run_dir={run_dir}"]
    process = start_train_cli(tmp_path, *args, terminal=True)
    try:
        updates = run_dir / "updates.csv"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and process.poll() is None:
            if updates.exists() and len(updates.read_text().splitlines()) >= 2:  # training: header + an update
                break
            time.sleep(0.1)
        assert process.poll() is None, process.stderr.read()
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:  # the workers too
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and stderr.strip().splitlines()[-1] == (
        "python -m replay.train: interrupted; the log is whole; continue the run with: "
        f"python -m replay.train resume={run_dir}"
    )
    assert verify(run_dir / "trajectories.h5", progress=False).ok
    with TrajectoryLog(run_dir / "trajectories.h5") as log:
        assert sum(e.length for e in log.episodes) > 0


def test_a_mistyped_game_is_refused_with_the_closest_ids_before_the_run_folder_is_made(tmp_path: Path) -> None:
    run_dir = tmp_path / "typo"
    config = compose_config([*FAST, "env.id=ALE/Breakot-v5", f"run_dir={run_dir}"])
    with pytest.raises(ValueError, match=r"unknown ALE game env.id='ALE/Breakot-v5'; did you mean ALE/Breakout-v5"):
        train(config)
    assert not run_dir.exists()


def test_a_sweep_of_refused_settings_names_the_job_in_one_line_and_exits_2(tmp_path: Path) -> None:
    done = _train_cli(tmp_path, "-m", *FAST, "env.id=ALE/Breakot-v5,ALE/Pongg-v5", "total_steps=256", timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    named, line = done.stderr.strip().splitlines()[-2:]
    assert named.startswith("Error executing job with overrides: [") and "env.id=ALE/Breakot-v5" in named, named
    assert line.startswith("error: unknown ALE game env.id='ALE/Breakot-v5'; did you mean ALE/Breakout-v5"), line


def test_fire_on_life_loss_is_rebuilt_from_the_spec_and_keeps_playing_after_a_life() -> None:
    env = make_env(EnvConfig(id="ALE/Breakout-v5"))
    rebuilt = gym.make(gym.envs.registration.EnvSpec.from_json(env.spec.to_json()))
    assert "replay.wrappers:FireOnLifeLoss" in [w.entry_point for w in rebuilt.spec.additional_wrappers]
    obs_a, info = env.reset(seed=7)
    obs_b, _ = rebuilt.reset(seed=7)
    lives = [info["lives"]]
    rng = np.random.default_rng(0)
    done = False
    while not done:
        action = int(rng.integers(env.action_space.n))
        obs_a, reward_a, terminated, truncated, info = env.step(action)
        obs_b, reward_b, *_ = rebuilt.step(action)
        assert np.array_equal(obs_a, obs_b) and reward_a == reward_b
        lives.append(info["lives"])
        done = terminated or truncated
    assert lives[0] == 5 and lives[-1] == 0 and sorted(set(lives)) == [0, 1, 2, 3, 4, 5]


def test_fire_on_life_loss_passes_through_games_without_fire() -> None:
    env = FireOnLifeLoss(gym.make("ALE/MsPacman-v5"))
    assert env.fire_action is None
    with pytest.raises(ValueError, match="ALE environment"):
        FireOnLifeLoss(gym.make("CartPole-v1"))


@pytest.mark.parametrize("game", ["Pong", "SpaceInvaders", "Asteroids", "MsPacman", "Seaquest"])
def test_games_build_and_step(game: str) -> None:
    env = make_env(EnvConfig(id=f"ALE/{game}-v5"))
    obs, info = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8 and "lives" in info
    logits, value = ActorCritic(int(env.action_space.n))(torch.from_numpy(obs)[None])
    assert logits.shape == (1, env.action_space.n) and value.shape == (1,)
    env.step(0)


def test_gae_cuts_at_terminals_and_life_losses() -> None:
    rollout = Rollout(3, 1, (1,))
    rollout.rewards[:, 0] = torch.tensor([1.0, 1.0, 1.0])
    rollout.values[:, 0] = torch.tensor([0.5, 0.5, 0.5])
    rollout.dones[:, 0] = torch.tensor([0.0, 1.0, 0.0])  # the observation at t=1 follows a (life) loss
    adv, returns = advantages(rollout, torch.tensor([2.0]), torch.tensor([0.0]), gamma=0.5, gae_lambda=1.0)
    assert adv[0, 0].item() == pytest.approx(1.0 - 0.5)
    assert returns[2, 0].item() == pytest.approx(1.0 + 0.5 * 2.0)
    assert returns[1, 0].item() == pytest.approx(1.0 + 0.5 * returns[2, 0].item())


def test_milestones_cover_every_tenth_and_the_end() -> None:
    assert milestone_versions(100, 10) == {0: 0.0, **{10 * k: k / 10 for k in range(1, 11)}}
    assert max(milestone_versions(7, 10)) == 7


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_refused_or_finished_resume_leaves_the_run_folder_as_it_was(
    run: tuple[Path, TrainConfig], tmp_path: Path
) -> None:
    run_dir = tmp_path / "copy"
    shutil.copytree(run[0], run_dir)
    before = _tree(run_dir)
    with pytest.raises(CheckpointError, match=r"Breakout-v5"):  # another game than the checkpoint's
        train(resume_config(run_dir, ["env.id=ALE/Pong-v5"]))
    assert _tree(run_dir) == before, "a refused resume must not rewrite config.yaml or anything else"
    for bad, key in [
        ("checkpoint.resume_every_updates=0", "checkpoint.resume_every_updates >= 1"),
        ("ppo.num_minibatches=0", "ppo.num_minibatches >= 1"),
        ("eval.episodes=-1", "eval.episodes >= 0"),
        ("record.snapshot_interval=0", "record.snapshot_interval >= 1"),
    ]:
        with pytest.raises(ValueError, match=rf"expected {key}, got"):
            train(resume_config(run_dir, [bad]))
    assert _tree(run_dir) == before
    assert train(resume_config(run_dir)) == run_dir  # finished already: says so, changes nothing
    assert _tree(run_dir) == before


@pytest.mark.slow  # several trainer processes: runs in CI's slow suite
def test_the_command_line_reports_an_unusable_run_folder_in_one_line_and_exits_2(tmp_path: Path) -> None:
    a_file = tmp_path / "afile"
    a_file.write_text("not a run\n")
    for override, message in [
        (f"run_dir={a_file}", f"error: run_dir {a_file} is a file; name a folder"),
        (f"resume={tmp_path / 'nothere'}", "error: cannot resume"),
        ("ppo.num_steps=0", "error: expected ppo.num_steps >= 1, got 0"),
        ("totl_steps=3", "error: Could not override 'totl_steps': no such setting; `python -m replay.train --cfg"),
        ("ppo=nope", "error: In 'train': Could not find 'ppo/nope'; the options of ppo are: cleanrl"),
    ]:
        done = _train_cli(tmp_path, override, "total_steps=256")
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert done.stderr.strip().splitlines()[-1].startswith(message), done.stderr
    assert not (tmp_path / "nothere").exists()  # Hydra's files went to outputs/, not into a folder made for them


def test_a_milestone_whose_evaluation_a_kill_cut_short_is_evaluated_on_resume(
    run: tuple[Path, TrainConfig], tmp_path: Path
) -> None:
    """Killed during the final evaluation: the checkpoint and resume state are saved, the evaluation is not."""
    run_dir = tmp_path / "copy"
    run_dir, config = tmp_path / "copy", run[1]
    shutil.copytree(run[0], run_dir)
    log_path = run_dir / "trajectories.h5"
    with TrajectoryLog(log_path) as log:
        final = max(int(k.removeprefix("eval_v")) for k in log.metadata if k.startswith("eval_v"))
        evals = [e for e in log.episodes if e.tag == "eval" and e.policy_versions[0] == final]
        trained = [e for e in log.episodes if e.tag == "train"]
    with h5py.File(log_path, "a") as handle:
        del handle["metadata"].attrs[f"eval_v{final:06d}"]
    # two evaluation episodes now: the one the log holds finished is kept, only the second is played
    assert len(evals) == 1 and train(resume_config(run_dir, ["eval.episodes=2"])) == run_dir
    with TrajectoryLog(log_path) as log:
        assert log.metadata[f"eval_v{final:06d}"]["env_seeds"] == [eval_seeds(config.seed, final, k)[0] for k in (0, 1)]
        again = [e for e in log.episodes if e.tag == "eval" and e.policy_versions[0] == final]
        assert [e for e in log.episodes if e.tag == "train"] == trained  # nothing but the evaluation was added
    assert len(again) == 2 and again[0] == evals[0] and again[1].finished
    rows = [r for r in _rows(run_dir / "episodes.csv") if r["kind"] == "eval" and int(r["policy_version"]) == final]
    assert len(rows) == 2  # the first launch's row of the kept episode is written again, not twice
    with TrajectoryLog(log_path) as log:
        assert _episode_rows(run_dir, "eval") == _finished_episodes(log, "eval")
    assert verify(log_path, progress=False).ok


@pytest.mark.slow  # in the slow suite, for the fast suite's 5 minutes on the slower machines
def test_a_stop_right_after_the_final_resume_state_keeps_every_update_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run stops (here an exception, as a kill would) just after the final update's resume state is saved: the
    resume finds the run trained, so that update's row must already be in updates.csv (CI's kill suite once
    found it missing: the row came after the resume state)."""
    import replay.train.loop as train_module

    class Stopped(BaseException):
        pass

    run_dir = tmp_path / "run"
    config = compose_config([*FAST, "total_steps=512", "seed=5", f"run_dir={run_dir}"])
    final = math.ceil(512 / (2 * 128))
    save = train_module.save_resume_state

    def save_then_stop(*args: object, policy_version: int, **kwargs: object) -> None:
        save(*args, policy_version=policy_version, **kwargs)
        if policy_version == final:
            raise Stopped

    monkeypatch.setattr(train_module, "save_resume_state", save_then_stop)
    with pytest.raises(Stopped):
        train(config)
    monkeypatch.undo()
    assert train(resume_config(run_dir)) == run_dir
    assert [int(row["policy_version"]) for row in _rows(run_dir / "updates.csv")] == list(range(1, final + 1))
    assert CheckpointIndex(run_dir / "checkpoints").versions[-1] == final


@pytest.mark.slow  # fault injection with real processes; runs in CI's slow suite
def test_a_run_killed_before_its_first_resume_state_resumes_from_the_start(tmp_path: Path) -> None:
    """Killed during the version-0 evaluation, before ``resume.pt`` exists: ``resume=`` trains it from version 0
    into the same log, keeping the checkpoint and the evaluation episode recorded before the kill."""
    run_dir = tmp_path / "early"
    fast = [o for o in FAST if not o.startswith(("eval.", "record.flush_seconds="))]
    # 500-step evaluations flushed every 0.1 s: the first one reaches the log a second or more before the second
    # ends, and the kill comes in between, with one version-0 evaluation finished and the next in flight.
    args = [*fast, "eval.episodes=2", "eval.max_episode_frames=2000", "record.flush_seconds=0.1"]
    args += ["total_steps=512", "seed=7", f"run_dir={run_dir}"]
    process = start_train_cli(tmp_path, *args)
    log_path, resume_path = run_dir / "trajectories.h5", run_dir / "checkpoints" / "resume.pt"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None and not resume_path.exists():
        if log_path.exists():
            process.send_signal(signal.SIGSTOP)  # still while the log is read
            with TrajectoryLog(log_path) as log:
                listed = [e for e in log.episodes if e.tag == "eval"]
            # One evaluation finished and the next on disk, in flight (on a loaded machine its first flush can
            # come a poll later than the first one's end).
            if sum(e.finished for e in listed) == 1 and len(listed) == 2 and not resume_path.exists():
                break
            process.send_signal(signal.SIGCONT)
        time.sleep(0.05)
    assert process.poll() is None and not resume_path.exists(), "the kill should come before resume.pt is saved"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert (run_dir / "checkpoints" / "v000000.pt").is_file()
    initial, _ = load_policy(run_dir / "checkpoints" / "v000000.pt")
    with TrajectoryLog(log_path) as log:
        before = list(log.episodes)
        assert "eval_v000000" not in log.metadata
    kept = [e for e in before if not math.isnan(e.total_reward)]
    assert len(kept) == 1 and len(before) == 2, "one evaluation episode recorded, the next in flight"

    refused = _train_cli(tmp_path, *args)
    assert refused.returncode == 2 and f"continue it with resume={run_dir}" in refused.stderr, refused.stderr
    before_tree = _tree(run_dir)
    for override, message in [("seed=8", "other initial weights than seed=8"), ("env.id=ALE/Pong-v5", "Breakout")]:
        with pytest.raises(CheckpointError, match=message):
            train(resume_config(run_dir, [override]))
        assert _tree(run_dir) == before_tree
    resumed = _train_cli(tmp_path, f"resume={run_dir}")
    assert resumed.returncode == 0, resumed.stderr
    assert verify(log_path, progress=False).ok
    with TrajectoryLog(log_path) as log:
        after = list(log.episodes)
        seeds = log.metadata["eval_v000000"]["env_seeds"]
        assert _episode_rows(run_dir, "eval") == _finished_episodes(log, "eval")
        assert _episode_rows(run_dir, "train") == _finished_episodes(log, "train")
        first_evaluation = [e for e in after if e.tag == "eval" and e.finished and e.policy_versions == (0,)]
    assert after[: len(kept)] == kept, "nothing recorded before the kill changed or vanished"
    assert any(math.isnan(e.total_reward) and e.stream == before[1].stream for e in after), "the cut episode stays"
    assert seeds == [eval_seeds(7, 0, k)[0] for k in (0, 1)]
    assert len(first_evaluation) == 2 and first_evaluation[0] == kept[0]  # only the cut episode was played again
    assert [int(r["policy_version"]) for r in _rows(run_dir / "updates.csv")] == [1, 2]
    assert CheckpointIndex(run_dir / "checkpoints").versions == [0, 1, 2]
    restarted, _ = load_policy(run_dir / "checkpoints" / "v000000.pt")
    assert all(torch.equal(initial.state_dict()[k], v) for k, v in restarted.state_dict().items())


def test_a_folder_without_a_run_is_refused_by_resume(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a run\n")
    with pytest.raises(CheckpointError, match=r"holds no run"):
        train(compose_config([*FAST, f"resume={tmp_path}"]))
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
