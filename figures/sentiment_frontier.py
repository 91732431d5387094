"""Figure: the reward-vs-KL frontier of controlled sentiment generation (the DPO paper's Fig. 2, scaled down).

Reads ``results/sentiment_frontier.json`` (``llm.experiments.sentiment_frontier``). One point per evaluation of
every method (DPO at each β, the other catalog losses, RLOO with the gold reward, RLOO with a text reward model
trained on the same pairs ("RM + RLOO"), best-of-n at its analytic KL bound), x = sequence-level KL to the
reference (nats, estimated from the policy's samples), y = mean gold reward of those samples: (a) the gold
sentiment, (b) the gold aggregate of all aspects. One colour per method, one marker per reward variant (which
gold reward labelled the training pairs or drove RL); the reference is the star at KL 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.lines import Line2D

from figures import style

NAME = "sentiment_frontier"
MARKERS = {"scalar": "o", "multi_aspect": "^"}
VARIANT_LABELS = {"scalar": "pairs / RL reward: sentiment only", "multi_aspect": "pairs / RL reward: all aspects"}
PANELS = (("reward/sentiment", "(a) gold sentiment (VADER)"), ("reward/total", "(b) gold aggregate of all aspects"))
OTHER_COLOURS = ("C1", "C4", "C5", "C6", "C8", "C9", "C7")  # no C2: green is RM + RLOO


def method_label(entry: dict[str, Any]) -> str:
    if entry["method"] == "dpo":
        return f"DPO β={entry['beta']:g}"
    if entry["method"] == "rm_rloo":
        return f"RM + RLOO β_KL={entry['beta']:g}"
    if entry["method"] == "rloo":
        return f"RLOO ({entry.get('reward_source', 'gold')} reward) β_KL={entry['beta']:g}"
    beta = "" if entry["beta"] is None else f" β={entry['beta']:g}"
    params = "".join(f" {k}={v:g}" for k, v in entry.get("loss_params", {}).items())
    return f"{entry['method']}{beta}{params}"


def _colours(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """DPO betas on a blue ramp, gold-reward RL on a red ramp, RM + RLOO on a green ramp, the other losses in the
    remaining cycle colours."""
    labels = list(dict.fromkeys(method_label(r) for r in runs))
    dpo = [label for label in labels if label.startswith("DPO")]
    ramp = plt.get_cmap("Blues")
    colours: dict[str, Any] = {label: ramp(0.45 + 0.55 * i / max(1, len(dpo) - 1)) for i, label in enumerate(dpo)}
    rl = [label for label in labels if label.startswith("RLOO")]
    reds = plt.get_cmap("Reds")
    colours.update({label: reds(0.55 + 0.45 * i / max(1, len(rl) - 1)) for i, label in enumerate(rl)})
    reward_model = [label for label in labels if label.startswith("RM + RLOO")]
    greens = plt.get_cmap("Greens")
    colours.update({label: greens(0.55 + 0.45 * i / max(1, len(reward_model) - 1))
                    for i, label in enumerate(reward_model)})
    cycle = iter(OTHER_COLOURS)
    for label in labels:
        if label not in colours:
            colours[label] = next(cycle, "C7")
    return colours


def plot(results_dir: Path, figures_dir: Path) -> list[Path]:
    style.apply()
    results = style.read_results(results_dir, NAME)
    runs = results["runs"]
    colours = _colours(runs)
    reference = results["reference"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    for ax, (key, title) in zip(axes, PANELS):
        for entry in runs:
            points = [p for p in entry["points"] if p["step"] > 0]
            colour = colours[method_label(entry)]
            marker = MARKERS.get(entry["variant"], "s")
            xs = [p["kl"] for p in points]
            ys = [p[key] for p in points]
            ax.plot([reference["kl"], *xs], [reference[key], *ys], color=colour, linewidth=0.6, alpha=0.35)
            ax.scatter(xs, ys, color=colour, marker=marker, s=22, edgecolors="none", alpha=0.9)
        for variant in MARKERS:
            bon = [p for p in results.get("best_of_n", []) if p["variant"] == variant]
            if bon:
                ax.plot([p["kl"] for p in bon], [p[key] for p in bon], color="k", linestyle=":", linewidth=0.8,
                        marker=MARKERS[variant], markersize=4, markerfacecolor="none")
        ax.errorbar([reference["kl"]], [reference[key]], yerr=[2 * reference[f"{key}_se"]], color="k", marker="*",
                    markersize=11, linestyle="none", zorder=5)
        ax.set_xscale("symlog", linthresh=1.0)  # linear below 1 nat, logarithmic above: both ends stay readable
        ax.set_xlim(left=-0.05)
        ax.set_xlabel("sequence-level KL(π ‖ π_ref) (nats, sampled; symlog axis)")
        ax.set_ylabel(f"mean {key.split('/')[1]} of samples")
        ax.set_title(title)
    method_handles = [Line2D([], [], color=c, marker="o", linestyle="-", label=label) for label, c in colours.items()]
    method_handles.append(Line2D([], [], color="k", linestyle=":", marker="o", markerfacecolor="none",
                                 label="best-of-n (KL: log n − (n−1)/n bound)"))
    method_handles.append(Line2D([], [], color="k", marker="*", markersize=10, linestyle="none",
                                 label="reference (± 2 s.e.)"))
    variants = sorted({r["variant"] for r in runs}, key=list(MARKERS).index)
    variant_handles = [Line2D([], [], color="0.3", marker=MARKERS[v], linestyle="none", label=VARIANT_LABELS[v])
                       for v in variants]
    fig.legend(handles=method_handles + variant_handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    return style.finish(fig, figures_dir, NAME, results, fontsize=9, tight_layout=True, title=(
        "Controlled sentiment: gold reward vs KL, one point per evaluation"))


if __name__ == "__main__":
    style.main(plot, __doc__)
