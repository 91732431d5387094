"""The library's log-prob pass on real Hugging Face architectures (random-init GPT-2, Llama, Qwen2 from local folders):
the fast path (body once, LM head on completion positions only, shared prompts, no padding mask) against the plain
full-logits computation one unpadded sequence at a time, bare and through peft, in values and in gradients."""

from __future__ import annotations

import pytest
import torch
from conftest import ARCHITECTURES

from irl_bilevel.losses import preference_loss
from llm.completion_logprobs import (
    PackedCompletions,
    body_and_head,
    common_prefix_lengths,
    completion_logprobs,
    row_layout,
)
from llm.models import (
    LoraSettings,
    collate_completions,
    load_causal_lm,
    preference_batch,
    reference_mode,
    sequence_logprobs,
    with_lora,
)

PROMPTS = ["the film was", "i watched this movie last night .", "the plot was", "the film was"]
COMPLETIONS = [" great and fun .", " i loved every minute .", " boring .", " awful , and the ending was dull ."]


def token_lists(tokenizer, prompts=PROMPTS, completions=COMPLETIONS):
    prompt_ids = [tokenizer(p)["input_ids"] for p in prompts]
    completion_ids = [tokenizer(c)["input_ids"] + [tokenizer.eos_token_id] for c in completions]
    return prompt_ids, completion_ids


def plain_logprobs(model, prompt_ids, completion_ids) -> torch.Tensor:
    """Ground truth: each ``prompt + completion`` alone (no padding, no mask), full logits, log-softmax, summed
    over the completion's tokens."""
    sums = []
    for prompt, completion in zip(prompt_ids, completion_ids):
        ids = torch.tensor([prompt + completion])
        logits = model(input_ids=ids).logits[0, :-1].float()
        logps = torch.log_softmax(logits, dim=-1).gather(1, ids[0, 1:, None]).squeeze(1)
        sums.append(logps[len(prompt) - 1:].sum())
    return torch.stack(sums)


