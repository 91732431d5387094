"""The training engine of every LM loop (:mod:`llm.training`, :mod:`llm.lora_inner`, :mod:`llm.reward_models`):
optimizer steps through :class:`accelerate.Accelerator`.

:class:`TrainingEngine` owns one model, its optimizer and a learning-rate schedule and takes optimizer steps:

* **Data parallelism** (``accelerate launch`` or ``torchrun``: DDP over NCCL on GPUs, gloo on CPUs; FSDP and
  DeepSpeed through ``accelerate config``): every process draws the same global minibatch of ``B`` examples
  (the same seeded sampler) and trains on its share (:func:`process_shares`); the loop's per-example losses
  ``ℓ_i`` are scaled so that the synchronized gradient is that of ``(1/B) Σ_{i ∈ batch} ℓ_i``, the loss of one
  process on the whole batch.
* **Gradient accumulation**: the global batch is split into ``gradient_accumulation_steps`` micro-batches (each
  one forward and backward pass; gradients synchronized on the last), the same mean loss.
* **Schedules**: any warm-up schedule of :func:`transformers.get_scheduler` (:data:`SCHEDULERS`), stepped once per
  optimizer step. **Autocast**: ``mixed_precision`` ``bf16`` / ``fp16`` (with gradient scaling) on a GPU.
  **Clipping**: the global gradient norm (``accelerator.clip_grad_norm_``).
* **Logging** every ``log_every`` steps to ``output_dir/metrics.jsonl`` and TensorBoard (``output_dir/tensorboard``),
  by the main process only.
* **Checkpoints** every ``checkpoint_every`` steps into ``output_dir/checkpoints`` (:mod:`llm.checkpoints`): the
  trainable parameters, optimizer, schedule, gradient scaler, random-generator states and the loop's own state
  (its sampler's position, history); a rerun of the same loop resumes from the last one.

Every forward pass of a loop runs inside the prepared module's forward (:meth:`TrainingEngine.run`): the loops compute
log-probs by calling the model's body and head themselves (:mod:`llm.completion_logprobs`), and a module wrapper
(:class:`_Forward`) is what DDP, FSDP, DeepSpeed and autocast see.

On one process without accumulation, with the constant schedule and no mixed precision, a step is exactly
``zero_grad; loss.mean().backward(); clip_grad_norm_; optimizer.step()`` on the caller's optimizer.

Every process must call :meth:`TrainingEngine.run`, :meth:`TrainingEngine.step` and :meth:`TrainingEngine.gather`
equally often and in the same order (they synchronize). Checkpoints hold the whole optimizer state: they are
refused under FSDP and DeepSpeed, which shard it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import numpy as np
import torch
from torch import nn

from irl_bilevel.config import Config, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from irl_bilevel.losses import LossOutput
from irl_bilevel.validation import ValidationError
from llm import checkpoints

SchedulerName = Literal["constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial",
                        "inverse_sqrt"]
SCHEDULERS: tuple[str, ...] = SchedulerName.__args__  # type: ignore[attr-defined]
"""The schedules of :func:`transformers.get_scheduler` that need no settings beyond warm-up and length."""
MixedPrecision = Literal["no", "bf16", "fp16"]
RUN_FIELDS = ("progress", "output_dir", "log_every", "checkpoint_every")
"""Settings that change what a run writes or shows, not what it computes: a run may resume with other values."""


@dataclass(frozen=True)
class LoopSettings(Config):
    """Settings of the training engine that every LM training loop shares (:class:`TrainingEngine`); the loops'
    configs (:class:`llm.training.PreferenceTrainingConfig`, :class:`llm.training.RLConfig`,
    :class:`llm.reward_models.RewardModelTrainingConfig`) inherit them through :class:`OptimizerSettings`, so the
    training commands' flags are generated from these fields too."""

    gradient_accumulation_steps: PositiveInt = 1
    """micro-batches per optimizer step (the step's batch is split into them; the same mean loss)"""
    lr_scheduler: SchedulerName = "constant"
    """learning-rate schedule over the steps (transformers.get_scheduler); the learning rate is its peak"""
    warmup_steps: NonNegativeInt = 0
    """linear warm-up steps of the schedule ("constant" has none: use "constant_with_warmup")"""
    mixed_precision: MixedPrecision | None = None
    """autocast of the forward passes (bf16, fp16: on a GPU); null: accelerate's setting (accelerate launch
    --mixed_precision), else no"""
    output_dir: str | None = field(default=None, metadata={"cli": False})
    """metrics.jsonl, tensorboard/ and checkpoints/ go here (null: nothing is written; irlb's commands: --out)"""
    log_every: NonNegativeInt = 1
    """steps between rows of metrics.jsonl and TensorBoard points (0: none; written only with an output folder)"""
    checkpoint_every: NonNegativeInt = 50
    """steps between checkpoints in the output folder (0: none); a rerun of the same run resumes from the last one"""

    def validate(self) -> None:
        if self.lr_scheduler == "constant" and self.warmup_steps > 0:
            raise ValidationError("warmup_steps: the 'constant' schedule has no warm-up; use lr_scheduler="
                                  "'constant_with_warmup' (or another schedule) with warm-up steps")
        if self.output_dir == "":
            raise ValidationError("output_dir: expected a folder path or null, got ''")


