"""The `irlb` command line: `irlb <command> --help` describes each command.

Every command's settings are one typed config (:class:`irl_bilevel.config.Config`), and its flags are generated
from it (:mod:`irl_bilevel.config_cli`): one ``--flag`` per setting with the field's docstring as help, its default
and its choices (read from the registries), ``--config FILE`` and ``--set KEY=VALUE`` under them. The configs:

================== ==============================================================================================
command            config
================== ==============================================================================================
tabular-irl        :class:`irlb.tabular_irl.TabularIRLConfig`
gym-irl            :class:`classic_rl.gym_irl.GymIRLConfig`
preference-rl      :class:`classic_rl.preference_rl.PreferenceRLConfig`
rewardbench        :class:`llm.commands.RewardBenchConfig`
train-preferences  :class:`llm.commands.TrainPreferencesConfig` (PreferenceTrainingConfig, LoraSettings ``lora_*``)
train-reward-model :class:`llm.commands.TrainRewardModelConfig` (RewardModelTrainingConfig, LoraSettings ``lora_*``)
rloo               :class:`llm.commands.RLOOCommandConfig` (RLConfig, LoraSettings ``lora_*``)
agentic            :class:`llm.experiments.agentic_reward_learning.AgenticRewardLearningConfig` at ``--scale``
reproduce          :class:`ReproduceConfig` (``--config``/``--set`` name ``experiment.key``)
config             :class:`ConfigCommandConfig` (``--config``/``--set`` change the experiment's settings)
sweep              :class:`SweepCommandConfig` (over the spec file, :mod:`irlb.sweep`)
merge-sweeps       :class:`MergeSweepsConfig`
paper              :class:`PaperConfig`
results            :class:`ResultsConfig`
testbeds           :class:`TestbedsConfig`
================== ==============================================================================================

Options that say where a run writes and how it shows progress, not what it computes (``--out``, ``--overwrite``,
``--quiet``, ``--threads``, and ``--scale``/``--seed`` of the experiment commands), are plain options beside the
config. Bad input of any kind prints ``irlb: error: <where>: <what was expected>`` and exits with status 2, before
anything is written.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from irl_bilevel.config import Config, NonNegativeInt, OneOf, PositiveInt, Seed
from irl_bilevel.config_cli import HelpFormatter, add_config_arguments, config_from_arguments
from irl_bilevel.validation import ValidationError
from irlb.registry import EXPERIMENTS
from llm.commands import (
    RewardBenchConfig,
    RLOOCommandConfig,
    TrainPreferencesConfig,
    TrainRewardModelConfig,
    add_run_options,
    apply_threads,
)

SCALES = ("tiny", "quick", "full")
Scale = Literal["tiny", "quick", "full"]
# `irlb reproduce` writes here unless told otherwise: the committed results/ and figures/output/ hold what the
# results page and the paper quote, and a newcomer's `--scale tiny` must not replace them.
REPRODUCE_RESULTS = "runs/reproduce/results"
REPRODUCE_FIGURES = "runs/reproduce/figures"


def _experiments() -> list[str]:
    return list(EXPERIMENTS)


Experiment = Annotated[str, OneOf(_experiments, "experiment")]


# ---------------------------------------------------------------------- the configs of the meta commands
@dataclass(frozen=True)
class ReproduceConfig(Config):
    """``irlb reproduce``: which experiments, at which scale, into which folders."""

    scale: Scale = "quick"
    """tiny: seconds (tests); quick: minutes to hours on a laptop; full: the paper's scale"""
    results: str | None = None
    """folder for the result files (default runs/reproduce/results, git-ignored)"""
    figures: str | None = None
    """folder for the figures (default runs/reproduce/figures, git-ignored)"""
    update_committed: bool = False
    """write into the committed results/ and figures/output/ (what the results page and the paper quote) instead of the
    git-ignored runs folder"""
    only: tuple[Experiment, ...] = ()
    """run only these experiments (default: all but the extended ones)"""
    extended: bool = False
    """also run the long experiments (agentic text tasks, preference feedback studies, seed sweeps)"""
    seed: Seed = 0
    """first seed of every experiment"""

    def validate(self) -> None:
        if self.update_committed and (self.results or self.figures):
            raise ValidationError("update_committed: writes into results/ and figures/output/; it cannot be "
                                  "combined with --results or --figures")


