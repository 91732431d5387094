"""Inner solvers: given a reward model, (re)train a policy on it.

Every inner solver implements ``InnerSolver``: ``solve(reward_model)`` trains (warm-started from the last
call) and ``learner_reward_expectation(reward_model)`` returns the learner's expected reward
``E_{d_π}[r_θ]``, differentiable in ``θ`` with ``d_π`` held fixed, which is what the sample-based MaxEnt
hypergradient needs. ``FixedPointInnerSolver`` adds what implicit and unrolled differentiation need: the
inner solution as the fixed point ``x* = T_θ(x*)`` of a differentiable map.

``SoftValueIterationSolver`` is the exact, differentiable backend on tabular MDPs. Solvers that learn from their
own rollouts (SB3, the LoRA learner) derive from ``WeightedTransitionsExpectation``, which estimates the expectation
from the weighted learner transitions they record.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Protocol, runtime_checkable

import torch

from irl_bilevel.rewards import RewardModel, Transitions
from irl_bilevel.sampling import empirical_occupancy, sample_trajectories
from irl_bilevel.tabular import (
    SoftQSolution,
    TabularMDP,
    soft_bellman_operator,
    soft_state_values,
    soft_value_iteration,
    state_action_occupancy,
)


@runtime_checkable
class LogProbPolicy(Protocol):
    """A policy that scores actions: what a demonstration likelihood needs (``log π(a | s)``)."""

    def log_prob(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``log π(a | s)`` for a batch: ``states [B, ...]``, ``actions [B, ...]`` → ``[B]``."""
        ...


@runtime_checkable
class Policy(LogProbPolicy, Protocol):
    """What an inner solver exposes of its policy: log-probabilities of actions, and sampling."""

    def act(self, states: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Sample one action per state."""
        ...


class TabularPolicy:
    """A stationary tabular policy given by its log-probabilities ``[S, A]`` (states are indices)."""

    def __init__(self, log_policy: torch.Tensor) -> None:
        self.log_policy = log_policy

    def log_prob(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.log_policy[states.long(), actions.long()]

    def act(self, states: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        probabilities = self.log_policy[states.long()].exp()
        return torch.multinomial(probabilities, 1, generator=generator).squeeze(-1)


@runtime_checkable
class InnerSolver(Protocol):
    """Trains a policy on the current reward; warm-started across outer steps."""

    def solve(self, reward_model: RewardModel) -> None: ...

    def learner_reward_expectation(self, reward_model: RewardModel, num_samples: int | None = None,
                                   generator: torch.Generator | None = None) -> torch.Tensor:
        """``E_{d_π}[r_θ]`` of the current policy, differentiable in ``θ`` (exact if ``num_samples`` is None)."""
        ...

    def log_partition(self) -> float | None:
        """``log Z`` of the current soft-optimal policy, normalized like the occupancies, where known."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs of the solver (its warm start: the last solution, a policy and its
        optimizer, counters), as tensors and plain containers, so checkpoints load with ``weights_only=True``."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        ...


@runtime_checkable
class PolicyInnerSolver(InnerSolver, Protocol):
    """An inner solver that exposes its current policy (None where it has no useful log-probabilities, e.g. a
    greedy DQN)."""

    @property
    def policy(self) -> LogProbPolicy | None: ...


@runtime_checkable
class FixedPointInnerSolver(InnerSolver, Protocol):
    """An inner solver whose solution is the fixed point of a differentiable map ``x ↦ T(x, r)``."""

    def reward(self, reward_model: RewardModel) -> torch.Tensor:
        """The reward the inner problem sees, differentiable in the model's parameters."""
        ...

    def fixed_point(self, reward: torch.Tensor) -> torch.Tensor:
        """The (detached) solution ``x*`` for ``reward``, warm-started."""
        ...

    def operator(self, x: torch.Tensor, reward: torch.Tensor) -> torch.Tensor:
        """``T(x, r)``; differentiable in both."""
        ...

    def log_policy(self, x: torch.Tensor) -> torch.Tensor:
        """The policy's log-probabilities given the inner variable ``x``."""
        ...


def weighted_reward_mean(reward_model: RewardModel, batch: Transitions, weights: torch.Tensor) -> torch.Tensor:
    """``Σ_i w_i r_θ(x_i) / Σ_i w_i``, differentiable in ``θ``; inputs cast to the model's dtype."""
    dtype = next(iter(reward_model.parameters()), torch.empty(0)).dtype
    if not dtype.is_floating_point:
        dtype = torch.get_default_dtype()

    total = reward_model(batch.to(dtype)).total
    weights = weights.to(total.dtype)
    return (weights * total).sum() / weights.sum()


