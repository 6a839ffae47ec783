"""``python -m replay.show RUN_OR_LOG``: what a run (or any trajectory log) holds, at a glance or episode by episode.

The summary: game and env id, env steps, episodes (finished and unfinished, train and eval), the mean return of
the last 100 finished training episodes, the best episode, the checkpoints and the folder's size by part.
``--episodes`` adds a table of episodes, ``--json`` prints both as one JSON object (strict JSON: an unknown
reward is ``null``, never NaN).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from replay.errors import ReplayError
from replay.reader import TAG_FILTERS, EpisodeRecord, TrajectoryLog
from replay.run_folder import RunFolder

RETURN_WINDOW = 100  # a run's mean return: of its last 100 finished training episodes, as RL papers report
SORTS = ("index", "step", "return", "length")


@dataclass(frozen=True)
class RunSummary:
    """What :func:`summarise` finds in a run folder or a log."""

    path: Path
    log: Path
    game: str
    env_id: str
    env_steps: int
    episodes: dict[str, dict[str, int]]  # tag -> {"finished": n, "unfinished": n}
    mean_return_last_100: float | None
    best_episode: dict[str, Any] | None  # {"index": i, "total_reward": r}
    checkpoints: list[int]
    size_bytes: dict[str, int]

    def as_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "log": str(self.log),
            "game": self.game,
            "env_id": self.env_id,
            "env_steps": self.env_steps,
            "episodes": self.episodes,
            "mean_return_last_100": self.mean_return_last_100,
            "best_episode": self.best_episode,
            "checkpoints": self.checkpoints,
            "size_bytes": self.size_bytes,
        }


def episode_json(e: EpisodeRecord) -> dict[str, Any]:
    """An episode as ``--json`` and the viewer's API give it: ``replay.TrajectoryLog(...).episodes``' fields, the
    reward ``None`` where it is unknown (an episode its writer was killed in), versions as ``[first, last]``."""
    return {
        "index": e.index,
        "tag": e.tag,
        "env_index": e.env_index,
        "start_step": e.start_step,
        "length": e.length,
        "total_reward": _number(e.total_reward),
        "policy_versions": [e.policy_versions[0], e.policy_versions[-1]] if e.policy_versions else [],
        "finished": e.finished,
        "ended_by": e.ended_by,
    }


def summarise(path: str | Path, log: TrajectoryLog) -> RunSummary:
    """The summary of a run folder or a log file ``path``, whose log ``log`` is open."""
    path = Path(path)
    log_path = log.path
    records, game, env_id = log.episodes, log.game, log.env_id
    tags = ["train", "eval", *sorted({e.tag for e in records} - {"train", "eval"})]
    counts = {tag: {"finished": 0, "unfinished": 0} for tag in tags}
    for e in records:
        counts[e.tag]["finished" if e.finished else "unfinished"] += 1
    trained = [e for e in records if e.tag == "train"]
    # In the order they ended: streams are made in order (a resumed run records into a new one), positions count
    # within a stream.
    finished = sorted((e for e in trained if e.finished), key=lambda e: (e.stream, e.start_step + e.length, e.index))
    recent = [e.total_reward for e in finished[-RETURN_WINDOW:]]
    best = max(
        (e for e in records if e.finished and not math.isnan(e.total_reward)),
        key=lambda e: (e.total_reward, -e.index),
        default=None,
    )
    folder = RunFolder(path) if path.is_dir() else None
    return RunSummary(
        path=path,
        log=log_path,
        game=game,
        env_id=env_id,
        env_steps=sum(e.length for e in trained),
        episodes=counts,
        mean_return_last_100=round(sum(recent) / len(recent), 3) if recent else None,
        best_episode=None if best is None else {"index": best.index, "total_reward": best.total_reward},
        checkpoints=folder.checkpoint_versions() if folder else [],
        size_bytes=_sizes(path, log_path),
    )


def select(
    episodes: Sequence[EpisodeRecord], *, sort: str = "index", tag: str = "any", limit: int | None = None
) -> list[EpisodeRecord]:
    """Episodes of ``tag`` ordered by ``sort`` (``return`` and ``length`` highest first, ``index`` and ``step``
    in order), the first ``limit`` of them. An unknown return sorts last."""
    chosen = [e for e in episodes if tag == "any" or e.tag == tag]
    keys = {
        "index": lambda e: e.index,
        "step": lambda e: (e.start_step, e.index),
        "return": lambda e: (
            math.isnan(e.total_reward),
            -e.total_reward if not math.isnan(e.total_reward) else 0,
            e.index,
        ),
        "length": lambda e: (-e.length, e.index),
    }
    chosen.sort(key=keys[sort])
    return chosen if limit is None else chosen[:limit]


def _number(value: float) -> float | None:
    return None if math.isnan(value) or math.isinf(value) else value


def _sizes(path: Path, log_path: Path) -> dict[str, int]:
    """Bytes on disk by part: the log, the checkpoints, the metric tables and whatever else the folder holds."""
    if not path.is_dir():
        return {"log": log_path.stat().st_size, "total": log_path.stat().st_size}
    folder = RunFolder(path)
    parts = {"log": 0, "checkpoints": 0, "metrics": 0, "other": 0}
    metrics = {folder.episodes, folder.updates, folder.config}
    for file in path.rglob("*"):
        if not file.is_file() or file.is_symlink():
            continue
        size = file.stat().st_size
        if file == folder.log:
            parts["log"] += size
        elif folder.checkpoints in file.parents:
            parts["checkpoints"] += size
        elif file in metrics or folder.tensorboard in file.parents:
            parts["metrics"] += size
        else:
            parts["other"] += size
    parts["total"] = sum(parts.values())
    return parts


def _megabytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} KB"


def format_summary(s: RunSummary) -> str:
    lines = [f"{s.path}", f"  game            {s.game} ({s.env_id})", f"  env steps       {s.env_steps:,} (training)"]
    for tag, n in s.episodes.items():
        lines.append(f"  {tag + ' episodes':<16}{n['finished']:,} finished, {n['unfinished']:,} unfinished")
    mean = "-" if s.mean_return_last_100 is None else f"{s.mean_return_last_100:g}"
    lines.append(f"  mean return     {mean} (last {RETURN_WINDOW} finished training episodes)")
    if s.best_episode is not None:
        lines.append(f"  best episode    {s.best_episode['index']} (return {s.best_episode['total_reward']:g})")
    if s.checkpoints:
        lines.append(f"  checkpoints     {len(s.checkpoints)}: versions {', '.join(map(str, s.checkpoints))}")
    lines.append("  size            " + ", ".join(f"{part} {_megabytes(n)}" for part, n in s.size_bytes.items()))
    return "\n".join(lines)


def format_episodes(episodes: Sequence[EpisodeRecord]) -> str:
    header = (
        f"{'index':>6} {'tag':<5} {'env':>3} {'start step':>10} {'length':>7} {'return':>8} {'versions':>11}  ended by"
    )
    rows = [header]
    for e in episodes:
        reward = "?" if math.isnan(e.total_reward) else f"{e.total_reward:g}"
        versions = f"{e.policy_versions[0]}-{e.policy_versions[-1]}" if e.policy_versions else "-"
        rows.append(
            f"{e.index:>6} {e.tag:<5} {e.env_index:>3} {e.start_step:>10} {e.length:>7} {reward:>8} {versions:>11}  "
            f"{e.ended_by}"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m replay.show", description=__doc__.splitlines()[0].split(": ", 1)[1]
    )
    parser.add_argument("path", type=Path, help="a run folder (data/runs/...) or a trajectory log (.h5)")
    parser.add_argument("--episodes", action="store_true", help="add a table of the episodes")
    parser.add_argument("--sort", choices=SORTS, default="index", help="order of the episodes (default: index)")
    parser.add_argument("--tag", choices=TAG_FILTERS, default="any", help="only these episodes (default: any)")
    parser.add_argument("--limit", type=_count, default=None, help="at most this many episodes (default: all)")
    parser.add_argument("--json", action="store_true", help='one JSON object: {"summary": ..., "episodes": [...]}')
    args = parser.parse_args(argv)
    try:
        if not args.path.exists():
            raise FileNotFoundError(f"{args.path}: no such run folder or log; check the path")
        if args.path.is_dir() and not RunFolder(args.path).log.is_file():
            raise FileNotFoundError(
                f"{args.path}: a folder without {RunFolder(args.path).log.name}; pass a run folder or a log file"
            )
        log_path = RunFolder(args.path).log if args.path.is_dir() else args.path
        with TrajectoryLog(log_path) as log:
            records = list(log.episodes)
            summary = summarise(args.path, log)
    except (ReplayError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    chosen = select(records, sort=args.sort, tag=args.tag, limit=args.limit)
    if args.json:
        document = {"summary": summary.as_json(), "episodes": [episode_json(e) for e in chosen]}
        print(json.dumps(document, allow_nan=False))
    else:
        print(format_summary(summary))
        if args.episodes:
            print()
            print(format_episodes(chosen))
    return 0


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of episodes (0 or more), got {text!r}")
    return value


if __name__ == "__main__":
    sys.exit(main())
