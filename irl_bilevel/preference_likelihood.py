"""The preference likelihood of labelled segment pairs as an outer objective (Christiano et al. 2017).

``L(θ) = (1/N) Σ_q ℓ(R_θ(σ_q^1), R_θ(σ_q^2); y_q)`` over the ``N`` labelled queries so far, where
``R_θ(σ) = Σ_{t<T} r_θ(x_t)`` is the learned return of a segment of ``T`` reward-model inputs and ``ℓ`` any pairwise
loss of the catalog on reward-model scores (:data:`PAIRWISE_SCORE_LOSSES`: ``bradley_terry`` by default; the tie
models ``rao_kupper``/``davidson``; the noise-robust ``robust_bradley_terry`` and ``smoothed_bradley_terry``).
The loss depends on ``θ`` only through ``r_θ`` on fixed segments, so its hypergradient is its direct gradient
(:class:`irl_bilevel.hypergradients.DirectHypergradient`).

Labels follow :class:`irl_bilevel.feedback.Preferences`: 1 first preferred, 0 second, 0.5 tie. Skipped queries
are not added (they still count against the query budget of whoever asked them). Losses that take ``labels``
(the tie and robust models) get every label; losses that do not (``bradley_terry``, ``plackett_luce``: "column 0
is chosen") get the pairs oriented chosen-first and ties left out — a tie carries no ordering for them.

An ensemble reward model (:class:`irl_bilevel.reward_ensemble.RewardEnsemble`) is trained member by member: the
loss is the mean over members of each member's loss on the same data (Christiano et al. train an ensemble of
predictors; their spread drives disagreement-based query selection), so members stay distinct.

Shapes: a segment batch is a :class:`~irl_bilevel.rewards.Transitions` of ``N·T`` rows, segment-major (the rows of
segment ``q`` are ``q·T … q·T + T − 1``); every row counts (padding after a termination is the absorbing state, a
real input whose reward is learned).
"""

from __future__ import annotations

from typing import Any

import torch

from irl_bilevel.losses import PREFERENCE_LOSSES, RankingBatch, preference_loss
from irl_bilevel.objectives import OuterObjective
from irl_bilevel.reward_ensemble import RewardEnsemble
from irl_bilevel.rewards import RewardModel, Transitions
from irl_bilevel.validation import ValidationError, as_tensor, check_finite, check_shape

PAIRWISE_SCORE_LOSSES = ("bradley_terry", "plackett_luce", "rao_kupper", "davidson", "robust_bradley_terry",
                         "smoothed_bradley_terry")
ALLOWED_LABELS = (0.0, 0.5, 1.0)


def _check_segments(batch: Transitions, field: str, count: int, length: int) -> None:
    if len(batch) != count * length:
        raise ValidationError(f"{field}: expected N·T = {count}·{length} = {count * length} transitions "
                              f"(segment-major), got {len(batch)}")
    for name in ("states", "actions", "next_states"):
        value = getattr(batch, name)
        if value is not None:
            check_finite(value, f"{field}.{name}")


def _concatenate(parts: list[torch.Tensor | None]) -> torch.Tensor | None:
    if any(p is None for p in parts):
        return None
    return torch.cat([p for p in parts if p is not None])


def check_loss_options(loss: str, loss_options: dict[str, Any] | None) -> None:
    """``loss`` must be a name in :data:`PAIRWISE_SCORE_LOSSES` and ``loss_options`` parameters of it (or ``beta``);
    a :class:`ValidationError` naming the field otherwise."""
    if loss not in PAIRWISE_SCORE_LOSSES:
        what = "not a loss on reward-model scores of pairs" if loss in PREFERENCE_LOSSES else "unknown"
        raise ValidationError(f"loss: {loss!r} is {what}; expected one of {PAIRWISE_SCORE_LOSSES}")
    options = dict(loss_options or {})
    options.pop("beta", None)
    unknown = sorted(set(options) - set(PREFERENCE_LOSSES[loss].defaults) - {"labels"})
    if unknown or "labels" in options:
        raise ValidationError(f"loss_options: {(unknown or ['labels'])[0]} is not a parameter of {loss}; expected "
                              f"some of {sorted(set(PREFERENCE_LOSSES[loss].defaults) - {'labels'})} and beta")


