"""The benchmark scripts still run end to end at a tiny size, and compare what they claim to compare.

Their figures are only meaningful at full size on an idle machine (see the README's Benchmarks); these cases
keep the scripts from rotting between the sessions that run them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import decode_video

BENCH = Path(__file__).resolve().parent

pytestmark = pytest.mark.slow


def _run(script: str, tmp_path: Path, *args: str) -> dict:
    out = tmp_path / f"{script}.json"
    command = [sys.executable, str(BENCH / f"{script}.py"), "--frames", "60", "--rounds", "1", "--json", str(out)]
    # from an empty folder, so the default sample run (data/sample/breakout) is not found and its time-lapse skipped
    done = subprocess.run(
        [*command, "--workdir", str(tmp_path / "work"), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


def test_bench_render_brackets_the_pipeline_with_x264_alone_on_its_own_frames(tmp_path):
    report = _run("bench_render", tmp_path, "--preset", "ultrafast")
    (row,) = report["rounds"]
    frames = row["pipeline"]["frames"]
    assert frames >= 61  # every recorded frame of at least one whole episode, reset frame included
    assert len(decode_video(tmp_path / "work" / "round.mp4")) == frames
    # two runs of each encode-only contender per round, each on the pipeline's first (up to 600) frames twice
    for name in ("encode_only_rgb", "encode_only_i420", "encode_only_pyav"):
        assert row[name]["frames"] == 4 * min(600, frames), name
    assert len(decode_video(tmp_path / "work" / "encode-only.mp4")) == 2 * min(600, frames)
    # PyAV's stock path encoded the same pictures in the same order: each decodes back closer to the pipeline's
    # frame at its position than to the pipeline's frame half the run away
    stock = decode_video(tmp_path / "work" / "encode-only-pyav.mp4")
    ours = decode_video(tmp_path / "work" / "round.mp4")
    assert len(stock) == 2 * min(600, frames)
    n = min(600, frames)

    def distance(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.abs(a.astype(np.int16) - b).mean())

    aligned = [distance(stock[i], ours[i]) for i in range(n)]
    shifted = [distance(stock[i], ours[(i + n // 2) % n]) for i in range(n)]
    assert np.mean(aligned) < 0.8 * np.mean(shifted)
    assert report["naive"]["frames"] == frames
    ratio = row["ratios"]["steady_vs_encode_only_rgb"]
    assert ratio == pytest.approx(row["pipeline"]["steady_fps"] / row["encode_only_rgb"]["fps"])
    assert report["sample_timelapse_60s"] is None


def test_bench_render_parts_covers_every_section(tmp_path):
    report = _run("bench_render_parts", tmp_path)
    sections = (
        "overlay_cpu_ms_per_frame",
        "kernels_cpu_us_per_frame",
        "handoff_cpu_ms_per_frame",
        "checkpoint_load_ms",
    )
    for section in sections:
        assert report[section] and all(value > 0 for value in report[section].values()), section
    assert report["env_cpu_us_per_agent_step"]
    assert report["threads_cpu_ms_per_frame"]
    assert report["producer"]["frames"] >= 61
    assert {int(depth) for depth in report["queue"]} == {8, 32}
    assert set(report["kernels_cpu_us_per_frame"]) == {
        f"{part}: {way}" for part in ("diagram nodes", "feature-map thumbnails") for way in ("numpy/opencv", "kernel")
    }


def test_bench_threads_trains_each_thread_count_and_reports_their_ratio(tmp_path):
    out = tmp_path / "bench_threads.json"
    command = [sys.executable, str(BENCH / "bench_threads.py"), "--rounds", "1", "--total-steps", "2048"]
    command += ["--conditions", "idle", "--settle-seconds", "0", "--retries", "0", "--max-foreign", "99"]
    done = subprocess.run([*command, "--json", str(out)], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    runs = [r for r in report["runs"] if r["condition"] == "idle"]
    assert sorted(r["torch_threads"] for r in runs) == [1, 2]
    assert all(r["steps_per_second"] > 0 for r in runs)
    assert list(tmp_path.iterdir()) == [out]  # the runs' folders went to a temporary folder, and are gone


def test_bench_saliency_compares_the_probe_with_the_forward_pass_and_the_naive_loop(tmp_path):
    out = tmp_path / "bench_saliency.json"
    command = [sys.executable, str(BENCH / "bench_saliency.py"), "--frames", "4", "--naive-frames", "2"]
    command += ["--rounds", "1", "--forward-repeats", "1", "--strides", "6,12", "--batch-sizes", "256"]
    command += ["--reference-frames", "1", "--json", str(out)]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    compare = report["compare"]
    (row,) = compare["rounds"]
    assert [row[name]["frames"] for name in ("forward", "saliency", "naive")] == [4, 4, 2]
    assert row["ratios"]["saliency_vs_naive"] == pytest.approx(row["saliency"]["fps"] / row["naive"]["fps"])
    # the naive loop scores the same patches: its masks are only not cut off at 4 sigma
    assert max(compare["naive_max_relative_difference"].values()) < 1e-3
    assert compare["overlay_cpu_us_per_frame"] > 0
    variants = report["settings"]["variants"]
    assert [name for name, v in variants.items() if v["default"]] == ["stride 6"]
    assert variants["stride 6"]["patches"] == 196 and variants["stride 12"]["patches"] == 49
    assert 0 < variants["stride 12"]["policy_correlation"] < variants["stride 6"]["policy_correlation"] <= 1
    assert list(tmp_path.iterdir()) == [out]


def test_bench_rebuild_sets_the_trainer_beside_its_rebuilds_and_prices_each_cadence(tmp_path):
    out = tmp_path / "bench_rebuild.json"
    command = [sys.executable, str(BENCH / "bench_rebuild.py"), "--updates", "3", "--cadences", "1", "3"]
    command += ["--project", "250", "--no-parallel", "--json", str(out)]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    (row,) = report["rounds"]
    assert row["trainer"]["seconds_per_update"] > 0 and row["rebuild_overlapped"]["seconds_per_update"] > 0
    assert (
        row["ratio_overlapped"]
        == row["trainer"]["seconds_per_update"] / row["rebuild_overlapped"]["seconds_per_update"]
    )
    by_cadence = {t["cadence"]: t for t in report["trade_off"]}
    assert sorted(by_cadence) == [1, 3, 250]
    assert by_cadence[1]["MB_per_1M"] > by_cadence[3]["MB_per_1M"] > by_cadence[250]["MB_per_1M"]
    assert by_cadence[3]["measured_worst_seconds"] > by_cadence[1]["measured_worst_seconds"]
    assert "MB per 1M steps" in done.stdout and list(tmp_path.iterdir()) == [out]
