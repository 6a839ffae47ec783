"""Recording overhead under Stable-Baselines3 PPO (``replay.sb3``), with DummyVecEnv and SubprocVecEnv, and under a
CleanRL-style PPO loop (``ppo_atari.py``'s, on a gymnasium ``SyncVectorEnv`` recorded with
``RecordVectorTrajectory``), and the log's bytes per env step.

Timed from the inside, in every process that records: each recorder's ``step``/``reset`` and the env calls it
wraps (the recorder's own time is the difference, less the timer's own cost), plus the main process's
collection of the workers' records (``RecordedVecEnv.collect``). SubprocVecEnv workers are forked, so the
timers patched here run in them too; each worker's totals come back through ``env_method``. The overhead is the
recorders' own time over the training's wall time: summed over every env (what a single core pays with
DummyVecEnv), and for SubprocVecEnv also the slowest worker's plus the main process's (what lengthens the run).
The CleanRL row times ``RecordVectorTrajectory.step``/``reset`` and the ``SyncVectorEnv`` calls they wrap the same
way. Its recorder sits above ``AtariPreprocessing`` (the docs' ``make_env``): a recorded step there is an agent
step of 4 frames, where SB3's recorder sits on the base env and records every frame; compare bytes per agent step.

Usage: python tests/bench/bench_sb3.py [--steps 8192] [--envs 4] [--json bench_sb3.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecFrameStack
from timing import timed
from torch import nn
from tqdm import tqdm

from replay import RecordVectorTrajectory, TrajectoryLog
from replay.run_folder import RunFolder
from replay.sb3 import RecordCallback, RecordedVecEnv, _SB3Recorder, make_atari_env
from replay.wrappers import FireOnLifeLoss

_TOTALS: dict[str, float] = {}  # this process's timers (each forked worker has its own copy)


def _instrument() -> None:
    """Time every recorder call (outer) and the env call inside it (inner), in this process and forked ones."""
    _SB3Recorder.step = timed(_SB3Recorder.step, _TOTALS, "outer")
    _SB3Recorder.reset = timed(_SB3Recorder.reset, _TOTALS, "outer")
    for cls in (gym.wrappers.OrderEnforcing,):
        cls.step = timed(cls.step, _TOTALS, "inner")
        cls.reset = timed(cls.reset, _TOTALS, "inner")
    RecordedVecEnv.collect = timed(RecordedVecEnv.collect, _TOTALS, "collect")
    for method in ("step", "reset"):
        setattr(RecordVectorTrajectory, method, timed(getattr(RecordVectorTrajectory, method), _TOTALS, "vector outer"))
        setattr(gym.vector.SyncVectorEnv, method, timed(getattr(gym.vector.SyncVectorEnv, method), _TOTALS, "vector"))
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


def make_env(env_id: str):
    """docs/vector-envs.md's ``make_env``: CleanRL's stack with the wrappers a log rebuilds."""

    def thunk() -> gym.Env:
        env = gym.make(env_id)
        env = gym.wrappers.RecordEpisodeStatistics(env)
        env = gym.wrappers.AtariPreprocessing(env, noop_max=30, frame_skip=4, screen_size=84)
        env = FireOnLifeLoss(env)
        env = gym.wrappers.ClipReward(env, -1.0, 1.0)
        return gym.wrappers.FrameStackObservation(env, 4)

    return thunk


class Agent(nn.Module):
    """CleanRL's ``ppo_atari.py`` agent: the Nature CNN, an actor and a critic head."""

    def __init__(self, n_actions: int) -> None:
        super().__init__()
        self.network = nn.Sequential(
            nn.Conv2d(4, 32, 8, stride=4), nn.ReLU(), nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(), nn.Flatten(), nn.Linear(64 * 7 * 7, 512), nn.ReLU(),
        )  # fmt: skip
        self.actor = nn.Linear(512, n_actions)
        self.critic = nn.Linear(512, 1)

    def act(self, x: torch.Tensor, action: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        hidden = self.network(x / 255.0)
        distribution = torch.distributions.Categorical(logits=self.actor(hidden))
        action = distribution.sample() if action is None else action
        return action, distribution.log_prob(action), distribution.entropy(), self.critic(hidden).squeeze(-1)


def train_cleanrl(run_dir: Path, steps: int, envs: int, num_steps: int = 128, epochs: int = 4, batch: int = 256) -> int:
    """``ppo_atari.py``'s loop (rollout, GAE, clipped PPO update; SB3's rows' sizes) with the recipe's lines;
    returns the agent steps taken."""
    torch.manual_seed(0)
    vector = RecordVectorTrajectory(  # + the recipe
        gym.vector.SyncVectorEnv([make_env("BreakoutNoFrameskip-v4") for _ in range(envs)]), RunFolder(run_dir).log
    )
    agent = Agent(int(vector.single_action_space.n))
    optimizer = torch.optim.Adam(agent.parameters(), lr=2.5e-4, eps=1e-5)
    observations = torch.zeros((num_steps, envs, 4, 84, 84))
    actions, log_probs, rewards, dones, values = (torch.zeros((num_steps, envs)) for _ in range(5))
    next_obs, next_done = torch.Tensor(vector.reset(seed=0)[0]), torch.zeros(envs)
    iterations = max(1, steps // (num_steps * envs))
    for iteration in range(1, iterations + 1):
        vector.policy_version = iteration - 1  # + the updates done so far
        for t in range(num_steps):
            observations[t], dones[t] = next_obs, next_done
            with torch.no_grad():
                action, log_probs[t], _, values[t] = agent.act(next_obs)
            actions[t] = action
            obs, reward, terminations, truncations, _ = vector.step(action.numpy())
            rewards[t] = torch.as_tensor(reward, dtype=torch.float32)
            next_obs, next_done = torch.Tensor(obs), torch.Tensor(np.logical_or(terminations, truncations))
        with torch.no_grad():
            following = agent.act(next_obs)[3]
            advantages, last = torch.zeros_like(rewards), torch.zeros(envs)
            for t in reversed(range(num_steps)):
                alive = 1.0 - (next_done if t == num_steps - 1 else dones[t + 1])
                after = following if t == num_steps - 1 else values[t + 1]
                delta = rewards[t] + 0.99 * after * alive - values[t]
                advantages[t] = last = delta + 0.99 * 0.95 * alive * last
            returns = advantages + values
        rollout = (observations, actions, log_probs, advantages, returns)
        flat = [x.reshape(num_steps * envs, *x.shape[2:]) for x in rollout]
        for _ in range(epochs):
            for chosen in torch.randperm(num_steps * envs).split(batch):
                obs_b, action_b, old_b, adv_b, ret_b = (x[chosen] for x in flat)
                _, new_log_prob, entropy, value = agent.act(obs_b, action_b.long())
                ratio = (new_log_prob - old_b).exp()
                adv_b = (adv_b - adv_b.mean()) / (adv_b.std() + 1e-8)
                policy_loss = torch.max(-adv_b * ratio, -adv_b * ratio.clamp(0.9, 1.1)).mean()
                loss = policy_loss + 0.5 * ((value - ret_b) ** 2).mean() - 0.01 * entropy.mean()
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), 0.5)
                optimizer.step()
    vector.close()
    return iterations * num_steps * envs


