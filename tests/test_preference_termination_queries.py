"""Termination-aware queries (``PreferenceRLConfig.termination_queries``): a feedback session whose window holds no
segment with a termination is postponed and its queries carried over, pairs contain a termination, the segment
pool draws terminating segments first, the budget accounting stays honest, and the option is validated.

CartPole-v1 pays 1 per real step, so (as on Acrobot-v1 with −1) two segments without a termination always tie."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch

from classic_rl.preference_rl import PreferenceRLConfig, PreferenceRLObjective, cut_learner_segments, run_preference_rl
from classic_rl.sb3_inner import SB3InnerSolver
from irl_bilevel.rewards import MLPReward
from irl_bilevel.validation import ValidationError

PPO_TINY = {"n_steps": 64, "batch_size": 64, "n_epochs": 1}
LENGTH = 15  # about the random policy's episode length: some segments terminate, some do not


@pytest.fixture(scope="module")
def cartpole():
    """A tiny PPO solve's recorded learner steps (2 envs, 512 steps, many terminations) and its env."""
    inner = SB3InnerSolver("CartPole-v1", "ppo", 512, n_envs=2, hyperparameters=PPO_TINY, seed=0, learner_steps=512,
                           absorbing_indicator=True)
    inner.solve(MLPReward(4 + 1, [8]))
    data = inner.env.recorded()
    assert bool(np.asarray(data["terminated"]).any())
    yield inner.env, data
    inner.close()


class _Replay:
    """An inner solver stand-in whose env replays ``data`` as its recorded steps (the rest is the real env)."""

    def __init__(self, env, data):
        self.env = types.SimpleNamespace(recorded=lambda: data, reward_inputs=env.reward_inputs,
                                         action_dim=env.action_dim, absorbing_indicator=env.absorbing_indicator)


def _without_terminations(data: dict[str, np.ndarray], n_envs: int) -> dict[str, np.ndarray]:
    """The same rows as one long episode per env that never terminates, true reward 1 per step."""
    out = {key: np.array(value, copy=True) for key, value in data.items()}
    rows = len(out["time"])
    out["time"] = np.repeat(np.arange(rows // n_envs), n_envs)  # row k·n_envs + i is env i's k-th step
    out["terminated"][:] = False
    out["true_rewards"][:] = 1.0
    return out


def _objective(termination_queries: bool, schedule: list[int]) -> PreferenceRLObjective:
    config = PreferenceRLConfig(segment_length=LENGTH, selection="uniform", ensemble_size=1,
                                query_budget=sum(schedule), loss="rao_kupper", total_env_steps=1024,
                                env_steps_per_outer_step=512, termination_queries=termination_queries)
    return PreferenceRLObjective(MLPReward(4 + 1 + 2, [8], uses_actions=True), config, 2, schedule)


def _contains_termination(segments) -> torch.Tensor:
    """Per stored segment: does a real step lead into the absorbing state (absorbing indicator 1 in a next state)?"""
    return (segments.next_states[:, -1] == 1).reshape(-1, LENGTH).any(dim=1)


def test_session_without_termination_is_postponed_and_its_queries_asked_later(cartpole):
    env, data = cartpole
    objective = _objective(True, [6, 4])
    reward = objective.reward_model
    objective.refresh(_Replay(env, _without_terminations(data, 2)), reward)
    # Nothing asked, nothing counted: the 6 queries are owed to the next session.
    assert (objective.queries_used, objective.owed, objective.postponed_sessions, len(objective)) == (0, 6, 1, 0)
    assert objective.stats()["postponed_sessions"] == 1
    objective.window.streams = [None, None]  # the learner now terminates: the real steps
    objective.refresh(_Replay(env, data), reward)
    assert (objective.queries_used, objective.owed, objective.postponed_sessions) == (10, 0, 1)
    assert len(objective) == 10  # rao_kupper keeps ties
    # every asked pair holds at least one segment with a termination, so not every answer is a tie
    assert bool((_contains_termination(objective.first) | _contains_termination(objective.second)).all())
    assert objective.ties < 10


def test_without_the_option_the_same_session_spends_its_queries_on_ties(cartpole):
    env, data = cartpole
    objective = _objective(False, [6, 4])
    objective.refresh(_Replay(env, _without_terminations(data, 2)), objective.reward_model)
    assert (objective.queries_used, objective.owed, objective.postponed_sessions) == (6, 0, 0)
    assert objective.ties == 6 and bool((objective.labels == 0.5).all())


def test_pool_draws_terminating_segments_first(cartpole):
    env, data = cartpole
    objective = _objective(False, [1])
    objective.window.extend(data)
    count = 40
    uniform = cut_learner_segments(objective.window, env, LENGTH, count, torch.Generator().manual_seed(1))
    again = cut_learner_segments(objective.window, env, LENGTH, count, torch.Generator().manual_seed(1),
                                 termination_share=0.0)
    assert torch.equal(uniform.true_rewards, again.true_rewards)  # share 0: the draws of the code before the option
    ending = sum(1 for stream in objective.window.streams for start in _starts(stream) if start[2])
    assert ending >= count // 2  # enough for the share to bind
    mixed = cut_learner_segments(objective.window, env, LENGTH, count, torch.Generator().manual_seed(1),
                                 termination_share=0.5)
    assert int(mixed.contains_termination.sum()) >= count // 2
    assert bool((~mixed.contains_termination).any())  # the rest comes from the other starts
    # contains_termination is terminated plus the segments whose last real step is the terminal one
    assert bool((mixed.contains_termination | ~mixed.terminated).all())
    with pytest.raises(ValidationError, match="termination_share"):
        cut_learner_segments(objective.window, env, LENGTH, count, torch.Generator(), termination_share=1.5)


def _starts(stream):
    from classic_rl.preference_rl import segment_starts

    return segment_starts(stream["time"], stream["terminated"], LENGTH)


def test_option_is_validated():
    with pytest.raises(ValidationError, match="termination_queries"):
        PreferenceRLConfig(termination_queries="yes")  # type: ignore[arg-type]
    assert PreferenceRLConfig().termination_queries is False  # off by default: earlier results stay reproducible


def test_tiny_run_reports_asked_and_unasked_queries(tmp_path):
    config = PreferenceRLConfig(total_env_steps=768, env_steps_per_outer_step=256, segment_length=20,
                                query_budget=7, query_sessions=3, query_fraction=1.0, candidate_factor=3,
                                hidden_sizes=[8], eval_every=3, eval_episodes=2, n_envs=2,
                                hyperparameters={"n_steps": 128, "batch_size": 64, "n_epochs": 1, "gamma": 0.98},
                                termination_queries=True)
    summary = run_preference_rl(config, tmp_path, progress=False, references=(22.0, 500.0))
    assert summary["queries_used"] + summary["queries_unasked"] == 7
    assert summary["queries_used"] == 7 and summary["postponed_sessions"] == 0  # CartPole terminates early on
    assert summary["labelled_pairs"] + summary["ties"] + summary["skipped"] == 7
