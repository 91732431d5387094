"""Structured reward models: per-aspect rewards with names, an aggregator, and potential-based shaping.

A reward model maps a batch of transitions to ``RewardOutput(aspects [B, K], total [B])``. The total is the
aggregator applied to the aspects. A scalar reward is the ``K = 1`` case of the same code path.

Aggregators (``[B, K] → [B]``):

* ``FixedWeights``: ``Σ_k w_k r_k`` with given weights;
* ``SimplexWeights``: ``Σ_k softmax(η)_k r_k`` with learned logits ``η`` (weights on the simplex);
* ``SoftMin``: ``−τ log Σ_k exp(−r_k / τ)``, a smooth minimum (worst aspect dominates as ``τ → 0``);
* ``Lexicographic``: ``Σ_i ε^i r_{σ(i)}`` for a priority order ``σ``; for small ``ε`` a difference in a
  higher-priority aspect outweighs any bounded difference in the lower ones;
* ``Gated``: ``Σ_k g_k(s) r_k`` with ``g(s) = softmax(MLP(s))``, input-conditioned as in ArmoRM
  (Wang et al. 2024, "Interpretable preferences via multi-objective reward modeling and mixture-of-experts").

Shaping (Ng, Harada, Russell 1999): ``r'(s, a, s') = r(s, a, s') + γ Φ(s') − Φ(s)`` leaves optimal policies
unchanged; ``PotentialShaping`` wraps any reward model with a potential network.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from irl_bilevel.validation import ValidationError, check_shape

ExpectedNext = Callable[[torch.Tensor], torch.Tensor]
"""A tabular MDP's expectation over next states: a state function ``f [S]`` to ``Σ_s' P[s, a, s'] f(s')`` ``[S, A]``."""


@dataclass
class Transitions:
    """A batch of transitions as reward-model input.

    ``states [B, Ds]``; ``actions [B, Da]`` (one-hot for discrete actions) or ``None`` for state-only
    rewards; ``next_states [B, Ds]`` and ``dones [B]`` where a reward (or shaping) needs them.
    """

    states: torch.Tensor
    actions: torch.Tensor | None = None
    next_states: torch.Tensor | None = None
    dones: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.states.shape[0])

    def select(self, rows: torch.Tensor) -> Transitions:
        """The rows ``rows`` (indices or a boolean mask ``[B]``) of every field present."""

        def pick(value: torch.Tensor | None) -> torch.Tensor | None:
            return None if value is None else value[rows]

        return Transitions(self.states[rows], pick(self.actions), pick(self.next_states), pick(self.dones))

    def to(self, dtype: torch.dtype) -> Transitions:
        """The batch with ``states``, ``actions`` and ``next_states`` cast to ``dtype`` (e.g. a reward model's);
        ``dones`` stay as they are."""

        def cast(value: torch.Tensor | None) -> torch.Tensor | None:
            return None if value is None else value.to(dtype)

        return Transitions(self.states.to(dtype), cast(self.actions), cast(self.next_states), self.dones)


@dataclass
class RewardOutput:
    """Per-aspect rewards ``aspects [B, K]`` (names in ``aspect_names``) and their aggregate ``total [B]``."""

    aspects: torch.Tensor
    total: torch.Tensor
    aspect_names: tuple[str, ...]


# ---------------------------------------------------------------------- aggregators
class Aggregator(nn.Module):
    """Maps per-aspect rewards ``[B, K]`` (and the transitions, for gating) to a total ``[B]``."""

    def forward(self, aspects: torch.Tensor, batch: Transitions) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


class FixedWeights(Aggregator):
    weights: torch.Tensor

    def __init__(self, weights: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("weights", torch.as_tensor(weights, dtype=torch.get_default_dtype()))

    def forward(self, aspects: torch.Tensor, batch: Transitions) -> torch.Tensor:
        return aspects @ self.weights.to(aspects.dtype)


class SimplexWeights(Aggregator):
    def __init__(self, num_aspects: int) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(num_aspects))

    @property
    def weights(self) -> torch.Tensor:
        return torch.softmax(self.logits, dim=0)

    def forward(self, aspects: torch.Tensor, batch: Transitions) -> torch.Tensor:
        return aspects @ self.weights.to(aspects.dtype)


class LearnedWeights(Aggregator):
    """``wᵀ r`` with real, unconstrained weights ``w`` learned from ``initial`` (e.g. zeros: no aspect counts at the
    start); unlike :class:`SimplexWeights` a weight can be negative or zero and the weights need not sum to 1."""

    def __init__(self, initial: Sequence[float]) -> None:
        super().__init__()
        self.weights = nn.Parameter(torch.as_tensor(list(initial), dtype=torch.get_default_dtype()))

    def forward(self, aspects: torch.Tensor, batch: Transitions) -> torch.Tensor:
        return aspects @ self.weights.to(aspects.dtype)


class SoftMin(Aggregator):
    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValidationError(f"temperature: expected a positive number, got {temperature}")
        self.temperature = temperature

    def forward(self, aspects: torch.Tensor, batch: Transitions) -> torch.Tensor:
        return -self.temperature * torch.logsumexp(-aspects / self.temperature, dim=-1)


class Lexicographic(Aggregator):
    weights: torch.Tensor

    def __init__(self, priority: Sequence[int], epsilon: float = 1e-3) -> None:
        super().__init__()
        if sorted(priority) != list(range(len(priority))):
            raise ValidationError(
                f"priority: expected a permutation of 0..{len(priority) - 1}, got {list(priority)}"
            )
        if not 0 < epsilon < 1:
            raise ValidationError(f"epsilon: expected 0 < epsilon < 1, got {epsilon}")
        weights = torch.zeros(len(priority))
        for rank, aspect in enumerate(priority):
            weights[aspect] = epsilon**rank
        self.register_buffer("weights", weights)

    def forward(self, aspects: torch.Tensor, batch: Transitions) -> torch.Tensor:
        return aspects @ self.weights.to(aspects.dtype)


class Gated(Aggregator):
    def __init__(self, state_dim: int, num_aspects: int, hidden: int = 32) -> None:
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(state_dim, hidden), nn.Tanh(), nn.Linear(hidden, num_aspects))

    def forward(self, aspects: torch.Tensor, batch: Transitions) -> torch.Tensor:
        weights = torch.softmax(self.gate(batch.states.to(aspects.dtype)), dim=-1)
        return (weights * aspects).sum(-1)


def make_aggregator(name: str, num_aspects: int, state_dim: int, **options: float) -> Aggregator:
    """Build an aggregator by name: ``sum``, ``fixed``, ``simplex``, ``softmin``, ``lexicographic``, ``gated``."""
    if name == "sum":
        return FixedWeights([1.0] * num_aspects)
    if name == "fixed":
        return FixedWeights(options.get("weights", [1.0 / num_aspects] * num_aspects))  # type: ignore[arg-type]
    if name == "simplex":
        return SimplexWeights(num_aspects)
    if name == "softmin":
        return SoftMin(float(options.get("temperature", 1.0)))
    if name == "lexicographic":
        return Lexicographic(list(range(num_aspects)), float(options.get("epsilon", 1e-3)))
    if name == "gated":
        return Gated(state_dim, num_aspects, int(options.get("hidden", 32)))
    raise ValidationError(
        f"aggregator: unknown name {name!r}; expected one of sum, fixed, simplex, softmin, lexicographic, gated"
    )


# ---------------------------------------------------------------------- reward models
class RewardModel(nn.Module):
    """Base class: subclasses implement ``aspect_rewards(batch) -> [B, K]``.

    ``uses_actions`` says whether the reward reads actions (``r(s, a)``) or only states (``r(s)``).
    """

    aspect_names: tuple[str, ...]
    uses_actions: bool

    def __init__(
        self, aspect_names: Sequence[str], aggregator: Aggregator | None, uses_actions: bool
    ) -> None:
        super().__init__()
        if len(aspect_names) == 0:
            raise ValidationError("aspect_names: expected at least one aspect")
        self.aspect_names = tuple(aspect_names)
        self.aggregator = aggregator if aggregator is not None else FixedWeights([1.0] * len(aspect_names))
        self.uses_actions = uses_actions

    @property
    def num_aspects(self) -> int:
        return len(self.aspect_names)

    def aspect_rewards(self, batch: Transitions) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def inputs(self, batch: Transitions) -> torch.Tensor:
        """The network input: states, with actions appended for state-action rewards."""
        if not self.uses_actions:
            return batch.states
        if batch.actions is None:
            raise ValidationError("actions: this reward model reads actions, but the batch has none")
        return torch.cat([batch.states, batch.actions.to(batch.states.dtype)], dim=-1)

    def forward(self, batch: Transitions) -> RewardOutput:
        aspects = self.aspect_rewards(batch)
        check_shape(aspects, "aspect rewards", [len(batch), self.num_aspects])
        return RewardOutput(aspects, self.aggregator(aspects, batch), self.aspect_names)

    def reward_table(self, state_inputs: torch.Tensor, num_actions: int, expected_next: ExpectedNext) -> torch.Tensor:
        """The total reward over every state (``[S]``) or state-action pair (``[S, A]``) of a tabular MDP.

        ``state_inputs [S, Ds]`` are the reward inputs of each state; ``expected_next`` maps a state
        function ``[S]`` to ``Σ_s' P[s, a, s'] f(s')`` of shape ``[S, A]`` (used by shaping).
        """
        num_states = state_inputs.shape[0]
        if not self.uses_actions:
            return self(Transitions(state_inputs)).total
        states = state_inputs.repeat_interleave(num_actions, dim=0)
        actions = torch.eye(num_actions, dtype=state_inputs.dtype).repeat(num_states, 1)
        return self(Transitions(states, actions)).total.reshape(num_states, num_actions)


class LinearReward(RewardModel):
    """``r_k(x) = w_kᵀ φ(x) (+ b_k)``: linear in the input features; ``K`` aspects share the input."""

    def __init__(
        self,
        input_dim: int,
        aspect_names: Sequence[str] = ("reward",),
        aggregator: Aggregator | None = None,
        uses_actions: bool = False,
        bias: bool = False,
    ) -> None:
        super().__init__(aspect_names, aggregator, uses_actions)
        self.linear = nn.Linear(input_dim, len(aspect_names), bias=bias)
        nn.init.zeros_(self.linear.weight)

    def aspect_rewards(self, batch: Transitions) -> torch.Tensor:
        return self.linear(self.inputs(batch))


class MLPReward(RewardModel):
    """``r(x) = MLP(φ(x))`` with one output head per aspect."""

    def __init__(
        self,
        input_dim: int,
        hidden_sizes: Sequence[int] = (64, 64),
        aspect_names: Sequence[str] = ("reward",),
        aggregator: Aggregator | None = None,
        uses_actions: bool = False,
        activation: type[nn.Module] = nn.Tanh,
    ) -> None:
        super().__init__(aspect_names, aggregator, uses_actions)
        if any(isinstance(hidden, bool) or not isinstance(hidden, numbers.Integral) or hidden < 1
               for hidden in hidden_sizes):
            raise ValidationError(f"hidden_sizes: expected positive integer layer widths, got {list(hidden_sizes)}")
        layers: list[nn.Module] = []
        width = input_dim
        for hidden in hidden_sizes:
            layers += [nn.Linear(width, hidden), activation()]
            width = hidden
        layers.append(nn.Linear(width, len(aspect_names)))
        self.network = nn.Sequential(*layers)

    def aspect_rewards(self, batch: Transitions) -> torch.Tensor:
        return self.network(self.inputs(batch))


class TabularReward(RewardModel):
    """One free parameter per state (or state-action pair): ``r(s) = θ_s``.

    On a tabular MDP the table is the reward (whatever the MDP's features); as a module on a batch it
    reads one-hot state (and action) inputs.
    """

    table: torch.Tensor

    def __init__(self, num_states: int, num_actions: int | None = None, name: str = "reward") -> None:
        super().__init__((name,), None, uses_actions=num_actions is not None)
        shape = (num_states,) if num_actions is None else (num_states, num_actions)
        self.table = nn.Parameter(torch.zeros(shape))

    def aspect_rewards(self, batch: Transitions) -> torch.Tensor:
        state_index = batch.states.argmax(-1)
        if not self.uses_actions:
            return self.table[state_index].unsqueeze(-1)
        assert batch.actions is not None
        return self.table[state_index, batch.actions.argmax(-1)].unsqueeze(-1)

    def reward_table(self, state_inputs: torch.Tensor, num_actions: int, expected_next: ExpectedNext) -> torch.Tensor:
        if self.table.shape[0] != state_inputs.shape[0]:
            raise ValidationError(
                f"table: the reward has {self.table.shape[0]} states, the MDP {state_inputs.shape[0]}"
            )
        return self.table.to(state_inputs.dtype)


class PotentialShaping(RewardModel):
    """``r'(s, a, s') = r(s, a, s') + γ Φ(s') (1 − done) − Φ(s)`` around any reward model.

    The aspects are the base model's aspects plus one named ``shaping``; the total is the base total plus
    the shaping term, so optimal policies are those of the base reward (Ng, Harada, Russell 1999).
    """

    def __init__(self, base: RewardModel, potential: nn.Module, discount: float) -> None:
        super().__init__((*base.aspect_names, "shaping"), None, base.uses_actions)
        self.base = base
        self.potential = potential
        self.discount = discount

    def shaping(self, batch: Transitions) -> torch.Tensor:
        if batch.next_states is None:
            raise ValidationError("next_states: potential-based shaping needs the next states of the batch")
        not_done = 1.0 if batch.dones is None else 1.0 - batch.dones.to(batch.states.dtype)
        next_potential = self.potential(batch.next_states).squeeze(-1)
        return self.discount * next_potential * not_done - self.potential(batch.states).squeeze(-1)

    def forward(self, batch: Transitions) -> RewardOutput:
        base = self.base(batch)
        shaping = self.shaping(batch)
        aspects = torch.cat([base.aspects, shaping.unsqueeze(-1)], dim=-1)
        return RewardOutput(aspects, base.total + shaping, self.aspect_names)

    def reward_table(self, state_inputs: torch.Tensor, num_actions: int, expected_next: ExpectedNext) -> torch.Tensor:
        """``E_{s'}[r'] = r(s, a) + γ Σ_s' P[s, a, s'] Φ(s') − Φ(s)``, shape ``[S, A]``."""
        base = self.base.reward_table(state_inputs, num_actions, expected_next)
        if base.dim() == 1:
            base = base.unsqueeze(-1).expand(-1, num_actions)
        potential = self.potential(state_inputs).squeeze(-1)
        return base + self.discount * expected_next(potential) - potential.unsqueeze(-1)
