"""Frames for the viewer: lossless PNGs of any step of any episode, from a greenzone of the episodes played.

- **Re-simulation** runs in one long-lived worker process (:func:`render.feed.serve_episodes`): the emulator holds
  the GIL, so a process of its own leaves this one free to draw and encode, and it keeps its logs (and their
  lanes' live envs) open between episodes. An episode is re-simulated once, whole, from its reset: ``minimal``
  and ``full`` need every step's reward before any frame (the return that followed). Its kept steps come back in
  chunks as they are emulated, frame and observation zlib-compressed (~2 KB a step), so ``raw`` shows step k as
  soon as the worker passes it. Episodes waiting for the worker go newest first: the one just asked for.
- **The greenzone** (:class:`_Track`, one per episode, at most ``greenzone_bytes`` of them, least recently used out)
  keeps those steps, the rewards, and per overlay the frame contexts made of them: for ``full`` the network's
  analytics (batched as the sequential render batches them, probes calibrated on the episode's first batch), the
  value history and the value axis's span so far. Everything drawing step k needs from the steps before it.
  Contexts are made in order, on demand, up to the step asked for.
- **Drawing**: each (run, episode, overlay) being watched has a :class:`_Player` with an overlay of its own. Its
  canvas redraws a part when that part's inputs differ from those of the frame it drew last, whichever frame that
  was, so drawing step k after any other step gives a sequential render's bytes (tested against
  :func:`render.render_still`). The step asked for is drawn in the request's thread; a request that plays on (a
  step 1 to ``MAX_STRIDE`` after the last: the stride is the speed) also queues the next ``AHEAD`` steps at that
  stride, drawn and PNG-encoded in a thread pool ahead of the playhead (OpenCV and zlib release the GIL). A seek
  queues nothing, so seeks in a row do not wait behind frames drawn for nobody.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import multiprocessing
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import torch

from render.config import OverlayConfig
from render.draw.overlays import Overlay
from render.episode import EpisodeScenes
from render.errors import RenderError
from render.feed import KeptStep, same_steps, serve_episodes, unpack
from render.frame import FrameContext
from render.source import RenderSource
from replay import EpisodeRecord

# zlib level 1 without PNG's row filters: lossless, and half the time of OpenCV's default filters (a 1280x720
# full overlay: ~10 ms and ~170 KB against ~23 ms and ~200 KB)
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE]
AHEAD = 12  # steps drawn ahead of the last one asked for (0.4 s at 30 frames/s)
BEHIND = 30  # PNGs kept of the steps just played, for steps back
MAX_STRIDE = 8  # requests this far apart count as playback at that stride (speed), farther as a seek
GREENZONE_BYTES = 256 * 2**20
_CONTEXT_BYTES = 600  # a frame context's own objects, beside its arrays
_NO_FRAME = np.zeros((0, 0, 3), np.uint8)  # a kept context's frame: the greenzone holds it packed
# The network's threads while frame contexts are made (full): one, as ``python -m render`` (torch_threads) and the
# trainer use. Beside the re-simulation worker and other work, two threads on two cores wait on each other: a cold
# seek's forward passes took a median 754 ms with two, 86 ms with one, side by side on a busy machine (the profile
# in docs/notes.md), with the same outputs bit for bit. Set per thread: torch keeps the count per thread, and a
# request's thread may not be the one that set it.
TORCH_THREADS = 1


def encode_png(image: np.ndarray) -> bytes:
    """``image`` (RGB uint8 HxWx3) as PNG bytes, losslessly."""
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".png", bgr, PNG_PARAMS)
    if not ok:
        raise ValueError(f"could not encode a {image.shape} {image.dtype} frame as PNG")
    return encoded.tobytes()


class _Scene:
    """One overlay's frame contexts of a track's episode, made in order on demand and kept (frames left out)."""

    def __init__(self, make: Callable[[], Iterator[FrameContext]]) -> None:
        self._make = make
        self._source: Iterator[FrameContext] | None = None
        self.contexts: list[tuple[FrameContext, bool]] = []  # and whether it shows the step's observation
        self.bytes = 0
        self._lock = threading.Lock()

    def context(self, step: int) -> tuple[FrameContext, bool]:
        with self._lock, _torch_threads(TORCH_THREADS):
            if self._source is None:
                self._source = self._make()
            while len(self.contexts) <= step:
                context = next(self._source)
                if context.step != len(self.contexts):
                    raise RenderError(f"episode {context.episode}: step {context.step} came where {step} was due")
                self.contexts.append((_stripped(context), context.observation is not None))
                self.bytes += _context_bytes(context)
            return self.contexts[step]


@contextlib.contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    """Torch's intra-op threads set to ``count`` in this thread for the block, then set back."""
    before = torch.get_num_threads()
    if before == count:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _Track:
    """One episode's greenzone: its kept steps as re-simulated (packed), its rewards, and its scenes."""

    def __init__(self, log: Path, episode: EpisodeRecord) -> None:
        self.log, self.episode = log, episode
        self.steps: list[KeptStep] = []
        self.rewards: np.ndarray | None = None
        self.error: BaseException | None = None
        self.scenes: dict[str, _Scene] = {}
        self._bytes = 0
        self._changed = threading.Condition()

    @property
    def done(self) -> bool:
        return self.rewards is not None or self.error is not None

    @property
    def bytes(self) -> int:
        return self._bytes + sum(scene.bytes for scene in list(self.scenes.values()))

    def add(self, steps: list[KeptStep]) -> None:
        with self._changed:
            self.steps.extend(steps)
            self._bytes += sum(len(s.frame.data) + (len(s.observation.data) if s.observation else 0) for s in steps)
            self._changed.notify_all()

    def finish(self, rewards: np.ndarray | None, error: BaseException | None = None) -> None:
        with self._changed:
            self.rewards, self.error = rewards, error
            self._changed.notify_all()

    def step(self, index: int) -> KeptStep:
        """Kept step ``index``, waiting for the worker to re-simulate it."""
        with self._changed:
            self._changed.wait_for(lambda: len(self.steps) > index or self.done)
            if len(self.steps) > index:
                return self.steps[index]
            self._raise()
            raise RenderError(f"episode {self.episode.index} was re-simulated without step {index}")

    def whole(self) -> np.ndarray:
        """Every step's reward, once the worker has re-simulated the whole episode."""
        with self._changed:
            self._changed.wait_for(lambda: self.done)
            self._raise()
            assert self.rewards is not None
            return self.rewards

    def kept_steps(self) -> Iterator[KeptStep]:
        """The episode's kept steps unpacked, in order, as the worker re-simulates them."""
        for index in range(self.episode.length + 1):
            yield unpack(self.step(index))

    def scene(self, scenes: EpisodeScenes) -> _Scene:
        with self._changed:
            if scenes.kind not in self.scenes:
                rewards = self.whole if scenes.needs_rewards else lambda: None
                self.scenes[scenes.kind] = _Scene(lambda: scenes.scene(self.episode, self.kept_steps(), rewards()))
            return self.scenes[scenes.kind]

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error


