"""The SB3 inner solver: the learned-reward wrapper, termination as an absorbing state, learner expectations,
and an ML-IRL smoke run on CartPole-v1 through the bilevel solver (checkpoint and resume)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

from classic_rl.experts import rollout_demonstrations
from classic_rl.learned_reward_env import AbsorbingAnchoredReward, LearnedRewardVecEnv
from classic_rl.sb3_inner import SB3InnerSolver
from irl_bilevel.hypergradients import BilevelProblem, MaxEntHypergradient
from irl_bilevel.inner import InnerSolver, Policy
from irl_bilevel.objectives import SampleMaxEntObjective, absorbing_transitions
from irl_bilevel.rewards import LinearReward, MLPReward, RewardModel, Transitions
from irl_bilevel.runs import load_checkpoint
from irl_bilevel.solver import BilevelSolver, OuterConfig
from irl_bilevel.validation import ValidationError

GAMMA = 0.9
TINY_PPO = {"n_steps": 64, "batch_size": 64, "n_epochs": 2, "gamma": GAMMA}


class Constant(RewardModel):
    """``r = c`` everywhere; records the ``dones`` it was given."""

    def __init__(self, value: float) -> None:
        super().__init__(("reward",), None, uses_actions=True)
        self.value = torch.nn.Parameter(torch.tensor(value))
        self.seen_dones: list[torch.Tensor] = []

    def aspect_rewards(self, batch: Transitions) -> torch.Tensor:
        if batch.dones is not None:
            self.seen_dones.append(batch.dones.clone())
        return self.value.expand(len(batch), 1)


def _venv(termination: str, max_episode_steps: int | None = None) -> LearnedRewardVecEnv:
    def make():
        return Monitor(gym.make("CartPole-v1", max_episode_steps=max_episode_steps))

    venv = DummyVecEnv([make])
    venv.seed(3)
    return LearnedRewardVecEnv(venv, GAMMA, termination, record_steps=1000)


def _episode(env: LearnedRewardVecEnv, action: int = 0, alternate: bool = False):
    env.reset()
    rewards, infos = [], []
    for step in range(1000):
        chosen = (step % 2) if alternate else action
        _, reward, done, info = env.step(np.array([chosen]))
        rewards.append(float(reward[0]))
        infos.append(info[0])
        if done[0]:
            return np.asarray(rewards), infos
    raise AssertionError("episode did not end")


def test_wrapper_replaces_the_reward_by_the_models_total():
    env = _venv("none")
    model = LinearReward(6, uses_actions=True, bias=True)
    with torch.no_grad():
        model.linear.weight.copy_(torch.tensor([[0.5, -1.0, 2.0, 0.25, 0.3, -0.7]]))
        model.linear.bias.fill_(0.1)
    env.set_reward_model(model)
    observation = env.reset()
    for action in (1, 0, 1):
        _, reward, _, info = env.step(np.array([action]))
        expected = model(Transitions(torch.as_tensor(observation, dtype=torch.float64),
                                     torch.eye(2, dtype=torch.float64)[[action]])).total.detach()
        assert reward[0] == pytest.approx(float(expected), rel=1e-5)
        assert info[0]["true_reward"] == 1.0
        observation = env._observations  # the observation the next action is taken in
    env.close()


@pytest.mark.parametrize("value", [1.0, -1.0])
def test_absorbing_termination_makes_every_episode_worth_the_same(value):
    env = _venv("absorbing")
    model = Constant(value)
    env.set_reward_model(model)
    rewards, infos = _episode(env, action=0)  # pushing left: falls over (terminated, not truncated)
    assert not infos[-1].get("TimeLimit.truncated", False)
    assert rewards[:-1] == pytest.approx(value) and rewards[-1] == pytest.approx(value / (1 - GAMMA))
    discounted = sum(GAMMA**t * r for t, r in enumerate(rewards))
    assert discounted == pytest.approx(value / (1 - GAMMA), rel=1e-5)  # independent of when the episode ends
    assert not any(bool(d.any()) for d in model.seen_dones)  # the episode continues in the absorbing state
    data = env.recorded()
    assert bool(data["terminated"][-1]) and data["time"][-1] == len(rewards) - 1
    env.close()


def test_plain_termination_is_the_biased_convention_and_truncation_is_never_absorbing():
    env = _venv("none")
    model = Constant(-1.0)
    env.set_reward_model(model)
    rewards, _ = _episode(env, action=0)
    assert rewards == pytest.approx(-1.0)  # ending early is worth more: the termination bias
    assert bool(model.seen_dones[-1].all())
    env.close()

    env = _venv("absorbing", max_episode_steps=4)
    env.set_reward_model(Constant(-1.0))
    rewards, infos = _episode(env, alternate=True)
    assert infos[-1]["TimeLimit.truncated"] and len(rewards) == 4
    assert rewards == pytest.approx(-1.0)  # no absorbing value after a time limit
    assert not env.recorded()["terminated"].any()
    env.close()


def test_bad_reward_models_and_inputs_name_the_field():
    env = _venv("absorbing")
    with pytest.raises(ValidationError, match="reward_model"):
        env.set_reward_model(LinearReward(5, uses_actions=False))
    with pytest.raises(ValidationError, match="reward_model"):
        env.set_reward_model(LinearReward(4, uses_actions=True))
    nan_model = Constant(float("nan"))
    env.set_reward_model(nan_model)
    env.reset()
    with pytest.raises(ValidationError, match="non-finite"):
        env.step(np.array([0]))
    env.close()
    with pytest.raises(ValidationError, match="env_id"):
        SB3InnerSolver("NoSuchEnv-v0")
    with pytest.raises(ValidationError, match="algorithm"):
        SB3InnerSolver("CartPole-v1", algorithm="trpo")
    with pytest.raises(ValidationError, match="algorithm: sac cannot act"):
        SB3InnerSolver("CartPole-v1", algorithm="sac")
    with pytest.raises(ValidationError, match="hyperparameters"):
        SB3InnerSolver("CartPole-v1", hyperparameters={"no_such_option": 1})
    with pytest.raises(ValidationError, match="termination"):
        SB3InnerSolver("CartPole-v1", termination="sometimes")
    with pytest.raises(ValidationError, match="env_steps_per_outer_step"):
        SB3InnerSolver("CartPole-v1", env_steps_per_outer_step=0)


def test_inner_solver_warm_starts_and_gives_a_differentiable_learner_expectation():
    inner = SB3InnerSolver("CartPole-v1", env_steps_per_outer_step=128, hyperparameters=TINY_PPO, seed=0)
    assert isinstance(inner, InnerSolver) and isinstance(inner.policy, Policy)
    with pytest.raises(ValidationError, match="reward_model"):
        inner.solve(MLPReward(3))
    model = MLPReward(4, (8,))
    inner.solve(model)
    policy_object = inner.model.policy
    before = {k: v.clone() for k, v in policy_object.state_dict().items()}
    inner.solve(model)
    assert inner.model.policy is policy_object and inner.model.num_timesteps == 256  # continued, not restarted
    assert any(not torch.equal(before[k], v) for k, v in policy_object.state_dict().items())

    expectation = inner.learner_reward_expectation(model)
    (gradient,) = torch.autograd.grad(expectation, [model.network[-1].bias])
    assert gradient.item() == pytest.approx(1.0)  # d/db of a weighted mean of (· + b)
    batch, weights = inner.learner_transitions()
    assert len(batch) == len(weights) >= 64
    manual = (weights * model(batch).total).sum() / weights.sum()
    assert float(expectation.detach()) == pytest.approx(float(manual.detach()))
    sampled = inner.learner_reward_expectation(model, num_samples=16, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(sampled)
    assert inner.log_partition() is None
    log_prob = inner.policy.log_prob(batch.states[:5], batch.actions[:5])
    assert log_prob.shape == (5,) and bool((log_prob <= 0).all())

    import io

    buffer = io.BytesIO()
    torch.save(inner.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)  # tensors and plain containers only
    fresh = SB3InnerSolver("CartPole-v1", env_steps_per_outer_step=128, hyperparameters=TINY_PPO, seed=1)
    fresh.load_state_dict(state)
    for key, value in inner.model.policy.state_dict().items():
        assert torch.equal(value, fresh.model.policy.state_dict()[key])
    assert fresh.model.num_timesteps == 256 and fresh.solves == inner.solves
    optimizer_state = fresh.model.policy.optimizer.state_dict()["state"]
    assert list(state["optimizers"]) == ["policy.optimizer"]
    for key, moments in inner.model.policy.optimizer.state_dict()["state"].items():
        assert torch.equal(moments["exp_avg"], optimizer_state[key]["exp_avg"])
    inner.close()
    fresh.close()


def test_learner_solves_keeps_the_samples_of_the_last_k_solves():
    """learner_solves = k: the learner expectation averages the last k solves' transitions (a mixture of the recent
    policies), one solve's by default."""
    model = MLPReward(4, (8,))
    inner = SB3InnerSolver("CartPole-v1", env_steps_per_outer_step=64, hyperparameters=TINY_PPO, seed=0,
                           learner_solves=3)
    single = SB3InnerSolver("CartPole-v1", env_steps_per_outer_step=64, hyperparameters=TINY_PPO, seed=0)
    try:
        kept = []
        for solve in range(4):
            inner.solve(model)
            single.solve(model)
            kept.append(inner.env.recorded()["states"][-64:].copy())
            assert len(inner.env.recorded()["states"]) == 64 * min(solve + 1, 3)
            assert len(single.env.recorded()["states"]) == 64
        # the window is the last three solves, oldest first
        np.testing.assert_array_equal(inner.env.recorded()["states"], np.concatenate(kept[1:]))
        assert len(inner.learner_transitions()[0]) >= 3 * 64
    finally:
        inner.close()
        single.close()
    with pytest.raises(ValidationError, match="learner_solves"):
        SB3InnerSolver("CartPole-v1", hyperparameters=TINY_PPO, learner_solves=0)


