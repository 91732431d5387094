"""Plan with a reward, then imitate the plans: reward-guided search distilled into the LoRA policy.

Where RL on a reward cannot move a small LM policy (it never reaches the goal within the update budget, so every
reward, the true one included, leaves success at its start), the same reward can still be used to *plan*: a
reward-guided search over the environment's model (:func:`llm.agentic.search.reward_guided_search`, a fixed
expansion budget per start) finds action sequences, and the policy is fine-tuned to reproduce them — expert
iteration (Anthony et al. 2017) with the (learned) reward as the planner's objective, one round.

:func:`plan_starts` searches from every start and keeps the plans that reach the goal within the move cap;
:func:`distill_plans` fine-tunes the LoRA adapter by maximum likelihood on their ``(observation, action text)`` steps:
``steps`` AdamW steps of the inner solver's optimizer on batches of ``batch_size`` steps drawn with replacement,
loss ``−(1/B) Σ_b log π(format_action(a_b) + EOS | render_state(s_b))`` (prompts encoded without added special tokens
when the environment's rendering holds them: a chat view). A reward whose search finds fewer or longer plans gives
the policy less or worse to imitate: that is what separates rewards here.

:func:`search_plans` is the search with a reward model over the environment's tabular export
(:func:`reward_step_function`: ``r(s, a)`` read from the model once, as an ``[S, A]`` table) and its statistics.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import torch

from irl_bilevel.rewards import RewardModel, Transitions
from irl_bilevel.validation import ValidationError
from llm.agentic.base import FiniteTextEnv, TextEnv
from llm.agentic.export import TabularExport, step_inputs, text_demonstrations
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


def reward_step_function(export: TabularExport, reward: RewardModel) -> StepReward:
    """``r(s, a)`` of ``reward`` on the export's states and canonical actions (text-step featurization, one-hot states
    ``[S]`` and action columns ``[A + 2]``), evaluated once into a table and looked up."""
    num_states, num_actions = export.mdp.num_states, len(export.actions)
    states, actions = step_inputs(export, [s for s in range(num_states) for _ in range(num_actions)],
                                  list(range(num_actions)) * num_states)
    tensors = [*reward.parameters(), *reward.buffers()]  # a frozen AspectTableReward keeps its scales as a buffer
    dtype = tensors[0].dtype if tensors else torch.get_default_dtype()
    with torch.no_grad():
        table = reward(Transitions(states, actions).to(dtype)).total.reshape(num_states, num_actions)
    values = table.double().tolist()

    def step_reward(state: Any, action: Any) -> float:
        return values[export.state_index[state]][export.action_index[action]]

    return step_reward


def search_plans(env: FiniteTextEnv, export: TabularExport, reward: RewardModel, max_expansions: int
                 ) -> tuple[dict[str, Any], list[tuple[Hashable, list[Any]]]]:
    """:func:`plan_starts` with ``reward`` (:func:`reward_step_function`): its statistics (the fraction of starts
    planned, per start, the plan length over the optimal one on planned starts, the mean expansions) and the plans."""
    plans, expansions = plan_starts(env, reward_step_function(export, reward), max_expansions)
    planned = {start: plan for start, plan in plans}
    solved = [start in planned for start in env.starts]
    ratios = [len(planned[start]) / max(1, env.distance_to_goal(start)) for start in env.starts if start in planned]
    return ({"success_rate": float(np.mean(solved)), "success_per_start": [float(x) for x in solved],
             "plan_length_ratio": float(np.mean(ratios)) if ratios else None,
             "expansions_mean": float(np.mean(expansions))}, plans)


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
    prompt_ids = tokenizer([prompt for prompt, _ in pairs],
                           add_special_tokens=not solver.env.prompt_has_special_tokens)["input_ids"]
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
