"""The Atari environment stack the trainer plays, built only from wrappers that ``env.spec`` can rebuild.

Stack: ``gym.make("ALE/<Game>-v5", frameskip=1, ...)`` → ``AtariPreprocessing`` (no-op starts, frame skip 4,
84x84 grayscale) → :class:`replay.wrappers.FireOnLifeLoss` → ``FrameStackObservation(4)``. Every layer records
its constructor arguments, so the ``EnvSpec`` stored in a trajectory log re-creates the stack with ``gym.make(spec)``.
Episodes are whole games: losing a life never ends an episode here; the learner handles life loss itself.
"""

from __future__ import annotations

import difflib
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import ale_py
import gymnasium as gym
import numpy as np
from gymnasium.vector.async_vector_env import AsyncState
from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

from replay.wrappers import FireOnLifeLoss

gym.register_envs(ale_py)


@dataclass
class EnvConfig:
    """How each environment is built (Hydra group ``env``).

    Attributes:
        id: Gymnasium id of any ALE v5 game, e.g. ``ALE/Pong-v5``.
        repeat_action_probability: Sticky actions; 0.0 is the classic deterministic setting, v5 uses 0.25.
        noop_max: Up to this many no-ops after reset, drawn from the env's own seeded RNG.
        frame_skip: Emulator frames per agent step (max-pooled over the last two).
        screen_size: Side of the square grayscale observation.
        frame_stack: Observations stacked into one agent input.
        max_episode_frames: Emulator frames before an episode is truncated (v5 default 108,000 = 30 min).
        vector: ``sync`` steps all envs in this process (cheap for ALE); ``async`` uses one process per env.
    """

    id: str = "ALE/Breakout-v5"
    repeat_action_probability: float = 0.0
    noop_max: int = 30
    frame_skip: int = 4
    screen_size: int = 84
    frame_stack: int = 4
    max_episode_frames: int = 108_000
    vector: str = "sync"


def check_env_id(env_id: str) -> None:
    """Refuse an id ale-py does not register, with the closest ones it does."""
    if not env_id.startswith("ALE/"):
        raise ValueError(f"expected an ALE game id like 'ALE/Pong-v5', got env.id={env_id!r}")
    if env_id not in gym.registry:
        known = sorted(name for name in gym.registry if name.startswith("ALE/"))
        close = difflib.get_close_matches(env_id, known, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ValueError(
            f"unknown ALE game env.id={env_id!r}; {hint}ale-py {ale_py.__version__} registers {len(known)} ids, "
            'e.g. ALE/Breakout-v5 (list them with: python -c "import gymnasium as gym, ale_py; '
            "print([n for n in gym.registry if n.startswith('ALE/')])\")"
        )


def make_env(config: EnvConfig, *, max_episode_frames: int | None = None, render_mode: str | None = None) -> gym.Env:
    """One environment with the whole stack; ``max_episode_frames`` overrides the config's frame cap."""
    check_env_id(config.id)
    frames = config.max_episode_frames if max_episode_frames is None else max_episode_frames
    if frames <= 0:
        raise ValueError(f"expected a positive max_episode_frames, got {frames}")
    env = gym.make(
        config.id,
        frameskip=1,
        repeat_action_probability=config.repeat_action_probability,
        full_action_space=False,
        max_num_frames_per_episode=frames,
        render_mode=render_mode,
    )
    env = AtariPreprocessing(
        env,
        noop_max=config.noop_max,
        frame_skip=config.frame_skip,
        screen_size=config.screen_size,
        terminal_on_life_loss=False,
        grayscale_obs=True,
    )
    env = FireOnLifeLoss(env)
    return FrameStackObservation(env, config.frame_stack)


def _ignoring_interrupts(factory: Callable[[], gym.Env]) -> Callable[[], gym.Env]:
    """``factory`` for an async worker that leaves Ctrl-C to the main process.

    A terminal's Ctrl-C signals the whole process group. Workers that stopped on it printed their own
    tracebacks and left broken pipes, so closing the env raised a ``BrokenPipeError`` in place of the
    interrupt (exit code 1, not the trainer's one line and 130). Ignoring it, they keep serving until the main
    process stops them (the trainer terminates them when a run stops early: :class:`_AsyncVectorEnv`).
    """

    main = os.getpid()

    def make() -> gym.Env:
        if os.getpid() != main:  # gymnasium also calls it in the main process, for the spaces
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        return factory()

    return make


class _AsyncVectorEnv(gym.vector.AsyncVectorEnv):
    """gymnasium's ``AsyncVectorEnv``, closing without waiting on a call that was cut short, and quietly when its
    workers are already gone.

    - A Ctrl-C between sending a step (or a ``call``) and reading every reply leaves the env waiting for replies
      that were already read, or half read: gymnasium's ``close`` then waited for them for ever. The workers are
      stopped instead; their replies are of no use to a run that is stopping.
    - A worker that stopped before it could ignore Ctrl-C, or was killed, broke its pipe: whatever is still alive
      is terminated instead of a ``BrokenPipeError``.
    """

    def close_extras(self, timeout: float | None = None, terminate: bool = False) -> None:
        if self._state != AsyncState.DEFAULT:
            self._state = AsyncState.DEFAULT
            terminate = True
        try:
            super().close_extras(timeout=timeout, terminate=terminate)
        except (BrokenPipeError, ConnectionResetError, EOFError):
            super().close_extras(timeout=timeout, terminate=True)


def make_vector_env(config: EnvConfig, num_envs: int) -> gym.vector.VectorEnv:
    """``num_envs`` copies of :func:`make_env` in a sync (default) or async vector env."""
    if num_envs <= 0:
        raise ValueError(f"expected a positive number of envs, got {num_envs}")
    kind: Literal["sync", "async"] = config.vector  # type: ignore[assignment]
    factories = [lambda: make_env(config) for _ in range(num_envs)]
    if kind == "sync":
        return gym.vector.SyncVectorEnv(factories)
    if kind == "async":
        return _AsyncVectorEnv([_ignoring_interrupts(factory) for factory in factories])
    raise ValueError(f"expected env.vector to be 'sync' or 'async', got {config.vector!r}")


def life_lost(previous_lives: np.ndarray, info: dict[str, Any]) -> np.ndarray:
    """Which sub-envs of a vector env lost a life in this step (a reset raises the count, never a loss)."""
    lives = np.asarray(info["lives"])
    return lives < previous_lives
