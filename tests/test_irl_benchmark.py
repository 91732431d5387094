"""The IRL-vs-imitation benchmark (``benchmarks/irl_vs_imitation.py``) and its figure.

The benchmark's ``--smoke`` mode (1 seed, CartPole-v1, 4096 env steps per method, about 40 s alone on 2 cores)
writes the JSON the figure script reads; a second invocation resumes it without rerunning a cell. The scoring
and summary math is checked without imitation in ``tests/test_irl_benchmark_summary.py``. imitation is a
benchmark-only install: without it this module is skipped.
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
