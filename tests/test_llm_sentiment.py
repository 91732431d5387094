"""Controlled sentiment generation on the built-in tiny model: prompts, the structured gold reward, labelled pairs."""

from __future__ import annotations

import pytest
import torch

from irl_bilevel.losses.batches import PreferenceBatch
from irl_bilevel.rewards import FixedWeights, RewardOutput, SoftMin
from irl_bilevel.teachers import Teacher
from irl_bilevel.validation import ValidationError
from llm.builtin_model import BuiltinRecipe
from llm.models import load_causal_lm, reference_mode, with_lora
from llm.sentiment import ASPECTS, GoldReward, label_pairs, sample_preference_pairs, sentiment_prompts

PROMPT = "i watched this movie"


@pytest.fixture
def gold(lm):
    model, tokenizer = lm
    return GoldReward(model, tokenizer, target_words=12)


def aspect(output: RewardOutput, name: str) -> torch.Tensor:
    return output.aspects[:, output.aspect_names.index(name)]


def test_prompts_are_deterministic_short_prefixes_with_disjoint_splits():
    train = sentiment_prompts(40, seed=0, min_words=2, max_words=4)
    assert train == sentiment_prompts(40, seed=0, min_words=2, max_words=4)
    assert train != sentiment_prompts(40, seed=1, min_words=2, max_words=4)
    assert train != sentiment_prompts(40, split="test", seed=0, min_words=2, max_words=4)
    assert all(2 <= len(p.split()) <= 4 for p in train)
    vocabulary = set(BuiltinRecipe().grammar.vocabulary())
    assert all(set(p.split()) <= vocabulary for p in train)
    with pytest.raises(ValidationError, match="split"):
        sentiment_prompts(3, split="validation")


def test_gold_reward_aspects_have_the_expected_signs(gold):
    texts = [
        "the film was great and wonderful . i loved it .",  # positive
        "the film was terrible and boring . i hated it .",  # negative
        "film the . was it and the i loved great .",  # the positive words, shuffled: not fluent
        "the film was great . the film was great . the film was great .",  # long and repetitive
    ]
    output = gold.score_texts([PROMPT] * len(texts), texts)
    assert output.aspect_names == ASPECTS and output.aspects.shape == (4, 4) and output.total.shape == (4,)
    sentiment, fluency = aspect(output, "sentiment"), aspect(output, "fluency")
    assert float(sentiment[0]) > 0.5 > -0.5 > float(sentiment[1])
    assert float(fluency[0]) > float(fluency[2])  # the reference prefers grammatical text
    assert bool((fluency < 0).all())  # mean log-likelihoods in nats per token
    concise, diverse = aspect(output, "conciseness"), aspect(output, "diversity")
    assert float(concise[0]) == 0.0 and float(concise[3]) == pytest.approx(-(15 - 12) / 12)
    assert float(diverse[3]) == pytest.approx(5 / 15) and float(diverse[0]) == pytest.approx(10 / 11)
    weights = torch.tensor([gold.weights[name] for name in ASPECTS], dtype=output.aspects.dtype)
    torch.testing.assert_close(output.total, output.aspects @ weights)
    assert float(output.total[0]) > float(output.total[1])


def test_gold_reward_uses_the_reference_and_any_core_aggregator(lm, gold):
    model, tokenizer = lm
    texts = ["the film was great .", "i hated the plot ."]
    before = gold.score_texts([PROMPT] * 2, texts)
    policy = with_lora(model, seed=0)
    for parameter in policy.parameters():
        if parameter.requires_grad:
            parameter.data.add_(0.5)  # a very different policy ...
    after = GoldReward(policy, tokenizer, target_words=12).score_texts([PROMPT] * 2, texts)
    assert torch.equal(after.aspects, before.aspects)  # ... but fluency is scored by the unchanged reference
    sentiment_only = GoldReward(model, tokenizer, {"sentiment": 1.0}).score_texts([PROMPT] * 2, texts)
    torch.testing.assert_close(sentiment_only.total, aspect(sentiment_only, "sentiment"))
    soft = GoldReward(model, tokenizer, aggregator=SoftMin(0.1)).score_texts([PROMPT] * 2, texts)
    assert bool((soft.total <= soft.aspects.min(dim=1).values + 1e-9).all())
    assert isinstance(gold.aggregator, FixedWeights)
    with pytest.raises(ValidationError, match="unknown aspect"):
        GoldReward(model, tokenizer, {"humour": 1.0})


