"""`irlb tabular-irl`: MaxEnt / LP IRL on a named tabular testbed or on a user's `.npz` MDP and demonstrations.

Writes into the output folder: ``config.json`` (the resolved config with seed, versions and git commit),
``metrics.jsonl`` (one row per outer step), ``checkpoint.pt``, ``reward.npy`` (``[S]`` or ``[S, A]``) and
``summary.json``. Re-running on the same folder resumes from the checkpoint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch

from irl_bilevel.config import Config, NonNegativeFloat, OneOf, PositiveFloat, PositiveInt, Seed
from irl_bilevel.hypergradients import make_hypergradient
from irl_bilevel.runs import begin_run, claim_run_folder, write_atomic, write_json
from irl_bilevel.solver import OuterConfig
from irl_bilevel.validation import ValidationError


def _testbeds() -> list[str]:
    from classic_rl.testbeds import TESTBEDS

    return sorted(TESTBEDS)


def _hypergradients() -> list[str]:
    from irl_bilevel.hypergradients import HYPERGRADIENTS

    return sorted(HYPERGRADIENTS)


@dataclass(frozen=True)
class TabularIRLConfig(Config):
    """Everything a tabular IRL run depends on: what ``irlb tabular-irl``'s flags, ``--config`` and ``--set`` fill
    and ``config.json`` records."""

    testbed: Annotated[str, OneOf(_testbeds, "testbed")] = "gridworld"
    """the tabular testbed (``irlb testbeds`` lists them); ignored when ``mdp_file`` is given"""
    testbed_options: dict[str, Any] = field(default_factory=dict)
    """keyword options of the testbed's builder, e.g. ``{"size": 6}`` (classic_rl.testbeds)"""
    mdp_file: str | None = None
    """your own MDP as an ``.npz`` file (docs/npz_format.md), instead of a testbed"""
    demonstrations_file: str | None = None
    """expert demonstrations as an ``.npz`` file (docs/npz_format.md); required when the MDP has no true reward"""
    algorithm: Literal["maxent", "lp"] = "maxent"
    """maximum-entropy IRL through the bilevel solver, or linear-programming IRL (Ng & Russell 2000)"""
    lp_l1_penalty: NonNegativeFloat = 1.05
    """λ of LP-IRL's L1 penalty (Ng & Russell 2000); on their 5×5 gridworld λ ∈ [3.25, 5.75] recovers the reward"""
    hypergradient: Annotated[str, OneOf(_hypergradients, "hypergradient method")] = "maxent"
    """how the outer gradient is computed (irl_bilevel.hypergradients)"""
    hypergradient_options: dict[str, Any] = field(default_factory=dict)
    """keyword options of the hypergradient method, e.g. ``{"penalty": 0.1}``"""
    reward_model: Literal["linear", "mlp", "tabular"] = "linear"
    """reward model over the state features (tabular: one parameter per state)"""
    state_action_reward: bool = False
    """learn r(s, a) (one-hot actions appended to the features) instead of r(s)"""
    hidden_sizes: list[PositiveInt] = field(default_factory=lambda: [32, 32])
    """hidden layer widths of the mlp reward model"""
    num_demonstrations: PositiveInt | None = None
    """sample this many expert demonstrations; null: match the exact expert occupancy (testbeds only)"""
    demonstration_length: PositiveInt = 30
    """steps per sampled demonstration when the MDP has no horizon"""
    optimizer: Literal["lbfgs", "adam", "sgd"] = "lbfgs"
    """outer optimizer of the reward parameters"""
    lr: PositiveFloat = 1.0
    """outer learning rate"""
    steps: PositiveInt = 100
    """the most outer optimizer steps"""
    grad_tol: NonNegativeFloat = 1e-5
    """stop once the gradient's largest entry is at most this (0: off; irl_bilevel.solver.OuterConfig)"""
    loss_rtol: NonNegativeFloat = 2.220446049250313e-09
    """stop once a step changed the loss by at most this times max(|L|, 1) (0: off)"""
    divergence_factor: NonNegativeFloat = 1e4
    """stop with an error once |L| exceeds this times max(|L_0|, 1): a runaway loss writes no reward (0: off)"""
    occupancy_target: NonNegativeFloat | None = 1e-4
    """stop once the occupancy L1 distance to the expert falls to this (null: run every step)"""
    checkpoint_every: PositiveInt = 10
    """outer steps between checkpoints (a rerun on the folder resumes from the last one)"""
    seed: Seed = 0
    """seed of the reward model's initialization and of sampled demonstrations"""

    def validate(self) -> None:
        try:  # bad options fail when the config is read, not after the MDP and the demonstrations
            make_hypergradient(self.hypergradient, **self.hypergradient_options)
        except ValidationError as error:
            raise ValidationError(f"hypergradient_options: {error}") from error


