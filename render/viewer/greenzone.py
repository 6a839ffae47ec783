"""The viewer's greenzone: what it keeps of each episode played, so that any step of it is drawn again at once.

A :class:`Track` per episode holds its kept steps as the re-simulation worker sends them (packed), its rewards once
the whole episode is re-simulated, and per overlay a :class:`Scene`: the frame contexts made of those steps, in
order, on demand, up to the step asked for (for ``full`` the network's analytics, batched as the sequential render
batches them, the value history and the value axis's span so far: everything drawing step k needs from the steps
before it). The frame cache keeps tracks up to ``GREENZONE_BYTES``, the least recently used out.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import torch

from render.episode import EpisodeScenes
from render.errors import RenderError
from render.feed import KeptStep
from render.frame import FrameContext
from replay import EpisodeRecord

GREENZONE_BYTES = 256 * 2**20
_CONTEXT_BYTES = 600  # a frame context's own objects, beside its arrays
_NO_FRAME = np.zeros((0, 0, 3), np.uint8)  # a kept context's frame: the greenzone holds it packed
# The network's threads while frame contexts are made (full): one, as ``python -m render`` (torch_threads) and the
# trainer use. Beside the re-simulation worker and other work, two threads on two cores wait on each other: a cold
# seek's forward passes took a median 754 ms with two, 86 ms with one, side by side on a busy machine (the profile
# in docs/notes.md), with the same outputs bit for bit. Set per thread: torch keeps the count per thread, and a
# request's thread may not be the one that set it.
TORCH_THREADS = 1


class Scene:
    """One overlay's frame contexts of a track's episode, made in order on demand and kept (frames left out)."""

    def __init__(self, make: Callable[[], Iterator[FrameContext]]) -> None:
        self._make = make
        self._source: Iterator[FrameContext] | None = None
        self.contexts: list[tuple[FrameContext, bool]] = []  # and whether it shows the step's observation
        self.bytes = 0
        self._lock = threading.Lock()

    def context(self, step: int) -> tuple[FrameContext, bool]:
        with self._lock, torch_threads(TORCH_THREADS):
            if self._source is None:
                self._source = self._make()
            while len(self.contexts) <= step:
                context = next(self._source)
                if context.step != len(self.contexts):
                    raise RenderError(f"episode {context.episode}: step {context.step} came where {step} was due")
                self.contexts.append((_stripped(context), context.observation is not None))
                self.bytes += _context_bytes(context)
            return self.contexts[step]


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Torch's intra-op threads set to ``count`` in this thread for the block, then set back."""
    before = torch.get_num_threads()
    if before == count:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Track:
    """One episode's greenzone: its kept steps as re-simulated (packed), its rewards, and its scenes."""

    def __init__(self, log: Path, episode: EpisodeRecord) -> None:
        self.log, self.episode = log, episode
        self.steps: list[KeptStep] = []
        self.rewards: Future[np.ndarray] = Future()  # set once the worker has replayed the whole episode
        self.error: BaseException | None = None
        self.scenes: dict[str, Scene] = {}
        self._networks: dict[str, object] = {}  # what each kind's scene was made with (Track.scene)
        self._bytes = 0
        self._changed = threading.Condition()

    @property
    def done(self) -> bool:
        return self.rewards.done()

    @property
    def bytes(self) -> int:
        return self._bytes + sum(scene.bytes for scene in list(self.scenes.values()))

    def add(self, steps: list[KeptStep]) -> None:
        with self._changed:
            self.steps.extend(steps)
            self._bytes += sum(len(s.frame.data) + (len(s.observation.data) if s.observation else 0) for s in steps)
            self._changed.notify_all()

    def finish(self, rewards: np.ndarray | None, error: BaseException | None = None) -> None:
        with self._changed:
            if not self.rewards.done():
                self.error = error
                if error is not None:
                    self.rewards.set_exception(error)
                else:
                    self.rewards.set_result(rewards)
            self._changed.notify_all()

    def step(self, index: int) -> KeptStep:
        """Kept step ``index``, waiting for the worker to re-simulate it."""
        with self._changed:
            self._changed.wait_for(lambda: len(self.steps) > index or self.done)
            if len(self.steps) > index:
                return self.steps[index]
            self._raise()
            raise RenderError(f"episode {self.episode.index} was re-simulated without step {index}")

    def kept_steps(self) -> Iterator[KeptStep]:
        """The episode's kept steps for its scenes, in order, as the worker re-simulates them: observations
        unpacked, frames left out (a player draws each step's frame from the track)."""
        for index in range(self.episode.length + 1):
            kept = self.step(index)
            observation = None if kept.observation is None else kept.observation.array()
            yield dataclasses.replace(kept, frame=_NO_FRAME, observation=observation)

    def scene(self, scenes: EpisodeScenes, networks: object = None) -> Scene:
        """The episode's scene with ``scenes``' overlay, made once per overlay kind and ``networks`` (what decides
        which network explains each frame, such as the rebuilt versions on disk): a new value replaces the
        kind's scene, whose contexts that network's outputs no longer describe."""
        with self._changed:
            scene = self.scenes.get(scenes.kind)
            if scene is None or self._networks.get(scenes.kind) != networks:
                scene = self.scenes[scenes.kind] = Scene(functools.partial(self._contexts, scenes))
                self._networks[scenes.kind] = networks
            return scene

    def _contexts(self, scenes: EpisodeScenes) -> Iterator[FrameContext]:
        """The episode's contexts with ``scenes``' overlay. ``full`` gets the rewards as a future, so its network
        runs on the steps while the worker replays; ``minimal`` waits for them (it has nothing to run meanwhile)."""
        if scenes.kind == "full":
            rewards: np.ndarray | Future[np.ndarray] | None = self.rewards
        else:
            rewards = self.rewards.result() if scenes.needs_rewards else None
        return scenes.scene(self.episode, self.kept_steps(), rewards)

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error


def _stripped(context: FrameContext) -> FrameContext:
    """``context`` without its frame and observation (the greenzone holds them packed)."""
    return dataclasses.replace(context, frame=_NO_FRAME, observation=None)


def _context_bytes(context: FrameContext) -> int:
    arrays: list[np.ndarray] = [a for a in (context.value_history, context.return_history) if a is not None]
    analytics = context.analytics
    if analytics is not None:
        arrays += [analytics.probabilities, *analytics.levels, *analytics.feature_maps, *(analytics.saliency or ())]
    return _CONTEXT_BYTES + sum(a.nbytes + 100 for a in arrays)
