"""A built-in small causal language model that the project trains itself, with no hub access.

* :class:`ReviewGrammar` generates short movie reviews from a template grammar. Each review has a hidden
  polarity (positive, negative or neutral) that decides, word by word and with noise, whether opinion words are
  positive, negative or neutral ones, so a model trained on the corpus learns that a review which turned
  positive tends to go on positively: sentiment continuation is learnable (the scaled-down IMDb task of the
  DPO paper, Rafailov et al. 2023). Opinion words are taken from VADER's lexicon.
* :class:`BuiltinRecipe` fixes everything that determines the model: grammar seed and corpus size, a word-level
  tokenizer trained with the ``tokenizers`` library, a GPT-2-shaped transformer (``GPT2Config``) and its
  training budget.
* :func:`build_builtin_model` trains the model on the CPU (float32, one thread is enough) and caches it in
  Hugging Face format (``save_pretrained`` of the model and of a ``PreTrainedTokenizerFast``) under
  ``<cache>/llm/builtin-<sha256(recipe)[:16]>``. The folder is written atomically (built in a temporary folder,
  then renamed). A second call loads it from the cache. The returned path loads with plain
  :func:`llm.models.load_causal_lm`.

Determinism: the corpus comes from ``random.Random(seed)``, the weights and batch order from torch generators
seeded by the recipe (the caller's global RNG is forked and restored), and the model is built in float32 whatever
the ambient default dtype, so two builds of the same recipe give identical weights (on the same torch version,
CPU and thread count; the build always runs on the CPU).

Agentic text (``agentic_envs``): the review tokenizer cannot encode the agentic environments' prompts
(``"A=[0, 1, 2]"``, ``"Move:"``, room lists) — they would all be ``[UNK]``. A recipe that names agentic
environments (:data:`AGENTIC_ENVS`, e.g. ``("hanoi-3", "steppath")``) adds to the corpus one document per
(reachable non-terminal state, legal action) pair of each environment, ``render_state(s) + " " +
format_action(a)`` (``agentic_repeats`` copies of each), so the tokenizer covers every prompt and action those
environments can render and the model learns the prompt and action *format* and which moves are legal, but not
which move is good (the legal actions are weighted uniformly): a base policy that RL on an environment reward can
still improve. Each document must fit the context whole (``n_positions`` ≥ its words + 2 for ``[BOS]`` and
``[EOS]``; otherwise ``ValidationError``): a truncated document loses its move. A recipe without agentic
environments keeps its hash (the two fields are left out of
:meth:`BuiltinRecipe.as_dict`), so the cached review models stay valid.

Tokens: ``[PAD]`` (0), ``[UNK]`` (1), ``[BOS]`` (2), ``[EOS]`` (3). The tokenizer prepends ``[BOS]`` to every
encoded text (``add_special_tokens=True``); training documents end with ``[EOS]``. Words and punctuation are
separate tokens, and decoding joins tokens with single spaces (``"the film was great ."``), so decoded text
re-encodes to the same tokens.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from irl_bilevel.precision import default_dtype
from irl_bilevel.runs import build_folder_atomically
from irl_bilevel.validation import ValidationError

CACHE_ENV = "IRL_BILEVEL_CACHE"
BUILD_FORMAT = 1  # bump when the build procedure changes, so old cache entries are not reused
RECIPE_FILE = "builtin_recipe.json"
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[BOS]", "[EOS]")
POLARITIES = ("positive", "negative", "neutral")

# ---------------------------------------------------------------------- the review grammar
POSITIVE_ADJECTIVES = ("great", "wonderful", "excellent", "brilliant", "superb", "beautiful", "charming", "fun",
                       "enjoyable", "perfect", "amazing", "fantastic", "good", "nice", "funny")
NEGATIVE_ADJECTIVES = ("terrible", "awful", "boring", "dull", "bad", "horrible", "weak", "stupid", "poor",
                       "disappointing", "ugly", "pointless", "painful", "lame", "annoying")
NEUTRAL_ADJECTIVES = ("long", "short", "quiet", "dark", "simple", "old", "new", "typical", "slow", "loud",
                      "familiar", "different", "serious", "small", "big")
POSITIVE_VERBS = ("loved", "enjoyed", "liked", "admired", "adored")
NEGATIVE_VERBS = ("hated", "disliked", "regretted", "endured", "despised")
NEUTRAL_VERBS = ("watched", "saw", "noticed", "remembered", "followed")
POSITIVE_ADVERBS = ("really", "truly", "very", "so")
NEUTRAL_ADVERBS = ("quite", "rather", "somewhat", "fairly")
NOUNS = ("movie", "film", "story", "plot", "acting", "cast", "ending", "script", "music", "director", "dialogue",
         "camera work", "lead actor", "soundtrack", "pacing", "humor", "villain", "hero", "scenery", "sequel")
TOPICS = ("a family", "a detective", "two friends", "a small town", "a war", "a robot", "a lost dog", "a singer",
          "a teacher", "a heist", "a ghost", "an old king")
OPENERS = ("i watched this movie last night .", "i saw this film with my family .", "this movie is about {topic} .",
           "this film tells the story of {topic} .", "i went to see this movie on friday .",
           "the film follows {topic} .", "we rented this movie .", "i finally saw this film .")
CLOSERS = {
    "positive": ("i would recommend it .", "see it !", "a great night out .", "i loved every minute .",
                 "nine out of ten .", "i will watch it again ."),
    "negative": ("i would not recommend it .", "skip it .", "a waste of time .", "i hated every minute .",
                 "two out of ten .", "i want my money back ."),
    "neutral": ("it was a movie .", "five out of ten .", "make up your own mind .", "it is what it is .",
                "maybe watch it once .", "that is all ."),
}
SENTENCES = (
    "the {noun} was {adverb} {adjective} .",
    "i {verb} the {noun} .",
    "the {noun} is {adjective} and {adjective} .",
    "the {noun} was {adjective} , and the {noun} was {adjective} .",
    "overall the {noun} felt {adjective} .",
    "i thought the {noun} was {adjective} .",
)


@dataclass(frozen=True)
class ReviewGrammar:
    """Short movie reviews: an opener, ``min_sentences``–``max_sentences`` opinion sentences and a closer.

    A review's polarity is drawn uniformly from positive, negative and neutral. Every opinion word (adjective,
    verb, closer) of a positive or negative review keeps the review's polarity with probability ``consistency``,
    is neutral with probability ``(1 − consistency) · neutral_share`` and takes the opposite polarity otherwise;
    a neutral review's words are neutral with probability ``consistency`` and positive or negative otherwise.
    """

    min_sentences: int = 1
    max_sentences: int = 3
    consistency: float = 0.75
    neutral_share: float = 0.6

    def __post_init__(self) -> None:
        if not 1 <= self.min_sentences <= self.max_sentences:
            raise ValidationError(f"min_sentences: expected 1 <= min_sentences <= max_sentences, got "
                                  f"{self.min_sentences}, {self.max_sentences}")
        for name in ("consistency", "neutral_share"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValidationError(f"{name}: expected a probability in [0, 1], got {value}")

    def _polarity_of_word(self, polarity: str, rng: random.Random) -> str:
        u = rng.random()
        if u < self.consistency:
            return polarity
        if polarity == "neutral":
            return rng.choice(("positive", "negative"))
        if rng.random() < self.neutral_share:
            return "neutral"
        return "negative" if polarity == "positive" else "positive"

    def _word(self, kind: str, polarity: str, rng: random.Random) -> str:
        word_polarity = self._polarity_of_word(polarity, rng)
        tables = {
            "adjective": (POSITIVE_ADJECTIVES, NEGATIVE_ADJECTIVES, NEUTRAL_ADJECTIVES),
            "verb": (POSITIVE_VERBS, NEGATIVE_VERBS, NEUTRAL_VERBS),
            "adverb": (POSITIVE_ADVERBS, NEUTRAL_ADVERBS, NEUTRAL_ADVERBS),
        }[kind]
        return rng.choice(tables[POLARITIES.index(word_polarity)])

    def review(self, rng: random.Random, polarity: str | None = None) -> tuple[str, str]:
        """One review and its polarity (drawn uniformly unless given)."""
        polarity = polarity if polarity is not None else rng.choice(POLARITIES)
        if polarity not in POLARITIES:
            raise ValidationError(f"polarity: expected one of {POLARITIES}, got {polarity!r}")
        parts = [rng.choice(OPENERS).format(topic=rng.choice(TOPICS))]
        for _ in range(rng.randint(self.min_sentences, self.max_sentences)):
            template = rng.choice(SENTENCES)
            while "{" in template:  # fill slots left to right, one draw each, so the order of draws is fixed
                start = template.index("{")
                slot = template[start + 1:template.index("}", start)]
                value = rng.choice(NOUNS) if slot == "noun" else self._word(slot, polarity, rng)
                template = template[:start] + value + template[template.index("}", start) + 1:]
            parts.append(template)
        parts.append(rng.choice(CLOSERS[self._polarity_of_word(polarity, rng)]))
        return " ".join(parts), polarity

    def reviews(self, count: int, seed: int) -> list[tuple[str, str]]:
        """``count`` reviews ``(text, polarity)`` from ``random.Random(seed)``."""
        rng = random.Random(seed)
        return [self.review(rng) for _ in range(count)]

    def vocabulary(self) -> list[str]:
        """Every word and punctuation token the grammar can produce, sorted."""
        words: set[str] = set()
        texts = [*POSITIVE_ADJECTIVES, *NEGATIVE_ADJECTIVES, *NEUTRAL_ADJECTIVES, *POSITIVE_VERBS, *NEGATIVE_VERBS,
                 *NEUTRAL_VERBS, *POSITIVE_ADVERBS, *NEUTRAL_ADVERBS, *NOUNS, *TOPICS, *OPENERS, *SENTENCES,
                 *(c for closers in CLOSERS.values() for c in closers)]
        for text in texts:
            for word in text.split():
                if not word.startswith("{"):
                    words.add(word)
        return sorted(words)


def _hanoi3():
    from llm.agentic.hanoi import HanoiEnv

    return HanoiEnv(3)


def _steppath():
    from llm.agentic.graph_nav import GraphNavEnv

    return GraphNavEnv(kinds=("steppath",))


def _textarena(name: str):
    def build():
        from llm.agentic.textarena_games import TEXTARENA_GAMES

        return TEXTARENA_GAMES[name]()

    return build


AGENTIC_ENVS = {"hanoi-3": _hanoi3, "steppath": _steppath, "ta-hanoi": _textarena("ta-hanoi"),
                "ta-frozenlake": _textarena("ta-frozenlake"), "ta-lightsout": _textarena("ta-lightsout")}
"""Agentic environments whose text a recipe can add to the corpus (name → constructor of a ``FiniteTextEnv``); the
``ta-`` ones are TextArena's games (:mod:`llm.agentic.textarena_games`, the optional ``textarena`` extra)."""

