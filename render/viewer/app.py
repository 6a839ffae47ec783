"""The viewer's web application: a JSON API over the runs it was given, and their frames as PNGs.

Pages (``/``, ``/runs/{id}``, ``/runs/{id}/episodes/{i}?step=k&overlay=full``) are static HTML and JavaScript from
``static/`` that read the API; the charts are Plotly's (:func:`plotly_js`: npm's basic bundle when
``npm ci --prefix render/viewer`` installed it, else the full bundle of the ``plotly`` Python package). The API:
``GET /api/runs``, ``GET /api/runs/{id}``, ``GET /api/runs/{id}/episodes``, ``GET /api/runs/{id}/metrics``,
``GET /api/runs/{id}/episodes/{i}/readings`` and
``GET /api/runs/{id}/episodes/{i}/frames/{k}.png?overlay=raw|minimal|full``. Every error is JSON
``{"error": "..."}`` naming the run, the episode or the step and what is valid: 404 for what does not exist,
400 for a bad parameter, 422 for a run whose log cannot be read or a frame that cannot be drawn (e.g.
``overlay=full`` without the checkpoints).
"""

from __future__ import annotations

import contextlib
import html
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from render.config import OVERLAYS
from render.errors import RenderError
from render.policies import REBUILT
from render.source import RenderSource
from render.viewer.errors import BadRequestError, NotFoundError, UnreadableError, ViewerError
from render.viewer.frames import FrameCache
from render.viewer.jobs import JobQueue, job_routes
from render.viewer.readings import REBUILT_HEADER, Metrics, Readings
from render.viewer.runs import RunCatalogue, RunEntry
from render.viewer.training import TrainingManager, training_routes
from replay.errors import ReplayError


class StrictJSONResponse(JSONResponse):
    """JSON that refuses NaN and infinities rather than sending what browsers cannot parse."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


def create_app(
    folders: list[Path],
    *,
    cache_size: int = 4,
    jobs: JobQueue | None = None,
    training: TrainingManager | None = None,
) -> Starlette:
    """The viewer over the run folders in ``folders``, keeping at most ``cache_size`` episodes open, with render
    ``jobs`` (by default a :class:`JobQueue` of one renderer at a time) and ``training`` (by default a
    :class:`TrainingManager` writing new runs into ``data/runs`` or the first writable folder); both are closed
    with the app (running renders cancelled, trainers stopped as Ctrl-C does)."""
    catalogue = RunCatalogue(folders)
    cache = FrameCache(cache_size)
    readings = Readings()
    run_metrics = Metrics()
    jobs = jobs if jobs is not None else JobQueue()
    training = training if training is not None else TrainingManager(folders)

    def runs(request: Request) -> Response:
        return StrictJSONResponse([entry.as_json() for entry in catalogue.scan()])

    def run(request: Request) -> Response:
        entry = _readable(catalogue, request.path_params["run_id"])
        return StrictJSONResponse({**entry.as_json(), "summary": entry.summary.as_json()})

    def episodes(request: Request) -> Response:
        return StrictJSONResponse(list(_readable(catalogue, request.path_params["run_id"]).episodes))

    def frame(request: Request) -> Response:
        entry = _readable(catalogue, request.path_params["run_id"])
        index = _index(entry, request.path_params["episode"])
        step = _step(entry, index, request.path_params["step"])
        overlay = request.query_params.get("overlay", "full")
        if overlay not in OVERLAYS:
            raise BadRequestError(f"overlay={overlay!r} is not one of {', '.join(OVERLAYS)}")
        source = RenderSource.resolve(run=entry.path, log=None, checkpoint=REBUILT)
        try:
            png, rebuilt = cache.frame(source, index, step, overlay)
        except (RenderError, ReplayError) as error:
            return _error(UnreadableError.status, f"run {entry.id!r}, episode {index}, step {step}: {error}")
        headers = {"Cache-Control": "no-cache"}
        if rebuilt is not None:  # the page reads the networks again when this differs from its readings' "rebuilt"
            headers[REBUILT_HEADER] = ",".join(str(v) for v in sorted(rebuilt))
        return Response(png, media_type="image/png", headers=headers)

    def metrics(request: Request) -> Response:
        entry = _readable(catalogue, request.path_params["run_id"])
        return StrictJSONResponse(run_metrics.of(entry.path))

    def episode_readings(request: Request) -> Response:
        entry = _readable(catalogue, request.path_params["run_id"])
        index = _index(entry, request.path_params["episode"])
        try:
            reading = readings.episode(entry.path, index)
        except (RenderError, ReplayError, OSError) as error:
            return _error(UnreadableError.status, f"run {entry.id!r}, episode {index}: {error}")
        return StrictJSONResponse(reading)

    def api(request: Request) -> Response:
        listed = [
            f"{' '.join(sorted(route.methods - {'HEAD'}))} {route.path}"
            for route in routes
            if isinstance(route, Route) and route.path.startswith("/api") and route.methods
        ]
        return StrictJSONResponse({"api": listed})

    def page(name: str) -> Any:
        def handler(request: Request) -> Response:
            # a run that does not read yet (a trainer before its first flush) gets its page: it says why and
            # tries again; what does not exist is a page saying so
            try:
                if "run_id" in request.path_params:
                    entry = _known(catalogue, request.path_params["run_id"])
                    if "episode" in request.path_params and entry.summary is not None:
                        _index(entry, request.path_params["episode"])
            except ViewerError as error:
                return HTMLResponse(_ERROR_PAGE.format(message=html.escape(str(error))), status_code=error.status)
            return FileResponse(STATIC / f"{name}.html", headers={"Cache-Control": "no-cache"})

        return handler

    def plotly(request: Request) -> Response:
        return FileResponse(plotly_js(), media_type="text/javascript", headers={"Cache-Control": "max-age=86400"})

    async def viewer_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, ViewerError)
        return _error(error.status, str(error))

    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        return _error(error.status_code, f"{request.url.path}: {error.detail}")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        cache.start()  # the replay worker, so the first frame asked for does not wait for it to start
        try:
            yield
        finally:
            jobs.close()
            training.close()
            cache.close()

    routes = [
        Route("/", page("runs")),
        Route("/runs/{run_id}", page("run")),
        Route("/runs/{run_id}/episodes/{episode}", page("episode")),
        Route("/runs/{run_id}/videos", page("videos")),
        Route("/training", page("training")),
        Route("/api", api),
        Route("/api/runs", runs),
        Route("/api/runs/{run_id}", run),
        Route("/api/runs/{run_id}/episodes", episodes),
        Route("/api/runs/{run_id}/metrics", metrics),
        Route("/api/runs/{run_id}/episodes/{episode}/readings", episode_readings),
        Route("/api/runs/{run_id}/episodes/{episode}/frames/{step}.png", frame),
        *job_routes(catalogue, jobs),
        *training_routes(catalogue, training),
        Route("/vendor/plotly.min.js", plotly),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(
        routes=routes,
        exception_handlers={ViewerError: viewer_error, HTTPException: http_error},
        lifespan=lifespan,
    )


STATIC = Path(__file__).with_name("static")
_ERROR_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">
<title>Not found · ale-replay viewer</title><link rel="stylesheet" href="/static/viewer.css"></head><body>
<header class="top"><a class="brand" href="/">ale-replay viewer</a><a href="/">Runs</a></header>
<main><h1>Nothing here</h1><p class="error">{message}</p><p><a href="/">All runs</a></p></main></body></html>"""


