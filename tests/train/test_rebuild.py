"""Exact rebuilds: two real training runs with one seed, one saving every version, against rebuilt versions."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import FAST, compose_config

import render
from render.errors import RenderConfigError
from render.policies import PolicyLibrary
from replay.errors import DamagedRecordError, UnverifiedRebuildError
from replay.reader import TrajectoryLog
from replay.run_folder import RunFolder
from replay.train import ledger, resume_config, train
from replay.train.checkpoints import checkpoint_path
from replay.train.rebuild import Rebuilder, main

SHORT = [*FAST, "total_steps=1536", "seed=5"]  # 6 updates of 2 envs x 128 steps, 1 torch thread


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(ground truth: every version saved in float32, a run at a resume-point cadence with float16 milestones)."""
    root = tmp_path_factory.mktemp("exact")
    truth, sparse = root / "truth", root / "sparse"
    train(compose_config([*SHORT, "checkpoint.every_updates=1", "checkpoint.dtype=float32", f"run_dir={truth}"]))
    train(compose_config([*SHORT, "checkpoint.resume_point_every=4", f"run_dir={sparse}"]))
    return truth, sparse


def _copy(run: Path, tmp_path: Path, *leave_out: str) -> Path:
    """A copy of ``run`` to damage or rebuild, without its rebuilt versions (and ``leave_out``)."""
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("rebuilt", *leave_out))
    return copy


def _assert_rebuilt_equal_saved(run: Path, truth: Path, versions: range) -> None:
    """Every rebuilt version of ``run`` holds the very tensors ``truth`` saved for it."""
    for version in versions:
        mine = torch.load(checkpoint_path(RunFolder(run).rebuilt, version), weights_only=True)["state_dict"]
        theirs = torch.load(checkpoint_path(RunFolder(truth).checkpoints, version), weights_only=True)["state_dict"]
        assert all(torch.equal(mine[k], theirs[k]) for k in theirs), version


def _training_episodes(run: Path) -> list[int]:
    with TrajectoryLog(RunFolder(run).log) as log:
        return [e.index for e in log.episodes if e.tag == "train"]


@pytest.mark.slow
def test_exact_explanations_equal_every_saved_version_bit_for_bit(runs: tuple[Path, Path]) -> None:
    truth, sparse = runs
    assert RunFolder(sparse).checkpoint_versions() == [0, 3, 6]
    assert sorted(p.name for p in RunFolder(sparse).resume_points.iterdir()) == ["v000004.pt"]
    episodes = _training_episodes(sparse)
    assert episodes == _training_episodes(truth) and episodes
    lags = set()
    for episode in episodes:
        exact = list(render.explain(sparse, episode, checkpoint="exact"))
        saved = list(render.explain(truth, episode))
        nearest = list(render.explain(sparse, episode))
        assert [f.policy_version for f in exact] == [f.policy_version for f in saved]
        for a, b in zip(exact, saved, strict=True):
            assert a.checkpoint_version == a.policy_version == b.checkpoint_version
            assert a.probabilities.tobytes() == b.probabilities.tobytes()
            assert np.float32(a.value).tobytes() == np.float32(b.value).tobytes()
        lags |= {f.policy_version - f.checkpoint_version for f in nearest}
    assert lags - {0}, "the nearest checkpoints alone would have lagged somewhere"


