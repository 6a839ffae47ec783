"""What perturbation saliency costs against the overlay's plain forward pass, and against the naive way.

On real observations of the sample run (``data/sample/breakout``: an evaluation episode played by its last
checkpoint) and that checkpoint, in one process:

- ``compare``: in rounds whose order alternates, frames/s and CPU ms a frame of
  - **forward**: the overlay's analytics (``NetworkProbe``, batch 64), the baseline;
  - **saliency**: ``SaliencyProbe`` at its default settings;
  - **naive**: Greydanus' loop on the same grid: per patch, a mask computed, the blend in NumPy and one
    perturbed observation through the network (batch 1); its patch scores are checked against the probe's;
  with per-round ratios and their medians, and the CPU cost of ``saliency_overlay`` on a 210x160 frame.
- ``settings``: saliency frames/s for each stride (``--strides``) and each batch size (``--batch-sizes``), rounds
  alternating, and how close each stride's maps come to dense stride-1 maps of a few frames (correlation and
  relative L2 distance, per map kind): the figures behind the defaults.

torch runs on ``--threads`` threads (1 by default, as the renderer does), OpenCV on one.

Run:  python tests/bench/bench_saliency.py [--frames 64] [--rounds 5] [--parts compare,settings]
      [--threads 1] [--json bench_saliency.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from render.analytics import NetworkProbe, ProbeSettings
from render.draw.saliency import saliency_overlay
from render.saliency import SaliencyProbe, SaliencySettings, blur_stack, patch_centres
from replay import TrajectoryLog
from replay.train.checkpoints import CheckpointIndex, load_policy

ROOT = Path(__file__).resolve().parents[2]
PARTS = ("compare", "settings")


def sample_inputs(run: Path, count: int) -> tuple[Path, np.ndarray, np.ndarray]:
    """The run's last checkpoint, and ``count`` observations and frames of an evaluation episode it played
    (from step 1, the reset frame having no ball)."""
    checkpoints = CheckpointIndex(run / "checkpoints")
    ref = checkpoints.ref(checkpoints.versions[-1])
    with TrajectoryLog(run / "trajectories.h5") as log:
        episode = next(e for e in log.episodes if e.tag == "eval" and e.policy_versions == (ref.policy_version,))
        steps = list(log.replay(episode.index, 1, min(episode.length, count) + 1))
    return ref.path, np.stack([s.observation for s in steps]), np.stack([s.frame for s in steps])


def naive_grid_scores(
    model: nn.Module, observations: np.ndarray, settings: SaliencySettings
) -> tuple[np.ndarray, np.ndarray]:
    """Patch scores the common way: one frame, one patch, one batch-1 forward pass at a time."""
    centres = patch_centres(84, settings.stride)
    rows, columns = np.mgrid[:84, :84]
    policy = np.zeros((len(observations), len(centres), len(centres)), np.float32)
    value = np.zeros_like(policy)
    with torch.inference_mode():
        for f, observation in enumerate(observations):
            image = observation.astype(np.float32)
            blurred = blur_stack(observation, settings.blur).astype(np.float32)
            logits, values = model(torch.from_numpy(observation[None]))
            for a, y in enumerate(centres):
                for b, x in enumerate(centres):
                    mask = np.exp(-((rows - y) ** 2 + (columns - x) ** 2) / (2 * settings.sigma**2)).astype(np.float32)
                    perturbed = image * (1 - mask) + blurred * mask
                    moved_logits, moved_values = model(torch.from_numpy(perturbed[None]))
                    policy[f, a, b] = 0.5 * float((moved_logits - logits).square().sum())
                    value[f, a, b] = 0.5 * float((moved_values - values).square().sum())
    return policy, value


def clocked(work: Callable[[], object], frames: int) -> dict:
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"frames": frames, "fps": frames / wall, "cpu_ms_per_frame": 1000 * cpu / frames}


def bench_compare(checkpoint: Path, observations: np.ndarray, frames: np.ndarray, args: argparse.Namespace) -> dict:
    # the forward pass on a network of its own: NetworkProbe's hooks would fire on the saliency passes too
    analytics = NetworkProbe(load_policy(checkpoint)[0], ProbeSettings(batch_size=64))
    model = load_policy(checkpoint)[0]
    probe = SaliencyProbe(model)
    naive_frames = observations[: args.naive_frames]
    repeats = max(1, args.forward_repeats)
    contenders: dict[str, tuple[Callable[[], object], int]] = {
        "forward": (lambda: [analytics.analyze(observations) for _ in range(repeats)], repeats * len(observations)),
        "saliency": (lambda: probe.maps(observations), len(observations)),
        "naive": (lambda: naive_grid_scores(model, naive_frames, probe.settings), len(naive_frames)),
    }
    analytics.analyze(observations[:2])  # warm-up
    probe.maps(observations[:2])
    naive_grid_scores(model, naive_frames[:1], probe.settings)
    rounds = []
    for r in range(args.rounds):
        order = list(contenders) if r % 2 == 0 else list(reversed(contenders))
        row = {name: clocked(*contenders[name]) for name in order}
        cpu = {name: row[name]["cpu_ms_per_frame"] for name in contenders}
        row["ratios"] = {
            "saliency_cost_in_forward_passes": row["forward"]["fps"] / row["saliency"]["fps"],
            "saliency_vs_naive": row["saliency"]["fps"] / row["naive"]["fps"],
            "saliency_cost_in_forward_passes_cpu": cpu["saliency"] / cpu["forward"],
            "saliency_vs_naive_cpu": cpu["naive"] / cpu["saliency"],
        }
        rounds.append(row)
    naive = naive_grid_scores(model, naive_frames[:2], probe.settings)
    batched = probe.grid_scores(naive_frames[:2])
    agreement = {
        kind: float(np.abs(a - b).max() / max(float(b.max()), 1e-12))
        for kind, a, b in zip(("policy", "value"), naive, batched, strict=True)
    }
    policy, value = probe.maps(observations[:1])
    overlay_start = time.process_time()
    for _ in range(200):
        saliency_overlay(frames[0], policy[0], value[0], (1.0, 0.1))
    overlay_us = 1e6 * (time.process_time() - overlay_start) / 200
    median = {name: float(np.median([row[name]["fps"] for row in rounds])) for name in contenders}
    median |= {
        f"{name}_cpu_ms_per_frame": float(np.median([row[name]["cpu_ms_per_frame"] for row in rounds]))
        for name in contenders
    }
    median |= {key: float(np.median([row["ratios"][key] for row in rounds])) for key in rounds[0]["ratios"]}
    return {
        "settings": dataclasses.asdict(probe.settings),
        "grid": probe.grid,
        "rounds": rounds,
        "median": median,
        "naive_max_relative_difference": agreement,
        "overlay_cpu_us_per_frame": overlay_us,
    }


def fidelity(reference: tuple[np.ndarray, np.ndarray], maps: tuple[np.ndarray, np.ndarray]) -> dict:
    """Mean per-frame correlation and relative L2 distance of each map kind to the dense reference."""
    found = {}
    for kind, dense, coarse in zip(("policy", "value"), reference, maps, strict=True):
        found[f"{kind}_correlation"] = float(
            np.mean([np.corrcoef(d.ravel(), c.ravel())[0, 1] for d, c in zip(dense, coarse, strict=True)])
        )
        found[f"{kind}_relative_l2"] = float(np.linalg.norm(dense - coarse) / np.linalg.norm(dense))
    return found


def bench_settings(checkpoint: Path, observations: np.ndarray, args: argparse.Namespace) -> dict:
    model = load_policy(checkpoint)[0]
    default = SaliencySettings()
    variants = {f"stride {s}": SaliencySettings(stride=s) for s in args.strides}
    variants |= {f"batch {b}": SaliencySettings(batch_size=b) for b in args.batch_sizes}
    probes = {name: SaliencyProbe(model, settings) for name, settings in variants.items()}
    for probe in probes.values():
        probe.maps(observations[:2])  # warm-up
    timings: dict[str, list[dict]] = {name: [] for name in probes}
    for r in range(args.rounds):
        for name in list(probes) if r % 2 == 0 else list(reversed(probes)):
            timings[name].append(clocked(lambda p=probes[name]: p.maps(observations), len(observations)))
    picked = observations[np.linspace(0, len(observations) - 1, args.reference_frames).astype(int)]
    reference = SaliencyProbe(model, SaliencySettings(stride=1)).maps(picked)
    rows = {}
    for name, probe in probes.items():
        rows[name] = {
            "stride": probe.settings.stride,
            "batch_size": probe.settings.batch_size,
            "patches": probe.grid**2,
            "fps": float(np.median([t["fps"] for t in timings[name]])),
            "cpu_ms_per_frame": float(np.median([t["cpu_ms_per_frame"] for t in timings[name]])),
            "default": probe.settings == default,
        }
        if name.startswith("stride"):
            rows[name] |= fidelity(reference, probe.maps(picked))
    return {"variants": rows, "reference_frames": len(picked)}


def print_compare(compare: dict, threads: int) -> None:
    median = compare["median"]
    print(f"\nsaliency, {compare['grid']}x{compare['grid']} patches, {threads} torch thread(s), medians")
    print(f"  {'contender':<40}{'frames/s':>10}{'CPU ms/frame':>14}")
    for name in ("forward", "saliency", "naive"):
        print(f"  {name:<40}{median[name]:>10.1f}{median[f'{name}_cpu_ms_per_frame']:>14.2f}")
    print(
        f"  saliency costs {median['saliency_cost_in_forward_passes']:.0f} forward passes a frame "
        f"({median['saliency_cost_in_forward_passes_cpu']:.0f} in CPU time)"
    )
    print(
        f"  saliency is {median['saliency_vs_naive']:.1f}x the naive loop "
        f"({median['saliency_vs_naive_cpu']:.1f}x in CPU time)"
    )
    print(f"  naive vs batched patch scores, max relative difference: {compare['naive_max_relative_difference']}")
    print(f"  saliency_overlay on a 210x160 frame: {compare['overlay_cpu_us_per_frame']:.0f} us CPU")


def print_settings(settings: dict) -> None:
    print(f"\nsettings (fidelity: to dense stride-1 maps of {settings['reference_frames']} frames), medians")
    columns = ("patches", "frames/s", "CPU ms/frame", "policy corr", "value corr")
    print(f"  {'variant':<16}" + "".join(f"{c:>14}" for c in columns))
    for name, row in settings["variants"].items():
        cells = [f"{row['patches']}", f"{row['fps']:.1f}", f"{row['cpu_ms_per_frame']:.2f}"]
        cells += [f"{row[k]:.3f}" if k in row else "" for k in ("policy_correlation", "value_correlation")]
        print(f"  {name + (' *' if row['default'] else ''):<16}" + "".join(f"{c:>14}" for c in cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sample", type=Path, default=ROOT / "data" / "sample" / "breakout", help="the run")
    parser.add_argument("--frames", type=int, default=64, help="observations measured (default 64)")
    parser.add_argument("--naive-frames", type=int, default=8, help="of which the naive loop runs (default 8)")
    parser.add_argument("--forward-repeats", type=int, default=20, help="forward passes over the frames a round")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    parser.add_argument("--strides", default="5,6,7,8", help="strides the settings part compares")
    parser.add_argument("--batch-sizes", default="32,128,256", help="batch sizes the settings part compares")
    parser.add_argument("--reference-frames", type=int, default=6, help="frames of the dense stride-1 reference")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as the renderer)")
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated subset of compare,settings")
    parser.add_argument("--json", type=Path, default=Path("bench_saliency.json"), help="where to write results")
    args = parser.parse_args()
    chosen = args.parts.split(",")
    unknown = sorted(set(chosen) - set(PARTS))
    if unknown:
        parser.error(f"unknown parts {unknown}; choose from {','.join(PARTS)}")
    args.strides = [int(s) for s in args.strides.split(",")]
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)
    checkpoint, observations, frames = sample_inputs(args.sample, args.frames)

    report: dict = {"threads": args.threads, "frames": len(observations), "checkpoint": checkpoint.name}
    report["load_average_before"] = os.getloadavg()[0]  # other work on this shared machine slows every row
    if "compare" in chosen:
        report["compare"] = bench_compare(checkpoint, observations, frames, args)
        print_compare(report["compare"], args.threads)
    if "settings" in chosen:
        report["settings"] = bench_settings(checkpoint, observations, args)
        print_settings(report["settings"])
    report |= {"load_average_after": os.getloadavg()[0], "cpu_count": os.cpu_count(), "machine": platform.platform()}
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
