"""Training loops on the built-in tiny model: preference training with catalog losses, RLOO, best-of-n, the KL
estimate, adapters on disk, and the tiny sentiment frontier end to end."""

from __future__ import annotations

import json

import pytest
import torch

from irl_bilevel.validation import ValidationError
from llm.frontier import evaluate_policy, gold_text_reward, kl_to_reference
from llm.models import (
    batch_logprobs,
    collate_completions,
    encode_texts,
    load_adapter,
    load_causal_lm,
    read_adapter_info,
    with_lora,
)
from llm.sentiment import GoldReward
from llm.training import (
    PreferenceDataset,
    PreferenceTrainingConfig,
    RLConfig,
    UnpairedDataset,
    best_of_n,
    rloo_advantages,
    save_trained_adapter,
    train_preferences,
    train_rl,
)

PROMPTS = ["i watched this movie", "this film tells the", "i saw this film", "the story of",
           "i went to see", "this movie is about", "the acting was", "i finally saw this"]


@pytest.fixture
def policy_and_tokenizer(tiny_lm_path):
    model, tokenizer = load_causal_lm(tiny_lm_path)
    return with_lora(model, seed=0), tokenizer


def synthetic_pairs(tokenizer) -> PreferenceDataset:
    chosen = ["the film was great .", "the plot was really wonderful ."] * 4
    rejected = ["the film was awful .", "the plot was really boring ."] * 4
    prompt_ids, chosen_ids = encode_texts(tokenizer, PROMPTS, chosen)
    _, rejected_ids = encode_texts(tokenizer, PROMPTS, rejected)
    return PreferenceDataset(prompt_ids, chosen_ids, rejected_ids)


def fixed_batch_loss(policy, data: PreferenceDataset, pad: int, loss: str = "sigmoid", beta: float = 0.1) -> float:
    """The catalog loss on all pairs at once, with reference log-probs from the adapter-disabled model."""
    from irl_bilevel.losses import preference_loss
    from llm.models import preference_batch

    with torch.no_grad():
        batch = preference_batch(policy, data.prompt_ids, data.chosen_ids, data.rejected_ids, pad)
        return preference_loss(loss, batch, beta).loss.item()


def test_dpo_step_decreases_the_loss_on_a_fixed_batch(policy_and_tokenizer):
    policy, tokenizer = policy_and_tokenizer
    data = synthetic_pairs(tokenizer)
    before = fixed_batch_loss(policy, data, tokenizer.pad_token_id)
    config = PreferenceTrainingConfig(loss="sigmoid", beta=0.1, steps=1, batch_size=len(data), learning_rate=1e-2,
                                      progress=False)
    result = train_preferences(policy, data, tokenizer.pad_token_id, config)
    after = fixed_batch_loss(policy, data, tokenizer.pad_token_id)
    assert before == pytest.approx(torch.log(torch.tensor(2.0)).item(), abs=1e-6)  # fresh adapter: d = 0
    assert result.history[0]["loss"] == pytest.approx(before, abs=1e-6)
    assert after < before - 1e-3


class ReferenceForwardCounter:
    """Counts forward passes of the transformer body made while the LoRA adapter is disabled (the log-prob pass
    runs the body, then the LM head on the completion positions only)."""

    def __init__(self, policy) -> None:
        from peft.tuners.lora import LoraLayer

        self.layer = next(m for m in policy.modules() if isinstance(m, LoraLayer))
        self.count = 0
        policy.get_base_model().get_decoder().register_forward_pre_hook(self._hook)

    def _hook(self, module, args) -> None:
        if self.layer.disable_adapters:
            self.count += 1


@pytest.mark.parametrize(("loss", "beta", "expected_passes"), [("sigmoid", 0.1, 1), ("kto", 0.1, 1),
                                                                ("simpo", 2.0, 0), ("orpo", None, 0)])
