"""The SB3 inner solver: on-policy PPO / A2C trained on the current learned reward, warm-started across outer steps.

``LearnedRewardVecEnv`` (an SB3 ``VecEnvWrapper``) replaces the environment's reward by the reward model's total
(batched over the vectorized envs, no gradient, optionally divided by a running root mean square) and keeps
the true reward in ``info["true_reward"]`` (SB3's ``Monitor`` below it still logs true episode returns).

Termination (``shared/design.md``, "Episode semantics"), ``termination=``:

* ``"absorbing"`` (default; Kostrikov et al. 2019's absorbing state, in closed form): a *terminated* episode
  continues forever in an absorbing state, the terminal observation with an all-zero action vector
  (``irl_bilevel.objectives.absorbing_transitions``). Rather than stepping through it, the terminal transition
  gets its discounted value: ``r_T = r_θ(s, a, s_f) + γ/(1 − γ) · r_θ(s_f, 0, s_f)``. Every episode then has the
  same (infinite) discounted length, so adding a constant to ``r_θ`` changes no policy's ranking: the sign of the
  learned reward can no longer teach the agent to end (or prolong) episodes. The absorbing reward is part of
  ``r_θ`` and is learned through the MaxEnt gradient like any other state (the learner samples and
  ``SampleMaxEntObjective`` both weight it by ``γ^{T}/(1 − γ)``). Transitions are passed with ``done = 0``
  (the episode continues in the absorbing state), so potential shaping telescopes through it.
  ``absorbing_indicator=True`` makes the absorbing state DAC's separate state ``[0, …, 0, 1]`` (reward inputs
  get one trailing indicator feature, 0 on real states; ``irl_bilevel.objectives.absorbing_transitions``) instead
  of the terminal observation. Use it for state-only rewards: without it a state-only reward's absorbing value is
  ``r_θ(s_f)``, its extrapolation to the edge of the state space, so each ML-IRL step lowers the reward on the side
  the learner just fell to and (a nearly linear ``r_θ``) raises it on the other, and the learner chases it
  (CartPole-v1: it falls as fast as possible). With the indicator, the absorbing reward is one learned value that
  every learner termination lowers.
* ``"none"``: the env's termination as is (``done = 1`` on terminal transitions, nothing after): biased for a
  learned *replacement* reward; for comparison only. With ``add_env_reward`` it is the natural choice: potential
  shaping then uses ``Φ(terminal) = 0`` (``PotentialShaping`` multiplies ``γΦ(s')`` by ``1 − done``), the
  episodic form of Ng et al. (1999) that keeps optimal policies. (For a potential, ``"absorbing"`` gives the same
  terminal reward: ``γΦ(s_f) − Φ(s) + γ/(1 − γ) · (γ − 1)Φ(s_f) = −Φ(s)``.)

Shaping (``add_env_reward=True``): the agent's reward is the environment's own reward plus the model's total,
``r_env + F_θ`` (the model is then a shaping term, e.g. ``PotentialShaping`` around a zero base); ``normalize``
scales only the model's part. On-policy only (relabelling a replay buffer would drop the env reward).

Truncation (time limit) is not termination: no absorbing state; SB3's on-policy algorithms bootstrap the value
of the truncated state themselves.

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

import math
from collections import deque
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.vec_env import VecEnvWrapper

from classic_rl.experts import algorithm_class, float32_default
from irl_bilevel.objectives import (
    absorbing_transitions,
    absorbing_vector,
    concatenate_transitions,
    sample_rows,
    weighted_reward_mean,
    with_absorbing_indicator,
)
from irl_bilevel.reward_ensemble import RewardEnsemble
from irl_bilevel.rewards import RewardModel, RewardOutput, Transitions
from irl_bilevel.validation import ValidationError

TERMINATION_MODES = ("absorbing", "none")
ON_POLICY = ("ppo", "a2c")
OFF_POLICY = ("sac", "dqn")


def reward_model_dtype(reward_model: RewardModel) -> torch.dtype:
    for parameter in reward_model.parameters():
        if parameter.dtype.is_floating_point:
            return parameter.dtype
    return torch.get_default_dtype()


def _action_dim(space: gym.Space) -> int:
    if isinstance(space, gym.spaces.Discrete):
        return int(space.n)
    if isinstance(space, gym.spaces.Box):
        return int(np.prod(space.shape))
    raise ValidationError(f"action_space: expected Discrete or Box, got {space}")


def check_reward_model(reward_model: RewardModel, obs_dim: int, action_dim: int) -> None:
    """Run the model on two dummy transitions; a shape mismatch becomes a ValidationError naming the field."""
    dtype = reward_model_dtype(reward_model)
    states = torch.zeros(2, obs_dim, dtype=dtype)
    actions = torch.zeros(2, action_dim, dtype=dtype)
    try:
        with torch.no_grad():
            reward_model(Transitions(states, actions, states, torch.zeros(2, dtype=torch.bool)))
    except (RuntimeError, ValueError) as error:
        uses = "states and actions" if reward_model.uses_actions else "states"
        raise ValidationError(
            f"reward_model: does not accept this env's transitions (states [*, {obs_dim}], actions [*, "
            f"{action_dim}]; it reads {uses}, so its input dimension should be "
            f"{obs_dim + (action_dim if reward_model.uses_actions else 0)}): {error}"
        ) from error


def check_occupancy_discount(value: float | None) -> None:
    """``occupancy_discount`` must be ``None`` (the RL discount) or in ``[0, 1)`` (the occupancy weights' series
    must converge)."""
    if value is not None and not 0.0 <= value < 1.0:
        raise ValidationError(f"occupancy_discount: expected 0 <= occupancy_discount < 1 (or null: the agent's "
                              f"discount), got {value}")


class AbsorbingAnchoredReward(RewardModel):
    """``r_θ(x) − r_θ(x_abs)``: the reward model shifted so that DAC's absorbing state (``[0, …, 0, 1]`` with a zero
    action, ``absorbing``) pays exactly 0; what the inner solver trains on.

    With absorbing termination every episode is infinitely long, so subtracting a constant from every reward (the
    absorbing one included) shifts every policy's discounted return by the same ``c / (1 − γ)``: the inner problem
    is unchanged. So are the outer losses: the preference likelihood (both segments of a query have ``L`` steps: the
    shift cancels) and the MaxEnt gradient (expert and learner expectations are weighted means: both shift by ``c``).
    What changes is the scale the agent sees: no ``γ/(1 − γ) · r_abs`` spike on terminal transitions, a termination
    simply ends the reward stream, as in the true CartPole-v1 (where ``r_abs = 0``). ``base``'s parameters are this
    module's parameters.
    """

    def __init__(self, base: RewardModel | RewardEnsemble, absorbing: Transitions) -> None:
        super().__init__(base.aspect_names, None, bool(getattr(base, "uses_actions", True)))
        self.base = base
        self.absorbing = absorbing

    @classmethod
    def for_env(cls, base: RewardModel | RewardEnsemble, env: LearnedRewardVecEnv) -> AbsorbingAnchoredReward:
        """Anchored at ``env``'s absorbing state (it must use DAC's indicator: one absorbing state for all)."""
        if not env.absorbing_indicator:
            raise ValidationError("absorbing_indicator: anchoring needs DAC's single absorbing state")
        return cls(base, absorbing_transitions(torch.zeros(1, env.obs_dim), env.action_dim, True))

    def forward(self, batch: Transitions) -> RewardOutput:
        output = self.base(batch)
        dtype = output.total.dtype
        anchor = self.base(self.absorbing.to(dtype))
        return RewardOutput(output.aspects - anchor.aspects, output.total - anchor.total, output.aspect_names)


class _RunningVariance:
    """Welford's running mean / variance of the learned per-step rewards (for scale normalization)."""


    def __init__(self) -> None:
        self.count, self.mean, self.m2 = 0.0, 0.0, 0.0

    def update(self, values: np.ndarray) -> None:
        for value in np.asarray(values, dtype=np.float64).reshape(-1):
            self.count += 1
            delta = value - self.mean
            self.mean += delta / self.count
            self.m2 += delta * (value - self.mean)

    @property
    def scale(self) -> float:
        """The running root mean square ``sqrt(E[r²])`` (a constant reward ``c`` is scaled to ``±1``)."""
        return math.sqrt(self.m2 / self.count + self.mean**2 + 1e-8) if self.count > 0 else 1.0


