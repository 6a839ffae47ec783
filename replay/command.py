"""Hydra apps as commands: a mistake on the command line is one ``error:`` line and exit code 2.

Hydra reports a config it cannot compose (an unknown group option, a misspelt key, a value of the wrong type)
in a block of several lines and exits with 1, before the app's own checks run. :func:`run_app` asks Hydra to
raise those errors instead (``HYDRA_FULL_ERROR``), and reports them as the app reports its own refusals: one
line naming the override and Hydra's hint. Only errors raised before the app's function runs are reported so:
anything raised from inside it (a bug, a fault during training) keeps its traceback, as does every error when
the user asked for ``HYDRA_FULL_ERROR=1``, except :class:`Refused`, the app's own refusal of its input (a sweep's
job raises it, see there). Ctrl-C is one line and exit code 130.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from types import CodeType, TracebackType
from typing import NoReturn

from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException, OverrideParseException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

INTERRUPTED = 130


class Refused(Exception):
    """Input the app cannot use, explained by the message alone: :func:`run_app` reports it as one ``error:`` line
    and exit code 2 wherever it comes from. Apps raise it from a sweep's job, where Hydra's launcher collects
    each job's outcome and re-raises the first failure after naming the job's overrides."""


def refuse(error: BaseException) -> NoReturn:
    """End the running Hydra job on input it cannot use, ``error``'s message saying why: one ``error:`` line and
    exit code 2; in a sweep, :class:`Refused`, so that the launcher first runs the other jobs (with Hydra's own
    line naming this job's overrides, a single run would print that line too)."""
    if HydraConfig.get().mode == RunMode.MULTIRUN:
        raise Refused(str(error)) from error
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)


def run_app(main: Callable[[], None], command: str, *, interrupted: str = "interrupted") -> None:
    """Run a ``@hydra.main`` function as ``command`` (``python -m render``, say), reporting config mistakes and
    Ctrl-C (as ``interrupted``, or as the last note the app added to the interrupt) in one line on stderr."""
    previous = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        main()
    except (HydraException, OmegaConfBaseException) as error:
        task = getattr(main, "__wrapped__", main).__code__
        if previous == "1" or _raised_within(error, task):
            raise
        print(f"error: {config_error_message(error, command)}", file=sys.stderr)
        sys.exit(2)
    except Refused as error:
        if previous == "1":
            raise
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as interrupt:
        # The app may say what the interrupt left behind (a note on the exception: the run to resume).
        notes = getattr(interrupt, "__notes__", None)
        print(f"{command}: {'interrupted; ' + notes[-1] if notes else interrupted}", file=sys.stderr)
        sys.exit(INTERRUPTED)
    finally:
        if previous is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = previous


def _raised_within(error: BaseException, code: CodeType) -> bool:
    """Whether ``error`` (or an error it was raised from) passed through a frame running ``code``."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        tb: TracebackType | None = current.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code is code:
                return True
            tb = tb.tb_next
        current = current.__cause__ or current.__context__
    return False


def config_error_message(error: BaseException, command: str) -> str:
    """One line for a config Hydra could not compose, with what to do about it.

    Example:
        >>> from hydra.errors import MissingConfigException
        >>> text = "Could not find 'overlay/x'\\n\\nAvailable options in 'overlay':\\n\\tfull\\n\\tx_schema\\n\\traw\\n"
        >>> config_error_message(MissingConfigException(text), "python -m render")
        "Could not find 'overlay/x'; the options of overlay are: full, raw"
    """
    text = str(error).split("Config search path:")[0]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith(("full_key:", "object_type=", "Set the environment"))]
    first = lines[0] if lines else type(error).__name__
    options = re.search(r"Available options in '([^']+)':\n((?:\t[^\n]*\n?)+)", text)
    if options:
        names = [n.strip() for n in options.group(2).splitlines() if n.strip() and not n.strip().endswith("_schema")]
        return f"{first}; the options of {options.group(1)} are: {', '.join(names)}"
    unknown = re.match(r"Could not override '([^']+)'", first)
    if unknown:
        listing = "--cfg hydra" if unknown.group(1).startswith("hydra.") else "--cfg job"
        return f"{first.rstrip('.')}: no such setting; `{command} {listing}` lists every setting"
    if isinstance(error, OverrideParseException):
        return f"cannot read the override {error.override!r}: {'; '.join(lines)}"
    cause = error.__cause__
    if cause is not None and str(cause).strip():
        detail = str(cause).strip().splitlines()[0].strip()
        return f"{first}: {detail}; `{command} --cfg job` shows every setting and its value"
    return "; ".join(lines) if lines else first


def register_help(app: str, schema: type, conf_dir: Path) -> None:
    """Register the resolvers ``${<app>_groups:}`` and ``${<app>_settings:}`` that an app's ``hydra.help.template``
    uses: its own config groups (the folders of ``conf_dir`` named by a field of ``schema``) with their options,
    and every setting as ``key=value`` with the one-line description its dataclass's docstring gives."""
    OmegaConf.register_new_resolver(f"{app}_groups", lambda: groups_help(schema, conf_dir), replace=True)
    OmegaConf.register_new_resolver(f"{app}_settings", lambda *, _root_: settings_help(schema, _root_), replace=True)


