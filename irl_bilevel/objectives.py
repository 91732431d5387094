"""Outer objectives: losses on the inner policy that the outer loop minimizes over reward parameters.

:class:`OuterObjective` declares every hook the bilevel solver and the hypergradient methods call on an objective;
the optional ones have defaults (no feedback growth, no state to save, a clear error where a method needs a loss the
objective does not define).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch

from irl_bilevel.feedback import Trajectories
from irl_bilevel.inner import (  # weighted_reward_mean: re-exported, its home before the inner solvers shared it
    InnerSolver,
    LogProbPolicy,
    PolicyInnerSolver,
    SoftValueIterationSolver,
    weighted_reward_mean,
)
from irl_bilevel.rewards import RewardModel, Transitions
from irl_bilevel.sampling import empirical_occupancy
from irl_bilevel.tabular import TabularMDP, state_action_occupancy
from irl_bilevel.validation import ValidationError, check_distribution, check_shape


class OuterObjective(ABC):
    """The outer loss ``L`` of the bilevel problem, with every hook the solver and the hypergradient methods call.

    Required: :meth:`evaluate`. Each of the other losses is needed by some hypergradient methods only, and its
    default raises a :class:`ValidationError` naming the objective and the methods that need it:

    * :meth:`loss` (a differentiable loss of a log-policy table): ``implicit``, ``unrolled_*``, tabular ``penalty``;
    * :meth:`expert_reward_expectation` (the data term of the MaxEnt dual): ``maxent``;
    * :meth:`reward_loss` (a loss that depends on ``θ`` only through ``r_θ`` on data): ``direct``;
    * :meth:`policy_loss` (the demonstrations' likelihood under any scoring policy): sampled ``penalty``.

    Online feedback (objectives whose data grow while the run goes on, e.g. a preference query loop):
    :meth:`refresh` (called by the ``direct`` method after each inner solve; default: nothing),
    :meth:`has_feedback` (False while no outer step can be informed; default True) and :meth:`feedback_may_grow`
    (True while more data may come, so a zero gradient is not convergence; default False).

    Resume: :meth:`state_dict` / :meth:`load_state_dict` hold what the objective changes during a run (tensors and
    plain containers, saved in the solver's checkpoint). Default: nothing (objectives on fixed data, rebuilt from
    their constructor's inputs). An objective whose run state cannot be saved raises ``NotImplementedError`` in
    :meth:`state_dict`; the solver then refuses a run folder.
    """

    @abstractmethod
    def evaluate(self, inner: InnerSolver) -> torch.Tensor:
        """The loss of the inner solver's current policy (a scalar; no gradient needed)."""

    def loss(self, log_policy: torch.Tensor) -> torch.Tensor:
        """The loss of a policy given by its log-probabilities ``[S, A]`` or ``[H, S, A]``, differentiable in them."""
        raise ValidationError(
            f"objective: {type(self).__name__} has no differentiable loss of a log-policy table, which implicit and "
            f"unrolled differentiation (and the tabular penalty method) need; use the 'maxent', 'direct' or "
            f"'zeroth_order' hypergradient"
        )

    def expert_reward_expectation(self, inner: InnerSolver, reward_model: RewardModel) -> torch.Tensor:
        """The data term ``D(θ)`` of the MaxEnt dual ``L(θ) = log Z_θ − D(θ)``, differentiable in ``θ``: the expert's
        ``E_{d_E}[r_θ]`` (plus any correction the objective needs for ``L`` to be its loss, see
        :class:`MaxEntDemonstrationLoss`). The ``maxent`` hypergradient is ``E_{d_π}[∇r_θ] − ∇D(θ)``."""
        raise ValidationError(
            f"objective: {type(self).__name__} has no expert data, which the 'maxent' hypergradient needs; use "
            f"implicit or unrolled differentiation, finite differences or 'zeroth_order'"
        )

    def reward_loss(self, reward_model: RewardModel) -> torch.Tensor:
        """``L(θ)`` for a loss that depends on ``θ`` only through ``r_θ`` on fixed data (the ``direct`` method)."""
        raise ValidationError(
            f"objective: the direct hypergradient needs an objective with reward_loss(reward_model) (a loss that "
            f"depends on θ only through r_θ), got {type(self).__name__}"
        )

    def policy_loss(self, policy: LogProbPolicy) -> torch.Tensor:
        """The loss of any policy that scores actions, differentiable in its parameters (the sampled penalty
        method's upper level)."""
        raise ValidationError(
            f"objective: the sampled penalty method needs an objective with policy_loss(policy) (the demonstration "
            f"likelihood), got {type(self).__name__}"
        )

    def refresh(self, inner: Any, reward_model: RewardModel) -> None:
        """Grow the data after an inner solve (e.g. ask new queries about the learner's behaviour); ``inner``: the
        problem's inner solver, of the kind the objective reads (its docstring says which). Default: none."""
        return None  # an optional hook: fixed data by default

    def has_feedback(self) -> bool:
        """False while the objective holds no feedback yet: the solver then takes no outer step."""
        return True

    def feedback_may_grow(self) -> bool:
        """True while :meth:`refresh` may still add data: the solver's tolerance stops then do not apply."""
        return False

    def state_dict(self) -> dict[str, Any]:
        """What the objective changed during the run, for a checkpoint (tensors and plain containers)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        return None  # an optional hook: nothing to restore by default


def flow_correction(mdp: TabularMDP, occupancy: torch.Tensor) -> torch.Tensor | None:
    """The start mass by which a normalized occupancy ``w`` violates the flow constraint from ``ρ0``, or None.

    Discounted: ``w_s = (1 − γ) ρ0 + γ Pᵀ w`` holds for every policy's occupancy; returns
    ``u = (w_s − γ Pᵀ w) / (1 − γ) − ρ0`` ``[S]``. Finite horizon (``w [H, S, A]``, normalizer ``N = Σ_t γ^t``):
    with ``c_0 = w_0 − ρ0 / N`` and ``c_t = w_t − γ Pᵀ w_{t−1}``, returns ``u[t] = N c_t / γ^t`` ``[H, S]``. Both are
    the ``start`` of :func:`~irl_bilevel.tabular.state_action_occupancy` that turns a policy's occupancy into the
    correction ``(I − γ P_πᵀ)⁻¹ c`` (normalized like ``w``). None when the constraint holds to rounding
    (``max |u| ≤ 10⁴ ε`` of the dtype): exact occupancies. Empirical ones (finite samples, truncated rollouts) do not.
    """
    tolerance = 1e4 * torch.finfo(occupancy.dtype).eps
    gamma = mdp.discount
    if occupancy.dim() == 2:
        correction = (occupancy.sum(-1) - gamma * mdp.push_forward(occupancy)) / (1.0 - gamma) - mdp.start
    else:
        assert mdp.horizon is not None
        normalizer = sum(gamma**t for t in range(mdp.horizon))
        flows = [occupancy[0].sum(-1) - mdp.start / normalizer]
        flows += [occupancy[t].sum(-1) - gamma * mdp.push_forward(occupancy[t - 1]) for t in range(1, mdp.horizon)]
        correction = torch.stack([normalizer * flow / gamma**t for t, flow in enumerate(flows)])
    return None if float(correction.abs().max()) <= tolerance else correction


class MaxEntDemonstrationLoss(OuterObjective):
    """Negative MaxEnt (maximum causal entropy) log-likelihood of expert behaviour on a tabular MDP.

    ``L(θ) = −Σ_{t,s,a} w[t, s, a] log π_θ(a | s, t) ≥ 0``, with ``w`` the expert's normalized (discounted)
    occupancy, exact or estimated from demonstrations (Ziebart 2010). With ``log π = (Q − V) / τ`` and
    ``Q = r + γ P V`` this is exactly ``(1/τ) (log Z_θ − D(θ))``, ``log Z_θ = (1 − γ) ρ0ᵀ V_θ``, with the data term
    (:meth:`expert_reward_expectation`)

        ``D(θ) = Σ w r_θ − cᵀ V_θ``,   ``c = w_s − γ Pᵀ w − (1 − γ) ρ0``

    (finite horizon: ``c_t`` per step, :func:`flow_correction`). ``c = 0`` when ``w`` obeys the flow constraint
    from ``ρ0`` (an exact occupancy): then ``D = E_{d_E}[r_θ]`` and ``L`` is the MaxEnt dual. An empirical ``w``
    (sampled, truncated demonstrations) violates it, and the dual alone is then unbounded below (a reward can pay
    the expert's pairs more than any policy's flow can reach); keeping ``cᵀ V_θ`` keeps the likelihood. Its
    gradient is ``∇cᵀV_θ = Σ d_c ∇r_θ`` with ``d_c`` the signed occupancy of the current policy started from ``c``
    (the soft-optimal ``V``'s envelope theorem), so the ``maxent`` hypergradient ``E_{d_π}[∇r] − ∇D`` is the exact
    gradient of ``τ L`` without differentiating through the inner solution.

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
        self.start_correction = flow_correction(mdp, self.expert_occupancy)

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
        """``D(θ) = Σ w r_θ − cᵀ V_θ`` (class docstring); ``Σ w r_θ`` alone when ``w`` obeys the flow constraint."""
        if not isinstance(inner, SoftValueIterationSolver):
            raise ValidationError("inner: the tabular MaxEnt loss needs a SoftValueIterationSolver")
        occupancy = (
            self.expert_occupancy.sum(0) if self.expert_occupancy.dim() == 3 else self.expert_occupancy
        )
        reward = inner.reward(reward_model)
        data_term = (occupancy * reward).sum()
        if self.start_correction is None:
            return data_term
        # cᵀV = Σ d_c (r − τ log π) (V is the soft value of π), and its θ-gradient is Σ d_c ∇r: d_c and log π fixed.
        log_policy = inner.current_log_policy.detach()
        corrected = state_action_occupancy(self.mdp, log_policy, start=self.start_correction).detach()
        soft_reward = reward - inner.temperature * log_policy
        return data_term - (corrected * soft_reward).sum()


def absorbing_transitions(final_states: torch.Tensor, action_dim: int | None, indicator: bool = False) -> Transitions:
    """The absorbing state after a termination, as reward-model input (one row per terminated episode).

    Without ``indicator``, the absorbing state is the terminal observation with an all-zero action vector (for
    one-hot discrete actions a vector no real action has, so a state-action reward can tell it apart) and itself
    as next state, not done: it loops forever. Potential shaping then telescopes through it (``γΦ(s_f) − Φ(s_f)``
    per step), so shaped and unshaped rewards keep the same optimal policies on tasks that terminate. Caveat: a
    *state-only* reward then gives the absorbing state the reward of the terminal observation, an ordinary state
    at the edge of the state space, so the (heavily weighted) absorbing reward is an extrapolation of ``r_θ``
    tied to where the agent happened to fall, not a quantity of its own.

    With ``indicator`` (Kostrikov et al. 2019, DAC), reward inputs carry one extra trailing state feature, 0 on
    real states (:func:`with_absorbing_indicator`) and 1 on the absorbing state, which is one fixed vector
    ``[0, …, 0, 1]`` (``final_states`` are real observations without the feature; only their count is used): its
    reward is then one learned value, whatever the terminal observation. Terminal transitions lead into it
    (:func:`absorbing_vector` as their next state), so potential shaping still telescopes.
    """
    count = final_states.shape[0]
    states = absorbing_vector(count, final_states.shape[-1], final_states.dtype) if indicator else final_states
    actions = None if action_dim is None else final_states.new_zeros(count, action_dim)
    dones = torch.zeros(count, dtype=torch.bool)
    return Transitions(states, actions, states, dones)


def absorbing_vector(count: int, obs_dim: int, dtype: torch.dtype) -> torch.Tensor:
    """``count`` copies of the indicator-mode absorbing state ``[0, …, 0, 1]`` (``obs_dim + 1`` features)."""
    vector = torch.zeros(count, obs_dim + 1, dtype=dtype)
    vector[:, -1] = 1.0
    return vector


def with_absorbing_indicator(states: torch.Tensor) -> torch.Tensor:
    """Real states ``[B, obs_dim]`` with the absorbing-indicator feature (0) appended: ``[B, obs_dim + 1]``."""
    return torch.cat([states, states.new_zeros(states.shape[0], 1)], dim=-1)


def concatenate_transitions(parts: list[Transitions]) -> Transitions:
    """Stack batches row-wise; a field is kept only when every part has it."""

    def cat(values: list[torch.Tensor | None]) -> torch.Tensor | None:
        if any(v is None for v in values):
            return None
        return torch.cat([v for v in values if v is not None])

    states = cat([p.states for p in parts])
    assert states is not None
    return Transitions(states, cat([p.actions for p in parts]), cat([p.next_states for p in parts]),
                       cat([p.dones for p in parts]))


def sample_rows(count: int, num_samples: int | None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Row indices in increasing order for a sampled learner expectation: all ``count`` rows if ``num_samples`` is
    None, else ``min(num_samples, count)`` rows drawn without replacement (``torch.randperm`` with ``generator``)."""
    if num_samples is None:
        return torch.arange(count)
    if num_samples < 1:
        raise ValidationError(f"num_samples: expected at least 1, got {num_samples}")
    return torch.randperm(count, generator=generator)[:num_samples].sort().values


class SampleMaxEntObjective(OuterObjective):
    """Sample-based MaxEnt / ML-IRL objective from demonstrations of a continuous-state task.

    The gradient of the ML-IRL objective (Zeng et al. 2022; Ziebart 2010) is ``E_{d_π}[∇r_θ] − E_{d_E}[∇r_θ]``;
    ``MaxEntHypergradient`` takes the learner term from the inner solver and the expert term from
    :meth:`expert_reward_expectation`: the discount-weighted mean of ``r_θ`` over the demonstrations'
    transitions, weight ``γ^t`` at step ``t`` (the normalized discounted occupancy, estimated).

    Inputs: states are the observations (flattened to ``[*, obs_dim]``); actions are one-hot for discrete
    spaces (``num_actions`` given, or taken from the demonstrations) and the raw vectors otherwise. Next states
    come from the next observation, and for the last step from ``final_observations`` (``[N, obs_dim]``) where
    given (``classic_rl.experts.RolloutDemonstrations`` carries them); without them ``next_states`` is None.

    Termination: with ``absorbing=True`` a terminated episode
    (``terminated [N]``) continues in an absorbing state (see :func:`absorbing_transitions`) of weight
    ``γ^T / (1 − γ)``, exactly as the inner solver's learner samples do, so a reward's constant offset changes
    neither side's optimal behaviour and the absorbing state's reward is learned like any other. With
    ``absorbing_indicator=True`` the absorbing state is DAC's separate state instead of the terminal
    observation (see :func:`absorbing_transitions`; reward inputs then have ``obs_dim + 1`` state features and the
    inner solver must use the same convention): use it with state-only rewards on tasks that terminate. Truncated
    episodes (time limit) are just cut off. With ``absorbing=False`` terminal transitions carry ``done = 1`` and
    nothing follows them (the termination-biased convention).

    :meth:`evaluate` returns the negative discount-weighted log-likelihood of the demonstrated actions under the
    inner solver's current policy (``inner.policy.log_prob``), the quantity ML-IRL maximizes; NaN if the inner
    solver exposes no policy. :meth:`loss` has no closed form here and raises.
    """

    def __init__(
        self,
        demonstrations: Trajectories,
        discount: float,
        num_actions: int | None = None,
        terminated: torch.Tensor | None = None,
        final_observations: torch.Tensor | None = None,
        absorbing: bool = True,
        absorbing_indicator: bool = False,
    ) -> None:
        if not 0.0 <= discount < 1.0:
            raise ValidationError(f"discount: expected 0 <= discount < 1, got {discount}")
        demos = demonstrations
        if demos.observations.dim() < 3 or not demos.observations.is_floating_point():
            raise ValidationError(
                f"observations: expected float observations [N, T, obs_dim], got dtype {demos.observations.dtype} "
                f"and shape {list(demos.observations.shape)}"
            )
        n, t = demos.observations.shape[:2]
        num_actions = num_actions if num_actions is not None else demos.num_actions
        terminated = terminated if terminated is not None else getattr(demos, "terminated", None)
        final = final_observations if final_observations is not None else getattr(demos, "final_observations", None)
        terminated = torch.zeros(n, dtype=torch.bool) if terminated is None else torch.as_tensor(terminated).bool()
        check_shape(terminated, "terminated", [n])
        if final is not None:
            final = torch.as_tensor(final)
            check_shape(final, "final_observations", [n, *demos.observations.shape[2:]])
        if absorbing and bool(terminated.any()) and final is None:
            raise ValidationError("final_observations: needed for the absorbing state of terminated episodes")
        if absorbing_indicator and not absorbing:
            raise ValidationError("absorbing_indicator: needs absorbing=True")
        self.discount, self.absorbing, self.num_actions = discount, absorbing, num_actions
        self.absorbing_indicator = absorbing_indicator
        self.demonstrations = demos

        mask = demos.mask
        observations = demos.observations.reshape(n, t, -1)
        steps = torch.arange(t).unsqueeze(0).expand(n, t)
        if num_actions is not None:
            actions = torch.nn.functional.one_hot(demos.actions.long().reshape(n, t), num_actions)
            self.action_dim: int | None = num_actions
        else:
            actions = demos.actions.reshape(n, t, -1)
            self.action_dim = int(actions.shape[-1])
        self.raw_actions = demos.actions[mask]
        last = steps == (demos.lengths - 1).unsqueeze(1)
        next_states = None
        if final is not None:
            flat_final = final.reshape(n, 1, -1).to(observations.dtype)
            shifted = torch.cat([observations[:, 1:], flat_final], dim=1)
            following = torch.where(last.unsqueeze(-1), flat_final.expand_as(observations), shifted)
            next_states = following[mask]
        dones = (last & terminated.unsqueeze(1) & (not absorbing))[mask]
        states = observations[mask]
        if absorbing_indicator:
            states = with_absorbing_indicator(states)
            if next_states is not None:
                next_states = with_absorbing_indicator(next_states)
                into_absorbing = (last & terminated.unsqueeze(1))[mask]
                next_states[into_absorbing] = absorbing_vector(int(into_absorbing.sum()), observations.shape[-1],
                                                               next_states.dtype)
        parts = [Transitions(states, actions[mask].to(observations.dtype), next_states, dones)]
        weights = [discount ** steps[mask].to(torch.float64)]
        self.num_steps = int(mask.sum())
        if absorbing and bool(terminated.any()):
            assert final is not None
            ended = final.reshape(n, -1)[terminated].to(observations.dtype)
            parts.append(absorbing_transitions(ended, self.action_dim, absorbing_indicator))
            weights.append(discount ** demos.lengths[terminated].to(torch.float64) / (1.0 - discount))
        self.transitions = concatenate_transitions(parts) if len(parts) > 1 else parts[0]
        self.weights = torch.cat(weights)

    def expert_reward_expectation(self, inner: object, reward_model: RewardModel) -> torch.Tensor:
        return weighted_reward_mean(reward_model, self.transitions, self.weights)

    def evaluate(self, inner: object) -> torch.Tensor:
        policy = inner.policy if isinstance(inner, PolicyInnerSolver) else None
        if policy is None:
            return torch.tensor(float("nan"))
        with torch.no_grad():
            return self.policy_loss(policy)

    def policy_loss(self, policy: LogProbPolicy) -> torch.Tensor:
        """``f(π) = −Σ_D γ^t log π(a_t|s_t) / Σ_D γ^t`` over the demonstrated steps (the ML-IRL outer objective;
        behaviour cloning), on the autograd tape of whatever ``policy.log_prob`` differentiates (the penalty
        method's upper policy, :class:`~irl_bilevel.hypergradients.PenaltyHypergradient`)."""
        states = self.transitions.states[: self.num_steps]
        if self.absorbing_indicator:
            states = states[:, :-1]
        log_prob = policy.log_prob(states, self.raw_actions)
        weights = self.weights[: self.num_steps].to(log_prob.dtype)
        return -(weights * log_prob).sum() / weights.sum()

