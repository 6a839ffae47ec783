"""Which checkpoint explains which frame: policy versions to loaded networks, with the version lag stated.

A run saves checkpoints every few updates, so a training frame played by version ``v`` is explained by the
nearest saved version at or before ``v``; the overlay states that checkpoint and its lag. Evaluation episodes
play a saved checkpoint, so their lag is 0. A single checkpoint file given by hand explains every frame; where it
is newer than the policy that played, the lag is negative and the overlay says how many versions newer.

With ``exact`` (``checkpoint=exact``), every frame is explained by the version that played it, rebuilt from the
run's learning ledger (``replay.train.rebuild``): lag 0. Where a rebuild cannot be verified (a run recorded before
the ledger, another thread count, machine or torch) the frame falls back to the nearest saved checkpoint, its
:class:`CheckpointUse` carries the reason, and the library says it once (:attr:`PolicyLibrary.exact_problem`, a
line on stderr). A damaged ledger or resume point is an error, never a network drawn as exact.

With ``rebuilt`` (``checkpoint=rebuilt``), the versions already in the run's ``rebuilt/`` folder explain their
frames (each checked against the ledger's digest when loaded: lag 0), and the nearest saved checkpoint the rest;
nothing is rebuilt, so it costs a little more than the nearest checkpoints (one load and digest per rebuilt file).
The viewer's episode player uses it.

Checkpoints are this project's ``v<version>.pt``, or those of another trainer (:mod:`render.foreign`): a
Stable-Baselines3 run's ``v<version>.zip`` and SB3 ``CheckpointCallback`` files, resolved to the version they
hold by :func:`replay.sb3.checkpoint_versions`; an SB3 zip or a CleanRL model file given by hand.
"""

from __future__ import annotations

import bisect
import sys
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

from render.analytics import NetworkProbe, ProbeSettings
from render.errors import MissingCheckpointError
from render.foreign import is_foreign, load_foreign_policy
from render.frame import CheckpointUse
from replay.errors import CheckpointError, NotRebuildableError, RebuildError, ReplayError, UnverifiedRebuildError
from replay.run_folder import SB3_CHECKPOINT_FILE, RunFolder
from replay.train.checkpoints import CheckpointIndex, CheckpointRef, checkpoint_path, load_policy
from replay.train.rebuild import Rebuilder

EXACT = "exact"  # checkpoint=exact
REBUILT = "rebuilt"  # checkpoint=rebuilt


def exact_source(run: Path) -> Rebuilder | NotRebuildableError:
    """What explains a run's frames exactly: its :class:`Rebuilder`, or why there is none (a run recorded before
    exact rebuilds). A damaged ledger raises :class:`~replay.errors.DamagedRecordError`."""
    try:
        return Rebuilder(run)
    except NotRebuildableError as error:
        return error


def rebuilt_source(run: Path) -> Rebuilder | None:
    """The :class:`Rebuilder` whose verified versions on disk may explain a run's frames (``checkpoint=rebuilt``),
    or ``None`` where there are none to use: no ``rebuilt/`` folder, or no ledger to check them against (a run
    recorded before exact rebuilds; a damaged ledger, which ``checkpoint=exact`` reports)."""
    if not RunFolder(run).rebuilt.is_dir():
        return None
    try:
        return Rebuilder(run, progress=False)
    except (ReplayError, OSError):  # nothing rebuilt can be verified: the nearest checkpoints explain every frame
        return None


def rebuilt_versions(run: Path, versions: Iterable[int]) -> frozenset[int]:
    """Which of ``versions`` have a file in ``run``'s ``rebuilt/`` folder (verified only when loaded)."""
    folder = RunFolder(run).rebuilt
    return frozenset(v for v in set(versions) if checkpoint_path(folder, v).is_file())


