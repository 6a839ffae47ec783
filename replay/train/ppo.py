"""PPO as in CleanRL's ``ppo_atari``: rollout storage, GAE, and the clipped-surrogate update.

Two differences from CleanRL, both because episodes here are whole games in a NEXT_STEP-autoreset vector env:

- A lost life is terminal for bootstrapping only (the env keeps playing), via ``dones`` in :func:`advantages`.
- The step right after an episode ends is the vector env's autoreset: its action is ignored and its reward is
  0, so it is no transition at all. Such steps get ``valid = 0`` and are left out of every loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from replay.train.network import ActorCritic


@dataclass
class PPOConfig:
    """PPO hyper-parameters (Hydra group ``ppo``); defaults are CleanRL's ``ppo_atari``.

    Attributes:
        num_envs: Parallel environments.
        num_steps: Steps per env per rollout; one update per rollout of ``num_envs * num_steps`` steps.
        learning_rate: Adam step size at the start, annealed linearly to 0 if ``anneal_lr``.
        anneal_lr: Linear learning-rate decay over the run.
        gamma: Discount.
        gae_lambda: GAE lambda.
        num_minibatches: Minibatches per epoch.
        update_epochs: Passes over each rollout.
        norm_adv: Normalise advantages per minibatch.
        clip_coef: Surrogate clipping range.
        clip_vloss: Clip the value loss around the rollout's values as well.
        ent_coef: Entropy bonus weight.
        vf_coef: Value loss weight.
        max_grad_norm: Global gradient-norm clip.
        target_kl: Stop the epochs early when the approximate KL exceeds this (None: never).
        clip_reward: Learn from ``sign(reward)``; episode returns in metrics and logs stay raw.
    """

    num_envs: int = 8
    num_steps: int = 128
    learning_rate: float = 2.5e-4
    anneal_lr: bool = True
    gamma: float = 0.99
    gae_lambda: float = 0.95
    num_minibatches: int = 4
    update_epochs: int = 4
    norm_adv: bool = True
    clip_coef: float = 0.1
    clip_vloss: bool = True
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    target_kl: float | None = None
    clip_reward: bool = True

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def minibatch_size(self) -> int:
        return self.batch_size // self.num_minibatches


class Rollout:
    """Fixed-size storage of one rollout, filled step by step in place."""

    def __init__(
        self, num_steps: int, num_envs: int, obs_shape: tuple[int, ...], device: torch.device | str = "cpu"
    ) -> None:
        shape = (num_steps, num_envs)
        self.obs = torch.zeros((*shape, *obs_shape), dtype=torch.uint8, device=device)
        self.actions = torch.zeros(shape, dtype=torch.long, device=device)
        self.logprobs = torch.zeros(shape, device=device)
        self.rewards = torch.zeros(shape, device=device)
        self.dones = torch.zeros(shape, device=device)
        self.values = torch.zeros(shape, device=device)
        self.valid = torch.ones(shape, device=device)


def advantages(
    rollout: Rollout, next_value: torch.Tensor, next_done: torch.Tensor, gamma: float, gae_lambda: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE advantages and returns; ``dones[t]`` says the observation at ``t`` starts after a terminal."""
    num_steps = rollout.rewards.shape[0]
    adv = torch.zeros_like(rollout.rewards)
    last = torch.zeros_like(next_value)
    for t in reversed(range(num_steps)):
        if t == num_steps - 1:
            nonterminal, following = 1.0 - next_done, next_value
        else:
            nonterminal, following = 1.0 - rollout.dones[t + 1], rollout.values[t + 1]
        delta = rollout.rewards[t] + gamma * following * nonterminal - rollout.values[t]
        last = delta + gamma * gae_lambda * nonterminal * last
        adv[t] = last
    return adv, adv + rollout.values


def make_optimizer(model: ActorCritic, config: PPOConfig) -> torch.optim.Optimizer:
    """The optimizer of a run (the trainer's and a rebuild's: its state must load into it)."""
    return torch.optim.Adam(model.parameters(), lr=config.learning_rate, eps=1e-5)


