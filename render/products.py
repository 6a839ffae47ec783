"""The three videos: one episode, a time-lapse across the run, and the milestone progression.

Each product is a plain function: it opens the log, chooses episodes, builds the overlay and streams frames
into the encoder through :func:`render.pipeline.encode_frames`. Hydra only calls these.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any

import numpy as np

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
from render.draw.style import Style
from render.encoder import VideoEncoder
from render.errors import MissingCheckpointError, RenderConfigError, SelectionError
from render.feed import ReplayFeed, auto_workers, kept_count, seek_distance
from render.pipeline import Rendered, encode_frames
from render.policies import PolicyLibrary
from render.saliency import SaliencySettings
from render.scenes import DEFAULT_GAMMA, SceneSettings, episode_scene
from render.schedule import TrainingSchedule
from render.selection import SeekCost, Selector, chronological, evenly, every, pick_episode, progress_range
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

    @classmethod
    def resolve(cls, *, run: str | Path | None, log: str | Path | None, checkpoint: str | Path | None) -> RenderSource:
        """``log`` wins over ``run``; a run folder must hold ``trajectories.h5``."""
        file = None if checkpoint is None else Path(checkpoint)
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
        return cls(RunFolder(folder).log, folder, file)

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
    with _Session(source, overlay or OverlayConfig(), VideoConfig(progress=False), workers=0) as session:
        try:
            chosen = pick_episode(session.log.episodes, episode, tag)
        except SelectionError as error:
            raise SelectionError(f"{source.log}: {error}") from None
        if not 0 <= step <= chosen.length:
            raise SelectionError(
                f"{source.log}: episode {chosen.index} has steps 0..{chosen.length}, not step {step}; pick a step "
                "in that range"
            )
        session.prepare([chosen], 1)
        for index, frame in enumerate(session.frames(0)):
            if index == step:
                return frame.image.copy()
    raise AssertionError("unreachable: an episode yields length + 1 frames")


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
    """Episodes selected across the run, sped up by a frame stride; training progress always on screen."""
    product = product or TimelapseProductConfig()
    video = video or VideoConfig()
    with _Session(
        source, overlay or OverlayConfig(), video, workers=workers, progress_bar=True, device=device
    ) as session:
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
        session.prepare(chosen, stride)
        frames = (frame for order in range(len(chosen)) for frame in session.frames(order))
        return session.encode(frames, output, "timelapse", config)


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
    """The milestone evaluation episodes in order, each after a card ``10% - 100k steps - return 7``."""
    product = product or ProgressionProductConfig()
    video = video or VideoConfig()
    overlay = overlay or OverlayConfig()
    with _Session(source, overlay, video, workers=workers, device=device) as session:
        chosen = milestone_episodes(session.log.episodes, product.per_milestone)
        if not chosen:
            raise SelectionError(
                f"{source.log} holds no evaluation episodes (tag 'eval'); train with eval.episodes > 0"
            )
        session.prepare(chosen, product.frame_stride)
        card_frames = max(1, round(product.card_seconds * video.fps)) if product.card_seconds > 0 else 0
        style = overlay.style()

        def frames() -> Iterator[Rendered]:
            for order, episode in enumerate(chosen):
                if card_frames:
                    card = title_card(session.overlay.width, session.overlay.height, session.card_lines(episode), style)
                    yield Rendered(card)
                    for _ in range(card_frames - 1):
                        yield Rendered(card, ())  # unchanged: its planes are reused
                yield from session.frames(order)

        return session.encode(frames(), output, "progression", config, extra_frames=card_frames * len(chosen))


def make_selector(
    selection: SelectionConfig, schedule: TrainingSchedule, seek_cost: SeekCost | None = None
) -> Selector:
    """The selector a ``selection`` config describes; ``seek_cost`` is used when ``selection.cheap_seeks``."""
    cost = seek_cost if selection.cheap_seeks else None
    if selection.kind == "evenly":
        return evenly(selection.count, selection.tag, cost)
    if selection.kind == "every":
        return every(selection.every, selection.tag)
    if selection.kind == "range":
        return progress_range(selection.start, selection.stop, selection.count, schedule, selection.tag, cost)
    raise RenderConfigError(f"unknown selection.kind {selection.kind!r}; choose evenly, every or range")


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


def milestone_episodes(episodes: Sequence[EpisodeRecord], per_milestone: str = "all") -> list[EpisodeRecord]:
    """Evaluation episodes in version order: all of each milestone, or its ``first`` or ``best``."""
    if per_milestone not in ("all", "first", "best"):
        raise RenderConfigError(f"expected per_milestone all, first or best, got {per_milestone!r}")
    chosen = []
    # finished only: a kill during an evaluation leaves a cut episode, played again in full on resume
    for _, group in groupby(chronological(episodes, "eval", finished_only=True), key=lambda e: e.policy_versions[0]):
        members = list(group)
        if per_milestone == "first":
            members = members[:1]
        elif per_milestone == "best":
            members = [max(members, key=lambda e: e.total_reward)]
        chosen.extend(members)
    return chosen


EMULATOR_FPS = 60  # the Atari's frame rate: emulated frames at their real speed


def return_note(schedule: TrainingSchedule) -> str:
    """How the value chart counts the return that followed: the trainer's discount and reward clipping."""
    if schedule.gamma is None:
        return f"gamma {DEFAULT_GAMMA:g} assumed (log has none)"
    clipped = ", rewards clipped to -1..1" if schedule.clip_reward else ""
    return f"gamma {schedule.gamma:g}{clipped}"


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
) -> Overlay:
    """Build the overlay ``overlay.kind`` names; ``full`` takes its diagram layout from the policies'
    network."""
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
            return_note=return_note,
            saliency=overlay.saliency,
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


