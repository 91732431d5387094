"""AI feedback from a real judge against simulated human feedback, and what each teaches DPO: SmolLM2-135M-Instruct.

How consistent are AI evaluators with humans, and does the difference matter downstream? The task is the controlled
sentiment task of :mod:`llm.experiments.smollm2_frontier` (SmolLM2-135M-Instruct continuing review prefixes through
its chat template; gold reward :class:`llm.sentiment.GoldReward` on the completion).

Per seed:

1. Items: ``samples_per_prompt`` (3) reference samples for each of ``study_prompts`` prompts; every two samples of a
   prompt form a query, so each prompt gives a triangle of queries (what intransitive triples need).
2. Evaluators of every query, each answering 1 (first better), 0 or 0.5 (tie), per question ``q`` of
   :data:`QUESTIONS` (the four gold aspects and ``overall``, whose gold is the gold total):

   * ``gold``: the gold aspect (or total) of the two samples;
   * ``judge``: SmolLM2-135M-Instruct itself as an LLM judge (:class:`llm.judges.LanguageModelJudge`, chat
     template): the log-odds of the answer tokens ``A`` and ``B`` in both presentation orders, never parsed text;
     its label is the sign of the position-balanced margin ``½[s(x, y₁, y₂) − s(x, y₂, y₁)]``;
   * ``reward_model``: a reward model trained by the project (linear head on the frozen model's last-token state,
     Bradley-Terry) on other samples labelled by the gold total (``overall`` only);
   * the six B-Pref teachers (:func:`irl_bilevel.teachers.bpref_teachers`) on the gold total (``overall``): the
     simulated human side. Skip and equal thresholds scale with the mean absolute gold total of the items.

3. Measures (``overall`` for all evaluators; every question for the judge): accuracy against gold and Cohen's κ
   with gold and with each teacher (:func:`irl_bilevel.agreement.agreement_with_reference`); the judge's position
   bias, the fraction of queries whose verdict follows the slot (the same slot wins in both orders); intransitive
   triples (:func:`irl_bilevel.agreement.intransitive_triple_rate`); Fleiss' κ across all evaluators but gold.
4. DPO (β ``dpo_beta``) on the study's queries labelled by ``gold``, by the ``judge``, by the ``reward_model``, and by
   the mistake teacher at the judge's measured error rate ``ε`` (its flip rate against gold on ``overall``), ties
   dropped; each policy evaluated on held-out prompts every ``eval_every`` steps. Reported: the gold sentiment at a
   matched KL (the smallest final KL of the seed's four runs; each run's sentiment linearly interpolated along its
   KL curve, made monotone by a running maximum) and at the end.

Over seeds: IQM with 95% bootstrap CIs (:func:`irl_bilevel.statistics.iqm_with_ci`). The file is written after every
(seed, labelling) step and resumed, like the frontier (same settings, ``seeds`` may grow).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from irl_bilevel.agreement import (
    agreement_with_reference,
    fleiss_kappa_from_ratings,
    intransitive_triple_rate,
    pairwise_cohen_kappa,
    preference_ratings,
)
from irl_bilevel.config import PositiveFloat, PositiveInt, Range
from irl_bilevel.runs import seed_entry, seeded_record
from irl_bilevel.statistics import iqm_with_ci
from irl_bilevel.teachers import Teacher, bpref_teachers
from irl_bilevel.validation import ValidationError
from llm.experiments import SentimentStudySettings
from llm.frontier import evaluate_policy
from llm.judges import LanguageModelJudge
from llm.models import LoraSettings, generate_completions, load_causal_lm, with_lora
from llm.pretrained import model_record
from llm.reward_models import RewardModelTrainingConfig, TextPairs, backbone_reward_model, train_reward_model
from llm.sentiment import GoldReward, chat_review_prompts, sentiment_prompts
from llm.training import PreferenceDataset, PreferenceTrainingConfig, train_preferences

NAME = "smollm2_ai_feedback"

JUDGE_TEMPLATE = ('Two continuations of the movie review "{prompt}":\nA: {first}\nB: {second}\n'
                  "{question} Answer with the letter A or B.")
QUESTIONS: dict[str, str] = {
    "sentiment": "Which continuation is more positive about the movie?",
    "fluency": "Which continuation is more fluent, natural English?",
    "conciseness": "Which continuation is more concise?",
    "diversity": "Which continuation uses more varied words, with less repetition?",
    "overall": "Which continuation is better overall: positive about the movie, fluent, concise and varied?",
}
"""Question per gold aspect, and ``overall`` (gold: the gold total)."""
LABEL_SOURCES = ("gold", "judge", "reward_model", "mistake_at_judge_rate")
"""The labellings DPO trains on (module docstring, step 4)."""


@dataclass(frozen=True)
class SmolLM2AIFeedbackConfig(SentimentStudySettings):
    """Settings of the AI-feedback study (protocol: the module docstring)."""

    model: str
    """the policy, the judge and the reward model's backbone (a named model, a folder or a hub id)"""
    seeds: PositiveInt
    """seeds 0 .. seeds-1 (offset by the run's seed)"""
    study_prompts: PositiveInt
    """prompts whose samples the evaluators label and DPO trains on"""
    samples_per_prompt: Annotated[int, Range(low=2)]
    """samples per study prompt (3: a triangle of queries per prompt)"""
    rm_prompts: PositiveInt
    """prompts of the reward model's own training pairs"""
    rm_steps: PositiveInt
    """reward-model optimizer steps"""
    judge_batch_size: PositiveInt
    """judging prompts per forward pass"""
    dpo_beta: PositiveFloat
    """β of every DPO run"""


