"""The seed sweeps of the single-seed experiments (``irlb.experiments.seed_sweeps``), their figure and macros."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from classic_rl.experiments import feedback_consistency
from figures import seed_sweeps as figure
from irl_bilevel.validation import ValidationError
from irlb.experiments import seed_sweeps
from irlb.paper.experiment_tables import seed_sweep
from irlb.paper.macros import Macros
from irlb.sweep import lookup


def test_every_swept_path_names_a_number_of_the_committed_single_seed_results():
    # A typo in a path would silently summarize nothing (lookup gives None): check each against seed 0's file.
    for experiment, paths in seed_sweeps.METRICS.items():
        record = json.loads((Path(__file__).resolve().parent.parent / "results" / f"{experiment}.json").read_text())
        assert all(lookup(record, path) is not None for path in paths), experiment
    assert set(figure.PANELS) <= set(seed_sweeps.METRICS)
    for experiment, rows in figure.PANELS.items():
        assert {path for path, _ in rows} <= set(seed_sweeps.METRICS[experiment]), experiment


def test_a_tiny_seed_sweep_summarizes_each_seeds_own_run(tmp_path):
    config = seed_sweeps.SeedSweepsConfig.from_dict({**seed_sweeps.SCALES["tiny"],
                                                     "experiments": ["feedback_consistency"]}, "test")
    path = seed_sweeps.run("tiny", tmp_path / "results", seed=3, progress=False, config=config)
    record = json.loads(path.read_text())
    assert record["seeds"] == [3, 4] and record["files"] == ["seeds_feedback_consistency.json"]
    summary = json.loads((tmp_path / "results" / "seeds_feedback_consistency.json").read_text())
    (point,) = summary["grid_points"]
    assert point["n"] == 2 and point["seeds"] == [3, 4]
    direct = feedback_consistency.run("tiny", tmp_path / "direct", seed=4, progress=False)
    flip = lookup(json.loads(direct.read_text()), "table.mistake.flip_rate")
    assert point["extra_metrics"]["table.mistake.flip_rate"]["values"][1] == pytest.approx(flip)
    macros = Macros()
    assert seed_sweep(summary, macros, "test") == {}
    assert macros.values["SeedsFeedbackConsistencyNumSeeds"] == "2"
    assert "SeedsFeedbackConsistencyTableMistakeFlipRateIqm" in macros.values
    files = figure.plot(tmp_path / "results", tmp_path / "figures")
    assert [f.name for f in files] == ["seed_sweeps.png", "seed_sweeps.pdf"] and all(f.stat().st_size for f in files)
    # a metric the experiment does not produce at this scale has no values (best-of-16 at tiny scale): no bar
    point["extra_metrics"]["table.mistake.flip_rate"] = {"n": 0, "values": [], "iqm": None, "low": None, "high": None}
    (tmp_path / "results" / "seeds_feedback_consistency.json").write_text(json.dumps(summary))
    assert all(f.stat().st_size for f in figure.plot(tmp_path / "results", tmp_path / "figures"))


def test_an_experiment_without_a_seed_sweep_is_refused():
    with pytest.raises(ValidationError, match="no seed sweep"):
        seed_sweeps.sweep_spec("loss_sweep", "tiny", [0])
