"""The classic-control true rewards on reward-model inputs (classic_rl.true_rewards): equal to what gymnasium pays on
the transitions gym_irl builds (learner side through LearnedRewardVecEnv, expert side through
SampleMaxEntObjective), absorbing rows paying 0, in both absorbing conventions; EPIC's invariances on them."""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3.common.env_util import make_vec_env

from classic_rl.experts import rollout_demonstrations
from classic_rl.learned_reward_env import LearnedRewardVecEnv, recorded_transitions
from classic_rl.true_rewards import KNOWN_ENVS, TrueReward, reward_epic_distance
from irl_bilevel.objectives import SampleMaxEntObjective
from irl_bilevel.reward_io import RewardSpec, build_reward_model
from irl_bilevel.rewards import Transitions
from irl_bilevel.validation import ValidationError

DISCOUNT = 0.99
TERMINATING = ("CartPole-v1", "Acrobot-v1", "MountainCar-v0", "MountainCarContinuous-v0")


def behaviour(env_id: str, seed: int) -> Callable[[np.ndarray], object]:
    """Random actions, mixed (20% random) with an energy-pumping heuristic where random play never reaches the goal,
    so that the terminating step and the absorbing rows are exercised."""
    rng = np.random.default_rng(seed)
    space = gym.make(env_id).action_space

    def act(obs: np.ndarray) -> object:
        if env_id == "Acrobot-v1" and rng.random() > 0.2:
            return 2 if obs[5] > 0 else 0  # torque along the second joint's velocity
        if env_id == "MountainCar-v0" and rng.random() > 0.2:
            return 2 if obs[1] > 0 else 0  # push along the velocity
        if env_id == "MountainCarContinuous-v0":
            return np.clip([np.sign(obs[1]) + 0.3 * rng.normal()], -1.0, 1.0).astype(np.float32)
        if isinstance(space, gym.spaces.Discrete):
            return int(rng.integers(space.n))
        return rng.uniform(space.low, space.high).astype(np.float32)

    return act


def learner_batch(env_id: str, indicator: bool, steps: int = 1500, seed: int = 0):
    """Step the env as SB3InnerSolver does (LearnedRewardVecEnv, absorbing termination) and return the recorded
    transitions in gym_irl's reward-model featurization (absorbing rows after the steps), the env's own rewards of
    the steps and how many steps terminated."""
    venv = make_vec_env(env_id, n_envs=1, seed=seed)
    env = LearnedRewardVecEnv(venv, DISCOUNT, "absorbing", record_steps=steps, absorbing_indicator=indicator)
    env.set_reward_model(build_reward_model(RewardSpec(input_dim=env.obs_dim + int(indicator), hidden_sizes=[4])))
    act = behaviour(env_id, seed)
    obs = env.reset()
    for _ in range(steps):
        action = act(obs[0])
        obs, *_ = env.step(np.asarray([action]))
    data = env.recorded()
    env.close()
    batch, _ = recorded_transitions(env, data, DISCOUNT)
    return batch, torch.from_numpy(data["true_rewards"]), int(data["terminated"].sum())


@pytest.mark.parametrize("indicator", [True, False])
@pytest.mark.parametrize("env_id", KNOWN_ENVS)
def test_the_true_reward_is_what_gymnasium_paid_on_learner_transitions(env_id, indicator):
    batch, paid, terminations = learner_batch(env_id, indicator)
    reward = TrueReward(env_id, absorbing_indicator=indicator)(batch)
    steps = len(paid)
    assert len(batch) == steps + terminations  # one absorbing row per terminated step
    if env_id in TERMINATING:
        assert terminations > 0, "the rollout must exercise the terminating step"
    torch.testing.assert_close(reward[:steps], paid, atol=1e-4, rtol=0)  # Pendulum: float32 observations
    assert torch.equal(reward[steps:], torch.zeros(terminations, dtype=torch.float64))  # the absorbing state pays 0
    if env_id == "Acrobot-v1":  # the step that reaches the goal pays 0, every other step -1
        assert set(reward[:steps].tolist()) == {0.0, -1.0}
    if env_id == "MountainCarContinuous-v0":
        assert int((reward[:steps] > 50).sum()) == terminations


