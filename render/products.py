"""The three videos: one episode, a time-lapse across the run, and the milestone progression.

Each product is a plain function: it opens the log in a :class:`render.session.Session`, chooses episodes, builds
the overlay and streams frames into the encoder. Hydra only calls these. The time-lapse and the progression tell
the run's story around the overlay (captions, the learning curve, episodes side by side): the timing and choices
are in :mod:`render.story`, the drawing in :mod:`render.draw.story`, their assembly into frames here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any

import numpy as np

from render.config import (
    EpisodeProductConfig,
    OverlayConfig,
    ProgressionProductConfig,
    SelectionConfig,
    TimelapseProductConfig,
    VideoConfig,
)
from render.draw.overlays import TextRoomError, title_card
from render.draw.story import (
    CaptionedOverlay,
    CellCaption,
    CellScreen,
    CellView,
    Mark,
    StripCaption,
    learning_curve_card,
)
from render.errors import RenderConfigError, SelectionError
from render.feed import kept_count, seek_distance
from render.frame import FrameContext
from render.pipeline import Rendered
from render.schedule import TrainingSchedule
from render.selection import SeekCost, Selector, evenly, every, highlights, pick_episode, progress_range
from render.session import Session
from render.source import RenderResult, RenderSource
from render.story import (
    DEFAULT_MILESTONES,
    Clip,
    LearningCurve,
    clip_stride,
    milestone_episodes,
    screens,
)
from replay import EpisodeRecord


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
    with Session(source, overlay or OverlayConfig(), video or VideoConfig(), workers=workers, device=device) as session:
        try:
            chosen = pick_episode(session.log.episodes, episode, product.tag)
        except SelectionError as error:
            raise SelectionError(f"{source.log}: {error}") from None
        session.prepare([chosen], product.frame_stride)
        return session.encode(session.frames(0), output, "episode", config)


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
    with Session(source, overlay, video, workers=workers, device=device) as session:
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
    with Session(source, overlay, video, workers=workers, device=device) as session:
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


def _story_part(build: Callable[[], Any], session: Session) -> Any:
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


def _milestone_clips(session: Session, product: ProgressionProductConfig) -> list[Clip]:
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


def _milestone(session: Session, episode: EpisodeRecord) -> tuple[float | None, int | None]:
    """The training progress and agent steps of the milestone that played ``episode`` (``None``: unknown)."""
    version = episode.policy_versions[0]
    ref = session.policies.ref(version) if session.policies is not None else None
    fraction = ref.milestone if ref is not None and ref.milestone is not None else session.schedule.progress(version)
    steps = ref.global_step if ref is not None else session.schedule.global_step(version)
    return fraction, steps


def _milestone_head(session: Session, episode: EpisodeRecord) -> str:
    """``10% - 100k steps``, or the policy version where the run does not say."""
    fraction, steps = _milestone(session, episode)
    head = [] if fraction is None else [f"{fraction:.0%}"]
    head += [] if steps is None else [f"{human_steps(steps)} steps"]
    return " - ".join(head) or f"v{episode.policy_versions[0]}"


def _card_lines(session: Session, clip: Clip) -> list[str]:
    episode = clip.episode
    lines = [
        f"{_milestone_head(session, episode)} - return {episode.total_reward:g}",
        f"{session.log.game} | evaluation episode {episode.index} | policy v{episode.policy_versions[0]}",
    ]
    if clip.stride > 1:
        lines.append(f"played at x{clip.stride}: one frame in {clip.stride}, to fit the clip")
    return lines


def _screen_lines(session: Session, clips: Sequence[Clip]) -> list[str]:
    """A side-by-side screen's card: the milestones it plays, left to right and top to bottom."""
    heads = [_milestone_head(session, clip.episode).split(" - ")[0] for clip in clips]
    return [
        "  |  ".join(heads),
        f"{session.log.game} | evaluation episodes of {len(clips)} milestones of training, played at once",
    ]


def _cell_caption(session: Session, context: FrameContext, clip: Clip, finished: bool) -> CellCaption:
    action = probability = None
    if context.analytics is not None and context.action is not None:
        action = session.log.action_meanings[context.action]
        probability = float(context.analytics.probabilities[context.action])
    return CellCaption(
        title=_milestone_head(session, clip.episode),
        detail=f"evaluation {context.episode} - v{context.policy_version}",
        reward=context.episode_reward,
        finished=finished,
        speed=clip.stride,
        action=action,
        probability=probability,
    )


@dataclass(frozen=True)
class _Story:
    """A progression's frames before its closing card: the canvas size and how many frames ``frames`` yields."""

    width: int
    height: int
    frames: Iterator[Rendered]
    total: int


def _sequential(session: Session, curve: LearningCurve, card_frames: int) -> _Story:
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
                card = title_card(captioned.width, captioned.height, _card_lines(session, clip), style)
                yield from _held(card, card_frames)
                head, last = _milestone_head(session, clip.episode), clip.frames - 1
                position = curve.position(clip.episode.policy_versions[0])
                for k, context in enumerate(session.scene(clip, feed, order)):
                    reward = context.episode_reward
                    parts = [head, f"evaluation episode {context.episode}", _return_text(reward, k == last)]
                    parts += [f"x{clip.stride}"] if clip.stride > 1 else []
                    yield captioned.render(context, StripCaption(" - ".join(parts), position, reward, k == last))
            session.close_feed(feed)

    total = sum(card_frames + clip.frames for clip in session.clips)
    return _Story(captioned.width, captioned.height, frames(), total)


def _side_by_side(session: Session, layout: str, card_frames: int) -> _Story:
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
            yield from _held(title_card(width, height, _screen_lines(session, clips), style), card_frames)
            feeds = [session.open_feed([clip], workers) for clip in clips]
            scenes = [session.scene(clip, feed, 0) for clip, feed in zip(clips, feeds, strict=True)]
            views: list[CellView | None] = [None] * len(clips)
            for t in range(max(clip.frames for clip in clips)):
                for i, (clip, scene) in enumerate(zip(clips, scenes, strict=True)):
                    if t < clip.frames:
                        context = next(scene)
                        views[i] = CellView(context.frame, _cell_caption(session, context, clip, t == clip.frames - 1))
                yield screen.render(views)
            for feed in feeds:
                session.close_feed(feed)

    total = sum(card_frames + max(clip.frames for clip in clips) for clips, _ in plan)
    return _Story(width, height, frames(), total)
