"""What a log may name, and how the recorded env stack is rebuilt from it.

A log stores its env's ``EnvSpec``; ``gym.make(spec)`` rebuilds the whole wrapper stack from it at replay. But
``gym.make`` imports and calls whatever a spec names, with the log's arguments, so a log may name only the
entry points listed here (ale-py's ``AtariEnv`` and wrappers that only compute), and the recorder refuses at once
any stack replay would refuse (:func:`check_rebuildable`), rather than writing a log that cannot be replayed.
"""

from __future__ import annotations

from dataclasses import replace

import ale_py
import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import EnvSpec
from gymnasium.vector import VectorEnv

from replay.emulator import WRAPPER_STATE
from replay.errors import LogFormatError, RecordingError
from replay.wrappers import FireOnLifeLoss

gym.register_envs(ale_py)

_BOOKKEEPING_WRAPPERS = (gym.wrappers.OrderEnforcing, gym.wrappers.PassiveEnvChecker, gym.wrappers.TimeLimit)

# The entry points a log may name, exactly. gym.make imports and calls whatever a spec names, with the log's
# arguments, so a log from someone else must name nothing else: not a prefix (``replay.storage:rewrite`` or
# ``gymnasium.wrappers:RecordVideo`` with a chosen folder would pass one), but these classes, which only compute.
# Wrappers with side effects (RecordVideo, HumanRendering) or taking code (Transform*) are left out.
_ALLOWED_WRAPPER_NAMES = (
    "AddRenderObservation", "AtariPreprocessing", "ClipReward", "DelayObservation", "DtypeObservation",
    "FlattenObservation", "FrameStackObservation", "GrayscaleObservation", "MaxAndSkipObservation",
    "NormalizeObservation", "NormalizeReward", "RecordEpisodeStatistics", "RescaleObservation",
    "ReshapeObservation", "ResizeObservation", "StickyAction", "TimeAwareObservation",
)  # fmt: skip


def _entry_point(cls: type) -> str:
    return f"{cls.__module__}:{cls.__name__}"


ALLOWED_ENV_ENTRY_POINTS = frozenset({_entry_point(ale_py.env.AtariEnv)})
ALLOWED_WRAPPER_ENTRY_POINTS = frozenset(
    [_entry_point(getattr(gym.wrappers, name)) for name in _ALLOWED_WRAPPER_NAMES if hasattr(gym.wrappers, name)]
    + [_entry_point(FireOnLifeLoss)]
)


# Entry points that logs recorded by earlier versions name, and what replay builds in their place: the same class,
# moved. The sample run's log and every run trained before ``replay/train/`` existed name the first.
LEGACY_ENTRY_POINTS = {"replay.atari:FireOnLifeLoss": _entry_point(FireOnLifeLoss)}


def spec_from_json(spec_json: str, source: str) -> EnvSpec:
    """The env spec a log stores, checked against what a log may name; ``source`` names the log in errors."""
    try:
        spec = EnvSpec.from_json(spec_json)
    except Exception as error:  # gymnasium raises several types for a bad spec
        raise LogFormatError(f"{source}: the recorded env spec cannot be read ({error})") from None
    # JSON has no tuples: ale-py's random frameskip range ``(low, high)`` comes back as a list, which it refuses.
    if isinstance(spec.kwargs.get("frameskip"), list):
        spec.kwargs["frameskip"] = tuple(spec.kwargs["frameskip"])
    for wrapper in spec.additional_wrappers:  # likewise StickyAction's (min, max) repeat duration
        if wrapper.kwargs and isinstance(wrapper.kwargs.get("repeat_action_duration"), list):
            wrapper.kwargs["repeat_action_duration"] = tuple(wrapper.kwargs["repeat_action_duration"])
    if str(spec.entry_point) not in ALLOWED_ENV_ENTRY_POINTS:
        raise LogFormatError(
            f"{source}: the recorded env names entry point {str(spec.entry_point)!r}, which is not ale-py's "
            f"AtariEnv; refusing to import it (a log may name only {', '.join(sorted(ALLOWED_ENV_ENTRY_POINTS))})"
        )
    spec.additional_wrappers = tuple(
        replace(w, entry_point=LEGACY_ENTRY_POINTS.get(str(w.entry_point), w.entry_point))
        for w in spec.additional_wrappers
    )
    for wrapper in spec.additional_wrappers:
        if str(wrapper.entry_point) not in ALLOWED_WRAPPER_ENTRY_POINTS:
            raise LogFormatError(
                f"{source}: the recorded env names wrapper entry point {str(wrapper.entry_point)!r}, which replay "
                "does not build (it may write files or run code); refusing to import it. A log may name only "
                "these wrappers: " + ", ".join(sorted(ALLOWED_WRAPPER_ENTRY_POINTS))
            )
    return spec


