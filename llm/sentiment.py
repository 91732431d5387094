"""Controlled sentiment generation: the DPO paper's IMDb experiment (Rafailov et al. 2023, §6.1), scaled down.

The policy continues short review prefixes (:func:`sentiment_prompts`, held-out reviews of the built-in model's
grammar) and is judged by a structured gold reward (:class:`GoldReward`) with named aspects, ``[N, K]``:

==============  =========================================================================================
aspect          value for a completion ``y`` of prompt ``x``
==============  =========================================================================================
sentiment       VADER's compound score in ``[−1, 1]`` of the review ``x + y`` (or of ``y`` alone); VADER's
                lexicon replaces the DPO paper's RoBERTa sentiment classifier
fluency         mean per-token log-likelihood ``log π_ref(y|x) / |y|`` under the frozen reference (the base
                model, adapter disabled), in nats per token (``<= 0``)
conciseness     ``−max(0, words(y) − target_words) / target_words``: 0 up to the target length, then linear
diversity       distinct words / words of ``y`` (0 for an empty completion)
==============  =========================================================================================

The total is the core's aggregator (:class:`irl_bilevel.rewards.FixedWeights` by default, any
:class:`irl_bilevel.rewards.Aggregator` works) applied to the aspects; it comes back as the core's
:class:`irl_bilevel.rewards.RewardOutput`.

Preference pairs (:func:`label_pairs`, :func:`sample_preference_pairs`): sample ``M >= 2`` completions per
prompt; either the best and the worst by the gold total form a pair, or a simulated teacher of
:mod:`irl_bilevel.teachers` (B-Pref: noisy, myopic, skipping, ...) compares the first two samples by their gold
returns (one "step" per completion). :meth:`PreferencePairs.preference_batch` gives the core's
:class:`irl_bilevel.losses.batches.PreferenceBatch` for any loss in the catalog.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from irl_bilevel.losses.batches import PreferenceBatch
from irl_bilevel.rewards import Aggregator, FixedWeights, RewardOutput, Transitions
from irl_bilevel.teachers import Teacher
from irl_bilevel.validation import ValidationError
from llm.builtin_model import HELD_OUT_SEED_OFFSET, ReviewGrammar
from llm.models import Completions, collate_completions, generate_completions, preference_batch, reference_logprobs

ASPECTS = ("sentiment", "fluency", "conciseness", "diversity")
DEFAULT_WEIGHTS: dict[str, float] = {"sentiment": 1.0, "fluency": 0.1, "conciseness": 0.1, "diversity": 0.1}
"""Sentiment dominates, as in the DPO paper's task; the other aspects keep completions fluent, short and varied."""

PROMPT_SEED_OFFSET = 2 * HELD_OUT_SEED_OFFSET
"""Prompts come from a review stream of their own (``seed + PROMPT_SEED_OFFSET`` and ``+ 1`` for the test split),
never the built-in model's training corpus (``seed``) or its held-out evaluation text."""


# ---------------------------------------------------------------------- prompts
def sentiment_prompts(count: int, split: str = "train", seed: int = 0, min_words: int = 2, max_words: int = 5,
                      grammar: ReviewGrammar | None = None) -> list[str]:
    """``count`` review prefixes of ``min_words``–``max_words`` words (e.g. ``"i watched this movie"``).

    Reviews open with a sentiment-neutral sentence, so a prefix rarely fixes the polarity: the continuation
    decides it. ``split``: ``"train"`` or ``"test"`` (disjoint random streams).
    """
    if split not in ("train", "test"):
        raise ValidationError(f"split: expected 'train' or 'test', got {split!r}")
    if count < 1 or not 1 <= min_words <= max_words:
        raise ValidationError(f"count, min_words, max_words: expected count >= 1 and 1 <= min_words <= max_words, "
                              f"got {count}, {min_words}, {max_words}")
    grammar = grammar or ReviewGrammar()
    rng = random.Random(seed + PROMPT_SEED_OFFSET + (split == "test"))
    prompts = []
    for _ in range(count):
        words = grammar.review(rng)[0].split()
        prompts.append(" ".join(words[:rng.randint(min_words, max_words)]))
    return prompts


REVIEW_INSTRUCTION = 'Continue this movie review in one or two sentences: "{prefix}"'
"""The user message around a review prefix when the policy is a chat model (:func:`chat_review_prompts`)."""


