"""Accuracy, time and autograd memory of every hypergradient method as the inner horizon ``K`` grows.

Problems: random sparse (Garnet) MDPs in float64, the MaxEnt demonstration likelihood of a soft-optimal
expert (for the Garnet's own linear true reward) as the outer loss, and a linear and an MLP reward model at a
random, non-zero parameter. Discounted (``γ``) and, with a linear reward, finite horizon (``H``).

References: ``ImplicitHypergradient('direct')`` (a dense solve of the implicit-function-theorem system at a
fixed point converged to ``1e-12``) is the exact reference every error below is measured against; central
finite differences (``FiniteDifferenceHypergradient``) are computed too, and their own error against the exact
reference (about ``1e-10``, the floor below which they cannot tell methods apart) is recorded, as is every
method's error against them.

For every ``K`` in ``ks``: ``UnrolledHypergradient(K)`` with the torchopt and the higher backends, each
warm-started (truncated backpropagation from the converged inner solution) and from zeros; implicit
differentiation with a Neumann series of ``K`` terms and with ``K`` normal-equation CG iterations. Methods
without a ``K``: implicit with converged normal CG and with the direct solve, the exact MaxEnt gradient
(learner minus expert feature expectations), finite differences. The sample-based MaxEnt gradient is measured
against the number of learner rollouts instead.

Time: median wall time of ``repeats`` calls of ``method.compute(problem)`` with the inner problem already
solved (each call still runs its warm-started inner solve, about one Bellman sweep). Memory: torch's CPU
allocations are invisible to ``tracemalloc``, so the bytes held by the autograd tape are measured with
``torch.autograd.graph.saved_tensors_hooks``: the sum of ``numel · element_size`` of every tensor packed for
backward before the final backward pass (the graph that unrolled differentiation builds inside its loop is
included; the implicit methods' linear-solve workspace, built during the final backward, is not).

Unrolled bias: ``‖∂_x T‖ = γ`` bounds the error by ``C γ^K``. The loss depends on the Q-table only through
the policy, which ignores adding a constant to ``Q``, the eigendirection of ``γ P Π_π`` with eigenvalue ``γ``;
the error then falls like ``(γ |λ₂|)^K`` with ``λ₂`` the second eigenvalue of ``P_π``. Both rates, and the
rate fitted to the measured errors, are recorded.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import torch
from tqdm.auto import tqdm

from classic_rl.experiments import quiet_torchopt, relative_error
from classic_rl.maxent_irl import make_reward_model
from classic_rl.testbeds import garnet
from irl_bilevel.config import Config, Discount, NonEmpty, PositiveFloat, PositiveInt, experiment_settings
from irl_bilevel.hypergradients import (
    BilevelProblem,
    FiniteDifferenceHypergradient,
    HypergradientMethod,
    ImplicitHypergradient,
    MaxEntHypergradient,
    TapeHypergradientMethod,
    UnrolledHypergradient,
)
from irl_bilevel.inner import SoftValueIterationSolver, effective_horizon
from irl_bilevel.objectives import MaxEntDemonstrationLoss
from irl_bilevel.precision import default_dtype
from irl_bilevel.rewards import RewardModel
from irl_bilevel.runs import provenance, write_json
from irl_bilevel.tabular import TabularMDP, soft_value_iteration, state_action_occupancy

NAME = "hypergradient_accuracy"


@dataclass(frozen=True)
class FiniteHorizonCase(Config):
    """The finite-horizon Garnet case (a linear reward unless named otherwise)."""

    num_states: PositiveInt
    """Garnet states"""
    horizon: PositiveInt
    """H"""
    reward_models: tuple[str, ...]
    """linear | mlp"""


@dataclass(frozen=True)
class HypergradientAccuracyConfig(Config):
    """Settings of the hypergradient accuracy / time / memory experiment on random Garnet MDPs."""

    num_states: PositiveInt
    """Garnet states (discounted case)"""
    num_actions: PositiveInt
    """actions per state"""
    branching: PositiveInt
    """successor states per (s, a)"""
    num_features: PositiveInt
    """state features of the linear true reward"""
    discount: Discount
    """γ of the discounted case"""
    reward_models: tuple[str, ...]
    """linear | mlp"""
    hidden_sizes: tuple[PositiveInt, ...]
    """MLP reward widths"""
    num_mdps: PositiveInt
    """random MDPs per case"""
    ks: Annotated[tuple[PositiveInt, ...], NonEmpty()]
    """inner horizons K of the unrolled / truncated methods"""
    repeats: PositiveInt
    """timed calls per method (median reported)"""
    fd_epsilon: PositiveFloat
    """step of central finite differences"""
    inner_tol: PositiveFloat
    """convergence tolerance of the reference inner solve"""
    sample_sizes: Annotated[tuple[PositiveInt, ...], NonEmpty()]
    """learner rollouts of the sample-based MaxEnt gradient"""
    sample_repeats: PositiveInt
    """sampling seeds per rollout count"""
    finite_horizon: FiniteHorizonCase | None
    """None: skip the finite-horizon case"""


SCALES: dict[str, dict[str, Any]] = {
    "tiny": {
        "num_states": 12, "num_actions": 3, "branching": 3, "num_features": 6, "discount": 0.9,
        "reward_models": ["linear", "mlp"], "hidden_sizes": [8], "num_mdps": 1,
        "ks": [1, 2, 4, 8, 16, 32, 64], "repeats": 3, "fd_epsilon": 1e-5, "inner_tol": 1e-12,
        "sample_sizes": [4, 64, 1024], "sample_repeats": 3,
        "finite_horizon": {"num_states": 8, "horizon": 6, "reward_models": ["linear"]},
    },
    "quick": {
        "num_states": 50, "num_actions": 4, "branching": 5, "num_features": 16, "discount": 0.9,
        "reward_models": ["linear", "mlp"], "hidden_sizes": [16, 16], "num_mdps": 5,
        "ks": [1, 2, 4, 8, 16, 32, 64, 128], "repeats": 5, "fd_epsilon": 1e-5, "inner_tol": 1e-12,
        "sample_sizes": [1, 4, 16, 64, 256, 1024, 4096], "sample_repeats": 5,
        "finite_horizon": {"num_states": 20, "horizon": 10, "reward_models": ["linear"]},
    },
    "full": {
        "num_states": 200, "num_actions": 4, "branching": 5, "num_features": 16, "discount": 0.9,
        "reward_models": ["linear", "mlp"], "hidden_sizes": [32, 32], "num_mdps": 5,
        "ks": [1, 2, 4, 8, 16, 32, 64, 128, 256], "repeats": 9, "fd_epsilon": 1e-5, "inner_tol": 1e-12,
        "sample_sizes": [1, 4, 16, 64, 256, 1024, 4096, 16384], "sample_repeats": 20,
        "finite_horizon": {"num_states": 30, "horizon": 15, "reward_models": ["linear", "mlp"]},
    },
}
CONFIG = HypergradientAccuracyConfig  # the typed settings; every SCALES entry validates into it (tests check)

# Methods indexed by K: name -> (label, factory).
K_METHODS: dict[str, tuple[str, Callable[[int], HypergradientMethod]]] = {
    "unrolled_torchopt_warm": ("unrolled, torchopt, warm start",
                               lambda k: UnrolledHypergradient(k, backend="torchopt", warm_start=True)),
    "unrolled_higher_warm": ("unrolled, higher, warm start",
                             lambda k: UnrolledHypergradient(k, backend="higher", warm_start=True)),
    "unrolled_torchopt_cold": ("unrolled, torchopt, from zeros",
                               lambda k: UnrolledHypergradient(k, backend="torchopt", warm_start=False)),
    "unrolled_higher_cold": ("unrolled, higher, from zeros",
                             lambda k: UnrolledHypergradient(k, backend="higher", warm_start=False)),
    "implicit_neumann": ("implicit, Neumann series (K terms)",
                         lambda k: ImplicitHypergradient("neumann", maxiter=k)),
    "implicit_normal_cg_k": ("implicit, normal CG (K iterations)",
                             lambda k: ImplicitHypergradient("normal_cg", maxiter=k)),
}
# Methods without a K: name -> (label, factory).
FIXED_METHODS: dict[str, tuple[str, Callable[[], HypergradientMethod]]] = {
    "implicit_normal_cg": ("implicit, normal CG (converged)", lambda: ImplicitHypergradient("normal_cg")),
    "implicit_direct": ("implicit, direct solve (exact reference)", lambda: ImplicitHypergradient("direct")),
    "maxent_exact": ("MaxEnt, exact occupancy", lambda: MaxEntHypergradient()),
}

# Errors at or below this are round-off; rates are fitted above it.
_FLOOR = 1e-12


def tape_bytes(method: HypergradientMethod, problem: BilevelProblem) -> int:
    """Bytes of the tensors saved for backward while ``method`` builds its tape (``differentiable_loss``).

    The backward pass runs outside the hooks: ``torch.func`` (which torchopt's implicit differentiation calls
    there) refuses to run under saved-tensor hooks, and what it allocates is solver workspace, not tape.
    Methods without a tape (finite differences, zeroth order) hold none.
    """
    if not isinstance(method, TapeHypergradientMethod):
        return 0
    total = [0]

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        total[0] += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        _, output = method.differentiable_loss(problem)
    torch.autograd.grad(output, problem.parameters, allow_unused=True)
    return total[0]


def _timed(method: HypergradientMethod, problem: BilevelProblem, repeats: int) -> tuple[torch.Tensor, float]:
    """The flat hypergradient (after one warm-up call) and the median wall time of ``repeats`` calls."""
    gradient = method.compute(problem).flat().detach()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        method.compute(problem)
        times.append(time.perf_counter() - started)
    return gradient, statistics.median(times)


def _random_parameters(model: RewardModel, kind: str, seed: int) -> None:
    """A random, non-zero parameter: PyTorch's default initialization for MLPs, ``N(0, 1/F)`` for linear."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            fan_in = parameter.shape[-1] if parameter.dim() > 1 else parameter.numel()
            if kind == "linear" or "weight" in name:
                bound = 1.0 / math.sqrt(fan_in)
                parameter.copy_((torch.rand(parameter.shape, generator=generator) * 2 - 1) * bound * math.sqrt(3))
            else:
                parameter.copy_((torch.rand(parameter.shape, generator=generator) * 2 - 1) * 0.1)


