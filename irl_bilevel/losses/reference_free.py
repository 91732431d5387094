"""Reference-free losses: SimPO, CPO, ORPO, SLiC. They read the policy log-probs only (a reference, if the
batch has one, is ignored) and need the lengths: SimPO ranks mean token log-probs, and the NLL term of
CPO, ORPO and SLiC is the chosen sequence's mean token negative log-likelihood ``−log πθ(y_w|x)/|y_w|``.

Their "log-ratio" ``s`` is the policy log-prob (reference ≡ 1), so gradient weights are taken w.r.t. it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from irl_bilevel.losses.batches import LossOutput, PreferenceBatch
from irl_bilevel.losses.numerics import log1mexp
from irl_bilevel.losses.parameters import non_negative
from irl_bilevel.losses.registry import register
from irl_bilevel.validation import ValidationError


def _mean_logps(batch: PreferenceBatch) -> tuple[torch.Tensor, torch.Tensor]:
    chosen_lengths, rejected_lengths = batch.lengths()
    return batch.policy_chosen_logps / chosen_lengths, batch.policy_rejected_logps / rejected_lengths


@register("simpo", needs_lengths=True, default_beta=2.0, trl_name="CPOTrainer: simpo",
          source="Meng et al. 2024 (SimPO), Eq. 6")
def simpo(batch: PreferenceBatch, beta: float, *, gamma: float = 0.5) -> LossOutput:
    """SimPO: ``−log σ(β (ℓ̄_w − ℓ̄_l) − γ)``, ``ℓ̄ = log πθ(y|x)/|y|`` the mean token log-prob, γ >= 0 a margin.

    Source: Meng et al. 2024, "SimPO: Simple Preference Optimization with a Reference-Free Reward". Implicit
    rewards ``β ℓ̄``. Default β = 2 (the paper's range is 2–2.5; TRL's ``CPOTrainer(loss_type="simpo")``,
    which computes the same value, defaults to 0.1) and γ = 0.5.
    """
    margin = non_negative(gamma, "gamma", "simpo")
    chosen, rejected = _mean_logps(batch)
    losses = -F.logsigmoid(beta * (chosen - rejected) - margin)
    return LossOutput(losses, (beta * chosen).detach(), (beta * rejected).detach())


@register("cpo", needs_lengths=True, trl_name="CPOTrainer: sigmoid", source="Xu et al. 2024 (CPO), Eq. 3 + NLL")
def cpo(batch: PreferenceBatch, beta: float, *, nll_weight: float = 1.0) -> LossOutput:
    """CPO: ``−log σ(β (log πθ(y_w|x) − log πθ(y_l|x))) + α · (−log πθ(y_w|x)/|y_w|)``, α = ``nll_weight``.

    Source: Xu et al. 2024, "Contrastive Preference Optimization: Pushing the Boundaries of LLM Performance in
    Machine Translation" (DPO with a uniform reference, plus the NLL of the chosen sequence). The NLL is the
    per-pair mean token NLL; TRL's ``CPOTrainer`` averages the NLL over all chosen tokens of the batch, which
    agrees in the batch mean when the chosen lengths are equal. Implicit rewards ``β log πθ(y|x)``.
    """
    alpha = non_negative(nll_weight, "nll_weight", "cpo")
    chosen_lengths, _ = batch.lengths()
    chosen, rejected = batch.policy_chosen_logps, batch.policy_rejected_logps
    losses = -F.logsigmoid(beta * (chosen - rejected)) - alpha * chosen / chosen_lengths
    return LossOutput(losses, (beta * chosen).detach(), (beta * rejected).detach())


def log_odds(mean_logps: torch.Tensor) -> torch.Tensor:
    """``log(p / (1 − p))`` from ``log p < 0``, with ``log(1 − p)`` computed by :func:`log1mexp`."""
    return mean_logps - log1mexp(mean_logps)


@register("orpo", needs_lengths=True, default_beta=None, trl_name="ORPOTrainer",
          source="Hong et al. 2024 (ORPO), Eqs. 6–7")
def orpo(batch: PreferenceBatch, beta: None, *, odds_ratio_weight: float = 0.1) -> LossOutput:
    """ORPO: ``−ℓ̄_w − λ log σ(log odds(y_w) − log odds(y_l))``, ``odds = p/(1−p)``, ``p = exp(ℓ̄)``.

    ``ℓ̄ = log πθ(y|x)/|y|`` the mean token log-prob, which must be < 0; λ = ``odds_ratio_weight`` (TRL's
    ``ORPOConfig.beta``, default 0.1). ORPO has no temperature: ``beta`` is refused. Implicit rewards: the log
    odds, so the margin is the log odds ratio. Source: Hong et al. 2024, "ORPO: Monolithic Preference
    Optimization without Reference Model".
    """
    weight = non_negative(odds_ratio_weight, "odds_ratio_weight", "orpo")
    chosen, rejected = _mean_logps(batch)
    for field, values in (("policy_chosen_logps", chosen), ("policy_rejected_logps", rejected)):
        if bool((values >= 0).any()):
            raise ValidationError(f"{field}: orpo needs probabilities below 1, i.e. log-probs < 0; "
                                  f"got max {float(values.max()):g}")
    chosen_odds, rejected_odds = log_odds(chosen), log_odds(rejected)
    losses = -chosen - weight * F.logsigmoid(chosen_odds - rejected_odds)
    return LossOutput(losses, chosen_odds.detach(), rejected_odds.detach())


@register("slic", needs_lengths=True, default_beta=1.0, source="Zhao et al. 2023 (SLiC-HF), rank calibration")
def slic(batch: PreferenceBatch, beta: float, *, calibration_margin: float = 1.0,
         regularization: float = 0.1) -> LossOutput:
    """SLiC-HF: ``max(0, δ − β (log πθ(y_w|x) − log πθ(y_l|x))) + λ · (−log πθ(y_w|x)/|y_w|)``.

    Source: Zhao et al. 2023, "SLiC-HF: Sequence Likelihood Calibration with Human Feedback", Eq. 1, in the
    variant with the rank-calibration hinge on the policy's log-likelihood ratio (no reference, as the paper)
    and the cross-entropy regularizer on the chosen sequence (``y_ref = y_w``, as a token mean). δ =
    ``calibration_margin``, λ = ``regularization``; β = 1 is the paper's form. Implicit rewards ``β log πθ``.
    """
    delta = non_negative(calibration_margin, "calibration_margin", "slic")
    weight = non_negative(regularization, "regularization", "slic")
    chosen_lengths, _ = batch.lengths()
    chosen, rejected = batch.policy_chosen_logps, batch.policy_rejected_logps
    losses = torch.relu(delta - beta * (chosen - rejected)) - weight * chosen / chosen_lengths
    return LossOutput(losses, (beta * chosen).detach(), (beta * rejected).detach())
