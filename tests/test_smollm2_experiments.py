"""The real-model experiments at tiny scale, on SmolLM2's configuration scaled down with random weights
(``smollm2-tiny-random``: SmolLM2's tokenizer and chat template): every method runs, the record resumes per (seed,
method), the summary orders the methods with their intervals, and the figure draws."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def frontier_result(tmp_path_factory):
    from llm.experiments import smollm2_frontier

    folder = tmp_path_factory.mktemp("smollm2_frontier")
    path = smollm2_frontier.run("tiny", folder, progress=False)
    return folder, json.loads(path.read_text())


def test_every_method_of_every_seed_is_recorded_and_summarized(frontier_result):
    from llm.experiments import smollm2_frontier

    _, record = frontier_result
    config = smollm2_frontier.SmolLM2FrontierConfig.from_dict(smollm2_frontier.SCALES["tiny"])
    keys = [m.key for m in smollm2_frontier.methods(config)]
    assert record["complete"] and sorted(record["seeds"]) == ["0", "1"]
    for entry in record["seeds"].values():
        assert sorted(entry["runs"]) == sorted(keys)
        for run in entry["runs"].values():  # step 0 of every run is the reference point
            assert run["points"][0] == {"step": 0, **entry["reference"]}
        assert len(entry["pairs_hash"]) == 64
    table = record["summary"]["methods"]
    assert set(table) == {"reference", *keys, "best_of_2"}
    assert all(table[k]["seeds"] == 2 for k in keys)
    order = record["summary"]["order"]
    assert [row["iqm"] for row in order] == sorted((row["iqm"] for row in order), reverse=True)
    assert record["model"]["name"] == "smollm2-tiny-random" and record["seconds"] > 0


def test_a_rerun_with_more_seeds_trains_only_the_new_seed(frontier_result, monkeypatch, tmp_path):
    import shutil

    from llm.experiments import smollm2_frontier

    folder, record = frontier_result
    shutil.copy(folder / "smollm2_frontier.json", tmp_path / "smollm2_frontier.json")
    trained = []
    original = smollm2_frontier.train_preferences

    def counting(policy, data, pad, config, evaluate=None):
        trained.append(config.seed)
        return original(policy, data, pad, config, evaluate)

    monkeypatch.setattr(smollm2_frontier, "train_preferences", counting)
    config = smollm2_frontier.SmolLM2FrontierConfig.from_dict({**smollm2_frontier.SCALES["tiny"], "seeds": 3})
    path = smollm2_frontier.run("tiny", tmp_path, progress=False, config=config)
    again = json.loads(path.read_text())
    assert set(trained) == {2}  # seeds 0 and 1 were kept
    assert again["seeds"]["0"]["runs"] == record["seeds"]["0"]["runs"]
    assert again["seconds"] > record["seconds"]  # time adds up over segments


def test_the_figure_draws(frontier_result, tmp_path):
    from figures.smollm2_frontier import plot

    folder, _ = frontier_result
    assert all(path.stat().st_size > 0 for path in plot(folder, tmp_path))
