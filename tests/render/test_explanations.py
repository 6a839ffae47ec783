"""``render.explain``: the network's reading of every frame of an episode, checked against a fresh forward pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import ROOT

import render
from replay import TrajectoryLog
from replay.train.checkpoints import CheckpointIndex, load_policy

SAMPLE = ROOT / "data" / "sample" / "breakout"
FIXTURE = ROOT / "tests" / "fixtures" / "legacy-trainer-stack.h5"


@pytest.fixture(scope="module")
def evaluation() -> tuple[int, int]:
    """The sample run's shortest evaluation episode and the version that played it."""
    with TrajectoryLog(SAMPLE / "trajectories.h5") as log:
        episode = min((e for e in log.episodes if e.tag == "eval"), key=lambda e: e.length)
    return episode.index, episode.policy_versions[0]


def test_an_evaluation_episode_is_explained_by_its_own_checkpoint_as_a_fresh_forward_pass(evaluation) -> None:
    index, version = evaluation
    frames = list(render.explain(SAMPLE, index))
    with TrajectoryLog(SAMPLE / "trajectories.h5") as log:
        episode = log.episode(index)
        observations = np.stack(list(log.observations(index)))
        actions = [step.action for step in log.replay(index, frames=False, observations=False)]
    assert len(frames) == episode.length + 1 and [f.step for f in frames] == list(range(episode.length + 1))
    assert [f.action for f in frames] == [*actions[1:], None]  # the action taken from each frame
    assert {f.policy_version for f in frames} == {version} == {f.checkpoint_version for f in frames}
    model, _ = load_policy(CheckpointIndex(SAMPLE / "checkpoints").ref(version).path)
    with torch.no_grad():
        logits, values = model(torch.from_numpy(observations))
    fresh = torch.softmax(logits, dim=-1).numpy()
    explained = np.stack([f.probabilities for f in frames])
    assert explained.dtype == np.float32 and explained.shape == (episode.length + 1, 4)
    np.testing.assert_allclose(explained, fresh, rtol=0, atol=1e-6)
    np.testing.assert_allclose([f.value for f in frames], values.numpy(), rtol=0, atol=1e-5)
    assert all(f.q_values is None for f in frames)


def test_start_and_stop_select_frames_as_replay_does(evaluation) -> None:
    index, _ = evaluation
    whole = list(render.explain(SAMPLE, index))
    part = list(render.explain(SAMPLE, index, start=5, stop=9))
    assert [f.step for f in part] == [5, 6, 7, 8]
    for a, b in zip(part, whole[5:9], strict=True):
        assert (a.step, a.action, a.policy_version) == (b.step, b.action, b.policy_version)
        np.testing.assert_allclose(a.probabilities, b.probabilities, rtol=0, atol=1e-6)
    assert [f.action for f in render.explain(SAMPLE, index, start=len(whole) - 1)] == [None]


def test_a_training_episode_names_the_checkpoint_that_explains_it_and_a_given_file_wins(tmp_path: Path) -> None:
    frames = list(render.explain(SAMPLE, 1662, start=0, stop=3))
    assert [f.policy_version for f in frames] == [658, 658, 658] and {f.checkpoint_version for f in frames} == {587}
    one = CheckpointIndex(SAMPLE / "checkpoints").ref(977).path
    assert {f.checkpoint_version for f in render.explain(SAMPLE, 1662, checkpoint=one, start=0, stop=3)} == {977}


def test_a_log_without_checkpoints_gives_frames_without_network_outputs() -> None:
    frames = list(render.explain(FIXTURE, 7))
    with TrajectoryLog(FIXTURE) as log:
        assert len(frames) == log.episode(7).length + 1
    assert all(f.probabilities is None and f.value is None and f.checkpoint_version is None for f in frames)


def test_frames_out_of_range_are_refused_by_name() -> None:
    with pytest.raises(render.RenderConfigError, match=r"start=3 and stop=2 must satisfy"):
        list(render.explain(FIXTURE, 0, start=3, stop=2))


def test_the_overlay_draws_the_explained_numbers(evaluation) -> None:
    """The full overlay's policy bars, highlighted action and value are render.explain's, read back from pixels."""
    from render import RenderSource, render_still
    from render.config import OverlayConfig
    from render.draw.diagram import DiagramLayer
    from render.draw.overlays import FullOverlay
    from render.draw.style import Style

    index, _ = evaluation
    steps = (0, 7)
    explained = {f.step: f for f in render.explain(SAMPLE, index, stop=max(steps) + 1)}
    with TrajectoryLog(SAMPLE / "trajectories.h5") as log:
        actions = log.action_meanings
    # the bars' geometry depends on the canvas, the font and the actions only
    overlay = FullOverlay("Breakout", actions, [DiagramLayer("fc", 4)], [("input", 4)])
    geometry, chart = overlay.bars, overlay.value
    palette = Style().palette
    source = RenderSource.resolve(run=SAMPLE, log=None, checkpoint=None)
    for step in steps:
        image = render_still(source, episode=index, step=step, overlay=OverlayConfig())
        frame = explained[step]
        track = geometry._track
        for i, probability in enumerate(frame.probabilities):
            y = geometry._row_top(i) + track.h // 2
            row = image[y, track.x : track.x + track.w]
            colour = palette.highlight if i == frame.action else palette.bar
            drawn = int((row == np.array(colour, np.uint8)).all(axis=1).sum())
            assert abs(drawn - probability * track.w) <= 1, (step, i, drawn, probability)
        # the value's number is the explained value: its cell equals that number drawn afresh
        cell = chart._numbers[0]
        expected = np.empty((cell.h, cell.w, 3), np.uint8)
        expected[:] = palette.background
        origin = (0, overlay.painter.pixels(chart._size))
        overlay.painter.draw(expected, f"{frame.value:+.3f}", origin, chart._size, palette.accent, 600)
        np.testing.assert_array_equal(image[cell.slices], expected)
