"""The macros and tables of the experiments' result files (``results/<name>.json``, one handler per experiment
that the paper discusses in detail) and of the loss catalog (read from the code itself)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from irlb.paper.macros import (
    Handler,
    Macros,
    Table,
    escape,
    format_fixed,
    format_number,
    iqm_ci,
    macro_name,
    tabular,
    testbed_key,
    tt,
)

# --------------------------------------------------------------------------------------------------------------
# results/reward_recovery.json


def _run_label(run: dict[str, Any]) -> tuple[str, str]:
    if run["algorithm"] == "lp_irl":
        return "LP-IRL", "optimal policy"
    data = {"exact_occupancy": "exact occupancy", "demonstrations": f"{run['num_demos']} demonstrations"}
    return f"MaxEnt, {run['reward_model']}", data.get(run["data"], run["data"])


def reward_recovery(data: dict[str, Any], macros: Macros, source: str) -> dict[str, Table]:
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
    return {"reward_recovery": tabular("lllrrr", header, rows, source, groups)}


# --------------------------------------------------------------------------------------------------------------
# results/hypergradient_accuracy.json

_EXACT_METHODS = ("maxent_exact", "implicit_direct", "implicit_normal_cg")


def hypergradient_accuracy(data: dict[str, Any], macros: Macros, source: str) -> dict[str, Table]:
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
    return {"hypergradient_accuracy": tabular("lrrrr", header, rows, source)}


# --------------------------------------------------------------------------------------------------------------
# results/loss_sweep.json


def loss_sweep(data: dict[str, Any], macros: Macros, source: str) -> dict[str, Table]:
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
    # The headline is the sampled (stochastic) policy, as on the results page and in the figure; the greedy policy's
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
        rows.append([escape(label) if label else tt(name),
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
    return {"loss_sweep": tabular("lccc", header, rows, source, [len(data["losses"])])}


# --------------------------------------------------------------------------------------------------------------
# results/feedback_consistency.json


def feedback_consistency(data: dict[str, Any], macros: Macros, source: str) -> dict[str, Table]:
    setting, table = data["setting"], data["table"]
    macros.number(["fc queries"], int(setting["num_queries"]))
    macros.number(["fc grid size"], int(data["config"]["grid_size"]))
    macros.number(["fc annotators"], int(data["config"]["num_annotators"]))
    macros.number(["fc ai members"], int(setting["ai_evaluator"]["members"]))
    macros.number(["fc ai train queries"], int(setting["ai_evaluator"]["train_queries"]))
    for teacher in ("mistake", "skip", "equal"):
        macros.number(["fc", teacher, "rate"], float(setting["teachers"][teacher][teacher]))
    macros.number(["fc myopic gamma"], float(setting["teachers"]["myopic"]["gamma"]))
    macros.number(["fc segments"], int(data["config"]["num_items"]))
    macros.number(["fc segment length"], int(data["config"]["segment_length"]))
    macros.number(["fc margin"], float(setting["threshold_margin"]), digits=3)
    macros.number(["fc truth tie percent"], round(100 * float(setting["truth_tie_rate"])))
    threshold = float(setting["teachers"]["equal"]["equal"]) * float(setting["threshold_margin"])
    macros.number(["fc equal threshold"], threshold)
    macros.fixed(["fc skipped percent"], 100 * (1 - float(table["skip"]["answered_rate"])), 1)
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
    return {"feedback_consistency": tabular("lrrrrrrr", header, rows, source, groups)}


# --------------------------------------------------------------------------------------------------------------
# results/learned_shaping.json

_SHAPING_LABELS = {"none": "no shaping", "hand_potential": "hand-designed potential",
                   "fixed_candidates": "candidate signals, equal weights",
                   "learned_weights": "learned candidate weights", "learned_potential": "learned potential",
                   "free_bonus": "free per-(s, a) bonus"}


def learned_shaping(data: dict[str, Any], macros: Macros, source: str) -> dict[str, Table]:
    config, mdp = data["config"], data["mdp"]
    macros.number(["sh grid size"], int(config["size"]))
    macros.number(["sh states"], int(mdp["num_states"]))
    macros.number(["sh actions"], int(mdp["num_actions"]))
    macros.number(["sh discount"], float(mdp["discount"]))
    macros.number(["sh budget"], int(config["budget"]))
    macros.number(["sh temperature"], float(config["temperature"]), digits=1)
    macros.number(["sh slip"], float(config["slip"]), digits=1)
    macros.number(["sh step cost"], float(config["step_cost"]), digits=1)
    macros.settings("sh", config, ("outer_steps", "curve_sweeps"))
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
    return {"learned_shaping": tabular("lcrrr", header, rows, source)}


# --------------------------------------------------------------------------------------------------------------
# results/shaping_classic_control.json

# A task gradient below this norm is round-off: the task return was the same constant (time limit, no goal) on
# every episode of the solve, so the policy-gradient estimate of the hypergradient is zero.
_ZERO_GRADIENT = 1e-8



def _censored_steps(entry: dict[str, Any]) -> str:
    """Env steps to the goal threshold, IQM over seeds; ``--`` if no seed reaches it, ``≥`` if some do not
    (those count as budget + one outer step, so the IQM is a lower bound)."""
    reached, seeds = int(entry["reached_threshold"]), len(entry["seeds"])
    if reached == 0:
        return "--"
    value = format_number(round(entry["steps_to_threshold_censored"]["iqm"]))
    return (r"\ensuremath{\ge}\," if reached < seeds else "") + value


def shaping_classic_control(data: dict[str, Any], macros: Macros, source: str) -> dict[str, Table]:
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
        key, setting = testbed_key(env_id), settings[env_id]
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
    return {"shaping_classic_control": tabular("llcrc", header, rows, source, groups)}


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


def sentiment_frontier(data: dict[str, Any], macros: Macros, source: str) -> dict[str, Table]:
    """Per reward variant and method group: the best gold reward (the variant's target) over every evaluation and
    its KL, the best within the KL budget of the largest best-of-n, best-of-n itself, and the reward models'
    held-out accuracies; plus the protocol's settings. Macro names do not depend on the scale's values."""
    config, reference = data["config"], data["reference"]
    if "num_parameters" in data.get("model", {}):
        macros.number(["sf model parameters"], int(data["model"]["num_parameters"]))
    macros.settings("sf", config, ("train_prompts", "test_prompts", "pair_samples", "max_new_tokens", "eval_samples",
                                   "steps", "batch_size", "rl_steps", "rl_prompts_per_step", "rl_samples_per_prompt",
                                   "lora_r", "rm_steps", "rm_batch_size", "rm_lora_r", "target_words", "eval_every",
                                   "rl_eval_every"))
    macros.settings("sf", config, ("learning_rate", "rl_learning_rate", "rm_learning_rate"), float)
    macros.text(["sf dpo betas"], _listing(config["dpo_betas"]))
    macros.number(["sf num dpo betas"], len(config["dpo_betas"]))
    macros.text(["sf kl coefs"], _listing(config["rl_kl_coefs"]))
    macros.text(["sf best of n"], _listing(int(n) for n in config["best_of_n"]))
    macros.text(["sf other losses"], ", ".join(_SF_LOSS_NAMES.get(n, n) for n in config["other_losses"]))
    macros.number(["sf wall minutes"], float(data["wall_seconds"]) / 60)
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
# results/preference_noise.json

_PN_LOSSES = {"bradley_terry": "Bradley--Terry", "robust_bradley_terry": "robust BT",
              "smoothed_bradley_terry": "smoothed BT"}
_PN_HIGHLIGHT = 0.2  # the acceptance rate of mistakes: robust BT loses at most 10% there
_PN_ACCEPTED_DEGRADATION = 0.1


def preference_noise(data: dict[str, Any], macros: Macros, source: str) -> dict[str, Table]:
    """Per loss and mistake rate ε: normalized return IQM [CI] over seeds and the degradation 1 − IQM(ε)/IQM(0);
    the table ``preference_noise``. Macro names do not depend on the scale's rates: the clean rate (``Clean``), the
    rate closest to 0.2 (``Highlight``) and the largest (``Max``)."""
    config, summary = data["config"], data["summary"]
    macros.text(["pn env"], config["env_id"])
    macros.number(["pn queries"], int(config["query_budget"]))
    macros.text(["pn selection"], str(config.get("selection", "disagreement")))
    macros.number(["pn env steps"], int(config["total_env_steps"]))
    macros.settings("pn", config, ("segment_length", "eval_episodes"))
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
            cells.append(iqm_ci(per_rate[str(rate)]))
        for label, rate in named.items():
            stats = per_rate[str(rate)]
            macros.fixed_interval(["pn", loss, label], stats)
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
    return {"preference_noise": tabular("l" + "c" * len(rates) + "r", header, rows, source)}


# --------------------------------------------------------------------------------------------------------------
# The loss catalog, from the code itself (no result file).


def loss_catalog(macros: Macros) -> dict[str, Table]:
    from irl_bilevel.losses import PREFERENCE_LOSSES

    macros.source = "irl_bilevel.losses.PREFERENCE_LOSSES"
    macros.number(["num losses"], len(PREFERENCE_LOSSES))
    macros.number(["num trl losses"], sum(1 for loss in PREFERENCE_LOSSES.values() if loss.trl_name))
    rows = []
    for name, loss in PREFERENCE_LOSSES.items():
        rows.append([tt(name), escape(loss.source), tt(loss.trl_name) if loss.trl_name else "--",
                     "yes" if loss.needs_reference else "no",
                     format_number(loss.default_beta) if loss.default_beta is not None else "--"])
    header = ["name", "source", "TRL", "ref.", r"$\beta$"]
    table = tabular(r"l>{\raggedright\arraybackslash}p{0.42\linewidth}lcc", header, rows,
                    "irl_bilevel.losses.PREFERENCE_LOSSES")
    return {"loss_catalog": table}


_ENV_KEYS = {"hanoi-3": "hanoi", "steppath": "steppath", "ta-hanoi": "ta hanoi", "ta-frozenlake": "ta frozenlake",
             "ta-lightsout": "ta lightsout"}
_ENV_LABELS = {"hanoi-3": "Hanoi-3", "steppath": "steppath", "ta-hanoi": "TA Hanoi", "ta-frozenlake": "TA FrozenLake",
               "ta-lightsout": "TA LightsOut", "ta-frozenlake-5x5": "TA FrozenLake 5x5"}


def _env_key(env: str) -> str:
    """The macro part of an agentic environment (``ta-frozenlake`` → ``ta frozenlake`` → ``TaFrozenlake``)."""
    return _ENV_KEYS.get(env, env.replace("-", " "))


_AS_METHODS = {"none": "no shaping (sparse success)", "hand_potential": "hand potential (distance to goal)",
               "fixed_candidates": "fixed equal weights", "learned_weights": "learned, from equal weights",
               "learned_from_none": "learned, from zero (changed)"}


def agentic_shaping(data: dict[str, Any], macros: Macros, source: str) -> dict[str, Table]:
    """Shaping with the LoRA inner loop on the agentic envs: per env and method the final goal rate (IQM [CI]) (table
    ``agentic_shaping``) and the goal checks (learned ≥ no shaping); macros for the text."""
    config = data["config"]
    macros.number(["as updates"], int(config["total_updates"]))
    macros.number(["as updates per solve"], int(config["updates_per_solve"]))
    macros.number(["as eval min episodes"], int(config.get("eval_min_episodes", 0)))
    macros.number(["as num candidates"], len(data["candidates"]))
    macros.text(["as harmful candidate"], str(data["harmful_candidate"]))
    macros.fixed(["as initial weight"], 1.0 / len(data["candidates"]), 2)
    envs = list(data["envs"])
    methods = [m for m in _AS_METHODS if all(m in data["envs"][env]["summary"] for env in envs)]
    rows = []
    met = {method: 0 for method in ("learned_weights", "learned_from_none")}
    for method in methods:
        cells = [escape(_AS_METHODS[method])]
        for env in envs:
            cells.append(iqm_ci(data["envs"][env]["summary"][method]["final_goal_rate"]))
        rows.append(cells)
    for env in envs:
        entry = data["envs"][env]
        key = _env_key(env)
        macros.number(["as", key, "starts"], int(entry["num_starts"]))
        for method in methods:
            summary = entry["summary"][method]
            macros.fixed_interval(["as", key, method, "goal"], summary["final_goal_rate"], 3)
            macros.fixed(["as", key, method, "start goal"], float(summary["evaluation_curve"][0]["goal_rate"]["iqm"]),
                         3)
            zero = summary.get("zero_task_gradient_fraction")
            if zero is not None:
                macros.number(["as", key, method, "zero gradient percent"], round(100 * float(zero)))
        for method in met:
            check = entry.get("goals", {}).get(f"{method}_at_least_none")
            if check is not None:
                macros.text(["as", key, method, "goal met"], "met" if check["met"] else "not met")
                met[method] += int(check["met"])
        learned = entry["summary"].get("learned_weights")
        if learned is not None:
            harmful = data["harmful_candidate"]
            per_seed = [float(w[harmful]) for w in learned["final_weights_per_seed"]]
            macros.fixed(["as", key, "harmful weight min"], min(per_seed), 3)
            macros.fixed(["as", key, "harmful weight max"], max(per_seed), 3)
    for method, count in met.items():
        macros.number(["as", method, "goals met"], count)
    macros.number(["as num envs"], len(envs))
    goal_rows = []
    for method in met:
        cells = [escape(f"{_AS_METHODS[method]} ≥ none")]
        for env in envs:
            check = data["envs"][env].get("goals", {}).get(f"{method}_at_least_none")
            cells.append("--" if check is None else ("met" if check["met"] else "not met"))
        goal_rows.append(cells)
    header = ["method", *[escape(_ENV_LABELS.get(env, env)) for env in envs]]
    return {"agentic_shaping": tabular("l" + "c" * len(envs), header, rows + goal_rows, source, [len(rows)])}


_ARL_CONDITIONS = {"untrained": "untrained (base model)", "sparse": "RL: sparse success reward",
                   "true": "RL: true structured reward", "learned": "RL: structured, from demonstrations",
                   "pref_learned": "RL: structured, from preferences",
                   "pref_scalar": "RL: scalar table, from preferences", "dpo": "DPO on the preference pairs",
                   "sparse_plans": "plans: sparse success reward", "true_plans": "plans: true structured reward",
                   "learned_plans": "plans: structured, from demonstrations",
                   "pref_plans": "plans: structured, from preferences"}
_ARL_GOALS = {"learned_beats_sparse": "RL, demonstrations", "pref_learned_beats_sparse": "RL, preferences",
              "learned_plans_beats_sparse_plans": "plans, demonstrations",
              "pref_plans_beats_sparse_plans": "plans, preferences"}
_ARL_SEARCH = {"true": "true", "sparse": "sparse", "learned": "demos, structured",
               "pref_learned": "prefs, structured", "pref_scalar": "prefs, scalar"}


def agentic_reward_learning(data: dict[str, Any], macros: Macros, source: str) -> dict[str, Table]:
    """Learned rewards for a LoRA policy on the project's and TextArena's tasks: per condition and env the success
    rate (IQM [95% CI] over seeds) and the goal checks (table ``agentic_reward_learning``), reward-guided search
    success per reward (table ``agentic_reward_search``); macros for the text."""
    config = data["config"]
    macros.number(["arl updates"], int(config["transfer_updates"]))
    macros.settings("arl", config, ("outer_steps", "irl_updates_per_solve", "eval_min_episodes"))
    macros.number(["arl queries"], int(config["query_budget"]))
    macros.settings("arl", config, ("queries_per_refresh", "search_expansions", "distill_steps"))
    macros.number(["arl documents"], int(config["agentic_documents"]))
    macros.text(["arl dpo beta"], f"{float(config['dpo_beta']):g}")
    macros.text(["arl dpo lr"], f"{float(config['dpo_learning_rate']):g}")
    envs = list(data["envs"])
    conditions = [c for c in _ARL_CONDITIONS if any(c in data["envs"][env]["summary"] for env in envs)]
    rows: list[list[str]] = []
    for condition in conditions:
        cells = [escape(_ARL_CONDITIONS[condition])]
        for env in envs:
            entry = data["envs"][env]["summary"].get(condition)
            cells.append("--" if entry is None else iqm_ci(entry["success_iqm"]))
        rows.append(cells)
    goal_rows: list[list[str]] = []
    counts = dict.fromkeys(_ARL_GOALS, 0)
    for goal, label in _ARL_GOALS.items():
        cells = [escape(f"goal met? {label}")]
        for env in envs:
            check = data["envs"][env].get("goals", {}).get(goal)
            cells.append("--" if check is None else ("yes" if check["met"] else "no"))
            counts[goal] += int(bool(check and check["met"]))
        goal_rows.append(cells)
    for goal, count in counts.items():
        macros.number(["arl", goal, "count"], count)
    macros.number(["arl num envs"], len(envs))
    search_rows: list[list[str]] = []
    for env in envs:
        entry = data["envs"][env]
        key = _env_key(env)
        macros.number(["arl", key, "starts"], int(entry["num_starts"]))
        macros.number(["arl", key, "move cap"], int(entry["move_cap"]))
        for condition in conditions:
            summary = entry["summary"].get(condition)
            if summary is not None:
                macros.fixed_interval(["arl", key, condition], summary["success_iqm"], 3)
                macros.fixed(["arl", key, condition, "malformed"], float(summary["malformed_rate_mean"]), 2)
        for goal in _ARL_GOALS:
            check = entry.get("goals", {}).get(goal)
            if check is not None:
                macros.text(["arl", key, goal], "met" if check["met"] else "not met")
        for name, stats in entry["summary"].get("identifiability", {}).items():
            macros.fixed_interval(["arl", key, name, "epic"], stats["epic"], 2)
        per_seed = entry["seeds"]
        if per_seed and "preference_learning" in per_seed[0]:
            pairs = [int(row["preference_learning"]["labelled_pairs"]) for row in per_seed]
            macros.number(["arl", key, "pairs min"], min(pairs))
            macros.number(["arl", key, "pairs max"], max(pairs))
        for reward, stats in entry.get("search", {}).items():
            macros.fixed(["arl", key, "search", reward], float(stats["success_mean"]), 2)
    for name, stats in data.get("across_games", {}).items():
        macros.fixed_interval(["arl across", name], stats, 3)
    search_names = [n for n in _ARL_SEARCH if any(n in data["envs"][env].get("search", {}) for env in envs)]
    for reward in search_names:
        cells = [escape(_ARL_SEARCH[reward])]
        for env in envs:
            stats = data["envs"][env].get("search", {}).get(reward)
            cells.append("--" if stats is None else format_fixed(stats["success_mean"]))
        search_rows.append(cells)
    macros.number(["arl seeds"], len(data["envs"][envs[0]]["seeds"]))
    header = ["reward / training", *[escape(_ENV_LABELS.get(env, env)) for env in envs]]
    tables = {"agentic_reward_learning": tabular("l" + "c" * len(envs), header, rows + goal_rows, source,
                                                 [len(rows)])}
    if search_rows:
        tables["agentic_reward_search"] = tabular("l" + "c" * len(envs), ["search reward", *header[1:]],
                                                  search_rows, source)
    return tables


_TS_METHODS = {"sampling": "plain sampling", "a_star_uniform": "A*, h = 0 (uniform cost)",
               "a_star_learned": "A*, heuristic of the learned reward",
               "a_star_true": "A*, heuristic of the true reward"}


def agentic_search(data: dict[str, Any], macros: Macros, source: str) -> dict[str, Table]:
    """Tool-use search: per method the tasks solved (IQM [CI]), expansions and tool calls per task (stratified IQM
    [CI]) (table ``agentic_tool_search``); macros for the text."""
    config = data["config"]
    macros.settings("ts", config, ("call_budget", "max_expansions", "pairs_per_task"))
    macros.number(["ts num tasks"], len(data["tasks"]))
    rows = []
    for method, label in _TS_METHODS.items():
        entry = data["summary"].get(method)
        if entry is None:
            continue
        macros.fixed_interval(["ts", method, "success"], entry["success"], 2)
        for metric in ("expansions", "calls"):
            macros.number(["ts", method, metric], float(entry[metric]["iqm"]))
        expansions = [format_number(float(entry["expansions"][bound])) for bound in ("iqm", "low", "high")]
        rows.append([escape(label), iqm_ci(entry["success"]), f"{expansions[0]} [{expansions[1]}, {expansions[2]}]",
                     format_number(float(entry["calls"]["iqm"]))])
    ratios = [row["theta"][3] / row["theta"][4] for row in data["seeds"] if row["theta"][4] > 0]
    if ratios:
        macros.fixed(["ts ratio min"], min(ratios), 2)
        macros.fixed(["ts ratio max"], max(ratios), 2)
    header = ["method", "tasks solved", "expansions per task", "tool calls per task"]
    return {"agentic_tool_search": tabular("lccc", header, rows, source)}


# --------------------------------------------------------------------------------------------------------------
# results/aspect_labels.json

_AL_METHODS = {"scalar": "scalar label", "per_aspect": "one label per aspect",
               "per_aspect_split": "one aspect label per query"}


def aspect_labels(data: dict[str, Any], macros: Macros, source: str) -> dict[str, Table]:
    """Scalar against per-aspect labels: per teacher, method and query budget the normalized return and the EPIC
    distance, IQM [CI] over seeds (``Al<Teacher><Method><Budget><Metric>Iqm``); the tables ``aspect_labels_return``
    and ``aspect_labels_epic`` (rows teacher × method, columns budgets)."""
    config, setting, summary = data["config"], data["setting"], data["summary"]
    budgets = [int(b) for b in config["budgets"]]
    macros.settings("al", config, ("seeds", "grid_size"))
    macros.number(["al mistake rate"], float(config["mistake_rate"]))
    macros.text(["al aspects"], ", ".join(a.replace("_", " ") for a in setting["aspects"]))
    macros.text(["al aspect weights"], " / ".join(f"{float(w):g}" for w in config["aspect_weights"]))
    macros.number(["al min budget"], min(budgets))
    macros.number(["al max budget"], max(budgets))
    tables: dict[str, Table] = {}
    for metric in ("normalized_return", "epic"):
        rows: list[list[str]] = []
        groups: list[int] = []
        for teacher in config["teachers"]:
            groups.append(len(rows))
            for method, label in _AL_METHODS.items():
                entries = {int(e["budget"]): e for e in summary[teacher][method][metric]}
                cells = [escape(teacher) if len(rows) == groups[-1] else "", escape(label)]
                for budget in budgets:
                    entry = entries.get(budget)
                    if entry is not None:
                        macros.fixed_interval(["al", teacher, method, budget, metric], entry, 3)
                    cells.append("--" if entry is None else iqm_ci(entry))
                rows.append(cells)
        header = ["teacher", "labels", *[f"{b} queries" for b in budgets]]
        name = "aspect_labels_return" if metric == "normalized_return" else "aspect_labels_epic"
        tables[name] = tabular("ll" + "c" * len(budgets), header, rows, source, groups)
    return tables


# --------------------------------------------------------------------------------------------------------------
# results/preference_feedback.json


def preference_feedback(data: dict[str, Any], macros: Macros, source: str) -> dict[str, Table]:
    """RL from preferences with the six B-Pref teachers, four query-selection rules and a harder testbed: the
    normalized return IQM [CI] per teacher and budget (table ``preference_feedback_teachers``), per selection rule,
    per harder-testbed budget with its labelled pairs; the harder runs that end at or above the target."""
    config, summary = data["config"], data["summary"]
    harder = config["harder"]
    macros.text(["pf env"], config["env_id"])
    macros.number(["pf env steps"], int(config["total_env_steps"]))
    macros.settings("pf", config, ("segment_length", "seeds", "selection_budget"))
    macros.text(["pf harder env"], harder["env_id"])
    macros.number(["pf harder env steps"], int(harder["total_env_steps"]))
    macros.text(["pf harder exploration"], str(harder["exploration"]).replace("_", " "))
    budgets = [int(b) for b in config["budgets"]]
    macros.number(["pf min budget"], min(budgets))
    macros.number(["pf max budget"], max(budgets))
    rows = []
    for teacher in config["teachers"]:
        cells = [escape(teacher)]
        for budget in budgets:
            entry = summary["teachers"][teacher].get(str(budget))
            if entry is not None:
                macros.fixed_interval(["pf", teacher, budget], entry)
            cells.append("--" if entry is None else iqm_ci(entry))
        rows.append(cells)
    selection_rows = []
    for selection in config["selections"]:
        entry = summary["selections"].get(selection)
        macros.fixed_interval(["pf selection", selection], entry)
        selection_rows.append([escape(selection), "--" if entry is None else iqm_ci(entry)])
    harder_rows = []
    for budget in (int(b) for b in harder["budgets"]):
        entry = summary["harder"].get(str(budget))
        macros.fixed_interval(["pf harder", budget], entry)
        pairs = None if entry is None else float(entry["labelled_pairs"])
        macros.number(["pf harder", budget, "pairs"], pairs, digits=3)
        harder_rows.append([str(budget), "--" if entry is None else iqm_ci(entry),
                            "--" if pairs is None else format_number(pairs, digits=3)])
    runs = [run for run in data["runs"] if run["part"] == "harder"]
    macros.number(["pf harder runs"], len(runs))
    macros.number(["pf harder runs at expert"], sum(1 for run in runs if float(run["normalized_return"]) >= 0.9))
    header = ["teacher", *[f"{b} queries" for b in budgets]]
    return {"preference_feedback_teachers": tabular("l" + "c" * len(budgets), header, rows, source),
            "preference_feedback_selection": tabular("lc", ["selection", "return, IQM [95\\% CI]"], selection_rows,
                                                     source),
            "preference_feedback_harder": tabular("rcr", ["queries", "return, IQM [95\\% CI]", "labelled pairs"],
                                                  harder_rows, source)}


# --------------------------------------------------------------------------------------------------------------
# results/ml_irl_cartpole.json


def ml_irl_cartpole(data: dict[str, Any], macros: Macros, source: str) -> dict[str, Table]:
    """ML-IRL with an SB3 inner loop on CartPole: per-seed final and transfer returns with their IQM [CI], env steps
    to 0.9, and the lowest return after first reaching 0.9 (learning is not monotone)."""
    from irl_bilevel.statistics import iqm_with_ci

    config = data["config"]
    macros.number(["ml demonstrations"], int(config["num_demonstrations"]))
    macros.number(["ml outer steps"], int(config["outer_steps"]))
    macros.number(["ml steps per outer step"], int(config["env_steps_per_outer_step"]))
    macros.number(["ml transfer steps"], int(config["transfer_steps"]))
    runs = sorted(data["runs"], key=lambda run: int(run["seed"]))
    macros.number(["ml seeds"], len(runs))
    macros.number(["ml env steps"], max(int(run["env_steps"]) for run in runs))
    finals = [float(run["final_normalized_return"]) for run in runs]
    transfers = [float(run["transfer_normalized_return"]) for run in runs]
    macros.fixed_interval(["ml final"], iqm_with_ci(finals))
    macros.fixed_interval(["ml transfer"], iqm_with_ci(transfers))
    macros.text(["ml finals"], " / ".join(format_fixed(value, 3) for value in finals))
    reached = [run["env_steps_to_0.9"] for run in runs if run.get("env_steps_to_0.9") is not None]
    macros.number(["ml reached"], len(reached))
    macros.number(["ml steps to target min"], None if not reached else min(int(r) for r in reached))
    macros.number(["ml steps to target max"], None if not reached else max(int(r) for r in reached))
    dips = []
    for run in runs:
        history = [float(row["normalized_return"]) for row in run["history"]]
        first = next((i for i, value in enumerate(history) if value >= 0.9), None)
        if first is not None:
            dips.append(min(history[first:]))
    macros.fixed(["ml lowest after target"], min(dips) if dips else None)
    return {}


# --------------------------------------------------------------------------------------------------------------
# results/irl_ablation_sweep.json (`make ablation`: the sweep sweeps/irl_ablation.json)

_AB_METRICS = {"return": None, "epic": "summary.epic_distance", "transfer": "transfer_normalized_return"}


def irl_ablation_sweep(data: dict[str, Any], macros: Macros, source: str) -> dict[str, Table]:
    """The IRL ablation on CartPole: per grid point the IQM [CI] over seeds of the final return, the EPIC distance
    and the reward transfer (table ``irl_ablation``); the mean of the per-point IQMs for every level of every factor
    (``AbReturnEnvStepsPerOuterStepTwoFiveSix``) and per hypergradient × inner steps; trials at or below the random
    policy's return; the median CI width of the return."""
    grid = data["spec"]["grid"]
    points = data["grid_points"]
    macros.number(["ab trials"], len(data["trials"]))
    macros.number(["ab points"], len(points))
    macros.number(["ab seeds"], len(data["spec"]["seeds"]))
    macros.text(["ab env"], str(data["spec"]["overrides"].get("env_id", "")))

    def value(point: dict[str, Any], metric: str, bound: str = "iqm") -> float:
        key = _AB_METRICS[metric]
        return float(point[bound] if key is None else point["extra_metrics"][key][bound])

    for factor, levels in grid.items():
        for level in levels:
            chosen = [p for p in points if p["point"][factor] == level]
            for metric in _AB_METRICS:
                macros.fixed(["ab", metric, factor, level], sum(value(p, metric) for p in chosen) / len(chosen))
    for hypergradient in grid["hypergradient"]:
        for steps in grid["env_steps_per_outer_step"]:
            chosen = [p for p in points if p["point"]["hypergradient"] == hypergradient
                      and p["point"]["env_steps_per_outer_step"] == steps]
            for metric in _AB_METRICS:
                macros.fixed(["ab", hypergradient, steps, metric], sum(value(p, metric) for p in chosen) / len(chosen))
    floor = 0.05  # a trial at or below the random policy's normalized return (≈ 0)
    for hypergradient in grid["hypergradient"]:
        trials = [t for t in data["trials"] if t["point"]["hypergradient"] == hypergradient]
        macros.number(["ab", hypergradient, "trials"], len(trials))
        macros.number(["ab", hypergradient, "at random"], sum(1 for t in trials if float(t["metric"]) <= floor))
    widths = sorted(float(p["high"]) - float(p["low"]) for p in points)
    macros.fixed(["ab median ci width"], widths[len(widths) // 2])
    best = max((p for p in points if p["point"]["hypergradient"] == "maxent"), key=lambda p: float(p["iqm"]))
    macros.fixed_interval(["ab best"], best)
    macros.text(["ab best structure"], str(best["point"]["reward_structure"]).replace("_", "-"))
    macros.number(["ab best steps"], int(best["point"]["env_steps_per_outer_step"]))
    macros.number(["ab best demonstrations"], int(best["point"]["num_demonstrations"]))
    rows = []
    order = sorted(points, key=lambda p: (grid["hypergradient"].index(p["point"]["hypergradient"]),
                                          int(p["point"]["env_steps_per_outer_step"]),
                                          grid["reward_structure"].index(p["point"]["reward_structure"]),
                                          int(p["point"]["num_demonstrations"])))
    for point in order:
        setting = point["point"]
        rows.append([escape(str(setting["hypergradient"])), str(setting["env_steps_per_outer_step"]),
                     escape(str(setting["reward_structure"]).replace("_", "-")), str(setting["num_demonstrations"]),
                     iqm_ci(point), iqm_ci(point["extra_metrics"]["summary.epic_distance"]),
                     iqm_ci(point["extra_metrics"]["transfer_normalized_return"])])
    header = ["hypergradient", "steps per outer step", "reward", "demos", "final return", "EPIC", "transfer"]
    return {"irl_ablation": tabular("lrlrccc", header, rows, source)}


# --------------------------------------------------------------------------------------------------------------
# results/smollm2_frontier.json, smollm2_ai_feedback.json and smollm2_agentic.json (the real pretrained model)


def _interval_cell(stats: dict[str, Any] | None, digits: int = 2) -> str:
    """``IQM [low, high]`` with :func:`format_number` (for values that are not in [0, 1], such as KL)."""
    if stats is None or not stats.get("n"):
        return "--"
    values = [float(stats[bound]) for bound in ("iqm", "low", "high")]
    if any(math.isnan(value) for value in values):
        return "--"
    iqm, low, high = (format_number(value, digits) if value else "0" for value in values)
    return f"{iqm} [{low}, {high}]"


def smollm2_frontier(data: dict[str, Any], macros: Macros, source: str) -> dict[str, Table]:
    """The sentiment frontier on SmolLM2: per method the final gold sentiment, KL and gold total, IQM [CI] over
    seeds (``Sm<Method>Sentiment{Iqm,Low,High}``), in the order of the sentiment IQM with whether each method's
    interval is apart from the next one's (table ``smollm2_frontier``); the acceptance check (every DPO β above the
    reference, intervals apart)."""
    config, summary = data["config"], data["summary"]
    macros.text(["sm model"], str(data["model"]["name"]))
    parameters = data["model"].get("weights", {}).get("parameters")  # a local folder or hub id: none recorded
    if parameters is not None:
        macros.number(["sm parameters"], int(parameters))
    macros.settings("sm", config, ("seeds", "steps", "train_prompts", "test_prompts"))
    macros.text(["sm dpo betas"], ", ".join(f"{float(b):g}" for b in config["dpo_betas"]))
    macros.text(["sm accepted"], "met" if summary["acceptance"]["passed"] else "not met")
    rows = []
    for entry in summary["order"]:
        name = entry["method"]
        stats = summary["methods"][name]
        macros.fixed_interval(["sm", name, "sentiment"], stats["sentiment"])
        for bound in ("iqm", "low", "high"):
            macros.number(["sm", name, "kl", bound], float(stats["kl"][bound]))
        rows.append([escape(name.replace("_", " ")), iqm_ci(stats["sentiment"]), _interval_cell(stats["kl"]),
                     iqm_ci(stats["total"]), {True: "yes", False: "no", None: "--"}[entry["apart_from_next"]]])
    header = ["method", "gold sentiment", "KL (nats)", "gold total", "apart from next"]
    return {"smollm2_frontier": tabular("lcccc", header, rows, source)}


def smollm2_ai_feedback(data: dict[str, Any], macros: Macros, source: str) -> dict[str, Table]:
    """AI feedback on SmolLM2: each evaluator's agreement with the gold labels (table
    ``smollm2_ai_feedback_agreement``), the judge per question (``smollm2_ai_feedback_questions``), and DPO trained
    on each labelling (``smollm2_ai_feedback_dpo``: gold sentiment at a matched KL, final sentiment and KL), IQM [CI]
    over seeds."""
    config, summary = data["config"], data["summary"]
    macros.text(["aif model"], str(config["model"]))
    macros.number(["aif seeds"], int(config["seeds"]))
    macros.fixed_interval(["aif fleiss"], summary["fleiss_kappa"])
    macros.fixed_interval(["aif mistake rate"], summary["mistake_rate"])
    macros.fixed_interval(["aif reference sentiment"], summary["reference_sentiment"])
    for bound in ("iqm", "low", "high"):
        macros.number(["aif matched kl", bound], float(summary["matched_kl"][bound]))
    agreement = []
    with_judge = summary["judge_kappa_with"]
    for name, measures in summary["overall"].items():
        macros.fixed_interval(["aif", name, "accuracy"], measures["accuracy"])
        macros.fixed_interval(["aif", name, "kappa"], measures["cohen_kappa"])
        macros.fixed_interval(["aif", name, "intransitive"], measures["intransitive_rate"])
        if name in with_judge:
            macros.fixed_interval(["aif judge kappa with", name], with_judge[name])
        agreement.append([escape(name.replace("_", " ")),
                          *(iqm_ci(measures[key]) for key in ("accuracy", "cohen_kappa", "flip_rate", "tie_rate",
                                                               "intransitive_rate")),
                          iqm_ci(with_judge[name]) if name in with_judge else "--"])
    questions = []
    for question, measures in summary["judge_per_question"].items():
        macros.fixed_interval(["aif question", question, "accuracy"], measures["accuracy"])
        macros.fixed_interval(["aif question", question, "position bias"], measures["position_bias"])
        questions.append([escape(question), *(iqm_ci(measures[key]) for key in
                                              ("accuracy", "cohen_kappa", "position_bias"))])
    dpo = []
    for label_source, outcome in summary["dpo"].items():
        macros.fixed_interval(["aif dpo", label_source, "matched"], outcome["matched_sentiment"])
        macros.fixed_interval(["aif dpo", label_source, "final"], outcome["final_sentiment"])
        macros.fixed_interval(["aif dpo", label_source, "final kl"], outcome["final_kl"])
        dpo.append([escape(label_source.replace("_", " ")), iqm_ci(outcome["matched_sentiment"]),
                    iqm_ci(outcome["final_sentiment"]), _interval_cell(outcome["final_kl"]),
                    _interval_cell(outcome["pairs"], 3)])
    return {
        "smollm2_ai_feedback_agreement": tabular(
            "lcccccc", ["evaluator", "accuracy", r"Cohen's $\kappa$", "flip", "ties", "intransitive",
                        r"$\kappa$ with the judge"], agreement, source),
        "smollm2_ai_feedback_questions": tabular(
            "lccc", ["question", "judge accuracy", r"$\kappa$", "position bias"], questions, source),
        "smollm2_ai_feedback_dpo": tabular(
            "lcccc", ["DPO labels", "sentiment at matched KL", "final sentiment", "final KL", "pairs"], dpo, source),
    }


_SAG_CONDITIONS = {"true": "true structured reward", "learned": "structured, from demonstrations",
                   "pref": "structured, from preferences", "sparse": "sparse success reward"}


def smollm2_agentic(data: dict[str, Any], macros: Macros, source: str) -> dict[str, Table]:
    """SmolLM2 acting in the text games: zero-shot success and malformed/invalid rates per game (table
    ``smollm2_agentic_zero_shot``); the plans route, success per game and reward (IQM [CI] over seeds) and the goal
    checks (``smollm2_agentic``), with per (game, reward) the search's success and the adapters' final imitation
    loss, malformed and invalid rates (``smollm2_agentic_diagnostics``); the RL diagnostic (``smollm2_agentic_rl``);
    the goal count and each part's recorded time."""
    config = data["config"]
    macros.text(["sag model"], str(config["model"]))
    macros.settings("sag", config, ("seeds", "rl_seeds", "rl_updates", "distill_steps", "distill_batch_size",
                                    "query_budget", "zero_shot_sampled_episodes"))
    macros.text(["sag rl game"], _ENV_LABELS.get(config["rl_game"], config["rl_game"]))
    for game, expansions in config["search_expansions"].items():
        macros.number(["sag", game, "expansions"], int(expansions))
    zero_rows = []
    for game, entry in data["zero_shot"].items():
        macros.number(["sag", game, "starts"], int(entry["starts"]))
        cells = [escape(_ENV_LABELS.get(game, game)), str(entry["starts"])]
        for decoding in ("greedy", "sampled"):
            result = entry[decoding]
            for key in ("success_rate", "malformed_rate", "invalid_action_rate"):
                macros.fixed(["sag zero", game, decoding, key], float(result[key]))
                cells.append(format_fixed(float(result[key])))
        zero_rows.append(cells)
    games = list(data["summary"])
    rows, diagnostic_rows, goal_rows = [], [], []
    for condition, label in _SAG_CONDITIONS.items():
        cells = [escape(label)]
        for game in games:
            stats = data["summary"][game].get(condition)
            cells.append("--" if stats is None else iqm_ci(stats["success_iqm"]))
        rows.append(cells)
    diagnostics = ("search_success_mean", "final_loss_mean", "malformed_rate_mean", "invalid_action_rate_mean")
    for game in games:
        for condition, stats in data["summary"][game].items():
            macros.fixed_interval(["sag", game, condition], stats["success_iqm"])
            for key in diagnostics:
                macros.fixed(["sag", game, condition, key.removesuffix("_mean")], stats[key])
            lengths = [row["search"][condition]["plan_length_ratio"] for row in data["plans"][game]["seeds"].values()
                       if condition in row.get("search", {})]
            finite = [float(v) for v in lengths if v is not None]  # None: the search planned no start
            macros.fixed(["sag", game, condition, "search length"], sum(finite) / len(finite) if finite else None)
            diagnostic_rows.append([escape(_ENV_LABELS.get(game, game)), escape(_SAG_CONDITIONS[condition]),
                                    *(format_fixed(stats[key]) for key in diagnostics),
                                    iqm_ci(stats["success_iqm"])])
    for key in dict.fromkeys(key for game in games for key in data["goals"][game]):  # "<learned>_beats_<sparse>"
        name, other = key.split("_beats_")
        cells = [escape(f"goal met? {_SAG_CONDITIONS[name]} above {other}")]
        for game in games:
            check = data["goals"][game].get(key)
            cells.append("--" if check is None else ("yes" if check["met"] else "no"))
        goal_rows.append(cells)
    goal = data["goal"]
    macros.number(["sag games met"], len(goal["textarena_games_met"]))
    macros.number(["sag games required"], int(goal["required"]))
    macros.text(["sag goal"], "met" if goal["met"] else "not met")
    rl_rows = []
    for condition, stats in data["rl_summary"].items():
        macros.fixed_interval(["sag rl", condition], stats["success_iqm"])
        for key in ("first_true_return_mean", "final_true_return_mean", "final_malformed_rate_mean"):
            macros.fixed(["sag rl", condition, key.removesuffix("_mean")], stats[key])
        rl_rows.append([escape(_SAG_CONDITIONS.get(condition, condition)), iqm_ci(stats["success_iqm"]),
                        format_fixed(stats["first_true_return_mean"]), format_fixed(stats["final_true_return_mean"]),
                        format_fixed(stats["final_malformed_rate_mean"])])
    timing = data["timing"]
    for part in ("zero_shot", "distillation", "plan_evaluation", "rl"):
        macros.number(["sag", part, "minutes"], round(float(timing[part]) / 60))
    macros.number(["sag adapters"], int(timing["adapters_trained"]))
    header = ["reward", *(escape(_ENV_LABELS.get(game, game)) for game in games)]
    return {
        "smollm2_agentic_zero_shot": tabular(
            "lccccccc", ["game", "starts", "greedy success", "malformed", "invalid", "sampled success", "malformed",
                         "invalid"], zero_rows, source),
        "smollm2_agentic": tabular("l" + "c" * len(games), header, rows + goal_rows, source, [len(rows)]),
        "smollm2_agentic_diagnostics": tabular(
            "llccccc", ["game", "reward", "search success", "imitation loss", "malformed", "invalid", "success"],
            diagnostic_rows, source),
        "smollm2_agentic_rl": tabular("lcccc", ["RL reward", "greedy success", "first return", "final return",
                                                "final malformed"], rl_rows, source),
    }


# --------------------------------------------------------------------------------------------------------------
# results/seeds_<experiment>.json: `irlb sweep --spec sweeps/seeds_<experiment>.json`, a single-seed experiment
# over 5 seeds (no grid)


def seed_sweep(data: dict[str, Any], macros: Macros, source: str) -> dict[str, Table]:
    """Per swept metric (a dotted path into the experiment's result file), the IQM and 95% CI over seeds:
    ``Seeds<Experiment><Path>Iqm`` / ``Low`` / ``High``, and ``Seeds<Experiment>NumSeeds``."""
    (point,) = data["grid_points"]  # a seed sweep has one grid point
    prefix = ["seeds", data["experiment"]]
    macros.number([*prefix, "num seeds"], int(point["n"]))
    metrics = {data["metric"]: point, **point.get("extra_metrics", {})}
    for path, stats in metrics.items():
        for bound in ("iqm", "low", "high"):
            macros.number([*prefix, path, bound], float(stats[bound]))
    return {}


RESULT_HANDLERS: dict[str, Handler] = {
    "agentic_shaping": agentic_shaping,
    "agentic_reward_learning": agentic_reward_learning,
    "agentic_search": agentic_search,
    "reward_recovery": reward_recovery,
    "hypergradient_accuracy": hypergradient_accuracy,
    "loss_sweep": loss_sweep,
    "feedback_consistency": feedback_consistency,
    "learned_shaping": learned_shaping,
    "shaping_classic_control": shaping_classic_control,
    "sentiment_frontier": sentiment_frontier,
    "preference_noise": preference_noise,
    "aspect_labels": aspect_labels,
    "preference_feedback": preference_feedback,
    "seeds_feedback_consistency": seed_sweep,
    "seeds_reward_recovery": seed_sweep,
    "seeds_sentiment_frontier": seed_sweep,
}

# Result files the paper does not use, read when present (the results page summarizes them): files `irlb reproduce`
# does not write (a missing one is no warning; their commands are in irlb.paper.results_page) and experiments whose
# committed file may not have landed yet (a missing one is warned about, as every experiment of the registry).
EXTRA_RESULT_HANDLERS: dict[str, Handler] = {
    "ml_irl_cartpole": ml_irl_cartpole,
    "irl_ablation_sweep": irl_ablation_sweep,
    "smollm2_frontier": smollm2_frontier,
    "smollm2_ai_feedback": smollm2_ai_feedback,
    "smollm2_agentic": smollm2_agentic,
}

# The first key of every macro each handler writes (``macro_name(prefix, ...)``): a macro the paper uses that starts
# with it belongs to that result file (irlb.paper.build fills it with a placeholder where the file does not produce it).
RESULT_PREFIXES: dict[str, str] = {
    "agentic_shaping": "as",
    "agentic_reward_learning": "arl",
    "agentic_search": "ts",
    "reward_recovery": "rr",
    "hypergradient_accuracy": "hg",
    "loss_sweep": "ls",
    "feedback_consistency": "fc",
    "learned_shaping": "sh",
    "shaping_classic_control": "scc",
    "sentiment_frontier": "sf",
    "preference_noise": "pn",
    "aspect_labels": "al",
    "preference_feedback": "pf",
    "ml_irl_cartpole": "ml",
    "irl_ablation_sweep": "ab",
    "smollm2_frontier": "sm",
    "smollm2_ai_feedback": "aif",
    "smollm2_agentic": "sag",
}
