"""Networks trained by Stable-Baselines3 and CleanRL: loaded as tensors only, and explaining their runs exactly.

The fast tests build tiny checkpoint files by hand (CleanRL's ``ppo_atari`` / ``dqn_atari`` modules, SB3's zip
layout, crafted payloads). The slow ones train SB3 PPO and DQN for a few hundred steps on Breakout, recorded with
``replay.sb3``, capture inside training (a callback) what the network was given and what it answered, and compare
that with what :func:`render.explain` and :mod:`render.agent_view` re-derive from the log.
"""

from __future__ import annotations

import io
import itertools
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import render
from render.agent_view import decisions, view_for
from render.analytics import NetworkProbe, ProbeSettings
from render.foreign import QNetwork, is_foreign, load_foreign_policy
from render.policies import PolicyLibrary
from replay import TrajectoryLog
from replay.errors import CheckpointError


class _Evil:
    """Unpickling this creates ``marker``: what a hostile checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple:
        return (open, (self.marker, "w"))


def _cleanrl_ppo(n_actions: int = 4) -> nn.Module:
    """CleanRL ``ppo_atari``'s Agent (its module names: ``network`` Sequential, ``actor``, ``critic``)."""
    agent = nn.Module()
    agent.network = nn.Sequential(
        nn.Conv2d(4, 32, 8, stride=4), nn.ReLU(), nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
        nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(), nn.Flatten(), nn.Linear(64 * 7 * 7, 512), nn.ReLU(),
    )  # fmt: skip
    agent.actor = nn.Linear(512, n_actions)
    agent.critic = nn.Linear(512, 1)
    return agent


def _cleanrl_dqn(n_actions: int = 4) -> nn.Module:
    """CleanRL ``dqn_atari``'s QNetwork (one ``network`` Sequential)."""
    network = nn.Module()
    network.network = nn.Sequential(
        nn.Conv2d(4, 32, 8, stride=4), nn.ReLU(), nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
        nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(), nn.Flatten(), nn.Linear(3136, 512), nn.ReLU(),
        nn.Linear(512, n_actions),
    )  # fmt: skip
    return network


def _observations(n: int = 5) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 4, 84, 84), dtype=np.uint8)


def _sb3_zip(path: Path, state: dict[str, torch.Tensor], data: dict) -> Path:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("data", json.dumps(data))
        archive.writestr("policy.pth", buffer.getvalue())
    return path


def test_a_cleanrl_ppo_agent_explains_as_it_acts(tmp_path: Path) -> None:
    torch.manual_seed(0)
    agent = _cleanrl_ppo()
    torch.save(agent.state_dict(), tmp_path / "ppo.cleanrl_model")
    model, found = load_foreign_policy(tmp_path / "ppo.cleanrl_model", n_actions=4)
    assert (found.layout, found.head, found.n_actions) == ("cleanrl-ppo", "policy", 4)
    observations = _observations()
    with torch.no_grad():
        hidden = agent.network(torch.from_numpy(observations) / 255.0)
        probs = torch.distributions.Categorical(logits=agent.actor(hidden)).probs.numpy()
        values = agent.critic(hidden).squeeze(-1).numpy()
    frames = NetworkProbe(model, ProbeSettings(batch_size=5)).analyze(observations)
    np.testing.assert_array_equal(np.stack([f.probabilities for f in frames]), probs)
    np.testing.assert_array_equal([f.value for f in frames], values)


def test_a_q_network_gives_q_values_its_greedy_action_and_max_q(tmp_path: Path) -> None:
    torch.manual_seed(0)
    network = _cleanrl_dqn()
    torch.save(network.state_dict(), tmp_path / "dqn.cleanrl_model")
    model, found = load_foreign_policy(tmp_path / "dqn.cleanrl_model")
    assert isinstance(model, QNetwork) and found.head == "q"
    observations = _observations()
    with torch.no_grad():
        q = network.network(torch.from_numpy(observations) / 255.0).numpy()
    probe = NetworkProbe(model, ProbeSettings(batch_size=5, hidden_sample=8))
    frames = probe.analyze(observations)
    np.testing.assert_array_equal(np.stack([f.q_values for f in frames]), q)
    assert [f.value for f in frames] == [float(v) for v in q.max(axis=1)]
    assert [int(np.argmax(f.probabilities)) for f in frames] == q.argmax(axis=1).tolist()
    assert [layer.label for layer in probe.diagram_layers()] == ["conv1", "conv2", "conv3", "fc", "q"]
    assert [len(level) for level in frames[0].levels][-1] == 4  # one output node per action, no value node
    assert len(probe.wiring("dqn").links) == 4


