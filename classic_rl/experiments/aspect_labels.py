"""Scalar vs per-aspect labels on a multi-aspect task: for the same number of queries, does labelling every aspect
separately learn a better reward (and policy) than one scalar label of the aggregated reward?

Setting (ObjectWorld, ``classic_rl.testbeds.objectworld``, Levine et al. 2011; one world per seed):

* aspects ``a(s) ∈ R^3`` per state, as in ``feedback_consistency``: the task reward (in {−1, 0, +1}), closeness to
  the nearest object of outer colour 0 and of colour 1 (``1 − d/size``); the **true reward** is the fixed
  aggregate ``r(s) = Σ_k w_k a_k(s)`` with ``w`` = ``aspect_weights``;
* behaviour and items: soft-optimal policies of ``r`` at several temperatures plus the uniform policy, segments of
  ``segment_length`` steps (:mod:`classic_rl.segment_pools`); a pool of ``num_items`` segments;
  queries are random pairs of distinct items; budgets are nested (the first ``n`` of ``max(budgets)`` queries);
* labellers (``irl_bilevel.teachers.Teacher`` with ``aspect_weights = w, per_aspect = True``, so one call gives
  the scalar label of the aggregated return ``Σ_t r(s_t)`` and one label per aspect, each with its own noise
  draws): ``oracle`` (deterministic; exact ties answer ½), ``stochastic`` (Boltzmann, ``P = σ(R_1 − R_2)``, per
  aspect on that aspect's return), ``mistake`` (B-Pref: deterministic, each label flipped with prob. 0.1);
* methods, at ``n`` queries each:

  - ``scalar``: a linear reward ``r̂(s) = θᵀφ(s)`` on ObjectWorld's binary features ``φ`` (``2·C·size``), fitted
    by the catalog's ``bradley_terry`` on the ``n`` scalar labels (a tie ½ takes half the loss of each order);
  - ``per_aspect``: three linear heads ``r̂_k(s) = θ_kᵀφ(s)`` (:class:`~irl_bilevel.rewards.LinearReward` with
    aspect names) and the aggregator :class:`~irl_bilevel.rewards.FixedWeights` with the **known** weights
    ``w``; fitted by ``aspect_bradley_terry`` on the ``n × 3`` per-aspect labels. Each query yields three labels:
    more information per query, which is the point of the comparison;
  - ``per_aspect_split``: the same model with the same total label count as ``scalar``: query ``i`` is labelled
    on one aspect only (aspects assigned round-robin from a random start, via ``aspect_mask``), ``n`` labels.

  Both models' totals are linear in the same features, so the hypothesis class of the aggregated reward is the
  same; only the supervision differs. The aggregator weights are fixed, not learned: per-aspect Bradley-Terry
  never touches the aggregator (its loss reads the heads only), so learned weights would need scalar labels as
  well. Caveat that this exposes: each head's scale is set by its own labels' noise and the ridge penalty, so the
  effective weights ``w_k c_k`` (``c_k``: least-squares slope of head ``k`` on the true aspect, recorded as
  ``head_scales``) can drift from ``w``.
* training: full-batch Adam (``train_steps``, ``learning_rate``) on the mean loss plus ``l2 · ‖θ‖²`` (the same
  for both models; it keeps the scale finite on separable, noiseless labels). The per-segment return of a
  bias-free linear model is the model applied to the segment's summed features ``Σ_t φ(s_t)``, which is what
  the model is fed.
* metrics of the learned total ``r̂ [S]`` against ``r``: EPIC distance (``irl_bilevel.metrics.epic_distance``,
  Gleave et al. 2021; 0 = equal up to shaping and scaling); the normalized return
  (``irl_bilevel.metrics.normalized_return``: ``(J(π_r̂) − J(π_unif)) / (J(π*) − J(π_unif))`` under ``r``, exact,
  ``π`` soft-optimal at ``planning_temperature`` by soft value iteration, ``π*`` that of ``r``); ``r̂`` is first
  rescaled to the standard deviation of ``r`` over states, so the policy metric judges the reward's shape, not
  its arbitrary Bradley-Terry scale; held-out preference accuracy of ``r̂`` on ``test_queries`` pairs of a
  disjoint item pool (strict truth only). Reference: the least-squares fit of ``r`` on ``[φ, 1]`` over all
  states (the best the linear class can do in L2), reported per seed as ``linear_fit``.
* summary: IQM with a 95% percentile-bootstrap CI over seeds (``irl_bilevel.statistics.iqm_with_ci``) per
  (teacher, method, budget, metric).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from classic_rl.segment_pools import behaviour_episodes, random_pairs, random_segments
from classic_rl.testbeds import objectworld
from irl_bilevel.config import Config, NonEmpty, PositiveFloat, experiment_settings
from irl_bilevel.feedback import Trajectories
from irl_bilevel.losses import AspectPairBatch, RankingBatch, preference_loss
from irl_bilevel.metrics import epic_distance, normalized_return
from irl_bilevel.precision import default_dtype
from irl_bilevel.rewards import FixedWeights, LinearReward, Transitions
from irl_bilevel.runs import provenance, write_json
from irl_bilevel.statistics import iqm_with_ci
from irl_bilevel.tabular import TabularMDP, soft_value_iteration
from irl_bilevel.teachers import Teacher, tabular_aspect_function, tabular_reward_function
from irl_bilevel.validation import ValidationError

NAME = "aspect_labels"
ASPECTS = ("task", "near_colour_0", "near_colour_1")
METHODS = ("scalar", "per_aspect", "per_aspect_split")
TEACHERS = ("oracle", "stochastic", "mistake")
METRICS = ("epic", "normalized_return", "test_accuracy")


@dataclass(frozen=True)
class AspectLabelsConfig(Config):
    """Settings of the scalar-vs-per-aspect-labels experiment on ObjectWorld."""

    grid_size: int
    """ObjectWorld side"""
    num_objects: int
    """objects placed at random (seeded per world)"""
    num_colours: int
    """object colours (the aspects need colours 0 and 1)"""
    episode_length: int
    """steps per behaviour episode"""
    segment_length: int
    """steps per segment (item)"""
    temperatures: Annotated[tuple[PositiveFloat, ...], NonEmpty()]
    """soft-optimal behaviour policies of the true reward (plus uniform)"""
    episodes_per_policy: int
    """behaviour episodes per policy"""
    aspect_weights: tuple[float, float, float]
    """w: true reward = Σ_k w_k a_k (task, near colour 0, near colour 1)"""
    budgets: tuple[int, ...]
    """queries per fit (strictly increasing, >= 1)"""
    teachers: tuple[str, ...]
    """labellers, some of oracle / stochastic / mistake"""
    mistake_rate: float
    """flip probability of the mistake teacher"""
    num_items: int
    """segments in the training item pool"""
    test_items: int
    """segments in the disjoint held-out pool"""
    test_queries: int
    """held-out pairs for preference accuracy"""
    learning_rate: float
    """Adam step size"""
    train_steps: int
    """full-batch Adam steps per fit"""
    l2: float
    """ridge penalty l2 · ‖θ‖² (both models)"""
    planning_temperature: float
    """τ of the soft-optimal policies scored by normalized return"""
    seeds: int
    """seeds (worlds), starting at the run's seed"""

    def validate(self) -> None:
        budgets = self.budgets
        if len(budgets) == 0 or any(b < 1 for b in budgets) or any(a >= b for a, b in itertools.pairwise(budgets)):
            raise ValidationError(f"budgets: expected strictly increasing query counts >= 1, got {list(budgets)}")
        if len(self.teachers) == 0 or any(t not in TEACHERS for t in self.teachers):
            raise ValidationError(f"teachers: expected some of {list(TEACHERS)}, got {list(self.teachers)}")
        if any(not (math.isfinite(w) and w >= 0) for w in self.aspect_weights) or sum(self.aspect_weights) <= 0:
            raise ValidationError(f"aspect_weights: expected finite weights >= 0, not all zero; got "
                                  f"{list(self.aspect_weights)}")
        if not 0 <= self.mistake_rate <= 1:
            raise ValidationError(f"mistake_rate: expected a probability in [0, 1], got {self.mistake_rate}")
        if self.num_colours < 2:
            raise ValidationError(f"num_colours: expected >= 2 (aspects of colours 0 and 1), got {self.num_colours}")
        if self.segment_length > self.episode_length:
            raise ValidationError(f"segment_length: expected <= episode_length ({self.episode_length}), got "
                                  f"{self.segment_length}")
        for field in ("num_items", "test_items"):
            if getattr(self, field) < 2:
                raise ValidationError(f"{field}: expected >= 2 segments (pairs of distinct items), got "
                                      f"{getattr(self, field)}")
        for field in ("grid_size", "num_objects", "episode_length", "segment_length", "episodes_per_policy",
                      "test_queries", "train_steps", "seeds"):
            if getattr(self, field) < 1:
                raise ValidationError(f"{field}: expected an integer >= 1, got {getattr(self, field)}")
        for field in ("learning_rate", "planning_temperature"):
            if not (math.isfinite(getattr(self, field)) and getattr(self, field) > 0):
                raise ValidationError(f"{field}: expected a positive number, got {getattr(self, field)}")
        if not (math.isfinite(self.l2) and self.l2 >= 0):
            raise ValidationError(f"l2: expected a number >= 0, got {self.l2}")


