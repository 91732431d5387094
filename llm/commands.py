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
from pathlib import Path
from typing import Any

from irl_bilevel.config import parse_overrides
from irl_bilevel.losses import PREFERENCE_LOSSES, PreferenceBatch, UnpairedBatch
from irl_bilevel.runs import provenance, write_json
from irl_bilevel.validation import ValidationError

DTYPES = ("float32", "bfloat16")


# ---------------------------------------------------------------------- shared arguments
def add_model_arguments(parser: argparse.ArgumentParser, help_text: str = "the causal LM: a local folder written by "
                        "save_pretrained (or a hub id, downloaded unless HF_HUB_OFFLINE=1)") -> None:
    parser.add_argument("--model", required=True, help=help_text)
    add_device_arguments(parser)


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when a GPU is visible, else cpu)")
    parser.add_argument("--dtype", choices=DTYPES, default="float32",
                        help="dtype of the base model's weights (LoRA adapters and heads stay float32)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's; on a CPU shared with "
                        "other jobs, 1 avoids OpenMP threads spinning against each other)")


def apply_threads(args: argparse.Namespace) -> None:
    """``torch.set_num_threads(args.threads)`` when ``--threads`` was given."""
    if getattr(args, "threads", None) is not None:
        import torch

        if args.threads < 1:
            raise ValidationError(f"--threads: expected a positive integer, got {args.threads}")
        torch.set_num_threads(args.threads)


def add_lora_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lora-r", dest="lora_r", type=int, default=8, help="LoRA rank")
    parser.add_argument("--lora-alpha", dest="lora_alpha", type=float, default=16.0, help="LoRA scaling alpha")
    parser.add_argument("--lora-dropout", dest="lora_dropout", type=float, default=0.0)
    parser.add_argument("--target-modules", dest="target_modules",
                        help="comma-separated module names to adapt (default: peft's for the architecture)")


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="preference data in TRL's format: a .jsonl file or a "
                        "datasets save_to_disk folder (prompt/chosen/rejected or prompt/completion/label; text or "
                        "chat messages)")
    parser.add_argument("--split", default="train", help="split of a DatasetDict folder (default train)")
    parser.add_argument("--ignore-columns", dest="ignore_columns", default="",
                        help="comma-separated extra columns of the data to skip")


def lora_settings(args: argparse.Namespace):
    from llm.models import LoraSettings

    targets = tuple(t.strip() for t in (args.target_modules or "").split(",") if t.strip()) or None
    return LoraSettings(r=args.lora_r, alpha=args.lora_alpha, dropout=args.lora_dropout, target_modules=targets)


LOOP_OPTIONS = ("gradient_accumulation_steps", "lr_scheduler", "warmup_steps", "mixed_precision", "log_every",
                "checkpoint_every")
"""The training engine's settings (:class:`llm.accelerated.LoopSettings`) that the training commands take."""


def add_loop_arguments(parser: argparse.ArgumentParser) -> None:
    """The training engine's options (:data:`LOOP_OPTIONS`); ``--out`` is its ``output_dir``."""
    from llm.accelerated import SCHEDULERS

    parser.add_argument("--gradient-accumulation-steps", dest="gradient_accumulation_steps", type=int, default=1,
                        help="micro-batches per optimizer step (the batch is split into them; the same mean loss)")
    parser.add_argument("--lr-scheduler", dest="lr_scheduler", choices=SCHEDULERS, default="constant",
                        help="learning-rate schedule (transformers.get_scheduler) over the steps")
    parser.add_argument("--warmup-steps", dest="warmup_steps", type=int, default=0,
                        help="linear warm-up steps (with a schedule other than constant)")
    parser.add_argument("--mixed-precision", dest="mixed_precision", choices=("no", "bf16", "fp16"),
                        help="autocast of the forward passes, bf16 or fp16 on a GPU (default: accelerate's setting, "
                        "e.g. accelerate launch --mixed_precision; else no)")
    parser.add_argument("--log-every", dest="log_every", type=int, default=1,
                        help="steps between rows of --out/metrics.jsonl and TensorBoard points (0: none)")
    parser.add_argument("--checkpoint-every", dest="checkpoint_every", type=int, default=50,
                        help="steps between checkpoints in --out/checkpoints (0: none); rerunning the same command "
                        "resumes from the last one")


def loop_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The engine's settings of a training command: its :data:`LOOP_OPTIONS` and ``output_dir = --out``."""
    return {**{name: getattr(args, name) for name in LOOP_OPTIONS}, "output_dir": str(args.out)}


