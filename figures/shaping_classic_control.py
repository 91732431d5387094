"""Figure: decision-aware reward shaping on classic control with the SB3 (PPO) inner loop.

Reads ``results/shaping_classic_control.json`` (``classic_rl.experiments.shaping_classic_control``). One row per
task: (a) goal rate of the deterministic policy (fixed-seed evaluation episodes) vs env steps, (b) its true task
return vs env steps — IQM over seeds with the bootstrap 95% CI as a band, for each shaping method — and (c) the
learned aggregator weights over the candidate signals (simplex) over outer steps, per seed, the deliberately
harmful candidate dashed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from figures import style

NAME = "shaping_classic_control"
LABELS = {
    "none": "no shaping (PPO)",
    "hand_potential": "hand potential",
    "fixed_candidates": "fixed equal weights on candidates",
    "learned_weights": "learned weights on candidates",
    "learned_potential": "learned potential Φθ",
}
COLOURS = {"none": "C7", "hand_potential": "C1", "fixed_candidates": "C4", "learned_weights": "C2",
           "learned_potential": "C0"}


def _band(ax: plt.Axes, summary: dict[str, Any], key: str) -> None:
    for method, entry in summary.items():
        steps = np.asarray([row["env_steps"] for row in entry["curve"]])
        iqm = np.asarray([row[key]["iqm"] for row in entry["curve"]])
        low = np.asarray([row[key]["low"] for row in entry["curve"]])
        high = np.asarray([row[key]["high"] for row in entry["curve"]])
        colour = COLOURS.get(method, "C9")
        reached = f"{entry['reached_threshold']}/{len(entry['seeds'])} seeds ≥ 90%"
        ax.plot(steps, iqm, color=colour, label=f"{LABELS.get(method, method)} ({reached})")
        ax.fill_between(steps, low, high, color=colour, alpha=0.15, linewidth=0)
    ax.set_xlabel("env steps")


def _weights(ax: plt.Axes, testbed: dict[str, Any]) -> None:
    runs = [r for r in testbed["runs"] if r["method"] == "learned_weights"]
    names = testbed["candidates"]
    for run in runs:
        weights = np.asarray([p["weights"] for p in run["parameters"]])
        for k, name in enumerate(names):
            harmful = name == testbed.get("harmful_candidate")
            ax.plot(np.arange(len(weights)), weights[:, k], color=f"C{k}", alpha=0.8,
                    linestyle="--" if harmful else "-",
                    label=(f"{name}{' (harmful)' if harmful else ''}" if run is runs[0] else None))
    ax.set_ylim(0, 1)
    ax.set_xlabel("outer step")
    ax.set_ylabel("learned weight")
    style.legend_outside(ax, fontsize=7)


def plot(results_dir: Path, figures_dir: Path) -> list[Path]:
    results = style.read_results(results_dir, NAME)
    style.apply()
    testbeds = results["testbeds"]
    fig, axes = plt.subplots(len(testbeds), 3, figsize=(18, 3.6 * len(testbeds)), squeeze=False,
                             layout="constrained")
    for row, testbed in enumerate(testbeds):
        summary, env_id = testbed["summary"], testbed["env_id"]
        _band(axes[row, 0], summary, "goal_rate")
        axes[row, 0].axhline(results["config"]["goal_threshold"], color="k", linewidth=0.8, linestyle=":")
        axes[row, 0].set_ylabel("goal rate (deterministic policy)")
        axes[row, 0].set_title(f"({chr(97 + 3 * row)}) {env_id}: goal rate, IQM + 95% CI")
        _band(axes[row, 1], summary, "mean_return")
        axes[row, 1].set_ylabel("true task return")
        axes[row, 1].set_title(f"({chr(98 + 3 * row)}) {env_id}: true return")
        style.shared_legend([axes[row, 0], axes[row, 1]], fontsize=7)  # the methods, for both panels
        _weights(axes[row, 2], testbed)
        axes[row, 2].set_title(f"({chr(99 + 3 * row)}) {env_id}: learned candidate\nweights (per seed)")
    return style.finish(fig, figures_dir, NAME, results, fontsize=9, title=(
        "Learned reward shaping with a PPO inner loop"))


if __name__ == "__main__":
    style.main(plot, __doc__)