SCALES: dict[str, dict[str, Any]] = {
    "tiny": {"model": "smollm2-tiny-random", "seeds": 2, "study_prompts": 4, "samples_per_prompt": 3,
             "rm_prompts": 4, "rm_steps": 2, "rm_batch_size": 4, "rm_learning_rate": 1e-2, "test_prompts": 3,
             "eval_samples": 1, "max_new_tokens": 6, "target_words": 16, "judge_batch_size": 8, "lora_r": 4,
             "lora_alpha": 8.0, "dpo_beta": 0.1, "steps": 2, "batch_size": 4, "learning_rate": 1e-3,
             "eval_every": 1},
    # sized for about 1.5 hours of one core for all 5 seeds, beside the frontier on the other core (the results page
    # states the time the file records); fewer prompts and steps rather than fewer seeds
    "quick": {"model": "smollm2-135m-instruct", "seeds": 5, "study_prompts": 64, "samples_per_prompt": 3,
              "rm_prompts": 64, "rm_steps": 30, "rm_batch_size": 16, "rm_learning_rate": 1e-3, "test_prompts": 16,
              "eval_samples": 2, "max_new_tokens": 32, "target_words": 24, "judge_batch_size": 16, "lora_r": 8,
              "lora_alpha": 16.0, "dpo_beta": 0.1, "steps": 16, "batch_size": 8, "learning_rate": 5e-4,
              "eval_every": 8},
    "full": {"model": "smollm2-135m-instruct", "seeds": 5, "study_prompts": 512, "samples_per_prompt": 3,
             "rm_prompts": 512, "rm_steps": 300, "rm_batch_size": 32, "rm_learning_rate": 1e-3, "test_prompts": 256,
             "eval_samples": 2, "max_new_tokens": 48, "target_words": 24, "judge_batch_size": 32, "lora_r": 16,
             "lora_alpha": 32.0, "dpo_beta": 0.1, "steps": 300, "batch_size": 32, "learning_rate": 5e-4,
             "eval_every": 50},
}
CONFIG = SmolLM2AIFeedbackConfig


