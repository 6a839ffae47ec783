"""Hydra apps as commands: a mistake on the command line is one ``error:`` line and exit code 2.

Hydra reports a config it cannot compose (an unknown group option, a misspelt key, a value of the wrong type)
in a block of several lines and exits with 1, before the app's own checks run. :func:`run_app` asks Hydra to
raise those errors instead (``HYDRA_FULL_ERROR``), and reports them as the app reports its own refusals: one
line naming the override and the fix. Ctrl-C is one line and exit code 130. Anything else keeps its traceback.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable

from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

INTERRUPTED = 130


def run_app(main: Callable[[], None], command: str, *, interrupted: str = "interrupted") -> None:
    """Run a ``@hydra.main`` function as ``command`` (``python -m render``, say), reporting config mistakes and
    Ctrl-C (as ``interrupted``) in one line on stderr."""
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    try:
        main()
    except (HydraException, OmegaConfBaseException) as error:
        print(f"error: {config_error_message(error, command)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"{command}: {interrupted}", file=sys.stderr)
        sys.exit(INTERRUPTED)


def config_error_message(error: BaseException, command: str) -> str:
    """One line for a config Hydra could not compose, with what to do about it.

    Example:
        >>> from hydra.errors import MissingConfigException
        >>> text = "Could not find 'overlay/x'\\n\\nAvailable options in 'overlay':\\n\\tfull\\n\\tx_schema\\n\\traw\\n"
        >>> config_error_message(MissingConfigException(text), "python -m render")
        "Could not find 'overlay/x'; the options of overlay are: full, raw"
    """
    text = str(error)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = lines[0] if lines else type(error).__name__
    options = re.search(r"Available options in '([^']+)':\n((?:\t[^\n]*\n?)+)", text)
    if options:
        names = [n.strip() for n in options.group(2).splitlines() if n.strip() and not n.strip().endswith("_schema")]
        return f"{first}; the options of {options.group(1)} are: {', '.join(names)}"
    unknown = re.match(r"Could not override '([^']+)'", first)
    if unknown:
        return f"{first.rstrip('.')}: no such setting; `{command} --cfg job` lists every setting"
    cause = error.__cause__
    if cause is not None and str(cause).strip():
        detail = str(cause).strip().splitlines()[0].strip()
        return f"{first}: {detail}; `{command} --cfg job` shows every setting and its value"
    return first
