"""The one place that touches PyAV: H.264 (libx264, yuv420p), written atomically, with a JSON sidecar.

The encoder writes into a temporary file beside the output and moves it into place only when ``close()``
succeeds, so a crash or an exception leaves nothing at the output path. The sidecar ``<output>.json`` records
the provenance the caller hands in (run, log, episodes, checkpoints, config). A write the system refuses (a full
disk, a file size limit, an I/O error) is an :class:`EncoderError` naming the output, the OS error and the fix,
and the temporary file goes with it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import secrets
import warnings
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import av
import cv2
import numpy as np
from tqdm import tqdm

from render.errors import EncoderError
from replay.errors import describe_os_error

PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


class VideoEncoder:
    """Encodes RGB frames of one size into an H.264 video, atomically, with a provenance sidecar.

    Example:
        >>> import numpy as np, tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "clip.mp4"
        >>> with VideoEncoder(out, width=64, height=48, progress=False) as video:
        ...     video.write(np.zeros((48, 64, 3), np.uint8))
        >>> out.exists(), out.with_name("clip.mp4.json").exists()
        (True, True)
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        width: int,
        height: int,
        fps: int = 30,
        crf: int = 23,
        preset: str = "veryfast",
        provenance: Mapping[str, Any] | None = None,
        total_frames: int | None = None,
        progress: bool = True,
        description: str | None = None,
    ) -> None:
        for name, value in (("width", width), ("height", height)):
            if value <= 0 or value % 2:
                raise EncoderError(f"yuv420p needs a positive even video {name}, got {value}; adjust the size")
        if fps <= 0:
            raise EncoderError(f"expected a positive frame rate, got {fps}")
        if not 0 <= crf <= 51:
            raise EncoderError(f"x264 crf must lie in 0..51, got {crf}")
        if preset not in PRESETS:
            raise EncoderError(f"unknown x264 preset {preset!r}; choose one of {', '.join(PRESETS)}")
        self.path = Path(path)
        if self.path.is_dir():
            raise EncoderError(
                f"output {self.path} is a directory; name a video file, e.g. output={self.path / 'video.mp4'}"
            )
        container_format = _container_format(self.path)  # refused before any folder is made
        self.sidecar_path = self.path.with_name(self.path.name + ".json")
        self.width, self.height, self.fps = width, height, fps
        self.provenance: dict[str, Any] = dict(provenance or {})
        self.frames_written = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._temp = _new_temp(self.path, f".part{self.path.suffix}")
        except OSError as error:
            raise EncoderError(
                f"cannot write the video {self.path} ({error.strerror or error}); choose an output in a folder you "
                "can write to"
            ) from None
        try:
            self._container = av.open(str(self._temp), mode="w", format=container_format)
            stream = self._container.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.options = {"crf": str(crf), "preset": preset}
            # Frame threading is faster and smaller than PyAV's default slice threading (measured on this machine kind).
            stream.thread_type = "FRAME"
        except Exception:
            self._temp.unlink(missing_ok=True)
            raise
        self._stream = stream
        self._settings = {"codec": "libx264", "pix_fmt": "yuv420p", "fps": fps, "crf": crf, "preset": preset}
        self._bar = tqdm(total=total_frames, desc=description or self.path.name, unit="frame", disable=not progress)
        self._closed = False

    def write(self, frame: np.ndarray) -> None:
        """Encode one ``(height, width, 3)`` uint8 RGB frame."""
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise EncoderError(
                f"expected a ({self.height}, {self.width}, 3) uint8 RGB frame for {self.path.name}, "
                f"got {frame.shape} {frame.dtype}"
            )
        self.write_i420(cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420))

    def write_i420(self, planes: np.ndarray) -> None:
        """Encode one frame already converted with ``cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)``.

        OpenCV's conversion (BT.601, limited range, what decoders assume for untagged H.264) is ~10x faster
        than PyAV's swscale path, and lets a producer thread convert while this thread encodes. The planes are
        wrapped, not copied (``from_ndarray`` would allocate and copy 1.4 MB a 720p frame); FFmpeg takes its
        own copy before ``encode`` returns, so the caller may overwrite ``planes`` as soon as this returns.
        """
        if self._closed:
            raise EncoderError(f"{self.path.name} is already closed; open a new VideoEncoder to write more")
        if planes.shape != (self.height * 3 // 2, self.width):
            raise EncoderError(
                f"expected I420 planes of shape ({self.height * 3 // 2}, {self.width}), got {planes.shape}"
            )
        frame = av.VideoFrame.from_numpy_buffer(np.ascontiguousarray(planes), format="yuv420p")
        try:
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        except OSError as error:
            self.abort()
            raise self._write_failed(error) from None
        self.frames_written += 1
        self._bar.update()

    def close(self) -> None:
        """Flush the encoder, move the video into place and write the sidecar. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            try:
                for packet in self._stream.encode():
                    self._container.mux(packet)
                self._container.close()
            except OSError as error:
                raise self._write_failed(error) from None
            if self.frames_written == 0:
                raise EncoderError(f"no frame was written to {self.path}; nothing to save")
            try:
                os.replace(self._temp, self.path)
            except OSError as error:
                raise self._write_failed(error) from None
        except BaseException:
            self._discard()
            raise
        finally:
            self._bar.close()
        sidecar = {
            "video": self.path.name,
            "frames": self.frames_written,
            "width": self.width,
            "height": self.height,
            "encoder": self._settings,
            **self.provenance,
        }
        text = json.dumps(_json_safe(sidecar), indent=2, default=str, allow_nan=False)
        try:
            _write_atomically(self.sidecar_path, text + "\n")
        except OSError as error:
            raise EncoderError(
                f"the video {self.path} is complete, but writing its provenance sidecar {self.sidecar_path.name} "
                f"failed: {describe_os_error(error)}; {_fix(error, self.path.parent)}"
            ) from None

    def abort(self) -> None:
        """Discard everything written so far; nothing is left at the output path."""
        if self._closed:
            return
        self._closed = True
        self._bar.close()
        self._discard()

    def _discard(self) -> None:
        """Close the container and delete the temporary file. Closing writes the trailer, which fails again
        after a refused write (a full disk stays full); the file is deleted either way, so that error must not
        hide the one being handled."""
        try:
            with contextlib.suppress(OSError, av.FFmpegError):
                self._container.close()
        finally:
            self._temp.unlink(missing_ok=True)

    def _write_failed(self, error: OSError) -> EncoderError:
        folder = self._temp.parent
        return EncoderError(
            f"writing the video {self.path} (through a temporary file in {folder}) failed: {describe_os_error(error)}; "
            f"nothing was left at the output; {_fix(error, folder)}"
        )

    def __enter__(self) -> VideoEncoder:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            warnings.warn(
                f"VideoEncoder for {self.path} was never closed, so the video was discarded; "
                "use it as a context manager",
                ResourceWarning,
                stacklevel=2,
            )
            self.abort()


def _json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (an unfinished episode's NaN reward) as ``None``: strict JSON has no
    NaN, and JSON readers other than Python's refuse it."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value


def _fix(error: OSError, folder: Path) -> str:
    """What to do about a write into ``folder`` that failed with ``error``."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"free space in {folder}, or choose another output=<file> on a disk with room"
    if error.errno == errno.EFBIG:
        return (
            "the file outgrew the largest the file system or this process (ulimit -f) allows; raise the limit, "
            "or choose another output=<file> on a file system that allows larger files"
        )
    return f"choose another output=<file> in a folder you can write to, or check {folder}'s disk"


def _container_format(path: Path) -> str:
    formats = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
    try:
        return formats[path.suffix.lower()]
    except KeyError:
        raise EncoderError(f"cannot tell the container for {path}; name it .mp4, .mov or .mkv") from None


def _new_temp(path: Path, suffix: str) -> Path:
    """An empty new file beside ``path`` with a unique hidden name. Unlike ``tempfile.mkstemp`` (always 0600), it
    takes the permissions the umask gives any new file, so the finished video can be shared like any other."""
    for _ in range(100):
        temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{suffix}")
        try:
            os.close(os.open(temp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except FileExistsError:
            continue
        return temp
    raise EncoderError(f"could not create a temporary file beside {path}; clear the stale .{path.name}.* files")


def _write_atomically(path: Path, text: str) -> None:
    temp = _new_temp(path, ".part")
    try:
        temp.write_text(text)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
