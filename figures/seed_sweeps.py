"""Figure: the single-seed experiments' headline numbers over seeds (one panel per experiment).

Reads ``results/seeds_<experiment>.json`` (``irlb.experiments.seed_sweeps``): per metric, every seed's value (dots)
and the IQM with its 95% bootstrap CI (bar and whisker). All metrics drawn lie in [0, 1] (EPIC distance, return
normalized by the expert, agreement and flip rates, accuracy, sentiment).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from figures import style

NAME = "seed_sweeps"
# Per experiment: (dotted metric path, label) of the metrics drawn, in order.
PANELS: dict[str, list[tuple[str, str]]] = {
    "reward_recovery": [
        ("runs.1.metrics.epic", "grid, exact: EPIC"), ("runs.3.metrics.epic", "grid, 100 demos: EPIC"),
        ("runs.0.metrics.epic", "grid, LP-IRL: EPIC"), ("runs.6.metrics.epic", "OW MLP, exact: EPIC"),
        ("runs.5.metrics.epic", "OW linear, exact: EPIC"), ("runs.10.metrics.epic", "OW MLP, 100 demos: EPIC"),
        ("runs.3.metrics.normalized_return", "grid, 100 demos: return"),
        ("runs.10.metrics.normalized_return", "OW MLP, 100 demos: return")],
    "feedback_consistency": [
        ("table.mistake.flip_rate", "mistake: flip rate"), ("table.stochastic.flip_rate", "stochastic: flip rate"),
        ("table.mistake.intransitive_rate", "mistake: intransitive"),
        ("table.stochastic.intransitive_rate", "stochastic: intransitive"),
        ("group_agreement.teachers.fleiss_kappa", "Fleiss κ, teachers"),
        ("group_agreement.population.fleiss_kappa", "Fleiss κ, population"),
        ("group_agreement.all.fleiss_kappa", "Fleiss κ, everyone"),
        ("table.reward_model.accuracy", "reward model: accuracy")],
    "sentiment_frontier": [
        ("reference.reward/sentiment", "reference"), ("runs.2.summary.best_sentiment.reward/sentiment", "DPO β 0.5"),
        ("runs.9.summary.best_sentiment.reward/sentiment", "RLOO, gold reward"),
        ("runs.11.summary.best_sentiment.reward/sentiment", "RLOO, reward model"),
        ("best_of_n.3.reward/sentiment", "best of 16"),
        ("reward_models.scalar.held_out_accuracy", "RM held-out accuracy")],
}
TITLES = {"reward_recovery": "reward recovery", "feedback_consistency": "feedback consistency",
          "sentiment_frontier": "controlled sentiment (gold sentiment; RM accuracy)"}


def plot(results_dir: Path, out_dir: Path) -> list[Path]:
    """Draw ``out_dir/seed_sweeps.{png,pdf}`` from ``results_dir/seeds_<experiment>.json``."""
    style.apply()
    record = style.read_results(results_dir, NAME)
    experiments = [name for name in PANELS if f"seeds_{name}.json" in record["files"]]
    fig, axes = plt.subplots(len(experiments), 1, figsize=(9, 2.6 * len(experiments)), layout="constrained",
                             squeeze=False)
    sweeps = []
    for ax, experiment in zip(axes[:, 0], experiments):
        sweep = style.read_results(results_dir, f"seeds_{experiment}")
        sweeps.append(sweep)
        (point,) = sweep["grid_points"]
        by_path = {sweep["metric"]: point, **point.get("extra_metrics", {})}
        # a metric absent at this scale (e.g. best-of-16 at tiny scale) has no values: no bar
        rows = [(path, label) for path, label in PANELS[experiment] if by_path.get(path, {}).get("values")]
        for x, (path, _) in enumerate(rows):
            stats = by_path[path]
            values = np.asarray(stats["values"], dtype=float)
            ax.bar(x, stats["iqm"], width=0.6, color="C0", alpha=0.35)
            ax.errorbar(x, stats["iqm"], yerr=[[stats["iqm"] - stats["low"]], [stats["high"] - stats["iqm"]]],
                        color="C0", capsize=4, linewidth=1.2)
            jitter = np.linspace(-0.18, 0.18, len(values)) if len(values) > 1 else np.zeros(1)
            ax.scatter(x + jitter, values, s=14, color="black", zorder=3)
        ax.set_xticks(range(len(rows)), [label for _, label in rows], rotation=20, ha="right")
        lowest = min(min(by_path[path]["values"]) for path, _ in rows)
        ax.set_ylim(min(0.0, lowest) - 0.05, 1.05)
        ax.set_title(f"{TITLES[experiment]}: {point['n']} seeds (dots), IQM and 95% CI (bars)")
    return style.finish(fig, out_dir, NAME, [record, *sweeps], fontsize=10, title=(
        "Single-seed experiments over seeds"))


if __name__ == "__main__":
    style.main(plot, __doc__)
