"""The reward-vs-KL frontier of controlled sentiment generation (Rafailov et al. 2023, Fig. 2), scaled down.

Task (:mod:`llm.sentiment`): the policy, a LoRA adapter on the built-in GPT-2-shaped model (or any causal LM
named in the config), continues short review prefixes; the gold reward has the aspects sentiment (VADER),
fluency, conciseness and diversity and their fixed-weight aggregate (the "total").

Protocol, per reward *variant*:

* ``scalar``: preference pairs are labelled by the gold sentiment alone; ``multi_aspect``: by the aggregate of all
  aspects. Pairs: ``pair_samples`` completions per training prompt sampled once from the reference; the best and
  the worst by the variant's gold reward form the pair (prompts whose samples all tie give none).
* Offline methods, each a fresh LoRA adapter trained by :func:`llm.training.train_preferences`: DPO (catalog
  ``sigmoid``) at each of ``dpo_betas``, and each loss of ``other_losses`` (catalog name -> ``{"beta": β}`` plus
  the loss's other parameters; β ``None`` = the loss's default). Reference log-probs are computed once per dataset.
* RL: RLOO with a KL penalty (:func:`llm.training.train_rl`) at each of ``rl_kl_coefs``, against the reward named
  by ``rl_reward`` (``"gold"``: RL with the ground-truth reward of the variant, which the DPO paper also plots).
* RM + RLOO (when ``rm_steps > 0``): the two-stage RLHF pipeline the DPO paper compares against. A text reward
  model (:class:`llm.reward_models.BackboneRewardModel`: linear heads on the reference LM's last-token hidden
  state, the backbone frozen or tuned through a LoRA adapter of rank ``rm_lora_r``) is trained on the variant's
  *same* preference pairs by :func:`llm.reward_models.train_reward_model`: ``scalar``: one head,
  ``bradley_terry`` on its score; ``multi_aspect``: one head per gold aspect, ``aspect_bradley_terry`` on
  per-aspect labels (which of the pair's two completions has the higher gold aspect,
  :func:`llm.reward_models.aspect_labels_from_rewards`), aggregated with the gold aggregator's fixed weights.
  Its pair accuracy is measured on held-out pairs (best vs worst of ``pair_samples`` reference samples per *test*
  prompt, labelled like the training pairs). Then RLOO with the same KL coefficients and settings as above,
  against ``rm.score(x, y).total`` (reward source ``"reward_model"`` of :data:`REWARD_SOURCES`). The reward
  model's scores are on its own (Bradley–Terry logit) scale, not the gold reward's, so the same β_KL is not the
  same reward/KL trade-off; the frontier compares the points, not the β's.
* Best-of-n with the variant's gold reward on reference samples, at the analytic KL ``log n − (n−1)/n``.

Every ``eval_every`` steps (``rl_eval_every`` for RL) a policy gives one frontier point
(:func:`llm.frontier.evaluate_policy`): samples on held-out test prompts, their mean gold sentiment, every
aspect and the total, and the sequence-level KL to the reference estimated from the same samples (mean and
standard error). All evaluations share one sampling seed (common random numbers); step 0 is the reference itself.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from tqdm.auto import tqdm

from irl_bilevel.config import (
    NonNegativeFloat,
    experiment_settings,
)
from irl_bilevel.rewards import RewardOutput
from irl_bilevel.runs import provenance, write_json
from irl_bilevel.validation import ValidationError
from llm.builtin_model import BuiltinRecipe, build_builtin_model, read_build_info
from llm.evaluation import accuracy_from_scores
from llm.experiments import FrontierSettings
from llm.frontier import best_of_n_points, evaluate_policy, gold_text_reward
from llm.models import LoraSettings, generate_completions, load_causal_lm, with_lora
from llm.reward_models import (
    BackboneRewardModel,
    RewardModelTrainingConfig,
    TextPairs,
    aspect_labels_from_rewards,
    backbone_reward_model,
    train_reward_model,
)
from llm.sentiment import GoldReward, PreferencePairs, label_pairs, sentiment_prompts
from llm.training import (
    PreferenceDataset,
    PreferenceTrainingConfig,
    RewardFunction,
    RLConfig,
    TrainingResult,
    save_trained_adapter,
    train_preferences,
    train_rl,
)

NAME = "sentiment_frontier"
VARIANTS = ("scalar", "multi_aspect")
RL_METHODS = ("rloo", "rm_rloo")  # RLOO against the rl_reward source, and against a text reward model


@dataclass(frozen=True)
class SentimentFrontierConfig(FrontierSettings):
    """Settings of the sentiment frontier (protocol: the module docstring)."""

    model: str
    """"builtin" (default recipe), "builtin-tiny", or a local folder / hub id of a causal LM"""
    lora_targets: tuple[str, ...] | None
    """None: peft's default for the architecture (c_attn for GPT-2)"""
    variants: tuple[Literal["scalar", "multi_aspect"], ...]
    """preference pairs labelled by the scalar gold reward, or by its aspects"""
    rl_reward: str
    """a key of REWARD_SOURCES"""
    rl_kl_coefs: tuple[NonNegativeFloat, ...]
    """KL coefficients β of the RLOO runs"""
    save_adapters: bool
    """write each trained adapter to results_dir/sentiment_frontier_adapters/"""

    def validate(self) -> None:
        if self.rl_reward not in REWARD_SOURCES:
            raise ValidationError(f"rl_reward: unknown reward source {self.rl_reward!r}; expected one of "
                                  f"{sorted(REWARD_SOURCES)}")
        if self.rm_steps < 0 or (self.rl_reward == "reward_model" and self.rm_steps < 1):
            raise ValidationError(f"rm_steps: expected >= 1 when a reward model is trained (rl_reward "
                                  f"{self.rl_reward!r}), >= 0 otherwise; got {self.rm_steps}")
        if not self.variants:
            raise ValidationError("variants: expected at least one of 'scalar', 'multi_aspect'")


