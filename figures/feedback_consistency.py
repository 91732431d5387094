"""Figure: agreement between simulated human teachers, disagreeing annotators, an AI evaluator and the truth.

Reads ``results/feedback_consistency.json`` (``classic_rl.experiments.feedback_consistency``). Left: Cohen's κ
between every two labellers (and the truth) on the same queries. Right: each labeller against the truth —
accuracy (ties ½), Kendall τ-b of its Borda item ranking with the true segment returns, and the rate of
intransitive triples; the caption line gives Fleiss' κ and Krippendorff's α per group.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from figures import style

NAME = "feedback_consistency"
METRICS = [("accuracy", "accuracy vs truth", "C0"), ("kendall_tau", "Kendall τ (Borda vs true returns)", "C1"),
           ("intransitive_rate", "intransitive triples", "C3")]


def plot(results_dir: Path, out_dir: Path) -> list[Path]:
    """Draw ``out_dir/feedback_consistency.{png,pdf}`` from ``results_dir/feedback_consistency.json``."""
    style.apply()
    results = style.read_results(results_dir, NAME)
    names = results["pairwise_kappa"]["names"]
    kappa = np.array(results["pairwise_kappa"]["matrix"], dtype=float)
    labellers = results["labellers"]
    table = results["table"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 0.42 * len(names) + 2.2), layout="constrained",
                             gridspec_kw={"width_ratios": [1.25, 1]})

    ax = axes[0]
    image = ax.imshow(kappa, cmap="viridis", vmin=min(0.0, float(np.nanmin(kappa))), vmax=1.0)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names)
    ax.grid(False)
    for a in range(len(names)):
        for b in range(len(names)):
            value = kappa[a, b]
            text = "–" if not np.isfinite(value) else f"{value:.2f}"
            ax.text(b, a, text, ha="center", va="center", fontsize=7,
                    color="black" if np.isfinite(value) and value > 0.6 else "white")
    fig.colorbar(image, ax=ax, shrink=0.8, label="Cohen's κ")
    ax.set_title("pairwise Cohen's κ on the same queries")

    ax = axes[1]
    y = np.arange(len(labellers))
    height = 0.8 / len(METRICS)
    for index, (key, label, colour) in enumerate(METRICS):
        values = np.array([table[name][key] for name in labellers], dtype=float)
        ax.barh(y + (index - 1) * height, np.nan_to_num(values), height=height, color=colour, label=label)
    ax.set_yticks(y)
    ax.set_yticklabels(labellers)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.05)
    ax.set_xlabel("value")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, framealpha=0.9)
    ax.set_title("each labeller against the truth")

    groups = results["group_agreement"]
    parts = [f"{group}: Fleiss κ {g['fleiss_kappa']:.2f}, α nominal {g['krippendorff_alpha_nominal']:.2f}, "
             f"α ordinal {g['krippendorff_alpha_ordinal']:.2f}" for group, g in groups.items()]
    setting = results["setting"]
    return style.finish(fig, out_dir, NAME, results, fontsize=9, title=(
        f"Feedback consistency on {setting['testbed']}: {setting['num_queries']} queries "
        f"(truth ties {setting['truth_tie_rate']:.0%})\n"
        + "; ".join(parts)))


if __name__ == "__main__":
    style.main(plot, __doc__)
