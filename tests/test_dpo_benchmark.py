"""The DPO-vs-TRL benchmark script and its GPU check, run small on the CPU: the library side in-process (fast), and
the whole `benchmarks/gpu_check.sh` with DEVICE=cpu on the tiny Llama (slow; needs trl from `make baselines`)."""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
from pathlib import Path

import pytest
from conftest import load_benchmark

ROOT = Path(__file__).resolve().parents[1]


def test_the_library_side_trains_the_benchmark_pairs_and_clocks_every_step(tmp_path):
    benchmark = load_benchmark("dpo_vs_trl")
    args = argparse.Namespace(pairs=4, prompt_words=5, completion_words=(3, 6), prompt_format="plain", device="cpu",
                              dtype="float32")
    setup = benchmark.prepare(tmp_path, "llama_tiny", args)
    assert setup["pairs"] == 4 and setup["lora"]["target_modules"] == ["q_proj", "v_proj"]
    rows = json.loads((tmp_path / "token_ids.json").read_text())
    assert all(row["chosen_ids"][-1] == row["rejected_ids"][-1] for row in rows)  # EOS ends every completion
    record = benchmark.run_ours(tmp_path, 3, "cpu", "float32")
    assert record["losses"][0] == pytest.approx(math.log(2), abs=1e-6)  # fresh adapter: the policy is the reference
    assert record["losses"][-1] < record["losses"][0]
    assert len(record["step_ends"]) == 3 and record["step_ends"] == sorted(record["step_ends"])
    runs = {side: {"runs": [{"steps_per_second": rate, "cpu_seconds_per_step": 1 / rate, "losses": [0.69, 0.6],
                             "peak_rss_bytes": rss}]}
            for side, rate, rss in (("ours", 30.0, 900), ("trl", 10.0, 1000), ("trl_precompute", 15.0, 1200))}
    summary = benchmark.summarize({(side, 1): record for side, record in runs.items()}, parity_steps=2)
    assert summary["threads_1"]["ratios"] == {"ours/trl": 3.0, "ours/trl_precompute": 2.0}
    assert summary["threads_1"]["peak_rss_ratios"] == {"ours/trl": 0.9, "ours/trl_precompute": 0.75}
    assert benchmark.goal_checks(summary, 2.0) == {"speed": True, "memory": True, "losses": True}
    assert benchmark.goal_checks(summary, 2.5)["speed"] is False
    runs["ours"]["runs"][0]["peak_rss_bytes"] = 1100  # more than TRL's default side
    summary = benchmark.summarize({(side, 1): record for side, record in runs.items()}, parity_steps=2)
    assert benchmark.goal_checks(summary, 2.0)["memory"] is False


def test_chat_pairs_wrap_the_prefix_in_the_chat_template_and_keep_the_prompt_a_token_prefix():
    benchmark = load_benchmark("dpo_vs_trl")
    tokenizer = benchmark.builtin_tokenizer()
    pairs = benchmark.make_pairs(3, 5, (3, 6))
    with pytest.raises(SystemExit, match="no chat template"):
        benchmark.chat_pairs(tokenizer, pairs)
    tokenizer.chat_template = ("{% for m in messages %}<bos> {{ m['content'] }} <eos>{% endfor %}"
                               "{% if add_generation_prompt %} <bos>{% endif %}")
    chat = benchmark.chat_pairs(tokenizer, pairs)
    for plain, wrapped in zip(pairs, chat):
        assert plain["prompt"] in wrapped["prompt"] and wrapped["prompt"].endswith("<bos>")
        assert wrapped["chosen"] == plain["chosen"].lstrip() and wrapped["rejected"] == plain["rejected"].lstrip()
    rows = benchmark.token_ids(tokenizer, chat)  # raises if the prompt's tokens were not a prefix of the full text
    assert all(len(row["prompt_ids"]) > len(tokenizer(plain["prompt"])["input_ids"])
               for row, plain in zip(rows, pairs))


@pytest.mark.slow  # 50-80 s on a shared 2-core machine: benchmarks/gpu_check.sh end to end, a subprocess per side
def test_gpu_check_dry_run_on_the_cpu(tmp_path):
    pytest.importorskip("trl")
    out = tmp_path / "dry.json"
    env = {**os.environ, "DEVICE": "cpu", "DTYPE": "float32", "MODELS": "llama_tiny", "STEPS": "2", "WARMUP": "1",
           "REPEATS": "1", "THREADS": "1", "PAIRS": "4", "PROMPT_WORDS": "8", "COMPLETION_WORDS": "4,8",
           "OUT": str(out)}
    subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], env=env, check=True, cwd=ROOT)
    result = json.loads(out.read_text())
    block = result["results"]["llama_tiny"]["threads_1"]
    assert set(block["ratios"]) == {"ours/trl", "ours/trl_precompute"}
    assert block["ours"]["max_abs_loss_diff_vs_trl"] < 1e-5  # float32: the same losses as TRL's
    assert block["trl_precompute"]["same_token_ids_as_ours"]


def test_the_profiles_matmul_count_equals_torchs_flop_counter_on_a_llama():
    """``dpo_step_profile.matmul_gflop`` against ``torch.utils.flop_counter`` on a forward pass of a small random
    Llama (grouped-query attention, untied head): the body's and the head's matrix products, half of each being
    the forward pass (the backward computes the same products for the inputs' gradients)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import LlamaConfig, LlamaForCausalLM

    profile = load_benchmark("dpo_step_profile")
    config = LlamaConfig(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, intermediate_size=96,
                         num_hidden_layers=3, vocab_size=101, attn_implementation="sdpa")
    model = LlamaForCausalLM(config).eval()
    body_positions, head_positions = 13, 5
    ids = torch.randint(0, config.vocab_size, (1, body_positions))
    products = {torch.ops.aten.mm, torch.ops.aten.addmm, torch.ops.aten.bmm}

    def matmul_flops(run):
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            output = run()
        counted = sum(flops for op, flops in counter.get_flop_counts()["Global"].items() if op in products)
        return output, counted

    hidden, body = matmul_flops(lambda: model.model(input_ids=ids).last_hidden_state)
    _, head = matmul_flops(lambda: model.lm_head(hidden[0, :head_positions]))
    expected = profile.matmul_gflop(config.to_dict(), body_positions, head_positions)
    assert body > 0 and math.isclose(expected["body"] * 1e9 / 2, body, rel_tol=1e-12)
    assert head > 0 and math.isclose(expected["head"] * 1e9 / 2, head, rel_tol=1e-12)
