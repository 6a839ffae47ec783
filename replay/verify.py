"""``python -m replay.verify <log.h5>``: re-simulate every episode of a trajectory log and check it against the
recording; exit status 0 if every episode replays exactly, 1 if any diverges (the first divergent step of each is
printed), 2 if the log cannot be read.

The command is :func:`replay.verification.main`; ``replay.verify`` is the function :func:`replay.verification.verify`.
"""

import sys

from replay.verification import main

if __name__ == "__main__":
    sys.exit(main())
