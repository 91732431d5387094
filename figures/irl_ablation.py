"""Figure: the classical-RL IRL ablation grid (hypergradient × reward structure × inner steps × demonstrations).

Reads ``results/irl_ablation_sweep.json``: the ``sweep.json`` that ``irlb sweep --spec sweeps/irl_ablation.json``
writes (``make ablation`` runs it and copies the file). One panel per hypergradient method; in each, groups of
bars over the reward structures, one bar per (env steps per outer step, demonstrations) setting: the IQM over seeds
of the sweep's metric (final expert-normalized return), error bars the 95% bootstrap CI, points the seeds; one
more row per extra metric of the sweep (EPIC distance of the learned reward to the true one, reward transfer).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from figures import style

NAME = "irl_ablation"
RESULTS = "irl_ablation_sweep"
PANEL_KEY, GROUP_KEY = "hypergradient", "reward_structure"


def _values(points: list[dict[str, Any]], key: str) -> list[Any]:
    return list(dict.fromkeys(point["point"].get(key) for point in points))


ROW_LABELS = {None: "final expert-normalized return", "summary.epic_distance": "EPIC distance to the true reward",
              "transfer_normalized_return": "reward transfer (normalized return)"}


def _statistics(point: dict[str, Any], metric: str | None) -> dict[str, Any] | None:
    """The point's IQM, CI and seed values of the sweep's metric (``None``) or of one of its extra metrics."""
    if metric is None:
        return point
    return point.get("extra_metrics", {}).get(metric)


def plot(results_dir: Path, figures_dir: Path) -> list[Path]:
    style.apply()
    results = style.read_results(results_dir, RESULTS)
    points = results["grid_points"]
    panels, groups = _values(points, PANEL_KEY), _values(points, GROUP_KEY)
    bar_keys = [key for key in results["spec"]["grid"] if key not in (PANEL_KEY, GROUP_KEY)]
    settings = list(itertools.product(*(_values(points, key) for key in bar_keys)))
    index = {json_key(point["point"]): point for point in points}
    rows: list[str | None] = [None, *results.get("extra_metrics", [])]
    fig, axes = plt.subplots(len(rows), len(panels), figsize=(5.5 * len(panels), 3.6 * len(rows) + 0.6),
                             squeeze=False, sharey="row")
    width = 0.8 / max(1, len(settings))
    for r, metric in enumerate(rows):
        for ax, panel in zip(axes[r], panels):
            for b, setting in enumerate(settings):
                label = ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in zip(bar_keys, setting))
                for g, group in enumerate(groups):
                    wanted = {PANEL_KEY: panel, GROUP_KEY: group, **dict(zip(bar_keys, setting))}
                    point = index.get(json_key({key: wanted[key] for key in results["spec"]["grid"]}))
                    stats = None if point is None else _statistics(point, metric)
                    if stats is None or not stats["values"]:
                        continue
                    x = g + (b - (len(settings) - 1) / 2) * width
                    low, high = stats["low"], stats["high"]
                    ax.bar(x, stats["iqm"], width, color=f"C{b}", alpha=0.8,
                           label=label if g == 0 and r == 0 else None,
                           yerr=[[stats["iqm"] - low], [high - stats["iqm"]]], capsize=2)
                    ax.scatter(np.full(len(stats["values"]), x), stats["values"], s=8, color="k", zorder=3)
            if metric != "summary.epic_distance":
                ax.axhline(1.0, color="k", linestyle=":", linewidth=0.8)
            ax.set_xticks(range(len(groups)), [str(group).replace("_", "-") for group in groups])
            if r == 0:
                ax.set_title(f"hypergradient: {panel if panel is not None else 'the default'}")
            if r == len(rows) - 1:
                ax.set_xlabel("reward structure")
        axes[r, 0].set_ylabel(f"{ROW_LABELS.get(metric, metric)}\n(IQM, 95% CI)", fontsize=8)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(2, len(labels)), fontsize=8, frameon=False)
    spec = results["spec"]
    env = spec.get("overrides", {}).get("env_id", "the default testbed")
    seeds = ", ".join(str(seed) for seed in spec["seeds"])
    fig.suptitle(f"IRL ablation on {env}: {len(results['trials'])} trials, seeds {seeds} per setting "
                 f"(scale {results['scale']})", fontsize=10)
    fig.tight_layout(rect=(0, 0.12 / len(rows), 1, 1))
    return style.save(fig, figures_dir, NAME, results)


def json_key(point: dict[str, Any]) -> str:
    return repr(sorted(point.items()))


if __name__ == "__main__":
    style.main(plot, __doc__)
