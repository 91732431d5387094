"""Shared fixtures: float64 by default (hypergradients are checked to 1e-6 against finite differences), one torch
thread, tiny SB3 experts, and a suite that writes nothing outside its own folder.

Everything the suite writes lives under ``<checkout>/.pytest-tmp/`` (git-ignored): ``base/`` is pytest's base temp
folder (``tmp_path``), ``system/`` the system temp folder of the run (SB3 loggers, torch's compile cache, Ray,
matplotlib's font cache and subprocesses all read ``TMPDIR``/``MPLCONFIGDIR``, and ``tempfile`` caches its answer,
so both are set before any test runs; ``XDG_CACHE_HOME``, ``HF_HOME`` and ``TORCH_HOME`` point there too) and
``cache/`` the expert and language-model cache (``$IRL_BILEVEL_CACHE``, never ``~/.cache``). The folder is emptied
when a session starts (by the controller when the suite runs on several workers, `pytest -n`).

Experts: an experiment that needs an SB3 expert trains it with ``EXPERT_CONFIGS[env].default_timesteps``. The suite
replaces those budgets by :data:`TEST_EXPERT_TIMESTEPS` (a few thousand env steps, seconds each): every expert the
tests use is trained once per session, deterministically, instead of rl-zoo's 100k steps under a test's timeout
on an empty cache. Tests that need a *good* demonstrator use a hand-written controller (tests/test_gym_irl.py).
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

from irl_bilevel.precision import default_dtype

torch.set_num_threads(1)

# env steps of each expert the suite trains (once per session); rl-zoo's budgets are 20k-120k steps
TEST_EXPERT_TIMESTEPS = {"CartPole-v1": 4096, "Acrobot-v1": 4096, "Pendulum-v1": 1000, "MountainCar-v0": 2048,
                         "MountainCarContinuous-v0": 1000}


@pytest.hookimpl(tryfirst=True)  # before pytest's own tmp_path plugin reads --basetemp
def pytest_configure(config: pytest.Config) -> None:
    root = Path(config.rootpath) / ".pytest-tmp"
    if config.option.basetemp is None:
        config.option.basetemp = str(root / "base")
    if "PYTEST_XDIST_WORKER" not in os.environ:  # the controller empties them; its workers share them (`-n`)
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
    with default_dtype(torch.float64):
        yield


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


@pytest.fixture
def lm(tiny_lm_path):
    """A fresh ``(model, tokenizer)`` of the tiny built-in model (loaded per test: tests may train it)."""
    from llm.models import load_causal_lm

    return load_causal_lm(tiny_lm_path)


def run_tiny_experiment(module: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """Run the experiment ``module`` (e.g. ``"llm.experiments.smollm2_frontier"``) at its tiny scale into a fresh
    folder: ``(folder, the record it wrote)``. For module-scoped fixtures that several tests read."""
    experiment = importlib.import_module(module)
    folder = tmp_path_factory.mktemp(module.rsplit(".", 1)[-1])
    path = experiment.run("tiny", folder, progress=False)
    return folder, json.loads(path.read_text())


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` as a module: benchmarks/ is a folder of scripts, not an installed package."""
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark",
                                                  Path(__file__).resolve().parent.parent / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CHAT_TEMPLATE = ("{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}<|end|>"
                 "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}")
"""A chat template for the test tokenizer: ``<|role|>content<|end|>`` per message, ``<|assistant|>`` to generate."""
CHAT_SPECIAL_TOKENS = ("<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>")


def chat_tokenizer():
    """A byte-level BPE tokenizer (GPT-2's scheme: any text encodes) trained on a few hundred reviews of the
    built-in grammar, with role tokens and :data:`CHAT_TEMPLATE`, as a user's model folder would carry one.
    ``<|endoftext|>`` is BOS, EOS and padding, as in GPT-2."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from llm.builtin_model import ReviewGrammar

    texts = [text for text, _ in ReviewGrammar().reviews(300, seed=0)]
    texts += ["A=[0, 1, 2] B=[] C=[] Move: A->C", "Room 3. Doors: 1, 4. Go to room 4."]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=list(CHAT_SPECIAL_TOKENS), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<|endoftext|>",
                                      eos_token="<|endoftext|>", pad_token="<|endoftext|>", model_max_length=1024)
    wrapped.chat_template = CHAT_TEMPLATE
    return wrapped


def tiny_config(architecture: str, tokenizer):
    """A random-init config of ``architecture`` (gpt2, llama, qwen2): 2 layers, hidden 32, vocabulary 512."""
    from transformers import GPT2Config, LlamaConfig, Qwen2Config

    special = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
               "pad_token_id": tokenizer.pad_token_id}
    if architecture == "gpt2":
        return GPT2Config(vocab_size=512, n_positions=1024, n_embd=32, n_layer=2, n_head=4, resid_pdrop=0.0,
                          embd_pdrop=0.0, attn_pdrop=0.0, **special)
    if architecture == "llama":
        return LlamaConfig(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024, **special)
    if architecture == "qwen2":
        return Qwen2Config(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                           tie_word_embeddings=True, **special)
    raise ValueError(architecture)


ARCHITECTURES = ("gpt2", "llama", "qwen2")


@pytest.fixture(scope="session")
def hf_model_paths(tmp_path_factory) -> dict[str, Path]:
    """Random-init GPT-2, Llama and Qwen2 causal LMs (2 layers, hidden 32) with a chat-template tokenizer, each
    written once per session with ``save_pretrained`` (a user's local model folder)."""
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("hf_models")
    tokenizer = chat_tokenizer()
    paths = {}
    for seed, architecture in enumerate(ARCHITECTURES):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = AutoModelForCausalLM.from_config(tiny_config(architecture, tokenizer), dtype=torch.float32)
        folder = root / architecture
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        paths[architecture] = folder
    return paths
