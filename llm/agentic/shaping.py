"""Decision-aware reward shaping for a LoRA policy LM in agentic text environments: env-derived candidate shaping
signals, the sparse task reward plus a shaping term through the shared reward interface, and the one-step
policy-gradient (LIRPG / BiPaRS) hypergradient of the task return through :class:`llm.lora_inner.LoRAInnerSolver`.

Setting (Zheng, Oh, Singh 2018, LIRPG; Hu et al. 2020, BiPaRS): the inner LoRA policy trains (RLOO + KL) on
``r + F_θ`` where ``r`` is the env's sparse task reward (the ``success`` aspect: 1 on the step that reaches the
goal) and ``F_θ = Σ_k w_k c_k`` a weighting of candidate shaping signals; the outer loss is ``−J``, the task return
of the inner policy. The weights are a ``SimplexWeights`` aggregator (or fixed).

Candidate signals (:data:`CANDIDATES`; per text step ``(s, a, s')`` in the LoRA inner loop's featurization,
one-hot state ``[S]``, action column ``[A + 2]`` with malformed and unlisted columns, one-hot next state):

* ``progress_potential``: ``S (γ Φ(s') − Φ(s))`` with ``Φ(s) = −min(d(s), d_max)/d_max ∈ [−1, 0]`` from the env's
  BFS distance to the goal ``d`` (``d_max`` the largest finite one) and ``Φ = 0`` on terminal states (so the
  absorbing tail after a termination costs nothing). Potential-based: optimal policies are kept (Ng, Harada,
  Russell 1999). Alone (weight 1) it is the hand-designed potential.
* ``invalid`` / ``malformed``: the env's own ``invalid`` / ``malformed`` aspects (``−1`` on such a step), read from
  the tabular export; not potential-based, but they only penalize wasted moves.
* ``stall`` (deliberately harmful): ``+b`` on every step that does not end the episode. It pays for *not*
  reaching the goal (the text analogue of classic control's ``wrong_goal`` bonus); with enough weight it makes
  dawdling until the move cap better than solving.

:class:`TextShapingSignals` reads the env's aspect names: a candidate that reads an aspect the env lacks, an
unknown or repeated candidate, or a reward whose task aspects are not the env's raises ``ValidationError``
(:func:`check_shaping_candidates`).

Reward model for the inner loop (:class:`ShapedTaskReward`): aspects ``(success, invalid, malformed, progress,
step, shaping)`` — the env's aspects scaled by fixed task weights (the sparse task reward), then the shaping
total — so the LoRA inner solver's aspect check (env aspects optionally followed by ``shaping``) accepts it
unchanged; total ``r + F_θ``.

Hypergradient (:class:`LoRAOneStepShapingHypergradient`): after one inner solve, with the recorded episodes of
the solve (``record_updates`` of the inner config), ``c_t = ∇_η log π(y_t|x_t) · g`` from the LoRA adapter's
log-probabilities of the sampled completion tokens ``y_t`` (malformed text included: it is what the policy
produced), ``g`` REINFORCE's estimate of ``∇_η J`` with the time baseline, and the surrogate
``−(1/N) Σ_t c_t Â^F_t(θ)`` differentiated through the shaping model; all of this math is
:mod:`irl_bilevel.shaping`'s (:func:`~irl_bilevel.shaping.task_advantages`,
:func:`~irl_bilevel.shaping.policy_gradient_directions`, :func:`~irl_bilevel.shaping.one_step_shaping_surrogate`),
shared with the SB3 inner loop. A terminated episode's absorbing tail (the inner loop's ``γ^T/(1−γ) r(s_abs)``)
enters its shaping and task returns-to-go as one trailing entry ``r(s_abs)/(1−γ)``. Known bias (as for SB3): the
recorded episodes come from the policies before each of the solve's updates, the estimate is first order in the
inner step, and RLOO's episode-level leave-one-out update is not the per-step policy-gradient step the chain rule
assumes. In a sparse task ``g = 0`` until an episode of the solve reaches the goal.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from irl_bilevel.hypergradients import BilevelProblem, Hypergradient, HypergradientMethod, parameter_gradients
from irl_bilevel.objectives import OuterObjective
from irl_bilevel.rewards import Aggregator, RewardModel, RewardOutput, SimplexWeights, Transitions
from irl_bilevel.shaping import one_step_shaping_surrogate, policy_gradient_directions, task_advantages
from irl_bilevel.validation import ValidationError
from llm.agentic.base import FiniteTextEnv, check_aspect_names
from llm.agentic.export import AspectTableReward, TabularExport
from llm.lora_inner import LoRAInnerSolver, TextEpisode
from llm.models import batch_logprobs, collate_completions

CANDIDATES: tuple[str, ...] = ("progress_potential", "invalid", "malformed", "stall")
HARMFUL = "stall"
# The env aspects each candidate reads (checked against the env: a clear error instead of a silent zero column).
READS: dict[str, tuple[str, ...]] = {"progress_potential": (), "invalid": ("invalid",),
                                     "malformed": ("malformed",), "stall": ()}


def check_shaping_candidates(env: FiniteTextEnv, candidates: Sequence[str]) -> None:
    """``ValidationError`` unless ``candidates`` are distinct names of :data:`CANDIDATES` whose aspects ``env`` has."""
    if len(candidates) == 0:
        raise ValidationError(f"candidates: expected at least one of {list(CANDIDATES)}")
    unknown = [c for c in candidates if c not in CANDIDATES]
    if unknown:
        raise ValidationError(f"candidates: unknown shaping candidate(s) {unknown}; expected names from "
                              f"{list(CANDIDATES)}")
    if len(set(candidates)) != len(candidates):
        raise ValidationError(f"candidates: each candidate at most once, got {list(candidates)}")
    for candidate in candidates:
        missing = [a for a in READS[candidate] if a not in env.aspect_names]
        if missing:
            raise ValidationError(f"candidates: {candidate!r} reads the aspect(s) {missing}, which the {env.name} "
                                  f"environment does not have (its aspects: {list(env.aspect_names)})")


def distance_potential(env: FiniteTextEnv, export: TabularExport) -> torch.Tensor:
    """``Φ [S]``: ``−min(d(s), d_max)/d_max`` (BFS distance to the goal), ``0`` on terminal states."""
    distances = [env.distance_to_goal(state) for state in export.states]
    finite = [d for d in distances if math.isfinite(d)]
    if not finite or max(finite) == 0:
        raise ValidationError(f"env: the {env.name} environment has no state at a positive finite distance to "
                              "its goal; the distance potential is undefined")
    d_max = max(finite)
    potential = [0.0 if env.is_terminal(s) else -min(d, d_max) / d_max for s, d in zip(export.states, distances)]
    return torch.tensor(potential, dtype=torch.float64)


class TextShapingSignals(RewardModel):
    """Candidate shaping signals of a finite text env as aspects ``[B, K]`` (module docstring).

    Args:
        env, export: the environment and its tabular export (the LoRA inner loop's featurization).
        candidates: names from :data:`CANDIDATES` (checked against the env).
        discount: ``γ`` of the potential term (the inner loop's).
        potential_scale: ``S`` of ``progress_potential``.
        stall_bonus: ``b`` of the harmful ``stall`` bonus.
        aggregator: default ``SimplexWeights`` (the weights the outer loop learns).

    Absorbing rows (all-zero action vector, :func:`irl_bilevel.objectives.absorbing_transitions`) get zero on
    every candidate.
    """

    potential: torch.Tensor
    aspect_table: torch.Tensor
    terminal: torch.Tensor

    def __init__(self, env: FiniteTextEnv, export: TabularExport, candidates: Sequence[str] = CANDIDATES,
                 discount: float = 0.9, potential_scale: float = 1.0, stall_bonus: float = 0.1,
                 aggregator: Aggregator | None = None) -> None:
        check_shaping_candidates(env, candidates)
        check_aspect_names(env, export.aspect_names, "export")
        if not 0.0 <= discount < 1.0:
            raise ValidationError(f"discount: expected 0 <= discount < 1, got {discount}")
        for name, value in (("potential_scale", potential_scale), ("stall_bonus", stall_bonus)):
            if not math.isfinite(value):
                raise ValidationError(f"{name}: expected a finite number, got {value}")
        super().__init__(tuple(candidates), aggregator or SimplexWeights(len(candidates)), uses_actions=True)
        self.env_name, self.num_states, self.num_columns = env.name, export.mdp.num_states, export.num_action_inputs
        self.discount, self.potential_scale, self.stall_bonus = float(discount), float(potential_scale), float(
            stall_bonus)
        self.register_buffer("potential", distance_potential(env, export))
        extra = export.extra_aspects if export.extra_aspects is not None else export.aspect_table.new_zeros(
            2, len(export.aspect_names))
        table = torch.cat([export.aspect_table, extra.unsqueeze(0).expand(self.num_states, 2, -1)], dim=1)
        self.register_buffer("aspect_table", table.to(torch.float64))  # [S, A + 2, K_env]
        self.register_buffer("terminal", torch.tensor([env.is_terminal(s) for s in export.states]))
        self.env_aspects = tuple(export.aspect_names)

    def aspect_rewards(self, batch: Transitions) -> torch.Tensor:
        if batch.actions is None or batch.next_states is None:
            raise ValidationError("batch: the text shaping signals need actions and next states")
        if batch.states.shape[-1] != self.num_states or batch.actions.shape[-1] != self.num_columns:
            raise ValidationError(f"batch: expected one-hot states [B, {self.num_states}] and action columns "
                                  f"[B, {self.num_columns}] of the {self.env_name} export, got "
                                  f"{list(batch.states.shape)} and {list(batch.actions.shape)}")
        dtype = batch.states.dtype
        state, next_state = batch.states.argmax(-1), batch.next_states.argmax(-1)
        real = (batch.actions.abs().sum(-1) > 0).to(dtype)  # 0 on absorbing rows
        columns = []
        for name in self.aspect_names:
            if name == "progress_potential":
                phi, phi_next = self.potential.to(dtype)[state], self.potential.to(dtype)[next_state]
                columns.append(self.potential_scale * (self.discount * phi_next - phi))
            elif name in ("invalid", "malformed"):
                aspects = self.aspect_table.to(dtype)[state, batch.actions.argmax(-1)]
                columns.append(aspects[:, self.env_aspects.index(name)])
            else:  # stall: the step did not end the episode
                columns.append(self.stall_bonus * (~self.terminal[next_state]).to(dtype))
        return torch.stack(columns, dim=-1) * real.unsqueeze(-1)


class ShapedTaskReward(RewardModel):
    """``r + F``: the env's aspects scaled by fixed task weights (``r``, default the sparse success reward) and a
    shaping model ``F``; aspects ``(*env aspects, "shaping")``, total ``r + F`` (module docstring)."""

    def __init__(self, env: FiniteTextEnv, export: TabularExport, shaping: RewardModel | None,
                 task_weights: Sequence[float] | None = None) -> None:
        check_aspect_names(env, export.aspect_names, "export")
        weights = [float(a == "success") for a in env.aspect_names] if task_weights is None else list(task_weights)
        task = AspectTableReward(export, initial_scales=weights, learn_scales=False)
        super().__init__((*task.aspect_names, "shaping"), None, uses_actions=True)
        if isinstance(shaping, TextShapingSignals) and shaping.env_aspects != tuple(env.aspect_names):
            raise ValidationError(f"shaping: built for aspects {list(shaping.env_aspects)}, the {env.name} "
                                  f"environment has {list(env.aspect_names)}")
        self.env_name = env.name
        self.task = task
        self.shaping = shaping

    def shaping_total(self, batch: Transitions) -> torch.Tensor:
        """``F [B]`` (zeros without a shaping model), differentiable in the shaping parameters."""
        if self.shaping is None:
            return torch.zeros(len(batch), dtype=batch.states.dtype)
        return self.shaping(batch).total

    def forward(self, batch: Transitions) -> RewardOutput:
        task = self.task(batch)
        shaping = self.shaping_total(batch).to(task.total.dtype)
        aspects = torch.cat([task.aspects, shaping.unsqueeze(-1)], dim=-1)
        return RewardOutput(aspects, task.total + shaping, self.aspect_names)


class LoRATaskReturnObjective(OuterObjective):
    """``loss = −J``: minus the mean undiscounted task return (goal reached) of the inner loop's recorded episodes.
    Estimated from rollouts: no loss of a log-policy table and no expert data (:class:`OuterObjective`'s defaults
    refuse them)."""

    def evaluate(self, inner: object) -> torch.Tensor:
        if not isinstance(inner, LoRAInnerSolver):
            raise ValidationError(f"inner: expected a LoRAInnerSolver, got {type(inner).__name__}")
        episodes = inner.episodes
        if not episodes:
            raise RuntimeError("solve() must be called before the task return is read")
        return torch.tensor(-sum(e.record.reached_goal for e in episodes) / len(episodes))


def shaping_weights(model: ShapedTaskReward) -> list[float] | None:
    """The aggregator weights of the shaping candidates (``None`` when the shaping has none)."""
    aggregator = getattr(model.shaping, "aggregator", None)
    weights = getattr(aggregator, "weights", None)
    return None if weights is None else weights.detach().double().tolist()


def episode_sequences(rows: torch.Tensor, episodes: Sequence[TextEpisode], discount: float) -> list[torch.Tensor]:
    """Split per-row rewards of :meth:`LoRAInnerSolver.episode_transitions` (every step, then one absorbing row per
    terminated episode) into per-episode sequences ``[T_i]``, with ``r(s_abs)/(1 − γ)`` appended after a
    termination (its discounted tail ``Σ_{j≥0} γ^j r(s_abs)`` as one entry at time ``T_i``)."""
    lengths = [len(e.state_indices) for e in episodes]
    steps = list(torch.split(rows[: sum(lengths)], lengths))
    ended = [i for i, e in enumerate(episodes) if e.terminated]
    if len(rows) != sum(lengths) + len(ended):
        raise ValidationError(f"rows: expected {sum(lengths) + len(ended)} rewards (steps + absorbing rows), got "
                              f"{len(rows)}")
    for j, i in enumerate(ended):
        tail = rows[sum(lengths) + j: sum(lengths) + j + 1] / (1.0 - discount)
        steps[i] = torch.cat([steps[i], tail])
    return steps


class LoRAOneStepShapingHypergradient(HypergradientMethod):
    """LIRPG/BiPaRS one-step hypergradient of the task return through the LoRA inner loop (module docstring).

    ``compute`` runs one inner solve on ``r + F_θ`` (warm start), then estimates ``dL/dθ = −(1/N) Σ_t c_t
    ∂Â^F_t/∂θ`` from the recorded episodes (all ``record_updates`` updates' worth). The reported loss is minus
    the mean undiscounted task return (goal reached) of those episodes. ``after_solve`` runs after every solve.
    ``last`` holds diagnostics of the latest estimate (episodes, train task return, ``‖g‖``, ``c`` spread).
    """

    name = "lora_one_step_policy_gradient"
    fresh_each_step = True  # every compute trains the adapter: one solve per outer step

    def __init__(self, after_solve: Callable[[], None] | None = None, chunk_size: int | None = None) -> None:
        self.after_solve = after_solve
        self.chunk_size = chunk_size
        self.last: dict[str, Any] = {}

    def compute(self, problem: BilevelProblem) -> Hypergradient:
        inner, model = problem.inner, problem.reward_model
        if not isinstance(inner, LoRAInnerSolver):
            raise ValidationError(f"inner: {self.name} needs a LoRAInnerSolver, got {type(inner).__name__}")
        if not isinstance(model, ShapedTaskReward):
            raise ValidationError(f"reward_model: {self.name} needs a ShapedTaskReward (r + F_θ), got "
                                  f"{type(model).__name__}")
        if model.env_name != inner.env.name:
            raise ValidationError(f"reward_model: built for the {model.env_name} environment, the inner solver acts "
                                  f"in {inner.env.name}")
        inner.solve(model)
        if self.after_solve is not None:
            self.after_solve()
        return self.estimate(inner, model, problem.parameters)

    def estimate(self, inner: LoRAInnerSolver, model: ShapedTaskReward,
                 parameters: Sequence[torch.nn.Parameter]) -> Hypergradient:
        """The one-step estimate from ``inner``'s recorded episodes (no training)."""
        episodes = inner.episodes
        gamma = inner.config.discount
        dtype = torch.float64
        batch, _, _ = inner.episode_transitions(episodes, dtype)
        with torch.no_grad():
            task_rows = model.task(batch).total.to(dtype)
        task = episode_sequences(task_rows, episodes, gamma)
        returns = [float(r.sum()) for r in task]  # undiscounted (the absorbing tail of a sparse reward is 0)
        steps = [len(e.state_indices) for e in episodes]
        n = len(episodes)
        advantages_full, _ = task_advantages(task, gamma)
        # Keep the advantages of real steps only (a trailing absorbing entry has no action to score).
        advantages = torch.cat([a[:s] for a, s in zip(torch.split(advantages_full, [len(r) for r in task]), steps)])
        policy_parameters = list(inner.parameters)
        if not bool(advantages.abs().gt(0).any()):
            # Every episode has the same task return-to-go profile (e.g. no success yet): g = 0, no estimate.
            self.last = {"episodes": n, "train_return": sum(returns) / n, "task_gradient_norm": 0.0,
                         "direction_std": 0.0}
            return Hypergradient(-sum(returns) / n, [torch.zeros_like(p) for p in parameters])
        prompt_ids = [ids for e in episodes for ids in e.prompt_ids]
        completion_ids = [ids for e in episodes for ids in e.completion_ids]
        sequences = collate_completions(prompt_ids, completion_ids, inner.tokenizer.pad_token_id)
        # enable_grad: the bilevel solver may call under no_grad. The math attention kernel: the fused CPU kernels
        # have no double backward, which c_t needs (same values, a slower kernel).
        with torch.enable_grad(), sdpa_kernel(SDPBackend.MATH):
            log_prob, _ = batch_logprobs(inner.model, sequences, self.chunk_size)  # [N_steps]
            c, g = policy_gradient_directions(log_prob, policy_parameters, advantages, n)
            shaping = model.shaping_total(batch).to(dtype)
            surrogate = one_step_shaping_surrogate(c.to(dtype), episode_sequences(shaping, episodes, gamma), gamma,
                                                   n, steps)
            gradients = parameter_gradients(surrogate, list(parameters)) if surrogate.requires_grad else [
                torch.zeros_like(p) for p in parameters]
        self.last = {"episodes": n, "train_return": sum(returns) / n,
                     "task_gradient_norm": float(torch.stack([(x.double() ** 2).sum() for x in g]).sum().sqrt()),
                     "direction_std": float(c.double().std()) if len(c) > 1 else 0.0}
        return Hypergradient(-sum(returns) / n, gradients)
