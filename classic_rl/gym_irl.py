"""`irlb gym-irl`: sample-based bilevel IRL on a gymnasium testbed with an SB3 inner loop, from one config.

The environment: any gymnasium id, a registered one (``CartPole-v1``) or your own in gymnasium's
``module:EnvName-vN`` form (the module is imported and registers it). Its episodes end as the env says:
*terminated* episodes continue in the absorbing state, *truncated* ones are cut (``absorbing_indicator``,
:class:`~classic_rl.learned_reward_env.LearnedRewardVecEnv`).

The run (ML-IRL, Zeng et al. 2022): demonstrations of an SB3 expert, trained once on the env's reward and cached
(:mod:`classic_rl.experts`: the built-in configuration of the env, or the one the ``expert_*`` fields give), or of a
user's ``.npz`` file (demonstrations only: no expert is trained; without a ``returns`` array the expert-normalized
return is not reported, and the summary's ``notes`` says so); a reward model built from a
:class:`~irl_bilevel.reward_io.RewardSpec` (scalar, multi-aspect with learned simplex weights, or potential-shaped);
:class:`~classic_rl.sb3_inner.SB3InnerSolver` warm-started across outer steps;
:class:`~irl_bilevel.objectives.SampleMaxEntObjective`; a hypergradient method by name (``maxent``: learner minus
expert expectation of ``∇θ r``; ``penalty``: the penalty-based first-order method of Shen, Yang, Chen (ICML 2024)
with an upper copy of the policy network, :mod:`classic_rl.sb3_penalty`, its options — ``penalty``, ``upper_steps``,
``upper_lr``, ``upper_rollout_steps``, ``upper_entropy`` — in ``hypergradient_options`` and its rollouts counted in
``env_steps``; ``zeroth_order``: the black-box baseline); all through :class:`~irl_bilevel.solver.BilevelSolver` —
the tabular runs differ only in the inner solver and the estimator.

The agent trains on the learned reward shifted so that the absorbing state pays 0 (``anchor_absorbing``, default;
:class:`~classic_rl.learned_reward_env.AbsorbingAnchoredReward`): the same policies and the same MaxEnt gradient, but no
``γ/(1 − γ) · r_θ(absorbing)`` spike on terminal transitions (99 times the absorbing reward at ``γ = 0.99``, which
the running-RMS scale, fitted to per-step rewards, does not shrink), so that terminal transitions do not dominate
the agent's updates while the reward is still being learned. Its effect on the benchmark is in
``benchmarks/results/irl_vs_imitation.json`` (``docs/results.md``).

The MaxEnt gradient ``E_expert[Σ_t γ_occ^t ∇θ r] − E_learner[Σ_t γ_occ^t ∇θ r]`` (normalized occupancy weights)
takes ``γ_occ = occupancy_discount`` (0.99 by default), not the agent's discount: the occupancy measure to match is
a property of the demonstrations, while an RL discount below 0.99 is a variance-reduction setting of the policy
gradient. With rl-zoo's γ = 0.9 on Pendulum-v1 the weights ``0.9^t`` cover only the first steps of each episode
(the swing-up from a random start) and never the upright balance the expert holds for the rest of it.

The output folder receives ``config.json`` (config + seed, versions, git commit), ``metrics.jsonl`` (one row per
outer step: loss, true return, expert-normalized return, env steps), ``checkpoint.pt`` (resumed by re-running on
the folder), ``policy.zip`` (``PPO.load``-able, or the algorithm's), ``reward.safetensors`` + ``reward.json``
(:func:`irl_bilevel.reward_io.load_reward_model` rebuilds it), ``tensorboard/`` (outer metrics and SB3's own
logs) and ``summary.json`` (with ``epic_distance``, the learned reward's sample-based EPIC distance to the env's true
reward on expert, random-policy and learner transitions, :func:`epic_to_true_reward`). Final files are written only
when the run ends; a killed run leaves its config, metrics and last checkpoint, and resumes from them to the same
result as an uninterrupted run (the inner solver restarts its episodes at every solve, so its ``state_dict`` holds
all it carries; :class:`~classic_rl.sb3_inner.SB3InnerSolver`). The summary's ``wall_s`` adds up the segments.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import gymnasium as gym
import numpy as np
import torch

from classic_rl.experts import (
    EXPERT_CONFIGS,
    ExpertConfig,
    RolloutDemonstrations,
    evaluate_policy_return,
    normalized_return,
    random_policy_return,
    rollout_demonstrations,
    train_expert,
    uniform_random_policy,
)
from classic_rl.learned_reward_env import AbsorbingAnchoredReward
from classic_rl.sb3_inner import SB3InnerSolver, gym_env_spec
from classic_rl.sb3_penalty import UPPER_POLICY_ALGORITHMS
from classic_rl.true_rewards import KNOWN_ENVS, reward_epic_distance
from irl_bilevel.config import Config, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, Range, Seed
from irl_bilevel.hypergradients import BilevelProblem, make_hypergradient
from irl_bilevel.objectives import SampleMaxEntObjective, concatenate_transitions, sample_rows
from irl_bilevel.reward_io import RewardSpec, build_reward_model, save_reward_model
from irl_bilevel.rewards import RewardModel, Transitions
from irl_bilevel.runs import begin_run, claim_run_folder, write_json
from irl_bilevel.solver import BilevelSolver, OuterConfig
from irl_bilevel.validation import ValidationError


@dataclass(frozen=True)
class GymIRLConfig(Config):
    """Everything a gymnasium IRL run depends on: what ``irlb gym-irl``'s flags, ``--config`` and ``--set`` fill
    and ``config.json`` records."""

    env_id: str = field(default="CartPole-v1", metadata={"aliases": ("--env",)})
    """gymnasium environment id, e.g. CartPole-v1, Acrobot-v1, Pendulum-v1, or ``module:EnvName-v0`` for your own
    (importing the module registers it; give the expert_* settings or a demonstrations_file)"""
    algorithm: Literal["ppo", "a2c", "sac", "dqn"] = "ppo"
    """the inner SB3 algorithm"""
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    """SB3 constructor overrides, e.g. ``{"n_steps": 512}``"""
    n_envs: PositiveInt = 1
    """parallel environments of the inner solver"""
    hypergradient: Literal["maxent", "zeroth_order", "penalty"] = "maxent"
    """outer gradient on a sampled inner loop: the MaxEnt gradient, the black-box baseline, or the penalty method
    (Shen, Yang, Chen 2024)"""
    hypergradient_options: dict[str, Any] = field(default_factory=dict)
    """keyword options of the hypergradient method (penalty: penalty, upper_steps, upper_lr, ...)"""
    reward_structure: Literal["scalar", "multi_aspect", "shaped"] = "scalar"
    """the reward model: one scalar head, several aspect heads with learned simplex weights, or potential-shaped"""
    num_aspects: PositiveInt = 3
    """multi_aspect: heads aggregated by learned simplex weights"""
    state_action_reward: bool = False
    """learn r(s, a) instead of r(s)"""
    hidden_sizes: list[PositiveInt] = field(default_factory=lambda: [64, 64])
    """hidden layer widths of the reward network"""
    num_demonstrations: PositiveInt = 10
    """expert episodes rolled out as demonstrations (when no demonstrations_file is given)"""
    demonstrations_file: str | None = None
    """your demonstrations as an ``.npz`` file (see load_demonstrations); default: roll out the cached expert. Without
    a ``returns`` array the expert-normalized return is not reported (no expert is trained)"""
    expert_algorithm: Literal["ppo", "a2c", "sac", "dqn", "td3"] | None = None
    """the SB3 algorithm of the expert whose demonstrations are rolled out, for an env without a built-in expert
    configuration (classic_rl.experts.EXPERT_CONFIGS), e.g. your own ``my_package.envs:MyEnv-v0``; for a built-in
    env it replaces that configuration; null: the built-in one. Unused with demonstrations_file"""
    expert_hyperparameters: dict[str, Any] = field(default_factory=dict)
    """the expert's SB3 settings (``"lin_X"``: a linear schedule from X); needs expert_algorithm"""
    expert_timesteps: PositiveInt | None = None
    """the expert's training budget in env steps; null: the built-in one (100k for a configured expert)"""
    outer_steps: PositiveInt = 30
    """outer (reward) steps, one inner solve each"""
    env_steps_per_outer_step: PositiveInt = 2048
    """inner env steps per outer step"""
    learner_solves: PositiveInt = 1
    """the learner expectation averages the last this many solves' samples (SB3InnerSolver)"""
    optimizer: Literal["adam", "sgd", "lbfgs"] = "adam"
    """outer optimizer of the reward parameters"""
    lr: PositiveFloat = 1e-2
    """outer learning rate"""
    l2: NonNegativeFloat = 0.0
    """weight of the (l2 / 2) ‖θ‖² penalty on the reward parameters"""
    discount: Annotated[float, Range(0, 1, high_open=True)] = 0.99
    """the agent's discount γ"""
    occupancy_discount: Annotated[float, Range(0, 1, high_open=True)] | None = 0.99
    """γ of the occupancy weights in the IRL gradient (expert and learner alike); null: the agent's discount. Not
    the agent's discount by default: an RL discount below 0.99 (rl-zoo's 0.9 for Pendulum) reduces policy-gradient
    variance, but as occupancy weights it would match only the first ~1/(1 − γ) steps of every episode"""
    normalize_reward: bool = True
    """scale the learned reward by a running RMS before the agent sees it"""
    absorbing_indicator: bool = True
    """DAC's separate absorbing state (see classic_rl.learned_reward_env)"""
    anchor_absorbing: bool = True
    """the agent sees r_θ − r_θ(absorbing) (learned_reward_env.AbsorbingAnchoredReward)"""
    eval_episodes: PositiveInt = 10
    """true-reward evaluation episodes of the policy"""
    eval_every: PositiveInt = 1
    """evaluate the policy on the true reward every this many outer steps (and at the last)"""
    transfer_steps: NonNegativeInt = 0
    """> 0: train a fresh policy on the frozen learned reward for this many env steps (0: no transfer)"""
    target_normalized_return: float | None = None
    """stop once the policy's normalized return reaches this"""
    checkpoint_every: PositiveInt = 1
    """outer steps between checkpoints (a rerun on the folder resumes from the last one)"""
    seed: Seed = 0
    """seed of the reward model, the inner solver and its environments"""
    demonstration_seed: Seed = 1000
    """seed of the expert's demonstration episodes"""
    eval_seed: Seed = 10_000
    """seed of the evaluation episodes (the same for every policy)"""

    def validate(self) -> None:
        gym_env_spec(self.env_id)
        try:  # bad options fail here, when the config is read, not after the expert and the demonstrations
            make_hypergradient(self.hypergradient, **self.hypergradient_options)
        except ValidationError as error:
            raise ValidationError(f"hypergradient_options: {error}") from error
        if self.hypergradient == "penalty" and self.algorithm not in UPPER_POLICY_ALGORITHMS:
            raise ValidationError(f"algorithm: hypergradient 'penalty' trains a copy of the policy and needs one of "
                                  f"{UPPER_POLICY_ALGORITHMS}, got {self.algorithm!r}")
        if self.reward_structure == "multi_aspect" and self.num_aspects < 2:
            raise ValidationError(f"num_aspects: multi_aspect needs at least 2, got {self.num_aspects}")
        if self.anchor_absorbing and not self.absorbing_indicator:
            raise ValidationError("anchor_absorbing: needs absorbing_indicator (one absorbing state to anchor at); set "
                                  "anchor_absorbing=false together with absorbing_indicator=false")
        if self.expert_hyperparameters and self.expert_algorithm is None:
            raise ValidationError("expert_hyperparameters: given without expert_algorithm; name the algorithm they "
                                  "are settings of")
        if not self.demonstrations_file and self.expert_algorithm is None and self.env_id not in EXPERT_CONFIGS:
            raise ValidationError(f"expert_algorithm: {self.env_id!r} has no built-in expert configuration; give the "
                                  f"expert's expert_algorithm (with expert_hyperparameters and expert_timesteps), or "
                                  f"demonstrations_file to learn from demonstrations only")

    def expert_config(self) -> ExpertConfig:
        """The expert to train: the built-in configuration of ``env_id``, or the one the ``expert_*`` fields give
        (``expert_timesteps`` replaces the built-in budget either way)."""
        if self.expert_algorithm is not None:
            return ExpertConfig(self.expert_algorithm, dict(self.expert_hyperparameters),
                                default_timesteps=self.expert_timesteps or 100_000, source="GymIRLConfig")
        if self.env_id not in EXPERT_CONFIGS:
            raise ValidationError(f"expert_algorithm: {self.env_id!r} has no built-in expert configuration")
        built_in = EXPERT_CONFIGS[self.env_id]
        if self.expert_timesteps is None:
            return built_in
        return dataclasses.replace(built_in, default_timesteps=self.expert_timesteps)


