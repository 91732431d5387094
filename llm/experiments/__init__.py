"""Experiments of the language-model side, with the conventions of ``classic_rl.experiments``.

Each module exposes ``SCALES`` (``tiny``: seconds, for tests; ``quick``: minutes on one CPU core; ``full``: the
paper's scale), ``CONFIG`` (the typed, frozen settings dataclass each ``SCALES`` entry validates into; see
``irl_bilevel.config``) and ``run(scale, results_dir, seed=0, progress=True, config=None) -> Path``, which writes
``results_dir/<name>.json`` with the configuration, provenance and every number ``figures/<name>.py`` draws.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from irl_bilevel.config import Config, NonNegativeInt, PositiveFloat, PositiveInt, Range


@dataclass(frozen=True)
class SentimentStudySettings(Config):
    """The settings every sentiment experiment shares (``sentiment_frontier``, ``smollm2_frontier``,
    ``smollm2_ai_feedback``): the held-out evaluation by the gold reward, the policy's LoRA adapters, its offline
    (preference) training and the reward model's training. Each experiment's config derives from it."""

    test_prompts: PositiveInt
    """held-out prompts of the evaluations"""
    eval_samples: PositiveInt
    """samples per test prompt per evaluation"""
    max_new_tokens: PositiveInt
    """tokens per sampled continuation"""
    target_words: PositiveInt
    """conciseness target of the gold reward"""
    lora_r: PositiveInt
    """LoRA rank of the policy's adapters"""
    lora_alpha: PositiveFloat
    """LoRA scaling alpha of the policy's adapters"""
    steps: PositiveInt
    """optimizer steps of each offline (preference) run"""
    batch_size: PositiveInt
    """pairs per offline step"""
    learning_rate: PositiveFloat
    """AdamW learning rate of the offline runs"""
    eval_every: PositiveInt
    """offline steps between evaluations"""
    rm_batch_size: PositiveInt
    """pairs per reward-model step"""
    rm_learning_rate: PositiveFloat
    """AdamW learning rate of the reward model"""


@dataclass(frozen=True)
class FrontierSettings(SentimentStudySettings):
    """The settings of a reward-vs-KL frontier (``sentiment_frontier``, ``smollm2_frontier``): preference pairs from
    reference samples, the offline losses, RLOO, the reward model of the RM + RLOO runs and best-of-n."""

    train_prompts: PositiveInt
    """prompts whose reference samples form the preference pairs"""
    pair_samples: Annotated[int, Range(low=2)]
    """reference samples per training prompt; the pair: the best and the worst by the gold reward"""
    dpo_betas: tuple[PositiveFloat, ...]
    """β of each DPO run (the frontier's offline points)"""
    other_losses: dict[str, dict[str, float | None]]
    """catalog loss -> {"beta": β or None, other loss parameters}"""
    rl_steps: PositiveInt
    """RLOO updates per run"""
    rl_prompts_per_step: PositiveInt
    """prompts per RLOO update"""
    rl_samples_per_prompt: Annotated[int, Range(low=2)]
    """k of RLOO"""
    rl_learning_rate: PositiveFloat
    """AdamW learning rate of the RLOO runs"""
    rl_eval_every: PositiveInt
    """RLOO updates between evaluations"""
    rm_steps: NonNegativeInt
    """reward-model optimizer steps (0: no RM + RLOO runs)"""
    rm_lora_r: NonNegativeInt
    """LoRA rank of the reward model's backbone (0: frozen backbone, a linear probe)"""
    best_of_n: tuple[PositiveInt, ...]
    """n of each best-of-n point (n reference samples, the best kept; the ranking: the module docstring)"""
