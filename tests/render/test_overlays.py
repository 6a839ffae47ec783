"""Overlays, panels and compositing on synthetic numpy data: no emulator, no network, no video."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import render.draw.kernels
from render.config import OverlayConfig
from render.draw.compose import Canvas, Rect, upscale_nearest
from render.draw.diagram import DiagramLayer, NetworkDiagram
from render.draw.overlays import FullOverlay, MinimalOverlay, RawOverlay, phase_line, short_number, title_card
from render.draw.style import Palette, Style, TextPainter, Typeface
from render.errors import RenderConfigError
from render.frame import CheckpointUse, FrameAnalytics, FrameContext

ACTIONS = ["NOOP", "FIRE", "RIGHT", "LEFT"]
LAYERS = [
    DiagramLayer("conv1", 32),
    DiagramLayer("conv2", 64),
    DiagramLayer("conv3", 64),
    DiagramLayer("fc", 32),
    DiagramLayer("policy", 4),
    DiagramLayer("value", 1),
]
ROWS = [("input", 4), ("conv1", 4), ("conv2", 4), ("conv3", 4)]


def _analytics(rng: np.random.Generator, hot: float | None = None) -> FrameAnalytics:
    levels = tuple(
        np.full(layer.size, hot, np.float32) if hot is not None else rng.random(layer.size, np.float32)
        for layer in LAYERS
    )
    maps = tuple(rng.integers(0, 256, (4, side, side), dtype=np.uint8) for side in (20, 9, 7))
    return FrameAnalytics(np.array([0.1, 0.2, 0.6, 0.1], np.float32), 0.5, levels, maps)


def _context(rng: np.random.Generator, **changes) -> FrameContext:
    fields = dict(
        frame=rng.integers(0, 256, (210, 160, 3), dtype=np.uint8),
        step=12,
        episode=3,
        episode_reward=7.0,
        action=2,
        policy_version=40,
        phase="Training",
        progress=0.375,
        learning_rate=2.5e-4,
        observation=rng.integers(0, 256, (4, 84, 84), dtype=np.uint8),
        analytics=_analytics(rng),
        value_history=np.linspace(-1, 1, 30, dtype=np.float32),
        checkpoint=CheckpointUse("v000038.pt", 38, 2),
    )
    fields.update(changes)
    return FrameContext(**fields)


@pytest.fixture(scope="module")
def full() -> FullOverlay:
    return FullOverlay("Breakout", ACTIONS, LAYERS, ROWS)


def test_upscale_nearest_repeats_every_pixel() -> None:
    image = np.random.default_rng(0).integers(0, 256, (210, 160, 3), dtype=np.uint8)
    expected = image.repeat(3, axis=0).repeat(3, axis=1)
    np.testing.assert_array_equal(upscale_nearest(image, 3), expected)
    with pytest.raises(ValueError, match="positive integer scale, got 0"):
        upscale_nearest(image, 0)


def test_raw_overlay_is_the_upscaled_frame() -> None:
    context = _context(np.random.default_rng(1))
    image = RawOverlay(4).render(context)
    assert image.shape == (840, 640, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, upscale_nearest(context.frame, 4))


def test_raw_overlay_progress_bar_only_touches_the_bottom_rows() -> None:
    context = _context(np.random.default_rng(2), progress=0.5)
    overlay = RawOverlay(2, progress_bar=True)
    image = overlay.render(context)
    plain = upscale_nearest(context.frame, 2)
    np.testing.assert_array_equal(image[:-3], plain[:-3])
    accent = np.array(Style().palette.accent, np.uint8)
    assert (image[-1, :150] == accent).all() and not (image[-1, 170:] == accent).all(axis=-1).any()


def test_full_overlay_size_and_game_region(full: FullOverlay) -> None:
    context = _context(np.random.default_rng(3))
    image = full.render(context)
    assert image.shape == (720, 1280, 3) and image.dtype == np.uint8
    assert full.scale == 3
    game = image[full.layout.game.slices]
    np.testing.assert_array_equal(game, upscale_nearest(context.frame, 3))


def test_full_overlay_redraw_depends_only_on_the_current_frame(full: FullOverlay) -> None:
    """The persistent canvas must not leak anything from the previous frame into the next."""
    rng = np.random.default_rng(4)
    first, second = _context(rng), _context(rng, action=0, episode_reward=123.0, progress=0.9)
    expected = full.render(second).copy()
    full.render(first)
    np.testing.assert_array_equal(full.render(second), expected)


def test_full_overlay_fresh_instance_matches_reused_one(full: FullOverlay) -> None:
    context = _context(np.random.default_rng(5))
    for _ in range(3):
        full.render(_context(np.random.default_rng(6)))
    fresh = FullOverlay("Breakout", ACTIONS, LAYERS, ROWS)
    np.testing.assert_array_equal(full.render(context), fresh.render(context))


def test_full_overlay_without_analytics_says_what_is_missing(full: FullOverlay) -> None:
    with pytest.raises(ValueError, match="needs network analytics for episode 3 step 12"):
        full.render(_context(np.random.default_rng(7), analytics=None))


def test_network_nodes_light_up_with_activation() -> None:
    rect = Rect(0, 0, 300, 200)
    diagram = NetworkDiagram(rect, LAYERS, Palette(), TextPainter(Typeface(), 720))
    template = np.zeros((200, 300, 3), np.uint8)
    diagram.draw_static(template)
    diagram.bind(template)
    cold, hot = template.copy(), template.copy()
    diagram.draw(cold, [np.zeros(layer.size) for layer in LAYERS])
    diagram.draw(hot, [np.ones(layer.size) for layer in LAYERS])
    changed = (hot != cold).any(axis=-1)
    assert changed.sum() > diagram.node_count * 4  # every node paints several pixels
    assert hot[changed].astype(int).sum() > cold[changed].astype(int).sum() * 2
    with pytest.raises(ValueError, match="expected 6 level arrays"):
        diagram.draw(hot, [np.ones(4)])


def test_diagram_reports_its_columns_grouped_where_converting_them_together_costs_less(full: FullOverlay) -> None:
    """The diagram's damage: every column box inside one reported rectangle, the narrow neighbours merged (at
    1280x720, conv1..fc in one, policy and value in another), and the encoder's conversion of the groups cheaper
    than of the boxes one by one."""
    from render.draw.compose import conversion_cost

    boxes, groups = full.diagram.boxes, full.diagram._damage
    assert len(groups) == 2 < len(boxes) == 6
    for box in boxes:
        assert (
            sum(g.x <= box.x and box.right <= g.right and g.y <= box.y and box.bottom <= g.bottom for g in groups) == 1
        )
    assert sum(map(conversion_cost, groups)) < sum(map(conversion_cost, boxes))


def test_vectorised_nodes_match_one_circle_per_node() -> None:
    rect = Rect(0, 0, 400, 300)
    diagram = NetworkDiagram(rect, LAYERS, Palette(), TextPainter(Typeface(), 720))
    template = np.zeros((300, 400, 3), np.uint8)
    diagram.draw_static(template)
    diagram.bind(template)
    levels = [np.random.default_rng(11).random(layer.size) for layer in LAYERS]
    fast, reference = template.copy(), template.copy()
    diagram.draw(fast, levels)
    diagram.draw_circles(reference, levels)
    centres, _ = diagram.nodes
    x, y = np.rint(centres).astype(int).T
    np.testing.assert_array_equal(fast[y, x], reference[y, x])  # node centres: exactly the node colour
    assert np.abs(fast.astype(int) - reference.astype(int)).mean() < 1.0  # rims differ by antialiasing only


def test_node_kernel_writes_the_bytes_of_numpy_scatter_and_blend(full: FullOverlay) -> None:
    # the compiled kernel against the NumPy formulation it replaced: inner pixels take the node's colour, rim
    # pixels background * (1 - coverage) + colour * coverage in float32, truncated
    diagram = full.diagram
    inner_pixels, inner_nodes, rim_pixels, rim_nodes, coverage, background = diagram._pixels
    assert len(inner_pixels) > 1000 and len(rim_pixels) > 1000
    rng = np.random.default_rng(12)
    levels = [rng.random(layer.size) for layer in diagram.layers]
    image = full._canvas.template.copy()
    diagram.draw(image, levels)
    shades = np.clip(diagram._levels(levels) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    colours = diagram._ramp[shades]
    expected = full._canvas.template.copy().reshape(-1, 3)
    expected[inner_pixels] = colours[inner_nodes]
    expected[rim_pixels] = (background + colours[rim_nodes] * coverage[:, None]).astype(np.uint8)
    np.testing.assert_array_equal(image.reshape(-1, 3), expected)
    with pytest.raises(ValueError, match="shaped like the template"):  # the kernel checks no bounds itself
        diagram.draw(np.zeros((full.height // 2, full.width, 3), np.uint8), levels)


def test_the_kernels_compile_where_no_cache_folder_is_writable(tmp_path: Path) -> None:
    # a read-only install and home (a container image, a service account): numba cannot cache, and refused to
    # compile at import ("no locator available"), so even `python -m render --help` failed
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) for a read-only mount")
    shutil.copy(Path(render.draw.kernels.__file__), tmp_path / "kernels.py")
    script = (
        "import numpy as np, kernels; image = np.zeros((4, 4, 3), np.uint8); "
        "kernels.paint_thumbnails(image, np.full((1, 2, 2), 7, np.uint8), np.zeros((256, 3), np.uint8), True, 0, "
        "np.zeros(1, np.int32), np.array([0, 1], np.int32), np.array([0, 1], np.int32)); print(int(image.sum()))"
    )
    readonly = f"mount --bind {tmp_path} {tmp_path} && mount -o remount,ro,bind {tmp_path}"
    env = {**os.environ, "HOME": str(tmp_path / "home"), "PYTHONPATH": str(tmp_path)}
    env.pop("NUMBA_CACHE_DIR", None)
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"{readonly} && touch {tmp_path}/x"], capture_output=True)
    if b"Read-only" not in probe.stderr:
        pytest.skip(f"no read-only mount here: {probe.stderr.decode()[-200:]}")
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", f"{readonly} && {sys.executable} -c '{script}'"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == str(7 * 3 * 4)
    assert not list(tmp_path.glob("**/*.nbi"))  # nothing could be cached


def test_policy_bars_follow_the_probabilities(full: FullOverlay) -> None:
    rng = np.random.default_rng(8)
    bars = full.bars
    analytics = _analytics(rng)
    for taken, probabilities in ((0, [1.0, 0, 0, 0]), (3, [0, 0, 0, 1.0])):
        changed = FrameAnalytics(np.array(probabilities, np.float32), 0.0, analytics.levels, analytics.feature_maps)
        image = full.render(_context(rng, analytics=changed, action=taken))
        highlight = np.array(Style().palette.highlight, np.uint8)
        rows = [
            (image[bars._row_top(i) + 1, bars._track.x : bars._track.right] == highlight).all(-1).mean()
            for i in range(4)
        ]
        assert rows[taken] == pytest.approx(1.0) and sum(rows) == pytest.approx(1.0)


def test_minimal_overlay_is_16_9_with_no_empty_quarter() -> None:
    rewards = np.zeros(40)
    rewards[[5, 20, 30]] = 1.0
    context = _context(np.random.default_rng(9), analytics=None, rewards=rewards, episode_length=40)
    overlay = MinimalOverlay("Breakout", ACTIONS, 2, panel_width=300)
    image = overlay.render(context)
    assert image.shape == (420, 748, 3)  # 16:9 at the game's height, rounded to even
    np.testing.assert_array_equal(image[:, :320], upscale_nearest(context.frame, 2))
    background = np.array(Style().palette.background, np.uint8)
    panel = image[:, 320:]
    for rows in (slice(0, 210), slice(210, 420)):  # text above, the return chart below: no empty half
        for cols in (slice(0, 214), slice(214, 428)):
            assert (panel[rows, cols] != background).any(axis=2).mean() > 0.02, (rows, cols)


def test_canvas_refuses_rectangles_outside_the_template() -> None:
    canvas = Canvas(np.zeros((10, 10, 3), np.uint8))
    canvas.begin()
    with pytest.raises(ValueError, match="outside the 10x10 canvas"):
        canvas.changed("part", 1, [Rect(5, 5, 10, 2)])


def test_phase_line_says_the_learning_rate_legibly_and_not_on_evaluation_frames() -> None:
    context = _context(np.random.default_rng(10))
    assert phase_line(context) == "Training episode 3  -  learning rate 2.5e-4"
    assert phase_line(_context(np.random.default_rng(10), phase="Evaluation")) == "Evaluation episode 3"
    assert [short_number(v) for v in (1.7e-4, 0.5, 3e-5, 0.0025)] == ["1.7e-4", "0.5", "3.0e-5", "0.0025"]


@pytest.mark.parametrize("size", [(1280, 720), (854, 480)])
def test_a_long_checkpoint_note_leaves_the_phase_line_untouched(size: tuple[int, int]) -> None:
    # a fallback's reason lengthens the right-hand line: it shrinks into the room the phase line leaves
    overlay = FullOverlay("Breakout", ACTIONS, LAYERS, ROWS, width=size[0], height=size[1])
    note = "not exact (CPU AVX2 here, AVX512 in training)"
    noted = _context(np.random.default_rng(11), checkpoint=CheckpointUse("v000038.pt", 38, 2, note))
    bare = _context(np.random.default_rng(11), checkpoint=None)
    subtitle = overlay.layout.subtitle
    with_note, without = (overlay.render(c)[subtitle.slices].astype(int) for c in (noted, bare))
    phase = overlay.painter.width(phase_line(bare), 16)
    assert np.array_equal(with_note[:, : phase + 4], without[:, : phase + 4]), "the note runs over the phase line"
    assert np.abs(with_note - without)[:, phase + 4 :].sum() > 0, "the note is drawn"


def test_title_card_is_centred_text_on_background() -> None:
    card = title_card(640, 360, ["10% - 100k steps - return 7", "Breakout"])
    background = np.array(Style().palette.background, np.uint8)
    assert card.shape == (360, 640, 3)
    assert (card[:40] == background).all() and not (card[150:210] == background).all()


def test_title_card_text_fits_a_narrow_video() -> None:
    """The raw overlay at video.scale=2 is 320 pixels wide: the card's lines shrink instead of running off it."""
    background = np.array(Style().palette.background, np.uint8)
    for width in (320, 160):
        card = title_card(width, 420, ["100% - 1M steps - return 19", "Breakout evaluation, episode 2078"])
        ink = np.flatnonzero((card != background).any(axis=2).any(axis=0))
        assert ink.size and ink[0] > 0 and ink[-1] < width - 1, (width, ink[0], ink[-1])