HELD_OUT_SEED_OFFSET = 1_000_003
"""Held-out text (evaluation, prompts) comes from ``random.Random(seed + HELD_OUT_SEED_OFFSET)``."""


# ---------------------------------------------------------------------- the recipe
@dataclass(frozen=True)
class BuiltinRecipe:
    """Everything that determines the built-in model; its hash names the cache folder.

    Architecture: GPT-2 (``n_layer`` blocks of width ``n_embd`` with ``n_head`` heads, context ``n_positions``,
    no dropout so train and eval mode give the same log-probabilities). Training: ``train_steps`` AdamW steps
    (``learning_rate``, linear warm-up over ``warmup_steps`` then cosine decay to 10%) on batches of
    ``batch_size`` reviews drawn from a corpus of ``corpus_size`` generated reviews; ``eval_size`` held-out
    reviews give the held-out loss stored with the model.
    """

    n_layer: int = 2
    n_embd: int = 128
    n_head: int = 4
    n_positions: int = 64
    corpus_size: int = 20_000
    eval_size: int = 500
    train_steps: int = 1500
    batch_size: int = 32
    learning_rate: float = 3e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01
    seed: int = 0
    grammar: ReviewGrammar = dataclasses.field(default_factory=ReviewGrammar)
    agentic_envs: tuple[str, ...] = ()
    agentic_repeats: int = 1
    agentic_documents_per_env: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "agentic_envs", tuple(self.agentic_envs))
        unknown = [name for name in self.agentic_envs if name not in AGENTIC_ENVS]
        if unknown:
            raise ValidationError(f"agentic_envs: unknown environment(s) {unknown}; expected names from "
                                  f"{sorted(AGENTIC_ENVS)}")
        if not isinstance(self.agentic_repeats, int) or self.agentic_repeats < 1:
            raise ValidationError(f"agentic_repeats: expected a positive integer, got {self.agentic_repeats!r}")
        if not isinstance(self.agentic_documents_per_env, int) or self.agentic_documents_per_env < 0:
            raise ValidationError(f"agentic_documents_per_env: expected an integer >= 0, got "
                                  f"{self.agentic_documents_per_env!r}")
        for name in ("n_layer", "n_embd", "n_head", "n_positions", "corpus_size", "eval_size", "train_steps",
                     "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValidationError(f"{name}: expected a positive integer, got {value!r}")
        if self.n_embd % self.n_head:
            raise ValidationError(f"n_head: expected a divisor of n_embd = {self.n_embd}, got {self.n_head}")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ValidationError(f"learning_rate: expected a positive number, got {self.learning_rate}")
        if self.warmup_steps < 0 or self.weight_decay < 0:
            raise ValidationError("warmup_steps, weight_decay: expected numbers >= 0")

    @classmethod
    def tiny(cls, **changes: Any) -> BuiltinRecipe:
        """A model that builds in seconds, for tests: 1 layer × 32 wide, context 48, 60 steps."""
        settings: dict[str, Any] = dict(n_layer=1, n_embd=32, n_head=2, n_positions=48, corpus_size=400,
                                        eval_size=50, train_steps=60, batch_size=16, learning_rate=1e-2,
                                        warmup_steps=5)
        settings.update(changes)
        return cls(**settings)

    def as_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        if not self.agentic_envs:  # review-only recipes keep the hash they had before agentic text existed
            del values["agentic_envs"], values["agentic_repeats"]
        else:
            values["agentic_envs"] = list(self.agentic_envs)
        if not self.agentic_documents_per_env:  # so do agentic recipes that leave it at 0 (added later)
            del values["agentic_documents_per_env"]
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> BuiltinRecipe:
        values = dict(values)
        grammar = ReviewGrammar(**values.pop("grammar", {}))
        values["agentic_envs"] = tuple(values.get("agentic_envs", ()))
        return cls(grammar=grammar, **values)

    def agentic_documents(self) -> list[str]:
        """The agentic environments' (prompt + legal action) documents, in a fixed order (module docstring).

        Each environment's distinct documents come ``agentic_repeats`` times, or, when ``agentic_documents_per_env``
        is set, exactly that many per environment: its distinct documents in a seeded random order, cycled (each
        appears ``⌊N/n⌋`` or ``⌈N/n⌉`` times; an env with more than ``N`` distinct documents contributes a random
        ``N`` of them), so that a game with thousands of (state, move) pairs (Lights Out: 4599) does not crowd out
        one with dozens (Hanoi: 66)."""
        per_env = []
        for name in self.agentic_envs:
            env = AGENTIC_ENVS[name]()
            distinct = []
            for state in env.reachable_states():
                if env.is_terminal(state):
                    continue
                prompt = env.render_state(state).rstrip()
                distinct += [f"{prompt} {env.format_action(action)}" for action in env.legal_actions(state)]
            per_env.append(distinct)
        documents = []
        if self.agentic_documents_per_env:
            for index, distinct in enumerate(per_env):
                order = random.Random(self.seed * 1_000 + index).sample(distinct, len(distinct))
                documents += [order[i % len(order)] for i in range(self.agentic_documents_per_env)]
        else:  # the order of the first agentic recipes (the batch draws index into this list): keeps their models
            documents = [document for distinct in per_env for document in distinct] * self.agentic_repeats
        # Whitespace words are the tokens; + 2 for [BOS] and [EOS]. A truncated document would lose its move (the
        # only part that teaches legality), so a context too short for the prompts is an error, not a silent cut.
        longest = max((len(document.split()) + 2 for document in documents), default=0)
        if longest > self.n_positions:
            raise ValidationError(f"n_positions: the agentic documents of {list(self.agentic_envs)} need a context "
                                  f"of {longest} tokens, got n_positions = {self.n_positions}")
        return documents

    def key(self) -> str:
        """``sha256`` (16 hex digits) of the recipe and the build format."""
        payload = json.dumps({"recipe": self.as_dict(), "format": BUILD_FORMAT}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def held_out_reviews(self, count: int) -> list[tuple[str, str]]:
        """Reviews from the held-out stream (never in the training corpus's stream)."""
        return self.grammar.reviews(count, self.seed + HELD_OUT_SEED_OFFSET)


# ---------------------------------------------------------------------- cache
def cache_root(path: Path | str | None = None) -> Path:
    """``path``, else ``$IRL_BILEVEL_CACHE``, else ``~/.cache/irl_bilevel``."""
    if path is not None:
        return Path(path)
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "irl_bilevel")


def builtin_model_path(recipe: BuiltinRecipe | None = None, cache_dir: Path | str | None = None) -> Path:
    """Where :func:`build_builtin_model` keeps ``recipe``'s model: ``<cache>/llm/builtin-<key>``."""
    recipe = recipe or BuiltinRecipe()
    return cache_root(cache_dir) / "llm" / f"builtin-{recipe.key()}"


def build_builtin_model(recipe: BuiltinRecipe | None = None, cache_dir: Path | str | None = None,
                        progress: bool = True) -> Path:
    """The folder of ``recipe``'s model (default: :class:`BuiltinRecipe()`), building and caching it if needed.

    The folder holds ``config.json``, ``model.safetensors``, the tokenizer files and ``builtin_recipe.json``
    (the recipe, the training and held-out losses, the build time). Load it with
    :func:`llm.models.load_causal_lm`.
    """
    recipe = recipe or BuiltinRecipe()
    path = builtin_model_path(recipe, cache_dir)
    if (path / RECIPE_FILE).is_file():
        return path
    return build_folder_atomically(path, RECIPE_FILE, lambda folder: _build_into(recipe, folder, progress))


def read_build_info(path: Path | str) -> dict[str, Any]:
    """The recipe and metrics stored with a built-in model."""
    return json.loads((Path(path) / RECIPE_FILE).read_text())


# ---------------------------------------------------------------------- building


def train_tokenizer(recipe: BuiltinRecipe, texts: list[str]):
    """A word-level ``PreTrainedTokenizerFast`` over the corpus's words (plus the grammar's full vocabulary)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins tokens with single spaces
    trainer = trainers.WordLevelTrainer(special_tokens=list(SPECIAL_TOKENS), min_frequency=1, show_progress=False)
    # The grammar's vocabulary goes first so that every word it can produce has an id, seen in training or not.
    tokenizer.train_from_iterator([" ".join(recipe.grammar.vocabulary()), *texts], trainer=trainer)
    bos = tokenizer.token_to_id("[BOS]")
    tokenizer.post_processor = processors.TemplateProcessing(single="[BOS] $A", pair="[BOS] $A $B",
                                                             special_tokens=[("[BOS]", bos)])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="[PAD]", unk_token="[UNK]",
                                   bos_token="[BOS]", eos_token="[EOS]", model_max_length=recipe.n_positions,
                                   padding_side="left")


def _encode_documents(tokenizer, texts: list[str], max_length: int) -> list[list[int]]:
    """``[BOS] text [EOS]`` token ids, truncated to ``max_length``."""
    eos = tokenizer.eos_token_id
    return [[*ids, eos][:max_length] for ids in tokenizer(texts)["input_ids"]]


def _pad(documents: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(d) for d in documents)
    ids = torch.full((len(documents), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(documents), width, dtype=torch.long)
    for row, document in enumerate(documents):
        ids[row, :len(document)] = torch.tensor(document)
        mask[row, :len(document)] = 1
    return ids, mask


def language_model_loss(model, documents: list[list[int]], pad_id: int, batch_size: int = 64) -> float:
    """Mean next-token cross-entropy (nats per predicted token) of ``model`` on token documents."""
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(documents), batch_size):
            ids, mask = _pad(documents[start:start + batch_size], pad_id)
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
            targets, weights = ids[:, 1:], mask[:, 1:].float()
            nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
            total += float((nll * weights).sum())
            count += int(weights.sum())
    return total / max(count, 1)


def _build_into(recipe: BuiltinRecipe, folder: Path, progress: bool) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    started = time.perf_counter()
    corpus = [text for text, _ in recipe.grammar.reviews(recipe.corpus_size, recipe.seed)]
    corpus += recipe.agentic_documents()
    held_out = [text for text, _ in recipe.held_out_reviews(recipe.eval_size)]
    tokenizer = train_tokenizer(recipe, corpus)
    documents = _encode_documents(tokenizer, corpus, recipe.n_positions)
    evaluation = _encode_documents(tokenizer, held_out, recipe.n_positions)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=recipe.n_positions, n_embd=recipe.n_embd,
                        n_layer=recipe.n_layer, n_head=recipe.n_head, resid_pdrop=0.0, embd_pdrop=0.0,
                        attn_pdrop=0.0, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    with default_dtype(torch.float32), torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)  # GPT-2's initialisation draws from the global generator (forked: restored)
        model = GPT2LMHeadModel(config).float()
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.learning_rate,
                                      weight_decay=recipe.weight_decay, betas=(0.9, 0.98))

        def schedule(step: int) -> float:
            if step < recipe.warmup_steps:
                return (step + 1) / (recipe.warmup_steps + 1)
            fraction = (step - recipe.warmup_steps) / max(1, recipe.train_steps - recipe.warmup_steps)
            return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * fraction))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        order = torch.Generator().manual_seed(recipe.seed + 1)
        bar = _progress_bar(recipe.train_steps, progress)
        recent: list[float] = []
        for _ in range(recipe.train_steps):
            rows = torch.randint(len(documents), (recipe.batch_size,), generator=order).tolist()
            ids, mask = _pad([documents[r] for r in rows], tokenizer.pad_token_id)
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
            targets = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)  # logits at t predict token t + 1
            loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-100)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            recent = [*recent[-49:], loss.item()]
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{sum(recent) / len(recent):.3f}")
        if bar is not None:
            bar.close()
        model.eval()
        held_out_loss = language_model_loss(model, evaluation, tokenizer.pad_token_id)
        train_loss = language_model_loss(model, documents[:recipe.eval_size], tokenizer.pad_token_id)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    info = {
        "recipe": recipe.as_dict(),
        "key": recipe.key(),
        "format": BUILD_FORMAT,
        "vocab_size": len(tokenizer),
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "train_loss": train_loss,
        "held_out_loss": held_out_loss,
        "held_out_perplexity": math.exp(held_out_loss),
        "build_seconds": time.perf_counter() - started,
        "torch": torch.__version__,
    }
    (folder / RECIPE_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")


def _progress_bar(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="building the built-in LM", leave=False)
