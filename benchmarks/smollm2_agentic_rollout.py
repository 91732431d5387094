"""Batched lockstep rollouts against one episode at a time, on SmolLM2-135M-Instruct in a TextArena game.

The evaluations of :mod:`llm.experiments.smollm2_agentic` advance every episode together, one batched ``generate``
per move (:func:`llm.agentic.rollout.lockstep_rollout`). This benchmark plays the same episodes both ways —
``--episodes`` episodes (the game's starts in turn) of at most ``--moves`` moves each, greedy decoding, the game seen
through SmolLM2's chat template (:class:`llm.agentic.chat.ChatEnv`) — and writes to
``benchmarks/results/smollm2_agentic_rollout.json``:

* the wall time of each way (after one untimed warm-up move), the speed-up (one at a time / batched), moves per second;
* how many episodes are identical both ways (greedy: every answer's token ids; a float round-off difference between
  a padded batch and a single sequence can flip an argmax on a near tie);
* the prompt lengths (tokens), the machine's load average before and after, torch threads, provenance.

Run: ``python benchmarks/smollm2_agentic_rollout.py`` (one torch thread; a few minutes on two cores:
16 episodes × 3 moves × 2 ways). ``--model smollm2-tiny-random`` checks the script in seconds.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from irl_bilevel.runs import provenance, write_json
from llm.agentic.chat import ChatEnv
from llm.agentic.rollout import lockstep_rollout, one_at_a_time_rollout
from llm.agentic.textarena_games import TEXTARENA_GAMES
from llm.models import load_causal_lm

RESULT = Path(__file__).parent / "results" / "smollm2_agentic_rollout.json"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--game", default="ta-frozenlake", choices=sorted(TEXTARENA_GAMES))
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--moves", type=int, default=3, help="move cap of every episode")
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path, default=RESULT)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, tokenizer = load_causal_lm(args.model)
    game = TEXTARENA_GAMES[args.game](max_steps=args.moves)
    env = ChatEnv(game, tokenizer)
    starts = [i % len(env.starts) for i in range(args.episodes)]
    options = {"max_new_tokens": args.max_new_tokens, "temperature": 0.0, "seed": 0}
    lockstep_rollout(model, tokenizer, ChatEnv(TEXTARENA_GAMES[args.game](max_steps=1), tokenizer), starts[:2],
                     **options)  # warm-up: first-call costs out of both timings
    load_before = os.getloadavg()
    started = time.perf_counter()
    batched = lockstep_rollout(model, tokenizer, env, starts, **options)
    batched_seconds = time.perf_counter() - started
    started = time.perf_counter()
    single = one_at_a_time_rollout(model, tokenizer, env, starts, **options)
    single_seconds = time.perf_counter() - started
    load_after = os.getloadavg()
    moves = sum(e.record.steps for e in batched)
    identical = sum(a.completion_ids == b.completion_ids and a.record.states == b.record.states
                    for a, b in zip(batched, single))
    prompt_tokens = [len(ids) for e in batched for ids in e.prompt_ids]
    result = {
        "provenance": provenance(seed=0), "model": args.model, "game": args.game, "episodes": args.episodes,
        "move_cap": args.moves, "max_new_tokens": args.max_new_tokens, "decoding": "greedy", "threads": args.threads,
        "moves": moves, "moves_one_at_a_time": sum(e.record.steps for e in single),
        "prompt_tokens": {"min": min(prompt_tokens), "max": max(prompt_tokens),
                          "mean": sum(prompt_tokens) / len(prompt_tokens)},
        "batched_seconds": batched_seconds, "one_at_a_time_seconds": single_seconds,
        "speedup": single_seconds / batched_seconds, "batched_moves_per_second": moves / batched_seconds,
        "one_at_a_time_moves_per_second": moves / single_seconds, "identical_episodes": identical,
        "load_average_before": load_before, "load_average_after": load_after,
    }
    write_json(args.output, result)
    print(f"{args.episodes} episodes × ≤{args.moves} moves on {args.game}: batched {batched_seconds:.1f} s, one at a "
          f"time {single_seconds:.1f} s, speed-up {result['speedup']:.2f}×; identical episodes {identical}/"
          f"{args.episodes}; load {load_before[0]:.1f} → {load_after[0]:.1f}; wrote {args.output}")
    return result


if __name__ == "__main__":
    main()
