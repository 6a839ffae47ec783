"""Re-simulation ahead of the renderer, in worker processes: the emulator holds the GIL, so it runs elsewhere.

Every recorded step must be emulated, but only every ``stride``-th frame is drawn. A worker process
replays whole episodes and sends back only the kept steps, in chunks, through a bounded queue (so it runs
at most a few chunks ahead). Episodes that follow each other in one env lane form a *run* that one worker
replays without seeking; runs are dealt to the workers in turn, so a time-lapse of episodes spread over
training seeks and re-simulates several at once while the main process analyses, composes and encodes.
``workers=0`` replays in-process, cheapest when there is nothing to overlap (one episode, or one run).

With ``emulator_frames``, each kept step also carries the screens of every frame emulated during it
(:class:`replay.ReplayStep`), for a video at the game's real speed; the steps a stride skips send none.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import pickle
import queue
import traceback
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np

from render.agent_view import agent_observations, view_for
from render.errors import RenderError
from replay import EpisodeRecord, TrajectoryLog
from replay import log_format as fmt
from replay.reader import ReplayStep

_POLL_SECONDS = 0.5


@dataclass(frozen=True)
class KeptStep:
    """One drawn frame of an episode, the frame after ``step`` steps (0: the reset frame).

    ``action`` is the action taken from this frame and ``policy_version`` the version of the policy that chose it
    (the agent saw this frame, then acted): what the network's outputs on this frame explain. The episode's last
    frame has no action after it: ``action`` is ``None`` and ``policy_version`` the version that led to it.
    ``episode_reward`` counts every step up to this frame, drawn or not.

    ``observation`` is what the network was given: for a Stable-Baselines3 run (:mod:`render.agent_view`), the
    observation of the agent's decision being played out from this frame (before its first decision, that
    decision's).

    ``screens`` (with ``emulator_frames``) are the emulator's frames from this one until the next agent frame: this
    frame first, then those emulated while its action played out (the next step's screens but its last, which is
    the next frame); the last frame's is this frame alone. ``None`` otherwise.
    """

    step: int
    frame: np.ndarray
    observation: np.ndarray | None
    action: int | None
    episode_reward: float
    policy_version: int
    screens: tuple[np.ndarray, ...] | None = None


def kept_steps(
    log: TrajectoryLog,
    episode: EpisodeRecord,
    stride: int,
    *,
    observations: bool,
    emulator_frames: bool = False,
    rewards: np.ndarray | None = None,
) -> Iterator[KeptStep]:
    """Every ``stride``-th frame of ``episode`` and its last, reset frame first, re-simulated here; with
    ``emulator_frames``, each with its screens (see :class:`KeptStep`; a skipped frame's are dropped).
    ``rewards``, a ``(length,)`` array, receives every step's reward as the replay goes."""
    if stride < 1:
        raise ValueError(f"expected a positive frame stride, got {stride}")
    reward = 0.0
    held: ReplayStep | None = None  # the frame before ``step``: its action is ``step``'s
    held_reward = 0.0
    replayed = log.replay(episode.index, frames=True, observations=observations, emulator_frames=emulator_frames)
    view = view_for(log.metadata, episode.stream) if observations else None
    if view is not None:
        replayed = agent_observations(replayed, view, log.action_meanings, str(log.path))
    for step in replayed:
        if held is not None and (held.step % stride == 0):
            screens = None
            if emulator_frames:
                screens = (held.frame, *(step.screens or ())[:-1])
            yield KeptStep(
                held.step, held.frame, held.observation, step.action, held_reward, step.policy_version, screens
            )
        reward += step.reward
        if rewards is not None and step.step:
            rewards[step.step - 1] = step.reward
        held, held_reward = step, reward
    if held is not None:  # the last frame is always kept
        screens = (held.frame,) if emulator_frames else None
        yield KeptStep(held.step, held.frame, held.observation, None, held_reward, held.policy_version, screens)


def episode_rewards(log: TrajectoryLog, episode: EpisodeRecord) -> np.ndarray:
    """The reward of each of ``episode``'s steps, ``(length,)`` float64 in order, re-simulated without pictures
    (the per-step rewards are not stored: they come out of the emulator).

    Give it a log of its own, not the one the episode's frames are replayed from: each keeps its lanes' emulators
    where the last episode ended, so consecutive episodes replay without seeking from a snapshot. Sharing one would
    send the frames' replay back to a snapshot for every episode."""
    rewards = np.zeros(episode.length, np.float64)
    for step in log.replay(episode.index, frames=False, observations=False):
        if step.step:
            rewards[step.step - 1] = step.reward
    return rewards


HELD_BYTES = 512 * 2**20  # an episode's kept frames held at once so one replay gives its rewards and its frames


def rewards_and_steps(
    log: TrajectoryLog,
    ahead: Callable[[], TrajectoryLog],
    episode: EpisodeRecord,
    stride: int,
    *,
    observations: bool,
    emulator_frames: bool = False,
    budget: int = HELD_BYTES,
) -> tuple[np.ndarray, Iterable[KeptStep]]:
    """``episode``'s rewards (every step's) before its kept steps, whose frames need them (the return that
    followed each frame).

    Where the kept frames fit in ``budget`` bytes, one replay gives both: the frames are held until the episode
    ends. Otherwise the rewards come from a replay without pictures on the log ``ahead()`` returns (a log of its
    own, see :func:`episode_rewards`), then the frames stream as usual.
    """
    screen = 210 * 160 * 3
    each = screen * (5 if emulator_frames else 1) + (4 * 84 * 84 if observations else 0)
    if kept_count(episode, stride) * each <= budget:
        rewards = np.zeros(episode.length, np.float64)
        held = list(
            kept_steps(
                log, episode, stride, observations=observations, emulator_frames=emulator_frames, rewards=rewards
            )
        )
        return rewards, held
    steps = kept_steps(log, episode, stride, observations=observations, emulator_frames=emulator_frames)
    return episode_rewards(ahead(), episode), steps


def seek_distance(log: TrajectoryLog) -> Callable[[EpisodeRecord], int]:
    """Steps re-simulation emulates before an episode's first frame: from the nearest earlier snapshot or
    seeded reset of its lane (the anchors :func:`replay.resim.resimulate` starts from)."""
    anchors: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def distance(episode: EpisodeRecord) -> int:
        key = (episode.stream, episode.env_index)
        if key not in anchors:
            lane = log.lane(*key)
            seeded = sorted(p for p, seed in lane.resets.items() if seed != fmt.NO_SEED)
            anchors[key] = (np.sort(lane.snapshots["position"]), np.array(seeded, dtype=np.int64))
        snapshots, seeded = anchors[key]
        start = episode.start_step
        # a snapshot serves positions after it; a seeded reset serves its own position too
        below = np.searchsorted(snapshots, start, side="left")
        upto = np.searchsorted(seeded, start, side="right")
        nearest = max(int(snapshots[below - 1]) if below else 0, int(seeded[upto - 1]) if upto else 0)
        return start - nearest

    return distance


def runs(episodes: Sequence[EpisodeRecord]) -> list[list[int]]:
    """Positions in ``episodes`` grouped into runs: each next episode starts where the previous one ended."""
    grouped: list[list[int]] = []
    for k, episode in enumerate(episodes):
        if grouped:
            previous = episodes[grouped[-1][-1]]
            same_lane = (previous.stream, previous.env_index) == (episode.stream, episode.env_index)
            if same_lane and episode.start_step == previous.start_step + previous.length + 1:
                grouped[-1].append(k)
                continue
        grouped.append([k])
    return grouped


def auto_workers(episodes: Sequence[EpisodeRecord], most: int = 2) -> int:
    """Worker processes worth starting for ``episodes``: none for a single run, else up to ``most``."""
    count = len(runs(episodes))
    return 0 if count < 2 else min(most, count)


def kept_count(episode: EpisodeRecord, stride: int) -> int:
    """How many steps :func:`kept_steps` yields for ``episode``."""
    return episode.length // stride + 1 + (1 if episode.length % stride else 0)


class ReplayFeed:
    """Kept steps of ``episodes`` (in order), re-simulated by ``workers`` processes ahead of the caller.

    Example:
        >>> feed = ReplayFeed(log_path, episodes, stride=4, observations=True, workers=2)  # doctest: +SKIP
        >>> with feed:  # doctest: +SKIP
        ...     for k, episode in enumerate(episodes):
        ...         for kept in feed.steps(k):
        ...             ...
    """

    def __init__(
        self,
        log_path: Path,
        episodes: Sequence[EpisodeRecord],
        stride: int,
        *,
        observations: bool,
        emulator_frames: bool = False,
        workers: int = 1,
        chunk: int = 32,
        ahead: int = 4,
        rewards: bool = False,
    ) -> None:
        if workers < 0:
            raise ValueError(f"expected 0 or more re-simulation workers, got {workers}")
        self.episodes = list(episodes)
        self.stride, self.observations, self.chunk = stride, observations, chunk
        self.with_rewards = rewards
        self.emulator_frames = emulator_frames
        self._log: TrajectoryLog | None = None
        self._ahead: TrajectoryLog | None = None  # the rewards' own log, opened when needed: see episode_rewards
        self._held: dict[int, Iterable[KeptStep]] = {}  # steps of episodes whose rewards were asked for
        self._processes: list[multiprocessing.process.BaseProcess] = []
        self._queues: list[multiprocessing.queues.Queue] = []
        self._worker_of: dict[int, int] = {}
        if workers == 0:
            self._log = TrajectoryLog(log_path)
            self._path = log_path
            return
        context = multiprocessing.get_context("spawn")
        grouped = runs(self.episodes)
        count = min(workers, len(grouped))
        for r, run in enumerate(grouped):
            for k in run:
                self._worker_of[k] = r % count
        for w in range(count):
            jobs = [(k, e.index) for k, e in enumerate(self.episodes) if self._worker_of[k] == w]
            results = context.Queue(maxsize=ahead)
            process = context.Process(
                target=_work,
                args=(str(log_path), jobs, stride, observations, emulator_frames, chunk, results, rewards),
                name=f"render-resim-{w}",
                daemon=True,
            )
            process.start()
            self._processes.append(process)
            self._queues.append(results)

    def rewards(self, order: int) -> np.ndarray:
        """Every step's reward of ``episodes[order]`` (see :func:`episode_rewards`); with ``rewards=True``, call it
        once before :meth:`steps` of the same episode."""
        episode = self.episodes[order]
        if not self.with_rewards:
            raise RuntimeError("this feed was made without rewards=True")
        if self._log is not None:
            rewards, self._held[order] = rewards_and_steps(
                self._log, self._ahead_log, episode, self.stride,
                observations=self.observations, emulator_frames=self.emulator_frames,
            )  # fmt: skip
            return rewards
        payload = self._payload(order)
        if not isinstance(payload, np.ndarray):
            raise RenderError(f"re-simulation sent steps of episode #{order} where its rewards were due")
        return payload

    def steps(self, order: int) -> Iterator[KeptStep]:
        """The kept steps of ``episodes[order]``; call in order, each once."""
        episode = self.episodes[order]
        if order in self._held:
            yield from self._held.pop(order)
            return
        if self._log is not None:
            yield from kept_steps(
                self._log,
                episode,
                self.stride,
                observations=self.observations,
                emulator_frames=self.emulator_frames,
            )
            return
        while True:
            payload = self._payload(order)
            if payload is None:
                return
            if isinstance(payload, np.ndarray):
                raise RenderError(f"call ReplayFeed.rewards({order}) before steps({order}): the rewards come first")
            yield from payload

    def _ahead_log(self) -> TrajectoryLog:
        if self._ahead is None:
            self._ahead = TrajectoryLog(self._path)
        return self._ahead

    def _payload(self, order: int) -> list[KeptStep] | np.ndarray | None:
        worker = self._worker_of[order]
        tag, payload = self._receive(worker, self.episodes[order])
        if tag != order:
            raise RenderError(f"re-simulation worker {worker} sent episode #{tag} where #{order} was due")
        return payload

    def close(self) -> None:
        for log in (self._log, self._ahead):
            if log is not None:
                log.close()
        for process in self._processes:
            if process.is_alive():
                process.terminate()
            process.join()
        for results in self._queues:
            results.close()
            results.cancel_join_thread()
        self._processes.clear()
        self._queues.clear()

    def __enter__(self) -> ReplayFeed:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _receive(self, worker: int, episode: EpisodeRecord) -> tuple[int, list[KeptStep] | np.ndarray | None]:
        process, results = self._processes[worker], self._queues[worker]
        while True:
            try:
                message = results.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                if not process.is_alive():
                    raise RenderError(
                        f"the re-simulation worker for episode {episode.index} died (exit code "
                        f"{process.exitcode}); rerun with workers=0 to see the error in this process"
                    ) from None
                continue
            if message[0] == "error":
                raise message[1]
            return message


def _work(
    log_path: str,
    jobs: list[tuple[int, int]],
    stride: int,
    observations: bool,
    emulator_frames: bool,
    chunk: int,
    results: multiprocessing.queues.Queue,
    rewards: bool = False,
) -> None:
    """Worker process: replay each job's episode and send its rewards (if asked), its kept steps in chunks, then
    ``None``."""
    try:
        with TrajectoryLog(log_path) as log, contextlib.ExitStack() as stack:
            opened: list[TrajectoryLog] = []

            def ahead() -> TrajectoryLog:
                if not opened:
                    opened.append(stack.enter_context(TrajectoryLog(log_path)))
                return opened[0]

            for order, index in jobs:
                batch: list[KeptStep] = []
                episode = log.episode(index)
                if rewards:
                    found, replayed = rewards_and_steps(
                        log, ahead, episode, stride, observations=observations, emulator_frames=emulator_frames
                    )
                    results.put((order, found))
                else:
                    replayed = kept_steps(
                        log, episode, stride, observations=observations, emulator_frames=emulator_frames
                    )
                for kept in replayed:
                    batch.append(kept)
                    if len(batch) == chunk:
                        results.put((order, batch))
                        batch = []
                if batch:
                    results.put((order, batch))
                results.put((order, None))
    except BaseException as error:  # sent to the parent, which raises it
        results.put(("error", portable(error)))


def portable(error: BaseException) -> BaseException:
    """The error itself if it survives pickling, else a RenderError carrying its traceback."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:
        return RenderError(f"re-simulation failed in a worker process:\n{traceback.format_exc()}")


@dataclass(frozen=True)
class Packed:
    """An array zlib-compressed at level 1 (an Atari frame ~1.4 KB, a stack of 4 84x84 observations ~0.8 KB, in
    ~0.1 ms), to keep many episodes' steps in memory or send them between processes."""

    data: bytes
    shape: tuple[int, ...]
    dtype: str

    @classmethod
    def of(cls, array: np.ndarray) -> Packed:
        array = np.ascontiguousarray(array)
        return cls(zlib.compress(array.data, 1), array.shape, array.dtype.str)

    def array(self) -> np.ndarray:
        return np.frombuffer(zlib.decompress(self.data), np.dtype(self.dtype)).reshape(self.shape).copy()


def pack(kept: KeptStep) -> KeptStep:
    """``kept`` with its frame and observation :class:`Packed` (screens are not kept)."""
    observation = None if kept.observation is None else Packed.of(kept.observation)
    return dataclasses.replace(kept, frame=Packed.of(kept.frame), observation=observation, screens=None)


def unpack(kept: KeptStep) -> KeptStep:
    """The inverse of :func:`pack`."""
    observation = None if kept.observation is None else kept.observation.array()
    return dataclasses.replace(kept, frame=kept.frame.array(), observation=observation)


def serve_episodes(jobs: multiprocessing.queues.Queue, results: multiprocessing.queues.Queue, chunk: int = 16) -> None:
    """Worker process of a long-lived replay service: for each job ``(number, log path, episode record)`` send
    ``(number, "steps", [packed kept steps])`` in chunks as it re-simulates the whole episode (stride 1, with
    observations), then ``(number, "done", rewards)``, or ``(number, "error", error)``; ``None`` ends it.

    Logs stay open between jobs, so a lane's env left where an episode ended serves the next episode of that lane
    without seeking; a log whose episode record no longer matches (a live run grew) is opened again."""
    logs: dict[str, TrajectoryLog] = {}
    try:
        while (job := jobs.get()) is not None:
            number, path, expected = job
            try:
                log = logs.get(path)
                if log is None or not _holds(log, expected):
                    if log is not None:
                        log.close()
                    log = logs[path] = TrajectoryLog(path)
                if not _holds(log, expected):
                    raise RenderError(f"{path}: episode {expected.index} is no longer the one asked for; open it again")
                rewards = np.zeros(expected.length, np.float64)
                batch: list[KeptStep] = []
                for kept in kept_steps(log, expected, 1, observations=True, rewards=rewards):
                    batch.append(pack(kept))
                    if len(batch) == chunk:
                        results.put((number, "steps", batch))
                        batch = []
                if batch:
                    results.put((number, "steps", batch))
                results.put((number, "done", rewards))
            except Exception as error:  # sent to the parent, which raises it where the episode is asked for
                results.put((number, "error", portable(error)))
    finally:
        for log in logs.values():
            log.close()


def _holds(log: TrajectoryLog, episode: EpisodeRecord) -> bool:
    return 0 <= episode.index < len(log.episodes) and same_steps(log.episodes[episode.index], episode)


def same_steps(known: EpisodeRecord, episode: EpisodeRecord) -> bool:
    """Whether two records name the same steps (a live run's unfinished episode grows; its reward is NaN)."""
    where = ("index", "stream", "env_index", "start_step", "length", "finished")
    return all(getattr(known, name) == getattr(episode, name) for name in where)
