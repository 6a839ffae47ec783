"""The viewer's frames (``render.viewer.FrameCache``): every seek path gives a sequential render's bytes.

References come from :class:`render.EpisodeFrames` stepping from the reset frame, which :func:`render.render_still`
runs. Seeks go forwards, backwards, far, to the last step and back, in episodes of two games (raw and minimal on
tiny logs of Breakout and Pong, full on two episodes of the sample run, which has checkpoints).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import STICKY, record_single

from render import EpisodeFrames, RenderSource
from render.config import OverlayConfig
from render.episode import EpisodeScenes
from render.errors import RenderError
from render.feed import KeptStep, Packed, kept_steps
from render.viewer import FrameCache, encode_png
from replay import TrajectoryLog

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = RenderSource.resolve(run=ROOT / "data" / "sample" / "breakout", log=None, checkpoint=None)


def decoded(png: bytes) -> np.ndarray:
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGR2RGB)


def sequential(source: RenderSource, episode: int, overlay: str) -> list[np.ndarray]:
    with EpisodeFrames(source, episode=episode, overlay=OverlayConfig(kind=overlay)) as frames:
        return [frames.frame(step) for step in range(frames.episode.length + 1)]


def seeks(length: int, seed: int) -> list[int]:
    """A viewer's session: far ahead, back, play on, the last step, the first, random jumps."""
    rng = np.random.default_rng(seed)
    middle = length // 2
    played = [middle, middle + 1, middle + 2, middle + 4, middle - 1, length, 0, 1, 2, 3]
    return played + [int(k) for k in rng.integers(0, length + 1, 8)] + [length, middle]


def test_pngs_are_lossless_and_packed_arrays_round_trip() -> None:
    image = np.random.default_rng(0).integers(0, 256, (36, 64, 3), dtype=np.uint8)
    assert np.array_equal(decoded(encode_png(image)), image)
    packed = Packed.of(image)
    assert np.array_equal(packed.array(), image) and len(packed.data) > 0


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, RenderSource]:
    folder = tmp_path_factory.mktemp("logs")
    sources = {}
    for game, steps in (("Breakout", 300), ("Pong", 250)):
        path = folder / f"{game}.h5"
        record_single(path, game, STICKY, steps, snapshot_interval=64, sync_interval=16)
        sources[game] = RenderSource.resolve(run=None, log=path, checkpoint=None)
    return sources


@pytest.fixture(scope="module")
def cache() -> Iterator[FrameCache]:
    cache = FrameCache(capacity=4)
    cache.start()
    yield cache
    cache.close()


@pytest.mark.slow
@pytest.mark.parametrize("game", ["Breakout", "Pong"])
@pytest.mark.parametrize("overlay", ["raw", "minimal"])
def test_every_seek_draws_the_sequential_frame(
    cache: FrameCache, logs: dict[str, RenderSource], game: str, overlay: str
) -> None:
    source = logs[game]
    with TrajectoryLog(source.log) as log:
        count = len(log.episodes)
    for episode in range(min(2, count)):  # Pong's first episode outlasts the recording: unfinished
        reference = sequential(source, episode, overlay)
        for step in seeks(len(reference) - 1, seed=episode):
            assert np.array_equal(decoded(cache.png(source, episode, step, overlay)), reference[step]), (
                game, overlay, episode, step,
            )  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("episode", [1, 5])
def test_full_overlay_seeks_draw_the_sequential_frame(cache: FrameCache, episode: int) -> None:
    reference = sequential(SAMPLE, episode, "full")
    length = len(reference) - 1
    for step in seeks(length, seed=episode):
        assert np.array_equal(decoded(cache.png(SAMPLE, episode, step, "full")), reference[step]), (episode, step)
    for step in range(length - 20, length + 1):  # played on: frames drawn ahead of the requests
        assert np.array_equal(decoded(cache.png(SAMPLE, episode, step, "full")), reference[step]), (episode, step)


@pytest.mark.slow
def test_the_greenzone_keeps_to_its_budget_and_replays_what_left_it(logs: dict[str, RenderSource]) -> None:
    source = logs["Breakout"]
    reference = sequential(source, 0, "raw")
    budget = 200_000
    cache = FrameCache(capacity=1, greenzone_bytes=budget)
    try:
        for episode in (0, 1, 0, 1):
            cache.png(source, episode, 10, "raw")
            cache.png(source, episode, 0, "raw")
        sizes = cache.greenzone()
        assert sizes["budget"] == budget and sizes["episodes"] == 1  # each track is over budget: the one in use stays
        for step in (len(reference) - 1, 3, 7):
            cache.png(source, 1, 5, "raw")
            assert np.array_equal(decoded(cache.png(source, 0, step, "raw")), reference[step])
        assert cache.greenzone()["bytes"] <= budget + max(len(reference), 200) * 4_000  # the track in use stays
        with pytest.raises(RenderError, match="not step"):
            cache.png(source, 0, len(reference), "raw")
    finally:
        cache.close()


@pytest.mark.slow
@pytest.mark.parametrize("rewards_after", [100, None])
def test_contexts_made_before_the_rewards_come_are_those_made_with_them(rewards_after: int | None) -> None:
    """The viewer's full scene runs the network on the steps as the worker sends them, the rewards (the value axis
    spans the returns) coming once the episode is replayed: the frames drawn are those of a scene given every
    reward up front, and nothing is drawn before the rewards come."""
    with TrajectoryLog(SAMPLE.log) as log:
        record = next(e for e in log.episodes if e.finished and 150 <= e.length <= 200)
        rewards = np.zeros(record.length)
        steps = list(kept_steps(log, record, 1, observations=True, rewards=rewards))
    scenes = EpisodeScenes(SAMPLE, OverlayConfig(kind="full"))
    later: Future[np.ndarray] = Future()
    pulled = []

    def arriving() -> Iterator[KeptStep]:
        for step in steps:
            if step.step == rewards_after:
                later.set_result(rewards)
            pulled.append(step.step)
            yield step
        if rewards_after is None:  # the rewards come a little after the last step
            threading.Timer(0.2, later.set_result, [rewards]).start()

    try:
        known, pending = list(scenes.scene(record, steps, rewards)), scenes.scene(record, arriving(), later)
        first = next(pending)
        ahead = len(pulled)
        pending = [first, *pending]
        drawn = [[scenes.overlay(record).render(c).copy() for c in contexts] for contexts in (known, pending)]
    finally:
        scenes.close()
    assert ahead == (len(steps) if rewards_after is None else 128), "the network ran ahead of the rewards"
    assert len(drawn[0]) == len(drawn[1]) == len(steps)
    for step, (a, b) in enumerate(zip(*drawn, strict=True)):
        assert np.array_equal(a, b), step
