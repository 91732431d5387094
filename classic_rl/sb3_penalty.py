"""The SB3 side of the penalty-based bilevel gradient (Shen, Yang, Chen, ICML 2024): the upper policy and its rollouts.

:class:`~irl_bilevel.hypergradients.PenaltyHypergradient` relaxes ``min_θ f(π*(θ))`` to
``min_{θ, π} f(π) + λ (V*_θ − V_θ(π))`` and, on a sampled inner loop, needs an upper policy ``π_φ`` it can train and
roll out (the core's ``UpperPolicy`` protocol). :class:`SB3UpperPolicy` is that policy for
:class:`~classic_rl.sb3_inner.SB3InnerSolver` (PPO, A2C, SAC; DQN's greedy policy has no useful log-probabilities):

* ``π_φ`` is a deep copy of the inner SB3 policy network at creation (same architecture and weights; the
  hypergradient creates it once, at its first call, and keeps it across calls);
* :meth:`SB3UpperPolicy.rollout` steps a private copy of the environment (fresh episodes from a seed fixed by the
  rollout count; the last episode is cut at the window's end and not bootstrapped) for ``rollout_steps`` env steps,
  added to the inner solver's ``upper_env_steps`` (so its ``env_steps`` and the run's budget count them);
* rewards and occupancy weights follow the inner solver's conventions exactly
  (:func:`~classic_rl.learned_reward_env.recorded_transitions`: weight ``γ^t``, absorbing rows of weight
  ``γ^{t+1}/(1 − γ)``, DAC's indicator), and use the raw ``r_θ`` (not the inner env's running normalization), so the
  ``θ``-gradient ``λ (E_{d_π*}[∇θ r_θ] − E_{d_π}[∇θ r_θ])`` compares like with like;
* :meth:`SB3UpperPolicy.value_surrogate` is the REINFORCE surrogate of the soft value
  ``V_θ(π) = E_{d_π}[r_θ − α log π]``: ``Σ_t γ^t log π_φ(a_t|s_t) · sg(G_t − b) / Σ w`` with the soft return-to-go
  ``G_t = Σ_{k≥t} γ^{k−t} (r_k − α log π_φ(a_k|s_k))`` within each episode (a terminated step's ``r`` includes the
  absorbing value ``γ/(1 − γ) r_θ(s_abs)``), ``b`` the batch mean of ``G`` (a constant baseline, no bias) and
  ``Σ w`` the batch's total occupancy weight, so that its gradient estimates ``∇_φ V_θ(π_φ)`` for the normalized
  occupancy (policy-gradient theorem; the score-function term of ``−α log π`` has mean zero).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import torch

from classic_rl.experts import float32_default
from classic_rl.learned_reward_env import LearnedRewardVecEnv, recorded_transitions, reward_model_dtype
from classic_rl.sb3_policy import SB3Policy
from irl_bilevel.objectives import weighted_reward_mean
from irl_bilevel.rewards import RewardModel, Transitions
from irl_bilevel.validation import ValidationError

UPPER_POLICY_ALGORITHMS = ("ppo", "a2c", "sac")


class UpperPolicyHost(Protocol):
    """What the upper policy reads of its inner solver (:class:`classic_rl.sb3_inner.SB3InnerSolver` is one): the SB3
    model whose policy it copies, the learned-reward env whose conventions it follows, and the env-step counter its
    rollouts are added to."""

    algorithm: str
    env_id: str
    discount: float
    model: Any
    env: LearnedRewardVecEnv
    wrapper_class: Callable[[gym.Env], gym.Env] | None
    upper_env_steps: int


def row_rewards(reward_model: RewardModel, batch: Transitions) -> torch.Tensor:
    """``r_θ`` of every row of ``batch`` ``[B]`` (float64, no gradient), inputs cast to the model's dtype."""
    with torch.no_grad():
        return reward_model(batch.to(reward_model_dtype(reward_model))).total.detach().to(torch.float64)


def step_rewards(reward_model: RewardModel, batch: Transitions, terminated: torch.Tensor, discount: float,
                 absorbing: bool) -> torch.Tensor:
    """Per-step rewards ``[n]`` as the inner learner sees them (unnormalized): ``r_θ(s, a, s')``, plus
    ``γ/(1 − γ) r_θ(s_abs)`` on terminated steps under absorbing termination (``batch`` from ``recorded_transitions``,
    whose absorbing rows follow the ``n`` step rows in the terminated steps' order)."""
    totals = row_rewards(reward_model, batch)
    n = len(terminated)
    rewards = totals[:n].clone()
    if absorbing and bool(terminated.any()):
        rewards[terminated] += discount / (1.0 - discount) * totals[n:]
    return rewards


def returns_to_go(rewards: torch.Tensor, ended: torch.Tensor, discount: float) -> torch.Tensor:
    """``G_t = r_t + γ G_{t+1}`` within episodes (``G_t = r_t`` where ``ended[t]``), rows in time order ``[n]``."""
    values = rewards.tolist()
    stops = ended.tolist()
    out = [0.0] * len(values)
    following = 0.0
    for t in range(len(values) - 1, -1, -1):
        following = values[t] + (0.0 if stops[t] else discount * following)
        out[t] = following
    return torch.tensor(out, dtype=torch.float64)