def test_reference_logprobs_are_computed_once_per_dataset(tiny_lm_path, loss, beta, expected_passes):
    counts = []
    for steps in (2, 6):
        model, tokenizer = load_causal_lm(tiny_lm_path)
        policy = with_lora(model, seed=0)
        counter = ReferenceForwardCounter(policy)
        config = PreferenceTrainingConfig(loss=loss, beta=beta, steps=steps, batch_size=3, chunk_size=64,
                                          progress=False)
        result = train_preferences(policy, synthetic_pairs(tokenizer), tokenizer.pad_token_id, config)
        assert all(torch.isfinite(torch.tensor(h["loss"])) for h in result.history)
        counts.append(counter.count)
        assert counter.count == result.reference_forward_passes == expected_passes
    assert counts[0] == counts[1]  # 2 or 6 steps: the same reference work


def test_rloo_advantage_is_leave_one_out_and_sums_to_zero_per_prompt():
    rewards = torch.randn(12, generator=torch.Generator().manual_seed(0))
    advantages = rloo_advantages(rewards, 4)
    grouped = rewards.reshape(3, 4)
    for p in range(3):
        for i in range(4):
            others = torch.cat([grouped[p, :i], grouped[p, i + 1:]])
            assert advantages[p * 4 + i] == pytest.approx((grouped[p, i] - others.mean()).item(), abs=1e-12)
    assert torch.allclose(advantages.reshape(3, 4).sum(dim=1), torch.zeros(3), atol=1e-12)
    with pytest.raises(ValidationError, match="samples_per_prompt"):
        rloo_advantages(rewards, 1)
    with pytest.raises(ValidationError, match="multiple of k"):
        rloo_advantages(rewards, 5)


def test_kl_is_zero_for_a_fresh_adapter_and_positive_after_training(policy_and_tokenizer):
    policy, tokenizer = policy_and_tokenizer
    fresh = kl_to_reference(policy, tokenizer, PROMPTS, samples_per_prompt=2, max_new_tokens=8, seed=1)
    assert fresh.samples.abs().max().item() == 0.0  # LoRA B = 0: the policy is the reference, token by token
    config = PreferenceTrainingConfig(loss="sigmoid", beta=0.1, steps=8, batch_size=8, learning_rate=3e-2,
                                      progress=False)
    train_preferences(policy, synthetic_pairs(tokenizer), tokenizer.pad_token_id, config)
    trained = kl_to_reference(policy, tokenizer, PROMPTS, samples_per_prompt=2, max_new_tokens=8, seed=1)
    assert trained.mean > 3 * trained.standard_error > 0


def test_evaluation_point_has_every_aspect_and_the_kl(lm, policy_and_tokenizer):
    base, tokenizer = lm
    policy, _ = policy_and_tokenizer
    gold = GoldReward(base, tokenizer, target_words=8)
    point = evaluate_policy(policy, tokenizer, PROMPTS[:4], gold, samples_per_prompt=2, max_new_tokens=6, seed=3)
    assert point["kl"] == 0.0 and point["kl_se"] == 0.0
    for name in (*gold.aspect_names, "total"):
        assert f"reward/{name}" in point and f"reward/{name}_se" in point
    assert -1.0 <= point["reward/sentiment"] <= 1.0


def test_an_adapter_saved_by_training_round_trips_exactly(tiny_lm_path, policy_and_tokenizer, tmp_path):
    policy, tokenizer = policy_and_tokenizer
    data = synthetic_pairs(tokenizer)
    config = PreferenceTrainingConfig(loss="ipo", beta=0.5, steps=3, batch_size=4, learning_rate=1e-2,
                                      progress=False)
    result = train_preferences(policy, data, tokenizer.pad_token_id, config)
    folder = save_trained_adapter(policy, tmp_path / "adapter", result, {"note": "test"})
    base, _ = load_causal_lm(tiny_lm_path)
    loaded = load_adapter(base, folder)
    batch = collate_completions(data.prompt_ids, data.chosen_ids, tokenizer.pad_token_id)
    with torch.no_grad():
        assert torch.equal(batch_logprobs(policy, batch)[0], batch_logprobs(loaded, batch)[0])
    info = read_adapter_info(folder)
    assert info["metadata"]["training"]["config"]["loss"] == "ipo"
    assert len(info["metadata"]["training"]["history"]) == 3 and info["metadata"]["note"] == "test"


