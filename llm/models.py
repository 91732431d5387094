"""Causal language models for the language-model side: loading, LoRA, reference model, log-probabilities, sampling.

* :func:`load_causal_lm` loads any Hugging Face causal LM and its tokenizer (a local folder, or a hub model id
  named explicitly), on the device and dtype of :func:`select_device` / :func:`select_dtype`.
* :func:`with_lora` wraps a model with a peft LoRA adapter (:class:`LoraSettings`). The *reference model*
  ``π_ref`` is the same module with the adapter disabled (:func:`reference_mode`), so there is no second copy.
* :func:`collate_completions` builds ``prompt + completion`` batches from token lists, and
  :func:`sequence_logprobs` gives ``log π(y_t | x, y_<t)`` per completion token and summed per sequence, with
  the prompt and the padding masked out. :func:`preference_batch` turns chosen/rejected completions into the
  core's :class:`irl_bilevel.losses.batches.PreferenceBatch`.
* :func:`generate_completions` samples completions (token ids and text) with a seed.
* :func:`save_adapter` / :func:`load_adapter` store adapters in peft's format (loadable with
  ``PeftModel.from_pretrained``) plus a JSON file with the LoRA settings and the caller's metadata.

Transformers and peft are imported inside the functions that need them, so that importing this module is cheap.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import torch

from irl_bilevel.config import Config, PositiveFloat, PositiveInt, Range
from irl_bilevel.losses.batches import PreferenceBatch
from irl_bilevel.precision import default_dtype
from irl_bilevel.validation import ValidationError, check_safetensors, read_json_file
from llm.completion_logprobs import (
    CompletionPositions,
    completion_logprobs,
    fuse_activations,
    module_device,
    padded_inputs,
    token_logprobs_at,
)

ADAPTER_INFO_FILE = "irl_bilevel_adapter.json"


# ---------------------------------------------------------------------- device and dtype
def select_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else ``cuda`` when a GPU is visible, else ``cpu``. A device this machine does not have
    (``cuda`` without a visible GPU, ``cuda:3`` on a machine with two) is a :class:`ValidationError` naming
    ``--device``, not an error deep inside the first tensor move."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValidationError(f"device: expected a torch device such as 'cpu' or 'cuda:0', got {device!r}") \
            from error
    _check_available(resolved)
    return resolved


def _check_available(device: torch.device) -> None:
    if device.type in ("cpu", "meta"):
        return
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            built = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise ValidationError(f"device: --device {device} asks for a GPU, but torch sees none (torch "
                                  f"{torch.__version__}, {built}); use --device cpu or leave --device out")
        if device.index is not None and device.index >= count:
            raise ValidationError(f"device: --device {device} asks for GPU {device.index}, but torch sees {count} "
                                  f"(cuda:0 to cuda:{count - 1})")
        return
    backend = getattr(torch, device.type, None)
    is_available = getattr(backend, "is_available", None) or getattr(getattr(torch.backends, device.type, None),
                                                                     "is_available", None)
    if callable(is_available) and not is_available():
        raise ValidationError(f"device: --device {device} is not available on this machine; use --device cpu or "
                              f"leave --device out")


def select_dtype(device: torch.device, dtype: torch.dtype | str | None = None) -> torch.dtype:
    """``dtype`` if given (a ``torch.dtype`` or its name, e.g. ``"bfloat16"``); else bfloat16 on a CUDA device
    that supports it, float32 otherwise (CPU kernels are fastest and exact in float32)."""
    if dtype is not None:
        if isinstance(dtype, str):
            resolved = getattr(torch, dtype, None)
            if not isinstance(resolved, torch.dtype) or not resolved.is_floating_point:
                raise ValidationError(f"dtype: expected a floating dtype name such as 'float32' or 'bfloat16', "
                                      f"got {dtype!r}")
            return resolved
        return dtype
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


# ---------------------------------------------------------------------- loading
def _looks_local(name_or_path: str) -> bool:
    """A path rather than a hub id ``name`` / ``org/name``: absolute, ``./``, ``../``, ``~``, or several ``/``."""
    return (os.path.isabs(name_or_path) or name_or_path.startswith((".", "~")) or name_or_path.count("/") > 1
            or "\\" in name_or_path)


def load_causal_lm(name_or_path: str | Path, device: str | torch.device | None = None,
                   dtype: torch.dtype | str | None = None, *, allow_download: bool | None = None):
    """``(model, tokenizer)``: a causal LM (``AutoModelForCausalLM``) in eval mode on ``device`` in ``dtype``.

    ``name_or_path``: a short name of :data:`llm.pretrained.NAMED_MODELS` (``"smollm2-135m-instruct"``, built
    once from its registry package into the model cache by :func:`llm.pretrained.provision`), an existing local
    folder (loaded with ``local_files_only=True``, never touching the hub), or a hub model id such as ``"gpt2"``
    or ``"Qwen/Qwen2.5-0.5B"`` (downloaded into the Hugging Face cache unless ``HF_HUB_OFFLINE=1`` or
    ``allow_download=False``). Something that looks like a path (absolute,
    ``./``, ``~``, several ``/``) but does not exist is a :class:`ValidationError`, not a hub query.

    The tokenizer gets a pad token (its EOS token when it has none, as GPT-2 needs) and left padding (what batched
    generation needs). A tokenizer with more tokens than the model's embedding table is a
    :class:`ValidationError` (mismatched model and tokenizer), and so is a local folder that
    :func:`check_model_folder` finds damaged (its config, tokenizer or weight files), a config.json of no causal LM,
    and weights that do not fit the model or would leave some of its tensors random. Device and dtype:
    :func:`select_device`, :func:`select_dtype`.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llm.pretrained import is_named_model, provision_named

    text = str(name_or_path)
    if not text:
        raise ValidationError("name_or_path: expected a local model folder or a hub model id, got ''")
    local_path = provision_named(text) if is_named_model(text) else Path(text).expanduser()
    if local_path.exists():
        if not (local_path / "config.json").is_file():
            raise ValidationError(f"name_or_path: {local_path} has no config.json; expected a folder written by "
                                  f"save_pretrained (or build_builtin_model)")
        source, local_only = str(local_path), True
    elif isinstance(name_or_path, Path) or _looks_local(text):
        raise ValidationError(f"name_or_path: no model folder at {local_path} (the path does not exist); build the "
                              f"built-in model with llm.builtin_model.build_builtin_model or give a hub model id")
    else:
        source, local_only = text, allow_download is False
    device = select_device(device)
    dtype = select_dtype(device, dtype)
    if local_only:
        check_model_folder(local_path)
    model: Any  # transformers' from_pretrained is typed so that `.to(device)` does not type-check
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
    except (OSError, ValueError) as error:
        raise ValidationError(f"tokenizer: could not load the tokenizer of {text!r} ({error})") from error
    if len(tokenizer) < 2:
        raise ValidationError(f"tokenizer: the tokenizer of {text!r} has no vocabulary (no tokenizer files were "
                              f"found for it); save one into the model folder with tokenizer.save_pretrained")
    loaded: Any
    try:
        loaded = AutoModelForCausalLM.from_pretrained(source, local_files_only=local_only, dtype=dtype,
                                                      output_loading_info=True)
    except OSError as error:
        raise ValidationError(f"name_or_path: could not load {text!r} ({error}); check the name, or set "
                              f"allow_download / HF_HUB_OFFLINE as intended") from error
    except ValueError as error:  # transformers: a config.json of an unknown model type, or of no causal LM
        reason = " ".join(str(error).split())[:300]
        raise ValidationError(f"name_or_path: {text!r} is not a causal language model transformers can build from "
                              f"its config.json ({reason})") from error
    except RuntimeError as error:
        if "mismatched_sizes" not in str(error):
            raise
        files = sorted(p.name for p in local_path.glob("*.safetensors")) if local_only else []
        raise ValidationError(f"name_or_path: the weights of {text!r} {files} do not fit the architecture its "
                              f"config.json describes (tensors of other shapes); the folder mixes files of different "
                              f"models") from error
    model, info = loaded
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        raise ValidationError(f"name_or_path: the weights of {text!r} lack {len(missing)} tensor(s) of the model "
                              f"(e.g. {missing[:3]}); they would start random. The weight files are incomplete or "
                              f"belong to another model")
    model.to(device)
    model.eval()
    fuse_activations(model)
    prepare_tokenizer(tokenizer, model)
    return model, tokenizer