_COMMON: dict[str, Any] = {
    "lora_r": 8, "lora_alpha": 16.0, "lora_targets": None, "target_words": 16, "variants": list(VARIANTS),
    "rl_reward": "gold", "save_adapters": False,
}
_OTHER_LOSSES: dict[str, dict[str, Any]] = {
    "ipo": {"beta": 0.5}, "hinge": {"beta": 0.1}, "robust": {"beta": 0.1, "label_smoothing": 0.1},
    "simpo": {"beta": 2.0, "gamma": 0.5}, "kto": {"beta": 0.1},
}
SCALES: dict[str, dict[str, Any]] = {
    "tiny": {**_COMMON, "model": "builtin-tiny", "train_prompts": 24, "test_prompts": 8, "pair_samples": 2,
             "max_new_tokens": 8, "dpo_betas": [0.1, 1.0],
             "other_losses": {"ipo": {"beta": 0.5}, "kto": {"beta": 0.1}},
             "steps": 3, "batch_size": 4, "learning_rate": 1e-3, "eval_every": 2, "eval_samples": 1,
             "rl_kl_coefs": [0.05], "rl_steps": 2, "rl_prompts_per_step": 2, "rl_samples_per_prompt": 2,
             "rl_learning_rate": 1e-3, "rl_eval_every": 1, "best_of_n": [2],
             "rm_steps": 4, "rm_batch_size": 8, "rm_learning_rate": 1e-2, "rm_lora_r": 0},
    "quick": {**_COMMON, "model": "builtin", "train_prompts": 1024, "test_prompts": 128, "pair_samples": 4,
              "max_new_tokens": 24, "dpo_betas": [0.05, 0.1, 0.5, 1.0],
              "other_losses": _OTHER_LOSSES,
              "steps": 150, "batch_size": 16, "learning_rate": 5e-4, "eval_every": 25, "eval_samples": 2,
              "rl_kl_coefs": [0.05, 0.2], "rl_steps": 150, "rl_prompts_per_step": 8, "rl_samples_per_prompt": 4,
              "rl_learning_rate": 1e-3, "rl_eval_every": 25, "best_of_n": [2, 4, 8, 16],
              "rm_steps": 150, "rm_batch_size": 32, "rm_learning_rate": 1e-3, "rm_lora_r": 8},
    "full": {**_COMMON, "model": "builtin", "train_prompts": 4096, "test_prompts": 512, "pair_samples": 4,
             "max_new_tokens": 24, "dpo_betas": [0.05, 0.1, 0.5, 1.0, 5.0],
             "other_losses": {**_OTHER_LOSSES, "orpo": {"beta": None}, "sigmoid_norm": {"beta": 0.5}},
             "steps": 1000, "batch_size": 32, "learning_rate": 5e-4, "eval_every": 100, "eval_samples": 2,
             "rl_kl_coefs": [0.02, 0.05, 0.2], "rl_steps": 1000, "rl_prompts_per_step": 16,
             "rl_samples_per_prompt": 4, "rl_learning_rate": 1e-3, "rl_eval_every": 100,
             "best_of_n": [2, 4, 8, 16, 64],
             "rm_steps": 600, "rm_batch_size": 32, "rm_learning_rate": 1e-3, "rm_lora_r": 8},
}
CONFIG = SentimentFrontierConfig  # the typed settings; every SCALES entry validates into it (tests check)


