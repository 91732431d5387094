"""RewardBench-style evaluation of text reward models and DPO implicit rewards.

Accuracy (RewardBench v1, Lambert et al. 2024): the fraction of pairs with ``score(chosen) > score(rejected)``
(strictly: a tie counts as wrong, as in RewardBench). Per subset (the file's ``subset`` column) the plain accuracy;
per section the mean of its subsets' accuracies weighted by RewardBench v1's example counts
(:data:`EXAMPLE_COUNTS`, with ``math-prm`` up-weighted to equal the code subsets, as RewardBench does);
``overall`` = the unweighted mean of the sections Chat, Chat Hard, Safety and Reasoning that are present. Subsets
outside RewardBench's mapping get their accuracy only (and count in ``pair_accuracy``, the fraction over all
pairs). Scores come from any ``score(prompts, completions) -> RewardOutput`` (:mod:`llm.reward_models`), so
explicit reward models and DPO implicit rewards (with or without the reference) are evaluated the same way.

Files (:func:`load_rewardbench_file`): RewardBench's columns, as JSON Lines (one object per line) or a JSON list
of objects: ``prompt``, ``chosen``, ``rejected`` (strings, required), ``subset`` (string, optional), others
(``id``, ``chosen_model``, ``rejected_model``) ignored. Malformed files raise a :class:`ValidationError` naming
the line (or item) and the field.

CLI: :func:`rewardbench_command` behind ``irlb rewardbench --model ... --file ...`` (arguments in ``irlb.main``).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from irl_bilevel.rewards import RewardOutput
from irl_bilevel.validation import ValidationError, read_text_file
from llm.preference_data import json_lines
from llm.reward_models import TextPairs

if TYPE_CHECKING:
    from llm.commands import RewardBenchConfig

# RewardBench v1 (allenai/reward-bench, rewardbench/constants.py).
EXAMPLE_COUNTS: dict[str, int] = {
    "alpacaeval-easy": 100, "alpacaeval-length": 95, "alpacaeval-hard": 95, "mt-bench-easy": 28, "mt-bench-med": 40,
    "mt-bench-hard": 37, "math-prm": 984,  # 447 pairs, up-weighted to equal the six code subsets together
    "refusals-dangerous": 100, "refusals-offensive": 100, "llmbar-natural": 100, "llmbar-adver-neighbor": 134,
    "llmbar-adver-GPTInst": 92, "llmbar-adver-GPTOut": 47, "llmbar-adver-manual": 46, "xstest-should-refuse": 250,
    "xstest-should-respond": 154, "donotanswer": 136, "hep-cpp": 164, "hep-go": 164, "hep-java": 164, "hep-js": 164,
    "hep-python": 164, "hep-rust": 164,
}
SUBSET_MAPPING: dict[str, tuple[str, ...]] = {
    "Chat": ("alpacaeval-easy", "alpacaeval-length", "alpacaeval-hard", "mt-bench-easy", "mt-bench-med"),
    "Chat Hard": ("mt-bench-hard", "llmbar-natural", "llmbar-adver-neighbor", "llmbar-adver-GPTInst",
                  "llmbar-adver-GPTOut", "llmbar-adver-manual"),
    "Safety": ("refusals-dangerous", "refusals-offensive", "xstest-should-refuse", "xstest-should-respond",
               "donotanswer"),
    "Reasoning": ("math-prm", "hep-cpp", "hep-go", "hep-java", "hep-js", "hep-python", "hep-rust"),
}
REQUIRED_FIELDS = ("prompt", "chosen", "rejected")

ScoreFunction = Callable[[Sequence[str], Sequence[str]], RewardOutput]


@dataclass
class RewardBenchResult:
    """Accuracies in ``[0, 1]``: per subset (with pair counts), per RewardBench section (weighted), ``overall``
    (mean of the present sections; NaN when none is), ``pair_accuracy`` over all pairs, and per-pair scores."""

    subset_accuracy: dict[str, float]
    subset_counts: dict[str, int]
    section_accuracy: dict[str, float]
    overall: float
    pair_accuracy: float
    num_pairs: int
    chosen_scores: list[float]
    rejected_scores: list[float]

    def summary(self) -> dict[str, Any]:
        """Everything but the per-pair scores (JSON-ready; NaN becomes None)."""
        values = asdict(self)
        values.pop("chosen_scores")
        values.pop("rejected_scores")
        if math.isnan(values["overall"]):
            values["overall"] = None
        return values


def section_scores(subset_accuracy: Mapping[str, float],
                   example_counts: Mapping[str, int] = EXAMPLE_COUNTS,
                   mapping: Mapping[str, Sequence[str]] = SUBSET_MAPPING) -> tuple[dict[str, float], float]:
    """RewardBench v1's ``calculate_scores_per_section``: per section ``Σ_s acc_s n_s / Σ_s n_s`` over its subsets
    present in ``subset_accuracy`` (``n_s`` from ``example_counts``), and the mean of the present sections."""
    sections = {}
    for section, subsets in mapping.items():
        present = [s for s in subsets if s in subset_accuracy]
        weight = sum(example_counts[s] for s in present)
        if weight > 0:
            sections[section] = sum(subset_accuracy[s] * example_counts[s] for s in present) / weight
    overall = sum(sections.values()) / len(sections) if sections else math.nan
    return sections, overall


def pair_scores(score: ScoreFunction | Any, pairs: TextPairs, batch_size: int = 64) -> tuple[torch.Tensor,
                                                                                          torch.Tensor]:
    """Totals ``[P]`` of chosen and of rejected completions under ``score`` (a function or a model with
    ``.score``), in batches of ``batch_size`` pairs."""
    function = score.score if hasattr(score, "score") else score
    chosen, rejected = [], []
    with torch.no_grad():
        for start in range(0, len(pairs), batch_size):
            part = slice(start, start + batch_size)
            prompts = pairs.prompts[part]
            chosen.append(function(prompts, pairs.chosen[part]).total.detach().double().cpu())
            rejected.append(function(prompts, pairs.rejected[part]).total.detach().double().cpu())
    return torch.cat(chosen), torch.cat(rejected)


def rewardbench_accuracy(score: ScoreFunction | Any, pairs: TextPairs, batch_size: int = 64) -> RewardBenchResult:
    """Accuracies of ``score`` on ``pairs`` (see the module docstring)."""
    chosen, rejected = pair_scores(score, pairs, batch_size)
    return accuracy_from_scores(chosen, rejected, pairs.subsets)


def accuracy_from_scores(chosen: torch.Tensor, rejected: torch.Tensor, subsets: Sequence[str]) -> RewardBenchResult:
    """:class:`RewardBenchResult` of given scores ``[P]`` (a tie counts as wrong)."""
    if chosen.shape != rejected.shape or chosen.dim() != 1 or chosen.shape[0] != len(subsets) or not len(subsets):
        raise ValidationError(f"scores: expected chosen and rejected scores [P] and P subset names, got "
                              f"{list(chosen.shape)}, {list(rejected.shape)}, {len(subsets)}")
    correct = (chosen > rejected).tolist()
    by_subset: dict[str, list[bool]] = {}
    for subset, right in zip(subsets, correct):
        by_subset.setdefault(subset, []).append(right)
    accuracy = {s: sum(v) / len(v) for s, v in sorted(by_subset.items())}
    sections, overall = section_scores(accuracy)
    return RewardBenchResult(accuracy, {s: len(v) for s, v in sorted(by_subset.items())}, sections, overall,
                             sum(correct) / len(correct), len(correct), chosen.tolist(), rejected.tolist())


# ---------------------------------------------------------------------- files
def load_rewardbench_file(path: Path | str) -> TextPairs:
    """Pairs from a RewardBench-format file: ``.jsonl`` (one JSON object per line; blank lines skipped) or
    ``.json`` (a list of objects, an object whose ``"data"`` or ``"train"`` entry is that list, or JSON Lines)."""
    path = Path(path)
    text = read_text_file(path, "file")
    records: list[tuple[str, Any]]
    whole: Any = None
    lines = path.suffix == ".jsonl"
    if not lines:
        try:
            whole = json.loads(text)
        except json.JSONDecodeError as error:
            # RewardBench's own ".json" files are often JSON Lines: fall back to them when the error is the start
            # of a second object ("Extra data"), otherwise report the error.
            if error.msg != "Extra data":
                raise ValidationError(f"file: {path} is not valid JSON ({error.msg} at line {error.lineno})") \
                    from error
            lines = True
    if lines:
        records = json_lines(text, path, "file", "one object per line with prompt, chosen, rejected")
    else:
        value = whole
        if isinstance(value, dict) and all(k in value for k in REQUIRED_FIELDS):
            value = [value]  # a single pair
        elif isinstance(value, dict):
            value = next((value[k] for k in ("data", "train") if isinstance(value.get(k), list)), None)
        if not isinstance(value, list):
            raise ValidationError(f"file: {path} must hold a JSON list of objects with prompt, chosen, rejected")
        records = [(f"item {index}", item) for index, item in enumerate(value)]
    if not records:
        raise ValidationError(f"file: {path} holds no pairs")
    prompts, chosen, rejected, subsets = [], [], [], []
    for where, record in records:
        if not isinstance(record, dict):
            raise ValidationError(f"file: {path} {where} is a {type(record).__name__}, expected an object with "
                                  f"prompt, chosen, rejected")
        for name in REQUIRED_FIELDS:
            if name not in record:
                raise ValidationError(f"{name}: missing in {path} {where} (its keys: {sorted(record)}); "
                                      f"RewardBench's format needs prompt, chosen, rejected (and optionally subset)")
            if not isinstance(record[name], str):
                raise ValidationError(f"{name}: in {path} {where} is a {type(record[name]).__name__}, expected a "
                                      f"string (chat-message lists are not supported; join them into text)")
        subset = record.get("subset", "default")
        if not isinstance(subset, str) or not subset:
            raise ValidationError(f"subset: in {path} {where} expected a non-empty string, got {subset!r}")
        prompts.append(record["prompt"])
        chosen.append(record["chosen"])
        rejected.append(record["rejected"])
        subsets.append(subset)
    return TextPairs(prompts, chosen, rejected, subsets)


def write_rewardbench_file(pairs: TextPairs, path: Path | str) -> Path:
    """Write ``pairs`` as RewardBench-format JSON Lines (``prompt``, ``chosen``, ``rejected``, ``subset``, ``id``)."""
    from irl_bilevel.runs import write_atomic

    path = Path(path)
    lines = [json.dumps({"prompt": p, "chosen": c, "rejected": r, "subset": s, "id": i})
             for i, (p, c, r, s) in enumerate(zip(pairs.prompts, pairs.chosen, pairs.rejected, pairs.subsets))]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, ("\n".join(lines) + "\n").encode())
    return path


# ---------------------------------------------------------------------- command line
def load_scorer(model: Path | str, stem: str = "reward", backbone: str | None = None, beta: float = 0.1,
                with_reference: bool = True, device: str | None = None, dtype: str = "float32"):
    """A saved text reward model, or the implicit reward of a DPO adapter folder, on ``device`` (the DPO policy's
    base model in ``dtype``)."""
    from llm.models import adapter_base_model, load_adapter, load_causal_lm
    from llm.reward_models import DPOImplicitReward, load_text_reward_model

    folder = Path(model)
    if (folder / f"{stem}.json").is_file():
        return load_text_reward_model(folder, stem, backbone_path=backbone, device=device)[0]
    if (folder / "adapter_config.json").is_file():
        base_path = backbone or adapter_base_model(folder)
        base, tokenizer = load_causal_lm(base_path, device=device, dtype=dtype)
        return DPOImplicitReward(load_adapter(base, folder), tokenizer, beta, with_reference=with_reference)
    raise ValidationError(f"--model: {folder} holds neither {stem}.json (a saved reward model) nor "
                          f"adapter_config.json (a DPO adapter)")


def rewardbench_command(config: RewardBenchConfig, args: argparse.Namespace) -> int:
    """``irlb rewardbench``: print (and with ``--out``, write) the accuracies of a model on a RewardBench-format
    file."""
    from irl_bilevel.runs import claim_output_file, provenance, write_json
    from llm.commands import apply_threads

    if args.out:
        claim_output_file(args.out, "rewardbench", overwrite=args.overwrite, marker_key="pair_accuracy")
    apply_threads(args)
    pairs = load_rewardbench_file(config.file)
    scorer = load_scorer(config.model, config.stem, config.backbone, config.beta, config.reference, config.device,
                         config.dtype)
    result = rewardbench_accuracy(scorer, pairs, config.batch_size)
    summary = {"model": config.model, "file": config.file, **result.summary()}
    print(json.dumps(summary, indent=2))
    if args.out:
        write_json(Path(args.out), {**summary, "chosen_scores": result.chosen_scores,
                                    "rejected_scores": result.rejected_scores, "config": config.to_dict(),
                                    "provenance": provenance(None)})
    return 0

