"""Render jobs: ``python -m render`` in a subprocess per job, queued and bounded, with live progress and cancel.

A job renders one product of one run into ``<run>/videos/<name>.mp4`` (with the renderer's sidecar beside it),
running the real command line, ``sys.executable -m render run=... product=... overlay=... output=...``, so a
job's video is exactly what the same command typed in a shell makes, and a crash or a leak in the renderer stays
out of the server. At most ``max_running`` jobs run at once (one by default: a render keeps a core or two busy)
and at most ``max_waiting`` wait; one more is refused with 503 rather than queued without end.

Progress: the encoder's tqdm bar, which the renderer prints to stderr whether or not it is a terminal. The job
reads the child's output and matches the bar of its own video (tqdm's description is ``"<product> <file
name>"``; its default format has held ``n/total`` since long before the ``tqdm>=4.60`` the project asks for),
so no change to the renderer was needed, other bars would not be mistaken for it, and ``TQDM_*`` variables that
could change the format are removed from the child's environment. With ``checkpoint=exact`` the rebuild's bars
(``rebuilding v<a>..v<b>``) come first, and the job keeps the last one read as ``rebuilding``. Everything else
the child prints is kept (its last lines) for the error message: the renderer's own ``error: ...`` line when it
refuses (e.g. ``overlay=full`` on a run without checkpoints), else its last line and exit status.

Cancel: SIGTERM to the renderer, which it turns into ``SystemExit`` (:func:`render.cli._terminate_as_exit`): the
encoder deletes its temporary file and the replay workers stop, as on Ctrl-C. If it has not ended after
``grace`` seconds the job kills its whole process group. Either way the job then deletes whatever it may have
left under its video's name (the temporary files, or a video completed as the cancel came in): a job leaves a
video only when it ends ``done``.

The request itself (what to render, validated, and its command line) is :mod:`render.viewer.render_request`.
"""

from __future__ import annotations

import contextlib
import enum
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import render
from render.viewer.errors import BadRequestError, NotFoundError, QueueFullError, UnreadableError
from render.viewer.render_request import OUTPUT_ENV, RUN_ENV, RenderRequest
from render.viewer.runs import RunCatalogue, RunEntry
from render.viewer.videos import find_run, sidecar_path, video_routes, videos_folder

JOB_ID = re.compile(r"^[0-9a-f]{12}$")
_TAIL = 40  # lines of the child's output kept for the error message


class JobState(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)


@dataclass
class Job:
    """One render job; its fields change as it runs (under the queue's lock): read it through :meth:`as_json`."""

    id: str
    run: str
    run_path: Path
    folder: Path
    request: RenderRequest
    video: str
    created: float
    state: JobState = JobState.QUEUED
    frames: int = 0
    total: int | None = None
    rebuilding: dict[str, Any] | None = None  # checkpoint=exact: the last rebuild bar read (versions, updates, total)
    error: str | None = None
    started: float | None = None
    ended: float | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    cancelling: bool = False
    over: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def output(self) -> Path:
        return self.folder / self.video

    def as_json(self) -> dict[str, Any]:
        """The job's record: ``progress`` in 0..1 from ``frames`` of ``total`` (``null`` until encoding starts);
        ``video`` the file name once ``done``; times in seconds since the epoch."""
        done = self.state == JobState.DONE
        progress = 1.0 if done else min(self.frames / self.total, 1.0) if self.total else 0.0
        return {
            "id": self.id,
            "run": self.run,
            "product": self.request.product,
            "params": self.request.params(),
            "state": self.state.value,
            "progress": progress,
            "frames": self.frames,
            "total": self.total,
            "rebuilding": self.rebuilding,
            "error": self.error,
            "video": self.video if done else None,
            "created": self.created,
            "started": self.started,
            "ended": self.ended,
        }


