"""Recording wrappers: every call on an ALE env (or a vector of them) becomes a record in a trajectory log.

What goes to disk is what re-creating the game needs and nothing else: the actions, the reset seeds, episode
boundaries, policy versions, sparse ALE snapshots (with RNG) and cheap sync checks. No observations, no frames.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv, VectorWrapper

from replay import log_format as fmt
from replay.emulator import (
    WRAPPER_STATE,
    LaneState,
    base_env,
    obs_crc,
    plain,
    rom_md5,
    state_crc,
    wrapper_state,
)
from replay.errors import RecordingError
from replay.rebuild import check_rebuildable, check_vector_rebuildable, stateful_wrappers
from replay.writer import RecordBuffer, StreamWriter, TrajectoryWriter, check_appendable

ACTION_IDLE = 255  # a lane that neither stepped nor reset at a position (partial vector resets)


# Quiet positions in a row at most: full positions check the flush deadline, so this bounds how late a flush
# can be (~0.1 s of stepping) whatever the sync and snapshot intervals.
_MAX_QUIET = 256
_INT64_LIMIT = 2**63


def _check_actions(actions: np.ndarray, n: int) -> None:
    """ALE would take -1 as "the last action" and the log would store it as 255 (an idle lane): refuse it."""
    if actions.dtype.kind not in "iu":
        raise RecordingError(f"expected integer actions in 0..{n - 1} (the Discrete action space), got {actions!r}")
    values = actions.tolist()  # cheaper than NumPy's reductions on a handful of envs (every vector step pays it)
    if values and (min(values) < 0 or max(values) >= n):
        raise RecordingError(f"expected actions in 0..{n - 1} (the Discrete action space), got {actions.tolist()}")


def default_snapshot_interval(spec: gym.envs.registration.EnvSpec) -> int:
    """Snapshots cost ~0.2 KB (with sticky actions too: their generator is mostly derived, see
    ``replay.sticky_rng``); one every 1024 steps keeps a log near a byte per step and the worst seek ~1-1.5 s here (the
    README's trade-off table)."""
    del spec  # the same for every env since sticky-action snapshots are as small as the others
    return 1024


def _per_lane(values: Any) -> Any:
    """One value per lane, indexable cheaply: a numpy array as a list of Python values, a list as it is."""
    return values.tolist() if isinstance(values, np.ndarray) else values


def _sticky(spec: gym.envs.registration.EnvSpec) -> bool:
    return float(spec.kwargs.get("repeat_action_probability", 0.25)) > 0.0


class _Recording:
    """The recording logic shared by the single and the vector wrapper: lanes, episodes, cadences."""

    def __init__(
        self,
        destination: str | Path | TrajectoryWriter | RecordBuffer,
        spec: gym.envs.registration.EnvSpec | None,
        game: str,
        n_lanes: int,
        action_meanings: list[str],
        observation_space: gym.Space,
        clone_states: Callable[[bool], Sequence[Any]],
        rng_states: Callable[[], Sequence[np.random.Generator]],
        wrapper_states: Callable[[], Sequence[dict[str, dict[str, Any]]]],
        *,
        snapshot_interval: int | None,
        sync_interval: int,
        flush_seconds: float,
        tag: str,
        batched: bool,
    ) -> None:
        if spec is None:
            raise RecordingError(
                "the env has no spec, so it could not be rebuilt for replay; create it with gym.make(...)"
            )
        if snapshot_interval is None:
            snapshot_interval = default_snapshot_interval(spec)
        if snapshot_interval < 1:
            raise ValueError(f"expected a positive snapshot_interval, got {snapshot_interval!r}")
        if sync_interval < 1:
            raise ValueError(f"expected a positive sync_interval, got {sync_interval!r}")
        if isinstance(destination, (TrajectoryWriter, RecordBuffer)):
            self.writer, self.owns_writer = destination, False
        else:
            check_appendable(Path(destination), spec.id, game, action_meanings)
            self.writer, self.owns_writer = TrajectoryWriter(destination, flush_seconds=flush_seconds), True
        try:
            self.stream: StreamWriter = self.writer.add_stream(
                spec_json=spec.to_json(),
                env_id=spec.id,
                game=game,
                rom_md5=rom_md5(game),
                tag=tag,
                n_lanes=n_lanes,
                snapshot_interval=snapshot_interval,
                sync_interval=sync_interval,
                action_meanings=action_meanings,
                obs_shape=tuple(observation_space.shape or ()),
                obs_dtype=str(observation_space.dtype),
            )
        except BaseException:
            if self.owns_writer:
                self.writer.close()
            raise
        # Without sticky actions nothing reads the sticky-action generator: snapshots leave it out.
        self.snapshot_rng = _sticky(spec)
        self.n_lanes = n_lanes
        self.batched = batched  # observations carry a leading lane axis
        self.snapshot_interval = snapshot_interval
        self.sync_interval = sync_interval
        self._clone_states = clone_states
        self._rng_states = rng_states
        self._wrapper_states = wrapper_states
        self.policy_version = 0
        self._recorded_version: int | None = None
        # Per-lane bookkeeping in Python lists: it runs right after the emulator, where each small numpy call pays
        # for cold caches, and a handful of them a step would cost about 1% of the env's step time.
        self._lanes = range(n_lanes)
        self._seeded = [False] * n_lanes
        self._start = [-1] * n_lanes  # position of the open episode's reset, -1 between episodes
        self._reward = [0.0] * n_lanes
        self._version_first = [0] * n_lanes
        self._snapshot_due = [False] * n_lanes
        self._snapshot_pending = False
        self._quiet_left = 0  # positions that may take the quiet path (see on_quiet_step)
        self._pending_reward: Any = 0.0  # rewards of quiet positions, added to _reward at the next full one
        self._append_actions = self.stream.record_position if batched else self.stream.record_action
        self.closed = False

    def seeds_for_reset(self, lanes: Sequence[bool], seed: int | Sequence[int | None] | None) -> list[int | None]:
        """Seeds to pass on: a lane's first reset must be seeded, or it could not be replayed."""
        if self.closed:
            raise RecordingError(f"this recorder of {self.writer.path} is closed; open a new one to record more")
        if seed is None:
            seeds: list[int | None] = [None] * self.n_lanes
        elif isinstance(seed, (int, np.integer)):
            seeds = [int(seed) + j for j in range(self.n_lanes)]
        else:
            seeds = list(seed)
        if len(seeds) != self.n_lanes:
            raise RecordingError(f"expected {self.n_lanes} seeds, one per env, got {len(seeds)}: {seed!r}")
        for value in seeds:  # the log stores seeds as int64, and -1 means none
            if value is not None and not (isinstance(value, (int, np.integer)) and 0 <= value < _INT64_LIMIT):
                raise RecordingError(f"a reset seed must be an integer in 0..2**63-1 or None, got {value!r}")
        unseeded = [lanes[j] and not self._seeded[j] and seeds[j] is None for j in self._lanes]
        if any(unseeded):
            drawn = np.random.SeedSequence().generate_state(self.n_lanes, dtype=np.uint32)
            seeds = [int(drawn[j]) if unseeded[j] else seeds[j] for j in self._lanes]
        return seeds

    def on_reset(self, lanes: Sequence[bool], seeds: list[int | None], observations: Any) -> None:
        """A reset of the lanes flagged in ``lanes`` (a list or a bool array, one flag per lane)."""
        lanes = _per_lane(lanes)
        self._fold_rewards()
        self._cut(lanes, by_reset=True)
        if self.batched:
            self.stream.record_position(np.array([0 if r else ACTION_IDLE for r in lanes], dtype=fmt.ACTION_DTYPE))
        else:
            self.stream.record_action(0)
        position = self.stream.position - 1
        self._note_version(position)
        for lane in self._lanes:
            if lanes[lane]:
                self.stream.record_reset(position, lane, seeds[lane])
                self._seeded[lane] = True
        self._open(lanes, position)
        self._checks(position, lanes, [False] * self.n_lanes, observations)
        self._plan_quiet()

    def on_quiet_step(self, actions: Any, rewards: Any) -> bool:
        """The common position where no lane resets or ends and no check is due: store the actions, add up rewards.

        Returns False, recording nothing, when the position needs :meth:`on_step`. The last full position
        planned how many quiet ones follow (``_plan_quiet``), so this path is a counter and two appends: it runs
        right after the emulator, with cold caches, where every numpy call or attribute chain costs microseconds.
        """
        if self._quiet_left <= 0 or self.policy_version != self._recorded_version:
            return False
        self._quiet_left -= 1
        self._append_actions(actions)
        self._pending_reward += rewards
        return True

    def _plan_quiet(self) -> None:
        """After a full position: how many positions until a sync or snapshot check, or a flush check, is due."""
        if self._snapshot_pending:
            self._quiet_left = 0
            return
        position = self.stream.position
        next_sync = -(-position // self.sync_interval) * self.sync_interval
        next_snapshot = -(-position // self.snapshot_interval) * self.snapshot_interval
        self._quiet_left = min(next_sync - position, next_snapshot - position, _MAX_QUIET)

    def _fold_rewards(self) -> None:
        pending = self._pending_reward
        if isinstance(pending, np.ndarray):  # a vector env's rewards
            self._reward = [total + more for total, more in zip(self._reward, pending.tolist(), strict=True)]
        elif pending:
            self._reward = [total + float(pending) for total in self._reward]  # one lane; float64 whatever its type
        self._pending_reward = 0.0

    def on_step(
        self,
        actions: Any,
        rewards: Sequence[float],
        ended: Sequence[bool],
        terminated: Sequence[bool],
        truncated: Sequence[bool],
        resetting: Sequence[bool],
        observations: Any,
    ) -> None:
        """One position: lanes in ``resetting`` were auto-reset (their action ignored), the others stepped.

        ``actions``: the action (one lane) or the lanes' actions as an array; the others one value per lane, as
        lists or arrays.
        """
        rewards, ended, terminated = _per_lane(rewards), _per_lane(ended), _per_lane(terminated)
        truncated, resetting = _per_lane(truncated), _per_lane(resetting)
        self._fold_rewards()
        self._append_actions(actions)
        position = self.stream.position - 1
        self._note_version(position)
        if any(resetting):
            for lane in self._lanes:
                if resetting[lane]:
                    self.stream.record_reset(position, lane, None)
            self._open(resetting, position)
        reward = self._reward
        for lane in self._lanes:
            if not resetting[lane]:
                reward[lane] += float(rewards[lane])
        ended = [ended[lane] and not resetting[lane] for lane in self._lanes]
        self._checks(position, resetting, ended, observations)
        for lane in self._lanes:
            if ended[lane]:
                self._close_episode(lane, position, bool(terminated[lane]), bool(truncated[lane]), True)
        self.writer.maybe_flush()
        self._plan_quiet()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.writer.closed:
            return
        self._fold_rewards()
        self._cut([True] * self.n_lanes, by_reset=False)
        if self.owns_writer:
            self.writer.close()
        else:
            self.writer.flush()

    def _open(self, lanes: list[bool], position: int) -> None:
        for lane in self._lanes:
            if lanes[lane]:
                self._start[lane] = position
                self._reward[lane] = 0.0
                self._version_first[lane] = int(self.policy_version)

    def _cut(self, lanes: list[bool], *, by_reset: bool) -> None:
        """Keep episodes cut short: nothing the env did is lost.

        One the caller ends with ``reset()`` after at least one step is truncated, as gymnasium means it: ended
        from outside the game. That is how a ``TimeLimit`` around the recorder ends episodes, and the truncated
        flag it returns never passes down to the recorder. One cut by ``close()`` (the end of training) is
        unfinished: nothing ended it.
        """
        last = self.stream.position - 1
        for lane in self._lanes:
            if lanes[lane] and self._start[lane] >= 0:
                truncated = by_reset and last > self._start[lane]
                self._close_episode(lane, last, False, truncated, truncated)

    def _close_episode(self, lane: int, last: int, terminated: bool, truncated: bool, finished: bool) -> None:
        start = int(self._start[lane])
        self.writer.add_episode(
            (
                self.stream.index,
                lane,
                start,
                last - start,
                float(self._reward[lane]),
                terminated,
                truncated,
                finished,
                int(self._version_first[lane]),
                int(self.policy_version),
            )
        )
        self._start[lane] = -1

    def _note_version(self, position: int) -> None:
        version = int(self.policy_version)
        if version != self._recorded_version:
            self.stream.record_version(position, version)
            self._recorded_version = version

    def _checks(self, position: int, resetting: list[bool], ended: list[bool], observations: Any) -> None:
        on_grid = position % self.sync_interval == 0 and position > 0
        if position % self.snapshot_interval == 0 and position > 0:
            self._snapshot_due = [True] * self.n_lanes
            self._snapshot_pending = True
        # A snapshot taken just after a reset does not replay exactly in some games: wait one step.
        snapshot_lanes = [
            lane for lane in self._lanes if self._snapshot_due[lane] and not resetting[lane] and self._start[lane] >= 0
        ]
        sync_lanes = list(self._lanes) if on_grid else [lane for lane in self._lanes if ended[lane]]
        if not (sync_lanes or snapshot_lanes):
            return
        states = self._clone_states(False)
        crcs = [state_crc(s) for s in states]
        if self.batched:
            observations = np.asarray(observations)
            obs_crcs = [obs_crc(observations[j]) for j in self._lanes]
        else:
            obs_crcs = [obs_crc(observations)]
        for lane in sync_lanes:
            self.stream.record_sync(position, lane, crcs[lane], obs_crcs[lane])
        if snapshot_lanes:
            full_states = self._clone_states(True) if self.snapshot_rng else states
            generators = self._rng_states()
            wrappers = self._wrapper_states()
            for lane in snapshot_lanes:
                state = LaneState(
                    ale_state=full_states[lane].serialize(),
                    np_random_state=json.dumps(generators[lane].bit_generator.state),
                    wrappers=wrappers[lane],
                )
                self.stream.record_snapshot(position, lane, state, crcs[lane], obs_crcs[lane], sticky=self.snapshot_rng)
                self._snapshot_due[lane] = False
        self._snapshot_pending = any(self._snapshot_due)


class _RecorderHandle:
    """What a trainer touches on either recorder: the shared writer and the policy version."""

    _recording: _Recording

    @property
    def writer(self) -> TrajectoryWriter | RecordBuffer:
        return self._recording.writer

    def finish_recording(self) -> None:
        """Stop recording, the env left open: episodes in flight are kept as unfinished, a shared writer flushed."""
        self._recording.close()

    @property
    def stream_index(self) -> int:
        """The index of the log stream this recorder writes (``TrajectoryLog.streams[i]``)."""
        return self._recording.stream.index

    @property
    def policy_version(self) -> int:
        return self._recording.policy_version

    @policy_version.setter
    def policy_version(self, version: int) -> None:
        if not (isinstance(version, (int, np.integer)) and not isinstance(version, bool)) or not (
            0 <= version < _INT64_LIMIT
        ):
            raise RecordingError(
                f"policy_version must be an integer in 0..2**63-1 (the trainer's update index), got {version!r}"
            )
        self._recording.policy_version = int(version)


def _vector_wrapper_states(
    env: VectorEnv, spec: gym.envs.registration.EnvSpec
) -> Callable[[], list[dict[str, dict[str, Any]]]]:
    """How to read every sub-env's wrapper state (:func:`replay.emulator.wrapper_state`). An AsyncVectorEnv's
    sub-envs live in other processes, where ``get_wrapper_attr`` finds the one wrapper of each stateful class
    a recorded stack may have."""
    if isinstance(env, gym.vector.SyncVectorEnv):
        return lambda: [wrapper_state(sub_env) for sub_env in env.envs]
    classes = stateful_wrappers(spec)

    def read() -> list[dict[str, dict[str, Any]]]:
        states: list[dict[str, dict[str, Any]]] = [{} for _ in range(env.num_envs)]
        for cls in classes:
            for name in WRAPPER_STATE[cls]:
                for lane, value in enumerate(env.call("get_wrapper_attr", name)):
                    states[lane].setdefault(cls.__name__, {})[name] = plain(value)
        return states

    return read


def _wrappers_around(recorder: gym.Env, frame: Any) -> list[gym.Env]:
    """The wrappers whose ``env`` chain leads to ``recorder``, found as ``self`` of the frames calling it (its
    first reset is called through each of them)."""
    found: list[gym.Env] = []
    for _ in range(64):
        if frame is None:
            break
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, gym.Wrapper) and candidate is not recorder and candidate not in found:
            inner: Any = candidate
            while isinstance(inner, gym.Wrapper) and inner is not recorder:
                inner = inner.env
            if inner is recorder:
                found.append(candidate)
        frame = frame.f_back
    return found


class RecordTrajectory(_RecorderHandle, gym.Wrapper):
    """Record every episode of an ALE env to a trajectory log for exact replay later.

    Args:
        env: an env whose base is an ALE env (``gym.make("ALE/<Game>-v5", ...)``), optionally under
            gymnasium wrappers such as ``AtariPreprocessing`` and ``FrameStackObservation``.
        path: the log file (created, or appended to as a new stream), or an open ``TrajectoryWriter``
            shared with other recorders (e.g. ``vector_recorder.writer``).
        snapshot_interval: positions between ALE snapshots; bounds seek time (bytes vs latency). Default: 1024
            (a snapshot is ~0.2 KB, with sticky actions too: see :func:`default_snapshot_interval`).
        sync_interval: positions between sync checks (emulator and observation CRCs).
        flush_seconds: about this much work is lost at most if the process is killed (the deadline is
            checked at least every 256 positions).
        tag: what these episodes are, e.g. ``"train"`` or ``"eval"``.

    Example:
        >>> import gymnasium as gym, ale_py
        >>> gym.register_envs(ale_py)
        >>> env = RecordTrajectory(gym.make("ALE/Breakout-v5"), "breakout.h5")   # doctest: +SKIP
        >>> obs, info = env.reset(seed=0)                                        # doctest: +SKIP
        >>> env.policy_version = 3                                               # doctest: +SKIP
        >>> obs, reward, terminated, truncated, info = env.step(1)              # doctest: +SKIP
        >>> env.close()                                                          # doctest: +SKIP
    """

    def __init__(
        self,
        env: gym.Env,
        path: str | Path | TrajectoryWriter,
        *,
        snapshot_interval: int | None = None,
        sync_interval: int = 64,
        flush_seconds: float = 10.0,
        tag: str = "train",
    ) -> None:
        super().__init__(env)
        base = base_env(env)
        if not isinstance(env.action_space, gym.spaces.Discrete):
            raise RecordingError(f"expected a Discrete action space, got {env.action_space}")
        check_rebuildable(env)
        self._recording = _Recording(
            path,
            env.spec,
            str(base._game),
            1,
            list(base.get_action_meanings()),
            env.observation_space,
            lambda rng: [base.ale.cloneState(include_rng=rng)],
            lambda: [base.np_random],
            lambda: [wrapper_state(env)],
            snapshot_interval=snapshot_interval,
            sync_interval=sync_interval,
            flush_seconds=flush_seconds,
            tag=tag,
            batched=False,
        )
        self._episode_over = True
        self._n_actions = int(env.action_space.n)
        # A random frame skip (e.g. Breakout-v4) is drawn from the base env's np_random: a draw from it above the
        # recorder (SB3's NoopResetEnv) would shift every later skip, and the log could not replay. Its position
        # after each call is kept and checked before the next.
        self._skip_rng = base.np_random.bit_generator if isinstance(getattr(base, "_frameskip", 1), tuple) else None
        self._skip_rng_at: Any = None
        # The wrappers around the recorder, found on the call stack of its first reset: a policy_version set on
        # one of them (SB3's VecEnv.set_attr sets it on the outermost) never reaches the recorder.
        self._outer: list[gym.Env] | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        if options:
            raise RecordingError(f"reset options cannot be replayed yet, got {options!r}; reset without them")
        seeds = self._recording.seeds_for_reset([True], seed)
        if self._outer is None:
            self._outer = _wrappers_around(self, sys._getframe(1))
        self._check_outer()
        observation, info = self.env.reset(seed=seeds[0])
        self._recording.on_reset([True], seeds, observation)
        self._episode_over = False
        self._note_skip_rng()
        return observation, info

    def _check_outer(self) -> None:
        for wrapper in self._outer or ():
            if "policy_version" in vars(wrapper):
                raise RecordingError(
                    f"{self.writer.path}: policy_version was set on {type(wrapper).__name__}, a wrapper around the "
                    "recorder, where it never reaches the recorder (gymnasium 1.x passes no attribute down; SB3's "
                    "VecEnv.set_attr sets it on the outermost wrapper), so every step would be recorded with the "
                    "wrong version. Record SB3 with replay.sb3.make_atari_env and replay.sb3.RecordCallback, or set "
                    "it with venv.env_method('set_wrapper_attr', 'policy_version', n) on envs never given set_attr"
                )

    def _note_skip_rng(self) -> None:
        if self._skip_rng is not None:
            self._skip_rng = base_env(self.env).np_random.bit_generator  # a seeded reset makes a new generator
            self._skip_rng_at = self._skip_rng.state["state"]

    def _check_skip_rng(self) -> None:
        if self._skip_rng is not None and self._skip_rng.state["state"] != self._skip_rng_at:
            spec = self.env.spec.id if self.env.spec is not None else "this env"
            raise RecordingError(
                f"{self.writer.path}: {spec} draws its random frame skip from the env's np_random, and a wrapper "
                "around the recorder drew from it too (SB3's AtariWrapper does, for its no-op starts), so the log "
                "could not replay. Record an env with a fixed frame skip: 'BreakoutNoFrameskip-v4', or "
                "'ALE/Breakout-v5' with frameskip=1, under AtariWrapper; or use replay.sb3.make_atari_env"
            )

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict]:
        if self._recording.closed:
            raise RecordingError(f"this recorder of {self.writer.path} is closed; open a new one to record more")
        if self._episode_over:
            raise RecordingError("call reset() before step(): the episode is over (or never began)")
        if not (isinstance(action, (int, np.integer)) and 0 <= action < self._n_actions):
            _check_actions(np.asarray(action).reshape(-1), self._n_actions)  # a 0-d array passes, others raise
        self._check_skip_rng()
        if self._outer:
            self._check_outer()
        observation, reward, terminated, truncated, info = self.env.step(action)
        ended = bool(terminated or truncated)
        if ended or not self._recording.on_quiet_step(action, reward):
            self._full_step(action, reward, terminated, truncated, observation)
        self._episode_over = ended
        if self._skip_rng is not None:
            self._skip_rng_at = self._skip_rng.state["state"]
        return observation, reward, terminated, truncated, info

    def _full_step(
        self, action: Any, reward: SupportsFloat, terminated: bool, truncated: bool, observation: Any
    ) -> None:
        ended = bool(terminated or truncated)
        self._recording.on_step(action, [reward], [ended], [terminated], [truncated], [False], observation)

    def close(self) -> None:
        self._recording.close()
        super().close()


class RecordVectorTrajectory(_RecorderHandle, VectorWrapper):
    """Record every episode of every sub-env of a ``SyncVectorEnv`` or ``AsyncVectorEnv`` (NEXT_STEP autoreset).

    One writer in the main process; sub-env states are fetched with ``vector_env.call`` only at snapshot and sync
    positions. Arguments as for :class:`RecordTrajectory`.

    Example:
        >>> envs = gym.vector.SyncVectorEnv([lambda: gym.make("ALE/Pong-v5")] * 4)    # doctest: +SKIP
        >>> envs = RecordVectorTrajectory(envs, "pong.h5")                            # doctest: +SKIP
        >>> obs, info = envs.reset(seed=1)                                             # doctest: +SKIP
    """

    def __init__(
        self,
        env: VectorEnv,
        path: str | Path | TrajectoryWriter,
        *,
        snapshot_interval: int | None = None,
        sync_interval: int = 64,
        flush_seconds: float = 10.0,
        tag: str = "train",
    ) -> None:
        super().__init__(env)
        # First: another kind of vector env has no call(), and a stack replay refuses may not cross the pipe.
        check_vector_rebuildable(env)
        mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        if mode not in (AutoresetMode.NEXT_STEP, AutoresetMode.DISABLED):
            raise RecordingError(
                f"expected a vector env with autoreset_mode NEXT_STEP or DISABLED, got {mode}; "
                "create it with autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP (the default)"
            )
        if not isinstance(env.single_action_space, gym.spaces.Discrete):
            raise RecordingError(f"expected a Discrete action space, got {env.single_action_space}")
        specs = env.call("spec")
        games = env.call("_game")
        if len(set(games)) != 1 or len({s.to_json() for s in specs}) != 1:
            differing = sorted({s.to_json() for s in specs})
            raise RecordingError(
                f"expected identical sub-envs (one spec rebuilds every lane), got games {sorted(set(games))} and "
                f"{len(differing)} different env specs: {differing}; build every sub-env with the same thunk"
            )
        self._recording = _Recording(
            path,
            specs[0],
            str(games[0]),
            env.num_envs,
            list(env.call("get_action_meanings")[0]),
            env.single_observation_space,
            lambda rng: env.call("clone_state", include_rng=rng),
            lambda: env.call("np_random"),
            _vector_wrapper_states(env, specs[0]),
            snapshot_interval=snapshot_interval,
            sync_interval=sync_interval,
            flush_seconds=flush_seconds,
            tag=tag,
            batched=True,
        )
        self._next_step_autoreset = mode == AutoresetMode.NEXT_STEP
        self._autoreset = np.zeros(env.num_envs, dtype=bool)
        self._n_actions = int(env.single_action_space.n)
        self._all = np.ones(env.num_envs, dtype=bool)
        self._needs_reset = np.ones(env.num_envs, dtype=bool)

    def reset(
        self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict]:
        options = dict(options or {})
        mask = options.pop("reset_mask", None)
        if options:
            raise RecordingError(f"reset options cannot be replayed yet, got {options!r}; reset without them")
        lanes = self._all.copy() if mask is None else np.asarray(mask, dtype=bool)
        seeds = self._recording.seeds_for_reset(lanes, seed)
        call_options = None if mask is None else {"reset_mask": lanes}
        if mask is None:
            observations, info = self.env.reset(seed=seeds, options=call_options)
        else:
            observations, info = self.env.reset(
                seed=[s if lanes[j] else None for j, s in enumerate(seeds)], options=call_options
            )
        self._recording.on_reset(lanes, seeds, observations)
        self._autoreset[lanes] = False
        self._needs_reset[lanes] = False
        return observations, info

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict]:
        if self._recording.closed:
            raise RecordingError(f"this recorder of {self.writer.path} is closed; open a new one to record more")
        _check_actions(np.asarray(actions), self._n_actions)
        observations, rewards, terminated, truncated, info = self.env.step(actions)
        terminated = np.asarray(terminated, dtype=bool)
        truncated = np.asarray(truncated, dtype=bool)
        ended = terminated | truncated
        resetting = self._autoreset
        quiet = not (ended.any() or resetting.any())
        if not (quiet and self._recording.on_quiet_step(actions, rewards)):
            self._full_step(actions, rewards, terminated, truncated, ended, observations)
        if self._next_step_autoreset:
            self._autoreset = ended & ~resetting
        return observations, rewards, terminated, truncated, info

    def _full_step(
        self,
        actions: Any,
        rewards: Any,
        terminated: np.ndarray,
        truncated: np.ndarray,
        ended: np.ndarray,
        observations: Any,
    ) -> None:
        resetting = self._autoreset
        actions = np.where(resetting, 0, np.asarray(actions)).astype(fmt.ACTION_DTYPE)
        self._recording.on_step(
            actions,
            np.asarray(rewards, dtype=np.float64),
            ended,
            terminated,
            truncated,
            resetting,
            observations,
        )

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        return self.env.call(name, *args, **kwargs)

    def get_attr(self, name: str) -> tuple[Any, ...]:
        return self.env.get_attr(name)

    def close(self, **kwargs: Any) -> None:
        self._recording.close()
        self.env.close(**kwargs)
