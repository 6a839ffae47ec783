"""Train PPO on an Atari game and record every episode: ``python -m replay.train env.id=ALE/Pong-v5``.

A run folder (``run_dir``, default ``data/runs/<time>-<game>-s<seed>``) receives:

- ``trajectories.h5``: every training episode of every env (tag ``train``) and every milestone evaluation
  episode (tag ``eval``), each step stamped with the policy version (= number of updates) that chose it;
- ``checkpoints/v<version>.pt``: policies at the checkpoint cadence, at version 0, at every
  1/``milestones`` of training and at the end (see :mod:`replay.checkpoints`), plus ``resume.pt`` for
  ``resume=<run_dir>``;
- ``config.yaml`` (the effective config), ``episodes.csv`` and ``updates.csv`` (see :mod:`replay.metrics`).

Milestone evaluations play with the weights read back from the saved file, seeded from ``(seed, version,
episode)`` (seeds stored in the log metadata under ``eval_v<version>``), so each is reproducible from the
file alone.
A resumed run restores weights, optimizer, counters and the torch RNG; the emulators restart from fresh
seeded resets, so it is not bit-identical to an uninterrupted run, and episodes in flight at the kill stay in
the log as unfinished. ``updates.csv`` is cut back to the resume state and ``episodes.csv`` to the finished
episodes the log holds (rows of episodes that ended after its last flush go). A run killed before its first
``resume.pt`` (while saving or evaluating version 0) resumes from the start: version 0 with the same seed, so the
same initial weights as its ``v000000.pt``, into the same log, keeping the evaluation episodes it recorded.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import hydra
import numpy as np
import torch
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from tqdm import tqdm

from replay import ppo
from replay.atari import EnvConfig, check_env_id, life_lost, make_env, make_vector_env
from replay.checkpoints import (
    DTYPES,
    RESUME_FILE,
    CheckpointIndex,
    CheckpointRef,
    checkpoint_path,
    load_policy,
    load_resume_state,
    save_checkpoint,
    save_resume_state,
)
from replay.command import refuse, run_app
from replay.errors import CheckpointError, ReplayError
from replay.metrics import (
    EPISODE_FIELDS,
    UPDATE_FIELDS,
    CsvTable,
    EpisodeKey,
    EpisodeTracker,
    episode_row,
    prune_rows,
    rewrite_rows,
    rows_of_held_episodes,
)
from replay.network import ActorCritic
from replay.ppo import PPOConfig, Rollout
from replay.reader import EpisodeRecord, TrajectoryLog

LOG_FILE = "trajectories.h5"
# Added (PEP 678) to an error raised before training began, the run folder untouched: a refusal to report in a
# line, not a fault mid-run whose traceback matters.
REFUSED = "replay.train: refused before training began; the run folder is unchanged"
CONFIG_FILE = "config.yaml"


@dataclass
class RecordConfig:
    """Recording of training and evaluation episodes (Hydra group ``record``); see ``RecordVectorTrajectory``.

    Attributes:
        enabled: Record into ``<run_dir>/trajectories.h5``; off only for benchmarks and debugging.
        snapshot_interval: Vector positions between emulator snapshots (seek time vs bytes).
        sync_interval: Positions between sync checks.
        flush_seconds: About this much recording is lost at most when the process is killed.
    """

    enabled: bool = True
    snapshot_interval: int = 1024
    sync_interval: int = 64
    flush_seconds: float = 10.0


@dataclass
class CheckpointConfig:
    """When and how policies are saved.

    Attributes:
        every_updates: Save ``v<version>.pt`` every this many updates (0: only version 0, milestones, final).
        milestones: Milestone checkpoints (with evaluation) at every ``1/milestones`` of training.
        dtype: Weight storage, ``float32`` or ``float16``; evaluation uses the weights as stored.
        resume_every_updates: Overwrite ``resume.pt`` every this many updates (1: lose at most one rollout).
    """

    every_updates: int = 0
    milestones: int = 10
    dtype: str = "float32"
    resume_every_updates: int = 1


@dataclass
class EvalConfig:
    """Milestone evaluation in a separate single env with the training stack.

    Attributes:
        episodes: Episodes per milestone (0 disables evaluation).
        greedy: Argmax actions instead of sampling.
        max_episode_frames: Emulator-frame cap of an evaluation episode (108,000 = 27,000 agent steps).
        at_start: Also evaluate the initial policy (version 0).
    """

    episodes: int = 2
    greedy: bool = False
    max_episode_frames: int = 108_000
    at_start: bool = True


@dataclass
class TrainConfig:
    """A training run.

    Attributes:
        total_steps: Agent steps over all envs (rounded up to whole rollouts).
        seed: The one seed: env resets, torch, evaluation seeds derive from it.
        run_dir: Run folder; relative paths resolve against the launch directory. None: a new folder under
            ``data/runs/``.
        resume: A run folder to continue from its ``resume.pt``, or from the start if it was killed before its
            first one (with ``python -m replay.train``, its ``config.yaml`` is reused and other command-line
            overrides apply on top).
        torch_threads: ``torch.set_num_threads``.
        progress: Show a tqdm progress bar.
    """

    env: EnvConfig = field(default_factory=EnvConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    record: RecordConfig = field(default_factory=RecordConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    total_steps: int = 10_000_000
    seed: int = 1
    run_dir: str | None = None
    resume: str | None = None
    torch_threads: int = 2
    progress: bool = True


def _validate(config: TrainConfig) -> None:
    p = config.ppo
    check_env_id(config.env.id)  # before the run folder is made
    if config.total_steps <= 0:
        raise ValueError(f"expected a positive total_steps, got {config.total_steps}")
    least = {
        "ppo.num_envs": (p.num_envs, 1),
        "ppo.num_steps": (p.num_steps, 1),
        "ppo.num_minibatches": (p.num_minibatches, 1),
        "ppo.update_epochs": (p.update_epochs, 1),
        "checkpoint.every_updates": (config.checkpoint.every_updates, 0),
        "checkpoint.resume_every_updates": (config.checkpoint.resume_every_updates, 1),
        "eval.episodes": (config.eval.episodes, 0),
        "record.snapshot_interval": (config.record.snapshot_interval, 1),
        "record.sync_interval": (config.record.sync_interval, 1),
        "torch_threads": (config.torch_threads, 1),
        "env.frame_skip": (config.env.frame_skip, 1),
        "env.frame_stack": (config.env.frame_stack, 1),
        "env.screen_size": (config.env.screen_size, 1),
        "env.noop_max": (config.env.noop_max, 0),
        "env.max_episode_frames": (config.env.max_episode_frames, 1),
        "eval.max_episode_frames": (config.eval.max_episode_frames, 1),
    }
    for key, (value, bound) in least.items():
        if value < bound:
            raise ValueError(f"expected {key} >= {bound}, got {value}")
    if config.env.vector not in ("sync", "async"):
        raise ValueError(f"expected env.vector sync or async, got {config.env.vector!r}")
    if not 0.0 <= config.env.repeat_action_probability <= 1.0:
        raise ValueError(f"expected env.repeat_action_probability in 0..1, got {config.env.repeat_action_probability}")
    if not config.record.flush_seconds > 0:
        raise ValueError(f"expected a positive record.flush_seconds, got {config.record.flush_seconds}")
    if p.batch_size % p.num_minibatches:
        raise ValueError(
            f"expected ppo.num_envs * ppo.num_steps ({p.batch_size}) divisible by ppo.num_minibatches "
            f"({p.num_minibatches})"
        )
    if config.checkpoint.dtype not in DTYPES:
        raise ValueError(f"expected checkpoint.dtype in {sorted(DTYPES)}, got {config.checkpoint.dtype!r}")
    if config.checkpoint.milestones < 1:
        raise ValueError(f"expected at least 1 checkpoint milestone, got {config.checkpoint.milestones}")


def milestone_versions(num_updates: int, milestones: int) -> dict[int, float]:
    """Policy version of each milestone → the largest training fraction it stands for (0 → 0.0)."""
    schedule = {0: 0.0}
    for k in range(1, milestones + 1):
        schedule[math.ceil(k * num_updates / milestones)] = k / milestones
    return schedule


def eval_seeds(seed: int, policy_version: int, episode: int) -> tuple[int, int]:
    """Env reset seed and action-sampling seed of one evaluation episode."""
    env_seed, action_seed = np.random.SeedSequence([seed, policy_version, episode, 0xE7A1]).generate_state(2)
    return int(env_seed), int(action_seed)


def evaluate(
    config: TrainConfig, ref: CheckpointRef, writer: Any | None, *, first: int = 0
) -> list[tuple[float, int, bool, bool]]:
    """Play ``config.eval.episodes`` episodes (from the ``first``-th on: a resume finishing a cut evaluation)
    with the policy as loaded from ``ref.path``; record them if a writer is given. Returns ``(return, length,
    terminated, truncated)`` per episode played."""
    model, _ = load_policy(ref.path, env_id=config.env.id)
    env = make_env(config.env, max_episode_frames=config.eval.max_episode_frames)
    if writer is not None:
        from replay.recorder import RecordTrajectory

        env = RecordTrajectory(env, writer, tag="eval")
        env.policy_version = ref.policy_version
    seeds = [eval_seeds(config.seed, ref.policy_version, e) for e in range(config.eval.episodes)]
    results = []
    try:
        for env_seed, action_seed in seeds[first:]:
            generator = torch.Generator().manual_seed(action_seed)
            obs, _ = env.reset(seed=env_seed)
            total, length, terminated, truncated = 0.0, 0, False, False
            while not (terminated or truncated):
                with torch.no_grad():
                    action = model.act(torch.from_numpy(obs)[None], greedy=config.eval.greedy, generator=generator)
                obs, reward, terminated, truncated, _ = env.step(int(action))
                total += float(reward)
                length += 1
            results.append((total, length, bool(terminated), bool(truncated)))
    finally:
        env.close()
    if writer is not None:
        writer.set_metadata(
            f"eval_v{ref.policy_version:06d}",
            {
                "checkpoint": f"checkpoints/{ref.path.name}",
                "env_seeds": [s for s, _ in seeds],
                "action_seeds": [s for _, s in seeds],
                "greedy": config.eval.greedy,
                "max_episode_frames": config.eval.max_episode_frames,
            },
        )
    return results


def _evaluation_missing(
    config: TrainConfig, log_path: Path, version: int, milestones: dict[int, float]
) -> list[EpisodeRecord] | None:
    """``None``, or if ``version`` is a milestone whose evaluation the log does not hold in full (the run was
    killed during it: its checkpoint and resume state are saved first), the evaluation episodes it finished."""
    wanted = config.eval.episodes > 0 and (version > 0 or config.eval.at_start)
    if version not in milestones or not wanted or not config.record.enabled or not log_path.is_file():
        return None
    with TrajectoryLog(log_path) as log:
        if f"eval_v{version:06d}" in log.metadata:
            return None
        played = [e for e in log.episodes if e.tag == "eval" and e.finished and e.policy_versions[0] == version]
    return played[: config.eval.episodes]  # in the order played: episode k used the k-th seeds


def _check_initial_weights(path: Path, model: ActorCritic, config: TrainConfig) -> None:
    """A run resumed from the start must begin with the policy its ``v000000.pt`` holds (and its logged evaluation
    played): the same seed gives the same weights."""
    saved, ref = load_policy(path, env_id=config.env.id, n_actions=model.n_actions)
    fresh = model.state_dict()
    if not all(torch.equal(fresh[k].to(DTYPES[ref.dtype]).float(), v) for k, v in saved.state_dict().items()):
        raise CheckpointError(
            f"cannot resume {config.resume} from the start: {path} holds other initial weights than seed="
            f"{config.seed} gives; resume it with the seed of its config.yaml"
        )


def _save_config(path: Path, config: TrainConfig, *, new: bool) -> None:
    """Write ``config.yaml`` whole or not at all: a kill mid-write would leave a run that resumes with the defaults.
    ``new``: raise :class:`FileExistsError` rather than replace one (a run launched into the folder a moment ago)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(OmegaConf.to_yaml(OmegaConf.structured(config)))
    if new:
        try:
            os.link(partial, path)
        finally:
            partial.unlink(missing_ok=True)
    else:
        partial.replace(path)


