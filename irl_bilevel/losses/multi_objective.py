"""Losses for several objectives or aspects: MODPO, and the project's aspect-weighted and lexicographic DPO.

Per-aspect labels follow ``irl_bilevel.feedback``: 1 when the chosen sequence is better on that aspect, 0 when
the rejected one is, 0.5 for a tie. Derivations: ``docs/losses.md``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from irl_bilevel.losses.batches import LossOutput, PreferenceBatch
from irl_bilevel.losses.numerics import smoothed_logistic_loss
from irl_bilevel.losses.parameters import non_negative, preference_labels, required_tensor
from irl_bilevel.losses.registry import register
from irl_bilevel.validation import ValidationError, as_tensor, check_shape


@register("modpo", needs_reference=True, source="Zhou et al. 2023 (MODPO), Eq. 8")
def modpo(batch: PreferenceBatch, beta: float, *, other_chosen_rewards: Any = None,
          other_rejected_rewards: Any = None, weights: Any = None) -> LossOutput:
    """MODPO: ``r̂(y) = (β s(y) − w₋ᵀ r₋(x, y)) / w₀``, loss ``−log σ(r̂(y_w) − r̂(y_l))``.

    ``other_chosen_rewards``, ``other_rejected_rewards`` ``[B, K−1]``: frozen reward models ``r₋`` of the other
    ``K − 1`` objectives; ``weights [K]`` the preference weights ``(w₀, w₋)``, ``w₀ > 0`` for the objective the
    preferences express, ``w₋ >= 0``. Implicit rewards ``r̂``. Source: Zhou et al. 2023, "Beyond One-Preference-
    Fits-All Alignment: Multi-Objective Direct Preference Optimization".
    """
    size = batch.batch_size
    like = batch.policy_chosen_logps
    other_chosen = required_tensor(other_chosen_rewards, "other_chosen_rewards", "modpo", [size, None], like)
    others = int(other_chosen.shape[1])
    other_rejected = required_tensor(other_rejected_rewards, "other_rejected_rewards", "modpo", [size, others], like)
    weight = required_tensor(weights, "weights", "modpo", [others + 1], like)
    if float(weight[0]) <= 0 or bool((weight[1:] < 0).any()):
        raise ValidationError(f"weights: expected w₀ > 0 and w₋ >= 0 for modpo, got {weight.tolist()}")
    chosen = (beta * batch.chosen_logratios - other_chosen @ weight[1:]) / weight[0]
    rejected = (beta * batch.rejected_logratios - other_rejected @ weight[1:]) / weight[0]
    return LossOutput(-F.logsigmoid(chosen - rejected), chosen.detach(), rejected.detach())


def aspect_dissent_rate(aspect_labels: torch.Tensor, aspect_weights: torch.Tensor | None = None,
                        aspect_mask: torch.Tensor | None = None) -> torch.Tensor:
    """``ε_i = Σ_k w̃_ik (1 − y_ik)``: the weighted share of aspects preferring the rejected sequence (ties
    count half), with ``w̃_ik = w_k m_ik / Σ_j w_j m_ij`` the weights renormalized over labelled aspects.

    ``aspect_labels [B, K]`` (1: chosen preferred, 0: rejected, 0.5: tie), ``aspect_weights [K]``,
    ``aspect_mask [B, K]``; returns ``[B]``:

    >>> aspect_dissent_rate(torch.tensor([[1.0, 0.0, 0.5], [1.0, 1.0, 1.0]])).tolist()
    [0.5, 0.0]
    """
    labels = aspect_labels
    num_aspects = int(labels.shape[1])
    weight = torch.ones(num_aspects, dtype=labels.dtype) if aspect_weights is None else aspect_weights
    mask = torch.ones_like(labels, dtype=torch.bool) if aspect_mask is None else aspect_mask
    masked = weight[None, :] * mask.to(labels.dtype)
    total = masked.sum(dim=1)
    if bool((total <= 0).any()):
        first = int(torch.nonzero(total <= 0)[0, 0])
        raise ValidationError(f"aspect_mask: pair {first} has no labelled aspect with positive weight")
    return (masked * (1 - labels)).sum(dim=1) / total


@register("aspect_dpo", needs_reference=True, source="this project (docs/losses.md, 'Aspect-weighted DPO')")
def aspect_dpo(batch: PreferenceBatch, beta: float, *, aspect_labels: Any = None, aspect_weights: Any = None,
               aspect_mask: Any = None) -> LossOutput:
    """Aspect-weighted DPO: ``Σ_k w̃_k ℓ_k(d)`` with ``ℓ_k = −y_k log σ(β d) − (1 − y_k) log σ(−β d)``.

    ``aspect_labels [B, K]`` (1 / 0 / 0.5 tie), ``aspect_weights [K] >= 0`` (default equal), ``aspect_mask
    [B, K]`` (which aspects were labelled; default all). With one shared policy log-ratio ``d`` this is
    conservative DPO ``−(1−ε_i) log σ(β d) − ε_i log σ(−β d)`` with the per-pair rate ``ε_i`` =
    :func:`aspect_dissent_rate`; its minimizer is the calibrated margin ``β d* = log((1−ε_i)/ε_i)``. Source:
    this project (derivation in ``docs/losses.md``). Implicit rewards ``β s``.
    """
    size = batch.batch_size
    like = batch.policy_chosen_logps
    labels = preference_labels(aspect_labels, "aspect_labels", "aspect_dpo", size, like)
    num_aspects = int(labels.shape[1])
    weight = None
    if aspect_weights is not None:
        weight = required_tensor(aspect_weights, "aspect_weights", "aspect_dpo", [num_aspects], like)
        if bool((weight < 0).any()) or float(weight.sum()) <= 0:
            raise ValidationError(f"aspect_weights: expected weights >= 0, not all zero; got {weight.tolist()}")
    mask = None
    if aspect_mask is not None:
        mask = as_tensor(aspect_mask, "aspect_mask").bool()
        check_shape(mask, "aspect_mask", [size, num_aspects])
    epsilon = aspect_dissent_rate(labels, weight, mask)
    d = batch.chosen_logratios - batch.rejected_logratios
    losses = smoothed_logistic_loss(beta * d, epsilon)
    return LossOutput(losses, (beta * batch.chosen_logratios).detach(), (beta * batch.rejected_logratios).detach())


@register("lexicographic_dpo", needs_reference=True,
          source="this project (docs/losses.md, 'Lexicographic margin DPO')")
def lexicographic_dpo(batch: PreferenceBatch, beta: float, *, aspect_labels: Any = None,
                      margin_step: float = 1.0) -> LossOutput:
    """Lexicographic margin DPO: decided at the first non-tied aspect ``k*`` (aspects in priority order, most
    important first), with a margin that grows with the deciding aspect's priority:

    ``−log σ(σ_k* β d − γ (K − 1 − k*))``, ``σ_k* = +1`` if that aspect prefers the chosen sequence, −1 if
    it prefers the rejected one, ``γ`` = ``margin_step``, ``k*`` counted from 0; pairs tied on every aspect
    take the tie loss ``−½ log σ(β d) − ½ log σ(−β d)``; give an unlabelled aspect as a tie (0.5). ``K = 1``
    (or γ = 0 on decided pairs) is DPO on the deciding label. Source:
    this project (derivation in ``docs/losses.md``). Implicit rewards ``β s``.
    """
    step = non_negative(margin_step, "margin_step", "lexicographic_dpo")
    labels = preference_labels(aspect_labels, "aspect_labels", "lexicographic_dpo", batch.batch_size,
                               batch.policy_chosen_logps)
    num_aspects = int(labels.shape[1])
    decided = labels != 0.5
    deciding = torch.argmax(decided.to(torch.int64), dim=1)  # first decided aspect (0 where none is)
    any_decided = decided.any(dim=1)
    direction = 2 * labels.gather(1, deciding[:, None]).squeeze(1) - 1
    margin = step * (num_aspects - 1 - deciding).to(labels.dtype)
    z = beta * (batch.chosen_logratios - batch.rejected_logratios)
    decided_loss = -F.logsigmoid(direction * z - margin)
    tie_loss = smoothed_logistic_loss(z, 0.5)
    losses = torch.where(any_decided, decided_loss, tie_loss)
    return LossOutput(losses, (beta * batch.chosen_logratios).detach(), (beta * batch.rejected_logratios).detach())
