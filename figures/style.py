"""Shared plotting style for the paper's figures: Agg backend, readable sizes, PNG + PDF output with the results'
provenance in the files' metadata, legends that never cover an axes."""

from __future__ import annotations

import argparse
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox

from irl_bilevel.runs import tree_records
from irlb.registry import FIGURE_SOFTWARE

RC = {
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "savefig.dpi": 150,
    "pdf.fonttype": 42,
}


def apply() -> None:
    """Use the shared style for every figure drawn afterwards."""
    plt.style.use(RC)


def read_results(results_dir: Path, name: str) -> dict[str, Any]:
    path = Path(results_dir) / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no results; run the experiment first (irlb reproduce --only {name})")
    return json.loads(path.read_text())


def scale_and_seed(results: dict[str, Any]) -> str:
    """``scale …, seed …`` from a results file (``scale …`` where its provenance names no single seed), for titles
    (:func:`finish` ends every title with it; the commit goes into the file's metadata: :func:`save`)."""
    seed = results.get("provenance", {}).get("seed")
    return f"scale {results.get('scale', '?')}" + ("" if seed is None else f", seed {seed}")


def provenance_metadata(name: str, sources: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The metadata of ``name``'s PNG and PDF: the scale and the source trees (commit, dirty, diff SHA-256) of the
    result files it was drawn from, so that titles need not carry them."""
    trees = [record for source in sources for record in tree_records(source)]
    commits = list(dict.fromkeys(
        record.commit + (f" (dirty, diff sha256 {record.diff_sha256})" if record.diff_sha256 else
                         " (dirty, diff not saved)" if record.dirty else "")
        for record in trees if record.commit))
    scales = list(dict.fromkeys(str(source["scale"]) for source in sources if source.get("scale")))
    description = f"scale {', '.join(scales) or 'unknown'}; commit {'; '.join(commits) or 'unknown'}"
    software = f"{FIGURE_SOFTWARE} figures/{name}.py (matplotlib {matplotlib.__version__})"
    return {"png": {"Title": name, "Software": software, "Description": description,
                    "Commit": "; ".join(commits) or "unknown"},
            # No creation date: a figure redrawn from the same results is the same file.
            "pdf": {"Title": name, "Creator": software, "Subject": description, "CreationDate": None}}


class LegendOverlapWarning(UserWarning):
    """A legend covers (part of) an axes: its plotting area, ticks, labels or title."""


def _axes_parts(ax: plt.Axes, renderer: Any) -> list[Bbox]:
    """The boxes a legend must not cover: the plotting area, the title, and each axis's strip of drawn tick labels
    and label."""
    boxes: list[Bbox | None] = [ax.get_window_extent(renderer)]
    boxes += [axis.get_tightbbox(renderer) for axis in (ax.xaxis, ax.yaxis)]
    boxes += [title.get_window_extent(renderer) for title in (ax.title,) if title.get_visible() and title.get_text()]
    return [box for box in boxes if box is not None]


def legend_overlaps(fig: Figure) -> list[str]:
    """Every (legend, axes) pair where the legend's box intersects a part of the axes (plotting area, title, axis
    labels, tick labels) by more than a pixel, as readable strings; empty when no legend covers any axes."""
    figures: list[Any] = [fig]
    for figure in figures:  # the figure and its subfigures, nested at any depth
        figures += figure.subfigs
    legends = [legend for figure in figures for legend in figure.legends if legend.get_visible()]
    legends += [legend for ax in fig.get_axes() if (legend := ax.get_legend()) is not None and legend.get_visible()]
    if not legends:
        return []
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    overlaps = []
    for legend in legends:
        box = legend.get_window_extent(renderer)
        for ax in fig.get_axes():
            if not ax.get_visible():
                continue
            for part in _axes_parts(ax, renderer):
                inter = Bbox.intersection(box, part)
                if inter is not None and inter.width > 1 and inter.height > 1:
                    labels = [text.get_text() for text in legend.get_texts()][:3]
                    overlaps.append(f"legend {labels} covers the axes titled {ax.get_title()!r}")
                    break
    return overlaps


def legend_outside(ax: plt.Axes, handles: list[Any] | None = None, labels: list[str] | None = None,
                   **options: Any) -> Any:
    """A legend of ``ax`` beside it (right, top aligned), never over the data or a neighbouring panel; ``handles``
    and ``labels`` default to the axes' own; extra ``options`` go to ``Axes.legend``. Figures using it are drawn
    with ``layout="constrained"``, which makes room for it. (A legend below a row of panels is a figure legend:
    ``fig.legend(loc="outside lower center")``.)"""
    if handles is None or labels is None:
        handles, labels = ax.get_legend_handles_labels()
    placement = {"loc": "upper left", "bbox_to_anchor": (1.02, 1.0), "borderaxespad": 0.0}
    return ax.legend(handles, labels, **{**placement, **options})


def shared_legend(axes: list[plt.Axes], **options: Any) -> Any:
    """One legend for a row of panels drawing the same series: the distinct labels of all of them (first handle
    each), to the right of the last panel (:func:`legend_outside`); None when no panel has a labelled artist."""
    entries: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    if not entries:
        return None
    return legend_outside(axes[-1], list(entries.values()), list(entries), **options)


def save(fig: Figure, out_dir: Path, name: str, sources: dict[str, Any] | list[dict[str, Any]]) -> list[Path]:
    """Write ``out_dir/name.png`` and ``out_dir/name.pdf`` and close the figure.

    ``sources``: the result record(s) drawn; their scale and commits go into the files' metadata
    (:func:`provenance_metadata`). A legend that covers an axes is reported as a :class:`LegendOverlapWarning`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metadata = provenance_metadata(name, sources if isinstance(sources, list) else [sources])
    for overlap in legend_overlaps(fig):
        warnings.warn(f"{name}: {overlap}", LegendOverlapWarning, stacklevel=2)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    for path in paths:
        fig.savefig(path, bbox_inches="tight", metadata=metadata[path.suffix[1:]])
    plt.close(fig)
    return paths


def finish(fig: Figure, out_dir: Path, name: str, sources: dict[str, Any] | list[dict[str, Any]], title: str,
           fontsize: float, tight_layout: bool = False) -> list[Path]:
    """Give ``fig`` its overall ``title`` (``suptitle`` at ``fontsize``), ended by the scale and seed of the (first)
    record drawn (:func:`scale_and_seed`), lay it out tightly if asked, and :func:`save` it: the last step of every
    figure script."""
    first = sources[0] if isinstance(sources, list) else sources
    fig.suptitle(f"{title} ({scale_and_seed(first)})", fontsize=fontsize)
    if tight_layout:
        fig.tight_layout()
    return save(fig, out_dir, name, sources)


def main(plot: Callable[[Path, Path], list[Path]], docstring: str | None,
         results_dir: Path = Path("results")) -> None:
    """The command line every figure script shares: ``--results DIR --out DIR``, described by the first line of the
    script's ``docstring``; ``results_dir``: the default of ``--results``."""
    parser = argparse.ArgumentParser(description=docstring.splitlines()[0] if docstring else None)
    parser.add_argument("--results", type=Path, default=results_dir, help="folder holding the results JSON")
    parser.add_argument("--out", type=Path, default=Path("figures/output"), help="folder for the PNG and PDF")
    args = parser.parse_args()
    for path in plot(args.results, args.out):
        print(path)