def trained_lora(model, seed: int = 0):
    """A LoRA adapter with random ``B`` as well (a fresh adapter, ``B = 0``, would not test the LoRA path)."""
    policy = with_lora(model, LoraSettings(r=4, alpha=8.0), seed=seed)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in policy.named_parameters():
            if "lora_B" in name:
                parameter.copy_(0.3 * torch.randn(parameter.shape, generator=generator))
    return policy


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_fast_logprobs_equal_full_logits_bare_and_through_peft(hf_model_paths, architecture):
    model, tokenizer = load_causal_lm(hf_model_paths[architecture], device="cpu", dtype="float32")
    assert body_and_head(model) is not None  # the fast path applies: body and head are separate modules
    prompt_ids, completion_ids = token_lists(tokenizer)
    with torch.no_grad():
        expected = plain_logprobs(model, prompt_ids, completion_ids)
        shared, counts = completion_logprobs(model, prompt_ids, completion_ids, tokenizer.pad_token_id)
        unshared, _ = completion_logprobs(model, prompt_ids, completion_ids, tokenizer.pad_token_id,
                                          completions_per_row=1)
    packed = PackedCompletions.of(prompt_ids, completion_ids, tokenizer.pad_token_id)
    assert packed.shared and packed.input_ids.shape[0] < 3  # prompts 0 and 3 share; the 3 groups share rows
    torch.testing.assert_close(shared, expected, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(unshared, expected, rtol=1e-6, atol=1e-5)
    assert counts.tolist() == [float(len(c)) for c in completion_ids]
    assert expected.abs().min() > 1.0  # the values are not trivially close

    policy = trained_lora(model)
    with torch.no_grad():
        adapted = plain_logprobs(policy, prompt_ids, completion_ids)
        fast, _ = completion_logprobs(policy, prompt_ids, completion_ids, tokenizer.pad_token_id)
        with reference_mode(policy):
            reference, _ = completion_logprobs(policy, prompt_ids, completion_ids, tokenizer.pad_token_id)
    torch.testing.assert_close(fast, adapted, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(reference, expected, rtol=1e-6, atol=1e-5)  # adapter disabled: the base model
    assert (adapted - expected).abs().max() > 1e-2  # the adapter changes the log-probs


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_dpo_gradient_of_the_fast_path_equals_the_plain_one(hf_model_paths, architecture):
    model, tokenizer = load_causal_lm(hf_model_paths[architecture], device="cpu", dtype="float32")
    policy = trained_lora(model, seed=1)
    prompt_ids, completion_ids = token_lists(tokenizer)
    chosen, rejected = completion_ids[:2], completion_ids[2:]
    prompts = prompt_ids[:2]
    with torch.no_grad(), reference_mode(policy):
        reference = plain_logprobs(policy, prompts + prompts, chosen + rejected)
    gradients = []
    for fast in (True, False):
        policy.zero_grad(set_to_none=True)
        if fast:
            batch = preference_batch(policy, prompts, chosen, rejected, tokenizer.pad_token_id,
                                     reference=(reference[:2], reference[2:]))
            logps = torch.cat([batch.policy_chosen_logps, batch.policy_rejected_logps])
        else:
            logps = plain_logprobs(policy, prompts + prompts, chosen + rejected)
        from irl_bilevel.losses import PreferenceBatch

        loss = preference_loss("sigmoid", PreferenceBatch(logps[:2], logps[2:], reference[:2], reference[2:]),
                               0.1).loss
        loss.backward()
        gradients.append(torch.cat([p.grad.flatten() for p in policy.parameters() if p.requires_grad]))
    assert gradients[1].abs().max() > 1e-4
    torch.testing.assert_close(gradients[0], gradients[1], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("architecture", ["llama", "gpt2"])
def test_eager_attention_takes_the_shared_prompt_mask_as_an_additive_one(hf_model_paths, architecture):
    from transformers import AutoModelForCausalLM

    model, tokenizer = load_causal_lm(hf_model_paths[architecture], device="cpu", dtype="float32")
    eager = AutoModelForCausalLM.from_pretrained(hf_model_paths[architecture], attn_implementation="eager",
                                                 dtype=torch.float32)
    prompt_ids, completion_ids = token_lists(tokenizer)
    with torch.no_grad():
        expected = plain_logprobs(model, prompt_ids, completion_ids)
        got, _ = completion_logprobs(eager, prompt_ids, completion_ids, tokenizer.pad_token_id)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-5)


def test_sequence_logprobs_take_left_padding_with_the_mask(hf_model_paths):
    model, tokenizer = load_causal_lm(hf_model_paths["llama"], device="cpu", dtype="float32")
    prompt_ids, completion_ids = token_lists(tokenizer)
    right = collate_completions(prompt_ids, completion_ids, tokenizer.pad_token_id)
    lengths = right.attention_mask.sum(dim=1)
    width = right.input_ids.shape[1]
    left_ids, left_mask, left_completion = (torch.zeros_like(t) for t in
                                            (right.input_ids, right.attention_mask, right.completion_mask))
    for row, length in enumerate(lengths.tolist()):
        left_ids[row, width - length:] = right.input_ids[row, :length]
        left_mask[row, width - length:] = 1
        left_completion[row, width - length:] = right.completion_mask[row, :length]
    with torch.no_grad():
        expected = plain_logprobs(model, prompt_ids, completion_ids)
        per_token, summed, counts = sequence_logprobs(model, left_ids, left_mask, left_completion)
    torch.testing.assert_close(summed, expected, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(per_token.sum(dim=1), summed)
    assert counts.tolist() == [float(len(c)) for c in completion_ids]


def test_packing_restarts_positions_and_masks_the_other_completion():
    # group 0: prompt [5, 6] with completions 0 and 2; group 1: prompt [7] with completion 1; both in one row
    packed = PackedCompletions.of([[5, 6], [7], [5, 6]], [[1, 2, 3], [4], [8, 9]], pad_token_id=0)
    assert packed.shared and packed.input_ids.tolist() == [[5, 6, 1, 2, 8, 7]]  # last tokens are targets only
    assert packed.position_ids[0].tolist() == [0, 1, 2, 3, 2, 0]  # the second completion restarts at |x|
    positions = packed.positions
    assert positions.rows.tolist() == [0, 0, 0, 0, 0, 0]
    assert positions.columns.tolist() == [1, 2, 3, 1, 4, 5]  # 8 is predicted by the prompt's last token
    assert positions.targets.tolist() == [1, 2, 3, 8, 9, 4]
    assert positions.sequences.tolist() == [0, 0, 0, 2, 2, 1]
    mask = packed.attention_mask("sdpa", torch.float32)[0, 0]
    assert mask[4].tolist() == [True, True, False, False, True, False]  # 8 sees its prompt and itself
    assert mask[5].tolist() == [False, False, False, False, False, True]  # the other group's prompt sees itself
    additive = packed.attention_mask("eager", torch.float32)[0, 0]
    assert additive[4, 0] == 0 and additive[4, 2] == torch.finfo(torch.float32).min
    unpacked = PackedCompletions.of([[5, 6], [7], [5, 6]], [[1, 2, 3], [4], [8, 9]], pad_token_id=0, pack_rows=False)
    assert unpacked.input_ids.tolist() == [[5, 6, 1, 2, 8], [7, 0, 0, 0, 0]]
    unshared = PackedCompletions.of([[5], [7]], [[1], [2]], pad_token_id=0)
    assert not unshared.shared  # packing [5] and [7] into one row would save no position


def test_rows_are_packed_only_where_that_removes_padding():
    assert row_layout([10, 3, 3, 10]) == [[0, 1], [2, 3]]  # 2 rows of 13 positions instead of 4 of 10
    # first-fit decreasing at capacity 20 fills 4 rows exactly (80 positions, not 6 × 20); a single row of 80 would
    # tie, and the narrower layout wins
    assert row_layout([20, 12, 8, 20, 15, 5]) == [[0], [3], [4, 5], [1, 2]]
    assert row_layout([40, 44, 42]) == [[0], [1], [2]]  # one row of 126 is within a tenth of 3 × 44
    assert row_layout([5, 5], min_saving=0.0) == [[0], [1]]  # one row of 10 saves nothing either


def test_a_remembered_row_layout_is_a_fresh_list_each_time():
    layout = row_layout([10, 3, 3, 10])
    layout[0].append(99)
    layout.append([7])
    assert row_layout([10, 3, 3, 10]) == [[0, 1], [2, 3]]
    assert row_layout((10, 3, 3, 10), row_tokens=10) == [[0], [3], [1, 2]]  # the capacity is part of the key


def test_prompts_in_one_row_share_their_common_prefix_as_a_tree():
    # [5] is a prefix of the other two prompts, which share [5, 6]: one row holds the tree 5 → 6 → {7, 8 9}
    assert common_prefix_lengths([[5, 6, 7], [5, 6, 8, 9], [5]]) == ((3, 2, 1), (2, 4, 1), (1, 1, 1))
    assert common_prefix_lengths([[5, 6], [7]]) is None  # no two prompts begin alike
    packed = PackedCompletions.of([[5, 6, 7], [5, 6, 8, 9], [5]], [[1, 2], [3], [4, 4]], pad_token_id=0)
    assert packed.shared and packed.input_ids.tolist() == [[5, 4, 6, 7, 1, 8, 9]]  # 7 positions instead of 12
    assert packed.position_ids[0].tolist() == [0, 1, 1, 2, 3, 2, 3]  # each token at its place in its sequence
    positions = packed.positions
    assert positions.columns.tolist() == [0, 1, 3, 4, 6]  # [4, 4] after 5; [1, 2] after 7; [3] after 9
    assert positions.targets.tolist() == [4, 4, 1, 2, 3]
    assert positions.sequences.tolist() == [2, 2, 0, 0, 1]
    mask = packed.attention_mask("sdpa", torch.float32)[0, 0]
    assert mask[1].tolist() == [True, True, False, False, False, False, False]  # 4 reads 5 only
    assert mask[4].tolist() == [True, False, True, True, True, False, False]  # 1 reads 5 6 7, not the other 4
    assert mask[6].tolist() == [True, False, True, False, False, True, True]  # 9 reads 5 6 8, not 7 or 1
    assert packed.attention_mask("sdpa", torch.float32).shape == (1, 1, 7, 7)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_a_shared_prefix_tree_gives_the_plain_logprobs_and_gradients(hf_model_paths, architecture):
    """Chat-like prompts (one long common opening), one prompt a prefix of another, and one prompt with three
    completions (two groups, which then share the whole prompt): values and LoRA gradients as one sequence at a
    time."""
    model, tokenizer = load_causal_lm(hf_model_paths[architecture], device="cpu", dtype="float32")
    opening = "system : you are a helpful assistant . user : continue this movie review :"
    prompts = [f"{opening} the film was", f"{opening} the film was long", f"{opening} i watched",
               f"{opening} the film was", f"{opening} the film was", opening]
    completions = [" great .", " and dull .", " it twice .", " a mess .", " fine , i guess .", " the plot ."]
    prompt_ids, completion_ids = token_lists(tokenizer, prompts, completions)
    packed = PackedCompletions.of(prompt_ids, completion_ids, tokenizer.pad_token_id)
    one_group_per_row = PackedCompletions.of(prompt_ids, completion_ids, tokenizer.pad_token_id, pack_rows=False)
    assert packed.input_ids.numel() < one_group_per_row.input_ids.numel()
    assert packed.input_ids.shape[0] == 1  # every prompt in one tree
    policy = trained_lora(model, seed=2)
    gradients, values = [], []
    for fast in (True, False):
        policy.zero_grad(set_to_none=True)
        if fast:
            logps, _ = completion_logprobs(policy, prompt_ids, completion_ids, tokenizer.pad_token_id)
        else:
            logps = plain_logprobs(policy, prompt_ids, completion_ids)
        (logps * torch.linspace(-1.0, 1.0, len(logps))).sum().backward()
        values.append(logps.detach())
        gradients.append(torch.cat([p.grad.flatten() for p in policy.parameters() if p.requires_grad]))
    torch.testing.assert_close(values[0], values[1], rtol=1e-6, atol=1e-5)
    assert gradients[1].abs().max() > 1e-4
    torch.testing.assert_close(gradients[0], gradients[1], rtol=1e-4, atol=1e-6)
