"""Contrastive preference learning: train an SB3 policy directly from segment preferences with a catalog loss.

CPL (Hejna et al. 2023, "Contrastive Preference Learning: Learning from Human Feedback without RL") scores a segment by
the policy's summed action log-probabilities; with a reference policy this is DPO (Rafailov et al. 2023) on trajectory
segments. Here the segment log-prob is ``Σ_t log π(a_t|s_t)`` over the segment's valid steps (absorbed steps after a
termination have no action), the reference is a frozen copy of the policy at the start, and any pairwise loss of
:mod:`irl_bilevel.losses` is used by name, with the segment's valid-step count as the "completion length" of the
length-normalized losses.

The baseline from the same preferences is reward-model-then-RL: a Bradley-Terry reward model
(:class:`SegmentRewardModel`, trained with the catalog's ``bradley_terry`` loss on segment sums) and PPO on it through
the shared learned-reward env (:class:`classic_rl.learned_reward_env.LearnedRewardVecEnv`, the env's own termination).
Termination is explicit (Kostrikov et al. 2019, "Discriminator-Actor-Critic"): the model also learns the reward
``r_abs`` of the absorbing state, which fills the ``L − length`` absorbed steps of every segment. Segments all span
``L`` steps counting absorbed ones, so Bradley-Terry identifies the reward only up to a constant; the agent is paid
``r(s, a) − r_abs`` (:meth:`SegmentRewardModel.shifted`), which makes the absorbing state worth exactly 0 — what an
episodic return implicitly assumes after termination. Ending an episode is then good for the agent only if the learned
reward says living is worse than being absorbed, not because of the reward's arbitrary sign.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import torch
from torch import nn

from irl_bilevel.feedback import Preferences, Trajectories
from irl_bilevel.losses import PREFERENCE_LOSSES, PreferenceBatch, RankingBatch, loss_metrics, preference_loss
from irl_bilevel.precision import default_dtype
from irl_bilevel.rewards import MLPReward, RewardModel, RewardOutput, Transitions
from irl_bilevel.validation import ValidationError

# Losses needing inputs that segment pairs do not have (other objectives' rewards, per-aspect labels) or another
# batch type (KTO: unpaired; Bradley-Terry / Plackett-Luce: reward-model scores).
NEEDS_MORE = ("modpo", "aspect_dpo", "lexicographic_dpo")


def pairwise_losses() -> list[str]:
    """Catalog losses that take (policy, reference) summed log-probs of a chosen and a rejected segment."""
    return [name for name, loss in PREFERENCE_LOSSES.items()
            if loss.batch_type is PreferenceBatch and name not in NEEDS_MORE]


def make_policy(env_id: str, seed: int, net_arch: list[int] | None = None):
    """A fresh SB3 ``ActorCriticPolicy`` (float32, seeded) for ``env_id``'s spaces."""
    from stable_baselines3.common.policies import ActorCriticPolicy

    env = gym.make(env_id)
    arch = [64, 64] if net_arch is None else list(net_arch)
    with default_dtype(torch.float32), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        policy = ActorCriticPolicy(env.observation_space, env.action_space, lambda _: 0.0,
                                   net_arch={"pi": arch, "vf": arch})
    env.close()
    return policy


def frozen_reference(policy):
    """A frozen copy of ``policy``: eval mode, no gradients."""
    reference = copy.deepcopy(policy)
    reference.eval()
    reference.requires_grad_(False)
    return reference


def segment_logps(policy, segments: Trajectories) -> torch.Tensor:
    """``[N]`` summed log-probs ``Σ_t log π(a_t|s_t)`` over each segment's valid steps."""
    mask = segments.mask
    observations = segments.observations[mask].float()
    actions = segments.actions[mask]
    log_probs = policy.get_distribution(observations).log_prob(actions)
    rows = torch.arange(len(segments)).unsqueeze(1).expand_as(mask)[mask]
    return torch.zeros(len(segments), dtype=log_probs.dtype).index_add(0, rows, log_probs)


