"""Kill -9 the trainer at twenty moments spread over a run's life: the log opens and verifies, ``resume``
finishes the run without losing a recorded episode, and what each kill cost is counted."""

from __future__ import annotations

import csv
import math
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from helpers import FAST, start_train_cli

from replay import EpisodeRecord, TrajectoryLog, verify
from replay.run_folder import LOG as LOG_FILE
from replay.train import milestone_versions
from replay.train.checkpoints import RESUME_FILE, CheckpointIndex

TRIALS = 20
START_UP_KILLS = 4  # of the twenty, before the log exists: start-up is half a run this small, and the dullest
NUM_ENVS, NUM_STEPS, NUM_UPDATES, MILESTONES = 2, 32, 2, 2
BATCH = NUM_ENVS * NUM_STEPS
# Two updates with a checkpoint and an evaluation at versions 0, 1 and 2; 50-step training episodes and 100-step
# evaluations, so episodes end (and rows reach the log) all through the run. A run takes ~8 s on an idle core here,
# half of it Python, torch and Hydra starting up.
RUN = [
    *FAST,
    f"ppo.num_envs={NUM_ENVS}",
    f"ppo.num_steps={NUM_STEPS}",
    "ppo.num_minibatches=2",
    "ppo.update_epochs=2",
    f"checkpoint.milestones={MILESTONES}",
    "env.max_episode_frames=200",
    "eval.max_episode_frames=400",
    f"total_steps={NUM_UPDATES * BATCH}",
    "seed=11",
]
FLUSH_SECONDS = 0.2  # FAST's record.flush_seconds
# The recorder flushes every 0.2 s while stepping: a kill takes that much stepping at most, here 0.2 s at 640 env
# steps/s, twice the fastest the 2 envs step on an idle core of this machine (~330/s).
LOSS_BOUND = 128
TIMEOUT = 300


@dataclass(frozen=True)
class Kill:
    """What one kill left behind, read before anything else touches the run folder."""

    moment: float  # seconds after launch
    phase: str
    trained: int  # env steps the trainer had reported (episodes.csv, updates.csv): a lower bound
    logged: int  # training env steps in the log
    episodes_lost: int  # finished episodes in episodes.csv but not finished in the log
    recorded: tuple[EpisodeRecord, ...]  # listed with their rows
    recovered: tuple[tuple, ...]  # in flight at the kill: steps on disk, no row

    @property
    def steps_lost(self) -> int:
        return max(0, self.trained - self.logged)


