"""Experts: the content-addressed cache, demonstrations with explicit episode ends, seeded evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from classic_rl import experts
from classic_rl.experts import (
    EXPERT_CONFIGS,
    RolloutDemonstrations,
    evaluate_policy_return,
    random_policy_return,
    rollout_demonstrations,
    train_expert,
)
from irl_bilevel.validation import ValidationError

TINY = 256  # one PPO rollout of rl-zoo's CartPole settings (8 envs × 32 steps)


def _parameters(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.policy.state_dict().items()}


def test_configs_cover_the_testbeds():
    for env_id in ("CartPole-v1", "Pendulum-v1", "Acrobot-v1", "MountainCar-v0", "MountainCarContinuous-v0"):
        assert env_id in EXPERT_CONFIGS
    assert EXPERT_CONFIGS["Pendulum-v1"].algorithm == "sac"
    assert EXPERT_CONFIGS["Pendulum-v1"].hyperparameters["learning_rate"] == 1e-3


def test_cache_hit_loads_without_training_and_a_changed_config_misses(tmp_path, monkeypatch):
    first = train_expert("CartPole-v1", seed=0, cache_dir=tmp_path, total_timesteps=TINY)
    files = sorted((tmp_path / "experts").glob("*.zip"))
    assert len(files) == 1 and files[0].name.startswith("CartPole-v1-ppo-")
    assert not [p for p in (tmp_path / "experts").iterdir() if p.name.startswith(".")]  # no partial files left

    from stable_baselines3 import PPO

    def no_training(*args, **kwargs):
        raise AssertionError("a cache hit must not train")

    with monkeypatch.context() as patch:
        patch.setattr(PPO, "learn", no_training)
        again = train_expert("CartPole-v1", seed=0, cache_dir=tmp_path, total_timesteps=TINY)
    for key, value in _parameters(first).items():
        assert torch.equal(value, _parameters(again)[key])

    train_expert("CartPole-v1", seed=1, cache_dir=tmp_path, total_timesteps=TINY)  # another seed: a miss
    assert len(list((tmp_path / "experts").glob("*.zip"))) == 2
    changed = experts.ExpertConfig("ppo", {**EXPERT_CONFIGS["CartPole-v1"].hyperparameters, "n_epochs": 1},
                                   n_envs=8)
    train_expert("CartPole-v1", seed=0, cache_dir=tmp_path, total_timesteps=TINY, config=changed)
    assert len(list((tmp_path / "experts").glob("*.zip"))) == 3


def test_cache_location_follows_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(experts.CACHE_ENV, str(tmp_path / "cache"))
    assert experts.cache_dir() == tmp_path / "cache"
    assert experts.cache_dir(tmp_path / "x") == tmp_path / "x"


def test_segment_preferences_shares_the_cache():
    from classic_rl import segment_preferences

    assert segment_preferences.cached_model is experts.cached_model


def test_bad_inputs_name_the_field(tmp_path):
    with pytest.raises(ValidationError, match="env_id"):
        train_expert("NoSuchEnv-v0", cache_dir=tmp_path)
    with pytest.raises(ValidationError, match="total_timesteps"):
        train_expert("CartPole-v1", cache_dir=tmp_path, total_timesteps=0)
    with pytest.raises(ValidationError, match="num_episodes"):
        random_policy_return("CartPole-v1", 0, seed=0)
    assert not (tmp_path / "experts").exists()


def test_demonstrations_have_shapes_and_terminal_flags():
    always_left = lambda observation: 0  # noqa: E731  (falls over within a few dozen steps)
    demos = rollout_demonstrations(always_left, "CartPole-v1", num_episodes=3, seed=5)
    assert isinstance(demos, RolloutDemonstrations)
    n, t = demos.observations.shape[:2]
    assert (n, demos.observations.shape[2]) == (3, 4) and demos.observations.dtype == torch.float32
    assert demos.actions.shape == (3, t) and demos.actions.dtype == torch.int64 and demos.num_actions == 2
    assert bool(demos.terminated.all()) and int(demos.lengths.max()) == t < 500
    assert demos.final_observations.shape == (3, 4)
    assert torch.equal(demos.returns, demos.lengths.double())  # CartPole: +1 per step
    dones = demos.dones
    assert int(dones.sum()) == 3 and bool(dones[torch.arange(3), demos.lengths - 1].all())
    # The final observation is past the threshold (the terminal state), the recorded ones are not all.
    assert bool((demos.final_observations[:, 2].abs() > 0.2094).any() | (demos.final_observations[:, 0].abs() > 2.4)
                .any())
    sub = demos.subset([2, 0])
    assert isinstance(sub, RolloutDemonstrations) and torch.equal(sub.terminated, demos.terminated[[2, 0]])


def test_truncated_continuous_demonstrations_are_not_terminated():
    demos = rollout_demonstrations(lambda observation: np.zeros(1, dtype=np.float32), "Pendulum-v1", 2, seed=0)
    assert demos.observations.shape == (2, 200, 3) and demos.actions.shape == (2, 200, 1)
    assert not bool(demos.terminated.any()) and demos.num_actions is None
    assert not bool(demos.dones.any())


def test_evaluation_is_seeded_on_the_true_reward(tmp_path):
    model = train_expert("CartPole-v1", seed=0, cache_dir=tmp_path, total_timesteps=TINY)
    mean, std, returns = evaluate_policy_return(model, "CartPole-v1", 3, seed=7)
    again = evaluate_policy_return(model.policy, "CartPole-v1", 3, seed=7)
    assert np.array_equal(returns, again[2]) and mean == pytest.approx(returns.mean()) and std >= 0
    demos = rollout_demonstrations(model, "CartPole-v1", 3, seed=7)
    assert np.array_equal(demos.returns.numpy(), returns)
    random_mean, _, random_returns = random_policy_return("CartPole-v1", 5, seed=0)
    assert np.array_equal(random_returns, random_policy_return("CartPole-v1", 5, seed=0)[2])
    assert 5 < random_mean < 60