def _check(loss: str, preferences: Preferences) -> None:
    if loss not in PREFERENCE_LOSSES:
        raise ValidationError(f"loss: unknown preference loss {loss!r}; expected one of {pairwise_losses()}")
    if loss not in pairwise_losses():
        raise ValidationError(f"loss: {loss!r} does not take (policy, reference) segment log-probs; expected one "
                              f"of {pairwise_losses()}")
    if len(preferences) == 0 or not bool(preferences.answered.any()):
        raise ValidationError("preferences: empty (no answered pair); expected at least one labelled pair")
    if not bool((preferences.labels[preferences.answered] == 1).all()):
        raise ValidationError("preferences: expected chosen-first pairs (every answered label 1), as "
                              "classic_rl.segment_preferences.label_pairs builds them")


def preference_batch(policy, reference, preferences: Preferences, index: torch.Tensor, loss: str) -> PreferenceBatch:
    """The catalog's batch for pairs ``index``: policy and reference log-probs, valid-step counts as lengths."""
    chosen, rejected = preferences.first.subset(index), preferences.second.subset(index)
    policy_w, policy_l = segment_logps(policy, chosen), segment_logps(policy, rejected)
    with torch.no_grad():
        reference_w, reference_l = segment_logps(reference, chosen), segment_logps(reference, rejected)
    lengths_w, lengths_l = chosen.lengths.to(policy_w.dtype), rejected.lengths.to(policy_w.dtype)
    if loss == "orpo":  # ORPO's log odds need p < 1; a saturated float32 softmax can return log p = 0 exactly
        policy_w = policy_w.clamp(max=-1e-6 * lengths_w)
        policy_l = policy_l.clamp(max=-1e-6 * lengths_l)
    return PreferenceBatch(policy_w, policy_l, reference_w, reference_l, lengths_w, lengths_l)


@dataclass
class CPLConfig:
    epochs: int = 5
    batch_size: int = 64
    learning_rate: float = 1e-3
    beta: float | None = None  # None: the loss's default β
    params: dict[str, Any] = field(default_factory=dict)


def train_cpl(policy, preferences: Preferences, loss: str, config: CPLConfig, seed: int = 0,
              reference=None) -> dict[str, Any]:
    """Train ``policy``'s actor on ``preferences`` with catalog loss ``loss``; returns the reference and the
    per-epoch mean training loss. ``reference`` defaults to a frozen copy of ``policy`` as it is now."""
    _check(loss, preferences)
    reference = frozen_reference(policy) if reference is None else reference
    actor = [p for name, p in policy.named_parameters()
             if not name.startswith(("value_net", "mlp_extractor.value_net"))]
    optimizer = torch.optim.Adam(actor, lr=config.learning_rate)
    usable = torch.nonzero(preferences.answered).flatten()
    generator = torch.Generator().manual_seed(seed)
    history = []
    policy.train()
    for _ in range(config.epochs):
        order = usable[torch.randperm(len(usable), generator=generator)]
        total, count = 0.0, 0
        for start in range(0, len(order), config.batch_size):
            index = order[start:start + config.batch_size]
            batch = preference_batch(policy, reference, preferences, index, loss)
            output = preference_loss(loss, batch, config.beta, **config.params)
            optimizer.zero_grad()
            output.loss.backward()
            optimizer.step()
            total += float(output.loss.detach()) * len(index)
            count += len(index)
        history.append(total / count)
    policy.eval()
    return {"reference": reference, "train_loss": history}


def evaluate_pairs(policy, reference, preferences: Preferences, loss: str, config: CPLConfig) -> dict[str, float]:
    """The catalog's metrics (loss, reward accuracy, mean margin, ...) of ``loss`` on held-out pairs."""
    _check(loss, preferences)
    with torch.no_grad():
        batch = preference_batch(policy, reference, preferences, torch.nonzero(preferences.answered).flatten(), loss)
        return loss_metrics(preference_loss(loss, batch, config.beta, **config.params))


