"""Loss sweep on CartPole-v1: every pairwise catalog loss trains a policy directly from segment preferences
(contrastive preference learning), against reward-model-then-PPO from the same preferences.

Per seed: behaviour data from a cached PPO expert with ε-random actions (ε graded), segments of ``L`` steps that may
run into the absorbing state after a termination, oracle labels (higher true return wins, ties dropped), train /
held-out pairs from disjoint segment pools. Each loss trains a fresh SB3 ``ActorCriticPolicy`` (the frozen reference
is its initialization); the baseline trains a Bradley-Terry reward model with a learned absorbing reward and PPO
from scratch on ``r − r_abs``; a control trains the same PPO (budget, seed) on the true reward, to tell PPO's own
spread at this budget from the reward model's error. Every policy is scored on the true reward over seeded episodes,
stochastic (sampled actions; the headline) and deterministic (argmax), as the expert-normalized return
``(R − R_random) / (R_expert − R_random)``, with the random policy's and the deterministic expert's returns
measured in the same run on the same episode seeds. Held-out pairs give the catalog's reward accuracy and mean
margin (for the baseline: of the reward model's segment returns under Bradley-Terry). Summaries: IQM over seeds
with a percentile-bootstrap 95% CI (5 seeds at quick scale: the IQM is the mean of the middle three, and the CI
is wide; read it as a spread).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from classic_rl.contrastive_preference import (
    CPLConfig,
    evaluate_pairs,
    evaluate_reward_model,
    make_policy,
    pairwise_losses,
    train_cpl,
    train_reward_model,
)
from classic_rl.segment_preferences import (
    behaviour_segments,
    discrete_task,
    episode_returns,
    expert_policy,
    label_pairs,
    policy_actor,
    train_ppo,
)
from irl_bilevel.config import Config, NonEmpty, PositiveFloat, PositiveInt, Probability, Range, experiment_settings
from irl_bilevel.precision import default_dtype
from irl_bilevel.runs import provenance, write_json
from irl_bilevel.statistics import iqm_with_ci  # re-exported: loss_sweep.iqm_with_ci stays valid
from irl_bilevel.validation import ValidationError

NAME = "loss_sweep"


@dataclass(frozen=True)
class LossSweepConfig(Config):
    """Settings of the CartPole loss sweep (see the module docstring for the protocol)."""

    env_id: str
    """gymnasium task with discrete actions"""
    segment_length: PositiveInt
    """steps per preference segment (L)"""
    held_out_fraction: Annotated[float, Range(low=0, high=1, low_open=True, high_open=True)]
    """share of segments (and pairs) kept for held-out reward accuracy"""
    epsilons: Annotated[tuple[Probability, ...], NonEmpty()]
    """ε of the ε-random behaviour policies around the PPO expert"""
    learning_rate: PositiveFloat
    """Adam step size of CPL training and of the baseline's reward model"""
    batch_size: PositiveInt
    """preference pairs per gradient step"""
    reward_model_epochs: PositiveInt
    """epochs of the baseline's Bradley-Terry reward model"""
    losses: Literal["all"] | tuple[str, ...]
    """pairwise catalog losses to train, or ``"all"`` for every one"""
    seeds: PositiveInt
    """number of seeds, run as seed, seed + 1, ..."""
    expert_steps: PositiveInt
    """PPO env steps of the (cached) expert"""
    episodes_per_policy: PositiveInt
    """behaviour episodes per ε"""
    segments_per_policy: PositiveInt
    """segments cut from each ε's episodes"""
    pairs: PositiveInt
    """labelled pairs per seed (train + held out)"""
    epochs: PositiveInt
    """CPL epochs over the training pairs"""
    eval_episodes: PositiveInt
    """true-reward evaluation episodes per policy"""
    baseline_steps: PositiveInt
    """PPO env steps of the reward-model baseline and of the true-reward control"""


_COMMON: dict[str, Any] = {"env_id": "CartPole-v1", "segment_length": 25, "held_out_fraction": 0.2,
                           "epsilons": [0.0, 0.25, 0.5, 0.75, 1.0], "learning_rate": 1e-3, "batch_size": 64,
                           "reward_model_epochs": 10}