_COMMON: dict[str, Any] = {"grid_size": 8, "num_objects": 10, "num_colours": 2, "episode_length": 30,
                           "segment_length": 10, "temperatures": [0.05, 0.3, 1.0, 3.0], "episodes_per_policy": 20,
                           "aspect_weights": [1.0, 0.5, 0.5], "teachers": ["oracle", "stochastic", "mistake"],
                           "mistake_rate": 0.1, "num_items": 200, "test_items": 100, "test_queries": 1000,
                           "learning_rate": 0.05, "train_steps": 300, "l2": 1e-3, "planning_temperature": 0.1}
SCALES: dict[str, dict[str, Any]] = {
    "tiny": {**_COMMON, "budgets": [10, 100], "teachers": ["oracle", "mistake"], "episodes_per_policy": 5,
             "num_items": 60, "test_items": 40, "test_queries": 200, "train_steps": 150, "seeds": 2},
    "quick": {**_COMMON, "budgets": [10, 25, 50, 100, 200], "seeds": 5},
    "full": {**_COMMON, "budgets": [10, 25, 50, 100, 200, 400], "episodes_per_policy": 50, "num_items": 400,
             "train_steps": 500, "seeds": 20},
}
CONFIG = AspectLabelsConfig  # the typed settings; every SCALES entry validates into it (tests check)


