"""Checks of the losses' scalar and tensor parameters; each error names the parameter and the loss."""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch

from irl_bilevel.validation import ValidationError, as_tensor, check_finite, check_shape


def real_number(value: Any, field: str, loss: str) -> float:
    """A finite real number (``bool`` is refused: it is almost always a mistake here)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValidationError(f"{field}: expected a real number for {loss}, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number):
        raise ValidationError(f"{field}: expected a finite number for {loss}, got {number}")
    return number


def positive(value: Any, field: str, loss: str) -> float:
    number = real_number(value, field, loss)
    if number <= 0:
        raise ValidationError(f"{field}: expected a value > 0 for {loss}, got {number:g}")
    return number


def non_negative(value: Any, field: str, loss: str) -> float:
    number = real_number(value, field, loss)
    if number < 0:
        raise ValidationError(f"{field}: expected a value >= 0 for {loss}, got {number:g}")
    return number


def label_smoothing(value: Any, loss: str, *, allow_zero: bool = True) -> float:
    """A label-smoothing (label-noise) rate ``ε`` in ``[0, 0.5)`` (``(0, 0.5)`` when ``allow_zero`` is False)."""
    number = real_number(value, "label_smoothing", loss)
    low_ok = number >= 0 if allow_zero else number > 0
    if not (low_ok and number < 0.5):
        interval = "[0, 0.5)" if allow_zero else "(0, 0.5)"
        raise ValidationError(f"label_smoothing: expected a value in {interval} for {loss}, got {number:g}")
    return number


def required_tensor(value: Any, field: str, loss: str, shape: list[int | None],
                    like: torch.Tensor) -> torch.Tensor:
    """A finite floating tensor of ``shape`` (``None`` matches any size), in ``like``'s dtype."""
    if value is None:
        expected = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
        raise ValidationError(f"{field}: {loss} needs this parameter, a tensor of shape {expected}")
    tensor = as_tensor(value, field).to(like.dtype)
    check_shape(tensor, field, shape)
    check_finite(tensor, field)
    return tensor


def preference_labels(value: Any, field: str, loss: str, batch_size: int, like: torch.Tensor) -> torch.Tensor:
    """Per-aspect labels ``[B, K]`` in the project's convention: 1 chosen better, 0 rejected better, 0.5 tie."""
    labels = required_tensor(value, field, loss, [batch_size, None], like)
    if labels.shape[1] == 0:
        raise ValidationError(f"{field}: expected at least one aspect (shape [B, K] with K >= 1)")
    if not bool(((labels == 0) | (labels == 1) | (labels == 0.5)).all()):
        raise ValidationError(f"{field}: expected 1 (chosen preferred), 0 (rejected preferred) or 0.5 (tie)")
    return labels
