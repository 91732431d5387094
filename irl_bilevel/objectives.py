"""Outer objectives: losses on the inner policy that the outer loop minimizes over reward parameters."""

from __future__ import annotations

import torch

from irl_bilevel.feedback import Trajectories
from irl_bilevel.inner import SoftValueIterationSolver
from irl_bilevel.rewards import RewardModel
from irl_bilevel.sampling import empirical_occupancy
from irl_bilevel.tabular import TabularMDP
from irl_bilevel.validation import ValidationError, check_distribution, check_shape


class MaxEntDemonstrationLoss:
    """Negative MaxEnt (maximum causal entropy) log-likelihood of expert behaviour on a tabular MDP.

    ``L(θ) = −Σ_{t,s,a} w[t, s, a] log π_θ(a | s, t)``, with ``w`` the expert's normalized (discounted)
    occupancy, exact or estimated from demonstrations (Ziebart 2010). When ``w`` obeys the flow
    constraint from ``ρ0`` (it does for an exact occupancy) this equals ``−(Σ w r_θ − (1 − γ) ρ0ᵀ V_θ)``,
    whose gradient is ``E_{d_π}[∇r_θ] − E_{d_E}[∇r_θ]`` (the MaxEnt hypergradient).

    ``expert_occupancy``: ``[S, A]`` (discounted) or ``[H, S, A]`` (finite horizon), summing to one.
    """

    def __init__(self, mdp: TabularMDP, expert_occupancy: torch.Tensor) -> None:
        expected = (
            [mdp.num_states, mdp.num_actions]
            if mdp.horizon is None
            else [mdp.horizon, mdp.num_states, mdp.num_actions]
        )
        check_shape(expert_occupancy, "expert_occupancy", expected)
        check_distribution(expert_occupancy.reshape(-1), "expert_occupancy", atol=1e-6)
        self.mdp = mdp
        self.expert_occupancy = expert_occupancy.to(mdp.start.dtype)

    @classmethod
    def from_demonstrations(cls, mdp: TabularMDP, demonstrations: Trajectories) -> MaxEntDemonstrationLoss:
        return cls(mdp, empirical_occupancy(mdp, demonstrations))

    def loss(self, log_policy: torch.Tensor) -> torch.Tensor:
        if log_policy.dim() == 2 and self.expert_occupancy.dim() == 3:
            log_policy = log_policy.expand_as(self.expert_occupancy)
        # Pairs the expert never visits contribute nothing; masking avoids 0 · (−inf) for deterministic π.
        visited = self.expert_occupancy > 0
        return -(self.expert_occupancy[visited] * log_policy[visited]).sum()

    def evaluate(self, inner: object) -> torch.Tensor:
        if not isinstance(inner, SoftValueIterationSolver):
            raise ValidationError("inner: the tabular MaxEnt loss needs a SoftValueIterationSolver")
        return self.loss(inner.current_log_policy)

    def expert_reward_expectation(self, inner: object, reward_model: RewardModel) -> torch.Tensor:
        if not isinstance(inner, SoftValueIterationSolver):
            raise ValidationError("inner: the tabular MaxEnt loss needs a SoftValueIterationSolver")
        occupancy = (
            self.expert_occupancy.sum(0) if self.expert_occupancy.dim() == 3 else self.expert_occupancy
        )
        return (occupancy * inner.reward(reward_model)).sum()
