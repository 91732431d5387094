"""`irlb paper`: the paper's numbers and tables, written as LaTeX from the result files.

Every number the paper prints is a macro in ``numbers.tex`` or a cell of a generated table, and every one of
them is read from a result file here; nothing is typed by hand. A result file that is missing is skipped with
a warning, so its macros stay undefined and the paper fails to build instead of showing stale numbers.

Sources: one result file per experiment in ``irlb.reproduce.EXPERIMENTS`` (``results/<name>.json``, read from
the registry at run time; experiments without a dedicated section below still get their scale, seed and
run-time macros) and the benchmark files under ``benchmarks/results/``.
"""

from __future__ import annotations

import json
import math
import re
import sys
import unicodedata
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

_DIGITS = ["Zero", "One", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight", "Nine"]


def macro_name(*parts: Any) -> str:
    """Letters-only CamelCase macro name from keys.

    ``("mce", "speedup_dense", "S1024")`` → ``MceSpeedupDenseSOneZeroTwoFour``. Words are split at anything
    that is not a letter or digit and at lower-to-upper changes; digits are spelled out one by one (LaTeX
    control words are letters only)."""
    words: list[str] = []
    for part in parts:
        text = str(part)
        text = re.sub(r"([a-z])([A-Z])", r"\1 \2", text)
        text = re.sub(r"(\d)", r" \1 ", text)
        for word in re.split(r"[^A-Za-z0-9]+", text):
            if not word:
                continue
            if word.isdigit():
                words.extend(_DIGITS[int(d)] for d in word)
            else:
                words.append(word[0].upper() + word[1:])
    name = "".join(words)
    if not name or not name.isalpha() or not name[0].isupper():
        raise ValueError(f"cannot make a LaTeX macro name from {parts!r}")
    return name


def format_number(value: float | int | None, digits: int = 2, scientific_below: float = 1e-2,
                  scientific_above: float = 1e5) -> str:
    """A number as LaTeX: integers as they are, others to ``digits`` significant digits (3 from 100 up),
    small or large ones as ``4.7\\times10^{-7}``; always safe in text and in math (``\\ensuremath``)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise ValueError("no value")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}".replace(",", "{,}") if abs(value) >= 10000 else str(value)
    if math.isinf(value):
        return r"\ensuremath{\infty}" if value > 0 else r"\ensuremath{-\infty}"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude < scientific_below or magnitude >= scientific_above:
        mantissa, exponent = f"{value:.{digits - 1}e}".split("e")
        return rf"\ensuremath{{{mantissa}\times10^{{{int(exponent)}}}}}"
    if magnitude >= 100:
        return f"{value:.0f}"
    decimals = max(digits - 1 - math.floor(math.log10(magnitude)), 0)
    text = f"{value:.{decimals}f}"
    return rf"\ensuremath{{{text}}}" if text.startswith("-") else text


def format_fixed(value: float, decimals: int = 2) -> str:
    """Fixed decimals (for quantities in [0, 1] such as accuracies, κ, normalized returns)."""
    if value is None or math.isnan(value):
        return "--"
    text = f"{value:.{decimals}f}"
    return rf"\ensuremath{{{text}}}" if text.startswith("-") else text


_UNICODE = {"–": "--", "—": "---", "−": r"\ensuremath{-}", "½": r"\ensuremath{\tfrac12}", "≤": r"\ensuremath{\le}",
            "≥": r"\ensuremath{\ge}", "×": r"\ensuremath{\times}", "β": r"\ensuremath{\beta}",
            "ε": r"\ensuremath{\varepsilon}", "λ": r"\ensuremath{\lambda}", "’": "'", "“": "``", "”": "''"}
_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
            "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def escape(text: str) -> str:
    """Plain text as LaTeX (special characters escaped, common Unicode symbols mapped)."""
    out = []
    for char in str(text):
        if char in _SPECIAL:
            out.append(_SPECIAL[char])
        elif char in _UNICODE:
            out.append(_UNICODE[char])
        elif ord(char) < 128:
            out.append(char)
        else:
            out.append(unicodedata.normalize("NFKD", char).encode("ascii", "ignore").decode() or "?")
    return "".join(out)


def _tt(name: str) -> str:
    return rf"\texttt{{{escape(name)}}}"


class Macros:
    """Collects ``name → LaTeX`` with the file each came from; a name defined twice is an error."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.sources: dict[str, str] = {}
        self.source = ""

    def add(self, name: str, value: str) -> None:
        if name in self.values:
            raise ValueError(f"macro \\{name} defined twice ({self.sources[name]} and {self.source})")
        self.values[name] = value
        self.sources[name] = self.source

    def number(self, parts: Iterable[Any], value: Any, **options: Any) -> None:
        self.add(macro_name(*parts), format_number(value, **options))

    def fixed(self, parts: Iterable[Any], value: float, decimals: int = 2) -> None:
        self.add(macro_name(*parts), format_fixed(value, decimals))

    def text(self, parts: Iterable[Any], value: str) -> None:
        self.add(macro_name(*parts), escape(value))

    def render(self) -> str:
        lines = ["% Generated by `irlb paper` from the result files named below; do not edit.", ""]
        current = None
        for name, value in self.values.items():
            if self.sources[name] != current:
                current = self.sources[name]
                lines.append(f"% from {current}")
            lines.append(f"\\newcommand{{\\{name}}}{{{value}}}")
        return "\n".join(lines) + "\n"


def _table(column_spec: str, header: list[str], rows: list[list[str]], source: str,
           groups: list[int] | None = None) -> str:
    """A booktabs tabular (no float: the paper wraps it), with the file it came from in a comment."""
    lines = [f"% Generated by `irlb paper` from {source}; do not edit.", rf"\begin{{tabular}}{{{column_spec}}}",
             r"\toprule", " & ".join(header) + r" \\", r"\midrule"]
    for index, row in enumerate(rows):
        if groups and index in groups and index:
            lines.append(r"\midrule")
        lines.append(" & ".join(row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------------
# Generic macros every experiment in the registry gets: scale, seed(s), wall-clock seconds.


def _generic(name: str, data: dict[str, Any], macros: Macros) -> None:
    prefix = macro_name(name)
    if "scale" in data:
        macros.text([prefix, "scale"], str(data["scale"]))
    seed = (data.get("provenance") or {}).get("seed")
    if seed is not None:
        macros.number([prefix, "seed"], int(seed))
    config = data.get("config") or {}
    seeds = config.get("seeds")
    if isinstance(seeds, int):
        macros.number([prefix, "num seeds"], seeds)
    if isinstance(data.get("seconds"), (int, float)):
        macros.number([prefix, "seconds"], float(data["seconds"]))


# --------------------------------------------------------------------------------------------------------------
# results/reward_recovery.json


def _run_label(run: dict[str, Any]) -> tuple[str, str]:
    if run["algorithm"] == "lp_irl":
        return "LP-IRL", "optimal policy"
    data = {"exact_occupancy": "exact occupancy", "demonstrations": f"{run['num_demos']} demonstrations"}
    return f"MaxEnt, {run['reward_model']}", data.get(run["data"], run["data"])


def reward_recovery(data: dict[str, Any], macros: Macros, source: str) -> dict[str, str]:
    testbeds = data["testbeds"]
    rows: list[list[str]] = []
    groups: list[int] = []
    grouped: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for run in data["runs"]:
        key = (run["testbed"], run["algorithm"], run["reward_model"], run["data"], run["num_demos"])
        grouped.setdefault(key, []).append(run)
    previous = None
    for (testbed, algorithm, model, kind, demos), runs in grouped.items():
        if testbed != previous:
            groups.append(len(rows))
            previous = testbed
            size = testbeds[testbed].get("grid_size")
            macros.number(["rr", testbed, "size"], int(size))
            macros.number(["rr", testbed, "states"], int(testbeds[testbed]["num_states"]))
        metrics = {m: sum(r["metrics"][m] for r in runs) / len(runs)
                   for m in ("occupancy_l1", "epic", "normalized_return")}
        parts = ["rr", testbed, "lp" if algorithm == "lp_irl" else model,
                 {"exact_occupancy": "exact", "demonstrations": "demos", "optimal_policy": ""}.get(kind, kind),
                 demos or ""]
        macros.number([*parts, "occupancy L one"], metrics["occupancy_l1"])
        macros.number([*parts, "epic"], metrics["epic"])
        macros.fixed([*parts, "return"], metrics["normalized_return"], 3)
        method, setting = _run_label(runs[0])
        size = testbeds[testbed].get("grid_size")
        rows.append([escape(testbed) + (rf" ${size}\times{size}$" if size else ""),
                     escape(method), escape(setting), format_number(metrics["occupancy_l1"]),
                     format_number(metrics["epic"]), format_fixed(metrics["normalized_return"], 3)])
    # Scale-independent names for the demonstration count the figure highlights (closest to highlight_demos).
    for testbed, info in testbeds.items():
        counts = sorted({r["num_demos"] for r in data["runs"] if r["testbed"] == testbed and r["num_demos"]})
        if not counts:
            continue
        wanted = info.get("highlight_demos", counts[0])
        highlight = min(counts, key=lambda n: abs(math.log(n) - math.log(wanted)))
        macros.number(["rr", testbed, "highlight demos"], int(highlight))
        for (bed, _algorithm, model, kind, demos), runs in grouped.items():
            if bed == testbed and kind == "demonstrations" and demos == highlight:
                for metric in ("epic", "occupancy_l1"):
                    value = sum(r["metrics"][metric] for r in runs) / len(runs)
                    macros.number(["rr", testbed, model, "highlight", metric], value)
    macros.number(["rr", "demo repeats"], int(data["config"].get("demo_repeats", 1)))
    macros.number(["rr", "max steps"], int(data["config"]["max_steps"]))
    header = ["testbed", "method", "data", r"occ.\ $L_1$", "EPIC", "norm.\\ return"]
    return {"reward_recovery": _table("lllrrr", header, rows, source, groups)}


# --------------------------------------------------------------------------------------------------------------
# results/hypergradient_accuracy.json

_EXACT_METHODS = ("maxent_exact", "implicit_direct", "implicit_normal_cg")


def hypergradient_accuracy(data: dict[str, Any], macros: Macros, source: str) -> dict[str, str]:
    config = data["config"]
    macros.number(["hg", "states"], int(config["num_states"]))
    macros.number(["hg", "actions"], int(config["num_actions"]))
    macros.number(["hg", "features"], int(config["num_features"]))
    macros.number(["hg", "discount"], float(config["discount"]))
    macros.number(["hg", "num mdps"], int(config["num_mdps"]))
    macros.number(["hg", "horizon"], int(config["finite_horizon"]["horizon"]))
    macros.number(["hg", "horizon states"], int(config["finite_horizon"]["num_states"]))
    macros.number(["hg", "fd epsilon"], float(config["fd_epsilon"]))
    labels = data["methods"]
    by_case: dict[str, dict[str, Any]] = {}
    for case in data["cases"]:
        key = "horizon" if case["case"] == "finite_horizon" else case["reward_model"]
        by_case[key] = case
    fd_max: dict[str, float] = {}
    exact_vs_exact: dict[str, float] = {}
    for key, case in by_case.items():
        mdps = case["mdps"]
        fd_max[key] = max(m["methods"][name]["rel_error_fd"] for m in mdps for name in _EXACT_METHODS)
        exact_vs_exact[key] = max(m["methods"][name]["rel_error_exact"] for m in mdps for name in _EXACT_METHODS)
        macros.number(["hg", key, "max rel error fd"], fd_max[key])
        macros.number(["hg", key, "max rel error exact"], exact_vs_exact[key])
        macros.number(["hg", key, "parameters"], int(mdps[0]["num_parameters"]))
    macros.number(["hg max rel error exact"], max(exact_vs_exact.values()))
    linear = by_case["linear"]["mdps"]
    ks = linear[0]["methods"]["unrolled_torchopt_cold"]["ks"]
    for k in (1, 8, 16):
        worst = max(m["methods"]["unrolled_torchopt_cold"]["rel_error_exact"][ks.index(k)] for m in linear)
        macros.number(["hg unrolled error K", k], worst)
    first = [m["methods"]["unrolled_torchopt_cold"]["first_k_at_round_off"] for m in linear]
    if all(f is not None for f in first):
        macros.number(["hg unrolled round off K"], int(max(first)))
    rates = [m["methods"]["unrolled_torchopt_cold"]["fitted_rate"] for m in linear]
    macros.number(["hg unrolled rate"], sum(rates) / len(rates))
    same = max(abs(a - b) for m in linear for a, b in zip(m["methods"]["unrolled_torchopt_cold"]["rel_error_exact"],
                                                           m["methods"]["unrolled_higher_cold"]["rel_error_exact"]))
    macros.number(["hg torchopt higher difference"], same)
    # Table: per method, the worst relative error against finite differences per case (K-methods at K max).
    rows = []
    for name, label in labels.items():
        cells = [escape(label)]
        for key in ("linear", "mlp", "horizon"):
            case = by_case.get(key)
            if case is None:
                cells.append("--")
                continue
            values = []
            for m in case["mdps"]:
                method = m["methods"][name]
                error = method["rel_error_exact"]
                values.append(error if not isinstance(error, list) else error[-1])
            cells.append(format_number(max(values)))
        rounds = [m["methods"][name].get("first_k_at_round_off") for m in linear]
        cells.append(str(max(rounds)) if labels and all(isinstance(r, int) for r in rounds) else "--")
        rows.append(cells)
    header = ["method", "linear", "MLP", "finite horizon", r"$K$ at round-off"]
    return {"hypergradient_accuracy": _table("lrrrr", header, rows, source)}


# --------------------------------------------------------------------------------------------------------------
# results/loss_sweep.json


def loss_sweep(data: dict[str, Any], macros: Macros, source: str) -> dict[str, str]:
    config, summary = data["config"], data["summary"]
    macros.text(["ls env"], config["env_id"])
    macros.number(["ls seeds"], int(config["seeds"]))
    macros.number(["ls pairs"], int(next(iter(data["data"].values()))["train_pairs"]))
    macros.number(["ls held out pairs"], int(next(iter(data["data"].values()))["held_out_pairs"]))
    macros.number(["ls segment length"], int(config["segment_length"]))
    macros.number(["ls ppo steps"], int(data["budgets"]["baseline_ppo_env_steps"]))
    macros.number(["ls expert steps"], int(data["budgets"]["expert_env_steps"]))
    macros.number(["ls gradient steps"], int(data["budgets"]["cpl_gradient_steps"]))
    macros.number(["ls num losses"], len(data["losses"]))
    # The headline is the sampled (stochastic) policy, as in the README and the figure; the greedy policy's
    # return is the second column.
    metric = "normalized_return_stochastic"
    rows = []
    names = list(data["losses"]) + [n for n in ("reward_model_ppo", "ppo_true_reward") if n in summary]
    for name in names:
        entry = summary[name]
        value = entry[metric]
        macros.fixed(["ls", name, "iqm"], value["iqm"])
        macros.fixed(["ls", name, "low"], value["low"])
        macros.fixed(["ls", name, "high"], value["high"])
        accuracy = entry["reward_accuracy"]
        label = {"reward_model_ppo": "BT reward model + PPO", "ppo_true_reward": "PPO on the true reward"}.get(name)
        rows.append([escape(label) if label else _tt(name),
                     f"{format_fixed(value['iqm'])} [{format_fixed(value['low'])}, {format_fixed(value['high'])}]",
                     format_fixed(entry["normalized_return_deterministic"]["iqm"]),
                     format_fixed(accuracy["iqm"]) if accuracy["n"] else "--"])
    # Scale-independent summaries: the best losses, those within the reward-model baseline, those that fail.
    ranked = sorted(data["losses"], key=lambda name: -summary[name][metric]["iqm"])
    best = summary[ranked[0]][metric]["iqm"]
    top = [name for name in ranked if summary[name][metric]["iqm"] >= best - 0.005]
    macros.text(["ls best losses"], ", ".join(top))
    macros.fixed(["ls best iqm"], best)
    macros.number(["ls num best"], len(top))
    if "reward_model_ppo" in summary:
        baseline = summary["reward_model_ppo"][metric]["iqm"]
        macros.number(["ls num at least baseline"],
                      sum(1 for name in data["losses"] if summary[name][metric]["iqm"] >= baseline))
    failing = [name for name in ranked if summary[name][metric]["iqm"] < 0.5]
    macros.text(["ls failing losses"], ", ".join(failing) if failing else "none")
    macros.number(["ls num failing"], len(failing))
    header = ["method", "return, IQM [95\\% CI]", "greedy", "held-out acc."]
    return {"loss_sweep": _table("lccc", header, rows, source, [len(data["losses"])])}


# --------------------------------------------------------------------------------------------------------------
# results/feedback_consistency.json


def feedback_consistency(data: dict[str, Any], macros: Macros, source: str) -> dict[str, str]:
    setting, table = data["setting"], data["table"]
    macros.number(["fc queries"], int(setting["num_queries"]))
    macros.number(["fc grid size"], int(data["config"]["grid_size"]))
    macros.number(["fc annotators"], int(data["config"]["num_annotators"]))
    macros.number(["fc ai members"], int(setting["ai_evaluator"]["members"]))
    macros.number(["fc ai train queries"], int(setting["ai_evaluator"]["train_queries"]))
    for teacher in ("mistake", "skip", "equal"):
        macros.number(["fc", teacher, "rate"], float(setting["teachers"][teacher][teacher]))
    macros.number(["fc myopic gamma"], float(setting["teachers"]["myopic"]["gamma"]))
    macros.number(["fc stochastic beta"], float(setting["teachers"]["stochastic"]["beta"]))
    for name, row in table.items():
        macros.fixed(["fc", name, "flip"], row["flip_rate"], 3)
        macros.fixed(["fc", name, "accuracy"], row["accuracy"])
        macros.fixed(["fc", name, "intransitive"], row["intransitive_rate"], 3)
        macros.fixed(["fc", name, "kappa"], row["cohen_kappa_strict_truth"])
        macros.fixed(["fc", name, "tau"], row["kendall_tau"])
    for group, values in data["group_agreement"].items():
        macros.fixed(["fc", group, "fleiss"], values["fleiss_kappa"])
        macros.fixed(["fc", group, "alpha"], values["krippendorff_alpha_nominal"])
        macros.number(["fc", group, "raters"], len(values["raters"]))
    intransitive = [name for name, row in table.items() if row["intransitive_rate"] > 0]
    macros.text(["fc intransitive labellers"], " and ".join(intransitive) if intransitive else "none")
    macros.number(["fc num intransitive labellers"], len(intransitive))
    ordered: list[str] = []
    groups: list[int] = []
    order = sorted(data["groups"], key=lambda group: ["teachers", "population", "ai", group].index(group))
    for members in (data["groups"][group] for group in order):
        present = [name for name in members if name in table and name not in ordered]
        if present:
            groups.append(len(ordered))
            ordered += present
    if len(ordered) < len(table):
        groups.append(len(ordered))
        ordered += [name for name in table if name not in ordered]
    rows = []
    for name in ordered:
        row = table[name]
        rows.append([escape(name.replace("_", " ")), format_fixed(row["accuracy"]),
                     format_fixed(row["cohen_kappa_strict_truth"]), format_fixed(row["kendall_tau"]),
                     format_fixed(row["flip_rate"], 3), format_fixed(row["intransitive_rate"], 3),
                     format_fixed(row["tie_rate"]), format_fixed(row["answered_rate"])])
    header = ["labeller", "accuracy", r"$\kappa$ (truth)", r"Kendall $\tau$", "flip", "intrans.", "ties",
              "answered"]
    return {"feedback_consistency": _table("lrrrrrrr", header, rows, source, groups)}


# --------------------------------------------------------------------------------------------------------------
# results/learned_shaping.json

_SHAPING_LABELS = {"none": "no shaping", "hand_potential": "hand-designed potential",
                   "fixed_candidates": "candidate signals, equal weights",
                   "learned_weights": "learned candidate weights", "learned_potential": "learned potential",
                   "free_bonus": "free per-(s, a) bonus"}


def learned_shaping(data: dict[str, Any], macros: Macros, source: str) -> dict[str, str]:
    config, mdp = data["config"], data["mdp"]
    macros.number(["sh grid size"], int(config["size"]))
    macros.number(["sh states"], int(mdp["num_states"]))
    macros.number(["sh actions"], int(mdp["num_actions"]))
    macros.number(["sh discount"], float(mdp["discount"]))
    macros.number(["sh budget"], int(config["budget"]))
    macros.number(["sh temperature"], float(config["temperature"]), digits=1)
    macros.number(["sh slip"], float(config["slip"]), digits=1)
    macros.number(["sh step cost"], float(config["step_cost"]), digits=1)
    macros.number(["sh outer steps"], int(config["outer_steps"]))
    macros.number(["sh curve sweeps"], int(config["curve_sweeps"]))
    macros.fixed(["sh optimal return"], float(mdp["optimal_return"]), 3)
    rows = []
    for method in data["methods"]:
        name = method["method"]
        macros.fixed(["sh", name, "return"], float(method["return_at_budget"]), 3)
        macros.text(["sh", name, "preserved"], "yes" if method["optimal_policy_preserved"] else "no")
        macros.number(["sh", name, "actions changed"], int(method["optimal_actions_changed"]))
        macros.fixed(["sh", name, "greedy return"], float(method["greedy_true_return"]), 3)
        rows.append([escape(_SHAPING_LABELS.get(name, name.replace("_", " "))).replace("(s, a)", "$(s,a)$"),
                     "yes" if method["learned"] else "no", format_fixed(float(method["return_at_budget"]), 3),
                     str(int(method["optimal_actions_changed"])),
                     format_fixed(float(method["greedy_true_return"]), 3)])
    preserved = [m for m in data["methods"] if m["optimal_policy_preserved"]]
    macros.number(["sh num preserved"], len(preserved))
    macros.number(["sh num methods"], len(data["methods"]))
    best = max(preserved, key=lambda m: m["return_at_budget"])
    macros.text(["sh best preserving method"], _SHAPING_LABELS.get(best["method"], best["method"].replace("_", " ")))
    # The learned candidate weights at the end of the outer loop, one macro per candidate.
    candidates = data["candidates"]
    macros.number(["sh num candidates"], len(candidates))
    for method in data["methods"]:
        if method["method"] == "learned_weights":
            for candidate, weight in zip(candidates, method["weights"]):
                macros.fixed(["sh weight", candidate], float(weight), 3)
    # Sampled (policy-gradient) vs exact hypergradient: at the largest sample size and at the one closest to 10^4.
    accuracy = data["hypergradient_accuracy"]
    summary = sorted(accuracy["summary"], key=lambda row: row["num_trajectories"])
    largest = summary[-1]
    middle = min(summary, key=lambda row: abs(math.log10(row["num_trajectories"]) - 4.0))
    macros.number(["sh pg largest rollouts"], int(largest["num_trajectories"]))
    macros.number(["sh pg largest error"], float(largest["mean_relative_error"]))
    macros.number(["sh pg middle rollouts"], int(middle["num_trajectories"]))
    macros.number(["sh pg middle error"], float(middle["mean_relative_error"]))
    macros.number(["sh pg smallest rollouts"], int(summary[0]["num_trajectories"]))
    macros.number(["sh pg smallest error"], float(summary[0]["mean_relative_error"]))
    macros.number(["sh pg repeats"], int(config["sample_repeats"]))
    macros.number(["sh fd error"], float(accuracy["finite_difference_relative_error"]))
    macros.number(["sh exact weights error"], float(accuracy["exact_weights_relative_error"]))
    header = ["shaping", "learned", r"return at $K$", "actions changed", "greedy return"]
    return {"learned_shaping": _table("lcrrr", header, rows, source)}


# --------------------------------------------------------------------------------------------------------------
# results/shaping_classic_control.json

# A task gradient below this norm is round-off: the task return was the same constant (time limit, no goal) on
# every episode of the solve, so the policy-gradient estimate of the hypergradient is zero.
_ZERO_GRADIENT = 1e-8


def _testbed_key(env_id: str) -> str:
    """``MountainCar-v0`` → ``MountainCar`` (macro names without the version)."""
    return env_id.split("-")[0]


def _censored_steps(entry: dict[str, Any]) -> str:
    """Env steps to the goal threshold, IQM over seeds; ``--`` if no seed reaches it, ``≥`` if some do not
    (those count as budget + one outer step, so the IQM is a lower bound)."""
    reached, seeds = int(entry["reached_threshold"]), len(entry["seeds"])
    if reached == 0:
        return "--"
    value = format_number(round(entry["steps_to_threshold_censored"]["iqm"]))
    return (r"\ensuremath{\ge}\," if reached < seeds else "") + value


def shaping_classic_control(data: dict[str, Any], macros: Macros, source: str) -> dict[str, str]:
    """Per task and shaping method: seeds reaching the goal-rate threshold, env steps to it (IQM, censored),
    final goal rate (IQM [CI]); the learned weights' fate; the table ``shaping_classic_control``."""
    config = data["config"]
    macros.fixed(["scc threshold"], float(config["goal_threshold"]))
    percent = round(100 * float(config["goal_threshold"]))
    macros.number(["scc threshold percent"], percent)
    macros.number(["scc eval episodes"], int(config["eval_episodes"]))
    macros.number(["scc sustain"], int(config.get("sustain_checkpoints", 1)))
    macros.number(["scc num methods"], len(config["methods"]))
    settings = {bed["env_id"]: bed for bed in config["testbeds"]}
    rows: list[list[str]] = []
    groups: list[int] = []
    for testbed in data["testbeds"]:
        env_id, summary = testbed["env_id"], testbed["summary"]
        key, setting = _testbed_key(env_id), settings[env_id]
        macros.text(["scc", key, "env"], env_id)
        macros.number(["scc", key, "budget"], int(setting["total_steps"]))
        macros.number(["scc", key, "steps per outer step"], int(setting["steps_per_outer_step"]))
        macros.number(["scc", key, "outer steps"], int(setting["total_steps"]) // int(setting["steps_per_outer_step"]))
        macros.number(["scc", key, "censor steps"], int(setting["total_steps"]) + int(setting["steps_per_outer_step"]))
        macros.number(["scc", key, "shaping scale"], float(setting["shaping_scale"]))
        macros.number(["scc", key, "envs"], int(setting["n_envs"]))
        macros.number(["scc", key, "n steps"], int(setting["ppo"]["n_steps"]))
        macros.text(["scc", key, "hand potential"], str(setting["hand_potential"]).replace("_", " "))
        macros.number(["scc", key, "num candidates"], len(testbed["candidates"]))
        groups.append(len(rows))
        methods = [m for m in config["methods"] if m in summary] + [m for m in summary if m not in config["methods"]]
        for method in methods:
            entry = summary[method]
            seeds = len(entry["seeds"])
            goal = entry["final_goal_rate"]
            macros.number(["scc", key, method, "reached"], int(entry["reached_threshold"]))
            macros.number(["scc", key, method, "steps iqm"],
                          round(entry["steps_to_threshold_censored"]["iqm"]))
            macros.fixed(["scc", key, method, "goal iqm"], float(goal["iqm"]))
            macros.fixed(["scc", key, method, "goal low"], float(goal["low"]))
            macros.fixed(["scc", key, method, "goal high"], float(goal["high"]))
            macros.fixed(["scc", key, method, "goal best"],
                         max(float(run["final_goal_rate"]) for run in testbed["runs"] if run["method"] == method))
            label = escape(_SHAPING_LABELS.get(method, method.replace("_", " ")))
            first = len(rows) == groups[-1]
            rows.append([escape(env_id) if first else "", label, f"{int(entry['reached_threshold'])}/{seeds}",
                         _censored_steps(entry),
                         f"{format_fixed(goal['iqm'])} [{format_fixed(goal['low'])}, {format_fixed(goal['high'])}]"])
        # Runs (method × seed) that reach the threshold at some evaluation but end below it: reaching is not staying.
        reached_runs = [run for run in testbed["runs"] if run["steps_to_threshold"] is not None]
        macros.number(["scc", key, "reached runs"], len(reached_runs))
        macros.number(["scc", key, "dropped runs"],
                      sum(1 for run in reached_runs if run["final_goal_rate"] < float(config["goal_threshold"])))
        # The learned candidate weights: the seeds on which the task gradient was zero at every outer step (no
        # training episode reached the goal, so the weights never moved), and on the others the harmful
        # candidate's final weight and the candidate that wins.
        candidates, harmful = testbed["candidates"], testbed["harmful_candidate"]
        index = candidates.index(harmful)
        runs = [run for run in testbed["runs"] if run["method"] == "learned_weights"]
        moved = [run for run in runs
                 if any(step["task_gradient_norm"] > _ZERO_GRADIENT for step in run["outer_history"])]
        for method in ("learned_weights", "learned_potential"):
            mine = [run for run in testbed["runs"] if run["method"] == method]
            frozen = sum(1 for run in mine
                         if all(step["task_gradient_norm"] <= _ZERO_GRADIENT for step in run["outer_history"]))
            macros.number(["scc", key, method, "frozen seeds"], frozen)
            macros.number(["scc", key, method, "active seeds"], len(mine) - frozen)
        macros.text(["scc", key, "harmful candidate"], harmful)
        potentials = [name for name in candidates if name != harmful]
        macros.text(["scc", key, "potential candidates"], " and ".join(potentials))
        macros.fixed(["scc", key, "initial weight"], 1.0 / len(candidates), 3)
        # With no seed whose weights moved (e.g. at tiny scale), the same macros describe the unmoved weights.
        moved = moved or runs
        if moved:
            finals = [run["parameters"][-1]["weights"] for run in moved]
            macros.number(["scc", key, "harmful weight min"], min(float(w[index]) for w in finals))
            macros.number(["scc", key, "harmful weight max"], max(float(w[index]) for w in finals))
            mean = [sum(float(w[i]) for w in finals) / len(finals) for i in range(len(candidates))]
            top = max(range(len(candidates)), key=lambda i: mean[i])
            macros.text(["scc", key, "top candidate"], candidates[top])
            peak = max(float(step["weights"][index]) for run in moved for step in run["parameters"])
            macros.fixed(["scc", key, "harmful weight peak"], peak, 2)
            macros.fixed(["scc", key, "top weight min"], min(float(w[top]) for w in finals), 2)
            macros.fixed(["scc", key, "top weight mean"], mean[top], 2)
            # Seeds whose largest final weight is on the top candidate (the others favour another candidate).
            macros.number(["scc", key, "top seeds"],
                          sum(1 for w in finals if max(range(len(candidates)), key=lambda i: float(w[i])) == top))
    header = ["task", "shaping", rf"seeds $\ge${percent}\%", rf"steps to {percent}\%", "final goal rate"]
    return {"shaping_classic_control": _table("llcrc", header, rows, source, groups)}


# --------------------------------------------------------------------------------------------------------------
# results/sentiment_frontier.json

# Method groups of the frontier: DPO at every β, the other offline catalog losses, RLOO with the gold reward, RLOO
# with a text reward model trained on the same pairs.
_SF_GROUPS = {"dpo": lambda m: m == "dpo", "offline": lambda m: m not in ("dpo", "rloo", "rm_rloo"),
              "rloo": lambda m: m == "rloo", "rm rloo": lambda m: m == "rm_rloo"}


_SF_LOSS_NAMES = {"ipo": "IPO", "hinge": "hinge (SLiC)", "robust": "robust DPO", "simpo": "SimPO", "kto": "KTO",
                  "orpo": "ORPO", "sigmoid_norm": "length-normalized DPO"}


def _sf_target(variant: str) -> str:
    """The gold reward a variant optimizes: the sentiment alone (scalar) or the aggregate (multi-aspect)."""
    return "reward/sentiment" if variant == "scalar" else "reward/total"


def _listing(values: Iterable[Any]) -> str:
    return ", ".join(f"{v:g}" for v in values)


def sentiment_frontier(data: dict[str, Any], macros: Macros, source: str) -> dict[str, str]:
    """Per reward variant and method group: the best gold reward (the variant's target) over every evaluation and
    its KL, the best within the KL budget of the largest best-of-n, best-of-n itself, and the reward models'
    held-out accuracies; plus the protocol's settings. Macro names do not depend on the scale's values."""
    config, reference = data["config"], data["reference"]
    if "num_parameters" in data.get("model", {}):
        macros.number(["sf model parameters"], int(data["model"]["num_parameters"]))
    for key in ("train_prompts", "test_prompts", "pair_samples", "max_new_tokens", "eval_samples", "steps",
                "batch_size", "rl_steps", "rl_prompts_per_step", "rl_samples_per_prompt", "lora_r", "rm_steps",
                "rm_batch_size", "rm_lora_r", "target_words", "eval_every", "rl_eval_every"):
        macros.number(["sf", key], int(config[key]))
    macros.number(["sf learning rate"], float(config["learning_rate"]))
    macros.number(["sf rl learning rate"], float(config["rl_learning_rate"]))
    macros.number(["sf rm learning rate"], float(config["rm_learning_rate"]))
    macros.text(["sf dpo betas"], _listing(config["dpo_betas"]))
    macros.number(["sf num dpo betas"], len(config["dpo_betas"]))
    macros.text(["sf kl coefs"], _listing(config["rl_kl_coefs"]))
    macros.text(["sf best of n"], _listing(int(n) for n in config["best_of_n"]))
    macros.text(["sf other losses"], ", ".join(_SF_LOSS_NAMES.get(n, n) for n in config["other_losses"]))
    macros.number(["sf wall minutes"], float(data["wall_seconds"]) / 60)
    macros.number(["sf cpu minutes"], float(data["cpu_seconds"]) / 60)
    if "same_pair_fraction" in data["data"]:
        macros.fixed(["sf same pair fraction"], float(data["data"]["same_pair_fraction"]), 2)
    for name in ("sentiment", "total"):
        macros.fixed(["sf reference", name], float(reference[f"reward/{name}"]), 2)
        macros.fixed(["sf reference", name, "se"], float(reference[f"reward/{name}_se"]), 2)
    rows = data["acceptance"]["dpo_scalar"]
    if rows:
        macros.number(["sf dpo gain in se min"], min(float(r["gain_in_se"]) for r in rows.values()))
    runs = data["runs"]
    largest = max(int(n) for n in config["best_of_n"])
    macros.number(["sf bon largest n"], largest)
    for variant in config["variants"]:
        target = _sf_target(variant)
        label = variant.replace("_", " ")
        summary = data["data"][variant]
        macros.number(["sf", label, "pairs"], int(summary["pairs"]))
        macros.fixed(["sf", label, "chosen sentiment"], float(summary["chosen_sentiment"]), 2)
        macros.fixed(["sf", label, "rejected sentiment"], float(summary["rejected_sentiment"]), 2)
        bon = next(p for p in data["best_of_n"] if p["variant"] == variant and int(p["n"]) == largest)
        budget = float(bon["kl"])
        macros.fixed(["sf", label, "bon"], float(bon[target]), 2)
        macros.fixed(["sf", label, "bon sentiment"], float(bon["reward/sentiment"]), 2)
        macros.number(["sf", label, "bon kl"], budget)
        for group, member in _SF_GROUPS.items():
            entries = [e for e in runs if e["variant"] == variant and member(e["method"])]
            points = [(p, e) for e in entries for p in e["points"] if p["step"] > 0]
            if not points:
                continue
            best, entry = max(points, key=lambda item: item[0][target])
            macros.fixed(["sf", label, group, "best"], float(best[target]), 2)
            macros.fixed(["sf", label, group, "best se"], float(best[f"{target}_se"]), 2)
            macros.number(["sf", label, group, "best kl"], float(best["kl"]))
            if entry["beta"] is not None:
                macros.number(["sf", label, group, "best beta"], float(entry["beta"]))
            within = [p for p, _ in points if p["kl"] <= budget]
            macros.fixed(["sf", label, group, "within budget"], max((float(p[target]) for p in within),
                                                                   default=math.nan), 2)
            largest_kl = max(points, key=lambda item: item[0]["kl"])[0]
            macros.number(["sf", label, group, "max kl"], float(largest_kl["kl"]))
        report = data.get("reward_models", {}).get(variant)
        if report is not None:
            macros.fixed(["sf", label, "rm held out accuracy"], float(report["held_out_accuracy"]), 2)
            macros.fixed(["sf", label, "rm train accuracy"], float(report["train_accuracy"]), 2)
            macros.number(["sf", label, "rm held out pairs"], int(report["held_out_pairs"]))
            macros.number(["sf", label, "rm score std"], float(report["held_out_score_std"]))
            macros.number(["sf", label, "rm seconds"], float(report["seconds"]))
            for aspect, accuracy in (report.get("held_out_aspect_accuracy") or {}).items():
                macros.fixed(["sf", label, "rm", aspect, "accuracy"], math.nan if accuracy is None else accuracy, 2)
    return {}

# --------------------------------------------------------------------------------------------------------------
# benchmarks/results/mce_irl_vs_imitation.json


def mce_irl_vs_imitation(data: dict[str, Any], macros: Macros, source: str) -> dict[str, str]:
    macros.text(["mce imitation version"], data["versions"]["imitation"])
    macros.number(["mce cpus"], int(data["machine"]["cpu_count"]))
    first = data["problems"][0]
    macros.number(["mce actions"], int(first["num_actions"]))
    macros.number(["mce branching"], int(first["max_successors"]))
    macros.number(["mce horizon"], int(first["horizon"]))
    stop = data["protocol"]["stop_rule"]
    match = re.search(r"<=\s*([0-9.eE-]+)", stop)
    if match:
        macros.number(["mce stop tolerance"], float(match.group(1)))
    rows = []
    evaluations_ours, evaluations_theirs = [], []
    for problem in data["problems"]:
        is_random = problem["spec"]["kind"] == "random"
        key = f"S{problem['num_states']}" if is_random else problem["name"]
        imitation, dense, sparse = problem["imitation"], problem["ours_dense"], problem["ours_sparse"]
        bound = bool(problem.get("imitation_time_is_lower_bound"))
        ratio = problem["time_ratio_imitation_over"]
        ge = r"\ensuremath{\ge}\," if bound else ""
        macros.number(["mce imitation seconds", key], imitation["seconds"], digits=3)
        macros.number(["mce dense seconds", key], dense["seconds"])
        macros.number(["mce sparse seconds", key], sparse["seconds"])
        macros.add(macro_name("mce speedup dense", key), ge + format_number(float(ratio["ours_dense"])))
        macros.add(macro_name("mce speedup sparse", key), ge + format_number(float(ratio["ours_sparse"])))
        macros.number(["mce linf imitation", key], imitation["error"]["state_visitation_linf"])
        macros.number(["mce linf dense", key], dense["error"]["state_visitation_linf"])
        macros.number(["mce linf sparse", key], sparse["error"]["state_visitation_linf"])
        macros.number(["mce imitation evaluations", key], int(imitation["hypergradient_evaluations"]))
        macros.number(["mce evaluations", key], int(dense["hypergradient_evaluations"]))
        if not bound and problem["name"] != "cliffworld_xy":
            evaluations_ours.append(int(dense["hypergradient_evaluations"]))
            evaluations_theirs.append(int(imitation["hypergradient_evaluations"]))
        label = f"random, $S={problem['num_states']}$" if is_random else escape(problem["name"].replace("_", " "))
        if not is_random:
            label += f" ($S={problem['num_states']}$)"
        rows.append([label, ge + format_number(imitation["seconds"], digits=3) + " s",
                     format_number(dense["seconds"]) + " s", format_number(sparse["seconds"]) + " s",
                     ge + format_number(float(ratio["ours_dense"])) + r"\,/\," + ge
                     + format_number(float(ratio["ours_sparse"])),
                     format_number(imitation["error"]["state_visitation_linf"]) + r"\,/\,"
                     + format_number(sparse["error"]["state_visitation_linf"])])
        if bound:
            macros.number(["mce imitation cap seconds", key], float(imitation["caps"]["wall_s"]))
    macros.number(["mce evaluations min"], min(evaluations_ours))
    macros.number(["mce evaluations max"], max(evaluations_ours))
    macros.number(["mce imitation evaluations min"], min(evaluations_theirs))
    macros.number(["mce imitation evaluations max"], max(evaluations_theirs))
    header = ["problem", "imitation", "ours, dense", "ours, sparse", r"speed-up (d\,/\,s)",
              r"final $L_\infty$ (imit.\,/\,ours)"]
    return {"mce_benchmark": _table("lrrrrr", header, rows, source)}


# --------------------------------------------------------------------------------------------------------------
# benchmarks/results/trl_loss_parity.json


def trl_loss_parity(data: dict[str, Any], macros: Macros, source: str) -> dict[str, str]:
    macros.text(["trl version"], data["trl_version"])
    macros.number(["trl dpo trainer losses"], len(data["dpo_trainer_names"]))
    macros.number(["trl other losses"], len(data["other_trainers"]))
    macros.number(["trl max diff dpo trainer"], float(data["max_abs_diff_dpo_trainer"]))
    macros.number(["trl max diff orpo"], float(data["max_abs_diff_orpo_float32_in_trl"]))
    macros.number(["trl goal"], float(data["goal_max_abs_diff"]))
    others = [r for r in data["results"] if r["loss"] in data["other_trainers"] and r["loss"] != "orpo"]
    if others:
        macros.number(["trl max diff other"], max(float(r["max_abs_diff"]) for r in others))
    macros.number(["trl comparisons"], len(data["results"]))
    macros.number(["trl batches"], len(data["batches"]))
    return {}


# --------------------------------------------------------------------------------------------------------------
# benchmarks/results/dpo_vs_trl.json

# Short macro keys for the benchmark's models (the file's keys have digits, which macro names spell out).
_DPO_MODELS = {"builtin": "builtin", "gpt2_v2000": "wide vocab"}
_DPO_SIDES = ("ours", "ours_models_py", "trl", "trl_precompute")


def dpo_vs_trl(data: dict[str, Any], macros: Macros, source: str) -> dict[str, str]:
    protocol = data["protocol"]
    macros.text(["dpo trl version"], data["trl_version"])
    macros.number(["dpo repeats"], int(protocol["repeats"]))
    macros.number(["dpo timed steps"], int(protocol["timed_steps"]))
    macros.number(["dpo warmup steps"], int(protocol["warmup_steps"]))
    macros.number(["dpo parity steps"], int(protocol["parity_steps"]))
    threads = [int(t) for t in protocol["threads"]]
    macros.number(["dpo threads"], threads[0])
    macros.number(["dpo cpus"], int(data["provenance"]["machine"]["cpus"]))
    match = re.search(r">=\s*([0-9.]+)", data.get("goal", ""))
    if match:
        macros.number(["dpo goal ratio"], float(match.group(1)))
    loads = [max(float(row["load_1min_before"]), float(row["load_1min_after"])) for row in data["load_average"]]
    macros.number(["dpo max load"], max(loads))
    ratios: dict[str, list[float]] = {}
    diffs: list[float] = []
    identical = True
    for model, key in _DPO_MODELS.items():
        if model not in data["results"]:
            continue
        setup = data["setup"][model]
        result = data["results"][model][f"threads_{threads[0]}"]
        macros.number(["dpo", key, "vocab"], int(setup["embedding_rows"]))
        macros.number(["dpo", key, "trainable"], int(setup["trainable_parameters"]))
        for side in _DPO_SIDES:
            macros.number(["dpo", key, side, "steps per second"], float(result[side]["steps_per_second_median"]))
            identical = identical and bool(result[side]["runs_identical_losses"])
            if side != "trl":
                diffs.append(float(result[side]["max_abs_loss_diff_vs_trl"]))
        for pair, ratio in result["ratios"].items():
            ours, theirs = pair.split("/")
            macros.number(["dpo", key, ours, "over", theirs], float(ratio))
            ratios.setdefault(pair, []).append(float(ratio))
        if "builtin_build" in setup:
            macros.number(["dpo builtin parameters"], int(setup["builtin_build"]["num_parameters"]))
    first = data["setup"][next(iter(data["setup"]))]
    macros.number(["dpo pairs"], int(first["pairs"]))
    macros.number(["dpo beta"], float(first["beta"]))
    macros.number(["dpo lora rank"], int(first["lora"]["r"]))
    macros.number(["dpo learning rate"], float(first["learning_rate"]))
    for pair, values in ratios.items():
        ours, theirs = pair.split("/")
        macros.number(["dpo", ours, "over", theirs, "min"], min(values))
        macros.number(["dpo", ours, "over", theirs, "max"], max(values))
    macros.number(["dpo max loss diff"], max(diffs))
    macros.text(["dpo runs identical"], "yes" if identical else "no")
    return {}


# --------------------------------------------------------------------------------------------------------------
# benchmarks/results/irl_vs_imitation.json

_IVI_METHODS = {"ours": "ML-IRL (ours)", "airl": "AIRL", "gail": "GAIL", "bc": "BC",
                "true_reward": "PPO, true reward"}
_IVI_ORDER = ("CartPole-v1", "Acrobot-v1", "Pendulum-v1", "MountainCar-v0")  # table order, as in the paper's text


def _iqm_ci(stats: dict[str, Any]) -> str:
    """``IQM [low, high]`` of an ``iqm_with_ci`` dict; ``--`` where no seed has a value."""
    if not stats["n"] or math.isnan(float(stats["iqm"])):
        return "--"
    iqm, low, high = (format_fixed(float(stats[bound])) for bound in ("iqm", "low", "high"))
    return f"{iqm} [{low}, {high}]"


def irl_vs_imitation(data: dict[str, Any], macros: Macros, source: str) -> dict[str, str]:
    """Per gymnasium testbed and method (ours, AIRL, GAIL, BC, and PPO on the true reward as the reference): final
    normalized return (IQM [CI]), env steps to the target among the seeds that reach it, reward transfer and EPIC
    distance to the true reward (IQM [CI]), and the issue's goal checks; the table ``irl_vs_imitation``. Macro
    names use the testbed without its version (``IviCartPoleOursFinalIqm``)."""
    protocol, summary = data["protocol"], data["summary"]
    macros.text(["ivi imitation version"], protocol["versions"]["imitation"])
    macros.number(["ivi seeds"], len(protocol["seeds"]))
    macros.number(["ivi demonstrations"], int(protocol["demonstrations"]))
    macros.number(["ivi eval episodes"], int(protocol["eval_episodes"]))
    macros.number(["ivi bc epochs"], int(protocol["bc_epochs"]))
    macros.fixed(["ivi target"], float(protocol["target"]), 1)
    macros.number(["ivi cpus"], int(data["machine"]["cpu_count"]))
    # null: the file has no ours-vs-baseline comparison (benchmarks/irl_vs_imitation.py summarize)
    macros.text(["ivi goal met"], {True: "yes", False: "no", None: "not evaluated"}[summary["goal_met"]])
    match = re.search(r"\+\s*([0-9.]+)", summary.get("goal", ""))
    if match:
        macros.number(["ivi transfer margin"], float(match.group(1)))
    macros.number(["ivi wall minutes"], float(data["wall_seconds"]) / 60)
    rows: list[list[str]] = []
    groups: list[int] = []
    # results written before the benchmark measured EPIC (the learned reward's distance to the true one) lack it
    has_epic = any("epic_distance" in cell for cell in data["cells"].values())
    order = {env_id: index for index, env_id in enumerate(_IVI_ORDER)}
    for env_id, spec in sorted(protocol["testbeds"].items(), key=lambda item: order.get(item[0], len(order))):
        entry = summary[env_id]
        key = _testbed_key(env_id)
        macros.text(["ivi", key, "env"], env_id)
        macros.number(["ivi", key, "budget"], int(spec["budget"]))
        macros.number(["ivi", key, "half budget"], int(spec["budget"]) // 2)
        macros.number(["ivi", key, "transfer budget"], int(spec["transfer_budget"]))
        macros.number(["ivi", key, "rollout"], int(spec["rollout"]))
        reference = data["references"][env_id]
        macros.number(["ivi", key, "expert return"], float(reference["expert_return"]))
        macros.number(["ivi", key, "random return"], float(reference["random_return"]))
        macros.text(["ivi", key, "expert algorithm"], reference["expert_algorithm"])
        for name, verdict in entry["goal"].items():
            macros.text(["ivi", key, name.replace("return_at_", ""), "met"], "yes" if verdict["met"] else "no")
        if "true_reward_at_transfer_budget" in entry:
            macros.fixed(["ivi", key, "true reward at transfer budget"],
                         float(entry["true_reward_at_transfer_budget"]["iqm"]))
        groups.append(len(rows))
        for method, label in _IVI_METHODS.items():
            stats = entry["methods"].get(method)
            if stats is None:
                continue
            seeds = int(stats["seeds"])
            reached = int(stats["seeds_reaching_target"])
            for metric, short in (("final_normalized_return", "final"), ("half_budget_normalized_return", "half"),
                                  ("transfer_normalized_return", "transfer")):
                for bound in ("iqm", "low", "high"):
                    macros.fixed(["ivi", key, method, short, bound], float(stats[metric][bound]))
            macros.number(["ivi", key, method, "reached"], reached)
            transfers = [cell.get("transfer_normalized_return") for cell in data["cells"].values()
                         if cell["testbed"] == env_id and cell["method"] == method]
            macros.number(["ivi", key, method, "transfer reached"],
                          sum(1 for value in transfers if value is not None and value >= float(protocol["target"])))
            steps = stats["env_steps_to_target"]
            steps_text = "--" if not reached else format_number(round(float(steps["iqm"])))
            macros.add(macro_name("ivi", key, method, "steps iqm"), steps_text)
            steps_cell = f"{steps_text} ({reached}/{seeds})"
            first = len(rows) == groups[-1]
            row = [escape(env_id) if first else "", escape(label), _iqm_ci(stats["final_normalized_return"]),
                   steps_cell, _iqm_ci(stats["transfer_normalized_return"])]
            if has_epic:
                epic = stats.get("epic_distance", {"n": 0})
                if epic["n"]:
                    for bound in ("iqm", "low", "high"):
                        macros.fixed(["ivi", key, method, "epic", bound], float(epic[bound]))
                row.append(_iqm_ci(epic))
            rows.append(row)
        for baseline, ratio in entry["ratios"].items():
            value = ratio["env_steps_to_target"]
            if value is not None:
                macros.number(["ivi", key, "steps", baseline.replace("_", " ")], float(value))
    header = ["testbed", "method", "final return", f"steps to {format_fixed(float(protocol['target']), 1)} (seeds)",
              "reward transfer"] + (["EPIC"] if has_epic else [])
    return {"irl_vs_imitation": _table("llccc" + "c" * has_epic, header, rows, source, groups)}


# --------------------------------------------------------------------------------------------------------------
# benchmarks/results/preferences_vs_imitation.json


def preferences_vs_imitation(data: dict[str, Any], macros: Macros, source: str) -> dict[str, str]:
    """Per testbed and query budget: ours and imitation's ``PreferenceComparisons`` (oracle teacher), normalized
    return IQM [CI] over seeds, and the goal checks; the table ``preferences_vs_imitation``."""
    settings, summary = data["settings"], data["summary"]
    macros.text(["pvi imitation version"], data["versions"]["imitation"])
    macros.number(["pvi seeds"], len(data["seeds"]))
    macros.number(["pvi eval episodes"], int(data["eval"]["episodes"]))
    macros.number(["pvi cpus"], int(data["machine"]["cpus"]))
    macros.number(["pvi wall minutes"], float(data["wall_s_this_invocation"]) / 60)
    rows: list[list[str]] = []
    groups: list[int] = []
    all_met = True
    seen_goal: set[str] = set()
    for env_id, spec in settings["envs"].items():
        key = _testbed_key(env_id)
        budgets = [int(b) for b in spec["budgets"]]
        macros.text(["pvi", key, "env"], env_id)
        macros.number(["pvi", key, "fragment length"], int(spec["fragment_length"]))
        listed = [str(b) for b in budgets]
        macros.text(["pvi", key, "budgets"], " and ".join([", ".join(listed[:-1]), listed[-1]] if len(listed) > 1
                                                          else listed))
        macros.number(["pvi", key, "max budget"], max(budgets))
        macros.number(["pvi", key, "min budget"], min(budgets))
        for method in ("ours", "imitation"):
            steps = {int(c["env_steps"]) for c in data["cells"] if c["env_id"] == env_id and c["method"] == method}
            macros.number(["pvi", key, method, "env steps"], max(steps))
        goals = data["goals"][env_id]
        all_met = all_met and all(bool(met) for met in goals.values())
        reaches_key, reaches = next((k, v) for k, v in goals.items() if k.startswith("ours_reaches"))
        match = re.fullmatch(r"ours_reaches_([0-9.]+)_with_<=(\d+)_queries", reaches_key)
        if match and "pvi goal return" not in seen_goal:
            macros.fixed(["pvi goal return"], float(match.group(1)), 1)
            macros.number(["pvi goal queries"], int(match.group(2)))
            seen_goal.add("pvi goal return")
        above = next(v for k, v in goals.items() if k.startswith("ours_>="))
        macros.text(["pvi", key, "reaches goal"], "yes" if reaches else "no")
        macros.text(["pvi", key, "above imitation"], "yes" if above else "no")
        ours_summary = next(v for k, v in summary[env_id].items() if k.startswith("ours/"))
        theirs_summary = next(v for k, v in summary[env_id].items() if k.startswith("imitation/"))
        ranks = {min(budgets): "min", max(budgets): "max"}
        groups.append(len(rows))
        differences = []
        for budget in budgets:
            ours, theirs = ours_summary[str(budget)], theirs_summary[str(budget)]
            difference = float(ours["iqm"]) - float(theirs["iqm"])
            differences.append(difference)
            if budget in ranks:
                for side, stats in (("ours", ours), ("imitation", theirs)):
                    for bound in ("iqm", "low", "high"):
                        macros.fixed(["pvi", key, side, ranks[budget], "budget", bound], float(stats[bound]))
            first = len(rows) == groups[-1]
            rows.append([escape(env_id) if first else "", str(budget), _iqm_ci(ours), _iqm_ci(theirs),
                         format_fixed(difference)])
        macros.fixed(["pvi", key, "min difference"], min(differences))
        worst = min(budgets, key=lambda b: float(ours_summary[str(b)]["iqm"]))
        macros.fixed(["pvi", key, "ours min iqm"], float(ours_summary[str(worst)]["iqm"]))
        macros.number(["pvi", key, "ours worst budget"], worst)
    macros.text(["pvi goals met"], "yes" if all_met else "no")
    header = ["testbed", "queries", r"ours, IQM [95\% CI]", r"imitation, IQM [95\% CI]", "difference"]
    return {"preferences_vs_imitation": _table("lcccr", header, rows, source, groups)}


# --------------------------------------------------------------------------------------------------------------
# results/preference_noise.json

_PN_LOSSES = {"bradley_terry": "Bradley--Terry", "robust_bradley_terry": "robust BT",
              "smoothed_bradley_terry": "smoothed BT"}
_PN_HIGHLIGHT = 0.2  # the acceptance rate of mistakes: robust BT loses at most 10% there
_PN_ACCEPTED_DEGRADATION = 0.1


def preference_noise(data: dict[str, Any], macros: Macros, source: str) -> dict[str, str]:
    """Per loss and mistake rate ε: normalized return IQM [CI] over seeds and the degradation 1 − IQM(ε)/IQM(0);
    the table ``preference_noise``. Macro names do not depend on the scale's rates: the clean rate (``Clean``), the
    rate closest to 0.2 (``Highlight``) and the largest (``Max``)."""
    config, summary = data["config"], data["summary"]
    macros.text(["pn env"], config["env_id"])
    macros.number(["pn queries"], int(config["query_budget"]))
    macros.text(["pn selection"], str(config.get("selection", "disagreement")))
    macros.number(["pn env steps"], int(config["total_env_steps"]))
    macros.number(["pn segment length"], int(config["segment_length"]))
    macros.number(["pn eval episodes"], int(config["eval_episodes"]))
    macros.number(["pn num losses"], len(config["losses"]))
    rates = [float(rate) for rate in config["mistake_rates"]]
    named = {"clean": rates[0], "highlight": min(rates, key=lambda r: abs(r - _PN_HIGHLIGHT)), "max": max(rates)}
    for label, rate in named.items():
        macros.number(["pn", label, "rate percent"], round(100 * rate))
    macros.text(["pn rates"], ", ".join(f"{rate:g}" for rate in rates))
    macros.number(["pn accepted degradation percent"], round(100 * _PN_ACCEPTED_DEGRADATION))
    rows = []
    degradation: dict[str, float] = {}
    for loss in config["losses"]:
        per_rate = summary[loss]
        cells = [escape(_PN_LOSSES.get(loss, loss.replace("_", " ")))]
        for rate in rates:
            cells.append(_iqm_ci(per_rate[str(rate)]))
        for label, rate in named.items():
            stats = per_rate[str(rate)]
            for bound in ("iqm", "low", "high"):
                macros.fixed(["pn", loss, label, bound], float(stats[bound]))
            value = stats.get("degradation")
            degradation_value = math.nan if value is None else float(value)
            macros.fixed(["pn", loss, label, "degradation"], degradation_value)
            percent = "--" if math.isnan(degradation_value) else format_fixed(float(round(100 * degradation_value)), 0)
            macros.add(macro_name("pn", loss, label, "degradation percent"), percent)
            if label == "highlight":
                degradation[loss] = degradation_value
        value = per_rate[str(named["highlight"])].get("degradation")
        cells.append(format_fixed(math.nan if value is None else float(value)))
        rows.append(cells)
    robust, plain = degradation.get("robust_bradley_terry", math.nan), degradation.get("bradley_terry", math.nan)
    macros.text(["pn robust within accepted"], "yes" if robust <= _PN_ACCEPTED_DEGRADATION else "no")
    macros.text(["pn plain loses more"], "yes" if plain > robust else "no")
    header = ["loss", *[rf"$\varepsilon={rate:g}$" for rate in rates],
              rf"degr.\ at $\varepsilon={named['highlight']:g}$"]
    return {"preference_noise": _table("l" + "c" * len(rates) + "r", header, rows, source)}


# --------------------------------------------------------------------------------------------------------------
# The loss catalog, from the code itself (no result file).


def loss_catalog(macros: Macros) -> dict[str, str]:
    from irl_bilevel.losses import PREFERENCE_LOSSES

    macros.source = "irl_bilevel.losses.PREFERENCE_LOSSES"
    macros.number(["num losses"], len(PREFERENCE_LOSSES))
    macros.number(["num trl losses"], sum(1 for loss in PREFERENCE_LOSSES.values() if loss.trl_name))
    rows = []
    for name, loss in PREFERENCE_LOSSES.items():
        rows.append([_tt(name), escape(loss.source), _tt(loss.trl_name) if loss.trl_name else "--",
                     "yes" if loss.needs_reference else "no",
                     format_number(loss.default_beta) if loss.default_beta is not None else "--"])
    header = ["name", "source", "TRL", "ref.", r"$\beta$"]
    table = _table(r"l>{\raggedright\arraybackslash}p{0.42\linewidth}lcc", header, rows,
                   "irl_bilevel.losses.PREFERENCE_LOSSES")
    return {"loss_catalog": table}


def agentic_shaping(data: dict[str, Any], macros: Macros, source: str) -> dict[str, str]:
    """Shaping with the LoRA inner loop on Tower of Hanoi: per method the final goal rate (IQM [CI]); the learned
    weights' fate (harmful candidate's range, the candidate with the largest mean weight)."""
    config = data["config"]
    macros.number(["as updates"], int(config["total_updates"]))
    macros.number(["as updates per solve"], int(config["updates_per_solve"]))
    macros.number(["as eval episodes per start"], int(config["eval_episodes_per_start"]))
    macros.number(["as num candidates"], len(data["candidates"]))
    macros.text(["as harmful candidate"], str(data["harmful_candidate"]))
    env = data["envs"]["hanoi-3"]
    macros.number(["as num starts"], int(env["num_starts"]))
    for method, entry in env["summary"].items():
        goal = entry["final_goal_rate"]
        for part in ("iqm", "low", "high"):
            macros.fixed(["as", method, "goal", part], float(goal[part]), 3)
        macros.fixed(["as", method, "start goal"], float(entry["evaluation_curve"][0]["goal_rate"]["iqm"]), 3)
    learned = env["summary"].get("learned_weights")
    if learned is not None:
        harmful = data["harmful_candidate"]
        per_seed = [float(w[harmful]) for w in learned["final_weights_per_seed"]]
        macros.fixed(["as harmful weight min"], min(per_seed), 3)
        macros.fixed(["as harmful weight max"], max(per_seed), 3)
        macros.fixed(["as initial weight"], 1.0 / len(data["candidates"]), 2)
        mean = learned["final_weights_mean"]
        top = max(mean, key=lambda name: float(mean[name]))
        macros.text(["as top candidate"], top.replace("_", " "))
        macros.fixed(["as top weight"], float(mean[top]), 2)
    return {}


_ARL_CONDITIONS = {"untrained": "untrained (base model)", "sparse": "sparse success reward",
                   "true": "true structured reward", "learned": "structured, learned from demonstrations",
                   "pref_learned": "structured, learned from preferences",
                   "pref_scalar": "scalar table, learned from preferences", "dpo": "DPO on the preference pairs"}
_ARL_SEARCH = {"true": "true", "sparse": "sparse", "learned": "demos, structured",
               "pref_learned": "prefs, structured", "pref_scalar": "prefs, scalar"}


def agentic_reward_learning(data: dict[str, Any], macros: Macros, source: str) -> dict[str, str]:
    """Learned rewards for a LoRA policy on Hanoi-3 and steppath: per condition and env the success rate (mean ±
    std over seeds, the stability measure), invalid and malformed rates (table ``agentic_reward_learning``), and
    reward-guided search success per reward (table ``agentic_search``); macros for the text."""
    config = data["config"]
    macros.number(["arl updates"], int(config["transfer_updates"]))
    macros.number(["arl outer steps"], int(config["outer_steps"]))
    macros.number(["arl irl updates per solve"], int(config["irl_updates_per_solve"]))
    macros.number(["arl eval episodes"], int(config["eval_episodes_per_start"]))
    macros.number(["arl queries"], int(config["query_budget"]))
    macros.number(["arl queries per refresh"], int(config["queries_per_refresh"]))
    macros.number(["arl search expansions"], int(config["search_expansions"]))
    macros.text(["arl dpo beta"], f"{float(config['dpo_beta']):g}")
    macros.text(["arl dpo lr"], f"{float(config['dpo_learning_rate']):g}")
    envs = list(data["envs"])
    rows: list[list[str]] = []
    conditions = [c for c in _ARL_CONDITIONS if all(c in data["envs"][env]["summary"] for env in envs)]
    for condition in conditions:
        cells = [escape(_ARL_CONDITIONS[condition])]
        for env in envs:
            entry = data["envs"][env]["summary"][condition]
            cells.append(rf"{format_fixed(entry['success_mean'], 3)} $\pm$ {format_fixed(entry['success_std'], 3)}")
            cells.append(format_fixed(entry["invalid_action_rate_mean"]))
            cells.append(format_fixed(entry["malformed_rate_mean"]))
        rows.append(cells)
    search_rows: list[list[str]] = []
    for env in envs:
        entry = data["envs"][env]
        name = env.replace("-3", "")
        macros.number(["arl", name, "starts"], int(entry["num_starts"]))
        macros.number(["arl", name, "move cap"], int(entry["move_cap"]))
        for condition in conditions:
            summary = entry["summary"][condition]
            macros.fixed(["arl", name, condition, "success"], float(summary["success_mean"]), 3)
            macros.fixed(["arl", name, condition, "std"], float(summary["success_std"]), 3)
            macros.fixed(["arl", name, condition, "malformed"], float(summary["malformed_rate_mean"]), 2)
        per_seed = entry["seeds"]
        if per_seed and "preference_learning" in per_seed[0]:
            pairs = [int(row["preference_learning"]["labelled_pairs"]) for row in per_seed]
            macros.number(["arl", name, "pairs min"], min(pairs))
            macros.number(["arl", name, "pairs max"], max(pairs))
        for reward, stats in entry.get("search", {}).items():
            macros.fixed(["arl", name, "search", reward], float(stats["success_mean"]), 2)
    search_names = [n for n in _ARL_SEARCH if all(n in data["envs"][env].get("search", {}) for env in envs)]
    for reward in search_names:
        cells = [escape(_ARL_SEARCH[reward])]
        for env in envs:
            stats = data["envs"][env]["search"][reward]
            ratio = stats["plan_length_ratio_mean"]
            cells += [format_fixed(stats["success_mean"]), "--" if ratio is None else format_fixed(ratio),
                      format_fixed(stats["expansions_mean"], 1)]
        search_rows.append(cells)
    macros.number(["arl seeds"], len(data["envs"][envs[0]]["seeds"]))
    columns = [rf"\multicolumn{{3}}{{c}}{{{escape(env)}}}" for env in envs]
    metrics = ["success", "invalid", "malformed"] * len(envs)
    header = [" & ".join(["", *columns]) + r" \\", " & ".join(["reward / training", *metrics])]
    tables = {"agentic_reward_learning": _table("l" + "ccc" * len(envs), ["\n".join(header)], rows, source)}
    if search_rows:
        search_header = [" & ".join(["", *columns]) + r" \\",
                         " & ".join(["search reward", *(["solved", "length / opt.", "expansions"] * len(envs))])]
        tables["agentic_search"] = _table("l" + "ccc" * len(envs), ["\n".join(search_header)], search_rows, source)
    return tables


# --------------------------------------------------------------------------------------------------------------

Handler = Callable[[dict[str, Any], Macros, str], dict[str, str]]
RESULT_HANDLERS: dict[str, Handler] = {
    "agentic_shaping": agentic_shaping,
    "agentic_reward_learning": agentic_reward_learning,
    "reward_recovery": reward_recovery,
    "hypergradient_accuracy": hypergradient_accuracy,
    "loss_sweep": loss_sweep,
    "feedback_consistency": feedback_consistency,
    "learned_shaping": learned_shaping,
    "shaping_classic_control": shaping_classic_control,
    "sentiment_frontier": sentiment_frontier,
    "preference_noise": preference_noise,
}
BENCHMARK_HANDLERS: dict[str, Handler] = {
    "mce_irl_vs_imitation": mce_irl_vs_imitation,
    "trl_loss_parity": trl_loss_parity,
    "dpo_vs_trl": dpo_vs_trl,
    "irl_vs_imitation": irl_vs_imitation,
    "preferences_vs_imitation": preferences_vs_imitation,
}


def _warn(message: str) -> None:
    print(f"irlb paper: warning: {message}", file=sys.stderr)


def generate(results_dir: Path, benchmarks_dir: Path, out_dir: Path,
             experiments: Iterable[str] | None = None) -> dict[str, Any]:
    """Write ``numbers.tex`` and one ``<table>.tex`` per table into ``out_dir``; returns what was written and
    what was skipped (missing files). ``experiments`` defaults to the names in ``irlb.reproduce.EXPERIMENTS``."""
    if experiments is None:
        from irlb.reproduce import EXPERIMENTS

        experiments = list(EXPERIMENTS)
    names = list(dict.fromkeys([*experiments, *RESULT_HANDLERS]))
    macros = Macros()
    tables: dict[str, str] = {}
    skipped: list[str] = []
    sources = [(results_dir / f"{name}.json", name, RESULT_HANDLERS.get(name)) for name in names]
    sources += [(benchmarks_dir / f"{name}.json", name, handler) for name, handler in BENCHMARK_HANDLERS.items()]
    for path, name, handler in sources:
        if not path.exists():
            _warn(f"{path} is missing: its macros and tables are not written (the paper will not build)")
            skipped.append(str(path))
            continue
        data = json.loads(path.read_text())
        macros.source = str(path)
        _generic(name, data, macros)
        if handler is not None:
            tables.update(handler(data, macros, str(path)))
    tables.update(loss_catalog(macros))
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    numbers = out_dir / "numbers.tex"
    numbers.write_text(macros.render())
    written.append(numbers)
    for stale in out_dir.glob("*.tex"):
        if stale.name != "numbers.tex" and stale.stem not in tables:
            stale.unlink()
    for name, text in tables.items():
        path = out_dir / f"{name}.tex"
        path.write_text(text)
        written.append(path)
    return {"written": written, "skipped": skipped, "macros": len(macros.values)}
