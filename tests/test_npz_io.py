"""The .npz format of tabular MDPs and demonstrations (classic_rl.npz_io)."""

import numpy as np
import pytest
import torch

from classic_rl.npz_io import load_demonstrations_npz, load_mdp_npz, save_demonstrations_npz, save_mdp_npz
from classic_rl.testbeds import cliffworld, garnet, gridworld
from irl_bilevel.feedback import Demonstrations
from irl_bilevel.validation import ValidationError

FIELDS = ("transitions", "successors", "successor_probabilities", "start", "state_features",
          "state_action_features", "true_reward")


def assert_same_mdp(a, b):
    for field in FIELDS:
        x, y = getattr(a, field), getattr(b, field)
        assert (x is None) == (y is None), field
        if x is not None:
            assert x.dtype == y.dtype and torch.equal(x, y), field
    assert (a.discount, a.horizon, a.name) == (b.discount, b.horizon, b.name)


@pytest.mark.parametrize("build", [cliffworld, gridworld, lambda: garnet(15, horizon=4, seed=3)],
                         ids=["dense-finite-horizon", "sparse", "sparse-finite-horizon"])
def test_mdp_round_trip(tmp_path, build):
    mdp = build()  # built inside the test, under the float64 default of conftest
    path = tmp_path / "mdp"  # no suffix: written exactly there
    save_mdp_npz(path, mdp)
    assert path.exists()
    assert_same_mdp(load_mdp_npz(path), mdp)


def test_minimal_hand_written_mdp(tmp_path):
    path = tmp_path / "two_states.npz"
    transitions = np.array([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]])
    np.savez(path, transitions=transitions, start=np.array([1, 0]), discount=0.5)
    mdp = load_mdp_npz(path)
    assert (mdp.num_states, mdp.num_actions, mdp.horizon, mdp.true_reward) == (2, 2, None, None)
    assert mdp.start.is_floating_point() and mdp.features.shape == (2, 2)


def test_demonstrations_round_trip(tmp_path):
    demonstrations = Demonstrations.from_sequences([[0, 1, 2], [3]], [[1, 1, 0], [2]], num_states=4, num_actions=3)
    path = tmp_path / "demos.npz"
    save_demonstrations_npz(path, demonstrations)
    loaded = load_demonstrations_npz(path, num_states=4, num_actions=3)
    assert isinstance(loaded, Demonstrations)
    for field in ("observations", "actions", "lengths"):
        assert torch.equal(getattr(loaded, field), getattr(demonstrations, field))
    # Without lengths every trajectory spans all T steps.
    np.savez(path, observations=np.array([[0, 1], [2, 3]]), actions=np.array([[0, 0], [1, 1]]))
    assert load_demonstrations_npz(path).lengths.tolist() == [2, 2]


def good_mdp_arrays():
    return {
        "transitions": np.full((3, 2, 3), 1 / 3),
        "start": np.array([0.5, 0.5, 0.0]),
        "discount": np.float64(0.9),
        "state_features": np.eye(3),
        "true_reward": np.array([0.0, 1.0, 0.0]),
    }


def write(tmp_path, **arrays):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    "change, field",
    [
        ({"rewards": np.zeros(3)}, "rewards"),  # unknown key
        ({"start": None}, "start"),  # missing
        ({"discount": None}, "discount"),
        ({"transitions": None}, "transitions"),
        ({"transitions": np.full((3, 2, 3), 0.3)}, "transitions"),  # rows sum to 0.9
        ({"start": np.array([0.5, 0.6, 0.0])}, "start"),
        ({"true_reward": np.array([0.0, np.nan, 0.0])}, "true_reward"),
        ({"state_features": np.full((3, 2), np.nan)}, "state_features"),
        ({"start": np.array([np.nan, 0.5, 0.5])}, "start"),
        ({"discount": np.array([0.9, 0.9])}, "discount"),
        ({"discount": np.float64(1.5)}, "discount"),
        ({"horizon": np.float64(2.5)}, "horizon"),
        ({"true_reward": np.zeros(4)}, "true_reward"),
        ({"transitions": None, "successors": np.zeros((3, 2, 1), dtype=np.int64)}, "successor_probabilities"),
        ({"successors": np.zeros((3, 2, 1), dtype=np.int64), "successor_probabilities": np.ones((3, 2, 1))},
         "not both"),
        ({"transitions": None, "successors": np.zeros((3, 2, 1)), "successor_probabilities": np.ones((3, 2, 1))},
         "successors"),  # float indices
        ({"transitions": None, "successors": np.full((3, 2, 1), 7), "successor_probabilities": np.ones((3, 2, 1))},
         "successors"),  # out of range
    ],
)
def test_bad_mdp_archives_name_the_field(tmp_path, change, field):
    arrays = good_mdp_arrays()
    for key, value in change.items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    with pytest.raises(ValidationError, match=field):
        load_mdp_npz(write(tmp_path, **arrays))


@pytest.mark.parametrize(
    "arrays, field",
    [
        ({"observations": np.zeros((2, 3), dtype=int), "actions": np.zeros((2, 3), dtype=int),
          "rewards": np.zeros((2, 3))}, "rewards"),
        ({"observations": np.zeros((2, 3), dtype=int)}, "actions"),
        ({"observations": np.zeros((2, 3)), "actions": np.zeros((2, 3), dtype=int)}, "observations"),
        ({"observations": np.zeros((2, 3), dtype=int), "actions": np.zeros((2, 2), dtype=int)}, "actions"),
        ({"observations": np.zeros((2, 3), dtype=int), "actions": np.full((2, 3), 5)}, "actions"),
        ({"observations": np.full((2, 3), 9), "actions": np.zeros((2, 3), dtype=int)}, "observations"),
        ({"observations": np.zeros((2, 3), dtype=int), "actions": np.zeros((2, 3), dtype=int),
          "lengths": np.array([3, 4])}, "lengths"),
        ({"observations": np.zeros((2, 3), dtype=int), "actions": np.zeros((2, 3), dtype=int),
          "lengths": np.array([3.0, 1.0])}, "lengths"),
    ],
)
def test_bad_demonstration_archives_name_the_field(tmp_path, arrays, field):
    with pytest.raises(ValidationError, match=field):
        load_demonstrations_npz(write(tmp_path, **arrays), num_states=4, num_actions=3)


def test_unreadable_archives(tmp_path):
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, start=np.array([{"a": 1}], dtype=object), discount=0.9)
    with pytest.raises(ValidationError, match="start"):
        load_mdp_npz(pickled)
    single = tmp_path / "single.npy"
    np.save(single, np.zeros(3))
    with pytest.raises(ValidationError, match=r"\.npz"):
        load_mdp_npz(single)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file")
    with pytest.raises(ValidationError):
        load_demonstrations_npz(garbage)
    with pytest.raises(ValidationError, match=r"missing\.npz': the file does not exist"):
        load_mdp_npz(tmp_path / "missing.npz")