def make_env(spec: EnvSpec, source: str = "the log") -> gym.Env:
    """Build the recorded wrapper stack. The checker is off: it would step the env and shift its RNG."""
    try:
        env = gym.make(spec, disable_env_checker=True)
    except (TypeError, ValueError, KeyError, AttributeError, gym.error.Error) as error:
        raise LogFormatError(
            f"{source}: the recorded env {spec.id!r} cannot be built from its recorded arguments ({error}); the "
            "spec is damaged, or was recorded with wrappers or ale-py options this installation lacks"
        ) from None
    skip_unread_screens(env)
    return env


# Wrappers that hand the observation from below up unchanged and never look at it.
_OBSERVATION_BLIND = (gym.wrappers.TimeLimit, gym.wrappers.OrderEnforcing, gym.wrappers.PassiveEnvChecker)
_UNREAD = np.zeros(0, dtype=np.uint8)


def skip_unread_screens(env: gym.Env) -> bool:
    """Stop the base env copying out a screen no one reads; returns whether it did.

    ``AtariPreprocessing`` throws away the observation of every inner ``step`` and ``reset`` (it reads the
    ALE's screen itself), yet the base env copies the RGB screen each emulated frame: ~30 us, four times an
    agent step. When only observation-blind wrappers stand between the two, the base env returns an empty
    array instead. Emulation, RNG draws and every observation above ``AtariPreprocessing`` are untouched
    (the bit-exact replay tests compare them byte for byte).
    """
    layer = env
    while isinstance(layer, gym.Wrapper) and not isinstance(layer, gym.wrappers.AtariPreprocessing):
        layer = layer.env
    if not isinstance(layer, gym.wrappers.AtariPreprocessing):
        return False
    inner = layer.env
    while isinstance(inner, _OBSERVATION_BLIND):
        inner = inner.env
    if isinstance(inner, gym.Wrapper) or not hasattr(inner, "_get_obs") or not hasattr(inner, "ale"):
        return False
    inner._get_obs = _UNREAD.view  # an instance attribute: this env only
    return True


_AROUND_SINGLE = "outside RecordTrajectory (around the recorder)"
# A vector recorder has no per-env outside: a sub-env's wrapper goes below it, where replay must rebuild it.
_AROUND_VECTOR = (
    "as a vector wrapper around RecordVectorTrajectory (gymnasium.wrappers.vector, whose RecordVideo films what "
    "CleanRL's capture_video does), or use wrappers replay rebuilds (docs/vector-envs.md maps CleanRL's and SB3's "
    "Atari wrappers to them)"
)


