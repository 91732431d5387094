"""Loss and gradient weight of every pairwise preference loss as a function of the scaled margin ``z = β d``.

For each loss (``irl_bilevel.losses.PREFERENCE_LOSSES``; Plackett-Luce is listwise and left out, and its
two-candidate case is ``bradley_terry``) and a grid of ``z`` in ``[−10, 10]``, one pair per grid point:

* losses with a reference: ``s_w = d/2``, ``s_l = −d/2`` (reference log-probs 0, lengths 1, so the
  length-normalized losses see the same ``d``), ``d = z/β`` with the loss's default β;
* reference-free losses (``simpo``, ``cpo``, ``orpo``, ``slic``): lengths 1, the better sequence at log-prob
  ``−anchor`` and the other ``|d|`` below it (``ℓ_w = −anchor − max(0, −d)``, ``ℓ_l = −anchor − max(0, d)``);
  ORPO has no β, its ``z`` is ``d`` itself;
* ``kto``: one desirable example at ``s = d/2`` and one undesirable at ``s = −d/2``, ``z0 = 0``; the loss is
  their sum;
* ``bradley_terry``, ``rao_kupper``, ``davidson``, ``robust_bradley_terry``, ``smoothed_bradley_terry``: scores
  ``±d/2``, the first preferred (``aspect_bradley_terry`` takes per-aspect rewards and is left out);
  ``modpo``: weights ``(½, ½)`` and the other objective also preferring the chosen sequence by
  ``other_reward_gap``; ``aspect_dpo``: three equally weighted aspects, one dissenting (``ε = 1/3``);
  ``lexicographic_dpo``: three aspects, tied on the first and decided by the second (margin ``margin_step``).

Recorded per grid point: the loss, the derivatives ``∂ℓ/∂s_w`` and ``∂ℓ/∂s_l``, the gradient weight
``−½ (∂ℓ/∂s_w − ∂ℓ/∂s_l)`` (``= −ℓ'(d)`` for losses of ``d`` alone: see ``docs/losses.md``) and the same per
unit of ``z`` (divided by β), the curve every panel of ``figures/loss_gradient_weights.py`` draws. AOT sorts
over the batch: evaluated one pair at a time, it coincides with ``sigmoid``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from irl_bilevel.config import Config, PositiveFloat, PositiveInt, experiment_settings
from irl_bilevel.losses import PREFERENCE_LOSSES, PreferenceBatch, RankingBatch, UnpairedBatch, preference_loss
from irl_bilevel.runs import provenance, write_json

NAME = "loss_gradient_weights"


@dataclass(frozen=True)
class LossGradientWeightsConfig(Config):
    """Settings of the loss / gradient-weight tabulation (deterministic: no seed-dependent setting)."""

    num_margins: PositiveInt
    """grid points of the scaled margin z = β d"""
    scaled_margin_limit: PositiveFloat
    """the grid spans z ∈ [−limit, limit]"""


SCALES: dict[str, dict[str, Any]] = {
    "tiny": {"num_margins": 41, "scaled_margin_limit": 10.0},
    "quick": {"num_margins": 401, "scaled_margin_limit": 10.0},
    "full": {"num_margins": 2001, "scaled_margin_limit": 10.0},
}
CONFIG = LossGradientWeightsConfig  # the typed settings; every SCALES entry validates into it (tests check)
ANCHOR = 1.0  # per-token log-prob of the better sequence for the reference-free losses
OTHER_REWARD_GAP = 1.0  # modpo: r₋(y_w) − r₋(y_l)

# (label, loss name, parameters, panel group). Parameters are the defaults unless named.
CURVES: list[tuple[str, str, dict[str, Any], str]] = [
    ("sigmoid (DPO)", "sigmoid", {}, "logistic"),
    ("sigmoid, ε = 0.1 (cDPO)", "sigmoid", {"label_smoothing": 0.1}, "logistic"),
    ("robust, ε = 0.1", "robust", {"label_smoothing": 0.1}, "logistic"),
    ("exo_pair, ε = 1e-3", "exo_pair", {}, "logistic"),
    ("discopop, τ = 0.05", "discopop", {}, "logistic"),
    ("aot", "aot", {}, "logistic"),
    ("aot_unpaired", "aot_unpaired", {}, "logistic"),
    ("sigmoid_norm", "sigmoid_norm", {}, "logistic"),
    ("bradley_terry", "bradley_terry", {}, "logistic"),
    ("rao_kupper, θ = 1.5", "rao_kupper", {}, "logistic"),
    ("davidson, ν = 0.5", "davidson", {}, "logistic"),
    ("robust_bradley_terry, ε = 0.1", "robust_bradley_terry", {}, "logistic"),
    ("smoothed_bradley_terry, ε = 0.1", "smoothed_bradley_terry", {"label_smoothing": 0.1}, "logistic"),
    ("hinge", "hinge", {}, "margin"),
    ("ipo", "ipo", {}, "margin"),
    ("sppo_hard", "sppo_hard", {}, "margin"),
    ("nca_pair", "nca_pair", {}, "separate"),
    ("bco_pair", "bco_pair", {}, "separate"),
    ("apo_zero", "apo_zero", {}, "separate"),
    ("apo_down", "apo_down", {}, "separate"),
    ("kto (desirable + undesirable)", "kto", {}, "separate"),
    ("simpo, γ = 0.5", "simpo", {}, "reference_free"),
    ("cpo, α = 1", "cpo", {}, "reference_free"),
    ("orpo, λ = 0.1", "orpo", {}, "reference_free"),
    ("slic, δ = 1, λ = 0.1", "slic", {}, "reference_free"),
    ("modpo, w = (½, ½)", "modpo", {}, "structured"),
    ("aspect_dpo, ε = 1/3", "aspect_dpo", {}, "structured"),
    ("lexicographic_dpo, γ = 1", "lexicographic_dpo", {}, "structured"),
]
# Panels in drawing order: (group, title).
GROUPS: list[tuple[str, str]] = [
    ("logistic", "logistic family"),
    ("margin", "hinge and squared losses"),
    ("separate", "chosen and rejected terms apart"),
    ("reference_free", "reference-free"),
    ("structured", "multi-objective / multi-aspect"),
]


def _pair_batch(name: str, d: torch.Tensor) -> PreferenceBatch:
    ones, zeros = torch.ones_like(d), torch.zeros_like(d)
    if not PREFERENCE_LOSSES[name].needs_reference:
        chosen = -ANCHOR - torch.relu(-d)
        rejected = -ANCHOR - torch.relu(d)
        return PreferenceBatch(chosen, rejected, chosen_lengths=ones, rejected_lengths=ones)
    return PreferenceBatch(d / 2, -d / 2, zeros, zeros, ones, ones)


def _structured_params(name: str, size: int) -> dict[str, Any]:
    if name == "modpo":
        return {"other_chosen_rewards": torch.full((size, 1), OTHER_REWARD_GAP / 2),
                "other_rejected_rewards": torch.full((size, 1), -OTHER_REWARD_GAP / 2),
                "weights": torch.tensor([0.5, 0.5])}
    if name == "aspect_dpo":
        return {"aspect_labels": torch.tensor([[1.0, 1.0, 0.0]]).expand(size, 3)}
    if name == "lexicographic_dpo":
        return {"aspect_labels": torch.tensor([[0.5, 1.0, 0.0]]).expand(size, 3)}
    return {}


def evaluate_curve(name: str, params: dict[str, Any], scaled_margins: torch.Tensor) -> dict[str, Any]:
    """Loss and gradients of ``name`` at every scaled margin ``z`` (one pair per point)."""
    loss = PREFERENCE_LOSSES[name]
    beta = loss.default_beta
    scale = 1.0 if beta is None else beta
    d = scaled_margins / scale
    size = int(d.shape[0])
    arguments = {**params, **_structured_params(name, size)}
    if name == "kto":
        s = torch.cat([d / 2, -d / 2])
        flags = torch.cat([torch.ones(size, dtype=torch.bool), torch.zeros(size, dtype=torch.bool)])
        output = preference_loss(name, UnpairedBatch(s, torch.zeros_like(s), flags, kl_estimate=0.0),
                                 gradient_weights=True, **arguments)
        weights = output.gradient_weights
        assert weights is not None
        losses, chosen, rejected = output.losses[:size] + output.losses[size:], weights.chosen, weights.rejected
    elif loss.batch_type is RankingBatch:  # bradley_terry and the labelled pair models (labels: first preferred)
        output = preference_loss(name, RankingBatch.from_pairs(d / 2, -d / 2), gradient_weights=True, **arguments)
        assert output.gradient_weights is not None
        losses, chosen, rejected = output.losses, output.gradient_weights.chosen, output.gradient_weights.rejected
    elif loss.per_pair:
        output = preference_loss(name, _pair_batch(name, d), gradient_weights=True, **arguments)
        assert output.gradient_weights is not None
        losses, chosen, rejected = output.losses, output.gradient_weights.chosen, output.gradient_weights.rejected
    else:  # sorts over the batch: one pair at a time
        parts = [preference_loss(name, _pair_batch(name, d[i:i + 1]), gradient_weights=True, **arguments)
                 for i in range(size)]
        losses = torch.cat([p.losses for p in parts])
        chosen = torch.cat([p.gradient_weights.chosen for p in parts if p.gradient_weights is not None])
        rejected = torch.cat([p.gradient_weights.rejected for p in parts if p.gradient_weights is not None])
    weight = -0.5 * (chosen - rejected)
    return {"beta": beta, "loss": losses.detach(), "chosen_gradient": chosen, "rejected_gradient": rejected,
            "gradient_weight": weight, "gradient_weight_per_scaled_margin": weight / scale}


def run(scale: str, results_dir: Path, seed: int = 0, progress: bool = True,
        config: LossGradientWeightsConfig | None = None) -> Path:
    """Tabulate every pairwise loss at ``scale``; writes ``results_dir/loss_gradient_weights.json``.

    Deterministic (no sampling): ``seed`` is recorded for the shared result format only.
    """
    settings = experiment_settings(LossGradientWeightsConfig, SCALES, scale, NAME, config)
    started = time.perf_counter()
    limit = settings.scaled_margin_limit
    curves = []
    with torch.no_grad():
        scaled_margins = torch.linspace(-limit, limit, settings.num_margins, dtype=torch.float64)
    for label, name, params, group in tqdm(CURVES, desc=NAME, disable=not progress):
        loss = PREFERENCE_LOSSES[name]
        curves.append({"label": label, "loss_name": name, "params": params, "group": group,
                       "defaults": {k: v for k, v in loss.defaults.items() if not isinstance(v, torch.Tensor)},
                       "source": loss.source, "trl_name": loss.trl_name,
                       **evaluate_curve(name, params, scaled_margins)})
    record = {
        "name": NAME, "scale": scale,
        "config": {**settings.to_dict(), "reference_free_anchor": ANCHOR, "modpo_other_reward_gap": OTHER_REWARD_GAP},
        "provenance": provenance(seed), "groups": [{"group": g, "title": t} for g, t in GROUPS],
        "scaled_margins": scaled_margins, "curves": curves, "seconds": time.perf_counter() - started,
    }
    path = Path(results_dir) / f"{NAME}.json"
    write_json(path, record)
    return path
