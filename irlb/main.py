"""The `irlb` command line: `irlb <command> --help` describes each command."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from irl_bilevel.validation import ValidationError
from llm.commands import (
    add_data_arguments,
    add_device_arguments,
    add_loop_arguments,
    add_lora_arguments,
    add_model_arguments,
    apply_threads,
    policy_losses,
)


def _config_from_args(args: argparse.Namespace, config_class: Any, keys: tuple[str, ...]) -> Any:
    """A run config from ``--config``, then ``--set key=value``, then the command's own options in ``keys``."""
    overrides = list(args.set or [])
    overrides += [f"{key}={json.dumps(getattr(args, key))}" for key in keys if getattr(args, key) is not None]
    return config_class.from_sources(args.config, overrides)


def _tabular_irl(args: argparse.Namespace) -> int:
    from irlb.tabular_irl import TabularIRLConfig, run_tabular_irl

    config = _config_from_args(args, TabularIRLConfig, (
        "testbed", "mdp_file", "demonstrations_file", "algorithm", "hypergradient", "reward_model", "optimizer",
        "steps", "lr", "num_demonstrations", "seed"))
    metrics = run_tabular_irl(config, Path(args.out), progress=not args.quiet)
    print(json.dumps(metrics, indent=2, sort_keys=True))
    return 0


def _gym_irl(args: argparse.Namespace) -> int:
    from classic_rl.gym_irl import GymIRLConfig, run_gym_irl

    config = _config_from_args(args, GymIRLConfig, (
        "env_id", "algorithm", "hypergradient", "reward_structure", "num_demonstrations", "outer_steps",
        "env_steps_per_outer_step", "transfer_steps", "seed"))
    summary = run_gym_irl(config, Path(args.out), progress=not args.quiet)
    print(json.dumps(summary, indent=2, sort_keys=True))
    return 0


def _preference_rl(args: argparse.Namespace) -> int:
    from classic_rl.preference_rl import PreferenceRLConfig, run_preference_rl

    config = _config_from_args(args, PreferenceRLConfig, (
        "env_id", "algorithm", "query_budget", "total_env_steps", "selection", "teacher", "loss", "seed"))
    summary = run_preference_rl(config, Path(args.out), progress=not args.quiet)
    print(json.dumps(summary, indent=2, sort_keys=True))
    return 0


def _rewardbench(args: argparse.Namespace) -> int:
    from llm.evaluation import rewardbench_command

    apply_threads(args)
    return rewardbench_command(args)


def _train_preferences(args: argparse.Namespace) -> int:
    from llm.commands import train_preferences_command

    return train_preferences_command(args)


def _train_reward_model(args: argparse.Namespace) -> int:
    from llm.commands import train_reward_model_command

    return train_reward_model_command(args)


def _rloo(args: argparse.Namespace) -> int:
    from llm.commands import rloo_command

    return rloo_command(args)


def _agentic(args: argparse.Namespace) -> int:
    from irlb.config import experiment_config
    from llm.experiments.agentic_reward_learning import CONFIG, NAME, run

    apply_threads(args)
    overrides = [*(args.set or []), f"model={json.dumps(str(args.model))}", f"dtype={json.dumps(args.dtype)}",
                 f"device={json.dumps(args.device or 'auto')}"]
    config = experiment_config(NAME, args.scale, args.config, overrides)
    assert isinstance(config, CONFIG)
    print(run(args.scale, Path(args.out), seed=args.seed, progress=not args.quiet, config=config))
    return 0


# `irlb reproduce` writes here unless told otherwise: the committed results/ and figures/output/ hold what the README
# and the paper quote, and a newcomer's `--scale tiny` must not replace them.
REPRODUCE_RESULTS = "runs/reproduce/results"
REPRODUCE_FIGURES = "runs/reproduce/figures"


def _reproduce(args: argparse.Namespace) -> int:
    from irlb.reproduce import reproduce

    if args.update_committed and (args.results or args.figures):
        raise ValidationError("--update-committed: writes into results/ and figures/output/; it cannot be combined "
                              "with --results or --figures")
    committed = ("results", "figures/output") if args.update_committed else (REPRODUCE_RESULTS, REPRODUCE_FIGURES)
    results, figures = Path(args.results or committed[0]), Path(args.figures or committed[1])
    print(f"irlb reproduce: results into {results}/, figures into {figures}/", flush=True)
    reproduce(args.scale, results, figures, only=args.only, seed=args.seed,
              config_file=args.config, overrides=args.set, extended=args.extended)
    return 0


