"""Figure: scalar vs per-aspect labels on a multi-aspect task (ObjectWorld, three aspects).

Reads ``results/aspect_labels.json`` (``classic_rl.experiments.aspect_labels``). One column per labeller (oracle,
stochastic, B-Pref mistake); top row: normalized return of the soft-optimal policy of the learned reward under the
true reward, bottom row: EPIC distance of the learned reward to the true reward; both against the number of
queries, IQM over seeds with a 95% bootstrap CI band. Lines: ``scalar`` (one label of the aggregated return per
query), ``per_aspect`` (one label per aspect per query: three labels), ``per_aspect_split`` (per-aspect labels, one
aspect per query: as many labels as ``scalar``); dotted: the least-squares linear fit of the true reward.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from figures import style

NAME = "aspect_labels"
METHODS = {"scalar": ("scalar labels (1 / query)", "C0", "o"),
           "per_aspect": ("per-aspect labels (3 / query)", "C3", "s"),
           "per_aspect_split": ("per-aspect, 1 aspect / query", "C2", "^")}
ROWS = [("normalized_return", "normalized return"), ("epic", "EPIC distance to true reward")]


def plot(results_dir: Path, out_dir: Path) -> list[Path]:
    """Draw ``out_dir/aspect_labels.{png,pdf}`` from ``results_dir/aspect_labels.json``."""
    style.apply()
    results = style.read_results(results_dir, NAME)
    summary = results["summary"]
    teachers = [t for t in results["config"]["teachers"] if t in summary]  # the run's order
    fig, axes = plt.subplots(len(ROWS), len(teachers), figsize=(3.6 * len(teachers) + 0.6, 6.2),
                             layout="constrained", sharex=True, squeeze=False)
    for column, teacher in enumerate(teachers):
        for row, (metric, label) in enumerate(ROWS):
            ax = axes[row, column]
            for method, (name, colour, marker) in METHODS.items():
                if method not in summary[teacher]:
                    continue
                cells = summary[teacher][method][metric]
                budgets = np.array([c["budget"] for c in cells], dtype=float)
                centre = np.array([c["iqm"] for c in cells], dtype=float)
                low = np.array([c["low"] for c in cells], dtype=float)
                high = np.array([c["high"] for c in cells], dtype=float)
                ax.plot(budgets, centre, marker=marker, color=colour, label=name)
                ax.fill_between(budgets, low, high, color=colour, alpha=0.18, linewidth=0)
            reference = results["linear_fit"][metric]["iqm"]
            ax.axhline(reference, color="0.35", linestyle=":", linewidth=1.2, label="best linear fit (least squares)")
            ax.set_xscale("log")
            ax.set_ylabel(label)
            if row == 0:
                ax.set_title(f"labeller: {teacher}")
            if row == len(ROWS) - 1:
                ax.set_xlabel("queries")
    budgets = results["config"]["budgets"]
    for ax in axes[-1]:
        ax.set_xticks(budgets)
        ax.set_xticklabels([str(b) for b in budgets])
        ax.minorticks_off()
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=4, framealpha=0.9)
    weights = ", ".join(f"{a} {w:g}" for a, w in zip(results["setting"]["aspects"],
                                                       results["config"]["aspect_weights"], strict=True))
    seeds = results["config"]["seeds"]
    return style.finish(fig, out_dir, NAME, results, fontsize=9, title=(
        f"Scalar vs per-aspect labels on ObjectWorld (true reward = {weights}); IQM and 95% CI over "
        f"{seeds} seeds"))


if __name__ == "__main__":
    style.main(plot, __doc__)
