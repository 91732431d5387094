"""Plan with a reward, then imitate the plans: reward-guided search distilled into the LoRA policy.

Where RL on a reward cannot move a small LM policy (it never reaches the goal within the update budget, so every
reward, the true one included, leaves success at its start), the same reward can still be used to *plan*: a
reward-guided search over the environment's model (:func:`llm.agentic.search.reward_guided_search`, a fixed
expansion budget per start) finds action sequences, and the policy is fine-tuned to reproduce them — expert
iteration (Anthony et al. 2017) with the (learned) reward as the planner's objective, one round.

:func:`plan_starts` searches from every start and keeps the plans that reach the goal within the move cap;
:func:`distill_plans` fine-tunes the LoRA adapter by maximum likelihood on their ``(observation, action text)`` steps:
``steps`` AdamW steps of the inner solver's optimizer on batches of ``batch_size`` steps drawn with replacement,
loss ``−(1/B) Σ_b log π(format_action(a_b) + EOS | render_state(s_b))``. A reward whose search finds fewer or
longer plans gives the policy less or worse to imitate: that is what separates rewards here.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import torch

from irl_bilevel.validation import ValidationError
from llm.agentic.base import TextEnv
from llm.agentic.export import text_demonstrations
from llm.agentic.search import StepReward, reward_guided_search
from llm.lora_inner import LoRAInnerSolver
from llm.models import batch_logprobs, collate_completions
from llm.training import clipped_optimizer_step


def plan_starts(env: TextEnv, step_reward: StepReward, max_expansions: int
                ) -> tuple[list[tuple[Hashable, list[Any]]], list[int]]:
    """``(plans, expansions)``: best-first search with ``step_reward`` from every start; a plan is kept when it reaches
    the goal within ``env.max_steps`` actions; ``expansions [starts]`` per search."""
    plans, expansions = [], []
    for start in env.starts:
        found = reward_guided_search(env, start, step_reward, max_expansions=max_expansions)
        expansions.append(found.expansions)
        if found.found and 0 < len(found.plan) <= env.max_steps:
            plans.append((start, found.plan))
    return plans, expansions


def distill_plans(solver: LoRAInnerSolver, plans: Sequence[tuple[Hashable, Sequence[Any]]], steps: int,
                  batch_size: int, seed: int) -> list[dict[str, float]]:
    """Maximum-likelihood fine-tuning of ``solver``'s adapter on the plans' steps (module docstring); returns the loss
    per step (empty when there is no plan: the policy is left as it is)."""
    if steps < 1 or batch_size < 1:
        raise ValidationError(f"steps, batch_size: expected positive integers, got {steps}, {batch_size}")
    pairs = [pair for episode in text_demonstrations(solver.env, plans) for pair in episode]
    if not pairs:
        return []
    tokenizer = solver.tokenizer
    prompt_ids = tokenizer([prompt for prompt, _ in pairs], add_special_tokens=True)["input_ids"]
    action_ids = [[*ids, tokenizer.eos_token_id] for ids in
                  tokenizer([action for _, action in pairs], add_special_tokens=False)["input_ids"]]
    generator = torch.Generator().manual_seed(seed)
    history = []
    with torch.enable_grad():
        for _ in range(steps):
            rows = torch.randint(len(pairs), (batch_size,), generator=generator).tolist()
            batch = collate_completions([prompt_ids[r] for r in rows], [action_ids[r] for r in rows],
                                        tokenizer.pad_token_id)
            summed, _ = batch_logprobs(solver.model, batch)
            loss = -summed.mean()
            clipped_optimizer_step(loss, solver.optimizer, solver.parameters, solver.config.max_grad_norm,
                                   "plan distillation")
            history.append({"loss": float(loss.detach())})
    return history
