"""Completion log-probabilities ``log π(y|x)`` of any Hugging Face causal LM, computed where they are needed only.

This is the log-prob pass of every training loop (:mod:`llm.training`: all catalog losses, paired, unpaired and
episode pairs, the reference precompute, RLOO). For ``N`` completions ``y_i`` of prompts ``x_i`` it returns
``log π(y_i|x_i) = Σ_t log π(y_it | x_i, y_i<t)`` ``[N]`` and the token counts ``|y_i|`` ``[N]``. What makes it
fast, each piece exact (equal to the plain full-logits computation to float32 round-off;
``tests/test_llm_architectures.py`` checks GPT-2, Llama and Qwen2, bare and through peft):

* **A shared prompt once** (:class:`PackedCompletions`): completions of one prompt (DPO's chosen and rejected,
  RLOO's samples) share a row ``x y_1 y_2``: the position ids restart after the prompt for every completion
  (``x``: ``0..|x|−1``, each ``y_j``: ``|x|..|x|+|y_j|−1``) and a ``[R, 1, W, W]`` attention mask lets every
  completion token attend to the prompt and to its own earlier tokens only, so ``y_j`` sees exactly the context
  ``x``, as in a row of its own, while the prompt's tokens go through the model once instead of once per
  completion (prefix sharing; Wang et al. 2024, "Accelerating Direct Preference Optimization with Prefix
  Sharing"). A prompt's group holds at most ``completions_per_row`` completions (default 2: a wider group makes
  wider rows, whose attention grows with their square).
* **Rows without padding** (:func:`row_layout`): these groups (a prompt and its completions) are then packed
  several to a row, first-fit decreasing, where that removes at least a tenth of the padded positions; each group
  keeps its own position ids and the mask keeps groups apart, so every completion still sees only its prompt
  (padding-free packing, as TRL's ``padding_free``, here without a varlen attention kernel).
* **A row's prompts as a prefix tree**: prompts that begin alike (a chat template's system message and user
  header) share their common prefix within a row. The row holds the tree of its prompts depth first, each run of
  prompt tokens once, and a token reads its own run and the runs on its path from the root, so every prompt is
  still read whole and alone; a group costs the row only what it adds to the tree, which the layout counts.
  Prompt sharing, packing and trees are used with SDPA and eager attention (the mask's two formats); other
  attention implementations get one completion per row.
* **No input that nothing reads**: a completion's last token is predicted, but its own hidden state predicts
  nothing and no other token attends to it, so it is left out of the rows (one position per completion).
* **No padding mask for rows of one sequence**: causal attention never lets a real token see the right padding
  that follows it, and such rows' position ids are ``0..T−1`` anyway, so the body runs with an all-ones mask
  (transformers then builds no ``[B, 1, T, T]`` mask and SDPA takes its causal fast path).
* **The LM head only where it matters**: the transformer body (``get_decoder()``, with the LoRA layers peft
  injected into it) gives hidden states ``h [R, W, D]``; the ``M`` of them that predict a completion token are
  gathered into ``[M, D]`` *before* the LM head (``get_output_embeddings()``), so the head's product, the float32
  logits and the log-softmax are ``[M, V]`` instead of ``[R, W, V]``. Models whose logits are not just
  ``head(h)`` (a logit scale or soft-cap in the config, e.g. Gemma 2's ``final_logit_softcapping``) or that expose
  no separate body and head take the full forward and gather its logits at the same ``M`` positions.
* ``log π(y_t | ·) = −cross_entropy(logits, y_t)`` per token (one fused log-softmax-and-pick kernel whose backward
  is ``softmax − one_hot``), in float32 whatever the model's dtype; per completion one ``index_add``;
  ``use_cache=False`` (no key/value cache for a scoring pass).

:func:`fuse_activations` swaps GPT-2's tanh-GELU, written as eight elementwise torch ops, for the same function
in one fused kernel (``nn.GELU(approximate="tanh")``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from irl_bilevel.validation import ValidationError

# Config fields of architectures whose forward transforms the head's output; their log-probs take the full forward.
LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale",
                    "lm_head_multiplier")
# transformers' Python-level tanh-GELUs (``0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³)))``, several kernels each).
TANH_GELU_CLASSES = ("NewGELUActivation", "FastGELUActivation", "AccurateGELUActivation")
# Attention implementations that take a custom 4D mask (prompt sharing needs one).
MASKED_ATTENTION = ("sdpa", "eager")
COMPLETIONS_PER_ROW = 2
# Rows of several groups are filled up to this many tokens (or the longest group's), and only when that removes at
# least this share of the padded positions.
ROW_TOKENS = 128
PACKING_MIN_SAVING = 0.1


# ---------------------------------------------------------------------- where the completion tokens are
@dataclass(frozen=True)
class CompletionPositions:
    """The ``M`` completion tokens of a batch of rows.

    ``rows [M]`` and ``columns [M]``: the position ``(row, t)`` whose hidden state predicts the token;
    ``targets [M]``: the token; ``sequences [M]``: the completion it belongs to (``0..num_sequences−1``).
    """

    rows: torch.Tensor
    columns: torch.Tensor
    targets: torch.Tensor
    sequences: torch.Tensor
    num_sequences: int

    @classmethod
    def of(cls, input_ids: torch.Tensor, completion_mask: torch.Tensor) -> CompletionPositions:
        """Rows of one sequence each: token ``t + 1`` of row ``b`` is a completion token where
        ``completion_mask[b, t + 1]``; it is predicted at ``(b, t)``."""
        predicts = completion_mask[:, 1:].bool()
        rows, columns = predicts.nonzero(as_tuple=True)
        return cls(rows, columns, input_ids[:, 1:][predicts], rows, int(input_ids.shape[0]))

    def to(self, device: torch.device | str) -> CompletionPositions:
        return CompletionPositions(self.rows.to(device), self.columns.to(device), self.targets.to(device),
                                   self.sequences.to(device), self.num_sequences)

    def per_sequence(self, values: torch.Tensor) -> torch.Tensor:
        """``[num_sequences]``: the sum of ``values [M]`` over each completion's tokens."""
        return values.new_zeros(self.num_sequences).index_add(0, self.sequences, values)

    def counts(self) -> torch.Tensor:
        """``[num_sequences]``: tokens per completion (float32)."""
        ones = torch.ones(self.sequences.shape[0], dtype=torch.float32, device=self.sequences.device)
        return self.per_sequence(ones)

    def per_token(self, values: torch.Tensor, width: int) -> torch.Tensor:
        """``[rows, width]`` (rows of one sequence each): ``values [M]`` at their positions ``(row, t)``."""
        return values.new_zeros(self.num_sequences, width).index_put((self.rows, self.columns), values)


