"""The label-noise study runs end to end at scale tiny, its losses get the flip rate, and its figure draws."""

from __future__ import annotations

import json

import pytest

from classic_rl.experiments import preference_noise
from irl_bilevel.validation import ValidationError


def test_robust_losses_are_told_the_flip_rate():
    assert preference_noise.noise_loss_options("bradley_terry", 0.2) == {}
    assert preference_noise.noise_loss_options("robust_bradley_terry", 0.2) == {"flip_rate": 0.2}
    assert preference_noise.noise_loss_options("smoothed_bradley_terry", 0.1) == {"label_smoothing": 0.1}
    assert preference_noise.noise_loss_options("robust_bradley_terry", 0.0) == {}  # ε = 0 is Bradley-Terry


def test_tiny_study_and_figure(tmp_path):
    from figures.preference_noise import plot

    path = preference_noise.run("tiny", tmp_path, seed=0, progress=False)
    record = json.loads(path.read_text())
    config = record["config"]
    assert len(record["runs"]) == len(config["losses"]) * len(config["mistake_rates"]) * config["seeds"]
    for loss in config["losses"]:
        assert set(record["summary"][loss]) == {str(rate) for rate in config["mistake_rates"]}
    files = plot(tmp_path, tmp_path / "figures")
    assert all(file.exists() for file in files)
    assert record["complete"] and "kept_runs_from" not in record

    # One more seed: the earlier runs are kept as they were, only the new seed's run, and the file says so.
    more = preference_noise.CONFIG.from_dict(config).updated({"seeds": config["seeds"] + 1})
    extended = json.loads(preference_noise.run("tiny", tmp_path, seed=0, progress=False, config=more).read_text())
    new_seed = config["seeds"]
    assert [r for r in extended["runs"] if r["seed"] != new_seed] == record["runs"]
    assert len([r for r in extended["runs"] if r["seed"] == new_seed]) == len(record["runs"]) // config["seeds"]
    assert extended["kept_runs_from"] == {"provenance": record["provenance"], "seeds": list(range(config["seeds"]))}
    # Other settings: nothing is kept.
    other = preference_noise.CONFIG.from_dict(config).updated({"query_budget": config["query_budget"] + 1})
    fresh = json.loads(preference_noise.run("tiny", tmp_path, seed=0, progress=False, config=other).read_text())
    assert "kept_runs_from" not in fresh and fresh["config"]["query_budget"] == config["query_budget"] + 1


def test_unknown_selection_is_rejected_before_any_run(tmp_path):
    config = preference_noise.CONFIG.from_dict(preference_noise.SCALES["tiny"]).updated({"selection": "best"})
    with pytest.raises(ValidationError, match="selection"):
        preference_noise.run("tiny", tmp_path, progress=False, config=config)
    assert not (tmp_path / "preference_noise.json").exists()
