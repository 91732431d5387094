"""The language-model commands of ``irlb`` (the arguments live in :mod:`irlb.main`): training on the user's own data
with any Hugging Face causal LM from a local folder (or a hub id named explicitly), on ``--device`` in ``--dtype``.

* ``irlb train-preferences``: a fresh LoRA adapter trained with any policy loss of the catalog (DPO ``sigmoid``,
  IPO, SimPO, ORPO, KTO, ...; :func:`llm.training.train_preferences`) on a preference file in TRL's format
  (:mod:`llm.preference_data`), written as a peft adapter (``PeftModel.from_pretrained`` loads it) with the
  run's config, per-step history, data file, seed, versions and git commit in ``irl_bilevel_adapter.json``;
* ``irlb train-reward-model``: a text reward model (heads on the LM's backbone, frozen or LoRA-tuned;
  :func:`llm.reward_models.train_reward_model`) with a reward-model loss of the catalog on the same pairs;
* ``irlb rloo``: RLOO (:func:`llm.training.train_rl`) of a fresh adapter against a saved text reward model, on
  the prompts of a file;
* ``irlb agentic`` (in :mod:`irlb.main`): the agentic reward-learning experiment
  (:mod:`llm.experiments.agentic_reward_learning`) with a user's model as the policy.

``irlb rewardbench`` (:func:`llm.evaluation.rewardbench_command`) scores any of the results.

The three training commands run on the training engine (:mod:`llm.accelerated`): ``--out`` also receives
``metrics.jsonl``, ``tensorboard/`` and, every ``--checkpoint-every`` steps, a checkpoint; rerunning the same command
after an interruption (even ``kill -9``) resumes from it and ends with the same result, without ``--overwrite``
(:func:`llm.checkpoints.claim_training_output`). Launched on several processes (``accelerate launch``, ``torchrun``),
each process trains on its share of every batch and only the main process writes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from irl_bilevel.config import Config, PositiveFloat, PositiveInt, check_value, parse_value, section
from irl_bilevel.losses import PREFERENCE_LOSSES, PreferenceBatch, UnpairedBatch
from irl_bilevel.runs import provenance, write_json
from irl_bilevel.validation import ValidationError
from llm.models import LoraSettings
from llm.reward_models import RewardModelTrainingConfig
from llm.training import PreferenceTrainingConfig, RLConfig

DTYPES = ("float32", "bfloat16")


# ---------------------------------------------------------------------- the commands' configs
@dataclass(frozen=True, kw_only=True)
class LMCommandConfig(Config):
    """What every LM command loads: a causal LM (or a reward model) on a device in a dtype."""

    model: str
    """the causal LM: a local folder written by save_pretrained (or a hub id, downloaded unless HF_HUB_OFFLINE=1)"""
    device: str | None = None
    """cpu, cuda, cuda:1, ...; null: cuda when a GPU is visible, else cpu"""
    dtype: Literal["float32", "bfloat16"] = "float32"
    """dtype of the base model's weights (LoRA adapters and heads stay float32)"""


@dataclass(frozen=True, kw_only=True)
class PreferenceDataConfig(LMCommandConfig):
    """An LM command that trains on a preference file in TRL's format (:mod:`llm.preference_data`)."""

    data: str
    """preference data in TRL's format: a .jsonl file or a datasets save_to_disk folder (prompt/chosen/rejected or
    prompt/completion/label; text or chat messages)"""
    split: str = "train"
    """split of a DatasetDict folder"""
    ignore_columns: tuple[str, ...] = ()
    """extra columns of the data to skip"""


@dataclass(frozen=True, kw_only=True)
class TrainPreferencesConfig(PreferenceDataConfig):
    """``irlb train-preferences``: the model, the data, the training settings
    (:class:`~llm.training.PreferenceTrainingConfig`, flattened) and the adapter's (``lora_*``)."""

    training: PreferenceTrainingConfig = section(PreferenceTrainingConfig, prefix="")
    lora: LoraSettings = section(LoraSettings, prefix="lora_")


@dataclass(frozen=True, kw_only=True)
class TrainRewardModelConfig(PreferenceDataConfig):
    """``irlb train-reward-model``: the backbone, the pairs, the training settings
    (:class:`~llm.reward_models.RewardModelTrainingConfig`, flattened) and the LoRA adapter's (``lora_*``)."""

    frozen_backbone: bool = False
    """train only linear heads on the frozen backbone (a linear probe; the lora_* settings are then unused)"""
    training: RewardModelTrainingConfig = section(RewardModelTrainingConfig, prefix="")
    lora: LoraSettings = section(LoraSettings, prefix="lora_")


