"""Feedback consistency on ObjectWorld: simulated humans (B-Pref teachers and a disagreeing population) and an AI
evaluator (a learned reward model) label the same segment pairs; their agreement with each other and the truth.

Setting (``classic_rl.testbeds.objectworld``, Levine et al. 2011; true reward in {−1, 0, +1} per state):

* behaviour: soft-optimal policies of the true reward (``soft_value_iteration``) at several temperatures, plus
  the uniform policy; ``episodes_per_policy`` episodes of ``episode_length`` steps each
  (``irl_bilevel.sampling.sample_trajectories``); segments are windows of ``segment_length`` steps at random
  offsets;
* items: a pool of ``num_items`` segments; queries: *every* pair of items, each in random order (so triples are
  complete and intransitivity is measurable), shuffled;
* truth: the sign of the true return difference (exact ties: tie). B-Pref's threshold margin is the mean true
  episode return × segment length / episode length over all sampled episodes;
* labellers: the six B-Pref teachers (``irl_bilevel.teachers``); a population of ``num_annotators`` oracles
  judging three aspects — the task reward, closeness to objects of outer colour 0 and of colour 1 (``1 − d/size``)
  — with Dirichlet(``concentration``) weights (disagreeing annotators); an AI evaluator: a
  :class:`~irl_bilevel.reward_ensemble.RewardEnsemble` of linear reward models on the binary ObjectWorld features,
  each fitted with the catalog's ``bradley_terry`` on oracle labels of a bootstrap resample of a *separate* query
  set (a disjoint item pool), labelling by the ensemble's mean predicted return;
* per labeller, against the truth: accuracy (ties ½), flip rate, answered rate, tie rate, Cohen's κ (on all
  queries, and on the queries where the truth is strict: integer-valued returns tie exactly often), Kendall τ-b of
  its Borda item scores with the true segment returns, rate of intransitive triples; pairwise Cohen's κ between
  all labellers and the truth; Fleiss' κ and Krippendorff's α (nominal, ordinal) over the six teachers, over the
  population, and over everyone (``irl_bilevel.agreement``); per-aspect labels of an aspect-wise oracle.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from classic_rl.segment_pools import behaviour_episodes, random_pairs, random_segments
from classic_rl.testbeds import objectworld
from irl_bilevel import agreement
from irl_bilevel.config import Config, NonEmpty, PositiveFloat, PositiveInt, experiment_settings
from irl_bilevel.feedback import Preferences, Trajectories
from irl_bilevel.losses import RankingBatch, preference_loss
from irl_bilevel.precision import default_dtype
from irl_bilevel.reward_ensemble import RewardEnsemble
from irl_bilevel.rewards import LinearReward
from irl_bilevel.runs import provenance, write_json
from irl_bilevel.teachers import (
    RewardModelEvaluator,
    Teacher,
    TeacherPopulation,
    bpref_teachers,
    tabular_aspect_function,
    tabular_reward_function,
    tabular_transitions,
    threshold_margin,
)

NAME = "feedback_consistency"


@dataclass(frozen=True)
class FeedbackConsistencyConfig(Config):
    """Settings of the feedback-consistency experiment on ObjectWorld."""

    grid_size: PositiveInt
    """ObjectWorld side"""
    num_objects: PositiveInt
    """objects placed at random (seeded)"""
    num_colours: PositiveInt
    """object colours"""
    episode_length: PositiveInt
    """steps per behaviour episode"""
    segment_length: PositiveInt
    """steps per segment (item)"""
    temperatures: Annotated[tuple[PositiveFloat, ...], NonEmpty()]
    """soft-optimal behaviour policies (plus the uniform policy)"""
    concentration: PositiveFloat
    """Dirichlet concentration of the annotators' aspect weights"""
    learning_rate: PositiveFloat
    """Adam step size of the AI evaluator's reward models"""
    ai_train_steps: PositiveInt
    """full-batch steps per ensemble member"""
    ensemble_members: PositiveInt
    """reward models in the AI evaluator's ensemble"""
    episodes_per_policy: PositiveInt
    """behaviour episodes per policy"""
    num_items: PositiveInt
    """segments labelled (every pair is a query)"""
    num_annotators: PositiveInt
    """oracles of the disagreeing population"""
    train_items: PositiveInt
    """segments of the AI evaluator's separate training pool"""
    train_queries: PositiveInt
    """oracle-labelled training pairs of the AI evaluator"""


_COMMON: dict[str, Any] = {"grid_size": 8, "num_objects": 10, "num_colours": 2, "episode_length": 30,
                           "segment_length": 10, "temperatures": [0.05, 0.3, 1.0, 3.0], "concentration": 2.0,
                           "learning_rate": 0.05, "ai_train_steps": 300, "ensemble_members": 3}
