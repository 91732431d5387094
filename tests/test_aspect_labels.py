"""The scalar-vs-per-aspect-labels experiment: config validation at every scale, named errors, the tiny scale end to
end (JSON + figure), and properties of its numbers that could fail."""

from __future__ import annotations

import json

import pytest

from classic_rl.experiments import aspect_labels as experiment
from figures import aspect_labels as figure
from irl_bilevel.validation import ValidationError


@pytest.mark.parametrize("scale", ["tiny", "quick", "full"])
def test_every_scale_validates(scale):
    config = experiment.CONFIG.from_dict(experiment.SCALES[scale], experiment.NAME)
    assert json.dumps(config.to_dict(), sort_keys=True) == json.dumps(experiment.SCALES[scale], sort_keys=True)
    assert set(config.teachers) <= set(experiment.TEACHERS)


@pytest.mark.parametrize(("change", "message"), [
    ({"budget": [10]}, r"^aspect_labels: unknown key\(s\) \['budget'\]"),
    ({"budgets": [25, 10]}, r"^aspect_labels\.budgets: expected strictly increasing"),
    ({"budgets": [0, 10]}, r"^aspect_labels\.budgets: expected strictly increasing query counts >= 1"),
    ({"budgets": []}, r"^aspect_labels\.budgets"),
    ({"budgets": "ten"}, r"^aspect_labels\.budgets: expected tuple\[int, \.\.\.\]"),
    ({"budgets": [10, 2.5]}, r"^aspect_labels\.budgets\[1\]: expected int"),
    ({"teachers": ["oracle", "sloppy"]}, r"^aspect_labels\.teachers: expected some of"),
    ({"aspect_weights": [1.0, 0.5]}, r"^aspect_labels\.aspect_weights"),
    ({"aspect_weights": [1.0, -0.5, 0.5]}, r"^aspect_labels\.aspect_weights: expected finite weights >= 0"),
    ({"mistake_rate": 1.5}, r"^aspect_labels\.mistake_rate"),
    ({"num_colours": 1}, r"^aspect_labels\.num_colours"),
    ({"segment_length": 40}, r"^aspect_labels\.segment_length"),
    ({"num_items": 1}, r"^aspect_labels\.num_items"),
    ({"l2": -1.0}, r"^aspect_labels\.l2"),
])
def test_bad_settings_name_the_field(change, message):
    with pytest.raises(ValidationError, match=message):
        experiment.CONFIG.from_dict({**experiment.SCALES["tiny"], **change}, experiment.NAME)


def test_unknown_scale_and_wrong_config_type(tmp_path):
    with pytest.raises(ValidationError, match=r"^scale: unknown scale 'huge'"):
        experiment.run("huge", tmp_path, progress=False)
    with pytest.raises(ValidationError, match=r"^config: expected a AspectLabelsConfig"):
        experiment.run("tiny", tmp_path, progress=False, config={"budgets": [1]})  # type: ignore[arg-type]


def test_tiny_scale_end_to_end(tmp_path):
    path = experiment.run("tiny", tmp_path, seed=0, progress=False)
    results = json.loads(path.read_text())
    config = results["config"]
    assert results["name"] == "aspect_labels" and results["scale"] == "tiny"
    assert results["provenance"]["seed"] == 0
    cells = len(config["teachers"]) * len(config["budgets"]) * len(experiment.METHODS) * config["seeds"]
    assert len(results["runs"]) == cells
    for run in results["runs"]:
        per_query = 3 if run["method"] == "per_aspect" else 1
        assert run["labels"] == per_query * run["queries"] == per_query * run["budget"]
        assert 0.0 <= run["epic"] <= 1.0 and 0.0 <= run["test_accuracy"] <= 1.0
        assert ("head_scales" in run) == (run["method"] != "scalar")
    for teacher in config["teachers"]:
        for method in experiment.METHODS:
            for metric in experiment.METRICS:
                series = results["summary"][teacher][method][metric]
                assert [c["budget"] for c in series] == config["budgets"]
                assert all(c["n"] == config["seeds"] and c["low"] <= c["iqm"] <= c["high"] for c in series)

    # Property 1 (exact): for state-only rewards EPIC is sqrt((1 − ρ)/2) with ρ the Pearson correlation over
    # uniformly drawn states, and least squares on [φ, 1] maximizes ρ over all rewards linear in φ (plus a
    # constant); every learned reward is such a linear reward, so none may beat the least-squares fit of its world.
    floor = {w["seed"]: w["linear_fit"]["epic"] for w in results["worlds"]}
    assert all(run["epic"] >= floor[run["seed"]] - 1e-9 for run in results["runs"])

    # Property 2: noiseless per-aspect labels at the largest budget (100 queries × 3 labels for 32 weights per head)
    # learn a reward much closer to the truth than an unrelated one. EPIC √½ ≈ 0.71 is an uncorrelated reward; the
    # bound 0.45 asks for a correlation ρ = 1 − 2·0.45² ≈ 0.6 with the true reward over states, and the policy of
    # the learned reward to recover at least 90% of the soft-optimal return over the uniform policy.
    largest = max(config["budgets"])
    oracle = [r for r in results["runs"]
              if r["teacher"] == "oracle" and r["method"] == "per_aspect" and r["budget"] == largest]
    assert len(oracle) == config["seeds"]
    assert all(r["epic"] < 0.45 for r in oracle), [r["epic"] for r in oracle]
    assert all(r["normalized_return"] > 0.9 for r in oracle), [r["normalized_return"] for r in oracle]

    again = json.loads(experiment.run("tiny", tmp_path / "again", seed=0, progress=False).read_text())
    assert again["runs"] == results["runs"]  # deterministic given the seed

    files = figure.plot(tmp_path, tmp_path / "figures")
    assert [f.name for f in files] == ["aspect_labels.png", "aspect_labels.pdf"]
    assert all(f.stat().st_size > 10_000 for f in files)