class _Resimulator:
    """The worker process and the tracks queued for it, the newest first: the episode just asked for."""

    def __init__(self) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._process: multiprocessing.process.BaseProcess | None = None
        self._jobs: multiprocessing.queues.Queue | None = None
        self._results: multiprocessing.queues.Queue | None = None
        self._pending: list[_Track] = []
        self._running: tuple[int, _Track] | None = None
        self._numbers = itertools.count()
        self._lock = threading.Lock()
        self._closed = False

    def start(self) -> None:
        """Start the worker now (it takes a second to import), rather than at the first episode."""
        with self._lock:
            self._ensure_process()

    def submit(self, track: _Track) -> None:
        with self._lock:
            self._pending.append(track)
            self._next()

    def withdraw(self, track: _Track) -> None:
        """Forget ``track`` if it is still waiting for the worker (it left the greenzone)."""
        with self._lock:
            if track in self._pending:
                self._pending.remove(track)
                track.finish(None, RenderError(f"episode {track.episode.index} left the greenzone before replaying"))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            process, jobs = self._process, self._jobs
            self._process = None
        if process is not None:
            jobs.put(None)
            process.join(timeout=2)
            if process.is_alive():
                process.terminate()
                process.join()

    def _ensure_process(self) -> None:
        if self._closed:
            raise RenderError("the frame cache is closed")
        if self._process is not None and self._process.is_alive():
            return
        self._jobs, self._results = self._context.Queue(), self._context.Queue()
        self._process = self._context.Process(
            target=serve_episodes, args=(self._jobs, self._results), name="viewer-resim", daemon=True
        )
        self._process.start()
        threading.Thread(
            target=self._receive, args=(self._process, self._results), name="viewer-resim-results", daemon=True
        ).start()

    def _next(self) -> None:
        if self._running is not None or not self._pending:
            return
        track = self._pending.pop()
        self._ensure_process()
        number = next(self._numbers)
        self._running = (number, track)
        self._jobs.put((number, str(track.log), track.episode))

    def _receive(self, process: multiprocessing.process.BaseProcess, results: multiprocessing.queues.Queue) -> None:
        while True:
            try:
                number, kind, payload = results.get(timeout=0.5)
            except queue.Empty:
                if process.is_alive():
                    continue
                with self._lock:
                    if self._running is not None:
                        self._running[1].finish(None, RenderError(
                            f"the viewer's re-simulation worker died (exit code {process.exitcode}) replaying episode "
                            f"{self._running[1].episode.index}; ask again to restart it"
                        ))  # fmt: skip
                        self._running = None
                    if process is self._process:
                        self._process = None
                    if not self._closed and self._pending:
                        self._next()
                return
            with self._lock:
                if self._running is None or self._running[0] != number:
                    continue
                track = self._running[1]
                if kind != "steps":
                    self._running = None
            if kind == "steps":
                track.add(payload)
                continue
            track.finish(payload if kind == "done" else None, payload if kind == "error" else None)
            with self._lock:
                self._next()


