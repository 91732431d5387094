"""The agentic reward-learning experiment at scale 'tiny' (seconds) and its figure, end to end."""

from __future__ import annotations

import json
import math

import pytest

from figures import agentic_reward_learning as figure
from irl_bilevel.validation import ValidationError
from llm.builtin_model import CACHE_ENV
from llm.experiments import agentic_reward_learning as experiment


def test_every_scale_validates_into_the_typed_config():
    assert set(experiment.SCALES) == {"tiny", "quick", "full"}
    for values in experiment.SCALES.values():
        config = experiment.CONFIG.from_dict(values)
        assert config.seeds >= 1 and set(config.envs) <= set(experiment.ENVS)
    quick = experiment.SCALES["quick"]
    assert quick["seeds"] >= 5 and set(quick["envs"]) == set(experiment.ENVS)
    assert sum(name.startswith("ta-") for name in quick["envs"]) >= 3  # three TextArena games
    with pytest.raises(ValidationError, match="transfer_updates"):
        experiment.run("tiny", ".", config=experiment.CONFIG.from_dict({**experiment.SCALES["tiny"],
                                                                          "transfer_updates": 0}))


def test_the_tiny_run_writes_every_condition_per_seed_and_its_figure(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))  # the tiny agentic model, built privately in seconds
    path = experiment.run("tiny", tmp_path, seed=3, progress=False)
    results = json.loads(path.read_text())  # strict JSON: no NaN reaches the file
    assert results["scale"] == "tiny" and results["provenance"]["seed"] == 3
    settings = experiment.SCALES["tiny"]
    assert "ta-frozenlake" in settings["envs"] and settings["baseline_envs"] == ["hanoi-3"]
    for env_name in settings["envs"]:
        entry = results["envs"][env_name]
        assert [row["seed"] for row in entry["seeds"]] == [3, 4]
        starts = entry["num_starts"]
        per_start = max(settings["eval_episodes_per_start"], -(-settings["eval_min_episodes"] // starts))
        assert entry["eval_episodes_per_start"] == per_start
        baselines = {"pref_scalar", "dpo"} if env_name in settings["baseline_envs"] else set()
        for row in entry["seeds"]:
            plans = {"learned_plans", "pref_plans", "sparse_plans"}  # no true_plans: the tiny scale has no true reward
            assert set(row["conditions"]) == {"untrained", "irl_inner", "learned", "sparse", "pref_learned"} | \
                baselines | plans
            for name in plans:  # a fresh adapter per reward, fine-tuned on that reward's search plans
                assert row["conditions"][name]["plans"] == round(row["search"][name.replace("_plans", "").replace(
                    "pref", "pref_learned")]["success_rate"] * starts)
                assert len(row["conditions"][name]["training"]) == (settings["distill_steps"]
                                                                     if row["conditions"][name]["plans"] else 0)
            for key in ("learned_identifiability", "preference_identifiability"):
                assert 0.0 <= row[key]["epic"] <= 1.0
            for name, result in row["conditions"].items():
                assert result["episodes"] == starts * per_start
                assert 0.0 <= result["success_rate"] <= 1.0 and 0.0 <= result["malformed_rate"] <= 1.0
                assert len(result["success_per_start"]) == starts
                if name in ("learned", "sparse", "pref_learned", "pref_scalar"):  # fresh adapters, frozen rewards
                    assert len(result["training"]) == settings["transfer_updates"]
            # Reward learning from preferences asked its budget (one refresh at the start of every outer step) ...
            preferences = row["preference_learning"]
            assert preferences["queries_used"] == min(settings["query_budget"],
                                                      settings["outer_steps"] * settings["queries_per_refresh"])
            assert len(preferences["outer_history"]) == settings["outer_steps"]
            # ... and DPO trained on exactly its decided pairs (none when every query tied).
            if baselines:
                dpo = row["conditions"]["dpo"]
                assert dpo["pairs"] == preferences["labelled_pairs"]
                assert len(dpo["training"]) == (settings["transfer_updates"] if dpo["pairs"] else 0)
            assert set(row["search"]) == {"true", "sparse", "learned", "pref_learned"} | (baselines & {"pref_scalar"})
            assert row["search"]["true"]["success_rate"] == 1.0  # A* on the true reward solves every start
            irl = row["conditions"]["irl_inner"]
            assert len(irl["outer_history"]) == settings["outer_steps"]
            assert irl["inner_updates"] == (settings["outer_steps"] + 1) * settings["irl_updates_per_solve"]
            # MaxEnt IRL moved the scales away from their start (all zero) and they are what the transfer used.
            assert row["learned_scales"] != settings["initial_scales"]
            assert row["learned_scales"] == irl["outer_history"][-1]["scales"]
        summary = entry["summary"]
        success = summary["learned"]["success_per_seed"]
        assert math.isclose(summary["learned"]["success_mean"], sum(success) / len(success))
        assert summary["learned"]["success_variance"] >= 0.0
        assert set(summary["comparisons"]) >= {"learned_minus_untrained_mean", "learned_beats_sparse_in_mean"}
        assert entry["search"]["true"]["plan_length_ratio_mean"] == 1.0  # and on a shortest plan
        # The goal check is the non-overlap of the IQM CIs, read off the summary.
        for name, other in experiment.GOAL_PAIRS:
            check = entry["goals"][f"{name}_beats_{other}"]
            assert check["met"] == (summary[name]["success_iqm"]["low"] > summary[other]["success_iqm"]["high"])
    assert results["acceptance"].keys() == set(settings["envs"]) == results["goals"].keys()
    assert set(results["across_games"]) == {"untrained", "irl_inner", "learned", "sparse", "pref_learned",
                                            "learned_plans", "pref_plans", "sparse_plans"}
    assert results["across_games"]["learned"]["tasks"] == len(settings["envs"])
    paths = figure.plot(tmp_path, tmp_path / "figures")
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 0 for p in paths)


def test_an_interrupted_run_resumes_from_its_finished_seeds(tmp_path, monkeypatch):
    """The file an interrupted run left (complete false) is resumed: finished (env, seed) entries are kept as they
    are; other settings start afresh."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    config = experiment.CONFIG.from_dict({**experiment.SCALES["tiny"], "envs": ["hanoi-3"], "seeds": 1,
                                          "with_preferences": False})
    path = experiment.run("tiny", tmp_path, seed=0, progress=False, config=config)
    finished = json.loads(path.read_text())
    marker = {**finished, "complete": False}
    marker["envs"]["hanoi-3"]["seeds"][0]["conditions"]["learned"]["success_rate"] = 0.123  # a value no run gives
    path.write_text(json.dumps(marker))
    resumed = json.loads(experiment.run("tiny", tmp_path, seed=0, progress=False, config=config).read_text())
    assert resumed["complete"] and resumed["resumed_from"] == finished["provenance"]
    assert resumed["envs"]["hanoi-3"]["seeds"][0]["conditions"]["learned"]["success_rate"] == 0.123
    other = experiment.CONFIG.from_dict({**config.to_dict(), "transfer_updates": 2})
    path.write_text(json.dumps(marker))
    fresh = json.loads(experiment.run("tiny", tmp_path, seed=0, progress=False, config=other).read_text())
    assert "resumed_from" not in fresh
    assert fresh["envs"]["hanoi-3"]["seeds"][0]["conditions"]["learned"]["success_rate"] != 0.123
