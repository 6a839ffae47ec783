"""The three videos: one episode, a time-lapse across the run, and the milestone progression.

Each product is a plain function: it opens the log, chooses episodes, builds the overlay and streams frames
into the encoder through :func:`render.pipeline.encode_frames`. Hydra only calls these. The time-lapse and the
progression tell the run's story around the overlay (captions, the learning curve, episodes side by side): the
timing and choices are in :mod:`render.story`, the drawing in :mod:`render.draw.story`.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any

import numpy as np

from render.agent_view import view_for
from render.config import (
    OVERLAYS,
    EpisodeProductConfig,
    OverlayConfig,
    ProgressionProductConfig,
    SelectionConfig,
    TimelapseProductConfig,
    VideoConfig,
)
from render.draw.overlays import FullOverlay, MinimalOverlay, Overlay, RawOverlay, TextRoomError, title_card
from render.draw.story import (
    CaptionedOverlay,
    CellCaption,
    CellScreen,
    CellView,
    Mark,
    StripCaption,
    learning_curve_card,
)
from render.draw.style import Style
from render.encoder import VideoEncoder
from render.errors import MissingCheckpointError, RenderConfigError, SelectionError
from render.feed import KeptStep, ReplayFeed, auto_workers, kept_count, seek_distance
from render.frame import FrameContext
from render.pipeline import Rendered, encode_frames
from render.policies import EXACT, PolicyLibrary, exact_source
from render.saliency import SaliencySettings
from render.scenes import DEFAULT_GAMMA, SceneSettings, episode_scene
from render.schedule import TrainingSchedule
from render.selection import SeekCost, Selector, evenly, every, highlights, pick_episode, progress_range
from render.story import (
    DEFAULT_MILESTONES,
    Clip,
    LearningCurve,
    clip_stride,
    milestone_episodes,
    screens,
)
from replay import EpisodeRecord, TrajectoryLog
from replay.run_folder import RunFolder
from replay.train.config import resolve_device
from replay.train.network import OBS_SHAPE


@dataclass(frozen=True)
class RenderSource:
    """Where frames and networks come from: a log and, optionally, a run's checkpoints or one checkpoint
    file."""

    log: Path
    run: Path | None = None
    checkpoint: Path | None = None
    exact: bool = False  # checkpoint=exact: each frame by the version that played it, rebuilt

    @classmethod
    def resolve(cls, *, run: str | Path | None, log: str | Path | None, checkpoint: str | Path | None) -> RenderSource:
        """``log`` wins over ``run``; a run folder must hold ``trajectories.h5``."""
        exact = checkpoint == EXACT
        file = None if checkpoint is None or exact else Path(checkpoint)
        if exact and (log is not None or run is None):
            raise RenderConfigError(
                "checkpoint=exact rebuilds the networks of a training run: pass run=<run_dir>, not log=<file>"
            )
        if log is not None:
            if Path(log).is_dir():
                raise RenderConfigError(
                    f"log={log} is a folder; pass run={log} for a run folder, or log=<the .h5 file> for a log"
                )
            return cls(Path(log), None, file)
        if run is None:
            raise RenderConfigError("nothing to render: pass run=<run_dir> or log=<file.h5>")
        folder = Path(run)
        if folder.is_file():
            raise RenderConfigError(f"run={run} is a file; pass log={run} for a log file, or run=<the run's folder>")
        if not folder.exists():
            raise RenderConfigError(
                f"run={run}: there is no such folder ({folder.resolve()}); a relative run= is taken from the folder "
                "you run the command in: pass run=<the run's folder> or log=<file.h5>"
            )
        if not RunFolder(folder).log.is_file():
            raise RenderConfigError(
                f"{folder} holds no {RunFolder(folder).log.name}; pass run=<a folder made by python -m replay.train> "
                "or log=<file.h5>"
            )
        return cls(RunFolder(folder).log, folder, file, exact)

    @property
    def checkpoints(self) -> Path | None:
        if self.run is None or not RunFolder(self.run).checkpoints.is_dir():
            return None
        return RunFolder(self.run).checkpoints


@dataclass(frozen=True)
class RenderResult:
    """What a product wrote."""

    output: Path
    frames: int
    episodes: tuple[int, ...]
    checkpoints: Mapping[str, int]


def render_episode(
    source: RenderSource,
    output: Path,
    *,
    episode: str | int = 0,
    product: EpisodeProductConfig | None = None,
    overlay: OverlayConfig | None = None,
    video: VideoConfig | None = None,
    config: Mapping[str, Any] | None = None,
    workers: int | None = None,
    device: str = "auto",
) -> RenderResult:
    """Render one episode (an index, or ``best``/``worst``/``last`` among ``product.tag``) frame by frame.

    ``workers`` processes re-simulate ahead of the renderer (0: in this process; ``None``: as
    :func:`render.feed.auto_workers` decides); ``config`` is stored in the sidecar as the resolved
    configuration; ``device`` is where the network runs (``auto``: CUDA when torch sees a GPU). The other
    products take the same arguments.
    """
    product = product or EpisodeProductConfig()
    with _Session(
        source, overlay or OverlayConfig(), video or VideoConfig(), workers=workers, device=device
    ) as session:
        try:
            chosen = pick_episode(session.log.episodes, episode, product.tag)
        except SelectionError as error:
            raise SelectionError(f"{source.log}: {error}") from None
        session.prepare([chosen], product.frame_stride)
        return session.encode(session.frames(0), output, "episode", config)


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
        self._session = _Session(source, overlay or OverlayConfig(), VideoConfig(progress=False), workers=0)
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
        self._session = _Session(source, overlay or OverlayConfig(), VideoConfig(progress=False), workers=0)
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
        self, episode: EpisodeRecord, steps: Iterable[KeptStep], rewards: np.ndarray | None = None
    ) -> Iterator[FrameContext]:
        """``episode``'s frame contexts from all its kept ``steps`` (stride 1, in order) and, unless the overlay is
        ``raw``, every step's ``rewards``."""
        if self.needs_rewards and rewards is None:
            raise ValueError(f"overlay={self.kind} needs episode {episode.index}'s rewards")
        with self._lock:
            policies = self._session._policies() if self.kind == "full" else None
        return self._session.scene_of(Clip(episode, 1), steps, rewards, policies)

    def close(self) -> None:
        self._session.__exit__(None, None, None)


