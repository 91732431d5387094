"""ML-IRL (MaxEnt hypergradient, warm-started PPO inner loop) on CartPole-v1 from 10 expert demonstrations.

Setup: the cached PPO expert (:func:`classic_rl.experts.train_expert`), ``num_demonstrations`` deterministic
episodes of it; a state-only MLP reward; :class:`classic_rl.sb3_inner.SB3InnerSolver` (PPO, SB3 defaults,
``env_steps_per_outer_step`` env steps per outer step, warm-started) with ``termination="absorbing"``,
``absorbing_indicator=True`` (DAC's separate absorbing state: see ``classic_rl.learned_reward_env``; without it a
state-only reward's absorbing value is its extrapolation to the terminal observation and the learner chases it)
and ``normalize_reward=True``; :class:`irl_bilevel.objectives.SampleMaxEntObjective` with the same discount and
convention; :class:`irl_bilevel.hypergradients.MaxEntHypergradient`; Adam on the reward through
:class:`irl_bilevel.solver.BilevelSolver`.

Per outer step: the true (environment) return of the current policy (deterministic, ``eval_episodes`` seeded
episodes), its expert-normalized value and the inner env steps so far. At the end: the final normalized return
and *reward transfer* (a fresh PPO trained from scratch on the frozen learned reward for ``transfer_steps``).
Writes ``results_dir/ml_irl_cartpole.json``; ``run`` does ``seeds`` seeds starting at ``seed``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from classic_rl.experiments import scale_config
from classic_rl.experts import (
    evaluate_policy_return,
    normalized_return,
    random_policy_return,
    rollout_demonstrations,
    train_expert,
)
from classic_rl.sb3_inner import SB3InnerSolver
from irl_bilevel.hypergradients import BilevelProblem, MaxEntHypergradient
from irl_bilevel.objectives import SampleMaxEntObjective
from irl_bilevel.rewards import MLPReward
from irl_bilevel.runs import provenance, write_json
from irl_bilevel.solver import BilevelSolver, OuterConfig

NAME = "ml_irl_cartpole"
ENV_ID = "CartPole-v1"

SCALES: dict[str, dict[str, Any]] = {
    "tiny": {"seeds": 1, "outer_steps": 2, "env_steps_per_outer_step": 256, "ppo": {"n_steps": 128,
             "batch_size": 64, "n_epochs": 2}, "num_demonstrations": 2, "eval_episodes": 2, "transfer_steps": 256,
             "hidden": [16]},
    "quick": {"seeds": 5, "outer_steps": 30, "env_steps_per_outer_step": 2048, "ppo": {},
              "num_demonstrations": 10, "eval_episodes": 10, "transfer_steps": 61_440, "hidden": [64, 64]},
}
COMMON: dict[str, Any] = {"gamma": 0.99, "lr": 1e-2, "l2": 0.0, "demonstration_seed": 1000, "eval_seed": 10_000}


def _inner(config: dict[str, Any], seed: int) -> SB3InnerSolver:
    hyperparameters = {**config["ppo"], "gamma": COMMON["gamma"]}
    return SB3InnerSolver(ENV_ID, "ppo", config["env_steps_per_outer_step"], hyperparameters=hyperparameters,
                          seed=seed, termination="absorbing", normalize_reward=True, absorbing_indicator=True)


def run_seed(config: dict[str, Any], seed: int, expert: Any, demonstrations: Any, random: float, expert_return: float,
             progress: bool = False) -> dict[str, Any]:
    """One ML-IRL run and its reward-transfer check; returns its per-step record."""
    torch.manual_seed(seed)
    inner = _inner(config, seed)
    objective = SampleMaxEntObjective(demonstrations, COMMON["gamma"], absorbing=True, absorbing_indicator=True)
    obs_dim = int(demonstrations.observations.shape[-1])
    reward = MLPReward(obs_dim + 1, tuple(config["hidden"]))  # + the absorbing indicator feature
    problem = BilevelProblem(reward, inner, objective)
    episodes, eval_seed = config["eval_episodes"], COMMON["eval_seed"] + 1000 * seed

    def metrics() -> dict[str, float]:
        value = evaluate_policy_return(inner.model, ENV_ID, episodes, seed=eval_seed)[0]
        return {"true_return": value, "normalized_return": normalized_return(value, random, expert_return),
                "env_steps": inner.env_steps}

    start = time.perf_counter()
    solver = BilevelSolver(problem, MaxEntHypergradient(), OuterConfig(
        steps=config["outer_steps"], optimizer="adam", lr=COMMON["lr"], l2=COMMON["l2"], grad_tol=0.0, loss_rtol=0.0),
        metrics=metrics,
        progress=progress)
    result = solver.run(resume=False)
    wall = time.perf_counter() - start
    inner.close()

    reward.requires_grad_(False)
    transfer = _inner({**config, "env_steps_per_outer_step": config["transfer_steps"]}, seed + 100)
    transfer.solve(reward)
    transfer_return = evaluate_policy_return(transfer.model, ENV_ID, episodes, seed=eval_seed)[0]
    transfer.close()
    history = [{k: row[k] for k in ("step", "true_return", "normalized_return", "env_steps", "loss")}
               for row in result.history]
    reached = [row["env_steps"] for row in history if row["normalized_return"] >= 0.9]
    return {"seed": seed, "history": history, "final_true_return": history[-1]["true_return"],
            "final_normalized_return": history[-1]["normalized_return"], "env_steps": history[-1]["env_steps"],
            "env_steps_to_0.9": reached[0] if reached else None, "wall_s": wall,
            "transfer_true_return": transfer_return,
            "transfer_normalized_return": normalized_return(transfer_return, random, expert_return),
            "transfer_env_steps": config["transfer_steps"]}


def run(scale: str, results_dir: Path, seed: int = 0, progress: bool = True) -> Path:
    """Run ML-IRL on CartPole-v1 at ``scale``; writes and returns ``results_dir/ml_irl_cartpole.json``."""
    config = scale_config(SCALES, scale, NAME)
    torch.set_num_threads(1)
    expert = train_expert(ENV_ID)
    demonstrations = rollout_demonstrations(expert, ENV_ID, config["num_demonstrations"],
                                            seed=COMMON["demonstration_seed"])
    expert_return = evaluate_policy_return(expert, ENV_ID, config["eval_episodes"], seed=COMMON["eval_seed"])[0]
    random = random_policy_return(ENV_ID, 100, seed=COMMON["eval_seed"])[0]
    runs = []
    for index in range(config["seeds"]):
        record = run_seed(config, seed + index, expert, demonstrations, random, expert_return, progress)
        runs.append(record)
        if progress:
            print(f"seed {seed + index}: final normalized {record['final_normalized_return']:.3f} after "
                  f"{record['env_steps']} env steps (0.9 at {record['env_steps_to_0.9']}); transfer "
                  f"{record['transfer_normalized_return']:.3f}; {record['wall_s']:.0f} s", flush=True)
    finals = np.array([r["final_normalized_return"] for r in runs])
    transfers = np.array([r["transfer_normalized_return"] for r in runs])
    record = {
        "name": NAME, "scale": scale, "config": {**config, **COMMON}, "provenance": provenance(seed),
        "expert_return": expert_return, "random_return": random, "runs": runs,
        "final_normalized_return": {"mean": float(finals.mean()), "min": float(finals.min()),
                                    "per_seed": finals.tolist()},
        "transfer_normalized_return": {"mean": float(transfers.mean()), "min": float(transfers.min()),
                                       "per_seed": transfers.tolist()},
    }
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{NAME}.json"
    write_json(path, record)
    return path


if __name__ == "__main__":  # pragma: no cover
    import sys

    print(run(sys.argv[1] if len(sys.argv) > 1 else "quick", Path(sys.argv[2] if len(sys.argv) > 2 else "results")))