def test_occupancy_discount_sets_the_learner_weights_and_not_the_rl_discount():
    inner = SB3InnerSolver("CartPole-v1", env_steps_per_outer_step=64, hyperparameters=TINY_PPO, seed=0,
                           occupancy_discount=0.999)
    try:
        inner.solve(MLPReward(4, (8,)))
        assert inner.model.gamma == GAMMA and inner.discount == GAMMA
        data = inner.env.recorded()
        _, weights = inner.learner_transitions()
        steps = len(data["time"])
        torch.testing.assert_close(weights[:steps], torch.from_numpy(0.999 ** data["time"].astype(np.float64)))
        ended = data["time"][data["terminated"]]
        torch.testing.assert_close(weights[steps:], torch.from_numpy(0.999 ** (ended + 1.0) / (1 - 0.999)))
    finally:
        inner.close()
    with pytest.raises(ValidationError, match="occupancy_discount"):
        SB3InnerSolver("CartPole-v1", hyperparameters=TINY_PPO, occupancy_discount=1.0)


def test_sample_objective_weights_and_absorbing_rows():
    demos = rollout_demonstrations(lambda observation: 0, "CartPole-v1", 2, seed=1)
    objective = SampleMaxEntObjective(demos, GAMMA)
    steps = int(demos.lengths.sum())
    assert len(objective.transitions) == steps + 2  # one absorbing row per terminated episode
    expected_absorbing = GAMMA ** demos.lengths.double() / (1 - GAMMA)
    assert torch.allclose(objective.weights[steps:], expected_absorbing)
    assert not bool(objective.transitions.dones.any())
    assert torch.equal(objective.transitions.actions[steps:], torch.zeros(2, 2, dtype=torch.float32))
    # A constant reward gives its constant; the expectation is differentiable.
    model = Constant(2.5)
    value = objective.expert_reward_expectation(None, model)
    assert float(value.detach()) == pytest.approx(2.5)
    (gradient,) = torch.autograd.grad(value, [model.value])
    assert float(gradient) == pytest.approx(1.0)
    plain = SampleMaxEntObjective(demos, GAMMA, absorbing=False)
    assert len(plain.transitions) == steps and int(plain.transitions.dones.sum()) == 2
    assert torch.isnan(objective.evaluate(object()))
    with pytest.raises(ValidationError, match="objective"):
        objective.loss(torch.zeros(3))
    with pytest.raises(ValidationError, match="discount"):
        SampleMaxEntObjective(demos, 1.0)


