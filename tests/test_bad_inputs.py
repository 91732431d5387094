"""Every bad input gets ``irlb: error: ...`` and exit status 2, naming the file or field, and changes nothing
(issue 28).

The corpus lives in ``tests/bad_inputs.py`` (one family of cases per test below; ``python tests/bad_inputs.py``
prints the same outcomes as a table). Each case asserts: exit status 2 (a library loader: a ``ValidationError``), an
``irlb: error:`` line naming what the case lists (file, line, array or field), no traceback, and the case's folder
(inputs, run folders, the out folder) unchanged in names and bytes. Cases that another change fixes carry
``needs=...`` and are expected to fail until it is merged (``xfail(strict=True)``: an unexpected pass fails, so the
tag is removed with the merge).
"""

from __future__ import annotations

import json

import bad_inputs
import pytest
from bad_inputs import DATA_SAFETY, Artifacts, Case, cases_of, run_case


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> Artifacts:
    """The good inputs the cases copy and break, built once per session (a tiny LM, run folders, data files)."""
    return Artifacts(tmp_path_factory.mktemp("bad_input_artifacts"))


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No case may reach the hub (the loaders are asked about local folders only)."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def params(family: str) -> list:
    return [pytest.param(case, id=case.name, marks=marks(case)) for case in cases_of(family)]


def marks(case: Case) -> list:
    if case.needs is None:
        return []
    expected = [pytest.mark.xfail(strict=True, reason=f"fixed by the {case.needs} change (see tests/bad_inputs.py)")]
    # slow: until the change is merged the command accepts the input and trains (10-60 s each)
    return expected + ([pytest.mark.slow] if case.slow else [])


def check(case: Case, artifacts: Artifacts, tmp_path) -> None:
    outcome = run_case(case, artifacts, tmp_path / "case")
    assert outcome.status == "ok", f"{case.id}: {outcome.describe()}"


@pytest.mark.parametrize("case", params("missing_file"))
def test_missing_files_are_named(case, artifacts, tmp_path):
    check(case, artifacts, tmp_path)


@pytest.mark.parametrize("case", params("empty_file"))
def test_empty_files_are_named(case, artifacts, tmp_path):
    check(case, artifacts, tmp_path)


@pytest.mark.parametrize("case", params("truncated_file"))
def test_truncated_files_are_named(case, artifacts, tmp_path):
    check(case, artifacts, tmp_path)


@pytest.mark.parametrize("case", params("random_bytes"))
def test_files_of_random_bytes_are_named(case, artifacts, tmp_path):
    check(case, artifacts, tmp_path)


@pytest.mark.parametrize("case", params("wrong_json_types"))
def test_json_of_the_wrong_shape_or_types_is_named(case, artifacts, tmp_path):
    check(case, artifacts, tmp_path)


@pytest.mark.parametrize("case", params("npz_arrays"))
def test_bad_npz_arrays_are_named(case, artifacts, tmp_path):
    check(case, artifacts, tmp_path)


@pytest.mark.parametrize("case", params("run_folder"))
def test_damaged_run_folder_files_are_named_with_how_to_recover(case, artifacts, tmp_path):
    check(case, artifacts, tmp_path)


@pytest.mark.parametrize("case", params("chat_messages"))
def test_bad_chat_messages_are_named(case, artifacts, tmp_path):
    check(case, artifacts, tmp_path)


@pytest.mark.parametrize("case", params("jsonl_lines"))
def test_bad_lines_and_rows_are_named(case, artifacts, tmp_path):
    check(case, artifacts, tmp_path)


@pytest.mark.parametrize("case", params("out_folder"))
def test_bad_output_places_are_refused_before_anything_is_written(case, artifacts, tmp_path):
    check(case, artifacts, tmp_path)


@pytest.mark.parametrize("case", params("numeric_settings"))
def test_bad_numbers_and_booleans_are_named(case, artifacts, tmp_path):
    check(case, artifacts, tmp_path)


@pytest.mark.parametrize("case", params("unknown_names"))
def test_unknown_names_are_named(case, artifacts, tmp_path):
    check(case, artifacts, tmp_path)


