"""Reward-model losses on scores: Bradley-Terry (pairs) and Plackett-Luce (rankings)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from irl_bilevel.losses.batches import LossOutput, RankingBatch
from irl_bilevel.losses.parameters import real_number
from irl_bilevel.losses.registry import register
from irl_bilevel.validation import ValidationError, as_tensor, check_finite, check_shape


def _margin(value: Any, batch_size: int, like: torch.Tensor) -> torch.Tensor | float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return real_number(value, "margin", "bradley_terry")
    margin = as_tensor(value, "margin").to(like.dtype)
    check_shape(margin, "margin", [batch_size])
    check_finite(margin, "margin")
    return margin


@register("bradley_terry", batch_type=RankingBatch, default_beta=1.0, trl_name="RewardTrainer",
          source="Bradley & Terry 1952; Christiano et al. 2017; Ouyang et al. 2022 (margin: Touvron et al. 2023)")
def bradley_terry(batch: RankingBatch, beta: float, *, margin: Any = 0.0) -> LossOutput:
    """Bradley-Terry: ``−log σ(β (r_w − r_l) − m)`` on reward-model scores (``RankingBatch`` with ``M = 2``).

    ``m`` (``margin``) is a number or a per-pair tensor ``[B]`` (Llama 2's preference-strength margin); β = 1
    is the published form (TRL's ``RewardTrainer``). Implicit rewards ``β r``. Sources: Bradley & Terry 1952;
    Christiano et al. 2017, "Deep RL from Human Preferences"; Ouyang et al. 2022 (InstructGPT).
    """
    if batch.num_candidates != 2:
        raise ValidationError(f"scores: bradley_terry takes pairs, shape [B, 2]; got {list(batch.scores.shape)} "
                              f"(use plackett_luce for rankings)")
    offset = _margin(margin, batch.batch_size, batch.scores)
    chosen, rejected = beta * batch.scores[:, 0], beta * batch.scores[:, 1]
    return LossOutput(-F.logsigmoid(chosen - rejected - offset), chosen.detach(), rejected.detach())


@register("plackett_luce", batch_type=RankingBatch, default_beta=1.0,
          source="Plackett 1975; Luce 1959 (listwise; DPO form: Rafailov et al. 2023, App. A.3)")
def plackett_luce(batch: RankingBatch, beta: float) -> LossOutput:
    """Plackett-Luce: ``−Σ_k log( exp(β r_(k)) / Σ_{j>=k} exp(β r_(j)) )`` over a ranking listed best first.

    Sources: Plackett 1975, "The Analysis of Permutations"; Luce 1959, "Individual Choice Behavior". With
    ``M = 2`` it is Bradley-Terry. Rewards: chosen ``β r_(1)`` (the best), rejected the highest ``β r`` among
    the others, so the reward accuracy is the top-1 accuracy.
    """
    utilities = beta * batch.scores
    tail_logsumexp = torch.logcumsumexp(utilities.flip(1), dim=1).flip(1)
    losses = (tail_logsumexp - utilities)[:, :-1].sum(dim=1)
    return LossOutput(losses, utilities[:, 0].detach(), utilities[:, 1:].max(dim=1).values.detach())