class WeightedTransitionsExpectation(ABC):
    """Base of the inner solvers that estimate ``E_{d_π}[r_θ]`` from their own recorded learner transitions:
    ``Σ_i w_i r_θ(x_i) / Σ_i w_i`` over the rows ``x_i`` and weights ``w_i [M]`` of :meth:`learner_transitions`
    (discounted-occupancy weights, e.g. ``γ^t``), differentiable in ``θ``."""

    @abstractmethod
    def learner_transitions(
        self, num_samples: int | None = None, generator: torch.Generator | None = None
    ) -> tuple[Transitions, torch.Tensor]:
        """The recorded learner transitions and their weights ``[M]``: all rows if ``num_samples`` is None, else
        at most ``num_samples`` rows drawn without replacement with ``generator``."""

    def learner_reward_expectation(self, reward_model: RewardModel, num_samples: int | None = None,
                                   generator: torch.Generator | None = None) -> torch.Tensor:
        """``E_{d_π}[r_θ]`` as the weighted mean of ``r_θ`` over :meth:`learner_transitions`."""
        batch, weights = self.learner_transitions(num_samples, generator)
        return weighted_reward_mean(reward_model, batch, weights)


class SoftValueIterationSolver:
    """Exact soft value iteration on a tabular MDP (the inner variable is the soft Q-table).

    ``x = Q`` of shape ``[S, A]`` (discounted) or ``[H, S, A]`` (finite horizon); ``T`` is the soft Bellman
    operator; the policy is ``π = softmax(Q / τ)``. Warm-starts from the previous solution, which makes each
    outer step cost a few sweeps once the reward changes slowly.
    """

    def __init__(
        self, mdp: TabularMDP, temperature: float = 1.0, tol: float = 1e-12, max_iterations: int = 100_000
    ) -> None:
        self.mdp = mdp
        self.temperature = temperature
        self.tol = tol
        self.max_iterations = max_iterations
        self.solution: SoftQSolution | None = None
        self.total_sweeps = 0
        # The current policy's occupancy, computed once per solution: hypergradients and metrics both read it.
        self._occupancy: tuple[SoftQSolution, torch.Tensor] | None = None

    # ---- the inner problem
    def reward(self, reward_model: RewardModel) -> torch.Tensor:
        table = reward_model.reward_table(self.mdp.features, self.mdp.num_actions, self.mdp.expected_next)
        return self.mdp.broadcast_reward(table)

    def fixed_point(self, reward: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            initial = None if self.solution is None or self.mdp.is_finite_horizon else self.solution.q
            self.solution = soft_value_iteration(
                self.mdp, reward.detach(), self.temperature, self.tol, self.max_iterations, initial
            )
        self.total_sweeps += self.solution.iterations
        return self.solution.q

    def operator(self, x: torch.Tensor, reward: torch.Tensor) -> torch.Tensor:
        return soft_bellman_operator(self.mdp, reward, x, self.temperature)

    def log_policy(self, x: torch.Tensor) -> torch.Tensor:
        return (x - soft_state_values(x, self.temperature).unsqueeze(-1)) / self.temperature

    # ---- InnerSolver
    def solve(self, reward_model: RewardModel) -> None:
        with torch.no_grad():
            self.fixed_point(self.reward(reward_model))

    @property
    def policy(self) -> TabularPolicy:
        """The current policy (for finite horizons, its first time step)."""
        log_policy = self.current_log_policy
        return TabularPolicy(log_policy[0] if log_policy.dim() == 3 else log_policy)

    @property
    def current_log_policy(self) -> torch.Tensor:
        if self.solution is None:
            raise RuntimeError("solve() must be called before the policy is read")
        return self.solution.log_policy

    def occupancy(self) -> torch.Tensor:
        """Normalized occupancy of the current policy (``[S, A]`` or ``[H, S, A]``)."""
        if self._occupancy is None or self._occupancy[0] is not self.solution:
            assert self.solution is not None
            self._occupancy = (self.solution, state_action_occupancy(self.mdp, self.current_log_policy))
        return self._occupancy[1]

    def learner_reward_expectation(self, reward_model: RewardModel, num_samples: int | None = None,
                                   generator: torch.Generator | None = None) -> torch.Tensor:
        if num_samples is None:
            occupancy = self.occupancy()
        else:
            length = self.mdp.horizon or effective_horizon(self.mdp.discount)
            samples = sample_trajectories(self.mdp, self.current_log_policy, num_samples, length, generator)
            occupancy = empirical_occupancy(self.mdp, samples)
        if occupancy.dim() == 3:
            occupancy = occupancy.sum(0)
        return (occupancy.detach() * self.reward(reward_model)).sum()

    def log_partition(self) -> float | None:
        """``(1 − γ) ρ0ᵀ V`` (discounted) or ``ρ0ᵀ V_0 / Σ_t γ^t`` (finite horizon)."""
        if self.solution is None:
            return None
        mdp = self.mdp
        if mdp.is_finite_horizon:
            assert mdp.horizon is not None
            normalizer = sum(mdp.discount**t for t in range(mdp.horizon))
            return float(mdp.start @ self.solution.values[0]) / normalizer
        return float(mdp.start @ self.solution.values) * (1.0 - mdp.discount)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {} if self.solution is None else {"q": self.solution.q.detach().clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if "q" in state:
            q = state["q"]
            values = soft_state_values(q, self.temperature)
            log_policy = (q - values.unsqueeze(-1)) / self.temperature
            self.solution = SoftQSolution(q, values, log_policy, 0, 0.0)


def effective_horizon(discount: float, tail: float = 1e-8) -> int:
    """Rollout length after which ``γ^T`` drops below ``tail``."""
    import math

    return max(1, math.ceil(math.log(tail) / math.log(discount))) if discount > 0 else 1
