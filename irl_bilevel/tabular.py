"""Tabular MDPs and the exact, differentiable soft (maximum-entropy) dynamic programming on them.

Everything here is plain torch, so that hypergradients flow through it. Notation (Ziebart 2010, ch. 9):

* transitions ``P[s, a, s']``, start distribution ``ρ0[s]``, discount ``γ`` or horizon ``H``;
* soft Bellman operator ``(T_r Q)(s, a) = r(s, a) + γ Σ_s' P[s, a, s'] V(s')`` with
  ``V(s) = τ logsumexp_a Q(s, a) / τ`` and the soft-optimal policy ``π(a|s) = exp((Q(s, a) − V(s)) / τ)``;
* finite horizon: ``Q_{H-1} = r``, ``Q_t = r + γ P V_{t+1}``, a policy per time step.

Transitions are stored either dense (``[S, A, S]``) or as a padded successor list (``successors[S, A, k]``
indices with ``successor_probabilities[S, A, k]``), which makes one Bellman sweep ``O(S·A·k)`` instead of
``O(S²·A)`` on gridworlds and Garnet MDPs.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from irl_bilevel.validation import (
    ValidationError,
    as_tensor,
    check_distribution,
    check_finite,
    check_integer_range,
    check_shape,
)

# Above this many states the exact occupancy uses fixed-point sweeps instead of a dense linear solve.
_DENSE_SOLVE_MAX_STATES = 2048


@dataclass
class TabularMDP:
    """A finite MDP with dense or sparse transitions, features, a start distribution and γ or a horizon.

    Args:
        transitions: dense ``P[s, a, s']`` of shape ``[S, A, S]``; or ``None`` when the sparse pair is given.
        start: start distribution ``ρ0`` of shape ``[S]``.
        discount: ``γ``; in ``[0, 1)`` for an infinite horizon, ``(0, 1]`` with a finite ``horizon``.
        horizon: ``H`` for a finite-horizon MDP, ``None`` for a discounted one.
        successors: ``[S, A, k]`` successor indices (sparse form).
        successor_probabilities: ``[S, A, k]`` their probabilities; padding entries have probability 0.
        state_features: ``[S, F]`` features of states (one-hot states if omitted).
        state_action_features: ``[S, A, F]`` features of state-action pairs, optional.
        true_reward: the ground-truth reward, ``[S]`` or ``[S, A]``, where known.
        name: a label for logs.
    """

    start: torch.Tensor
    discount: float
    transitions: torch.Tensor | None = None
    horizon: int | None = None
    successors: torch.Tensor | None = None
    successor_probabilities: torch.Tensor | None = None
    state_features: torch.Tensor | None = None
    state_action_features: torch.Tensor | None = None
    true_reward: torch.Tensor | None = None
    name: str = "mdp"
    num_states: int = field(init=False)
    num_actions: int = field(init=False)
    _one_hot: torch.Tensor | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        dense = self.transitions is not None
        sparse = self.successors is not None or self.successor_probabilities is not None
        if dense == sparse:
            raise ValidationError(
                "transitions: give either dense `transitions` [S, A, S] or both `successors` and "
                "`successor_probabilities` [S, A, k]"
            )
        if dense:
            assert self.transitions is not None
            self.transitions = _floating(as_tensor(self.transitions, "transitions"))
            if self.transitions.dim() != 3 or self.transitions.shape[0] != self.transitions.shape[2]:
                raise ValidationError(
                    f"transitions: expected shape [S, A, S], got {list(self.transitions.shape)}"
                )
            self.num_states, self.num_actions = self.transitions.shape[:2]
            check_distribution(self.transitions, "transitions", dim=-1)
        else:
            if self.successors is None or self.successor_probabilities is None:
                raise ValidationError(
                    "successors: the sparse form needs both successors and successor_probabilities"
                )
            self.successors = as_tensor(self.successors, "successors").long()
            self.successor_probabilities = _floating(
                as_tensor(self.successor_probabilities, "successor_probabilities")
            )
            if self.successors.dim() != 3:
                raise ValidationError(
                    f"successors: expected shape [S, A, k], got {list(self.successors.shape)}"
                )
            check_shape(self.successor_probabilities, "successor_probabilities", list(self.successors.shape))
            self.num_states, self.num_actions = self.successors.shape[:2]
            check_integer_range(self.successors, "successors", 0, self.num_states)
            check_distribution(self.successor_probabilities, "successor_probabilities", dim=-1)
        # Every floating tensor takes the transitions' dtype (float64 inputs stay float64 whatever torch's default).
        probabilities = self.transitions if self.transitions is not None else self.successor_probabilities
        assert probabilities is not None
        dtype = probabilities.dtype
        self.start = as_tensor(self.start, "start", dtype)
        check_shape(self.start, "start", [self.num_states])
        check_distribution(self.start, "start")
        if self.horizon is None:
            if not 0.0 <= self.discount < 1.0:
                raise ValidationError(
                    f"discount: expected 0 <= discount < 1 without a horizon, got {self.discount}"
                )
        else:
            if int(self.horizon) != self.horizon or self.horizon < 1:
                raise ValidationError(f"horizon: expected a positive integer, got {self.horizon}")
            self.horizon = int(self.horizon)
            if not 0.0 < self.discount <= 1.0:
                raise ValidationError(
                    f"discount: expected 0 < discount <= 1 with a horizon, got {self.discount}"
                )
        if self.state_features is not None:
            self.state_features = as_tensor(self.state_features, "state_features", dtype)
            check_shape(self.state_features, "state_features", [self.num_states, None])
            check_finite(self.state_features, "state_features")
        if self.state_action_features is not None:
            self.state_action_features = as_tensor(self.state_action_features, "state_action_features", dtype)
            check_shape(
                self.state_action_features, "state_action_features", [self.num_states, self.num_actions, None]
            )
            check_finite(self.state_action_features, "state_action_features")
        if self.true_reward is not None:
            self.true_reward = as_tensor(self.true_reward, "true_reward", dtype)
            if list(self.true_reward.shape) not in ([self.num_states], [self.num_states, self.num_actions]):
                raise ValidationError(
                    f"true_reward: expected shape [{self.num_states}] or [{self.num_states}, {self.num_actions}], "
                    f"got {list(self.true_reward.shape)}"
                )
            check_finite(self.true_reward, "true_reward")

    # ------------------------------------------------------------------ structure
    @property
    def is_finite_horizon(self) -> bool:
        return self.horizon is not None

    @property
    def features(self) -> torch.Tensor:
        """State features ``[S, F]``; one-hot states when none were given."""
        if self.state_features is not None:
            return self.state_features
        if self._one_hot is None or self._one_hot.dtype != self.start.dtype:
            self._one_hot = torch.eye(self.num_states, dtype=self.start.dtype)
        return self._one_hot

    def to(self, dtype: torch.dtype) -> TabularMDP:
        """A copy with every floating tensor cast to ``dtype``."""

        def cast(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(dtype)

        return replace(
            self,
            start=self.start.to(dtype),
            transitions=cast(self.transitions),
            successors=self.successors,
            successor_probabilities=cast(self.successor_probabilities),
            state_features=cast(self.state_features),
            state_action_features=cast(self.state_action_features),
            true_reward=cast(self.true_reward),
        )

    def dense_transitions(self) -> torch.Tensor:
        """``P[s, a, s']`` as a dense tensor (materialized from the sparse form if needed)."""
        if self.transitions is not None:
            return self.transitions
        assert self.successors is not None and self.successor_probabilities is not None
        dense = torch.zeros(self.num_states, self.num_actions, self.num_states, dtype=self.start.dtype)
        return dense.scatter_add_(-1, self.successors, self.successor_probabilities)

    def expected_next(self, values: torch.Tensor) -> torch.Tensor:
        """``Σ_s' P[s, a, s'] values[..., s']``: ``values [..., S]`` → ``[..., S, A]``."""
        if self.transitions is not None:
            return torch.einsum("ijk,...k->...ij", self.transitions, values)
        assert self.successors is not None and self.successor_probabilities is not None
        return (values[..., self.successors] * self.successor_probabilities).sum(-1)

    def push_forward(self, state_action_mass: torch.Tensor) -> torch.Tensor:
        """Next-state mass ``Σ_{s,a} d[s, a] P[s, a, s']``: ``[S, A]`` → ``[S]``."""
        if self.transitions is not None:
            return torch.einsum("ij,ijk->k", state_action_mass, self.transitions)
        assert self.successors is not None and self.successor_probabilities is not None
        flow = (state_action_mass.unsqueeze(-1) * self.successor_probabilities).reshape(-1)
        return torch.zeros(self.num_states, dtype=flow.dtype).scatter_add(
            0, self.successors.reshape(-1), flow
        )

    def broadcast_reward(self, reward: torch.Tensor) -> torch.Tensor:
        """A state reward ``[S]`` or state-action reward ``[S, A]`` as ``[S, A]``."""
        if reward.shape == (self.num_states,):
            return reward.unsqueeze(-1).expand(self.num_states, self.num_actions)
        if reward.shape == (self.num_states, self.num_actions):
            return reward
        raise ValidationError(
            f"reward: expected shape [{self.num_states}] or [{self.num_states}, {self.num_actions}], "
            f"got {list(reward.shape)}"
        )


def _floating(tensor: torch.Tensor) -> torch.Tensor:
    return tensor if tensor.is_floating_point() else tensor.to(torch.get_default_dtype())


# ---------------------------------------------------------------------- soft dynamic programming
def soft_state_values(q: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``V(s) = τ logsumexp_a Q(s, a)/τ`` over the last dimension."""
    return temperature * torch.logsumexp(q / temperature, dim=-1)


def soft_bellman_operator(mdp: TabularMDP, reward: torch.Tensor, q: torch.Tensor, temperature: float = 1.0):
    """One soft Bellman backup.

    Discounted: ``q [S, A]`` ↦ ``r + γ P V(q)``. Finite horizon: the stacked ``q [H, S, A]`` ↦ the stack whose
    step ``t`` is ``r + γ P V(q_{t+1})`` and whose last step is ``r``; this map is nilpotent, so its fixed
    point is the backward recursion and implicit differentiation applies to both cases alike.
    """
    reward = mdp.broadcast_reward(reward)
    if not mdp.is_finite_horizon:
        return reward + mdp.discount * mdp.expected_next(soft_state_values(q, temperature))
    future = mdp.discount * mdp.expected_next(soft_state_values(q[1:], temperature))
    return torch.cat([reward + future, reward.unsqueeze(0)], dim=0)


@dataclass
class SoftQSolution:
    """Result of soft value iteration.

    ``q``, ``log_policy``: ``[S, A]`` (discounted) or ``[H, S, A]`` (finite horizon); ``values``: ``[S]`` or
    ``[H, S]``; ``iterations``: Bellman sweeps done; ``residual``: final ``max |T Q − Q|``.
    """

    q: torch.Tensor
    values: torch.Tensor
    log_policy: torch.Tensor
    iterations: int
    residual: float


def soft_value_iteration(
    mdp: TabularMDP,
    reward: torch.Tensor,
    temperature: float = 1.0,
    tol: float = 1e-10,
    max_iterations: int = 100_000,
    initial_q: torch.Tensor | None = None,
) -> SoftQSolution:
    """Soft value iteration, differentiable in ``reward`` (autograd flows through every sweep).

    Finite horizon: exactly ``H`` backward sweeps. Discounted: sweeps from ``initial_q`` (zeros by default;
    pass the last solution to warm-start) until ``max |T Q − Q| ≤ tol``; the error contracts like ``γ^k``.
    """
    reward = mdp.broadcast_reward(reward)
    check_finite(reward.detach(), "reward")
    if mdp.is_finite_horizon:
        assert mdp.horizon is not None
        steps = [reward]
        for _ in range(mdp.horizon - 1):
            next_values = soft_state_values(steps[-1], temperature)
            steps.append(reward + mdp.discount * mdp.expected_next(next_values))
        q = torch.stack(steps[::-1])
        values = soft_state_values(q, temperature)
        return SoftQSolution(q, values, (q - values.unsqueeze(-1)) / temperature, mdp.horizon, 0.0)
    q = torch.zeros_like(reward) if initial_q is None else initial_q
    residual = float("inf")
    iterations = 0
    while iterations < max_iterations:
        new_q = soft_bellman_operator(mdp, reward, q, temperature)
        residual = float((new_q - q).detach().abs().max())
        q = new_q
        iterations += 1
        if residual <= tol:
            break
    values = soft_state_values(q, temperature)
    return SoftQSolution(q, values, (q - values.unsqueeze(-1)) / temperature, iterations, residual)


# ---------------------------------------------------------------------- occupancy measures
def state_action_occupancy(
    mdp: TabularMDP, log_policy: torch.Tensor, normalize: bool = True, start: torch.Tensor | None = None
) -> torch.Tensor:
    """Occupancy of a (possibly time-varying) policy.

    Discounted: ``d(s, a) = Σ_t γ^t Pr(s_t = s, a_t = a)``, i.e. ``d_s = ρ0 + γ P_πᵀ d_s`` and
    ``d(s, a) = d_s(s) π(a|s)``; multiplied by ``1 − γ`` when ``normalize`` (it then sums to one).
    Finite horizon: ``d[t, s, a] = γ^t Pr(s_t = s, a_t = a)`` of shape ``[H, S, A]`` (``normalize`` divides by
    ``Σ_t γ^t`` so that the whole tensor sums to one).

    ``start``: the mass entering the chain instead of ``ρ0``: ``[S]`` (at ``t = 0``) or, finite horizon, ``[H, S]``
    (``start[t]`` enters at step ``t``: ``Pr(s_t) = P_πᵀ Pr(s_{t−1}) + start[t]``). The map is linear in it, so a
    signed ``start`` gives the signed occupancy of a flow correction (``MaxEntDemonstrationLoss``).
    """
    policy = log_policy.exp()
    initial = mdp.start if start is None else start
    if mdp.is_finite_horizon:
        assert mdp.horizon is not None
        if policy.dim() == 2:
            policy = policy.expand(mdp.horizon, *policy.shape)
        entering = initial if initial.dim() == 2 else None
        state = initial[0] if entering is not None else initial
        per_step = []
        for t in range(mdp.horizon):
            mass = state.unsqueeze(-1) * policy[t]
            per_step.append(mass * mdp.discount**t)
            state = mdp.push_forward(mass)
            if entering is not None and t + 1 < mdp.horizon:
                state = state + entering[t + 1]
        occupancy = torch.stack(per_step)
        if normalize:
            occupancy = occupancy / sum(mdp.discount**t for t in range(mdp.horizon))
        return occupancy
    gamma = mdp.discount
    if mdp.num_states <= _DENSE_SOLVE_MAX_STATES:
        # d_sᵀ (I − γ P_π) = ρ0ᵀ, with P_π[s, s'] = Σ_a π(a|s) P[s, a, s'].
        policy_transitions = torch.einsum("ij,ijk->ik", policy, mdp.dense_transitions())
        system = torch.eye(mdp.num_states, dtype=policy.dtype) - gamma * policy_transitions
        state = torch.linalg.solve(system.T, initial)
    else:
        state = initial
        for _ in range(100_000):
            new_state = initial + gamma * mdp.push_forward(state.unsqueeze(-1) * policy)
            # P_π is non-expansive in L1, so the remaining error is at most γ/(1 − γ) times the last change.
            if gamma * float((new_state - state).detach().abs().sum()) <= 1e-13:
                state = new_state
                break
            state = new_state
    occupancy = state.unsqueeze(-1) * policy
    return occupancy * (1.0 - gamma) if normalize else occupancy


def expected_return(mdp: TabularMDP, log_policy: torch.Tensor, reward: torch.Tensor) -> torch.Tensor:
    """``E_π[Σ_t γ^t r(s_t, a_t)]`` from ``ρ0``, exactly."""
    occupancy = state_action_occupancy(mdp, log_policy, normalize=False)
    reward = mdp.broadcast_reward(reward)
    return (occupancy * reward).sum()


def feature_expectations(occupancy: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """``Σ_{s,a} d(s, a) φ(s, a)`` for an occupancy ``[S, A]`` or ``[H, S, A]`` and features ``[S, F]`` or
    ``[S, A, F]``; returns ``[F]``."""
    mass = occupancy.sum(0) if occupancy.dim() == 3 else occupancy
    if features.dim() == 2:
        return mass.sum(-1) @ features
    return torch.einsum("sa,saf->f", mass, features)
