"""The feedback study (teachers, query selection, harder testbed): configs validate, bad names are refused naming
the field, the tiny scale runs end to end and draws its figure, and rerun_part replaces one part only."""

from __future__ import annotations

import json
import re
import typing

import pytest

from classic_rl import preference_rl
from classic_rl.experiments import preference_feedback
from irl_bilevel.config import scale_config
from irl_bilevel.validation import ValidationError


@pytest.mark.parametrize("scale", list(preference_feedback.SCALES))
def test_every_scale_validates(scale):
    config = scale_config(preference_feedback.CONFIG, preference_feedback.SCALES, scale, preference_feedback.NAME)
    assert set(config.teachers) <= set(preference_rl.TEACHERS)
    assert set(config.selections) <= set(preference_rl.SELECTIONS)
    assert config.harder.env_id != config.env_id  # the harder testbed is another env


def test_name_lists_match_the_preference_rl_module():
    # The config's Literal types must offer exactly what run_preference_rl accepts.
    assert typing.get_args(preference_feedback.TeacherName) == preference_rl.TEACHERS
    assert set(typing.get_args(preference_feedback.SelectionName)) == set(preference_rl.SELECTIONS)


@pytest.mark.parametrize(("key", "value", "field"), [
    ("teachers", ["oracle", "telepathic"], "teachers[1]"),
    ("selections", ["uniform", "random"], "selections[1]"),
    ("teacher_selection", "greedy", "teacher_selection"),
    ("budgets", [10, 0], "budgets"),
])
def test_bad_settings_raise_naming_the_field(key, value, field):
    values = {**preference_feedback.SCALES["tiny"], key: value}
    with pytest.raises(ValidationError, match=re.escape(f"preference_feedback.{field}:")):
        scale_config(preference_feedback.CONFIG, {"x": values}, "x", preference_feedback.NAME)


def test_unknown_harder_env_is_refused():
    values = {**preference_feedback.SCALES["tiny"]}
    values["harder"] = {**values["harder"], "env_id": "NoSuchEnv-v0"}
    with pytest.raises(ValidationError, match=r"harder\.env_id"):
        scale_config(preference_feedback.CONFIG, {"x": values}, "x", preference_feedback.NAME)


def test_tiny_study_and_figure(tmp_path):
    from figures.preference_feedback import plot

    path = preference_feedback.run("tiny", tmp_path, seed=0, progress=False)
    record = json.loads(path.read_text())
    config = record["config"]
    teacher_runs = [r for r in record["runs"] if r["part"] == "teachers"]
    assert len(teacher_runs) == len(config["teachers"]) * len(config["budgets"]) * config["seeds"]
    assert {r["queries_used"] for r in teacher_runs} == set(config["budgets"])  # every budget is spent exactly
    # the oracle/disagreement run at the selection budget exists in both parts and is made once
    reused = [r for r in record["runs"] if r["reused"]]
    assert [(r["part"], r["selection"], r["budget"]) for r in reused] == [("selections", "disagreement", 4)]
    assert {r["env_id"] for r in record["runs"] if r["part"] == "harder"} == {config["harder"]["env_id"]}
    assert set(record["references"]) == {config["env_id"], config["harder"]["env_id"]}
    for teacher in config["teachers"]:
        assert set(record["summary"]["teachers"][teacher]) == {str(b) for b in config["budgets"]}
        for cell in record["summary"]["teachers"][teacher].values():
            assert cell["n"] == config["seeds"] and cell["low"] <= cell["iqm"] <= cell["high"]
    assert set(record["summary"]["selections"]) == set(config["selections"])
    assert set(record["summary"]["harder"]) == {str(b) for b in config["harder"]["budgets"]}
    files = plot(tmp_path, tmp_path / "figures")
    assert [f.suffix for f in files] == [".png", ".pdf"] and all(f.stat().st_size > 0 for f in files)
    assert {r["termination_queries"] for r in record["runs"] if r["part"] == "harder"} == {True}
    assert {r["termination_queries"] for r in record["runs"] if r["part"] != "harder"} == {False}

    # rerun_part: only the harder part's runs, summary and config change; what they replace is kept
    tiny = scale_config(preference_feedback.CONFIG, preference_feedback.SCALES, "tiny", preference_feedback.NAME)
    without = tiny.updated({"harder.termination_queries": False})
    assert preference_feedback.rerun_part("tiny", tmp_path, "harder", seed=0, progress=False, config=without) == path
    merged = json.loads(path.read_text())
    assert merged["config"]["harder"]["termination_queries"] is False
    assert [r for r in merged["runs"] if r["part"] != "harder"] == [r for r in record["runs"] if r["part"] != "harder"]
    assert merged["summary"]["teachers"] == record["summary"]["teachers"]
    assert {r["termination_queries"] for r in merged["runs"] if r["part"] == "harder"} == {False}
    (rerun,) = merged["reruns"]
    assert rerun["part"] == "harder" and rerun["replaced"]["config"] == config["harder"]
    assert rerun["replaced"]["runs"] == [r for r in record["runs"] if r["part"] == "harder"]
    assert rerun["provenance"]["seed"] == 0 and rerun["seconds"] > 0
    # settings outside the part, another seed or part, or no result file: refused before anything runs
    with pytest.raises(ValidationError, match=r"outside 'harder'.*budgets"):
        preference_feedback.rerun_part("tiny", tmp_path, "harder", progress=False,
                                       config=tiny.updated({"budgets": [4]}))
    with pytest.raises(ValidationError, match="seed"):
        preference_feedback.rerun_part("tiny", tmp_path, "harder", seed=1, progress=False)
    with pytest.raises(ValidationError, match="part"):
        preference_feedback.rerun_part("tiny", tmp_path, "teachers", progress=False)
    with pytest.raises(ValidationError, match="results_dir"):
        preference_feedback.rerun_part("tiny", tmp_path / "empty", "harder", progress=False)