def _decay_rate(ks: list[int], errors: list[float]) -> float | None:
    """``exp`` of the least-squares slope of ``log error`` against ``K`` over the errors above round-off."""
    points = [(k, math.log(e)) for k, e in zip(ks, errors) if e > _FLOOR and math.isfinite(e)]
    if len(points) < 2:
        return None
    mean_k = sum(k for k, _ in points) / len(points)
    mean_e = sum(e for _, e in points) / len(points)
    slope = sum((k - mean_k) * (e - mean_e) for k, e in points) / sum((k - mean_k) ** 2 for k, _ in points)
    return math.exp(slope)


def _second_eigenvalue(mdp: TabularMDP, log_policy: torch.Tensor) -> float:
    """``|λ₂|`` of the state-transition matrix ``P_π`` of a stationary policy."""
    policy_transitions = torch.einsum("sa,sak->sk", log_policy.exp(), mdp.dense_transitions())
    moduli = torch.linalg.eigvals(policy_transitions).abs().sort(descending=True).values
    return float(moduli[1]) if moduli.numel() > 1 else 0.0


def _measure(problem: BilevelProblem, config: HypergradientAccuracyConfig, finite_horizon: bool, mdp_seed: int,
             progress_bar: Any) -> dict[str, Any]:
    mdp = problem.inner.mdp  # type: ignore[attr-defined]
    ks, repeats = list(config.ks), int(config.repeats)
    exact = ImplicitHypergradient("direct").compute(problem).flat().detach()
    started = time.perf_counter()
    fd = FiniteDifferenceHypergradient(config.fd_epsilon).compute(problem).flat().detach()
    fd_seconds = time.perf_counter() - started
    out: dict[str, Any] = {
        "mdp_seed": mdp_seed, "num_parameters": int(exact.numel()), "gradient_norm": float(exact.norm()),
        "inner_size": int(problem.inner.solution.q.numel()),  # type: ignore[attr-defined]
        "finite_differences": {"rel_error_exact": relative_error(fd, exact), "seconds": fd_seconds,
                               "epsilon": config.fd_epsilon,
                               "black_box_solves": 2 * int(exact.numel())},
        "methods": {},
    }
    for name, (label, factory) in FIXED_METHODS.items():
        method = factory()
        gradient, seconds = _timed(method, problem, repeats)
        out["methods"][name] = {"label": label, "k_dependent": False,
                                "rel_error_exact": relative_error(gradient, exact),
                                "rel_error_fd": relative_error(gradient, fd), "seconds": seconds,
                                "tape_bytes": tape_bytes(method, problem)}
        progress_bar.update(1)
    for name, (label, factory_of_k) in K_METHODS.items():
        row: dict[str, Any] = {"label": label, "k_dependent": True, "ks": ks, "rel_error_exact": [],
                               "rel_error_fd": [], "seconds": [], "tape_bytes": []}
        for k in ks:
            method = factory_of_k(k)
            gradient, seconds = _timed(method, problem, repeats)
            row["rel_error_exact"].append(relative_error(gradient, exact))
            row["rel_error_fd"].append(relative_error(gradient, fd))
            row["seconds"].append(seconds)
            row["tape_bytes"].append(tape_bytes(method, problem))
            progress_bar.update(1)
        if not finite_horizon:
            row["fitted_rate"] = _decay_rate(ks, row["rel_error_exact"])
            row["max_error_over_gamma_k"] = max(e / mdp.discount**k for k, e in zip(ks, row["rel_error_exact"]))
        exact_from = [k for k, e in zip(ks, row["rel_error_exact"]) if e <= _FLOOR]
        row["first_k_at_round_off"] = exact_from[0] if exact_from else None
        out["methods"][name] = row
    # Sample-based MaxEnt: error against the number of learner rollouts.
    sampled: dict[str, Any] = {"num_samples": list(config.sample_sizes), "rel_error_exact": [], "seconds": []}
    for n in config.sample_sizes:
        errors, times = [], []
        for repeat in range(config.sample_repeats):
            method = MaxEntHypergradient(num_samples=n, seed=1_000_003 * mdp_seed + repeat)
            started = time.perf_counter()
            gradient = method.compute(problem).flat().detach()
            times.append(time.perf_counter() - started)
            errors.append(relative_error(gradient, exact))
        sampled["rel_error_exact"].append(errors)
        sampled["seconds"].append(statistics.median(times))
        progress_bar.update(1)
    sampled["rollout_length"] = mdp.horizon or effective_horizon(mdp.discount)
    out["maxent_sampled"] = sampled
    if not finite_horizon:
        log_policy = problem.inner.current_log_policy  # type: ignore[attr-defined]
        lambda_2 = _second_eigenvalue(mdp, log_policy)
        out["rates"] = {"gamma": mdp.discount, "lambda_2": lambda_2, "gamma_lambda_2": mdp.discount * lambda_2}
    out["direct_jacobian_bytes"] = out["inner_size"] ** 2 * exact.element_size()
    return out