def _refused(error: Exception) -> Exception:
    error.add_note(REFUSED)
    return error


def _new_run_dir(config: TrainConfig) -> Path:
    game = config.env.id.split("/")[-1].split("-")[0].lower()
    base = Path("data/runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{game}-s{config.seed}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def _episodes_held(
    config: TrainConfig, log_path: Path, redone: Sequence[EpisodeRecord]
) -> dict[str, list[EpisodeKey]] | None:
    """The finished episodes the log holds per tag, keyed as ``episodes.csv`` rows, in the order they finished;
    ``None`` if the run records no log. ``redone``: episodes whose rows the resume writes again (see
    :func:`_evaluation_missing`), left out."""
    if not config.record.enabled or not log_path.is_file():
        return None
    with TrajectoryLog(log_path) as log:
        return {
            tag: [
                (e.env_index if tag == "train" else -1, e.total_reward, e.length)
                for e in log.episodes
                if e.tag == tag and e.finished and e not in redone
            ]
            for tag in ("train", "eval")
        }


def _forget_lost_updates(
    run_dir: Path, version: int, global_step: int, held: dict[str, list[EpisodeKey]] | None
) -> None:
    """Drop what a killed run wrote after its resume state: those updates are redone with other data.

    Update rows and checkpoints of versions after ``version`` go. Episode rows keep to the episodes the log holds
    (``held``, see :func:`_episodes_held`): rows of episodes that ended after the log's last flush go, while those
    of the redone rollout that reached the log stay, as they were played and recorded. Without a log, the rows
    after ``global_step`` go.
    """
    checkpoints = run_dir / "checkpoints"
    for stale in CheckpointIndex(checkpoints).versions:
        if stale > version:
            checkpoint_path(checkpoints, stale).unlink()
    prune_rows(run_dir / "updates.csv", "policy_version", version)
    if held is None:
        prune_rows(run_dir / "episodes.csv", "global_step", global_step)
    else:
        rewrite_rows(run_dir / "episodes.csv", lambda rows: rows_of_held_episodes(rows, held))