@dataclass
class FrontierContext:
    """What a reward source may use: the frozen base model and tokenizer, the gold reward, the preference pairs
    of each variant, the training prompts, the config and the run's seed."""

    base_model: Any
    tokenizer: Any
    gold: GoldReward
    pairs: dict[str, PreferencePairs]
    train_prompts: list[str]
    config: SentimentFrontierConfig
    seed: int
    held_out_pairs: dict[str, PreferencePairs] = field(default_factory=dict)  # per variant, from the test prompts
    model_path: Path | str | None = None  # where the base model came from (a reward model's backbone loads it)
    reward_models: dict[str, Any] = field(default_factory=dict)  # per variant: trained once, shared by the KL runs
    reward_model_reports: dict[str, dict[str, Any]] = field(default_factory=dict)  # per variant: accuracy, time


def _gold_source(context: FrontierContext, variant: str) -> RewardFunction:
    """RL with the ground-truth reward: the gold sentiment (scalar) or the gold aggregate (multi-aspect)."""
    return gold_text_reward(context.gold, "sentiment" if variant == "scalar" else None)


def _reward_model_source(context: FrontierContext, variant: str) -> RewardFunction:
    """RL with a text reward model trained on the variant's preference pairs (trained on first use, then cached in
    the context); its report (held-out accuracy, training fit, time) goes to ``context.reward_model_reports``."""
    if variant not in context.reward_models:
        model, report = train_frontier_reward_model(context, variant)
        context.reward_models[variant] = model
        context.reward_model_reports[variant] = report
    model = context.reward_models[variant]

    def reward(prompts: list[str], completions: list[str]) -> torch.Tensor:
        return model.score(prompts, completions).total

    return reward


REWARD_SOURCES: dict[str, Callable[[FrontierContext, str], RewardFunction]] = {
    "gold": _gold_source, "reward_model": _reward_model_source}
"""``rl_reward`` name -> ``source(context, variant) -> reward_fn`` (``(prompts, completions) -> [N]`` scores):
``gold`` (the variant's gold reward) or ``reward_model`` (a text reward model trained on ``context.pairs[variant]``,
:func:`train_frontier_reward_model`)."""


