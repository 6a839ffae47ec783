"""How a trajectory log file is opened: crash-consistent writing, one writer at a time, recovery after a kill.

HDF5 has no journal. A writer killed in the middle of a flush can leave an ordinary (non-SWMR) file whose
metadata points at chunks that were since rewritten elsewhere, and compressed chunks then fail to decode or,
worse, decode to other data (``tests/bench/probe_hdf5_kills.py``: 9 and 17 of 30 SIGKILLs at random moments, in
two runs). HDF5's SWMR mode orders its writes so that the file on disk is consistent at every moment, compressed
chunks included (0 of 30). So logs are written in SWMR mode (``libver="latest"``):

- Datasets only grow while in SWMR mode. Structural changes (a new stream, a metadata attribute) leave it: the
  writer closes the log, makes the change on a copy (or builds a new log under a temporary name), renames that
  over the log (``structured``) and opens it again straight into SWMR mode (``open_for_writing``). A kill at any
  moment leaves the log before or after the change, never half made, and never open outside SWMR mode: a file
  killed while open for ordinary writing opens neither way (``tests/test_faults.py``; 1 of 8 kills in CI did
  that when the log was opened ordinarily and then switched to SWMR).
- A file left by a killed SWMR writer refuses an ordinary open ("file is already open for write", or "truncated
  file" when the writer stopped during a flush); it opens for reading with ``swmr=True`` (``open_for_reading``
  tries both), and before appending to it again it is rewritten into a clean file by ``recover`` (copy, then
  atomic rename; nothing recorded is changed).
- A write that fails (a full disk) ends the writer: the file is let go without another write (``abandon``) and
  reads like a killed writer's.
- SWMR mode never reuses the space of a rewritten chunk, so a log grows to 2-3x its data while written;
  ``compact`` copies it down when its writer closes it.
- A lock file next to the log (``<log>.lock``, ``flock``) tells a live writer from a dead one: only one process
  records to a log at a time, and a log whose writer died is recovered, never one still being written.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import h5py
from h5py import h5f, h5p

from replay.errors import LogFormatError, RecordingError

LOCK_SUFFIX = ".lock"
_OPEN_FOR_WRITE = "already open for write"
_SHORTER_THAN_CLAIMED = "truncated file"  # the superblock's end-of-file address lies past the end of the file
_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_SWMR_WRITE_FLAG = 0x04  # superblock version 3, byte 11 ("file consistency flags", HDF5 file format specification)
_READ_ATTEMPTS = 5  # a log written by an older ale-replay may be briefly open outside SWMR mode at a new stream
_LOCK_ATTEMPTS = 5
_FIXED_OVERHEAD = 24 << 10  # metadata of a log's objects (~18 KB for one stream): not worth a copy
_COMPACT_MINIMUM = 16 << 10  # and a quarter of the file


def open_for_reading(path: Path) -> h5py.File:
    """Open a log read-only, whether closed cleanly, being written, or left by a killed writer.

    Raises ``OSError`` from h5py when the file cannot be opened at all.
    """
    for attempt in range(_READ_ATTEMPTS):
        try:
            return _refreshed(h5py.File(path, "r", locking=False))
        except OSError as error:
            if not _left_by_writer(path, error):
                raise
        try:
            return _refreshed(h5py.File(path, "r", locking=False, swmr=True))
        except OSError as error:
            if _OPEN_FOR_WRITE not in str(error) or attempt == _READ_ATTEMPTS - 1:
                raise
        time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def _refreshed(handle: h5py.File) -> h5py.File:
    """``handle`` showing everything a live writer flushed so far. HDF5 opens a file once per process: a second
    open while another handle is open shares that handle's view as of its own opening (a reader of a growing log
    saw it stop growing), until each dataset is refreshed."""
    if handle.swmr_mode:
        try:
            handle.visititems(lambda _, item: item.refresh() if isinstance(item, h5py.Dataset) else None)
        except BaseException:
            handle.close()
            raise
    return handle


def _left_by_writer(path: Path, error: OSError) -> bool:
    """Whether an ordinary open failed only because an SWMR writer did not close the file, which SWMR reads accept.

    Such a file is marked as open for writing; and when its writer stopped during a flush (killed, or after a write
    that failed: ``abandon``), its superblock can claim space past the end of the file, for data never written.
    What was flushed before reads back.
    """
    if _OPEN_FOR_WRITE in str(error):
        return True
    if _SHORTER_THAN_CLAIMED not in str(error):
        return False
    try:
        flags = _consistency_flags(path)
    except OSError:
        return False
    return flags is not None and bool(flags & _SWMR_WRITE_FLAG)


def _consistency_flags(path: Path) -> int | None:
    """The superblock's file consistency flags (0: closed cleanly), or None when the file does not start with a
    version 3+ superblock (the one SWMR needs, ``libver="latest"``)."""
    with open(path, "rb") as file:
        head = file.read(12)
    if len(head) < 12 or head[:8] != _SIGNATURE or head[8] < 3:
        return None
    return head[11]


def open_for_writing(path: Path) -> h5py.File:
    """Open the closed log ``path`` for appending, in SWMR mode from the first write.

    h5py opens a file for writing only ordinarily, and switching to SWMR afterwards leaves a moment when a kill
    leaves a file that no reader opens; HDF5 itself opens straight into SWMR-write mode.
    """
    access = h5p.create(h5p.FILE_ACCESS)
    access.set_libver_bounds(h5f.LIBVER_LATEST, h5f.LIBVER_LATEST)
    access.set_file_locking(False, True)  # one writer at a time is WriterLock's job, across file systems
    identifier = h5f.open(os.fsencode(path), h5f.ACC_RDWR | h5f.ACC_SWMR_WRITE, fapl=access)
    return h5py.File(identifier)


@contextlib.contextmanager
def structured(path: Path, *, create: bool = False) -> Iterator[h5py.File]:
    """Change the closed log ``path`` outside SWMR mode (new objects or attributes), or create it, on a copy that
    then replaces it by an atomic rename: a kill at any moment leaves ``path`` as it was or with the whole change,
    and an error in the change leaves it as it was.
    """
    copy = _structure_copy(path)
    try:
        if create:
            handle = h5py.File(copy, "w", libver="latest", locking=False)
        else:
            shutil.copyfile(path, copy)
            handle = h5py.File(copy, "a", libver="latest", locking=False)
        with handle:
            yield handle
        _replace(copy, path)
    finally:
        copy.unlink(missing_ok=True)


def discard_leftovers(path: Path) -> None:
    """Remove the temporary files a writer of ``path`` killed mid-change left (call holding the writer lock)."""
    for leftover in (_structure_copy(path), _rewrite_copy(path)):
        with contextlib.suppress(OSError):  # never read: one that cannot go stays, harmless
            leftover.unlink(missing_ok=True)


def _structure_copy(path: Path) -> Path:
    return path.with_name(f".{path.name}.structure.tmp")


def _rewrite_copy(path: Path) -> Path:
    return path.with_name(f".{path.name}.rewrite.tmp")


def _replace(temporary: Path, path: Path) -> None:
    """Put the closed file ``temporary`` in place of ``path`` (keeping its permissions), durably and atomically."""
    if path.exists():
        shutil.copymode(path, temporary)
    with open(temporary, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    with contextlib.suppress(OSError):  # the rename itself survives a power cut (not needed against kills)
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def abandon(handle: h5py.File) -> None:
    """Close a log open for writing without writing to it again: after a failed write, the file stays as of
    its last successful flush.

    HDF5 keeps what it failed to write and retries whenever its objects are flushed or closed (at the latest, at
    interpreter exit), and a dataset whose close fails is left half freed: the next flush of the file then crashes
    the process (SIGSEGV in ``H5D__flush_all_cb``, HDF5 2.0). So HDF5's file descriptor is first pointed at
    ``/dev/null``: its retries succeed into nothing, the close frees everything, and the log is not touched.
    """
    if not handle.id.valid:
        return
    null = os.open(os.devnull, os.O_RDWR)
    try:
        os.dup2(null, handle.id.get_vfd_handle())  # the descriptor number stays taken: nothing else can reuse it
    finally:
        os.close(null)
    with contextlib.suppress(OSError, RuntimeError):  # a read HDF5 needs at close finds nothing: keep going
        handle.close()


def needs_recovery(path: Path) -> bool:
    """Whether appending to ``path`` first needs ``recover``: a killed writer's file, or an older file layout.

    Read from the superblock's bytes: opening the file for writing to find out would itself mark it open.
    """
    # Logs from earlier ale-replay versions used the default superblock (None); a killed writer's file keeps
    # "open for (SWMR) write" set.
    return _consistency_flags(path) != 0


def recover(path: Path) -> None:
    """Rewrite a killed writer's log into a clean SWMR-capable file (see ``rewrite``) before appending to it."""
    try:
        rewrite(path)
    except OSError as error:
        raise LogFormatError(
            f"{path}: the log was left by a writer that stopped without closing it, and rewriting it into a clean "
            f"file failed ({error}); it still reads with replay.TrajectoryLog, record to a new path instead"
        ) from None


