"""The examples in docstrings run and print what they say (small, exact cases of the API and its math)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = (
    "irl_bilevel.statistics",
    "irl_bilevel.agreement",
    "irl_bilevel.losses.numerics",
    "irl_bilevel.losses.multi_objective",
    "irlb.paper.macros",
    "irlb.paper.markdown",
    "irlb.paper.results_page",
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no docstring example"
    assert result.failed == 0
