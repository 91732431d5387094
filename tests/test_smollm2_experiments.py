"""The real-model experiments at tiny scale, on SmolLM2's configuration scaled down with random weights
(``smollm2-tiny-random``: SmolLM2's tokenizer and chat template): every method runs, the record resumes per (seed,
method), the summary orders the methods with their intervals, and the figure draws."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import run_tiny_experiment

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def frontier_result(tmp_path_factory):
    return run_tiny_experiment("llm.experiments.smollm2_frontier", tmp_path_factory)


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


def test_the_paper_reads_the_parameter_count_of_a_named_model_and_skips_a_folder(frontier_result):
    from irlb.paper.experiment_tables import smollm2_frontier
    from irlb.paper.macros import Macros

    _, record = frontier_result
    macros = Macros()
    model = record["model"]  # the tiny variant's provision record, shaped like the real model's
    smollm2_frontier(record, macros, "smollm2_frontier.json")
    assert macros.numbers["SmParameters"] == model["weights"]["parameters"] > 0
    folder = Macros()
    smollm2_frontier({**record, "model": {"name": "/a/local/folder"}}, folder, "smollm2_frontier.json")
    assert "SmParameters" not in folder.numbers


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


@pytest.fixture(scope="module")
def feedback_result(tmp_path_factory):
    return run_tiny_experiment("llm.experiments.smollm2_ai_feedback", tmp_path_factory)


def test_every_evaluator_labels_every_query_and_dpo_trains_on_each_labelling(feedback_result):
    from llm.experiments import smollm2_ai_feedback

    _, record = feedback_result
    assert record["complete"]
    for entry in record["seeds"].values():
        agreement = entry["agreement"]
        assert set(smollm2_ai_feedback.QUESTIONS) <= set(agreement)
        overall = agreement["overall"]
        assert {"judge", "reward_model", "teacher_oracle", "teacher_mistake", "teacher_skip"} <= set(overall)
        assert overall["teacher_oracle"]["accuracy"] == 1.0  # the oracle teacher is the gold labelling
        assert 0.0 <= overall["judge"]["position_bias"] <= 1.0
        assert overall["fleiss_kappa"]["raters"] == [r for r in overall["cohen_kappa"]["raters"] if r != "gold"]
        assert set(entry["dpo"]) == set(smollm2_ai_feedback.LABEL_SOURCES)
        assert entry["mistake_rate"] == overall["judge"]["flip_rate"]
    summary = record["summary"]
    assert set(summary["dpo"]) == set(smollm2_ai_feedback.LABEL_SOURCES)
    assert summary["overall"]["judge"]["accuracy"]["n"] == 2


def test_matched_kl_interpolates_each_run_at_the_smallest_final_kl():
    from llm.experiments.smollm2_ai_feedback import matched_kl

    def run(points):
        return {"points": [{"kl": kl, "reward/sentiment": s, "reward/total": s} for kl, s in points]}

    matched = matched_kl({"a": run([(0.0, 0.0), (1.0, 0.5), (2.0, 1.0)]),
                          "b": run([(0.0, 0.0), (0.5, 0.2), (1.5, 0.4), (1.2, 0.3)])})  # b's KL dips at the end
    assert matched["kl"] == 1.2
    assert matched["a"]["reward/sentiment"] == pytest.approx(0.6)
    assert matched["b"]["reward/sentiment"] == pytest.approx(0.2 + 0.2 * (1.2 - 0.5) / 1.0)  # running max of KL


def test_a_chat_judge_reads_the_verdict_as_the_first_answer_token():
    from llm.judges import LanguageModelJudge
    from llm.models import load_causal_lm

    model, tokenizer = load_causal_lm("smollm2-tiny-random")
    judge = LanguageModelJudge(model, tokenizer, "{prompt} A: {first} B: {second}", verdicts=("A", "B"), chat=True)
    scores = judge.verdict_scores(["x"], ["good"], ["bad"])
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": "x A: good B: bad"}],
                                             add_generation_prompt=True, tokenize=False)
    ids = tokenizer(rendered + "A", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, -2].double()
    a, b = (tokenizer(verdict, add_special_tokens=False)["input_ids"][0] for verdict in ("A", "B"))
    expected = torch.log_softmax(logits, -1)[a] - torch.log_softmax(logits, -1)[b]
    assert float(scores[0]) == pytest.approx(float(expected), abs=1e-4)


def test_the_feedback_figure_draws(feedback_result, tmp_path):
    from figures.smollm2_ai_feedback import plot

    folder, _ = feedback_result
    assert all(path.stat().st_size > 0 for path in plot(folder, tmp_path))
