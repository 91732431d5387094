"""Every hypergradient method against central finite differences (float64) and against each other."""

import pytest
import torch
from conftest import random_mdp

from irl_bilevel.hypergradients import (
    BilevelProblem,
    FiniteDifferenceHypergradient,
    ImplicitHypergradient,
    MaxEntHypergradient,
    UnrolledHypergradient,
    ZeroOrderHypergradient,
    make_hypergradient,
)
from irl_bilevel.inner import SoftValueIterationSolver
from irl_bilevel.objectives import MaxEntDemonstrationLoss
from irl_bilevel.rewards import LinearReward, MLPReward
from irl_bilevel.tabular import soft_value_iteration, state_action_occupancy
from irl_bilevel.validation import ValidationError


def relative_error(a, b):
    return float((a - b).norm() / b.norm())


def make_problem(horizon, reward_kind, seed=0):
    mdp = random_mdp(num_states=6, num_actions=3, num_features=4, horizon=horizon, seed=seed)
    expert = state_action_occupancy(mdp, soft_value_iteration(mdp, mdp.true_reward).log_policy)
    torch.manual_seed(seed)
    if reward_kind == "linear":
        model = LinearReward(4)
    else:
        model = MLPReward(4 + 3, (8,), uses_actions=True)
    for parameter in model.parameters():
        torch.nn.init.normal_(parameter, std=0.5)
    return BilevelProblem(model, SoftValueIterationSolver(mdp), MaxEntDemonstrationLoss(mdp, expert))


EXACT_METHODS = [
    MaxEntHypergradient(),
    ImplicitHypergradient("normal_cg"),
    ImplicitHypergradient("neumann", maxiter=400),
    ImplicitHypergradient("direct"),
    UnrolledHypergradient(300, backend="torchopt"),
    UnrolledHypergradient(300, backend="higher"),
]


@pytest.mark.parametrize("horizon", [None, 6], ids=["discounted", "finite_horizon"])
@pytest.mark.parametrize("reward_kind", ["linear", "mlp"])
@pytest.mark.parametrize("method", EXACT_METHODS, ids=lambda m: f"{m.name}-{getattr(m, 'linear_solver', '')}")
def test_matches_central_finite_differences(horizon, reward_kind, method):
    problem = make_problem(horizon, reward_kind)
    reference = FiniteDifferenceHypergradient(epsilon=1e-5).compute(problem)
    result = method.compute(problem)
    assert relative_error(result.flat(), reference.flat()) <= 1e-6
    assert result.loss == pytest.approx(reference.loss, rel=1e-10)


