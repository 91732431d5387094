"""Points of the reward-vs-KL frontier (Rafailov et al. 2023, Fig. 2): gold reward of a policy's samples and
the sequence-level KL of the policy to the reference, estimated from the same samples.

For completions ``y ~ π(·|x)`` of held-out prompts ``x`` (sampled at temperature 1 from the policy itself, its
adapter on), the KL to the reference ``π_ref`` (the adapter-disabled model) is

    ``KL(π ‖ π_ref) = E_x E_{y~π(·|x)} [ Σ_t log π(y_t | x, y_<t) − log π_ref(y_t | x, y_<t) ]``

summed over the completion's tokens (the DPO paper's sequence-level KL), estimated by the sample mean of the
per-sequence log-ratios, with its standard error ``std / sqrt(N)``. Completions cut at ``max_new_tokens`` are
prefixes drawn from both models' prefix distributions, so the estimate is the KL between those (exactly zero
when the adapter is the identity, e.g. a fresh LoRA adapter with ``B = 0``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from irl_bilevel.validation import ValidationError
from llm.models import Completions, batch_logprobs, generate_completions, reference_logprobs
from llm.sentiment import GoldReward


@dataclass(frozen=True)
class KLEstimate:
    """Sequence-level KL estimate: ``mean`` and ``standard_error`` of the per-sample log-ratios ``samples [N]``."""

    mean: float
    standard_error: float
    samples: torch.Tensor


def sequence_logratios(policy, completions: Completions, pad_token_id: int, chunk_size: int = 64) -> torch.Tensor:
    """``[N]``: ``log π(y|x) − log π_ref(y|x)`` (summed over completion tokens) of each completion, no gradients."""
    batch = completions.batch(pad_token_id)
    with torch.no_grad():
        policy_logps, _ = batch_logprobs(policy, batch, chunk_size)
    reference, _ = reference_logprobs(policy, batch, chunk_size)
    return (policy_logps - reference).double().cpu()


def kl_estimate(logratios: torch.Tensor) -> KLEstimate:
    """Mean and standard error of per-sample log-ratios of samples from the policy."""
    values = logratios.double()
    if values.dim() != 1 or values.numel() == 0:
        raise ValidationError(f"logratios: expected a non-empty vector, got shape {list(values.shape)}")
    if not bool(torch.isfinite(values).all()):
        raise ValidationError("logratios: contain non-finite values")
    error = float(values.std() / math.sqrt(values.numel())) if values.numel() > 1 else math.nan
    return KLEstimate(float(values.mean()), error, values)


def kl_to_reference(policy, tokenizer, prompts: Sequence[str], *, samples_per_prompt: int = 1,
                    max_new_tokens: int = 24, seed: int = 0, chunk_size: int = 64) -> KLEstimate:
    """Sample from ``policy`` (adapter on) and estimate ``KL(π ‖ π_ref)`` (module docstring)."""
    samples = generate_completions(policy, tokenizer, prompts, max_new_tokens, num_samples=samples_per_prompt,
                                   seed=seed)
    return kl_estimate(sequence_logratios(policy, samples, tokenizer.pad_token_id, chunk_size))


def _mean_and_error(values: torch.Tensor) -> tuple[float, float]:
    values = values.double()
    error = float(values.std() / math.sqrt(values.numel())) if values.numel() > 1 else math.nan
    return float(values.mean()), error


def evaluate_policy(policy, tokenizer, prompts: Sequence[str], gold: GoldReward, *, samples_per_prompt: int = 1,
                    max_new_tokens: int = 24, seed: int = 0, chunk_size: int = 64,
                    add_special_tokens: bool = True) -> dict[str, Any]:
    """One frontier point: sample from ``policy`` on ``prompts``, score with the gold reward, estimate the KL.

    Returns ``kl`` and ``kl_se`` (nats), ``reward/<aspect>`` and ``reward/<aspect>_se`` for every gold aspect,
    ``reward/total`` (the gold aggregate) and its standard error, the mean completion length in tokens, and one
    example completion. The same seed gives the same samples for the same policy (common random numbers across
    checkpoints and methods). ``add_special_tokens=False`` for prompts rendered by a chat template.
    """
    samples = generate_completions(policy, tokenizer, prompts, max_new_tokens, num_samples=samples_per_prompt,
                                   seed=seed, add_special_tokens=add_special_tokens)
    kl = kl_estimate(sequence_logratios(policy, samples, tokenizer.pad_token_id, chunk_size))
    rewards = gold(samples)
    point: dict[str, Any] = {"kl": kl.mean, "kl_se": kl.standard_error}
    for column, name in enumerate(rewards.aspect_names):
        point[f"reward/{name}"], point[f"reward/{name}_se"] = _mean_and_error(rewards.aspects[:, column])
    point["reward/total"], point["reward/total_se"] = _mean_and_error(rewards.total)
    point["completion_tokens"] = float(sum(len(c) for c in samples.completion_ids) / len(samples))
    point["example"] = f"{samples.prompts[0]} | {samples.texts[0]}"
    return point


def gold_text_reward(gold: GoldReward, aspect: str | None = None):
    """The gold reward as a text reward function ``(prompts, completions) -> [N]`` (what :func:`llm.training.train_rl`
    and :func:`llm.training.best_of_n` take): one ``aspect`` (e.g. ``"sentiment"``), or the aggregate total when
    ``aspect`` is None. Texts are re-tokenized (exact for the built-in word-level tokenizer); an empty completion
    (the model stopped at once) is scored as the EOS token alone."""
    if aspect is not None and aspect not in gold.aspect_names:
        raise ValidationError(f"aspect: expected one of {gold.aspect_names} or None (the total), got {aspect!r}")
    tokenizer = gold.tokenizer

    def reward(prompts: list[str], completions: list[str]) -> torch.Tensor:
        prompt_ids = tokenizer(list(prompts), add_special_tokens=True)["input_ids"]
        completion_ids = tokenizer(list(completions), add_special_tokens=False)["input_ids"]
        completion_ids = [ids if ids else [tokenizer.eos_token_id] for ids in completion_ids]
        output = gold.score(list(prompts), list(completions), prompt_ids, completion_ids)
        if aspect is None:
            return output.total
        return output.aspects[:, output.aspect_names.index(aspect)]

    return reward


def best_of_n_points(model, tokenizer, prompts: Sequence[str], gold: GoldReward, ns: Sequence[int],
                     max_new_tokens: int, seed: int, selectors: dict[str, str | None], *,
                     add_special_tokens: bool = True) -> list[dict[str, Any]]:
    """Best-of-n frontier points: ``max(ns)`` samples per prompt from ``model`` as it is (the reference, for a
    fresh or disabled adapter), scored once by the gold reward; for each selector ``label -> aspect`` (``None``: the
    gold total) and each ``n`` in ``ns``, the sample among the first ``n`` with the highest selected reward.

    Each point: ``variant`` (the label), ``n``, ``kl`` = ``log n − (n−1)/n`` (the analytic bound, ``kl_is_bound``;
    Stiennon et al. 2020, Beirami et al. 2024), and the chosen samples' ``reward/<aspect>``, ``reward/total`` with
    standard errors over prompts.
    """
    largest = max(ns)
    samples = generate_completions(model, tokenizer, prompts, max_new_tokens, num_samples=largest, seed=seed,
                                   add_special_tokens=add_special_tokens)
    rewards = gold(samples)
    count = len(prompts)
    aspects = rewards.aspects.reshape(count, largest, -1)
    totals = rewards.total.reshape(count, largest)
    rows = torch.arange(count)
    points = []
    for label, aspect in selectors.items():
        target = totals if aspect is None else aspects[..., rewards.aspect_names.index(aspect)]
        for n in ns:
            best = target[:, :n].argmax(dim=1)
            point: dict[str, Any] = {"variant": label, "n": n, "kl": math.log(n) - (n - 1) / n, "kl_is_bound": True}
            point["reward/total"], point["reward/total_se"] = _mean_and_error(totals[rows, best])
            for column, name in enumerate(rewards.aspect_names):
                point[f"reward/{name}"], point[f"reward/{name}_se"] = _mean_and_error(aspects[rows, best, column])
            points.append(point)
    return points
