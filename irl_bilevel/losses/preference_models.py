"""Preference models on reward-model scores with labels: ties (Rao-Kupper, Davidson), label noise (label smoothing,
robust Bradley-Terry with a known flip rate) and per-aspect Bradley-Terry on multi-aspect reward outputs.

Pairwise losses here take a :class:`RankingBatch` of scores ``[B, 2]`` of the *first* and the *second* segment of
each query and ``labels [B]`` in the convention of ``irl_bilevel.feedback.Preferences``: 1 when the first is
preferred, 0 when the second is, 0.5 for a tie. ``labels=None`` means every first segment is preferred (the
catalog's "column 0 is chosen" convention of ``bradley_terry``). ``Δ = β (r_first − r_second)``. The reported
chosen / rejected rewards are ``β r`` of the preferred and the other segment (first and second for ties).
Formulas and sources: ``docs/losses.md`` ("Ties, label noise and aspects").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from irl_bilevel.losses.batches import AspectPairBatch, LossOutput, RankingBatch
from irl_bilevel.losses.parameters import label_smoothing, positive, real_number, required_tensor
from irl_bilevel.losses.registry import register
from irl_bilevel.validation import ValidationError, as_tensor, check_shape


def _pair_scores(batch: RankingBatch, loss: str) -> tuple[torch.Tensor, torch.Tensor]:
    if batch.num_candidates != 2:
        raise ValidationError(f"scores: {loss} takes pairs, shape [B, 2] (first, second); got "
                              f"{list(batch.scores.shape)}")
    return batch.scores[:, 0], batch.scores[:, 1]


def _labels(value: Any, loss: str, size: int, like: torch.Tensor, allow_ties: bool = True) -> torch.Tensor:
    if value is None:
        return torch.ones(size, dtype=like.dtype)
    labels = required_tensor(value, "labels", loss, [size], like)
    allowed = (labels == 0) | (labels == 1)
    if allow_ties:
        allowed = allowed | (labels == 0.5)
    if not bool(allowed.all()):
        expected = "1 (first preferred), 0 (second preferred) or 0.5 (tie)" if allow_ties else \
            "1 (first preferred) or 0 (second preferred); this loss has no tie model"
        raise ValidationError(f"labels: expected {expected} for {loss}")
    return labels


def _oriented(first: torch.Tensor, second: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(preferred, other) rewards: first/second swapped where the second is preferred; ties keep the order."""
    second_wins = labels == 0
    chosen = torch.where(second_wins, second, first)
    rejected = torch.where(second_wins, first, second)
    return chosen.detach(), rejected.detach()


def _output(losses: torch.Tensor, first: torch.Tensor, second: torch.Tensor, labels: torch.Tensor) -> LossOutput:
    chosen, rejected = _oriented(first, second, labels)
    return LossOutput(losses, chosen, rejected)


def rao_kupper_log_probabilities(delta: torch.Tensor, theta: float) -> torch.Tensor:
    """``[B, 3]`` log-probabilities (first wins, tie, second wins) of Rao & Kupper (1967) at ``Δ``, ``θ > 1``."""
    log_theta = math.log(theta)
    first = F.logsigmoid(delta - log_theta)
    second = F.logsigmoid(-delta - log_theta)
    # P(tie) = (θ² − 1) π_1 π_2 / ((π_1 + θ π_2)(θ π_1 + π_2)) = (θ² − 1) P(1 ≻ 2) P(2 ≻ 1).
    tie = math.log(theta * theta - 1.0) + first + second
    return torch.stack([first, tie, second], dim=-1)


def davidson_log_probabilities(delta: torch.Tensor, nu: float) -> torch.Tensor:
    """``[B, 3]`` log-probabilities (first wins, tie, second wins) of Davidson (1970) at ``Δ``, ``ν > 0``."""
    half = delta / 2
    # π_1 ∝ e^{Δ/2}, π_2 ∝ e^{−Δ/2}, tie ∝ ν √(π_1 π_2) = ν.
    logits = torch.stack([half, torch.full_like(delta, math.log(nu)), -half], dim=-1)
    return logits - torch.logsumexp(logits, dim=-1, keepdim=True)


