"""Decision-aware reward shaping: the task's own return as the outer objective, shaping reward families, and
a sample-based (policy-gradient) hypergradient of the task return.

Bilevel view (Zheng, Oh, Singh 2018, "On learning intrinsic rewards for policy gradient methods" (LIRPG);
Hu et al. 2020, "Learning to utilize shaping rewards"): the inner learner trains on the shaped reward
``r + F_θ``; the outer loss is ``−J(π_θ)``, the inner policy's return under the task's own (often sparse)
reward ``r``.

Objective. :class:`TaskReturnObjective` computes ``loss(log π) = −J(π) = −Σ_{s,a} d_π(s, a) r(s, a)`` exactly
(:func:`irl_bilevel.tabular.expected_return`), which is differentiable in ``log π``; implicit, unrolled and
finite-difference hypergradients (:mod:`irl_bilevel.hypergradients`) therefore apply unchanged.

Sample-based hypergradient. By the policy-gradient theorem (Sutton et al. 2000) applied to a policy whose
log-probabilities depend on ``θ`` through the inner solution,

    dJ/dθ = Σ_{s,a} w(s, a) · ∂ log π_θ(a|s)/∂θ,    w(s, a) = d_π(s, a) (Q^π_r(s, a) − b(s)),

with ``d_π`` the unnormalized discounted occupancy, ``Q^π_r`` the action values of ``π`` under the *task*
reward and ``b`` any state baseline (it drops out because ``Σ_a π(a|s) ∂ log π(a|s)/∂θ = 0``). This is the
LIRPG chain rule (Zheng et al. 2018, eq. 4–5) with the inner update replaced by the inner solution. The
first factor is estimated by REINFORCE from ``N`` rollouts of ``π`` (:func:`policy_gradient_weights`):
``ŵ(s, a) = (1/N) Σ_i Σ_t γ^t 1[s_t = s, a_t = a] (G_t − b̂(s_t))`` with ``G_t`` the discounted return-to-go and
``b̂(s)`` the mean return-to-go at visits of ``s``; the second factor is exact, by differentiating the
surrogate ``−Σ ŵ log π_θ`` through the inner solution with any tape method (implicit for a converged inner
solver, unrolled for a fixed sweep budget). :func:`exact_policy_gradient_weights` gives ``w`` exactly, as a
test oracle of the derivation.

Families (all through the shared :class:`~irl_bilevel.rewards.RewardModel` interface):

* potential-based: ``PotentialShaping(FixedReward(r), Φ_θ, γ)``; optimal (and soft-optimal) policies are
  those of ``r`` by construction (Ng, Harada, Russell 1999) — no regularizer needed;
* learned weights over candidate signals: :class:`CandidateSignals`, a multi-aspect reward (one aspect per
  candidate ``[S, A]`` table, e.g. :func:`potential_signal` of a hand-made potential) whose aggregator
  (``SimplexWeights``) the outer loop learns, added to the task reward by :class:`AdditiveShaping`;
* free per-(s, a) bonuses: ``AdditiveShaping(FixedReward(r), TabularReward(S, A))`` with an L2 penalty
  (``OuterConfig.l2``); they can change the optimal policy, which :func:`shaping_bias` measures.

Learning speed. An exact inner solver reaches the same soft-optimal policy under any potential shaping, so
"shaping speeds up learning" needs a learner whose progress depends on the reward:
:class:`SweepBudgetSolver` runs exactly ``K`` soft value-iteration sweeps from ``Q = 0``. For a state potential
this equals ``K`` unshaped sweeps started from ``Q_0(s, ·) = Φ(s)``, so a good potential is a good value
initialization. Its exact hypergradient is ``UnrolledHypergradient(K, warm_start=False)``;
:func:`learning_curve` gives the true return after each of ``0..K`` sweeps.

One-step (LIRPG / BiPaRS) hypergradient for sampled inner learners (SB3, LoRA): :func:`task_advantages`,
:func:`policy_gradient_directions` and :func:`one_step_shaping_surrogate` hold the math shared by
``classic_rl.shaping_sb3.OneStepPolicyGradientHypergradient`` and ``llm.agentic.shaping``; each inner loop only
supplies its episodes' task rewards, its policy's log-probabilities of the recorded actions and the shaping
rewards of the same steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from irl_bilevel.feedback import Trajectories
from irl_bilevel.hypergradients import (
    BilevelProblem,
    Hypergradient,
    HypergradientMethod,
    ImplicitHypergradient,
    TapeHypergradientMethod,
    generator_state,
    load_generator_state,
    parameter_gradients,
    require_fixed_point_inner,
)
from irl_bilevel.inner import SoftValueIterationSolver, effective_horizon
from irl_bilevel.objectives import OuterObjective
from irl_bilevel.rewards import (
    Aggregator,
    ExpectedNext,
    RewardModel,
    RewardOutput,
    SimplexWeights,
    TabularReward,
    Transitions,
)
from irl_bilevel.sampling import sample_trajectories
from irl_bilevel.tabular import (
    TabularMDP,
    expected_return,
    soft_bellman_operator,
    soft_state_values,
    soft_value_iteration,
    state_action_occupancy,
)
from irl_bilevel.validation import ValidationError, as_tensor, check_finite, check_shape


def _task_reward(mdp: TabularMDP, reward: torch.Tensor | None, field: str = "true_reward") -> torch.Tensor:
    reward = mdp.true_reward if reward is None else reward
    if reward is None:
        raise ValidationError(f"{field}: the MDP has no true reward; pass the task reward [S] or [S, A]")
    reward = as_tensor(reward, field, mdp.start.dtype)
    if list(reward.shape) not in ([mdp.num_states], [mdp.num_states, mdp.num_actions]):
        raise ValidationError(
            f"{field}: expected shape [{mdp.num_states}] or [{mdp.num_states}, {mdp.num_actions}], "
            f"got {list(reward.shape)}"
        )
    check_finite(reward, field)
    return mdp.broadcast_reward(reward)


# ---------------------------------------------------------------------- the outer objective
class TaskReturnObjective(OuterObjective):
    """``loss(log π) = −J(π)``: minus the exact return of the inner policy under the task reward.

    ``true_reward``: ``[S]`` or ``[S, A]`` (default ``mdp.true_reward``). ``normalize``: multiply by ``1 − γ``
    (discounted) or divide by ``Σ_t γ^t`` (finite horizon), i.e. the per-step average reward.
    """

    def __init__(self, mdp: TabularMDP, true_reward: torch.Tensor | None = None, normalize: bool = False) -> None:
        if not isinstance(normalize, bool):
            raise ValidationError(f"normalize: expected a bool, got {normalize!r}")
        self.mdp = mdp
        self.reward = _task_reward(mdp, true_reward)
        if mdp.is_finite_horizon:
            assert mdp.horizon is not None
            self.scale = 1.0 / sum(mdp.discount**t for t in range(mdp.horizon)) if normalize else 1.0
        else:
            self.scale = 1.0 - mdp.discount if normalize else 1.0

    def task_return(self, log_policy: torch.Tensor) -> torch.Tensor:
        """``J(π)`` (scaled as the loss is), differentiable in ``log_policy``."""
        return self.scale * expected_return(self.mdp, log_policy, self.reward)

    def loss(self, log_policy: torch.Tensor) -> torch.Tensor:
        return -self.task_return(log_policy)

    def evaluate(self, inner: object) -> torch.Tensor:
        if not isinstance(inner, SoftValueIterationSolver):
            raise ValidationError("inner: the tabular task-return objective needs a SoftValueIterationSolver")
        return self.loss(inner.current_log_policy)

    def expert_reward_expectation(self, inner: object, reward_model: RewardModel) -> torch.Tensor:
        raise ValidationError(
            "hypergradient: the task-return objective has no expert data; the MaxEnt gradient does not apply "
            "(use implicit, unrolled, finite differences or PolicyGradientHypergradient)"
        )


class _WeightedLogLikelihood(OuterObjective):
    """The surrogate ``−Σ w · log π`` whose gradient through the inner solution is the sampled hypergradient."""

    def __init__(self, weights: torch.Tensor) -> None:
        self.weights = weights

    def loss(self, log_policy: torch.Tensor) -> torch.Tensor:
        if log_policy.dim() == 2 and self.weights.dim() == 3:
            log_policy = log_policy.expand_as(self.weights)
        used = self.weights != 0  # avoids 0 · (−inf) for deterministic policies
        return -(self.weights[used] * log_policy[used]).sum()

    def evaluate(self, inner: object) -> torch.Tensor:  # pragma: no cover - never black-boxed
        raise ValidationError("inner: the policy-gradient surrogate cannot be evaluated as a black box")



# ---------------------------------------------------------------------- policy-gradient weights
def policy_gradient_weights(
    mdp: TabularMDP, trajectories: Trajectories, reward: torch.Tensor, baseline: bool = True
) -> tuple[torch.Tensor, float]:
    """REINFORCE estimate of ``w(s, a) = d_π(s, a)(Q^π(s, a) − b(s))`` from rollouts of ``π`` from ``ρ0``.

    Returns ``(ŵ, Ĵ)``: ``ŵ`` of shape ``[S, A]`` (discounted) or ``[H, S, A]`` (finite horizon, indexed by
    step), and the sampled return ``Ĵ``. ``baseline``: subtract the mean return-to-go at each state (per step
    for a finite horizon), estimated from the same samples (bias ``O(1/N)``, much less variance).
    """
    table = _task_reward(mdp, reward, "reward")
    observations, actions, mask = trajectories.observations.long(), trajectories.actions.long(), trajectories.mask
    n, length = observations.shape
    dtype = table.dtype
    maskf = mask.to(dtype)
    discounts = mdp.discount ** torch.arange(length, dtype=dtype)
    discounted_rewards = table[observations, actions] * maskf * discounts  # γ^t r_t
    # γ^t G_t = Σ_{t' ≥ t} γ^{t'} r_{t'}: a reversed cumulative sum.
    discounted_to_go = discounted_rewards.flip(1).cumsum(1).flip(1)
    sampled_return = float(discounted_to_go[:, 0].sum()) / n
    finite = mdp.is_finite_horizon
    if finite:
        assert mdp.horizon is not None
        if length > mdp.horizon:
            raise ValidationError(f"trajectories: longer ({length}) than the MDP's horizon ({mdp.horizon})")
        state_index = torch.arange(length).expand(n, length) * mdp.num_states + observations
        num_slots = mdp.horizon * mdp.num_states
    else:
        state_index = observations
        num_slots = mdp.num_states
    terms = discounted_to_go
    if baseline:
        returns_to_go = discounted_to_go / discounts  # G_t
        sums = torch.zeros(num_slots, dtype=dtype).index_add_(0, state_index[mask], returns_to_go[mask])
        counts = torch.zeros(num_slots, dtype=dtype).index_add_(0, state_index[mask], maskf[mask])
        mean = sums / counts.clamp(min=1.0)
        terms = discounted_to_go - discounts * mean[state_index]
    weights = torch.zeros(num_slots * mdp.num_actions, dtype=dtype)
    index = state_index * mdp.num_actions + actions
    weights.index_add_(0, index[mask], terms[mask] / n)
    shape = (num_slots // mdp.num_states, mdp.num_states, mdp.num_actions)
    return weights.view(shape if finite else shape[1:]), sampled_return


def exact_policy_gradient_weights(mdp: TabularMDP, log_policy: torch.Tensor, reward: torch.Tensor) -> torch.Tensor:
    """``w(s, a) = d_π(s, a) (Q^π(s, a) − V^π(s))`` exactly (unnormalized occupancy; the oracle of the sampler)."""
    table = _task_reward(mdp, reward, "reward")
    policy = log_policy.detach().exp()
    occupancy = state_action_occupancy(mdp, log_policy.detach(), normalize=False)
    if mdp.is_finite_horizon:
        assert mdp.horizon is not None
        if policy.dim() == 2:
            policy = policy.expand(mdp.horizon, *policy.shape)
        advantages = []
        next_values = torch.zeros(mdp.num_states, dtype=table.dtype)
        for t in reversed(range(mdp.horizon)):
            q = table + (mdp.discount * mdp.expected_next(next_values) if t < mdp.horizon - 1 else 0.0)
            values = (policy[t] * q).sum(-1)
            advantages.append(q - values.unsqueeze(-1))
            next_values = values
        return occupancy * torch.stack(advantages[::-1])
    policy_transitions = torch.einsum("ij,ijk->ik", policy, mdp.dense_transitions())
    system = torch.eye(mdp.num_states, dtype=table.dtype) - mdp.discount * policy_transitions
    values = torch.linalg.solve(system, (policy * table).sum(-1))
    q = table + mdp.discount * mdp.expected_next(values)
    return occupancy * (q - values.unsqueeze(-1))


class PolicyGradientHypergradient(HypergradientMethod):
    """Sample-based hypergradient of the task return: REINFORCE weights × exact ``∂ log π/∂θ``.

    ``dL/dθ = −Σ ŵ(s, a) ∂ log π_θ(a|s)/∂θ`` (see the module docstring) with ``ŵ`` from ``num_trajectories``
    rollouts of ``length`` steps (default: until ``γ^t < 1e-6``, or the horizon) of the current inner policy;
    ``through`` differentiates the surrogate through the inner solution (default implicit, direct solve; use
    ``UnrolledHypergradient(K, warm_start=False)`` with a :class:`SweepBudgetSolver`). ``exact=True`` uses the
    exact weights instead of samples (a check of the derivation). The reported loss is ``−Ĵ``, the sampled
    return (the exact ``−J`` when ``exact``).
    """

    name = "policy_gradient"

    def __init__(
        self,
        num_trajectories: int = 1000,
        length: int | None = None,
        through: TapeHypergradientMethod | None = None,
        baseline: bool = True,
        exact: bool = False,
        seed: int = 0,
    ) -> None:
        if isinstance(num_trajectories, bool) or not isinstance(num_trajectories, int) or num_trajectories < 1:
            raise ValidationError(f"num_trajectories: expected a positive integer, got {num_trajectories!r}")
        if length is not None and (isinstance(length, bool) or not isinstance(length, int) or length < 1):
            raise ValidationError(f"length: expected a positive integer or None, got {length!r}")
        if through is not None and not isinstance(through, TapeHypergradientMethod):
            raise ValidationError(f"through: expected a TapeHypergradientMethod, got {type(through).__name__}")
        self.num_trajectories = num_trajectories
        self.length = length
        self.through = through if through is not None else ImplicitHypergradient("direct")
        self.baseline = baseline
        self.exact = exact
        self.generator = torch.Generator().manual_seed(seed)

    def compute(self, problem: BilevelProblem) -> Hypergradient:
        objective = problem.objective
        if not isinstance(objective, TaskReturnObjective):
            raise ValidationError(
                f"objective: the policy-gradient hypergradient needs a TaskReturnObjective, got "
                f"{type(objective).__name__}"
            )
        inner = require_fixed_point_inner(problem, self.name)
        mdp = objective.mdp
        with torch.no_grad():
            solution = inner.fixed_point(inner.reward(problem.reward_model))
            log_policy = inner.log_policy(solution).detach()
        if self.exact:
            weights = exact_policy_gradient_weights(mdp, log_policy, objective.reward)
            loss = float(objective.loss(log_policy))
        else:
            length = self.length or mdp.horizon or effective_horizon(mdp.discount, 1e-6)
            samples = sample_trajectories(mdp, log_policy, self.num_trajectories, length, self.generator)
            weights, sampled = policy_gradient_weights(mdp, samples, objective.reward, self.baseline)
            loss = -objective.scale * sampled
        surrogate = BilevelProblem(problem.reward_model, problem.inner, _WeightedLogLikelihood(weights))
        _, output = self.through.differentiable_loss(surrogate)
        gradients = parameter_gradients(objective.scale * output, problem.parameters)
        return Hypergradient(loss, gradients)

    def state_dict(self) -> dict[str, Any]:
        """The generator of the sampled rollouts."""
        return generator_state(self.generator)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_generator_state(self.generator, state)


# ---------------------------------------------------------------------- an inner learner with a budget
class SweepBudgetSolver(SoftValueIterationSolver):
    """Exactly ``sweeps`` soft value-iteration sweeps from ``Q = 0`` on the (shaped) reward, every solve.

    A learner whose speed depends on shaping: its policy ``π_K`` is what "learning for ``K`` iterations"
    produced. Not a fixed point: differentiate it with ``UnrolledHypergradient(sweeps, warm_start=False)``
    (exact) or finite differences, not with implicit differentiation. Discounted MDPs only.
    """

    def __init__(self, mdp: TabularMDP, sweeps: int, temperature: float = 1.0) -> None:
        if isinstance(sweeps, bool) or not isinstance(sweeps, int) or sweeps < 1:
            raise ValidationError(f"sweeps: expected a positive integer, got {sweeps!r}")
        if mdp.is_finite_horizon:
            raise ValidationError("mdp: SweepBudgetSolver needs a discounted MDP (a finite horizon is solved exactly)")
        if not temperature > 0:
            raise ValidationError(f"temperature: expected a positive number, got {temperature!r}")
        super().__init__(mdp, temperature, tol=-1.0, max_iterations=sweeps)
        self.sweeps = sweeps

    def fixed_point(self, reward: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            self.solution = soft_value_iteration(self.mdp, reward.detach(), self.temperature, -1.0, self.sweeps)
        self.total_sweeps += self.solution.iterations
        return self.solution.q


def learning_curve(
    mdp: TabularMDP, reward: torch.Tensor, true_reward: torch.Tensor | None = None, sweeps: int = 50,
    temperature: float = 1.0,
) -> torch.Tensor:
    """``[J_r(π_0), …, J_r(π_sweeps)]``: the task return of the policy after ``k`` soft-VI sweeps from ``Q = 0``
    on ``reward`` (the shaped reward), for ``k = 0..sweeps``. Discounted MDPs."""
    if mdp.is_finite_horizon:
        raise ValidationError("mdp: learning curves are defined for discounted MDPs")
    task = _task_reward(mdp, true_reward)
    shaped = mdp.broadcast_reward(reward.detach())
    q = torch.zeros_like(shaped)
    returns = []
    for k in range(sweeps + 1):
        if k:
            q = soft_bellman_operator(mdp, shaped, q, temperature)
        log_policy = (q - soft_state_values(q, temperature).unsqueeze(-1)) / temperature
        returns.append(expected_return(mdp, log_policy, task))
    return torch.stack(returns)


def shaping_bias(
    mdp: TabularMDP, shaped_reward: torch.Tensor, true_reward: torch.Tensor | None = None, temperature: float = 1.0
) -> dict[str, float]:
    """How much shaping changes what the converged inner learner does, judged by the task reward.

    ``return_gap``: ``J_r(π*_r) − J_r(π*_{r'})`` for the soft-optimal policies (temperature ``temperature``) of
    the task reward ``r`` and the shaped reward ``r'``; ``policy_tv``: the mean over states of the total
    variation between their action distributions, weighted by ``π*_r``'s normalized state occupancy. Both are
    zero for potential-based shaping. (Greedy optimal actions: ``classic_rl.testbeds.optimal_policy``.)
    """
    task = _task_reward(mdp, true_reward)
    shaped = mdp.broadcast_reward(shaped_reward.detach())
    reference = soft_value_iteration(mdp, task, temperature).log_policy
    shaped_policy = soft_value_iteration(mdp, shaped, temperature).log_policy
    occupancy = state_action_occupancy(mdp, reference)
    states = occupancy.sum(-1) if occupancy.dim() == 2 else occupancy.sum((0, -1))
    tv = 0.5 * (reference.exp() - shaped_policy.exp()).abs().sum(-1)
    if tv.dim() == 2:
        tv = tv.mean(0)
    return {
        "return_gap": float(expected_return(mdp, reference, task) - expected_return(mdp, shaped_policy, task)),
        "policy_tv": float((states * tv).sum()),
    }


# ---------------------------------------------------------------------- shaping families
class FixedReward(TabularReward):
    """A fixed reward table ``[S]`` or ``[S, A]`` (a buffer, no parameters): the task reward under shaping."""

    def __init__(self, table: torch.Tensor, name: str = "task") -> None:
        table = as_tensor(table, "table")
        if table.dim() not in (1, 2):
            raise ValidationError(f"table: expected shape [S] or [S, A], got {list(table.shape)}")
        check_finite(table, "table")
        super().__init__(table.shape[0], table.shape[1] if table.dim() == 2 else None, name)
        del self.table
        self.register_buffer("table", table.clone())


class CandidateSignals(RewardModel):
    """Candidate shaping signals as the aspects of one reward: ``aspects[s, a] = (c_1(s, a), …, c_K(s, a))``.

    ``tables``: ``[K, S, A]`` (or ``[K, S]``), e.g. :func:`potential_signal` of hand-made potentials; the total
    is the aggregator of the aspects (default ``SimplexWeights``: weights the outer loop learns). Tabular.
    """

    tables: torch.Tensor

    def __init__(self, tables: torch.Tensor, names: Sequence[str], aggregator: Aggregator | None = None) -> None:
        tables = as_tensor(tables, "tables")
        if tables.dim() not in (2, 3):
            raise ValidationError(f"tables: expected shape [K, S, A] or [K, S], got {list(tables.shape)}")
        if len(names) != tables.shape[0]:
            raise ValidationError(f"names: expected {tables.shape[0]} names (one per candidate), got {len(names)}")
        check_finite(tables, "tables")
        super().__init__(tuple(names), aggregator or SimplexWeights(len(names)), uses_actions=tables.dim() == 3)
        self.register_buffer("tables", tables.clone())

    def aspect_rewards(self, batch: Transitions) -> torch.Tensor:
        state_index = batch.states.argmax(-1)
        if not self.uses_actions:
            return self.tables[:, state_index].T
        assert batch.actions is not None
        return self.tables[:, state_index, batch.actions.argmax(-1)].T

    def reward_table(self, state_inputs: torch.Tensor, num_actions: int, expected_next: ExpectedNext) -> torch.Tensor:
        if self.tables.shape[1] != state_inputs.shape[0]:
            raise ValidationError(
                f"tables: the candidates have {self.tables.shape[1]} states, the MDP {state_inputs.shape[0]}"
            )
        tables = self.tables.to(state_inputs.dtype)
        flat = tables.reshape(tables.shape[0], -1).T  # [S·A, K]: every pair is one row of aspects
        states = state_inputs.repeat_interleave(num_actions, 0) if self.uses_actions else state_inputs
        total = self.aggregator(flat, Transitions(states))
        return total.reshape(tables.shape[1:])


class AdditiveShaping(RewardModel):
    """``r'(s, a) = r(s, a) + scale · F(s, a)`` for a base reward ``r`` and a shaping reward model ``F``.

    The aspects are the base's then the shaping model's; the total adds the base total and the scaled shaping
    total. With ``F = TabularReward(S, A)`` this is the free per-(s, a) bonus family (pair it with an L2
    penalty, ``OuterConfig.l2``); with :class:`CandidateSignals`, learned weights over candidate signals.
    """

    def __init__(self, base: RewardModel, shaping: RewardModel, scale: float = 1.0) -> None:
        names = (*base.aspect_names, *(f"shaping:{n}" for n in shaping.aspect_names))
        super().__init__(names, None, base.uses_actions or shaping.uses_actions)
        self.base = base
        self.shaping = shaping
        self.scale = float(scale)

    def forward(self, batch: Transitions) -> RewardOutput:
        base, shaping = self.base(batch), self.shaping(batch)
        aspects = torch.cat([base.aspects, shaping.aspects], dim=-1)
        return RewardOutput(aspects, base.total + self.scale * shaping.total, self.aspect_names)

    def reward_table(self, state_inputs: torch.Tensor, num_actions: int, expected_next: ExpectedNext) -> torch.Tensor:
        base = self.base.reward_table(state_inputs, num_actions, expected_next)
        shaping = self.shaping.reward_table(state_inputs, num_actions, expected_next)
        if base.dim() != shaping.dim():
            base = base.unsqueeze(-1).expand(-1, num_actions) if base.dim() == 1 else base
            shaping = shaping.unsqueeze(-1).expand(-1, num_actions) if shaping.dim() == 1 else shaping
        return base + self.scale * shaping


def potential_signal(mdp: TabularMDP, potential: torch.Tensor) -> torch.Tensor:
    """The shaping term ``F(s, a) = γ Σ_s' P[s, a, s'] Φ(s') − Φ(s)`` of a state potential ``Φ [S]``: ``[S, A]``."""
    potential = as_tensor(potential, "potential", mdp.start.dtype)
    check_shape(potential, "potential", [mdp.num_states])
    check_finite(potential, "potential")
    return mdp.discount * mdp.expected_next(potential) - potential.unsqueeze(-1)


def tabular_potential(num_states: int) -> torch.nn.Linear:
    """A free potential ``Φ_θ(s) = θ_s`` on one-hot state inputs (zero at the start) for ``PotentialShaping``."""
    if isinstance(num_states, bool) or not isinstance(num_states, int) or num_states < 1:
        raise ValidationError(f"num_states: expected a positive integer, got {num_states!r}")
    potential = torch.nn.Linear(num_states, 1, bias=False)
    torch.nn.init.zeros_(potential.weight)
    return potential



# ---------------------------------------------------------------------- one-step (LIRPG) hypergradient pieces
# Inner-solver-independent math of the one-step policy-gradient shaping hypergradient (Zheng, Oh, Singh 2018,
# LIRPG eq. 4–5; Hu et al. 2020, BiPaRS). Model the inner update as one policy-gradient step on the shaped reward,
# ``η' = η + α Σ_t ∇_η log π_η(a_t|s_t) (Â^r_t + Â^F_t(θ))``; then
#
#     dJ(η')/dθ ≈ α Σ_t c_t ∂Â^F_t(θ)/∂θ,   c_t = ∇_η log π_η(a_t|s_t) · g,
#     g = ∇_η J ≈ (1/N) Σ_t ∇_η log π_η(a_t|s_t) Â^r_t                       (REINFORCE, Williams 1992),
#
# with ``N`` the number of episodes, ``Â_t = G_t − b_t`` the discounted return-to-go inside an episode minus the
# mean return-to-go at the same time index over the episodes. Each inner loop supplies the episodes' per-step task
# rewards, its policy's ``log π(a_t|s_t)`` of the recorded actions (differentiable in η) and the shaping rewards
# ``F_θ`` of the same steps (differentiable in θ); these functions do the rest.
def returns_to_go(rewards: torch.Tensor, discount: float) -> torch.Tensor:
    """``G_t = Σ_{t' ≥ t} γ^{t' − t} r_{t'}`` of one episode: ``[T] → [T]`` (differentiable in ``rewards``)."""
    discounts = discount ** torch.arange(len(rewards), dtype=rewards.dtype)
    return (rewards * discounts).flip(0).cumsum(0).flip(0) / discounts


def time_baseline(returns: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """``G_t − b_t`` per episode, ``b_t`` the mean over the episodes still running at time index ``t``.

    ``returns``: one ``[T_i]`` tensor per episode (lengths may differ); returns the centred tensors, same shapes.
    """
    if len(returns) == 0:
        raise ValidationError("returns: expected at least one episode")
    length = max(len(g) for g in returns)
    sums = torch.zeros(length, dtype=returns[0].dtype)
    counts = torch.zeros(length, dtype=returns[0].dtype)
    for g in returns:
        sums = sums + torch.nn.functional.pad(g, (0, length - len(g)))
        counts[: len(g)] += 1
    mean = sums / counts
    return [g - mean[: len(g)] for g in returns]


def task_advantages(task_rewards: Sequence[torch.Tensor], discount: float) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``(Â^r [N_steps], G^r per episode)``: the task reward's centred returns-to-go, episodes concatenated.

    ``task_rewards``: one ``[T_i]`` tensor per episode. When every episode has the same return (no success yet in
    a sparse task) the centred returns are rounding residues (~1e-16), and Adam's normalized outer step would turn
    them into full-size moves: entries with ``|Â| ≤ 1e-9 · max(max |G|, 1)`` are set to exact zeros.
    """
    returns = [returns_to_go(r, discount) for r in task_rewards]
    advantages = torch.cat(time_baseline(returns))
    scale = max(float(torch.cat(returns).abs().max()), 1.0)
    advantages = torch.where(advantages.abs() <= 1e-9 * scale, torch.zeros_like(advantages), advantages)
    return advantages, returns


def policy_gradient_directions(
    log_prob: torch.Tensor, parameters: Sequence[torch.Tensor], advantages: torch.Tensor, num_episodes: int
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``(c [N_steps], g)``: ``g = (1/N) Σ_t ∇_η log π(a_t|s_t) Â^r_t`` and ``c_t = ∇_η log π(a_t|s_t) · g``.

    ``log_prob [N_steps]``: the policy's log-probabilities of the recorded actions, differentiable in the policy
    parameters ``parameters`` (η); ``advantages [N_steps]``: :func:`task_advantages`. ``c`` is obtained exactly
    by double backpropagation: with a dummy ``v [N_steps]``, ``c = ∂/∂v (∇_η (v · log π) · g)`` (one extra
    backward pass instead of ``N_steps`` per-step gradients). Both are detached; ``c`` has ``log_prob``'s dtype.
    """
    if log_prob.dim() != 1 or advantages.shape != log_prob.shape:
        raise ValidationError(f"advantages: expected shape {list(log_prob.shape)} (one per log-probability, "
                              f"log_prob [N]), got {list(advantages.shape)}")
    if num_episodes < 1:
        raise ValidationError(f"num_episodes: expected a positive integer, got {num_episodes}")
    parameters = list(parameters)
    n = float(num_episodes)
    raw = torch.autograd.grad((log_prob * advantages.to(log_prob.dtype)).sum() / n, parameters, retain_graph=True,
                              allow_unused=True)
    g = [torch.zeros_like(p) if x is None else x.detach() for p, x in zip(parameters, raw)]
    v = torch.zeros_like(log_prob, requires_grad=True)
    grads = torch.autograd.grad((v * log_prob).sum(), parameters, create_graph=True, allow_unused=True)
    directional = sum((x * y).sum() for x, y in zip(grads, g) if x is not None)
    if not isinstance(directional, torch.Tensor) or not directional.requires_grad:
        return torch.zeros_like(log_prob).detach(), g  # log π does not depend on the parameters: c = 0
    (c,) = torch.autograd.grad(directional, v)
    return c.detach(), g


def one_step_shaping_surrogate(
    directions: torch.Tensor, shaping_rewards: Sequence[torch.Tensor], discount: float, num_episodes: int,
    steps: Sequence[int] | None = None,
) -> torch.Tensor:
    """``−(1/N) Σ_t c_t Â^F_t(θ)``: its θ-gradient is the one-step estimate of ``dL/dθ = −dJ/dθ``.

    ``directions``: ``c [N_steps]`` (:func:`policy_gradient_directions`); ``shaping_rewards``: one ``[T_i']``
    tensor per episode, differentiable in θ; ``steps``: the number ``T_i ≤ T_i'`` of its entries that are steps
    with a recorded action (default all). Extra trailing entries (e.g. an absorbing tail ``γ^0 F_abs/(1 − γ)``
    after a termination) enter the returns-to-go but carry no ``c``. ``Â^F`` is the time-baselined shaping
    return-to-go of those steps.
    """
    steps = [len(r) for r in shaping_rewards] if steps is None else list(steps)
    if len(steps) != len(shaping_rewards) or any(not 0 < s <= len(r) for s, r in zip(steps, shaping_rewards)):
        raise ValidationError(f"steps: expected one count in [1, T_i] per episode, got {steps}")
    if directions.shape != (sum(steps),):
        raise ValidationError(f"directions: expected shape [{sum(steps)}] (one per step), got "
                              f"{list(directions.shape)}")
    returns = [returns_to_go(r, discount)[:s] for r, s in zip(shaping_rewards, steps)]
    shaping_advantages = torch.cat(time_baseline(returns))
    return -(directions.to(shaping_advantages.dtype) * shaping_advantages).sum() / float(num_episodes)