def run_cleanrl(steps: int, envs: int, workdir: Path) -> dict:
    _TOTALS.clear()
    run_dir = workdir / "cleanrl"
    start = time.perf_counter()
    agent_steps = train_cleanrl(run_dir, steps, envs)
    training = time.perf_counter() - start
    with TrajectoryLog(RunFolder(run_dir).log) as log:
        [stream] = log.streams
    positions = stream.length  # one timed outer call (a vector step or reset) per position
    own = max(_TOTALS.get("vector outer", 0.0) - _TOTALS.get("vector", 0.0) - positions * _timer_cost(), 0.0)
    size = RunFolder(run_dir).log.stat().st_size
    env_steps = positions * stream.n_lanes
    return {
        "kind": "cleanrl",
        "envs": envs,
        "agent_steps": agent_steps,
        "env_steps": env_steps,
        "training_seconds": training,
        "recorder_seconds": own,
        "overhead_percent": 100 * own / training,
        "critical_path_percent": 100 * own / training,  # one process
        "log_bytes": size,
        "bytes_per_env_step": size / env_steps,
        "bytes_per_agent_step": size / agent_steps,
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
        for kind in tqdm(("dummy", "subproc", "cleanrl"), desc="bench_sb3", unit="run"):
            if kind == "cleanrl":
                results.append(run_cleanrl(args.steps, args.envs, Path(folder)))
            else:
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