COMMAND = "tabular-irl"
# What tabular-irl writes into its folder: --overwrite removes these (and only these) before a new run.
OUTPUT_FILES = ("config.json", "metrics.jsonl", "checkpoint.pt", "summary.json", "reward.npy")


def run_tabular_irl(config: TabularIRLConfig, output_dir: Path, progress: bool = True,
                    overwrite: bool = False) -> dict[str, Any]:
    """Run (or resume) the tabular IRL run of ``config`` in ``output_dir``; returns the final metrics.

    ``output_dir`` is checked first (:func:`irl_bilevel.runs.claim_run_folder`: new, the same run to resume, or with
    ``overwrite`` a tabular-irl run to replace), then every input is read and checked, and only then is anything
    written: a failed start leaves the folder as it was."""
    from classic_rl.lp_irl import lp_irl
    from classic_rl.maxent_irl import make_reward_model, maxent_irl
    from classic_rl.npz_io import load_demonstrations_npz, load_mdp_npz
    from classic_rl.testbeds import make_testbed, optimal_policy
    from irl_bilevel.metrics import epic_distance, normalized_return
    from irl_bilevel.sampling import sample_trajectories
    from irl_bilevel.tabular import soft_value_iteration, state_action_occupancy

    output_dir = Path(output_dir)
    claim = claim_run_folder(output_dir, COMMAND, config.to_dict(), overwrite=overwrite,
                             defaults=TabularIRLConfig().to_dict())
    for field_name, path in (("mdp_file", config.mdp_file), ("demonstrations_file", config.demonstrations_file)):
        if path is not None and not Path(path).is_file():
            raise ValidationError(f"{field_name}: no such file {path!r}")
    torch.manual_seed(config.seed)
    previous_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        mdp = load_mdp_npz(config.mdp_file) if config.mdp_file else make_testbed(config.testbed,
                                                                                 **config.testbed_options)
        expert_log_policy = None
        if mdp.true_reward is not None:
            expert_log_policy = soft_value_iteration(mdp, mdp.true_reward).log_policy
        if config.algorithm == "lp" and mdp.true_reward is None:
            raise ValidationError("algorithm: LP-IRL needs the expert's optimal policy, i.e. a true_reward")
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
        model = make_reward_model(config.reward_model, mdp, config.state_action_reward, tuple(config.hidden_sizes))
        method = make_hypergradient(config.hypergradient, **config.hypergradient_options)

        # Every input is read and checked: from here on the run writes.
        begin_run(output_dir, COMMAND, config.to_dict(), claim, OUTPUT_FILES, config.seed)
        if config.algorithm == "lp":
            assert mdp.true_reward is not None
            reward = lp_irl(mdp, optimal_policy(mdp), l1_penalty=config.lp_l1_penalty)
            metrics: dict[str, Any] = {"algorithm": "lp"}
            metrics["epic"] = epic_distance(reward, mdp.true_reward, mdp.num_states, mdp.num_actions, mdp.discount)
            if expert_log_policy is not None:
                metrics["normalized_return"] = normalized_return(mdp, reward, expert_log_policy)
            write_json(output_dir / "summary.json", {"final_metrics": metrics})
        else:
            outer = OuterConfig(config.steps, config.optimizer, config.lr, checkpoint_every=config.checkpoint_every,
                                grad_tol=config.grad_tol, loss_rtol=config.loss_rtol,
                                divergence_factor=config.divergence_factor)
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


def _npy_bytes(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()
