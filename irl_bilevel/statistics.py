"""Aggregate scores over seeds: interquartile mean (IQM) with bootstrap confidence intervals.

Following Agarwal et al. (2021), "Deep Reinforcement Learning at the Edge of the Statistical Precipice": report
the IQM (the mean of the middle half of the scores, robust to a few outlier seeds yet less noisy than the median)
with a percentile-bootstrap confidence interval; over several tasks, resample seeds *within* each task
(stratified bootstrap) so that every bootstrap sample holds every task.

The IQM here is ``scipy.stats.trim_mean(x, 0.25)``: it cuts ``floor(n / 4)`` values from each end, so below
four values it is the plain mean (rliable weights the boundary values fractionally instead; the two agree
whenever ``n`` is a multiple of 4). Non-finite values (NaN, ±inf: failed or undefined runs) are dropped and
counted out of ``n``; with no finite value left the result is NaN with ``n = 0``, not an error, so a
summary table can hold a metric that some method does not define.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.stats import trim_mean

from irl_bilevel.validation import ValidationError

IQM_TRIM = 0.25  # fraction cut from each end


def iqm(values: Sequence[float] | np.ndarray) -> float:
    """Interquartile mean of the finite entries of a 1-D array; NaN if there is none.

    >>> iqm([1.0, 2.0, 3.0, 4.0, 100.0])  # floor(5 / 4) = 1 value cut from each end: the mean of 2, 3, 4
    3.0
    """
    x = _finite_1d(values, "values")
    return float(trim_mean(x, IQM_TRIM)) if len(x) else float("nan")


def iqm_with_ci(values: Sequence[float] | np.ndarray, confidence: float = 0.95, resamples: int = 2_000,
                seed: int = 0) -> dict[str, float]:
    """IQM of ``values`` (``[n]``) with a percentile-bootstrap CI: ``{"iqm", "low", "high", "n"}``.

    Each of ``resamples`` bootstrap samples draws ``n`` values with replacement (numpy generator seeded
    with ``seed``, so the CI is reproducible); ``low``/``high`` are the ``(1 ± confidence) / 2`` quantiles
    of the resampled IQMs. With one value the CI collapses to it; with 3 seeds read the CI as a spread.

    >>> iqm_with_ci([0.5, 0.5, 0.5, 0.5])
    {'iqm': 0.5, 'low': 0.5, 'high': 0.5, 'n': 4}
    """
    _check_bootstrap(confidence, resamples)
    x = _finite_1d(values, "values")
    if len(x) == 0:
        return {"iqm": float("nan"), "low": float("nan"), "high": float("nan"), "n": 0}
    rng = np.random.default_rng(seed)
    boot = trim_mean(x[rng.integers(len(x), size=(resamples, len(x)))], IQM_TRIM, axis=1)
    tail = (1 - confidence) / 2
    return {"iqm": float(trim_mean(x, IQM_TRIM)), "low": float(np.quantile(boot, tail)),
            "high": float(np.quantile(boot, 1 - tail)), "n": len(x)}


def stratified_iqm_with_ci(scores: Mapping[Any, Sequence[float] | np.ndarray], confidence: float = 0.95,
                           resamples: int = 2_000, seed: int = 0) -> dict[str, float]:
    """IQM over the pooled runs of several tasks (or groups), with a stratified bootstrap CI.

    ``scores`` maps each task to its per-seed scores ``[n_task]`` (sizes may differ). The point estimate is
    the IQM of all finite scores pooled; each bootstrap sample redraws ``n_task`` scores with replacement
    inside every task and takes the IQM of the pooled draw (Agarwal et al. 2021, rliable's
    ``StratifiedBootstrap``). Tasks whose scores are all non-finite drop out; ``n`` counts the pooled
    finite scores and ``tasks`` the tasks that remain.
    """
    _check_bootstrap(confidence, resamples)
    if not isinstance(scores, Mapping):
        raise ValidationError(f"scores: expected a mapping of task -> scores, got {type(scores).__name__}")
    strata = [x for x in (_finite_1d(v, f"scores[{k!r}]") for k, v in scores.items()) if len(x)]
    if not strata:
        return {"iqm": float("nan"), "low": float("nan"), "high": float("nan"), "n": 0, "tasks": 0}
    rng = np.random.default_rng(seed)
    boot = np.concatenate([x[rng.integers(len(x), size=(resamples, len(x)))] for x in strata], axis=1)
    pooled = np.concatenate(strata)
    tail = (1 - confidence) / 2
    resampled = trim_mean(boot, IQM_TRIM, axis=1)
    return {"iqm": float(trim_mean(pooled, IQM_TRIM)), "low": float(np.quantile(resampled, tail)),
            "high": float(np.quantile(resampled, 1 - tail)), "n": len(pooled), "tasks": len(strata)}


def _finite_1d(values: Sequence[float] | np.ndarray, field: str) -> np.ndarray:
    try:
        x = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as error:
        raise ValidationError(f"{field}: expected a 1-D sequence of numbers") from error
    if x.ndim != 1:
        raise ValidationError(f"{field}: expected a 1-D sequence of numbers, got shape {list(x.shape)}")
    return x[np.isfinite(x)]


def _check_bootstrap(confidence: float, resamples: int) -> None:
    if not 0 < confidence < 1:
        raise ValidationError(f"confidence: expected a number in (0, 1), got {confidence!r}")
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 1:
        raise ValidationError(f"resamples: expected a positive integer, got {resamples!r}")
