"""Typed settings of ``python -m render``: one dataclass per Hydra group, registered as schemas.

The YAML files in ``conf/`` extend these schemas (``defaults: [<name>_schema]``), so a misspelt key or a wrong
type fails at compose time. The products take these dataclasses as plain typed arguments.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from render.analytics import ProbeSettings
from render.draw.style import Palette, Style, Typeface
from render.encoder import PRESETS
from render.errors import RenderConfigError
from render.selection import TAGS

OVERLAYS = ("raw", "minimal", "full")
SELECTIONS = ("evenly", "every", "range", "highlights")
PER_MILESTONE = ("all", "first", "best")
LAYOUTS = ("sequential", "side_by_side", "grid")


def _at_least(key: str, value: float | None, least: float, fix: str = "") -> None:
    if value is None or value < least:
        raise RenderConfigError(f"{key} must be at least {least:g}, got {value}{'; ' + fix if fix else ''}")


def _one_of(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise RenderConfigError(f"{key}={value!r} is not an option; choose one of {', '.join(choices)}")


def _even(key: str, value: int) -> None:
    _at_least(key, value, 2)
    if value % 2:
        raise RenderConfigError(f"{key}={value} is odd, and yuv420p video needs even sizes; use {value + 1}")


@dataclass
class VideoConfig:
    """Encoding (group ``video``).

    Attributes:
        fps: Video frames per second; a recorded frame is one agent step (4 emulator frames, 1/15 s of play), so 30
            plays at twice the game's speed (``emulator_frames`` shows it at its own).
        crf: x264 constant rate factor, 0 (lossless) .. 51; 18 looks transparent, 28 is small.
        preset: x264 speed/size trade-off, ``ultrafast`` .. ``veryslow``.
        scale: Integer nearest-neighbour enlargement of the 160x210 game for ``raw`` and ``minimal``.
        progress: Show a progress bar on the terminal.
        emulator_frames: Every emulated frame (60 Hz), not only the ones the agent saw, encoded at 60 fps: the
            game at its real speed, the overlay holding the values of the agent frame each belongs to (``fps`` is
            then not used).
    """

    fps: int = 30
    crf: int = 23
    preset: str = "veryfast"
    scale: int = 4
    progress: bool = True
    emulator_frames: bool = False

    def __post_init__(self) -> None:
        _at_least("video.fps", self.fps, 1)
        if not 0 <= self.crf <= 51:
            raise RenderConfigError(f"video.crf must lie in 0..51 (x264's range), got {self.crf}")
        _one_of("video.preset", self.preset, PRESETS)
        _at_least("video.scale", self.scale, 1)


# One optional [r, g, b] per colour of the palette, so ``overlay.palette.<colour>=[r,g,b]`` overrides it on the
# command line (a misspelt colour fails at compose time) and the config always lists every colour there is.
PaletteConfig = dataclasses.make_dataclass(
    "PaletteConfig",
    [(colour.name, list[int] | None, field(default=None)) for colour in dataclasses.fields(Palette)],
)
PaletteConfig.__doc__ = (
    "Colour overrides of the overlays (``None``: the :class:`render.draw.style.Palette` default).\n\nAttributes:\n"
    + "".join(
        f"    {colour.name}: [r, g, b] for the palette's {colour.name} (null: its default).\n"
        for colour in dataclasses.fields(Palette)
    )
)
PaletteConfig.__module__ = __name__


@dataclass
class OverlayConfig:
    """What is drawn over the game (group ``overlay``).

    Attributes:
        kind: ``raw`` (game only), ``minimal`` (game and stats) or ``full`` (Neural Activity Viewer).
        width, height: Canvas of the ``full`` overlay (``raw``/``minimal`` follow ``video.scale``).
        panel_width: Least width of the ``minimal`` overlay's stats panel (it widens to fit its longest text).
        font: OpenCV 5 font face (``sans``, ``uni``, ``italic`` or a font file).
        font_scale: Multiplies every text size; the layouts make room for it (a canvas too small for the text is
            refused, saying what to change).
        palette: Colour overrides, one key per colour of :class:`render.draw.style.Palette` (``null``: its default),
            e.g. ``overlay.palette.background=[0,0,0]``.
        value_history: Frames the value chart shows (the value and the return that followed).
        batch_size: Observations per forward pass of the network.
        hidden_sample: Hidden units of the ``fc`` layer shown in the diagram.
        thumbnails: Feature maps shown per conv layer.
        saliency: Blend a perturbation saliency map over the game (``full`` only): blurred patches of the
            observation, the change in the policy in blue and in the value in red (Greydanus et al. 2018).
        saliency_stride: Spacing of the saliency's patches in observation pixels (smaller: finer and slower).
    """

    kind: str = "full"
    width: int = 1280
    height: int = 720
    panel_width: int = 360
    font: str = "sans"
    font_scale: float = 1.0
    palette: PaletteConfig = field(default_factory=lambda: PaletteConfig())
    value_history: int = 90
    batch_size: int = 64
    hidden_sample: int = 32
    thumbnails: int = 4
    saliency: bool = False
    saliency_stride: int = 6

    def __post_init__(self) -> None:
        if isinstance(self.palette, Mapping):  # from Python code: {"background": [0, 0, 0]}
            known = [f.name for f in dataclasses.fields(PaletteConfig)]
            unknown = sorted(set(self.palette) - set(known))
            if unknown:
                raise RenderConfigError(f"unknown overlay.palette colours {unknown}; known: {', '.join(known)}")
            self.palette = PaletteConfig(**self.palette)
        _one_of("overlay.kind", self.kind, OVERLAYS)
        _even("overlay.width", self.width)
        _even("overlay.height", self.height)
        _at_least("overlay.panel_width", self.panel_width, 1)
        if not (self.font_scale > 0 and math.isfinite(self.font_scale)):
            raise RenderConfigError(f"overlay.font_scale must be positive, got {self.font_scale}")
        for key in ("value_history", "batch_size", "hidden_sample", "thumbnails", "saliency_stride"):
            _at_least(f"overlay.{key}", getattr(self, key), 1)
        if self.saliency_stride > 84:
            raise RenderConfigError(
                f"overlay.saliency_stride must be at most 84 (the observation's size), got {self.saliency_stride}"
            )
        if self.saliency and self.kind != "full":
            raise RenderConfigError(
                f"overlay.saliency=true draws the network's saliency over the full overlay's game, but "
                f"overlay={self.kind} runs no network; use overlay=full"
            )

    def style(self) -> Style:
        colours = {}
        for name, value in dataclasses.asdict(self.palette).items():
            if value is None:
                continue
            if len(value) != 3 or not all(0 <= int(c) <= 255 for c in value):
                raise RenderConfigError(
                    f"overlay.palette.{name} must be three 0..255 values [r, g, b], got {list(value)}"
                )
            colours[name] = tuple(int(c) for c in value)
        try:
            typeface = Typeface(self.font, self.font_scale)
        except ValueError as error:
            raise RenderConfigError(f"overlay.font / overlay.font_scale: {error}") from None
        return Style(Palette(**colours), typeface)

    def probe(self) -> ProbeSettings:
        return ProbeSettings(self.batch_size, self.hidden_sample, self.thumbnails)


@dataclass
class SelectionConfig:
    """Which episodes a time-lapse shows (group ``selection``).

    Attributes:
        kind: ``highlights`` (the best episode of each of ``count`` equal stretches of training progress: the
            learning arc), ``evenly`` (``count`` spread over the run), ``every`` (every ``every``-th) or ``range``
            (``count`` spread over training progress ``start``..``stop``).
        tag: ``train``, ``eval`` or ``any``.
        count: Episodes an ``evenly`` or ``range`` selection picks; the stretches a ``highlights`` selection
            takes the best of (a stretch where no episode started is skipped).
        every: The step of an ``every`` selection: every this many-th episode.
        start, stop: The span of training progress (0..1) a ``range`` selection picks from.
        cheap_seeks: Let each ``evenly``/``range`` pick move up to half its spacing to the episode closest
            after a snapshot, so re-simulation skips most of the fast-forward to far-off episodes
            (``highlights`` picks the best episodes wherever they are).
    """

    kind: str = "highlights"
    tag: str = "train"
    count: int = 24
    every: int = 10
    start: float = 0.0
    stop: float = 1.0
    cheap_seeks: bool = True

    def __post_init__(self) -> None:
        _one_of("selection.kind", self.kind, SELECTIONS)
        _one_of("selection.tag", self.tag, TAGS)
        _at_least("selection.count", self.count, 1)
        _at_least("selection.every", self.every, 1)
        if not 0.0 <= self.start < self.stop <= 1.0:
            raise RenderConfigError(
                f"selection.start={self.start} and selection.stop={self.stop} must satisfy 0 <= start < stop <= 1 "
                "(fractions of training progress)"
            )


@dataclass
class EpisodeProductConfig:
    """One episode (``product=episode``); which one is the top-level ``episode`` (index, best, worst, last).

    Attributes:
        kind: The product, set by the group: ``episode``.
        tag: Where ``best``/``worst``/``last`` look: ``train``, ``eval`` or ``any``.
        frame_stride: Keep every n-th frame (1: every recorded frame).
    """

    kind: str = "episode"
    tag: str = "any"
    frame_stride: int = 1

    def __post_init__(self) -> None:
        _one_of("product.tag", self.tag, TAGS)
        _at_least("product.frame_stride", self.frame_stride, 1)


@dataclass
class TimelapseProductConfig:
    """Episodes across the run, sped up, each captioned (``product=timelapse``).

    Attributes:
        kind: The product, set by the group: ``timelapse``.
        frame_stride: Keep every n-th frame; ``null`` picks it from ``target_duration``.
        target_duration: Seconds of video to aim for when ``frame_stride`` is ``null``.
        caption: A strip under the overlay naming the episode on screen (training progress, update, episode,
            return so far, speed) over the run's learning curve, marked where the episode was played; ``false``:
            the overlay's frames alone, at its size (``raw`` with a training-progress bar along the bottom).
    """

    kind: str = "timelapse"
    frame_stride: int | None = None
    target_duration: float = 60.0
    caption: bool = True

    def __post_init__(self) -> None:
        if self.frame_stride is not None:
            _at_least("product.frame_stride", self.frame_stride, 1, "or null to fit product.target_duration")
        if not (self.target_duration > 0 and math.isfinite(self.target_duration)):
            raise RenderConfigError(
                f"product.target_duration must be a positive number of seconds, got {self.target_duration}"
            )


@dataclass
class ProgressionProductConfig:
    """Milestone evaluation episodes, then the learning curve (``product=progression``).

    Each milestone's episode plays as a clip of at most ``clip_seconds``: an episode that fits plays at normal
    speed; a longer one keeps every n-th frame, the smallest n that fits (its caption says ``xn``). The video
    ends on a card of the learning curve with the milestones shown marked on it.

    Attributes:
        kind: The product, set by the group: ``progression``.
        layout: ``sequential`` (one clip after another, each after a title card, with the overlay ``overlay``
            names and a caption strip), ``side_by_side`` (2 or 3 clips at once in a row) or ``grid`` (4 at once,
            2x2). The side-by-side layouts draw each clip in a compact cell (game, milestone, return, and with
            ``overlay=full`` the chosen action's probability) on a 16:9 canvas: ``overlay.width`` x
            ``overlay.height`` with ``overlay=full``, else 180 x ``video.scale`` high. Clips too many for one
            screen follow on further screens; a screen lasts as long as its longest clip, a clip that ends
            earlier holding its last frame, marked finished. Its cells re-simulate in the rendering process
            (``workers`` > 0: one process per cell).
        milestones: How many milestones to show, evenly spread over the run's, first and last included;
            ``null``: as many as one screen holds (3 for ``sequential`` and ``side_by_side``, 4 for ``grid``);
            ``0``: every milestone.
        per_milestone: ``best``, ``first`` or ``all`` evaluation episodes of each milestone shown.
        clip_seconds: The longest a milestone's clip plays; a longer episode is sped up to fit.
        card_seconds: How long the title card before each clip (``sequential``) or screen shows (0: none).
        closing_seconds: How long the closing learning-curve card shows (0: none).
        frame_stride: Keep at least every n-th frame (1: every frame, unless a clip must be sped up to fit).
    """

    kind: str = "progression"
    layout: str = "sequential"
    milestones: int | None = None
    per_milestone: str = "best"
    clip_seconds: float = 30.0
    card_seconds: float = 2.0
    closing_seconds: float = 5.0
    frame_stride: int = 1

    def __post_init__(self) -> None:
        _one_of("product.layout", self.layout, LAYOUTS)
        if self.milestones is not None:
            _at_least("product.milestones", self.milestones, 0, "0 shows every milestone, null one screen's worth")
        _one_of("product.per_milestone", self.per_milestone, PER_MILESTONE)
        if not (self.clip_seconds > 0 and math.isfinite(self.clip_seconds)):
            raise RenderConfigError(
                f"product.clip_seconds must be a positive number of seconds, got {self.clip_seconds}"
            )
        for key in ("card_seconds", "closing_seconds"):
            value = getattr(self, key)
            if not (value >= 0 and math.isfinite(value)):
                raise RenderConfigError(f"product.{key} must be 0 or more seconds, got {value}")
        _at_least("product.frame_stride", self.frame_stride, 1)


@dataclass
class RenderConfig:
    """``python -m render``: what to render from, which product, where to.

    Attributes:
        run: A run folder (``trajectories.h5`` and ``checkpoints/``), relative to where you launch.
        log: Any trajectory log; overrides ``run`` (``raw``/``minimal`` need nothing else).
        checkpoint: One checkpoint file explaining every frame (``full`` with ``log=`` needs it); ``exact``: each
            frame by the very version that played it, rebuilt from the run's learning (``run=`` only; where a
            rebuild cannot be verified, the nearest checkpoint, and the overlay and sidecar say why); ``rebuilt``:
            the versions rebuilt already (``run=`` only), the nearest checkpoint for the rest, never rebuilding.
        output: The video file; ``null`` writes ``<product>-<time>.mp4`` into the run's ``videos/`` folder (in a
            sweep, ``<product>.mp4`` into each job's folder).
        episode: For ``product=episode``: an index, ``best``, ``worst`` or ``last``.
        torch_threads: Threads for the network (x264 wants the rest).
        device: Where the network runs for the full overlay: ``auto`` (CUDA when torch sees a GPU, else the
            CPU), ``cpu``, ``cuda`` or ``cuda:N``.
        workers: Processes re-simulating episodes ahead of the renderer (0: in the rendering process; null:
            none for one episode or consecutive ones, two for episodes spread over the run).
    """

    product: Any = MISSING
    overlay: OverlayConfig = MISSING
    video: VideoConfig = MISSING
    selection: SelectionConfig = MISSING
    run: str | None = "data/sample/breakout"
    log: str | None = None
    checkpoint: str | None = None
    output: str | None = None
    episode: str = "best"
    torch_threads: int = 1
    device: str = "auto"
    workers: int | None = None

    def __post_init__(self) -> None:
        _at_least("torch_threads", self.torch_threads, 1)
        if self.workers is not None:
            _at_least("workers", self.workers, 0, "0 re-simulates in the rendering process, null decides")


def register_configs() -> None:
    """Register the schemas the YAML files in ``conf/`` extend."""
    store = ConfigStore.instance()
    store.store(name="render_schema", node=RenderConfig)
    store.store(group="video", name="video_schema", node=VideoConfig)
    store.store(group="overlay", name="overlay_schema", node=OverlayConfig)
    store.store(group="selection", name="selection_schema", node=SelectionConfig)
    store.store(group="product", name="episode_schema", node=EpisodeProductConfig)
    store.store(group="product", name="timelapse_schema", node=TimelapseProductConfig)
    store.store(group="product", name="progression_schema", node=ProgressionProductConfig)