def render_timelapse(
    source: RenderSource,
    output: Path,
    *,
    selection: SelectionConfig | None = None,
    product: TimelapseProductConfig | None = None,
    overlay: OverlayConfig | None = None,
    video: VideoConfig | None = None,
    config: Mapping[str, Any] | None = None,
    workers: int | None = None,
    device: str = "auto",
) -> RenderResult:
    """Episodes selected across the run, sped up by a frame stride; with ``product.caption`` each is named under
    the overlay (training progress, update, episode, return so far, speed) over the run's learning curve, marked
    where it was played."""
    product = product or TimelapseProductConfig()
    video = video or VideoConfig()
    _real_speed_only(video, "timelapse")
    overlay = overlay or OverlayConfig()
    with _Session(source, overlay, video, workers=workers, device=device) as session:
        selection = selection or SelectionConfig()
        selector = make_selector(selection, session.schedule, seek_distance(session.log))
        chosen = selector(session.log.episodes)
        if not chosen:
            episodes = session.log.episodes
            finished = {tag: sum(e.finished and e.tag == tag for e in episodes) for tag in ("train", "eval")}
            raise SelectionError(
                f"{source.log}: the selection (tag {selection.tag!r}) matched no finished "
                f"episode; the log has {len(episodes)} episodes, of them finished: {finished['train']} train, "
                f"{finished['eval']} eval. Widen the selection (selection.tag=any, a wider selection.start/stop), "
                "or render an unfinished episode with product=episode episode=<index>"
            )
        stride = product.frame_stride or timelapse_stride(chosen, product.target_duration, video.fps)
        session.prepare(chosen, stride, progress_bar=not product.caption)  # the caption's marker shows progress
        if not product.caption:
            frames = (frame for order in range(len(chosen)) for frame in session.frames(order))
            return session.encode(frames, output, "timelapse", config)
        curve = LearningCurve.of(session.log.episodes, session.schedule)
        captioned = _story_part(lambda: CaptionedOverlay(session.overlay, curve, overlay.style()), session)

        def captioned_frames() -> Iterator[Rendered]:
            for order, clip in enumerate(session.clips):
                last = clip.frames - 1
                for k, context in enumerate(session.scene(clip, session.feed, order)):
                    yield captioned.render(context, _timelapse_caption(context, clip, curve, finished=k == last))

        return session.encode(captioned_frames(), output, "timelapse", config, canvas=captioned)


