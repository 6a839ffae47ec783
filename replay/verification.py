"""Re-simulate every episode of a log and check it against what was recorded (CLI: ``replay/verify.py``)."""

from __future__ import annotations

import argparse
import math
import multiprocessing
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from replay.errors import DesyncError, ReplayError
from replay.reader import EpisodeRecord, TrajectoryLog
from replay.run_folder import RunFolder


@dataclass(frozen=True)
class EpisodeProblem:
    episode: int
    step: int | None  # where the episode first differs from the recording (0 = its reset), None if unknown
    message: str
    # The last step known to match (negative: before the episode began). Sync checks are sparse (every 64
    # positions by default), so a divergence found by one began in ``matched+1..step``.
    matched: int | None = None


@dataclass(frozen=True)
class VerifyReport:
    path: Path
    episodes: int
    steps: int
    problems: tuple[EpisodeProblem, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        lines = [f"{self.path}: {self.episodes} episodes, {self.steps} steps re-simulated"]
        if self.episodes == 0:
            lines.append("the log holds no episodes: nothing was checked")
        elif self.ok:
            lines.append("all episodes replay exactly")
        for problem in self.problems:
            where = "unknown step" if problem.step is None else f"step {problem.step}"
            if problem.step is not None and problem.matched is not None and problem.matched < problem.step - 1:
                where += f" (began after step {problem.matched}, the last that matched)"
            lines.append(f"episode {problem.episode}: diverges at {where}: {problem.message}")
        return "\n".join(lines)


def verify(
    path: str | Path, *, progress: bool = True, check_environment: bool = True, workers: int = 1
) -> VerifyReport:
    """Re-simulate every episode of ``path``: lengths, terminations, rewards and sync checks must all agree.

    ``workers`` > 1 splits the lanes (one env each) over that many processes.
    """
    if workers < 1:
        raise ValueError(f"expected a positive number of workers, got {workers!r}")
    with TrajectoryLog(path, check_environment=check_environment) as log:
        # Lane by lane, in time order: each lane's env is then reused from one episode to the next.
        lanes: dict[tuple[int, int], list[int]] = {}
        for episode in sorted(log.episodes, key=lambda e: (e.stream, e.env_index, e.start_step)):
            lanes.setdefault((episode.stream, episode.env_index), []).append(episode.index)
        total = sum(e.length + 1 for e in log.episodes)
        n_episodes = len(log.episodes)
        steps = {key: sum(log.episodes[i].length + 1 for i in indices) for key, indices in lanes.items()}
    shares = list(lanes.values())
    problems: list[EpisodeProblem] = []
    with tqdm(total=total, unit="step", desc="verify", disable=not progress) as bar:
        if workers == 1 or len(shares) == 1:
            for indices in shares:
                problems.extend(_check_lane(path, indices, check_environment, bar.update))
        else:
            context = multiprocessing.get_context("spawn")  # no h5py handles cross a fork
            with ProcessPoolExecutor(workers, mp_context=context) as pool:
                futures = {
                    pool.submit(_check_lane, path, indices, check_environment, None): key
                    for key, indices in lanes.items()
                }
                for future in as_completed(futures):
                    problems.extend(future.result())
                    bar.update(steps[futures[future]])
    return VerifyReport(Path(path), n_episodes, total, tuple(sorted(problems, key=lambda p: p.episode)))


def _check_lane(
    path: str | Path, indices: list[int], check_environment: bool, advance: Callable[[int], object] | None
) -> list[EpisodeProblem]:
    problems = []
    with TrajectoryLog(path, check_environment=check_environment) as log:
        for index in indices:
            problem = _check_episode(log, log.episodes[index], advance or (lambda n: None))
            if problem is not None:
                problems.append(problem)
    return problems


def _check_episode(
    log: TrajectoryLog, episode: EpisodeRecord, advance: Callable[[int], object]
) -> EpisodeProblem | None:
    total_reward = 0.0
    seen = 0
    try:
        for step in log.replay(episode.index, frames=False, observations=True):
            seen += 1
            advance(1)
            total_reward += step.reward
            ended = step.terminated or step.truncated
            if step.step < episode.length and ended:
                return EpisodeProblem(episode.index, step.step, "the game ended here, earlier than recorded")
            # A truncation the re-simulated stack does not make was the caller's: a reset() that ended the episode,
            # such as a TimeLimit around the recorder does (the recorder stores it as truncated).
            by_caller = episode.truncated and not episode.terminated and not ended
            if (
                step.step == episode.length
                and episode.finished
                and ((step.terminated, step.truncated) != (episode.terminated, episode.truncated))
                and not by_caller
            ):
                return EpisodeProblem(
                    episode.index,
                    step.step,
                    f"ended by terminated={step.terminated} truncated={step.truncated}, recorded "
                    f"terminated={episode.terminated} truncated={episode.truncated}",
                )
    except DesyncError as error:
        advance(episode.length + 1 - seen)
        step = None if error.step is None else error.step - episode.start_step
        matched = None if error.matched is None else error.matched - episode.start_step
        if step is not None and step < 0:  # replay started from an anchor before this episode, in a bad one
            return EpisodeProblem(
                episode.index,
                None,
                f"its lane diverged {-step} positions before it began, in an earlier episode (see that one): {error}",
            )
        return EpisodeProblem(episode.index, step, str(error), matched)
    if total_reward != episode.total_reward and not math.isnan(episode.total_reward):
        return EpisodeProblem(
            episode.index,
            None,
            f"total reward {total_reward:g} differs from the recorded {episode.total_reward:g}",
        )
    return None


def main(argv: list[str] | None = None) -> int:
    """``python -m replay.verify`` (``ale-replay-verify``): exit 0 if every episode replays exactly, 1 if any
    diverges, 2 if the log cannot be read."""
    parser = argparse.ArgumentParser(
        prog="python -m replay.verify",
        description="Re-simulate every episode of a trajectory log and check it against the recording.",
    )
    parser.add_argument("path", type=Path, help="a trajectory log (.h5), or a run folder (its trajectories.h5)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--workers", type=_positive, default=1, help="processes to split the lanes over")
    args = parser.parse_args(argv)
    path = RunFolder(args.path).log if args.path.is_dir() and RunFolder(args.path).log.is_file() else args.path
    try:
        report = verify(path, progress=not args.quiet, workers=args.workers)
    except ReplayError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(report)
    return 0 if report.ok else 1


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of processes, got {text!r}")
    return value
