"""The language-model foundation on the built-in tiny model: loading, log-probabilities, LoRA, reference, adapters."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from irl_bilevel.losses.registry import preference_loss
from irl_bilevel.validation import ValidationError
from llm.builtin_model import RECIPE_FILE, BuiltinRecipe, build_builtin_model, builtin_model_path, read_build_info
from llm.models import (
    LoraSettings,
    collate_completions,
    generate_completions,
    load_adapter,
    load_causal_lm,
    preference_batch,
    prepare_tokenizer,
    read_adapter_info,
    reference_mode,
    save_adapter,
    select_dtype,
    sequence_logprobs,
    with_lora,
)

PROMPTS = ["i watched this movie", "the film follows a detective .", "we rented"]


def adapter_state(model) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in model.state_dict().items() if "lora_" in name}


def train_adapter_one_step(model, batch) -> None:
    """One SGD step that raises the completions' log-prob, so the adapter's B matrices become non-zero."""
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05)
    _, summed, _ = sequence_logprobs(model, batch.input_ids, batch.attention_mask, batch.completion_mask)
    (-summed.sum()).backward()
    optimizer.step()
    optimizer.zero_grad()


@pytest.fixture
def sample_batch(lm):
    model, tokenizer = lm
    completions = generate_completions(model, tokenizer, PROMPTS, max_new_tokens=6, seed=3)
    return completions.batch(tokenizer.pad_token_id)


# ---------------------------------------------------------------------- the built-in model
def test_builtin_model_builds_deterministically_caches_and_loads(tiny_lm_path, tmp_path):
    recipe = BuiltinRecipe.tiny()
    state = torch.get_rng_state()
    again = build_builtin_model(recipe, cache_dir=tmp_path / "second", progress=False)
    assert torch.equal(torch.get_rng_state(), state)  # the build seeds a forked generator
    assert again != tiny_lm_path and again.name == tiny_lm_path.name == f"builtin-{recipe.key()}"
    first, second = load_file(tiny_lm_path / "model.safetensors"), load_file(again / "model.safetensors")
    assert first.keys() == second.keys()
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert (tiny_lm_path / "tokenizer.json").read_text() == (again / "tokenizer.json").read_text()
    # a second call is a cache hit: nothing is rewritten
    stamp = (again / "model.safetensors").stat().st_mtime_ns
    assert build_builtin_model(recipe, cache_dir=tmp_path / "second", progress=False) == again
    assert (again / "model.safetensors").stat().st_mtime_ns == stamp
    assert not [p for p in (tmp_path / "second" / "llm").iterdir() if p.name.startswith(".")]  # no temp folders
    info = read_build_info(again)
    assert BuiltinRecipe.from_dict(info["recipe"]) == recipe
    assert 0 < info["held_out_loss"] < 3.0  # a trained model, far below log(vocab) ≈ 5.1 nats of a uniform one
    model, tokenizer = load_causal_lm(again)
    assert model.dtype == torch.float32 and model.config.model_type == "gpt2"
    assert tokenizer("the film")["input_ids"][0] == tokenizer.bos_token_id
    assert tokenizer.decode(tokenizer("the film was great .")["input_ids"], skip_special_tokens=True) == \
        "the film was great ."


def test_recipe_key_changes_with_the_recipe(tmp_path):
    assert BuiltinRecipe.tiny().key() != BuiltinRecipe.tiny(seed=1).key()
    assert builtin_model_path(BuiltinRecipe(), tmp_path).parent == tmp_path / "llm"
    with pytest.raises(ValidationError, match="n_head"):
        BuiltinRecipe(n_embd=30, n_head=4)


def test_cache_root_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("IRL_BILEVEL_CACHE", str(tmp_path))
    assert builtin_model_path(BuiltinRecipe.tiny()).parent == tmp_path / "llm"


# ---------------------------------------------------------------------- loading
def test_missing_local_path_is_a_validation_error(tmp_path):
    for path in (tmp_path / "missing", str(tmp_path / "missing"), "./no/such/model", "~/no-such-model"):
        with pytest.raises(ValidationError, match="name_or_path"):
            load_causal_lm(path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValidationError, match=r"config\.json"):
        load_causal_lm(tmp_path / "empty")
    assert not (tmp_path / "missing").exists()


def test_tokenizer_that_does_not_fit_the_model_is_rejected(lm):
    model, tokenizer = lm
    tokenizer.add_tokens([f"extra{i}" for i in range(model.get_input_embeddings().num_embeddings)])
    with pytest.raises(ValidationError, match="embedding table"):
        prepare_tokenizer(tokenizer, model)


def test_pad_token_and_left_padding(lm):
    _, tokenizer = lm
    assert tokenizer.pad_token_id is not None and tokenizer.padding_side == "left"


def test_dtype_selection():
    assert select_dtype(torch.device("cpu")) == torch.float32
    assert select_dtype(torch.device("cpu"), "bfloat16") == torch.bfloat16
    with pytest.raises(ValidationError, match="dtype"):
        select_dtype(torch.device("cpu"), "int8")


# ---------------------------------------------------------------------- log-probabilities
def test_sequence_logprobs_mask_prompt_and_padding_like_a_hand_computation(lm):
    model, _ = lm
    prompts = [[2, 5, 11], [2, 9, 4, 6, 20, 30]]
    completions = [[7, 67, 4], [12]]
    batch = collate_completions(prompts, completions, pad_token_id=0)
    assert batch.input_ids.tolist()[1] == [2, 9, 4, 6, 20, 30, 12]
    assert batch.completion_mask.tolist() == [[0, 0, 0, 1, 1, 1, 0], [0, 0, 0, 0, 0, 0, 1]]
    with torch.no_grad():
        per_token, summed, counts = sequence_logprobs(model, batch.input_ids, batch.attention_mask,
                                                      batch.completion_mask)
    assert per_token.shape == (2, 6) and counts.tolist() == [3.0, 1.0]
    for row, (prompt, completion) in enumerate(zip(prompts, completions)):
        ids = torch.tensor([prompt + completion])
        with torch.no_grad():
            log_probs = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)  # unpadded, alone
        # the logits at position t predict token t + 1: completion token j sits at len(prompt) + j
        expected = sum(float(log_probs[len(prompt) + j - 1, token]) for j, token in enumerate(completion))
        assert float(summed[row]) == pytest.approx(expected, abs=1e-5)
        nonzero = per_token[row].ne(0).nonzero().flatten().tolist()
        assert nonzero == list(range(len(prompt) - 1, len(prompt) + len(completion) - 1))


def test_sequence_logprobs_do_not_depend_on_padding_side(lm):
    model, _ = lm
    right = collate_completions([[2, 5], [2, 9, 4, 6]], [[7, 8], [12]], pad_token_id=0)
    left_ids = torch.tensor([[0, 0, 2, 5, 7, 8], [0, 2, 9, 4, 6, 12]])
    left_attention = (torch.arange(6) >= torch.tensor([[2], [1]])).long()
    left_completion = torch.tensor([[0, 0, 0, 0, 1, 1], [0, 0, 0, 0, 0, 1]])
    with torch.no_grad():
        _, right_sum, _ = sequence_logprobs(model, right.input_ids, right.attention_mask, right.completion_mask)
        _, left_sum, _ = sequence_logprobs(model, left_ids, left_attention, left_completion)
    torch.testing.assert_close(left_sum, right_sum, atol=1e-5, rtol=0)


def test_collation_and_mask_validation():
    with pytest.raises(ValidationError, match="completion_ids"):
        collate_completions([[2, 5]], [[]], pad_token_id=0)
    with pytest.raises(ValidationError, match="one completion per prompt"):
        collate_completions([[2, 5]], [[1], [2]], pad_token_id=0)
    with pytest.raises(ValidationError, match="max_length"):
        collate_completions([[2, 5]], [[1, 2, 3]], pad_token_id=0, max_length=4)


# ---------------------------------------------------------------------- LoRA and the reference
def test_disabled_adapter_is_exactly_the_base_model_before_and_after_training(tiny_lm_path, sample_batch):
    base, _ = load_causal_lm(tiny_lm_path)
    with torch.no_grad():
        _, base_logps, _ = sequence_logprobs(base, sample_batch.input_ids, sample_batch.attention_mask,
                                             sample_batch.completion_mask)
    model, _ = load_causal_lm(tiny_lm_path)
    policy = with_lora(model, LoraSettings(r=4, alpha=8), seed=0)
    assert all(p.dtype == torch.float32 for p in policy.parameters())
    trainable = {n for n, p in policy.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    args = (sample_batch.input_ids, sample_batch.attention_mask, sample_batch.completion_mask)
    with torch.no_grad():
        assert torch.equal(sequence_logprobs(policy, *args)[1], base_logps)  # B = 0: the fresh adapter is a no-op
    train_adapter_one_step(policy, sample_batch)
    with torch.no_grad():
        trained = sequence_logprobs(policy, *args)[1]
        with reference_mode(policy):
            reference = sequence_logprobs(policy, *args)[1]
        after = sequence_logprobs(policy, *args)[1]
    assert float(trained.sum()) > float(base_logps.sum())  # the step changed the policy ...
    assert torch.equal(reference, base_logps)  # ... but not the reference
    assert torch.equal(after, trained)  # and the adapter is back on after the block


def test_preference_batch_feeds_the_loss_catalog(tiny_lm_path, sample_batch):
    model, tokenizer = load_causal_lm(tiny_lm_path)
    policy = with_lora(model, seed=0)
    completions = generate_completions(policy, tokenizer, PROMPTS, max_new_tokens=6, num_samples=2, seed=5)
    prompt_ids = completions.prompt_ids[0::2]
    batch = preference_batch(policy, prompt_ids, completions.completion_ids[0::2], completions.completion_ids[1::2],
                             tokenizer.pad_token_id)
    assert batch.batch_size == 3 and batch.has_reference
    assert batch.chosen_lengths.tolist() == [len(c) for c in completions.completion_ids[0::2]]
    torch.testing.assert_close(batch.chosen_logratios, torch.zeros(3), atol=0, rtol=0, check_dtype=False)
    output = preference_loss("sigmoid", batch, beta=0.1)  # DPO
    assert output.loss.item() == pytest.approx(float(torch.log(torch.tensor(2.0))), abs=1e-6)
    output.loss.backward()
    assert any(p.grad is not None and bool(p.grad.ne(0).any()) for p in policy.parameters() if p.requires_grad)
    reference = (batch.reference_chosen_logps, batch.reference_rejected_logps)
    again = preference_batch(policy, prompt_ids, completions.completion_ids[0::2], completions.completion_ids[1::2],
                             tokenizer.pad_token_id, reference=reference)
    assert torch.equal(again.reference_chosen_logps, batch.reference_chosen_logps)
    free = preference_batch(policy, prompt_ids, completions.completion_ids[0::2], completions.completion_ids[1::2],
                            tokenizer.pad_token_id, with_reference=False)
    assert not free.has_reference


# ---------------------------------------------------------------------- sampling
def test_generation_is_seeded_stops_at_eos_and_leaves_the_global_rng_alone(lm):
    model, tokenizer = lm
    state = torch.get_rng_state()
    first = generate_completions(model, tokenizer, PROMPTS, max_new_tokens=10, num_samples=2, seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    assert generate_completions(model, tokenizer, PROMPTS, max_new_tokens=10, num_samples=2,
                                seed=7).completion_ids == first.completion_ids
    other = generate_completions(model, tokenizer, PROMPTS, max_new_tokens=10, num_samples=2, seed=8)
    assert other.completion_ids != first.completion_ids
    assert first.prompt_index == [0, 0, 1, 1, 2, 2] and first.prompts[2] == PROMPTS[1]
    eos = tokenizer.eos_token_id
    for ids in first.completion_ids:
        assert 1 <= len(ids) <= 10 and eos not in ids[:-1]
        assert len(ids) == 10 or ids[-1] == eos
    for prompt, ids in zip(first.prompts, first.prompt_ids):
        assert ids == tokenizer(prompt)["input_ids"]  # the left padding was removed
    # the checkpoint's own generation settings do not leak into sampling
    model.generation_config.top_k, model.generation_config.repetition_penalty = 1, 5.0
    assert generate_completions(model, tokenizer, PROMPTS, max_new_tokens=10, num_samples=2,
                                seed=7).completion_ids == first.completion_ids
    greedy = generate_completions(model, tokenizer, PROMPTS[:1], max_new_tokens=5, temperature=0.0, num_samples=2)
    assert greedy.completion_ids[0] == greedy.completion_ids[1]


# ---------------------------------------------------------------------- adapters on disk
# peft 0.21's PeftModel.from_pretrained (called directly here) reads a property transformers 5 deprecates;
# llm.models.load_adapter filters the same warning around its own call.
@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning")
def test_adapter_save_and_load_round_trip_exactly(tiny_lm_path, sample_batch, tmp_path):
    from peft import PeftModel

    model, _ = load_causal_lm(tiny_lm_path)
    policy = with_lora(model, LoraSettings(r=4, alpha=8, target_modules=("c_attn", "c_proj")), seed=1)
    train_adapter_one_step(policy, sample_batch)
    folder = save_adapter(policy, tmp_path / "adapter", metadata={"step": 1})
    save_adapter(policy, folder, metadata={"step": 1})  # overwriting an adapter is atomic too
    info = read_adapter_info(folder)
    assert info["metadata"] == {"step": 1} and info["lora"]["r"] == 4
    assert json.loads((folder / "adapter_config.json").read_text())["r"] == 4
    args = (sample_batch.input_ids, sample_batch.attention_mask, sample_batch.completion_mask)
    with torch.no_grad():
        expected = sequence_logprobs(policy, *args)[1]
    for loaded in (load_adapter(load_causal_lm(tiny_lm_path)[0], folder),
                   PeftModel.from_pretrained(load_causal_lm(tiny_lm_path)[0], str(folder))):
        original, restored = adapter_state(policy), adapter_state(loaded)
        assert original.keys() == restored.keys() and original
        assert all(torch.equal(original[name], restored[name]) for name in original)
        with torch.no_grad():
            assert torch.equal(sequence_logprobs(loaded, *args)[1], expected)
    trainable = load_adapter(load_causal_lm(tiny_lm_path)[0], folder, trainable=True)
    assert any(p.requires_grad for p in trainable.parameters())
    with pytest.raises(ValidationError, match="adapter_config"):
        load_adapter(load_causal_lm(tiny_lm_path)[0], tmp_path)
    assert (tiny_lm_path / RECIPE_FILE).is_file()


def test_llm_models_does_not_import_classic_rl_or_load_transformers_eagerly():
    code = ("import sys, llm.models, llm.builtin_model, llm.sentiment; "
            "print('classic_rl' in sys.modules, any(m.split('.')[0] == 'classic_rl' for m in sys.modules), "
            "'transformers' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["False", "False", "False"]
