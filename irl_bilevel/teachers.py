"""Simulated teachers (B-Pref, Lee et al. 2021), multi-aspect teachers, disagreeing populations, and AI evaluators
(learned reward models) that label the same queries through the same interface.

A teacher compares two segments by their (myopically discounted) true returns. Its parameters
(Lee et al. 2021, "B-Pref: Benchmarking Preference-Based Reinforcement Learning"):

==========  ===========  =======  =========  ======  =======
teacher     β            γ        ε_mistake  ε_skip  ε_equal
==========  ===========  =======  =========  ======  =======
oracle      ∞            1        0          0       0
stochastic  1            1        0          0       0
mistake     ∞            1        0.1        0       0
skip        ∞            1        0          0.1     0
equal       ∞            1        0          0       0.1
myopic      ∞            0.9      0          0       0
==========  ===========  =======  =========  ======  =======

Rules, applied in B-Pref's order: with ``R = Σ_t r_t`` (undiscounted) and ``margin`` = mean episode return ×
segment length / episode length (:func:`threshold_margin`), a query is *skipped* when ``ε_skip > 0`` and both
``R_1, R_2 < ε_skip · margin``; the *decision* uses the myopic returns ``R^γ = Σ_t γ^(T−1−t) r_t`` (the last
step weighs 1): β = ∞ prefers the larger ``R^γ``, finite β samples "first preferred" with probability
``σ(β (R^γ_1 − R^γ_2))``; a *mistake* flips the decision with probability ``ε_mistake``; finally the query is a
*tie* when ``|R_1 − R_2| < ε_equal · margin`` (the undiscounted returns; ties override mistakes, as in B-Pref).
One deviation, switchable: a deterministic teacher (β = ∞) facing exactly equal myopic returns answers a tie
(``exact_ties="tie"``, the default) where B-Pref prefers the first segment (``exact_ties="first"``).

Labels follow :class:`irl_bilevel.feedback.Preferences`: 1 first preferred, 0 second, 0.5 tie; skipped
queries keep the placeholder label 0.5 and ``skipped = True``. Every random draw comes from the ``generator``
passed in (one uniform per query for the decision and one for the mistake, drawn for every query whatever the
outcome), so labels are deterministic given the generator's state.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal, Protocol

import numpy as np
import torch

from irl_bilevel.feedback import TIE, Preferences, Trajectories
from irl_bilevel.rewards import RewardModel, Transitions
from irl_bilevel.validation import ValidationError, as_tensor, check_finite, check_shape

RewardFunction = Callable[[Trajectories], torch.Tensor]
"""Maps segments ``[N, T]`` to per-step rewards ``[N, T]`` or per-aspect rewards ``[N, T, K]``."""


def threshold_margin(mean_episode_return: float, segment_length: int, episode_length: int) -> float:
    """B-Pref's threshold scale: mean episode return × segment length / episode length."""
    if segment_length < 1 or episode_length < 1:
        raise ValidationError(f"segment_length: expected segment and episode lengths >= 1, got {segment_length} "
                              f"and {episode_length}")
    if not math.isfinite(mean_episode_return):
        raise ValidationError(f"mean_episode_return: expected a finite number, got {mean_episode_return}")
    return float(mean_episode_return) * segment_length / episode_length


def _rewards(value: torch.Tensor, field: str) -> torch.Tensor:
    tensor = as_tensor(value, field)
    if not tensor.is_floating_point():
        tensor = tensor.to(torch.get_default_dtype())
    if tensor.dim() not in (2, 3):
        raise ValidationError(f"{field}: expected per-step rewards [N, T] or per-aspect rewards [N, T, K], got "
                              f"{list(tensor.shape)}")
    if tensor.shape[0] == 0:
        raise ValidationError(f"{field}: the query batch is empty; expected at least one query")
    if tensor.shape[1] == 0:
        raise ValidationError(f"{field}: segments are empty (T = 0)")
    return tensor


def _mask(value: torch.Tensor | None, field: str, shape: list[int]) -> torch.Tensor:
    if value is None:
        return torch.ones(shape, dtype=torch.bool)
    mask = as_tensor(value, field).bool()
    check_shape(mask, field, shape)
    if not bool(mask.any(dim=1).all()):
        raise ValidationError(f"{field}: every segment needs at least one real step")
    return mask


