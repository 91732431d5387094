"""`irlb tabular-irl`: MaxEnt / LP IRL on a named tabular testbed or on a user's `.npz` MDP and demonstrations.

Writes into the output folder: ``config.json`` (the resolved config with seed, versions and git commit),
``metrics.jsonl`` (one row per outer step), ``checkpoint.pt``, ``reward.npy`` (``[S]`` or ``[S, A]``) and
``summary.json``. Re-running on the same folder resumes from the checkpoint.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from irl_bilevel.config import dataclass_from_sources
from irl_bilevel.hypergradients import make_hypergradient
from irl_bilevel.runs import provenance, read_run_config, write_atomic, write_json
from irl_bilevel.solver import OuterConfig
from irl_bilevel.validation import ValidationError


@dataclass
class TabularIRLConfig:
    """Everything a tabular IRL run depends on; a JSON file and ``--set key=value`` overrides fill it."""

    testbed: str = "gridworld"
    testbed_options: dict[str, Any] = field(default_factory=dict)
    mdp_file: str | None = None
    demonstrations_file: str | None = None
    algorithm: str = "maxent"  # maxent | lp
    lp_l1_penalty: float = 1.05  # λ of Ng & Russell (2000); on their 5×5 gridworld λ ∈ [3.25, 5.75] is exact
    hypergradient: str = "maxent"
    hypergradient_options: dict[str, Any] = field(default_factory=dict)
    reward_model: str = "linear"  # linear | mlp | tabular
    state_action_reward: bool = False
    hidden_sizes: list[int] = field(default_factory=lambda: [32, 32])
    num_demonstrations: int | None = None  # None: exact expert occupancy (testbeds only)
    demonstration_length: int = 30
    optimizer: str = "lbfgs"
    lr: float = 1.0
    steps: int = 100
    occupancy_target: float | None = 1e-4
    checkpoint_every: int = 10
    seed: int = 0

    @classmethod
    def from_sources(cls, config_file: str | None, overrides: list[str]) -> TabularIRLConfig:
        config = dataclass_from_sources(cls, config_file, overrides)
        if config.algorithm not in ("maxent", "lp"):
            raise ValidationError(f"algorithm: expected 'maxent' or 'lp', got {config.algorithm!r}")
        return config


def run_tabular_irl(config: TabularIRLConfig, output_dir: Path, progress: bool = True) -> dict[str, Any]:
    from classic_rl.lp_irl import lp_irl
    from classic_rl.maxent_irl import make_reward_model, maxent_irl
    from classic_rl.npz_io import load_demonstrations_npz, load_mdp_npz
    from classic_rl.testbeds import make_testbed, optimal_policy
    from irl_bilevel.metrics import epic_distance, normalized_return
    from irl_bilevel.sampling import sample_trajectories
    from irl_bilevel.tabular import soft_value_iteration, state_action_occupancy

    torch.manual_seed(config.seed)
    previous_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        mdp = load_mdp_npz(config.mdp_file) if config.mdp_file else make_testbed(config.testbed,
                                                                                 **config.testbed_options)
        _start_or_resume(output_dir, config)
        expert_log_policy = None
        if mdp.true_reward is not None:
            expert_log_policy = soft_value_iteration(mdp, mdp.true_reward).log_policy
        if config.demonstrations_file:
            expert: Any = load_demonstrations_npz(config.demonstrations_file, mdp.num_states, mdp.num_actions)
        elif expert_log_policy is None:
            raise ValidationError("demonstrations_file: the MDP has no true_reward, so demonstrations are required")
        elif config.num_demonstrations is None:
            expert = state_action_occupancy(mdp, expert_log_policy)
        else:
            generator = torch.Generator().manual_seed(config.seed)
            length = mdp.horizon or config.demonstration_length
            expert = sample_trajectories(mdp, expert_log_policy, config.num_demonstrations, length, generator)

        if config.algorithm == "lp":
            if mdp.true_reward is None:
                raise ValidationError("algorithm: LP-IRL needs the expert's optimal policy, i.e. a true_reward")
            reward = lp_irl(mdp, optimal_policy(mdp), l1_penalty=config.lp_l1_penalty)
            metrics: dict[str, Any] = {"algorithm": "lp"}
            metrics["epic"] = epic_distance(reward, mdp.true_reward, mdp.num_states, mdp.num_actions, mdp.discount)
            if expert_log_policy is not None:
                metrics["normalized_return"] = normalized_return(mdp, reward, expert_log_policy)
            write_json(output_dir / "summary.json", {"final_metrics": metrics})
        else:
            model = make_reward_model(config.reward_model, mdp, config.state_action_reward,
                                      tuple(config.hidden_sizes))
            outer = OuterConfig(config.steps, config.optimizer, config.lr, checkpoint_every=config.checkpoint_every)
            method = make_hypergradient(config.hypergradient, **config.hypergradient_options)
            outcome = maxent_irl(mdp, expert, model, method, outer, output_dir, expert_log_policy,
                                 config.occupancy_target, progress=progress)
            reward, metrics = outcome.learned_reward, outcome.metrics
            summary = json.loads((output_dir / "summary.json").read_text())
            summary["final_metrics"] = metrics
            write_json(output_dir / "summary.json", summary)
        buffer = _npy_bytes(reward.detach().cpu().numpy())
        write_atomic(output_dir / "reward.npy", buffer)
        return metrics
    finally:
        torch.set_default_dtype(previous_dtype)


def _start_or_resume(output_dir: Path, config: TabularIRLConfig) -> None:
    """Write the run's config and provenance, or check that an existing run folder holds the same config."""
    config_path = output_dir / "config.json"
    if config_path.exists():
        recorded = read_run_config(config_path)
        if recorded != json.loads(json.dumps(asdict(config))):
            raise ValidationError(
                f"out: {output_dir} holds a run with a different config; resume it with the same settings "
                f"or choose a new folder"
            )
        return
    output_dir.mkdir(parents=True, exist_ok=True)
    write_json(config_path, {"config": asdict(config), **provenance(config.seed)})


def _npy_bytes(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()