COMMAND = "gym-irl"
# What gym-irl writes into its folder: --overwrite removes these (and only these) before a new run.
OUTPUT_FILES = ("config.json", "metrics.jsonl", "checkpoint.pt", "summary.json", "policy.zip", "reward.safetensors",
                "reward.json", "tensorboard")


# ---------------------------------------------------------------------- demonstrations
def load_demonstrations(path: str | Path) -> RolloutDemonstrations:
    """Demonstrations from an ``.npz`` of ``observations [N, T, obs_dim]``, ``actions [N, T]`` (discrete) or
    ``[N, T, act_dim]``, ``lengths [N]`` and optionally ``terminated [N]``, ``final_observations [N, obs_dim]``,
    ``returns [N]`` (:func:`classic_rl.npz_io.load_rollout_demonstrations_npz`, ``docs/npz_format.md``)."""
    from classic_rl.npz_io import load_rollout_demonstrations_npz

    return load_rollout_demonstrations_npz(path)


def check_demonstrations_match(demonstrations: RolloutDemonstrations, env_id: str) -> None:
    """The demonstrations' observations and actions must fit the env's spaces (a clear error otherwise)."""
    env = gym.make(env_id)
    observation_space, action_space = env.observation_space, env.action_space
    env.close()
    obs_shape = tuple(demonstrations.observations.shape[2:])
    if obs_shape != tuple(observation_space.shape or ()):
        raise ValidationError(f"demonstrations: observations have shape {list(obs_shape)} per step, but {env_id} "
                              f"observes {list(observation_space.shape or ())}")
    actions = demonstrations.actions
    if isinstance(action_space, gym.spaces.Discrete):
        if actions.is_floating_point() or actions.dim() != 2:
            raise ValidationError(f"demonstrations: {env_id} has {action_space.n} discrete actions; expected integer "
                                  f"actions [N, T], got {actions.dtype} {list(actions.shape)}")
        valid = torch.arange(actions.shape[1]).unsqueeze(0) < demonstrations.lengths.unsqueeze(1)
        used = actions[valid]
        if used.numel() and (int(used.min()) < 0 or int(used.max()) >= int(action_space.n)):
            raise ValidationError(f"demonstrations: actions must lie in [0, {int(action_space.n)}) for {env_id}, "
                                  f"got [{int(used.min())}, {int(used.max())}]")
    else:
        act_shape = tuple(actions.shape[2:])
        if not actions.is_floating_point() or act_shape != tuple(action_space.shape or ()):
            raise ValidationError(f"demonstrations: {env_id} expects continuous actions of shape "
                                  f"{list(action_space.shape or ())}, got {actions.dtype} {list(act_shape)} per step")