def launch_state(args: argparse.Namespace):
    """accelerate's process state when the command runs on several processes (``accelerate launch``, ``torchrun``:
    ``WORLD_SIZE > 1``), else None. There ``--device`` (unset or ``cuda``) becomes this process's device."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch

    from llm.accelerated import distributed_state

    cpu = args.device == "cpu" or (args.device is None and not torch.cuda.is_available())
    state = distributed_state(cpu)
    if args.device in (None, "cuda"):
        args.device = str(state.device)
    return state


def claim_out(args: argparse.Namespace, marker: str, command: str, loop: str, state) -> bool:
    """Check ``--out`` (:func:`llm.checkpoints.claim_training_output`; only the main process removes files) and wait
    for every process; True when an unfinished run there resumes."""
    from llm.checkpoints import claim_training_output

    main = state is None or state.is_main_process
    resumes = claim_training_output(args.out, marker, command, loop, overwrite=args.overwrite, remove=main)
    if state is not None:
        state.wait_for_everyone()
    if resumes and main:
        print(f"irlb {command}: resuming the unfinished run in {args.out}", file=sys.stderr)
    return resumes


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


def _columns(text: str) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()]


def _run_record(args: argparse.Namespace, command: str) -> dict[str, Any]:
    values = {k: v for k, v in vars(args).items() if k != "handler" and isinstance(v, (str, int, float, bool,
                                                                                       type(None), list))}
    return {"command": command, "arguments": values, "provenance": provenance(getattr(args, "seed", None))}


# ---------------------------------------------------------------------- irlb train-preferences
def train_preferences_command(args: argparse.Namespace) -> int:
    """Train a LoRA adapter with a catalog loss on the user's preference data and save it (module docstring)."""
    apply_threads(args)
    from llm.models import ADAPTER_INFO_FILE, load_causal_lm, with_lora
    from llm.preference_data import PER_PAIR_PARAMETERS, read_preference_file, tokenize_preferences
    from llm.training import PreferenceTrainingConfig, save_trained_adapter, train_preferences

    state = launch_state(args)
    claim_out(args, ADAPTER_INFO_FILE, "train-preferences", "train_preferences", state)
    if args.loss not in PREFERENCE_LOSSES:
        raise ValidationError(f"--loss: unknown loss {args.loss!r}; expected one of {policy_losses()}")
    entry = PREFERENCE_LOSSES[args.loss]
    loss_params = parse_overrides(args.set or [], "--set")
    config = PreferenceTrainingConfig(loss=args.loss, beta=args.beta, loss_params=loss_params, steps=args.steps,
                                      batch_size=args.batch_size, learning_rate=args.learning_rate,
                                      weight_decay=args.weight_decay, max_grad_norm=args.max_grad_norm,
                                      seed=args.seed, progress=not args.quiet, **loop_settings(args))
    records = read_preference_file(args.data, split=args.split, ignore_columns=_columns(args.ignore_columns))
    if records.kind == "unpaired" and entry.batch_type is not UnpairedBatch:
        raise ValidationError(f"--loss: {args.loss} is a paired loss; {args.data} holds unpaired labels "
                              f"(prompt/completion/label), which train kto")
    model, tokenizer = load_causal_lm(args.model, device=args.device, dtype=args.dtype)
    per_pair = [name for name in PER_PAIR_PARAMETERS if name in entry.defaults]
    data = tokenize_preferences(records, tokenizer, max_length=context_length(model), per_pair=per_pair)
    policy = with_lora(model, lora_settings(args), seed=args.seed)
    started = time.perf_counter()
    result = train_preferences(policy, data, tokenizer.pad_token_id, config)
    if state is not None and not state.is_main_process:
        finish_out(args, state)
        return 0
    summary: dict[str, Any] = {"model": str(args.model), "data": str(args.data), "rows": len(records),
                               "format": f"{records.kind}, {'conversational' if records.conversational else 'text'}",
                               "loss": args.loss, "steps": args.steps, "seconds": time.perf_counter() - started,
                               "first_loss": result.history[0]["loss"], "last_loss": result.history[-1]["loss"]}
    if entry.batch_type is PreferenceBatch:
        summary["training_pairs"] = training_pair_accuracy(policy, data, tokenizer.pad_token_id,
                                                           entry.needs_reference)
    folder = save_trained_adapter(policy, args.out, result, extra={
        "run": _run_record(args, "train-preferences"), "summary": summary})
    finish_out(args, state)
    print(json.dumps({**summary, "adapter": str(folder)}, indent=2))
    return 0


