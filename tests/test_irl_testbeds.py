"""Acceptance: MaxEnt IRL through the bilevel solver on the gridworld and ObjectWorld."""

import pytest
import torch

from classic_rl.maxent_irl import make_reward_model, maxent_irl
from classic_rl.testbeds import gridworld, objectworld
from irl_bilevel.sampling import sample_trajectories
from irl_bilevel.solver import OuterConfig
from irl_bilevel.tabular import soft_value_iteration, state_action_occupancy

CASES = [("gridworld", "tabular"), ("gridworld", "linear"), ("objectworld", "tabular"), ("objectworld", "mlp")]


def expert_of(name):
    mdp = gridworld() if name == "gridworld" else objectworld(size=10, seed=0)
    log_policy = soft_value_iteration(mdp, mdp.true_reward).log_policy
    return mdp, log_policy


@pytest.mark.parametrize("testbed, reward_kind", CASES)
def test_maxent_irl_from_exact_occupancy(testbed, reward_kind):
    mdp, expert_policy = expert_of(testbed)
    torch.manual_seed(0)
    outcome = maxent_irl(mdp, state_action_occupancy(mdp, expert_policy), make_reward_model(reward_kind, mdp),
                         config=OuterConfig(100, "lbfgs"), expert_log_policy=expert_policy, occupancy_target=1e-4,
                         progress=False)
    assert outcome.metrics["occupancy_l1"] <= 1e-3
    assert outcome.metrics["normalized_return"] >= 0.99


@pytest.mark.parametrize("testbed", ["gridworld", "objectworld"])
def test_maxent_irl_from_100_demonstrations_degrades_gracefully(testbed):
    mdp, expert_policy = expert_of(testbed)
    demos = sample_trajectories(mdp, expert_policy, 100, 30, torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    outcome = maxent_irl(mdp, demos, make_reward_model("linear", mdp), config=OuterConfig(30, "lbfgs"),
                         expert_log_policy=expert_policy, progress=False)
    # Sample noise costs occupancy accuracy but little return (numbers: results/reward_recovery.json).
    assert outcome.metrics["normalized_return"] >= 0.9
    assert outcome.metrics["occupancy_l1"] <= 0.5