class PolicyLibrary:
    """Loads (and keeps a few of) the networks that explain each policy version of a log.

    Args:
        checkpoints: a run's ``checkpoints/`` folder, looked up by policy version; or
        checkpoint: one checkpoint file used for every frame.
        env_id, n_actions: what the checkpoints must match (the log's game and action set).
        settings: what each network probe keeps per frame.
        keep: how many loaded networks to keep in memory (time-lapses walk through many).
        exact: with ``checkpoints``, explain each version by itself, rebuilt by this :class:`Rebuilder` or, if it
            cannot be made (an old run: pass the run folder's ``NotRebuildableError`` message as a string), by
            the nearest checkpoint with the reason.
        rebuild: ``False``: use only the versions ``exact`` has rebuilt already (verified), never rebuilding;
            the rest are explained by the nearest checkpoint, without a reason, since none was asked to be exact.
    """

    def __init__(
        self,
        *,
        checkpoints: Path | None = None,
        checkpoint: Path | None = None,
        env_id: str | None = None,
        n_actions: int | None = None,
        settings: ProbeSettings | None = None,
        keep: int = 4,
        exact: Rebuilder | RebuildError | None = None,
        rebuild: bool = True,
    ) -> None:
        if (checkpoints is None) == (checkpoint is None):
            raise ValueError("pass exactly one of checkpoints (a folder) or checkpoint (a file)")
        if exact is not None and checkpoints is None:
            raise ValueError("exact rebuilds fall back to a run's checkpoints: pass checkpoints with exact")
        if not rebuild and not isinstance(exact, Rebuilder | None):
            raise ValueError("rebuild=False uses the versions a Rebuilder made already: pass exact=<Rebuilder>")
        self._rebuilder = exact if isinstance(exact, Rebuilder) else None
        self._rebuild = rebuild
        self.exact = exact is not None and rebuild  # every frame by the version that played it was asked for
        self.exact_problem: str | None = None
        self.exact_brief: str | None = None  # the problem in a few words, for the overlay
        if isinstance(exact, RebuildError):
            self._say(exact)
        self._unverified: dict[int, int] = {}  # a rebuild's start -> the first version that failed from it
        self._impossible: set[int] = set()  # versions the run's files cannot rebuild
        self._announced: set[int] = set()  # the versions last prepared at once: kept on disk while they are used
        # rebuilt files checked against their digests (rebuild=False): (mtime, size) then, and whether they matched
        self._checked: dict[Path, tuple[tuple[int, int], bool]] = {}
        self._env_id, self._n_actions = env_id, n_actions
        self._settings = settings or ProbeSettings()
        self._keep = keep
        self._probes: OrderedDict[Path, tuple[NetworkProbe, CheckpointRef]] = OrderedDict()
        self._index: CheckpointIndex | None = None
        self._foreign: dict[int, Path] = {}
        self._single: CheckpointRef | None = None
        if checkpoints is not None:
            self._index = CheckpointIndex(checkpoints)
            self._foreign = _foreign_versions(Path(checkpoints))
            if not len(self._index) and not self._foreign:
                raise MissingCheckpointError(
                    f"{checkpoints} holds no v<version>.pt or v<version>.zip checkpoint; the full overlay needs one "
                    "(pass checkpoint=<file> or use overlay=minimal / overlay=raw)"
                )
        else:
            self._single = self._load(Path(checkpoint))[1]

    def prepare(self, versions: Iterable[int]) -> None:
        """Rebuild (``exact``) the versions about to be explained at once: one replay per resume point. They stay
        on disk until the next call, however many there are (a time-lapse's may be more than the rebuilder keeps)."""
        if self._rebuilder is None or not self._rebuild:
            return
        self._announced = set(versions)
        self._prepare(self._announced)

    def _prepare(self, versions: Iterable[int]) -> None:
        pending = set()
        for version in versions:
            try:
                if not self._known_unverified(version):
                    pending.add(version)
            except NotRebuildableError as error:  # e.g. before the first resume point of a run resumed into one
                self._impossible.add(version)
                self._say(error)
        while pending:
            try:
                self._rebuilder.prepare(pending, keeping=self._announced)
                return
            except UnverifiedRebuildError as error:
                start = self._rebuilder.start_of(error.version)
                self._unverified[start] = min(error.version, self._unverified.get(start, error.version))
                self._say(error)
                pending = {v for v in pending if not self._known_unverified(v)}
            except NotRebuildableError as error:  # the log lacks a rollout: a kill before it was flushed
                self._impossible.update(pending)
                self._say(error)
                return

    @property
    def head(self) -> str:
        """``policy`` (actor-critics) or ``q`` (Q networks): what the checkpoints' networks output (the first
        loaded decides; a run trains one kind)."""
        if not self._probes:
            raise RuntimeError("PolicyLibrary.head is known once a network is loaded (lookup)")
        return next(iter(self._probes.values()))[0].head

    def lookup(self, policy_version: int) -> tuple[NetworkProbe, CheckpointUse]:
        """The probe for the network that best explains ``policy_version`` and how it was chosen."""
        if self._rebuilder is not None and not self._rebuild:
            rebuilt = self._on_disk(policy_version)
            if rebuilt is not None:
                return rebuilt
        elif self.exact:
            rebuilt = self._rebuilt(policy_version)
            if rebuilt is not None:
                return rebuilt
        if self._single is not None:
            path = self._single.path
        else:
            path = self._nearest(policy_version)
        probe, ref = self._load(path)
        note = f"not exact ({self.exact_brief})" if self.exact and self.exact_brief else None
        use = CheckpointUse(ref.path.name, ref.policy_version, policy_version - ref.policy_version, note)
        return probe, use

    def _known_unverified(self, version: int) -> bool:
        if version in self._impossible:
            return True
        start = self._rebuilder.start_of(version)
        return start in self._unverified and version >= self._unverified[start]

    def _rebuilt(self, policy_version: int) -> tuple[NetworkProbe, CheckpointUse] | None:
        """The rebuilt version's probe, or ``None`` (the reason said) when it cannot be rebuilt and verified."""
        if self._rebuilder is None:
            return None
        try:
            if self._known_unverified(policy_version):
                return None
            self._prepare([policy_version])
            if self._known_unverified(policy_version):
                return None
            path = self._rebuilder.path(policy_version)
        except NotRebuildableError as error:
            self._say(error)
            return None
        return self._exactly(path)

    def _exactly(self, path: Path) -> tuple[NetworkProbe, CheckpointUse]:
        """The probe of a rebuilt file, which explains its own version: lag 0."""
        probe, ref = self._load(path)
        return probe, CheckpointUse(f"{path.parent.name}/{path.name}", ref.policy_version, 0)

    def _on_disk(self, policy_version: int) -> tuple[NetworkProbe, CheckpointUse] | None:
        """The probe of ``policy_version`` if it is rebuilt on disk with the recorded digest (``rebuild=False``).
        Reads only: a file that differs is not used and stays (the viewer may serve a folder it cannot write)."""
        assert self._rebuilder is not None
        path = self._rebuilder.path(policy_version)
        try:
            found = path.stat()
            seen = (found.st_mtime_ns, found.st_size)
            checked = self._checked.get(path)
            if checked == (seen, False):  # this very file failed its digest already
                return None
            if path not in self._probes or checked != (seen, True):
                self._probes.pop(path, None)
                loaded = self._rebuilder.verified(policy_version)
                self._checked[path] = (seen, loaded is not None)
                if loaded is None:
                    return None
                self._keep_probe(path, *loaded)
        except (ReplayError, OSError):  # not rebuilt, removed meanwhile, past the ledger's end, unreadable
            return None
        return self._exactly(path)

    def _say(self, error: RebuildError) -> None:
        """Keep the first reason exact rebuilds fell back, and print it once."""
        if self.exact_problem is None:
            self.exact_problem, self.exact_brief = str(error), error.brief
            print(f"checkpoint=exact: falling back to the nearest saved checkpoints: {error}", file=sys.stderr)

    def _nearest(self, policy_version: int) -> Path:
        candidates: list[tuple[int, Path]] = []
        if len(self._index):
            try:
                ref, _ = self._index.lookup(policy_version)
                candidates.append((ref.policy_version, ref.path))
            except CheckpointError:
                pass
        versions = sorted(self._foreign)
        position = bisect.bisect_right(versions, policy_version) - 1
        if position >= 0:
            candidates.append((versions[position], self._foreign[versions[position]]))
        if not candidates:
            saved = sorted({*self._index.versions, *versions})
            raise MissingCheckpointError(
                f"no checkpoint at or before policy_version={policy_version} in {self._index.directory} (saved "
                f"versions: {saved}); the run may not have saved its first checkpoint yet: render its later "
                "episodes, or pass checkpoint=<file> to explain every frame with that one"
            )
        return max(candidates)[1]

    def recalibrate(self) -> None:
        """Let every loaded probe choose its scales, thumbnails and hidden units afresh from its next batch."""
        for probe, _ in self._probes.values():
            probe.recalibrate()

    def ref(self, policy_version: int) -> CheckpointRef | None:
        """The reference of the checkpoint saved at exactly ``policy_version``, if the run has one."""
        if self._index is None:
            return None
        if policy_version in self._index.versions:
            return self._index.ref(policy_version)
        if policy_version in self._foreign:
            return self._load(self._foreign[policy_version])[1]
        return None

    def _load(self, path: Path) -> tuple[NetworkProbe, CheckpointRef]:
        if path not in self._probes:
            if is_foreign(path):
                model, ref = self._load_foreign(path)
            else:
                model, ref = load_policy(path, env_id=self._env_id, n_actions=self._n_actions)
            self._keep_probe(path, model, ref)
        self._probes.move_to_end(path)
        return self._probes[path]

    def _keep_probe(self, path: Path, model: object, ref: CheckpointRef) -> None:
        self._probes[path] = (NetworkProbe(model, self._settings), ref)
        while len(self._probes) > self._keep:
            self._probes.popitem(last=False)

    def _load_foreign(self, path: Path) -> tuple[object, CheckpointRef]:
        model, found = load_foreign_policy(path, n_actions=self._n_actions)
        versions = {p: v for v, p in self._foreign.items()}
        ref = CheckpointRef(
            path=path,
            policy_version=versions.get(path, 0),
            global_step=-1 if found.num_timesteps is None else found.num_timesteps,
            milestone=None,
            env_id=self._env_id or "",  # an SB3 zip or a CleanRL file does not name its game in plain text
            n_actions=found.n_actions,
            arch=found.layout,
            dtype="float32",
        )
        return model, ref


def _foreign_versions(checkpoints: Path) -> dict[int, Path]:
    """A Stable-Baselines3 run's checkpoints by the version they hold: ``v<version>.zip`` in ``checkpoints/``, and
    ``CheckpointCallback`` files anywhere in the run folder (through ``replay.sb3``, which reads the run's
    version history), the versioned name winning where both hold a version."""
    versioned = {
        int(m.group(1)): path
        for path in sorted(checkpoints.iterdir())
        if (m := SB3_CHECKPOINT_FILE.match(path.name))
    } if checkpoints.is_dir() else {}  # fmt: skip
    run = checkpoints.parent
    if not any(run.rglob("*_steps.zip")):
        return versioned
    try:
        from replay.sb3 import checkpoint_versions
    except ImportError as error:
        raise MissingCheckpointError(f"{run} holds SB3 CheckpointCallback files: {error}") from None
    try:
        found = checkpoint_versions(run)
    except ReplayError as error:
        raise MissingCheckpointError(str(error)) from None
    by_version: dict[int, Path] = {}
    for path, version in found.items():
        by_version.setdefault(version, path)
    return {**by_version, **versioned}
