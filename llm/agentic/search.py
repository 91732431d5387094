"""Reward-guided best-first (A*-style) search over actions, in the spirit of ToolChain* (Zhuang et al. 2023).

Given a per-step reward ``r(s, a)`` (the true reward, a learned reward model, or any scorer of rendered
text) and an optional value heuristic ``h(s)`` (an estimate of the reward still to come), the search treats
``c(s, a) = −r(s, a)`` as a cost and expands the node with the largest ``f(n) = g(n) + h(s_n)``, where
``g(n) = Σ r`` along the path. It stops when a goal state is expanded, or after ``max_expansions``.
Ties go to the deeper node, then to the earlier one (deterministic).

With ``h = 0`` this is A* with cost ``−r``. For the environments' true reward (``step`` and ``progress`` with
``w_progress ≤ w_step``), ``−r = w_step − w_progress (d(s) − d(s'))`` is the step cost reweighted by the
potential ``w_progress·d``, i.e. A* on unit costs with the consistent heuristic ``(w_progress/w_step)·d``:
the first goal expanded lies on a shortest plan. A learned reward comes with no such guarantee; the
search is the baseline that uses a reward for planning instead of for fine-tuning.

The search reads the environment only through ``legal_actions``, ``transition``, ``is_success`` and
``is_terminal``, which are pure functions of the (hashable) state; no environment is cloned.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from irl_bilevel.validation import ValidationError
from llm.agentic.base import TextEnv

StepReward = Callable[[Any, Any], float]


@dataclass
class SearchResult:
    """``plan`` (actions) to a goal when ``found``; ``score`` = Σ r along it; ``expansions`` nodes expanded."""

    plan: list[Any]
    found: bool
    score: float
    expansions: int
    states: list[Hashable] = field(default_factory=list)


def text_step_reward(env: TextEnv, score: Callable[[str, str], float]) -> StepReward:
    """Adapt a scorer of ``(observation text, action text)`` (e.g. an LM reward model) to ``r(s, a)``."""
    return lambda state, action: float(score(env.render_state(state), env.format_action(action)))


def reward_guided_search(
    env: TextEnv,
    start: Hashable,
    step_reward: StepReward,
    heuristic: Callable[[Any], float] | None = None,
    max_expansions: int = 10_000,
    max_depth: int | None = None,
) -> SearchResult:
    """Best-first search from ``start`` for a goal, maximizing ``g + h`` (see the module docstring)."""
    if max_expansions < 1:
        raise ValidationError(f"max_expansions: expected a positive integer, got {max_expansions}")
    depth_limit = max_depth if max_depth is not None else 10 * env.max_steps
    value = heuristic if heuristic is not None else (lambda state: 0.0)
    order = itertools.count()
    # Heap entries: (−f, −depth, order, g, state, path)
    frontier: list[tuple[float, int, int, float, Hashable, tuple]] = [(-value(start), 0, next(order), 0.0, start, ())]
    best_g: dict[Hashable, float] = {start: 0.0}
    expansions = 0
    while frontier and expansions < max_expansions:
        _, negative_depth, _, g, state, path = heapq.heappop(frontier)
        if g < best_g.get(state, float("-inf")):
            continue  # a better path to this state was found after this entry was pushed
        expansions += 1
        if env.is_success(state):
            states = [start]
            for action in path:
                states.append(env.transition(states[-1], action))
            return SearchResult(list(path), True, g, expansions, states)
        if env.is_terminal(state) or -negative_depth >= depth_limit:
            continue
        for action in env.legal_actions(state):
            next_state = env.transition(state, action)
            next_g = g + float(step_reward(state, action))
            if next_g <= best_g.get(next_state, float("-inf")):
                continue
            best_g[next_state] = next_g
            priority = -(next_g + value(next_state))
            heapq.heappush(frontier, (priority, negative_depth - 1, next(order), next_g, next_state, (*path, action)))
    return SearchResult([], False, float("-inf"), expansions)
