"""PEBBLE's state-entropy exploration reward against a brute-force k-NN, and the inner solver that trains on it
until the first decided label."""

from __future__ import annotations

import math

import pytest
import torch

from classic_rl.preference_rl import ExploringInnerSolver, PreferenceRLConfig
from classic_rl.sb3_inner import SB3InnerSolver
from irl_bilevel.exploration import StateEntropyReward
from irl_bilevel.rewards import MLPReward, Transitions
from irl_bilevel.validation import ValidationError


def _brute_force_log_distance(state: torch.Tensor, reference: torch.Tensor, k: int) -> float:
    distances = sorted(float(torch.sqrt(((state - row) ** 2).sum())) for row in reference)
    return math.log(1.0 + distances[k - 1])


def test_novelty_is_the_standardized_log_distance_to_the_kth_neighbour():
    generator = torch.Generator().manual_seed(0)
    reference = torch.randn(40, 3, generator=generator, dtype=torch.float64)
    queries = torch.randn(7, 3, generator=generator, dtype=torch.float64) * 3
    reward = StateEntropyReward(3, k=4)
    reward.set_reference(reference)
    # The reference statistics count each reference state against the others (its own copy left out).
    own = torch.tensor([_brute_force_log_distance(row, torch.cat([reference[:i], reference[i + 1:]]), 4)
                        for i, row in enumerate(reference)], dtype=torch.float64)
    expected = torch.tensor([_brute_force_log_distance(q, reference, 4) for q in queries], dtype=torch.float64)
    expected = (expected - own.mean()) / own.std()
    got = reward(Transitions(queries)).total
    torch.testing.assert_close(got, expected)
    # Standardized: over the reference itself (each against the others) the mean is 0 and the std 1.
    assert abs(float(own.mean() - reward.center)) < 1e-12
    # Far states are more novel than states inside the reference cloud.
    far = reward(Transitions(torch.full((1, 3), 10.0, dtype=torch.float64))).total
    assert float(far) > float(got.min())


def test_the_absorbing_state_pays_zero_and_bad_inputs_are_named():
    reference = torch.cat([torch.randn(20, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64),
                           torch.zeros(20, 1, dtype=torch.float64)], dim=1)
    reward = StateEntropyReward(3, k=2, absorbing_indicator=True)
    with pytest.raises(RuntimeError, match="set_reference"):
        reward(Transitions(reference[:2]))
    reward.set_reference(reference)
    absorbing = torch.tensor([[0.0, 0.0, 1.0], [5.0, 5.0, 0.0]], dtype=torch.float64)
    values = reward(Transitions(absorbing)).total
    assert float(values[0]) == 0.0 and float(values[1]) > 1.0
    with pytest.raises(ValidationError, match="real states"):
        reward.set_reference(torch.cat([reference, absorbing[:1]]))
    with pytest.raises(ValidationError, match=r"\[N, 3\]"):
        reward.set_reference(reference[:, :2])
    with pytest.raises(ValidationError, match="more than k"):
        reward.set_reference(reference[:2])
    bad = reference.clone()
    bad[0, 0] = math.nan
    with pytest.raises(ValidationError, match="NaN"):
        reward.set_reference(bad)
    with pytest.raises(ValidationError, match="k"):
        StateEntropyReward(3, k=0)
    with pytest.raises(ValidationError, match="exploration"):
        PreferenceRLConfig(exploration="curiosity")
    with pytest.raises(ValidationError, match="exploration_neighbours"):
        PreferenceRLConfig(exploration="state_entropy", exploration_neighbours=0)


def test_the_inner_solver_explores_until_the_first_label():
    inner = SB3InnerSolver("CartPole-v1", "ppo", 64, hyperparameters={"n_steps": 64, "batch_size": 64, "n_epochs": 1},
                           learner_steps=64, absorbing_indicator=True)
    feedback = {"now": False}
    solver = ExploringInnerSolver(inner, lambda: feedback["now"], neighbours=3, reference_size=100)
    learned = MLPReward(5, [4])
    try:
        solver.solve(learned)  # nothing recorded yet: the learned reward, as without exploration
        assert inner.env.reward_model is learned and solver.exploring_solves == 0
        solver.solve(learned)
        solver.solve(learned)
        assert inner.env.reward_model is solver.exploration and solver.exploring_solves == 2
        assert solver.states is not None and len(solver.states) == 100  # the last reference_size states
        torch.testing.assert_close(torch.from_numpy(solver.states[-64:]),
                                   torch.from_numpy(inner.env.recorded()["states"]))
        feedback["now"] = True
        solver.solve(learned)
        assert inner.env.reward_model is learned and solver.exploring_solves == 2
        assert solver.env is inner.env and solver.env_steps == 4 * 64  # everything else is the wrapped solver's
    finally:
        inner.close()
    with pytest.raises(ValidationError, match="reference_size"):
        ExploringInnerSolver(inner, lambda: False, neighbours=5, reference_size=5)
