"""Figure: error, time and autograd memory of the hypergradient methods against the inner horizon ``K``.

Reads ``results/hypergradient_accuracy.json`` (``classic_rl.experiments.hypergradient_accuracy``). One row per
problem (Garnet MDP, reward model, discounted or finite horizon); columns: relative error against the exact
reference (implicit differentiation with a direct solve) on a log scale, median wall time, bytes saved on the
autograd tape, and the error of the sample-based MaxEnt gradient against the number of learner rollouts.
Lines are medians over the random MDPs, bands their min–max.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D
from matplotlib.typing import LineStyleType

from figures import style

NAME = "hypergradient_accuracy"
_LOG_FLOOR = 1e-17

# name -> (colour, line style, marker)
K_STYLES: dict[str, tuple[str, LineStyleType, str]] = {
    "unrolled_torchopt_warm": ("C0", "-", "o"),
    "unrolled_higher_warm": ("C0", ":", "x"),
    "unrolled_torchopt_cold": ("C1", "-", "o"),
    "unrolled_higher_cold": ("C1", ":", "x"),
    "implicit_neumann": ("C2", "-", "s"),
    "implicit_normal_cg_k": ("C3", "-", "^"),
}
FIXED_STYLES = {
    "implicit_normal_cg": ("C3", (0, (5, 2))),
    "implicit_direct": ("k", (0, (1, 1))),
    "maxent_exact": ("C4", (0, (3, 1, 1, 1))),
    "finite_differences": ("C7", (0, (6, 3))),
}


def _stack(mdps: list[dict[str, Any]], name: str, field: str) -> np.ndarray:
    """``[num_mdps, len(ks)]`` of a K-indexed field, or ``[num_mdps]`` of a fixed method's field."""
    return np.array([m["methods"][name][field] for m in mdps], dtype=float)


def _band(ax: plt.Axes, x: list[int], values: np.ndarray, colour: str, line: Any, marker: str | None,
          label: str | None = None) -> None:
    median = np.median(values, axis=0)
    ax.plot(x, median, color=colour, linestyle=line, marker=marker, markersize=4, label=label)
    if values.shape[0] > 1:
        ax.fill_between(x, values.min(axis=0), values.max(axis=0), color=colour, alpha=0.12, linewidth=0)


def _hline(ax: plt.Axes, value: float, name: str, label: str | None = None) -> None:
    colour, line = FIXED_STYLES[name]
    ax.axhline(value, color=colour, linestyle=line, linewidth=1.3, label=label)


def _row(axes: np.ndarray, case: dict[str, Any], labels: dict[str, str]) -> None:
    mdps = case["mdps"]
    ks = mdps[0]["methods"]["unrolled_torchopt_warm"]["ks"]
    err_ax, time_ax, mem_ax, sample_ax = axes
    finite = case["case"] == "finite_horizon"

    # Relative error against the exact reference.
    for name, (colour, line, marker) in K_STYLES.items():
        _band(err_ax, ks, np.maximum(_stack(mdps, name, "rel_error_exact"), _LOG_FLOOR), colour, line, marker)
    _hline(err_ax, max(float(np.median(_stack(mdps, "implicit_normal_cg", "rel_error_exact"))), _LOG_FLOOR),
           "implicit_normal_cg")
    _hline(err_ax, max(float(np.median(_stack(mdps, "maxent_exact", "rel_error_exact"))), _LOG_FLOOR),
           "maxent_exact")
    fd_error = float(np.median([m["finite_differences"]["rel_error_exact"] for m in mdps]))
    _hline(err_ax, max(fd_error, _LOG_FLOOR), "finite_differences")
    k_grid = np.array(ks, dtype=float)
    if not finite:
        gamma = mdps[0]["rates"]["gamma"]
        rate = float(np.median([m["rates"]["gamma_lambda_2"] for m in mdps]))
        err_ax.plot(k_grid, gamma**k_grid, color="0.4", linewidth=2.5, alpha=0.5, label=f"γ^K, γ = {gamma:g}")
        err_ax.plot(k_grid, rate**k_grid, color="0.4", linewidth=1, linestyle="--",
                    label=f"(γ|λ₂|)^K, γ|λ₂| = {rate:.2f} (median)")
        fitted = [m["methods"]["unrolled_higher_cold"].get("fitted_rate") for m in mdps]
        fitted = [f for f in fitted if f is not None]
        if fitted:
            err_ax.plot([], [], linestyle="none", label=f"fitted rate, from zeros: {np.median(fitted):.2f}")
        style.legend_outside(err_ax, fontsize=7)
    else:
        horizon = case["horizon"]
        err_ax.axvline(horizon, color="0.4", linewidth=1, linestyle="--")
        err_ax.text(horizon * 1.05, 1e-3, f"K = H = {horizon}", fontsize=8, color="0.3")
    err_ax.set_yscale("log")
    err_ax.set_ylim(_LOG_FLOOR / 3, 10)
    err_ax.set_ylabel("relative error ‖g − g*‖/‖g*‖")

    # Time.
    for name, (colour, line, marker) in K_STYLES.items():
        _band(time_ax, ks, 1e3 * _stack(mdps, name, "seconds"), colour, line, marker)
    for name in ("implicit_normal_cg", "implicit_direct", "maxent_exact"):
        _hline(time_ax, 1e3 * float(np.median(_stack(mdps, name, "seconds"))), name)
    _hline(time_ax, 1e3 * float(np.median([m["finite_differences"]["seconds"] for m in mdps])),
           "finite_differences")
    time_ax.set_yscale("log")
    time_ax.set_ylabel("wall time per hypergradient [ms]")

    # Autograd tape.
    for name, (colour, line, marker) in K_STYLES.items():
        _band(mem_ax, ks, _stack(mdps, name, "tape_bytes") / 1024, colour, line, marker)
    for name in ("implicit_normal_cg", "implicit_direct", "maxent_exact"):
        _hline(mem_ax, float(np.median(_stack(mdps, name, "tape_bytes"))) / 1024, name)
    mem_ax.text(0.03, 0.97, "the four unrolled variants coincide;\nimplicit methods: constant in K",
                transform=mem_ax.transAxes, fontsize=8, va="top")
    mem_ax.set_yscale("log")
    mem_ax.set_ylabel("autograd tape [KiB]\n(saved-tensor bytes before final backward)")

    for ax in (err_ax, time_ax, mem_ax):
        ax.set_xscale("log", base=2)
        ax.set_xticks(ks)
        ax.set_xticklabels([str(k) for k in ks])
        ax.minorticks_off()
        ax.set_xlabel("inner steps / linear-solver iterations K")

    # Sample-based MaxEnt.
    counts = mdps[0]["maxent_sampled"]["num_samples"]
    per_mdp = np.array([[np.mean(e) for e in m["maxent_sampled"]["rel_error_exact"]] for m in mdps])
    spread = np.array([[np.std(e) for e in m["maxent_sampled"]["rel_error_exact"]] for m in mdps])
    median = np.median(per_mdp, axis=0)
    repeats = len(mdps[0]["maxent_sampled"]["rel_error_exact"][0])
    sample_ax.errorbar(counts, median, yerr=np.median(spread, axis=0), color="C4", marker="o", capsize=2,
                       label=f"MaxEnt, sampled rollouts (mean ± sd of {repeats})")
    counts_arr = np.array(counts, dtype=float)
    sample_ax.plot(counts_arr, median[0] * np.sqrt(counts_arr[0] / counts_arr), color="0.4", linestyle="--",
                   label="∝ 1/√n")
    exact_error = float(np.median(_stack(mdps, "maxent_exact", "rel_error_exact")))
    sample_ax.plot([], [], linestyle="none", label=f"(exact occupancy: {exact_error:.0e}, first panel)")
    sample_ax.set_xscale("log")
    sample_ax.set_yscale("log")
    sample_ax.set_xlabel(f"learner rollouts n ({mdps[0]['maxent_sampled']['rollout_length']} steps each)")
    sample_ax.set_ylabel("relative error")
    style.legend_outside(sample_ax, fontsize=7)