def _config(args: argparse.Namespace) -> int:
    from irlb.config import experiment_config

    config = experiment_config(args.experiment, args.scale, args.config, args.set or [])
    if args.types:
        for key, kind in type(config).describe():
            print(f"{key:28s} {kind}")
    else:
        print(json.dumps(config.to_dict(), indent=2))
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from irl_bilevel.config import parse_overrides
    from irlb.sweep import load_spec, parse_grid, run_sweep

    seeds = None
    if args.seeds is not None:
        text = args.seeds.strip()
        try:
            seeds = json.loads(text) if text.startswith("[") else [int(s) for s in text.split(",") if s.strip()]
        except ValueError as error:
            raise ValidationError(f"--seeds: expected 0,1,2 or a JSON list of integers, got {args.seeds!r}") from error
    spec = load_spec(args.spec, experiment=args.experiment, scale=args.scale, seeds=seeds, metric=args.metric,
                     grid=parse_grid(args.grid) if args.grid else None,
                     overrides=parse_overrides(args.set) if args.set else None)
    summary = run_sweep(spec, Path(args.out), address=args.address, num_cpus=args.num_cpus,
                        cpus_per_trial=args.cpus_per_trial, max_concurrent=args.max_concurrent,
                        max_failures=args.max_failures)
    return 0 if summary["complete"] else 1


def _merge_sweeps(args: argparse.Namespace) -> int:
    from irl_bilevel.config import load_json_object
    from irl_bilevel.runs import write_json
    from irlb.sweep import format_table, merge_sweeps

    summary = merge_sweeps([load_json_object(path, "sweep summary") for path in args.summaries])
    write_json(Path(args.out), summary)
    print(format_table(summary))
    return 0


def _paper(args: argparse.Namespace) -> int:
    from irlb.paper.build import generate

    report = generate(Path(args.results), Path(args.benchmarks), Path(args.out))
    print(f"{report['macros']} macros; wrote {', '.join(str(path) for path in report['written'])}")
    if report["skipped"]:
        print(f"missing (their macros are undefined): {', '.join(report['skipped'])}", file=sys.stderr)
    return 0


