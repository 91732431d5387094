"""Hypergradient methods: how ``dL/dθ`` of the outer loss through the inner solution is obtained.

The bilevel problem is ``min_θ L(π*(θ))`` with ``π*(θ)`` the inner solver's policy for reward ``r_θ``.
Each method below is one strategy behind ``HypergradientMethod.compute(problem)``:

* ``MaxEntHypergradient`` (Ziebart 2010; ML-IRL, Zeng et al. 2022): for the MaxEnt demonstration
  likelihood, ``∇_θ L = E_{d_π}[∇_θ r_θ] − E_{d_E}[∇_θ r_θ]`` (learner minus expert expectations, for the
  loss ``L = −log-likelihood``). Exact occupancies or sampled rollouts of the learner. Needs no
  differentiation through the inner solver at all.
* ``ImplicitHypergradient``: the inner solution is the root of ``F(x, r) = x − T(x, r)``, so
  ``dx*/dr = (I − ∂_x T)⁻¹ ∂_r T`` (implicit function theorem). Done with ``torchopt.diff.implicit.
  custom_root``. On the soft-Bellman fixed point ``∂_x T = γ P Π_π`` is *not* symmetric, so the linear
  solver is normal-equation CG, a Neumann series (``‖γ P Π_π‖_∞ = γ < 1``) or a direct solve — never
  plain CG.
* ``UnrolledHypergradient``: ``K`` inner steps, each an SGD step (lr 1) on the regression loss
  ``½‖x − T(x_k, r)‖²`` — which is exactly one Bellman backup — taken by torchopt's differentiable
  functional optimizer or by higher's differentiable optimizer, then backpropagation through all ``K``.
  Memory grows with ``K``; the bias falls at least as fast as ``γ^K`` (the soft-Bellman map contracts
  at rate γ; measured rates are faster, ``results/hypergradient_accuracy.json``).
* ``PenaltyHypergradient`` (Shen, Yang, Chen, ICML 2024): the lower level becomes the value-gap penalty
  ``λ g(θ, π)``, ``g = max_π' V_θ(π') − V_θ(π) ≥ 0``, and an upper policy ``π`` is optimized jointly with ``θ``.
  Its ``θ``-gradient is first order (Danskin): ``λ (E_{d_π*}[∇r_θ] − E_{d_π}[∇r_θ])``; no Hessian, no
  differentiation through the inner solver. Exact on tabular inner solvers; sample-based (a copy of the policy
  network and its rollouts) on sampled ones that implement :class:`SampledPenaltyInner` (the SB3 inner loop).
* ``ZeroOrderHypergradient``: Gaussian-smoothing estimates of the gradient of the black-box map
  ``θ ↦ L`` (``torchopt.diff.zero_order``), for inner loops that are not differentiable.
* ``FiniteDifferenceHypergradient``: central differences, the reference the others are tested against.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import higher
import torch
import torchopt

from irl_bilevel.inner import FixedPointInnerSolver, InnerSolver, SoftValueIterationSolver
from irl_bilevel.objectives import OuterObjective
from irl_bilevel.rewards import RewardModel
from irl_bilevel.tabular import state_action_occupancy
from irl_bilevel.validation import ValidationError, build_named


@dataclass
class BilevelProblem:
    """The three parts every hypergradient method works on."""

    reward_model: RewardModel
    inner: InnerSolver
    objective: OuterObjective

    @property
    def parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.reward_model.parameters() if p.requires_grad]

    def black_box_loss(self) -> torch.Tensor:
        """Re-solve the inner problem for the current parameters and evaluate the outer loss."""
        with torch.no_grad():
            self.inner.solve(self.reward_model)
            return self.objective.evaluate(self.inner)


@dataclass
class Hypergradient:
    """The outer loss at the current parameters and its gradient, one tensor per parameter."""

    loss: float
    gradients: list[torch.Tensor]

    def flat(self) -> torch.Tensor:
        return torch.cat([g.reshape(-1) for g in self.gradients])


class HypergradientMethod(ABC):
    """One way of computing ``dL/dθ``; leaves the inner solver warm for the next outer step.

    Every hook the bilevel solver calls is declared here; all but :meth:`compute` have defaults.

    ``fresh_each_step``: every ``compute`` advances a stochastic inner learner (e.g. trains an RL agent for a
    budget), so the bilevel solver must compute once per outer step even when ``θ`` did not move, rather than
    reuse the evaluation it holds for equal parameters. :meth:`begin_outer_step` runs once at the start of every
    outer step. :meth:`state_dict` / :meth:`load_state_dict`: what the method carries from step to step that a
    resumed run needs (random generators, an upper-level policy), saved in the solver's checkpoint as tensors and
    plain containers. :meth:`close` releases what the method holds (e.g. environments).
    """

    name: str = "base"
    fresh_each_step: bool = False

    @abstractmethod
    def compute(self, problem: BilevelProblem) -> Hypergradient: ...

    def begin_outer_step(self, problem: BilevelProblem) -> bool:
        """Called by the solver before each outer step; returns whether it changed what :meth:`compute` returns at
        given ``θ`` (the solver then drops the evaluation it holds). Default: nothing, False."""
        return False

    def state_dict(self) -> dict[str, Any]:
        """The method's run state for a checkpoint. Default: none (a method that carries nothing across steps)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        return None  # an optional hook: nothing to restore by default

    def close(self) -> None:
        """Release held resources. Default: none."""
        return None  # an optional hook: nothing held by default


