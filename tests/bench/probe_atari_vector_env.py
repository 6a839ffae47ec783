"""What recording ale-py's native ``AtariVectorEnv`` would take: do single ``gym.make`` envs reproduce its lanes
from the same seeds and actions, and what does it cost against gymnasium's sync and async vector envs?

    python tests/bench/probe_atari_vector_env.py lanes --noop-max 0 --sticky 0.0
    python tests/bench/probe_atari_vector_env.py speed

``lanes`` steps N lanes of ``AtariVectorEnv("breakout")`` (NEXT_STEP autoreset, no FIRE reset, no reward
clipping) with random actions, then re-plays each lane in ``gym.make("ALE/Breakout-v5", frameskip=1)`` under
``AtariPreprocessing(frame_skip=4)`` and ``FrameStackObservation(4)`` from ``reset(seed=lane's seed)``, resetting
(unseeded) where the vector env autoreset, and counts what is equal. ``speed`` times the same stack both ways.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time

import ale_py
import gymnasium as gym
import numpy as np
from ale_py.vector_env import AtariVectorEnv

from replay import RecordVectorTrajectory

gym.register_envs(ale_py)


def _single(seed: int, actions: np.ndarray, sticky: float) -> dict[str, list]:
    env = gym.make("ALE/Breakout-v5", frameskip=1, repeat_action_probability=sticky)
    env = gym.wrappers.AtariPreprocessing(env, noop_max=0, frame_skip=4, screen_size=84)
    env = gym.wrappers.FrameStackObservation(env, 4)
    obs, _ = env.reset(seed=seed)
    out: dict[str, list] = {"obs": [np.asarray(obs)], "reward": [], "terminated": []}
    resetting = False
    for action in actions:
        if resetting:  # NEXT_STEP: the step after a game over resets the lane and ignores its action
            obs, _ = env.reset()
            reward, terminated, truncated = 0.0, False, False
        else:
            obs, reward, terminated, truncated, _ = env.step(int(action))
        out["obs"].append(np.asarray(obs))
        out["reward"].append(float(reward))
        out["terminated"].append(bool(terminated))
        resetting = terminated or truncated
    env.close()
    return out


def lanes(n: int, steps: int, seed: int, noop_max: int, sticky: float) -> None:
    vector = AtariVectorEnv(
        "breakout", n, noop_max=noop_max, repeat_action_probability=sticky, reward_clipping=False,
        use_fire_reset=False,
    )  # fmt: skip
    seeds = np.arange(seed, seed + n)
    obs, info = vector.reset(seed=seeds)
    print(f"episode_frame_number after the seeded reset, per lane: {info['episode_frame_number'].tolist()}")
    actions = np.random.default_rng(0).integers(vector.single_action_space.n, size=(steps, n))
    recorded = {"obs": [obs.copy()], "reward": [], "terminated": []}
    for step_actions in actions:
        obs, reward, terminated, _, _ = vector.step(step_actions)
        recorded["obs"].append(obs.copy())
        recorded["reward"].append(reward.copy())
        recorded["terminated"].append(terminated.copy())
    vector.close()
    for lane in range(n):
        single = _single(int(seeds[lane]), actions[:, lane], sticky)
        stacks = sum(np.array_equal(a, b[lane]) for a, b in zip(single["obs"], recorded["obs"], strict=True))
        newest = sum(np.array_equal(a[-1], b[lane][-1]) for a, b in zip(single["obs"], recorded["obs"], strict=True))
        rewards = sum(a == b[lane] for a, b in zip(single["reward"], recorded["reward"], strict=True))
        ends = sum(a == b[lane] for a, b in zip(single["terminated"], recorded["terminated"], strict=True))
        game_overs = sum(bool(t[lane]) for t in recorded["terminated"])
        print(
            f"lane {lane}: newest frame equal {newest}/{steps + 1}, whole stack {stacks}/{steps + 1}, rewards "
            f"{rewards}/{steps}, terminations {ends}/{steps}; {game_overs} game overs (autoresets)"
        )


def _thunk() -> gym.Env:
    env = gym.make("ALE/Breakout-v5", frameskip=1)
    env = gym.wrappers.AtariPreprocessing(env, noop_max=30, frame_skip=4, screen_size=84)
    return gym.wrappers.FrameStackObservation(env, 4)


def _time(name: str, envs: gym.vector.VectorEnv, n: int, steps: int) -> None:
    envs.reset(seed=np.arange(n) if isinstance(envs, AtariVectorEnv) else 0)
    actions = np.random.default_rng(0).integers(envs.single_action_space.n, size=(steps, n))
    wall, cpu = time.perf_counter(), time.process_time()  # all of this process's threads (the native env's)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    for step_actions in actions:
        envs.step(step_actions)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    envs.close()  # async workers exit here, and their CPU time joins RUSAGE_CHILDREN
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu += (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
    print(f"{name:<28} {n * steps / wall:6.0f} env steps/s, {1e6 * cpu / (n * steps):5.0f} us CPU per env step")


def speed(n: int, steps: int, rounds: int) -> None:
    folder = tempfile.mkdtemp()
    for r in range(rounds):
        _time("AtariVectorEnv (native)", AtariVectorEnv("breakout", n, repeat_action_probability=0.25), n, steps)
        _time("SyncVectorEnv", gym.vector.SyncVectorEnv([_thunk] * n), n, steps)
        _time("AsyncVectorEnv", gym.vector.AsyncVectorEnv([_thunk] * n), n, steps)
        sync = RecordVectorTrajectory(gym.vector.SyncVectorEnv([_thunk] * n), f"{folder}/sync{r}.h5")
        _time("SyncVectorEnv, recorded", sync, n, steps)
        asynchronous = RecordVectorTrajectory(gym.vector.AsyncVectorEnv([_thunk] * n), f"{folder}/async{r}.h5")
        _time("AsyncVectorEnv, recorded", asynchronous, n, steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["lanes", "speed"])
    parser.add_argument("--envs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--noop-max", type=int, default=0)
    parser.add_argument("--sticky", type=float, default=0.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if args.what == "lanes":
        lanes(args.envs, args.steps, args.seed, args.noop_max, args.sticky)
    else:
        speed(args.envs, args.steps, args.rounds)


if __name__ == "__main__":
    main()
