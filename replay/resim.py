"""Re-simulation of one lane of a stream: anchor, fast-forward, emit verified frames and observations.

An anchor is the seeded reset that began a lane, a snapshot, or a live env left at a verified position by an
earlier replay. Restoring a snapshot is not trusted until a recorded sync check downstream agrees with the
re-simulated emulator (and, for observations, until the wrapper stack has been refilled: an observation check
passes or a reset re-initialises the wrappers). Until then outputs are held back; a failed check falls back to an
earlier anchor. The replayer never emits a frame it has not verified, except from the seeded reset, which is
exact by construction and still checked at every sync position.
"""

from __future__ import annotations

import bisect
import enum
from collections.abc import Iterator
from dataclasses import dataclass, field

import gymnasium as gym
import h5py
import numpy as np
from gymnasium.envs.registration import EnvSpec

from replay import emulator, rebuild
from replay import log_format as fmt
from replay.errors import DesyncError, LogFormatError, ScreenCaptureError
from replay.screens import ScreenTap

ACTION_IDLE = 255
_ACTION_BLOCK = 8192


@dataclass(frozen=True)
class Emitted:
    """One position of a lane as re-simulated."""

    position: int
    kind: str  # "reset", "step" or "idle"
    action: int
    reward: float
    terminated: bool
    truncated: bool
    frame: np.ndarray | None
    observation: np.ndarray | None
    # Every screen emulated at this position, oldest first (see replay.screens); None unless asked for.
    screens: tuple[np.ndarray, ...] | None = None
    lives: int | None = None  # the emulator's lives after this position (wrappers such as SB3's read them)


@dataclass
class LiveEnv:
    """An env left at a verified position, reused when the next request on the lane starts later."""

    env: gym.Env
    position: int


@dataclass
class Lane:
    """Everything recorded about one lane of one stream."""

    source: str
    stream: int
    lane: int
    spec: EnvSpec
    actions: h5py.Dataset  # the stream's (n_lanes, T) dataset
    length: int  # positions on disk
    resets: dict[int, int]  # position -> seed (NO_SEED if unseeded)
    sync: dict[int, tuple[int, int]]  # position -> (state_crc, obs_crc)
    snapshots: np.ndarray  # rows of SNAPSHOT_DTYPE for this lane, by position
    snapshot_bytes: h5py.Dataset
    all_snapshots: np.ndarray  # the stream's whole table (references point into it)
    live: LiveEnv | None = field(default=None, repr=False)
    reset_positions: list[int] = field(init=False, repr=False)
    sync_positions: list[int] = field(init=False, repr=False)
    restore_failures: int = 0  # snapshot restores that did not verify and fell back to an earlier anchor

    def __post_init__(self) -> None:
        self.reset_positions = sorted(self.resets)
        self.sync_positions = sorted(self.sync)

    def close(self) -> None:
        if self.live is not None:
            self.live.env.close()
            self.live = None


class _RestoreFailed(Exception):
    pass


def resimulate(
    lane: Lane,
    first: int,
    last: int,
    *,
    frames: bool,
    observations: bool,
    episode: int | None = None,
    emulator_frames: bool = False,
) -> Iterator[Emitted]:
    """Yield positions ``first..last`` (inclusive) of ``lane``, verified; with ``emulator_frames``, each with the
    screens emulated at it (:mod:`replay.screens`; refused with ``ScreenCaptureError`` at the first position
    for a stack that cannot give them)."""
    if not 0 <= first <= last < lane.length:
        raise LogFormatError(
            f"{lane.source}: positions {first}..{last} are outside stream {lane.stream} (0..{lane.length - 1})"
        )
    for anchor in _anchors(lane, first, observations):
        try:
            yield from _run(lane, anchor, first, last, frames, observations, episode, emulator_frames)
            return
        except _RestoreFailed:
            lane.restore_failures += 1
            continue
    raise DesyncError(
        f"{lane.source}: no anchor reproduces stream {lane.stream} lane {lane.lane} at position {first}; the "
        "log does not match this emulator (run `python -m replay.verify` for the first divergent step)",
        episode=episode,
        step=None,
    )


class AnchorKind(enum.IntEnum):
    """Where re-simulation starts; at equal positions the higher value is preferred (cheaper to start from)."""

    SEED = 0  # the seeded reset that began the lane, or a later one
    SNAPSHOT = 1  # a stored emulator snapshot, trusted once a check downstream agrees
    LIVE = 2  # the env an earlier read left at a verified position


@dataclass(frozen=True)
class Anchor:
    """A position re-simulation can start from: ``row`` is a snapshot's row, ``seed`` a seeded reset's seed."""

    kind: AnchorKind
    position: int
    row: int = -1
    seed: int = 0


class Trust(enum.Enum):
    """How far the observations re-simulation produces can be trusted since it started from its anchor."""

    UNVERIFIED = "unverified"  # after a restore: the wrappers' stack (the frame stack) is not refilled yet
    PENDING = "pending"  # a reset refilled the wrappers; exact once the next state check agrees
    VERIFIED = "verified"


