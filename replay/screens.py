"""Every emulated frame of a step, not only the last: a tap on the base env's ALE.

An agent step emulates several frames (the frame skip; at a reset, the no-op starts and a FIRE), and a replayed
step shows only the screen after the last. While re-simulation runs, a :class:`ScreenTap` stands in for the base
``AtariEnv``'s ``ale`` attribute: it forwards every call to the ALE and, when on, keeps a copy of the screen
(``getScreenRGB``, which only reads) after each ``act`` that emulates a frame (one after the game has ended
emulates none, and ale-py's frame skip still calls it) and after ``reset_game`` (the screen a game starts from).
Emulation, RNG draws and every observation are untouched.

Every layer of a stack a log may name reaches the emulator through ``env.unwrapped.ale`` (``AtariPreprocessing``
reads it as a property, ``FireOnLifeLoss`` through ``env.unwrapped``), so no emulated frame escapes the tap; and
the screen changes only when the ALE emulates, so the last screen kept in a step is the step's frame. A stack
where that cannot hold is refused (:func:`check_tappable`).
"""

from __future__ import annotations

from typing import Any

import ale_py
import gymnasium as gym
import numpy as np

from replay.emulator import base_env
from replay.errors import ScreenCaptureError

_WORKS = (
    "every emulated frame can be captured from stacks whose wrappers reach the emulator through "
    "env.unwrapped.ale, over an ALE that emulates one frame per act (ALE/<Game>-v5 with any frameskip, alone or "
    "under AtariPreprocessing, FireOnLifeLoss, FrameStackObservation...)"
)


def check_tappable(env: gym.Env) -> None:
    """Refuse a stack where some emulated frames would not pass through a :class:`ScreenTap`."""
    base = base_env(env)
    name = env.spec.id if env.spec is not None else type(base).__name__
    per_act = base.ale.getInt("frame_skip")
    if per_act != 1:
        raise ScreenCaptureError(
            f"{name}: its ALE emulates {per_act} frames per act (ALE frame_skip={per_act}), and the frames within "
            f"one act never reach Python; {_WORKS}"
        )
    layer = env
    while isinstance(layer, gym.Wrapper):
        held = [key for key, value in vars(layer).items() if isinstance(value, ale_py.ALEInterface)]
        if held:
            raise ScreenCaptureError(
                f"{name}: wrapper {type(layer).__name__} keeps its own handle on the ALE ({held[0]!r}), so the frames "
                f"it emulates would not be captured; {_WORKS}"
            )
        layer = layer.env


class ScreenTap:
    """Keeps the screen after every frame ``env``'s emulator produces while on; off when installed.

    Example:
        >>> import gymnasium as gym
        >>> env = gym.make("ALE/Breakout-v5", frameskip=4)
        >>> tap = ScreenTap(env)
        >>> tap.start(True)
        >>> _ = env.reset(seed=0)
        >>> _ = env.step(0)
        >>> screens = tap.take()
        >>> len(screens), bool((screens[-1] == env.unwrapped.ale.getScreenRGB()).all())
        (5, True)
        >>> tap.remove()
    """

    def __init__(self, env: gym.Env) -> None:
        check_tappable(env)
        self._base = base_env(env)
        self._ale: ale_py.ALEInterface = self._base.ale
        self._screens: list[np.ndarray] = []
        self._on = False
        self._base.ale = self

    def start(self, on: bool) -> None:
        """Forget the screens kept so far; keep the next ones if ``on``."""
        self._screens = []
        self._on = on

    def take(self) -> tuple[np.ndarray, ...]:
        """The screens kept since :meth:`start`, oldest first."""
        return tuple(self._screens)

    def remove(self) -> None:
        """Give the base env its ALE back."""
        self._base.ale = self._ale

    def act(self, *args: Any, **kwargs: Any) -> float:
        if not self._on:
            return self._ale.act(*args, **kwargs)
        before = self._ale.getFrameNumber()
        reward = self._ale.act(*args, **kwargs)
        if self._ale.getFrameNumber() != before:
            self._screens.append(self._ale.getScreenRGB())
        return reward

    def reset_game(self) -> None:
        self._ale.reset_game()
        if self._on:
            self._screens.append(self._ale.getScreenRGB())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ale, name)
