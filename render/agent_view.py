"""What the agent saw: the network's observations and decisions, re-derived from a log recorded below the agent's
own wrappers.

Stable-Baselines3 records through ``make_atari_env``: the recorder sits on the base env (``*NoFrameskip-v4``: one
recorded step per emulated frame) and SB3's ``AtariWrapper`` (no-op starts, ``MaxAndSkipEnv`` frame skip and
max-pooling, ``EpisodicLifeEnv``, ``FireResetEnv``, ``WarpFrame``), then ``VecFrameStack`` and
``VecTransposeImage``, sit above it. The log holds the base env's screens, not the network's input, and an agent
step spans several recorded steps.

:func:`agent_steps` runs SB3's own wrapper classes over the re-simulated steps of one episode (a stand-in env
serves them, and checks every action the wrappers play against the recorded one), so the observations it hands
out are those the network received during training, byte for byte, and each agent decision is tied to the
recorded step at which the agent acted. The only draw the wrappers make, the number of no-ops after a reset, is
read back from the recorded actions: the no-ops run until the ``FIRE`` of ``FireResetEnv``.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from render.errors import AgentViewError
from replay.reader import ReplayStep

SB3_INSTALL = 'pip install "ale-replay[sb3]" (stable-baselines3 and opencv)'


@dataclass(frozen=True)
class Sb3AtariView:
    """The wrappers above the recorder in an SB3 Atari run: ``AtariWrapper``'s arguments (SB3's defaults here),
    then ``VecFrameStack(n_stack)`` and ``VecTransposeImage``."""

    noop_max: int = 30
    frame_skip: int = 4
    screen_size: int = 84
    terminal_on_life_loss: bool = True
    clip_reward: bool = True
    action_repeat_probability: float = 0.0
    n_stack: int = 4

    def __post_init__(self) -> None:
        if self.action_repeat_probability > 0:
            raise AgentViewError(
                f"AtariWrapper(action_repeat_probability={self.action_repeat_probability}) repeats actions above the "
                "recorder with its own random draws, so the log cannot say what the agent chose; record with "
                "sticky actions in the base env instead (gym.make(..., repeat_action_probability=0.25))"
            )
        for name in ("frame_skip", "screen_size", "n_stack"):
            if getattr(self, name) < 1:
                raise AgentViewError(f"expected a positive {name} for SB3's Atari stack, got {getattr(self, name)}")

    @property
    def observation_shape(self) -> tuple[int, int, int]:
        return (self.n_stack, self.screen_size, self.screen_size)


@dataclass(frozen=True)
class Decision:
    """One decision of the agent.

    Attributes:
        step: The episode's recorded step at which the agent acted (the frame that completed its observation).
        observation: What the network was given, ``(n_stack, size, size)`` uint8.
        action: The action it chose (``None`` only for a recorded frame the agent never acted from: the last).
        policy_version: The version of the policy that chose it (that of the first recorded step it played).
    """

    step: int
    observation: np.ndarray
    action: int | None
    policy_version: int


@dataclass(frozen=True)
class AgentStep:
    """A recorded step and the decision taken at it (``None``: the agent did not act at this step)."""

    recorded: ReplayStep
    decision: Decision | None


class _Exhausted(Exception):
    """The episode's recorded steps ran out inside the wrappers: the game ended there."""


