"""Decision-aware reward shaping for a LoRA policy LM on agentic text tasks: learned weights over candidate shaping
signals against the task's own (sparse) return, with the LoRA inner loop.

Environments: the project's Tower of Hanoi with 3 disks (26 starts, move cap 10) and steppath graph navigation, and
TextArena's ``ta-hanoi``, ``ta-frozenlake`` and ``ta-lightsout`` through the same interface
(``llm.experiments.agentic_reward_learning.ENVS``). The policy is a LoRA adapter on the built-in GPT-2-shaped model
whose corpus holds those environments' (prompt, legal move) text
(``llm.experiments.agentic_reward_learning.agentic_recipe``): it knows the format and the legal moves, not which move
is good.

Task reward: the env's sparse ``success`` aspect (1 on the step that reaches the goal). The inner loop
(:class:`llm.lora_inner.LoRAInnerSolver`, RLOO + KL, warm-started) trains on ``r + F`` with ``F`` the shaping
term of each method (:mod:`llm.agentic.shaping`; candidates ``progress_potential`` = ``S(γΦ(s') − Φ(s))`` with
the distance-to-goal potential ``Φ = −d/d_max``, the env's ``invalid`` and ``malformed`` penalties, and the
deliberately harmful ``stall`` bonus ``b`` per step that does not end the episode):

* ``none``: ``F = 0`` (RLOO on the sparse task reward alone);
* ``hand_potential``: the distance-to-goal potential term alone, weight 1;
* ``fixed_candidates``: all candidates with fixed equal weights ``1/K`` (the learned weights' starting point, so
  this baseline isolates what the outer loop adds);
* ``learned_weights``: the same candidates with ``SimplexWeights`` learned by the outer loop: Adam on the
  simplex logits with :class:`llm.agentic.shaping.LoRAOneStepShapingHypergradient` (LIRPG / BiPaRS one-step
  chain rule, the math shared with the SB3 inner loop in :mod:`irl_bilevel.shaping`), one hypergradient per
  inner solve of ``updates_per_solve`` RLOO updates; it reuses the solve's own episodes (no extra episodes). It
  starts from the equal-weight sum, i.e. from ``fixed_candidates``, harmful candidate included;
* ``learned_from_none`` (because a start that includes the harmful candidate can keep training episodes from the
  goal, where the task gradient is zero): the same hypergradient and outer loop, but real, signed weights
  (:class:`irl_bilevel.rewards.LearnedWeights`) that start at **zero**, so the first solve is exactly ``none`` and
  every change of the shaping is a step along the estimated task gradient; a candidate can also be turned around
  (a negative ``stall`` weight is a per-step cost). Adam at ``outer_lr_from_none``.

Every method gets the same RLOO update budget (``total_updates``, i.e. ``total_updates · starts_per_update ·
episodes_per_start`` training episodes), the same start sequence (the inner config's seed) and the same fresh
adapter per seed. Measured per run: the training goal rate of each solve's episodes (the sparse task return, free)
and, every ``eval_every`` solves and at the start, the goal rate of ``eval_episodes_per_start`` sampled episodes
from every start (sampling seed shared by all methods of a seed: common random numbers); the learned weights
over outer steps. Across seeds: IQM with a bootstrap 95% CI (``irl_bilevel.statistics.iqm_with_ci``; with 3
seeds read it as a spread) of the final evaluation goal rate, its mean over checkpoints and the mean training goal
rate; per learned method the fraction of outer steps whose task-gradient estimate was exactly zero (no episode of
the solve reached the goal, or all did: nothing to learn from) and the final weights. Resume: the result file is
written after every (environment, seed); a rerun with the same settings keeps the finished ones.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch
from tqdm.auto import tqdm

from irl_bilevel.config import PositiveFloat, PositiveInt, experiment_settings
from irl_bilevel.hypergradients import BilevelProblem
from irl_bilevel.rewards import FixedWeights, LearnedWeights, SimplexWeights
from irl_bilevel.runs import resumable_record, write_json
from irl_bilevel.solver import BilevelSolver, OuterConfig
from irl_bilevel.statistics import iqm_with_ci
from irl_bilevel.validation import ValidationError
from llm.agentic import FiniteTextEnv, summarize
from llm.agentic.export import build_tabular_mdp
from llm.agentic.shaping import (
    CANDIDATES,
    HARMFUL,
    LoRAOneStepShapingHypergradient,
    LoRATaskReturnObjective,
    ShapedTaskReward,
    TextShapingSignals,
    shaping_weights,
)
from llm.builtin_model import AGENTIC_ENVS
from llm.experiments.agentic_reward_learning import (
    ENVS,
    AgenticPolicyConfig,
    agentic_model,
    evaluation_episodes_per_start,
    evaluation_rollouts,
)
from llm.lora_inner import LoRAInnerConfig, LoRAInnerSolver
from llm.models import LoraSettings, load_causal_lm, with_lora

NAME = "agentic_shaping"
LEARNED_METHODS = ("learned_weights", "learned_from_none")
Method = Literal["none", "hand_potential", "fixed_candidates", "learned_weights", "learned_from_none"]
METHODS: tuple[Method, ...] = get_args(Method)
Candidate = Literal["progress_potential", "invalid", "malformed", "stall"]


@dataclass(frozen=True)
class AgenticShapingConfig(AgenticPolicyConfig):
    """Settings of the agentic shaping experiment (protocol: the module docstring)."""

    model: Literal["builtin", "builtin-tiny"]
    """the built-in recipe (or its tiny test version) with agentic text"""
    methods: tuple[Method, ...]
    """shaping methods compared"""
    seeds: PositiveInt
    """seeds seed, seed + 1, ...: LoRA init, start sequence, rollouts and evaluation sampling"""
    total_updates: PositiveInt
    """RLOO updates of every method (a multiple of updates_per_solve)"""
    updates_per_solve: PositiveInt
    """RLOO updates per inner solve (= per outer step of learned_weights)"""
    candidates: tuple[Candidate, ...]
    """shaping candidates (fixed_candidates, learned_weights)"""
    potential_scale: float
    """S of the distance-to-goal potential term"""
    stall_bonus: float
    """b of the harmful stall bonus"""
    outer_lr: PositiveFloat
    """Adam step size on the simplex logits (learned_weights)"""
    outer_lr_from_none: PositiveFloat
    """Adam step size on the signed weights (learned_from_none)"""
    eval_every: PositiveInt
    """solves between evaluations (plus one at the start and one at the end)"""

    def validate(self) -> None:
        if self.total_updates % self.updates_per_solve:
            raise ValidationError(f"total_updates: expected a multiple of updates_per_solve "
                                  f"({self.updates_per_solve}), got {self.total_updates}")
        if not self.envs or not self.methods:
            raise ValidationError("envs, methods: expected at least one environment and one method")


_COMMON: dict[str, Any] = {
    "envs": list(ENVS), "methods": list(METHODS), "lora_r": 8, "lora_alpha": 16.0, "kl_coef": 0.05,
    "max_new_tokens": 4, "temperature": 1.0, "discount": 0.9, "candidates": list(CANDIDATES),
    "potential_scale": 2.0, "stall_bonus": 1.0, "outer_lr": 0.2, "outer_lr_from_none": 0.1,
}
SCALES: dict[str, dict[str, Any]] = {
    "tiny": {**_COMMON, "model": "builtin-tiny", "agentic_documents": 8, "envs": ["hanoi-3"], "seeds": 1,
             "lora_r": 2, "lora_alpha": 4.0, "starts_per_update": 2, "episodes_per_start": 2, "learning_rate": 1e-2,
             "max_new_tokens": 3, "total_updates": 2, "updates_per_solve": 1, "eval_every": 1,
             "eval_episodes_per_start": 1, "eval_min_episodes": 4},
    "quick": {**_COMMON, "model": "builtin", "agentic_documents": 2000, "seeds": 5, "starts_per_update": 4,
              "episodes_per_start": 4, "learning_rate": 5e-3, "total_updates": 40, "updates_per_solve": 4,
              "eval_every": 5, "eval_episodes_per_start": 3, "eval_min_episodes": 64},
    "full": {**_COMMON, "model": "builtin", "agentic_documents": 2000, "seeds": 10, "starts_per_update": 4,
             "episodes_per_start": 4, "learning_rate": 5e-3, "total_updates": 200, "updates_per_solve": 4,
             "eval_every": 5, "eval_episodes_per_start": 8, "eval_min_episodes": 128},
}
CONFIG = AgenticShapingConfig  # the typed settings; every SCALES entry validates into it (tests check)


# ---------------------------------------------------------------------- one environment
class _Env:
    """One environment: the env, its export, the model path and the settings; builds fresh solvers and rewards."""

    def __init__(self, name: str, model_path: Path, settings: AgenticShapingConfig) -> None:
        self.name, self.settings, self.model_path = name, settings, model_path
        self.env: FiniteTextEnv = AGENTIC_ENVS[name]()
        self.export = build_tabular_mdp(self.env, settings.discount)
        self.lora = LoraSettings(r=settings.lora_r, alpha=settings.lora_alpha)

    def solver(self, seed: int) -> LoRAInnerSolver:
        """A fresh adapter (``B = 0``: the base model) whose recorded episodes are one whole solve's."""
        s = self.settings
        config = LoRAInnerConfig(updates_per_solve=s.updates_per_solve, starts_per_update=s.starts_per_update,
                                 episodes_per_start=s.episodes_per_start, kl_coef=s.kl_coef,
                                 learning_rate=s.learning_rate, max_new_tokens=s.max_new_tokens,
                                 temperature=s.temperature, discount=s.discount,
                                 record_updates=s.updates_per_solve, seed=seed)
        model, tokenizer = load_causal_lm(self.model_path)
        return LoRAInnerSolver(with_lora(model, self.lora, seed=seed), tokenizer, self.env, config,
                               export=self.export)

    def reward(self, method: str) -> ShapedTaskReward:
        """``r + F`` of ``method`` (module docstring); ``r`` is the sparse success reward."""
        s = self.settings
        candidates = list(s.candidates)
        if method == "none":
            shaping = None
        elif method == "hand_potential":
            shaping = TextShapingSignals(self.env, self.export, ["progress_potential"], s.discount,
                                         s.potential_scale, s.stall_bonus, FixedWeights([1.0]))
        elif method in ("fixed_candidates", "learned_weights", "learned_from_none"):
            k = len(candidates)
            aggregator = {"fixed_candidates": lambda: FixedWeights([1.0 / k] * k),
                          "learned_weights": lambda: SimplexWeights(k),
                          "learned_from_none": lambda: LearnedWeights([0.0] * k)}[method]()
            shaping = TextShapingSignals(self.env, self.export, candidates, s.discount, s.potential_scale,
                                         s.stall_bonus, aggregator)
        else:
            raise ValidationError(f"methods: unknown method {method!r}; expected one of {list(METHODS)}")
        return ShapedTaskReward(self.env, self.export, shaping)

    def evaluate(self, solver: LoRAInnerSolver, seed: int) -> dict[str, Any]:
        """Goal rate (sparse task return) and success (no invalid / malformed move) over every start."""
        _, episodes = evaluation_rollouts(solver, self.settings, seed)
        summary = summarize([e.record for e in episodes])
        return {"updates": solver.updates, "goal_rate": summary["goal_rate"], "success_rate": summary["success_rate"],
                "invalid_action_rate": summary["invalid_action_rate"], "malformed_rate": summary["malformed_rate"]}