# ---------------------------------------------------------------------- the task
def _world(config: AspectLabelsConfig, seed: int) -> tuple[TabularMDP, torch.Tensor]:
    """ObjectWorld whose ``true_reward`` is the aggregate ``a(s) @ w`` ``[S]``; returns it and ``a [S, 3]``."""
    mdp = objectworld(config.grid_size, config.num_colours, config.num_objects, seed=seed)
    distances = objectworld(config.grid_size, config.num_colours, config.num_objects, continuous=True,
                            seed=seed).features[:, :2]
    assert mdp.true_reward is not None
    aspects = torch.stack([mdp.true_reward, 1 - distances[:, 0] / config.grid_size,
                           1 - distances[:, 1] / config.grid_size], dim=1)
    weights = torch.tensor(config.aspect_weights, dtype=aspects.dtype)
    return dataclasses.replace(mdp, true_reward=aspects @ weights, name=f"{mdp.name}_aspects"), aspects


def _teacher(name: str, config: AspectLabelsConfig) -> Teacher:
    options: dict[str, Any] = {"aspect_weights": tuple(config.aspect_weights), "per_aspect": True}
    if name == "oracle":
        return Teacher.oracle(**options)
    if name == "stochastic":
        return Teacher.stochastic(**options)
    return Teacher.mistaken(config.mistake_rate, **options)


# ---------------------------------------------------------------------- fitting
def _summed_features(segments: Trajectories, features: torch.Tensor) -> torch.Tensor:
    """``Σ_t φ(s_t)`` per segment, ``[N, F]``: a bias-free linear reward's segment return is linear in it."""
    return features[segments.observations.long()].sum(dim=1)


