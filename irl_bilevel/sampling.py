"""Rolling out tabular policies: trajectories and empirical occupancies."""

from __future__ import annotations

import torch

from irl_bilevel.feedback import Demonstrations, Trajectories
from irl_bilevel.tabular import TabularMDP
from irl_bilevel.validation import ValidationError, check_integer_range


def sample_trajectories(
    mdp: TabularMDP,
    log_policy: torch.Tensor,
    num_trajectories: int,
    length: int | None = None,
    generator: torch.Generator | None = None,
) -> Demonstrations:
    """Sample ``num_trajectories`` trajectories of ``length`` steps (the horizon by default).

    ``log_policy`` is ``[S, A]`` (stationary) or ``[H, S, A]`` (time-varying, finite horizon).
    Returns ``Demonstrations`` with ``observations``/``actions`` of shape ``[N, length]``.
    """
    if num_trajectories < 1:
        raise ValidationError(f"num_trajectories: expected at least 1, got {num_trajectories}")
    length = length if length is not None else mdp.horizon
    if length is None or length < 1:
        raise ValidationError("length: a positive rollout length is required for a discounted MDP")
    policy = log_policy.detach().exp()
    transitions = mdp.dense_transitions() if mdp.successors is None else None
    state = torch.multinomial(mdp.start.detach(), num_trajectories, replacement=True, generator=generator)
    states, actions = [], []
    for t in range(length):
        step_policy = policy[min(t, policy.shape[0] - 1)] if policy.dim() == 3 else policy
        action = torch.multinomial(step_policy[state], 1, generator=generator).squeeze(-1)
        states.append(state)
        actions.append(action)
        if transitions is not None:
            state = torch.multinomial(transitions[state, action], 1, generator=generator).squeeze(-1)
        else:
            assert mdp.successors is not None and mdp.successor_probabilities is not None
            pick = torch.multinomial(mdp.successor_probabilities[state, action], 1, generator=generator)
            state = mdp.successors[state, action].gather(-1, pick).squeeze(-1)
    lengths = torch.full((num_trajectories,), length)
    return Demonstrations(
        torch.stack(states, 1),
        torch.stack(actions, 1),
        lengths,
        num_states=mdp.num_states,
        num_actions=mdp.num_actions,
    )


def empirical_occupancy(mdp: TabularMDP, trajectories: Trajectories) -> torch.Tensor:
    """The normalized occupancy that ``state_action_occupancy`` computes exactly, estimated from samples.

    Each visit at step ``t`` weighs ``γ^t``, and the weights are normalized to sum to one over the data set,
    so that trajectories truncated before the discount has decayed (or before the horizon) still give a
    distribution. Returns ``[S, A]`` (discounted) or ``[H, S, A]`` (finite horizon).
    """
    observations, actions, mask = trajectories.observations.long(), trajectories.actions.long(), trajectories.mask
    if trajectories.num_states not in (None, mdp.num_states) or trajectories.num_actions not in (
        None,
        mdp.num_actions,
    ):
        raise ValidationError("trajectories: their num_states/num_actions do not match the MDP's")
    check_integer_range(observations[mask], "observations", 0, mdp.num_states)
    check_integer_range(actions[mask], "actions", 0, mdp.num_actions)
    n, length = observations.shape
    steps = torch.arange(length)
    weights = (mdp.discount ** steps.to(mdp.start.dtype)).expand(n, length) * mask
    weights = weights / weights.sum()
    if mdp.is_finite_horizon:
        assert mdp.horizon is not None
        if length > mdp.horizon:
            raise ValidationError(f"trajectories: longer ({length}) than the MDP's horizon ({mdp.horizon})")
        occupancy = torch.zeros(mdp.horizon, mdp.num_states, mdp.num_actions, dtype=mdp.start.dtype)
        index = (steps.expand(n, length) * mdp.num_states + observations) * mdp.num_actions + actions
        return occupancy.view(-1).index_add_(0, index[mask], weights[mask]).view_as(occupancy)
    occupancy = torch.zeros(mdp.num_states, mdp.num_actions, dtype=mdp.start.dtype)
    index = observations * mdp.num_actions + actions
    return occupancy.view(-1).index_add_(0, index[mask], weights[mask]).view_as(occupancy)
