"""Trajectory segments and oracle preference labels on a gymnasium task (CartPole-v1 by default).

Episode semantics (:mod:`classic_rl.learned_reward_env`): a segment has a fixed length ``L`` and may
run past a *termination*. After termination the episode is **absorbed**: the remaining ``L − length`` steps are
padding (``Trajectories.lengths`` marks the valid steps, ``Segments.terminated`` flags the absorption) with
zero true reward. A segment that ends early therefore has a lower true return; this is what gives CartPole
fragments a signal at all (equal-length fragments without a termination all return ``L`` and tie). A
*truncated* episode (time limit) is not absorbed: segments are never cut across a truncation.

Behaviour data: a PPO expert (SB3, cached under a content-addressed path, see :func:`expert_policy`) mixed
with ε-random actions at several ε, so that the segments span graded quality.

Oracle teacher: prefers the segment with the higher true return. Ties (equal returns, typically two segments
that both stay alive for all ``L`` steps) are **dropped**: they carry no ordering information, and the pairwise
losses of the catalog take hard labels. :func:`label_pairs` reports how many it dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from classic_rl.experts import cached_model, without_log_folder
from irl_bilevel.feedback import Preferences, Trajectories
from irl_bilevel.rewards import RewardModel
from irl_bilevel.validation import ValidationError

Act = Callable[[np.ndarray], np.ndarray]

# rl-zoo's CartPole-v1 PPO settings (n_envs 8; learning rate and clip range linear in the original).
EXPERT_PPO: dict[str, Any] = {"n_steps": 32, "batch_size": 256, "gae_lambda": 0.8, "gamma": 0.98, "n_epochs": 20,
                              "ent_coef": 0.0, "learning_rate": 1e-3, "clip_range": 0.2}
EXPERT_ENVS = 8


def discrete_task(env_id: str) -> tuple[int, int]:
    """``(obs_dim, num_actions)`` of a task with flat Box observations and Discrete actions."""
    env = gym.make(env_id)
    observation_space, action_space = env.observation_space, env.action_space
    env.close()
    if not isinstance(action_space, gym.spaces.Discrete) or not isinstance(observation_space, gym.spaces.Box) \
            or len(observation_space.shape) != 1:
        raise ValidationError(f"env_id: {env_id} needs flat Box observations and Discrete actions (segment "
                              f"log-probs of discrete actions), got {observation_space} and {action_space}")
    return int(observation_space.shape[0]), int(action_space.n)


def train_ppo(env_id: str, steps: int, seed: int, reward_model: RewardModel | None = None):
    """SB3 PPO with rl-zoo's CartPole settings on ``EXPERT_ENVS`` envs, on the true reward or on ``reward_model``'s
    (through :class:`classic_rl.learned_reward_env.LearnedRewardVecEnv`, the env's own terminations)."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    from classic_rl.learned_reward_env import LearnedRewardVecEnv

    env = make_vec_env(env_id, n_envs=EXPERT_ENVS, seed=seed)
    if reward_model is not None:
        env = LearnedRewardVecEnv(env, EXPERT_PPO["gamma"], termination="none")
        env.set_reward_model(reward_model)
    with torch.random.fork_rng(devices=[]):
        model = without_log_folder(PPO("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **EXPERT_PPO))
        model.learn(total_timesteps=steps)
    env.close()
    return model


def expert_policy(env_id: str, steps: int, seed: int = 0, cache: Path | str | None = None):
    """An SB3 PPO expert, trained once and cached as ``<cache>/experts/<env>-ppo-<hash>.zip``.

    Cached by :func:`classic_rl.experts.cached_model` (atomic write). The hash covers everything that
    determines the model (env, steps, seed, PPO settings, SB3 version), so a changed setting trains a new expert
    instead of reusing a stale one. Returns the ``ActorCriticPolicy``.
    """
    import stable_baselines3
    from stable_baselines3 import PPO

    key = {"env": env_id, "steps": steps, "seed": seed, "ppo": EXPERT_PPO, "n_envs": EXPERT_ENVS,
           "sb3": stable_baselines3.__version__}
    model = cached_model(f"{env_id}-ppo", key, lambda path: PPO.load(path, device="cpu"),
                         lambda: train_ppo(env_id, steps, seed), cache)
    return model.policy


def policy_actor(policy, deterministic: bool) -> Act:
    """Batched actions of an SB3 policy for observations ``[n, obs_dim]``."""

    def act(observations: np.ndarray) -> np.ndarray:
        actions, _ = policy.predict(observations, deterministic=deterministic)
        return np.asarray(actions)

    return act


def epsilon_actor(act: Act, num_actions: int, epsilon: float, rng: np.random.Generator) -> Act:
    """``act`` with probability ``1 − ε``, a uniformly random action otherwise (per step and env)."""

    def noisy(observations: np.ndarray) -> np.ndarray:
        actions = act(observations) if epsilon < 1.0 else np.zeros(len(observations), dtype=np.int64)
        random = rng.integers(num_actions, size=len(observations))
        return np.where(rng.random(len(observations)) < epsilon, random, actions)

    return noisy


@dataclass
class Episode:
    observations: np.ndarray  # [T, obs_dim], the state each action was taken in
    actions: np.ndarray  # [T]
    rewards: np.ndarray  # [T]
    terminated: bool  # False: truncated by the time limit


def rollouts(env_id: str, act: Act, episodes: int, seed: int) -> list[Episode]:
    """``episodes`` episodes of ``act`` (stepped in lockstep, one batched policy call per step), env ``i``
    reset with seed ``seed + i``."""
    if episodes < 1:
        raise ValidationError(f"episodes: expected at least one episode, got {episodes}")
    envs = [gym.make(env_id) for _ in range(episodes)]
    current = [env.reset(seed=seed + i)[0] for i, env in enumerate(envs)]
    records: list[dict[str, list]] = [{"obs": [], "act": [], "rew": []} for _ in envs]
    done: list[bool | None] = [None] * episodes  # None while running, else whether it terminated
    while any(d is None for d in done):
        alive = [i for i, d in enumerate(done) if d is None]
        actions = act(np.stack([current[i] for i in alive]))
        for i, action in zip(alive, actions):
            obs, reward, terminated, truncated, _ = envs[i].step(int(action))
            records[i]["obs"].append(current[i])
            records[i]["act"].append(int(action))
            records[i]["rew"].append(float(reward))
            current[i] = obs
            if terminated or truncated:
                done[i] = bool(terminated)
    for env in envs:
        env.close()
    return [Episode(np.asarray(r["obs"], dtype=np.float32), np.asarray(r["act"], dtype=np.int64),
                    np.asarray(r["rew"], dtype=np.float64), bool(d)) for r, d in zip(records, done)]


def episode_returns(env_id: str, act: Act, episodes: int, seed: int) -> np.ndarray:
    return np.asarray([e.rewards.sum() for e in rollouts(env_id, act, episodes, seed)])


@dataclass
class Segments:
    """``N`` fixed-length segments: ``trajectories`` (valid steps up to ``lengths``; the rest is the absorbing
    padding), ``terminated [N]`` (the episode ended inside the segment), true ``returns [N]`` (zero reward
    while absorbed) and ``source [N]`` (index of the behaviour policy)."""

    trajectories: Trajectories
    terminated: torch.Tensor
    returns: torch.Tensor
    source: torch.Tensor

    def __len__(self) -> int:
        return len(self.trajectories)

    def subset(self, index: torch.Tensor | np.ndarray) -> Segments:
        index = torch.as_tensor(index, dtype=torch.long)
        return Segments(self.trajectories.subset(index), self.terminated[index], self.returns[index],
                        self.source[index])

    @property
    def segment_length(self) -> int:
        return int(self.trajectories.observations.shape[1])


def cut_segments(episodes: list[Episode], length: int, count: int, rng: np.random.Generator,
                 source: int = 0) -> Segments:
    """``count`` segments of ``length`` steps drawn uniformly from all admissible starts.

    A terminated episode of ``T`` steps admits starts ``0..T−1`` (the segment runs into the absorbing state); a
    truncated one admits ``0..T−L`` (no segment crosses a time limit).
    """
    if length < 1 or count < 1:
        raise ValidationError(f"length: expected length >= 1 and count >= 1, got {length} and {count}")
    starts = [(e, s) for e, ep in enumerate(episodes)
              for s in range(len(ep.actions) if ep.terminated else len(ep.actions) - length + 1)]
    if not starts:
        raise ValidationError(f"episodes: no admissible segment start for length {length}")
    picks = rng.choice(len(starts), size=count, replace=len(starts) < count)
    obs_dim = episodes[0].observations.shape[1]
    observations = np.zeros((count, length, obs_dim), dtype=np.float32)
    actions = np.zeros((count, length), dtype=np.int64)
    lengths = np.zeros(count, dtype=np.int64)
    returns = np.zeros(count)
    terminated = np.zeros(count, dtype=bool)
    for row, pick in enumerate(picks):
        e, s = starts[pick]
        ep = episodes[e]
        stop = min(s + length, len(ep.actions))
        n = stop - s
        observations[row, :n] = ep.observations[s:stop]
        actions[row, :n] = ep.actions[s:stop]
        lengths[row] = n
        returns[row] = ep.rewards[s:stop].sum()  # absorbed steps: zero reward
        terminated[row] = n < length
    trajectories = Trajectories(torch.from_numpy(observations), torch.from_numpy(actions), torch.from_numpy(lengths))
    return Segments(trajectories, torch.from_numpy(terminated), torch.from_numpy(returns),
                    torch.full((count,), source, dtype=torch.long))


def concatenate(parts: list[Segments]) -> Segments:
    return Segments(
        Trajectories(torch.cat([p.trajectories.observations for p in parts]),
                     torch.cat([p.trajectories.actions for p in parts]),
                     torch.cat([p.trajectories.lengths for p in parts])),
        torch.cat([p.terminated for p in parts]), torch.cat([p.returns for p in parts]),
        torch.cat([p.source for p in parts]))


def behaviour_segments(env_id: str, expert, epsilons: list[float], episodes_per_policy: int,
                       segments_per_policy: int, length: int, seed: int) -> Segments:
    """Segments from the expert with ε-random actions, ``segments_per_policy`` for each ε."""
    rng = np.random.default_rng(seed)
    parts = []
    num_actions = discrete_task(env_id)[1]
    for k, epsilon in enumerate(epsilons):
        act = epsilon_actor(policy_actor(expert, deterministic=True), num_actions, epsilon, rng)
        episodes = rollouts(env_id, act, episodes_per_policy, seed=seed * 100_003 + 1_009 * k)
        parts.append(cut_segments(episodes, length, segments_per_policy, rng, source=k))
    return concatenate(parts)


@dataclass
class LabelledPairs:
    """Oracle-labelled pairs: ``preferences`` (``first`` = chosen, label 1) and the true returns of both sides."""

    preferences: Preferences
    chosen_returns: torch.Tensor
    rejected_returns: torch.Tensor
    ties_dropped: int

    def __len__(self) -> int:
        return len(self.preferences)


def label_pairs(segments: Segments, num_pairs: int, rng: np.random.Generator) -> LabelledPairs:
    """Up to ``num_pairs`` random pairs of distinct segments labelled by the oracle (higher true return wins).

    Ties are dropped; pairs are stored chosen-first (all labels 1), so that a loss reads ``first`` as chosen.
    """
    if len(segments) < 2:
        raise ValidationError(f"segments: need at least two segments to form pairs, got {len(segments)}")
    draws = 4 * num_pairs
    i = rng.integers(len(segments), size=draws)
    j = (i + rng.integers(1, len(segments), size=draws)) % len(segments)
    returns = segments.returns.numpy()
    kept = np.flatnonzero(returns[i] != returns[j])[:num_pairs]
    if len(kept) == 0:
        raise ValidationError("segments: every pair ties on the true return (no segment spans a termination?); "
                              "preferences would carry no signal")
    ties = int(kept[-1] + 1 - len(kept))  # tied draws skipped before the last kept pair
    i, j = i[kept], j[kept]
    chosen = np.where(returns[i] > returns[j], i, j)
    rejected = np.where(returns[i] > returns[j], j, i)
    first = segments.trajectories.subset(torch.from_numpy(chosen))
    second = segments.trajectories.subset(torch.from_numpy(rejected))
    preferences = Preferences(first, second, torch.ones(len(chosen)))
    return LabelledPairs(preferences, segments.returns[chosen], segments.returns[rejected], ties)