@dataclass(frozen=True)
class Study:
    """The items and queries of one seed: ``samples`` (prompt-major, ``samples_per_prompt`` per prompt), the queries
    ``first``/``second`` (indices into the items, each prompt's triangle), the gold aspects ``[M, K]`` and total
    ``[M]`` of every item."""

    prefixes: list[str]
    samples: Any  # llm.models.Completions
    first: list[int]
    second: list[int]
    aspects: torch.Tensor
    total: torch.Tensor
    aspect_names: tuple[str, ...]

    def gold(self, question: str) -> torch.Tensor:
        values = self.total if question == "overall" else self.aspects[:, self.aspect_names.index(question)]
        return _sign_labels(values[self.first] - values[self.second])


def _sign_labels(margin: torch.Tensor) -> torch.Tensor:
    """1 where the first item wins, 0 where the second does, 0.5 on an exact tie, ``[N]`` float64."""
    return torch.where(margin > 0, 1.0, torch.where(margin < 0, 0.0, 0.5)).double()


def run(scale: str, results_dir: Path, seed: int = 0, progress: bool = True,
        config: SmolLM2AIFeedbackConfig | None = None) -> Path:
    """Run every seed at ``scale`` (``seed`` offsets the seeds); writes ``results_dir/<NAME>.json``."""
    config = config or SmolLM2AIFeedbackConfig.from_dict(SCALES[scale], NAME)
    settings = config.to_dict()
    path = Path(results_dir) / f"{NAME}.json"
    record, earlier, save = seeded_record(path, NAME, scale, settings, seed, questions=QUESTIONS,
                                          judge_template=JUDGE_TEMPLATE, model=model_record(config.model))
    record["seeds"] = dict(earlier["seeds"]) if earlier else {}

    model, tokenizer = load_causal_lm(config.model)
    gold = GoldReward(model, tokenizer, target_words=config.target_words, score_prompt=False)
    for offset in range(config.seeds):
        run_seed(config, seed + offset, model, tokenizer, gold, record, save, progress)
    record["summary"] = summarize(record)
    record["complete"] = True
    save()
    return path


def build_study(config: SmolLM2AIFeedbackConfig, seed: int, model, tokenizer, gold: GoldReward) -> Study:
    """Sample the seed's items and form each prompt's triangle of queries."""
    if config.samples_per_prompt < 2:
        raise ValidationError(f"samples_per_prompt: expected at least 2, got {config.samples_per_prompt}")
    prefixes = sentiment_prompts(config.study_prompts, "train", seed=seed)
    samples = generate_completions(model, tokenizer, chat_review_prompts(tokenizer, prefixes), config.max_new_tokens,
                                   num_samples=config.samples_per_prompt, seed=seed, add_special_tokens=False)
    rewards = gold(samples)
    k = config.samples_per_prompt
    first, second = [], []
    for prompt in range(len(prefixes)):
        for a in range(k):
            for b in range(a + 1, k):
                first.append(prompt * k + a)
                second.append(prompt * k + b)
    return Study(prefixes, samples, first, second, rewards.aspects.double(), rewards.total.double(),
                 tuple(rewards.aspect_names))


def study_hash(study: Study) -> str:
    return hashlib.sha256(json.dumps([study.samples.prompt_ids, study.samples.completion_ids]).encode()).hexdigest()


