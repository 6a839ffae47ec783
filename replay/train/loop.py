"""The training loop: PPO as CleanRL's ``ppo_atari``, every episode recorded, read top to bottom.

:func:`train` opens the run (a new folder, or a resumed one with every check made before anything changes),
then alternates rollouts and updates until ``total_steps``: collect ``num_steps`` steps of ``num_envs`` envs,
compute GAE advantages, run the clipped-surrogate update, write the update's metrics, save the resume state and
any due checkpoint (a milestone also plays its evaluation episodes). Each recorded step carries the policy
version that chose it (= the number of updates done).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from omegaconf import OmegaConf
from tqdm import tqdm

from replay.errors import CheckpointError
from replay.reader import EpisodeRecord
from replay.run_folder import RunFolder
from replay.show import RETURN_WINDOW
from replay.train import ledger, ppo
from replay.train.checkpoints import (
    checkpoint_path,
    load_resume_state,
    resume_point_path,
    save_checkpoint,
    save_resume_state,
)
from replay.train.config import TrainConfig, resolve_device, validate
from replay.train.envs import life_lost, make_vector_env
from replay.train.evaluation import evaluate, evaluation_missing, milestone_versions
from replay.train.metrics import (
    EPISODE_FIELDS,
    UPDATE_FIELDS,
    CsvTable,
    EpisodeTracker,
    Scalars,
    episode_row,
    recent_train_returns,
)
from replay.train.network import ActorCritic
from replay.train.randomness import ROLLOUT, SHUFFLE, update_generator
from replay.train.run import (
    REFUSED,
    check_initial_weights,
    episodes_held,
    forget_lost_updates,
    new_run_dir,
    refused,
    save_config,
)


@dataclass
class _Run:
    """An opened run: where it is, what trains, and how far it got."""

    folder: RunFolder
    envs: gym.vector.VectorEnv
    model: ActorCritic
    optimizer: torch.optim.Optimizer
    device: torch.device
    num_updates: int
    milestones: dict[int, float]
    version: int
    global_step: int
    resuming: bool
    restarting: bool  # resumed from the start: killed before its first resume state
    unevaluated: list[EpisodeRecord] | None  # the milestone to evaluate first, with the episodes already played
    writer: object | None
    stream: int | None  # the log stream this launch's training rollouts go to


def train(
    config: TrainConfig, *, wrap_envs: Callable[[gym.vector.VectorEnv], gym.vector.VectorEnv] | None = None
) -> Path:
    """Run (or resume) training as configured; returns the run folder.

    ``wrap_envs`` wraps the vector env before recording (benchmarks compare other recorders with it).
    An error raised before training starts, with the run folder unchanged, carries the note :data:`REFUSED`.
    Ctrl-C stops the run with its log whole; the ``KeyboardInterrupt`` carries a note naming the ``resume=`` path.
    """
    try:
        validate(config)
        device = resolve_device(config.device)
    except ValueError as error:
        error.add_note(REFUSED)
        raise
    torch.set_num_threads(config.torch_threads)
    started = time.perf_counter()
    run = _open_run(config, device, wrap_envs)
    if run is None:
        return Path(config.resume).absolute()  # finished already: nothing to do
    p = config.ppo
    folder = run.folder
    tracker = EpisodeTracker(p.num_envs, window=RETURN_WINDOW)
    try:
        tracker.remember(recent_train_returns(folder.episodes, RETURN_WINDOW))
        episodes = CsvTable(folder.episodes, EPISODE_FIELDS)
        updates = CsvTable(folder.updates, UPDATE_FIELDS)
        learning = ledger.LedgerWriter(folder.ledger)
        scalars = Scalars.open(folder.tensorboard)
    except BaseException:
        run.envs.close(terminate=True)
        raise
    bar = tqdm(total=run.num_updates * p.batch_size, initial=run.global_step, unit="step", disable=not config.progress)
    bar.set_postfix(_progress(math.nan, tracker, run.version))  # a resumed run's recent return shows at once
    if config.total_steps % p.batch_size:
        bar.write(
            f"note: total_steps={config.total_steps} is not a whole number of rollouts ({p.num_envs} envs x "
            f"{p.num_steps} steps = {p.batch_size}); training {run.num_updates} updates, "
            f"{run.num_updates * p.batch_size} steps"
        )

    def checkpoint(milestone: float | None, played: Sequence[EpisodeRecord] = ()) -> None:
        """Save the current version; at a milestone, also play (and record) its evaluation episodes."""
        ref = save_checkpoint(
            folder.checkpoints,
            run.model,
            policy_version=run.version,
            global_step=run.global_step,
            env_id=config.env.id,
            dtype=config.checkpoint.dtype,
            milestone=milestone,
        )
        if milestone is None or config.eval.episodes == 0 or (run.version == 0 and not config.eval.at_start):
            return
        for e in played:  # finished before a kill cut the evaluation short: kept, not played twice
            episodes.append(
                episode_row(
                    "eval", run.global_step, run.version, -1, e.total_reward, e.length, e.terminated, e.truncated
                )
            )
        for total, length, terminated, truncated in evaluate(config, ref, run.writer, first=len(played)):
            episodes.append(episode_row("eval", run.global_step, run.version, -1, total, length, terminated, truncated))
            bar.write(f"eval v{run.version}: return {total:g} in {length} steps")

    model, optimizer, envs = run.model, run.optimizer, run.envs

    def save_state(keep: bool) -> None:
        """Write ``resume.pt`` as of now; with ``keep``, also keep it as a resume point, recorded in the ledger."""
        point = resume_point_path(folder.resume_points, run.version)
        digest = save_resume_state(
            folder.checkpoints,
            model,
            optimizer,
            policy_version=run.version,
            global_step=run.global_step,
            env_id=config.env.id,
            keep_as=point if keep else None,
        )
        if keep:
            learning.resume_point(run.version, point.name, digest)

    stopped = True
    try:
        if run.restarting:
            bar.write(f"{folder.path} stopped before its first resume state: training it from the start, as it began")
        elif run.resuming and run.unevaluated is not None:
            bar.write(f"finishing the evaluation of milestone v{run.version}: the run stopped during it")
        if run.unevaluated is not None:
            checkpoint(run.milestones[run.version], run.unevaluated)
        if not run.resuming or run.restarting:
            save_resume_state(
                folder.checkpoints, model, optimizer, policy_version=0, global_step=0, env_id=config.env.id
            )
        elif run.version < run.num_updates and not resume_point_path(folder.resume_points, run.version).is_file():
            # What this launch learns differs from what a kill cut short: its rebuilds start from its own state.
            save_state(keep=True)
        if run.version >= run.num_updates:  # only that evaluation was left: no training envs reset, no empty episodes
            stopped = False
            return folder.path
        learning.session(
            from_version=run.version,
            stream=run.stream,
            seed=config.seed,
            ppo=p,
            threads=torch.get_num_threads(),
            device=device,
            weights=model,
        )
        # A resumed run must not replay the first launch's starts: its reset seed derives from the version.
        reset_seed = (
            config.seed
            if run.version == 0
            else int(np.random.SeedSequence([config.seed, run.version]).generate_state(1)[0])
        )
        if run.writer is not None:
            envs.policy_version = run.version
        obs, info = envs.reset(seed=reset_seed)
        next_obs = torch.from_numpy(obs).to(device)
        lives = np.asarray(info["lives"])
        next_done = torch.zeros(p.num_envs, device=device)
        autoreset = np.zeros(p.num_envs, dtype=bool)
        rollout = ppo.Rollout(p.num_steps, p.num_envs, tuple(envs.single_observation_space.shape), device=device)

        while run.version < run.num_updates:
            update_started = time.perf_counter()
            lr = p.learning_rate * (1.0 - run.version / run.num_updates if p.anneal_lr else 1.0)
            if run.writer is not None:
                envs.policy_version = run.version
            # Every draw derives from (seed, update): a rebuild replays this update without any recorded RNG state.
            sampling = update_generator(config.seed, run.version, ROLLOUT, device)

            # Rollout: num_steps steps of every env with the current policy. A lost life ends GAE bootstrapping
            # (next_done), never the episode; a sub-env's step after its episode ended is its autoreset.
            for t in range(p.num_steps):
                rollout.obs[t] = next_obs
                rollout.dones[t] = next_done
                rollout.valid[t] = torch.from_numpy(~autoreset)
                action, rollout.logprobs[t], rollout.values[t] = ppo.act(model, next_obs, sampling)
                rollout.actions[t] = action
                obs, reward, terminated, truncated, info = envs.step(action.cpu().numpy())
                stepped = ~autoreset
                ended = np.logical_or(terminated, truncated)
                lost = life_lost(lives, info) & stepped
                lives = np.asarray(info["lives"])
                rollout.rewards[t] = torch.from_numpy(np.sign(reward) if p.clip_reward else reward)
                next_obs = torch.from_numpy(obs).to(device)
                next_done = torch.from_numpy((ended | lost).astype(np.float32)).to(device)
                autoreset = ended
                run.global_step += p.num_envs
                for lane, total, length, term, trunc in tracker.step(reward, terminated, truncated, stepped):
                    episodes.append(
                        episode_row("train", run.global_step, run.version, lane, total, length, term, trunc)
                    )
                    scalars.episode(run.global_step, total, length)

            # Learning: GAE advantages, then clipped PPO epochs over minibatches.
            shuffling = update_generator(config.seed, run.version, SHUFFLE)
            stats = ppo.learn(model, optimizer, rollout, next_obs, next_done, p, lr, shuffling)
            run.version += 1
            steps_per_second = p.batch_size / (time.perf_counter() - update_started)

            # Bookkeeping. The update's row comes before its resume state: a kill between them leaves a row after
            # the resume state, which the resume prunes and writes again when it redoes the update. The other
            # order lost the row of the final update for good (the resume found the run finished).
            updates.append(
                {
                    "policy_version": run.version,
                    "global_step": run.global_step,
                    "learning_rate": lr,
                    **stats,
                    "steps_per_second": round(steps_per_second, 1),
                    "wall_time": round(time.time(), 3),
                }
            )
            scalars.update(run.global_step, lr, stats, steps_per_second)
            learning.update(run.version, lr, model)  # before the resume state, as the update's row
            point_every = config.checkpoint.resume_point_every
            keep = point_every > 0 and run.version % point_every == 0
            if keep or run.version % config.checkpoint.resume_every_updates == 0 or run.version == run.num_updates:
                save_state(keep=keep)
            every = config.checkpoint.every_updates
            if run.version in run.milestones or (every > 0 and run.version % every == 0):
                checkpoint(run.milestones.get(run.version))
            bar.update(p.batch_size)
            bar.set_postfix(_progress(steps_per_second, tracker, run.version))
        stopped = False
    except KeyboardInterrupt as interrupt:
        interrupt.add_note(f"the log is whole; continue the run with: python -m replay.train resume={folder.path}")
        raise
    finally:
        bar.close()
        # Stopped by an error or Ctrl-C, async workers are terminated rather than asked to close: a reply of
        # theirs may still be on its way, and the close would meet it.
        envs.close(terminate=stopped)
        episodes.close()
        updates.close()
        learning.close()
        scalars.close()
    print(_summary(folder.path, run.global_step, time.perf_counter() - started, tracker.mean_of_last(RETURN_WINDOW)))
    return folder.path


def _progress(steps_per_second: float, tracker: EpisodeTracker, version: int) -> dict[str, str]:
    """The progress bar's fields: steps/s, the mean return of the last 20 training episodes, the policy version."""
    recent = tracker.mean_of_last(20)  # NaN until an episode has finished
    speed = "-" if math.isnan(steps_per_second) else f"{steps_per_second:.0f}"
    return {"sps": speed, "ret": "-" if math.isnan(recent) else f"{recent:.1f}", "v": str(version)}


