"""Analytics, schedule and selection on small synthetic inputs (a fresh network, hand-made records)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from render.analytics import NetworkProbe, ProbeSettings
from render.draw.overlays import lag_line
from render.errors import SelectionError
from render.feed import auto_workers, kept_count, runs
from render.frame import FrameContext
from render.policies import PolicyLibrary
from render.products import human_steps, timelapse_stride
from render.schedule import TrainingSchedule
from render.selection import evenly, every, pick_episode, progress_range
from render.story import milestone_episodes
from replay import EpisodeRecord
from replay.train.checkpoints import save_checkpoint
from replay.train.network import ActorCritic

METADATA = {
    "train_config_v000000": {
        "total_steps": 10_000,
        "ppo": {"num_envs": 8, "num_steps": 125, "learning_rate": 2.5e-4, "anneal_lr": True},
    }
}


def _episode(
    index: int,
    version: int,
    reward: float,
    tag: str = "train",
    length: int = 100,
    start: int = 0,
    lane: int = 0,
) -> EpisodeRecord:
    return EpisodeRecord(
        index=index, env_index=lane, stream=0, tag=tag, start_step=start, length=length, total_reward=reward,
        terminated=True, truncated=False, finished=True, policy_versions=(version,),
    )  # fmt: skip


@pytest.fixture(scope="module")
def probe() -> NetworkProbe:
    torch.manual_seed(0)
    return NetworkProbe(ActorCritic(4), ProbeSettings(batch_size=8, hidden_sample=16, thumbnails=3))


def test_probe_matches_a_plain_forward_pass(probe: NetworkProbe) -> None:
    observations = np.random.default_rng(0).integers(0, 256, (20, 4, 84, 84), dtype=np.uint8)
    frames = probe.analyze(observations)
    with torch.no_grad():
        logits, values = probe.model(torch.from_numpy(observations))
    expected = torch.softmax(logits, -1).numpy()
    assert len(frames) == 20
    np.testing.assert_allclose(np.stack([f.probabilities for f in frames]), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose([f.value for f in frames], values.numpy(), rtol=1e-5, atol=1e-6)


def test_probe_keeps_only_what_the_overlay_draws(probe: NetworkProbe) -> None:
    frame = probe.analyze(np.zeros((1, 4, 84, 84), np.uint8))[0]
    layers = probe.diagram_layers()
    assert [(layer.label, layer.size) for layer in layers] == [
        ("conv1", 32), ("conv2", 64), ("conv3", 64), ("fc", 16), ("policy", 4), ("value", 1),
    ]  # fmt: skip
    assert [level.shape for level in frame.levels] == [(layer.size,) for layer in layers]
    assert all(0.0 <= level.min() and level.max() <= 1.0 for level in frame.levels)
    assert [m.shape for m in frame.feature_maps] == [(3, 20, 20), (3, 9, 9), (3, 7, 7)]
    assert probe.feature_rows() == [("input", 4), ("conv1", 3), ("conv2", 3), ("conv3", 3)]
    kept = sum(level.nbytes for level in frame.levels) + sum(m.nbytes for m in frame.feature_maps)
    assert kept < 4096  # instead of ~186 KB of float32 activations


def test_probe_batches_do_not_change_results() -> None:
    torch.manual_seed(1)
    model = ActorCritic(4)
    observations = np.random.default_rng(1).integers(0, 256, (10, 4, 84, 84), dtype=np.uint8)
    one = NetworkProbe(model, ProbeSettings(batch_size=1)).analyze(observations)
    many = NetworkProbe(ActorCritic(4).eval(), ProbeSettings(batch_size=64))
    many.model.load_state_dict(model.state_dict())
    batched = many.analyze(observations)
    np.testing.assert_allclose(
        np.stack([f.probabilities for f in one]), np.stack([f.probabilities for f in batched]), atol=1e-5
    )


def test_probe_refuses_a_network_without_the_layers() -> None:
    with pytest.raises(ValueError, match=r"lacks layers \['conv1'"):
        NetworkProbe(torch.nn.Linear(3, 3))


def test_schedule_reads_the_trainer_config() -> None:
    schedule = TrainingSchedule.from_metadata(METADATA)
    assert schedule.num_updates == 10 and schedule.batch_size == 1000
    assert schedule.progress(5) == 0.5 and schedule.global_step(5) == 5000
    assert schedule.learning_rate_at(0) == pytest.approx(2.5e-4)
    assert schedule.learning_rate_at(5) == pytest.approx(1.25e-4)
    unknown = TrainingSchedule.from_metadata({})
    assert unknown.progress(5) is None and unknown.learning_rate_at(5) is None


def test_pick_episode_by_index_or_rank() -> None:
    episodes = [_episode(0, 0, 3.0), _episode(1, 2, 9.0), _episode(2, 5, 1.0, "eval"), _episode(3, 7, 4.0)]
    assert pick_episode(episodes, "1").index == 1 and pick_episode(episodes, -1).index == 3
    assert pick_episode(episodes, "best").index == 1 and pick_episode(episodes, "worst").index == 2
    assert pick_episode(episodes, "best", "eval").index == 2 and pick_episode(episodes, "last", "train").index == 3
    with pytest.raises(SelectionError, match="episode 9 is out of range; the log has 4 episodes"):
        pick_episode(episodes, 9)
    with pytest.raises(SelectionError, match="neither an index nor one of best, worst, last"):
        pick_episode(episodes, "median")
    cut_short = [dataclasses.replace(_episode(0, 0, float("nan")), finished=False)]  # a short recording, closed
    with pytest.raises(SelectionError, match=r"no finished 'any' episodes to pick 'best' from; pick one by index"):
        pick_episode(cut_short, "best")
    assert pick_episode(cut_short, "-1").index == 0


def test_selectors_spread_over_the_run() -> None:
    episodes = [_episode(i, i, float(i)) for i in range(10)] + [_episode(10, 4, 0.0, "eval")]
    assert [e.index for e in evenly(4)(episodes)] == [0, 3, 6, 9]
    assert [e.index for e in every(3)(episodes)] == [0, 3, 6, 9]
    schedule = TrainingSchedule.from_metadata(METADATA)
    assert [e.index for e in progress_range(0.5, 1.0, 2, schedule)(episodes)] == [5, 9]
    with pytest.raises(SelectionError, match="0 <= start < stop <= 1"):
        progress_range(0.8, 0.2, 2, schedule)


def test_milestones_timelapse_stride_and_step_labels() -> None:
    episodes = [_episode(0, 0, 1.0, "eval"), _episode(1, 0, 5.0, "eval"), _episode(2, 3, 2.0, "eval")]
    assert [e.index for e in milestone_episodes(episodes, "best")] == [1, 2]
    assert [e.index for e in milestone_episodes(episodes, "first")] == [0, 2]
    long = [_episode(i, i, 0.0, length=2999) for i in range(6)]  # 18,000 frames
    assert timelapse_stride(long, 60.0, 30) == 10
    # Short targets: every episode also keeps its first and last frame, which dividing the frames by the
    # target ignores (it overshot 10 s by 1.2 s on the sample run). The stride chosen is the closest of all.
    many = [_episode(i, i, 0.0, length=1500) for i in range(24)]
    stride = timelapse_stride(many, 10.0, 30)
    kept = sum(kept_count(e, stride) for e in many)
    assert all(abs(kept - 300) <= abs(sum(kept_count(e, s) for e in many) - 300) for s in range(1, 1502))
    assert [human_steps(n) for n in (999, 100_000, 1_500_000)] == ["999", "100k", "1.5M"]


def test_runs_group_episodes_that_follow_each_other_in_a_lane() -> None:
    back_to_back = [_episode(0, 0, 0, start=0, length=9), _episode(1, 0, 0, start=10, length=5)]
    other_lane = _episode(2, 0, 0, start=16, lane=1)
    later = _episode(3, 0, 0, start=500)
    assert runs(back_to_back) == [[0, 1]] and auto_workers(back_to_back) == 0
    assert runs([*back_to_back, other_lane, later]) == [[0, 1], [2], [3]]
    assert auto_workers([*back_to_back, other_lane, later]) == 2 and auto_workers([later]) == 0
    assert [kept_count(_episode(0, 0, 0, length=n), 4) for n in (0, 4, 5, 8)] == [1, 2, 3, 3]


def test_cheap_seeks_pick_the_episode_nearest_after_a_snapshot_in_each_slice() -> None:
    episodes = [_episode(i, i, 0.0, start=100 * i, length=99) for i in range(40)]
    cost = {e.index: (e.start_step % 1000) for e in episodes}  # a snapshot every 1000 positions
    plain = evenly(4)(episodes)
    cheap = evenly(4, seek_cost=lambda e: cost[e.index])(episodes)
    assert [e.index for e in plain] == [0, 13, 26, 39]
    # slices of +-6 around 13 and 26: the cheapest in each (ties go to the nearer one); the ends stay exact
    assert [e.index for e in cheap] == [0, 10, 30, 39]
    assert sum(cost[e.index] for e in cheap) == 900 < sum(cost[e.index] for e in plain)
    # two picks are the first and the last episode, whatever they cost to reach
    assert [e.index for e in evenly(2, seek_cost=lambda e: cost[e.index])(episodes)] == [0, 39]


def test_a_checkpoint_newer_than_the_policy_that_played_is_shown_as_newer(tmp_path) -> None:
    torch.manual_seed(0)
    path = save_checkpoint(tmp_path, ActorCritic(4), policy_version=40, global_step=0, env_id="ALE/Breakout-v5").path
    library = PolicyLibrary(checkpoint=path, env_id="ALE/Breakout-v5", n_actions=4)
    _, older = library.lookup(52)
    _, newer = library.lookup(12)
    assert (older.policy_version, older.lag, newer.lag) == (40, 12, -28)
    contexts = [
        FrameContext(None, 0, 0, 0.0, None, version, checkpoint=use) for version, use in ((52, older), (12, newer))
    ]
    assert [lag_line(c) for c in contexts] == [
        "network from update 40, 12 updates before this play (played by update 52)",
        "network from update 40, 28 updates after this play (played by update 12)",
    ]
    same = FrameContext(None, 0, 0, 0.0, None, 40, checkpoint=library.lookup(40)[1])
    assert lag_line(same) == "network: the one that played this frame (update 40)"
