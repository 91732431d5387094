"""Typed experiment configs: scales, JSON files and key=value overrides, unknown keys and wrong types."""

import json
from dataclasses import FrozenInstanceError, dataclass

import pytest

from irl_bilevel.config import Config, parse_overrides
from irl_bilevel.validation import ValidationError
from irlb.config import experiment_config, experiment_module, experiment_names, reproduce_configs
from irlb.main import main


@dataclass(frozen=True)
class Section(Config):
    size: int
    widths: tuple[int, ...]


@dataclass(frozen=True)
class Example(Config):
    name: str
    rate: float
    section: Section
    optional: Section | None
    mode: str | None = None
    extra: dict[str, int] | None = None


BASE = {"name": "a", "rate": 0.5, "section": {"size": 3, "widths": [8, 8]}, "optional": None}


def test_from_dict_converts_and_to_dict_round_trips():
    config = Example.from_dict({**BASE, "rate": 1})
    assert config.rate == 1.0 and isinstance(config.rate, float)  # an int is accepted for a float
    assert config.section == Section(3, (8, 8))
    assert config.to_dict() == {**BASE, "rate": 1.0, "mode": None, "extra": None}
    with pytest.raises(FrozenInstanceError):
        config.rate = 2.0  # type: ignore[misc]


@pytest.mark.parametrize(("change", "message"), [
    ({"rate": "fast"}, r"example\.rate: expected float, got 'fast' \(str\)"),
    ({"rate": True}, r"example\.rate: expected float"),
    ({"section": {"size": 3.5, "widths": []}}, r"example\.section\.size: expected int"),
    ({"section": {"size": 3, "widths": [8, "x"]}}, r"example\.section\.widths\[1\]: expected int"),
    ({"extra": {"k": 1.5}}, r"example\.extra\.k: expected int"),
    ({"typo": 1}, r"example: unknown key\(s\) \['typo'\]"),
])
def test_wrong_types_and_unknown_keys_name_the_key(change, message):
    with pytest.raises(ValidationError, match=message):
        Example.from_dict({**BASE, **change}, "example")


def test_missing_keys_are_named():
    with pytest.raises(ValidationError, match=r"missing key\(s\) \['rate'\]"):
        Example.from_dict({k: v for k, v in BASE.items() if k != "rate"}, "example")


def test_updated_merges_dotted_keys_and_sections():
    config = Example.from_dict(BASE)
    changed = config.updated({"section.size": 5, "mode": "x"})
    assert changed.section == Section(5, (8, 8)) and changed.mode == "x" and config.section.size == 3
    assert config.updated({"section": {"widths": [4]}}).section == Section(3, (4,))  # partial section
    assert config.updated({"optional": {"size": 1, "widths": []}}).updated({"optional.size": 2}).optional == \
        Section(2, ())
    with pytest.raises(ValidationError, match=r"section: unknown key\(s\) \['sise'\]"):
        config.updated({"section.sise": 5})
    with pytest.raises(ValidationError, match="not a section"):
        config.updated({"rate.value": 5})


def test_parse_overrides_reads_json_or_text():
    assert parse_overrides(["a=3", "b=[1, 2]", "c=CartPole-v1", "d.e=null", "f=\"7\""]) == \
        {"a": 3, "b": [1, 2], "c": "CartPole-v1", "d.e": None, "f": "7"}
    with pytest.raises(ValidationError, match="key=value"):
        parse_overrides(["novalue"])


@pytest.mark.parametrize("name", experiment_names())
def test_every_scale_of_every_experiment_is_a_valid_config(name):
    module = experiment_module(name)
    assert hasattr(module, "CONFIG"), f"{module.__name__}: declare the typed settings (CONFIG, irl_bilevel.config)"
    for scale, settings in module.SCALES.items():
        config = experiment_config(name, scale)
        assert isinstance(config, module.CONFIG)
        assert json.dumps(config.to_dict(), sort_keys=True) == json.dumps(settings, sort_keys=True)  # unchanged


def test_experiment_config_from_file_and_overrides(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"seeds": 2, "epsilons": [0.5]}))
    config = experiment_config("loss_sweep", "quick", path, ["seeds=4"])
    assert config.seeds == 4 and config.epsilons == (0.5,) and config.pairs == 1_250
    with pytest.raises(ValidationError, match=r"loss_sweep\.seeds: expected int, got \[0, 1, 2\]"):
        experiment_config("loss_sweep", "quick", overrides=["seeds=[0,1,2]"])
    path.write_text("{not json")
    with pytest.raises(ValidationError, match="not valid JSON"):
        experiment_config("loss_sweep", "quick", path)


