"""Benchmark of the trajectory log: size, recording overhead, re-simulation speed and seek latency.

Every figure is measured side by side in this process, on the same episodes:
  * bytes per env step of the log (the whole file) vs gymnasium's RecordVideo MP4 of the same episodes;
  * bytes/step against worst-case seek latency for several snapshot intervals;
  * recording overhead on env stepping vs no wrapper and vs RecordVideo (CPU time, interleaved rounds);
  * the recorder's own time per call by kind (quiet step, step with a check, episode end, reset) and per
    sticky-action snapshot's generator derivation;
  * re-simulation steps/s vs plain stepping of the same env;
  * worst-case seek latency to an arbitrary step at default settings.

Usage: python tests/bench/bench_log.py [--steps 100000] [--json bench_log.json]
(--steps sizes the log-vs-MP4 comparison; the other parts use fixed, smaller runs.)
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import ale_py
import gymnasium as gym
import numpy as np
from timing import cpu_seconds, timed

from replay import RecordTrajectory, TrajectoryLog, storage
from replay.recorder import default_snapshot_interval
from replay.wrappers import FireOnLifeLoss

gym.register_envs(ale_py)


def training_stack(game: str) -> gym.Env:
    """The trainer's env stack (frameskip 1 + AtariPreprocessing + fire on life loss + 4-frame stack)."""
    env = gym.make(f"ALE/{game}-v5", frameskip=1, repeat_action_probability=0.0, render_mode="rgb_array")
    env = gym.wrappers.AtariPreprocessing(env, noop_max=30, frame_skip=4, screen_size=84)
    return gym.wrappers.FrameStackObservation(FireOnLifeLoss(env), 4)


def v5_stack(game: str) -> gym.Env:
    return gym.make(f"ALE/{game}-v5", render_mode="rgb_array")


SCENARIOS: dict[str, tuple[Callable[[str], gym.Env], str, Callable[[np.random.Generator, int], int]]] = {
    # Random play: short episodes, the worst case for per-episode costs.
    "breakout-random": (training_stack, "Breakout", lambda rng, n: int(rng.integers(n))),
    # Long episodes of the length a trained agent plays (Pong games last thousands of steps).
    "pong-long": (training_stack, "Pong", lambda rng, n: int(rng.integers(n))),
    "breakout-v5-sticky": (v5_stack, "Breakout", lambda rng, n: int(rng.integers(n))),
}


def play(env: gym.Env, steps: int, choose: Callable, seed: int = 0) -> int:
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(choose(rng, env.action_space.n))
        if terminated or truncated:
            env.reset()
    return steps


def size_vs_mp4(name: str, steps: int, workdir: Path) -> dict:
    make, game, choose = SCENARIOS[name]
    log_path = workdir / f"{name}.h5"
    video_dir = workdir / f"{name}-video"
    env = gym.wrappers.RecordVideo(
        RecordTrajectory(make(game), log_path),
        str(video_dir),
        episode_trigger=lambda _: True,
        disable_logger=True,
    )
    play(env, steps, choose)
    env.close()
    mp4_bytes = sum(p.stat().st_size for p in video_dir.glob("*.mp4"))
    log_bytes = log_path.stat().st_size
    with TrajectoryLog(log_path) as log:
        episodes = len(log.episodes)
    return {
        "scenario": name,
        "steps": steps,
        "episodes": episodes,
        "log_bytes_per_step": log_bytes / steps,
        "mp4_bytes_per_step": mp4_bytes / steps,
        "mp4_over_log": mp4_bytes / log_bytes,
    }