# --- baseline: Bradley-Terry reward model, then RL on it ---------------------------------------------------------


class SegmentRewardModel(MLPReward):
    """``r(s, a)``: the shared :class:`~irl_bilevel.rewards.MLPReward` on (observation, one-hot action), plus a
    learned absorbing-state reward ``r_abs``."""

    def __init__(self, obs_dim: int, num_actions: int, hidden: int = 64) -> None:
        super().__init__(obs_dim + num_actions, (hidden, hidden), uses_actions=True, activation=nn.ReLU)
        self.num_actions = num_actions
        self.absorbing = nn.Parameter(torch.zeros(()))

    def step_rewards(self, observations: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``r(s, a)`` for observations ``[..., obs_dim]`` and integer actions ``[...]``; returns ``[...]``."""
        one_hot = nn.functional.one_hot(actions.long(), self.num_actions).to(observations.dtype)
        batch = Transitions(observations.reshape(-1, observations.shape[-1]), one_hot.reshape(-1, self.num_actions))
        return self(batch).total.reshape(actions.shape)

    def shifted(self) -> AbsorbingShiftedReward:
        """``r(s, a) − r_abs`` as a reward model: what the agent trains on (the absorbing state then pays 0)."""
        return AbsorbingShiftedReward(self)

    def segment_returns(self, segments: Trajectories) -> torch.Tensor:
        """``[N]``: the valid steps' rewards plus ``r_abs`` for each absorbed step (all segments span ``L``)."""
        rewards = self.step_rewards(segments.observations.float(), segments.actions)
        mask = segments.mask
        absorbed = (segments.observations.shape[1] - segments.lengths).to(rewards.dtype)
        return (rewards * mask).sum(1) + absorbed * self.absorbing


class AbsorbingShiftedReward(RewardModel):
    """``r(s, a) − r_abs`` of a :class:`SegmentRewardModel` (its parameters are this module's): after a termination
    the episode ends, which is worth exactly the absorbed steps' shifted reward, 0."""

    def __init__(self, model: SegmentRewardModel) -> None:
        super().__init__(model.aspect_names, None, uses_actions=True)
        self.model = model

    def forward(self, batch: Transitions) -> RewardOutput:
        output = self.model(batch)
        return RewardOutput(output.aspects - self.model.absorbing, output.total - self.model.absorbing,
                            output.aspect_names)


def train_reward_model(preferences: Preferences, obs_dim: int, num_actions: int, config: CPLConfig,
                       seed: int = 0) -> SegmentRewardModel:
    """Bradley-Terry (the catalog's ``bradley_terry``, β = 1) on segment returns, Adam and minibatches."""
    if len(preferences) == 0 or not bool(preferences.answered.any()):
        raise ValidationError("preferences: empty (no answered pair); expected at least one labelled pair")
    with default_dtype(torch.float32), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SegmentRewardModel(obs_dim, num_actions)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    usable = torch.nonzero(preferences.answered).flatten()
    generator = torch.Generator().manual_seed(seed)
    for _ in range(config.epochs):
        order = usable[torch.randperm(len(usable), generator=generator)]
        for start in range(0, len(order), config.batch_size):
            index = order[start:start + config.batch_size]
            scores = RankingBatch.from_pairs(model.segment_returns(preferences.first.subset(index)),
                                             model.segment_returns(preferences.second.subset(index)))
            output = preference_loss("bradley_terry", scores)
            optimizer.zero_grad()
            output.loss.backward()
            optimizer.step()
    model.eval()
    return model


def evaluate_reward_model(model: SegmentRewardModel, preferences: Preferences) -> dict[str, float]:
    index = torch.nonzero(preferences.answered).flatten()
    with torch.no_grad():
        scores = RankingBatch.from_pairs(model.segment_returns(preferences.first.subset(index)),
                                         model.segment_returns(preferences.second.subset(index)))
        return loss_metrics(preference_loss("bradley_terry", scores))
