"""The learned-reward environment for SB3: ``LearnedRewardVecEnv`` (an SB3 ``VecEnvWrapper``) replaces the
environment's reward by a reward model's total (batched over the vectorized envs, no gradient, optionally divided by a
running root mean square) and keeps the true reward in ``info["true_reward"]`` (SB3's ``Monitor`` below it still logs
true episode returns). It is the one wrapper every SB3 agent here trains through: the bilevel inner solver
(:mod:`classic_rl.sb3_inner`), RL from preferences, the penalty method's upper policy and the reward-model-then-PPO
baseline of the loss sweep.

Termination, ``termination=``:

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
"""

from __future__ import annotations

import math
from collections import deque

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.vec_env import VecEnvWrapper

from irl_bilevel.objectives import (
    absorbing_transitions,
    absorbing_vector,
    concatenate_transitions,
    with_absorbing_indicator,
)
from irl_bilevel.reward_ensemble import RewardEnsemble
from irl_bilevel.rewards import RewardModel, RewardOutput, Transitions
from irl_bilevel.validation import ValidationError

TERMINATION_MODES = ("absorbing", "none")


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
        for ended in np.flatnonzero(dones):
            next_states[ended] = infos[ended]["terminal_observation"]
            truncated[ended] = bool(infos[ended].get("TimeLimit.truncated", False))
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
