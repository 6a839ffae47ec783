"""The emulator side: rebuild an env from its recorded spec, capture and restore ALE states, hash them.

Snapshots hold the ALE state and the base env's ``np_random`` state, zlib-compressed with the lane's first
snapshot as dictionary. With sticky actions the state includes the sticky-action RNG
(``cloneState(include_rng=True)``, ~3.5 KB compressed, the RNG being most of it); most snapshots store it as
"an earlier snapshot's generator advanced by n draws" instead (``replay.sticky_rng``), so a snapshot is ~0.2 KB
either way.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ale_py
import gymnasium as gym
import numpy as np

from replay import sticky_rng
from replay.errors import LogFormatError, RecordingError

gym.register_envs(ale_py)


@dataclass(frozen=True)
class LaneState:
    """What a snapshot of one env holds: the serialized ALE state (with the sticky-action RNG when the env has
    sticky actions) and the env's numpy RNG state."""

    ale_state: bytes
    np_random_state: str  # JSON of numpy's bit_generator.state
    # Set when ale_state has its sticky-action generator cut out: (snapshot row of the base, draws, offset).
    rng_from: tuple[int, int, int] | None = None
    # The hidden state of the stack's stateful wrappers (see WRAPPER_STATE); None in format-2 snapshots.
    wrappers: dict[str, dict[str, Any]] | None = None


def base_env(env: gym.Env) -> gym.Env:
    base = env.unwrapped
    if not hasattr(base, "ale") or not hasattr(base, "clone_state"):
        raise RecordingError(
            f"expected an env whose base is an ALE env (ale_py.env.AtariEnv), got {type(base).__name__}; "
            "make it with gym.make('ALE/<Game>-v5', ...)"
        )
    return base


def state_crc(ale_state: ale_py.ALEState) -> int:
    """CRC of the emulator state without the sticky-action RNG: cheap, deterministic, compared at replay."""
    return zlib.crc32(ale_state.serialize())


def obs_crc(observation: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(observation).data)


def rng_state_json(generator: np.random.Generator) -> str:
    return json.dumps(generator.bit_generator.state)


def generator_from_json(text: str) -> np.random.Generator:
    state = json.loads(text)
    name = state.get("bit_generator")
    if name not in ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64"):
        raise LogFormatError(f"unknown numpy bit generator {name!r} in a snapshot")
    bit_generator = getattr(np.random, name)()
    bit_generator.state = state
    return np.random.Generator(bit_generator)


def encode_snapshot(state: LaneState, reference: LaneState | None) -> bytes:
    header: dict = {"rng": state.np_random_state}
    if state.rng_from is not None:
        header["rng_from"] = list(state.rng_from)
    if state.wrappers:
        header["wrappers"] = state.wrappers
    payload = json.dumps(header).encode() + b"\n" + state.ale_state
    if reference is None:
        return zlib.compress(payload, 6)
    compressor = zlib.compressobj(6, zdict=_dictionary(reference))
    return compressor.compress(payload) + compressor.flush()


# A snapshot inflates to ~15 KB (ALE state with its RNG text, numpy RNG, wrapper state): a damaged or crafted one
# that claims more is refused instead of filling memory.
_MAX_SNAPSHOT_BYTES = 1 << 20


def decode_snapshot(blob: bytes, reference: LaneState | None) -> LaneState:
    try:
        decompressor = zlib.decompressobj() if reference is None else zlib.decompressobj(zdict=_dictionary(reference))
        payload = decompressor.decompress(blob, _MAX_SNAPSHOT_BYTES)
        if decompressor.unconsumed_tail or not decompressor.eof:
            raise ValueError(f"it inflates past {_MAX_SNAPSHOT_BYTES} bytes, or ends early")
        header_text, ale_state = payload.split(b"\n", 1)
        header = json.loads(header_text)
        rng_from = header.get("rng_from")
        if rng_from is not None:
            base, draws, at = (int(v) for v in rng_from)
            if base < 0 or not 0 <= draws <= sticky_rng.MAX_DRAWS or not 0 <= at <= len(ale_state):
                raise ValueError(f"bad generator reference {rng_from}")
            rng_from = (base, draws, at)
        wrappers = header.get("wrappers")
        if wrappers is not None:
            _check_wrapper_state(wrappers)
        return LaneState(ale_state, header["rng"], rng_from, wrappers)
    except (zlib.error, ValueError, KeyError, TypeError) as error:
        raise LogFormatError(f"a snapshot is damaged ({error}); the log's other anchors may still work") from None


