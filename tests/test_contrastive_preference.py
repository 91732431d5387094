"""Segment preferences on CartPole, contrastive preference learning with catalog losses, the reward-model
baseline's wrapper, and the tiny loss sweep with its figure."""

from __future__ import annotations

import json
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from classic_rl.contrastive_preference import (
    CPLConfig,
    SegmentRewardModel,
    frozen_reference,
    make_policy,
    pairwise_losses,
    segment_logps,
    train_cpl,
)
from classic_rl.experiments import loss_sweep
from classic_rl.learned_reward_env import LearnedRewardVecEnv
from classic_rl.segment_preferences import Episode, cut_segments, discrete_task, label_pairs, rollouts
from irl_bilevel.feedback import Preferences
from irl_bilevel.validation import ValidationError

ENV = "CartPole-v1"


def _random_actor(seed=0):
    rng = np.random.default_rng(seed)
    return lambda observations: rng.integers(2, size=len(observations))


def _episode(steps, terminated, offset=0.0):
    return Episode(offset + np.arange(steps * 4, dtype=np.float32).reshape(steps, 4), np.zeros(steps, dtype=np.int64),
                   np.ones(steps), terminated)


@pytest.fixture(scope="module")
def pairs():
    episodes = rollouts(ENV, _random_actor(), 6, seed=0)
    segments = cut_segments(episodes, 30, 60, np.random.default_rng(0))
    return segments, label_pairs(segments, 40, np.random.default_rng(1))


def test_segments_span_terminations_and_labels_follow_true_returns(pairs):
    segments, labelled = pairs
    lengths = segments.trajectories.lengths
    assert bool(segments.terminated.any())  # random CartPole episodes (~20 steps) end inside 30-step segments
    assert torch.equal(segments.terminated, lengths < 30)
    assert torch.equal(segments.returns, lengths.double())  # reward 1 per live step, 0 once absorbed
    assert bool((labelled.chosen_returns > labelled.rejected_returns).all())
    prefs = labelled.preferences
    assert bool((prefs.labels == 1).all())
    assert bool((prefs.first.lengths > prefs.second.lengths).all())  # on CartPole a longer life is the better one
    # A truncated (time-limit) episode is never cut across its end; a terminated one is, into the absorbing state.
    cut = cut_segments([_episode(12, terminated=False), _episode(5, terminated=True, offset=1000.0)], 10, 200,
                       np.random.default_rng(0))
    from_truncated = cut.trajectories.observations[:, 0, 0] < 1000  # the truncated episode's steps
    assert bool((cut.trajectories.lengths[from_truncated] == 10).all())
    assert bool((cut.trajectories.lengths[~from_truncated] <= 5).all())
    assert bool(cut.terminated[~from_truncated].all())


def test_all_ties_are_refused():
    segments = cut_segments([_episode(50, terminated=False)], 10, 20, np.random.default_rng(0))
    with pytest.raises(ValidationError, match="ties"):
        label_pairs(segments, 10, np.random.default_rng(0))


def test_sigmoid_step_widens_the_margin_and_the_reference_stays_frozen(pairs):
    _, labelled = pairs
    prefs = labelled.preferences
    one = Preferences(prefs.first.subset([0]), prefs.second.subset([0]), torch.ones(1))
    policy = make_policy(ENV, seed=0)
    initial = {k: v.clone() for k, v in policy.state_dict().items()}

    def margin(model):
        with torch.no_grad():
            return float(segment_logps(model, one.first) - segment_logps(model, one.second))

    before = margin(policy)
    trained = train_cpl(policy, one, "sigmoid", CPLConfig(epochs=1, batch_size=1, learning_rate=1e-2))
    reference = trained["reference"]
    assert margin(policy) > before + 1e-3
    assert margin(reference) == pytest.approx(before)
    assert all(not p.requires_grad for p in reference.parameters())
    assert all(torch.equal(v, initial[k]) for k, v in reference.state_dict().items())
    assert not all(torch.equal(v, initial[k]) for k, v in policy.state_dict().items())
    # The value head is not trained by CPL.
    assert torch.equal(policy.value_net.weight, initial["value_net.weight"])


def test_reference_copy_is_independent():
    policy = make_policy(ENV, seed=1)
    reference = frozen_reference(policy)
    with torch.no_grad():
        next(policy.parameters()).add_(1.0)
    assert not torch.equal(next(policy.parameters()), next(reference.parameters()))


