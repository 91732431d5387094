"""The LM judge: verdict log-odds from the model's own log-probabilities, the position-balanced margin, labels
through the teachers' rules, and bad inputs."""

from __future__ import annotations

import pytest
import torch

from irl_bilevel.agreement import cohen_kappa, preference_ratings
from irl_bilevel.teachers import Teacher
from irl_bilevel.validation import ValidationError
from llm.judges import LanguageModelJudge
from llm.models import load_causal_lm, token_logprobs

PROMPTS = ["the food was", "our waiter", "the room", "this place"]
FIRST = ["great and warm", "slow", "clean and bright", "bad"]
SECOND = ["cold", "kind and quick", "dirty", "lovely and calm"]


@pytest.fixture
def judge(tiny_lm_path):
    model, tokenizer = load_causal_lm(tiny_lm_path)
    # the built-in vocabulary holds review words only: verdicts from it (" A" / " B" would both be [UNK])
    return LanguageModelJudge(model, tokenizer, template="{prompt} | {first} | {second} ->",
                              verdicts=(" great", " terrible"))


def _verdict_logprob(judge: LanguageModelJudge, text: str, verdict: str) -> float:
    """log p(verdict | text) from one unpadded forward pass, token by token."""
    tokenizer = judge.tokenizer
    context = tokenizer(text, add_special_tokens=True)["input_ids"]
    answer = tokenizer(verdict, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([context + answer])
    with torch.no_grad():
        per_token = token_logprobs(judge.model, ids, torch.ones_like(ids))
    return float(per_token[0, len(context) - 1:].sum())


def test_scores_are_the_verdict_log_odds_and_the_margin_is_position_balanced(judge):
    scores = judge.verdict_scores(PROMPTS, FIRST, SECOND)
    for i in range(len(PROMPTS)):
        text = judge.template.format(prompt=PROMPTS[i], first=FIRST[i], second=SECOND[i])
        expected = _verdict_logprob(judge, text, " great") - _verdict_logprob(judge, text, " terrible")
        assert float(scores[i]) == pytest.approx(expected, abs=1e-4)  # padding changes nothing
    swapped = judge.verdict_scores(PROMPTS, SECOND, FIRST)
    margins = judge.margins(PROMPTS, FIRST, SECOND)
    torch.testing.assert_close(margins, 0.5 * (scores - swapped))
    torch.testing.assert_close(judge.margins(PROMPTS, SECOND, FIRST), -margins)  # antisymmetric


def test_labels_follow_the_margin_through_the_teacher_rules(judge):
    margins = judge.margins(PROMPTS, FIRST, SECOND)
    labels = judge.label_pairs(PROMPTS, FIRST, SECOND)
    assert bool((margins != 0).all())
    assert labels.labels.tolist() == [1.0 if m > 0 else 0.0 if m < 0 else 0.5 for m in margins.tolist()]
    assert cohen_kappa(preference_ratings(labels.labels), preference_ratings(labels.labels)) == pytest.approx(1.0)
    # A Bradley-Terry judge with a huge rationality labels like the deterministic rule; beta 0 is a coin flip.
    sharp = LanguageModelJudge(judge.model, judge.tokenizer, judge.template, judge.verdicts,
                               rule=Teacher.stochastic(beta=1e9))
    assert sharp.label_pairs(PROMPTS, FIRST, SECOND, generator=torch.Generator().manual_seed(0)).labels.tolist() \
        == labels.labels.tolist()
    flipping = LanguageModelJudge(judge.model, judge.tokenizer, judge.template, judge.verdicts,
                                  rule=Teacher.mistaken(mistake=1.0))
    assert flipping.label_pairs(PROMPTS, FIRST, SECOND).labels.tolist() == (1 - labels.labels).tolist()
    # the model is left in the mode it was in
    judge.model.train()
    judge.margins(PROMPTS[:1], FIRST[:1], SECOND[:1])
    assert judge.model.training


def test_bad_inputs_are_named(judge):
    model, tokenizer = judge.model, judge.tokenizer
    with pytest.raises(ValidationError, match="template"):
        LanguageModelJudge(model, tokenizer, template="{prompt} {first}", verdicts=judge.verdicts)
    with pytest.raises(ValidationError, match="verdicts"):
        LanguageModelJudge(model, tokenizer, verdicts=(" great", " great"))
    with pytest.raises(ValidationError, match="unknown token"):
        LanguageModelJudge(model, tokenizer)  # " A" and " B" are both out of the built-in vocabulary
    with pytest.raises(ValidationError, match="batch_size"):
        LanguageModelJudge(model, tokenizer, verdicts=judge.verdicts, batch_size=0)
    with pytest.raises(ValidationError, match="first"):
        judge.margins(PROMPTS, FIRST[:2], SECOND)
    with pytest.raises(ValidationError, match="first"):
        judge.margins([], [], [])
    short = LanguageModelJudge(model, tokenizer, judge.template, judge.verdicts, max_length=4)
    with pytest.raises(ValidationError, match="max_length"):
        short.margins(PROMPTS, FIRST, SECOND)