def train_frontier_reward_model(context: FrontierContext, variant: str) -> tuple[BackboneRewardModel,
                                                                                   dict[str, Any]]:
    """The variant's text reward model (:func:`fit_reward_model`) on the context's pairs and held-out pairs."""
    if context.model_path is None:
        raise ValidationError("model_path: a reward model's backbone loads from the base model's folder; none given")
    return fit_reward_model(context.model_path, context.pairs[variant], context.held_out_pairs[variant],
                            context.gold, variant, context.config, context.seed)


def fit_reward_model(model_path: Path | str, pairs: PreferencePairs, held_out: PreferencePairs, gold: GoldReward,
                     variant: str, settings: FrontierSettings, seed: int) -> tuple[BackboneRewardModel,
                                                                                       dict[str, Any]]:
    """Train the variant's text reward model on its preference pairs and measure it on the held-out pairs.

    ``scalar``: one head ``reward``, ``bradley_terry``; ``multi_aspect``: one head per gold aspect,
    ``aspect_bradley_terry`` with per-aspect labels from the pair's gold aspects, total = the gold aggregator's
    fixed weights. Report: ``held_out_accuracy`` (fraction of held-out pairs whose chosen completion gets the higher
    total; a tie is wrong, as in RewardBench), ``train_accuracy`` (the same on the training pairs), for the
    multi-aspect model the held-out accuracy of each head on its own aspect's labels (tied aspects left out),
    and the training time.
    """
    started = time.perf_counter()
    multi = variant == "multi_aspect"
    names = tuple(pairs.aspect_names) if multi else ("reward",)
    options = {"weights": [gold.weights[name] for name in names]} if multi else None
    lora = (LoraSettings(r=settings.rm_lora_r, alpha=2.0 * settings.rm_lora_r)
            if settings.rm_lora_r > 0 else None)
    model = backbone_reward_model(model_path, names, "fixed" if multi else None, options, lora=lora,
                                  seed=seed)
    per_pair = ({"aspect_labels": aspect_labels_from_rewards(pairs.chosen_aspects, pairs.rejected_aspects)}
                if multi else None)
    fit = train_reward_model(model, TextPairs.from_preference_pairs(pairs, variant), RewardModelTrainingConfig(
        loss="aspect_bradley_terry" if multi else "bradley_terry", steps=settings.rm_steps,
        batch_size=settings.rm_batch_size, learning_rate=settings.rm_learning_rate, seed=seed), per_pair=per_pair)
    train_texts = TextPairs.from_preference_pairs(pairs, variant)
    train_accuracy = accuracy_from_scores(model.score(train_texts.prompts, train_texts.chosen).total.double(),
                                          model.score(train_texts.prompts, train_texts.rejected).total.double(),
                                          train_texts.subsets)
    texts = TextPairs.from_preference_pairs(held_out, variant)
    chosen = model.score(texts.prompts, texts.chosen)
    rejected = model.score(texts.prompts, texts.rejected)
    accuracy = accuracy_from_scores(chosen.total.double(), rejected.total.double(), texts.subsets)
    report: dict[str, Any] = {
        "loss": "aspect_bradley_terry" if multi else "bradley_terry", "heads": list(names),
        "aggregator_weights": options["weights"] if options else None, "backbone_lora_r": settings.rm_lora_r,
        "train_pairs": len(pairs), "held_out_pairs": len(held_out), "held_out_accuracy": accuracy.pair_accuracy,
        "train_accuracy": train_accuracy.pair_accuracy, "train_loss": fit.final_loss,
        "train_loss_accuracy": fit.final_accuracy,  # the loss's own accuracy (per aspect for aspect_bradley_terry)
        "held_out_score_std": float(torch.cat([chosen.total, rejected.total]).std()),
    }
    if multi:
        labels = aspect_labels_from_rewards(held_out.chosen_aspects, held_out.rejected_aspects)
        margins = (chosen.aspects - rejected.aspects).double()
        report["held_out_aspect_accuracy"] = {
            name: float(((margins[:, k] > 0) == (labels[:, k] == 1))[labels[:, k] != 0.5].double().mean())
            if bool((labels[:, k] != 0.5).any()) else None
            for k, name in enumerate(names)}
    report["seconds"] = time.perf_counter() - started
    return model, report


