"""Decision-aware shaping: the task-return objective, its exact and sampled hypergradients, shaping families."""

import json

import numpy as np
import pytest
import torch
from conftest import random_mdp

from classic_rl.experiments import learned_shaping, relative_error
from classic_rl.testbeds import grid_distance_to, make_testbed, optimal_policy, sparse_gridworld
from irl_bilevel import shaping
from irl_bilevel.hypergradients import (
    BilevelProblem,
    FiniteDifferenceHypergradient,
    ImplicitHypergradient,
    UnrolledHypergradient,
)
from irl_bilevel.inner import SoftValueIterationSolver
from irl_bilevel.objectives import MaxEntDemonstrationLoss
from irl_bilevel.rewards import PotentialShaping, TabularReward
from irl_bilevel.solver import BilevelSolver, OuterConfig
from irl_bilevel.tabular import expected_return, soft_value_iteration
from irl_bilevel.validation import ValidationError

SIZE, TAU, BUDGET = 4, 0.1, 4


@pytest.fixture()
def mdp():
    return sparse_gridworld(SIZE, slip=0.1, discount=0.9, step_cost=0.01)


def _hand(size=SIZE, scale=0.1):
    return torch.from_numpy(-scale * np.append(grid_distance_to(size, 0, size - 1), 0.0))


def _potential_problem(mdp, values=None, budget=BUDGET):
    potential = shaping.tabular_potential(mdp.num_states)
    if values is not None:
        with torch.no_grad():
            potential.weight[0] = values
    model = PotentialShaping(shaping.FixedReward(mdp.true_reward), potential, mdp.discount)
    return BilevelProblem(model, shaping.SweepBudgetSolver(mdp, budget, TAU), shaping.TaskReturnObjective(mdp))


def _bonus_problem(mdp, seed=0):
    bonus = TabularReward(mdp.num_states, mdp.num_actions)
    with torch.no_grad():
        bonus.table.copy_(0.05 * torch.randn(bonus.table.shape, generator=torch.Generator().manual_seed(seed)))
    model = shaping.AdditiveShaping(shaping.FixedReward(mdp.true_reward), bonus)
    return BilevelProblem(model, SoftValueIterationSolver(mdp, TAU), shaping.TaskReturnObjective(mdp))


def test_sparse_gridworld_layout(mdp):
    from test_testbeds import assert_valid

    assert_valid(mdp)
    assert (mdp.num_states, mdp.num_actions) == (SIZE * SIZE + 1, 4)
    end, goal, start = SIZE * SIZE, SIZE - 1, (SIZE - 1) * SIZE
    assert float(mdp.start[start]) == 1.0 and float(mdp.true_reward[goal]) == 1.0 and float(mdp.true_reward[end]) == 0
    dense = mdp.dense_transitions()
    assert torch.all(dense[goal, :, end] == 1) and torch.all(dense[end, :, end] == 1)
    assert torch.equal(make_testbed("sparse_gridworld", size=SIZE, slip=0.1, discount=0.9).dense_transitions(), dense)


def test_task_return_objective_is_minus_the_exact_return(mdp):
    solution = soft_value_iteration(mdp, mdp.true_reward, TAU)
    objective = shaping.TaskReturnObjective(mdp)
    assert float(objective.loss(solution.log_policy)) == pytest.approx(
        -float(expected_return(mdp, solution.log_policy, mdp.true_reward)))
    normalized = shaping.TaskReturnObjective(mdp, normalize=True)
    expected = 0.1 * float(objective.loss(solution.log_policy))
    assert float(normalized.loss(solution.log_policy)) == pytest.approx(expected)


def test_converged_hypergradients_agree(mdp):
    """Free bonus, converged inner solver: implicit, unrolled (long, warm) and finite differences."""
    problem = _bonus_problem(mdp)
    implicit = ImplicitHypergradient("direct").compute(problem).flat()
    unrolled = UnrolledHypergradient(400).compute(problem).flat()
    finite = FiniteDifferenceHypergradient(3e-5).compute(problem).flat()  # τ = 0.1: curvature ~ 1/τ²
    assert float(implicit.norm()) > 1e-3
    assert relative_error(unrolled, implicit) <= 1e-6
    assert relative_error(finite, implicit) <= 1e-6
    # The policy-gradient chain rule with exact weights is the same gradient (checks the derivation).
    exact_pg = shaping.PolicyGradientHypergradient(exact=True).compute(problem).flat()
    assert relative_error(exact_pg, implicit) <= 1e-8