def _anchors(lane: Lane, first: int, observations: bool) -> Iterator[Anchor]:
    """Candidate anchors, nearest first (at the same position: live, then snapshot, then seeded reset)."""
    candidates: list[Anchor] = []
    if lane.live is not None and lane.live.position < first:
        candidates.append(Anchor(AnchorKind.LIVE, lane.live.position))
    for row, snapshot in enumerate(lane.snapshots):
        position = int(snapshot["position"])
        if position < first and (not observations or _can_trust_observations(lane, position, first)):
            candidates.append(Anchor(AnchorKind.SNAPSHOT, position, row=row))
    for position, seed in lane.resets.items():
        if seed != fmt.NO_SEED and position <= first:
            candidates.append(Anchor(AnchorKind.SEED, position, seed=seed))
    candidates.sort(key=lambda a: (a.position, a.kind), reverse=True)
    for anchor in candidates:
        if anchor.kind is AnchorKind.LIVE and (lane.live is None or lane.live.position != anchor.position):
            continue  # a failed attempt at a nearer anchor took (and closed) the live env
        yield anchor


def _can_trust_observations(lane: Lane, snapshot: int, first: int) -> bool:
    """Observations after a restore are exact only once a reset or an observation check has refilled the stack."""
    return any(
        bisect.bisect_right(positions, first) > bisect.bisect_right(positions, snapshot)
        for positions in (lane.reset_positions, lane.sync_positions)
    )


def _run(
    lane: Lane,
    anchor: Anchor,
    first: int,
    last: int,
    frames: bool,
    observations: bool,
    episode: int | None,
    emulator_frames: bool,
) -> Iterator[Emitted]:
    kind, position = anchor.kind, anchor.position
    if kind is AnchorKind.LIVE:
        live, lane.live = lane.live, None
        env = live.env
    elif lane.live is not None:
        # A seeded reset reloads the ROM and reseeds everything, so an env left by an earlier read serves as well
        # as a new one (building one costs ~0.2 s); the sync checks would catch any difference.
        env, lane.live = lane.live.env, None
    else:
        env = rebuild.make_env(lane.spec, lane.source)
    tap = _tap(env) if emulator_frames else None
    if kind is AnchorKind.LIVE:
        trusted_frames, trusted_obs = True, Trust.VERIFIED
    elif kind is AnchorKind.SEED:
        if tap is not None:
            tap.start(position == first)
        observation, _ = env.reset(seed=anchor.seed)
        trusted_frames, trusted_obs = True, Trust.VERIFIED
    else:
        first_seed = next((s for s in lane.resets.values() if s != fmt.NO_SEED), 0)
        env.reset(seed=first_seed)
        try:
            state = _snapshot_state(lane, anchor.row)
        except LogFormatError:
            env.close()
            raise _RestoreFailed from None  # a damaged snapshot: an earlier anchor may still work
        try:
            emulator.restore(env, state)
        except Exception:  # a damaged or crafted state: ALE raises SystemError, MemoryError, ValueError...
            env.close()
            raise _RestoreFailed from None
        stateful = rebuild.stateful_wrappers(lane.spec)
        if state.wrappers is not None:
            try:
                emulator.set_wrapper_state(env, state.wrappers)
            except LogFormatError:
                env.close()
                raise _RestoreFailed from None
        elif stateful == [gym.wrappers.TimeLimit] and not lane.spec.additional_wrappers:
            # A format-2 snapshot kept no wrapper state; a TimeLimit with nothing above it counts positions.
            since_reset = position - max((p for p in lane.resets if p <= position), default=0)
            emulator.set_wrapper_state(env, {"TimeLimit": {"_elapsed_steps": since_reset}})
        elif stateful:  # what they held (frames counted under a frame skip, a sticky action) is not recorded
            env.close()
            raise _RestoreFailed
        trusted_frames, trusted_obs = False, Trust.UNVERIFIED
    held: list[Emitted] = []
    emitted_any = False
    at = position  # the last position the env has emulated
    matched = position  # the last position known to match the recording (a snapshot's only once checked)
    finished = False
    healthy = True
    try:
        if kind is AnchorKind.SEED and position == first:
            yield Emitted(
                position,
                "reset",
                0,
                0.0,
                False,
                False,
                emulator.screen(env) if frames else None,
                np.array(observation) if observations else None,
                tap.take() if tap is not None else None,
                emulator.lives(env),
            )
            emitted_any = True
        actions = np.empty(0, dtype=np.uint8)
        action_base = at + 1
        while not (at >= last and not held) and at + 1 < lane.length:
            p = at + 1
            if p - action_base >= len(actions):
                action_base = p
                actions = _read_actions(lane, p, int(env.action_space.n))
            action = int(actions[p - action_base])
            seed = lane.resets.get(p)
            reward, terminated, truncated = 0.0, False, False
            if tap is not None:
                tap.start(first <= p <= last)
            if seed is not None:
                observation, _ = env.reset(seed=None if seed == fmt.NO_SEED else seed)
                event = "reset"
                if trusted_obs is Trust.UNVERIFIED:
                    trusted_obs = Trust.PENDING
            elif action == ACTION_IDLE:
                event = "idle"
            else:
                observation, reward, terminated, truncated, _ = env.step(action)
                event = "step"
            at = p
            check = lane.sync.get(p)
            if check is not None:
                state_ok = emulator.current_state_crc(env) == check[0]
                obs_ok = event == "idle" or emulator.obs_crc(observation) == check[1]
                if not state_ok or (trusted_obs is Trust.VERIFIED and observations and not obs_ok):
                    if emitted_any or kind is not AnchorKind.SNAPSHOT:
                        raise DesyncError(
                            f"{lane.source}: stream {lane.stream} lane {lane.lane} diverges at position {p} "
                            f"(episode {episode}: the {'emulator state' if not state_ok else 'observation'} "
                            f"differs from the recording; the last check that matched is at position {matched}). "
                            "The log is damaged there, or this emulator (ale-py, ROM) differs from the one that "
                            "recorded it: `python -m replay.verify <log>` lists every episode that replays",
                            episode=episode,
                            step=p,
                            matched=matched,
                        )
                    raise _RestoreFailed
                trusted_frames = True
                matched = p
                if trusted_obs is Trust.PENDING or (trusted_obs is Trust.UNVERIFIED and obs_ok):
                    trusted_obs = Trust.VERIFIED
            if first <= p <= last:
                if observations and trusted_obs is Trust.UNVERIFIED:
                    raise _RestoreFailed  # this anchor cannot give exact observations this early
                held.append(
                    Emitted(
                        p,
                        event,
                        action,
                        float(reward),
                        bool(terminated),
                        bool(truncated),
                        emulator.screen(env) if frames else None,
                        np.array(observation) if observations and event != "idle" else None,
                        tap.take() if tap is not None else None,
                        emulator.lives(env),
                    )
                )
            if held and trusted_frames and (not observations or trusted_obs is Trust.VERIFIED):
                yield from held
                emitted_any = True
                held.clear()
        if held:
            if kind is not AnchorKind.SNAPSHOT:
                yield from held
            else:
                raise _RestoreFailed  # nothing downstream verifies this restore
        finished = True
    except (DesyncError, _RestoreFailed):
        healthy = False
        raise
    finally:
        if tap is not None:
            tap.remove()
        if healthy and (finished or (trusted_frames and trusted_obs is Trust.VERIFIED)):
            lane.live = LiveEnv(env, at)
        else:
            env.close()