def _model_path(name: str) -> Path | str:
    if name == "builtin":
        return build_builtin_model(BuiltinRecipe(), progress=False)
    if name == "builtin-tiny":
        return build_builtin_model(BuiltinRecipe.tiny(), progress=False)
    return name


def _variant_rewards(rewards: RewardOutput, variant: str) -> RewardOutput:
    """The gold reward as the variant's labeller sees it: the sentiment aspect alone, or the aggregate."""
    if variant == "scalar":
        column = rewards.aspect_names.index("sentiment")
        return RewardOutput(rewards.aspects, rewards.aspects[:, column], rewards.aspect_names)
    return rewards


def _pair_summary(pairs: PreferencePairs) -> dict[str, Any]:
    sentiment = pairs.aspect_names.index("sentiment")
    return {"pairs": len(pairs),
            "chosen_sentiment": float(pairs.chosen_aspects[:, sentiment].mean()),
            "rejected_sentiment": float(pairs.rejected_aspects[:, sentiment].mean()),
            "chosen_total": float(pairs.chosen_total.mean()), "rejected_total": float(pairs.rejected_total.mean())}


def _point_summary(points: list[dict[str, Any]]) -> dict[str, Any]:
    best = max(points, key=lambda p: p["reward/sentiment"])
    return {"final": {k: points[-1][k] for k in ("step", "kl", "kl_se", "reward/sentiment", "reward/sentiment_se",
                                                 "reward/total", "reward/total_se")},
            "best_sentiment": {k: best[k] for k in ("step", "kl", "kl_se", "reward/sentiment",
                                                     "reward/sentiment_se", "reward/total")}}


