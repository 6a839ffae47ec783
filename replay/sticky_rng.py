"""Sticky-action RNG in ALE states: stored once per many snapshots, derived in between.

With sticky actions ``cloneState(include_rng=True)`` holds the environment's Mersenne Twister as libstdc++
prints it: 624 words and an index, as ~6.7 KB of decimal text behind a 4-byte length (measured with ale-py
0.12.1). That text is random, so it dominates a compressed snapshot (~3.5 KB of ~3.7). Yet the generator only
advances: ALE draws from it a fixed number of times per emulated frame. So a later state's generator is an
earlier one advanced by some number of draws, which numpy's ``MT19937`` reproduces.

A snapshot may thus store its state with the generator text cut out, plus (base snapshot, draws): the
generator of the base snapshot advanced by that many draws. The recorder only stores that form after checking
that it rebuilds the original bytes exactly, and the replayer verifies every restore anyway.
"""

from __future__ import annotations

import re
import struct
import threading
from dataclasses import dataclass

import numpy as np

WORDS = 624
_TEXT = re.compile(rb"(?:\d{1,10} ){%d}\d{1,3}" % WORDS)
_LENGTH = struct.Struct("<I")
_local = threading.local()
MAX_DRAWS = 1 << 26  # searched at record time; beyond this a full snapshot is cheaper than the search
_SEARCH_BLOCKS = 256  # at most this many 624-draw blocks generated per numpy call while searching (~1.3 MB)
_FIRST_BLOCKS = 16  # and at first this many


@dataclass(frozen=True)
class Generator:
    """A Mersenne Twister state as ALE serializes it, and where its text sits in a serialized ALE state."""

    key: np.ndarray  # 624 uint32 words
    pos: int
    start: int  # offset of the 4-byte length that precedes the text
    end: int  # offset just past the text


def find(ale_state: bytes, hint: int | None = None) -> Generator | None:
    """The sticky-action generator in a serialized ALE state (the last twister text), or None.

    ``hint``: where the generator sat in an earlier state of the same env (its ``start``), looked at first.
    """
    match = _at(ale_state, hint) if hint is not None else None
    if match is None:
        match = next(iter(reversed(list(_TEXT.finditer(ale_state)))), None)
    if match is None or match.start() < _LENGTH.size:
        return None
    start = match.start() - _LENGTH.size
    if _LENGTH.unpack_from(ale_state, start)[0] != match.end() - match.start():
        return None
    # The text is WORDS + 1 decimal numbers (the pattern checked it): numpy parses them 8x faster than int().
    numbers = np.fromstring(match.group(), dtype=np.uint64, sep=" ")
    key, pos = numbers[:WORDS], int(numbers[WORDS])
    if key.max() >= 1 << 32 or not 0 <= pos <= WORDS:
        return None
    return Generator(key.astype(np.uint32), pos, start, match.end())


def _at(ale_state: bytes, start: int) -> re.Match[bytes] | None:
    """The twister text behind the length at ``start``, if it is there and no other follows it."""
    if not 0 <= start <= len(ale_state) - _LENGTH.size:
        return None
    text_start = start + _LENGTH.size
    match = _TEXT.fullmatch(ale_state, text_start, text_start + _LENGTH.unpack_from(ale_state, start)[0])
    if match is None or _TEXT.search(ale_state, match.end()) is not None:
        return None
    return match


def cut(ale_state: bytes, generator: Generator) -> bytes:
    """The state without the generator's length and text."""
    return ale_state[: generator.start] + ale_state[generator.end :]


def insert(cut_state: bytes, at: int, key: np.ndarray, pos: int) -> bytes:
    """Put a generator's text (and its length) back into a cut state at offset ``at``."""
    text = (" ".join(map(str, key.tolist())) + f" {pos}").encode()
    return cut_state[:at] + _LENGTH.pack(len(text)) + text + cut_state[at:]


def advance(key: np.ndarray, pos: int, draws: int) -> tuple[np.ndarray, int]:
    """The generator after ``draws`` more 32-bit draws."""
    bit_generator = _bit_generator(key, pos)
    remaining = draws
    while remaining:
        block = min(remaining, 1 << 20)
        bit_generator.random_raw(block)
        remaining -= block
    state = bit_generator.state["state"]
    return np.asarray(state["key"], dtype=np.uint32), int(state["pos"])


def draws_between(base: Generator, target: Generator, limit: int = MAX_DRAWS) -> int | None:
    """How many draws take ``base`` to ``target``, or None if not within ``limit``.

    The words change only when the twister regenerates them, every 624 draws, and the outputs of a block are
    its words tempered (a bijection): so the block of ``target`` is found by comparing whole blocks of raw
    outputs against ``target``'s tempered words, many blocks per numpy call.
    """
    if np.array_equal(base.key, target.key) and target.pos >= base.pos:
        return target.pos - base.pos
    if target.pos < 1:
        return None
    bit_generator = _bit_generator(base.key, base.pos)
    to_boundary = WORDS - base.pos
    bit_generator.random_raw(to_boundary)
    wanted = _temper(target.key.astype(np.uint64))
    blocks_done, batch = 0, _FIRST_BLOCKS
    while to_boundary + WORDS * blocks_done <= limit:
        # Batches grow: the target is usually near (a snapshot interval of draws), and the limit far.
        blocks = min(batch, (limit - to_boundary) // WORDS - blocks_done + 1)
        batch = min(2 * batch, _SEARCH_BLOCKS)
        outputs = bit_generator.random_raw(blocks * WORDS).reshape(blocks, WORDS)
        hits = np.flatnonzero((outputs[:, 0] == wanted[0]) & (outputs == wanted).all(axis=1))
        if len(hits):
            draws = to_boundary + WORDS * (blocks_done + int(hits[0])) + target.pos
            return draws if draws <= limit else None
        blocks_done += blocks
    return None


def _temper(words: np.ndarray) -> np.ndarray:
    """MT19937's output function, on uint64 arrays holding 32-bit words."""
    y = words ^ (words >> np.uint64(11))
    y ^= (y << np.uint64(7)) & np.uint64(0x9D2C5680)
    y ^= (y << np.uint64(15)) & np.uint64(0xEFC60000)
    return (y ^ (y >> np.uint64(18))) & np.uint64(0xFFFFFFFF)


def _bit_generator(key: np.ndarray, pos: int) -> np.random.MT19937:
    """A Mersenne Twister set to ``key`` and ``pos``: this thread's one, as making one (seeding) costs ~90 us."""
    bit_generator = getattr(_local, "bit_generator", None)
    if bit_generator is None:
        bit_generator = _local.bit_generator = np.random.MT19937(0)
    bit_generator.state = {"bit_generator": "MT19937", "state": {"key": key.astype(np.uint32), "pos": pos}}
    return bit_generator
