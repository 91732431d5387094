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
* ``ZeroOrderHypergradient``: Gaussian-smoothing estimates of the gradient of the black-box map
  ``θ ↦ L`` (``torchopt.diff.zero_order``), for inner loops that are not differentiable.
* ``FiniteDifferenceHypergradient``: central differences, the reference the others are tested against.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal, Protocol

import higher
import torch
import torchopt

from irl_bilevel.inner import FixedPointInnerSolver, InnerSolver
from irl_bilevel.rewards import RewardModel
from irl_bilevel.validation import ValidationError


class OuterObjective(Protocol):
    """The outer loss on the inner policy."""

    def loss(self, log_policy: torch.Tensor) -> torch.Tensor:
        """Differentiable loss of a policy given by its log-probabilities."""
        ...

    def evaluate(self, inner: InnerSolver) -> torch.Tensor:
        """The loss of the inner solver's current policy (no gradient needed)."""
        ...

    def expert_reward_expectation(self, inner: InnerSolver, reward_model: RewardModel) -> torch.Tensor:
        """``E_{d_E}[r_θ]`` under the feedback, differentiable in ``θ`` (for the MaxEnt gradient)."""
        ...


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
    """One way of computing ``dL/dθ``; leaves the inner solver warm for the next outer step."""

    name: str = "base"

    @abstractmethod
    def compute(self, problem: BilevelProblem) -> Hypergradient: ...


class TapeHypergradientMethod(HypergradientMethod):
    """A method that builds an autograd tape from ``θ`` to a scalar whose gradient is the hypergradient.

    ``differentiable_loss`` returns ``(reported loss, tape output)``; ``compute`` backpropagates the output.
    Split this way, the tape can be inspected (e.g. its memory measured) apart from the backward pass.
    """

    @abstractmethod
    def differentiable_loss(self, problem: BilevelProblem) -> tuple[float, torch.Tensor]: ...

    def compute(self, problem: BilevelProblem) -> Hypergradient:
        loss, output = self.differentiable_loss(problem)
        return Hypergradient(loss, _gradients(output, problem.parameters))


def _fixed_point_inner(problem: BilevelProblem, method: str) -> FixedPointInnerSolver:
    if not isinstance(problem.inner, FixedPointInnerSolver):
        raise ValidationError(
            f"hypergradient: {method} needs an inner solver with a differentiable fixed point "
            f"(got {type(problem.inner).__name__}); use 'maxent', 'zeroth_order' or 'finite_differences'"
        )
    return problem.inner


def _gradients(loss: torch.Tensor, parameters: list[torch.nn.Parameter]) -> list[torch.Tensor]:
    grads = torch.autograd.grad(loss, parameters, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(parameters, grads)]


class MaxEntHypergradient(TapeHypergradientMethod):
    """Learner minus expert expectation of ``∇_θ r_θ`` (exact occupancies, or ``num_samples`` rollouts).

    This is the exact gradient of the maximum-causal-entropy dual ``L(θ) = log Z_θ − E_{d_E}[r_θ]`` with
    ``log Z_θ = (1 − γ) ρ0ᵀ V_θ`` (Ziebart 2010), which the method reports as the loss where the inner solver
    knows ``log Z`` (``InnerSolver.log_partition``). For an expert occupancy that obeys the flow constraint
    (an exact one) the dual equals the negative log-likelihood that the other methods differentiate; for
    occupancies estimated from demonstrations the two objectives differ slightly.
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
        inner = _fixed_point_inner(problem, self.name)
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
        inner = _fixed_point_inner(problem, self.name)
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


def make_hypergradient(name: str, **options: object) -> HypergradientMethod:
    """Build a method by name: ``maxent``, ``implicit``, ``unrolled_torchopt``, ``unrolled_higher``,
    ``zeroth_order``, ``finite_differences``."""
    builders: dict[str, Callable[..., HypergradientMethod]] = {
        "maxent": MaxEntHypergradient,
        "implicit": ImplicitHypergradient,
        "unrolled_torchopt": lambda **o: UnrolledHypergradient(backend="torchopt", **o),
        "unrolled_higher": lambda **o: UnrolledHypergradient(backend="higher", **o),
        "zeroth_order": ZeroOrderHypergradient,
        "finite_differences": FiniteDifferenceHypergradient,
    }
    if name not in builders:
        raise ValidationError(f"hypergradient: unknown method {name!r}; expected one of {sorted(builders)}")
    try:
        return builders[name](**options)
    except TypeError as error:
        raise ValidationError(f"hypergradient {name!r}: bad options {sorted(options)}: {error}") from error