def run(scale: str, results_dir: Path, seed: int = 0, progress: bool = True,
        config: SentimentFrontierConfig | None = None) -> Path:
    """Run at ``scale`` (``tiny``, ``quick``, ``full``); writes ``results_dir/sentiment_frontier.json``."""
    settings = experiment_settings(SentimentFrontierConfig, SCALES, scale, NAME, config)
    results_dir = Path(results_dir)
    started, cpu_started = time.perf_counter(), time.process_time()
    record: dict[str, Any] = {"name": NAME, "scale": scale, "config": settings.to_dict(),
                              "provenance": provenance(seed)}
    torch.manual_seed(seed)
    model_path = _model_path(settings.model)
    record["model"] = {"name": settings.model, "path": str(model_path),
                       "load_seconds": time.perf_counter() - started}
    if settings.model.startswith("builtin"):
        info = read_build_info(model_path)
        record["model"].update({"key": info["key"], "held_out_loss": info["held_out_loss"],
                                "num_parameters": info["num_parameters"]})
    base, tokenizer = load_causal_lm(model_path)
    gold = GoldReward(base, tokenizer, target_words=settings.target_words)
    lora = LoraSettings(r=settings.lora_r, alpha=settings.lora_alpha,
                        target_modules=tuple(settings.lora_targets) if settings.lora_targets else None)
    train_prompts = sentiment_prompts(settings.train_prompts, "train", seed=seed)
    test_prompts = sentiment_prompts(settings.test_prompts, "test", seed=seed)
    eval_seed = seed + 7_919
    tokens = settings.max_new_tokens

    def evaluate(policy) -> dict[str, Any]:
        return evaluate_policy(policy, tokenizer, test_prompts, gold, samples_per_prompt=settings.eval_samples,
                               max_new_tokens=tokens, seed=eval_seed)

    def callback(policy, step: int) -> dict[str, Any]:
        return reference_point if step == 0 else evaluate(policy)

    # The reference point (step 0 of every run: a fresh adapter is the identity, so its samples are the same).
    phase = time.perf_counter()
    reference_point = evaluate(base)
    record["reference"] = reference_point
    record["times"] = {"reference_eval": time.perf_counter() - phase}

    # Preference data: one set of reference samples, labelled once per variant.
    phase = time.perf_counter()
    samples = generate_completions(base, tokenizer, train_prompts, tokens, num_samples=settings.pair_samples,
                                   seed=seed)
    sample_rewards = gold(samples)
    pairs: dict[str, PreferencePairs] = {v: label_pairs(samples, _variant_rewards(sample_rewards, v))
                                         for v in settings.variants}
    for variant, labelled in pairs.items():
        if len(labelled) == 0:
            raise ValidationError(f"train_prompts: the {variant} labeller found no pair with distinct rewards")
    record["data"] = {v: _pair_summary(p) for v, p in pairs.items()}
    if len(pairs) == 2:  # how often the aggregate picks the same pair as sentiment alone
        scalar, multi = pairs["scalar"], pairs["multi_aspect"]
        same = {(i, tuple(c), tuple(r)) for i, c, r in zip(scalar.prompt_index, scalar.chosen_ids, scalar.rejected_ids)}
        agree = sum((i, tuple(c), tuple(r)) in same
                    for i, c, r in zip(multi.prompt_index, multi.chosen_ids, multi.rejected_ids))
        record["data"]["same_pair_fraction"] = agree / max(1, len(multi))
    record["times"]["pairs"] = time.perf_counter() - phase
    context = FrontierContext(base, tokenizer, gold, pairs, train_prompts, settings, seed,
                              model_path=model_path)
    if settings.rm_steps > 0 and settings.rl_kl_coefs:
        # Held-out pairs for the reward models' accuracy: the same protocol on the test prompts (other samples).
        phase = time.perf_counter()
        held_samples = generate_completions(base, tokenizer, test_prompts, tokens,
                                            num_samples=settings.pair_samples, seed=seed + 2)
        held_rewards = gold(held_samples)
        context.held_out_pairs = {v: label_pairs(held_samples, _variant_rewards(held_rewards, v)) for v in pairs}
        for variant, labelled in context.held_out_pairs.items():
            if len(labelled) == 0:
                raise ValidationError(f"test_prompts: the {variant} labeller found no held-out pair with distinct "
                                      f"rewards")
        record["times"]["held_out_pairs"] = time.perf_counter() - phase

    plan: list[dict[str, Any]] = []
    for variant in settings.variants:
        plan += [{"method": "dpo", "loss": "sigmoid", "beta": beta, "variant": variant}
                 for beta in settings.dpo_betas]
        plan += [{"method": loss, "loss": loss, "beta": params.get("beta"), "variant": variant,
                  "loss_params": {k: v for k, v in params.items() if k != "beta"}}
                 for loss, params in settings.other_losses.items()]
        plan += [{"method": "rloo", "loss": None, "beta": kl, "variant": variant} for kl in settings.rl_kl_coefs]
        if settings.rm_steps > 0:
            plan += [{"method": "rm_rloo", "loss": None, "beta": kl, "variant": variant}
                     for kl in settings.rl_kl_coefs]
    for entry in plan:  # check every loss and its parameters before the first run spends time
        if entry["method"] not in RL_METHODS:
            entry["training"] = PreferenceTrainingConfig(
                loss=entry["loss"], beta=entry["beta"], loss_params=entry.get("loss_params", {}),
                steps=settings.steps, batch_size=settings.batch_size, learning_rate=settings.learning_rate,
                eval_every=settings.eval_every, seed=seed, progress=progress)
    runs = []
    adapters_dir = results_dir / f"{NAME}_adapters"
    for entry in tqdm(plan, desc=NAME, disable=not progress):
        model, _ = load_causal_lm(model_path)
        policy = with_lora(model, lora, seed=seed)
        if entry["method"] in RL_METHODS:
            source = settings.rl_reward if entry["method"] == "rloo" else "reward_model"
            reward_fn = REWARD_SOURCES[source](context, entry["variant"])
            rl = RLConfig(algorithm="rloo", steps=settings.rl_steps,
                          prompts_per_step=settings.rl_prompts_per_step,
                          samples_per_prompt=settings.rl_samples_per_prompt, kl_coef=entry["beta"],
                          learning_rate=settings.rl_learning_rate, max_new_tokens=tokens,
                          eval_every=settings.rl_eval_every, seed=seed, progress=progress)
            result: TrainingResult = train_rl(policy, tokenizer, train_prompts, reward_fn, rl, callback)
            entry["reward_source"] = source
            last = result.history[-1]
            entry["train_final"] = {k: last[k] for k in ("reward", "kl", "penalized_reward")}
        else:
            offline = entry.pop("training")
            result = train_preferences(policy, PreferenceDataset.from_pairs(pairs[entry["variant"]]),
                                       tokenizer.pad_token_id, offline, callback)
            last = result.history[-1]
            entry["train_final"] = {k: last[k] for k in ("loss", "reward_accuracy", "mean_margin")}
        entry["points"] = result.evaluations
        entry["seconds"] = result.seconds
        entry["summary"] = _point_summary(result.evaluations)
        if settings.save_adapters:
            folder = adapters_dir / f"{entry['variant']}-{entry['method']}-{entry['beta']}"
            save_trained_adapter(policy, folder, result, {"experiment": NAME, "entry": entry["method"]})
        runs.append(entry)
    record["runs"] = runs
    record["reward_models"] = context.reward_model_reports

    # Best-of-n on reference samples of the test prompts, at the analytic KL bound.
    phase = time.perf_counter()
    record["best_of_n"] = _best_of_n(base, tokenizer, test_prompts, gold, settings, eval_seed)
    record["times"]["best_of_n"] = time.perf_counter() - phase
    record["acceptance"] = _acceptance(reference_point, runs)
    record["wall_seconds"] = time.perf_counter() - started
    record["cpu_seconds"] = time.process_time() - cpu_started  # this process's CPU time (the machine is shared)
    path = results_dir / f"{NAME}.json"
    write_json(path, record)
    return path


