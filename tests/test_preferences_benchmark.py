"""The preferences-vs-imitation benchmark (``benchmarks/preferences_vs_imitation.py``) and its figure.

Its ``--smoke`` mode restricted to CartPole-v1 (1 seed, 2048 env steps, 20 queries, one process per cell) writes the
JSON the figure reads; a rerun skips finished cells. The absorbing wrapper imitation's CartPole side runs on keeps
the episode's true return. The summary math (IQM per budget, ratios, goals) is checked on hand-made records.
imitation is a benchmark-only install: without it the module is skipped.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("imitation")

from conftest import load_benchmark

from figures import preferences_vs_imitation as figure

ROOT = Path(__file__).resolve().parent.parent

bench = load_benchmark("preferences_vs_imitation")


def run_smoke(output: Path, work: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, str(ROOT / "benchmarks" / "preferences_vs_imitation.py"), "--smoke", "--envs",
               "CartPole-v1", "--output", str(output), "--work", str(work)]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("results")
    completed = run_smoke(folder / "preferences_vs_imitation.json", folder / "work")
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return folder


def test_smoke_run_records_both_methods_and_the_figure_draws_it(smoke_results, tmp_path):
    report = json.loads((smoke_results / "preferences_vs_imitation.json").read_text())
    assert report["scale"] == "smoke" and report["seeds"] == [0]
    assert sorted(cell["method"] for cell in report["cells"]) == ["imitation", "ours"]
    references = report["references"]["CartPole-v1"]
    assert references["expert"] > references["random"]
    for cell in report["cells"]:
        assert cell["budget"] == 20 and np.isfinite(cell["normalized_return"])
        assert cell["env_steps"] >= 2048
    ours = next(cell for cell in report["cells"] if cell["method"] == "ours")
    assert ours["queries_used"] == 20 and ours["env_steps"] == 2048
    assert report["git"]["commit"] and report["versions"]["imitation"] == "1.0.1"
    assert set(report["ratios"]["CartPole-v1"]) == {"20"}
    paths = figure.plot(smoke_results, tmp_path)
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 1000 for p in paths)


def test_a_rerun_skips_finished_cells(smoke_results):
    output = smoke_results / "preferences_vs_imitation.json"
    before = json.loads(output.read_text())["cells"]
    completed = run_smoke(output, smoke_results / "work")
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert json.loads(output.read_text())["cells"] == before  # same records: nothing was rerun


def test_absorbing_wrapper_keeps_the_true_return_and_a_fixed_horizon():
    import gymnasium as gym

    env = bench.absorbing_wrapper_class()(gym.make("CartPole-v1"), 500)
    observation, _ = env.reset(seed=0)
    assert observation.shape == (5,) and observation[-1] == 0
    total, steps, done = 0.0, 0, False
    while not done:
        observation, reward, terminated, truncated, _ = env.step(0)  # always push left: falls within ~10 steps
        total, steps, done = total + reward, steps + 1, terminated or truncated
        assert not terminated
    env.close()
    plain = gym.make("CartPole-v1")
    plain.reset(seed=0)
    plain_total, done = 0.0, False
    while not done:
        _, reward, terminated, truncated, _ = plain.step(0)
        plain_total, done = plain_total + reward, terminated or truncated
    plain.close()
    assert steps == 500 and total == plain_total < 50
    assert list(observation) == [0, 0, 0, 0, 1]


def test_summary_ratios_and_goals_on_hand_made_records():
    records = []
    for seed, (ours, theirs) in enumerate([(0.95, 0.5), (1.0, 0.6), (0.92, 0.4)]):
        for method, value in (("ours", ours), ("imitation", theirs)):
            records.append({"env_id": "CartPole-v1", "method": method, "teacher": "oracle", "budget": 100,
                            "seed": seed, "normalized_return": value})
    records.append({"env_id": "CartPole-v1", "method": "ours", "teacher": "mistake", "budget": 100, "seed": 0,
                    "normalized_return": 0.3})
    result = bench.summarize(records)
    row = result["ratios"]["CartPole-v1"]["100"]
    assert row["ours_iqm"] == pytest.approx(np.mean([0.92, 0.95, 1.0]))  # IQM of 3 values: their mean
    assert row["ratio"] == pytest.approx(row["ours_iqm"] / np.mean([0.4, 0.5, 0.6]))
    assert result["goals"]["CartPole-v1"] == {"ours_reaches_0.9_with_<=500_queries": True,
                                              "ours_>=_imitation_at_every_budget": True}
    assert result["summary"]["CartPole-v1"]["ours/mistake"]["100"]["iqm"] == pytest.approx(0.3)
