"""The DPO paper's controlled-sentiment experiment (Rafailov et al. 2023, Fig. 2) on a real pretrained model.

Policy: a LoRA adapter on SmolLM2-135M-Instruct (``model``; Q4_1-quantized weights dequantized to float32, see
:mod:`llm.pretrained`). Each prompt asks the model, through its own ChatML chat template, to continue a short review
prefix (:func:`llm.sentiment.chat_review_prompts`). The chat template rather than raw continuation: an instruction-tuned
model is used through it, and raw text would evaluate it off the distribution it was tuned on. The gold reward is
:class:`llm.sentiment.GoldReward` on the completion alone (the prompt is an instruction, not part of the review):
VADER sentiment, fluency under the reference, conciseness, lexical diversity; the pairs are labelled by gold sentiment,
as in the DPO paper.

Per seed ``s`` (``seeds`` of them: 0, 1, ...; a seed changes the prompts, the reference samples and so the pairs, the
LoRA initialization, the RL samples and the evaluation samples):

1. ``pair_samples`` reference samples per training prompt; the most and the least positive form a pair.
2. Methods, each a fresh adapter from the same initialization: DPO (catalog ``sigmoid``) at each β of ``dpo_betas``;
   each loss of ``other_losses`` (catalog name -> parameters, ``beta`` included); RLOO on the gold sentiment
   (:func:`llm.training.train_rl`, KL coefficient ``rl_kl_coef``); a reward model (linear head on the frozen
   reference's last-token state, Bradley-Terry on the same pairs; :func:`llm.experiments.sentiment_frontier.
   train_frontier_reward_model`) then RLOO on its score; best-of-n on reference samples by gold sentiment, at the
   analytic KL ``log n − (n−1)/n``.
3. Every ``eval_every`` (``rl_eval_every``) steps a frontier point (:func:`llm.frontier.evaluate_policy`): mean gold
   sentiment of samples on held-out prompts and the sequence-level KL to the reference from the same samples; step 0
   is the reference itself. Every evaluation of a seed shares one sampling seed (common random numbers).

Resumable: the result file is written after every (seed, method) record. A rerun with the same settings (``seeds``
may grow) keeps every finished record whose seed's training pairs hash to the same value (the SHA-256 of their token
ids, recorded) and runs only the missing ones.

Summary, per method over seeds: the IQM and 95% bootstrap CI of the final point's gold sentiment and KL
(:func:`irl_bilevel.statistics.iqm_with_ci`), the methods ordered by that IQM, and whether each pair of neighbours
in the order has intervals apart. Acceptance: every DPO β ends above the reference with intervals apart.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from irl_bilevel.config import NonNegativeFloat, PositiveInt
from irl_bilevel.runs import seed_entry, seeded_record
from irl_bilevel.statistics import iqm_with_ci
from irl_bilevel.validation import ValidationError
from llm.experiments import FrontierSettings
from llm.experiments.sentiment_frontier import fit_reward_model
from llm.frontier import best_of_n_points, evaluate_policy, gold_text_reward
from llm.models import LoraSettings, generate_completions, load_causal_lm, with_lora
from llm.pretrained import model_record
from llm.sentiment import GoldReward, PreferencePairs, chat_review_prompts, label_pairs, sentiment_prompts
from llm.training import PreferenceDataset, PreferenceTrainingConfig, RLConfig, train_preferences, train_rl

NAME = "smollm2_frontier"


@dataclass(frozen=True)
class SmolLM2FrontierConfig(FrontierSettings):
    """Settings of the real-model sentiment frontier (protocol: the module docstring)."""

    model: str
    """a named model (smollm2-135m-instruct; smollm2-tiny-random for tests), a local folder or a hub id"""
    seeds: PositiveInt
    """seeds 0 .. seeds-1"""
    rl_kl_coef: NonNegativeFloat
    """β of RLOO's KL penalty (gold and reward-model RLOO alike)"""


