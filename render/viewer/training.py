"""Training from the viewer: start ``python -m replay.train`` runs, stop them as Ctrl-C does, resume them.

Each run is the real trainer in a subprocess of the viewer, writing a new run folder into the viewer's
destination folder (``data/runs`` when it was given, the trainer's own default; else the first writable folder
of ``--runs``), so the catalogue lists it, ``live`` while the trainer holds its writer lock. Nothing about the
trainer changes: it records in HDF5's SWMR mode, so the viewer reads the log while it grows (a plain read-only
open, no lock taken, see ``replay.storage.open_for_reading``) and lists each episode once a flush has written
its row (``record.flush_seconds``, 10 s by default).

Stop sends SIGINT to the trainer's process group, as a terminal's Ctrl-C does: the trainer closes its log whole
and exits with 130; the run resumes with ``resume=<run_dir>``. Each trainer runs in a session of its own, so a
Ctrl-C meant for the viewer does not reach it twice; :meth:`TrainingManager.close` (the viewer shutting down)
stops every trainer that way and waits for it, killing only one that outlives ``stop_seconds`` (its log still
reads up to its last flush).

Routes (:func:`training_routes`), JSON in and out:

- ``GET /api/training``: every trainer started, oldest first (:meth:`TrainingRecord.as_json` and ``run_id``, the
  run's id in ``GET /api/runs``).
- ``POST /api/training`` ``{"game": "Breakout" | "ALE/Breakout-v5", "total_steps": int, "seed": int,
  "settings": {"ppo.num_envs": 2, ...}}`` (``settings`` optional: the trainer's numeric, boolean and plain
  string settings by their Hydra keys) → 202 and the record.
- ``GET /api/training/games``: the games a run can train on, ``{"game", "env_id"}`` each.
- ``GET /api/training/{id}``, ``POST /api/training/{id}/stop`` (→ 202, ``stopping``).
- ``POST /api/runs/{run_id}/resume`` ``{"total_steps": int}`` (optional, to train further) → 202; a live run is
  refused with 409, a folder without the ``config.yaml`` a resume reads with 422.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import replay
from render.viewer import training_request as valid
from render.viewer.errors import BadRequestError, NotFoundError, UnreadableError, ViewerError
from render.viewer.runs import RunCatalogue, is_live
from replay.run_folder import RunFolder

TRAINER_DEFAULT = Path("data/runs")  # where python -m replay.train puts a run given no run_dir
_RUN_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
INTERRUPTED = (130, -signal.SIGINT)  # run_app's exit code on Ctrl-C; killed by the signal itself (during imports)


class ConflictError(ViewerError):
    """A request the state of a run or trainer forbids now (a live run resumed, a stopped trainer stopped)."""

    status = 409


class TrainingState(str, enum.Enum):
    RUNNING = "running"
    STOPPING = "stopping"  # SIGINT sent, the trainer is closing its log
    STOPPED = "stopped"  # stopped by the viewer; resumable
    FINISHED = "finished"  # exit code 0
    FAILED = "failed"  # any other exit: the output's last lines say why


@dataclass(frozen=True)
class TrainingRecord:
    """One trainer the viewer started, as of when the record was taken."""

    id: str
    run_dir: Path
    command: tuple[str, ...]
    state: TrainingState
    pid: int
    started: float  # Unix time
    ended: float | None
    returncode: int | None
    output: tuple[str, ...]  # the last lines of its stdout and stderr, merged
    resumed: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "run_dir": str(self.run_dir),
            "command": list(self.command),
            "state": self.state.value,
            "pid": self.pid,
            "started": self.started,
            "ended": self.ended,
            "returncode": self.returncode,
            "output": list(self.output),
            "resumed": self.resumed,
        }


class _Trainer:
    """A trainer's process and what is known of it; changed only under the manager's lock."""

    def __init__(self, record: TrainingRecord, process: subprocess.Popen[str], lines: int) -> None:
        self.record = record
        self.process = process
        self.output: deque[str] = deque(maxlen=lines)
        self.watcher: threading.Thread | None = None


def choose_destination(folders: Sequence[Path]) -> Path | None:
    """Where new runs go: ``data/runs`` if it is among ``folders``, else the first of them that is writable (or
    can be made) and is not a run folder itself; ``None`` if none is."""
    preferred = [f for f in folders if Path(f).absolute() == TRAINER_DEFAULT.absolute()]
    for folder in [*preferred, *folders]:
        folder = Path(folder)
        if RunFolder(folder).log.is_file():
            continue
        existing = next((p for p in (folder, *folder.absolute().parents) if p.exists()), None)
        if existing is not None and existing.is_dir() and os.access(existing, os.W_OK | os.X_OK):
            return folder
    return None


class TrainingManager:
    """The trainers started from the viewer, each a ``python -m replay.train`` subprocess.

    Args:
        folders: The folders the viewer shows runs from; new runs go into :func:`choose_destination`'s pick.
        destination: Where new runs go instead (must be one of ``folders`` for the viewer to list them).
        output_lines: How many of a trainer's last output lines each record keeps.
        stop_seconds: How long :meth:`close` waits for trainers to stop after SIGINT before killing them.

    Example:
        >>> manager = TrainingManager([Path("data/runs")])                       # doctest: +SKIP
        >>> record = manager.start("ALE/Pong-v5", total_steps=20_000, seed=1)   # doctest: +SKIP
        >>> manager.stop(record.id); manager.close()                             # doctest: +SKIP
    """

    def __init__(
        self,
        folders: Sequence[Path],
        *,
        destination: Path | None = None,
        output_lines: int = 40,
        stop_seconds: float = 120.0,
    ) -> None:
        self.destination = Path(destination) if destination is not None else choose_destination(list(folders))
        self.output_lines = output_lines
        self.stop_seconds = stop_seconds
        self._trainers: dict[str, _Trainer] = {}
        self._lock = threading.Lock()
        self._closed = False

    def start(
        self, env_id: str, *, total_steps: int, seed: int, settings: Mapping[str, Any] | None = None
    ) -> TrainingRecord:
        """Start training ``env_id`` into a new run folder (named like the trainer's own: time, game, seed)."""
        overrides = [
            f"env.id={env_id}",
            f"total_steps={total_steps}",
            f"seed={seed}",
            *valid.overrides(settings or {}),
        ]
        valid.check_config(overrides)
        if self.destination is None:
            raise ConflictError(
                "the viewer has no writable runs folder to train into; start it with --runs DIR (a folder you can "
                "write, e.g. data/runs)"
            )
        run_dir = self._new_run_dir(env_id, seed)
        return self._launch(run_dir, [*overrides, f"run_dir={run_dir}"], resumed=False)

    def resume(self, run_dir: Path, *, total_steps: int | None = None) -> TrainingRecord:
        """Continue the run in ``run_dir`` from its resume state (``resume=<run_dir>``), to ``total_steps`` if
        given. Refused while a trainer writes it or without its ``config.yaml``."""
        folder = RunFolder(Path(run_dir).resolve())
        if not folder.config.is_file():
            raise UnreadableError(
                f"{folder.path} cannot be resumed: it has no {folder.config.name} (only runs made by "
                "python -m replay.train can be)"
            )
        if is_live(folder.log) or self._running_in(folder.path):
            raise ConflictError(f"{folder.path} is being trained now; stop it first (POST /api/training/<id>/stop)")
        extra = [] if total_steps is None else [f"total_steps={valid.total_steps(total_steps)}"]
        return self._launch(folder.path, [f"resume={folder.path}", *extra], resumed=True)

    def stop(self, trainer_id: str) -> TrainingRecord:
        """Send the trainer SIGINT (once), as Ctrl-C: it closes its log whole and exits. Returns at once."""
        with self._lock:
            trainer = self._find(trainer_id)
            state = trainer.record.state
            if state in (TrainingState.STOPPED, TrainingState.FINISHED, TrainingState.FAILED):
                raise ConflictError(f"trainer {trainer_id} has already ended ({state.value}); nothing to stop")
            if state is TrainingState.RUNNING:
                _interrupt(trainer.process)
                trainer.record = dataclasses.replace(trainer.record, state=TrainingState.STOPPING)
            return self._snapshot(trainer)

    def get(self, trainer_id: str) -> TrainingRecord:
        with self._lock:
            return self._snapshot(self._find(trainer_id))

    def records(self) -> list[TrainingRecord]:
        with self._lock:
            return [self._snapshot(t) for t in self._trainers.values()]

    def close(self) -> None:
        """Stop every trainer still running (SIGINT, then wait up to ``stop_seconds``; a kill after that)."""
        with self._lock:
            self._closed = True
            trainers = list(self._trainers.values())
        for trainer in trainers:
            if trainer.record.state is TrainingState.RUNNING:
                self.stop(trainer.record.id)
        deadline = time.monotonic() + self.stop_seconds
        for trainer in trainers:
            try:
                trainer.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                trainer.output.append(f"viewer: still running {self.stop_seconds:g} s after SIGINT; killed")
                trainer.process.kill()
                trainer.process.wait()
        for trainer in trainers:
            if trainer.watcher is not None:
                trainer.watcher.join()

    def _launch(self, run_dir: Path, overrides: list[str], *, resumed: bool) -> TrainingRecord:
        command = [sys.executable, "-m", "replay.train", *overrides, "progress=false"]
        with self._lock:
            if self._closed:
                raise ConflictError("the viewer is shutting down; no new training")
            if resumed and self._running_in(run_dir, locked=True):
                raise ConflictError(f"{run_dir} is being trained now; stop it first (POST /api/training/<id>/stop)")
            process = subprocess.Popen(
                command,
                cwd=_source_root(),  # -m finds this very checkout's trainer first: the viewer's own code
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                start_new_session=True,  # its own process group: only the viewer's SIGINT reaches it
                preexec_fn=_default_sigint if signal.getsignal(signal.SIGINT) is signal.SIG_IGN else None,
            )
            trainer_id = str(len(self._trainers) + 1)
            record = TrainingRecord(
                trainer_id, run_dir, tuple(command), TrainingState.RUNNING, process.pid, time.time(), None, None, (),
                resumed,
            )  # fmt: skip
            trainer = self._trainers[trainer_id] = _Trainer(record, process, self.output_lines)
            trainer.watcher = threading.Thread(target=self._watch, args=(trainer,), name=f"trainer-{trainer_id}")
            trainer.watcher.daemon = True
            trainer.watcher.start()
            return self._snapshot(trainer)

    def _watch(self, trainer: _Trainer) -> None:
        """Keep the trainer's last output lines; when it exits, its state."""
        assert trainer.process.stdout is not None
        for line in trainer.process.stdout:
            text = line.rstrip("\n").rsplit("\r", 1)[-1]
            if text.strip():
                trainer.output.append(text)
        code = trainer.process.wait()
        with self._lock:
            stopping = trainer.record.state is TrainingState.STOPPING
            if code == 0:
                state = TrainingState.FINISHED
            elif stopping and code in INTERRUPTED:
                state = TrainingState.STOPPED
            else:
                state = TrainingState.FAILED
            trainer.record = dataclasses.replace(trainer.record, state=state, returncode=code, ended=time.time())

    def _new_run_dir(self, env_id: str, seed: int) -> Path:
        """A new, empty run folder in the destination, made here so that two starts never share one."""
        assert self.destination is not None
        game = env_id.removeprefix("ALE/").removesuffix("-v5").lower()
        base = f"{time.strftime('%Y%m%d-%H%M%S')}-{game}-s{seed}"
        self.destination.mkdir(parents=True, exist_ok=True)
        root = self.destination.resolve()
        for n in range(1, 1000):
            name = base if n == 1 else f"{base}-{n}"
            path = root / name
            if not _RUN_NAME.match(name) or path.parent != root:
                raise BadRequestError(f"cannot name a run folder {name!r} in {root}")
            try:
                path.mkdir()
            except FileExistsError:
                continue
            return path
        raise ConflictError(f"{root} already holds 999 runs named {base}*; wait a second and start again")

    def _running_in(self, run_dir: Path, *, locked: bool = False) -> bool:
        if not locked:
            with self._lock:
                return self._running_in(run_dir, locked=True)
        active = (TrainingState.RUNNING, TrainingState.STOPPING)
        return any(t.record.run_dir == run_dir and t.record.state in active for t in self._trainers.values())

    def _find(self, trainer_id: str) -> _Trainer:
        trainer = self._trainers.get(trainer_id)
        if trainer is None:
            known = ", ".join(self._trainers) or "none yet"
            raise NotFoundError(f"no trainer {trainer_id!r}; the trainers are: {known} (GET /api/training)")
        return trainer

    def _snapshot(self, trainer: _Trainer) -> TrainingRecord:
        return dataclasses.replace(trainer.record, output=tuple(trainer.output))


def training_routes(catalogue: RunCatalogue, manager: TrainingManager) -> list[Route]:
    """The training API over ``manager``, resuming runs found in ``catalogue`` (see the module's docstring)."""

    async def described(records: list[TrainingRecord]) -> list[dict[str, Any]]:
        """Each record with ``run_id``, its run's id in ``GET /api/runs`` (``None`` until the catalogue lists it)."""
        ids = {e.path.resolve(): e.id for e in await run_in_threadpool(catalogue.scan)}
        return [{**r.as_json(), "run_id": ids.get(r.run_dir)} for r in records]

    async def list_trainers(request: Request) -> Response:
        return _json(await described(manager.records()))

    async def start(request: Request) -> Response:
        body = await _body(request, required=("game", "total_steps", "seed"), optional=("settings",))
        env_id = valid.text(body["game"], "game")
        steps, seed = valid.total_steps(body["total_steps"]), valid.seed(body["seed"])
        settings = body.get("settings", {})
        if not isinstance(settings, dict):
            raise BadRequestError(f"expected settings to be an object of trainer settings, got {settings!r}")
        record = await run_in_threadpool(
            manager.start, valid.env_id_of(env_id), total_steps=steps, seed=seed, settings=settings
        )
        return _json((await described([record]))[0], 202)

    async def list_games(request: Request) -> Response:
        return _json([{"game": name, "env_id": env_id} for name, env_id in valid.games().items()])

    async def one(request: Request) -> Response:
        return _json((await described([manager.get(request.path_params["trainer_id"])]))[0])

    async def stop(request: Request) -> Response:
        return _json((await described([manager.stop(request.path_params["trainer_id"])]))[0], 202)

    async def resume(request: Request) -> Response:
        body = await _body(request, required=(), optional=("total_steps",))
        steps = None if body.get("total_steps") is None else valid.total_steps(body["total_steps"])
        run_id = request.path_params["run_id"]
        entry = await run_in_threadpool(catalogue.get, run_id)
        if entry is None:
            known = [e.id for e in await run_in_threadpool(catalogue.scan)]
            raise NotFoundError(f"no run {run_id!r}; the runs are: {', '.join(known) or 'none'} (GET /api/runs)")
        record = await run_in_threadpool(manager.resume, entry.path, total_steps=steps)
        return _json((await described([record]))[0], 202)

    return [
        Route("/api/training", list_trainers, methods=["GET"]),
        Route("/api/training", start, methods=["POST"]),
        Route("/api/training/games", list_games, methods=["GET"]),
        Route("/api/training/{trainer_id}", one, methods=["GET"]),
        Route("/api/training/{trainer_id}/stop", stop, methods=["POST"]),
        Route("/api/runs/{run_id}/resume", resume, methods=["POST"]),
    ]


def _json(content: Any, status: int = 200) -> Response:
    return JSONResponse(content, status_code=status)


async def _body(request: Request, *, required: Sequence[str], optional: Sequence[str]) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip() and not required:
        return {}
    try:
        body = json.loads(raw)
    except ValueError as error:
        raise BadRequestError(f"the body is not JSON ({error}); send an object with {', '.join(required)}") from None
    if not isinstance(body, dict):
        raise BadRequestError(f"expected a JSON object with keys {', '.join([*required, *optional])}, got {raw[:80]!r}")
    missing = [k for k in required if k not in body]
    unknown = [k for k in body if k not in (*required, *optional)]
    if missing or unknown:
        wrong = [f"missing {', '.join(missing)}"] * bool(missing) + [f"unknown {', '.join(unknown)}"] * bool(unknown)
        expected = ", ".join([*required, *(f"{k} (optional)" for k in optional)]) or "none"
        raise BadRequestError(f"{'; '.join(wrong)}; the keys are: {expected}")
    return body


def _interrupt(process: subprocess.Popen[str]) -> None:
    """SIGINT to the trainer's process group, as a terminal's Ctrl-C (its async env workers ignore it)."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGINT)
        except ProcessLookupError:  # exited between the poll and the signal
            pass


def _default_sigint() -> None:
    """In the child before exec: a viewer started with SIGINT ignored (a background job of a script) would pass
    that on, and the trainer would not stop on it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _source_root() -> Path:
    return Path(replay.__file__).resolve().parents[1]
