"""Reading a trajectory log: episode listing, lazy bit-exact frames and observations, seeking."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ale_py
import h5py
import numpy as np

from replay import emulator, rebuild, storage
from replay import log_format as fmt
from replay.errors import EnvironmentMismatchError, EpisodeIndexError, LogFormatError
from replay.resim import Lane, resimulate
from replay.run_folder import RunFolder

# What the tag of an episode may be filtered by: the trainer's two tags, or any.
TAG_FILTERS = ("train", "eval", "any")


@dataclass(frozen=True)
class EpisodeRecord:
    """One recorded episode. ``start_step`` is the position of its reset in its stream.

    An episode whose writer was killed before its row was written is still listed (after the others), unfinished,
    with ``total_reward`` NaN: its steps are on disk and replay like any other.
    """

    index: int
    env_index: int
    stream: int
    tag: str
    start_step: int
    length: int
    total_reward: float
    terminated: bool
    truncated: bool
    finished: bool
    policy_versions: tuple[int, ...]

    @property
    def ended_by(self) -> str:
        if not self.finished:
            return "unfinished"
        return "termination" if self.terminated else "truncation"


@dataclass(frozen=True)
class ReplayStep:
    """Step ``step`` of an episode as re-simulated; step 0 is the reset (no action, no reward).

    ``screens`` (asked for with ``emulator_frames=True``) are the RGB screens of every frame the emulator produced
    during the step, oldest first, the last being ``frame`` byte for byte: as many as the frame skip (4 for
    ``ALE/<Game>-v5`` or for ``AtariPreprocessing(frame_skip=4)``, a random frameskip's draw), fewer at a step that
    ends the game, more at one where ``FireOnLifeLoss`` presses FIRE. A reset's are the screen the game starts
    from, then one per frame its wrappers emulate (no-op starts, a FIRE): a single screen for a bare
    ``ALE/<Game>-v5``. A position that emulated nothing (a vector env's lane sitting out a partial reset, a step
    after the game ended) has none. Shown one per 1/60 s, an episode's screens play at the game's real speed.

    ``lives`` is the emulator's count after the step (``ale.lives()``), what wrappers above the recorder that end
    an agent's episode at a life lost (SB3's ``EpisodicLifeEnv``) read.
    """

    step: int
    frame: np.ndarray | None
    observation: np.ndarray | None
    action: int | None
    reward: float
    policy_version: int
    terminated: bool = False
    truncated: bool = False
    screens: tuple[np.ndarray, ...] | None = None
    lives: int | None = None


@dataclass(frozen=True)
class StreamInfo:
    index: int
    env_id: str
    game: str
    tag: str
    n_lanes: int
    length: int
    action_meanings: tuple[str, ...]
    obs_shape: tuple[int, ...]
    obs_dtype: str
    rom_md5: str
    snapshot_interval: int
    sync_interval: int
    spec_json: str


# An ALE env id: the game, then gymnasium's variants of it (``-ram``, ``NoFrameskip``, ``Deterministic``).
_ENV_ID = re.compile(r"^(?:.*/)?(?P<game>.+?)(?:-ram)?(?:NoFrameskip|Deterministic)?-v\d+$")


def game_name(env_id: str) -> str:
    """The game's display name in an ALE env id: ``"Breakout"`` for ``BreakoutNoFrameskip-v4``,
    ``BreakoutDeterministic-v4``, ``Breakout-v4``, ``Breakout-ram-v4`` and ``ALE/Breakout-v5``; an id of another
    shape is shown whole."""
    match = _ENV_ID.match(env_id)
    return match.group("game") if match else env_id


def _json_tuple(text: str) -> tuple:
    return tuple(json.loads(text))


def check_root(handle: h5py.File, path: Path) -> None:
    """Refuse a file that is not a trajectory log of a version this code understands."""
    found = handle.attrs.get(fmt.ATTR_FORMAT)
    if found != fmt.FORMAT_NAME:
        raise LogFormatError(
            f"{path}: not an ale-replay trajectory log (format attribute {found!r}, expected "
            f"{fmt.FORMAT_NAME!r}); pass a file written by replay.RecordTrajectory"
        )
    version = handle.attrs.get(fmt.ATTR_FORMAT_VERSION)
    if not isinstance(version, (int, np.integer)) or version < 1:
        shown = version.item() if isinstance(version, np.generic) else version
        raise LogFormatError(f"{path}: invalid format version {shown!r}; the file is damaged {fmt.DAMAGED_FIX}")
    if version > fmt.FORMAT_VERSION:
        raise LogFormatError(
            f"{path}: format version {int(version)} is newer than this ale-replay reads ({fmt.FORMAT_VERSION}); "
            "upgrade ale-replay (pip install -U ale-replay)"
        )
    for name in (fmt.GROUP_STREAMS, fmt.GROUP_METADATA, fmt.DATASET_EPISODES):
        if name not in handle:
            raise LogFormatError(f"{path}: missing {name!r}; the file is damaged or was not finished {fmt.DAMAGED_FIX}")
    if handle[fmt.DATASET_EPISODES].dtype != fmt.EPISODE_DTYPE:
        raise LogFormatError(
            f"{path}: the episodes table has type {handle[fmt.DATASET_EPISODES].dtype}, expected {fmt.EPISODE_DTYPE}; "
            f"the file is damaged {fmt.DAMAGED_FIX}"
        )


class TrajectoryLog:
    """Read-only view of a trajectory log.

    Args:
        path: the ``.h5`` file written by ``RecordTrajectory`` / ``RecordVectorTrajectory``.
        check_environment: refuse to re-simulate when the installed ale-py or ROM differs from the recording.

    Example:
        >>> with TrajectoryLog("run/trajectories.h5") as log:     # doctest: +SKIP
        ...     best = max(log.episodes, key=lambda e: e.total_reward)
        ...     for frame in log.frames(best.index):
        ...         pass
    """

    def __init__(self, path: str | Path, *, check_environment: bool = True) -> None:
        self.path = Path(path)
        self.check_environment = check_environment
        if not self.path.exists():
            raise LogFormatError(f"{self.path}: no such file; check the path (a run keeps it in <run>/trajectories.h5)")
        if self.path.is_dir():
            inside = RunFolder(self.path).log
            hint = f"pass {inside}" if inside.is_file() else "pass the trajectory log file (.h5) itself"
            raise LogFormatError(f"{self.path}: a folder, not a log file; {hint}")
        if not h5py.is_hdf5(self.path):
            raise LogFormatError(f"{self.path}: not an HDF5 file; pass a trajectory log written by ale-replay")
        try:
            self._file = storage.open_for_reading(self.path)
        except OSError as error:
            raise LogFormatError(
                f"{self.path}: cannot be opened ({error}); the file is truncated or damaged {fmt.DAMAGED_FIX}"
            ) from None
        try:
            check_root(self._file, self.path)
            self.streams = [self._stream_info(i) for i in range(len(self._file[fmt.GROUP_STREAMS]))]
            self.episodes = self._read_episodes()
        except (KeyError, ValueError, TypeError, OSError, RuntimeError, AttributeError) as error:
            self._file.close()
            raise LogFormatError(
                f"{self.path}: damaged log ({type(error).__name__}: {error}) {fmt.DAMAGED_FIX}"
            ) from None
        except Exception:
            self._file.close()
            raise
        self._lanes: dict[tuple[int, int], Lane] = {}

    # -- description -------------------------------------------------------------------------------------------

    @property
    def metadata(self) -> dict[str, Any]:
        entries = {}
        attrs = self._file[fmt.GROUP_METADATA].attrs
        for key in attrs:
            try:
                entries[key] = json.loads(attrs[key])
            except (ValueError, TypeError, OSError) as error:
                raise LogFormatError(
                    f"{self.path}: run metadata {key!r} is not JSON ({error}); the file is damaged {fmt.DAMAGED_FIX}"
                ) from None
        return entries

    @property
    def env_id(self) -> str:
        return self.streams[0].env_id if self.streams else ""

    @property
    def game(self) -> str:
        """The game's display name, e.g. ``"Breakout"`` (see :func:`game_name`)."""
        return game_name(self.env_id) if self.streams else ""

    @property
    def action_meanings(self) -> list[str]:
        return list(self.streams[0].action_meanings) if self.streams else []

    @property
    def versions(self) -> dict[str, str]:
        return {
            "ale_py": str(self._file.attrs.get(fmt.ATTR_ALE_PY_VERSION)),
            "gymnasium": str(self._file.attrs.get(fmt.ATTR_GYMNASIUM_VERSION)),
            "format": str(self._file.attrs.get(fmt.ATTR_FORMAT_VERSION)),
        }

    def episode(self, index: int) -> EpisodeRecord:
        if not self._file.id.valid:
            raise LogFormatError(f"{self.path}: this TrajectoryLog is closed; open it again to read")
        if not isinstance(index, (int, np.integer)) or not -len(self.episodes) <= index < len(self.episodes):
            raise EpisodeIndexError(
                f"{self.path}: episode {index!r} is out of range; the log has {len(self.episodes)} episodes "
                f"(0..{len(self.episodes) - 1}); list them with TrajectoryLog(path).episodes"
            )
        return self.episodes[index]

    # -- re-simulation -----------------------------------------------------------------------------------------

    def replay(
        self,
        index: int,
        start: int = 0,
        stop: int | None = None,
        *,
        frames: bool = True,
        observations: bool = True,
        emulator_frames: bool = False,
    ) -> Iterator[ReplayStep]:
        """Re-simulate steps ``start..stop-1`` of episode ``index`` (``length + 1`` steps, the reset first).

        With ``emulator_frames``, each step carries ``screens``, every frame emulated during it (see
        :class:`ReplayStep`); frames, observations and rewards are the same bytes either way. An env stack whose
        frames cannot all be captured raises ``ScreenCaptureError`` (a ``ValueError``) at the first step.
        """
        episode = self.episode(index)
        stop = episode.length + 1 if stop is None else stop
        for name, value in (("start", start), ("stop", stop)):
            if not isinstance(value, (int, np.integer)):
                raise EpisodeIndexError(f"{self.path}: {name}={value!r} must be a whole step number")
        if start > stop:
            raise EpisodeIndexError(f"{self.path}: start={start} is after stop={stop}; steps run start..stop-1")
        if not 0 <= start <= stop <= episode.length + 1:
            raise EpisodeIndexError(
                f"{self.path}: steps {start}..{stop - 1} are outside episode {episode.index}, whose steps are "
                f"0..{episode.length} (the reset, then {episode.length} steps)"
            )
        if start == stop:
            return iter(())
        return self._replay(episode, start, stop, frames, observations, emulator_frames)

    def frames(self, index: int, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        """RGB frames (uint8 210x160x3) as ``env.unwrapped.render()`` showed them: reset, then every step."""
        return (s.frame for s in self.replay(index, start, stop, frames=True, observations=False))

    def observations(self, index: int, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        """What the agent received from the wrapped env, bit-exact."""
        return (s.observation for s in self.replay(index, start, stop, frames=False, observations=True))

    def _replay(
        self, episode: EpisodeRecord, start: int, stop: int, frames: bool, observations: bool, emulator_frames: bool
    ) -> Iterator[ReplayStep]:
        lane = self.lane(episode.stream, episode.env_index)
        origin = episode.start_step
        version_positions, version_values = self._versions(episode.stream)
        for item in resimulate(
            lane,
            origin + start,
            origin + stop - 1,
            frames=frames,
            observations=observations,
            episode=episode.index,
            emulator_frames=emulator_frames,
        ):
            step = item.position - origin
            at = np.searchsorted(version_positions, item.position, side="right") - 1
            yield ReplayStep(
                step=step,
                frame=item.frame,
                observation=item.observation,
                action=None if step == 0 else item.action,
                reward=item.reward,
                policy_version=int(version_values[at]) if at >= 0 else 0,
                terminated=item.terminated,
                truncated=item.truncated,
                screens=item.screens,
                lives=item.lives,
            )

    def lane(self, stream: int, lane: int) -> Lane:
        key = (stream, lane)
        if key not in self._lanes:
            self._check_environment(self.streams[stream])
            self._lanes[key] = self._load_lane(stream, lane)
        return self._lanes[key]

    def _check_environment(self, info: StreamInfo) -> None:
        if not self.check_environment:
            return
        recorded = self.versions["ale_py"]
        if recorded != ale_py.__version__:
            raise EnvironmentMismatchError(
                f"{self.path}: recorded with ale-py {recorded}, but {ale_py.__version__} is installed; install "
                f"ale-py=={recorded} to replay it exactly (or pass check_environment=False to try anyway)"
            )
        game = str(rebuild.spec_from_json(info.spec_json, str(self.path)).kwargs.get("game", ""))
        try:
            installed = emulator.rom_md5(game)
        except Exception:
            installed = "<missing>"
        if installed != info.rom_md5:
            raise EnvironmentMismatchError(
                f"{self.path}: the {game!r} ROM differs from the recorded one (md5 {info.rom_md5}, installed "
                f"{installed}); install the ale-py that recorded it ({recorded})"
            )

    def _load_lane(self, stream: int, lane_index: int) -> Lane:
        group = self._file[fmt.GROUP_STREAMS][fmt.stream_name(stream)]
        info = self.streams[stream]
        try:
            resets = self._table(group, fmt.DATASET_RESETS, fmt.RESET_DTYPE, info)
            sync = self._table(group, fmt.DATASET_SYNC, fmt.SYNC_DTYPE, info)
            snapshots = self._table(group, fmt.DATASET_SNAPSHOTS, fmt.SNAPSHOT_DTYPE, info)
            snapshot_bytes = group[fmt.DATASET_SNAPSHOT_BYTES]
        except (KeyError, OSError) as error:
            raise LogFormatError(f"{self.path}: stream {stream} is damaged ({error}) {fmt.DAMAGED_FIX}") from None
        if snapshot_bytes.ndim != 1 or snapshot_bytes.dtype != np.uint8:
            raise LogFormatError(
                f"{self.path}: {snapshot_bytes.name} has type {snapshot_bytes.dtype} and shape {snapshot_bytes.shape}, "
                f"expected uint8 bytes; the file is damaged {fmt.DAMAGED_FIX}"
            )
        self._check_stored(snapshot_bytes, "bytes")
        # Re-simulation starts from resets: one at a negative position or with a negative seed cannot be replayed.
        bad = (resets["position"] < 0) | ((resets["seed"] < 0) & (resets["seed"] != fmt.NO_SEED))
        if bad.any():
            row = resets[np.flatnonzero(bad)[0]]
            raise LogFormatError(
                f"{self.path}: stream {stream} records a reset at position {row['position']} with seed {row['seed']}; "
                f"positions and seeds are never negative (-1: unseeded), the file is damaged {fmt.DAMAGED_FIX}"
            )
        mine = resets["lane"] == lane_index
        sync_mine = sync["lane"] == lane_index
        return Lane(
            source=str(self.path),
            stream=stream,
            lane=lane_index,
            spec=rebuild.spec_from_json(info.spec_json, str(self.path)),
            actions=group[fmt.DATASET_ACTIONS],
            length=info.length,
            resets={int(p): int(s) for p, s in zip(resets["position"][mine], resets["seed"][mine], strict=True)},
            sync={
                int(p): (int(a), int(b))
                for p, a, b in zip(
                    sync["position"][sync_mine], sync["state_crc"][sync_mine], sync["obs_crc"][sync_mine], strict=True
                )
            },
            # A snapshot at an impossible position is skipped like one that does not decode: others serve.
            snapshots=snapshots[(snapshots["lane"] == lane_index) & (snapshots["position"] >= 0)],
            snapshot_bytes=snapshot_bytes,
            all_snapshots=snapshots,
        )

    def version_table(self, stream: int) -> tuple[np.ndarray, np.ndarray]:
        """A stream's policy versions: the positions where the version changed, and the version from there on."""
        return self._versions(stream)

    def _versions(self, stream: int) -> tuple[np.ndarray, np.ndarray]:
        group = self._file[fmt.GROUP_STREAMS][fmt.stream_name(stream)]
        table = self._table(group, fmt.DATASET_VERSIONS, fmt.VERSION_DTYPE, self.streams[stream])
        return table["position"], table["version"]

    def _table(self, group: h5py.Group, name: str, dtype: np.dtype, info: StreamInfo) -> np.ndarray:
        """Read a small table whole, after checking its type and that its size is possible for the stream."""
        dataset = group[name]
        if dataset.dtype != dtype or dataset.ndim != 1:
            raise LogFormatError(
                f"{self.path}: {dataset.name} has type {dataset.dtype} and shape {dataset.shape}, expected a "
                f"table of {dtype}; the file is damaged {fmt.DAMAGED_FIX}"
            )
        # At most one row per lane and position: a damaged header cannot make us allocate absurd memory.
        limit = info.n_lanes * (info.length + 1)
        if dataset.shape[0] > limit:
            raise LogFormatError(
                f"{self.path}: {dataset.name} declares {dataset.shape[0]} rows, more than the {limit} possible "
                f"for its stream; the file is damaged {fmt.DAMAGED_FIX}"
            )
        self._check_stored(dataset, "rows")
        return dataset[()]

    def _check_stored(self, dataset: h5py.Dataset, unit: str) -> None:
        """Refuse a dataset declared bigger than the data the file holds for it.

        Growing a chunked dataset costs nothing on disk until its chunks are written, so a damaged extent can
        declare billions of rows that read as zeros: reading them would take all memory, and a length derived
        from them all time. A writer writes every row it declares, so logs being written or left by a killed writer
        pass (tests/test_faults.py, tests/test_crash.py).
        """
        try:
            if dataset.chunks is None:
                stored = dataset.id.get_storage_size() // dataset.dtype.itemsize
            else:
                stored = dataset.id.get_num_chunks() * math.prod(dataset.chunks)
        except (OSError, RuntimeError) as error:  # h5py raises either for a damaged chunk index
            raise LogFormatError(
                f"{self.path}: the chunk index of {dataset.name} cannot be read ({error}); the file is damaged "
                f"{fmt.DAMAGED_FIX}"
            ) from None
        if dataset.size > stored:
            declared = dataset.shape[-1] if dataset.ndim else dataset.size
            raise LogFormatError(
                f"{self.path}: {dataset.name} declares {declared} {unit}, more than the file stores ({stored} "
                f"values); the file is damaged {fmt.DAMAGED_FIX}"
            )

    # -- reading the file --------------------------------------------------------------------------------------

    def _stream_info(self, index: int) -> StreamInfo:
        group = self._file[fmt.GROUP_STREAMS][fmt.stream_name(index)]

        def attribute(key: str, parse: Callable[[Any], Any] = str) -> Any:
            try:
                return parse(group.attrs[key])
            except (KeyError, ValueError, TypeError, OverflowError, OSError) as error:
                raise LogFormatError(
                    f"{self.path}: stream {index} attribute {key!r} is missing or unreadable ({error}); the file is "
                    f"damaged {fmt.DAMAGED_FIX}"
                ) from None

        n_lanes = attribute(fmt.ATTR_N_LANES, int)
        actions = group[fmt.DATASET_ACTIONS]
        if actions.ndim != 2 or actions.shape[0] != n_lanes or actions.dtype != fmt.ACTION_DTYPE or n_lanes < 1:
            raise LogFormatError(
                f"{self.path}: stream {index} actions are {actions.dtype} of shape {actions.shape}, expected "
                f"{np.dtype(fmt.ACTION_DTYPE)} of shape ({n_lanes}, T); the file is damaged {fmt.DAMAGED_FIX}"
            )
        self._check_stored(actions, "positions")
        return StreamInfo(
            index=index,
            env_id=attribute(fmt.ATTR_ENV_ID),
            game=attribute(fmt.ATTR_GAME),
            tag=attribute(fmt.ATTR_TAG),
            n_lanes=n_lanes,
            length=int(actions.shape[1]),
            action_meanings=attribute(fmt.ATTR_ACTION_MEANINGS, _json_tuple),
            obs_shape=attribute(fmt.ATTR_OBS_SHAPE, _json_tuple),
            obs_dtype=attribute(fmt.ATTR_OBS_DTYPE),
            rom_md5=attribute(fmt.ATTR_ROM_MD5),
            snapshot_interval=attribute(fmt.ATTR_SNAPSHOT_INTERVAL, int),
            sync_interval=attribute(fmt.ATTR_SYNC_INTERVAL, int),
            spec_json=attribute(fmt.ATTR_SPEC_JSON),
        )

    def _read_episodes(self) -> list[EpisodeRecord]:
        dataset = self._file[fmt.DATASET_EPISODES]
        limit = sum(s.n_lanes * (s.length + 1) for s in self.streams)
        if dataset.ndim != 1:
            raise LogFormatError(
                f"{self.path}: the episodes table has shape {dataset.shape}, expected one row per episode; the file "
                f"is damaged {fmt.DAMAGED_FIX}"
            )
        if dataset.shape[0] > limit:
            raise LogFormatError(
                f"{self.path}: the episodes table declares {dataset.shape[0]} rows, more than the {limit} the "
                f"streams can hold; the file is damaged {fmt.DAMAGED_FIX}"
            )
        self._check_stored(dataset, "rows")
        table = dataset[()]
        records = []
        versions = {s.index: self._versions(s.index) for s in self.streams}
        for index, row in enumerate(table):
            stream, lane = int(row["stream"]), int(row["lane"])
            if not 0 <= stream < len(self.streams) or not 0 <= lane < self.streams[stream].n_lanes:
                raise LogFormatError(
                    f"{self.path}: episode {index} names stream {stream} lane {lane}, which is absent; the file is "
                    f"damaged {fmt.DAMAGED_FIX}"
                )
            start, length = int(row["start"]), int(row["length"])
            if start < 0 or length < 0 or start + length >= self.streams[stream].length + 1:
                raise LogFormatError(
                    f"{self.path}: episode {index} spans positions {start}..{start + length}, beyond the "
                    f"{self.streams[stream].length} recorded; the file is damaged {fmt.DAMAGED_FIX}"
                )
            records.append(
                self._record(
                    index,
                    stream,
                    lane,
                    start,
                    length,
                    versions[stream],
                    float(row["total_reward"]),
                    bool(row["terminated"]),
                    bool(row["truncated"]),
                    bool(row["finished"]),
                )
            )
        records.extend(self._recover_unlisted(records, versions))
        return records

    def _record(
        self,
        index: int,
        stream: int,
        lane: int,
        start: int,
        length: int,
        versions: tuple[np.ndarray, np.ndarray],
        total_reward: float,
        terminated: bool,
        truncated: bool,
        finished: bool,
    ) -> EpisodeRecord:
        positions, values = versions
        lo = np.searchsorted(positions, start + min(1, length), side="right") - 1
        hi = np.searchsorted(positions, start + length, side="right")
        played = tuple(int(v) for v in values[max(lo, 0) : hi]) or (0,)
        return EpisodeRecord(
            index=index,
            env_index=lane,
            stream=stream,
            tag=self.streams[stream].tag,
            start_step=start,
            length=length,
            total_reward=total_reward,
            terminated=terminated,
            truncated=truncated,
            finished=finished,
            policy_versions=tuple(dict.fromkeys(played)),
        )

    def _recover_unlisted(
        self, records: list[EpisodeRecord], versions: dict[int, tuple[np.ndarray, np.ndarray]]
    ) -> list[EpisodeRecord]:
        """Episodes whose steps reached the file but whose row did not: the writer was killed mid-episode.

        They are listed after the recorded ones, unfinished, with a NaN total reward (replay them to know it).
        """
        listed = {(r.stream, r.env_index, r.start_step) for r in records}
        recovered: list[EpisodeRecord] = []
        for info in self.streams:
            group = self._file[fmt.GROUP_STREAMS][fmt.stream_name(info.index)]
            resets = self._table(group, fmt.DATASET_RESETS, fmt.RESET_DTYPE, info)
            for lane in range(info.n_lanes):
                starts = np.sort(resets["position"][resets["lane"] == lane])
                for k, start in enumerate(starts):
                    if (info.index, lane, int(start)) in listed or not 0 <= start < info.length:
                        continue
                    end = int(starts[k + 1]) - 1 if k + 1 < len(starts) else info.length - 1
                    recovered.append(
                        self._record(
                            len(records) + len(recovered),
                            info.index,
                            lane,
                            int(start),
                            end - int(start),
                            versions[info.index],
                            float("nan"),
                            False,
                            False,
                            False,
                        )
                    )
        return recovered

    # -- lifetime ----------------------------------------------------------------------------------------------

    def close(self) -> None:
        for lane in self._lanes.values():
            lane.close()
        self._lanes.clear()
        self._file.close()

    def __enter__(self) -> TrajectoryLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self.episodes)
