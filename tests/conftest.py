"""Shared fixtures: float64 by default (hypergradients are checked to 1e-6 against finite differences), one torch
thread, tiny SB3 experts, and a suite that writes nothing outside its own folder.

Everything the suite writes lives under ``<checkout>/.pytest-tmp/`` (git-ignored): ``base/`` is pytest's base temp
folder (``tmp_path``), ``system/`` the system temp folder of the run (SB3 loggers, torch's compile cache, Ray,
matplotlib's font cache and subprocesses all read ``TMPDIR``/``MPLCONFIGDIR``, and ``tempfile`` caches its answer,
so both are set before any test runs; ``XDG_CACHE_HOME``, ``HF_HOME`` and ``TORCH_HOME`` point there too) and
``cache/`` the expert and language-model cache (``$IRL_BILEVEL_CACHE``, never ``~/.cache``). The folder is emptied
when a session starts.

Experts: an experiment that needs an SB3 expert trains it with ``EXPERT_CONFIGS[env].default_timesteps``. The suite
replaces those budgets by :data:`TEST_EXPERT_TIMESTEPS` (a few thousand env steps, seconds each): every expert the
tests use is trained once per session, deterministically, instead of rl-zoo's 100k steps under a test's timeout
on an empty cache. Tests that need a *good* demonstrator use a hand-written controller (tests/test_gym_irl.py).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from types import ModuleType

import pytest
import torch

torch.set_num_threads(1)

# env steps of each expert the suite trains (once per session); rl-zoo's budgets are 20k-120k steps
TEST_EXPERT_TIMESTEPS = {"CartPole-v1": 4096, "Acrobot-v1": 4096, "Pendulum-v1": 1000, "MountainCar-v0": 2048,
                         "MountainCarContinuous-v0": 1000}


@pytest.hookimpl(tryfirst=True)  # before pytest's own tmp_path plugin reads --basetemp
def pytest_configure(config: pytest.Config) -> None:
    root = Path(config.rootpath) / ".pytest-tmp"
    if config.option.basetemp is None:
        config.option.basetemp = str(root / "base")
    for name in ("system", "cache"):
        shutil.rmtree(root / name, ignore_errors=True)
        (root / name).mkdir(parents=True)
    system = str(root / "system")
    # XDG_CACHE_HOME, HF_HOME and TORCH_HOME: the caches libraries would otherwise open under ~/.cache
    # (transformers' and the hub's module caches, torch's hub and kernel caches); nothing is downloaded.
    os.environ.update({"TMPDIR": system, "RAY_TMPDIR": system, "MPLCONFIGDIR": str(root / "system" / "matplotlib"),
                       "IRL_BILEVEL_CACHE": str(root / "cache"), "XDG_CACHE_HOME": str(root / "system" / "cache"),
                       "HF_HOME": str(root / "system" / "huggingface"), "TORCH_HOME": str(root / "system" / "torch")})
    tempfile.tempdir = None  # tempfile.gettempdir() reads TMPDIR again


@pytest.fixture(scope="session", autouse=True)
def tiny_expert_budgets():
    """Every expert trained through ``classic_rl.experts.train_expert`` without an explicit budget uses
    :data:`TEST_EXPERT_TIMESTEPS` (module docstring)."""
    from classic_rl import experts

    patch = pytest.MonkeyPatch()
    for env_id, steps in TEST_EXPERT_TIMESTEPS.items():
        if env_id in experts.EXPERT_CONFIGS:
            patch.setitem(experts.EXPERT_CONFIGS, env_id,
                          dataclasses.replace(experts.EXPERT_CONFIGS[env_id], default_timesteps=steps))
    yield
    patch.undo()


@pytest.fixture(autouse=True)
def float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.fixture(autouse=True)
def private_tmpdir(tmp_path_factory, monkeypatch):
    # one system temp folder per test, inside pytest's base temp folder
    folder = str(tmp_path_factory.mktemp("tmp"))
    monkeypatch.setenv("TMPDIR", folder)
    monkeypatch.setenv("RAY_TMPDIR", folder)
    monkeypatch.setattr(tempfile, "tempdir", folder)


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
