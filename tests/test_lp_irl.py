"""Linear-programming IRL (Ng & Russell 2000, section 3)."""

import numpy as np
import pytest
import torch

from classic_rl.lp_irl import lp_irl
from classic_rl.testbeds import cliffworld, garnet, gridworld, optimal_policy
from irl_bilevel.validation import ValidationError


def q_values(mdp, reward, sweeps=3000):
    """Optimal Q [S, A] of a state reward by value iteration, float64."""
    transitions = mdp.dense_transitions().numpy()
    reward = np.asarray(reward, dtype=np.float64)
    q = np.zeros((mdp.num_states, mdp.num_actions))
    for _ in range(sweeps):
        q = reward[:, None] + mdp.discount * transitions @ q.max(1)
    return q


def test_lp_irl_recovers_the_gridworld_reward():
    mdp = gridworld()
    expert = optimal_policy(mdp)
    # On this gridworld every l1_penalty in [3.25, 5.75] yields exactly the true reward (1 in the corner, 0
    # elsewhere); below that window the LP returns denser rewards (see the test below), above it R = 0.
    reward = lp_irl(mdp, expert, l1_penalty=4.5)
    assert reward.shape == (25,)
    assert int(reward.argmax()) == 4  # row 0, col 4: the upper-right corner
    assert float(reward[4]) == pytest.approx(1.0)
    assert torch.equal(optimal_policy(mdp, reward=reward), expert)


def test_lp_irl_makes_the_expert_optimal_with_the_papers_penalty():
    mdp = gridworld()
    expert = optimal_policy(mdp)
    reward = lp_irl(mdp, expert)  # λ = 1.05 as in the paper
    assert float(reward.abs().max()) <= 1.0 + 1e-9
    q = q_values(mdp, reward.numpy())
    gap = q.max(1) - q[np.arange(25), expert.numpy()]
    assert gap.max() <= 1e-8  # the expert's action is optimal (possibly tied) in every state


def test_lp_irl_on_a_sparse_garnet():
    mdp = garnet(20, num_actions=3, branching=4, seed=1)
    expert = optimal_policy(mdp)
    reward = lp_irl(mdp, expert, l1_penalty=0.5, r_max=2.0)
    assert float(reward.abs().max()) <= 2.0 + 1e-9
    q = q_values(mdp, reward.numpy())
    assert (q.max(1) - q[np.arange(20), expert.numpy()]).max() <= 1e-8


def test_lp_irl_rejects_bad_inputs():
    mdp = gridworld(size=3)
    expert = optimal_policy(mdp)
    with pytest.raises(ValidationError, match="discounted"):
        lp_irl(cliffworld(), torch.zeros(28, dtype=torch.long))
    with pytest.raises(ValidationError, match="expert_policy"):
        lp_irl(mdp, expert[:-1])
    with pytest.raises(ValidationError, match="expert_policy"):
        lp_irl(mdp, torch.full((9,), 4))
    with pytest.raises(ValidationError, match="expert_policy"):
        lp_irl(mdp, expert.double())
    with pytest.raises(ValidationError, match="r_max"):
        lp_irl(mdp, expert, r_max=0.0)
    with pytest.raises(ValidationError, match="l1_penalty"):
        lp_irl(mdp, expert, l1_penalty=-1.0)