# Files a Hugging Face tokenizer is saved as (at least one is in every model folder that carries a tokenizer).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "vocab.txt", "tokenizer.model",
                   "spiece.model", "sentencepiece.bpe.model")
_MODEL_FOLDER_HINT = "; the model folder is damaged: copy or save it again (save_pretrained)"


def check_model_folder(folder: Path) -> None:
    """Check what a local model folder's loading reads before transformers reads it, so that a damaged file is
    named: ``config.json`` and the tokenizer's JSON files parse, every ``*.safetensors`` file is complete, and a
    tokenizer is there at all (transformers would build an empty one)."""
    read_json_file(folder / "config.json", "config.json", recovery=_MODEL_FOLDER_HINT)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (folder / name).exists():
            read_json_file(folder / name, "tokenizer", recovery=_MODEL_FOLDER_HINT)
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ValidationError(f"tokenizer: no tokenizer in {folder} (none of {list(TOKENIZER_FILES)}); save the "
                              f"model's tokenizer there with tokenizer.save_pretrained({str(folder)!r})")
    for weights in sorted(folder.glob("*.safetensors")):
        check_safetensors(weights, "model weights", _MODEL_FOLDER_HINT)


def prepare_tokenizer(tokenizer, model) -> None:
    """Check that ``tokenizer`` fits ``model``; give it a pad token (EOS if missing) and left padding."""
    embeddings = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > embeddings:
        raise ValidationError(f"tokenizer: has {len(tokenizer)} tokens but the model's embedding table has "
                              f"{embeddings} rows; the tokenizer does not belong to this model")
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise ValidationError("tokenizer: has neither a pad nor an EOS token; set tokenizer.pad_token first")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    if model.generation_config is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id


