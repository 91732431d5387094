"""The true rewards of the classic-control testbeds as functions of reward-model inputs, and the EPIC distance of a
learned reward to them.

Each :class:`TrueReward` maps :class:`~irl_bilevel.rewards.Transitions` ``(states, actions, next_states)`` in
exactly the featurization the learned reward of :mod:`classic_rl.gym_irl` reads to the environment's reward
``[B]`` (float64):

* ``states``, ``next_states``: the observations ``[B, obs_dim]``, with ``absorbing_indicator`` one trailing
  feature more, 0 on real states and 1 on the absorbing state ``[0, …, 0, 1]``
  (:func:`irl_bilevel.objectives.with_absorbing_indicator`, :func:`~irl_bilevel.objectives.absorbing_vector`);
* ``actions``: one-hot ``[B, n]`` for discrete action spaces, the flat action vector ``[B, act_dim]`` for boxes
  (:meth:`classic_rl.learned_reward_env.LearnedRewardVecEnv.encode_actions`); the absorbing rows carry an all-zero
  vector.

Termination uses the "absorbing" convention (:func:`irl_bilevel.objectives.absorbing_transitions`): a terminated
episode continues forever in an absorbing state, which pays 0 — the environment pays nothing after the end.

The rules, read from gymnasium 1.4.0's ``gymnasium/envs/classic_control/`` (default ``gym.make`` keyword
arguments, as gym_irl makes its envs; thresholds and goals are read from the env instance, not copied):

* ``CartPole-v1`` (``cartpole.py``, ``CartPoleEnv.step``, ``sutton_barto_reward=False``): ``+1`` on every real
  step, the terminating one included.
* ``Acrobot-v1`` (``acrobot.py``, ``step`` and ``_terminal``): ``−1`` on every real step except ``0`` on the step
  that terminates, i.e. whose next state satisfies ``−cos θ₁ − cos(θ₁ + θ₂) > 1``; from the observation
  ``(cos θ₁, sin θ₁, cos θ₂, sin θ₂, θ̇₁, θ̇₂)``, ``cos(θ₁ + θ₂) = cos θ₁ cos θ₂ − sin θ₁ sin θ₂``. With the
  indicator, a terminating step's next state is the absorbing state.
* ``MountainCar-v0`` (``mountain_car.py``, ``step``): ``−1`` on every real step, the terminating one included.
* ``Pendulum-v1`` (``pendulum.py``, ``step``): ``−(θ² + 0.1 θ̇² + 0.001 u²)`` of the step's *starting* state,
  ``θ = atan2(sin θ, cos θ) ∈ (−π, π]`` (gymnasium's ``angle_normalize``; ``±π`` square alike) and
  ``u = clip(action, −max_torque, max_torque)`` (gymnasium clips before computing the cost). It never terminates.
* ``MountainCarContinuous-v0`` (``continuous_mountain_car.py``, ``step``): ``−0.1 u²`` on every real step with the
  *unclipped* action ``u = action[0]`` (gymnasium clips only the force), plus ``+100`` on the step that reaches the
  goal, i.e. whose next state has ``position ≥ goal_position`` and ``velocity ≥ goal_velocity`` (or, with the
  indicator, is the absorbing state).

Identifying the absorbing rows. With ``absorbing_indicator`` the last state feature says it exactly. Without it,
an absorbing row is ``(s_f, 0, s_f)``, ``s_f`` the terminal observation, which a state-only input cannot tell from
a real state. We identify it (a) for discrete actions by the all-zero action vector, which no one-hot real action
has (exact), and (b) where that is not available (continuous actions, or ``actions`` None) by the state itself
satisfying the env's termination rule: no real transition *starts* in a terminal state, since the episode ends
there. (b) is exact up to float32 rounding of the observation: a real state within about ``1e-7`` of a
threshold can round onto the terminal side (gymnasium tests termination on its float64 internal state). The
same caveat applies to telling a terminating step by its next observation without the indicator. Pendulum-v1
never terminates, so without the indicator every row is real (a zero torque is a real action).

:func:`reward_epic_distance` compares a learned reward with the true one by the sample-based EPIC distance
(:func:`irl_bilevel.metrics.sample_epic_distance`, Gleave et al. 2021).
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch

from irl_bilevel.metrics import sample_epic_distance
from irl_bilevel.rewards import RewardModel, Transitions
from irl_bilevel.validation import ValidationError

RewardFunction = Callable[[Transitions], torch.Tensor]
KNOWN_ENVS = ("CartPole-v1", "Acrobot-v1", "MountainCar-v0", "Pendulum-v1", "MountainCarContinuous-v0")
# Envs whose reward (here) depends on whether the step terminates, read from the next state.
_NEEDS_NEXT_STATES = ("Acrobot-v1", "MountainCarContinuous-v0")


def check_env_id(env_id: str) -> None:
    """``env_id`` must be one of :data:`KNOWN_ENVS` (a ValidationError naming them otherwise)."""
    if env_id not in KNOWN_ENVS:
        raise ValidationError(f"env_id: no true reward is defined for {env_id!r}; known envs: {list(KNOWN_ENVS)}")


class TrueReward:
    """The true reward of ``env_id`` on reward-model inputs (module docstring): ``Transitions -> [B]`` float64.

    ``absorbing_indicator``: whether states carry the trailing absorbing-indicator feature (gym_irl's config field
    of the same name). ``actions`` are needed for Pendulum-v1 and MountainCarContinuous-v0 (the torque / force
    cost); ``next_states`` for Acrobot-v1 and MountainCarContinuous-v0 (the terminating step).
    """

    def __init__(self, env_id: str, absorbing_indicator: bool = True) -> None:
        check_env_id(env_id)
        self.env_id, self.absorbing_indicator = env_id, bool(absorbing_indicator)
        env = gym.make(env_id)
        try:
            self.observation_space, self.action_space = env.observation_space, env.action_space
            unwrapped = env.unwrapped
            # The env's own constants, so that the rules are gymnasium's exactly (see the module docstring).
            self.constants = {name: float(getattr(unwrapped, name)) for name in (
                "x_threshold", "theta_threshold_radians", "goal_position", "goal_velocity", "max_torque")
                if hasattr(unwrapped, name)}
            if getattr(unwrapped, "_sutton_barto_reward", False):
                raise ValidationError(f"env_id: {env_id} uses the Sutton-Barto reward, which is not covered")
        finally:
            env.close()
        self.obs_dim = int(np.prod(self.observation_space.shape or ()))
        space = self.action_space
        self.discrete = isinstance(space, gym.spaces.Discrete)
        self.action_dim = int(space.n) if isinstance(space, gym.spaces.Discrete) else int(np.prod(space.shape or ()))
        self.state_dim = self.obs_dim + int(self.absorbing_indicator)

    # ---- the rules on observations [B, obs_dim] (float64)
    def terminal(self, observations: torch.Tensor) -> torch.Tensor:
        """Whether each observation satisfies the env's termination rule ``[B]`` (False for Pendulum-v1)."""
        o, c = observations, self.constants
        if self.env_id == "CartPole-v1":
            x, theta = o[:, 0], o[:, 2]
            return (x.abs() > c["x_threshold"]) | (theta.abs() > c["theta_threshold_radians"])
        if self.env_id == "Acrobot-v1":  # -cos(θ1) - cos(θ1 + θ2) > 1
            cos1, sin1, cos2, sin2 = o[:, 0], o[:, 1], o[:, 2], o[:, 3]
            return -cos1 - (cos1 * cos2 - sin1 * sin2) > 1.0
        if self.env_id in ("MountainCar-v0", "MountainCarContinuous-v0"):
            return (o[:, 0] >= c["goal_position"]) & (o[:, 1] >= c["goal_velocity"])
        return torch.zeros(len(o), dtype=torch.bool)

    def _check(self, batch: Transitions) -> None:
        def check(value: torch.Tensor, field: str, width: int) -> None:
            if value.dim() != 2 or value.shape[1] != width or len(value) != len(batch.states):
                raise ValidationError(f"{field}: expected [{len(batch.states)}, {width}] for {self.env_id} "
                                      f"(absorbing_indicator={self.absorbing_indicator}), got {list(value.shape)}")

        check(batch.states, "states", self.state_dim)
        if batch.actions is not None:
            check(batch.actions, "actions", self.action_dim)
        elif not self.discrete:
            raise ValidationError(f"actions: the true reward of {self.env_id} reads the action, got None")
        if batch.next_states is not None:
            check(batch.next_states, "next_states", self.state_dim)
        elif self.env_id in _NEEDS_NEXT_STATES:
            raise ValidationError(f"next_states: the true reward of {self.env_id} depends on whether the step "
                                  f"terminates, got None")

    def is_absorbing(self, states: torch.Tensor, actions: torch.Tensor | None) -> torch.Tensor:
        """Rows whose (origin) state is the absorbing state ``[B]`` (module docstring, "Identifying ...")."""
        if self.absorbing_indicator:
            return states[:, -1] > 0.5
        if self.discrete and actions is not None:
            return (actions == 0).all(dim=-1)
        return self.terminal(states)

    def _terminates(self, next_states: torch.Tensor) -> torch.Tensor:
        """Whether each step ends the episode: its next state is the absorbing state or a terminal observation."""
        into = self.terminal(next_states[:, : self.obs_dim])
        if self.absorbing_indicator:
            into = into | (next_states[:, -1] > 0.5)
        return into

    def __call__(self, batch: Transitions) -> torch.Tensor:
        self._check(batch)
        states = batch.states.detach().to(torch.float64)
        actions = None if batch.actions is None else batch.actions.detach().to(torch.float64)
        next_states = None if batch.next_states is None else batch.next_states.detach().to(torch.float64)
        obs = states[:, : self.obs_dim]
        if self.env_id == "CartPole-v1":
            reward = torch.ones(len(obs), dtype=torch.float64)
        elif self.env_id == "MountainCar-v0":
            reward = -torch.ones(len(obs), dtype=torch.float64)
        elif self.env_id == "Acrobot-v1":
            assert next_states is not None
            reward = torch.where(self._terminates(next_states), 0.0, -1.0).to(torch.float64)
        elif self.env_id == "Pendulum-v1":
            assert actions is not None
            theta = torch.atan2(obs[:, 1], obs[:, 0])
            torque = actions[:, 0].clamp(-self.constants["max_torque"], self.constants["max_torque"])
            reward = -(theta**2 + 0.1 * obs[:, 2] ** 2 + 0.001 * torque**2)
        else:  # MountainCarContinuous-v0
            assert actions is not None and next_states is not None
            reward = 100.0 * self._terminates(next_states).to(torch.float64) - 0.1 * actions[:, 0] ** 2
        return torch.where(self.is_absorbing(states, actions), 0.0, reward)