def test_finite_horizon_task_return_hypergradients():
    mdp = random_mdp(num_states=5, num_actions=3, horizon=4, seed=3)
    model = TabularReward(mdp.num_states, mdp.num_actions)
    with torch.no_grad():
        model.table.copy_(torch.randn(model.table.shape, generator=torch.Generator().manual_seed(1)))
    problem = BilevelProblem(model, SoftValueIterationSolver(mdp), shaping.TaskReturnObjective(mdp))
    implicit = ImplicitHypergradient("direct").compute(problem).flat()
    finite = FiniteDifferenceHypergradient(1e-6).compute(problem).flat()
    exact_pg = shaping.PolicyGradientHypergradient(exact=True).compute(problem).flat()
    assert relative_error(finite, implicit) <= 1e-6
    assert relative_error(exact_pg, implicit) <= 1e-8
    sampled = shaping.PolicyGradientHypergradient(20000, seed=0).compute(problem).flat()
    assert relative_error(sampled, implicit) <= 0.05


def test_budget_hypergradients_agree_and_sampled_estimate_converges(mdp):
    """K sweeps from zero: unrolled (exact) vs finite differences; sampled REINFORCE estimate within 5%."""
    problem = _potential_problem(mdp, _hand())
    exact = UnrolledHypergradient(BUDGET, warm_start=False).compute(problem)
    finite = FiniteDifferenceHypergradient(1e-6).compute(problem)
    assert float(exact.flat().norm()) > 1e-3
    assert exact.loss == pytest.approx(finite.loss, abs=1e-12)
    assert relative_error(finite.flat(), exact.flat()) <= 1e-6
    through = UnrolledHypergradient(BUDGET, warm_start=False)
    exact_pg = shaping.PolicyGradientHypergradient(through=through, exact=True).compute(problem)
    assert relative_error(exact_pg.flat(), exact.flat()) <= 1e-8
    errors = {n: relative_error(shaping.PolicyGradientHypergradient(n, through=through, seed=0).compute(problem).flat(),
                                exact.flat()) for n in (200, 30000)}
    assert errors[30000] <= 0.05 < errors[200]


def test_policy_gradient_weights_estimate_the_exact_weights(mdp):
    from irl_bilevel.sampling import sample_trajectories

    log_policy = soft_value_iteration(mdp, mdp.true_reward, TAU).log_policy
    exact = shaping.exact_policy_gradient_weights(mdp, log_policy, mdp.true_reward)
    samples = sample_trajectories(mdp, log_policy, 20000, 150, torch.Generator().manual_seed(0))
    weights, sampled_return = shaping.policy_gradient_weights(mdp, samples, mdp.true_reward)
    assert sampled_return == pytest.approx(float(expected_return(mdp, log_policy, mdp.true_reward)), rel=0.02)
    assert relative_error(weights, exact) <= 0.1


def test_learned_potential_keeps_the_optimal_policy_and_speeds_up_learning(mdp):
    problem = _potential_problem(mdp)
    unshaped = float(shaping.learning_curve(mdp, mdp.true_reward, sweeps=BUDGET, temperature=TAU)[-1])
    BilevelSolver(problem, UnrolledHypergradient(BUDGET, warm_start=False),
                  OuterConfig(steps=40, optimizer="adam", lr=0.1), progress=False).run(resume=False)
    shaped = problem.inner.reward(problem.reward_model).detach()
    learned = float(shaping.learning_curve(mdp, shaped, sweeps=BUDGET, temperature=TAU)[-1])
    assert learned >= unshaped + 0.1
    assert learned == pytest.approx(-float(problem.black_box_loss()))
    assert torch.equal(optimal_policy(mdp, reward=shaped), optimal_policy(mdp))  # exact, hard VI in float64
    bias = shaping.shaping_bias(mdp, shaped, temperature=TAU)
    assert abs(bias["return_gap"]) <= 1e-10 and bias["policy_tv"] <= 1e-10


