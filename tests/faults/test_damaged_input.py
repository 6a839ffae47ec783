"""Damaged logs: every kind of damage gives a ReplayError naming the file, or an exact replay, in bounded memory.

Each case damages a copy of a small real log, then a separate reader process (its address space capped with
RLIMIT_AS) opens it, lists its episodes, replays every episode from its reset, seeks into every episode (which
starts from snapshots) and verifies it. Whatever the damage, only ReplayErrors may escape, each naming the file;
a log that still reads must replay exactly what was recorded; the reader's peak memory stays under a bound; and
the file is byte for byte the same afterwards.
"""

from __future__ import annotations

import hashlib
import json
import select
import shutil
import subprocess
import sys
import textwrap
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from helpers import STICKY, record_single
from hypothesis import given, note, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from replay import DesyncError, EnvironmentMismatchError, LogFormatError, ReplayError
from replay import log_format as fmt
from replay.emulator import decode_snapshot, rom_md5

# A whole read of the log below (open, replay, seek, verify) peaks at ~75 MB resident and ~320 MB of address
# space (measured with ale-py 0.12, h5py 3.16).
ADDRESS_SPACE_CAP = 1 << 30  # a reader that tries to allocate more gets a MemoryError, which fails the case
PEAK_RSS_BOUND_MB = 256
READ_TIMEOUT = 120  # seconds for one log: a reader stuck replaying an absurd episode fails the case

STREAM = f"{fmt.GROUP_STREAMS}/{fmt.stream_name(0)}"
ACTIONS = f"{STREAM}/{fmt.DATASET_ACTIONS}"
RESETS = f"{STREAM}/{fmt.DATASET_RESETS}"
VERSIONS = f"{STREAM}/{fmt.DATASET_VERSIONS}"
SYNC = f"{STREAM}/{fmt.DATASET_SYNC}"
SNAPSHOTS = f"{STREAM}/{fmt.DATASET_SNAPSHOTS}"
SNAPSHOT_BYTES = f"{STREAM}/{fmt.DATASET_SNAPSHOT_BYTES}"
EPISODES = fmt.DATASET_EPISODES
DATASETS = (ACTIONS, RESETS, VERSIONS, SYNC, SNAPSHOTS, SNAPSHOT_BYTES, EPISODES)

READER = textwrap.dedent(
    """
    import hashlib, json, os, resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[1]), int(sys.argv[1])))
    results = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # the emulator prints its banner on stdout: keep the result channel clean
    from replay import ReplayError, TrajectoryLog, verify


    def peak_rss_mb():
        # VmHWM is this process's own peak; getrusage's ru_maxrss starts from the parent's (Linux keeps it across
        # fork and exec), which after the rest of the suite was ~730 MB.
        with open("/proc/self/status") as status:
            line = next(line for line in status if line.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024


    def read(path):
        out = {"errors": [], "episodes": None, "frames": [], "verify": None}

        def attempt(stage, action):
            try:
                return action()
            except Exception as error:
                mro = [cls.__name__ for cls in type(error).__mro__]
                out["errors"].append({"stage": stage, "types": mro, "message": str(error)})
                return None

        def frames(log, episode, start):
            digests = [hashlib.sha256(f.data).hexdigest() for f in log.frames(episode.index, start)]
            out["frames"].append([episode.start_step + start, digests])

        def listing(log):
            log.metadata, log.versions, log.game, log.action_meanings
            return [
                [e.stream, e.env_index, e.start_step, e.length, e.total_reward, e.terminated, e.truncated, e.finished]
                for e in log.episodes
            ]

        log = attempt("open", lambda: TrajectoryLog(path))
        if log is not None:
            with log:
                out["episodes"] = attempt("list", lambda: listing(log))
                for episode in log.episodes:
                    attempt(f"replay episode {episode.index}", lambda: frames(log, episode, 0))
                for episode in reversed(log.episodes):  # back from the end: each seek starts from a snapshot
                    middle = episode.length // 2
                    attempt(f"seek into episode {episode.index}", lambda: frames(log, episode, middle))
        report = attempt("verify", lambda: verify(path, progress=False))
        if report is not None:
            out["verify"] = {"ok": report.ok, "text": str(report)}
        out["peak_rss_mb"] = peak_rss_mb()
        return out


    for line in sys.stdin:
        results.write(json.dumps(read(line.rstrip("\\n"))) + "\\n")
        results.flush()
    """
)


