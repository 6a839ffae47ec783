"""The viewer's re-simulation worker: one long-lived process (:func:`render.feed.serve_episodes`) that replays the
episodes asked for, whole, and sends their kept steps back in chunks as it emulates them.

The emulator holds the GIL, so a process of its own leaves the server free to draw and encode, and it keeps its
logs (and their lanes' live envs) open between episodes. Episodes waiting for it go newest first: the one just asked
for. A worker that dies fails the episode it was replaying with a message, and the next request starts another.
"""

from __future__ import annotations

import itertools
import multiprocessing
import queue
import threading

from render.errors import RenderError
from render.feed import serve_episodes
from render.viewer.greenzone import Track


class Resimulator:
    """The worker process and the tracks queued for it, the newest first: the episode just asked for."""

    def __init__(self) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._process: multiprocessing.process.BaseProcess | None = None
        self._jobs: multiprocessing.queues.Queue | None = None
        self._results: multiprocessing.queues.Queue | None = None
        self._pending: list[Track] = []
        self._running: tuple[int, Track] | None = None
        self._numbers = itertools.count()
        self._lock = threading.Lock()
        self._closed = False

    def start(self) -> None:
        """Start the worker now (it takes a second to import), rather than at the first episode."""
        with self._lock:
            self._ensure_process()

    def submit(self, track: Track) -> None:
        with self._lock:
            self._pending.append(track)
            self._next()

    def withdraw(self, track: Track) -> None:
        """Forget ``track`` if it is still waiting for the worker (it left the greenzone)."""
        with self._lock:
            if track in self._pending:
                self._pending.remove(track)
                track.finish(None, RenderError(f"episode {track.episode.index} left the greenzone before replaying"))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            process, jobs = self._process, self._jobs
            self._process = None
        if process is not None:
            jobs.put(None)
            process.join(timeout=2)
            if process.is_alive():
                process.terminate()
                process.join()

    def _ensure_process(self) -> None:
        if self._closed:
            raise RenderError("the frame cache is closed")
        if self._process is not None and self._process.is_alive():
            return
        self._jobs, self._results = self._context.Queue(), self._context.Queue()
        self._process = self._context.Process(
            target=serve_episodes, args=(self._jobs, self._results), name="viewer-resim", daemon=True
        )
        self._process.start()
        threading.Thread(
            target=self._receive, args=(self._process, self._results), name="viewer-resim-results", daemon=True
        ).start()

    def _next(self) -> None:
        if self._running is not None or not self._pending:
            return
        track = self._pending.pop()
        self._ensure_process()
        number = next(self._numbers)
        self._running = (number, track)
        self._jobs.put((number, str(track.log), track.episode))

    def _receive(self, process: multiprocessing.process.BaseProcess, results: multiprocessing.queues.Queue) -> None:
        while True:
            try:
                number, kind, payload = results.get(timeout=0.5)
            except queue.Empty:
                if process.is_alive():
                    continue
                with self._lock:
                    if self._running is not None:
                        self._running[1].finish(None, RenderError(
                            f"the viewer's re-simulation worker died (exit code {process.exitcode}) replaying episode "
                            f"{self._running[1].episode.index}; ask again to restart it"
                        ))  # fmt: skip
                        self._running = None
                    if process is self._process:
                        self._process = None
                    if not self._closed and self._pending:
                        self._next()
                return
            with self._lock:
                if self._running is None or self._running[0] != number:
                    continue
                track = self._running[1]
                if kind != "steps":
                    self._running = None
            if kind == "steps":
                track.add(payload)
                continue
            track.finish(payload if kind == "done" else None, payload if kind == "error" else None)
            with self._lock:
                self._next()