def test_sb3_zips_map_onto_the_nature_cnn_and_are_checked(tmp_path: Path) -> None:
    torch.manual_seed(0)
    agent = _cleanrl_ppo()
    torso = {"cnn.0": agent.network[0], "cnn.2": agent.network[2], "cnn.4": agent.network[4],
             "linear.0": agent.network[7]}  # fmt: skip
    state = {}
    for copy in ("features_extractor", "pi_features_extractor", "vf_features_extractor"):
        for name, layer in torso.items():
            state[f"{copy}.{name}.weight"], state[f"{copy}.{name}.bias"] = layer.weight, layer.bias
    state |= {"action_net.weight": agent.actor.weight, "action_net.bias": agent.actor.bias,
              "value_net.weight": agent.critic.weight, "value_net.bias": agent.critic.bias}  # fmt: skip
    state = {k: v.detach().clone() for k, v in state.items()}
    data = {"num_timesteps": 512, "_n_updates": 8, "action_space": {":serialized:": "gAWV", "n": "4"}}
    path = _sb3_zip(tmp_path / "v000003.zip", state, data)
    assert is_foreign(path)
    model, found = load_foreign_policy(path, n_actions=4)
    assert (found.layout, found.num_timesteps, found.n_updates) == ("sb3-actor-critic", 512, 8)
    with pytest.raises(CheckpointError, match="has 4 actions, the log 6"):
        load_foreign_policy(path, n_actions=6)
    state["vf_features_extractor.cnn.0.bias"] = state["vf_features_extractor.cnn.0.bias"] + 1
    own_value_torso = _sb3_zip(tmp_path / "split.zip", state, data)
    with pytest.raises(CheckpointError, match="share_features_extractor=False"):
        load_foreign_policy(own_value_torso)
    library = PolicyLibrary(checkpoints=tmp_path, n_actions=4)
    probe, use = library.lookup(5)
    assert (use.name, use.policy_version, use.lag, probe.head) == ("v000003.zip", 3, 2, "policy")


def test_a_pickle_in_a_cleanrl_file_is_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    torch.save({"network.0.weight": torch.zeros(1), "evil": _Evil(marker)}, tmp_path / "agent.cleanrl_model")
    with pytest.raises(CheckpointError, match=r"agent.cleanrl_model was refused by torch.load\(weights_only=True\)"):
        load_foreign_policy(tmp_path / "agent.cleanrl_model")
    assert not marker.exists()


def test_a_pickle_in_an_sb3_zip_is_refused_or_left_undecoded(tmp_path: Path) -> None:
    import base64
    import pickle

    marker = tmp_path / "pwned"
    serialized = base64.b64encode(pickle.dumps(_Evil(marker))).decode()
    torch.manual_seed(0)
    network = _cleanrl_dqn().network
    state = {f"q_net.features_extractor.{ours}.{kind}": getattr(network[theirs], kind).detach()
             for ours, theirs in (("cnn.0", 0), ("cnn.2", 2), ("cnn.4", 4), ("linear.0", 7))
             for kind in ("weight", "bias")}  # fmt: skip
    state |= {"q_net.q_net.0.weight": network[9].weight.detach(), "q_net.q_net.0.bias": network[9].bias.detach()}
    # the data's cloudpickled entries (policy_class, spaces, schedules) are never decoded
    data = {"policy_class": {":type:": "<class 'abc.ABCMeta'>", ":serialized:": serialized}}
    model, found = load_foreign_policy(_sb3_zip(tmp_path / "dqn.zip", state, data))
    assert found.layout == "sb3-dqn" and not marker.exists()
    # a policy.pth whose pickle would run code is refused
    _sb3_zip(tmp_path / "evil.zip", {"q_net.q_net.0.weight": _Evil(marker)}, {})
    with pytest.raises(CheckpointError, match=r"evil.zip \(policy.pth\) was refused"):
        load_foreign_policy(tmp_path / "evil.zip")
    assert not marker.exists()


# -- real Stable-Baselines3 training -----------------------------------------------------------------------------