# ---------------------------------------------------------------------- LoRA and the reference model
@dataclass(frozen=True)
class LoraSettings(Config):
    """LoRA (Hu et al. 2022): ``W x + (alpha / r) B A x`` with rank ``r``; ``B`` starts at zero, so a fresh
    adapter leaves the model unchanged. ``target_modules``: module names to adapt (``None``: peft's default for
    the architecture, e.g. ``c_attn`` for GPT-2, ``q_proj``/``v_proj`` for Llama and Qwen)."""

    r: PositiveInt = 8
    """LoRA rank"""
    alpha: PositiveFloat = 16.0
    """LoRA scaling alpha (the update is scaled by alpha / r)"""
    dropout: Annotated[float, Range(0, 1, high_open=True)] = 0.0
    """dropout on the adapter's input"""
    target_modules: tuple[str, ...] | None = field(default=None, metadata={"aliases": ("--target-modules",)})
    """module names to adapt (comma-separated or one per token); null: peft's default for the architecture"""

    def validate(self) -> None:
        if self.target_modules is not None and (not self.target_modules or not all(self.target_modules)):
            raise ValidationError(f"target_modules: expected module names, got {list(self.target_modules)!r}")


def with_lora(model, settings: LoraSettings | None = None, seed: int | None = None):
    """``model`` wrapped (in place) in a peft ``PeftModel`` with a fresh LoRA adapter; only the adapter trains.

    The adapter's ``A`` matrices are drawn from the global torch RNG, forked and seeded with ``seed`` when given.
    Adapter weights are float32 (peft keeps them so on bf16/fp16 base models too), whatever torch's default dtype.
    """
    from peft import LoraConfig, get_peft_model
    from peft.utils.error import NoMatchingPeftModuleError
    from transformers.pytorch_utils import Conv1D

    settings = settings or LoraSettings()
    options: dict[str, Any] = {"r": settings.r, "lora_alpha": settings.alpha, "lora_dropout": settings.dropout,
                               "target_modules": list(settings.target_modules) if settings.target_modules else None}
    config = LoraConfig(**options, task_type="CAUSAL_LM")  # lora_alpha is a float (peft annotates it int)
    config = _with_fan_in_fan_out(model, config, Conv1D)
    # peft builds the LoRA layers in the default dtype (a float64 default would make float64 adapters)
    with warnings.catch_warnings(), default_dtype(torch.float32), torch.random.fork_rng(devices=[]):
        # peft 0.21 reads transformers 5's deprecated `is_gradient_checkpointing` property (a FutureWarning).
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        if seed is not None:
            torch.manual_seed(seed)
        try:
            return get_peft_model(model, config)
        except NoMatchingPeftModuleError as error:
            raise ValidationError(f"target_modules: {sorted(settings.target_modules or [])} match no module of the "
                                  f"model; its adaptable modules are {adaptable_modules(model)}") from error


