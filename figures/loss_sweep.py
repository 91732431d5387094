"""Figure: final metrics of the loss sweep on CartPole-v1 (contrastive preference learning with every pairwise
catalog loss, against reward-model-then-PPO from the same preferences).

Reads ``results/loss_sweep.json`` (``classic_rl.experiments.loss_sweep``). Left: expert-normalized true return
per loss, IQM over seeds with a bootstrap 95% CI (filled dot: stochastic policy; open diamond: deterministic),
the baseline as a vertical line with its CI shaded, PPO on the true reward with the same budget dashed. Right:
reward accuracy on held-out pairs (the loss's implicit rewards; the baseline's reward model), same conventions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from figures import style

NAME = "loss_sweep"
BASELINE = "reward_model_ppo"
CONTROL = "ppo_true_reward"


def _interval(entry: dict[str, float]) -> tuple[float, float, float]:
    return entry["iqm"], entry["iqm"] - entry["low"], entry["high"] - entry["iqm"]


def _panel(ax: plt.Axes, summary: dict[str, Any], order: list[str], metric: str, second: str | None) -> None:
    y = np.arange(len(order))
    centre, below, above = np.array([_interval(summary[name][metric]) for name in order]).T
    ax.errorbar(centre, y, xerr=[below, above], fmt="o", color="C0", capsize=2, markersize=5,
                label="CPL, stochastic" if second else "CPL (implicit reward)")
    if second:
        values = [summary[name][second]["iqm"] for name in order]
        ax.plot(values, y, "D", markerfacecolor="none", color="C0", markersize=5, label="CPL, deterministic")
    if BASELINE in summary:
        base = summary[BASELINE][metric]
        ax.axvline(base["iqm"], color="C3", linewidth=1.5,
                   label="reward model → PPO" + (", stochastic" if second else " (BT reward)"))
        ax.axvspan(base["low"], base["high"], color="C3", alpha=0.12, linewidth=0)
    if CONTROL in summary and np.isfinite(summary[CONTROL][metric]["iqm"]):
        ax.axvline(summary[CONTROL][metric]["iqm"], color="0.3", linestyle="--", linewidth=1.2,
                   label="PPO on the true reward (same budget), stochastic")
    ax.set_yticks(y)
    ax.set_yticklabels(order)


def plot(results_dir: Path, out_dir: Path) -> list[Path]:
    """Draw ``out_dir/loss_sweep.{png,pdf}`` from ``results_dir/loss_sweep.json``."""
    style.apply()
    results = style.read_results(results_dir, NAME)
    summary = results["summary"]
    metric = "normalized_return_stochastic"
    order = sorted((name for name in summary if name not in (BASELINE, CONTROL)),
                   key=lambda n: -summary[n][metric]["iqm"])
    cfg = results["config"]
    fig, axes = plt.subplots(1, 2, figsize=(15, 0.32 * len(order) + 2.2), sharey=True, layout="constrained",
                             gridspec_kw={"width_ratios": [1.4, 1]})
    _panel(axes[0], summary, order, metric, "normalized_return_deterministic")
    axes[0].invert_yaxis()  # best first (the axes share y: invert once)
    axes[0].axvline(1.0, color="0.4", linestyle=":", linewidth=1)
    axes[0].axvline(0.0, color="0.4", linestyle=":", linewidth=1)
    axes[0].set_xlabel("expert-normalized true return (0 random, 1 expert)")
    axes[0].set_title("Policy quality on the true reward")
    style.legend_outside(axes[0], fontsize=8)
    _panel(axes[1], summary, order, "reward_accuracy", None)
    axes[1].axvline(0.5, color="0.4", linestyle=":", linewidth=1)
    axes[1].set_xlabel("reward accuracy on held-out pairs")
    axes[1].set_title("Preference fit (held out)")
    style.legend_outside(axes[1], fontsize=8)
    seeds = cfg["seeds"]
    ref = results["reference_returns"]
    pairs = results["data"][str(results["provenance"]["seed"])]["train_pairs"]
    return style.finish(fig, out_dir, NAME, results, fontsize=9, title=(
        f"Loss sweep on {cfg['env_id']}: CPL (catalog loss on segment log-probs, reference = initial "
        f"policy) vs. Bradley-Terry reward model → PPO ({cfg['baseline_steps']:,} steps)\n"
        f"{seeds} seed{'s' if seeds > 1 else ''}, IQM with bootstrap 95% CI; "
        f"segments of {cfg['segment_length']} steps, {pairs} "
        f"train pairs/seed; R_random {ref['random']:.1f}, R_expert {ref['expert']:.1f}"))


if __name__ == "__main__":
    style.main(plot, __doc__)