def test_palette_ramp_runs_from_cold_to_hot() -> None:
    palette = Palette()
    ramp = palette.ramp()
    assert ramp.shape == (256, 3) and tuple(ramp[0]) == palette.node_cold and tuple(ramp[-1]) == palette.node_hot


def test_full_overlay_rejects_a_canvas_too_small() -> None:
    with pytest.raises(ValueError, match="too small"):
        FullOverlay("Breakout", ACTIONS, LAYERS, ROWS, width=320, height=180)


def _sequence(rng: np.random.Generator, n: int = 16) -> list[FrameContext]:
    """Contexts as an episode gives them: the game changes in a few places a frame (sometimes nowhere),
    the policy sometimes repeats itself, progress and reward move now and then."""
    frame = rng.integers(0, 256, (210, 160, 3), dtype=np.uint8)
    analytics, contexts = _analytics(rng), []
    observation = rng.integers(0, 256, (4, 84, 84), dtype=np.uint8)
    for step in range(n):
        frame = frame.copy()
        for _ in range(int(rng.integers(0, 3))):
            y, x = int(rng.integers(0, 205)), int(rng.integers(0, 155))
            frame[y : y + int(rng.integers(1, 6)), x : x + int(rng.integers(1, 6))] = rng.integers(0, 256, 3)
        if rng.random() < 0.6:
            analytics = _analytics(rng)
        if step % 3:
            observation = np.roll(observation, 1, axis=0)
        contexts.append(
            _context(
                rng,
                frame=frame,
                step=step,
                episode_reward=float(step // 5),
                progress=0.3 + 0.01 * ((step // 3) % 3),  # moves back too (a time-lapse of eval episodes)
                analytics=analytics,
                observation=observation,
                value_history=np.linspace(-1, 1, 30, dtype=np.float32) + step // 2,
            )
        )
    return contexts


def _changed_outside(previous: np.ndarray, image: np.ndarray, damage: tuple[Rect, ...]) -> int:
    covered = np.zeros(image.shape[:2], bool)
    for rect in damage:
        covered[rect.slices] = True
    return int(((previous != image).any(axis=-1) & ~covered).sum())


@pytest.mark.parametrize("kind", ["full", "minimal", "raw"])
def test_incremental_render_equals_a_full_redraw_and_damage_covers_every_change(kind: str) -> None:
    """Redrawing only what changed must give the very bytes of drawing everything anew, and every pixel that
    differs from the previous frame must lie in the reported damage (the encoder converts only that)."""

    def make():
        if kind == "full":
            return FullOverlay("Breakout", ACTIONS, LAYERS, ROWS)
        if kind == "minimal":
            return MinimalOverlay("Breakout", ACTIONS, 2, panel_width=300)
        return RawOverlay(2, progress_bar=True)

    overlay, previous, skipped = make(), None, 0
    contexts = _sequence(np.random.default_rng(12))
    for k, context in enumerate(contexts):
        if kind != "full":
            context = dataclasses.replace(context, analytics=None)
        image = overlay.render(context)
        if kind == "full":
            reference = overlay._canvas.template.copy()
            overlay.draw_dynamic(reference, context)
        else:
            reference = make().render(context)
        np.testing.assert_array_equal(image, reference, err_msg=f"{kind} frame {k}")
        damage = overlay.damage()
        if previous is None:
            assert damage is None
        else:
            assert _changed_outside(previous, image, damage) == 0, f"{kind} frame {k}: change outside damage"
            skipped += image.size // 3 - sum(r.w * r.h for r in damage)
        previous = image.copy()
    assert skipped > 0  # something was left alone


def test_raw_progress_bar_over_a_changing_game_follows_progress_back_and_forth() -> None:
    """The raw overlay's bar lies over the game's bottom rows: redrawn there when the game changes under it, and
    still redrawn when progress then returns to an earlier value."""
    rng = np.random.default_rng(13)
    first = _context(rng, progress=0.2)
    bottom = first.frame.copy()
    bottom[-1] = 255 - bottom[-1]
    moved = dataclasses.replace(first, frame=bottom, progress=0.6)
    sequence = [first, first, moved, dataclasses.replace(first, frame=bottom)]
    overlay = RawOverlay(2, progress_bar=True)
    for k, context in enumerate(sequence):
        image = overlay.render(context)
        np.testing.assert_array_equal(image, RawOverlay(2, progress_bar=True).render(context), err_msg=f"frame {k}")


def test_feature_map_rows_land_in_their_cells_at_the_image_edge_too() -> None:
    # rows are copied in one strided copy when the row's span (cells and the gaps after them) fits the image,
    # cell by cell where the last gap would cross the right edge: both must give the same cells
    from render.draw.panels import FeatureMaps

    style = Style()
    painter = TextPainter(style.typeface, 720)
    maps = FeatureMaps(Rect(10, 10, 300, 200), [("input", 4), ("conv1", 3)], style.palette, painter)
    rng = np.random.default_rng(0)
    stacks = (rng.integers(0, 256, (4, 84, 84), np.uint8), rng.integers(0, 256, (3, 20, 20), np.uint8))
    wide = np.zeros((240, 400, 3), np.uint8)
    maps.draw(wide, stacks)
    edge = max(row[-1].right for row in maps._cells) + 2  # the last gap does not fit
    narrow = np.zeros((240, edge, 3), np.uint8)
    maps.draw(narrow, stacks)
    assert np.array_equal(narrow, wide[:, :edge])
    ramp, size = style.palette.ramp().reshape(256, 3), maps._cell
    for cells, stack, grey in zip(maps._cells, stacks, (True, False), strict=True):
        shown = maps._visible(stack) if grey else stack  # input frames made legible first
        for cell, feature_map in zip(cells, shown, strict=True):  # each cell shows its own map, enlarged
            shade = cv2.resize(feature_map, (size, size), interpolation=cv2.INTER_NEAREST)
            assert np.array_equal(wide[cell.slices], np.repeat(shade[..., None], 3, -1) if grey else ramp[shade])
    assert not wide[:, edge:].any()  # nothing beyond the cells
    # strided stacks (the network's thumbnails are views into a batch) paint the same cells
    views = (stacks[0].transpose(0, 2, 1).copy().transpose(0, 2, 1), np.repeat(stacks[1], 2, 0)[::2])
    assert not any(view.flags.c_contiguous for view in views)
    strided = np.zeros_like(wide)
    maps.draw(strided, views)
    np.testing.assert_array_equal(strided, wide)
    with pytest.raises(ValueError, match="uint8 stack"):
        maps.draw(wide, (stacks[0].astype(np.float32), stacks[1]))
    with pytest.raises(ValueError, match="at least"):  # the kernel checks no bounds itself
        maps.draw(np.zeros((240, edge - 3, 3), np.uint8), stacks)


def test_input_frames_keep_a_small_ball_visible_at_thumbnail_size() -> None:
    from render.draw.panels import FeatureMaps

    style = Style()
    maps = FeatureMaps(Rect(0, 0, 300, 200), [("input", 4)], style.palette, TextPainter(style.typeface, 720))
    frames = np.zeros((4, 84, 84), np.uint8)
    frames[:, 60:62, 41:43] = 90  # a dim 2x2 ball, as in Breakout's grey observation
    image = np.zeros((200, 300, 3), np.uint8)
    maps.draw(image, (frames,))
    for cell in maps._cells[0]:
        assert image[cell.slices].max() == 255  # stretched to white, and not lost between sampled pixels
    # frames kept by content give, stack after shifted stack, the bytes a fresh panel computes
    frames = np.random.default_rng(4).integers(0, 200, (7, 84, 84), dtype=np.uint8)
    for start in range(4):
        fresh = FeatureMaps(Rect(0, 0, 300, 200), [("input", 4)], style.palette, TextPainter(style.typeface, 720))
        stack = frames[start : start + 4]
        assert maps._visible(stack).tobytes() == fresh._visible(stack).tobytes()


def test_a_feature_map_panel_outside_the_image_is_refused() -> None:
    from render.draw.panels import FeatureMaps

    style = Style()
    painter = TextPainter(style.typeface, 720)
    with pytest.raises(ValueError, match="starts outside the image"):  # the kernel would write before its rows
        FeatureMaps(Rect(-45, 10, 300, 200), [("input", 4), ("conv1", 3)], style.palette, painter)


@pytest.mark.parametrize("size", [(7, 7), (9, 9), (20, 20), (84, 84), (5, 11)])
def test_each_thumbnail_shows_its_own_map_enlarged_at_the_products_cell_size(full: FullOverlay, size) -> None:
    # at 720p a cell is 50 pixels: one nearest-neighbour resize of a row's maps side by side (the code before
    # the kernel) put a neighbour's last column at the left edge of 7x7 maps
    maps = full.maps
    stacks = tuple(np.random.default_rng(3).integers(0, 256, (count, *size), np.uint8) for _, count in maps.rows)
    image = full._canvas.template.copy()
    maps.draw(image, stacks)
    ramp = Style().palette.ramp().reshape(256, 3)
    for cells, stack, grey in zip(maps._cells, stacks, maps._grey, strict=True):
        for cell, feature_map in zip(cells, maps._visible(stack) if grey else stack, strict=True):
            shade = cv2.resize(feature_map, (cell.w, cell.h), interpolation=cv2.INTER_NEAREST)
            np.testing.assert_array_equal(
                image[cell.slices], np.repeat(shade[..., None], 3, -1) if grey else ramp[shade]
            )


@pytest.mark.parametrize("width", [160, 7])  # rows compared as 8-byte words (480 bytes), or byte by byte (21)
def test_game_view_redraws_exactly_the_changed_pixels_and_reports_them(width: int) -> None:
    from render.draw.compose import GameView

    rng = np.random.default_rng(21)
    scale, rect = 3, Rect(5, 4, width * 3, 60 * 3)
    view = GameView(rect, scale)
    image = np.zeros((rect.bottom + 3, rect.right + 2, 3), np.uint8)
    frame = rng.integers(0, 256, (60, width, 3), dtype=np.uint8)
    assert view.draw(image, frame) == (rect,)
    for k in range(40):
        frame = frame.copy()
        for _ in range(int(rng.integers(0, 4))):  # a few specks and blocks, a single byte now and then
            y, x = int(rng.integers(0, 60)), int(rng.integers(0, width))
            if rng.random() < 0.3:
                frame[y, x, int(rng.integers(0, 3))] ^= 1
            else:
                frame[y : y + int(rng.integers(1, 8)), x : x + int(rng.integers(1, 4))] = rng.integers(0, 256, 3)
        previous = image.copy()
        damage = view.draw(image, frame)
        expected = previous.copy()
        expected[rect.slices] = upscale_nearest(frame, scale)
        np.testing.assert_array_equal(image, expected, err_msg=f"frame {k}")
        assert _changed_outside(previous, image, damage) == 0, f"frame {k}: change outside damage"
        assert all(r.within(image.shape[1], image.shape[0]) and r.x >= rect.x and r.right <= rect.right for r in damage)


def test_feature_map_rows_that_shrink_and_grow_redraw_like_a_fresh_template() -> None:
    # a full row paints every cell, so it skips restoring the template; a shorter row must still clear the
    # cells the longer one painted
    from render.draw.panels import FeatureMaps

    style = Style()
    painter = TextPainter(style.typeface, 720)
    maps = FeatureMaps(Rect(10, 10, 300, 200), [("input", 4), ("conv1", 3)], style.palette, painter)
    template = np.zeros((240, 400, 3), np.uint8)
    maps.draw_static(template)
    canvas = Canvas(template)
    rng = np.random.default_rng(5)
    for k, counts in enumerate([(4, 3), (4, 3), (2, 3), (4, 1), (4, 3), (0, 3), (4, 3)]):
        stacks = (
            rng.integers(0, 256, (counts[0], 84, 84), np.uint8),
            rng.integers(0, 256, (counts[1], 20, 20), np.uint8),
        )
        image = canvas.begin()
        maps.draw(image, stacks, canvas.changed)
        reference = template.copy()
        maps.draw(reference, stacks)
        np.testing.assert_array_equal(image, reference, err_msg=f"frame {k} with {counts} maps")


# The longest values each stats row shows in practice: a 27k-step episode, a 10k-update run.
WIDEST_STATS = ("99999 / 99999", "999999", "99999", "-9999", "update 9999")


def _ink(draw, height: int, width: int) -> tuple[int, int, int, int]:
    """The bounding box (top, bottom, left, right) of what ``draw(image)`` paints on a black image."""
    image = np.zeros((height, width, 3), np.uint8)
    draw(image)
    rows, cols = np.flatnonzero(image.any(axis=(1, 2))), np.flatnonzero(image.any(axis=(0, 2)))
    assert rows.size, "nothing was drawn"
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


@pytest.mark.parametrize(
    ("width", "height", "font_scale", "actions"),
    [
        (1280, 720, 1.0, ACTIONS),
        (1280, 720, 1.5, ACTIONS),
        (1280, 720, 1.2, ["UPRIGHTFIRE"] * 18),
        (960, 720, 1.5, ACTIONS),
        (1920, 1080, 1.5, ACTIONS),
        (854, 480, 1.25, ACTIONS),
    ],
)
def test_full_overlay_layout_makes_room_for_bigger_text(width, height, font_scale, actions) -> None:
    """At any font_scale the layout accepts, the parts stay apart and the longest texts are drawn whole: the ink
    of each, drawn unclipped where the overlay draws it, stays inside the rectangle the overlay clips it to."""
    style = Style(typeface=Typeface(scale=font_scale))
    overlay = FullOverlay("Breakout", actions, LAYERS, ROWS, width=width, height=height, style=style)
    layout, painter = overlay.layout, overlay.painter
    parts = [layout.game.inset(-2), layout.stats, layout.bars, layout.value, layout.diagram, layout.maps]
    header = Rect(0, 0, width, layout.progress.bottom)
    for i, a in enumerate([header, *parts]):
        assert a.within(width, height), a
        for b in [header, *parts][i + 1 :]:
            apart = a.right <= b.x or b.right <= a.x or a.bottom <= b.y or b.bottom <= a.y
            assert apart, (a, b)
    margin = layout.subtitle.x
    # title, then the progress line (clipped to its rectangle), above the progress bar
    title, title_size = overlay.title, overlay.title_size
    top, bottom, left, right = _ink(
        lambda im: painter.draw(im, title, layout.title, title_size, (255,) * 3, 700), height, width + 400
    )
    assert bottom <= layout.subtitle.y and right <= width - margin
    phase = "Training episode 99999  -  learning rate 2.5e-4"
    sub = layout.subtitle
    top, bottom, left, right = _ink(
        lambda im: painter.draw(im, phase, (sub.x, sub.y + painter.pixels(16)), 16, (255,) * 3), height, width
    )
    assert sub.y <= top and bottom <= sub.bottom <= layout.progress.y and right <= sub.right
    # every stats value within its cell
    stats = overlay.stats
    for row, (value, cell) in enumerate(zip(WIDEST_STATS, stats.cells, strict=True)):
        baseline = stats._baseline(row)
        top, bottom, left, right = _ink(
            lambda im, v=value, y=baseline, x=cell.x: painter.draw(im, v, (x, y), 17, (255,) * 3, 600), height, width
        )
        assert cell.y <= top and bottom <= cell.bottom and right <= cell.right, (value, cell, (top, bottom, right))
    # every action's name and percentage within its bar's row
    bars = overlay.bars
    for i, name in enumerate(actions):
        row_top = bars._top + i * bars._row
        baseline = bars._text_baseline(i)
        for text, x in ((name, bars.rect.x + 14), ("100%", bars._numbers.x + 6)):
            top, bottom, left, right = _ink(
                lambda im, t=text, x=x, y=baseline: painter.draw(im, t, (x, y), bars._size, (255,) * 3), height, width
            )
            assert row_top <= top and bottom <= row_top + bars._row + 1 and right <= bars.rect.right, (text, i)
        assert bars.rect.x + 14 + painter.width(name, bars._size) < bars._track.x
    # the value chart's labels end a space before their numbers begin (both bold)
    value = overlay.value
    for label, number in zip(value._labels, value._numbers, strict=True):
        baseline = number.y + painter.pixels(value._size)
        top, bottom, left, right = _ink(
            lambda im, t=label, y=baseline: painter.draw(im, t, (value.rect.x, y), value._size, (255,) * 3, 600),
            height,
            width,
        )
        assert right + painter.pixels(value._size) // 3 <= number.x, (right, number)
    overlay.render(_context(np.random.default_rng(0), checkpoint=CheckpointUse("v9999.pt", 9999, 999)))


def test_full_overlay_refuses_text_too_big_for_its_canvas() -> None:
    cases = (((1280, 720), 1.5, ["UP"] * 18, "no room for 18 policy bars"), ((640, 360), 3.0, ACTIONS, "too small"))
    for (width, height), font_scale, actions, problem in cases:
        style = Style(typeface=Typeface(scale=font_scale))
        with pytest.raises(
            ValueError, match=f"{width}x{height} .*{problem}.*font_scale {font_scale:g}.*smaller font_scale makes room"
        ):
            FullOverlay("Breakout", actions, LAYERS, ROWS, width=width, height=height, style=style)


@pytest.mark.parametrize(("scale", "font_scale"), [(2, 1.0), (4, 1.0), (4, 1.5), (3, 2.0)])
def test_minimal_overlay_panel_widens_to_fit_its_longest_text(scale, font_scale) -> None:
    game, actions = "MontezumaRevenge", ["NOOP", "UPRIGHTFIRE"]
    overlay = MinimalOverlay(game, actions, scale, style=Style(typeface=Typeface(scale=font_scale)))
    assert overlay.width >= 160 * scale + 360 and overlay.width % 2 == 0
    stats = overlay._stats
    painter = stats._painter
    longest = ("Evaluation", "99999 / 99999", "999999", "-99999", "UPRIGHTFIRE", "the initial network")
    for row, (value, cell) in enumerate(zip(longest, stats.cells, strict=True)):
        baseline = stats._baseline(row)
        top, bottom, left, right = _ink(
            lambda im, v=value, y=baseline, x=cell.x: painter.draw(im, v, (x, y), 17, (255,) * 3, 600),
            overlay.height,
            overlay.width + 400,
        )
        assert cell.y <= top and bottom <= cell.bottom and right <= cell.right <= overlay.width, (value, cell)
    image = overlay.render(_context(np.random.default_rng(2), analytics=None, action=1))
    assert image.shape == (210 * scale, overlay.width, 3)


def test_minimal_overlay_refuses_text_taller_than_the_game() -> None:
    with pytest.raises(
        ValueError, match="font_scale 3 need more height than video scale 2 gives .420 pixels; a smaller"
    ):
        MinimalOverlay("Breakout", ACTIONS, 2, style=Style(typeface=Typeface(scale=3.0)))


def test_full_overlay_shrinks_a_title_too_long_for_the_canvas() -> None:
    style = Style(typeface=Typeface(scale=1.5))
    short = FullOverlay("Pong", ACTIONS, LAYERS, ROWS, style=style)
    long = FullOverlay(
        "MontezumaRevenge",
        ACTIONS,
        LAYERS,
        ROWS,
        style=style,
        title="PPO Neural Activity Viewer - seed 7, 10M steps, ablation B",
    )
    assert short.title_size == 26.0 and long.title_size < 26.0
    margin = long.layout.title[0]
    image = np.zeros((long.height, long.width + 400, 3), np.uint8)
    long.painter.draw(image, long.title, long.layout.title, long.title_size, (255, 255, 255), 700)
    assert image.any() and not image[:, long.width - margin :].any()  # drawn unclipped: the ink ends in the margin


def test_a_font_that_is_no_font_file_is_refused_before_opencv_sees_it(tmp_path) -> None:
    """OpenCV's font face crashes the process (SIGSEGV) on a file that is not a font."""
    not_a_font = tmp_path / "notes.ttf"
    not_a_font.write_text("# not a font\n")
    with pytest.raises(RenderConfigError, match=r"overlay.font .*notes.ttf is not a TrueType/OpenType font"):
        OverlayConfig(font=str(not_a_font)).style()
    with pytest.raises(RenderConfigError, match=r"'/nonexistent.ttf' is neither a built-in face .* nor an existing"):
        OverlayConfig(font="/nonexistent.ttf").style()
    with pytest.raises(RenderConfigError, match="overlay.font_scale must be positive, got 0"):
        OverlayConfig(font_scale=0)


def test_the_minimal_overlay_is_even_wide_whatever_the_panel_width() -> None:
    """yuv420p needs an even width; an odd panel_width (or text width) is rounded up, not passed to the encoder."""
    assert [MinimalOverlay("Breakout", ACTIONS, 2, panel_width=w).width % 2 for w in (361, 362, 999)] == [0, 0, 0]