@pytest.mark.parametrize("indicator", [True, False])
@pytest.mark.parametrize("env_id", KNOWN_ENVS)
def test_the_true_reward_sums_to_the_demonstrations_returns(env_id, indicator):
    demos = rollout_demonstrations(behaviour(env_id, 1), env_id, 3, seed=100)
    objective = SampleMaxEntObjective(demos, DISCOUNT, num_actions=demos.num_actions, absorbing=True,
                                      absorbing_indicator=indicator)
    reward = TrueReward(env_id, absorbing_indicator=indicator)(objective.transitions)
    steps = objective.num_steps
    torch.testing.assert_close(reward[:steps].sum(), demos.returns.sum(), atol=1e-3, rtol=1e-6)
    assert torch.equal(reward[steps:], torch.zeros(len(reward) - steps, dtype=torch.float64))
    if env_id in TERMINATING:
        assert len(reward) > steps


def test_the_clipping_rules_are_gymnasiums():
    """Pendulum clips the torque before its cost; MountainCarContinuous charges the unclipped action."""
    for env_id, action in (("Pendulum-v1", 3.0), ("Pendulum-v1", -0.7), ("MountainCarContinuous-v0", 1.5)):
        env = gym.make(env_id).unwrapped
        obs, _ = env.reset(seed=3)
        next_obs, paid, *_ = env.step(np.array([action], dtype=np.float32))
        states = torch.as_tensor(np.stack([obs, next_obs]), dtype=torch.float64)
        batch = Transitions(states[:1], torch.tensor([[action]], dtype=torch.float64), states[1:])
        assert TrueReward(env_id, absorbing_indicator=False)(batch).item() == pytest.approx(paid, abs=1e-5)


def shaped(reward: Callable[[Transitions], torch.Tensor], scale: float, discount: float):
    """``scale · R + γΦ(s') − Φ(s)`` with a nonlinear potential of the states."""

    def potential(states: torch.Tensor) -> torch.Tensor:
        return torch.sin(states).sum(-1) + 0.5 * states[:, 0] ** 2

    def function(batch: Transitions) -> torch.Tensor:
        assert batch.next_states is not None
        return scale * reward(batch) + discount * potential(batch.next_states) - potential(batch.states)

    return function


@pytest.mark.parametrize("env_id", KNOWN_ENVS)
def test_epic_is_zero_for_the_truth_and_its_shaped_rescaling_and_one_for_its_negation(env_id):
    batch, _, _ = learner_batch(env_id, True, steps=400)
    truth = TrueReward(env_id, absorbing_indicator=True)
    options = {"absorbing_indicator": True, "num_mean_samples": 64, "seed": 0}
    assert reward_epic_distance(truth, env_id, batch, DISCOUNT, **options) == pytest.approx(0.0, abs=1e-6)
    assert reward_epic_distance(shaped(truth, 3.0, DISCOUNT), env_id, batch, DISCOUNT,
                                **options) == pytest.approx(0.0, abs=1e-5)
    assert reward_epic_distance(lambda b: -truth(b), env_id, batch, DISCOUNT, **options) == pytest.approx(1.0,
                                                                                                           abs=1e-6)
    # An untrained reward model (a RewardModel, not a function: its inputs are cast to its dtype) lies in between.
    model = build_reward_model(RewardSpec(input_dim=truth.state_dim, hidden_sizes=[8]))
    assert 0.0 < reward_epic_distance(model, env_id, batch, DISCOUNT, **options) < 1.0


def test_bad_inputs_are_named():
    with pytest.raises(ValidationError, match=r"known envs.*CartPole-v1"):
        TrueReward("LunarLander-v3")
    with pytest.raises(ValidationError, match="known envs"):
        reward_epic_distance(lambda b: b.states[:, 0], "NoSuchEnv-v0", Transitions(torch.zeros(2, 5)), DISCOUNT)
    with pytest.raises(ValidationError, match="states: expected \\[2, 5\\]"):
        TrueReward("CartPole-v1", absorbing_indicator=True)(Transitions(torch.zeros(2, 4)))
    with pytest.raises(ValidationError, match="actions"):
        TrueReward("Pendulum-v1", absorbing_indicator=False)(Transitions(torch.zeros(2, 3)))
    with pytest.raises(ValidationError, match="next_states"):
        TrueReward("Acrobot-v1", absorbing_indicator=False)(Transitions(torch.zeros(2, 6), torch.eye(3)[:2]))


def test_without_the_indicator_a_discrete_absorbing_row_is_told_by_its_zero_action_vector():
    # (s, 0, s) with s a non-terminal observation (e.g. one rounded onto the safe side of a threshold): absorbing.
    state = torch.tensor([[0.1, 0.0, 0.02, 0.0]], dtype=torch.float64)
    truth = TrueReward("CartPole-v1", absorbing_indicator=False)
    assert truth(Transitions(state, torch.zeros(1, 2), state)).item() == 0.0
    assert truth(Transitions(state, torch.tensor([[0.0, 1.0]]), state)).item() == 1.0