@dataclass(frozen=True)
class OptimizerSettings(LoopSettings):
    """The engine's settings and the optimizer's, which every LM training loop's config shares
    (:class:`llm.training.PreferenceTrainingConfig`, :class:`llm.training.RLConfig`,
    :class:`llm.reward_models.RewardModelTrainingConfig` inherit them): ``steps`` AdamW steps at peak learning rate
    ``learning_rate`` (the schedule's) with ``weight_decay``, the global gradient norm clipped at ``max_grad_norm``
    (``None``: no clipping). A config that needs another default redeclares only that field (it keeps its place and
    its docstring here)."""

    steps: PositiveInt = 100
    """optimizer steps"""
    learning_rate: PositiveFloat = 1e-3
    """AdamW learning rate"""
    weight_decay: NonNegativeFloat = 0.0
    """AdamW weight decay"""
    max_grad_norm: PositiveFloat | None = 1.0
    """clip the gradient norm at this (null: no clipping)"""


# ---------------------------------------------------------------------- data
class MinibatchSampler:
    """Minibatches of row indices of a dataset of ``size`` rows: consecutive slices of ``min(batch_size, size)`` rows
    of seeded permutations, a fresh permutation whenever the current one has too few rows left (epochs).

    Its state (generator, permutation, position) is part of a checkpoint: a resumed run draws the same batches.
    """

    def __init__(self, size: int, batch_size: int, seed: int) -> None:
        self.size = size
        self.batch_size = min(batch_size, size)
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.empty(0, dtype=torch.long)
        self.position = 0

    def next(self) -> torch.Tensor:
        """The next minibatch's row indices ``[min(batch_size, size)]``."""
        if self.order.numel() == 0 or self.position + self.batch_size > self.size:
            self.order = torch.randperm(self.size, generator=self.generator)
            self.position = 0
        rows = self.order[self.position:self.position + self.batch_size]
        self.position += self.batch_size
        return rows

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"generator": self.generator.get_state(), "order": self.order.clone(),
                "position": torch.tensor(self.position)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.generator.set_state(state["generator"])
        self.order = state["order"].clone()
        self.position = int(state["position"])


def process_shares(rows: torch.Tensor, micro_batches: int, process: int, processes: int) -> list[torch.Tensor]:
    """This process's rows of each micro-batch: ``rows`` split into ``micro_batches`` consecutive parts, each split
    into ``processes`` consecutive shares (sizes differ by at most one); share ``process`` of each part."""
    return [torch.tensor_split(part, processes)[process] for part in torch.tensor_split(rows, micro_batches)]


# ---------------------------------------------------------------------- the engine
class HasLosses(Protocol):
    """What a micro-batch's computation returns: per-example losses ``[n]`` (with their graph)."""

    @property
    def losses(self) -> torch.Tensor: ...


Output = TypeVar("Output", bound=HasLosses)
Part = TypeVar("Part")
Result = TypeVar("Result")


