"""Figure: the reward–KL frontier of controlled sentiment on SmolLM2-135M-Instruct, over seeds.

Reads ``results/smollm2_frontier.json`` (:mod:`llm.experiments.smollm2_frontier`). Left: every method's evaluations
(gold sentiment against sequence KL to the reference), one faint line per seed, and the final point's IQM over seeds
with its 95% bootstrap CI in both directions; best-of-n at its analytic KL. Right: the final gold sentiment per
method, every seed (dots) and the IQM with its CI, in the order of the IQM.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from figures import style

NAME = "smollm2_frontier"


def _label(method: str) -> str:
    if method.startswith("dpo-"):
        return f"DPO β {method.removeprefix('dpo-')}"
    if method.startswith("best_of_"):
        return f"best of {method.removeprefix('best_of_')}"
    return {"rloo": "RLOO, gold", "rm_rloo": "RM + RLOO", "ipo": "IPO", "simpo": "SimPO",
            "reference": "reference"}.get(method, method)


def plot(results_dir: Path, out_dir: Path) -> list[Path]:
    """Draw ``out_dir/smollm2_frontier.{png,pdf}`` from ``results_dir/smollm2_frontier.json``."""
    style.apply()
    record = style.read_results(results_dir, NAME)
    table = record["summary"]["methods"]
    trained = [m for m in table if m != "reference" and not m.startswith("best_of_")]
    colors = {method: plt.get_cmap("tab10")(i % 10) for i, method in enumerate(trained)}
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained",
                                      gridspec_kw={"width_ratios": [1.4, 1]})
    for method in trained:
        for entry in record["seeds"].values():
            run = entry.get("runs", {}).get(method)
            if run:
                points = run["points"]
                left.plot([p["kl"] for p in points], [p["reward/sentiment"] for p in points], color=colors[method],
                          alpha=0.25, lw=0.8)
        stats = table[method]
        left.errorbar(stats["kl"]["iqm"], stats["sentiment"]["iqm"],
                      xerr=[[stats["kl"]["iqm"] - stats["kl"]["low"]], [stats["kl"]["high"] - stats["kl"]["iqm"]]],
                      yerr=[[stats["sentiment"]["iqm"] - stats["sentiment"]["low"]],
                            [stats["sentiment"]["high"] - stats["sentiment"]["iqm"]]],
                      fmt="o", color=colors[method], capsize=3, label=_label(method))
    best = sorted((m for m in table if m.startswith("best_of_")), key=lambda m: int(m.removeprefix("best_of_")))
    if best:
        left.errorbar([table[m]["kl"]["iqm"] for m in best], [table[m]["sentiment"]["iqm"] for m in best],
                      yerr=[[table[m]["sentiment"]["iqm"] - table[m]["sentiment"]["low"] for m in best],
                            [table[m]["sentiment"]["high"] - table[m]["sentiment"]["iqm"] for m in best]],
                      fmt="s--", color="0.4", capsize=3, label="best of n (analytic KL)")
    if "reference" in table:
        reference = table["reference"]["sentiment"]
        left.axhspan(reference["low"], reference["high"], color="0.85", zorder=0, label="reference (CI)")
    left.set_xlabel("sequence KL to the reference (nats)")
    left.set_ylabel("gold sentiment (VADER)")
    left.set_title(f"reward–KL frontier, {len(record['seeds'])} seeds")
    fig.legend(loc="outside lower center", ncol=5, frameon=False)

    order = [row["method"] for row in record["summary"]["order"]]
    for x, method in enumerate(order):
        values = np.asarray([p["reward/sentiment"] for p in _final_points(record, method)], dtype=float)
        stats = table[method]["sentiment"]
        color = colors.get(method, "0.4")
        right.scatter(np.full(len(values), x) + np.linspace(-0.15, 0.15, len(values)), values, s=10, color=color,
                      alpha=0.6)
        right.errorbar(x, stats["iqm"], yerr=[[stats["iqm"] - stats["low"]], [stats["high"] - stats["iqm"]]],
                       fmt="_", color=color, capsize=5, markersize=14)
    right.set_xticks(range(len(order)), [_label(m) for m in order], rotation=45, ha="right")
    right.set_ylabel("final gold sentiment")
    right.set_title("IQM and 95% CI over seeds")
    return style.save(fig, out_dir, NAME, record)


def _final_points(record, method: str) -> list[dict]:
    from llm.experiments.smollm2_frontier import final_points

    return final_points(record, method)


if __name__ == "__main__":
    style.main(plot, __doc__)
