"""`irlb paper`: the paper's numbers and tables, written as LaTeX from the result files.

Every number the paper prints is a macro in ``numbers.tex`` or a cell of a generated table, and every one of
them is read from a result file here; nothing is typed by hand. A result file that is missing is skipped with
a warning, so its macros stay undefined and the paper fails to build instead of showing stale numbers.

Sources: one result file per experiment in ``irlb.registry.EXPERIMENTS`` (``results/<name>.json``, read from
the registry at run time; experiments without a dedicated section below still get their scale, seed and
run-time macros) and the benchmark files under ``benchmarks/results/``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from irl_bilevel.validation import read_json_file
from irlb.paper.benchmark_tables import BENCHMARK_HANDLERS
from irlb.paper.experiment_tables import RESULT_HANDLERS, loss_catalog
from irlb.paper.macros import Macros, macro_name
from irlb.registry import EXPERIMENTS

# --------------------------------------------------------------------------------------------------------------
# Generic macros every experiment in the registry gets: scale, seed(s), wall-clock seconds.


def generic_macros(name: str, data: dict[str, Any], macros: Macros) -> None:
    prefix = macro_name(name)
    if "scale" in data:
        macros.text([prefix, "scale"], str(data["scale"]))
    seed = (data.get("provenance") or {}).get("seed")
    if seed is not None:
        macros.number([prefix, "seed"], int(seed))
    config = data.get("config") or {}
    seeds = config.get("seeds")
    if isinstance(seeds, int):
        macros.number([prefix, "num seeds"], seeds)
    if isinstance(data.get("seconds"), (int, float)):
        macros.number([prefix, "seconds"], float(data["seconds"]))


def _warn(message: str) -> None:
    print(f"irlb paper: warning: {message}", file=sys.stderr)


def generate(results_dir: Path, benchmarks_dir: Path, out_dir: Path,
             experiments: Iterable[str] | None = None) -> dict[str, Any]:
    """Write ``numbers.tex`` and one ``<table>.tex`` per table into ``out_dir``; returns what was written and
    what was skipped (missing files). ``experiments`` defaults to the names in ``irlb.registry.EXPERIMENTS``."""
    if experiments is None:
        experiments = list(EXPERIMENTS)
    names = list(dict.fromkeys([*experiments, *RESULT_HANDLERS]))
    macros = Macros()
    tables: dict[str, str] = {}
    skipped: list[str] = []
    sources = [(results_dir / f"{name}.json", name, RESULT_HANDLERS.get(name)) for name in names]
    sources += [(benchmarks_dir / f"{name}.json", name, handler) for name, handler in BENCHMARK_HANDLERS.items()]
    for path, name, handler in sources:
        if not path.exists():
            _warn(f"{path} is missing: its macros and tables are not written (the paper will not build)")
            skipped.append(str(path))
            continue
        data = read_json_file(path, "result file", recovery="; restore it (git checkout) or run its experiment again")
        macros.source = str(path)
        generic_macros(name, data, macros)
        if handler is not None:
            tables.update(handler(data, macros, str(path)))
    tables.update(loss_catalog(macros))
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    numbers = out_dir / "numbers.tex"
    numbers.write_text(macros.render())
    written.append(numbers)
    for stale in out_dir.glob("*.tex"):
        if stale.name != "numbers.tex" and stale.stem not in tables:
            stale.unlink()
    for name, text in tables.items():
        path = out_dir / f"{name}.tex"
        path.write_text(text)
        written.append(path)
    return {"written": written, "skipped": skipped, "macros": len(macros.values)}