SCALES: dict[str, dict[str, Any]] = {
    "tiny": {**_COMMON, "losses": ["sigmoid", "ipo", "simpo"], "seeds": 1, "expert_steps": 2_048,
             "episodes_per_policy": 2, "segments_per_policy": 30, "pairs": 60, "epochs": 1, "eval_episodes": 2,
             "baseline_steps": 1_024, "reward_model_epochs": 1, "epsilons": [0.0, 1.0]},
    "quick": {**_COMMON, "losses": "all", "seeds": 5, "expert_steps": 25_000, "episodes_per_policy": 10,
              "segments_per_policy": 300, "pairs": 1_250, "epochs": 10, "eval_episodes": 20,
              "baseline_steps": 50_000},
    "full": {**_COMMON, "losses": "all", "seeds": 10, "expert_steps": 25_000, "episodes_per_policy": 20,
             "segments_per_policy": 1_000, "pairs": 4_000, "epochs": 10, "eval_episodes": 30,
             "baseline_steps": 100_000},
}
CONFIG = LossSweepConfig  # the typed settings; every SCALES entry validates into it (tests check)
EVAL_SEED = 10_000  # evaluation episodes use env seeds EVAL_SEED + i, shared by every policy


def _normalized(value: float, random: float, expert: float) -> float:
    span = expert - random
    return (value - random) / span if abs(span) > 1e-9 else float("nan")


def policy_returns(env_id: str, policy, episodes: int) -> dict[str, float]:
    """Mean true return of ``policy``'s sampled and argmax actions on the evaluation episodes. The sampled
    actions draw from torch's global generator (SB3's ``predict``), reseeded here with ``EVAL_SEED`` (and restored
    afterwards): otherwise the stochastic return depends on whatever drew from it earlier in the process."""
    returns = {}
    for mode in ("stochastic", "deterministic"):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(EVAL_SEED)
            act = policy_actor(policy, mode == "deterministic")
            returns[mode] = float(episode_returns(env_id, act, episodes, EVAL_SEED).mean())
    return returns


def _scores(returns: dict[str, float], reference: dict[str, float]) -> dict[str, float]:
    out = {f"return_{mode}": value for mode, value in returns.items()}
    out.update({f"normalized_return_{mode}": _normalized(value, reference["random"], reference["expert"])
                for mode, value in returns.items()})
    return out


def _data(config: LossSweepConfig, expert, seed: int):
    """Train and held-out labelled pairs of one seed, from disjoint segment pools."""
    segments = behaviour_segments(config.env_id, expert, list(config.epsilons), config.episodes_per_policy,
                                  config.segments_per_policy, config.segment_length, seed)
    rng = np.random.default_rng(seed + 1)
    order = rng.permutation(len(segments))
    cut = round(len(segments) * config.held_out_fraction)
    held_out_pairs = max(1, round(config.pairs * config.held_out_fraction))
    train = label_pairs(segments.subset(order[cut:]), config.pairs - held_out_pairs, rng)
    held_out = label_pairs(segments.subset(order[:cut]), held_out_pairs, rng)
    stats = {"segments": len(segments), "terminated_fraction": float(segments.terminated.double().mean()),
             "mean_segment_return": float(segments.returns.mean()), "train_pairs": len(train),
             "held_out_pairs": len(held_out), "ties_dropped": train.ties_dropped + held_out.ties_dropped}
    return train, held_out, stats


def _baseline(config: LossSweepConfig, train, held_out, cpl: CPLConfig, seed: int,
              reference: dict[str, float]) -> dict[str, Any]:
    started = time.perf_counter()
    obs_dim, num_actions = discrete_task(config.env_id)
    model = train_reward_model(train.preferences, obs_dim, num_actions,
                               CPLConfig(config.reward_model_epochs, cpl.batch_size, cpl.learning_rate), seed)
    agent = train_ppo(config.env_id, config.baseline_steps, seed, reward_model=model.shifted())
    returns = policy_returns(config.env_id, agent.policy, config.eval_episodes)
    chosen = train.preferences.first
    with torch.no_grad():
        shifted = model.step_rewards(chosen.observations[chosen.mask].float(), chosen.actions[chosen.mask])
        shifted = shifted - model.absorbing
    return {"method": "reward_model_ppo", "loss": "bradley_terry", "seed": seed, **_scores(returns, reference),
            "held_out": evaluate_reward_model(model, held_out.preferences),
            "absorbing_reward": float(model.absorbing.detach()),
            "mean_shifted_step_reward_on_chosen": float(shifted.mean()), "seconds": time.perf_counter() - started}


def _true_reward_control(config: LossSweepConfig, seed: int, reference: dict[str, float]) -> dict[str, Any]:
    """PPO on the true reward with the baseline's budget and seed: separates PPO's own seed-to-seed spread at
    this budget from the reward model's error."""
    started = time.perf_counter()
    agent = train_ppo(config.env_id, config.baseline_steps, seed)
    returns = policy_returns(config.env_id, agent.policy, config.eval_episodes)
    nan = float("nan")
    return {"method": "ppo_true_reward", "loss": None, "seed": seed, **_scores(returns, reference),
            "held_out": {"reward_accuracy": nan, "mean_margin": nan}, "seconds": time.perf_counter() - started}


