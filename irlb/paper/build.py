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

The output folder holds only what this module writes: :func:`generate` replaces or removes a file only if it starts
with :data:`~irlb.paper.macros.GENERATED`, and refuses a folder of other files. ``irlb paper`` also refuses a
present result file that its handler cannot read (:func:`generate`'s ``strict``), before anything is written.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from irl_bilevel.runs import claim_output_folder
from irl_bilevel.validation import ValidationError, read_json_file
from irlb.paper.benchmark_tables import BENCHMARK_HANDLERS, BENCHMARK_PREFIXES
from irlb.paper.experiment_tables import EXTRA_RESULT_HANDLERS, RESULT_HANDLERS, RESULT_PREFIXES, loss_catalog
from irlb.paper.macros import GENERATED, Macros, Table, escape, macro_name, tabular
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
# Generic macros every experiment in the registry gets: scale, seed(s), wall-clock seconds, CPU time where recorded.


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
    if isinstance(data.get("cpu_seconds"), (int, float)):  # the process's CPU time: what a run on a shared machine costs
        macros.number([prefix, "cpu minutes"], float(data["cpu_seconds"]) / 60)


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


def is_generated(path: Path) -> bool:
    """Whether ``path`` is a file that :func:`generate` wrote (it starts with :data:`GENERATED`)."""
    try:
        with open(path, "rb") as file:
            return path.is_file() and file.read(len(GENERATED.encode())) == GENERATED.encode()
    except OSError:
        return False


def claim_generated_folder(out_dir: Path) -> None:
    """Check that :func:`generate` may write into ``out_dir``: a new or empty folder, or one holding the
    ``numbers.tex`` it wrote (regenerated in place); a file, a place that cannot be written, or a folder of other
    files is a :class:`~irl_bilevel.validation.ValidationError` (:func:`irl_bilevel.runs.claim_output_folder`)."""
    if claim_output_folder(out_dir, "numbers.tex", "paper", overwrite=True) and \
            not is_generated(out_dir / "numbers.tex"):
        raise ValidationError(f"--out: {out_dir} holds a numbers.tex that irlb paper did not write (its first line is "
                              f"not {GENERATED!r}); choose a new or empty folder (nothing was changed)")


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
    absent (:data:`~irlb.paper.experiment_tables.EXTRA_RESULT_HANDLERS`), the provenance of every result file and,
    among the files skipped, those present that their handler cannot read (with the reason).
    :func:`generate` writes it as LaTeX; :mod:`irlb.paper.results_page` as Markdown."""

    macros: Macros
    tables: dict[str, Table]
    read: dict[str, tuple[str, str | None]]
    skipped: list[str]
    trees: list[ResultTree]
    absent: list[str] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)  # the skipped files that exist: path → why


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
    unreadable: dict[str, str] = {}
    for path, name, handler in sources:
        if not path.exists() and name in EXTRA_RESULT_HANDLERS and name not in experiments:
            absent.append(str(path))
            continue
        if not path.exists():
            report(f"{path} is missing: its macros and tables are not written (the paper will not build)")
            skipped.append(str(path))
            continue
        data = read_json_file(path, "result file", recovery="; restore it (git checkout) or run its experiment again")
        macros.source = str(path)
        macros.scale = str(data.get("scale") or data.get("mode") or "") or None
        before = set(macros.values)
        try:
            if path.parent == results_dir and "scale" not in data:  # every experiment records its scale
                raise KeyError("scale")
            generic_macros(name, data, macros)
            if handler is not None:
                tables.update(handler(data, macros, str(path)))
        except (KeyError, IndexError, TypeError, ValueError, StopIteration) as error:
            # A file this code cannot read: nothing of it is kept, as if it were missing.
            macros.remove(set(macros.values) - before)
            unreadable[str(path)] = f"{type(error).__name__}: {error}"
            report(f"{path} cannot be read ({unreadable[str(path)]}); is it from another version of the "
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
    return Collected(macros, tables, read, skipped, trees, absent, unreadable)


def generate(results_dir: Path, benchmarks_dir: Path, out_dir: Path,
             experiments: Iterable[str] | None = None, paper: Path | None = PAPER,
             strict: bool = False) -> dict[str, Any]:
    """Write ``numbers.tex`` and one ``<table>.tex`` per table into ``out_dir``.

    Returns ``written`` (paths), ``skipped`` (result files missing or unreadable; their macros are not defined),
    ``placeholders`` (macros written as ``n/a``: statistics a file does not produce at its scale), ``dirty`` (result
    files written, wholly or in part, from a tree with uncommitted changes) and ``macros`` (how many).
    ``experiments`` defaults to the names in ``irlb.registry.EXPERIMENTS``; ``paper`` is the folder of the paper's
    sources, whose used macros get placeholders where a present result file does not produce them (None: none).

    Everything is checked before anything is written (:class:`~irl_bilevel.validation.ValidationError`, and
    ``out_dir`` is left as it was): both folders exist and ``results_dir`` holds at least one result file; ``out_dir``
    is new, empty, or a folder this function wrote (its ``numbers.tex`` starts with :data:`GENERATED`). Only files
    that start with :data:`GENERATED` are replaced, or removed when their table is no longer produced; any other
    file there is kept, and one in the way of a file to write is an error. ``strict`` (the ``irlb paper`` command):
    a present result file that its handler cannot read is an error naming it instead of a warning."""
    for folder, option in ((results_dir, "--results"), (benchmarks_dir, "--benchmarks")):
        if not folder.is_dir():
            raise ValidationError(f"{option}: {folder} is not a folder of result files"
                                  f"{' (it is a file)' if folder.exists() else ' (it does not exist)'}")
    claim_generated_folder(out_dir)
    collected = collect(results_dir, benchmarks_dir, experiments, paper, warn=not strict)
    if strict:
        for unreadable, reason in collected.unreadable.items():
            raise ValidationError(f"result file: {unreadable} cannot be read by this version of the code ({reason}); "
                                  f"run its experiment again (irlb reproduce --only {Path(unreadable).stem}) or "
                                  f"restore it")
        for missing in collected.skipped:
            _warn(f"{missing} is missing: its macros and tables are not written (the paper will not build)")
    if not any(source.startswith(str(results_dir)) for source, _ in collected.read.values()):
        raise ValidationError(f"--results: {results_dir} holds none of the experiments' result files "
                              f"(<experiment>.json of irlb reproduce, e.g. {next(iter(EXPERIMENTS))}.json)")
    macros, tables = collected.macros, collected.tables
    targets = ["numbers.tex", *(f"{name}.tex" for name in tables)]
    for target in targets:
        if (out_dir / target).exists() and not is_generated(out_dir / target):
            raise ValidationError(f"--out: {out_dir / target} was not written by irlb paper (its first line is not "
                                  f"{GENERATED!r}); move it away or choose another folder (nothing was changed)")
    dirty = [str(tree.path) for tree in collected.trees if tree.dirty]
    if macros.placeholders:
        _warn(f"{len(macros.placeholders)} statistics are not produced by these result files at their scale and "
              f"read 'n/a (not produced at scale ...)': {', '.join(macros.placeholders)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    numbers = out_dir / "numbers.tex"
    numbers.write_text(macros.render())
    written.append(numbers)
    for stale in out_dir.glob("*.tex"):  # tables an earlier run wrote that these files no longer produce
        if stale.name not in targets and is_generated(stale):
            stale.unlink()
    for name, table in tables.items():
        path = out_dir / f"{name}.tex"
        path.write_text(table.latex())
        written.append(path)
    return {"written": written, "skipped": collected.skipped, "placeholders": list(macros.placeholders),
            "dirty": dirty, "macros": len(macros.values)}
