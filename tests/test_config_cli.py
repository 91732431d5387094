"""One typed config per command and experiment: the command line is generated from it (help, defaults, choices from
the registries), every source of a value goes through one validation path with the same message, and a failed start
leaves --out as it was."""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import pytest

from irl_bilevel.config import (
    Config,
    OneOf,
    PositiveFloat,
    PositiveInt,
    check_value,
    experiment_settings,
    section,
)
from irl_bilevel.config_cli import add_config_arguments, config_from_arguments, flag_name
from irl_bilevel.validation import ValidationError
from irlb import main as irlb_main
from irlb.main import COMMANDS, build_parser, main


# ---------------------------------------------------------------------- the config system
@dataclass(frozen=True)
class Inner(Config):
    rate: PositiveFloat = 0.5
    """how fast"""
    mode: Literal["a", "b"] = "a"
    """which mode"""


@dataclass(frozen=True, kw_only=True)
class Outer(Config):
    name: str
    """required text"""
    steps: PositiveInt = 3
    """how many steps"""
    flag: bool = False
    """a switch"""
    params: dict[str, float] = dataclasses.field(default_factory=dict)
    """free parameters"""
    sizes: tuple[int, ...] = (1, 2)
    """some sizes"""
    colour: Annotated[str, OneOf(lambda: ["red", "green"], "colour")] = "red"
    """a colour from a registry"""
    inner: Inner = section(Inner, prefix="inner_")
    nested: Inner = section(Inner)

    def validate(self) -> None:
        if self.flag and self.steps > 5:
            raise ValidationError(f"steps: at most 5 with flag, got {self.steps}")


def test_direct_construction_goes_through_the_type_checker_and_validate():
    assert Outer(name="x", sizes=[4]).sizes == (4,)  # a list becomes the declared tuple
    assert Inner(rate=1).rate == 1.0 and isinstance(Inner(rate=1).rate, float)
    with pytest.raises(ValidationError, match=r"^steps: expected int, got 2\.5 \(float\)$"):
        Outer(name="x", steps=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match=r"^flag: expected bool, got 'maybe' \(str\)$"):
        Outer(name="x", flag="maybe")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match=r"^steps: expected a positive integer, got 0$"):
        Outer(name="x", steps=0)
    with pytest.raises(ValidationError, match="colour: unknown colour 'blue'; expected one of"):
        Outer(name="x", colour="blue")
    with pytest.raises(ValidationError, match="steps: at most 5 with flag"):
        Outer(name="x", flag=True, steps=6)
    with pytest.raises(ValidationError, match="rate: expected a positive number, got nan"):
        Inner(rate=float("nan"))


def test_a_config_cannot_define_post_init():
    with pytest.raises(TypeError, match="validate"):
        @dataclass(frozen=True)
        class Broken(Config):
            value: int = 1

            def __post_init__(self) -> None:
                pass


def test_flattened_and_nested_sections_in_the_public_form():
    config = Outer.from_dict({"name": "x", "inner_rate": 2, "nested": {"mode": "b"}}, "cmd")
    assert config.inner == Inner(2.0, "a") and config.nested == Inner(0.5, "b")
    public = config.to_dict()
    assert public["inner_rate"] == 2.0 and public["nested"] == {"rate": 0.5, "mode": "b"} and "inner" not in public
    assert Outer.from_dict(public, "cmd") == config  # the public form round-trips
    with pytest.raises(ValidationError, match=r"^cmd\.inner_rate: expected a positive number, got -1\.0$"):
        Outer.from_dict({"name": "x", "inner_rate": -1.0}, "cmd")
    with pytest.raises(ValidationError, match=r"^cmd: missing key\(s\) \['name'\]$"):
        Outer.from_dict({}, "cmd")
    with pytest.raises(ValidationError, match=r"^cmd\.steps: at most 5 with flag, got 6$"):  # validate(), prefixed
        Outer.from_dict({"name": "x", "flag": True, "steps": 6}, "cmd")
    updated = config.updated({"params.gamma": 0.5, "inner_mode": "b", "nested.rate": 3})
    assert updated.params == {"gamma": 0.5} and updated.inner.mode == "b" and updated.nested.rate == 3.0
    assert [s.key for s in Outer.settings()] == ["name", "steps", "flag", "params", "sizes", "colour", "inner_rate",
                                                 "inner_mode", "nested.rate", "nested.mode"]


