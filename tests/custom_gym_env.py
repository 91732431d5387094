"""A user's own gymnasium environment, as `irlb gym-irl --env custom_gym_env:Corridor-v0` finds it: gymnasium imports
this module, which registers ``Corridor-v0`` (tests/test_gym_irl.py).

Corridor: the agent's position ``x ∈ [0, 1]`` (the observation ``[x]``, float32) starts uniformly in ``[0, 0.5]``;
action 1 moves right by 0.25, action 0 left (clipped at 0). Reaching ``x = 1`` *terminates* the episode with reward 1
(every other step pays 0); the time limit of 20 steps *truncates* it.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np


class Corridor(gym.Env):
    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"]}  # SB3's make_vec_env asks for rgb_array

    def __init__(self, render_mode: str | None = None) -> None:
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.position = 0.0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.position = float(self.np_random.uniform(0.0, 0.5))
        return np.array([self.position], dtype=np.float32), {}

    def step(self, action: int):
        self.position = min(1.0, max(0.0, self.position + (0.25 if int(action) == 1 else -0.25)))
        reached = self.position >= 1.0
        return np.array([self.position], dtype=np.float32), float(reached), reached, False, {}

    def render(self) -> np.ndarray:
        """A 1 × 5 strip with the agent's cell lit."""
        frame = np.zeros((1, 5, 3), dtype=np.uint8)
        frame[0, round(4 * self.position)] = 255
        return frame


if "Corridor-v0" not in gym.registry:
    gym.register(id="Corridor-v0", entry_point=Corridor, max_episode_steps=20)
