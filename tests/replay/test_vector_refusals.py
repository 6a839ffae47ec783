"""Vector envs the recorder cannot record are refused at once, naming a supported way, never a crash later."""

from __future__ import annotations

from pathlib import Path

import ale_py
import gymnasium as gym
import pytest

from replay import RecordVectorTrajectory
from replay.errors import RecordingError

gym.register_envs(ale_py)

SUPPORTED = r'vectorization_mode="sync" or "async", wrappers=\[\.\.\.\]'


def _filmed(folder: Path, idx: int):
    """CleanRL's ``make_env`` with ``capture_video``: gymnasium's RecordVideo inside the first sub-env."""

    def thunk() -> gym.Env:
        if idx == 0:
            env = gym.make("ALE/Pong-v5", render_mode="rgb_array")
            return gym.wrappers.RecordVideo(env, str(folder), episode_trigger=lambda episode: episode % 10 == 0)
        return gym.make("ALE/Pong-v5")

    return thunk


@pytest.mark.parametrize(
    "vector",
    [gym.vector.SyncVectorEnv, pytest.param(gym.vector.AsyncVectorEnv, marks=pytest.mark.slow)],
    ids=["sync", "async"],
)
@pytest.mark.filterwarnings("ignore:.*Overwriting existing videos")  # AsyncVectorEnv builds env 0 to read spaces
def test_record_video_inside_a_vector_env_is_refused_naming_the_vector_wrapper(tmp_path: Path, vector) -> None:
    """It crashed with "Object of type function is not JSON serializable" (sync) or a pickling error (async)."""
    pytest.importorskip("moviepy", reason="gymnasium's RecordVideo needs moviepy (the test extra installs it)")
    envs = vector([_filmed(tmp_path / "videos", i) for i in range(2)])
    try:
        with pytest.raises(RecordingError, match=r"RecordVideo .* \(gymnasium.wrappers.vector, whose RecordVideo"):
            RecordVectorTrajectory(envs, tmp_path / "log.h5")
    finally:
        envs.close()
    assert not (tmp_path / "log.h5").exists()


@pytest.mark.parametrize(
    "build",
    [
        lambda: gym.make_vec("ALE/Breakout-v5", num_envs=2),  # gymnasium's default for ALE ids
        lambda: ale_py.vector_env.AtariVectorEnv("breakout", num_envs=2),
    ],
    ids=["make_vec", "AtariVectorEnv"],
)
def test_ale_pys_native_vector_env_is_refused_naming_a_supported_way(tmp_path: Path, build) -> None:
    """It crashed with "AttributeError: ... no attribute 'call'"."""
    envs = build()
    try:
        with pytest.raises(RecordingError, match=rf"ale-py's native vector env .*AtariVectorEnv.* {SUPPORTED}"):
            RecordVectorTrajectory(envs, tmp_path / "log.h5")
    finally:
        envs.close()
    assert not (tmp_path / "log.h5").exists()


def test_an_envpool_vector_env_is_refused_naming_a_supported_way(tmp_path: Path) -> None:
    """envpool is not a dependency (it pulls opencv-python and MuJoCo assets): tested where it is installed."""
    envpool = pytest.importorskip("envpool")
    envs = envpool.make_gymnasium("Breakout-v5", num_envs=2)
    try:
        with pytest.raises(RecordingError, match=rf"an envpool vector env .* {SUPPORTED}"):
            RecordVectorTrajectory(envs, tmp_path / "log.h5")
    finally:
        envs.close()
    assert not (tmp_path / "log.h5").exists()


def test_a_wrapped_sync_vector_envs_sub_envs_are_checked_too(tmp_path: Path) -> None:
    """A vector wrapper between the recorder and the SyncVectorEnv hid the sub-envs from the stack check."""
    pytest.importorskip("moviepy", reason="gymnasium's RecordVideo needs moviepy (the test extra installs it)")
    envs = gym.wrappers.vector.RecordEpisodeStatistics(
        gym.vector.SyncVectorEnv([_filmed(tmp_path / "videos", i) for i in range(2)])
    )
    try:
        with pytest.raises(RecordingError, match=r"wrapper RecordVideo "):
            RecordVectorTrajectory(envs, tmp_path / "log.h5")
    finally:
        envs.close()


@pytest.mark.slow
def test_the_named_fix_for_capture_video_films_and_records(tmp_path: Path) -> None:
    """gymnasium's vector RecordVideo around the recorder, as the refusal says: a video, and a log that replays."""
    pytest.importorskip("moviepy", reason="gymnasium's RecordVideo needs moviepy (the test extra installs it)")
    from replay import verify

    envs = gym.vector.SyncVectorEnv([lambda: gym.make("ALE/Pong-v5", render_mode="rgb_array")] * 2)
    envs = RecordVectorTrajectory(envs, tmp_path / "log.h5")
    envs = gym.wrappers.vector.RecordVideo(envs, str(tmp_path / "videos"), episode_trigger=lambda e: e == 0)
    envs.reset(seed=0)
    for _ in range(60):
        envs.step(envs.action_space.sample())
    envs.close()
    assert [p.suffix for p in (tmp_path / "videos").iterdir()] == [".mp4"]
    report = verify(tmp_path / "log.h5", progress=False)
    assert report.ok and report.steps == 2 * 61, str(report)
