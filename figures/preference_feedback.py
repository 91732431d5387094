"""Figure: RL from preferences against its feedback: B-Pref teachers, query selection, a harder testbed.

Reads ``results/preference_feedback.json`` (``classic_rl.experiments.preference_feedback``). Every panel shows the
expert-normalized true return of the final policy, IQM over seeds with its 95% bootstrap CI, and every seed as a
dot: (a) against the query budget (log scale), one line per B-Pref teacher; (b) per query selection method at one
budget with the oracle teacher; (c) against the query budget on the harder testbed with the oracle teacher, with
termination-aware queries (``harder.termination_queries``) and state-entropy exploration before the first label
(``harder.exploration``) and, in grey, the earlier result that ``preference_feedback.rerun_part`` replaced, each
bar annotated with
the mean number of preferences (labelled, non-tie pairs) and of ties per run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from figures import style

NAME = "preference_feedback"
SELECTION_LABELS = {"uniform": "uniform", "disagreement": "ensemble\ndisagreement", "entropy": "entropy",
                    "diversity": "k-center +\ndisagreement"}


def _harder_rule(part: dict) -> str:
    """How the harder testbed's runs asked their queries and explored before the first label."""
    rule = "termination-aware queries" if part.get("termination_queries") else "queries at every session"
    if part.get("exploration", "none") != "none":
        rule += " + state-entropy exploration"
    return rule


def _error(stats: dict[str, Any]) -> list[float]:
    """``[below, above]`` the IQM for an error bar (0 where the CI is missing)."""
    iqm = stats["iqm"]
    return [max(0.0, iqm - stats["low"]) if np.isfinite(stats["low"]) else 0.0,
            max(0.0, stats["high"] - iqm) if np.isfinite(stats["high"]) else 0.0]


def plot(results_dir: Path, out_dir: Path) -> list[Path]:
    style.apply()
    results = style.read_results(results_dir, NAME)
    cfg, summary, runs = results["config"], results["summary"], results["runs"]
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.9), gridspec_kw={"width_ratios": [1.3, 1.0, 0.8]})

    ax = axes[0]
    teachers = cfg["teachers"]
    for index, teacher in enumerate(teachers):
        per_budget = summary["teachers"][teacher]
        budgets = sorted(int(b) for b in per_budget)  # the JSON's keys are sorted as strings ("16" < "2")
        colour = f"C{index}"
        # a small multiplicative offset per teacher so that the dots of equal budgets do not hide each other
        shift = 1.0 + 0.03 * (index - (len(teachers) - 1) / 2)
        ax.plot([b * shift for b in budgets], [per_budget[str(b)]["iqm"] for b in budgets], "-o", color=colour,
                label=teacher, markersize=4)
        ax.fill_between([b * shift for b in budgets], [per_budget[str(b)]["low"] for b in budgets],
                        [per_budget[str(b)]["high"] for b in budgets], color=colour, alpha=0.06)
        dots = [r for r in runs if r["part"] == "teachers" and r["teacher"] == teacher]
        ax.scatter([r["budget"] * shift for r in dots], [r["normalized_return"] for r in dots], s=8, color=colour,
                   alpha=0.5)
    ax.set_xscale("log")
    ax.set_xticks(cfg["budgets"], [str(b) for b in cfg["budgets"]])
    ax.minorticks_off()
    ax.set_xlabel("queries (log scale)")
    ax.set_ylabel("normalized true return (IQM, 95% CI)")
    # below the axes: the curves fill the whole panel. On CartPole-v1 (reward 1 per step) the myopic teacher's
    # discounted sum orders segments like the plain sum, so its line lies exactly on the oracle's.
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=6, title="B-Pref teacher", fontsize=8,
              columnspacing=0.8)
    ax.set_title(f"(a) {cfg['env_id']}: teachers ({cfg['teacher_selection']} selection)")

    ax = axes[1]
    selections = cfg["selections"]
    for index, selection in enumerate(selections):
        stats = summary["selections"][selection]
        ax.bar(index, stats["iqm"], color=f"C{index}", alpha=0.7)
        ax.errorbar(index, stats["iqm"], yerr=np.array(_error(stats))[:, None], color="black", capsize=4)
        dots = [r["normalized_return"] for r in runs if r["part"] == "selections" and r["selection"] == selection]
        ax.scatter(index + np.linspace(-0.15, 0.15, len(dots)), dots, s=10, color="black", alpha=0.6, zorder=3)
    ax.set_xticks(range(len(selections)), [SELECTION_LABELS.get(s, s) for s in selections])
    ax.set_ylabel("normalized true return")
    ax.set_title(f"(b) {cfg['env_id']}: selection, oracle, {cfg['selection_budget']} queries")

    ax = axes[2]
    harder = cfg["harder"]
    budgets = sorted(int(b) for b in summary["harder"])
    # an earlier result of this part that rerun_part replaced (e.g. before termination-aware queries): drawn beside
    previous = next((r["replaced"] for r in reversed(results.get("reruns", [])) if r["part"] == "harder"), None)
    rule = _harder_rule(harder)
    width = 0.38 if previous is not None else 0.8
    for index, budget in enumerate(budgets):
        shown = [(summary["harder"][str(budget)], [r for r in runs if r["part"] == "harder" and r["budget"] == budget],
                  "C0", rule, index + (width / 2 if previous is not None else 0.0))]
        if previous is not None and str(budget) in previous["summary"]:
            before = _harder_rule(previous["config"])
            shown.insert(0, (previous["summary"][str(budget)], [r for r in previous["runs"] if r["budget"] == budget],
                             "C7", f"{before} (earlier run)", index - width / 2))
        for stats, dots, colour, label, x in shown:
            ax.bar(x, stats["iqm"], width=width, color=colour, alpha=0.7, label=label if index == 0 else None)
            ax.errorbar(x, stats["iqm"], yerr=np.array(_error(stats))[:, None], color="black", capsize=3)
            ax.scatter(x + np.linspace(-0.1, 0.1, len(dots)), [r["normalized_return"] for r in dots], s=10,
                       color="black", alpha=0.6, zorder=3)
            if stats.get("ties") is not None:  # how many of the oracle's answers carry a preference
                ax.annotate(f"{stats['labelled_pairs']:.0f} pref.\n{stats['ties']:.0f} ties", (x, 0.08), ha="center",
                            fontsize=5.5)
    ax.set_xticks(range(len(budgets)), [f"{b} queries" for b in budgets])
    ax.set_ylabel("normalized true return")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), fontsize=7, ncol=1)
    ax.set_title(f"(c) {harder['env_id']}: oracle, {harder['total_env_steps']} env steps")

    for ax in axes:
        ax.axhline(1.0, color="grey", linewidth=0.8, linestyle=":")
    return style.finish(fig, out_dir, NAME, results, fontsize=9, tight_layout=True, title=(
        f"RL from preferences (PPO inner loop): {cfg['total_env_steps']} env steps, {cfg['seeds']} seeds "
        f"(harder testbed {harder['seeds']})"))


if __name__ == "__main__":
    style.main(plot, __doc__)
