"""Reward structure for a real language model that plans and acts: SmolLM2-135M-Instruct on TextArena's games.

The policy is SmolLM2-135M-Instruct (``model``; Q4_1-quantized weights dequantized to float32, :mod:`llm.pretrained`)
with a LoRA adapter. It sees every observation through its own chat template (:class:`llm.agentic.chat.ChatEnv`):
for TextArena's games the system message is TextArena's own player prompt (rules and action format) plus one line
asking for the move alone (:data:`llm.agentic.textarena_games.ARENA_ANSWER_FORMAT`), the user's message TextArena's
board rendering verbatim; for the project's Hanoi-3 a format line and its observation text
(:meth:`llm.agentic.base.TextEnv.chat_messages`). The answer is the assistant's turn, parsed by the games' own
parsers (TextArena's regexes): malformed and invalid answers are counted and never end an episode. Games
(:data:`GAMES`): ``ta-hanoi`` (``TowerOfHanoi-v0``, 1 start, cap 14), ``ta-frozenlake`` (``FrozenLake-v0``, 4×4, 8
boards, cap 10), ``ta-lightsout`` (``LightsOut-v0`` at 3×3, 16 scrambles, cap 10), ``ta-frozenlake-5x5``
(``FrozenLake-v0-hardcore``: 5×5, 6 holes, 8 boards, cap 14) and the project's ``hanoi-3`` (26 starts, cap 10).

**Built for the cost.** One SmolLM2 forward of a 150–330-token game prompt takes a good part of a second on two
cores, and a training step on a batch of them several seconds, so the language model is used only where a policy
acts or learns; everything else is exact and tabular:

* Rewards are learned on the game's exported MDP with the exact soft-value-iteration inner loop
  (:mod:`llm.agentic.tabular_learning`): the aspect scales of the structured reward
  (:class:`~llm.agentic.export.AspectTableReward` over ``success, invalid, malformed, progress, step``) by MaxEnt IRL
  from the optimal solver's demonstrations (``learned``; deterministic, once per game) and by reward learning from
  preferences of the B-Pref oracle on same-start episode pairs of the current soft-optimal policy (``pref``;
  ``query_budget`` queries, per seed). Unlike :mod:`llm.experiments.agentic_reward_learning` (built-in model), whose
  IRL inner loop was the LM itself, the inner loop here is the tabular soft-optimal policy: it costs seconds and
  learns the reward the plans route needs; what the LM contributes is whether it can act on the reward's plans.
* Evaluations advance all episodes together, one batched ``generate`` per move with a KV cache within the move
  (:func:`llm.agentic.rollout.lockstep_rollout`), and decode greedily: one episode per start is the policy's
  behaviour there (deterministic), and greedy lockstep episodes equal one-at-a-time ones (the speed-up is measured by
  ``benchmarks/smollm2_agentic_rollout.py``). Distillation, not evaluation, is most of the cost: a step on 8 plan
  steps of a 140–330-token prompt is a forward and backward pass through the whole model.
* Conditions of a (game, seed) whose search plans are identical share one adapter: distillation and evaluation are
  a deterministic function of (plans, seed), so the shared record is the one the second run would have produced
  (``shared_with`` names the condition that ran).
* Every record is written as soon as it exists and a rerun with the same settings resumes: zero-shot per game, plans
  per (game, seed, condition) (kept when its plans hash the same), RL per (game, seed, condition). ``seeds`` and
  ``rl_seeds`` may grow between runs.

**(1) Zero-shot** (``zero_shot_games``): the base model, greedy (one episode per start) and sampled at temperature 1
(``zero_shot_sampled_episodes`` per game, spread evenly over the starts, at least one each): success (goal with no
invalid and no malformed move), malformed and invalid rates over all moves, plan length over optimal.

**(2) The plans route** (``games``, ``seeds`` seeds each): the reward-guided best-first search
(:func:`llm.agentic.distill.search_plans`, ``search_expansions[game]`` expansions per start) plans with each reward of
:data:`PLAN_CONDITIONS`: ``true`` (the env's structured reward, ``DEFAULT_WEIGHTS``), ``learned``, ``pref`` and
``sparse`` (success only). A fresh LoRA adapter (seeded by the seed) is fine-tuned by maximum likelihood on each
reward's plans through the chat template (:func:`llm.agentic.distill.distill_plans`: ``distill_steps`` AdamW steps of
``distill_batch_size`` plan steps drawn with replacement) and evaluated greedily from every start. ``ta-frozenlake-5x5``
is the FrozenLake setting on which the sparse reward's search does not saturate: its budget (quick scale: 12) is the
smallest at which the true reward's search plans every board (the sparse one then plans 2 of 8); the other games
keep the built-in study's 50.

**(3) The RL route** (diagnostic, ``rl_game``, ``rl_seeds`` seeds): a fresh adapter trained by episode-level RLOO
(:class:`llm.lora_inner.LoRAInnerSolver`: ``rl_updates`` updates of ``rl_episodes_per_start`` sampled episodes from
``rl_starts_per_update`` starts, KL penalty ``rl_kl_coef``) on each reward of :data:`RL_CONDITIONS` (frozen), then
evaluated greedily; per update the training curve holds the rolled episodes' true return, success, malformed and
invalid rates. It shows whether RL updates on the real model separate the rewards at all within that budget.

**Across seeds**: per game and condition the IQM of the success rate with a 95% percentile-bootstrap CI
(:func:`irl_bilevel.statistics.iqm_with_ci`); ``goals[game]``: a learned structured reward (``learned``, ``pref``)
beats ``sparse`` when its CI lies wholly above sparse's; ``goal``: the TextArena games (FrozenLake's two maps count
once) where one does, against the issue's target of :data:`GOAL_GAMES`. Where the goal is not met,
``diagnostics[game]`` says why from the numbers (rules in :func:`diagnose`): the sparse search planning as many starts
as the learned one's, identical plans, the adapter failing to reproduce even the true reward's plans (its success and
final imitation loss), and the zero-shot malformed rate. ``timing`` sums the recorded seconds of every part.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import numpy as np
import torch
from tqdm.auto import tqdm

from irl_bilevel.config import (
    Config,
    Discount,
    NonEmpty,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Range,
    scale_config,
)
from irl_bilevel.runs import seeded_record
from irl_bilevel.statistics import iqm_with_ci
from irl_bilevel.validation import ValidationError
from llm.agentic import SPARSE_WEIGHTS, FiniteTextEnv, HanoiEnv
from llm.agentic.chat import ChatEnv
from llm.agentic.distill import distill_plans, search_plans
from llm.agentic.export import AspectTableReward, TabularExport, build_tabular_mdp
from llm.agentic.rollout import evaluate_episodes
from llm.agentic.tabular_learning import (
    LearnedScales,
    TabularLearningConfig,
    learn_from_demonstrations,
    learn_from_preferences,
)
from llm.agentic.textarena_games import TEXTARENA_GAMES
from llm.lora_inner import LoRAInnerConfig, LoRAInnerSolver
from llm.models import LoraSettings, load_causal_lm, with_lora
from llm.pretrained import model_record

NAME = "smollm2_agentic"
GameName = Literal["ta-hanoi", "ta-frozenlake", "ta-lightsout", "ta-frozenlake-5x5", "hanoi-3"]
GAMES: tuple[GameName, ...] = get_args(GameName)
PLAN_CONDITIONS = ("true", "learned", "pref", "sparse")
"""The rewards whose search plans are imitated, in the order they run (an identical plan set reuses the earlier
condition's adapter)."""
RL_CONDITIONS = ("true", "learned", "sparse")
GOAL_PAIRS = (("learned", "sparse"), ("pref", "sparse"))
"""(learned structured reward, sparse reward): the goal's comparisons."""
TEXTARENA_GAME_OF = {"ta-hanoi": "TowerOfHanoi", "ta-frozenlake": "FrozenLake", "ta-frozenlake-5x5": "FrozenLake",
                     "ta-lightsout": "LightsOut"}
"""The TextArena game each setting plays (the issue's goal counts games: FrozenLake's two maps are one game)."""
GOAL_GAMES = 3
"""The goal: a learned structured reward beats the sparse one, intervals apart, on this many TextArena games."""


@dataclass(frozen=True)
class SmolLM2AgenticConfig(Config):
    """Settings of the real-model agentic experiment (protocol: the module docstring)."""

    model: str
    """a named model (smollm2-135m-instruct; smollm2-tiny-random for tests), a local folder or a hub id"""
    zero_shot_games: tuple[GameName, ...]
    """(1): the games of the zero-shot evaluation"""
    zero_shot_sampled_episodes: NonNegativeInt
    """sampled zero-shot episodes per game (at least one per start; 0: greedy only)"""
    games: Annotated[tuple[GameName, ...], NonEmpty()]
    """(2): the games of the plans route"""
    search_expansions: dict[str, PositiveInt]
    """the search budget (expansions per start) of every game of `games` (keys: names of GAMES)"""
    move_cap: NonNegativeInt
    """0: every game's own move cap; otherwise min(cap, the game's) (the tiny scale's speed)"""
    seeds: PositiveInt
    """seeds seed, seed + 1, ...: adapter initialisation, distillation batches, preference queries"""
    discount: Discount
    """γ of the exported MDPs the rewards are learned on"""
    irl_outer_steps: PositiveInt
    """L-BFGS outer steps of both reward learners"""
    irl_l2: NonNegativeFloat
    """(l2/2)‖θ‖² of both reward learners"""
    query_budget: PositiveInt
    """oracle preference queries per (game, seed)"""
    queries_per_refresh: PositiveInt
    """at most this many per outer step"""
    lora_r: PositiveInt
    """LoRA rank of every adapter"""
    lora_alpha: PositiveFloat
    """LoRA scaling alpha of every adapter"""
    lora_targets: tuple[str, ...]
    """modules LoRA adapts (empty: peft's default for the architecture)"""
    distill_steps: PositiveInt
    """AdamW steps of plan distillation per adapter"""
    distill_batch_size: PositiveInt
    """plan steps per distillation step"""
    distill_learning_rate: PositiveFloat
    """AdamW learning rate of plan distillation"""
    max_new_tokens: PositiveInt
    """answer tokens per move (the answer's end token included)"""
    rl_game: GameName
    """(3): the game of the RL diagnostic"""
    rl_seeds: NonNegativeInt
    """0: no RL diagnostic"""
    rl_updates: PositiveInt
    """RLOO updates per adapter"""
    rl_starts_per_update: PositiveInt
    """starts per RLOO update"""
    rl_episodes_per_start: Annotated[int, Range(low=2)]
    """k of RLOO (>= 2)"""
    rl_learning_rate: PositiveFloat
    """AdamW learning rate of the RLOO updates"""
    rl_kl_coef: NonNegativeFloat
    """β of RLOO's KL penalty to the reference"""
    rl_temperature: PositiveFloat
    """sampling temperature of the RL rollouts"""

    def validate(self) -> None:
        unknown = sorted(set(self.search_expansions) - set(GAMES))
        if unknown:
            raise ValidationError(f"search_expansions: unknown game(s) {unknown}; expected some of {list(GAMES)}")
        missing = [game for game in self.games if game not in self.search_expansions]
        if missing:
            raise ValidationError(f"search_expansions: expected a positive budget for every game of games, missing "
                                  f"for {missing}")
        if self.rl_seeds:  # the RL diagnostic's solver settings, checked where they are defined
            LoRAInnerConfig(updates_per_solve=self.rl_updates, starts_per_update=self.rl_starts_per_update,
                            episodes_per_start=self.rl_episodes_per_start, kl_coef=self.rl_kl_coef,
                            learning_rate=self.rl_learning_rate, max_new_tokens=self.max_new_tokens,
                            temperature=self.rl_temperature, discount=self.discount)


_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
_COMMON: dict[str, Any] = {
    "zero_shot_games": list(GAMES), "games": ["ta-hanoi", "ta-frozenlake", "ta-lightsout", "ta-frozenlake-5x5"],
    "search_expansions": {"ta-hanoi": 50, "ta-frozenlake": 50, "ta-lightsout": 50, "ta-frozenlake-5x5": 12,
                          "hanoi-3": 50},
    "move_cap": 0, "discount": 0.9, "irl_outer_steps": 10, "irl_l2": 0.1, "query_budget": 64,
    "queries_per_refresh": 8, "lora_r": 8, "lora_alpha": 16.0, "lora_targets": _LORA_TARGETS,
    "rl_game": "ta-hanoi", "rl_starts_per_update": 1, "rl_kl_coef": 0.05, "rl_temperature": 1.0,
}
SCALES: dict[str, dict[str, Any]] = {
    # seconds: every part on the tiny random variant of SmolLM2 (its tokenizer and chat template), moves capped at 3
    "tiny": {**_COMMON, "model": "smollm2-tiny-random", "zero_shot_games": ["ta-lightsout", "hanoi-3"],
             "zero_shot_sampled_episodes": 2, "games": ["ta-lightsout"], "move_cap": 3, "seeds": 2,
             "irl_outer_steps": 2, "query_budget": 8, "queries_per_refresh": 4, "lora_r": 2, "lora_alpha": 4.0,
             "distill_steps": 2, "distill_batch_size": 2, "distill_learning_rate": 1e-3, "max_new_tokens": 3,
             "rl_game": "ta-lightsout", "rl_seeds": 1, "rl_updates": 1, "rl_episodes_per_start": 2,
             "rl_learning_rate": 1e-3},
    # the real model, sized for about 6 hours of a 2-core CPU for the whole study (the README states the measured time)
    "quick": {**_COMMON, "model": "smollm2-135m-instruct", "zero_shot_sampled_episodes": 16, "seeds": 5,
              "distill_steps": 24, "distill_batch_size": 8, "distill_learning_rate": 3e-3, "max_new_tokens": 8,
              "rl_seeds": 2, "rl_updates": 6, "rl_episodes_per_start": 4, "rl_learning_rate": 5e-4},
    # for a GPU
    "full": {**_COMMON, "model": "smollm2-135m-instruct", "zero_shot_sampled_episodes": 64, "games": list(GAMES),
             "seeds": 10, "query_budget": 256, "queries_per_refresh": 16, "lora_r": 16, "lora_alpha": 32.0,
             "distill_steps": 200, "distill_batch_size": 16, "distill_learning_rate": 5e-4, "max_new_tokens": 12,
             "rl_seeds": 5, "rl_updates": 100, "rl_starts_per_update": 1, "rl_episodes_per_start": 8,
             "rl_learning_rate": 5e-4},
}
CONFIG = SmolLM2AgenticConfig


def make_env(name: str, move_cap: int = 0) -> FiniteTextEnv:
    """The game ``name`` of :data:`GAMES` with its own move cap, or ``min(move_cap, its cap)`` when ``move_cap``."""
    env: FiniteTextEnv = HanoiEnv(3) if name == "hanoi-3" else TEXTARENA_GAMES[name]()
    if move_cap:
        env.max_steps = min(move_cap, env.max_steps)
    return env


class Study:
    """The loaded model and tokenizer, the games (chat views and exports) and the record being written."""

    def __init__(self, config: SmolLM2AgenticConfig, record: dict[str, Any], save: Callable[[], None],
                 progress: bool) -> None:
        self.config, self.record, self.save, self.progress = config, record, save, progress
        self.model, self.tokenizer = load_causal_lm(config.model)
        self.lora = LoraSettings(r=config.lora_r, alpha=config.lora_alpha,
                                 target_modules=tuple(config.lora_targets) or None)
        self._games: dict[str, tuple[ChatEnv, TabularExport]] = {}
        self.demonstrations: dict[str, LearnedScales] = {}  # the demonstration-learned reward of each game

    def game(self, name: str) -> tuple[ChatEnv, TabularExport]:
        """The chat view of game ``name`` and its environment's tabular export (built once)."""
        if name not in self._games:
            env = make_env(name, self.config.move_cap)
            self._games[name] = (ChatEnv(env, self.tokenizer), build_tabular_mdp(env, self.config.discount))
        return self._games[name]

    def evaluate(self, model: Any, env: ChatEnv, episodes_per_start: int, temperature: float, seed: int
                 ) -> dict[str, Any]:
        started = time.perf_counter()
        with torch.no_grad():
            result = evaluate_episodes(model, self.tokenizer, env, episodes_per_start=episodes_per_start,
                                       max_new_tokens=self.config.max_new_tokens, temperature=temperature, seed=seed)
        return {**result, "seconds": time.perf_counter() - started}

    def fresh_solver(self, env: ChatEnv, export: TabularExport, seed: int, learning_rate: float,
                     updates: int = 1) -> LoRAInnerSolver:
        """A fresh adapter (``B = 0``: the base model) on a copy of the base model, in a LoRA solver."""
        config = self.config
        model = with_lora(copy.deepcopy(self.model), self.lora, seed=seed)
        inner = LoRAInnerConfig(updates_per_solve=updates, starts_per_update=config.rl_starts_per_update,
                                episodes_per_start=max(2, config.rl_episodes_per_start), kl_coef=config.rl_kl_coef,
                                learning_rate=learning_rate, max_new_tokens=config.max_new_tokens,
                                temperature=config.rl_temperature, discount=config.discount, seed=seed)
        return LoRAInnerSolver(model, self.tokenizer, env, inner, export=export)


# ---------------------------------------------------------------------- (1) zero-shot
def zero_shot(study: Study, name: str, seed: int) -> dict[str, Any]:
    """The base model on game ``name``: greedy from every start, and sampled (module docstring)."""
    env, _ = study.game(name)
    starts = len(env.starts)
    result: dict[str, Any] = {"starts": starts, "move_cap": env.max_steps,
                              "greedy": study.evaluate(study.model, env, 1, 0.0, seed)}
    if study.config.zero_shot_sampled_episodes:
        per_start = max(1, -(-study.config.zero_shot_sampled_episodes // starts))
        result["sampled"] = study.evaluate(study.model, env, per_start, 1.0, seed)
    return result


# ---------------------------------------------------------------------- (2) the plans route
def plans_hash(plans: list[tuple[Any, list[Any]]], env: FiniteTextEnv) -> str:
    """SHA-256 of the plans as text (start index, canonical moves): equal hashes, equal distillation data."""
    text = json.dumps([[env.starts.index(start), [env.format_action(a) for a in plan]] for start, plan in plans])
    return hashlib.sha256(text.encode()).hexdigest()


def learned_rewards(study: Study, name: str, seed: int) -> dict[str, Any]:
    """The scales of every reward of the plans route on game ``name`` (the learned ones learned here)."""
    config = study.config
    env, export = study.game(name)
    learning = TabularLearningConfig(outer_steps=config.irl_outer_steps, l2=config.irl_l2,
                                     query_budget=config.query_budget, queries_per_refresh=config.queries_per_refresh)
    if name not in study.demonstrations:  # deterministic: learned once per game
        study.demonstrations[name] = learn_from_demonstrations(env.env, export, learning)
    demonstrations = study.demonstrations[name]
    preferences = learn_from_preferences(env.env, export, learning, seed=seed + 70_000)
    return {"true": {"scales": env.weights.tolist()}, "sparse": {"scales": list(SPARSE_WEIGHTS)},
            "learned": {"scales": demonstrations.scales, "seconds": demonstrations.seconds,
                        "outer_steps": len(demonstrations.history)},
            "pref": {"scales": preferences.scales, "seconds": preferences.seconds, **preferences.queries}}


def plans_route_seed(study: Study, name: str, seed: int) -> None:
    """Every condition of game ``name`` and ``seed`` into ``record["plans"][name]["seeds"][seed]``, saved after each."""
    config = study.config
    env, export = study.game(name)
    started = time.perf_counter()
    rewards = learned_rewards(study, name, seed)
    learning_seconds = time.perf_counter() - started
    entry = study.record["plans"].setdefault(name, {"seeds": {}})["seeds"].setdefault(str(seed), {"conditions": {}})
    entry.update({"rewards": rewards, "reward_learning_seconds": learning_seconds})
    started = time.perf_counter()
    searched: dict[str, tuple[dict[str, Any], list[tuple[Any, list[Any]]]]] = {}
    for condition in PLAN_CONDITIONS:
        reward = AspectTableReward(export, initial_scales=rewards[condition]["scales"], learn_scales=False)
        searched[condition] = search_plans(env, export, reward, config.search_expansions[name])
    entry["search"] = {c: {**stats, "plans_hash": plans_hash(plans, env)} for c, (stats, plans) in searched.items()}
    entry["search_seconds"] = time.perf_counter() - started
    conditions: dict[str, Any] = entry["conditions"]
    for condition in PLAN_CONDITIONS:
        plans = searched[condition][1]
        digest = entry["search"][condition]["plans_hash"]
        if conditions.get(condition, {}).get("plans_hash") == digest:
            continue  # resumed: this condition finished with the same plans
        twin = next((c for c in PLAN_CONDITIONS if c != condition and c in conditions
                     and conditions[c].get("plans_hash") == digest and "shared_with" not in conditions[c]), None)
        if twin is not None:
            conditions[condition] = {**{k: v for k, v in conditions[twin].items() if k != "seconds"},
                                     "shared_with": twin, "seconds": 0.0}
        else:
            conditions[condition] = distill_and_evaluate(study, env, export, plans, seed)
            conditions[condition]["plans_hash"] = digest
        study.save()


def distill_and_evaluate(study: Study, env: ChatEnv, export: TabularExport, plans: list[tuple[Any, list[Any]]],
                         seed: int) -> dict[str, Any]:
    """A fresh adapter fine-tuned on ``plans`` (:func:`distill_plans`), then evaluated greedily from every start."""
    config = study.config
    started = time.perf_counter()
    solver = study.fresh_solver(env, export, seed, config.distill_learning_rate)
    history = distill_plans(solver, plans, config.distill_steps, config.distill_batch_size, seed)
    distill_seconds = time.perf_counter() - started
    evaluation = study.evaluate(solver.model, env, 1, 0.0, seed)
    losses = [row["loss"] for row in history]
    return {**{k: v for k, v in evaluation.items() if k != "seconds"}, "plans": len(plans),
            "plan_steps": sum(len(plan) for _, plan in plans), "training_loss": losses,
            "final_loss": float(np.mean(losses[-4:])) if losses else None,
            "distill_seconds": distill_seconds, "evaluate_seconds": evaluation["seconds"],
            "seconds": time.perf_counter() - started}


# ---------------------------------------------------------------------- (3) the RL route
def rl_seed(study: Study, seed: int) -> None:
    """RLOO on each reward of :data:`RL_CONDITIONS` on ``rl_game`` (module docstring), saved after each."""
    config = study.config
    name = config.rl_game
    env, export = study.game(name)
    entry = study.record["rl"].setdefault(str(seed), {})
    rewards = None
    for condition in RL_CONDITIONS:
        if condition in entry:
            continue
        if rewards is None:
            rewards = learned_rewards(study, name, seed)
        started = time.perf_counter()
        solver = study.fresh_solver(env, export, seed, config.rl_learning_rate, config.rl_updates)
        reward = AspectTableReward(export, initial_scales=rewards[condition]["scales"], learn_scales=False)
        solver.check_reward_model(reward)
        curve = []
        with torch.enable_grad():
            for _ in range(config.rl_updates):
                metrics = solver.update(reward)
                records = [episode.record for episode in solver.episodes]
                curve.append({**metrics, "true_return": float(np.mean([r.total_reward for r in records])),
                              "goal_rate": float(np.mean([r.reached_goal for r in records]))})
        training_seconds = time.perf_counter() - started
        evaluation = study.evaluate(solver.model, env, 1, 0.0, seed)
        entry[condition] = {**{k: v for k, v in evaluation.items() if k != "seconds"}, "scales":
                            rewards[condition]["scales"], "curve": curve, "training_seconds": training_seconds,
                            "evaluate_seconds": evaluation["seconds"], "seconds": time.perf_counter() - started}
        study.save()


# ---------------------------------------------------------------------- summaries
def _mean(values: list[Any]) -> float | None:
    finite = [float(v) for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def summarize_game(entry: dict[str, Any], seeds: list[int]) -> dict[str, Any]:
    """Per condition over ``seeds``: success per seed, its IQM with a 95% CI, and the means of the other metrics."""
    rows = [entry["seeds"][str(s)] for s in seeds if str(s) in entry["seeds"]]
    summary: dict[str, Any] = {}
    for condition in PLAN_CONDITIONS:
        done = [row for row in rows if condition in row["conditions"]]
        if not done:
            continue
        results = [row["conditions"][condition] for row in done]
        success = [r["success_rate"] for r in results]
        summary[condition] = {
            "success_per_seed": success, "success_iqm": iqm_with_ci(success),
            "invalid_action_rate_mean": _mean([r["invalid_action_rate"] for r in results]),
            "malformed_rate_mean": _mean([r["malformed_rate"] for r in results]),
            "plan_length_ratio_mean": _mean([r["plan_length_ratio"] for r in results]),
            "final_loss_mean": _mean([r["final_loss"] for r in results]),
            "search_success_mean": _mean([row["search"][condition]["success_rate"] for row in done]),
            "shared_seeds": sum("shared_with" in r for r in results)}
    return summary


def goal_checks(summary: dict[str, Any]) -> dict[str, Any]:
    """Per pair of :data:`GOAL_PAIRS`: the learned reward's success CI wholly above the sparse reward's."""
    checks: dict[str, Any] = {}
    for name, other in GOAL_PAIRS:
        if name in summary and other in summary:
            learned, sparse = summary[name]["success_iqm"], summary[other]["success_iqm"]
            checks[f"{name}_beats_{other}"] = {"met": bool(learned["low"] > sparse["high"]), "learned": learned,
                                               "sparse": sparse, "iqm_difference": learned["iqm"] - sparse["iqm"]}
    return checks


def diagnose(summary: dict[str, Any], goals: dict[str, Any], entry: dict[str, Any],
             zero: dict[str, Any] | None) -> dict[str, Any]:
    """Why a goal is not met, from the numbers: the rules below, each a sentence with its numbers."""
    rows = list(entry["seeds"].values())
    search = {c: _mean([row["search"][c]["success_rate"] for row in rows if c in row.get("search", {})])
              for c in PLAN_CONDITIONS}
    identical = {c: all(row["search"][c]["plans_hash"] == row["search"]["sparse"]["plans_hash"] for row in rows
                        if "search" in row) for c in ("learned", "pref")}
    reasons: dict[str, list[str]] = {}
    for key, check in goals.items():
        if check["met"]:
            continue
        name = key.split("_beats_")[0]
        why = []
        if identical[name]:
            why.append(f"the {name} and sparse rewards' searches find identical plans on every seed")
        elif (planned := search[name]) is not None and (sparse := search["sparse"]) is not None and \
                sparse >= planned:
            why.append(f"the sparse reward's search plans as many starts as the {name} reward's "
                       f"({sparse:.2f} vs {planned:.2f} of the starts)")
        true = summary.get("true")
        if true is not None and true["success_iqm"]["iqm"] < 0.5:
            why.append(f"the adapter does not reproduce even the true reward's plans: success IQM "
                       f"{true['success_iqm']['iqm']:.2f}, final imitation loss "
                       f"{true['final_loss_mean'] if true['final_loss_mean'] is not None else float('nan'):.2f} nats "
                       f"per move")
        if check["learned"]["iqm"] <= check["sparse"]["iqm"]:
            why.append(f"the {name} reward's adapters succeed no more often than the sparse reward's (IQM "
                       f"{check['learned']['iqm']:.2f} vs {check['sparse']['iqm']:.2f})")
        elif not why:
            why.append(f"the {name} reward's adapters succeed more often (IQM {check['learned']['iqm']:.2f} vs "
                       f"{check['sparse']['iqm']:.2f}) but the 95% intervals overlap")
        reasons[key] = why
    greedy = (zero or {}).get("greedy", {})
    return {"search_success": search, "identical_plans_to_sparse": identical,
            "zero_shot_malformed_rate": greedy.get("malformed_rate"),
            "zero_shot_success_rate": greedy.get("success_rate"), "why_not_met": reasons}


def summarize_rl(record: dict[str, Any], seeds: list[int]) -> dict[str, Any]:
    """Per RL condition over ``seeds``: greedy success per seed with its IQM and CI, and the first and last updates'
    sampled statistics."""
    table: dict[str, Any] = {}
    entries = [record["rl"][str(s)] for s in seeds if str(s) in record["rl"]]
    for condition in RL_CONDITIONS:
        rows = [entry[condition] for entry in entries if condition in entry]
        if rows:
            table[condition] = {
                "success_per_seed": [r["success_rate"] for r in rows],
                "success_iqm": iqm_with_ci([r["success_rate"] for r in rows]),
                "final_true_return_mean": _mean([r["curve"][-1]["true_return"] for r in rows if r["curve"]]),
                "final_malformed_rate_mean": _mean([r["curve"][-1]["malformed_rate"] for r in rows if r["curve"]]),
                "first_true_return_mean": _mean([r["curve"][0]["true_return"] for r in rows if r["curve"]])}
    return table


def timing(record: dict[str, Any]) -> dict[str, float]:
    """Recorded seconds summed by part (shared conditions count zero: nothing ran)."""
    plans = [row for entry in record["plans"].values() for row in entry["seeds"].values()]
    conditions = [c for row in plans for c in row["conditions"].values() if "shared_with" not in c]
    return {"zero_shot": float(sum(z["greedy"]["seconds"] + z.get("sampled", {}).get("seconds", 0.0)
                                   for z in record["zero_shot"].values())),
            "reward_learning": float(sum(row.get("reward_learning_seconds", 0.0) for row in plans)),
            "search": float(sum(row.get("search_seconds", 0.0) for row in plans)),
            "distillation": float(sum(c["distill_seconds"] for c in conditions)),
            "plan_evaluation": float(sum(c["evaluate_seconds"] for c in conditions)),
            "adapters_trained": float(len(conditions)),
            "rl": float(sum(r["seconds"] for entry in record["rl"].values() for r in entry.values()))}


# ---------------------------------------------------------------------- the run
def run(scale: str, results_dir: Path, seed: int = 0, progress: bool = True,
        config: SmolLM2AgenticConfig | None = None) -> Path:
    """Every part at ``scale`` (``seed`` offsets the seeds); writes ``results_dir/smollm2_agentic.json``, resuming an
    earlier run of the same settings (module docstring)."""
    config = config or scale_config(SmolLM2AgenticConfig, SCALES, scale, NAME)
    settings = config.to_dict()
    path = Path(results_dir) / f"{NAME}.json"
    record, earlier, save = seeded_record(path, NAME, scale, settings, seed, differing=("seeds", "rl_seeds"))
    for part in ("zero_shot", "plans", "rl"):
        record[part] = dict(earlier[part]) if earlier else {}
    if earlier is not None:
        record["resumed_from"] = earlier["provenance"]

    study = Study(config, record, save, progress)
    record["model"] = model_record(config.model)
    seeds = [seed + i for i in range(config.seeds)]
    rl_seeds = [seed + i for i in range(config.rl_seeds)]
    work = len(config.zero_shot_games) + len(config.games) * len(seeds) + len(rl_seeds)
    bar = tqdm(total=work, desc=NAME, disable=not progress)
    for name in config.zero_shot_games:
        if name not in record["zero_shot"]:
            record["zero_shot"][name] = zero_shot(study, name, seed)
            save()
        bar.update(1)
    for name in config.games:
        for run_seed in seeds:
            bar.set_postfix(game=name, seed=run_seed)
            plans_route_seed(study, name, run_seed)
            bar.update(1)
    for run_seed in rl_seeds:
        bar.set_postfix(game=config.rl_game, seed=run_seed, part="rl")
        rl_seed(study, run_seed)
        bar.update(1)
    bar.close()
    record["summary"], record["goals"], record["diagnostics"] = {}, {}, {}
    for name in config.games:
        entry = record["plans"][name]
        summary = summarize_game(entry, seeds)
        record["summary"][name] = summary
        record["goals"][name] = goal_checks(summary)
        record["diagnostics"][name] = diagnose(summary, record["goals"][name], entry, record["zero_shot"].get(name))
    record["goals_met"] = {name: any(check["met"] for check in goals.values())
                           for name, goals in record["goals"].items()}
    games_met = sorted({TEXTARENA_GAME_OF[name] for name, met in record["goals_met"].items()
                        if met and name in TEXTARENA_GAME_OF})
    record["goal"] = {"textarena_games_met": games_met, "required": GOAL_GAMES, "met": len(games_met) >= GOAL_GAMES}
    record["rl_summary"] = summarize_rl(record, rl_seeds)
    record["timing"] = timing(record)
    record["complete"] = True
    save()
    return path
