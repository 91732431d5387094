"""Saving and rebuilding reward models: weights in safetensors, the architecture in a JSON spec.

A :class:`RewardSpec` names everything the constructor of a reward model needs; :func:`build_reward_model`
turns it into a fresh module, :func:`save_reward_model` writes ``<stem>.safetensors`` (the state dict) next to
``<stem>.json`` (the spec), and :func:`load_reward_model` rebuilds the module from the JSON and loads the
weights. Nothing is unpickled: safetensors holds plain tensors, the JSON plain values.

Supported architectures: ``linear`` (:class:`~irl_bilevel.rewards.LinearReward`), ``mlp``
(:class:`~irl_bilevel.rewards.MLPReward`), each with one head per aspect and an optional aggregator
(``fixed`` weights, learned ``simplex`` weights, ``softmin``), optionally wrapped in potential-based shaping
(:class:`~irl_bilevel.rewards.PotentialShaping` with an MLP potential).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from torch import nn

from irl_bilevel.config import typed_fields
from irl_bilevel.rewards import (
    Aggregator,
    FixedWeights,
    LinearReward,
    MLPReward,
    PotentialShaping,
    RewardModel,
    SimplexWeights,
    SoftMin,
)
from irl_bilevel.runs import write_atomic, write_json
from irl_bilevel.validation import ValidationError, read_json_file, read_safetensors

ARCHITECTURES = ("linear", "mlp")
AGGREGATORS = ("fixed", "simplex", "softmin")


@dataclass
class RewardSpec:
    """The constructor arguments of a reward model (see the module docstring)."""

    input_dim: int
    architecture: str = "mlp"
    hidden_sizes: list[int] = field(default_factory=lambda: [64, 64])
    aspect_names: list[str] = field(default_factory=lambda: ["reward"])
    aggregator: str | None = None  # None (one aspect), fixed, simplex or softmin
    aggregator_weights: list[float] | None = None  # for "fixed"
    uses_actions: bool = False
    shaping_hidden_sizes: list[int] | None = None  # None: no shaping; [] a linear potential
    shaping_input_dim: int | None = None  # the potential's state dimension (default: input_dim)
    discount: float = 0.99  # the shaping discount γ in γΦ(s') − Φ(s)

    def __post_init__(self) -> None:
        if self.input_dim < 1:
            raise ValidationError(f"input_dim: expected at least 1, got {self.input_dim}")
        for name in ("hidden_sizes", "shaping_hidden_sizes"):
            sizes = getattr(self, name)
            if sizes is not None and any(size < 1 for size in sizes):
                raise ValidationError(f"{name}: expected positive layer widths, got {sizes}")
        if self.shaping_input_dim is not None and self.shaping_input_dim < 1:
            raise ValidationError(f"shaping_input_dim: expected at least 1, got {self.shaping_input_dim}")
        if not 0.0 <= self.discount <= 1.0:
            raise ValidationError(f"discount: expected a discount in [0, 1], got {self.discount}")
        if self.architecture not in ARCHITECTURES:
            raise ValidationError(f"architecture: expected one of {ARCHITECTURES}, got {self.architecture!r}")
        if not self.aspect_names:
            raise ValidationError("aspect_names: expected at least one aspect")
        if self.aggregator is not None and self.aggregator not in AGGREGATORS:
            raise ValidationError(f"aggregator: expected None or one of {AGGREGATORS}, got {self.aggregator!r}")
        if len(self.aspect_names) > 1 and self.aggregator is None:
            raise ValidationError(f"aggregator: {len(self.aspect_names)} aspects need an aggregator, one of "
                                  f"{AGGREGATORS}")
        if self.aggregator == "fixed" and (self.aggregator_weights is None
                                           or len(self.aggregator_weights) != len(self.aspect_names)):
            raise ValidationError(f"aggregator_weights: 'fixed' needs one weight per aspect "
                                  f"({len(self.aspect_names)}), got {self.aggregator_weights}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RewardSpec:
        """A spec from plain values (``reward.json``), each checked against its field's type."""
        return cls(**typed_fields(cls, values))


