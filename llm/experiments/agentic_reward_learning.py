"""Learned structured rewards for a LoRA policy LM acting in agentic text environments, and their transfer.

Environments (:data:`ENVS`): the project's Tower of Hanoi with 3 disks (26 starts, move cap 10) and steppath graph
navigation (3 tasks, move cap 6) from :mod:`llm.agentic`, and three games of TextArena played by TextArena's own code
through the same interface (:mod:`llm.agentic.textarena_games`): ``ta-hanoi`` (``TowerOfHanoi-v0``, one start, 7
moves, cap 14), ``ta-frozenlake`` (``FrozenLake-v0``, 8 boards, cap 10) and ``ta-lightsout`` (``LightsOut-v0`` at
3×3, 16 scrambles, cap 10). The policy is a LoRA adapter on the built-in GPT-2-shaped model whose corpus holds all
five environments' (prompt, legal move) text (``BuiltinRecipe(agentic_envs=ENVS, agentic_documents_per_env=N)``):
it knows the format and the legal moves, not which move is good (steppath's and FrozenLake's observations restate
the current room's doors / the position, without which a 2-layer model cannot find them; context
``AGENTIC_CONTEXT``). Per environment and seed:

(i) ``untrained``: a fresh adapter (LoRA's ``B = 0``: the base model itself) is evaluated.

(ii) ``learned``: a structured reward ``r_θ(s, a) = Σ_k θ_k φ_k(s, a)`` over the env's true aspects ``φ``
(success, invalid, malformed, progress, step; :class:`llm.agentic.export.AspectTableReward`, scales ``θ`` from
``initial_scales``) is learned by MaxEnt IRL from the optimal solver's demonstrations
(:func:`llm.lora_inner.demonstration_objective`, the sample gradient ``E_learner[∇r_θ] − E_expert[∇r_θ]``)
through :class:`irl_bilevel.solver.BilevelSolver` with :class:`~irl_bilevel.hypergradients.MaxEntHypergradient`
and the :class:`llm.lora_inner.LoRAInnerSolver` (``irl_updates_per_solve`` RLOO updates per hypergradient,
warm-started). The learned scales are then frozen and a **fresh** adapter is fine-tuned on them
(``transfer_updates`` RLOO updates): reward transfer. The IRL run's own inner policy is evaluated too
(``irl_inner``).

(iii) ``sparse``: a fresh adapter fine-tuned with the same budget on the success aspect alone
(``SPARSE_WEIGHTS``); (iv) ``true`` (optional reference): on the env's true structured reward (``DEFAULT_WEIGHTS``).

(v) From preferences (``with_preferences``), reward learning from preferences (Christiano et al. 2017) through the
same bilevel solver: outer loss = the Bradley-Terry likelihood of labelled episode pairs
(:class:`llm.agentic.preferences.EpisodePreferenceObjective`: same-start pairs of the inner policy's newest
episodes, labelled by the B-Pref oracle teacher on the true reward; ``query_budget`` queries, at most
``queries_per_refresh`` per outer step), direct hypergradient refreshed once per outer step and L-BFGS on the
aspect scales with ``(preference_l2/2)‖θ‖²`` (Bradley-Terry on separable pairs has no finite maximizer), inner =
a LoRA solver from its own seed. The labelled pairs then train fresh adapters with the same budget:
``pref_learned`` (RLOO on the learned structured reward), ``pref_scalar`` (RLOO on a *scalar* reward, a free
table over (state, action column) fitted by L-BFGS to the same pairs with the same loss and ``l2``: the learned
reward without the aspect structure) and ``dpo`` (``dpo_loss`` on the raw (chosen, rejected) episode pairs,
:func:`llm.training.train_preferences`, ``transfer_updates`` steps of ``dpo_batch_size`` pairs, AdamW at
``dpo_learning_rate``: the policy trained on the feedback without a reward model). ``pref_scalar`` and ``dpo`` run on
the environments of ``baseline_envs`` only (the project's two tasks, whose scalar tables stay small).

(vi) Reward-guided search (:func:`llm.agentic.search.reward_guided_search`, best-first on ``Σ r``, at most
``search_expansions`` expansions, no LM): from every start, with the true, sparse, demonstration-learned and (with
preferences) preference-learned structured and scalar rewards; success = a goal found within the move cap.

(viii) Plan, then imitate (``with_distillation``; because where no training episode reaches the goal within the RLOO
budget, no reward, the true one included, moves the policy):
each reward's search plans of (vi) train a fresh adapter by maximum likelihood (:mod:`llm.agentic.distill`,
``distill_steps`` AdamW steps on batches of ``distill_batch_size`` plan steps): ``learned_plans``, ``pref_plans``,
``sparse_plans``, ``true_plans``. The reward decides which plans the search finds within ``search_expansions``
expansions (a sparse reward's best-first search has no guidance until it stumbles on a goal).

(vii) Reward identifiability: the EPIC distance (:func:`irl_bilevel.metrics.epic_distance`, uniform coverage of
the exported MDP, ``discount``) between each learned reward's ``[S, A]`` table and the true structured reward's,
and the Pearson correlation of the learned aspect scales with the true weights.

All fine-tuning runs of a seed share the inner config's seed, so they see the same start sequence; all
evaluations of a seed share one sampling seed (common random numbers). Evaluation: every start,
``max(eval_episodes_per_start, ⌈eval_min_episodes / starts⌉)`` sampled episodes (temperature ``temperature``; the
minimum keeps one-start games such as ``ta-hanoi`` from being judged on 8 episodes); metrics of
:func:`llm.agentic.metrics.summarize` (success = goal reached with no invalid and no malformed move; invalid and
malformed rates over all actions; plan length over optimal on solved episodes). Across seeds: the IQM of each
condition's success rate with a 95% percentile-bootstrap CI (:func:`irl_bilevel.statistics.iqm_with_ci`), the mean,
standard deviation and variance (``ddof = 1``, stability); per game the goal checks (``goals``): a learned
structured reward beats the sparse reward when its CI lies wholly above the sparse reward's (non-overlapping CIs);
across games the IQM over all games' seeds with a stratified bootstrap CI
(:func:`irl_bilevel.statistics.stratified_iqm_with_ci`).

Resume: the result file is written after every (environment, seed); a rerun with the same scale and settings keeps
the finished ones (:func:`irl_bilevel.runs.unfinished_record`) and runs the rest.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch
from tqdm.auto import tqdm

from irl_bilevel.config import (
    Config,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    Probability,
    experiment_settings,
)
from irl_bilevel.hypergradients import BilevelProblem, DirectHypergradient, MaxEntHypergradient
from irl_bilevel.metrics import epic_distance
from irl_bilevel.rewards import RewardModel, TabularReward
from irl_bilevel.runs import resumable_record, write_json
from irl_bilevel.solver import BilevelSolver, OuterConfig
from irl_bilevel.statistics import iqm_with_ci, stratified_iqm_with_ci
from irl_bilevel.validation import ValidationError
from llm.agentic import SPARSE_WEIGHTS, FiniteTextEnv, summarize
from llm.agentic.distill import distill_plans, search_plans
from llm.agentic.export import AspectTableReward, build_tabular_mdp
from llm.agentic.preferences import EpisodePreferenceObjective
from llm.builtin_model import AGENTIC_ENVS, BuiltinRecipe, build_builtin_model, read_build_info
from llm.lora_inner import LoRAInnerConfig, LoRAInnerSolver, TextEpisode, demonstration_objective
from llm.models import LoraSettings, load_causal_lm, with_lora
from llm.training import PreferenceTrainingConfig, train_preferences

NAME = "agentic_reward_learning"
EnvName = Literal["hanoi-3", "steppath", "ta-hanoi", "ta-frozenlake", "ta-lightsout"]
ENVS: tuple[EnvName, ...] = get_args(EnvName)
CONDITIONS = ("untrained", "irl_inner", "learned", "sparse", "true", "pref_learned", "pref_scalar", "dpo",
              "learned_plans", "pref_plans", "sparse_plans", "true_plans")
TRAINED = ("learned", "sparse", "true")  # fresh adapters fine-tuned on a frozen reward, same budget
PREFERENCE_CONDITIONS = ("pref_learned", "pref_scalar", "dpo")  # fresh adapters trained from the labelled pairs
SEARCH_REWARDS = ("true", "sparse", "learned", "pref_learned", "pref_scalar")
LEARNED_STRUCTURED = ("learned", "pref_learned")  # the learned structured rewards the goals are about
# (viii) plan with a reward, then imitate: condition name -> the reward whose search plans the fresh adapter imitates
DISTILLED = {"learned_plans": "learned", "pref_plans": "pref_learned", "sparse_plans": "sparse", "true_plans": "true"}


@dataclass(frozen=True)
class AgenticPolicyConfig(Config):
    """What the agentic experiments share: the environments, the built-in model's corpus, the LoRA policy, its RLOO
    inner loop and the evaluation budget."""

    agentic_documents: PositiveInt
    """(prompt, legal move) documents per environment in the built-in model's corpus"""
    envs: tuple[EnvName, ...]
    """the text environments"""
    lora_r: PositiveInt
    """LoRA rank of the policy's adapters"""
    lora_alpha: PositiveFloat
    """LoRA scaling alpha of the policy's adapters"""
    starts_per_update: PositiveInt
    """start states per RLOO update"""
    episodes_per_start: PositiveInt
    """k of RLOO"""
    kl_coef: NonNegativeFloat
    """β of the KL penalty to the base model"""
    learning_rate: PositiveFloat
    """AdamW learning rate of the LoRA adapter"""
    max_new_tokens: PositiveInt
    """tokens sampled per move"""
    temperature: PositiveFloat
    """sampling temperature of the policy"""
    discount: Probability
    """γ of the inner returns (agentic_shaping: and of the potential term)"""
    eval_episodes_per_start: PositiveInt
    """evaluation episodes per start state"""
    eval_min_episodes: PositiveInt
    """at least this many evaluation episodes in all (more per start on few-start games)"""


