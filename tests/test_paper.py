"""The paper's macros and figures: every macro the paper uses is generated, every figure it includes exists and
belongs to an experiment of `irlb reproduce`, and a missing result file leaves its macros undefined."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from irlb.paper.benchmark_tables import BENCHMARK_HANDLERS
from irlb.paper.build import generate, paper_sources, used_macros, without_comments
from irlb.paper.experiment_tables import RESULT_HANDLERS
from irlb.paper.macros import Macros, format_number, macro_name
from irlb.registry import EXPERIMENTS

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "paper"
RESULTS = ROOT / "results"
BENCHMARKS = ROOT / "benchmarks" / "results"
FIGURES = ROOT / "figures" / "output"

COMMAND = re.compile(r"\\([A-Z][A-Za-z]*)")
DEFINED = re.compile(r"\\(?:newcommand|renewcommand|providecommand|DeclareMathOperator)\*?\{?\\([A-Za-z]+)")
PLACEHOLDER = re.compile(r"\\newcommand\{\\([A-Za-z]+)\}\{\\textit\{n/a \(not produced at scale ([a-z]+)\)\}\}")


def _defined(folder: Path) -> set[str]:
    defined: set[str] = set()
    for path in folder.glob("*.tex"):
        defined |= set(DEFINED.findall(path.read_text()))
    return defined


def _used_in_tables(folder: Path) -> set[str]:
    """CamelCase commands the generated tables use (they must be defined in numbers.tex too)."""
    used: set[str] = set()
    for path in folder.glob("*.tex"):
        if path.name != "numbers.tex":
            used |= set(COMMAND.findall(without_comments(path.read_text())))
    return used


def _placeholders(folder: Path) -> dict[str, str]:
    return dict(PLACEHOLDER.findall((folder / "numbers.tex").read_text()))


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("generated")
    report = generate(RESULTS, BENCHMARKS, out)
    # The files the paper's sections read must be committed; an experiment newly added to the registry may
    # not have its result file yet (then it is only warned about, and the paper does not use it).
    needed = {str(RESULTS / f"{name}.json") for name in RESULT_HANDLERS}
    needed |= {str(BENCHMARKS / f"{name}.json") for name in BENCHMARK_HANDLERS}
    assert not needed & set(report["skipped"]), f"committed result files missing: {report['skipped']}"
    return out


def test_macro_names_are_letters_only() -> None:
    assert macro_name("mce", "speedup_dense", "S1024") == "MceSpeedupDenseSOneZeroTwoFour"
    assert macro_name("ls", "apo_zero", "iqm") == "LsApoZeroIqm"
    assert macro_name("rr", "objectWorld", 100, "epic") == "RrObjectWorldOneZeroZeroEpic"
    with pytest.raises(ValueError):
        macro_name("_", "")


def test_number_formatting() -> None:
    assert format_number(4.658e-7) == r"\ensuremath{4.7\times10^{-7}}"
    assert format_number(0.0704) == "0.070"
    assert format_number(2.5825) == "2.6"
    assert format_number(2911.55) == "2912"
    assert format_number(50000) == "50{,}000"
    assert format_number(-0.03) == r"\ensuremath{-0.030}"
    with pytest.raises(ValueError):
        format_number(float("nan"))


def test_absent_statistics_become_visible_placeholders() -> None:
    macros = Macros()
    macros.scale = "tiny"
    macros.number(["a"], None)
    macros.number(["b"], 0.25)
    macros.fixed(["c"], float("nan"))
    macros.fixed_interval(["d"], {"iqm": 0.5, "low": None, "high": float("nan")})
    macros.fixed_interval(["e"], None)
    macros.text(["f"], None)
    placeholder = r"\textit{n/a (not produced at scale tiny)}"
    assert macros.values["A"] == macros.values["C"] == macros.values["F"] == placeholder
    assert macros.values["B"] == "0.25" and macros.values["DIqm"] == "0.50"
    assert macros.values["DLow"] == macros.values["DHigh"] == macros.values["EIqm"] == placeholder
    assert macros.placeholders == ["A", "C", "DLow", "DHigh", "EIqm", "ELow", "EHigh", "F"]


def test_an_environment_a_scale_leaves_out_is_a_visible_placeholder(tmp_path: Path) -> None:
    """A result file that ran fewer environments (as a tiny run does): the paper's macros for the others read
    n/a, its table has the environments that ran, and nothing crashes."""
    results = tmp_path / "results"
    shutil.copytree(RESULTS, results)
    path = results / "agentic_shaping.json"
    data = json.loads(path.read_text())
    data["scale"] = "tiny"
    del data["envs"]["steppath"]
    data["goals"].pop("steppath", None)
    path.write_text(json.dumps(data))
    out = tmp_path / "generated"
    report = generate(results, BENCHMARKS, out)
    assert str(path) not in report["skipped"]
    placeholders = _placeholders(out)
    assert placeholders["AsSteppathNoneGoalIqm"] == "tiny" and "AsSteppathNoneGoalIqm" in report["placeholders"]
    assert all(name.startswith("AsSteppath") for name in placeholders), placeholders
    assert not used_macros(PAPER) - _defined(out)
    assert "steppath" not in (out / "agentic_shaping.tex").read_text()
    assert "hanoi" in (out / "agentic_shaping.tex").read_text().lower()


def test_a_file_its_handler_cannot_read_is_skipped_with_a_warning(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "results"
    shutil.copytree(RESULTS, results)
    path = results / "loss_sweep.json"
    data = json.loads(path.read_text())
    del data["summary"]  # a file from another version of the code
    path.write_text(json.dumps(data))
    out = tmp_path / "generated"
    report = generate(results, BENCHMARKS, out)
    assert str(path) in report["skipped"]
    assert "cannot be read (KeyError" in capsys.readouterr().err
    defined = _defined(out)
    # Nothing of the file is kept (not even the macros written before the handler failed), and no placeholder
    # stands in for it: the paper does not build.
    assert not {name for name in defined if name.startswith(("Ls", "LossSweep"))}
    assert "LsSigmoidIqm" in used_macros(PAPER) - defined


def test_paper_exists_and_inputs_generated_files() -> None:
    main = (PAPER / "main.tex").read_text()
    assert r"\input{generated/numbers.tex}" in main
    for table in re.findall(r"\\input\{generated/([a-z_]+)\.tex\}", main):
        assert table  # checked against the generated folder below


def test_every_macro_the_paper_uses_is_generated(generated: Path) -> None:
    used = used_macros(PAPER) | _used_in_tables(generated)
    defined = _defined(generated)
    missing = sorted(used - defined)
    assert not missing, f"macros used by the paper or its tables but not generated: {missing}"
    # The committed results produce every statistic the paper quotes: no placeholder reaches the paper.
    assert not set(_placeholders(generated)) & used, sorted(set(_placeholders(generated)) & used)
    main = (PAPER / "main.tex").read_text()
    for table in re.findall(r"\\input\{generated/([a-z_]+)\.tex\}", without_comments(main)):
        assert (generated / f"{table}.tex").exists(), f"table {table} not generated"


def test_generated_tables_are_complete(generated: Path) -> None:
    from irl_bilevel.losses import PREFERENCE_LOSSES

    catalog = (generated / "loss_catalog.tex").read_text()
    for name in PREFERENCE_LOSSES:
        assert rf"\texttt{{{name.replace('_', chr(92) + '_')}}}" in catalog
    benchmark = (generated / "mce_benchmark.tex").read_text()
    assert "$S=1024$" in benchmark and r"\toprule" in benchmark
    numbers = (generated / "numbers.tex").read_text()
    assert r"\newcommand{\MceSpeedupDenseSOneZeroTwoFour}" in numbers
    # Each macro is defined once and its value has no unescaped underscore.
    names = re.findall(r"\\newcommand\{\\([A-Za-z]+)\}", numbers)
    assert len(names) == len(set(names))
    for value in re.findall(r"\\newcommand\{\\[A-Za-z]+\}\{(.*)\}$", numbers, flags=re.M):
        assert not re.search(r"(?<!\\)_", value.replace(r"\ensuremath", "")), value


def test_every_included_figure_exists_and_is_an_experiment() -> None:
    included = []
    for path in paper_sources(PAPER):
        included += re.findall(r"\\includegraphics(?:\[[^\]]*\])?\{([^}]+)\}", without_comments(path.read_text()))
    assert included, "the paper includes no figure"
    for reference in included:
        figure = (PAPER / reference).resolve()
        assert figure.parent == FIGURES.resolve(), f"{reference}: figures come from figures/output/"
        assert figure.stem in EXPERIMENTS, f"{reference}: no experiment in irlb.registry.EXPERIMENTS draws it"
        for suffix in (".pdf", ".png"):
            assert figure.with_suffix(suffix).exists(), f"{figure.with_suffix(suffix)} was not written"


def test_a_missing_result_file_leaves_its_macros_undefined(tmp_path: Path, generated: Path) -> None:
    results = tmp_path / "results"
    shutil.copytree(RESULTS, results)
    (results / "loss_sweep.json").unlink()
    out = tmp_path / "generated"
    report = generate(results, BENCHMARKS, out)
    assert str(results / "loss_sweep.json") in report["skipped"]
    defined = _defined(out)
    assert "LsSigmoidIqm" not in defined and "LossSweepScale" not in defined
    assert not (out / "loss_sweep.tex").exists()
    assert "RewardRecoveryScale" in defined
    # So the paper, which uses them, has undefined macros and does not build.
    assert "LsSigmoidIqm" in used_macros(PAPER) - defined
    # Regenerating over a folder with the table from an earlier run removes the stale table, and only it: a file of
    # the user's there is kept.
    shutil.copy(generated / "loss_sweep.tex", out / "loss_sweep.tex")
    (out / "mine.tex").write_text("\\begin{tabular}{l} my table \\end{tabular}\n")
    generate(results, BENCHMARKS, out)
    assert not (out / "loss_sweep.tex").exists()
    assert (out / "mine.tex").read_text() == "\\begin{tabular}{l} my table \\end{tabular}\n"


def test_a_missing_benchmark_file_leaves_its_macros_undefined(tmp_path: Path) -> None:
    benchmarks = tmp_path / "benchmarks"
    benchmarks.mkdir()
    shutil.copy(BENCHMARKS / "trl_loss_parity.json", benchmarks)
    out = tmp_path / "generated"
    report = generate(RESULTS, benchmarks, out)
    assert any(path.endswith("mce_irl_vs_imitation.json") for path in report["skipped"])
    defined = _defined(out)
    assert not any(name.startswith("Mce") for name in defined)
    assert not (out / "mce_benchmark.tex").exists()
    assert "TrlVersion" in defined


def test_cli_writes_the_macros(tmp_path: Path) -> None:
    from irlb.main import main

    assert main(["paper", "--results", str(RESULTS), "--benchmarks", str(BENCHMARKS), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "numbers.tex").read_text().count(r"\newcommand") > 100


@pytest.mark.slow  # 8-13 min on a shared 2-core machine: every experiment of `irlb reproduce --scale tiny --extended`
@pytest.mark.timeout(2700)  # above the suite's 600 s per test: a loaded machine may take twice as long
def test_tiny_reproduction_defines_every_macro_and_writes_every_figure(tmp_path: Path) -> None:
    """The acceptance check: `irlb reproduce --scale tiny` end to end, then `irlb paper` on what it wrote: every
    macro the paper and its tables use is defined, what the tiny scale does not produce reads n/a, every figure is
    written (and, as everywhere under pytest, no legend covers an axes: style.save's warning is an error)."""
    from irlb.main import main
    from irlb.reproduce import reproduce

    results, figures = tmp_path / "results", tmp_path / "figures"
    reproduce("tiny", results, figures, seed=0, extended=True)
    out = tmp_path / "generated"
    # The command a new user runs, then the report of the same generation.
    assert main(["paper", "--results", str(results), "--benchmarks", str(BENCHMARKS), "--out", str(out)]) == 0
    report = generate(results, BENCHMARKS, out)
    assert not [path for path in report["skipped"] if path.startswith(str(results))], report["skipped"]
    missing = sorted((used_macros(PAPER) | _used_in_tables(out)) - _defined(out))
    assert not missing, f"macros used by the paper but not generated at scale tiny: {missing}"
    placeholders = _placeholders(out)
    assert set(report["placeholders"]) == set(placeholders)
    # Placeholders name the scale of the file they stand for: the tiny results, or a committed benchmark file.
    assert {scale for name, scale in placeholders.items() if not name.startswith(("Mce", "Ivi", "Pvi", "Dpo", "Trl"))} \
        <= {"tiny"}
    # The results page renders from the same tiny files: every experiment's section reads its file.
    from irlb.paper.results_page import render_page

    page, _ = render_page(results, BENCHMARKS)
    assert not [name for name in EXPERIMENTS if f"`results/{name}.json` is missing" in page]
    for path in paper_sources(PAPER):
        for reference in re.findall(r"\\includegraphics(?:\[[^\]]*\])?\{([^}]+)\}",
                                    without_comments(path.read_text())):
            name = Path(reference).stem
            for suffix in (".pdf", ".png"):
                assert (figures / f"{name}{suffix}").exists(), f"reproduce did not write {name}{suffix}"
