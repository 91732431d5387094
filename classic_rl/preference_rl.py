"""`irlb preference-rl`: deep RL from preferences (Christiano et al. 2017) through the bilevel solver.

Upper level: the preference likelihood of every query labelled so far
(:class:`~irl_bilevel.preference_likelihood.PreferenceLikelihood`, any pairwise loss of the catalog by name:
``bradley_terry`` by default, ``robust_bradley_terry`` / ``smoothed_bradley_terry`` against label noise, the tie
models ``rao_kupper`` / ``davidson``). Lower level: :class:`~classic_rl.sb3_inner.SB3InnerSolver` (PPO by default,
SAC for continuous control) trained on the learned reward, warm-started. Hypergradient: the direct gradient
(:class:`~irl_bilevel.hypergradients.DirectHypergradient`): the loss depends on θ only through ``r_θ`` on fixed
segments (``refresh="every_step"``). Each outer step:

1. the inner solver trains for its budget on the current reward;
2. :meth:`PreferenceRLObjective.refresh` appends the learner's new transitions (with their true rewards) to a
   rolling window, and in a feedback session (:func:`~irl_bilevel.query_selection.query_schedule` over the first
   ``query_fraction`` of the run) cuts segments from it, draws candidate pairs, selects ``k`` of them (uniform,
   ensemble disagreement, entropy, or k-center + disagreement), has a B-Pref teacher label them and adds them
   (with ``termination_queries``, only pairs that contain a termination, see below);
3. the outer optimizer fits the reward to all labelled data: ``reward_iterations`` L-BFGS iterations (strong-Wolfe
   line search; default) or one Adam step, on the direct gradient of the likelihood (plus ``l2/2 ‖θ‖²``).

Episode semantics (:mod:`classic_rl.learned_reward_env`): segments have a fixed length ``L``. A segment that reaches a
*termination* after ``n < L`` real steps is padded with ``L − n`` absorbing steps: true reward 0 (what the teacher
sums), reward-model input the absorbing state (DAC's separate state with ``absorbing_indicator``; its learned value
is the same one the inner solver uses after terminations, ``classic_rl.learned_reward_env``). On CartPole-v1 this
is what gives segments a signal at all: equal-length segments without a termination all return ``L``. A segment never
crosses a *truncation* (time limit) or a restart: starts whose episode runs out of recorded steps before ``L``
without terminating are not used. The inner solver trains on :class:`AbsorbingAnchoredReward`, ``r_θ − r_θ(absorbing)``:
a constant shift, invisible to the preference likelihood (equal-length segments) and to the absorbing-state inner
problem, that spares the agent a ``γ/(1 − γ) · r_abs`` spike on every terminal transition (which would otherwise
dominate its updates while the reward is still being learned).

The output folder receives the same files as ``irlb gym-irl``: ``config.json`` (config, seed, versions, commit),
``metrics.jsonl`` (per outer step: loss, queries used, labelled pairs, true and normalized return every
``eval_every`` steps and at the end, env steps), ``policy.zip``, ``reward.safetensors`` + ``reward.json`` (member
``m`` of an ensemble as ``reward_member_<m>``), ``summary.json``. A finished folder is not rerun (its summary is
returned); an unfinished one is started over (the labelled dataset is not checkpointed).

Termination-aware queries (``termination_queries``, off by default). On tasks whose true reward is constant per
real step and whose episodes end by a *termination* (Acrobot-v1 and MountainCar-v0: −1 per step until the goal;
CartPole-v1: +1 per step until the pole falls), two equal-length segments without a termination have equal true
return, so any teacher that judges true return can only answer "equal" (the oracle labels an exact tie 0.5, which
the Bradley-Terry likelihood drops). Early in an Acrobot-v1 run no learner segment reaches the goal, so the queries
of the first sessions are spent on ties, and a seed whose learner never reaches the goal gets no preference at
all. With the option on:

* *pool*: up to half of the ``2 × candidate_factor × k`` segments cut for a session are drawn from the admissible
  starts whose episode terminates within the segment, the rest from the others (uniformly within each group);
* *pairs*: every candidate pair contains at least one such segment (its first segment is drawn from them, its
  second from the whole pool), before the selection method picks ``k`` of them;
* *postponement*: a session whose window holds no segment with a termination asks nothing; its queries are owed
  to the next refresh (the same carry-over as a window with too few pairs), so they are asked, and counted in
  ``queries_used``, once the learner first terminates, possibly after the first ``query_fraction`` of the run. A
  run whose learner never terminates asks nothing and says so: ``queries_used`` counts only asked queries, the
  summary's ``queries_unasked`` is ``query_budget − queries_used`` and ``postponed_sessions`` the refreshes that
  owed queries but found no termination.

Justification: the rule reads only the env's ``terminated`` flag, which the learner observes (it is what the
absorbing-state padding already uses), never the true reward, so the teacher is not consulted more or
differently than before; it is a prior on *where* preferences are informative (around terminations), not on
which segment is better (a termination is a goal on Acrobot and a failure on CartPole, and the teacher decides).
It is exact for the constant-reward tasks above (a pair without a termination is a guaranteed tie) and a
heuristic elsewhere: on tasks with a shaped per-step reward it discards informative pairs, and on tasks that never
terminate (Pendulum-v1) it never asks, hence opt-in. With the option off the generator draws and every number are
those of the code before it (CartPole-v1 and Pendulum-v1 runs, ``benchmarks/results/preferences_vs_imitation.json``).
On Acrobot-v1 (``classic_rl.experiments.preference_feedback``, part ``harder``) it turns the ties into preferences
but leaves the final returns unchanged: it fixes the query side only.

Exploration before the first label (``exploration="state_entropy"``, off by default). Until the objective holds a
decided label the learned reward is its random initialization, and the bilevel solver leaves it so (no outer step
without feedback). On Acrobot-v1 the policy PPO trains on that reward pays living more than the absorbing goal
state on most seeds, never reaches the goal, and with ``termination_queries`` no query is ever asked. PEBBLE (Lee,
Smith, Abbeel 2021) trains the agent first on an intrinsic state-entropy reward (:mod:`irl_bilevel.exploration`):
:class:`ExploringInnerSolver` does that for every solve before the first decided label (its reference states are
the learner's last recorded ones), then trains on the learned reward. It reads no true reward and no teacher; it
prefers states unlike the recent ones, and on Acrobot-v1 the swinging it learns reaches the goal within a few
thousand steps. Not in the state of the run: the normalizer's running statistics (``normalize_reward``) include
the exploration phase's rewards.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import gymnasium as gym
import numpy as np
import torch

from classic_rl.experts import evaluate_policy_return, normalized_return, random_policy_return, train_expert
from classic_rl.learned_reward_env import AbsorbingAnchoredReward, LearnedRewardVecEnv
from classic_rl.sb3_inner import SB3InnerSolver
from irl_bilevel.config import Config, NonNegativeFloat, OneOf, PositiveFloat, PositiveInt, Range, Seed
from irl_bilevel.exploration import StateEntropyReward
from irl_bilevel.hypergradients import BilevelProblem, DirectHypergradient
from irl_bilevel.objectives import absorbing_transitions
from irl_bilevel.preference_likelihood import PAIRWISE_SCORE_LOSSES, PreferenceLikelihood, check_loss_options
from irl_bilevel.query_selection import (
    query_schedule,
    select_disagreement,
    select_entropy,
    select_k_center_disagreement,
    select_uniform,
)
from irl_bilevel.reward_ensemble import RewardEnsemble
from irl_bilevel.reward_io import RewardSpec, build_reward_model, save_reward_model
from irl_bilevel.rewards import RewardModel, Transitions
from irl_bilevel.runs import (
    RUN_RECORD,
    begin_run,
    claim_run_folder,
    remove_own_files,
    write_json,
    write_metrics,
)
from irl_bilevel.solver import BilevelSolver, OuterConfig
from irl_bilevel.teachers import Teacher, bpref_teachers
from irl_bilevel.validation import ValidationError, build_named, read_json_file

SELECTIONS = ("uniform", "disagreement", "entropy", "diversity")
TEACHERS = tuple(t.name for t in bpref_teachers())

# Inner-loop defaults per env (SB3 constructor arguments): rl-zoo's settings with constant learning rates (a
# linear schedule would restart at every warm-started learn() call).
INNER_DEFAULTS: dict[str, tuple[str, int, dict[str, Any]]] = {
    "CartPole-v1": ("ppo", 8, {"n_steps": 32, "batch_size": 256, "gae_lambda": 0.8, "gamma": 0.98, "n_epochs": 20,
                               "ent_coef": 0.0, "learning_rate": 1e-3, "clip_range": 0.2}),
    "Pendulum-v1": ("sac", 1, {"learning_rate": 1e-3, "gamma": 0.99}),
}


@dataclass(frozen=True)
class PreferenceRLConfig(Config):
    """Everything a preference-RL run depends on: what ``irlb preference-rl``'s flags, ``--config`` and ``--set``
    fill and ``config.json`` records.

    ``algorithm``/``n_envs``/``hyperparameters``: ``None`` takes :data:`INNER_DEFAULTS` for the env (PPO otherwise).
    ``query_budget``: oracle queries in total, asked in ``query_sessions`` sessions spread over the first
    ``query_fraction`` of the outer steps (``query_schedule_kind``: ``constant`` or ``linear_decay``), each picking
    from ``candidate_factor × k`` random candidate pairs. ``ensemble_size`` members (> 1 for disagreement-based
    selection). ``teacher``: one of B-Pref's six (``oracle``, ``stochastic``, ``mistake``, ``skip``, ``equal``,
    ``myopic``). ``termination_queries``: draw pairs that contain a termination and postpone a session whose
    window holds none (module docstring; off by default). ``exploration``: ``"state_entropy"`` trains the inner
    solver on PEBBLE's state-entropy reward until the first decided label (:class:`ExploringInnerSolver`, module
    docstring), with ``exploration_neighbours`` the ``k`` of its k-nearest-neighbour estimate; ``"none"`` (default)
    trains on the learned reward from the start.
    """

    env_id: str = field(default="CartPole-v1", metadata={"aliases": ("--env",)})
    """gymnasium environment id, e.g. CartPole-v1, Pendulum-v1"""
    algorithm: Literal["ppo", "a2c", "sac", "dqn"] | None = None
    """the inner SB3 algorithm; null: the env's entry of INNER_DEFAULTS (PPO otherwise)"""
    n_envs: PositiveInt | None = None
    """parallel environments of the inner solver; null: the env's default"""
    hyperparameters: dict[str, Any] | None = None
    """SB3 constructor arguments; null: the env's defaults (rl-zoo's, INNER_DEFAULTS)"""
    total_env_steps: PositiveInt = 50_000
    """inner env steps of the whole run"""
    env_steps_per_outer_step: PositiveInt = 512
    """inner env steps per outer (reward) step"""
    segment_length: PositiveInt = 50
    """steps per preference segment"""
    segment_window: PositiveInt = 4096
    """recorded learner steps (all envs) that segments are cut from"""
    query_budget: int = 200
    """oracle queries in total"""
    query_sessions: PositiveInt = 10
    """feedback sessions the budget is spread over"""
    query_fraction: Annotated[float, Range(0, 1, low_open=True)] = 0.5
    """the sessions are spread over this first fraction of the outer steps"""
    query_schedule_kind: Literal["constant", "linear_decay"] = "linear_decay"
    """queries per session: equal, or decaying linearly"""
    candidate_factor: PositiveInt = 10
    """each session picks its k queries from candidate_factor × k random candidate pairs"""
    selection: Annotated[str, OneOf(SELECTIONS, "selection")] = "disagreement"
    """how queries are picked among the candidates: uniformly, by ensemble disagreement, by entropy, or k-center +
    disagreement (diversity)"""
    termination_queries: bool = False
    """draw pairs that contain a termination and postpone a session whose window holds none (module docstring)"""
    exploration: Literal["none", "state_entropy"] = "none"
    """none | state_entropy (PEBBLE's unsupervised exploration until the first label)"""
    exploration_neighbours: PositiveInt = 5
    """k of the state-entropy reward's k-nearest-neighbour estimate"""
    ensemble_size: PositiveInt = 3
    """reward models in the ensemble (disagreement and diversity selection need 2 or more)"""
    teacher: Annotated[str, OneOf(TEACHERS, "teacher")] = "oracle"
    """the simulated B-Pref teacher that labels the queries from the true reward"""
    teacher_options: dict[str, Any] = field(default_factory=dict)
    """parameters of the teacher, e.g. ``{"mistake": 0.2}``"""
    loss: Annotated[str, OneOf(PAIRWISE_SCORE_LOSSES, "pairwise loss")] = "bradley_terry"
    """the preference likelihood: a pairwise loss of the catalog on reward-model scores"""
    loss_options: dict[str, Any] = field(default_factory=dict)
    """parameters of the loss"""
    hidden_sizes: list[PositiveInt] = field(default_factory=lambda: [64, 64])
    """hidden layer widths of each reward network"""
    state_action_reward: bool = False
    """r(s); True: r(s, a) (one-hot discrete actions)"""
    absorbing_indicator: bool = True
    """DAC's separate absorbing state for padded segments and terminal transitions"""
    normalize_reward: bool = True
    """scale the learned reward by a running RMS before the agent sees it"""
    optimizer: Literal["lbfgs", "adam"] = "lbfgs"
    """lbfgs: reward_iterations L-BFGS iterations per outer step; adam: one Adam step"""
    reward_iterations: PositiveInt = 10
    """L-BFGS iterations per outer step"""
    lr: PositiveFloat = 1.0
    """1 for L-BFGS (line search); e.g. 3e-3 for Adam"""
    l2: NonNegativeFloat = 1e-4
    """weight of the (l2 / 2) ‖θ‖² penalty on the reward parameters"""
    eval_every: PositiveInt = 10
    """evaluate the policy on the true reward every this many outer steps (and at the last)"""
    eval_episodes: PositiveInt = 10
    """true-reward evaluation episodes of the policy"""
    seed: Seed = 0
    """seed of the reward models, the inner solver, the queries and the teacher"""
    eval_seed: Seed = 10_000
    """seed of the evaluation episodes (the same for every policy)"""

    def validate(self) -> None:
        try:
            gym.spec(self.env_id)
        except gym.error.Error as error:
            raise ValidationError(f"env_id: unknown gymnasium environment {self.env_id!r}") from error
        if self.query_budget < 1:
            raise ValidationError(f"query_budget: expected at least 1 oracle query (with none, the preference "
                                  f"likelihood is undefined), got {self.query_budget}")
        if self.total_env_steps < self.env_steps_per_outer_step:
            raise ValidationError(f"total_env_steps: expected at least env_steps_per_outer_step "
                                  f"({self.env_steps_per_outer_step}), got {self.total_env_steps}")
        if self.selection in ("disagreement", "diversity") and self.ensemble_size < 2:
            raise ValidationError(f"ensemble_size: {self.selection} selection needs an ensemble of at least 2 "
                                  f"reward models, got {self.ensemble_size}")
        check_loss_options(self.loss, self.loss_options)
        make_teacher(self.teacher, **self.teacher_options)  # bad options fail here, before the run writes

    @property
    def outer_steps(self) -> int:
        """Outer steps, one inner solve each: the inner loop takes ``total_env_steps`` in all (rounded down to whole
        ``env_steps_per_outer_step``)."""
        return self.total_env_steps // self.env_steps_per_outer_step

    def inner_settings(self) -> tuple[str, int, dict[str, Any]]:
        algorithm, n_envs, hyperparameters = INNER_DEFAULTS.get(self.env_id, ("ppo", 1, {}))
        if self.algorithm is not None and self.algorithm != algorithm:
            hyperparameters = {}
        return (self.algorithm or algorithm, self.n_envs or n_envs,
                dict(self.hyperparameters if self.hyperparameters is not None else hyperparameters))