@dataclass(frozen=True, kw_only=True)
class RLOOCommandConfig(LMCommandConfig):
    """``irlb rloo``: the policy's base model, the prompts, the reward model, the RL settings
    (:class:`~llm.training.RLConfig`, flattened) and the adapter's (``lora_*``)."""

    prompts: str
    """a .jsonl file or datasets folder with a prompt column (chat messages go through the chat template)"""
    split: str = "train"
    """split of a DatasetDict folder"""
    reward_model: str
    """folder of a saved text reward model (irlb train-reward-model)"""
    training: RLConfig = section(RLConfig, prefix="")
    lora: LoraSettings = section(LoraSettings, prefix="lora_")


@dataclass(frozen=True, kw_only=True)
class RewardBenchConfig(LMCommandConfig):
    """``irlb rewardbench``: what to score and how."""

    model: str
    """folder from save_text_reward_model (irlb train-reward-model), or a DPO adapter folder"""
    file: str
    """pairs in RewardBench's format (.jsonl or .json with prompt, chosen, rejected, subset)"""
    stem: str = "reward"
    """file stem of the saved reward model"""
    backbone: str | None = None
    """load the backbone (or the DPO adapter's base model) from this folder instead of the recorded one"""
    beta: PositiveFloat = 0.1
    """β of a DPO adapter's implicit reward β log πθ(y|x)/πref(y|x)"""
    reference: bool = True
    """DPO adapter: subtract the reference's log-prob (false: score β log πθ(y|x) alone)"""
    batch_size: PositiveInt = 32
    """pairs scored per forward pass"""


# ---------------------------------------------------------------------- command options
def add_run_options(parser: argparse.ArgumentParser, out_help: str, *, out_required: bool = True,
                    overwrite: bool = True, quiet: bool = True, threads: bool = True) -> None:
    """The options of a run that are not settings of what it computes: where it writes and how it shows."""
    group = parser.add_argument_group("run options")
    group.add_argument("--out", required=out_required, help=out_help)
    if overwrite:
        group.add_argument("--overwrite", action="store_true",
                           help="replace the files of an earlier output of this command in --out (only those)")
    if quiet:
        group.add_argument("--quiet", action="store_true", help="no progress bar")
    if threads:
            group.add_argument("--threads", metavar="INT", help="torch CPU threads (default: torch's; on a CPU shared "
                           "with other jobs, 1 avoids OpenMP threads spinning against each other)")


def apply_threads(args: argparse.Namespace) -> None:
    """``torch.set_num_threads(--threads)`` when ``--threads`` was given (checked like a config setting)."""
    if getattr(args, "threads", None) is not None:
        import torch

        torch.set_num_threads(check_value(parse_value(args.threads), PositiveInt, "--threads"))


def launch_state(device: str | None) -> tuple[Any, str | None]:
    """``(state, device)``: accelerate's process state when the command runs on several processes (``accelerate
    launch``, ``torchrun``: ``WORLD_SIZE > 1``; else None), and the device this process loads the model on: there a
    ``--device`` that is unset or ``cuda`` becomes the process's own device."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None, device
    import torch

    from llm.accelerated import distributed_state

    cpu = device == "cpu" or (device is None and not torch.cuda.is_available())
    state = distributed_state(cpu)
    return state, str(state.device) if device in (None, "cuda") else device


def claim_out(args: argparse.Namespace, marker: str, command: str, loop: str, state) -> str:
    """Check ``--out`` before anything is read (:func:`llm.checkpoints.claim_training_output`) and wait for every
    process; returns the claim (``"new"``, ``"resume"``: an unfinished run there resumes, ``"replace"``)."""
    from llm.checkpoints import claim_training_output

    claim = claim_training_output(args.out, marker, command, loop, overwrite=args.overwrite)
    if state is not None:
        state.wait_for_everyone()
    if claim == "resume" and (state is None or state.is_main_process):
        print(f"irlb {command}: resuming the unfinished run in {args.out}", file=sys.stderr)
    return claim


def start_out(args: argparse.Namespace, claim: str, state) -> None:
    """Once the inputs are read and checked, before the first step: on ``"replace"`` the earlier run's own files
    (checkpoints, metrics, TensorBoard events) go (main process; every process waits)."""
    from llm.checkpoints import remove_run_files

    if claim == "replace" and (state is None or state.is_main_process):
        remove_run_files(args.out)
    if state is not None:
        state.wait_for_everyone()


def finish_out(args: argparse.Namespace, state) -> None:
    """After the output is written (marker last): drop the checkpoints; end the process group."""
    from llm.checkpoints import remove_checkpoints

    if state is None or state.is_main_process:
        remove_checkpoints(args.out)
    if state is not None:
        import torch.distributed

        state.wait_for_everyone()
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def context_length(model) -> int | None:
    """The model's context (``max_position_embeddings`` or ``n_positions``), None when its config names none."""
    config = model.config
    value = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    return int(value) if value else None


