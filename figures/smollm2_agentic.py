"""Figure: SmolLM2-135M-Instruct acting in TextArena's games — zero-shot, plans of each reward imitated, and RLOO.

Reads ``results/smollm2_agentic.json`` (:mod:`llm.experiments.smollm2_agentic`). Top row, one panel per game of the
plans route: the greedy success rate of fresh adapters fine-tuned on the search plans of the true, demonstration-
learned, preference-learned and sparse rewards (bars: IQM over seeds with its 95% bootstrap CI; points: seeds), the
fraction of starts each reward's search planned (open diamonds) and the zero-shot greedy success (dashed line); the
title says whether each learned reward beats the sparse one with intervals apart. Bottom left: zero-shot success,
malformed and invalid rates per game, greedy and sampled. Bottom right: the RL diagnostic, the true return of the
RLOO rollouts per update for each reward (mean over seeds).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from figures import style

NAME = "smollm2_agentic"
LABELS = {"true": "true", "learned": "demos", "pref": "prefs", "sparse": "sparse"}
COLOURS = {"true": "C2", "learned": "C0", "pref": "C9", "sparse": "C1"}


def _plans_panel(ax: plt.Axes, game: str, record: dict[str, Any]) -> None:
    summary = record["summary"][game]
    conditions = [c for c in LABELS if c in summary]
    for x, condition in enumerate(conditions):
        stats = summary[condition]
        ci = stats["success_iqm"]
        ax.bar(x, ci["iqm"], color=COLOURS[condition], alpha=0.8, edgecolor="k", linewidth=0.3,
               yerr=[[ci["iqm"] - ci["low"]], [ci["high"] - ci["iqm"]]], capsize=3)
        values = stats["success_per_seed"]
        ax.scatter(x + np.linspace(-0.15, 0.15, len(values)), values, s=10, color="k", zorder=3)
        if stats["search_success_mean"] is not None:
            ax.scatter(x, stats["search_success_mean"], marker="D", facecolor="none", edgecolor="k", s=30, zorder=4,
                       label="starts planned" if x == 0 else None)
    zero = record["zero_shot"].get(game, {}).get("greedy")
    if zero is not None:
        ax.axhline(zero["success_rate"], color="0.4", ls="--", lw=1, label="zero-shot")
    ax.set_xticks(range(len(conditions)), [LABELS[c] for c in conditions], fontsize=8)
    ax.set_ylim(-0.02, 1.05)
    goals = record["goals"].get(game, {})
    marks = ", ".join(f"{key.split('_beats_')[0]}>{'sparse'}: {'yes' if check['met'] else 'no'}"
                      for key, check in goals.items())
    ax.set_title(f"{game}\n{marks}", fontsize=8)


def _zero_shot_panel(ax: plt.Axes, record: dict[str, Any]) -> None:
    games = list(record["zero_shot"])
    metrics = (("success_rate", "success"), ("malformed_rate", "malformed"), ("invalid_action_rate", "invalid"))
    width = 0.13
    for m, (key, label) in enumerate(metrics):
        for d, decoding in enumerate(("greedy", "sampled")):
            values = [record["zero_shot"][g].get(decoding, {}).get(key, np.nan) for g in games]
            offset = (2 * m + d - 2.5) * width
            ax.bar(np.arange(len(games)) + offset, values, width, color=f"C{m + 3}", alpha=1.0 if d == 0 else 0.45,
                   label=f"{label} ({decoding})")
    ax.set_xticks(range(len(games)), games, rotation=20, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("rate")
    ax.set_title("zero-shot\n(greedy: one episode per start)", fontsize=9)
    # below the axes: where the base model answers nothing parseable, the malformed bars fill them
    ax.legend(fontsize=6, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=3)


def _rl_panel(ax: plt.Axes, record: dict[str, Any]) -> None:
    for condition in ("true", "learned", "sparse"):
        curves = [entry[condition]["curve"] for entry in record["rl"].values() if condition in entry]
        if not curves or not curves[0]:
            continue
        length = min(len(c) for c in curves)
        mean = np.mean([[row["true_return"] for row in c[:length]] for c in curves], axis=0)
        ax.plot(np.arange(1, length + 1), mean, "o-", color=COLOURS[condition], label=LABELS[condition], ms=3)
    ax.set_xlabel("RLOO update")
    ax.set_ylabel("true return of the rollouts")
    ax.set_title(f"RL diagnostic\n{record['config']['rl_game']}, {len(record['rl'])} seed(s)", fontsize=9)
    ax.legend(fontsize=7, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3)


def plot(results_dir: Path, out_dir: Path) -> list[Path]:
    """Draw ``out_dir/smollm2_agentic.{png,pdf}`` from ``results_dir/smollm2_agentic.json``."""
    style.apply()
    record = style.read_results(results_dir, NAME)
    games = list(record["summary"])
    columns = max(2, len(games))
    fig = plt.figure(figsize=(2.8 * columns, 6.4), layout="constrained")
    grid = fig.add_gridspec(2, columns)
    for column, game in enumerate(games):
        ax = fig.add_subplot(grid[0, column])
        _plans_panel(ax, game, record)
        if column == 0:
            ax.set_ylabel("greedy success (IQM, 95% CI)")
            # below the panel, not on it: in a game where every condition succeeds the bars fill the axes
            ax.legend(fontsize=6, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    half = columns // 2
    _zero_shot_panel(fig.add_subplot(grid[1, :half]), record)
    if record["rl"]:
        _rl_panel(fig.add_subplot(grid[1, half:]), record)
    return style.finish(fig, out_dir, NAME, record, fontsize=9, title=(
        "SmolLM2-135M-Instruct in TextArena's games: plans of each reward imitated"))


if __name__ == "__main__":
    style.main(plot, __doc__)
