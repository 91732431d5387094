"""``SB3Policy``: the core's ``irl_bilevel.inner.Policy`` (log-probabilities and sampled actions) over an SB3 policy
network, shared by the inner solver (:mod:`classic_rl.sb3_inner`) and the penalty method's upper policy
(:mod:`classic_rl.sb3_penalty`)."""

from __future__ import annotations

from typing import Any

import torch

from classic_rl.experts import float32_default


class SB3Policy:
    """``irl_bilevel.inner.Policy`` over an SB3 actor-critic policy (PPO, A2C) or SAC's squashed-Gaussian actor.

    Actions are env actions: indices (or one-hot rows) for discrete spaces, unscaled vectors for Box spaces.
    """

    def __init__(self, policy: Any, discrete: bool) -> None:
        self.policy = policy
        self.discrete = discrete

    def _distribution(self, states: torch.Tensor):
        observations = states.detach().to(torch.float32)
        self.policy.set_training_mode(False)
        if hasattr(self.policy, "get_distribution"):
            return self.policy.get_distribution(observations)
        actor = self.policy.actor  # SAC
        mean, log_std, kwargs = actor.get_action_dist_params(observations)
        return actor.action_dist.proba_distribution(mean, log_std, **kwargs)

    def _squashed(self) -> bool:
        return not hasattr(self.policy, "get_distribution") and bool(getattr(self.policy, "squash_output", False))

    def log_prob(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``log π(a | s)``; discrete actions as indices ``[B]`` (or one-hot ``[B, A]``)."""
        with torch.no_grad():
            return self.differentiable_log_prob(states, actions)

    def differentiable_log_prob(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``log π(a | s)`` ``[B]`` on the autograd tape of the policy network's parameters (for training a copy of
        the policy, e.g. the penalty method's upper policy, :mod:`classic_rl.sb3_penalty`)."""
        with float32_default():
            distribution = self._distribution(states)
            if self.discrete:
                index = actions.argmax(-1) if actions.dim() == 2 else actions
                log_prob = distribution.log_prob(index.long().reshape(-1))
            else:
                values = actions.detach().to(torch.float32).reshape(len(states), -1)
                if self._squashed():
                    low = torch.as_tensor(self.policy.action_space.low, dtype=torch.float32)
                    high = torch.as_tensor(self.policy.action_space.high, dtype=torch.float32)
                    values = (2.0 * (values - low) / (high - low) - 1.0).clamp(-1 + 1e-6, 1 - 1e-6)
                log_prob = distribution.log_prob(values)
        return log_prob.to(states.dtype if states.is_floating_point() else torch.get_default_dtype())

    def act(self, states: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Sample actions (SB3 draws from the global torch generator; ``generator`` is ignored)."""
        with float32_default(), torch.no_grad():
            actions = self._distribution(states).get_actions(deterministic=False)
            if self._squashed():
                low = torch.as_tensor(self.policy.action_space.low, dtype=torch.float32)
                high = torch.as_tensor(self.policy.action_space.high, dtype=torch.float32)
                actions = low + 0.5 * (actions + 1.0) * (high - low)
            return actions
