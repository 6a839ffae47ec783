"""Storage side of recording: appends buffered records to the HDF5 log and flushes at a bounded interval.

Recorders (``replay.recorder``) turn env calls into records; this module owns the file. Everything is buffered
in memory and written at most ``flush_seconds`` apart, then ``h5py.File.flush()``. The file is written in
HDF5's SWMR mode (see ``replay.storage``): a process killed at any moment leaves a file that opens with
everything up to the last flush, and other processes can read the log while it grows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import resource
import shutil
import stat
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import ale_py
import gymnasium
import h5py
import numpy as np

from replay import log_format as fmt
from replay import sticky_rng, storage
from replay.emulator import LaneState, encode_snapshot
from replay.errors import LogFormatError, RecordingError, describe_os_error

_SPACE_MARGIN = 1 << 20  # HDF5 metadata and chunk rounding on top of the raw bytes of a flush


class TrajectoryWriter:
    """An open trajectory log. Creates ``path`` or appends new streams to an existing log; never rewrites data.

    Example:
        >>> writer = TrajectoryWriter("run.h5")          # doctest: +SKIP
        >>> writer.set_metadata("total_steps", 1_000_000)  # doctest: +SKIP
        >>> writer.close()                                 # doctest: +SKIP
    """

    def __init__(self, path: str | Path, *, flush_seconds: float = 10.0) -> None:
        if not flush_seconds > 0:
            raise ValueError(f"expected a positive flush_seconds, got {flush_seconds!r}")
        self.path = Path(path)
        self.flush_seconds = float(flush_seconds)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise RecordingError(f"{self.path}: cannot create the log ({error}); choose a writable path") from None
        self._lock = storage.WriterLock(self.path)
        try:
            storage.discard_leftovers(self.path)
            self._file = _open_for_append(self.path)
        except BaseException:
            self._lock.release()
            raise
        self._datasets: dict[str, h5py.Dataset] = {}
        self._streams: list[StreamWriter] = []
        self._received: list[tuple[int, StreamRecords]] = []  # records of recorders in other processes
        self._episodes: list[tuple] = []
        self._episodes_on_disk = len(self._dataset(fmt.DATASET_EPISODES))
        self._file_streams = len(self._file[fmt.GROUP_STREAMS])  # made by earlier writers
        self._last_flush = time.monotonic()
        self._refused = False
        self._failure: str | None = None  # why a write failed: the file was let go, later calls repeat it
        self.closed = False

    @property
    def n_streams(self) -> int:
        """Streams in the log, this writer's included."""
        return self._file_streams + len(self._streams)

    @property
    def n_episodes(self) -> int:
        return self._episodes_on_disk + len(self._episodes)

    def add_stream(
        self,
        *,
        spec_json: str,
        env_id: str,
        game: str,
        rom_md5: str,
        tag: str,
        n_lanes: int,
        snapshot_interval: int,
        sync_interval: int,
        action_meanings: list[str],
        obs_shape: tuple[int, ...],
        obs_dtype: str,
    ) -> StreamWriter:
        self._check_open()
        _refuse_another_game(self.path, self._file, env_id, game, action_meanings)
        with self._restructuring() as handle:
            index = len(handle[fmt.GROUP_STREAMS])
            _create_stream(
                handle[fmt.GROUP_STREAMS].create_group(fmt.stream_name(index)),
                {
                    fmt.ATTR_SPEC_JSON: spec_json,
                    fmt.ATTR_ENV_ID: env_id,
                    fmt.ATTR_GAME: game,
                    fmt.ATTR_ROM_MD5: rom_md5,
                    fmt.ATTR_TAG: tag,
                    fmt.ATTR_N_LANES: n_lanes,
                    fmt.ATTR_SNAPSHOT_INTERVAL: snapshot_interval,
                    fmt.ATTR_SYNC_INTERVAL: sync_interval,
                    fmt.ATTR_ACTION_MEANINGS: json.dumps(action_meanings),
                    fmt.ATTR_OBS_SHAPE: json.dumps(list(obs_shape)),
                    fmt.ATTR_OBS_DTYPE: obs_dtype,
                },
                n_lanes,
            )
        stream = StreamWriter(self, index, n_lanes)
        self._streams.append(stream)
        return stream

    def add_buffered_stream(self, header: StreamHeader) -> int:
        """Create the stream of a recorder in another process (its :class:`RecordBuffer`'s header); returns its index
        for :meth:`append_buffered`."""
        return self.add_stream(**dataclasses.asdict(header)).index

    def append_buffered(self, stream: int, drained: BufferedRecords) -> None:
        """Take what a :class:`RecordBuffer` recorded into stream ``stream`` (made by :meth:`add_buffered_stream`):
        written at the next flush, like this process's own records."""
        self._check_open()
        self._received.extend((stream, records) for records in drained.records)
        for row in drained.episodes:
            self._episodes.append((stream, *row[1:]))

    def write_records(self, index: int, records: StreamRecords) -> None:
        """Append one stream's records to the file (inside ``_writing``)."""
        group = f"{fmt.GROUP_STREAMS}/{fmt.stream_name(index)}"
        if records.actions.shape[1]:
            actions = self._dataset(f"{group}/{fmt.DATASET_ACTIONS}")
            start = actions.shape[1]
            actions.resize(start + records.actions.shape[1], axis=1)
            actions[:, start:] = records.actions
        if records.snapshot_bytes:
            _append(
                self._dataset(f"{group}/{fmt.DATASET_SNAPSHOT_BYTES}"), np.frombuffer(records.snapshot_bytes, np.uint8)
            )
        for name, rows in (
            (fmt.DATASET_RESETS, records.resets),
            (fmt.DATASET_VERSIONS, records.versions),
            (fmt.DATASET_SYNC, records.sync),
            (fmt.DATASET_SNAPSHOTS, records.snapshots),
        ):
            if len(rows):
                _append(self._dataset(f"{group}/{name}"), rows)

    def __reduce__(self) -> Any:
        raise RecordingError(
            f"{self.path}: an open TrajectoryWriter cannot be sent to another process (it holds the log's HDF5 "
            "file and lock); with Stable-Baselines3's SubprocVecEnv use replay.sb3.make_atari_env(..., run_dir=...), "
            "which records every worker into one log, and with gymnasium RecordVectorTrajectory over an AsyncVectorEnv"
        )

    def set_metadata(self, key: str, value: Any) -> None:
        """Store a JSON-able run fact (total steps, config...) in the log."""
        self._check_open()
        with self._restructuring() as handle:
            handle[fmt.GROUP_METADATA].attrs[key] = json.dumps(value)

    @contextlib.contextmanager
    def _restructuring(self) -> Iterator[h5py.File]:
        """Leave SWMR mode for a structural change (new objects or attributes), then enter it again.

        SWMR forbids new objects, and outside it a kill can leave a file that opens neither way (6 of 10 killed
        loops of ``set_metadata`` did). So the change is made on a copy of the closed log that replaces it by an
        atomic rename (``storage.structured``), and the log is opened again straight into SWMR mode: a kill at any
        moment leaves the log as it was before the change, or after it.
        """
        with self._writing():
            self._flush_datasets()  # a write that fails does so here, where the file can be let go, not in close()
            self._file.flush()
            self._datasets.clear()
            self._file.close()
            try:
                with storage.structured(self.path) as handle:
                    self._file = handle
                    yield handle
            finally:  # on an error the copy is dropped and the log goes on as it was
                self._file = storage.open_for_writing(self.path)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Turn a write the system refuses (ENOSPC, EFBIG, EIO...) into a RecordingError, and let go of the file.

        After a failed write HDF5's state cannot be trusted (it retries, and can crash the process: see
        ``storage.abandon``), so the file is closed without another write and stays as of the last flush.
        """
        self._check_open()
        try:
            yield
        except (OSError, RuntimeError) as error:  # h5py raises RuntimeError for some failed HDF5 writes
            self._failure = (
                f"{self.path}: writing the log failed ({describe_os_error(error)}), so recording stopped; "
                "the log keeps everything up to its last flush and reads back. Free space on its disk (or record to "
                "another path) and record again"
            )
            self.closed = True
            try:
                storage.abandon(self._file)
            finally:
                self._datasets.clear()
                self._lock.release()
            raise RecordingError(self._failure) from None

    def _dataset(self, path: str) -> h5py.Dataset:
        """A dataset of the log, open until the file is next closed.

        A dataset closed by garbage collection writes its cached chunks there, where h5py can only print a
        failure ("Exception ignored in ObjectID.__dealloc__") and HDF5 leaves it half freed; kept open, every
        write happens inside ``_writing``.
        """
        dataset = self._datasets.get(path)
        if dataset is None:
            dataset = self._datasets[path] = self._file[path]
        return dataset

    def add_episode(self, row: tuple) -> int:
        self._episodes.append(row)
        return self.n_episodes - 1

    def maybe_flush(self) -> None:
        if time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        self._check_open()
        self._ensure_space()
        with self._writing():
            for stream in self._streams:
                stream._write()
            for index, records in self._received:
                self.write_records(index, records)
            self._received.clear()
            if self._episodes:
                self._flush_datasets()  # the steps reach the disk before the episode rows that refer to them
                _append(self._dataset(fmt.DATASET_EPISODES), np.array(self._episodes, dtype=fmt.EPISODE_DTYPE))
                self._episodes_on_disk += len(self._episodes)
                self._episodes.clear()
            self._flush_datasets()
            self._file.flush()
        self._last_flush = time.monotonic()

    def _flush_datasets(self) -> None:
        """Write each dataset's chunks, then its metadata (its shape), before the file's own flush.

        A file flush goes on after a write fails, and can store shapes whose data it could not write (zero or
        stale rows: 8 of 8 failed flushes in a probe, h5py 3.16 / HDF5 2.0); a dataset flush stops at its first
        failed write, leaving the dataset as of its last flush (8 of 8).
        """
        for dataset in self._datasets.values():
            dataset.flush()

    def _ensure_space(self) -> None:
        """Refuse to write when the disk (or the process's file-size limit) could not take this flush.

        A refused flush leaves the file exactly as of the last good one and the writer usable once there is
        space again; a write that fails anyway (the disk filled after this check) ends the writer (``_writing``).
        """
        pending = sum(stream.pending_bytes for stream in self._streams) + len(self._episodes) * 64
        pending += sum(records.nbytes for _, records in self._received)
        needed = 2 * pending + _SPACE_MARGIN
        room = shutil.disk_usage(self.path.parent).free
        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if limit != resource.RLIM_INFINITY:
            room = min(room, limit - self.path.stat().st_size)
        if room < needed:
            self._refused = True
            raise RecordingError(
                f"{self.path}: writing the log failed (only {room} bytes free, {needed} needed); the disk is full "
                "or the file too large. Episodes flushed before this point stay readable; free space or record "
                "to another path"
            )

    def close(self) -> None:
        if self.closed:
            return
        if self._refused:
            self._file.close()  # nothing new reaches the file after a refused flush
            self._lock.release()
            self.closed = True
            return
        try:
            self.flush()
        finally:
            if not self.closed:  # a write that failed has let go of the file already
                self._file.close()
                self.closed = True
                try:
                    storage.compact(self.path)  # under the lock: no writer can be appending meanwhile
                except OSError as error:
                    warnings.warn(f"{self.path}: could not reclaim space ({error}); the log is complete", stacklevel=2)
                finally:
                    self._lock.release()

    def __enter__(self) -> TrajectoryWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "closed", True):
            warnings.warn(
                f"TrajectoryWriter for {self.path} was not closed; closing it now. Call close() (or use it as a "
                "context manager) so the last records are flushed deliberately.",
                ResourceWarning,
                stacklevel=2,
            )
            try:
                self.close()
            except Exception:  # interpreter shutdown: h5py may be half torn down
                pass

    def _check_open(self) -> None:
        if self.closed:
            raise RecordingError(self._failure or f"{self.path}: the trajectory writer is closed")


class StreamWriter:
    """Buffers one stream's records; the owning TrajectoryWriter decides when they reach the file."""

    def __init__(self, owner: TrajectoryWriter | RecordBuffer, index: int, n_lanes: int) -> None:
        self.owner = owner
        self.index = index
        self.n_lanes = n_lanes
        self._actions = np.zeros((n_lanes, fmt.ACTIONS_CHUNK), dtype=fmt.ACTION_DTYPE)
        self._lane0 = memoryview(self._actions[0])  # item assignment in C, for record_action
        self._n_actions = 0
        self._written_positions = 0
        self._resets: list[tuple] = []
        self._versions: list[tuple] = []
        self._sync: list[tuple] = []
        self._snapshots: list[tuple] = []
        self._snapshot_blobs: list[bytes] = []
        self._blob_size = 0
        self._n_snapshots = 0
        self._references: dict[int, tuple[int, LaneState]] = {}
        self._generator_bases: dict[int, _GeneratorBase] = {}

    @property
    def pending_bytes(self) -> int:
        """Bytes buffered for the next write (before compression)."""
        rows = len(self._resets) + len(self._versions) + len(self._sync) + len(self._snapshots)
        return self.n_lanes * self._n_actions + 40 * rows + sum(len(b) for b in self._snapshot_blobs)

    @property
    def position(self) -> int:
        """The next position to be recorded."""
        return self._written_positions + self._n_actions

    def record_position(self, actions: np.ndarray) -> int:
        """Record one position (a step or a reset) for every lane; returns its index."""
        if self._n_actions == self._actions.shape[1]:
            self._write_between_flushes()
        self._actions[:, self._n_actions] = actions
        self._n_actions += 1
        return self.position - 1

    def record_action(self, action: int) -> None:
        """``record_position`` for a one-lane stream, without numpy's per-call overhead."""
        if self._n_actions == fmt.ACTIONS_CHUNK:
            self._write_between_flushes()
        self._lane0[self._n_actions] = action
        self._n_actions += 1

    def record_reset(self, position: int, lane: int, seed: int | None) -> None:
        if seed is not None:
            self._generator_bases.pop(lane, None)  # a seeded reset reseeds the sticky-action generator
        self._resets.append((position, lane, fmt.NO_SEED if seed is None else int(seed)))

    def record_version(self, position: int, version: int) -> None:
        self._versions.append((position, version))

    def record_sync(self, position: int, lane: int, state_crc: int, obs_crc: int) -> None:
        self._sync.append((position, lane, state_crc, obs_crc))

    def record_snapshot(
        self, position: int, lane: int, state: LaneState, state_crc: int, obs_crc: int, *, sticky: bool = True
    ) -> None:
        """``sticky``: the state holds the sticky-action generator (``cloneState(include_rng=True)``); without it
        there is nothing to derive, and looking for it costs ~0.3 ms."""
        if sticky:
            state = self._derive_generator(position, lane, state)
        reference = self._references.get(lane)
        if reference is None:
            blob, ref_row = encode_snapshot(state, None), fmt.NO_REF
            self._references[lane] = (self._n_snapshots, state)
        else:
            ref_row, ref_state = reference
            blob = encode_snapshot(state, ref_state)
        self._snapshots.append((position, lane, self._blob_size, len(blob), ref_row, state_crc, obs_crc))
        self._snapshot_blobs.append(blob)
        self._blob_size += len(blob)
        self._n_snapshots += 1

    def _derive_generator(self, position: int, lane: int, state: LaneState) -> LaneState:
        """Store the sticky-action generator as "the base snapshot's, advanced by n draws" when that rebuilds
        the state byte for byte; otherwise keep it whole and make this snapshot the lane's new base."""
        base = self._generator_bases.get(lane)
        generator = sticky_rng.find(state.ale_state, base.last.start if base is not None else None)
        if generator is None:
            return state
        if base is not None and base.derived < _DERIVED_PER_BASE:
            # Search from the lane's previous snapshot, not from the base: a few thousand draws, not a million.
            limit = min(_DRAWS_PER_POSITION * (position - base.last_position) + sticky_rng.WORDS, sticky_rng.MAX_DRAWS)
            more = sticky_rng.draws_between(base.last, generator, limit)
            if more is not None and base.draws + more <= sticky_rng.MAX_DRAWS:  # what decode_snapshot accepts
                key, pos = sticky_rng.advance(base.last.key, base.last.pos, more)
                cut = sticky_rng.cut(state.ale_state, generator)
                if sticky_rng.insert(cut, generator.start, key, pos) == state.ale_state:
                    base.derived += 1
                    base.draws += more
                    base.last, base.last_position = generator, position
                    return LaneState(
                        cut, state.np_random_state, (base.row, base.draws, generator.start), state.wrappers
                    )
        self._generator_bases[lane] = _GeneratorBase(self._n_snapshots, generator, generator, position)
        return state

    def _write_between_flushes(self) -> None:
        with self.owner._writing():
            self._write()

    def _write(self) -> None:
        self.owner.write_records(self.index, self.take())

    def take(self) -> StreamRecords:
        """Hand over the records buffered since the last take (the next ones continue the same positions)."""
        records = StreamRecords(
            actions=self._actions[:, : self._n_actions].copy(),
            resets=np.array(self._resets, dtype=fmt.RESET_DTYPE),
            versions=np.array(self._versions, dtype=fmt.VERSION_DTYPE),
            sync=np.array(self._sync, dtype=fmt.SYNC_DTYPE),
            snapshots=np.array(self._snapshots, dtype=fmt.SNAPSHOT_DTYPE),
            snapshot_bytes=b"".join(self._snapshot_blobs),
        )
        self._written_positions += self._n_actions
        self._n_actions = 0
        for rows in (self._resets, self._versions, self._sync, self._snapshots, self._snapshot_blobs):
            rows.clear()
        return records


@dataclass(frozen=True)
class StreamRecords:
    """One stream's records between two flushes, as the log stores them: positions continue from the last
    records of the same stream, snapshot rows point into the stream's blob as a whole. Plain arrays and bytes,
    so a recorder in another process can hand them to the one writer (``RecordBuffer``)."""

    actions: np.ndarray  # (n_lanes, positions) uint8
    resets: np.ndarray
    versions: np.ndarray
    sync: np.ndarray
    snapshots: np.ndarray
    snapshot_bytes: bytes

    @property
    def nbytes(self) -> int:
        tables = (self.resets, self.versions, self.sync, self.snapshots)
        return self.actions.nbytes + sum(t.nbytes for t in tables) + len(self.snapshot_bytes)


@dataclass(frozen=True)
class StreamHeader:
    """What ``TrajectoryWriter.add_stream`` is given to create a stream: its attributes."""

    spec_json: str
    env_id: str
    game: str
    rom_md5: str
    tag: str
    n_lanes: int
    snapshot_interval: int
    sync_interval: int
    action_meanings: list[str]
    obs_shape: tuple[int, ...]
    obs_dtype: str


@dataclass(frozen=True)
class BufferedRecords:
    """What a :class:`RecordBuffer` held: its stream's header, records, and the episode rows that ended."""

    header: StreamHeader | None
    records: tuple[StreamRecords, ...]
    episodes: tuple[tuple, ...]


class RecordBuffer:
    """The writer of a recorder in a process that does not hold the log (a Stable-Baselines3 ``SubprocVecEnv``
    worker): it keeps what the recorder records until :meth:`drain` hands it over, to be written by the log's one
    :class:`TrajectoryWriter` (:meth:`TrajectoryWriter.append_buffered`). One stream per buffer.

    Nothing reaches a file from here: whoever holds the log drains every buffer at its flush deadline and before
    the recorders stop, so the log's crash safety is the writer's (``flush_seconds``).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)  # the log the records are for, named in messages
        self.closed = False
        self._header: StreamHeader | None = None
        self._stream: StreamWriter | None = None
        self._records: list[StreamRecords] = []
        self._episodes: list[tuple] = []

    def add_stream(self, **header: Any) -> StreamWriter:
        if self._stream is not None:
            raise RecordingError(f"a RecordBuffer for {self.path} holds one stream; give each recorder its own")
        self._header = StreamHeader(**header)
        self._stream = StreamWriter(self, 0, int(header["n_lanes"]))
        return self._stream

    def add_episode(self, row: tuple) -> int:
        self._episodes.append(row)
        return len(self._episodes) - 1

    def maybe_flush(self) -> None:
        """The log's writer flushes; a buffer waits to be drained."""

    def flush(self) -> None:
        """As :meth:`maybe_flush`."""

    def close(self) -> None:
        self.closed = True

    def write_records(self, index: int, records: StreamRecords) -> None:
        del index  # the one stream
        self._records.append(records)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        yield

    def drain(self) -> BufferedRecords:
        """Everything recorded since the last drain (the header each time: the first drain creates the stream)."""
        if self._stream is not None:
            self._records.append(self._stream.take())
        kept = tuple(records for records in self._records if records.nbytes)
        drained = BufferedRecords(self._header, kept, tuple(self._episodes))
        self._records.clear()
        self._episodes.clear()
        return drained


# A whole generator every 128 snapshots bounds the draws replayed on decode (~1 M at interval 1024: ~5 ms).
_DERIVED_PER_BASE = 127
# ALE draws twice per emulated frame; 32 per recorded position covers up to 16 frames a step, and bounds the
# record-time search when the generator was replaced (a seeded reset the writer was not told of).
_DRAWS_PER_POSITION = 32


@dataclass
class _GeneratorBase:
    row: int  # snapshot row holding the whole generator
    base: sticky_rng.Generator
    last: sticky_rng.Generator  # the generator of the lane's latest snapshot
    last_position: int
    draws: int = 0  # from base to last
    derived: int = 0


def _table(group: h5py.Group, name: str, dtype: np.dtype) -> h5py.Dataset:
    return group.create_dataset(
        name, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(fmt.TABLE_CHUNK,), **fmt.COMPRESSION
    )


def _append(dataset: h5py.Dataset, rows: np.ndarray) -> None:
    start = dataset.shape[0]
    dataset.resize(start + len(rows), axis=0)
    dataset[start:] = rows


def _create_stream(group: h5py.Group, attributes: dict[str, Any], n_lanes: int) -> None:
    group.attrs.update(attributes)
    group.create_dataset(
        fmt.DATASET_ACTIONS,
        shape=(n_lanes, 0),
        maxshape=(n_lanes, None),
        dtype=fmt.ACTION_DTYPE,
        chunks=(1, fmt.ACTIONS_CHUNK),
        **fmt.COMPRESSION,
    )
    for name, dtype in (
        (fmt.DATASET_RESETS, fmt.RESET_DTYPE),
        (fmt.DATASET_VERSIONS, fmt.VERSION_DTYPE),
        (fmt.DATASET_SYNC, fmt.SYNC_DTYPE),
        (fmt.DATASET_SNAPSHOTS, fmt.SNAPSHOT_DTYPE),
    ):
        _table(group, name, dtype)
    group.create_dataset(
        fmt.DATASET_SNAPSHOT_BYTES, shape=(0,), maxshape=(None,), dtype=np.uint8, chunks=(fmt.BLOB_CHUNK,)
    )


def check_appendable(path: Path, env_id: str, game: str, action_meanings: Sequence[str]) -> None:
    """Refuse, before opening it for writing (which would touch it), a log at ``path`` that holds another game or
    action set; nothing happens for a path with no log yet."""
    if not path.is_file():
        return
    try:
        handle = storage.open_for_reading(path)
    except OSError:
        return  # not readable as a log: opening it for appending gives the precise error
    with handle:
        if fmt.GROUP_STREAMS in handle:
            _refuse_another_game(path, handle, env_id, game, action_meanings)


def _refuse_another_game(path: Path, handle: h5py.File, env_id: str, game: str, action_meanings: Sequence[str]) -> None:
    """One log holds one game with one action set: readers label every episode with the first stream's game
    and action names."""
    streams = handle[fmt.GROUP_STREAMS]
    if not len(streams):
        return
    first = streams[fmt.stream_name(0)].attrs
    recorded_game = str(first[fmt.ATTR_GAME])
    recorded_actions = json.loads(first[fmt.ATTR_ACTION_MEANINGS])
    if recorded_game != game or recorded_actions != list(action_meanings):
        raise RecordingError(
            f"{path} holds {first[fmt.ATTR_ENV_ID]} ({recorded_game}, {len(recorded_actions)} actions); "
            f"{env_id} ({game}, {len(action_meanings)} actions) cannot be appended, as one log holds one game "
            "and action set: record it into a new file"
        )


def _open_for_append(path: Path) -> h5py.File:
    """Open ``path`` in SWMR-write mode, creating the log or recovering one left by a killed writer."""
    if path.exists():
        from replay.reader import check_root  # the reader owns the checks of a file it did not write

        if not os.access(path, os.W_OK):
            # Recovery and upgrades replace the file by rename, which needs only the folder's permission: a log
            # its owner made read-only must be refused here, not replaced.
            raise RecordingError(
                f"{path}: the log is read-only (mode {stat.filemode(path.stat().st_mode)}); make it writable "
                "(chmod u+w) to append to it, or record to a new path"
            )
        try:
            with storage.open_for_reading(path) as handle:
                check_root(handle, path)
            if storage.needs_recovery(path):
                storage.recover(path)
            with storage.open_for_reading(path) as handle:
                version = int(handle.attrs[fmt.ATTR_FORMAT_VERSION])
            if version < fmt.FORMAT_VERSION:  # new streams are written in this version's format
                with storage.structured(path) as handle:
                    handle.attrs[fmt.ATTR_FORMAT_VERSION] = fmt.FORMAT_VERSION
            return storage.open_for_writing(path)
        except (OSError, RuntimeError) as error:  # h5py raises RuntimeError for some failed HDF5 writes
            raise LogFormatError(f"{path}: cannot open for appending ({error}); record to a new path instead") from None
    try:
        with storage.structured(path, create=True) as handle:
            handle.attrs.update(
                {
                    fmt.ATTR_FORMAT: fmt.FORMAT_NAME,
                    fmt.ATTR_FORMAT_VERSION: fmt.FORMAT_VERSION,
                    fmt.ATTR_ALE_PY_VERSION: ale_py.__version__,
                    fmt.ATTR_GYMNASIUM_VERSION: gymnasium.__version__,
                    fmt.ATTR_CREATED: datetime.now(timezone.utc).isoformat(),
                }
            )
            handle.create_group(fmt.GROUP_METADATA)
            handle.create_group(fmt.GROUP_STREAMS)
            _table(handle, fmt.DATASET_EPISODES, fmt.EPISODE_DTYPE)
        return storage.open_for_writing(path)
    except (OSError, RuntimeError) as error:  # h5py raises RuntimeError for some failed HDF5 writes
        raise RecordingError(
            f"{path}: cannot create the log ({describe_os_error(error)}); choose a writable path with free space"
        ) from None
