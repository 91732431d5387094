"""The paper's tabular experiments at scale 'tiny' (seconds) and their figures, end to end."""

import math

import pytest

from classic_rl.experiments import hypergradient_accuracy, reward_recovery
from irl_bilevel.validation import ValidationError


def _load(path):
    import json

    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("results")
    reward_recovery.run("tiny", folder, seed=0, progress=False)
    hypergradient_accuracy.run("tiny", folder, seed=0, progress=False)
    return folder


@pytest.mark.parametrize("module", [reward_recovery, hypergradient_accuracy])
def test_unknown_scale_is_rejected(module, tmp_path):
    with pytest.raises(ValidationError, match="scale"):
        module.run("huge", tmp_path, progress=False)
    assert set(module.SCALES) == {"tiny", "quick", "full"}


def test_reward_recovery_numbers(results_dir):
    results = _load(results_dir / "reward_recovery.json")
    assert results["scale"] == "tiny" and results["provenance"]["seed"] == 0
    runs = results["runs"]
    for run in runs:
        size = results["testbeds"][run["testbed"]]["num_states"]
        assert len(run["recovered_reward"]) == size
        assert all(math.isfinite(v) for v in run["metrics"].values())
    grid_exact = [r for r in runs if r["testbed"] == "gridworld" and r["data"] == "exact_occupancy"]
    assert grid_exact
    for run in grid_exact:
        assert run["metrics"]["occupancy_l1"] <= 1e-3
        assert run["metrics"]["normalized_return"] >= 0.99
        assert run["metrics"]["epic"] <= 0.05
    for run in (r for r in runs if r["testbed"] == "objectworld" and r["data"] == "exact_occupancy"):
        assert run["metrics"]["occupancy_l1"] <= 1e-2
        assert run["metrics"]["normalized_return"] >= 0.95
    lp = [r for r in runs if r["algorithm"] == "lp_irl"]
    assert len(lp) == 1 and max(abs(v) for v in lp[0]["recovered_reward"]) <= 1.0 + 1e-9
    demos = [r for r in runs if r["data"] == "demonstrations"]
    assert demos and all(0 < r["metrics"]["occupancy_l1"] < 2 for r in demos)


def test_hypergradient_accuracy_numbers(results_dir):
    results = _load(results_dir / "hypergradient_accuracy.json")
    assert {case["case"] for case in results["cases"]} == {"discounted", "finite_horizon"}
    for case in results["cases"]:
        for mdp in case["mdps"]:
            methods = mdp["methods"]
            assert mdp["finite_differences"]["rel_error_exact"] <= 1e-6
            for name in ("implicit_direct", "implicit_normal_cg", "maxent_exact"):
                assert methods[name]["rel_error_fd"] <= 1e-6, name
            for name in ("unrolled_torchopt_warm", "unrolled_higher_cold", "implicit_neumann"):
                errors = methods[name]["rel_error_exact"]
                assert errors[-1] <= 1e-6 * max(errors[0], 1e-3), name
                tape = methods[name]["tape_bytes"]
                if name.startswith("unrolled"):
                    assert tape[-1] > 4 * tape[0]  # the tape grows with K
                else:
                    assert tape[-1] == tape[0]  # implicit: independent of K
            if case["case"] == "discounted":
                # The unrolled bias is bounded by C γ^K with a modest constant.
                assert methods["unrolled_higher_cold"]["max_error_over_gamma_k"] <= 2.0
            sampled = mdp["maxent_sampled"]["rel_error_exact"]
            assert sum(sampled[-1]) / len(sampled[-1]) < sum(sampled[0]) / len(sampled[0])


def test_figures(results_dir, tmp_path):
    from figures import hypergradient_accuracy as hypergradient_figure
    from figures import reward_recovery as reward_figure

    for module, name in ((reward_figure, "reward_recovery"), (hypergradient_figure, "hypergradient_accuracy")):
        paths = module.plot(results_dir, tmp_path)
        assert {p.name for p in paths} == {f"{name}.png", f"{name}.pdf"}
        assert all(p.exists() and p.stat().st_size > 10_000 for p in paths)
