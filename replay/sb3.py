"""Recording Stable-Baselines3 runs: ``make_atari_env`` with every env recorded into one run folder, and
``RecordCallback``, which keeps the recorded policy versions and the checkpoints in step with the model's updates.

The recipe (three added lines, the rest is SB3's own)::

    from replay.sb3 import RecordCallback, make_atari_env

    venv = VecFrameStack(make_atari_env("BreakoutNoFrameskip-v4", 8, run_dir="runs/ppo", seed=0), 4)
    PPO("CnnPolicy", venv).learn(100_000, callback=RecordCallback("runs/ppo", checkpoint_every=10))

**Where the recorder sits.** Right above ``gym.make``'s env, under SB3's ``Monitor`` and ``AtariWrapper``: the
log holds every emulated step (``MaxAndSkipEnv``'s four, ``NoopResetEnv``'s no-ops, ``FireResetEnv``'s FIRE) and
its env spec names only the ALE env, which replay rebuilds. SB3's wrappers are in no spec and are not rebuilt;
``make_atari_env``'s arguments and the model's frame stack are stored as log metadata (``sb3``, ``sb3_model``) for
whoever re-applies them (the renderer).

**One run over worker processes: one log, one writer, in the main process.** Each env's recorder makes its own
stream (streams in env order: stream ``i`` is env ``i`` of a new log). With ``DummyVecEnv`` the recorders write
into the one ``TrajectoryWriter`` directly. A ``SubprocVecEnv`` worker cannot hold it (one HDF5 file, one lock, one
process), so its recorder writes into a ``RecordBuffer``; the main process drains every worker's buffer through
SB3's own pipe (``env_method``) at the writer's flush deadline, checked after each vector step, and before the
workers stop, then writes the records as its own. Rejected: one log per worker with a reader that takes a
folder's logs as one. Every tool (``verify``, ``render``, ``replay.show``, the viewer, ``TrajectoryLog``) reads
one file today, episode indices and crash recovery included; one file keeps all of them whole, and the cost is a
pipe round trip per worker every ``flush_seconds`` (10 s by default).

**Nothing lost.** The workers ignore SIGINT, so Ctrl-C reaches the main process alone, which then drains them. A
script that never calls ``close()`` is closed at interpreter exit (``atexit``, which runs before
multiprocessing's own exit handler terminates the daemonic workers): buffers drained, in-flight episodes kept as
unfinished, the log closed. A process killed outright loses at most the last ``flush_seconds``, as any recorder.

**Policy versions.** The version of a step is the number of ``train()`` calls the model had completed when the
action was chosen: 0 before the first. For PPO and A2C that is one per rollout; for DQN one per ``train()`` call
(every ``train_freq`` steps after ``learning_starts``, each doing ``gradient_steps`` gradient updates: with the
default ``gradient_steps=1`` a version is one gradient update). Every ``train()`` raises SB3's ``_n_updates``,
and nothing else changes the acting network, so ``RecordCallback`` counts a version whenever ``_n_updates``
changed at the start of a rollout, before any of its steps, and passes it to every recorder (through the pipe for
``SubprocVecEnv`` workers). Resets before training are version 0. ``training_env.set_attr("policy_version", n)``
reaches every recorder too.

**Checkpoints.** ``RecordCallback`` saves the model with SB3's ``model.save`` (its ``.zip``) as
``<run>/checkpoints/v<version, 6 digits>.zip``: version 0 before the first rollout, every ``checkpoint_every``
versions, and the last at the end of training; each holds exactly the network that chose the actions of its
version. ``<run>/sb3-versions.csv`` lists when each version began (``policy_version,num_timesteps``), so that
files of SB3's ``CheckpointCallback`` (``<prefix>_<num_timesteps>_steps.zip``) anywhere in the run folder resolve
to the version they hold: :func:`checkpoint_versions`.
"""

from __future__ import annotations

import atexit
import csv
import os
import re
import signal
import time
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from replay.errors import RecordingError, ReplayError
from replay.recorder import RecordTrajectory
from replay.run_folder import SB3_CHECKPOINT_FILE as VERSIONED_ZIP
from replay.run_folder import SB3_VERSIONS, RunFolder, sb3_checkpoint_name
from replay.writer import BufferedRecords, RecordBuffer, TrajectoryWriter

try:
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_atari_env as _sb3_make_atari_env
    from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
except ImportError as error:  # pragma: no cover - the sb3 extra is missing
    raise ImportError(
        f"replay.sb3 needs Stable-Baselines3 ({error}); install it with: pip install -e '.[sb3]'"
    ) from None

