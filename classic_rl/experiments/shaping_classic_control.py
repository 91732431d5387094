"""Decision-aware reward shaping on classic control with the SB3 (PPO) inner loop.

Testbeds. ``MountainCar-v0`` (−1 per step until the car reaches the flag, 200-step limit) and ``Acrobot-v1``
(−1 per step until the tip swings above the bar, 500-step limit). Both are sparse-goal tasks as shipped: the
reward is constant until the goal ends the episode, so it carries no information about *how* to get there;
Acrobot needs no modified variant (a sparse CartPole or Pendulum would need a new environment wrapper, and
Acrobot is already the sparse "swing up to a goal" task). The goal is reached when an episode *terminates*
before the time limit.

Inner loop: SB3 PPO with rl-baselines3-zoo's settings for each task (``hyperparams/ppo.yml``: MountainCar-v0
``n_envs 16, n_steps 16, gae_lambda 0.98, gamma 0.99, n_epochs 4, ent_coef 0``; Acrobot-v1 ``n_envs 16, n_steps
256, gae_lambda 0.94, gamma 0.99, n_epochs 4, ent_coef 0``, default learning rate and batch size), except that
MountainCar's ``n_steps`` is 256 as Acrobot's: ``n_envs · n_steps = steps_per_outer_step``, one PPO update per
outer step, so the episodes the outer estimate reads were collected by the policy it differentiates — the premise
of the one-step chain rule. With the zoo's 16, a 200-step episode spans 12 PPO updates, ``∇ log π`` of the final
policy is evaluated on another policy's actions, and the estimate is biased by how PPO moved in between (the
learned weights then drift to the tip-height potential, which alone never keeps the goal). The zoo's
``normalize: true`` (running observation and reward statistics) is replaced by a fixed affine map of the
observation box onto [−1, 1] (:class:`classic_rl.shaping_sb3.ScaledObservation`; MountainCar's velocity spans
±0.07 and PPO barely sees it unscaled) and no reward normalization, for every method. PPO trains on
``r_env + F_θ`` (``SB3InnerSolver(add_env_reward=True)``, ``termination="none"``: ``Φ(terminal) = 0``),
warm-started across outer steps (``steps_per_outer_step`` env steps each). Every method gets the same env-step
budget, seeds, PPO settings and shaping scale ``S`` (the same S for every method; on MountainCar S is three times
the scale at which the hand-designed potential alone reaches the flag, so that the equal-weight start, a third of
whose weight is on the useful energy potential, shapes with that strength: at a third of this S the start rarely
reaches the flag and the task gradient stays zero).

Methods (the shaping term ``F`` is a reward model of the shared interface; ψ are the task's candidate features in
``classic_rl.shaping_sb3``, each in [0, 1], potentials ``S (ψ − 1)``, ``S = shaping_scale``):

* ``none``: plain PPO on the task reward;
* ``hand_potential``: potential shaping with a hand-designed potential (MountainCar: mechanical energy; Acrobot:
  tip height);
* ``fixed_candidates``: the candidate signals (two potential terms — MountainCar: energy, height; Acrobot: tip
  height, angular kinetic energy — and the deliberately harmful ``wrong_goal`` per-step bonus ``S(1 − γ)ψ``, paid
  at the left wall of MountainCar / for hanging down in Acrobot) with fixed equal weights 1/K: the sum of all
  candidates at the scale where the learned weights start (so that this baseline isolates what the outer loop
  adds);
* ``learned_weights``: the same candidates with ``SimplexWeights`` the outer loop learns (multi-aspect reward with
  a learned aggregator);
* ``learned_potential``: ``PotentialShaping`` with ``Φ_θ = S θᵀ (ψ − 1)`` over all K features (free signs and
  scale; ``θ`` starts at equal weights, as the simplex does).

Why the learned methods start at equal weights, not at zero: the task return is constant (−1 per step, time
limit) until an episode reaches the goal, so its gradient — by any estimator — is zero until then; a shaping
initialized at zero is plain PPO, which does not reach MountainCar's goal in this budget, and would never move.

Outer loop: ``BilevelSolver`` (Adam) with :class:`classic_rl.shaping_sb3.OneStepPolicyGradientHypergradient`
(LIRPG / BiPaRS one-step chain rule; formula in that module): each outer step is one inner solve; the estimate
reuses the solve's own complete episodes, so learned methods spend no extra env steps.

Measured: after every solve, the deterministic policy on ``eval_episodes`` episodes with fixed seeds (the same for
all methods): goal rate and true return vs env steps; env steps until the goal rate, averaged over
``sustain_checkpoints`` consecutive evaluations, first reaches ``goal_threshold`` (reliably, not once); the
learned weights / potential coefficients over outer steps; summaries over seeds as IQM with a bootstrap 95% CI
(with 5 seeds at quick scale: the mean of the middle three and a spread).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from classic_rl.sb3_inner import SB3InnerSolver
from classic_rl.shaping_sb3 import (
    LinearPotential,
    OneStepPolicyGradientHypergradient,
    PotentialSignals,
    SB3TaskReturnObjective,
    ScaledObservation,
    StatePotentials,
    ZeroReward,
    evaluate_goal_rate,
    learned_potential,
)
from irl_bilevel.config import Config, PositiveFloat, PositiveInt, Probability, experiment_settings
from irl_bilevel.hypergradients import BilevelProblem
from irl_bilevel.rewards import FixedWeights, PotentialShaping, RewardModel, SimplexWeights
from irl_bilevel.runs import provenance, write_json
from irl_bilevel.solver import BilevelSolver, OuterConfig
from irl_bilevel.statistics import iqm_with_ci
from irl_bilevel.validation import ValidationError

NAME = "shaping_classic_control"
METHODS = ("none", "hand_potential", "fixed_candidates", "learned_weights", "learned_potential")
LEARNED = ("learned_weights", "learned_potential")


@dataclass(frozen=True)
class TestbedConfig(Config):
    """One task of the experiment."""

    env_id: str
    """gymnasium task with candidate potentials in classic_rl.shaping_sb3.POTENTIALS"""
    total_steps: PositiveInt
    """env-step budget of every method (rounded down to whole outer steps)"""
    steps_per_outer_step: PositiveInt
    """env steps of each inner solve (a multiple of n_envs · n_steps)"""
    record_steps: PositiveInt
    """latest inner transitions the outer estimate reads (≥ one episode per env)"""
    n_envs: PositiveInt
    """vectorized envs of PPO"""
    ppo: dict[str, Any]
    """SB3 PPO keyword arguments (rl-zoo settings)"""
    shaping_scale: float
    """S: scale of every candidate potential (each in [0, 1])"""
    potential_offset: float
    """potentials are S (ψ − offset): offset 1 makes them ≤ 0, zero where ψ is highest"""
    scale_observations: bool
    """map the observation box onto [−1, 1] (ScaledObservation) for every method"""
    hand_potential: str
    """the candidate potential used as the hand-designed one"""


@dataclass(frozen=True)
class ShapingClassicControlConfig(Config):
    """Settings of the classic-control shaping experiment (module docstring)."""

    testbeds: tuple[TestbedConfig, ...]
    """the tasks"""
    methods: tuple[str, ...]
    """shaping methods compared (some of METHODS)"""
    seeds: PositiveInt
    """run as seed, seed + 1, ..."""
    eval_episodes: PositiveInt
    """deterministic evaluation episodes per checkpoint (fixed seeds)"""
    lr_weights: PositiveFloat
    """Adam step size on the simplex logits"""
    lr_potential: PositiveFloat
    """Adam step size on the potential coefficients"""
    goal_threshold: Probability
    """goal rate that counts as reaching the goal reliably"""
    sustain_checkpoints: PositiveInt
    """... averaged over this many consecutive evaluations (1: the first one that reaches it)"""


_MOUNTAIN_CAR_PPO = {"n_steps": 256, "gae_lambda": 0.98, "gamma": 0.99, "n_epochs": 4, "ent_coef": 0.0}
_ACROBOT_PPO = {"n_steps": 256, "gae_lambda": 0.94, "gamma": 0.99, "n_epochs": 4, "ent_coef": 0.0}
_SHAPING: dict[str, Any] = {"potential_offset": 1.0, "scale_observations": True}
_MOUNTAIN_CAR: dict[str, Any] = {**_SHAPING, "env_id": "MountainCar-v0", "n_envs": 16, "ppo": _MOUNTAIN_CAR_PPO,
                                 "steps_per_outer_step": 4096, "record_steps": 8192, "shaping_scale": 270.0,
                                 "hand_potential": "energy"}
_ACROBOT: dict[str, Any] = {**_SHAPING, "env_id": "Acrobot-v1", "n_envs": 16, "ppo": _ACROBOT_PPO,
                            "steps_per_outer_step": 4096, "record_steps": 16_384, "shaping_scale": 10.0,
                            "hand_potential": "height"}
_COMMON: dict[str, Any] = {"methods": list(METHODS), "lr_weights": 0.3, "lr_potential": 0.1,
                           "goal_threshold": 0.9, "sustain_checkpoints": 3}
SCALES: dict[str, dict[str, Any]] = {
    "tiny": {**_COMMON, "seeds": 1, "eval_episodes": 2, "sustain_checkpoints": 1, "testbeds": [
        {**_MOUNTAIN_CAR, "total_steps": 1536, "steps_per_outer_step": 512, "record_steps": 512, "n_envs": 2,
         "ppo": {**_MOUNTAIN_CAR_PPO, "n_steps": 128}},
        {**_ACROBOT, "total_steps": 1536, "steps_per_outer_step": 512, "record_steps": 512, "n_envs": 2,
         "ppo": {**_ACROBOT_PPO, "n_steps": 128}}]},
    "quick": {**_COMMON, "seeds": 5, "eval_episodes": 20, "testbeds": [
        {**_MOUNTAIN_CAR, "total_steps": 90_112}, {**_ACROBOT, "total_steps": 98_304}]},
    "full": {**_COMMON, "seeds": 10, "eval_episodes": 50, "testbeds": [
        {**_MOUNTAIN_CAR, "total_steps": 200_704}, {**_ACROBOT, "total_steps": 200_704}]},
}
CONFIG = ShapingClassicControlConfig  # the typed settings; every SCALES entry validates into it (tests check)
EVAL_SEED = 100_000  # evaluation episode i is reset with EVAL_SEED + i, for every method and training seed


def shaping_model(method: str, testbed: TestbedConfig) -> RewardModel:
    """The shaping term ``F`` of ``method`` (added to the env reward by the inner solver)."""
    potentials = StatePotentials(testbed.env_id, testbed.potential_offset, testbed.scale_observations)
    k, gamma, scale = len(potentials.names), float(testbed.ppo.get("gamma", 0.99)), testbed.shaping_scale
    if method == "none":
        return ZeroReward()
    if method == "hand_potential":
        if testbed.hand_potential not in potentials.names:
            raise ValidationError(f"hand_potential: expected one of {potentials.names}, got "
                                  f"{testbed.hand_potential!r}")
        onehot = [float(name == testbed.hand_potential) for name in potentials.names]
        model = PotentialShaping(ZeroReward(), LinearPotential(potentials, scale, onehot), gamma)
        model.requires_grad_(False)
        return model
    if method == "fixed_candidates":
        return PotentialSignals(potentials, gamma, scale, FixedWeights([1.0 / k] * k))
    if method == "learned_weights":
        return PotentialSignals(potentials, gamma, scale, SimplexWeights(k))
    if method == "learned_potential":
        return learned_potential(potentials, gamma, scale, [1.0 / k] * k)
    raise ValidationError(f"methods: unknown method {method!r}; expected one of {METHODS}")


def shaping_parameters(model: RewardModel) -> dict[str, list[float]]:
    """The learned (or fixed) numbers of a shaping model, for the record."""
    aggregator = getattr(model, "aggregator", None)
    if isinstance(model, PotentialSignals) and isinstance(aggregator, (SimplexWeights, FixedWeights)):
        return {"weights": aggregator.weights.detach().double().tolist()}
    if isinstance(model, PotentialShaping) and isinstance(model.potential, LinearPotential):
        return {"coefficients": model.potential.coefficients.detach().double().tolist()}
    return {}


def steps_to_threshold(curve: list[dict[str, Any]], threshold: float, sustain: int = 1) -> int | None:
    """Env steps at the first checkpoint ``i`` where the goal rate averaged over checkpoints ``i − sustain + 1 … i``
    is at least ``threshold`` (None if there is none): reaching the goal *reliably*, not at one lucky evaluation —
    PPO's deterministic policy can hit 100% once and fall back to 0% at the next evaluation."""
    if sustain < 1:
        raise ValidationError(f"sustain_checkpoints: expected at least 1, got {sustain}")
    rates = [row["goal_rate"] for row in curve]
    return next((curve[i]["env_steps"] for i in range(sustain - 1, len(curve))
                 if np.mean(rates[i - sustain + 1: i + 1]) >= threshold), None)


