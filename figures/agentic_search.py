"""Figure: reward-guided A* over tool calls (ToolChain*-style) against plain sampling on the typed tool-use task.

Reads ``results/agentic_search.json`` (``llm.experiments.agentic_search``). (a) Tasks solved within the call budget
per method (IQM over seeds with the 95% bootstrap CI; points: seeds); (b) expansions per task (mean over seeds, log
scale; a budget-capped failure counts its full budget), tasks ordered as in the env, gold sequence length in the
label; (c) the reward's aspect weights learned from preferences (points: seeds) next to the true ones.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from figures import style

NAME = "agentic_search"
LABELS = {"sampling": "plain sampling", "a_star_uniform": "A*, h = 0", "a_star_learned": "A*, learned reward h",
          "a_star_true": "A*, true reward h"}
COLOURS = {"sampling": "C7", "a_star_uniform": "C1", "a_star_learned": "C0", "a_star_true": "C2"}


def plot(results_dir: Path, figures_dir: Path) -> list[Path]:
    style.apply()
    results = style.read_results(results_dir, NAME)
    summary = results["summary"]
    methods = [m for m in LABELS if m in summary]
    fig, axes = plt.subplots(1, 3, figsize=(17, 4), layout="constrained")
    ax = axes[0]
    for x, method in enumerate(methods):
        ci = summary[method]["success"]
        ax.bar(x, ci["iqm"], color=COLOURS[method], alpha=0.8,
               yerr=[[ci["iqm"] - ci["low"]], [ci["high"] - ci["iqm"]]], capsize=3)
        seeds = summary[method]["success_per_seed"]
        ax.scatter(x + np.linspace(-0.15, 0.15, len(seeds)), seeds, s=10, color="k", zorder=3)
    ax.set_xticks(range(len(methods)), [LABELS[m].replace(", ", ",\n") for m in methods], fontsize=8)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("tasks solved (IQM, 95% CI)")
    ax.set_title(f"(a) success within {results['config']['call_budget']:,} tool calls")
    ax = axes[1]
    tasks = [f"{name} ({length})" for name, length in zip(results["tasks"], results["gold_lengths"])]
    width = 0.8 / len(methods)
    for i, method in enumerate(methods):
        values = summary[method]["expansions_per_task"]
        ax.bar(np.arange(len(tasks)) + (i - len(methods) / 2 + 0.5) * width, values, width, color=COLOURS[method],
               alpha=0.8, label=LABELS[method])
    ax.set_yscale("log")
    ax.set_xticks(range(len(tasks)), tasks, fontsize=7, rotation=20)
    ax.set_ylabel("expansions (mean over seeds)")
    ax.set_title("(b) expansions per task (gold calls)")
    style.legend_outside(ax, fontsize=7)
    ax = axes[2]
    names = results["aspect_names"]
    thetas = np.asarray([row["theta"] for row in results["seeds"]])
    positions = np.arange(len(names))
    ax.bar(positions - 0.2, np.median(thetas, 0), 0.4, color="C0", alpha=0.8, label="learned (median)")
    for row in thetas:
        ax.scatter(positions - 0.2, row, s=8, color="k", zorder=3)
    ax.bar(positions + 0.2, results["true_weights"], 0.4, color="C2", alpha=0.8, label="true")
    ax.set_xticks(positions, names, fontsize=8)
    ax.set_ylabel("weight")
    ax.set_title("(c) reward weights learned from preferences")
    style.legend_outside(ax, fontsize=7)
    return style.finish(fig, figures_dir, NAME, results, fontsize=9, title=(
        "Tool use: reward-guided A* against plain sampling"))


if __name__ == "__main__":
    style.main(plot, __doc__)
