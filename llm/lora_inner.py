"""The LoRA inner solver: a LoRA-tuned causal LM acting in a finite text environment, trained on the current reward.

``LoRAInnerSolver`` implements the core's ``irl_bilevel.inner.InnerSolver`` protocol, so the same
``irl_bilevel.solver.BilevelSolver`` and hypergradient classes that drive the tabular and SB3 inner loops drive it.

Acting: an episode starts at one of the env's start states; at every step the prompt is the rendered observation
(``env.render_state``), the action is a completion sampled from the policy LM (up to ``max_new_tokens`` tokens or
the EOS token; the built-in tokenizer has no newline token, and the env's parser reads the first line anyway) and
``env.step`` parses it: malformed and invalid text is counted and never ends an episode. Episodes of one update run
in lockstep (one batched ``generate`` call per step over the episodes still running).

Reward model input (the featurization of ``llm.agentic.export``, fixed by the env's tabular export): per step,
``Transitions(states = one-hot state index [S], actions = one-hot action column [A + 2])``, where columns ``A`` and
``A + 1`` are malformed text and a parsed action outside the canonical list. ``export.AspectTableReward`` (per-aspect
scales on the env's true aspects ``success, invalid, malformed, progress, step``) reads it, so malformed steps get
the learned malformed penalty. A multi-aspect reward model's aspect names must be the env's (``check_aspect_names``);
a scalar one (a single aspect, e.g. ``irl_bilevel.rewards.TabularReward`` over ``[S] × [A + 2]``) is taken as it is.

Training (``solve``; episode-level RLOO with a KL penalty, the multi-step form of ``llm.training.train_rl``): each
update draws ``starts_per_update`` start states (seeded by the update count) and rolls ``k = episodes_per_start``
episodes from each. The episode's penalized return is

    ``R_i = Σ_t γ^t r_θ(s_t, a_t) + [terminated] γ^T/(1−γ) r_θ(s_abs) − β Σ_t (log π(y_t|x_t) − log π_ref(y_t|x_t))``

(detached; ``π_ref`` = the adapter disabled; the absorbing term is the core's convention for terminated episodes,
``irl_bilevel.objectives.absorbing_transitions``; a move-cap truncation has none), the advantages are RLOO's
leave-one-out ones over the ``k`` episodes of the same start (``llm.training.rloo_advantages``) and the loss is
``−(1/N) Σ_i A_i Σ_t log π(y_t|x_t)``, one AdamW step on the adapter (clipped): the RL step of
``llm.training.train_rl`` (``llm.training.policy_gradient_losses`` through ``llm.accelerated.TrainingEngine``) with an
episode's completions summed. The adapter and its optimizer carry over between solves (warm start).

Learner samples: the episodes of the last ``record_updates`` updates (collected by the policy before each update,
as the SB3 inner solver's rollout). ``learner_reward_expectation(θ)`` is their ``Σ w r_θ / Σ w`` with ``w = γ^t``
per step and ``γ^T/(1−γ)`` on the absorbing row of a terminated episode, differentiable in θ: the learner term of
the sample MaxEnt / ML-IRL gradient, matching :func:`demonstration_objective`'s expert term. Truncated episodes lose
their tail mass (a bias the expert side, whose episodes all terminate, does not have).
"""

from __future__ import annotations

import copy
import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import torch

from irl_bilevel.inner import WeightedTransitionsExpectation
from irl_bilevel.objectives import (
    SampleMaxEntObjective,
    absorbing_transitions,
    concatenate_transitions,
    sample_rows,
)
from irl_bilevel.rewards import RewardModel, Transitions
from irl_bilevel.validation import ValidationError
from llm.accelerated import LoopSettings, TrainingEngine
from llm.agentic.base import FiniteTextEnv, check_aspect_names
from llm.agentic.export import (
    TabularExport,
    action_column,
    build_tabular_mdp,
    episode_steps,
    one_hot_demonstrations,
    solver_plans,
    step_inputs,
)
from llm.agentic.metrics import EpisodeRecord
from llm.models import batch_logprobs, collate_completions, generate_completions, reference_logprobs
from llm.training import PolicyGradientOutput, policy_gradient_losses, rloo_advantages, trainable_parameters


