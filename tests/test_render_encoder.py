"""The encoder: decoded back with PyAV, atomic on failure, sidecar written; the threaded pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from render.encoder import VideoEncoder
from render.errors import EncoderError
from render.pipeline import encode_frames


def _frames(n: int, height: int = 48, width: int = 64) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 256, (n, height // 8, width // 8, 3), dtype=np.uint8)
    return [b.repeat(8, axis=0).repeat(8, axis=1) for b in blocks]


def _decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]


def test_frames_round_trip_within_yuv420_tolerance(tmp_path: Path) -> None:
    frames = _frames(12)
    out = tmp_path / "clip.mp4"
    with VideoEncoder(out, width=64, height=48, crf=0, preset="ultrafast", progress=False) as video:
        for frame in frames:
            video.write(frame)
    decoded = _decode(out)
    assert len(decoded) == 12 and decoded[0].shape == (48, 64, 3)
    for original, back in zip(frames, decoded, strict=True):
        assert np.abs(original.astype(int) - back.astype(int)).mean() < 3


def test_i420_planes_can_be_overwritten_once_written(tmp_path: Path) -> None:
    """write_i420 wraps the caller's planes without copying; FFmpeg must have its own copy when it returns,
    or the frames x264 still holds in its lookahead and frame threads would show later pictures."""
    frames = _frames(30)
    planes = np.empty((48 * 3 // 2, 64), np.uint8)
    out = tmp_path / "clip.mp4"
    with VideoEncoder(out, width=64, height=48, crf=0, preset="veryfast", progress=False) as video:
        for frame in frames:
            cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420, dst=planes)
            video.write_i420(planes)
            planes[:] = 0
    decoded = _decode(out)
    errors = [np.abs(f.astype(int) - d.astype(int)).mean() for f, d in zip(frames, decoded, strict=True)]
    assert len(decoded) == 30 and max(errors) < 3


def test_sidecar_holds_provenance_and_encoder_settings(tmp_path: Path) -> None:
    out = tmp_path / "clip.mp4"
    with VideoEncoder(out, width=64, height=48, fps=15, provenance={"run": "r1"}, progress=False) as video:
        video.provenance["episodes"] = [3]
        for frame in _frames(2):
            video.write(frame)
    sidecar = json.loads((tmp_path / "clip.mp4.json").read_text())
    assert sidecar["run"] == "r1" and sidecar["episodes"] == [3] and sidecar["frames"] == 2
    assert sidecar["encoder"]["fps"] == 15 and sidecar["encoder"]["codec"] == "libx264"


def test_exception_leaves_nothing_at_the_output(tmp_path: Path) -> None:
    out = tmp_path / "clip.mp4"
    with pytest.raises(RuntimeError, match="boom"):
        with VideoEncoder(out, width=64, height=48, progress=False) as video:
            video.write(_frames(1)[0])
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_existing_output_survives_a_failed_render(tmp_path: Path) -> None:
    out = tmp_path / "clip.mp4"
    out.write_bytes(b"old video")
    with pytest.raises(EncoderError, match="expected a \\(48, 64, 3\\) uint8 RGB frame"):
        with VideoEncoder(out, width=64, height=48, progress=False) as video:
            video.write(np.zeros((10, 10, 3), np.uint8))
    assert out.read_bytes() == b"old video" and sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"width": 63, "height": 48}, "even video width, got 63"),
        ({"width": 64, "height": 48, "preset": "warp"}, "unknown x264 preset 'warp'"),
        ({"width": 64, "height": 48, "crf": 60}, "crf must lie in 0..51, got 60"),
    ],
)
def test_bad_settings_are_refused_with_the_value(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(EncoderError, match=message):
        VideoEncoder(tmp_path / "clip.mp4", progress=False, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_unknown_container_is_refused(tmp_path: Path) -> None:
    with pytest.raises(EncoderError, match="name it .mp4"):
        VideoEncoder(tmp_path / "clip.avi2", width=64, height=48, progress=False)


def test_unclosed_encoder_warns_and_discards(tmp_path: Path) -> None:
    video = VideoEncoder(tmp_path / "clip.mp4", width=64, height=48, progress=False)
    video.write(_frames(1)[0])
    with pytest.warns(ResourceWarning, match="never closed"):
        video.__del__()
    assert list(tmp_path.iterdir()) == []


def test_pipeline_encodes_every_frame_in_order(tmp_path: Path) -> None:
    frames = _frames(20)
    out = tmp_path / "clip.mkv"
    with VideoEncoder(out, width=64, height=48, crf=0, preset="ultrafast", progress=False) as video:
        assert encode_frames(iter(frames), video, prefetch=2) == 20
    decoded = _decode(out)
    errors = [np.abs(f.astype(int) - d.astype(int)).mean() for f, d in zip(frames, decoded, strict=True)]
    assert len(decoded) == 20 and max(errors) < 3


def test_pipeline_reraises_producer_errors_and_discards(tmp_path: Path) -> None:
    def frames():
        yield from _frames(3)
        raise KeyError("emulator went away")

    out = tmp_path / "clip.mp4"
    with pytest.raises(KeyError, match="emulator went away"):
        with VideoEncoder(out, width=64, height=48, progress=False) as video:
            encode_frames(frames(), video)
    assert not out.exists()