class _Forward(nn.Module):
    """``model`` as a module whose forward runs a function: the module accelerate prepares (DDP / FSDP / DeepSpeed
    wrapping, autocast), so that the loops' own log-prob passes, which call the model's parts, run inside it."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, function: Callable[..., Any], *args: Any) -> Any:
        return function(*args)


def distributed_state(cpu: bool):
    """accelerate's process state (``PartialState``): the process group of ``accelerate launch`` / ``torchrun``
    (gloo on CPUs), or one process. ``cpu``: the model lives on the CPU."""
    from accelerate import PartialState

    return PartialState(cpu=cpu)


class TrainingEngine:
    """Optimizer steps of ``model``'s trainable parameters through :class:`accelerate.Accelerator` (module docstring).

    Args:
        model: the module whose parameters with ``requires_grad`` train (a peft model, a reward model).
        optimizer: its optimizer (over those parameters), built by the loop.
        settings: the loop's :class:`LoopSettings`.
        total_steps: optimizer steps of the run (the schedule's length; ``None``: open-ended, constant schedule only).
        max_grad_norm: clip the global gradient norm at this value (``None``: no clipping; the norm is still reported).
        what: names the loop in errors.
        loop: names the loop in the checkpoint's run record (``train_preferences``, ...).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, settings: LoopSettings, *,
                 total_steps: int | None, max_grad_norm: float | None, what: str, loop: str) -> None:
        from accelerate import Accelerator
        from accelerate.utils import GradientAccumulationPlugin
        from transformers import get_scheduler

        self.model, self.raw_optimizer, self.settings = model, optimizer, settings
        self.total_steps, self.max_grad_norm, self.what, self.loop = total_steps, max_grad_norm, what, loop
        self.names = [name for name, p in model.named_parameters() if p.requires_grad]
        self.parameters = [p for p in model.parameters() if p.requires_grad]
        device = self.parameters[0].device if self.parameters else torch.device("cpu")
        state = distributed_state(cpu=device.type == "cpu")
        self.plugin = GradientAccumulationPlugin(num_steps=settings.gradient_accumulation_steps, adjust_scheduler=False,
                                                 sync_with_dataloader=False)
        logging = settings.output_dir is not None and settings.log_every > 0
        try:
            self.accelerator = Accelerator(
                mixed_precision=settings.mixed_precision, cpu=device.type == "cpu",
                device_placement=state.num_processes > 1, gradient_accumulation_plugin=self.plugin,
                log_with="tensorboard" if logging else None, project_dir=settings.output_dir)
        except ValueError as error:  # accelerate fixes one mixed precision and device per process
            raise ValidationError(f"mixed_precision: {error}") from error
        sharded = str(self.accelerator.distributed_type).split(".")[-1] in ("FSDP", "DEEPSPEED")
        if sharded and settings.output_dir is not None and settings.checkpoint_every > 0:
            raise ValidationError(f"checkpoint_every: checkpoints hold the whole optimizer state, which "
                                  f"{self.accelerator.distributed_type} shards; set checkpoint_every to 0 there")
        self.module, self.optimizer = self.accelerator.prepare(_Forward(model), optimizer)
        if total_steps is None and settings.lr_scheduler != "constant":
            raise ValidationError(f"lr_scheduler: {what} has no fixed number of steps; only 'constant' applies")
        self.scheduler = get_scheduler(settings.lr_scheduler, optimizer, num_warmup_steps=settings.warmup_steps,
                                       num_training_steps=total_steps)
        self.folder = checkpoints.RunFolder(Path(settings.output_dir)) if settings.output_dir else None
        self.step_learning_rate = float(self.scheduler.get_last_lr()[0])

    # ---------------------------------------------------------------- processes
    @property
    def num_processes(self) -> int:
        return int(self.accelerator.num_processes)

    @property
    def process_index(self) -> int:
        return int(self.accelerator.process_index)

    @property
    def is_main(self) -> bool:
        return bool(self.accelerator.is_main_process)

    def micro_batches(self, rows: torch.Tensor, what: str = "batch_size") -> list[torch.Tensor]:
        """This process's rows of each of the ``gradient_accumulation_steps`` micro-batches of ``rows``."""
        parts, processes = self.settings.gradient_accumulation_steps, self.num_processes
        if len(rows) < parts * processes:
            raise ValidationError(f"{what}: {len(rows)} per step cannot be split into {parts} micro-batch(es) on "
                                  f"{processes} process(es); use a larger batch or fewer of either")
        return process_shares(rows, parts, self.process_index, processes)

    def process_rows(self, count: int) -> list[int]:
        """This process's consecutive share of ``range(count)`` (work such as a reference pass split over processes;
        :meth:`gather` puts the results back in order)."""
        return torch.tensor_split(torch.arange(count), self.num_processes)[self.process_index].tolist()

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """The concatenation over processes (in process order) of each process's ``tensor [n_p, ...]``; the tensor
        itself on one process."""
        if self.num_processes == 1:
            return tensor
        from accelerate.utils import gather_object

        parts = gather_object([tensor.detach().cpu()])
        return torch.cat(parts).to(tensor.device)

    # ---------------------------------------------------------------- steps
    def run(self, function: Callable[..., Result], *args: Any) -> Result:
        """``function(*args)`` inside the prepared module's forward (see the module docstring)."""
        return self.module(function, *args)

    def step(self, parts: Sequence[Part], compute: Callable[[Part], Output], total: int) -> tuple[list[Output], float]:
        """One optimizer step: for each micro-batch ``part`` of this process, ``compute(part)`` (inside the forward)
        gives per-example losses ``[n]``, back-propagated as ``(n W G / total) · mean`` (``W`` processes, ``G``
        micro-batches; accelerate divides by ``G``, DDP averages over ``W``), so that the step minimizes the mean
        over the ``total`` examples of the global batch. Returns the outputs and the gradient norm before clipping.
        A non-finite loss stops training (``FloatingPointError``)."""
        if self.accelerator.gradient_accumulation_steps != self.plugin.num_steps:
            from accelerate.state import GradientState  # another Accelerator in this process changed the shared state

            GradientState(self.plugin)
        copies = self.num_processes * self.settings.gradient_accumulation_steps
        outputs: list[Output] = []
        norm: Any = math.nan
        self.step_learning_rate = float(self.scheduler.get_last_lr()[0])
        self.raw_optimizer.zero_grad(set_to_none=True)
        for part in parts:
            with self.accelerator.accumulate(self.module):
                output = self.run(compute, part)
                losses = output.losses
                share = len(losses) * copies  # == total when the split is even: then the plain mean
                loss = losses.mean() if share == total else losses.mean() * (share / total)
                self._check_finite(loss)
                self.accelerator.backward(loss)
                if self.accelerator.sync_gradients:
                    limit = self.max_grad_norm if self.max_grad_norm is not None else math.inf
                    norm = self.accelerator.clip_grad_norm_(self.parameters, limit)
                self.optimizer.step()
                if self.accelerator.sync_gradients and not self.accelerator.optimizer_step_was_skipped:
                    self.scheduler.step()
            outputs.append(output)
        return outputs, float(norm) if norm is not None else math.nan

    def _check_finite(self, loss: torch.Tensor) -> None:
        finite = torch.isfinite(loss.detach()).reshape(1)
        if self.num_processes > 1:  # every process stops, not only the one that saw it
            finite = self.accelerator.gather(finite.to(self.accelerator.device)).all().reshape(1)
        if not bool(finite):
            raise FloatingPointError(f"{self.what}: the loss became non-finite ({loss.item()}); lower the learning "
                                     f"rate or check the data")

    def whole_batch(self, outputs: list[LossOutput]) -> LossOutput:
        """The catalog-loss outputs of a step's micro-batches on every process as one (the step batch's metrics)."""
        if len(outputs) == 1 and self.num_processes == 1:
            return outputs[0]
        losses, chosen, rejected = (self.gather(torch.cat([getattr(o, name).detach() for o in outputs]))
                                    for name in ("losses", "chosen_rewards", "rejected_rewards"))
        return LossOutput(losses, chosen, rejected, paired=outputs[0].paired)

    # ---------------------------------------------------------------- run folder: logging and checkpoints
    def start(self, fingerprint: dict[str, Any]) -> checkpoints.Checkpoint | None:
        """Open the run in ``output_dir`` (if any): check or write its run record (``fingerprint``: what the run
        computes), load the last checkpoint into the model, optimizer, schedule, scaler and random generators, and
        start the trackers. Returns that checkpoint (the loop restores its own state from it), or None."""
        checkpoint = None
        start_step = 0
        if self.folder is not None:
            record = {"loop": self.loop, "fingerprint": fingerprint}
            self.folder.check_run(record)
            self.accelerator.wait_for_everyone()
            if self.is_main:
                self.folder.write_run(record)
            checkpoint = self.folder.latest()
            if checkpoint is not None:
                self._restore(checkpoint)
                start_step = checkpoint.step
            if self.is_main:
                self.folder.trim_metrics(start_step)
            if self.settings.log_every > 0:
                self.accelerator.init_trackers("tensorboard", init_kwargs={"tensorboard": {"purge_step":
                                                                                           start_step + 1}})
            self.accelerator.wait_for_everyone()
        return checkpoint

    def log(self, metrics: dict[str, Any], step: int) -> None:
        """Append ``metrics`` (with the learning rate of the step) to metrics.jsonl and TensorBoard every
        ``log_every`` steps (and after the last)."""
        every = self.settings.log_every
        if self.folder is None or every == 0 or not (step % every == 0 or step == self.total_steps):
            return
        row = {**metrics, "step": step, "learning_rate": self.step_learning_rate}
        if self.is_main:
            self.folder.append_metrics(row)
        scalars = {k: float(v) for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                   and k != "step"}
        self.accelerator.log(scalars, step=step)

    def checkpoint_due(self, step: int) -> bool:
        every = self.settings.checkpoint_every
        return self.folder is not None and every > 0 and (step % every == 0 or step == self.total_steps)

    def save(self, step: int, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        """Write a checkpoint at ``step`` (main process; all wait): the engine's state plus the loop's ``tensors``
        and JSON ``state``."""
        assert self.folder is not None
        if self.is_main:
            everything = {f"model.{name}": p.detach() for name, p in zip(self.names, self.parameters)}
            everything.update(_rng_tensors())
            everything.update({f"loop.{name}": value for name, value in tensors.items()})
            objects: dict[str, Any] = {"optimizer": self.raw_optimizer.state_dict(),
                                       "scheduler": self.scheduler.state_dict()}
            if self.accelerator.scaler is not None:
                objects["scaler"] = self.accelerator.scaler.state_dict()
            self.folder.save(step, everything, objects, {"loop": state, "python_random": random.getstate()})
        self.accelerator.wait_for_everyone()

    def _restore(self, checkpoint: checkpoints.Checkpoint) -> None:
        tensors = checkpoint.tensors
        missing = [name for name in self.names if f"model.{name}" not in tensors]
        if missing:
            raise ValidationError(f"checkpoint: {checkpoint.folder / 'tensors.safetensors'} has no parameter "
                                  f"{missing[0]!r}; it belongs to another model"
                                  f"{checkpoints.damaged_checkpoint_hint(checkpoint.folder)}")
        with torch.no_grad():
            for name, parameter in zip(self.names, self.parameters):
                parameter.copy_(tensors[f"model.{name}"])
        objects = checkpoint.objects
        try:
            self.raw_optimizer.load_state_dict(objects["optimizer"])
            self.scheduler.load_state_dict(objects["scheduler"])
            if self.accelerator.scaler is not None and "scaler" in objects:
                self.accelerator.scaler.load_state_dict(objects["scaler"])
            _set_rng_tensors(tensors)
            version, internal, gauss = checkpoint.state["python_random"]
            random.setstate((version, tuple(internal), gauss))
        except (KeyError, ValueError, TypeError, RuntimeError, IndexError) as error:
            # a file edited or damaged inside a valid container: states that no longer fit this optimizer and schedule
            raise ValidationError(f"checkpoint: {checkpoint.folder} does not fit this run ({type(error).__name__}: "
                                  f"{error}){checkpoints.damaged_checkpoint_hint(checkpoint.folder)}") from error

    def finish(self) -> None:
        """Close the trackers (the process group stays up: the caller may still save)."""
        for tracker in self.accelerator.trackers:
            tracker.finish()


def _rng_tensors() -> dict[str, torch.Tensor]:
    # numpy's legacy global generator: what third-party code draws from
    state: tuple[Any, ...] = np.random.get_state(legacy=True)  # type: ignore[assignment]  # noqa: NPY002
    tensors = {"rng.torch": torch.get_rng_state(),
               "rng.numpy": torch.from_numpy(np.asarray(state[1], dtype=np.int64)),
               "rng.numpy_meta": torch.tensor([int(state[2]), int(state[3])], dtype=torch.int64),
               "rng.numpy_gauss": torch.tensor([float(state[4])], dtype=torch.float64)}
    if torch.cuda.is_available():
        for index, value in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{index}"] = value
    return tensors


def _set_rng_tensors(tensors: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    meta = tensors["rng.numpy_meta"].tolist()
    np.random.set_state((  # noqa: NPY002 (the legacy global generator, saved by _rng_tensors)
        "MT19937", tensors["rng.numpy"].numpy().astype(np.uint32), meta[0], meta[1],
        float(tensors["rng.numpy_gauss"][0])))
    if torch.cuda.is_available():
        states = [tensors[f"rng.cuda.{i}"] for i in range(torch.cuda.device_count()) if f"rng.cuda.{i}" in tensors]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)


def fingerprint(values: Any) -> str:
    """SHA-256 of ``values`` as canonical JSON (tensors as lists): what identifies a run's data and settings."""
    import hashlib

    def plain(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return {"dtype": str(value.dtype), "values": value.tolist()}
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        raise TypeError(f"cannot fingerprint {type(value).__name__}")

    text = json.dumps(values, sort_keys=True, default=plain)
    return hashlib.sha256(text.encode()).hexdigest()


def parameter_digest(parameters: Sequence[torch.Tensor]) -> str:
    """SHA-256 of the parameters' bytes (the initial adapter of a run)."""
    import hashlib

    digest = hashlib.sha256()
    for parameter in parameters:
        digest.update(parameter.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