def test_ml_irl_smoke_run_checkpoints_and_resumes(tmp_path):
    demos = rollout_demonstrations(lambda observation: int(observation[2] > 0), "CartPole-v1", 4, seed=0)

    def build():
        torch.manual_seed(0)
        inner = SB3InnerSolver("CartPole-v1", env_steps_per_outer_step=128, hyperparameters=TINY_PPO, seed=0)
        objective = SampleMaxEntObjective(demos, GAMMA)
        return inner, BilevelProblem(MLPReward(4, (8,)), inner, objective)

    inner, problem = build()
    solver = BilevelSolver(problem, MaxEntHypergradient(), OuterConfig(steps=2, optimizer="adam", lr=1e-2,
                           checkpoint_every=1), output_dir=tmp_path, progress=False)
    result = solver.run()
    assert result.steps == 2 and all(np.isfinite(row["loss"]) for row in result.history)
    state = load_checkpoint(tmp_path / "checkpoint.pt")  # weights_only=True
    assert state["step"] == 2 and "policy.action_net.weight" in state["inner"]
    assert inner.model.num_timesteps >= 3 * 128
    trained = [p.detach().clone() for p in problem.parameters]
    inner.close()

    inner, problem = build()
    resumed = BilevelSolver(problem, MaxEntHypergradient(), OuterConfig(steps=3, optimizer="adam", lr=1e-2,
                            checkpoint_every=1), output_dir=tmp_path, progress=False)
    assert resumed.try_resume() and resumed.step == 2
    for before, after in zip(trained, problem.parameters):
        assert torch.equal(before, after.detach())
    assert torch.equal(inner.model.policy.action_net.weight, state["inner"]["policy.action_net.weight"])
    final = resumed.run()
    assert final.steps == 3 and len(final.history) == 3
    assert (tmp_path / "summary.json").exists()
    inner.close()


