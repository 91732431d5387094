import pytest
import torch
from conftest import random_mdp

from irl_bilevel.sampling import empirical_occupancy, sample_trajectories
from irl_bilevel.tabular import (
    TabularMDP,
    expected_return,
    feature_expectations,
    soft_bellman_operator,
    soft_value_iteration,
    state_action_occupancy,
)
from irl_bilevel.validation import ValidationError


@pytest.mark.parametrize("horizon", [None, 7])
def test_soft_value_iteration_is_a_fixed_point_and_policy_normalized(horizon):
    mdp = random_mdp(horizon=horizon)
    solution = soft_value_iteration(mdp, mdp.true_reward)
    assert torch.allclose(soft_bellman_operator(mdp, mdp.true_reward, solution.q), solution.q, atol=1e-9)
    assert torch.allclose(solution.log_policy.exp().sum(-1), torch.ones(()), atol=1e-12)


def test_sparse_and_dense_transitions_agree():
    sparse = random_mdp(sparse=True, num_states=8)
    dense = TabularMDP(transitions=sparse.dense_transitions(), start=sparse.start, discount=sparse.discount,
                       state_features=sparse.state_features, true_reward=sparse.true_reward)
    a = soft_value_iteration(sparse, sparse.true_reward)
    b = soft_value_iteration(dense, dense.true_reward)
    assert torch.allclose(a.q, b.q, atol=1e-9)
    assert torch.allclose(state_action_occupancy(sparse, a.log_policy), state_action_occupancy(dense, b.log_policy))


@pytest.mark.parametrize("horizon", [None, 5])
def test_occupancy_matches_rollouts_and_return(horizon):
    mdp = random_mdp(horizon=horizon, num_states=4, num_actions=2)
    log_policy = soft_value_iteration(mdp, mdp.true_reward).log_policy
    exact = state_action_occupancy(mdp, log_policy)
    assert float(exact.sum()) == pytest.approx(1.0)
    length = horizon or 200
    samples = sample_trajectories(mdp, log_policy, 4000, length, torch.Generator().manual_seed(0))
    estimate = empirical_occupancy(mdp, samples)
    assert float((estimate - exact).abs().sum()) < 0.05
    # The return is the occupancy-weighted reward.
    unnormalized = state_action_occupancy(mdp, log_policy, normalize=False)
    reward = mdp.broadcast_reward(mdp.true_reward)
    expected = float((unnormalized * reward).sum())
    assert float(expected_return(mdp, log_policy, mdp.true_reward)) == pytest.approx(expected)


def test_maxent_gradient_identity_is_occupancy_difference():
    """∇_r of the MaxEnt log-likelihood is d_E − d_π (a test oracle)."""
    mdp = random_mdp(num_states=5, num_actions=3)
    expert = state_action_occupancy(mdp, soft_value_iteration(mdp, mdp.true_reward).log_policy)
    reward = torch.zeros(5, 3, requires_grad=True)
    solution = soft_value_iteration(mdp, reward, tol=1e-13)
    likelihood = (expert * solution.log_policy).sum()
    (gradient,) = torch.autograd.grad(likelihood, reward)
    learner = state_action_occupancy(mdp, solution.log_policy.detach())
    assert torch.allclose(gradient, expert - learner, atol=1e-8)


def test_feature_expectations_shapes():
    mdp = random_mdp()
    occupancy = state_action_occupancy(mdp, soft_value_iteration(mdp, mdp.true_reward).log_policy)
    assert feature_expectations(occupancy, mdp.state_features).shape == (4,)


@pytest.mark.parametrize(
    "change, field",
    [
        (dict(transitions=torch.ones(3, 2, 3)), "transitions"),
        (dict(transitions=torch.full((3, 2, 4), 0.25)), "transitions"),
        (dict(start=torch.tensor([0.5, 0.6, 0.0])), "start"),
        (dict(start=torch.ones(4) / 4), "start"),
        (dict(discount=1.0), "discount"),
        (dict(state_features=torch.tensor([[float("nan")], [0.0], [1.0]])), "state_features"),
        (dict(true_reward=torch.zeros(2)), "true_reward"),
        (dict(horizon=0), "horizon"),
    ],
)
def test_bad_mdp_inputs_name_the_field(change, field):
    arguments = dict(transitions=torch.full((3, 2, 3), 1 / 3), start=torch.ones(3) / 3, discount=0.9)
    arguments.update(change)
    with pytest.raises(ValidationError, match=field):
        TabularMDP(**arguments)


def test_reward_of_wrong_shape_is_rejected():
    mdp = random_mdp()
    with pytest.raises(ValidationError, match="reward"):
        soft_value_iteration(mdp, torch.zeros(7))


def test_tabular_policy_from_the_inner_solver():
    from irl_bilevel.inner import Policy, SoftValueIterationSolver
    from irl_bilevel.rewards import TabularReward

    mdp = random_mdp()
    solver = SoftValueIterationSolver(mdp)
    solver.solve(TabularReward(mdp.num_states))
    policy = solver.policy
    assert isinstance(policy, Policy)
    states = torch.tensor([0, 1, 2])
    actions = policy.act(states, torch.Generator().manual_seed(0))
    assert actions.shape == (3,)
    # A zero reward gives the uniform policy.
    assert torch.allclose(policy.log_prob(states, actions), torch.full((3,), -torch.log(torch.tensor(3.0))))