@dataclass(frozen=True)
class AgenticRewardLearningConfig(AgenticPolicyConfig):
    """Settings of the agentic reward-learning experiment (protocol: the module docstring)."""

    model: str
    """builtin / builtin-tiny: the built-in recipe (or its tiny test version) with agentic text; or a local folder of
    any Hugging Face causal LM (its tokenizer must encode the environments' text)"""
    device: str
    """auto: cuda when a GPU is visible, else cpu; or cpu, cuda, cuda:1, ..."""
    dtype: Literal["auto", "float32", "bfloat16"]
    """auto: bfloat16 on a GPU that has it, else float32"""
    seeds: PositiveInt
    """seeds seed, seed + 1, ...: LoRA init, rollouts and evaluation sampling"""
    initial_scales: tuple[float, float, float, float, float]
    """θ at the start of IRL (order: the env's aspect names)"""
    outer_steps: PositiveInt
    """Adam steps on θ (one hypergradient each, plus one at the start)"""
    outer_lr: PositiveFloat
    """Adam step size on θ"""
    irl_updates_per_solve: PositiveInt
    """RLOO updates per inner solve of IRL"""
    transfer_updates: PositiveInt
    """RLOO updates of each fresh adapter on a frozen reward"""
    with_true_reward: bool
    """also fine-tune on the true structured reward (reference)"""
    with_preferences: bool
    """(v): reward learning from preferences, the scalar reward and DPO on the same pairs"""
    query_budget: PositiveInt
    """episode-pair queries of preference learning"""
    queries_per_refresh: PositiveInt
    """queries asked at each refresh of the preference objective"""
    preference_l2: NonNegativeFloat
    """L2 penalty on θ of preference learning"""
    dpo_loss: str
    """a paired policy loss of the catalog (irl_bilevel.losses.PREFERENCE_LOSSES)"""
    dpo_beta: PositiveFloat
    """β of the DPO loss"""
    dpo_batch_size: PositiveInt
    """episode pairs per DPO step"""
    dpo_learning_rate: PositiveFloat
    """AdamW learning rate of DPO"""
    baseline_envs: tuple[EnvName, ...]
    """where pref_scalar and dpo run (module docstring)"""
    search_expansions: PositiveInt
    """A* expansions per start when planning with a reward"""
    with_distillation: bool
    """(viii): fresh adapters fine-tuned on each reward's search plans"""
    distill_steps: PositiveInt
    """optimizer steps of each distillation"""
    distill_batch_size: PositiveInt
    """plan steps per distillation step"""

    def validate(self) -> None:
        if not self.envs:
            raise ValidationError(f"envs: expected at least one of {list(ENVS)}")
        if self.with_preferences:  # the loss is checked before the first run (the catalog's paired policy losses)
            try:
                PreferenceTrainingConfig(loss=self.dpo_loss, beta=self.dpo_beta, learning_rate=self.dpo_learning_rate)
            except ValidationError as error:
                raise ValidationError(f"dpo_{error}") from error