def test_sac_relabels_its_replay_buffer_with_the_current_reward():
    inner = SB3InnerSolver("Pendulum-v1", "sac", env_steps_per_outer_step=64, seed=0,
                           hyperparameters={"learning_starts": 32, "batch_size": 32, "buffer_size": 1000,
                                            "gamma": GAMMA, "policy_kwargs": {"net_arch": [16, 16]}})
    first = LinearReward(4, uses_actions=True)
    with torch.no_grad():
        first.linear.weight.copy_(torch.tensor([[1.0, -0.5, 0.25, 0.75]]))
    inner.solve(first)
    buffer = inner.model.replay_buffer
    size = buffer.pos
    assert size == 64 and inner.model.num_timesteps == 64
    states = torch.as_tensor(buffer.observations[:size, 0], dtype=torch.float64)
    env_actions = torch.as_tensor(2.0 * buffer.actions[:size, 0], dtype=torch.float64)  # Box [-2, 2], stored scaled
    expected = first(Transitions(states, env_actions)).total.detach().numpy()
    assert np.allclose(buffer.rewards[:size, 0], expected, rtol=1e-5, atol=1e-6)  # labelled while stepping

    second = Constant(-3.0)
    inner.env.set_reward_model(second)
    assert inner.relabel_replay_buffer() == 64
    assert np.allclose(buffer.rewards[:size, 0], -3.0)  # Pendulum never terminates: no absorbing value
    inner.solve(first)  # relabels back before training, then continues
    assert inner.model.num_timesteps == 128
    assert np.allclose(buffer.rewards[:64, 0], expected, rtol=1e-5, atol=1e-6)
    log_prob = inner.policy.log_prob(states[:4], env_actions[:4])
    assert log_prob.shape == (4,) and bool(torch.isfinite(log_prob).all())
    assert torch.isfinite(inner.learner_reward_expectation(first).detach())
    inner.close()


def test_dqn_relabelling_keeps_the_absorbing_value_of_terminal_transitions():
    inner = SB3InnerSolver("CartPole-v1", "dqn", env_steps_per_outer_step=200, seed=0,
                           hyperparameters={"learning_starts": 50, "batch_size": 32, "buffer_size": 1000,
                                            "train_freq": 4, "gamma": GAMMA, "policy_kwargs": {"net_arch": [16]}})
    inner.solve(Constant(1.0))
    assert inner.policy is None
    buffer = inner.model.replay_buffer
    terminated = (buffer.dones[:200, 0] * (1 - buffer.timeouts[:200, 0])).astype(bool)
    assert terminated.any()
    assert np.allclose(buffer.rewards[:200, 0][~terminated], 1.0)
    assert np.allclose(buffer.rewards[:200, 0][terminated], 1.0 / (1 - GAMMA))
    inner.env.set_reward_model(Constant(-2.0))
    inner.relabel_replay_buffer()
    assert np.allclose(buffer.rewards[:200, 0][terminated], -2.0 / (1 - GAMMA))
    inner.close()