class JobQueue:
    """Render jobs, at most ``max_running`` at once and ``max_waiting`` queued; the ``keep_finished`` newest
    finished jobs stay listed. A cancelled renderer gets ``grace`` seconds to stop before it is killed.

    Example:
        >>> jobs = JobQueue()  # doctest: +SKIP
        >>> record = jobs.submit(run_entry, RenderRequest("episode", "raw", 3))  # doctest: +SKIP
        >>> jobs.cancel(record["id"])["state"]  # doctest: +SKIP
        'cancelled'
        >>> jobs.close()  # doctest: +SKIP
    """

    def __init__(
        self, *, max_running: int = 1, max_waiting: int = 8, keep_finished: int = 50, grace: float = 10.0
    ) -> None:
        for name, value in (("max_running", max_running), ("keep_finished", keep_finished)):
            if value < 1:
                raise ValueError(f"expected a positive {name}, got {value}")
        if max_waiting < 0:
            raise ValueError(f"expected max_waiting of 0 or more, got {max_waiting}")
        self.max_running, self.max_waiting, self.keep_finished, self.grace = (
            max_running, max_waiting, keep_finished, grace
        )  # fmt: skip
        self._jobs: dict[str, Job] = {}  # in submission order
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._closed = False

    def submit(self, entry: RunEntry, request: RenderRequest) -> dict[str, Any]:
        """Queue ``request`` for run ``entry``; its record. A :class:`QueueFullError` when ``max_waiting`` jobs
        wait already, or the queue is closing."""
        with self._lock:
            if self._closed:
                raise QueueFullError("the viewer is shutting down and takes no more render jobs")
            waiting = [job for job in self._jobs.values() if job.state == JobState.QUEUED]
            if len(waiting) >= self.max_waiting:
                raise QueueFullError(
                    f"{len(waiting)} render jobs are waiting already (at most {self.max_waiting}); try again when "
                    "one has finished, or cancel one (DELETE /api/jobs/{id})"
                )
            job_id, created = secrets.token_hex(6), time.time()
            name = request.video_name(job_id, created)
            job = Job(job_id, entry.id, entry.path, videos_folder(entry), request, name, created)
            self._jobs[job_id] = job
            self._forget_old()
            self._dispatch()
            return job.as_json()

    def records(self, run: str | None = None) -> list[dict[str, Any]]:
        """Every job (of run ``run`` only, if given), newest first."""
        with self._lock:
            jobs = [job for job in reversed(self._jobs.values()) if run is None or job.run == run]
            return [job.as_json() for job in jobs]

    def record(self, job_id: str) -> dict[str, Any]:
        with self._lock:
            return self._job(job_id).as_json()

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel job ``job_id`` if it has not finished, waiting until its renderer has stopped; forget it if it
        had finished (its video stays). Its last record either way."""
        with self._lock:
            job = self._job(job_id)
            if job.state.finished:
                del self._jobs[job_id]
                return job.as_json()
            self._stop(job)
        self._wait(job)
        with self._lock:
            return job.as_json()

    def close(self) -> None:
        """Cancel every job not finished, wait for their renderers to stop, and take no more jobs."""
        with self._lock:
            self._closed = True
            unfinished = [job for job in self._jobs.values() if not job.state.finished]
            for job in unfinished:
                self._stop(job)
            threads = list(self._threads)
        for job in unfinished:
            self._wait(job)
        for thread in threads:
            thread.join()

    def _job(self, job_id: str) -> Job:
        job = self._jobs.get(job_id) if JOB_ID.match(job_id) else None
        if job is None:
            known = ", ".join(reversed(self._jobs)) or "none"
            raise NotFoundError(f"no render job {job_id[:40]!r}; the jobs are: {known} (GET /api/jobs)")
        return job

    def _stop(self, job: Job) -> None:
        """Under the lock: a queued job is cancelled at once, a running one is asked to stop (SIGTERM)."""
        job.cancelling = True
        if job.state == JobState.QUEUED:
            self._end(job, JobState.CANCELLED)
        elif job.process is not None and job.process.poll() is None:
            job.process.send_signal(signal.SIGTERM)

    def _wait(self, job: Job) -> None:
        if not job.over.wait(self.grace):
            with self._lock:
                process = job.process
            if process is not None:  # its own session (see _start): the replay workers go too
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
            job.over.wait()

    def _end(self, job: Job, state: JobState, error: str | None = None) -> None:
        job.state, job.error, job.ended = state, error, time.time()
        job.over.set()

    def _forget_old(self) -> None:
        finished = [job_id for job_id, job in self._jobs.items() if job.state.finished]
        for job_id in finished[: max(0, len(finished) - self.keep_finished)]:
            del self._jobs[job_id]

    def _dispatch(self) -> None:
        """Under the lock: start the oldest queued jobs while fewer than ``max_running`` run."""
        running = sum(job.state == JobState.RUNNING for job in self._jobs.values())
        for job in self._jobs.values():
            if running >= self.max_running:
                break
            if job.state == JobState.QUEUED:
                job.state, job.started, running = JobState.RUNNING, time.time(), running + 1
                thread = threading.Thread(target=self._run, args=(job,), name=f"render-job-{job.id}", daemon=True)
                self._threads = [t for t in self._threads if t.is_alive()] + [thread]
                thread.start()

    def _run(self, job: Job) -> None:
        """A job's thread: start the renderer, follow its output, record how it ended, start the next job."""
        state, error = JobState.CANCELLED, None
        with self._lock:
            if not job.cancelling:  # else cancelled between being dispatched and this thread starting
                try:
                    job.process = _start(job)
                except OSError as problem:
                    state, error = JobState.FAILED, f"could not start the renderer: {problem}"
        if job.process is not None:
            tail = _follow(job, self._lock)
            code = job.process.wait()
            if code == 0 and job.output.is_file():
                state = JobState.DONE
            else:
                state, error = JobState.FAILED, _failure(code, tail)
        with self._lock:
            if job.cancelling:
                state, error = JobState.CANCELLED, None
            if state != JobState.DONE:
                _clean(job.output)
            self._end(job, state, error)
            self._forget_old()
            if not self._closed:
                self._dispatch()


