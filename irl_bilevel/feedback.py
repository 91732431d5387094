"""Typed, validated feedback containers: demonstrations, pairwise preferences, rankings, ratings, labels.

Every container checks shapes, dtypes, NaNs, emptiness and ranges when it is built and names the field at
fault. Trajectories of different lengths are stored padded, with a ``lengths`` vector.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from irl_bilevel.validation import (
    ValidationError,
    as_tensor,
    check_finite,
    check_integer_range,
    check_non_empty,
    check_shape,
)

TIE = 0.5


@dataclass
class Trajectories:
    """A batch of variable-length trajectories (or segments), padded to the longest.

    Shapes: ``observations [N, T, *obs]`` (integer state indices for tabular MDPs: ``[N, T]``),
    ``actions [N, T, *act]``, ``lengths [N]`` with ``1 <= lengths <= T``; entries past a trajectory's length
    are padding and ignored. ``num_actions``/``num_states``, when given, bound discrete actions/states.
    """

    observations: torch.Tensor
    actions: torch.Tensor
    lengths: torch.Tensor
    num_states: int | None = None
    num_actions: int | None = None

    def __post_init__(self) -> None:
        self.observations = as_tensor(self.observations, "observations")
        self.actions = as_tensor(self.actions, "actions")
        self.lengths = as_tensor(self.lengths, "lengths").long()
        check_non_empty(self.lengths, "lengths")
        if self.observations.dim() < 2:
            raise ValidationError(
                f"observations: expected shape [N, T, ...], got {list(self.observations.shape)}"
            )
        n, t = self.observations.shape[:2]
        if t == 0:
            raise ValidationError("observations: trajectories are empty (T = 0); expected at least one step")
        check_shape(self.lengths, "lengths", [n])
        if self.actions.shape[:2] != (n, t):
            raise ValidationError(f"actions: expected shape [{n}, {t}, ...], got {list(self.actions.shape)}")
        if int(self.lengths.min()) < 1 or int(self.lengths.max()) > t:
            raise ValidationError(
                f"lengths: expected values in [1, {t}], got [{int(self.lengths.min())}, "
                f"{int(self.lengths.max())}]"
            )
        valid = self.mask
        check_finite(self.observations[valid], "observations")
        check_finite(self.actions[valid], "actions")
        if self.num_states is not None:
            check_integer_range(self.observations[valid], "observations", 0, self.num_states)
        if self.num_actions is not None:
            check_integer_range(self.actions[valid], "actions", 0, self.num_actions)

    @classmethod
    def from_sequences(
        cls,
        observations: Sequence[object],
        actions: Sequence[object],
        num_states: int | None = None,
        num_actions: int | None = None,
    ):
        """Build from per-trajectory arrays of possibly different lengths."""
        if len(observations) == 0:
            raise ValidationError("observations: no trajectories given; expected at least one")
        if len(observations) != len(actions):
            raise ValidationError(
                f"actions: expected one action sequence per trajectory ({len(observations)}), got {len(actions)}"
            )
        obs = [as_tensor(np.asarray(o), f"observations[{i}]") for i, o in enumerate(observations)]
        act = [as_tensor(np.asarray(a), f"actions[{i}]") for i, a in enumerate(actions)]
        for i, (o, a) in enumerate(zip(obs, act)):
            if o.dim() == 0 or o.shape[0] == 0:
                raise ValidationError(f"observations[{i}]: empty trajectory; expected at least one step")
            if a.shape[:1] != o.shape[:1]:
                raise ValidationError(
                    f"actions[{i}]: expected {o.shape[0]} actions (one per observation), got {list(a.shape)}"
                )
        lengths = torch.tensor([o.shape[0] for o in obs])
        padded_obs = torch.nn.utils.rnn.pad_sequence(obs, batch_first=True)
        padded_act = torch.nn.utils.rnn.pad_sequence(act, batch_first=True)
        return cls(padded_obs, padded_act, lengths, num_states=num_states, num_actions=num_actions)

    def __len__(self) -> int:
        return int(self.lengths.shape[0])

    @property
    def mask(self) -> torch.Tensor:
        """``[N, T]`` boolean mask of the real (non-padding) steps."""
        steps = torch.arange(self.observations.shape[1])
        return steps.unsqueeze(0) < self.lengths.unsqueeze(1)

    def subset(self, indices: torch.Tensor | Sequence[int]):
        index = torch.as_tensor(indices, dtype=torch.long)
        return type(self)(
            self.observations[index],
            self.actions[index],
            self.lengths[index],
            self.num_states,
            self.num_actions,
        )


class Demonstrations(Trajectories):
    """Expert trajectories: the feedback that MaxEnt / ML-IRL learns from."""


@dataclass
class Preferences:
    """Pairwise preferences between segments, with ties, skipped queries and optional per-aspect labels.

    ``labels [N]``: 1 when ``first`` is preferred, 0 when ``second`` is, ``TIE`` (0.5) for a tie.
    ``skipped [N]``: queries the labeller declined to answer; they are kept (for accounting) and ignored by
    the losses. ``aspect_labels [N, K]`` with ``aspect_mask [N, K]`` hold per-aspect labels where given.
    """

    first: Trajectories
    second: Trajectories
    labels: torch.Tensor
    skipped: torch.Tensor | None = None
    aspect_labels: torch.Tensor | None = None
    aspect_mask: torch.Tensor | None = None
    aspect_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        n = len(self.first)
        if len(self.second) != n:
            raise ValidationError(f"second: expected {n} segments (as many as first), got {len(self.second)}")
        self.labels = as_tensor(self.labels, "labels", torch.get_default_dtype())
        check_shape(self.labels, "labels", [n])
        _check_labels(self.labels, "labels")
        if self.skipped is None:
            self.skipped = torch.zeros(n, dtype=torch.bool)
        self.skipped = as_tensor(self.skipped, "skipped").bool()
        check_shape(self.skipped, "skipped", [n])
        if self.aspect_labels is not None:
            self.aspect_labels = as_tensor(self.aspect_labels, "aspect_labels", torch.get_default_dtype())
            check_shape(self.aspect_labels, "aspect_labels", [n, None])
            k = self.aspect_labels.shape[1]
            if self.aspect_mask is None:
                self.aspect_mask = torch.ones(n, k, dtype=torch.bool)
            self.aspect_mask = as_tensor(self.aspect_mask, "aspect_mask").bool()
            check_shape(self.aspect_mask, "aspect_mask", [n, k])
            _check_labels(self.aspect_labels[self.aspect_mask], "aspect_labels")
            if self.aspect_names is not None and len(self.aspect_names) != k:
                raise ValidationError(f"aspect_names: expected {k} names, got {len(self.aspect_names)}")
        elif self.aspect_mask is not None:
            raise ValidationError("aspect_mask: given without aspect_labels")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def answered(self) -> torch.Tensor:
        assert self.skipped is not None
        return ~self.skipped


@dataclass
class Rankings:
    """Listwise feedback: ``order [N, M]`` lists, best first, indices into ``M`` candidate segments per query.

    ``candidates`` holds the ``N·M`` segments, query-major (segment ``i·M + j`` is candidate ``j`` of query ``i``).
    """

    candidates: Trajectories
    order: torch.Tensor

    def __post_init__(self) -> None:
        self.order = as_tensor(self.order, "order").long()
        check_non_empty(self.order, "order")
        if self.order.dim() != 2 or self.order.shape[1] < 2:
            raise ValidationError(f"order: expected shape [N, M] with M >= 2, got {list(self.order.shape)}")
        n, m = self.order.shape
        if len(self.candidates) != n * m:
            raise ValidationError(f"candidates: expected N·M = {n * m} segments, got {len(self.candidates)}")
        check_integer_range(self.order, "order", 0, m)
        if not bool((self.order.sort(dim=1).values == torch.arange(m)).all()):
            raise ValidationError("order: each row must be a permutation of 0..M-1")


@dataclass
class Ratings:
    """Per-aspect absolute ratings ``scores [N, K]`` of ``segments`` on a scale ``[low, high]``.

    ``mask [N, K]`` marks which aspects were rated.
    """

    segments: Trajectories
    scores: torch.Tensor
    aspect_names: tuple[str, ...]
    low: float = 1.0
    high: float = 5.0
    mask: torch.Tensor | None = None

    def __post_init__(self) -> None:
        self.scores = as_tensor(self.scores, "scores", torch.get_default_dtype())
        check_shape(self.scores, "scores", [len(self.segments), len(self.aspect_names)])
        if self.mask is None:
            self.mask = torch.ones_like(self.scores, dtype=torch.bool)
        self.mask = as_tensor(self.mask, "mask").bool()
        check_shape(self.mask, "mask", list(self.scores.shape))
        rated = self.scores[self.mask]
        check_finite(rated, "scores")
        if rated.numel() and (float(rated.min()) < self.low or float(rated.max()) > self.high):
            raise ValidationError(f"scores: expected values in [{self.low}, {self.high}]")


@dataclass
class UnpairedLabels:
    """Unpaired good/bad labels (KTO-style): ``desirable [N]`` booleans for ``segments``."""

    segments: Trajectories
    desirable: torch.Tensor

    def __post_init__(self) -> None:
        self.desirable = as_tensor(self.desirable, "desirable").bool()
        check_shape(self.desirable, "desirable", [len(self.segments)])


def _check_labels(labels: torch.Tensor, field: str) -> None:
    check_finite(labels, field)
    allowed = (labels == 0) | (labels == 1) | (labels == TIE)
    if not bool(allowed.all()):
        raise ValidationError(f"{field}: expected 1 (first preferred), 0 (second preferred) or 0.5 (tie)")
