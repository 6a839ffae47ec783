"""Re-simulate every episode of a log and check it against what was recorded (CLI: ``replay/verify.py``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from replay.errors import DesyncError
from replay.reader import EpisodeRecord, TrajectoryLog


@dataclass(frozen=True)
class EpisodeProblem:
    episode: int
    step: int | None  # first divergent step of the episode (0 = its reset), None if unknown
    message: str


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
        if self.ok:
            lines.append("all episodes replay exactly")
        for problem in self.problems:
            where = "unknown step" if problem.step is None else f"step {problem.step}"
            lines.append(f"episode {problem.episode}: diverges at {where}: {problem.message}")
        return "\n".join(lines)


def verify(path: str | Path, *, progress: bool = True, check_environment: bool = True) -> VerifyReport:
    """Re-simulate every episode of ``path``: lengths, terminations, rewards and sync checks must all agree."""
    problems: list[EpisodeProblem] = []
    with TrajectoryLog(path, check_environment=check_environment) as log:
        # Lane by lane, in time order: each lane's env is then reused from one episode to the next.
        order = sorted(log.episodes, key=lambda e: (e.stream, e.env_index, e.start_step))
        total = sum(e.length + 1 for e in order)
        with tqdm(total=total, unit="step", desc="verify", disable=not progress) as bar:
            for episode in order:
                problem = _check_episode(log, episode, bar)
                if problem is not None:
                    problems.append(problem)
        return VerifyReport(Path(path), len(order), total, tuple(sorted(problems, key=lambda p: p.episode)))


def _check_episode(log: TrajectoryLog, episode: EpisodeRecord, bar: tqdm) -> EpisodeProblem | None:
    total_reward = 0.0
    seen = 0
    try:
        for step in log.replay(episode.index, frames=False, observations=True):
            seen += 1
            bar.update(1)
            total_reward += step.reward
            ended = step.terminated or step.truncated
            if step.step < episode.length and ended:
                return EpisodeProblem(episode.index, step.step, "the game ended here, earlier than recorded")
            if (
                step.step == episode.length
                and episode.finished
                and ((step.terminated, step.truncated) != (episode.terminated, episode.truncated))
            ):
                return EpisodeProblem(
                    episode.index,
                    step.step,
                    f"ended by terminated={step.terminated} truncated={step.truncated}, recorded "
                    f"terminated={episode.terminated} truncated={episode.truncated}",
                )
    except DesyncError as error:
        bar.update(episode.length + 1 - seen)
        step = None if error.step is None else error.step - episode.start_step
        return EpisodeProblem(episode.index, step, str(error))
    if total_reward != episode.total_reward and not math.isnan(episode.total_reward):
        return EpisodeProblem(
            episode.index,
            None,
            f"total reward {total_reward:g} differs from the recorded {episode.total_reward:g}",
        )
    return None