@dataclass(frozen=True)
class ConfigCommandConfig(Config):
    """``irlb config``: which experiment's config to print."""

    experiment: Experiment = field(metadata={"positional": True})
    """an experiment of irlb reproduce"""
    scale: Scale = "quick"
    """the scale whose settings are the starting point"""
    types: bool = False
    """list every setting with its type instead of the values"""


@dataclass(frozen=True)
class SweepCommandConfig(Config):
    """``irlb sweep``: the sweep (a spec file, or these settings over it) and where its trials run."""

    spec: str | None = None
    """JSON file: experiment, scale, grid, seeds, overrides, metric (the settings below override its keys)"""
    experiment: Experiment | None = None
    """an experiment of irlb reproduce"""
    scale: Scale | None = None
    """base settings of every trial (default quick)"""
    grid: tuple[str, ...] = ()
    """grid axes as KEY=[V1,V2] (dotted config key, JSON list of values)"""
    seeds: tuple[Seed, ...] | None = None
    """every grid point runs once per seed: 0 1 2, 0,1,2 or [0,1,2]"""
    set: tuple[str, ...] = ()
    """fixed settings of every trial as KEY=VALUE (JSON value)"""
    metric: str | None = None
    """dotted path of the number to aggregate in the result file"""
    address: str | None = None
    """an existing Ray cluster (e.g. auto, or ray://host:10001); default: start Ray here"""
    num_cpus: PositiveInt | None = None
    """cores for the local Ray (default: all)"""
    cpus_per_trial: PositiveInt = 1
    """cores (and torch threads) per trial"""
    max_concurrent: PositiveInt | None = None
    """trials at once (default: as many as the cores allow)"""
    max_failures: NonNegativeInt = 1
    """retries of a failed trial"""


@dataclass(frozen=True)
class MergeSweepsConfig(Config):
    """``irlb merge-sweeps``: the sweep summaries to join."""

    summaries: tuple[str, ...] = field(metadata={"positional": True})
    """sweep.json files of one sweep run with different seeds"""


@dataclass(frozen=True)
class PaperConfig(Config):
    """``irlb paper``: where the result files are."""

    results: str = "results"
    """folder of the experiments' result files"""
    benchmarks: str = "benchmarks/results"
    """folder of the benchmark result files"""


@dataclass(frozen=True)
class ResultsConfig(Config):
    """``irlb results``: where the result files are and which Markdown files to write."""

    results: str = "results"
    """folder of the experiments' result files"""
    benchmarks: str = "benchmarks/results"
    """folder of the benchmark result files"""
    page: str = "docs/results.md"
    """the results page to write (regenerated in place; a file `irlb results` did not write is refused)"""
    blocks: tuple[str, ...] = ("README.md", "docs", "benchmarks/README.md")
    """Markdown files, or folders of them, whose generated blocks (<!-- generated:NAME -->) to refresh"""
    check: bool = False
    """write nothing; list the files that differ from their result files and exit with status 1 if any"""


@dataclass(frozen=True)
class TestbedsConfig(Config):
    """``irlb testbeds`` has no settings."""


# ---------------------------------------------------------------------- handlers
def _tabular_irl(config: Any, args: argparse.Namespace) -> int:
    from irlb.tabular_irl import run_tabular_irl

    metrics = run_tabular_irl(config, Path(args.out), progress=not args.quiet, overwrite=args.overwrite)
    print(json.dumps(metrics, indent=2, sort_keys=True))
    return 0


def _gym_irl(config: Any, args: argparse.Namespace) -> int:
    from classic_rl.gym_irl import run_gym_irl

    summary = run_gym_irl(config, Path(args.out), progress=not args.quiet, overwrite=args.overwrite)
    print(json.dumps(summary, indent=2, sort_keys=True))
    return 0


def _preference_rl(config: Any, args: argparse.Namespace) -> int:
    from classic_rl.preference_rl import run_preference_rl

    summary = run_preference_rl(config, Path(args.out), progress=not args.quiet, overwrite=args.overwrite)
    print(json.dumps(summary, indent=2, sort_keys=True))
    return 0


def _rewardbench(config: Any, args: argparse.Namespace) -> int:
    from llm.evaluation import rewardbench_command

    return rewardbench_command(config, args)


def _train_preferences(config: Any, args: argparse.Namespace) -> int:
    from llm.commands import train_preferences_command

    return train_preferences_command(config, args)