def test_a_flattened_section_may_not_shadow_a_field():
    @dataclass(frozen=True)
    class Clash(Config):
        rate: float = 1.0
        """clash"""
        inner: Inner = section(Inner, prefix="")

    with pytest.raises(TypeError, match="declared twice"):
        Clash.settings()


def _parse(config_class, argv, where="cmd"):
    parser = argparse.ArgumentParser(prog="cmd")
    add_config_arguments(parser, config_class)
    return config_from_arguments(parser.parse_args(argv), config_class, where)


def test_flags_are_generated_from_the_fields(tmp_path):
    config = _parse(Outer, ["--name", "x", "--steps", "4", "--flag", "--sizes", "5", "6", "--inner-rate", "2",
                            "--nested.mode", "b", "--params", '{"k": 1}', "--colour", "green"])
    assert (config.steps, config.flag, config.sizes, config.inner.rate, config.nested.mode, config.params,
            config.colour) == (4, True, (5, 6), 2.0, "b", {"k": 1.0}, "green")
    assert _parse(Outer, ["--name", "123"]).name == "123"  # a str setting takes the text as it is
    assert _parse(Outer, ["--name", "x", "--no-flag"]).flag is False
    assert _parse(Outer, ["--name", "x", "--sizes", "7,8"]).sizes == (7, 8)
    assert _parse(Outer, ["--name", "x", "--sizes", "[9]"]).sizes == (9,)
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"name": "file", "steps": 2}))
    # layers: defaults < --config < --set < flags
    config = _parse(Outer, ["--config", str(path), "--set", "steps=5", "--set", "flag=true"])
    assert (config.name, config.steps, config.flag) == ("file", 5, True)
    assert _parse(Outer, ["--config", str(path), "--set", "steps=5", "--steps", "1"]).steps == 1


