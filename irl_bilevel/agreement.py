"""Agreement and reliability of preference labellers: chance-corrected agreement, agreement with the truth,
orderings and transitivity.

Pairwise labels are read as three ordered categories ``second ≺ tie ≺ first`` (the label values 0, 0.5, 1 of
``irl_bilevel.feedback.Preferences``); a skipped query is a *missing* rating. Conventions:

* :func:`cohen_kappa` — ``κ = (p_o − p_e) / (1 − p_e)``, ``p_o`` the observed agreement and
  ``p_e = Σ_c p_A(c) p_B(c)`` the agreement expected from the two raters' marginals (Cohen 1960), over the items
  both raters rated.
* :func:`fleiss_kappa` — ``κ = (P̄ − P̄_e) / (1 − P̄_e)`` with ``P_i = (Σ_c n_ic² − n) / (n (n − 1))``,
  ``P̄`` their mean, ``p_c = Σ_i n_ic / (N n)`` and ``P̄_e = Σ_c p_c²`` (Fleiss 1971); every item needs the same
  number ``n >= 2`` of ratings: items some rater skipped are dropped by :func:`fleiss_kappa_from_ratings`.
* :func:`krippendorff_alpha` — ``α = 1 − D_o / D_e`` (Krippendorff 2011), observed over expected disagreement,
  missing ratings allowed; computed by the maintained ``krippendorff`` package (nominal or ordinal).
* :func:`kendall_tau` — Kendall's τ-b (``scipy.stats.kendalltau``) between item scores and the true scores;
  a labeller's item scores come from its pairwise labels by :func:`borda_scores`.
* :func:`intransitive_triple_rate` — among item triples whose three pairs all carry a strict preference, the
  fraction that form a cycle ``a ≻ b ≻ c ≻ a``.
* :func:`flip_rate` — on queries that both the labeller and the reference answered with a strict preference, the
  fraction where they disagree (ties and skips are excluded and reported apart by :func:`agreement_with_reference`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from scipy import stats

from irl_bilevel.validation import ValidationError

CATEGORIES = (0.0, 0.5, 1.0)  # second preferred, tie, first preferred


def _array(value: Any, field: str) -> np.ndarray:
    try:
        array = np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value, dtype=float)
    except (TypeError, ValueError) as error:
        raise ValidationError(f"{field}: expected an array of numbers, got {type(value).__name__}") from error
    return array


def preference_ratings(labels: Any, skipped: Any = None) -> np.ndarray:
    """Labels ``[N]`` (1 / 0 / 0.5) as ratings with ``NaN`` where the query was skipped."""
    values = _array(labels, "labels").astype(float).copy()
    if values.ndim != 1:
        raise ValidationError(f"labels: expected shape [N], got {list(values.shape)}")
    if skipped is not None:
        mask = _array(skipped, "skipped").astype(bool)
        if mask.shape != values.shape:
            raise ValidationError(f"skipped: expected shape {list(values.shape)}, got {list(mask.shape)}")
        values[mask] = np.nan
    return values


def _ratings_matrix(ratings: Any, field: str = "ratings") -> np.ndarray:
    matrix = _array(ratings, field)
    if matrix.ndim != 2 or matrix.shape[0] < 2 or matrix.shape[1] < 1:
        raise ValidationError(f"{field}: expected shape [raters >= 2, items >= 1], got {list(matrix.shape)}")
    if np.isinf(matrix).any():
        raise ValidationError(f"{field}: contains infinite values (use NaN for a missing rating)")
    return matrix


def cohen_kappa(first: Any, second: Any, categories: Sequence[float] | None = None) -> float:
    """Cohen's κ of two raters over the items both rated (``NaN`` = missing). ``NaN`` when fewer than one common
    item; 1.0 when both raters use one and the same category everywhere (``p_e = 1``, perfect agreement).

    ``κ = (p_o − p_e) / (1 − p_e)`` (Cohen 1960). The 2 × 2 table (20, 5; 10, 15): ``p_o = 0.7``, ``p_e = 0.5``:

    >>> first = [1] * 25 + [0] * 25
    >>> second = [1] * 20 + [0] * 5 + [1] * 10 + [0] * 15
    >>> round(cohen_kappa(first, second), 6)
    0.4
    """
    a, b = _array(first, "first"), _array(second, "second")
    if a.ndim != 1 or a.shape != b.shape:
        raise ValidationError(f"second: expected the shape of first [N], got {list(a.shape)} and {list(b.shape)}")
    both = ~np.isnan(a) & ~np.isnan(b)
    a, b = a[both], b[both]
    if a.size == 0:
        return float("nan")
    values = np.unique(np.concatenate([a, b])) if categories is None else np.asarray(categories, float)
    index_a, index_b = np.searchsorted(values, a), np.searchsorted(values, b)
    if (values[np.minimum(index_a, len(values) - 1)] != a).any() or (values[np.minimum(index_b, len(values) - 1)]
                                                                     != b).any():
        raise ValidationError(f"first: ratings outside the categories {values.tolist()}")
    table = np.zeros((len(values), len(values)))
    np.add.at(table, (index_a, index_b), 1.0)
    table /= table.sum()
    observed = np.trace(table)
    expected = float(table.sum(axis=1) @ table.sum(axis=0))
    if expected >= 1.0:
        return 1.0 if observed >= 1.0 else float("nan")
    return float((observed - expected) / (1.0 - expected))


def fleiss_kappa(counts: Any) -> float:
    """Fleiss' κ from a count table ``[N items, C categories]`` (``n_ic`` raters put item ``i`` in category ``c``;
    every row sums to the same ``n >= 2``)."""
    table = _array(counts, "counts")
    if table.ndim != 2 or table.shape[0] < 1 or table.shape[1] < 1:
        raise ValidationError(f"counts: expected shape [items, categories], got {list(table.shape)}")
    if (table < 0).any() or not np.all(table == np.round(table)):
        raise ValidationError("counts: expected non-negative integer counts")
    per_item = table.sum(axis=1)
    n = per_item[0]
    if not np.all(per_item == n) or n < 2:
        raise ValidationError(f"counts: every item needs the same number of ratings n >= 2; got row sums "
                              f"{sorted(set(per_item.tolist()))}")
    agreement = ((table ** 2).sum(axis=1) - n) / (n * (n - 1))
    p_bar = agreement.mean()
    shares = table.sum(axis=0) / (table.shape[0] * n)
    p_e = float((shares ** 2).sum())
    if p_e >= 1.0:
        return 1.0 if p_bar >= 1.0 else float("nan")
    return float((p_bar - p_e) / (1.0 - p_e))


def fleiss_kappa_from_ratings(ratings: Any, categories: Sequence[float] = CATEGORIES) -> float:
    """Fleiss' κ of ratings ``[raters, items]`` (``NaN`` = missing): items any rater left out are dropped; ``NaN``
    when no item is left."""
    matrix = _ratings_matrix(ratings)
    complete = ~np.isnan(matrix).any(axis=0)
    matrix = matrix[:, complete]
    if matrix.shape[1] == 0:
        return float("nan")
    values = np.asarray(categories, float)
    counts = np.stack([(matrix == v).sum(axis=0) for v in values], axis=1)
    if counts.sum() != matrix.size:
        raise ValidationError(f"ratings: values outside the categories {values.tolist()}")
    return fleiss_kappa(counts)


def krippendorff_alpha(ratings: Any, level: Literal["nominal", "ordinal", "interval"] = "nominal",
                       value_domain: Sequence[float] | None = None) -> float:
    """Krippendorff's α of ratings ``[raters, items]`` with ``NaN`` for missing (the ``krippendorff`` package).

    Items with fewer than two ratings carry no pairable values and are ignored. ``value_domain``: the ordered
    categories (for ordinal α, categories nobody used still shape the metric; default: the values observed).
    ``NaN`` when fewer than two pairable values exist or everyone used a single value.
    """
    import krippendorff

    matrix = _ratings_matrix(ratings)
    if level not in ("nominal", "ordinal", "interval"):
        raise ValidationError(f"level: expected 'nominal', 'ordinal' or 'interval', got {level!r}")
    pairable = (~np.isnan(matrix)).sum(axis=0) >= 2
    values = np.unique(matrix[:, pairable][~np.isnan(matrix[:, pairable])])
    if values.size < 2:
        return float("nan")
    domain = values if value_domain is None else np.asarray(value_domain, float)
    return float(krippendorff.alpha(reliability_data=matrix, level_of_measurement=level, value_domain=domain))


def borda_scores(first_index: Any, second_index: Any, labels: Any, num_items: int, skipped: Any = None) -> np.ndarray:
    """Each item's share of won comparisons (a tie counts half; skipped queries ignored), ``[num_items]``; ``NaN``
    for an item in no answered query."""
    i, j = _array(first_index, "first_index").astype(int), _array(second_index, "second_index").astype(int)
    y = preference_ratings(labels, skipped)
    if not (i.shape == j.shape == y.shape):
        raise ValidationError(f"second_index: expected first_index, second_index and labels of one shape [N], got "
                              f"{list(i.shape)}, {list(j.shape)}, {list(y.shape)}")
    if i.size and (min(i.min(), j.min()) < 0 or max(i.max(), j.max()) >= num_items):
        raise ValidationError(f"first_index: item indices must lie in [0, {num_items})")
    answered = ~np.isnan(y)
    wins, games = np.zeros(num_items), np.zeros(num_items)
    np.add.at(wins, i[answered], y[answered])
    np.add.at(wins, j[answered], 1 - y[answered])
    np.add.at(games, i[answered], 1.0)
    np.add.at(games, j[answered], 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(games > 0, wins / np.maximum(games, 1), np.nan)


def kendall_tau(scores: Any, true_scores: Any) -> float:
    """Kendall's τ-b between ``scores`` and ``true_scores`` (``scipy.stats.kendalltau``), over the entries where
    both are finite; ``NaN`` below two entries or when either side is constant."""
    x, y = _array(scores, "scores"), _array(true_scores, "true_scores")
    if x.shape != y.shape or x.ndim != 1:
        raise ValidationError(f"true_scores: expected the shape of scores [N], got {list(x.shape)}, {list(y.shape)}")
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 2 or np.ptp(x[keep]) == 0 or np.ptp(y[keep]) == 0:
        return float("nan")
    return float(stats.kendalltau(x[keep], y[keep]).statistic)


def preference_matrix(first_index: Any, second_index: Any, labels: Any, num_items: int,
                      skipped: Any = None) -> np.ndarray:
    """``P [M, M]``: ``P[a, b]`` the mean label "a preferred to b" over the answered queries between ``a`` and
    ``b`` (either order); ``NaN`` for pairs never answered; ``P[b, a] = 1 − P[a, b]``."""
    i, j = _array(first_index, "first_index").astype(int), _array(second_index, "second_index").astype(int)
    y = preference_ratings(labels, skipped)
    if not (i.shape == j.shape == y.shape):
        raise ValidationError("second_index: expected first_index, second_index and labels of one shape [N]")
    if i.size and (min(i.min(), j.min()) < 0 or max(i.max(), j.max()) >= num_items):
        raise ValidationError(f"first_index: item indices must lie in [0, {num_items})")
    if np.any(i == j):
        raise ValidationError("second_index: a query compares an item with itself")
    answered = ~np.isnan(y)
    total, count = np.zeros((num_items, num_items)), np.zeros((num_items, num_items))
    np.add.at(total, (i[answered], j[answered]), y[answered])
    np.add.at(total, (j[answered], i[answered]), 1 - y[answered])
    np.add.at(count, (i[answered], j[answered]), 1.0)
    np.add.at(count, (j[answered], i[answered]), 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def intransitive_triple_rate(first_index: Any, second_index: Any, labels: Any, num_items: int,
                             skipped: Any = None) -> dict[str, float]:
    """Cyclic triples among the triples whose three pairs all carry a strict preference.

    A pair's preference is the mean of its answered labels (:func:`preference_matrix`): strict when above or
    below ½, so ties, skipped and never-asked pairs leave a triple out. Returns ``rate`` (``NaN`` without any
    eligible triple), ``cyclic`` and ``eligible`` counts. Counted as ``trace(D³)/3`` cycles among
    ``trace(E³)/6`` triangles, ``D`` the strict-preference digraph and ``E`` its undirected support.
    """
    p = preference_matrix(first_index, second_index, labels, num_items, skipped)
    with np.errstate(invalid="ignore"):
        d = np.nan_to_num(p, nan=0.5) > 0.5
    e = (d | d.T).astype(float)
    d = d.astype(float)
    cyclic = float(np.trace(d @ d @ d) / 3.0)
    eligible = float(np.trace(e @ e @ e) / 6.0)
    return {"rate": cyclic / eligible if eligible > 0 else float("nan"), "cyclic": cyclic, "eligible": eligible}


def flip_rate(labels: Any, reference: Any, skipped: Any = None, reference_skipped: Any = None) -> float:
    """Fraction of disagreements on the queries both answered with a strict preference (``NaN`` if none): for a
    labeller that flips an oracle's label with probability ε, an estimate of ε."""
    a, b = preference_ratings(labels, skipped), preference_ratings(reference, reference_skipped)
    if a.shape != b.shape:
        raise ValidationError(f"reference: expected shape {list(a.shape)}, got {list(b.shape)}")
    strict = np.isin(a, (0.0, 1.0)) & np.isin(b, (0.0, 1.0))
    if not strict.any():
        return float("nan")
    return float((a[strict] != b[strict]).mean())


