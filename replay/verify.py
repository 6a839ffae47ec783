"""Re-simulate every episode of a trajectory log and check it against the recording.

Usage: ``python -m replay.verify <log.h5>``; exit status 0 if every episode replays exactly, 1 if any diverges
(the first divergent step of each is printed), 2 if the log cannot be read.
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

from replay.errors import ReplayError
from replay.verification import verify


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m replay.verify", description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path, help="trajectory log (.h5)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--workers", type=_positive, default=1, help="processes to split the lanes over")
    args = parser.parse_args(argv)
    try:
        report = verify(args.path, progress=not args.quiet, workers=args.workers)
    except ReplayError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(report)
    return 0 if report.ok else 1


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of processes, got {text!r}")
    return value


class _CallableModule(types.ModuleType):
    """``import replay.verify`` rebinds the package attribute ``replay.verify`` from the function to this module;
    calling the module keeps ``replay.verify(path)`` meaning the function either way."""

    def __call__(self, *args, **kwargs):  # noqa: ANN002, ANN003 - the signature is verify's
        return verify(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    sys.exit(main())
