"""Figure: our bilevel ML-IRL against imitation's AIRL, GAIL and BC on gymnasium testbeds.

Reads ``benchmarks/results/irl_vs_imitation.json`` (``benchmarks/irl_vs_imitation.py``). Top row, one panel per
testbed: expert-normalized true return against env steps of the inner / generator RL loop, the interquartile
mean (IQM) over seeds with a 95% bootstrap confidence band (``irl_bilevel.statistics.iqm_with_ci``), BC (no env
steps) as a horizontal line, PPO on the true reward (the reference) dashed, the budget's half marked (the goal
compares ours there with theirs at the budget). Bottom: reward transfer — the normalized return of a fresh PPO
trained from scratch on each method's frozen learned reward, with PPO on the true reward after as many steps
dashed — and reward quality — the EPIC distance of each learned reward to the true one — IQM over seeds with the
CI as error bars and the seeds as dots.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from figures import style
from irl_bilevel.statistics import iqm_with_ci

NAME = "irl_vs_imitation"
LABELS = {"ours": "ours (bilevel ML-IRL)", "airl": "AIRL (imitation)", "gail": "GAIL (imitation)",
          "bc": "BC (imitation)", "true_reward": "PPO on the true reward"}
COLOURS = {"ours": "C0", "airl": "C3", "gail": "C2", "bc": "C7", "true_reward": "k"}
CURVE_METHODS = ("ours", "airl", "gail")


def _runs(results: dict[str, Any], testbed: str, method: str) -> list[dict[str, Any]]:
    cells = results.get("cells", {})
    return [cells[key] for seed in results["protocol"]["seeds"]
            if (key := f"{testbed}/{method}/{seed}") in cells]


def curve_statistics(runs: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(steps, iqm, low, high)`` over the runs' normalized curves at every evaluated env-step count."""
    steps = sorted({int(s) for run in runs for s in run["env_steps"]})
    rows = []
    for step in steps:
        values = [run["normalized_return"][run["env_steps"].index(step)] for run in runs if step in run["env_steps"]]
        statistics = iqm_with_ci(values)
        rows.append((statistics["iqm"], statistics["low"], statistics["high"]))
    table = np.asarray(rows, dtype=float).reshape(-1, 3)
    return np.asarray(steps, dtype=float), table[:, 0], table[:, 1], table[:, 2]


def _curves(ax: plt.Axes, results: dict[str, Any], testbed: str) -> None:
    budget = results["protocol"]["testbeds"][testbed]["budget"]
    for method in CURVE_METHODS:
        runs = _runs(results, testbed, method)
        if not runs:
            continue
        steps, centre, low, high = curve_statistics(runs)
        ax.plot(steps, centre, color=COLOURS[method], label=f"{LABELS[method]} (n={len(runs)})", marker=".")
        ax.fill_between(steps, low, high, color=COLOURS[method], alpha=0.2, linewidth=0)
    bc = _runs(results, testbed, "bc")
    if bc:
        level = iqm_with_ci([run["final_normalized_return"] for run in bc])["iqm"]
        ax.axhline(level, color=COLOURS["bc"], linestyle="--", label=LABELS["bc"])
    reference = _runs(results, testbed, "true_reward")
    if reference:
        steps, centre, _, _ = curve_statistics(reference)
        ax.plot(steps, centre, color=COLOURS["true_reward"], linestyle="--", linewidth=1.0,
                label=f"{LABELS['true_reward']} (n={len(reference)})")
    ax.axhline(results["protocol"]["target"], color="k", linewidth=0.6, linestyle=":")
    ax.axvline(budget / 2, color="k", linewidth=0.6, linestyle=":")
    ax.set_title(testbed)
    ax.set_xlabel("env steps (inner / generator RL)")
    ax.set_xlim(0, budget * 1.03)


