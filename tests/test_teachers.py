"""Simulated teachers (B-Pref) and AI evaluators: label statistics against each teacher's definition on synthetic
returns with fixed seeds, per-aspect labels, populations, determinism, and bad inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from irl_bilevel import teachers
from irl_bilevel.feedback import TIE, Trajectories
from irl_bilevel.rewards import TabularReward
from irl_bilevel.teachers import Teacher
from irl_bilevel.validation import ValidationError

N, T = 20_000, 5


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def returns_as_steps(returns: torch.Tensor, t: int = T) -> torch.Tensor:
    """Per-step rewards [N, T] whose sum is ``returns`` and whose myopic weighting is irrelevant (all on the last
    step)."""
    steps = torch.zeros(len(returns), t, dtype=torch.float64)
    steps[:, -1] = returns
    return steps


def binomial_ok(count: int, n: int, p: float, sigmas: float = 4.0) -> bool:
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p)) + 1


def test_bpref_parameters_are_the_published_ones():
    table = {t.name: (t.beta, t.gamma, t.mistake, t.skip, t.equal) for t in teachers.bpref_teachers()}
    assert table == {"oracle": (math.inf, 1.0, 0.0, 0.0, 0.0), "stochastic": (1.0, 1.0, 0.0, 0.0, 0.0),
                     "mistake": (math.inf, 1.0, 0.1, 0.0, 0.0), "skip": (math.inf, 1.0, 0.0, 0.1, 0.0),
                     "equal": (math.inf, 1.0, 0.0, 0.0, 0.1), "myopic": (math.inf, 0.9, 0.0, 0.0, 0.0)}
    assert teachers.threshold_margin(200.0, 50, 1000) == pytest.approx(10.0)


def test_oracle_prefers_the_larger_return_and_ties_exact_equality():
    r1 = returns_as_steps(torch.tensor([1.0, 0.0, 2.0, 3.0], dtype=torch.float64))
    r2 = returns_as_steps(torch.tensor([0.0, 1.0, 2.0, -3.0], dtype=torch.float64))
    prefs = Teacher.oracle().label(r1, r2)
    assert prefs.labels.tolist() == [1.0, 0.0, TIE, 1.0] and not bool(prefs.skipped.any())
    bpref = Teacher.oracle(exact_ties="first").label(r1, r2)
    assert bpref.labels.tolist() == [1.0, 0.0, 1.0, 1.0]


def test_stochastic_teacher_samples_bradley_terry():
    diff = torch.tensor([0.0, 1.0, -2.0], dtype=torch.float64).repeat_interleave(N // 2)
    prefs = Teacher.stochastic().label(returns_as_steps(diff), returns_as_steps(torch.zeros_like(diff)),
                                       generator=gen(1))
    for value in (0.0, 1.0, -2.0):
        chosen = prefs.labels[diff == value]
        p = 1 / (1 + math.exp(-value))
        assert binomial_ok(int(chosen.sum()), len(chosen), p), (value, float(chosen.mean()), p)


def test_mistake_teacher_flips_with_probability_epsilon():
    rng = np.random.default_rng(0)
    r1 = torch.tensor(rng.normal(size=(N, T)))
    r2 = torch.tensor(rng.normal(size=(N, T)))
    oracle = Teacher.oracle().label(r1, r2)
    mistaken = Teacher.mistaken().label(r1, r2, generator=gen(2))
    flips = int((oracle.labels != mistaken.labels).sum())
    assert binomial_ok(flips, N, 0.1)
    three = Teacher.mistaken(mistake=0.3).label(r1, r2, generator=gen(2))
    assert binomial_ok(int((oracle.labels != three.labels).sum()), N, 0.3)


def test_skip_teacher_skips_when_both_returns_are_below_the_threshold():
    margin = 10.0  # threshold 0.1 · 10 = 1
    first = torch.tensor([0.5, 0.5, 2.0, 0.99, -5.0], dtype=torch.float64)
    second = torch.tensor([0.9, 1.5, 0.0, 1.0, -6.0], dtype=torch.float64)
    prefs = Teacher.skipping().label(returns_as_steps(first), returns_as_steps(second), margin=margin)
    assert prefs.skipped.tolist() == [True, False, False, False, True]
    assert prefs.labels[~prefs.skipped].tolist() == [0.0, 1.0, 0.0]
    # rate on synthetic returns: P(both < 1) for uniform [0, 4) returns is (1/4)²
    rng = np.random.default_rng(3)
    a, b = torch.tensor(rng.uniform(0, 4, N)), torch.tensor(rng.uniform(0, 4, N))
    skipped = Teacher.skipping().label(returns_as_steps(a), returns_as_steps(b), margin=margin).skipped
    assert binomial_ok(int(skipped.sum()), N, 1 / 16)


def test_equal_teacher_ties_when_the_difference_is_below_the_threshold():
    margin = 10.0
    diff = torch.tensor([0.0, 0.5, -0.99, 1.0, -1.5], dtype=torch.float64)
    prefs = Teacher.equal_teacher().label(returns_as_steps(diff), returns_as_steps(torch.zeros(5)), margin=margin)
    assert prefs.labels.tolist() == [TIE, TIE, TIE, 1.0, 0.0]
    rng = np.random.default_rng(4)
    a, b = torch.tensor(rng.uniform(0, 4, N)), torch.tensor(rng.uniform(0, 4, N))
    ties = (Teacher.equal_teacher().label(returns_as_steps(a), returns_as_steps(b), margin=margin).labels == TIE)
    p = 1 - (3 / 4) ** 2  # P(|a − b| < 1) for independent uniforms on [0, 4)
    assert binomial_ok(int(ties.sum()), N, p)


def test_ties_override_mistakes_and_skipped_queries_keep_a_placeholder():
    steps = returns_as_steps(torch.zeros(1000, dtype=torch.float64))
    prefs = Teacher("both", mistake=1.0, equal=0.1).label(steps, steps + 1e-3, margin=1.0)
    assert bool((prefs.labels == TIE).all())
    skipped = Teacher.skipping().label(steps, steps, margin=1.0)
    assert bool(skipped.skipped.all()) and bool((skipped.labels == TIE).all())


def test_myopic_teacher_weights_recent_steps():
    # first: reward 1 at step 0; second: reward 0.7 at the last step. γ = 0.9, T = 5: 0.9⁴ = 0.656 < 0.7.
    r1 = torch.zeros(1, 5, dtype=torch.float64)
    r1[0, 0] = 1.0
    r2 = torch.zeros(1, 5, dtype=torch.float64)
    r2[0, 4] = 0.7
    assert Teacher.oracle().label(r1, r2).labels.tolist() == [1.0]
    assert Teacher.myopic().label(r1, r2).labels.tolist() == [0.0]
    # the weight of step t is γ^(T−1−t): a unit reward at step t against a constant c sits on the boundary
    for t in range(5):
        r = torch.zeros(2, 5, dtype=torch.float64)
        r[:, t] = 1.0
        c = returns_as_steps(torch.tensor([0.9 ** (4 - t) - 1e-9, 0.9 ** (4 - t) + 1e-9], dtype=torch.float64))
        assert Teacher.myopic().label(r, c).labels.tolist() == [1.0, 0.0]
    # padding: with a mask the last *real* step weighs 1 (segments of different lengths)
    short = torch.tensor([[True, True, False, False, False]])
    full = torch.ones(1, 5, dtype=torch.bool)
    r = torch.zeros(1, 5, dtype=torch.float64)
    r[0, 1] = 1.0  # last real step of a 2-step segment: weight 1 (0.9³ if padding counted)
    other = torch.zeros(1, 5, dtype=torch.float64)
    other[0, 4] = 0.95
    assert Teacher.myopic().label(r, other, short, full).labels.tolist() == [1.0]
    assert Teacher.myopic().label(r, other, full, full).labels.tolist() == [0.0]


def test_labels_are_deterministic_given_the_generator():
    rng = np.random.default_rng(5)
    r1, r2 = torch.tensor(rng.normal(size=(500, T))), torch.tensor(rng.normal(size=(500, T)))
    for teacher in teachers.bpref_teachers():
        a = teacher.label(r1, r2, margin=1.0, generator=gen(7))
        b = teacher.label(r1, r2, margin=1.0, generator=gen(7))
        assert torch.equal(a.labels, b.labels) and torch.equal(a.skipped, b.skipped), teacher.name
    a = Teacher.stochastic().label(r1, r2, generator=gen(7)).labels
    assert not torch.equal(a, Teacher.stochastic().label(r1, r2, generator=gen(8)).labels)


def test_per_aspect_labels_and_aggregate_weights():
    r1 = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]], dtype=torch.float64)  # [1, T=2, K=2]
    r2 = torch.tensor([[[0.0, 0.0], [0.0, 3.0]]], dtype=torch.float64)
    prefs = Teacher("t", per_aspect=True).label(r1, r2)
    assert prefs.aspect_labels.tolist() == [[1.0, 0.0]] and prefs.labels.tolist() == [0.0]
    task_only = Teacher("t", aspect_weights=(1.0, 0.0)).label(r1, r2)
    assert task_only.labels.tolist() == [1.0] and task_only.aspect_labels is None
    population = teachers.TeacherPopulation.from_weights([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1]])
    assert [p.labels.item() for p in population.label(r1, r2)] == [1.0, 0.0, 1.0]
    drawn = teachers.TeacherPopulation.dirichlet(4, 3, 0.5, generator=gen(3))
    again = teachers.TeacherPopulation.dirichlet(4, 3, 0.5, generator=gen(3))
    assert drawn == again and len(drawn) == 4
    weights = np.array([t.aspect_weights for t in drawn.teachers])
    np.testing.assert_allclose(weights.sum(1), 1.0)


def test_reward_model_evaluator_with_the_true_table_agrees_with_the_oracle():
    num_states = 6
    table = torch.tensor([0.0, 1.0, 2.0, -1.0, 0.5, 3.0], dtype=torch.float64)
    model = TabularReward(num_states)
    with torch.no_grad():
        model.table.copy_(table)
    g = gen(0)
    obs1, obs2 = torch.randint(num_states, (50, 4), generator=g), torch.randint(num_states, (50, 4), generator=g)
    zeros = torch.zeros(50, 4, dtype=torch.long)
    first = Trajectories(obs1, zeros, torch.full((50,), 4), num_states)
    second = Trajectories(obs2, zeros, torch.full((50,), 4), num_states)
    transitions = teachers.tabular_transitions(torch.eye(num_states, dtype=torch.float64))
    evaluator = teachers.RewardModelEvaluator(model, transitions)
    reward_fn = teachers.tabular_reward_function(table)
    truth = Teacher.oracle().label_segments(first, second, reward_fn)
    judged = evaluator.label_segments(first, second)
    assert torch.equal(truth.labels, judged.labels)
    assert judged.first is first
    aspects = teachers.tabular_aspect_function(torch.stack([table, -table], dim=1))(first)
    assert list(aspects.shape) == [50, 4, 2]


@pytest.mark.parametrize(("call", "field"), [
    (lambda t: t.label(torch.zeros(3, 4), torch.zeros(3, 5)), "second_rewards"),
    (lambda t: t.label(torch.zeros(0, 4), torch.zeros(0, 4)), "first_rewards"),
    (lambda t: t.label(torch.tensor([[float("nan")]]), torch.zeros(1, 1)), "first_rewards"),
    (lambda t: t.label(torch.zeros(3), torch.zeros(3)), "first_rewards"),
    (lambda t: t.label(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3)), "first_mask"),
    (lambda t: Teacher.skipping().label(torch.zeros(2, 3), torch.zeros(2, 3)), "margin"),
    (lambda t: Teacher.equal_teacher().label(torch.zeros(2, 3), torch.zeros(2, 3), margin=float("nan")), "margin"),
    (lambda t: Teacher("p", per_aspect=True).label(torch.zeros(2, 3), torch.zeros(2, 3)), "first_rewards"),
    (lambda t: Teacher("w", aspect_weights=(1.0,)).label(torch.zeros(2, 3, 2), torch.zeros(2, 3, 2)),
     "aspect_weights"),
])
def test_bad_inputs_name_the_field(call, field):
    with pytest.raises(ValidationError, match=rf"^{field}"):
        call(Teacher.oracle())


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"beta": 0.0}, "beta"), ({"gamma": 0.0}, "gamma"), ({"mistake": 1.5}, "mistake"), ({"skip": -0.1}, "skip"),
    ({"equal": float("inf")}, "equal"), ({"exact_ties": "second"}, "exact_ties"),
])
def test_bad_teacher_parameters(kwargs, field):
    with pytest.raises(ValidationError, match=rf"^{field}"):
        Teacher("bad", **kwargs)


def test_bad_segment_pairs():
    zeros = torch.zeros(3, 4, dtype=torch.long)
    first = Trajectories(zeros, zeros, torch.full((3,), 4))
    shorter = Trajectories(zeros[:, :3], zeros[:, :3], torch.full((3,), 3))
    fewer = Trajectories(zeros[:2], zeros[:2], torch.full((2,), 4))
    reward_fn = teachers.tabular_reward_function(torch.zeros(1))
    with pytest.raises(ValidationError, match=r"^second"):
        Teacher.oracle().label_segments(first, shorter, reward_fn)
    with pytest.raises(ValidationError, match=r"^second"):
        Teacher.oracle().label_segments(first, fewer, reward_fn)
    with pytest.raises(ValidationError, match=r"^weights"):
        teachers.TeacherPopulation.from_weights(torch.zeros(0, 2))