def test_free_bonus_can_change_the_optimal_policy_and_the_bias_measures_it(mdp):
    bonus = TabularReward(mdp.num_states, mdp.num_actions)
    start = int(mdp.start.argmax())
    with torch.no_grad():
        bonus.table[start, 2] = 1.0  # "left" into the wall at the bottom-left start: a loop worth more than the goal
    model = shaping.AdditiveShaping(shaping.FixedReward(mdp.true_reward), bonus)
    shaped = SoftValueIterationSolver(mdp, TAU).reward(model)
    changed = optimal_policy(mdp, reward=shaped)
    assert int(changed[start]) == 2 and not torch.equal(changed, optimal_policy(mdp))
    bias = shaping.shaping_bias(mdp, shaped, temperature=TAU)
    assert bias["return_gap"] > 0.1 and bias["policy_tv"] > 0.1
    # The same bonus as a potential-based term leaves the optimal policy alone.
    potential = shaping.potential_signal(mdp, _hand(scale=1.0))
    assert torch.equal(optimal_policy(mdp, reward=mdp.true_reward[:, None] + potential), optimal_policy(mdp))


def test_learned_weights_drop_a_harmful_candidate(mdp):
    tables = learned_shaping.candidate_tables(mdp, SIZE, 1.5)
    signals = shaping.CandidateSignals(tables, learned_shaping.CANDIDATES)
    model = shaping.AdditiveShaping(shaping.FixedReward(mdp.true_reward), signals)
    problem = BilevelProblem(model, shaping.SweepBudgetSolver(mdp, 2, TAU), shaping.TaskReturnObjective(mdp))
    before = -float(problem.black_box_loss())
    BilevelSolver(problem, UnrolledHypergradient(2, warm_start=False),
                  OuterConfig(steps=40, optimizer="adam", lr=0.3), progress=False).run(resume=False)
    weights = signals.aggregator.weights.detach()
    assert -float(problem.black_box_loss()) > before
    assert float(weights[1]) <= 0.05 and int(weights.argmax()) == 0  # wrong goal → 0, goal distance wins


def test_tiny_experiment_and_figure(tmp_path):
    path = learned_shaping.run("tiny", tmp_path, seed=0, progress=False)
    results = json.loads(path.read_text())
    methods = {m["method"]: m for m in results["methods"]}
    for name in ("none", "hand_potential", "fixed_candidates", "learned_weights", "learned_potential"):
        assert methods[name]["optimal_policy_preserved"]
    assert methods["learned_potential"]["return_at_budget"] > methods["none"]["return_at_budget"] + 0.1
    assert methods["learned_weights"]["return_at_budget"] >= methods["fixed_candidates"]["return_at_budget"]
    accuracy = results["hypergradient_accuracy"]
    assert accuracy["finite_difference_relative_error"] <= 1e-6
    assert accuracy["exact_weights_relative_error"] <= 1e-8
    from figures.learned_shaping import plot

    files = plot(tmp_path, tmp_path / "figures")
    assert all(f.exists() and f.stat().st_size > 0 for f in files)


def test_bad_inputs_name_the_field(mdp):
    with pytest.raises(ValidationError, match="true_reward"):
        shaping.TaskReturnObjective(mdp, torch.zeros(3))
    with pytest.raises(ValidationError, match="normalize"):
        shaping.TaskReturnObjective(mdp, normalize="yes")
    with pytest.raises(ValidationError, match="sweeps"):
        shaping.SweepBudgetSolver(mdp, 0)
    with pytest.raises(ValidationError, match="mdp"):
        shaping.SweepBudgetSolver(random_mdp(horizon=3), 2)
    with pytest.raises(ValidationError, match="num_trajectories"):
        shaping.PolicyGradientHypergradient(0)
    with pytest.raises(ValidationError, match="through"):
        shaping.PolicyGradientHypergradient(10, through=FiniteDifferenceHypergradient())
    problem = _potential_problem(mdp)
    occupancy = torch.full((mdp.num_states, mdp.num_actions), 1.0 / (mdp.num_states * mdp.num_actions))
    problem.objective = MaxEntDemonstrationLoss(mdp, occupancy)
    with pytest.raises(ValidationError, match="objective"):
        shaping.PolicyGradientHypergradient(10).compute(problem)
    with pytest.raises(ValidationError, match="names"):
        shaping.CandidateSignals(torch.zeros(2, mdp.num_states, mdp.num_actions), ["a"])
    with pytest.raises(ValidationError, match="potential"):
        shaping.potential_signal(mdp, torch.zeros(3))
    with pytest.raises(ValidationError, match="step_cost"):
        sparse_gridworld(4, step_cost=-1.0)
    with pytest.raises(ValidationError, match="scale"):
        learned_shaping.run("huge", "unused", progress=False)
