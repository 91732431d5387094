"""Figure: RL from preferences under label noise, plain Bradley-Terry against the noise-robust objectives.

Reads ``results/preference_noise.json`` (``classic_rl.experiments.preference_noise``): the expert-normalized true
return of the final policy (IQM over seeds with its 95% bootstrap CI, and every seed as a dot) against the mistake
teacher's flip probability ε, one line per loss.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from figures import style

NAME = "preference_noise"
LABELS = {"bradley_terry": "Bradley-Terry", "robust_bradley_terry": "robust BT (known flip rate)",
          "smoothed_bradley_terry": "label-smoothed BT"}


def plot(results_dir: Path, out_dir: Path) -> list[Path]:
    style.apply()
    results = style.read_results(results_dir, NAME)
    cfg = results["config"]
    fig, ax = plt.subplots(figsize=(5.5, 4.0), layout="constrained")
    for index, loss in enumerate(cfg["losses"]):
        per_rate = results["summary"][loss]
        rates = [float(rate) for rate in per_rate]
        colour = f"C{index}"
        iqm = [per_rate[rate]["iqm"] for rate in per_rate]
        ax.plot(rates, iqm, "-o", color=colour, label=LABELS.get(loss, loss))
        ax.fill_between(rates, [per_rate[r]["low"] for r in per_rate], [per_rate[r]["high"] for r in per_rate],
                        color=colour, alpha=0.15)
        runs = [r for r in results["runs"] if r["loss"] == loss]
        offset = (index - (len(cfg["losses"]) - 1) / 2) * 0.006
        ax.scatter([r["mistake_rate"] + offset for r in runs], [r["normalized_return"] for r in runs], s=10,
                   color=colour, alpha=0.6)
    ax.set_xlabel("mistake teacher's flip probability ε")
    ax.set_ylabel("normalized true return (IQM, 95% CI)")
    fig.legend(loc="outside lower center", ncol=2, fontsize=8)
    ax.set_title(f"{cfg['env_id']}: {cfg['query_budget']} queries, {cfg['total_env_steps']} env steps, "
                 f"{cfg['seeds']} seeds\n{style.scale_and_seed(results)}", fontsize=9)
    return style.save(fig, out_dir, NAME, results)


if __name__ == "__main__":
    style.main(plot, __doc__)
