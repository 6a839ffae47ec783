"""Make ``docs/overlay.png``, the README's picture: one frame of the sample run's best episode with the full overlay.

    python docs/make_overlay_png.py [--run RUN] [--episode best] [--step 400] [--output docs/overlay.png]

The frame is re-simulated from the log and explained by the checkpoint that matches it, exactly as
``python -m render`` draws it, and written as a lossless PNG (temporary file, then rename).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import cv2

from render import RenderSource, render_still

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=ROOT / "data" / "sample" / "breakout")
    parser.add_argument("--episode", default="best", help="an index, or best | worst | last")
    parser.add_argument("--step", type=int, default=400, help="the step of the episode (0: its reset frame)")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "overlay.png")
    args = parser.parse_args()
    episode = int(args.episode) if args.episode.isdigit() else args.episode
    image = render_still(RenderSource.resolve(run=args.run, log=None, checkpoint=None), episode=episode, step=args.step)
    partial = args.output.with_name(args.output.name + ".partial.png")
    if not cv2.imwrite(str(partial), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write {partial}")
    os.replace(partial, args.output)
    print(f"wrote {args.output} ({image.shape[1]}x{image.shape[0]})")


if __name__ == "__main__":
    main()
