"""Exact rebuilds of policy versions: a run's learning replayed from its records, checked at every update.

Version ``v`` is rebuilt from the nearest start at or before it: a resume point (``checkpoints/resume_points/``,
its whole state checked against the digest the ledger recorded) or version 0, which derives from the seed. Each
update's rollout is re-simulated from the log (:mod:`replay.train.rollouts`), the network recomputes its values
and log-probabilities and draws its actions from the update's own generator (:mod:`replay.train.randomness`);
those draws must equal the logged actions, and the learner (:func:`replay.train.ppo.learn`, the trainer's own
code) must reproduce the ledger's weights digest after every update. Either check failing raises
:class:`UnverifiedRebuildError`: the bits depend on the thread count, the CPU and torch, so a rebuild runs with
the thread count the run trained with (in a worker process when the caller's differs) and says what differs.
A damaged resume point or ledger line raises :class:`DamagedRecordError`: never a wrong network called exact.

Rebuilt versions go to ``<run>/rebuilt/v<version>.pt`` (float32 checkpoints, written atomically, verified against
the ledger when read, the least recently used dropped beyond ``keep``).

``python -m replay.train.rebuild RUN`` rebuilds every version of a run ahead of time, segments from different
starts in parallel processes; killed, it continues with what is not rebuilt yet.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from replay.errors import CheckpointError, DamagedRecordError, NotRebuildableError, RebuildError, UnverifiedRebuildError
from replay.reader import TrajectoryLog
from replay.run_folder import RunFolder
from replay.train import digests, ledger, ppo
from replay.train.checkpoints import (
    CheckpointRef,
    checkpoint_path,
    load_policy,
    read_resume_state,
    resume_point_path,
    save_checkpoint,
)
from replay.train.ledger import Ledger, Session
from replay.train.network import ActorCritic
from replay.train.randomness import ROLLOUT, SHUFFLE, update_generator
from replay.train.rollouts import LoggedRollout, LoggedRollouts, RolloutsAhead

KEEP = 64  # rebuilt versions kept on disk by on-demand rebuilds (~6.7 MB each)


@dataclass(frozen=True)
class Segment:
    """One replay of the learning: from ``start`` (a resume point, or 0 from the seed) to the last target, keeping
    the ``targets`` it passes."""

    start: int
    targets: tuple[int, ...]


class Rebuilder:
    """The exact policy versions of one run.

    Args:
        run: The run folder.
        threads: Rebuild with this many torch threads instead of the recorded ones (the digests tell whether the
            result is exact; with another count it is not).
        keep: Rebuilt versions kept on disk (the least recently used go); ``None``: all.
        progress: Show a progress bar while rebuilding.
    """

    def __init__(
        self, run: str | Path, *, threads: int | None = None, keep: int | None = KEEP, progress: bool = True
    ) -> None:
        self.folder = RunFolder(Path(run))
        self.ledger: Ledger = ledger.read(self.folder.ledger)
        self.threads, self.keep, self.progress = threads, keep, progress
        with TrajectoryLog(self.folder.log) as log:
            self.env_id, self.n_actions = log.env_id, len(log.action_meanings)

    def path(self, version: int) -> Path:
        return checkpoint_path(self.folder.rebuilt, version)

    def cached(self, version: int) -> bool:
        """Whether ``version`` is rebuilt on disk with the recorded digest (a file that differs is removed)."""
        path = self.path(version)
        if not path.is_file():
            return False
        if self.verified(version) is None:  # derived data: a damaged copy is rebuilt, not trusted
            path.unlink(missing_ok=True)
            return False
        os.utime(path)  # recently used
        return True

    def verified(self, version: int) -> tuple[ActorCritic, CheckpointRef] | None:
        """``version``'s rebuilt file loaded, if it holds the recorded digest; ``None`` if it is missing, damaged
        or differs. Reads only."""
        try:
            model, ref = load_policy(self.path(version), env_id=self.env_id, n_actions=self.n_actions)
        except CheckpointError:
            return None
        return (model, ref) if digests.weights_digest(model) == self.ledger.digest(version) else None

    def start_of(self, version: int) -> int:
        """The version a rebuild of ``version`` starts from."""
        self.ledger.digest(version)  # a version the ledger never recorded
        session = self.ledger.session_of(max(version - 1, 0))
        starts = [v for v in self.ledger.resume_points if session.from_version <= v <= version]
        if session.from_version == 0:
            starts.append(0)
        if not starts:
            raise NotRebuildableError(
                f"{self.folder.path}: no resume point between version {session.from_version} (where its training "
                f"session began) and {version}; versions {session.from_version}.. of this run cannot be rebuilt"
            )
        return max(starts)

    def plan(self, versions: Iterable[int]) -> list[Segment]:
        """The replays that rebuild ``versions`` not rebuilt yet, one per start."""
        by_start: dict[int, list[int]] = {}
        for version in sorted(set(versions)):
            if not self.cached(version):
                by_start.setdefault(self.start_of(version), []).append(version)
        return [Segment(start, tuple(targets)) for start, targets in sorted(by_start.items())]

    def segments(self) -> list[Segment]:
        """Every replay that rebuilds the whole run, one per start, rebuilt or not: the same list in every process
        (jobs that share the run out by it must not see each other's progress)."""
        by_start: dict[int, list[int]] = {}
        for version in range(self.ledger.last_version + 1):
            by_start.setdefault(self.start_of(version), []).append(version)
        return [Segment(start, tuple(targets)) for start, targets in sorted(by_start.items())]

    def threads_for(self, segment: Segment) -> int:
        return self.threads or self.ledger.session_of(segment.start).threads

    def prepare(self, versions: Iterable[int], *, keeping: Iterable[int] = ()) -> None:
        """Rebuild the ``versions`` not on disk yet; raises the first :class:`RebuildError` met (what was rebuilt
        and verified before it stays on disk). Pruning to ``keep`` spares them and the versions in ``keeping``
        (others about to be used)."""
        wanted = set(versions)
        for segment in self.plan(wanted):
            run_segment(self.folder.path, segment, self.threads_for(segment), self.progress)
        self._prune(wanted | set(keeping))

    def policy(self, version: int) -> Path:
        """The file of ``version``, rebuilt first if needed."""
        self.prepare([version])
        return self.path(version)

    def _prune(self, wanted: set[int]) -> None:
        if self.keep is None or not self.folder.rebuilt.is_dir():
            return
        files = sorted(self.folder.rebuilt.glob("v*.pt"), key=lambda p: p.stat().st_mtime)
        spare = [p for p in files if p.name not in {self.path(v).name for v in wanted}]
        for path in spare[: max(0, len(files) - max(self.keep, len(wanted)))]:
            path.unlink(missing_ok=True)


def run_segment(run: Path, segment: Segment, threads: int, progress: bool) -> None:
    """Replay ``segment`` with ``threads`` torch threads: here when this process has that many, else in a fresh
    worker process (the thread count decides the bits)."""
    if torch.get_num_threads() == threads:
        replay_segment(run, segment, progress=progress)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        failure = pool.submit(_worker, str(run), segment, threads, progress).result()
    _raise(failure)


def _worker(run: str, segment: Segment, threads: int, progress: bool) -> tuple[str, str, int, str] | None:
    """A worker's replay; a failure comes back as ``(kind, message, version, brief)`` (errors with keyword
    arguments do not survive pickling)."""
    torch.set_num_threads(threads)
    try:
        replay_segment(Path(run), segment, progress=progress)
    except RebuildError as error:
        return type(error).__name__, str(error), getattr(error, "version", -1), error.brief
    return None


def _raise(failure: tuple[str, str, int, str] | None) -> None:
    if failure is None:
        return
    kind, message, version, brief = failure
    if kind == UnverifiedRebuildError.__name__:
        raise UnverifiedRebuildError(message, version=version, brief=brief)
    kinds = {cls.__name__: cls for cls in (DamagedRecordError, NotRebuildableError)}
    raise kinds.get(kind, RebuildError)(message, brief=brief)


def replay_segment(
    run: Path,
    segment: Segment,
    *,
    progress: bool = False,
    on_update: Callable[[int], None] | None = None,
    overlap: bool = True,
) -> None:
    """Replay the learning from ``segment.start`` to its last target in this process, writing each target to
    ``<run>/rebuilt/``; ``on_update`` is called with each version made.

    With ``overlap`` the next update's rollout is re-simulated in a thread while the learner runs the current one
    (the bits are the same either way: the rollouts are read in order, the learner runs here)."""
    folder = RunFolder(run)
    records = ledger.read(folder.ledger)
    session = records.session_of(segment.start)
    config = session.ppo_config
    last = max(segment.targets)
    with TrajectoryLog(folder.log) as log, torch.random.fork_rng(devices=[]):
        model, optimizer, global_step = _start(folder, records, session, segment.start, log)
        if segment.start in segment.targets:
            _keep(folder, model, segment.start, global_step, log.env_id)
        count = last - segment.start
        rollouts = LoggedRollouts(log, session, segment.start) if count else None
        bar = tqdm(
            total=last - segment.start,
            disable=not progress,
            unit="update",
            desc=f"rebuilding v{segment.start}..v{last}",
            leave=False,
        )
        with bar, contextlib.ExitStack() as stack:
            ahead = stack.enter_context(RolloutsAhead(rollouts, count)) if overlap and rollouts is not None else None
            source = ahead or rollouts
            for update in range(segment.start, last):
                _replay_update(folder, model, optimizer, source.next(), session, records)
                global_step += config.batch_size
                if update + 1 in segment.targets:
                    _keep(folder, model, update + 1, global_step, log.env_id)
                if on_update is not None:
                    on_update(update + 1)
                bar.update(1)


def _start(
    folder: RunFolder, records: Ledger, session: Session, start: int, log: TrajectoryLog
) -> tuple[ActorCritic, torch.optim.Optimizer, int]:
    """The network and optimizer at ``start`` (its digests checked), and the global step there."""
    n_actions = len(log.action_meanings)
    if start == 0:
        torch.manual_seed(session.seed)  # as the trainer: the initial weights derive from the seed
        model = ActorCritic(n_actions)
        optimizer = ppo.make_optimizer(model, session.ppo_config)
        found, expected = digests.weights_digest(model), records.digest(0)
        if found != expected:
            raise _unverified(_differs(folder, session, 0, found, expected), session, version=0)
        return model, optimizer, 0
    point = records.resume_points[start]
    path = resume_point_path(folder.resume_points, start)
    model = ActorCritic(n_actions)
    optimizer = ppo.make_optimizer(model, session.ppo_config)
    try:
        state = read_resume_state(path, model, optimizer, env_id=log.env_id)
    except CheckpointError as error:
        raise DamagedRecordError(f"resume point {path} cannot be read: {error}") from error
    if state.digest != point.digest or state.policy_version != start:
        raise DamagedRecordError(
            f"resume point {path} is damaged: its state has digest {state.digest} (version {state.policy_version}), "
            f"the ledger {records.path} records {point.digest} for version {start}; delete it and its line to "
            f"rebuild from an earlier start, or render with the saved checkpoints (leave checkpoint=exact out)"
        )
    return model, optimizer, state.global_step


def _replay_update(
    folder: RunFolder,
    model: ActorCritic,
    optimizer: torch.optim.Optimizer,
    data: LoggedRollout,
    session: Session,
    records: Ledger,
) -> None:
    """Update ``data.update`` as the trainer made it, checking the logged actions and the digest after it."""
    config, update = session.ppo_config, data.update
    rollout = ppo.Rollout(config.num_steps, config.num_envs, tuple(data.obs.shape[2:]))
    rollout.obs.copy_(data.obs)
    rollout.rewards.copy_(data.rewards)
    rollout.dones.copy_(data.dones)
    rollout.valid.copy_(data.valid)
    sampling = update_generator(session.seed, update, ROLLOUT)
    logged = torch.from_numpy(data.actions)
    for t in range(config.num_steps):
        action, rollout.logprobs[t], rollout.values[t] = ppo.act(model, rollout.obs[t], sampling)
        recorded = logged[t] >= 0
        if not torch.equal(action[recorded], logged[t][recorded]):
            lane = int(torch.nonzero((action != logged[t]) & recorded)[0, 0])
            raise _unverified(
                f"{folder.log}: the rebuilt version {update} draws action {int(action[lane])} in env {lane} at step "
                f"{t} of its rollout, the log holds {int(logged[t, lane])}; {_setup(session)}",
                session,
                version=update,
            )
        rollout.actions[t] = action
    entry = records.updates.get(update + 1)
    if entry is None:
        raise NotRebuildableError(f"{records.path} records no update {update + 1}; the run did not make it")
    generator = update_generator(session.seed, update, SHUFFLE)
    ppo.learn(model, optimizer, rollout, data.next_obs, data.next_done, config, entry.learning_rate, generator)
    found = digests.weights_digest(model)
    if found != entry.digest:
        raise _unverified(_differs(folder, session, update + 1, found, entry.digest), session, version=update + 1)


def _unverified(message: str, session: Session, *, version: int) -> UnverifiedRebuildError:
    return UnverifiedRebuildError(message, version=version, brief=session.brief(torch.get_num_threads()))


def _setup(session: Session) -> str:
    here = torch.get_num_threads()
    threads = f"rebuilt with {here} torch threads, trained with {session.threads}"
    differences = session.differences()
    if not differences and (other := session.other_processor()):
        differences = [other]
    if here == session.threads and not differences:
        return (
            f"{threads}, and nothing else the ledger records differs (the processor, or a library torch loads, may): "
            "this version cannot be rebuilt exactly here"
        )
    return "; ".join([threads, *differences]) + (
        ": an update's bits depend on them, so this version cannot be rebuilt exactly here"
    )


def _differs(folder: RunFolder, session: Session, version: int, found: str, expected: str) -> str:
    return (
        f"{folder.path}: the rebuilt weights of version {version} have digest {found}, the ledger records "
        f"{expected}; {_setup(session)}"
    )


def _keep(folder: RunFolder, model: ActorCritic, version: int, global_step: int, env_id: str) -> None:
    save_checkpoint(folder.rebuilt, model, policy_version=version, global_step=global_step, env_id=env_id)


def share(segments: list[Segment], part: int, parts: int) -> list[Segment]:
    """Part ``part`` of ``parts`` of ``segments``, the parts balanced by updates to replay: the longest segment
    goes to the part with the fewest updates so far (ties to the lowest part), the same in every process."""
    if not 0 <= part < parts:
        raise ValueError(f"part={part} is not one of 0..{parts - 1} (parts={parts})")
    loads, mine = [0] * parts, []
    for segment in sorted(segments, key=lambda s: (-(max(s.targets) - s.start), s.start)):
        lightest = loads.index(min(loads))
        loads[lightest] += max(segment.targets) - segment.start
        if lightest == part:
            mine.append(segment)
    return sorted(mine, key=lambda s: s.start)


def rebuild_run(run: str | Path, *, workers: int = 1, threads: int | None = None, progress: bool = True) -> int:
    """Rebuild every version of a run (those not on disk yet), segments in up to ``workers`` processes; returns
    how many versions were rebuilt."""
    rebuilder = Rebuilder(run, threads=threads, keep=None, progress=False)
    segments = rebuilder.plan(range(rebuilder.ledger.last_version + 1))
    total = sum(len(s.targets) for s in segments)
    if not segments:
        return 0
    bar = tqdm(
        total=sum(max(s.targets) - s.start for s in segments), unit="update", disable=not progress, desc="rebuilding"
    )
    context = multiprocessing.get_context("spawn")
    with bar, ProcessPoolExecutor(max_workers=max(1, workers), mp_context=context) as pool:
        futures = [
            pool.submit(_worker, str(rebuilder.folder.path), s, rebuilder.threads_for(s), False) for s in segments
        ]
        for segment, future in zip(segments, futures, strict=True):
            _raise(future.result())
            bar.update(max(segment.targets) - segment.start)
    return total


def main(argv: list[str] | None = None) -> int:
    """``python -m replay.train.rebuild RUN``."""
    parser = argparse.ArgumentParser(
        prog="python -m replay.train.rebuild",
        description="Rebuild every policy version of a run exactly into <run>/rebuilt/ (resumable: what is "
        "rebuilt stays), so that python -m render ... checkpoint=exact finds them all.",
    )
    parser.add_argument("run", help="the run folder")
    parser.add_argument("--workers", type=int, default=1, help="processes rebuilding segments at once (default 1)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: as the run trained)")
    args = parser.parse_args(argv)
    try:
        count = rebuild_run(args.run, workers=args.workers, threads=args.threads)
    except RebuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"rebuilt {count} versions into {RunFolder(args.run).rebuilt}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
