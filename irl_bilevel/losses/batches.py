"""Validated inputs of the preference losses and their output.

* :class:`PreferenceBatch`: per-pair summed log-probabilities of the policy (and the reference) for the chosen
  and the rejected sequence (or trajectory segment), with token counts for length-normalized losses.
* :class:`UnpairedBatch`: KTO-style single completions with a desirable/undesirable flag and a KL baseline.
* :class:`RankingBatch`: reward-model scores ``[B, M]`` of ``M`` candidates listed best first.
* :class:`LossOutput`: unreduced per-pair losses with the implicit rewards of chosen and rejected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import torch

from irl_bilevel.validation import ValidationError, as_tensor, check_finite, check_non_empty, check_shape


def _float_tensor(value: Any, field: str, like: torch.Tensor | None = None) -> torch.Tensor:
    tensor = as_tensor(value, field)
    if like is not None:
        return tensor.to(like.dtype)
    return tensor if tensor.is_floating_point() else tensor.to(torch.get_default_dtype())


def _vector(value: Any, field: str, size: int | None, like: torch.Tensor | None = None) -> torch.Tensor:
    tensor = _float_tensor(value, field, like)
    check_shape(tensor, field, [size])
    check_non_empty(tensor, field)
    check_finite(tensor, field)
    return tensor


def _lengths(value: Any, field: str, size: int, like: torch.Tensor) -> torch.Tensor:
    tensor = _vector(value, field, size, like)
    if bool((tensor < 1).any()):
        raise ValidationError(f"{field}: expected lengths >= 1 (token or step counts), got min {float(tensor.min()):g}")
    return tensor


def _pair_or_none(first: Any, second: Any, names: tuple[str, str]) -> None:
    if (first is None) != (second is None):
        given, missing = names if second is None else names[::-1]
        raise ValidationError(f"{missing}: given {given} but not {missing}; pass both or neither")


@dataclass(frozen=True)
class PreferenceBatch:
    """``B`` preference pairs, each a chosen and a rejected sequence (or trajectory segment).

    Log-probabilities are summed over the completion's tokens (or the segment's actions): ``policy_*_logps``
    are ``log πθ(y|x)``, ``reference_*_logps`` are ``log πref(y|x)`` (required by losses with a reference),
    ``*_lengths`` the token counts ``|y| >= 1`` (required by length-normalized losses and by the NLL terms of
    CPO, ORPO and SLiC, which use the mean token log-prob ``log πθ(y|x) / |y|``). All fields have shape ``[B]``,
    are finite, and take the policy's floating dtype. The log-probabilities are not required to be ``<= 0``:
    per-segment log-densities of continuous actions may be positive (ORPO alone needs probabilities < 1).
    """

    policy_chosen_logps: torch.Tensor
    policy_rejected_logps: torch.Tensor
    reference_chosen_logps: torch.Tensor | None = None
    reference_rejected_logps: torch.Tensor | None = None
    chosen_lengths: torch.Tensor | None = None
    rejected_lengths: torch.Tensor | None = None

    def __post_init__(self) -> None:
        chosen = _vector(self.policy_chosen_logps, "policy_chosen_logps", None)
        size = int(chosen.shape[0])
        fields: dict[str, torch.Tensor | None] = {
            "policy_chosen_logps": chosen,
            "policy_rejected_logps": _vector(self.policy_rejected_logps, "policy_rejected_logps", size, chosen),
        }
        _pair_or_none(self.reference_chosen_logps, self.reference_rejected_logps,
                      ("reference_chosen_logps", "reference_rejected_logps"))
        _pair_or_none(self.chosen_lengths, self.rejected_lengths, ("chosen_lengths", "rejected_lengths"))
        for name in ("reference_chosen_logps", "reference_rejected_logps"):
            value = getattr(self, name)
            fields[name] = None if value is None else _vector(value, name, size, chosen)
        for name in ("chosen_lengths", "rejected_lengths"):
            value = getattr(self, name)
            fields[name] = None if value is None else _lengths(value, name, size, chosen)
        for name, tensor in fields.items():
            object.__setattr__(self, name, tensor)

    @property
    def batch_size(self) -> int:
        return int(self.policy_chosen_logps.shape[0])

    @property
    def has_reference(self) -> bool:
        return self.reference_chosen_logps is not None

    @property
    def has_lengths(self) -> bool:
        return self.chosen_lengths is not None

    @property
    def chosen_logratios(self) -> torch.Tensor:
        """``s_w = log πθ(y_w|x) − log πref(y_w|x)``; the policy log-prob itself without a reference."""
        if self.reference_chosen_logps is None:
            return self.policy_chosen_logps
        return self.policy_chosen_logps - self.reference_chosen_logps

    @property
    def rejected_logratios(self) -> torch.Tensor:
        """``s_l``, as :attr:`chosen_logratios`."""
        if self.reference_rejected_logps is None:
            return self.policy_rejected_logps
        return self.policy_rejected_logps - self.reference_rejected_logps

    def lengths(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(|y_w|, |y_l|)``; a :class:`ValidationError` when the batch has none."""
        if self.chosen_lengths is None or self.rejected_lengths is None:
            raise ValidationError("chosen_lengths: this loss needs the completion lengths; pass chosen_lengths "
                                  "and rejected_lengths (token counts >= 1)")
        return self.chosen_lengths, self.rejected_lengths

    def swapped(self) -> PreferenceBatch:
        """The same pairs with chosen and rejected exchanged."""
        return PreferenceBatch(self.policy_rejected_logps, self.policy_chosen_logps, self.reference_rejected_logps,
                               self.reference_chosen_logps, self.rejected_lengths, self.chosen_lengths)

    def with_policy(self, chosen: torch.Tensor, rejected: torch.Tensor) -> PreferenceBatch:
        """The same batch with other policy log-probabilities (used to differentiate with respect to them)."""
        return replace(self, policy_chosen_logps=chosen, policy_rejected_logps=rejected)


