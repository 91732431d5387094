"""The macros and tables of the benchmark result files (``benchmarks/results/<name>.json``): our methods side by
side with imitation and TRL."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
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
)

# --------------------------------------------------------------------------------------------------------------
# benchmarks/results/mce_irl_vs_imitation.json


def mce_irl_vs_imitation(data: dict[str, Any], macros: Macros, source: str) -> dict[str, Table]:
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
        macros.add(macro_name("mce speedup dense", key), ge + format_number(float(ratio["ours_dense"])),
                   float(ratio["ours_dense"]))
        macros.add(macro_name("mce speedup sparse", key), ge + format_number(float(ratio["ours_sparse"])),
                   float(ratio["ours_sparse"]))
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
    return {"mce_benchmark": tabular("lrrrrr", header, rows, source)}


# --------------------------------------------------------------------------------------------------------------
# benchmarks/results/trl_loss_parity.json


def trl_loss_parity(data: dict[str, Any], macros: Macros, source: str) -> dict[str, Table]:
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
_DPO_MODELS = {"builtin": "builtin", "llama_20m": "llama", "gpt2_v2000": "wide vocab", "smollm2_135m": "smollm"}
_DPO_SIDES = ("ours", "trl", "trl_precompute")


def dpo_vs_trl(data: dict[str, Any], macros: Macros, source: str, prefix: str = "dpo") -> dict[str, Table]:
    """Macros of a ``dpo_vs_trl`` file, their names starting with ``prefix`` (``DpoSmollmOursOverTrlPrecompute``);
    the chat-prompt run of SmolLM2 (``dpo_vs_trl_smollm2_chat.json``) is read by the same code under ``dpochat``."""
    protocol = data["protocol"]
    macros.text([prefix, "trl version"], data["trl_version"])
    macros.number([prefix, "repeats"], int(protocol["repeats"]))
    macros.number([prefix, "timed steps"], int(protocol["timed_steps"]))
    macros.number([prefix, "warmup steps"], int(protocol["warmup_steps"]))
    macros.number([prefix, "parity steps"], int(protocol["parity_steps"]))
    threads = [int(t) for t in protocol["threads"]]
    macros.number([prefix, "threads"], threads[0])
    macros.number([prefix, "max threads"], threads[-1])
    macros.number([prefix, "cpus"], int(data["provenance"]["machine"]["cpus"]))
    match = re.search(r">=\s*([0-9.]+)", data.get("goal", ""))
    if match:
        macros.number([prefix, "goal ratio"], float(match.group(1)))
    loads = [max(float(row["load_1min_before"]), float(row["load_1min_after"])) for row in data["load_average"]]
    macros.number([prefix, "max load"], max(loads))
    ratios: dict[str, list[float]] = {}
    diffs: list[float] = []
    identical = True
    for model, key in _DPO_MODELS.items():
        if model not in data["results"]:
            continue
        setup = data["setup"][model]
        result = data["results"][model][f"threads_{threads[0]}"]
        # files since the SmolLM2 row: each model's own repeats and steps, and the goal checked per model
        own = protocol.get("per_model", {}).get(model, {"repeats": protocol["repeats"],
                                                        "steps": protocol["timed_steps"],
                                                        "warmup": protocol["warmup_steps"]})
        macros.number([prefix, key, "repeats"], int(own["repeats"]))
        macros.number([prefix, key, "timed steps"], int(own["steps"]))
        macros.number([prefix, key, "warmup steps"], int(own["warmup"]))
        if model in data.get("goal_met", {}):
            macros.text([prefix, key, "goal met"], "met" if data["goal_met"][model] else "not met")
        macros.number([prefix, key, "vocab"], int(setup["embedding_rows"]))
        macros.number([prefix, key, "prompt tokens min"], int(setup["prompt_tokens_min_max"][0]))
        macros.number([prefix, key, "prompt tokens max"], int(setup["prompt_tokens_min_max"][1]))
        if "positions" in setup:  # files from before the benchmark recorded them lack it
            _position_macros(macros, [prefix, key], setup["positions"])
        macros.number([prefix, key, "trainable"], int(setup["trainable_parameters"]))
        if "parameters" in setup:
            macros.number([prefix, key, "parameters"], int(setup["parameters"]))
        for side in (s for s in _DPO_SIDES if s in result):
            macros.number([prefix, key, side, "steps per second"], float(result[side]["steps_per_second_median"]))
            identical = identical and bool(result[side]["runs_identical_losses"])
            if side != "trl":
                diffs.append(float(result[side]["max_abs_loss_diff_vs_trl"]))
        for pair, ratio in result["ratios"].items():
            ours, theirs = pair.split("/")
            macros.number([prefix, key, ours, "over", theirs], float(ratio))
            ratios.setdefault(pair, []).append(float(ratio))
        for pair, ratio in result.get("cpu_time_ratios", {}).items():
            ours, theirs = pair.split("/")
            macros.number([prefix, key, ours, "over", theirs, "cpu time"], float(ratio))
        for pair, ratio in result.get("peak_rss_ratios", {}).items():
            ours, theirs = pair.split("/")
            macros.number([prefix, key, ours, "over", theirs, "peak rss"], float(ratio))
        for count in threads[1:]:
            for pair, ratio in data["results"][model][f"threads_{count}"]["ratios"].items():
                ours, theirs = pair.split("/")
                macros.number([prefix, key, ours, "over", theirs, "threads", count], float(ratio))
    first = data["setup"][next(iter(data["setup"]))]
    macros.number([prefix, "pairs"], int(first["pairs"]))
    macros.number([prefix, "beta"], float(first["beta"]))
    macros.number([prefix, "lora rank"], int(first["lora"]["r"]))
    macros.number([prefix, "learning rate"], float(first["learning_rate"]))
    for pair, values in ratios.items():
        ours, theirs = pair.split("/")
        macros.number([prefix, ours, "over", theirs, "min"], min(values))
        macros.number([prefix, ours, "over", theirs, "max"], max(values))
    macros.number([prefix, "max loss diff"], max(diffs))
    macros.text([prefix, "runs identical"], "yes" if identical else "no")
    return {}


def _position_macros(macros: Macros, keys: list[str], positions: dict[str, Any]) -> None:
    """``<keys> real tokens``, ``ours rows``, ``ours width``, ``ours body``, ``ours tokens``, ``ours padding``,
    ``ours head`` and ``trl positions`` from the positions ``benchmarks/dpo_vs_trl.py`` records (its ``positions``)."""
    rows, width = positions["ours_rows"]
    for name, value in (("real tokens", positions["real_tokens"]), ("ours rows", rows), ("ours width", width),
                        ("ours body", positions["ours_body"]), ("ours tokens", positions["ours_tokens"]),
                        ("ours padding", positions["ours_body"] - positions["ours_tokens"]),
                        ("ours head", positions["ours_head"]), ("trl positions", positions["trl_body_and_head"])):
        macros.number([*keys, name], int(value))


# --------------------------------------------------------------------------------------------------------------
# benchmarks/results/dpo_step_profile.json

_ELEMENTWISE = ("aten::mul", "aten::sub", "aten::copy_", "aten::exp")


def dpo_step_profile(data: dict[str, Any], macros: Macros, source: str) -> dict[str, Table]:
    """Macros ``Dpoprof…`` of the DPO step's profile: per side the self-CPU shares (in %) of matrix products,
    attention, the log-softmax, TRL's LM-head kernel and its element-wise operators; the positions each side
    computes; our step's matrix-product work (GFLOP), its rate and a plain product's rate on this core."""
    def share(side: str, match: Callable[[str], bool]) -> float:
        return 100 * sum(row["self_cpu_share"] for row in data[side]["top"] if match(row["operator"]))

    for side, key in (("ours", "ours"), ("trl_precompute", "trl")):
        record = data[side]
        macros.number(["dpoprof", key, "matmul share"],
                      100 * record["matmul_self_cpu_seconds"] / record["self_cpu_seconds"], digits=3)
        macros.number(["dpoprof", key, "mm share"], share(side, lambda name: name == "aten::mm"), digits=3)
    macros.number(["dpoprof ours attention share"], share("ours", lambda name: "scaled_dot_product" in name),
                  digits=2)
    macros.number(["dpoprof ours log softmax share"], share("ours", lambda name: "log_softmax" in name), digits=2)
    macros.number(["dpoprof trl head share"], share("trl_precompute", lambda name: name == "aten::addmm_"),
                  digits=2)
    macros.number(["dpoprof trl elementwise share"], share("trl_precompute", lambda name: name in _ELEMENTWISE),
                  digits=3)
    positions, pairs = data["setup"]["positions"], int(data["setup"]["pairs"])
    _position_macros(macros, ["dpoprof"], positions)
    for name, value in (("pairs", pairs), ("trl sequences", 2 * pairs),
                        ("trl width", positions["trl_body_and_head"] // (2 * pairs))):
        macros.number(["dpoprof", name], int(value))
    macros.number(["dpoprof body ratio"], positions["trl_body_and_head"] / positions["ours_body"], digits=3)
    macros.number(["dpoprof head ratio"], positions["trl_body_and_head"] / positions["ours_head"], digits=3)
    matmul = data.get("matmul")
    if matmul is not None:
        work = matmul["ours_gflop_per_step"]
        macros.number(["dpoprof gflop"], float(work["total"]), digits=3)
        macros.number(["dpoprof gflop body"], float(work["body"]), digits=3)
        macros.number(["dpoprof gflop head"], float(work["head"]), digits=3)
        macros.number(["dpoprof gflops"], float(matmul["ours_gflops"]))
        macros.number(["dpoprof plain gflops"], float(matmul["plain_gflops"]))
        macros.number(["dpoprof rate share"], 100 * matmul["ours_gflops"] / matmul["plain_gflops"])
        macros.text(["dpoprof plain shape"], " × ".join(str(n) for n in matmul["plain_shape"]))
    return {}


# --------------------------------------------------------------------------------------------------------------
# benchmarks/results/irl_vs_imitation.json

_IVI_METHODS = {"ours": "ML-IRL (ours)", "airl": "AIRL", "gail": "GAIL", "bc": "BC",
                "true_reward": "PPO, true reward"}
_IVI_ORDER = ("CartPole-v1", "Acrobot-v1", "Pendulum-v1", "MountainCar-v0")  # table order, as in the paper's text



def irl_vs_imitation(data: dict[str, Any], macros: Macros, source: str, prefix: str = "ivi",
                     table: str = "irl_vs_imitation") -> dict[str, Table]:
    """Per gymnasium testbed and method (ours, AIRL, GAIL, BC, and PPO on the true reward as the reference): final
    normalized return (IQM [CI]), env steps to the target among the seeds that reach it, reward transfer and EPIC
    distance to the true reward (IQM [CI]), and the issue's goal checks; the table ``irl_vs_imitation``. Macro
    names start with ``prefix`` and use the testbed without its version (``IviCartPoleOursFinalIqm``); the full-scale
    CartPole run and its reference are read by the same code under the prefixes ``ivif`` and ``ivir``."""
    protocol, summary = data["protocol"], data["summary"]
    macros.text([prefix, "imitation version"], protocol["versions"]["imitation"])
    macros.number([prefix, "seeds"], len(protocol["seeds"]))
    macros.number([prefix, "demonstrations"], int(protocol["demonstrations"]))
    macros.number([prefix, "eval episodes"], int(protocol["eval_episodes"]))
    macros.number([prefix, "bc epochs"], int(protocol["bc_epochs"]))
    macros.fixed([prefix, "target"], float(protocol["target"]), 1)
    macros.number([prefix, "cpus"], int(data["machine"]["cpu_count"]))
    # null: the file has no ours-vs-baseline comparison (benchmarks/irl_vs_imitation.py summarize)
    macros.text([prefix, "goal met"], {True: "yes", False: "no", None: "not evaluated"}[summary["goal_met"]])
    match = re.search(r"\+\s*([0-9.]+)", summary.get("goal", ""))
    if match:
        macros.number([prefix, "transfer margin"], float(match.group(1)))
    macros.number([prefix, "wall minutes"], float(data["wall_seconds"]) / 60)
    rows: list[list[str]] = []
    groups: list[int] = []
    # results written before the benchmark measured EPIC (the learned reward's distance to the true one) lack it
    has_epic = any("epic_distance" in cell for cell in data["cells"].values())
    order = {env_id: index for index, env_id in enumerate(_IVI_ORDER)}
    for env_id, spec in sorted(protocol["testbeds"].items(), key=lambda item: order.get(item[0], len(order))):
        entry = summary[env_id]
        key = testbed_key(env_id)
        macros.text([prefix, key, "env"], env_id)
        macros.number([prefix, key, "budget"], int(spec["budget"]))
        macros.number([prefix, key, "half budget"], int(spec["budget"]) // 2)
        macros.number([prefix, key, "transfer budget"], int(spec["transfer_budget"]))
        macros.number([prefix, key, "rollout"], int(spec["rollout"]))
        reference = data["references"][env_id]
        macros.number([prefix, key, "expert return"], float(reference["expert_return"]))
        macros.number([prefix, key, "random return"], float(reference["random_return"]))
        macros.text([prefix, key, "expert algorithm"], reference["expert_algorithm"])
        for name, verdict in entry["goal"].items():
            macros.text([prefix, key, name.replace("return_at_", ""), "met"],
                        {True: "yes", False: "no", None: "not decidable"}[verdict["met"]])
        if "true_reward_at_transfer_budget" in entry:
            macros.fixed([prefix, key, "true reward at transfer budget"],
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
                if metric == "transfer_normalized_return" and not stats[metric]["n"]:
                    continue  # BC and PPO on the true reward learn no reward: nothing to transfer
                macros.fixed_interval([prefix, key, method, short], stats[metric])
            macros.number([prefix, key, method, "reached"], reached)
            transfers = [cell.get("transfer_normalized_return") for cell in data["cells"].values()
                         if cell["testbed"] == env_id and cell["method"] == method]
            macros.number([prefix, key, method, "transfer reached"],
                          sum(1 for value in transfers if value is not None and value >= float(protocol["target"])))
            steps = stats["env_steps_to_target"]
            steps_text = "--" if not reached else format_number(round(float(steps["iqm"])))
            macros.add(macro_name(prefix, key, method, "steps iqm"), steps_text)
            steps_cell = f"{steps_text} ({reached}/{seeds})"
            first = len(rows) == groups[-1]
            row = [escape(env_id) if first else "", escape(label), iqm_ci(stats["final_normalized_return"]),
                   steps_cell, iqm_ci(stats["transfer_normalized_return"])]
            if has_epic:
                epic = stats.get("epic_distance", {"n": 0})
                if epic["n"]:
                    macros.fixed_interval([prefix, key, method, "epic"], epic)
                row.append(iqm_ci(epic))
            rows.append(row)
        for baseline, ratio in entry["ratios"].items():
            value = ratio["env_steps_to_target"]
            if value is not None:
                macros.number([prefix, key, "steps", baseline.replace("_", " ")], float(value))
    header = ["testbed", "method", "final return", f"steps to {format_fixed(float(protocol['target']), 1)} (seeds)",
              "reward transfer"] + (["EPIC"] if has_epic else [])
    return {table: tabular("llccc" + "c" * has_epic, header, rows, source, groups)}


# --------------------------------------------------------------------------------------------------------------
# benchmarks/results/preferences_vs_imitation.json


def preferences_vs_imitation(data: dict[str, Any], macros: Macros, source: str) -> dict[str, Table]:
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
        key = testbed_key(env_id)
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
            for side, stats in (("ours", ours), ("imitation", theirs)):
                macros.fixed_interval(["pvi", key, side, "at", budget], stats)
                if budget in ranks:
                    macros.fixed_interval(["pvi", key, side, ranks[budget], "budget"], stats)
            first = len(rows) == groups[-1]
            rows.append([escape(env_id) if first else "", str(budget), iqm_ci(ours), iqm_ci(theirs),
                         format_fixed(difference)])
        macros.fixed(["pvi", key, "min difference"], min(differences))
        worst = min(budgets, key=lambda b: float(ours_summary[str(b)]["iqm"]))
        macros.fixed(["pvi", key, "ours min iqm"], float(ours_summary[str(worst)]["iqm"]))
        macros.number(["pvi", key, "ours worst budget"], worst)
    macros.text(["pvi goals met"], "yes" if all_met else "no")
    header = ["testbed", "queries", r"ours, IQM [95\% CI]", r"imitation, IQM [95\% CI]", "difference"]
    return {"preferences_vs_imitation": tabular("lcccr", header, rows, source, groups)}


# --------------------------------------------------------------------------------------------------------------
# benchmarks/results/llm_foundation.json


def llm_foundation(data: dict[str, Any], macros: Macros, source: str) -> dict[str, Table]:
    """The built-in language model (``llm.builtin_model``): its size, build time and held-out loss, the throughput of
    masked log-probs and of a LoRA step, and the mean VADER sentiment of its continuations after a positive and a
    negative sentence."""
    build = data["default_build"]
    macros.number(["lf parameters"], int(build["num_parameters"]))
    macros.number(["lf vocab"], int(build["vocab_size"]))
    macros.number(["lf build seconds"], float(build["build_seconds"]))
    macros.number(["lf train steps"], int(build["recipe"]["train_steps"]))
    macros.number(["lf corpus"], int(build["recipe"]["corpus_size"]))
    macros.fixed(["lf held out loss"], float(build["held_out_loss"]), 3)
    macros.fixed(["lf held out perplexity"], float(build["held_out_perplexity"]), 2)
    macros.fixed(["lf train loss"], float(build["train_loss"]), 3)
    throughput = data["logprob_throughput"]
    macros.number(["lf no grad sequences per second"], float(throughput["no_grad_sequences_per_second"]))
    macros.number(["lf lora sequences per second"], float(throughput["lora_train_sequences_per_second"]))
    macros.number(["lf sampling seconds"], float(data["sampling"]["seconds"]))
    macros.number(["lf sampling prompts"], int(data["sampling"]["prompts"]))
    for name, entry in data["sentiment_continuation"].items():
        key = name.replace("after_", "").replace("_sentence", "")
        macros.fixed(["lf", key, "completion sentiment"], float(entry["mean_sentiment_completion"]), 2)
    return {}


def smollm2_agentic_rollout(data: dict[str, Any], macros: Macros, source: str) -> dict[str, Table]:
    """Batched lockstep rollouts against one episode at a time: the speed-up, both wall times, the episodes
    identical both ways, and the setting (game, episodes, moves, threads)."""
    macros.fixed(["sar speedup"], float(data["speedup"]), 2)
    for way in ("batched", "one_at_a_time"):
        macros.number(["sar", way, "seconds"], float(data[f"{way}_seconds"]))
    for key in ("episodes", "identical_episodes", "moves", "threads"):
        macros.number(["sar", key], int(data[key]))
    macros.text(["sar game"], str(data["game"]))
    return {}


BENCHMARK_HANDLERS: dict[str, Handler] = {
    "mce_irl_vs_imitation": mce_irl_vs_imitation,
    "trl_loss_parity": trl_loss_parity,
    "dpo_vs_trl": dpo_vs_trl,
    "dpo_vs_trl_smollm2_chat": functools.partial(dpo_vs_trl, prefix="dpo chat"),
    "dpo_step_profile": dpo_step_profile,
    "irl_vs_imitation": irl_vs_imitation,
    "preferences_vs_imitation": preferences_vs_imitation,
    "irl_vs_imitation_full_cartpole": functools.partial(irl_vs_imitation, prefix="ivif",
                                                        table="irl_vs_imitation_full_cartpole"),
    "irl_vs_imitation_full_cartpole_reference": functools.partial(irl_vs_imitation, prefix="ivir",
                                                                  table="irl_vs_imitation_full_cartpole_reference"),
    "llm_foundation": llm_foundation,
    "smollm2_agentic_rollout": smollm2_agentic_rollout,
}

# The first key of every macro each handler writes (see ``irlb.paper.experiment_tables.RESULT_PREFIXES``).
BENCHMARK_PREFIXES: dict[str, str] = {
    "mce_irl_vs_imitation": "mce",
    "trl_loss_parity": "trl",
    "dpo_vs_trl": "dpo",
    "dpo_vs_trl_smollm2_chat": "dpochat",
    "dpo_step_profile": "dpoprof",
    "irl_vs_imitation": "ivi",
    "preferences_vs_imitation": "pvi",
    "irl_vs_imitation_full_cartpole": "ivif",
    "irl_vs_imitation_full_cartpole_reference": "ivir",
    "llm_foundation": "lf",
    "smollm2_agentic_rollout": "sar",
}
