"""LaTeX for the paper: macro names from result keys, numbers and text formatted for LaTeX, and the macro and table
containers that :mod:`irlb.paper.build` fills. Nothing here reads a result file.

The results page (:mod:`irlb.paper.results_page`) renders the same values and tables as Markdown through
:func:`irlb.paper.markdown.to_markdown`, so the paper and the page print each number with the same digits."""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

_DIGITS = ["Zero", "One", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight", "Nine"]


def macro_name(*parts: Any) -> str:
    """Letters-only CamelCase macro name from keys.

    Words are split at anything that is not a letter or digit and at lower-to-upper changes; digits are spelled out
    one by one (LaTeX control words are letters only):

    >>> macro_name("mce", "speedup_dense", "S1024")
    'MceSpeedupDenseSOneZeroTwoFour'
    """
    words: list[str] = []
    for part in parts:
        text = str(part)
        text = re.sub(r"([a-z])([A-Z])", r"\1 \2", text)
        text = re.sub(r"(\d)", r" \1 ", text)
        for word in re.split(r"[^A-Za-z0-9]+", text):
            if not word:
                continue
            if word.isdigit():
                words.extend(_DIGITS[int(d)] for d in word)
            else:
                words.append(word[0].upper() + word[1:])
    name = "".join(words)
    if not name or not name.isalpha() or not name[0].isupper():
        raise ValueError(f"cannot make a LaTeX macro name from {parts!r}")
    return name


def format_number(value: float | int | None, digits: int = 2, scientific_below: float = 1e-2,
                  scientific_above: float = 1e5) -> str:
    """A number as LaTeX: integers as they are, others to ``digits`` significant digits (3 from 100 up),
    small or large ones as ``4.7\\times10^{-7}``; always safe in text and in math (``\\ensuremath``)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise ValueError("no value")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}".replace(",", "{,}") if abs(value) >= 10000 else str(value)
    if math.isinf(value):
        return r"\ensuremath{\infty}" if value > 0 else r"\ensuremath{-\infty}"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude < scientific_below or magnitude >= scientific_above:
        mantissa, exponent = f"{value:.{digits - 1}e}".split("e")
        return rf"\ensuremath{{{mantissa}\times10^{{{int(exponent)}}}}}"
    if magnitude >= 100:
        return f"{value:.0f}"
    decimals = max(digits - 1 - math.floor(math.log10(magnitude)), 0)
    text = f"{value:.{decimals}f}"
    return rf"\ensuremath{{{text}}}" if text.startswith("-") else text


def format_fixed(value: float, decimals: int = 2) -> str:
    """Fixed decimals (for quantities in [0, 1] such as accuracies, κ, normalized returns)."""
    if value is None or math.isnan(value):
        return "--"
    text = f"{value:.{decimals}f}"
    return rf"\ensuremath{{{text}}}" if text.startswith("-") else text


_UNICODE = {"–": "--", "—": "---", "−": r"\ensuremath{-}", "½": r"\ensuremath{\tfrac12}", "≤": r"\ensuremath{\le}",
            "≥": r"\ensuremath{\ge}", "×": r"\ensuremath{\times}", "β": r"\ensuremath{\beta}",
            "ε": r"\ensuremath{\varepsilon}", "λ": r"\ensuremath{\lambda}", "’": "'", "“": "``", "”": "''"}
_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
            "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def escape(text: str) -> str:
    """Plain text as LaTeX (special characters escaped, common Unicode symbols mapped)."""
    out = []
    for char in str(text):
        if char in _SPECIAL:
            out.append(_SPECIAL[char])
        elif char in _UNICODE:
            out.append(_UNICODE[char])
        elif ord(char) < 128:
            out.append(char)
        else:
            out.append(unicodedata.normalize("NFKD", char).encode("ascii", "ignore").decode() or "?")
    return "".join(out)


def tt(name: str) -> str:
    return rf"\texttt{{{escape(name)}}}"


def absent(value: Any) -> bool:
    """True for a statistic a result file does not hold: None (JSON null) or NaN."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def not_produced(scale: str | None) -> str:
    """The visible placeholder for a statistic the result file does not produce (e.g. a comparison that needs more
    seeds than a tiny run has): italic ``n/a (not produced at scale tiny)`` in the PDF, never an empty or made-up
    number."""
    where = f"scale {escape(scale)}" if scale else "this scale"
    return rf"\textit{{n/a (not produced at {where})}}"


class Macros:
    """Collects ``name → LaTeX`` with the file each came from; a name defined twice is an error.

    ``source`` and ``scale`` describe the result file being read (set by :func:`irlb.paper.build.generate`). A value
    that is absent (None or NaN: the file does not produce that statistic at its scale) becomes the placeholder of
    :func:`not_produced`, and its name is listed in ``placeholders``."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.numbers: dict[str, float] = {}
        """The unformatted value of every numeric macro (what comparisons of intervals read)."""
        self.sources: dict[str, str] = {}
        self.placeholders: list[str] = []
        self.source = ""
        self.scale: str | None = None

    def add(self, name: str, value: str, number: float | None = None) -> None:
        """Define ``\\name`` as the LaTeX ``value``; ``number`` is its unformatted value where it has one."""
        if name in self.values:
            raise ValueError(f"macro \\{name} defined twice ({self.sources[name]} and {self.source})")
        self.values[name] = value
        self.sources[name] = self.source
        if number is not None:
            self.numbers[name] = float(number)

    def missing(self, parts: Iterable[Any]) -> None:
        """Define the macro as the placeholder: the result file does not produce this statistic."""
        name = macro_name(*parts)
        self.add(name, not_produced(self.scale))
        self.placeholders.append(name)

    def number(self, parts: Iterable[Any], value: Any, **options: Any) -> None:
        if absent(value):
            self.missing(parts)
        else:
            name = macro_name(*parts)
            self.add(name, format_number(value, **options))
            if not isinstance(value, bool):
                self.numbers[name] = float(value)

    def fixed(self, parts: Iterable[Any], value: float | None, decimals: int = 2) -> None:
        if value is None or math.isnan(value):
            self.missing(parts)
        else:
            name = macro_name(*parts)
            self.add(name, format_fixed(float(value), decimals))
            self.numbers[name] = float(value)

    def remove(self, names: Iterable[str]) -> None:
        """Forget macros (those of a file its handler could not read)."""
        for name in names:
            del self.values[name], self.sources[name]
            self.numbers.pop(name, None)
        self.placeholders = [n for n in self.placeholders if n in self.values]

    def fixed_interval(self, parts: Iterable[Any], stats: Mapping[str, Any] | None, decimals: int = 2) -> None:
        """``<parts>Iqm``, ``<parts>Low`` and ``<parts>High`` of an IQM with its confidence interval (placeholders
        where ``stats`` is missing or a bound is absent)."""
        parts = list(parts)
        for bound in ("iqm", "low", "high"):
            value = None if stats is None else stats.get(bound)
            self.fixed([*parts, bound], None if value is None else float(value), decimals)

    def text(self, parts: Iterable[Any], value: str | None) -> None:
        if value is None:
            self.missing(parts)
        else:
            self.add(macro_name(*parts), escape(value))

    def render(self) -> str:
        lines = ["% Generated by `irlb paper` from the result files named below; do not edit.", ""]
        current = None
        for name, value in self.values.items():
            if self.sources[name] != current:
                current = self.sources[name]
                lines.append(f"% from {current}")
            lines.append(f"\\newcommand{{\\{name}}}{{{value}}}")
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Table:
    """A table of LaTeX cells: ``header [C]``, ``rows [R][C]``, the file it came from, and the row indices where a
    new group starts (a rule in LaTeX). :meth:`latex` is the paper's booktabs tabular; the results page renders the
    same cells as Markdown (:func:`irlb.paper.markdown.markdown_table`)."""

    column_spec: str
    header: list[str]
    rows: list[list[str]]
    source: str
    groups: list[int] = field(default_factory=list)

    def latex(self) -> str:
        """A booktabs tabular (no float: the paper wraps it), with the file it came from in a comment."""
        lines = [f"% Generated by `irlb paper` from {self.source}; do not edit.",
                 rf"\begin{{tabular}}{{{self.column_spec}}}", r"\toprule", " & ".join(self.header) + r" \\",
                 r"\midrule"]
        for index, row in enumerate(self.rows):
            if index and index in self.groups:
                lines.append(r"\midrule")
            lines.append(" & ".join(row) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}", ""]
        return "\n".join(lines)


def tabular(column_spec: str, header: list[str], rows: list[list[str]], source: str,
            groups: list[int] | None = None) -> Table:
    """A :class:`Table` of LaTeX cells (``column_spec`` as LaTeX's ``tabular`` takes it)."""
    return Table(column_spec, header, rows, source, list(groups or []))


def testbed_key(env_id: str) -> str:
    """``MountainCar-v0`` → ``MountainCar`` (macro names without the version)."""
    return env_id.split("-")[0]


def iqm_ci(stats: dict[str, Any]) -> str:
    """``IQM [low, high]`` of an ``iqm_with_ci`` dict; ``--`` where no seed has a value."""
    if not stats["n"] or math.isnan(float(stats["iqm"])):
        return "--"
    iqm, low, high = (format_fixed(float(stats[bound])) for bound in ("iqm", "low", "high"))
    return f"{iqm} [{low}, {high}]"


Handler = Callable[[dict[str, Any], Macros, str], dict[str, Table]]
"""``handler(data, macros, source) -> {table name: table}``: adds the macros of one result file, returns its tables."""