def _solve_row(solver: LoRAInnerSolver) -> dict[str, Any]:
    """The training episodes of the latest solve: goal rate (the sparse task return) and success rate."""
    episodes, config = solver.episodes, solver.config
    return {"updates": solver.updates,
            "episodes": solver.updates * config.starts_per_update * config.episodes_per_start,
            "train_goal_rate": sum(e.record.reached_goal for e in episodes) / len(episodes),
            "train_success_rate": sum(e.record.solved for e in episodes) / len(episodes)}


def run_method(env: _Env, method: str, seed: int, eval_seed: int, start_eval: dict[str, Any]) -> dict[str, Any]:
    """Train one method on one environment with one seed; returns its curves and learned weights."""
    started = time.perf_counter()
    torch.manual_seed(seed)
    settings = env.settings
    solver = env.solver(seed)
    reward = env.reward(method)
    solves = settings.total_updates // settings.updates_per_solve
    curve: list[dict[str, Any]] = []
    evaluations = [start_eval]

    def after_solve() -> None:
        curve.append(_solve_row(solver))
        if len(curve) % settings.eval_every == 0 or len(curve) == solves:
            evaluations.append(env.evaluate(solver, eval_seed))

    weights = [{"outer_step": 0, "weights": shaping_weights(reward)}] if reward.shaping is not None else []
    outer: list[dict[str, Any]] = []
    if method in LEARNED_METHODS:
        hypergradient = LoRAOneStepShapingHypergradient(after_solve=after_solve)
        problem = BilevelProblem(reward, solver, LoRATaskReturnObjective())

        def metrics() -> dict[str, Any]:
            weights.append({"outer_step": len(weights), "weights": shaping_weights(reward)})
            return {**hypergradient.last, "weights": weights[-1]["weights"]}

        # grad_tol < 0: a zero estimate (no success in a solve yet) must not stop the run.
        lr = settings.outer_lr if method == "learned_weights" else settings.outer_lr_from_none
        config = OuterConfig(steps=solves - 1, optimizer="adam", lr=lr, grad_tol=-1.0, loss_rtol=0.0)
        outer = BilevelSolver(problem, hypergradient, config, metrics=metrics, progress=False).run(resume=False).history
    else:
        for _ in range(solves):
            solver.solve(reward)
            after_solve()
    if solver.updates != settings.total_updates:
        raise RuntimeError(f"{method}: ran {solver.updates} RLOO updates, expected {settings.total_updates}")
    final = evaluations[-1]
    return {"method": method, "seed": seed, "curve": curve, "evaluations": evaluations, "weights": weights,
            "outer_history": outer, "final_goal_rate": final["goal_rate"], "final_success_rate": final["success_rate"],
            "mean_eval_goal_rate": float(np.mean([e["goal_rate"] for e in evaluations])),
            "mean_train_goal_rate": float(np.mean([row["train_goal_rate"] for row in curve])),
            "seconds": time.perf_counter() - started}


