"""The video gallery: the videos in a run's ``videos/`` folder, with the provenance their sidecars record.

``python -m render`` (and so every render job) writes ``<run>/videos/<name>.mp4`` through a hidden temporary file
moved into place when complete, then ``<name>.mp4.json``, the sidecar (:class:`render.encoder.VideoEncoder`).
The gallery lists the finished videos only: hidden files (a render in progress) are not videos yet.

A request names a video by its file name alone, checked against :data:`VIDEO_NAME` (no ``/``, no ``..``, a video
suffix) and then looked up as a regular file (not a symlink) directly inside that run's ``videos/`` folder, the
run itself found among the catalogue's ids: no request can reach a file anywhere else.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from render.viewer.errors import BadRequestError, NotFoundError
from render.viewer.runs import RunCatalogue, RunEntry
from replay.run_folder import RunFolder

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv")  # the containers the encoder writes
VIDEO_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*\.(?:mp4|mov|mkv)$")
MAX_NAME = 200
MEDIA_TYPES = {".mp4": "video/mp4", ".mov": "video/quicktime", ".mkv": "video/x-matroska"}


@dataclass(frozen=True)
class Video:
    """One finished video: its file, size and modification time, and its sidecar's provenance (``None`` with
    ``error`` saying why when the sidecar is missing or unreadable)."""

    name: str
    path: Path
    size: int
    created: float
    provenance: dict[str, Any] | None
    error: str | None

    @property
    def sidecar(self) -> Path:
        return sidecar_path(self.path)

    def as_json(self, run_id: str) -> dict[str, Any]:
        """The gallery's record: ``url`` plays it (seekable: byte ranges), ``url?download=1`` downloads it."""
        return {
            "name": self.name,
            "run": run_id,
            "url": f"/api/runs/{run_id}/videos/{self.name}",
            "size": self.size,
            "created": self.created,
            "provenance": self.provenance,
            "error": self.error,
        }


def video_routes(catalogue: RunCatalogue) -> list[Route]:
    """``GET /api/runs/{run_id}/videos`` (the gallery, newest first), ``GET .../videos/{name}`` (the file, with
    byte ranges so a ``<video>`` can seek; ``?download=1`` as an attachment) and ``DELETE .../videos/{name}`` (the
    video and its sidecar; 200 with the deleted video's record)."""

    def gallery(request: Request) -> Response:
        entry = find_run(catalogue, request.path_params["run_id"])
        return JSONResponse([video.as_json(entry.id) for video in list_videos(entry)])

    def play(request: Request) -> Response:
        entry = find_run(catalogue, request.path_params["run_id"])
        video = find_video(entry, request.path_params["name"])
        download = request.query_params.get("download", "0") not in ("", "0", "false")
        return FileResponse(
            video.path,
            media_type=MEDIA_TYPES[video.path.suffix],
            filename=video.name if download else None,
            headers={"Cache-Control": "no-cache"},
        )

    def delete(request: Request) -> Response:
        entry = find_run(catalogue, request.path_params["run_id"])
        video = find_video(entry, request.path_params["name"])
        delete_video(video)
        return JSONResponse(video.as_json(entry.id))

    return [
        Route("/api/runs/{run_id}/videos", gallery, methods=["GET"]),
        Route("/api/runs/{run_id}/videos/{name}", play, methods=["GET", "HEAD"]),
        Route("/api/runs/{run_id}/videos/{name}", delete, methods=["DELETE"]),
    ]


def sidecar_path(video: Path) -> Path:
    """The provenance sidecar the encoder writes beside ``video``: ``<name>.json``."""
    return video.with_name(video.name + ".json")


def find_run(catalogue: RunCatalogue, run_id: str) -> RunEntry:
    """The run ``run_id`` among those the catalogue found, readable or not; else a :class:`NotFoundError` listing
    the runs."""
    entry = catalogue.get(run_id)
    if entry is None:
        known = [e.id for e in catalogue.scan()]
        raise NotFoundError(f"no run {run_id!r}; the runs are: {', '.join(known) or 'none'} (GET /api/runs)")
    return entry


def videos_folder(entry: RunEntry) -> Path:
    return RunFolder(entry.path).videos


def list_videos(entry: RunEntry) -> list[Video]:
    """The finished videos of run ``entry``, newest first (none when it has no ``videos/`` folder)."""
    folder = videos_folder(entry)
    if not folder.is_dir():
        return []
    found = [_read(path) for path in folder.iterdir() if _is_video(path)]
    return sorted(found, key=lambda video: (video.created, video.name), reverse=True)


def find_video(entry: RunEntry, name: str) -> Video:
    """The video ``name`` of run ``entry``: a :class:`BadRequestError` for a name that is not a video file name,
    a :class:`NotFoundError` (listing the run's videos) for one that is not there."""
    check_name(name)
    path = videos_folder(entry) / name
    if not _is_video(path):
        names = [video.name for video in list_videos(entry)]
        raise NotFoundError(
            f"run {entry.id!r} has no video {name!r}; its videos are: {', '.join(names) or 'none'} "
            f"(GET /api/runs/{entry.id}/videos)"
        )
    return _read(path)


def delete_video(video: Video) -> None:
    """Delete ``video`` and its sidecar."""
    video.path.unlink(missing_ok=True)
    video.sidecar.unlink(missing_ok=True)


def check_name(name: str) -> None:
    if len(name) > MAX_NAME or not VIDEO_NAME.match(name):
        raise BadRequestError(
            f"{name[:MAX_NAME]!r} is not a video name: expected a file name of letters, digits, '-', '_' and "
            f"single dots, ending in {', '.join(VIDEO_SUFFIXES)} (no folders), at most {MAX_NAME} characters"
        )


def _is_video(path: Path) -> bool:
    name = path.name
    return len(name) <= MAX_NAME and VIDEO_NAME.match(name) is not None and not path.is_symlink() and path.is_file()


def _read(path: Path) -> Video:
    stat = path.stat()
    sidecar = sidecar_path(path)
    try:
        provenance = json.loads(sidecar.read_text())
        error = None if isinstance(provenance, dict) else f"{sidecar.name} does not hold a JSON object"
    except FileNotFoundError:
        provenance, error = None, f"no sidecar {sidecar.name}: the provenance is unknown"
    except (OSError, ValueError) as problem:
        provenance, error = None, f"{sidecar.name} cannot be read: {problem}"
    return Video(path.name, path, stat.st_size, stat.st_mtime, provenance if error is None else None, error)
