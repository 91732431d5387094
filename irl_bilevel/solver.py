"""The bilevel solver: the outer loop over reward parameters, with logging, checkpoints and resume.

Each outer step asks the hypergradient method for ``(L, dL/dθ)`` — which (re)solves the warm-started inner
problem — and takes an optimizer step on ``θ``. Adam and SGD take one hypergradient per step; L-BFGS
(strong-Wolfe line search) may take several, and suits the concave MaxEnt likelihood of a linear reward,
where it needs far fewer outer steps than first-order methods.

With an ``output_dir``, the run writes ``metrics.jsonl`` (one row per step), ``checkpoint.pt`` every
``checkpoint_every`` steps and ``summary.json`` at the end; ``run()`` on the same folder resumes from the
checkpoint (reward parameters, optimizer state, warm inner solution, random generators) and finishes with
the same result as an uninterrupted run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from irl_bilevel.hypergradients import BilevelProblem, HypergradientMethod
from irl_bilevel.runs import load_checkpoint, read_metrics, save_checkpoint, write_json, write_metrics
from irl_bilevel.validation import ValidationError

OPTIMIZERS = ("adam", "sgd", "lbfgs")


@dataclass
class OuterConfig:
    """Outer-loop settings.

    ``grad_tol``: stop once ``‖dL/dθ‖_∞`` falls below it (not while the objective's data still grow: an objective
    with ``refresh``). ``l2``: adds ``(l2 / 2) ‖θ‖²`` to the outer loss (and ``l2 · θ`` to its gradient), which pins
    down reward directions the feedback does not determine. An objective whose ``has_feedback()`` is False gets no
    outer step (θ stays) until it is True.
    """

    steps: int = 200
    optimizer: str = "lbfgs"
    lr: float = 1.0
    grad_tol: float = 0.0
    l2: float = 0.0
    checkpoint_every: int = 10
    lbfgs_history: int = 20
    lbfgs_iterations_per_step: int = 25

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValidationError(f"optimizer: expected one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.steps < 0:
            raise ValidationError(f"steps: expected a non-negative number, got {self.steps}")
        if self.lr <= 0 or not math.isfinite(self.lr):
            raise ValidationError(f"lr: expected a positive number, got {self.lr}")
        if self.l2 < 0 or not math.isfinite(self.l2):
            raise ValidationError(f"l2: expected a non-negative number, got {self.l2}")
        if self.lbfgs_iterations_per_step < 1:
            raise ValidationError(
                f"lbfgs_iterations_per_step: expected at least 1, got {self.lbfgs_iterations_per_step}"
            )
        if self.checkpoint_every < 1:
            raise ValidationError(f"checkpoint_every: expected at least 1, got {self.checkpoint_every}")


@dataclass
class BilevelResult:
    steps: int
    loss: float
    gradient_norm: float
    converged: bool
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


class BilevelSolver:
    """Outer loop: ``θ ← θ − step(dL/dθ)`` with ``dL/dθ`` from ``method`` on ``problem``.

    ``metrics``: called after each step, returns extra numbers to log (e.g. reward-quality metrics).
    """

    def __init__(
        self,
        problem: BilevelProblem,
        method: HypergradientMethod,
        config: OuterConfig | None = None,
        output_dir: str | Path | None = None,
        metrics: Callable[[], dict[str, float]] | None = None,
        stop_when: Callable[[dict[str, Any]], bool] | None = None,
        progress: bool = True,
    ) -> None:
        self.problem = problem
        self.method = method
        self.config = config or OuterConfig()
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.metrics = metrics
        self.stop_when = stop_when
        self.progress = progress
        self.optimizer = self._make_optimizer()
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.converged = False
        self.hypergradient_evaluations = 0
        # The last evaluation (parameters, loss, gradients): the logging evaluation after a step and the first
        # evaluation of the next step usually fall on the same parameters, and L-BFGS's line search often ends
        # where the logging evaluation starts.
        self._last_evaluation: tuple[torch.Tensor, float, list[torch.Tensor]] | None = None

    def _make_optimizer(self) -> torch.optim.Optimizer:
        parameters, c = self.problem.parameters, self.config
        if c.optimizer == "adam":
            return torch.optim.Adam(parameters, lr=c.lr)
        if c.optimizer == "sgd":
            return torch.optim.SGD(parameters, lr=c.lr)
        return torch.optim.LBFGS(
            parameters,
            lr=c.lr,
            history_size=c.lbfgs_history,
            max_iter=c.lbfgs_iterations_per_step,
            # torch's default (max_iter · 5/4) leaves a one-iteration step no line-search retries: a failed unit
            # step would then return a zero step and freeze the run.
            max_eval=c.lbfgs_iterations_per_step + 25,
            line_search_fn="strong_wolfe",
            tolerance_grad=max(c.grad_tol, 1e-12),
            tolerance_change=1e-14,
        )

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoint_path(self) -> Path | None:
        return None if self.output_dir is None else self.output_dir / "checkpoint.pt"

    def _generators(self) -> dict[str, torch.Generator]:
        return {
            name: value for name, value in vars(self.method).items() if isinstance(value, torch.Generator)
        }

    def save(self) -> None:
        if self.output_dir is None or self.checkpoint_path is None:
            return
        state = {
            "step": self.step,
            "converged": self.converged,
            "reward_model": self.problem.reward_model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "inner": self.problem.inner.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "hypergradient_evaluations": self.hypergradient_evaluations,
            "last_evaluation": None if self._last_evaluation is None else {
                "parameters": self._last_evaluation[0],
                "loss": self._last_evaluation[1],
                "gradients": self._last_evaluation[2],
            },
            "generators": {name: g.get_state() for name, g in self._generators().items()},
        }
        write_metrics(self.output_dir / "metrics.jsonl", self.history)
        save_checkpoint(self.checkpoint_path, state)

    def try_resume(self) -> bool:
        """Load the run folder's checkpoint, if any; returns whether it did."""
        path = self.checkpoint_path
        if path is None or not path.exists():
            return False
        state = load_checkpoint(path)
        self.problem.reward_model.load_state_dict(state["reward_model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.problem.inner.load_state_dict(state["inner"])
        torch.set_rng_state(state["torch_rng"])
        for name, generator in self._generators().items():
            if name in state["generators"]:
                generator.set_state(state["generators"][name])
        self.hypergradient_evaluations = int(state["hypergradient_evaluations"])
        last = state["last_evaluation"]
        self._last_evaluation = None if last is None else (last["parameters"], last["loss"], last["gradients"])
        self.step = int(state["step"])
        self.converged = bool(state["converged"])
        assert self.output_dir is not None
        self.history = [
            row for row in read_metrics(self.output_dir / "metrics.jsonl") if row["step"] <= self.step
        ]
        return True

    # ------------------------------------------------------------------ the loop
    def _flat_parameters(self) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1) for p in self.problem.parameters])

    def _evaluate(self, fresh: bool = False) -> float:
        """One hypergradient: writes ``.grad`` of every reward parameter, returns the outer loss. ``fresh``: compute
        even if the last evaluation was at the same parameters."""
        flat = self._flat_parameters()
        if not fresh and self._last_evaluation is not None and torch.equal(self._last_evaluation[0], flat):
            _, loss, gradients = self._last_evaluation
        else:
            self.hypergradient_evaluations += 1
            result = self.method.compute(self.problem)
            loss, gradients = result.loss, [g.detach().clone() for g in result.gradients]
            self._last_evaluation = (flat.clone(), loss, gradients)
        l2 = self.config.l2
        for parameter, gradient in zip(self.problem.parameters, gradients):
            parameter.grad = gradient.clone()
            if l2:
                parameter.grad.add_(parameter.detach(), alpha=l2)
                loss += 0.5 * l2 * float(parameter.detach().pow(2).sum())
        return loss

    def _has_feedback(self) -> bool:
        """False only for an objective that says it holds no feedback yet (``has_feedback()``, e.g. an online
        preference likelihood before its first decided label)."""
        has_feedback = getattr(self.problem.objective, "has_feedback", None)
        return True if has_feedback is None else bool(has_feedback())

    def _gradient_norm(self) -> float:
        norms = [float(p.grad.abs().max()) for p in self.problem.parameters if p.grad is not None]
        return max(norms, default=0.0)

    def run(self, resume: bool = True) -> BilevelResult:
        started = time.perf_counter()
        if resume:
            self.try_resume()
        bar = tqdm(
            total=self.config.steps,
            initial=self.step,
            desc=f"outer ({self.method.name})",
            disable=not self.progress,
            leave=False,
        )
        loss, gradient_norm = math.nan, math.nan
        while self.step < self.config.steps and not self.converged:
            begin = getattr(self.method, "begin_outer_step", None)
            if begin is not None:
                # The method re-solves the inner problem and refreshes the data its loss is defined on once per
                # outer step (DirectHypergradient): evaluations cached before it are stale.
                begin(self.problem)
                self._last_evaluation = None
            before = self._flat_parameters()
            # Without feedback yet (an online query loop whose queries so far all tied or were postponed) the outer
            # loss is only the l2 term, and fitting it would shrink θ to 0, where a tanh MLP has no gradient left
            # for the first labels: θ waits for feedback instead.
            if self._has_feedback():
                if isinstance(self.optimizer, torch.optim.LBFGS):
                    self.optimizer.step(self._evaluate)
                    if torch.equal(before, self._flat_parameters()):
                        # A failed line search leaves θ and L-BFGS's memory as they were, so every later step
                        # would fail the same way: restart from steepest descent.
                        self.optimizer.state.clear()
                else:
                    self._evaluate()
                    self.optimizer.step()
            # Log the loss and gradient at the new parameters (the next step starts from this evaluation; a
            # method whose inner learner advances with every call computes it afresh even if θ did not move).
            loss = self._evaluate(fresh=self.method.fresh_each_step)
            gradient_norm = self._gradient_norm()
            self.step += 1
            row: dict[str, Any] = {
                "step": self.step,
                "loss": loss,
                "gradient_norm": gradient_norm,
                "hypergradient_evaluations": self.hypergradient_evaluations,
            }
            if self.metrics is not None:
                row.update(self.metrics())
            self.history.append(row)
            # A zero gradient is not convergence while the data still grow (an objective with refresh: the
            # next outer step may bring the first labels).
            stationary = gradient_norm <= self.config.grad_tol and not callable(
                getattr(self.problem.objective, "refresh", None)
            )
            self.converged = stationary or bool(self.stop_when and self.stop_when(row))
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4g}", grad=f"{gradient_norm:.2e}")
            if self.step % self.config.checkpoint_every == 0 or self.converged:
                self.save()
        bar.close()
        if self.history:
            loss, gradient_norm = self.history[-1]["loss"], self.history[-1]["gradient_norm"]
        self.save()
        result = BilevelResult(
            self.step, loss, gradient_norm, self.converged, self.history, time.perf_counter() - started
        )
        if self.output_dir is not None:
            summary = {k: v for k, v in asdict(result).items() if k != "history"}
            summary["final_metrics"] = self.history[-1] if self.history else {}
            write_json(self.output_dir / "summary.json", summary)
        return result