def _start(job: Job) -> subprocess.Popen[bytes]:
    job.folder.mkdir(parents=True, exist_ok=True)
    # Run from the folder holding this very ``render`` package (``-m`` looks there first), so the child runs the
    # code the server runs, installed or not.
    package_root = str(Path(render.__file__).resolve().parent.parent)
    env = {key: value for key, value in os.environ.items() if not key.startswith("TQDM_")}
    env.update({
        RUN_ENV: str(job.run_path.resolve()),
        OUTPUT_ENV: str(job.output.resolve()),
        "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])),
        "PYTHONUNBUFFERED": "1",
    })  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "render", *job.request.overrides()],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env=env, cwd=package_root, start_new_session=True,
    )  # fmt: skip


def _follow(job: Job, lock: threading.Lock) -> deque[str]:
    """Read the renderer's output to its end: its progress bar updates ``job``; the last other lines are
    returned."""
    tail: deque[str] = deque(maxlen=_TAIL)
    bar = re.compile(rf"{re.escape(f'{job.request.product} {job.video}')}: *\d+%\|[^|]*\| *(\d+)/(\d+) ")
    rebuild = re.compile(r"rebuilding (v\d+\.\.v\d+): *\d+%\|[^|]*\| *(\d+)/(\d+) ")
    assert job.process is not None and job.process.stdout is not None
    pending = b""
    while chunk := job.process.stdout.read1(65536):
        *lines, pending = re.split(rb"[\r\n]", pending + chunk)
        for line in lines:
            text = line.decode("utf-8", "replace").strip()
            progress = bar.search(text)
            rebuilt = None if progress else rebuild.search(text)
            if progress:
                with lock:
                    job.frames, job.total = int(progress[1]), int(progress[2])
            elif rebuilt:
                with lock:
                    job.rebuilding = {"versions": rebuilt[1], "updates": int(rebuilt[2]), "total": int(rebuilt[3])}
            elif text:
                tail.append(text)
    if pending.strip():
        tail.append(pending.decode("utf-8", "replace").strip())
    return tail


def _failure(code: int, tail: deque[str]) -> str:
    """The renderer's message: its ``error:`` line(s) if it refused, else its last line and exit status."""
    refusals = [line.removeprefix("error: ") for line in tail if line.startswith("error: ")]
    if refusals:
        return "; ".join(refusals)
    last = tail[-1] if tail else "no output"
    how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
    return f"the renderer {how}: {last}"


def _clean(output: Path) -> None:
    """Delete the video ``output`` and everything the encoder may have left for it (temporary files named
    ``.<name>.<random>...``, the sidecar)."""
    for path in [output, sidecar_path(output), *output.parent.glob(f".{glob_escape(output.name)}.*")]:
        path.unlink(missing_ok=True)


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def job_routes(catalogue: RunCatalogue, jobs: JobQueue) -> list[Route]:
    """The routes of render jobs and the video gallery:

    - ``POST /api/runs/{run_id}/jobs``, body ``{"product": "episode"|"timelapse"|"progression", "overlay":
      "raw"|"minimal"|"full", "episode": <index>|"best"|"worst"|"last", "duration": <seconds>, "layout":
      "sequential"|"side_by_side"|"grid", "checkpoint": "nearest"|"exact"}`` (only the product's own field;
      defaults: overlay full, episode best, duration 60, layout sequential, checkpoint nearest; exact only with
      overlay full): 202 and the job's record, 400 for a bad field, 404 an unknown run, 422 a run whose log does
      not read, 503 when the queue is full.
    - ``GET /api/jobs`` (newest first; ``?run=<id>`` for one run's), ``GET /api/jobs/{job_id}``.
    - ``DELETE /api/jobs/{job_id}``: a job not finished is cancelled (the answer comes once its renderer has
      stopped: state ``cancelled``, and it stays listed); a finished one is removed from the list (its video
      stays). 200 and the job's last record.
    - the gallery, :func:`render.viewer.videos.video_routes`.
    """

    async def submit(request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError as error:
            raise BadRequestError(f"the body is not JSON ({error}); send a JSON object") from None
        # looking the run up may read its log: off the event loop, as Starlette runs the sync routes
        record = await run_in_threadpool(queue, request.path_params["run_id"], body)
        return JSONResponse(record, status_code=202, headers={"Location": f"/api/jobs/{record['id']}"})

    def queue(run_id: str, body: Any) -> dict[str, Any]:
        entry = find_run(catalogue, run_id)
        if entry.summary is None:
            raise UnreadableError(f"run {entry.id!r} cannot be read, so it cannot be rendered: {entry.error}")
        return jobs.submit(entry, RenderRequest.parse(body, entry))

    def listing(request: Request) -> Response:
        return JSONResponse(jobs.records(request.query_params.get("run")))

    def one(request: Request) -> Response:
        return JSONResponse(jobs.record(request.path_params["job_id"]))

    def cancel(request: Request) -> Response:
        return JSONResponse(jobs.cancel(request.path_params["job_id"]))

    return [
        Route("/api/runs/{run_id}/jobs", submit, methods=["POST"]),
        Route("/api/jobs", listing, methods=["GET"]),
        Route("/api/jobs/{job_id}", one, methods=["GET"]),
        Route("/api/jobs/{job_id}", cancel, methods=["DELETE"]),
        *video_routes(catalogue),
    ]
