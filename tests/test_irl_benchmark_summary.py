"""The IRL-vs-imitation benchmark's scoring and summary on hand-made curves (first crossing of 0.9, score at half
the budget, ratios, the goal check, the decidability gate) and its figure: no imitation needed, so this runs in
CI; the benchmark's own runs are in ``tests/test_irl_benchmark.py``."""

from __future__ import annotations

import json
import math

import pytest
from conftest import load_benchmark

from figures import irl_vs_imitation as figure

bench = load_benchmark("irl_vs_imitation")


def _cell(steps: list[int], returns: list[float], transfer: float | None, train_s: float) -> dict:
    return {"env_steps": steps, "true_return": returns, "transfer_true_return": transfer, "train_s": train_s}


def test_scores_ratios_and_goal_on_hand_made_curves(tmp_path):
    assert bench.first_crossing([2, 4, 6], [0.5, 0.95, 0.8]) == 4
    assert bench.first_crossing([2, 4], [0.1, 0.2]) is None
    assert bench.score_at([2, 4, 6], [0.1, 0.2, 0.3], 5) == 0.2 and math.isnan(bench.score_at([4], [0.1], 2))

    proto = bench.protocol("smoke", ["CartPole-v1"], 2, 10)
    reference = {"random_return": 0.0, "expert_return": 100.0}
    cells = {}
    for seed in (0, 1):
        cells[f"CartPole-v1/ours/{seed}"] = _cell([2048, 4096], [95.0, 100.0], 90.0, 2.0)
        cells[f"CartPole-v1/airl/{seed}"] = _cell([2048, 4096], [10.0, 50.0], 0.0, 4.0)
        cells[f"CartPole-v1/gail/{seed}"] = _cell([2048, 4096], [60.0, 90.0], 60.0, 1.0)
        cells[f"CartPole-v1/bc/{seed}"] = _cell([0], [100.0], None, 0.5)
        cells[f"CartPole-v1/true_reward/{seed}"] = _cell([2048, 4096], [30.0 + seed, 100.0], None, 1.0)
    for cell in cells.values():
        bench.score_cell(cell, reference, 4096)
    assert cells["CartPole-v1/ours/0"]["env_steps_to_target"] == 2048
    assert cells["CartPole-v1/ours/0"]["half_budget_normalized_return"] == pytest.approx(0.95)
    assert cells["CartPole-v1/airl/0"]["env_steps_to_target"] is None
    report = {"protocol": json.loads(json.dumps(proto)), "cells": cells, "scale": "smoke", "git": {}}
    summary = bench.summarize(report)
    entry = summary["CartPole-v1"]
    assert entry["ratios"]["ours_over_airl"]["final_normalized_return"] == pytest.approx(2.0)
    assert entry["ratios"]["ours_over_gail"]["train_s"] == pytest.approx(2.0)
    assert entry["ratios"]["ours_over_airl"]["env_steps_to_target"] is None  # AIRL never reached 0.9
    assert entry["goal"]["transfer_vs_airl"] == {"difference": pytest.approx(0.9), "met": True}
    # the smoke transfer budget is 2048 steps: the reference's evaluation there (IQM of 0.30 and 0.31)
    assert entry["true_reward_at_transfer_budget"]["iqm"] == pytest.approx(0.305)
    assert summary["goal_met"]  # ours at 2048 steps (0.95) >= AIRL (0.5) and GAIL (0.9) at 4096
    reference_only = {key: cell for key, cell in cells.items() if "/true_reward/" in key}
    assert bench.summarize({**report, "cells": reference_only})["goal_met"] is None  # not evaluated, not "not met"

    report["summary"] = summary
    (tmp_path / "irl_vs_imitation.json").write_text(json.dumps(report))
    assert all(p.exists() for p in figure.plot(tmp_path, tmp_path / "figures"))


def test_a_testbed_whose_true_reward_reference_misses_the_target_is_not_decidable():
    proto = bench.protocol("smoke", ["CartPole-v1"], 1, 10)
    reference = {"random_return": 0.0, "expert_return": 100.0}
    cells = {"CartPole-v1/ours/0": _cell([2048, 4096], [5.0, 10.0], 0.0, 2.0),
             "CartPole-v1/airl/0": _cell([2048, 4096], [20.0, 30.0], 0.0, 4.0),
             "CartPole-v1/gail/0": _cell([2048, 4096], [20.0, 30.0], 0.0, 1.0),
             "CartPole-v1/true_reward/0": _cell([2048, 4096], [0.0, 50.0], None, 1.0)}
    for cell in cells.values():
        bench.score_cell(cell, reference, 4096)
    report = {"protocol": json.loads(json.dumps(proto)), "cells": cells, "scale": "smoke", "git": {}}
    summary = bench.summarize(report)
    entry = summary["CartPole-v1"]
    assert entry["decidable"] is False  # the true reward itself reaches 0.5 < 0.9 at the budget
    assert {name: check["met"] for name, check in entry["goal"].items()} == {
        "return_at_half_budget_vs_airl": None, "return_at_half_budget_vs_gail": None, "transfer_vs_airl": None}
    assert entry["goal"]["return_at_half_budget_vs_airl"]["ours_at_half_budget"] == pytest.approx(0.05)
    assert summary["goal_met"] is None  # nothing decidable: not evaluated, not "not met"
    cells["CartPole-v1/true_reward/0"] = _cell([2048, 4096], [0.0, 95.0], None, 1.0)
    bench.score_cell(cells["CartPole-v1/true_reward/0"], reference, 4096)
    decided = bench.summarize(report)
    assert decided["CartPole-v1"]["decidable"] is True and decided["goal_met"] is False


def test_quick_scale_leaves_out_the_testbed_no_quick_budget_decides():
    assert "MountainCar-v0" not in bench.DEFAULT_TESTBEDS["quick"]
    assert bench.DEFAULT_TESTBEDS["full"] == list(bench.TESTBEDS) and bench.SEEDS["quick"] >= 5