# ---------------------------------------------------------------------- packing with shared prompts
@dataclass(frozen=True)
class PackedCompletions:
    """``N`` completions in ``R`` right-padded rows of width ``W`` (see the module docstring), each completion
    without its last token, which is a target only.

    ``input_ids [R, W]``; ``position_ids [R, W]``; ``segments [R, W]``: a number per piece of a row (a run of prompt
    tokens of the row's prefix tree, or a completion), −1 on padding; ``visible [R, S + 1, S + 1]``:
    ``visible[r, a, b]``: segment ``a`` of row ``r`` reads segment ``b`` (``b`` is ``a`` or on its path from the
    root of the row's prefix tree; index ``S`` stands for padding, which reads only padding); ``positions``: the
    completion tokens, ``sequences`` indexing the ``N`` completions in the caller's order; ``shared``: some row
    holds more than one completion (the rows then need the mask of :meth:`attention_mask`, otherwise none).
    """

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    segments: torch.Tensor
    visible: torch.Tensor
    positions: CompletionPositions
    shared: bool

    @classmethod
    def of(cls, prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]], pad_token_id: int,
           completions_per_row: int = COMPLETIONS_PER_ROW, pack_rows: bool = True) -> PackedCompletions:
        """Pack completion ``i`` of prompt ``i``; completions with equal prompts (token for token) form groups of
        one prompt and ``completions_per_row`` completions at most, in order of first appearance. With
        ``pack_rows``, groups then share rows as well where that removes padding (:func:`row_layout`), and the
        prompts of a row's groups share their common prefixes (a prefix tree: a chat template's system message is
        computed once per row). Empty prompts or completions are a :class:`ValidationError`."""
        if len(prompt_ids) != len(completion_ids) or not prompt_ids:
            raise ValidationError(f"completion_ids: expected one completion per prompt (at least one), got "
                                  f"{len(prompt_ids)} prompts and {len(completion_ids)} completions")
        if completions_per_row < 1:
            raise ValidationError(f"completions_per_row: expected a positive integer, got {completions_per_row}")
        groups: list[tuple[Sequence[int], list[int]]] = []  # (prompt, completion indices)
        open_group: dict[tuple[int, ...], int] = {}
        for index, (prompt, completion) in enumerate(zip(prompt_ids, completion_ids)):
            if len(prompt) == 0:
                raise ValidationError(f"prompt_ids: prompt {index} is empty; a causal LM needs at least one token "
                                      f"(e.g. BOS) to predict the first completion token from")
            if len(completion) == 0:
                raise ValidationError(f"completion_ids: completion {index} is empty; expected at least one token")
            key = tuple(prompt)
            group = open_group.get(key)
            if group is None or len(groups[group][1]) >= completions_per_row:
                open_group[key] = len(groups)
                groups.append((prompt, [index]))
            else:
                groups[group][1].append(index)
        # a completion's last token is a target only: nothing reads its hidden state, so it is not an input
        lengths = [len(p) + sum(len(completion_ids[i]) - 1 for i in members) for p, members in groups]
        prompts = [prompt for prompt, _ in groups]
        if pack_rows:
            layout = row_layout(lengths, shared=common_prefix_lengths(prompts) if len(groups) > 1 else None)
        else:
            layout = [[g] for g in range(len(groups))]
        rows = [_Row.of(prompts, [(g, groups[g][1]) for g in members], completion_ids) for members in layout]
        width = max(len(row.ids) for row in rows)
        most = max(len(row.paths) for row in rows)
        visible = torch.zeros(len(rows), most + 1, most + 1, dtype=torch.bool)
        visible[:, most, most] = True  # padding reads padding, so that no row of the softmax is empty
        for r, row in enumerate(rows):
            for segment, path in enumerate(row.paths):
                visible[r, segment, path] = True
        padding = [width - len(row.ids) for row in rows]
        return cls(torch.tensor([row.ids + [pad_token_id] * pad for row, pad in zip(rows, padding)]),
                   # padding is never read; position 0 stays inside any position table
                   torch.tensor([row.position_ids + [0] * pad for row, pad in zip(rows, padding)]),
                   torch.tensor([row.segments + [-1] * pad for row, pad in zip(rows, padding)]),
                   visible,
                   CompletionPositions(torch.tensor([r for r, row in enumerate(rows) for _ in row.columns]),
                                       torch.tensor([c for row in rows for c in row.columns]),
                                       torch.tensor([t for row in rows for t in row.targets]),
                                       torch.tensor([s for row in rows for s in row.sequences]), len(prompt_ids)),
                   any(len(row.sequence_ids) > 1 for row in rows))

    def attention_mask(self, implementation: str, dtype: torch.dtype) -> torch.Tensor:
        """``[R, 1, W, W]``: query ``q`` may attend to key ``k <= q`` of a segment it reads (:attr:`visible`: its
        own, and the prompt pieces on its path in the row's prefix tree). SDPA takes it as booleans (True: attend),
        eager attention as an additive float mask (0 or the dtype's minimum)."""
        width = self.segments.shape[1]
        padding = self.visible.shape[1] - 1
        segments = self.segments.masked_fill(self.segments < 0, padding)
        causal = torch.ones(width, width, dtype=torch.bool, device=self.segments.device).tril()
        rows = torch.arange(segments.shape[0], device=segments.device)[:, None, None]
        allowed = (causal & self.visible[rows, segments[:, :, None], segments[:, None, :]])[:, None]
        if implementation == "sdpa":
            return allowed
        blocked = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
        return blocked.masked_fill(~allowed, torch.finfo(dtype).min)

    def to(self, device: torch.device | str) -> PackedCompletions:
        return PackedCompletions(self.input_ids.to(device), self.position_ids.to(device), self.segments.to(device),
                                 self.visible.to(device), self.positions.to(device), self.shared)


