"""Why the log is written in HDF5's SWMR mode: SIGKILL a process appending to compressed datasets, many times.

Each trial starts a writer that appends random-length rows of known values to four gzip-compressed tables and
an unfiltered byte blob, flushing after every round (as the trajectory writer does at its flush interval), kills
it after a random 0.8-2.5 s, then reads everything back and compares it with the values written. Two modes:
``plain`` (an ordinary HDF5 file, libver "earliest") and ``swmr`` (libver "latest", SWMR writing).

    python tests/bench/probe_hdf5_kills.py [--trials 30] [--json probe_hdf5_kills.json]
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

TABLES = ("a", "b", "c", "d")


def expected(name: str, n: int) -> np.ndarray:
    return np.arange(n, dtype=np.int64) * 7 + TABLES.index(name) if name in TABLES else (np.arange(n) % 251)


def write_forever(path: str, mode: str) -> None:
    handle = h5py.File(path, "w", locking=False, libver="latest" if mode == "swmr" else "earliest")
    for name in TABLES:
        handle.create_dataset(
            name, shape=(0,), maxshape=(None,), dtype="<i8", chunks=(1024,), compression="gzip", shuffle=True
        )
    handle.create_dataset("blob", shape=(0,), maxshape=(None,), dtype="u1", chunks=(16384,))
    handle.flush()
    if mode == "swmr":
        handle.swmr_mode = True
    rng = np.random.default_rng(0)
    while True:
        for name in (*TABLES, "blob"):
            dataset = handle[name]
            start = dataset.shape[0]
            count = int(rng.integers(1, 300 if name in TABLES else 3000))
            dataset.resize(start + count, axis=0)
            dataset[start:] = expected(name, start + count)[start:].astype(dataset.dtype)
        handle.flush()


def check(path: Path) -> str:
    try:
        try:
            handle = h5py.File(path, "r", locking=False)
        except OSError:
            handle = h5py.File(path, "r", locking=False, swmr=True)
        with handle:
            for name in (*TABLES, "blob"):
                values = handle[name][:]
                if not np.array_equal(values, expected(name, len(values)).astype(values.dtype)):
                    return "wrong values"
        return "ok"
    except Exception as error:  # what a reader would meet
        return f"unreadable ({type(error).__name__})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--json", type=Path, default=Path("probe_hdf5_kills.json"))
    args = parser.parse_args()
    results: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("plain", "swmr"):
            outcomes: dict[str, int] = {}
            for trial in range(args.trials):
                path = Path(tmp) / f"{mode}-{trial}.h5"
                child = subprocess.Popen([sys.executable, __file__, "--write", str(path), mode])
                time.sleep(random.uniform(0.8, 2.5))
                child.send_signal(signal.SIGKILL)
                child.wait()
                outcome = check(path)
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
            results[mode] = outcomes
            print(f"{mode:<6} {args.trials} kills: " + ", ".join(f"{k}: {v}" for k, v in sorted(outcomes.items())))
    args.json.write_text(json.dumps({"trials": args.trials, "results": results}, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--write":
        write_forever(sys.argv[2], sys.argv[3])
    else:
        main()
