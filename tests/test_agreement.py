"""Agreement and reliability measures (irl_bilevel.agreement) on textbook tables with published values, and the
feedback-consistency experiment and figure at scale 'tiny'."""

from __future__ import annotations

import json

import numpy as np
import pytest

from irl_bilevel import agreement
from irl_bilevel.validation import ValidationError

nan = np.nan

# Fleiss (1971), Table 1 as reproduced on Wikipedia's "Fleiss' kappa" page: 10 subjects, 14 raters, 5 categories.
FLEISS_1971 = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
               [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
# Krippendorff (2011), "Computing Krippendorff's alpha-reliability", section C: 4 observers, 12 units, missing data.
KRIPPENDORFF_2011 = [[1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
                     [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
                     [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
                     [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan]]


def test_fleiss_kappa_of_fleiss_1971():
    assert agreement.fleiss_kappa(FLEISS_1971) == pytest.approx(0.210, abs=5e-4)
    # hand computation: P̄ = 0.378, P̄_e = 0.213
    table = np.array(FLEISS_1971, float)
    p_bar = (((table ** 2).sum(1) - 14) / (14 * 13)).mean()
    p_e = ((table.sum(0) / 140) ** 2).sum()
    assert p_bar == pytest.approx(0.378, abs=5e-4) and p_e == pytest.approx(0.213, abs=5e-4)


def test_fleiss_from_ratings_drops_incomplete_items():
    ratings = np.array([[1, 0, 0.5, 1], [1, 0, 0.5, nan], [1, 1, 0.5, 0]])
    expected = agreement.fleiss_kappa([[0, 0, 3], [2, 0, 1], [0, 3, 0]])  # columns: 0, 0.5, 1
    assert agreement.fleiss_kappa_from_ratings(ratings) == pytest.approx(expected)


def test_krippendorff_alpha_of_krippendorff_2011():
    assert agreement.krippendorff_alpha(KRIPPENDORFF_2011, "nominal") == pytest.approx(0.743, abs=5e-4)
    assert agreement.krippendorff_alpha(KRIPPENDORFF_2011, "ordinal") == pytest.approx(0.815, abs=5e-4)
    assert agreement.krippendorff_alpha(KRIPPENDORFF_2011, "interval") == pytest.approx(0.849, abs=5e-4)


def test_krippendorff_nominal_equals_fleiss_up_to_the_small_sample_correction():
    rng = np.random.default_rng(0)
    ratings = rng.choice([0.0, 0.5, 1.0], size=(3, 400), p=[0.45, 0.1, 0.45])
    ratings[1] = np.where(rng.random(400) < 0.7, ratings[0], ratings[1])
    fleiss = agreement.fleiss_kappa_from_ratings(ratings)
    alpha = agreement.krippendorff_alpha(ratings, "nominal")
    # α = 1 − (1 − κ_F)·(nN − 1)/(nN) for complete data (Krippendorff 2011): nearly equal for nN = 1200
    assert alpha == pytest.approx(1 - (1 - fleiss) * (1199 / 1200), abs=1e-9)


def test_cohen_kappa_by_hand():
    # 50 items: yes/yes 20, A yes B no 5, A no B yes 10, no/no 15: p_o = 0.7, p_e = 0.5·0.6 + 0.5·0.4 = 0.5
    a = [1] * 20 + [1] * 5 + [0] * 10 + [0] * 15
    b = [1] * 20 + [0] * 5 + [1] * 10 + [0] * 15
    assert agreement.cohen_kappa(a, b) == pytest.approx(0.4)
    assert agreement.cohen_kappa([*a, nan], [*b, 1]) == pytest.approx(0.4)  # missing items are dropped
    assert agreement.cohen_kappa([1, 1], [1, 1]) == 1.0
    assert np.isnan(agreement.cohen_kappa([nan], [1]))
    names, matrix = agreement.pairwise_cohen_kappa({"a": np.array(a, float), "b": np.array(b, float)})
    assert names == ["a", "b"] and matrix[0, 1] == pytest.approx(0.4) and matrix[0, 0] == 1.0


def test_intransitive_triples():
    # items 0, 1, 2 in a cycle; items 1, 2, 3 ordered 1 ≻ 2 ≻ 3, 1 ≻ 3; pair (0, 3) tied: that triple is left out
    first, second = [0, 1, 2, 1, 2, 1, 0], [1, 2, 0, 2, 3, 3, 3]
    labels = [1, 1, 1, 1, 1, 1, 0.5]
    result = agreement.intransitive_triple_rate(first, second, labels, 4)
    assert result == {"rate": 0.5, "cyclic": 1.0, "eligible": 2.0}
    skipped = [False, False, True, False, False, False, False]
    assert agreement.intransitive_triple_rate(first, second, labels, 4, skipped)["eligible"] == 1.0
    assert np.isnan(agreement.intransitive_triple_rate([0], [1], [1], 2)["rate"])


def test_flip_rate_borda_and_kendall_tau():
    truth = np.array([1, 0, 1, 0.5, 1, 0, 1, 1])
    labels = np.array([1, 1, 0.5, 1, 0, 0, 1, 0])
    skipped = np.array([False] * 7 + [True])
    # strict on both and answered: queries 0, 1, 4, 5, 6 → disagreements at 1 and 4
    assert agreement.flip_rate(labels, truth, skipped) == pytest.approx(2 / 5)
    row = agreement.agreement_with_reference(labels, truth, skipped)
    # accuracy on answered & strict truth: 0,1,2,4,5,6 → 1, 0, ½, 0, 1, 1
    assert row["accuracy"] == pytest.approx(3.5 / 6)
    assert row["answered_rate"] == pytest.approx(7 / 8) and row["tie_rate"] == pytest.approx(1 / 7)
    scores = agreement.borda_scores([0, 1, 0], [1, 2, 2], [1, 1, 0.5], 4)
    np.testing.assert_allclose(scores[:3], [0.75, 0.5, 0.25])
    assert np.isnan(scores[3])
    assert agreement.kendall_tau(scores, [3, 2, 1, 0]) == pytest.approx(1.0)
    assert agreement.kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert np.isnan(agreement.kendall_tau([1, 1, 1], [1, 2, 3]))


@pytest.mark.parametrize(("call", "field"), [
    (lambda: agreement.fleiss_kappa([[1, 2], [3, 1]]), "counts"),
    (lambda: agreement.fleiss_kappa([[-1, 3]]), "counts"),
    (lambda: agreement.fleiss_kappa_from_ratings([[1.0, 0.3], [1.0, 0.0]]), "ratings"),
    (lambda: agreement.krippendorff_alpha([[1.0, 2.0]]), "ratings"),
    (lambda: agreement.krippendorff_alpha([[1.0], [2.0]], level="ratio"), "level"),
    (lambda: agreement.cohen_kappa([1, 0], [1, 0, 1]), "second"),
    (lambda: agreement.cohen_kappa([1, 0.3], [1, 0], agreement.CATEGORIES), "first"),
    (lambda: agreement.borda_scores([0, 5], [1, 2], [1, 0], 3), "first_index"),
    (lambda: agreement.preference_matrix([0], [0], [1], 2), "second_index"),
    (lambda: agreement.flip_rate([1, 0], [1]), "reference"),
    (lambda: agreement.preference_ratings([[1.0]]), "labels"),
])
def test_bad_inputs_name_the_field(call, field):
    with pytest.raises(ValidationError, match=rf"^{field}"):
        call()


def test_feedback_consistency_experiment_and_figure(tmp_path):
    from classic_rl.experiments import feedback_consistency as experiment
    from figures import feedback_consistency as figure

    assert set(experiment.SCALES) == {"tiny", "quick", "full"}
    with pytest.raises(ValidationError, match=r"^scale"):
        experiment.run("huge", tmp_path, progress=False)
    path = experiment.run("tiny", tmp_path, seed=0, progress=False)
    results = json.loads(path.read_text())
    assert results["scale"] == "tiny" and results["provenance"]["seed"] == 0
    table = results["table"]
    assert {"oracle", "stochastic", "mistake", "skip", "equal", "myopic", "reward_model"} <= set(table)
    assert table["oracle"]["accuracy"] == 1.0 and table["oracle"]["cohen_kappa"] == 1.0
    assert table["oracle"]["intransitive_rate"] == 0.0
    for row in table.values():
        assert 0.0 <= row["accuracy"] <= 1.0 and -1.0 <= row["kendall_tau"] <= 1.0
    kappa = np.array(results["pairwise_kappa"]["matrix"])
    np.testing.assert_allclose(kappa, kappa.T)
    again = json.loads(experiment.run("tiny", tmp_path / "again", seed=0, progress=False).read_text())
    assert again["table"] == results["table"]
    files = figure.plot(tmp_path, tmp_path / "figures")
    assert [f.name for f in files] == ["feedback_consistency.png", "feedback_consistency.pdf"]
    assert all(f.stat().st_size > 10_000 for f in files)