def test_a_maxent_step_lowers_the_learner_reward_and_raises_the_experts():
    demos = rollout_demonstrations(lambda observation: int(observation[2] > 0), "CartPole-v1", 3, seed=0)
    inner = SB3InnerSolver("CartPole-v1", env_steps_per_outer_step=64, hyperparameters=TINY_PPO, seed=0)
    objective = SampleMaxEntObjective(demos, GAMMA)
    torch.manual_seed(0)
    model = MLPReward(4, (8,))
    problem = BilevelProblem(model, inner, objective)
    gradient = MaxEntHypergradient().compute(problem).gradients
    learner = float(inner.learner_reward_expectation(model).detach())
    expert = float(objective.expert_reward_expectation(inner, model).detach())
    with torch.no_grad():
        for parameter, g in zip(problem.parameters, gradient):
            parameter.sub_(1e-3 * g)
    assert float(inner.learner_reward_expectation(model).detach()) < learner  # same recorded samples
    assert float(objective.expert_reward_expectation(inner, model).detach()) > expert
    inner.close()


def test_normalization_is_a_positive_scaling():
    venv = DummyVecEnv([lambda: Monitor(gym.make("CartPole-v1"))])
    venv.seed(0)
    env = LearnedRewardVecEnv(venv, GAMMA, "absorbing", normalize=True)
    env.set_reward_model(Constant(-4.0))
    rewards, _ = _episode(env, action=1)
    assert rewards[:-1] == pytest.approx(-1.0) and rewards[-1] == pytest.approx(-1.0 / (1 - GAMMA))
    env.close()


def test_the_absorbing_indicator_makes_the_absorbing_state_a_state_of_its_own():
    venv = DummyVecEnv([lambda: Monitor(gym.make("CartPole-v1"))])
    venv.seed(3)
    env = LearnedRewardVecEnv(venv, GAMMA, "absorbing", record_steps=1000, absorbing_indicator=True)
    indicator = LinearReward(5)  # reads only the indicator feature
    with torch.no_grad():
        indicator.linear.weight.copy_(torch.tensor([[0.0, 0.0, 0.0, 0.0, -2.0]]))
    env.set_reward_model(indicator)
    rewards, _ = _episode(env, action=0)
    assert rewards[:-1] == pytest.approx(0.0)
    assert rewards[-1] == pytest.approx(-2.0 * GAMMA / (1 - GAMMA), rel=1e-6)
    with pytest.raises(ValidationError, match="reward_model"):
        env.set_reward_model(LinearReward(4))  # the indicator feature is missing
    env.close()
    with pytest.raises(ValidationError, match="absorbing_indicator"):
        LearnedRewardVecEnv(DummyVecEnv([lambda: gym.make("CartPole-v1")]), GAMMA, "none", absorbing_indicator=True)

    # The demonstrations use the same convention, with the same weights as without the indicator.
    demos = rollout_demonstrations(lambda observation: 0, "CartPole-v1", 2, seed=0)
    plain = SampleMaxEntObjective(demos, GAMMA)
    objective = SampleMaxEntObjective(demos, GAMMA, absorbing_indicator=True)
    steps = int(demos.lengths.sum())
    states, next_states = objective.transitions.states, objective.transitions.next_states
    assert states.shape == (steps + 2, 5) and not bool(states[:steps, -1].any())
    absorbing = torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0])
    assert torch.equal(states[steps:], absorbing.expand(2, 5)) and torch.equal(next_states[steps:], states[steps:])
    ends = (demos.lengths.cumsum(0) - 1).tolist()  # terminal transitions lead into the absorbing state
    assert torch.equal(next_states[ends], absorbing.expand(2, 5))
    assert torch.equal(objective.weights, plain.weights)
    expected = float((-2.0 * plain.weights[steps:]).sum() / plain.weights.sum())
    assert float(objective.expert_reward_expectation(None, indicator).detach()) == pytest.approx(expected)
    with pytest.raises(ValidationError, match="absorbing_indicator"):
        SampleMaxEntObjective(demos, GAMMA, absorbing=False, absorbing_indicator=True)


