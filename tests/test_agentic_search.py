"""A* over actions (llm/agentic/search.py) and the tool-use search experiment (llm/experiments/agentic_search.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from figures import agentic_search as figure
from irl_bilevel.validation import ValidationError
from llm.agentic import HanoiEnv, ToolUseEnv, reward_guided_search
from llm.agentic.search import a_star_search, potential_heuristic
from llm.experiments import agentic_search as experiment


def test_a_star_with_the_true_potential_finds_shortest_plans_with_fewer_expansions_than_uniform_cost():
    env = HanoiEnv(3)
    exact = potential_heuristic(env, progress_weight=0.1, step_weight=0.1)  # ratio 1: h = d, admissible
    for start in env.starts:
        guided = a_star_search(env, start, exact)
        blind = a_star_search(env, start, lambda state: 0.0)
        assert guided.found and blind.found
        assert len(guided.plan) == len(blind.plan) == env.distance_to_goal(start)
        assert guided.score == -len(guided.plan)  # score is −g: one per action
        assert guided.expansions == len(guided.plan) + 1 <= blind.expansions  # h = d is perfect
        assert guided.generated >= guided.expansions - 1


def test_a_star_is_the_reward_guided_search_with_negated_cost_and_heuristic():
    env = ToolUseEnv()
    h = potential_heuristic(env, progress_weight=2.0, step_weight=1.0)
    for start in env.starts:
        a = a_star_search(env, start, h, max_expansions=8)
        b = reward_guided_search(env, start, lambda s, act: -1.0, lambda s: -h(s), max_expansions=8)
        assert (a.plan, a.expansions, a.generated) == (b.plan, b.expansions, b.generated)


def test_the_call_budget_and_the_heuristic_arguments_are_checked():
    env = ToolUseEnv()
    capped = a_star_search(env, env.starts[2], lambda state: 0.0, max_generated=50)
    assert not capped.found and 50 <= capped.generated < 50 + len(env.legal_actions(env.starts[2]))
    with pytest.raises(ValidationError, match="step_weight"):
        potential_heuristic(env, 1.0, 0.0)
    assert potential_heuristic(env, -1.0, 1.0)(env.starts[0]) == 0.0  # a negative progress weight promises nothing


def test_the_noisy_solver_makes_the_gold_calls_and_segments_pad_with_zero_rows():
    env = ToolUseEnv()
    rng = np.random.default_rng(0)
    for task, spec in enumerate(env.tasks):
        episode = experiment.noisy_solver_episode(env, task, 1.0, rng)
        assert len(episode) == len(spec.gold) and episode[-1][0] == 1.0  # the success aspect on the last call
    batch = experiment.aspect_segments([episode, episode[:1]], env.max_steps)
    assert batch.states.shape == (2 * env.max_steps, 5)
    assert batch.states[env.max_steps + 1:].abs().sum() == 0


def test_the_tiny_run_compares_a_star_with_sampling_and_draws_its_figure(tmp_path):
    path = experiment.run("tiny", tmp_path, seed=0, progress=False)
    results = json.loads(path.read_text())
    settings = experiment.SCALES["tiny"]
    assert set(results["summary"]) == set(experiment.METHODS)
    row = results["seeds"][0]
    for method in experiment.METHODS:
        assert len(row[method]) == len(results["tasks"])
        assert all(entry["calls"] < settings["call_budget"] + 400 for entry in row[method])
    assert all(entry["solved"] for entry in row["a_star_true"])  # the admissible true heuristic within the budget
    assert all(entry["expansions"] == settings["call_budget"] for entry in row["sampling"] if not entry["solved"])
    paths = figure.plot(tmp_path, tmp_path / "figures")
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 0 for p in paths)
