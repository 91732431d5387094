"""Structured rewards of a finite text environment learned on its exported MDP with the exact soft-VI inner loop.

Where a policy LM is expensive, the reward can be learned without it: the environment's reachable state graph is a
tabular MDP (:func:`llm.agentic.export.build_tabular_mdp`), and the core's bilevel solver learns the per-aspect
scales ``θ`` of an :class:`~llm.agentic.export.AspectTableReward` (``r_θ(s, a) = Σ_k θ_k φ_k(s, a)`` over the
environment's true aspects ``success, invalid, malformed, progress, step``) with the exact
:class:`~irl_bilevel.inner.SoftValueIterationSolver` as the inner loop (temperature ``τ``, ``π_θ = softmax(Q_θ / τ)``):

* **from demonstrations** (:func:`learn_from_demonstrations`): MaxEnt IRL (Ziebart et al. 2008) on the optimal
  solver's plan from every start (:func:`llm.agentic.export.optimal_demonstrations`, padded with ``absorbing_steps``
  steps in the goal so the empirical occupancy obeys the flow from ``ρ0``); outer loss the negative log-likelihood
  ``−Σ w_E log π_θ``, hypergradient :class:`~irl_bilevel.hypergradients.MaxEntHypergradient` (``E_π[φ] − E_E[φ]``),
  L-BFGS with ``(l2/2)‖θ‖²``. Deterministic: no sampling anywhere.
* **from preferences** (:func:`learn_from_preferences`): reward learning from preferences (Christiano et al. 2017).
  Before every outer step :class:`SoftPolicyPreferences` samples ``queries_per_refresh`` pairs of episodes from the
  current soft-optimal policy, both episodes of a pair from the same start (drawn from ``ρ0``), ``segment_length``
  steps each (the move cap; a terminated episode stays in its absorbing goal or hole, zero aspects); a teacher
  (the B-Pref oracle by default, :class:`irl_bilevel.teachers.Teacher`) labels them by their true returns; the outer
  loss is the Bradley-Terry likelihood of all pairs so far (:class:`~irl_bilevel.preference_likelihood.
  PreferenceLikelihood`), hypergradient :class:`~irl_bilevel.hypergradients.DirectHypergradient` refreshed once per
  outer step, L-BFGS with ``(l2/2)‖θ‖²``. Seeded.

**Malformed text as an action** (:func:`with_malformed_action`). A text policy can always answer something the parser
cannot read; the environment's tabular MDP has no such action, so the malformed aspect would never occur and its
scale would stay at its initial value. The learning MDP therefore has one more action, ``MALFORMED``: in every
non-terminal state a self-loop whose aspects are a malformed step's (``malformed = −1``, ``step = −1``), absorbing
like every action in terminal states. The learner's soft policy takes it, the demonstrations and a sensible teacher
do not, so its scale is learned as the invalid action's is. The learned ``θ`` (one number per aspect) then applies to
the environment's own export and to text steps (whose malformed column reads the same aspects).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from irl_bilevel.feedback import Trajectories
from irl_bilevel.hypergradients import BilevelProblem, DirectHypergradient, MaxEntHypergradient
from irl_bilevel.inner import SoftValueIterationSolver
from irl_bilevel.objectives import MaxEntDemonstrationLoss
from irl_bilevel.preference_likelihood import PreferenceLikelihood
from irl_bilevel.reward_ensemble import RewardEnsemble
from irl_bilevel.rewards import RewardModel
from irl_bilevel.sampling import sample_trajectories
from irl_bilevel.solver import BilevelSolver, OuterConfig
from irl_bilevel.tabular import TabularMDP
from irl_bilevel.teachers import Teacher, tabular_reward_function, tabular_transitions
from irl_bilevel.validation import ValidationError
from llm.agentic.base import FiniteTextEnv
from llm.agentic.export import AspectTableReward, TabularExport, optimal_demonstrations

MALFORMED = "<malformed text>"
"""The extra action of :func:`with_malformed_action` (an answer the parser cannot read)."""


def with_malformed_action(export: TabularExport, weights: Sequence[float]) -> TabularExport:
    """``export`` with one more action, :data:`MALFORMED`, after the canonical ones (module docstring): a self-loop
    with the malformed step's aspects ``export.extra_aspects[0]`` in non-terminal states, zero aspects in terminal
    ones. State indices and the canonical actions' indices are unchanged; ``true_reward = aspects @ weights`` (the
    environment's weights, ``env.weights``)."""
    mdp = export.mdp
    if export.extra_aspects is None or mdp.successors is None:
        raise ValidationError("export: expected build_tabular_mdp's export (sparse successors and extra_aspects)")
    num_states, num_actions, num_aspects = export.aspect_table.shape
    terminal = mdp.successors[:, :, 0].eq(torch.arange(num_states)[:, None]).all(dim=1) & \
        export.aspect_table.abs().sum(dim=(1, 2)).eq(0)
    malformed = export.extra_aspects[0].expand(num_states, num_aspects).clone()
    malformed[terminal] = 0.0
    aspects = torch.cat([export.aspect_table, malformed[:, None, :]], dim=1)
    successors = torch.cat([mdp.successors, torch.arange(num_states)[:, None, None]], dim=1)
    w = torch.as_tensor(list(weights), dtype=aspects.dtype)
    if w.shape != (num_aspects,):
        raise ValidationError(f"weights: expected {num_aspects} weights (one per aspect), got {list(w.shape)}")
    extended = dataclasses.replace(
        mdp, successors=successors, successor_probabilities=torch.ones(num_states, num_actions + 1, 1,
                                                                       dtype=mdp.start.dtype),
        state_action_features=aspects, true_reward=aspects @ w)
    actions = [*export.actions, MALFORMED]
    return TabularExport(extended, export.states, actions, export.state_index,
                         {**export.action_index, MALFORMED: num_actions}, aspects, export.aspect_names,
                         export.extra_aspects)


