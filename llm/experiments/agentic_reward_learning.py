"""Learned structured rewards for a LoRA policy LM acting in agentic text environments, and their transfer.

Environments: Tower of Hanoi with 3 disks (26 starts, move cap 10) and steppath graph navigation (3 tasks, move
cap 6) from :mod:`llm.agentic`. The policy is a LoRA adapter on the built-in GPT-2-shaped model whose corpus
holds those environments' (prompt, legal move) text (``BuiltinRecipe(agentic_envs=...)``): it knows the format
and the legal moves, not which move is good. Per environment and seed:

(i) ``untrained``: a fresh adapter (LoRA's ``B = 0``: the base model itself) is evaluated.

(ii) ``learned``: a structured reward ``r_θ(s, a) = Σ_k θ_k φ_k(s, a)`` over the env's true aspects ``φ``
(success, invalid, malformed, progress, step; :class:`llm.agentic.export.AspectTableReward`, scales ``θ`` from
``initial_scales``) is learned by MaxEnt IRL from the optimal solver's demonstrations
(:func:`llm.lora_inner.demonstration_objective`, the sample gradient ``E_learner[∇r_θ] − E_expert[∇r_θ]``)
through :class:`irl_bilevel.solver.BilevelSolver` with :class:`~irl_bilevel.hypergradients.MaxEntHypergradient`
and the :class:`llm.lora_inner.LoRAInnerSolver` (``irl_updates_per_solve`` RLOO updates per hypergradient,
warm-started). The learned scales are then frozen and a **fresh** adapter is fine-tuned on them
(``transfer_updates`` RLOO updates): reward transfer. The IRL run's own inner policy is evaluated too
(``irl_inner``).

(iii) ``sparse``: a fresh adapter fine-tuned with the same budget on the success aspect alone
(``SPARSE_WEIGHTS``); (iv) ``true`` (optional reference): on the env's true structured reward (``DEFAULT_WEIGHTS``).

All fine-tuning runs of a seed share the inner config's seed, so they see the same start sequence; all
evaluations of a seed share one sampling seed (common random numbers). Evaluation: every start,
``eval_episodes_per_start`` sampled episodes (temperature ``temperature``); metrics of
:func:`llm.agentic.metrics.summarize` (success = goal reached with no invalid and no malformed move; invalid and
malformed rates over all actions; plan length over optimal on solved episodes). Across seeds: the mean, the
standard deviation and the variance (``ddof = 1``) of each condition's success rate (stability), and whether
``learned`` beats ``untrained`` and ``sparse`` in the mean and on every seed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from irl_bilevel.config import ExperimentConfig, scale_settings
from irl_bilevel.hypergradients import BilevelProblem, MaxEntHypergradient
from irl_bilevel.runs import provenance, write_json
from irl_bilevel.solver import BilevelSolver, OuterConfig
from irl_bilevel.validation import ValidationError
from llm.agentic import SPARSE_WEIGHTS, FiniteTextEnv, summarize
from llm.agentic.export import AspectTableReward, build_tabular_mdp
from llm.builtin_model import AGENTIC_ENVS, BuiltinRecipe, build_builtin_model, read_build_info
from llm.lora_inner import LoRAInnerConfig, LoRAInnerSolver, demonstration_objective
from llm.models import LoraSettings, load_causal_lm, with_lora

NAME = "agentic_reward_learning"
ENVS = ("hanoi-3", "steppath")
CONDITIONS = ("untrained", "irl_inner", "learned", "sparse", "true")
TRAINED = ("learned", "sparse", "true")  # fresh adapters fine-tuned on a frozen reward, same budget


@dataclass(frozen=True)
class AgenticRewardLearningConfig(ExperimentConfig):
    """Settings of the agentic reward-learning experiment (protocol: the module docstring)."""

    model: Literal["builtin", "builtin-tiny"]  # the built-in recipe (or its tiny test version) with agentic text
    agentic_repeats: int  # copies of each (prompt, legal move) document in the built-in model's corpus
    envs: tuple[Literal["hanoi-3", "steppath"], ...]
    seeds: int  # seeds seed, seed + 1, ...: LoRA init, rollouts and evaluation sampling
    lora_r: int
    lora_alpha: float
    starts_per_update: int
    episodes_per_start: int  # k of RLOO
    kl_coef: float
    learning_rate: float
    max_new_tokens: int
    temperature: float
    discount: float
    initial_scales: tuple[float, ...]  # θ at the start of IRL (order: the env's aspect names)
    outer_steps: int  # Adam steps on θ (one hypergradient each, plus one at the start)
    outer_lr: float
    irl_updates_per_solve: int
    transfer_updates: int  # RLOO updates of each fresh adapter on a frozen reward
    with_true_reward: bool  # also fine-tune on the true structured reward (reference)
    eval_episodes_per_start: int


_COMMON: dict[str, Any] = {
    "envs": list(ENVS), "lora_r": 8, "lora_alpha": 16.0, "kl_coef": 0.05, "max_new_tokens": 4,
    "temperature": 1.0, "discount": 0.9, "initial_scales": [0.0] * 5, "with_true_reward": True,
}
SCALES: dict[str, dict[str, Any]] = {
    "tiny": {**_COMMON, "model": "builtin-tiny", "agentic_repeats": 1, "envs": ["steppath"], "seeds": 2,
             "lora_r": 2, "lora_alpha": 4.0, "starts_per_update": 2, "episodes_per_start": 2,
             "learning_rate": 1e-2, "max_new_tokens": 3, "outer_steps": 1, "outer_lr": 0.1,
             "irl_updates_per_solve": 1, "transfer_updates": 1, "with_true_reward": False,
             "eval_episodes_per_start": 1},
    "quick": {**_COMMON, "model": "builtin", "agentic_repeats": 20, "seeds": 3, "starts_per_update": 4,
              "episodes_per_start": 4, "learning_rate": 5e-3, "outer_steps": 10, "outer_lr": 0.2,
              "irl_updates_per_solve": 3, "transfer_updates": 100, "eval_episodes_per_start": 8},
    "full": {**_COMMON, "model": "builtin", "agentic_repeats": 20, "seeds": 5, "starts_per_update": 8,
             "episodes_per_start": 4, "learning_rate": 5e-3, "outer_steps": 30, "outer_lr": 0.1,
             "irl_updates_per_solve": 4, "transfer_updates": 150, "eval_episodes_per_start": 8},
}
CONFIG = AgenticRewardLearningConfig  # the typed settings; every SCALES entry validates into it (tests check)


def agentic_recipe(model: str, repeats: int) -> BuiltinRecipe:
    """The built-in recipe (``builtin``) or its tiny test version with Hanoi-3's and steppath's text."""
    if model == "builtin":
        return BuiltinRecipe(agentic_envs=ENVS, agentic_repeats=repeats)
    return BuiltinRecipe.tiny(agentic_envs=ENVS, n_positions=64, agentic_repeats=repeats)


def _finite_or_none(value: Any) -> Any:
    """``nan`` (e.g. the plan-length ratio when nothing is solved) becomes ``None``: the file stays strict JSON."""
    return None if isinstance(value, float) and not np.isfinite(value) else value


def _inner_config(settings: dict[str, Any], updates: int, seed: int) -> LoRAInnerConfig:
    return LoRAInnerConfig(updates_per_solve=updates, starts_per_update=settings["starts_per_update"],
                           episodes_per_start=settings["episodes_per_start"], kl_coef=settings["kl_coef"],
                           learning_rate=settings["learning_rate"], max_new_tokens=settings["max_new_tokens"],
                           temperature=settings["temperature"], discount=settings["discount"], seed=seed)


class _Run:
    """One environment: the model path, the env, its export and the settings; builds fresh LoRA solvers."""

    def __init__(self, env_name: str, model_path: Path, settings: dict[str, Any]) -> None:
        self.env: FiniteTextEnv = AGENTIC_ENVS[env_name]()
        self.model_path, self.settings = model_path, settings
        self.export = build_tabular_mdp(self.env, settings["discount"])
        self.lora = LoraSettings(r=settings["lora_r"], alpha=settings["lora_alpha"])

    def solver(self, updates: int, seed: int) -> LoRAInnerSolver:
        """A fresh adapter (initialised from ``seed``; ``B = 0``, so it starts as the base model)."""
        model, tokenizer = load_causal_lm(self.model_path)
        return LoRAInnerSolver(with_lora(model, self.lora, seed=seed), tokenizer, self.env,
                               _inner_config(self.settings, updates, seed), export=self.export)

    def evaluate(self, solver: LoRAInnerSolver, seed: int) -> dict[str, Any]:
        """``eval_episodes_per_start`` sampled episodes from every start, sampling seeded by ``seed``."""
        k = self.settings["eval_episodes_per_start"]
        starts = [s for s in range(len(self.env.starts)) for _ in range(k)]
        with torch.no_grad():
            episodes = solver.rollout(starts, seed)
        records = [episode.record for episode in episodes]
        summary = {key: _finite_or_none(value) for key, value in summarize(records).items()}
        per_start = [sum(r.solved for r in records[i * k:(i + 1) * k]) / k for i in range(len(self.env.starts))]
        return {**summary, "success_per_start": per_start,
                "examples": [{"start": r.start, "actions": r.action_texts[:6], "solved": r.solved}
                             for r in records[::max(1, len(records) // 3)][:3]]}

    def fixed_reward(self, scales: list[float]) -> AspectTableReward:
        return AspectTableReward(self.export, initial_scales=scales, learn_scales=False)


def _train_on(run: _Run, reward: AspectTableReward, seed: int, eval_seed: int) -> dict[str, Any]:
    """A fresh adapter fine-tuned on a frozen reward for ``transfer_updates`` updates, then evaluated."""
    started = time.perf_counter()
    solver = run.solver(run.settings["transfer_updates"], seed)
    solver.solve(reward)
    result = run.evaluate(solver, eval_seed)
    result["training"] = solver.history
    result["seconds"] = time.perf_counter() - started
    return result


def _learn_reward(run: _Run, seed: int, eval_seed: int) -> tuple[list[float], dict[str, Any]]:
    """MaxEnt IRL of the aspect scales through the bilevel solver with the LoRA inner loop."""
    started = time.perf_counter()
    settings = run.settings
    inner = run.solver(settings["irl_updates_per_solve"], seed + 50_000)
    reward = AspectTableReward(run.export, initial_scales=settings["initial_scales"])
    objective = demonstration_objective(run.env, run.export, settings["discount"])
    problem = BilevelProblem(reward, inner, objective)
    scales_history: list[list[float]] = []

    def metrics() -> dict[str, Any]:
        scales_history.append(reward.scales.detach().tolist())
        last = inner.history[-1]
        return {"scales": scales_history[-1], "inner_success_rate": last["success_rate"],
                "inner_malformed_rate": last["malformed_rate"], "inner_invalid_rate": last["invalid_rate"]}

    result = BilevelSolver(problem, MaxEntHypergradient(), OuterConfig(steps=settings["outer_steps"],
                                                                        optimizer="adam", lr=settings["outer_lr"]),
                           metrics=metrics, progress=False).run(resume=False)
    scales = reward.scales.detach().tolist()
    evaluation = run.evaluate(inner, eval_seed)
    evaluation.update({"training": inner.history, "outer_history": result.history,
                       "inner_updates": inner.updates, "seconds": time.perf_counter() - started})
    return scales, evaluation


def _across_seeds(per_seed: list[dict[str, Any]], conditions: list[str]) -> dict[str, Any]:
    """Mean, std and variance (ddof = 1) across seeds of each condition's metrics; the comparisons."""
    summary: dict[str, Any] = {}
    for condition in conditions:
        rows = [seed_result["conditions"][condition] for seed_result in per_seed]
        success = np.asarray([row["success_rate"] for row in rows])
        variance = float(success.var(ddof=1)) if len(success) > 1 else 0.0
        entry: dict[str, Any] = {"success_per_seed": success.tolist(), "success_mean": float(success.mean()),
                                 "success_variance": variance, "success_std": variance**0.5}
        for metric in ("goal_rate", "invalid_action_rate", "malformed_rate", "plan_length_ratio"):
            values = np.asarray([np.nan if row[metric] is None else row[metric] for row in rows], dtype=float)
            entry[f"{metric}_per_seed"] = [_finite_or_none(v) for v in values.tolist()]
            entry[f"{metric}_mean"] = float(np.nanmean(values)) if np.isfinite(values).any() else None
        summary[condition] = entry
    comparisons: dict[str, Any] = {}
    learned = np.asarray(summary["learned"]["success_per_seed"])
    for other in ("untrained", "sparse", "true"):
        if other in summary:
            values = np.asarray(summary[other]["success_per_seed"])
            comparisons[f"learned_minus_{other}_mean"] = float((learned - values).mean())
            comparisons[f"learned_beats_{other}_in_mean"] = bool(learned.mean() > values.mean())
            comparisons[f"learned_beats_{other}_every_seed"] = bool((learned > values).all())
    summary["comparisons"] = comparisons
    return summary


