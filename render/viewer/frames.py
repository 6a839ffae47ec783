"""Frames for the viewer: lossless PNGs of an episode's video frames, from a few episodes kept open.

Each (run, episode, overlay) asked for keeps a :class:`render.EpisodeFrames` open, so playing forwards steps the
emulator on instead of re-simulating from the reset frame; a step backwards re-simulates from the reset. At most
``capacity`` are kept (the least recently used is closed). A greenzone of verified emulator states, to seek
backwards or far ahead quickly, is still to do (see ``STATUS.md``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import cv2
import numpy as np

from render.config import OverlayConfig
from render.products import EpisodeFrames, RenderSource

PNG_COMPRESSION = 1  # zlib level: lossless at any level; 1 keeps a 1280x720 frame to a few milliseconds


def encode_png(image: np.ndarray) -> bytes:
    """``image`` (RGB uint8 HxWx3) as PNG bytes, losslessly."""
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
    if not ok:
        raise ValueError(f"could not encode a {image.shape} {image.dtype} frame as PNG")
    return encoded.tobytes()


class _Player:
    def __init__(self, frames: EpisodeFrames) -> None:
        self.frames = frames
        self.lock = threading.Lock()


class FrameCache:
    """Open episodes keyed by (log, episode, overlay), at most ``capacity`` of them; safe across threads."""

    def __init__(self, capacity: int = 4) -> None:
        if capacity < 1:
            raise ValueError(f"expected a positive capacity, got {capacity}")
        self.capacity = capacity
        self._players: OrderedDict[tuple[RenderSource, int, str], _Player] = OrderedDict()
        self._lock = threading.Lock()

    def png(self, source: RenderSource, episode: int, step: int, overlay: str) -> bytes:
        """Step ``step`` of episode ``episode`` of ``source`` drawn with the ``overlay`` kind, as PNG bytes."""
        player = self._player(source, episode, overlay)
        with player.lock:
            image = player.frames.frame(step)
        return encode_png(image)

    def close(self) -> None:
        with self._lock:
            players, self._players = list(self._players.values()), OrderedDict()
        for player in players:
            with player.lock:
                player.frames.close()

    def _player(self, source: RenderSource, episode: int, overlay: str) -> _Player:
        key = (source, episode, overlay)
        with self._lock:
            player = self._players.get(key)
            if player is not None:
                self._players.move_to_end(key)
                return player
        # opened outside the cache's lock: loading a log and its networks takes a while
        opened = _Player(EpisodeFrames(source, episode=episode, overlay=OverlayConfig(kind=overlay)))
        evicted = []
        with self._lock:
            if key in self._players:  # another request opened it meanwhile
                evicted.append(opened)
                opened = self._players[key]
            else:
                self._players[key] = opened
            while len(self._players) > self.capacity:
                evicted.append(self._players.popitem(last=False)[1])
        for player in evicted:
            with player.lock:
                player.frames.close()
        return opened