def test_pairs_are_labelled_consistently_with_the_gold_reward(lm, gold):
    model, tokenizer = lm
    prompts = sentiment_prompts(8, seed=0)
    pairs, completions, rewards = sample_preference_pairs(model, tokenizer, prompts, gold, num_samples=3,
                                                          max_new_tokens=10, seed=0)
    assert len(completions) == 24 and rewards.aspects.shape == (24, 4)
    assert 0 < len(pairs) <= 8
    assert bool((pairs.chosen_total > pairs.rejected_total).all())
    for row, prompt in enumerate(pairs.prompt_index):
        totals = rewards.total[3 * prompt:3 * prompt + 3]
        assert float(pairs.chosen_total[row]) == float(totals.max())  # best against worst of the prompt's samples
        assert float(pairs.rejected_total[row]) == float(totals.min())
        assert pairs.prompts[row] == prompts[prompt]
    torch.testing.assert_close(pairs.chosen_total, gold.aggregate(pairs.chosen_aspects))
    batch = pairs.preference_batch(model, tokenizer.pad_token_id)
    assert isinstance(batch, PreferenceBatch) and batch.batch_size == len(pairs)
    assert batch.rejected_lengths.tolist() == [float(len(ids)) for ids in pairs.rejected_ids]
    assert torch.equal(batch.policy_chosen_logps, batch.reference_chosen_logps)  # no adapter: policy = reference


def test_teachers_label_pairs_from_gold_returns(lm, gold):
    model, tokenizer = lm
    prompts = sentiment_prompts(10, seed=2)
    _, completions, rewards = sample_preference_pairs(model, tokenizer, prompts, gold, num_samples=2,
                                                      max_new_tokens=10, seed=4)
    oracle = label_pairs(completions, rewards, teacher=Teacher.oracle())
    assert len(oracle) > 0 and bool((oracle.chosen_total > oracle.rejected_total).all())
    # two samples per prompt: the oracle teacher and best-versus-worst agree
    assert oracle.chosen_ids == label_pairs(completions, rewards).chosen_ids
    wrong = label_pairs(completions, rewards, teacher=Teacher.mistaken(mistake=1.0))
    assert len(wrong) == len(oracle) and bool((wrong.chosen_total < wrong.rejected_total).all())
    # a teacher with its own aspect weights judges the aspects, not the gold total
    sentiment_teacher = Teacher.oracle(aspect_weights=(1.0, 0.0, 0.0, 0.0))
    by_sentiment = label_pairs(completions, rewards, teacher=sentiment_teacher)
    assert bool((aspect_of(by_sentiment.chosen_aspects) > aspect_of(by_sentiment.rejected_aspects)).all())
    with pytest.raises(ValidationError, match="at least 2 completions"):
        label_pairs(completions.__class__(completions.prompts[:1], completions.prompt_ids[:1],
                                          completions.completion_ids[:1], completions.texts[:1], [0]),
                    RewardOutput(rewards.aspects[:1], rewards.total[:1], ASPECTS))


def aspect_of(aspects: torch.Tensor, name: str = "sentiment") -> torch.Tensor:
    return aspects[:, ASPECTS.index(name)]


def test_sampling_from_the_reference_inside_reference_mode(lm, gold):
    model, tokenizer = lm
    policy = with_lora(model, seed=0)
    for parameter in policy.parameters():
        if parameter.requires_grad:
            parameter.data.add_(0.3)
    prompts = sentiment_prompts(3, seed=5)
    with reference_mode(policy):
        _, from_reference, _ = sample_preference_pairs(policy, tokenizer, prompts, gold, max_new_tokens=8, seed=1)
    base, _ = load_causal_lm(model.config.name_or_path)
    _, from_base, _ = sample_preference_pairs(base, tokenizer, prompts, gold, max_new_tokens=8, seed=1)
    _, from_policy, _ = sample_preference_pairs(policy, tokenizer, prompts, gold, max_new_tokens=8, seed=1)
    assert from_reference.completion_ids == from_base.completion_ids != from_policy.completion_ids


def test_dpo_steps_on_labelled_pairs_lower_the_loss_with_precomputed_reference(lm, gold):
    from irl_bilevel.losses.registry import preference_loss

    model, tokenizer = lm
    pairs, _, _ = sample_preference_pairs(model, tokenizer, sentiment_prompts(8, seed=3), gold, num_samples=2,
                                          max_new_tokens=10, seed=3)
    policy = with_lora(model, seed=0)
    first = pairs.preference_batch(policy, tokenizer.pad_token_id)
    reference = (first.reference_chosen_logps, first.reference_rejected_logps)  # computed once, reused below
    optimizer = torch.optim.Adam([p for p in policy.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(5):
        output = preference_loss("sigmoid", pairs.preference_batch(policy, tokenizer.pad_token_id,
                                                                   reference=reference), beta=0.5)
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
        losses.append(output.loss.item())
    assert losses[-1] < losses[0] - 0.01
