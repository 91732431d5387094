"""Decision-aware reward shaping on a sparse-reward gridworld, with exact and sampled hypergradients.

Task: :func:`classic_rl.testbeds.sparse_gridworld` (start bottom-left, +1 at the top-right goal, then an
absorbing end state; a small step cost). Inner learner: :class:`irl_bilevel.shaping.SweepBudgetSolver`, i.e.
``K`` soft value-iteration sweeps (temperature ``τ``) from ``Q = 0`` on the shaped reward. Exact soft VI
converges to the same policy under any potential shaping, so learning *speed* is measured by the task return
``J(π_K)`` after a fixed sweep budget ``K``; the outer loss is ``−J(π_K(θ))`` (``TaskReturnObjective``) and
its exact gradient is ``UnrolledHypergradient(K, warm_start=False)`` (Adam on ``θ``).

Shaping methods (each a reward model of the shared interface):

* ``none``: the task reward alone;
* ``hand_potential``: potential shaping with ``Φ(s) = −c · (Manhattan distance to the goal)``;
* ``fixed_candidates``: the candidate signals (potential terms of: distance to the goal, distance to a wrong
  goal in the bottom-right corner, the column) with fixed equal weights — where the learned weights start;
* ``learned_weights``: the same candidates with ``SimplexWeights`` learned by the outer loop;
* ``learned_potential``: ``PotentialShaping`` with a free tabular potential ``Φ_θ`` (zero at the start);
* ``free_bonus``: a free per-(s, a) bonus with an L2 penalty (may change the optimal policy: measured).

For each: the true return after ``0..curve_sweeps`` sweeps (the learning curve), the return at the budget, and
the *exact* check of optimal-policy preservation: greedy optimal actions of the task reward and of the shaped
reward by hard value iteration in float64 (:func:`classic_rl.testbeds.optimal_policy`), and their return gap.

Hypergradient accuracy: at the hand-designed potential, the sample-based policy-gradient hypergradient
(:class:`irl_bilevel.shaping.PolicyGradientHypergradient`: REINFORCE weights from ``n`` rollouts × exact
``∂ log π/∂θ`` through the unrolled sweeps) against the exact unrolled one, relative error vs ``n`` over
several sampling seeds; finite differences as a reference of the exact one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from classic_rl.experiments import quiet_torchopt, relative_error
from classic_rl.testbeds import GridSettings, grid_distance_to, optimal_policy, sparse_gridworld
from irl_bilevel.config import (
    NonEmpty,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    experiment_settings,
)
from irl_bilevel.hypergradients import BilevelProblem, FiniteDifferenceHypergradient, UnrolledHypergradient
from irl_bilevel.precision import default_dtype
from irl_bilevel.rewards import FixedWeights, PotentialShaping, RewardModel, SimplexWeights, TabularReward
from irl_bilevel.runs import provenance, write_json
from irl_bilevel.shaping import (
    AdditiveShaping,
    CandidateSignals,
    FixedReward,
    PolicyGradientHypergradient,
    SweepBudgetSolver,
    TaskReturnObjective,
    learning_curve,
    potential_signal,
    shaping_bias,
    tabular_potential,
)
from irl_bilevel.solver import BilevelSolver, OuterConfig
from irl_bilevel.tabular import TabularMDP, expected_return

NAME = "learned_shaping"


@dataclass(frozen=True)
class LearnedShapingConfig(GridSettings):
    """Settings of the decision-aware shaping experiment on the sparse gridworld."""

    step_cost: float
    """reward per step before the goal"""
    temperature: PositiveFloat
    """τ of the inner soft value-iteration sweeps"""
    hand_potential_scale: float
    """c of the hand potential Φ(s) = −c · distance to the goal"""
    candidate_scale: float
    """scale of the candidate potential signals"""
    bonus_l2: NonNegativeFloat
    """L2 penalty weight of the free bonus"""
    budget: PositiveInt
    """inner sweep budget K"""
    curve_sweeps: PositiveInt
    """sweeps of the learning curves"""
    outer_steps: PositiveInt
    """Adam steps of the outer loop"""
    lr_potential: PositiveFloat
    """outer step size of the learned potential"""
    lr_weights: PositiveFloat
    """outer step size of the learned candidate weights"""
    lr_bonus: PositiveFloat
    """outer step size of the free bonus"""
    sample_sizes: Annotated[tuple[PositiveInt, ...], NonEmpty()]
    """rollouts of the policy-gradient hypergradient"""
    sample_repeats: PositiveInt
    """sampling seeds per rollout count"""


_COMMON: dict[str, Any] = {
    "slip": 0.1, "discount": 0.95, "step_cost": 0.01, "temperature": 0.05,
    "hand_potential_scale": 0.1, "candidate_scale": 1.5, "bonus_l2": 1e-2,
}
SCALES: dict[str, dict[str, Any]] = {
    "tiny": {**_COMMON, "size": 5, "budget": 4, "curve_sweeps": 12, "outer_steps": 15,
             "lr_potential": 0.1, "lr_weights": 0.3, "lr_bonus": 0.1,
             "sample_sizes": [100, 1000], "sample_repeats": 2},
    "quick": {**_COMMON, "size": 8, "budget": 8, "curve_sweeps": 40, "outer_steps": 150,
              "lr_potential": 0.05, "lr_weights": 0.1, "lr_bonus": 0.05,
              "sample_sizes": [100, 300, 1000, 3000, 10000, 30000, 100000], "sample_repeats": 5},
    "full": {**_COMMON, "size": 10, "budget": 10, "curve_sweeps": 60, "outer_steps": 500,
             "lr_potential": 0.05, "lr_weights": 0.1, "lr_bonus": 0.05,
             "sample_sizes": [100, 300, 1000, 3000, 10000, 30000, 100000], "sample_repeats": 5},
}
CONFIG = LearnedShapingConfig  # the typed settings; every SCALES entry validates into it (tests check)
CANDIDATES = ("goal_distance", "wrong_goal_distance", "column")


def _distances(size: int, row: int, col: int) -> torch.Tensor:
    """Manhattan distances of every cell to ``(row, col)``; 0 for the absorbing end state."""
    return torch.from_numpy(np.append(grid_distance_to(size, row, col), 0.0))


def candidate_tables(mdp: TabularMDP, size: int, scale: float) -> torch.Tensor:
    """``[3, S, A]`` potential-based candidate signals (so every weighting keeps optimal policies)."""
    span = 2.0 * (size - 1)
    column = torch.from_numpy(np.append(np.arange(size * size) % size, size - 1.0)) / (size - 1)
    potentials = [-_distances(size, 0, size - 1) / span, -_distances(size, size - 1, size - 1) / span, column]
    return torch.stack([potential_signal(mdp, scale * p) for p in potentials])


def _greedy_check(mdp: TabularMDP, shaped: torch.Tensor, true_actions: torch.Tensor) -> dict[str, Any]:
    """Exact (hard VI, float64) optimal actions under the shaped reward vs the task reward's."""
    actions = optimal_policy(mdp, reward=shaped.detach())
    onehot = torch.nn.functional.one_hot(actions, mdp.num_actions).to(mdp.start.dtype)
    assert mdp.true_reward is not None
    return {"optimal_actions_changed": int((actions != true_actions).sum()),
            "optimal_policy_preserved": bool(torch.equal(actions, true_actions)),
            "greedy_true_return": float(expected_return(mdp, onehot.log(), mdp.true_reward))}


