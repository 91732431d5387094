"""torch's default floating dtype, set for a block: tabular solvers and hypergradient checks run in float64, while
SB3 networks and peft's LoRA layers are built in the default dtype and must be float32."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Set torch's default floating dtype (``torch.set_default_dtype``) to ``dtype`` for the block and restore the
    previous one afterwards, also when the block raises."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)