def run(scale: str, results_dir: Path, seed: int = 0, progress: bool = True, cache: Path | str | None = None,
        config: LossSweepConfig | None = None) -> Path:
    """Run the loss sweep at ``scale``; writes and returns ``results_dir/loss_sweep.json``.

    ``cache``: folder for the PPO expert (default ``$IRL_BILEVEL_CACHE`` or ``~/.cache/irl_bilevel``).
    """
    settings = experiment_settings(LossSweepConfig, SCALES, scale, NAME, config)
    losses = pairwise_losses() if settings.losses == "all" else list(settings.losses)
    unknown = sorted(set(losses) - set(pairwise_losses()))
    if unknown:
        raise ValidationError(f"losses: {unknown} are not pairwise segment losses; expected some of "
                              f"{pairwise_losses()}")
    results_dir = Path(results_dir)
    record: dict[str, Any] = {"name": NAME, "scale": scale, "config": settings.to_dict(), "losses": losses,
                              "provenance": provenance(seed)}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    started = time.perf_counter()
    try:
        with default_dtype(torch.float32):
            env_id, episodes = settings.env_id, settings.eval_episodes
            expert = expert_policy(env_id, settings.expert_steps, seed=seed, cache=cache)
            num_actions = discrete_task(env_id)[1]
            rng = np.random.default_rng(0)
            reference = {
                "random": float(episode_returns(env_id, lambda o: rng.integers(num_actions, size=len(o)), episodes,
                                                EVAL_SEED).mean()),
                "expert": float(episode_returns(env_id, policy_actor(expert, True), episodes, EVAL_SEED).mean()),
            }
            record["reference_returns"] = reference
            record["times"] = {"expert_and_reference": time.perf_counter() - started}
            cpl = CPLConfig(settings.epochs, settings.batch_size, settings.learning_rate)
            runs, data = [], {}
            jobs = [(s, loss) for s in range(seed, seed + settings.seeds) for loss in [*losses, None, "control"]]
            current, train, held_out = None, None, None
            for run_seed, loss in tqdm(jobs, desc=NAME, disable=not progress):
                if run_seed != current:
                    current = run_seed
                    train, held_out, data[run_seed] = _data(settings, expert, run_seed)
                assert train is not None and held_out is not None
                if loss is None:
                    runs.append(_baseline(settings, train, held_out, cpl, run_seed, reference))
                    continue
                if loss == "control":
                    runs.append(_true_reward_control(settings, run_seed, reference))
                    continue
                begun = time.perf_counter()
                policy = make_policy(env_id, run_seed)
                trained = train_cpl(policy, train.preferences, loss, cpl, seed=run_seed)
                runs.append({"method": "cpl", "loss": loss, "seed": run_seed,
                             **_scores(policy_returns(env_id, policy, episodes), reference),
                             "held_out": evaluate_pairs(policy, trained["reference"], held_out.preferences, loss,
                                                        cpl),
                             "train_loss": trained["train_loss"], "seconds": time.perf_counter() - begun})
    finally:
        torch.set_num_threads(threads)
    record["data"] = {str(k): v for k, v in data.items()}
    record["runs"] = runs
    record["summary"] = _summary(runs)
    record["budgets"] = {"expert_env_steps": settings.expert_steps,
                         "baseline_ppo_env_steps": settings.baseline_steps,
                         "cpl_gradient_steps": settings.epochs * -(-data[seed]["train_pairs"] // cpl.batch_size),
                         "cpl_env_steps": 0, "behaviour_episodes_per_seed": settings.episodes_per_policy
                         * len(settings.epsilons)}
    record["times"]["total"] = time.perf_counter() - started
    record["times"]["cpl_mean_run"] = float(np.mean([r["seconds"] for r in runs if r["method"] == "cpl"]))
    for method in ("reward_model_ppo", "ppo_true_reward"):
        record["times"][f"{method}_mean_run"] = float(np.mean([r["seconds"] for r in runs if r["method"] == method]))
    path = results_dir / f"{NAME}.json"
    write_json(path, record)
    return path


def _summary(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per method (loss name, or ``reward_model_ppo``): IQM and bootstrap CI of each final metric over seeds."""
    summary: dict[str, dict[str, Any]] = {}
    for key in dict.fromkeys(r["loss"] if r["method"] == "cpl" else r["method"] for r in runs):
        group = [r for r in runs if (r["loss"] if r["method"] == "cpl" else r["method"]) == key]
        summary[key] = {metric: iqm_with_ci([r[metric] for r in group])
                        for metric in ("normalized_return_stochastic", "normalized_return_deterministic")}
        for metric in ("reward_accuracy", "mean_margin"):
            summary[key][metric] = iqm_with_ci([r["held_out"][metric] for r in group])
    return summary