def uniform_actions(space: gym.Space, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` actions drawn uniformly from ``space`` in reward-model form: one-hot ``[count, n]`` for Discrete,
    uniform on ``[low, high]`` ``[count, act_dim]`` (float64) for a bounded Box."""
    if isinstance(space, gym.spaces.Discrete):
        index = torch.randint(int(space.n), (count,), generator=generator)
        return torch.nn.functional.one_hot(index, int(space.n)).to(torch.float64)
    if isinstance(space, gym.spaces.Box) and bool(np.isfinite(space.low).all() and np.isfinite(space.high).all()):
        low = torch.as_tensor(space.low.reshape(-1), dtype=torch.float64)
        high = torch.as_tensor(space.high.reshape(-1), dtype=torch.float64)
        return low + (high - low) * torch.rand(count, len(low), generator=generator, dtype=torch.float64)
    raise ValidationError(f"action_space: uniform actions need a Discrete or bounded Box space, got {space}")


def as_reward_function(reward: RewardModel | RewardFunction) -> RewardFunction:
    """A reward model as ``Transitions -> total [B]`` (float64, inputs cast to the model's dtype); a function as is."""
    if not isinstance(reward, RewardModel):
        return reward
    parameter = next((p for p in reward.parameters() if p.dtype.is_floating_point), None)
    dtype = torch.get_default_dtype() if parameter is None else parameter.dtype

    def function(batch: Transitions) -> torch.Tensor:
        with torch.no_grad():
            return reward(batch.to(dtype)).total.to(torch.float64)

    return function


def reward_epic_distance(
    reward_model: RewardModel | RewardFunction,
    env_id: str,
    coverage: Transitions,
    discount: float,
    absorbing_indicator: bool = True,
    num_mean_samples: int = 256,
    seed: int = 0,
) -> float:
    """Sample-based EPIC distance (Gleave et al. 2021) of a learned reward to ``env_id``'s true reward.

    ``D = sqrt((1 − ρ)/2)``, ``ρ`` the Pearson correlation over the ``coverage`` transitions (``states``,
    ``actions``, ``next_states`` ``[N, *]`` in gym_irl's featurization, absorbing rows included) of the two
    canonicalized rewards ``C(R)(s, a, s') = R(s, a, s') + γ m(s') − m(s) − γ m̄``, ``m(x)`` the mean of
    ``R(x, u_j, x_j)`` over ``M = num_mean_samples`` joint samples: ``x_j`` rows of ``coverage.states`` (without
    replacement when ``M ≤ N``), ``u_j`` uniform over the env's action space, both drawn from a generator seeded by
    ``seed`` (global random state untouched). 0 for rewards equal up to potential shaping and positive scaling; 1
    for opposite ones. ``reward_model``: a :class:`~irl_bilevel.rewards.RewardModel` (its ``total``) or a function
    ``Transitions -> [B]``. Costs ``2 (2N + M) M`` reward evaluations.
    """
    truth = TrueReward(env_id, absorbing_indicator)
    if num_mean_samples < 1:
        raise ValidationError(f"num_mean_samples: expected at least 1, got {num_mean_samples}")
    if coverage.actions is None or coverage.next_states is None:
        raise ValidationError("coverage: EPIC needs the transitions' actions and next_states")
    truth(Transitions(coverage.states[:1], coverage.actions[:1], coverage.next_states[:1]))  # shapes checked
    generator = torch.Generator().manual_seed(int(seed))
    count = len(coverage)
    rows = (torch.randperm(count, generator=generator)[:num_mean_samples] if num_mean_samples <= count
            else torch.randint(count, (num_mean_samples,), generator=generator))
    mean_states = coverage.states[rows].to(torch.float64)
    mean_actions = uniform_actions(truth.action_space, num_mean_samples, generator)
    coverage = coverage.to(torch.float64)
    return sample_epic_distance(as_reward_function(reward_model), truth, coverage, mean_states, mean_actions,
                                discount)
