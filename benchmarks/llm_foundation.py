"""Costs and quality of the language-model foundation (``llm.builtin_model``, ``llm.models``, ``llm.sentiment``).

Measures, with one torch thread on the CPU, and writes ``benchmarks/results/llm_foundation.json``:

* build time of the tiny and of the default built-in model (each into a fresh temporary cache, unless
  ``--cache`` points at a cache that already holds the default model; then its stored build time is reported),
  their held-out next-token loss (nats per token) and perplexity on reviews from the held-out stream;
* log-prob throughput: :func:`llm.models.sequence_logprobs` on batches of 32 ``prompt + completion`` sequences
  sampled from the default model, without gradients (the reference) and forward + backward through a LoRA
  adapter (the policy), in sequences and completion tokens per second (median of repeats);
* sampling throughput of :func:`llm.models.generate_completions`;
* whether sentiment continuation is learnable: the mean gold sentiment (VADER) of the default model's samples on
  test prompts, and on the same prompts followed by a positive or a negative opinion sentence.

Run: ``python benchmarks/llm_foundation.py`` (about two minutes, most of it the default build).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from irl_bilevel.runs import provenance, write_json
from llm.builtin_model import BuiltinRecipe, build_builtin_model, builtin_model_path, read_build_info
from llm.models import generate_completions, load_causal_lm, sequence_logprobs, with_lora
from llm.sentiment import GoldReward, sentiment_prompts

RESULT = Path(__file__).parent / "results" / "llm_foundation.json"


def timed_build(recipe: BuiltinRecipe, cache: Path | None) -> tuple[Path, dict]:
    if cache is not None and builtin_model_path(recipe, cache).exists():
        path = builtin_model_path(recipe, cache)
        return path, {**read_build_info(path), "cached": True}
    root = cache or Path(tempfile.mkdtemp(prefix="llm-build-"))
    started = time.perf_counter()
    path = build_builtin_model(recipe, cache_dir=root, progress=False)
    return path, {**read_build_info(path), "cached": False, "wall_seconds": time.perf_counter() - started}


def median_time(function, repeats: int) -> float:
    function()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path, default=None, help="reuse a cache holding the default model")
    parser.add_argument("--output", type=Path, default=RESULT)
    args = parser.parse_args()
    torch.set_num_threads(1)
    result: dict = {"provenance": provenance(seed=0), "threads": 1}
    tiny_path, result["tiny_build"] = timed_build(BuiltinRecipe.tiny(), None)
    path, result["default_build"] = timed_build(BuiltinRecipe(), args.cache)
    model, tokenizer = load_causal_lm(path)

    prompts = sentiment_prompts(32, split="test", seed=0)
    samples = generate_completions(model, tokenizer, prompts, max_new_tokens=24, seed=0)
    batch = samples.batch(tokenizer.pad_token_id)
    tokens = float(batch.completion_mask.sum())
    shape = list(batch.input_ids.shape)

    def reference_pass():
        with torch.no_grad():
            sequence_logprobs(model, batch.input_ids, batch.attention_mask, batch.completion_mask)

    reference_seconds = median_time(reference_pass, 10)
    policy = with_lora(model, seed=0)
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-4)

    def policy_step():
        _, summed, _ = sequence_logprobs(policy, batch.input_ids, batch.attention_mask, batch.completion_mask)
        (-summed.mean()).backward()
        optimizer.step()
        optimizer.zero_grad()

    policy_seconds = median_time(policy_step, 10)
    result["logprob_throughput"] = {
        "batch_shape": shape, "completion_tokens": tokens,
        "no_grad_seconds": reference_seconds, "no_grad_sequences_per_second": shape[0] / reference_seconds,
        "no_grad_tokens_per_second": tokens / reference_seconds,
        "lora_train_step_seconds": policy_seconds, "lora_train_sequences_per_second": shape[0] / policy_seconds,
        "lora_train_tokens_per_second": tokens / policy_seconds,
    }
    sampling_seconds = median_time(lambda: generate_completions(model, tokenizer, prompts, max_new_tokens=24,
                                                                seed=1), 3)
    result["sampling"] = {"prompts": len(prompts), "max_new_tokens": 24, "seconds": sampling_seconds}

    base, _ = load_causal_lm(path)
    gold = GoldReward(base, tokenizer)
    test_prompts = sentiment_prompts(200, split="test", seed=0)
    conditions = {
        "test_prompts": test_prompts,
        "after_positive_sentence": [f"{p} . the film was great ." for p in test_prompts],
        "after_negative_sentence": [f"{p} . the film was awful ." for p in test_prompts],
    }
    continuation = {}
    for name, condition in conditions.items():
        completions = generate_completions(base, tokenizer, condition, max_new_tokens=24, seed=2)
        rewards = gold.score(completions.prompts, completions.texts, completions.prompt_ids,
                             completions.completion_ids)
        # the completion's own sentiment: score the text without the prompt that set the mood
        completion_only = GoldReward(base, tokenizer, score_prompt=False).score(
            completions.prompts, completions.texts, completions.prompt_ids, completions.completion_ids)
        continuation[name] = {
            "mean_sentiment_review": float(rewards.aspects[:, 0].mean()),
            "mean_sentiment_completion": float(completion_only.aspects[:, 0].mean()),
            "mean_fluency": float(rewards.aspects[:, 1].mean()),
            "mean_completion_tokens": statistics.mean(len(c) for c in completions.completion_ids),
            "example": f"{completions.prompts[0]} | {completions.texts[0]}",
        }
    result["sentiment_continuation"] = continuation
    result["tiny_path"] = str(tiny_path)
    write_json(args.output, result)
    print(args.output)


if __name__ == "__main__":
    main()
