"""Single-seed experiments over several seeds: the headline numbers of reward recovery, feedback consistency and
the sentiment frontier as IQM with a 95% bootstrap CI over seeds.

Those three experiments run one seed per call (their result files and figures show one world, one set of
demonstrations, one trained policy each); this one runs each of them once per seed as an :mod:`irlb.sweep` (Ray
Tune trials, resumable: a finished trial keeps its ``done.json``) and reads the numbers the results page and the
paper quote from every trial's result file (:data:`METRICS`, dotted paths). Seeds change everything random in those
experiments: the ObjectWorld layout, the demonstrations and the labels, the training pairs and the LoRA
initialization.

Writes ``results_dir/seeds_<experiment>.json`` (the sweep summary: per metric the per-seed values, IQM and CI) for
each experiment, the trial folders under ``results_dir/seed_sweeps/<experiment>/`` (git-ignored), and
``results_dir/seed_sweeps.json`` (config, provenance, the files written, wall time).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from irl_bilevel.config import Config, PositiveInt, experiment_settings
from irl_bilevel.runs import provenance, write_json
from irl_bilevel.validation import ValidationError
from irlb.sweep import SweepSpec, run_sweep

NAME = "seed_sweeps"

# Per experiment: the swept metric (first) and the extra metrics, dotted paths into its result file; each is a
# number the results page or the paper quotes for seed 0.
METRICS: dict[str, tuple[str, ...]] = {
    # rows of results/reward_recovery.json: 0 LP-IRL gridworld, 1 gridworld exact occupancy, 3 gridworld from 100
    # demonstrations, 5 / 6 ObjectWorld linear / MLP from the exact occupancy, 10 ObjectWorld MLP from 100
    "reward_recovery": tuple(f"runs.{row}.metrics.{metric}" for row in (10, 0, 1, 3, 5, 6)
                             for metric in ("epic", "occupancy_l1", "normalized_return")),
    "feedback_consistency": (
        "group_agreement.teachers.fleiss_kappa", "group_agreement.population.fleiss_kappa",
        "group_agreement.all.fleiss_kappa", "table.mistake.flip_rate", "table.stochastic.flip_rate",
        "table.mistake.intransitive_rate", "table.stochastic.intransitive_rate", "table.reward_model.accuracy"),
    # runs 2, 9, 11 of results/sentiment_frontier.json: DPO (β 0.5), RLOO on the gold reward and on the learned
    # reward model (β 0.05); best_of_n 3: best-of-16
    "sentiment_frontier": (
        "runs.2.summary.best_sentiment.reward/sentiment", "runs.2.summary.best_sentiment.kl",
        "runs.9.summary.best_sentiment.reward/sentiment", "runs.9.summary.best_sentiment.kl",
        "runs.11.summary.best_sentiment.reward/sentiment", "runs.11.summary.best_sentiment.kl",
        "best_of_n.3.reward/sentiment", "reference.reward/sentiment", "reward_models.scalar.held_out_accuracy",
        "reward_models.multi_aspect.held_out_accuracy"),
}


@dataclass(frozen=True)
class SeedSweepsConfig(Config):
    """Settings of the seed sweeps."""

    experiments: tuple[str, ...]
    """some of METRICS"""
    seeds: PositiveInt
    """seeds per experiment: seed, seed + 1, ..."""
    experiment_scale: Literal["tiny", "quick", "full"]
    """the scale each swept experiment runs at"""
    max_concurrent: PositiveInt
    """trials at once (one core each)"""


_ALL = list(METRICS)
SCALES: dict[str, dict[str, Any]] = {
    "tiny": {"experiments": _ALL, "seeds": 2, "experiment_scale": "tiny", "max_concurrent": 1},
    "quick": {"experiments": _ALL, "seeds": 5, "experiment_scale": "quick", "max_concurrent": 1},
    "full": {"experiments": _ALL, "seeds": 10, "experiment_scale": "full", "max_concurrent": 2},
}
CONFIG = SeedSweepsConfig  # the typed settings; every SCALES entry validates into it (tests check)


def sweep_spec(experiment: str, scale: str, seeds: list[int]) -> SweepSpec:
    """The sweep of ``experiment`` over ``seeds`` (no grid) with :data:`METRICS`' paths."""
    if experiment not in METRICS:
        raise ValidationError(f"experiments: {experiment!r} has no seed sweep; expected some of {sorted(METRICS)}")
    metric, *extra = METRICS[experiment]
    return SweepSpec.from_dict({"experiment": experiment, "scale": scale, "seeds": seeds, "metric": metric,
                                "extra_metrics": extra}, "seed sweep")


def run(scale: str, results_dir: Path, seed: int = 0, progress: bool = True,
        config: SeedSweepsConfig | None = None) -> Path:
    """Sweep every configured experiment over its seeds; writes ``results_dir/seeds_<experiment>.json`` each and
    returns ``results_dir/seed_sweeps.json``."""
    settings = experiment_settings(SeedSweepsConfig, SCALES, scale, NAME, config)
    results_dir = Path(results_dir)
    started = time.perf_counter()
    seeds = list(range(seed, seed + settings.seeds))
    written = []
    for experiment in settings.experiments:
        spec = sweep_spec(experiment, settings.experiment_scale, seeds)
        summary = run_sweep(spec, results_dir / NAME / experiment, num_cpus=settings.max_concurrent,
                            max_concurrent=settings.max_concurrent, verbose=progress)
        path = results_dir / f"seeds_{experiment}.json"
        write_json(path, summary)
        written.append(path.name)
    record = {"name": NAME, "scale": scale, "config": settings.to_dict(), "provenance": provenance(seed),
              "seeds": seeds,
              "files": written, "seconds": time.perf_counter() - started}
    path = results_dir / f"{NAME}.json"
    write_json(path, record)
    return path
