"""Make the pictures in ``docs/``: frames of each overlay and product of the sample run, as the renderer draws them.

    python docs/make_pictures.py [--run RUN] [--only NAME ...]

Overlays are single frames re-simulated from the log and explained by the checkpoint that matches them, exactly
as ``python -m render`` draws them (``render.render_still``), written as lossless PNGs. Products (time-lapse,
progressions, the closing card) are rendered as short videos into a temporary folder and one frame of each is
decoded back (so they show x264's compression, as a viewer sees them). Every file is written atomically (a
temporary file, then rename).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import av
import cv2
import numpy as np

from render import RenderSource, render_progression, render_still, render_timelapse
from render.config import OverlayConfig, ProgressionProductConfig, SelectionConfig, TimelapseProductConfig, VideoConfig

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EPISODE, STEP = 1662, 400  # the sample run's best episode, two thirds into training, its ball in play
VIDEO = VideoConfig(crf=18, preset="veryfast", progress=False)


def overlay_still(source: RenderSource, **overlay: object) -> np.ndarray:
    return render_still(source, episode=EPISODE, step=STEP, overlay=OverlayConfig(**overlay))


def video_frame(path: Path, where: float) -> np.ndarray:
    """The frame at fraction ``where`` (0..1) of the video at ``path``, decoded to RGB."""
    with av.open(str(path)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    return frames[min(len(frames) - 1, int(where * len(frames)))]


def pictures(source: RenderSource, scratch: Path) -> dict[str, Callable[[], np.ndarray]]:
    """Each picture's file name and how to make it."""

    def progression(layout: str, where: float, **settings: object) -> Callable[[], np.ndarray]:
        def make() -> np.ndarray:
            output = scratch / f"progression-{layout}.mp4"
            product = ProgressionProductConfig(layout=layout, **settings)
            render_progression(source, output, product=product, overlay=OverlayConfig(kind="minimal"), video=VIDEO)
            return video_frame(output, where)

        return make

    def timelapse() -> np.ndarray:
        output = scratch / "timelapse.mp4"
        selection = SelectionConfig(kind="highlights", count=6)
        product = TimelapseProductConfig(target_duration=20.0)
        render_timelapse(
            source, output, selection=selection, product=product, overlay=OverlayConfig(kind="minimal"), video=VIDEO
        )
        return video_frame(output, 0.7)

    return {
        "overlay.png": lambda: overlay_still(source),
        "overlay-saliency.png": lambda: overlay_still(source, saliency=True),
        "overlay-minimal.png": lambda: overlay_still(source, kind="minimal"),
        "overlay-raw.png": lambda: overlay_still(source, kind="raw"),
        "timelapse.png": timelapse,
        "progression-grid.png": progression("grid", 0.4),
        "progression-side-by-side.png": progression("side_by_side", 0.4),
        "progression-closing-card.png": progression("grid", 0.995),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=ROOT / "data" / "sample" / "breakout")
    parser.add_argument("--only", nargs="*", help="make only these pictures (file names)")
    args = parser.parse_args()
    source = RenderSource.resolve(run=args.run, log=None, checkpoint=None)
    with tempfile.TemporaryDirectory() as scratch:
        made = pictures(source, Path(scratch))
        unknown = sorted(set(args.only or ()) - set(made))
        if unknown:
            parser.error(f"unknown pictures {unknown}; choose among {', '.join(made)}")
        for name, make in made.items():
            if args.only and name not in args.only:
                continue
            image = make()
            output = DOCS / name
            partial = output.with_name(output.name + ".partial.png")
            if not cv2.imwrite(str(partial), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
                raise OSError(f"cannot write {partial}")
            os.replace(partial, output)
            print(f"wrote {output.relative_to(ROOT)} ({image.shape[1]}x{image.shape[0]})")


if __name__ == "__main__":
    main()
