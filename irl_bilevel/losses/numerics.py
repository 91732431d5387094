"""Numerically stable pieces shared by the losses (float64-exact at log-ratios of ±1e4)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def smoothed_logistic_loss(logits: torch.Tensor, smoothing: float | torch.Tensor) -> torch.Tensor:
    """``−(1−ε) log σ(z) − ε log σ(−z)``: the cross-entropy of ``σ(z)`` against the soft label ``1 − ε``.

    ``smoothing`` may be a number or a tensor broadcasting against ``logits`` (per-pair rates). At ``z = 0`` it is
    ``log 2`` whatever ``ε``:

    >>> round(float(smoothed_logistic_loss(torch.tensor(0.0), 0.1)), 6)
    0.693147
    """
    return -F.logsigmoid(logits) * (1 - smoothing) - F.logsigmoid(-logits) * smoothing


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """``log(1 − exp(x))`` for ``x < 0`` without cancellation (Mächler 2012, "Accurately computing log(1 − exp(−|a|))").

    ``log(−expm1(x))`` near 0, ``log1p(−exp(x))`` below ``−log 2``.

    >>> round(float(log1mexp(torch.tensor(-1e-10, dtype=torch.float64))), 4)  # log(1e-10): no cancellation
    -23.0259
    """
    near_zero = x > -math.log(2.0)
    # Evaluate each branch only where it is accurate; the other branch sees a harmless placeholder value.
    safe_near = torch.where(near_zero, x, torch.full_like(x, -1.0))
    safe_far = torch.where(near_zero, torch.full_like(x, -1.0), x)
    return torch.where(near_zero, torch.log(-torch.expm1(safe_near)), torch.log1p(-torch.exp(safe_far)))


def sigmoid_times_exp(logits: torch.Tensor, exponent: torch.Tensor) -> torch.Tensor:
    """``σ(a) · exp(b)`` as ``exp(log σ(a) + b)``, finite wherever the product is (no ``0 · inf``)."""
    return torch.exp(F.logsigmoid(logits) + exponent)
