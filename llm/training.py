"""Training loops for LoRA-tuned causal LMs: offline preference training, online RL (RLOO / REINFORCE), best-of-n.

* :func:`train_preferences` trains the policy's LoRA adapter with **any** policy loss of the core's catalog
  (:data:`irl_bilevel.losses.PREFERENCE_LOSSES`), by name: paired losses on the core's
  :class:`~irl_bilevel.losses.batches.PreferenceBatch` (DPO ``sigmoid``, IPO, hinge, robust, SimPO, ORPO, CPO,
  aspect-weighted DPO, ...) and unpaired ones (KTO) on :class:`~irl_bilevel.losses.batches.UnpairedBatch` (each
  pair then gives a desirable and an undesirable example, as TRL's ``KTOTrainer`` converts paired data). Paired
  losses also train on pairs of multi-step episodes (:class:`EpisodePreferenceDataset`: log-probs summed over an
  episode's steps), e.g. DPO on an agent's preferred and rejected text episodes. The
  reference log-probs ``log π_ref(y|x)`` (``π_ref`` = the same model with its adapter disabled) are computed
  **once** per dataset before the first step, and not at all for reference-free losses. Minibatches are drawn
  from a seeded permutation (epochs), the optimizer is AdamW on the adapter's parameters, the gradient norm is
  clipped, and an evaluation callback runs at step 0, every ``eval_every`` steps and after the last step.
* :func:`train_rl` is online RL against any reward function ``(prompts, completions) -> rewards [N]`` (a gold
  reward, a learned text reward model, an aggregate of aspects): RLOO (Ahmadian et al. 2024) or REINFORCE with a
  moving-average baseline, both with a KL penalty to the reference (formulas in :func:`rloo_advantages` and
  :func:`train_rl`).
* :func:`best_of_n` samples ``n`` completions per prompt and keeps the one the reward function scores highest.
* :func:`save_trained_adapter` stores the adapter in peft's format (:func:`llm.models.save_adapter`) with the
  loop's config and metrics in its JSON.

Every optimizer step goes through the training engine (:class:`llm.accelerated.TrainingEngine`, on
``accelerate.Accelerator``): data parallelism over processes (``accelerate launch``, ``torchrun``), gradient
accumulation, learning-rate schedules with warm-up, autocast, clipping, logging to ``metrics.jsonl`` and TensorBoard,
and checkpoints that a rerun resumes from (the :class:`llm.accelerated.LoopSettings` fields of both configs). On one
process with the default settings a step is the plain ``backward``, ``clip_grad_norm_``, fused AdamW ``step``.

Every log-prob (policy and reference, all losses, RL) comes from :func:`llm.completion_logprobs.completion_logprobs`:
each pair's prompt once (chosen and rejected share a row), the LM head only on the positions that predict completion
tokens, float32 log-softmax; the optimizer is fused AdamW.

The model is kept in eval mode while it trains (no dropout in the built-in model; LoRA dropout, if set, is then
off too), so the log-probs that the loss sees are those that evaluation and the reference see.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from tqdm.auto import tqdm

from irl_bilevel.config import (
    NonNegativeFloat,
    NonNegativeInt,
    OneOf,
    PositiveFloat,
    PositiveInt,
    Range,
    Seed,
    check_value,
)
from irl_bilevel.losses import PREFERENCE_LOSSES, PreferenceBatch, UnpairedBatch, loss_metrics
from irl_bilevel.validation import ValidationError
from llm.accelerated import (
    RUN_FIELDS,
    MinibatchSampler,
    OptimizerSettings,
    TrainingEngine,
    fingerprint,
    parameter_digest,
)
from llm.completion_logprobs import completion_logprobs, fuse_activations
from llm.models import Completions, generate_completions, reference_mode, save_adapter

RewardFunction = Callable[[list[str], list[str]], torch.Tensor]
"""``reward(prompts, completions) -> rewards [N]``: one finite score per (prompt, completion text) pair."""

EvaluationCallback = Callable[[Any, int], dict[str, Any]]
"""``evaluate(policy, step) -> metrics``: called at step 0, every ``eval_every`` steps and after the last step (on the
main process only)."""


# ---------------------------------------------------------------------- datasets
def _token_lists(values: Sequence[Sequence[int]], field_name: str) -> list[list[int]]:
    try:
        lists = [[int(t) for t in tokens] for tokens in values]
    except (TypeError, ValueError) as error:
        raise ValidationError(f"{field_name}: expected a list of token-id lists") from error
    for row, tokens in enumerate(lists):
        if not tokens:
            raise ValidationError(f"{field_name}: sequence {row} is empty; expected at least one token")
    return lists


@dataclass(frozen=True)
class PreferenceDataset:
    """``P`` pairs ``(x, y_w, y_l)`` as token lists, for :func:`train_preferences`.

    ``extras``: per-pair tensors ``[P, ...]`` passed to the loss as keyword parameters, sliced with each
    minibatch (e.g. ``aspect_labels [P, K]`` for ``aspect_dpo``, ``other_chosen_rewards [P, K−1]`` for ``modpo``).
    :meth:`from_pairs` takes anything with ``prompt_ids``, ``chosen_ids``, ``rejected_ids`` lists, such as
    :class:`llm.sentiment.PreferencePairs`.
    """

    prompt_ids: list[list[int]]
    chosen_ids: list[list[int]]
    rejected_ids: list[list[int]]
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        prompts = _token_lists(self.prompt_ids, "prompt_ids")
        chosen = _token_lists(self.chosen_ids, "chosen_ids")
        rejected = _token_lists(self.rejected_ids, "rejected_ids")
        if not prompts:
            raise ValidationError("prompt_ids: the preference dataset is empty; expected at least one pair")
        if not len(prompts) == len(chosen) == len(rejected):
            raise ValidationError(f"chosen_ids: expected as many prompts, chosen and rejected completions, got "
                                  f"{len(prompts)}, {len(chosen)}, {len(rejected)}")
        extras = {}
        for name, value in dict(self.extras).items():
            tensor = torch.as_tensor(value)
            if tensor.dim() == 0 or tensor.shape[0] != len(prompts):
                raise ValidationError(f"extras.{name}: expected a tensor with one row per pair ({len(prompts)}), "
                                      f"got shape {list(tensor.shape)}")
            extras[name] = tensor
        object.__setattr__(self, "prompt_ids", prompts)
        object.__setattr__(self, "chosen_ids", chosen)
        object.__setattr__(self, "rejected_ids", rejected)
        object.__setattr__(self, "extras", extras)

    def __len__(self) -> int:
        return len(self.prompt_ids)

    @classmethod
    def from_pairs(cls, pairs: Any, extras: dict[str, torch.Tensor] | None = None) -> PreferenceDataset:
        for name in ("prompt_ids", "chosen_ids", "rejected_ids"):
            if not hasattr(pairs, name):
                raise ValidationError(f"pairs: expected an object with prompt_ids, chosen_ids and rejected_ids "
                                      f"(e.g. llm.sentiment.PreferencePairs), got {type(pairs).__name__}")
        return cls(pairs.prompt_ids, pairs.chosen_ids, pairs.rejected_ids, dict(extras or {}))

    def unpaired(self) -> UnpairedDataset:
        """Each pair as two single examples: ``(x, y_w)`` desirable, ``(x, y_l)`` undesirable (pair-major)."""
        prompts = [p for p in self.prompt_ids for _ in range(2)]
        completions = [c for pair in zip(self.chosen_ids, self.rejected_ids) for c in pair]
        return UnpairedDataset(prompts, completions, [i % 2 == 0 for i in range(len(completions))])


@dataclass(frozen=True)
class UnpairedDataset:
    """``N`` single completions ``(x, y)`` labelled desirable or not, for unpaired losses (KTO).

    KTO's KL baseline ``z0`` needs mismatched pairs: example ``i``'s prompt with example ``kl_partner(i)``'s
    completion, the next example whose prompt differs (fixed per dataset, so their reference log-probs are
    computed once as well).
    """

    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]
    desirable: list[bool]

    def __post_init__(self) -> None:
        prompts = _token_lists(self.prompt_ids, "prompt_ids")
        completions = _token_lists(self.completion_ids, "completion_ids")
        if not prompts:
            raise ValidationError("prompt_ids: the unpaired dataset is empty; expected at least one example")
        if not len(prompts) == len(completions) == len(self.desirable):
            raise ValidationError(f"desirable: expected as many prompts, completions and labels, got {len(prompts)}, "
                                  f"{len(completions)}, {len(self.desirable)}")
        object.__setattr__(self, "prompt_ids", prompts)
        object.__setattr__(self, "completion_ids", completions)
        object.__setattr__(self, "desirable", [bool(d) for d in self.desirable])

    def __len__(self) -> int:
        return len(self.prompt_ids)

    def kl_partners(self) -> list[int]:
        """For each example, the index of the next example (cyclically) whose prompt differs (itself if none)."""
        size = len(self)
        partners = []
        for i in range(size):
            partner = i
            for shift in range(1, size):
                j = (i + shift) % size
                if self.prompt_ids[j] != self.prompt_ids[i]:
                    partner = j
                    break
            partners.append(partner)
        return partners


@dataclass(frozen=True)
class EpisodePreferenceDataset:
    """``P`` pairs of multi-step episodes ``(σ_w, σ_l)``, each episode a list of steps ``(prompt_ids,
    completion_ids)``, for :func:`train_preferences` (trajectory preferences).

    The paired losses then read episode log-probabilities ``log π(σ) = Σ_t log π(y_t | x_t)`` (and the reference's)
    and token counts summed over the steps. For two episodes from the same start of a deterministic environment
    the transition terms of ``log P(σ)`` cancel in every log-ratio difference, so DPO's derivation (Rafailov et al.
    2023) holds on whole trajectories with the policy's per-step log-probabilities. A single-step episode is an
    ordinary ``(x, y)`` pair.
    """

    chosen: list[list[tuple[list[int], list[int]]]]
    rejected: list[list[tuple[list[int], list[int]]]]

    def __post_init__(self) -> None:
        if not self.chosen:
            raise ValidationError("chosen: the episode preference dataset is empty; expected at least one pair")
        if len(self.chosen) != len(self.rejected):
            raise ValidationError(f"rejected: expected one rejected episode per chosen one ({len(self.chosen)}), got "
                                  f"{len(self.rejected)}")
        for name in ("chosen", "rejected"):
            episodes = []
            for row, episode in enumerate(getattr(self, name)):
                if len(episode) == 0:
                    raise ValidationError(f"{name}: episode {row} has no step; expected at least one")
                prompts = _token_lists([step[0] for step in episode], f"{name}[{row}].prompt_ids")
                completions = _token_lists([step[1] for step in episode], f"{name}[{row}].completion_ids")
                episodes.append(list(zip(prompts, completions)))
            object.__setattr__(self, name, episodes)

    def __len__(self) -> int:
        return len(self.chosen)

# ---------------------------------------------------------------------- configs and results
def losses_on(*batch_types: type) -> list[str]:
    """The names of the catalog losses (:data:`irl_bilevel.losses.PREFERENCE_LOSSES`) whose batch is one of
    ``batch_types``, sorted."""
    return sorted(name for name, entry in PREFERENCE_LOSSES.items() if entry.batch_type in batch_types)


def loss_choice(batch_types: tuple[type, ...], refusal: str) -> OneOf:
    """The constraint on a config's ``loss``: a catalog loss on one of ``batch_types`` (read from the catalog when
    checked and listed in ``--help``, so a newly registered loss fits without other edits). A catalog loss on another
    batch is refused with ``refusal`` formatted with ``name``, ``batch`` (its batch type's name) and ``choices``."""

    def names() -> list[str]:
        return losses_on(*batch_types)

    def explain(name: Any) -> str | None:
        if name not in PREFERENCE_LOSSES:
            return None
        return refusal.format(name=name, batch=PREFERENCE_LOSSES[name].batch_type.__name__, choices=names())

    return OneOf(names, "preference loss", explain)


POLICY_LOSS = loss_choice((PreferenceBatch, UnpairedBatch),
                          "{name} is a reward-model loss on {batch}, not a policy loss; policy training takes losses "
                          "on PreferenceBatch or UnpairedBatch: {choices}")
"""The losses that train a policy: on a ``PreferenceBatch`` or an ``UnpairedBatch``."""


def policy_losses() -> list[str]:
    """The catalog losses that train a policy: on a ``PreferenceBatch`` or an ``UnpairedBatch``."""
    return POLICY_LOSS.names()


@dataclass(frozen=True)
class CatalogLossSettings(OptimizerSettings):
    """The optimizer settings (:class:`~llm.accelerated.OptimizerSettings`) and the catalog loss that a loop
    minimizes, shared by :class:`PreferenceTrainingConfig` and :class:`llm.reward_models.RewardModelTrainingConfig`:
    ``loss`` a name in :data:`irl_bilevel.losses.PREFERENCE_LOSSES` (each config redeclares it with the losses its
    loop takes and its default), ``beta`` its temperature, ``loss_params`` its other parameters, checked against the
    loss's signature (:meth:`validate`)."""

    loss: Annotated[str, OneOf(lambda: sorted(PREFERENCE_LOSSES), "preference loss")] = "sigmoid"
    """a loss of the catalog (each config narrows this to the losses its loop takes)"""
    beta: PositiveFloat | None = None
    """the loss's temperature β, if it has one; null: the loss's own default"""
    loss_params: dict[str, Any] = field(default_factory=dict)
    """the loss's other parameters (``--set loss_params.NAME=VALUE``), e.g. ``{"gamma": 0.5}`` for SimPO,
    ``{"margin": 0.5}`` for bradley_terry"""

    def validate(self) -> None:
        super().validate()
        PREFERENCE_LOSSES[self.loss].check_params(self.loss_params, "loss_params")


@dataclass(frozen=True)
class PreferenceTrainingConfig(CatalogLossSettings):
    """Settings of :func:`train_preferences` (and the training settings of ``irlb train-preferences``), the
    training engine's and the optimizer's included (inherited from :class:`CatalogLossSettings`).

    ``loss``: a name in :data:`irl_bilevel.losses.PREFERENCE_LOSSES` taking a ``PreferenceBatch`` or an
    ``UnpairedBatch``; ``beta``: its temperature (``None``: the loss's default; must stay ``None`` for ORPO);
    ``loss_params``: its other parameters (e.g. ``{"gamma": 0.5}`` for SimPO). ``steps`` optimizer steps on
    minibatches of ``batch_size`` pairs (unpaired losses: ``batch_size`` examples; the global batch, split over
    processes and micro-batches), AdamW with ``learning_rate`` (the schedule's peak) and ``weight_decay``, gradient
    norm clipped at ``max_grad_norm`` (``None``: no clipping). ``eval_every``: steps between evaluation callbacks
    (0: only at the start and the end).
    """

    loss: Annotated[str, POLICY_LOSS] = "sigmoid"
    """policy loss of the catalog (one on PreferenceBatch or UnpairedBatch): sigmoid is DPO"""
    batch_size: PositiveInt = 16
    """pairs per step (unpaired losses: examples per step)"""
    eval_every: NonNegativeInt = 0
    """steps between evaluation callbacks (0: only at the start and the end)"""
    seed: Seed = 0
    """seed of the minibatch order (and of the LoRA initialization in irlb's commands)"""
    chunk_size: PositiveInt = 64
    """sequences per forward pass when precomputing reference log-probs"""
    progress: bool = field(default=True, metadata={"cli": False})
    """show a progress bar (irlb's commands: --quiet)"""


@dataclass(frozen=True)
class RLConfig(OptimizerSettings):
    """Settings of :func:`train_rl` (and the training settings of ``irlb rloo``), the training engine's and the
    optimizer's included (inherited from :class:`~llm.accelerated.OptimizerSettings`).

    Each step samples ``samples_per_prompt`` (``k``) completions for each of ``prompts_per_step`` prompts (cycling
    through a seeded permutation of the prompts; the global batch, split over processes and micro-batches) with
    ``max_new_tokens`` and ``temperature`` (1: the policy's own distribution, which the KL penalty assumes).
    ``kl_coef`` is β of the penalty. ``algorithm``: ``"rloo"`` (needs ``k >= 2``) or ``"reinforce"`` (baseline: an
    exponential moving average of the penalized reward with decay ``baseline_decay``).
    """

    algorithm: Literal["rloo", "reinforce"] = "rloo"
    """RLOO (leave-one-out baseline over the k samples of a prompt) or REINFORCE with a moving-average baseline"""
    prompts_per_step: PositiveInt = 8
    """prompts per step"""
    samples_per_prompt: PositiveInt = 4
    """completions sampled per prompt (k; RLOO needs 2 or more)"""
    kl_coef: NonNegativeFloat = 0.05
    """β of the KL penalty to the base model"""
    max_new_tokens: PositiveInt = 24
    """tokens sampled per completion"""
    temperature: PositiveFloat = 1.0
    """sampling temperature (1: the policy's own distribution, which the KL penalty assumes)"""
    baseline_decay: Annotated[float, Range(0, 1, high_open=True)] = 0.9
    """REINFORCE: decay of the moving-average baseline"""
    eval_every: NonNegativeInt = 0
    """steps between evaluation callbacks (0: only at the start and the end)"""
    seed: Seed = 0
    """seed of the prompt order and the sampling (and of the LoRA initialization in irlb's commands)"""
    progress: bool = field(default=True, metadata={"cli": False})
    """show a progress bar (irlb's commands: --quiet)"""
    add_special_tokens: bool = field(default=True, metadata={"cli": False})
    """False for prompts already rendered by a chat template (irlb rloo sets it from the data)"""

    def validate(self) -> None:
        super().validate()
        if self.algorithm == "rloo" and self.samples_per_prompt < 2:
            raise ValidationError(f"samples_per_prompt: RLOO's leave-one-out baseline needs k >= 2 samples per "
                                  f"prompt, got {self.samples_per_prompt}")


@dataclass
class TrainingResult:
    """What a loop returns: per-step metrics, the evaluations ``{"step": s, **metrics}``, the wall time."""

    config: dict[str, Any]
    history: list[dict[str, Any]]
    evaluations: list[dict[str, Any]]
    seconds: float
    reference_forward_passes: int = 0  # chunks of reference log-probs computed (once per dataset) by this process
    reference_seconds: float = 0.0  # wall time of those passes
    processes: int = 1  # data-parallel processes that trained (accelerate launch / torchrun)
    resumed_from: int = 0  # the step of the checkpoint this run resumed from (0: it started fresh)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------- shared pieces
def trainable_parameters(policy) -> list[torch.nn.Parameter]:
    parameters = [p for p in policy.parameters() if p.requires_grad]
    if not parameters:
        raise ValidationError("policy: has no trainable parameters; wrap it with llm.models.with_lora first")
    return parameters


def adamw(parameters: list[torch.nn.Parameter], learning_rate: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over ``parameters``, as one fused kernel where torch has one (CPU and CUDA floating parameters): the
    same update as the per-parameter loop, without a kernel launch per tensor and operation."""
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in parameters)
    return torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=weight_decay, fused=fused)


def clipped_optimizer_step(loss: torch.Tensor, optimizer, parameters: list[torch.nn.Parameter],
                           max_grad_norm: float | None, what: str) -> float:
    """One plain optimizer step outside the training engine (plan distillation); returns the gradient norm (before
    clipping). A non-finite loss stops training."""
    if not torch.isfinite(loss.detach()):
        raise FloatingPointError(f"{what}: the loss became non-finite ({loss.item()}); lower the learning rate "
                                 f"or check the data")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(parameters, max_grad_norm if max_grad_norm is not None else math.inf)
    optimizer.step()
    return float(norm)


def _should_evaluate(step: int, steps: int, every: int) -> bool:
    return step == 0 or step == steps or (every > 0 and step % every == 0)


def _evaluate(evaluate: EvaluationCallback | None, engine: TrainingEngine, policy, step: int,
              evaluations: list[dict[str, Any]]) -> None:
    """The evaluation callback, on the main process only."""
    if evaluate is None or not engine.is_main:
        return
    with torch.no_grad():
        metrics = evaluate(policy, step)
    evaluations.append({"step": step, **metrics})


def _run_state(config, data: Any, parameters: list[torch.nn.Parameter]) -> dict[str, Any]:
    """What identifies a run for resuming it: its settings (less those that only change what it writes), a digest
    of its data and of its initial trainable parameters."""
    settings = {k: v for k, v in config.to_dict().items() if k not in RUN_FIELDS}
    return {"config": fingerprint(settings), "data": fingerprint(data), "parameters": parameter_digest(parameters)}


def _progress(engine: TrainingEngine, first: int, steps: int, description: str, show: bool):
    return tqdm(range(first, steps + 1), total=steps, initial=first - 1, desc=description,
                disable=not show or not engine.is_main, leave=False)


def _resume(checkpoint, sampler: MinibatchSampler) -> tuple[int, list[dict[str, Any]], list[dict[str, Any]], dict]:
    """``(first step, history, evaluations, loop state)`` from a checkpoint (step 1 and empty without one)."""
    if checkpoint is None:
        return 1, [], [], {}
    sampler.load_state_dict({key[len("loop.sampler."):]: value for key, value in checkpoint.tensors.items()
                             if key.startswith("loop.sampler.")})
    state = checkpoint.state["loop"]
    return checkpoint.step + 1, state["history"], state["evaluations"], state


def _save(engine: TrainingEngine, step: int, sampler: MinibatchSampler, history: list[dict[str, Any]],
          evaluations: list[dict[str, Any]], **extra: Any) -> None:
    if engine.checkpoint_due(step):
        engine.save(step, {f"sampler.{k}": v for k, v in sampler.state_dict().items()},
                    {"history": history, "evaluations": evaluations, **extra})


# ---------------------------------------------------------------------- offline preference training
def train_preferences(policy, data: PreferenceDataset | UnpairedDataset | EpisodePreferenceDataset | Any,
                      pad_token_id: int,
                      config: PreferenceTrainingConfig | None = None,
                      evaluate: EvaluationCallback | None = None) -> TrainingResult:
    """Train ``policy``'s adapter on preference data with the catalog loss ``config.loss``.

    ``data``: a :class:`PreferenceDataset`, anything :meth:`PreferenceDataset.from_pairs` takes, an
    :class:`EpisodePreferenceDataset` (paired losses on whole episodes), or (unpaired losses only) an
    :class:`UnpairedDataset`. Per step, the minibatch's sequences go through one forward pass with gradients (per
    process and micro-batch: :class:`llm.accelerated.TrainingEngine`); the reference log-probs are looked up from
    those precomputed before the first step (split over the processes). ``history[s]`` holds the loss's metrics on
    the whole step batch (:func:`irl_bilevel.losses.loss_metrics`: loss, reward accuracy, margin, ...), the gradient
    norm and the learning rate's schedule as logged. With ``config.output_dir`` the run logs and checkpoints there,
    and a rerun resumes from its last checkpoint. Python tanh-GELU modules of ``policy`` (GPT-2's) are swapped for
    the same function as one kernel first (:func:`llm.completion_logprobs.fuse_activations`).

    KTO's KL baseline ``z0`` is the mean over the micro-batch's examples on all processes (TRL's ``KTOTrainer``
    gathers it the same way).
    """
    config = config or PreferenceTrainingConfig()
    entry = PREFERENCE_LOSSES[config.loss]
    if isinstance(data, (PreferenceDataset, UnpairedDataset, EpisodePreferenceDataset)):
        dataset = data
    else:
        dataset = PreferenceDataset.from_pairs(data)
    unpaired = entry.batch_type is UnpairedBatch
    if unpaired and isinstance(dataset, EpisodePreferenceDataset):
        raise ValidationError(f"data: {config.loss} is unpaired; episode pairs train paired losses only")
    if unpaired and isinstance(dataset, PreferenceDataset):
        if dataset.extras:
            raise ValidationError(f"extras: {config.loss} is unpaired; per-pair extras cannot follow the examples")
        dataset = dataset.unpaired()
    if not unpaired and isinstance(dataset, UnpairedDataset):
        raise ValidationError(f"data: {config.loss} is a paired loss; it needs pairs (PreferenceDataset), got "
                              f"an UnpairedDataset")
    parameters = trainable_parameters(policy)
    optimizer = adamw(parameters, config.learning_rate, config.weight_decay)
    engine = TrainingEngine(policy, optimizer, config, total_steps=config.steps,
                            max_grad_norm=config.max_grad_norm, what=f"loss {config.loss}", loop="train_preferences")
    sampler = MinibatchSampler(len(dataset), config.batch_size, config.seed)
    engine.micro_batches(torch.arange(sampler.batch_size))  # a batch too small to split is an error before any work
    run_state = _run_state(config, dataset, parameters) if config.output_dir else {}
    fuse_activations(policy)  # before the reference pass, so that reference and policy compute the same function
    started = time.perf_counter()
    if unpaired:
        assert isinstance(dataset, UnpairedDataset)
        step_fn, reference_passes = _unpaired_steps(policy, dataset, pad_token_id, config, engine)
    elif isinstance(dataset, EpisodePreferenceDataset):
        step_fn, reference_passes = _episode_steps(policy, dataset, pad_token_id, config, entry.needs_reference,
                                                   engine)
    else:
        assert isinstance(dataset, PreferenceDataset)
        step_fn, reference_passes = _paired_steps(policy, dataset, pad_token_id, config, entry.needs_reference,
                                                  engine)
    reference_seconds = time.perf_counter() - started
    checkpoint = engine.start(run_state)
    first, history, evaluations, _ = _resume(checkpoint, sampler)
    if checkpoint is None:
        _evaluate(evaluate, engine, policy, 0, evaluations)
    bar = _progress(engine, first, config.steps, f"{config.loss} β={config.beta}", config.progress)
    for step in bar:
        rows = sampler.next()
        outputs, norm = engine.step(engine.micro_batches(rows), step_fn, len(rows))
        metrics = {"step": step, **loss_metrics(engine.whole_batch(outputs)), "grad_norm": norm}
        if engine.num_processes > 1:
            metrics["process_examples"] = engine.gather(torch.tensor([sum(len(o.losses) for o in outputs)])).tolist()
        history.append(metrics)
        engine.log(metrics, step)
        bar.set_postfix(loss=f"{metrics['loss']:.4f}", acc=f"{metrics['reward_accuracy']:.2f}")
        if _should_evaluate(step, config.steps, config.eval_every):
            _evaluate(evaluate, engine, policy, step, evaluations)
        _save(engine, step, sampler, history, evaluations)
    bar.close()
    engine.finish()
    return TrainingResult(config.to_dict(), history, evaluations, time.perf_counter() - started, reference_passes,
                          reference_seconds, engine.num_processes, checkpoint.step if checkpoint else 0)


Episode = list[tuple[list[int], list[int]]]


def _episode_logprobs(policy, episodes: list[Episode], pad_token_id: int, chunk_size: int | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log π(σ) [E], tokens [E])`` of ``episodes``: log-probs and token counts summed over each episode's steps
    (:func:`llm.completion_logprobs.completion_logprobs`: steps with equal prompts share them)."""
    steps = [step for episode in episodes for step in episode]
    summed, counts = completion_logprobs(policy, [s[0] for s in steps], [s[1] for s in steps], pad_token_id,
                                         chunk_size)
    if len(steps) == len(episodes):  # one step each: nothing to add up
        return summed, counts
    owner = torch.tensor([e for e, episode in enumerate(episodes) for _ in episode], device=summed.device)
    return (summed.new_zeros(len(episodes)).index_add(0, owner, summed),
            counts.new_zeros(len(episodes)).index_add(0, owner, counts))


def _reference_passes(items: int, chunk_size: int) -> int:
    return math.ceil(items / chunk_size)


def _paired_steps(policy, dataset: PreferenceDataset, pad_token_id: int, config: PreferenceTrainingConfig,
                  needs_reference: bool, engine: TrainingEngine):
    """The per-step function ``rows -> LossOutput`` of a paired loss, with reference log-probs precomputed: each
    pair is a pair of one-step episodes (:func:`_episode_steps`), its extras sliced with the minibatch."""
    episodes = EpisodePreferenceDataset([[(p, c)] for p, c in zip(dataset.prompt_ids, dataset.chosen_ids)],
                                        [[(p, r)] for p, r in zip(dataset.prompt_ids, dataset.rejected_ids)])
    return _episode_steps(policy, episodes, pad_token_id, config, needs_reference, engine, dataset.extras)


def _episode_steps(policy, dataset: EpisodePreferenceDataset, pad_token_id: int, config: PreferenceTrainingConfig,
                   needs_reference: bool, engine: TrainingEngine, extras: dict[str, torch.Tensor] | None = None):
    """The per-step function ``rows -> LossOutput`` of a paired loss on episode pairs: log-probs and token counts
    summed per episode, reference log-probs computed once (each process its share of the pairs, then gathered);
    ``extras [P, ...]`` go to the loss, sliced by pair.

    Episodes go in pair order (chosen ``i``, rejected ``i``, chosen ``i+1``, ...), so that a pair's steps with
    one prompt (a preference pair's chosen and rejected completion) share it in one row."""

    def interleaved(rows: list[int]) -> list[Episode]:
        return [episode for i in rows for episode in (dataset.chosen[i], dataset.rejected[i])]

    passes = 0
    reference: torch.Tensor | None = None  # [P, 2]: chosen, rejected
    if needs_reference:
        mine = engine.process_rows(len(dataset))
        with torch.no_grad(), reference_mode(policy):
            summed, _ = engine.run(_episode_logprobs, policy, interleaved(mine), pad_token_id, config.chunk_size)
        reference = engine.gather(summed.detach().reshape(-1, 2))
        passes = _reference_passes(sum(len(dataset.chosen[i]) + len(dataset.rejected[i]) for i in mine),
                                   config.chunk_size)

    def step(rows: torch.Tensor):
        summed, counts = _episode_logprobs(policy, interleaved(rows.tolist()), pad_token_id)
        summed, counts = summed.reshape(-1, 2), counts.reshape(-1, 2)
        ref_chosen = ref_rejected = None
        if reference is not None:
            pairs = reference[rows.to(reference.device)]
            ref_chosen, ref_rejected = pairs[:, 0], pairs[:, 1]
        preference = PreferenceBatch(summed[:, 0], summed[:, 1], ref_chosen, ref_rejected, counts[:, 0], counts[:, 1])
        params: dict[str, Any] = {**config.loss_params}
        params.update({name: tensor[rows.cpu()].to(summed.device) for name, tensor in (extras or {}).items()})
        return PREFERENCE_LOSSES[config.loss](preference, config.beta, **params)

    return step, passes


def _unpaired_steps(policy, dataset: UnpairedDataset, pad_token_id: int, config: PreferenceTrainingConfig,
                    engine: TrainingEngine):
    """The per-step function of an unpaired loss (KTO): examples plus their mismatched pairs for ``z0`` (each
    example's prompt with its KL partner's completion, :meth:`UnpairedDataset.kl_partners`), ``z0`` from the
    mismatched pairs of the micro-batch on every process."""
    partners = dataset.kl_partners()
    mismatched = [dataset.completion_ids[j] for j in partners]
    mine = engine.process_rows(len(dataset))
    prompts = [dataset.prompt_ids[i] for i in mine for _ in range(2)]  # example i, then its mismatched pair
    completions = [c for i in mine for c in (dataset.completion_ids[i], mismatched[i])]
    with torch.no_grad(), reference_mode(policy):
        summed, _ = engine.run(completion_logprobs, policy, prompts, completions, pad_token_id, config.chunk_size)
    reference = engine.gather(summed.detach().reshape(-1, 2))  # [N, 2]: the example, its mismatched pair
    passes = _reference_passes(len(completions), config.chunk_size)
    desirable = torch.tensor(dataset.desirable)

    def step(rows: torch.Tensor):
        index = rows.tolist()
        prompts = [dataset.prompt_ids[i] for i in index]
        summed, _ = completion_logprobs(policy, prompts, [dataset.completion_ids[i] for i in index], pad_token_id)
        with torch.no_grad():  # z0 is detached in KTO: no gradient through the mismatched pairs
            kl_summed, _ = completion_logprobs(policy, prompts, [mismatched[i] for i in index], pad_token_id)
        device = summed.device
        picked = reference[rows.to(reference.device)].to(device)
        unpaired = UnpairedBatch(summed, picked[:, 0], desirable[rows.cpu()].to(device),
                                 kl_policy_logps=engine.gather(kl_summed),
                                 kl_reference_logps=engine.gather(picked[:, 1]))
        return PREFERENCE_LOSSES[config.loss](unpaired, config.beta, **config.loss_params)

    return step, passes


# ---------------------------------------------------------------------- online RL
def rloo_advantages(rewards: torch.Tensor, samples_per_prompt: int) -> torch.Tensor:
    """RLOO's leave-one-out advantages ``[N]`` of rewards ``[N]`` listed prompt-major (``k`` per prompt).

    ``A_i = R_i − (1/(k−1)) Σ_{j≠i} R_j = k/(k−1) · (R_i − mean_j R_j)`` over the ``k`` samples of the same prompt
    (Ahmadian et al. 2024, "Back to Basics: Revisiting REINFORCE Style Optimization for Learning from Human
    Feedback in LLMs", Eq. 6; Kool et al. 2019). They sum to zero per prompt.
    """
    k = samples_per_prompt
    if k < 2:
        raise ValidationError(f"samples_per_prompt: the leave-one-out baseline needs k >= 2, got {k}")
    if rewards.dim() != 1 or rewards.shape[0] % k:
        raise ValidationError(f"rewards: expected shape [N] with N a multiple of k = {k}, got {list(rewards.shape)}")
    grouped = rewards.reshape(-1, k)
    baseline = (grouped.sum(dim=1, keepdim=True) - grouped) / (k - 1)
    return (grouped - baseline).reshape(-1)


@dataclass
class PolicyGradientOutput:
    """Per-sample terms of a KL-penalized REINFORCE step (:func:`policy_gradient_losses`), ``[N]`` each: the
    surrogate ``losses`` (with the graph), the detached ``logratio`` and ``penalized`` rewards and ``advantages``
    (float64), the reward and completion length of each sample."""

    losses: torch.Tensor
    logratio: torch.Tensor
    penalized: torch.Tensor
    advantages: torch.Tensor
    rewards: torch.Tensor
    tokens: torch.Tensor


def policy_gradient_losses(policy_logps: torch.Tensor, reference_logps: torch.Tensor, rewards: torch.Tensor,
                           kl_coef: float, advantages: Callable[[torch.Tensor], torch.Tensor],
                           tokens: torch.Tensor, owner: torch.Tensor | None = None) -> PolicyGradientOutput:
    """The RL step of every loop (:func:`train_rl`, :class:`llm.lora_inner.LoRAInnerSolver`): ``N`` samples (a
    completion, or an episode of several completions), their rewards ``[N]``, the policy's and the reference's
    log-probs ``[M]`` of the ``M`` completions and, when ``M != N``, ``owner [M]``: the sample of each completion.

    ``log π(y_i) = Σ_{m: owner(m) = i} log π(y_m|x_m)``; the penalized reward ``R_i = r_i − β Σ_m (log π − log
    π_ref)`` (detached, float64); ``A = advantages(R)`` (RLOO: :func:`rloo_advantages`; REINFORCE: ``R − b``); the
    surrogate ``ℓ_i = −A_i log π(y_i)``, whose mean's gradient estimates ``−∇ E_π[r − β log π/π_ref]``.
    ``tokens [N]``: completion tokens per sample (reported).
    """
    logratio = (policy_logps.detach() - reference_logps).double().cpu()
    sample_logps = policy_logps
    if owner is not None:
        count = len(rewards)
        logratio = torch.zeros(count, dtype=torch.float64).index_add_(0, owner.cpu(), logratio)
        sample_logps = policy_logps.new_zeros(count).index_add(0, owner.to(policy_logps.device), policy_logps)
    penalized = rewards.double().cpu() - kl_coef * logratio
    values = advantages(penalized)
    losses = -(values.to(sample_logps.device, sample_logps.dtype) * sample_logps)
    return PolicyGradientOutput(losses, logratio, penalized, values, rewards, tokens)


def _checked_rewards(values: Any, count: int, what: str = "reward_fn") -> torch.Tensor:
    try:
        rewards = torch.as_tensor(values).detach()
    except (TypeError, ValueError, RuntimeError) as error:
        raise ValidationError(f"{what}: expected a tensor of {count} rewards, got {type(values).__name__}") from error
    if rewards.dim() != 1 or rewards.shape[0] != count:
        raise ValidationError(f"{what}: expected rewards of shape [{count}] (one per completion), got "
                              f"{list(rewards.shape)}")
    if not rewards.is_floating_point():
        rewards = rewards.to(torch.get_default_dtype())
    if not bool(torch.isfinite(rewards).all()):
        bad = int((~torch.isfinite(rewards)).sum())
        raise ValidationError(f"{what}: returned {bad} non-finite reward(s) (NaN or inf); expected finite scores")
    return rewards


def train_rl(policy, tokenizer, prompts: Sequence[str], reward_fn: RewardFunction, config: RLConfig | None = None,
             evaluate: EvaluationCallback | None = None) -> TrainingResult:
    """Online RL of ``policy``'s adapter against ``reward_fn`` with a KL penalty to the reference.

    For completions ``y_1..y_k ~ π_θ(·|x)`` of each prompt, the penalized reward is
    ``R_i = r(x, y_i) − β (log π_θ(y_i|x) − log π_ref(y_i|x))`` (a sequence-level log-ratio, summed over the
    completion's tokens, detached; ``π_ref`` = the adapter-disabled model), and the loss is the REINFORCE
    surrogate ``−(1/N) Σ_i A_i log π_θ(y_i|x)`` (:func:`policy_gradient_losses`) whose gradient estimates
    ``−∇ E_π[r − β log π/π_ref]``:

    * ``rloo``: ``A_i = R_i − mean_{j≠i} R_j`` (:func:`rloo_advantages`; Ahmadian et al. 2024, "Back to Basics:
      Revisiting REINFORCE Style Optimization for Learning from Human Feedback in LLMs");
    * ``reinforce``: ``A_i = R_i − b`` with ``b`` an exponential moving average of past mean ``R`` (Williams 1992;
      the "REINFORCE with baseline" of the same paper), updated once per micro-batch with its mean over processes.

    Each process samples the completions of its share of the step's prompts (:class:`llm.accelerated.TrainingEngine`;
    a prompt's ``k`` samples stay together). ``history[s]``: mean reward, mean KL sample ``log π − log π_ref``, mean
    penalized reward, loss, gradient norm, mean completion length, over the whole step. Samples are seeded with
    ``config.seed``, the step and (beyond the first) the micro-batch and process. With ``config.output_dir`` the
    run logs and checkpoints there, and a rerun resumes from its last checkpoint.
    """
    config = config or RLConfig()
    prompts = list(prompts)
    if not prompts:
        raise ValidationError("prompts: is empty; expected at least one prompt for RL")
    parameters = trainable_parameters(policy)
    optimizer = adamw(parameters, config.learning_rate, config.weight_decay)
    engine = TrainingEngine(policy, optimizer, config, total_steps=config.steps,
                            max_grad_norm=config.max_grad_norm, what=f"RL ({config.algorithm})", loop="train_rl")
    sampler = MinibatchSampler(len(prompts), config.prompts_per_step, config.seed)
    engine.micro_batches(torch.arange(sampler.batch_size), "prompts_per_step")
    run_state = _run_state(config, prompts, parameters) if config.output_dir else {}
    fuse_activations(policy)
    pad = tokenizer.pad_token_id
    k = config.samples_per_prompt
    started = time.perf_counter()
    checkpoint = engine.start(run_state)
    first, history, evaluations, state = _resume(checkpoint, sampler)
    baseline: float | None = state.get("baseline")
    if checkpoint is None:
        _evaluate(evaluate, engine, policy, 0, evaluations)

    def advantages(penalized: torch.Tensor) -> torch.Tensor:
        nonlocal baseline
        if config.algorithm == "rloo":
            return rloo_advantages(penalized, k)
        mean = float(engine.gather(penalized).mean())
        baseline = mean if baseline is None else config.baseline_decay * baseline + (1 - config.baseline_decay) * mean
        return penalized - baseline

    def compute(piece: tuple[Completions, torch.Tensor]) -> PolicyGradientOutput:
        samples, rewards = piece
        summed, counts = completion_logprobs(policy, samples.prompt_ids, samples.completion_ids, pad)
        with torch.no_grad(), reference_mode(policy):
            reference, _ = completion_logprobs(policy, samples.prompt_ids, samples.completion_ids, pad)
        return policy_gradient_losses(summed, reference, rewards, config.kl_coef, advantages, counts)

    bar = _progress(engine, first, config.steps, f"{config.algorithm} β={config.kl_coef}", config.progress)
    for step in bar:
        parts = engine.micro_batches(sampler.next(), "prompts_per_step")
        pieces = []
        for number, part in enumerate(parts):
            index = engine.process_index * len(parts) + number  # 0 on one process without accumulation
            samples = generate_completions(policy, tokenizer, [prompts[i] for i in part.tolist()],
                                           config.max_new_tokens, temperature=config.temperature, num_samples=k,
                                           seed=config.seed * 1_000_003 + step + 1_000_000_000 * index,
                                           add_special_tokens=config.add_special_tokens)
            pieces.append((samples, _checked_rewards(reward_fn(samples.prompts, samples.texts), len(samples))))
        outputs, norm = engine.step(pieces, compute, sampler.batch_size * k)
        whole = {name: engine.gather(torch.cat([getattr(o, name).detach() for o in outputs]))
                 for name in ("rewards", "logratio", "penalized", "losses", "tokens")}
        metrics = {"step": step, "reward": float(whole["rewards"].mean()), "kl": float(whole["logratio"].mean()),
                   "penalized_reward": float(whole["penalized"].mean()), "loss": float(whole["losses"].mean()),
                   "grad_norm": norm, "completion_tokens": float(whole["tokens"].mean())}
        history.append(metrics)
        engine.log(metrics, step)
        bar.set_postfix(reward=f"{metrics['reward']:.3f}", kl=f"{metrics['kl']:.2f}")
        if _should_evaluate(step, config.steps, config.eval_every):
            _evaluate(evaluate, engine, policy, step, evaluations)
        _save(engine, step, sampler, history, evaluations, baseline=baseline)
    bar.close()
    engine.finish()
    return TrainingResult(config.to_dict(), history, evaluations, time.perf_counter() - started,
                          processes=engine.num_processes, resumed_from=checkpoint.step if checkpoint else 0)


# ---------------------------------------------------------------------- best-of-n
@dataclass(frozen=True)
class BestOfN:
    """For each prompt, the best of ``n`` samples: ``texts [P]``, ``rewards [P]``, ``index [P]`` (which sample
    in ``samples``, prompt-major), all samples' rewards ``all_rewards [P, n]`` and the samples themselves."""

    texts: list[str]
    rewards: torch.Tensor
    index: list[int]
    all_rewards: torch.Tensor
    samples: Completions

    @staticmethod
    def kl_bound(n: int) -> float:
        """``log n − (n−1)/n``: the analytic KL of best-of-n to the sampling policy (an upper bound; Stiennon et
        al. 2020, Beirami et al. 2024 "Theoretical guarantees on the best-of-n alignment policy")."""
        return math.log(n) - (n - 1) / n


def best_of_n(policy, tokenizer, prompts: Sequence[str], reward_fn: RewardFunction, n: int, *,
              max_new_tokens: int = 24, temperature: float = 1.0, seed: int = 0, batch_size: int = 64) -> BestOfN:
    """Sample ``n`` completions per prompt from ``policy`` (adapter as it is; wrap in
    :func:`llm.models.reference_mode` to sample the reference), score them with ``reward_fn`` and keep the best."""
    check_value(n, PositiveInt, "n")
    prompts = list(prompts)
    if not prompts:
        raise ValidationError("prompts: is empty; expected at least one prompt")
    samples = generate_completions(policy, tokenizer, prompts, max_new_tokens, temperature=temperature,
                                   num_samples=n, seed=seed, batch_size=batch_size)
    rewards = _checked_rewards(reward_fn(samples.prompts, samples.texts), len(samples)).reshape(len(prompts), n)
    best = rewards.argmax(dim=1)
    index = [p * n + int(b) for p, b in enumerate(best)]
    return BestOfN([samples.texts[i] for i in index], rewards.gather(1, best[:, None]).squeeze(1), index, rewards,
                   samples)


# ---------------------------------------------------------------------- saving
def save_trained_adapter(policy, folder: Path | str, result: TrainingResult,
                         extra: dict[str, Any] | None = None) -> Path:
    """Save the adapter in peft's format with ``irl_bilevel_adapter.json`` holding the loop's config, per-step
    history, evaluations and wall time (and ``extra``); ``PeftModel.from_pretrained`` loads the folder."""
    metadata = {"training": result.as_dict(), **(extra or {})}
    return save_adapter(policy, folder, metadata)