def test_anchoring_the_absorbing_state_changes_no_maxent_gradient_and_removes_the_terminal_spike():
    """r_θ − r_θ(abs): the agent's terminal transition pays no γ/(1 − γ) · r_abs, the MaxEnt gradient is the same."""
    torch.manual_seed(0)
    base = MLPReward(5, (8,))
    anchored = AbsorbingAnchoredReward(base, absorbing_transitions(torch.zeros(1, 4), 2, True))
    assert list(anchored.parameters()) == list(base.parameters())
    inner = SB3InnerSolver("CartPole-v1", env_steps_per_outer_step=64, hyperparameters=TINY_PPO, seed=0,
                           absorbing_indicator=True)
    try:
        torch.testing.assert_close(AbsorbingAnchoredReward.for_env(base, inner.env).absorbing.states,
                                   anchored.absorbing.states)
        inner.solve(anchored)
        data = inner.env.recorded()
        assert bool(data["terminated"].any())
        batch, _ = inner.learner_transitions()
        with torch.no_grad():
            absorbing_rows = batch.states[:, -1] == 1
            assert bool(absorbing_rows.any()) and torch.allclose(anchored(batch).total[absorbing_rows],
                                                                 torch.zeros(int(absorbing_rows.sum())))
        demos = rollout_demonstrations(lambda observation: int(observation[2] > 0), "CartPole-v1", 2, seed=0)
        objective = SampleMaxEntObjective(demos, GAMMA, absorbing_indicator=True)

        def gradient(model: RewardModel) -> list[torch.Tensor]:
            difference = inner.learner_reward_expectation(model) - objective.expert_reward_expectation(None, model)
            return list(torch.autograd.grad(difference, list(base.parameters())))

        for plain, shifted in zip(gradient(base), gradient(anchored)):
            torch.testing.assert_close(plain, shifted)
    finally:
        inner.close()
    plain_env = SB3InnerSolver("CartPole-v1", env_steps_per_outer_step=64, hyperparameters=TINY_PPO)
    with pytest.raises(ValidationError, match="absorbing_indicator"):
        AbsorbingAnchoredReward.for_env(base, plain_env.env)  # no single absorbing state to anchor at
    plain_env.close()


@pytest.mark.parametrize("absorbing_indicator", [False, True])
def test_a_maxent_step_lowers_the_absorbing_reward_on_either_side_only_with_the_indicator(absorbing_indicator):
    # The ML-IRL failure on CartPole-v1: with a state-only reward and the terminal observation as the absorbing
    # state, a step lowers the absorbing reward where the learner fell and raises it on the mirrored side.
    demos = rollout_demonstrations(lambda observation: int(observation[2] > 0), "CartPole-v1", 3, seed=0)
    torch.manual_seed(0)
    inner = SB3InnerSolver("CartPole-v1", env_steps_per_outer_step=64, hyperparameters=TINY_PPO, seed=0,
                           absorbing_indicator=absorbing_indicator)
    objective = SampleMaxEntObjective(demos, GAMMA, absorbing_indicator=absorbing_indicator)
    model = LinearReward(4 + int(absorbing_indicator))
    problem = BilevelProblem(model, inner, objective)
    gradient = MaxEntHypergradient().compute(problem).gradients
    data = inner.env.recorded()
    final = torch.from_numpy(data["next_states"][data["terminated"]])
    assert len(final) > 0

    def absorbing_reward(side: float) -> torch.Tensor:
        with torch.no_grad():
            return model(absorbing_transitions(side * final, 2, absorbing_indicator)).total

    before = {side: absorbing_reward(side) for side in (1.0, -1.0)}
    with torch.no_grad():
        for parameter, g in zip(problem.parameters, gradient):
            parameter.sub_(0.1 * g)
    # A linear r(s_f) changes by ±Δw·s_f on mirrored terminal observations: without the indicator one side rises.
    lowered_everywhere = all(bool((absorbing_reward(side) < before[side]).all()) for side in (1.0, -1.0))
    assert lowered_everywhere == absorbing_indicator
    inner.close()


def test_ml_irl_cartpole_example_runs_at_tiny_scale(tmp_path):
    import json

    from classic_rl.experiments import ml_irl_cartpole

    path = ml_irl_cartpole.run("tiny", tmp_path, progress=False)
    record = json.loads(path.read_text())
    (run,) = record["runs"]
    assert [row["step"] for row in run["history"]] == [1, 2]
    assert all(np.isfinite(row["true_return"]) and row["env_steps"] > 0 for row in run["history"])
    assert np.isfinite(record["final_normalized_return"]["mean"])
    assert np.isfinite(record["transfer_normalized_return"]["mean"])