class _Session:
    """One open log with its schedule, policies, overlay and re-simulation feed, for one product."""

    def __init__(
        self,
        source: RenderSource,
        overlay: OverlayConfig,
        video: VideoConfig,
        *,
        workers: int | None = None,
        progress_bar: bool = False,
        device: str = "auto",
    ) -> None:
        if overlay.kind not in OVERLAYS:
            raise RenderConfigError(f"unknown overlay {overlay.kind!r}; choose one of {', '.join(OVERLAYS)}")
        self.source, self.overlay_config, self.video = source, overlay, video
        self.workers, self.progress_bar = workers, progress_bar
        try:  # before any work: an unusable device is refused at once
            self.device = str(resolve_device(device))
        except ValueError as error:
            raise RenderConfigError(str(error)) from None
        self.log = TrajectoryLog(source.log)
        self.schedule = TrainingSchedule.from_metadata(self.log.metadata)
        self.policies: PolicyLibrary | None = None
        self.overlay: Overlay | None = None
        self.feed: ReplayFeed | None = None
        self.episodes: list[EpisodeRecord] = []
        self.settings = SceneSettings()
        self.used: dict[str, int] = {}

    def __enter__(self) -> _Session:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.feed is not None:
            self.feed.close()
        self.log.close()

    def prepare(self, episodes: Sequence[EpisodeRecord], stride: int) -> None:
        """Load what the overlay needs (checkpoints for ``full``), build it and start re-simulating."""
        config = self.overlay_config
        saliency = SaliencySettings(stride=config.saliency_stride) if config.saliency else None
        self.settings = SceneSettings(stride, config.value_history, config.batch_size, saliency)
        if config.kind == "full":
            self._check_observations(episodes)
            self.policies = self._policies()
        self.overlay = make_overlay(
            config, self.video, self.log.game, self.log.action_meanings, self.policies,
            episodes[0].policy_versions[0], progress_bar=self.progress_bar,
            return_note=return_note(self.schedule),
        )  # fmt: skip
        self.episodes = list(episodes)
        workers = auto_workers(self.episodes) if self.workers is None else self.workers
        observations = self.policies is not None
        self.feed = ReplayFeed(
            self.source.log, self.episodes, stride, observations=observations, workers=workers,
            rewards=config.kind != "raw", emulator_frames=self.video.emulator_frames,
            chunk=8 if self.video.emulator_frames else 32,
        )  # fmt: skip

    def frames(self, order: int) -> Iterator[Rendered]:
        """The rendered frames of the ``order``-th prepared episode (the overlay's buffer and its damage)."""
        episode = self.episodes[order]
        rewards = self.feed.rewards(order) if self.feed.with_rewards else None
        steps = self.feed.steps(order)
        scene = episode_scene(episode, steps, self.schedule, self.settings, self.policies, self.used, rewards)
        for context in scene:
            screens = context.screens
            if screens is None:
                image = self.overlay.render(context)
                yield Rendered(image, self.overlay.damage())
                continue
            for screen in screens:  # the emulated frames until the next agent frame, the overlay held
                image = self.overlay.render(dataclasses.replace(context, frame=screen, screens=None))
                yield Rendered(image, self.overlay.damage())

    def card_lines(self, episode: EpisodeRecord) -> list[str]:
        version = episode.policy_versions[0]
        ref = self.policies.ref(version) if self.policies is not None else None
        fraction = ref.milestone if ref is not None and ref.milestone is not None else self.schedule.progress(version)
        steps = ref.global_step if ref is not None else self.schedule.global_step(version)
        head = [] if fraction is None else [f"{fraction:.0%}"]
        head += [] if steps is None else [f"{human_steps(steps)} steps"]
        head.append(f"return {episode.total_reward:g}")
        return [" - ".join(head), f"{self.log.game} | evaluation episode {episode.index} | policy v{version}"]

    def encode(
        self,
        frames: Iterable[Rendered],
        output: Path,
        product: str,
        config: Mapping[str, Any] | None,
        *,
        extra_frames: int = 0,
    ) -> RenderResult:
        """Encode ``frames`` (the prepared episodes' frames plus ``extra_frames`` such as title cards)."""
        episodes, stride = self.episodes, self.settings.stride
        total = extra_frames + sum(kept_count(e, stride) for e in episodes)
        fps = self.video.fps
        if self.video.emulator_frames:  # about frame_skip screens an agent frame (an estimate for the progress bar)
            total = extra_frames + sum(kept_count(e, stride) for e in episodes) * (self.schedule.frame_skip or 4)
            fps = EMULATOR_FPS
        provenance = {
            "product": product,
            "run": None if self.source.run is None else str(self.source.run.resolve()),
            "log": str(self.source.log.resolve()),
            "game": self.log.game,
            "env_id": self.log.env_id,
            "overlay": self.overlay_config.kind,
            "frame_stride": stride,
            "emulator_frames": self.video.emulator_frames,
            "fps": fps,
            "episodes": [
                {
                    "index": e.index,
                    "tag": e.tag,
                    "length": e.length,
                    "total_reward": e.total_reward,
                    "policy_versions": list(e.policy_versions),
                }
                for e in episodes
            ],
            # each checkpoint file used (in checkpoint_dir) with its largest version lag: the version that played
            # minus the checkpoint's own (negative when a newer checkpoint explains older play)
            "checkpoint_dir": self._checkpoint_dir(),
            "checkpoints": self.used,
            "config": dict(config or {}),
        }
        video = self.video
        with VideoEncoder(
            output,
            width=self.overlay.width,
            height=self.overlay.height,
            fps=fps,
            crf=video.crf,
            preset=video.preset,
            provenance=provenance,
            total_frames=total,
            progress=video.progress,
            description=f"{product} {Path(output).name}",
        ) as encoder:
            written = encode_frames(frames, encoder)
        return RenderResult(Path(output), written, tuple(e.index for e in episodes), dict(self.used))

    def _checkpoint_dir(self) -> str | None:
        """The folder the checkpoint file names in :attr:`used` are in (none unless the overlay runs the network)."""
        source = self.source
        folder = source.checkpoint.parent if source.checkpoint is not None else source.checkpoints
        return None if folder is None or self.overlay_config.kind != "full" else str(folder.resolve())

    def _check_observations(self, episodes: Sequence[EpisodeRecord]) -> None:
        """The full overlay feeds the recorded observations to the network: refuse, before any work, a log whose
        observations the network cannot take (e.g. raw RGB screens from an env without the Atari
        preprocessing)."""
        for stream in sorted({episode.stream for episode in episodes}):
            info = self.log.streams[stream]
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
        if source.checkpoints is not None:
            return PolicyLibrary(checkpoints=source.checkpoints, **common)
        where = f"run {source.run}" if source.run is not None else f"log {source.log}"
        raise MissingCheckpointError(
            f"overlay=full needs the network that played, but {where} comes with no checkpoint; pass "
            "checkpoint=<file.pt> (or run=<run_dir> with a checkpoints/ folder), "
            "or use overlay=minimal or overlay=raw"
        )