__all__ = ["RecordCallback", "RecordedVecEnv", "checkpoint_versions", "make_atari_env"]

# The live writers of this process, by run: env factories find theirs here (a writer cannot be pickled).
_WRITERS: dict[str, TrajectoryWriter] = {}
CHECKPOINT_CALLBACK_FILE = re.compile(r"^(?P<prefix>.+)_(?P<steps>\d+)_steps\.zip$")  # SB3's CheckpointCallback


def make_atari_env(
    env_id: str,
    n_envs: int = 1,
    *,
    run_dir: str | Path,
    seed: int | None = None,
    vec_env_cls: type[VecEnv] | None = None,
    flush_seconds: float = 10.0,
    snapshot_interval: int | None = None,
    sync_interval: int = 64,
    **kwargs: Any,
) -> RecordedVecEnv:
    """Stable-Baselines3's ``make_atari_env`` with every env recorded into the run folder ``run_dir``.

    Args:
        env_id: a gymnasium id of an ALE env without a random frame skip, as SB3's ``AtariWrapper`` expects:
            ``"BreakoutNoFrameskip-v4"``, or ``"ALE/Breakout-v5"`` with ``env_kwargs={"frameskip": 1}``.
        n_envs, seed, vec_env_cls, kwargs: as SB3's ``make_atari_env`` (``start_index``, ``monitor_dir``,
            ``wrapper_kwargs``, ``env_kwargs``, ``vec_env_kwargs``, ``monitor_kwargs``); ``DummyVecEnv``,
            ``SubprocVecEnv`` with any start method, or another ``VecEnv`` class.
        run_dir: the run folder; its log is ``<run_dir>/trajectories.h5`` (created, or appended to).
        flush_seconds, snapshot_interval, sync_interval: as for :class:`replay.RecordTrajectory`.

    Returns:
        The vector env, recording; ``close()`` it (or let the interpreter exit) to close the log.

    Example:
        >>> venv = make_atari_env("BreakoutNoFrameskip-v4", 4, run_dir="runs/a", seed=0)  # doctest: +SKIP
    """
    if not isinstance(env_id, str):
        raise RecordingError(
            f"replay.sb3.make_atari_env takes a gymnasium env id (the log rebuilds the env from it), got {env_id!r}; "
            "pass e.g. 'BreakoutNoFrameskip-v4'"
        )
    _refuse_random_frameskip(env_id, kwargs.get("env_kwargs") or {}, kwargs.get("wrapper_kwargs") or {})
    folder = RunFolder(run_dir)
    writer = TrajectoryWriter(folder.log, flush_seconds=flush_seconds)
    key = str(folder.log.resolve())
    _WRITERS[key] = writer
    first_stream = writer.n_streams
    factory = _RecordedAtariEnv(env_id, key, os.getpid(), snapshot_interval, sync_interval)
    try:
        venv = _sb3_make_atari_env(factory, n_envs, seed=seed, vec_env_cls=vec_env_cls, **kwargs)
    except BaseException:
        _WRITERS.pop(key, None)
        writer.close()
        raise
    arguments = {
        "env_id": env_id,
        "n_envs": n_envs,
        "seed": seed,
        "vec_env_cls": type(venv).__name__,
        **{name: kwargs.get(name) for name in ("start_index", "wrapper_kwargs", "env_kwargs")},
    }
    return RecordedVecEnv(venv, writer, folder, arguments, first_stream)


class _RecordedAtariEnv:
    """The env factory SB3 calls once per env, in the main process or in a worker: ``gym.make`` under a recorder.

    Picklable (SubprocVecEnv sends it to its workers): it carries the log's path, never its writer.
    """

    def __init__(self, env_id: str, log: str, owner_pid: int, snapshot_interval: int | None, sync_interval: int):
        self.env_id = env_id
        self.log = log
        self.owner_pid = owner_pid
        self.snapshot_interval = snapshot_interval
        self.sync_interval = sync_interval

    def __call__(self, **env_kwargs: Any) -> gym.Env:
        env = gym.make(self.env_id, **{"render_mode": "rgb_array", **env_kwargs})
        if os.getpid() == self.owner_pid and self.log in _WRITERS:
            destination: TrajectoryWriter | RecordBuffer = _WRITERS[self.log]
        else:
            destination = RecordBuffer(self.log)
            # Ctrl-C reaches the whole process group: the main process drains this worker before it stops.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        return _SB3Recorder(
            env, destination, snapshot_interval=self.snapshot_interval, sync_interval=self.sync_interval
        )


