"""Feeding the encoder from a producer thread, so re-simulation, analytics and compositing overlap with x264.

The producer runs the frame generator (emulator, network, overlay) and converts each frame to I420; the
calling thread only hands planes to the encoder. NumPy, OpenCV, torch and x264 release the GIL for their heavy
work, so on two cores the two sides run side by side and the slower one sets the pace.

A frame may come as a :class:`Rendered`: the overlay's reused buffer plus the rectangles that changed since
it was last drawn. Then only those rectangles are converted, into planes kept per buffer; the result is byte
for byte the conversion of the whole frame (tested), at a fraction of the cost when little moves.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from render.compose import Rect
from render.encoder import VideoEncoder

_DONE = object()


@dataclass(frozen=True)
class Rendered:
    """A frame in a buffer that is redrawn in place: ``damage`` holds the rectangles that changed since the
    buffer was last handed over (``None``: treat all of it as new)."""

    image: np.ndarray
    damage: Sequence[Rect] | None = None


class I420Converter:
    """RGB frames to I420 planes (``cv2.COLOR_RGB2YUV_I420`` layout), converting only what changed.

    Planes are kept per source buffer (an overlay's canvas, a title card): a :class:`Rendered` frame of a known
    buffer gets only its damage converted, aligned out to whole 2x2 chroma blocks; anything else is converted
    whole. The returned array is reused: copy it before the next call.

    Example:
        >>> rgb = np.zeros((4, 4, 3), np.uint8)
        >>> converter = I420Converter()
        >>> _ = converter.convert(Rendered(rgb))
        >>> rgb[0, 0] = 255
        >>> converter.convert(Rendered(rgb, [Rect(0, 0, 1, 1)]))[0, 0]
        np.uint8(235)
    """

    def __init__(self, buffers: int = 4) -> None:
        self._planes: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._buffers = buffers

    def convert(self, frame: Rendered | np.ndarray) -> np.ndarray:
        if isinstance(frame, np.ndarray):
            frame = Rendered(frame)
        image, damage = frame.image, frame.damage
        height, width = image.shape[:2]
        known = self._planes.get(id(image))
        if known is None or known[0] is not image or damage is None or known[1].shape != (height * 3 // 2, width):
            planes = cv2.cvtColor(image, cv2.COLOR_RGB2YUV_I420)
            self._planes.pop(id(image), None)
            if len(self._planes) >= self._buffers:
                self._planes.pop(next(iter(self._planes)))
            self._planes[id(image)] = (image, planes)
            return planes
        self._planes[id(image)] = self._planes.pop(id(image))  # most recently used last: evicted last
        planes = known[1]
        luma = planes[:height]
        chroma = planes.reshape(-1)[height * width :].reshape(2, height // 2, width // 2)  # U then V
        convert = cv2.cvtColor
        for rect in damage:
            # Per rectangle, Python costs more than the pixels (most are small): keep this loop lean.
            x0, y0 = rect.x & ~1, rect.y & ~1
            x1, y1 = min(width, (rect.x + rect.w + 1) & ~1), min(height, (rect.y + rect.h + 1) & ~1)
            if x1 <= x0 or y1 <= y0:
                continue
            part = convert(image[y0:y1, x0:x1], cv2.COLOR_RGB2YUV_I420)
            h = y1 - y0
            luma[y0:y1, x0:x1] = part[:h]
            chroma[:, y0 >> 1 : y1 >> 1, x0 >> 1 : x1 >> 1] = part[h:].reshape(2, h >> 1, (x1 - x0) >> 1)
        return planes


def encode_frames(
    frames: Iterable[np.ndarray | Rendered],
    encoder: VideoEncoder,
    *,
    prefetch: int = 32,
    opencv_threads: int | None = 1,
) -> int:
    """Encode every RGB frame of ``frames``, produced in a background thread; returns how many were written.

    Up to ``prefetch`` converted frames wait for the encoder (1.4 MB each at 720p). The deeper queue evens out
    x264's frame threads against the producer's bursts (a batch of analytics every 64 frames): rendering kept
    1.88 of this machine's 2 cores busy with 32 against 1.73 with 8 (``tests/bench/bench_render_parts.py``).

    An exception in the producer is re-raised here; an exception here stops the producer. While it runs,
    OpenCV uses ``opencv_threads`` threads (``None``: leave OpenCV's setting alone): x264 keeps every core
    busy, and OpenCV's own pool, which splits each full-frame call and then spins waiting for work, cost
    ~0.6-0.8 ms of CPU a 720p frame here for nothing (``tests/bench/bench_render_parts.py``).
    """
    if prefetch < 1:
        raise ValueError(f"expected a positive prefetch, got {prefetch}")
    if opencv_threads is None:
        return _encode_frames(frames, encoder, prefetch)
    previous = cv2.getNumThreads()
    cv2.setNumThreads(opencv_threads)
    try:
        return _encode_frames(frames, encoder, prefetch)
    finally:
        cv2.setNumThreads(previous)


def _encode_frames(frames: Iterable[np.ndarray | Rendered], encoder: VideoEncoder, prefetch: int) -> int:
    ready: queue.Queue = queue.Queue(maxsize=prefetch)
    # plane buffers go round: the producer fills a free one, the encoder hands it back once written
    spare: queue.SimpleQueue = queue.SimpleQueue()
    stop = threading.Event()
    failure: list[BaseException] = []
    expected = (encoder.height, encoder.width, 3)
    converter = I420Converter()

    def produce() -> None:
        try:
            for frame in frames:
                image = frame.image if isinstance(frame, Rendered) else frame
                if image.shape != expected or image.dtype != np.uint8:
                    raise ValueError(f"expected {expected} uint8 RGB frames, got {image.shape} {image.dtype}")
                converted = converter.convert(frame)
                try:
                    planes = spare.get_nowait()
                except queue.Empty:
                    planes = np.empty_like(converted)
                np.copyto(planes, converted)
                while not stop.is_set():
                    try:
                        ready.put(planes, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except BaseException as error:  # handed to the consumer, which re-raises it
            failure.append(error)
        finally:
            ready.put(_DONE)

    producer = threading.Thread(target=produce, name="render-producer", daemon=True)
    producer.start()
    written = 0
    try:
        while (item := ready.get()) is not _DONE:
            encoder.write_i420(item)
            spare.put(item)
            written += 1
    finally:
        stop.set()
        while producer.is_alive():
            try:
                ready.get(timeout=0.1)
            except queue.Empty:
                pass
        producer.join()
    if failure:
        raise failure[0]
    return written