# One overlay draws at a time, across players: the drawing code keeps caches shared between overlays (text,
# thumbnails), and a seek test once drew a minimal frame that differed from the sequential one while another
# player's frames were being drawn ahead. PNG encoding, the larger share, still runs in parallel.
_DRAW_LOCK = threading.Lock()


class _Player:
    """One episode being watched with one overlay: an overlay of its own, and the PNGs of the steps around the
    playhead, drawn ahead in ``pool``."""

    def __init__(self, track: _Track, scenes: EpisodeScenes, pool: ThreadPoolExecutor) -> None:
        self.track, self._pool = track, pool
        self._overlay: Overlay = scenes.overlay(track.episode)
        self._scene = track.scene(scenes)
        self._lock = threading.Lock()
        self._ready: dict[int, Future[bytes]] = {}
        self._last: int | None = None
        self._stride = 1

    def png(self, step: int) -> bytes:
        with self._lock:
            playing = self._last is not None and 0 < step - self._last <= MAX_STRIDE
            if playing:
                self._stride = step - self._last
            self._last = step
            future = self._ready.get(step)
            inline = future is None or future.cancelled()
            if inline:  # drawn in this thread: the pool may be busy with steps ahead of the last playhead
                future = self._ready[step] = Future()
                future.set_running_or_notify_cancel()  # so another request's window cannot cancel it
            self._top_up(step, AHEAD if playing else 0)  # a seek alone draws nothing ahead: seeks stay quick
        if inline:
            try:
                future.set_result(self._draw_png(step))
            except BaseException as error:
                future.set_exception(error)
        return future.result()

    def close(self) -> None:
        with self._lock:
            for future in self._ready.values():
                future.cancel()
            self._ready.clear()

    def _wanted(self, step: int) -> Future[bytes]:
        future = self._ready.get(step)
        if future is None or future.cancelled():
            future = self._ready[step] = self._pool.submit(self._draw_png, step)
        return future

    def _top_up(self, step: int, count: int) -> None:
        """Queue the next ``count`` steps at the stride; drop (or cancel) what lies outside that window."""
        last = self.track.episode.length
        ahead = range(step + self._stride, min(last, step + count * self._stride) + 1, self._stride)
        keep = set(ahead) | set(range(max(0, step - BEHIND), step + 1))
        for kept in [s for s in self._ready if s not in keep]:
            self._ready.pop(kept).cancel()
        for s in ahead:
            self._wanted(s)

    def _draw_png(self, step: int) -> bytes:
        context, shows_observation = self._scene.context(step)
        kept = self.track.step(step)
        frame = kept.frame.array()
        observation = kept.observation.array() if shows_observation else None
        context = dataclasses.replace(context, frame=frame, observation=observation)
        with _DRAW_LOCK:
            image = self._overlay.render(context).copy()
        return encode_png(image)


