"""The user's own preference data in TRL's dataset formats, read from JSON Lines or a ``datasets`` folder and tokenized.

Formats (TRL's, ``docs/llm_training.md``), told apart by their columns:

* **paired preferences**: ``prompt``, ``chosen``, ``rejected``;
* **unpaired labels** (KTO): ``prompt``, ``completion``, ``label`` (a boolean: desirable or not).

Each is *standard* (every field a string; prompt and completion are concatenated as text, so a completion carries
its own leading space, as in TRL) or *conversational* (every field a list of messages ``{"role": ..., "content":
...}``, the role one of :data:`CHAT_ROLES`, the content a string; the prompt goes through the tokenizer's chat
template with the generation prompt, and a completion is what the template renders after it). Columns named after
a per-pair parameter of the loss being trained (``aspect_labels``, ``aspect_mask``, ``other_chosen_rewards``,
``other_rejected_rewards``; numbers or lists of numbers per row) go to the loss with each minibatch. Any other
column is an error unless named in ``ignore_columns`` (a misspelt ``choosen`` is caught, not silently dropped).

Sources (:func:`read_preference_file`): a ``.jsonl`` file (one JSON object per line; blank lines skipped), a
``.json`` file holding a list of objects, or a folder written by ``datasets``' ``save_to_disk`` (a ``Dataset``, or a
``DatasetDict`` whose ``split`` is read, ``train`` by default). Every problem is a :class:`ValidationError` naming
the source, the row (the line of a JSON Lines file, 1-based; the index of a dataset row, 0-based) and the column.

Tokenization (:func:`tokenize_preferences`) follows TRL 1.16's ``DPOTrainer``/``KTOTrainer``: standard data
tokenizes ``prompt`` and ``prompt + completion`` (EOS appended to the completion unless it already ends with it),
conversational data the chat template of ``prompt`` (with the generation prompt) and of ``prompt + completion``; the
completion's tokens start where the two token lists diverge (normally right after the prompt).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from irl_bilevel.validation import ValidationError, read_json_file, read_text_file
from llm.training import PreferenceDataset, UnpairedDataset

PAIRED_COLUMNS = ("prompt", "chosen", "rejected")
UNPAIRED_COLUMNS = ("prompt", "completion", "label")
PER_PAIR_PARAMETERS = ("aspect_labels", "aspect_mask", "other_chosen_rewards", "other_rejected_rewards")
MESSAGE_KEYS = ("role", "content", "name", "tool_calls", "tool_call_id")
# The roles Hugging Face chat templates render (and TRL's conversational datasets use).
CHAT_ROLES = ("system", "user", "assistant", "tool")


@dataclass(frozen=True)
class PreferenceRecords:
    """Validated rows of one source: ``kind`` paired or unpaired, ``conversational`` or standard, ``rows`` (the
    text columns), ``extras`` (per-pair numeric columns, one list entry per row) and ``where[i]``, how errors name
    row ``i`` (``"line 3"``, ``"row 2"``)."""

    source: str
    kind: Literal["paired", "unpaired", "prompts"]
    conversational: bool
    rows: list[dict[str, Any]]
    where: list[str]
    extras: dict[str, list[Any]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.rows)

    def prompts(self) -> list[Any]:
        return [row["prompt"] for row in self.rows]


# ---------------------------------------------------------------------- reading
def read_preference_file(path: str | Path, *, split: str = "train", ignore_columns: Iterable[str] = (),
                         prompts_only: bool = False) -> PreferenceRecords:
    """Rows of a JSON Lines / JSON file or a ``datasets`` folder, validated (see the module docstring).
    ``prompts_only``: read the ``prompt`` column alone (the prompts of online RL; other columns are skipped)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ValidationError(f"data: {path} does not exist; expected a .jsonl file or a datasets folder")
    if path.is_dir():
        raw = _dataset_rows(path, split)
    else:
        raw = _json_rows(path)
    if not raw:
        raise ValidationError(f"data: {path} holds no rows")
    return validate_rows(raw, str(path), ignore_columns, prompts_only)


