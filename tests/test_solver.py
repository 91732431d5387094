import json
import math
import re
import types
from pathlib import Path

import pytest
import torch
from conftest import random_mdp

import irl_bilevel.solver as solver_module
from classic_rl.maxent_irl import make_reward_model, maxent_irl
from irl_bilevel.hypergradients import (
    BilevelProblem,
    Hypergradient,
    HypergradientMethod,
    ImplicitHypergradient,
    MaxEntHypergradient,
    PenaltyHypergradient,
)
from irl_bilevel.inner import SoftValueIterationSolver
from irl_bilevel.objectives import MaxEntDemonstrationLoss, OuterObjective, flow_correction
from irl_bilevel.rewards import LinearReward
from irl_bilevel.runs import load_checkpoint
from irl_bilevel.sampling import sample_trajectories
from irl_bilevel.solver import BilevelSolver, DivergenceError, OuterConfig
from irl_bilevel.tabular import soft_value_iteration, state_action_occupancy
from irl_bilevel.validation import ValidationError


@pytest.mark.parametrize("optimizer, lr", [("lbfgs", 1.0), ("adam", 0.1)])
@pytest.mark.parametrize("horizon", [None, 8])
def test_maxent_irl_recovers_the_expert_from_exact_occupancy(optimizer, lr, horizon):
    mdp = random_mdp(num_states=12, num_actions=3, num_features=5, horizon=horizon, seed=4)
    expert_policy = soft_value_iteration(mdp, mdp.true_reward).log_policy
    expert = state_action_occupancy(mdp, expert_policy)
    # Tolerance stops off: run to the occupancy target, past the default stops (scipy's L-BFGS-B tolerances).
    config = OuterConfig(400, optimizer, lr, grad_tol=0, loss_rtol=0)
    outcome = maxent_irl(mdp, expert, make_reward_model("linear", mdp), config=config,
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


def make_solver(tmp_path, steps, stop_at=None, clock=None):
    mdp = random_mdp(num_states=8, num_actions=3, num_features=4, seed=2)
    expert_policy = soft_value_iteration(mdp, mdp.true_reward).log_policy
    torch.manual_seed(0)
    model = make_reward_model("mlp", mdp, hidden_sizes=(8,))
    problem = BilevelProblem(model, SoftValueIterationSolver(mdp),
                             MaxEntDemonstrationLoss(mdp, state_action_occupancy(mdp, expert_policy)))

    def metrics():
        if stop_at is not None and len(solver.history) + 1 == stop_at:
            raise KeyboardInterrupt  # the run is killed in the middle of step `stop_at`
        if clock is not None:
            clock.now += 1.0  # every step takes one second of the fake clock
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


def test_a_resumed_run_adds_up_the_seconds_of_its_segments(tmp_path, monkeypatch):
    # A fake clock that moves one second per outer step and nowhere else: an uninterrupted run takes 10 s; the killed
    # one reaches its step-6 checkpoint after 6 s, and its resumed segment runs steps 7-10 (4 s).
    clock = types.SimpleNamespace(now=0.0)
    monkeypatch.setattr(solver_module, "time", types.SimpleNamespace(perf_counter=lambda: clock.now))
    whole = make_solver(tmp_path / "a", 10, clock=clock).run()
    assert whole.seconds == 10.0
    with pytest.raises(KeyboardInterrupt):
        make_solver(tmp_path / "b", 10, stop_at=8, clock=clock).run()
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["seconds"] == 6.0
    resumed = make_solver(tmp_path / "b", 10, clock=clock).run()
    assert resumed.seconds == 10.0  # 6 + 4, not the last segment's 4
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["seconds"] == 10.0


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


# ---------------------------------------------------------------------- stopping rules and progress
class _NoFeedbackYet(OuterObjective):
    """An objective with no loss of its own, for solver tests driven by a synthetic method."""

    def __init__(self, may_grow: bool = False) -> None:
        self.may_grow = may_grow

    def evaluate(self, inner):
        raise AssertionError("the synthetic method computes the loss")

    def feedback_may_grow(self) -> bool:
        return self.may_grow


class _Synthetic(HypergradientMethod):
    """``L(θ) = sign · ½‖θ‖²`` with its exact gradient (no inner level); ``flat``: report a constant loss (a
    gradient that never changes it); from evaluation ``bad_at`` on, the loss is ``bad_loss`` and, with
    ``bad_gradient``, the gradient is NaN."""

    name = "synthetic"

    def __init__(self, sign: float = 1.0, flat: bool = False, bad_at: int | None = None,
                 bad_loss: float = math.nan, bad_gradient: bool = False) -> None:
        self.sign, self.flat, self.calls = sign, flat, 0
        self.bad_at, self.bad_loss, self.bad_gradient = bad_at, bad_loss, bad_gradient

    def compute(self, problem):
        self.calls += 1
        theta = problem.parameters
        loss = 1.0 if self.flat else self.sign * 0.5 * sum(float(p.detach().pow(2).sum()) for p in theta)
        gradients = [self.sign * p.detach().clone() for p in theta]
        if self.bad_at is not None and self.calls >= self.bad_at:
            loss = self.bad_loss
            if self.bad_gradient:
                gradients = [torch.full_like(g, math.nan) for g in gradients]
        return Hypergradient(loss, gradients)


def synthetic_problem(may_grow: bool = False) -> BilevelProblem:
    mdp = random_mdp(num_states=4, num_actions=2, num_features=3, seed=0)
    model = LinearReward(3)
    with torch.no_grad():
        model.linear.weight.fill_(1.0)
    return BilevelProblem(model, SoftValueIterationSolver(mdp), _NoFeedbackYet(may_grow))


def readme_library_snippet() -> str:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    blocks = [block for block in re.findall(r"```python\n(.*?)```", readme, re.S) if "BilevelSolver(" in block]
    assert len(blocks) == 1, "expected one library snippet (a python block that runs the BilevelSolver) in README.md"
    return blocks[0]


def test_the_readme_library_snippet_stops_at_a_tolerance_long_before_its_step_cap(capsys):
    # Runs the snippet as a reader would: MaxEnt IRL with an MLP reward on a 100-state ObjectWorld, about 8 outer
    # steps of ~25 hypergradients each (10-20 s on one core). It used to run all 100 (200 by default) steps.
    snippet = readme_library_snippet()
    cap = int(re.search(r"OuterConfig\(steps=(\d+)\)", snippet).group(1))
    namespace: dict = {}
    exec(compile(snippet, "README.md", "exec"), namespace)
    result = namespace["result"]
    assert result.converged and result.stop_reason in ("grad_tol", "loss_rtol")
    assert result.steps <= cap // 4
    problem = namespace["problem"]
    assert result.loss == pytest.approx(float(problem.objective.evaluate(problem.inner)), abs=1e-12)
    captured = capsys.readouterr()
    # The progress bar stays on screen at its last state, and a closing line says why the run stopped.
    assert f"{result.steps}/{cap}" in captured.err.split("\r")[-1]
    assert f"stopped after step {result.steps} of at most {cap}" in captured.err
    assert captured.out.split() == [str(result.steps), result.stop_reason, str(result.loss)]


def test_the_default_stops_are_scipys_lbfgsb_tolerances():
    config = OuterConfig()
    assert config.grad_tol == 1e-5 and config.loss_rtol == pytest.approx(1e7 * torch.finfo(torch.float64).eps)


def test_grad_tol_stops_at_a_stationary_point():
    # θ halves every step (L = ½‖θ‖²); the loss-change rule is off to test the gradient rule alone.
    result = BilevelSolver(synthetic_problem(), _Synthetic(), OuterConfig(50, "sgd", 0.5, loss_rtol=0),
                           progress=False).run()
    assert result.stop_reason == "grad_tol" and result.converged and result.gradient_norm <= 1e-5 < 1.0
    assert result.steps < 50


def test_loss_rtol_stops_when_a_step_moves_theta_but_not_the_loss():
    problem = synthetic_problem()
    result = BilevelSolver(problem, _Synthetic(flat=True), OuterConfig(20, "sgd", 0.1), progress=False).run()
    assert result.stop_reason == "loss_rtol" and result.steps == 2  # the first step has no loss to compare with
    off = BilevelSolver(synthetic_problem(), _Synthetic(flat=True), OuterConfig(20, "sgd", 0.1, loss_rtol=0),
                        progress=False).run()
    assert off.stop_reason == "steps" and off.steps == 20 and not off.converged


def test_no_tolerance_stop_while_the_feedback_may_still_grow():
    result = BilevelSolver(synthetic_problem(may_grow=True), _Synthetic(flat=True), OuterConfig(6, "sgd", 1.0),
                           progress=False).run()
    assert result.steps == 6 and result.stop_reason == "steps"


def test_a_runaway_loss_stops_the_run_with_a_message_and_no_result(tmp_path):
    # L = −½‖θ‖² is unbounded below; SGD with lr 1 doubles θ every step, so |L| grows about 4× a step.
    solver = BilevelSolver(synthetic_problem(), _Synthetic(sign=-1.0), OuterConfig(50, "sgd", 1.0, checkpoint_every=2),
                           output_dir=tmp_path, progress=False)
    with pytest.raises(DivergenceError, match=r"ran away at outer step (\d+) .*L = -\d") as caught:
        solver.run()
    assert isinstance(caught.value, FloatingPointError)  # and a ValidationError: `irlb: error: ...`, exit 2
    step = int(re.search(r"outer step (\d+)", str(caught.value)).group(1))
    assert 4 <= step < 50
    assert not (tmp_path / "summary.json").exists()
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] < step  # the last good checkpoint, not the runaway