@pytest.mark.parametrize("backend", ["torchopt", "higher"])
def test_unrolled_converges_to_implicit_like_gamma_to_the_k(backend):
    problem = make_problem(None, "mlp")
    implicit = ImplicitHypergradient("direct").compute(problem).flat()
    gamma = problem.inner.mdp.discount
    errors = {}
    for steps in (5, 10, 20, 40, 80):
        unrolled = UnrolledHypergradient(steps, backend=backend, warm_start=False).compute(problem).flat()
        errors[steps] = relative_error(unrolled, implicit)
    for steps in (10, 20, 40, 80):
        assert errors[steps] < errors[steps // 2]
        # The bias contracts at rate γ per step (up to a modest constant from the transient).
        assert errors[steps] <= 50 * gamma**steps
    assert errors[80] < 1e-2


def test_torchopt_and_higher_unrolled_agree_exactly():
    problem = make_problem(None, "mlp")
    a = UnrolledHypergradient(7, backend="torchopt", warm_start=False).compute(problem).flat()
    b = UnrolledHypergradient(7, backend="higher", warm_start=False).compute(problem).flat()
    assert torch.allclose(a, b, rtol=1e-12, atol=1e-14)


def test_maxent_closed_form_agrees_with_implicit():
    problem = make_problem(None, "linear", seed=3)
    maxent = MaxEntHypergradient().compute(problem).flat()
    implicit = ImplicitHypergradient("normal_cg").compute(problem).flat()
    assert relative_error(maxent, implicit) <= 1e-8


def test_sampled_maxent_converges_to_the_exact_gradient():
    problem = make_problem(None, "linear", seed=1)
    exact = MaxEntHypergradient().compute(problem).flat()

    def mean_error(num_samples):
        estimates = [MaxEntHypergradient(num_samples, seed=s).compute(problem).flat() for s in range(4)]
        return sum(relative_error(e, exact) for e in estimates) / 4

    few, many = mean_error(300), mean_error(20_000)
    assert many < 0.15
    assert many < few / 3  # Monte-Carlo error falls like 1/sqrt(n): sqrt(20000/300) ≈ 8


def test_zeroth_order_estimate_points_along_the_gradient():
    problem = make_problem(5, "linear")
    reference = FiniteDifferenceHypergradient().compute(problem).flat()
    estimate = ZeroOrderHypergradient(num_samples=400, sigma=1e-3, seed=0).compute(problem).flat()
    cosine = float(estimate @ reference / (estimate.norm() * reference.norm()))
    assert cosine > 0.9
    assert relative_error(estimate, reference) < 0.5


def test_black_box_methods_leave_the_inner_solver_and_parameters_as_they_were():
    problem = make_problem(None, "linear")
    before = [p.detach().clone() for p in problem.parameters]
    problem.inner.solve(problem.reward_model)
    q_before = problem.inner.solution.q.clone()
    FiniteDifferenceHypergradient().compute(problem)
    assert all(torch.equal(a, b) for a, b in zip(before, problem.parameters))
    assert torch.allclose(problem.inner.solution.q, q_before, atol=1e-10)


def test_make_hypergradient_passes_options():
    assert make_hypergradient("unrolled_higher", steps=3).name == "unrolled_higher"


@pytest.mark.parametrize("build, match", [
    (lambda: make_hypergradient("newton"), "unknown method"),
    (lambda: make_hypergradient("implicit", stepz=3), "bad options"),
    (lambda: ImplicitHypergradient("cg"), "linear_solver"),
], ids=["unknown_name", "unknown_option", "bad_linear_solver"])
def test_make_hypergradient_rejects_unknown_names_and_options(build, match):
    with pytest.raises(ValidationError, match=match):
        build()


# ---------------------------------------------------------------------- penalty-based (Shen, Yang, Chen 2024)
@pytest.mark.parametrize("horizon", [None, 6], ids=["discounted", "finite_horizon"])
def test_penalty_gradient_is_the_danskin_gradient_of_the_value_gap(horizon):
    """With the upper policy fixed, the θ-gradient must equal finite differences of ``λ (V*_θ − V_θ(π))``."""
    from irl_bilevel.hypergradients import PenaltyHypergradient

    problem = make_problem(horizon, "mlp")
    method = PenaltyHypergradient(penalty=2.0, upper_steps=20)
    result = method.compute(problem)
    upper = method.upper_log_policy()
    inner, mdp = problem.inner, problem.inner.mdp

    def penalized(flat):
        torch.nn.utils.vector_to_parameters(flat, problem.parameters)
        inner.solve(problem.reward_model)
        reward = inner.reward(problem.reward_model).detach()
        value = (state_action_occupancy(mdp, upper) * (reward - upper)).sum()
        return float(problem.objective.loss(upper)) + 2.0 * (inner.log_partition() - float(value))

    theta = torch.nn.utils.parameters_to_vector(problem.parameters).detach().clone()
    epsilon = 1e-4  # the inner solver's tolerance (1e-12 on Q) divided by ε sets the differences' noise floor
    reference = torch.tensor([
        (penalized(theta + epsilon * e) - penalized(theta - epsilon * e)) / (2 * epsilon)
        for e in torch.eye(len(theta), dtype=theta.dtype)
    ], dtype=theta.dtype)
    torch.nn.utils.vector_to_parameters(theta, problem.parameters)
    assert relative_error(result.flat(), reference) <= 1e-6
    assert result.loss == pytest.approx(penalized(theta), rel=1e-9)
    assert result.loss >= float(problem.objective.loss(upper)) - 1e-12  # the gap is never negative


def test_penalty_method_recovers_a_reward_whose_policy_matches_the_expert():
    from irl_bilevel.hypergradients import PenaltyHypergradient
    from irl_bilevel.metrics import occupancy_l1
    from irl_bilevel.solver import BilevelSolver, OuterConfig

    problem = make_problem(None, "linear")
    start_l1 = occupancy_l1(problem.objective.expert_occupancy, _soft_optimal_occupancy(problem))
    BilevelSolver(problem, PenaltyHypergradient(penalty=1.0, upper_steps=20, upper_lr=0.2),
                  OuterConfig(steps=150, optimizer="adam", lr=0.1), progress=False).run(resume=False)
    final_l1 = occupancy_l1(problem.objective.expert_occupancy, _soft_optimal_occupancy(problem))
    assert final_l1 < 0.1 * start_l1 and final_l1 < 0.02, (start_l1, final_l1)


def _soft_optimal_occupancy(problem):
    problem.inner.solve(problem.reward_model)
    return state_action_occupancy(problem.inner.mdp, problem.inner.current_log_policy)