def _fit(method: str, first: torch.Tensor, second: torch.Tensor, labels: torch.Tensor, aspect_labels: torch.Tensor,
         config: AspectLabelsConfig, generator: torch.Generator) -> LinearReward:
    """Fit one reward model on ``n`` queries.

    ``first``, ``second``: summed features ``[n, F]`` of each query's segments; ``labels [n]`` the scalar labels,
    ``aspect_labels [n, 3]`` the per-aspect labels (1 first preferred, 0 second, ½ tie). ``scalar`` minimizes the
    soft-label Bradley-Terry loss ``y ℓ(f, s) + (1 − y) ℓ(s, f)``, ``ℓ(a, b) = −log σ(r̂(a) − r̂(b))`` (the catalog's
    ``bradley_terry`` on both orders); the per-aspect methods minimize ``aspect_bradley_terry`` (with one aspect
    per query masked in for ``per_aspect_split``). Plus ``l2 · ‖θ‖²``.
    """
    n, num_features = first.shape
    per_aspect = method != "scalar"
    names = ASPECTS if per_aspect else ("reward",)
    aggregator = FixedWeights(config.aspect_weights) if per_aspect else None
    model = LinearReward(num_features, aspect_names=names, aggregator=aggregator, bias=False)
    mask = None
    if method == "per_aspect_split":
        # round-robin from a random start: every query one aspect, the aspects' counts differ by at most one
        start = int(torch.randint(len(ASPECTS), (1,), generator=generator))
        which = (torch.arange(n) + start) % len(ASPECTS)
        mask = torch.nn.functional.one_hot(which, len(ASPECTS)).bool()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    for _ in range(config.train_steps):
        out_first, out_second = model(Transitions(first)), model(Transitions(second))
        if per_aspect:
            batch = AspectPairBatch(out_first.aspects, out_second.aspects)
            loss = preference_loss("aspect_bradley_terry", batch, aspect_labels=aspect_labels,
                                   aspect_mask=mask).loss
        else:
            forward = preference_loss("bradley_terry", RankingBatch.from_pairs(out_first.total, out_second.total))
            backward = preference_loss("bradley_terry", RankingBatch.from_pairs(out_second.total, out_first.total))
            loss = (labels * forward.losses + (1 - labels) * backward.losses).mean()
        loss = loss + config.l2 * model.linear.weight.pow(2).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


def _head_scales(model: LinearReward, features: torch.Tensor, aspects: torch.Tensor) -> list[float]:
    """Least-squares slope ``c_k`` of head ``k`` on the true aspect over states (centred): the head's scale."""
    with torch.no_grad():
        heads = model(Transitions(features)).aspects
    heads, truth = heads - heads.mean(dim=0), aspects - aspects.mean(dim=0)
    return [float((heads[:, k] * truth[:, k]).sum() / (truth[:, k] ** 2).sum()) for k in range(aspects.shape[1])]


def _scores(mdp: TabularMDP, reward: torch.Tensor, expert_log_policy: torch.Tensor, config: AspectLabelsConfig,
            test_first: torch.Tensor, test_second: torch.Tensor, test_truth: torch.Tensor) -> dict[str, float]:
    """EPIC, normalized return (reward rescaled to the true reward's std over states) and held-out accuracy of a
    state reward ``[S]``; ``test_first``/``test_second`` are the held-out segments' state counts ``[M, S]``."""
    assert mdp.true_reward is not None
    epic = epic_distance(reward, mdp.true_reward, mdp.num_states, mdp.num_actions, mdp.discount)
    spread = float(reward.std())
    scaled = (reward - reward.mean()) * (float(mdp.true_reward.std()) / spread) if spread > 0 else reward * 0
    ret = normalized_return(mdp, scaled, expert_log_policy, config.planning_temperature)
    predicted = (test_first - test_second) @ reward
    correct = ((predicted > 0) == (test_truth == 1)).double()
    correct = torch.where(predicted == 0, torch.full_like(correct, 0.5), correct)
    return {"epic": epic, "normalized_return": ret, "test_accuracy": float(correct.mean())}


