"""Reward-quality metrics: EPIC distance (closed form on tabular MDPs, sample-based on continuous spaces),
occupancy L1, normalized return of the soft-optimal policy."""

from __future__ import annotations

from collections.abc import Callable

import torch

from irl_bilevel.rewards import Transitions
from irl_bilevel.tabular import TabularMDP, expected_return, soft_value_iteration, state_action_occupancy
from irl_bilevel.validation import ValidationError


def _as_transition_reward(reward: torch.Tensor, num_states: int, num_actions: int) -> torch.Tensor:
    """``[S]``, ``[S, A]`` or ``[S, A, S]`` rewards as ``R[s, a, s']``."""
    if reward.shape == (num_states,):
        return reward[:, None, None].expand(num_states, num_actions, num_states)
    if reward.shape == (num_states, num_actions):
        return reward[:, :, None].expand(num_states, num_actions, num_states)
    if reward.shape == (num_states, num_actions, num_states):
        return reward
    raise ValidationError(
        f"reward: expected [S], [S, A] or [S, A, S] with S={num_states}, A={num_actions}, "
        f"got {list(reward.shape)}"
    )


def canonicalize_reward(
    reward: torch.Tensor, num_states: int, num_actions: int, discount: float
) -> torch.Tensor:
    """EPIC canonical form under uniform state and action distributions (Gleave et al. 2021, eq. 1):

    ``C(R)(s, a, s') = R(s, a, s') + E[γ R(s', A, S') − R(s, A, S') − γ R(S, A, S')]``,
    ``S, S' ~ U(states)``, ``A ~ U(actions)``. Invariant to potential shaping of ``R``.
    """
    r = _as_transition_reward(reward, num_states, num_actions)
    mean_from = r.mean(dim=(1, 2))  # E_{A,S'}[R(x, A, S')] for every x: [S]
    mean_all = r.mean()
    return r + discount * mean_from[None, None, :] - mean_from[:, None, None] - discount * mean_all


def epic_distance(
    reward_a: torch.Tensor, reward_b: torch.Tensor, num_states: int, num_actions: int, discount: float
) -> float:
    """``D_EPIC = sqrt((1 − ρ) / 2)``, ``ρ`` the Pearson correlation of the canonicalized rewards over
    uniformly drawn transitions; 0 for rewards equal up to shaping and positive scaling, at most 1.

    Rewards ``[S]`` or ``[S, A]`` (no dependence on ``s'``) canonicalize to ``u(s, a) + v(s')`` with
    ``u = r − m(s) + const`` and ``v = γ m(s')``, ``m(s) = mean_a r(s, a)``; as ``(s, a)`` and ``s'`` are drawn
    independently, covariances split into an ``(s, a)`` part and an ``s'`` part, and nothing of size
    ``S·A·S`` is built. ``[S, A, S]`` rewards are canonicalized explicitly.
    """
    if reward_a.dim() <= 2 and reward_b.dim() <= 2:
        parts = [_split_canonical(r.detach(), num_states, num_actions, discount) for r in (reward_a, reward_b)]

        def covariance(i: int, j: int) -> torch.Tensor:
            (u_i, v_i), (u_j, v_j) = parts[i], parts[j]
            return (u_i * u_j).mean() + (v_i * v_j).mean()

        cross, var_a, var_b = covariance(0, 1), covariance(0, 0), covariance(1, 1)
    else:
        a = canonicalize_reward(reward_a.detach(), num_states, num_actions, discount).reshape(-1)
        b = canonicalize_reward(reward_b.detach(), num_states, num_actions, discount).reshape(-1)
        return _pearson_distance(a, b)
    if float(var_a) == 0.0 or float(var_b) == 0.0:
        # A constant reward carries no preference: maximally uninformative relative to any other.
        return 0.0 if float(var_a) == float(var_b) == 0.0 else float(torch.sqrt(torch.tensor(0.5)))
    rho = float(cross / (var_a * var_b).sqrt())
    return float(max(0.0, (1.0 - rho) / 2.0) ** 0.5)