class _SB3Recorder(RecordTrajectory):
    """A recorder whose records the main process can collect through SB3's ``env_method``."""

    @property
    def recorded_positions(self) -> int:
        """Positions recorded so far (a reset or a step each): the next one's index in this env's stream."""
        return self._recording.stream.position

    def drain_records(self, final: bool = False) -> BufferedRecords | None:
        """What a worker's recorder buffered since the last call (None where it writes the log itself); ``final``
        first stops recording, keeping the episodes in flight as unfinished."""
        if final:
            self.finish_recording()
        writer = self.writer
        return writer.drain() if isinstance(writer, RecordBuffer) else None


class RecordedVecEnv(VecEnvWrapper):
    """The vector env :func:`make_atari_env` returns: SB3's, its envs recorded into one log that this holds.

    ``policy_version`` (and ``set_attr("policy_version", n)``) reaches every env's recorder; ``close()`` collects
    what the workers recorded and closes the log, and runs at interpreter exit if the script never calls it.
    """

    def __init__(
        self, venv: VecEnv, writer: TrajectoryWriter, folder: RunFolder, arguments: dict[str, Any], first_stream: int
    ) -> None:
        super().__init__(venv)
        self.writer = writer
        self.run_dir = folder.path
        self._policy_version = 0
        self._deadline = time.monotonic() + writer.flush_seconds
        self.closed = False
        try:
            drained = self.venv.env_method("drain_records")
            self._remote = any(d is not None for d in drained)
            # Streams in env order, whatever order the workers started in.
            self._streams = [
                writer.add_buffered_stream(d.header) if d is not None and d.header is not None else -1 for d in drained
            ]
            for rank, d in enumerate(drained):
                if d is not None:
                    writer.append_buffered(self._streams[rank], d)
            writer.set_metadata("sb3", {**arguments, "streams": self._stream_indices(first_stream)})
        except BaseException:
            self._close_everything(collect=False)
            raise
        atexit.register(self._close_at_exit)

    def _stream_indices(self, first: int) -> list[int]:
        if self._remote:
            return list(self._streams)
        return list(range(first, first + self.num_envs))  # in-process recorders made theirs in env order

    @property
    def policy_version(self) -> int:
        return self._policy_version

    @policy_version.setter
    def policy_version(self, version: int) -> None:
        self._set_version(version, None)

    def _set_version(self, version: int, indices: Any) -> None:
        if not (isinstance(version, (int, np.integer)) and not isinstance(version, bool)) or not 0 <= version < 2**63:
            raise RecordingError(
                f"policy_version must be an integer in 0..2**63-1 (the number of policy updates), got {version!r}"
            )
        self.venv.env_method("set_wrapper_attr", "policy_version", int(version), indices=indices)
        if indices is None:
            self._policy_version = int(version)

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        """As SB3's, except that ``policy_version`` goes to each env's recorder (where SB3 would set it on the
        outermost wrapper, which nothing reads under gymnasium 1.x)."""
        if attr_name == "policy_version":
            self._set_version(value, indices)
        else:
            self.venv.set_attr(attr_name, value, indices)

    def reset(self) -> Any:
        return self.venv.reset()

    def step_wait(self) -> Any:
        result = self.venv.step_wait()
        if self._remote and time.monotonic() >= self._deadline:
            self.collect()
        return result

    def collect(self, *, final: bool = False) -> None:
        """Write what every worker recorded since the last collection (``final``: and stop their recorders)."""
        for rank, drained in enumerate(self.venv.env_method("drain_records", final)):
            if drained is not None:
                self.writer.append_buffered(self._streams[rank], drained)
        self.writer.flush()
        self._deadline = time.monotonic() + self.writer.flush_seconds

    def close(self) -> None:
        if self.closed:
            return
        self._close_everything(collect=True)

    def _close_everything(self, *, collect: bool) -> None:
        self.closed = True
        atexit.unregister(self._close_at_exit)
        key = str(self.writer.path.resolve())
        try:
            if collect:
                self._settle()
                self.collect(final=True)
        finally:
            try:
                self.venv.close()
            finally:
                _WRITERS.pop(key, None)
                self.writer.close()

    def _settle(self) -> None:
        """Take the replies of a step the main process was interrupted waiting for (SubprocVecEnv's pipes carry
        one reply per request: a drain sent now would read a step's)."""
        if getattr(self.venv, "waiting", False):
            self.venv.step_wait()

    def _close_at_exit(self) -> None:
        if self.closed:
            return
        try:
            self.close()
        except Exception as error:  # interpreter exit: say what happened, and let the others clean up
            warnings.warn(f"{self.writer.path}: closing the recording at exit failed ({error})", stacklevel=1)