@dataclass(frozen=True)
class UnpairedBatch:
    """``B`` single completions labelled desirable or undesirable (KTO; Ethayarajh et al. 2024).

    ``policy_logps``, ``reference_logps`` ``[B]`` summed log-probabilities, ``desirable [B]`` booleans. The KL
    baseline ``z0`` is either given as ``kl_estimate`` (a number >= 0) or estimated from mismatched
    prompt/completion pairs ``kl_policy_logps``, ``kl_reference_logps`` ``[N]`` as
    ``max(0, mean(kl_policy_logps − kl_reference_logps))``, detached (no gradient flows through ``z0``).
    """

    policy_logps: torch.Tensor
    reference_logps: torch.Tensor
    desirable: torch.Tensor
    kl_estimate: torch.Tensor | float | None = None
    kl_policy_logps: torch.Tensor | None = None
    kl_reference_logps: torch.Tensor | None = None

    def __post_init__(self) -> None:
        policy = _vector(self.policy_logps, "policy_logps", None)
        size = int(policy.shape[0])
        reference = _vector(self.reference_logps, "reference_logps", size, policy)
        desirable = as_tensor(self.desirable, "desirable")
        check_shape(desirable, "desirable", [size])
        if desirable.dtype != torch.bool:
            if not bool(((desirable == 0) | (desirable == 1)).all()):
                raise ValidationError("desirable: expected booleans (or 0/1)")
            desirable = desirable.bool()
        _pair_or_none(self.kl_policy_logps, self.kl_reference_logps, ("kl_policy_logps", "kl_reference_logps"))
        kl_policy = kl_reference = None
        if self.kl_policy_logps is not None:
            kl_policy = _vector(self.kl_policy_logps, "kl_policy_logps", None, policy)
            kl_reference = _vector(self.kl_reference_logps, "kl_reference_logps", int(kl_policy.shape[0]), policy)
        if self.kl_estimate is not None and kl_policy is not None:
            raise ValidationError("kl_estimate: given together with kl_policy_logps; pass one or the other")
        if self.kl_estimate is None and kl_policy is None:
            raise ValidationError("kl_estimate: KTO needs the KL baseline z0; pass kl_estimate (a number >= 0) "
                                  "or kl_policy_logps and kl_reference_logps of mismatched pairs")
        if self.kl_estimate is not None:
            estimate = _float_tensor(self.kl_estimate, "kl_estimate", policy).detach()
            if estimate.numel() != 1:
                raise ValidationError(f"kl_estimate: expected one number, got shape {list(estimate.shape)}")
            estimate = estimate.reshape(())
            check_finite(estimate, "kl_estimate")
            if float(estimate) < 0:
                raise ValidationError(f"kl_estimate: expected a KL estimate >= 0, got {float(estimate):g}")
        else:
            assert kl_policy is not None and kl_reference is not None
            estimate = (kl_policy - kl_reference).mean().detach().clamp(min=0)
        for name, value in (("policy_logps", policy), ("reference_logps", reference), ("desirable", desirable),
                            ("kl_estimate", estimate), ("kl_policy_logps", kl_policy),
                            ("kl_reference_logps", kl_reference)):
            object.__setattr__(self, name, value)

    @property
    def batch_size(self) -> int:
        return int(self.policy_logps.shape[0])

    @property
    def logratios(self) -> torch.Tensor:
        return self.policy_logps - self.reference_logps

    @property
    def kl_baseline(self) -> torch.Tensor:
        """``z0``: the detached, non-negative KL estimate (a 0-dim tensor)."""
        assert isinstance(self.kl_estimate, torch.Tensor)
        return self.kl_estimate

    def with_policy(self, policy_logps: torch.Tensor) -> UnpairedBatch:
        """The same batch with other policy log-probabilities and the same baseline ``z0``."""
        return replace(self, policy_logps=policy_logps, kl_estimate=self.kl_baseline, kl_policy_logps=None,
                       kl_reference_logps=None)