def policy_losses() -> list[str]:
    return sorted(name for name, entry in PREFERENCE_LOSSES.items()
                  if entry.batch_type in (PreferenceBatch, UnpairedBatch))


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
def train_reward_model_command(args: argparse.Namespace) -> int:
    """Train a text reward model on the user's preference pairs and save it (``save_text_reward_model``)."""
    apply_threads(args)
    from llm.accelerated import LoopSettings
    from llm.preference_data import read_preference_file, rendered_text
    from llm.reward_models import (
        TextPairs,
        backbone_reward_model,
        save_text_reward_model,
        train_reward_model,
    )

    state = launch_state(args)
    claim_out(args, "training.json", "train-reward-model", "train_reward_model", state)
    records = read_preference_file(args.data, split=args.split, ignore_columns=_columns(args.ignore_columns))
    if records.kind != "paired":
        raise ValidationError(f"--data: a reward model trains on pairs (prompt/chosen/rejected); {args.data} holds "
                              f"{records.kind} rows")
    lora = lora_settings(args) if args.lora_r > 0 else None  # rank 0: a linear probe on the frozen backbone
    model = backbone_reward_model(args.model, lora=lora, seed=args.seed, device=args.device, dtype=args.dtype)
    texts = [(rendered_text(model.tokenizer, records, row, "chosen"), rendered_text(model.tokenizer, records, row,
                                                                                    "rejected"))
             for row in records.rows]
    pairs = TextPairs([c[0] for c, _ in texts], [c[1] for c, _ in texts], [r[1] for _, r in texts])
    loss_params = parse_overrides(args.set or [], "--set")
    started = time.perf_counter()
    result = train_reward_model(model, pairs, args.loss, steps=args.steps, batch_size=args.batch_size,
                                learning_rate=args.learning_rate, weight_decay=args.weight_decay, beta=args.beta,
                                seed=args.seed, loop=LoopSettings(**loop_settings(args)), **loss_params)
    if state is not None and not state.is_main_process:
        finish_out(args, state)
        return 0
    spec = save_text_reward_model(model, args.out)
    summary = {"model": str(args.model), "data": str(args.data), "pairs": len(pairs), "loss": args.loss,
               "final_loss": result.final_loss, "final_accuracy": result.final_accuracy,
               "seconds": time.perf_counter() - started, "lora": spec.lora}
    write_json(Path(args.out) / "training.json", {**summary, "losses": result.losses,
                                                  "run": _run_record(args, "train-reward-model")})
    finish_out(args, state)
    print(json.dumps({**summary, "reward_model": str(args.out)}, indent=2))
    return 0


# ---------------------------------------------------------------------- irlb rloo
def rloo_command(args: argparse.Namespace) -> int:
    """RLOO of a fresh adapter on ``--model`` against a saved text reward model, on the prompts of ``--prompts``."""
    apply_threads(args)
    from llm.models import ADAPTER_INFO_FILE, load_causal_lm, with_lora
    from llm.preference_data import prompt_texts, read_preference_file
    from llm.reward_models import load_text_reward_model
    from llm.training import RLConfig, save_trained_adapter, train_rl

    state = launch_state(args)
    claim_out(args, ADAPTER_INFO_FILE, "rloo", "train_rl", state)
    records = read_preference_file(args.prompts, split=args.split, prompts_only=True)
    reward_model, _ = load_text_reward_model(args.reward_model, device=args.device)
    model, tokenizer = load_causal_lm(args.model, device=args.device, dtype=args.dtype)
    prompts = prompt_texts(tokenizer, records)
    config = RLConfig(algorithm="rloo", steps=args.steps, prompts_per_step=args.prompts_per_step,
                      samples_per_prompt=args.samples_per_prompt, kl_coef=args.kl_coef,
                      learning_rate=args.learning_rate, max_new_tokens=args.max_new_tokens, seed=args.seed,
                      progress=not args.quiet, add_special_tokens=not records.conversational, **loop_settings(args))
    policy = with_lora(model, lora_settings(args), seed=args.seed)

    def reward(prompt_list: list[str], completions: list[str]):
        return reward_model.score(prompt_list, completions).total

    started = time.perf_counter()
    result = train_rl(policy, tokenizer, prompts, reward, config)
    if state is not None and not state.is_main_process:
        finish_out(args, state)
        return 0
    summary = {"model": str(args.model), "prompts": len(prompts), "reward_model": str(args.reward_model),
               "steps": args.steps, "first_reward": result.history[0]["reward"],
               "last_reward": result.history[-1]["reward"], "last_kl": result.history[-1]["kl"],
               "seconds": time.perf_counter() - started}
    folder = save_trained_adapter(policy, args.out, result, extra={"run": _run_record(args, "rloo"),
                                                                   "summary": summary})
    finish_out(args, state)
    print(json.dumps({**summary, "adapter": str(folder)}, indent=2))
    return 0