# ---------------------------------------------------------------------- reward model
def reward_spec(config: GymIRLConfig, obs_dim: int, action_dim: int) -> RewardSpec:
    """The reward architecture the config asks for, over ``obs_dim`` (+1 absorbing indicator) state inputs."""
    state_dim = obs_dim + (1 if config.absorbing_indicator else 0)
    input_dim = state_dim + (action_dim if config.state_action_reward else 0)
    common: dict[str, Any] = {"input_dim": input_dim, "hidden_sizes": list(config.hidden_sizes),
                              "uses_actions": config.state_action_reward, "discount": config.discount}
    if config.reward_structure == "multi_aspect":
        names = [f"aspect_{k}" for k in range(config.num_aspects)]
        return RewardSpec(aspect_names=names, aggregator="simplex", **common)
    if config.reward_structure == "shaped":
        return RewardSpec(shaping_hidden_sizes=list(config.hidden_sizes), shaping_input_dim=state_dim, **common)
    return RewardSpec(**common)


# ---------------------------------------------------------------------- reward quality
EPIC_ROWS_PER_SOURCE = 1000  # coverage rows drawn from each source (expert, random policy, learner)
EPIC_RANDOM_EPISODES = 10  # episodes of the uniformly random policy in the coverage
EPIC_MEAN_SAMPLES = 200  # EPIC's joint (state, action) samples for the canonicalizing means


