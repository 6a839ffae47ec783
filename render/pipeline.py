"""Feeding the encoder from a producer thread, so re-simulation, analytics and compositing overlap with x264.

The producer runs the frame generator (emulator, network, overlay) and converts each frame to I420; the
calling thread writes the converted regions into the planes it keeps and hands those to the encoder. NumPy,
OpenCV, torch and x264 release the GIL for their heavy work, so on two cores the two sides run side by side and
the slower one sets the pace.

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

from render.draw.compose import SCALAR_TAIL, VECTOR_COLUMNS, Rect
from render.encoder import VideoEncoder

_DONE = object()


@dataclass(frozen=True)
class Rendered:
    """A frame in a buffer that is redrawn in place: ``damage`` holds the rectangles that changed since the
    buffer was last handed over (``None``: treat all of it as new)."""

    image: np.ndarray
    damage: Sequence[Rect] | None = None


@dataclass(frozen=True)
class I420Update:
    """One frame's conversion, made where the frame is drawn and applied where it is encoded: the ``whole``
    planes of source buffer ``buffer``, or ``patches`` (``y0, y1, x0, x1, I420 of that region``) onto the planes
    last sent for it. ``forget`` names buffers whose planes are no longer needed."""

    buffer: int
    whole: np.ndarray | None
    patches: tuple[tuple[int, int, int, int, np.ndarray], ...] = ()
    forget: tuple[int, ...] = ()


class I420Converter:
    """RGB frames to I420 planes (``cv2.COLOR_RGB2YUV_I420`` layout), converting only what changed.

    Planes are kept per source buffer (an overlay's canvas, a title card): a :class:`Rendered` frame of a known
    buffer gets only its damage converted, aligned out to whole 2x2 chroma blocks; anything else is converted
    whole. :meth:`convert` does both halves; :meth:`prepare` (convert the changed regions) and :meth:`apply`
    (write them into the kept planes) may run in two threads, one calling each, as :func:`encode_frames`
    does: then only the changed regions travel between them. The planes returned are reused: copy them before
    the next call.

    Example:
        >>> rgb = np.zeros((4, 4, 3), np.uint8)
        >>> converter = I420Converter()
        >>> _ = converter.convert(Rendered(rgb))
        >>> rgb[0, 0] = 255
        >>> converter.convert(Rendered(rgb, [Rect(0, 0, 1, 1)]))[0, 0]
        np.uint8(235)
    """

    def __init__(self, buffers: int = 4) -> None:
        self._known: dict[int, np.ndarray] = {}  # preparing side: buffers whose planes the applying side holds
        self._planes: dict[int, np.ndarray] = {}  # applying side
        self._buffers = buffers

    def convert(self, frame: Rendered | np.ndarray) -> np.ndarray:
        return self.apply(self.prepare(frame))

    def prepare(self, frame: Rendered | np.ndarray) -> I420Update:
        """Convert what changed in ``frame`` since its buffer was last prepared (all of it if unknown)."""
        if isinstance(frame, np.ndarray):
            frame = Rendered(frame)
        image, damage = frame.image, frame.damage
        key = id(image)
        # The buffers themselves are kept, not just their ids: an id is unique only while its object lives, so
        # a known id is this very buffer.
        if key not in self._known or damage is None:
            forget = ()
            self._known.pop(key, None)
            if len(self._known) >= self._buffers:
                oldest = next(iter(self._known))
                del self._known[oldest]
                forget = (oldest,)
            self._known[key] = image
            return I420Update(key, cv2.cvtColor(image, cv2.COLOR_RGB2YUV_I420), forget=forget)
        self._known[key] = self._known.pop(key)  # most recently used last: evicted last
        height, width = image.shape[:2]
        convert = cv2.cvtColor
        patches = []
        for rect in damage:
            # Per rectangle, Python costs more than the pixels (most are small): keep this loop lean.
            x0, y0 = rect.x & ~1, rect.y & ~1
            x1, y1 = min(width, (rect.x + rect.w + 1) & ~1), min(height, (rect.y + rect.h + 1) & ~1)
            if x1 <= x0 or y1 <= y0:
                continue
            spare = -(x1 - x0) % VECTOR_COLUMNS  # even: x0, x1 and the run are
            if spare < VECTOR_COLUMNS - SCALAR_TAIL:  # widen to whole runs, rightwards, then leftwards
                x1 += spare
                if x1 > width:
                    x0, x1 = max(0, x0 - (x1 - width)), width
            patches.append((y0, y1, x0, x1, convert(image[y0:y1, x0:x1], cv2.COLOR_RGB2YUV_I420)))
        return I420Update(key, None, tuple(patches))

    def apply(self, update: I420Update) -> np.ndarray:
        """Write ``update`` into the planes kept for its buffer and return them."""
        for key in update.forget:
            self._planes.pop(key, None)
        if update.whole is not None:
            self._planes[update.buffer] = update.whole
            return update.whole
        planes = self._planes[update.buffer]
        height = planes.shape[0] * 2 // 3
        luma = planes[:height]
        chroma = planes.reshape(-1)[height * planes.shape[1] :].reshape(2, height // 2, planes.shape[1] // 2)
        for y0, y1, x0, x1, part in update.patches:
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

    Up to ``prefetch`` converted frames wait for the encoder, each only its changed regions (a whole frame
    is 1.4 MB of I420 at 720p). The deeper queue evens out x264's frame threads against the producer's bursts (a
    batch of analytics every 64 frames): rendering kept 1.84-1.88 of this machine's 2 cores busy with 32 against
    1.73-1.74 with 8 (``tests/bench/bench_render_parts.py``, ``queue``).

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
    stop = threading.Event()
    failure: list[BaseException] = []
    expected = (encoder.height, encoder.width, 3)
    # The producer converts each frame's damage; this thread writes it into planes it keeps and hands those to
    # x264, which copies them before ``write_i420`` returns. So only the changed regions wait in the queue.
    converter = I420Converter()

    def produce() -> None:
        try:
            for frame in frames:
                image = frame.image if isinstance(frame, Rendered) else frame
                if image.shape != expected or image.dtype != np.uint8:
                    raise ValueError(f"expected {expected} uint8 RGB frames, got {image.shape} {image.dtype}")
                update = converter.prepare(frame)
                while not stop.is_set():
                    try:
                        ready.put(update, timeout=0.1)
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
            encoder.write_i420(converter.apply(item))
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