def test_bad_inputs_give_clear_errors(pairs):
    _, labelled = pairs
    policy = make_policy(ENV, seed=0)
    config = CPLConfig(epochs=1)
    with pytest.raises(ValidationError, match="unknown preference loss 'dpo_typo'"):
        train_cpl(policy, labelled.preferences, "dpo_typo", config)
    with pytest.raises(ValidationError, match="does not take"):
        train_cpl(policy, labelled.preferences, "kto", config)
    prefs = labelled.preferences
    skipped = Preferences(prefs.first, prefs.second, prefs.labels, skipped=torch.ones(len(prefs), dtype=torch.bool))
    with pytest.raises(ValidationError, match="empty"):
        train_cpl(policy, skipped, "sigmoid", config)
    with pytest.raises(ValidationError, match="scale"):
        loss_sweep.run("huge", "unused", progress=False)
    with pytest.raises(ValidationError, match="Discrete actions"):
        discrete_task("Pendulum-v1")
    assert {"sigmoid", "ipo", "simpo", "orpo"} <= set(pairwise_losses())
    assert not {"kto", "bradley_terry", "modpo"} & set(pairwise_losses())


def test_the_baseline_agent_is_paid_reward_minus_absorbing_and_keeps_terminations():
    from stable_baselines3.common.vec_env import DummyVecEnv

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = SegmentRewardModel(4, 2).float()
    with torch.no_grad():
        model.absorbing.fill_(0.7)
    env = LearnedRewardVecEnv(DummyVecEnv([lambda: gym.make(ENV)]), 0.98, termination="none")
    env.set_reward_model(model.shifted())
    env.seed(0)
    observation = env.reset()
    done, steps = False, 0
    while not done:
        with torch.no_grad():
            expected = float(model.step_rewards(torch.as_tensor(observation), torch.tensor([0]))) - 0.7
        observation, reward, dones, infos = env.step(np.zeros(1, dtype=np.int64))
        assert float(reward[0]) == pytest.approx(expected, abs=1e-6)
        assert infos[0]["true_reward"] == 1.0
        done, steps = bool(dones[0]), steps + 1
    # always pushing left ends the episode early, as in the plain env: a termination, not the time limit
    assert steps < 100 and not infos[0].get("TimeLimit.truncated", False)


def test_iqm_with_ci():
    summary = loss_sweep.iqm_with_ci([0.0, 1.0, 1.0, 1.0, 100.0, float("nan")])
    assert summary["n"] == 5 and summary["iqm"] == pytest.approx(1.0)
    assert summary["low"] <= summary["iqm"] <= summary["high"]
    assert math.isnan(loss_sweep.iqm_with_ci([float("nan")])["iqm"])


def test_tiny_sweep_and_figure_end_to_end(tmp_path):
    from figures import loss_sweep as figure

    path = loss_sweep.run("tiny", tmp_path / "results", seed=0, progress=False, cache=tmp_path / "cache")
    results = json.loads(path.read_text())
    assert results["scale"] == "tiny" and results["provenance"]["seed"] == 0
    assert set(results["summary"]) == {*loss_sweep.SCALES["tiny"]["losses"], "reward_model_ppo",
                                          "ppo_true_reward"}
    assert list((tmp_path / "cache" / "experts").glob("*.zip"))  # the expert went to the configured cache
    for run in results["runs"]:
        assert math.isfinite(run["normalized_return_stochastic"]) or math.isnan(run["normalized_return_stochastic"])
        if run["method"] != "ppo_true_reward":
            assert 0.0 <= run["held_out"]["reward_accuracy"] <= 1.0
    files = figure.plot(tmp_path / "results", tmp_path / "figures")
    assert [f.name for f in files] == ["loss_sweep.png", "loss_sweep.pdf"]
    assert all(f.stat().st_size > 0 for f in files)


def test_the_stochastic_evaluation_does_not_depend_on_the_global_generator():
    # SB3's predict samples from torch's global generator, whose seed differs between processes: the evaluation
    # reseeds it, so a policy's stochastic return reproduces whatever ran before, and restores the caller's stream.
    policy = make_policy(ENV, seed=0)
    torch.manual_seed(1)
    first = loss_sweep.policy_returns(ENV, policy, episodes=3)
    drawn_after = torch.rand(1)
    torch.manual_seed(1)
    assert torch.equal(torch.rand(1), drawn_after)  # the evaluation drew nothing from the caller's stream
    torch.manual_seed(2)
    assert loss_sweep.policy_returns(ENV, policy, episodes=3) == first