def _run_record(config: Config, command: str, seed: int) -> dict[str, Any]:
    return {"command": command, "config": config.to_dict(), "provenance": provenance(seed)}


# ---------------------------------------------------------------------- irlb train-preferences
def train_preferences_command(config: TrainPreferencesConfig, args: argparse.Namespace) -> int:
    """Train a LoRA adapter with a catalog loss on the user's preference data and save it (module docstring)."""
    from llm.models import ADAPTER_INFO_FILE, load_causal_lm, with_lora
    from llm.preference_data import PER_PAIR_PARAMETERS, read_preference_file, tokenize_preferences
    from llm.training import save_trained_adapter, train_preferences

    state, device = launch_state(config.device)
    claim = claim_out(args, ADAPTER_INFO_FILE, "train-preferences", "train_preferences", state)
    apply_threads(args)
    training = replace(config.training, progress=not args.quiet, output_dir=str(args.out))
    entry = PREFERENCE_LOSSES[training.loss]
    records = read_preference_file(config.data, split=config.split, ignore_columns=list(config.ignore_columns))
    if records.kind == "unpaired" and entry.batch_type is not UnpairedBatch:
        raise ValidationError(f"loss: {training.loss} is a paired loss; {config.data} holds unpaired labels "
                              f"(prompt/completion/label), which train kto")
    model, tokenizer = load_causal_lm(config.model, device=device, dtype=config.dtype)
    per_pair = [name for name in PER_PAIR_PARAMETERS if name in entry.defaults]
    data = tokenize_preferences(records, tokenizer, max_length=context_length(model), per_pair=per_pair)
    policy = with_lora(model, config.lora, seed=training.seed)
    start_out(args, claim, state)
    started = time.perf_counter()
    result = train_preferences(policy, data, tokenizer.pad_token_id, training)
    if state is not None and not state.is_main_process:
        finish_out(args, state)
        return 0
    summary: dict[str, Any] = {"model": config.model, "data": config.data, "rows": len(records),
                               "format": f"{records.kind}, {'conversational' if records.conversational else 'text'}",
                               "loss": training.loss, "steps": training.steps,
                               "seconds": time.perf_counter() - started,
                               "first_loss": result.history[0]["loss"], "last_loss": result.history[-1]["loss"]}
    if entry.batch_type is PreferenceBatch:
        summary["training_pairs"] = training_pair_accuracy(policy, data, tokenizer.pad_token_id,
                                                           entry.needs_reference)
    folder = save_trained_adapter(policy, args.out, result, extra={
        "run": _run_record(config, "train-preferences", training.seed), "summary": summary})
    finish_out(args, state)
    print(json.dumps({**summary, "adapter": str(folder)}, indent=2))
    return 0


def training_pair_accuracy(policy, data, pad_token_id: int, with_reference: bool) -> dict[str, float]:
    """On the training pairs: the fraction whose implicit reward ``log πθ(y|x) − log πref(y|x)`` (the log-prob
    itself for reference-free losses) is higher for the chosen completion, and the mean margin."""
    import torch

    from llm.completion_logprobs import completion_logprobs
    from llm.models import reference_mode

    prompts = [p for p in data.prompt_ids for _ in range(2)]
    completions = [c for pair in zip(data.chosen_ids, data.rejected_ids) for c in pair]
    with torch.no_grad():
        policy_logps, _ = completion_logprobs(policy, prompts, completions, pad_token_id, chunk_size=64)
        margins = policy_logps.reshape(-1, 2)
        if with_reference:
            with reference_mode(policy):
                reference, _ = completion_logprobs(policy, prompts, completions, pad_token_id, chunk_size=64)
            margins = margins - reference.reshape(-1, 2)
    difference = margins[:, 0] - margins[:, 1]
    return {"accuracy": float((difference > 0).double().mean()), "mean_margin": float(difference.mean())}


