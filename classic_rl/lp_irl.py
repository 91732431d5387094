"""Linear-programming IRL for finite state spaces (Ng & Russell 2000, section 3)."""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linprog

from irl_bilevel.tabular import TabularMDP
from irl_bilevel.validation import ValidationError, as_tensor, check_integer_range, check_shape


def lp_irl(
    mdp: TabularMDP, expert_policy: torch.Tensor, l1_penalty: float = 1.05, r_max: float = 1.0
) -> torch.Tensor:
    """A state reward ``R [S]`` under which the deterministic ``expert_policy`` is optimal (Ng & Russell 2000).

    With ``P_π[s, s'] = P[s, π(s), s']`` and, for each action ``a``, ``P_a[s, s'] = P[s, a, s']``, the linear
    program of their section 3 (finite state space) is::

        maximize    Σ_s  min_{a ≠ π(s)} (P_π(s) − P_a(s)) (I − γ P_π)⁻¹ R   −   λ ‖R‖₁
        subject to  (P_π(s) − P_a(s)) (I − γ P_π)⁻¹ R ≥ 0     for all s and a ≠ π(s),
                    |R(s)| ≤ r_max                           for all s,

    where ``P_π(s)`` is the row ``s`` of ``P_π`` and ``λ = l1_penalty``. The constraints say that ``π`` is
    optimal under ``R`` (``γ (P_π(s) − P_a(s)) V^π = Q^π(s, π(s)) − Q^π(s, a)``); the objective prefers the
    rewards that make every other action as bad as possible, and sparse ones. It is solved as an LP over
    ``(R, t, u)`` with ``t_s ≤`` each margin of state ``s`` and ``−u ≤ R ≤ u``, maximizing ``Σ t − λ Σ u``,
    by ``scipy.optimize.linprog`` (HiGHS). The program is dense (``O(S³)`` to build, ``2·S·A`` rows): meant
    for up to a few thousand states.

    On the 5×5 gridworld of :func:`classic_rl.testbeds.gridworld` (slip 0.3, γ = 0.9) the paper's λ = 1.05
    gives a denser reward (``r_max`` next to the corner too, ties between actions); every λ in about
    ``[3.25, 5.75]`` returns exactly the true reward (1 in the corner, 0 elsewhere); larger λ returns 0.

    Args:
        mdp: a discounted tabular MDP (dense or sparse transitions; finite-horizon MDPs are rejected).
        expert_policy: the expert's action in every state, integers of shape ``[S]``.
        l1_penalty: ``λ ≥ 0``, the weight of ``‖R‖₁`` (Ng & Russell use 1.05 on their gridworld).
        r_max: the bound ``r_max > 0`` on ``|R|``.

    Returns:
        The reward ``[S]`` in torch's default floating dtype.
    """
    if mdp.is_finite_horizon:
        raise ValidationError(
            "mdp: lp_irl needs a discounted MDP (horizon=None, 0 <= discount < 1); "
            f"got a finite horizon of {mdp.horizon}"
        )
    if not (np.isfinite(l1_penalty) and l1_penalty >= 0):
        raise ValidationError(f"l1_penalty: expected a finite number >= 0, got {l1_penalty!r}")
    if not (np.isfinite(r_max) and r_max > 0):
        raise ValidationError(f"r_max: expected a finite number > 0, got {r_max!r}")
    policy = as_tensor(expert_policy, "expert_policy")
    check_shape(policy, "expert_policy", [mdp.num_states])
    check_integer_range(policy, "expert_policy", 0, mdp.num_actions)
    num_states, num_actions, gamma = mdp.num_states, mdp.num_actions, mdp.discount
    actions = policy.cpu().numpy().astype(np.int64)
    transitions = mdp.dense_transitions().detach().cpu().double().numpy()  # [S, A, S]
    rows = np.arange(num_states)
    policy_transitions = transitions[rows, actions]  # [S, S]
    # (I − γ P_π)⁻¹, then margins[s, a, :] = (P_π(s) − P_a(s)) (I − γ P_π)⁻¹, a linear map of R.
    inverse = np.linalg.solve(np.eye(num_states) - gamma * policy_transitions, np.eye(num_states))
    margins = np.einsum("sak,kj->saj", policy_transitions[:, None, :] - transitions, inverse)
    other = np.ones((num_states, num_actions), dtype=bool)
    other[rows, actions] = False
    state_of_row, action_of_row = np.nonzero(other)
    margin_rows = margins[state_of_row, action_of_row]  # [M, S]
    num_rows = margin_rows.shape[0]

    # Variables x = [R (S), t (S), u (S)]; linprog minimizes c·x subject to A_ub x ≤ b_ub.
    zeros = np.zeros((num_states, num_states))
    identity = np.eye(num_states)
    pick_t = np.zeros((num_rows, num_states))
    pick_t[np.arange(num_rows), state_of_row] = 1.0
    a_ub = np.block(
        [
            [-margin_rows, pick_t, np.zeros((num_rows, num_states))],  # t_s ≤ margin
            [-margin_rows, np.zeros((num_rows, 2 * num_states))],  # margin ≥ 0
            [identity, zeros, -identity],  # R ≤ u
            [-identity, zeros, -identity],  # −R ≤ u
        ]
    )
    b_ub = np.zeros(a_ub.shape[0])
    cost = np.concatenate([np.zeros(num_states), -np.ones(num_states), np.full(num_states, float(l1_penalty))])
    # With a single action there is no other action: t is then pinned to 0.
    t_bounds = (None, None) if num_actions > 1 else (0.0, 0.0)
    bounds = [(-r_max, r_max)] * num_states + [t_bounds] * num_states + [(0.0, r_max)] * num_states
    result = linprog(cost, A_ub=a_ub, b_ub=b_ub, bounds=bounds, method="highs")
    if result.status != 0 or result.x is None:
        raise RuntimeError(f"lp_irl: the linear program failed (status {result.status}): {result.message}")
    return torch.as_tensor(result.x[:num_states], dtype=torch.get_default_dtype())
