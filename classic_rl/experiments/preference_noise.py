"""RL from preferences under label noise: plain Bradley-Terry against the noise-robust objectives.

Setup: :func:`classic_rl.preference_rl.run_preference_rl` (Christiano et al. 2017 through the bilevel solver; PPO
inner loop) on CartPole-v1 with the B-Pref *mistake* teacher (Lee et al. 2021), whose labels are flipped with
probability ε, for ε in ``mistake_rates``; the reward is fitted with each loss of ``losses``: ``bradley_terry``,
``robust_bradley_terry`` (the likelihood of a label seen through a symmetric flip channel with the known rate
ε, bounded by −log ε per query) and ``smoothed_bradley_terry`` (label smoothing ε). The robust losses are told the
true flip rate (``flip_rate`` / smoothing = ε; at ε = 0 they are Bradley-Terry).

Query selection: ``selection`` for every run, ``uniform`` at every scale. Uniform selection keeps the study about
the loss: with ensemble-disagreement selection the queries depend on an ensemble fitted to the noisy labels, so
selection and loss interact.

Per (loss, ε, seed): the final expert-normalized true return (deterministic policy, fixed evaluation seeds).
Summary per (loss, ε): IQM and 95% bootstrap CI over seeds, and the *degradation* ``1 − IQM(ε) / IQM(0)``.
Writes ``results_dir/preference_noise.json`` after every run (``complete`` false until the end). A rerun with the
same settings, seeds aside, keeps the runs it shares with the file there (:func:`irl_bilevel.runs.earlier_record`):
an interrupted run resumes, and a run with more seeds adds only the new ones (``kept_runs_from`` records the earlier
run's provenance and seeds).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from irl_bilevel.config import Config, NonEmpty, PositiveInt, Probability, experiment_settings
from irl_bilevel.runs import earlier_record, provenance, write_json
from irl_bilevel.statistics import iqm_with_ci

NAME = "preference_noise"
LOSS_OPTION = {"bradley_terry": None, "robust_bradley_terry": "flip_rate", "smoothed_bradley_terry": "label_smoothing"}


@dataclass(frozen=True)
class PreferenceNoiseConfig(Config):
    """Settings of the label-noise study."""

    env_id: str
    """gymnasium testbed"""
    total_env_steps: PositiveInt
    """inner PPO env steps per run"""
    env_steps_per_outer_step: PositiveInt
    """inner env steps per outer (reward) step"""
    query_budget: PositiveInt
    """oracle queries per run"""
    segment_length: PositiveInt
    """steps per preference segment"""
    mistake_rates: Annotated[tuple[Probability, ...], NonEmpty()]
    """ε of the mistake teacher"""
    losses: tuple[str, ...]
    """catalog preference losses compared"""
    selection: str
    """query selection of every run (classic_rl.preference_rl.SELECTIONS)"""
    seeds: PositiveInt
    """seeds per (loss, ε), starting at the run's seed"""
    eval_episodes: PositiveInt
    """true-reward evaluation episodes of each final policy"""


_COMMON: dict[str, Any] = {"env_id": "CartPole-v1", "env_steps_per_outer_step": 512, "segment_length": 50,
                           "selection": "uniform",
                           "losses": ["bradley_terry", "robust_bradley_terry", "smoothed_bradley_terry"]}
SCALES: dict[str, dict[str, Any]] = {
    "tiny": {**_COMMON, "total_env_steps": 1024, "query_budget": 10, "mistake_rates": [0.0, 0.2],
             "losses": ["bradley_terry", "robust_bradley_terry"], "seeds": 1, "eval_episodes": 2},
    "quick": {**_COMMON, "total_env_steps": 30_720, "query_budget": 500, "mistake_rates": [0.0, 0.1, 0.2, 0.3],
              "losses": ["bradley_terry", "robust_bradley_terry"], "seeds": 5, "eval_episodes": 10},
    "full": {**_COMMON, "total_env_steps": 61_440, "query_budget": 500, "mistake_rates": [0.0, 0.1, 0.2, 0.3],
             "seeds": 5, "eval_episodes": 10},
}
CONFIG = PreferenceNoiseConfig