def groups_help(schema: type, conf_dir: Path) -> str:
    """``group: option, option`` for every field of ``schema`` that ``conf_dir`` has a group folder for."""
    lines = []
    for field in dataclasses.fields(schema):
        folder = conf_dir / field.name
        if folder.is_dir():
            options = sorted(p.stem for p in folder.glob("*.yaml"))
            lines.append(f"{field.name}: {', '.join(options)}")
    return "\n".join(lines)


def settings_help(schema: type, config: DictConfig) -> str:
    """Every setting of ``config`` (Hydra's own left out) as ``key=value``, each with its description."""
    rows: list[tuple[str, str]] = []

    def walk(node: DictConfig, cls: type | None, prefix: str, inherited: str) -> None:
        notes = _attribute_docs(cls) if cls is not None else {}
        hints = typing.get_type_hints(cls) if cls is not None and dataclasses.is_dataclass(cls) else {}
        for key in node:
            if key == "hydra":
                continue
            value = node._get_node(key)
            note = notes.get(str(key), inherited)
            if isinstance(value, DictConfig):
                typed = OmegaConf.get_type(value)
                cls_of_value = typed if dataclasses.is_dataclass(typed) else _dataclass_of(hints.get(str(key)))
                walk(value, cls_of_value, f"{prefix}{key}.", note)
            else:
                shown = (
                    "???" if value._is_missing() else OmegaConf.to_yaml({"v": value._value()}).split(":", 1)[1].strip()
                )
                rows.append((f"{prefix}{key}={shown}", note))

    walk(config, schema, "", "")
    width = max((len(k) for k, _ in rows), default=0) + 4
    return "\n".join(f"{k.ljust(width)}{note}".rstrip() for k, note in rows)


def _yaml_scalar(value: object) -> str:
    """``value`` as it is written on the command line (``null``, ``true``, ``[0, 0, 0]``)."""
    return OmegaConf.to_yaml({"v": value}).split(":", 1)[1].strip()


def _dataclass_of(hint: object) -> type | None:
    for candidate in (hint, *typing.get_args(hint)):
        if isinstance(candidate, type) and dataclasses.is_dataclass(candidate):
            return candidate
    return None


def _attribute_docs(cls: type) -> dict[str, str]:
    """The first sentence of each entry of a Google-style ``Attributes:`` section (``a, b: text`` names both)."""
    doc = inspect.getdoc(cls) or ""
    if "Attributes:" not in doc:
        return {}
    entries: list[tuple[list[str], str]] = []
    for line in doc.split("Attributes:", 1)[1].splitlines():
        entry = re.match(r"^ {4}(\w[\w, ]*):\s+(.*)$", line)
        if entry:
            entries.append(([n.strip() for n in entry.group(1).split(",")], entry.group(2).strip()))
        elif line.startswith(" " * 8) and entries:
            names, text = entries[-1]
            entries[-1] = (names, f"{text} {line.strip()}")
    notes: dict[str, str] = {}
    for names, text in entries:
        sentence = re.split(
            r"(?<=\.)(?<!e\.g\.)\s+(?=[A-Z(])", re.sub(r":\w+:`([^`]+)`", r"\1", text).replace("``", ""), maxsplit=1
        )[0]
        for name in names:
            notes[name] = sentence.rstrip(".")
    return notes
