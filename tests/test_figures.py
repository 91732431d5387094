"""Figure hygiene: the results' provenance goes into the files' metadata (not the titles), and no legend covers an
axes (its plotting area, ticks, labels or title). Every figure test in the suite draws through ``style.save``,
which warns (an error under pytest) when a legend covers an axes."""

from __future__ import annotations

import importlib
import re
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
from PIL import Image

from figures import style

ROOT = Path(__file__).resolve().parents[1]
COMMIT = "0123456789abcdef0123456789abcdef01234567"
RECORD = {"scale": "tiny", "provenance": {"seed": 3, "git_commit": COMMIT + "-dirty",
                                         "git_diff": {"sha256": "ab" * 32, "text": "diff"}}}


def _figure_with_legend(inside: bool) -> plt.Figure:
    fig, axes = plt.subplots(1, 2, figsize=(8, 3), layout="constrained")
    for ax in axes:
        ax.plot([0, 1], [0, 1], label="rising")
        ax.plot([0, 1], [1, 0], label="falling")
        ax.set_title("panel")
    if inside:
        axes[0].legend(loc="center")
    else:
        style.shared_legend(list(axes))
    return fig


def test_a_legend_over_the_data_is_found_and_one_beside_the_panels_is_not() -> None:
    inside = _figure_with_legend(inside=True)
    assert style.legend_overlaps(inside) == ["legend ['rising', 'falling'] covers the axes titled 'panel'"]
    outside = _figure_with_legend(inside=False)
    assert style.legend_overlaps(outside) == []
    assert len(outside.axes[1].get_legend().get_texts()) == 2  # one legend, each label once
    plt.close("all")


def test_save_warns_on_a_covering_legend(tmp_path: Path) -> None:
    with pytest.warns(style.LegendOverlapWarning, match="covers the axes titled 'panel'"):
        style.save(_figure_with_legend(inside=True), tmp_path, "covered", RECORD)


def test_provenance_goes_into_the_metadata_not_the_title(tmp_path: Path) -> None:
    png, pdf = style.save(_figure_with_legend(inside=False), tmp_path, "example", RECORD)
    text = Image.open(png).text
    assert text["Title"] == "example"
    assert text["Commit"] == f"{COMMIT} (dirty, diff sha256 {'ab' * 32})"
    assert "scale tiny" in text["Description"]
    info = pdf.read_bytes()
    assert COMMIT.encode() in info and b"/Subject (scale tiny" in info
    assert b"/CreationDate" not in info  # redrawing the same results gives the same file
    assert style.scale_and_seed(RECORD) == "scale tiny, seed 3"


def test_no_figure_script_puts_the_commit_in_its_title() -> None:
    for script in sorted((ROOT / "figures").glob("*.py")):
        if script.name != "style.py":
            assert not re.search(r"commit|git_commit|\[\"git\"\]", script.read_text()), script.name


@pytest.mark.slow  # ~3 min on a shared 2-core machine: draws all 18 figures (PNG and PDF) from the committed results
def test_every_committed_figure_redraws_without_a_covering_legend(tmp_path: Path) -> None:
    from irlb.registry import EXPERIMENTS, EXTENDED

    sources = {name: ROOT / "results" for name in EXPERIMENTS}
    sources |= {"irl_ablation": ROOT / "results", "irl_vs_imitation": ROOT / "benchmarks" / "results",
                "preferences_vs_imitation": ROOT / "benchmarks" / "results"}
    for name, folder in sources.items():
        if name in EXTENDED and not (folder / f"{name}.json").exists():
            continue  # an extended experiment whose results are not committed yet
        with warnings.catch_warnings():
            warnings.simplefilter("error", style.LegendOverlapWarning)
            png, _ = importlib.import_module(f"figures.{name}").plot(folder, tmp_path)
        assert Image.open(png).text["Commit"] != "unknown", name