def run_seed(config: SmolLM2AIFeedbackConfig, seed: int, model, tokenizer, gold: GoldReward, record: dict[str, Any],
             save: Callable[[], None], progress: bool) -> None:
    """Label one seed's queries by every evaluator, measure their agreement, then train DPO on each labelling."""
    finished = record["seeds"].get(str(seed), {})
    if "matched_kl" in finished and all(source in finished["dpo"] for source in LABEL_SOURCES):
        return
    torch.manual_seed(seed)
    study = build_study(config, seed, model, tokenizer, gold)
    entry = seed_entry(record, seed, "study_hash", study_hash(study), {"dpo": {}, "seconds": 0.0},
                       "the study's samples")
    phase = time.perf_counter()
    labels = label_everything(config, seed, study, model, tokenizer, gold, progress)
    entry["agreement"] = agreement(study, labels)
    entry["labelling_seconds"] = time.perf_counter() - phase
    save()
    error = entry["agreement"]["overall"]["judge"]["flip_rate"]
    mistake = Teacher.mistaken(error if math.isfinite(error) else 0.0)
    generator = torch.Generator().manual_seed(seed + 31)
    labels["overall"]["mistake_at_judge_rate"] = mistake.label(study.total[study.first][:, None],
                                                               study.total[study.second][:, None],
                                                               generator=generator).labels.double()
    entry["mistake_rate"] = mistake.mistake
    test_prompts = chat_review_prompts(tokenizer, sentiment_prompts(config.test_prompts, "test", seed=seed))
    eval_seed = seed + 7_919
    reference_point = entry.get("reference") or evaluate_policy(
        model, tokenizer, test_prompts, gold, samples_per_prompt=config.eval_samples,
        max_new_tokens=config.max_new_tokens, seed=eval_seed, add_special_tokens=False)
    entry["reference"] = reference_point

    def callback(policy, step: int) -> dict[str, Any]:
        if step == 0:
            return reference_point
        return evaluate_policy(policy, tokenizer, test_prompts, gold, samples_per_prompt=config.eval_samples,
                               max_new_tokens=config.max_new_tokens, seed=eval_seed, add_special_tokens=False)

    for source in tqdm(LABEL_SOURCES, desc=f"{NAME} seed {seed}", disable=not progress):
        if source in entry["dpo"]:
            continue
        phase = time.perf_counter()
        data = labelled_dataset(study, labels["overall"][source])
        policy = with_lora(load_causal_lm(config.model)[0], LoraSettings(r=config.lora_r, alpha=config.lora_alpha),
                           seed=seed)
        training = PreferenceTrainingConfig(loss="sigmoid", beta=config.dpo_beta, steps=config.steps,
                                            batch_size=config.batch_size, learning_rate=config.learning_rate,
                                            eval_every=config.eval_every, seed=seed, progress=progress)
        result = train_preferences(policy, data, tokenizer.pad_token_id, training, callback)
        entry["dpo"][source] = {"pairs": len(data), "points": result.evaluations,
                                "seconds": time.perf_counter() - phase}
        entry["seconds"] += entry["dpo"][source]["seconds"]
        save()
    entry["matched_kl"] = matched_kl(entry["dpo"])
    save()