def train(
    config: TrainConfig, *, wrap_envs: Callable[[gym.vector.VectorEnv], gym.vector.VectorEnv] | None = None
) -> Path:
    """Run (or resume) training as configured; returns the run folder.

    ``wrap_envs`` wraps the vector env before recording (benchmarks compare other recorders with it).
    An error raised before training starts, with the run folder unchanged, carries the note :data:`REFUSED`.
    """
    try:
        _validate(config)
    except ValueError as error:
        error.add_note(REFUSED)
        raise
    p = config.ppo
    torch.set_num_threads(config.torch_threads)
    resuming = config.resume is not None
    run_dir = Path(config.resume if resuming else (config.run_dir or _new_run_dir(config))).absolute()
    checkpoint_dir = run_dir / "checkpoints"
    log_path = run_dir / LOG_FILE
    config_path = run_dir / CONFIG_FILE
    initial_path = checkpoint_path(checkpoint_dir, 0)
    if run_dir.exists() and not run_dir.is_dir():
        raise _refused(FileExistsError(f"run_dir {run_dir} is a file; name a folder for the run (new, or empty)"))
    # config.yaml is written first: a folder with it but no resume state is a run killed before its first one.
    restarting = resuming and not (checkpoint_dir / RESUME_FILE).is_file()
    if restarting and not config_path.is_file():
        raise _refused(
            CheckpointError(
                f"cannot resume {run_dir}: it holds no run (neither {checkpoint_dir / RESUME_FILE} nor {config_path} "
                "exists); pass a run folder made by replay.train"
            )
        )
    if not resuming and (log_path.exists() or config_path.exists() or (checkpoint_dir / RESUME_FILE).exists()):
        raise _refused(
            FileExistsError(
                f"run_dir {run_dir} already holds a run; continue it with resume={run_dir} or use a new run_dir"
            )
        )
    torch.manual_seed(config.seed)
    num_updates = math.ceil(config.total_steps / p.batch_size)
    milestones = milestone_versions(num_updates, config.checkpoint.milestones)
    envs = make_vector_env(config.env, p.num_envs)
    version, global_step = 0, 0
    writer = None
    # Every check first (the checkpoint's game and shape, the log's lock and settings), and only then does the
    # run folder change: a resume refused for any reason leaves the run as it was, resumable as before.
    # The milestone to checkpoint and evaluate before training, as the episodes of its evaluation a kill cut short
    # (kept, not played again): a new run's version 0, or a resumed run's interrupted one; None if there is none.
    unevaluated: list[EpisodeRecord] | None = None if resuming else []
    held = None  # the finished episodes the log holds, which episodes.csv keeps to on resume
    config_written = False
    try:
        if wrap_envs is not None:
            envs = wrap_envs(envs)
        n_actions = int(envs.single_action_space.n)
        model = ActorCritic(n_actions)
        optimizer = torch.optim.Adam(model.parameters(), lr=p.learning_rate, eps=1e-5)
        if restarting and initial_path.is_file():
            _check_initial_weights(initial_path, model, config)
        elif resuming and not restarting:
            version, global_step = load_resume_state(checkpoint_dir, model, optimizer, env_id=config.env.id)
        if resuming:
            unevaluated = _evaluation_missing(config, log_path, version, milestones)
            if restarting and not initial_path.is_file():
                unevaluated = unevaluated or []
            if version >= num_updates and unevaluated is None:
                print(
                    f"{run_dir} has finished: {version} of {num_updates} updates (total_steps={config.total_steps}); "
                    "nothing to do. Raise total_steps to train it further."
                )
                envs.close()
                return run_dir
            held = _episodes_held(config, log_path, unevaluated or ())
        else:
            # Before the log: a kill from here on leaves a folder that resume= can continue.
            _save_config(config_path, config, new=True)
            config_written = True
        if config.record.enabled:
            from replay.recorder import RecordVectorTrajectory

            envs = RecordVectorTrajectory(
                envs,
                log_path,
                snapshot_interval=config.record.snapshot_interval,
                sync_interval=config.record.sync_interval,
                flush_seconds=config.record.flush_seconds,
                tag="train",
            )
            writer = envs.writer
    except BaseException as error:
        envs.close(terminate=True)
        if config_written and not log_path.exists():  # else it marks a run folder that resume= can continue
            config_path.unlink()
        if isinstance(error, Exception):
            error.add_note(REFUSED)
        raise
    try:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        if config.run_dir is None and not resuming:
            print(f"run folder: {run_dir}")
        if resuming:
            _forget_lost_updates(run_dir, version, global_step, held)
            _save_config(config_path, config, new=False)
        if writer is not None:
            config_key = f"train_config_v{version:06d}"
            writer.set_metadata(config_key, OmegaConf.to_container(OmegaConf.structured(config)))
        episodes = CsvTable(run_dir / "episodes.csv", EPISODE_FIELDS)
        updates = CsvTable(run_dir / "updates.csv", UPDATE_FIELDS)
    except BaseException:
        envs.close(terminate=True)
        raise
    tracker = EpisodeTracker(p.num_envs)
    bar = tqdm(total=num_updates * p.batch_size, initial=global_step, unit="step", disable=not config.progress)

    def checkpoint(milestone: float | None, played: Sequence[EpisodeRecord] = ()) -> None:
        ref = save_checkpoint(
            checkpoint_dir,
            model,
            policy_version=version,
            global_step=global_step,
            env_id=config.env.id,
            dtype=config.checkpoint.dtype,
            milestone=milestone,
        )
        if milestone is None or config.eval.episodes == 0 or (version == 0 and not config.eval.at_start):
            return
        for e in played:  # finished before a kill cut the evaluation short: kept, not played twice
            episodes.append(
                episode_row("eval", global_step, version, -1, e.total_reward, e.length, e.terminated, e.truncated)
            )
        for total, length, terminated, truncated in evaluate(config, ref, writer, first=len(played)):
            episodes.append(episode_row("eval", global_step, version, -1, total, length, terminated, truncated))
            bar.write(f"eval v{version}: return {total:g} in {length} steps")

    stopped = True
    try:
        if restarting:
            bar.write(f"{run_dir} stopped before its first resume state: training it from the start, as it began")
        elif resuming and unevaluated is not None:
            bar.write(f"finishing the evaluation of milestone v{version}: the run stopped during it")
        if unevaluated is not None:
            checkpoint(milestones[version], unevaluated)
        if not resuming or restarting:
            save_resume_state(checkpoint_dir, model, optimizer, policy_version=0, global_step=0, env_id=config.env.id)
        if version >= num_updates:  # only that evaluation was left: no training envs reset, no empty episodes
            return run_dir
        # A resumed run must not replay the first launch's starts: its reset seed derives from the version.
        reset_seed = (
            config.seed if version == 0 else int(np.random.SeedSequence([config.seed, version]).generate_state(1)[0])
        )
        obs, info = envs.reset(seed=reset_seed)
        next_obs = torch.from_numpy(obs)
        lives = np.asarray(info["lives"])
        next_done = torch.zeros(p.num_envs)
        autoreset = np.zeros(p.num_envs, dtype=bool)
        rollout = Rollout(p.num_steps, p.num_envs, tuple(envs.single_observation_space.shape))

        while version < num_updates:
            started = time.perf_counter()
            lr = p.learning_rate * (1.0 - version / num_updates if p.anneal_lr else 1.0)
            optimizer.param_groups[0]["lr"] = lr
            if writer is not None:
                envs.policy_version = version
            for t in range(p.num_steps):
                rollout.obs[t] = next_obs
                rollout.dones[t] = next_done
                rollout.valid[t] = torch.from_numpy(~autoreset)
                with torch.no_grad():
                    logits, value = model(next_obs)
                    logp_all = torch.log_softmax(logits, dim=-1)
                    action = torch.multinomial(logp_all.exp(), 1)
                rollout.actions[t] = action.squeeze(1)
                rollout.logprobs[t] = logp_all.gather(1, action).squeeze(1)
                rollout.values[t] = value
                obs, reward, terminated, truncated, info = envs.step(action.squeeze(1).numpy())
                stepped = ~autoreset
                ended = np.logical_or(terminated, truncated)
                lost = life_lost(lives, info) & stepped
                lives = np.asarray(info["lives"])
                rollout.rewards[t] = torch.from_numpy(np.sign(reward) if p.clip_reward else reward)
                next_obs = torch.from_numpy(obs)
                next_done = torch.from_numpy((ended | lost).astype(np.float32))
                autoreset = ended
                global_step += p.num_envs
                for lane, total, length, term, trunc in tracker.step(reward, terminated, truncated, stepped):
                    episodes.append(episode_row("train", global_step, version, lane, total, length, term, trunc))

            with torch.no_grad():
                _, next_value = model(next_obs)
            adv, returns = ppo.advantages(rollout, next_value, next_done, p.gamma, p.gae_lambda)
            stats = ppo.update(model, optimizer, rollout, adv, returns, p)
            version += 1
            steps_per_second = p.batch_size / (time.perf_counter() - started)
            # The update's row before its resume state: a kill between them leaves a row after the resume state,
            # which the resume prunes and writes again when it redoes the update. The other order lost the row of
            # the final update for good (the resume found the run finished).
            updates.append(
                {
                    "policy_version": version,
                    "global_step": global_step,
                    "learning_rate": lr,
                    **stats,
                    "steps_per_second": round(steps_per_second, 1),
                    "wall_time": round(time.time(), 3),
                }
            )
            if version % config.checkpoint.resume_every_updates == 0 or version == num_updates:
                save_resume_state(
                    checkpoint_dir,
                    model,
                    optimizer,
                    policy_version=version,
                    global_step=global_step,
                    env_id=config.env.id,
                )
            every = config.checkpoint.every_updates
            if version in milestones or (every > 0 and version % every == 0):
                checkpoint(milestones.get(version))
            bar.update(p.batch_size)
            recent = tracker.recent_mean  # NaN until an episode has finished
            bar.set_postfix(
                sps=f"{steps_per_second:.0f}", ret="-" if math.isnan(recent) else f"{recent:.1f}", v=version
            )
        stopped = False
    finally:
        bar.close()
        # Stopped by an error or Ctrl-C, async workers are terminated rather than asked to close: a reply of
        # theirs may still be on its way, and the close would meet it.
        envs.close(terminate=stopped)
        episodes.close()
        updates.close()
    return run_dir