def _summary(run_dir: Path, global_step: int, seconds: float, mean_return: float) -> str:
    """The line a finished run ends with, and the command that renders it."""
    returns = "no finished episode" if math.isnan(mean_return) else f"mean return {mean_return:.1f}"
    minutes, secs = divmod(round(seconds), 60)
    return (
        f"trained {global_step:,} env steps in {minutes}m{secs:02d}s, {returns} (last {RETURN_WINDOW} training "
        f"episodes); run folder {run_dir}\n"
        f"render its best episode: python -m render run={run_dir} episode=best overlay=full"
    )


def _open_run(
    config: TrainConfig,
    device: torch.device,
    wrap_envs: Callable[[gym.vector.VectorEnv], gym.vector.VectorEnv] | None,
) -> _Run | None:
    """Open a new run or the one to resume; ``None`` when a resumed run has nothing left to do.

    Every check comes first (the checkpoint's game and shape, the log's lock and settings), and only then does
    the run folder change: a resume refused for any reason leaves the run as it was, resumable as before.
    """
    p = config.ppo
    resuming = config.resume is not None
    folder = RunFolder(Path(config.resume if resuming else (config.run_dir or new_run_dir(config))).absolute())
    initial_path = checkpoint_path(folder.checkpoints, 0)
    if folder.path.exists() and not folder.path.is_dir():
        raise refused(FileExistsError(f"run_dir {folder.path} is a file; name a folder for the run (new, or empty)"))
    # config.yaml is written first: a folder with it but no resume state is a run killed before its first one.
    restarting = resuming and not folder.resume_state.is_file()
    if restarting and not folder.config.is_file():
        raise refused(
            CheckpointError(
                f"cannot resume {folder.path}: it holds no run (neither {folder.resume_state} nor {folder.config} "
                "exists); pass a run folder made by replay.train"
            )
        )
    if not resuming and (folder.log.exists() or folder.config.exists() or folder.resume_state.exists()):
        raise refused(
            FileExistsError(
                f"run_dir {folder.path} already holds a run; continue it with resume={folder.path} or use a new run_dir"
            )
        )
    torch.manual_seed(config.seed)
    num_updates = math.ceil(config.total_steps / p.batch_size)
    milestones = milestone_versions(num_updates, config.checkpoint.milestones)
    envs = make_vector_env(config.env, p.num_envs)
    version, global_step = 0, 0
    writer = None
    unevaluated: list[EpisodeRecord] | None = None if resuming else []
    held = None  # the finished episodes the log holds, which episodes.csv keeps to on resume
    config_written = False
    try:
        if wrap_envs is not None:
            envs = wrap_envs(envs)
        model = ActorCritic(int(envs.single_action_space.n))
        if restarting and initial_path.is_file():
            check_initial_weights(initial_path, model, config)
        model.to(device)
        optimizer = ppo.make_optimizer(model, p)
        if resuming and not restarting:
            version, global_step = load_resume_state(folder.checkpoints, model, optimizer, env_id=config.env.id)
        if resuming:
            unevaluated = evaluation_missing(config, folder.log, version, milestones)
            if restarting and not initial_path.is_file():
                unevaluated = unevaluated or []
            if version >= num_updates and unevaluated is None:
                print(
                    f"{folder.path} has finished: {version} of {num_updates} updates "
                    f"(total_steps={config.total_steps}); "
                    "nothing to do. Raise total_steps to train it further."
                )
                envs.close()
                return None
            held = episodes_held(config, folder.log, unevaluated or ())
        else:
            # Before the log: a kill from here on leaves a folder that resume= can continue.
            save_config(folder.config, config, new=True)
            config_written = True
        if config.record.enabled:
            from replay.recorder import RecordVectorTrajectory

            envs = RecordVectorTrajectory(
                envs,
                folder.log,
                snapshot_interval=config.record.snapshot_interval,
                sync_interval=config.record.sync_interval,
                flush_seconds=config.record.flush_seconds,
                tag="train",
            )
            writer = envs.writer
    except BaseException as error:
        envs.close(terminate=True)
        if config_written and not folder.log.exists():  # else it marks a run folder that resume= can continue
            folder.config.unlink()
        if isinstance(error, Exception):
            error.add_note(REFUSED)
        raise
    try:
        folder.checkpoints.mkdir(parents=True, exist_ok=True)
        if config.run_dir is None and not resuming:
            print(f"run folder: {folder.path}")
        if resuming:
            forget_lost_updates(folder.path, version, global_step, held)
            save_config(folder.config, config, new=False)
        if writer is not None:
            recorded = OmegaConf.to_container(OmegaConf.structured(config))
            recorded["device"] = str(device)  # the device it trained on, not "auto"
            writer.set_metadata(f"train_config_v{version:06d}", recorded)
    except BaseException:
        envs.close(terminate=True)
        raise
    return _Run(
        folder=folder,
        envs=envs,
        model=model,
        optimizer=optimizer,
        device=device,
        num_updates=num_updates,
        milestones=milestones,
        version=version,
        global_step=global_step,
        resuming=resuming,
        restarting=restarting,
        unevaluated=unevaluated,
        writer=writer,
        stream=None if writer is None else envs.stream_index,
    )