def adaptable_modules(model) -> list[str]:
    """The names (last component, deduplicated) of ``model``'s modules LoRA can adapt: linear layers, GPT-2's
    ``Conv1D``, embeddings and convolutions; what ``target_modules`` may name."""
    from transformers.pytorch_utils import Conv1D

    kinds = (torch.nn.Linear, torch.nn.Embedding, torch.nn.Conv1d, torch.nn.Conv2d, Conv1D)
    return sorted({name.split(".")[-1] for name, module in model.named_modules() if name and isinstance(module, kinds)})




def _with_fan_in_fan_out(model, config, conv1d_type):
    """GPT-2 stores its projections as ``Conv1D`` (weights transposed): tell peft, instead of letting it warn."""
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

    targets = config.target_modules
    if targets is None:
        targets = TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(model.config.model_type, ())
    targets = set(targets)
    adapted = [m for name, m in model.named_modules() if name.split(".")[-1] in targets]
    if adapted and all(isinstance(m, conv1d_type) for m in adapted):
        config.fan_in_fan_out = True
    return config


def is_peft_model(model) -> bool:
    return hasattr(model, "disable_adapter") and hasattr(model, "peft_config")


@contextlib.contextmanager
def reference_mode(model) -> Iterator[Any]:
    """Within the block, ``model`` is the reference ``π_ref``: its LoRA adapter is disabled (``disable_adapter``).

    A model without an adapter is its own reference. Gradients still flow unless the caller uses ``no_grad``
    (:func:`reference_logprobs` does).
    """
    if is_peft_model(model):
        with model.disable_adapter():
            yield model
    else:
        yield model


