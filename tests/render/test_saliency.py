"""Perturbation saliency on the sample run's real observations and its last checkpoint, and the overlay that
draws it over a game frame."""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np
import pytest
import torch
from helpers import ROOT

from render.draw.saliency import saliency_overlay
from render.saliency import SaliencyProbe, SaliencySettings, patch_centres, saliency_scale
from replay import TrajectoryLog
from replay.train.checkpoints import CheckpointIndex, load_policy

SAMPLE = ROOT / "data" / "sample" / "breakout"
STEPS = (8, 12)  # steps of the evaluation episode whose observations are used: the ball is in play


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """One torch thread, as the renderer runs: batch-1 passes on two threads wait on a busy core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def played() -> tuple[SaliencyProbe, np.ndarray, np.ndarray]:
    """A probe on the last checkpoint, and observations and frames of an evaluation episode it played."""
    checkpoints = CheckpointIndex(SAMPLE / "checkpoints")
    model, ref = load_policy(checkpoints.ref(checkpoints.versions[-1]).path)
    with TrajectoryLog(SAMPLE / "trajectories.h5") as log:
        episode = next(e for e in log.episodes if e.tag == "eval" and e.policy_versions == (ref.policy_version,))
        steps = list(log.replay(episode.index, *STEPS))
    observations = np.stack([step.observation for step in steps])
    frames = np.stack([step.frame for step in steps])
    return SaliencyProbe(model), observations, frames


@pytest.fixture(scope="module")
def real_maps(played) -> tuple[np.ndarray, np.ndarray]:
    probe, observations, _ = played
    return probe.maps(observations)


def test_maps_of_real_observations_are_finite_non_negative_and_observation_sized(played, real_maps) -> None:
    probe, observations, _ = played
    policy, value = real_maps
    for saliency in (policy, value):
        assert saliency.shape == (len(observations), 84, 84) and saliency.dtype == np.float32
        assert np.isfinite(saliency).all() and saliency.min() >= 0.0
        assert (saliency.reshape(len(observations), -1).max(axis=1) > 0).all()
    empty = probe.maps(np.zeros((0, 4, 84, 84), np.uint8))
    assert [m.shape for m in empty] == [(0, 84, 84), (0, 84, 84)]


def test_maps_interpolate_the_scores_of_the_patch_grid(played, real_maps) -> None:
    probe, observations, _ = played
    assert probe.grid == 14 and len(probe.centres) == 14  # the default stride, 6
    for grids, saliency in zip(probe.grid_scores(observations), real_maps, strict=True):
        assert grids.shape == (len(observations), 14, 14)
        lowest, highest = grids.min(axis=(1, 2)), grids.max(axis=(1, 2))
        assert (saliency.min(axis=(1, 2)) >= lowest - 1e-6).all()
        assert (saliency.max(axis=(1, 2)) <= highest * (1 + 1e-5)).all()
        assert (saliency.max(axis=(1, 2)) >= 0.8 * highest).all()  # centres lie half a pixel off the nearest pixels


def test_frames_batched_together_get_the_maps_they_get_one_by_one(played) -> None:
    probe, observations, _ = played
    together = SaliencyProbe(probe.model, SaliencySettings(batch_size=256)).maps(observations[:2])
    alone = SaliencyProbe(probe.model, SaliencySettings(batch_size=1))
    one_by_one = [alone.maps(observations[i : i + 1]) for i in range(2)]
    for kind in range(2):
        expected = np.concatenate([maps[kind] for maps in one_by_one])
        np.testing.assert_allclose(together[kind], expected, rtol=1e-4, atol=1e-6 * expected.max())


@pytest.mark.parametrize("level", [0, 87, 255])
def test_a_constant_observation_has_exactly_zero_saliency(played, level: int) -> None:
    probe, _, _ = played
    policy, value = probe.maps(np.full((1, 4, 84, 84), level, np.uint8))  # its blur is itself
    assert not policy.any() and not value.any()


def test_the_policy_looks_at_the_ball_and_paddle_not_at_the_empty_band_above_the_bricks(played, real_maps) -> None:
    _, observations, _ = played
    policy, _ = real_maps
    for observation, saliency in zip(observations, policy, strict=True):
        moving = np.zeros((84, 84), np.uint8)
        # ball and paddle, below the bricks and between the walls, in any of the stacked frames the network sees
        moving[38:80, 6:78] = (observation[:, 38:80, 6:78] > 0).any(axis=0)
        near = cv2.dilate(moving, np.ones((13, 13), np.uint8)).astype(bool)
        empty_band = saliency[13:21, 8:76]  # black rows between the top wall and the bricks
        assert saliency[near].max() == saliency.max()
        assert saliency[near].max() > 10 * empty_band.max()


@pytest.mark.parametrize("corner", [(18, 20), (60, 62)])
def test_one_bright_object_on_black_is_salient_around_it_and_nowhere_far(played, corner: tuple[int, int]) -> None:
    probe, _, _ = played
    y, x = corner
    observation = np.zeros((1, 4, 84, 84), np.uint8)
    observation[:, :, y : y + 2, x : x + 2] = 200
    rows, columns = np.mgrid[:84, :84]
    distance = np.hypot(rows - (y + 0.5), columns - (x + 0.5))
    for saliency in probe.maps(observation):
        peak = np.unravel_index(saliency[0].argmax(), (84, 84))
        assert distance[peak] <= probe.settings.stride
        # only patches whose mask (4 sigma) reaches what the blur changed (3 blur sigmas) score, interpolated
        # over one stride
        reach = 4 * probe.settings.sigma + 3 * probe.settings.blur + probe.settings.stride + 3
        assert not saliency[0][distance > reach].any()


def test_patch_centres_cover_the_observation_symmetrically() -> None:
    for stride in (1, 5, 6, 7, 12, 84):
        centres = patch_centres(84, stride)
        assert len(centres) == -(-84 // stride)
        assert np.allclose(centres + centres[::-1], 83) and 0 <= centres[0] < stride


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("stride", 0, "stride"),
        ("stride", 6.5, "stride"),
        ("stride", 85, "stride"),
        ("sigma", -1.0, "sigma"),
        ("blur", float("nan"), "blur"),
        ("batch_size", 0, "batch_size"),
    ],
)
def test_settings_refuse_bad_values_naming_them(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=f"{message}.*{value}"):
        SaliencySettings(**{field: value})


def test_maps_refuse_what_is_not_a_batch_of_uint8_observations(played) -> None:
    probe, observations, _ = played
    for wrong in (observations[0], observations.astype(np.float32), observations[:, :, :80]):
        with pytest.raises(ValueError, match="expected uint8 observations"):
            probe.maps(wrong)


def test_the_overlay_colours_policy_and_value_saliency_and_leaves_the_rest_of_the_frame(played) -> None:
    _, _, frames = played
    frame = frames[0]
    zero = np.zeros((84, 84), np.float32)
    untouched = saliency_overlay(frame, zero, zero, 1.0)
    assert untouched.shape == frame.shape and untouched.dtype == np.uint8
    assert untouched is not frame and np.array_equal(untouched, frame)
    hot = zero.copy()
    hot[:, 42:] = 5.0  # the right half, above the scale
    for policy, value, more, less in ((hot, zero, 2, 0), (zero, hot, 0, 2)):
        shown = saliency_overlay(frame, policy, value, (2.0, 2.0)).astype(int)
        np.testing.assert_array_equal(shown[:, :75], frame[:, :75])  # the left part, away from the map's edge
        gain = (shown[:, 85:] - frame[:, 85:]).mean(axis=(0, 1))
        assert gain[more] > 100 and gain[more] > 2 * gain[less]
    half = saliency_overlay(frame, hot / 5.0, zero, 2.0).astype(int) - frame  # half the scale: about half the gain
    full = saliency_overlay(frame, hot, zero, 2.0).astype(int) - frame
    black = (frame[:, 85:] == 0).all(axis=-1)
    assert np.all(np.abs(half[:, 85:][black] - full[:, 85:][black] / 2) <= 1)


def test_the_overlay_refuses_a_frame_that_is_not_rgb_and_a_scale_that_is_not_positive() -> None:
    zero = np.zeros((84, 84), np.float32)
    with pytest.raises(ValueError, match="RGB uint8 frame"):
        saliency_overlay(np.zeros((210, 160), np.uint8), zero, zero, 1.0)
    with pytest.raises(ValueError, match="value scale"):
        saliency_overlay(np.zeros((210, 160, 3), np.uint8), zero, zero, (1.0, 0.0))


def test_the_scale_is_a_high_percentile_of_the_maps_and_never_zero() -> None:
    maps = np.linspace(0.0, 1.0, 1001, dtype=np.float32).reshape(1, 7, 143)
    assert saliency_scale(maps, percentile=99.0) == pytest.approx(0.99)
    sparse = np.zeros((4, 84, 84), np.float32)
    sparse[0, 3, 3] = 0.25
    assert saliency_scale(sparse) == 0.25  # the percentile is 0: the maximum
    assert saliency_scale(np.zeros((2, 84, 84), np.float32)) == 1.0


@pytest.mark.slow  # in the slow suite, for the fast suite's 5 minutes on the slower machines
def test_the_full_overlay_blends_the_saliency_over_the_game_and_nothing_else() -> None:
    from render import RenderSource, render_still
    from render.config import OverlayConfig
    from render.draw.overlays import FullLayout
    from render.errors import RenderConfigError

    source = RenderSource.resolve(run=SAMPLE, log=None, checkpoint=None)
    with TrajectoryLog(SAMPLE / "trajectories.h5") as log:
        index = min((e for e in log.episodes if e.tag == "eval"), key=lambda e: e.length).index
    plain = render_still(source, episode=index, step=STEPS[0], overlay=OverlayConfig())
    salient = render_still(source, episode=index, step=STEPS[0], overlay=OverlayConfig(saliency=True))
    game = FullLayout.fit(1280, 720, 4, 5).game
    assert (salient[game.slices].astype(int) - plain[game.slices]).min() >= 0  # colour added, never taken
    assert (salient[game.slices] != plain[game.slices]).any(axis=2).mean() > 0.05
    outside = np.ones(plain.shape[:2], bool)
    outside[game.slices] = False
    outside[: game.y] = False  # the header names the saliency's colours
    assert (salient[outside] == plain[outside]).all()
    with pytest.raises(RenderConfigError, match="overlay.saliency=true .* overlay=minimal runs no network"):
        OverlayConfig(kind="minimal", saliency=True)
