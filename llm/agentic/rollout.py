"""Episodes of a causal-LM policy in a text environment, advanced together: one batched ``generate`` per move.

:func:`lockstep_rollout` plays one episode from each given start at once. At every move the observations of the
episodes still running go to :func:`llm.models.generate_completions` as one left-padded batch (transformers'
``generate`` keeps a KV cache across the answer's tokens within the move); each answer is parsed by the episode's own
copy of the environment (``env.step``: malformed and invalid text counted, never fatal), and an episode leaves the
batch when it terminates or reaches the move cap. The cost of a move is one batched prefill of the live prompts plus
``max_new_tokens`` batched decode steps, instead of one of each per episode. What batching saves is the per-call
overhead and the weight reads of the decode steps (memory-bound at batch 1); the prefill of the prompts, compute-bound
and the larger part of a move for prompts of a few hundred tokens on a CPU, costs the same batched or not. A GPU or
several CPU threads gain more from the batch (``benchmarks/smollm2_agentic_rollout.py`` measures the speed-up).

Sampling: ``temperature > 0`` samples (no top-k / top-p truncation), seeded per move with ``seed · 1,000,003 +
move``, so a rollout depends only on the seed; ``temperature = 0`` decodes greedily. Greedy episodes do not depend on
the batch: :func:`one_at_a_time_rollout` (the same episodes, each rolled alone) gives the same actions, up to float
round-off between a padded batch and a single sequence changing an argmax on a near tie (tests check equality on the
tiny model; the benchmark ``benchmarks/smollm2_agentic_rollout.py`` counts agreement on SmolLM2). Sampled episodes
differ between the two (each move's batch draws from one random stream): the same distribution, not the same draws.

Prompts: ``env.render_state``; encoded without added special tokens when ``env.prompt_has_special_tokens`` (a chat
template's rendering, :class:`llm.agentic.chat.ChatEnv`).

Shapes: every returned episode holds ``T`` moves: ``record.states [T + 1]``, ``record.action_texts [T]``,
``prompt_ids [T]`` and ``completion_ids [T]`` (token-id lists; a completion ends with EOS when the model stopped).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from irl_bilevel.validation import ValidationError
from llm.agentic.base import TextEnv
from llm.agentic.metrics import EpisodeRecord, summarize
from llm.models import generate_completions

STEP_SEED_STRIDE = 1_000_003
"""Move ``t`` of a rollout seeded ``seed`` samples with ``seed · STEP_SEED_STRIDE + t``."""


@dataclass
class RolledEpisode:
    """One episode: the environment's record and the token ids of every move (module docstring)."""

    record: EpisodeRecord
    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]


def lockstep_rollout(model: Any, tokenizer: Any, env: TextEnv, starts: Sequence[int], *, max_new_tokens: int,
                     temperature: float, seed: int, batch_size: int = 64) -> list[RolledEpisode]:
    """One episode from each start index of ``starts`` (in order), all advanced together (module docstring);
    ``batch_size`` caps the rows of one ``generate`` call."""
    if len(starts) == 0:
        raise ValidationError("starts: expected at least one start index")
    envs = [copy.copy(env) for _ in starts]
    observations: list[str] = []
    episodes: list[RolledEpisode] = []
    for episode_env, start in zip(envs, starts):
        observation, info = episode_env.reset(options={"start": int(start)})
        observations.append(observation)
        episodes.append(RolledEpisode(EpisodeRecord(env.name, int(start), seed, False, 0, 0, 0,
                                                    info["optimal_length"], states=[episode_env.state]), [], []))
    running = list(range(len(envs)))
    move = 0
    while running:
        samples = generate_completions(model, tokenizer, [observations[i] for i in running], max_new_tokens,
                                       temperature=temperature, seed=seed * STEP_SEED_STRIDE + move,
                                       batch_size=batch_size, add_special_tokens=not env.prompt_has_special_tokens)
        still = []
        for row, i in enumerate(running):
            observation = observations[i]
            observations[i], reward, terminated, truncated, info = envs[i].step(samples.texts[row])
            episodes[i].record.add_move(observation, samples.texts[row], reward, info)
            episodes[i].prompt_ids.append(samples.prompt_ids[row])
            episodes[i].completion_ids.append(samples.completion_ids[row])
            if not (terminated or truncated):
                still.append(i)
        running, move = still, move + 1
    return episodes


def one_at_a_time_rollout(model: Any, tokenizer: Any, env: TextEnv, starts: Sequence[int], *, max_new_tokens: int,
                          temperature: float, seed: int) -> list[RolledEpisode]:
    """The same episodes as :func:`lockstep_rollout`, each rolled alone (episode ``i`` seeded ``seed + i``): the
    baseline of the batching benchmark, and the reference the greedy lockstep episodes are checked against."""
    return [lockstep_rollout(model, tokenizer, env, [start], max_new_tokens=max_new_tokens, temperature=temperature,
                             seed=seed + i)[0] for i, start in enumerate(starts)]


def evaluate_episodes(model: Any, tokenizer: Any, env: TextEnv, *, episodes_per_start: int, max_new_tokens: int,
                      temperature: float, seed: int, examples: int = 3) -> dict[str, Any]:
    """``episodes_per_start`` episodes from every start in one lockstep rollout: the metrics of
    :func:`llm.agentic.metrics.summarize` (``nan`` written as ``None``), the success rate per start, the moves
    rolled, and the first moves of ``examples`` episodes spread over the starts."""
    if episodes_per_start < 1:
        raise ValidationError(f"episodes_per_start: expected a positive integer, got {episodes_per_start}")
    k = episodes_per_start
    starts = [s for s in range(len(env.starts)) for _ in range(k)]
    records = [e.record for e in lockstep_rollout(model, tokenizer, env, starts, max_new_tokens=max_new_tokens,
                                                  temperature=temperature, seed=seed)]
    summary = {key: None if isinstance(value, float) and math.isnan(value) else value
               for key, value in summarize(records).items()}
    per_start = [sum(r.solved for r in records[i * k:(i + 1) * k]) / k for i in range(len(env.starts))]
    spread = records[::max(1, len(records) // examples)][:examples]
    return {**summary, "success_per_start": per_start, "moves": sum(r.steps for r in records),
            "examples": [{"start": r.start, "actions": r.action_texts[:6], "solved": r.solved} for r in spread]}