def _refuse_random_frameskip(env_id: str, env_kwargs: dict[str, Any], wrapper_kwargs: dict[str, Any]) -> None:
    """Refuse an env whose frame skips are drawn from the generator SB3's wrappers above the recorder draw from.

    ALE's random frame skip (``Breakout-v4``: 2-4 frames a step) draws from ``env.unwrapped.np_random``, and so do
    SB3's ``NoopResetEnv`` (the no-op count) and ``StickyActionEnv``; their draws, above the recorder, are not
    replayed, so the skips would differ at replay.
    """
    try:
        spec = gym.spec(env_id)
    except gym.error.Error as error:
        raise RecordingError(f"unknown env id {env_id!r} ({error}); pass a registered ALE id") from None
    frameskip = env_kwargs.get("frameskip", spec.kwargs.get("frameskip", 1))
    noop_max = wrapper_kwargs.get("noop_max", 30)
    repeat = wrapper_kwargs.get("action_repeat_probability", 0.0)
    if isinstance(frameskip, (tuple, list)) and (noop_max > 0 or repeat > 0):
        game = str(spec.kwargs.get("game", "breakout"))
        name = "".join(part.capitalize() for part in game.split("_"))
        raise RecordingError(
            f"{env_id} skips a random number of frames each step (frameskip={tuple(frameskip)}), drawn from "
            f"env.unwrapped.np_random, which SB3's AtariWrapper also draws from above the recorder (NoopResetEnv, "
            f"noop_max={noop_max}), so the log could not be replayed; use '{name}NoFrameskip-v4', or "
            f"'ALE/{name}-v5' with env_kwargs={{'frameskip': 1}}, as SB3's AtariWrapper (which skips 4 frames "
            "itself) expects"
        )


class RecordCallback(BaseCallback):
    """Keeps the recorded policy versions in step with the model's updates and saves its checkpoints into the run.

    Args:
        run_dir: the run folder given to :func:`make_atari_env` for the model's env.
        checkpoint_every: save ``checkpoints/v<version>.zip`` every this many versions (version 0 before the first
            rollout and the last at the end of training are always saved).

    Example:
        >>> model.learn(100_000, callback=RecordCallback("runs/ppo", checkpoint_every=10))  # doctest: +SKIP
    """

    def __init__(self, run_dir: str | Path, checkpoint_every: int, verbose: int = 0) -> None:
        super().__init__(verbose)
        if not (isinstance(checkpoint_every, int) and checkpoint_every > 0):
            raise ValueError(f"expected a positive checkpoint_every (versions), got {checkpoint_every!r}")
        self.folder = RunFolder(run_dir)
        self.checkpoint_every = checkpoint_every
        self.version = 0
        self._updates_seen = 0
        self._recorded: RecordedVecEnv | None = None
        self._last_timesteps = 0

    def _init_callback(self) -> None:
        self._recorded = _find_recorded(self.training_env, self.folder)
        history = _read_versions(self.folder.path / SB3_VERSIONS)
        self.version = max(history, default=0)
        self._last_timesteps = history.get(self.version, 0)
        self._updates_seen = self.model._n_updates
        self._recorded.writer.set_metadata("sb3_model", _model_facts(self.model, self.training_env))

    def _on_training_start(self) -> None:
        if self.model.num_timesteps < self._last_timesteps:
            raise RecordingError(
                f"{self.folder.path / SB3_VERSIONS}: version {self.version} began at step {self._last_timesteps}, "
                f"but the model is at step {self.model.num_timesteps}: its checkpoints would resolve to the wrong "
                "versions; continue training with model.learn(..., reset_num_timesteps=False)"
            )
        if not (self.folder.path / SB3_VERSIONS).exists():
            self._note_version()
        self._recorded.policy_version = self.version
        if not (self.folder.checkpoints / sb3_checkpoint_name(self.version)).exists():
            self._save()

    def _on_rollout_start(self) -> None:
        # train() (the only change of the acting network) ran since the last rollout: a new version.
        if self.model._n_updates != self._updates_seen:
            self._updates_seen = self.model._n_updates
            self.version += 1
            self._note_version()
            self._recorded.policy_version = self.version
            if self.version % self.checkpoint_every == 0:
                self._save()

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        self._on_rollout_start()  # the last train() is not followed by a rollout
        if not (self.folder.checkpoints / sb3_checkpoint_name(self.version)).exists():
            self._save()

    def _note_version(self) -> None:
        path = self.folder.path / SB3_VERSIONS
        new = not path.exists()
        with open(path, "a", newline="") as file:  # a row a version, on disk before any later save
            if new:
                file.write("policy_version,num_timesteps\n")
            file.write(f"{self.version},{self.model.num_timesteps}\n")
        self._last_timesteps = self.model.num_timesteps

    def _save(self) -> None:
        """``model.save`` under a hidden name, then renamed: a killed save leaves no half checkpoint."""
        self.folder.checkpoints.mkdir(parents=True, exist_ok=True)
        final = self.folder.checkpoints / sb3_checkpoint_name(self.version)
        temporary = final.with_name(f".{final.stem}.tmp.zip")
        self.model.save(temporary)
        with open(temporary, "rb") as file:
            os.fsync(file.fileno())
        os.replace(temporary, final)


