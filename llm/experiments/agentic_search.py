"""Reward-guided A* over tool calls (in the style of ToolChain*, Zhuang et al. 2023) against plain sampling on the typed
tool-use task, with a reward learned from preferences.

Task: :class:`llm.agentic.ToolUseEnv`, its six tasks (gold sequences of 1–3 calls, move cap 7). The action space is
the env's typed candidate calls (``legal_actions``: the task's constants and earlier results as numbers, every
same-dimension unit pair, every table key, digits 0–2; about 60–300 calls per state). No language model: the
built-in model's corpus holds no tool-use text, so "plain sampling" is uniform sampling over the candidate calls.

Per seed:

1. **Preferences.** ``pairs_per_task`` pairs of episodes from every task, each from a noisy solver that makes the
   next gold call with probability ``q`` (drawn uniformly per episode) and a uniformly random candidate call
   otherwise, until the goal or the move cap; the B-Pref oracle teacher (:class:`irl_bilevel.teachers.Teacher`)
   labels each pair by the true structured return (``DEFAULT_WEIGHTS``).
2. **Learned reward.** ``r_θ(s, a) = θᵀ φ(s, a)`` over the env's true aspects ``φ`` (success, invalid, malformed,
   progress, step; :class:`irl_bilevel.rewards.LinearReward` on the aspect vector), fitted to the labelled pairs by
   the core's Bradley-Terry likelihood (:class:`irl_bilevel.preference_likelihood.PreferenceLikelihood`, segments
   padded with zero rows to the move cap) plus ``(l2/2)‖θ‖²``, L-BFGS. The same structured-reward family as the
   LoRA experiments, with the weights learned.
3. **Search from every task's start**, each method with a budget of ``call_budget`` tool calls run on the typed
   API (the successors A* generates; the calls of the sampled rollouts), A* also with at most ``max_expansions``
   expansions:

   * ``sampling``: plain sampling, uniformly random candidate calls in rollouts of at most the move cap, repeated
     until one solves the task or the budget is spent;
   * ``a_star_uniform``: A* with unit cost per call and ``h = 0`` (uniform-cost search: no reward);
   * ``a_star_learned``: A* with unit cost per call and the learned reward as heuristic,
     ``h(s) = (θ_progress / θ_step)·d(s)`` (:func:`llm.agentic.search.potential_heuristic`: the potential the learned
     reward's progress aspect telescopes into, in units of its per-call cost; ``d`` the gold calls still to make,
     the env's feature the progress aspect is computed from);
   * ``a_star_true``: the same heuristic from the true reward (ratio 1: admissible).

   Measured per task: solved (the goal reached within the budget and the move cap), expansions (nodes expanded; a
   sampled call is one expansion) and tool calls run; across seeds the IQM with a 95% bootstrap CI of the success
   rate over tasks, and of the expansions and calls per task (stratified bootstrap over tasks).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from irl_bilevel.config import Config, NonNegativeFloat, PositiveInt, experiment_settings
from irl_bilevel.preference_likelihood import PreferenceLikelihood
from irl_bilevel.rewards import LinearReward, Transitions
from irl_bilevel.runs import provenance, write_json
from irl_bilevel.statistics import iqm_with_ci, stratified_iqm_with_ci
from irl_bilevel.teachers import Teacher
from llm.agentic import ASPECT_NAMES, ToolUseEnv
from llm.agentic.search import a_star_search, potential_heuristic

NAME = "agentic_search"
METHODS = ("sampling", "a_star_uniform", "a_star_learned", "a_star_true")


@dataclass(frozen=True)
class AgenticSearchConfig(Config):
    """Settings of the tool-use search experiment (protocol: the module docstring)."""

    seeds: PositiveInt
    """seeds seed, seed + 1, ...: preference episodes, labels and the sampling baseline"""
    pairs_per_task: PositiveInt
    """labelled episode pairs per task"""
    l2: NonNegativeFloat
    """on θ (Bradley-Terry on separable pairs has no finite maximizer)"""
    call_budget: PositiveInt
    """tool calls per method and task"""
    max_expansions: PositiveInt
    """A*'s expansion cap per task"""


