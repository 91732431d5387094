"""The IRL-vs-imitation benchmark (``benchmarks/irl_vs_imitation.py``) and its figure.

The benchmark's ``--smoke`` mode (1 seed, CartPole-v1, 4096 env steps per method, about 40 s alone on 2 cores)
writes the JSON the figure script reads; a second invocation resumes it without rerunning a cell. The scoring
and summary math (first crossing of 0.9, score at half the budget, ratios, the goal check) is checked on
hand-made curves. imitation is a benchmark-only install: without it the module is skipped.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("imitation")

from conftest import load_benchmark

from figures import irl_vs_imitation as figure
from irl_bilevel.validation import ValidationError

ROOT = Path(__file__).resolve().parent.parent

bench = load_benchmark("irl_vs_imitation")


def run_smoke(output: Path) -> subprocess.CompletedProcess:
    """The benchmark's own smoke mode, as a user runs it (one process per cell)."""
    command = [sys.executable, str(ROOT / "benchmarks" / "irl_vs_imitation.py"), "--smoke", "--output", str(output)]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("results")
    completed = run_smoke(folder / "irl_vs_imitation.json")
    assert completed.returncode == 0, completed.stderr[-3000:]
    return folder


def test_smoke_run_records_every_cell_and_the_figure_draws_it(smoke_results, tmp_path):
    report = json.loads((smoke_results / "irl_vs_imitation.json").read_text())
    assert report["scale"] == "smoke" and report["seeds"] == [0]
    assert set(report["cells"]) == {f"CartPole-v1/{m}/0" for m in bench.METHODS}
    reference = report["references"]["CartPole-v1"]
    assert reference["expert_return"] > reference["random_return"]
    budget, every = 4096, bench.rollout_steps("CartPole-v1")
    for method in ("ours", "airl", "gail"):
        cell = report["cells"][f"CartPole-v1/{method}/0"]
        assert cell["env_steps"][-1] == budget, method  # every method spends exactly the budget
        assert all(step % every == 0 for step in cell["env_steps"])
        assert len(cell["normalized_return"]) == len(cell["true_return"])
        assert math.isfinite(cell["transfer_normalized_return"]) and cell["train_s"] > 0
        assert 0.0 <= cell["epic_distance"] <= 1.0, method
    assert report["cells"]["CartPole-v1/bc/0"]["env_steps"] == [0]
    reference = report["cells"]["CartPole-v1/true_reward/0"]  # PPO on the true reward: AIRL's schedule, no transfer
    assert reference["env_steps"] == report["cells"]["CartPole-v1/airl/0"]["env_steps"]
    assert reference["transfer_normalized_return"] is None and reference["train_s"] > 0
    assert math.isfinite(report["summary"]["CartPole-v1"]["true_reward_at_transfer_budget"]["iqm"])
    assert report["git"]["commit"] and report["versions"]["imitation"] == "1.0.1"
    assert "goal_met" in report["summary"] and "ours_over_airl" in report["summary"]["CartPole-v1"]["ratios"]

    paths = figure.plot(smoke_results, tmp_path)
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 1000 for p in paths)


def test_a_rerun_resumes_without_redoing_cells(smoke_results):
    output = smoke_results / "irl_vs_imitation.json"
    before = json.loads(output.read_text())["cells"]
    completed = run_smoke(output)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "resuming" in completed.stdout and "5 cells done" in completed.stdout
    assert "every cell already done" in completed.stdout  # not even the demonstrations are recomputed
    assert json.loads(output.read_text())["cells"] == before


def test_a_different_protocol_is_refused_and_bad_arguments_are_named(tmp_path):
    output = tmp_path / "run.json"
    output.write_text(json.dumps({"protocol": {"scale": "other"}, "cells": {}}))
    with pytest.raises(ValidationError, match="different protocol"):
        bench.main(["--smoke", "--output", str(output)])
    with pytest.raises(ValidationError, match="--testbeds"):
        bench.main(["--smoke", "--testbeds", "NoSuchEnv-v0", "--output", str(output)])
    with pytest.raises(ValidationError, match="--seeds"):
        bench.main(["--smoke", "--seeds", "0", "--output", str(output)])


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
