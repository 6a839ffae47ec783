"""Which checkpoint explains which frame: policy versions to loaded networks, with the version lag stated.

A run saves checkpoints every few updates, so a training frame played by version ``v`` is explained by the
nearest saved version at or before ``v``; the overlay states that checkpoint and its lag. Evaluation episodes
play a saved checkpoint, so their lag is 0. A single checkpoint file given by hand explains every frame; where it
is newer than the policy that played, the lag is negative and the overlay says how many versions newer.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

from render.analytics import NetworkProbe, ProbeSettings
from render.errors import MissingCheckpointError
from render.frame import CheckpointUse
from replay.errors import CheckpointError
from replay.train.checkpoints import CheckpointIndex, CheckpointRef, load_policy


class PolicyLibrary:
    """Loads (and keeps a few of) the networks that explain each policy version of a log.

    Args:
        checkpoints: a run's ``checkpoints/`` folder, looked up by policy version; or
        checkpoint: one checkpoint file used for every frame.
        env_id, n_actions: what the checkpoints must match (the log's game and action set).
        settings: what each network probe keeps per frame.
        keep: how many loaded networks to keep in memory (time-lapses walk through many).
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
    ) -> None:
        if (checkpoints is None) == (checkpoint is None):
            raise ValueError("pass exactly one of checkpoints (a folder) or checkpoint (a file)")
        self._env_id, self._n_actions = env_id, n_actions
        self._settings = settings or ProbeSettings()
        self._keep = keep
        self._probes: OrderedDict[Path, tuple[NetworkProbe, CheckpointRef]] = OrderedDict()
        self._index: CheckpointIndex | None = None
        self._single: CheckpointRef | None = None
        if checkpoints is not None:
            self._index = CheckpointIndex(checkpoints)
            if not len(self._index):
                raise MissingCheckpointError(
                    f"{checkpoints} holds no v<version>.pt checkpoint; the full overlay needs one "
                    "(pass checkpoint=<file> or use overlay=minimal / overlay=raw)"
                )
        else:
            self._single = self._load(Path(checkpoint))[1]

    def lookup(self, policy_version: int) -> tuple[NetworkProbe, CheckpointUse]:
        """The probe for the network that best explains ``policy_version`` and how it was chosen."""
        if self._single is not None:
            ref = self._single
        else:
            try:
                ref, _ = self._index.lookup(policy_version)
            except CheckpointError as error:
                raise MissingCheckpointError(str(error)) from error
        probe, ref = self._load(ref.path)
        use = CheckpointUse(ref.path.name, ref.policy_version, policy_version - ref.policy_version)
        return probe, use

    def recalibrate(self) -> None:
        """Let every loaded probe choose its scales, thumbnails and hidden units afresh from its next batch."""
        for probe, _ in self._probes.values():
            probe.recalibrate()

    def ref(self, policy_version: int) -> CheckpointRef | None:
        """The reference of the checkpoint saved at exactly ``policy_version``, if the run has one."""
        if self._index is None or policy_version not in self._index.versions:
            return None
        return self._index.ref(policy_version)

    def _load(self, path: Path) -> tuple[NetworkProbe, CheckpointRef]:
        if path not in self._probes:
            model, ref = load_policy(path, env_id=self._env_id, n_actions=self._n_actions)
            self._probes[path] = (NetworkProbe(model, self._settings), ref)
            while len(self._probes) > self._keep:
                self._probes.popitem(last=False)
        self._probes.move_to_end(path)
        return self._probes[path]