# plotly.js's basic bundle (scatter, bar, pie: all the run page draws), from npm (``render/viewer/package.json``):
# 1.2 MB to compile on a first visit where the full bundle is 4.8 MB (a cold run page ready in 0.67 s, not 1.46 s:
# python tests/bench/bench_viewer_pages.py).
PLOTLY_BASIC = Path(__file__).with_name("node_modules") / "plotly.js-basic-dist-min" / "plotly-basic.min.js"


def plotly_js() -> Path:
    """The plotly.js bundle the pages load: the basic one when npm installed it, else the full one the ``plotly``
    Python package ships (no CDN either way: the viewer works offline)."""
    if PLOTLY_BASIC.is_file():
        return PLOTLY_BASIC
    import plotly

    return Path(plotly.__file__).with_name("package_data") / "plotly.min.js"


def _error(status: int, message: str) -> Response:
    return StrictJSONResponse({"error": message}, status_code=status)


def _known(catalogue: RunCatalogue, run_id: str) -> RunEntry:
    entry = catalogue.get(run_id)
    if entry is None:
        known = [e.id for e in catalogue.scan()]
        raise NotFoundError(f"no run {run_id!r}; the runs are: {', '.join(known) or 'none'} (GET /api/runs)")
    return entry


def _readable(catalogue: RunCatalogue, run_id: str) -> RunEntry:
    entry = _known(catalogue, run_id)
    if entry.summary is None:
        raise UnreadableError(f"run {run_id!r} cannot be read: {entry.error}")
    return entry


def _index(entry: RunEntry, text: str) -> int:
    count = len(entry.episodes)
    if not text.isdecimal() or int(text) >= count:
        raise NotFoundError(f"run {entry.id!r} has no episode {text!r}; its episodes are 0..{count - 1}")
    return int(text)


def _step(entry: RunEntry, index: int, text: str) -> int:
    length = entry.episodes[index]["length"]
    if not text.isdecimal() or int(text) > length:
        raise NotFoundError(
            f"run {entry.id!r}, episode {index} has no step {text!r}; its frames are steps 0..{length} "
            "(0 is the reset frame)"
        )
    return int(text)