def _shaped_table(model: RewardModel, inner: SweepBudgetSolver) -> torch.Tensor:
    with torch.no_grad():
        return inner.reward(model).detach().clone()


def _train(model: RewardModel, mdp: TabularMDP, config: LearnedShapingConfig, lr: float, l2: float,
           progress: bool) -> list[dict[str, Any]]:
    inner = SweepBudgetSolver(mdp, config.budget, config.temperature)
    problem = BilevelProblem(model, inner, TaskReturnObjective(mdp))

    def metrics() -> dict[str, Any]:
        aggregator = getattr(getattr(model, "shaping", None), "aggregator", None)
        if isinstance(aggregator, SimplexWeights):
            return {"weights": aggregator.weights.detach().tolist()}
        return {}

    initial = {"step": 0, "loss": float(problem.black_box_loss()), **metrics()}
    solver = BilevelSolver(problem, UnrolledHypergradient(config.budget, warm_start=False),
                           # The stop rule the results were made with: outer_steps, or an exactly zero gradient.
                           OuterConfig(steps=config.outer_steps, optimizer="adam", lr=lr, l2=l2, grad_tol=0.0,
                                       loss_rtol=0.0),
                           metrics=metrics, progress=progress)
    return [initial, *solver.run(resume=False).history]


def _hypergradient_accuracy(mdp: TabularMDP, config: LearnedShapingConfig, hand: torch.Tensor, seed: int,
                            progress: bool) -> dict[str, Any]:
    potential = tabular_potential(mdp.num_states)
    with torch.no_grad():
        potential.weight[0] = hand
    assert mdp.true_reward is not None
    model = PotentialShaping(FixedReward(mdp.true_reward), potential, mdp.discount)
    budget = config.budget
    problem = BilevelProblem(model, SweepBudgetSolver(mdp, budget, config.temperature), TaskReturnObjective(mdp))
    exact = UnrolledHypergradient(budget, warm_start=False).compute(problem)
    finite = FiniteDifferenceHypergradient(1e-6).compute(problem)
    exact_weights = PolicyGradientHypergradient(
        through=UnrolledHypergradient(budget, warm_start=False), exact=True).compute(problem)
    rows = []
    jobs = [(n, r) for n in config.sample_sizes for r in range(config.sample_repeats)]
    for n, repeat in tqdm(jobs, desc=f"{NAME}: sampled hypergradients", disable=not progress, leave=False):
        method = PolicyGradientHypergradient(n, through=UnrolledHypergradient(budget, warm_start=False),
                                             seed=1_000 * seed + repeat)
        started = time.perf_counter()
        sampled = method.compute(problem)
        rows.append({"num_trajectories": n, "repeat": repeat, "seconds": time.perf_counter() - started,
                     "relative_error": relative_error(sampled.flat(), exact.flat()),
                     "sampled_return": -sampled.loss})
    summary = []
    for n in config.sample_sizes:
        errors = [row["relative_error"] for row in rows if row["num_trajectories"] == n]
        summary.append({"num_trajectories": n, "mean_relative_error": float(np.mean(errors)),
                        "max_relative_error": float(np.max(errors))})
    return {"at": "hand_potential", "exact_return": -exact.loss, "exact_gradient_norm": float(exact.flat().norm()),
            "finite_difference_relative_error": relative_error(finite.flat(), exact.flat()),
            "exact_weights_relative_error": relative_error(exact_weights.flat(), exact.flat()),
            "rows": rows, "summary": summary}


