"""Unpaired losses: KTO, on single completions labelled desirable or undesirable."""

from __future__ import annotations

import torch

from irl_bilevel.losses.batches import LossOutput, UnpairedBatch
from irl_bilevel.losses.parameters import non_negative
from irl_bilevel.losses.registry import register


@register("kto", batch_type=UnpairedBatch, needs_reference=True, trl_name="KTOTrainer: kto",
          source="Ethayarajh et al. 2024 (KTO), Eq. 7")
def kto(batch: UnpairedBatch, beta: float, *, desirable_weight: float = 1.0,
        undesirable_weight: float = 1.0) -> LossOutput:
    """KTO: desirable ``λ_D (1 − σ(β (s − z0)))``, undesirable ``λ_U (1 − σ(β (z0 − s)))``.

    ``s = log πθ(y|x) − log πref(y|x)``; ``z0`` the batch's detached KL baseline (``UnpairedBatch``: clamped
    >= 0, estimated from mismatched prompt/completion pairs). ``1 − σ(x)`` is computed as ``σ(−x)``. Source:
    Ethayarajh et al. 2024, "KTO: Model Alignment as Prospect Theoretic Optimization". Losses keep the input
    order (TRL's ``KTOTrainer`` concatenates desirable then undesirable). Rewards ``β s`` of the desirable and
    of the undesirable examples.
    """
    weight_desirable = non_negative(desirable_weight, "desirable_weight", "kto")
    weight_undesirable = non_negative(undesirable_weight, "undesirable_weight", "kto")
    desirable = batch.desirable
    assert isinstance(desirable, torch.Tensor)
    logratios = batch.logratios
    baseline = batch.kl_baseline
    losses = torch.where(desirable, weight_desirable * torch.sigmoid(-beta * (logratios - baseline)),
                         weight_undesirable * torch.sigmoid(-beta * (baseline - logratios)))
    rewards = (beta * logratios).detach()
    return LossOutput(losses, rewards[desirable], rewards[~desirable], paired=False)