class _LoggedAtari(gym.Env):
    """Stands in for the base ALE env under SB3's wrappers: serves one episode's re-simulated steps in order and
    refuses an action the recording did not play."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, steps: Iterator[ReplayStep], meanings: Sequence[str], source: str, view: Sb3AtariView) -> None:
        self._steps = steps
        self._ahead: deque[ReplayStep] = deque()
        self._meanings = list(meanings)
        self._source, self._view = source, view
        self.consumed: list[ReplayStep] = []
        self._lives = 0
        self._reset_done = False
        self.noop_wrapper: Any = None
        self.ale = self  # EpisodicLifeEnv reads env.unwrapped.ale.lives()
        self.action_space = gym.spaces.Discrete(len(self._meanings))
        self.observation_space = gym.spaces.Box(0, 255, (210, 160, 3), np.uint8)

    def get_action_meanings(self) -> list[str]:
        return list(self._meanings)

    def lives(self) -> int:
        return self._lives

    def peek(self, k: int = 0) -> ReplayStep | None:
        while len(self._ahead) <= k:
            following = next(self._steps, None)
            if following is None:
                return None
            self._ahead.append(following)
        return self._ahead[k]

    def _take(self) -> ReplayStep:
        taken = self.peek()
        if taken is None:
            raise _Exhausted
        self._ahead.popleft()
        self.consumed.append(taken)
        if taken.lives is not None:
            self._lives = taken.lives
        return taken

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        if self._reset_done:  # the wrappers reset again after the game ended: the episode is over
            raise _Exhausted
        first = self._take()
        if first.step != 0:
            raise AgentViewError(
                f"{self._source}: SB3's wrappers need the episode from its reset, got step {first.step}"
            )
        self._reset_done = True
        if self.noop_wrapper is not None:
            self.noop_wrapper.override_num_noops = self._noops()
        return self._observation(first), {"lives": self._lives}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        taken = self._take()
        if taken.action != int(action):
            raise AgentViewError(
                f"{self._source}: at step {taken.step} the log recorded action {taken.action} where SB3's "
                f"AtariWrapper(noop_max={self._view.noop_max}, frame_skip={self._view.frame_skip}, "
                f"terminal_on_life_loss={self._view.terminal_on_life_loss}) plays {int(action)}: this episode was "
                "not recorded under that stack; render it with overlay=minimal, or name the stack it was "
                "recorded with"
            )
        return self._observation(taken), taken.reward, taken.terminated, taken.truncated, {"lives": self._lives}

    def _observation(self, step: ReplayStep) -> np.ndarray:
        if step.observation is None:
            raise AgentViewError(f"{self._source}: step {step.step} was replayed without its observation")
        return step.observation

    def _noops(self) -> int:
        """The no-ops ``NoopResetEnv`` drew after this reset: the NOOPs recorded before the first other action.
        With ``FireResetEnv`` that action is its FIRE; without it, the agent's first action, and NOOPs the agent
        chose could not be told apart from drawn ones."""
        count = 0
        while (following := self.peek(count)) is not None and following.action == 0 and count <= self._view.noop_max:
            count += 1
        fire = "FIRE" in self._meanings
        candidates = [count] if fire else list(range(count, 0, -self._view.frame_skip))
        candidates = [k for k in candidates if 1 <= k <= self._view.noop_max]
        if len(candidates) == 1:
            return candidates[0]
        if not candidates:
            raise AgentViewError(
                f"{self._source}: the episode starts with {count} NOOPs, where NoopResetEnv(noop_max="
                f"{self._view.noop_max}) plays 1..{self._view.noop_max}; it was not recorded under SB3's "
                "AtariWrapper with these arguments"
            )
        raise AgentViewError(
            f"{self._source}: the episode starts with {count} NOOPs and the game has no FIRE, so the no-ops "
            f"NoopResetEnv drew ({', '.join(map(str, candidates))}) cannot be told from NOOPs the agent chose; render "
            "another episode, or record with AtariWrapper(noop_max=0)"
        )


def agent_steps(
    steps: Iterable[ReplayStep], view: Sb3AtariView, action_meanings: Sequence[str], source: str = "the log"
) -> Iterator[AgentStep]:
    """Each of an episode's re-simulated ``steps`` (from its reset, with observations and lives), with the agent's
    decision at it where the agent acted; ``source`` names the log in errors."""
    try:
        from stable_baselines3.common.atari_wrappers import AtariWrapper, NoopResetEnv
        from stable_baselines3.common.vec_env import DummyVecEnv, VecFrameStack, VecTransposeImage
    except ImportError as error:
        raise AgentViewError(
            f"re-deriving what an SB3 agent saw needs stable-baselines3 ({error}); {SB3_INSTALL}"
        ) from None
    logged = _LoggedAtari(iter(steps), action_meanings, source, view)
    kwargs = {f.name: getattr(view, f.name) for f in dataclasses.fields(view) if f.name != "n_stack"}
    try:
        wrapped = AtariWrapper(logged, **kwargs)
    except AssertionError as error:
        raise AgentViewError(
            f"{source}: SB3's AtariWrapper refuses this game's actions {list(action_meanings)}"
        ) from error
    layer: Any = wrapped
    while isinstance(layer, gym.Wrapper):
        if isinstance(layer, NoopResetEnv):
            logged.noop_wrapper = layer
        layer = layer.env
    venv = VecTransposeImage(VecFrameStack(DummyVecEnv([lambda: wrapped]), view.n_stack))
    try:
        observation = venv.reset()
    except _Exhausted:
        yield from (AgentStep(step, None) for step in logged.consumed)
        return
    while True:
        following = logged.peek()
        consumed, logged.consumed = logged.consumed, []
        decision = None
        if following is not None:
            decision = Decision(
                consumed[-1].step, observation[0].copy(), int(following.action), following.policy_version
            )
        yield from (AgentStep(step, None) for step in consumed[:-1])
        yield AgentStep(consumed[-1], decision)
        if decision is None:
            return
        try:
            observation, *_ = venv.step(np.array([decision.action]))
        except _Exhausted:
            yield from (AgentStep(step, None) for step in logged.consumed)
            return


def decisions(
    steps: Iterable[ReplayStep], view: Sb3AtariView, action_meanings: Sequence[str], source: str = "the log"
) -> Iterator[Decision]:
    """The agent's decisions in an episode's re-simulated ``steps`` (see :func:`agent_steps`)."""
    return (s.decision for s in agent_steps(steps, view, action_meanings, source) if s.decision is not None)


def view_for(metadata: dict[str, Any], stream: int) -> Sb3AtariView | None:
    """The SB3 wrappers above the recorder of ``stream``, as ``replay.sb3`` stores them in a log's metadata
    (``sb3``: ``make_atari_env``'s arguments and its streams; ``sb3_model``: the vector wrappers of the model's
    env); ``None`` when the stream was not recorded through ``replay.sb3``: its observations are the network's."""
    recorded = metadata.get("sb3")
    if not isinstance(recorded, dict) or stream not in (recorded.get("streams") or []):
        return None
    wrapper_kwargs = dict(recorded.get("wrapper_kwargs") or {})
    known = {f.name for f in dataclasses.fields(Sb3AtariView)} - {"n_stack"}
    unknown = sorted(set(wrapper_kwargs) - known)
    if unknown:
        raise AgentViewError(f"the log's AtariWrapper arguments {unknown} are unknown here; upgrade ale-replay")
    n_stack = 1
    model = metadata.get("sb3_model")
    wrappers = model.get("vec_wrappers") if isinstance(model, dict) else None
    if wrappers is None:
        n_stack = 4  # the model's env was not seen (no RecordCallback): SB3's Atari recipe stacks 4 frames
    for entry in wrappers or ():
        if entry.get("wrapper") == "VecFrameStack":
            if entry.get("channels_first"):
                raise AgentViewError("a VecFrameStack stacking channels first is not SB3's Atari recipe; not rendered")
            n_stack = int(entry["n_stack"])
    return Sb3AtariView(**wrapper_kwargs, n_stack=n_stack)


def agent_observations(
    steps: Iterable[ReplayStep], view: Sb3AtariView, action_meanings: Sequence[str], source: str = "the log"
) -> Iterator[ReplayStep]:
    """An episode's re-simulated ``steps``, each carrying as ``observation`` the network's input of the decision
    played out from it: the latest decision at or before the step; the steps before the first decision (the
    no-ops and FIRE of a reset) carry the first decision's, the last steps after the final decision its."""
    early: list[ReplayStep] = []
    current: np.ndarray | None = None
    for item in agent_steps(steps, view, action_meanings, source):
        if item.decision is not None:
            current = item.decision.observation
        if current is None:
            early.append(item.recorded)
            continue
        for waiting in early:
            yield dataclasses.replace(waiting, observation=current)
        early.clear()
        yield dataclasses.replace(item.recorded, observation=current)
    if early:
        raise AgentViewError(f"{source}: an episode of {len(early)} steps ended before the agent's first decision")