def with_generator(state: LaneState, base: LaneState) -> LaneState:
    """Rebuild a state whose sticky-action generator was cut out, from the full state of its base snapshot."""
    if state.rng_from is None:
        return state
    generator = sticky_rng.find(base.ale_state) if base.rng_from is None else None
    if generator is None:
        raise LogFormatError("a snapshot's generator base holds no generator; the log's other anchors may still work")
    _, draws, at = state.rng_from
    key, pos = sticky_rng.advance(generator.key, generator.pos, draws)
    return LaneState(sticky_rng.insert(state.ale_state, at, key, pos), state.np_random_state, None, state.wrappers)


def _dictionary(reference: LaneState) -> bytes:
    # zlib keeps the last 32 KB of the dictionary; a whole serialized state fits.
    return reference.ale_state


def current_state_crc(env: gym.Env) -> int:
    return state_crc(base_env(env).ale.cloneState(include_rng=False))


def restore(env: gym.Env, state: LaneState) -> None:
    """Restore a snapshot into ``env``. Emulate one frame first: restoring into a just-reset emulator is wrong in
    some games (Qbert, Tetris, ...; 8 of 103 in a probe with ale-py 0.12.1). The screen stays stale until the
    next step."""
    base = base_env(env)
    base.ale.act(0)
    base.ale.restoreState(ale_py.ALEState(state.ale_state))
    base.np_random = generator_from_json(state.np_random_state)
    _resync_wrappers(env)


def _resync_wrappers(env: gym.Env) -> None:
    """Wrappers that track emulator facts (lives) must re-read them after a restore, or they act on stale ones.

    A wrapper opts in by defining ``resync_after_restore()``; gymnasium's AtariPreprocessing is handled here.
    Any other hidden wrapper state is caught by the sync checks, which then fall back to an earlier anchor.
    """
    layer = env
    while isinstance(layer, gym.Wrapper):
        if isinstance(layer, gym.wrappers.AtariPreprocessing):
            layer.lives = layer.ale.lives()
            layer.game_over = False
        resync = getattr(type(layer), "resync_after_restore", None)
        if callable(resync):
            resync(layer)
        layer = layer.env


# Wrappers whose hidden state decides what happens next, and that state: a snapshot carries it (format 3). A
# TimeLimit under AtariPreprocessing counts emulated frames and no-ops, which no position count tells; a
# StickyAction holds the action it may repeat. (Their RNG is the base env's, which snapshots hold anyway.)
WRAPPER_STATE: dict[type, tuple[str, ...]] = {
    gym.wrappers.TimeLimit: ("_elapsed_steps",),
    gym.wrappers.StickyAction: ("last_action", "is_sticky_actions", "num_repeats", "repeats_taken"),
}


def wrapper_state(env: gym.Env) -> dict[str, dict[str, Any]]:
    """What a snapshot must restore of the stack's stateful wrappers (a recorder accepts one of each)."""
    state = {}
    layer = env
    while isinstance(layer, gym.Wrapper):
        names = WRAPPER_STATE.get(type(layer))
        if names:
            state[type(layer).__name__] = {name: plain(getattr(layer, name)) for name in names}
        layer = layer.env
    return state


def set_wrapper_state(env: gym.Env, state: dict[str, dict[str, Any]]) -> None:
    layer = env
    while isinstance(layer, gym.Wrapper):
        names = WRAPPER_STATE.get(type(layer))
        if names:
            values = state.get(type(layer).__name__)
            if values is None or set(values) != set(names):
                raise LogFormatError(f"a snapshot lacks the state of the stack's {type(layer).__name__}")
            for name in names:
                setattr(layer, name, values[name])
        layer = layer.env


def plain(value: Any) -> Any:
    """A wrapper attribute as JSON holds it: numpy scalars (and 0-d arrays, an action a recorder accepts) become
    Python numbers."""
    return value.item() if isinstance(value, (np.generic, np.ndarray)) and np.ndim(value) == 0 else value


def _check_wrapper_state(wrappers: Any) -> None:
    ok = isinstance(wrappers, dict) and all(
        isinstance(values, dict) and all(v is None or (type(v) in (int, bool) and v >= 0) for v in values.values())
        for values in wrappers.values()
    )
    if not ok:
        raise ValueError(f"bad wrapper state {str(wrappers)[:200]}")


def lives(env: gym.Env) -> int:
    """The lives the emulator counts now (0.4 us)."""
    return int(base_env(env).ale.lives())


def screen(env: gym.Env) -> np.ndarray:
    """The frame ``env.unwrapped.render()`` shows in rgb_array mode, whatever render_mode the env has."""
    return base_env(env).ale.getScreenRGB()


def rom_md5(game: str) -> str:
    path = Path(ale_py.roms.get_rom_path(game))
    return hashlib.md5(path.read_bytes()).hexdigest()


def game_of(env: gym.Env) -> str:
    return str(base_env(env)._game)