def render_progression(
    source: RenderSource,
    output: Path,
    *,
    product: ProgressionProductConfig | None = None,
    overlay: OverlayConfig | None = None,
    video: VideoConfig | None = None,
    config: Mapping[str, Any] | None = None,
    workers: int | None = None,
    device: str = "auto",
) -> RenderResult:
    """Milestone evaluation episodes as clips of at most ``product.clip_seconds`` (a longer episode sped up to
    fit), laid out as ``product.layout`` says, then a card of the learning curve with those milestones marked.

    ``sequential`` plays each clip with the overlay and a caption strip after a card
    ``10% - 100k steps - return 7``; ``side_by_side`` and ``grid`` play 2-3 or 4 clips at once in compact cells.
    """
    product = product or ProgressionProductConfig()
    video = video or VideoConfig()
    _real_speed_only(video, "progression")
    overlay = overlay or OverlayConfig()
    with _Session(source, overlay, video, workers=workers, device=device) as session:
        session.clips = _milestone_clips(session, product)
        session.explain([clip.episode for clip in session.clips])
        curve = LearningCurve.of(session.log.episodes, session.schedule)
        cards = _seconds_frames(product.card_seconds, video.fps)
        if product.layout == "sequential":
            story = _sequential(session, curve, cards)
        else:
            story = _side_by_side(session, product.layout, cards)
        shown = [clip.episode for clip in session.clips]
        marks = [Mark(curve.position(e.policy_versions[0]), e.total_reward) for e in shown]
        title = f"{session.log.game}: learning curve"
        style = overlay.style()
        closing = _story_part(
            lambda: learning_curve_card(story.width, story.height, curve, marks, title=title, style=style), session
        )
        closing_frames = _seconds_frames(product.closing_seconds, video.fps)
        frames = _then(story.frames, _held(closing, closing_frames))
        settings = {"layout": product.layout, "clip_seconds": product.clip_seconds}
        total = story.total + closing_frames
        return session.encode(frames, output, "progression", config, canvas=story, total=total, story=settings)


def make_selector(
    selection: SelectionConfig, schedule: TrainingSchedule, seek_cost: SeekCost | None = None
) -> Selector:
    """The selector a ``selection`` config describes; ``seek_cost`` is used when ``selection.cheap_seeks``."""
    cost = seek_cost if selection.cheap_seeks else None
    if selection.kind == "highlights":
        return highlights(selection.count, schedule, selection.tag)
    if selection.kind == "evenly":
        return evenly(selection.count, selection.tag, cost)
    if selection.kind == "every":
        return every(selection.every, selection.tag)
    if selection.kind == "range":
        return progress_range(selection.start, selection.stop, selection.count, schedule, selection.tag, cost)
    raise RenderConfigError(f"unknown selection.kind {selection.kind!r}; choose highlights, evenly, every or range")


def timelapse_stride(episodes: Sequence[EpisodeRecord], target_duration: float, fps: int) -> int:
    """The frame stride that brings ``episodes`` closest to ``target_duration`` seconds at ``fps``."""
    if target_duration <= 0:
        raise RenderConfigError(f"expected a positive target_duration in seconds, got {target_duration}")
    target = target_duration * fps

    def frames(stride: int) -> int:  # each episode keeps its first and its last frame too
        return sum(kept_count(e, stride) for e in episodes)

    low, high = 1, max([e.length for e in episodes], default=0) + 1  # frames() falls as the stride grows
    while low < high:  # the smallest stride that keeps at most the target's frames
        middle = (low + high) // 2
        low, high = (middle + 1, high) if frames(middle) > target else (low, middle)
    if low > 1 and abs(frames(low - 1) - target) < abs(frames(low) - target):
        return low - 1
    return low


EMULATOR_FPS = 60  # the Atari's frame rate: emulated frames at their real speed


def return_note(schedule: TrainingSchedule) -> str:
    """How the value chart counts the return that followed: the trainer's discount and reward clipping."""
    if schedule.gamma is None:
        return f"gamma {DEFAULT_GAMMA:g} assumed (log has none)"
    clipped = ", rewards clipped to -1..1" if schedule.clip_reward else ""
    return f"gamma {schedule.gamma:g}{clipped}"


def _real_speed_only(video: VideoConfig, product: str) -> None:
    """``video.emulator_frames`` plays an episode at the game's own speed; the story products speed episodes up."""
    if video.emulator_frames:
        raise RenderConfigError(
            f"video.emulator_frames=true shows an episode at the game's real speed, but product={product} speeds "
            "episodes up; use product=episode (or video.emulator_frames=false)"
        )


def human_steps(steps: int) -> str:
    """``100000`` as ``100k``, ``1500000`` as ``1.5M``."""
    for unit, size in (("M", 1_000_000), ("k", 1_000)):
        if steps >= size:
            return f"{steps / size:.3g}{unit}"
    return str(steps)