class Reader:
    """A long-lived reader process (imports and the emulator warm), restarted when it dies or when a case pushed
    its peak memory over the bound, so every case is measured on its own."""

    def __init__(self, stderr: Path) -> None:
        self.stderr = stderr
        self.process: subprocess.Popen | None = None

    def read(self, path: Path) -> dict[str, Any]:
        if self.process is None or self.process.poll() is not None:
            with open(self.stderr, "w") as sink:
                self.process = subprocess.Popen(
                    [sys.executable, "-c", READER, str(ADDRESS_SPACE_CAP)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=sink,
                    text=True,
                )
        self.process.stdin.write(f"{path}\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], READ_TIMEOUT)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            self.close()
            tail = self.stderr.read_text()[-3000:]
            pytest.fail(f"the reader died or hung on {path} (exit {self.process.returncode}):\n{tail}")
        outcome = json.loads(line)
        if outcome["peak_rss_mb"] > PEAK_RSS_BOUND_MB:
            self.close()
        return outcome

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def base_log(tmp_path_factory) -> Path:
    """300 steps of Breakout: a finished episode and an unfinished one, a snapshot every 32 positions."""
    path = tmp_path_factory.mktemp("damaged") / "base.h5"
    record_single(path, "Breakout", STICKY, 300, snapshot_interval=32, sync_interval=8)
    with h5py.File(path, "r+") as handle:  # what a trainer adds
        handle[fmt.GROUP_METADATA].attrs["total_steps"] = json.dumps(300)
    return path


@pytest.fixture(scope="module")
def reader(tmp_path_factory):
    process = Reader(tmp_path_factory.mktemp("reader") / "stderr.txt")
    yield process
    process.close()


class Reference:
    """What the undamaged log gives: its episode listing and the sha256 of the frame at each position."""

    def __init__(self, episodes: list[list], frames: list[str]) -> None:
        self.episodes = episodes
        self.frames = frames

    def __repr__(self) -> str:  # hypothesis prints the arguments of a failing example
        return f"Reference({len(self.episodes)} episodes, {len(self.frames)} frames)"


@pytest.fixture(scope="module")
def reference(base_log, reader) -> Reference:
    outcome = reader.read(base_log)
    assert outcome["errors"] == [] and outcome["verify"]["ok"], outcome
    episodes = outcome["episodes"]
    assert len(episodes) == 2 and episodes[0][-1] and not episodes[1][-1], "expected a finished and a running one"
    frames = [digest for start, digests in outcome["frames"][: len(episodes)] for digest in digests]
    assert len(frames) == episodes[-1][2] + episodes[-1][3] + 1
    return Reference(episodes, frames)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_damaged(reader: Reader, path: Path, reference: Reference) -> dict[str, Any]:
    """Read ``path`` in the reader process and check what holds for any damage: only ReplayErrors, each naming
    the file; frames read are the recorded ones; the file unchanged; memory bounded."""
    before = _sha256(path)
    outcome = reader.read(path)
    assert _sha256(path) == before, "reading must never modify the file"
    for error in outcome["errors"]:
        escaped = f"{error['types'][0]} escaped at {error['stage']}: {error['message']}"
        assert ReplayError.__name__ in error["types"], escaped
        assert str(path) in error["message"], f"the message does not name the file: {error['message']}"
    assert outcome["peak_rss_mb"] <= PEAK_RSS_BOUND_MB, f"the reader peaked at {outcome['peak_rss_mb']:.0f} MB"
    return outcome


def _assert_exact(outcome: dict[str, Any], reference: Reference) -> None:
    """Every frame replayed is the one recorded at its position."""
    for start, digests in outcome["frames"]:
        assert digests == reference.frames[start : start + len(digests)], f"frames from position {start} differ"


# -- the damage --------------------------------------------------------------------------------------------------

Damage = Callable[[Path], None]


def edit(change: Callable[[h5py.File], None]) -> Damage:
    def damage(path: Path) -> None:
        with h5py.File(path, "r+") as handle:
            change(handle)

    return damage


def deleted(name: str) -> Damage:
    return edit(lambda handle: handle.__delitem__(name))


def rewritten(name: str, make: Callable[[np.ndarray], np.ndarray]) -> Damage:
    """The dataset replaced by what ``make`` builds from its data."""

    def change(handle: h5py.File) -> None:
        data = handle[name][()]
        del handle[name]
        handle.create_dataset(name, data=make(data))

    return edit(change)


def resized(name: str, size: int) -> Damage:
    """Declared bigger or smaller; growing is sparse, so it costs nothing on disk."""
    return edit(lambda handle: handle[name].resize(size, axis=handle[name].ndim - 1))


def cell(name: str, row: int, field: str, value: object) -> Damage:
    def change(handle: h5py.File) -> None:
        table = handle[name][()]
        table[field][row] = value
        handle[name][...] = table

    return edit(change)


def action(position: int, value: int) -> Damage:
    return edit(lambda handle: handle[ACTIONS].__setitem__((0, position), value))


def attribute(owner: str, key: str, value: object) -> Damage:
    return edit(lambda handle: handle[owner].attrs.__setitem__(key, value))


def attribute_deleted(owner: str, key: str) -> Damage:
    return edit(lambda handle: handle[owner].attrs.__delitem__(key))


def spec_changed(**changes: object) -> Damage:
    def change(handle: h5py.File) -> None:
        attrs = handle[STREAM].attrs
        spec = json.loads(attrs[fmt.ATTR_SPEC_JSON])
        spec["kwargs"].update(changes)
        attrs[fmt.ATTR_SPEC_JSON] = json.dumps(spec)

    return edit(change)


def both(*damages: Damage) -> Damage:
    def damage(path: Path) -> None:
        for one in damages:
            one(path)

    return damage


def truncated(fraction: float) -> Damage:
    return lambda path: path.write_bytes(path.read_bytes()[: int(path.stat().st_size * fraction)])


def replaced_by(data: bytes) -> Damage:
    return lambda path: path.write_bytes(data)


def another_hdf5_file(path: Path) -> None:
    with h5py.File(path, "w") as handle:
        handle["x"] = [1, 2, 3]


def flipped(name: str, at: int = 40) -> Damage:
    """Bytes flipped inside the first stored chunk of a dataset, which is compressed: it fails its checksum."""

    def damage(path: Path) -> None:
        with h5py.File(path, "r") as handle:
            chunk = handle[name].id.get_chunk_info(0)
        flip_bytes(path, chunk.byte_offset + min(at, chunk.size - 4))

    return damage


def snapshot_flipped(row: int) -> Damage:
    """Bytes flipped in the middle of one snapshot (the snapshot data is stored unfiltered)."""

    def damage(path: Path) -> None:
        with h5py.File(path, "r") as handle:
            snapshot, data = handle[SNAPSHOTS][row], handle[SNAPSHOT_BYTES]
            target = int(snapshot["offset"]) + int(snapshot["nbytes"]) // 2
            start = target - target % data.chunks[0]
            at = data.id.get_chunk_info_by_coord((start,)).byte_offset + target - start
        flip_bytes(path, at)

    return damage


def flip_bytes(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    for offset in range(at, at + 4):
        data[offset] ^= 0xA5
    path.write_bytes(bytes(data))


def another_game(game: str) -> Damage:
    """A log of another game: its spec, labels and ROM, with Breakout's actions and snapshots."""

    def change(handle: h5py.File) -> None:
        attrs = handle[STREAM].attrs
        spec = json.loads(attrs[fmt.ATTR_SPEC_JSON])
        spec["id"] = f"ALE/{game}-v5"
        spec["kwargs"]["game"] = game.lower()
        attrs[fmt.ATTR_SPEC_JSON] = json.dumps(spec)
        attrs[fmt.ATTR_ENV_ID], attrs[fmt.ATTR_GAME] = f"ALE/{game}-v5", game.lower()
        attrs[fmt.ATTR_ROM_MD5] = rom_md5(game.lower())

    return edit(change)


def snapshot_holds(row: int, make_blob: Callable[[bytes], bytes]) -> Damage:
    """Snapshot ``row`` points at a crafted blob (appended to the snapshot data, no dictionary); ``make_blob`` gets
    the first snapshot's real emulator state."""

    def change(handle: h5py.File) -> None:
        table, data = handle[SNAPSHOTS][()], handle[SNAPSHOT_BYTES]
        first = table[0]
        state = decode_snapshot(data[first["offset"] : first["offset"] + first["nbytes"]].tobytes(), None)
        blob = np.frombuffer(make_blob(state.ale_state), np.uint8)
        offset = data.shape[0]
        data.resize(offset + len(blob), axis=0)
        data[offset:] = blob
        for field, value in (("offset", offset), ("nbytes", len(blob)), ("ref", fmt.NO_REF)):
            table[field][row] = value
        handle[SNAPSHOTS][...] = table

    return edit(change)


def snapshot_blob(rng: str, ale_state: bytes) -> bytes:
    return zlib.compress(json.dumps({"rng": rng}).encode() + b"\n" + ale_state)


_RNG = json.dumps(np.random.default_rng(0).bit_generator.state)


def zlib_bomb(size: int) -> bytes:
    """A zlib stream of ``size`` zero bytes (a multiple of 64 MiB) made without compressing them all: after a full
    flush a deflate stream refers to nothing before it, so the block of one 64 MiB run can be repeated."""
    run = bytes(64 << 20)
    compressor = zlib.compressobj(9)
    block = compressor.compress(run) + compressor.flush(zlib.Z_FULL_FLUSH)
    empty_final_block = b"\x03\x00"
    adler32 = ((size % 65521) << 16) | 1  # of zeros
    return block[:2] + block[2:] * (size // len(run)) + empty_final_block + adler32.to_bytes(4, "big")


# What a case must give: an exact replay, or this ReplayError (at some stage of the read).
EXACT = "replays exactly"

CASES: dict[str, tuple[Damage, object]] = {
    # not (all of) a log
    "truncated to 2%": (truncated(0.02), LogFormatError),
    "truncated to 25%": (truncated(0.25), LogFormatError),
    "truncated to 50%": (truncated(0.50), LogFormatError),
    "truncated to 90%": (truncated(0.90), LogFormatError),
    "last byte cut": (truncated(1 - 1e-9), LogFormatError),
    "empty file": (replaced_by(b""), LogFormatError),
    "text with the right name": (replaced_by(b"episode,reward\n0,3\n" * 50), LogFormatError),
    "hdf5 signature then garbage": (replaced_by(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 40), LogFormatError),
    "another hdf5 file": (another_hdf5_file, LogFormatError),
    # flipped bytes in the stored data
    "flipped: actions": (flipped(ACTIONS), LogFormatError),
    "flipped: resets": (flipped(RESETS, 8), LogFormatError),
    "flipped: versions": (flipped(VERSIONS, 8), LogFormatError),
    "flipped: sync": (flipped(SYNC), LogFormatError),
    "flipped: snapshots": (flipped(SNAPSHOTS), LogFormatError),
    "flipped: a snapshot's bytes": (snapshot_flipped(7), EXACT),  # an earlier snapshot serves
    "flipped: episodes": (flipped(EPISODES, 8), LogFormatError),
    # missing parts
    **{f"deleted: {name}": (deleted(name), LogFormatError) for name in DATASETS},
    "deleted: the stream": (deleted(STREAM), LogFormatError),
    "deleted: streams": (deleted(fmt.GROUP_STREAMS), LogFormatError),
    "deleted: metadata": (deleted(fmt.GROUP_METADATA), LogFormatError),
    # wrong types and shapes
    "actions as float32": (rewritten(ACTIONS, lambda a: a.astype(np.float32)), LogFormatError),
    "actions as int64": (rewritten(ACTIONS, lambda a: a.astype(np.int64)), LogFormatError),
    "actions 1-d": (rewritten(ACTIONS, lambda a: a[0]), LogFormatError),
    "actions 3-d": (rewritten(ACTIONS, lambda a: a[None]), LogFormatError),
    "episodes as plain ints": (rewritten(EPISODES, lambda t: t["start"]), LogFormatError),
    "episodes 2-d": (rewritten(EPISODES, lambda t: t[:, None]), LogFormatError),
    "episodes a scalar": (rewritten(EPISODES, lambda t: t[0]), LogFormatError),
    "sync as float": (rewritten(SYNC, lambda t: t["position"].astype(np.float64)), LogFormatError),
    "sync a scalar": (rewritten(SYNC, lambda t: t[0]), LogFormatError),
    "resets 2-d": (rewritten(RESETS, lambda t: t[:, None]), LogFormatError),
    "versions as int64": (rewritten(VERSIONS, lambda t: t["version"]), LogFormatError),
    "snapshots as uint8": (rewritten(SNAPSHOTS, lambda t: t.view(np.uint8)), LogFormatError),
    "snapshot bytes as float64": (rewritten(SNAPSHOT_BYTES, lambda b: b.astype(np.float64)), LogFormatError),
    "snapshot bytes a scalar": (rewritten(SNAPSHOT_BYTES, lambda b: b[0]), LogFormatError),
    # attributes
    "format missing": (attribute_deleted("/", fmt.ATTR_FORMAT), LogFormatError),
    "format version from the future": (attribute("/", fmt.ATTR_FORMAT_VERSION, fmt.FORMAT_VERSION + 1), LogFormatError),
    "format version as a string": (attribute("/", fmt.ATTR_FORMAT_VERSION, str(fmt.FORMAT_VERSION)), LogFormatError),
    "format version 0": (attribute("/", fmt.ATTR_FORMAT_VERSION, 0), LogFormatError),
    "format version missing": (attribute_deleted("/", fmt.ATTR_FORMAT_VERSION), LogFormatError),
    "another ale-py": (attribute("/", fmt.ATTR_ALE_PY_VERSION, "0.7.0"), EnvironmentMismatchError),
    "another game": (spec_changed(game="pong"), EnvironmentMismatchError),
    "another game, consistently labelled": (another_game("Pong"), DesyncError),
    "spec_json not json": (attribute(STREAM, fmt.ATTR_SPEC_JSON, "{not json"), LogFormatError),
    "spec_json a list": (attribute(STREAM, fmt.ATTR_SPEC_JSON, "[1, 2]"), LogFormatError),
    "spec_json missing": (attribute_deleted(STREAM, fmt.ATTR_SPEC_JSON), LogFormatError),
    "action_meanings not json": (attribute(STREAM, fmt.ATTR_ACTION_MEANINGS, "NOOP,FIRE"), LogFormatError),
    "action_meanings a number": (attribute(STREAM, fmt.ATTR_ACTION_MEANINGS, "4"), LogFormatError),
    "obs_shape not json": (attribute(STREAM, fmt.ATTR_OBS_SHAPE, "210x160x3"), LogFormatError),
    "n_lanes 0": (attribute(STREAM, fmt.ATTR_N_LANES, 0), LogFormatError),
    "n_lanes -1": (attribute(STREAM, fmt.ATTR_N_LANES, -1), LogFormatError),
    "n_lanes huge": (attribute(STREAM, fmt.ATTR_N_LANES, 10**18), LogFormatError),
    "n_lanes a word": (attribute(STREAM, fmt.ATTR_N_LANES, "one"), LogFormatError),
    "n_lanes missing": (attribute_deleted(STREAM, fmt.ATTR_N_LANES), LogFormatError),
    "rom_md5 missing": (attribute_deleted(STREAM, fmt.ATTR_ROM_MD5), LogFormatError),
    "metadata not json": (attribute(fmt.GROUP_METADATA, "total_steps", "three hundred"), LogFormatError),
    # values out of range
    "action 200": (action(10, 200), LogFormatError),
    "reset beyond the stream": (cell(RESETS, 1, "position", 10**6), DesyncError),
    "reset at a negative position": (cell(RESETS, 0, "position", -5), LogFormatError),
    "reset with a negative seed": (cell(RESETS, 0, "seed", -7), LogFormatError),
    "episode beyond the stream": (cell(EPISODES, 1, "length", 10**6), LogFormatError),
    "episode length negative": (cell(EPISODES, 0, "length", -3), LogFormatError),
    "episode start negative": (cell(EPISODES, 0, "start", -1), LogFormatError),
    "episode of an absent stream": (cell(EPISODES, 0, "stream", 3), LogFormatError),
    "episode of an absent lane": (cell(EPISODES, 1, "lane", 5), LogFormatError),
    "snapshots pointing outside the data": (  # each seek falls back past two of them
        both(
            cell(SNAPSHOTS, 1, "offset", -100),
            cell(SNAPSHOTS, 2, "offset", 10**9),
            cell(SNAPSHOTS, 6, "ref", 99),
            cell(SNAPSHOTS, 7, "nbytes", 2**31 - 1),
        ),
        EXACT,
    ),
    "snapshot at a negative position": (cell(SNAPSHOTS, 7, "position", -1), EXACT),
    "sync at a negative position": (cell(SYNC, 3, "position", -8), EXACT),
    # absurd declared sizes
    "actions declare 10**10 positions": (resized(ACTIONS, 10**10), LogFormatError),
    "snapshot bytes declare 10**10": (resized(SNAPSHOT_BYTES, 10**10), LogFormatError),
    **{f"{name} declare 10**9 rows": (resized(name, 10**9), LogFormatError) for name in DATASETS[1:5]},
    "episodes declare 10**9 rows": (resized(EPISODES, 10**9), LogFormatError),
    "actions and resets huge": (both(resized(ACTIONS, 10**10), resized(RESETS, 10**9)), LogFormatError),
    "actions and sync huge": (both(resized(ACTIONS, 10**10), resized(SYNC, 10**9)), LogFormatError),
    "snapshot bytes huge, a snapshot 2 GB": (
        both(resized(SNAPSHOT_BYTES, 10**10), cell(SNAPSHOTS, 7, "nbytes", 2**31 - 1)),
        LogFormatError,
    ),
    # crafted snapshots
    "snapshot of garbage emulator state": (snapshot_holds(7, lambda state: snapshot_blob(_RNG, b"?" * 500)), EXACT),
    "snapshot with a garbage generator": (snapshot_holds(7, lambda state: snapshot_blob("[1]", state)), EXACT),
    "snapshot that inflates to 1.5 GB": (snapshot_holds(7, lambda state: zlib_bomb(24 << 26)), EXACT),
}


SLOW_CASES = {"another game, consistently labelled"}  # replays a whole game: in the slow suite, for the fast 5 min


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_CASES else n for n in CASES])
def test_damaged_log_gives_a_clear_error_or_an_exact_replay(name, base_log, reader, reference, tmp_path):
    damage, expect = CASES[name]
    path = tmp_path / "trajectories.h5"
    shutil.copy(base_log, path)
    damage(path)
    outcome = _read_damaged(reader, path, reference)
    if expect == EXACT:
        assert outcome["errors"] == [] and outcome["verify"]["ok"], outcome["errors"] or outcome["verify"]["text"]
        assert outcome["episodes"] == reference.episodes
        assert len(outcome["frames"]) == 2 * len(reference.episodes)  # each episode replayed, and sought into
    else:
        raised = {kind for error in outcome["errors"] for kind in error["types"]}
        assert expect.__name__ in raised, f"expected a {expect.__name__}, got {outcome['errors'] or 'none'}"
    _assert_exact(outcome, reference)


# -- fuzzing the structure ---------------------------------------------------------------------------------------

ATTRIBUTES = (
    [("/", key) for key in (fmt.ATTR_FORMAT, fmt.ATTR_FORMAT_VERSION, fmt.ATTR_ALE_PY_VERSION, fmt.ATTR_CREATED)]
    + [
        (STREAM, key)
        for key in (
            fmt.ATTR_SPEC_JSON,
            fmt.ATTR_ENV_ID,
            fmt.ATTR_GAME,
            fmt.ATTR_ROM_MD5,
            fmt.ATTR_TAG,
            fmt.ATTR_N_LANES,
            fmt.ATTR_SNAPSHOT_INTERVAL,
            fmt.ATTR_SYNC_INTERVAL,
            fmt.ATTR_ACTION_MEANINGS,
            fmt.ATTR_OBS_SHAPE,
            fmt.ATTR_OBS_DTYPE,
        )
    ]
    + [(fmt.GROUP_METADATA, "total_steps")]
)
TABLE_DTYPES = {
    RESETS: fmt.RESET_DTYPE,
    VERSIONS: fmt.VERSION_DTYPE,
    SYNC: fmt.SYNC_DTYPE,
    SNAPSHOTS: fmt.SNAPSHOT_DTYPE,
    EPISODES: fmt.EPISODE_DTYPE,
}
INTEGERS = st.one_of(
    st.sampled_from([0, 1, -1, 255, 256, 2**31 - 1, -(2**31), 2**32 + 1, 10**10, 2**63 - 1, -(2**63)]),
    st.integers(-(2**63), 2**63 - 1),
)
TEXTS = st.one_of(
    st.sampled_from(["", "null", "[]", "{}", "[1, 2]", '"x"', '{"id": 3}', "1e400"]),
    st.text(st.characters(exclude_characters="\x00"), max_size=30),
)
ARRAYS = hnp.arrays(
    st.sampled_from([np.uint8, np.int32, np.int64, np.float64, np.bool_, "S4", *TABLE_DTYPES.values()]),
    hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5),
)


def element(name: str, index: int, value: int) -> Damage:
    """One value of a dataset set (wrapping to its type), in row ``index`` modulo its rows."""

    def change(handle: h5py.File) -> None:
        dataset = handle[name]
        if name in TABLE_DTYPES:
            table = dataset[()]
            field = TABLE_DTYPES[name].names[index % len(TABLE_DTYPES[name].names)]
            table[field][index % len(table)] = np.array(value).astype(table.dtype[field])
            dataset[...] = table
        else:
            where = (0, index % dataset.shape[1]) if dataset.ndim == 2 else index % dataset.shape[0]
            dataset[where] = value % 256

    return edit(change)


@st.composite
def structural_damage(draw: st.DrawFn) -> tuple[str, str, Damage]:
    """(what, which dataset or attribute, damage): one dataset or attribute of the log given a drawn value."""
    kind = draw(st.sampled_from(["attribute", "element", "resize", "replace"]))
    if kind == "attribute":
        owner, key = draw(st.sampled_from(ATTRIBUTES))
        value = draw(st.one_of(st.none(), INTEGERS, st.floats(), TEXTS, st.lists(INTEGERS, max_size=4).map(np.array)))
        if value is None:
            return f"{owner} attribute {key} deleted", key, attribute_deleted(owner, key)
        return f"{owner} attribute {key} = {value!r}", key, attribute(owner, key, value)
    name = draw(st.sampled_from(DATASETS))
    if kind == "element":
        index, value = draw(st.integers(0, 10**4)), draw(INTEGERS)
        return f"{name} element {index} = {value}", name, element(name, index, value)
    if kind == "resize":
        size = draw(st.one_of(st.integers(0, 600), st.sampled_from([10**9, 10**10])))
        return f"{name} resized to {size}", name, resized(name, size)
    array = draw(ARRAYS)
    return f"{name} replaced by {array.dtype} {array.shape}: {array!r}", name, rewritten(name, lambda _: array)


@pytest.mark.slow  # fault injection with real processes; runs in CI's slow suite
@settings(max_examples=30, deadline=None)
@given(damage=structural_damage())
def test_fuzzed_structure_gives_replay_errors_or_exact_replays(base_log, reader, reference, tmp_path_factory, damage):
    """Any dataset or attribute given any value: only ReplayErrors naming the file, the file unchanged, memory
    bounded; frames replayed are the recorded ones unless what was changed is what decides them."""
    description, target, damage = damage
    note(description)
    path = tmp_path_factory.getbasetemp() / "fuzzed" / "trajectories.h5"
    path.parent.mkdir(exist_ok=True)
    shutil.copy(base_log, path)
    damage(path)
    outcome = _read_damaged(reader, path, reference)
    if target not in (ACTIONS, RESETS):  # other actions or seeds replay other frames, which the sync checks catch
        _assert_exact(outcome, reference)