@dataclass
class _TrieNode:
    """A run of prompt tokens in a row's prefix tree; ``groups``: the groups whose prompt ends with it."""

    tokens: list[int]
    children: list[_TrieNode]
    groups: list[tuple[int, list[int]]]


@dataclass
class _Row:
    """One row's token lists; ``paths[s]``: the segments segment ``s`` reads (itself and its ancestors)."""

    ids: list[int]
    position_ids: list[int]
    segments: list[int]
    paths: list[list[int]]
    columns: list[int]
    targets: list[int]
    sequences: list[int]
    sequence_ids: set[int]

    @classmethod
    def of(cls, prompts: Sequence[Sequence[int]], groups: list[tuple[int, list[int]]],
           completion_ids: Sequence[Sequence[int]]) -> _Row:
        """The prefix tree of the groups' prompts, laid out depth first: each run of prompt tokens once, then the
        completions of the prompts that end there, then its branches."""
        root = _TrieNode([], [], [])
        for group, members in groups:
            prompt, node, depth = list(prompts[group]), root, 0
            while True:
                if depth == len(prompt):
                    node.groups.append((group, members))
                    break
                child = next((c for c in node.children if c.tokens[0] == prompt[depth]), None)
                if child is None:
                    node.children.append(_TrieNode(prompt[depth:], [], [(group, members)]))
                    break
                common = 0
                while common < len(child.tokens) and depth + common < len(prompt) and \
                        child.tokens[common] == prompt[depth + common]:
                    common += 1
                if common < len(child.tokens):  # the prompts part inside this run: split it there
                    child.children = [_TrieNode(child.tokens[common:], child.children, child.groups)]
                    child.tokens, child.groups = child.tokens[:common], []
                node, depth = child, depth + common
        row = cls([], [], [], [], [], [], [], set())
        for child in root.children:
            row._lay_out(child, [], 0, completion_ids)
        return row

    def _lay_out(self, node: _TrieNode, path: list[int], depth: int,
                 completion_ids: Sequence[Sequence[int]]) -> None:
        segment = len(self.paths)
        path = [*path, segment]
        self.paths.append(path)
        self.ids += node.tokens
        self.position_ids += range(depth, depth + len(node.tokens))
        self.segments += [segment] * len(node.tokens)
        last_prompt_column, size = len(self.ids) - 1, depth + len(node.tokens)
        for _, members in node.groups:
            for index in members:
                completion = completion_ids[index]
                own = len(self.paths)
                self.paths.append([*path, own])
                # token 0 is predicted by the prompt's last position, token k > 0 by the completion's token k − 1
                self.columns += [last_prompt_column, *range(len(self.ids), len(self.ids) + len(completion) - 1)]
                self.ids += completion[:-1]
                self.position_ids += range(size, size + len(completion) - 1)
                self.segments += [own] * (len(completion) - 1)
                self.targets += completion
                self.sequences += [index] * len(completion)
                self.sequence_ids.add(index)
        for child in node.children:
            self._lay_out(child, path, size, completion_ids)