def _testbeds(args: argparse.Namespace) -> int:
    from classic_rl.testbeds import TESTBEDS

    for name, builder in TESTBEDS.items():
        summary = (builder.__doc__ or "").strip().splitlines()[0] if builder.__doc__ else ""
        print(f"{name:12s} {summary}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="irlb", description="Reward learning through bilevel optimization.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")

    tabular = commands.add_parser(
        "tabular-irl",
        help="MaxEnt or LP IRL on a tabular testbed or on your own .npz MDP",
        description="Run tabular IRL and write reward.npy, config.json, metrics.jsonl and summary.json into --out. "
        "Settings come from --config (JSON) and --set key=value (JSON values); unknown keys are errors. "
        "See docs/npz_format.md for the .npz arrays.",
    )
    tabular.add_argument("--out", required=True, help="output folder (an existing run there is resumed)")
    tabular.add_argument("--config", help="JSON file of TabularIRLConfig fields")
    tabular.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one config field")
    tabular.add_argument("--testbed", help="gridworld | objectworld | garnet | cliffworld")
    tabular.add_argument("--mdp-file", dest="mdp_file", help=".npz MDP (instead of a testbed)")
    tabular.add_argument("--demonstrations-file", dest="demonstrations_file", help=".npz demonstrations")
    tabular.add_argument("--algorithm", choices=["maxent", "lp"])
    tabular.add_argument("--hypergradient", help="maxent | implicit | unrolled_torchopt | unrolled_higher | penalty | "
                         "zeroth_order | finite_differences")
    tabular.add_argument("--reward-model", dest="reward_model", choices=["linear", "mlp", "tabular"])
    tabular.add_argument("--optimizer", choices=["lbfgs", "adam", "sgd"])
    tabular.add_argument("--steps", type=int, help="outer steps")
    tabular.add_argument("--lr", type=float, help="outer learning rate")
    tabular.add_argument("--num-demonstrations", dest="num_demonstrations", type=int,
                         help="sample this many expert demonstrations (default: exact expert occupancy)")
    tabular.add_argument("--seed", type=int)
    tabular.add_argument("--quiet", action="store_true", help="no progress bar")
    tabular.set_defaults(handler=_tabular_irl)

    gym_irl = commands.add_parser(
        "gym-irl",
        help="bilevel IRL (ML-IRL) on a gymnasium testbed with an SB3 inner loop",
        description="Learn a reward from expert demonstrations on a gymnasium env (the cached SB3 expert's, or "
        "--set demonstrations_file=...npz) with a warm-started SB3 inner loop, and write config.json, metrics.jsonl, "
        "checkpoint.pt, policy.zip, reward.safetensors + reward.json, tensorboard/ and summary.json into --out. "
        "Settings come from --config (JSON) and --set key=value; unknown keys are errors; re-running on the same "
        "folder resumes.",
    )
    gym_irl.add_argument("--out", required=True, help="output folder (an existing run there is resumed)")
    gym_irl.add_argument("--config", help="JSON file of GymIRLConfig fields")
    gym_irl.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one config field")
    gym_irl.add_argument("--env", dest="env_id", help="gymnasium env id, e.g. CartPole-v1")
    gym_irl.add_argument("--algorithm", choices=["ppo", "a2c", "sac", "dqn"], help="inner SB3 algorithm")
    gym_irl.add_argument("--hypergradient", choices=["maxent", "penalty", "zeroth_order"])
    gym_irl.add_argument("--reward-structure", dest="reward_structure", choices=["scalar", "multi_aspect", "shaped"])
    gym_irl.add_argument("--num-demonstrations", dest="num_demonstrations", type=int)
    gym_irl.add_argument("--outer-steps", dest="outer_steps", type=int)
    gym_irl.add_argument("--env-steps-per-outer-step", dest="env_steps_per_outer_step", type=int)
    gym_irl.add_argument("--transfer-steps", dest="transfer_steps", type=int,
                         help="train a fresh policy on the learned reward for this many env steps (0: skip)")
    gym_irl.add_argument("--seed", type=int)
    gym_irl.add_argument("--quiet", action="store_true", help="no progress bar")
    gym_irl.set_defaults(handler=_gym_irl)

    # ---- preference-rl (RL from preferences, Christiano et al. 2017; classic_rl.preference_rl)
    preference_rl = commands.add_parser(
        "preference-rl",
        help="RL from preferences (Christiano et al. 2017): a B-Pref teacher labels the learner's segments",
        description="Learn a reward from preference queries on segments of the learner's own transitions, labelled "
        "by a simulated B-Pref teacher from the true reward, through the bilevel solver (outer: the preference "
        "likelihood, any pairwise catalog loss; inner: SB3 PPO/SAC on the learned reward), and write config.json, "
        "metrics.jsonl, policy.zip, reward safetensors + JSON and summary.json into --out. Settings come from "
        "--config (JSON) and --set key=value; unknown keys are errors; a finished folder is not rerun.",
    )
    preference_rl.add_argument("--out", required=True, help="output folder")
    preference_rl.add_argument("--config", help="JSON file of PreferenceRLConfig fields")
    preference_rl.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one config field")
    preference_rl.add_argument("--env", dest="env_id", help="gymnasium env id, e.g. CartPole-v1, Pendulum-v1")
    preference_rl.add_argument("--algorithm", choices=["ppo", "a2c", "sac", "dqn"], help="inner SB3 algorithm")
    preference_rl.add_argument("--query-budget", dest="query_budget", type=int, help="oracle queries in total")
    preference_rl.add_argument("--total-env-steps", dest="total_env_steps", type=int)
    preference_rl.add_argument("--selection", choices=["uniform", "disagreement", "entropy", "diversity"])
    preference_rl.add_argument("--teacher", choices=["oracle", "stochastic", "mistake", "skip", "equal", "myopic"])
    preference_rl.add_argument("--loss", help="pairwise loss: bradley_terry (default), robust_bradley_terry, "
                               "smoothed_bradley_terry, rao_kupper, davidson, plackett_luce")
    preference_rl.add_argument("--seed", type=int)
    preference_rl.add_argument("--quiet", action="store_true", help="no progress bar")
    preference_rl.set_defaults(handler=_preference_rl)

    rewardbench = commands.add_parser(
        "rewardbench", help="RewardBench-style accuracy of a text reward model or a DPO adapter on a pairs file",
        description="Score every pair of --file (RewardBench's format: .jsonl/.json with prompt, chosen, rejected, "
        "subset) with --model; print per-subset accuracy, RewardBench v1's weighted section means and the overall "
        "mean of the sections present (Chat, Chat Hard, Safety, Reasoning).")
    rewardbench.add_argument("--model", required=True,
                             help="folder from save_text_reward_model, or a DPO adapter folder")
    rewardbench.add_argument("--file", required=True, help="pairs in RewardBench's format (.jsonl or .json)")
    rewardbench.add_argument("--stem", default="reward", help="file stem of the saved reward model")
    rewardbench.add_argument("--backbone", help="load the backbone (or the DPO base model) from this folder instead")
    rewardbench.add_argument("--beta", type=float, default=0.1, help="β of a DPO adapter's implicit reward")
    rewardbench.add_argument("--no-reference", dest="reference", action="store_false",
                             help="DPO adapter: score β log πθ(y|x) without the reference")
    rewardbench.add_argument("--batch-size", dest="batch_size", type=int, default=32)
    rewardbench.add_argument("--out", help="write the result and per-pair scores to this JSON file")
    add_device_arguments(rewardbench)
    rewardbench.set_defaults(handler=_rewardbench)

    _add_llm_commands(commands)

    reproduce = commands.add_parser(
        "reproduce",
        help="run the paper's experiments and draw every figure",
        description="Run every experiment behind the paper at the given scale, then draw every figure "
        "(PNG and PDF). tiny: seconds (tests); quick: minutes on a laptop; full: the paper's scale.",
    )
    reproduce.add_argument("--scale", choices=["tiny", "quick", "full"], default="quick")
    reproduce.add_argument("--results", help=f"folder for result files (default {REPRODUCE_RESULTS}, git-ignored)")
    reproduce.add_argument("--figures", help=f"folder for the figures (default {REPRODUCE_FIGURES}, git-ignored)")
    reproduce.add_argument("--update-committed", dest="update_committed", action="store_true",
                           help="write into the committed results/ and figures/output/ (what the README and the "
                           "paper quote) instead of the git-ignored runs folder")
    reproduce.add_argument("--only", action="append", help="run only these experiments (repeatable)")
    reproduce.add_argument("--extended", action="store_true",
                           help="also run the long experiments (agentic text tasks, preference feedback studies)")
    reproduce.add_argument("--seed", type=int, default=0)
    reproduce.add_argument("--config", help="JSON file {experiment: {setting: value}} changing the scale's settings")
    reproduce.add_argument("--set", action="append", metavar="EXPERIMENT.KEY=VALUE",
                           help="change one setting, e.g. loss_sweep.seeds=5 (JSON value; repeatable)")
    reproduce.set_defaults(handler=_reproduce)

    config = commands.add_parser(
        "config",
        help="print an experiment's config at a scale",
        description="Print the typed config of an experiment at --scale, after --config and --set, as JSON "
        "(or its keys and types with --types). Unknown keys and wrong types are errors.",
    )
    config.add_argument("experiment", help="an experiment of `irlb reproduce`")
    config.add_argument("--scale", choices=["tiny", "quick", "full"], default="quick")
    config.add_argument("--config", help="JSON file of settings to change")
    config.add_argument("--set", action="append", metavar="KEY=VALUE", help="change one setting (JSON value)")
    config.add_argument("--types", action="store_true", help="list every setting with its type")
    config.set_defaults(handler=_config)

    sweep = commands.add_parser(
        "sweep",
        help="run an experiment over a grid of settings x seeds on Ray Tune (resumable)",
        description="Run every (grid point, seed) trial of an experiment into <out>/<trial_id>/ on Ray Tune: "
        "locally on this machine's cores, or on a cluster with --address. Re-running the same sweep into the "
        "same --out runs only the trials without a done.json. Writes <out>/sweep.json (per trial and, per grid "
        "point, the IQM and 95% bootstrap CI of the metric over seeds). Options override --spec's keys.",
    )
    sweep.add_argument("--out", required=True, help="sweep folder (one sub-folder per trial)")
    sweep.add_argument("--spec", help="JSON file: experiment, scale, grid, seeds, overrides, metric")
    sweep.add_argument("--experiment", help="an experiment of `irlb reproduce`")
    sweep.add_argument("--scale", choices=["tiny", "quick", "full"], help="base settings (default quick)")
    sweep.add_argument("--grid", action="append", metavar="KEY=[V1,V2]", help="a grid axis (repeatable)")
    sweep.add_argument("--seeds", help="seeds: 0,1,2 or [0,1,2]")
    sweep.add_argument("--set", action="append", metavar="KEY=VALUE", help="a fixed setting for every trial")
    sweep.add_argument("--metric", help="dotted path of the number to aggregate in the result file")
    sweep.add_argument("--address", help="an existing Ray cluster (e.g. auto, or ray://host:10001); default: "
                       "start Ray here")
    sweep.add_argument("--num-cpus", dest="num_cpus", type=int, help="cores for the local Ray (default: all)")
    sweep.add_argument("--cpus-per-trial", dest="cpus_per_trial", type=int, default=1)
    sweep.add_argument("--max-concurrent", dest="max_concurrent", type=int, help="trials at once (default: "
                       "as many as the cores allow)")
    sweep.add_argument("--max-failures", dest="max_failures", type=int, default=1,
                       help="retries of a failed trial (default 1)")
    sweep.set_defaults(handler=_sweep)

    merge = commands.add_parser("merge-sweeps", help="join sweep.json files of one sweep run with different seeds",
                           description="Join the sweep.json files of one sweep (same experiment, scale, grid, "
                           "overrides and metrics) run over different seeds: every trial row, and per grid point "
                           "the IQM and CI recomputed over all seeds. Each part keeps its provenance.")
    merge.add_argument("summaries", nargs="+", help="sweep.json files")
    merge.add_argument("--out", required=True, help="the merged summary (JSON)")
    merge.set_defaults(handler=_merge_sweeps)

    paper = commands.add_parser(
        "paper",
        help="write the paper's number macros and tables from the result files",
        description="Read results/<experiment>.json (every experiment of `irlb reproduce`) and the benchmark "
        "results, and write numbers.tex (one \\newcommand per number) and the generated LaTeX tables into --out. "
        "A missing result file is skipped with a warning: its macros stay undefined, so the paper does not build.",
    )
    paper.add_argument("--results", default="results", help="folder of the experiments' result files")
    paper.add_argument("--benchmarks", default="benchmarks/results", help="folder of the benchmark result files")
    paper.add_argument("--out", default="paper/generated", help="folder for numbers.tex and the tables")
    paper.set_defaults(handler=_paper)

    testbeds = commands.add_parser("testbeds", help="list the tabular testbeds",
                                   description="List the tabular testbeds that tabular-irl accepts.")
    testbeds.set_defaults(handler=_testbeds)
    return parser


def _add_llm_commands(commands) -> None:
    """``train-preferences``, ``train-reward-model``, ``rloo`` and ``agentic``: the LM side on the user's own model
    and data (:mod:`llm.commands`), each with ``--device`` and ``--dtype``."""
    losses = ", ".join(policy_losses())
    train = commands.add_parser(
        "train-preferences", help="train a LoRA adapter with any catalog loss (DPO, IPO, SimPO, KTO, ...) on your "
        "preference data", description="Train a fresh LoRA adapter on --model (a local Hugging Face causal LM "
        "folder) with a policy loss of the catalog on --data in TRL's format (.jsonl or a datasets folder; "
        "prompt/chosen/rejected or prompt/completion/label; text or chat messages, which go through the "
        "tokenizer's chat template), and write it as a peft adapter into --out (PeftModel.from_pretrained loads "
        f"it). Losses: {losses}.")
    add_model_arguments(train)
    add_data_arguments(train)
    train.add_argument("--out", required=True, help="adapter folder to write (new or empty; an unfinished "
                       "run of this command there resumes)")
    train.add_argument("--overwrite", action="store_true", help="replace the adapter files of an earlier run in --out")
    train.add_argument("--loss", default="sigmoid", help="catalog policy loss (default sigmoid: DPO)")
    train.add_argument("--beta", type=float, help="the loss's temperature β (default: the loss's own)")
    train.add_argument("--set", action="append", metavar="KEY=VALUE", help="another loss parameter, e.g. gamma=0.5")
    train.add_argument("--steps", type=int, default=100, help="optimizer steps")
    train.add_argument("--batch-size", dest="batch_size", type=int, default=16, help="pairs per step")
    train.add_argument("--learning-rate", dest="learning_rate", type=float, default=5e-4)
    train.add_argument("--weight-decay", dest="weight_decay", type=float, default=0.0)
    train.add_argument("--max-grad-norm", dest="max_grad_norm", type=float, default=1.0)
    add_lora_arguments(train)
    add_loop_arguments(train)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(handler=_train_preferences)

    reward = commands.add_parser(
        "train-reward-model", help="train a text reward model (heads on your LM's backbone) on preference pairs",
        description="Train a reward model (linear heads on the last token's hidden state of --model's backbone, "
        "frozen with --lora-r 0 or LoRA-tuned) with a reward-model loss of the catalog on the pairs of --data, and "
        "write reward.safetensors + reward.json (+ training.json) into --out (irlb rewardbench and irlb rloo read "
        "it).")
    add_model_arguments(reward)
    add_data_arguments(reward)
    reward.add_argument("--out", required=True, help="folder to write the reward model into (new or "
                        "empty; an unfinished run there resumes)")
    reward.add_argument("--overwrite", action="store_true", help="replace the files of an earlier run in --out")
    reward.add_argument("--loss", default="bradley_terry", help="reward-model loss (default bradley_terry)")
    reward.add_argument("--beta", type=float, help="the loss's temperature, if it has one")
    reward.add_argument("--set", action="append", metavar="KEY=VALUE", help="another loss parameter")
    reward.add_argument("--steps", type=int, default=100)
    reward.add_argument("--batch-size", dest="batch_size", type=int, default=16)
    reward.add_argument("--learning-rate", dest="learning_rate", type=float, default=1e-3)
    reward.add_argument("--weight-decay", dest="weight_decay", type=float, default=0.0)
    add_lora_arguments(reward)
    add_loop_arguments(reward)
    reward.add_argument("--seed", type=int, default=0)
    reward.set_defaults(handler=_train_reward_model)

    rloo = commands.add_parser(
        "rloo", help="RLOO of a LoRA adapter against a saved text reward model",
        description="Fine-tune a fresh LoRA adapter on --model with RLOO (k samples per prompt, leave-one-out "
        "baseline, KL penalty to the base model) against the reward model in --reward-model (irlb "
        "train-reward-model), on the prompts of --prompts (the prompt column of a .jsonl file or datasets folder; "
        "chat messages go through the chat template), and write the adapter into --out.")
    add_model_arguments(rloo)
    rloo.add_argument("--prompts", required=True, help=".jsonl file or datasets folder with a prompt column")
    rloo.add_argument("--split", default="train")
    rloo.add_argument("--reward-model", dest="reward_model", required=True, help="folder of a saved reward model")
    rloo.add_argument("--out", required=True, help="adapter folder to write (new or empty; an unfinished "
                      "run of this command there resumes)")
    rloo.add_argument("--overwrite", action="store_true", help="replace the adapter files of an earlier run in --out")
    rloo.add_argument("--steps", type=int, default=50)
    rloo.add_argument("--prompts-per-step", dest="prompts_per_step", type=int, default=8)
    rloo.add_argument("--samples-per-prompt", dest="samples_per_prompt", type=int, default=4)
    rloo.add_argument("--kl-coef", dest="kl_coef", type=float, default=0.05)
    rloo.add_argument("--learning-rate", dest="learning_rate", type=float, default=5e-4)
    rloo.add_argument("--max-new-tokens", dest="max_new_tokens", type=int, default=32)
    add_lora_arguments(rloo)
    add_loop_arguments(rloo)
    rloo.add_argument("--seed", type=int, default=0)
    rloo.add_argument("--quiet", action="store_true", help="no progress bar")
    rloo.set_defaults(handler=_rloo)

    agentic = commands.add_parser(
        "agentic", help="agentic reward learning (Hanoi, graph navigation, TextArena games), your model as the policy",
        description="Run the agentic reward-learning experiment (llm.experiments.agentic_reward_learning: IRL of a "
        "structured reward, its transfer, preferences, DPO on episodes) at --scale with --model as the LoRA "
        "policy's base model, writing agentic_reward_learning.json into --out. The model's tokenizer must encode "
        "the environments' text (a byte-level BPE does).")
    add_model_arguments(agentic, "the causal LM: a local folder (or 'builtin' / 'builtin-tiny')")
    agentic.add_argument("--out", required=True, help="folder for the result file")
    agentic.add_argument("--scale", choices=["tiny", "quick", "full"], default="tiny")
    agentic.add_argument("--config", help="JSON file of settings to change")
    agentic.add_argument("--set", action="append", metavar="KEY=VALUE", help="change one setting (JSON value)")
    agentic.add_argument("--seed", type=int, default=0)
    agentic.add_argument("--quiet", action="store_true", help="no progress bar")
    agentic.set_defaults(handler=_agentic)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except ValidationError as error:
        print(f"irlb: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