def _json_rows(path: Path) -> list[tuple[str, Any]]:
    if path.suffix == ".json":
        value = read_json_file(path, "data", expected=list,
                               recovery="; expected a list of objects, or use .jsonl for one object per line")
        return [(f"item {index}", item) for index, item in enumerate(value)]
    return json_lines(read_text_file(path, "data"), path, "data", "one object per line")


def json_lines(text: str, path: Path, field: str, expected: str) -> list[tuple[str, Any]]:
    """``("line N", object)`` per non-blank line of a JSON Lines ``text``; a line that is not JSON is reported as
    ``<field>: <path> line N is not valid JSON (...); expected <expected>``."""
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append((f"line {number}", json.loads(line)))
        except json.JSONDecodeError as error:
            raise ValidationError(f"{field}: {path} line {number} is not valid JSON ({error.msg}); expected "
                                  f"{expected}") from error
    return rows


def _dataset_rows(path: Path, split: str) -> list[tuple[str, Any]]:
    try:
        import datasets
    except ImportError as error:  # pragma: no cover - datasets comes with the llm extra
        raise ValidationError("data: reading a datasets folder needs the `datasets` package (the llm extra)") \
            from error
    try:
        loaded = datasets.load_from_disk(str(path))
    except (OSError, ValueError) as error:  # pyarrow reports a damaged .arrow file as an OSError or ArrowInvalid
        raise ValidationError(f"data: {path} is not a readable folder written by datasets' save_to_disk "
                              f"({str(error)[:300]})") from error
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise ValidationError(f"split: {path} has the splits {sorted(loaded)}, not {split!r}; pass --split")
        loaded = loaded[split]
    return [(f"row {index}", row) for index, row in enumerate(loaded)]


def validate_rows(raw: Sequence[tuple[str, Any]], source: str, ignore_columns: Iterable[str] = (),
                  prompts_only: bool = False) -> PreferenceRecords:
    """:class:`PreferenceRecords` of ``(where, row)`` pairs: one format for all rows, no missing column, no empty
    field, well-formed messages, numeric per-pair columns, no unknown column."""
    first_where, first = raw[0]
    if not isinstance(first, dict):
        raise ValidationError(f"data: {source} {first_where} is a {type(first).__name__}, expected an object")
    kind: Literal["paired", "unpaired", "prompts"]
    columns: tuple[str, ...]
    if prompts_only:
        kind, columns = "prompts", ("prompt",)
        ignore_columns = set(first) | set(ignore_columns) | set(PAIRED_COLUMNS) | set(UNPAIRED_COLUMNS)
    elif "completion" in first or "label" in first:
        kind, columns = "unpaired", UNPAIRED_COLUMNS
    else:
        kind, columns = "paired", PAIRED_COLUMNS
    ignored = set(ignore_columns) - set(columns)
    known = set(columns) | (set(PER_PAIR_PARAMETERS) if kind == "paired" else set()) | ignored
    conversational = isinstance(first.get("prompt"), list)
    rows: list[dict[str, Any]] = []
    where: list[str] = []
    extras: dict[str, list[Any]] = {}
    for place, record in raw:
        if not isinstance(record, dict):
            raise ValidationError(f"data: {source} {place} is a {type(record).__name__}, expected an object")
        unknown = sorted(set(record) - known)
        if unknown and kind != "prompts":
            raise ValidationError(f"{unknown[0]}: unknown column in {source} {place}; {kind} preference data has "
                                  f"{list(columns)} (and optional per-pair loss parameters {list(PER_PAIR_PARAMETERS)}"
                                  f"); pass --ignore-columns {','.join(unknown)} to skip it")
        for name in columns:
            if name not in record or record[name] is None:
                raise ValidationError(f"{name}: missing in {source} {place}; {kind} preference data needs the columns "
                                      f"{list(columns)} (TRL's format)")
        row = {}
        for name in columns:
            value = record[name]
            if name == "label":
                if not isinstance(value, bool):
                    raise ValidationError(f"label: in {source} {place} is {value!r}; expected true or false")
                row[name] = value
                continue
            row[name] = _checked_text(value, name, conversational, source, place)
        rows.append(row)
        where.append(place)
        for name in PER_PAIR_PARAMETERS:
            if name in record and name not in ignored and kind == "paired":
                extras.setdefault(name, []).append(_checked_numbers(record[name], name, source, place))
    for name, values in extras.items():
        if len(values) != len(rows):
            raise ValidationError(f"{name}: present in some rows of {source} but not in all ({len(values)} of "
                                  f"{len(rows)}); a per-pair loss parameter needs a value in every row")
    return PreferenceRecords(source, kind, conversational, rows, where, extras)