@pytest.mark.parametrize("bad_loss, bad_gradient, message", [(-math.inf, False, "non-finite loss -inf"),
                                                              (math.nan, True, "non-finite gradient")])
def test_an_infinite_loss_or_a_nan_gradient_stops_the_run_naming_the_step(bad_loss, bad_gradient, message):
    method = _Synthetic(bad_at=3, bad_loss=bad_loss, bad_gradient=bad_gradient)
    solver = BilevelSolver(synthetic_problem(), method, OuterConfig(10, "adam", 0.1), progress=False)
    with pytest.raises(DivergenceError, match=f"{message} in outer step 2"):
        solver.run()


def test_a_nan_loss_with_a_finite_gradient_is_an_unreported_loss_not_a_divergence():
    # e.g. a sampled task return before any episode has finished (classic_rl.shaping_sb3)
    result = BilevelSolver(synthetic_problem(), _Synthetic(bad_at=1), OuterConfig(3, "adam", 0.1),
                           progress=False).run()
    assert result.steps == 3 and math.isnan(result.loss)


# ---------------------------------------------------------------------- the MaxEnt loss on sampled demonstrations
@pytest.mark.parametrize("horizon", [None, 8])
def test_maxent_on_sampled_demonstrations_is_their_likelihood_and_its_gradient(horizon):
    mdp = random_mdp(num_states=12, num_actions=3, num_features=5, horizon=horizon, seed=4)
    expert_policy = soft_value_iteration(mdp, mdp.true_reward).log_policy
    assert flow_correction(mdp, state_action_occupancy(mdp, expert_policy)) is None  # exact: the dual as before
    demos = sample_trajectories(mdp, expert_policy, 20, None if horizon else 10, torch.Generator().manual_seed(0))
    objective = MaxEntDemonstrationLoss.from_demonstrations(mdp, demos)
    assert objective.start_correction is not None  # 20 truncated samples violate the flow constraint
    torch.manual_seed(0)
    problem = BilevelProblem(make_reward_model("mlp", mdp, hidden_sizes=(8,)), SoftValueIterationSolver(mdp),
                             objective)
    maxent = MaxEntHypergradient().compute(problem)
    likelihood = float(objective.evaluate(problem.inner))
    assert likelihood > 0 and maxent.loss == pytest.approx(likelihood, abs=1e-10)
    # Implicit differentiation of −Σ w log π through the soft-Bellman fixed point: the likelihood's exact gradient.
    implicit = ImplicitHypergradient("direct").compute(problem)
    assert torch.allclose(maxent.flat(), implicit.flat(), atol=1e-10)


