"""Input checks shared by every container, solver and loader: each error names the field (and the file) and what was
expected."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

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


Built = TypeVar("Built")


def build_named(builders: Mapping[str, Callable[..., Built]], name: str, options: Mapping[str, Any], *, field: str,
                kind: str, options_field: str) -> Built:
    """``builders[name](**options)``: a registry entry built by name. An unknown ``name`` is a :class:`ValidationError`
    on ``field`` naming the known ones (``kind``: what an entry is, e.g. ``"method"``); options its builder does not
    take (a ``TypeError``) are one on ``options_field``."""
    if name not in builders:
        raise ValidationError(f"{field}: unknown {kind} {name!r}; expected one of {sorted(builders)}")
    try:
        return builders[name](**options)
    except TypeError as error:
        raise ValidationError(f"{options_field}: bad options {sorted(options)} for {name!r}: {error}") from error


def read_text_file(path: str | os.PathLike[str], field: str, recovery: str = "") -> str:
    """The UTF-8 text of the file at ``path``. A missing path, a folder, an unreadable file or one that is not UTF-8
    text is a :class:`ValidationError` naming ``field`` and the path; ``recovery`` (e.g. ``"; delete it to restart
    the run"``) is appended to the messages about a file that exists."""
    path = Path(path)
    if not path.exists():
        raise ValidationError(f"{field}: {path} does not exist")
    if path.is_dir():
        raise ValidationError(f"{field}: {path} is a folder; expected a file{recovery}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        line = bytes(error.object[:error.start]).count(b"\n") + 1
        raise ValidationError(f"{field}: {path} line {line} is not UTF-8 text (byte {error.start} cannot be "
                              f"decoded); it is damaged or not the file expected{recovery}") from error
    except OSError as error:
        raise ValidationError(f"{field}: cannot read {path} ({error.strerror or error}){recovery}") from error


def read_json_file(path: str | os.PathLike[str], field: str, expected: type | tuple[type, ...] = dict,
                   recovery: str = "") -> Any:
    """The JSON value in the file at ``path``, which must be an instance of ``expected`` (a JSON object by
    default); errors as :func:`read_text_file`, and invalid JSON names the line and column."""
    text = read_text_file(path, field, recovery)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValidationError(f"{field}: {path} is not valid JSON ({error.msg}: line {error.lineno} column "
                              f"{error.colno}){recovery}") from error
    if not isinstance(value, expected):
        names = " or ".join(_JSON_NAMES.get(kind, kind.__name__)
                            for kind in (expected if isinstance(expected, tuple) else (expected,)))
        raise ValidationError(f"{field}: {path} holds a JSON {_JSON_NAMES.get(type(value), type(value).__name__)}; "
                              f"expected a JSON {names}{recovery}")
    return value


_JSON_NAMES = {dict: "object", list: "list", str: "string", int: "number", float: "number", bool: "boolean",
               type(None): "null"}


def read_safetensors(path: str | os.PathLike[str], field: str, recovery: str = "",
                     device: str = "cpu") -> dict[str, torch.Tensor]:
    """The tensors of the safetensors file at ``path`` (nothing is unpickled). A missing file, a folder, or bytes
    that are not a safetensors file (empty, cut short, random) are a :class:`ValidationError` naming ``field`` and
    the path, with ``recovery`` appended."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    check_safetensors(path, field, recovery)
    try:
        return load_file(str(path), device=device)
    except (SafetensorError, OSError) as error:
        raise ValidationError(f"{field}: {path} is not a readable safetensors file ({error}){recovery}") from error


def check_safetensors(path: str | os.PathLike[str], field: str, recovery: str = "") -> None:
    """Check that ``path`` is a complete safetensors file (its header, and that the data it describes is all there)
    without reading the tensors; errors as :func:`read_safetensors`."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise ValidationError(f"{field}: {path} {'is a folder' if path.is_dir() else 'does not exist'}; expected a "
                              f".safetensors file{recovery}")
    try:
        with safe_open(str(path), framework="pt"):
            pass
    except (SafetensorError, OSError) as error:
        raise ValidationError(f"{field}: {path} is not a readable safetensors file, it is damaged or cut short "
                              f"({error}){recovery}") from error
