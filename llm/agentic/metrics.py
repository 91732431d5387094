"""Episode records and the agentic decision metrics over them.

Metrics (over a list of ``EpisodeRecord``):

* ``success_rate``: fraction of episodes **solved** = goal reached with no invalid and no malformed action
  (MAP's "solved with no invalid move"; a malformed answer is an invalid move there);
* ``invalid_action_rate`` / ``malformed_rate``: invalid (resp. malformed) actions over all actions taken;
* ``plan_length_ratio``: mean of ``steps / optimal length`` over solved episodes (1 = optimal);
* ``success_stability``: the success rate per seed, and its mean, variance (``ddof=1``) and standard
  deviation across seeds (stability across training seeds).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from irl_bilevel.validation import ValidationError
from llm.agentic.base import TextEnv


@dataclass
class EpisodeRecord:
    """One episode: counts, the optimal length from its start, and what was seen and done.

    ``states [T + 1]`` (visited states, start first), ``action_texts [T]``, ``aspects [T, K]``.
    """

    env: str
    start: int
    seed: int
    reached_goal: bool
    steps: int
    num_invalid: int
    num_malformed: int
    optimal_length: float
    total_reward: float = 0.0
    states: list[Any] = field(default_factory=list)
    observations: list[str] = field(default_factory=list)
    action_texts: list[str] = field(default_factory=list)
    aspects: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.steps < 0 or self.num_invalid < 0 or self.num_malformed < 0:
            raise ValidationError("EpisodeRecord: steps and counts must be non-negative")
        if self.num_invalid + self.num_malformed > self.steps:
            raise ValidationError(
                f"EpisodeRecord: {self.num_invalid} invalid + {self.num_malformed} malformed actions "
                f"exceed the {self.steps} steps"
            )

    @property
    def solved(self) -> bool:
        return self.reached_goal and self.num_invalid == 0 and self.num_malformed == 0

    def add_move(self, observation: str, action_text: str, reward: float, info: dict[str, Any]) -> None:
        """Record one move: the observation it answered, its action text, and ``env.step``'s reward and ``info``
        (the new state, the reward aspects ``[K]``, and the episode's running counts and goal flag)."""
        self.observations.append(observation)
        self.action_texts.append(action_text)
        self.states.append(info["state"])
        self.aspects.append(info["reward_aspects"])
        self.total_reward += reward
        self.reached_goal = info["success"]
        self.steps, self.num_invalid, self.num_malformed = info["steps"], info["num_invalid"], info["num_malformed"]


def run_episode(env: TextEnv, policy: Callable[[str], str], start: int, seed: int = 0) -> EpisodeRecord:
    """Roll ``policy`` (observation text → action text) from ``env.starts[start]`` until the episode ends."""
    observation, info = env.reset(seed=seed, options={"start": start})
    record = EpisodeRecord(env.name, start, seed, False, 0, 0, 0, info["optimal_length"], states=[env.state])
    done = False
    while not done:
        action_text = policy(observation)
        next_observation, reward, terminated, truncated, info = env.step(action_text)
        record.add_move(observation, action_text, reward, info)
        observation, done = next_observation, terminated or truncated
    return record


def _check(records: Sequence[EpisodeRecord]) -> None:
    if len(records) == 0:
        raise ValidationError("records: expected at least one episode record")


def success_rate(records: Sequence[EpisodeRecord]) -> float:
    _check(records)
    return sum(r.solved for r in records) / len(records)


def invalid_action_rate(records: Sequence[EpisodeRecord]) -> float:
    """Invalid actions over all actions (0 when no action was taken)."""
    _check(records)
    steps = sum(r.steps for r in records)
    return sum(r.num_invalid for r in records) / steps if steps else 0.0


def malformed_rate(records: Sequence[EpisodeRecord]) -> float:
    _check(records)
    steps = sum(r.steps for r in records)
    return sum(r.num_malformed for r in records) / steps if steps else 0.0


def plan_length_ratio(records: Sequence[EpisodeRecord]) -> float:
    """Mean ``steps / optimal_length`` over solved episodes; ``nan`` when none is solved."""
    _check(records)
    ratios = [r.steps / r.optimal_length for r in records if r.solved and r.optimal_length > 0]
    return float(np.mean(ratios)) if ratios else math.nan


def success_stability(records: Sequence[EpisodeRecord]) -> dict[str, Any]:
    """Success rate per seed and its mean, variance (``ddof=1``; 0 for one seed) and std across seeds."""
    _check(records)
    by_seed: dict[int, list[EpisodeRecord]] = defaultdict(list)
    for record in records:
        by_seed[record.seed].append(record)
    per_seed = {seed: success_rate(group) for seed, group in sorted(by_seed.items())}
    rates = np.asarray(list(per_seed.values()))
    variance = float(rates.var(ddof=1)) if len(rates) > 1 else 0.0
    return {"per_seed": per_seed, "mean": float(rates.mean()), "variance": variance, "std": math.sqrt(variance)}


def summarize(records: Sequence[EpisodeRecord]) -> dict[str, Any]:
    """Every metric at once (a JSON-ready dict)."""
    stability = success_stability(records)
    return {
        "episodes": len(records),
        "success_rate": success_rate(records),
        "goal_rate": sum(r.reached_goal for r in records) / len(records),
        "invalid_action_rate": invalid_action_rate(records),
        "malformed_rate": malformed_rate(records),
        "plan_length_ratio": plan_length_ratio(records),
        "success_std_across_seeds": stability["std"],
        "success_variance_across_seeds": stability["variance"],
    }
