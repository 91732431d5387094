"""Figure: rewards recovered by LP-IRL and MaxEnt IRL on the gridworld and on ObjectWorld.

Reads ``results/reward_recovery.json`` (``classic_rl.experiments.reward_recovery``). One row per testbed: the
true reward, the recovered rewards (each standardized to zero mean and unit deviation, since rewards are
identified only up to shift and scale; EPIC, occupancy L1 and normalized return in the titles), and the
degradation of MaxEnt IRL as the number of sampled demonstrations shrinks.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from figures import style

NAME = "reward_recovery"
MODEL_COLOURS = {"tabular": "C0", "linear": "C2", "mlp": "C3"}
MODEL_LABELS = {"tabular": "tabular", "linear": "linear", "mlp": "MLP"}
_LOG_FLOOR = 1e-8


def _standardized(reward: list[float], size: int) -> np.ndarray:
    table = np.asarray(reward, dtype=float).reshape(size, size)
    spread = table.std()
    return (table - table.mean()) / (spread if spread > 0 else 1.0)


def _run_title(run: dict[str, Any]) -> str:
    if run["algorithm"] == "lp_irl":
        head = "LP-IRL (optimal policy)"
    else:
        model = MODEL_LABELS[run["reward_model"]]
        source = "exact occupancy" if run["data"] == "exact_occupancy" else f"{run['num_demos']} demos"
        head = f"MaxEnt, {model}\n{source}"
    m = run["metrics"]
    return (f"{head}\nEPIC {m['epic']:.3f} · L1 {m['occupancy_l1']:.2g}\n"
            f"norm. return {m['normalized_return']:.3f}")


def _heatmap_runs(results: dict[str, Any], testbed: str) -> list[dict[str, Any]]:
    """The runs drawn as maps: LP-IRL, MaxEnt from exact occupancy, MaxEnt from the highlighted demo count."""
    runs = [r for r in results["runs"] if r["testbed"] == testbed]
    counts = sorted({r["num_demos"] for r in runs if r["data"] == "demonstrations"})
    wanted = results["testbeds"][testbed]["highlight_demos"]
    highlight = min(counts, key=lambda n: abs(math.log(n) - math.log(wanted))) if counts else None
    chosen = [r for r in runs if r["algorithm"] == "lp_irl"]
    chosen += [r for r in runs if r["algorithm"] == "maxent" and r["data"] == "exact_occupancy"]
    chosen += [r for r in runs if r["data"] == "demonstrations" and r["num_demos"] == highlight
               and r["demo_seed"] == min(x["demo_seed"] for x in runs if x["num_demos"] == highlight)]
    return chosen


def _degradation(ax: plt.Axes, results: dict[str, Any], testbed: str) -> None:
    """EPIC and occupancy L1 against the number of demonstrations; exact occupancy at the right end."""
    runs = [r for r in results["runs"] if r["testbed"] == testbed and r["algorithm"] == "maxent"]
    counts = sorted({r["num_demos"] for r in runs if r["data"] == "demonstrations"})
    exact_x = counts[-1] * 4 if counts else 1
    for kind in dict.fromkeys(r["reward_model"] for r in runs):
        colour = MODEL_COLOURS.get(kind, "C7")
        for metric, marker, line in (("epic", "o", "-"), ("occupancy_l1", "s", "--")):
            means, lows, highs = [], [], []
            for n in counts:
                values = [max(r["metrics"][metric], _LOG_FLOOR) for r in runs
                          if r["reward_model"] == kind and r["num_demos"] == n]
                means.append(float(np.mean(values)))
                lows.append(min(values))
                highs.append(max(values))
            yerr = np.array([np.subtract(means, lows), np.subtract(highs, means)])
            ax.errorbar(counts, means, yerr=yerr if len(counts) else None, color=colour, marker=marker,
                        linestyle=line, capsize=2, markersize=4,
                        label=f"{MODEL_LABELS[kind]}: {'EPIC' if metric == 'epic' else 'occupancy L1'}")
            exact = [max(r["metrics"][metric], _LOG_FLOOR) for r in runs
                     if r["reward_model"] == kind and r["data"] == "exact_occupancy"]
            if exact:
                ax.plot([exact_x], exact[:1], marker=marker, color=colour, linestyle="none",
                        markerfacecolor="white", markersize=6)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ticks = [*counts, exact_x]
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(n) for n in counts] + ["exact"])
    ax.minorticks_off()
    ax.set_xlabel("expert demonstrations (exact occupancy at right)")
    ax.set_ylabel("distance to truth (log)")
    repeats = results["config"]["demo_repeats"]
    ax.set_title("MaxEnt IRL vs. amount of data" + (f"\n(mean, min–max over {repeats} draws)" if repeats > 1
                                                     else ""))
    style.legend_outside(ax, fontsize=7)


def _row(subfig: Any, results: dict[str, Any], testbed: str) -> None:
    info = results["testbeds"][testbed]
    size = info["grid_size"]
    runs = _heatmap_runs(results, testbed)
    # Maps, a spacer (room for the colour bar's label), then the degradation panel.
    axes = subfig.subplots(1, len(runs) + 3,
                           gridspec_kw={"width_ratios": [1] * (len(runs) + 1) + [0.35, 1.7]})
    axes[-2].set_visible(False)
    maps = [("true reward", info["true_reward"]), *[(_run_title(r), r["recovered_reward"]) for r in runs]]
    image = None
    for ax, (title, reward) in zip(axes[:-2], maps):
        image = ax.imshow(_standardized(reward, size), cmap="RdBu_r", vmin=-3, vmax=3)
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
    assert image is not None
    subfig.colorbar(image, ax=list(axes[:-2]), fraction=0.02, pad=0.01, label="reward (standardized)")
    _degradation(axes[-1], results, testbed)
    cfg = results["config"][testbed]
    subfig.suptitle(f"{info['mdp']}: {info['num_states']} states, {info['num_actions']} actions, "
                    f"γ={info['discount']}, slip {cfg['slip']}; expert = soft-optimal policy (τ=1); "
                    f"demonstrations of {info['demo_length']} steps", fontsize=10)


def plot(results_dir: Path, out_dir: Path) -> list[Path]:
    """Draw ``out_dir/reward_recovery.{png,pdf}`` from ``results_dir/reward_recovery.json``."""
    style.apply()
    results = style.read_results(results_dir, NAME)
    testbeds = list(results["testbeds"])
    fig = plt.figure(figsize=(19, 4.3 * len(testbeds)), layout="constrained")
    subfigs = fig.subfigures(len(testbeds), 1, squeeze=False)[:, 0]
    for subfig, testbed in zip(subfigs, testbeds):
        _row(subfig, results, testbed)
    cfg = results["config"]
    return style.finish(fig, out_dir, NAME, results, fontsize=10, title=(
        f"Reward recovery. MaxEnt IRL: L-BFGS; on sampled "
        f"demonstrations, implicit-differentiation gradient of the likelihood + L2 {cfg['demo_l2']:g}. "
        f"Titles: EPIC to the true reward, L1 of the soft-optimal occupancy to the expert's, normalized "
        f"return."))


if __name__ == "__main__":
    style.main(plot, __doc__)