def generator_state(generator: torch.Generator) -> dict[str, Any]:
    """``{"generator": state}``: the state dict of a method whose only run state is its random generator."""
    return {"generator": generator.get_state()}


def load_generator_state(generator: torch.Generator, state: dict[str, Any]) -> None:
    """Restore :func:`generator_state` into ``generator`` (nothing if the state holds none)."""
    if "generator" in state:
        generator.set_state(state["generator"])


class TapeHypergradientMethod(HypergradientMethod):
    """A method that builds an autograd tape from ``θ`` to a scalar whose gradient is the hypergradient.

    ``differentiable_loss`` returns ``(reported loss, tape output)``; ``compute`` backpropagates the output.
    Split this way, the tape can be inspected (e.g. its memory measured) apart from the backward pass.
    """

    @abstractmethod
    def differentiable_loss(self, problem: BilevelProblem) -> tuple[float, torch.Tensor]: ...

    def compute(self, problem: BilevelProblem) -> Hypergradient:
        loss, output = self.differentiable_loss(problem)
        return Hypergradient(loss, parameter_gradients(output, problem.parameters))


def require_fixed_point_inner(problem: BilevelProblem, method: str) -> FixedPointInnerSolver:
    """``problem.inner`` if it exposes a differentiable fixed point, else a ValidationError naming ``method``."""
    if not isinstance(problem.inner, FixedPointInnerSolver):
        raise ValidationError(
            f"hypergradient: {method} needs an inner solver with a differentiable fixed point "
            f"(got {type(problem.inner).__name__}); use 'maxent', 'zeroth_order' or 'finite_differences'"
        )
    return problem.inner


def parameter_gradients(loss: torch.Tensor, parameters: list[torch.nn.Parameter]) -> list[torch.Tensor]:
    """``∂loss/∂p`` for each of ``parameters`` (same shapes), zeros for a parameter the loss does not use."""
    grads = torch.autograd.grad(loss, parameters, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(parameters, grads)]


class MaxEntHypergradient(TapeHypergradientMethod):
    """Learner minus expert expectation of ``∇_θ r_θ`` (exact occupancies, or ``num_samples`` rollouts).

    This is the exact gradient of ``L(θ) = log Z_θ − D(θ)`` with ``log Z_θ = (1 − γ) ρ0ᵀ V_θ`` (Ziebart 2010) and
    ``D`` the objective's data term (:meth:`~irl_bilevel.objectives.OuterObjective.expert_reward_expectation`),
    which the method reports as the loss where the inner solver knows ``log Z`` (``InnerSolver.log_partition``),
    else the objective's :meth:`~irl_bilevel.objectives.OuterObjective.evaluate`. For
    :class:`~irl_bilevel.objectives.MaxEntDemonstrationLoss` it is the negative log-likelihood of the
    demonstrations (times the temperature), for exact and estimated occupancies alike.
    """

    name = "maxent"

    def __init__(self, num_samples: int | None = None, seed: int = 0) -> None:
        self.num_samples = num_samples
        self.generator = torch.Generator().manual_seed(seed)

    def differentiable_loss(self, problem: BilevelProblem) -> tuple[float, torch.Tensor]:
        model, inner = problem.reward_model, problem.inner
        with torch.no_grad():
            inner.solve(model)
        expert = problem.objective.expert_reward_expectation(inner, model)
        log_partition = inner.log_partition()
        if log_partition is not None:
            loss = log_partition - float(expert.detach())
        else:
            with torch.no_grad():
                loss = float(problem.objective.evaluate(inner))
        samples = self.num_samples
        learner = inner.learner_reward_expectation(model, samples, self.generator if samples else None)
        return loss, learner - expert

    def state_dict(self) -> dict[str, Any]:
        """The generator of the sampled learner rollouts."""
        return generator_state(self.generator)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_generator_state(self.generator, state)