_COMMON: dict[str, Any] = {
    "device": "auto", "dtype": "auto",
    "envs": list(ENVS), "baseline_envs": ["hanoi-3", "steppath"], "lora_r": 8, "lora_alpha": 16.0, "kl_coef": 0.05,
    "max_new_tokens": 4,
    "temperature": 1.0, "discount": 0.9, "initial_scales": [0.0] * 5, "with_true_reward": True,
    "with_preferences": True, "preference_l2": 0.01, "dpo_loss": "sigmoid", "dpo_beta": 0.1, "search_expansions": 50,
    "dpo_learning_rate": 3e-4, "with_distillation": True, "distill_steps": 200, "distill_batch_size": 16,
}
SCALES: dict[str, dict[str, Any]] = {
    "tiny": {**_COMMON, "model": "builtin-tiny", "agentic_documents": 8, "envs": ["hanoi-3", "ta-frozenlake"],
             "baseline_envs": ["hanoi-3"], "seeds": 2, "lora_r": 2, "lora_alpha": 4.0, "starts_per_update": 2,
             "episodes_per_start": 2, "learning_rate": 1e-2, "max_new_tokens": 3, "outer_steps": 1, "outer_lr": 0.1,
             "irl_updates_per_solve": 1, "transfer_updates": 1, "with_true_reward": False,
             "eval_episodes_per_start": 1, "eval_min_episodes": 8, "query_budget": 4, "queries_per_refresh": 2,
             "dpo_batch_size": 2, "distill_steps": 2, "distill_batch_size": 2},
    "quick": {**_COMMON, "model": "builtin", "agentic_documents": 2000, "seeds": 5, "starts_per_update": 4,
              "episodes_per_start": 4, "learning_rate": 5e-3, "outer_steps": 8, "outer_lr": 0.2,
              "irl_updates_per_solve": 3, "transfer_updates": 60, "eval_episodes_per_start": 8,
              "eval_min_episodes": 128, "query_budget": 64, "queries_per_refresh": 8, "dpo_batch_size": 16},
    "full": {**_COMMON, "model": "builtin", "agentic_documents": 2000, "seeds": 10, "starts_per_update": 8,
             "episodes_per_start": 4, "learning_rate": 5e-3, "outer_steps": 30, "outer_lr": 0.1,
             "irl_updates_per_solve": 4, "transfer_updates": 150, "eval_episodes_per_start": 8,
             "eval_min_episodes": 256, "query_budget": 300, "queries_per_refresh": 16, "dpo_batch_size": 16},
}
CONFIG = AgenticRewardLearningConfig  # the typed settings; every SCALES entry validates into it (tests check)


