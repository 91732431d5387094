"""LM judges: a causal language model as an AI evaluator of response pairs ("LLM-as-a-judge", Zheng et al. 2023).

The judge reads a prompt built from ``template`` with the task prompt ``x`` and two responses, and compares the
log-probabilities of two verdict continuations ``v_A``, ``v_B`` (default ``" A"``, ``" B"``; summed over their
tokens):

    s(x, y₁, y₂) = log p(v_A | t(x, y₁, y₂)) − log p(v_B | t(x, y₁, y₂)).

LM judges favour one answer slot (position bias: Zheng et al. 2023; Wang et al. 2023, "Large language models are
not fair evaluators"), so the judge asks both orders and takes the balanced margin

    m(y₁ ≻ y₂) = ½ [s(x, y₁, y₂) − s(x, y₂, y₁)],

antisymmetric by construction: ``m(y₂ ≻ y₁) = −m(y₁ ≻ y₂)``, and a judge that only prefers a slot has ``m = 0``.

Labels go through the same rules as the simulated teachers (:class:`irl_bilevel.teachers.Teacher`), with the
margin as the two responses' one-step returns ``(m/2, −m/2)``: the default rule labels ``1`` when ``m > 0``, ``0``
when ``m < 0`` and ``0.5`` (a tie) when ``m = 0``; ``Teacher.stochastic(beta)`` samples Bradley-Terry labels with
``P(y₁ ≻ y₂) = σ(β m)`` (the judge's own confidence), ``Teacher.mistaken(ε)`` flips them. So an LM judge returns the
core's :class:`~irl_bilevel.feedback.Preferences`, exactly as a simulated teacher or a reward-model evaluator
(:class:`irl_bilevel.teachers.RewardModelEvaluator`) does, and the agreement measures of :mod:`irl_bilevel.agreement`
compare them.

The default template asks about review continuations (the built-in sentiment task, :mod:`llm.sentiment`); pass
your own for other tasks (it must contain ``{prompt}``, ``{first}`` and ``{second}``), and verdicts the tokenizer
knows. The built-in 447k-parameter model never saw a judging prompt in its corpus, and its vocabulary holds review
words only (``" A"`` and ``" B"`` are both its unknown token), so as a judge it is a stand-in that exercises the
interface; an instruction-tuned model from a hub (:func:`llm.models.load_causal_lm`) is what the class is for.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from irl_bilevel.feedback import Preferences
from irl_bilevel.teachers import Teacher
from irl_bilevel.validation import ValidationError
from llm.models import batch_logprobs, collate_completions, encode_texts

DEFAULT_TEMPLATE = ("Which response continues the review better?\nReview: {prompt}\nResponse A: {first}\n"
                    "Response B: {second}\nBetter response:")
DEFAULT_VERDICTS = (" A", " B")


class LanguageModelJudge:
    """A causal LM judging response pairs by the log-odds of two verdicts, position-balanced (module docstring).

    ``model``/``tokenizer``: a transformers causal LM and its tokenizer (with a pad token; see
    :func:`llm.models.prepare_tokenizer`). ``rule``: the teacher rule the margins go through (default: the
    deterministic oracle rule). ``batch_size``: judging prompts per forward pass. ``max_length``: the model's context
    (a longer judging prompt is a :class:`ValidationError`, not silently cut). ``chat``: render each judging text
    as the user's message through the tokenizer's chat template, with the assistant's turn opened, so that the
    verdict is the first token(s) of the answer (what an instruction-tuned judge expects).
    """

    def __init__(self, model, tokenizer, template: str = DEFAULT_TEMPLATE,
                 verdicts: tuple[str, str] = DEFAULT_VERDICTS, rule: Teacher | None = None, name: str = "lm_judge",
                 batch_size: int = 32, max_length: int | None = None, chat: bool = False) -> None:
        missing = [field for field in ("{prompt}", "{first}", "{second}") if field not in template]
        if missing:
            raise ValidationError(f"template: expected the fields {{prompt}}, {{first}} and {{second}}, missing "
                                  f"{missing}")
        if len(verdicts) != 2 or verdicts[0] == verdicts[1] or not all(verdicts):
            raise ValidationError(f"verdicts: expected two different non-empty strings, got {verdicts!r}")
        if batch_size < 1:
            raise ValidationError(f"batch_size: expected at least 1, got {batch_size}")
        verdict_ids = tokenizer(list(verdicts), add_special_tokens=False)["input_ids"]
        if not all(verdict_ids) or verdict_ids[0] == verdict_ids[1]:
            raise ValidationError(f"verdicts: {verdicts!r} encode to {verdict_ids} with this tokenizer; expected two "
                                  f"different non-empty token sequences (out-of-vocabulary verdicts may both be the "
                                  f"unknown token)")
        if tokenizer.pad_token_id is None:
            raise ValidationError("tokenizer: has no pad token (see llm.models.prepare_tokenizer)")
        if chat and getattr(tokenizer, "chat_template", None) is None:
            raise ValidationError("chat: the tokenizer has no chat template; a chat judge needs an instruction-tuned "
                                  "model's tokenizer")
        self.chat = chat
        self.model, self.tokenizer, self.template, self.verdicts = model, tokenizer, template, tuple(verdicts)
        self.rule = rule if rule is not None else Teacher(name)
        self.name, self.batch_size, self.max_length = name, int(batch_size), max_length

    def verdict_scores(self, prompts: Sequence[str], first: Sequence[str], second: Sequence[str]) -> torch.Tensor:
        """``s(x, y₁, y₂) = log p(v_A | t) − log p(v_B | t)`` for ``N`` pairs in the given order, ``[N]`` float64."""
        texts = [self.template.format(prompt=p, first=a, second=b) for p, a, b in zip(prompts, first, second)]
        verdicts = [self.verdicts[0]] * len(texts) + [self.verdicts[1]] * len(texts)
        if self.chat:  # the judging text is the user's message; the verdict opens the assistant's answer
            rendered = [self.tokenizer.apply_chat_template([{"role": "user", "content": text}],
                                                           add_generation_prompt=True, tokenize=False)
                        for text in texts]
            judging_ids = self.tokenizer(rendered + rendered, add_special_tokens=False)["input_ids"]
            verdict_ids = self.tokenizer(verdicts, add_special_tokens=False)["input_ids"]
        else:
            judging_ids, verdict_ids = encode_texts(self.tokenizer, texts + texts, verdicts)
        batch = collate_completions(judging_ids, verdict_ids, self.tokenizer.pad_token_id, self.max_length)
        training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                summed, _ = batch_logprobs(self.model, batch, self.batch_size)
        finally:
            self.model.train(training)
        summed = summed.double().cpu()
        return summed[:len(texts)] - summed[len(texts):]

    def margins(self, prompts: Sequence[str], first: Sequence[str], second: Sequence[str]) -> torch.Tensor:
        """The position-balanced margins ``m(y₁ ≻ y₂) = ½ [s(x, y₁, y₂) − s(x, y₂, y₁)]``, ``[N]`` float64."""
        prompts, first, second = list(prompts), list(first), list(second)
        if not prompts or not (len(prompts) == len(first) == len(second)):
            raise ValidationError(f"first: expected equally many (>= 1) prompts, first and second responses, got "
                                  f"{len(prompts)}, {len(first)}, {len(second)}")
        both = self.verdict_scores(prompts + prompts, first + second, second + first)
        return 0.5 * (both[:len(prompts)] - both[len(prompts):])

    def label_pairs(self, prompts: Sequence[str], first: Sequence[str], second: Sequence[str], *,
                    generator: torch.Generator | None = None) -> Preferences:
        """Labels ``1`` (first better), ``0`` or ``0.5`` for ``N`` pairs, through ``rule`` on the margins."""
        margin = self.margins(prompts, first, second)
        return self.rule.label((margin / 2)[:, None], (-margin / 2)[:, None], generator=generator)
