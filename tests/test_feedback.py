import pytest
import torch

from irl_bilevel.feedback import TIE, Demonstrations, Preferences, Rankings, Ratings, Trajectories, UnpairedLabels
from irl_bilevel.validation import ValidationError


def segments(n=3, t=4):
    return Trajectories(torch.zeros(n, t, 2), torch.zeros(n, t, dtype=torch.long), torch.full((n,), t))


def test_variable_length_demonstrations_are_padded_with_a_mask():
    demos = Demonstrations.from_sequences([[0, 1, 2], [3]], [[1, 0, 1], [2]], num_states=4, num_actions=3)
    assert demos.observations.shape == (2, 3)
    assert demos.lengths.tolist() == [3, 1]
    assert demos.mask.tolist() == [[True, True, True], [True, False, False]]


@pytest.mark.parametrize(
    "observations, actions, field",
    [
        ([], [], "observations"),
        ([[0, 1]], [[0]], "actions"),
        ([[0, 1], []], [[0, 1], []], "observations"),
        ([[0, 9]], [[0, 1]], "observations"),
        ([[0, 1]], [[0, 5]], "actions"),
        ([[0, 1]], [[0, -1]], "actions"),
    ],
)
def test_bad_demonstrations_name_the_field(observations, actions, field):
    with pytest.raises(ValidationError, match=field):
        Demonstrations.from_sequences(observations, actions, num_states=4, num_actions=3)


def test_nan_observations_are_rejected():
    with pytest.raises(ValidationError, match=r"observations.*NaN"):
        Trajectories(torch.tensor([[[float("nan")]]]), torch.zeros(1, 1), torch.ones(1))


def test_preferences_with_ties_skips_and_aspects():
    prefs = Preferences(segments(), segments(), torch.tensor([1.0, TIE, 0.0]), skipped=torch.tensor([0, 0, 1]),
                        aspect_labels=torch.tensor([[1.0, 0.0], [0.5, 1.0], [0.0, 0.0]]),
                        aspect_mask=torch.tensor([[1, 1], [1, 0], [0, 0]]), aspect_names=("a", "b"))
    assert prefs.answered.tolist() == [True, True, False]
    with pytest.raises(ValidationError, match="labels"):
        Preferences(segments(), segments(), torch.tensor([1.0, 0.3, 0.0]))
    with pytest.raises(ValidationError, match="second"):
        Preferences(segments(), segments(2), torch.tensor([1.0, 1.0, 0.0]))
    with pytest.raises(ValidationError, match="aspect_names"):
        Preferences(segments(), segments(), torch.ones(3), aspect_labels=torch.ones(3, 2), aspect_names=("a",))


def test_rankings_ratings_and_unpaired_labels_validate():
    Rankings(segments(6), torch.tensor([[2, 0, 1], [0, 1, 2]]))
    with pytest.raises(ValidationError, match="permutation"):
        Rankings(segments(6), torch.tensor([[2, 2, 1], [0, 1, 2]]))
    with pytest.raises(ValidationError, match="candidates"):
        Rankings(segments(5), torch.tensor([[2, 0, 1], [0, 1, 2]]))
    Ratings(segments(), torch.tensor([[1.0, 5.0], [3.0, 2.0], [4.0, 4.0]]), ("a", "b"))
    with pytest.raises(ValidationError, match="scores"):
        Ratings(segments(), torch.tensor([[1.0, 6.0], [3.0, 2.0], [4.0, 4.0]]), ("a", "b"))
    with pytest.raises(ValidationError, match=r"scores.*NaN"):
        Ratings(segments(), torch.tensor([[1.0, float("nan")], [3.0, 2.0], [4.0, 4.0]]), ("a", "b"))
    with pytest.raises(ValidationError, match="desirable"):
        UnpairedLabels(segments(), torch.tensor([1, 0]))