def _seed_bars(ax: plt.Axes, results: dict[str, Any], testbeds: list[str], key: str) -> None:
    """Per testbed and method: the IQM over seeds of ``key`` as a bar, its 95% CI as error bars, the seeds as dots."""
    width = 0.8 / len(CURVE_METHODS)
    for i, method in enumerate(CURVE_METHODS):
        for j, testbed in enumerate(testbeds):
            values = [run[key] for run in _runs(results, testbed, method) if run.get(key) is not None]
            if not values:
                continue
            statistics = iqm_with_ci(values)
            x = j + (i - (len(CURVE_METHODS) - 1) / 2) * width
            error = [[statistics["iqm"] - statistics["low"]], [statistics["high"] - statistics["iqm"]]]
            ax.bar(x, statistics["iqm"], width, color=COLOURS[method], yerr=error, capsize=3,
                   label=LABELS[method] if j == 0 else None)
            ax.scatter(np.full(len(values), x), values, color="k", s=8, zorder=3)
    ax.axhline(0.0, color="k", linewidth=0.6)


def _transfer(ax: plt.Axes, results: dict[str, Any], testbeds: list[str]) -> None:
    _seed_bars(ax, results, testbeds, "transfer_normalized_return")
    for j, testbed in enumerate(testbeds):  # what PPO reaches on the true reward in as many steps
        reference = results.get("summary", {}).get(testbed, {}).get("true_reward_at_transfer_budget")
        if reference and reference["n"]:
            ax.hlines(reference["iqm"], j - 0.45, j + 0.45, color=COLOURS["true_reward"], linestyle="--",
                      linewidth=1.0, label=f"{LABELS['true_reward']}, same steps" if j == 0 else "_nolegend_")
    ax.axhline(results["protocol"]["target"], color="k", linewidth=0.6, linestyle=":")
    budgets = [results["protocol"]["testbeds"][t]["transfer_budget"] for t in testbeds]
    ax.set_xticks(range(len(testbeds)), [f"{t}\n({b // 1000}k steps)" for t, b in zip(testbeds, budgets,
                                                                                     strict=True)])
    ax.set_ylabel("normalized return")
    ax.set_title("reward transfer: fresh PPO on the frozen learned reward\n(IQM, 95% CI, seeds)", fontsize=9)
    style.legend_outside(ax, fontsize=7)


def _epic(ax: plt.Axes, results: dict[str, Any], testbeds: list[str]) -> None:
    _seed_bars(ax, results, testbeds, "epic_distance")
    ax.set_xticks(range(len(testbeds)), testbeds)
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel("EPIC distance to the true reward")
    ax.set_title("reward quality: EPIC on expert + random transitions (lower is better)", fontsize=9)


def plot(results_dir: Path, figures_dir: Path) -> list[Path]:
    style.apply()
    results = style.read_results(results_dir, NAME)
    testbeds = list(results["protocol"]["testbeds"])
    columns = len(testbeds)
    fig = plt.figure(figsize=(max(4.0 * columns, 6.0) + 2.5, 7.0), layout="constrained")
    grid = fig.add_gridspec(2, columns, height_ratios=[1.0, 0.9])
    curves = []
    for j, testbed in enumerate(testbeds):
        ax = fig.add_subplot(grid[0, j])
        curves.append(ax)
        _curves(ax, results, testbed)
        if j == 0:
            ax.set_ylabel("normalized true return (IQM, 95% CI)")
    style.shared_legend(curves, fontsize=7)
    has_epic = any("epic_distance" in cell for cell in results.get("cells", {}).values())
    split = max(1, columns // 2) if has_epic and columns > 1 else columns
    _transfer(fig.add_subplot(grid[1, :split]), results, testbeds)
    if has_epic and split < columns:  # results written before the benchmark measured EPIC have no such panel
        _epic(fig.add_subplot(grid[1, split:]), results, testbeds)
    seeds = len(results["protocol"]["seeds"])
    demonstrations = results["protocol"]["demonstrations"]
    return style.finish(fig, figures_dir, NAME, results, fontsize=10, title=(
        f"IRL vs imitation: {demonstrations} demonstrations, {seeds} seed{'s' * (seeds > 1)}"))


if __name__ == "__main__":
    style.main(plot, __doc__, results_dir=Path("benchmarks/results"))
