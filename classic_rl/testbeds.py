"""Tabular testbeds from the IRL literature, built as :class:`irl_bilevel.tabular.TabularMDP`.

* :func:`gridworld`: Ng & Russell (2000), "Algorithms for inverse reinforcement learning", section 3.
* :func:`objectworld`: Levine, Popović & Koltun (2011), "Nonlinear inverse reinforcement learning with
  Gaussian processes".
* :func:`garnet`: random sparse ("Garnet", Archibald et al. 1995) MDPs for scaling studies.
* :func:`cliffworld`: seals' ``CliffWorldEnv`` (the environment of imitation's MCE IRL tutorial).

Grid states are indexed row-major, ``s = row * width + col``. Sparse transitions are stored as a padded
successor list without repeated indices: each ``(s, a)`` lists its distinct successors first, then padding
entries (other, unused state indices) with probability 0.

:func:`optimal_policy` computes greedy optimal actions by exact (hard) value iteration in float64, and
:func:`make_testbed` builds a testbed by name from :data:`TESTBEDS`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice

import numpy as np
import torch

from irl_bilevel.config import Config, Discount, PositiveInt, Probability
from irl_bilevel.tabular import TabularMDP
from irl_bilevel.validation import ValidationError, reject_unknown_keys

# Grid moves as (row delta, col delta); row 0 is the top row, so "up" decreases the row.
UP, DOWN, LEFT, RIGHT, STAY = 0, 1, 2, 3, 4
GRID_MOVES = ((-1, 0), (1, 0), (0, -1), (0, 1), (0, 0))
GRID_ACTION_NAMES = ("up", "down", "left", "right", "stay")


# ---------------------------------------------------------------------- argument checks
def _check_int(value: object, field: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValidationError(f"{field}: expected an integer >= {low}, got {value!r}")
    return int(value)


def _check_probability(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not 0.0 <= value <= 1.0:
        raise ValidationError(f"{field}: expected a probability in [0, 1], got {value!r}")
    return float(value)


def _check_discount(value: object, finite_horizon: bool = False) -> float:
    discount = float(value) if not isinstance(value, bool) and isinstance(value, (int, float, np.floating)) \
        else math.nan
    ok = math.isfinite(discount) and (0.0 < discount <= 1.0 if finite_horizon else 0.0 <= discount < 1.0)
    if not ok:
        expected = "0 < discount <= 1 with a horizon" if finite_horizon else "0 <= discount < 1 without a horizon"
        raise ValidationError(f"discount: expected {expected}, got {value!r}")
    return discount


# ---------------------------------------------------------------------- sparse transitions
def _merge_successors(targets: np.ndarray, probabilities: np.ndarray, num_states: int):
    """Sum the probabilities of repeated targets ``[S, A, m]`` into a duplicate-free ``[S, A, k]`` list.

    ``k`` is the largest number of distinct successors of any ``(s, a)``; shorter lists are padded with
    unused state indices of probability 0 (so no index repeats within a row).
    """
    num_s, num_a, _ = targets.shape
    rows: list[list[tuple[list[int], list[float]]]] = []
    k = 1
    for s in range(num_s):
        row = []
        for a in range(num_a):
            merged: dict[int, float] = {}
            for target, p in zip(targets[s, a].tolist(), probabilities[s, a].tolist()):
                if p > 0:
                    merged[target] = merged.get(target, 0.0) + p
            indices = sorted(merged)
            row.append((indices, [merged[i] for i in indices]))
            k = max(k, len(indices))
        rows.append(row)
    k = min(k, num_states)
    successors = np.zeros((num_s, num_a, k), dtype=np.int64)
    successor_probabilities = np.zeros((num_s, num_a, k))
    for s, row in enumerate(rows):
        for a, (indices, probs) in enumerate(row):
            used = set(indices)
            padding = list(islice((i for i in range(num_states) if i not in used), k - len(indices)))
            successors[s, a] = indices + padding
            successor_probabilities[s, a, : len(probs)] = probs
    return successors, successor_probabilities


def _grid_successors(size: int, moves: tuple[tuple[int, int], ...], slip: float):
    """Successors of an ``size × size`` grid: action ``a`` makes move ``a`` with probability ``1 − slip``,
    and a uniformly random move among ``moves`` with probability ``slip``; moves off the grid stay put."""
    num_states, num_actions = size * size, len(moves)
    targets = np.zeros((num_states, num_actions, num_actions), dtype=np.int64)
    probabilities = np.zeros((num_states, num_actions, num_actions))
    for row in range(size):
        for col in range(size):
            state = row * size + col
            destinations = []
            for d_row, d_col in moves:
                r, c = row + d_row, col + d_col
                destinations.append(r * size + c if 0 <= r < size and 0 <= c < size else state)
            for action in range(num_actions):
                targets[state, action] = destinations
                probabilities[state, action] = slip / num_actions
                probabilities[state, action, action] += 1.0 - slip
    return _merge_successors(targets, probabilities, num_states)


def _sparse_mdp(name: str, successors: np.ndarray, probabilities: np.ndarray, features: np.ndarray,
                reward: np.ndarray, discount: float, start: np.ndarray | None = None,
                horizon: int | None = None) -> TabularMDP:
    """A :class:`TabularMDP` from numpy arrays: sparse transitions ``successors`` (int) and ``probabilities``
    ``[S, A, k]``, ``features`` ``[S, F]``, ``reward`` ``[S]``; the start distribution ``start`` ``[S]`` (uniform
    when None)."""
    num_states = successors.shape[0]
    return TabularMDP(
        start=torch.full((num_states,), 1.0 / num_states) if start is None else torch.from_numpy(start),
        discount=discount,
        horizon=horizon,
        successors=torch.from_numpy(successors.astype(np.int64)),
        successor_probabilities=torch.from_numpy(probabilities),
        state_features=torch.from_numpy(features),
        true_reward=torch.from_numpy(reward),
        name=name,
    )


# ---------------------------------------------------------------------- Ng & Russell gridworld
@dataclass(frozen=True)
class GridSettings(Config):
    """The settings of a slippery grid testbed (:func:`gridworld`, :func:`objectworld`, :func:`sparse_gridworld`):
    the base of the experiment configs that build one."""

    size: PositiveInt
    """grid side"""
    slip: Probability
    """probability that the move goes in a random direction"""
    discount: Discount
    """γ"""


def gridworld(size: int = 5, slip: float = 0.3, discount: float = 0.9) -> TabularMDP:
    """The gridworld of Ng & Russell (2000, section 3): a ``size × size`` grid, reward 1 in the upper-right
    corner and 0 elsewhere.

    States are indexed row-major with row 0 at the top: ``s = row * size + col``, so the rewarding
    upper-right corner is state ``size − 1``. Actions: 0 = up, 1 = down, 2 = left, 3 = right. An action makes
    its intended move with probability ``1 − slip`` and, with probability ``slip``, a move in a uniformly
    random direction among the four (which may be the intended one); the intended move therefore happens
    with probability ``1 − slip + slip/4`` (0.775 for the default ``slip = 0.3``) and each other direction
    with ``slip/4``. Moves off the grid leave the agent in place.

    ``true_reward`` has shape ``[S]``; the start distribution is uniform; ``state_features`` are one-hot;
    transitions are sparse with ``k = 4`` successors per ``(s, a)`` when ``0 < slip`` (padding entries of
    probability 0 at the corners).
    """
    size = _check_int(size, "size", 1)
    slip = _check_probability(slip, "slip")
    discount = _check_discount(discount)
    num_states = size * size
    successors, probabilities = _grid_successors(size, GRID_MOVES[:4], slip)
    reward = np.zeros(num_states)
    reward[size - 1] = 1.0
    return _sparse_mdp(f"gridworld{size}x{size}", successors, probabilities, np.eye(num_states), reward, discount)


# ---------------------------------------------------------------------- Levine et al. objectworld
def objectworld_objects(size: int = 10, num_colours: int = 2, num_objects: int = 15, seed: int = 0):
    """The objects of :func:`objectworld` with the same arguments: ``(cells, outer, inner)``, integer arrays
    of shape ``[num_objects]`` (state index of each object, its outer colour, its inner colour)."""
    size = _check_int(size, "size", 1)
    num_colours = _check_int(num_colours, "num_colours", 2)
    num_objects = _check_int(num_objects, "num_objects", 1)
    if num_objects > size * size:
        raise ValidationError(
            f"num_objects: expected at most size² = {size * size} (one object per cell), got {num_objects}"
        )
    rng = np.random.default_rng(seed)
    cells = rng.choice(size * size, size=num_objects, replace=False)
    outer = rng.integers(num_colours, size=num_objects)
    inner = rng.integers(num_colours, size=num_objects)
    return cells.astype(np.int64), outer.astype(np.int64), inner.astype(np.int64)


def objectworld(
    size: int = 10,
    num_colours: int = 2,
    num_objects: int = 15,
    slip: float = 0.3,
    discount: float = 0.9,
    continuous: bool = False,
    seed: int = 0,
) -> TabularMDP:
    """ObjectWorld (Levine, Popović & Koltun 2011).

    A ``size × size`` grid (states row-major, row 0 at the top, ``s = row * size + col``) holding
    ``num_objects`` objects at distinct random cells, each with a random outer and a random inner colour
    among ``num_colours``. Actions: 0 = up, 1 = down, 2 = left, 3 = right, 4 = stay; an action makes its move
    with probability ``1 − slip`` and a uniformly random one of the five with probability ``slip``; moves off
    the grid stay in place. Start uniform; sparse transitions (``k = 5``).

    Distances are Euclidean between cell coordinates. The true reward ``[S]`` is +1 within distance 3 of an
    object of outer colour 0 *and* within distance 2 of one of outer colour 1, −1 within distance 3 of outer
    colour 0 only, 0 otherwise.

    Features: with ``continuous``, the distances to the nearest object of each outer colour then of each
    inner colour (``2·C`` features); otherwise (default, as in the paper) binary indicators
    "distance to the nearest object of that colour ≤ d" for ``d = 1..size``, ordered outer colours first,
    then inner colours, thresholds innermost (``2·C·size`` features). A colour no object has counts as
    being at distance ``2·size`` (farther than any cell). Deterministic given ``seed``; the objects are
    available from :func:`objectworld_objects`.
    """
    if not isinstance(continuous, bool):
        raise ValidationError(f"continuous: expected a bool, got {continuous!r}")
    slip = _check_probability(slip, "slip")
    discount = _check_discount(discount)
    cells, outer, inner = objectworld_objects(size, num_colours, num_objects, seed)
    num_states = size * size
    rows, cols = np.divmod(np.arange(num_states), size)
    object_rows, object_cols = np.divmod(cells, size)
    # distance[s, j]: from state s to object j.
    distance = np.hypot(rows[:, None] - object_rows[None, :], cols[:, None] - object_cols[None, :])
    far = 2.0 * size

    def nearest(colours: np.ndarray) -> np.ndarray:
        out = np.full((num_states, num_colours), far)
        for c in range(num_colours):
            if (colours == c).any():
                out[:, c] = distance[:, colours == c].min(axis=1)
        return out

    nearest_outer, nearest_inner = nearest(outer), nearest(inner)
    near_0 = nearest_outer[:, 0] <= 3.0
    near_1 = nearest_outer[:, 1] <= 2.0
    reward = np.where(near_0 & near_1, 1.0, np.where(near_0, -1.0, 0.0))
    distances = np.concatenate([nearest_outer, nearest_inner], axis=1)  # [S, 2C]
    if continuous:
        features = distances
    else:
        thresholds = np.arange(1, size + 1, dtype=np.float64)
        features = (distances[:, :, None] <= thresholds).astype(np.float64).reshape(num_states, -1)
    successors, probabilities = _grid_successors(size, GRID_MOVES, slip)
    return _sparse_mdp(f"objectworld{size}x{size}", successors, probabilities, features, reward, discount)


# ---------------------------------------------------------------------- Garnet MDPs
def garnet(
    num_states: int,
    num_actions: int = 4,
    branching: int = 5,
    num_features: int = 16,
    discount: float | None = None,
    horizon: int | None = None,
    seed: int = 0,
) -> TabularMDP:
    """A random sparse ("Garnet") MDP.

    Each ``(s, a)`` has ``branching`` distinct successor states drawn uniformly without replacement (sorted),
    with probabilities drawn from a flat Dirichlet (the classic random partition of the unit interval).
    Features ``[S, num_features]`` are standard normal; ``true_reward = features @ w`` with standard normal
    ``w`` (shape ``[S]``). Start uniform. ``discount`` defaults to 0.9 without a ``horizon`` and to 1.0 with
    one. Sampling is ``O(S·A·branching)``, so ``S = 10⁴`` is quick.
    """
    num_states = _check_int(num_states, "num_states", 1)
    num_actions = _check_int(num_actions, "num_actions", 1)
    branching = _check_int(branching, "branching", 1)
    num_features = _check_int(num_features, "num_features", 1)
    if branching > num_states:
        raise ValidationError(f"branching: expected at most num_states = {num_states}, got {branching}")
    if horizon is not None:
        horizon = _check_int(horizon, "horizon", 1)
    if discount is None:
        discount = 0.9 if horizon is None else 1.0
    discount = _check_discount(discount, finite_horizon=horizon is not None)
    rng = np.random.default_rng(seed)
    if num_states * num_states * num_actions <= 1_000_000:
        successors = rng.random((num_states, num_actions, num_states)).argsort(axis=-1)[..., :branching]
    else:  # draw with replacement and redraw the rows holding a repeat (rare when branching ≪ S)
        successors = rng.integers(num_states, size=(num_states, num_actions, branching))
        while True:
            ordered = np.sort(successors, axis=-1)
            repeats = (ordered[..., 1:] == ordered[..., :-1]).any(axis=-1)
            if not repeats.any():
                break
            successors[repeats] = rng.integers(num_states, size=(int(repeats.sum()), branching))
    successors = np.sort(successors, axis=-1)
    probabilities = rng.dirichlet(np.ones(branching), size=(num_states, num_actions))
    features = rng.standard_normal((num_states, num_features))
    weights = rng.standard_normal(num_features)
    return _sparse_mdp(f"garnet{num_states}x{num_actions}b{branching}", successors, probabilities, features,
                       features @ weights, discount, horizon=horizon)


# ---------------------------------------------------------------------- seals CliffWorld
def cliffworld(width: int = 7, height: int = 4, horizon: int = 8, use_xy_obs: bool = False) -> TabularMDP:
    """seals' ``CliffWorldEnv`` (``seals/diagnostics/cliff_world.py``), the MDP of imitation's MCE IRL docs.

    States are row-major, ``s = row * width + col``, as in seals. Row 0 holds the start ``S`` (column 0,
    state 0, where every episode starts), the cliff ``C`` (columns ``1..width−2``) and the goal ``G``
    (column ``width − 1``); seals draws row 0 on top, but read as the brief's picture it is the bottom row,
    with the other rows above it. State rewards ``[S]``: +10 at the goal, −10 on the cliff, −1 elsewhere
    (start included); the cliff and the goal are not absorbing.

    As in seals, the four actions are *diagonal* moves ``(Δrow, Δcol)``: 0 = (−1, −1), 1 = (−1, +1),
    2 = (+1, −1), 3 = (+1, +1), clamped to the grid. With probability 0.3 the wind pushes the agent one
    further row towards row 0 (the cliff row), also clamped. Finite horizon ``horizon`` with discount 1.0;
    dense transitions. Features: one-hot states, or with ``use_xy_obs`` the coordinates
    ``(col / (width − 1), row / (height − 1))``.
    """
    width = _check_int(width, "width", 3)
    height = _check_int(height, "height", 2)
    horizon = _check_int(horizon, "horizon", 1)
    if not isinstance(use_xy_obs, bool):
        raise ValidationError(f"use_xy_obs: expected a bool, got {use_xy_obs!r}")
    fail_p = 0.3
    num_states = width * height
    transitions = np.zeros((num_states, 4, num_states))
    reward = np.zeros(num_states)
    features = np.zeros((num_states, 2)) if use_xy_obs else np.eye(num_states)

    def clamp(row: int, col: int) -> int:
        return min(max(row, 0), height - 1) * width + min(max(col, 0), width - 1)

    for row in range(height):
        for col in range(width):
            state = clamp(row, col)
            if row > 0 or col == 0:
                reward[state] = -1.0
            elif col == width - 1:
                reward[state] = 10.0
            else:
                reward[state] = -10.0
            if use_xy_obs:
                features[state] = [col / (width - 1), row / (height - 1)]
            for d_row in (-1, 1):
                for d_col in (-1, 1):
                    action = (d_row + 1) + (d_col + 1) // 2
                    transitions[state, action, clamp(row + d_row - 1, col + d_col)] += fail_p
                    transitions[state, action, clamp(row + d_row, col + d_col)] += 1.0 - fail_p
    start = np.zeros(num_states)
    start[0] = 1.0
    return TabularMDP(
        start=torch.from_numpy(start),
        discount=1.0,
        horizon=horizon,
        transitions=torch.from_numpy(transitions),
        state_features=torch.from_numpy(features),
        true_reward=torch.from_numpy(reward),
        name=f"cliffworld{width}x{height}",
    )


# ---------------------------------------------------------------------- sparse-goal gridworld (shaping)
def sparse_gridworld(size: int = 8, slip: float = 0.1, discount: float = 0.95, step_cost: float = 0.01) -> TabularMDP:
    """A sparse-reward gridworld for learned shaping: one distant goal, an absorbing end state, a step cost.

    ``size × size`` cells (row-major, row 0 at the top, ``s = row * size + col``) plus one absorbing end state
    ``S − 1 = size²``. Every episode starts in the bottom-left cell; the goal is the top-right cell
    ``size − 1``. Actions: 0 = up, 1 = down, 2 = left, 3 = right, each making its move with probability
    ``1 − slip`` and a uniformly random one of the four with probability ``slip`` (off-grid moves stay put).
    From the goal every action leads to the end state, which loops on itself. State reward ``[S]``: +1 at the
    goal (collected once), 0 in the end state, ``−step_cost`` in every other cell. One-hot state features.
    """
    size = _check_int(size, "size", 2)
    slip = _check_probability(slip, "slip")
    discount = _check_discount(discount)
    ok = not isinstance(step_cost, bool) and isinstance(step_cost, (int, float, np.floating))
    if not ok or not math.isfinite(step_cost) or step_cost < 0:
        raise ValidationError(f"step_cost: expected a non-negative number, got {step_cost!r}")
    cells = size * size
    num_states = cells + 1
    end, goal = cells, size - 1
    grid_successors, grid_probabilities = _grid_successors(size, GRID_MOVES[:4], slip)
    k = grid_successors.shape[-1]
    successors = np.zeros((num_states, 4, k), dtype=np.int64)
    probabilities = np.zeros((num_states, 4, k))
    successors[:cells], probabilities[:cells] = grid_successors, grid_probabilities
    for state in (goal, end):
        successors[state] = [end, *[i for i in range(num_states) if i != end][: k - 1]]
        probabilities[state] = 0.0
        probabilities[state, :, 0] = 1.0
    reward = np.full(num_states, -float(step_cost))
    reward[goal], reward[end] = 1.0, 0.0
    start = np.zeros(num_states)
    start[(size - 1) * size] = 1.0
    return _sparse_mdp(f"sparse_gridworld{size}x{size}", successors, probabilities, np.eye(num_states), reward,
                       discount, start=start)


def grid_distance_to(size: int, row: int, col: int) -> np.ndarray:
    """Manhattan distances ``[size²]`` from every cell of a ``size × size`` grid (row-major) to ``(row, col)``."""
    rows, cols = np.divmod(np.arange(size * size), size)
    return (np.abs(rows - row) + np.abs(cols - col)).astype(np.float64)


# ---------------------------------------------------------------------- optimal policies
def _numpy_model(mdp: TabularMDP):
    """A float64 ``expected_next(values [S]) -> [S, A]`` for ``mdp``."""
    if mdp.transitions is not None:
        dense = mdp.transitions.detach().cpu().double().numpy()
        return lambda values: dense @ values
    assert mdp.successors is not None and mdp.successor_probabilities is not None
    successors = mdp.successors.cpu().numpy()
    probabilities = mdp.successor_probabilities.detach().cpu().double().numpy()
    return lambda values: (values[successors] * probabilities).sum(-1)


def _greedy(q: np.ndarray, tie_tolerance: float) -> np.ndarray:
    """The lowest-index action among those within ``tie_tolerance`` of the best, along the last axis."""
    best = q.max(axis=-1, keepdims=True)
    return np.argmax(q >= best - tie_tolerance, axis=-1)


def optimal_policy(
    mdp: TabularMDP, tol: float = 1e-10, *, reward: torch.Tensor | None = None, max_iterations: int = 1_000_000
) -> torch.Tensor:
    """Deterministic optimal actions by (hard) value iteration on ``mdp.true_reward`` (or ``reward``).

    Discounted MDPs: iterate ``Q = r + γ P max_a Q`` in float64 until ``max |ΔQ| ≤ tol`` and return the greedy
    actions ``[S]`` (``torch.long``). Finite-horizon MDPs: backward induction, returning one action per step
    and state, ``[H, S]``. Ties, i.e. actions whose ``Q`` is within ``10·tol/(1 − γ)`` (discounted) or
    ``1e-9·(1 + max|Q|)`` of the best, are broken towards the lowest action index, so the result does not
    depend on round-off.
    """
    reward = mdp.true_reward if reward is None else reward
    if reward is None:
        raise ValidationError("true_reward: the MDP has no true reward; pass `reward` [S] or [S, A]")
    reward_table = mdp.broadcast_reward(torch.as_tensor(reward)).detach().cpu().double().numpy()
    if not np.isfinite(reward_table).all():
        raise ValidationError("reward: contains NaN or infinite value(s)")
    if not tol > 0:
        raise ValidationError(f"tol: expected a positive tolerance, got {tol!r}")
    expected_next = _numpy_model(mdp)
    gamma = mdp.discount
    if mdp.is_finite_horizon:
        assert mdp.horizon is not None
        q = reward_table
        actions = []
        for _ in range(mdp.horizon):
            actions.append(_greedy(q, 1e-9 * (1.0 + np.abs(q).max())))
            q = reward_table + gamma * expected_next(q.max(axis=-1))
        return torch.from_numpy(np.stack(actions[::-1])).long()
    q = np.zeros_like(reward_table)
    for _ in range(max_iterations):
        new_q = reward_table + gamma * expected_next(q.max(axis=-1))
        residual = np.abs(new_q - q).max()
        q = new_q
        if residual <= tol:
            break
    else:
        raise RuntimeError(f"optimal_policy: value iteration did not reach tol={tol} in {max_iterations} sweeps")
    tie_tolerance = 10.0 * tol / (1.0 - gamma) + 1e-12 * (1.0 + np.abs(q).max())
    return torch.from_numpy(_greedy(q, tie_tolerance)).long()


# ---------------------------------------------------------------------- registry
TESTBEDS: dict[str, Callable[..., TabularMDP]] = {
    "gridworld": gridworld,
    "objectworld": objectworld,
    "garnet": garnet,
    "cliffworld": cliffworld,
    "sparse_gridworld": sparse_gridworld,
}


def make_testbed(name: str, **options) -> TabularMDP:
    """Build the testbed ``name`` (a key of :data:`TESTBEDS`) with keyword ``options``.

    Unknown names, unknown options and missing required options (``garnet`` needs ``num_states``) raise a
    :class:`ValidationError` naming them.
    """
    if name not in TESTBEDS:
        raise ValidationError(f"name: unknown testbed {name!r}; expected one of {sorted(TESTBEDS)}")
    builder = TESTBEDS[name]
    parameters = inspect.signature(builder).parameters
    reject_unknown_keys(options, parameters, f"make_testbed({name!r}) options")
    missing = [p.name for p in parameters.values() if p.default is inspect.Parameter.empty and p.name not in options]
    if missing:
        raise ValidationError(f"make_testbed({name!r}) options: missing required option(s) {missing}")
    return builder(**options)
