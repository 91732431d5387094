"""Side by side: our bilevel ML-IRL (SB3 inner loop) against imitation 1.0.1's AIRL and GAIL, with BC as a floor.

One invocation runs every (testbed, method, seed) cell, each in a fresh subprocess with one torch thread, one
after the other, and writes one JSON file (``benchmarks/results/irl_vs_imitation.json`` by default) atomically
after every cell. A rerun with the same protocol skips the cells already in the file, so a killed run continues.

Protocol (see benchmarks/README.md, "IRL on gymnasium testbeds"):

* **Same demonstrations.** Per testbed, ``--demonstrations`` (10) deterministic episodes of the cached SB3 expert
  (:func:`classic_rl.experts.train_expert`, :func:`~classic_rl.experts.rollout_demonstrations`, episode ``i``
  reset with seed ``1000 + i``), written once to an ``.npz`` that every method reads. For imitation they become
  ``Trajectory`` objects whose ``terminal`` flag is the episode's *termination* (CartPole fell, MountainCar
  reached the goal); a time-limit truncation is ``terminal=False`` (imitation's own rollouts mark both ``True``).
* **Expert and random returns** are measured in the same run (``prepare`` worker): the expert on the evaluation
  episodes below, the uniformly random policy on 100 seeded episodes. Normalized score
  ``(R − random) / (expert − random)``.
* **Same RL algorithm, hyperparameters, budget and seeds.** One PPO dict per testbed (``TESTBEDS``) is our inner
  solver's (through :class:`classic_rl.gym_irl.GymIRLConfig` / :func:`~classic_rl.gym_irl.run_gym_irl`, i.e.
  :class:`~classic_rl.sb3_inner.SB3InnerSolver` and :class:`~irl_bilevel.solver.BilevelSolver`) and AIRL's and
  GAIL's generator. One outer step of ours and one round of theirs are both exactly one PPO rollout
  (``n_steps · n_envs`` env steps) followed by one PPO update. imitation's discriminator side uses the settings
  of its documentation (``IMITATION_SETTINGS``: RunningNorm reward nets, demo batch, replay capacity,
  discriminator updates per round), with ``allow_variable_horizon=True`` (required on these variable-horizon
  tasks) and ``demo_batch_size`` capped at the number of demonstration transitions (imitation requires it).
* **Same evaluation schedule.** Every ``eval_every`` env steps (a whole number of rollouts) the current policy is
  evaluated on the true reward over ``K`` episodes reset with seeds ``10000 + i`` (the same for every method and
  seed), acting *deterministically* (the mode of the policy) for every method; the curve is recorded. From it:
  the normalized return at the budget and the env steps at which it first reaches 0.9 (None if never).
* **Reward transfer.** After training, a fresh PPO (the same dict, seed + 100) is trained from scratch on the
  frozen learned reward for a fixed budget and evaluated like above. Ours: the reward model through
  ``SB3InnerSolver`` with our conventions (absorbing state, running-RMS scale); AIRL: ``reward_test`` (the
  unshaped reward net); GAIL: its discriminator reward (``reward_test`` = ``reward_train``), each through
  imitation's ``RewardVecEnvWrapper`` with ``predict_processed``, as imitation's documentation does.
* **Reward quality (EPIC).** The learned reward's sample-based EPIC distance to the env's true reward
  (:func:`classic_rl.true_rewards.reward_epic_distance`, Gleave et al. 2021; 0 = equal up to shaping and scale,
  1 = opposite) on one coverage set for every method and seed of a testbed (:func:`classic_rl.gym_irl.epic_coverage`
  without learner rows): 1000 transitions each of the expert's demonstrations and of 10 uniformly random episodes,
  in our featurization (DAC's absorbing state after terminations), 200 mean samples, seeds fixed. Ours:
  the saved reward model (its learned absorbing value included); AIRL: ``reward_test``; GAIL: its discriminator
  reward; theirs pay 0 in the absorbing state (their rewards end with the episode). A method-independent coverage
  (rather than each method's own learner samples) compares every reward on the same transitions.
* **BC** (floor): ``imitation.algorithms.bc.BC`` with its defaults for ``BC_EPOCHS`` epochs on the same
  demonstrations; no env steps.
* **PPO on the true reward** (reference, ``true_reward``): the same PPO dict, seed and budget on the env's own
  reward, evaluated on AIRL's and GAIL's schedule. It is what these PPO settings can reach at this budget with a
  perfect reward (the summary also reads its curve at the transfer budget): where it stays near 0 (MountainCar-v0
  at the quick budget), no learned reward can show a better return or transfer, and the cells there say nothing
  about the methods.
* **Time.** ``time.perf_counter`` around training (ours: ``BilevelSolver.run`` inside ``run_gym_irl``; theirs:
  ``trainer.train``), with the time spent in evaluations measured and subtracted (``train_s``), and around the
  transfer run (``transfer_s``). Ratios ours / theirs of IQMs over seeds.

Goal (issue 3): ours ≥ AIRL's and GAIL's normalized return on every testbed using at most half their env steps
(ours' IQM at the last evaluation ≤ budget/2 against theirs at the budget) and a clearly better reward-transfer
score than AIRL (IQM at least 0.1 higher). Reported as measured; nothing is tuned for either side.

Run: ``python benchmarks/irl_vs_imitation.py --quick`` (5 seeds, three testbeds; about 70 minutes of one core),
``--full`` (5 seeds, the full budgets of ``TESTBEDS``), ``--smoke`` (1 seed, CartPole only, a few thousand
steps).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast
from unittest import mock

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make the repository importable
    sys.path.insert(0, str(ROOT))

from irl_bilevel.runs import git_state, package_versions  # noqa: E402
from irl_bilevel.validation import ValidationError  # noqa: E402
from irlb.worker_processes import add_scale_flags, run_worker_process, worker_or_driver  # noqa: E402

DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "irl_vs_imitation.json"
# true_reward: PPO on the env's own reward, the reference every learned reward is read against (not a competitor)
METHODS = ("ours", "airl", "gail", "bc", "true_reward")
SCALES = ("smoke", "quick", "full")
TARGET = 0.9  # normalized return whose first crossing is reported
CLEARLY_BETTER = 0.1  # transfer goal: ours' IQM at least this much above AIRL's
DEMONSTRATION_SEED = 1000
EVAL_SEED = 10_000
RANDOM_EPISODES = 100
TRANSFER_SEED_OFFSET = 100
BC_EPOCHS = 20

# One PPO dict per testbed, shared by our inner solver, AIRL's and GAIL's generators and every transfer run.
# CartPole, Acrobot, MountainCar: SB3's PPO defaults (batch 64, 10 epochs, lr 3e-4) with γ 0.99 and rollouts of
# 512 steps (SB3's default is 2048): one rollout is one outer step of ours and one round of AIRL/GAIL, so shorter
# rollouts mean more reward updates per env step for every method alike (ML-IRL's single-loop regime).
# Pendulum: rl-zoo's PPO entry (gSDE, γ 0.9, 4 envs × 1024 steps), because SB3's defaults do not learn Pendulum at
# these budgets; SAC would fit Pendulum better but AIRL needs an actor-critic policy (imitation computes log π(a|s)
# through evaluate_actions) and SAC's per-step updates are too slow on one core for --quick.
# Budgets (env steps) per scale; transfer budgets likewise.
TESTBEDS: dict[str, dict[str, Any]] = {
    "CartPole-v1": {
        "ppo": {"gamma": 0.99, "n_steps": 512}, "n_envs": 1, "eval_every": 2048,
        "budget": {"smoke": 4096, "quick": 40_960, "full": 102_400},
        "transfer": {"smoke": 2048, "quick": 24_576, "full": 102_400},
    },
    "Acrobot-v1": {
        "ppo": {"gamma": 0.99, "n_steps": 512}, "n_envs": 1, "eval_every": 2048,
        "budget": {"smoke": 4096, "quick": 32_768, "full": 200_704},
        "transfer": {"smoke": 2048, "quick": 16_384, "full": 200_704},
    },
    "Pendulum-v1": {  # quick: reduced; PPO needs ~100k+ steps on Pendulum even on the true reward
        "ppo": {"n_steps": 1024, "gae_lambda": 0.95, "gamma": 0.9, "n_epochs": 10, "ent_coef": 0.0,
                "learning_rate": 1e-3, "clip_range": 0.2, "use_sde": True, "sde_sample_freq": 4},
        "n_envs": 4, "eval_every": 4096,
        "budget": {"smoke": 8192, "quick": 24_576, "full": 200_704},
        "transfer": {"smoke": 4096, "quick": 16_384, "full": 200_704},
    },
    "MountainCar-v0": {  # quick: reduced; PPO rarely reaches the goal of MountainCar-v0 in a few 10k steps
        "ppo": {"gamma": 0.99, "n_steps": 512}, "n_envs": 1, "eval_every": 2048,
        "budget": {"smoke": 4096, "quick": 16_384, "full": 200_704},
        "transfer": {"smoke": 2048, "quick": 16_384, "full": 200_704},
    },
}
# The testbeds a scale runs by default (``--testbeds`` picks any). MountainCar-v0 only at full scale: PPO with the
# shared settings does not reach its flag on the *true* reward within a quick budget (see the method `none` of
# results/shaping_classic_control.json), so no learned reward can show a better return or transfer there and the
# quick cells could not tell the methods apart. MountainCarContinuous-v0 is no substitute at that budget: rl-zoo's
# PPO (gSDE, 8-step rollouts) reaches its flag but does not keep it (benchmarks/README.md). A testbed whose
# reference misses the target is reported as not decidable rather than scored (summarize).
DEFAULT_TESTBEDS = {"smoke": ["CartPole-v1"], "quick": ["CartPole-v1", "Acrobot-v1", "Pendulum-v1"],
                    "full": list(TESTBEDS)}
SEEDS = {"smoke": 1, "quick": 5, "full": 5}
EVAL_EPISODES = {"smoke": 2, "quick": 5, "full": 10}

# imitation's documented settings (docs/algorithms/airl.rst and gail.rst, 1.0.1): reward nets with a RunningNorm
# input layer, demo batch, generator replay capacity, discriminator updates per round. Their PPO settings are
# replaced by the shared dict above (the protocol: the same generator for every method).
IMITATION_SETTINGS: dict[str, dict[str, Any]] = {
    "airl": {"reward_net": "BasicShapedRewardNet(normalize_input_layer=RunningNorm)", "demo_batch_size": 2048,
             "gen_replay_buffer_capacity": 512, "n_disc_updates_per_round": 16},
    "gail": {"reward_net": "BasicRewardNet(normalize_input_layer=RunningNorm)", "demo_batch_size": 1024,
             "gen_replay_buffer_capacity": 512, "n_disc_updates_per_round": 8},
}
# Ours: GymIRLConfig's defaults (state-only MLP [64, 64] reward with DAC's absorbing indicator, anchored at 0 for
# the agent, running-RMS reward scale, MaxEnt hypergradient with occupancy weights of γ = 0.99 whatever the PPO
# discount, Adam lr 1e-2), one outer step per PPO rollout.
OURS_SETTINGS: dict[str, Any] = {"hypergradient": "maxent", "reward_structure": "scalar", "hidden_sizes": [64, 64],
                                 "lr": 1e-2, "optimizer": "adam", "normalize_reward": True,
                                 "absorbing_indicator": True, "anchor_absorbing": True,
                                 "state_action_reward": False, "occupancy_discount": 0.99}


# ---------------------------------------------------------------------- protocol and helpers
def rollout_steps(testbed: str) -> int:
    """Env steps of one PPO rollout (= one outer step of ours = one round of AIRL/GAIL)."""
    spec = TESTBEDS[testbed]
    return int(spec["ppo"].get("n_steps", 2048)) * int(spec["n_envs"])


def eval_every(testbed: str) -> int:
    """The evaluation interval in env steps, a whole number of rollouts."""
    every, rollout = int(TESTBEDS[testbed]["eval_every"]), rollout_steps(testbed)
    if every % rollout:
        raise ValueError(f"{testbed}: eval_every {every} is not a multiple of the rollout {rollout}")
    return every


# The libraries a cell's numbers depend on: a resumed run must have the same versions of these.
_PROTOCOL_PACKAGES = ("python", "torch", "numpy", "imitation", "gymnasium", "stable-baselines3")


def protocol(scale: str, testbeds: list[str], seeds: int, demonstrations: int) -> dict[str, Any]:
    """Everything a cell's result depends on; a resumed run must have the same one."""
    versions = package_versions()
    return {
        "scale": scale, "seeds": list(range(seeds)), "methods": list(METHODS), "demonstrations": demonstrations,
        "demonstration_seed": DEMONSTRATION_SEED, "eval_seed": EVAL_SEED,
        "eval_episodes": EVAL_EPISODES[scale], "eval_policy": "deterministic", "random_episodes": RANDOM_EPISODES,
        "target": TARGET, "bc_epochs": BC_EPOCHS, "transfer_seed_offset": TRANSFER_SEED_OFFSET,
        "epic": {"rows_per_source": 1000, "random_episodes": 10, "mean_samples": 200,
                 "coverage": "expert demonstrations + uniform random policy"},
        "imitation": IMITATION_SETTINGS, "ours": OURS_SETTINGS,
        "testbeds": {name: {"ppo": TESTBEDS[name]["ppo"], "n_envs": TESTBEDS[name]["n_envs"],
                            "budget": TESTBEDS[name]["budget"][scale],
                            "transfer_budget": TESTBEDS[name]["transfer"][scale],
                            "rollout": rollout_steps(name), "eval_every": eval_every(name)}
                      for name in testbeds},
        "versions": {name: versions.get(name) for name in _PROTOCOL_PACKAGES},
    }


