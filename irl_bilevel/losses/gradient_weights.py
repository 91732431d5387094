"""The gradient weight each pair receives: autograd derivatives of the summed loss w.r.t. the log-ratios.

See :class:`irl_bilevel.losses.batches.GradientWeights` for the definitions. The derivatives are taken on
detached copies of the policy log-probabilities (the scores, for rankings), so the caller's graph is untouched;
since the reference is fixed, ``∂/∂ log πθ = ∂/∂s``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from irl_bilevel.losses.batches import Batch, GradientWeights, PreferenceBatch, RankingBatch, UnpairedBatch


def _leaf(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().clone().requires_grad_(True)


def _grad(total: torch.Tensor, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    grads = torch.autograd.grad(total, inputs, allow_unused=True)
    return [torch.zeros_like(x) if g is None else g for g, x in zip(grads, inputs)]


def gradient_weights(evaluate: Callable[[Batch], torch.Tensor], batch: Batch) -> GradientWeights:
    """Derivatives of ``evaluate(batch).sum()`` (``evaluate`` returns the per-pair losses)."""
    with torch.enable_grad():
        if isinstance(batch, PreferenceBatch):
            chosen, rejected = _leaf(batch.policy_chosen_logps), _leaf(batch.policy_rejected_logps)
            d_chosen, d_rejected = _grad(evaluate(batch.with_policy(chosen, rejected)).sum(), [chosen, rejected])
            return GradientWeights(d_chosen, d_rejected, -0.5 * (d_chosen - d_rejected))
        if isinstance(batch, UnpairedBatch):
            policy = _leaf(batch.policy_logps)
            (d_policy,) = _grad(evaluate(batch.with_policy(policy)).sum(), [policy])
            desirable = batch.desirable
            assert isinstance(desirable, torch.Tensor)
            along_label = torch.where(desirable, -d_policy, d_policy)
            return GradientWeights(d_policy[desirable], d_policy[~desirable], along_label)
        if isinstance(batch, RankingBatch):
            scores = _leaf(batch.scores)
            (d_scores,) = _grad(evaluate(RankingBatch(scores)).sum(), [scores])
            d_best, d_rest = d_scores[:, 0], d_scores[:, 1:].sum(dim=1)
            return GradientWeights(d_best, d_rest, -0.5 * (d_best - d_rest))
    raise TypeError(f"no gradient weights for a {type(batch).__name__}")