AGENTIC_CONTEXT = 96
"""Context of the agentic models: the longest document, FrozenLake's, is 77 tokens (``[BOS]``, 75 prompt tokens, the
move, ``[EOS]``), over the review model's 64 (:meth:`BuiltinRecipe.agentic_documents` rejects documents that do not
fit)."""


def agentic_recipe(model: str, documents_per_env: int) -> BuiltinRecipe:
    """The built-in recipe (``builtin``) or its tiny test version with every environment of :data:`ENVS`'s text,
    ``documents_per_env`` (prompt, legal move) documents each."""
    if model == "builtin":
        return BuiltinRecipe(agentic_envs=ENVS, agentic_documents_per_env=documents_per_env,
                             n_positions=AGENTIC_CONTEXT)
    return BuiltinRecipe.tiny(agentic_envs=ENVS, n_positions=AGENTIC_CONTEXT,
                              agentic_documents_per_env=documents_per_env)


def _finite_or_none(value: Any) -> Any:
    """``nan`` (e.g. the plan-length ratio when nothing is solved) becomes ``None``: the file stays strict JSON."""
    return None if isinstance(value, float) and not np.isfinite(value) else value


def _inner_config(settings: AgenticRewardLearningConfig, updates: int, seed: int) -> LoRAInnerConfig:
    return LoRAInnerConfig(updates_per_solve=updates, starts_per_update=settings.starts_per_update,
                           episodes_per_start=settings.episodes_per_start, kl_coef=settings.kl_coef,
                           learning_rate=settings.learning_rate, max_new_tokens=settings.max_new_tokens,
                           temperature=settings.temperature, discount=settings.discount, seed=seed)


