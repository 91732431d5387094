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

Text episodes as reward-model input (the featurization the LoRA inner solver and its demonstration objective
share, :func:`step_inputs`, :func:`episode_transitions`): the state is one-hot over the ``S`` exported states
(``[S]``); the action is one-hot over ``A + 2`` columns: the ``A`` canonical actions (legal or invalid, the
table holds both), column ``A`` (:data:`MALFORMED_COLUMN` offset 0) for malformed text and column ``A + 1`` for a
parsed action outside the canonical list (invalid; e.g. Hanoi's ``"A A"``). ``AspectTableReward`` reads the two
extra columns from ``TabularExport.extra_aspects`` (the env's malformed and invalid aspect vectors, the same in
every state), so unparseable text gets the malformed penalty of the learned reward. On the tabular MDP (``A``
actions) the extra columns never occur.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from irl_bilevel.feedback import Demonstrations
from irl_bilevel.rewards import Aggregator, ExpectedNext, RewardModel, Transitions
from irl_bilevel.tabular import TabularMDP
from irl_bilevel.validation import ValidationError
from llm.agentic.base import FiniteTextEnv, TextEnv
from llm.agentic.metrics import EpisodeRecord

MALFORMED_COLUMN = 0
"""Offset after the ``A`` canonical actions of the malformed-text column (``A + 0``); ``A + 1`` is unlisted."""
UNLISTED_COLUMN = 1


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
    # [2, K]: the aspects of a malformed step and of an unlisted (non-canonical) invalid action, in any state.
    extra_aspects: torch.Tensor | None = None

    @property
    def num_action_inputs(self) -> int:
        """Width of the one-hot action input of text steps: ``A`` canonical actions + malformed + unlisted."""
        return len(self.actions) + 2


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
    anywhere = states[0]
    extra = torch.stack([
        torch.as_tensor(env.step_aspects(anywhere, None, anywhere, "malformed"), dtype=dtype),
        torch.as_tensor(env.step_aspects(anywhere, None, anywhere, "invalid"), dtype=dtype),
    ])
    return TabularExport(mdp, states, actions, state_index, action_index, aspects, env.aspect_names, extra)


def action_column(env: TextEnv, export: TabularExport, action_text: str) -> int:
    """The action input column of a text action: its canonical index, or the malformed / unlisted column."""
    action = env.parse_action(action_text).action
    if action is None:
        return len(export.actions) + MALFORMED_COLUMN
    return export.action_index.get(action, len(export.actions) + UNLISTED_COLUMN)


def step_inputs(export: TabularExport, state_indices: Sequence[int], action_columns: Sequence[int],
                dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One-hot ``states [B, S]`` and ``actions [B, A + 2]`` (module docstring) of a batch of text steps."""
    dtype = dtype or torch.get_default_dtype()
    states = torch.nn.functional.one_hot(torch.as_tensor(list(state_indices), dtype=torch.long),
                                         export.mdp.num_states).to(dtype)
    actions = torch.nn.functional.one_hot(torch.as_tensor(list(action_columns), dtype=torch.long),
                                          export.num_action_inputs).to(dtype)
    return states, actions


@dataclass
class EpisodeSteps:
    """A text episode as indices: ``state_indices [T]`` (where each action was taken), ``action_columns [T]``,
    ``final_state`` (index after the last step) and whether the episode ``terminated`` (goal or dead end; not a
    move-cap truncation)."""

    state_indices: list[int]
    action_columns: list[int]
    final_state: int
    terminated: bool


def episode_steps(env: TextEnv, export: TabularExport, record: EpisodeRecord) -> EpisodeSteps:
    """The indices of a recorded text episode (``record.states`` holds ``T + 1`` states, start first)."""
    if len(record.states) != len(record.action_texts) + 1:
        raise ValidationError(f"record: expected {len(record.action_texts) + 1} states for "
                              f"{len(record.action_texts)} actions, got {len(record.states)}")
    states = [export.state_index[state] for state in record.states]
    columns = [action_column(env, export, text) for text in record.action_texts]
    return EpisodeSteps(states[:-1], columns, states[-1], env.is_terminal(record.states[-1]))


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
    ``E_π[∇r] − E_E[∇r]`` needs an occupancy that obeys the flow from ``ρ0`` (a truncated terminal state would
    leak occupancy mass). All actions of an absorbing state are equivalent, so action 0 loses nothing.
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
    actions on a batch, like ``TabularReward``: actions of width ``A`` (the tabular MDP) or ``A + 2`` (text
    steps, whose malformed and unlisted columns read ``TabularExport.extra_aspects``; module docstring).
    """

    table: torch.Tensor
    extra_aspects: torch.Tensor

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
        extra = export.extra_aspects
        if extra is None:  # an export built without them: malformed = unlisted = zero aspects
            extra = export.aspect_table.new_zeros(2, num_aspects)
        self.register_buffer("extra_aspects", extra.clone())
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
        num_states, num_actions, num_aspects = self.table.shape
        table = self.table
        width = batch.actions.shape[-1]
        if width == num_actions + 2:  # text steps: malformed and unlisted columns (module docstring)
            table = torch.cat([table, self.extra_aspects.unsqueeze(0).expand(num_states, 2, num_aspects)], dim=1)
        elif width != num_actions:
            raise ValidationError(f"actions: expected one-hot actions of width {num_actions} (tabular) or "
                                  f"{num_actions + 2} (text steps), got {width}")
        if batch.states.shape[-1] != num_states:
            raise ValidationError(f"states: expected one-hot states of width {num_states}, got "
                                  f"{batch.states.shape[-1]}")
        return table[batch.states.argmax(-1), batch.actions.argmax(-1)] * self.scales

    def reward_table(self, state_inputs: torch.Tensor, num_actions: int, expected_next: ExpectedNext) -> torch.Tensor:
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


@dataclass
class OneHotDemonstrations:
    """Demonstrations in the text-step featurization (module docstring), ready for the core's sample-based
    MaxEnt objective: ``demonstrations.observations [N, T, S]`` one-hot floats, ``actions [N, T]`` columns of the
    ``A + 2`` action inputs, ``terminated [N]`` and ``final_observations [N, S]`` (one-hot state after the last
    action)."""

    demonstrations: Demonstrations
    terminated: torch.Tensor
    final_observations: torch.Tensor


def one_hot_demonstrations(env: TextEnv, export: TabularExport, plans: Sequence[tuple[Hashable, Sequence[Any]]],
                           dtype: torch.dtype | None = None) -> OneHotDemonstrations:
    """``(start state, actions)`` plans (e.g. :func:`solver_plans`) as :class:`OneHotDemonstrations`."""
    if len(plans) == 0:
        raise ValidationError("plans: expected at least one (start, actions) plan")
    episodes = []
    for start, plan in plans:
        if len(plan) == 0:
            raise ValidationError(f"plans: the plan from {start!r} is empty; expected at least one action")
        states, state = [start], start
        for action in plan:
            error = env.legality_error(state, action)
            if error is not None:
                raise ValidationError(f"plans: {env.format_action(action)!r} is illegal in {state!r}: {error}")
            state = env.transition(state, action)
            states.append(state)
        indices = [export.state_index[s] for s in states]
        columns = [export.action_index[a] for a in plan]
        episodes.append(EpisodeSteps(indices[:-1], columns, indices[-1], env.is_terminal(state)))
    dtype = dtype or torch.get_default_dtype()
    length = max(len(e.state_indices) for e in episodes)
    observations = torch.zeros(len(episodes), length, export.mdp.num_states, dtype=dtype)
    actions = torch.zeros(len(episodes), length, dtype=torch.long)
    for row, episode in enumerate(episodes):
        one_hot_states, _ = step_inputs(export, episode.state_indices, episode.action_columns, dtype)
        observations[row, :len(episode.state_indices)] = one_hot_states
        actions[row, :len(episode.action_columns)] = torch.tensor(episode.action_columns)
    lengths = torch.tensor([len(e.state_indices) for e in episodes])
    final = torch.nn.functional.one_hot(torch.tensor([e.final_state for e in episodes]),
                                        export.mdp.num_states).to(dtype)
    demonstrations = Demonstrations(observations, actions, lengths, num_actions=export.num_action_inputs)
    return OneHotDemonstrations(demonstrations, torch.tensor([e.terminated for e in episodes]), final)