def _placeholder(mask: torch.Tensor) -> Trajectories:
    n, t = mask.shape
    zeros = torch.zeros(n, t, dtype=torch.long)
    return Trajectories(zeros, zeros.clone(), mask.sum(dim=1))


@dataclass(frozen=True)
class Teacher:
    """One simulated labeller: B-Pref parameters, and for per-aspect rewards ``[N, T, K]`` its aspect weights.

    ``beta = math.inf`` is a deterministic (perfectly rational) teacher. ``aspect_weights [K]`` aggregate
    per-aspect rewards into the return the teacher judges (default: equal weights 1); with ``per_aspect`` the
    teacher also labels every aspect separately by the same rules (``Preferences.aspect_labels``); the
    thresholds then use ``margin`` per aspect (a number, or one per aspect, ``aspect_margins``).
    """

    name: str
    beta: float = math.inf
    gamma: float = 1.0
    mistake: float = 0.0
    skip: float = 0.0
    equal: float = 0.0
    aspect_weights: tuple[float, ...] | None = None
    per_aspect: bool = False
    exact_ties: Literal["tie", "first"] = "tie"

    def __post_init__(self) -> None:
        if not (self.beta > 0):
            raise ValidationError(f"beta: expected a rationality β > 0 (math.inf: deterministic), got {self.beta}")
        if not 0 < self.gamma <= 1:
            raise ValidationError(f"gamma: expected a myopia γ in (0, 1], got {self.gamma}")
        if not 0 <= self.mistake <= 1:
            raise ValidationError(f"mistake: expected a flip probability in [0, 1], got {self.mistake}")
        for field in ("skip", "equal"):
            value = getattr(self, field)
            if not (math.isfinite(value) and value >= 0):
                raise ValidationError(f"{field}: expected a threshold factor >= 0, got {value}")
        if self.exact_ties not in ("tie", "first"):
            raise ValidationError(f"exact_ties: expected 'tie' or 'first', got {self.exact_ties!r}")
        if self.aspect_weights is not None:
            weights = tuple(float(w) for w in self.aspect_weights)
            if len(weights) == 0 or any(not math.isfinite(w) for w in weights):
                raise ValidationError(f"aspect_weights: expected finite weights, got {self.aspect_weights}")
            object.__setattr__(self, "aspect_weights", weights)

    @property
    def needs_margin(self) -> bool:
        return self.skip > 0 or self.equal > 0

    # ------------------------------------------------------------------ B-Pref's six teachers
    @classmethod
    def oracle(cls, **options) -> Teacher:
        return cls("oracle", **options)

    @classmethod
    def stochastic(cls, beta: float = 1.0, **options) -> Teacher:
        return cls("stochastic", beta=beta, **options)

    @classmethod
    def mistaken(cls, mistake: float = 0.1, **options) -> Teacher:
        return cls("mistake", mistake=mistake, **options)

    @classmethod
    def skipping(cls, skip: float = 0.1, **options) -> Teacher:
        return cls("skip", skip=skip, **options)

    @classmethod
    def equal_teacher(cls, equal: float = 0.1, **options) -> Teacher:
        return cls("equal", equal=equal, **options)

    @classmethod
    def myopic(cls, gamma: float = 0.9, **options) -> Teacher:
        return cls("myopic", gamma=gamma, **options)

    # ------------------------------------------------------------------ labelling
    def label(self, first_rewards: torch.Tensor, second_rewards: torch.Tensor, first_mask: torch.Tensor | None = None,
              second_mask: torch.Tensor | None = None, *, margin: float | Sequence[float] | None = None,
              generator: torch.Generator | None = None, first: Trajectories | None = None,
              second: Trajectories | None = None) -> Preferences:
        """Label ``N`` queries from the true per-step rewards of their two segments.

        ``first_rewards``, ``second_rewards``: ``[N, T]`` or ``[N, T, K]`` (same shape); masks ``[N, T]`` mark
        real steps (default all; padding is ignored; a segment's last real step is its "last" step for myopia).
        ``margin``: :func:`threshold_margin`, required when ``ε_skip`` or ``ε_equal`` is positive (a number, or
        ``[K]`` for per-aspect labels). ``first``/``second``: the segments, stored in the returned
        :class:`Preferences` (placeholders with the masks' lengths otherwise).
        """
        r1, r2 = _rewards(first_rewards, "first_rewards"), _rewards(second_rewards, "second_rewards")
        if r1.shape != r2.shape:
            raise ValidationError(f"second_rewards: expected the shape of first_rewards {list(r1.shape)} (segments "
                                  f"of the same length), got {list(r2.shape)}")
        check_finite(r1, "first_rewards")
        check_finite(r2, "second_rewards")
        n, t = r1.shape[:2]
        m1, m2 = _mask(first_mask, "first_mask", [n, t]), _mask(second_mask, "second_mask", [n, t])
        aspects = r1.dim() == 3
        k = r1.shape[2] if aspects else 1
        if self.per_aspect and not aspects:
            raise ValidationError("first_rewards: a per-aspect teacher needs per-aspect rewards [N, T, K]")
        weights = self._weights(k, r1.dtype) if aspects else None
        margins = self._margins(margin, k if (aspects and self.per_aspect) else 1, r1.dtype)
        u_decide = torch.rand(n, k + 1 if self.per_aspect else 1, generator=generator, dtype=torch.float64)
        u_mistake = torch.rand(n, k + 1 if self.per_aspect else 1, generator=generator, dtype=torch.float64)
        r1 = r1 if aspects else r1.unsqueeze(-1)
        r2 = r2 if aspects else r2.unsqueeze(-1)
        total1 = r1 @ weights if weights is not None else r1[..., 0]
        total2 = r2 @ weights if weights is not None else r2[..., 0]
        total_margin = margins[0] if margins.numel() == 1 else (margins * weights).sum()  # type: ignore[operator]
        labels, skipped = self._decide(total1, total2, m1, m2, total_margin, u_decide[:, 0], u_mistake[:, 0])
        aspect_labels = None
        if self.per_aspect:
            columns = []
            for j in range(k):
                margin_j = margins[j] if margins.numel() > 1 else margins[0]
                label_j, _ = self._decide(r1[..., j], r2[..., j], m1, m2, margin_j, u_decide[:, j + 1],
                                          u_mistake[:, j + 1], apply_skip=False)
                columns.append(label_j)
            aspect_labels = torch.stack(columns, dim=1)
        return Preferences(first if first is not None else _placeholder(m1),
                           second if second is not None else _placeholder(m2),
                           labels, skipped, aspect_labels=aspect_labels)

    def label_segments(self, first: Trajectories, second: Trajectories, reward_fn: RewardFunction, *,
                       margin: float | Sequence[float] | None = None,
                       generator: torch.Generator | None = None) -> Preferences:
        """Label segment pairs by the true reward ``reward_fn`` (``[N, T]`` or ``[N, T, K]`` per step)."""
        _check_pair(first, second)
        return self.label(reward_fn(first), reward_fn(second), first.mask, second.mask, margin=margin,
                          generator=generator, first=first, second=second)

    # ------------------------------------------------------------------ internals
    def _weights(self, k: int, dtype: torch.dtype) -> torch.Tensor:
        if self.aspect_weights is None:
            return torch.ones(k, dtype=dtype)
        if len(self.aspect_weights) != k:
            raise ValidationError(f"aspect_weights: teacher {self.name!r} has {len(self.aspect_weights)} weights, "
                                  f"the rewards have {k} aspects")
        return torch.tensor(self.aspect_weights, dtype=dtype)

    def _margins(self, margin: float | Sequence[float] | None, k: int, dtype: torch.dtype) -> torch.Tensor:
        if margin is None:
            if self.needs_margin:
                raise ValidationError(f"margin: teacher {self.name!r} (ε_skip = {self.skip}, ε_equal = {self.equal}) "
                                      f"needs the threshold margin; see threshold_margin()")
            return torch.zeros(1, dtype=dtype)
        values = as_tensor(margin, "margin", dtype).reshape(-1)
        check_finite(values, "margin")
        if values.numel() not in (1, k):
            raise ValidationError(f"margin: expected one number or one per aspect ({k}), got {values.numel()}")
        return values

    def _decide(self, r1: torch.Tensor, r2: torch.Tensor, m1: torch.Tensor, m2: torch.Tensor, margin: torch.Tensor,
                u_decide: torch.Tensor, u_mistake: torch.Tensor,
                apply_skip: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        returns1 = (r1 * m1).sum(dim=1)
        returns2 = (r2 * m2).sum(dim=1)
        skipped = torch.zeros(returns1.shape[0], dtype=torch.bool)
        if apply_skip and self.skip > 0:
            threshold = self.skip * margin
            skipped = (returns1 < threshold) & (returns2 < threshold)
        myopic1 = (r1 * _myopic_weights(m1, self.gamma, r1.dtype)).sum(dim=1)
        myopic2 = (r2 * _myopic_weights(m2, self.gamma, r2.dtype)).sum(dim=1)
        difference = myopic1 - myopic2
        if math.isinf(self.beta):
            first_wins = (difference > 0).double()
            if self.exact_ties == "first":
                first_wins = (difference >= 0).double()
            else:
                first_wins = torch.where(difference == 0, torch.full_like(first_wins, TIE), first_wins)
        else:
            probability = torch.sigmoid(self.beta * difference).double()
            first_wins = (u_decide < probability).double()
        decided = first_wins != TIE
        flip = (u_mistake < self.mistake) & decided
        labels = torch.where(flip, 1 - first_wins, first_wins)
        if self.equal > 0:
            tie = (returns1 - returns2).abs() < self.equal * margin
            labels = torch.where(tie, torch.full_like(labels, TIE), labels)
        labels = torch.where(skipped, torch.full_like(labels, TIE), labels)
        return labels.to(r1.dtype), skipped


def _myopic_weights(mask: torch.Tensor, gamma: float, dtype: torch.dtype) -> torch.Tensor:
    """``γ^(T_i − 1 − t)`` on the real steps of each segment (its last real step weighs 1), 0 on padding."""
    lengths = mask.sum(dim=1, keepdim=True)
    steps = torch.arange(mask.shape[1]).unsqueeze(0)
    exponent = (lengths - 1 - steps).clamp(min=0).to(dtype)
    return torch.where(mask, torch.as_tensor(gamma, dtype=dtype) ** exponent, torch.zeros((), dtype=dtype))


def _check_pair(first: Trajectories, second: Trajectories) -> None:
    if len(first) == 0:
        raise ValidationError("first: the query batch is empty; expected at least one query")
    if len(first) != len(second):
        raise ValidationError(f"second: expected {len(first)} segments (as many as first), got {len(second)}")
    if first.observations.shape[1] != second.observations.shape[1]:
        raise ValidationError(f"second: segments of mismatched length: first has T = {first.observations.shape[1]}, "
                              f"second T = {second.observations.shape[1]}")


def bpref_teachers(**options) -> list[Teacher]:
    """The six B-Pref teachers with their published parameters (``options`` go to each, e.g. ``aspect_weights``)."""
    return [Teacher.oracle(**options), Teacher.stochastic(**options), Teacher.mistaken(**options),
            Teacher.skipping(**options), Teacher.equal_teacher(**options), Teacher.myopic(**options)]


# ---------------------------------------------------------------------- populations
@dataclass(frozen=True)
class TeacherPopulation:
    """Teachers that judge the same aspects with different weights: disagreeing annotators."""

    teachers: tuple[Teacher, ...]

    def __post_init__(self) -> None:
        if len(self.teachers) == 0:
            raise ValidationError("teachers: expected at least one teacher")

    @classmethod
    def from_weights(cls, weights: torch.Tensor | Sequence[Sequence[float]], base: Teacher | None = None,
                     prefix: str = "annotator") -> TeacherPopulation:
        """One teacher per row of ``weights [M, K]``, each a copy of ``base`` (default: the oracle)."""
        table = as_tensor(weights, "weights", torch.float64)
        check_shape(table, "weights", [None, None])
        check_finite(table, "weights")
        if table.shape[0] == 0 or table.shape[1] == 0:
            raise ValidationError("weights: expected shape [M, K] with M, K >= 1")
        base = base if base is not None else Teacher.oracle()
        return cls(tuple(replace(base, name=f"{prefix}_{i}", aspect_weights=tuple(row.tolist()))
                         for i, row in enumerate(table)))

    @classmethod
    def dirichlet(cls, num_teachers: int, num_aspects: int, concentration: float = 1.0,
                  generator: torch.Generator | None = None, base: Teacher | None = None) -> TeacherPopulation:
        """Aspect weights drawn from a symmetric Dirichlet(``concentration``) (small: strongly disagreeing)."""
        if num_teachers < 1 or num_aspects < 1 or not concentration > 0:
            raise ValidationError(f"num_teachers: expected num_teachers, num_aspects >= 1 and concentration > 0, got "
                                  f"{num_teachers}, {num_aspects}, {concentration}")
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        draws = np.random.default_rng(seed).dirichlet([float(concentration)] * num_aspects, size=num_teachers)
        return cls.from_weights(torch.from_numpy(draws), base)

    def __len__(self) -> int:
        return len(self.teachers)

    def label(self, first_rewards: torch.Tensor, second_rewards: torch.Tensor, first_mask: torch.Tensor | None = None,
              second_mask: torch.Tensor | None = None, *, margin: float | Sequence[float] | None = None,
              generator: torch.Generator | None = None) -> list[Preferences]:
        """Every teacher labels the same queries (per-aspect rewards ``[N, T, K]``), in order."""
        return [t.label(first_rewards, second_rewards, first_mask, second_mask, margin=margin, generator=generator)
                for t in self.teachers]


# ---------------------------------------------------------------------- AI evaluators
class Labeller(Protocol):
    """What labels segment pairs: a simulated teacher given the true reward, or an AI evaluator."""

    name: str

    def label_segments(self, first: Trajectories, second: Trajectories, reward_fn: RewardFunction, *,
                       margin: float | Sequence[float] | None = None,
                       generator: torch.Generator | None = None) -> Preferences: ...


class RewardModelEvaluator:
    """An AI evaluator: a learned reward model judging segment pairs by its own predicted returns.

    ``encode`` maps segments to the model's input transitions, ``N·T`` of them segment-major (for tabular MDPs,
    :func:`tabular_transitions`). The evaluator's per-step rewards (``RewardOutput.total``, or the aspects
    ``[N, T, K]`` when ``aspects=True``) go through ``rule`` (default: the deterministic oracle rules, i.e. the
    preferred segment is the one with the larger predicted return), so the labels have the teachers' format.
    ``label_segments`` has the teachers' signature; its ``reward_fn`` (the true reward) is ignored.
    """

    def __init__(self, model: RewardModel | torch.nn.Module, encode: Callable[[Trajectories], Transitions],
                 rule: Teacher | None = None, name: str = "reward_model", aspects: bool = False) -> None:
        self.model = model
        self.encode = encode
        self.rule = rule if rule is not None else Teacher(name)
        self.name = name
        self.aspects = aspects

    def rewards(self, segments: Trajectories) -> torch.Tensor:
        """Predicted per-step rewards ``[N, T]`` (or ``[N, T, K]``), without gradients."""
        n, t = segments.observations.shape[:2]
        with torch.no_grad():
            output = self.model(self.encode(segments))
        if self.aspects:
            return output.aspects.reshape(n, t, -1)
        return output.total.reshape(n, t)

    def label_segments(self, first: Trajectories, second: Trajectories, reward_fn: RewardFunction | None = None, *,
                       margin: float | Sequence[float] | None = None,
                       generator: torch.Generator | None = None) -> Preferences:
        _check_pair(first, second)
        return self.rule.label(self.rewards(first), self.rewards(second), first.mask, second.mask, margin=margin,
                               generator=generator, first=first, second=second)


def tabular_reward_function(reward: torch.Tensor) -> RewardFunction:
    """Per-step rewards ``[N, T]`` of tabular segments from a reward table ``[S]`` or ``[S, A]`` (for per-aspect
    state tables ``[S, K]`` use :func:`tabular_aspect_function`)."""
    table = as_tensor(reward, "reward")
    check_finite(table, "reward")

    def rewards(segments: Trajectories) -> torch.Tensor:
        states = segments.observations.long()
        if table.dim() == 1:
            return table[states]
        return table[states, segments.actions.long()]

    return rewards


def tabular_aspect_function(aspects: torch.Tensor) -> RewardFunction:
    """Per-aspect per-step rewards ``[N, T, K]`` of tabular segments from a state table ``[S, K]``."""
    table = as_tensor(aspects, "aspects")
    check_shape(table, "aspects", [None, None])
    check_finite(table, "aspects")
    return lambda segments: table[segments.observations.long()]


def tabular_transitions(state_features: torch.Tensor, num_actions: int | None = None) -> Callable[
        [Trajectories], Transitions]:
    """Encode tabular segments as reward-model input: state features ``[N·T, F]`` (and one-hot actions when
    ``num_actions`` is given), segment-major."""
    features = as_tensor(state_features, "state_features")

    def encode(segments: Trajectories) -> Transitions:
        states = features[segments.observations.long().reshape(-1)]
        actions = None
        if num_actions is not None:
            actions = torch.nn.functional.one_hot(segments.actions.long().reshape(-1), num_actions).to(states.dtype)
        return Transitions(states, actions)

    return encode
