"""`irlb paper`: the paper's numbers and tables, written as LaTeX from the result files.

Every number the paper prints is a macro in ``numbers.tex`` or a cell of a generated table, and every one of
them is read from a result file here; nothing is typed by hand. A result file that is missing, or that its
handler cannot read (a file from another version of the code), is skipped with a warning, so its macros stay
undefined and the paper fails to build instead of showing stale numbers. A statistic that a present file does not
produce at its scale is written as a visible placeholder, ``n/a (not produced at scale tiny)``, and listed in a
warning: a value the file holds as null or NaN (a confidence interval over one seed), and every macro the paper
uses whose prefix names the file (``RESULT_PREFIXES``, ``BENCHMARK_PREFIXES`` or the experiment's own name) but that
the file does not define (an environment or a method a tiny run leaves out).

``result_provenance.tex`` lists every result file with the commits it was written from and whether any part of it
came from a tree with uncommitted changes (:mod:`irlb.paper.provenance`).

Sources: one result file per experiment in ``irlb.registry.EXPERIMENTS`` (``results/<name>.json``, read from
the registry at run time; experiments without a dedicated section below still get their scale, seed and
run-time macros) and the benchmark files under ``benchmarks/results/``.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from irlb.paper.benchmark_tables import BENCHMARK_HANDLERS, BENCHMARK_PREFIXES
from irlb.paper.experiment_tables import EXTRA_RESULT_HANDLERS, RESULT_HANDLERS, RESULT_PREFIXES, loss_catalog
from irlb.paper.macros import Macros, Table, escape, macro_name, tabular
from irlb.paper.provenance import ResultTree, result_trees
from irlb.registry import EXPERIMENTS

PAPER = Path(__file__).resolve().parents[2] / "paper"
"""The paper's LaTeX sources in a checkout (absent in an installed package)."""

# Commands starting with an uppercase letter that LaTeX, amsmath or the packages the paper loads define.
LATEX_OWN = {
    "Gamma", "Delta", "Theta", "Lambda", "Xi", "Pi", "Sigma", "Upsilon", "Phi", "Psi", "Omega", "Big", "Bigl",
    "Bigr", "Bigg", "Biggl", "Biggr", "Huge", "LARGE", "Large", "LaTeX", "TeX", "Re", "Im", "Leftarrow",
    "Rightarrow", "Leftrightarrow", "Longrightarrow", "S", "P", "L", "O", "AA", "AE", "OE", "FloatBarrier",
}
_COMMAND = re.compile(r"\\([A-Z][A-Za-z]*)")


def paper_sources(paper: Path = PAPER) -> list[Path]:
    return sorted(paper.glob("*.tex")) + sorted((paper / "sections").glob("*.tex"))


def without_comments(text: str) -> str:
    return re.sub(r"(?<!\\)%.*", "", text)


def used_macros(paper: Path = PAPER) -> set[str]:
    """The generated macros the paper's sources use: every command starting with an uppercase letter that LaTeX and
    its packages do not define (the project's macros are CamelCase, from :func:`irlb.paper.macros.macro_name`)."""
    used: set[str] = set()
    for path in paper_sources(paper):
        used |= set(_COMMAND.findall(without_comments(path.read_text())))
    return used - LATEX_OWN


def _owner(name: str, prefixes: dict[str, str]) -> str | None:
    """The result file whose macro prefix ``name`` starts with at a word boundary (longest prefix wins)."""
    best: tuple[int, str] | None = None
    for prefix, source in prefixes.items():
        if name.startswith(prefix) and (len(name) == len(prefix) or name[len(prefix)].isupper()):
            if best is None or len(prefix) > best[0]:
                best = (len(prefix), source)
    return None if best is None else best[1]


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
    seconds = compute_seconds(data)
    if seconds:
        macros.number([prefix, "compute minutes"], seconds / 60)


def compute_seconds(data: dict[str, Any]) -> float:
    """The compute time a result file records: the larger of its top-level time (``seconds``, ``wall_seconds`` or
    ``times.total``: the last invocation) and the sum of its runs' own times (``seconds`` or ``wall_s`` of
    ``runs``, ``trials``, ``seeds`` and of each environment's ``runs`` and ``seeds``: what a resumed or joined run
    spent over all its invocations). 0 where the file records none."""
    top = data.get("seconds") or data.get("wall_seconds") or (data.get("times") or {}).get("total") or 0.0
    lists: list[Any] = [data.get(key) for key in ("runs", "trials", "seeds")]
    envs = data.get("envs")
    if isinstance(envs, dict):
        lists += [env.get(key) for env in envs.values() if isinstance(env, dict) for key in ("runs", "seeds")]
    units = 0.0
    for records in lists:
        for record in records if isinstance(records, list) else []:
            value = record.get("seconds", record.get("wall_s")) if isinstance(record, dict) else None
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                units += float(value)
    return max(float(top), units)


def _warn(message: str) -> None:
    print(f"irlb paper: warning: {message}", file=sys.stderr)


def fill_not_produced(used: set[str], read: dict[str, tuple[str, str | None]], macros: Macros) -> None:
    """Placeholders for the macros in ``used`` that a file in ``read`` (name → (path, scale)) owns by prefix but did
    not define: statistics its scale does not produce. Macros of files not read stay undefined."""
    prefixes = {macro_name(name): name for name in read}
    prefixes |= {macro_name(prefix): name for name, prefix in {**RESULT_PREFIXES, **BENCHMARK_PREFIXES}.items()}
    for name in sorted(used - set(macros.values)):
        owner = _owner(name, prefixes)
        if owner in read:
            macros.source, macros.scale = read[owner]
            macros.missing([name])