def wasted_bytes(path: Path) -> int:
    """File bytes beyond what its datasets store (HDF5 metadata included): mostly old versions of chunks."""
    stored = 0

    def add(_: str, item: h5py.HLObject) -> None:
        nonlocal stored
        if isinstance(item, h5py.Dataset):
            stored += item.id.get_storage_size()

    with open_for_reading(path) as handle:
        handle.visititems(add)
    return path.stat().st_size - stored


def compact(path: Path) -> bool:
    """Reclaim the space a closed log wasted while growing, when that is worth a copy; returns whether it did.

    In SWMR mode HDF5 does not reuse the space of a chunk it rewrote (each flush rewrites the compressed tail
    chunks), so a log grows ~2-3x its data while written. A copy holds just the data.
    """
    size = path.stat().st_size
    waste = wasted_bytes(path) - _FIXED_OVERHEAD
    if waste < max(_COMPACT_MINIMUM, size // 4) or shutil.disk_usage(path.parent).free < 2 * size:
        return False
    rewrite(path)
    return True


def rewrite(path: Path) -> None:
    """Copy every object of ``path`` into a fresh SWMR-capable file, then atomically replace ``path`` with it.

    Nothing recorded changes (HDF5 copies chunks as they are); a crash mid-way leaves ``path`` as it was. Call only
    while holding the writer lock: it must not race a live writer.
    """
    temporary = _rewrite_copy(path)
    try:
        with open_for_reading(path) as source, h5py.File(temporary, "w", libver="latest", locking=False) as target:
            target.attrs.update(dict(source.attrs))
            for name in source:
                source.copy(source[name], target, name=name)
        _replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


class WriterLock:
    """An exclusive ``flock`` on ``<log>.lock``, held while a process records to the log.

    The kernel drops it when the process dies, so a held lock means a live writer. The lock file is removed on
    release; a process that locked a file just unlinked by the previous holder notices (other inode) and retries.
    """

    def __init__(self, path: Path) -> None:
        self.path = path.with_name(path.name + LOCK_SUFFIX)
        self._fd: int | None = None
        for _ in range(_LOCK_ATTEMPTS):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as error:
                raise RecordingError(f"{path}: cannot create the log ({error}); choose a writable path") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise RecordingError(
                    f"{path}: another process is recording to this log, or another writer in this one ({self.path} "
                    "is locked); stop it, or record to another path. Several envs record into one log through one "
                    "writer: pass it on (RecordTrajectory(env, other_recorder.writer)), and for Stable-Baselines3 "
                    "(SubprocVecEnv workers too) build the envs with replay.sb3.make_atari_env(..., run_dir=...)"
                ) from None
            try:
                current = os.stat(self.path)
            except FileNotFoundError:
                current = None
            if current is not None and current.st_ino == os.fstat(fd).st_ino:
                self._fd = fd
                return
            os.close(fd)  # the previous holder removed this file after we opened it: take the new one
        raise RecordingError(f"{path}: could not take the writer lock {self.path}; try again")

    def release(self) -> None:
        if self._fd is not None:
            self.path.unlink(missing_ok=True)  # while still holding it, so no one locks a file about to vanish
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