def common_prefix_lengths(prompts: Sequence[Sequence[int]]) -> tuple[tuple[int, ...], ...] | None:
    """``[G][G]``: how many leading tokens prompts ``g`` and ``h`` have in common (a prompt with itself: its
    length); None where no two prompts share a first token (nothing to share)."""
    width = max(len(prompt) for prompt in prompts)
    ids = torch.full((len(prompts), width), -1, dtype=torch.long)
    for g, prompt in enumerate(prompts):
        ids[g, :len(prompt)] = torch.as_tensor(list(prompt), dtype=torch.long)
    real = ids >= 0
    equal = (ids[:, None, :] == ids[None, :, :]) & real[:, None, :] & real[None, :, :]
    if not (equal[:, :, 0] & ~torch.eye(len(prompts), dtype=torch.bool)).any():
        return None
    lengths = equal.long().cumprod(dim=2).sum(dim=2)
    return tuple(tuple(row) for row in lengths.tolist())


def row_layout(lengths: Sequence[int], row_tokens: int = ROW_TOKENS, min_saving: float = PACKING_MIN_SAVING,
               shared: tuple[tuple[int, ...], ...] | None = None) -> list[list[int]]:
    """Groups (of ``lengths`` tokens each, never split) to rows, as lists of group indices in increasing order.

    First-fit decreasing into rows of capacity ``c``, for every ``c`` from the longest group to
    ``max(row_tokens, longest)``; the layout with the fewest positions ``R × W`` wins (ties: the narrower), and is
    kept where it removes at least ``min_saving`` of the ``R × W`` of one group per row. Otherwise one group per
    row: such rows need no mask, and SDPA's causal path is faster than a masked one. A packed row's attention costs
    ``O(W²)``, small beside its linear layers' ``O(W · parameters)`` while ``W`` stays near ``row_tokens``.

    ``shared[g][h]``: the tokens groups ``g`` and ``h`` have in common when they share a row (their prompts'
    common prefix, :func:`common_prefix_lengths`). A group then takes ``lengths[g] − max_h shared[g][h]`` over the
    row's groups ``h`` (exactly what it adds to the row's prefix tree), and goes to the row where it takes least,
    the first among equals.

    The layout is remembered per argument (a training set's batches repeat; the search tries every capacity).
    """
    return [list(row) for row in _row_layout(tuple(lengths), row_tokens, min_saving, shared)]


