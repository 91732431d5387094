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


def test_interrupted_extension_keeps_every_earlier_run(tmp_path, monkeypatch):
    """Adding a seed and stopping after the first new run leaves a file with all earlier runs plus the new one; the
    rerun trains only the runs still missing (training replaced by a stub that records what it was asked)."""
    import classic_rl.preference_rl as preference_rl

    trained: list[tuple[str, int]] = []

    def fake_run(config, folder, progress=False):
        if len(trained) == stop_after[0]:
            raise KeyboardInterrupt
        trained.append((config.loss, config.seed))
        return {"final_normalized_return": 0.5 + config.seed / 10, "label_agreement": 1.0}

    monkeypatch.setattr(preference_rl, "run_preference_rl", fake_run)
    stop_after = [10**6]
    config = preference_noise.CONFIG.from_dict(preference_noise.SCALES["tiny"])
    first = json.loads(preference_noise.run("tiny", tmp_path, progress=False, config=config).read_text())
    assert len(trained) == len(first["runs"]) == 4

    more = config.updated({"seeds": 2})
    trained.clear()
    stop_after[0] = 1
    with pytest.raises(KeyboardInterrupt):
        preference_noise.run("tiny", tmp_path, progress=False, config=more)
    partial = json.loads((tmp_path / "preference_noise.json").read_text())
    assert not partial["complete"]
    assert [r for r in partial["runs"] if r["seed"] == 0] == first["runs"]  # none lost, though not reached
    assert len([r for r in partial["runs"] if r["seed"] == 1]) == 1

    trained.clear()
    stop_after[0] = 10**6
    final = json.loads(preference_noise.run("tiny", tmp_path, progress=False, config=more).read_text())
    assert final["complete"] and len(final["runs"]) == 8 and len(trained) == 3
    assert all(seed == 1 for _, seed in trained)


def test_unknown_selection_is_rejected_before_any_run(tmp_path):
    config = preference_noise.CONFIG.from_dict(preference_noise.SCALES["tiny"]).updated({"selection": "best"})
    with pytest.raises(ValidationError, match="selection"):
        preference_noise.run("tiny", tmp_path, progress=False, config=config)
    assert not (tmp_path / "preference_noise.json").exists()
