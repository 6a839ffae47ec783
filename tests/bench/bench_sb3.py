"""Recording overhead under Stable-Baselines3 PPO (``replay.sb3``), with DummyVecEnv and SubprocVecEnv, and the log's
bytes per env step.

Timed from the inside, in every process that records: each recorder's ``step``/``reset`` and the env calls it
wraps (the recorder's own time is the difference, less the timer's own cost), plus the main process's
collection of the workers' records (``RecordedVecEnv.collect``). SubprocVecEnv workers are forked, so the
timers patched here run in them too; each worker's totals come back through ``env_method``. The overhead is the
recorders' own time over the training's wall time: summed over every env (what a single core pays with
DummyVecEnv), and for SubprocVecEnv also the slowest worker's plus the main process's (what lengthens the run).

Usage: python tests/bench/bench_sb3.py [--steps 8192] [--envs 4] [--json bench_sb3.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecFrameStack
from timing import timed
from tqdm import tqdm

from replay import TrajectoryLog
from replay.run_folder import RunFolder
from replay.sb3 import RecordCallback, RecordedVecEnv, _SB3Recorder, make_atari_env

_TOTALS: dict[str, float] = {}  # this process's timers (each forked worker has its own copy)


def _instrument() -> None:
    """Time every recorder call (outer) and the env call inside it (inner), in this process and forked ones."""
    _SB3Recorder.step = timed(_SB3Recorder.step, _TOTALS, "outer")
    _SB3Recorder.reset = timed(_SB3Recorder.reset, _TOTALS, "outer")
    for cls in (gym.wrappers.OrderEnforcing,):
        cls.step = timed(cls.step, _TOTALS, "inner")
        cls.reset = timed(cls.reset, _TOTALS, "inner")
    RecordedVecEnv.collect = timed(RecordedVecEnv.collect, _TOTALS, "collect")
    _SB3Recorder.bench_totals = property(lambda self: dict(_TOTALS))


def _timer_cost(calls: int = 200_000) -> float:
    """Seconds one nested timed call adds (the outer timer around the inner one)."""
    totals: dict[str, float] = {}
    function = timed(timed(lambda: None, totals, "inner"), totals, "outer")
    start = time.perf_counter()
    for _ in range(calls):
        function()
    nested = (time.perf_counter() - start) / calls
    return max(nested - totals["inner"] / calls, 0.0)


def run(kind: str, steps: int, envs: int, workdir: Path) -> dict:
    _TOTALS.clear()
    run_dir = workdir / kind
    cls = DummyVecEnv if kind == "dummy" else SubprocVecEnv
    vec_kwargs = {} if kind == "dummy" else {"vec_env_kwargs": {"start_method": "fork"}}
    venv = make_atari_env("BreakoutNoFrameskip-v4", envs, run_dir=run_dir, seed=0, vec_env_cls=cls, **vec_kwargs)
    model = PPO("CnnPolicy", VecFrameStack(venv, 4), n_steps=128, batch_size=256, n_epochs=4, seed=0)
    start = time.perf_counter()
    model.learn(steps, callback=RecordCallback(run_dir, checkpoint_every=10**9))
    training = time.perf_counter() - start
    per_env = venv.env_method("get_wrapper_attr", "bench_totals")
    collect = _TOTALS.get("collect", 0.0)
    venv.close()
    with TrajectoryLog(RunFolder(run_dir).log) as log:
        positions = sum(s.length for s in log.streams)
    calls_cost = _timer_cost()
    calls = positions  # one timed outer call per recorded position
    own = [max(t.get("outer", 0.0) - t.get("inner", 0.0), 0.0) for t in per_env]
    if kind == "dummy":  # one process: each env's totals are the same shared dict
        own = [own[0]]
    own_total = max(sum(own) - calls * calls_cost, 0.0) + collect
    critical = max(own) - calls * calls_cost / len(own) + collect
    size = RunFolder(run_dir).log.stat().st_size
    return {
        "kind": kind,
        "envs": envs,
        "agent_steps": model.num_timesteps,
        "env_steps": positions,
        "training_seconds": training,
        "recorder_seconds": own_total,
        "overhead_percent": 100 * own_total / training,
        "critical_path_percent": 100 * max(critical, 0.0) / training,
        "log_bytes": size,
        "bytes_per_env_step": size / positions,
        "bytes_per_agent_step": size / model.num_timesteps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8192, help="PPO agent steps per run")
    parser.add_argument("--envs", type=int, default=4)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    _instrument()
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for kind in tqdm(("dummy", "subproc"), desc="bench_sb3", unit="run"):
            results.append(run(kind, args.steps, args.envs, Path(folder)))
    print(
        f"{'vec env':<8} {'agent steps':>11} {'env steps':>9} {'train s':>8} {'recorder s':>10} {'overhead':>9} "
        f"{'critical':>9} {'B/env step':>10} {'B/agent step':>12}"
    )
    for r in results:
        print(
            f"{r['kind']:<8} {r['agent_steps']:>11} {r['env_steps']:>9} {r['training_seconds']:>8.1f} "
            f"{r['recorder_seconds']:>10.3f} {r['overhead_percent']:>8.2f}% {r['critical_path_percent']:>8.2f}% "
            f"{r['bytes_per_env_step']:>10.2f} {r['bytes_per_agent_step']:>12.2f}"
        )
    if args.json:
        temporary = args.json.with_name(f".{args.json.name}.tmp")
        temporary.write_text(json.dumps(results, indent=2))
        temporary.replace(args.json)


if __name__ == "__main__":
    main()
