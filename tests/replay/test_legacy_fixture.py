"""A log recorded before the trainer moved to ``replay/train/`` still replays bit-exactly.

``tests/fixtures/legacy-trainer-stack.h5`` was recorded with the trainer's stack (two sync envs of Breakout
plus one evaluation episode) by the code that named its wrapper ``replay.atari:FireOnLifeLoss``; the sha256 of
every episode's frames and observations, taken then, is in ``legacy-trainer-stack.sha256.json``. Re-simulation
runs in a fresh process, so nothing imported by this one can help it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
LOG = FIXTURES / "legacy-trainer-stack.h5"

DIGEST = textwrap.dedent(
    """
    import hashlib, json, sys
    from replay import TrajectoryLog
    out = {}
    with TrajectoryLog(sys.argv[1]) as log:
        for e in log.episodes:
            h = hashlib.sha256()
            for s in log.replay(e.index):
                h.update(s.frame.tobytes())
                h.update(s.observation.tobytes())
            out[str(e.index)] = h.hexdigest()
    print(json.dumps(out))
    """
)


def test_the_fixture_names_the_old_entry_point() -> None:
    with h5py.File(LOG, "r") as f:
        specs = [json.loads(f["streams"][name].attrs["spec_json"]) for name in f["streams"]]
    named = {w["entry_point"] for spec in specs for w in spec["additional_wrappers"]}
    assert "replay.atari:FireOnLifeLoss" in named


def test_a_log_recorded_before_the_move_replays_byte_for_byte() -> None:
    expected = json.loads((FIXTURES / "legacy-trainer-stack.sha256.json").read_text())
    result = subprocess.run(
        [sys.executable, "-c", DIGEST, str(LOG)], capture_output=True, text=True, check=True, timeout=300
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == expected


def test_a_log_recorded_before_the_move_verifies() -> None:
    from replay import verify

    report = verify(LOG)
    assert report.ok and report.episodes == 10 and report.steps == 1546