def make_overlay(
    overlay: OverlayConfig,
    video: VideoConfig,
    game: str,
    action_names: Sequence[str],
    policies: PolicyLibrary | None = None,
    first_version: int = 0,
    *,
    progress_bar: bool = False,
    return_note: str = "",
    algorithm: str = "PPO",
) -> Overlay:
    """Build the overlay ``overlay.kind`` names; ``full`` takes its diagram layout from the policies'
    network; ``progress_bar`` draws training progress along the bottom of ``raw`` (the others show it anyway);
    ``return_note`` says how the value chart counts the return that followed."""
    style = overlay.style()
    if overlay.kind not in OVERLAYS:
        raise RenderConfigError(f"unknown overlay {overlay.kind!r}; choose one of {', '.join(OVERLAYS)}")
    if overlay.kind == "full":
        if policies is None:
            raise MissingCheckpointError("overlay=full needs policies to explain the frames")
        probe, _ = policies.lookup(first_version)

    def build(style: Style) -> Overlay:
        if overlay.kind == "raw":
            return RawOverlay(video.scale, progress_bar=progress_bar, style=style)
        if overlay.kind == "minimal":
            return MinimalOverlay(game, action_names, video.scale, panel_width=overlay.panel_width, style=style)
        return FullOverlay(
            game,
            action_names,
            probe.diagram_layers(),
            probe.feature_rows(),
            width=overlay.width,
            height=overlay.height,
            style=style,
            title=f"{algorithm} Neural Activity Viewer",
            return_note=return_note if probe.head != "q" else f"value: max Q; {return_note}".strip("; "),
            saliency=overlay.saliency,
            q_values=probe.head == "q",
        )

    try:
        return build(style)
    except ValueError as error:  # a size, scale or font the layout cannot hold: say which settings led there
        settings = (
            f"overlay.width={overlay.width} overlay.height={overlay.height}"
            if overlay.kind == "full"
            else f"video.scale={video.scale}"
        )
        fix = ""
        if isinstance(error, TextRoomError):  # text that does not fit: name the font scale that does
            fits = _largest_font_scale(build, style)
            bigger = "a bigger canvas (at least 640x360 at 16:9)" if overlay.kind == "full" else "a larger video.scale"
            fix = (
                f". the largest overlay.font_scale that fits is {fits:g}"
                if fits is not None
                else f". no font_scale fits; use {bigger}"
            )
        raise RenderConfigError(
            f"overlay={overlay.kind} with {settings} overlay.font_scale={overlay.font_scale:g}: {error}{fix}"
        ) from None


def _largest_font_scale(build: Callable[[Style], Overlay], style: Style, step: float = 0.05) -> float | None:
    """The largest multiple of ``step`` below ``style``'s font scale with which ``build`` succeeds (text grows
    with the canvas height, so for a given canvas this is the fix), or ``None``."""

    def fits(k: int) -> bool:
        try:
            build(dataclasses.replace(style, typeface=dataclasses.replace(style.typeface, scale=k * step)))
        except ValueError:  # this overlay cannot be built at that scale either
            return False
        return True

    low, high = 1, math.ceil(style.typeface.scale / step) - 1  # where some scale fits, every smaller one does
    if high < low or not fits(low):
        return None
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return round(low * step, 2)


def _story_part(build: Callable[[], Any], session: _Session) -> Any:
    """``build()``, a caption strip, screen of cells or card, refused as a settings error when the canvas cannot
    hold its text."""
    try:
        return build()
    except TextRoomError as error:
        overlay = session.overlay_config
        size = f"overlay.width={overlay.width} overlay.height={overlay.height}"
        if overlay.kind != "full":
            size = f"video.scale={session.video.scale}"
        raise RenderConfigError(
            f"overlay={overlay.kind} with {size} overlay.font_scale={overlay.font_scale:g}: {error}"
        ) from None


def _milestone_clips(session: _Session, product: ProgressionProductConfig) -> list[Clip]:
    """The milestone episodes ``product`` shows, each timed to fit ``product.clip_seconds``."""
    count = DEFAULT_MILESTONES[product.layout] if product.milestones is None else product.milestones
    chosen = milestone_episodes(session.log.episodes, product.per_milestone, count)
    if not chosen:
        raise SelectionError(
            f"{session.source.log} holds no finished evaluation episodes (tag 'eval'); train with eval.episodes > 0, "
            "or show training episodes with product=timelapse"
        )
    budget = max(1, round(product.clip_seconds * session.video.fps))
    return [Clip(e, clip_stride(e, budget, product.frame_stride)) for e in chosen]


