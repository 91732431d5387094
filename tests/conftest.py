"""Shared fixtures: float64 by default (hypergradients are checked to 1e-6 against finite differences),
one torch thread, and temporary folders for anything libraries write into the system temp dir."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.fixture(autouse=True)
def private_tmpdir(tmp_path_factory, monkeypatch):
    # SB3 and ray leave folders in the system temp dir; keep them inside pytest's.
    monkeypatch.setenv("TMPDIR", str(tmp_path_factory.mktemp("tmp")))
    monkeypatch.setenv("RAY_TMPDIR", os.environ["TMPDIR"])


def random_mdp(num_states=6, num_actions=3, num_features=4, horizon=None, seed=0, sparse=False):
    """A small random MDP with random features and a random linear true reward."""
    from irl_bilevel.tabular import TabularMDP

    g = torch.Generator().manual_seed(seed)
    features = torch.randn(num_states, num_features, generator=g)
    common = dict(
        start=torch.softmax(torch.randn(num_states, generator=g), 0),
        discount=0.9 if horizon is None else 0.95,
        horizon=horizon,
        state_features=features,
        true_reward=features @ torch.randn(num_features, generator=g),
    )
    if sparse:
        successors = torch.randint(0, num_states, (num_states, num_actions, 3), generator=g)
        probabilities = torch.rand(num_states, num_actions, 3, generator=g)
        return TabularMDP(successors=successors, successor_probabilities=probabilities / probabilities.sum(-1, True),
                          **common)
    transitions = torch.rand(num_states, num_actions, num_states, generator=g) ** 3
    return TabularMDP(transitions=transitions / transitions.sum(-1, keepdim=True), **common)


@pytest.fixture(scope="session")
def tiny_lm_path(tmp_path_factory):
    """The built-in language model's tiny recipe, built once per session into a private cache (not ~/.cache)."""
    from llm.builtin_model import BuiltinRecipe, build_builtin_model

    return build_builtin_model(BuiltinRecipe.tiny(), cache_dir=tmp_path_factory.mktemp("lm_cache"), progress=False)


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` as a module: benchmarks/ is a folder of scripts, not an installed package."""
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark",
                                                  Path(__file__).resolve().parent.parent / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