def normalized(value: float, random: float, expert: float) -> float:
    return (value - random) / (expert - random)


def first_crossing(steps: list[int], scores: list[float], target: float = TARGET) -> int | None:
    """The env steps of the first evaluation whose normalized score reaches ``target`` (None if none does)."""
    return next((int(s) for s, v in zip(steps, scores, strict=True) if v >= target), None)


def score_at(steps: list[int], scores: list[float], budget: float) -> float:
    """The normalized score of the last evaluation at or before ``budget`` env steps (NaN if none)."""
    eligible = [v for s, v in zip(steps, scores, strict=True) if s <= budget]
    return float(eligible[-1]) if eligible else math.nan


# ---------------------------------------------------------------------- reward quality (EPIC)
def epic_distance(testbed: str, reward: Any, demonstrations: Any, discount: float) -> float:
    """EPIC distance of ``reward`` (a reward model or a function ``Transitions -> [B]``) to the true reward, on the
    coverage every method shares: :func:`classic_rl.gym_irl.epic_coverage` of the expert's demonstrations and the
    random policy's episodes (no learner rows), seed ``EVAL_SEED``."""
    from classic_rl.gym_irl import EPIC_MEAN_SAMPLES, epic_coverage
    from classic_rl.true_rewards import reward_epic_distance

    coverage = epic_coverage(testbed, demonstrations, discount, seed=EVAL_SEED)
    return reward_epic_distance(reward, testbed, coverage, discount, absorbing_indicator=True,
                                num_mean_samples=EPIC_MEAN_SAMPLES, seed=EVAL_SEED)