LINEAR_SOLVERS = ("normal_cg", "neumann", "direct")


class ImplicitHypergradient(TapeHypergradientMethod):
    """Implicit differentiation of ``x* = T(x*, r_θ)`` with ``torchopt.diff.implicit.custom_root``.

    ``linear_solver``: ``normal_cg`` (CG on ``AᵀA``), ``neumann`` (``Σ_k (∂_x T)^k``, ``maxiter`` terms) or
    ``direct`` (materializes ``A``; small problems only).
    """

    name = "implicit"

    def __init__(
        self, linear_solver: str = "normal_cg", tol: float = 1e-12, maxiter: int | None = None
    ) -> None:
        if linear_solver not in LINEAR_SOLVERS:
            raise ValidationError(f"linear_solver: expected one of {LINEAR_SOLVERS}, got {linear_solver!r}")
        self.linear_solver = linear_solver
        self.tol = tol
        self.maxiter = maxiter

    def _solve(self, size: int) -> Callable:
        # torchopt's default CG maxiter is the system size, which is right; set it explicitly because
        # torchopt derives it from the *first* argument's size (0 for a scalar; an upstream bug).
        if self.linear_solver == "normal_cg":
            return torchopt.linear_solve.solve_normal_cg(
                rtol=self.tol, atol=0.0, maxiter=self.maxiter or 10 * size
            )
        if self.linear_solver == "neumann":
            return torchopt.linear_solve.solve_inv(ns=True, maxiter=self.maxiter or 2000)
        return torchopt.linear_solve.solve_inv(ns=False)

    def differentiable_loss(self, problem: BilevelProblem) -> tuple[float, torch.Tensor]:
        inner = require_fixed_point_inner(problem, self.name)
        reward = inner.reward(problem.reward_model)
        solution = inner.fixed_point(reward).detach()

        def optimality(x: torch.Tensor, reward: torch.Tensor) -> torch.Tensor:
            return x - inner.operator(x, reward)

        @torchopt.diff.implicit.custom_root(optimality, argnums=1, solve=self._solve(solution.numel()))
        def root(x: torch.Tensor, reward: torch.Tensor) -> torch.Tensor:
            return solution

        differentiable_solution = root(solution, reward)
        assert isinstance(differentiable_solution, torch.Tensor)
        loss = problem.objective.loss(inner.log_policy(differentiable_solution))
        return float(loss.detach()), loss