def _split_canonical(
    reward: torch.Tensor, num_states: int, num_actions: int, discount: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The centred ``(s, a)`` part ``[S, A]`` and ``s'`` part ``[S]`` of a canonicalized ``[S]``/``[S, A]`` reward."""
    r = _as_transition_reward(reward, num_states, num_actions)[:, :, 0]
    state_mean = r.mean(dim=1)
    return r - state_mean[:, None], discount * (state_mean - state_mean.mean())


RewardFunction = Callable[[Transitions], torch.Tensor]


def _pearson_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """``sqrt((1 − ρ) / 2)`` of two equally long vectors; a constant vector is maximally uninformative."""
    a, b = a - a.mean(), b - b.mean()
    cross, var_a, var_b = (a * b).mean(), (a * a).mean(), (b * b).mean()
    if float(var_a) == 0.0 or float(var_b) == 0.0:
        return 0.0 if float(var_a) == float(var_b) == 0.0 else float(torch.sqrt(torch.tensor(0.5)))
    rho = float(cross / (var_a * var_b).sqrt())
    return float(max(0.0, (1.0 - rho) / 2.0) ** 0.5)


def sample_canonicalize_reward(
    reward: RewardFunction, coverage: Transitions, mean_states: torch.Tensor, mean_actions: torch.Tensor,
    discount: float, chunk: int = 4096,
) -> torch.Tensor:
    """Sample-based EPIC canonicalization (Gleave et al. 2021, sec. 4) of ``reward`` on ``coverage``:

    ``C(R)(s, a, s') = R(s, a, s') + γ m(s') − m(s) − γ m̄``, ``m(x) = (1/M) Σ_j R(x, u_j, x_j)``,
    ``m̄ = (1/M) Σ_l m(x_l)``, with ``M`` joint samples ``(u_j, x_j)`` of the action and state distributions
    (``mean_actions [M, Da]``, ``mean_states [M, Ds]``). The same states serve for ``x_l``, which makes the result
    exactly invariant to potential shaping ``R + γΦ(s') − Φ(s)`` for the samples drawn, not only in expectation.
    ``coverage`` needs ``states [N, Ds]``, ``actions [N, Da]`` and ``next_states [N, Ds]``; returns ``[N]``.
    Costs ``(2N + M)·M`` reward evaluations, in chunks of ``chunk`` rows.
    """
    if coverage.actions is None or coverage.next_states is None:
        raise ValidationError("coverage: sample-based EPIC needs actions and next_states")
    if mean_states.dim() != 2 or mean_actions.dim() != 2 or len(mean_states) != len(mean_actions):
        raise ValidationError(
            f"mean_states, mean_actions: expected [M, Ds] and [M, Da] with the same M, got "
            f"{list(mean_states.shape)} and {list(mean_actions.shape)}"
        )
    if len(mean_states) == 0 or len(coverage) == 0:
        raise ValidationError("coverage, mean_states: expected at least one sample each")
    if not 0.0 <= discount <= 1.0:
        raise ValidationError(f"discount: expected 0 <= discount <= 1, got {discount}")
    num_samples = len(mean_states)

    def mean_from(origins: torch.Tensor) -> torch.Tensor:
        # m(x) for every origin x: R(x, u_j, x_j) averaged over the M joint samples.
        values = []
        per_chunk = max(1, chunk // num_samples)
        for start in range(0, len(origins), per_chunk):
            block = origins[start:start + per_chunk]
            states = block.repeat_interleave(num_samples, dim=0)
            batch = Transitions(states, mean_actions.repeat(len(block), 1), mean_states.repeat(len(block), 1))
            values.append(reward(batch).reshape(len(block), num_samples).mean(dim=1))
        return torch.cat(values)

    with torch.no_grad():
        direct = reward(coverage).reshape(-1)
        constant = mean_from(mean_states).mean()
        return direct + discount * mean_from(coverage.next_states) - mean_from(coverage.states) - discount * constant


def sample_epic_distance(
    reward_a: RewardFunction, reward_b: RewardFunction, coverage: Transitions, mean_states: torch.Tensor,
    mean_actions: torch.Tensor, discount: float,
) -> float:
    """Sample-based EPIC distance: the Pearson distance ``sqrt((1 − ρ) / 2)`` of the two canonicalized rewards
    over the ``coverage`` transitions (:func:`sample_canonicalize_reward`, the same samples for both).

    0 for rewards equal up to potential shaping and positive scaling, 1 for opposite ones. ``reward_*`` map
    :class:`~irl_bilevel.rewards.Transitions` to ``[B]`` rewards (e.g. ``lambda batch: model(batch).total``).
    """
    a = sample_canonicalize_reward(reward_a, coverage, mean_states, mean_actions, discount)
    b = sample_canonicalize_reward(reward_b, coverage, mean_states, mean_actions, discount)
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        raise ValidationError("reward: the rewards compared by EPIC must be finite on every sample")
    return _pearson_distance(a, b)


def occupancy_l1(occupancy_a: torch.Tensor, occupancy_b: torch.Tensor) -> float:
    """``‖d_a − d_b‖₁`` of two normalized occupancies (summed over time steps for finite horizons)."""
    return float((occupancy_a.detach() - occupancy_b.detach()).abs().sum())


def normalized_return(
    mdp: TabularMDP, learned_reward: torch.Tensor, expert_log_policy: torch.Tensor, temperature: float = 1.0
) -> float:
    """``(J(π_learned) − J(π_uniform)) / (J(π_expert) − J(π_uniform))`` under ``mdp.true_reward``.

    ``π_learned`` is the soft-optimal policy of the learned reward; ``π_expert`` the demonstrator.
    """
    if mdp.true_reward is None:
        raise ValidationError("true_reward: the MDP has no ground-truth reward to score against")
    learned = soft_value_iteration(mdp, learned_reward.detach(), temperature).log_policy
    uniform = torch.full(
        (mdp.num_states, mdp.num_actions),
        -float(torch.log(torch.tensor(float(mdp.num_actions)))),
        dtype=mdp.start.dtype,
    )
    j_learned, j_expert, j_uniform = (
        float(expected_return(mdp, p, mdp.true_reward)) for p in (learned, expert_log_policy, uniform)
    )
    return (j_learned - j_uniform) / (j_expert - j_uniform)


__all__ = [
    "canonicalize_reward",
    "epic_distance",
    "normalized_return",
    "occupancy_l1",
    "sample_canonicalize_reward",
    "sample_epic_distance",
    "state_action_occupancy",
]