def imitation_reward_function(reward_net: Any, obs_dim: int, discrete: bool):
    """An imitation reward net as a function of our transitions (``[B, obs_dim + 1]`` states, one-hot or flat
    actions): ``predict_processed`` on real states, 0 in the absorbing state (indicator set)."""
    import torch

    def reward(batch: Any) -> Any:
        states = batch.states[:, :obs_dim].numpy().astype(np.float32)
        next_states = batch.next_states[:, :obs_dim].numpy().astype(np.float32)
        actions = batch.actions.argmax(dim=1).numpy() if discrete else batch.actions.numpy().astype(np.float32)
        values = reward_net.predict_processed(states, actions, next_states, np.zeros(len(states), dtype=bool))
        absorbing = batch.states[:, obs_dim] != 0
        return torch.where(absorbing, torch.zeros(()), torch.as_tensor(values, dtype=torch.float64))

    return reward


# ---------------------------------------------------------------------- workers (one fresh process each)
def _torch_setup(seed: int) -> None:
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(seed)


def _load_demonstrations(path: Path):
    from classic_rl.gym_irl import load_demonstrations

    return load_demonstrations(path)


def _imitation_trajectories(demonstrations) -> list:
    """Our demonstrations as imitation ``Trajectory`` objects (observations incl. the final one, ``[T + 1]``)."""
    from imitation.data.types import Trajectory

    trajectories = []
    for n in range(len(demonstrations)):
        length = int(demonstrations.lengths[n])
        observations = demonstrations.observations[n, :length].numpy()
        final = demonstrations.final_observations[n].numpy()[None]
        actions = demonstrations.actions[n, :length].numpy()
        trajectories.append(Trajectory(obs=np.concatenate([observations, final]).astype(np.float32),
                                       acts=actions, infos=None, terminal=bool(demonstrations.terminated[n])))
    return trajectories