def _case_title(case: dict[str, Any]) -> str:
    mdps = case["mdps"]
    model = "linear reward" if case["reward_model"] == "linear" else f"MLP reward {case['hidden_sizes']}"
    timing = "γ = {:g}".format(case["discount"]) if case["horizon"] is None else f"horizon H = {case['horizon']}"
    return (f"Garnet S={case['num_states']}, A={case['num_actions']}, branching {case['branching']}, {timing}; "
            f"{model}, {mdps[0]['num_parameters']} parameters; {len(mdps)} random MDP(s); "
            f"finite differences vs exact: {np.median([m['finite_differences']['rel_error_exact'] for m in mdps]):.1e}"
            f" ({mdps[0]['finite_differences']['black_box_solves']} inner solves)")


def _legend_handles(labels: dict[str, str]) -> list[Line2D]:
    handles = [Line2D([], [], color=c, linestyle=ls, marker=m, label=labels[n]) for n, (c, ls, m) in K_STYLES.items()]
    handles += [Line2D([], [], color=c, linestyle=ls, label=labels.get(n, "finite differences (central)"))
                for n, (c, ls) in FIXED_STYLES.items()]
    return handles


def plot(results_dir: Path, out_dir: Path) -> list[Path]:
    """Draw ``out_dir/hypergradient_accuracy.{png,pdf}`` from ``results_dir/hypergradient_accuracy.json``."""
    style.apply()
    results = style.read_results(results_dir, NAME)
    cases = results["cases"]
    labels = dict(results["methods"])
    fig = plt.figure(figsize=(24, 4.6 * len(cases) + 1.2), layout="constrained")
    # One row of panels per case, then a strip of its own for the methods' legend (below every axes).
    subfigs = fig.subfigures(len(cases) + 1, 1, squeeze=False, height_ratios=[4.6] * len(cases) + [1.0])[:, 0]
    for subfig, case in zip(subfigs, cases):
        _row(subfig.subplots(1, 4), case, labels)
        subfig.suptitle(_case_title(case), fontsize=10, fontweight="bold")
    subfigs[-1].legend(handles=_legend_handles(labels), loc="center", ncol=5, fontsize=9)
    cfg = results["config"]
    return style.finish(fig, out_dir, NAME, results, fontsize=10, title=(
        f"Hypergradient accuracy, float64 (times: median of "
        f"{cfg['repeats']} calls; bands: min–max over MDPs). Errors against implicit differentiation "
        f"with a direct solve; all methods share one converged, warm-started inner solve."))


if __name__ == "__main__":
    style.main(plot, __doc__)
