"""The story products on the sample run: milestones and highlights chosen, clips timed, cells and captions drawn
where they belong, decoded back from real videos."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import decode_video

from render import RenderSource, render_progression, render_timelapse
from render.config import OverlayConfig, ProgressionProductConfig, SelectionConfig, TimelapseProductConfig, VideoConfig
from render.draw.overlays import RawOverlay
from render.draw.story import (
    CaptionedOverlay,
    CellCaption,
    CellScreen,
    CellView,
    Mark,
    StripCaption,
    learning_curve_card,
)
from render.draw.style import Palette
from render.feed import kept_count
from render.frame import FrameContext
from render.schedule import TrainingSchedule
from render.selection import highlights
from render.story import LearningCurve, clip_stride, milestone_episodes, screens
from replay import EpisodeRecord, TrajectoryLog

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "sample" / "breakout"
PALETTE = Palette()
TINY = VideoConfig(fps=30, crf=30, preset="ultrafast", scale=2, progress=False)


@pytest.fixture(scope="module")
def sample() -> tuple[list[EpisodeRecord], TrainingSchedule]:
    with TrajectoryLog(SAMPLE / "trajectories.h5") as log:
        return list(log.episodes), TrainingSchedule.from_metadata(log.metadata)


def _episode(index: int, length: int, version: int = 0, reward: float = 0.0, tag: str = "eval") -> EpisodeRecord:
    return EpisodeRecord(index, 0, 0, tag, 0, length, reward, True, False, True, (version,))


def _drawn(region: np.ndarray) -> np.ndarray:
    """Where ``region`` differs from the background (by more than a decoded video's noise)."""
    return np.abs(region.astype(int) - np.array(PALETTE.background)).max(axis=-1) > 40


def _shows_breakout(region: np.ndarray) -> bool:
    """Whether ``region`` shows a Breakout screen: its grey walls (a sixth of the screen) and red bricks."""
    pixels = region.reshape(-1, 3).astype(int)
    grey = (np.abs(pixels - 142).max(axis=1) < 25).mean()
    return grey > 0.08 and bool(((pixels[:, 0] > 170) & (pixels[:, 1] < 100) & (pixels[:, 2] < 100)).any())


def _is_highlight(region: np.ndarray) -> np.ndarray:
    region = region.astype(int)
    return (region[..., 0] > 180) & (region[..., 2] < 150) & (region[..., 1] > 110)


# -- timing and choices ------------------------------------------------------------------------------------------


def test_a_clip_plays_at_normal_speed_when_it_fits_else_at_the_smallest_stride_that_does() -> None:
    assert clip_stride(_episode(0, 899), 900) == 1  # 900 frames: the reset and 899 steps
    assert clip_stride(_episode(0, 900), 900) == 2
    assert clip_stride(_episode(0, 100), 900, least=4) == 4
    for length in (1, 57, 901, 2999, 27_000):
        episode = _episode(0, length)
        stride = clip_stride(episode, 900)
        assert kept_count(episode, stride) <= 900 and (stride == 1 or kept_count(episode, stride - 1) > 900)


def test_screens_play_rows_of_two_or_three_side_by_side_and_fours_in_a_grid() -> None:
    clips = [object()] * 5

    def sizes(count: int, layout: str) -> list[int]:
        return [len(screen) for screen in screens(clips[:count], layout)]

    assert sizes(3, "sequential") == [1, 1, 1]
    assert sizes(3, "side_by_side") == [3] and sizes(4, "side_by_side") == [2, 2] and sizes(5, "side_by_side") == [3, 2]
    assert sizes(4, "grid") == [4] and sizes(5, "grid") == [4, 1]


def test_milestones_are_spread_over_the_run_first_and_last_included(sample) -> None:
    episodes, _ = sample

    def versions(chosen: list[EpisodeRecord]) -> list[int]:
        return [e.policy_versions[0] for e in chosen]

    assert versions(milestone_episodes(episodes, "best", 3)) == [0, 489, 977]
    assert versions(milestone_episodes(episodes, "best", 4)) == [0, 294, 684, 977]
    assert len(milestone_episodes(episodes, "best", 0)) == 11 and len(milestone_episodes(episodes, "all", 0)) == 22
    for chosen in milestone_episodes(episodes, "best", 0):
        same = [e for e in episodes if e.tag == "eval" and e.policy_versions[0] == chosen.policy_versions[0]]
        assert chosen.total_reward == max(e.total_reward for e in same)


def test_highlights_are_the_best_of_each_stretch_of_training_and_include_the_runs_best(sample) -> None:
    episodes, schedule = sample
    training = [e for e in episodes if e.tag == "train" and e.finished]
    chosen = highlights(24, schedule)(episodes)
    best = max(training, key=lambda e: e.total_reward)
    assert best.index in [e.index for e in chosen]  # episode 1662: 35 at 67% of training, the first of four
    stretches = [min(23, e.policy_versions[0] * 24 // schedule.num_updates) for e in chosen]
    assert stretches == sorted(set(stretches)) and len(chosen) == 24  # one per stretch, in training order
    for episode, stretch in zip(chosen, stretches, strict=True):
        rivals = [e for e in training if min(23, e.policy_versions[0] * 24 // schedule.num_updates) == stretch]
        assert episode.total_reward == max(e.total_reward for e in rivals)
    assert [e.index for e in highlights(1, schedule)(episodes)] == [best.index]


# -- drawing -----------------------------------------------------------------------------------------------------


def test_a_grid_screen_draws_four_equal_cells_and_holds_a_finished_one_dimmed() -> None:
    screen = CellScreen(640, 360, 2, 2, ["NOOP", "FIRE", "RIGHT", "LEFT"])
    colours = [(200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40)]
    views = [
        CellView(np.full((210, 160, 3), colour, np.uint8), CellCaption(f"{k}0% - 1k steps", f"evaluation {k}", k))
        for k, colour in enumerate(colours)
    ]
    acting = CellCaption("30% - 1k steps", "evaluation 3", 3, action="FIRE", probability=0.5)
    views[3] = CellView(views[3].frame, acting)
    image = screen.render(views).image.copy()
    cells = [layout.cell for layout in screen.layouts]
    assert len({(c.w, c.h) for c in cells}) == 1  # equal sizes
    assert [(c.x < 320, c.y < 180) for c in cells] == [(True, True), (False, True), (True, False), (False, False)]
    for layout, colour in zip(screen.layouts, colours, strict=True):
        game = layout.game
        assert game.w >= 100 and abs(game.w * 210 - game.h * 160) <= 210  # the game's shape, in its cell
        assert (image[game.slices] == colour).all()
        assert _drawn(image[layout.lines[0].slices]).any() and _drawn(image[layout.lines[2].slices]).any()
    bar = screen.layouts[3].lines[3]
    assert (image[bar.slices] == PALETTE.accent).all(axis=-1).any()  # the action's probability bar
    again = screen.render(views)
    assert again.damage == ()  # nothing changed, nothing to convert
    views[1] = CellView(views[1].frame, CellCaption("10% - 1k steps", "evaluation 1", 7, finished=True))
    finished = screen.render(views)
    game, line = screen.layouts[1].game, screen.layouts[1].lines[2]
    assert set(finished.damage) >= {game}
    assert (finished.image[game.slices].astype(int).sum(axis=-1) < sum(colours[1]) * 0.6).all()  # dimmed
    assert _is_highlight(finished.image[line.slices]).any()  # "final return 7"


def test_the_learning_curve_card_marks_the_episodes_shown(sample) -> None:
    episodes, schedule = sample
    curve = LearningCurve.of(episodes, schedule)
    assert len(curve.returns) == 2164 and curve.window == 86 and curve.axis == "training progress"
    marks = [Mark(0.0, 3.0), Mark(0.5, 21.0), Mark(1.0, 19.0)]
    card = learning_curve_card(640, 360, curve, marks, title="Breakout: learning curve")
    assert card.shape == (360, 640, 3)
    columns = np.flatnonzero(_is_highlight(card).any(axis=0))  # each mark's line, dot and label
    assert columns.min() < 0.2 * 640 and ((0.4 * 640 < columns) & (columns < 0.65 * 640)).any()
    assert columns.max() > 0.85 * 640
    assert _drawn(card[:30]).any()  # the title
    assert (np.abs(card.astype(int) - PALETTE.accent).max(axis=-1) < 30).sum() > 500  # the mean line


def test_the_caption_strip_keeps_the_overlay_above_and_moves_its_marker(sample) -> None:
    episodes, schedule = sample
    strip = CaptionedOverlay(RawOverlay(1), LearningCurve.of(episodes, schedule))
    assert (strip.width, strip.height) == (160, 210 + 34)
    frame = np.full((210, 160, 3), 77, np.uint8)
    marks = []
    for position in (0.1, 0.9):
        context = FrameContext(frame=frame, step=0, episode=0, episode_reward=5.0, action=None, policy_version=0)
        rendered = strip.render(context, StripCaption("10% - episode 0 - return 5", position, 5.0))
        assert (rendered.image[:210] == 77).all()
        marks.append(np.flatnonzero(_is_highlight(rendered.image[strip.band.slices]).any(axis=0)).mean())
    assert marks[0] < 0.3 * strip.band.w < 0.7 * strip.band.w < marks[1]
    assert all(rect.y >= 210 for rect in rendered.damage)  # the game did not change: only the marker is redrawn


# -- products, decoded back --------------------------------------------------------------------------------------


def test_side_by_side_plays_two_milestones_at_once_then_the_learning_curve(sample, tmp_path: Path) -> None:
    episodes, _ = sample
    source = RenderSource.resolve(run=SAMPLE, log=None, checkpoint=None)
    product = ProgressionProductConfig(
        layout="side_by_side", milestones=2, clip_seconds=1, card_seconds=0.1, closing_seconds=0.2
    )
    output = tmp_path / "side.mp4"
    result = render_progression(
        source, output, product=product, overlay=OverlayConfig(kind="raw"), video=TINY, workers=0
    )
    frames = decode_video(output)
    first, last = (next(e for e in episodes if e.index == i) for i in result.episodes)
    assert (first.policy_versions[0], last.policy_versions[0]) == (0, 977)  # the first and last milestones
    strides = [clip_stride(e, 30) for e in (first, last)]
    assert len(frames) == result.frames == 3 + 30 + 6  # card, the clip budget (the longer fills it), closing card
    assert frames[0].shape == (360, 640, 3)  # 16:9, 180 x video.scale high
    cells = CellScreen(640, 360, 2, 1, ["NOOP", "FIRE", "RIGHT", "LEFT"]).layouts
    middle = frames[3 + 15]
    for layout in cells:
        assert _shows_breakout(middle[layout.game.slices])
        assert _drawn(middle[layout.lines[0].slices]).any() and _drawn(middle[layout.lines[2].slices]).any()
    shorter = cells[0] if kept_count(first, strides[0]) < 30 else cells[1]
    assert _is_highlight(frames[3 + 29][shorter.lines[2].slices]).any()  # "final return" once it ended
    assert _is_highlight(frames[-1]).sum() > 50 and not _shows_breakout(frames[-1])  # the closing card
    sidecar = json.loads(output.with_name("side.mp4.json").read_text())
    assert sidecar["layout"] == "side_by_side" and sidecar["clip_seconds"] == 1
    assert [e["frame_stride"] for e in sidecar["episodes"]] == strides and sidecar["frame_stride"] is None


@pytest.mark.slow
def test_a_grid_with_the_networks_analytics_shows_each_cells_action_probability(tmp_path: Path) -> None:
    source = RenderSource.resolve(run=SAMPLE, log=None, checkpoint=None)
    product = ProgressionProductConfig(layout="grid", clip_seconds=4, card_seconds=0.5, closing_seconds=1)
    output = tmp_path / "grid.mp4"
    result = render_progression(source, output, product=product, overlay=OverlayConfig(kind="full"), video=TINY)
    frames = decode_video(output)
    with TrajectoryLog(SAMPLE / "trajectories.h5") as log:
        longest = max(kept_count(e, clip_stride(e, 120)) for e in map(log.episode, result.episodes))
    assert len(result.episodes) == 4 and len(frames) == result.frames == 15 + longest + 30
    assert 110 < longest <= 120  # the longest episode, sped up to fill the 4 s clip
    assert frames[0].shape == (720, 1280, 3)  # the full overlay's canvas
    screen = CellScreen(1280, 720, 2, 2, ["NOOP", "FIRE", "RIGHT", "LEFT"])
    middle = frames[15 + 60]
    for layout in screen.layouts:
        assert _shows_breakout(middle[layout.game.slices])
        bar = middle[layout.lines[3].slices].astype(int)
        assert (np.abs(bar - PALETTE.accent).max(axis=-1) < 40).any()  # the chosen action's probability bar
    sidecar = json.loads(output.with_name("grid.mp4.json").read_text())
    assert sidecar["layout"] == "grid" and all(lag == 0 for lag in sidecar["checkpoints"].values())


@pytest.mark.slow
def test_the_default_progression_of_the_sample_run_lasts_under_two_minutes(tmp_path: Path) -> None:
    """The default product settings (sequential, 3 milestones, their best episodes, 30 s clips) on the raw
    overlay: the durations do not depend on the overlay, only the time to render does."""
    source = RenderSource.resolve(run=SAMPLE, log=None, checkpoint=None)
    output = tmp_path / "progression.mp4"
    result = render_progression(source, output, overlay=OverlayConfig(kind="raw"), video=TINY)
    frames = decode_video(output)
    seconds = len(frames) / TINY.fps
    with TrajectoryLog(SAMPLE / "trajectories.h5") as log:
        clips = [log.episode(i) for i in result.episodes]
    assert [e.policy_versions[0] for e in clips] == [0, 489, 977]
    assert len(frames) == result.frames == sum(60 + e.length + 1 for e in clips) + 150  # cards, clips, closing
    assert 40 < seconds <= 120, seconds
    assert not _drawn(frames[0][:60]).any() and _shows_breakout(frames[60][:420])  # a card, then the game
    assert _is_highlight(frames[-1]).sum() > 50  # the closing card's marks


@pytest.mark.slow
def test_the_default_timelapse_shows_the_learning_arc_with_the_runs_best_episode(tmp_path: Path) -> None:
    source = RenderSource.resolve(run=SAMPLE, log=None, checkpoint=None)
    output = tmp_path / "timelapse.mp4"
    product = TimelapseProductConfig(target_duration=10)
    result = render_timelapse(source, output, product=product, overlay=OverlayConfig(kind="raw"), video=TINY)
    frames = decode_video(output)
    assert 1662 in result.episodes and len(result.episodes) == 24 and len(frames) == result.frames
    assert SelectionConfig().kind == "highlights"
    with TrajectoryLog(SAMPLE / "trajectories.h5") as log:
        shown = [log.episode(i).total_reward for i in result.episodes]
        curve = LearningCurve.of(log.episodes, TrainingSchedule.from_metadata(log.metadata))
    # a learning arc: the last quarter well above the first (the sample's agent scores 20 within a tenth of training)
    assert np.mean(shown[-6:]) > 1.5 * np.mean(shown[:6]) and shown[0] < min(shown[-6:])
    strip = CaptionedOverlay(RawOverlay(2), curve)
    positions = []
    for frame in frames[:: len(frames) // 8]:
        assert _drawn(frame[strip.text.slices]).any()
        columns = np.flatnonzero(_is_highlight(frame[strip.band.slices]).any(axis=0))
        positions.append(columns.mean())
    assert positions == sorted(positions)  # the marker moves on with training
    sidecar = json.loads(output.with_name("timelapse.mp4.json").read_text())
    assert sidecar["frame_stride"] == sidecar["episodes"][0]["frame_stride"] > 1