def _train_reward_model(config: Any, args: argparse.Namespace) -> int:
    from llm.commands import train_reward_model_command

    return train_reward_model_command(config, args)


def _rloo(config: Any, args: argparse.Namespace) -> int:
    from llm.commands import rloo_command

    return rloo_command(config, args)


def _agentic_base(args: argparse.Namespace) -> Config:
    from irl_bilevel.config import scale_config
    from llm.experiments.agentic_reward_learning import CONFIG, NAME, SCALES

    return scale_config(CONFIG, SCALES, args.scale, NAME)


def _agentic(config: Any, args: argparse.Namespace) -> int:
    from irl_bilevel.runs import claim_output_file, claim_output_folder, unfinished_record
    from llm.experiments.agentic_reward_learning import NAME, run

    out = Path(args.out)
    result = out / f"{NAME}.json"
    # A new or empty folder, or one holding an earlier result: a file, a folder of other files and an unwritable
    # place are refused. An earlier result is resumed (an interrupted run of these settings) or, with --overwrite,
    # replaced.
    earlier = claim_output_folder(out, result.name, "agentic", overwrite=True)
    if earlier and unfinished_record(result, args.scale, config.to_dict()) is None:
        claim_output_file(result, "agentic", overwrite=args.overwrite, marker_key="config", option="--out")
    apply_threads(args)
    print(run(args.scale, out, seed=args.seed, progress=not args.quiet, config=config))
    return 0


def _reproduce(config: Any, args: argparse.Namespace) -> int:
    from irlb.reproduce import reproduce

    committed = ("results", "figures/output") if config.update_committed else (REPRODUCE_RESULTS, REPRODUCE_FIGURES)
    results, figures = Path(config.results or committed[0]), Path(config.figures or committed[1])
    print(f"irlb reproduce: results into {results}/, figures into {figures}/", flush=True)
    reproduce(config.scale, results, figures, only=list(config.only) or None, seed=config.seed,
              config_file=args.config, overrides=args.set, extended=config.extended)
    return 0


def _config(config: Any, args: argparse.Namespace) -> int:
    from irlb.config import experiment_config

    experiment = experiment_config(config.experiment, config.scale, args.config, args.set or [])
    if config.types:
        for key, kind in type(experiment).describe():
            print(f"{key:28s} {kind}")
    else:
        print(json.dumps(experiment.to_dict(), indent=2))
    return 0


def _sweep(config: Any, args: argparse.Namespace) -> int:
    from irl_bilevel.config import parse_overrides
    from irl_bilevel.runs import claim_output_folder
    from irlb.sweep import load_spec, parse_grid, run_sweep

    claim_output_folder(args.out, "spec.json", "sweep", overwrite=True)  # a sweep folder resumes; others refused
    spec = load_spec(config.spec, experiment=config.experiment, scale=config.scale,
                     seeds=None if config.seeds is None else list(config.seeds), metric=config.metric,
                     grid=parse_grid(list(config.grid)) if config.grid else None,
                     overrides=parse_overrides(config.set) if config.set else None)
    summary = run_sweep(spec, Path(args.out), address=config.address, num_cpus=config.num_cpus,
                        cpus_per_trial=config.cpus_per_trial, max_concurrent=config.max_concurrent,
                        max_failures=config.max_failures)
    return 0 if summary["complete"] else 1


def _merge_sweeps(config: Any, args: argparse.Namespace) -> int:
    from irl_bilevel.config import load_json_object
    from irl_bilevel.runs import claim_output_file, write_json
    from irlb.sweep import format_table, merge_sweeps

    claim_output_file(args.out, "merge-sweeps", overwrite=args.overwrite, marker_key="trials")
    summary = merge_sweeps([load_json_object(path, "sweep summary") for path in config.summaries])
    write_json(Path(args.out), summary)
    print(format_table(summary))
    return 0


def _paper(config: Any, args: argparse.Namespace) -> int:
    from irlb.paper.build import generate

    # The folder of generated LaTeX is regenerated in place; generate() checks it (and every input) first.
    report = generate(Path(config.results), Path(config.benchmarks), Path(args.out), strict=True)
    print(f"{report['macros']} macros; wrote {', '.join(str(path) for path in report['written'])}")
    if report["skipped"]:
        print(f"missing (their macros are undefined): {', '.join(report['skipped'])}", file=sys.stderr)
    return 0


