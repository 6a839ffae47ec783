"""One episode as the episode product draws it, a frame at a time: for stills, the viewer and the docs' pictures.

:class:`EpisodeFrames` steps through an episode from one open session (:func:`render_still` draws one frame with
it); :class:`EpisodeScenes` draws any episode of a log from steps re-simulated elsewhere, in any order.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future

import numpy as np

from render.config import OverlayConfig, VideoConfig
from render.draw.overlays import Overlay
from render.errors import SelectionError
from render.feed import KeptStep
from render.frame import FrameContext
from render.pipeline import Rendered
from render.selection import pick_episode
from render.session import Session
from render.source import RenderSource
from render.story import Clip
from replay import EpisodeRecord, TrajectoryLog


def render_still(
    source: RenderSource,
    *,
    episode: str | int = "best",
    step: int = 0,
    overlay: OverlayConfig | None = None,
    tag: str = "any",
) -> np.ndarray:
    """One frame of an episode as the episode product draws it (RGB uint8 HxWx3): step ``step`` (0 is the reset
    frame) of ``episode`` (an index, or ``best``/``worst``/``last`` among ``tag``), with ``overlay``."""
    with EpisodeFrames(source, episode=episode, overlay=overlay, tag=tag) as frames:
        return frames.frame(step)


class EpisodeFrames:
    """The frames of one episode as the episode product draws them, from one open log, overlay and
    re-simulation: a step after the last one asked for continues from there, an earlier one re-simulates
    from the reset frame. Not thread-safe; the viewer serialises its calls.

    Example:
        >>> with EpisodeFrames(RenderSource.resolve(run="data/sample/breakout", log=None, checkpoint=None),
        ...                    episode=3, overlay=OverlayConfig(kind="raw")) as frames:  # doctest: +SKIP
        ...     first, later = frames.frame(0), frames.frame(40)
    """

    def __init__(
        self,
        source: RenderSource,
        *,
        episode: str | int = "best",
        overlay: OverlayConfig | None = None,
        tag: str = "any",
    ) -> None:
        self._session = Session(source, overlay or OverlayConfig(), VideoConfig(progress=False), workers=0)
        try:
            try:
                self.episode = pick_episode(self._session.log.episodes, episode, tag)
            except SelectionError as error:
                raise SelectionError(f"{source.log}: {error}") from None
            self._session.prepare([self.episode], 1)
        except BaseException:
            self._session.__exit__(None, None, None)
            raise
        self._frames: Iterator[Rendered] | None = self._session.frames(0)
        self._next = 0  # the step self._frames yields next

    def __enter__(self) -> EpisodeFrames:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._frames is not None:
            self._frames = None
            self._session.__exit__(None, None, None)

    def frame(self, step: int) -> np.ndarray:
        """Step ``step`` of the episode (0 is the reset frame, ``episode.length`` the last), a new array."""
        if self._frames is None:
            raise RuntimeError("these episode frames are closed")
        if not 0 <= step <= self.episode.length:
            raise SelectionError(
                f"{self._session.source.log}: episode {self.episode.index} has steps 0..{self.episode.length}, not "
                f"step {step}; pick a step in that range"
            )
        if step < self._next:
            self._rewind()
        for rendered in self._frames:
            self._next += 1
            if self._next == step + 1:
                return rendered.image.copy()
        raise AssertionError("unreachable: an episode yields length + 1 frames")

    def _rewind(self) -> None:
        """Start again from the reset frame with a fresh overlay (it keeps history, e.g. the value chart)."""
        session = self._session
        session.close_feed(session.feed)
        session.build_overlay(self.episode.policy_versions[0])
        session.feed = session.open_feed(session.clips)
        self._frames, self._next = session.frames(0), 0


class EpisodeScenes:
    """Any episode of one log as the episode product draws it, from kept steps re-simulated elsewhere: the frame
    contexts of an episode (:meth:`scene`) and overlays to draw them (:meth:`overlay`).

    The viewer re-simulates an episode once, in a process of its own, keeps its steps and draws any of them in any
    order: an overlay's canvas redraws each part whose inputs differ from the frame it drew last, whichever frame
    that was, so the bytes are those of a sequential render. Safe across threads: each scene has network probes
    of its own (they recalibrate at an episode's start and keep its first batch's scales).
    """

    def __init__(self, source: RenderSource, overlay: OverlayConfig | None = None) -> None:
        self._session = Session(source, overlay or OverlayConfig(), VideoConfig(progress=False), workers=0)
        self.kind = self._session.overlay_config.kind
        self._lock = threading.Lock()

    @property
    def log(self) -> TrajectoryLog:
        return self._session.log

    @property
    def needs_rewards(self) -> bool:
        """Whether a frame needs the whole episode's rewards (the return that followed, the return chart)."""
        return self.kind != "raw"

    def episode(self, index: int) -> EpisodeRecord:
        try:
            return pick_episode(self._session.log.episodes, index, "any")
        except SelectionError as error:
            raise SelectionError(f"{self._session.source.log}: {error}") from None

    def overlay(self, episode: EpisodeRecord) -> Overlay:
        """A new overlay for ``episode``'s frames (refused, for ``full``, where its observations do not fit the
        network or the run has no checkpoint)."""
        with self._lock:
            self._session.explain([episode])
            return self._session.build_overlay(episode.policy_versions[0])

    def scene(
        self, episode: EpisodeRecord, steps: Iterable[KeptStep], rewards: np.ndarray | Future[np.ndarray] | None = None
    ) -> Iterator[FrameContext]:
        """``episode``'s frame contexts from all its kept ``steps`` (stride 1, in order) and, unless the overlay is
        ``raw``, every step's ``rewards`` (or a future of them: see :func:`render.scenes.episode_scene`)."""
        if self.needs_rewards and rewards is None:
            raise ValueError(f"overlay={self.kind} needs episode {episode.index}'s rewards")
        with self._lock:
            policies = self._session.load_policies() if self.kind == "full" else None
        return self._session.scene_of(Clip(episode, 1), steps, rewards, policies)

    def close(self) -> None:
        self._session.__exit__(None, None, None)