def _checked_text(value: Any, name: str, conversational: bool, source: str, place: str) -> Any:
    if conversational:
        if not isinstance(value, list):
            raise ValidationError(f"{name}: in {source} {place} is a {type(value).__name__}; the first row is "
                                  f"conversational, so every field must be a list of messages")
        if not value:
            raise ValidationError(f"{name}: in {source} {place} is an empty list of messages")
        for index, message in enumerate(value):
            if not isinstance(message, dict) or "role" not in message or "content" not in message:
                raise ValidationError(f"{name}: message {index} in {source} {place} must be an object with role and "
                                      f"content, got {message!r}")
            unknown = sorted(set(message) - set(MESSAGE_KEYS))
            if unknown:
                raise ValidationError(f"{name}: message {index} in {source} {place} has unknown key {unknown[0]!r}; "
                                      f"expected some of {list(MESSAGE_KEYS)}")
            role, content = message["role"], message["content"]
            if role not in CHAT_ROLES:
                raise ValidationError(f"{name}: message {index} in {source} {place} has role {role!r}; expected one "
                                      f"of {list(CHAT_ROLES)} (the roles of chat templates)")
            if not isinstance(content, str):
                raise ValidationError(f"{name}: message {index} in {source} {place} has content {content!r} "
                                      f"({type(content).__name__}); expected a string of text")
            if not content.strip():
                raise ValidationError(f"{name}: message {index} in {source} {place} has empty content; expected "
                                      f"text")
        return value
    if not isinstance(value, str):
        raise ValidationError(f"{name}: in {source} {place} is a {type(value).__name__}; the first row is standard "
                              f"text, so every field must be a string (or every field a list of messages)")
    if not value.strip():
        raise ValidationError(f"{name}: in {source} {place} is empty; expected text")
    return value


def _checked_numbers(value: Any, name: str, source: str, place: str) -> Any:
    try:
        tensor = torch.as_tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as error:
        raise ValidationError(f"{name}: in {source} {place} is {value!r}; expected a number or a list of numbers") \
            from error
    if not all(math.isfinite(v) for v in tensor.flatten().tolist()):
        raise ValidationError(f"{name}: in {source} {place} holds a non-finite number")
    return value


# ---------------------------------------------------------------------- tokenizing
def _chat_ids(tokenizer, messages: list[dict[str, Any]], generation_prompt: bool) -> list[int]:
    if not getattr(tokenizer, "chat_template", None):
        raise ValidationError("tokenizer: has no chat template; conversational data (lists of messages) needs one "
                              "(set tokenizer.chat_template in the model folder) or use standard text columns")
    encoded = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=generation_prompt)
    ids = encoded["input_ids"] if isinstance(encoded, dict) or hasattr(encoded, "keys") else encoded
    return [int(token) for token in ids]


def _prompt_and_completions(tokenizer, prompt: Any, completions: list[Any], conversational: bool
                            ) -> tuple[list[int], list[list[int]]]:
    """TRL's split of ``prompt + completion`` token ids: the prompt up to where all of them diverge from the prompt
    tokenized alone, each completion from there on."""
    if conversational:
        prompt_ids = _chat_ids(tokenizer, prompt, generation_prompt=True)
        fulls = [_chat_ids(tokenizer, prompt + completion, generation_prompt=False) for completion in completions]
    else:
        eos = tokenizer.eos_token or ""
        prompt_ids = list(tokenizer(prompt)["input_ids"])
        fulls = [list(tokenizer(prompt + (c if c.endswith(eos) else c + eos))["input_ids"]) for c in completions]
    shared = len(prompt_ids)
    for full in fulls:
        common = 0
        while common < min(shared, len(full)) and full[common] == prompt_ids[common]:
            common += 1
        shared = common
    return prompt_ids[:shared], [full[shared:] for full in fulls]