@dataclass(frozen=True)
class TabularLearningConfig:
    """Settings of the reward learning on the exported MDP (module docstring)."""

    temperature: float = 1.0  # τ of the soft-optimal inner policy
    outer_steps: int = 10  # L-BFGS outer steps (each up to 25 iterations on fixed data)
    l2: float = 0.1  # (l2/2)‖θ‖²: the expert is realizable and preference pairs separable, so θ needs a bound
    absorbing_steps: int = 200  # steps in the goal appended to each demonstration (γ^200 ≈ 0 at γ = 0.9)
    query_budget: int = 64  # preference queries in all
    queries_per_refresh: int = 8  # at most this many per outer step
    initial_scales: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0)  # θ at the start (the uniform soft policy)

    def __post_init__(self) -> None:
        for name in ("outer_steps", "query_budget", "queries_per_refresh"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValidationError(f"{name}: expected a positive integer, got {value!r}")
        if not self.temperature > 0 or self.l2 < 0 or self.absorbing_steps < 0:
            raise ValidationError(f"temperature > 0, l2 >= 0, absorbing_steps >= 0 expected, got {self.temperature}, "
                                  f"{self.l2}, {self.absorbing_steps}")


@dataclass
class LearnedScales:
    """The learned ``scales [K]`` (the environment's aspect order), the outer history and the seconds it took."""

    scales: list[float]
    history: list[dict[str, Any]]
    seconds: float
    queries: dict[str, int] = dataclasses.field(default_factory=dict)


def learn_from_demonstrations(env: FiniteTextEnv, export: TabularExport,
                              config: TabularLearningConfig | None = None) -> LearnedScales:
    """MaxEnt IRL of the aspect scales from the optimal solver's plans (module docstring); ``export`` is the
    environment's own (the malformed action is added here)."""
    config = config or TabularLearningConfig()
    started = time.perf_counter()
    learning = with_malformed_action(export, env.weights.tolist())
    demonstrations = optimal_demonstrations(env, learning, absorbing_steps=config.absorbing_steps)
    reward = AspectTableReward(learning, initial_scales=config.initial_scales)
    inner = SoftValueIterationSolver(learning.mdp, temperature=config.temperature, tol=1e-10)
    objective = MaxEntDemonstrationLoss.from_demonstrations(learning.mdp, demonstrations)

    def metrics() -> dict[str, Any]:
        return {"scales": reward.scales.detach().tolist()}

    result = BilevelSolver(BilevelProblem(reward, inner, objective), MaxEntHypergradient(),
                           OuterConfig(steps=config.outer_steps, l2=config.l2, checkpoint_every=config.outer_steps),
                           metrics=metrics, progress=False).run()
    return LearnedScales(reward.scales.detach().tolist(), result.history, time.perf_counter() - started)


class SoftPolicyPreferences(PreferenceLikelihood):
    """The preference likelihood of episode pairs sampled from the soft-optimal inner policy (module docstring).

    Args:
        reward_model: the reward being learned (over ``export``'s table).
        export: the learning MDP (:func:`with_malformed_action`); its ``true_reward`` is what the teacher judges.
        segment_length: steps per episode (the move cap).
        query_budget, queries_per_refresh: queries in all, and at most per refresh.
        teacher: the labeller (:meth:`Teacher.oracle` by default).
        seed: seeds the episodes and the teacher.
    """

    zero_when_empty = True

    def __init__(self, reward_model: RewardModel, export: TabularExport, segment_length: int, query_budget: int,
                 queries_per_refresh: int, teacher: Teacher | None = None, seed: int = 0) -> None:
        super().__init__(reward_model, segment_length)
        self.export, self.mdp = export, export.mdp
        self.query_budget, self.queries_per_refresh = query_budget, queries_per_refresh
        self.teacher = teacher if teacher is not None else Teacher.oracle()
        self.generator = torch.Generator().manual_seed(seed)
        if export.mdp.true_reward is None:
            raise ValidationError("export: the teacher judges the true reward, but the MDP has none")
        self.true_rewards = tabular_reward_function(export.mdp.true_reward)
        self.encode = tabular_transitions(torch.eye(export.mdp.num_states, dtype=export.mdp.start.dtype),
                                          export.mdp.num_actions)
        self.starts = torch.nonzero(export.mdp.start > 0).reshape(-1).tolist()
        self._start_mdps: dict[int, TabularMDP] = {}
        self.queries_used = self.ties = 0

    def _from(self, start: int) -> TabularMDP:
        """The MDP with every episode starting in state ``start``."""
        if start not in self._start_mdps:
            one_hot = torch.zeros_like(self.mdp.start)
            one_hot[start] = 1.0
            self._start_mdps[start] = dataclasses.replace(self.mdp, start=one_hot)
        return self._start_mdps[start]

    def refresh(self, inner: SoftValueIterationSolver, reward_model: RewardModel | RewardEnsemble) -> None:
        """Label up to ``queries_per_refresh`` new same-start pairs of the current soft policy's episodes."""
        count = min(self.queries_per_refresh, self.query_budget - self.queries_used)
        if count < 1:
            return
        log_policy = inner.current_log_policy
        start_probabilities = self.mdp.start[self.starts]
        picks = torch.multinomial(start_probabilities, count, replacement=True, generator=self.generator)
        pairs = [sample_trajectories(self._from(self.starts[int(p)]), log_policy, 2, self.segment_length,
                                     self.generator) for p in picks]
        first = Trajectories(torch.stack([p.observations[0] for p in pairs]),
                             torch.stack([p.actions[0] for p in pairs]),
                             torch.full((count,), self.segment_length), self.mdp.num_states, self.mdp.num_actions)
        second = Trajectories(torch.stack([p.observations[1] for p in pairs]),
                              torch.stack([p.actions[1] for p in pairs]),
                              torch.full((count,), self.segment_length), self.mdp.num_states, self.mdp.num_actions)
        labels = self.teacher.label_segments(first, second, self.true_rewards, generator=self.generator)
        self.queries_used += count
        self.ties += int((labels.labels == 0.5).sum())
        self.add(self.encode(first), self.encode(second), labels.labels, labels.skipped)

    def feedback_may_grow(self) -> bool:
        """True while queries of the budget remain: the solver's tolerance stops wait for the whole budget."""
        return self.queries_used < self.query_budget

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError("the labelled pairs and the teacher's generator are not checkpointed; a tabular "
                                  "preference run is short and starts over")

    def stats(self) -> dict[str, int]:
        return {"queries_used": self.queries_used, "labelled_pairs": len(self), "ties": self.ties}


def learn_from_preferences(env: FiniteTextEnv, export: TabularExport, config: TabularLearningConfig | None = None,
                           seed: int = 0, teacher: Teacher | None = None) -> LearnedScales:
    """Reward learning from preferences of the aspect scales (module docstring); ``export`` is the environment's
    own (the malformed action is added here)."""
    config = config or TabularLearningConfig()
    started = time.perf_counter()
    learning = with_malformed_action(export, env.weights.tolist())
    reward = AspectTableReward(learning, initial_scales=config.initial_scales)
    inner = SoftValueIterationSolver(learning.mdp, temperature=config.temperature, tol=1e-10)
    objective = SoftPolicyPreferences(reward, learning, env.max_steps, config.query_budget,
                                      config.queries_per_refresh, teacher, seed)

    def metrics() -> dict[str, Any]:
        return {"scales": reward.scales.detach().tolist(), **objective.stats()}

    result = BilevelSolver(BilevelProblem(reward, inner, objective), DirectHypergradient(refresh="every_step"),
                           OuterConfig(steps=config.outer_steps, l2=config.l2, checkpoint_every=config.outer_steps),
                           metrics=metrics, progress=False).run()
    return LearnedScales(reward.scales.detach().tolist(), result.history, time.perf_counter() - started,
                         objective.stats())