def run_method(method: str, testbed: TestbedConfig, config: ShapingClassicControlConfig, seed: int) -> dict[str, Any]:
    """Train one method on one testbed with one seed; returns its learning curve and learned parameters."""
    started = time.perf_counter()
    torch.manual_seed(seed)
    np.random.seed(seed)  # noqa: NPY002 (SB3 shuffles minibatches with the global generator)
    model = shaping_model(method, testbed)
    wrapper = ScaledObservation if testbed.scale_observations else None
    inner = SB3InnerSolver(testbed.env_id, "ppo", testbed.steps_per_outer_step, testbed.n_envs,
                           dict(testbed.ppo), seed, termination="none", learner_steps=testbed.record_steps,
                           add_env_reward=True, wrapper_class=wrapper)
    solves = testbed.total_steps // testbed.steps_per_outer_step
    eval_seeds = [EVAL_SEED + i for i in range(config.eval_episodes)]
    curve: list[dict[str, Any]] = []

    def evaluate() -> None:
        result = evaluate_goal_rate(inner.model, testbed.env_id, eval_seeds, wrapper)
        curve.append({"env_steps": inner.env_steps, "goal_rate": result["goal_rate"],
                      "mean_return": result["mean_return"],
                      "train_return": None if math.isnan(train := inner.recent_true_return()) else train})

    parameters = [{"outer_step": 0, **shaping_parameters(model)}]
    outer: list[dict[str, Any]] = []
    try:
        if method in LEARNED:
            hypergradient = OneStepPolicyGradientHypergradient(after_solve=evaluate)
            problem = BilevelProblem(model, inner, SB3TaskReturnObjective())

            def metrics() -> dict[str, Any]:
                parameters.append({"outer_step": len(parameters), **shaping_parameters(model)})
                return {**hypergradient.last, **shaping_parameters(model)}

            lr = config.lr_weights if method == "learned_weights" else config.lr_potential
            # grad_tol < 0: a zero estimate (no successful episode yet) must not stop the run.
            outer_config = OuterConfig(steps=solves - 1, optimizer="adam", lr=lr, grad_tol=-1.0,
                                       loss_rtol=0.0)
            solver = BilevelSolver(problem, hypergradient, outer_config, metrics=metrics, progress=False)
            outer = solver.run(resume=False).history
        else:
            for _ in range(solves):
                inner.solve(model)
                evaluate()
    finally:
        inner.close()
    return {"method": method, "seed": seed, "curve": curve, "parameters": parameters, "outer_history": outer,
            "steps_to_threshold": steps_to_threshold(curve, config.goal_threshold, config.sustain_checkpoints),
            "final_goal_rate": curve[-1]["goal_rate"], "final_return": curve[-1]["mean_return"],
            "seconds": time.perf_counter() - started}