def _seconds_frames(seconds: float, fps: int) -> int:
    """Video frames that show something for ``seconds`` (at least one unless 0)."""
    return max(1, round(seconds * fps)) if seconds > 0 else 0


def _held(image: np.ndarray, frames: int) -> Iterator[Rendered]:
    """``image`` for ``frames`` video frames, converted for the encoder once."""
    if frames:
        yield Rendered(image)
        for _ in range(frames - 1):
            yield Rendered(image, ())  # unchanged: its planes are reused


def _then(*parts: Iterable[Rendered]) -> Iterator[Rendered]:
    for part in parts:
        yield from part


def _return_text(reward: float, finished: bool) -> str:
    return f"final return {reward:g}" if finished else f"return {reward:g}"


def _timelapse_caption(context: FrameContext, clip: Clip, curve: LearningCurve, *, finished: bool) -> StripCaption:
    """``33% - update 326 - episode 983 - return 8 - x4``, the marker where the policy playing sits."""
    parts = [] if context.progress is None else [f"{context.progress:.0%}"]
    parts += [f"update {context.policy_version}", f"episode {context.episode}"]
    parts.append(_return_text(context.episode_reward, finished))
    parts += [f"x{clip.stride}"] if clip.stride > 1 else []
    position = curve.position(context.policy_version)
    return StripCaption(" - ".join(parts), position, context.episode_reward, finished)


@dataclass(frozen=True)
class _Story:
    """A progression's frames before its closing card: the canvas size and how many frames ``frames`` yields."""

    width: int
    height: int
    frames: Iterator[Rendered]
    total: int


def _sequential(session: _Session, curve: LearningCurve, card_frames: int) -> _Story:
    """Each clip after its title card, drawn by the overlay with a caption strip under it."""
    first = session.clips[0].episode.policy_versions[0]
    style = session.overlay_config.style()
    captioned = _story_part(lambda: CaptionedOverlay(session.build_overlay(first), curve, style), session)

    def frames() -> Iterator[Rendered]:
        # consecutive clips of one stride are re-simulated by one feed
        for _, group in groupby(session.clips, key=lambda clip: clip.stride):
            group = list(group)
            feed = session.open_feed(group)
            for order, clip in enumerate(group):
                card = title_card(captioned.width, captioned.height, session.card_lines(clip), style)
                yield from _held(card, card_frames)
                head, last = session.milestone_head(clip.episode), clip.frames - 1
                position = curve.position(clip.episode.policy_versions[0])
                for k, context in enumerate(session.scene(clip, feed, order)):
                    reward = context.episode_reward
                    parts = [head, f"evaluation episode {context.episode}", _return_text(reward, k == last)]
                    parts += [f"x{clip.stride}"] if clip.stride > 1 else []
                    yield captioned.render(context, StripCaption(" - ".join(parts), position, reward, k == last))
            session.close_feed(feed)

    total = sum(card_frames + clip.frames for clip in session.clips)
    return _Story(captioned.width, captioned.height, frames(), total)


def _side_by_side(session: _Session, layout: str, card_frames: int) -> _Story:
    """Each screen after its title card: its clips at once, each in a cell; a clip that ends before the screen's
    longest holds its last frame, marked finished.

    The canvas is 16:9: the full overlay's, or 180 x ``video.scale`` high (1280x720 at scale 4). Cells play at
    once, so each is re-simulated by a feed of its own: all in this process, or with ``workers`` > 0 one process
    each.
    """
    overlay, scale = session.overlay_config, session.video.scale
    width, height = (overlay.width, overlay.height) if overlay.kind == "full" else (320 * scale, 180 * scale)
    style, names = overlay.style(), session.log.action_meanings

    def cells(clips: list[Clip]) -> CellScreen:
        columns, rows = (2, 2) if layout == "grid" else (len(clips), 1)
        return CellScreen(width, height, columns, rows, names, style)

    plan = [(clips, _story_part(lambda clips=clips: cells(clips), session)) for clips in screens(session.clips, layout)]
    workers = 0 if not session.workers else 1

    def frames() -> Iterator[Rendered]:
        for clips, screen in plan:
            yield from _held(title_card(width, height, session.screen_lines(clips), style), card_frames)
            feeds = [session.open_feed([clip], workers) for clip in clips]
            scenes = [session.scene(clip, feed, 0) for clip, feed in zip(clips, feeds, strict=True)]
            views: list[CellView | None] = [None] * len(clips)
            for t in range(max(clip.frames for clip in clips)):
                for i, (clip, scene) in enumerate(zip(clips, scenes, strict=True)):
                    if t < clip.frames:
                        context = next(scene)
                        views[i] = CellView(context.frame, session.cell_caption(context, clip, t == clip.frames - 1))
                yield screen.render(views)
            for feed in feeds:
                session.close_feed(feed)

    total = sum(card_frames + max(clip.frames for clip in clips) for clips, _ in plan)
    return _Story(width, height, frames(), total)


