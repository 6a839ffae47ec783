"""What a request to start a run may say: the game, the steps, the seed and the trainer's own settings, each
checked before a trainer starts, with a message that names the key, the value and what is valid.

Settings are the trainer's numeric, boolean and plain string settings by their Hydra keys (``ppo.num_envs``...),
found in :class:`replay.train.config.TrainConfig`, except those the viewer sets itself (``RESERVED``); each value
is written so that Hydra takes it literally (no sweep, no interpolation), and the merged config goes through the
trainer's own checks, so a run the trainer would refuse is refused with its message.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
import typing
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from render.viewer.errors import BadRequestError
from replay.train.config import TrainConfig, validate

MAX_TOTAL_STEPS = 1_000_000_000  # 4 billion emulator frames; the ALE benchmarks' "200M frames" is 50M steps
MAX_SEED = 2**32 - 1  # numpy's SeedSequence and gymnasium's reset take any non-negative int; torch takes 64 bits
# Set by the viewer, never by a request: how the run is named, whether it records (the viewer shows the log)
# and the progress bar (a terminal's, not a pipe's).
RESERVED = ("total_steps", "seed", "run_dir", "resume", "record.enabled", "progress", "env.id")
_PLAIN = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")  # a string value Hydra takes literally: no sweep, no interpolation
_KINDS = {int: "an integer", float: "a number", bool: "true or false", str: "a word of letters, digits and _.:-"}


def games() -> dict[str, str]:
    """Every game ale-py registers, by display name: ``{"Breakout": "ALE/Breakout-v5", ...}``."""
    ids = sorted(name for name in gym.registry if name.startswith("ALE/") and name.endswith("-v5"))
    return {name.removeprefix("ALE/").removesuffix("-v5"): name for name in ids if "-ram" not in name}


def env_id_of(game: str) -> str:
    """The env id of ``game``, a display name (any case) or an id, e.g. ``"breakout"`` → ``"ALE/Breakout-v5"``."""
    known = games()
    by_name = {name.lower(): env_id for name, env_id in known.items()}
    found = by_name.get(game.lower()) or (game if game in known.values() else None)
    if found is None:
        close = difflib.get_close_matches(game, list(known), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise BadRequestError(
            f"unknown game {game!r}; {hint}the {len(known)} games are: {', '.join(known)} (or their ids, "
            "e.g. ALE/Breakout-v5; GET /api/training/games)"
        )
    return found


def settings_allowed() -> dict[str, type]:
    """The trainer's settings a request may give, by Hydra key, with their types (``ppo.num_envs``: int, ...)."""
    allowed: dict[str, type] = {}

    def walk(cls: type, prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            hint = hints[field.name]
            key = prefix + field.name
            if dataclasses.is_dataclass(hint):
                walk(hint, key + ".")
            elif key not in RESERVED and hint in (int, float, bool, str):
                allowed[key] = hint

    walk(TrainConfig, "")
    return allowed


def text(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise BadRequestError(f'expected {key} to be a string such as "Breakout", got {value!r}')
    return value


def integer(value: Any, key: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadRequestError(f"expected {key} to be an integer in {low:,}..{high:,}, got {value!r}")
    return value


def total_steps(value: Any) -> int:
    return integer(value, "total_steps", 1, MAX_TOTAL_STEPS)


def seed(value: Any) -> int:
    return integer(value, "seed", 0, MAX_SEED)


def overrides(settings: Mapping[str, Any]) -> list[str]:
    """``key=value`` overrides for the trainer, each key a known setting and each value of its type, written so
    that Hydra takes it literally."""
    allowed = settings_allowed()
    written = []
    for key, value in settings.items():
        kind = allowed.get(key)
        if kind is None:
            raise BadRequestError(f"unknown setting {key!r}; the settings a run may set are: {', '.join(allowed)}")
        fits = {
            bool: isinstance(value, bool),
            int: isinstance(value, int) and not isinstance(value, bool),
            float: isinstance(value, (int, float)) and not isinstance(value, bool),
            str: isinstance(value, str) and bool(_PLAIN.match(value)),
        }[kind]
        if not fits:
            raise BadRequestError(f"expected setting {key} to be {_KINDS[kind]}, got {value!r}")
        written.append(f"{key}={json.dumps(value) if kind is not str else value}")
    return written


def check_config(overrides: list[str]) -> None:
    """Refuse what the trainer would refuse, with its own message, before starting it."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(TrainConfig), OmegaConf.from_dotlist(overrides))
        validate(OmegaConf.to_object(merged))
    except (ValueError, OmegaConfBaseException) as error:
        raise BadRequestError(f"the trainer would refuse this run: {str(error).splitlines()[0]}") from None