SCALES: dict[str, dict[str, Any]] = {
    # seconds on a laptop core: exercises every step on the tiny random variant of SmolLM2
    "tiny": {"model": "smollm2-tiny-random", "seeds": 2, "train_prompts": 8, "test_prompts": 4, "pair_samples": 2,
             "max_new_tokens": 6, "target_words": 16, "lora_r": 4, "lora_alpha": 8.0, "dpo_betas": [0.1],
             "other_losses": {"ipo": {"beta": 0.5}}, "steps": 2, "batch_size": 4, "learning_rate": 1e-3,
             "eval_every": 1, "eval_samples": 1, "rl_kl_coef": 0.05, "rl_steps": 2, "rl_prompts_per_step": 2,
             "rl_samples_per_prompt": 2, "rl_learning_rate": 1e-3, "rl_eval_every": 1, "rm_steps": 2,
             "rm_batch_size": 4, "rm_learning_rate": 1e-2, "rm_lora_r": 0, "best_of_n": [2]},
    # sized for under 2 hours of one core for all 5 seeds, so that both real-model studies fit one 2-core machine side
    # by side (the results page states the time the file records); fewer prompts and steps rather than fewer seeds
    "quick": {"model": "smollm2-135m-instruct", "seeds": 5, "train_prompts": 64, "test_prompts": 16,
              "pair_samples": 4, "max_new_tokens": 32, "target_words": 24, "lora_r": 8, "lora_alpha": 16.0,
              "dpo_betas": [0.05, 0.1, 0.5], "other_losses": {"ipo": {"beta": 0.5},
                                                              "simpo": {"beta": 2.0, "gamma": 0.5}},
              "steps": 16, "batch_size": 8, "learning_rate": 5e-4, "eval_every": 8, "eval_samples": 2,
              "rl_kl_coef": 0.05, "rl_steps": 12, "rl_prompts_per_step": 4, "rl_samples_per_prompt": 4,
              "rl_learning_rate": 5e-4, "rl_eval_every": 6, "rm_steps": 30, "rm_batch_size": 16,
              "rm_learning_rate": 1e-3, "rm_lora_r": 0, "best_of_n": [2, 4, 8]},
    # for a GPU
    "full": {"model": "smollm2-135m-instruct", "seeds": 5, "train_prompts": 1024, "test_prompts": 256,
             "pair_samples": 4, "max_new_tokens": 48, "target_words": 24, "lora_r": 16, "lora_alpha": 32.0,
             "dpo_betas": [0.05, 0.1, 0.5, 1.0], "other_losses": {"ipo": {"beta": 0.5},
                                                                  "simpo": {"beta": 2.0, "gamma": 0.5}},
             "steps": 300, "batch_size": 32, "learning_rate": 5e-4, "eval_every": 50, "eval_samples": 2,
             "rl_kl_coef": 0.05, "rl_steps": 300, "rl_prompts_per_step": 16, "rl_samples_per_prompt": 4,
             "rl_learning_rate": 5e-4, "rl_eval_every": 50, "rm_steps": 300, "rm_batch_size": 32,
             "rm_learning_rate": 1e-3, "rm_lora_r": 8, "best_of_n": [2, 4, 8, 16, 64]},
}
CONFIG = SmolLM2FrontierConfig


@dataclass(frozen=True)
class Method:
    """One trained policy of a seed: ``key`` names it in the result file (``dpo-0.1``, ``ipo``, ``rloo``, ...)."""

    key: str
    kind: str  # "offline" (a catalog loss), "rloo" (gold sentiment) or "rm_rloo" (reward model)
    loss: str | None = None
    beta: float | None = None
    loss_params: tuple[tuple[str, float | None], ...] = ()


def methods(config: SmolLM2FrontierConfig) -> list[Method]:
    """The trained methods of every seed, in the order they run."""
    plan = [Method(f"dpo-{beta:g}", "offline", "sigmoid", beta) for beta in config.dpo_betas]
    plan += [Method(loss, "offline", loss, params.get("beta"),
                    tuple((k, v) for k, v in sorted(params.items()) if k != "beta"))
             for loss, params in config.other_losses.items()]
    plan.append(Method("rloo", "rloo", beta=config.rl_kl_coef))
    if config.rm_steps > 0:
        plan.append(Method("rm_rloo", "rm_rloo", beta=config.rl_kl_coef))
    return plan


def pairs_hash(pairs: PreferencePairs) -> str:
    """SHA-256 of the pairs' token ids: a resumed seed keeps its finished runs only if its pairs are the same."""
    text = json.dumps([pairs.prompt_ids, pairs.chosen_ids, pairs.rejected_ids])
    return hashlib.sha256(text.encode()).hexdigest()