def run(scale: str, results_dir: Path, seed: int = 0, progress: bool = True,
        config: LearnedShapingConfig | None = None) -> Path:
    """Run at ``scale`` (``tiny``, ``quick``, ``full``); writes ``results_dir/learned_shaping.json``."""
    settings = experiment_settings(LearnedShapingConfig, SCALES, scale, NAME, config)
    results_dir = Path(results_dir)
    record: dict[str, Any] = {"name": NAME, "scale": scale, "config": settings.to_dict(),
                              "provenance": provenance(seed), "candidates": list(CANDIDATES)}
    started = time.perf_counter()
    torch.manual_seed(seed)
    with default_dtype(torch.float64), quiet_torchopt():
        size = settings.size
        mdp = sparse_gridworld(size, settings.slip, settings.discount, settings.step_cost)
        assert mdp.true_reward is not None
        task = mdp.true_reward
        true_actions = optimal_policy(mdp)
        optimal_onehot = torch.nn.functional.one_hot(true_actions, mdp.num_actions).to(task.dtype)
        hand = -settings.hand_potential_scale * _distances(size, 0, size - 1)
        tables = candidate_tables(mdp, size, settings.candidate_scale)
        k = len(CANDIDATES)

        def potential_model(values: torch.Tensor | None) -> PotentialShaping:
            potential = tabular_potential(mdp.num_states)
            if values is not None:
                with torch.no_grad():
                    potential.weight[0] = values
            return PotentialShaping(FixedReward(task), potential, mdp.discount)

        models: dict[str, RewardModel] = {
            "none": FixedReward(task),
            "hand_potential": potential_model(hand),
            "fixed_candidates": AdditiveShaping(FixedReward(task),
                                                CandidateSignals(tables, CANDIDATES, FixedWeights([1.0 / k] * k))),
            "learned_weights": AdditiveShaping(FixedReward(task), CandidateSignals(tables, CANDIDATES)),
            "learned_potential": potential_model(None),
            "free_bonus": AdditiveShaping(FixedReward(task), TabularReward(mdp.num_states, mdp.num_actions)),
        }
        training = {"learned_weights": (settings.lr_weights, 0.0),
                    "learned_potential": (settings.lr_potential, 0.0),
                    "free_bonus": (settings.lr_bonus, settings.bonus_l2)}
        budget_solver = SweepBudgetSolver(mdp, settings.budget, settings.temperature)
        methods = []
        for name, model in tqdm(models.items(), desc=NAME, disable=not progress):
            history: list[dict[str, Any]] = []
            method_started = time.perf_counter()
            if name in training:
                lr, l2 = training[name]
                history = _train(model, mdp, settings, lr, l2, progress)
            shaped = _shaped_table(model, budget_solver)
            curve = learning_curve(mdp, shaped, task, settings.curve_sweeps, settings.temperature)
            entry: dict[str, Any] = {
                "method": name, "learned": name in training, "history": history,
                "curve": curve.tolist(), "return_at_budget": float(curve[settings.budget]),
                "shaped_reward": shaped.tolist(), "seconds": time.perf_counter() - method_started,
                **_greedy_check(mdp, shaped, true_actions),
                "soft_bias": shaping_bias(mdp, shaped, task, settings.temperature),
            }
            if name in ("hand_potential", "learned_potential"):
                assert isinstance(model, PotentialShaping) and isinstance(model.potential, torch.nn.Linear)
                entry["potential"] = model.potential.weight.detach()[0].tolist()
            if name in ("learned_weights", "fixed_candidates"):
                assert isinstance(model, AdditiveShaping)
                aggregator = model.shaping.aggregator
                assert isinstance(aggregator, (FixedWeights, SimplexWeights))
                entry["weights"] = aggregator.weights.detach().tolist()
            methods.append(entry)
        record["methods"] = methods
        record["mdp"] = {"name": mdp.name, "num_states": mdp.num_states, "num_actions": mdp.num_actions,
                         "discount": mdp.discount,
                         "optimal_return": float(expected_return(mdp, optimal_onehot.log(), task))}
        record["hypergradient_accuracy"] = _hypergradient_accuracy(mdp, settings, hand, seed, progress)
    record["seconds"] = time.perf_counter() - started
    path = results_dir / f"{NAME}.json"
    write_json(path, record)
    return path
