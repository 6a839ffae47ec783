"""Feeding the encoder from a producer thread, so re-simulation, analytics and compositing overlap with x264.

The producer runs the frame generator (emulator, network, overlay) and converts each frame to I420; the
calling thread only hands planes to the encoder. NumPy, OpenCV, torch and x264 release the GIL for their heavy
work, so on two cores the two sides run side by side and the slower one sets the pace.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable

import cv2
import numpy as np

from render.encoder import VideoEncoder

_DONE = object()


def encode_frames(frames: Iterable[np.ndarray], encoder: VideoEncoder, *, prefetch: int = 8) -> int:
    """Encode every RGB frame of ``frames``, produced in a background thread; returns how many were written.

    An exception in the producer is re-raised here; an exception here stops the producer.
    """
    if prefetch < 1:
        raise ValueError(f"expected a positive prefetch, got {prefetch}")
    ready: queue.Queue = queue.Queue(maxsize=prefetch)
    stop = threading.Event()
    failure: list[BaseException] = []
    expected = (encoder.height, encoder.width, 3)

    def produce() -> None:
        try:
            for frame in frames:
                if frame.shape != expected or frame.dtype != np.uint8:
                    raise ValueError(f"expected {expected} uint8 RGB frames, got {frame.shape} {frame.dtype}")
                planes = cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420)
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
