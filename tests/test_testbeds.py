"""Tabular testbeds (classic_rl.testbeds) and their gymnasium wrapper (classic_rl.tabular_env)."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from classic_rl.tabular_env import TabularEnv
from classic_rl.testbeds import (
    DOWN,
    LEFT,
    RIGHT,
    TESTBEDS,
    UP,
    cliffworld,
    garnet,
    gridworld,
    make_testbed,
    objectworld,
    objectworld_objects,
    optimal_policy,
)
from irl_bilevel.validation import ValidationError

SMALL = {
    "gridworld": {},
    "objectworld": {"size": 6, "num_objects": 8},
    "garnet": {"num_states": 30},
    "cliffworld": {},
    "sparse_gridworld": {"size": 4},
}


def assert_valid(mdp):
    dense = mdp.dense_transitions()
    assert dense.shape == (mdp.num_states, mdp.num_actions, mdp.num_states)
    assert torch.allclose(dense.sum(-1), torch.ones(()), atol=1e-12)
    assert bool((dense >= 0).all())
    assert torch.isclose(mdp.start.sum(), torch.ones(()))
    assert mdp.features.shape[0] == mdp.num_states
    assert mdp.true_reward is not None and mdp.true_reward.shape == (mdp.num_states,)
    if mdp.successors is not None:  # no repeated successor within a row
        ordered = mdp.successors.sort(-1).values
        assert not bool((ordered[..., 1:] == ordered[..., :-1]).any())


@pytest.mark.parametrize("name", sorted(TESTBEDS))
def test_testbeds_are_valid_mdps(name):
    mdp = make_testbed(name, **SMALL[name])
    assert_valid(mdp)


def test_gridworld_layout_and_slip():
    mdp = gridworld()
    assert (mdp.num_states, mdp.num_actions, mdp.discount) == (25, 4, 0.9)
    assert mdp.successors is not None and mdp.successors.shape == (25, 4, 4)
    assert mdp.true_reward is not None and int(mdp.true_reward.argmax()) == 4 and float(mdp.true_reward.sum()) == 1
    assert torch.equal(mdp.features, torch.eye(25))
    assert torch.allclose(mdp.start, torch.full((25,), 1 / 25))
    dense = mdp.dense_transitions()
    centre = 2 * 5 + 2  # row 2, col 2
    neighbours = {UP: centre - 5, DOWN: centre + 5, LEFT: centre - 1, RIGHT: centre + 1}
    for action, target in neighbours.items():
        assert float(dense[centre, action, target]) == pytest.approx(1 - 0.3 + 0.3 / 4)
        for other in set(neighbours.values()) - {target}:
            assert float(dense[centre, action, other]) == pytest.approx(0.3 / 4)
    # Upper-left corner, action up: blocked up and left moves stay put.
    assert float(dense[0, UP, 0]) == pytest.approx(0.775 + 0.075)


def test_gridworld_optimal_policy_heads_to_upper_right_corner():
    size = 5
    policy = optimal_policy(gridworld(size=size)).view(size, size)
    for row in range(size):
        for col in range(size):
            if (row, col) == (0, size - 1):
                continue
            action = int(policy[row, col])
            assert action in (UP, RIGHT), (row, col, action)
            if row == 0:
                assert action == RIGHT
            if col == size - 1:
                assert action == UP


def test_objectworld_is_deterministic_per_seed_and_reward_is_ternary():
    a, b, c = objectworld(seed=3), objectworld(seed=3), objectworld(seed=4)
    for field in ("successors", "successor_probabilities", "state_features", "true_reward"):
        assert torch.equal(getattr(a, field), getattr(b, field))
    assert not torch.equal(a.true_reward, c.true_reward)
    assert a.true_reward is not None
    assert set(a.true_reward.unique().tolist()) <= {-1.0, 0.0, 1.0}
    assert (a.num_states, a.num_actions) == (100, 5)
    assert a.successors is not None and a.successors.shape == (100, 5, 5)


def test_objectworld_features_match_the_paper_definitions():
    size, colours = 8, 3
    discrete = objectworld(size=size, num_colours=colours, num_objects=10, seed=1)
    continuous = objectworld(size=size, num_colours=colours, num_objects=10, seed=1, continuous=True)
    distances = continuous.state_features
    assert distances.shape == (size * size, 2 * colours)
    assert discrete.state_features.shape == (size * size, 2 * colours * size)
    thresholds = torch.arange(1, size + 1, dtype=distances.dtype)
    expected = (distances.unsqueeze(-1) <= thresholds).to(distances.dtype).reshape(size * size, -1)
    assert torch.equal(discrete.state_features, expected)
    # Reward from the outer-colour distances: +1 near colour 0 (≤ 3) and colour 1 (≤ 2), −1 near 0 only.
    near_0, near_1 = distances[:, 0] <= 3, distances[:, 1] <= 2
    reward = torch.where(near_0 & near_1, 1.0, torch.where(near_0, -1.0, 0.0))
    assert torch.equal(discrete.true_reward, reward)
    # Objects sit at distance 0 of their own colours.
    cells, outer, inner = objectworld_objects(size=size, num_colours=colours, num_objects=10, seed=1)
    assert len(set(cells.tolist())) == 10
    for cell, o, i in zip(cells, outer, inner):
        assert float(distances[cell, o]) == 0.0 and float(distances[cell, colours + i]) == 0.0


def test_garnet_is_sparse_with_the_requested_branching():
    mdp = garnet(num_states=40, num_actions=3, branching=4, num_features=5, seed=2)
    assert mdp.successors is not None and mdp.successor_probabilities is not None
    assert mdp.successors.shape == (40, 3, 4)
    assert bool((mdp.successor_probabilities > 0).all())
    assert_valid(mdp)
    assert mdp.discount == 0.9 and mdp.horizon is None
    assert mdp.state_features is not None and mdp.true_reward is not None
    weights = torch.linalg.lstsq(mdp.state_features, mdp.true_reward.unsqueeze(-1)).solution
    assert torch.allclose(mdp.state_features @ weights.squeeze(-1), mdp.true_reward, atol=1e-10)
    assert torch.equal(garnet(40, seed=2).successors, garnet(40, seed=2).successors)


def test_garnet_horizon_discount_and_scale():
    assert garnet(10, horizon=6).discount == 1.0
    assert garnet(10, horizon=6, discount=0.95).discount == 0.95
    large = garnet(10_000, num_actions=2, branching=3, num_features=4)
    assert large.successors is not None and large.successors.shape == (10_000, 2, 3)
    ordered = large.successors.sort(-1).values
    assert not bool((ordered[..., 1:] == ordered[..., :-1]).any())
    with pytest.raises(ValidationError, match="branching"):
        garnet(3, branching=4)


def test_cliffworld_matches_seals():
    mdp = cliffworld()
    width, height = 7, 4
    assert (mdp.num_states, mdp.num_actions, mdp.horizon, mdp.discount) == (28, 4, 8, 1.0)
    assert int(mdp.start.argmax()) == 0 and float(mdp.start[0]) == 1.0
    reward = mdp.true_reward.view(height, width)
    assert reward[0, 0] == -1 and reward[0, -1] == 10 and bool((reward[0, 1:-1] == -10).all())
    assert bool((reward[1:] == -1).all())
    dense = mdp.dense_transitions()
    state = 1 * width + 1  # row 1, col 1; action 3 = (+1, +1), wind pushes one row back towards row 0
    assert float(dense[state, 3, 2 * width + 2]) == pytest.approx(0.7)
    assert float(dense[state, 3, 1 * width + 2]) == pytest.approx(0.3)
    # action 0 = (−1, −1) from row 1, col 1 lands on the start; the wind is clamped there.
    assert float(dense[state, 0, 0]) == pytest.approx(1.0)
    xy = cliffworld(use_xy_obs=True).state_features
    assert xy.shape == (28, 2) and torch.allclose(xy[width * height - 1], torch.tensor([1.0, 1.0]))
    assert optimal_policy(mdp).shape == (8, 28)


@pytest.mark.parametrize("build, match", [
    (lambda: make_testbed("mazeworld"), "mazeworld"),
    (lambda: make_testbed("gridworld", wind=0.3), "wind"),
    (lambda: make_testbed("garnet"), "num_states"),
    (lambda: make_testbed("gridworld", slip=1.5), "slip"),
    (lambda: gridworld(discount=1.0), "discount"),
], ids=["unknown_name", "unknown_option", "missing_option", "bad_slip", "bad_discount"])
def test_make_testbed_rejects_unknown_names_and_options(build, match):
    with pytest.raises(ValidationError, match=match):
        build()


def test_make_testbed_passes_options():
    assert make_testbed("gridworld", size=3).num_states == 9


# ---------------------------------------------------------------------- TabularEnv
@pytest.mark.parametrize(
    "name, testbed_options, env_options",
    [
        ("gridworld", {}, {"max_episode_steps": 30}),
        ("gridworld", {}, {}),
        ("cliffworld", {}, {}),
        ("cliffworld", {"use_xy_obs": True}, {"observe_features": True}),
        ("objectworld", {"size": 5, "num_objects": 6}, {"observe_features": True, "max_episode_steps": 10}),
    ],
)
def test_tabular_env_passes_the_gymnasium_checker(name, testbed_options, env_options):
    env = TabularEnv(make_testbed(name, **testbed_options), **env_options)
    # No render modes are declared, so there is nothing to render (the render check only warns about that).
    check_env(env, skip_render_check=True)


def test_tabular_env_transition_frequencies_match_the_model():
    samples = 3000
    for mdp, state, action in ((gridworld(), 12, UP), (cliffworld(), 8, 3)):
        start = torch.zeros(mdp.num_states)
        start[state] = 1.0
        env = TabularEnv(replace(mdp, start=start))
        counts = np.zeros(mdp.num_states)
        env.reset(seed=0)
        for _ in range(samples):
            env.reset()
            _, reward, terminated, _, info = env.step(action)
            assert reward == float(mdp.true_reward[state]) and not terminated
            counts[info["state"]] += 1
        expected = mdp.dense_transitions()[state, action].numpy()
        assert np.abs(counts / samples - expected).max() < 0.03


def test_tabular_env_horizon_rewards_and_errors():
    env = TabularEnv(cliffworld())
    obs, info = env.reset(seed=1)
    assert obs == 0 and info["state"] == 0
    truncations = [env.step(env.action_space.sample())[3] for _ in range(8)]
    assert truncations == [False] * 7 + [True]
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)
    env.reset()
    with pytest.raises(ValidationError, match="action"):
        env.step(4)
    with pytest.raises(ValidationError, match="action"):
        env.step(-1)
    with pytest.raises(RuntimeError, match="reset"):
        TabularEnv(gridworld()).step(0)
    # A given reward table [S, A] replaces the true reward.
    table = torch.arange(25 * 4, dtype=torch.float64).view(25, 4)
    env = TabularEnv(gridworld(), reward=table, max_episode_steps=3)
    _, info = env.reset(seed=0)
    assert env.step(2)[1] == float(table[info["state"], 2])
    with pytest.raises(ValidationError, match="reward"):
        TabularEnv(gridworld(), reward=torch.zeros(7))
    with pytest.raises(ValidationError, match="max_episode_steps"):
        TabularEnv(gridworld(), max_episode_steps=0)


def test_tabular_env_is_reproducible_by_seed():
    def rollout(seed):
        env = TabularEnv(garnet(20, seed=5), observe_features=True, max_episode_steps=15)
        obs, _ = env.reset(seed=seed)
        trace = [obs]
        for t in range(15):
            trace.append(env.step(t % 4)[0])
        return np.stack(trace)

    assert np.array_equal(rollout(7), rollout(7))
    assert not np.array_equal(rollout(7), rollout(8))
