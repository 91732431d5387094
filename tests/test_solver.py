import json

import pytest
import torch
from conftest import random_mdp

from classic_rl.maxent_irl import make_reward_model, maxent_irl
from irl_bilevel.hypergradients import BilevelProblem, MaxEntHypergradient
from irl_bilevel.inner import SoftValueIterationSolver
from irl_bilevel.objectives import MaxEntDemonstrationLoss
from irl_bilevel.runs import load_checkpoint
from irl_bilevel.sampling import sample_trajectories
from irl_bilevel.solver import BilevelSolver, OuterConfig
from irl_bilevel.tabular import soft_value_iteration, state_action_occupancy
from irl_bilevel.validation import ValidationError


@pytest.mark.parametrize("optimizer, lr", [("lbfgs", 1.0), ("adam", 0.1)])
@pytest.mark.parametrize("horizon", [None, 8])
def test_maxent_irl_recovers_the_expert_from_exact_occupancy(optimizer, lr, horizon):
    mdp = random_mdp(num_states=12, num_actions=3, num_features=5, horizon=horizon, seed=4)
    expert_policy = soft_value_iteration(mdp, mdp.true_reward).log_policy
    expert = state_action_occupancy(mdp, expert_policy)
    outcome = maxent_irl(mdp, expert, make_reward_model("linear", mdp), config=OuterConfig(400, optimizer, lr),
                         expert_log_policy=expert_policy, occupancy_target=1e-4, progress=False)
    assert outcome.metrics["occupancy_l1"] <= 1e-4
    assert outcome.metrics["normalized_return"] >= 0.99
    # A linear reward in the true features is identifiable up to shaping: EPIC sees it.
    assert outcome.metrics["epic"] <= 0.01


def test_maxent_irl_from_sampled_demonstrations_degrades_gracefully():
    mdp = random_mdp(num_states=12, num_actions=3, num_features=5, horizon=8, seed=4)
    expert_policy = soft_value_iteration(mdp, mdp.true_reward).log_policy
    demos = sample_trajectories(mdp, expert_policy, 100, generator=torch.Generator().manual_seed(0))
    outcome = maxent_irl(mdp, demos, make_reward_model("linear", mdp), config=OuterConfig(50, "lbfgs"),
                         expert_log_policy=expert_policy, progress=False)
    # Normalized against the (stochastic) soft-optimal demonstrator, a sharper learned policy may exceed 1.
    assert outcome.metrics["normalized_return"] >= 0.8


def make_solver(tmp_path, steps, stop_at=None):
    mdp = random_mdp(num_states=8, num_actions=3, num_features=4, seed=2)
    expert_policy = soft_value_iteration(mdp, mdp.true_reward).log_policy
    torch.manual_seed(0)
    model = make_reward_model("mlp", mdp, hidden_sizes=(8,))
    problem = BilevelProblem(model, SoftValueIterationSolver(mdp),
                             MaxEntDemonstrationLoss(mdp, state_action_occupancy(mdp, expert_policy)))

    def metrics():
        if stop_at is not None and len(solver.history) + 1 == stop_at:
            raise KeyboardInterrupt  # the run is killed in the middle of step `stop_at`
        return {}

    # Sampled learner rollouts make the run stochastic: resume must restore the generator too.
    solver = BilevelSolver(problem, MaxEntHypergradient(num_samples=50, seed=1),
                           OuterConfig(steps, "adam", 0.05, checkpoint_every=3), tmp_path, metrics, progress=False)
    return solver


def test_a_killed_run_resumes_and_ends_like_an_uninterrupted_one(tmp_path):
    uninterrupted = make_solver(tmp_path / "a", 10)
    uninterrupted.run()
    killed = make_solver(tmp_path / "b", 10, stop_at=8)
    with pytest.raises(KeyboardInterrupt):
        killed.run()
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["step"] == 6
    resumed = make_solver(tmp_path / "b", 10)
    result = resumed.run()
    assert result.steps == 10
    for a, b in zip(uninterrupted.problem.reward_model.parameters(), resumed.problem.reward_model.parameters()):
        assert torch.equal(a, b)
    rows_a = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    rows_b = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert rows_a == rows_b and len(rows_a) == 10
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["steps"] == 10


def test_checkpoints_load_with_weights_only(tmp_path):
    solver = make_solver(tmp_path, 3)
    solver.run()
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["step"] == 3


def test_outer_config_rejects_bad_values():
    with pytest.raises(ValidationError, match="optimizer"):
        OuterConfig(optimizer="newton")
    with pytest.raises(ValidationError, match="lr"):
        OuterConfig(lr=-1.0)


def test_l2_regularization_enters_loss_and_gradient():
    mdp = random_mdp(num_states=8, num_actions=3, num_features=4, seed=5)
    expert = state_action_occupancy(mdp, soft_value_iteration(mdp, mdp.true_reward).log_policy)
    model = make_reward_model("linear", mdp)
    problem = BilevelProblem(model, SoftValueIterationSolver(mdp), MaxEntDemonstrationLoss(mdp, expert))
    result = BilevelSolver(problem, MaxEntHypergradient(), OuterConfig(50, "lbfgs", l2=0.5, grad_tol=1e-7),
                           progress=False).run()
    assert result.converged
    weights = model.linear.weight.detach()
    unregularized = MaxEntHypergradient().compute(problem)
    # Stationarity of L(θ) + ½ λ‖θ‖²: ∇L(θ) = −λθ, with θ ≠ 0.
    assert torch.allclose(unregularized.gradients[0], -0.5 * weights, atol=1e-6)
    assert float(weights.abs().max()) > 1e-3
    assert result.loss == pytest.approx(unregularized.loss + 0.25 * float(weights.pow(2).sum()))