@dataclass(frozen=True)
class RankingBatch:
    """Reward-model scores ``[B, M]`` (``M >= 2``) of ``M`` candidates per query, listed best first.

    Bradley-Terry takes ``M = 2`` (column 0 chosen, column 1 rejected): see :meth:`from_pairs`.
    """

    scores: torch.Tensor

    def __post_init__(self) -> None:
        scores = _float_tensor(self.scores, "scores")
        if scores.dim() != 2 or scores.shape[1] < 2:
            raise ValidationError(f"scores: expected shape [B, M] with M >= 2, got {list(scores.shape)}")
        check_non_empty(scores, "scores")
        check_finite(scores, "scores")
        object.__setattr__(self, "scores", scores)

    @classmethod
    def from_pairs(cls, chosen_scores: Any, rejected_scores: Any) -> RankingBatch:
        chosen = _vector(chosen_scores, "chosen_scores", None)
        rejected = _vector(rejected_scores, "rejected_scores", int(chosen.shape[0]), chosen)
        return cls(torch.stack([chosen, rejected], dim=1))

    @property
    def batch_size(self) -> int:
        return int(self.scores.shape[0])

    @property
    def num_candidates(self) -> int:
        return int(self.scores.shape[1])

    def swapped(self) -> RankingBatch:
        """The ranking read backwards (worst first)."""
        return RankingBatch(self.scores.flip(1))


@dataclass(frozen=True)
class AspectPairBatch:
    """Per-aspect reward-model outputs of ``B`` queries: ``first [B, K]`` and ``second [B, K]`` (the summed
    per-aspect rewards of each query's first and second segment: ``RewardOutput.aspects`` summed over steps)."""

    first: torch.Tensor
    second: torch.Tensor

    def __post_init__(self) -> None:
        first = as_tensor(self.first, "first")
        if not first.is_floating_point():
            first = first.to(torch.get_default_dtype())
        if first.dim() != 2 or first.shape[1] < 1:
            raise ValidationError(f"first: expected shape [B, K] with K >= 1, got {list(first.shape)}")
        check_non_empty(first, "first")
        second = as_tensor(self.second, "second").to(first.dtype)
        check_shape(second, "second", list(first.shape))
        check_finite(first, "first")
        check_finite(second, "second")
        object.__setattr__(self, "first", first)
        object.__setattr__(self, "second", second)

    @property
    def batch_size(self) -> int:
        return int(self.first.shape[0])

    @property
    def num_aspects(self) -> int:
        return int(self.first.shape[1])