def _results(config: Any, args: argparse.Namespace) -> int:
    from irlb.paper.results_page import write

    changed = write(Path(config.results), Path(config.benchmarks), Path(config.page),
                    [Path(path) for path in config.blocks], check=config.check)
    if config.check:
        for path in changed:
            print(f"{path}: differs from the result files (run `irlb results`)", file=sys.stderr)
        return 1 if changed else 0
    print(f"wrote {', '.join(str(path) for path in changed)}" if changed else "up to date")
    return 0


def _testbeds(config: Any, args: argparse.Namespace) -> int:
    from classic_rl.testbeds import TESTBEDS

    for name, builder in TESTBEDS.items():
        summary = (builder.__doc__ or "").strip().splitlines()[0] if builder.__doc__ else ""
        print(f"{name:12s} {summary}")
    return 0


# ---------------------------------------------------------------------- the command table
def _run_folder_options(out_help: str) -> Callable[[argparse.ArgumentParser], None]:
    return lambda parser: add_run_options(parser, out_help, threads=False)


def _lm_options(out_help: str) -> Callable[[argparse.ArgumentParser], None]:
    return lambda parser: add_run_options(parser, out_help)


def _reproduce_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("experiment settings")
    group.add_argument("--config", metavar="FILE",
                       help="JSON file {experiment: {setting: value}} changing the scale's settings")
    group.add_argument("--set", action="append", default=[], metavar="EXPERIMENT.KEY=VALUE",
                       help="change one setting, e.g. loss_sweep.seeds=5 (JSON value; repeatable)")


def _config_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("experiment settings")
    group.add_argument("--config", metavar="FILE", help="JSON file of the experiment's settings to change")
    group.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="change one setting (JSON value; repeatable)")


def _paper_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="paper/generated",
                        help="folder for numbers.tex and the tables (default paper/generated; regenerated in place)")


def _agentic_options(parser: argparse.ArgumentParser) -> None:
    add_run_options(parser, "folder for the result file (an interrupted run there with the same settings resumes)")
    parser.add_argument("--scale", choices=SCALES, default="tiny", help="the settings below start from this scale's")
    parser.add_argument("--seed", type=int, default=0, help="first seed")


def _agentic_defaults() -> dict[str, str]:
    """What ``irlb agentic --help`` shows as each setting's default: its value at each scale."""
    from irl_bilevel.config import scale_config
    from llm.experiments.agentic_reward_learning import CONFIG, NAME
    from llm.experiments.agentic_reward_learning import SCALES as EXPERIMENT_SCALES

    per_scale = {scale: scale_config(CONFIG, EXPERIMENT_SCALES, scale, NAME).to_dict() for scale in EXPERIMENT_SCALES}
    shown = {}
    for setting in CONFIG.settings():
        values = {scale: json.dumps(values.get(setting.key)) for scale, values in per_scale.items()}
        shown[setting.key] = (next(iter(values.values())) if len(set(values.values())) == 1
                              else ", ".join(f"{scale} {value}" for scale, value in values.items()))
    return shown


@dataclass(frozen=True)
class Command:
    """One ``irlb`` command: its config class (the flags are generated from it), its other options and its run."""

    name: str
    help: str
    description: str
    config: Callable[[], type[Config]]  # imported when the parser is built
    run: Callable[[Any, argparse.Namespace], int]
    options: Callable[[argparse.ArgumentParser], None] = lambda parser: None
    sources: bool = True  # --config / --set of the config class (False: the command defines its own)
    base: Callable[[argparse.Namespace], Config] | None = None  # the starting config (default: the class defaults)
    shown_defaults: Callable[[], dict[str, str]] | None = None


def _tabular_config() -> type[Config]:
    from irlb.tabular_irl import TabularIRLConfig

    return TabularIRLConfig


def _gym_config() -> type[Config]:
    from classic_rl.gym_irl import GymIRLConfig

    return GymIRLConfig


def _preference_rl_config() -> type[Config]:
    from classic_rl.preference_rl import PreferenceRLConfig

    return PreferenceRLConfig


def _agentic_config() -> type[Config]:
    from llm.experiments.agentic_reward_learning import CONFIG

    return CONFIG


RUN_FOLDER = ("output folder: new, empty, or a run of this command with the same settings, which resumes (--overwrite "
              "replaces a run with other settings)")

