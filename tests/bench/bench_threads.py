"""Training steps/s of ``python -m replay.train`` per ``torch_threads``, idle and with another process busy.

Each run is the real trainer in a subprocess, from scratch (``eval.episodes=0 progress=false``, the rest as
configured by default, recording included), in a temporary folder (``run_dir=``, so Hydra's files go there too).
Its rate is the harmonic mean of ``updates.csv``'s ``steps_per_second`` over the updates after the first
(warm-up); wall time, startup included, is given too. Conditions:

- ``idle``: nothing else started.
- ``spin``: a Python busy loop, one core of CPU-bound work.
- ``twin``: a second training run with the same settings, in its own folder, started first and measured from
  once it has finished an update: two runs launched with the same default on one machine. Its own rate over
  the measured run's updates is given too.

``torch_threads=0`` (torch's own choice) is not a setting: the trainer refuses values below 1, and torch would
pick the number of cores anyway (2 here). Within a round, each condition runs every thread count back to back,
the order rotating from round to round; the ratio to the first thread count is taken within the pair, and the
table gives medians over rounds with their spread.

This machine is shared: every run also measures the CPU the rest of the machine used meanwhile (``/proc/stat``
minus this bench, the run and its load process), in cores. A pair where it exceeds ``--max-foreign`` is marked
polluted, kept in the JSON, left out of the medians and run again (up to ``--retries`` times). Before each run the
bench waits (up to ``--settle-seconds``) until the machine is quiet.

    python tests/bench/bench_threads.py --rounds 3 --total-steps 4096 --json bench_threads.json
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from timing import cpu_seconds

REPO = Path(__file__).resolve().parents[2]  # the trainer measured is this checkout's
CONDITIONS = ("idle", "spin", "twin")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
TWIN_READY_SECONDS = 300
QUIET_SAMPLE_SECONDS = 3.0  # a 1 s gap between someone else's jobs is too short to measure in


@dataclass(frozen=True)
class Run:
    """One measured training run."""

    round: int
    attempt: int
    condition: str
    torch_threads: int
    steps_per_second: float  # updates 2.. of updates.csv
    update_rates: list[float]
    wall_seconds: float  # the whole subprocess, startup included
    cpu_cores: float  # CPU of the measured run / its wall time
    foreign_cores: float  # CPU of everything else on the machine (not this bench, the run or its load) / wall time
    twin_steps_per_second: float | None  # the twin's updates that ended within the measured run's updates 2..


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (steal included: another guest had our core)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def process_cpu_seconds(process: subprocess.Popen | None) -> float:
    """CPU seconds of a running process, all its threads and reaped children."""
    if process is None or process.poll() is not None:
        return 0.0
    fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / CLOCK_TICKS  # utime, stime, cutime, cstime


def trainer_command(run_dir: Path, threads: int, total_steps: int, args: argparse.Namespace) -> list[str]:
    return [
        sys.executable,
        "-m",
        "replay.train",
        f"env.id={args.env_id}",
        f"total_steps={total_steps}",
        f"seed={args.seed}",
        f"run_dir={run_dir}",
        "progress=false",
        "eval.episodes=0",
        f"torch_threads={threads}",
    ]


def read_updates(run_dir: Path) -> list[dict[str, str]]:
    path = run_dir / "updates.csv"
    if not path.is_file():
        return []
    with path.open() as f:
        return list(csv.DictReader(f))


@contextlib.contextmanager
def load(condition: str, threads: int, folder: Path, args: argparse.Namespace) -> Iterator[subprocess.Popen | None]:
    """The condition's other process, running (a twin: in steady training) until the block ends."""
    if condition == "idle":
        yield None
        return
    if condition == "spin":
        process = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    else:
        command = trainer_command(folder / "twin", threads, 10**9, args)
        with (folder / "twin.log").open("w") as log:  # the child writes to its own copy of the descriptor
            process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + TWIN_READY_SECONDS
        while condition == "twin" and not read_updates(folder / "twin"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the twin run did not start training:\n{(folder / 'twin.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_quiet(load_process: subprocess.Popen | None, max_foreign: float, settle_seconds: float) -> None:
    """Return once a sample shows under ``max_foreign`` cores busy outside this bench and its load."""
    deadline = time.monotonic() + settle_seconds
    while time.monotonic() < deadline:
        busy, own, other = machine_busy_seconds(), cpu_seconds(), process_cpu_seconds(load_process)
        time.sleep(QUIET_SAMPLE_SECONDS)
        foreign = machine_busy_seconds() - busy - (cpu_seconds() - own) - (process_cpu_seconds(load_process) - other)
        if foreign / QUIET_SAMPLE_SECONDS < max_foreign:
            return
    print(f"  the machine stayed busy for {settle_seconds:.0f} s; measuring anyway", flush=True)


def measure(round_: int, attempt: int, condition: str, threads: int, folder: Path, args: argparse.Namespace) -> Run:
    """Train once under ``condition`` with ``threads`` torch threads, in a fresh subfolder of ``folder``."""
    run_dir = folder / "run"
    with load(condition, threads, folder, args) as load_process:
        wait_quiet(load_process, args.max_foreign, args.settle_seconds)
        busy, own, other = machine_busy_seconds(), cpu_seconds(), process_cpu_seconds(load_process)
        started = time.perf_counter()
        done = subprocess.run(
            trainer_command(run_dir, threads, args.total_steps, args), cwd=REPO, capture_output=True, text=True
        )
        wall = time.perf_counter() - started
        run_cpu = cpu_seconds() - own
        foreign = machine_busy_seconds() - busy - run_cpu - (process_cpu_seconds(load_process) - other)
        twin_rows = read_updates(folder / "twin")
    if done.returncode:
        raise SystemExit(f"{' '.join(done.args)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    rows = read_updates(run_dir)
    if len(rows) < 2:
        raise SystemExit(f"{run_dir} trained {len(rows)} update(s); raise --total-steps for at least 2")
    rates = [float(r["steps_per_second"]) for r in rows[1:]]
    window = (float(rows[0]["wall_time"]), float(rows[-1]["wall_time"]))
    twin_rates = [float(r["steps_per_second"]) for r in twin_rows if window[0] <= float(r["wall_time"]) <= window[1]]
    return Run(
        round=round_,
        attempt=attempt,
        condition=condition,
        torch_threads=threads,
        steps_per_second=statistics.harmonic_mean(rates),
        update_rates=rates,
        wall_seconds=wall,
        cpu_cores=run_cpu / wall,
        foreign_cores=foreign / wall,
        twin_steps_per_second=statistics.harmonic_mean(twin_rates) if twin_rates else None,
    )


def measure_pair(round_: int, condition: str, tmp: Path, args: argparse.Namespace) -> list[Run]:
    """Every thread count under ``condition`` back to back, order rotated by round; again while polluted.
    Returns every attempt, the clean one (if any) last."""
    shift = round_ % len(args.threads)
    order = args.threads[shift:] + args.threads[:shift]
    attempts: list[Run] = []
    for attempt in range(args.retries + 1):
        pair = []
        for threads in order:
            folder = tmp / f"r{round_}-{condition}-t{threads}-a{attempt}"
            folder.mkdir()
            pair.append(measure(round_, attempt, condition, threads, folder, args))
            print(
                f"  round {round_} {condition:<5} torch_threads={threads}: {pair[-1].steps_per_second:6.1f} steps/s, "
                f"{pair[-1].wall_seconds:5.1f} s, other load {pair[-1].foreign_cores:.2f} cores",
                flush=True,
            )
        attempts += pair
        if all(r.foreign_cores <= args.max_foreign for r in pair):
            break
        print(f"  round {round_} {condition}: polluted, again", flush=True)
    return attempts


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def pair_key(run: Run) -> tuple[int, int, str]:
    return run.round, run.attempt, run.condition


def polluted_pairs(runs: list[Run], max_foreign: float) -> set[tuple[int, int, str]]:
    return {pair_key(r) for r in runs if r.foreign_cores > max_foreign}


def summarize(runs: list[Run], args: argparse.Namespace) -> list[dict[str, object]]:
    """Per condition and thread count, medians over clean pairs; ratios to the first thread count, within pairs."""
    polluted = polluted_pairs(runs, args.max_foreign)
    table = []
    for condition in args.conditions:
        pairs: dict[tuple[int, int, str], dict[int, Run]] = {}
        for r in runs:
            if r.condition == condition and pair_key(r) not in polluted:
                pairs.setdefault(pair_key(r), {})[r.torch_threads] = r
        for threads in args.threads:
            kept = [pair[threads] for pair in pairs.values()]
            if not kept:
                table.append({"condition": condition, "torch_threads": threads, "rounds": 0})
                continue
            ratios = [
                pair[threads].steps_per_second / pair[args.threads[0]].steps_per_second for pair in pairs.values()
            ]
            twins = [r.twin_steps_per_second for r in kept if r.twin_steps_per_second is not None]
            table.append(
                {
                    "condition": condition,
                    "torch_threads": threads,
                    "rounds": len(kept),
                    "steps_per_second": spread([r.steps_per_second for r in kept]),
                    "ratio": spread(ratios),
                    "wall_seconds": statistics.median(r.wall_seconds for r in kept),
                    "cpu_cores": statistics.median(r.cpu_cores for r in kept),
                    "foreign_cores": max(r.foreign_cores for r in kept),
                    "twin_steps_per_second": statistics.median(twins) if twins else None,
                }
            )
    return table


def print_table(table: list[dict[str, object]], first: int) -> None:
    print(
        f"{'condition':<9} {'threads':>7} {'rounds':>6} {'steps/s median (min-max)':>26} "
        f"{f'vs {first} thread(s) (min-max)':>26} {'wall s':>7} {'cores':>6} {'other':>6} {'twin steps/s':>12}"
    )
    for row in table:
        if not row["rounds"]:
            print(f"{row['condition']:<9} {row['torch_threads']:>7} {0:>6}  no clean round")
            continue
        s, q = row["steps_per_second"], row["ratio"]
        twin = "-" if row["twin_steps_per_second"] is None else f"{row['twin_steps_per_second']:.1f}"
        print(
            f"{row['condition']:<9} {row['torch_threads']:>7} {row['rounds']:>6} "
            f"{s['median']:>10.1f} ({s['min']:6.1f}-{s['max']:6.1f}) "
            f"{q['median']:>11.3f} ({q['min']:.3f}-{q['max']:.3f}) "
            f"{row['wall_seconds']:>7.1f} {row['cpu_cores']:>6.2f} {row['foreign_cores']:>6.2f} {twin:>12}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total-steps", type=int, default=4096, help="per run: 4 updates of 8 x 128 steps")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--conditions", nargs="+", choices=CONDITIONS, default=list(CONDITIONS))
    parser.add_argument("--env-id", default="ALE/Breakout-v5")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-foreign", type=float, default=0.15, help="cores used by others; more: polluted")
    parser.add_argument("--retries", type=int, default=2, help="reruns of a polluted pair")
    parser.add_argument("--settle-seconds", type=float, default=120.0)
    parser.add_argument("--json", type=Path, default=Path("bench_threads.json"))
    args = parser.parse_args()

    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="bench_threads-") as tmp:
        for round_ in range(args.rounds):
            shift = round_ % len(args.conditions)
            for condition in args.conditions[shift:] + args.conditions[:shift]:
                runs += measure_pair(round_, condition, Path(tmp), args)

    table = summarize(runs, args)
    polluted = polluted_pairs(runs, args.max_foreign)
    print_table(table, args.threads[0])
    args.json.write_text(
        json.dumps(
            {
                "config": vars(args) | {"json": str(args.json)},
                "machine": {
                    "python": platform.python_version(),
                    "torch": torch.__version__,
                    "cores": os.cpu_count(),
                    "torch_default_threads": torch.get_num_threads(),
                },
                "results": table,
                "runs": [asdict(r) | {"polluted": pair_key(r) in polluted} for r in runs],
            },
            indent=2,
        )
    )
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
