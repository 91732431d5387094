"""IQM with bootstrap confidence intervals (irl_bilevel.statistics) against hand-computed values."""

import math

import numpy as np
import pytest

from irl_bilevel.statistics import iqm, iqm_with_ci, stratified_iqm_with_ci
from irl_bilevel.validation import ValidationError


def test_iqm_of_one_to_eight_is_the_mean_of_the_middle_half():
    # 8 values: cut 2 from each end, mean of 3, 4, 5, 6.
    assert iqm(np.arange(1, 9)) == 4.5
    assert iqm([100.0, 1, 2, 3, 4, 5, 6, -100.0]) == 3.5  # outliers in the cut quarters do not matter
    assert iqm([1.0, 2.0, 9.0]) == 4.0  # below 4 values: the plain mean


def test_iqm_with_ci_contains_the_iqm_and_is_deterministic():
    values = [0.1, 0.5, 0.2, 0.9, 0.4, 0.3, 0.8, 0.7]
    summary = iqm_with_ci(values, seed=3)
    assert summary["iqm"] == pytest.approx(np.mean([0.3, 0.4, 0.5, 0.7]))
    assert summary["n"] == 8 and summary["low"] < summary["iqm"] < summary["high"]
    assert 0.1 <= summary["low"] and summary["high"] <= 0.9
    assert iqm_with_ci(values, seed=3) == summary
    assert iqm_with_ci(values, seed=4) != summary  # the seed drives the resampling
    narrow = iqm_with_ci(values, confidence=0.5, seed=3)
    assert summary["low"] <= narrow["low"] <= narrow["high"] <= summary["high"]


def test_constant_values_give_a_point_interval():
    assert iqm_with_ci([2.0, 2.0, 2.0]) == {"iqm": 2.0, "low": 2.0, "high": 2.0, "n": 3}


def test_non_finite_values_are_dropped_and_empty_gives_nan():
    assert iqm_with_ci([1.0, float("nan"), 3.0, float("inf")])["n"] == 2
    for empty in ([], [float("nan")]):
        summary = iqm_with_ci(empty)
        assert summary["n"] == 0 and all(math.isnan(summary[k]) for k in ("iqm", "low", "high"))
    assert math.isnan(iqm([]))


def test_bad_arguments_raise_validation_errors():
    with pytest.raises(ValidationError, match="confidence"):
        iqm_with_ci([1.0, 2.0], confidence=1.5)
    with pytest.raises(ValidationError, match="resamples"):
        iqm_with_ci([1.0, 2.0], resamples=0)
    with pytest.raises(ValidationError, match="1-D"):
        iqm_with_ci([[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(ValidationError, match="scores"):
        stratified_iqm_with_ci([1.0, 2.0])


def test_stratified_bootstrap_keeps_every_task_in_every_sample():
    # Two tasks on very different scales: an unstratified resample may draw mostly one task's scores and
    # swing the IQM towards 0 or 100; resampling within each task keeps 4 scores of each in every sample, so
    # the middle half is always the top 2 of "hard" and the bottom 2 of "easy": between 50 and 53.
    scores = {"easy": [100.0, 101.0, 102.0, 103.0], "hard": [0.0, 1.0, 2.0, 3.0]}
    summary = stratified_iqm_with_ci(scores, seed=0)
    assert summary["iqm"] == pytest.approx(np.mean([2.0, 3.0, 100.0, 101.0]))
    assert summary["n"] == 8 and summary["tasks"] == 2
    assert summary["low"] <= summary["iqm"] <= summary["high"]
    assert 50.0 <= summary["low"] and summary["high"] <= 53.0
    assert iqm_with_ci(scores["easy"] + scores["hard"], seed=0)["low"] < 50.0  # unstratified: wider
    assert stratified_iqm_with_ci(scores, seed=0) == summary
    assert stratified_iqm_with_ci({"a": [float("nan")], "b": [1.0, 1.0]})["tasks"] == 1
    assert stratified_iqm_with_ci({"a": []})["n"] == 0


def test_loss_sweep_reexports_the_core_function():
    from classic_rl.experiments import loss_sweep

    assert loss_sweep.iqm_with_ci is iqm_with_ci
