"""The results page and the generated blocks of the READMEs and docs/: every number comes from a result file.

``docs/results.md`` and every ``<!-- generated:NAME -->`` block are regenerated from the committed result files and
compared byte for byte, so a number that drifts from its file fails here; the prose of README.md, docs/*.md and
benchmarks/README.md holds no number that looks like a result (decimals, percentages, durations, ratios) outside
those blocks and code, except the settings, versions and published values listed in :data:`ALLOWED`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from irlb.paper.build import collect
from irlb.paper.markdown import Interval, compare, markdown_table, to_markdown
from irlb.paper.results_page import (
    BLOCKS,
    HEADER,
    block_names,
    count_numbers,
    markdown_files,
    refresh_blocks,
    render_page,
    result_like_numbers,
    write,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
BENCHMARKS = ROOT / "benchmarks" / "results"
PAGE = ROOT / "docs" / "results.md"

# Numbers in the prose of README.md and docs/*.md that are not results: settings, versions, published reference
# values, parts of a task's definition. Anything else belongs in a generated block (irlb.paper.results_page.BLOCKS).
ALLOWED: dict[str, set[str]] = {
    "README.md": {"3.10"},  # Python version
    "docs/agentic.md": {"545.6",  # a tool-use task's gold result (its definition)
                        "95%"},  # the confidence level of the intervals
    "docs/cli.md": {"95%"},
    "docs/feedback.md": {"0.1", "0.9", "0.5",  # teacher parameters, the tie label
                         "0.210", "0.743", "0.815", "0.849", "0.4"},  # published values the agreement tests check
    "docs/llm_training.md": {"1e-6", "1e-5"},  # the bounds tests/test_llm_training_engine.py asserts (resume, DDP)
    "docs/llm.md": {"0.1",  # default aspect weights
                    "0.21", "5.24"},  # peft and transformers versions
    "docs/losses.md": {"0.05", "0.1", "0.5", "1.0", "1.5", "1e-3", "2.0",  # loss defaults
                       "1.16",  # TRL version
                       "2.5",  # SimPO paper's β range
                       "4.7",  # an equation number
                       "1e4"},  # an input the tests use
    # The benchmarks' protocols: versions, hyperparameters, tolerances, caps, goals, model sizes.
    "benchmarks/README.md": {"1.0", "1.4", "2.9", "1.16",  # imitation, gymnasium, SB3, TRL versions
                             "1e-9", "1e-6", "1e-5", "1e-4", "1e-3", "1e-2", "3e-4", "2e-3",  # tolerances, rates
                             "0.01", "0.1", "0.5", "0.9", "0.95", "0.97", "0.99",  # coefficients, γ, targets
                             "900 s", "120 s",  # imitation's wall-time caps
                             "2×",  # the DPO step's goal
                             "95%",  # the confidence level of the intervals
                             "19.5", "134.5"},  # parameter counts (millions) of the models the DPO step runs
}


@pytest.fixture(scope="module")
def committed() -> tuple[str, object]:
    return render_page(RESULTS, BENCHMARKS)


def _documents() -> list[Path]:
    return [path for path in markdown_files([ROOT / "README.md", ROOT / "docs"]) if path != PAGE]


def _block_documents() -> list[Path]:
    """The documents above and benchmarks/README.md, whose results are generated blocks too (its other sections
    describe protocols in prose)."""
    return [*_documents(), ROOT / "benchmarks" / "README.md"]


def test_the_results_page_is_generated_from_the_committed_result_files(committed) -> None:
    text, page = committed
    assert PAGE.read_text() == text, "docs/results.md differs from its result files: run `irlb results`"
    assert not page.missing, f"the page asks for values no result file defines: {page.missing}"
    assert text.startswith(HEADER)
    # Every experiment with a committed file is summarized; only files not committed yet say so.
    assert "*n/a" not in text
    assert count_numbers(text) > 1000


def test_every_generated_block_matches_its_files(committed) -> None:
    _, page = committed
    seen = set()
    for path in _block_documents():
        text = path.read_text()
        seen |= set(block_names(text))
        assert refresh_blocks(text, page) == text, f"{path.relative_to(ROOT)}: a generated block is stale: " \
                                                   f"run `irlb results`"
    assert seen == set(BLOCKS), f"blocks no document uses: {set(BLOCKS) - seen}"


def test_no_hand_typed_result_number_in_the_readme_docs_or_benchmarks_readme() -> None:
    for path in _block_documents():
        name = str(path.relative_to(ROOT))
        typed = sorted(set(result_like_numbers(path.read_text())) - ALLOWED.get(name, set()))
        assert not typed, (f"{name}: {typed} look like result numbers typed by hand; put them in a generated block "
                           f"(irlb.paper.results_page.BLOCKS) or, for a setting, version or published value, add "
                           f"them to ALLOWED with the reason")


def test_the_scan_finds_a_typed_number_and_ignores_code_and_generated_blocks() -> None:
    text = ("Plain DPO reaches 0.93 in 5 s, 3.4× faster, on 12% of seeds.\n\n```bash\nirlb x --beta 0.1\n```\n"
            "`lr=1e-3` and <!-- generated:costs -->\nabout 1.5 h\n<!-- /generated:costs --> and python 3.10.2.\n")
    assert result_like_numbers(text) == ["0.93", "5 s", "3.4×", "12%"]


def test_a_number_that_drifts_from_its_file_fails_the_check(tmp_path: Path) -> None:
    results, benchmarks = tmp_path / "results", tmp_path / "benchmarks"
    shutil.copytree(RESULTS, results)
    shutil.copytree(BENCHMARKS, benchmarks)
    page = tmp_path / "results.md"
    readme = tmp_path / "README.md"
    readme.write_text("Cost: <!-- generated:costs -->\n<!-- /generated:costs -->\n")
    assert write(results, benchmarks, page, [readme]) == [page, readme]
    assert write(results, benchmarks, page, [readme], check=True) == []
    # One value in one file changes: the page (and only the page) no longer matches.
    path = results / "loss_sweep.json"
    data = json.loads(path.read_text())
    data["summary"]["sigmoid"]["normalized_return_stochastic"]["iqm"] = 0.5
    path.write_text(json.dumps(data))
    assert write(results, benchmarks, page, [readme], check=True) == [page]
    assert "| `sigmoid` | 0.50 [0.91, 0.99] |" in render_page(results, benchmarks)[0]


def test_a_missing_result_file_says_not_run_yet_with_its_command(tmp_path: Path) -> None:
    results = tmp_path / "results"
    shutil.copytree(RESULTS, results)
    (results / "aspect_labels.json").unlink()
    text, page = render_page(results, BENCHMARKS)
    section = text[text.index("## Scalar against per-aspect labels"):]
    assert section.split("\n## ")[0].strip().endswith(
        "Not run yet: `results/aspect_labels.json` is missing. Run `irlb reproduce --only aspect_labels`.")
    assert not page.missing


def test_the_command_writes_the_page_and_refuses_a_file_it_did_not_write(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from irlb.main import main

    page = tmp_path / "results.md"
    arguments = ["results", "--results", str(RESULTS), "--benchmarks", str(BENCHMARKS), "--page", str(page),
                 "--blocks", str(tmp_path)]
    assert main([*arguments, "--check"]) == 1
    assert "differs from the result files" in capsys.readouterr().err
    assert main(arguments) == 0
    assert page.read_text() == PAGE.read_text()
    assert main([*arguments, "--check"]) == 0
    mine = tmp_path / "mine.md"
    mine.write_text("my notes\n")
    assert main([*arguments[:-4], "--page", str(mine), "--blocks", str(tmp_path / "none")]) == 2
    assert "not written by `irlb results`" in capsys.readouterr().err
    assert mine.read_text() == "my notes\n"


def test_comparison_words_follow_the_intervals_at_the_printed_precision() -> None:
    assert compare(Interval(0.9, 0.8, 1.0), Interval(0.5, 0.4, 0.7)) == "higher, intervals apart"
    assert compare(Interval(0.5, 0.4, 0.7), Interval(0.9, 0.8, 1.0)) == "lower, intervals apart"
    assert compare(Interval(0.9, 0.7, 1.0), Interval(0.5, 0.4, 0.7)) == "higher IQM, intervals overlap"
    assert compare(Interval(0.5, 0.4, 0.7), Interval(0.5, 0.3, 0.6)) == "equal IQM, intervals overlap"
    assert compare(Interval(float("nan"), 0, 1), Interval(0.5, 0.3, 0.6)).startswith("not comparable")
    # Intervals that touch at the printed digits overlap, whatever the digits after them.
    collected = collect(RESULTS, BENCHMARKS, warn=False)
    _, page = render_page(RESULTS, BENCHMARKS, collected)
    robust, plain = "PnRobustBradleyTerryHighlight", "PnBradleyTerryHighlight"
    assert page(robust + "Low") == page(plain + "High") == "1.00"
    assert collected.macros.numbers[robust + "Low"] > collected.macros.numbers[plain + "High"]
    assert page.vs(robust, plain) == "higher IQM, intervals overlap"


def test_latex_values_and_tables_render_as_markdown() -> None:
    assert to_markdown(r"\ensuremath{4.7\times10^{-7}}") == "4.7e-7"
    assert to_markdown(r"\ensuremath{\ge}\,9.7") == "≥ 9.7"
    assert to_markdown(r"\textit{n/a (not produced at scale tiny)}") == "*n/a (not produced at scale tiny)*"
    assert to_markdown(r"$\varepsilon=0.2$, \texttt{robust\_bradley\_terry}, 30{,}720, 5\%") == \
        "ε=0.2, `robust_bradley_terry`, 30,720, 5%"
    collected = collect(RESULTS, BENCHMARKS, warn=False)
    for name, value in collected.macros.values.items():
        assert not set(to_markdown(value)) & set("\\{}$"), (name, value)
    for table in collected.tables.values():
        text = markdown_table(table)
        assert not set(text) & set("\\{}$"), table.source
        assert len({line.count(" | ") for line in text.splitlines() if not line.startswith("|--")}) == 1


def test_the_mce_block_renders_a_quick_file_and_says_a_failed_conversion_check(tmp_path: Path) -> None:
    """A quick run has the S = 64 problem only: the table has its rows, the goal is not evaluated, and no reading
    needs a problem the file lacks; a failed conversion check is said, not hidden."""
    results, benchmarks = tmp_path / "results", tmp_path / "benchmarks"
    shutil.copytree(RESULTS, results)
    shutil.copytree(BENCHMARKS, benchmarks)
    path = benchmarks / "mce_irl_vs_imitation.json"
    data = json.loads(path.read_text())
    data["mode"], data["problems"] = "quick", data["problems"][:1]
    data["problems"][0]["conversion_check"]["passed"] = False
    data["summary"] = {"goal": data["summary"]["goal"]}
    path.write_text(json.dumps(data))
    text = BLOCKS["mce-vs-imitation"](render_page(results, benchmarks)[1])
    assert "quick mode" in text and "The conversion check FAILED" in text
    assert [line.split("|")[2].strip() for line in text.splitlines() if line.startswith("| ")][1:] == \
        ["imitation", "ours dense", "ours sparse"]
    assert "not evaluated, the file has no S = 1024 problem" in text
    assert "CliffWorld" not in text and "S = 4096" not in text
