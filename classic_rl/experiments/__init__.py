"""Experiments behind the paper's tabular figures.

Each module exposes ``SCALES`` (``tiny``: seconds, for tests; ``quick``: a few minutes on a laptop;
``full``: the paper's scale), ``CONFIG`` (the typed, frozen settings dataclass each ``SCALES`` entry validates
into; see ``irl_bilevel.config``) and ``run(scale, results_dir, seed=0, progress=True, config=None) -> Path``
(``config``, if given, replaces the scale's settings), which writes ``results_dir/<name>.json`` with the
configuration, provenance (seed, versions, commit, machine) and every number the matching ``figures/<name>.py``
draws.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch

from irl_bilevel.validation import ValidationError


def scale_config(scales: Mapping[str, dict[str, Any]], scale: str, experiment: str) -> dict[str, Any]:
    """The settings of ``scale``; a :class:`ValidationError` naming the known scales otherwise."""
    if scale not in scales:
        raise ValidationError(f"scale: unknown scale {scale!r} for {experiment}; expected one of {list(scales)}")
    return scales[scale]




def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    """``‖value − reference‖ / ‖reference‖`` of flattened tensors (``inf`` for a zero reference)."""
    denominator = float(reference.norm())
    numerator = float((value - reference).norm())
    if denominator == 0.0:
        return 0.0 if numerator == 0.0 else math.inf
    return numerator / denominator


@contextmanager
def quiet_torchopt() -> Iterator[None]:
    """Silence torchopt's FutureWarnings about the deprecated ``functorch`` API it calls (one per call)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module="torchopt")
        yield
