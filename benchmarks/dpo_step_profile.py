"""Where a DPO step's time goes: ``torch.profiler`` over two steps of the library's training path and of TRL 1.16's
``DPOTrainer`` with precomputed reference log-probs, on one model of ``benchmarks/dpo_vs_trl.py``, same pairs and
settings; plus the positions each side computes.

Per side: the self CPU time of the ``--top`` operators over steps 2–3 (after one warm-up step; the profiler adds
overhead, so read shares, not totals), and of all matrix products. Ours also: the matrix-product work of a step
(:func:`matmul_gflop`), the rate it ran at, and a plain product's rate on the step's widest body shape.
Positions: those ``dpo_vs_trl.positions`` records in the setup (the pairs' real tokens, the body positions of our
packed rows as ``llm.completion_logprobs.PackedCompletions`` builds them for a step and how many are tokens, the
LM-head positions of ours, and TRL's body-and-head positions).

Run (after ``make baselines``): ``.venv/bin/python benchmarks/dpo_step_profile.py --model smollm2_135m`` (about 3
minutes at 1 thread) → ``benchmarks/results/dpo_step_profile.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

RESULT = Path(__file__).parent / "results" / "dpo_step_profile.json"


def _benchmark():
    spec = importlib.util.spec_from_file_location("dpo_vs_trl", Path(__file__).parent / "dpo_vs_trl.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["dpo_vs_trl"] = module
    spec.loader.exec_module(module)
    return module


MATMUL_OPERATORS = ("aten::mm", "aten::addmm", "aten::addmm_", "aten::bmm", "aten::baddbmm")
PROFILED_STEPS = 2  # after one warm-up step


def shares(profile, top: int) -> dict[str, Any]:
    events = profile.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    rows = sorted(events, key=lambda e: -e.self_cpu_time_total)[:top]
    matmul = sum(e.self_cpu_time_total for e in events if e.key in MATMUL_OPERATORS)
    return {"self_cpu_seconds": total / 1e6, "matmul_self_cpu_seconds": matmul / 1e6,
            "top": [{"operator": e.key, "self_cpu_share": e.self_cpu_time_total / total, "calls": e.count}
                    for e in rows]}


def matmul_gflop(config: dict[str, Any], body: int, head: int) -> dict[str, float]:
    """The matrix-product work of our step in GFLOP (2 per multiply-add), from a Llama-style ``config``: every
    body position through every layer's projections (q, k, v, o; gate, up, down) forward and again backward (the
    frozen weights need only the gradient of their input), the LM head at ``head`` positions forward and backward.
    LoRA's rank-r products are left out (under 1%)."""
    width, heads = config["hidden_size"], config["num_attention_heads"]
    head_dim = config.get("head_dim") or width // heads
    per_layer = (2 * width * heads * head_dim + 2 * width * config["num_key_value_heads"] * head_dim
                 + 3 * width * config["intermediate_size"])
    body_gflop = 2 * 2 * body * config["num_hidden_layers"] * per_layer / 1e9
    head_gflop = 2 * 2 * head * width * config["vocab_size"] / 1e9
    return {"body": body_gflop, "head": head_gflop, "total": body_gflop + head_gflop}


def plain_matmul_gflops(rows: int, inner: int, columns: int, repeats: int = 20) -> float:
    """GFLOP/s of one plain float32 ``[rows, inner] @ [inner, columns]`` product on this thread count (best of
    ``repeats``, after three warm-ups; a product of this size takes about 10 ms, and the best of 5 varied by a fifth
    here): what the machine's matrix-product kernel reaches on a shape of the step."""
    left, right = torch.randn(rows, inner), torch.randn(inner, columns)
    for _ in range(3):
        left @ right
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        left @ right
        best = min(best, time.perf_counter() - started)
    return 2 * rows * inner * columns / best / 1e9


def matmul_rates(config: dict[str, Any], positions: dict[str, Any], ours: dict[str, Any]) -> dict[str, Any]:
    """Our step's matrix-product work, the rate its products ran at in the profile, and a plain product's rate on
    the body's widest shape: how close the step's arithmetic is to what this core does."""
    work = matmul_gflop(config, positions["ours_body"], positions["ours_head"])
    seconds = ours["matmul_self_cpu_seconds"] / PROFILED_STEPS
    return {"ours_gflop_per_step": work, "ours_matmul_seconds_per_step": seconds,
            "ours_gflops": work["total"] / seconds,
            "plain_gflops": plain_matmul_gflops(positions["ours_body"], config["hidden_size"],
                                                config["intermediate_size"]),
            "plain_shape": [positions["ours_body"], config["hidden_size"], config["intermediate_size"]]}


