"""Figure: RL from preferences, ours against imitation's ``PreferenceComparisons``: expert-normalized return of the
final policy against the number of oracle queries, one panel per testbed, one line per method (and per B-Pref
teacher on our side where the benchmark ran several), IQM over seeds with a 95% bootstrap CI.

Reads ``<results>/preferences_vs_imitation.json`` (``benchmarks/preferences_vs_imitation.py``; its ``summary``
holds, per env and ``method/teacher``, the IQM and CI per query budget).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from figures import style

NAME = "preferences_vs_imitation"
LABELS = {"ours": "ours (bilevel, SB3 inner)", "imitation": "imitation PreferenceComparisons"}


def _label(key: str) -> str:
    method, teacher = key.split("/", 1)
    base = LABELS.get(method, method)
    return base if teacher == "oracle" else f"{base}, {teacher} teacher"


TEACHER_COLORS = {"oracle": "C0", "stochastic": "C1", "mistake": "C2", "skip": "C4", "equal": "C5", "myopic": "C6"}


def _style(key: str) -> dict[str, Any]:
    method, teacher = key.split("/", 1)
    if method == "imitation":
        return {"color": "C3", "marker": "s", "linestyle": "--"}
    return {"color": TEACHER_COLORS.get(teacher, "C7"), "marker": "o", "linestyle": "-"}


def _draw(ax: plt.Axes, methods: dict[str, dict[str, dict[str, float]]]) -> None:
    order = sorted(methods, key=lambda k: (k.split("/")[0] != "ours", k.split("/")[1] != "oracle", k))
    for key in order:
        budgets = sorted(methods[key], key=int)
        x = np.array([int(b) for b in budgets])
        centre = np.array([methods[key][b]["iqm"] for b in budgets])
        low = np.array([methods[key][b]["low"] for b in budgets])
        high = np.array([methods[key][b]["high"] for b in budgets])
        look = _style(key)
        ax.plot(x, centre, label=_label(key), markersize=5, **look)
        ax.fill_between(x, low, high, color=look["color"], alpha=0.15, linewidth=0)
    ax.set_xticks(sorted({int(b) for key in methods for b in methods[key]}))
    ax.axhline(1.0, color="0.4", linewidth=0.8, linestyle=":")
    ax.axhline(0.9, color="0.6", linewidth=0.8, linestyle=":")
    ax.set_xlabel("oracle queries")


def plot(results_dir: Path, out_dir: Path) -> list[Path]:
    """Draw ``out_dir/preferences_vs_imitation.{png,pdf}`` from ``results_dir/preferences_vs_imitation.json``."""
    style.apply()
    results = style.read_results(results_dir, NAME)
    summary = results["summary"]
    envs = sorted(summary)
    fig, axes = plt.subplots(1, len(envs), figsize=(4.2 * len(envs), 3.4), squeeze=False, layout="constrained")
    for ax, env_id in zip(axes[0], envs):
        _draw(ax, summary[env_id])
        settings = results.get("settings", {}).get("envs", {}).get(env_id, {})
        detail = f" — {settings['env_steps']:,} env steps, L = {settings['fragment_length']}" if settings else ""
        ax.set_title(f"{env_id}{detail}")
    axes[0][0].set_ylabel("expert-normalized return (IQM, 95% CI)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(3, len(labels)), frameon=False)
    seeds = results.get("seeds", [])
    return style.finish(fig, out_dir, NAME, results, fontsize=9, title=(
        f"RL from preferences vs imitation — {len(seeds)} seed(s)"))


if __name__ == "__main__":
    style.main(plot, __doc__)
