"""The bilevel solver: the outer loop over reward parameters, with stopping rules, logging, checkpoints and resume.

Each outer step asks the hypergradient method for ``(L, dL/dθ)`` — which (re)solves the warm-started inner
problem — and takes an optimizer step on ``θ``. Adam and SGD take one hypergradient per step; L-BFGS
(strong-Wolfe line search) may take several, and suits the concave MaxEnt likelihood of a linear reward,
where it needs far fewer outer steps than first-order methods.

Stopping (:class:`OuterConfig`): after ``steps`` outer steps, or earlier at a stationary point
(``‖dL/dθ‖_∞ ≤ grad_tol``) or once the loss stops changing (``|L_k − L_{k−1}| ≤ loss_rtol · max(|L_k|,
|L_{k−1}|, 1)`` after a step that moved ``θ``): scipy's L-BFGS-B rules (``pgtol``, ``ftol``) and defaults. Neither
applies while the objective's data may still grow (:meth:`~irl_bilevel.objectives.OuterObjective.feedback_may_grow`).
A non-finite gradient, an infinite loss or a loss that runs away (``|L_k| > divergence_factor · max(|L_0|, 1)``,
``L_0`` the first finite loss) stops the run with a :class:`DivergenceError` instead of returning a reward. A NaN
loss with a finite gradient is a loss the method cannot report at this step (a sampled task return before any
episode has finished, the demonstration likelihood of a policy without log-probabilities): it stops nothing.

With an ``output_dir``, the run writes ``metrics.jsonl`` (one row per step), ``checkpoint.pt`` every
``checkpoint_every`` steps and ``summary.json`` at the end; ``run()`` on the same folder resumes from the
checkpoint (reward parameters, optimizer state, the inner solver's, the hypergradient method's and the objective's
``state_dict()``, torch's generator) and finishes with the same result as an uninterrupted run. ``seconds`` in the
result and the summary adds up the segments of a resumed run (up to each one's last checkpoint).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from irl_bilevel.hypergradients import BilevelProblem, HypergradientMethod
from irl_bilevel.runs import RESTART_HINT, load_checkpoint, read_metrics, save_checkpoint, write_json, write_metrics
from irl_bilevel.validation import ValidationError

OPTIMIZERS = ("adam", "sgd", "lbfgs")


class DivergenceError(ValidationError, FloatingPointError):
    """The outer loss or its gradient became non-finite or ran away: the run stops and returns no reward."""


@dataclass
class OuterConfig:
    """Outer-loop settings.

    ``steps``: the most outer steps. ``grad_tol``: stop once ``‖dL/dθ‖_∞ ≤ grad_tol`` (scipy L-BFGS-B's ``pgtol``
    default, 1e-5). ``loss_rtol``: stop once a step that moved ``θ`` changed the loss by at most
    ``loss_rtol · max(|L_k|, |L_{k−1}|, 1)`` (scipy L-BFGS-B's ``ftol`` default, about 2.2e-9). Set either to 0 (or
    below) to turn it off; neither applies while the objective's data may still grow. ``divergence_factor``: a
    loss with ``|L_k| > divergence_factor · max(|L_0|, 1)`` stops the run with a :class:`DivergenceError` (0: off).
    ``l2``: adds ``(l2 / 2) ‖θ‖²`` to the outer loss (and ``l2 · θ`` to its gradient), which pins down reward
    directions the feedback does not determine. An objective whose ``has_feedback()`` is False gets no outer step
    (θ stays) until it is True.
    """

    steps: int = 200
    optimizer: str = "lbfgs"
    lr: float = 1.0
    grad_tol: float = 1e-5
    loss_rtol: float = 2.220446049250313e-09
    divergence_factor: float = 1e4
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
        for name, value in (("grad_tol", self.grad_tol), ("loss_rtol", self.loss_rtol)):
            if math.isnan(value):
                raise ValidationError(f"{name}: expected a number (0 or below: off), got nan")
        if not self.divergence_factor >= 0:
            raise ValidationError(f"divergence_factor: expected a non-negative number (0: off), got "
                                  f"{self.divergence_factor}")
        if self.lbfgs_iterations_per_step < 1:
            raise ValidationError(
                f"lbfgs_iterations_per_step: expected at least 1, got {self.lbfgs_iterations_per_step}"
            )
        if self.checkpoint_every < 1:
            raise ValidationError(f"checkpoint_every: expected at least 1, got {self.checkpoint_every}")


@dataclass
class BilevelResult:
    """The end of a run: steps taken, the last loss and ``‖dL/dθ‖_∞``, whether a stopping rule ended it
    (``stop_reason``: ``grad_tol``, ``loss_rtol``, ``stop_when`` or ``steps``), the per-step history and the wall
    time of all segments (``seconds``; see the module docstring)."""

    steps: int
    loss: float
    gradient_norm: float
    converged: bool
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    stop_reason: str = "steps"


# The entries of a checkpoint that try_resume() cannot do without (save() writes these and more; the others have
# defaults for checkpoints written before they existed).
CHECKPOINT_ENTRIES = ("reward_model", "optimizer", "inner", "torch_rng", "hypergradient_evaluations",
                      "last_evaluation", "step", "converged")


class BilevelSolver:
    """Outer loop: ``θ ← θ − step(dL/dθ)`` with ``dL/dθ`` from ``method`` on ``problem``.

    ``metrics``: called after each step, returns extra numbers to log (e.g. reward-quality metrics).
    ``stop_when``: called with each step's row, True stops the run. ``progress``: a progress bar that stays on
    screen and a closing line saying why the run stopped (both on stderr).
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
        if self.output_dir is not None:
            try:
                problem.objective.state_dict()
            except NotImplementedError as error:
                raise ValidationError(f"output_dir: {type(problem.objective).__name__} cannot save its run state, so a "
                                      f"run folder could not resume it exactly ({error}); run without one") from error
        self.optimizer = self._make_optimizer()
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.converged = False
        self.stop_reason = "steps"
        self.hypergradient_evaluations = 0
        # The loss at the initial θ (the scale the divergence guard compares with) and the wall time of earlier
        # segments of a resumed run.
        self.initial_loss: float | None = None
        self.seconds_before = 0.0
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

    def save(self, seconds: float) -> None:
        """Write the metrics so far and the checkpoint; ``seconds``: the run's wall time so far, all segments."""
        if self.output_dir is None or self.checkpoint_path is None:
            return
        state = {
            "step": self.step,
            "converged": self.converged,
            "stop_reason": self.stop_reason,
            "reward_model": self.problem.reward_model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "inner": self.problem.inner.state_dict(),
            "hypergradient": self.method.state_dict(),
            "objective": self.problem.objective.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "hypergradient_evaluations": self.hypergradient_evaluations,
            "initial_loss": self.initial_loss,
            "seconds": seconds,
            "last_evaluation": None if self._last_evaluation is None else {
                "parameters": self._last_evaluation[0],
                "loss": self._last_evaluation[1],
                "gradients": self._last_evaluation[2],
            },
        }
        write_metrics(self.output_dir / "metrics.jsonl", self.history)
        save_checkpoint(self.checkpoint_path, state)

    def try_resume(self) -> bool:
        """Load the run folder's checkpoint, if any; returns whether it did."""
        path = self.checkpoint_path
        if path is None or not path.exists():
            return False
        state = load_checkpoint(path, required=CHECKPOINT_ENTRIES)
        try:
            self.problem.reward_model.load_state_dict(state["reward_model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.problem.inner.load_state_dict(state["inner"])
            torch.set_rng_state(state["torch_rng"])
            # Checkpoints written before the method declared its state held its generators under "generators".
            self.method.load_state_dict(state.get("hypergradient", state.get("generators", {})))
            self.problem.objective.load_state_dict(state.get("objective", {}))
        except (RuntimeError, ValueError, KeyError, TypeError) as error:  # the states of another model or run
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
            raise ValidationError(f"checkpoint: {path} holds the state of another run ({reason}); {RESTART_HINT}") \
                from error
        self.hypergradient_evaluations = int(state["hypergradient_evaluations"])
        last = state["last_evaluation"]
        self._last_evaluation = None if last is None else (last["parameters"], last["loss"], last["gradients"])
        self.step = int(state["step"])
        self.converged = bool(state["converged"])
        self.stop_reason = str(state.get("stop_reason", "steps"))
        self.seconds_before = float(state.get("seconds", 0.0))
        assert self.output_dir is not None
        self.history = read_metrics(self.output_dir / "metrics.jsonl", through_step=self.step)
        initial = state.get("initial_loss")
        self.initial_loss = float(initial) if initial is not None else (
            float(self.history[0]["loss"]) if self.history else None)
        return True

    # ------------------------------------------------------------------ the loop
    def _flat_parameters(self) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1) for p in self.problem.parameters])

    def _evaluate(self, fresh: bool = False) -> float:
        """One hypergradient: writes ``.grad`` of every reward parameter, returns the outer loss. ``fresh``: compute
        even if the last evaluation was at the same parameters. A non-finite gradient or an infinite loss raises
        :class:`DivergenceError` (a NaN loss is an unreported one, see the module docstring)."""
        flat = self._flat_parameters()
        if not fresh and self._last_evaluation is not None and torch.equal(self._last_evaluation[0], flat):
            _, loss, gradients = self._last_evaluation
        else:
            self.hypergradient_evaluations += 1
            result = self.method.compute(self.problem)
            loss, gradients = result.loss, [g.detach().clone() for g in result.gradients]
            finite_gradients = all(bool(torch.isfinite(g).all()) for g in gradients)
            if math.isinf(loss) or not finite_gradients:
                what = f"loss {loss}" if math.isinf(loss) else "gradient"
                raise DivergenceError(
                    f"outer loss: non-finite {what} in outer step {self.step + 1} ({self.method.name}); the run "
                    f"stopped and wrote no reward (try a smaller lr, an l2 penalty or a bounded reward model)"
                )
            self._last_evaluation = (flat.clone(), loss, gradients)
        l2 = self.config.l2
        for parameter, gradient in zip(self.problem.parameters, gradients):
            parameter.grad = gradient.clone()
            if l2:
                parameter.grad.add_(parameter.detach(), alpha=l2)
                loss += 0.5 * l2 * float(parameter.detach().pow(2).sum())
        if self.initial_loss is None and math.isfinite(loss):
            self.initial_loss = loss
        return loss

    def _gradient_norm(self) -> float:
        norms = [float(p.grad.abs().max()) for p in self.problem.parameters if p.grad is not None]
        return max(norms, default=0.0)

    def _check_runaway(self, loss: float) -> None:
        factor, initial = self.config.divergence_factor, self.initial_loss
        if factor > 0 and initial is not None and abs(loss) > factor * max(abs(initial), 1.0):
            raise DivergenceError(
                f"outer loss: ran away at outer step {self.step + 1} ({self.method.name}): L = {loss:.6g}, against "
                f"{initial:.6g} at the start (|L| above divergence_factor = {factor:g} times max(|L_0|, 1)); the "
                f"objective is unbounded in the direction the optimizer took, or the steps are too large. The run "
                f"stopped and wrote no reward (try a smaller lr, an l2 penalty or a bounded reward model; raise "
                f"divergence_factor if losses of this size are expected)"
            )

    def _stop_reason(self, row: dict[str, Any], moved: bool) -> str | None:
        """Which stopping rule, if any, ends the run after this step's ``row``."""
        if not self.problem.objective.feedback_may_grow():
            # A zero gradient or a still loss is not convergence while the data still grow (the next outer step may
            # bring the first labels).
            if row["gradient_norm"] <= self.config.grad_tol:
                return "grad_tol"
            if moved and self.history and self.config.loss_rtol > 0:
                previous, loss = float(self.history[-1]["loss"]), float(row["loss"])
                if abs(loss - previous) <= self.config.loss_rtol * max(abs(loss), abs(previous), 1.0):
                    return "loss_rtol"
        if self.stop_when is not None and self.stop_when(row):
            return "stop_when"
        return None

    def _closing_line(self) -> str:
        name, steps = self.method.name, self.config.steps
        if not self.history:
            return f"outer ({name}): no step taken (steps = {steps})"
        last = self.history[-1]
        reasons = {
            "grad_tol": f"‖dL/dθ‖∞ = {last['gradient_norm']:.3g} ≤ grad_tol = {self.config.grad_tol:g}",
            "loss_rtol": f"relative loss change ≤ loss_rtol = {self.config.loss_rtol:.3g}",
            "stop_when": "the run's stopping rule was met",
            "steps": f"step budget reached ({steps} steps; ‖dL/dθ‖∞ = {last['gradient_norm']:.3g})",
        }
        return (f"outer ({name}): stopped after step {self.step} of at most {steps}: {reasons[self.stop_reason]}; "
                f"loss {last['loss']:.8g}")

    def run(self, resume: bool = True) -> BilevelResult:
        started = time.perf_counter()
        if resume:
            self.try_resume()

        def elapsed() -> float:
            return self.seconds_before + time.perf_counter() - started

        bar = tqdm(
            total=self.config.steps,
            initial=self.step,
            desc=f"outer ({self.method.name})",
            disable=not self.progress,
            leave=True,
            file=sys.stderr,
        )
        loss, gradient_norm = math.nan, math.nan
        try:
            while self.step < self.config.steps and not self.converged:
                if self.method.begin_outer_step(self.problem):
                    # The method refreshed the data its loss is defined on (DirectHypergradient): evaluations cached
                    # before it are stale.
                    self._last_evaluation = None
                before = self._flat_parameters()
                # Without feedback yet (an online query loop whose queries so far all tied or were postponed) the
                # outer loss is only the l2 term, and fitting it would shrink θ to 0, where a tanh MLP has no
                # gradient left for the first labels: θ waits for feedback instead.
                if self.problem.objective.has_feedback():
                    if isinstance(self.optimizer, torch.optim.LBFGS):
                        self.optimizer.step(self._evaluate)
                        if torch.equal(before, self._flat_parameters()):
                            # A failed line search leaves θ and L-BFGS's memory as they were, so every later step
                            # would fail the same way: restart from steepest descent.
                            self.optimizer.state.clear()
                    else:
                        self._evaluate()
                        self.optimizer.step()
                moved = not torch.equal(before, self._flat_parameters())
                # Log the loss and gradient at the new parameters (the next step starts from this evaluation; a
                # method whose inner learner advances with every call computes it afresh even if θ did not move).
                loss = self._evaluate(fresh=self.method.fresh_each_step)
                self._check_runaway(loss)
                gradient_norm = self._gradient_norm()
                row: dict[str, Any] = {
                    "step": self.step + 1,
                    "loss": loss,
                    "gradient_norm": gradient_norm,
                    "hypergradient_evaluations": self.hypergradient_evaluations,
                }
                self.step += 1
                if self.metrics is not None:
                    row.update(self.metrics())
                reason = self._stop_reason(row, moved)
                self.history.append(row)
                self.converged = reason is not None
                if reason is not None:
                    self.stop_reason = reason
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4g}", grad=f"{gradient_norm:.2e}")
                if self.step % self.config.checkpoint_every == 0 or self.converged:
                    self.save(elapsed())
        finally:
            bar.close()
        if self.history:
            loss, gradient_norm = self.history[-1]["loss"], self.history[-1]["gradient_norm"]
        seconds = elapsed()
        self.save(seconds)
        if self.progress:
            tqdm.write(self._closing_line(), file=sys.stderr)
        result = BilevelResult(
            self.step, loss, gradient_norm, self.converged, self.history, seconds, self.stop_reason
        )
        if self.output_dir is not None:
            summary = {k: v for k, v in asdict(result).items() if k != "history"}
            summary["final_metrics"] = self.history[-1] if self.history else {}
            write_json(self.output_dir / "summary.json", summary)
        return result
