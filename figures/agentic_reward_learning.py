"""Figure: a LoRA policy LM in agentic text environments, before training and fine-tuned on learned vs sparse rewards.

Reads ``results/agentic_reward_learning.json`` (``llm.experiments.agentic_reward_learning``). One column per
environment. Rows: (a) success rate per condition (bar: mean over seeds, points: seeds, error bar: std across
seeds, the stability measure); (b) invalid- and malformed-action rates per condition; (c) the reward scales
learned by MaxEnt IRL through the bilevel solver (points: seeds) next to the true structured weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Patch

from figures import style

NAME = "agentic_reward_learning"
LABELS = {"untrained": "untrained", "irl_inner": "IRL inner\npolicy", "learned": "learned\nreward",
          "sparse": "sparse\nsuccess", "true": "true\nstructured"}
COLOURS = {"untrained": "C7", "irl_inner": "C4", "learned": "C0", "sparse": "C1", "true": "C2"}
TRUE_WEIGHTS = (1.0, 1.0, 1.0, 0.1, 0.1)  # llm.agentic.DEFAULT_WEIGHTS (figures read results, not envs)


def _points(ax: plt.Axes, x: float, values: list[float | None], colour: str) -> None:
    finite = [v for v in values if v is not None]
    offsets = np.linspace(-0.12, 0.12, len(finite)) if len(finite) > 1 else [0.0]
    ax.scatter(x + np.asarray(offsets), finite, s=14, color="k", zorder=3, edgecolor=colour, linewidth=0.6)


def _success(ax: plt.Axes, summary: dict[str, Any], conditions: list[str], env: str) -> None:
    for x, condition in enumerate(conditions):
        entry = summary[condition]
        ax.bar(x, entry["success_mean"], color=COLOURS[condition], alpha=0.8, yerr=entry["success_std"], capsize=3)
        _points(ax, x, entry["success_per_seed"], COLOURS[condition])
    ax.set_xticks(range(len(conditions)), [LABELS[c] for c in conditions], fontsize=8)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("success rate (goal, no invalid/malformed)")
    seeds = len(summary[conditions[0]]["success_per_seed"])
    ax.set_title(f"(a) {env}: success, {seeds} seeds (bar ± std)")


def _errors(ax: plt.Axes, summary: dict[str, Any], conditions: list[str], env: str) -> None:
    width = 0.38
    for x, condition in enumerate(conditions):
        entry = summary[condition]
        for shift, metric, hatch in ((-width / 2, "invalid_action_rate", ""), (width / 2, "malformed_rate", "//")):
            ax.bar(x + shift, entry[f"{metric}_mean"], width, color=COLOURS[condition], alpha=0.8, hatch=hatch,
                   edgecolor="k", linewidth=0.4)
            _points(ax, x + shift, entry[f"{metric}_per_seed"], COLOURS[condition])
    handles = [Patch(facecolor="w", edgecolor="k", label="invalid"),
               Patch(facecolor="w", edgecolor="k", hatch="//", label="malformed")]
    ax.set_xticks(range(len(conditions)), [LABELS[c] for c in conditions], fontsize=8)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("fraction of actions")
    ax.set_title(f"(b) {env}: invalid / malformed actions")
    ax.legend(handles=handles, fontsize=8)


def _scales(ax: plt.Axes, env_result: dict[str, Any], env: str) -> None:
    names = env_result["seeds"][0]["aspect_names"]
    scales = np.asarray([row["learned_scales"] for row in env_result["seeds"]])
    x = np.arange(len(names))
    ax.bar(x - 0.2, scales.mean(0), 0.4, color="C0", alpha=0.8, label="learned (mean over seeds)")
    for row in scales:
        ax.scatter(x - 0.2, row, s=12, color="k", zorder=3)
    ax.bar(x + 0.2, TRUE_WEIGHTS[:len(names)], 0.4, color="C2", alpha=0.8, label="true weights")
    ax.set_xticks(x, names, fontsize=8)
    ax.set_ylabel("scale θ_k")
    ax.set_title(f"(c) {env}: aspect scales from MaxEnt IRL")
    ax.legend(fontsize=8)


def plot(results_dir: Path, figures_dir: Path) -> list[Path]:
    style.apply()
    results = style.read_results(results_dir, NAME)
    envs = list(results["envs"])
    fig, axes = plt.subplots(3, len(envs), figsize=(5.2 * len(envs), 10.5), squeeze=False)
    for column, env in enumerate(envs):
        env_result = results["envs"][env]
        summary = env_result["summary"]
        conditions = [c for c in LABELS if c in summary]
        _success(axes[0, column], summary, conditions, env)
        _errors(axes[1, column], summary, conditions, env)
        _scales(axes[2, column], env_result, env)
    config = results["config"]
    fig.suptitle(f"LoRA policy LM on agentic text tasks: fresh adapters fine-tuned {config['transfer_updates']} "
                 f"RLOO updates on each frozen reward\n({style.provenance_line(results)})", fontsize=10)
    fig.tight_layout()
    return style.save(fig, figures_dir, NAME)


if __name__ == "__main__":
    style.main(plot, __doc__.splitlines()[0])
