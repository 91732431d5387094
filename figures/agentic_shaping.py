"""Figure: decision-aware reward shaping for a LoRA policy LM on agentic text tasks.

Reads ``results/agentic_shaping.json`` (``llm.experiments.agentic_shaping``). One row per environment: (a) goal
rate (the sparse task return) of sampled episodes from every start vs RLOO updates, (b) the training episodes'
goal rate per inner solve vs RLOO updates — IQM over seeds with the bootstrap 95% CI as a band, for each shaping
method (same update budget) — and (c) the learned aggregator weights over the candidate shaping signals (simplex)
over outer steps, per seed, the deliberately harmful candidate dashed.
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
    "learned_weights": "learned weights on candidates",
}
COLOURS = {"none": "C7", "hand_potential": "C1", "fixed_candidates": "C4", "learned_weights": "C2"}


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


def _weights(ax: plt.Axes, env_result: dict[str, Any], candidates: list[str], harmful: str) -> None:
    runs = [r for r in env_result["runs"] if r["method"] == "learned_weights"]
    for run in runs:
        weights = np.asarray([row["weights"] for row in run["weights"]])
        for k, name in enumerate(candidates):
            is_harmful = name == harmful
            ax.plot(np.arange(len(weights)), weights[:, k], color=f"C{k}", alpha=0.8,
                    linestyle="--" if is_harmful else "-",
                    label=(f"{name}{' (harmful)' if is_harmful else ''}" if run is runs[0] else None))
    ax.axhline(1.0 / len(candidates), color="k", linewidth=0.8, linestyle=":")
    ax.set_ylim(0, 1)
    ax.set_xlabel("outer step")
    ax.set_ylabel("learned weight")
    if runs:
        ax.legend(fontsize=7)


def plot(results_dir: Path, figures_dir: Path) -> list[Path]:
    results = style.read_results(results_dir, NAME)
    style.apply()
    envs = list(results["envs"])
    fig, axes = plt.subplots(len(envs), 3, figsize=(14, 3.8 * len(envs)), squeeze=False)
    for row, env in enumerate(envs):
        env_result = results["envs"][env]
        summary = env_result["summary"]
        _band(axes[row, 0], summary, "evaluation_curve", "goal_rate")
        axes[row, 0].set_ylabel("goal rate (sampled, every start)")
        axes[row, 0].set_title(f"({chr(97 + 3 * row)}) {env}: task return, IQM + 95% CI")
        axes[row, 0].legend(fontsize=7, loc="upper left")
        _band(axes[row, 1], summary, "train_curve", "train_goal_rate")
        axes[row, 1].set_ylabel("training goal rate per solve")
        axes[row, 1].set_title(f"({chr(98 + 3 * row)}) {env}: training episodes")
        _weights(axes[row, 2], env_result, results["candidates"], results["harmful_candidate"])
        axes[row, 2].set_title(f"({chr(99 + 3 * row)}) {env}: learned candidate weights (per seed)")
    fig.suptitle(f"Learned reward shaping with a LoRA policy LM, {results['config']['total_updates']} RLOO updates "
                 f"per method ({style.provenance_line(results)})", fontsize=9)
    fig.tight_layout()
    return style.save(fig, figures_dir, NAME)


if __name__ == "__main__":
    style.main(plot, __doc__.splitlines()[0])
