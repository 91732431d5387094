"""Reward recovery on the classic tabular testbeds: LP-IRL and MaxEnt IRL, from exact occupancies and samples.

(a) The 5×5 gridworld of Ng & Russell (2000): the expert is the soft-optimal (temperature 1) policy of the
true reward (1 in the upper-right corner). LP-IRL (Ng & Russell, section 3) reads the greedy optimal policy;
MaxEnt IRL (a tabular reward, L-BFGS) reads the expert's exact occupancy, then occupancies estimated from
sampled demonstrations of a few sizes, to show how recovery degrades with less data.

(b) ObjectWorld (Levine et al. 2011): MaxEnt IRL with a linear and with an MLP reward on the binary distance
features, from the exact occupancy and from sampled demonstrations.

Every run records the recovered reward table, the metrics of ``irl_bilevel.metrics`` (occupancy L1 of the
learned reward's soft-optimal policy to the *exact* expert occupancy, EPIC distance to the true reward,
normalized return under the true reward), outer steps, hypergradient evaluations and wall time.

Sampled demonstrations: ``irl_bilevel.sampling.empirical_occupancy`` weighs each visit by ``γ^t`` and normalizes (a
self-normalized estimator). Such an estimate violates the flow constraint; runs on samples use the exact gradient of
the likelihood by implicit differentiation (``demo_hypergradient``; ``"maxent"`` selects the MaxEnt identity, which
``MaxEntDemonstrationLoss`` corrects for the violation, so it is the same gradient). On samples the likelihood is
flat along reward directions that only change the reward of unvisited states, and unregularized L-BFGS drives the
weights there to thousands (occupancy still fine, EPIC poor); runs on samples therefore add ``demo_l2 / 2 · ‖θ‖²``
to the loss (``OuterConfig.l2``). Runs on exact occupancies are unregularized.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from tqdm.auto import tqdm

from classic_rl.experiments import quiet_torchopt
from classic_rl.lp_irl import lp_irl
from classic_rl.maxent_irl import make_reward_model, maxent_irl
from classic_rl.testbeds import GridSettings, gridworld, objectworld, optimal_policy
from irl_bilevel.config import (
    Config,
    NonEmpty,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    experiment_settings,
)
from irl_bilevel.hypergradients import (
    HypergradientMethod,
    ImplicitHypergradient,
    MaxEntHypergradient,
)
from irl_bilevel.metrics import epic_distance, normalized_return, occupancy_l1
from irl_bilevel.precision import default_dtype
from irl_bilevel.runs import provenance, write_json
from irl_bilevel.sampling import empirical_occupancy, sample_trajectories
from irl_bilevel.solver import OuterConfig
from irl_bilevel.tabular import TabularMDP, soft_value_iteration, state_action_occupancy
from irl_bilevel.validation import ValidationError

NAME = "reward_recovery"


@dataclass(frozen=True)
class RecoveryTestbed(GridSettings):
    """The settings both testbeds of the experiment have."""

    reward_models: tuple[str, ...]
    """MaxEnt reward models (linear | mlp | tabular)"""
    num_demos: Annotated[tuple[PositiveInt, ...], NonEmpty()]
    """sampled demonstration counts (beside the exact occupancy)"""
    demo_length: PositiveInt
    """steps per demonstration"""
    highlight_demos: PositiveInt
    """demonstration count the figure highlights"""


@dataclass(frozen=True)
class GridworldRecovery(RecoveryTestbed):
    """The 5×5 gridworld of Ng & Russell (2000)."""


@dataclass(frozen=True)
class ObjectworldRecovery(RecoveryTestbed):
    """ObjectWorld of Levine et al. (2011) with binary distance features."""

    num_colours: PositiveInt
    """object colours"""
    num_objects: PositiveInt
    """objects placed at random (seeded)"""
    hidden_sizes: tuple[PositiveInt, ...]
    """MLP reward widths"""


@dataclass(frozen=True)
class RewardRecoveryConfig(Config):
    """Settings of the reward-recovery experiment (LP-IRL and MaxEnt IRL on two testbeds)."""

    gridworld: GridworldRecovery
    """the gridworld testbed"""
    objectworld: ObjectworldRecovery
    """the objectworld testbed"""
    max_steps: PositiveInt
    """L-BFGS outer steps at most"""
    grad_tol: NonNegativeFloat
    """stop when the gradient norm falls below this"""
    demo_repeats: PositiveInt
    """demonstration samples (seeds) per demonstration count"""
    demo_hypergradient: Literal["implicit_direct", "maxent"]
    """hypergradient on sampled demonstrations: implicit differentiation of the likelihood, or the MaxEnt identity"""
    demo_l2: NonNegativeFloat
    """L2 penalty weight of runs on sampled demonstrations"""
    temperature: PositiveFloat
    """soft-optimality temperature of the expert"""


SCALES: dict[str, dict[str, Any]] = {
    "tiny": {
        "gridworld": {"size": 5, "slip": 0.3, "discount": 0.9, "reward_models": ["tabular"],
                      "num_demos": [20], "demo_length": 30, "highlight_demos": 20},
        "objectworld": {"size": 6, "num_colours": 2, "num_objects": 8, "slip": 0.3, "discount": 0.9,
                        "reward_models": ["linear", "mlp"], "hidden_sizes": [16, 16],
                        "num_demos": [50], "demo_length": 20, "highlight_demos": 50},
        "max_steps": 20, "grad_tol": 1e-7, "demo_repeats": 1, "demo_hypergradient": "implicit_direct",
        "demo_l2": 1e-2, "temperature": 1.0,
    },
    "quick": {
        "gridworld": {"size": 5, "slip": 0.3, "discount": 0.9, "reward_models": ["tabular"],
                      "num_demos": [10, 100, 1000], "demo_length": 30, "highlight_demos": 100},
        "objectworld": {"size": 10, "num_colours": 2, "num_objects": 15, "slip": 0.3, "discount": 0.9,
                        "reward_models": ["linear", "mlp"], "hidden_sizes": [32, 32],
                        "num_demos": [30, 100, 300], "demo_length": 30, "highlight_demos": 100},
        "max_steps": 30, "grad_tol": 1e-7, "demo_repeats": 1, "demo_hypergradient": "implicit_direct",
        "demo_l2": 1e-2, "temperature": 1.0,
    },
    "full": {
        "gridworld": {"size": 5, "slip": 0.3, "discount": 0.9, "reward_models": ["tabular"],
                      "num_demos": [10, 30, 100, 300, 1000, 3000], "demo_length": 30, "highlight_demos": 100},
        "objectworld": {"size": 10, "num_colours": 2, "num_objects": 15, "slip": 0.3, "discount": 0.9,
                        "reward_models": ["linear", "mlp"], "hidden_sizes": [32, 32],
                        "num_demos": [10, 30, 100, 300, 1000], "demo_length": 30, "highlight_demos": 100},
        "max_steps": 200, "grad_tol": 1e-7, "demo_repeats": 5, "demo_hypergradient": "implicit_direct",
        "demo_l2": 1e-2, "temperature": 1.0,
    },
}
CONFIG = RewardRecoveryConfig  # the typed settings; every SCALES entry validates into it (tests check)

DEMO_HYPERGRADIENTS = ("implicit_direct", "maxent")


def _demo_method(name: str) -> HypergradientMethod:
    if name == "implicit_direct":
        return ImplicitHypergradient("direct")
    if name == "maxent":
        return MaxEntHypergradient()
    raise ValidationError(f"demo_hypergradient: expected one of {DEMO_HYPERGRADIENTS}, got {name!r}")


def _scores(mdp: TabularMDP, reward: torch.Tensor, expert_log_policy: torch.Tensor,
            expert_occupancy: torch.Tensor, temperature: float) -> dict[str, float]:
    """Metrics of a recovered reward ``[S]`` against the true reward and the exact expert occupancy."""
    assert mdp.true_reward is not None
    reward = reward.detach()
    learner = soft_value_iteration(mdp, reward, temperature).log_policy
    return {
        "occupancy_l1": occupancy_l1(state_action_occupancy(mdp, learner), expert_occupancy),
        "epic": epic_distance(reward, mdp.true_reward, mdp.num_states, mdp.num_actions, mdp.discount),
        "normalized_return": normalized_return(mdp, reward, expert_log_policy, temperature),
    }


class _Testbed:
    """An MDP with its soft-optimal expert (policy and exact occupancy) and its greedy optimal policy."""

    def __init__(self, name: str, mdp: TabularMDP, size: int, temperature: float) -> None:
        assert mdp.true_reward is not None
        self.name, self.mdp, self.size, self.temperature = name, mdp, size, temperature
        self.expert_log_policy = soft_value_iteration(mdp, mdp.true_reward, temperature).log_policy
        self.expert_occupancy = state_action_occupancy(mdp, self.expert_log_policy)

    def describe(self) -> dict[str, Any]:
        assert self.mdp.true_reward is not None
        return {"mdp": self.mdp.name, "grid_size": self.size, "num_states": self.mdp.num_states,
                "num_actions": self.mdp.num_actions, "num_features": int(self.mdp.features.shape[1]),
                "discount": self.mdp.discount, "true_reward": self.mdp.true_reward.tolist(),
                "expert_state_occupancy": self.expert_occupancy.sum(-1).tolist()}

    def scores(self, reward: torch.Tensor) -> dict[str, float]:
        return _scores(self.mdp, reward, self.expert_log_policy, self.expert_occupancy, self.temperature)

    def demonstrations(self, num_demos: int, length: int, seed: int) -> tuple[torch.Tensor, float]:
        """A renormalized empirical occupancy of ``num_demos`` expert trajectories and its L1 error."""
        generator = torch.Generator().manual_seed(seed)
        demos = sample_trajectories(self.mdp, self.expert_log_policy, num_demos, length, generator)
        occupancy = empirical_occupancy(self.mdp, demos)
        return occupancy, occupancy_l1(occupancy, self.expert_occupancy)


def _lp_run(testbed: _Testbed) -> dict[str, Any]:
    started = time.perf_counter()
    policy = optimal_policy(testbed.mdp)
    reward = lp_irl(testbed.mdp, policy, l1_penalty=1.05, r_max=1.0)
    seconds = time.perf_counter() - started
    return {"testbed": testbed.name, "algorithm": "lp_irl", "reward_model": "tabular", "data": "optimal_policy",
            "num_demos": None, "demo_seed": None, "hypergradient": None, "recovered_reward": reward.tolist(),
            "metrics": testbed.scores(reward), "steps": None, "hypergradient_evaluations": None,
            "converged": True, "seconds": seconds}


def _maxent_run(testbed: _Testbed, kind: str, hidden_sizes: tuple[int, ...], target: torch.Tensor,
                method_name: str, config: RewardRecoveryConfig, seed: int, data: dict[str, Any]) -> dict[str, Any]:
    mdp = testbed.mdp
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = make_reward_model(kind, mdp, hidden_sizes=hidden_sizes)
    method = MaxEntHypergradient() if method_name == "maxent" else _demo_method(method_name)
    started = time.perf_counter()
    outcome = maxent_irl(mdp, target, model, method=method,
                         config=OuterConfig(steps=config.max_steps, optimizer="lbfgs",
                                            grad_tol=config.grad_tol, loss_rtol=0.0,
                                            l2=config.demo_l2 if data["data"] == "demonstrations" else 0.0),
                         temperature=testbed.temperature, progress=False)
    seconds = time.perf_counter() - started
    reward = outcome.learned_reward.detach()
    metrics = testbed.scores(reward)
    metrics["occupancy_l1_to_data"] = float(outcome.metrics["occupancy_l1"])
    metrics["loss"] = float(outcome.result.loss)
    return {"testbed": testbed.name, "algorithm": "maxent", "reward_model": kind, "hypergradient": method_name,
            "l2": config.demo_l2 if data["data"] == "demonstrations" else 0.0,
            "recovered_reward": reward.tolist(), "metrics": metrics, "steps": outcome.result.steps,
            "hypergradient_evaluations": int(outcome.metrics.get("hypergradient_evaluations", 0)),
            "converged": bool(outcome.result.converged), "seconds": seconds, **data}


def run(scale: str, results_dir: Path, seed: int = 0, progress: bool = True,
        config: RewardRecoveryConfig | None = None) -> Path:
    """Run the reward-recovery experiment at ``scale``; writes and returns ``results_dir/reward_recovery.json``."""
    settings = experiment_settings(RewardRecoveryConfig, SCALES, scale, NAME, config)
    results_dir = Path(results_dir)
    record: dict[str, Any] = {"name": NAME, "scale": scale, "config": settings.to_dict(),
                              "provenance": provenance(seed)}
    started = time.perf_counter()
    with default_dtype(torch.float64), quiet_torchopt():
        grid_cfg, world_cfg = settings.gridworld, settings.objectworld
        testbeds: list[tuple[_Testbed, RecoveryTestbed]] = [
            (_Testbed("gridworld", gridworld(grid_cfg.size, grid_cfg.slip, grid_cfg.discount),
                      grid_cfg.size, settings.temperature), grid_cfg),
            (_Testbed("objectworld",
                      objectworld(world_cfg.size, world_cfg.num_colours, world_cfg.num_objects,
                                  world_cfg.slip, world_cfg.discount, continuous=False, seed=seed),
                      world_cfg.size, settings.temperature), world_cfg),
        ]
        # Every run as (testbed, reward model, hidden sizes, number of demonstrations or None, demo seed).
        jobs: list[tuple[_Testbed, str, tuple[int, ...], int | None, int | None]] = []
        for testbed, cfg in testbeds:
            hidden = tuple(cfg.hidden_sizes) if isinstance(cfg, ObjectworldRecovery) else (32, 32)
            if testbed.name == "gridworld":
                jobs.append((testbed, "lp_irl", hidden, None, None))
            jobs += [(testbed, kind, hidden, None, None) for kind in cfg.reward_models]
            for num_demos in cfg.num_demos:
                for repeat in range(settings.demo_repeats):
                    demo_seed = 1_000_003 * seed + 10_007 * repeat + num_demos
                    jobs += [(testbed, kind, hidden, num_demos, demo_seed) for kind in cfg.reward_models]
        runs = []
        lengths = {testbed.name: cfg.demo_length for testbed, cfg in testbeds}
        for testbed, kind, hidden, num_demos, demo_seed in tqdm(jobs, desc=NAME, disable=not progress):
            if kind == "lp_irl":
                runs.append(_lp_run(testbed))
            elif num_demos is None:
                runs.append(_maxent_run(testbed, kind, hidden, testbed.expert_occupancy, "maxent", settings, seed,
                                        {"data": "exact_occupancy", "num_demos": None, "demo_seed": None,
                                         "demo_occupancy_l1": 0.0}))
            else:
                assert demo_seed is not None
                runs.append(_demo_run(testbed, kind, hidden, num_demos, lengths[testbed.name], demo_seed, settings,
                                      seed))
        record["testbeds"] = {testbed.name: {**testbed.describe(), "demo_length": cfg.demo_length,
                                             "highlight_demos": cfg.highlight_demos}
                              for testbed, cfg in testbeds}
    record["runs"] = runs
    record["seconds"] = time.perf_counter() - started
    path = results_dir / f"{NAME}.json"
    write_json(path, record)
    return path


def _demo_run(testbed: _Testbed, kind: str, hidden: tuple[int, ...], num_demos: int, length: int,
              demo_seed: int, config: RewardRecoveryConfig, seed: int) -> dict[str, Any]:
    target, data_error = testbed.demonstrations(num_demos, length, demo_seed)
    return _maxent_run(testbed, kind, hidden, target, config.demo_hypergradient, config, seed,
                       {"data": "demonstrations", "num_demos": num_demos, "demo_seed": demo_seed,
                        "demo_length": length, "demo_occupancy_l1": data_error})