# ---------------------------------------------------------------------- batches of prompt + completion
@dataclass(frozen=True)
class CompletionBatch:
    """``B`` sequences ``prompt + completion`` right-padded to length ``T``.

    ``input_ids [B, T]`` (long), ``attention_mask [B, T]`` (1 on real tokens), ``completion_mask [B, T]`` (1 on
    the completion's tokens only: not the prompt, not the padding), ``prompt_lengths [B]``,
    ``completion_lengths [B]``.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    completion_mask: torch.Tensor
    prompt_lengths: torch.Tensor
    completion_lengths: torch.Tensor

    @property
    def batch_size(self) -> int:
        return int(self.input_ids.shape[0])

    def to(self, device: torch.device | str) -> CompletionBatch:
        return CompletionBatch(*(t.to(device) for t in dataclasses.astuple(self)))


def _token_lists(value: Sequence[Sequence[int]], field: str) -> list[list[int]]:
    try:
        lists = [[int(token) for token in tokens] for tokens in value]
    except (TypeError, ValueError) as error:
        raise ValidationError(f"{field}: expected a list of token-id lists") from error
    if not lists:
        raise ValidationError(f"{field}: is empty; expected at least one sequence")
    return lists


def collate_completions(prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]],
                        pad_token_id: int, max_length: int | None = None) -> CompletionBatch:
    """Concatenate each prompt with its completion and right-pad to the longest sequence.

    Every completion needs at least one token (a generated completion that stops at once holds the EOS token).
    ``max_length`` (e.g. the model's context): longer sequences are a :class:`ValidationError`, not silently cut.
    """
    prompts = _token_lists(prompt_ids, "prompt_ids")
    completions = _token_lists(completion_ids, "completion_ids")
    if len(prompts) != len(completions):
        raise ValidationError(f"completion_ids: expected one completion per prompt ({len(prompts)}), got "
                              f"{len(completions)}")
    for row, completion in enumerate(completions):
        if not completion:
            raise ValidationError(f"completion_ids: completion {row} is empty; expected at least one token")
    for row, prompt in enumerate(prompts):
        if not prompt:
            raise ValidationError(f"prompt_ids: prompt {row} is empty; a causal LM needs at least one token (e.g. "
                                  f"BOS) to predict the first completion token from")
    lengths = [len(p) + len(c) for p, c in zip(prompts, completions)]
    width = max(lengths)
    if max_length is not None and width > max_length:
        raise ValidationError(f"completion_ids: a prompt + completion has {width} tokens, more than max_length "
                              f"{max_length}")
    input_ids = torch.full((len(prompts), width), pad_token_id, dtype=torch.long)
    attention = torch.zeros(len(prompts), width, dtype=torch.long)
    completion_mask = torch.zeros(len(prompts), width, dtype=torch.long)
    for row, (prompt, completion) in enumerate(zip(prompts, completions)):
        input_ids[row, :lengths[row]] = torch.tensor(prompt + completion, dtype=torch.long)
        attention[row, :lengths[row]] = 1
        completion_mask[row, len(prompt):lengths[row]] = 1
    return CompletionBatch(input_ids, attention, completion_mask,
                           torch.tensor([len(p) for p in prompts]), torch.tensor([len(c) for c in completions]))


def encode_texts(tokenizer, prompts: Sequence[str], completions: Sequence[str]) -> tuple[list[list[int]],
                                                                                        list[list[int]]]:
    """Token lists of text prompts (with the tokenizer's special tokens, e.g. BOS) and completions (without).

    Tokenizing prompt and completion separately may split a word at their boundary differently than the joint
    text would; keep the token ids that :func:`generate_completions` returns where exactness matters.
    """
    prompt_ids = tokenizer(list(prompts), add_special_tokens=True)["input_ids"]
    completion_ids = tokenizer(list(completions), add_special_tokens=False)["input_ids"]
    return prompt_ids, completion_ids


# ---------------------------------------------------------------------- log-probabilities
def token_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """``[B, T−1]``: ``log π(x_{t+1} | x_≤t)`` for ``t = 0..T−2``, in float32.

    The shift: the logits at position ``t`` predict token ``t + 1``, so column ``t`` of the result scores token
    ``input_ids[:, t + 1]``. Position ids count real tokens only (``cumsum(attention_mask) − 1``), so padding on
    either side does not change the result.
    """
    position_ids = (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)
    logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids).logits
    logits = logits[:, :-1].float()
    targets = input_ids[:, 1:].unsqueeze(-1)
    return (logits.gather(-1, targets).squeeze(-1) - torch.logsumexp(logits, dim=-1))


def sequence_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      completion_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Completion log-probabilities ``(per_token [B, T−1], summed [B], num_tokens [B])``, in float32.

    ``per_token[:, t] = log π(x_{t+1} | x_≤t) · completion_mask[:, t+1]`` (zero on prompt and padding, see
    :func:`token_logprobs` for the shift); ``summed = Σ_t per_token = log π(y | x)``; ``num_tokens = |y|``.
    Only the completion tokens go through the LM head (:mod:`llm.completion_logprobs`); the values equal
    :func:`token_logprobs` masked and summed, to float32 round-off. Gradients flow to the trainable parameters.
    """
    if input_ids.shape != attention_mask.shape or input_ids.shape != completion_mask.shape:
        raise ValidationError(f"completion_mask: expected input_ids, attention_mask and completion_mask of one shape, "
                              f"got {list(input_ids.shape)}, {list(attention_mask.shape)}, "
                              f"{list(completion_mask.shape)}")
    if input_ids.dim() != 2 or input_ids.shape[1] < 2:
        raise ValidationError(f"input_ids: expected shape [B, T] with T >= 2, got {list(input_ids.shape)}")
    if bool((completion_mask.bool() & ~attention_mask.bool()).any()):
        raise ValidationError("completion_mask: marks padding tokens (attention_mask 0) as completion tokens")
    if bool(completion_mask[:, 0].bool().any()):
        raise ValidationError("completion_mask: the first token cannot be a completion token (nothing predicts it)")
    tokens, positions = _completion_logprobs(model, input_ids, attention_mask, completion_mask)
    return positions.per_token(tokens, input_ids.shape[1] - 1), positions.per_sequence(tokens), positions.counts()


def _completion_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                         completion_mask: torch.Tensor) -> tuple[torch.Tensor, CompletionPositions]:
    device = module_device(model)
    input_ids = input_ids.to(device)
    positions = CompletionPositions.of(input_ids, completion_mask.to(device))
    return token_logprobs_at(model, padded_inputs(input_ids, attention_mask.to(device)), positions), positions


def batch_logprobs(model, batch: CompletionBatch, chunk_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(summed [B], num_tokens [B])`` of a :class:`CompletionBatch` (as :func:`sequence_logprobs`), in chunks of
    ``chunk_size`` sequences. This is the log-prob pass of every training loop (:mod:`llm.training`)."""
    size = chunk_size or batch.batch_size
    sums, counts = [], []
    for start in range(0, batch.batch_size, size):
        part = slice(start, start + size)
        tokens, positions = _completion_logprobs(model, batch.input_ids[part], batch.attention_mask[part],
                                                 batch.completion_mask[part])
        sums.append(positions.per_sequence(tokens))
        counts.append(positions.counts())
    if len(sums) == 1:
        return sums[0], counts[0]
    return torch.cat(sums), torch.cat(counts)


def reference_logprobs(model, batch: CompletionBatch, chunk_size: int | None = None) -> tuple[torch.Tensor,
                                                                                           torch.Tensor]:
    """:func:`batch_logprobs` under the reference (adapter disabled), without gradients."""
    with torch.no_grad(), reference_mode(model):
        return batch_logprobs(model, batch, chunk_size)


def preference_batch(model, prompt_ids: Sequence[Sequence[int]], chosen_ids: Sequence[Sequence[int]],
                     rejected_ids: Sequence[Sequence[int]], pad_token_id: int, *, with_reference: bool = True,
                     reference: tuple[torch.Tensor, torch.Tensor] | None = None) -> PreferenceBatch:
    """The core's :class:`PreferenceBatch` for ``B`` pairs ``(x, y_w, y_l)`` given as token lists.

    Policy log-probs ``log πθ(y|x)`` come from one forward pass over chosen and rejected together, each pair's
    prompt once (:func:`llm.completion_logprobs.completion_logprobs`), with gradients; reference log-probs from the
    adapter-disabled model without gradients, unless precomputed ones are passed as ``reference = (chosen [B],
    rejected [B])`` (they do not change during training: compute them once). ``with_reference=False`` gives a
    reference-free batch (SimPO, ORPO, ...). Lengths are token counts.
    """
    prompts = list(prompt_ids)
    pairs = len(prompts)
    completions = list(chosen_ids) + list(rejected_ids)
    summed, counts = completion_logprobs(model, prompts + prompts, completions, pad_token_id)
    reference_chosen = reference_rejected = None
    if reference is not None:
        reference_chosen, reference_rejected = (r.to(summed.device, summed.dtype) for r in reference)
    elif with_reference:
        with torch.no_grad(), reference_mode(model):
            reference_summed, _ = completion_logprobs(model, prompts + prompts, completions, pad_token_id)
        reference_chosen, reference_rejected = reference_summed[:pairs], reference_summed[pairs:]
    return PreferenceBatch(summed[:pairs], summed[pairs:], reference_chosen, reference_rejected,
                           counts[:pairs], counts[pairs:])


# ---------------------------------------------------------------------- sampling
@dataclass(frozen=True)
class Completions:
    """Sampled completions: for each of ``N`` samples the prompt text, its token ids, the completion's token ids
    (up to and including the EOS token when the model stopped) and the completion's decoded text (special
    tokens removed). ``prompt_index[i]`` is the index of sample ``i``'s prompt in the input list."""

    prompts: list[str]
    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]
    texts: list[str]
    prompt_index: list[int]

    def __len__(self) -> int:
        return len(self.texts)

    def batch(self, pad_token_id: int) -> CompletionBatch:
        return collate_completions(self.prompt_ids, self.completion_ids, pad_token_id)


