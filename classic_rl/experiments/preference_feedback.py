"""RL from preferences against the feedback it gets: B-Pref teachers, query selection and a harder testbed.

Setup: :func:`classic_rl.preference_rl.run_preference_rl` (Christiano et al. 2017 through the bilevel solver; PPO
inner loop; Bradley-Terry likelihood) in three parts, every run ending in the expert-normalized true return
``(J(π) − J_random) / (J_expert − J_random)`` of its final deterministic policy on fixed evaluation seeds:

1. ``teachers``: on ``env_id`` (CartPole-v1), each of B-Pref's six simulated teachers (Lee et al. 2021, with their
   published parameters: ``oracle``; ``stochastic`` Bradley-Terry labels with rationality β = 1; ``mistake``
   flipping a label with probability 0.1; ``skip`` skipping queries whose both segment returns are below 0.1 ·
   margin; ``equal`` answering 0.5 when the returns differ by less than 0.1 · margin; ``myopic`` judging
   ``Σ_t γ^{L−t} r_t`` with γ = 0.9) at every query budget of ``budgets``, selecting queries with
   ``teacher_selection``;
2. ``selections``: with the oracle teacher at ``selection_budget`` queries, each query selection method (uniform,
   ensemble disagreement, the entropy of the ensemble-mean Bradley-Terry probability, and the diversity-aware
   k-center + disagreement of PEBBLE, Lee et al. 2021b);
3. ``harder``: the oracle teacher on a harder testbed (Acrobot-v1: the true reward is −1 per step until the goal
   terminates the episode, so segments only differ when one reaches the goal) at ``harder.budgets``, with
   ``harder.termination_queries`` (:mod:`classic_rl.preference_rl`: pairs must contain a termination, and a
   session whose window holds none is postponed) and ``harder.exploration`` (``state_entropy``: PEBBLE's
   unsupervised exploration until the first decided label, :class:`classic_rl.preference_rl.ExploringInnerSolver`).
   Why both: without termination-aware queries most of the oracle's answers are ties; with them alone every answer
   is a preference, but a policy trained on the random initial reward may never reach the goal, so no query is
   ever asked. The exploration phase is what reaches the first goals. :func:`rerun_part` keeps the replaced part of
   a file in its ``reruns`` list.

A selection run identical to a teacher-sweep run (oracle, ``teacher_selection``, ``selection_budget`` among the
budgets) is not run twice: its result is reused and marked ``reused``. Summary per cell: IQM and 95% bootstrap CI
of the normalized return over seeds (:func:`irl_bilevel.statistics.iqm_with_ci`) and the mean label statistics
(labelled pairs, ties, skipped queries, agreement of decided labels with the true returns). Writes
``results_dir/preference_feedback.json``. :func:`rerun_part` reruns one part (``harder``) of an existing result file
with the current settings of that part and writes the merged record (the other parts' settings must be unchanged).
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from irl_bilevel.config import Config, PositiveInt, experiment_settings
from irl_bilevel.runs import provenance, write_json
from irl_bilevel.statistics import iqm_with_ci
from irl_bilevel.validation import ValidationError

NAME = "preference_feedback"
TeacherName = Literal["oracle", "stochastic", "mistake", "skip", "equal", "myopic"]
SelectionName = Literal["uniform", "disagreement", "entropy", "diversity"]
EVAL_SEED = 10_000  # PreferenceRLConfig's default evaluation seed: references and policies see the same episodes
LABEL_STATS = ("queries_used", "labelled_pairs", "ties", "skipped", "label_agreement", "queries_unasked",
               "postponed_sessions")
RERUNNABLE_PARTS = ("harder",)


@dataclass(frozen=True)
class HarderTestbedConfig(Config):
    """The harder testbed: env, inner PPO settings (``None``: ``INNER_DEFAULTS`` of the env), oracle budgets,
    ``termination_queries`` and ``exploration`` (:class:`classic_rl.preference_rl.PreferenceRLConfig`'s options;
    ``False`` / ``"none"`` for records written before they existed)."""

    env_id: str
    """gymnasium testbed of the harder part"""
    total_env_steps: int
    """inner env steps per run"""
    budgets: tuple[int, ...]
    """oracle query budgets"""
    algorithm: str | None
    """inner SB3 algorithm (null: the env's INNER_DEFAULTS)"""
    n_envs: PositiveInt | None
    """parallel environments of the inner solver (null: the env's default)"""
    hyperparameters: dict[str, Any] | None
    """SB3 constructor arguments (null: the env's defaults)"""
    seeds: int
    """seeds per budget, starting at the run's seed"""
    termination_queries: bool = False
    """draw pairs that contain a termination (PreferenceRLConfig.termination_queries)"""
    exploration: str = "none"
    """exploration before the first label: none or state_entropy (PreferenceRLConfig.exploration)"""


@dataclass(frozen=True)
class PreferenceFeedbackConfig(Config):
    """Settings of the feedback study (teacher sweep, selection comparison, harder testbed)."""

    env_id: str
    """testbed of the teacher sweep and the selection comparison"""
    total_env_steps: int
    """inner PPO env steps per run"""
    env_steps_per_outer_step: int
    """inner env steps per outer (reward) step"""
    segment_length: int
    """steps per preference segment"""
    ensemble_size: int
    """reward models (disagreement-based selection needs >= 2)"""
    teachers: tuple[TeacherName, ...]
    """B-Pref teachers of the teacher sweep"""
    budgets: tuple[int, ...]
    """query budgets of the teacher sweep"""
    teacher_selection: SelectionName
    """selection method of the teacher sweep"""
    selections: tuple[SelectionName, ...]
    """query selection methods compared (with the oracle teacher)"""
    selection_budget: int
    """query budget of the selection comparison"""
    seeds: int
    """seeds per cell, starting at the run's seed"""
    eval_episodes: int
    """true-reward evaluation episodes of each final policy"""
    harder: HarderTestbedConfig
    """the harder testbed (Acrobot-v1) with termination-aware queries"""

    def validate(self) -> None:
        import gymnasium as gym

        for name, env_id in (("env_id", self.env_id), ("harder.env_id", self.harder.env_id)):
            try:
                gym.spec(env_id)
            except gym.error.Error as error:
                raise ValidationError(f"{name}: unknown gymnasium environment {env_id!r}") from error
        for name in ("total_env_steps", "env_steps_per_outer_step", "segment_length", "ensemble_size",
                     "selection_budget", "seeds", "eval_episodes"):
            if getattr(self, name) < 1:
                raise ValidationError(f"{name}: expected a positive number, got {getattr(self, name)}")
        for name, budgets in (("budgets", self.budgets), ("harder.budgets", self.harder.budgets)):
            if not budgets or min(budgets) < 1:
                raise ValidationError(f"{name}: expected one or more positive query budgets, got {budgets}")
        if self.harder.seeds < 1 or self.harder.total_env_steps < self.env_steps_per_outer_step:
            raise ValidationError(f"harder: expected seeds >= 1 and total_env_steps >= env_steps_per_outer_step, "
                                  f"got {self.harder}")


_HARDER: dict[str, Any] = {
    # Acrobot-v1 is not in INNER_DEFAULTS: the PPO of the IRL benchmark (benchmarks/irl_vs_imitation.py: SB3's
    # defaults with γ 0.99 and 512-step rollouts, one env), which learns Acrobot from a learned reward in ~16k steps.
    "env_id": "Acrobot-v1", "algorithm": "ppo", "n_envs": 1, "hyperparameters": {"gamma": 0.99, "n_steps": 512},
    # −1 per step until the goal: a pair without a termination is a sure tie (see the module docstring)
    "termination_queries": True,
    # before the first label, PEBBLE's state-entropy exploration instead of the random initial reward
    "exploration": "state_entropy",
}
_COMMON: dict[str, Any] = {
    "env_id": "CartPole-v1", "env_steps_per_outer_step": 512, "segment_length": 50, "ensemble_size": 3,
    "teachers": ["oracle", "stochastic", "mistake", "skip", "equal", "myopic"], "teacher_selection": "disagreement",
    "selections": ["uniform", "disagreement", "entropy", "diversity"],
}
SCALES: dict[str, dict[str, Any]] = {
    "tiny": {**_COMMON, "total_env_steps": 1024, "budgets": [4, 8], "teachers": ["oracle", "skip"],
             "selections": ["uniform", "disagreement"], "selection_budget": 4, "seeds": 1, "eval_episodes": 2,
             "harder": {**_HARDER, "total_env_steps": 1024, "budgets": [4], "seeds": 1}},
    # On CartPole-v1 a handful of oracle queries already teach the reward (benchmarks/results/
    # preferences_vs_imitation.json), so the budgets double from 2 up: the curve lives at a handful of queries.
    "quick": {**_COMMON, "total_env_steps": 30_720, "budgets": [2, 4, 8, 16, 32, 64], "selection_budget": 4,
              "seeds": 5, "eval_episodes": 10,
              "harder": {**_HARDER, "total_env_steps": 30_720, "budgets": [25, 100, 400], "seeds": 5}},
    "full": {**_COMMON, "total_env_steps": 30_720, "budgets": [1, 2, 4, 8, 16, 32, 64, 128], "selection_budget": 4,
             "seeds": 5, "eval_episodes": 10,
             "harder": {**_HARDER, "total_env_steps": 30_720, "budgets": [25, 100, 400], "seeds": 5}},
}
CONFIG = PreferenceFeedbackConfig


def _cell_summary(runs: list[dict[str, Any]], seed: int) -> dict[str, Any]:
    """IQM + 95% bootstrap CI of the normalized return over ``runs`` and the mean of each label statistic (finite
    values only: ``label_agreement`` is NaN for a run whose decided labels were all between equal returns)."""
    stats: dict[str, Any] = iqm_with_ci([r["normalized_return"] for r in runs], seed=seed)
    for key in LABEL_STATS:
        values = [float(r[key]) for r in runs if r.get(key) is not None and math.isfinite(float(r[key]))]
        stats[key] = sum(values) / len(values) if values else None
    return stats


def _cells(settings: PreferenceFeedbackConfig, seed: int) -> list[tuple[str, str, str, int, int, dict[str, Any]]]:
    """``(part, teacher, selection, budget, seed, env settings)`` of every run, in run order."""
    harder = settings.harder
    seeds = [seed + index for index in range(settings.seeds)]
    main_env: dict[str, Any] = {"env_id": settings.env_id, "total_env_steps": settings.total_env_steps}
    hard_env: dict[str, Any] = {key: getattr(harder, key) for key in (
        "env_id", "total_env_steps", "algorithm", "n_envs", "hyperparameters", "termination_queries", "exploration")}
    cells: list[tuple[str, str, str, int, int, dict[str, Any]]] = [
        ("teachers", teacher, settings.teacher_selection, budget, s, main_env)
        for teacher in settings.teachers for budget in settings.budgets for s in seeds]
    cells += [("selections", "oracle", selection, settings.selection_budget, s, main_env)
              for selection in settings.selections for s in seeds]
    cells += [("harder", "oracle", settings.teacher_selection, budget, seed + index, hard_env)
              for budget in harder.budgets for index in range(harder.seeds)]
    return cells


def _run_cells(cells: list[tuple[str, str, str, int, int, dict[str, Any]]], settings: PreferenceFeedbackConfig,
               references: dict[str, tuple[float, float]], progress: bool) -> list[dict[str, Any]]:
    """One record per cell; a cell equal to an earlier one (same env settings, teacher, selection, budget, seed) is
    deterministic, so its record is reused and marked ``reused``."""
    from classic_rl.preference_rl import PreferenceRLConfig, run_preference_rl

    runs: list[dict[str, Any]] = []
    done: dict[tuple[Any, ...], dict[str, Any]] = {}
    for number, (part, teacher, selection, budget, run_seed, env) in enumerate(cells, 1):
        key = (json.dumps(env, sort_keys=True), teacher, selection, budget, run_seed)
        if key in done:  # the same run already made for another part: deterministic, so reuse it
            runs.append({**done[key], "part": part, "reused": True})
            continue
        run_config = PreferenceRLConfig(
            **env, env_steps_per_outer_step=settings.env_steps_per_outer_step,
            segment_length=settings.segment_length, query_budget=budget, selection=selection,
            ensemble_size=settings.ensemble_size, teacher=teacher, eval_episodes=settings.eval_episodes,
            eval_every=10**9, eval_seed=EVAL_SEED, seed=run_seed)
        with tempfile.TemporaryDirectory(prefix="preference-feedback-") as folder:
            summary = run_preference_rl(run_config, Path(folder), progress=False,
                                        references=references[env["env_id"]])
        record = {"part": part, "env_id": env["env_id"], "teacher": teacher, "selection": selection,
                  "budget": budget, "seed": run_seed, "termination_queries": run_config.termination_queries,
                  "exploration": run_config.exploration, "exploring_solves": summary.get("exploring_solves"),
                  "normalized_return": summary["final_normalized_return"], "true_return": summary["final_true_return"],
                  "best_normalized_return": summary["best_normalized_return"],
                  **{k: summary.get(k) for k in LABEL_STATS}, "wall_s": summary["wall_s"], "reused": False}
        done[key] = record
        runs.append(record)
        if progress:
            print(f"[{number}/{len(cells)}] {part} {env['env_id']} {teacher} {selection} {budget} queries seed "
                  f"{run_seed}: normalized return {record['normalized_return']:.3f} ({record['wall_s']:.0f} s)",
                  flush=True)
    return runs


def _part_summary(part: str, runs: list[dict[str, Any]], settings: PreferenceFeedbackConfig,
                  seed: int) -> dict[str, Any]:
    """The summary table of one part from its runs."""

    def pick(**match: Any) -> list[dict[str, Any]]:
        return [r for r in runs if r["part"] == part and all(r[k] == v for k, v in match.items())]

    if part == "teachers":
        return {teacher: {str(b): _cell_summary(pick(teacher=teacher, budget=b), seed) for b in settings.budgets}
                for teacher in settings.teachers}
    if part == "selections":
        return {selection: _cell_summary(pick(selection=selection), seed) for selection in settings.selections}
    return {str(b): _cell_summary(pick(budget=b), seed) for b in settings.harder.budgets}


def _references(settings: PreferenceFeedbackConfig, env_ids: list[str]) -> dict[str, tuple[float, float]]:
    from classic_rl.preference_rl import reference_returns

    return {env: reference_returns(env, settings.eval_episodes, EVAL_SEED) for env in dict.fromkeys(env_ids)}


def run(scale: str, results_dir: Path, seed: int = 0, progress: bool = True,
        config: PreferenceFeedbackConfig | None = None) -> Path:
    """Every teacher/selection/harder-testbed run; writes and returns ``results_dir/preference_feedback.json``."""
    settings = experiment_settings(PreferenceFeedbackConfig, SCALES, scale, NAME, config)
    started = time.perf_counter()
    references = _references(settings, [settings.env_id, settings.harder.env_id])
    runs = _run_cells(_cells(settings, seed), settings, references, progress)
    summary_table = {part: _part_summary(part, runs, settings, seed) for part in ("teachers", "selections", "harder")}
    record = {"name": NAME, "scale": scale, "config": settings.to_dict(), "provenance": provenance(seed),
              "references": {env: {"random": r, "expert": e} for env, (r, e) in references.items()},
              "runs": runs, "summary": summary_table, "seconds": time.perf_counter() - started}
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{NAME}.json"
    write_json(path, record)
    return path


def rerun_part(scale: str, results_dir: Path, part: str = "harder", seed: int = 0, progress: bool = True,
               config: PreferenceFeedbackConfig | None = None) -> Path:
    """Rerun the runs of ``part`` in ``results_dir/preference_feedback.json`` with the current settings of that part
    and write the merged record back; returns its path.

    Only the part's runs, its summary and its config section are replaced; the record's other parts, top-level
    provenance and ``seconds`` stay those of the run that made them. The replaced config, summary and runs are kept
    in ``reruns`` with the rerun's provenance and seconds. Refused (:class:`ValidationError`) unless the file was
    written at the same ``scale`` and ``seed``, every setting outside ``part`` is unchanged, and the recomputed
    reference returns of the part's env equal the recorded ones (the normalization of old and new runs agrees).
    """
    from irl_bilevel.validation import ValidationError

    if part not in RERUNNABLE_PARTS:
        raise ValidationError(f"part: expected one of {RERUNNABLE_PARTS} (the other parts share runs), got {part!r}")
    settings = experiment_settings(PreferenceFeedbackConfig, SCALES, scale, NAME, config)
    path = Path(results_dir) / f"{NAME}.json"
    if not path.exists():
        raise ValidationError(f"results_dir: no {path.name} in {results_dir} to rerun a part of; run the experiment")
    record = json.loads(path.read_text())
    if record.get("scale") != scale or record.get("provenance", {}).get("seed") != seed:
        raise ValidationError(f"scale/seed: {path} was written at scale {record.get('scale')!r}, seed "
                              f"{record.get('provenance', {}).get('seed')}; asked for {scale!r}, seed {seed}")
    # the recorded config through the current dataclass (fills defaults added since, e.g. termination_queries)
    recorded = PreferenceFeedbackConfig.from_dict(record["config"], NAME).to_dict()
    current = settings.to_dict()
    changed = sorted(key for key in current if key != part and current[key] != recorded[key])
    if changed:
        raise ValidationError(f"config: settings outside {part!r} differ from {path}'s: {changed}; rerun the whole "
                              f"experiment")
    started = time.perf_counter()
    env_id = settings.harder.env_id
    references = _references(settings, [env_id])
    stored = record["references"].get(env_id)
    if stored is None or (stored["random"], stored["expert"]) != references[env_id]:
        raise ValidationError(f"references: {env_id}'s recomputed (random, expert) returns {references[env_id]} "
                              f"differ from the recorded {stored}; rerun the whole experiment")
    cells = [cell for cell in _cells(settings, seed) if cell[0] == part]
    runs = _run_cells(cells, settings, references, progress)
    replaced = {"config": record["config"][part], "summary": record["summary"][part],
                "runs": [r for r in record["runs"] if r["part"] == part]}
    record["runs"] = [r for r in record["runs"] if r["part"] != part] + runs
    record["config"][part] = current[part]
    record["summary"][part] = _part_summary(part, runs, settings, seed)
    record.setdefault("reruns", []).append({"part": part, "provenance": provenance(seed),
                                            "seconds": time.perf_counter() - started, "replaced": replaced})
    write_json(path, record)
    return path