def test_rl_and_best_of_n_follow_the_reward_function(lm, policy_and_tokenizer):
    base, tokenizer = lm
    policy, _ = policy_and_tokenizer
    gold = GoldReward(base, tokenizer, target_words=8)
    reward = gold_text_reward(gold, "sentiment")
    evaluations = []

    def evaluate(p, step):
        evaluations.append(step)
        return {"marker": step}

    for algorithm in ("rloo", "reinforce"):
        config = RLConfig(algorithm=algorithm, steps=2, prompts_per_step=2, samples_per_prompt=2, kl_coef=0.1,
                          max_new_tokens=6, eval_every=1, progress=False)
        result = train_rl(policy, tokenizer, PROMPTS, reward, config, evaluate)
        assert [e["step"] for e in result.evaluations] == [0, 1, 2]
        assert all(torch.isfinite(torch.tensor([h["reward"], h["kl"], h["loss"]])).all() for h in result.history)
    best = best_of_n(base, tokenizer, PROMPTS[:3], reward, 4, max_new_tokens=6, seed=2)
    assert torch.equal(best.rewards, best.all_rewards.max(dim=1).values)
    assert best.texts == [best.samples.texts[i] for i in best.index]


def test_the_tiny_frontier_runs_end_to_end_and_its_figure_writes(tiny_lm_path, tmp_path, monkeypatch):
    from figures.sentiment_frontier import plot
    from llm.experiments import sentiment_frontier

    monkeypatch.setenv("IRL_BILEVEL_CACHE", str(tiny_lm_path.parent.parent))  # the session's tiny build
    path = sentiment_frontier.run("tiny", tmp_path / "results", progress=False)
    results = json.loads(path.read_text())
    settings = sentiment_frontier.SCALES["tiny"]
    methods = {(r["method"], r["variant"]) for r in results["runs"]}
    assert methods == {(m, v) for v in ("scalar", "multi_aspect") for m in ("dpo", "ipo", "kto", "rloo", "rm_rloo")}
    for entry in results["runs"]:
        rl = entry["method"] in ("rloo", "rm_rloo")
        every = settings["rl_eval_every"] if rl else settings["eval_every"]
        last = settings["rl_steps"] if rl else settings["steps"]
        assert [p["step"] for p in entry["points"]] == sorted({0, last, *range(every, last + 1, every)})
        assert entry["points"][0]["kl"] == 0.0
    # RM + RLOO: a reward model per variant (one head / the gold aspects as heads), its held-out accuracy reported,
    # and RL against it at every KL coefficient of the gold-reward RL, with its own frontier points.
    reward_models = results["reward_models"]
    assert set(reward_models) == {"scalar", "multi_aspect"}
    assert reward_models["scalar"]["heads"] == ["reward"] and reward_models["scalar"]["loss"] == "bradley_terry"
    assert reward_models["multi_aspect"]["heads"] == ["sentiment", "fluency", "conciseness", "diversity"]
    for report in reward_models.values():
        assert 0.0 <= report["held_out_accuracy"] <= 1.0 and report["held_out_pairs"] > 0
    rm_runs = [r for r in results["runs"] if r["method"] == "rm_rloo"]
    assert sorted((r["variant"], r["beta"]) for r in rm_runs) == sorted(
        (v, kl) for v in ("scalar", "multi_aspect") for kl in settings["rl_kl_coefs"])
    assert all(r["reward_source"] == "reward_model" and len(r["points"]) > 1 for r in rm_runs)
    assert len(results["best_of_n"]) == 2 and results["wall_seconds"] > 0
    files = plot(tmp_path / "results", tmp_path / "figures")
    assert [f.suffix for f in files] == [".png", ".pdf"] and all(f.stat().st_size > 1000 for f in files)