class PreferenceLikelihood(OuterObjective):
    """The outer loss over every query labelled so far (see the module docstring).

    ``reward_model``: the model whose parameters are optimized (:meth:`evaluate` reads it, so that the black-box
    hypergradient methods work too). ``loss``: a name in :data:`PAIRWISE_SCORE_LOSSES`; ``loss_options``: its
    parameters (``flip_rate``, ``label_smoothing``, ``theta``, ``nu``, ``margin``) and ``beta``.

    Run state (:meth:`state_dict`): the labelled dataset (both segment batches and the labels). Subclasses that
    grow it with :meth:`refresh` hold more (their query loop) and say whether they can save it.
    """

    zero_when_empty = False  # online query loops set it: no decided label yet is a zero loss, not an error

    def __init__(self, reward_model: RewardModel | RewardEnsemble, segment_length: int,
                 loss: str = "bradley_terry", loss_options: dict[str, Any] | None = None) -> None:
        check_loss_options(loss, loss_options)
        if int(segment_length) < 1:
            raise ValidationError(f"segment_length: expected at least 1 step, got {segment_length}")
        options = dict(loss_options or {})
        self.beta = options.pop("beta", None)
        self.loss_options = options
        self.loss_name = loss
        self.takes_labels = "labels" in PREFERENCE_LOSSES[loss].defaults
        self.reward_model = reward_model
        self.segment_length = int(segment_length)
        self.first: Transitions | None = None
        self.second: Transitions | None = None
        self.labels = torch.zeros(0, dtype=torch.float64)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def has_feedback(self) -> bool:
        """Whether a decided label exists (the bilevel solver takes no outer step before one does)."""
        return len(self) > 0

    def add(self, first: Transitions, second: Transitions, labels: torch.Tensor,
            skipped: torch.Tensor | None = None) -> int:
        """Add ``N`` labelled queries (``first``/``second``: ``N·T`` rows each; ``labels [N]`` in {0, 0.5, 1};
        ``skipped [N]`` rows are dropped, as are ties for losses without a tie model). Returns how many joined."""
        labels = as_tensor(labels, "labels", torch.float64).reshape(-1)
        n = int(labels.shape[0])
        if n == 0:
            raise ValidationError("labels: the query batch is empty; expected at least one labelled query")
        check_finite(labels, "labels")
        if not bool(((labels == 0) | (labels == 0.5) | (labels == 1)).all()):
            raise ValidationError(f"labels: expected 1 (first preferred), 0 (second preferred) or 0.5 (tie), got "
                                  f"{sorted(set(labels.tolist()) - set(ALLOWED_LABELS))}")
        _check_segments(first, "first", n, self.segment_length)
        _check_segments(second, "second", n, self.segment_length)
        keep = torch.ones(n, dtype=torch.bool)
        if skipped is not None:
            skipped = as_tensor(skipped, "skipped").bool().reshape(-1)
            check_shape(skipped, "skipped", [n])
            keep &= ~skipped
        if not self.takes_labels:
            keep &= labels != 0.5
        rows = keep.repeat_interleave(self.segment_length)
        swap = (labels == 0)[keep] if not self.takes_labels else None
        kept_first, kept_second = first.select(rows), second.select(rows)
        kept_labels = labels[keep]
        if swap is not None and bool(swap.any()):
            # Chosen first for losses that read "column 0 is chosen".
            swap_rows = swap.repeat_interleave(self.segment_length)
            kept_first, kept_second = _swap(kept_first, kept_second, swap_rows)
            kept_labels = torch.ones_like(kept_labels)
        added = int(keep.sum())
        if added == 0:
            return 0
        if self.first is None or self.second is None:
            self.first, self.second = kept_first, kept_second
        else:
            self.first = _join(self.first, kept_first)
            self.second = _join(self.second, kept_second)
        self.labels = torch.cat([self.labels, kept_labels])
        return added

    def segment_returns(self, model: RewardModel, batch: Transitions) -> torch.Tensor:
        """``[N]`` learned returns ``Σ_t r_θ`` of the segments of ``batch`` (differentiable in ``θ``)."""
        dtype = next(iter(model.parameters())).dtype
        return model(batch.to(dtype)).total.reshape(-1, self.segment_length).sum(dim=1)

    def member_loss(self, model: RewardModel) -> torch.Tensor:
        """The mean pairwise loss of one reward model over the dataset."""
        if self.first is None or self.second is None or len(self) == 0:
            raise ValidationError("preferences: no labelled query yet; the preference likelihood is undefined "
                                  "(was the query budget zero, or every query skipped or tied?)")
        scores = torch.stack([self.segment_returns(model, self.first), self.segment_returns(model, self.second)], 1)
        options = dict(self.loss_options)
        if self.takes_labels:
            options["labels"] = self.labels.to(scores.dtype)
        return preference_loss(self.loss_name, RankingBatch(scores), self.beta, **options).losses.mean()

    def reward_loss(self, reward_model: RewardModel | RewardEnsemble) -> torch.Tensor:
        """``L(θ)``: the member loss, averaged over members for an ensemble. Empty data is an error, unless
        ``zero_when_empty`` (an online query loop whose first queries all tied or were skipped): then a zero loss
        that still reaches every parameter."""
        if len(self) == 0 and self.zero_when_empty:
            return sum((p.sum() * 0.0 for p in reward_model.parameters()), torch.zeros(()))
        if isinstance(reward_model, RewardEnsemble):
            members: list[RewardModel] = list(reward_model.members)  # type: ignore[arg-type]  # ModuleList of them
            return torch.stack([self.member_loss(member) for member in members]).mean()
        return self.member_loss(reward_model)

    def evaluate(self, inner: object) -> torch.Tensor:
        with torch.no_grad():
            return self.reward_loss(self.reward_model)

    def state_dict(self) -> dict[str, Any]:
        """The labelled dataset: ``labels [N]`` and the two segment batches' fields (absent ones left out)."""
        state: dict[str, Any] = {"labels": self.labels.clone()}
        for name, batch in (("first", self.first), ("second", self.second)):
            if batch is not None:
                fields = {"states": batch.states, "actions": batch.actions, "next_states": batch.next_states,
                          "dones": batch.dones}
                state[name] = {key: value.clone() for key, value in fields.items() if value is not None}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "labels" not in state:
            return
        self.labels = state["labels"].clone()
        batches = [None if name not in state else Transitions(
            state[name]["states"], state[name].get("actions"), state[name].get("next_states"), state[name].get("dones"))
            for name in ("first", "second")]
        self.first, self.second = batches

    def loss(self, log_policy: torch.Tensor) -> torch.Tensor:
        raise ValidationError("objective: the preference likelihood does not depend on the policy; use the "
                              "'direct' hypergradient")

    def expert_reward_expectation(self, inner: object, reward_model: RewardModel) -> torch.Tensor:
        raise ValidationError("objective: the preference likelihood has no expert term; use the 'direct' "
                              "hypergradient")


def _swap(first: Transitions, second: Transitions, rows: torch.Tensor) -> tuple[Transitions, Transitions]:
    def where(a: torch.Tensor | None, b: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if a is None or b is None:
            return a, b
        mask = rows.reshape(-1, *([1] * (a.dim() - 1)))
        return torch.where(mask, b, a), torch.where(mask, a, b)

    fields = [where(getattr(first, f), getattr(second, f)) for f in ("states", "actions", "next_states", "dones")]
    states, actions, next_states, dones = fields
    assert states[0] is not None and states[1] is not None
    return (Transitions(states[0], actions[0], next_states[0], dones[0]),
            Transitions(states[1], actions[1], next_states[1], dones[1]))


def _join(a: Transitions, b: Transitions) -> Transitions:
    states = torch.cat([a.states, b.states])
    return Transitions(states, _concatenate([a.actions, b.actions]), _concatenate([a.next_states, b.next_states]),
                       _concatenate([a.dones, b.dones]))