@dataclass(frozen=True)
class LoRAInnerConfig:
    """Settings of :class:`LoRAInnerSolver` (see the module docstring for the update)."""

    updates_per_solve: int = 4
    starts_per_update: int = 4
    episodes_per_start: int = 4
    kl_coef: float = 0.05
    learning_rate: float = 1e-3
    max_grad_norm: float | None = 1.0
    max_new_tokens: int = 4
    temperature: float = 1.0
    discount: float = 0.9
    record_updates: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("updates_per_solve", "starts_per_update", "max_new_tokens", "record_updates"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValidationError(f"{name}: expected a positive integer, got {value!r}")
        if not isinstance(self.episodes_per_start, int) or self.episodes_per_start < 2:
            raise ValidationError(f"episodes_per_start: RLOO's leave-one-out baseline needs at least 2 episodes "
                                  f"per start, got {self.episodes_per_start!r}")
        if not 0.0 <= self.discount < 1.0:
            raise ValidationError(f"discount: expected 0 <= discount < 1, got {self.discount}")
        for name in ("kl_coef", "learning_rate", "temperature"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0) or (name != "kl_coef" and value == 0):
                raise ValidationError(f"{name}: expected a {'non-negative' if name == 'kl_coef' else 'positive'} "
                                      f"number, got {value}")


@dataclass
class TextEpisode:
    """One rolled-out episode: the env's record, the sampled token ids per step, and its indices."""

    record: EpisodeRecord
    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]
    state_indices: list[int]
    action_columns: list[int]
    final_state: int
    terminated: bool


