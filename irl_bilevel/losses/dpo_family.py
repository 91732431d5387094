"""The losses TRL's ``DPOTrainer`` implements, under TRL's ``loss_type`` names and with TRL's values.

Notation (``docs/losses.md``): ``s_w = log πθ(y_w|x) − log πref(y_w|x)``, ``s_l`` likewise (log-probs summed
over the completion), ``d = s_w − s_l``, ``z = β d``, ``|y|`` the completion's token count, ``ε`` the
label-smoothing rate. Implicit rewards: ``β s_w`` and ``β s_l`` (``β s/|y|`` for the length-normalized
``ipo`` and ``sigmoid_norm``, whose loss ranks those). Checked against TRL 1.16.0
(``benchmarks/trl_loss_parity.py``); where we differ from TRL it is said in the docstring.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from irl_bilevel.losses.batches import LossOutput, PreferenceBatch
from irl_bilevel.losses.numerics import sigmoid_times_exp, smoothed_logistic_loss
from irl_bilevel.losses.parameters import label_smoothing as check_smoothing
from irl_bilevel.losses.parameters import positive, real_number
from irl_bilevel.losses.registry import register
from irl_bilevel.validation import ValidationError


def _rewards(losses: torch.Tensor, chosen: torch.Tensor, rejected: torch.Tensor, beta: float) -> LossOutput:
    return LossOutput(losses, (beta * chosen).detach(), (beta * rejected).detach())


def _margin_loss(batch: PreferenceBatch, beta: float, losses: torch.Tensor) -> LossOutput:
    return _rewards(losses, batch.chosen_logratios, batch.rejected_logratios, beta)


def _mean_logratios(batch: PreferenceBatch) -> tuple[torch.Tensor, torch.Tensor]:
    chosen_lengths, rejected_lengths = batch.lengths()
    return batch.chosen_logratios / chosen_lengths, batch.rejected_logratios / rejected_lengths


@register("sigmoid", needs_reference=True, trl_name="sigmoid",
          source="Rafailov et al. 2023 (DPO); label smoothing: Mitchell 2023 (conservative DPO)")
def sigmoid(batch: PreferenceBatch, beta: float, *, label_smoothing: float = 0.0) -> LossOutput:
    """DPO: ``−log σ(β d)``; with ``label_smoothing`` ε, conservative DPO ``−(1−ε) log σ(β d) − ε log σ(−β d)``.

    Sources: Rafailov et al. 2023, "Direct Preference Optimization"; Mitchell 2023, "A note on DPO with noisy
    preferences". TRL 1.16's ``sigmoid`` ignores ``label_smoothing`` (earlier TRL releases applied it as here):
    the two agree at the default ``ε = 0``.
    """
    epsilon = check_smoothing(label_smoothing, "sigmoid")
    d = batch.chosen_logratios - batch.rejected_logratios
    return _margin_loss(batch, beta, smoothed_logistic_loss(beta * d, epsilon))


@register("hinge", needs_reference=True, trl_name="hinge", source="Zhao et al. 2023 (SLiC) hinge on DPO's margin")
def hinge(batch: PreferenceBatch, beta: float) -> LossOutput:
    """Hinge on the scaled log-ratio margin: ``max(0, 1 − β d)``.

    Source: the SLiC calibration hinge (Zhao et al. 2023, "SLiC-HF") applied to DPO's reference log-ratios,
    as TRL's ``hinge``; for SLiC itself (policy log-probs, margin δ, NLL regularizer) see ``slic``.
    """
    d = batch.chosen_logratios - batch.rejected_logratios
    return _margin_loss(batch, beta, torch.relu(1 - beta * d))


@register("ipo", needs_reference=True, needs_lengths=True, trl_name="ipo",
          source="Azar et al. 2023 (IPO), length-averaged as in TRL")
def ipo(batch: PreferenceBatch, beta: float) -> LossOutput:
    """IPO: ``(h − 1/(2β))²`` with TRL's length-averaged ``h = s_w/|y_w| − s_l/|y_l|``.

    Source: Azar et al. 2023, "A General Theoretical Paradigm to Understand Learning from Human Preferences",
    Eq. 17 (β is their τ). The paper's ``h = d`` is the case ``|y_w| = |y_l| = 1``: pass lengths of one.
    Implicit rewards ``β s/|y|``.
    """
    chosen, rejected = _mean_logratios(batch)
    losses = (chosen - rejected - 1 / (2 * beta)) ** 2
    return _rewards(losses, chosen, rejected, beta)


@register("exo_pair", needs_reference=True, trl_name="exo_pair", source="Ji et al. 2024 (EXO), Eq. 16")
def exo_pair(batch: PreferenceBatch, beta: float, *, label_smoothing: float = 1e-3) -> LossOutput:
    """EXO (pairwise): ``q_w (log q_w − log(1−ε)) + q_l (log q_l − log ε)``, ``q_w = σ(β d)``, ``q_l = σ(−β d)``.

    The reverse KL from the model's pair distribution to the ε-smoothed label. Source: Ji et al. 2024,
    "Towards Efficient Exact Optimization of Language Model Alignment". ``ε`` must lie in ``(0, 0.5)``; the
    default 1e-3 is the paper's (TRL's default 0 is refused by TRL for this loss).
    """
    epsilon = check_smoothing(label_smoothing, "exo_pair", allow_zero=False)
    z = beta * (batch.chosen_logratios - batch.rejected_logratios)
    losses = (torch.sigmoid(z) * (F.logsigmoid(z) - math.log1p(-epsilon))
              + torch.sigmoid(-z) * (F.logsigmoid(-z) - math.log(epsilon)))
    return _margin_loss(batch, beta, losses)


@register("nca_pair", needs_reference=True, trl_name="nca_pair", source="Chen et al. 2024 (NCA)")
def nca_pair(batch: PreferenceBatch, beta: float) -> LossOutput:
    """NCA (pairwise): ``−log σ(β s_w) − ½ log σ(−β s_w) − ½ log σ(−β s_l)``.

    Source: Chen et al. 2024, "Noise Contrastive Alignment of Language Models with Explicit Rewards".
    A function of ``s_w`` and ``s_l`` separately, not of ``d`` alone.
    """
    chosen, rejected = beta * batch.chosen_logratios, beta * batch.rejected_logratios
    losses = -F.logsigmoid(chosen) - 0.5 * F.logsigmoid(-chosen) - 0.5 * F.logsigmoid(-rejected)
    return _margin_loss(batch, beta, losses)


@register("robust", needs_reference=True, trl_name="robust", source="Chowdhury et al. 2024 (rDPO)")
def robust(batch: PreferenceBatch, beta: float, *, label_smoothing: float = 0.0) -> LossOutput:
    """Robust DPO: ``[−(1−ε) log σ(β d) + ε log σ(−β d)] / (1 − 2ε)``, ε the label-flip rate in ``[0, 0.5)``.

    Unbiased under flips: ``(1−ε) ℓ(d) + ε ℓ(−d) = −log σ(β d)``. Source: Chowdhury et al. 2024, "Provably
    Robust DPO: Aligning Language Models with Noisy Feedback". Default ε = 0 as TRL (the paper suggests 0.1).
    """
    epsilon = check_smoothing(label_smoothing, "robust")
    z = beta * (batch.chosen_logratios - batch.rejected_logratios)
    clean = -(1 - epsilon) * F.logsigmoid(z)
    flipped = -epsilon * F.logsigmoid(-z)
    return _margin_loss(batch, beta, (clean - flipped) / (1 - 2 * epsilon))


@register("bco_pair", needs_reference=True, trl_name="bco_pair", source="Jung et al. 2024 (BCO)")
def bco_pair(batch: PreferenceBatch, beta: float, *, reward_shift: float = 0.0) -> LossOutput:
    """BCO (pairwise): ``−log σ(β s_w − δ) − log σ(−(β s_l − δ))`` with a reward shift ``δ``.

    Source: Jung et al. 2024, "Binary Classifier Optimization for Large Language Model Alignment". The paper
    (and TRL before 1.x) set δ to a running mean of the batch rewards; here δ is an explicit parameter
    (default 0, which is what TRL 1.16's ``bco_pair`` computes) so that the loss stays a function of its inputs.
    """
    shift = real_number(reward_shift, "reward_shift", "bco_pair")
    chosen, rejected = beta * batch.chosen_logratios, beta * batch.rejected_logratios
    losses = -F.logsigmoid(chosen - shift) - F.logsigmoid(-(rejected - shift))
    return _margin_loss(batch, beta, losses)


@register("sppo_hard", needs_reference=True, trl_name="sppo_hard", source="Wu et al. 2024 (SPPO), hard labels")
def sppo_hard(batch: PreferenceBatch, beta: float) -> LossOutput:
    """SPPO with hard win probabilities: ``(s_w − 1/(2β))² + (s_l + 1/(2β))²``.

    Source: Wu et al. 2024, "Self-Play Preference Optimization for Language Model Alignment", Eq. 4.7 with
    ``P(y_w ≻ y_l) = 1``.
    """
    losses = (batch.chosen_logratios - 0.5 / beta) ** 2 + (batch.rejected_logratios + 0.5 / beta) ** 2
    return _margin_loss(batch, beta, losses)


@register("aot", needs_reference=True, trl_name="aot", per_pair=False,
          source="Melnyk et al. 2024 (AOT), paired")
def aot(batch: PreferenceBatch, beta: float, *, label_smoothing: float = 0.0) -> LossOutput:
    """AOT (paired): ``Δ = sort_B(log πθ(y_w) − log πθ(y_l)) − sort_B(log πref(y_w) − log πref(y_l))``, then
    ``−(1−ε) log σ(β Δ) − ε log σ(−β Δ)``.

    Source: Melnyk et al. 2024, "Distributional Preference Alignment of LLMs via Optimal Transport". The sort
    runs over the batch: entry ``i`` of the losses belongs to the ``i``-th quantile, not to pair ``i`` (only
    the mean is meaningful). TRL 1.16 names this ``aot`` (TRL releases before 1.0 also called it ``aot``).
    """
    epsilon = check_smoothing(label_smoothing, "aot")
    assert batch.reference_chosen_logps is not None and batch.reference_rejected_logps is not None
    policy, _ = torch.sort(batch.policy_chosen_logps - batch.policy_rejected_logps, dim=0)
    reference, _ = torch.sort(batch.reference_chosen_logps - batch.reference_rejected_logps, dim=0)
    return _margin_loss(batch, beta, smoothed_logistic_loss(beta * (policy - reference), epsilon))


@register("aot_unpaired", needs_reference=True, trl_name="aot_unpaired", per_pair=False,
          source="Melnyk et al. 2024 (AOT), unpaired")
def aot_unpaired(batch: PreferenceBatch, beta: float, *, label_smoothing: float = 0.0) -> LossOutput:
    """AOT (unpaired): ``Δ = sort_B(s_w) − sort_B(s_l)``, then ``−(1−ε) log σ(β Δ) − ε log σ(−β Δ)``.

    The chosen and rejected log-ratios are sorted separately (first-order stochastic dominance of the chosen
    reward distribution). Source: Melnyk et al. 2024. TRL 1.16 names this ``aot_unpaired`` (``aot_pair``
    before TRL 1.0). Entries are quantiles, not pairs (only the mean is meaningful).
    """
    epsilon = check_smoothing(label_smoothing, "aot_unpaired")
    chosen, _ = torch.sort(batch.chosen_logratios, dim=0)
    rejected, _ = torch.sort(batch.rejected_logratios, dim=0)
    return _margin_loss(batch, beta, smoothed_logistic_loss(beta * (chosen - rejected), epsilon))


@register("apo_zero", needs_reference=True, trl_name="apo_zero", source="D'Oosterlinck et al. 2024 (APO), Eq. 7")
def apo_zero(batch: PreferenceBatch, beta: float) -> LossOutput:
    """APO-zero: ``(1 − σ(β s_w)) + σ(β s_l)``: raise the chosen likelihood, lower the rejected one.

    Source: D'Oosterlinck et al. 2024, "Anchored Preference Optimization and Contrastive Revisions".
    ``1 − σ(x)`` is computed as ``σ(−x)``.
    """
    losses = torch.sigmoid(-beta * batch.chosen_logratios) + torch.sigmoid(beta * batch.rejected_logratios)
    return _margin_loss(batch, beta, losses)


@register("apo_down", needs_reference=True, trl_name="apo_down", source="D'Oosterlinck et al. 2024 (APO), Eq. 8")
def apo_down(batch: PreferenceBatch, beta: float) -> LossOutput:
    """APO-down: ``σ(β s_w) + (1 − σ(β d))``: lower both likelihoods, the rejected one more.

    Source: D'Oosterlinck et al. 2024. ``1 − σ(x)`` is computed as ``σ(−x)``.
    """
    d = batch.chosen_logratios - batch.rejected_logratios
    losses = torch.sigmoid(beta * batch.chosen_logratios) + torch.sigmoid(-beta * d)
    return _margin_loss(batch, beta, losses)


@register("discopop", needs_reference=True, trl_name="discopop", source="Chris Lu et al. 2024 (DiscoPOP), Eq. 5")
def discopop(batch: PreferenceBatch, beta: float, *, tau: float = 0.05) -> LossOutput:
    """DiscoPOP (log-ratio modulated loss): ``z = β d``, ``m = σ(z/τ)``, ``(1 − m)(−log σ(z)) + m e^{−z}``.

    Source: Chris Lu et al. 2024, "Discovering Preference Optimization Algorithms with and for Large Language
    Models". ``m e^{−z}`` is evaluated as ``exp(log σ(z/τ) − z)``, which tends to 0 as ``z → −∞`` where TRL's
    product gives ``0 · inf = nan`` (beyond ``z ≈ −700`` in float64); ``τ`` must lie in ``(0, 1]`` (for τ > 1
    the loss grows like ``e^{−z(1−1/τ)}``), default 0.05 as the paper and TRL.
    """
    temperature = positive(tau, "tau", "discopop")
    if temperature > 1:
        raise ValidationError(f"tau: expected a value in (0, 1] for discopop, got {temperature:g}")
    z = beta * (batch.chosen_logratios - batch.rejected_logratios)
    modulation = torch.sigmoid(z / temperature)
    losses = -F.logsigmoid(z) * (1 - modulation) + sigmoid_times_exp(z / temperature, -z)
    return _margin_loss(batch, beta, losses)


@register("sigmoid_norm", needs_reference=True, needs_lengths=True, trl_name="sigmoid_norm",
          source="length-normalized DPO (TRL sigmoid_norm; cf. Meng et al. 2024, Sec. 2)")
def sigmoid_norm(batch: PreferenceBatch, beta: float) -> LossOutput:
    """Length-normalized DPO: ``−log σ(β (s_w/|y_w| − s_l/|y_l|))``; implicit rewards ``β s/|y|``.

    Source: TRL's ``sigmoid_norm``; the length-normalized DPO reward discussed by Meng et al. 2024 (SimPO).
    """
    chosen, rejected = _mean_logratios(batch)
    return _rewards(-F.logsigmoid(beta * (chosen - rejected)), chosen, rejected, beta)