def summarize(runs: list[dict[str, Any]], testbed: TestbedConfig, threshold: float) -> dict[str, Any]:
    """Per method: IQM with bootstrap CI over seeds of the final goal rate / return, the mean goal rate over
    checkpoints (area under the curve), env steps to the threshold (censored at ``budget + steps_per_outer_step``
    for seeds that never reach it), and the curve's IQM and CI at every checkpoint."""
    censor = testbed.total_steps + testbed.steps_per_outer_step
    summary: dict[str, Any] = {}
    for method in dict.fromkeys(r["method"] for r in runs):
        mine = [r for r in runs if r["method"] == method]
        steps = [r["steps_to_threshold"] for r in mine]
        length = min(len(r["curve"]) for r in mine)
        curve = []
        for i in range(length):
            rows = [r["curve"][i] for r in mine]
            curve.append({"env_steps": rows[0]["env_steps"],
                          "goal_rate": iqm_with_ci([row["goal_rate"] for row in rows]),
                          "mean_return": iqm_with_ci([row["mean_return"] for row in rows])})
        entry: dict[str, Any] = {
            "seeds": [r["seed"] for r in mine],
            "steps_to_threshold": steps,
            "reached_threshold": sum(s is not None for s in steps),
            "steps_to_threshold_censored": iqm_with_ci([censor if s is None else s for s in steps]),
            "final_goal_rate": iqm_with_ci([r["final_goal_rate"] for r in mine]),
            "final_return": iqm_with_ci([r["final_return"] for r in mine]),
            "mean_goal_rate_over_training": iqm_with_ci([np.mean([row["goal_rate"] for row in r["curve"]])
                                                         for r in mine]),
            "curve": curve,
            "seconds": float(sum(r["seconds"] for r in mine)),
        }
        final = [r["parameters"][-1] for r in mine]
        for key in ("weights", "coefficients"):
            if key in final[0]:
                entry[f"final_{key}"] = np.mean([f[key] for f in final], axis=0).tolist()
                entry[f"final_{key}_per_seed"] = [f[key] for f in final]
        summary[method] = entry
    return summary