SCALES: dict[str, dict[str, Any]] = {
    "tiny": {"seeds": 1, "pairs_per_task": 2, "l2": 0.01, "call_budget": 1_000, "max_expansions": 10},
    "quick": {"seeds": 5, "pairs_per_task": 20, "l2": 0.01, "call_budget": 5_000, "max_expansions": 100},
    "full": {"seeds": 10, "pairs_per_task": 50, "l2": 0.01, "call_budget": 100_000, "max_expansions": 1_000},
}
CONFIG = AgenticSearchConfig


def noisy_solver_episode(env: ToolUseEnv, task: int, gold_probability: float,
                         rng: np.random.Generator) -> list[np.ndarray]:
    """The aspect vectors ``[T][K]`` of one episode from ``task`` of a solver that makes the next gold call with
    probability ``gold_probability`` and a uniformly random candidate call otherwise."""
    state, aspects = env.starts[task], []
    plan = env.gold_plan(state)
    for _ in range(env.max_steps):
        done = env.matched_gold(state)
        gold = plan[done] if done < len(plan) and rng.random() < gold_probability else None
        # A gold call whose $k refers to a result that is not where the gold sequence put it is replaced too.
        if gold is not None and env.legality_error(state, gold) is None:
            action = gold
        else:
            action = random_legal_call(env, state, rng)
        following = env.transition(state, action)
        aspects.append(env.step_aspects(state, action, following, "legal"))
        state = following
        if env.is_terminal(state):
            break
    return aspects


def aspect_segments(episodes: list[list[np.ndarray]], length: int) -> Transitions:
    """Episodes as reward-model input: ``N·length`` rows of aspect vectors, zero rows after an episode's end."""
    rows = torch.zeros(len(episodes), length, len(ASPECT_NAMES))
    for i, episode in enumerate(episodes):
        rows[i, :len(episode)] = torch.as_tensor(np.asarray(episode))
    return Transitions(rows.reshape(-1, len(ASPECT_NAMES)))