def check_rebuildable(env: gym.Env, *, around: str = _AROUND_SINGLE) -> None:
    """Refuse a wrapper stack that replay could not rebuild from the env spec stored in the log: a wrapper that
    does not record its constructor arguments, or one that replay will not import (a log may name only ALE envs
    and gymnasium's or this project's wrappers, so that reading it runs no one else's code). ``around`` says
    where such a wrapper can go instead."""
    spec = env.spec
    if spec is None:
        raise RecordingError(
            f"{env} has no env spec, so replay could not rebuild it; create the base env with "
            'gymnasium.make("ALE/<Game>-v5", ...)'
        )
    recorded = {w.name for w in spec.additional_wrappers}
    layer = env
    time_limits = 0
    stateful: dict[str, int] = {}
    while isinstance(layer, gym.Wrapper):
        if type(layer) in WRAPPER_STATE:
            stateful[type(layer).__name__] = stateful.get(type(layer).__name__, 0) + 1
        if isinstance(layer, gym.wrappers.TimeLimit):
            time_limits += 1
        elif not isinstance(layer, _BOOKKEEPING_WRAPPERS):
            if type(layer).__name__ not in recorded:
                raise RecordingError(
                    f"wrapper {type(layer).__name__} is not in the env spec, so replay could not rebuild it; "
                    f"instead, apply it {around}"
                )
            if time_limits:
                # The spec keeps only max_episode_steps, and gym.make puts that TimeLimit right above the base
                # env: under a frame-skipping wrapper it would count emulated frames, not these steps.
                raise RecordingError(
                    f"a TimeLimit above {type(layer).__name__} cannot be rebuilt where it is (an env spec only "
                    "keeps max_episode_steps, which gym.make applies to the base env); apply the TimeLimit "
                    f"{around}, or pass max_episode_steps to gym.make"
                )
        layer = layer.env
    if time_limits > 1:
        raise RecordingError(
            f"{time_limits} TimeLimit wrappers are stacked, and an env spec keeps one; keep the one gym.make adds "
            f"for max_episode_steps and apply any other {around}"
        )
    for name, count in stateful.items():
        if count > 1:  # snapshots store one state per class (and an AsyncVectorEnv can read only the first)
            raise RecordingError(
                f"{count} {name} wrappers are stacked, and a recorder keeps the state of one; apply the others {around}"
            )
    outside = f"instead, apply it {around}"
    for wrapper in spec.additional_wrappers:
        if wrapper.kwargs is None:
            raise RecordingError(
                f"wrapper {wrapper.name} is not in the env spec with its arguments (it does not record its "
                "constructor arguments), so replay could not rebuild it; subclass "
                f"gymnasium.utils.RecordConstructorArgs, or {outside}"
            )
        if str(wrapper.entry_point) not in ALLOWED_WRAPPER_ENTRY_POINTS:
            raise RecordingError(
                f"wrapper {wrapper.name} ({wrapper.entry_point}) would have to be built to replay the log, and "
                "replay builds only wrappers that compute, without side effects or code in their arguments "
                f"(reading a log must not run other code: see replay.rebuild.ALLOWED_WRAPPER_ENTRY_POINTS); {outside}"
            )
    try:
        spec.to_json()
    except Exception as error:  # gymnasium raises several types for arguments JSON cannot hold
        raise RecordingError(
            f"the env spec cannot be stored ({error}); pass the wrappers' arguments as plain numbers, strings, "
            f"lists or dicts, or {outside}"
        ) from None


def check_vector_rebuildable(env: VectorEnv) -> None:
    """:func:`check_rebuildable` for every sub-env of a ``SyncVectorEnv`` or ``AsyncVectorEnv`` (under any vector
    wrappers); any other vector env is refused. An ``AsyncVectorEnv``'s sub-envs live in other processes, so its
    first env factory is called once more here, as gymnasium itself does for the spaces: their specs may not even
    cross the pipe (a ``RecordVideo``'s trigger is a function)."""
    vector = env.unwrapped
    if isinstance(vector, gym.vector.SyncVectorEnv):
        for sub_env in vector.envs:
            check_rebuildable(sub_env, around=_AROUND_VECTOR)
    elif isinstance(vector, gym.vector.AsyncVectorEnv):
        probe = vector.env_fns[0]()
        try:
            check_rebuildable(probe, around=_AROUND_VECTOR)
        finally:
            probe.close()
    else:
        raise RecordingError(
            f"{_vector_kind(vector)} cannot be recorded: it gives no access to its sub-envs' emulator states, "
            "which snapshots and sync checks read (docs/vector-envs.md says what recording it would take). "
            'Build the envs with gym.make_vec("ALE/<Game>-v5", num_envs=n, vectorization_mode="sync" or "async", '
            "wrappers=[...]), or gym.vector.SyncVectorEnv / AsyncVectorEnv of gym.make thunks"
        )


def _vector_kind(env: VectorEnv) -> str:
    """How a vector env is named in a refusal: ale-py's and envpool's by name (envpool is not imported)."""
    cls = type(env)
    if any(base.__module__.split(".")[0] == "envpool" for base in cls.__mro__):
        return f"an envpool vector env ({cls.__module__}.{cls.__qualname__})"
    if cls.__module__.startswith("ale_py"):
        return (
            f"ale-py's native vector env ({cls.__module__}.{cls.__qualname__}, what gym.make_vec returns for ALE "
            "games by default)"
        )
    return f"the vector env {cls.__module__}.{cls.__qualname__} (only SyncVectorEnv and AsyncVectorEnv are recorded)"


def stateful_wrappers(spec: EnvSpec) -> list[type]:
    """The classes of WRAPPER_STATE in the stack ``spec`` builds."""
    entry_points = {str(w.entry_point) for w in spec.additional_wrappers}
    return [
        cls
        for cls in WRAPPER_STATE
        if _entry_point(cls) in entry_points or (cls is gym.wrappers.TimeLimit and spec.max_episode_steps is not None)
    ]