def goal_check(summary: dict[str, Any], testbed: TestbedConfig, seeds: int) -> dict[str, Any]:
    """The issue's criterion per learned method: every seed reaches the threshold, in fewer env steps (IQM over
    seeds, never-reached censored at budget + one outer step) than unshaped PPO; the ratio of the two IQMs."""
    if "none" not in summary:
        return {}
    reference = summary["none"]["steps_to_threshold_censored"]["iqm"]
    check = {}
    for method in (m for m in summary if m != "none"):
        entry = summary[method]
        steps = entry["steps_to_threshold_censored"]["iqm"]
        check[method] = {"all_seeds_reach": entry["reached_threshold"] == seeds,
                         "steps_iqm": steps, "unshaped_steps_iqm": reference,
                         "unshaped_reached": summary["none"]["reached_threshold"],
                         "ratio_to_unshaped": steps / reference,
                         "met": entry["reached_threshold"] == seeds and steps < reference}
    return check


def run(scale: str, results_dir: Path, seed: int = 0, progress: bool = True,
        config: ShapingClassicControlConfig | None = None) -> Path:
    """Run at ``scale`` (``tiny``, ``quick``, ``full``); writes ``results_dir/shaping_classic_control.json``."""
    settings = experiment_settings(ShapingClassicControlConfig, SCALES, scale, NAME, config)
    for method in settings.methods:
        if method not in METHODS:
            raise ValidationError(f"methods: unknown method {method!r}; expected one of {METHODS}")
    results_dir = Path(results_dir)
    record: dict[str, Any] = {"name": NAME, "scale": scale, "config": settings.to_dict(),
                              "provenance": provenance(seed), "torch_threads": torch.get_num_threads(),
                              "testbeds": []}
    started = time.perf_counter()
    jobs = [(t, m, seed + s) for t in settings.testbeds for s in range(settings.seeds)
            for m in settings.methods]
    runs: dict[str, list[dict[str, Any]]] = {t.env_id: [] for t in settings.testbeds}
    for testbed, method, run_seed in tqdm(jobs, desc=NAME, disable=not progress):
        runs[testbed.env_id].append(run_method(method, testbed, settings, run_seed))
    for testbed in settings.testbeds:
        mine = runs[testbed.env_id]
        summary = summarize(mine, testbed, settings.goal_threshold)
        record["testbeds"].append({
            "env_id": testbed.env_id, "candidates": list(StatePotentials(testbed.env_id).names),
            "harmful_candidate": "wrong_goal", "runs": mine, "summary": summary,
            "goal_check": goal_check(summary, testbed, settings.seeds)})
    record["seconds"] = time.perf_counter() - started
    path = results_dir / f"{NAME}.json"
    write_json(path, record)
    return path