class _Evaluator:
    """Evaluates a policy on the true reward (the shared schedule) and keeps the time it spends doing so."""

    def __init__(self, testbed: str, episodes: int) -> None:
        self.testbed, self.episodes, self.seconds = testbed, episodes, 0.0

    def __call__(self, policy: Any) -> float:
        from classic_rl.experts import evaluate_policy_return

        start = time.perf_counter()
        value = evaluate_policy_return(policy, self.testbed, self.episodes, seed=EVAL_SEED, deterministic=True)[0]
        self.seconds += time.perf_counter() - start
        return value


def worker_prepare(task: dict[str, Any]) -> dict[str, Any]:
    """Expert (cached), demonstrations (.npz for every method), expert and random returns."""
    from classic_rl.experts import random_policy_return, rollout_demonstrations, train_expert

    _torch_setup(0)
    testbed = task["testbed"]
    expert = train_expert(testbed)
    demos = rollout_demonstrations(expert, testbed, task["demonstrations"], seed=DEMONSTRATION_SEED)
    assert demos.terminated is not None and demos.final_observations is not None and demos.returns is not None
    arrays: dict[str, np.ndarray] = {
        "observations": demos.observations.numpy(), "actions": demos.actions.numpy(),
        "lengths": demos.lengths.numpy(), "terminated": demos.terminated.numpy(),
        "final_observations": demos.final_observations.numpy(), "returns": demos.returns.numpy()}
    path = Path(task["demonstrations_file"])
    with open(path, "wb") as file:
        np.savez(file, **cast(dict[str, Any], arrays))  # (numpy's stub reads a ** dict as maybe allow_pickle)
    digest = hashlib.sha256()
    for key in sorted(arrays):
        digest.update(np.ascontiguousarray(arrays[key]).tobytes())
    expert_return = _Evaluator(testbed, task["eval_episodes"])(expert)
    random_return = random_policy_return(testbed, RANDOM_EPISODES, seed=EVAL_SEED)[0]
    return {"expert_return": expert_return, "random_return": random_return,
            "demonstration_returns": demos.returns.tolist(), "demonstration_lengths": demos.lengths.tolist(),
            "demonstration_terminated": demos.terminated.tolist(), "demonstrations_sha256": digest.hexdigest(),
            "expert_algorithm": type(expert).__name__}