@functools.lru_cache(maxsize=1024)
def _row_layout(lengths: tuple[int, ...], row_tokens: int, min_saving: float,
                shared: tuple[tuple[int, ...], ...] | None) -> tuple[tuple[int, ...], ...]:
    """The search of :func:`row_layout`, cached; it returns tuples, so no caller can change a remembered layout."""
    longest = max(lengths)
    order = sorted(range(len(lengths)), key=lambda g: (-lengths[g], g))
    best: tuple[int, int, list[list[int]]] | None = None  # (positions, width, rows)
    for capacity in range(longest, max(row_tokens, longest) + 1):
        rows: list[list[int]] = []
        filled: list[int] = []
        for group in order:
            row, size = None, lengths[group]
            for r, members in enumerate(rows):
                cost = lengths[group] - max(shared[group][h] for h in members) if shared else lengths[group]
                if filled[r] + cost <= capacity and (row is None or cost < size):
                    row, size = r, cost
                    if not shared:
                        break  # nothing is shared: first fit
            if row is None:
                rows.append([group])
                filled.append(lengths[group])
            else:
                rows[row].append(group)
                filled[row] += size
        width = max(filled)
        if best is None or (len(rows) * width, width) < best[:2]:
            best = (len(rows) * width, width, rows)
    assert best is not None
    if best[0] > (1.0 - min_saving) * len(lengths) * longest:
        return tuple((g,) for g in range(len(lengths)))
    return tuple(tuple(sorted(row)) for row in best[2])


# ---------------------------------------------------------------------- the model's parts
def unwrapped(model) -> nn.Module:
    """The transformers model inside a peft wrapper (its LoRA layers are injected in place), else ``model``."""
    return model.get_base_model() if hasattr(model, "get_base_model") and hasattr(model, "peft_config") else model


def body_and_head(model) -> tuple[nn.Module, nn.Module] | None:
    """``(body, head)`` of a causal LM whose logits are ``head(body(ids).last_hidden_state)``, else None.

    ``body``: ``get_decoder()`` (GPT-2's ``transformer``, Llama's and Qwen2's ``model``); ``head``:
    ``get_output_embeddings()`` (``lm_head``). None when either is missing or the config names a logit transform
    (:data:`LOGIT_TRANSFORMS`).
    """
    inner = unwrapped(model)
    config = getattr(inner, "config", None)
    for name in LOGIT_TRANSFORMS:
        value = getattr(config, name, None)
        if value is not None and value is not False and value != 1:
            return None
    get_decoder = getattr(inner, "get_decoder", None)
    get_head = getattr(inner, "get_output_embeddings", None)
    if get_decoder is None or get_head is None:
        return None
    try:
        body, head = get_decoder(), get_head()
    except (AttributeError, NotImplementedError):
        return None
    if body is None or head is None or body is inner:
        return None
    return body, head


def attention_implementation(model) -> str:
    config = getattr(unwrapped(model), "config", None)
    return str(getattr(config, "_attn_implementation", None) or "eager")


def module_device(model) -> torch.device:
    return next(model.parameters()).device


