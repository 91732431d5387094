"""Preferences between a LoRA policy's text episodes: the query loop of reward learning from preferences, and the
raw pairs for trajectory DPO.

Reward learning from preferences (Christiano et al. 2017) with the LM in the inner loop, through the core's bilevel
solver: the outer loss is the core's :class:`~irl_bilevel.preference_likelihood.PreferenceLikelihood` over
labelled episode pairs, its hypergradient the direct one
(:class:`~irl_bilevel.hypergradients.DirectHypergradient`), and the inner solver the
:class:`~llm.lora_inner.LoRAInnerSolver` trained on the current reward. After every inner solve,
:meth:`EpisodePreferenceObjective.refresh` asks new queries about the inner solver's newest episodes:

* **pairs**: RLOO rolls ``k`` episodes out of each start, so episodes of the same start are paired (``(0, 1)``,
  ``(2, 3)``, … of each group, in rollout order): both answer the same task, so a label is about the behaviour,
  not about the start's difficulty; up to ``queries_per_refresh`` per refresh, ``query_budget`` in all;
* **labels**: a simulated teacher (:class:`irl_bilevel.teachers.Teacher`, the oracle by default) judges the two
  episodes' true per-step rewards ``r_t = wᵀ φ(s_t, a_t)`` (the env's aspects and weights, the same numbers the
  env returns), padding ignored;
* **segments**: the reward-model input of an episode is its ``T`` steps followed by ``L − T`` copies of the
  absorbing row after a termination (:func:`irl_bilevel.objectives.absorbing_transitions`; ``L`` =
  ``segment_length``, the move cap by default), so ``R_θ(σ) = Σ_{t<L} r_θ(x_t)``: an episode that reaches the goal
  early collects the absorbing reward for the rest of the segment (zero for the structured aspect reward, a
  learned value for a free table).

Every decided query (not tied, not skipped) is also kept as a raw (chosen, rejected) pair of episodes:
:meth:`EpisodePreferenceObjective.episode_dataset` gives them to :func:`llm.training.train_preferences`
(DPO or any paired catalog loss on whole episodes), the baseline that trains the policy on the same feedback
without a reward model.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import torch

from irl_bilevel.objectives import absorbing_transitions, concatenate_transitions
from irl_bilevel.preference_likelihood import PreferenceLikelihood
from irl_bilevel.reward_ensemble import RewardEnsemble
from irl_bilevel.rewards import RewardModel, Transitions
from irl_bilevel.teachers import Teacher
from irl_bilevel.validation import ValidationError
from llm.agentic.base import FiniteTextEnv
from llm.agentic.export import TabularExport, step_inputs
from llm.lora_inner import LoRAInnerSolver, TextEpisode
from llm.training import EpisodePreferenceDataset


def episode_segments(export: TabularExport, episodes: list[TextEpisode], length: int,
                     dtype: torch.dtype | None = None) -> Transitions:
    """Reward-model input of ``episodes`` as segments of ``length`` rows (segment-major, ``N·length`` rows): the
    steps, then the absorbing row of the final state for the rest (module docstring)."""
    parts = []
    for e, episode in enumerate(episodes):
        steps = len(episode.state_indices)
        if steps > length or (steps < length and not episode.terminated):
            raise ValidationError(f"segment_length: episode {e} has {steps} steps and "
                                  f"{'terminated' if episode.terminated else 'was truncated'}; segments of "
                                  f"{length} rows need every episode to end (or be cut) within {length} steps")
        states, actions = step_inputs(export, episode.state_indices, episode.action_columns, dtype)
        next_states, _ = step_inputs(export, [*episode.state_indices[1:], episode.final_state],
                                     episode.action_columns, dtype)
        parts.append(Transitions(states, actions, next_states, torch.zeros(steps, dtype=torch.bool)))
        if steps < length:
            final, _ = step_inputs(export, [episode.final_state] * (length - steps), [0] * (length - steps), dtype)
            parts.append(absorbing_transitions(final, export.num_action_inputs))
    return concatenate_transitions(parts)


def true_step_rewards(env: FiniteTextEnv, episodes: list[TextEpisode], length: int
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(rewards [N, length], mask [N, length])``: the env's true reward ``wᵀ φ`` of every real step (0 after)."""
    rewards = torch.zeros(len(episodes), length, dtype=torch.float64)
    mask = torch.zeros(len(episodes), length, dtype=torch.bool)
    for e, episode in enumerate(episodes):
        aspects = np.asarray(episode.record.aspects, dtype=np.float64).reshape(-1, len(env.aspect_names))
        steps = aspects.shape[0]
        rewards[e, :steps] = torch.from_numpy(aspects @ env.weights)
        mask[e, :steps] = True
    return rewards, mask