def summarize_runs(runs: list[dict[str, Any]], candidates: list[str]) -> dict[str, Any]:
    """Per method: IQM + bootstrap CI over seeds of the final evaluation goal rate, the mean goal rate over
    evaluations and over training solves, the curves' IQM at every point; for the learned methods the final weights
    and the fraction of outer steps with an exactly zero task-gradient estimate."""
    summary: dict[str, Any] = {}
    for method in dict.fromkeys(r["method"] for r in runs):
        mine = [r for r in runs if r["method"] == method]
        evaluations = [{"updates": row["updates"], "goal_rate": iqm_with_ci([r["evaluations"][i]["goal_rate"]
                                                                              for r in mine])}
                       for i, row in enumerate(mine[0]["evaluations"])]
        train = [{"updates": row["updates"], "train_goal_rate": iqm_with_ci([r["curve"][i]["train_goal_rate"]
                                                                              for r in mine])}
                 for i, row in enumerate(mine[0]["curve"])]
        entry: dict[str, Any] = {
            "seeds": [r["seed"] for r in mine],
            "final_goal_rate": iqm_with_ci([r["final_goal_rate"] for r in mine]),
            "final_success_rate": iqm_with_ci([r["final_success_rate"] for r in mine]),
            "mean_eval_goal_rate": iqm_with_ci([r["mean_eval_goal_rate"] for r in mine]),
            "mean_train_goal_rate": iqm_with_ci([r["mean_train_goal_rate"] for r in mine]),
            "final_goal_rate_per_seed": [r["final_goal_rate"] for r in mine],
            "evaluation_curve": evaluations, "train_curve": train,
            "seconds": float(sum(r["seconds"] for r in mine)),
        }
        if method in LEARNED_METHODS:
            final = np.asarray([r["weights"][-1]["weights"] for r in mine])
            entry["final_weights_mean"] = dict(zip(candidates, final.mean(0).tolist()))
            entry["final_weights_per_seed"] = [dict(zip(candidates, row)) for row in final.tolist()]
            zero = [np.mean([row.get("task_gradient_norm", 0.0) == 0.0 for row in r["outer_history"]])
                    for r in mine if r["outer_history"]]
            entry["zero_task_gradient_fraction"] = float(np.mean(zero)) if zero else None
            if HARMFUL in candidates and method == "learned_weights":
                k = candidates.index(HARMFUL)
                entry["harmful_weight_below_uniform_every_seed"] = bool((final[:, k] < 1.0 / len(candidates)).all())
        summary[method] = entry
    return summary