def _aggregator(spec: RewardSpec) -> Aggregator | None:
    if spec.aggregator == "fixed":
        assert spec.aggregator_weights is not None
        return FixedWeights(spec.aggregator_weights)
    if spec.aggregator == "simplex":
        return SimplexWeights(len(spec.aspect_names))
    if spec.aggregator == "softmin":
        return SoftMin()
    return None


def _mlp(input_dim: int, hidden_sizes: list[int], outputs: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = input_dim
    for hidden in hidden_sizes:
        layers += [nn.Linear(width, hidden), nn.Tanh()]
        width = hidden
    layers.append(nn.Linear(width, outputs))
    return nn.Sequential(*layers)


def build_reward_model(spec: RewardSpec) -> RewardModel:
    """A freshly initialized reward model of the architecture ``spec`` names (default dtype)."""
    names, aggregator = tuple(spec.aspect_names), _aggregator(spec)
    model: RewardModel
    if spec.architecture == "linear":
        model = LinearReward(spec.input_dim, names, aggregator, uses_actions=spec.uses_actions)
    else:
        model = MLPReward(spec.input_dim, tuple(spec.hidden_sizes), names, aggregator, uses_actions=spec.uses_actions)
    if spec.shaping_hidden_sizes is not None:
        state_dim = spec.shaping_input_dim or spec.input_dim
        model = PotentialShaping(model, _mlp(state_dim, spec.shaping_hidden_sizes, 1), spec.discount)
    return model


def save_reward_model(model: RewardModel, spec: RewardSpec, directory: Path | str, stem: str = "reward") -> None:
    """Write ``directory/<stem>.safetensors`` (weights) and ``directory/<stem>.json`` (the spec), atomically."""
    from safetensors.torch import save

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().contiguous().clone() for name, tensor in model.state_dict().items()}
    write_atomic(directory / f"{stem}.safetensors", save(state))
    write_json(directory / f"{stem}.json", asdict(spec))


Spec = TypeVar("Spec")


def read_reward_spec(spec_path: Path, parse: Callable[[dict[str, Any]], Spec], recovery: str,
                     expected: str = "") -> Spec:
    """``parse`` of the reward-model spec (a JSON object) at ``spec_path``. A missing or damaged file, or one that
    ``parse`` rejects, is a :class:`ValidationError` naming the file (and ``expected``, e.g. ``" is not a text reward
    spec"``), followed by ``recovery``."""
    values = read_json_file(spec_path, "reward model spec", recovery=recovery)
    try:
        return parse(values)
    except ValidationError as error:
        raise ValidationError(f"reward model spec: {spec_path}{expected}: {error}{recovery}") from error


def load_reward_model(directory: Path | str, stem: str = "reward") -> tuple[RewardModel, RewardSpec]:
    """Rebuild the model from ``<stem>.json`` and load ``<stem>.safetensors`` into it (dtype as saved).

    A missing or damaged file, a spec with unknown or mistyped fields, and weights of another architecture are a
    :class:`~irl_bilevel.validation.ValidationError` naming the file."""
    directory = Path(directory)
    spec_path, weights_path = directory / f"{stem}.json", directory / f"{stem}.safetensors"
    for path in (spec_path, weights_path):
        if not path.exists():
            raise ValidationError(f"reward model: {path} does not exist")
    hint = "; restore it, or save the reward model again (save_reward_model writes both files)"
    spec = read_reward_spec(spec_path, RewardSpec.from_dict, hint)
    state = read_safetensors(weights_path, "reward model weights", hint)
    dtypes = {tensor.dtype for tensor in state.values() if tensor.dtype.is_floating_point}
    model = build_reward_model(spec)
    if len(dtypes) == 1:
        model = model.to(dtypes.pop())
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ValidationError(
            f"reward model: {weights_path} does not match the spec in {spec_path}: {error}"
        ) from error
    return model, spec
