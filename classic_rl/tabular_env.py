"""A gymnasium environment that samples a :class:`irl_bilevel.tabular.TabularMDP`."""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
import torch
from gymnasium import spaces

from irl_bilevel.tabular import TabularMDP
from irl_bilevel.validation import ValidationError, as_tensor, check_finite


class TabularEnv(gymnasium.Env):
    """Episodes of a tabular MDP: ``reset`` draws ``s0 ~ start``, ``step(a)`` pays ``r(s, a)`` and draws
    ``s' ~ P[s, a, ·]``.

    Args:
        mdp: the MDP (dense or sparse transitions).
        reward: a reward table ``[S]`` or ``[S, A]`` to pay instead of ``mdp.true_reward``. The reward of a
            step is that of the state (and action) it *leaves*, as in :mod:`irl_bilevel.tabular` and seals.
        observe_features: observe ``mdp.features[s]`` (a float32 ``Box`` spanning the features' range per
            column, a constant column ``c`` widened to ``[min(c, 0), max(c, 1)]``) instead of the state index
            (``Discrete(S)``, observations ``np.int64``).
        max_episode_steps: truncate episodes after this many steps. A finite-horizon MDP is truncated after
            ``min(horizon, max_episode_steps)`` steps; a discounted MDP without ``max_episode_steps`` never
            ends by itself.

    Episodes are never ``terminated`` (tabular MDPs here have no terminal states): they are ``truncated`` at
    the horizon. The discount is not applied to rewards. ``info`` holds ``state`` (the state index) and
    ``step`` (the number of steps taken in the episode).
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 (declared so by gymnasium.Env)

    def __init__(
        self,
        mdp: TabularMDP,
        reward: torch.Tensor | np.ndarray | None = None,
        observe_features: bool = False,
        max_episode_steps: int | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(mdp, TabularMDP):
            raise ValidationError(f"mdp: expected a TabularMDP, got {type(mdp).__name__}")
        self.mdp = mdp
        if reward is None:
            if mdp.true_reward is None:
                raise ValidationError("reward: the MDP has no true_reward; pass a reward table [S] or [S, A]")
            reward = mdp.true_reward
        reward_tensor = as_tensor(reward, "reward", torch.float64).detach().cpu()
        check_finite(reward_tensor, "reward")
        self.reward_table = mdp.broadcast_reward(reward_tensor).double().numpy().copy()  # [S, A]
        if max_episode_steps is not None and (
            isinstance(max_episode_steps, bool)
            or not isinstance(max_episode_steps, (int, np.integer))
            or max_episode_steps < 1
        ):
            raise ValidationError(f"max_episode_steps: expected a positive integer, got {max_episode_steps!r}")
        limits = [n for n in (mdp.horizon, max_episode_steps) if n is not None]
        self.episode_steps: int | None = int(min(limits)) if limits else None

        # Cumulative successor probabilities for inverse-CDF sampling: [S, A, k] (k = S when dense).
        if mdp.transitions is not None:
            self._successors = None
            probabilities = mdp.transitions.detach().cpu().double().numpy()
        else:
            assert mdp.successors is not None and mdp.successor_probabilities is not None
            self._successors = mdp.successors.cpu().numpy()
            probabilities = mdp.successor_probabilities.detach().cpu().double().numpy()
        self._cdf = np.cumsum(np.clip(probabilities, 0.0, None), axis=-1)
        self._start_cdf = np.cumsum(np.clip(mdp.start.detach().cpu().double().numpy(), 0.0, None))

        self.observe_features = bool(observe_features)
        self._features: np.ndarray | None = None
        if self.observe_features:
            self._features = mdp.features.detach().cpu().numpy().astype(np.float32)
            low, high = self._features.min(axis=0), self._features.max(axis=0)
            constant = low == high  # widen constant features so that the Box is not degenerate
            low[constant] = np.minimum(low[constant], 0.0)
            high[constant] = np.maximum(high[constant], 1.0)
            self.observation_space = spaces.Box(low=low, high=high, dtype=np.float32)
        else:
            self.observation_space = spaces.Discrete(mdp.num_states)
        self.action_space = spaces.Discrete(mdp.num_actions)
        self._state: int | None = None
        self._steps = 0

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _draw(cdf: np.ndarray, u: float) -> int:
        return int(min(np.searchsorted(cdf, u * cdf[-1], side="right"), cdf.shape[-1] - 1))

    def _observation(self, state: int):
        if self._features is not None:
            return self._features[state].copy()
        return np.int64(state)

    @property
    def state(self) -> int:
        """The current state index (after ``reset``)."""
        if self._state is None:
            raise RuntimeError("TabularEnv: call reset() before using the environment")
        return self._state

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if options:
            raise ValidationError(f"options: TabularEnv.reset takes no options, got {sorted(options)}")
        self._state = self._draw(self._start_cdf, float(self.np_random.random()))
        self._steps = 0
        return self._observation(self._state), {"state": self._state, "step": 0}

    def step(self, action):
        state = self.state
        if not self.action_space.contains(action):
            raise ValidationError(
                f"action: expected an integer in [0, {self.mdp.num_actions}), got {action!r}"
            )
        if self.episode_steps is not None and self._steps >= self.episode_steps:
            raise RuntimeError("TabularEnv: the episode is over (truncated); call reset()")
        action = int(action)
        reward = float(self.reward_table[state, action])
        pick = self._draw(self._cdf[state, action], float(self.np_random.random()))
        next_state = pick if self._successors is None else int(self._successors[state, action, pick])
        self._state = next_state
        self._steps += 1
        truncated = self.episode_steps is not None and self._steps >= self.episode_steps
        info = {"state": next_state, "step": self._steps}
        return self._observation(next_state), reward, False, truncated, info