def epic_coverage(env_id: str, demonstrations: RolloutDemonstrations, discount: float, absorbing_indicator: bool = True,
                  learner: Transitions | None = None, seed: int = 0) -> Transitions:
    """The transitions EPIC compares rewards on, float64, in the reward model's featurization (absorbing rows
    included): up to :data:`EPIC_ROWS_PER_SOURCE` rows each of the expert's ``demonstrations``, of
    :data:`EPIC_RANDOM_EPISODES` episodes of the uniformly random policy (actions seeded by ``seed``, episode ``i``
    reset with ``seed + 1 + i``) and, if given, of ``learner`` transitions; rows drawn from a generator seeded by
    ``seed``. The random episodes make the coverage hold terminations and poor states whatever the learner does:
    on expert-like rows alone CartPole's true reward is the constant +1, against which EPIC means nothing
    (:func:`irl_bilevel.metrics.sample_epic_distance` gives ``sqrt(1/2)``)."""
    random_episodes = rollout_demonstrations(uniform_random_policy(env_id, seed), env_id, EPIC_RANDOM_EPISODES,
                                             seed=seed + 1)
    generator = torch.Generator().manual_seed(seed)
    parts = [SampleMaxEntObjective(episodes, discount, num_actions=episodes.num_actions, absorbing=True,
                                   absorbing_indicator=absorbing_indicator).transitions
             for episodes in (demonstrations, random_episodes)]
    if learner is not None:
        parts.append(learner)
    return concatenate_transitions([part.select(sample_rows(len(part), EPIC_ROWS_PER_SOURCE, generator))
                                    .to(torch.float64) for part in parts])


