"""Finite text environments as tabular MDPs, and episodes as core ``Demonstrations``.

``build_tabular_mdp`` enumerates the reachable states of a ``FiniteTextEnv`` (``S`` states in breadth-first
order from the starts) and its canonical actions (``A``), and returns a ``TabularMDP`` with

* ``P[s, a, s']``: the legal move; an illegal action leaves the state unchanged (as in the text env);
  terminal states (goal, dead ends) are absorbing with zero reward for every action;
* ``state_action_features [S, A, K]``: the true per-step aspects (``env.aspect_names``) of each pair, so a
  linear reward on these features with weights ``w`` is the structured reward;
* ``true_reward [S, A] = aspects @ w`` with the environment's weights;
* ``start``: uniform over the environment's start states.

The text episode semantics differ in one point: the text env ends an episode at the move cap, the MDP is
discounted (γ < 1) instead. Malformed text has no tabular action (its aspect column is 0 in the table).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from irl_bilevel.feedback import Demonstrations
from irl_bilevel.rewards import Aggregator, RewardModel, Transitions
from irl_bilevel.tabular import TabularMDP
from irl_bilevel.validation import ValidationError
from llm.agentic.base import FiniteTextEnv, TextEnv


@dataclass
class TabularExport:
    """A ``TabularMDP`` with the maps between its indices and the environment's states and actions."""

    mdp: TabularMDP
    states: list[Hashable]
    actions: list[Hashable]
    state_index: dict[Hashable, int]
    action_index: dict[Hashable, int]
    aspect_table: torch.Tensor  # [S, A, K]
    aspect_names: tuple[str, ...]


def build_tabular_mdp(
    env: FiniteTextEnv,
    discount: float = 0.95,
    weights: Sequence[float] | None = None,
    dtype: torch.dtype = torch.float64,
) -> TabularExport:
    """The environment's reachable state graph as a discounted ``TabularMDP`` (see the module docstring)."""
    if not isinstance(env, FiniteTextEnv):
        raise ValidationError(f"env: expected a FiniteTextEnv with a finite state graph, got {type(env).__name__}")
    states = env.reachable_states()
    actions = env.canonical_actions()
    state_index = {state: i for i, state in enumerate(states)}
    action_index = {action: j for j, action in enumerate(actions)}
    num_states, num_actions, num_aspects = len(states), len(actions), len(env.aspect_names)
    successors = torch.zeros(num_states, num_actions, 1, dtype=torch.long)
    aspects = torch.zeros(num_states, num_actions, num_aspects, dtype=dtype)
    for i, state in enumerate(states):
        for j, action in enumerate(actions):
            if env.is_terminal(state):
                successors[i, j, 0] = i
                continue
            if env.legality_error(state, action) is None:
                next_state = env.transition(state, action)
                successors[i, j, 0] = state_index[next_state]
                aspects[i, j] = torch.as_tensor(env.step_aspects(state, action, next_state, "legal"), dtype=dtype)
            else:
                successors[i, j, 0] = i
                aspects[i, j] = torch.as_tensor(env.step_aspects(state, None, state, "invalid"), dtype=dtype)
    w = torch.as_tensor(env.weights if weights is None else list(weights), dtype=dtype)
    if w.shape != (num_aspects,):
        raise ValidationError(f"weights: expected {num_aspects} weights (one per aspect), got {list(w.shape)}")
    start = torch.zeros(num_states, dtype=dtype)
    for state in env.starts:
        start[state_index[state]] += 1.0 / len(env.starts)
    mdp = TabularMDP(
        start=start,
        discount=discount,
        successors=successors,
        successor_probabilities=torch.ones(num_states, num_actions, 1, dtype=dtype),
        state_action_features=aspects,
        true_reward=aspects @ w,
        name=env.name,
    )
    return TabularExport(mdp, states, actions, state_index, action_index, aspects, env.aspect_names)


def demonstrations_from_plans(
    env: FiniteTextEnv,
    export: TabularExport,
    plans: Sequence[tuple[Hashable, Sequence[Any]]],
    absorbing_steps: int = 0,
) -> Demonstrations:
    """``Demonstrations`` (state and action indices ``[N, T]``) from ``(start state, actions)`` pairs.

    Each trajectory holds the states where an action was taken. ``absorbing_steps`` appends that many steps
    in the terminal (absorbing) state, with action 0, so that the empirical discounted occupancy keeps the
    mass the MDP puts there (``γ^T`` of it is lost at length ``T``): the MaxEnt gradient identity
    ``E_π[∇r] − E_E[∇r]`` needs an occupancy that obeys the flow from ``ρ0`` (the termination trap of
    ``shared/design.md``). All actions of an absorbing state are equivalent, so action 0 loses nothing.
    """
    if absorbing_steps < 0:
        raise ValidationError(f"absorbing_steps: expected a non-negative integer, got {absorbing_steps}")
    observations, actions = [], []
    for start, plan in plans:
        if len(plan) == 0:
            raise ValidationError(f"plans: the plan from {start!r} is empty; expected at least one action")
        state = start
        visited, taken = [], []
        for action in plan:
            error = env.legality_error(state, action)
            if error is not None:
                raise ValidationError(f"plans: {env.format_action(action)!r} is illegal in {state!r}: {error}")
            visited.append(export.state_index[state])
            taken.append(export.action_index[action])
            state = env.transition(state, action)
        visited += [export.state_index[state]] * absorbing_steps
        taken += [0] * absorbing_steps
        observations.append(visited)
        actions.append(taken)
    return Demonstrations.from_sequences(
        observations, actions, num_states=export.mdp.num_states, num_actions=export.mdp.num_actions
    )