# ---------------------------------------------------------------------- irlb train-reward-model
def train_reward_model_command(config: TrainRewardModelConfig, args: argparse.Namespace) -> int:
    """Train a text reward model on the user's preference pairs and save it (``save_text_reward_model``)."""
    from llm.preference_data import read_preference_file, rendered_text
    from llm.reward_models import (
        TextPairs,
        backbone_reward_model,
        save_text_reward_model,
        train_reward_model,
    )

    state, device = launch_state(config.device)
    claim = claim_out(args, "training.json", "train-reward-model", "train_reward_model", state)
    apply_threads(args)
    training = replace(config.training, output_dir=str(args.out))
    records = read_preference_file(config.data, split=config.split, ignore_columns=list(config.ignore_columns))
    if records.kind != "paired":
        raise ValidationError(f"data: a reward model trains on pairs (prompt/chosen/rejected); {config.data} holds "
                              f"{records.kind} rows")
    lora = None if config.frozen_backbone else config.lora  # frozen: a linear probe on the backbone's features
    model = backbone_reward_model(config.model, lora=lora, seed=training.seed, device=device, dtype=config.dtype)
    texts = [(rendered_text(model.tokenizer, records, row, "chosen"), rendered_text(model.tokenizer, records, row,
                                                                                    "rejected"))
             for row in records.rows]
    pairs = TextPairs([c[0] for c, _ in texts], [c[1] for c, _ in texts], [r[1] for _, r in texts])
    start_out(args, claim, state)
    started = time.perf_counter()
    result = train_reward_model(model, pairs, training)
    if state is not None and not state.is_main_process:
        finish_out(args, state)
        return 0
    spec = save_text_reward_model(model, args.out)
    summary = {"model": config.model, "data": config.data, "pairs": len(pairs), "loss": training.loss,
               "final_loss": result.final_loss, "final_accuracy": result.final_accuracy,
               "seconds": time.perf_counter() - started, "lora": spec.lora}
    write_json(Path(args.out) / "training.json", {**summary, "losses": result.losses,
                                                  "run": _run_record(config, "train-reward-model", training.seed)})
    finish_out(args, state)
    print(json.dumps({**summary, "reward_model": str(args.out)}, indent=2))
    return 0


# ---------------------------------------------------------------------- irlb rloo
def rloo_command(config: RLOOCommandConfig, args: argparse.Namespace) -> int:
    """RLOO of a fresh adapter on ``--model`` against a saved text reward model, on the prompts of ``--prompts``."""
    from llm.models import ADAPTER_INFO_FILE, load_causal_lm, with_lora
    from llm.preference_data import prompt_texts, read_preference_file
    from llm.reward_models import load_text_reward_model
    from llm.training import save_trained_adapter, train_rl

    state, device = launch_state(config.device)
    claim = claim_out(args, ADAPTER_INFO_FILE, "rloo", "train_rl", state)
    apply_threads(args)
    records = read_preference_file(config.prompts, split=config.split, prompts_only=True)
    reward_model, _ = load_text_reward_model(config.reward_model, device=device)
    model, tokenizer = load_causal_lm(config.model, device=device, dtype=config.dtype)
    prompts = prompt_texts(tokenizer, records)
    training = replace(config.training, progress=not args.quiet, add_special_tokens=not records.conversational,
                       output_dir=str(args.out))
    policy = with_lora(model, config.lora, seed=training.seed)

    def reward(prompt_list: list[str], completions: list[str]):
        return reward_model.score(prompt_list, completions).total

    start_out(args, claim, state)
    started = time.perf_counter()
    result = train_rl(policy, tokenizer, prompts, reward, training)
    if state is not None and not state.is_main_process:
        finish_out(args, state)
        return 0
    summary = {"model": config.model, "prompts": len(prompts), "reward_model": config.reward_model,
               "steps": training.steps, "first_reward": result.history[0]["reward"],
               "last_reward": result.history[-1]["reward"], "last_kl": result.history[-1]["kl"],
               "seconds": time.perf_counter() - started}
    folder = save_trained_adapter(policy, args.out, result, extra={"run": _run_record(config, "rloo", training.seed),
                                                                   "summary": summary})
    finish_out(args, state)
    print(json.dumps({**summary, "adapter": str(folder)}, indent=2))
    return 0