class LoRAPolicy:
    """The policy LM seen through the core's ``Policy`` protocol on the exported indices.

    ``log_prob(states, actions)``: ``log π(format_action(a) + EOS | render_state(s))`` summed over the completion's
    tokens; ``states [B]`` indices or ``[B, S]`` one-hot, ``actions [B]`` canonical action indices. ``act``
    samples completions and returns their action columns (``A`` malformed, ``A + 1`` unlisted).
    """

    def __init__(self, solver: LoRAInnerSolver) -> None:
        self.solver = solver

    def _state_indices(self, states: torch.Tensor) -> list[int]:
        return (states.argmax(-1) if states.is_floating_point() else states.long()).reshape(-1).tolist()

    def log_prob(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        solver = self.solver
        export, env, tokenizer = solver.export, solver.env, solver.tokenizer
        columns = actions.long().reshape(-1).tolist()
        if any(not 0 <= c < len(export.actions) for c in columns):
            raise ValidationError(f"actions: expected canonical action indices in [0, {len(export.actions)}); "
                                  "malformed and unlisted actions have no text to score")
        prompts = [env.render_state(export.states[i]) for i in self._state_indices(states)]
        texts = [env.format_action(export.actions[c]) for c in columns]
        prompt_ids = tokenizer(prompts, add_special_tokens=True)["input_ids"]
        completion_ids = [[*ids, tokenizer.eos_token_id] for ids in
                          tokenizer(texts, add_special_tokens=False)["input_ids"]]
        batch = collate_completions(prompt_ids, completion_ids, tokenizer.pad_token_id)
        summed, _ = batch_logprobs(solver.model, batch)
        return summed.to(torch.get_default_dtype())

    def act(self, states: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        solver = self.solver
        prompts = [solver.env.render_state(solver.export.states[i]) for i in self._state_indices(states)]
        seed = 0 if generator is None else int(torch.randint(2**31 - 1, (1,), generator=generator))
        samples = generate_completions(solver.model, solver.tokenizer, prompts, solver.config.max_new_tokens,
                                       temperature=solver.config.temperature, seed=seed)
        return torch.tensor([action_column(solver.env, solver.export, text) for text in samples.texts])


class LoRAInnerSolver(WeightedTransitionsExpectation):
    """``InnerSolver`` over a LoRA-adapted causal LM acting in a ``FiniteTextEnv`` (module docstring).

    Args:
        model: a peft model (``llm.models.with_lora``); its adapter is what trains, the adapter-disabled model is
            the reference.
        tokenizer: the model's tokenizer (pad and EOS tokens set).
        env: the text environment (its aspects name the reward's aspects).
        config: :class:`LoRAInnerConfig`.
        export: the env's tabular export (built with ``config.discount`` if omitted); it fixes the featurization.
    """

    def __init__(self, model, tokenizer, env: FiniteTextEnv, config: LoRAInnerConfig | None = None,
                 export: TabularExport | None = None) -> None:
        if not isinstance(env, FiniteTextEnv):
            raise ValidationError(f"env: expected a FiniteTextEnv (the featurization is its tabular export), got "
                                  f"{type(env).__name__}")
        self.model, self.tokenizer, self.env = model, tokenizer, env
        self.config = config or LoRAInnerConfig()
        self.export = export if export is not None else build_tabular_mdp(env, self.config.discount)
        self.parameters = trainable_parameters(model)
        self.optimizer = torch.optim.AdamW(self.parameters, lr=self.config.learning_rate, weight_decay=0.0)
        self.engine = TrainingEngine(model, self.optimizer, LoopSettings(), total_steps=None,
                                     max_grad_norm=self.config.max_grad_norm, what="LoRA inner solver",
                                     loop="lora_inner")
        self.updates = 0
        self.recorded: deque[list[TextEpisode]] = deque(maxlen=self.config.record_updates)
        self.history: list[dict[str, float]] = []

    # ---------------------------------------------------------------- rollouts
    def rollout(self, starts: list[int], seed: int) -> list[TextEpisode]:
        """One episode from each start index (in order), all in lockstep; sampling seeded by ``seed`` and the step."""
        envs = [copy.copy(self.env) for _ in starts]
        observations: list[str] = []
        records: list[EpisodeRecord] = []
        tokens: list[tuple[list[list[int]], list[list[int]]]] = []  # (prompt ids, completion ids) per step
        for env, start in zip(envs, starts):
            observation, info = env.reset(options={"start": start})
            observations.append(observation)
            records.append(EpisodeRecord(env.name, start, seed, False, 0, 0, 0, info["optimal_length"],
                                         states=[env.state]))
            tokens.append(([], []))
        running = list(range(len(envs)))
        step = 0
        while running:
            samples = generate_completions(self.model, self.tokenizer, [observations[i] for i in running],
                                           self.config.max_new_tokens, temperature=self.config.temperature,
                                           seed=seed * 1_000_003 + step)
            still = []
            for row, i in enumerate(running):
                observation = observations[i]
                observations[i], reward, terminated, truncated, info = envs[i].step(samples.texts[row])
                records[i].add_move(observation, samples.texts[row], reward, info)
                tokens[i][0].append(samples.prompt_ids[row])
                tokens[i][1].append(samples.completion_ids[row])
                if not (terminated or truncated):
                    still.append(i)
            running, step = still, step + 1
        episodes = []
        for record, (prompt_ids, completion_ids) in zip(records, tokens):
            steps = episode_steps(self.env, self.export, record)
            episodes.append(TextEpisode(record, prompt_ids, completion_ids, steps.state_indices,
                                        steps.action_columns, steps.final_state, steps.terminated))
        return episodes

    # ---------------------------------------------------------------- reward-model input
    def episode_transitions(self, episodes: list[TextEpisode], dtype: torch.dtype | None = None
                            ) -> tuple[Transitions, torch.Tensor, torch.Tensor]:
        """Reward-model input of ``episodes``: ``(batch, weights [M], episode_of_row [M])``.

        Rows: every step (weight ``γ^t``), then one absorbing row per terminated episode (weight
        ``γ^T/(1−γ)``); ``episode_of_row [M]`` maps rows to episodes (for per-episode returns).
        """
        gamma = self.config.discount
        states, next_states, columns, weights, owners = [], [], [], [], []
        for e, episode in enumerate(episodes):
            states += episode.state_indices
            next_states += [*episode.state_indices[1:], episode.final_state]
            columns += episode.action_columns
            weights += [gamma**t for t in range(len(episode.state_indices))]
            owners += [e] * len(episode.state_indices)
        state_inputs, action_inputs = step_inputs(self.export, states, columns, dtype)
        next_inputs, _ = step_inputs(self.export, next_states, columns, dtype)
        # done = 0 everywhere: a terminated episode continues in its absorbing row (potential shaping telescopes).
        parts = [Transitions(state_inputs, action_inputs, next_inputs, torch.zeros(len(states), dtype=torch.bool))]
        ended = [e for e, episode in enumerate(episodes) if episode.terminated]
        if ended:
            final, _ = step_inputs(self.export, [episodes[e].final_state for e in ended], [0] * len(ended), dtype)
            parts.append(absorbing_transitions(final, self.export.num_action_inputs))
            weights += [gamma ** len(episodes[e].state_indices) / (1.0 - gamma) for e in ended]
            owners += ended
        batch = concatenate_transitions(parts) if len(parts) > 1 else parts[0]
        return batch, torch.tensor(weights, dtype=torch.float64), torch.tensor(owners, dtype=torch.long)

    def check_reward_model(self, reward_model: RewardModel) -> None:
        """A scalar reward (one aspect, e.g. a free ``TabularReward`` over the featurization) is accepted; a
        multi-aspect reward's aspects must be the env's, optionally followed by ``PotentialShaping``'s
        ``shaping`` (a clear ``ValidationError`` otherwise)."""
        names = tuple(reward_model.aspect_names)
        if len(names) == 1:
            return
        if names[-1:] == ("shaping",) and len(names) == len(self.env.aspect_names) + 1:
            names = names[:-1]
        check_aspect_names(self.env, names)

    # ---------------------------------------------------------------- InnerSolver
    def solve(self, reward_model: RewardModel) -> None:
        self.check_reward_model(reward_model)
        with torch.enable_grad():  # hypergradient methods call solve() under no_grad; the adapter's update needs it
            for _ in range(self.config.updates_per_solve):
                self.update(reward_model)

    def update(self, reward_model: RewardModel) -> dict[str, float]:
        """One RLOO step on the adapter (module docstring; :func:`llm.training.policy_gradient_losses` through the
        training engine, as :func:`llm.training.train_rl`); records the episodes it rolled out."""
        config, k = self.config, self.config.episodes_per_start
        generator = torch.Generator().manual_seed(config.seed * 7919 + self.updates)
        starts = torch.randint(len(self.env.starts), (config.starts_per_update,), generator=generator)
        episodes = self.rollout([int(s) for s in starts for _ in range(k)], config.seed * 104_729 + self.updates)
        batch, weights, owners = self.episode_transitions(episodes)
        with torch.no_grad():
            dtype = next(iter(reward_model.parameters()), torch.empty(0, dtype=torch.float64)).dtype
            rewards = reward_model(batch.to(dtype)).total.double()
        returns = torch.zeros(len(episodes), dtype=torch.float64).index_add_(0, owners, weights * rewards)
        prompt_ids = [ids for e in episodes for ids in e.prompt_ids]
        completion_ids = [ids for e in episodes for ids in e.completion_ids]
        step_owner = torch.tensor([i for i, e in enumerate(episodes) for _ in e.prompt_ids])
        tokens = torch.tensor([float(sum(len(ids) for ids in e.completion_ids)) for e in episodes])

        def compute(part: None) -> PolicyGradientOutput:  # one micro-batch: every episode
            sequences = collate_completions(prompt_ids, completion_ids, self.tokenizer.pad_token_id)
            summed, _ = batch_logprobs(self.model, sequences)
            reference, _ = reference_logprobs(self.model, sequences)
            return policy_gradient_losses(summed, reference, returns, config.kl_coef,
                                          lambda penalized: rloo_advantages(penalized, k), tokens, step_owner)

        (output,), norm = self.engine.step([None], compute, len(episodes))
        self.updates += 1
        self.recorded.append(episodes)
        steps = sum(e.record.steps for e in episodes)
        metrics = {"update": self.updates, "return": float(returns.mean()), "kl": float(output.logratio.mean()),
                   "success_rate": sum(e.record.solved for e in episodes) / len(episodes),
                   "malformed_rate": sum(e.record.num_malformed for e in episodes) / steps,
                   "invalid_rate": sum(e.record.num_invalid for e in episodes) / steps, "grad_norm": norm}
        self.history.append(metrics)
        return metrics

    @property
    def episodes(self) -> list[TextEpisode]:
        """The recorded learner episodes (the last ``record_updates`` updates)."""
        return [episode for episodes in self.recorded for episode in episodes]

    @property
    def policy(self) -> LoRAPolicy:
        return LoRAPolicy(self)

    def learner_transitions(
        self, num_samples: int | None = None, generator: torch.Generator | None = None
    ) -> tuple[Transitions, torch.Tensor]:
        """The recorded episodes' rows and weights (:meth:`episode_transitions`), ``num_samples`` of them if set."""
        episodes = self.episodes
        if not episodes:
            raise RuntimeError("solve() must be called before the learner's reward expectation is read")
        batch, weights, _ = self.episode_transitions(episodes)
        if num_samples is not None:
            rows = sample_rows(len(batch), num_samples, generator)
            batch, weights = batch.select(rows), weights[rows]
        return batch, weights

    def log_partition(self) -> float | None:
        return None

    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain containers only: the adapter's weights, its optimizer and the update count."""
        state: dict[str, Any] = {f"adapter.{name}": p.detach().clone()
                                 for name, p in self.model.named_parameters() if p.requires_grad}
        state["optimizer"] = self.optimizer.state_dict()
        state["updates"] = torch.tensor(self.updates)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        parameters = dict(self.model.named_parameters())
        with torch.no_grad():
            for key, value in state.items():
                if key.startswith("adapter."):
                    name = key[len("adapter."):]
                    if name not in parameters:
                        raise ValidationError(f"state: adapter parameter {name!r} is not in this model")
                    parameters[name].copy_(value)
        if "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])
        if "updates" in state:
            self.updates = int(state["updates"])


def demonstration_objective(env: FiniteTextEnv, export: TabularExport, discount: float,
                            plans: list[tuple[Any, list[Any]]] | None = None) -> SampleMaxEntObjective:
    """The core's ``SampleMaxEntObjective`` on text demonstrations (the optimal solver's plans by default), in the
    featurization of :class:`LoRAInnerSolver`: one-hot states, action columns over ``A + 2``, absorbing state
    after the goal (same convention as the learner samples)."""
    data = one_hot_demonstrations(env, export, plans if plans is not None else solver_plans(env))
    return SampleMaxEntObjective(data.demonstrations, discount, num_actions=export.num_action_inputs,
                                 terminated=data.terminated, final_observations=data.final_observations)
