"""Sticky-action snapshots store their generator as "a base snapshot's, advanced by n draws", and stay exact."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import STICKY, make_env, record_single, replay_in_fresh_process

from replay import TrajectoryLog, sticky_rng, storage
from replay import log_format as fmt
from replay.emulator import decode_snapshot


def _snapshot_headers(path):
    """(nbytes, rng_from) of every snapshot of stream 0, decoded the way the reader does."""
    with storage.open_for_reading(path) as handle:
        group = handle[fmt.GROUP_STREAMS][fmt.stream_name(0)]
        rows = group[fmt.DATASET_SNAPSHOTS][:]
        blobs = group[fmt.DATASET_SNAPSHOT_BYTES][:].tobytes()
    decoded = []
    for row in rows:
        reference = None
        if row["ref"] != fmt.NO_REF:
            ref = rows[row["ref"]]
            reference = decode_snapshot(blobs[ref["offset"] : ref["offset"] + ref["nbytes"]], None)
        state = decode_snapshot(blobs[row["offset"] : row["offset"] + row["nbytes"]], reference)
        decoded.append((int(row["nbytes"]), state.rng_from))
    return decoded


@pytest.mark.parametrize("game", ["Breakout", "Seaquest", "Qbert"])
def test_derived_generators_shrink_snapshots_and_replay_exactly_in_a_fresh_process(tmp_path, game):
    path = tmp_path / "sticky.h5"
    digests = record_single(path, game, STICKY, 1500, snapshot_interval=100)
    headers = _snapshot_headers(path)
    derived = [nbytes for nbytes, rng_from in headers if rng_from is not None]
    whole = [nbytes for nbytes, rng_from in headers[1:] if rng_from is None]
    assert len(derived) >= len(headers) - 2, "all but the first snapshots should derive their generator"
    assert max(derived) < 1000 < min(whole or [3000]), (derived, whole)
    replayed = replay_in_fresh_process(path)
    assert set(replayed) == set(digests)
    for key, digest in digests.items():
        assert replayed[key] == (digest.frames, digest.observations), f"episode at {key} differs"
    with TrajectoryLog(path) as log:  # seek from a derived snapshot near the end
        last = log.episodes[-1]
        list(log.replay(last.index, max(last.length - 2, 0), last.length))
        assert sum(lane.restore_failures for lane in log._lanes.values()) == 0


def test_a_seeded_reset_makes_the_next_snapshot_whole(tmp_path):
    from replay import RecordTrajectory

    path = tmp_path / "reseeded.h5"
    env = RecordTrajectory(make_env("Pong", STICKY), path, snapshot_interval=50)
    env.reset(seed=1)
    for _ in range(120):
        env.step(0)
    env.reset(seed=2)  # reseeds the sticky-action generator: no earlier snapshot can reach it
    for _ in range(120):
        env.step(0)
    env.close()
    kinds = [rng_from is None for _, rng_from in _snapshot_headers(path)]
    assert kinds[0] and not all(kinds[1:3]) and sum(kinds) == 2, kinds


def test_generator_arithmetic_matches_numpy_and_finds_draw_counts():
    bit_generator = np.random.MT19937(7)
    state = bit_generator.state["state"]
    base_key, base_pos = np.asarray(state["key"], dtype=np.uint32), int(state["pos"])
    for draws in (0, 1, 623, 624, 625, 5000, 99_999):
        key, pos = sticky_rng.advance(base_key, base_pos, draws)
        base = sticky_rng.Generator(base_key, base_pos, 0, 0)
        target = sticky_rng.Generator(key, pos, 0, 0)
        assert sticky_rng.draws_between(base, target, 200_000) == draws
    text_state = sticky_rng.insert(b"head|tail", 5, base_key, base_pos)
    found = sticky_rng.find(text_state)
    assert found is not None and np.array_equal(found.key, base_key) and found.pos == base_pos
    assert sticky_rng.cut(text_state, found) == b"head|tail"
    # A hint (where an earlier state held it) finds the same; a wrong or impossible one falls back to the search,
    # and so does a hint at a text another one follows (the generator is the last).
    for hint in (5, 0, 6, -3, len(text_state)):
        again = sticky_rng.find(text_state, hint)
        assert again is not None and (again.start, again.end, again.pos) == (found.start, found.end, found.pos)
        assert np.array_equal(again.key, found.key)
    two = sticky_rng.insert(text_state, len(text_state), base_key, (base_pos + 1) % 624)
    assert sticky_rng.find(two, 5).start == len(text_state) and sticky_rng.find(two, 5).pos == (base_pos + 1) % 624
    assert sticky_rng.find(b"head|tail", 5) is None
    unrelated = sticky_rng.Generator(np.asarray(np.random.MT19937(8).state["state"]["key"], np.uint32), 3, 0, 0)
    assert sticky_rng.draws_between(base, unrelated, 10_000) is None
