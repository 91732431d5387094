"""A finite text environment seen by an instruction-tuned model: every observation through its chat template.

:class:`ChatEnv` wraps any :class:`~llm.agentic.base.FiniteTextEnv` and changes one thing, the observation text:
``render_state(s)`` is ``tokenizer.apply_chat_template(env.chat_messages(s), add_generation_prompt=True)``, the
environment's system message (rules and answer format) and user message (the current state) with the assistant's
turn opened, so that the model's completion is its answer and the answer's end is the template's end-of-turn token
(the EOS of a ChatML tokenizer such as SmolLM2's). Dynamics, parser, starts, move cap, aspects and reward are the
wrapped environment's (pure functions of the same hashable states), so everything that reads an environment
through its interface — the lockstep rollouts (:mod:`llm.agentic.rollout`), plan distillation
(:mod:`llm.agentic.distill`), the LoRA inner solver, the tabular export and search — works on the chat view
unchanged, and the wrapped environment's tabular export indexes the chat view's states.

The rendered prompts already hold the template's special tokens: ``prompt_has_special_tokens`` is true, and
encoders that honour it tokenize them with ``add_special_tokens=False`` (no second BOS).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from irl_bilevel.validation import ValidationError
from llm.agentic.base import FiniteTextEnv, Parsed


class ChatEnv(FiniteTextEnv[Hashable, Hashable]):
    """``env`` with observations rendered by ``tokenizer``'s chat template (module docstring).

    Args:
        env: the environment whose dynamics, parser and reward are used unchanged.
        tokenizer: a tokenizer with a chat template (an instruction-tuned model's).
    """

    prompt_has_special_tokens = True

    def __init__(self, env: FiniteTextEnv, tokenizer: Any) -> None:
        if not isinstance(env, FiniteTextEnv):
            raise ValidationError(f"env: expected a FiniteTextEnv, got {type(env).__name__}")
        if not getattr(tokenizer, "chat_template", None):
            raise ValidationError("tokenizer: has no chat template; a chat view needs an instruction-tuned model's "
                                  "tokenizer")
        super().__init__(env.reward_mode, env.weights.tolist())
        self.env, self.tokenizer = env, tokenizer
        self.name, self.aspect_names, self.max_steps = env.name, env.aspect_names, env.max_steps
        self._texts: dict[Hashable, str] = {}

    # ------------------------------------------------------------------ the one change: the observation
    def render_state(self, state: Hashable) -> str:
        if state not in self._texts:
            self._texts[state] = self.tokenizer.apply_chat_template(
                self.env.chat_messages(state), add_generation_prompt=True, tokenize=False)
        return self._texts[state]

    def chat_messages(self, state: Hashable) -> list[dict[str, str]]:
        return self.env.chat_messages(state)

    # ------------------------------------------------------------------ everything else is the wrapped env's
    @property
    def starts(self) -> Sequence[Hashable]:
        return self.env.starts

    def parse_action(self, text: str) -> Parsed[Hashable]:
        return self.env.parse_action(text)

    def format_action(self, action: Hashable) -> str:
        return self.env.format_action(action)

    def canonical_actions(self) -> list[Hashable]:
        return self.env.canonical_actions()

    def legal_actions(self, state: Hashable) -> list[Hashable]:
        return self.env.legal_actions(state)

    def legality_error(self, state: Hashable, action: Hashable) -> str | None:
        return self.env.legality_error(state, action)

    def transition(self, state: Hashable, action: Hashable) -> Hashable:
        return self.env.transition(state, action)

    def is_success(self, state: Hashable) -> bool:
        return self.env.is_success(state)

    def is_failure(self, state: Hashable) -> bool:
        return self.env.is_failure(state)

    def is_terminal(self, state: Hashable) -> bool:
        return self.env.is_terminal(state)

    def phase(self, state: Hashable) -> int:
        return self.env.phase(state)

    def distance_to_goal(self, state: Hashable) -> float:
        return self.env.distance_to_goal(state)

    def state_graph(self) -> dict[Hashable, list[tuple[Hashable, Hashable]]]:
        return self.env.state_graph()

    def optimal_plan(self, state: Hashable) -> list[Hashable]:
        return self.env.optimal_plan(state)

    def step_aspects(self, state: Hashable, action: Hashable | None, next_state: Hashable, kind: str) -> np.ndarray:
        return self.env.step_aspects(state, action, next_state, kind)