def run(scale: str, results_dir: Path, seed: int = 0, progress: bool = True,
        config: AgenticRewardLearningConfig | None = None) -> Path:
    """Run at ``scale`` (``tiny``, ``quick``, ``full``); writes ``results_dir/agentic_reward_learning.json``."""
    settings = scale_settings(AgenticRewardLearningConfig, SCALES, scale, NAME, config)
    if not settings["envs"]:
        raise ValidationError(f"envs: expected at least one of {list(ENVS)}")
    for name in ("seeds", "agentic_repeats", "outer_steps", "irl_updates_per_solve", "transfer_updates",
                 "eval_episodes_per_start"):
        if settings[name] < 1:
            raise ValidationError(f"{name}: expected a positive integer, got {settings[name]}")
    if len(settings["initial_scales"]) != 5:
        raise ValidationError(f"initial_scales: expected 5 numbers (one per aspect), got {settings['initial_scales']}")
    results_dir = Path(results_dir)
    started = time.perf_counter()
    record: dict[str, Any] = {"name": NAME, "scale": scale, "config": settings, "provenance": provenance(seed)}
    recipe = agentic_recipe(settings["model"], settings["agentic_repeats"])
    model_path = build_builtin_model(recipe, progress=False)
    info = read_build_info(model_path)
    record["model"] = {"name": settings["model"], "key": info["key"], "held_out_loss": info["held_out_loss"],
                       "num_parameters": info["num_parameters"], "build_seconds": info.get("build_seconds"),
                       "load_seconds": time.perf_counter() - started}
    conditions = ["untrained", "irl_inner", "learned", "sparse"] + (["true"] if settings["with_true_reward"] else [])
    seeds = [seed + i for i in range(settings["seeds"])]
    path = results_dir / f"{NAME}.json"
    bar = tqdm(total=len(settings["envs"]) * len(seeds), desc=NAME, disable=not progress)
    record["envs"] = {}
    for env_name in settings["envs"]:
        run_ = _Run(env_name, model_path, settings)
        per_seed: list[dict[str, Any]] = []
        env_started = time.perf_counter()
        for run_seed in seeds:
            seed_started = time.perf_counter()
            torch.manual_seed(run_seed)
            eval_seed = run_seed * 1_000 + 17
            results: dict[str, Any] = {"untrained": run_.evaluate(run_.solver(1, run_seed), eval_seed)}
            scales, results["irl_inner"] = _learn_reward(run_, run_seed, eval_seed)
            rewards = {"learned": scales, "sparse": list(SPARSE_WEIGHTS), "true": run_.env.weights.tolist()}
            for condition in TRAINED:
                if condition in conditions:
                    results[condition] = _train_on(run_, run_.fixed_reward(rewards[condition]), run_seed, eval_seed)
            per_seed.append({"seed": run_seed, "learned_scales": scales, "aspect_names": list(run_.env.aspect_names),
                             "conditions": results, "seconds": time.perf_counter() - seed_started})
            record["envs"][env_name] = {
                "num_starts": len(run_.env.starts), "move_cap": run_.env.max_steps,
                "optimal_lengths": [run_.env.distance_to_goal(s) for s in run_.env.starts],
                "seeds": per_seed, "summary": _across_seeds(per_seed, conditions),
                "seconds": time.perf_counter() - env_started,
            }
            # Written after every seed (``complete`` false until the end), so an interrupted run keeps its numbers.
            write_json(path, {**record, "complete": False, "seconds": time.perf_counter() - started})
            bar.update(1)
            bar.set_postfix(env=env_name, learned=f"{results['learned']['success_rate']:.2f}",
                            sparse=f"{results['sparse']['success_rate']:.2f}")
    bar.close()
    record["acceptance"] = {
        env_name: {"learned_beats_untrained": entry["summary"]["comparisons"]["learned_beats_untrained_in_mean"],
                   "learned_beats_sparse": entry["summary"]["comparisons"]["learned_beats_sparse_in_mean"]}
        for env_name, entry in record["envs"].items()}
    record["complete"] = True
    record["seconds"] = time.perf_counter() - started
    write_json(path, record)
    return path