def profile_ours(workdir: Path, benchmark) -> Any:
    from torch.profiler import ProfilerActivity, profile

    from llm.models import load_adapter, load_causal_lm
    from llm.training import PreferenceDataset, PreferenceTrainingConfig, train_preferences

    model, tokenizer = load_causal_lm(benchmark.settings(workdir)["model_path"])
    policy = load_adapter(model, workdir / "initial_adapter", trainable=True)
    rows = json.loads((workdir / "token_ids.json").read_text())
    data = PreferenceDataset([r["prompt_ids"] for r in rows], [r["chosen_ids"] for r in rows],
                             [r["rejected_ids"] for r in rows])
    profiler = profile(activities=[ProfilerActivity.CPU])

    def window(_policy, step: int) -> dict[str, Any]:
        if step == 1:
            profiler.start()
        elif step == 1 + PROFILED_STEPS:
            profiler.stop()
        return {}

    config = PreferenceTrainingConfig(loss="sigmoid", beta=benchmark.BETA, steps=1 + PROFILED_STEPS,
                                      batch_size=len(rows), learning_rate=benchmark.LEARNING_RATE,
                                      max_grad_norm=None, eval_every=1, progress=False)
    train_preferences(policy, data, tokenizer.pad_token_id, config, evaluate=window)
    return profiler


def profile_trl(workdir: Path, benchmark) -> Any:
    import datasets
    from peft import PeftModel
    from torch.profiler import ProfilerActivity, profile
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    datasets.disable_caching()
    path = benchmark.settings(workdir)["model_path"]
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model: Any = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=torch.float32)
    policy = PeftModel.from_pretrained(model, str(workdir / "initial_adapter"), is_trainable=True)
    pairs = json.loads((workdir / "pairs.json").read_text())
    config = DPOConfig(
        output_dir=str(workdir / "trl"), per_device_train_batch_size=len(pairs), max_steps=1 + PROFILED_STEPS,
        learning_rate=benchmark.LEARNING_RATE, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
        max_grad_norm=0.0, optim="adamw_torch", beta=benchmark.BETA, loss_type=["sigmoid"], bf16=False, fp16=False,
        gradient_checkpointing=False, use_cpu=True, precompute_ref_log_probs=True,
        precompute_ref_batch_size=len(pairs), report_to="none", logging_strategy="no", save_strategy="no",
        eval_strategy="no", disable_tqdm=True, seed=benchmark.SEED, max_length=None)
    profiler = profile(activities=[ProfilerActivity.CPU])

    class Window(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 1:
                profiler.start()
            elif state.global_step == 1 + PROFILED_STEPS:
                profiler.stop()

    trainer = DPOTrainer(model=policy, ref_model=None, args=config, train_dataset=datasets.Dataset.from_list(pairs),
                         processing_class=tokenizer)
    trainer.add_callback(Window())
    trainer.train()
    return profiler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2_135m")
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args()
    from irl_bilevel.runs import provenance, write_json

    torch.set_num_threads(1)
    benchmark = _benchmark()
    record: dict[str, Any] = {"benchmark": "dpo_step_profile", "model": args.model, "threads": 1,
                              "provenance": provenance(benchmark.SEED)}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dpo-profile-") as folder:
        workdir = Path(folder)
        setup = argparse.Namespace(pairs=16, prompt_words=5, completion_words=(11, 18), prompt_format="plain",
                                   device="cpu", dtype="float32")
        record["setup"] = benchmark.prepare(workdir, args.model, setup)  # its "positions": what each side computes
        record["ours"] = shares(profile_ours(workdir, benchmark), args.top)
        record["trl_precompute"] = shares(profile_trl(workdir, benchmark), args.top)
    config = record["setup"].get("config", {})
    if "intermediate_size" in config:  # a Llama-style model (SmolLM2, the random Llamas)
        record["matmul"] = matmul_rates(config, record["setup"]["positions"], record["ours"])
    record["seconds"] = time.perf_counter() - started
    write_json(args.out, record)
    for side in ("ours", "trl_precompute"):
        print(side, ", ".join(f"{row['operator']} {row['self_cpu_share']:.1%}" for row in record[side]["top"][:6]))
    print(record["setup"]["positions"])
    print(record.get("matmul"))
    print(args.out)


if __name__ == "__main__":
    main()
