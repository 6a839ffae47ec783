"""Wrappers that ale-replay provides for recorded env stacks.

Each records its constructor arguments, so the ``EnvSpec`` stored in a log rebuilds it, and each only computes,
so :mod:`replay.rebuild` may build it from a log.
"""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym

ObsType = Any
ActType = Any


class FireOnLifeLoss(gym.Wrapper[ObsType, ActType, ObsType, ActType], gym.utils.RecordConstructorArgs):
    """Press FIRE after reset and after each lost life, in games whose action set has FIRE.

    Many games (Breakout, for one) wait for FIRE before serving; an agent that never learned to press it
    stalls until the frame limit. The FIRE step's reward is kept: a FIRE after a life loss adds its reward to
    that step, and the FIRE after reset carries its reward into the first step, so an episode's return is the
    game score.
    ``info["lives"]`` is the life counter after the whole step. In games without FIRE the wrapper passes
    everything through unchanged, so one stack fits every game.

    Example:
        >>> import gymnasium as gym
        >>> from gymnasium.wrappers import AtariPreprocessing
        >>> from replay.wrappers import FireOnLifeLoss
        >>> env = gym.make("ALE/Breakout-v5", frameskip=1)
        >>> env = FireOnLifeLoss(AtariPreprocessing(env, frame_skip=4))
        >>> obs, info = env.reset(seed=0)
        >>> info["lives"]
        5
        >>> [w.entry_point for w in env.spec.additional_wrappers][-1]
        'replay.wrappers:FireOnLifeLoss'
    """

    def __init__(self, env: gym.Env[ObsType, ActType]) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        unwrapped = env.unwrapped
        if not hasattr(unwrapped, "get_action_meanings") or not hasattr(unwrapped, "ale"):
            raise ValueError(f"FireOnLifeLoss needs an ALE environment, got {unwrapped!r}")
        meanings = unwrapped.get_action_meanings()
        self.fire_action: int | None = meanings.index("FIRE") if "FIRE" in meanings else None
        self._lives = 0
        self._carried_reward = 0.0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[ObsType, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._carried_reward = 0.0
        if self.fire_action is not None:
            obs, reward, terminated, truncated, info = self.env.step(self.fire_action)
            if terminated or truncated:
                obs, info = self.env.reset()
            else:
                self._carried_reward = float(reward)
        self._lives = self._lives_in(info)
        info["lives"] = self._lives
        return obs, info

    def step(self, action: ActType) -> tuple[ObsType, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        total = float(reward) + self._carried_reward
        self._carried_reward = 0.0
        lives = self._lives_in(info)
        if self.fire_action is not None and lives < self._lives and not (terminated or truncated):
            obs, reward, terminated, truncated, info = self.env.step(self.fire_action)
            total += float(reward)
            lives = self._lives_in(info)
        self._lives = lives
        info["lives"] = lives
        return obs, total, terminated, truncated, info

    def resync_after_restore(self) -> None:
        """Called by the replayer after it restores an emulator snapshot: re-read what this wrapper tracks."""
        self._lives = int(self.env.unwrapped.ale.lives())
        self._carried_reward = 0.0

    def _lives_in(self, info: dict[str, Any]) -> int:
        return int(info["lives"]) if "lives" in info else int(self.env.unwrapped.ale.lives())