def noise_loss_options(loss: str, rate: float) -> dict[str, float]:
    option = LOSS_OPTION.get(loss)
    return {} if option is None or rate == 0.0 else {option: rate}


def run(scale: str, results_dir: Path, seed: int = 0, progress: bool = True,
        config: PreferenceNoiseConfig | None = None) -> Path:
    """Every (loss, ε, seed) run; writes and returns ``results_dir/preference_noise.json``."""
    from classic_rl.preference_rl import PreferenceRLConfig, run_preference_rl

    settings = experiment_settings(PreferenceNoiseConfig, SCALES, scale, NAME, config)
    started = time.perf_counter()
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{NAME}.json"
    # Runs of an earlier record with the same settings but other seeds (an interrupted run, or fewer seeds) are kept.
    previous = earlier_record(path, scale, settings.to_dict(), differing=("seeds",))
    kept = {(r["loss"], r["mistake_rate"], r["seed"]): r for r in (previous or {}).get("runs", [])}
    record: dict[str, Any] = {"name": NAME, "scale": scale, "config": settings.to_dict(),
                              "provenance": provenance(seed)}
    runs: list[dict[str, Any]] = []
    cells = [(loss, rate, seed + index) for loss in settings.losses for rate in settings.mistake_rates
             for index in range(settings.seeds)]
    if previous is not None and any(cell in kept for cell in cells):
        record["kept_runs_from"] = {"provenance": previous["provenance"], "seeds": sorted({c[2] for c in kept})}
    for number, (loss, rate, run_seed) in enumerate(cells, 1):
        if (loss, rate, run_seed) in kept:
            runs.append(kept[(loss, rate, run_seed)])
            continue
        run_config = PreferenceRLConfig(
            env_id=settings.env_id, total_env_steps=settings.total_env_steps,
            env_steps_per_outer_step=settings.env_steps_per_outer_step, segment_length=settings.segment_length,
            query_budget=settings.query_budget, selection=settings.selection, teacher="mistake",
            teacher_options={"mistake": rate}, loss=loss,
            loss_options=noise_loss_options(loss, rate), eval_episodes=settings.eval_episodes, eval_every=10**9,
            seed=run_seed)
        with tempfile.TemporaryDirectory(prefix="preference-noise-") as folder:
            summary = run_preference_rl(run_config, Path(folder), progress=False)
        runs.append({"loss": loss, "mistake_rate": rate, "seed": run_seed,
                     "normalized_return": summary["final_normalized_return"],
                     "label_agreement": summary.get("label_agreement")})
        if progress:
            print(f"[{number}/{len(cells)}] {loss} ε={rate} seed {run_seed}: normalized return "
                  f"{summary['final_normalized_return']:.3f}", flush=True)
        # Written after every run (``complete`` false until the end): an interrupted run resumes from here, so the
        # kept runs of the cells still ahead are written too.
        ahead = [kept[cell] for cell in cells[number:] if cell in kept]
        write_json(path, {**record, "runs": [*runs, *ahead], "complete": False,
                          "seconds": time.perf_counter() - started})
    summary_table: dict[str, dict[str, Any]] = {}
    for loss in settings.losses:
        per_rate: dict[str, dict[str, Any]] = {}
        for rate in settings.mistake_rates:
            values = [r["normalized_return"] for r in runs if r["loss"] == loss and r["mistake_rate"] == rate]
            per_rate[str(rate)] = iqm_with_ci(values, seed=seed)
        clean = per_rate[str(settings.mistake_rates[0])]["iqm"]
        for stats in per_rate.values():
            stats["degradation"] = 1.0 - stats["iqm"] / clean if clean else None
        summary_table[loss] = per_rate
    record.update(runs=runs, summary=summary_table, complete=True, seconds=time.perf_counter() - started)
    write_json(path, record)
    return path
