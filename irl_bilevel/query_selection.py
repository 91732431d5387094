"""Which pairs to ask about: query selection, query schedules and segment fragmenting.

Selection rules take scores of ``N`` candidate queries and return the indices of the ``k`` chosen ones:

* :func:`select_uniform` — ``k`` distinct candidates uniformly at random;
* :func:`select_disagreement` — the ``k`` with the largest standard deviation over ensemble members of the
  Bradley-Terry probability ``σ(R^m_1 − R^m_2)`` (Christiano et al. 2017; B-Pref's "disagreement", Lee et al. 2021);
* :func:`select_entropy` — the ``k`` with the largest entropy of the members' mean probability ``p̄`` (B-Pref's
  "entropy"): ``H(p̄) = −p̄ log p̄ − (1 − p̄) log(1 − p̄)``;
* :func:`select_k_center_disagreement` — diversity-aware: the ``pool_factor · k`` most disagreed-upon candidates,
  then greedy k-center (Sener & Savarese 2018) on the queries' embeddings, so the chosen queries cover the pool
  (B-Pref's "KCenter + disagreement").

Member returns are ``[M, N]`` tensors (``RewardEnsemble.segment_returns`` of the first and of the second segments).
:func:`query_schedule` splits a budget over feedback sessions; :func:`fragment` cuts trajectories into segments.
"""

from __future__ import annotations

from typing import Literal

import torch

from irl_bilevel.feedback import Trajectories
from irl_bilevel.validation import ValidationError, as_tensor, check_finite


def _k(k: int, n: int) -> int:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValidationError(f"k: expected a positive number of queries, got {k!r}")
    if n < 1:
        raise ValidationError("candidates: the candidate set is empty; expected at least one query")
    if k > n:
        raise ValidationError(f"k: asked for {k} queries from {n} candidates")
    return k


