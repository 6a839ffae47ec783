"""One product's open log: its schedule, the networks that explain it, the overlay, re-simulation feeds, encoding.

A :class:`Session` is what every product and the viewer's episode frames work through: it loads the policies the
overlay needs, builds the overlay (:func:`render.overlay_choice.make_overlay`), starts re-simulating clips
(:class:`render.feed.ReplayFeed`), turns their kept steps into frame contexts and rendered frames, and encodes
frames with the sidecar that says what the video shows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np

from render.agent_view import view_for
from render.config import OVERLAYS, OverlayConfig, VideoConfig
from render.draw.overlays import Overlay
from render.encoder import VideoEncoder
from render.errors import MissingCheckpointError, RenderConfigError
from render.feed import KeptStep, ReplayFeed, auto_workers
from render.frame import FrameContext
from render.overlay_choice import make_overlay, return_note
from render.pipeline import Rendered, encode_frames
from render.policies import PolicyLibrary, exact_source, rebuilt_source
from render.saliency import SaliencySettings
from render.scenes import SceneSettings, episode_scene
from render.schedule import TrainingSchedule
from render.source import RenderResult, RenderSource
from render.story import Clip
from replay import EpisodeRecord, TrajectoryLog
from replay.train.config import resolve_device
from replay.train.network import OBS_SHAPE

EMULATOR_FPS = 60  # the Atari's frame rate: emulated frames at their real speed


class Session:
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

    def __enter__(self) -> Session:
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
            self.policies = self.load_policies()
            self.policies.prepare(v for e in episodes for v in e.policy_versions)

    def load_policies(self) -> PolicyLibrary:
        """The networks the source names: one checkpoint file, a run's checkpoints, or their exact rebuilds."""
        source, probe = self.source, dataclasses.replace(self.overlay_config.probe(), device=self.device)
        common = {"env_id": self.log.env_id, "n_actions": len(self.log.action_meanings), "settings": probe}
        if source.checkpoint is not None:
            return PolicyLibrary(checkpoint=source.checkpoint, **common)
        if source.checkpoints is not None and source.exact:
            return PolicyLibrary(checkpoints=source.checkpoints, exact=exact_source(source.run), **common)
        if source.checkpoints is not None and source.rebuilt:
            rebuilt = rebuilt_source(source.run)
            return PolicyLibrary(checkpoints=source.checkpoints, exact=rebuilt, rebuild=False, **common)
        if source.checkpoints is not None:
            return PolicyLibrary(checkpoints=source.checkpoints, **common)
        where = f"run {source.run}" if source.run is not None else f"log {source.log}"
        raise MissingCheckpointError(
            f"overlay=full needs the network that played, but {where} comes with no checkpoint; pass "
            "checkpoint=<file.pt> (or run=<run_dir> with a checkpoints/ folder), "
            "or use overlay=minimal or overlay=raw"
        )

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
        self,
        clip: Clip,
        steps: Iterable[KeptStep],
        rewards: np.ndarray | Future[np.ndarray] | None,
        policies: PolicyLibrary | None,
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
            # fell back to saved checkpoints, why: in full, and in the few words the overlay showed
            "exact": None
            if self.policies is None or not self.policies.exact
            else {"fallback": self.policies.exact_problem, "brief": self.policies.exact_brief},
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
