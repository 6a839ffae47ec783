"""The HDF5 layout of a trajectory log: every group, dataset and attribute name lives here.

A log is one HDF5 file::

    /                      attrs: format, format_version, ale_py_version, gymnasium_version, created
    /metadata              attrs: run metadata, one JSON string per key (written by trainers)
    /episodes              compound table, one row per episode (see EPISODE_DTYPE)
    /streams/<k>/          one recorder session (a vector env, a single env, a resumed run...)
        attrs              spec_json, env_id, game, rom_md5, tag, n_lanes, snapshot_interval, sync_interval,
                           action_meanings (JSON), obs_shape (JSON), obs_dtype
        actions            uint8 (n_lanes, T): the action each lane received at each position
        resets             compound (position, lane, seed): a reset event; seed -1 = unseeded
        versions           compound (position, version): policy version change points
        sync               compound (position, lane, state_crc, obs_crc): cheap checks of the emulator
        snapshots          compound (position, lane, offset, nbytes, ref, state_crc, obs_crc)
        snapshot_bytes     uint8 blob: zlib-compressed ALE states (with RNG) and np_random states

A *position* counts the calls a stream made: reset events and steps share one clock per stream, so lane ``j``'s
history is: at each position either a reset (if listed in ``resets``) or a step with ``actions[j, position]``.
Nothing in the file is pickled; strings are JSON.
"""

from __future__ import annotations

import numpy as np

FORMAT_NAME = "ale-replay-trajectory-log"
# 1: first release. 2: snapshots may store the sticky-action generator as a base snapshot's plus n draws
# (``rng_from`` in the snapshot header, see replay.sticky_rng). 3: snapshots of a stack with a TimeLimit store
# its step count (``elapsed``), which format 2 derived from positions, wrongly under a frame-skipping wrapper.
# Older files read unchanged.
FORMAT_VERSION = 3

# root attributes
ATTR_FORMAT = "format"
ATTR_FORMAT_VERSION = "format_version"
ATTR_ALE_PY_VERSION = "ale_py_version"
ATTR_GYMNASIUM_VERSION = "gymnasium_version"
ATTR_CREATED = "created"

GROUP_METADATA = "metadata"
GROUP_STREAMS = "streams"
DATASET_EPISODES = "episodes"

# stream attributes
ATTR_SPEC_JSON = "spec_json"
ATTR_ENV_ID = "env_id"
ATTR_GAME = "game"
ATTR_ROM_MD5 = "rom_md5"
ATTR_TAG = "tag"
ATTR_N_LANES = "n_lanes"
ATTR_SNAPSHOT_INTERVAL = "snapshot_interval"
ATTR_SYNC_INTERVAL = "sync_interval"
ATTR_ACTION_MEANINGS = "action_meanings"
ATTR_OBS_SHAPE = "obs_shape"
ATTR_OBS_DTYPE = "obs_dtype"

# stream datasets
DATASET_ACTIONS = "actions"
DATASET_RESETS = "resets"
DATASET_VERSIONS = "versions"
DATASET_SYNC = "sync"
DATASET_SNAPSHOTS = "snapshots"
DATASET_SNAPSHOT_BYTES = "snapshot_bytes"

NO_SEED = -1
NO_REF = -1

EPISODE_DTYPE = np.dtype(
    [
        ("stream", "<i4"),
        ("lane", "<i4"),
        ("start", "<i8"),  # position of the reset that began the episode
        ("length", "<i8"),  # steps after the reset
        ("total_reward", "<f8"),
        ("terminated", "u1"),
        ("truncated", "u1"),
        ("finished", "u1"),  # 0: cut short by reset(), close() or the end of training
        ("version_first", "<i8"),
        ("version_last", "<i8"),
    ]
)
RESET_DTYPE = np.dtype([("position", "<i8"), ("lane", "<i4"), ("seed", "<i8")])
VERSION_DTYPE = np.dtype([("position", "<i8"), ("version", "<i8")])
SYNC_DTYPE = np.dtype([("position", "<i8"), ("lane", "<i4"), ("state_crc", "<u4"), ("obs_crc", "<u4")])
SNAPSHOT_DTYPE = np.dtype(
    [
        ("position", "<i8"),
        ("lane", "<i4"),
        ("offset", "<i8"),
        ("nbytes", "<i4"),
        ("ref", "<i8"),  # row of the snapshot used as zlib dictionary, NO_REF for none
        ("state_crc", "<u4"),
        ("obs_crc", "<u4"),
    ]
)

ACTION_DTYPE = np.uint8
ACTIONS_CHUNK = 16384
TABLE_CHUNK = 1024
BLOB_CHUNK = 1 << 12  # snapshot bytes are not filtered: a partly filled last chunk still takes its whole size
COMPRESSION = {"compression": "gzip", "compression_opts": 6, "shuffle": True}


def stream_name(index: int) -> str:
    return f"{index:04d}"


# What every "the file is damaged" message tells the user to do.
DAMAGED_FIX = (
    "(nothing was changed in it: copy it again from where it was recorded, as a copy taken while the log was "
    "being written ends early, or record the run again)"
)
