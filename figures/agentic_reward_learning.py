"""Figure: a LoRA policy LM in agentic text environments, before training and fine-tuned on learned vs sparse rewards.

Reads ``results/agentic_reward_learning.json`` (``llm.experiments.agentic_reward_learning``). One column per
environment. Rows: (a) success rate per condition (bar: mean over seeds, points: seeds, error bar: std across
seeds, the stability measure): rewards learned from demonstrations and from preferences (structured and scalar),
DPO on the same preference pairs, and the references; (b) invalid- and malformed-action rates per condition;
(c) the reward scales learned through the bilevel solver by MaxEnt IRL and from preferences (points: seeds) next to
the true structured weights; (d) reward-guided best-first search (no LM) with each reward: success within the
move cap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Patch

from figures import style

NAME = "agentic_reward_learning"
LABELS = {"untrained": "untrained", "irl_inner": "IRL inner\npolicy", "learned": "demos:\nstructured",
          "pref_learned": "prefs:\nstructured", "pref_scalar": "prefs:\nscalar", "dpo": "DPO on\nprefs",
          "sparse": "sparse\nsuccess", "true": "true\nstructured"}
COLOURS = {"untrained": "C7", "irl_inner": "C4", "learned": "C0", "sparse": "C1", "true": "C2",
           "pref_learned": "C9", "pref_scalar": "C5", "dpo": "C6"}
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
    x = np.arange(len(names))
    sources = [("learned_scales", "MaxEnt IRL (demos)", "C0"), ("preference_scales", "preferences", "C9")]
    sources = [source for source in sources if source[0] in env_result["seeds"][0]]
    width = 0.8 / (len(sources) + 1)
    for i, (key, label, colour) in enumerate(sources):
        scales = np.asarray([row[key] for row in env_result["seeds"]])
        shift = (i - len(sources) / 2) * width
        ax.bar(x + shift, scales.mean(0), width, color=colour, alpha=0.8, label=f"{label} (mean over seeds)")
        for row in scales:
            ax.scatter(x + shift, row, s=10, color="k", zorder=3)
    ax.bar(x + len(sources) / 2 * width, TRUE_WEIGHTS[:len(names)], width, color="C2", alpha=0.8,
           label="true weights")
    ax.set_xticks(x, names, fontsize=8)
    ax.set_ylabel("scale θ_k")
    ax.set_title(f"(c) {env}: learned aspect scales")
    ax.legend(fontsize=8)


def _search(ax: plt.Axes, search: dict[str, Any], env: str) -> None:
    names = list(search)
    for x, name in enumerate(names):
        entry = search[name]
        ax.bar(x, entry["success_mean"], color=COLOURS[name], alpha=0.8)
        _points(ax, x, entry["success_per_seed"], COLOURS[name])
        ratio = entry["plan_length_ratio_mean"]
        ax.text(x, min(1.0, entry["success_mean"]) + 0.02, "—" if ratio is None else f"×{ratio:.2f}", ha="center",
                fontsize=7)
    ax.set_xticks(range(len(names)), [LABELS[n] for n in names], fontsize=8)
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("starts solved within the move cap")
    ax.set_title(f"(d) {env}: reward-guided search (label: plan length / optimal)")


def plot(results_dir: Path, figures_dir: Path) -> list[Path]:
    style.apply()
    results = style.read_results(results_dir, NAME)
    envs = list(results["envs"])
    rows = 4 if all("search" in results["envs"][env] for env in envs) else 3
    fig, axes = plt.subplots(rows, len(envs), figsize=(7.0 * len(envs), 3.5 * rows), squeeze=False)
    for column, env in enumerate(envs):
        env_result = results["envs"][env]
        summary = env_result["summary"]
        conditions = [c for c in LABELS if c in summary]
        _success(axes[0, column], summary, conditions, env)
        _errors(axes[1, column], summary, conditions, env)
        _scales(axes[2, column], env_result, env)
        if rows == 4:
            _search(axes[3, column], env_result["search"], env)
    config = results["config"]
    fig.suptitle(f"LoRA policy LM on agentic text tasks: fresh adapters, {config['transfer_updates']} RLOO updates "
                 f"on each frozen reward (DPO: as many steps)\n({style.provenance_line(results)})", fontsize=10)
    fig.tight_layout()
    return style.save(fig, figures_dir, NAME)


if __name__ == "__main__":
    style.main(plot, __doc__.splitlines()[0])