def run(scale: str, results_dir: Path, seed: int = 0, progress: bool = True,
        config: SmolLM2FrontierConfig | None = None) -> Path:
    """Run every seed and method at ``scale`` (``seed`` offsets the seeds); writes ``results_dir/<NAME>.json``."""
    config = config or SmolLM2FrontierConfig.from_dict(SCALES[scale], NAME)
    settings = config.to_dict()
    plan = methods(config)
    for method in plan:  # check every loss and its parameters before the first run spends time
        if method.kind == "offline":
            _offline_config(config, method, seed, progress)
    path = Path(results_dir) / f"{NAME}.json"
    record, earlier, save = seeded_record(path, NAME, scale, settings, seed)
    record["seeds"] = dict(earlier["seeds"]) if earlier else {}

    model, tokenizer = load_causal_lm(config.model)
    record["model"] = model_record(config.model)
    gold = GoldReward(model, tokenizer, target_words=config.target_words, score_prompt=False)
    for offset in range(config.seeds):
        run_seed(config, seed + offset, model, tokenizer, gold, plan, record, save, progress)
    record["summary"] = summarize(record, plan, config)
    record["complete"] = True
    save()
    return path


def _offline_config(config: SmolLM2FrontierConfig, method: Method, seed: int, progress: bool
                    ) -> PreferenceTrainingConfig:
    return PreferenceTrainingConfig(loss=method.loss or "sigmoid", beta=method.beta,
                                    loss_params=dict(method.loss_params), steps=config.steps,
                                    batch_size=config.batch_size, learning_rate=config.learning_rate,
                                    eval_every=config.eval_every, seed=seed, progress=progress)


def run_seed(config: SmolLM2FrontierConfig, seed: int, model, tokenizer, gold: GoldReward, plan: list[Method],
             record: dict[str, Any], save: Callable[[], None], progress: bool) -> None:
    """All methods of one seed into ``record["seeds"][str(seed)]``, saved as soon as each finishes."""
    started = time.perf_counter()
    torch.manual_seed(seed)
    train_prompts = chat_review_prompts(tokenizer, sentiment_prompts(config.train_prompts, "train", seed=seed))
    test_prompts = chat_review_prompts(tokenizer, sentiment_prompts(config.test_prompts, "test", seed=seed))
    samples = generate_completions(model, tokenizer, train_prompts, config.max_new_tokens,
                                   num_samples=config.pair_samples, seed=seed, add_special_tokens=False)
    pairs = label_pairs(samples, _sentiment_only(gold(samples)))
    if len(pairs) == 0:
        raise ValidationError(f"train_prompts: seed {seed}: no pair of reference samples differs in sentiment")
    entry = seed_entry(record, seed, "pairs_hash", pairs_hash(pairs), {"runs": {}, "seconds": 0.0},
                       "the training pairs")
    entry["data"] = {"pairs": len(pairs), "chosen_sentiment": float(pairs.chosen_aspects[:, 0].mean()),
                     "rejected_sentiment": float(pairs.rejected_aspects[:, 0].mean())}
    eval_seed = seed + 7_919

    def evaluate(policy) -> dict[str, Any]:
        return evaluate_policy(policy, tokenizer, test_prompts, gold, samples_per_prompt=config.eval_samples,
                               max_new_tokens=config.max_new_tokens, seed=eval_seed, add_special_tokens=False)

    if "reference" not in entry:
        entry["reference"] = evaluate(model)
    reference_point = entry["reference"]

    def callback(policy, step: int) -> dict[str, Any]:
        return reference_point if step == 0 else evaluate(policy)

    held_out_pairs: PreferencePairs | None = None  # reward-model accuracy: best vs worst on the test prompts
    lora = LoraSettings(r=config.lora_r, alpha=config.lora_alpha)
    for method in tqdm(plan, desc=f"{NAME} seed {seed}", disable=not progress):
        if method.key in entry["runs"]:
            continue
        phase = time.perf_counter()
        policy = with_lora(load_causal_lm(config.model)[0], lora, seed=seed)
        run_record: dict[str, Any] = {"kind": method.kind, "loss": method.loss, "beta": method.beta}
        if method.kind == "offline":
            result = train_preferences(policy, PreferenceDataset.from_pairs(pairs), tokenizer.pad_token_id,
                                       _offline_config(config, method, seed, progress), callback)
            last = result.history[-1]
            run_record["train_final"] = {k: last[k] for k in ("loss", "reward_accuracy", "mean_margin")}
        else:
            if method.kind == "rloo":
                reward_fn = gold_text_reward(gold, "sentiment")
            else:
                if held_out_pairs is None:
                    held = generate_completions(model, tokenizer, test_prompts, config.max_new_tokens,
                                                num_samples=config.pair_samples, seed=seed + 2,
                                                add_special_tokens=False)
                    held_out_pairs = label_pairs(held, _sentiment_only(gold(held)))
                reward_model, report = fit_reward_model(_model_path(config.model), pairs, held_out_pairs, gold,
                                                        "scalar", config, seed)
                run_record["reward_model"] = report

                def reward_fn(prompts: list[str], completions: list[str], model=reward_model) -> torch.Tensor:
                    return model.score(prompts, completions).total

            rl = RLConfig(algorithm="rloo", steps=config.rl_steps, prompts_per_step=config.rl_prompts_per_step,
                          samples_per_prompt=config.rl_samples_per_prompt, kl_coef=config.rl_kl_coef,
                          learning_rate=config.rl_learning_rate, max_new_tokens=config.max_new_tokens,
                          eval_every=config.rl_eval_every, seed=seed, progress=progress, add_special_tokens=False)
            result = train_rl(policy, tokenizer, train_prompts, reward_fn, rl, callback)
            last = result.history[-1]
            run_record["train_final"] = {k: last[k] for k in ("reward", "kl", "penalized_reward")}
        run_record["points"] = result.evaluations
        run_record["seconds"] = time.perf_counter() - phase
        entry["runs"][method.key] = run_record
        entry["seconds"] += run_record["seconds"]
        save()
    if "best_of_n" not in entry and config.best_of_n:
        phase = time.perf_counter()
        entry["best_of_n"] = best_of_n_points(model, tokenizer, test_prompts, gold, config.best_of_n,
                                              config.max_new_tokens, eval_seed + 1, {"scalar": "sentiment"},
                                              add_special_tokens=False)
        entry["seconds"] += time.perf_counter() - phase
    entry["wall_seconds_last_segment"] = time.perf_counter() - started
    save()