def make_teacher(name: str, **options: Any) -> Teacher:
    """One of B-Pref's six teachers by name (``options`` override its parameters, e.g. ``mistake=0.2``)."""
    builders = {"oracle": Teacher.oracle, "stochastic": Teacher.stochastic, "mistake": Teacher.mistaken,
                "skip": Teacher.skipping, "equal": Teacher.equal_teacher, "myopic": Teacher.myopic}
    return build_named(builders, name, options, field="teacher", kind="teacher", options_field="teacher_options")


# ---------------------------------------------------------------------- segments from learner transitions
@dataclass
class LearnerSegments:
    """``N`` segments of ``L`` steps: reward-model ``inputs`` (``N·L`` rows, segment-major, absorbing rows after a
    termination), ``true_rewards [N, L]`` (0 on absorbing steps), ``real_steps [N]``, ``terminated [N]`` (absorbed
    before the end: ``real_steps < L``), ``features [N, obs_dim]`` (the mean real observation, a segment embedding
    for diversity-aware selection) and ``contains_termination [N]`` (a real step of the segment is terminal,
    ``real_steps ≤ L``: what ``termination_queries`` looks for; ``None``: taken as ``terminated``)."""

    inputs: Transitions
    true_rewards: torch.Tensor
    real_steps: torch.Tensor
    terminated: torch.Tensor
    features: torch.Tensor
    contains_termination: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.contains_termination is None:
            self.contains_termination = self.terminated.clone()

    def __len__(self) -> int:
        return int(self.true_rewards.shape[0])

    @property
    def length(self) -> int:
        return int(self.true_rewards.shape[1])

    @property
    def true_returns(self) -> torch.Tensor:
        return self.true_rewards.sum(dim=1)

    def rows(self, index: torch.Tensor) -> Transitions:
        """The inputs of segments ``index`` (``len(index)·L`` rows, segment-major)."""
        steps = (index.long()[:, None] * self.length + torch.arange(self.length)[None, :]).reshape(-1)

        def pick(value: torch.Tensor | None) -> torch.Tensor | None:
            return None if value is None else value[steps]

        return Transitions(self.inputs.states[steps], pick(self.inputs.actions), pick(self.inputs.next_states),
                           pick(self.inputs.dones))