def _problem(mdp: TabularMDP, kind: str, hidden_sizes: tuple[int, ...], seed: int,
             inner_tol: float) -> BilevelProblem:
    assert mdp.true_reward is not None
    expert = state_action_occupancy(mdp, soft_value_iteration(mdp, mdp.true_reward).log_policy)
    model = make_reward_model(kind, mdp, hidden_sizes=hidden_sizes)
    _random_parameters(model, kind, seed)
    return BilevelProblem(model, SoftValueIterationSolver(mdp, tol=inner_tol), MaxEntDemonstrationLoss(mdp, expert))


def run(scale: str, results_dir: Path, seed: int = 0, progress: bool = True,
        config: HypergradientAccuracyConfig | None = None) -> Path:
    """Run the hypergradient-accuracy experiment at ``scale``; writes ``results_dir/hypergradient_accuracy.json``."""
    settings = experiment_settings(HypergradientAccuracyConfig, SCALES, scale, NAME, config)
    results_dir = Path(results_dir)
    methods = {name: label for name, (label, _) in {**FIXED_METHODS, **K_METHODS}.items()}
    record: dict[str, Any] = {"name": NAME, "scale": scale, "config": settings.to_dict(),
                              "provenance": provenance(seed), "methods": methods}
    started = time.perf_counter()
    cases: list[tuple[str, str, int, int | None]] = [("discounted", kind, settings.num_states, None)
                                                     for kind in settings.reward_models]
    finite = settings.finite_horizon
    if finite:
        cases += [("finite_horizon", kind, finite.num_states, finite.horizon) for kind in finite.reward_models]
    per_problem = (len(FIXED_METHODS) + len(K_METHODS) * len(settings.ks) + len(settings.sample_sizes))
    total = per_problem * settings.num_mdps * len(cases)
    results = []
    with default_dtype(torch.float64), quiet_torchopt(), tqdm(total=total, desc=NAME, disable=not progress) as bar:
        for case, kind, num_states, horizon in cases:
            entry: dict[str, Any] = {"case": case, "reward_model": kind, "num_states": num_states,
                                     "num_actions": settings.num_actions, "branching": settings.branching,
                                     "num_features": settings.num_features,
                                     "discount": settings.discount if horizon is None else 1.0,
                                     "horizon": horizon, "hidden_sizes": settings.hidden_sizes if kind == "mlp"
                                     else None, "mdps": []}
            for index in range(settings.num_mdps):
                mdp_seed = 1000 * seed + index
                mdp = garnet(num_states, settings.num_actions, settings.branching, settings.num_features,
                             discount=settings.discount if horizon is None else None, horizon=horizon,
                             seed=mdp_seed)
                problem = _problem(mdp, kind, tuple(settings.hidden_sizes), mdp_seed, settings.inner_tol)
                entry["mdps"].append(_measure(problem, settings, horizon is not None, mdp_seed, bar))
            results.append(entry)
    record["cases"] = results
    record["seconds"] = time.perf_counter() - started
    path = results_dir / f"{NAME}.json"
    write_json(path, record)
    return path
