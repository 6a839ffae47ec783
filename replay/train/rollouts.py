"""The trainer's rollouts, re-simulated from its log: the inputs of each update, bit for bit.

A launch of the trainer records its training rollouts into one log stream: position 0 is the vector env's seeded
reset, and the rollout of version ``v`` takes the ``num_steps`` positions from ``1 + (v - from_version) *
num_steps`` on. Each lane is re-simulated on its own (``replay.resim``, verified by the log's sync checks) and the
lanes are read in step, keeping what the loop kept between steps: the last observation, the life count, whether
the last step ended an episode (the next position is then the vector env's autoreset, no transition) or cost a
life (the end of bootstrapping). The actions of steps come from the log; at an autoreset the env ignored the
action and the log holds none, so those are left to the rebuilt policy's own draw (``-1`` here).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from replay.errors import NotRebuildableError
from replay.reader import TrajectoryLog
from replay.resim import Emitted, resimulate
from replay.train.ledger import Session

NO_ACTION = -1


@dataclass(frozen=True)
class LoggedRollout:
    """What update ``update`` learned from, but the network's outputs (which the rebuilt network recomputes)."""

    update: int
    obs: torch.Tensor  # (num_steps, num_envs, *obs_shape) uint8: the observation each action was chosen on
    actions: np.ndarray  # (num_steps, num_envs) int64: the logged actions, NO_ACTION at autoresets
    rewards: torch.Tensor  # (num_steps, num_envs), clipped as the trainer learned from them
    dones: torch.Tensor  # (num_steps, num_envs): the observation follows a terminal (episode end or lost life)
    valid: torch.Tensor  # (num_steps, num_envs): 0 at autoresets, no transition
    next_obs: torch.Tensor  # (num_envs, *obs_shape): after the last step
    next_done: torch.Tensor  # (num_envs,)


@dataclass
class _LaneState:
    obs: np.ndarray
    lives: int
    done: bool
    ended: bool


