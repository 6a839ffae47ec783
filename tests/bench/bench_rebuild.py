"""Exact rebuilds against the trainer: updates/s side by side, the resume-point trade-off, parallel segments.

A round, all in this process and on the real config (8 envs x 128 steps, ``--env-id``):

1. **Trainer.** Train ``--updates`` updates with ``--torch-threads`` threads, keeping a resume point after every
   update (a hard link of the resume state the trainer writes after every update anyway, so it costs the trainer
   nothing). Its seconds per update are the gaps between ``updates.csv``'s wall times, the first left out (warm-up).
2. **Rebuild.** Replay that learning from the seed to the last version, as ``checkpoint=exact`` does, twice: with the
   next rollout re-simulated in a thread while the learner runs (the shipped way) and without. Seconds per update
   are the gaps between updates, the first left out; the ratio is the trainer's seconds over the rebuild's.
3. **Worst rebuild per cadence.** With a resume point every ``C`` updates the slowest version to rebuild is ``C - 1``
   updates past a point. Each ``--cadences`` C is timed from a real resume point (loading it, opening the log,
   re-simulating up to the rollout, then the updates); a line ``start + (C - 1) x per_update`` fitted to them
   gives the ``--project`` cadences at full length.
4. **Bytes per 1M steps** at each cadence: the run folder's own files scaled to 1M steps (the log, the ledger,
   the CSVs per step; the checkpoints as a 1M-step run keeps them: version 0, ``checkpoint.milestones`` and the
   final one; ``resume.pt``) plus ``1M / batch // C`` resume points.
5. **Parallel segments** (``--parallel``): a run trained with 1 thread and a resume point halfway is rebuilt
   whole with 1 worker, then 2 (its two segments are independent processes).

    python tests/bench/bench_rebuild.py --updates 16 --cadences 2 4 8 16 --rounds 1 --json bench_rebuild.json
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # before tests/: tests/replay would shadow the package

import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from replay.run_folder import RunFolder  # noqa: E402
from replay.train import train  # noqa: E402
from replay.train.config import TrainConfig, register_configs  # noqa: E402
from replay.train.rebuild import Segment, rebuild_run, replay_segment  # noqa: E402

STEPS_1M = 1_000_000


def _config(args: argparse.Namespace, run: Path, threads: int, point_every: int) -> TrainConfig:
    register_configs()
    overrides = [
        f"env.id={args.env_id}",
        f"total_steps={args.updates * 8 * 128}",
        f"seed={args.seed}",
        f"torch_threads={threads}",
        f"checkpoint.resume_point_every={point_every}",
        "eval.episodes=0",
        "progress=false",
        f"run_dir={run}",
    ]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return OmegaConf.to_object(compose(config_name="train", overrides=overrides))


def _gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in zip(times, times[1:], strict=False)][1:]  # the first gap holds the warm-up


def train_run(args: argparse.Namespace, run: Path, threads: int, point_every: int) -> dict[str, float]:
    config = _config(args, run, threads, point_every)
    torch.set_num_threads(threads)
    started = time.perf_counter()
    train(config)
    wall = time.perf_counter() - started
    with (run / "updates.csv").open() as f:
        times = [float(row["wall_time"]) for row in csv.DictReader(f)]
    gaps = _gaps(times)
    return {"wall_seconds": wall, "seconds_per_update": statistics.median(gaps), "batch": config.ppo.batch_size}


def rebuild(run: Path, start: int, target: int, *, overlap: bool) -> dict[str, float]:
    """Replay versions ``start``..``target`` here; its wall time and the median seconds per update after the first."""
    shutil.rmtree(RunFolder(run).rebuilt, ignore_errors=True)
    stamps: list[float] = []
    started = time.perf_counter()
    stamps.append(started)
    replay_segment(
        run, Segment(start, (target,)), overlap=overlap, on_update=lambda _: stamps.append(time.perf_counter())
    )
    wall = time.perf_counter() - started
    gaps = [b - a for a, b in zip(stamps[1:], stamps[2:], strict=False)]
    return {"wall_seconds": wall, "seconds_per_update": statistics.median(gaps) if gaps else float("nan")}


def folder_bytes(run: Path, updates: int, batch: int, milestones: int) -> dict[str, float]:
    """The run folder's bytes by part, and what a 1M-step run of it holds without resume points."""
    folder = RunFolder(run)
    per_step = sum(p.stat().st_size for p in (folder.log, folder.ledger, run / "updates.csv", run / "episodes.csv"))
    per_step += sum(p.stat().st_size for p in (run / "tensorboard").rglob("*") if p.is_file())
    checkpoint = (folder.checkpoints / "v000000.pt").stat().st_size
    resume = (folder.checkpoints / "resume.pt").stat().st_size
    point = next(folder.resume_points.glob("v*.pt")).stat().st_size
    scale = STEPS_1M / (updates * batch)
    return {
        "per_step_files_bytes": per_step,
        "checkpoint_bytes": checkpoint,
        "resume_point_bytes": point,
        "base_bytes_per_1M": per_step * scale + (milestones + 1) * checkpoint + resume,
    }


def fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least squares ``seconds = start + (C - 1) * per_update`` over (C, seconds)."""
    xs, ys = [c - 1 for c, _ in points], [s for _, s in points]
    if len(set(xs)) < 2:
        return 0.0, ys[0] / max(xs[0], 1)
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
    return my - slope * mx, slope


def parallel(args: argparse.Namespace, root: Path) -> dict[str, float]:
    run = root / "parallel"
    half = max(1, args.updates // 2)
    train_run(args, run, threads=1, point_every=half)
    times = {}
    for workers in (1, 2):
        shutil.rmtree(RunFolder(run).rebuilt, ignore_errors=True)
        started = time.perf_counter()
        rebuild_run(run, workers=workers, progress=False)
        times[f"workers_{workers}_seconds"] = time.perf_counter() - started
    times["speedup"] = times["workers_1_seconds"] / times["workers_2_seconds"]
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=16, help="updates trained per round (x 1024 steps)")
    parser.add_argument("--cadences", type=int, nargs="+", default=[2, 4, 8, 16], help="measured, each <= --updates")
    parser.add_argument("--project", type=int, nargs="+", default=[100, 250, 500, 1000], help="cadences projected")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--env-id", default="ALE/Breakout-v5")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--torch-threads", type=int, default=2)
    parser.add_argument("--milestones", type=int, default=10, help="the trainer's checkpoint.milestones default")
    parser.add_argument("--parallel", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--json", type=Path, default=Path("bench_rebuild.json"))
    args = parser.parse_args()
    if max(args.cadences) > args.updates:
        parser.error(f"--cadences {max(args.cadences)} is more than --updates {args.updates}")

    rounds: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(args.rounds):
            root = Path(tmp) / f"round{index}"
            run = root / "run"
            trainer = train_run(args, run, threads=args.torch_threads, point_every=1)
            ahead = rebuild(run, 0, args.updates, overlap=True)
            inline = rebuild(run, 0, args.updates, overlap=False)
            worst = {
                c: rebuild(run, args.updates - c + 1, args.updates, overlap=True)["wall_seconds"] for c in args.cadences
            }
            row = {
                "trainer": trainer,
                "rebuild_overlapped": ahead,
                "rebuild_in_turn": inline,
                "ratio_overlapped": trainer["seconds_per_update"] / ahead["seconds_per_update"],
                "ratio_in_turn": trainer["seconds_per_update"] / inline["seconds_per_update"],
                "worst_seconds_by_cadence": worst,
                "bytes": folder_bytes(run, args.updates, trainer["batch"], args.milestones),
            }
            if args.parallel:
                row["parallel"] = parallel(args, root)
            rounds.append(row)
            shutil.rmtree(root, ignore_errors=True)

    print(f"{'round':>5} {'trainer s/update':>17} {'rebuild s/update':>17} {'ratio':>6} {'in turn':>8} {'ratio':>6}")
    for i, r in enumerate(rounds):
        print(
            f"{i:>5} {r['trainer']['seconds_per_update']:17.3f} {r['rebuild_overlapped']['seconds_per_update']:17.3f} "
            f"{r['ratio_overlapped']:6.2f} {r['rebuild_in_turn']['seconds_per_update']:8.3f} {r['ratio_in_turn']:6.2f}"
        )
    best = max(rounds, key=lambda r: r["ratio_overlapped"])
    measured = [(c, min(r["worst_seconds_by_cadence"][c] for r in rounds)) for c in args.cadences]
    start, per_update = fit(measured)
    sizes = best["bytes"]
    updates_1m = STEPS_1M // best["trainer"]["batch"]
    trade = []
    for cadence, seconds in [*measured, *((c, None) for c in args.project)]:
        points = updates_1m // cadence
        trade.append(
            {
                "cadence": cadence,
                "measured_worst_seconds": seconds,
                "fitted_worst_seconds": start + (cadence - 1) * per_update,
                "resume_points_per_1M": points,
                "MB_per_1M": (sizes["base_bytes_per_1M"] + points * sizes["resume_point_bytes"]) / 1e6,
            }
        )
    print(f"\nworst rebuild of one version = {start:.1f} s + (C - 1) x {per_update:.2f} s (fitted to the measured)")
    print(f"{'cadence C':>9} {'MB per 1M steps':>16} {'worst rebuild':>14} {'measured':>9}")
    for t in trade:
        found = "-" if t["measured_worst_seconds"] is None else f"{t['measured_worst_seconds']:.1f} s"
        print(f"{t['cadence']:>9} {t['MB_per_1M']:16.1f} {t['fitted_worst_seconds'] / 60:12.1f} min {found:>9}")
    if args.parallel:
        for i, r in enumerate(rounds):
            p = r["parallel"]
            print(
                f"\nparallel segments (round {i}, 1 thread each): 1 worker {p['workers_1_seconds']:.1f} s, "
                f"2 workers {p['workers_2_seconds']:.1f} s, speed-up {p['speedup']:.2f}x"
            )
    report = {
        "config": vars(args) | {"json": str(args.json)},
        "machine": {"python": platform.python_version(), "torch": torch.__version__},
        "rounds": rounds,
        "fit": {"start_seconds": start, "seconds_per_update": per_update},
        "trade_off": trade,
    }
    partial = args.json.with_name(args.json.name + ".partial")
    partial.write_text(json.dumps(report, indent=2))
    partial.replace(args.json)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
