"""The paper's LaTeX values and tables as Markdown, for the results page (:mod:`irlb.paper.results_page`).

:func:`to_markdown` reads exactly the LaTeX that :mod:`irlb.paper.macros` writes (``\\ensuremath``, ``\\times10^{n}``,
``\\texttt``, ``\\textit``, escaped specials, inline math of the tables' headers), so the page prints each number
with the digits of the paper's macro. :func:`compare` chooses the words of a comparison from two confidence
intervals, so that no sentence says "higher" where the intervals overlap.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from irlb.paper.macros import Table

_SYMBOLS = {r"\ge": "≥", r"\le": "≤", r"\times": "×", r"\infty": "∞", r"\beta": "β", r"\varepsilon": "ε",
            r"\lambda": "λ", r"\kappa": "κ", r"\tau": "τ", r"\gamma": "γ", r"\alpha": "α", r"\tfrac12": "½",
            r"\textbackslash{}": "\\", r"\textasciitilde{}": "~", r"\textasciicircum{}": "^"}
_SPECIALS = {r"\&": "&", r"\%": "%", r"\$": "$", r"\#": "#", r"\_": "_", r"\{": "{", r"\}": "}"}
_SUPERSCRIPT = str.maketrans("-0123456789", "−⁰¹²³⁴⁵⁶⁷⁸⁹")


def _group(text: str, start: int) -> tuple[str, int]:
    """The balanced ``{...}`` group opening at ``text[start]``: its content and the index after it."""
    depth = 0
    for index in range(start, len(text)):
        if text[index] == "{" and (index == 0 or text[index - 1] != "\\"):
            depth += 1
        elif text[index] == "}" and text[index - 1] != "\\":
            depth -= 1
            if depth == 0:
                return text[start + 1:index], index + 1
    raise ValueError(f"unbalanced braces in {text!r}")


def _unwrap(text: str, command: str, before: str = "", after: str = "") -> str:
    """Replace every ``\\command{content}`` by ``before + content + after`` (content converted first)."""
    marker = "\\" + command + "{"
    while marker in text:
        start = text.index(marker)
        content, end = _group(text, start + len(marker) - 1)
        text = text[:start] + before + to_markdown(content) + after + text[end:]
    return text


def _subscripts(math_text: str) -> str:
    """Inline math as text: subscripts written inline (``L_{1}`` → ``L1``)."""
    return re.sub(r"_\{([^}]*)\}|_(\S)", lambda sub: sub.group(1) or sub.group(2), math_text)


def to_markdown(latex: str) -> str:
    """LaTeX of a macro value or table cell as Markdown text.

    >>> to_markdown(r"\\ensuremath{4.7\\times10^{-7}}")
    '4.7e-7'
    >>> to_markdown(r"\\ensuremath{-0.030}")
    '−0.030'
    >>> to_markdown(r"\\ensuremath{\\ge}\\,10 s, \\texttt{apo\\_zero}, 50{,}000, $S=1024$")
    '≥ 10 s, `apo_zero`, 50,000, S=1024'
    """
    text = latex
    text = _unwrap(text, "texttt", "`", "`")
    text = _unwrap(text, "textit", "*", "*")
    text = _unwrap(text, "ensuremath")
    # Scientific notation as the README writes it (4.7e-7); any other power as superscripts.
    text = re.sub(r"\\times10\^\{(-?\d+)\}", r"e\1", text)
    text = re.sub(r"\^\{(-?\d+)\}", lambda match: match.group(1).translate(_SUPERSCRIPT), text)
    text = re.sub(r"\^(\d)", lambda match: match.group(1).translate(_SUPERSCRIPT), text)
    text = text.replace("{,}", ",")
    for command, symbol in sorted(_SYMBOLS.items(), key=lambda item: -len(item[0])):
        text = re.sub(re.escape(command) + r"(?![A-Za-z])", symbol.replace("\\", "\\\\"), text)
    text = text.replace(r"\,/\,", " / ").replace(r"\,", " ").replace("\\ ", " ")
    for escaped, char in _SPECIALS.items():
        text = text.replace(escaped, "\0" + char)  # kept from the math and dash rules below
    text = re.sub(r"\$([^$]*)\$", lambda match: _subscripts(match.group(1)), text)
    text = text.replace("---", "—").replace("--", "–").replace("``", "“").replace("''", "”")
    # A leading ASCII minus of a number (an escaped Unicode minus came through ensuremath already).
    text = re.sub(r"(?<![\w.])-(?=\d)", "−", text)
    return text.replace("\0", "")


def markdown_cell(latex: str) -> str:
    """A table cell: Markdown, with ``|`` escaped."""
    return to_markdown(latex).replace("|", r"\|")


def markdown_table(table: Table, skip_empty_first: bool = True) -> str:
    """A :class:`~irlb.paper.macros.Table` as a GitHub Markdown table (columns right-aligned where the LaTeX
    column is ``r``, centred where ``c``). A group's first cell that LaTeX leaves empty stays empty."""
    columns = re.findall(r"[lcr]|p\{[^}]*\}", re.sub(r">\{[^}]*\}", "", table.column_spec))
    align = {"l": "---", "c": ":---:", "r": "---:"}
    lines = ["| " + " | ".join(markdown_cell(cell) for cell in table.header) + " |",
             "|" + "|".join(align.get(column, "---") for column in columns[:len(table.header)]) + "|"]
    for row in table.rows:
        lines.append("| " + " | ".join(markdown_cell(cell) for cell in row) + " |")
    return "\n".join(lines)


@dataclass(frozen=True)
class Interval:
    """A point estimate (the IQM over seeds) with its confidence interval ``[low, high]``."""

    iqm: float
    low: float
    high: float


def compare(a: Interval, b: Interval) -> str:
    """The words for ``a`` against ``b``: "higher"/"lower" alone only where the intervals are apart.

    >>> compare(Interval(0.9, 0.8, 1.0), Interval(0.5, 0.4, 0.6))
    'higher, intervals apart'
    >>> compare(Interval(0.5, 0.3, 0.7), Interval(0.6, 0.4, 0.8))
    'lower IQM, intervals overlap'
    >>> compare(Interval(1.0, 1.0, 1.0), Interval(1.0, 1.0, 1.0))
    'equal IQM, intervals overlap'
    """
    if any(math.isnan(value) for value in (a.iqm, a.low, a.high, b.iqm, b.low, b.high)):
        return "not comparable (an interval is missing)"
    if a.low > b.high:
        return "higher, intervals apart"
    if a.high < b.low:
        return "lower, intervals apart"
    if a.iqm > b.iqm:
        return "higher IQM, intervals overlap"
    if a.iqm < b.iqm:
        return "lower IQM, intervals overlap"
    return "equal IQM, intervals overlap"


def apart(a: Interval, b: Interval) -> bool:
    """True when the two intervals do not overlap."""
    return a.low > b.high or a.high < b.low