@torch.no_grad()
def act(
    model: ActorCritic, obs: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One rollout step for a batch of envs: sampled actions, their log-probabilities and the values.

    The trainer and a rebuild (``replay.train.rebuild``) both call it, with the same batch: the bits depend on it.
    """
    logits, value = model(obs)
    logp_all = torch.log_softmax(logits, dim=-1)
    action = torch.multinomial(logp_all.exp(), 1, generator=generator)
    return action.squeeze(1), logp_all.gather(1, action).squeeze(1), value


def learn(
    model: ActorCritic,
    optimizer: torch.optim.Optimizer,
    rollout: Rollout,
    next_obs: torch.Tensor,
    next_done: torch.Tensor,
    config: PPOConfig,
    learning_rate: float,
    generator: torch.Generator,
) -> dict[str, float]:
    """One update from a full rollout: bootstrap value, GAE, then :func:`update` at ``learning_rate``.

    ``next_obs`` and ``next_done`` follow the rollout's last step. The trainer and a rebuild share it.
    """
    optimizer.param_groups[0]["lr"] = learning_rate
    with torch.no_grad():
        _, next_value = model(next_obs)
    adv, returns = advantages(rollout, next_value, next_done, config.gamma, config.gae_lambda)
    return update(model, optimizer, rollout, adv, returns, config, generator)


def _masked_mean(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return (x * weight).sum() / weight.sum().clamp(min=1.0)


def update(
    model: ActorCritic,
    optimizer: torch.optim.Optimizer,
    rollout: Rollout,
    adv: torch.Tensor,
    returns: torch.Tensor,
    config: PPOConfig,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """``update_epochs`` passes of clipped PPO over the rollout; returns the last minibatch's statistics."""
    obs = rollout.obs.flatten(0, 1)
    actions = rollout.actions.flatten()
    old_logprobs = rollout.logprobs.flatten()
    old_values = rollout.values.flatten()
    valid = rollout.valid.flatten()
    adv, returns = adv.flatten(), returns.flatten()
    clipfracs: list[float] = []
    stats: dict[str, float] = {}
    for _ in range(config.update_epochs):
        order = torch.randperm(config.batch_size, generator=generator).to(obs.device)
        for start in range(0, config.batch_size, config.minibatch_size):
            idx = order[start : start + config.minibatch_size]
            weight = valid[idx]
            logits, values = model(obs[idx])
            logp_all = torch.log_softmax(logits, dim=-1)
            logprob = logp_all.gather(1, actions[idx, None]).squeeze(1)
            entropy = -(logp_all.exp() * logp_all).sum(-1)
            log_ratio = logprob - old_logprobs[idx]
            ratio = log_ratio.exp()
            with torch.no_grad():
                approx_kl = _masked_mean((ratio - 1) - log_ratio, weight)
                clipfracs.append(_masked_mean(((ratio - 1.0).abs() > config.clip_coef).float(), weight).item())

            mb_adv = adv[idx]
            if config.norm_adv:
                mean = _masked_mean(mb_adv, weight)
                std = _masked_mean((mb_adv - mean) ** 2, weight).sqrt()
                mb_adv = (mb_adv - mean) / (std + 1e-8)
            surrogate = torch.max(
                -mb_adv * ratio, -mb_adv * torch.clamp(ratio, 1 - config.clip_coef, 1 + config.clip_coef)
            )
            policy_loss = _masked_mean(surrogate, weight)

            value_error = (values - returns[idx]) ** 2
            if config.clip_vloss:
                clipped = old_values[idx] + torch.clamp(values - old_values[idx], -config.clip_coef, config.clip_coef)
                value_error = torch.max(value_error, (clipped - returns[idx]) ** 2)
            value_loss = 0.5 * _masked_mean(value_error, weight)
            entropy_loss = _masked_mean(entropy, weight)

            loss = policy_loss - config.ent_coef * entropy_loss + config.vf_coef * value_loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            stats = {
                "policy_loss": policy_loss.item(),
                "value_loss": value_loss.item(),
                "entropy": entropy_loss.item(),
                "approx_kl": approx_kl.item(),
            }
        if config.target_kl is not None and stats["approx_kl"] > config.target_kl:
            break
    variance = returns[valid > 0].var()
    residual = (returns - old_values)[valid > 0].var()
    stats["clipfrac"] = sum(clipfracs) / max(len(clipfracs), 1)
    stats["explained_variance"] = float("nan") if variance == 0 else float(1 - residual / variance)
    return stats