def generate_completions(model, tokenizer, prompts: Sequence[str], max_new_tokens: int = 24, *,
                         temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, num_samples: int = 1,
                         seed: int = 0, batch_size: int = 64, add_special_tokens: bool = True) -> Completions:
    """Sample ``num_samples`` completions per prompt (prompt-major order).

    Defaults sample from the model's distribution itself (temperature 1, no top-k / top-p truncation), which
    KL estimates against the reference assume; ``temperature = 0`` decodes greedily. The global torch RNG is
    forked and seeded with ``seed``, so the result depends only on the seed (and the device) and the caller's RNG
    state is left as it was. Prompts are tokenized with special tokens (BOS for the built-in model; none with
    ``add_special_tokens=False``, for prompts already rendered by a chat template) and left padded.
    """
    from transformers import GenerationConfig

    if max_new_tokens < 1:
        raise ValidationError(f"max_new_tokens: expected a positive integer, got {max_new_tokens}")
    if num_samples < 1 or batch_size < 1:
        raise ValidationError(f"num_samples, batch_size: expected positive integers, got {num_samples}, {batch_size}")
    if temperature < 0 or top_k < 0 or not 0 < top_p <= 1:
        raise ValidationError(f"temperature, top_k, top_p: expected temperature >= 0, top_k >= 0, 0 < top_p <= 1; "
                              f"got {temperature}, {top_k}, {top_p}")
    prompts = list(prompts)
    if not prompts:
        raise ValidationError("prompts: is empty; expected at least one prompt")
    sampling = temperature > 0
    eos = tokenizer.eos_token_id
    # transformers 5 fills every field left unset (None) here from the checkpoint's generation_config (which may
    # set top_k=50 or a repetition penalty): set the processors that change the distribution to their no-ops.
    config = GenerationConfig(max_new_tokens=max_new_tokens, min_new_tokens=0, do_sample=sampling,
                              pad_token_id=tokenizer.pad_token_id, eos_token_id=eos,
                              bos_token_id=tokenizer.bos_token_id, repetition_penalty=1.0, no_repeat_ngram_size=0,
                              encoder_repetition_penalty=1.0, typical_p=1.0, epsilon_cutoff=0.0, eta_cutoff=0.0,
                              temperature=temperature if sampling else 1.0, top_k=top_k if sampling else 0,
                              top_p=top_p if sampling else 1.0)
    order = [i for i in range(len(prompts)) for _ in range(num_samples)]
    device = module_device(model)
    prompt_ids: list[list[int]] = []
    completion_ids: list[list[int]] = []
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(seed)
            for start in range(0, len(order), batch_size):
                texts = [prompts[i] for i in order[start:start + batch_size]]
                encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=add_special_tokens)
                ids, mask = encoded["input_ids"].to(device), encoded["attention_mask"].to(device)
                output = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
                for row in range(ids.shape[0]):
                    prompt_ids.append(ids[row][mask[row].bool()].tolist())
                    new = output[row, ids.shape[1]:].tolist()
                    if eos is not None and eos in new:
                        new = new[:new.index(eos) + 1]
                    completion_ids.append(new)
    finally:
        tokenizer.padding_side = side
    texts = tokenizer.batch_decode(completion_ids, skip_special_tokens=True)
    return Completions([prompts[i] for i in order], prompt_ids, completion_ids, [t.strip() for t in texts], order)