def model_dtype(model) -> torch.dtype:
    """The dtype of the model's floating parameters that are not trainable (the base weights)."""
    for parameter in model.parameters():
        if parameter.is_floating_point() and not parameter.requires_grad:
            return parameter.dtype
    return next(model.parameters()).dtype


# ---------------------------------------------------------------------- log-probs
def token_logprobs_at(model, inputs: dict[str, Any], positions: CompletionPositions) -> torch.Tensor:
    """``[M]``: ``log π`` of each of ``positions``' targets under the model run on ``inputs`` (float32; gradients
    flow to trainable parameters)."""
    parts = body_and_head(model)
    if parts is None:
        logits = model(**inputs).logits[positions.rows, positions.columns]
    else:
        body, head = parts
        hidden = body(**inputs).last_hidden_state
        logits = head(hidden[positions.rows, positions.columns])
    return -nn.functional.cross_entropy(logits.float(), positions.targets, reduction="none")


def is_right_padded(attention_mask: torch.Tensor) -> bool:
    """Every row is ones followed by zeros (and starts with a one)."""
    mask = attention_mask.bool()
    return bool(mask[:, 0].all()) and bool((mask[:, 1:] <= mask[:, :-1]).all())


def padded_inputs(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, Any]:
    """Model inputs of rows of one sequence each: right padding runs unmasked (module docstring), other padding
    with the mask and position ids ``cumsum(mask) − 1``."""
    if is_right_padded(attention_mask):
        # An all-ones mask rather than None: transformers skips it just the same and does not warn that padding
        # tokens go unmasked.
        return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "use_cache": False}
    positions = (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": positions, "use_cache": False}


def packed_inputs(model, packed: PackedCompletions) -> dict[str, Any]:
    if not packed.shared:
        return {"input_ids": packed.input_ids, "attention_mask": torch.ones_like(packed.input_ids),
                "use_cache": False}
    mask = packed.attention_mask(attention_implementation(model), model_dtype(model))
    return {"input_ids": packed.input_ids, "attention_mask": mask, "position_ids": packed.position_ids,
            "use_cache": False}


def completion_logprobs(model, prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]],
                        pad_token_id: int, chunk_size: int | None = None,
                        completions_per_row: int = COMPLETIONS_PER_ROW) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log π(y_i|x_i) [N], |y_i| [N])`` of completion ``i`` of prompt ``i`` (token lists), float32.

    Completions of equal prompts share rows (:class:`PackedCompletions`) where the model's attention takes a
    custom mask; ``chunk_size``: completions per forward pass (None: all at once). Gradients flow to the
    trainable parameters unless the caller disables them (reference passes: ``torch.no_grad()`` within
    :func:`llm.models.reference_mode`).
    """
    prompts, completions = list(prompt_ids), list(completion_ids)
    masked = attention_implementation(model) in MASKED_ATTENTION
    per_row = completions_per_row if masked else 1
    size = len(prompts)
    step = chunk_size or max(size, 1)
    device = module_device(model)
    sums, counts = [], []
    for start in range(0, size, step):
        packed = PackedCompletions.of(prompts[start:start + step], completions[start:start + step], pad_token_id,
                                      per_row, pack_rows=masked).to(device)
        tokens = token_logprobs_at(model, packed_inputs(model, packed), packed.positions)
        sums.append(packed.positions.per_sequence(tokens))
        counts.append(packed.positions.counts())
    if len(sums) == 1:
        return sums[0], counts[0]
    return torch.cat(sums), torch.cat(counts)


def fuse_activations(model) -> int:
    """Replace transformers' Python tanh-GELUs (:data:`TANH_GELU_CLASSES`: GPT-2's ``gelu_new``, eight elementwise
    ops with their own passes and saved tensors) by ``nn.GELU(approximate="tanh")``: the same function in one
    kernel, equal to float32 round-off. Idempotent; returns how many modules were replaced."""
    inner = unwrapped(model)
    replaced = 0
    for name, module in list(inner.named_modules()):
        if type(module).__name__ in TANH_GELU_CLASSES and "." in name:
            parent, attribute = name.rsplit(".", 1)
            setattr(inner.get_submodule(parent), attribute, nn.GELU(approximate="tanh"))
            replaced += 1
    return replaced
