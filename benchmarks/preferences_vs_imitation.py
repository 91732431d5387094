"""Side by side: our RL from preferences (``classic_rl.preference_rl``) against imitation 1.0.1's
``PreferenceComparisons``, with the same noise-free oracle, query budgets, env-step budget, fragment length and seeds.

One invocation runs every cell (env × method × teacher × query budget × seed), each in a fresh subprocess with one
torch thread, one after the other, and writes one JSON file (``benchmarks/results/preferences_vs_imitation.json``).
Finished cells are kept under ``runs/preferences_vs_imitation/<scale>/`` (``--work``) and skipped on a rerun.

Protocol (see benchmarks/README.md, "RL from preferences"):

* **Oracle.** Noise-free, on the true return of each fragment (undiscounted): ours is B-Pref's ``oracle`` teacher
  (ties answered 0.5), imitation's is ``SyntheticGatherer(temperature=0)`` (``(sign(R1 − R2) + 1) / 2``: the same
  labels). Optionally more B-Pref teachers on our side (``--teachers``), imitation having only its oracle here.
* **Budgets.** ``total_comparisons`` = our ``query_budget``; ``total_timesteps`` = our ``total_env_steps``; the
  same fragment length for both; seeds 0, 1, 2, ...
* **imitation's side: its documented settings** (docs "Learning a reward function using preference comparisons"):
  ``BasicRewardNet`` with a ``RunningNorm`` input layer, ``RandomFragmenter``, ``BasicRewardTrainer`` (cross-entropy,
  3 epochs), ``initial_comparison_frac=0.1``, ``initial_epoch_multiplier=4``, ``transition_oversampling=1``,
  ``exploration_frac=0.05``, hyperbolic query schedule, and on CartPole the docs' PPO (``FeedForward32Policy``,
  RunningNorm features, 8 envs, ``n_steps=2048/8``, batch 64, ent 0.01, lr 2e-3, clip 0.1, GAE 0.95, γ 0.97, 10
  epochs). Deviations, all needed for the same budgets: ``num_iterations`` = the number of whole PPO rollouts in
  the step budget (at most the docs' 60; more iterations would make PPO overshoot the budget, since every
  ``learn`` call rounds up to a rollout); fragment length = ours; on Pendulum-v1 its agent is the same SAC as ours
  (lr 1e-3), because the docs' PPO does not learn Pendulum within these budgets.
* **Episode semantics (CartPole-v1).** imitation refuses variable-horizon episodes by default
  (``allow_variable_horizon=False``), and on CartPole-v1 fragments without a termination all return ``L``.
  Its side therefore runs on CartPole-v1 wrapped by :class:`AbsorbAfterTermination`:
  after a termination the episode continues, until CartPole-v1's 500-step time limit, in an absorbing observation
  (all zeros plus an indicator feature) with reward 0 — the fixed-horizon convention of seals' CartPole, and the
  same absorbing semantics our segments use (``classic_rl.preference_rl``). Its fragments then span terminations.
  Cost on its side: absorbing steps are stepped and count against its ``total_timesteps`` (ours are computed in
  closed form and never stepped).
* **Score.** Expert-normalized true return ``(R − R_random) / (R_expert − R_random)`` of the final policy,
  deterministic actions, episodes reset with seeds ``10000 + i`` (the same for both), ``R_random`` over 100
  uniformly random episodes and ``R_expert`` of the cached SB3 expert (``classic_rl.experts``), both measured in
  this invocation. Ratios ours / imitation of the IQM over seeds per budget.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from irlb.worker_processes import add_scale_flags, run_worker_process, worker_or_driver

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "preferences_vs_imitation.json"
DEFAULT_WORK = ROOT / "runs" / "preferences_vs_imitation"  # git-ignored
METHODS = ("ours", "imitation")
EVAL_SEED = 10_000
EVAL_EPISODES = 10

# Per scale: seeds, envs, and per env the env-step budget, query budgets and fragment length.
SCALES: dict[str, dict[str, Any]] = {
    "smoke": {"seeds": [0], "envs": {
        "CartPole-v1": {"env_steps": 2048, "budgets": [20], "fragment_length": 50},
        "Pendulum-v1": {"env_steps": 400, "budgets": [10], "fragment_length": 50},
    }},
    "quick": {"seeds": [0, 1, 2, 3, 4], "envs": {
        "CartPole-v1": {"env_steps": 30_720, "budgets": [100, 250, 500], "fragment_length": 50},
        "Pendulum-v1": {"env_steps": 4_000, "budgets": [100, 500], "fragment_length": 50},
    }},
    "full": {"seeds": [0, 1, 2, 3, 4], "envs": {
        "CartPole-v1": {"env_steps": 61_440, "budgets": [100, 250, 500], "fragment_length": 50},
        "Pendulum-v1": {"env_steps": 20_000, "budgets": [100, 250, 500], "fragment_length": 50},
    }},
}


# ---------------------------------------------------------------------- imitation's side
def absorbing_wrapper_class():
    import gymnasium as gym

    class AbsorbAfterTermination(gym.Wrapper):
        """After a termination, continue until ``horizon`` steps in an absorbing observation with reward 0.

        Observations get one trailing indicator feature: 0 on real states, 1 on the absorbing one (all other
        features 0). A truncation of the wrapped env ends the episode as usual.
        """

        def __init__(self, env: gym.Env, horizon: int) -> None:
            super().__init__(env)
            space = env.observation_space
            assert isinstance(space, gym.spaces.Box), "the absorbing wrapper extends a Box observation space"
            low = np.append(np.asarray(space.low, dtype=np.float32), 0.0).astype(np.float32)
            high = np.append(np.asarray(space.high, dtype=np.float32), 1.0).astype(np.float32)
            self.observation_space = gym.spaces.Box(low, high, dtype=np.float32)
            self.absorbing_observation = np.zeros(low.shape, dtype=np.float32)
            self.absorbing_observation[-1] = 1.0
            self.horizon = horizon
            self.steps = 0
            self.absorbed = False

        def _real(self, observation: np.ndarray) -> np.ndarray:
            return np.append(np.asarray(observation, dtype=np.float32), 0.0).astype(np.float32)

        def reset(self, **kwargs):
            observation, info = self.env.reset(**kwargs)
            self.steps, self.absorbed = 0, False
            return self._real(observation), info

        def step(self, action):
            self.steps += 1
            if self.absorbed:
                return self.absorbing_observation.copy(), 0.0, False, self.steps >= self.horizon, {}
            observation, reward, terminated, truncated, info = self.env.step(action)
            if terminated:
                self.absorbed = True
            return self._real(observation), float(reward), False, bool(truncated) or self.steps >= self.horizon, info

    return AbsorbAfterTermination


def _terminates(env_id: str) -> bool:
    return env_id == "CartPole-v1"


def _make_eval_env(env_id: str, absorbing: bool):
    import gymnasium as gym

    env = gym.make(env_id)
    if absorbing:
        env = absorbing_wrapper_class()(env, _max_episode_steps(env))
    return env


def _max_episode_steps(env) -> int:
    """The time limit gymnasium's registration gives ``env`` (the absorbing wrapper's horizon)."""
    if env.spec is None or env.spec.max_episode_steps is None:
        raise ValueError(f"{env}: the absorbing wrapper needs a registered time limit (max_episode_steps)")
    return int(env.spec.max_episode_steps)


def evaluate(model, env_id: str, absorbing: bool) -> float:
    """Mean true return over ``EVAL_EPISODES`` deterministic episodes reset with ``EVAL_SEED + i`` (absorbing steps
    pay 0, so the wrapped env's return equals the plain env's)."""
    env = _make_eval_env(env_id, absorbing)
    returns = []
    for i in range(EVAL_EPISODES):
        observation, _ = env.reset(seed=EVAL_SEED + i)
        total, done = 0.0, False
        while not done:
            action, _ = model.predict(observation, deterministic=True)
            observation, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return float(np.mean(returns))


def worker_imitation(cell: dict[str, Any], references: dict[str, float]) -> dict[str, Any]:
    import torch
    from imitation.algorithms import preference_comparisons
    from imitation.policies.base import FeedForward32Policy, NormalizeFeaturesExtractor
    from imitation.rewards.reward_nets import BasicRewardNet
    from imitation.util.networks import RunningNorm
    from imitation.util.util import make_vec_env
    from stable_baselines3 import PPO, SAC

    seed, env_id = cell["seed"], cell["env_id"]
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    absorbing = _terminates(env_id)
    wrapper = absorbing_wrapper_class()
    post = [lambda env, _: wrapper(env, _max_episode_steps(env))] if absorbing else None
    ppo = env_id != "Pendulum-v1"
    venv = make_vec_env(env_id, rng=rng, n_envs=8 if ppo else 1, post_wrappers=post)
    reward_net = BasicRewardNet(venv.observation_space, venv.action_space, normalize_input_layer=RunningNorm)
    fragmenter = preference_comparisons.RandomFragmenter(warning_threshold=0, rng=rng)
    gatherer = preference_comparisons.SyntheticGatherer(temperature=0, rng=rng)  # noise-free oracle
    preference_model = preference_comparisons.PreferenceModel(reward_net)
    reward_trainer = preference_comparisons.BasicRewardTrainer(
        preference_model=preference_model, loss=preference_comparisons.CrossEntropyRewardLoss(), epochs=3, rng=rng)
    agent: PPO | SAC
    if ppo:
        agent = PPO(policy=FeedForward32Policy,
                    policy_kwargs={"features_extractor_class": NormalizeFeaturesExtractor,
                                   "features_extractor_kwargs": {"normalize_class": RunningNorm}},
                    env=venv, seed=seed, n_steps=2048 // venv.num_envs, batch_size=64, ent_coef=0.01,
                    learning_rate=2e-3, clip_range=0.1, gae_lambda=0.95, gamma=0.97, n_epochs=10, device="cpu")
        rollout = 2048
    else:
        agent = SAC("MlpPolicy", venv, seed=seed, learning_rate=1e-3, device="cpu")
        rollout = 200  # one Pendulum episode
    trajectory_generator = preference_comparisons.AgentTrainer(
        algorithm=agent, reward_fn=reward_net, venv=venv, exploration_frac=0.05, rng=rng)
    iterations = max(1, min(60, cell["env_steps"] // rollout))
    comparisons = preference_comparisons.PreferenceComparisons(
        trajectory_generator, reward_net, num_iterations=iterations, fragmenter=fragmenter,
        preference_gatherer=gatherer, reward_trainer=reward_trainer, fragment_length=cell["fragment_length"],
        transition_oversampling=1, initial_comparison_frac=0.1, allow_variable_horizon=False,
        initial_epoch_multiplier=4, query_schedule="hyperbolic")
    started = time.perf_counter()
    comparisons.train(total_timesteps=cell["env_steps"], total_comparisons=cell["budget"])
    wall = time.perf_counter() - started
    value = evaluate(agent, env_id, absorbing)
    queries = len(comparisons.dataset) if hasattr(comparisons, "dataset") else None
    venv.close()
    return {"true_return": value, "normalized_return": _normalized(value, references), "wall_s": wall,
            "env_steps": int(agent.num_timesteps), "queries_used": queries, "num_iterations": iterations}


# ---------------------------------------------------------------------- our side
def worker_ours(cell: dict[str, Any], references: dict[str, float], run_dir: Path) -> dict[str, Any]:
    from classic_rl.preference_rl import PreferenceRLConfig, run_preference_rl

    config = PreferenceRLConfig(env_id=cell["env_id"], total_env_steps=cell["env_steps"],
                                env_steps_per_outer_step=512 if cell["env_id"] == "CartPole-v1" else 200,
                                segment_length=cell["fragment_length"], query_budget=cell["budget"],
                                teacher=cell["teacher"], seed=cell["seed"], eval_episodes=EVAL_EPISODES,
                                eval_seed=EVAL_SEED, eval_every=10 ** 9)
    started = time.perf_counter()
    summary = run_preference_rl(config, run_dir, progress=False,
                                references=(references["random"], references["expert"]))
    return {"true_return": summary["final_true_return"], "normalized_return": summary["final_normalized_return"],
            "wall_s": time.perf_counter() - started, "env_steps": summary["env_steps"],
            "queries_used": summary["queries_used"], "labelled_pairs": summary["labelled_pairs"],
            "ties": summary["ties"], "label_agreement": summary["label_agreement"]}


def worker_references(env_id: str) -> dict[str, float]:
    from classic_rl.preference_rl import reference_returns

    random, expert = reference_returns(env_id, EVAL_EPISODES, EVAL_SEED)
    return {"random": random, "expert": expert}


def _normalized(value: float, references: dict[str, float]) -> float:
    return (value - references["random"]) / (references["expert"] - references["random"])


def run_worker(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(1)
    cell = json.loads(args.cell)
    if args.worker == "references":
        result: dict[str, Any] = worker_references(cell["env_id"])
    else:
        references = json.loads(args.references)
        if args.worker == "ours":
            result = worker_ours(cell, references, Path(args.result.removesuffix(".json.partial") + ".run"))
        else:
            result = worker_imitation(cell, references)
    Path(args.result).write_text(json.dumps(result))


# ---------------------------------------------------------------------- the driver
def _machine() -> dict[str, Any]:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "load_average": list(os.getloadavg())}


def _spawn(role: str, cell: dict[str, Any], result_path: Path, references: dict[str, float] | None) -> dict:
    if result_path.exists():
        return json.loads(result_path.read_text())
    result_path.parent.mkdir(parents=True, exist_ok=True)
    partial = result_path.with_name(result_path.name + ".partial")
    log = result_path.with_name(result_path.name.removesuffix(".json") + ".log")
    with log.open("w") as handle:  # imitation logs every iteration to stdout: keep it out of the table
        returncode = run_worker_process(__file__, role, {"cell": json.dumps(cell), "result": str(partial),
                                                         "references": json.dumps(references or {})}, stdout=handle)
    if returncode != 0:
        raise SystemExit(f"worker {role} on {cell} failed with exit code {returncode}; see {log}")
    record = {**json.loads(partial.read_text()), "load_average_after": os.getloadavg()[0]}
    result_path.write_text(json.dumps(record))
    partial.unlink()
    return record


def cells_of(scale: str, teachers: list[str], seeds: list[int] | None, envs: list[str] | None,
             budgets: list[int] | None = None, methods: list[str] | None = None) -> list[dict]:
    settings = SCALES[scale]
    cells = []
    for env_id, env in settings["envs"].items():
        if envs and env_id not in envs:
            continue
        for budget in budgets or env["budgets"]:
            for seed in seeds if seeds is not None else settings["seeds"]:
                common = {"env_id": env_id, "env_steps": env["env_steps"], "fragment_length": env["fragment_length"],
                          "budget": budget, "seed": seed}
                if "ours" in (methods or METHODS):
                    cells += [{**common, "method": "ours", "teacher": teacher} for teacher in teachers]
                if "imitation" in (methods or METHODS):
                    cells.append({**common, "method": "imitation", "teacher": "oracle"})
    return cells


def _cell_name(cell: dict[str, Any]) -> str:
    return (f"{cell['env_id']}-{cell['method']}-{cell['teacher']}-steps{cell['env_steps']}-L{cell['fragment_length']}"
            f"-q{cell['budget']}-s{cell['seed']}")


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """IQM + 95% bootstrap CI over seeds per (env, method, teacher, budget); ratios ours/imitation (oracle)."""
    from irl_bilevel.statistics import iqm_with_ci

    groups: dict[tuple, list[float]] = {}
    for r in records:
        groups.setdefault((r["env_id"], r["method"], r["teacher"], r["budget"]), []).append(r["normalized_return"])
    summary: dict[str, Any] = {}
    for (env_id, method, teacher, budget), values in sorted(groups.items()):
        entry = {**iqm_with_ci(values), "values": values}
        summary.setdefault(env_id, {}).setdefault(f"{method}/{teacher}", {})[str(budget)] = entry
    ratios: dict[str, Any] = {}
    goals: dict[str, Any] = {}
    for env_id, methods in summary.items():
        ours, theirs = methods.get("ours/oracle", {}), methods.get("imitation/oracle", {})
        ratios[env_id] = {
            budget: {"ours_iqm": ours[budget]["iqm"], "imitation_iqm": theirs[budget]["iqm"],
                     "ratio": ours[budget]["iqm"] / theirs[budget]["iqm"] if theirs[budget]["iqm"] > 0 else None,
                     "difference": ours[budget]["iqm"] - theirs[budget]["iqm"]}
            for budget in ours if budget in theirs}
        within = [entry["iqm"] for budget, entry in ours.items() if int(budget) <= 500]
        goals[env_id] = {"ours_reaches_0.9_with_<=500_queries": bool(within) and max(within) >= 0.9,
                         "ours_>=_imitation_at_every_budget": bool(ratios[env_id]) and all(
                             r["difference"] >= 0 for r in ratios[env_id].values())}
    return {"summary": summary, "ratios": ratios, "goals": goals}


def run_driver(args: argparse.Namespace) -> None:
    from irl_bilevel.runs import git_state, package_versions

    scale = args.scale
    cells = cells_of(scale, args.teachers, args.seeds, args.envs, args.budgets, args.methods)
    work = Path(args.work) / scale
    started = time.perf_counter()
    references = {}
    for env_id in sorted({c["env_id"] for c in cells}):
        references[env_id] = _spawn("references", {"env_id": env_id}, work / f"references-{env_id}.json", None)
    records = []
    for number, cell in enumerate(cells, 1):
        name = _cell_name(cell)
        print(f"[{number}/{len(cells)}] {name}", flush=True)
        result = _spawn(cell["method"], cell, work / f"{name}.json", references[cell["env_id"]])
        records.append({**cell, **result})
        print(f"    normalized return {result['normalized_return']:.3f}  ({result['wall_s']:.0f} s)", flush=True)
    output = {
        "benchmark": "preferences_vs_imitation", "scale": scale,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": _machine(), "versions": package_versions(), "git": git_state(ROOT),
        "seeds": sorted({c["seed"] for c in cells}), "settings": SCALES[scale], "teachers": args.teachers,
        "eval": {"episodes": EVAL_EPISODES, "seed": EVAL_SEED, "deterministic": True},
        "references": references, "cells": records, **summarize(records),
        "wall_s_this_invocation": time.perf_counter() - started,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(output, indent=2))
    for env_id, rows in output["ratios"].items():
        for budget, row in rows.items():
            ratio = "—" if row["ratio"] is None else f"{row['ratio']:.2f}"
            print(f"{env_id:12s} q={budget:>4s}  ours {row['ours_iqm']:.3f}  imitation {row['imitation_iqm']:.3f}  "
                  f"ratio {ratio}")
    print(json.dumps(output["goals"]))
    print(f"wrote {args.output}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_scale_flags(parser, {"smoke": "1 seed, tiny budgets (about a minute)", "quick": "5 seeds (the default scale)",
                             "full": "5 seeds, larger budgets"})
    parser.add_argument("--teachers", nargs="+", default=["oracle"],
                        help="B-Pref teachers for our side (oracle, stochastic, mistake, skip, equal, myopic)")
    parser.add_argument("--seeds", type=int, nargs="+", help="override the scale's seeds")
    parser.add_argument("--envs", nargs="+", help="only these envs (CartPole-v1, Pendulum-v1)")
    parser.add_argument("--budgets", type=int, nargs="+", help="override the scale's query budgets")
    parser.add_argument("--methods", nargs="+", choices=METHODS, help="only these methods (default both)")
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT))
    parser.add_argument("--work", default=str(DEFAULT_WORK),
                        help="folder of finished cells (skipped on a rerun), their logs and run folders")
    worker_or_driver(parser, argv, ("references", *METHODS), ("cell", "references", "result"), run_worker,
                     run_driver)


if __name__ == "__main__":
    main()