def test_maxent_irl_on_truncated_demonstrations_stays_bounded_with_the_default_lbfgs():
    # The dual alone (no flow correction) ran to L = −1.2e32 in one L-BFGS step on exactly these data.
    mdp = random_mdp(num_states=12, num_actions=3, num_features=5, seed=4)
    expert_policy = soft_value_iteration(mdp, mdp.true_reward).log_policy
    demos = sample_trajectories(mdp, expert_policy, 20, 10, torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    outcome = maxent_irl(mdp, demos, make_reward_model("mlp", mdp, hidden_sizes=(16,)), config=OuterConfig(15),
                         progress=False)
    losses = [row["loss"] for row in outcome.result.history]
    assert all(0 < loss < 2 for loss in losses) and outcome.result.converged


# ---------------------------------------------------------------------- the declared plug-in protocols
def test_the_solver_finds_no_hook_by_probing():
    # Every hook the solver and the methods call is declared on OuterObjective / HypergradientMethod.
    root = Path(__file__).resolve().parent.parent / "irl_bilevel"
    for name in ("solver.py", "hypergradients.py"):
        source = (root / name).read_text()
        assert not re.search(r"\b(getattr|hasattr|vars)\(", source), name


def test_an_objective_with_only_evaluate_gets_the_declared_defaults():
    objective = _NoFeedbackYet()
    assert objective.has_feedback() and not objective.feedback_may_grow() and objective.state_dict() == {}
    assert objective.refresh(None, LinearReward(3)) is None
    for call, needed_by in ((lambda: objective.loss(torch.zeros(2, 2)), "implicit"),
                            (lambda: objective.expert_reward_expectation(None, LinearReward(3)), "'maxent'"),
                            (lambda: objective.reward_loss(LinearReward(3)), "direct"),
                            (lambda: objective.policy_loss(None), "penalty")):
        with pytest.raises(ValidationError, match=f"objective: .*{needed_by}"):
            call()


def make_penalty_solver(tmp_path, steps, stop_at=None):
    mdp = random_mdp(num_states=8, num_actions=3, num_features=4, seed=3)
    expert = state_action_occupancy(mdp, soft_value_iteration(mdp, mdp.true_reward).log_policy)
    problem = BilevelProblem(make_reward_model("linear", mdp), SoftValueIterationSolver(mdp),
                             MaxEntDemonstrationLoss(mdp, expert))

    def metrics():
        if stop_at is not None and len(solver.history) + 1 == stop_at:
            raise KeyboardInterrupt
        return {}

    solver = BilevelSolver(problem, PenaltyHypergradient(penalty=1.0, upper_steps=5, upper_lr=0.2),
                           OuterConfig(steps, "adam", 0.1, grad_tol=0, loss_rtol=0, checkpoint_every=2), tmp_path,
                           metrics, progress=False)
    return solver


def test_the_tabular_penalty_method_resumes_exactly_from_its_declared_state(tmp_path):
    # The upper policy's logits and Adam moments are the method's state_dict: without them a resumed run restarts
    # the upper policy at π* and ends elsewhere.
    whole = make_penalty_solver(tmp_path / "a", 6)
    whole.run()
    with pytest.raises(KeyboardInterrupt):
        make_penalty_solver(tmp_path / "b", 6, stop_at=4).run()
    state = load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    assert state["step"] == 2 and set(state["hypergradient"]) == {"upper_logits", "optimizer"}
    resumed = make_penalty_solver(tmp_path / "b", 6)
    resumed.run()
    for a, b in zip(whole.problem.reward_model.parameters(), resumed.problem.reward_model.parameters()):
        assert torch.equal(a, b)
    assert (tmp_path / "a" / "metrics.jsonl").read_text() == (tmp_path / "b" / "metrics.jsonl").read_text()