def optimal_demonstrations(
    env: FiniteTextEnv, export: TabularExport | None = None, absorbing_steps: int = 0
) -> Demonstrations:
    """One optimal (BFS) demonstration from every start state of the environment."""
    export = export if export is not None else build_tabular_mdp(env)
    plans = [(start, env.optimal_plan(start)) for start in env.starts]
    return demonstrations_from_plans(env, export, plans, absorbing_steps)


def text_demonstrations(env: TextEnv, plans: Sequence[tuple[Hashable, Sequence[Any]]]) -> list[list[tuple[str, str]]]:
    """Episodes as ``(observation text, action text)`` pairs, the form an LM is fine-tuned on."""
    episodes = []
    for start, plan in plans:
        state, episode = start, []
        for action in plan:
            episode.append((env.render_state(state), env.format_action(action)))
            state = env.transition(state, action)
        episodes.append(episode)
    return episodes


def solver_plans(env: TextEnv) -> list[tuple[Hashable, list[Any]]]:
    """The optimal solver's plan from every start: BFS for finite envs, the gold calls for tool use."""
    if isinstance(env, FiniteTextEnv):
        return [(start, env.optimal_plan(start)) for start in env.starts]
    gold_plan = getattr(env, "gold_plan", None)
    if gold_plan is None:
        raise ValidationError(f"env: {type(env).__name__} has neither a finite state graph nor a gold_plan")
    return [(start, gold_plan(start)) for start in env.starts]


class AspectTableReward(RewardModel):
    """A structured reward over an exported environment's aspects: ``r_k(s, a) = θ_k φ_k(s, a)``.

    ``φ [S, A, K]`` is the true aspect table (``TabularExport.aspect_table``); the per-aspect scales ``θ``
    are learned (``learn_scales``) or fixed, and the total is ``aggregator(r)`` (a plain sum by default, or any
    core aggregator: ``SimplexWeights`` learns weights on the simplex over the raw aspects). With
    ``θ = env.weights`` and the sum, the total is the environment's true reward. Reads one-hot states and
    actions on a batch, like ``TabularReward``.
    """

    table: torch.Tensor

    def __init__(
        self,
        export: TabularExport,
        initial_scales: Sequence[float] | None = None,
        aggregator: Aggregator | None = None,
        learn_scales: bool = True,
    ) -> None:
        num_aspects = len(export.aspect_names)
        super().__init__(export.aspect_names, aggregator, uses_actions=True)
        self.register_buffer("table", export.aspect_table.clone())
        scales = torch.ones(num_aspects) if initial_scales is None else torch.as_tensor(list(initial_scales))
        scales = scales.to(export.aspect_table.dtype)
        if scales.shape != (num_aspects,):
            raise ValidationError(f"initial_scales: expected {num_aspects} numbers, got {list(scales.shape)}")
        if learn_scales:
            self.scales = nn.Parameter(scales)
        else:
            self.register_buffer("scales", scales)

    def aspect_rewards(self, batch: Transitions) -> torch.Tensor:
        if batch.actions is None:
            raise ValidationError("actions: the aspect-table reward reads actions, but the batch has none")
        return self.table[batch.states.argmax(-1), batch.actions.argmax(-1)] * self.scales

    def reward_table(
        self,
        state_inputs: torch.Tensor,
        num_actions: int,
        expected_next: Callable[[torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        num_states = self.table.shape[0]
        if state_inputs.shape[0] != num_states or num_actions != self.table.shape[1]:
            raise ValidationError(
                f"state_inputs: the aspect table has {num_states} states and {self.table.shape[1]} actions, "
                f"the MDP {state_inputs.shape[0]} and {num_actions}"
            )
        aspects = (self.table * self.scales).reshape(num_states * num_actions, -1)
        states = state_inputs.repeat_interleave(num_actions, dim=0)
        actions = torch.eye(num_actions, dtype=state_inputs.dtype).repeat(num_states, 1)
        return self.aggregator(aspects, Transitions(states, actions)).reshape(num_states, num_actions)