@pytest.mark.slow
def test_a_rebuild_under_another_thread_count_fails_its_digest_and_falls_back(
    runs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, sparse = runs
    run = _copy(sparse, tmp_path)
    with pytest.raises(UnverifiedRebuildError, match="rebuilt with 2 torch threads, trained with 1") as failed:
        Rebuilder(run, threads=2, progress=False).prepare([2])
    assert failed.value.version in (0, 1, 2)
    assert not RunFolder(run).rebuilt.exists() or not any(RunFolder(run).rebuilt.glob("v00000[2-9].pt"))
    library = PolicyLibrary(checkpoints=RunFolder(run).checkpoints, exact=Rebuilder(run, threads=2, progress=False))
    _, use = library.lookup(2)
    assert (use.name, use.policy_version, use.lag) == ("v000000.pt", 0, 2)
    assert use.note == "not exact (2 torch threads here, 1 in training)"
    assert "digest" in library.exact_problem and "2 torch threads" in library.exact_problem
    library.lookup(1)
    assert capsys.readouterr().err.count("checkpoint=exact: falling back") == 1  # said once


@pytest.mark.slow
def test_versions_prepared_together_stay_while_used_even_past_the_cache_bound(
    runs: tuple[Path, Path], tmp_path: Path
) -> None:
    """A time-lapse prepares every version it will show, then looks each up in turn: more versions than the
    rebuilder keeps must not be pruned by the lookups and rebuilt again, one replay per frame's version."""
    _, sparse = runs
    run = _copy(sparse, tmp_path)
    library = PolicyLibrary(checkpoints=RunFolder(run).checkpoints, exact=Rebuilder(run, keep=2, progress=False))
    library.prepare(range(1, 7))
    rebuilt = RunFolder(run).rebuilt
    files = {p.name: p.stat().st_ino for p in rebuilt.glob("v*.pt")}
    assert sorted(files) == [f"v00000{v}.pt" for v in range(1, 7)]
    for version in range(1, 7):
        _, use = library.lookup(version)
        assert use.lag == 0 and use.name == f"rebuilt/v00000{version}.pt"
    assert {p.name: p.stat().st_ino for p in rebuilt.glob("v*.pt")} == files, "nothing pruned, nothing rebuilt"
    library.prepare([6])  # the next product's versions: now the bound applies to the rest
    assert len(list(rebuilt.glob("v*.pt"))) == 2


@pytest.mark.slow
def test_checkpoint_rebuilt_uses_the_verified_versions_on_disk_and_never_rebuilds(
    runs: tuple[Path, Path], tmp_path: Path
) -> None:
    """What the viewer's episode player shows: the versions rebuilt already, exactly; the nearest checkpoints for
    the rest, without a note (nothing was asked to be exact); a rebuilt file that differs is not drawn."""
    truth, sparse = runs
    run = _copy(sparse, tmp_path)
    episode = _training_episodes(run)[-1]
    nearest = list(render.explain(run, episode))
    assert [f.checkpoint_version for f in render.explain(run, episode, checkpoint="rebuilt")] == [
        f.checkpoint_version for f in nearest
    ]  # no rebuilt/ folder yet: the nearest checkpoints
    saved_versions = RunFolder(run).checkpoint_versions()
    played = {f.policy_version for f in nearest if f.policy_version is not None}
    shown = max(v for v in played if v not in saved_versions)  # rebuilt, and shown exactly
    other = min(v for v in range(7) if v not in saved_versions and v != shown)  # never rebuilt
    Rebuilder(run, progress=False).prepare([shown])
    rebuilt = RunFolder(run).rebuilt
    files = sorted(p.name for p in rebuilt.iterdir())

    saved = list(render.explain(truth, episode))
    for mine, near, true in zip(render.explain(run, episode, checkpoint="rebuilt"), nearest, saved, strict=True):
        if mine.policy_version == shown:
            assert mine.checkpoint_version == mine.policy_version
            assert mine.probabilities.tobytes() == true.probabilities.tobytes()
            assert np.float32(mine.value).tobytes() == np.float32(true.value).tobytes()
        else:
            assert mine.checkpoint_version == near.checkpoint_version
            assert mine.probabilities.tobytes() == near.probabilities.tobytes()
    assert sorted(p.name for p in rebuilt.iterdir()) == files, "nothing rebuilt"
    output = tmp_path / "rebuilt.mp4"
    done = subprocess.run(
        [sys.executable, "-m", "render", f"run={run}", f"episode={episode}", "checkpoint=rebuilt", "video=preview",
         "video.progress=false", f"output={output}"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    sidecar = json.loads(output.with_name("rebuilt.mp4.json").read_text())
    assert sidecar["checkpoints"][f"rebuilt/v{shown:06d}.pt"] == 0 and sidecar["exact"] is None
    assert sorted(p.name for p in rebuilt.iterdir()) == files

    library = PolicyLibrary(checkpoints=RunFolder(run).checkpoints, exact=Rebuilder(run, progress=False), rebuild=False)
    _, use = library.lookup(other)
    assert use.lag > 0 and use.note is None and not library.exact and library.exact_problem is None
    shutil.copy(checkpoint_path(rebuilt, shown), checkpoint_path(rebuilt, other))  # another's weights
    _, use = library.lookup(other)
    assert use.lag > 0 and checkpoint_path(rebuilt, other).exists()  # not used, and left alone: it only reads
    assert library.lookup(other)[1].lag > 0  # nor on the next look
    _, use = library.lookup(shown)
    assert (use.name, use.lag) == (f"rebuilt/v{shown:06d}.pt", 0)
    with pytest.raises(RenderConfigError, match="checkpoint=rebuilt uses the rebuilt networks of a run"):
        list(render.explain(RunFolder(run).log, episode, checkpoint="rebuilt"))


@pytest.mark.slow
def test_a_damaged_resume_point_or_ledger_digest_is_a_clear_error(runs: tuple[Path, Path], tmp_path: Path) -> None:
    _, sparse = runs
    run = _copy(sparse, tmp_path)
    point = checkpoint_path(RunFolder(run).resume_points, 4)
    data = bytearray(point.read_bytes())
    data[-30_000] ^= 0x40  # a bit of Adam's state, inside the zip's stored tensor bytes
    point.write_bytes(bytes(data))
    with pytest.raises(DamagedRecordError, match=f"resume point {point}"):
        Rebuilder(run, progress=False).prepare([5])
    with pytest.raises(DamagedRecordError):
        list(render.explain(run, _training_episodes(run)[-1], checkpoint="exact"))

    lines = RunFolder(run).ledger.read_text().splitlines(keepends=True)
    record = json.loads(lines[2])
    record["digest"] = "0" * 16
    lines[2] = json.dumps(record, sort_keys=True) + "\n"
    RunFolder(run).ledger.write_text("".join(lines))
    with pytest.raises(DamagedRecordError, match="line 3 is damaged: its CRC"):
        ledger.read(RunFolder(run).ledger)


@pytest.mark.slow
def test_the_whole_run_rebuilds_ahead_of_time_and_continues_after_a_kill(
    runs: tuple[Path, Path], tmp_path: Path
) -> None:
    truth, sparse = runs
    run = _copy(sparse, tmp_path)
    assert main([str(run), "--workers", "2"]) == 0
    rebuilt = RunFolder(run).rebuilt
    assert sorted(p.name for p in rebuilt.glob("v*.pt")) == [f"v{v:06d}.pt" for v in range(7)]
    _assert_rebuilt_equal_saved(run, truth, range(7))
    checkpoint_path(rebuilt, 5).unlink()  # as a kill would leave it: the rest stays, only v5 is made again
    inodes = {p.name: p.stat().st_ino for p in rebuilt.glob("v*.pt")}  # a rewrite is a new file (atomic rename)
    assert main([str(run)]) == 0
    assert checkpoint_path(rebuilt, 5).is_file()
    assert all(checkpoint_path(rebuilt, v).stat().st_ino == inodes[f"v{v:06d}.pt"] for v in (0, 1, 2, 3, 4, 6))


@pytest.mark.slow
def test_a_run_recorded_before_the_ledger_keeps_the_nearest_checkpoints(
    runs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, sparse = runs
    run = _copy(sparse, tmp_path, "learning.jsonl")  # as before the ledger
    episode = _training_episodes(run)[-1]
    exact = list(render.explain(run, episode, checkpoint="exact"))
    nearest = list(render.explain(run, episode))
    assert [f.checkpoint_version for f in exact] == [f.checkpoint_version for f in nearest]
    assert any(f.checkpoint_version != f.policy_version for f in exact)  # lagging, as before
    assert "learning.jsonl" in capsys.readouterr().err  # and said why, naming the missing ledger
    assert not RunFolder(run).rebuilt.exists()


@pytest.mark.slow
def test_a_run_resumed_with_another_thread_count_rebuilds_each_part_with_its_own(tmp_path: Path) -> None:
    run = tmp_path / "run"
    first = [*SHORT, "total_steps=768", f"run_dir={run}"]
    train(compose_config(first))
    train(resume_config(run, ["total_steps=1536", "torch_threads=2"]))
    records = ledger.read(RunFolder(run).ledger)
    assert [(s.from_version, s.threads) for s in records.sessions] == [(0, 1), (3, 2)]
    assert sorted(records.resume_points) == [3]  # kept at the resume: the second part starts there
    rebuilder = Rebuilder(run, progress=False)
    assert [(s.start, s.targets) for s in rebuilder.plan(range(7))] == [(0, (0, 1, 2)), (3, (3, 4, 5, 6))]
    rebuilder.prepare(range(7))
    assert all(rebuilder.cached(v) for v in range(7))


@pytest.mark.slow
def test_a_launcher_sweep_shares_the_rebuild_out_one_segment_per_job(runs: tuple[Path, Path], tmp_path: Path) -> None:
    truth, sparse = runs
    run = _copy(sparse, tmp_path)
    root = Path(__file__).resolve().parents[2]
    sweep = tmp_path / "sweep"
    command = [sys.executable, "-m", "replay.train.rebuild_jobs", "-m", "hydra/launcher=submitit_local"]
    command += [f"hydra.sweep.dir={sweep}", f"run={run}", "parts=2", "part=0,1", "progress=false"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    logs = "".join(p.read_text() for p in sweep.glob(".submitit/*/*_log.err"))  # each job's stderr
    said = sorted(line for line in logs.splitlines() if line.startswith("part "))
    assert [line.split(" in ")[0] for line in said] == [
        f"part 0 of 2: rebuilt 4 versions of {run}",  # the segment from the seed: versions 0..3
        f"part 1 of 2: rebuilt 3 versions of {run}",  # the segment from the resume point at 4: 4..6
    ]
    assert len({p.parent.name for p in sweep.glob(".submitit/*/*_result.pkl")}) == 2  # a process per job
    _assert_rebuilt_equal_saved(run, truth, range(7))