def test_bad_inputs_are_validation_errors(lm, tiny_lm_path):
    base, tokenizer = lm
    cases = [
        (lambda: PreferenceTrainingConfig(loss="no_such_loss"), "loss: unknown preference loss"),
        (lambda: PreferenceTrainingConfig(loss="bradley_terry"), "reward-model loss"),
        (lambda: PreferenceTrainingConfig(steps=0), "steps"),
        (lambda: PreferenceTrainingConfig(loss="simpo", loss_params={"gama": 0.5}), "loss_params"),
        (lambda: PreferenceTrainingConfig(learning_rate=float("nan")), "learning_rate"),
        (lambda: PreferenceDataset([], [], []), "empty"),
        (lambda: PreferenceDataset([[1]], [[2]], [[3], [4]]), "chosen_ids"),
        (lambda: UnpairedDataset([[1]], [[]], [True]), "completion_ids"),
        (lambda: RLConfig(samples_per_prompt=1), "samples_per_prompt"),
        (lambda: RLConfig(kl_coef=-1.0), "kl_coef"),
    ]
    for make, message in cases:
        with pytest.raises(ValidationError, match=message):
            make()
    policy = with_lora(base, seed=0)
    unpaired = UnpairedDataset([[2, 5]], [[6]], [True])
    with pytest.raises(ValidationError, match="paired loss"):
        train_preferences(policy, unpaired, tokenizer.pad_token_id, PreferenceTrainingConfig(progress=False))
    config = RLConfig(steps=1, prompts_per_step=1, samples_per_prompt=2, max_new_tokens=4, progress=False)
    with pytest.raises(ValidationError, match="non-finite"):
        train_rl(policy, tokenizer, PROMPTS, lambda p, c: torch.full((len(c),), float("nan")), config)
    with pytest.raises(ValidationError, match=r"shape \[2\]"):
        train_rl(policy, tokenizer, PROMPTS, lambda p, c: torch.zeros(len(c) + 1), config)
    with pytest.raises(ValidationError, match="prompts"):
        train_rl(policy, tokenizer, [], lambda p, c: torch.zeros(len(c)), config)
    with pytest.raises(ValidationError, match="n:"):
        best_of_n(policy, tokenizer, PROMPTS, lambda p, c: torch.zeros(len(c)), 0)
    frozen, _ = load_causal_lm(tiny_lm_path)
    frozen.requires_grad_(False)
    with pytest.raises(ValidationError, match="trainable"):
        train_preferences(frozen, synthetic_pairs(tokenizer), tokenizer.pad_token_id,
                          PreferenceTrainingConfig(progress=False, steps=1))


def test_every_frontier_scale_validates_into_its_typed_config():
    from llm.experiments import sentiment_frontier

    for scale, settings in sentiment_frontier.SCALES.items():
        config = sentiment_frontier.CONFIG.from_dict(settings, scale)
        assert config.to_dict()["other_losses"] == {k: dict(v) for k, v in settings["other_losses"].items()}
    with pytest.raises(ValidationError, match="other_losses"):
        sentiment_frontier.CONFIG.from_dict({**sentiment_frontier.SCALES["tiny"], "other_losses": {"ipo": 0.5}})


def test_per_pair_extras_reach_the_loss_sliced_with_the_minibatch(policy_and_tokenizer):
    policy, tokenizer = policy_and_tokenizer
    data = synthetic_pairs(tokenizer)
    labels = torch.tensor([[1.0, 1.0], [1.0, 0.0]] * 4)
    with_extras = PreferenceDataset(data.prompt_ids, data.chosen_ids, data.rejected_ids, {"aspect_labels": labels})
    config = PreferenceTrainingConfig(loss="aspect_dpo", beta=0.1, steps=3, batch_size=3, progress=False)
    result = train_preferences(policy, with_extras, tokenizer.pad_token_id, config)
    assert len(result.history) == 3 and all(h["loss"] > 0 for h in result.history)
    with pytest.raises(ValidationError, match="aspect_labels"):  # the loss needs its per-pair parameter
        train_preferences(policy, data, tokenizer.pad_token_id, config)
    with pytest.raises(ValidationError, match=r"extras\.aspect_labels"):
        PreferenceDataset(data.prompt_ids, data.chosen_ids, data.rejected_ids, {"aspect_labels": labels[:3]})