class _Run:
    """One environment: the model path, the env, its export and the settings; builds fresh LoRA solvers."""

    def __init__(self, env_name: str, model_path: Path, settings: AgenticRewardLearningConfig) -> None:
        self.env: FiniteTextEnv = AGENTIC_ENVS[env_name]()
        self.model_path, self.settings = model_path, settings
        self.export = build_tabular_mdp(self.env, settings.discount)
        self.lora = LoraSettings(r=settings.lora_r, alpha=settings.lora_alpha)

    def solver(self, updates: int, seed: int) -> LoRAInnerSolver:
        """A fresh adapter (initialised from ``seed``; ``B = 0``, so it starts as the base model)."""
        settings = self.settings
        model, tokenizer = load_causal_lm(self.model_path, None if settings.device == "auto" else settings.device,
                                          None if settings.dtype == "auto" else settings.dtype)
        return LoRAInnerSolver(with_lora(model, self.lora, seed=seed), tokenizer, self.env,
                               _inner_config(self.settings, updates, seed), export=self.export)

    def evaluate(self, solver: LoRAInnerSolver, seed: int) -> dict[str, Any]:
        """:func:`evaluation_rollouts` (``k`` sampled episodes from every start), sampling seeded by ``seed``."""
        k, episodes = evaluation_rollouts(solver, self.settings, seed)
        records = [episode.record for episode in episodes]
        summary = {key: _finite_or_none(value) for key, value in summarize(records).items()}
        per_start = [sum(r.solved for r in records[i * k:(i + 1) * k]) / k for i in range(len(self.env.starts))]
        return {**summary, "success_per_start": per_start,
                "examples": [{"start": r.start, "actions": r.action_texts[:6], "solved": r.solved}
                             for r in records[::max(1, len(records) // 3)][:3]]}

    def fixed_reward(self, scales: list[float]) -> AspectTableReward:
        return AspectTableReward(self.export, initial_scales=scales, learn_scales=False)

    def identifiability(self, scales: list[float]) -> dict[str, float | None]:
        """EPIC distance of the learned structured reward's ``[S, A]`` table to the true one, and the Pearson
        correlation of the learned scales with the true weights (``None`` for constant scales)."""
        table = self.export.aspect_table
        learned = table @ torch.as_tensor(scales, dtype=table.dtype)
        true = table @ torch.as_tensor(self.env.weights, dtype=table.dtype)
        correlation = np.corrcoef(scales, self.env.weights)[0, 1] if np.std(scales) > 0 else math.nan
        num_states, num_actions = table.shape[0], table.shape[1]
        return {"epic": epic_distance(learned, true, num_states, num_actions, self.settings.discount),
                "scale_correlation": _finite_or_none(float(correlation))}


def evaluation_episodes_per_start(per_start: int, min_episodes: int, num_starts: int) -> int:
    """``max(per_start, ⌈min_episodes / num_starts⌉)``: every start ``per_start`` times, ``min_episodes`` in all at
    least."""
    return max(per_start, -(-min_episodes // num_starts))


def evaluation_rollouts(solver: LoRAInnerSolver, settings: AgenticPolicyConfig,
                        seed: int) -> tuple[int, list[TextEpisode]]:
    """``(k, episodes)``: ``k`` (:func:`evaluation_episodes_per_start`) sampled episodes from every start of the
    solver's env, start by start (episodes ``i·k .. (i+1)·k − 1`` begin at start ``i``), sampling seeded by
    ``seed``; no gradients."""
    num_starts = len(solver.env.starts)
    k = evaluation_episodes_per_start(settings.eval_episodes_per_start, settings.eval_min_episodes, num_starts)
    with torch.no_grad():
        return k, solver.rollout([start for start in range(num_starts) for _ in range(k)], seed)


def _train_on(run: _Run, reward: RewardModel, seed: int, eval_seed: int) -> dict[str, Any]:
    """A fresh adapter fine-tuned on a frozen reward for ``transfer_updates`` updates, then evaluated."""
    started = time.perf_counter()
    solver = run.solver(run.settings.transfer_updates, seed)
    solver.solve(reward)
    result = run.evaluate(solver, eval_seed)
    result["training"] = solver.history
    result["seconds"] = time.perf_counter() - started
    return result


def _learn_reward(run: _Run, seed: int, eval_seed: int) -> tuple[list[float], dict[str, Any]]:
    """MaxEnt IRL of the aspect scales through the bilevel solver with the LoRA inner loop."""
    started = time.perf_counter()
    settings = run.settings
    inner = run.solver(settings.irl_updates_per_solve, seed + 50_000)
    reward = AspectTableReward(run.export, initial_scales=settings.initial_scales)
    objective = demonstration_objective(run.env, run.export, settings.discount)
    problem = BilevelProblem(reward, inner, objective)
    scales_history: list[list[float]] = []

    def metrics() -> dict[str, Any]:
        scales_history.append(reward.scales.detach().tolist())
        last = inner.history[-1]
        return {"scales": scales_history[-1], "inner_success_rate": last["success_rate"],
                "inner_malformed_rate": last["malformed_rate"], "inner_invalid_rate": last["invalid_rate"]}

    # No tolerance stop (a sampled objective is noisy): outer_steps, or an exactly zero gradient, as the results were
    # made.
    outer = OuterConfig(steps=settings.outer_steps, optimizer="adam", lr=settings.outer_lr, grad_tol=0.0,
                        loss_rtol=0.0)
    result = BilevelSolver(problem, MaxEntHypergradient(), outer,
                           metrics=metrics, progress=False).run(resume=False)
    scales = reward.scales.detach().tolist()
    evaluation = run.evaluate(inner, eval_seed)
    evaluation.update({"training": inner.history, "outer_history": result.history,
                       "inner_updates": inner.updates, "seconds": time.perf_counter() - started})
    return scales, evaluation


def _learn_from_preferences(run: _Run, seed: int) -> tuple[AspectTableReward, EpisodePreferenceObjective,
                                                             dict[str, Any]]:
    """Reward learning from preferences of the aspect scales through the bilevel solver (module docstring, (v))."""
    started = time.perf_counter()
    settings = run.settings
    inner = run.solver(settings.irl_updates_per_solve, seed + 60_000)
    reward = AspectTableReward(run.export, initial_scales=settings.initial_scales)
    objective = EpisodePreferenceObjective(reward, run.env, run.export, settings.query_budget,
                                           settings.queries_per_refresh, seed=seed + 70_000)
    problem = BilevelProblem(reward, inner, objective)

    def metrics() -> dict[str, Any]:
        last = inner.history[-1]
        return {"scales": reward.scales.detach().tolist(), **objective.stats(),
                "inner_success_rate": last["success_rate"], "inner_invalid_rate": last["invalid_rate"]}

    outer = OuterConfig(steps=settings.outer_steps, optimizer="lbfgs", lr=1.0, l2=settings.preference_l2,
                        checkpoint_every=settings.outer_steps, grad_tol=0.0, loss_rtol=0.0)
    result = BilevelSolver(problem, DirectHypergradient(refresh="every_step"), outer, metrics=metrics,
                           progress=False).run(resume=False)
    return reward, objective, {"outer_history": result.history, "inner_updates": inner.updates,
                               "training": inner.history, **objective.stats(),
                               "seconds": time.perf_counter() - started}


def _fit_scalar_reward(run: _Run, objective: EpisodePreferenceObjective) -> TabularReward:
    """A free scalar table ``r(s, a)`` over the featurization, fitted by L-BFGS to the labelled pairs."""
    reward = TabularReward(run.export.mdp.num_states, run.export.num_action_inputs)
    optimizer = torch.optim.LBFGS(reward.parameters(), lr=1.0, max_iter=25 * run.settings.outer_steps,
                                  history_size=20, line_search_fn="strong_wolfe")
    l2 = run.settings.preference_l2

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = objective.reward_loss(reward) + 0.5 * l2 * reward.table.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return reward.requires_grad_(False)


def _train_dpo(run: _Run, objective: EpisodePreferenceObjective, seed: int, eval_seed: int) -> dict[str, Any]:
    """A fresh adapter trained with ``dpo_loss`` on the labelled (chosen, rejected) episode pairs (left as it is,
    ``training`` empty, when every query tied: there is no pair to train on)."""
    started = time.perf_counter()
    settings = run.settings
    solver = run.solver(1, seed)
    config = PreferenceTrainingConfig(loss=settings.dpo_loss, beta=settings.dpo_beta,
                                      steps=settings.transfer_updates, batch_size=settings.dpo_batch_size,
                                      learning_rate=settings.dpo_learning_rate, seed=seed, progress=False)
    history: list[dict[str, Any]] = []
    if objective.chosen:
        history = train_preferences(solver.model, objective.episode_dataset(), solver.tokenizer.pad_token_id,
                                    config).history
    result = run.evaluate(solver, eval_seed)
    result.update({"training": history, "pairs": len(objective.chosen), "seconds": time.perf_counter() - started})
    return result


def _search(run: _Run, reward: RewardModel) -> tuple[dict[str, Any], list[tuple[Any, list[Any]]]]:
    """Reward-guided best-first search from every start with ``reward`` (module docstring, (vi)): its statistics and
    the plans that reach the goal within the move cap."""
    return search_plans(run.env, run.export, reward, run.settings.search_expansions)


def _distill(run: _Run, plans: list[tuple[Any, list[Any]]], seed: int, eval_seed: int) -> dict[str, Any]:
    """A fresh adapter fine-tuned on a reward's search plans (:mod:`llm.agentic.distill`), then evaluated."""
    started = time.perf_counter()
    solver = run.solver(1, seed)
    history = distill_plans(solver, plans, run.settings.distill_steps, run.settings.distill_batch_size, seed)
    result = run.evaluate(solver, eval_seed)
    result.update({"training": history, "plans": len(plans), "seconds": time.perf_counter() - started})
    return result


def _across_seeds(per_seed: list[dict[str, Any]], conditions: list[str]) -> dict[str, Any]:
    """Per condition: IQM + 95% bootstrap CI, mean, std and variance (ddof = 1) across seeds of the success rate; the
    means of the other metrics; the comparisons in the mean and on every seed."""
    summary: dict[str, Any] = {}
    for condition in conditions:
        rows = [seed_result["conditions"][condition] for seed_result in per_seed]
        success = np.asarray([row["success_rate"] for row in rows])
        variance = float(success.var(ddof=1)) if len(success) > 1 else 0.0
        entry: dict[str, Any] = {"success_per_seed": success.tolist(), "success_mean": float(success.mean()),
                                 "success_iqm": iqm_with_ci(success), "success_variance": variance,
                                 "success_std": variance**0.5}
        for metric in ("goal_rate", "invalid_action_rate", "malformed_rate", "plan_length_ratio"):
            values = np.asarray([np.nan if row[metric] is None else row[metric] for row in rows], dtype=float)
            entry[f"{metric}_per_seed"] = [_finite_or_none(v) for v in values.tolist()]
            entry[f"{metric}_mean"] = float(np.nanmean(values)) if np.isfinite(values).any() else None
        summary[condition] = entry
    comparisons: dict[str, Any] = {}
    pairs = [("learned", other) for other in ("untrained", "sparse", "true")]
    pairs += [("pref_learned", other) for other in ("untrained", "sparse", "true", "pref_scalar", "dpo")]
    for name, other in pairs:
        if name in summary and other in summary:
            values = np.asarray(summary[name]["success_per_seed"])
            others = np.asarray(summary[other]["success_per_seed"])
            comparisons[f"{name}_minus_{other}_mean"] = float((values - others).mean())
            comparisons[f"{name}_beats_{other}_in_mean"] = bool(values.mean() > others.mean())
            comparisons[f"{name}_beats_{other}_every_seed"] = bool((values > others).all())
    summary["comparisons"] = comparisons
    identifiability: dict[str, Any] = {}
    for key, name in (("learned_identifiability", "learned"), ("preference_identifiability", "pref_learned")):
        rows = [seed_result[key] for seed_result in per_seed if key in seed_result]
        if rows:
            identifiability[name] = {
                "epic_per_seed": [row["epic"] for row in rows], "epic": iqm_with_ci([row["epic"] for row in rows]),
                "scale_correlation_per_seed": [row["scale_correlation"] for row in rows]}
    summary["identifiability"] = identifiability
    return summary


GOAL_PAIRS = (("learned", "sparse"), ("pref_learned", "sparse"), ("learned_plans", "sparse_plans"),
              ("pref_plans", "sparse_plans"))
"""(learned structured reward, sparse reward) pairs of the goal: RL on each reward, and search plans distilled."""


def goal_checks(summary: dict[str, Any]) -> dict[str, Any]:
    """Per pair of :data:`GOAL_PAIRS`: does the learned structured reward beat the sparse one with non-overlapping 95%
    CIs of the success IQM (its CI's low end above the sparse CI's high end)? Pairs with a missing condition are left
    out."""
    checks: dict[str, Any] = {}
    for name, other in GOAL_PAIRS:
        learned = summary.get(name, {}).get("success_iqm")
        sparse = summary.get(other, {}).get("success_iqm")
        if learned is None or sparse is None:
            continue
        checks[f"{name}_beats_{other}"] = {
            "met": bool(learned["low"] > sparse["high"]), "learned": learned, "sparse": sparse,
            "iqm_difference": learned["iqm"] - sparse["iqm"]}
    return checks


def _search_across_seeds(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean over seeds of each search reward's success rate, plan-length ratio and expansions."""
    summary: dict[str, Any] = {}
    for name in per_seed[0]["search"]:
        rows = [seed_result["search"][name] for seed_result in per_seed]
        ratios = [row["plan_length_ratio"] for row in rows if row["plan_length_ratio"] is not None]
        summary[name] = {"success_per_seed": [row["success_rate"] for row in rows],
                         "success_mean": float(np.mean([row["success_rate"] for row in rows])),
                         "plan_length_ratio_mean": float(np.mean(ratios)) if ratios else None,
                         "expansions_mean": float(np.mean([row["expansions_mean"] for row in rows]))}
    return summary


def _run_seed(run_: _Run, run_seed: int, with_baselines: bool) -> dict[str, Any]:
    """Every condition of one environment and seed (module docstring)."""
    settings = run_.settings
    seed_started = time.perf_counter()
    torch.manual_seed(run_seed)
    eval_seed = run_seed * 1_000 + 17
    results: dict[str, Any] = {"untrained": run_.evaluate(run_.solver(1, run_seed), eval_seed)}
    scales, results["irl_inner"] = _learn_reward(run_, run_seed, eval_seed)
    rewards: dict[str, RewardModel] = {
        "learned": run_.fixed_reward(scales), "sparse": run_.fixed_reward(list(SPARSE_WEIGHTS)),
        "true": run_.fixed_reward(run_.env.weights.tolist())}
    for condition in TRAINED:
        if condition != "true" or settings.with_true_reward:
            results[condition] = _train_on(run_, rewards[condition], run_seed, eval_seed)
    seed_record: dict[str, Any] = {"seed": run_seed, "learned_scales": scales,
                                   "aspect_names": list(run_.env.aspect_names),
                                   "learned_identifiability": run_.identifiability(scales)}
    if settings.with_preferences:
        learned, objective, seed_record["preference_learning"] = _learn_from_preferences(run_, run_seed)
        preference_scales = learned.scales.detach().tolist()
        rewards["pref_learned"] = run_.fixed_reward(preference_scales)
        seed_record["preference_scales"] = preference_scales
        seed_record["preference_identifiability"] = run_.identifiability(preference_scales)
        results["pref_learned"] = _train_on(run_, rewards["pref_learned"], run_seed, eval_seed)
        if with_baselines:
            rewards["pref_scalar"] = _fit_scalar_reward(run_, objective)
            results["pref_scalar"] = _train_on(run_, rewards["pref_scalar"], run_seed, eval_seed)
            results["dpo"] = _train_dpo(run_, objective, run_seed, eval_seed)
    searched = {name: _search(run_, rewards[name]) for name in SEARCH_REWARDS if name in rewards}
    seed_record["search"] = {name: stats for name, (stats, _) in searched.items()}
    if settings.with_distillation:
        for condition, reward_name in DISTILLED.items():
            if reward_name in searched and (reward_name != "true" or settings.with_true_reward):
                results[condition] = _distill(run_, searched[reward_name][1], run_seed, eval_seed)
    return {**seed_record, "conditions": results, "seconds": time.perf_counter() - seed_started}


def _env_conditions(settings: AgenticRewardLearningConfig, env_name: str) -> list[str]:
    conditions = ["untrained", "irl_inner", "learned", "sparse"] + (["true"] if settings.with_true_reward else [])
    if settings.with_preferences:
        conditions.append("pref_learned")
        if env_name in settings.baseline_envs:
            conditions += ["pref_scalar", "dpo"]
    if settings.with_distillation:
        conditions += [name for name, reward in DISTILLED.items() if reward in conditions]
    return conditions


def _across_games(envs: dict[str, Any]) -> dict[str, Any]:
    """Per condition present on every game: the IQM over all games' seeds with a stratified bootstrap CI."""
    names = [c for c in CONDITIONS if all(c in entry["summary"] for entry in envs.values())]
    return {name: stratified_iqm_with_ci({env: entry["summary"][name]["success_per_seed"]
                                          for env, entry in envs.items()}) for name in names}


def agentic_model(model: str, agentic_documents: int, started: float) -> tuple[Path, dict[str, Any]]:
    """The policy's base model of an agentic experiment and its record: the built-in recipe with the environments'
    documents (``model`` ``builtin`` or ``builtin-tiny``; built once, then cached), or the user's local model folder;
    ``started`` times the loading."""
    if model in ("builtin", "builtin-tiny"):
        model_path = build_builtin_model(agentic_recipe(model, agentic_documents), progress=False)
        info = read_build_info(model_path)
        return model_path, {"name": model, "key": info["key"], "held_out_loss": info["held_out_loss"],
                            "num_parameters": info["num_parameters"], "build_seconds": info.get("build_seconds"),
                            "load_seconds": time.perf_counter() - started}
    model_path = Path(model).expanduser()  # the user's model: a local folder that load_causal_lm reads
    if not (model_path / "config.json").is_file():
        raise ValidationError(f"model: expected 'builtin', 'builtin-tiny' or a local model folder with a "
                              f"config.json, got {model!r}")
    return model_path, {"name": model, "path": str(model_path.resolve()), "load_seconds": time.perf_counter() - started}


def run(scale: str, results_dir: Path, seed: int = 0, progress: bool = True,
        config: AgenticRewardLearningConfig | None = None) -> Path:
    """Run at ``scale`` (``tiny``, ``quick``, ``full``); writes ``results_dir/agentic_reward_learning.json``, resuming
    an interrupted run of the same settings (module docstring)."""
    settings = experiment_settings(AgenticRewardLearningConfig, SCALES, scale, NAME, config)
    path = Path(results_dir) / f"{NAME}.json"
    started = time.perf_counter()
    record, previous = resumable_record(path, NAME, scale, settings.to_dict(), seed)
    model_path, record["model"] = agentic_model(settings.model, settings.agentic_documents, started)
    seeds = [seed + i for i in range(settings.seeds)]
    bar = tqdm(total=len(settings.envs) * len(seeds), desc=NAME, disable=not progress)
    record["envs"] = {}
    for env_name in settings.envs:
        run_ = _Run(env_name, model_path, settings)
        conditions = _env_conditions(settings, env_name)
        done = {row["seed"]: row for row in (previous or {}).get("envs", {}).get(env_name, {}).get("seeds", [])}
        per_seed: list[dict[str, Any]] = []
        for run_seed in seeds:
            per_seed.append(done[run_seed] if run_seed in done else
                            _run_seed(run_, run_seed, env_name in settings.baseline_envs))
            record["envs"][env_name] = {
                "num_starts": len(run_.env.starts), "move_cap": run_.env.max_steps,
                "eval_episodes_per_start": evaluation_episodes_per_start(
                    settings.eval_episodes_per_start, settings.eval_min_episodes, len(run_.env.starts)),
                "optimal_lengths": [run_.env.distance_to_goal(s) for s in run_.env.starts],
                "conditions": conditions, "seeds": per_seed, "summary": _across_seeds(per_seed, conditions),
                "search": _search_across_seeds(per_seed),
                "seconds": float(sum(row["seconds"] for row in per_seed)),
            }
            record["envs"][env_name]["goals"] = goal_checks(record["envs"][env_name]["summary"])
            # Written after every seed (``complete`` false until the end): an interrupted run resumes from here.
            write_json(path, {**record, "complete": False, "seconds": time.perf_counter() - started})
            bar.update(1)
            conditions_of_seed = per_seed[-1]["conditions"]
            bar.set_postfix(env=env_name, learned=f"{conditions_of_seed['learned']['success_rate']:.2f}",
                            sparse=f"{conditions_of_seed['sparse']['success_rate']:.2f}")
    bar.close()
    record["acceptance"] = {
        env_name: {f"{name}_beats_{other}": entry["summary"]["comparisons"][f"{name}_beats_{other}_in_mean"]
                   for name in LEARNED_STRUCTURED for other in ("untrained", "sparse")
                   if f"{name}_beats_{other}_in_mean" in entry["summary"]["comparisons"]}
        for env_name, entry in record["envs"].items()}
    record["goals"] = {env_name: entry["goals"] for env_name, entry in record["envs"].items()}
    record["across_games"] = _across_games(record["envs"])
    record["complete"] = True
    record["seconds"] = time.perf_counter() - started
    write_json(path, record)
    return path