def _model_path(name: str) -> Path | str:
    from llm.pretrained import is_named_model, provision_named

    return provision_named(name) if is_named_model(name) else name


def _sentiment_only(rewards):
    """The gold reward as the labeller sees it: the sentiment aspect as the total (the DPO paper's labels)."""
    from irl_bilevel.rewards import RewardOutput

    column = rewards.aspect_names.index("sentiment")
    return RewardOutput(rewards.aspects, rewards.aspects[:, column], rewards.aspect_names)


def final_points(record: dict[str, Any], method: str) -> list[dict[str, Any]]:
    """The last evaluation of ``method`` on every seed that finished it (``"reference"``: the reference point)."""
    points = []
    for entry in record["seeds"].values():
        if method == "reference":
            if "reference" in entry:
                points.append(entry["reference"])
        elif method in entry.get("runs", {}):
            points.append(entry["runs"][method]["points"][-1])
        elif method.startswith("best_of_"):
            n = int(method.removeprefix("best_of_"))
            points += [p for p in entry.get("best_of_n", []) if p["n"] == n]
    return points


def summarize(record: dict[str, Any], plan: list[Method], config: SmolLM2FrontierConfig) -> dict[str, Any]:
    """Per method over seeds: IQM [95% CI] of the final gold sentiment and KL; the order by sentiment IQM, with
    whether neighbours' intervals are apart; the acceptance check (every DPO β above the reference, apart)."""
    names = ["reference", *(m.key for m in plan), *(f"best_of_{n}" for n in config.best_of_n)]
    table: dict[str, Any] = {}
    for name in names:
        points = final_points(record, name)
        if not points:
            continue
        table[name] = {"sentiment": iqm_with_ci([p["reward/sentiment"] for p in points]),
                       "kl": iqm_with_ci([p["kl"] for p in points]),
                       "total": iqm_with_ci([p["reward/total"] for p in points]),
                       "seeds": len(points)}
    order = sorted(table, key=lambda name: -table[name]["sentiment"]["iqm"])
    ordering = [{"method": name, **{k: table[name]["sentiment"][k] for k in ("iqm", "low", "high")},
                 "apart_from_next": (table[name]["sentiment"]["low"] > table[order[i + 1]]["sentiment"]["high"]
                                     if i + 1 < len(order) else None)}
                for i, name in enumerate(order)]
    reference = table.get("reference", {}).get("sentiment")
    dpo = {m.key: bool(reference is not None and m.key in table
                       and table[m.key]["sentiment"]["low"] > reference["high"])
           for m in plan if m.loss == "sigmoid"}
    return {"methods": table, "order": ordering,
            "acceptance": {"dpo_above_reference_apart": dpo, "passed": bool(dpo) and all(dpo.values())}}