def learn_reward(env: ToolUseEnv, pairs_per_task: int, l2: float, seed: int) -> tuple[list[float], dict[str, Any]]:
    """θ of ``r_θ = θᵀφ`` from oracle preferences between noisy-solver episodes (module docstring, steps 1–2)."""
    rng = np.random.default_rng(seed)
    first, second = [], []
    for task in range(len(env.starts)):
        for _ in range(pairs_per_task):
            first.append(noisy_solver_episode(env, task, float(rng.random()), rng))
            second.append(noisy_solver_episode(env, task, float(rng.random()), rng))
    weights = torch.as_tensor(env.weights)
    length = env.max_steps

    def true_rewards(episodes: list[list[np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor]:
        rewards, mask = torch.zeros(len(episodes), length), torch.zeros(len(episodes), length, dtype=torch.bool)
        for i, episode in enumerate(episodes):
            rewards[i, :len(episode)] = torch.as_tensor(np.asarray(episode)) @ weights
            mask[i, :len(episode)] = True
        return rewards, mask

    (r1, m1), (r2, m2) = true_rewards(first), true_rewards(second)
    labels = Teacher.oracle().label(r1, r2, m1, m2, generator=torch.Generator().manual_seed(seed))
    model = LinearReward(len(ASPECT_NAMES))
    objective = PreferenceLikelihood(model, length, "bradley_terry")
    objective.add(aspect_segments(first, length), aspect_segments(second, length), labels.labels, labels.skipped)
    optimizer = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=200, history_size=20,
                                  line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = objective.reward_loss(model) + 0.5 * l2 * model.linear.weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    theta = model.linear.weight.detach().reshape(-1).tolist()
    decided = int((labels.labels != 0.5).sum())
    return theta, {"pairs": len(first), "decided_pairs": decided, "ties": len(first) - decided}


def random_legal_call(env: ToolUseEnv, state: Any, rng: np.random.Generator) -> Any:
    """A uniformly random legal candidate call: candidates of the grammar drawn uniformly until one passes the typed
    check (the same distribution as drawing from ``legal_actions``, without checking every candidate)."""
    candidates = env.candidate_calls(state)
    while True:
        call = candidates[int(rng.integers(len(candidates)))]
        if env.legality_error(state, call) is None:
            return call


def plain_sampling(env: ToolUseEnv, task: int, budget: int, rng: np.random.Generator) -> dict[str, Any]:
    """Uniformly random candidate calls in rollouts of at most the move cap until one solves ``task`` or ``budget``
    calls are spent."""
    calls = 0
    while calls < budget:
        state = env.starts[task]
        for _ in range(env.max_steps):
            state = env.transition(state, random_legal_call(env, state, rng))
            calls += 1
            if env.is_success(state):
                return {"solved": True, "expansions": calls, "calls": calls}
            if calls >= budget or env.is_terminal(state):
                break
    return {"solved": False, "expansions": calls, "calls": calls}


def heuristic_of(env: ToolUseEnv, theta: list[float] | None) -> Callable[[Any], float]:
    """``h = 0`` for ``None``; else :func:`potential_heuristic` of ``theta``'s progress and step weights (a step weight
    that is not positive, i.e. a reward that does not charge for calls, counts as 1)."""
    if theta is None:
        return lambda state: 0.0
    step = theta[ASPECT_NAMES.index("step")]
    return potential_heuristic(env, theta[ASPECT_NAMES.index("progress")], step if step > 0 else 1.0)


def a_star(env: ToolUseEnv, task: int, theta: list[float] | None, budget: int, max_expansions: int) -> dict[str, Any]:
    """A* with unit cost per call and the heuristic of ``theta`` (:func:`heuristic_of`)."""
    result = a_star_search(env, env.starts[task], heuristic_of(env, theta), max_expansions=max_expansions,
                           max_generated=budget)
    solved = result.found and len(result.plan) <= env.max_steps
    return {"solved": bool(solved), "expansions": result.expansions, "calls": result.generated,
            "plan_length": len(result.plan) if result.found else None}


def _summary(per_seed: list[dict[str, Any]], num_tasks: int) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for method in METHODS:
        success = [float(np.mean([row[method][t]["solved"] for t in range(num_tasks)])) for row in per_seed]
        by_task = {t: [row[method][t]["expansions"] for row in per_seed] for t in range(num_tasks)}
        calls = {t: [row[method][t]["calls"] for row in per_seed] for t in range(num_tasks)}
        summary[method] = {"success_per_seed": success, "success": iqm_with_ci(success),
                           "expansions": stratified_iqm_with_ci(by_task), "calls": stratified_iqm_with_ci(calls),
                           "solved_per_task": [float(np.mean([row[method][t]["solved"] for row in per_seed]))
                                               for t in range(num_tasks)],
                           "expansions_per_task": [float(np.mean(by_task[t])) for t in range(num_tasks)]}
    return summary


def run(scale: str, results_dir: Path, seed: int = 0, progress: bool = True,
        config: AgenticSearchConfig | None = None) -> Path:
    """Run at ``scale``; writes ``results_dir/agentic_search.json`` (seconds at every scale: no LM)."""
    settings = experiment_settings(AgenticSearchConfig, SCALES, scale, NAME, config)
    started = time.perf_counter()
    env = ToolUseEnv()
    per_seed: list[dict[str, Any]] = []
    for run_seed in tqdm([seed + i for i in range(settings.seeds)], desc=NAME, disable=not progress):
        theta, preferences = learn_reward(env, settings.pairs_per_task, settings.l2, run_seed)
        rng = np.random.default_rng(run_seed + 10_000)
        row: dict[str, Any] = {"seed": run_seed, "theta": theta, "preferences": preferences}
        tasks = range(len(env.starts))
        row["sampling"] = [plain_sampling(env, t, settings.call_budget, rng) for t in tasks]
        for method, weights in (("a_star_uniform", None), ("a_star_learned", theta),
                                ("a_star_true", env.weights.tolist())):
            row[method] = [a_star(env, t, weights, settings.call_budget, settings.max_expansions)
                           for t in tasks]
        per_seed.append(row)
    record = {"name": NAME, "scale": scale, "config": settings.to_dict(), "provenance": provenance(seed),
              "aspect_names": list(ASPECT_NAMES), "true_weights": env.weights.tolist(),
              "tasks": [task.name for task in env.tasks], "gold_lengths": [len(task.gold) for task in env.tasks],
              "move_cap": env.max_steps, "seeds": per_seed, "summary": _summary(per_seed, len(env.starts)),
              "complete": True, "seconds": time.perf_counter() - started}
    path = Path(results_dir) / f"{NAME}.json"
    write_json(path, record)
    return path