def epic_to_true_reward(config: GymIRLConfig, reward: RewardModel, demonstrations: RolloutDemonstrations,
                        inner: SB3InnerSolver) -> float | None:
    """Sample-based EPIC distance of the learned reward to the env's true reward
    (:func:`classic_rl.true_rewards.reward_epic_distance`), in ``[0, 1]``, on :func:`epic_coverage` with the inner
    learner's last recorded transitions and seed ``config.seed``; :data:`EPIC_MEAN_SAMPLES` mean samples. None where
    no true reward is defined for the env (:data:`classic_rl.true_rewards.KNOWN_ENVS`: the classic-control
    testbeds), e.g. a user's env whose reward is not a known function of the observations, and where the learner
    recorded no transitions in this process (a finished run re-opened trains nothing).
    """
    if config.env_id not in KNOWN_ENVS:
        return None
    try:
        learner = inner.learner_transitions()[0]
    except RuntimeError:  # nothing stepped in this process: a finished run re-opened
        return None
    coverage = epic_coverage(config.env_id, demonstrations, config.discount, config.absorbing_indicator, learner,
                             config.seed)
    return reward_epic_distance(reward, config.env_id, coverage, config.discount,
                                absorbing_indicator=config.absorbing_indicator,
                                num_mean_samples=EPIC_MEAN_SAMPLES, seed=config.seed)


# ---------------------------------------------------------------------- the run
def train_configured_expert(config: GymIRLConfig) -> Any:
    """The SB3 expert of :meth:`GymIRLConfig.expert_config`, trained on the env's reward once and cached
    (:func:`classic_rl.experts.train_expert`; the cache key holds the env id, not its code: give your env a new
    version when you change it). Settings SB3 rejects are a ValidationError naming ``expert_hyperparameters``."""
    expert = config.expert_config()
    return train_expert(config.env_id, config=expert, where=f"{COMMAND}.")