def tokenize_preferences(records: PreferenceRecords, tokenizer, *, max_length: int | None = None,
                         per_pair: Sequence[str] = ()) -> PreferenceDataset | UnpairedDataset:
    """Token ids of every row (module docstring): a :class:`~llm.training.PreferenceDataset` of paired rows (with the
    per-pair columns named in ``per_pair`` as ``extras``) or an :class:`~llm.training.UnpairedDataset`. A row whose
    prompt or completion has no token, or whose ``prompt + completion`` exceeds ``max_length`` tokens, is a
    :class:`ValidationError` naming it."""
    if records.kind == "prompts":
        raise ValidationError(f"data: {records.source} holds prompts only; preference training needs prompt, "
                              f"chosen, rejected (or prompt, completion, label)")
    names = ("chosen", "rejected") if records.kind == "paired" else ("completion",)
    prompts: list[list[int]] = []
    completions: dict[str, list[list[int]]] = {name: [] for name in names}
    for row, place in zip(records.rows, records.where):
        prompt_ids, completion_ids = _prompt_and_completions(tokenizer, row["prompt"], [row[n] for n in names],
                                                             records.conversational)
        if not prompt_ids:
            raise ValidationError(f"prompt: in {records.source} {place} gives no token before the completion (a "
                                  f"causal LM needs one to predict the first completion token from); the tokenizer "
                                  f"adds no BOS, so the prompt must not be empty")
        for name, ids in zip(names, completion_ids):
            if not ids:
                raise ValidationError(f"{name}: in {records.source} {place} adds no token to the prompt")
            if max_length is not None and len(prompt_ids) + len(ids) > max_length:
                raise ValidationError(f"{name}: in {records.source} {place} has {len(prompt_ids) + len(ids)} tokens "
                                      f"with its prompt, more than the model's context of {max_length}")
            completions[name].append(ids)
        prompts.append(prompt_ids)
    if records.kind == "unpaired":
        return UnpairedDataset(prompts, completions["completion"], [row["label"] for row in records.rows])
    extras = {}
    for name in per_pair:
        if name in records.extras:
            extras[name] = torch.as_tensor(records.extras[name], dtype=torch.get_default_dtype())
    return PreferenceDataset(prompts, completions["chosen"], completions["rejected"], extras)


def rendered_text(tokenizer, records: PreferenceRecords, row: dict[str, Any], name: str) -> tuple[str, str]:
    """``(prompt, completion)`` as text: standard rows as they are; conversational rows rendered by the chat template
    (the prompt with the generation prompt, the completion as what the template adds after it)."""
    if not records.conversational:
        return row["prompt"], row[name]
    if not getattr(tokenizer, "chat_template", None):
        raise ValidationError("tokenizer: has no chat template; conversational data needs one")
    prompt = tokenizer.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(row["prompt"] + row[name], tokenize=False)
    if not full.startswith(prompt):
        common = 0
        while common < min(len(prompt), len(full)) and full[common] == prompt[common]:
            common += 1
        prompt = prompt[:common]
    return prompt, full[len(prompt):]


def prompt_texts(tokenizer, records: PreferenceRecords) -> list[str]:
    """Every row's prompt as text (conversational prompts rendered with the generation prompt), duplicates
    removed in order: the prompts of online RL."""
    texts: list[str] = []
    for row in records.rows:
        if records.conversational:
            if not getattr(tokenizer, "chat_template", None):
                raise ValidationError("tokenizer: has no chat template; conversational prompts need one")
            text = tokenizer.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
        else:
            text = row["prompt"]
        if text not in texts:
            texts.append(text)
    return texts
