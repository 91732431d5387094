"""MaxEnt / maximum-causal-entropy IRL on tabular MDPs through the bilevel solver.

Outer: the negative MaxEnt log-likelihood of the expert (``MaxEntDemonstrationLoss``). Inner: exact soft
value iteration (``SoftValueIterationSolver``). Hypergradient: any method of ``irl_bilevel.hypergradients``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from irl_bilevel.feedback import Trajectories
from irl_bilevel.hypergradients import BilevelProblem, HypergradientMethod, MaxEntHypergradient
from irl_bilevel.inner import SoftValueIterationSolver
from irl_bilevel.metrics import epic_distance, normalized_return, occupancy_l1
from irl_bilevel.objectives import MaxEntDemonstrationLoss
from irl_bilevel.rewards import LinearReward, MLPReward, RewardModel, TabularReward
from irl_bilevel.sampling import empirical_occupancy
from irl_bilevel.solver import BilevelResult, BilevelSolver, OuterConfig
from irl_bilevel.tabular import TabularMDP
from irl_bilevel.validation import ValidationError

REWARD_MODELS = ("linear", "mlp", "tabular")
# ``occupancy_l1``: ``‖d_E − d_π‖₁`` of the normalized state-action occupancies (per time step for finite
# horizons). ``state_visitation_linf``: ``max_s |D_E(s) − D_π(s)|`` of the expected state-visit counts
# ``state_visitation`` — the quantity imitation's ``MCEIRL.train`` stops on (its ``linf_eps``).
STOP_METRICS = ("occupancy_l1", "state_visitation_linf")


def make_reward_model(
    kind: str, mdp: TabularMDP, state_action: bool = False, hidden_sizes: tuple[int, ...] = (32, 32)
) -> RewardModel:
    """A reward model over the MDP's state features (with one-hot actions appended if ``state_action``)."""
    feature_dim = mdp.features.shape[1] + (mdp.num_actions if state_action else 0)
    if kind == "linear":
        return LinearReward(feature_dim, uses_actions=state_action)
    if kind == "mlp":
        return MLPReward(feature_dim, hidden_sizes, uses_actions=state_action)
    if kind == "tabular":
        return TabularReward(mdp.num_states, mdp.num_actions if state_action else None)
    raise ValidationError(f"reward_model: unknown kind {kind!r}; expected one of {REWARD_MODELS}")


def state_visitation(mdp: TabularMDP, occupancy: torch.Tensor) -> torch.Tensor:
    """Expected discounted visits of every state, ``D(s) = Σ_t γ^t Pr(s_t = s)``, from a normalized occupancy.

    Finite horizon (``occupancy [H, S, A]``): over ``t = 0..H``, *including* the state reached after the last
    action, as imitation's ``mce_occupancy_measures`` counts them (its ``Dcum``); sums to ``Σ_{t≤H} γ^t``
    (``H + 1`` undiscounted). Discounted (``occupancy [S, A]``): ``Σ_{t≥0} γ^t Pr(s_t = s)``, summing to
    ``1 / (1 − γ)``.
    """
    if not mdp.is_finite_horizon:
        return occupancy.sum(-1) / (1.0 - mdp.discount)
    assert mdp.horizon is not None
    per_step = occupancy * sum(mdp.discount**t for t in range(mdp.horizon))  # γ^t Pr(s_t = s, a_t = a)
    return per_step.sum(dim=(0, 2)) + mdp.discount * mdp.push_forward(per_step[-1])


@dataclass
class IRLOutcome:
    reward_model: RewardModel
    learned_reward: torch.Tensor
    result: BilevelResult
    metrics: dict[str, float]


def maxent_irl(
    mdp: TabularMDP,
    expert: torch.Tensor | Trajectories,
    reward_model: RewardModel,
    method: HypergradientMethod | None = None,
    config: OuterConfig | None = None,
    output_dir: str | Path | None = None,
    expert_log_policy: torch.Tensor | None = None,
    occupancy_target: float | None = None,
    temperature: float = 1.0,
    progress: bool = True,
    stop_metric: str = "occupancy_l1",
    log_epic: bool = True,
) -> IRLOutcome:
    """Learn ``reward_model`` so that the soft-optimal policy reproduces the expert.

    ``expert``: the expert's normalized occupancy (``[S, A]`` / ``[H, S, A]``) or demonstrations.
    ``occupancy_target``: stop once ``stop_metric`` falls to it or below: ``occupancy_l1`` (``‖d_E − d_π‖₁``)
    or ``state_visitation_linf`` (``max_s |D_E(s) − D_π(s)|`` of the state-visit counts, imitation's
    ``MCEIRL`` stop rule); both are logged every step. ``expert_log_policy`` (the demonstrator) enables the
    normalized-return metric when ``mdp.true_reward`` is known. ``log_epic``: log the EPIC distance to
    ``mdp.true_reward`` every step (``O(S·A)``; off for timing runs that should not pay for metrics).
    """
    if stop_metric not in STOP_METRICS:
        raise ValidationError(f"stop_metric: expected one of {STOP_METRICS}, got {stop_metric!r}")
    expert_occupancy = expert if isinstance(expert, torch.Tensor) else empirical_occupancy(mdp, expert)
    objective = MaxEntDemonstrationLoss(mdp, expert_occupancy)
    expert_visits = state_visitation(mdp, objective.expert_occupancy)
    inner = SoftValueIterationSolver(mdp, temperature=temperature)
    problem = BilevelProblem(reward_model, inner, objective)

    def metrics() -> dict[str, float]:
        occupancy = inner.occupancy()
        row = {"occupancy_l1": occupancy_l1(occupancy, expert_occupancy),
               "state_visitation_linf": float((state_visitation(mdp, occupancy) - expert_visits).abs().max())}
        if log_epic and mdp.true_reward is not None:
            with torch.no_grad():
                learned = inner.reward(reward_model)
            row["epic"] = epic_distance(
                learned,
                mdp.true_reward,
                mdp.num_states,
                mdp.num_actions,
                mdp.discount if mdp.discount < 1 else 0.99,
            )
        return row

    def stop_when(row: dict[str, Any]) -> bool:
        return occupancy_target is not None and row[stop_metric] <= occupancy_target

    solver = BilevelSolver(
        problem, method or MaxEntHypergradient(), config, output_dir, metrics, stop_when, progress
    )
    result = solver.run()
    with torch.no_grad():
        learned_reward = reward_model.reward_table(mdp.features, mdp.num_actions, mdp.expected_next)
    final = dict(result.history[-1]) if result.history else metrics()
    if expert_log_policy is not None and mdp.true_reward is not None:
        final["normalized_return"] = normalized_return(mdp, learned_reward, expert_log_policy, temperature)
    return IRLOutcome(reward_model, learned_reward, result, final)