def _tap(env: gym.Env) -> ScreenTap:
    """A tap on ``env``'s emulator; a stack that cannot give every emulated frame is refused (and closed)."""
    try:
        return ScreenTap(env)
    except ScreenCaptureError:
        env.close()
        raise


def _read_actions(lane: Lane, position: int, n_actions: int) -> np.ndarray:
    try:
        actions = lane.actions[lane.lane, position : min(lane.length, position + _ACTION_BLOCK)]
    except OSError as error:  # a damaged compressed chunk
        raise LogFormatError(
            f"{lane.source}: the actions of stream {lane.stream} from position {position} cannot be read ({error}); "
            f"the file is damaged there {fmt.DAMAGED_FIX}"
        ) from None
    bad = np.flatnonzero((actions >= n_actions) & (actions != ACTION_IDLE))
    if bad.size:
        at = position + int(bad[0])
        raise LogFormatError(
            f"{lane.source}: stream {lane.stream} lane {lane.lane} records action {int(actions[bad[0]])} at position "
            f"{at}, but the env has {n_actions} actions; the file is damaged there {fmt.DAMAGED_FIX}"
        )
    return actions


def _snapshot_state(lane: Lane, row: int) -> emulator.LaneState:
    state = _decode(lane, lane.snapshots[row])
    if state.rng_from is not None:
        base_row = state.rng_from[0]
        if not 0 <= base_row < len(lane.all_snapshots):
            raise LogFormatError(f"{lane.source}: a snapshot names generator base {base_row}, which does not exist")
        state = emulator.with_generator(state, _decode(lane, lane.all_snapshots[base_row]))
    return state


def _decode(lane: Lane, snapshot: np.void) -> emulator.LaneState:
    reference = None
    if snapshot["ref"] != fmt.NO_REF:
        ref = int(snapshot["ref"])
        if not 0 <= ref < len(lane.all_snapshots):
            raise LogFormatError(f"{lane.source}: a snapshot names dictionary {ref}, which does not exist")
        reference = emulator.decode_snapshot(_blob(lane, lane.all_snapshots[ref]), None)
    return emulator.decode_snapshot(_blob(lane, snapshot), reference)


def _blob(lane: Lane, row: np.void) -> bytes:
    start, size = int(row["offset"]), int(row["nbytes"])
    if start < 0 or size < 0 or start + size > lane.snapshot_bytes.shape[0]:
        raise LogFormatError(f"{lane.source}: a snapshot points outside the snapshot data (offset {start})")
    try:
        return lane.snapshot_bytes[start : start + size].tobytes()
    except OSError as error:
        raise LogFormatError(
            f"{lane.source}: a snapshot cannot be read ({error}); the file is damaged {fmt.DAMAGED_FIX}"
        ) from None