SCALES: dict[str, dict[str, Any]] = {
    "tiny": {**_COMMON, "episodes_per_policy": 5, "num_items": 12, "num_annotators": 3, "train_items": 30,
             "train_queries": 120, "ai_train_steps": 60, "ensemble_members": 2},
    "quick": {**_COMMON, "episodes_per_policy": 25, "num_items": 40, "num_annotators": 4, "train_items": 100,
              "train_queries": 600},
    "full": {**_COMMON, "episodes_per_policy": 100, "num_items": 80, "num_annotators": 8, "train_items": 300,
             "train_queries": 3000},
}
CONFIG = FeedbackConsistencyConfig  # the typed settings; every SCALES entry validates into it (tests check)
ASPECTS = ("task", "near_colour_0", "near_colour_1")


def _all_pairs(num_items: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    pairs = torch.tensor(list(itertools.combinations(range(num_items), 2)))
    pairs = pairs[torch.randperm(len(pairs), generator=generator)]
    swap = torch.rand(len(pairs), generator=generator) < 0.5
    first = torch.where(swap, pairs[:, 1], pairs[:, 0])
    second = torch.where(swap, pairs[:, 0], pairs[:, 1])
    return first, second


def _fit_ai_evaluator(mdp, items: Trajectories, first: torch.Tensor, second: torch.Tensor, labels: torch.Tensor,
                      config: FeedbackConsistencyConfig,
                      generator: torch.Generator) -> tuple[RewardEnsemble, list[float]]:
    """Linear reward models on the binary features, each fitted by Bradley-Terry on a bootstrap of the strict
    oracle labels (chosen segment first)."""
    encode = tabular_transitions(mdp.features)
    steps = encode(items)
    strict = labels != 0.5
    chosen = torch.where(labels == 1, first, second)[strict]
    rejected = torch.where(labels == 1, second, first)[strict]
    members, final_losses = [], []
    for _ in range(config.ensemble_members):
        sample = torch.randint(len(chosen), (len(chosen),), generator=generator)
        model = LinearReward(mdp.features.shape[1], aspect_names=("reward",), bias=False)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
        for _ in range(config.ai_train_steps):
            returns = model(steps).total.reshape(len(items), -1).sum(dim=1)
            batch = RankingBatch(torch.stack([returns[chosen[sample]], returns[rejected[sample]]], dim=1))
            loss = preference_loss("bradley_terry", batch).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        members.append(model)
        final_losses.append(float(loss.detach()))
    return RewardEnsemble(members), final_losses


def _labeller_row(preferences: Preferences, truth: Preferences, first: np.ndarray, second: np.ndarray,
                  num_items: int, true_returns: np.ndarray) -> dict[str, float]:
    row = agreement.agreement_with_reference(preferences.labels, truth.labels, preferences.skipped, truth.skipped)
    scores = agreement.borda_scores(first, second, preferences.labels, num_items, preferences.skipped)
    strict = (truth.labels != 0.5).numpy()
    mine = agreement.preference_ratings(preferences.labels, preferences.skipped)
    row["cohen_kappa_strict_truth"] = agreement.cohen_kappa(mine[strict], truth.labels.numpy()[strict],
                                                            agreement.CATEGORIES)
    row["kendall_tau"] = agreement.kendall_tau(scores, true_returns)
    triples = agreement.intransitive_triple_rate(first, second, preferences.labels, num_items, preferences.skipped)
    row["intransitive_rate"] = triples["rate"]
    row["eligible_triples"] = triples["eligible"]
    return row


def _group_agreement(ratings: dict[str, np.ndarray]) -> dict[str, Any]:
    matrix = np.stack(list(ratings.values()))
    return {"fleiss_kappa": agreement.fleiss_kappa_from_ratings(matrix),
            "krippendorff_alpha_nominal": agreement.krippendorff_alpha(matrix, "nominal", agreement.CATEGORIES),
            "krippendorff_alpha_ordinal": agreement.krippendorff_alpha(matrix, "ordinal", agreement.CATEGORIES),
            "raters": list(ratings), "complete_items": int((~np.isnan(matrix)).all(axis=0).sum())}


def run(scale: str, results_dir: Path, seed: int = 0, progress: bool = True,
        config: FeedbackConsistencyConfig | None = None) -> Path:
    """Label one query set with every labeller at ``scale``; writes ``results_dir/feedback_consistency.json``."""
    settings = experiment_settings(FeedbackConsistencyConfig, SCALES, scale, NAME, config)
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    with default_dtype(torch.float64):
        mdp = objectworld(settings.grid_size, settings.num_colours, settings.num_objects, seed=seed)
        distances = objectworld(settings.grid_size, settings.num_colours, settings.num_objects,
                                continuous=True, seed=seed).features[:, :2]
        assert mdp.true_reward is not None
        true_reward = mdp.true_reward
        aspect_table = torch.stack([true_reward, 1 - distances[:, 0] / settings.grid_size,
                                    1 - distances[:, 1] / settings.grid_size], dim=1)
        episodes = behaviour_episodes(mdp, settings.temperatures, settings.episodes_per_policy,
                                      settings.episode_length, generator)
        reward_fn = tabular_reward_function(true_reward)
        mean_return = float(reward_fn(episodes).sum(dim=1).mean())
        margin = threshold_margin(mean_return, settings.segment_length, settings.episode_length)

        # the AI evaluator, fitted on oracle labels of a separate query set over a disjoint item pool
        train_items = random_segments(episodes, settings.train_items, settings.segment_length, generator)
        t_first, t_second = random_pairs(settings.train_items, settings.train_queries, generator)
        train_returns = reward_fn(train_items).sum(dim=1)
        train_labels = Teacher.oracle().label(train_returns[t_first, None], train_returns[t_second, None]).labels
        ensemble, train_losses = _fit_ai_evaluator(mdp, train_items, t_first, t_second, train_labels, settings,
                                                   generator)
        evaluator = RewardModelEvaluator(ensemble, tabular_transitions(mdp.features), name="reward_model")

        # the evaluation queries: every pair of a fresh item pool
        items = random_segments(episodes, settings.num_items, settings.segment_length, generator)
        first_index, second_index = _all_pairs(settings.num_items, generator)
        first, second = items.subset(first_index), items.subset(second_index)
        true_returns = reward_fn(items).sum(dim=1)
        truth = Teacher("truth").label_segments(first, second, reward_fn)

        labelled: dict[str, Preferences] = {}
        teachers = bpref_teachers()
        for teacher in tqdm(teachers, desc=NAME, disable=not progress):
            labelled[teacher.name] = teacher.label_segments(first, second, reward_fn, margin=margin,
                                                            generator=generator)
        population = TeacherPopulation.dirichlet(settings.num_annotators, len(ASPECTS), settings.concentration,
                                                 generator)
        aspect_fn = tabular_aspect_function(aspect_table)
        for annotator in population.teachers:
            labelled[annotator.name] = annotator.label_segments(first, second, aspect_fn, generator=generator)
        labelled[evaluator.name] = evaluator.label_segments(first, second, generator=generator)
        per_aspect = Teacher("per_aspect_oracle", aspect_weights=(1.0, 0.0, 0.0), per_aspect=True).label_segments(
            first, second, aspect_fn, generator=generator)
        with torch.no_grad():
            item_steps = tabular_transitions(mdp.features)(items)
            member_returns = ensemble.segment_returns(item_steps, items.mask)
        disagreement = RewardEnsemble.disagreement(member_returns[:, first_index], member_returns[:, second_index])

    fi, si, n_items = first_index.numpy(), second_index.numpy(), settings.num_items
    returns_np = true_returns.numpy()
    table = {name: _labeller_row(p, truth, fi, si, n_items, returns_np) for name, p in labelled.items()}
    truth_row = _labeller_row(truth, truth, fi, si, n_items, returns_np)
    ratings = {name: agreement.preference_ratings(p.labels, p.skipped) for name, p in labelled.items()}
    names, kappa = agreement.pairwise_cohen_kappa({"truth": agreement.preference_ratings(truth.labels), **ratings})
    teacher_names = [t.name for t in teachers]
    annotator_names = [t.name for t in population.teachers]
    assert per_aspect.aspect_labels is not None
    aspect_truth = {name: agreement.agreement_with_reference(per_aspect.aspect_labels[:, k], truth.labels)
                    for k, name in enumerate(ASPECTS)}
    record = {
        "name": NAME, "scale": scale, "config": settings.to_dict(), "provenance": provenance(seed),
        "setting": {"testbed": mdp.name, "aspects": list(ASPECTS), "threshold_margin": margin,
                    "mean_episode_return": mean_return, "num_queries": len(truth),
                    "truth_tie_rate": float((truth.labels == 0.5).double().mean()),
                    "annotator_weights": {t.name: list(t.aspect_weights or ()) for t in population.teachers},
                    "teachers": {t.name: {"beta": t.beta, "gamma": t.gamma, "mistake": t.mistake, "skip": t.skip,
                                          "equal": t.equal} for t in teachers},
                    "ai_evaluator": {"members": len(ensemble), "final_train_losses": train_losses,
                                     "train_queries": settings.train_queries,
                                     "mean_disagreement": float(disagreement.mean())}},
        "labellers": list(labelled), "groups": {"teachers": teacher_names, "population": annotator_names,
                                                "ai": [evaluator.name]},
        "table": table, "truth_row": truth_row,
        "pairwise_kappa": {"names": names, "matrix": kappa},
        "group_agreement": {
            "teachers": _group_agreement({n: ratings[n] for n in teacher_names}),
            "population": _group_agreement({n: ratings[n] for n in annotator_names}),
            "all": _group_agreement(ratings),
        },
        "per_aspect_labels_vs_truth": aspect_truth,
        "seconds": time.perf_counter() - started,
    }
    path = Path(results_dir) / f"{NAME}.json"
    write_json(path, record)
    return path