class _Session:
    """One open log with its schedule, policies, overlay and re-simulation feeds, for one product."""

    def __init__(
        self,
        source: RenderSource,
        overlay: OverlayConfig,
        video: VideoConfig,
        *,
        workers: int | None = None,
        device: str = "auto",
    ) -> None:
        if overlay.kind not in OVERLAYS:
            raise RenderConfigError(f"unknown overlay {overlay.kind!r}; choose one of {', '.join(OVERLAYS)}")
        self.source, self.overlay_config, self.video = source, overlay, video
        self.workers = workers
        try:  # before any work: an unusable device is refused at once
            self.device = str(resolve_device(device))
        except ValueError as error:
            raise RenderConfigError(str(error)) from None
        self.log = TrajectoryLog(source.log)
        self.schedule = TrainingSchedule.of_log(self.log)
        self.policies: PolicyLibrary | None = None
        self.overlay: Overlay | None = None
        self.feed: ReplayFeed | None = None
        self.clips: list[Clip] = []
        self.used: dict[str, int] = {}
        self._feeds: list[ReplayFeed] = []

    def __enter__(self) -> _Session:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for feed in self._feeds:
            feed.close()
        self.log.close()

    def prepare(self, episodes: Sequence[EpisodeRecord], stride: int, *, progress_bar: bool = False) -> None:
        """Play ``episodes`` at ``stride`` through the overlay: load what it needs, build it, start
        re-simulating them (:attr:`feed`)."""
        self.explain(episodes)
        self.build_overlay(episodes[0].policy_versions[0], progress_bar=progress_bar)
        self.clips = [Clip(e, stride) for e in episodes]
        self.feed = self.open_feed(self.clips)

    def explain(self, episodes: Sequence[EpisodeRecord]) -> None:
        """Load the networks that played ``episodes`` when the overlay shows their analytics (``full``)."""
        if self.overlay_config.kind == "full":
            self._check_observations(episodes)
            self.policies = self._policies()
            self.policies.prepare(v for e in episodes for v in e.policy_versions)

    def build_overlay(self, first_version: int, *, progress_bar: bool = False) -> Overlay:
        """The overlay ``overlay.kind`` names (after :meth:`explain`), kept as :attr:`overlay`."""
        self.overlay = make_overlay(
            self.overlay_config, self.video, self.log.game, self.log.action_meanings, self.policies, first_version,
            progress_bar=progress_bar, return_note=return_note(self.schedule), algorithm=self._algorithm(),
        )  # fmt: skip
        return self.overlay

    def open_feed(self, clips: Sequence[Clip], workers: int | None = None) -> ReplayFeed:
        """Start re-simulating ``clips`` (of one stride) in order, with ``workers`` processes (``None``: the
        session's setting, or as :func:`render.feed.auto_workers` decides); closed with the session."""
        episodes = [clip.episode for clip in clips]
        if workers is None:
            workers = auto_workers(episodes) if self.workers is None else self.workers
        observations = self.policies is not None
        emulated = self.video.emulator_frames
        feed = ReplayFeed(
            self.source.log, episodes, clips[0].stride, observations=observations, workers=workers,
            rewards=self.overlay_config.kind != "raw", emulator_frames=emulated, chunk=8 if emulated else 32,
        )  # fmt: skip
        self._feeds.append(feed)
        return feed

    def close_feed(self, feed: ReplayFeed) -> None:
        feed.close()
        self._feeds.remove(feed)

    def scene(self, clip: Clip, feed: ReplayFeed, order: int) -> Iterator[FrameContext]:
        """The frame contexts of ``clip``, the ``order``-th episode of ``feed``, with analytics when the overlay
        needs them and each frame's return that followed (the rewards come first from the feed)."""
        rewards = feed.rewards(order) if feed.with_rewards else None
        return self.scene_of(clip, feed.steps(order), rewards, self.policies)

    def scene_of(
        self, clip: Clip, steps: Iterable[KeptStep], rewards: np.ndarray | None, policies: PolicyLibrary | None
    ) -> Iterator[FrameContext]:
        """The frame contexts of ``clip`` from its kept ``steps`` (re-simulated anywhere), explained by
        ``policies`` (``None``: no analytics), with ``rewards`` (every step's) for the return that followed."""
        config = self.overlay_config
        saliency = SaliencySettings(stride=config.saliency_stride) if config.saliency else None
        settings = SceneSettings(clip.stride, config.value_history, config.batch_size, saliency)
        return episode_scene(clip.episode, steps, self.schedule, settings, policies, self.used, rewards)

    def frames(self, order: int) -> Iterator[Rendered]:
        """The rendered frames of the ``order``-th prepared episode (the overlay's buffer and its damage); with
        ``video.emulator_frames`` one per emulated frame, the overlay held until the next agent frame."""
        for context in self.scene(self.clips[order], self.feed, order):
            if context.screens is None:
                image = self.overlay.render(context)
                yield Rendered(image, self.overlay.damage())
                continue
            for screen in context.screens:
                image = self.overlay.render(dataclasses.replace(context, frame=screen, screens=None))
                yield Rendered(image, self.overlay.damage())

    def milestone(self, episode: EpisodeRecord) -> tuple[float | None, int | None]:
        """The training progress and agent steps of the milestone that played ``episode`` (``None``: unknown)."""
        version = episode.policy_versions[0]
        ref = self.policies.ref(version) if self.policies is not None else None
        fraction = ref.milestone if ref is not None and ref.milestone is not None else self.schedule.progress(version)
        steps = ref.global_step if ref is not None else self.schedule.global_step(version)
        return fraction, steps

    def milestone_head(self, episode: EpisodeRecord) -> str:
        """``10% - 100k steps``, or the policy version where the run does not say."""
        fraction, steps = self.milestone(episode)
        head = [] if fraction is None else [f"{fraction:.0%}"]
        head += [] if steps is None else [f"{human_steps(steps)} steps"]
        return " - ".join(head) or f"v{episode.policy_versions[0]}"

    def card_lines(self, clip: Clip) -> list[str]:
        episode = clip.episode
        lines = [
            f"{self.milestone_head(episode)} - return {episode.total_reward:g}",
            f"{self.log.game} | evaluation episode {episode.index} | policy v{episode.policy_versions[0]}",
        ]
        if clip.stride > 1:
            lines.append(f"played at x{clip.stride}: one frame in {clip.stride}, to fit the clip")
        return lines

    def screen_lines(self, clips: Sequence[Clip]) -> list[str]:
        """A side-by-side screen's card: the milestones it plays, left to right and top to bottom."""
        heads = [self.milestone_head(clip.episode).split(" - ")[0] for clip in clips]
        return [
            "  |  ".join(heads),
            f"{self.log.game} | evaluation episodes of {len(clips)} milestones of training, played at once",
        ]

    def cell_caption(self, context: FrameContext, clip: Clip, finished: bool) -> CellCaption:
        action = probability = None
        if context.analytics is not None and context.action is not None:
            action = self.log.action_meanings[context.action]
            probability = float(context.analytics.probabilities[context.action])
        return CellCaption(
            title=self.milestone_head(clip.episode),
            detail=f"evaluation {context.episode} - v{context.policy_version}",
            reward=context.episode_reward,
            finished=finished,
            speed=clip.stride,
            action=action,
            probability=probability,
        )

    def encode(
        self,
        frames: Iterable[Rendered],
        output: Path,
        product: str,
        config: Mapping[str, Any] | None,
        *,
        canvas: Any = None,
        total: int | None = None,
        story: Mapping[str, Any] | None = None,
    ) -> RenderResult:
        """Encode ``frames`` on ``canvas``'s ``width`` x ``height`` (the overlay's by default): ``total`` frames
        (by default the clips' frames; more with cards); ``story`` adds the progression's layout and clip length
        to the sidecar."""
        canvas = canvas or self.overlay
        clips = self.clips
        strides = {clip.stride for clip in clips}
        provenance = {
            "product": product,
            "run": None if self.source.run is None else str(self.source.run.resolve()),
            "log": str(self.source.log.resolve()),
            "game": self.log.game,
            "env_id": self.log.env_id,
            "overlay": self.overlay_config.kind,
            # one stride for every clip, else null and each episode's own below
            "frame_stride": strides.pop() if len(strides) == 1 else None,
            **dict(story or {}),
            "episodes": [
                {
                    "index": clip.episode.index,
                    "tag": clip.episode.tag,
                    "length": clip.episode.length,
                    "total_reward": clip.episode.total_reward,
                    "policy_versions": list(clip.episode.policy_versions),
                    "frame_stride": clip.stride,
                    "frames": clip.frames,
                }
                for clip in clips
            ],
            # each checkpoint file used (in checkpoint_dir) with its largest version lag: the version that played
            # minus the checkpoint's own (negative when a newer checkpoint explains older play)
            "checkpoint_dir": self._checkpoint_dir(),
            "checkpoints": self.used,
            # checkpoint=exact: rebuilt networks (names rebuilt/v<version>.pt, in the run folder) and, if some frames
            # fell back to saved checkpoints, why
            "exact": None
            if self.policies is None or not self.policies.exact
            else {"fallback": self.policies.exact_problem},
            "config": dict(config or {}),
        }
        video = self.video
        fps, total = video.fps, sum(clip.frames for clip in clips) if total is None else total
        if video.emulator_frames:  # about frame_skip screens an agent frame (an estimate for the progress bar)
            fps, total = EMULATOR_FPS, total * (self.schedule.frame_skip or 4)
        provenance["emulator_frames"], provenance["fps"] = video.emulator_frames, fps
        with VideoEncoder(
            output,
            width=canvas.width,
            height=canvas.height,
            fps=fps,
            crf=video.crf,
            preset=video.preset,
            provenance=provenance,
            total_frames=total,
            progress=video.progress,
            description=f"{product} {Path(output).name}",
        ) as encoder:
            written = encode_frames(frames, encoder)
        return RenderResult(Path(output), written, tuple(clip.episode.index for clip in clips), dict(self.used))

    def _checkpoint_dir(self) -> str | None:
        """The folder the checkpoint file names in :attr:`used` are in (none unless the overlay runs the network)."""
        source = self.source
        folder = source.checkpoint.parent if source.checkpoint is not None else source.checkpoints
        return None if folder is None or self.overlay_config.kind != "full" else str(folder.resolve())

    def _algorithm(self) -> str:
        """The algorithm that trained the run, as a Stable-Baselines3 run's log names it (this project's: PPO)."""
        model = self.log.metadata.get("sb3_model")
        return str(model.get("algorithm", "PPO")) if isinstance(model, dict) else "PPO"

    def _check_observations(self, episodes: Sequence[EpisodeRecord]) -> None:
        """The full overlay feeds the recorded observations to the network: refuse, before any work, a log whose
        observations the network cannot take (e.g. raw RGB screens from an env without the Atari
        preprocessing)."""
        metadata = self.log.metadata
        for stream in sorted({episode.stream for episode in episodes}):
            info = self.log.streams[stream]
            view = view_for(metadata, stream)  # an SB3 run: the network's input is re-derived from the screens
            if view is not None and view.observation_shape == tuple(OBS_SHAPE):
                continue
            if tuple(info.obs_shape) != tuple(OBS_SHAPE) or info.obs_dtype != "uint8":
                raise RenderConfigError(
                    f"{self.source.log}: overlay=full runs the network on the recorded observations, but stream "
                    f"{stream} ({info.env_id}) recorded {info.obs_dtype} observations of shape "
                    f"{list(info.obs_shape)}, and the network takes uint8 {list(OBS_SHAPE)} (84x84 grayscale, 4 "
                    "stacked frames, as python -m replay.train records them); render this log with "
                    "overlay=minimal or overlay=raw"
                )

    def _policies(self) -> PolicyLibrary:
        source, probe = self.source, dataclasses.replace(self.overlay_config.probe(), device=self.device)
        common = {"env_id": self.log.env_id, "n_actions": len(self.log.action_meanings), "settings": probe}
        if source.checkpoint is not None:
            return PolicyLibrary(checkpoint=source.checkpoint, **common)
        if source.checkpoints is not None and source.exact:
            return PolicyLibrary(checkpoints=source.checkpoints, exact=exact_source(source.run), **common)
        if source.checkpoints is not None:
            return PolicyLibrary(checkpoints=source.checkpoints, **common)
        where = f"run {source.run}" if source.run is not None else f"log {source.log}"
        raise MissingCheckpointError(
            f"overlay=full needs the network that played, but {where} comes with no checkpoint; pass "
            "checkpoint=<file.pt> (or run=<run_dir> with a checkpoints/ folder), "
            "or use overlay=minimal or overlay=raw"
        )