def label_everything(config: SmolLM2AIFeedbackConfig, seed: int, study: Study, model, tokenizer,
                     gold: GoldReward, progress: bool = False) -> dict[str, dict[str, Any]]:
    """``labels[question][evaluator]``: labels ``[N]`` (NaN: skipped) of every query; the judge also leaves its
    per-order verdicts under ``judge_first_order`` / ``judge_second_order``."""
    samples = study.samples
    prefixes = [study.prefixes[i // config.samples_per_prompt] for i in study.first]
    first = [samples.texts[i] for i in study.first]
    second = [samples.texts[i] for i in study.second]
    labels: dict[str, dict[str, Any]] = {}
    # the judge's passes are most of a seed's labelling time (minutes each on the real model): show them
    for question, text in tqdm(QUESTIONS.items(), desc=f"{NAME} seed {seed}: judging", disable=not progress):
        judge = LanguageModelJudge(model, tokenizer, JUDGE_TEMPLATE.replace("{question}", text), verdicts=("A", "B"),
                                   batch_size=config.judge_batch_size, chat=True, name="judge")
        forward = judge.verdict_scores(prefixes + prefixes, first + second, second + first)
        ab, ba = forward[:len(first)], forward[len(first):]
        labels[question] = {"gold": study.gold(question), "judge": _sign_labels(0.5 * (ab - ba)),
                            "judge_first_order": _sign_labels(ab), "judge_second_order": _sign_labels(-ba)}
    overall = labels["overall"]
    overall["reward_model"] = reward_model_labels(config, seed, study, model, tokenizer, gold)
    scale = float(study.total.abs().mean())
    generator = torch.Generator().manual_seed(seed + 17)
    for teacher in bpref_teachers():
        answer = teacher.label(study.total[study.first][:, None], study.total[study.second][:, None],
                               margin=scale if teacher.needs_margin else None, generator=generator)
        overall[f"teacher_{teacher.name}"] = torch.as_tensor(preference_ratings(answer.labels, answer.skipped))
    return labels


def reward_model_labels(config: SmolLM2AIFeedbackConfig, seed: int, study: Study, model, tokenizer,
                        gold: GoldReward) -> torch.Tensor:
    """Train the project's reward model on pairs of other samples labelled by the gold total (most vs least of
    ``samples_per_prompt`` per prompt), then label the study's queries by its scores."""
    from llm.pretrained import is_named_model, provision_named

    prefixes = sentiment_prompts(config.rm_prompts, "train", seed=seed + 50_000)
    prompts = chat_review_prompts(tokenizer, prefixes)
    samples = generate_completions(model, tokenizer, prompts, config.max_new_tokens,
                                   num_samples=config.samples_per_prompt, seed=seed + 3, add_special_tokens=False)
    totals = gold(samples).total.reshape(len(prompts), -1)
    chosen, rejected, kept = [], [], []
    for p in range(len(prompts)):
        best, worst = int(totals[p].argmax()), int(totals[p].argmin())
        if totals[p, best] > totals[p, worst]:
            k = config.samples_per_prompt
            chosen.append(samples.texts[p * k + best])
            rejected.append(samples.texts[p * k + worst])
            kept.append(prompts[p])
    if not kept:
        raise ValidationError(f"rm_prompts: seed {seed}: no reward-model pair differs in the gold total")
    path = provision_named(config.model) if is_named_model(config.model) else config.model
    reward_model = backbone_reward_model(path, seed=seed)
    train_reward_model(reward_model, TextPairs(kept, chosen, rejected), RewardModelTrainingConfig(
        loss="bradley_terry", steps=config.rm_steps, batch_size=config.rm_batch_size,
        learning_rate=config.rm_learning_rate, seed=seed))
    scores = reward_model.score(study.samples.prompts, study.samples.texts).total.double()
    return _sign_labels(scores[study.first] - scores[study.second])


def agreement(study: Study, labels: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The measures of the module docstring (step 3) from the labels of :func:`label_everything`."""
    items = len(study.samples)
    result: dict[str, Any] = {}
    for question, by_evaluator in labels.items():
        gold = by_evaluator["gold"]
        block: dict[str, Any] = {"gold_tie_rate": float((gold == 0.5).double().mean())}
        for name, values in by_evaluator.items():
            if name == "gold":
                continue
            block[name] = agreement_with_reference(values, gold)
            if not name.startswith("judge_"):
                block[name]["intransitive"] = intransitive_triple_rate(study.first, study.second,
                                                                       preference_ratings(values), items)
        first, second = by_evaluator["judge_first_order"], by_evaluator["judge_second_order"]
        block["judge"]["position_bias"] = float((first != second).double().mean())  # the verdict followed the slot
        result[question] = block
    overall = labels["overall"]
    raters = {name: preference_ratings(values) for name, values in overall.items() if not name.startswith("judge_")}
    names, matrix = pairwise_cohen_kappa(raters)
    result["overall"]["cohen_kappa"] = {"raters": names, "matrix": matrix.tolist()}
    evaluators = [name for name in names if name != "gold"]
    result["overall"]["fleiss_kappa"] = {"raters": evaluators, "value": fleiss_kappa_from_ratings(
        np.stack([raters[name] for name in evaluators]))}
    return result


def labelled_dataset(study: Study, labels: torch.Tensor) -> PreferenceDataset:
    """The study's queries as DPO pairs under ``labels`` (ties and skipped queries dropped)."""
    samples = study.samples
    prompt_ids, chosen, rejected = [], [], []
    for a, b, label in zip(study.first, study.second, labels.tolist()):
        if label not in (0.0, 1.0):
            continue
        win, lose = (a, b) if label == 1.0 else (b, a)
        prompt_ids.append(samples.prompt_ids[win])
        chosen.append(samples.completion_ids[win])
        rejected.append(samples.completion_ids[lose])
    if not prompt_ids:
        raise ValidationError("labels: every query is a tie or skipped; nothing to train on")
    return PreferenceDataset(prompt_ids, chosen, rejected)


def matched_kl(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each run's gold sentiment and total at the smallest final KL among ``runs`` (linear interpolation along the
    run's evaluations, KL made monotone by a running maximum; the reference is the point at step 0)."""
    finals = [run["points"][-1]["kl"] for run in runs.values()]
    target = max(0.0, min(finals))
    matched: dict[str, Any] = {"kl": target}
    for source, run in runs.items():
        kl = np.maximum.accumulate(np.maximum([p["kl"] for p in run["points"]], 0.0))
        row = {}
        for measure in ("reward/sentiment", "reward/total"):
            values = np.asarray([p[measure] for p in run["points"]], dtype=float)
            row[measure] = float(np.interp(target, kl, values)) if kl[-1] > kl[0] else float(values[-1])
        matched[source] = row
    return matched


def summarize(record: dict[str, Any]) -> dict[str, Any]:
    """IQM [95% CI] over seeds of the agreement measures and of the DPO outcomes per label source."""
    seeds = [entry for entry in record["seeds"].values() if "agreement" in entry]

    def over_seeds(*path: str | int) -> dict[str, float]:
        """IQM [CI] over seeds of the value at ``path`` inside each seed's ``agreement``."""
        values = []
        for entry in seeds:
            value: Any = entry["agreement"]
            for key in path:
                value = value[key]
            values.append(value)
        return iqm_with_ci(values)

    first = seeds[0]["agreement"]["overall"]
    evaluators = [name for name, value in first.items()
                  if isinstance(value, dict) and "accuracy" in value and not name.startswith("judge_")]
    summary: dict[str, Any] = {"overall": {}, "judge_per_question": {}, "dpo": {}}
    for name in evaluators:
        summary["overall"][name] = {measure: over_seeds("overall", name, measure)
                                    for measure in ("accuracy", "cohen_kappa", "flip_rate", "tie_rate")}
        summary["overall"][name]["intransitive_rate"] = over_seeds("overall", name, "intransitive", "rate")
    summary["fleiss_kappa"] = over_seeds("overall", "fleiss_kappa", "value")
    raters = first["cohen_kappa"]["raters"]
    judge = raters.index("judge")
    summary["judge_kappa_with"] = {other: over_seeds("overall", "cohen_kappa", "matrix", judge, raters.index(other))
                                   for other in raters if other != "judge"}
    for question in QUESTIONS:
        summary["judge_per_question"][question] = {
            measure: over_seeds(question, "judge", measure) for measure in ("accuracy", "cohen_kappa", "position_bias")}
    finished = [entry for entry in seeds if "matched_kl" in entry]
    for source in LABEL_SOURCES:
        runs = [entry for entry in finished if source in entry["dpo"]]
        if not runs:
            continue
        summary["dpo"][source] = {
            "matched_sentiment": iqm_with_ci([e["matched_kl"][source]["reward/sentiment"] for e in runs]),
            "final_sentiment": iqm_with_ci([e["dpo"][source]["points"][-1]["reward/sentiment"] for e in runs]),
            "final_kl": iqm_with_ci([e["dpo"][source]["points"][-1]["kl"] for e in runs]),
            "pairs": iqm_with_ci([e["dpo"][source]["pairs"] for e in runs])}
    summary["matched_kl"] = iqm_with_ci([e["matched_kl"]["kl"] for e in finished])
    summary["reference_sentiment"] = iqm_with_ci([e["reference"]["reward/sentiment"] for e in finished])
    summary["mistake_rate"] = iqm_with_ci([e["mistake_rate"] for e in finished])
    return summary
