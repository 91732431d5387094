"""Figure: a LoRA policy LM in agentic text environments (the project's and TextArena's), fine-tuned on learned vs
sparse rewards, with what decides where a learned reward helps.

Reads ``results/agentic_reward_learning.json`` (``llm.experiments.agentic_reward_learning``). One column per
environment. Rows: (a) success rate per condition, IQM over seeds with its 95% bootstrap CI (points: seeds), the goal
check of each learned structured reward against the sparse one in the title (met = non-overlapping CIs); (b) the update
budget: training success of the fresh adapters per RLOO update (IQM over seeds, band = 95% CI) for the learned, sparse
and true rewards; (c) reward identifiability: the aspect scales learned by MaxEnt IRL and from preferences (points:
seeds) next to the true weights, with the EPIC distance of each learned reward to the true one; (d) reward-guided
best-first search (no LM) with each reward: starts solved within the move cap; (e) capacity: the loss of the fresh
adapters fine-tuned on each reward's search plans per step (IQM over seeds; −log π of a plan's action, summed over
its tokens): where it stays high the model does not fit the plans it is shown.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from figures import style
from irl_bilevel.statistics import iqm_with_ci

NAME = "agentic_reward_learning"
LABELS = {"untrained": "untrained", "irl_inner": "IRL inner\npolicy", "learned": "demos:\nstructured",
          "pref_learned": "prefs:\nstructured", "pref_scalar": "prefs:\nscalar", "dpo": "DPO on\nprefs",
          "sparse": "sparse\nsuccess", "true": "true\nstructured", "learned_plans": "demos:\nplans",
          "pref_plans": "prefs:\nplans", "sparse_plans": "sparse:\nplans", "true_plans": "true:\nplans"}
COLOURS = {"untrained": "C7", "irl_inner": "C4", "learned": "C0", "sparse": "C1", "true": "C2",
           "pref_learned": "C9", "pref_scalar": "C5", "dpo": "C6", "learned_plans": "C0", "pref_plans": "C9",
           "sparse_plans": "C1", "true_plans": "C2"}
CURVES = ("learned", "pref_learned", "sparse", "true")
TRUE_WEIGHTS = (1.0, 1.0, 1.0, 0.1, 0.1)  # llm.agentic.DEFAULT_WEIGHTS (figures read results, not envs)


def _points(ax: plt.Axes, x: float, values: list[float | None], colour: str) -> None:
    finite = [v for v in values if v is not None]
    offsets = np.linspace(-0.15, 0.15, len(finite)) if len(finite) > 1 else [0.0]
    ax.scatter(x + np.asarray(offsets), finite, s=10, color="k", zorder=3, edgecolor=colour, linewidth=0.6)


def _success(ax: plt.Axes, entry: dict[str, Any], conditions: list[str], env: str) -> None:
    summary = entry["summary"]
    for x, condition in enumerate(conditions):
        ci = summary[condition]["success_iqm"]
        ax.bar(x, ci["iqm"], color=COLOURS[condition], alpha=0.8, hatch="//" if condition.endswith("_plans") else "",
               edgecolor="k", linewidth=0.3, yerr=[[ci["iqm"] - ci["low"]], [ci["high"] - ci["iqm"]]], capsize=2)
        _points(ax, x, summary[condition]["success_per_seed"], COLOURS[condition])
    ax.set_xticks(range(len(conditions)), [LABELS[c].replace("\n", " ") for c in conditions], fontsize=6,
                  rotation=90)
    top = max(max(summary[c]["success_per_seed"]) for c in conditions)
    ax.set_ylim(0, min(1.02, max(0.1, 1.25 * top)))
    ax.set_ylabel("success (IQM, 95% CI)")
    goals = entry.get("goals", {})

    def mark(name: str) -> str:
        check = goals.get(name)
        return "–" if check is None else ("yes" if check["met"] else "no")

    seeds = len(summary[conditions[0]]["success_per_seed"])
    ax.set_title(f"(a) {env}, {seeds} seeds; beats sparse (CIs apart)?\nRL: demos {mark('learned_beats_sparse')}, "
                 f"prefs {mark('pref_learned_beats_sparse')}; plans (hatched): demos "
                 f"{mark('learned_plans_beats_sparse_plans')}, prefs {mark('pref_plans_beats_sparse_plans')}",
                 fontsize=7)


def _curves(ax: plt.Axes, entry: dict[str, Any], env: str) -> None:
    """Training success per RLOO update of the fresh adapters (IQM over seeds, 95% CI band)."""
    for condition in CURVES:
        rows = [seed["conditions"][condition]["training"] for seed in entry["seeds"] if condition in seed["conditions"]]
        if not rows:
            continue
        length = min(len(r) for r in rows)
        cis = [iqm_with_ci([r[i]["success_rate"] for r in rows]) for i in range(length)]
        window = max(1, length // 10)  # a running mean over a tenth of the budget: one update has 16 episodes
        kernel = np.ones(window) / window
        smooth = {k: np.convolve([c[k] for c in cis], kernel, mode="valid") for k in ("iqm", "low", "high")}
        x = np.arange(len(smooth["iqm"])) + window
        ax.plot(x, smooth["iqm"], color=COLOURS[condition], label=LABELS[condition].replace("\n", " "))
        ax.fill_between(x, smooth["low"], smooth["high"], color=COLOURS[condition], alpha=0.12, linewidth=0)
    ax.set_xlabel("RLOO update of the fresh adapter")
    ax.set_ylabel("training success")
    ax.set_ylim(bottom=0)
    ax.set_title(f"(b) {env}: update budget (running mean)", fontsize=8)


def _scales(ax: plt.Axes, entry: dict[str, Any], env: str) -> None:
    names = entry["seeds"][0]["aspect_names"]
    x = np.arange(len(names))
    sources = [("learned_scales", "learned_identifiability", "demos", "C0"),
               ("preference_scales", "preference_identifiability", "prefs", "C9")]
    sources = [source for source in sources if source[0] in entry["seeds"][0]]
    width = 0.8 / (len(sources) + 1)
    epics = []
    for i, (key, ident, label, colour) in enumerate(sources):
        scales = np.asarray([row[key] for row in entry["seeds"]])
        epic = [row[ident]["epic"] for row in entry["seeds"] if ident in row]
        shift = (i - len(sources) / 2) * width
        if epic:
            epics.append(f"{label} {np.median(epic):.2f}")
        ax.bar(x + shift, np.median(scales, 0), width, color=colour, alpha=0.8, label=label)
        for row in scales:
            ax.scatter(x + shift, row, s=8, color="k", zorder=3)
    ax.bar(x + len(sources) / 2 * width, TRUE_WEIGHTS[:len(names)], width, color="C2", alpha=0.8, label="true")
    ax.set_xticks(x, names, fontsize=7)
    ax.set_ylabel("scale θ_k (median, seeds)")
    ax.set_title(f"(c) {env}: learned aspect scales\nEPIC to true (median): {', '.join(epics) or 'n/a'}", fontsize=8)


def _search(ax: plt.Axes, search: dict[str, Any], env: str) -> None:
    names = list(search)
    for x, name in enumerate(names):
        entry = search[name]
        ax.bar(x, entry["success_mean"], color=COLOURS[name], alpha=0.8)
        _points(ax, x, entry["success_per_seed"], COLOURS[name])
    ax.set_xticks(range(len(names)), [LABELS[n] for n in names], fontsize=7)
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("starts solved")
    ax.set_title(f"(d) {env}: reward-guided search", fontsize=8)


def _distillation(ax: plt.Axes, entry: dict[str, Any], env: str) -> None:
    for condition in ("learned_plans", "pref_plans", "sparse_plans", "true_plans"):
        rows = [seed["conditions"][condition]["training"] for seed in entry["seeds"]
                if condition in seed["conditions"] and seed["conditions"][condition]["training"]]
        if not rows:
            continue
        length = min(len(r) for r in rows)
        iqm = [iqm_with_ci([r[i]["loss"] for r in rows])["iqm"] for i in range(length)]
        ax.plot(np.arange(1, length + 1), iqm, color=COLOURS[condition], label=LABELS[condition].replace("\n", " "))
    ax.set_xlabel("fine-tuning step on the plans")
    ax.set_ylabel("−log π(action | prompt)")
    ax.set_yscale("log")
    ax.set_title(f"(e) {env}: imitating the search plans", fontsize=8)


def plot(results_dir: Path, figures_dir: Path) -> list[Path]:
    style.apply()
    results = style.read_results(results_dir, NAME)
    envs = list(results["envs"])
    fig, axes = plt.subplots(5, len(envs), figsize=(4.6 * len(envs) + 1.6, 15.5), squeeze=False,
                             layout="constrained")
    for column, env in enumerate(envs):
        entry = results["envs"][env]
        conditions = [c for c in LABELS if c in entry["summary"]]
        _success(axes[0, column], entry, conditions, env)
        _curves(axes[1, column], entry, env)
        _scales(axes[2, column], entry, env)
        _search(axes[3, column], entry["search"], env)
        _distillation(axes[4, column], entry, env)
    for row in (1, 2, 4):  # the same series in every column: one legend per row, right of the last panel
        style.shared_legend(list(axes[row]), fontsize=7)
    config = results["config"]
    return style.finish(fig, figures_dir, NAME, results, fontsize=10, title=(
        f"LoRA policy LM on agentic text tasks: fresh adapters, {config['transfer_updates']} RLOO updates "
        f"on each frozen reward (DPO: as many steps)"))


if __name__ == "__main__":
    style.main(plot, __doc__)