COMMANDS = [
    Command("tabular-irl", "MaxEnt or LP IRL on a tabular testbed or on your own .npz MDP",
            "Run tabular IRL and write reward.npy, config.json, metrics.jsonl, checkpoint.pt and summary.json into "
            "--out. See docs/npz_format.md for the .npz arrays.",
            _tabular_config, _tabular_irl, _run_folder_options(RUN_FOLDER)),
    Command("gym-irl", "bilevel IRL (ML-IRL) on a gymnasium testbed with an SB3 inner loop",
            "Learn a reward from expert demonstrations on a gymnasium env (the cached SB3 expert's, or "
            "--demonstrations-file ...npz) with a warm-started SB3 inner loop, and write config.json, metrics.jsonl, "
            "checkpoint.pt, policy.zip, reward.safetensors + reward.json, tensorboard/ and summary.json into --out.",
            _gym_config, _gym_irl, _run_folder_options(RUN_FOLDER)),
    Command("preference-rl",
            "RL from preferences (Christiano et al. 2017): a B-Pref teacher labels the learner's segments",
            "Learn a reward from preference queries on segments of the learner's own transitions, labelled by a "
            "simulated B-Pref teacher from the true reward, through the bilevel solver (outer: the preference "
            "likelihood, any pairwise catalog loss; inner: SB3 PPO/SAC on the learned reward), and write "
            "config.json, metrics.jsonl, policy.zip, reward safetensors + JSON and summary.json into --out. A "
            "finished run in --out is not rerun; an unfinished one starts over.",
            _preference_rl_config, _preference_rl, _run_folder_options(RUN_FOLDER)),
    Command("rewardbench", "RewardBench-style accuracy of a text reward model or a DPO adapter on a pairs file",
            "Score every pair of --file (RewardBench's format: .jsonl/.json with prompt, chosen, rejected, subset) "
            "with --model; print per-subset accuracy, RewardBench v1's weighted section means and the overall mean "
            "of the sections present (Chat, Chat Hard, Safety, Reasoning).",
            lambda: RewardBenchConfig, _rewardbench,
            lambda parser: add_run_options(parser, "also write the result and per-pair scores to this JSON file",
                                           out_required=False, quiet=False)),
    Command("train-preferences", "train a LoRA adapter with any catalog loss (DPO, IPO, SimPO, KTO, ...) on your "
            "preference data",
            "Train a fresh LoRA adapter on --model (a local Hugging Face causal LM folder) with a policy loss of the "
            "catalog on --data in TRL's format (.jsonl or a datasets folder; prompt/chosen/rejected or "
            "prompt/completion/label; text or chat messages, which go through the tokenizer's chat template), and "
            "write it as a peft adapter into --out (PeftModel.from_pretrained loads it).",
            lambda: TrainPreferencesConfig, _train_preferences,
            _lm_options("adapter folder to write (new or empty; an unfinished run of this command there resumes); "
                        "also receives metrics.jsonl, tensorboard/ and the checkpoints")),
    Command("train-reward-model", "train a text reward model (heads on your LM's backbone) on preference pairs",
            "Train a reward model (linear heads on the last token's hidden state of --model's backbone, frozen with "
            "--frozen-backbone or LoRA-tuned) with a reward-model loss of the catalog on the pairs of --data, and "
            "write reward.safetensors + reward.json (+ training.json) into --out (irlb rewardbench and irlb rloo "
            "read it).",
            lambda: TrainRewardModelConfig, _train_reward_model,
            _lm_options("folder to write the reward model into (new or empty; an unfinished run of this command "
                        "there resumes); also receives metrics.jsonl, tensorboard/ and the checkpoints")),
    Command("rloo", "RLOO of a LoRA adapter against a saved text reward model",
            "Fine-tune a fresh LoRA adapter on --model with RLOO (k samples per prompt, leave-one-out baseline, KL "
            "penalty to the base model) against the reward model in --reward-model (irlb train-reward-model), on "
            "the prompts of --prompts (the prompt column of a .jsonl file or datasets folder; chat messages go "
            "through the chat template), and write the adapter into --out.",
            lambda: RLOOCommandConfig, _rloo,
            _lm_options("adapter folder to write (new or empty; an unfinished run of this command there resumes); "
                        "also receives metrics.jsonl, tensorboard/ and the checkpoints")),
    Command("agentic", "agentic reward learning (Hanoi, graph navigation, TextArena games), your model as the policy",
            "Run the agentic reward-learning experiment (llm.experiments.agentic_reward_learning: IRL of a "
            "structured reward, its transfer, preferences, DPO on episodes) at --scale with --model as the LoRA "
            "policy's base model, writing agentic_reward_learning.json into --out. The model's tokenizer must encode "
            "the environments' text (a byte-level BPE does). Every setting starts from --scale's value.",
            _agentic_config, _agentic, _agentic_options, base=_agentic_base, shown_defaults=_agentic_defaults),
    Command("reproduce", "run the paper's experiments and draw every figure",
            "Run every experiment behind the paper at the given scale, then draw every figure (PNG and PDF). An "
            "experiment whose result file holds an interrupted run of the same settings resumes it.",
            lambda: ReproduceConfig, _reproduce, _reproduce_options, sources=False),
    Command("config", "print an experiment's config at a scale",
            "Print the typed config of an experiment at --scale, after --config and --set, as JSON (or its keys and "
            "types with --types). Unknown keys and wrong types are errors.",
            lambda: ConfigCommandConfig, _config, _config_options, sources=False),
    Command("sweep", "run an experiment over a grid of settings x seeds on Ray Tune (resumable)",
            "Run every (grid point, seed) trial of an experiment into <out>/<trial_id>/ on Ray Tune: locally on "
            "this machine's cores, or on a cluster with --address. Re-running the same sweep into the same --out "
            "runs only the trials without a done.json. Writes <out>/sweep.json (per trial and, per grid point, the "
            "IQM and 95% bootstrap CI of the metric over seeds). Options override --spec's keys.",
            lambda: SweepCommandConfig, _sweep,
            lambda parser: add_run_options(parser, "sweep folder (one sub-folder per trial; a sweep there resumes)",
                                           overwrite=False, quiet=False, threads=False), sources=False),
    Command("merge-sweeps", "join sweep.json files of one sweep run with different seeds",
            "Join the sweep.json files of one sweep (same experiment, scale, grid, overrides and metrics) run over "
            "different seeds: every trial row, and per grid point the IQM and CI recomputed over all seeds. Each "
            "part keeps its provenance.",
            lambda: MergeSweepsConfig, _merge_sweeps,
            lambda parser: add_run_options(parser, "the merged summary (a JSON file)", quiet=False, threads=False),
            sources=False),
    Command("paper", "write the paper's number macros and tables from the result files",
            "Read results/<experiment>.json (every experiment of `irlb reproduce`) and the benchmark results, and "
            "write numbers.tex (one \\newcommand per number) and the generated LaTeX tables into --out. A missing "
            "result file is skipped with a warning: its macros stay undefined, so the paper does not build.",
            lambda: PaperConfig, _paper, _paper_options, sources=False),
    Command("results", "write the results page (docs/results.md) and the READMEs' generated blocks",
            "Read the result files as `irlb paper` does and write the results page (every number from a file, "
            "comparison words from the 95% intervals) and the generated blocks (<!-- generated:NAME -->) of the "
            "README, docs/ and benchmarks/README.md. With --check, write nothing and fail if any of them differs "
            "from the files.",
            lambda: ResultsConfig, _results, sources=False),
    Command("testbeds", "list the tabular testbeds", "List the tabular testbeds that tabular-irl accepts.",
            lambda: TestbedsConfig, _testbeds, sources=False),
]


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The ``irlb`` parser; with ``only``, just that command's flags are generated (the others keep their one-line
    help), so that a command imports only its own config's modules."""
    parser = argparse.ArgumentParser(prog="irlb", description="Reward learning through bilevel optimization.",
                                     formatter_class=HelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    for command in COMMANDS:
        sub = commands.add_parser(command.name, help=command.help, description=command.description,
                                  formatter_class=HelpFormatter)
        if only is None or command.name == only:
            command.options(sub)
            add_config_arguments(sub, command.config(), sources=command.sources,
                                 defaults=command.shown_defaults() if command.shown_defaults else None)
        sub.set_defaults(command_spec=command)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    named = next((token for token in argv if not token.startswith("-")), None)
    args = build_parser(named if named in {c.name for c in COMMANDS} else "").parse_args(argv)
    command: Command = args.command_spec
    try:
        base = command.base(args) if command.base is not None else None
        config = config_from_arguments(args, command.config(), command.name, base=base, sources=command.sources)
        return int(command.run(config, args))
    except ValidationError as error:
        print(f"irlb: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
