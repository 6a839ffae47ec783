"""The encoder: decoded back with PyAV, atomic on failure, sidecar written; the threaded pipeline."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from render.draw.compose import Rect, conversion_cost
from render.encoder import VideoEncoder
from render.errors import EncoderError
from render.pipeline import I420Converter, Rendered, encode_frames


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


def test_outputs_take_the_permissions_of_any_new_file(tmp_path: Path) -> None:
    """The temporary file becomes the video: it must not keep mkstemp's owner-only 0600."""
    previous = os.umask(0o022)
    try:
        with VideoEncoder(tmp_path / "clip.mp4", width=64, height=48, progress=False) as video:
            video.write(_frames(1)[0])
    finally:
        os.umask(previous)
    for name in ("clip.mp4", "clip.mp4.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name


def test_a_directory_as_output_is_refused_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "videos").mkdir()
    with pytest.raises(EncoderError, match=r"videos is a directory; name a video file, e.g. output=.*video.mp4"):
        VideoEncoder(tmp_path / "videos", width=64, height=48, progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["videos"] and not any((tmp_path / "videos").iterdir())


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


def test_unknown_container_is_refused_before_its_folder_is_made(tmp_path: Path) -> None:
    with pytest.raises(EncoderError, match="name it .mp4"):
        VideoEncoder(tmp_path / "new" / "clip.avi2", width=64, height=48, progress=False)
    assert list(tmp_path.iterdir()) == []


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


@pytest.mark.parametrize("size", [(720, 1280), (42, 62)])
def test_converting_only_the_damage_gives_the_whole_frame_conversion(size: tuple[int, int]) -> None:
    """Rectangles at odd places and sizes, overlapping, at the edges: every frame's planes must be the bytes
    of converting the whole frame (chroma is one value per 2x2 block, so rectangles are widened to whole blocks)."""
    height, width = size
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    other = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    converter = I420Converter()
    converter.convert(Rendered(image))
    converter.convert(Rendered(other))  # a second buffer (a title card) in between keeps its own planes
    for frame in range(12):
        damage = []
        for _ in range(int(rng.integers(0, 5))):
            x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
            rect = Rect(x, y, int(rng.integers(1, width - x + 1)), int(rng.integers(1, height - y + 1)))
            image[rect.slices] = rng.integers(0, 256, (rect.h, rect.w, 3), dtype=np.uint8)
            damage.append(rect)
        planes = converter.convert(Rendered(image, damage))
        np.testing.assert_array_equal(planes, cv2.cvtColor(image, cv2.COLOR_RGB2YUV_I420), err_msg=f"frame {frame}")
    np.testing.assert_array_equal(converter.convert(Rendered(other, ())), cv2.cvtColor(other, cv2.COLOR_RGB2YUV_I420))


def test_damage_regions_are_widened_to_whole_conversion_runs_and_stay_exact() -> None:
    """OpenCV converts rows in runs of 128 columns and the rest pixel by pixel, ~8x slower: a region with a tail of
    more than 16 columns is converted widened to whole runs (rightwards, else leftwards at the frame's edge), a
    short tail is left as it is, and the planes are the whole frame's conversion either way."""
    rng = np.random.default_rng(12)
    image = rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    converter = I420Converter()
    converter.convert(Rendered(image))
    image[...] = rng.integers(0, 256, image.shape, dtype=np.uint8)
    damage = [Rect(0, 0, 1280, 720), Rect(858, 76, 230, 344), Rect(1217, 237, 23, 22), Rect(3, 5, 10, 4)]
    update = converter.prepare(Rendered(image, damage))
    assert [(x0, x1) for _, _, x0, x1, _ in update.patches] == [(0, 1280), (858, 1114), (1152, 1280), (2, 14)]
    np.testing.assert_array_equal(converter.apply(update), cv2.cvtColor(image, cv2.COLOR_RGB2YUV_I420))
    assert conversion_cost(Rect(858, 76, 230, 344)) < 2 * conversion_cost(Rect(858, 76, 115, 344))


def test_converter_halves_keep_planes_per_buffer_and_forget_the_oldest() -> None:
    """Prepared on one side and applied on the other (as the pipeline's two threads do), with more buffers in
    play than planes kept: every frame is the whole frame's conversion, and a buffer forgotten on one side is
    forgotten on the other (its next frame comes whole)."""
    rng = np.random.default_rng(8)
    images = [rng.integers(0, 256, (12, 16, 3), dtype=np.uint8) for _ in range(3)]
    converter = I420Converter(buffers=2)
    for step, which in enumerate([0, 1, 0, 2, 1, 0, 2, 2, 1]):
        image = images[which]
        image[2:5, 3:9] = rng.integers(0, 256, (3, 6, 3), dtype=np.uint8)
        update = converter.prepare(Rendered(image, [Rect(3, 2, 6, 3)]))
        planes = converter.apply(update)
        np.testing.assert_array_equal(planes, cv2.cvtColor(image, cv2.COLOR_RGB2YUV_I420), err_msg=f"step {step}")
        assert len(converter._planes) <= 2
    # buffers 2 and 1 were used last: 0 is forgotten, so it comes whole, and then as patches again
    first = converter.prepare(Rendered(images[0], [Rect(0, 0, 2, 2)]))
    assert first.whole is not None and first.forget == (id(images[2]),)
    converter.apply(first)
    assert converter.prepare(Rendered(images[0], [Rect(0, 0, 2, 2)])).whole is None
    assert sorted(converter._planes) == sorted(id(images[k]) for k in (0, 1))


def test_pipeline_encodes_damaged_frames_like_whole_ones(tmp_path: Path) -> None:
    """The same picture sequence fed whole and fed as one redrawn buffer with its damage: the same video."""
    frames = _frames(16)
    buffer = frames[0].copy()

    def redrawn():
        yield Rendered(buffer)
        for previous, frame in zip(frames, frames[1:], strict=False):
            rows = np.flatnonzero((previous != frame).any(axis=(1, 2)))
            buffer[...] = frame
            yield Rendered(buffer, [Rect(0, int(rows[0]), 64, int(rows[-1] - rows[0] + 1))] if rows.size else [])

    whole, damaged = tmp_path / "whole.mkv", tmp_path / "damaged.mkv"
    for out, source in ((whole, iter(frames)), (damaged, redrawn())):
        with VideoEncoder(out, width=64, height=48, crf=0, preset="ultrafast", progress=False) as video:
            assert encode_frames(source, video, prefetch=2) == 16
    for a, b in zip(_decode(whole), _decode(damaged), strict=True):
        np.testing.assert_array_equal(a, b)


def test_sidecar_is_strict_json_with_an_unfinished_episodes_nan_reward(tmp_path: Path) -> None:
    out = tmp_path / "clip.mp4"
    provenance = {"episodes": [{"index": 7, "total_reward": float("nan"), "lag": [float("inf"), 1.5]}]}
    with VideoEncoder(out, width=64, height=48, provenance=provenance, progress=False) as video:
        video.write(_frames(1)[0])
    text = (tmp_path / "clip.mp4.json").read_text()

    def refuse(constant: str) -> None:
        raise ValueError(f"not strict JSON: {constant}")

    sidecar = json.loads(text, parse_constant=refuse)  # NaN and Infinity are not JSON
    assert sidecar["episodes"] == [{"index": 7, "total_reward": None, "lag": [None, 1.5]}]