def _finish(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    process = start_train_cli(cwd, *args)
    _, stderr = process.communicate(timeout=TIMEOUT)
    return subprocess.CompletedProcess(process.args, process.returncode, "", stderr)


def _timeline(run_dir: Path, cwd: Path) -> tuple[float, float]:
    """Seconds from launch until the log appears and until the run ends, for a run left alone."""
    process = start_train_cli(cwd, *RUN, f"run_dir={run_dir}")
    began = time.monotonic()
    log_appeared = _wait_for_log(run_dir, process) - began
    assert process.wait(timeout=TIMEOUT) == 0, process.stderr.read()
    return log_appeared, time.monotonic() - began


def _wait_for_log(run_dir: Path, process: subprocess.Popen) -> float:
    """The moment ``run_dir``'s log appeared (or the process ended)."""
    while not (run_dir / LOG_FILE).exists() and process.poll() is None:
        time.sleep(0.01)
    return time.monotonic()


def _spread(rng: np.random.Generator, low: float, high: float, n: int) -> list[float]:
    """One uniform draw in each of ``n`` equal parts of ``low..high``."""
    width = (high - low) / n
    return [low + (part + rng.uniform()) * width for part in range(n)]


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _in_flight_key(episode: EpisodeRecord) -> tuple:
    """An unfinished episode's identity: its index and NaN reward change once rows are appended after it."""
    return (episode.stream, episode.env_index, episode.tag, episode.start_step, episode.length, episode.policy_versions)


def _phase(run_dir: Path, killed: bool) -> str:
    if not killed:
        return "after exit"
    if not (run_dir / LOG_FILE).is_file():
        return "start-up"
    if not (run_dir / "checkpoints" / RESUME_FILE).is_file():
        return "before resume state"
    with TrajectoryLog(run_dir / LOG_FILE) as log:
        evaluated = {int(key.removeprefix("eval_v")) for key in log.metadata if key.startswith("eval_v")}
    version = len(_rows(run_dir / "updates.csv"))
    if version in milestone_versions(NUM_UPDATES, MILESTONES) and version not in evaluated:
        return "checkpoint/evaluation"
    return "training" if version < NUM_UPDATES else "finishing"


def _inspect(run_dir: Path, moment: float, killed: bool) -> Kill:
    phase = _phase(run_dir, killed)
    metrics = _rows(run_dir / "episodes.csv") + _rows(run_dir / "updates.csv")
    trained = max((int(row["global_step"]) for row in metrics), default=0)
    reported = Counter(row["kind"] for row in _rows(run_dir / "episodes.csv"))
    if not (run_dir / LOG_FILE).is_file():
        return Kill(moment, phase, trained, 0, sum(reported.values()), (), ())
    with TrajectoryLog(run_dir / LOG_FILE) as log:
        logged = sum((s.length - 1) * s.n_lanes for s in log.streams if s.tag == "train")
        finished = Counter(e.tag for e in log.episodes if e.finished)
        recorded = tuple(e for e in log.episodes if not math.isnan(e.total_reward))
        recovered = tuple(_in_flight_key(e) for e in log.episodes if math.isnan(e.total_reward))
    lost = sum(max(0, reported[kind] - finished[kind]) for kind in reported)
    return Kill(moment, phase, trained, logged, lost, recorded, recovered)


def _continue(run_dir: Path, cwd: Path) -> str | None:
    """Resume the run, or start it afresh in the same folder if the kill came before there was anything to
    resume; returns what went wrong, if anything."""
    resumed = _finish([f"resume={run_dir}"], cwd)
    if resumed.returncode == 0:
        return None
    if resumed.returncode != 2 or "error: cannot resume" not in resumed.stderr:
        return f"resume exited {resumed.returncode}: {resumed.stderr[-1500:]}"
    started = _finish([*RUN, f"run_dir={run_dir}"], cwd)
    if started.returncode != 0:
        return (
            f"neither resumes nor starts again: {resumed.stderr.strip().splitlines()[-1]} / then "
            f"{started.stderr.strip().splitlines()[-1] if started.stderr.strip() else started.returncode}"
        )
    return None


def _check_completed(run_dir: Path, kill: Kill) -> list[str]:
    problems = []
    log_path = run_dir / LOG_FILE
    report = verify(log_path, progress=False)
    if not report.ok:
        problems.append(f"after resume: {report}")
    with TrajectoryLog(log_path) as log:
        after = log.episodes
        evaluated = {key for key in log.metadata if key.startswith("eval_v")}
    if list(after[: len(kill.recorded)]) != list(kill.recorded):
        problems.append("an episode recorded before the kill changed or vanished in the resume")
    in_flight = Counter(_in_flight_key(e) for e in after if not e.finished)
    if Counter(kill.recovered) - in_flight:
        problems.append(f"episodes in flight at the kill vanished: {sorted(Counter(kill.recovered) - in_flight)}")
    versions = [int(row["policy_version"]) for row in _rows(run_dir / "updates.csv")]
    if versions != list(range(1, NUM_UPDATES + 1)):
        problems.append(f"updates.csv holds versions {versions}, expected 1..{NUM_UPDATES} once each")
    if CheckpointIndex(run_dir / "checkpoints").versions[-1] != NUM_UPDATES:
        problems.append("the final checkpoint is missing")
    wanted = {f"eval_v{v:06d}" for v in milestone_versions(NUM_UPDATES, MILESTONES)}
    if wanted - evaluated:
        problems.append(f"milestone evaluations missing: {sorted(wanted - evaluated)}")
    return problems


@pytest.mark.slow
def test_twenty_kills_of_training_lose_at_most_the_unflushed_tail_and_resume_completes(tmp_path: Path) -> None:
    began = time.monotonic()
    reference = tmp_path / "reference"
    log_appeared, typical = _timeline(reference, tmp_path)
    assert not _check_completed(reference, Kill(0.0, "", 0, 0, 0, (), ()))

    # Kill moments spread evenly over start-up (0.5 s after launch until the log appears) and over the rest of
    # the run (checkpoint saves, evaluations, rollouts, updates), one uniform draw per stretch, in shuffled order.
    # The later ones count from the moment the log appears in that trial: start-up time varies most on a busy
    # machine, and it would push kills meant for training into start-up.
    rng = np.random.default_rng(20260613)
    plan = [(False, delay) for delay in _spread(rng, 0.5, log_appeared, START_UP_KILLS)]
    plan += [(True, delay) for delay in _spread(rng, 0.0, typical - log_appeared, TRIALS - START_UP_KILLS)]
    kills: list[Kill] = []
    moments: list[float] = []
    phases: Counter[str] = Counter()
    problems: list[str] = []
    for trial, index in enumerate(rng.permutation(TRIALS)):
        after_log, delay = plan[index]
        run_dir = tmp_path / f"run-{trial}"
        process = start_train_cli(tmp_path, *RUN, f"run_dir={run_dir}")
        launched = time.monotonic()
        time.sleep(max(0.0, (_wait_for_log(run_dir, process) if after_log else launched) + delay - time.monotonic()))
        process.send_signal(signal.SIGKILL)  # a no-op if the run has already ended
        moments.append(time.monotonic() - launched)
        process.communicate()
        try:
            kill = _inspect(run_dir, moments[-1], killed=process.returncode == -signal.SIGKILL)
        except Exception as error:  # the log after a kill must open: a failure here is the finding
            phases["unreadable log"] += 1
            problems.append(f"trial {trial} (killed at {moments[-1]:.2f} s): {type(error).__name__}: {error}")
            continue
        kills.append(kill)
        phases[kill.phase] += 1
        where = f"trial {trial} (killed at {kill.moment:.2f} s, {kill.phase})"
        if (run_dir / LOG_FILE).is_file():
            report = verify(run_dir / LOG_FILE, progress=False)
            if not report.ok:
                problems.append(f"{where}: the killed run's log: {report}")
        failure = _continue(run_dir, tmp_path)
        if failure is not None:
            problems.append(f"{where}: {failure}")
            continue
        try:
            problems.extend(f"{where}: {problem}" for problem in _check_completed(run_dir, kill))
        except Exception as error:  # e.g. the log no longer opens: the finding, and the other trials still run
            problems.append(f"{where}: after resume: {type(error).__name__}: {error}")

    during = [kill.steps_lost for kill in kills if kill.trained > 0] or [0]
    print(
        f"\n{TRIALS} trials, kills at {min(moments):.1f}..{max(moments):.1f} s of a {typical:.1f} s run whose log "
        f"appeared at {log_appeared:.1f} s "
        f"({', '.join(f'{n} {phase}' for phase, n in sorted(phases.items()))}); env steps lost from the log per "
        f"kill during training: max {max(during)}, mean {np.mean(during):.1f} over {len(during)} "
        f"(bound {LOSS_BOUND}, flush every {FLUSH_SECONDS} s); finished episodes lost: "
        f"{sum(kill.episodes_lost for kill in kills)}; wall time {time.monotonic() - began:.0f} s"
    )
    assert not problems, "\n".join(problems)
    assert max(kill.steps_lost for kill in kills) <= LOSS_BOUND
    assert phases["start-up"] and phases["training"], "the kills should spread over the whole run"