def _member_returns(first: torch.Tensor, second: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = as_tensor(first, "first_returns"), as_tensor(second, "second_returns")
    if a.dim() != 2:
        raise ValidationError(f"first_returns: expected per-member returns [M, N], got {list(a.shape)}")
    if a.shape != b.shape:
        raise ValidationError(f"second_returns: expected shape {list(a.shape)}, got {list(b.shape)}")
    check_finite(a, "first_returns")
    check_finite(b, "second_returns")
    return a.double(), b.double()


def select_uniform(num_candidates: int, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``k`` distinct indices of ``range(num_candidates)``, uniformly."""
    k = _k(k, num_candidates)
    return torch.randperm(num_candidates, generator=generator)[:k]


def disagreement_scores(first_returns: torch.Tensor, second_returns: torch.Tensor) -> torch.Tensor:
    """``[N]``: std over members of ``σ(R^m_1 − R^m_2)``."""
    a, b = _member_returns(first_returns, second_returns)
    return torch.sigmoid(a - b).std(dim=0, unbiased=False)


def entropy_scores(first_returns: torch.Tensor, second_returns: torch.Tensor) -> torch.Tensor:
    """``[N]``: binary entropy (nats) of the members' mean probability that the first segment is preferred."""
    a, b = _member_returns(first_returns, second_returns)
    p = torch.sigmoid(a - b).mean(dim=0).clamp(1e-12, 1 - 1e-12)
    return -(p * p.log() + (1 - p) * (1 - p).log())


def select_disagreement(first_returns: torch.Tensor, second_returns: torch.Tensor, k: int) -> torch.Tensor:
    scores = disagreement_scores(first_returns, second_returns)
    return torch.topk(scores, _k(k, int(scores.shape[0]))).indices


def select_entropy(first_returns: torch.Tensor, second_returns: torch.Tensor, k: int) -> torch.Tensor:
    scores = entropy_scores(first_returns, second_returns)
    return torch.topk(scores, _k(k, int(scores.shape[0]))).indices


def k_center_greedy(embeddings: torch.Tensor, k: int, first: int = 0) -> torch.Tensor:
    """Greedy k-center: start at ``first``, then repeatedly add the point farthest (Euclidean) from the chosen."""
    points = as_tensor(embeddings, "embeddings").double()
    if points.dim() != 2:
        raise ValidationError(f"embeddings: expected shape [N, D], got {list(points.shape)}")
    check_finite(points, "embeddings")
    k = _k(k, int(points.shape[0]))
    chosen = [first]
    distance = (points - points[first]).norm(dim=1)
    for _ in range(k - 1):
        nxt = int(torch.argmax(distance))
        chosen.append(nxt)
        distance = torch.minimum(distance, (points - points[nxt]).norm(dim=1))
    return torch.tensor(chosen)


def select_k_center_disagreement(first_returns: torch.Tensor, second_returns: torch.Tensor,
                                 embeddings: torch.Tensor, k: int, pool_factor: int = 5) -> torch.Tensor:
    """Diversity-aware selection: the ``min(N, pool_factor·k)`` highest-disagreement candidates, then greedy
    k-center over their ``embeddings [N, D]`` (e.g. the concatenated mean features of both segments), starting
    from the most disagreed-upon one."""
    scores = disagreement_scores(first_returns, second_returns)
    n = int(scores.shape[0])
    k = _k(k, n)
    if pool_factor < 1:
        raise ValidationError(f"pool_factor: expected >= 1, got {pool_factor}")
    points = as_tensor(embeddings, "embeddings")
    if points.dim() != 2 or points.shape[0] != n:
        raise ValidationError(f"embeddings: expected shape [{n}, D], got {list(points.shape)}")
    pool = torch.topk(scores, min(n, pool_factor * k)).indices
    return pool[k_center_greedy(points[pool], k)]


def query_schedule(budget: int, sessions: int, kind: Literal["constant", "linear_decay"] = "constant") -> list[int]:
    """Queries per feedback session summing to ``budget``: ``constant`` (as even as possible) or ``linear_decay``
    (weights ``sessions, sessions − 1, …, 1``: more feedback early, when the reward model is worst)."""
    if budget < 0 or sessions < 1:
        raise ValidationError(f"budget: expected budget >= 0 and sessions >= 1, got {budget}, {sessions}")
    if kind == "constant":
        weights = torch.ones(sessions, dtype=torch.float64)
    elif kind == "linear_decay":
        weights = torch.arange(sessions, 0, -1, dtype=torch.float64)
    else:
        raise ValidationError(f"kind: expected 'constant' or 'linear_decay', got {kind!r}")
    exact = budget * weights / weights.sum()
    counts = exact.floor().long()
    remainder = budget - int(counts.sum())
    order = torch.argsort(-(exact - counts), stable=True)[:remainder]
    counts[order] += 1
    return counts.tolist()


def fragment(trajectories: Trajectories, segment_length: int, num_segments: int,
             generator: torch.Generator | None = None) -> tuple[Trajectories, torch.Tensor, torch.Tensor]:
    """``num_segments`` windows of ``segment_length`` steps at uniform offsets inside uniformly drawn trajectories
    long enough (as imitation's ``RandomFragmenter``). Returns the segments and, per segment, the trajectory
    index and the start offset."""
    if segment_length < 1 or num_segments < 1:
        raise ValidationError(f"segment_length: expected segment_length, num_segments >= 1, got {segment_length}, "
                              f"{num_segments}")
    eligible = torch.nonzero(trajectories.lengths >= segment_length).squeeze(1)
    if eligible.numel() == 0:
        raise ValidationError(f"segment_length: no trajectory has {segment_length} steps (longest: "
                              f"{int(trajectories.lengths.max())})")
    which = eligible[torch.randint(eligible.numel(), (num_segments,), generator=generator)]
    room = trajectories.lengths[which] - segment_length + 1
    offset = (torch.rand(num_segments, generator=generator, dtype=torch.float64) * room).long()
    steps = offset[:, None] + torch.arange(segment_length)[None, :]
    segments = Trajectories(trajectories.observations[which[:, None], steps],
                            trajectories.actions[which[:, None], steps],
                            torch.full((num_segments,), segment_length), trajectories.num_states,
                            trajectories.num_actions)
    return segments, which, offset
