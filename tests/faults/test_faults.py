"""Fault injection on the log: kills at random moments, concurrent readers, full disks, damaged and hostile files."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import STICKY, record_single
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from replay import LogFormatError, RecordingError, ReplayError, TrajectoryLog, TrajectoryWriter, storage, verify
from replay import log_format as fmt

RECORDER = textwrap.dedent(
    """
    import sys, numpy as np, gymnasium as gym, ale_py
    from replay import RecordVectorTrajectory
    gym.register_envs(ale_py)
    path, steps, flush = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    envs = gym.vector.SyncVectorEnv([lambda: gym.make("ALE/Breakout-v5")] * 2)
    envs = RecordVectorTrajectory(envs, path, flush_seconds=flush, snapshot_interval=300)
    rng = np.random.default_rng(int(sys.argv[4]) if len(sys.argv) > 4 else 0)
    envs.reset(seed=3)
    print("recording", flush=True)
    for step in range(1, steps + 1):
        envs.step(rng.integers(4, size=2))
        if step % 100 == 0:
            print(step, flush=True)
    envs.close()
    print("done", flush=True)
    """
)


def _positions(path):
    with storage.open_for_reading(path) as handle:  # a killed writer's file needs an SWMR read
        return handle[fmt.GROUP_STREAMS][fmt.stream_name(0)][fmt.DATASET_ACTIONS].shape[1]


@pytest.mark.slow
def test_twenty_kills_at_random_moments_lose_only_the_unflushed_tail(tmp_path):
    rng = np.random.default_rng(2026)
    lost = []
    for trial in range(20):
        path = tmp_path / f"kill-{trial}.h5"
        child = subprocess.Popen(
            [sys.executable, "-c", RECORDER, str(path), "1000000", "0.5", str(trial)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout.readline().strip() == "recording"
        time.sleep(float(rng.uniform(0.05, 3.0)))
        os.kill(child.pid, signal.SIGKILL)
        printed = [line.strip() for line in child.stdout.read().splitlines() if line.strip().isdigit()]
        child.wait()
        report = verify(path, progress=False)
        assert report.ok, f"trial {trial}: {report}"
        done = int(printed[-1]) if printed else 0
        lost.append(max(0, done - (_positions(path) - 1)))
    # Everything before the last flush survives; the flush interval bounds what a kill can take.
    print(f"steps lost per kill (0.5 s flush interval): max {max(lost)}, mean {np.mean(lost):.0f}")


METADATA_LOOP = textwrap.dedent(
    """
    import sys
    from replay import RecordTrajectory
    import gymnasium as gym, ale_py
    gym.register_envs(ale_py)
    env = RecordTrajectory(gym.make("ALE/Breakout-v5"), sys.argv[1], flush_seconds=0.01)
    env.reset(seed=1)
    for _ in range(30):
        env.step(1)
    env.writer.flush()
    print("recording", flush=True)
    i = 0
    while True:  # structural changes back to back: the file leaves SWMR mode for each
        env.writer.set_metadata(f"key_{i}", {"i": i})
        i += 1
    """
)


@pytest.mark.slow  # fault injection with real processes; runs in CI's slow suite
def test_kills_during_structural_changes_leave_a_readable_log(tmp_path):
    """A new stream or metadata attribute is made outside SWMR mode, where a kill left a file that opened neither
    way (6 of 10 killed loops of set_metadata); now on a copy swapped in by rename: every kill leaves a log that
    opens and verifies, with the metadata made before it."""
    rng = np.random.default_rng(11)
    for trial in range(8):
        path = tmp_path / f"meta-{trial}.h5"
        child = subprocess.Popen(
            [sys.executable, "-c", METADATA_LOOP, str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert child.stdout.readline().strip() == "recording"
        time.sleep(float(rng.uniform(0.2, 0.8)))
        child.send_signal(signal.SIGKILL)
        child.wait()
        with TrajectoryLog(path) as log:
            keys = sorted(int(k.split("_")[1]) for k in log.metadata if k.startswith("key_"))
            assert keys == list(range(len(keys)))  # every change before the kill, whole, in order
        assert verify(path, progress=False).ok


KILLED_AT_OPEN = textwrap.dedent(
    """
    import os, signal, sys
    import h5py
    from replay import RecordTrajectory
    import gymnasium as gym, ale_py
    gym.register_envs(ale_py)
    log, kill_at = os.path.abspath(sys.argv[1]), int(sys.argv[2])
    opened = 0
    init = h5py.File.__init__

    def init_then_die(self, *args, **kwargs):  # dies the moment the log is open for writing for the kill_at-th time
        global opened
        init(self, *args, **kwargs)
        if self.mode == "r+" and os.path.abspath(self.filename) == log:
            opened += 1
            if opened == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

    h5py.File.__init__ = init_then_die
    env = RecordTrajectory(gym.make("ALE/Breakout-v5"), log, flush_seconds=0.01)  # opens 1, 2 (the stream)
    env.reset(seed=1)
    for _ in range(30):
        env.step(1)
    env.writer.set_metadata("a", 1)  # 3
    env.writer.set_metadata("b", 2)  # 4
    env.close()
    """
)


@pytest.mark.parametrize("kill_at", [1, 2, 3, 4])
def test_a_kill_right_after_the_log_is_opened_for_writing_leaves_it_readable(tmp_path, kill_at):
    """The moment a kill lands in matters: a log opened ordinarily and switched to SWMR afterwards, killed in
    between, opened neither way (1 of 8 random kills in CI; 2 of 40 in a loop). Opened straight into SWMR mode, a
    kill at the first moment it is open leaves a log that reads, and appends."""
    path = tmp_path / "opened.h5"
    child = subprocess.run([sys.executable, "-c", KILLED_AT_OPEN, str(path), str(kill_at)], capture_output=True)
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    with TrajectoryLog(path) as log:
        assert sorted(k for k in log.metadata if k in ("a", "b")) == ["a", "b"][: max(0, kill_at - 3)]
    for leftover in (".opened.h5.structure.tmp", ".opened.h5.rewrite.tmp"):  # as kills mid-change leave them
        (tmp_path / leftover).write_bytes(b"half a copy")
    TrajectoryWriter(path).close()  # a writer that changes nothing: only the clean-up can remove them
    assert sorted(p.name for p in tmp_path.iterdir()) == ["opened.h5"]
    record_single(path, "Breakout", STICKY, 20, seed=2)
    assert verify(path, progress=False).ok


APPEND = textwrap.dedent(
    """
    import sys
    from replay import RecordingError, TrajectoryWriter
    try:
        TrajectoryWriter(sys.argv[1]).close()
    except RecordingError as error:
        print(error)
        sys.exit(3)
    """
)


def test_a_read_only_log_left_by_a_killed_writer_is_refused_and_permissions_are_kept(tmp_path):
    """Recovery and upgrades replace the log by rename, which needs only the folder's permission: a read-only log
    must be refused, not replaced; and a log that is appended to keeps its mode."""
    path = tmp_path / "opened.h5"
    subprocess.run([sys.executable, "-c", KILLED_AT_OPEN, str(path), "3"], check=False)
    assert storage.needs_recovery(path), "a killed writer's log"
    path.chmod(0o444)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    command = [sys.executable, "-c", APPEND, str(path)]
    if os.geteuid() == 0:  # root may write anything: drop the capabilities that let it
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv, which could drop root's override of file modes")
        command = [setpriv, "--bounding-set", "-dac_override,-dac_read_search,-fowner", *command]
    refused = subprocess.run(command, capture_output=True, text=True)
    assert refused.returncode == 3, refused.stderr
    assert f"{path}: the log is read-only (mode -r--r--r--)" in refused.stdout and "chmod u+w" in refused.stdout
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before and path.stat().st_mode & 0o777 == 0o444
    path.chmod(0o640)
    record_single(path, "Breakout", STICKY, 20, seed=2)  # recovery, a new stream: two renames
    assert path.stat().st_mode & 0o777 == 0o640
    assert verify(path, progress=False).ok


@pytest.mark.slow  # fault injection with real processes; runs in CI's slow suite
def test_a_log_being_written_can_be_read_by_another_process(tmp_path):
    path = tmp_path / "live.h5"
    child = subprocess.Popen(
        [sys.executable, "-c", RECORDER, str(path), "4000", "0.2"], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout.readline().strip() == "recording"
    reads = 0
    deadline = time.monotonic() + 60
    while child.poll() is None and time.monotonic() < deadline:
        try:
            with TrajectoryLog(path) as log:
                finished = [e for e in log.episodes if e.finished]
                if finished:
                    frames = list(log.frames(finished[0].index))
                    assert len(frames) == finished[0].length + 1
                    reads += 1
        except LogFormatError:
            pass  # caught between two flushes: read again
        time.sleep(0.2)
    assert child.wait(timeout=120) == 0, "the writer must not be harmed by readers"
    assert reads >= 2, "the reader should have seen finished episodes while the writer ran"
    assert verify(path, progress=False).ok


DISK_FULL = textwrap.dedent(
    """
    import resource, signal, sys, numpy as np, gymnasium as gym, ale_py
    from replay import RecordTrajectory, RecordingError
    gym.register_envs(ale_py)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a full disk: writes fail with an error instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (1_300_000, 1_300_000))
    env = RecordTrajectory(gym.make("ALE/Breakout-v5"), sys.argv[1], flush_seconds=0.05, snapshot_interval=64)
    rng = np.random.default_rng(0)
    env.reset(seed=1)
    try:
        for _ in range(200_000):
            _, _, terminated, truncated, _ = env.step(int(rng.integers(4)))
            if terminated or truncated:
                env.reset()
    except RecordingError as error:
        print(error)
        sys.exit(3)
    """
)


@pytest.mark.slow  # fault injection with real processes; runs in CI's slow suite
def test_disk_full_while_recording_is_a_clear_error_and_earlier_episodes_stay_readable(tmp_path):
    path = tmp_path / "full.h5"
    result = subprocess.run([sys.executable, "-c", DISK_FULL, str(path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 3, result.stderr[-2000:]
    assert "writing the log failed" in result.stdout and "full.h5" in result.stdout
    with TrajectoryLog(path) as log:
        assert len(log.episodes) >= 1
    assert verify(path, progress=False).ok


# The disk fills after the space check passed (another process wrote meanwhile): the check sees no size limit,
# so HDF5's writes fail with EFBIG in the middle of a flush.
DISK_FILLS_AFTER_THE_CHECK = textwrap.dedent(
    """
    import hashlib, resource, signal, sys, numpy as np, gymnasium as gym, ale_py
    from replay import RecordTrajectory, RecordingError
    gym.register_envs(ale_py)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1_300_000, 1_300_000))
    limits = resource.getrlimit
    resource.getrlimit = lambda which: (
        (resource.RLIM_INFINITY, resource.RLIM_INFINITY) if which == resource.RLIMIT_FSIZE else limits(which)
    )
    path = sys.argv[1]
    env = RecordTrajectory(gym.make("ALE/Breakout-v5"), path, flush_seconds=0.05, snapshot_interval=64)
    rng = np.random.default_rng(0)

    def record(steps):
        for _ in range(steps):
            _, _, terminated, truncated, _ = env.step(int(rng.integers(4)))
            if terminated or truncated:
                env.reset()

    env.reset(seed=1)
    try:
        record(200_000)
    except RecordingError as error:
        print("failed:", error)
    else:
        sys.exit("the writes never failed")
    print("sha256:", hashlib.sha256(open(path, "rb").read()).hexdigest())
    try:
        record(1_000)  # the recorder goes on until its next flush check
    except RecordingError as error:
        print("later:", error)
    env.close()
    sys.exit(3)
    """
)


@pytest.mark.slow  # fault injection with real processes; runs in CI's slow suite
def test_disk_filling_after_the_space_check_is_a_clear_error_and_the_log_stays_as_of_the_last_flush(tmp_path):
    path = tmp_path / "full.h5"
    result = subprocess.run(
        [sys.executable, "-c", DISK_FILLS_AFTER_THE_CHECK, str(path)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 3, f"exit {result.returncode}\n{result.stdout[-1000:]}\n{result.stderr[-3000:]}"
    for noise in ("Traceback", "Exception ignored", "Fatal Python error"):
        assert noise not in result.stderr, result.stderr[-3000:]
    printed = dict(line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line)
    assert str(path) in printed["failed"] and "EFBIG" in printed["failed"]
    assert "last flush" in printed["failed"] and "free space" in printed["failed"].lower()
    assert printed["later"] == printed["failed"], "later calls repeat why the recorder stopped"
    # Nothing reaches the file after the failed write: not the later steps, not close(), not interpreter exit.
    assert hashlib.sha256(path.read_bytes()).hexdigest() == printed["sha256"]
    with TrajectoryLog(path) as log:
        assert len(log.episodes) >= 1
    assert verify(path, progress=False).ok


CREATE_ON_A_FULL_DISK = textwrap.dedent(
    """
    import os, resource, signal, sys
    from replay import RecordingError, TrajectoryWriter
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as ENOSPC would
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), resource.RLIM_INFINITY))
    try:
        TrajectoryWriter(sys.argv[1]).close()
    except RecordingError as error:
        print(error)
        sys.exit(3)
    """
)


@pytest.mark.parametrize("limit", [600, 2000, 4000])
def test_a_disk_full_while_creating_the_log_is_a_clear_error_and_leaves_nothing(tmp_path, limit):
    """Where the new log's first bytes stop decides which HDF5 call fails: some raised RuntimeError from h5py,
    which escaped as a traceback."""
    path = tmp_path / "new.h5"
    done = subprocess.run([sys.executable, "-c", CREATE_ON_A_FULL_DISK, str(path), str(limit)], capture_output=True)
    stdout, stderr = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 3 and "Traceback" not in stderr, stderr[-2000:]
    assert stdout.startswith(f"{path}: cannot create the log (File too large (EFBIG)); choose a writable path")
    assert [p.name for p in tmp_path.iterdir()] == []  # no half-made log, no temporary file, no lock


def test_unwritable_output_path_is_a_clear_error(tmp_path):
    import ale_py  # noqa: F401  (registers the ALE envs)
    import gymnasium as gym

    from replay import RecordTrajectory

    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(RecordingError, match=r"a-file/log\.h5: cannot create the log.*writable path"):
        RecordTrajectory(gym.make("ALE/Pong-v5"), blocker / "log.h5")


@pytest.fixture(scope="module")
def small_log(tmp_path_factory):
    path = tmp_path_factory.mktemp("faults") / "small.h5"
    record_single(path, "Breakout", STICKY, 250, snapshot_interval=64, sync_interval=8)
    return path


@pytest.mark.parametrize(("key", "value"), [("repeat_action_probability", 0.0), ("frameskip", 3)])
def test_changed_emulator_setting_is_caught_with_episode_and_step(small_log, tmp_path, key, value):
    path = tmp_path / "changed.h5"
    shutil.copy(small_log, path)
    with h5py.File(path, "a") as handle:
        attrs = handle[fmt.GROUP_STREAMS][fmt.stream_name(0)].attrs
        spec = json.loads(attrs[fmt.ATTR_SPEC_JSON])
        spec["kwargs"][key] = value
        attrs[fmt.ATTR_SPEC_JSON] = json.dumps(spec)
    report = verify(path, progress=False)
    assert not report.ok
    assert report.problems[0].episode == 0 and report.problems[0].step is not None


def _hostile_spec(spec: dict, where: str, tmp_path: Path) -> dict:
    """A spec that, if built, writes into ``tmp_path``: by ``exec``, or by naming a real class of an allowed
    package (a prefix check let these through: RecordVideo wrote its video, ``rewrite`` was called)."""
    payload = f"open({str(tmp_path / 'pwned')!r}, 'w').write('x')"
    folder = str(tmp_path / "pwned-video")
    if where == "exec":
        spec["entry_point"], spec["kwargs"] = "builtins:exec", {"source": payload}
    elif where == "exec-wrapper":
        spec["additional_wrappers"] = [{"name": "X", "entry_point": "builtins:exec", "kwargs": {"source": payload}}]
    elif where == "project-function":
        spec["entry_point"], spec["kwargs"] = "replay.storage:rewrite", {"path": str(tmp_path / "pwned")}
    elif where == "video-wrapper":
        spec["additional_wrappers"].append(
            {
                "name": "RecordVideo",
                "entry_point": "gymnasium.wrappers.rendering:RecordVideo",
                "kwargs": {"video_folder": folder, "disable_logger": True},
            }
        )
        spec["kwargs"]["render_mode"] = "rgb_array"
    return spec


@pytest.mark.parametrize("where", ["exec", "exec-wrapper", "project-function", "video-wrapper"])
def test_hostile_log_runs_no_code(small_log, tmp_path, where):
    path = tmp_path / "hostile.h5"
    shutil.copy(small_log, path)
    with h5py.File(path, "a") as handle:
        attrs = handle[fmt.GROUP_STREAMS][fmt.stream_name(0)].attrs
        attrs[fmt.ATTR_SPEC_JSON] = json.dumps(_hostile_spec(json.loads(attrs[fmt.ATTR_SPEC_JSON]), where, tmp_path))
    with pytest.raises(LogFormatError, match="refusing to import it"):
        with TrajectoryLog(path) as log:
            list(log.frames(0))
    with pytest.raises(ReplayError):
        verify(path, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("pwned")) == []


def test_absurd_declared_sizes_are_refused(small_log, tmp_path):
    path = tmp_path / "absurd.h5"
    shutil.copy(small_log, path)
    with h5py.File(path, "a") as handle:
        sync = handle[fmt.GROUP_STREAMS][fmt.stream_name(0)][fmt.DATASET_SYNC]
        sync.resize(10**9, axis=0)  # sparse: costs nothing on disk, would cost GBs to read
    with TrajectoryLog(path) as log, pytest.raises(LogFormatError, match="declares 1000000000 rows"):
        list(log.frames(0))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), min_size=1, max_size=8))
def test_fuzzed_logs_give_replay_errors_or_exact_replays(small_log, tmp_path, flips):
    """Flipped bytes anywhere: the reader either replays (checked by verify) or raises a ReplayError."""
    data = bytearray(small_log.read_bytes())
    for where, mask in flips:
        data[int(where * len(data))] ^= mask
    path = tmp_path / "fuzzed.h5"
    path.write_bytes(bytes(data))
    before = hashlib.sha256(data).hexdigest()
    try:
        report = verify(path, progress=False)
        assert isinstance(report.ok, bool)
    except ReplayError:
        pass
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before, "reading must never modify the file"


@pytest.mark.slow
@pytest.mark.xfail(
    reason="HDF5 reads this damaged global heap forever, inside H5Aread (docs/notes.md): no guard yet", strict=True
)
def test_a_damaged_global_heap_gives_an_error_not_a_hang():
    """A fuzzed log (one random draw of the test above) whose variable-length ``format`` attribute points into a
    damaged global heap: reading the attribute never returns. The check runs in a process of its own, killed after
    20 s."""
    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "hdf5-global-heap-loop.h5"
    script = (
        f"from replay import verify\ntry:\n    verify({str(fixture)!r}, progress=False)\nexcept Exception:\n    pass"
    )
    subprocess.run([sys.executable, "-c", script], timeout=20, check=True, capture_output=True)