class SB3UpperPolicy:
    """The penalty method's upper policy ``π_φ`` for :class:`~classic_rl.sb3_inner.SB3InnerSolver` (module docstring).

    ``batch`` holds the latest rollout: ``states [n, obs_dim]``, ``policy_actions`` (what the policy sampled, for
    ``log π_φ``), ``actions`` (the env actions, one-hot / flat, for ``r_θ``), ``next_states``, ``time``, ``terminated``
    and ``ended`` (``[n]``).
    """

    def __init__(self, inner: UpperPolicyHost, rollout_steps: int, seed: int = 0) -> None:
        if inner.algorithm not in UPPER_POLICY_ALGORITHMS:
            raise ValidationError(f"algorithm: the penalty hypergradient needs a policy with log-probabilities "
                                  f"{UPPER_POLICY_ALGORITHMS}, got {inner.algorithm!r}")
        if rollout_steps < 1:
            raise ValidationError(f"upper_rollout_steps: expected at least 1, got {rollout_steps}")
        self.inner = inner
        self.discount = inner.discount
        self.rollout_steps, self.seed, self.rollouts = int(rollout_steps), int(seed), 0
        # π* at creation: same class and constructor arguments (SB3's own way of saving a policy), same weights. Not
        # copy.deepcopy: the policy caches its last action distribution, whose tensors are not graph leaves.
        source = inner.model.policy
        with float32_default():
            self.network = type(source)(**source._get_constructor_parameters())
        self.network.load_state_dict(source.state_dict())
        self.network.set_training_mode(False)
        self.policy = SB3Policy(self.network, inner.env.discrete)
        env = gym.make(inner.env_id)
        self.env = inner.wrapper_class(env) if inner.wrapper_class is not None else env
        self.batch: dict[str, np.ndarray] | None = None

    # ---- the UpperPolicy protocol
    def parameters(self) -> Iterator[torch.nn.Parameter]:
        """The actor's parameters (SAC: its actor network; PPO/A2C: the whole policy, whose value head gets no
        gradient and is left as it is)."""
        actor = getattr(self.network, "actor", None)
        return (actor if actor is not None else self.network).parameters()

    def log_prob(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.policy.differentiable_log_prob(states, actions)

    def rollout(self) -> None:
        env, space = self.env, self.env.action_space
        discrete = isinstance(space, gym.spaces.Discrete)
        observation, _ = env.reset(seed=self.seed + 7_919 * self.rollouts)
        rows: dict[str, list] = {key: [] for key in ("states", "policy_actions", "env_actions", "next_states", "time",
                                                     "terminated", "ended")}
        time = 0
        for _ in range(self.rollout_steps):
            state = np.asarray(observation, dtype=np.float64).reshape(-1)
            action = self.policy.act(torch.as_tensor(state, dtype=torch.float32).unsqueeze(0))[0].numpy()
            # SB3 clips a Gaussian policy's actions to the Box before stepping; log π is of the sampled one.
            if discrete:
                env_action: int | np.ndarray = int(action)
            else:
                assert isinstance(space, gym.spaces.Box)
                env_action = np.clip(action.reshape(space.shape), space.low, space.high)
            observation, _, terminated, truncated, _ = env.step(env_action)
            rows["states"].append(state)
            rows["policy_actions"].append(np.asarray(action))
            rows["env_actions"].append(np.asarray(env_action))
            rows["next_states"].append(np.asarray(observation, dtype=np.float64).reshape(-1))
            rows["time"].append(time)
            rows["terminated"].append(bool(terminated))
            rows["ended"].append(bool(terminated or truncated))
            if terminated or truncated:
                observation, _ = env.reset()
                time = 0
            else:
                time += 1
        rows["ended"][-1] = True  # the window cuts the last episode; its return-to-go is not bootstrapped
        batch = {key: np.asarray(value) for key, value in rows.items()}
        batch["actions"] = self.inner.env.encode_actions(batch.pop("env_actions"))
        self.batch = batch
        self.rollouts += 1
        self.inner.upper_env_steps += self.rollout_steps

    def _held(self) -> dict[str, np.ndarray]:
        if self.batch is None:
            raise RuntimeError("rollout() must be called before the upper policy's batch is read")
        return self.batch

    def _log_probs(self, differentiable: bool) -> torch.Tensor:
        batch = self._held()
        states = torch.from_numpy(batch["states"])
        actions = torch.from_numpy(batch["policy_actions"])
        if differentiable:
            return self.policy.differentiable_log_prob(states, actions).to(torch.float64)
        return self.policy.log_prob(states, actions).to(torch.float64)

    def value_surrogate(self, reward_model: RewardModel, entropy: float) -> torch.Tensor:
        data = self._held()
        env = self.inner.env
        batch, weights = recorded_transitions(env, data, self.discount)
        terminated = torch.from_numpy(data["terminated"])
        log_prob = self._log_probs(differentiable=True)
        with torch.no_grad():
            rewards = step_rewards(reward_model, batch, terminated, self.discount, env.termination == "absorbing")
            returns = returns_to_go(rewards - entropy * log_prob.detach(), torch.from_numpy(data["ended"]),
                                    self.discount)
            advantages = returns - returns.mean()
        step_weights = weights[: len(terminated)]
        return (step_weights * log_prob * advantages).sum() / weights.sum()

    def soft_value(self, reward_model: RewardModel, entropy: float) -> float:
        data = self._held()
        batch, weights = recorded_transitions(self.inner.env, data, self.discount)
        with torch.no_grad():
            value = float(weighted_reward_mean(reward_model, batch, weights))
            if entropy:
                log_prob = self._log_probs(differentiable=False)
                value -= entropy * float((weights[: len(log_prob)] * log_prob).sum() / weights.sum())
        return value

    def reward_expectation(self, reward_model: RewardModel) -> torch.Tensor:
        batch, weights = recorded_transitions(self.inner.env, self._held(), self.discount)
        return weighted_reward_mean(reward_model, batch, weights)

    def close(self) -> None:
        self.env.close()