def resume_config(run_dir: str | Path, overrides: Sequence[str] = ()) -> TrainConfig:
    """The stored config of a run with ``key=value`` overrides applied and ``resume`` set to the run."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"cannot resume {run_dir}: {path} does not exist; pass a run folder made by replay.train")
    merged = OmegaConf.merge(
        OmegaConf.structured(TrainConfig), OmegaConf.load(path), OmegaConf.from_dotlist(list(overrides))
    )
    merged.resume = str(run_dir)
    merged.run_dir = None
    return OmegaConf.to_object(merged)


def _hydra_dir(run_dir: str | None, resume: str | None, stamp: str) -> str:
    """Hydra's own files go into the run folder, unless it cannot hold them: a resume of something that is no
    run folder, or a ``run_dir`` that is a file. Then they go to ``outputs/`` and :func:`train` explains."""
    if resume is not None:
        usable = (Path(resume) / CONFIG_FILE).is_file()
        folder = resume
    else:
        usable = run_dir is not None and not Path(run_dir).is_file()
        folder = run_dir
    return f"{folder}/hydra/{stamp}" if usable else f"outputs/train/{stamp}"


ConfigStore.instance().store(name="train_schema", node=TrainConfig)
OmegaConf.register_new_resolver("replay_hydra_dir", _hydra_dir, replace=True)


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> None:
    try:
        if cfg.resume is not None:
            overrides = [o for o in HydraConfig.get().overrides.task if not o.startswith("resume=")]
            config = resume_config(cfg.resume, overrides)
        else:
            config = OmegaConf.to_object(cfg)
        train(config)
    except (ReplayError, ValueError, OSError, OmegaConfBaseException) as error:
        refused = REFUSED in getattr(error, "__notes__", ()) or "config" not in locals()
        if not refused:
            raise  # a fault during training keeps its traceback
        refuse(error)  # a setting or a run folder that cannot be used, explained by its message


if __name__ == "__main__":
    run_app(
        main, "python -m replay.train", interrupted="interrupted; a run that saved its config resumes: resume=<run_dir>"
    )
