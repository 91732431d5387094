"""Figure: decision-aware reward shaping for a LoRA policy LM on agentic text tasks.

Reads ``results/agentic_shaping.json`` (``llm.experiments.agentic_shaping``). One row per environment: (a) goal
rate (the sparse task return) of sampled episodes from every start vs RLOO updates, (b) the training episodes'
goal rate per inner solve vs RLOO updates — IQM over seeds with the bootstrap 95% CI as a band, for each shaping
method (same update budget) — and the learned weights over the candidate shaping signals over outer steps, per seed,
the deliberately harmful candidate dashed: (c) ``learned_weights`` (simplex, from equal weights) and (d)
``learned_from_none`` (signed, from zero); each title gives the fraction of outer steps whose task-gradient estimate
was exactly zero (no signal: no training episode of the solve reached the goal).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from figures import style

NAME = "agentic_shaping"
LABELS = {
    "none": "no shaping (sparse success)",
    "hand_potential": "hand potential (distance to goal)",
    "fixed_candidates": "fixed equal weights on candidates",
    "learned_weights": "learned weights from equal weights",
    "learned_from_none": "learned weights from zero (changed method)",
}
COLOURS = {"none": "C7", "hand_potential": "C1", "fixed_candidates": "C4", "learned_weights": "C2",
           "learned_from_none": "C3"}


def _band(ax: plt.Axes, summary: dict[str, Any], curve: str, key: str) -> None:
    for method in sorted(summary, key=lambda m: list(LABELS).index(m) if m in LABELS else len(LABELS)):
        entry = summary[method]
        rows = entry[curve]
        updates = np.asarray([row["updates"] for row in rows])
        iqm = np.asarray([row[key]["iqm"] for row in rows])
        low = np.asarray([row[key]["low"] for row in rows])
        high = np.asarray([row[key]["high"] for row in rows])
        colour = COLOURS.get(method, "C9")
        final = entry["final_goal_rate"]["iqm"]
        ax.plot(updates, iqm, color=colour, marker="o" if len(rows) < 12 else None, markersize=3,
                label=f"{LABELS.get(method, method)} (final {final:.2f})")
        ax.fill_between(updates, low, high, color=colour, alpha=0.15, linewidth=0)
    ax.set_xlabel("RLOO updates")
    ax.set_ylim(bottom=0)


def _weights(ax: plt.Axes, env_result: dict[str, Any], candidates: list[str], harmful: str, method: str) -> None:
    runs = [r for r in env_result["runs"] if r["method"] == method]
    for run in runs:
        weights = np.asarray([row["weights"] for row in run["weights"]])
        for k, name in enumerate(candidates):
            is_harmful = name == harmful
            ax.plot(np.arange(len(weights)), weights[:, k], color=f"C{k}", alpha=0.8,
                    linestyle="--" if is_harmful else "-",
                    label=(f"{name}{' (harmful)' if is_harmful else ''}" if run is runs[0] else None))
    ax.axhline(1.0 / len(candidates) if method == "learned_weights" else 0.0, color="k", linewidth=0.8, linestyle=":")
    if method == "learned_weights":
        ax.set_ylim(0, 1)
    ax.set_xlabel("outer step")
    ax.set_ylabel("learned weight")


def plot(results_dir: Path, figures_dir: Path) -> list[Path]:
    results = style.read_results(results_dir, NAME)
    style.apply()
    envs = list(results["envs"])
    fig, axes = plt.subplots(len(envs), 4, figsize=(21, 3.6 * len(envs)), squeeze=False, layout="constrained")
    for row, env in enumerate(envs):
        env_result = results["envs"][env]
        summary = env_result["summary"]
        _band(axes[row, 0], summary, "evaluation_curve", "goal_rate")
        axes[row, 0].set_ylabel("goal rate (sampled, every start)")
        axes[row, 0].set_title(f"(a) {env}: task return, IQM + 95% CI", fontsize=9)
        _band(axes[row, 1], summary, "train_curve", "train_goal_rate")
        axes[row, 1].set_ylabel("training goal rate per solve")
        axes[row, 1].set_title(f"(b) {env}: training episodes", fontsize=9)
        for column, method in ((2, "learned_weights"), (3, "learned_from_none")):
            _weights(axes[row, column], env_result, results["candidates"], results["harmful_candidate"], method)
            zero = summary.get(method, {}).get("zero_task_gradient_fraction")
            zero_text = "" if zero is None else f"\nzero task gradient on {zero:.0%} of outer steps"
            axes[row, column].set_title(f"({'cd'[column - 2]}) {env}: {method}{zero_text}", fontsize=8)
        # The methods' legend beside (b), for (a) and (b); the candidates' beside (d), for (c) and (d).
        style.shared_legend([axes[row, 0], axes[row, 1]], fontsize=6)
        style.shared_legend([axes[row, 2], axes[row, 3]], fontsize=7)
    return style.finish(fig, figures_dir, NAME, results, fontsize=9, title=(
        f"Learned reward shaping with a LoRA policy LM, {results['config']['total_updates']} RLOO updates "
        "per method"))


if __name__ == "__main__":
    style.main(plot, __doc__)