def _three_way_nll(log_probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    index = torch.where(labels == 1, 0, torch.where(labels == 0, 2, 1)).long()
    return -log_probs.gather(1, index[:, None]).squeeze(1)


def _tie_model_loss(batch: RankingBatch, beta: float, labels: Any, loss: str,
                    log_probabilities: Callable[[torch.Tensor], torch.Tensor]) -> LossOutput:
    """``−log P(label)`` of a tie model whose ``[B, 3]`` log-probabilities (first wins, tie, second wins) at
    ``Δ = β (r_1 − r_2)`` are ``log_probabilities(Δ)``; ``labels [B]`` 1 / 0 / 0.5 (tie), default all 1."""
    first, second = _pair_scores(batch, loss)
    label = _labels(labels, loss, batch.batch_size, batch.scores)
    losses = _three_way_nll(log_probabilities(beta * (first - second)), label)
    return _output(losses, beta * first, beta * second, label)


@register("rao_kupper", batch_type=RankingBatch, default_beta=1.0,
          source="Rao & Kupper 1967, 'Ties in paired-comparison experiments', JASA 62")
def rao_kupper(batch: RankingBatch, beta: float, *, labels: Any = None, theta: float = 1.5) -> LossOutput:
    """Rao-Kupper tie model: ``P(1 ≻ 2) = σ(Δ − log θ)``, ``P(2 ≻ 1) = σ(−Δ − log θ)``, ``P(tie)`` the rest,
    ``= (θ² − 1) σ(Δ − log θ) σ(−Δ − log θ)``; loss ``−log P(label)``, ``Δ = β (r_1 − r_2)``, ``θ > 1``.

    ``labels [B]`` (1 / 0 / 0.5 tie; default all 1). ``θ → 1`` is Bradley-Terry without ties. Source: Rao &
    Kupper 1967, "Ties in paired-comparison experiments: a generalization of the Bradley-Terry model".
    """
    value = real_number(theta, "theta", "rao_kupper")
    if value <= 1:
        raise ValidationError(f"theta: expected θ > 1 for rao_kupper (θ = 1 admits no ties), got {value:g}")
    return _tie_model_loss(batch, beta, labels, "rao_kupper", lambda delta: rao_kupper_log_probabilities(delta, value))


@register("davidson", batch_type=RankingBatch, default_beta=1.0,
          source="Davidson 1970, 'On extending the Bradley-Terry model to accommodate ties', JASA 65")
def davidson(batch: RankingBatch, beta: float, *, labels: Any = None, nu: float = 0.5) -> LossOutput:
    """Davidson tie model: ``P(1 ≻ 2) = π_1 / Z``, ``P(2 ≻ 1) = π_2 / Z``, ``P(tie) = ν √(π_1 π_2) / Z``,
    ``Z = π_1 + π_2 + ν √(π_1 π_2)``, ``π = e^{β r}``; loss ``−log P(label)``, ``ν > 0``.

    In ``Δ = β (r_1 − r_2)``: a softmax over ``(Δ/2, log ν, −Δ/2)``. ``ν → 0`` is Bradley-Terry. Source: Davidson
    1970, "On extending the Bradley-Terry model to accommodate ties in paired comparison experiments".
    """
    value = positive(nu, "nu", "davidson")
    return _tie_model_loss(batch, beta, labels, "davidson", lambda delta: davidson_log_probabilities(delta, value))


@register("robust_bradley_terry", batch_type=RankingBatch, default_beta=1.0,
          source="noisy-label likelihood (Natarajan et al. 2013; Bradley & Terry 1952); B-Pref mistake teacher")
def robust_bradley_terry(batch: RankingBatch, beta: float, *, labels: Any = None,
                         flip_rate: float = 0.1) -> LossOutput:
    """Bradley-Terry under labels flipped with a known probability ε:
    ``−log((1 − ε) σ(Δ) + ε σ(−Δ))`` for a label preferring the first segment (``Δ → −Δ`` for the second),
    ``Δ = β (r_1 − r_2)``, ``ε ∈ [0, 0.5)``; ties take the mean of both orders' losses.

    The loss is bounded by ``−log ε`` (a flipped label cannot pull the margin without limit); ε = 0 is
    Bradley-Terry. Source: the likelihood of a label observed through a symmetric flip channel (Natarajan et al.
    2013, "Learning with noisy labels"), the noise model of B-Pref's mistake teacher (Lee et al. 2021).
    """
    rate = label_smoothing(flip_rate, "robust_bradley_terry")
    first, second = _pair_scores(batch, "robust_bradley_terry")
    label = _labels(labels, "robust_bradley_terry", batch.batch_size, batch.scores)
    delta = beta * (first - second)

    def nll(z: torch.Tensor) -> torch.Tensor:
        if rate == 0:
            return -F.logsigmoid(z)
        return -torch.logaddexp(math.log1p(-rate) + F.logsigmoid(z), math.log(rate) + F.logsigmoid(-z))

    forward, backward = nll(delta), nll(-delta)
    losses = torch.where(label == 1, forward, torch.where(label == 0, backward, 0.5 * (forward + backward)))
    return _output(losses, beta * first, beta * second, label)


@register("smoothed_bradley_terry", batch_type=RankingBatch, default_beta=1.0,
          source="Szegedy et al. 2016 (label smoothing); Christiano et al. 2017 (soft labels, ties = ½)")
def smoothed_bradley_terry(batch: RankingBatch, beta: float, *, labels: Any = None, label_smoothing: float = 0.0,
                           margin: Any = 0.0) -> LossOutput:
    """Bradley-Terry cross-entropy on soft labels: ``−ỹ log σ(Δ − m) − (1 − ỹ) log σ(−Δ − m)`` with
    ``ỹ = (1 − ε) y + ε (1 − y)``, ``y`` the label (1 / 0 / ½ for a tie, as Christiano et al. 2017 train on ties),
    ``Δ = β (r_1 − r_2)``, ``m`` a margin (a number or ``[B]``), ``ε`` = ``label_smoothing`` in ``[0, 0.5)``.

    ε = 0, m = 0 and labels 1 is ``bradley_terry``. Sources: Szegedy et al. 2016 (label smoothing); Christiano
    et al. 2017, "Deep RL from human preferences" (uniform targets for ties).
    """
    rate = _smoothing(label_smoothing)
    first, second = _pair_scores(batch, "smoothed_bradley_terry")
    label = _labels(labels, "smoothed_bradley_terry", batch.batch_size, batch.scores)
    offset = _margin(margin, batch.batch_size, batch.scores)
    target = (1 - rate) * label + rate * (1 - label)
    delta = beta * (first - second)
    losses = -target * F.logsigmoid(delta - offset) - (1 - target) * F.logsigmoid(-delta - offset)
    return _output(losses, beta * first, beta * second, label)


def _smoothing(value: Any) -> float:
    return label_smoothing(value, "smoothed_bradley_terry")


def _margin(value: Any, size: int, like: torch.Tensor) -> torch.Tensor | float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return real_number(value, "margin", "smoothed_bradley_terry")
    return required_tensor(value, "margin", "smoothed_bradley_terry", [size], like)


# ---------------------------------------------------------------------- per-aspect Bradley-Terry
@register("aspect_bradley_terry", batch_type=AspectPairBatch, default_beta=1.0,
          source="this project: Bradley & Terry 1952 per aspect (as in multi-objective reward models, "
                 "Wang et al. 2024 ArmoRM)")
def aspect_bradley_terry(batch: AspectPairBatch, beta: float, *, aspect_labels: Any = None,
                         aspect_mask: Any = None, aspect_weights: Any = None) -> LossOutput:
    """Per-aspect Bradley-Terry: ``Σ_k w̃_ik [−y_ik log σ(Δ_ik) − (1 − y_ik) log σ(−Δ_ik)]`` with
    ``Δ_ik = β (r_k(first_i) − r_k(second_i))`` on each aspect's own reward, ``y_ik`` the aspect label (1 / 0 / ½
    tie), ``w̃_ik = w_k m_ik / Σ_j w_j m_ij`` the weights renormalized over the labelled aspects (``aspect_mask``).

    ``aspect_labels [B, K]`` (required), ``aspect_mask [B, K]`` (default all), ``aspect_weights [K] >= 0`` (default
    equal). Queries with no labelled aspect are refused. Implicit rewards: the weighted sums ``Σ_k w̃_ik β r_k``
    of first and second (not oriented). Source: Bradley & Terry 1952 applied per aspect (this project; per-aspect
    heads as in Wang et al. 2024, ArmoRM).
    """
    size, k = batch.batch_size, batch.num_aspects
    like = batch.first
    labels = required_tensor(aspect_labels, "aspect_labels", "aspect_bradley_terry", [size, k], like)
    mask = torch.ones(size, k, dtype=torch.bool)
    if aspect_mask is not None:
        mask = as_tensor(aspect_mask, "aspect_mask").bool()
    check_shape(mask, "aspect_mask", [size, k])
    labelled = labels[mask]
    if not bool(((labelled == 0) | (labelled == 1) | (labelled == 0.5)).all()):
        raise ValidationError("aspect_labels: expected 1 (first preferred), 0 (second preferred) or 0.5 (tie) "
                              "on labelled aspects")
    labels = torch.where(mask, labels, torch.full_like(labels, 0.5))
    weight = torch.ones(k, dtype=like.dtype)
    if aspect_weights is not None:
        weight = required_tensor(aspect_weights, "aspect_weights", "aspect_bradley_terry", [k], like)
        if bool((weight < 0).any()):
            raise ValidationError(f"aspect_weights: expected weights >= 0, got {weight.tolist()}")
    masked = weight[None, :] * mask.to(like.dtype)
    total = masked.sum(dim=1)
    if bool((total <= 0).any()):
        first_bad = int(torch.nonzero(total <= 0)[0, 0])
        raise ValidationError(f"aspect_mask: query {first_bad} has no labelled aspect with positive weight")
    share = masked / total[:, None]
    delta = beta * (batch.first - batch.second)
    per_aspect = -labels * F.logsigmoid(delta) - (1 - labels) * F.logsigmoid(-delta)
    losses = (share * per_aspect).sum(dim=1)
    chosen = (share * beta * batch.first).sum(dim=1).detach()
    rejected = (share * beta * batch.second).sum(dim=1).detach()
    return LossOutput(losses, chosen, rejected)


__all__ = ["AspectPairBatch", "aspect_bradley_terry", "davidson", "davidson_log_probabilities",
           "rao_kupper", "rao_kupper_log_probabilities", "robust_bradley_terry", "smoothed_bradley_terry"]
