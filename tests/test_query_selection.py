"""Query selection, schedules and fragmenting (irl_bilevel.query_selection)."""

from __future__ import annotations

import math

import pytest
import torch

from irl_bilevel import query_selection as qs
from irl_bilevel.feedback import Trajectories
from irl_bilevel.validation import ValidationError


def test_uniform_is_distinct_and_seeded():
    a = qs.select_uniform(20, 7, torch.Generator().manual_seed(1))
    b = qs.select_uniform(20, 7, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and len(set(a.tolist())) == 7 and int(a.max()) < 20


def test_disagreement_and_entropy_pick_the_expected_queries():
    # 3 members, 4 queries: query 2 splits the members, query 1 is confidently decided, query 3 is a coin flip
    first = torch.tensor([[1.0, 5.0, 3.0, 0.0], [1.0, 5.0, -3.0, 0.0], [1.0, 5.0, 0.0, 0.0]])
    second = torch.zeros(3, 4)
    assert qs.select_disagreement(first, second, 1).tolist() == [2]
    assert qs.disagreement_scores(first, second)[3] == 0.0
    entropy = qs.entropy_scores(first, second)
    assert entropy[3] == pytest.approx(math.log(2)) and qs.select_entropy(first, second, 1).tolist() in ([2], [3])
    assert int(torch.argmin(entropy)) == 1


def test_k_center_covers_clusters():
    points = torch.tensor([[0.0, 0.0], [0.1, 0.0], [10.0, 0.0], [10.1, 0.0], [0.0, 10.0], [0.1, 10.0]])
    chosen = qs.k_center_greedy(points, 3)
    assert sorted(int(c) // 2 for c in chosen) == [0, 1, 2]
    first = torch.stack([torch.arange(6.0), torch.arange(6.0) * 0.5])
    picked = qs.select_k_center_disagreement(first, torch.zeros(2, 6), points, 3, pool_factor=2)
    assert len(set(picked.tolist())) == 3


def test_schedules_sum_to_the_budget():
    assert qs.query_schedule(10, 3) == [4, 3, 3]
    decay = qs.query_schedule(100, 4, "linear_decay")
    assert sum(decay) == 100 and decay == sorted(decay, reverse=True) and decay[0] == 40
    assert qs.query_schedule(0, 2) == [0, 0]


def test_fragment_cuts_windows_inside_real_steps():
    obs = torch.arange(20).reshape(2, 10)
    traj = Trajectories(obs, torch.zeros_like(obs), torch.tensor([10, 3]))
    segments, which, offset = qs.fragment(traj, 4, 50, torch.Generator().manual_seed(0))
    assert bool((which == 0).all())  # only the first trajectory is long enough
    assert bool((offset <= 6).all()) and list(segments.observations.shape) == [50, 4]
    assert torch.equal(segments.observations[:, 0], offset)


@pytest.mark.parametrize(("call", "field"), [
    (lambda: qs.select_uniform(3, 4), "k"),
    (lambda: qs.select_uniform(0, 1), "candidates"),
    (lambda: qs.select_disagreement(torch.zeros(2, 3), torch.zeros(2, 4), 1), "second_returns"),
    (lambda: qs.select_entropy(torch.tensor([[float("nan")]]), torch.zeros(1, 1), 1), "first_returns"),
    (lambda: qs.select_k_center_disagreement(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 2), 1),
     "embeddings"),
    (lambda: qs.query_schedule(5, 2, "cosine"), "kind"),
    (lambda: qs.fragment(Trajectories(torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 3, dtype=torch.long),
                                      torch.tensor([3])), 5, 2), "segment_length"),
])
def test_bad_inputs(call, field):
    with pytest.raises(ValidationError, match=rf"^{field}"):
        call()
