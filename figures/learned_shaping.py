"""Figure: learned reward shaping on a sparse gridworld, and exact vs sampled task-return hypergradients.

Reads ``results/learned_shaping.json`` (``classic_rl.experiments.learned_shaping``). Panels: (a) the true task
return of the inner learner after k soft value-iteration sweeps on each shaped reward (the budget the outer
loop optimized for marked); (b) the true return at the budget over outer steps; (c, d) the hand-designed and
learned potentials; (e) relative error of the sampled (policy-gradient) hypergradient to the exact one vs the
number of rollouts; (f) the learned aggregator weights over the candidate signals.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from figures import style

NAME = "learned_shaping"
LABELS = {
    "none": "no shaping",
    "hand_potential": "hand potential (−distance)",
    "fixed_candidates": "fixed equal weights on candidates",
    "learned_weights": "learned weights on candidates",
    "learned_potential": "learned potential Φθ",
    "free_bonus": "free (s,a) bonus + L2",
}
COLOURS = {"none": "C7", "hand_potential": "C1", "fixed_candidates": "C4", "learned_weights": "C2",
           "learned_potential": "C0", "free_bonus": "C3"}


def _label(method: dict[str, Any]) -> str:
    preserved = ("optimal policy kept" if method["optimal_policy_preserved"]
                 else f"optimal action changed in {method['optimal_actions_changed']} states")
    return f"{LABELS.get(method['method'], method['method'])}: J(π_K)={method['return_at_budget']:.3f}; {preserved}"


def _curves(ax: plt.Axes, results: dict[str, Any]) -> None:
    budget = results["config"]["budget"]
    for method in results["methods"]:
        curve = np.asarray(method["curve"])
        ax.plot(np.arange(len(curve)), curve, color=COLOURS.get(method["method"], "C9"), label=_label(method),
                linestyle="--" if method["method"] == "free_bonus" else "-")
    ax.axvline(budget, color="k", linewidth=0.8, linestyle=":")
    ax.axhline(results["mdp"]["optimal_return"], color="k", linewidth=0.8, linestyle="--")
    ax.annotate(f"budget K={budget}", (budget, results["mdp"]["optimal_return"]), xytext=(4, -12),
                textcoords="offset points", fontsize=8)
    ax.annotate("optimal (greedy) return", (len(results["methods"][0]["curve"]) - 1,
                                           results["mdp"]["optimal_return"]),
                xytext=(-4, 4), textcoords="offset points", fontsize=8, ha="right")
    ax.set_xlabel("inner soft value-iteration sweeps from Q = 0")
    ax.set_ylabel("true (sparse) task return J(π_k)")
    ax.set_title("(a) learning speed under each shaping")
    # A strip of its own below every panel: the labels carry J(π_K) and the exact check, too long for a side legend.
    ax.figure.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=3, fontsize=8,
                     title="(a) shaping: J(π_K) at the budget; greedy optimal policy of the task reward")


def _outer_progress(ax: plt.Axes, results: dict[str, Any]) -> None:
    for method in results["methods"]:
        history = method["history"]
        if not history:
            continue
        steps = [row["step"] for row in history]
        # The logged loss is −J(π_K) (plus the L2 penalty for the free bonus; J itself is in the legend).
        ax.plot(steps, [-row["loss"] for row in history], color=COLOURS.get(method["method"], "C9"),
                label=LABELS.get(method["method"], method["method"]))
    ax.axhline(results["mdp"]["optimal_return"], color="k", linewidth=0.8, linestyle="--")
    ax.set_xlabel("outer step (Adam, exact unrolled hypergradient)")
    ax.set_ylabel("−outer loss = J(π_K) (− L2 penalty)")
    ax.set_title("(b) outer objective over outer steps")
    style.legend_outside(ax, fontsize=7)


def _weights(ax: plt.Axes, results: dict[str, Any]) -> None:
    learned = next(m for m in results["methods"] if m["method"] == "learned_weights")
    history = [row for row in learned["history"] if "weights" in row]
    weights = np.asarray([row["weights"] for row in history])
    steps = [row["step"] for row in history]
    for index, name in enumerate(results["candidates"]):
        ax.plot(steps, weights[:, index], label=name.replace("_", " "))
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("outer step")
    ax.set_ylabel("simplex weight")
    ax.set_title("(f) learned aggregator weights\n(candidates: potential-based signals)")
    style.legend_outside(ax, fontsize=8)


def _potentials(fig: Any, axes: list[plt.Axes], results: dict[str, Any]) -> None:
    size = results["config"]["size"]
    for ax, name, letter in zip(axes, ("hand_potential", "learned_potential"), "cd"):
        method = next(m for m in results["methods"] if m["method"] == name)
        grid = np.asarray(method["potential"][: size * size]).reshape(size, size)
        image = ax.imshow(grid, cmap="viridis")
        ax.set_title(f"({letter}) {LABELS[name]}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
        ax.text(size - 1, 0, "G", ha="center", va="center", color="w", fontsize=10, weight="bold")
        ax.text(0, size - 1, "S", ha="center", va="center", color="w", fontsize=10, weight="bold")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03)


def _accuracy(ax: plt.Axes, results: dict[str, Any]) -> None:
    accuracy = results["hypergradient_accuracy"]
    summary = accuracy["summary"]
    counts = np.asarray([row["num_trajectories"] for row in summary], dtype=float)
    means = np.asarray([row["mean_relative_error"] for row in summary])
    rows = accuracy["rows"]
    ax.scatter([r["num_trajectories"] for r in rows], [r["relative_error"] for r in rows], color="C0", s=12,
               alpha=0.5, label="one sampling seed")
    ax.plot(counts, means, color="C0", marker="o", label="mean")
    ax.plot(counts, means[0] * np.sqrt(counts[0] / counts), color="C7", linestyle=":", label="∝ 1/√n")
    ax.axhline(0.05, color="C3", linestyle="--", linewidth=0.8, label="5%")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("rollouts n of the inner policy")
    ax.set_ylabel("‖ĝ − g‖ / ‖g‖")
    fd, weights = accuracy["finite_difference_relative_error"], accuracy["exact_weights_relative_error"]
    ax.set_title(f"(e) sampled (REINFORCE × exact ∂log π/∂θ) vs exact\nhypergradient at the hand potential "
                 f"(FD vs exact: {fd:.1e}; exact weights: {weights:.1e})")
    style.legend_outside(ax, fontsize=8)


def plot(results_dir: Path, out_dir: Path) -> list[Path]:
    """Draw ``out_dir/learned_shaping.{png,pdf}`` from ``results_dir/learned_shaping.json``."""
    style.apply()
    results = style.read_results(results_dir, NAME)
    fig = plt.figure(figsize=(20, 10.5), layout="constrained")
    grid = fig.add_gridspec(2, 4, width_ratios=[1.5, 1.2, 0.6, 0.6])
    _curves(fig.add_subplot(grid[0, 0]), results)
    _outer_progress(fig.add_subplot(grid[0, 1]), results)
    _weights(fig.add_subplot(grid[1, 1]), results)
    _potentials(fig, [fig.add_subplot(grid[0, 2]), fig.add_subplot(grid[0, 3])], results)
    _accuracy(fig.add_subplot(grid[1, 0]), results)
    cfg, mdp = results["config"], results["mdp"]
    notes = fig.add_subplot(grid[1, 2:])
    notes.axis("off")
    lines = [f"{LABELS[m['method']]}:\n  greedy optimal actions changed in {m['optimal_actions_changed']} states;"
             f"\n  soft-optimal return gap {m['soft_bias']['return_gap']:.2g}" for m in results["methods"]]
    notes.text(0.0, 1.0, "Exact check (hard value iteration, float64)\nvs the task reward's optimal policy:\n\n"
               + "\n".join(lines)
               + "\n\nReturn gap: J of the soft-optimal policy (τ) of the task\nreward minus that of the shaped "
               "reward (< 0: the\nshaped soft-optimal policy earns more task return).\nCurves in (a) converge to the "
               "soft-optimal return,\nbelow the greedy optimum (dashed).", va="top", fontsize=8, family="monospace")
    return style.finish(fig, out_dir, NAME, results, fontsize=10, title=(
        f"Learned shaping on {mdp['name']} ({mdp['num_states']} states incl. absorbing end, "
        f"γ={mdp['discount']}, slip {cfg['slip']}, step cost {cfg['step_cost']}); inner learner: "
        f"K={cfg['budget']} soft-VI sweeps (τ={cfg['temperature']}) from Q=0; outer loss −J(π_K)."))


if __name__ == "__main__":
    style.main(plot, __doc__)
