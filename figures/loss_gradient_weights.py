"""Figure: loss and gradient weight of every pairwise preference loss against the scaled margin β·d.

Reads ``results/loss_gradient_weights.json`` (``irlb.experiments.loss_gradient_weights``). One column per family
of losses; top row the per-pair loss, bottom row the gradient weight ``−∂ℓ/∂(β d)`` (the directional derivative
along the margin for losses that are not functions of ``d`` alone; DPO's is ``σ(−β d)``). Curves that coincide
for a single pair (AOT, length-normalized DPO with unit lengths, Bradley-Terry) are drawn once with all names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from figures import style

NAME = "loss_gradient_weights"
# Panels drawn on a symmetric-log scale (quadratic losses reach 1e4) and loss panels clipped from above.
SYMLOG_GROUPS = {"margin"}
LOSS_CEILING = {"reference_free": 15.0, "structured": 15.0}


def _merged(curves: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """Curves of one panel, identical ones (loss and weight equal to 1e-9) drawn once under all their labels."""
    kept: list[tuple[list[str], dict[str, Any]]] = []
    for curve in curves:
        loss, weight = np.asarray(curve["loss"]), np.asarray(curve["gradient_weight_per_scaled_margin"])
        for labels, other in kept:
            if (np.allclose(loss, other["loss"], rtol=0, atol=1e-9)
                    and np.allclose(weight, other["gradient_weight_per_scaled_margin"], rtol=0, atol=1e-9)):
                labels.append(curve["label"])
                break
        else:
            kept.append(([curve["label"]], curve))
    return [(" = ".join(labels), curve) for labels, curve in kept]


def _panel(loss_ax: plt.Axes, weight_ax: plt.Axes, group: str, title: str, curves: list[dict[str, Any]],
           margins: np.ndarray) -> None:
    for index, (label, curve) in enumerate(_merged(curves)):
        colour = f"C{index % 10}"
        beta = curve["beta"]
        label = label + ("" if beta is None or beta == 0.1 else f" (β = {beta:g})")
        loss_ax.plot(margins, curve["loss"], color=colour, linewidth=1.6, label=label)
        weight_ax.plot(margins, curve["gradient_weight_per_scaled_margin"], color=colour, linewidth=1.6)
    for ax in (loss_ax, weight_ax):
        ax.axvline(0, color="0.6", linewidth=0.6)
        ax.set_xlim(margins[0], margins[-1])
        if group in SYMLOG_GROUPS:
            ax.set_yscale("symlog", linthresh=1.0)
    weight_ax.axhline(0, color="0.3", linewidth=0.8)
    if group in LOSS_CEILING:
        low = min(0.0, min(float(np.min(c["loss"])) for c in curves))
        loss_ax.set_ylim(low - 0.5, LOSS_CEILING[group])
    loss_ax.set_title(title)
    weight_ax.set_xlabel("scaled margin  β·d")
    handles, labels = loss_ax.get_legend_handles_labels()
    weight_ax.legend(handles, [_wrapped(label) for label in labels], fontsize=8, loc="upper center",
                     bbox_to_anchor=(0.5, -0.2), frameon=False)


def _wrapped(label: str, width: int = 44) -> str:
    """Break long merged labels at ' = ' so legends stay within their column."""
    lines, current = [], ""
    for part in label.split(" = "):
        candidate = part if not current else f"{current} = {part}"
        if current and len(candidate) > width:
            lines.append(current + " =")
            current = part
        else:
            current = candidate
    return "\n".join([*lines, current])


def plot(results_dir: Path, out_dir: Path) -> list[Path]:
    """Draw ``out_dir/loss_gradient_weights.{png,pdf}`` from ``results_dir/loss_gradient_weights.json``."""
    style.apply()
    results = style.read_results(results_dir, NAME)
    margins = np.asarray(results["scaled_margins"])
    groups = results["groups"]
    fig, axes = plt.subplots(2, len(groups), figsize=(4.0 * len(groups), 8.2), sharex=True, layout="constrained")
    for column, entry in enumerate(groups):
        group, title = entry["group"], entry["title"]
        curves = [c for c in results["curves"] if c["group"] == group]
        _panel(axes[0, column], axes[1, column], group, title, curves, margins)
    axes[0, 0].set_ylabel("per-pair loss ℓ")
    axes[1, 0].set_ylabel("gradient weight  −∂ℓ/∂(β·d)")
    config = results["config"]
    return style.finish(fig, out_dir, NAME, results, fontsize=9, title=(
        "Preference losses and the gradient weight each pair receives. One pair "
        f"per point, each loss at its default β (0.1 unless marked; ORPO has none: β·d = d); with a reference "
        f"s_w = d/2, s_l = −d/2, unit lengths;\nreference-free: the better sequence at log-prob "
        f"−{config['reference_free_anchor']:g}, the other |d| lower (CPO's NLL term grows as |d| and leaves the "
        f"panel); KTO: one desirable at d/2 plus one undesirable at −d/2, z0 = 0. Weight < 0: the loss pulls the "
        f"margin back. Symmetric-log axes for the squared losses."))


if __name__ == "__main__":
    style.main(plot, __doc__)