class FrameCache:
    """PNGs of any step of any episode, from a greenzone of re-simulated episodes; safe across threads.

    Keeps at most ``capacity`` players (an episode watched with one overlay) and the greenzone's tracks up to
    ``greenzone_bytes`` (a track in use by a player stays). ``encoders`` threads draw and encode PNGs.
    """

    def __init__(self, capacity: int = 8, *, greenzone_bytes: int = GREENZONE_BYTES, encoders: int = 3) -> None:
        for name, value in (("capacity", capacity), ("greenzone_bytes", greenzone_bytes), ("encoders", encoders)):
            if value < 1:
                raise ValueError(f"expected a positive {name}, got {value}")
        self.capacity, self.greenzone_bytes = capacity, greenzone_bytes
        self._scenes: OrderedDict[tuple[RenderSource, str], EpisodeScenes] = OrderedDict()
        self._tracks: OrderedDict[tuple[Path, int], _Track] = OrderedDict()
        self._players: OrderedDict[tuple[RenderSource, int, str], _Player] = OrderedDict()
        self._resimulator = _Resimulator()
        self._pool = ThreadPoolExecutor(encoders, thread_name_prefix="viewer-frames")
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the re-simulation worker now instead of at the first frame asked for."""
        self._resimulator.start()

    def png(self, source: RenderSource, episode: int, step: int, overlay: str) -> bytes:
        """Step ``step`` of episode ``episode`` of ``source`` drawn with the ``overlay`` kind, as PNG bytes."""
        player = self._player(source, episode, overlay)
        if not 0 <= step <= player.track.episode.length:
            raise RenderError(
                f"{source.log}: episode {episode} has steps 0..{player.track.episode.length}, not step {step}"
            )
        try:
            return player.png(step)
        except CancelledError:  # another request moved the window past it meanwhile: draw it anyway
            return player.png(step)

    def greenzone(self) -> dict[str, int]:
        """What the greenzone holds: ``episodes`` (tracks), ``bytes`` and ``budget``."""
        with self._lock:
            tracks = list(self._tracks.values())
        return {"episodes": len(tracks), "bytes": sum(t.bytes for t in tracks), "budget": self.greenzone_bytes}

    def close(self) -> None:
        with self._lock:
            players, self._players = list(self._players.values()), OrderedDict()
            scenes, self._scenes = list(self._scenes.values()), OrderedDict()
            self._tracks.clear()
        for player in players:
            player.close()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._resimulator.close()
        for opened in scenes:
            opened.close()

    def _player(self, source: RenderSource, episode: int, overlay: str) -> _Player:
        key = (source, episode, overlay)
        with self._lock:
            player = self._players.get(key)
            # an unfinished episode of a live run may have grown (or moved to another index): looked up again
            if player is not None and player.track.error is None and player.track.episode.finished:
                self._players.move_to_end(key)
                return player
        scenes = self._episode_scenes(source, overlay, episode)
        record = scenes.episode(episode)
        track = self._track(source.log, record)
        opened = _Player(track, scenes, self._pool)  # outside the lock: an overlay takes ~50 ms to lay out
        evicted = []
        with self._lock:
            if key in self._players:  # another request opened it meanwhile
                evicted.append(opened)
                opened = self._players[key]
            else:
                self._players[key] = opened
            while len(self._players) > self.capacity:
                evicted.append(self._players.popitem(last=False)[1])
            left = self._over_budget()
        for player in evicted:
            player.close()
        for old in left:
            self._resimulator.withdraw(old)
        return opened

    def _episode_scenes(self, source: RenderSource, overlay: str, episode: int) -> EpisodeScenes:
        """The open log and overlay settings of ``source`` (opened again when a live run grew past ``episode``)."""
        key = (source, overlay)
        with self._lock:
            scenes = self._scenes.get(key)
            if scenes is not None:
                self._scenes.move_to_end(key)
                episodes = scenes.log.episodes
                if episode < len(episodes) and episodes[episode].finished:
                    return scenes
        opened = EpisodeScenes(source, OverlayConfig(kind=overlay))
        with self._lock:
            closing = [self._scenes.pop(key)] if key in self._scenes else []
            self._scenes[key] = opened
            while len(self._scenes) > self.capacity:
                closing.append(self._scenes.popitem(last=False)[1])
        for old in closing:  # the players using it keep what they took from it (overlays, scenes' probes)
            old.close()
        return opened

    def _track(self, log: Path, episode: EpisodeRecord) -> _Track:
        key = (log, episode.index)
        with self._lock:
            track = self._tracks.get(key)
            if track is not None and track.error is None and same_steps(track.episode, episode):
                self._tracks.move_to_end(key)
                return track
            track = self._tracks[key] = _Track(log, episode)
            self._tracks.move_to_end(key)
            evicted = self._over_budget()
        for old in evicted:
            self._resimulator.withdraw(old)
        self._resimulator.submit(track)
        return track

    def _over_budget(self) -> list[_Track]:
        """Tracks leaving the greenzone, least recently used first, until it fits (called under the lock)."""
        in_use = {id(player.track) for player in self._players.values()}
        total = sum(track.bytes for track in self._tracks.values())
        evicted = []
        for key, track in list(self._tracks.items())[:-1]:
            if total <= self.greenzone_bytes:
                break
            if id(track) in in_use:
                continue
            total -= track.bytes
            evicted.append(self._tracks.pop(key))
        return evicted


def _stripped(context: FrameContext) -> FrameContext:
    """``context`` without its frame and observation (the greenzone holds them packed)."""
    return dataclasses.replace(context, frame=_NO_FRAME, observation=None)


def _context_bytes(context: FrameContext) -> int:
    arrays: list[np.ndarray] = [a for a in (context.value_history, context.return_history) if a is not None]
    analytics = context.analytics
    if analytics is not None:
        arrays += [analytics.probabilities, *analytics.levels, *analytics.feature_maps, *(analytics.saliency or ())]
    return _CONTEXT_BYTES + sum(a.nbytes + 100 for a in arrays)