NO_EXPERT_RETURN = ("normalized returns not reported: the demonstrations file has no 'returns' array and no expert "
                    "is trained in a demonstrations-only run, so the expert's return (the normalization's reference) "
                    "is unknown; add returns [N] to the file to have them")


def run_gym_irl(config: GymIRLConfig, output_dir: Path | str, progress: bool = True,
                overwrite: bool = False) -> dict[str, Any]:
    """Run (or resume) the IRL run of ``config`` in ``output_dir``; returns the summary it writes.

    ``output_dir`` is checked first (:func:`irl_bilevel.runs.claim_run_folder`: new, the same run to resume, or with
    ``overwrite`` a gym-irl run to replace), then the demonstrations are read and checked, and only then is anything
    written: a failed start leaves the folder as it was.

    The expert-normalized return ``(R − R_random) / (R_expert − R_random)`` needs the expert's return: the mean of
    the demonstrations' ``returns``, else the trained expert's evaluated return. A demonstrations-only run whose
    file has no ``returns`` reports true returns only; its summary's ``notes`` says so (and
    ``target_normalized_return`` is refused before anything is written)."""
    from torch.utils.tensorboard import SummaryWriter

    output_dir = Path(output_dir)
    claim = claim_run_folder(output_dir, COMMAND, config.to_dict(), overwrite=overwrite,
                             defaults=GymIRLConfig().to_dict())
    torch.set_num_threads(1)
    torch.manual_seed(config.seed)
    notes: list[str] = []
    if config.demonstrations_file:
        demonstrations = load_demonstrations(config.demonstrations_file)
        check_demonstrations_match(demonstrations, config.env_id)
        expert_model = None
        if demonstrations.returns is None:
            if config.target_normalized_return is not None:
                raise ValidationError(f"target_normalized_return: needs the expert's return, but "
                                      f"{config.demonstrations_file} has no 'returns' array and a demonstrations-only "
                                      f"run trains no expert; add returns [N] to the file or drop the target")
            notes.append(NO_EXPERT_RETURN)
            if progress:
                print(f"gym-irl: {NO_EXPERT_RETURN}", file=sys.stderr)
    else:
        expert_model = train_configured_expert(config)
        demonstrations = rollout_demonstrations(expert_model, config.env_id, config.num_demonstrations,
                                                seed=config.demonstration_seed)

    def make_inner(budget: int, seed: int, tensorboard: Path | None) -> SB3InnerSolver:
        hyperparameters = {**config.hyperparameters, "gamma": config.discount}
        if tensorboard is not None:
            hyperparameters["tensorboard_log"] = str(tensorboard)
        return SB3InnerSolver(config.env_id, config.algorithm, budget, n_envs=config.n_envs,
                              hyperparameters=hyperparameters, seed=seed, termination="absorbing",
                              normalize_reward=config.normalize_reward,
                              absorbing_indicator=config.absorbing_indicator, restart_episodes=True,
                              learner_solves=config.learner_solves, occupancy_discount=config.occupancy_discount)

    inner = make_inner(config.env_steps_per_outer_step, config.seed, output_dir / "tensorboard")
    spec = reward_spec(config, inner.env.obs_dim, inner.env.action_dim)
    reward = build_reward_model(spec)
    objective = SampleMaxEntObjective(demonstrations, inner.occupancy_discount, num_actions=demonstrations.num_actions,
                                      absorbing=True, absorbing_indicator=config.absorbing_indicator)
    method = make_hypergradient(config.hypergradient, **config.hypergradient_options)
    # What the agent trains on: the reward itself, or shifted so that the absorbing state pays 0 (the same policies,
    # the same outer gradient; no γ/(1 − γ) · r_abs spike on terminal transitions).
    trained: RewardModel = reward
    if config.anchor_absorbing:
        trained = AbsorbingAnchoredReward.for_env(reward, inner.env)
    problem = BilevelProblem(trained, inner, objective)
    # Everything is read and built (an SB3 setting the algorithm rejects fails above): only now is the folder written.
    begin_run(output_dir, COMMAND, config.to_dict(), claim, OUTPUT_FILES, config.seed)
    resumed = claim == "resume"
    random = random_policy_return(config.env_id, 100, seed=config.eval_seed)[0]
    expert_return: float | None = None
    if demonstrations.returns is not None:
        expert_return = float(demonstrations.returns.mean())
    elif expert_model is not None:
        expert_return = evaluate_policy_return(expert_model, config.env_id, config.eval_episodes, config.eval_seed)[0]
    writers: list[SummaryWriter] = []  # opened at the first metrics row, after a resume has read the checkpoint

    def writer() -> SummaryWriter:
        if not writers:
            writers.append(SummaryWriter(str(output_dir / "tensorboard" / "outer")))
        return writers[0]

    def normalized(value: float) -> float | None:
        return None if expert_return is None else normalized_return(value, random, expert_return)

    def evaluate() -> dict[str, float]:
        value = evaluate_policy_return(inner.model, config.env_id, config.eval_episodes, seed=config.eval_seed)[0]
        score = normalized(value)
        return {"true_return": value} if score is None else {"true_return": value, "normalized_return": score}

    def metrics() -> dict[str, float]:
        # SB3's step count (restored from the checkpoint on resume), so a resumed run counts every step, plus the
        # penalty method's upper-policy rollouts (also checkpointed; 0 for the other methods).
        row: dict[str, float] = {"env_steps": int(inner.model.num_timesteps) + int(inner.upper_env_steps)}
        if config.hypergradient == "penalty":
            row["upper_env_steps"] = int(inner.upper_env_steps)
        if solver.step % config.eval_every == 0 or solver.step == config.outer_steps:
            row.update(evaluate())
        for key, number in row.items():
            writer().add_scalar(f"outer/{key}", number, int(row["env_steps"]))
        return row

    # No tolerance stop: the loss and gradient are estimates from the learner's latest samples, noisy at any θ; the
    # budget is outer_steps (and target_normalized_return), as the committed results were made. No runaway guard
    # either (non-finite values still stop the run): the reported loss is the demonstrations' NLL under the learner,
    # a diagnostic that a sharp continuous policy makes large without anything diverging.
    outer = OuterConfig(steps=config.outer_steps, optimizer=config.optimizer, lr=config.lr, l2=config.l2,
                        grad_tol=0.0, loss_rtol=0.0, divergence_factor=0.0, checkpoint_every=config.checkpoint_every)
    target = config.target_normalized_return
    solver = BilevelSolver(problem, method, outer, output_dir=output_dir, metrics=metrics, progress=progress,
                           stop_when=None if target is None
                           else lambda row: row.get("normalized_return", -math.inf) >= target)
    result = solver.run(resume=True)
    solved = time.perf_counter()
    for opened in writers:
        opened.close()
    inner.model.save(output_dir / "policy.zip")
    save_reward_model(reward, spec, output_dir)
    epic = epic_to_true_reward(config, reward, demonstrations, inner)  # before inner.close(): reads its recorded steps
    method.close()
    inner.close()

    history = result.history
    reached = [row["env_steps"] for row in history if row.get("normalized_return", -np.inf) >= 0.9]
    final = history[-1] if "true_return" in history[-1] else {**history[-1], **evaluate()}
    summary: dict[str, Any] = {
        "env_id": config.env_id, "resumed": resumed, "outer_steps": result.steps,
        "final_true_return": final["true_return"], "final_normalized_return": final.get("normalized_return"),
        "env_steps": history[-1]["env_steps"], "env_steps_to_0.9": reached[0] if reached else None,
        "expert_return": expert_return, "random_return": random, "epic_distance": epic,
        # the solver's time over every segment of a resumed run (result.seconds), plus this segment's saving
        "wall_s": result.seconds + time.perf_counter() - solved,
    }
    if notes:
        summary["notes"] = notes
    if config.transfer_steps:
        reward.requires_grad_(False)
        transfer = make_inner(config.transfer_steps, config.seed + 100, None)
        transfer.solve(trained)
        value = evaluate_policy_return(transfer.model, config.env_id, config.eval_episodes, seed=config.eval_seed)[0]
        transfer.close()
        summary.update(transfer_true_return=value,
                       transfer_normalized_return=normalized(value),
                       transfer_env_steps=config.transfer_steps)
    write_json(output_dir / "summary.json", summary)
    return summary