class TransitionWindow:
    """The last ``capacity // n_envs`` recorded steps of each env, kept across solves (episodes continue across
    warm-started solves, so each env's rows form one stream; a restart shows as a break in the time index)."""

    KEYS = ("states", "actions", "next_states", "time", "terminated", "true_rewards")

    def __init__(self, n_envs: int, capacity: int) -> None:
        self.n_envs = n_envs
        self.per_env = max(1, capacity // n_envs)
        self.streams: list[dict[str, np.ndarray] | None] = [None] * n_envs

    def extend(self, recorded: dict[str, np.ndarray]) -> None:
        """Append rows of :meth:`LearnedRewardVecEnv.recorded` (step-major over ``n_envs``)."""
        missing = [key for key in self.KEYS if key not in recorded]
        if missing:
            raise ValidationError(f"recorded: missing {missing}; the wrapper records true rewards since this "
                                  f"module was added")
        for i in range(self.n_envs):
            part = {key: np.asarray(recorded[key])[i::self.n_envs] for key in self.KEYS}
            current = self.streams[i]
            merged = part if current is None else {k: np.concatenate([current[k], part[k]]) for k in self.KEYS}
            self.streams[i] = {k: v[-self.per_env:] for k, v in merged.items()}

    @property
    def size(self) -> int:
        return sum(0 if s is None else len(s["time"]) for s in self.streams)


def segment_starts(time_index: np.ndarray, terminated: np.ndarray, length: int) -> list[tuple[int, int, bool]]:
    """Admissible segment starts in one env's stream: ``(start, real_steps, terminated)``.

    A start is admissible when the next ``length`` rows continue its episode (time index ``+1`` each row), or when
    the episode terminates within them (the rest is absorbing). Starts whose episode leaves the window, is
    truncated or restarted before ``length`` steps are not.
    """
    n = len(time_index)
    run = np.zeros(n, dtype=np.int64)  # contiguous steps from k to the end of k's episode inside the window
    ends_terminated = np.zeros(n, dtype=bool)
    for k in range(n - 1, -1, -1):
        continues = k + 1 < n and not terminated[k] and time_index[k + 1] == time_index[k] + 1
        run[k] = run[k + 1] + 1 if continues else 1
        ends_terminated[k] = ends_terminated[k + 1] if continues else bool(terminated[k])
    starts = []
    for k in range(n):
        if run[k] >= length:
            starts.append((k, length, False))
        elif ends_terminated[k]:
            starts.append((k, int(run[k]), True))
    return starts


def cut_learner_segments(window: TransitionWindow, env: LearnedRewardVecEnv, length: int, count: int,
                         generator: torch.Generator, termination_share: float = 0.0) -> LearnerSegments:
    """Up to ``count`` distinct segments of ``length`` steps drawn uniformly from the window's admissible starts
    (see the module docstring for the absorbing padding).

    ``termination_share > 0``: up to ``ceil(termination_share · count)`` of them are drawn (uniformly) from the
    starts whose episode terminates within the segment, the rest from the other starts (``termination_queries``);
    ``0`` draws exactly as before the option existed (one permutation of all starts).
    """
    if not 0.0 <= termination_share <= 1.0:
        raise ValidationError(f"termination_share: expected a fraction in [0, 1], got {termination_share}")
    candidates = []
    for i, stream in enumerate(window.streams):
        if stream is None:
            continue
        candidates += [(i, *start) for start in segment_starts(stream["time"], stream["terminated"], length)]
    if not candidates:
        raise ValidationError(f"segment_length: no admissible segment of {length} steps in the {window.size} recorded "
                              f"learner steps (raise segment_window or lower segment_length)")
    if termination_share > 0.0:
        ending = [c for c, candidate in enumerate(candidates) if candidate[3]]
        others = [c for c, candidate in enumerate(candidates) if not candidate[3]]
        take = min(len(ending), math.ceil(termination_share * count))
        picks = [ending[p] for p in torch.randperm(len(ending), generator=generator)[:take].tolist()]
        picks += [others[p] for p in torch.randperm(len(others), generator=generator)[:count - take].tolist()]
    else:
        picks = torch.randperm(len(candidates), generator=generator)[:count].tolist()
    states, actions, next_states, rewards, real, ended, features, contains = [], [], [], [], [], [], [], []
    for pick in picks:
        i, start, steps, terminated = candidates[pick]
        stream = window.streams[i]
        assert stream is not None
        stop = start + steps
        s = torch.from_numpy(stream["states"][start:stop]).double()
        s_next = torch.from_numpy(stream["next_states"][start:stop]).double()
        a = torch.from_numpy(stream["actions"][start:stop]).double()
        model_s, model_next = env.reward_inputs(s, s_next, torch.from_numpy(stream["terminated"][start:stop]))
        r = np.zeros(length)
        r[:steps] = stream["true_rewards"][start:stop]
        if terminated and steps < length:
            pad = absorbing_transitions(s_next[-1:].expand(length - steps, -1), env.action_dim,
                                        env.absorbing_indicator)
            assert pad.actions is not None and pad.next_states is not None
            model_s = torch.cat([model_s, pad.states])
            model_next = torch.cat([model_next, pad.next_states])
            a = torch.cat([a, pad.actions])
        states.append(model_s)
        next_states.append(model_next)
        actions.append(a)
        rewards.append(torch.from_numpy(r))
        real.append(steps)
        ended.append(terminated and steps < length)
        contains.append(terminated)
        features.append(s.mean(dim=0))
    inputs = Transitions(torch.cat(states), torch.cat(actions), torch.cat(next_states),
                         torch.zeros(len(picks) * length, dtype=torch.bool))
    return LearnerSegments(inputs, torch.stack(rewards), torch.tensor(real), torch.tensor(ended),
                           torch.stack(features), torch.tensor(contains, dtype=torch.bool))


def member_segment_returns(model: RewardModel | RewardEnsemble, segments: LearnerSegments,
                           index: torch.Tensor) -> torch.Tensor:
    """``[M, len(index)]`` learned returns of segments ``index`` per ensemble member (``M = 1`` for one model)."""
    members = list(model.members) if isinstance(model, RewardEnsemble) else [model]
    batch = segments.rows(index)
    with torch.no_grad():
        out = []
        for member in members:
            dtype = next(iter(member.parameters())).dtype
            out.append(member(batch.to(dtype)).total.reshape(len(index), segments.length).sum(dim=1).double())
    return torch.stack(out)


def select_queries(selection: str, model: RewardModel | RewardEnsemble, segments: LearnerSegments,
                   first: torch.Tensor, second: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of the ``k`` candidate pairs ``(first[c], second[c])`` to ask about."""
    if selection == "uniform":
        return select_uniform(len(first), k, generator)
    r1, r2 = member_segment_returns(model, segments, first), member_segment_returns(model, segments, second)
    if selection == "disagreement":
        return select_disagreement(r1, r2, k)
    if selection == "entropy":
        return select_entropy(r1, r2, k)
    embeddings = torch.cat([segments.features[first], segments.features[second]], dim=1)
    return select_k_center_disagreement(r1, r2, embeddings, k)


class ExploringInnerSolver:
    """An :class:`SB3InnerSolver` that trains on PEBBLE's state-entropy reward until the feedback says anything.

    ``solve(reward_model)`` trains on ``reward_model`` once ``has_feedback()`` is True (the preference objective
    holds a decided label); before that, on :class:`~irl_bilevel.exploration.StateEntropyReward` against the
    reward-model inputs of the learner's last ``reference_size`` recorded states (PEBBLE's unsupervised
    pre-training, Lee et al. 2021, run until the first label instead of for a fixed number of steps). The very first
    solve, before any state has been recorded, trains on ``reward_model`` as without exploration. Everything else is
    the wrapped solver's (attribute access is delegated), so the objective's ``refresh`` reads the same recorded
    transitions. Why: before the first decided label the learned reward is its random initialization, and on a task
    whose only informative event is rare (Acrobot-v1's goal) a policy trained on it may never produce that event,
    so no query ever becomes informative (``results/preference_feedback.json``, part ``harder``).
    """

    def __init__(self, inner: SB3InnerSolver, has_feedback: Callable[[], bool], neighbours: int = 5,
                 reference_size: int = 2048) -> None:
        if reference_size <= neighbours:
            raise ValidationError(f"reference_size: expected more than {neighbours} states, got {reference_size}")
        self.inner, self.has_feedback, self.reference_size = inner, has_feedback, int(reference_size)
        state_dim = inner.env.obs_dim + int(inner.env.absorbing_indicator)
        self.exploration = StateEntropyReward(state_dim, neighbours, inner.env.absorbing_indicator)
        self.states: np.ndarray | None = None  # the reference: raw observations of the last recorded steps
        self.exploring_solves = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def solve(self, reward_model: RewardModel) -> None:
        if self.has_feedback() or self.states is None:
            self.inner.solve(reward_model)
        else:
            states = torch.from_numpy(self.states)
            reference, _ = self.inner.env.reward_inputs(states, states, torch.zeros(len(states), dtype=torch.bool))
            self.exploration.set_reference(reference)
            self.inner.solve(self.exploration)
            self.exploring_solves += 1
        recorded = self.inner.env.recorded()["states"]
        merged = recorded if self.states is None else np.concatenate([self.states, recorded])
        self.states = merged[-self.reference_size:]


# ---------------------------------------------------------------------- the outer objective
class PreferenceRLObjective(PreferenceLikelihood):
    """The preference likelihood plus the query loop that grows its dataset (``refresh``, called by
    :class:`~irl_bilevel.hypergradients.DirectHypergradient` after every inner solve).

    ``schedule[c]``: queries to ask at the ``c``-th refresh (sums to the budget). A session whose window holds
    too few distinct candidate pairs asks what it can; the rest carries over to the next refresh, so exactly
    ``query_budget`` queries are asked once the window allows it. With ``termination_queries`` a session whose
    window holds no segment with a termination is postponed the same way (``postponed_sessions`` counts them).
    """

    zero_when_empty = True

    def __init__(self, reward_model: RewardModel | RewardEnsemble, config: PreferenceRLConfig, n_envs: int,
                 schedule: list[int]) -> None:
        super().__init__(reward_model, config.segment_length, config.loss, config.loss_options)
        self.config = config
        self.window = TransitionWindow(n_envs, config.segment_window)
        self.schedule = schedule
        self.teacher = make_teacher(config.teacher, **config.teacher_options)
        self.generator = torch.Generator().manual_seed(config.seed + 7)
        self.refreshes = 0
        self.owed = 0
        self.queries_used = 0
        self.answered = 0
        self.ties = 0
        self.skipped = 0
        self.postponed_sessions = 0
        self.label_agreement: list[float] = []

    @property
    def query_budget(self) -> int:
        return int(sum(self.schedule))

    def refresh(self, inner: SB3InnerSolver, reward_model: RewardModel | RewardEnsemble) -> None:
        if isinstance(reward_model, AbsorbingAnchoredReward):
            reward_model = reward_model.base  # selection reads the members
        self.window.extend(inner.env.recorded())
        due = self.schedule[self.refreshes] if self.refreshes < len(self.schedule) else 0
        self.refreshes += 1
        self.owed += due
        if self.owed > 0:
            self.ask(inner.env, reward_model, self.owed)

    def ask(self, env: LearnedRewardVecEnv, reward_model: RewardModel | RewardEnsemble, k: int) -> int:
        """Select, label and add up to ``k`` queries; returns how many were asked."""
        config = self.config
        pool = cut_learner_segments(self.window, env, config.segment_length,
                                    max(2, 2 * config.candidate_factor * k), self.generator,
                                    termination_share=0.5 if config.termination_queries else 0.0)
        if len(pool) < 2:
            return 0
        if config.termination_queries:
            assert pool.contains_termination is not None
            ending = torch.nonzero(pool.contains_termination).reshape(-1)
            if len(ending) == 0:  # every pair could only tie on a constant-reward task: ask later
                self.postponed_sessions += 1
                return 0
            # distinct unordered pairs with at least one ending segment: all pairs minus those with none
            rest = len(pool) - len(ending)
            pairs = min(config.candidate_factor * k, len(pool) * (len(pool) - 1) // 2 - rest * (rest - 1) // 2)
            first = ending[torch.randint(len(ending), (pairs,), generator=self.generator)]
        else:
            pairs = min(config.candidate_factor * k, len(pool) * (len(pool) - 1) // 2)
            first = torch.randint(len(pool), (pairs,), generator=self.generator)
        second = (first + torch.randint(1, len(pool), (pairs,), generator=self.generator)) % len(pool)
        k = min(k, pairs)
        chosen = select_queries(config.selection, reward_model, pool, first, second, k, self.generator)
        first, second = first[chosen], second[chosen]
        margin = None
        if self.teacher.needs_margin:
            # B-Pref's margin (mean episode return × L / episode length) = mean true reward per real step × L.
            real = torch.arange(pool.length)[None, :] < pool.real_steps[:, None]
            margin = float(pool.true_rewards[real].mean()) * pool.length
        labels = self.teacher.label(pool.true_rewards[first], pool.true_rewards[second], margin=margin,
                                    generator=self.generator)
        self.queries_used += k
        self.owed -= k
        skipped = labels.skipped if labels.skipped is not None else torch.zeros(k, dtype=torch.bool)
        self.skipped += int(skipped.sum())
        self.ties += int(((labels.labels == 0.5) & ~skipped).sum())
        decided = (labels.labels != 0.5) & ~skipped
        returns1, returns2 = pool.true_returns[first], pool.true_returns[second]
        truth = returns1 > returns2
        if bool((decided & (returns1 != returns2)).any()):
            agree = (labels.labels == 1) == truth
            self.label_agreement.append(float(agree[decided & (returns1 != returns2)].double().mean()))
        self.answered += self.add(pool.rows(first), pool.rows(second), labels.labels, skipped)
        return k

    def reward_loss(self, reward_model: RewardModel | RewardEnsemble) -> torch.Tensor:
        if isinstance(reward_model, AbsorbingAnchoredReward):
            reward_model = reward_model.base  # the shift cancels in every query (segments of equal length)
        return super().reward_loss(reward_model)

    def feedback_may_grow(self) -> bool:
        """True until every scheduled session has run and no query is owed."""
        return self.refreshes < len(self.schedule) or self.owed > 0

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError("the query loop's transition window and teacher are not checkpointed; a "
                                  "preference-RL run starts over")

    def stats(self) -> dict[str, float]:
        return {"queries_used": self.queries_used, "labelled_pairs": len(self), "ties": self.ties,
                "skipped": self.skipped, "postponed_sessions": self.postponed_sessions,
                "label_agreement": float(np.mean(self.label_agreement)) if self.label_agreement else math.nan}


def session_schedule(config: PreferenceRLConfig) -> list[int]:
    """Queries per refresh (one at the start of every outer step): the budget split into ``query_sessions``
    sessions, evenly spaced over the first ``query_fraction`` of the outer steps."""
    evaluations = config.outer_steps
    sessions = max(1, min(config.query_sessions, evaluations))
    span = max(1, int(config.query_fraction * evaluations))
    interval = max(1, span // sessions)
    counts = query_schedule(config.query_budget, sessions, config.query_schedule_kind)
    schedule = [0] * max(evaluations, (sessions - 1) * interval + 1)
    for s, count in enumerate(counts):
        schedule[s * interval] += count
    return schedule


# ---------------------------------------------------------------------- the run
def reward_spec(config: PreferenceRLConfig, obs_dim: int, action_dim: int, discount: float) -> RewardSpec:
    state_dim = obs_dim + (1 if config.absorbing_indicator else 0)
    input_dim = state_dim + (action_dim if config.state_action_reward else 0)
    return RewardSpec(input_dim=input_dim, hidden_sizes=list(config.hidden_sizes),
                      uses_actions=config.state_action_reward, discount=discount)


COMMAND = "preference-rl"
# What preference-rl writes into its folder: --overwrite removes these (and only these) before a new run.
OUTPUT_FILES = ("config.json", "metrics.jsonl", "checkpoint.pt", "summary.json", "policy.zip", "reward.safetensors",
                "reward.json", "reward_member_*.safetensors", "reward_member_*.json", "tensorboard")


def _claim_folder(output_dir: Path, config: PreferenceRLConfig, overwrite: bool) -> tuple[str, dict[str, Any] | None]:
    """:func:`irl_bilevel.runs.claim_run_folder`'s answer for ``output_dir``, and the finished run's summary if the
    folder holds one with this config. Changes nothing."""
    claim = claim_run_folder(output_dir, COMMAND, config.to_dict(), overwrite=overwrite)
    if claim == "resume" and (output_dir / "summary.json").exists() and (output_dir / "policy.zip").exists():
        return claim, read_json_file(output_dir / "summary.json", "summary.json", recovery="; delete it to run again")
    return claim, None


def _begin_writing(output_dir: Path, config: PreferenceRLConfig, claim: str) -> None:
    """Make the folder ready once everything is read and built: an unfinished run starts over (the labelled dataset
    is not checkpointed), so its partial files go; a new or replaced run records its config
    (:func:`irl_bilevel.runs.begin_run`)."""
    if claim == "resume":
        remove_own_files(output_dir, [name for name in OUTPUT_FILES if name != RUN_RECORD])
    else:
        begin_run(output_dir, COMMAND, config.to_dict(), claim, OUTPUT_FILES, config.seed)


def reference_returns(env_id: str, eval_episodes: int, eval_seed: int) -> tuple[float, float]:
    """``(random, expert)`` true returns for normalization: the uniform policy over 100 episodes and the cached SB3
    expert (:func:`classic_rl.experts.train_expert`) over ``eval_episodes``, with the same seeds as the policy."""
    random = random_policy_return(env_id, 100, seed=eval_seed)[0]
    expert = evaluate_policy_return(train_expert(env_id), env_id, eval_episodes, eval_seed)[0]
    return random, expert


def run_preference_rl(config: PreferenceRLConfig, output_dir: Path | str, progress: bool = True,
                      references: tuple[float, float] | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Run the preference-RL run of ``config`` in ``output_dir``; returns the summary it writes.

    ``references``: ``(random, expert)`` returns for the normalized return (default: :func:`reference_returns`).
    ``overwrite``: replace the files of an earlier preference-rl run with another config in ``output_dir``.
    """
    output_dir = Path(output_dir)
    claim, finished = _claim_folder(output_dir, config, overwrite)
    if finished is not None:
        return finished
    torch.set_num_threads(1)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)  # noqa: NPY002  (SB3 shuffles minibatches with numpy's global generator)
    random, expert = references if references is not None else reference_returns(
        config.env_id, config.eval_episodes, config.eval_seed)
    algorithm, n_envs, hyperparameters = config.inner_settings()
    inner = SB3InnerSolver(config.env_id, algorithm, config.env_steps_per_outer_step, n_envs=n_envs,
                           hyperparameters=hyperparameters, seed=config.seed, termination="absorbing",
                           normalize_reward=config.normalize_reward, learner_steps=config.env_steps_per_outer_step,
                           absorbing_indicator=config.absorbing_indicator)
    spec = reward_spec(config, inner.env.obs_dim, inner.env.action_dim, inner.discount)
    members = [build_reward_model(spec) for _ in range(config.ensemble_size)]
    reward: RewardModel | RewardEnsemble = RewardEnsemble(members) if len(members) > 1 else members[0]
    objective = PreferenceRLObjective(reward, config, n_envs, session_schedule(config))
    trained: RewardModel | RewardEnsemble = reward
    if config.absorbing_indicator:
        trained = AbsorbingAnchoredReward.for_env(reward, inner.env)
    solving: SB3InnerSolver | ExploringInnerSolver = inner
    if config.exploration == "state_entropy":
        solving = ExploringInnerSolver(inner, objective.has_feedback, config.exploration_neighbours)
    problem = BilevelProblem(trained, solving, objective)  # type: ignore[arg-type]
    # Everything is read and built (an SB3 setting the algorithm rejects fails above): only now is the folder written.
    _begin_writing(output_dir, config, claim)
    steps_done = 0

    def exploring_solves() -> int:
        return solving.exploring_solves if isinstance(solving, ExploringInnerSolver) else 0

    def metrics() -> dict[str, float]:
        nonlocal steps_done
        steps_done += 1
        row: dict[str, float] = {**objective.stats(), "env_steps": int(inner.model.num_timesteps),
                                 "exploring_solves": exploring_solves(),
                                 "train_true_return": inner.recent_true_return()}
        if steps_done % config.eval_every == 0 or steps_done == config.outer_steps:
            value = evaluate_policy_return(inner.model, config.env_id, config.eval_episodes, seed=config.eval_seed)[0]
            row.update(true_return=value, normalized_return=normalized_return(value, random, expert))
        return row

    started = time.perf_counter()
    # No tolerance stop: the labelled data and the learner's samples change every step; the budget is outer_steps.
    # (A zero gradient stops only once the query loop is over: grad_tol = 0 is the rule the results were made with.)
    outer = OuterConfig(steps=config.outer_steps, optimizer=config.optimizer, lr=config.lr, l2=config.l2,
                        grad_tol=0.0, loss_rtol=0.0, checkpoint_every=max(1, config.outer_steps),
                        lbfgs_iterations_per_step=config.reward_iterations)
    # No output_dir for the solver: its checkpoint would not hold the labelled dataset or the transition window,
    # so resuming would not be exact; the run writes its metrics itself and a killed run starts over.
    solver = BilevelSolver(problem, DirectHypergradient(refresh="every_step"), outer, metrics=metrics,
                           progress=progress)
    result = solver.run(resume=False)
    write_metrics(output_dir / "metrics.jsonl", result.history)
    inner.model.save(output_dir / "policy.zip")
    if isinstance(reward, RewardEnsemble):
        for m, member in enumerate(reward.members):
            assert isinstance(member, RewardModel)
            save_reward_model(member, spec, output_dir, stem=f"reward_member_{m}")
    else:
        save_reward_model(reward, spec, output_dir)
    inner.close()
    final = result.history[-1]
    evaluated = [row for row in result.history if "normalized_return" in row]
    summary: dict[str, Any] = {
        "env_id": config.env_id, "algorithm": algorithm, "outer_steps": result.steps,
        "final_true_return": final["true_return"], "final_normalized_return": final["normalized_return"],
        "best_normalized_return": max(row["normalized_return"] for row in evaluated),
        "env_steps": final["env_steps"], "queries_used": objective.queries_used, "query_budget": config.query_budget,
        "queries_unasked": config.query_budget - objective.queries_used,
        "postponed_sessions": objective.postponed_sessions,
        "exploring_solves": exploring_solves(),
        "labelled_pairs": len(objective), "ties": objective.ties, "skipped": objective.skipped,
        "label_agreement": final["label_agreement"], "expert_return": expert, "random_return": random,
        "final_loss": result.loss, "wall_s": time.perf_counter() - started,
    }
    write_json(output_dir / "summary.json", summary)
    return summary
