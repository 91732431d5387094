"""Input checks shared by every container and solver: each error names the field and what was expected."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch


class ValidationError(ValueError):
    """Raised when an input does not have the shape, dtype or values a field requires."""


def as_tensor(value: Any, field: str, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Convert ``value`` to a tensor, naming ``field`` if that is impossible."""
    try:
        tensor = value if isinstance(value, torch.Tensor) else torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as error:
        raise ValidationError(
            f"{field}: expected an array-like of numbers, got {type(value).__name__}"
        ) from error
    if dtype is not None:
        tensor = tensor.to(dtype)
    return tensor


def check_shape(tensor: torch.Tensor, field: str, shape: Sequence[int | None]) -> None:
    """Check ``tensor.shape`` against ``shape``, where ``None`` matches any size."""
    ok = tensor.dim() == len(shape) and all(
        want is None or have == want for have, want in zip(tensor.shape, shape)
    )
    if not ok:
        expected = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
        raise ValidationError(f"{field}: expected shape {expected}, got {list(tensor.shape)}")


def check_finite(tensor: torch.Tensor, field: str) -> None:
    """Reject NaN and infinite entries."""
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        bad = int((~torch.isfinite(tensor)).sum())
        raise ValidationError(f"{field}: contains {bad} NaN or infinite value(s)")


def check_non_empty(tensor: torch.Tensor, field: str) -> None:
    if tensor.numel() == 0:
        raise ValidationError(f"{field}: is empty; expected at least one entry")


def check_integer_range(tensor: torch.Tensor, field: str, low: int, high: int) -> None:
    """Check that an integer tensor lies in ``[low, high)``."""
    if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
        raise ValidationError(f"{field}: expected integers, got dtype {tensor.dtype}")
    if tensor.numel() and (int(tensor.min()) < low or int(tensor.max()) >= high):
        raise ValidationError(
            f"{field}: expected values in [{low}, {high}), got range [{int(tensor.min())}, {int(tensor.max())}]"
        )


def check_distribution(tensor: torch.Tensor, field: str, dim: int = -1, atol: float = 1e-6) -> None:
    """Check non-negative entries summing to one along ``dim``."""
    tensor = tensor.detach()
    check_finite(tensor, field)
    if bool((tensor < -atol).any()):
        raise ValidationError(f"{field}: probabilities must be non-negative, found {float(tensor.min()):.3g}")
    sums = tensor.sum(dim=dim)
    worst = float((sums - 1).abs().max()) if sums.numel() else 0.0
    if worst > atol:
        raise ValidationError(
            f"{field}: probabilities must sum to 1 along dim {dim}; the worst sum is off by {worst:.3g}"
        )


def reject_unknown_keys(given: Mapping[str, Any] | Iterable[str], allowed: Iterable[str], where: str) -> None:
    """Raise if ``given`` holds keys outside ``allowed`` (config files, CLI overrides, npz archives)."""
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise ValidationError(f"{where}: unknown key(s) {unknown}; expected some of {sorted(set(allowed))}")