Batch = PreferenceBatch | UnpairedBatch | RankingBatch | AspectPairBatch


@dataclass(frozen=True)
class GradientWeights:
    """How strongly each pair is pushed: derivatives of the summed batch loss ``L = Σ_i ℓ_i``.

    ``chosen = ∂L/∂s_w`` and ``rejected = ∂L/∂s_l`` per pair, ``s`` the log-ratio (the policy log-prob for
    reference-free losses, the score for reward-model losses). ``margin = −½ (∂L/∂s_w − ∂L/∂s_l)``: minus the
    directional derivative of ``L`` along the margin ``d = s_w − s_l`` (``s_w`` up by ``t/2``, ``s_l`` down by
    ``t/2``). For a loss ``ℓ(d)`` of the margin alone it is exactly ``−ℓ'(d)``: DPO's ``β σ(−β d)``
    (Rafailov et al. 2023, Eq. 7); a positive weight means gradient descent widens the margin.

    Unpaired (KTO) batches: ``chosen [n_desirable]`` and ``rejected [n_undesirable]`` are ``∂L/∂s`` of the
    desirable and undesirable examples, ``margin [B]`` is ``−∂L/∂s`` for desirable and ``+∂L/∂s`` for
    undesirable examples (positive: the example is pushed the way its label asks). Rankings (Plackett-Luce):
    ``chosen`` is the derivative for the best candidate, ``rejected`` the sum over the others.
    """

    chosen: torch.Tensor
    rejected: torch.Tensor
    margin: torch.Tensor


@dataclass(frozen=True)
class LossOutput:
    """Unreduced losses ``[B]`` and the detached implicit rewards of chosen and rejected.

    Paired losses: ``chosen_rewards``, ``rejected_rewards`` ``[B]`` (``β s_w``, ``β s_l`` or the loss's
    reference-free analogue). Unpaired (KTO): the rewards of the desirable and of the undesirable examples,
    ``[n_desirable]`` and ``[n_undesirable]``. ``gradient_weights`` is filled on request
    (``preference_loss(..., gradient_weights=True)``).
    """

    losses: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor
    paired: bool = True
    gradient_weights: GradientWeights | None = None

    @property
    def loss(self) -> torch.Tensor:
        """The batch mean, what a trainer minimizes."""
        return self.losses.mean()

    @property
    def margins(self) -> torch.Tensor:
        """Per-pair reward margins ``chosen − rejected`` (paired losses only)."""
        if not self.paired:
            raise ValidationError("margins: an unpaired (KTO) output has no per-pair margins; see mean_margin")
        return self.chosen_rewards - self.rejected_rewards

    @property
    def reward_accuracy(self) -> float:
        """Fraction of pairs with chosen reward > rejected reward.

        Unpaired: the fraction of (desirable, undesirable) cross pairs ordered so (the AUC); NaN if a side is empty.
        """
        if self.paired:
            return float((self.chosen_rewards > self.rejected_rewards).double().mean())
        if self.chosen_rewards.numel() == 0 or self.rejected_rewards.numel() == 0:
            return math.nan
        return float((self.chosen_rewards[:, None] > self.rejected_rewards[None, :]).double().mean())

    @property
    def mean_margin(self) -> float:
        """Mean of ``chosen − rejected`` rewards (unpaired: mean desirable minus mean undesirable reward)."""
        if self.chosen_rewards.numel() == 0 or self.rejected_rewards.numel() == 0:
            return math.nan
        return float(self.chosen_rewards.mean() - self.rejected_rewards.mean())