def _best_of_n(base, tokenizer, prompts: list[str], gold: GoldReward, settings: SentimentFrontierConfig,
               seed: int) -> list[dict[str, Any]]:
    """Best of ``n`` reference samples by each variant's gold reward (sentiment, or the total)."""
    if not settings.best_of_n:
        return []
    selectors: dict[str, str | None] = {variant: "sentiment" if variant == "scalar" else None
                                        for variant in settings.variants}
    return best_of_n_points(base, tokenizer, prompts, gold, settings.best_of_n, settings.max_new_tokens, seed + 1,
                            selectors)


def _acceptance(reference: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Does DPO (scalar variant) raise the gold sentiment clearly above the reference's: the best evaluation of
    each β, its KL, and the gain in units of the two points' combined standard error (>= 3: clearly)."""
    rows = {}
    for entry in runs:
        if entry["method"] != "dpo" or entry["variant"] != "scalar":
            continue
        best = entry["summary"]["best_sentiment"]
        error = math.hypot(best["reward/sentiment_se"], reference["reward/sentiment_se"])
        gain = best["reward/sentiment"] - reference["reward/sentiment"]
        rows[str(entry["beta"])] = {"step": best["step"], "kl": best["kl"], "sentiment": best["reward/sentiment"],
                                    "gain": gain, "gain_in_se": gain / error if error > 0 else math.inf}
    return {"reference_sentiment": reference["reward/sentiment"], "dpo_scalar": rows,
            "passed": bool(rows) and all(r["gain_in_se"] >= 3 for r in rows.values())}
