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

A* in cost form (:func:`a_star_search`, ToolChain*'s ``f(n) = g(n) + h(n)``): ``g`` the cost so far (one per action
by default: the number of tool calls), ``h(s)`` an estimate of the cost still to come, the node with the smallest
``f`` expanded first. It is the same search with ``r = −cost`` and value ``−h`` (one implementation).
:func:`potential_heuristic` turns a structured reward (learned or true) into such an ``h``: the progress aspect
``d(s) − d(s')`` telescopes into the potential ``−w_progress·d(s)``, so a reward ``w_step·step + w_progress·progress +
…`` promises ``(w_progress / w_step)·d(s)`` actions' worth of cost still to come, ``h(s) = (w_progress / w_step)·d(s)``.
What a learned reward contributes is the ratio of its weights; ``d`` is the env's own feature (the one its progress
aspect is computed from). The heuristic is admissible and consistent iff ``w_progress ≤ w_step`` (``d`` counts
actions): a learned ratio above 1 makes A* greedier, with no optimality guarantee.

The search reads the environment only through ``legal_actions``, ``transition``, ``is_success`` and
``is_terminal``, which are pure functions of the (hashable) state; no environment is cloned. ``expansions`` counts
the nodes expanded, ``generated`` the successors computed (each one an action executed in the model of the
environment: for tool use, a call run on the typed API).
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
    """``plan`` (actions) to a goal when ``found``; ``score`` = Σ r along it; ``expansions`` nodes expanded;
    ``generated`` successors computed."""

    plan: list[Any]
    found: bool
    score: float
    expansions: int
    states: list[Hashable] = field(default_factory=list)
    generated: int = 0


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
    max_generated: int | None = None,
) -> SearchResult:
    """Best-first search from ``start`` for a goal, maximizing ``g + h`` (see the module docstring); it gives up after
    ``max_expansions`` expansions or once ``max_generated`` successors have been computed."""
    if max_expansions < 1:
        raise ValidationError(f"max_expansions: expected a positive integer, got {max_expansions}")
    depth_limit = max_depth if max_depth is not None else 10 * env.max_steps
    value = heuristic if heuristic is not None else (lambda state: 0.0)
    order = itertools.count()
    # Heap entries: (−f, −depth, order, g, state, path)
    frontier: list[tuple[float, int, int, float, Hashable, tuple]] = [(-value(start), 0, next(order), 0.0, start, ())]
    best_g: dict[Hashable, float] = {start: 0.0}
    expansions = generated = 0
    while frontier and expansions < max_expansions and (max_generated is None or generated < max_generated):
        _, negative_depth, _, g, state, path = heapq.heappop(frontier)
        if g < best_g.get(state, float("-inf")):
            continue  # a better path to this state was found after this entry was pushed
        expansions += 1
        if env.is_success(state):
            states = [start]
            for action in path:
                states.append(env.transition(states[-1], action))
            return SearchResult(list(path), True, g, expansions, states, generated)
        if env.is_terminal(state) or -negative_depth >= depth_limit:
            continue
        for action in env.legal_actions(state):
            next_state = env.transition(state, action)
            generated += 1
            next_g = g + float(step_reward(state, action))
            if next_g <= best_g.get(next_state, float("-inf")):
                continue
            best_g[next_state] = next_g
            priority = -(next_g + value(next_state))
            heapq.heappush(frontier, (priority, negative_depth - 1, next(order), next_g, next_state, (*path, action)))
    return SearchResult([], False, float("-inf"), expansions, generated=generated)


def a_star_search(
    env: TextEnv,
    start: Hashable,
    heuristic: Callable[[Any], float],
    step_cost: StepReward | None = None,
    max_expansions: int = 10_000,
    max_depth: int | None = None,
    max_generated: int | None = None,
) -> SearchResult:
    """A*: expand the node with the smallest ``g + h`` (module docstring); ``g = Σ step_cost(s, a)``, one per action
    by default. The result's ``score`` is ``−g`` of the plan (the search runs as :func:`reward_guided_search`)."""
    cost = step_cost if step_cost is not None else (lambda state, action: 1.0)
    return reward_guided_search(env, start, lambda state, action: -float(cost(state, action)),
                                lambda state: -float(heuristic(state)), max_expansions, max_depth, max_generated)


def potential_heuristic(env: TextEnv, progress_weight: float, step_weight: float) -> Callable[[Any], float]:
    """``h(s) = (max(progress_weight, 0) / step_weight)·env.distance_to_goal(s)`` (module docstring); ``step_weight``
    > 0 is the reward's weight on the per-action ``step`` aspect; 0 on terminal states."""
    if not step_weight > 0:
        raise ValidationError(f"step_weight: expected a positive weight on the step aspect, got {step_weight}")
    ratio = max(float(progress_weight), 0.0) / float(step_weight)

    def heuristic(state: Any) -> float:
        return 0.0 if env.is_terminal(state) else ratio * float(env.distance_to_goal(state))

    return heuristic