def test_the_corpus_covers_every_command_and_family():
    """At least 250 cases, every family of issue 28, every command of ``irlb --help`` and every loader users call."""
    from irlb.main import build_parser

    assert len(bad_inputs.CASES) >= 250
    assert set(bad_inputs.families()) >= {"missing_file", "empty_file", "truncated_file", "random_bytes",
                                          "wrong_json_types", "npz_arrays", "run_folder", "chat_messages",
                                          "jsonl_lines", "out_folder", "numeric_settings", "unknown_names"}
    commands = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    covered = {case.name.split()[0] for case in bad_inputs.CASES} | {label.split()[0] for label, _, _ in DATA_SAFETY}
    assert commands - {"testbeds"} <= covered, sorted(commands - covered)
    loaders = ("load_mdp_npz", "load_demonstrations_npz", "gym_irl.load_demonstrations", "load_reward_model",
               "load_checkpoint", "read_preference_file", "load_causal_lm", "load_adapter", "load_text_reward_model",
               "load_rewardbench_file")
    assert all(any(case.name.startswith(loader) for case in bad_inputs.CASES) for loader in loaders)
    ids = [case.id for case in bad_inputs.CASES]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("label, build, needs", [
    pytest.param(label, build, needs, id=label, marks=marks(Case("data_safety", label, build, (), needs)))
    for label, build, needs in DATA_SAFETY])
def test_a_folder_of_user_files_survives_every_command_pointed_at_it(label, build, needs, artifacts, tmp_path):
    """The user's folder (a LaTeX file, a JSON file, a config.json of their own, a subfolder of notes) given as the
    output folder, an output file inside it, or an input: the command refuses with exit status 2, and every file is
    still there with its bytes."""
    case = Case("data_safety", label, lambda context: build(context, context.user_folder()), ())
    outcome = run_case(case, artifacts, tmp_path / "case")
    assert outcome.status == "ok", f"{label}: {outcome.describe()}"


def test_gym_demonstrations_without_returns_load(tmp_path):
    """``returns`` is optional in a gymnasium demonstrations archive (only the expert-return report reads it)."""
    import numpy as np

    from classic_rl.npz_io import load_rollout_demonstrations_npz

    path = tmp_path / "demos.npz"
    np.savez(path, observations=np.zeros((2, 3, 4), np.float32), actions=np.array([[0, 1, 0], [1, 1, 0]]),
             lengths=np.array([3, 2]))
    demonstrations = load_rollout_demonstrations_npz(path)
    assert demonstrations.returns is None and demonstrations.num_actions == 2
    assert demonstrations.terminated is not None and not bool(demonstrations.terminated.any())


def test_gym_irl_runs_on_demonstrations_without_returns(artifacts, tmp_path, capsys):
    """Issue 28: demonstrations without the optional ``returns`` failed with "expected an SB3 model/policy with
    predict() or a callable, got NoneType"."""
    from irlb.main import main

    context = bad_inputs.Context(tmp_path, artifacts)
    demos = bad_inputs.gym_demos(context, drop=("returns",))
    assert main(bad_inputs.gym(context, demos=demos)) == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["final_normalized_return"] is None and summary["expert_return"] is None
    assert "returns" in summary["notes"][0]


def test_a_resume_checks_the_checkpoint_entries_and_the_metrics_rows(tmp_path):
    """What the solver's resume asks of the loaders: the checkpoint's entries, and a metrics row for every step the
    checkpoint has run (a file that lost rows would make the history start late without a word)."""
    import torch

    from irl_bilevel.runs import load_checkpoint, read_metrics, save_checkpoint, write_metrics
    from irl_bilevel.validation import ValidationError

    save_checkpoint(tmp_path / "checkpoint.pt", {"step": torch.tensor(2)})
    assert load_checkpoint(tmp_path / "checkpoint.pt", required=("step",))["step"] == 2
    with pytest.raises(ValidationError, match=r"checkpoint\.pt lacks \['optimizer'\].*delete it to restart"):
        load_checkpoint(tmp_path / "checkpoint.pt", required=("step", "optimizer"))
    write_metrics(tmp_path / "metrics.jsonl", [{"step": 1, "loss": 0.5}, {"step": 2, "loss": 0.25}, {"step": 3}])
    assert [row["step"] for row in read_metrics(tmp_path / "metrics.jsonl", through_step=2)] == [1, 2]
    write_metrics(tmp_path / "metrics.jsonl", [{"step": 2, "loss": 0.25}])
    with pytest.raises(ValidationError, match=r"metrics\.jsonl holds 1 row\(s\) for the 2 step"):
        read_metrics(tmp_path / "metrics.jsonl", through_step=2)
    with pytest.raises(ValidationError, match="holds 0 row"):
        read_metrics(tmp_path / "missing.jsonl", through_step=1)
    assert read_metrics(tmp_path / "missing.jsonl") == []