class UnrolledHypergradient(TapeHypergradientMethod):
    """Backpropagation through ``steps`` inner updates taken by a differentiable optimizer.

    ``backend``: ``torchopt`` (functional ``torchopt.sgd``) or ``higher`` (``higher.get_diff_optim``).
    ``warm_start``: start from the detached inner solution (truncated backpropagation, exact forward value);
    otherwise from zeros. ``lr = 1`` makes each update one exact Bellman backup; ``momentum`` > 0 gives
    an accelerated variant.
    """

    name = "unrolled"

    def __init__(
        self,
        steps: int,
        backend: str = "torchopt",
        lr: float = 1.0,
        momentum: float = 0.0,
        warm_start: bool = True,
    ) -> None:
        if steps < 1:
            raise ValidationError(f"steps: expected at least 1 unrolled step, got {steps}")
        if backend not in ("torchopt", "higher"):
            raise ValidationError(f"backend: expected 'torchopt' or 'higher', got {backend!r}")
        self.steps = steps
        self.backend = backend
        self.lr = lr
        self.momentum = momentum
        self.warm_start = warm_start
        self.name = f"unrolled_{backend}"

    def differentiable_loss(self, problem: BilevelProblem) -> tuple[float, torch.Tensor]:
        inner = require_fixed_point_inner(problem, self.name)
        reward = inner.reward(problem.reward_model)
        start = inner.fixed_point(reward).detach()
        if not self.warm_start:
            start = torch.zeros_like(start)

        def regression_loss(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return 0.5 * (x - target).pow(2).sum()

        x = start.clone().requires_grad_(True)
        if self.backend == "torchopt":
            optimizer = torchopt.sgd(lr=self.lr, momentum=self.momentum)
            state = optimizer.init(x)
            for _ in range(self.steps):
                # A fresh alias of x: the target T(x_k) depends on x_k but not on the alias, so the
                # gradient of the regression loss is x_k − T(x_k) while both stay on the tape.
                alias = x.view_as(x)
                (grad,) = torch.autograd.grad(
                    regression_loss(alias, inner.operator(x, reward)), alias, create_graph=True
                )
                updates, state = optimizer.update(grad, state, inplace=False)
                x = torchopt.apply_updates(alias, updates, inplace=False)
        else:
            holder = torch.zeros_like(start, requires_grad=True)
            diffopt = higher.get_diff_optim(
                torch.optim.SGD([holder], lr=self.lr, momentum=self.momentum),
                [holder],
                track_higher_grads=True,
            )
            for _ in range(self.steps):
                alias = x.view_as(x)
                (x,) = diffopt.step(regression_loss(alias, inner.operator(x, reward)), params=[alias])
        loss = problem.objective.loss(inner.log_policy(x))
        return float(loss.detach()), loss


@contextmanager
def _parameters_set_to(parameters: list[torch.nn.Parameter], values: list[torch.Tensor]) -> Iterator[None]:
    saved = [p.detach().clone() for p in parameters]
    with torch.no_grad():
        for p, v in zip(parameters, values):
            p.copy_(v)
    try:
        yield
    finally:
        with torch.no_grad():
            for p, v in zip(parameters, saved):
                p.copy_(v)


class _BlackBox:
    """Evaluates ``θ ↦ L`` by re-solving the inner problem, leaving the inner solver as it found it."""

    def __init__(self, problem: BilevelProblem) -> None:
        self.problem = problem
        self.saved_inner = problem.inner.state_dict()

    def __call__(self, values: list[torch.Tensor]) -> torch.Tensor:
        self.problem.inner.load_state_dict(self.saved_inner)
        with _parameters_set_to(self.problem.parameters, values):
            return self.problem.black_box_loss()

    def restore(self) -> float:
        self.problem.inner.load_state_dict(self.saved_inner)
        return float(self.problem.black_box_loss())


class FiniteDifferenceHypergradient(HypergradientMethod):
    """Central differences ``(L(θ + εe_i) − L(θ − εe_i)) / 2ε`` for every parameter entry (``2P`` solves)."""

    name = "finite_differences"

    def __init__(self, epsilon: float = 1e-5) -> None:
        self.epsilon = epsilon

    def compute(self, problem: BilevelProblem) -> Hypergradient:
        with torch.no_grad():
            problem.inner.solve(problem.reward_model)
        black_box = _BlackBox(problem)
        base = [p.detach().clone() for p in problem.parameters]
        gradients = []
        for index, value in enumerate(base):
            grad = torch.zeros_like(value)
            for entry in range(value.numel()):
                losses = []
                for sign in (1.0, -1.0):
                    shifted = [b.clone() for b in base]
                    shifted[index].view(-1)[entry] += sign * self.epsilon
                    losses.append(black_box(shifted))
                grad.view(-1)[entry] = (losses[0] - losses[1]) / (2 * self.epsilon)
            gradients.append(grad)
        return Hypergradient(black_box.restore(), gradients)


class ZeroOrderHypergradient(HypergradientMethod):
    """Gaussian-smoothing gradient estimate (``torchopt.diff.zero_order``) of the black-box outer loss.

    Estimates ``∇ E_u[L(θ + σu)]``, ``u ~ N(0, I)``: biased by ``O(σ²)``, variance falling as
    ``1/num_samples``. ``method``: ``naive``, ``forward`` or ``antithetic``.
    """

    name = "zeroth_order"

    def __init__(
        self,
        num_samples: int = 64,
        sigma: float = 1e-3,
        method: Literal["naive", "forward", "antithetic"] = "antithetic",
        seed: int = 0,
    ) -> None:
        self.num_samples, self.sigma, self.method = num_samples, sigma, method
        self.generator = torch.Generator().manual_seed(seed)

    def compute(self, problem: BilevelProblem) -> Hypergradient:
        with torch.no_grad():
            problem.inner.solve(problem.reward_model)
        black_box = _BlackBox(problem)
        parameters = problem.parameters
        dtype = parameters[0].dtype

        def sample(sample_shape: torch.Size) -> torch.Tensor:
            return torch.randn(sample_shape, generator=self.generator, dtype=dtype)

        @torchopt.diff.zero_order.zero_order(
            sample,
            method=self.method,
            argnums=tuple(range(len(parameters))),
            num_samples=self.num_samples,
            sigma=self.sigma,
        )
        def loss_of(*values: torch.Tensor) -> torch.Tensor:
            return black_box(list(values))

        leaves = [p.detach().clone().requires_grad_(True) for p in parameters]
        loss = loss_of(*leaves)
        gradients = list(torch.autograd.grad(loss, leaves))
        return Hypergradient(black_box.restore(), gradients)

    def state_dict(self) -> dict[str, Any]:
        """The generator of the smoothing directions."""
        return generator_state(self.generator)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_generator_state(self.generator, state)


class UpperPolicy(Protocol):
    """The penalty method's upper policy ``π`` on a sampled inner loop: a trainable policy with its own rollouts.

    It holds one batch of on-policy rollouts (the latest :meth:`rollout`); trajectories do not depend on ``θ``, so
    a batch stays a valid sample of ``π`` after ``θ`` moves (rewards are recomputed for the current ``θ``).
    """

    def parameters(self) -> Iterator[torch.nn.Parameter]:
        """The policy's trainable parameters ``φ``."""
        ...

    def log_prob(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``log π_φ(a | s)`` ``[B]``, differentiable in ``φ`` (for the demonstration likelihood ``f``)."""
        ...

    def rollout(self) -> None:
        """Replace the held batch by fresh on-policy rollouts of ``π_φ`` (its env steps are counted)."""
        ...

    def value_surrogate(self, reward_model: RewardModel, entropy: float) -> torch.Tensor:
        """A scalar whose ``φ``-gradient estimates ``∇_φ V_θ(π_φ)`` on the held batch (no gradient in ``θ``)."""
        ...

    def soft_value(self, reward_model: RewardModel, entropy: float) -> float:
        """``V̂_θ(π) = Σ w (r_θ − α log π) / Σ w`` on the held batch."""
        ...

    def reward_expectation(self, reward_model: RewardModel) -> torch.Tensor:
        """``E_{d_π}[r_θ]`` on the held batch, differentiable in ``θ``."""
        ...

    def close(self) -> None:
        """Release the policy's own environments."""
        ...


@runtime_checkable
class SampledPenaltyInner(InnerSolver, Protocol):
    """A sampled inner solver that the penalty method can run on (e.g. ``classic_rl.sb3_inner.SB3InnerSolver``)."""

    def make_upper_policy(self, rollout_steps: int, seed: int = 0) -> UpperPolicy:
        """A trainable copy of the current inner policy ``π*`` (same architecture and weights), rolling out
        ``rollout_steps`` env steps per :meth:`UpperPolicy.rollout`, counted in the solver's env steps."""
        ...

    def learner_soft_value(self, reward_model: RewardModel, entropy: float) -> float:
        """``V̂_θ(π*)`` on the inner solver's recorded learner transitions (same estimator as ``soft_value``)."""
        ...


class PenaltyHypergradient(HypergradientMethod):
    """Penalty-based first-order bilevel gradient (Shen, Yang, Chen, ICML 2024, "Principled penalty-based
    methods for bilevel reinforcement learning and RLHF").

    The bilevel problem ``min_θ f(π*(θ))`` is relaxed to ``min_{θ, π} f(π) + λ g(θ, π)`` with the value gap
    ``g(θ, π) = V*_θ − V_θ(π)`` of the entropy-regularized MDP: ``V_θ(π) = E_{d_π}[r_θ(s, a) − α log π(a|s)]``
    (normalized occupancy ``d_π``) and ``V*_θ = max_π' V_θ(π')``, attained by the inner solver's ``π*``. ``g = 0``
    exactly when ``π = π*``, so as ``λ`` grows the penalized minimizers approach the bilevel ones. Each
    :meth:`compute`:

    1. solves the inner problem (``π*`` for the current ``θ``);
    2. takes ``upper_steps`` Adam steps (lr ``upper_lr``) on the upper policy ``π``, minimizing ``f(π) − λ V_θ(π)``
       at fixed ``θ``; the upper policy is initialized at ``π*`` on the first call and kept across calls;
    3. returns ``f(π) + λ g(θ, π)`` and its ``θ``-gradient ``λ (E_{d_π*}[∇θ r_θ] − E_{d_π}[∇θ r_θ])`` (Danskin's
       theorem for ``∇θ V*_θ``; ``f`` does not depend on ``θ`` directly).

    For ``λ → 0`` the upper policy tends to the expert's (behaviour cloning on ``f``) and the gradient to
    ``λ`` times the MaxEnt one. The inner solver's type picks the estimator; the method and its options are one:

    * tabular (``SoftValueIterationSolver``): ``π`` is a logits table ``[S, A]`` (``[H, S, A]`` for finite
      horizons); ``f = objective.loss(log π)`` and ``V_θ(π)`` use exact occupancies (``α = 1``, the solver's soft
      optimum; ``upper_rollout_steps`` and ``upper_entropy`` are unused);
    * sampled (:class:`SampledPenaltyInner`, e.g. the SB3 inner loop): ``π = π_φ`` is a copy of the inner policy
      network (``inner.make_upper_policy``). ``f(π_φ) = −Σ_D w log π_φ(a|s) / Σ_D w`` is the demonstrations'
      discount-weighted negative log-likelihood (``objective.policy_loss``, the ML-IRL outer objective; behaviour
      cloning), and ``V_θ(π_φ)`` is estimated on ``upper_rollout_steps`` fresh env steps of ``π_φ`` per Adam step
      by the REINFORCE surrogate ``Σ_t γ^t log π_φ(a_t|s_t) · sg(G_t − b) / Σ w`` with the soft return-to-go
      ``G_t = Σ_{k≥t} γ^{k−t} (r_θ(s_k, a_k) − α log π_φ(a_k|s_k))`` (``α = upper_entropy``), ``b`` the batch mean
      and ``Σ w`` the occupancy weights' total, so its ``φ``-gradient is an unbiased estimate of ``∇_φ V_θ`` up to
      the rollout window's cut (the policy-gradient theorem; each step's batch is on-policy). Then
      ``E_{d_π*}[∇θ r_θ]`` is the inner solver's learner expectation (its recorded transitions, as in ``maxent``)
      and ``E_{d_π}[∇θ r_θ]`` the same estimator on the upper policy's latest rollouts. A compute costs
      ``upper_steps · upper_rollout_steps`` env steps beyond the inner loop's (plus one batch at the first call),
      counted in the inner solver's env steps. ``V*_θ`` in the reported loss is ``V̂_θ(π*)`` on the learner's
      recorded transitions, so the reported gap is a noisy estimate and may be negative. Set ``upper_entropy`` to
      the entropy weight the inner learner optimizes (SB3's ``ent_coef``, 0 by default; with a normalized reward,
      relative to its scale), so that ``π*`` maximizes the same ``V_θ``.

    Resume: on tabular inner solvers the upper logits and their Adam state are the method's :meth:`state_dict`
    (a resumed run continues exactly). The sampled upper policy is not saved (its held rollouts are env state): a
    resumed sampled run re-initializes it at ``π*``.
    """

    name = "penalty"

    def __init__(self, penalty: float = 1.0, upper_steps: int = 50, upper_lr: float = 0.1,
                 upper_rollout_steps: int = 512, upper_entropy: float = 0.0, seed: int = 0) -> None:
        if not penalty > 0:
            raise ValidationError(f"penalty: expected λ > 0, got {penalty}")
        if isinstance(upper_steps, bool) or int(upper_steps) != upper_steps or upper_steps < 1:
            raise ValidationError(f"upper_steps: expected an integer of at least 1, got {upper_steps}")
        if not upper_lr > 0:
            raise ValidationError(f"upper_lr: expected a positive learning rate, got {upper_lr}")
        if isinstance(upper_rollout_steps, bool) or int(upper_rollout_steps) != upper_rollout_steps \
                or upper_rollout_steps < 1:
            raise ValidationError(f"upper_rollout_steps: expected an integer of at least 1, got {upper_rollout_steps}")
        if not upper_entropy >= 0:
            raise ValidationError(f"upper_entropy: expected α >= 0, got {upper_entropy}")
        self.penalty, self.upper_steps, self.upper_lr = float(penalty), int(upper_steps), float(upper_lr)
        self.upper_rollout_steps, self.upper_entropy = int(upper_rollout_steps), float(upper_entropy)
        self.seed = int(seed)
        self.upper_logits: torch.Tensor | None = None
        self.upper: UpperPolicy | None = None
        self._optimizer: torch.optim.Optimizer | None = None

    def upper_log_policy(self) -> torch.Tensor:
        if self.upper_logits is None:
            raise RuntimeError("compute() must be called before the upper policy is read")
        return torch.log_softmax(self.upper_logits.detach(), dim=-1)

    def compute(self, problem: BilevelProblem) -> Hypergradient:
        inner = problem.inner
        if isinstance(inner, SoftValueIterationSolver):
            return self._compute_tabular(problem, inner)
        if isinstance(inner, SampledPenaltyInner):
            return self._compute_sampled(problem, inner)
        raise ValidationError(f"hypergradient: penalty needs a tabular SoftValueIterationSolver (exact occupancies) or "
                              f"a sampled inner solver with make_upper_policy (SB3), got {type(inner).__name__}")

    def state_dict(self) -> dict[str, Any]:
        """Tabular: the upper logits and their optimizer's state; nothing before the first compute or when sampled."""
        if self.upper_logits is None or self._optimizer is None:
            return {}
        return {"upper_logits": self.upper_logits.detach().clone(), "optimizer": self._optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "upper_logits" in state:
            self.upper_logits = state["upper_logits"].clone().requires_grad_(True)
            self._optimizer = torch.optim.Adam([self.upper_logits], lr=self.upper_lr)
            self._optimizer.load_state_dict(state["optimizer"])

    def close(self) -> None:
        """Close the sampled upper policy's environment, if one was made."""
        if self.upper is not None:
            self.upper.close()

    def _compute_sampled(self, problem: BilevelProblem, inner: SampledPenaltyInner) -> Hypergradient:
        policy_loss = problem.objective.policy_loss
        model = problem.reward_model
        with torch.no_grad():
            inner.solve(model)
        if self.upper is None:
            self.upper = inner.make_upper_policy(self.upper_rollout_steps, self.seed)
            self._optimizer = torch.optim.Adam(list(self.upper.parameters()), lr=self.upper_lr)
            self.upper.rollout()
        upper, optimizer = self.upper, self._optimizer
        assert optimizer is not None
        parameters = [p for p in upper.parameters() if p.requires_grad]
        with torch.enable_grad():
            for _ in range(self.upper_steps):
                upper_loss = policy_loss(upper) - self.penalty * upper.value_surrogate(model, self.upper_entropy)
                # Gradients in φ only: the surrogate's rewards carry no θ-tape, and θ's .grad is the solver's.
                grads = torch.autograd.grad(upper_loss, parameters, allow_unused=True)
                for parameter, grad in zip(parameters, grads):
                    parameter.grad = None if grad is None else grad.to(parameter.dtype)
                optimizer.step()
                upper.rollout()
        with torch.no_grad():
            gap = inner.learner_soft_value(model, self.upper_entropy) - upper.soft_value(model, self.upper_entropy)
            loss = float(policy_loss(upper)) + self.penalty * gap
        output = self.penalty * (inner.learner_reward_expectation(model) - upper.reward_expectation(model))
        return Hypergradient(loss, parameter_gradients(output, problem.parameters))

    def _compute_tabular(self, problem: BilevelProblem, inner: SoftValueIterationSolver) -> Hypergradient:
        model, mdp = problem.reward_model, inner.mdp
        with torch.no_grad():
            inner.solve(model)
        optimal_log_policy = inner.current_log_policy.detach()
        if self.upper_logits is None or self.upper_logits.shape != optimal_log_policy.shape:
            self.upper_logits = optimal_log_policy.clone().requires_grad_(True)
            self._optimizer = torch.optim.Adam([self.upper_logits], lr=self.upper_lr)
        assert self._optimizer is not None
        fixed_reward = inner.reward(model).detach()

        def soft_value(log_policy: torch.Tensor, reward: torch.Tensor) -> torch.Tensor:
            occupancy = state_action_occupancy(mdp, log_policy)
            return (occupancy * (reward - log_policy)).sum()

        with torch.enable_grad():
            for _ in range(self.upper_steps):
                self._optimizer.zero_grad()
                log_policy = torch.log_softmax(self.upper_logits, dim=-1)
                upper_loss = problem.objective.loss(log_policy) - self.penalty * soft_value(log_policy, fixed_reward)
                upper_loss.backward()
                self._optimizer.step()
        log_policy = self.upper_log_policy()
        with torch.no_grad():
            log_partition = inner.log_partition()
            assert log_partition is not None
            gap = log_partition - float(soft_value(log_policy, fixed_reward))
            loss = float(problem.objective.loss(log_policy)) + self.penalty * gap
        reward = inner.reward(model)
        upper_occupancy = state_action_occupancy(mdp, log_policy).detach()
        if upper_occupancy.dim() == 3:
            upper_occupancy = upper_occupancy.sum(0)
        output = self.penalty * (inner.learner_reward_expectation(model) - (upper_occupancy * reward).sum())
        return Hypergradient(loss, parameter_gradients(output, problem.parameters))


class DirectHypergradient(TapeHypergradientMethod):
    """The direct gradient ``∇_θ L(θ; D)`` of an outer loss that depends on ``θ`` only through ``r_θ`` on fixed data.

    For preference learning (Christiano et al. 2017) the outer loss is the preference likelihood of the labelled
    segment pairs ``D``: ``L(θ) = Σ_q ℓ(R_θ(σ_q^1) − R_θ(σ_q^2); y_q)`` with ``R_θ(σ) = Σ_t r_θ(s_t, a_t)``. The
    policy does not appear in ``L``, so ``dL/dθ = ∂L/∂θ`` and no differentiation through the inner solver is
    needed; the inner solver still matters through *which* data exist: its policy generates the segments that
    are queried next. A refresh:

    1. solves the inner problem for the current reward (warm start, without gradients);
    2. calls ``objective.refresh(inner, reward_model)`` (e.g. cut segments from the learner's new transitions,
       select queries, have a teacher label them, add them to ``D``; a no-op for objectives on fixed data).

    :meth:`compute` returns ``objective.reward_loss(reward_model)`` and its autograd gradient in ``θ``.
    ``refresh="every_evaluation"``: each :meth:`compute` refreshes first (one refresh per outer step with Adam or
    SGD, plus one before the first step). ``refresh="every_step"``: the bilevel solver calls
    :meth:`begin_outer_step` once at the start of every outer step, and :meth:`compute` is a pure function of ``θ``
    on fixed data, so L-BFGS (line search, several iterations per outer step) fits the reward to the current data
    between two inner solves — as reward learning from preferences trains its predictor for several epochs.

    The objective must provide ``reward_loss(reward_model) -> scalar tensor``, differentiable in ``θ``
    (:class:`irl_bilevel.preference_likelihood.PreferenceLikelihood`).
    """

    name = "direct"

    def __init__(self, refresh: Literal["every_evaluation", "every_step"] = "every_evaluation") -> None:
        if refresh not in ("every_evaluation", "every_step"):
            raise ValidationError(f"refresh: expected 'every_evaluation' or 'every_step', got {refresh!r}")
        self.refresh = refresh

    @staticmethod
    def _refresh(problem: BilevelProblem) -> None:
        with torch.no_grad():
            problem.inner.solve(problem.reward_model)
        problem.objective.refresh(problem.inner, problem.reward_model)

    def begin_outer_step(self, problem: BilevelProblem) -> bool:
        """Refreshes with ``refresh="every_step"``. Returns True either way: the data may have changed since the
        solver's last evaluation (every refresh grows them)."""
        if self.refresh == "every_step":
            self._refresh(problem)
        return True

    def differentiable_loss(self, problem: BilevelProblem) -> tuple[float, torch.Tensor]:
        reward_loss = problem.objective.reward_loss  # the objective's default names what is missing
        if self.refresh == "every_evaluation":
            self._refresh(problem)
        loss = reward_loss(problem.reward_model)
        return float(loss.detach()), loss


# Name -> builder of every hypergradient method: what make_hypergradient, the configs' choices and --help read.
HYPERGRADIENTS: dict[str, Callable[..., HypergradientMethod]] = {
    "maxent": MaxEntHypergradient,
    "implicit": ImplicitHypergradient,
    "unrolled_torchopt": lambda **o: UnrolledHypergradient(backend="torchopt", **o),
    "unrolled_higher": lambda **o: UnrolledHypergradient(backend="higher", **o),
    "zeroth_order": ZeroOrderHypergradient,
    "penalty": PenaltyHypergradient,
    "direct": DirectHypergradient,
    "finite_differences": FiniteDifferenceHypergradient,
}


def make_hypergradient(name: str, **options: object) -> HypergradientMethod:
    """Build a method of :data:`HYPERGRADIENTS` by name: ``maxent``, ``implicit``, ``unrolled_torchopt``,
    ``unrolled_higher``, ``penalty``, ``zeroth_order``, ``finite_differences``, ``direct`` (losses on fixed data,
    e.g. preferences)."""
    return build_named(HYPERGRADIENTS, name, options, field="hypergradient", kind="method",
                       options_field="hypergradient")
