"""Figure: AI feedback from SmolLM2-135M-Instruct as a judge, against a trained reward model and simulated teachers.

Reads ``results/smollm2_ai_feedback.json`` (:mod:`llm.experiments.smollm2_ai_feedback`). Left: accuracy against
the gold labels of every evaluator on the overall question. Middle: the judge per question, accuracy and position
bias (the fraction of verdicts that follow the answer slot). Right: the gold sentiment of DPO policies trained on each
labelling, at a matched KL, with the reference's. Every bar is the IQM over seeds with its 95% bootstrap CI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from figures import style
from llm.experiments.smollm2_ai_feedback import LABEL_SOURCES, QUESTIONS

TEACHERS = ("oracle", "stochastic", "mistake", "skip", "equal", "myopic")  # B-Pref's order
NAME = "smollm2_ai_feedback"
SOURCE_LABELS = {"gold": "gold labels", "judge": "judge labels", "reward_model": "reward-model labels",
                 "mistake_at_judge_rate": "mistake teacher\nat the judge's ε"}


def _bar(ax, x: float, stats: dict[str, Any], color, label: str | None = None, width: float = 0.7) -> None:
    ax.bar(x, stats["iqm"], width=width, color=color, alpha=0.8, label=label)
    ax.errorbar(x, stats["iqm"], yerr=[[stats["iqm"] - stats["low"]], [stats["high"] - stats["iqm"]]], fmt="none",
                color="black", capsize=3, lw=1)


def plot(results_dir: Path, out_dir: Path) -> list[Path]:
    """Draw ``out_dir/smollm2_ai_feedback.{png,pdf}`` from ``results_dir/smollm2_ai_feedback.json``."""
    style.apply()
    record = style.read_results(results_dir, NAME)
    summary = record["summary"]
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(13, 4.2), layout="constrained",
                                              gridspec_kw={"width_ratios": [1.3, 1, 1]})
    present = [name for name in summary["overall"] if "accuracy" in summary["overall"][name]]
    evaluators = [name for name in ("judge", "reward_model", *(f"teacher_{t}" for t in TEACHERS)) if name in present]
    for x, name in enumerate(evaluators):
        color = "tab:red" if name == "judge" else "tab:purple" if name == "reward_model" else "tab:gray"
        _bar(left, x, summary["overall"][name]["accuracy"], color)
    left.set_xticks(range(len(evaluators)), [n.removeprefix("teacher_") for n in evaluators], rotation=45,
                    ha="right")
    left.axhline(0.5, color="black", lw=0.8, ls=":")
    left.set_ylim(0, 1.05)
    left.set_ylabel("accuracy against gold (overall)")
    left.set_title("evaluators: judge, reward model, teachers")

    questions = [q for q in QUESTIONS if q in summary["judge_per_question"]]
    for x, question in enumerate(questions):
        stats = summary["judge_per_question"][question]
        _bar(middle, x - 0.2, stats["accuracy"], "tab:red", "accuracy" if x == 0 else None, width=0.4)
        _bar(middle, x + 0.2, stats["position_bias"], "tab:orange", "position bias" if x == 0 else None, width=0.4)
    middle.set_xticks(range(len(questions)), questions, rotation=45, ha="right")
    middle.axhline(0.5, color="black", lw=0.8, ls=":")
    middle.set_ylim(0, 1.05)
    middle.set_title("the judge, per question")
    middle.legend(loc="upper center", bbox_to_anchor=(0.5, -0.32), ncol=2, frameon=False)

    sources = [source for source in LABEL_SOURCES if source in summary["dpo"]]
    for x, source in enumerate(sources):
        stats = summary["dpo"][source]["matched_sentiment"]
        right.errorbar(x, stats["iqm"], yerr=[[stats["iqm"] - stats["low"]], [stats["high"] - stats["iqm"]]],
                       fmt="o", color="tab:blue", capsize=4)
    reference = summary["reference_sentiment"]
    right.axhspan(reference["low"], reference["high"], color="0.85", zorder=0)
    right.axhline(reference["iqm"], color="0.4", lw=1, label="reference")
    right.set_xticks(range(len(sources)), [SOURCE_LABELS.get(s, s) for s in sources], rotation=45, ha="right")
    right.set_ylabel("gold sentiment")
    right.set_title(f"DPO at matched KL {summary['matched_kl']['iqm']:.2f} nats")
    right.legend(loc="upper center", bbox_to_anchor=(0.5, -0.45), frameon=False)
    return style.save(fig, out_dir, NAME, record)


if __name__ == "__main__":
    style.main(plot, __doc__)