def _train_and_capture(run: Path, algorithm: str, steps: int) -> list[tuple[np.ndarray, int, object]]:
    """Train ``algorithm`` on Breakout for ``steps`` agent steps, recorded into ``run`` through ``replay.sb3``;
    return, per agent step, the observation the policy acted on, its action and its outputs at that moment."""
    from stable_baselines3 import DQN, PPO
    from stable_baselines3.common.callbacks import BaseCallback, CallbackList, CheckpointCallback
    from stable_baselines3.common.vec_env import VecFrameStack

    from replay.sb3 import RecordCallback, make_atari_env

    captured: list[tuple[np.ndarray, int, object]] = []

    class Capture(BaseCallback):
        def _on_step(self) -> bool:
            observation = self.model._last_obs.copy()  # the observation this step's action was chosen from
            with torch.no_grad():
                tensor = self.model.policy.obs_to_tensor(observation)[0]
                if algorithm == "dqn":
                    outputs: object = self.model.q_net(tensor).numpy()[0]
                else:
                    policy = self.model.policy
                    outputs = (
                        policy.get_distribution(tensor).distribution.probs.numpy()[0],
                        float(policy.predict_values(tensor)[0, 0]),
                    )
            captured.append((observation[0], int(self.locals["actions"][0]), outputs))
            return True

    torch.set_num_threads(1)
    venv = VecFrameStack(make_atari_env("BreakoutNoFrameskip-v4", 1, run_dir=run, seed=0), 4)
    if algorithm == "ppo":
        model = PPO("CnnPolicy", venv, n_steps=64, batch_size=64, n_epochs=1, seed=0)
    else:  # no update within the run: every step is played by the network saved as version 0
        model = DQN("CnnPolicy", venv, buffer_size=1000, learning_starts=10_000, seed=0)
    callbacks = [RecordCallback(run, checkpoint_every=1), Capture()]
    if algorithm == "ppo":
        callbacks.append(CheckpointCallback(save_freq=64, save_path=str(run / "sb3"), name_prefix="rl_model"))
    model.learn(steps, callback=CallbackList(callbacks))
    venv.close()
    return captured


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["ppo", "dqn"])
def test_explain_gives_what_the_sb3_agent_saw_and_answered_in_training(tmp_path: Path, algorithm: str) -> None:
    run = tmp_path / algorithm
    captured = _train_and_capture(run, algorithm, 256)
    with TrajectoryLog(run / "trajectories.h5") as log:
        episodes = log.episodes
        seen = []
        for episode in episodes:
            view = view_for(log.metadata, episode.stream)
            made = list(decisions(log.replay(episode.index), view, log.action_meanings))
            assert all(b.step > a.step for a, b in itertools.pairwise(made))
            assert made[1].step - made[0].step == 4  # MaxAndSkip's 4 frames an agent step
            seen += made
    assert len(seen) == len(captured) == 256
    for decision, (observation, action, _) in zip(seen, captured, strict=True):
        assert decision.observation.dtype == np.uint8 and decision.observation.tobytes() == observation.tobytes()
        assert decision.action == action

    explained = [item for episode in episodes for item in render.explain(run, episode.index)]
    assert [(e.step, e.action) for e in explained] == [(d.step, d.action) for d in seen]
    assert all(e.checkpoint_version == e.policy_version for e in explained)  # a checkpoint at every version
    # Batches of 64 here, of 1 in training: oneDNN's convolutions round differently (exact at batch 1, below).
    for item, (_, _, outputs) in zip(explained, captured, strict=True):
        if algorithm == "dqn":
            assert item.probabilities is None and item.greedy_action == int(np.argmax(outputs))
            np.testing.assert_allclose(item.q_values, outputs, rtol=0, atol=1e-6)
            assert item.value == pytest.approx(float(np.max(outputs)), abs=1e-6)
        else:
            np.testing.assert_allclose(item.probabilities, outputs[0], rtol=0, atol=1e-6)
            assert item.value == pytest.approx(outputs[1], abs=1e-6)
    library = PolicyLibrary(checkpoints=run / "checkpoints", n_actions=4, settings=ProbeSettings(batch_size=1))
    for decision, (_, _, outputs) in list(zip(seen, captured, strict=True))[::16]:
        probe, _ = library.lookup(decision.policy_version)
        result = probe.analyze(decision.observation[None])[0]
        if algorithm == "dqn":
            np.testing.assert_array_equal(result.q_values, outputs)
        else:
            np.testing.assert_array_equal(result.probabilities, outputs[0])
            assert result.value == outputs[1]

    if algorithm == "ppo":  # SB3's CheckpointCallback files hold the version they resolve to
        from replay.sb3 import checkpoint_versions

        for path, version in checkpoint_versions(run).items():
            if path.name.endswith("_steps.zip"):
                held, _ = load_foreign_policy(path)
                versioned, _ = load_foreign_policy(run / "checkpoints" / f"v{version:06d}.zip")
                assert all(
                    torch.equal(a, b)
                    for a, b in zip(held.state_dict().values(), versioned.state_dict().values(), strict=True)
                )

    from render import RenderSource, render_still
    from render.config import OverlayConfig

    still = render_still(RenderSource.resolve(run=run, log=None, checkpoint=None), episode=0, step=120,
                         overlay=OverlayConfig(kind="full"))  # fmt: skip
    assert still.shape == (720, 1280, 3)