def overhead(name: str, steps: int, workdir: Path, rounds: int = 9) -> dict:
    """Steps/s of the bare env, with RecordTrajectory, with RecordVideo, in interleaved rounds.

    Each round times ``steps`` steps of each variant in turn (building and closing the env outside the clock) in
    CPU time of this process and its children (RecordVideo's encoder), so another job sharing a core moves the
    figure less than wall time. The overhead is the median over rounds of the per-round ratio."""
    make, game, choose = SCENARIOS[name]
    variants = {
        "bare": lambda: make(game),
        "record_trajectory": lambda: RecordTrajectory(make(game), workdir / f"overhead-{time.time_ns()}.h5"),
        "record_video": lambda: gym.wrappers.RecordVideo(
            make(game),
            str(workdir / f"ov-video-{time.time_ns()}"),
            episode_trigger=lambda _: True,
            disable_logger=True,
        ),
    }
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    names = list(variants)
    for round_index in range(rounds):
        # Rotate the order: here whatever runs later in a round runs a few percent slower (measured: the same
        # env 0-10% slower when second), which a fixed order would charge to the later variants.
        shift = round_index % len(names)
        for key in names[shift:] + names[:shift]:
            env = variants[key]()
            gc.collect()
            start = cpu_seconds()
            play(env, steps, choose, seed=round_index)
            if key == "record_video":
                env.close()  # its videos are encoded when an episode ends or the env closes: part of its cost
            cpu[key].append(cpu_seconds() - start)
            env.close()  # a second close does nothing
    ratios = {k: statistics.median(a / b for a, b in zip(cpu[k], cpu["bare"], strict=True)) - 1 for k in variants}
    own = recorder_share(make(game), workdir / f"share-{name}.h5", steps * rounds // 3, choose)
    clock = timer_share(make(game), steps * rounds // 3, choose)
    return {
        "scenario": name,
        "steps": steps,
        "rounds": rounds,
        "steps_per_cpu_s": {k: steps / statistics.median(v) for k, v in cpu.items()},
        "record_trajectory_overhead": ratios["record_trajectory"],
        "record_video_overhead": ratios["record_video"],
        "recorder_own_share": own,
        "timer_share": clock,
        "recorder_own_share_net": own - clock,
    }


def recorder_share(env: gym.Env, path: Path, steps: int, choose: Callable) -> float:
    """Wall time inside RecordTrajectory's own code (its step and reset minus the env's) over the whole run.

    Timed from the inside, so unlike the side-by-side ratios it does not move with what else the machine does.
    It counts the timing itself (~1 us a step) against the recorder."""
    inner = {"step": 0.0, "reset": 0.0}
    outer = {"step": 0.0, "reset": 0.0}
    env.step, env.reset = timed(env.step, inner, "step"), timed(env.reset, inner, "reset")
    recorder = RecordTrajectory(env, path)
    recorder.step, recorder.reset = timed(recorder.step, outer, "step"), timed(recorder.reset, outer, "reset")
    start = time.perf_counter()
    play(recorder, steps, choose)
    total = time.perf_counter() - start
    recorder.close()
    return (outer["step"] - inner["step"] + outer["reset"] - inner["reset"]) / total


def timer_share(env: gym.Env, steps: int, choose: Callable) -> float:
    """What :func:`recorder_share` charges the recorder for its own clock: the same two timers around the same
    env's step and reset, with nothing between them, in the same loop (so with the same cold caches)."""
    inner = {"step": 0.0, "reset": 0.0}
    outer = {"step": 0.0, "reset": 0.0}
    step, reset = timed(env.step, inner, "step"), timed(env.reset, inner, "reset")
    env.step, env.reset = timed(step, outer, "step"), timed(reset, outer, "reset")
    start = time.perf_counter()
    play(env, steps, choose)
    total = time.perf_counter() - start
    env.close()
    return (outer["step"] - inner["step"] + outer["reset"] - inner["reset"]) / total


def step_kinds(name: str, steps: int, workdir: Path) -> dict:
    """The recorder's own time per call by kind, in us: a quiet step, a step with a sync or snapshot check, an
    episode's last step, a reset; and per snapshot, the sticky-action generator's derivation.

    Each call is timed around ``RecordTrajectory`` minus the env's own call inside it. The kind of a step is read
    from the recorder's plan (``_quiet_left``, private: this part follows the recorder's code)."""
    make, game, choose = SCENARIOS[name]
    env = make(game)
    inner: dict[str, float] = {}
    env.step, env.reset = timed(env.step, inner, "env"), timed(env.reset, inner, "env")
    recorder = RecordTrajectory(env, workdir / f"kinds-{name}.h5")
    stream = recorder._recording.stream
    derivations: list[float] = []
    derive = stream._derive_generator

    def timed_derive(*args: object) -> object:
        start = time.perf_counter()
        try:
            return derive(*args)
        finally:
            derivations.append(time.perf_counter() - start)

    stream._derive_generator = timed_derive
    samples: dict[str, list[float]] = {"quiet step": [], "check step": [], "episode end": [], "reset": []}

    def own(kind: str, call: Callable, *args: object, **kwargs: object) -> tuple:
        before, start = inner.get("env", 0.0), time.perf_counter()
        out = call(*args, **kwargs)
        samples[kind].append(time.perf_counter() - start - (inner["env"] - before))
        return out

    rng = np.random.default_rng(0)
    own("reset", recorder.reset, seed=0)
    for _ in range(steps):
        quiet = recorder._recording._quiet_left > 0
        kind = "quiet step" if quiet else "check step"
        _, _, terminated, truncated, _ = own(kind, recorder.step, choose(rng, env.action_space.n))
        if terminated or truncated:
            samples["episode end"].append(samples[kind].pop())
            own("reset", recorder.reset)
    recorder.close()
    kinds = {
        kind: {"calls": len(v), "median_us": statistics.median(v) * 1e6, "mean_us": statistics.fmean(v) * 1e6}
        for kind, v in samples.items()
    }
    snapshot = statistics.median(derivations) * 1e6 if derivations else None
    return {"scenario": name, "steps": steps, "kinds": kinds, "snapshot_derivation_us": snapshot}


def resim_speed(name: str, steps: int, workdir: Path, rounds: int = 4) -> dict:
    """Re-simulating the recorded episodes (frames and observations) vs stepping the same env with render, in CPU
    time, rounds in alternating order; the ratio is the median over rounds."""
    make, game, choose = SCENARIOS[name]
    log_path = workdir / f"resim-{name}.h5"
    env = RecordTrajectory(make(game), log_path)
    play(env, steps, choose)
    env.close()
    with TrajectoryLog(log_path) as log:
        actions = [[s.action for s in log.replay(e.index, frames=False, observations=False)][1:] for e in log.episodes]

    def plain() -> float:
        plain_env = make(game)
        gc.collect()
        start = cpu_seconds()
        plain_env.reset(seed=0)
        plain_env.unwrapped.render()
        for episode_actions in actions:
            for action in episode_actions:
                plain_env.step(action)
                plain_env.unwrapped.render()
            plain_env.reset()
            plain_env.unwrapped.render()
        seconds = cpu_seconds() - start
        plain_env.close()
        return seconds

    def resimulated() -> float:
        gc.collect()
        start = cpu_seconds()
        with TrajectoryLog(log_path) as log:  # opening the log and building the env are part of the cost
            for episode in log.episodes:
                for _ in log.replay(episode.index):
                    pass
        return cpu_seconds() - start

    times: dict[str, list[float]] = {"plain": [], "resim": []}
    for round_index in range(rounds):  # alternate the order: see overhead()
        for key in ("plain", "resim") if round_index % 2 == 0 else ("resim", "plain"):
            times[key].append(plain() if key == "plain" else resimulated())
    ratio = statistics.median(p / r for p, r in zip(times["plain"], times["resim"], strict=True))
    plain_seconds, resim_seconds = statistics.median(times["plain"]), statistics.median(times["resim"])
    return {
        "scenario": name,
        "steps": steps,
        "plain_steps_per_s": steps / plain_seconds,
        "resim_steps_per_s": steps / resim_seconds,
        "ratio": ratio,
    }


def seek_curve(name: str, workdir: Path, intervals: list[int | None], samples: int = 6) -> list[dict]:
    """Bytes/step and the worst seek (fresh reader, a step just before the next snapshot) per snapshot interval.

    ``None`` stands for the recorder's default interval."""
    make, game, choose = SCENARIOS[name]
    rows = []
    default = default_snapshot_interval(make(game).spec)
    steps = 3 * max(i or default for i in intervals) + 100  # every interval gets several snapshots to seek between
    for requested in intervals:
        interval = requested or default
        log_path = workdir / f"seek-{name}-{requested}.h5"
        options = {} if requested is None else {"snapshot_interval": requested}
        env = RecordTrajectory(make(game), log_path, **options)
        play(env, steps, choose)
        env.close()
        with TrajectoryLog(log_path) as log:
            episodes = log.episodes
        # The worst targets sit just before a snapshot position: the most steps to re-simulate.
        targets = []
        for position in range(interval - 1, steps, interval):
            for episode in episodes:
                if episode.start_step < position <= episode.start_step + episode.length:
                    targets.append((episode.index, position - episode.start_step))
        rng = np.random.default_rng(0)
        picked = [targets[i] for i in rng.choice(len(targets), size=min(samples, len(targets)), replace=False)]
        latencies = []
        for index, step in picked:
            start = time.perf_counter()
            with TrajectoryLog(log_path) as log:
                next(log.replay(index, step, step + 1))
            latencies.append(time.perf_counter() - start)
        rows.append(
            {
                "scenario": name,
                "snapshot_interval": interval,
                "default": requested is None,
                "bytes_per_step": log_path.stat().st_size / steps,
                "data_bytes_per_step": (log_path.stat().st_size - storage.wasted_bytes(log_path)) / steps,
                "seek_worst_s": max(latencies),
                "seek_median_s": statistics.median(latencies),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000, help="steps per scenario of the log-vs-MP4 comparison")
    parser.add_argument("--json", type=Path, default=Path("bench_log.json"))
    parser.add_argument("--parts", default="size,seek_curve,overhead,resim", help="comma-separated subset to run")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-log-"))
    try:
        parts = {
            "size": lambda: [size_vs_mp4(n, args.steps, workdir) for n in SCENARIOS],
            "seek_curve": lambda: [
                row
                for n in ("breakout-random", "breakout-v5-sticky")
                for row in seek_curve(n, workdir, [256, None, 4096])
            ],
            "overhead": lambda: [overhead(n, 3000, workdir) for n in ("breakout-random", "breakout-v5-sticky")],
            "step_kinds": lambda: [step_kinds(n, 30_000, workdir) for n in ("breakout-random", "breakout-v5-sticky")],
            "resim": lambda: [resim_speed(n, 10_000, workdir) for n in ("breakout-random", "breakout-v5-sticky")],
        }
        results = {name: run() for name, run in parts.items() if name in args.parts.split(",")}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if "size" in results:
        print("\nlog size vs RecordVideo MP4 (same episodes)")
        print(f"{'scenario':<20}{'steps':>8}{'episodes':>9}{'log B/step':>12}{'mp4 B/step':>12}{'mp4/log':>9}")
        for r in results["size"]:
            print(
                f"{r['scenario']:<20}{r['steps']:>8}{r['episodes']:>9}{r['log_bytes_per_step']:>12.2f}"
                f"{r['mp4_bytes_per_step']:>12.1f}{r['mp4_over_log']:>9.0f}x"
            )
    if "seek_curve" in results:
        print("\nsnapshot interval: bytes/step vs seek latency (fresh reader, worst of sampled worst-case targets)")
        print(f"{'scenario':<20}{'interval':>9}{'B/step':>9}{'data B/step':>12}{'worst s':>9}{'median s':>10}")
        for r in results["seek_curve"]:
            interval = f"{r['snapshot_interval']}{'*' if r['default'] else ''}"
            print(
                f"{r['scenario']:<20}{interval:>9}{r['bytes_per_step']:>9.2f}{r['data_bytes_per_step']:>12.2f}"
                f"{r['seek_worst_s']:>9.2f}"
                f"{r['seek_median_s']:>10.2f}"
            )
        print("(* the recorder's default interval; data B/step leaves out the file's fixed ~18 KB of metadata)")
    if "overhead" in results:
        print("\nrecording overhead on env stepping (CPU time, median of interleaved rounds)")
        print(
            f"{'scenario':<20}{'bare/s':>9}{'traj/s':>9}{'video/s':>9}{'traj ovh':>10}{'video ovh':>10}"
            f"{'recorder own':>14}{'its clock':>11}{'own, net':>10}"
        )
        for r in results["overhead"]:
            s = r["steps_per_cpu_s"]
            print(
                f"{r['scenario']:<20}{s['bare']:>9.0f}{s['record_trajectory']:>9.0f}{s['record_video']:>9.0f}"
                f"{r['record_trajectory_overhead']:>10.1%}{r['record_video_overhead']:>10.1%}"
                f"{r['recorder_own_share']:>14.2%}{r['timer_share']:>11.2%}{r['recorder_own_share_net']:>10.2%}"
            )
    if "step_kinds" in results:
        print("\nthe recorder's own time per call, us (median / mean), env's time excluded")
        kinds = list(results["step_kinds"][0]["kinds"])
        print(f"{'scenario':<20}" + "".join(f"{k:>20}" for k in kinds) + f"{'snapshot derive':>17}")
        for r in results["step_kinds"]:
            cells = "".join(
                format(f"{c['median_us']:.0f} / {c['mean_us']:.0f} (n={c['calls']})", ">20")
                for c in r["kinds"].values()
            )
            derive = r["snapshot_derivation_us"]
            print(f"{r['scenario']:<20}{cells}{'-' if derive is None else f'{derive:.0f}':>17}")
    if "resim" in results:
        print("\nre-simulation (frames + observations) vs plain stepping with render (CPU time, median of rounds)")
        print(f"{'scenario':<20}{'plain/s':>9}{'resim/s':>9}{'ratio':>8}")
        for r in results["resim"]:
            print(f"{r['scenario']:<20}{r['plain_steps_per_s']:>9.0f}{r['resim_steps_per_s']:>9.0f}{r['ratio']:>8.0%}")
    args.json.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