# ---------------------------------------------------------------------- adapters on disk
def save_adapter(model, folder: Path | str, metadata: dict[str, Any] | None = None) -> Path:
    """Save ``model``'s LoRA adapter in peft's format into ``folder``, with ``irl_bilevel_adapter.json`` holding the
    base model's name or path, the adapter's LoRA settings and ``metadata`` (JSON-serializable).

    ``folder`` must be missing, empty, an adapter folder this function wrote (it holds ``irl_bilevel_adapter.json``)
    or the run folder of the training run that trained the adapter (``llm.checkpoints``: it holds the run's
    record): anything else is a :class:`ValidationError` and nothing is touched. The files are
    built in a temporary sibling folder and each moved into place with an atomic rename (the JSON last); files of
    ``folder`` that peft does not write are kept."""
    from irl_bilevel.runs import claim_output_folder

    if not is_peft_model(model):
        raise ValidationError("model: expected a peft model with a LoRA adapter (see with_lora)")
    from llm.checkpoints import read_run

    folder = Path(folder)
    if read_run(folder) is None:
        claim_output_folder(folder, ADAPTER_INFO_FILE, "adapter", overwrite=True, option="folder")
    config = model.peft_config[model.active_adapter]
    info = {
        "base_model": getattr(config, "base_model_name_or_path", None),
        "lora": {"r": config.r, "alpha": config.lora_alpha, "dropout": config.lora_dropout,
                 "target_modules": sorted(config.target_modules) if config.target_modules else None},
        "metadata": metadata or {},
    }
    try:
        text = json.dumps(info, indent=2, sort_keys=True) + "\n"
    except TypeError as error:
        raise ValidationError(f"metadata: expected JSON-serializable values ({error})") from error
    folder.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        model.save_pretrained(temporary)
        (temporary / ADAPTER_INFO_FILE).write_text(text)
        folder.mkdir(exist_ok=True)
        written = sorted(p for p in temporary.iterdir() if p.name != ADAPTER_INFO_FILE)
        for path in [*written, temporary / ADAPTER_INFO_FILE]:  # the marker last: a folder with it is complete
            os.replace(path, folder / path.name)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return folder


