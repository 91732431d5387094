import json
import subprocess
import sys

import numpy as np
import pytest

from irlb.main import main


@pytest.mark.parametrize("command", [[], ["tabular-irl"], ["reproduce"], ["paper"], ["testbeds"]])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: irlb" in capsys.readouterr().out


def test_console_script_is_installed():
    result = subprocess.run([sys.executable, "-m", "irlb.main", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "tabular-irl" in result.stdout


def test_tabular_irl_on_the_gridworld_writes_its_outputs(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["tabular-irl", "--testbed", "gridworld", "--reward-model", "tabular", "--steps", "30",
                 "--out", str(out), "--quiet"]) == 0
    for name in ("config.json", "metrics.jsonl", "summary.json", "reward.npy", "checkpoint.pt"):
        assert (out / name).exists(), name
    reward = np.load(out / "reward.npy")
    assert reward.shape == (25,)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final_metrics"]["occupancy_l1"] <= 1e-3
    assert summary["final_metrics"]["normalized_return"] >= 0.99
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["testbed"] == "gridworld" and "versions" in config and "git_commit" in config


def test_lp_irl_from_the_command_line(tmp_path):
    out = tmp_path / "lp"
    assert main(["tabular-irl", "--testbed", "gridworld", "--algorithm", "lp", "--set", "lp_l1_penalty=4.5",
                 "--out", str(out), "--quiet"]) == 0
    assert int(np.load(out / "reward.npy").argmax()) == 4  # the upper-right corner of the 5×5 grid


def test_unknown_config_keys_are_errors(tmp_path, capsys):
    assert main(["tabular-irl", "--out", str(tmp_path), "--set", "stepz=3"]) == 2
    assert "unknown key(s) ['stepz']" in capsys.readouterr().err
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"learning_rate": 0.1}))
    assert main(["tabular-irl", "--out", str(tmp_path / "x"), "--config", str(config)]) == 2
    assert "learning_rate" in capsys.readouterr().err
    assert main(["tabular-irl", "--out", str(tmp_path / "y"), "--testbed", "mazeworld"]) == 2
    assert "mazeworld" in capsys.readouterr().err


def test_rerunning_a_folder_resumes_and_a_changed_config_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    arguments = ["tabular-irl", "--testbed", "gridworld", "--reward-model", "tabular", "--optimizer", "adam",
                 "--lr", "0.5", "--steps", "6", "--set", "checkpoint_every=2", "--set", "occupancy_target=null",
                 "--out", str(out), "--quiet"]
    assert main(arguments) == 0
    first = (out / "metrics.jsonl").read_text().splitlines()
    assert len(first) == 6
    assert main(arguments) == 0  # already finished: resumes at step 6 and stops
    assert (out / "metrics.jsonl").read_text().splitlines() == first
    changed = [a if a != "0.5" else "0.25" for a in arguments]
    assert main(changed) == 2
    assert "different config" in capsys.readouterr().err


def test_reproduce_runs_the_extended_experiments_only_when_asked():
    from irl_bilevel.validation import ValidationError
    from irlb.registry import EXPERIMENTS, EXTENDED, selected_experiments

    assert set(EXTENDED) <= set(EXPERIMENTS)
    default = selected_experiments()
    assert default and not set(default) & set(EXTENDED)
    assert selected_experiments(extended=True) == list(EXPERIMENTS)
    assert selected_experiments(["agentic_shaping"]) == ["agentic_shaping"]
    with pytest.raises(ValidationError, match="--only: unknown experiment"):
        selected_experiments(["no_such_experiment"])
