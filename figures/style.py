"""Shared plotting style for the paper's figures: Agg backend, readable sizes, PNG + PDF output."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

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
    plt.rcParams.update(RC)


def read_results(results_dir: Path, name: str) -> dict[str, Any]:
    path = Path(results_dir) / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no results; run the experiment first (irlb reproduce --only {name})")
    return json.loads(path.read_text())


def provenance_line(results: dict[str, Any]) -> str:
    """``scale …, seed …, commit …`` from a results file, for captions."""
    prov = results.get("provenance", {})
    commit = prov.get("git_commit") or "unknown"
    return f"scale {results.get('scale', '?')}, seed {prov.get('seed', '?')}, commit {commit[:12]}"


def save(fig: Figure, out_dir: Path, name: str) -> list[Path]:
    """Write ``out_dir/name.png`` and ``out_dir/name.pdf`` and close the figure."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    for path in paths:
        fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return paths


def main(plot: Callable[[Path, Path], list[Path]], description: str) -> None:
    """The command line every figure script shares: ``--results DIR --out DIR``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--results", type=Path, default=Path("results"), help="folder holding the results JSON")
    parser.add_argument("--out", type=Path, default=Path("figures/output"), help="folder for the PNG and PDF")
    args = parser.parse_args()
    for path in plot(args.results, args.out):
        print(path)