def worker_ours(task: dict[str, Any]) -> dict[str, Any]:
    """ML-IRL through ``run_gym_irl`` (BilevelSolver + SB3InnerSolver), one outer step per PPO rollout of ``R``
    env steps, evaluated every ``eval_every / R`` outer steps.

    ``BilevelSolver`` solves the inner problem once before its first outer step (to take the first
    hypergradient) and once after each, so ``budget / R − 1`` outer steps spend exactly the budget; its
    evaluations therefore fall one rollout after imitation's (at ``k · eval_every + R`` env steps).
    """
    import classic_rl.gym_irl as gym_irl
    from irl_bilevel.reward_io import load_reward_model

    _torch_setup(task["seed"])
    spec = task["spec"]
    every, rollout = spec["eval_every"], spec["rollout"]
    hyperparameters = {k: v for k, v in spec["ppo"].items() if k != "gamma"}
    config = gym_irl.GymIRLConfig(
        env_id=task["testbed"], algorithm="ppo", hyperparameters=hyperparameters, n_envs=spec["n_envs"],
        discount=float(spec["ppo"].get("gamma", 0.99)), num_demonstrations=task["demonstrations"],
        demonstrations_file=task["demonstrations_file"], outer_steps=max(1, spec["budget"] // rollout - 1),
        env_steps_per_outer_step=rollout, eval_every=every // rollout, eval_episodes=task["eval_episodes"],
        transfer_steps=spec["transfer_budget"],
        seed=task["seed"], demonstration_seed=DEMONSTRATION_SEED, eval_seed=EVAL_SEED, checkpoint_every=10**6,
        **OURS_SETTINGS)
    # run_gym_irl evaluates through gym_irl.evaluate_policy_return (deterministic, eval_seed, eval_episodes) and
    # trains the transfer policy with a second SB3InnerSolver: time both, so that neither counts as training.
    original_evaluate = gym_irl.evaluate_policy_return
    evaluations: list[float] = []
    solves: list[tuple[int, float]] = []

    def timed_evaluate(*args: Any, **kwargs: Any):
        start = time.perf_counter()
        try:
            return original_evaluate(*args, **kwargs)
        finally:
            evaluations.append(time.perf_counter() - start)

    class TimedSolver(gym_irl.SB3InnerSolver):
        def solve(self, reward_model: Any) -> None:
            start = time.perf_counter()
            super().solve(reward_model)
            solves.append((self.env_steps_per_outer_step, time.perf_counter() - start))

    with mock.patch.object(gym_irl, "evaluate_policy_return", timed_evaluate), \
            mock.patch.object(gym_irl, "SB3InnerSolver", TimedSolver), \
            tempfile.TemporaryDirectory(prefix="irl-bench-ours-") as folder:
        summary = gym_irl.run_gym_irl(config, Path(folder), progress=False)
        rows = [json.loads(line) for line in (Path(folder) / "metrics.jsonl").read_text().splitlines()]
        reward, _ = load_reward_model(folder)
        epic = epic_distance(task["testbed"], reward, _load_demonstrations(Path(task["demonstrations_file"])),
                             config.discount)
        rows = [row for row in rows if "true_return" in row]  # the evaluated outer steps
    eval_s = sum(evaluations[:len(rows)])  # one per evaluated outer step; the last call evaluates the transfer
    return {"env_steps": [int(r["env_steps"]) for r in rows], "true_return": [float(r["true_return"]) for r in rows],
            "train_s": summary["wall_s"] - eval_s, "eval_s": eval_s, "train_with_eval_s": summary["wall_s"],
            "transfer_true_return": summary["transfer_true_return"], "transfer_env_steps": spec["transfer_budget"],
            "transfer_s": solves[-1][1], "epic_distance": epic}


def _ppo(testbed: str, spec: dict[str, Any], seed: int, venv):
    from stable_baselines3 import PPO

    from classic_rl.experts import without_log_folder

    return without_log_folder(PPO("MlpPolicy", venv, seed=seed, device="cpu", verbose=0, **spec["ppo"]))


def _venv(testbed: str, spec: dict[str, Any], seed: int):
    from stable_baselines3.common.env_util import make_vec_env

    return make_vec_env(testbed, n_envs=spec["n_envs"], seed=seed)


def worker_adversarial(task: dict[str, Any], method: str) -> dict[str, Any]:
    """imitation's AIRL or GAIL with the shared PPO generator; evaluation after every round."""
    from imitation.algorithms.adversarial.airl import AIRL
    from imitation.algorithms.adversarial.gail import GAIL
    from imitation.rewards.reward_nets import BasicRewardNet, BasicShapedRewardNet
    from imitation.rewards.reward_wrapper import RewardVecEnvWrapper
    from imitation.util import logger as imitation_logger
    from imitation.util.networks import RunningNorm

    seed, testbed, spec = task["seed"], task["testbed"], task["spec"]
    _torch_setup(seed)
    demonstrations = _load_demonstrations(Path(task["demonstrations_file"]))
    trajectories = _imitation_trajectories(demonstrations)
    transitions = sum(len(t) for t in trajectories)
    settings = IMITATION_SETTINGS[method]
    venv = _venv(testbed, spec, seed)
    learner = _ppo(testbed, spec, seed, venv)
    net_class = BasicShapedRewardNet if method == "airl" else BasicRewardNet
    reward_net = net_class(venv.observation_space, venv.action_space, normalize_input_layer=RunningNorm)
    trainer_class = AIRL if method == "airl" else GAIL
    with tempfile.TemporaryDirectory(prefix=f"irl-bench-{method}-") as folder:
        trainer = trainer_class(
            demonstrations=trajectories, demo_batch_size=min(settings["demo_batch_size"], transitions),
            gen_replay_buffer_capacity=settings["gen_replay_buffer_capacity"],
            n_disc_updates_per_round=settings["n_disc_updates_per_round"], venv=venv, gen_algo=learner,
            reward_net=reward_net, allow_variable_horizon=True, log_dir=folder,
            custom_logger=imitation_logger.configure(folder, format_strs=[]))
        evaluator = _Evaluator(testbed, task["eval_episodes"])
        steps: list[int] = []
        returns: list[float] = []

        def after_round(_round: int) -> None:
            if learner.num_timesteps % spec["eval_every"] == 0:
                steps.append(int(learner.num_timesteps))
                returns.append(evaluator(learner))

        start = time.perf_counter()
        trainer.train(total_timesteps=spec["budget"], callback=after_round)
        with_eval = time.perf_counter() - start

        reward_test = trainer.reward_test
        reward_test.eval()
        epic = epic_distance(testbed, imitation_reward_function(reward_test, int(np.prod(venv.observation_space.shape)),
                                                                hasattr(venv.action_space, "n")),
                             demonstrations, float(spec["ppo"].get("gamma", 0.99)))
        transfer_venv = RewardVecEnvWrapper(_venv(testbed, spec, seed + TRANSFER_SEED_OFFSET),
                                            reward_fn=reward_test.predict_processed)
        transfer = _ppo(testbed, spec, seed + TRANSFER_SEED_OFFSET, transfer_venv)
        start = time.perf_counter()
        transfer.learn(total_timesteps=spec["transfer_budget"])
        transfer_s = time.perf_counter() - start
        transfer_return = _Evaluator(testbed, task["eval_episodes"])(transfer)
        transfer_venv.close()
    venv.close()
    return {"env_steps": steps, "true_return": returns, "train_s": with_eval - evaluator.seconds,
            "eval_s": evaluator.seconds, "train_with_eval_s": with_eval, "transfer_true_return": transfer_return,
            "transfer_env_steps": spec["transfer_budget"], "transfer_s": transfer_s, "epic_distance": epic,
            "demo_batch_size": min(settings["demo_batch_size"], transitions)}


def worker_true_reward(task: dict[str, Any]) -> dict[str, Any]:
    """The reference: the shared PPO dict trained on the env's own reward for the budget, evaluated on the same
    schedule as AIRL and GAIL (after every ``eval_every`` env steps). What these PPO settings reach at this budget
    when the reward is the true one: a testbed where it stays near 0 cannot separate the learned rewards."""
    seed, testbed, spec = task["seed"], task["testbed"], task["spec"]
    _torch_setup(seed)
    venv = _venv(testbed, spec, seed)
    learner = _ppo(testbed, spec, seed, venv)
    evaluator = _Evaluator(testbed, task["eval_episodes"])
    steps: list[int] = []
    returns: list[float] = []
    start = time.perf_counter()
    while learner.num_timesteps < spec["budget"]:
        # learn() in chunks continues the same rollouts (reset_num_timesteps=False keeps the last observations)
        learner.learn(total_timesteps=spec["eval_every"], reset_num_timesteps=False)
        steps.append(int(learner.num_timesteps))
        returns.append(evaluator(learner))
    with_eval = time.perf_counter() - start
    venv.close()
    return {"env_steps": steps, "true_return": returns, "train_s": with_eval - evaluator.seconds,
            "eval_s": evaluator.seconds, "train_with_eval_s": with_eval, "transfer_true_return": None}


def worker_bc(task: dict[str, Any]) -> dict[str, Any]:
    """imitation's BC (defaults, ``BC_EPOCHS`` epochs) on the same demonstrations; no env steps."""
    import gymnasium as gym
    from imitation.algorithms import bc
    from imitation.data import rollout
    from imitation.util import logger as imitation_logger

    seed, testbed = task["seed"], task["testbed"]
    _torch_setup(seed)
    trajectories = _imitation_trajectories(_load_demonstrations(Path(task["demonstrations_file"])))
    env = gym.make(testbed)
    with tempfile.TemporaryDirectory(prefix="irl-bench-bc-") as folder:
        trainer = bc.BC(observation_space=env.observation_space, action_space=env.action_space,
                        rng=np.random.default_rng(seed), demonstrations=rollout.flatten_trajectories(trajectories),
                        device="cpu", custom_logger=imitation_logger.configure(folder, format_strs=[]))
        start = time.perf_counter()
        trainer.train(n_epochs=BC_EPOCHS, progress_bar=False, log_interval=10**9)
        train_s = time.perf_counter() - start
    env.close()
    evaluator = _Evaluator(testbed, task["eval_episodes"])
    value = evaluator(trainer.policy)
    return {"env_steps": [0], "true_return": [value], "train_s": train_s, "eval_s": evaluator.seconds,
            "train_with_eval_s": train_s + evaluator.seconds, "transfer_true_return": None}


def run_worker(args: argparse.Namespace) -> None:
    os.environ.setdefault("TQDM_DISABLE", "1")
    task = json.loads(Path(args.task).read_text())
    role = args.worker
    if role == "prepare":
        result = worker_prepare(task)
    elif role == "ours":
        result = worker_ours(task)
    elif role in ("airl", "gail"):
        result = worker_adversarial(task, role)
    elif role == "true_reward":
        result = worker_true_reward(task)
    else:
        result = worker_bc(task)
    result["load_average"] = os.getloadavg()
    Path(args.result).write_text(json.dumps(result))


def _spawn(role: str, task: dict[str, Any], work: Path) -> dict[str, Any]:
    name = f"{task['testbed']}-{role}-{task.get('seed', 'x')}"
    task_path, result_path = work / f"{name}.task.json", work / f"{name}.result.json"
    task_path.write_text(json.dumps(task))
    start = time.perf_counter()
    returncode = run_worker_process(__file__, role, {"task": str(task_path), "result": str(result_path)},
                                    environment={"TQDM_DISABLE": "1", "TMPDIR": str(work)})
    if returncode != 0:
        raise SystemExit(f"worker {role} on {task['testbed']} (seed {task.get('seed')}) failed with exit code "
                         f"{returncode}")
    result = json.loads(result_path.read_text())
    result["process_wall_s"] = time.perf_counter() - start
    return result


# ---------------------------------------------------------------------- driver
def _write(path: Path, report: dict[str, Any]) -> None:
    from irl_bilevel.runs import write_json

    write_json(path, report)


def _cell_key(testbed: str, method: str, seed: int) -> str:
    return f"{testbed}/{method}/{seed}"


def score_cell(cell: dict[str, Any], reference: dict[str, Any], budget: int) -> None:
    """Add the normalized curve, the score at the budget and at half of it, steps to 0.9, transfer score."""
    random, expert = reference["random_return"], reference["expert_return"]
    curve = [normalized(v, random, expert) for v in cell["true_return"]]
    cell["normalized_return"] = curve
    cell["final_normalized_return"] = score_at(cell["env_steps"], curve, budget)
    cell["half_budget_normalized_return"] = score_at(cell["env_steps"], curve, budget / 2)
    cell["env_steps_to_target"] = first_crossing(cell["env_steps"], curve)
    transfer = cell.get("transfer_true_return")
    cell["transfer_normalized_return"] = None if transfer is None else normalized(transfer, random, expert)


def _ratio(ours: float, theirs: float) -> float | None:
    """``ours / theirs``; None where it means nothing (a non-finite value, or ``theirs <= 0``)."""
    if not (math.isfinite(ours) and math.isfinite(theirs)) or theirs <= 0:
        return None
    return ours / theirs


def summarize(report: dict[str, Any]) -> dict[str, Any]:
    """IQM with 95% bootstrap CIs over seeds per (testbed, method), ratios ours / theirs, and the goal check."""
    from irl_bilevel.statistics import iqm_with_ci

    cells, proto = report["cells"], report["protocol"]
    summary: dict[str, Any] = {}
    for testbed, spec in proto["testbeds"].items():
        per_method: dict[str, Any] = {}
        runs_of: dict[str, list[dict[str, Any]]] = {}
        for method in METHODS:
            runs = runs_of[method] = [cells[_cell_key(testbed, method, s)] for s in proto["seeds"]
                                      if _cell_key(testbed, method, s) in cells]
            if not runs:
                continue

            def stat(key: str, runs: list[dict[str, Any]] = runs) -> dict[str, float]:
                values = [math.nan if r.get(key) is None else float(r[key]) for r in runs]
                return iqm_with_ci(values)

            reached = [r["env_steps_to_target"] for r in runs]
            per_method[method] = {
                "seeds": len(runs), "final_normalized_return": stat("final_normalized_return"),
                "half_budget_normalized_return": stat("half_budget_normalized_return"),
                "env_steps_to_target": stat("env_steps_to_target"),
                "seeds_reaching_target": sum(r is not None for r in reached),
                "transfer_normalized_return": stat("transfer_normalized_return"),
                "epic_distance": stat("epic_distance"),
                "train_s": stat("train_s"),
            }
        ratios: dict[str, Any] = {}
        goal: dict[str, Any] = {}
        ours = per_method.get("ours")
        for baseline in ("airl", "gail"):
            theirs = per_method.get(baseline)
            if ours is None or theirs is None:
                continue
            ratios[f"ours_over_{baseline}"] = {
                key: _ratio(ours[key]["iqm"], theirs[key]["iqm"])
                for key in ("final_normalized_return", "env_steps_to_target", "transfer_normalized_return",
                            "train_s")
            }
            goal[f"return_at_half_budget_vs_{baseline}"] = {
                "ours_at_half_budget": ours["half_budget_normalized_return"]["iqm"],
                f"{baseline}_at_budget": theirs["final_normalized_return"]["iqm"],
                "met": bool(ours["half_budget_normalized_return"]["iqm"]
                            >= theirs["final_normalized_return"]["iqm"]),
            }
        if ours is not None and "airl" in per_method:
            difference = (ours["transfer_normalized_return"]["iqm"]
                          - per_method["airl"]["transfer_normalized_return"]["iqm"])
            goal["transfer_vs_airl"] = {"difference": difference, "met": bool(difference >= CLEARLY_BETTER)}
        reference = runs_of["true_reward"]
        # Decidable: PPO on the true reward (same settings, seeds, budget) reaches TARGET at the budget. Where it
        # does not, no learned reward can show a better return or transfer, and the checks say nothing (None).
        decidable = None if not reference else bool(
            per_method["true_reward"]["final_normalized_return"]["iqm"] >= TARGET)
        if decidable is False:
            goal = {name: {**check, "met": None} for name, check in goal.items()}
        summary[testbed] = {"budget": spec["budget"], "methods": per_method, "ratios": ratios, "goal": goal,
                            "decidable": decidable}
        if reference:  # what PPO reaches on the true reward after as many steps as a transfer run takes
            summary[testbed]["true_reward_at_transfer_budget"] = iqm_with_ci(
                [score_at(r["env_steps"], r["normalized_return"], spec["transfer_budget"]) for r in reference])
    verdicts = [g["met"] for entry in summary.values() for g in entry["goal"].values() if g["met"] is not None]
    # None: not evaluated (a run without ours, AIRL or GAIL, e.g. the reference alone, or no decidable testbed),
    # which is not "not met"
    summary["goal_met"] = all(verdicts) if verdicts else None
    summary["goal"] = (f"ours' IQM normalized return at half the budget >= AIRL's and GAIL's at the full budget on "
                       f"every testbed, and ours' reward-transfer IQM >= AIRL's + {CLEARLY_BETTER}")
    return summary


def _fmt(value: Any, spec: str = ".2f") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return format(value, spec)


def print_table(summary: dict[str, Any]) -> None:
    print(f"{'testbed':<16}{'method':<7}{'final':>14}{'@half':>8}{'steps→0.9':>16}{'transfer':>10}{'EPIC':>7}"
          f"{'train s':>9}")
    for testbed, entry in summary.items():
        if not isinstance(entry, dict) or "methods" not in entry:
            continue
        for method, m in entry["methods"].items():
            final = m["final_normalized_return"]
            print(f"{testbed:<16}{method:<7}{_fmt(final['iqm']):>6} [{_fmt(final['low'])},{_fmt(final['high'])}]"
                  f"{_fmt(m['half_budget_normalized_return']['iqm']):>8}"
                  f"{_fmt(m['env_steps_to_target']['iqm'], '.0f'):>10} ({m['seeds_reaching_target']}/{m['seeds']})"
                  f"{_fmt(m['transfer_normalized_return']['iqm']):>10}"
                  f"{_fmt(m.get('epic_distance', {}).get('iqm')):>7}{_fmt(m['train_s']['iqm'], '.1f'):>9}")
        for name, ratio in entry["ratios"].items():
            print(f"   {name}: return {_fmt(ratio['final_normalized_return'])}, steps→0.9 "
                  f"{_fmt(ratio['env_steps_to_target'])}, transfer {_fmt(ratio['transfer_normalized_return'])}, "
                  f"train time {_fmt(ratio['train_s'])}")
        if "true_reward_at_transfer_budget" in entry:
            print(f"   PPO on the true reward after the transfer budget: "
                  f"{_fmt(entry['true_reward_at_transfer_budget']['iqm'])}")
        if entry.get("decidable") is False:
            print("   not decidable: PPO on the true reward stays below the target at this budget")
        for name, verdict in entry["goal"].items():
            status = {True: "met", False: "NOT met", None: "not decidable"}[verdict["met"]]
            print(f"   goal {name}: {status} "
                  f"({', '.join(f'{k} {_fmt(v)}' for k, v in verdict.items() if k != 'met')})")
    verdict = {True: "MET", False: "NOT met",
               None: "not evaluated (needs ours and AIRL or GAIL on a decidable testbed)"}[summary["goal_met"]]
    print(f"goal ({summary['goal']}): {verdict}")


def run_driver(args: argparse.Namespace) -> None:
    scale = args.scale
    testbeds = args.testbeds or DEFAULT_TESTBEDS[scale]
    for name in testbeds:
        if name not in TESTBEDS:
            raise ValidationError(f"--testbeds: unknown testbed {name!r}; expected some of {list(TESTBEDS)}")
    seeds = args.seeds if args.seeds is not None else SEEDS[scale]
    if seeds < 1:
        raise ValidationError(f"--seeds: expected at least 1, got {seeds}")
    if args.demonstrations < 1:
        raise ValidationError(f"--demonstrations: expected at least 1, got {args.demonstrations}")
    methods = args.methods or list(METHODS)
    proto = protocol(scale, testbeds, seeds, args.demonstrations)
    output = Path(args.output)
    cells: dict[str, Any] = {}
    references: dict[str, Any] = {}
    started = datetime.datetime.now(datetime.timezone.utc)
    previous_wall = 0.0
    first_started = started.isoformat(timespec="seconds")
    if output.exists() and not args.fresh:
        existing = json.loads(output.read_text())
        if existing.get("protocol") != json.loads(json.dumps(proto)):
            raise ValidationError(f"--output: {output} holds a run with a different protocol; pass --fresh to "
                                  f"overwrite it or choose another --output")
        cells, references = existing.get("cells", {}), existing.get("references", {})
        previous_wall = float(existing.get("wall_seconds", 0.0))
        first_started = existing.get("date", first_started)
        print(f"resuming {output}: {len(cells)} cells done", flush=True)
    report: dict[str, Any] = {
        "benchmark": "irl_vs_imitation", "scale": scale, "date": first_started,
        "last_invocation": started.isoformat(timespec="seconds"),
        "git": git_state(ROOT), "versions": package_versions(),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "torch_threads_per_worker": 1,
                    "note": "shared machine; cells run one at a time, each in a fresh process"},
        "seeds": proto["seeds"], "protocol": proto, "references": references, "cells": cells,
    }
    clock = time.perf_counter()

    def save() -> None:
        report["wall_seconds"] = previous_wall + time.perf_counter() - clock
        report["summary"] = summarize(report)
        _write(output, report)

    with tempfile.TemporaryDirectory(prefix="irl-bench-") as tmp:
        work = Path(tmp)
        for testbed in testbeds:
            spec = proto["testbeds"][testbed]
            demos = work / f"{testbed}-demonstrations.npz"
            base = {"testbed": testbed, "spec": spec, "demonstrations": args.demonstrations,
                    "demonstrations_file": str(demos), "eval_episodes": proto["eval_episodes"]}
            print(f"== {testbed}: budget {spec['budget']}, transfer {spec['transfer_budget']}, eval every "
                  f"{spec['eval_every']}", flush=True)
            pending = [(seed, method) for seed in proto["seeds"] for method in methods
                       if _cell_key(testbed, method, seed) not in cells]
            if not pending:
                print("   every cell already done", flush=True)
                continue
            reference = _spawn("prepare", base, work)
            recorded = references.get(testbed)
            if recorded and recorded["demonstrations_sha256"] != reference["demonstrations_sha256"]:
                raise SystemExit(f"{testbed}: the demonstrations differ from the recorded run's; rerun with --fresh")
            references[testbed] = recorded or reference
            print(f"   expert {reference['expert_return']:.1f}, random {reference['random_return']:.1f}", flush=True)
            for seed, method in pending:
                cell = _spawn(method, {**base, "seed": seed}, work)
                cell.update(testbed=testbed, method=method, seed=seed)
                score_cell(cell, references[testbed], spec["budget"])
                cells[_cell_key(testbed, method, seed)] = cell
                print(f"   {method:<5} seed {seed}: final {_fmt(cell['final_normalized_return'])}, "
                      f"steps→0.9 {cell['env_steps_to_target']}, transfer "
                      f"{_fmt(cell['transfer_normalized_return'])}, train {cell['train_s']:.1f} s "
                      f"(process {cell['process_wall_s']:.1f} s)", flush=True)
                save()
    save()
    print()
    print_table(report["summary"])
    print(f"wrote {output} ({report['wall_seconds']:.0f} s)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_scale_flags(parser, {"quick": "5 seeds, quick budgets (the default)",
                             "full": "5 seeds, the full budgets of TESTBEDS",
                             "smoke": "1 seed, CartPole only, a few thousand steps"})
    parser.add_argument("--testbeds", nargs="+", help=f"subset of {list(TESTBEDS)}")
    parser.add_argument("--methods", nargs="+", choices=METHODS, help="subset of the methods (default all)")
    parser.add_argument("--seeds", type=int, help="number of seeds (0..n-1); default 1 / 3 / 5 by scale")
    parser.add_argument("--demonstrations", type=int, default=10, help="expert episodes given to every method")
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT))
    parser.add_argument("--fresh", action="store_true", help="ignore (overwrite) an existing output file")
    worker_or_driver(parser, argv, ("prepare", *METHODS), ("task", "result"), run_worker, run_driver)


if __name__ == "__main__":
    main()
