"""Preferences between text episodes: padded segments, same-start pairs, the oracle's labels and the raw pairs,
and episode-level preference training (a one-step episode pair is an ordinary (x, y_w, y_l) pair)."""

from __future__ import annotations

from collections import deque
from types import SimpleNamespace

import pytest
import torch

from irl_bilevel.losses import PREFERENCE_LOSSES, PreferenceBatch
from irl_bilevel.rewards import TabularReward
from irl_bilevel.validation import ValidationError
from llm.agentic import HanoiEnv, build_tabular_mdp, run_episode
from llm.agentic.export import AspectTableReward, episode_steps
from llm.agentic.preferences import EpisodePreferenceObjective, episode_segments, same_start_pairs, true_step_rewards
from llm.lora_inner import TextEpisode
from llm.models import load_causal_lm, preference_batch, with_lora
from llm.training import EpisodePreferenceDataset, PreferenceDataset, PreferenceTrainingConfig, train_preferences

DISCOUNT = 0.9


def _episode(env, export, start: int, actions: list[str]) -> TextEpisode:
    """A scripted episode (the actions are played in order, then the optimal plan's moves repeat)."""
    script = iter(actions)
    record = run_episode(env, lambda observation: next(script, "not a move"), start)
    steps = episode_steps(env, export, record)
    prompt_ids = [[2, 10 + t] for t in range(record.steps)]  # token ids only matter for training tests
    completion_ids = [[3] for _ in range(record.steps)]
    return TextEpisode(record, prompt_ids, completion_ids, steps.state_indices, steps.action_columns,
                       steps.final_state, steps.terminated)


@pytest.fixture(scope="module")
def hanoi():
    env = HanoiEnv(3)
    export = build_tabular_mdp(env, DISCOUNT)
    start = next(i for i, s in enumerate(env.starts) if env.distance_to_goal(s) == 1)
    plan = [env.format_action(a) for a in env.optimal_plan(env.starts[start])]
    solved = _episode(env, export, start, plan)  # one move to the goal: terminated after 1 step
    failed = _episode(env, export, start, [])  # malformed until the move cap
    return env, export, start, solved, failed


def test_segments_pad_a_terminated_episode_with_its_absorbing_row_and_true_rewards_with_zeros(hanoi):
    env, export, _, solved, failed = hanoi
    length = env.max_steps
    batch = episode_segments(export, [solved, failed], length)
    assert len(batch) == 2 * length and solved.terminated and not failed.terminated
    # Row 0: the step; rows 1..L-1: the absorbing row (the final state, an all-zero action vector).
    assert batch.actions[0].sum() == 1 and torch.all(batch.actions[1:length] == 0)
    assert torch.all(batch.states[1:length].argmax(-1) == solved.final_state)
    true = AspectTableReward(export, initial_scales=env.weights.tolist(), learn_scales=False)
    returns = true(batch).total.reshape(2, length).sum(1)
    rewards, mask = true_step_rewards(env, [solved, failed], length)
    assert mask[0].tolist() == [True] + [False] * (length - 1) and bool(mask[1].all())
    # The structured reward gives the absorbing rows 0, so the segment return is the episode's true return.
    assert torch.allclose(returns.double(), rewards.sum(1)) and rewards[0, 0] > 0 > rewards[1].sum()
    with pytest.raises(ValidationError, match="segment_length"):
        episode_segments(export, [failed], length - 1)


def test_refresh_pairs_same_start_episodes_and_keeps_the_oracles_choice(hanoi):
    env, export, start, solved, failed = hanoi
    other = _episode(env, export, (start + 1) % len(env.starts), [])
    episodes = [solved, other, failed, other]
    assert same_start_pairs(episodes) == [(0, 2), (1, 3)]
    reward = AspectTableReward(export, initial_scales=[0.0] * 5)
    objective = EpisodePreferenceObjective(reward, env, export, query_budget=3, queries_per_refresh=5, seed=0)
    assert float(objective.reward_loss(reward).detach()) == 0.0  # no label yet: zero, not an error
    objective.refresh(SimpleNamespace(recorded=deque([episodes])), reward)
    # Two pairs asked; the identical pair (other, other) ties and is left out of the data and the raw pairs.
    assert objective.stats() == {"queries_used": 2, "labelled_pairs": 1, "ties": 1, "skipped": 0}
    assert objective.chosen == [solved] and objective.rejected == [failed]
    loss = objective.reward_loss(reward)
    loss.backward()
    assert reward.scales.grad is not None and float(reward.scales.grad.abs().sum()) > 0
    objective.refresh(SimpleNamespace(recorded=deque([episodes])), reward)
    assert objective.queries_used == 3  # the budget caps the second refresh at one query
    dataset = objective.episode_dataset()
    assert len(dataset) == 2 and len(dataset.chosen[0]) == solved.record.steps
    # A scalar table over (state, action column) is a reward the LoRA inner solver and the objective both take.
    table = TabularReward(export.mdp.num_states, export.num_action_inputs)
    assert objective.reward_loss(table).shape == ()
    with pytest.raises(ValidationError, match="query_budget"):
        EpisodePreferenceObjective(reward, env, export, query_budget=0, queries_per_refresh=1)


def test_one_step_episode_pairs_give_the_paired_losses_of_ordinary_pairs(tiny_lm_path):
    model, tokenizer = load_causal_lm(tiny_lm_path)
    policy = with_lora(model, seed=0)
    prompts, chosen, rejected = [[2, 5, 6], [2, 7]], [[8, 3], [9, 3]], [[10, 3], [11, 12, 3]]
    pad = tokenizer.pad_token_id
    ordinary = preference_batch(policy, prompts, chosen, rejected, pad)
    episodes = EpisodePreferenceDataset([[(p, c)] for p, c in zip(prompts, chosen)],
                                        [[(p, r)] for p, r in zip(prompts, rejected)])
    config = PreferenceTrainingConfig(loss="sigmoid", beta=0.1, steps=1, batch_size=2, learning_rate=1e-9,
                                      max_grad_norm=None, progress=False)
    first = train_preferences(policy, episodes, pad, config).history[0]
    expected = PREFERENCE_LOSSES["sigmoid"](ordinary, 0.1)
    assert first["loss"] == pytest.approx(float(expected.loss.detach()), rel=1e-6)
    # Two steps of one episode: log-probs add, so the pair's log-ratio margin is the sum of the steps' margins.
    two = EpisodePreferenceDataset([[(prompts[0], chosen[0]), (prompts[1], chosen[1])]],
                                   [[(prompts[0], rejected[0]), (prompts[1], rejected[1])]])
    summed = PreferenceBatch(ordinary.policy_chosen_logps.sum().reshape(1),
                             ordinary.policy_rejected_logps.sum().reshape(1),
                             ordinary.reference_chosen_logps.sum().reshape(1),
                             ordinary.reference_rejected_logps.sum().reshape(1))
    second = train_preferences(policy, two, pad, config).history[0]
    assert second["loss"] == pytest.approx(float(PREFERENCE_LOSSES["sigmoid"](summed, 0.1).loss.detach()), rel=1e-6)
    with pytest.raises(ValidationError, match="episode 0 has no step"):
        EpisodePreferenceDataset([[]], [[(prompts[0], rejected[0])]])
    with pytest.raises(ValidationError, match="unpaired"):
        train_preferences(policy, episodes, pad, PreferenceTrainingConfig(loss="kto", progress=False))
    assert isinstance(PreferenceDataset(prompts, chosen, rejected), PreferenceDataset)