def agreement_with_reference(labels: Any, reference: Any, skipped: Any = None,
                             reference_skipped: Any = None) -> dict[str, float]:
    """A labeller against a reference (usually the truth) on the same queries.

    ``accuracy``: over queries the labeller answered and the reference labelled strictly, 1 for the same
    preference, ½ for a labeller tie, 0 for the opposite; ``flip_rate`` (:func:`flip_rate`); ``answered_rate``
    (1 − skip rate); ``tie_rate`` among answered; ``exact_agreement``: identical category (ties included) over
    queries both answered; ``cohen_kappa`` over the same.
    """
    a, b = preference_ratings(labels, skipped), preference_ratings(reference, reference_skipped)
    if a.shape != b.shape or a.size == 0:
        raise ValidationError(f"reference: expected a non-empty shape {list(a.shape)}, got {list(b.shape)}")
    answered = ~np.isnan(a)
    scored = answered & np.isin(b, (0.0, 1.0))
    accuracy = float((1.0 - np.abs(a[scored] - b[scored])).mean()) if scored.any() else float("nan")
    both = answered & ~np.isnan(b)
    return {
        "accuracy": accuracy,
        "flip_rate": flip_rate(a, b),
        "answered_rate": float(answered.mean()),
        "tie_rate": float((a[answered] == 0.5).mean()) if answered.any() else float("nan"),
        "exact_agreement": float((a[both] == b[both]).mean()) if both.any() else float("nan"),
        "cohen_kappa": cohen_kappa(a, b, CATEGORIES),
    }


def pairwise_cohen_kappa(ratings: Mapping[str, Any]) -> tuple[list[str], np.ndarray]:
    """Cohen's κ of every pair of raters (``ratings``: name → ``[N]`` with NaN missing); a symmetric matrix with
    ones on the diagonal (raters with no categories in common: NaN)."""
    names = list(ratings)
    matrix = np.ones((len(names), len(names)))
    for a in range(len(names)):
        for b in range(a + 1, len(names)):
            matrix[a, b] = matrix[b, a] = cohen_kappa(ratings[names[a]], ratings[names[b]], CATEGORIES)
    return names, matrix
