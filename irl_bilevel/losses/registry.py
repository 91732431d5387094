"""The registry of preference losses behind one signature: ``loss(batch, beta=None, **params) -> LossOutput``.

Every entry is a :class:`PreferenceLoss`, built with :func:`register` from a function
``f(batch, beta, *, param=default, ...) -> LossOutput``; its keyword-only parameters and their defaults are the
loss's parameters. Calling the entry validates what all losses share (the batch type, a reference and lengths
where the loss needs them, ``beta > 0``, no unknown parameters) before the function checks its own.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from irl_bilevel.losses.batches import Batch, LossOutput, PreferenceBatch
from irl_bilevel.losses.gradient_weights import gradient_weights as compute_gradient_weights
from irl_bilevel.losses.parameters import positive
from irl_bilevel.validation import ValidationError

LossFunction = Callable[..., LossOutput]


@dataclass(frozen=True)
class PreferenceLoss:
    """One registered loss: its function and what it needs.

    ``default_beta`` is ``None`` for a loss without a temperature (ORPO), which then refuses a ``beta``.
    ``trl_name`` is TRL's ``DPOTrainer`` ``loss_type`` giving the same values (or TRL's trainer and loss type
    for losses TRL implements elsewhere), ``None`` if TRL has none. ``per_pair`` is False for losses whose
    ``i``-th entry is not pair ``i``'s (AOT sorts the batch: only their mean is meaningful).
    """

    name: str
    function: LossFunction
    batch_type: type
    needs_reference: bool
    needs_lengths: bool
    default_beta: float | None
    source: str
    trl_name: str | None = None
    per_pair: bool = True
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def __call__(self, batch: Batch, beta: float | None = None, *, gradient_weights: bool = False,
                 **params: Any) -> LossOutput:
        """Validate, then evaluate; with ``gradient_weights=True`` also fill ``output.gradient_weights``."""
        if not isinstance(batch, self.batch_type):
            raise ValidationError(f"batch: {self.name} takes a {self.batch_type.__name__}, got {type(batch).__name__}")
        if isinstance(batch, PreferenceBatch):
            if self.needs_reference and not batch.has_reference:
                raise ValidationError(f"reference_chosen_logps: {self.name} needs the reference log-probs; pass "
                                      f"reference_chosen_logps and reference_rejected_logps")
            if self.needs_lengths and not batch.has_lengths:
                raise ValidationError(f"chosen_lengths: {self.name} needs the completion lengths; pass "
                                      f"chosen_lengths and rejected_lengths (token counts >= 1)")
        self.check_params(params)
        temperature = self._beta(beta)
        arguments = {**self.defaults, **params}
        output = self.function(batch, temperature, **arguments)
        if gradient_weights:
            weights = compute_gradient_weights(lambda b: self.function(b, temperature, **arguments).losses, batch)
            output = replace(output, gradient_weights=weights)
        return output

    def check_params(self, names: Iterable[str], field: str | None = None) -> None:
        """Reject parameter ``names`` the loss does not take (beyond ``beta``): a :class:`ValidationError` on ``field``
        (default: the unknown name itself) naming the parameters it has."""
        unknown = sorted(set(names) - set(self.defaults))
        if unknown:
            raise ValidationError(f"{field or unknown[0]}: unknown parameter {unknown[0]!r} of {self.name}; expected "
                                  f"some of {sorted(self.defaults)} (and beta)")

    def _beta(self, beta: float | None) -> float | None:
        if self.default_beta is None:
            if beta is not None:
                raise ValidationError(f"beta: {self.name} has no temperature β; leave beta unset "
                                      f"(its parameters: {sorted(self.defaults)})")
            return None
        return positive(self.default_beta if beta is None else beta, "beta", self.name)


PREFERENCE_LOSSES: dict[str, PreferenceLoss] = {}


def register(name: str, *, batch_type: type = PreferenceBatch, needs_reference: bool = False,
             needs_lengths: bool = False, default_beta: float | None = 0.1, source: str,
             trl_name: str | None = None, per_pair: bool = True) -> Callable[[LossFunction], PreferenceLoss]:
    """Register ``f(batch, beta, *, params...)`` under ``name``; the module-level name becomes the entry."""

    def decorate(function: LossFunction) -> PreferenceLoss:
        if name in PREFERENCE_LOSSES:
            raise ValueError(f"preference loss {name!r} registered twice")
        signature = inspect.signature(function)
        defaults = {p.name: p.default for p in signature.parameters.values() if p.kind is p.KEYWORD_ONLY}
        loss = PreferenceLoss(name=name, function=function, batch_type=batch_type, needs_reference=needs_reference,
                              needs_lengths=needs_lengths, default_beta=default_beta, source=source,
                              trl_name=trl_name, per_pair=per_pair, defaults=defaults)
        PREFERENCE_LOSSES[name] = loss
        return loss

    return decorate


def preference_loss(name: str, batch: Batch, beta: float | None = None, *, gradient_weights: bool = False,
                    **params: Any) -> LossOutput:
    """Evaluate the registered loss ``name`` on ``batch``; ``beta=None`` takes the loss's default (0.1 for DPO)."""
    if name not in PREFERENCE_LOSSES:
        raise ValidationError(f"name: unknown preference loss {name!r}; expected one of {sorted(PREFERENCE_LOSSES)}")
    return PREFERENCE_LOSSES[name](batch, beta, gradient_weights=gradient_weights, **params)
