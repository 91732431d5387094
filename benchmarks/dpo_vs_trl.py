"""A DPO training step of ours against TRL 1.16's ``DPOTrainer``, side by side on the built-in model, on the CPU.

Two models, each run separately: ``builtin`` (the built-in GPT-2-shaped model, default recipe: 2 layers × 128, a
word-level vocabulary of 167 tokens) and ``gpt2_v2000`` (the same shape with a 2000-row vocabulary, randomly
initialized, as in ``../shared/benchmarks.md``'s TRL measurements; the built-in tokenizer). Per model: same 16 pairs
(prompts of 5 words, completions of 12–19 tokens including EOS), same initial LoRA adapter (r = 8, alpha 16, on
``c_attn``, saved once and loaded by every run), sigmoid loss, β = 0.1, AdamW (lr 1e-3, no weight decay, constant
schedule, no gradient clipping), batch = the 16 pairs every step. TRL runs with bf16 and gradient checkpointing
switched off (TRL 1.16 turns both on by default, even on the CPU), no logging, no saving, no evaluation.

Sides, each run in a fresh Python process with ``torch.set_num_threads(t)`` (and ``OMP/MKL_NUM_THREADS=t``), the
runs of the sides interleaved (run 1 of every side, then run 2, ...):

* ``ours``: the fast step of this file (:class:`FastDPOStep`): reference log-probs computed once before training
  (timed separately), one forward over chosen and rejected concatenated ``[2B, T]``, the LM head applied only to
  the hidden states that predict completion tokens (not prompt or padding positions), per-sequence sums by one
  ``index_add``, GPT-2's tanh-GELU as one fused kernel instead of eight elementwise ops (:func:`fuse_gelu`; the
  same function, equal to float32 round-off), the catalog's ``sigmoid`` loss (``irl_bilevel.losses``), no
  per-step metrics.
* ``ours_models_py``: the library path other code uses (``llm.models.preference_batch`` with the precomputed
  reference, full-vocabulary log-softmax over every position), same loss and optimizer.
* ``trl``: ``DPOTrainer`` as configured above (the reference forward every step, adapter disabled).
* ``trl_precompute``: the same with ``precompute_ref_log_probs=True``; its precompute (inside the constructor)
  is timed on its own.

Per side: 3 runs (``--repeats``), each from the initial adapter; a run takes ``warmup + steps`` steps; steady-state
steps/s = ``steps / (time of the last step end − time of the warm-up's last step end)``; the median over the runs is
reported. Losses: every step's loss is recorded (TRL's through a wrapper of ``compute_loss``); the max abs
difference over the first ``--parity-steps`` steps between each side and ``trl`` is reported. TRL tokenizes
``prompt`` and ``prompt + completion + EOS`` as text; ours builds the same token ids, and the TRL worker checks that
its tokenized dataset equals them.

Run: ``.venv/bin/python benchmarks/dpo_vs_trl.py [--threads 1] [--models builtin,gpt2_v2000]
[--out benchmarks/results/dpo_vs_trl.json]`` (about 4 minutes with 1 thread on a 2-core machine; builds the
default built-in model first if it is not cached, ~2 minutes).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

RESULT = Path(__file__).parent / "results" / "dpo_vs_trl.json"
SEED = 0
PAIRS = 16
BETA = 0.1
LEARNING_RATE = 1e-3
LORA: dict[str, Any] = {"r": 8, "alpha": 16.0, "dropout": 0.0, "target_modules": ["c_attn"]}
SIDES = ("ours", "ours_models_py", "trl", "trl_precompute")


# --------------------------------------------------------------------------------------------- data
def make_pairs(seed: int = SEED) -> list[dict[str, str]]:
    """16 pairs from the built-in grammar: a 5-word prefix of a review, a positive and a negative continuation of
    11–18 words (12–19 tokens with EOS), each starting with a space (TRL concatenates prompt and completion)."""
    from llm.builtin_model import ReviewGrammar

    rng = random.Random(seed)
    grammar = ReviewGrammar()
    pairs = []
    for _ in range(PAIRS):
        prompt_words = grammar.review(rng)[0].split()[:5]
        continuations = []
        for polarity in ("positive", "negative"):
            words: list[str] = []
            while len(words) < 18:
                words += grammar.review(rng, polarity)[0].split()[5:]
            continuations.append(" " + " ".join(words[:rng.randint(11, 18)]))
        pairs.append({"prompt": " ".join(prompt_words), "chosen": continuations[0], "rejected": continuations[1]})
    return pairs


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


def load_policy(workdir: Path):
    from llm.models import load_adapter, load_causal_lm

    model, tokenizer = load_causal_lm(Path(workdir / "model_path.txt").read_text().strip(), dtype="float32")
    policy = load_adapter(model, workdir / "initial_adapter", trainable=True)
    return policy, tokenizer


# --------------------------------------------------------------------------------------------- our step
def fuse_gelu(model) -> int:
    """Replace GPT-2's ``NewGELUActivation`` (``0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³)))`` written as eight
    elementwise torch ops, each with its own pass over ``[B, T, 4d]`` and its own saved tensors for backward) by
    ``nn.GELU(approximate="tanh")``: the same function in one fused kernel. Returns how many were replaced."""
    from torch import nn

    replaced = 0
    for name, module in list(model.named_modules()):
        if type(module).__name__ == "NewGELUActivation" and "." in name:
            parent, attribute = name.rsplit(".", 1)
            setattr(model.get_submodule(parent), attribute, nn.GELU(approximate="tanh"))
            replaced += 1
    return replaced


class FastDPOStep:
    """DPO (sigmoid loss) on one fixed batch of ``B`` pairs, reference log-probs precomputed.

    The batch is ``[2B, T]`` (chosen rows first, right padded). ``index`` lists the ``(row, t)`` positions whose
    hidden state predicts a completion token ``input_ids[row, t + 1]``; only those ``N_c`` hidden states go through
    the LM head (``[N_c, V]`` logits instead of ``[2B, T, V]``), and ``log π(y|x)`` per row is the ``index_add`` of
    their log-probs. GPT-2's tanh-GELU runs as one fused kernel (:func:`fuse_gelu`).
    """

    def __init__(self, policy, batch, beta: float, learning_rate: float) -> None:
        from llm.models import reference_mode

        self.policy = policy
        self.base = policy.get_base_model()
        self.fused_activations = fuse_gelu(self.base)
        self.ids, self.mask = batch.input_ids, batch.attention_mask
        self.positions = (self.mask.cumsum(dim=1) - 1).clamp(min=0)
        predicts = batch.completion_mask[:, 1:].bool()
        self.rows, self.columns = predicts.nonzero(as_tuple=True)
        self.targets = batch.input_ids[:, 1:][predicts]
        self.pairs = batch.batch_size // 2
        self.beta = beta
        self.lengths = predicts.sum(dim=1).to(torch.float32)
        started = time.perf_counter()
        with torch.no_grad(), reference_mode(policy):
            self.reference = self.logprobs()
        self.reference_seconds = time.perf_counter() - started
        self.optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=learning_rate,
                                           weight_decay=0.0)

    def logprobs(self) -> torch.Tensor:
        hidden = self.base.transformer(input_ids=self.ids, attention_mask=self.mask,
                                       position_ids=self.positions).last_hidden_state
        logits = self.base.lm_head(hidden[self.rows, self.columns])
        token = logits.gather(1, self.targets[:, None]).squeeze(1) - torch.logsumexp(logits, dim=1)
        return torch.zeros(self.ids.shape[0], dtype=token.dtype).index_add(0, self.rows, token)

    def step(self) -> torch.Tensor:
        from irl_bilevel.losses import PreferenceBatch, preference_loss

        summed = self.logprobs()
        b = self.pairs
        batch = PreferenceBatch(summed[:b], summed[b:], self.reference[:b], self.reference[b:])
        loss = preference_loss("sigmoid", batch, BETA).loss
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()


class LibraryDPOStep:
    """The same step through ``llm.models.preference_batch`` (full-vocabulary log-softmax at every position)."""

    def __init__(self, policy, tokenizer, rows, beta: float, learning_rate: float) -> None:
        from llm.models import collate_completions, reference_logprobs

        self.policy, self.rows, self.pad = policy, rows, tokenizer.pad_token_id
        prompts = [r["prompt_ids"] for r in rows]
        batch = collate_completions(prompts + prompts, [r["chosen_ids"] for r in rows] +
                                    [r["rejected_ids"] for r in rows], self.pad)
        started = time.perf_counter()
        summed, _ = reference_logprobs(policy, batch)
        self.reference_seconds = time.perf_counter() - started
        self.reference = (summed[:len(rows)], summed[len(rows):])
        self.optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=learning_rate,
                                           weight_decay=0.0)

    def step(self) -> torch.Tensor:
        from irl_bilevel.losses import preference_loss
        from llm.models import preference_batch

        rows = self.rows
        batch = preference_batch(self.policy, [r["prompt_ids"] for r in rows], [r["chosen_ids"] for r in rows],
                                 [r["rejected_ids"] for r in rows], self.pad, reference=self.reference)
        loss = preference_loss("sigmoid", batch, BETA).loss
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()


def run_ours(workdir: Path, side: str, total_steps: int) -> dict[str, Any]:
    from llm.models import collate_completions

    policy, tokenizer = load_policy(workdir)
    policy.train()
    rows = json.loads((workdir / "token_ids.json").read_text())
    if side == "ours":
        prompts = [r["prompt_ids"] for r in rows]
        batch = collate_completions(prompts + prompts, [r["chosen_ids"] for r in rows] +
                                    [r["rejected_ids"] for r in rows], tokenizer.pad_token_id)
        stepper: Any = FastDPOStep(policy, batch, BETA, LEARNING_RATE)
    else:
        stepper = LibraryDPOStep(policy, tokenizer, rows, BETA, LEARNING_RATE)
    losses, ends = [], []
    started = time.perf_counter()
    for _ in range(total_steps):
        losses.append(stepper.step())
        ends.append(time.perf_counter())
    return {"losses": [float(x) for x in losses], "step_ends": [t - started for t in ends],
            "reference_seconds": stepper.reference_seconds}


# --------------------------------------------------------------------------------------------- TRL
def run_trl(workdir: Path, precompute: bool, total_steps: int, run_dir: Path) -> dict[str, Any]:
    import datasets
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    datasets.disable_caching()  # a precompute must not be served from an earlier run's cache
    policy, tokenizer = load_policy(workdir)
    pairs = json.loads((workdir / "pairs.json").read_text())
    dataset = datasets.Dataset.from_list(pairs)
    config = DPOConfig(
        output_dir=str(run_dir), per_device_train_batch_size=PAIRS, max_steps=total_steps, learning_rate=LEARNING_RATE,
        lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=0.0, optim="adamw_torch",
        beta=BETA, loss_type=["sigmoid"], bf16=False, fp16=False, gradient_checkpointing=False, use_cpu=True,
        precompute_ref_log_probs=precompute, precompute_ref_batch_size=PAIRS, report_to="none",
        logging_strategy="no", save_strategy="no", eval_strategy="no", disable_tqdm=True, seed=SEED,
        data_seed=SEED, dataloader_num_workers=0, max_length=None, dataset_num_proc=None,
    )
    precompute_seconds: list[float] = []
    original = DPOTrainer._precompute_ref_logps

    def timed_precompute(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            precompute_seconds.append(time.perf_counter() - started)

    DPOTrainer._precompute_ref_logps = timed_precompute  # type: ignore[method-assign]
    constructed = time.perf_counter()
    try:
        trainer = DPOTrainer(model=policy, ref_model=None, args=config, train_dataset=dataset,
                             processing_class=tokenizer)
    finally:
        DPOTrainer._precompute_ref_logps = original  # type: ignore[method-assign]
    constructor_seconds = time.perf_counter() - constructed
    losses: list[torch.Tensor] = []
    compute_loss = trainer.compute_loss

    def recording_compute_loss(*args, **kwargs):
        result = compute_loss(*args, **kwargs)
        losses.append((result[0] if isinstance(result, tuple) else result).detach().clone())
        return result

    trainer.compute_loss = recording_compute_loss  # type: ignore[method-assign]
    ends: list[float] = []

    class StepClock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            ends.append(time.perf_counter())

    trainer.add_callback(StepClock())
    started = time.perf_counter()
    trainer.train()
    tokenized = [{k: list(map(int, row[k])) for k in ("prompt_ids", "chosen_ids", "rejected_ids")}
                 for row in trainer.train_dataset]  # type: ignore[union-attr]
    expected = json.loads((workdir / "token_ids.json").read_text())
    return {"losses": [float(x) for x in losses], "step_ends": [t - started for t in ends],
            "constructor_seconds": constructor_seconds,
            "precompute_seconds": precompute_seconds[0] if precompute_seconds else None,
            "same_token_ids": tokenized == expected}


# --------------------------------------------------------------------------------------------- worker
def worker(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)
    runs = []
    for run in range(args.repeats):
        torch.manual_seed(SEED)
        if args.side in ("ours", "ours_models_py"):
            record = run_ours(args.workdir, args.side, args.warmup + args.steps)
        else:
            with tempfile.TemporaryDirectory(dir=args.workdir) as run_dir:
                record = run_trl(args.workdir, args.side == "trl_precompute", args.warmup + args.steps,
                                 Path(run_dir))
        ends = record["step_ends"]
        record["steps_per_second"] = args.steps / (ends[-1] - ends[args.warmup - 1])
        record["run"] = run
        runs.append(record)
    out = args.workdir / f"{args.side}-{args.threads}.json"
    out.write_text(json.dumps({"side": args.side, "threads": args.threads, "torch_threads": torch.get_num_threads(),
                               "runs": runs}))


# --------------------------------------------------------------------------------------------- driver
MODELS = ("builtin", "gpt2_v2000")


def random_gpt2(folder: Path, tokenizer, vocab_size: int = 2000) -> Path:
    """A GPT-2 of the built-in model's shape (2 layers × 128, 4 heads, context 64) with a 2000-row vocabulary,
    randomly initialized (seed 0) and no dropout, saved with the built-in tokenizer (which uses its first rows):
    the shape of the TRL measurements in ``../shared/benchmarks.md``."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=vocab_size, n_positions=64, n_embd=128, n_layer=2, n_head=4, resid_pdrop=0.0,
                        embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = GPT2LMHeadModel(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def prepare(workdir: Path, model_name: str) -> dict[str, Any]:
    from llm.builtin_model import BuiltinRecipe, build_builtin_model, read_build_info
    from llm.models import LoraSettings, load_causal_lm, save_adapter, with_lora

    recipe = BuiltinRecipe()
    path = build_builtin_model(recipe, progress=False)
    description: dict[str, Any] = {"builtin_recipe_key": recipe.key(), "builtin_recipe": recipe.as_dict(),
                                   "builtin_build": {k: v for k, v in read_build_info(path).items() if k != "recipe"}}
    if model_name == "gpt2_v2000":
        _, tokenizer = load_causal_lm(path, dtype="float32")
        path = random_gpt2(workdir / "gpt2_v2000", tokenizer)
        description = {"model": "GPT-2 2 layers × 128, 4 heads, vocab 2000, random init (seed 0), built-in tokenizer",
                       "tokenizer_from": description}
    else:
        description["model"] = "the built-in model, default recipe (trained GPT-2 2 layers × 128, word vocabulary)"
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "model_path.txt").write_text(str(path))
    model, tokenizer = load_causal_lm(path, dtype="float32")
    settings = LoraSettings(r=LORA["r"], alpha=LORA["alpha"], dropout=LORA["dropout"],
                            target_modules=tuple(LORA["target_modules"]))
    policy = with_lora(model, settings, seed=SEED)
    save_adapter(policy, workdir / "initial_adapter", metadata={"benchmark": "dpo_vs_trl"})
    pairs = make_pairs()
    (workdir / "pairs.json").write_text(json.dumps(pairs))
    rows = token_ids(tokenizer, pairs)
    (workdir / "token_ids.json").write_text(json.dumps(rows))
    completion_tokens = [len(r[k]) for r in rows for k in ("chosen_ids", "rejected_ids")]
    return {**description, "embedding_rows": model.get_input_embeddings().num_embeddings,
            "tokenizer_size": len(tokenizer), "pairs": PAIRS,
            "prompt_tokens": sorted({len(r["prompt_ids"]) for r in rows}),
            "completion_tokens_min_max": [min(completion_tokens), max(completion_tokens)],
            "lora": LORA, "beta": BETA, "learning_rate": LEARNING_RATE, "loss": "sigmoid",
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
            first = record["runs"][0]["losses"][:parity_steps]
            entry = {"steps_per_second_median": statistics.median(rates), "steps_per_second_runs": rates,
                     "first_losses": first,
                     "max_abs_loss_diff_vs_trl": max(abs(a - b) for a, b in zip(first, reference_losses)),
                     "runs_identical_losses": all(r["losses"] == record["runs"][0]["losses"]
                                                  for r in record["runs"])}
            for key in ("reference_seconds", "precompute_seconds", "constructor_seconds"):
                values = [r[key] for r in record["runs"] if r.get(key) is not None]
                if values:
                    entry[f"{key}_median"] = statistics.median(values)
            if "same_token_ids" in record["runs"][0]:
                entry["same_token_ids_as_ours"] = all(r["same_token_ids"] for r in record["runs"])
            block[side] = entry
        rate = {side: block[side]["steps_per_second_median"] for side in block}
        block["ratios"] = {f"{a}/{b}": rate[a] / rate[b] for a in ("ours", "ours_models_py") if a in rate
                           for b in ("trl", "trl_precompute") if b in rate}
        summary[f"threads_{threads}"] = block
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULT)
    parser.add_argument("--threads", default="1", help="comma-separated torch thread counts (default 1; 2 needs "
                        "an otherwise idle 2-core machine to mean anything)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per run (after warm-up)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--parity-steps", dest="parity_steps", type=int, default=20)
    parser.add_argument("--sides", default=",".join(SIDES))
    parser.add_argument("--models", default=",".join(MODELS), help=f"some of {MODELS}")
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
    threads = [int(t) for t in args.threads.split(",") if t.strip()]
    sides = [s for s in args.sides.split(",") if s]
    if "trl" not in sides:
        parser.error("--sides must include trl (the loss reference)")
    models = [m for m in args.models.split(",") if m]
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        parser.error(f"--models: unknown {unknown}; expected some of {MODELS}")
    setups, summaries, loads = {}, {}, []
    with tempfile.TemporaryDirectory(prefix="dpo-vs-trl-") as folder:
        for model_name in models:
            workdir = Path(folder) / model_name
            setups[model_name] = prepare(workdir, model_name)
            records: dict[tuple[str, int], dict[str, Any]] = {}
            for count in threads:
                # Round-robin over the sides, one fresh process per (side, run): load drift on a shared machine
                # then hits every side alike instead of whichever side ran during a busy minute.
                for run in range(args.repeats):
                    for side in sides:
                        env = {**os.environ, "OMP_NUM_THREADS": str(count), "MKL_NUM_THREADS": str(count),
                               "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1",
                               "HF_DATASETS_CACHE": str(workdir / "datasets-cache"), "TMPDIR": str(workdir)}
                        load_before = os.getloadavg()[0]
                        command = [sys.executable, __file__, "--worker", side, "--workdir", str(workdir),
                                   "--threads", str(count), "--steps", str(args.steps), "--warmup", str(args.warmup),
                                   "--repeats", "1"]
                        process = subprocess.run(command, env=env, capture_output=True, text=True)
                        if process.returncode != 0:
                            raise RuntimeError(f"{side} ({count} threads) failed:\n{process.stderr[-4000:]}")
                        record = json.loads((workdir / f"{side}-{count}.json").read_text())
                        record["runs"][0]["run"] = run
                        records.setdefault((side, count), {**record, "runs": []})["runs"] += record["runs"]
                        loads.append({"model": model_name, "side": side, "threads": count, "run": run,
                                      "load_1min_before": load_before, "load_1min_after": os.getloadavg()[0]})
                        rate = record["runs"][0]["steps_per_second"]
                        print(f"{model_name:11s} {side:15s} {count} thread(s) run {run}: {rate:6.2f} steps/s",
                              flush=True)
            summaries[model_name] = summarize(records, args.parity_steps)
    result = {
        "benchmark": "dpo_vs_trl",
        "goal": "ours / trl >= 1.5 steps per second on the CPU, loss values agreeing",
        "setup": setups,
        "protocol": {"timed_steps": args.steps, "warmup_steps": args.warmup, "repeats": args.repeats,
                     "parity_steps": args.parity_steps, "threads": threads, "sides": sides, "models": models,
                     "trl_settings": "bf16=False, gradient_checkpointing=False, max_grad_norm=0, constant lr, "
                                     "adamw_torch, no logging/saving/eval, precompute_ref_batch_size=16",
                     "seeds": {"lora_init": SEED, "pairs": SEED, "trainer": SEED, "gpt2_v2000_init": SEED}},
        "trl_version": importlib.metadata.version("trl"),
        "transformers_version": importlib.metadata.version("transformers"),
        "peft_version": importlib.metadata.version("peft"),
        "torch_version": torch.__version__,
        "provenance": provenance(SEED),
        "results": summaries,
        "load_average": loads,
        "seconds": time.perf_counter() - started,
    }
    write_json(args.out, result)
    for model_name, summary in summaries.items():
        for key, block in summary.items():
            diffs = {s: f"{block[s]['max_abs_loss_diff_vs_trl']:.1e}" for s in sides if s in block}
            ratios = {k: round(v, 2) for k, v in block["ratios"].items()}
            print(f"{model_name} {key}: ratios {ratios}; max |loss diff| vs trl over {args.parity_steps} steps "
                  f"{diffs}")
    print(args.out)


if __name__ == "__main__":
    main()
