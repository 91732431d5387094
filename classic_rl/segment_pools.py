"""Pools of trajectory segments and random query pairs on a tabular MDP, shared by the feedback experiments.

``behaviour_episodes``: episodes of soft-optimal policies at several temperatures plus the uniform policy, so the
pool spans good and bad behaviour; ``random_segments``: ``count`` windows of ``length`` steps cut at uniform
offsets from uniformly chosen episodes; ``random_pairs``: ``count`` ordered pairs of distinct item indices.
Everything is drawn from the caller's generator, in a fixed order, so a seeded experiment is reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from irl_bilevel.feedback import Trajectories
from irl_bilevel.sampling import sample_trajectories
from irl_bilevel.tabular import soft_value_iteration


def behaviour_episodes(mdp, temperatures: Sequence[float], episodes_per_policy: int, episode_length: int,
                       generator: torch.Generator) -> Trajectories:
    """``episodes_per_policy`` episodes of ``episode_length`` steps from the soft-optimal policy at each of
    ``temperatures`` (on the MDP's true reward) and from the uniform policy, concatenated in that order."""
    policies = [soft_value_iteration(mdp, mdp.true_reward, temperature=t).log_policy for t in temperatures]
    policies.append(torch.full((mdp.num_states, mdp.num_actions), -float(np.log(mdp.num_actions))))
    parts = [sample_trajectories(mdp, p, episodes_per_policy, episode_length, generator) for p in policies]
    return Trajectories(torch.cat([p.observations for p in parts]), torch.cat([p.actions for p in parts]),
                        torch.cat([p.lengths for p in parts]), mdp.num_states, mdp.num_actions)


def random_segments(episodes: Trajectories, count: int, length: int, generator: torch.Generator) -> Trajectories:
    """``count`` segments of ``length`` steps: a uniform episode, then a uniform start offset within it."""
    which = torch.randint(len(episodes), (count,), generator=generator)
    offset = torch.randint(episodes.observations.shape[1] - length + 1, (count,), generator=generator)
    steps = offset[:, None] + torch.arange(length)[None, :]
    observations = episodes.observations[which[:, None], steps]
    actions = episodes.actions[which[:, None], steps]
    return Trajectories(observations, actions, torch.full((count,), length), episodes.num_states,
                        episodes.num_actions)


def random_pairs(num_items: int, count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` pairs ``(first [count], second [count])`` of distinct indices in ``[0, num_items)``."""
    first = torch.randint(num_items, (count,), generator=generator)
    shift = torch.randint(1, num_items, (count,), generator=generator)
    return first, (first + shift) % num_items
