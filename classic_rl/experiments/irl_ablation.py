"""One cell of the classical-RL IRL ablation: ML-IRL (:mod:`classic_rl.gym_irl`) on one testbed with one
hypergradient method, reward structure, inner budget per outer step and demonstration count, for one seed.

The ablation itself is a sweep over these settings × seeds (``irlb sweep``, locally or on a Ray cluster);
``sweeps/irl_ablation.json`` declares the grid:

    irlb sweep --spec sweeps/irl_ablation.json --out sweeps/irl_ablation            # local, every core
    irlb sweep --spec sweeps/irl_ablation.json --out /shared/irl_ablation --address auto  # a Ray cluster

Each trial writes ``irl_ablation.json`` (the run's summary: final and best normalized return, env steps to
0.9, reward-transfer score, wall time) next to the run folder of :func:`classic_rl.gym_irl.run_gym_irl`
(config, per-step metrics, policy, reward, TensorBoard); ``sweep.json`` aggregates the IQM and bootstrap CI over
seeds per grid point.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from irl_bilevel.config import Config, NonNegativeInt, PositiveInt, experiment_settings
from irl_bilevel.runs import provenance, write_json
from irl_bilevel.validation import ValidationError

NAME = "irl_ablation"
HYPERGRADIENTS = ("maxent", "penalty", "zeroth_order")


@dataclass(frozen=True)
class IRLAblationConfig(Config):
    """One ablation cell (see :class:`classic_rl.gym_irl.GymIRLConfig` for the meaning of each setting)."""

    env_id: str
    """gymnasium testbed"""
    hypergradient: Literal["maxent", "penalty", "zeroth_order"]
    """the outer gradient estimator"""
    hypergradient_options: dict[str, dict[str, Any]]
    """per method, the options of that method only (a sweep over methods carries every method's options), e.g.
    ``{"penalty": {"upper_steps": 5}, "zeroth_order": {"num_samples": 4}}``"""
    reward_structure: Literal["scalar", "multi_aspect", "shaped"]
    """scalar reward, multi-aspect heads with learned simplex weights, or potential-shaped"""
    env_steps_per_outer_step: PositiveInt
    """inner PPO budget per outer step (= PPO's rollout length here)"""
    num_demonstrations: PositiveInt
    """expert episodes used as demonstrations"""
    env_step_budget: PositiveInt
    """total inner env steps; outer steps = budget / inner steps − 1"""
    hidden_sizes: tuple[PositiveInt, ...]
    """reward MLP"""
    eval_episodes: PositiveInt
    """true-reward evaluation episodes of the policy"""
    eval_every: PositiveInt
    """outer steps between evaluations"""
    transfer_steps: NonNegativeInt
    """fresh PPO on the frozen learned reward (0: skip)"""
    demonstrations_file: str | None = None
    """.npz demonstrations (default: roll out the cached SB3 expert)"""


# The penalty method's upper policy takes upper_steps × upper_rollout_steps env steps per outer step beyond the
# inner loop's; its defaults (50 × 512) would be 50× the quick inner budget of 512, so the ablation runs it with
# 5 × 256 (2.5×; the extra steps are counted in the cell's env_steps).
_COMMON: dict[str, Any] = {"env_id": "CartPole-v1", "hypergradient": "maxent",
                           "hypergradient_options": {"penalty": {"upper_steps": 5, "upper_rollout_steps": 256}},
                           "reward_structure": "scalar", "hidden_sizes": [64, 64]}
SCALES: dict[str, dict[str, Any]] = {
    "tiny": {**_COMMON, "env_steps_per_outer_step": 128, "num_demonstrations": 2, "env_step_budget": 512,
             "hidden_sizes": [16], "eval_episodes": 1, "eval_every": 1, "transfer_steps": 0},
    "quick": {**_COMMON, "env_steps_per_outer_step": 512, "num_demonstrations": 10, "env_step_budget": 20_480,
              "eval_episodes": 5, "eval_every": 4, "transfer_steps": 20_480},
    "full": {**_COMMON, "env_steps_per_outer_step": 512, "num_demonstrations": 10, "env_step_budget": 102_400,
             "eval_episodes": 10, "eval_every": 4, "transfer_steps": 102_400},
}
CONFIG = IRLAblationConfig


def run(scale: str, results_dir: Path, seed: int = 0, progress: bool = True,
        config: IRLAblationConfig | None = None) -> Path:
    """Run the cell; writes and returns ``results_dir/irl_ablation.json`` (the run folder is ``results_dir/run``)."""
    from classic_rl.gym_irl import GymIRLConfig, run_gym_irl

    settings = experiment_settings(IRLAblationConfig, SCALES, scale, NAME, config)
    unknown = sorted(set(settings.hypergradient_options) - set(HYPERGRADIENTS))
    if unknown:
        raise ValidationError(f"hypergradient_options: {unknown[0]!r} is not a hypergradient method; expected keys "
                              f"among {list(HYPERGRADIENTS)}")
    steps = settings.env_steps_per_outer_step
    run_config = GymIRLConfig(
        env_id=settings.env_id, hypergradient=settings.hypergradient,
        hypergradient_options=dict(settings.hypergradient_options.get(settings.hypergradient, {})),
        reward_structure=settings.reward_structure, hyperparameters={"n_steps": steps},
        env_steps_per_outer_step=steps, num_demonstrations=settings.num_demonstrations,
        outer_steps=max(1, settings.env_step_budget // steps - 1), hidden_sizes=list(settings.hidden_sizes),
        eval_episodes=settings.eval_episodes, eval_every=settings.eval_every,
        transfer_steps=settings.transfer_steps, demonstrations_file=settings.demonstrations_file,
        checkpoint_every=10, seed=seed)
    results_dir = Path(results_dir)
    summary = run_gym_irl(run_config, results_dir / "run", progress=progress)
    evaluated = [row for row in _metrics(results_dir / "run") if "normalized_return" in row]
    record = {"name": NAME, "scale": scale, "config": settings.to_dict(), "provenance": provenance(seed),
              "summary": summary,
              "final_normalized_return": summary["final_normalized_return"],
              "best_normalized_return": max(row["normalized_return"] for row in evaluated),
              "env_steps_to_0.9": summary["env_steps_to_0.9"],
              "transfer_normalized_return": summary.get("transfer_normalized_return"),
              "env_steps": summary["env_steps"],  # inner steps plus the penalty method's upper-policy steps
              "curve": [[row["env_steps"], row["normalized_return"]] for row in evaluated]}
    path = results_dir / f"{NAME}.json"
    write_json(path, record)
    return path


def _metrics(run_dir: Path) -> list[dict[str, Any]]:
    from irl_bilevel.runs import read_metrics

    return read_metrics(run_dir / "metrics.jsonl")
