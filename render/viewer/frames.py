"""Frames for the viewer: lossless PNGs of any step of any episode, from a greenzone of the episodes played.

- **Re-simulation** (:mod:`render.viewer.resimulator`): one worker process replays an episode once, whole, from its
  reset: ``minimal`` and ``full`` need every step's reward before any frame (the return that followed). Its kept
  steps come back in chunks as they are emulated, frame and observation zlib-compressed (~2 KB a step), so ``raw``
  shows step k as soon as the worker passes it, and ``full``'s network analyzes them meanwhile.
- **The greenzone** (:mod:`render.viewer.greenzone`, a track per episode, at most ``greenzone_bytes`` of them,
  least recently used out) keeps those steps, the rewards, and per overlay the frame contexts made of them.
- **Drawing**: each (run, episode, overlay) being watched has a :class:`_Player` with an overlay of its own. Its
  canvas redraws a part when that part's inputs differ from those of the frame it drew last, whichever frame that
  was, so drawing step k after any other step gives a sequential render's bytes (tested against
  :func:`render.render_still`). The step asked for is drawn in the request's thread; a request that plays on (a
  step 1 to ``MAX_STRIDE`` after the last: the stride is the speed) also queues the next ``AHEAD`` steps at that
  stride, drawn and PNG-encoded in a thread pool ahead of the playhead (OpenCV and zlib release the GIL). A seek
  queues nothing, so seeks in a row do not wait behind frames drawn for nobody.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from render.config import OverlayConfig
from render.draw.overlays import Overlay
from render.episode import EpisodeScenes
from render.errors import RenderError
from render.feed import same_steps
from render.policies import rebuilt_versions
from render.source import RenderSource
from render.viewer.greenzone import GREENZONE_BYTES, Track
from render.viewer.resimulator import Resimulator
from replay import EpisodeRecord

# zlib level 1 without PNG's row filters: lossless, and half the time of OpenCV's default filters (a 1280x720
# full overlay: ~10 ms and ~170 KB against ~23 ms and ~200 KB)
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE]
AHEAD = 12  # steps drawn ahead of the last one asked for (0.4 s at 30 frames/s)
BEHIND = 30  # PNGs kept of the steps just played, for steps back
MAX_STRIDE = 8  # requests this far apart count as playback at that stride (speed), farther as a seek


def encode_png(image: np.ndarray) -> bytes:
    """``image`` (RGB uint8 HxWx3) as PNG bytes, losslessly."""
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".png", bgr, PNG_PARAMS)
    if not ok:
        raise ValueError(f"could not encode a {image.shape} {image.dtype} frame as PNG")
    return encoded.tobytes()


# One overlay draws at a time, across players: the drawing code keeps caches shared between overlays (text,
# thumbnails), and a seek test once drew a minimal frame that differed from the sequential one while another
# player's frames were being drawn ahead. PNG encoding, the larger share, still runs in parallel.
_DRAW_LOCK = threading.Lock()


class _Player:
    """One episode being watched with one overlay: an overlay of its own, and the PNGs of the steps around the
    playhead, drawn ahead in ``pool``."""

    def __init__(
        self, track: Track, scenes: EpisodeScenes, pool: ThreadPoolExecutor, networks: frozenset[int] | None
    ) -> None:
        self.track, self._pool, self.networks = track, pool, networks
        self._overlay: Overlay = scenes.overlay(track.episode)
        self._scene = track.scene(scenes, networks)
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
        self._tracks: OrderedDict[tuple[Path, int], Track] = OrderedDict()
        self._players: OrderedDict[tuple[RenderSource, int, str], _Player] = OrderedDict()
        self._resimulator = Resimulator()
        self._pool = ThreadPoolExecutor(encoders, thread_name_prefix="viewer-frames")
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the re-simulation worker now instead of at the first frame asked for."""
        self._resimulator.start()

    def png(self, source: RenderSource, episode: int, step: int, overlay: str) -> bytes:
        """Step ``step`` of episode ``episode`` of ``source`` drawn with the ``overlay`` kind, as PNG bytes."""
        return self.frame(source, episode, step, overlay)[0]

    def frame(self, source: RenderSource, episode: int, step: int, overlay: str) -> tuple[bytes, frozenset[int] | None]:
        """:meth:`png`, and the episode's versions on disk in ``rebuilt/`` that the drawing used where they
        verified (``None`` unless ``source`` asks for them and the overlay shows a network)."""
        player = self._player(source, episode, overlay)
        if not 0 <= step <= player.track.episode.length:
            raise RenderError(
                f"{source.log}: episode {episode} has steps 0..{player.track.episode.length}, not step {step}"
            )
        try:
            return player.png(step), player.networks
        except CancelledError:  # another request moved the window past it meanwhile: draw it anyway
            return player.png(step), player.networks

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
            else:
                player = None
        # a version of the episode rebuilt (or removed) since the player opened changes its networks
        if player is not None and player.networks == _networks(source, overlay, player.track.episode):
            return player
        scenes = self._episode_scenes(source, overlay, episode)
        record = scenes.episode(episode)
        track = self._track(source.log, record)
        networks = _networks(source, overlay, record)
        opened = _Player(track, scenes, self._pool, networks)  # outside the lock: an overlay takes ~50 ms to lay out
        evicted = []
        with self._lock:
            current = self._players.get(key)
            if current is not None and (current is not player or current.networks == networks):
                evicted.append(opened)  # another request opened it meanwhile
                opened = current
            else:
                if current is not None:
                    evicted.append(current)
                self._players[key] = opened
            while len(self._players) > self.capacity:
                evicted.append(self._players.popitem(last=False)[1])
            left = self._over_budget()
        for old_player in evicted:
            old_player.close()
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

    def _track(self, log: Path, episode: EpisodeRecord) -> Track:
        key = (log, episode.index)
        with self._lock:
            track = self._tracks.get(key)
            if track is not None and track.error is None and same_steps(track.episode, episode):
                self._tracks.move_to_end(key)
                return track
            track = self._tracks[key] = Track(log, episode)
            self._tracks.move_to_end(key)
            evicted = self._over_budget()
        for old in evicted:
            self._resimulator.withdraw(old)
        self._resimulator.submit(track)
        return track

    def _over_budget(self) -> list[Track]:
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


def _networks(source: RenderSource, overlay: str, episode: EpisodeRecord) -> frozenset[int] | None:
    """What decides which networks explain ``episode``'s frames beside its checkpoints: the versions it played
    that are rebuilt on disk (``checkpoint=rebuilt``, the full overlay only)."""
    if not source.rebuilt or overlay != "full" or source.run is None:
        return None
    return rebuilt_versions(source.run, episode.policy_versions)