def _find_recorded(env: VecEnv | None, folder: RunFolder) -> RecordedVecEnv:
    layer = env
    while isinstance(layer, VecEnvWrapper) and not isinstance(layer, RecordedVecEnv):
        layer = layer.venv
    if not isinstance(layer, RecordedVecEnv):
        raise RecordingError(
            f"RecordCallback({str(folder.path)!r}): the model's env is not recorded (found {type(env).__name__}); "
            f"build it with replay.sb3.make_atari_env(..., run_dir={str(folder.path)!r})"
        )
    if layer.run_dir.resolve() != folder.path.resolve():
        raise RecordingError(
            f"RecordCallback({str(folder.path)!r}): the model's env records into {layer.run_dir}; give both the same "
            "run folder"
        )
    return layer


def _model_facts(model: Any, env: VecEnv) -> dict[str, Any]:
    """What turns the recorded envs' observations into the network's: the vector wrappers above the recorder."""
    stack: list[dict[str, Any]] = []
    layer = env
    while isinstance(layer, VecEnvWrapper) and not isinstance(layer, RecordedVecEnv):
        entry: dict[str, Any] = {"wrapper": type(layer).__name__}
        if hasattr(layer, "stacked_obs"):
            entry["n_stack"] = int(layer.stacked_obs.n_stack)
            entry["channels_first"] = bool(layer.stacked_obs.channels_first)
        stack.append(entry)
        layer = layer.venv
    return {
        "algorithm": type(model).__name__,
        "policy": type(model.policy).__name__,
        "vec_wrappers": stack[::-1],  # innermost first
        "version": "number of train() calls completed when the action was chosen",
    }


def _read_versions(path: Path) -> dict[int, int]:
    """``sb3-versions.csv``: version -> the num_timesteps at which it began (a torn last line is left out)."""
    if not path.exists():
        return {}
    versions: dict[int, int] = {}
    with open(path, newline="") as file:
        for row in csv.DictReader(file):
            try:
                versions[int(row["policy_version"])] = int(row["num_timesteps"])
            except (TypeError, ValueError, KeyError):
                continue
    return versions


def checkpoint_versions(run_dir: str | Path) -> dict[Path, int]:
    """Every SB3 checkpoint of a run with the policy version it holds, in version order.

    ``checkpoints/v<version>.zip`` (``RecordCallback``'s) by name; SB3 ``CheckpointCallback`` files
    (``<prefix>_<num_timesteps>_steps.zip``, anywhere in the run folder) by ``sb3-versions.csv``: a model saved at
    ``num_timesteps`` T holds every version that began before T (a ``CheckpointCallback`` saves in ``on_step``,
    before the ``train()`` that follows that step).

    Example:
        >>> checkpoint_versions("runs/ppo")  # doctest: +SKIP
        {PosixPath('runs/ppo/checkpoints/v000000.zip'): 0, PosixPath('runs/ppo/rl_model_2048_steps.zip'): 1}
    """
    folder = RunFolder(run_dir)
    found: dict[Path, int] = {}
    if folder.checkpoints.is_dir():
        for path in folder.checkpoints.iterdir():
            match = VERSIONED_ZIP.match(path.name)
            if match:
                found[path] = int(match.group(1))
    steps = sorted(p for p in folder.path.rglob("*_steps.zip") if CHECKPOINT_CALLBACK_FILE.match(p.name))
    if steps:
        history = _read_versions(folder.path / SB3_VERSIONS)
        if not history:
            raise ReplayError(
                f"{steps[0]}: a CheckpointCallback file, but {folder.path / SB3_VERSIONS} is missing, so the policy "
                "version it holds is unknown; record the run with replay.sb3.RecordCallback"
            )
        began = sorted((timesteps, version) for version, timesteps in history.items())
        for path in steps:
            saved_at = int(CHECKPOINT_CALLBACK_FILE.match(path.name).group("steps"))
            found[path] = max((v for t, v in began if t < saved_at), default=0)
    return dict(sorted(found.items(), key=lambda item: (item[1], str(item[0]))))