def same_start_pairs(episodes: list[TextEpisode]) -> list[tuple[int, int]]:
    """Disjoint pairs of episodes that share a start: ``(0, 1), (2, 3), …`` within each start's group, groups in
    the order their start first appears."""
    groups: dict[int, list[int]] = defaultdict(list)
    for index, episode in enumerate(episodes):
        groups[episode.record.start].append(index)
    return [(group[i], group[i + 1]) for group in groups.values() for i in range(0, len(group) - 1, 2)]


class EpisodePreferenceObjective(PreferenceLikelihood):
    """The preference likelihood of labelled episode pairs, grown by :meth:`refresh` (module docstring).

    Args:
        reward_model: the reward being learned (its aspects must be the env's, as the LoRA solver checks).
        env: the text environment whose true reward the teacher judges.
        export: its tabular export (the featurization of the LoRA inner solver).
        query_budget: queries in all; ``queries_per_refresh``: at most this many per refresh.
        teacher: the labeller (:meth:`Teacher.oracle` by default).
        segment_length: rows per episode segment (the env's move cap by default).
        loss, loss_options: the pairwise loss of :class:`PreferenceLikelihood`.
        seed: seeds the teacher's randomness.
    """

    zero_when_empty = True

    def __init__(self, reward_model: RewardModel | RewardEnsemble, env: FiniteTextEnv, export: TabularExport,
                 query_budget: int, queries_per_refresh: int, teacher: Teacher | None = None,
                 segment_length: int | None = None, loss: str = "bradley_terry",
                 loss_options: dict[str, Any] | None = None, seed: int = 0) -> None:
        for name, value in (("query_budget", query_budget), ("queries_per_refresh", queries_per_refresh)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValidationError(f"{name}: expected a positive integer, got {value!r}")
        super().__init__(reward_model, segment_length if segment_length is not None else env.max_steps, loss,
                         loss_options)
        self.env, self.export = env, export
        self.query_budget, self.queries_per_refresh = query_budget, queries_per_refresh
        self.teacher = teacher if teacher is not None else Teacher.oracle()
        self.generator = torch.Generator().manual_seed(seed)
        self.queries_used = self.ties = self.skipped = 0
        self.chosen: list[TextEpisode] = []
        self.rejected: list[TextEpisode] = []

    def refresh(self, inner: LoRAInnerSolver, reward_model: RewardModel | RewardEnsemble) -> None:
        """Label up to ``queries_per_refresh`` same-start pairs of the inner solver's newest episodes."""
        episodes = list(inner.recorded[-1]) if inner.recorded else []
        pairs = same_start_pairs(episodes)[:min(self.queries_per_refresh, self.query_budget - self.queries_used)]
        if not pairs:
            return
        first = [episodes[i] for i, _ in pairs]
        second = [episodes[j] for _, j in pairs]
        rewards1, mask1 = true_step_rewards(self.env, first, self.segment_length)
        rewards2, mask2 = true_step_rewards(self.env, second, self.segment_length)
        labels = self.teacher.label(rewards1, rewards2, mask1, mask2, generator=self.generator)
        skipped = labels.skipped if labels.skipped is not None else torch.zeros(len(pairs), dtype=torch.bool)
        self.queries_used += len(pairs)
        self.skipped += int(skipped.sum())
        self.ties += int(((labels.labels == 0.5) & ~skipped).sum())
        for a, b, label, skip in zip(first, second, labels.labels.tolist(), skipped.tolist()):
            if not skip and label != 0.5:
                self.chosen.append(a if label == 1 else b)
                self.rejected.append(b if label == 1 else a)
        self.add(episode_segments(self.export, first, self.segment_length),
                 episode_segments(self.export, second, self.segment_length), labels.labels, skipped)

    def feedback_may_grow(self) -> bool:
        """True while queries of the budget remain."""
        return self.queries_used < self.query_budget

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError("the labelled episodes are text records, not tensors; an agentic preference run "
                                  "starts over")

    def episode_dataset(self) -> EpisodePreferenceDataset:
        """The decided queries as (chosen, rejected) episode pairs of (prompt ids, completion ids) steps."""
        if not self.chosen:
            raise ValidationError("preferences: no decided query yet (every query tied or skipped, or none asked); "
                                  "there is no pair to train on")

        def steps(episode: TextEpisode) -> list[tuple[list[int], list[int]]]:
            return list(zip(episode.prompt_ids, episode.completion_ids))

        return EpisodePreferenceDataset([steps(e) for e in self.chosen], [steps(e) for e in self.rejected])

    def stats(self) -> dict[str, float]:
        return {"queries_used": self.queries_used, "labelled_pairs": len(self), "ties": self.ties,
                "skipped": self.skipped}