class LearnedRewardVecEnv(VecEnvWrapper):
    """A ``VecEnv`` whose rewards are the current reward model's (see the module docstring for termination).

    ``set_reward_model`` swaps the model between outer steps. ``normalize``: divide every learned reward (the
    absorbing value included) by the running root mean square of the per-step rewards, a positive scaling that
    changes no optimal policy (no centering: that would be a shift, harmless only with ``"absorbing"``).
    """

    def __init__(self, venv, discount: float, termination: str = "absorbing", normalize: bool = False,
                 record_steps: int = 0, absorbing_indicator: bool = False, add_env_reward: bool = False) -> None:
        super().__init__(venv)
        if termination not in TERMINATION_MODES:
            raise ValidationError(f"termination: expected one of {TERMINATION_MODES}, got {termination!r}")
        if not 0.0 <= discount < 1.0:
            raise ValidationError(f"discount: expected 0 <= discount < 1, got {discount}")
        if not isinstance(self.observation_space, gym.spaces.Box):
            raise ValidationError(f"observation_space: expected a Box, got {self.observation_space}")
        if absorbing_indicator and termination != "absorbing":
            raise ValidationError("absorbing_indicator: needs termination='absorbing'")
        self.discount, self.termination, self.normalize = discount, termination, normalize
        self.absorbing_indicator = absorbing_indicator
        self.add_env_reward = bool(add_env_reward)
        self.discrete = isinstance(self.action_space, gym.spaces.Discrete)
        self.obs_dim = int(np.prod(self.observation_space.shape))
        self.action_dim = _action_dim(self.action_space)
        self.reward_model: RewardModel | None = None
        self.statistics = _RunningVariance()
        self.records: deque[dict[str, np.ndarray]] = deque(maxlen=max(1, record_steps // self.num_envs))
        self.record = record_steps > 0
        self.real_env_steps = 0
        self._observations: np.ndarray | None = None
        self._actions: np.ndarray | None = None
        self._time = np.zeros(self.num_envs, dtype=np.int64)

    def set_reward_model(self, reward_model: RewardModel) -> None:
        check_reward_model(reward_model, self.obs_dim + int(self.absorbing_indicator), self.action_dim)
        self.reward_model = reward_model

    def encode_actions(self, actions: np.ndarray) -> np.ndarray:
        """One-hot for discrete actions, flat float vectors for Box actions: ``[n, action_dim]``."""
        actions = np.asarray(actions)
        if self.discrete:
            return np.eye(self.action_dim, dtype=np.float32)[actions.reshape(-1).astype(np.int64)]
        return actions.reshape(len(actions), -1).astype(np.float32)

    def learned_rewards(self, states: np.ndarray, actions: np.ndarray, next_states: np.ndarray,
                        terminated: np.ndarray, update_statistics: bool = True) -> np.ndarray:
        """The reward the agent sees for a batch of transitions (terminal ones with the absorbing value)."""
        if self.reward_model is None:
            raise RuntimeError("set_reward_model() must be called before stepping")
        model = self.reward_model
        dtype = reward_model_dtype(model)
        absorbing = self.termination == "absorbing"
        with torch.no_grad():
            s = torch.as_tensor(states.reshape(len(states), -1), dtype=dtype)
            s_next = torch.as_tensor(next_states.reshape(len(states), -1), dtype=dtype)
            a = torch.as_tensor(self.encode_actions(actions), dtype=dtype)
            dones = torch.as_tensor(terminated & (not absorbing))
            ended = torch.as_tensor(terminated)
            model_s, model_s_next = self.reward_inputs(s, s_next, ended)
            rewards = model(Transitions(model_s, a, model_s_next, dones)).total.double().numpy().copy()
            if absorbing and terminated.any():
                value = model(absorbing_transitions(s_next[ended], self.action_dim, self.absorbing_indicator)
                              ).total.double().numpy()
                bonus = np.zeros_like(rewards)
                bonus[terminated] = self.discount / (1.0 - self.discount) * value
            else:
                bonus = np.zeros_like(rewards)
        if not np.isfinite(rewards).all() or not np.isfinite(bonus).all():
            raise ValidationError("reward_model: returned non-finite rewards")
        if self.normalize:
            if update_statistics:
                self.statistics.update(rewards)
            scale = self.statistics.scale
            return ((rewards + bonus) / scale).astype(np.float32)
        return (rewards + bonus).astype(np.float32)

    def reward_inputs(self, states: torch.Tensor, next_states: torch.Tensor,
                      terminated: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """States and next states as the reward model reads them: unchanged, or (``absorbing_indicator``) with
        the indicator feature appended and terminal transitions leading into the absorbing state."""
        if not self.absorbing_indicator:
            return states, next_states
        next_states = with_absorbing_indicator(next_states)
        next_states[terminated] = absorbing_vector(int(terminated.sum()), self.obs_dim, next_states.dtype)
        return with_absorbing_indicator(states), next_states

    def reset(self):
        observations = self.venv.reset()
        self._observations = np.asarray(observations).copy()
        self._time[:] = 0
        return observations

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions).copy()
        self.venv.step_async(actions)

    def step_wait(self):
        observations, true_rewards, dones, infos = self.venv.step_wait()
        assert self._observations is not None and self._actions is not None
        next_states = np.asarray(observations, dtype=np.float64).copy()
        truncated = np.zeros(self.num_envs, dtype=bool)
        for i in np.flatnonzero(dones):
            next_states[i] = infos[i]["terminal_observation"]
            truncated[i] = bool(infos[i].get("TimeLimit.truncated", False))
        terminated = np.asarray(dones, dtype=bool) & ~truncated
        rewards = self.learned_rewards(self._observations, self._actions, next_states, terminated)
        if self.add_env_reward:  # shaping: r_env + F_θ
            rewards = (rewards + np.asarray(true_rewards, dtype=np.float64)).astype(np.float32)
        for i, info in enumerate(infos):
            info["true_reward"] = float(true_rewards[i])
        if self.record:
            self.records.append({"states": self._observations.reshape(self.num_envs, -1).astype(np.float64),
                                 "actions": self.encode_actions(self._actions),
                                 "next_states": next_states.reshape(self.num_envs, -1),
                                 "time": self._time.copy(), "terminated": terminated,
                                 "ended": np.asarray(dones, dtype=bool).copy(),
                                 "true_rewards": np.asarray(true_rewards, dtype=np.float64).reshape(self.num_envs)})
        self.real_env_steps += self.num_envs
        self._observations = np.asarray(observations).copy()
        self._time += 1
        self._time[np.asarray(dones, dtype=bool)] = 0
        return observations, rewards, dones, infos

    def clear_records(self) -> None:
        self.records.clear()

    def recorded(self) -> dict[str, np.ndarray]:
        """The recorded transitions, concatenated step-major (row ``k · n_envs + i`` is env ``i``'s ``k``-th
        recorded step): ``states``, ``actions``, ``next_states``, ``time``, ``terminated``, ``ended`` (terminated or
        truncated: the episode's last step) and ``true_rewards`` (the environment's own reward of each step)."""
        if not self.records:
            raise RuntimeError("no learner transitions recorded yet: call solve() first")
        return {key: np.concatenate([r[key] for r in self.records]) for key in self.records[0]}


def recorded_transitions(env: LearnedRewardVecEnv, data: dict[str, np.ndarray],
                         discount: float) -> tuple[Transitions, torch.Tensor]:
    """Reward-model inputs of recorded steps (``LearnedRewardVecEnv.recorded()``'s layout: ``states``, ``actions``
    one-hot/flat, ``next_states``, ``time``, ``terminated``) in ``env``'s conventions, and their weights.

    Rows ``0 … n−1`` are the steps, weight ``γ^t``; with absorbing termination, one absorbing row follows per
    terminated step (in the steps' order), weight ``γ^{t+1}/(1 − γ)``. ``Σ w r_θ / Σ w`` then estimates the
    normalized discounted occupancy's ``E_{d_π}[r_θ]`` (module docstring).
    """
    absorbing = env.termination == "absorbing"
    states = torch.from_numpy(np.asarray(data["states"], dtype=np.float64))
    next_states = torch.from_numpy(np.asarray(data["next_states"], dtype=np.float64))
    terminated = torch.from_numpy(np.asarray(data["terminated"], dtype=bool))
    time = torch.from_numpy(np.asarray(data["time"])).to(torch.float64)
    model_states, model_next_states = env.reward_inputs(states, next_states, terminated)
    parts = [Transitions(model_states, torch.from_numpy(np.asarray(data["actions"])).to(torch.float64),
                         model_next_states, terminated & (not absorbing))]
    weights = [discount**time]
    if absorbing and bool(terminated.any()):
        parts.append(absorbing_transitions(next_states[terminated], env.action_dim, env.absorbing_indicator))
        weights.append(discount ** (time[terminated] + 1) / (1.0 - discount))
    batch = concatenate_transitions(parts) if len(parts) > 1 else parts[0]
    return batch, torch.cat(weights)


class SB3Policy:
    """``irl_bilevel.inner.Policy`` over an SB3 actor-critic policy (PPO, A2C) or SAC's squashed-Gaussian actor.

    Actions are env actions: indices (or one-hot rows) for discrete spaces, unscaled vectors for Box spaces.
    """

    def __init__(self, policy: Any, discrete: bool) -> None:
        self.policy = policy
        self.discrete = discrete

    def _distribution(self, states: torch.Tensor):
        observations = states.detach().to(torch.float32)
        self.policy.set_training_mode(False)
        if hasattr(self.policy, "get_distribution"):
            return self.policy.get_distribution(observations)
        actor = self.policy.actor  # SAC
        mean, log_std, kwargs = actor.get_action_dist_params(observations)
        return actor.action_dist.proba_distribution(mean, log_std, **kwargs)

    def _squashed(self) -> bool:
        return not hasattr(self.policy, "get_distribution") and bool(getattr(self.policy, "squash_output", False))

    def log_prob(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``log π(a | s)``; discrete actions as indices ``[B]`` (or one-hot ``[B, A]``)."""
        with torch.no_grad():
            return self.differentiable_log_prob(states, actions)

    def differentiable_log_prob(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``log π(a | s)`` ``[B]`` on the autograd tape of the policy network's parameters (for training a copy of
        the policy, e.g. the penalty method's upper policy, :mod:`classic_rl.sb3_penalty`)."""
        with float32_default():
            distribution = self._distribution(states)
            if self.discrete:
                index = actions.argmax(-1) if actions.dim() == 2 else actions
                log_prob = distribution.log_prob(index.long().reshape(-1))
            else:
                values = actions.detach().to(torch.float32).reshape(len(states), -1)
                if self._squashed():
                    low = torch.as_tensor(self.policy.action_space.low, dtype=torch.float32)
                    high = torch.as_tensor(self.policy.action_space.high, dtype=torch.float32)
                    values = (2.0 * (values - low) / (high - low) - 1.0).clamp(-1 + 1e-6, 1 - 1e-6)
                log_prob = distribution.log_prob(values)
        return log_prob.to(states.dtype if states.is_floating_point() else torch.get_default_dtype())

    def act(self, states: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Sample actions (SB3 draws from the global torch generator; ``generator`` is ignored)."""
        with float32_default(), torch.no_grad():
            actions = self._distribution(states).get_actions(deterministic=False)
            if self._squashed():
                low = torch.as_tensor(self.policy.action_space.low, dtype=torch.float32)
                high = torch.as_tensor(self.policy.action_space.high, dtype=torch.float32)
                actions = low + 0.5 * (actions + 1.0) * (high - low)
            return actions


class SB3InnerSolver:
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
        try:
            gym.spec(env_id)
        except gym.error.Error as error:
            raise ValidationError(f"env_id: unknown gymnasium environment {env_id!r}") from error
        self.env_id, self.algorithm, self.seed = env_id, algorithm, seed
        self.env_steps_per_outer_step = int(env_steps_per_outer_step)
        hyperparameters = dict(hyperparameters or {})
        cls = algorithm_class(algorithm)
        if algorithm in ON_POLICY:
            n_steps = int(hyperparameters.get("n_steps", 2048 if algorithm == "ppo" else 5))
        else:
            if hyperparameters.get("optimize_memory_usage"):
                raise ValidationError("hyperparameters: optimize_memory_usage is not supported (relabelling needs "
                                      "the stored next observations)")
            n_steps = 1000
        discount = float(hyperparameters.get("gamma", 0.99))
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
                self.model = cls("MlpPolicy", self.env, seed=seed, device="cpu", verbose=0, **hyperparameters)
            except AssertionError as error:  # SB3 asserts the action space it supports
                self.env.close()
                raise ValidationError(f"algorithm: {algorithm} cannot act in {env_id}: {error}") from error
            except TypeError as error:
                self.env.close()
                raise ValidationError(f"hyperparameters: {algorithm} rejects {sorted(hyperparameters)}: "
                                      f"{error}") from error
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
        from classic_rl.sb3_penalty import SB3UpperPolicy

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
            self.model._last_obs = self.env.reset()  # type: ignore[assignment]
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

    def learner_reward_expectation(
        self,
        reward_model: RewardModel,
        num_samples: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        batch, weights = self.learner_transitions(num_samples, generator)
        return weighted_reward_mean(reward_model, batch, weights)

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