def provenance_table(trees: list[ResultTree], folders: list[Path], macros: Macros) -> Table:
    """The table ``result_provenance`` (file, commits, tree state) and the counts of files from a dirty tree."""
    macros.source = "irlb.paper.provenance"
    macros.scale = None
    macros.number(["result files"], len(trees))
    macros.number(["result files dirty tree"], sum(1 for tree in trees if tree.dirty))
    macros.number(["result files dirty tree no diff"], sum(1 for tree in trees if tree.dirty and not tree.diff_saved))
    rows = [[rf"\texttt{{{escape(tree.path.name)}}}", escape(", ".join(c[:7] for c in tree.commits) or "unknown"),
             escape(tree.status)] for tree in trees]
    return tabular("lll", ["result file", "commit", "source tree"], rows, ", ".join(str(f) for f in folders))


@dataclass
class Collected:
    """Everything read from the result files: the macros (``name → LaTeX``, with the unformatted numbers), the
    tables, the files read (``name → (path, scale)``), the files skipped (missing or unreadable), the optional files
    absent (:data:`~irlb.paper.experiment_tables.EXTRA_RESULT_HANDLERS`) and the provenance of every result file.
    :func:`generate` writes it as LaTeX; :mod:`irlb.paper.results_page` as Markdown."""

    macros: Macros
    tables: dict[str, Table]
    read: dict[str, tuple[str, str | None]]
    skipped: list[str]
    trees: list[ResultTree]
    absent: list[str] = field(default_factory=list)


def collect(results_dir: Path, benchmarks_dir: Path, experiments: Iterable[str] | None = None,
            paper: Path | None = PAPER, warn: bool = True) -> Collected:
    """Read every result file through its handler (see :func:`generate` for what is skipped and why); ``warn``
    prints a warning on stderr for each file skipped."""
    report = _warn if warn else (lambda message: None)
    if experiments is None:
        experiments = list(EXPERIMENTS)
    experiments = list(experiments)
    names = list(dict.fromkeys([*experiments, *RESULT_HANDLERS, *EXTRA_RESULT_HANDLERS]))
    macros = Macros()
    tables: dict[str, Table] = {}
    skipped: list[str] = []
    sources = [(results_dir / f"{name}.json", name, RESULT_HANDLERS.get(name) or EXTRA_RESULT_HANDLERS.get(name))
               for name in names]
    sources += [(benchmarks_dir / f"{name}.json", name, handler) for name, handler in BENCHMARK_HANDLERS.items()]
    read: dict[str, tuple[str, str | None]] = {}  # the files read: name → (path, scale)
    absent: list[str] = []
    for path, name, handler in sources:
        if not path.exists() and name in EXTRA_RESULT_HANDLERS and name not in experiments:
            absent.append(str(path))
            continue
        if not path.exists():
            report(f"{path} is missing: its macros and tables are not written (the paper will not build)")
            skipped.append(str(path))
            continue
        data = json.loads(path.read_text())
        macros.source = str(path)
        macros.scale = str(data.get("scale") or data.get("mode") or "") or None
        before = set(macros.values)
        try:
            generic_macros(name, data, macros)
            if handler is not None:
                tables.update(handler(data, macros, str(path)))
        except (KeyError, IndexError, TypeError, ValueError, StopIteration) as error:
            # A file this code cannot read: nothing of it is kept, as if it were missing.
            macros.remove(set(macros.values) - before)
            report(f"{path} cannot be read ({type(error).__name__}: {error}); is it from another version of the "
                  f"code? Its macros and tables are not written (the paper will not build)")
            skipped.append(str(path))
        else:
            read[name] = (str(path), macros.scale)
    if paper is not None and paper.is_dir():
        fill_not_produced(used_macros(paper), read, macros)
    tables.update(loss_catalog(macros))
    folders = [results_dir, benchmarks_dir]
    trees = result_trees(folder for folder in folders if folder.is_dir())
    tables["result_provenance"] = provenance_table(trees, folders, macros)
    return Collected(macros, tables, read, skipped, trees, absent)


def generate(results_dir: Path, benchmarks_dir: Path, out_dir: Path,
             experiments: Iterable[str] | None = None, paper: Path | None = PAPER) -> dict[str, Any]:
    """Write ``numbers.tex`` and one ``<table>.tex`` per table into ``out_dir``.

    Returns ``written`` (paths), ``skipped`` (result files missing or unreadable; their macros are not defined),
    ``placeholders`` (macros written as ``n/a``: statistics a file does not produce at its scale), ``dirty`` (result
    files written, wholly or in part, from a tree with uncommitted changes) and ``macros`` (how many).
    ``experiments`` defaults to the names in ``irlb.registry.EXPERIMENTS``; ``paper`` is the folder of the paper's
    sources, whose used macros get placeholders where a present result file does not produce them (None: none)."""
    collected = collect(results_dir, benchmarks_dir, experiments, paper)
    macros, tables = collected.macros, collected.tables
    dirty = [str(tree.path) for tree in collected.trees if tree.dirty]
    if macros.placeholders:
        _warn(f"{len(macros.placeholders)} statistics are not produced by these result files at their scale and "
              f"read 'n/a (not produced at scale ...)': {', '.join(macros.placeholders)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    numbers = out_dir / "numbers.tex"
    numbers.write_text(macros.render())
    written.append(numbers)
    for stale in out_dir.glob("*.tex"):
        if stale.name != "numbers.tex" and stale.stem not in tables:
            stale.unlink()
    for name, table in tables.items():
        path = out_dir / f"{name}.tex"
        path.write_text(table.latex())
        written.append(path)
    return {"written": written, "skipped": collected.skipped, "placeholders": list(macros.placeholders),
            "dirty": dirty, "macros": len(macros.values)}