def shaping_goals(summary: dict[str, Any]) -> dict[str, Any]:
    """Per learned method: is it at least as good as no shaping (final goal rate IQM ≥ none's)? Also whether its 95%
    CI lies wholly below none's (significantly worse) or wholly above (significantly better)."""
    goals: dict[str, Any] = {}
    none = summary.get("none", {}).get("final_goal_rate")
    for method in LEARNED_METHODS:
        learned = summary.get(method, {}).get("final_goal_rate")
        if learned is None or none is None:
            continue
        goals[f"{method}_at_least_none"] = {
            "met": bool(learned["iqm"] >= none["iqm"]), "learned": learned, "none": none,
            "iqm_difference": learned["iqm"] - none["iqm"],
            "significantly_worse": bool(learned["high"] < none["low"]),
            "significantly_better": bool(learned["low"] > none["high"])}
    return goals


def run(scale: str, results_dir: Path, seed: int = 0, progress: bool = True,
        config: AgenticShapingConfig | None = None) -> Path:
    """Run at ``scale`` (``tiny``, ``quick``, ``full``); writes ``results_dir/agentic_shaping.json``, resuming an
    interrupted run of the same settings (its finished environments and seeds are kept)."""
    settings = experiment_settings(AgenticShapingConfig, SCALES, scale, NAME, config)
    path = Path(results_dir) / f"{NAME}.json"
    started = time.perf_counter()
    record, previous = resumable_record(path, NAME, scale, settings.to_dict(), seed,
                                        candidates=list(settings.candidates), harmful_candidate=HARMFUL,
                                        task_reward="success aspect (sparse)")
    model_path, record["model"] = agentic_model(settings.model, settings.agentic_documents, started)
    seeds = [seed + i for i in range(settings.seeds)]
    record["envs"] = {}
    bar = tqdm(total=len(settings.envs) * len(seeds) * len(settings.methods), desc=NAME, disable=not progress)
    for env_name in settings.envs:
        env = _Env(env_name, model_path, settings)
        finished = (previous or {}).get("envs", {}).get(env_name, {}).get("runs", [])
        runs: list[dict[str, Any]] = []
        for run_seed in seeds:
            kept = [r for r in finished if r["seed"] == run_seed]
            if len(kept) == len(settings.methods):  # this seed finished before an interruption
                runs += kept
                bar.update(len(kept))
            else:
                eval_seed = run_seed * 1_000 + 17  # every method of a seed: the same evaluation sampling
                start_eval = env.evaluate(env.solver(run_seed), eval_seed)  # the fresh adapter (B = 0) of this seed
                for method in settings.methods:
                    runs.append(run_method(env, method, run_seed, eval_seed, start_eval))
                    bar.update(1)
                    bar.set_postfix(env=env_name, method=method, goal=f"{runs[-1]['final_goal_rate']:.2f}")
            summary = summarize_runs(runs, list(settings.candidates))
            record["envs"][env_name] = {"num_starts": len(env.env.starts), "move_cap": env.env.max_steps,
                                        "eval_episodes_per_start": evaluation_episodes_per_start(
                                            settings.eval_episodes_per_start, settings.eval_min_episodes,
                                            len(env.env.starts)),
                                        "runs": runs, "summary": summary, "goals": shaping_goals(summary)}
            # Written after every seed (``complete`` false until the end): an interrupted run resumes from here.
            write_json(path, {**record, "complete": False, "seconds": time.perf_counter() - started})
    bar.close()
    record["goals"] = {env_name: entry["goals"] for env_name, entry in record["envs"].items()}
    record["complete"] = True
    record["seconds"] = time.perf_counter() - started
    write_json(path, record)
    return path