def test_reproduce_configs_take_experiment_prefixed_overrides(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"loss_gradient_weights": {"num_margins": 11}}))
    configs = reproduce_configs(["loss_gradient_weights"], "tiny", path,
                                ["loss_gradient_weights.scaled_margin_limit=2"])
    assert configs["loss_gradient_weights"].to_dict() == {"num_margins": 11, "scaled_margin_limit": 2.0}
    with pytest.raises(ValidationError, match=r"experiment\.key=value"):
        reproduce_configs(["loss_gradient_weights"], "tiny", overrides=["num_margins=3"])
    with pytest.raises(ValidationError, match="unknown experiment"):
        reproduce_configs(["loss_gradient_weights"], "tiny", overrides=["nope.x=3"])
    with pytest.raises(ValidationError, match="does not include"):
        reproduce_configs(["loss_gradient_weights"], "tiny", overrides=["loss_sweep.seeds=3"])


def test_run_accepts_a_config(tmp_path):
    from irlb.experiments import loss_gradient_weights as experiment

    config = experiment_config("loss_gradient_weights", "tiny", overrides=["num_margins=5"])
    result = json.loads(experiment.run("tiny", tmp_path, progress=False, config=config).read_text())
    assert result["config"]["num_margins"] == 5 and len(result["scaled_margins"]) == 5
    with pytest.raises(ValidationError, match="LossGradientWeightsConfig"):
        experiment.run("tiny", tmp_path, progress=False, config=Section(1, ()))


def test_cli_config_and_reproduce_errors(capsys):
    assert main(["config", "loss_gradient_weights", "--scale", "tiny", "--set", "num_margins=7"]) == 0
    assert json.loads(capsys.readouterr().out) == {"num_margins": 7, "scaled_margin_limit": 10.0}
    assert main(["config", "reward_recovery", "--types"]) == 0
    assert "gridworld.num_demos" in capsys.readouterr().out
    assert main(["config", "loss_sweep", "--set", "seeds=[0,1,2]"]) == 2
    assert "loss_sweep.seeds: expected int" in capsys.readouterr().err
    assert main(["reproduce", "--scale", "tiny", "--only", "loss_gradient_weights", "--set",
                 "loss_gradient_weights.bogus=1"]) == 2
    assert "unknown key(s) ['bogus']" in capsys.readouterr().err


def test_an_experiment_without_a_typed_config_still_reproduces_but_cannot_be_changed(monkeypatch):
    import sys
    import types

    from irlb.registry import EXPERIMENTS

    module = types.ModuleType("fake_untyped_experiment")
    module.SCALES = {"tiny": {}}
    monkeypatch.setitem(sys.modules, "fake_untyped_experiment", module)
    monkeypatch.setitem(EXPERIMENTS, "untyped", ("fake_untyped_experiment", "unused"))
    assert reproduce_configs(["untyped"], "tiny") == {"untyped": None}
    with pytest.raises(ValidationError, match="declares no typed config"):
        reproduce_configs(["untyped"], "tiny", overrides=["untyped.x=1"])
    with pytest.raises(ValidationError, match="declares no typed config"):
        experiment_config("untyped", "tiny")


def test_reproduce_writes_into_the_ignored_runs_folder_unless_told(monkeypatch, tmp_path, capsys):
    """A newcomer's `irlb reproduce --scale tiny` must not replace the committed results the README quotes."""
    import irlb.reproduce

    calls = []
    monkeypatch.setattr(irlb.reproduce, "reproduce", lambda scale, results, figures, **_: calls.append(
        (str(results), str(figures))))
    monkeypatch.chdir(tmp_path)
    assert main(["reproduce", "--scale", "tiny", "--only", "loss_gradient_weights"]) == 0
    assert main(["reproduce", "--scale", "tiny", "--update-committed"]) == 0
    assert calls == [("runs/reproduce/results", "runs/reproduce/figures"), ("results", "figures/output")]
    assert "runs/reproduce/results" in capsys.readouterr().out
    assert main(["reproduce", "--update-committed", "--results", "x"]) == 2
