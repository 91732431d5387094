"""The SB3 inner solver: on-policy PPO / A2C or off-policy SAC / DQN trained on the current learned reward,
warm-started across outer steps, through :class:`classic_rl.learned_reward_env.LearnedRewardVecEnv` (whose docstring
gives the termination, shaping and truncation conventions).

Learner samples: the wrapper records the last ``learner_steps`` transitions it stepped (by default one rollout,
``n_steps · n_envs``), with each step's time index ``t`` inside its episode, so that
``learner_reward_expectation`` is ``Σ γ^t r_θ / Σ γ^t`` over them (plus the absorbing rows), differentiable in
θ: the learner term of the ML-IRL gradient (Zeng et al. 2022). In a steady stream of episodes the share of
window steps at time ``t`` is proportional to the probability of being alive at ``t``, so this estimates the
normalized discounted occupancy. The recorded rollout was collected by the policy before the last PPO update.

Off-policy (``"sac"``, ``"dqn"``): the same wrapper labels new transitions; at the start of every ``solve`` the
whole replay buffer is relabelled with the current reward model (same convention, absorbing value on terminal
transitions, SB3's stored scaled actions unscaled first). The reward model is fixed during a ``solve``, so this is
the same as relabelling before every ``train()`` call, at one pass over the buffer per outer step.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from classic_rl.experts import algorithm_class, float32_default, sb3_argument_error, without_log_folder
from classic_rl.learned_reward_env import LearnedRewardVecEnv, recorded_transitions
from classic_rl.sb3_penalty import SB3UpperPolicy
from classic_rl.sb3_policy import SB3Policy
from irl_bilevel.inner import WeightedTransitionsExpectation, weighted_reward_mean
from irl_bilevel.objectives import sample_rows
from irl_bilevel.rewards import RewardModel, Transitions
from irl_bilevel.validation import ValidationError

ON_POLICY = ("ppo", "a2c")
OFF_POLICY = ("sac", "dqn")


def gym_env_spec(env_id: str) -> Any:
    """The gymnasium ``EnvSpec`` of ``env_id``: a registered id (``CartPole-v1``) or gymnasium's
    ``module:EnvName-vN`` form, whose module is imported first (importing it registers the env), as ``gym.make``
    does. A ValidationError names ``env_id`` when the module cannot be imported or registers no such env."""
    module, _, name = env_id.rpartition(":")
    if module:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise ValidationError(f"env_id: cannot import {module!r}, the module that should register {name!r} "
                                  f"({error})") from error
    try:
        return gym.spec(name)
    except gym.error.Error as error:
        where = f" after importing {module!r}" if module else ""
        raise ValidationError(f"env_id: unknown gymnasium environment {name!r}{where}; expected a registered id "
                              f"such as CartPole-v1 or module:EnvName-v0 for your own ({error})") from error


def check_occupancy_discount(value: float | None) -> None:
    """``occupancy_discount`` must be ``None`` (the RL discount) or in ``[0, 1)`` (the occupancy weights' series
    must converge)."""
    if value is not None and not 0.0 <= value < 1.0:
        raise ValidationError(f"occupancy_discount: expected 0 <= occupancy_discount < 1 (or null: the agent's "
                              f"discount), got {value}")


class SB3InnerSolver(WeightedTransitionsExpectation):
    """``irl_bilevel.inner.InnerSolver`` backed by SB3 PPO, A2C (on-policy) or SAC, DQN (off-policy, relabelled).

    ``solve(reward_model)`` continues training the same SB3 model for ``env_steps_per_outer_step`` more env
    steps on the current learned reward (``learn(..., reset_num_timesteps=False)``: warm start; the running
    episodes carry over as well). SB3 rounds each call up to whole rollouts of ``n_steps · n_envs``
    (on-policy) or of ``train_freq`` (off-policy). ``learner_steps`` (default: one rollout on-policy, 1000
    steps off-policy) is how many of the latest stepped transitions ``learner_reward_expectation`` averages.
    ``learner_reward_expectation`` reads the recorded learner transitions (module docstring);
    ``log_partition`` is None (unknown for a sampled policy). ``learner_solves = k > 1`` keeps the records of the
    last ``k`` solves (``k · learner_steps`` transitions): the learner term then averages over the mixture of the
    ``k`` most recent policies, as GAIL/AIRL discriminators train on a replay of past generator samples, so the
    reward keeps ranking the states the learner has just left below the expert's (not in checkpoints: a resumed
    run starts with one solve's records). ``occupancy_discount`` (default: the RL discount ``gamma``) is the ``γ`` of
    the learner's occupancy weights ``γ^t`` (absorbing rows ``γ^{t+1}/(1 − γ)``): a value closer to 1 than the RL
    discount spreads the IRL gradient over the whole episode (with ``γ = 0.99``, steps after 300 weigh under 5%),
    as adversarial IRL's discriminators weigh every sample alike; the expert's side must use the same value.

    ``state_dict`` holds the policy's (and value network's) parameters, its optimizer's moments, the step and
    solve counts, the reward normalizer's statistics and numpy's global generator (SB3 shuffles minibatches with
    it), as tensors and plain containers (checkpoints load with ``weights_only=True``); the bilevel solver's
    checkpoint restores torch's generator, which SB3 samples actions from. Not in it: the running episodes, the
    recorded learner transitions (the next ``solve`` records new ones) and, off-policy, the replay buffer (SAC's
    and DQN's target networks are part of the policy's state and are restored). ``restart_episodes=True`` starts
    every ``solve`` with fresh episodes seeded by the solve count (the unfinished ones are cut, as at a time
    limit), so that nothing outside ``state_dict`` carries over and an on-policy run resumed from a checkpoint
    continues exactly as the uninterrupted run. ``add_env_reward=True`` trains on ``r_env + r_θ`` (shaping; the
    module docstring). ``wrapper_class`` wraps every env (e.g. a fixed observation rescaling); the reward model then
    reads the wrapped observations.
    """

    def __init__(
        self,
        env_id: str,
        algorithm: str = "ppo",
        env_steps_per_outer_step: int = 2048,
        n_envs: int = 1,
        hyperparameters: dict[str, Any] | None = None,
        seed: int = 0,
        termination: str = "absorbing",
        normalize_reward: bool = False,
        learner_steps: int | None = None,
        learner_solves: int = 1,
        occupancy_discount: float | None = None,
        absorbing_indicator: bool = False,
        restart_episodes: bool = False,
        add_env_reward: bool = False,
        wrapper_class: Callable[[gym.Env], gym.Env] | None = None,
    ) -> None:
        from stable_baselines3.common.env_util import make_vec_env

        if algorithm not in ON_POLICY + OFF_POLICY:
            raise ValidationError(f"algorithm: SB3InnerSolver supports {ON_POLICY + OFF_POLICY}, got {algorithm!r}")
        if env_steps_per_outer_step < 1:
            raise ValidationError(f"env_steps_per_outer_step: expected a positive budget, got "
                                  f"{env_steps_per_outer_step}")
        if n_envs < 1:
            raise ValidationError(f"n_envs: expected at least 1, got {n_envs}")
        if add_env_reward and algorithm not in ON_POLICY:
            raise ValidationError(f"add_env_reward: supported for on-policy algorithms {ON_POLICY}, got {algorithm!r}")
        gym_env_spec(env_id)
        self.env_id, self.algorithm, self.seed = env_id, algorithm, seed
        self.env_steps_per_outer_step = int(env_steps_per_outer_step)
        hyperparameters = dict(hyperparameters or {})
        cls = algorithm_class(algorithm)
        if algorithm in ON_POLICY:
            n_steps = hyperparameters.get("n_steps", 2048 if algorithm == "ppo" else 5)
            if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
                raise ValidationError(f"hyperparameters.n_steps: expected a positive integer, got {n_steps!r}")
        else:
            if hyperparameters.get("optimize_memory_usage"):
                raise ValidationError("hyperparameters: optimize_memory_usage is not supported (relabelling needs "
                                      "the stored next observations)")
            n_steps = 1000
        discount = hyperparameters.get("gamma", 0.99)
        if isinstance(discount, bool) or not isinstance(discount, (int, float)) or not 0 <= discount <= 1:
            raise ValidationError(f"hyperparameters.gamma: expected a discount in [0, 1], got {discount!r}")
        discount = float(discount)
        record = learner_steps if learner_steps is not None else n_steps * n_envs
        if record < 1:
            raise ValidationError(f"learner_steps: expected at least 1, got {record}")
        if learner_solves < 1:
            raise ValidationError(f"learner_solves: expected at least 1, got {learner_solves}")
        self.learner_solves = int(learner_solves)
        check_occupancy_discount(occupancy_discount)
        with float32_default():
            venv = make_vec_env(env_id, n_envs=n_envs, seed=seed, wrapper_class=wrapper_class)
            try:
                self.env = LearnedRewardVecEnv(venv, discount, termination, normalize_reward,
                                               record * self.learner_solves, absorbing_indicator, add_env_reward)
            except ValidationError:
                venv.close()
                raise
            try:
                self.model = without_log_folder(cls("MlpPolicy", self.env, seed=seed, device="cpu", verbose=0,
                                                    **hyperparameters))
            except (AssertionError, TypeError, ValueError) as error:  # SB3's checks of its arguments
                self.env.close()
                raise sb3_argument_error(error, algorithm, env_id, "algorithm", "hyperparameters",
                                         hyperparameters) from error
        self.discount = discount
        self.occupancy_discount = discount if occupancy_discount is None else float(occupancy_discount)
        self.restart_episodes = restart_episodes
        self.wrapper_class = wrapper_class
        self.solves = 0
        # Env steps taken outside the inner loop on this solver's behalf (the penalty method's upper-policy
        # rollouts, classic_rl.sb3_penalty): counted in env_steps and checkpointed, so budgets stay honest.
        self.upper_env_steps = 0

    # ---- InnerSolver
    @property
    def policy(self) -> SB3Policy | None:
        """The current policy; None for DQN (a greedy policy has no useful log-probabilities)."""
        return None if self.algorithm == "dqn" else SB3Policy(self.model.policy, self.env.discrete)

    @property
    def env_steps(self) -> int:
        """Real environment steps taken so far in this process: the inner loop's plus ``upper_env_steps`` (rollouts
        of the penalty method's upper policy; those are also in the checkpoint)."""
        return int(self.env.real_env_steps) + int(self.upper_env_steps)

    def make_upper_policy(self, rollout_steps: int, seed: int = 0) -> Any:
        """A trainable copy of the current policy for the penalty hypergradient (``SampledPenaltyInner`` protocol
        of :mod:`irl_bilevel.hypergradients`): :class:`classic_rl.sb3_penalty.SB3UpperPolicy`."""
        return SB3UpperPolicy(self, rollout_steps, seed)

    def solve(self, reward_model: RewardModel) -> None:
        self.env.set_reward_model(reward_model)
        if self.learner_solves == 1:
            self.env.clear_records()
        if self.algorithm in OFF_POLICY:
            self.relabel_replay_buffer()
        if self.restart_episodes:
            # Fresh episodes from seeds fixed by the solve count: the state between solves is then only the
            # model, its optimizer and the random generators, all in state_dict(), so a resumed run is exact.
            self.env.seed(self.seed + 10_007 * (self.solves + 1))
            self.model._last_obs = self.env.reset()
            self.model._last_episode_starts = np.ones(self.env.num_envs, dtype=bool)
        with float32_default(), torch.enable_grad():
            self.model.learn(total_timesteps=self.env_steps_per_outer_step, reset_num_timesteps=False)
        self.solves += 1

    def relabel_replay_buffer(self, chunk: int = 65_536) -> int:
        """Rewrite the replay buffer's rewards with the wrapper's current reward model; returns the rows done."""
        buffer = getattr(self.model, "replay_buffer", None)
        if buffer is None:
            return 0
        size = buffer.buffer_size if buffer.full else buffer.pos
        if size == 0:
            return 0
        n_envs = buffer.n_envs
        rows = size * n_envs
        states = buffer.observations[:size].reshape(rows, -1)
        next_states = buffer.next_observations[:size].reshape(rows, -1)
        actions = buffer.actions[:size].reshape(rows, -1)
        if not self.env.discrete:
            actions = self.model.policy.unscale_action(actions)
        terminated = (buffer.dones[:size] * (1 - buffer.timeouts[:size])).reshape(rows).astype(bool)
        rewards = np.concatenate([
            self.env.learned_rewards(states[i:i + chunk], actions[i:i + chunk], next_states[i:i + chunk],
                                     terminated[i:i + chunk], update_statistics=False)
            for i in range(0, rows, chunk)
        ])
        buffer.rewards[:size] = rewards.reshape(size, n_envs)
        return rows

    def learner_transitions(
        self, num_samples: int | None = None, generator: torch.Generator | None = None
    ) -> tuple[Transitions, torch.Tensor]:
        """The recorded learner transitions (plus absorbing rows) and their weights ``γ^t`` (``γ^{t+1}/(1−γ)``)."""
        data = self.env.recorded()
        rows = sample_rows(len(data["time"]), num_samples, generator).numpy()
        return recorded_transitions(self.env, {key: value[rows] for key, value in data.items()},
                                    self.occupancy_discount)

    def learner_soft_value(self, reward_model: RewardModel, entropy: float = 0.0) -> float:
        """``V̂_θ(π*) = Σ w (r_θ − α log π*) / Σ w`` on the recorded learner transitions (raw ``r_θ``, weights of
        :meth:`learner_transitions`; ``α = entropy``): the penalty method's estimate of ``V*_θ``."""
        batch, weights = self.learner_transitions()
        with torch.no_grad():
            value = float(weighted_reward_mean(reward_model, batch, weights))
            policy = self.policy
            if entropy and policy is not None:
                data = self.env.recorded()
                log_prob = policy.log_prob(torch.from_numpy(data["states"]), torch.from_numpy(data["actions"]))
                steps = weights[: len(log_prob)]
                value -= entropy * float((steps * log_prob.to(torch.float64)).sum() / weights.sum())
        return value

    def log_partition(self) -> float | None:
        return None

    def recent_true_return(self) -> float:
        """Mean true return of the last (up to 100) finished training episodes (SB3's Monitor), NaN if none."""
        buffer = self.model.ep_info_buffer
        return float(np.mean([info["r"] for info in buffer])) if buffer else math.nan

    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain containers only (``torch.load(..., weights_only=True)`` reads them): the policy, its
        optimizer, the step and solve counts, the reward normalizer and numpy's global generator (SB3 shuffles
        minibatches with it)."""
        state: dict[str, Any] = {f"policy.{k}": v.detach().clone() for k, v in self.model.policy.state_dict().items()}
        stats = self.env.statistics
        state["num_timesteps"] = torch.tensor(int(self.model.num_timesteps))
        state["solves"] = torch.tensor(self.solves)
        state["upper_env_steps"] = torch.tensor(int(self.upper_env_steps))
        state["reward_statistics"] = torch.tensor([stats.count, stats.mean, stats.m2], dtype=torch.float64)
        state["optimizers"] = {name: self._attribute(name).state_dict() for name in self._optimizer_names()}
        for name in self._tensor_names():  # e.g. SAC's learned log entropy coefficient
            state[f"tensor.{name}"] = self._attribute(name).detach().clone()
        _, keys, position, has_gauss, cached = np.random.get_state()  # noqa: NPY002 (SB3 uses the global one)
        state["numpy_rng"] = {"keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                              "position": int(position), "has_gauss": int(has_gauss), "cached": float(cached)}
        return state

    def _optimizer_names(self) -> list[str]:
        """The optimizers SB3 itself saves (``policy.optimizer``; SAC's ``actor.optimizer``, ...)."""
        names, _ = self.model._get_torch_save_params()
        return [name for name in names if name != "policy" and self._attribute(name) is not None]

    def _tensor_names(self) -> list[str]:
        return list(self.model._get_torch_save_params()[1] or [])

    def _attribute(self, dotted: str) -> Any:
        value: Any = self.model
        for part in dotted.split("."):
            value = getattr(value, part)
        return value

    def load_state_dict(self, state: dict[str, Any]) -> None:
        policy = {k[len("policy."):]: v for k, v in state.items() if k.startswith("policy.")}
        if policy:
            self.model.policy.load_state_dict(policy)
        if "num_timesteps" in state:
            self.model.num_timesteps = int(state["num_timesteps"])
        if "solves" in state:
            self.solves = int(state["solves"])
        if "upper_env_steps" in state:
            self.upper_env_steps = int(state["upper_env_steps"])
        if "reward_statistics" in state:
            count, mean, m2 = (float(x) for x in state["reward_statistics"])
            self.env.statistics.count, self.env.statistics.mean, self.env.statistics.m2 = count, mean, m2
        for name, optimizer_state in state.get("optimizers", {}).items():
            self._attribute(name).load_state_dict(optimizer_state)
        for name in self._tensor_names():
            if f"tensor.{name}" in state:
                with torch.no_grad():
                    self._attribute(name).copy_(state[f"tensor.{name}"])
        if "numpy_rng" in state:
            rng = state["numpy_rng"]
            np.random.set_state(("MT19937", rng["keys"].numpy().astype(np.uint32), rng["position"],  # noqa: NPY002
                                 rng["has_gauss"], rng["cached"]))

    def close(self) -> None:
        self.env.close()