def test_a_field_added_to_a_config_is_on_the_command_line_without_other_edits(monkeypatch, capsys, tmp_path):
    from irlb.tabular_irl import TabularIRLConfig

    @dataclass(frozen=True)
    class Extended(TabularIRLConfig):
        new_knob: PositiveInt = 7
        """a knob nobody declared on the command line"""

    commands = [dataclasses.replace(c, config=lambda: Extended) if c.name == "tabular-irl" else c for c in COMMANDS]
    monkeypatch.setattr(irlb_main, "COMMANDS", commands)
    with pytest.raises(SystemExit):
        main(["tabular-irl", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--new-knob INT a knob nobody declared on the command line" in text and "default: 7" in text
    args = build_parser().parse_args(["tabular-irl", "--out", str(tmp_path), "--new-knob", "9"])
    assert config_from_arguments(args, Extended, "tabular-irl").new_knob == 9
    assert main(["tabular-irl", "--out", str(tmp_path / "x"), "--new-knob", "2.5"]) == 2
    assert "tabular-irl.new_knob: expected int, got 2.5 (float)" in capsys.readouterr().err


# ---------------------------------------------------------------------- every command
def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("command", [c.name for c in COMMANDS])
def test_help_lists_every_setting_with_its_doc_and_default(command):
    spec = next(c for c in COMMANDS if c.name == command)
    config_class = spec.config()
    text = " ".join(_subparsers()[command].format_help().split())
    defaults = spec.shown_defaults() if spec.shown_defaults else {}
    for setting in config_class.settings():
        if not setting.cli:
            continue
        assert setting.doc, f"{config_class.__name__}.{setting.key} has no docstring"
        shown = setting.key if setting.positional else flag_name(setting.key)
        assert shown in text, f"{command}: {shown} missing from --help"
        assert " ".join(setting.doc.replace("``", "").split()[:6]).replace("%%", "%") in text, setting.key
        if setting.key in defaults:
            assert f"default: {defaults[setting.key]}" in text


def test_every_field_of_every_command_and_experiment_config_is_documented():
    from irlb.config import experiment_module, experiment_names

    classes = {spec.config() for spec in COMMANDS}
    classes |= {experiment_module(name).CONFIG for name in experiment_names()}
    undocumented = [f"{cls.__name__}.{s.key}" for cls in classes for s in cls.settings() if not s.doc]
    assert undocumented == []


def test_defaults_and_choices_come_from_the_configs_and_the_registries():
    from classic_rl.testbeds import TESTBEDS
    from irl_bilevel.hypergradients import HYPERGRADIENTS
    from irl_bilevel.losses import PREFERENCE_LOSSES
    from llm.training import PreferenceTrainingConfig, RLConfig

    helps = {name: " ".join(parser.format_help().split()) for name, parser in _subparsers().items()}
    # The drift of issue 30: --learning-rate defaulted to 5e-4 on the command line and to 1e-3 in the config.
    rate = PreferenceTrainingConfig().learning_rate
    assert f"AdamW learning rate; float (a positive number); default: {rate}" in helps["train-preferences"]
    assert f"AdamW learning rate; float (a positive number); default: {RLConfig().learning_rate}" in helps["rloo"]
    listed = {name for name in PREFERENCE_LOSSES if name in helps["train-preferences"]}
    listed |= {name for name in PREFERENCE_LOSSES if name in helps["train-reward-model"]}
    assert listed == set(PREFERENCE_LOSSES)  # every entry of the loss catalog, whatever its size
    for name in [*HYPERGRADIENTS, *TESTBEDS]:
        assert name in helps["tabular-irl"]


def _json(path: Path, value) -> str:
    path.write_text(json.dumps(value))
    return str(path)


# (command, arguments it needs, an int setting, a bool setting or None)
COMMAND_CASES = [
    ("tabular-irl", ["--out", "{out}"], "steps", "state_action_reward"),
    ("gym-irl", ["--out", "{out}"], "outer_steps", "normalize_reward"),
    ("preference-rl", ["--out", "{out}"], "query_budget", "termination_queries"),
    ("rewardbench", ["--model", "m", "--file", "f.jsonl"], "batch_size", "reference"),
    ("train-preferences", ["--model", "m", "--data", "d.jsonl", "--out", "{out}"], "steps", None),
    ("train-reward-model", ["--model", "m", "--data", "d.jsonl", "--out", "{out}"], "steps", "frozen_backbone"),
    ("rloo", ["--model", "m", "--prompts", "p.jsonl", "--reward-model", "r", "--out", "{out}"], "steps", None),
    ("agentic", ["--out", "{out}"], "seeds", "with_preferences"),
    ("reproduce", ["--results", "{out}"], "seed", "extended"),
    ("config", ["loss_sweep"], None, "types"),
    ("sweep", ["--out", "{out}", "--experiment", "loss_sweep"], "max_failures", None),
]


@pytest.mark.parametrize(("command", "arguments", "int_key", "bool_key"), COMMAND_CASES)
def test_a_float_for_an_int_and_maybe_for_a_bool_are_refused_by_every_source(tmp_path, capsys, command, arguments,
                                                                            int_key, bool_key):
    spec = next(c for c in COMMANDS if c.name == command)
    out = tmp_path / "out"
    base = [command, *(a.format(out=out) for a in arguments)]
    for key, value, expected in ((int_key, 2.5, "expected int, got 2.5 (float)"),
                                 (bool_key, "maybe", "expected bool, got 'maybe' (str)")):
        if key is None:
            continue
        sources = [[flag_name(key), str(value)]]
        if spec.sources:
            sources += [["--set", f"{key}={value}"],
                        ["--config", _json(tmp_path / "c.json", {key: value})]]
        for source in sources:
            assert main([*base, *source]) == 2, (command, source)
            assert capsys.readouterr().err.strip() == f"irlb: error: {command}.{key}: {expected}", (command, source)
    assert not out.exists()


def test_tabular_irl_steps_zero_is_a_clear_error(tmp_path, capsys):
    assert main(["tabular-irl", "--out", str(tmp_path / "run"), "--steps", "0"]) == 2
    assert capsys.readouterr().err.strip() == "irlb: error: tabular-irl.steps: expected a positive integer, got 0"
    assert not (tmp_path / "run").exists()


def _tree(root: Path) -> list[tuple[str, bytes]]:
    return sorted((str(p.relative_to(root)), p.read_bytes() if p.is_file() else b"<dir>") for p in root.rglob("*"))


def _failed_starts(tmp: Path) -> list[tuple[str, list[str]]]:
    """Per command, arguments that fail after --out was checked (a missing or bad input), so that a command which
    wrote before reading its inputs would change the folder."""
    missing = str(tmp / "inputs" / "missing")
    return [
        ("tabular-irl", ["tabular-irl", "--mdp-file", missing + ".npz", "--out", "{out}"]),
        ("tabular-irl", ["tabular-irl", "--testbed", "garnet", "--out", "{out}"]),  # garnet needs num_states
        ("gym-irl", ["gym-irl", "--demonstrations-file", missing + ".npz", "--out", "{out}"]),
        ("preference-rl", ["preference-rl", "--teacher", "mistake", "--teacher-options", '{"typo": 1}',
                           "--out", "{out}"]),
        ("train-preferences", ["train-preferences", "--model", missing, "--data", missing + ".jsonl", "--out",
                               "{out}"]),
        ("train-reward-model", ["train-reward-model", "--model", missing, "--data", missing + ".jsonl", "--out",
                                "{out}"]),
        ("rloo", ["rloo", "--model", missing, "--prompts", missing + ".jsonl", "--reward-model", missing,
                  "--out", "{out}"]),
        ("rewardbench", ["rewardbench", "--model", missing, "--file", missing + ".jsonl", "--out",
                         "{out}/result.json"]),
        ("agentic", ["agentic", "--model", missing, "--out", "{out}"]),
        ("reproduce", ["reproduce", "--scale", "tiny", "--only", "loss_gradient_weights", "--set",
                       "loss_gradient_weights.num_margins=2.5", "--results", "{out}", "--figures", "{out}"]),
        ("sweep", ["sweep", "--experiment", "loss_gradient_weights", "--grid", "no_such_key=[1,2]", "--out",
                   "{out}"]),
        ("merge-sweeps", ["merge-sweeps", missing + ".json", "--out", "{out}/merged.json"]),
        ("results", ["results", "--results", missing, "--page", "{out}/results.md", "--blocks", "{out}"]),
    ]


def test_every_command_has_a_failed_start_case():
    assert {name for name, _ in _failed_starts(Path("/tmp"))} >= {c.name for c in COMMANDS} - {"config", "testbeds",
                                                                                              "paper"}


@pytest.mark.parametrize("index", range(len(_failed_starts(Path("/tmp")))))
@pytest.mark.parametrize("state", ["missing", "empty", "user files"])
def test_a_failed_start_leaves_out_as_it_was(tmp_path, index, state, capsys):
    name, arguments = _failed_starts(tmp_path)[index]
    out = tmp_path / "out"
    if state != "missing":
        out.mkdir()
    if state == "user files":
        (out / "notes.txt").write_text("years of work")
        (out / "nested").mkdir()
        (out / "nested" / "table.csv").write_text("a,b\n1,2\n")
    before = _tree(tmp_path)
    assert main([a.replace("{out}", str(out)) for a in arguments]) == 2, name
    assert capsys.readouterr().err.startswith("irlb: error: ")
    assert _tree(tmp_path) == before, name


@pytest.mark.parametrize("command", ["tabular-irl", "gym-irl", "preference-rl", "train-preferences",
                                     "train-reward-model", "rloo", "agentic", "sweep", "paper"])
def test_an_out_that_is_a_file_is_refused_before_anything_is_read(tmp_path, command, capsys):
    out = tmp_path / "report.pdf"
    out.write_bytes(b"%PDF")
    needs = {"train-preferences": ["--model", "m", "--data", "d"],
             "train-reward-model": ["--model", "m", "--data", "d"],
             "rloo": ["--model", "m", "--prompts", "p", "--reward-model", "r"],
             "sweep": ["--experiment", "loss_gradient_weights"]}.get(command, [])
    assert main([command, *needs, "--out", str(out)]) == 2
    assert "report.pdf is a file" in capsys.readouterr().err
    assert out.read_bytes() == b"%PDF" and sorted(tmp_path.iterdir()) == [out]


def test_tabular_irl_resumes_its_own_run_refuses_others_and_overwrite_replaces_only_its_files(tmp_path, capsys):
    out = tmp_path / "run"
    arguments = ["tabular-irl", "--reward-model", "tabular", "--optimizer", "adam", "--lr", "0.5", "--steps", "4",
                 "--checkpoint-every", "2", "--occupancy-target", "null", "--out", str(out), "--quiet"]
    assert main(arguments) == 0
    record = json.loads((out / "config.json").read_text())
    assert record["command"] == "tabular-irl" and record["config"]["steps"] == 4
    metrics = (out / "metrics.jsonl").read_text()
    assert main(arguments) == 0  # the same settings resume (here: already finished) without --overwrite
    assert (out / "metrics.jsonl").read_text() == metrics
    (out / "mine.txt").write_text("kept")
    changed = [a if a != "0.5" else "0.25" for a in arguments]
    before = _tree(out)
    assert main(changed) == 2
    assert "different config (lr: 0.5 there, 0.25 here)" in capsys.readouterr().err and _tree(out) == before
    assert main([*changed, "--overwrite"]) == 0
    assert json.loads((out / "config.json").read_text())["config"]["lr"] == 0.25
    assert (out / "mine.txt").read_text() == "kept"
    gym_run = tmp_path / "gym"
    gym_run.mkdir()
    (gym_run / "config.json").write_text(json.dumps({"command": "gym-irl", "config": {}}))
    assert main(["tabular-irl", "--out", str(gym_run), "--overwrite"]) == 2
    assert "holds a gym-irl run, not a tabular-irl run" in capsys.readouterr().err


def test_merge_sweeps_and_rewardbench_do_not_replace_a_file_they_did_not_write(tmp_path, capsys):
    from irl_bilevel.runs import claim_output_file

    notes = tmp_path / "notes.json"
    notes.write_text('{"mine": 1}')
    with pytest.raises(ValidationError, match="already exists; pass --overwrite"):
        claim_output_file(notes, "merge-sweeps", marker_key="trials")
    with pytest.raises(ValidationError, match="is not a merge-sweeps output"):
        claim_output_file(notes, "merge-sweeps", overwrite=True, marker_key="trials")
    notes.write_text('{"trials": []}')
    claim_output_file(notes, "merge-sweeps", overwrite=True, marker_key="trials")
    assert notes.read_text() == '{"trials": []}'


# ---------------------------------------------------------------------- experiments read typed attributes
def test_experiments_get_their_typed_config_and_record_its_public_form(tmp_path):
    from irlb.experiments import loss_gradient_weights as experiment

    settings = experiment_settings(experiment.CONFIG, experiment.SCALES, "tiny", experiment.NAME)
    assert isinstance(settings, experiment.CONFIG) and settings.num_margins == experiment.SCALES["tiny"]["num_margins"]
    record = json.loads(experiment.run("tiny", tmp_path, progress=False).read_text())
    assert {k: record["config"][k] for k in settings.to_dict()} == settings.to_dict()


def test_check_value_is_the_one_checker_of_non_config_values():
    assert check_value(3, PositiveInt, "--threads") == 3
    with pytest.raises(ValidationError, match=r"^--threads: expected a positive integer, got 0$"):
        check_value(0, PositiveInt, "--threads")