class LoggedRollouts:
    """Reads the rollouts of updates ``first..`` of one trainer session in order, from its log stream."""

    def __init__(self, log: TrajectoryLog, session: Session, first: int) -> None:
        if session.stream is None:
            raise NotRebuildableError(f"{log.path}: the session from version {session.from_version} recorded no log")
        if not 0 <= session.stream < len(log.streams):
            raise NotRebuildableError(
                f"{log.path}: the ledger names log stream {session.stream}, the log has {len(log.streams)}; the "
                "log and the ledger are of different runs"
            )
        ppo = session.ppo_config
        info = log.streams[session.stream]
        if info.n_lanes != ppo.num_envs or info.tag != "train":
            raise NotRebuildableError(
                f"{log.path}: stream {session.stream} is a {info.tag!r} stream of {info.n_lanes} envs, the ledger's "
                f"session trained with {ppo.num_envs}; the log and the ledger are of different runs"
            )
        self.path, self.session, self.stream, self.ppo = log.path, session, session.stream, ppo
        self._next = first
        self._versions = log.version_table(session.stream)
        start = self.position(first)
        last = info.length - 1
        self._lanes: list[Iterator[Emitted]] = [
            resimulate(log.lane(self.stream, lane), max(0, start - 2), last, frames=False, observations=True)
            for lane in range(ppo.num_envs)
        ]
        self._states = [self._begin(lanes, start) for lanes in self._lanes]

    def position(self, update: int) -> int:
        """The stream position of the first step of ``update``'s rollout."""
        return 1 + (update - self.session.from_version) * self.ppo.num_steps

    def _begin(self, emitted: Iterator[Emitted], start: int) -> _LaneState:
        """The lane's state just before ``start``, as the loop held it."""
        first = next(emitted)
        state = _LaneState(first.observation, first.lives, False, False)
        if first.position < start - 1:
            state = self._advance(state, next(emitted))
        return state

    def _advance(self, state: _LaneState, item: Emitted) -> _LaneState:
        ended = item.terminated or item.truncated
        lost = item.kind != "reset" and item.lives < state.lives
        return _LaneState(item.observation, item.lives, ended or lost, ended)

    def next(self) -> LoggedRollout:
        """The next update's rollout."""
        update, steps, envs = self._next, self.ppo.num_steps, self.ppo.num_envs
        start = self.position(update)
        self._check_version(update, start)
        obs = np.empty((steps, envs, *self._states[0].obs.shape), dtype=np.uint8)
        actions = np.full((steps, envs), NO_ACTION, dtype=np.int64)
        rewards = np.zeros((steps, envs), dtype=np.float64)
        dones = np.zeros((steps, envs), dtype=np.float32)
        valid = np.ones((steps, envs), dtype=np.float32)
        for lane, emitted in enumerate(self._lanes):
            state = self._states[lane]
            for t in range(steps):
                obs[t, lane] = state.obs
                dones[t, lane] = state.done
                valid[t, lane] = not state.ended
                try:
                    item = next(emitted)
                except StopIteration:
                    raise NotRebuildableError(
                        f"{self.path}: stream {self.stream} ends before the rollout of update {update} does "
                        f"(position {start + t}); the run was killed before the log held it"
                    ) from None
                if item.kind == "step":
                    actions[t, lane] = item.action
                rewards[t, lane] = item.reward
                state = self._advance(state, item)
            self._states[lane] = state
        self._next += 1
        clip = np.sign(rewards) if self.ppo.clip_reward else rewards
        return LoggedRollout(
            update=update,
            obs=torch.from_numpy(obs),
            actions=actions,
            rewards=torch.from_numpy(clip).to(torch.float32),
            dones=torch.from_numpy(dones),
            valid=torch.from_numpy(valid),
            next_obs=torch.from_numpy(np.stack([s.obs for s in self._states])),
            next_done=torch.tensor([float(s.done) for s in self._states], dtype=torch.float32),
        )

    def _check_version(self, update: int, start: int) -> None:
        """The log must say that ``update``'s version played every position of its rollout."""
        positions, versions = self._versions
        for position in (start, start + self.ppo.num_steps - 1):
            at = int(np.searchsorted(positions, position, side="right")) - 1
            found = int(versions[at]) if at >= 0 else None
            if found != update:
                raise NotRebuildableError(
                    f"{self.path}: position {position} of stream {self.stream} belongs to version {update}'s rollout "
                    f"by the ledger, the log says version {found} played it; the log and the ledger are of "
                    "different runs"
                )


class RolloutsAhead:
    """The next ``count`` rollouts of ``rollouts``, each re-simulated in a thread while the caller learns from the
    one before (the emulator and the learner's torch kernels run without holding the GIL at the same time).

    At most one rollout waits while the next is being built and the caller learns from a third: three rollouts
    in memory (~58 MB at 8 envs x 128 steps). With one torch thread this saves ~3% of a rebuild's time; with two
    the learner keeps both cores of a 2-core machine busy and it saves nothing (``tests/bench/bench_rebuild.py``).
    A re-simulation error is raised by :meth:`next` for the rollout it struck; :meth:`close` stops the thread
    (also when the caller failed first).
    """

    def __init__(self, rollouts: LoggedRollouts, count: int) -> None:
        self._ready: queue.Queue[LoggedRollout | BaseException] = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, args=(rollouts, count), name="rollouts-ahead", daemon=True)
        self._thread.start()

    def _fill(self, rollouts: LoggedRollouts, count: int) -> None:
        for _ in range(count):
            try:
                item: LoggedRollout | BaseException = rollouts.next()
            except BaseException as error:  # handed to the caller, who raises it
                item = error
            while not self._stop.is_set():
                try:
                    self._ready.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if self._stop.is_set() or isinstance(item, BaseException):
                return

    def next(self) -> LoggedRollout:
        """The next rollout, waiting for its re-simulation."""
        item = self._ready.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> RolloutsAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