_ADAPTER_HINT = "; the adapter folder is damaged: copy it again, or train the adapter again"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


def read_adapter_config(folder: Path | str) -> dict[str, Any]:
    """``adapter_config.json`` of a peft adapter folder, checked: a JSON object whose ``r`` is a positive integer,
    ``lora_alpha`` a number and ``base_model_name_or_path`` a string or null (what peft and this library read)."""
    folder = Path(folder)
    path = folder / "adapter_config.json"
    if not path.is_file():
        raise ValidationError(f"adapter: no adapter_config.json in {folder}; expected a folder written by save_adapter "
                              f"(or peft's save_pretrained)")
    config = read_json_file(path, "adapter_config.json", recovery=_ADAPTER_HINT)
    checks = {"r": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
              "lora_alpha": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
              "base_model_name_or_path": lambda v: v is None or isinstance(v, str),
              "target_modules": lambda v: v is None or isinstance(v, str)
              or (isinstance(v, list) and all(isinstance(m, str) for m in v))}
    for key, check in checks.items():
        if key in config and not check(config[key]):
            raise ValidationError(f"adapter_config.json: {path} has {key} = {config[key]!r}, which peft cannot use"
                                  f"{_ADAPTER_HINT}")
    return config


def adapter_base_model(folder: Path | str) -> str:
    """The base model an adapter folder names (``base_model_name_or_path`` of its ``adapter_config.json``)."""
    base = read_adapter_config(folder).get("base_model_name_or_path")
    if not base:
        raise ValidationError(f"adapter: {Path(folder) / 'adapter_config.json'} names no base model "
                              f"(base_model_name_or_path); pass the base model explicitly (e.g. --backbone)")
    return base


def load_adapter(base_model, folder: Path | str, trainable: bool = False):
    """A ``PeftModel`` of ``base_model`` with the adapter saved in ``folder`` (``PeftModel.from_pretrained``).

    A folder without ``adapter_config.json`` or weights, damaged files and weights of another shape (an adapter of
    another base model or rank) are a :class:`ValidationError` naming the folder."""
    from peft import PeftModel

    folder = Path(folder)
    read_adapter_config(folder)
    weights = [folder / name for name in ADAPTER_WEIGHTS if (folder / name).is_file()]
    if not weights:
        raise ValidationError(f"adapter: no adapter weights in {folder} (none of {list(ADAPTER_WEIGHTS)})"
                              f"{_ADAPTER_HINT}")
    if weights[0].suffix == ".safetensors":
        check_safetensors(weights[0], "adapter weights", _ADAPTER_HINT)
    with warnings.catch_warnings(), default_dtype(torch.float32):
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        try:
            model = PeftModel.from_pretrained(base_model, str(folder), is_trainable=trainable)
        except RuntimeError as error:
            if "size mismatch" not in str(error):
                raise
            first = next((line.strip() for line in str(error).splitlines() if "size mismatch" in line), "")
            raise ValidationError(f"adapter: the weights in {weights[0]} do not fit this base model ({first}); it is "
                                  f"an adapter of another model or rank") from error
    if not trainable:
        model.eval()
    return model


def read_adapter_info(folder: Path | str) -> dict[str, Any]:
    """The JSON written next to an adapter by :func:`save_adapter`."""
    return read_json_file(Path(folder) / ADAPTER_INFO_FILE, ADAPTER_INFO_FILE, recovery=_ADAPTER_HINT)
