"""``python -m replay.show``: a run's summary and its episodes, as text and as strict JSON, run as a user runs it."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import ROOT

from replay import TrajectoryLog
from replay import log_format as fmt

FIXTURE = ROOT / "tests" / "fixtures" / "legacy-trainer-stack.h5"
SAMPLE = ROOT / "data" / "sample" / "breakout"


def show(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "replay.show", *args], capture_output=True, text=True, timeout=120, cwd=ROOT
    )


def test_the_json_episodes_are_the_logs_episodes() -> None:
    result = show(str(FIXTURE), "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    with TrajectoryLog(FIXTURE) as log:
        expected = log.episodes
    assert [e["index"] for e in document["episodes"]] == [e.index for e in expected]
    for row, e in zip(document["episodes"], expected, strict=True):
        assert set(row) == {
            "index",
            "tag",
            "env_index",
            "start_step",
            "length",
            "total_reward",
            "policy_versions",
            "finished",
            "ended_by",
        }
        assert (row["tag"], row["env_index"], row["start_step"], row["length"]) == (
            e.tag,
            e.env_index,
            e.start_step,
            e.length,
        )
        assert row["total_reward"] == e.total_reward and row["finished"] == e.finished
        assert row["ended_by"] == e.ended_by
        assert row["policy_versions"] == [e.policy_versions[0], e.policy_versions[-1]]
    summary = document["summary"]
    assert summary["game"] == "Breakout" and summary["env_id"] == "ALE/Breakout-v5"
    assert summary["episodes"] == {"train": {"finished": 7, "unfinished": 2}, "eval": {"finished": 1, "unfinished": 0}}
    finished_train = [e.total_reward for e in expected if e.tag == "train" and e.finished]
    assert summary["mean_return_last_100"] == pytest.approx(sum(finished_train) / len(finished_train), abs=1e-3)
    assert summary["best_episode"] == {"index": 1, "total_reward": 3.0}
    assert summary["env_steps"] == sum(e.length for e in expected if e.tag == "train")


def test_sort_tag_and_limit_choose_the_episodes() -> None:
    by_return = json.loads(show(str(FIXTURE), "--json", "--sort", "return", "--tag", "train").stdout)["episodes"]
    returns = [e["total_reward"] for e in by_return]
    assert returns == sorted(returns, reverse=True) and {e["tag"] for e in by_return} == {"train"}
    by_length = json.loads(show(str(FIXTURE), "--json", "--sort", "length", "--limit", "3").stdout)["episodes"]
    assert len(by_length) == 3 and [e["length"] for e in by_length] == [242, 196, 195]
    by_step = json.loads(show(str(FIXTURE), "--json", "--sort", "step", "--tag", "eval").stdout)["episodes"]
    assert [e["index"] for e in by_step] == [7]


def test_an_unknown_reward_is_null_in_strict_json(tmp_path: Path) -> None:
    """An episode its writer was killed in has no reward (NaN in Python): the JSON says null, never NaN."""
    log = tmp_path / "log.h5"
    shutil.copy(FIXTURE, log)
    with h5py.File(log, "r+") as f:
        table = f[fmt.DATASET_EPISODES][...]
        table["total_reward"][-1] = np.nan
        f[fmt.DATASET_EPISODES][...] = table
    with TrajectoryLog(log) as opened:
        assert any(math.isnan(e.total_reward) for e in opened.episodes)
    result = show(str(log), "--json")
    assert result.returncode == 0, result.stderr
    assert "NaN" not in result.stdout
    assert None in [e["total_reward"] for e in json.loads(result.stdout)["episodes"]]


def test_the_sample_runs_summary_names_its_parts() -> None:
    result = show(str(SAMPLE), "--episodes", "--sort", "return", "--limit", "3")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "Breakout (ALE/Breakout-v5)" in text and "train episodes  2,164 finished, 8 unfinished" in text
    assert "best episode    1662 (return 35)" in text
    assert "versions 0, 98, 196" in text and "checkpoints 57.4 MB" in text
    table = text.split("\n\n", 1)[1].splitlines()
    assert table[0].split()[:2] == ["index", "tag"] and table[1].split()[0] == "1662" and len(table) == 4


@pytest.mark.parametrize("path", ["no/such/run", "README.md", "tests"])
def test_a_path_that_is_no_run_is_one_error_line(path: str) -> None:
    result = show(path)
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and path in lines[0]
