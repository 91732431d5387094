"""Preference and alignment losses behind one signature, with their metrics.

``preference_loss(name, batch, beta=None, **params) -> LossOutput`` evaluates any loss in
:data:`PREFERENCE_LOSSES` (TRL's ``DPOTrainer`` names where TRL has the loss, with TRL's values; plus SimPO,
CPO, ORPO, SLiC, KTO, MODPO, Bradley-Terry, Plackett-Luce, the tie models of Rao-Kupper and Davidson,
noise-robust and per-aspect Bradley-Terry, and the project's aspect-weighted and lexicographic
DPO). Formulas, sources and derivations: ``docs/losses.md``.
"""

from irl_bilevel.losses import (
    dpo_family,
    multi_objective,
    preference_models,
    reference_free,
    reward_models,
    unpaired,
)
from irl_bilevel.losses.batches import (
    AspectPairBatch,
    GradientWeights,
    LossOutput,
    PreferenceBatch,
    RankingBatch,
    UnpairedBatch,
)
from irl_bilevel.losses.metrics import loss_metrics
from irl_bilevel.losses.multi_objective import aspect_dissent_rate
from irl_bilevel.losses.reference_free import log_odds
from irl_bilevel.losses.registry import PREFERENCE_LOSSES, PreferenceLoss, preference_loss, register

__all__ = [
    "PREFERENCE_LOSSES",
    "AspectPairBatch",
    "GradientWeights",
    "LossOutput",
    "PreferenceBatch",
    "PreferenceLoss",
    "RankingBatch",
    "UnpairedBatch",
    "aspect_dissent_rate",
    "dpo_family",
    "log_odds",
    "loss_metrics",
    "multi_objective",
    "preference_loss",
    "preference_models",
    "reference_free",
    "register",
    "reward_models",
    "unpaired",
]