def chat_review_prompts(tokenizer, prefixes: Sequence[str], instruction: str = REVIEW_INSTRUCTION) -> list[str]:
    """Review prefixes as chat prompts: ``instruction`` (with ``{prefix}``, the prefix capitalized) as the user's
    message, rendered by the tokenizer's chat template with the assistant's turn opened. The returned texts already
    hold the template's special tokens: encode them without adding more (``add_special_tokens=False``)."""
    if "{prefix}" not in instruction:
        raise ValidationError(f"instruction: expected the field {{prefix}}, got {instruction!r}")
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValidationError("tokenizer: has no chat template; chat prompts need an instruction-tuned model's "
                              "tokenizer")
    return [tokenizer.apply_chat_template([{"role": "user", "content": instruction.format(
        prefix=prefix[:1].upper() + prefix[1:])}], add_generation_prompt=True, tokenize=False) for prefix in prefixes]


# ---------------------------------------------------------------------- gold reward
def vader_compound(texts: Sequence[str]) -> torch.Tensor:
    """VADER's compound sentiment score in ``[−1, 1]`` per text (Hutto & Gilbert 2014), float64 ``[N]``."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = _analyzer(SentimentIntensityAnalyzer)
    return torch.tensor([analyzer.polarity_scores(text)["compound"] for text in texts], dtype=torch.float64)


_ANALYZERS: dict[type, object] = {}


def _analyzer(cls):
    if cls not in _ANALYZERS:  # loading the lexicon takes ~50 ms; do it once
        _ANALYZERS[cls] = cls()
    return _ANALYZERS[cls]


def conciseness(texts: Sequence[str], target_words: int) -> torch.Tensor:
    """``−max(0, words − target_words) / target_words`` per text, float64 ``[N]``."""
    words = torch.tensor([len(text.split()) for text in texts], dtype=torch.float64)
    return -(words - target_words).clamp(min=0) / target_words


def lexical_diversity(texts: Sequence[str]) -> torch.Tensor:
    """Distinct words / words per text (0 for an empty text), float64 ``[N]``."""
    values = []
    for text in texts:
        words = text.split()
        values.append(len(set(words)) / len(words) if words else 0.0)
    return torch.tensor(values, dtype=torch.float64)


class GoldReward:
    """The structured gold reward of controlled sentiment generation (aspects: see the module docstring).

    ``reference_model``: the model whose adapter-disabled version scores fluency (a plain model is used as is).
    ``weights``: per-aspect weights of the default :class:`FixedWeights` aggregator (a mapping by aspect name,
    missing aspects weigh 0), or pass any core ``aggregator``. The aggregator receives the aspects ``[N, K]`` both
    as its first argument and as the ``states`` of its :class:`Transitions` (an input-conditioned aggregator
    such as ``Gated`` then gates on the aspect values themselves). ``score_prompt``: VADER scores the whole review
    ``x + y`` (True, the default) or the completion alone.
    """

    aspect_names = ASPECTS

    def __init__(self, reference_model, tokenizer, weights: Mapping[str, float] | None = None, *,
                 aggregator: Aggregator | None = None, target_words: int = 16, score_prompt: bool = True,
                 chunk_size: int = 64) -> None:
        if weights is not None and aggregator is not None:
            raise ValidationError("aggregator: given together with weights; pass one or the other")
        weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
        unknown = set(weights) - set(ASPECTS)
        if unknown:
            raise ValidationError(f"weights: unknown aspect(s) {sorted(unknown)}; expected names in {ASPECTS}")
        if target_words < 1:
            raise ValidationError(f"target_words: expected a positive integer, got {target_words}")
        self.weights = {name: float(weights.get(name, 0.0)) for name in ASPECTS}
        self.aggregator = aggregator if aggregator is not None else FixedWeights([self.weights[a] for a in ASPECTS])
        self.reference_model = reference_model
        self.tokenizer = tokenizer
        self.target_words = target_words
        self.score_prompt = score_prompt
        self.chunk_size = chunk_size

    @property
    def num_aspects(self) -> int:
        return len(ASPECTS)

    def aspects(self, prompts: Sequence[str], texts: Sequence[str], prompt_ids: Sequence[Sequence[int]],
                completion_ids: Sequence[Sequence[int]]) -> torch.Tensor:
        """Per-aspect rewards ``[N, 4]`` (default float dtype) of completions given as text and token ids."""
        if not (len(prompts) == len(texts) == len(prompt_ids) == len(completion_ids)) or not texts:
            raise ValidationError(f"texts: expected equally many (>= 1) prompts, texts, prompt_ids and "
                                  f"completion_ids, got {len(prompts)}, {len(texts)}, {len(prompt_ids)}, "
                                  f"{len(completion_ids)}")
        reviews = [f"{p} {t}".strip() for p, t in zip(prompts, texts)] if self.score_prompt else list(texts)
        batch = collate_completions(prompt_ids, completion_ids, self.tokenizer.pad_token_id)
        summed, counts = reference_logprobs(self.reference_model, batch, self.chunk_size)
        fluency = (summed / counts).double().cpu()
        columns = [vader_compound(reviews), fluency, conciseness(texts, self.target_words), lexical_diversity(texts)]
        return torch.stack(columns, dim=1).to(torch.get_default_dtype())

    def aggregate(self, aspects: torch.Tensor) -> torch.Tensor:
        """The total ``[N]`` of per-aspect rewards ``[N, K]`` under the aggregator."""
        return self.aggregator(aspects, Transitions(states=aspects))

    def score(self, prompts: Sequence[str], texts: Sequence[str], prompt_ids: Sequence[Sequence[int]],
              completion_ids: Sequence[Sequence[int]]) -> RewardOutput:
        """``RewardOutput(aspects [N, 4], total [N], aspect_names)``, without gradients."""
        with torch.no_grad():
            aspects = self.aspects(prompts, texts, prompt_ids, completion_ids)
            return RewardOutput(aspects, self.aggregate(aspects), ASPECTS)

    def __call__(self, completions: Completions) -> RewardOutput:
        """Score sampled completions (:func:`llm.models.generate_completions`)."""
        return self.score(completions.prompts, completions.texts, completions.prompt_ids, completions.completion_ids)

    def score_texts(self, prompts: Sequence[str], texts: Sequence[str]) -> RewardOutput:
        """Score text completions; prompt and completion are tokenized separately (prompt with BOS)."""
        prompt_ids = self.tokenizer(list(prompts), add_special_tokens=True)["input_ids"]
        completion_ids = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        empty = [i for i, ids in enumerate(completion_ids) if not ids]
        if empty:
            raise ValidationError(f"texts: completion {empty[0]} has no tokens; fluency needs at least one")
        return self.score(prompts, texts, prompt_ids, completion_ids)


# ---------------------------------------------------------------------- preference pairs
@dataclass(frozen=True)
class PreferencePairs:
    """``P`` labelled pairs ``(x, y_w, y_l)``: token ids, texts and the gold rewards of both completions.

    ``chosen_aspects``, ``rejected_aspects`` ``[P, K]`` and ``chosen_total``, ``rejected_total`` ``[P]`` are the
    gold reward; ``prompt_index [P]`` points into the prompt list the pairs were sampled for.
    """

    prompts: list[str]
    prompt_ids: list[list[int]]
    chosen_ids: list[list[int]]
    rejected_ids: list[list[int]]
    chosen_texts: list[str]
    rejected_texts: list[str]
    chosen_aspects: torch.Tensor
    rejected_aspects: torch.Tensor
    chosen_total: torch.Tensor
    rejected_total: torch.Tensor
    prompt_index: list[int]
    aspect_names: tuple[str, ...] = ASPECTS

    def __len__(self) -> int:
        return len(self.prompts)

    def subset(self, rows: Sequence[int]) -> PreferencePairs:
        rows = list(rows)
        index = torch.tensor(rows, dtype=torch.long)
        pick = lambda values: [values[r] for r in rows]  # noqa: E731
        return PreferencePairs(pick(self.prompts), pick(self.prompt_ids), pick(self.chosen_ids),
                               pick(self.rejected_ids), pick(self.chosen_texts), pick(self.rejected_texts),
                               self.chosen_aspects[index], self.rejected_aspects[index], self.chosen_total[index],
                               self.rejected_total[index], pick(self.prompt_index), self.aspect_names)

    def preference_batch(self, model, pad_token_id: int, *, with_reference: bool = True,
                         reference: tuple[torch.Tensor, torch.Tensor] | None = None) -> PreferenceBatch:
        """The core's :class:`PreferenceBatch` of these pairs under ``model`` (see
        :func:`llm.models.preference_batch`; precompute ``reference`` once for repeated training steps)."""
        return preference_batch(model, self.prompt_ids, self.chosen_ids, self.rejected_ids, pad_token_id,
                                with_reference=with_reference, reference=reference)


def label_pairs(completions: Completions, rewards: RewardOutput, *, teacher: Teacher | None = None,
                margin: float | Sequence[float] | None = None,
                generator: torch.Generator | None = None) -> PreferencePairs:
    """Pairs from ``M >= 2`` completions per prompt (prompt-major, as :func:`generate_completions` returns them).

    Without ``teacher``: the best and the worst completion of each prompt by the gold total (prompts whose totals
    are all equal give no pair). With ``teacher``: it compares each prompt's first two completions by their gold
    rewards as one-step returns (the per-aspect rewards ``[P, 1, K]`` when it has ``aspect_weights``, else the
    totals ``[P, 1]``); ties and skipped queries give no pair. ``margin``, ``generator``: passed to
    :meth:`Teacher.label` (the margin is needed by skipping and equal teachers).
    """
    groups: dict[int, list[int]] = {}
    for sample, prompt in enumerate(completions.prompt_index):
        groups.setdefault(prompt, []).append(sample)
    if len(completions) != rewards.total.shape[0]:
        raise ValidationError(f"rewards: expected one reward per completion ({len(completions)}), got "
                              f"{rewards.total.shape[0]}")
    if any(len(samples) < 2 for samples in groups.values()):
        raise ValidationError("completions: expected at least 2 completions per prompt (num_samples >= 2)")
    prompts = sorted(groups)
    winners: list[tuple[int, int, int]] = []  # (prompt, chosen sample, rejected sample)
    if teacher is None:
        for prompt in prompts:
            samples = groups[prompt]
            totals = rewards.total[samples]
            best, worst = samples[int(totals.argmax())], samples[int(totals.argmin())]
            if rewards.total[best] > rewards.total[worst]:
                winners.append((prompt, best, worst))
    else:
        first = [groups[p][0] for p in prompts]
        second = [groups[p][1] for p in prompts]
        if teacher.aspect_weights is not None:
            r1, r2 = rewards.aspects[first].unsqueeze(1), rewards.aspects[second].unsqueeze(1)
        else:
            r1, r2 = rewards.total[first].unsqueeze(1), rewards.total[second].unsqueeze(1)
        labels = teacher.label(r1, r2, margin=margin, generator=generator)
        skipped_queries = labels.skipped.tolist() if labels.skipped is not None else [False] * len(prompts)
        for prompt, a, b, label, skipped in zip(prompts, first, second, labels.labels.tolist(), skipped_queries):
            if skipped or label == 0.5:
                continue
            winners.append((prompt, a, b) if label == 1 else (prompt, b, a))
    chosen = [w[1] for w in winners]
    rejected = [w[2] for w in winners]
    c = completions
    return PreferencePairs(
        prompts=[c.prompts[i] for i in chosen], prompt_ids=[c.prompt_ids[i] for i in chosen],
        chosen_ids=[c.completion_ids[i] for i in chosen], rejected_ids=[c.completion_ids[i] for i in rejected],
        chosen_texts=[c.texts[i] for i in chosen], rejected_texts=[c.texts[i] for i in rejected],
        chosen_aspects=rewards.aspects[chosen], rejected_aspects=rewards.aspects[rejected],
        chosen_total=rewards.total[chosen], rejected_total=rewards.total[rejected],
        prompt_index=[w[0] for w in winners], aspect_names=tuple(rewards.aspect_names))


def sample_preference_pairs(model, tokenizer, prompts: Sequence[str], gold: GoldReward, *, num_samples: int = 2,
                            max_new_tokens: int = 24, temperature: float = 1.0, seed: int = 0,
                            teacher: Teacher | None = None, margin: float | Sequence[float] | None = None,
                            batch_size: int = 64) -> tuple[PreferencePairs, Completions, RewardOutput]:
    """Sample ``num_samples`` completions per prompt from ``model`` (its adapter active, if any: wrap the call in
    :func:`llm.models.reference_mode` to sample from the reference), score them with ``gold`` and label pairs
    (:func:`label_pairs`; the teacher draws from a generator seeded with ``seed``). Returns the pairs, the
    completions and their gold rewards."""
    completions = generate_completions(model, tokenizer, prompts, max_new_tokens, temperature=temperature,
                                       num_samples=num_samples, seed=seed, batch_size=batch_size)
    rewards = gold(completions)
    generator = torch.Generator().manual_seed(seed)
    return label_pairs(completions, rewards, teacher=teacher, margin=margin, generator=generator), completions, \
        rewards