# ---------------------------------------------------------------------- one world
def _one_seed(config: AspectLabelsConfig, seed: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    generator = torch.Generator().manual_seed(seed)
    mdp, aspects = _world(config, seed)
    assert mdp.true_reward is not None
    features = mdp.features
    expert = soft_value_iteration(mdp, mdp.true_reward, config.planning_temperature).log_policy
    episodes = behaviour_episodes(mdp, config.temperatures, config.episodes_per_policy, config.episode_length,
                                  generator)
    items = random_segments(episodes, config.num_items, config.segment_length, generator)
    largest = max(config.budgets)
    first_index, second_index = random_pairs(config.num_items, largest, generator)
    first, second = items.subset(first_index), items.subset(second_index)
    sum_first, sum_second = _summed_features(first, features), _summed_features(second, features)

    test_items = random_segments(episodes, config.test_items, config.segment_length, generator)
    t_first, t_second = random_pairs(config.test_items, config.test_queries, generator)
    counts = torch.nn.functional.one_hot(test_items.observations.long(), mdp.num_states).sum(dim=1).to(features.dtype)
    test_truth = Teacher("truth").label_segments(test_items.subset(t_first), test_items.subset(t_second),
                                                 tabular_reward_function(mdp.true_reward)).labels
    strict = test_truth != 0.5
    test = (counts[t_first][strict], counts[t_second][strict], test_truth[strict])

    # reference: the least-squares fit of the true reward on [φ, 1] over states
    design = torch.cat([features, torch.ones(mdp.num_states, 1, dtype=features.dtype)], dim=1)
    # pinv, not lstsq: the binary features are rank deficient (thresholds every state meets), where torch's
    # default CPU lstsq driver returned a poor fit
    reference = _scores(mdp, design @ (torch.linalg.pinv(design) @ mdp.true_reward), expert, config, *test)

    aspect_fn = tabular_aspect_function(aspects)
    rows = []
    for teacher_name in config.teachers:
        labelled = _teacher(teacher_name, config).label_segments(first, second, aspect_fn, generator=generator)
        assert labelled.aspect_labels is not None
        setting = {"tie_rate": float((labelled.labels == 0.5).double().mean()),
                   "aspect_tie_rates": (labelled.aspect_labels == 0.5).double().mean(dim=0).tolist()}
        for budget in config.budgets:
            part = slice(0, budget)
            for method in METHODS:
                model = _fit(method, sum_first[part], sum_second[part], labelled.labels[part],
                             labelled.aspect_labels[part], config, generator)
                with torch.no_grad():
                    reward = model(Transitions(features)).total
                row = {"seed": seed, "teacher": teacher_name, "method": method, "budget": budget,
                       "queries": budget, "labels": budget * (len(ASPECTS) if method == "per_aspect" else 1),
                       **_scores(mdp, reward, expert, config, *test), **setting}
                if method != "scalar":
                    row["head_scales"] = _head_scales(model, features, aspects)
                rows.append(row)
    world = {"seed": seed, "linear_fit": reference, "true_reward_std": float(mdp.true_reward.std()),
             "test_strict_queries": int(strict.sum())}
    return rows, world


def _summary(rows: list[dict[str, Any]], config: AspectLabelsConfig, seed: int) -> dict[str, Any]:
    """``summary[teacher][method][metric]``: one ``{budget, iqm, low, high, n}`` per budget."""
    summary: dict[str, Any] = {}
    for teacher in config.teachers:
        summary[teacher] = {}
        for method in METHODS:
            summary[teacher][method] = {}
            for metric in METRICS:
                cells = []
                for budget in config.budgets:
                    values = [r[metric] for r in rows
                              if r["teacher"] == teacher and r["method"] == method and r["budget"] == budget]
                    cells.append({"budget": budget, **iqm_with_ci(values, seed=seed)})
                summary[teacher][method][metric] = cells
    return summary


def run(scale: str, results_dir: Path, seed: int = 0, progress: bool = True,
        config: AspectLabelsConfig | None = None) -> Path:
    """Every (seed, teacher, budget, method) fit at ``scale``; writes ``results_dir/aspect_labels.json``."""
    settings = experiment_settings(AspectLabelsConfig, SCALES, scale, NAME, config)
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    worlds = []
    with default_dtype(torch.float64):
        for index in tqdm(range(settings.seeds), desc=NAME, disable=not progress):
            seed_rows, world = _one_seed(settings, seed + index)
            rows += seed_rows
            worlds.append(world)
    reference = {metric: iqm_with_ci([w["linear_fit"][metric] for w in worlds], seed=seed) for metric in METRICS}
    record = {
        "name": NAME, "scale": scale, "config": settings.to_dict(), "provenance": provenance(seed),
        "setting": {"testbed": "objectworld", "aspects": list(ASPECTS), "methods": list(METHODS),
                    "metrics": list(METRICS), "aggregator": "fixed (known) weights",
                    "labels_per_query": {"scalar": 1, "per_aspect": len(ASPECTS), "per_aspect_split": 1},
                    "mean_tie_rate": {t: float(np.mean([r["tie_rate"] for r in rows if r["teacher"] == t]))
                                      for t in settings.teachers}},
        "runs": rows, "worlds": worlds, "linear_fit": reference,
        "summary": _summary(rows, settings, seed),
        "seconds": time.perf_counter() - started,
    }
    path = Path(results_dir) / f"{NAME}.json"
    write_json(path, record)
    return path
