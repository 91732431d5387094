"""The IRL benchmark's reward-quality column (``benchmarks/irl_vs_imitation.py``) and the EPIC coverage of
``classic_rl.gym_irl``: one coverage for every method, the true reward at distance 0 and its negation at 1, and
imitation's reward nets read in our featurization (no imitation install needed: a stand-in net)."""

from __future__ import annotations

import numpy as np
import torch
from conftest import load_benchmark

from classic_rl.experts import rollout_demonstrations
from classic_rl.gym_irl import epic_coverage
from classic_rl.true_rewards import TrueReward
from irl_bilevel.objectives import SampleMaxEntObjective
from irl_bilevel.rewards import Transitions

bench = load_benchmark("irl_vs_imitation")


def _episodes():
    # Stand-in demonstrations: a balancing heuristic (push towards the pole's lean), which survives a while.
    return rollout_demonstrations(lambda observation: int(observation[2] + observation[3] > 0), "CartPole-v1", 3,
                                  seed=5)


def test_the_coverage_is_fixed_and_the_true_reward_is_at_distance_zero():
    demonstrations = _episodes()
    first = epic_coverage("CartPole-v1", demonstrations, 0.99, seed=bench.EVAL_SEED)
    second = epic_coverage("CartPole-v1", demonstrations, 0.99, seed=bench.EVAL_SEED)
    torch.testing.assert_close(first.states, second.states)  # the same for every method and seed
    assert first.states.shape[1] == 4 + 1 and bool((first.states[:, -1] == 1).any())  # absorbing rows included
    expert_rows = len(SampleMaxEntObjective(demonstrations, 0.99, absorbing_indicator=True).transitions)
    assert expert_rows > 1000 and len(first) > 1000 + 100  # 1000 expert rows, then the random episodes' rows
    with_learner = epic_coverage("CartPole-v1", demonstrations, 0.99, learner=first.select(torch.arange(7)),
                                 seed=bench.EVAL_SEED)
    assert len(with_learner) == len(first) + 7
    truth = TrueReward("CartPole-v1", True)
    assert bench.epic_distance("CartPole-v1", truth, demonstrations, 0.99) < 1e-6
    assert bench.epic_distance("CartPole-v1", lambda batch: -truth(batch), demonstrations, 0.99) > 1 - 1e-6


def test_imitation_reward_nets_pay_zero_in_the_absorbing_state():
    class StandInNet:  # imitation's predict_processed signature: numpy in, numpy out
        def predict_processed(self, states, actions, next_states, dones):
            assert states.shape[1] == next_states.shape[1] == 4 and not dones.any()
            self.actions = actions
            return np.full(len(states), 2.0)

    states = torch.tensor([[0.1, 0.0, 0.0, 0.0, 0.0], [0.2, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 1.0]],
                          dtype=torch.float64)
    actions = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    net = StandInNet()
    reward = bench.imitation_reward_function(net, 4, discrete=True)
    values = reward(Transitions(states, actions, states))
    assert values.tolist() == [2.0, 2.0, 0.0] and net.actions.tolist() == [1, 0, 1]  # one-hot back to indices
    # As the benchmark uses it: a constant positive reward on live states is CartPole's true reward up to scale.
    assert bench.epic_distance("CartPole-v1", reward, _episodes(), 0.99) < 1e-6
