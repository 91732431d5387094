"""Decision-aware reward shaping with the SB3 inner loop: shaping signals for classic-control tasks, the task-return
objective of an SB3 learner, and a one-step policy-gradient (LIRPG-style) hypergradient of the task return.

Setting (Zheng, Oh, Singh 2018, "On learning intrinsic rewards for policy gradient methods" (LIRPG); Hu et al.
2020, "Learning to utilize shaping rewards" (BiPaRS)): PPO trains on ``r + F_θ`` (``SB3InnerSolver`` with
``add_env_reward=True``); the outer objective is the task's own return ``J(η) = E_η[Σ_t γ^t r_t]`` of the policy
``π_η`` the inner loop produced, ``η = η(θ)``.

Hypergradient (:class:`OneStepPolicyGradientHypergradient`). Model the inner update as one policy-gradient step on
the shaped reward, ``η' = η + α Σ_t ∇_η log π_η(a_t|s_t) (Â^r_t + Â^F_t(θ))``. Only the shaping part depends on θ,
so by the chain rule (LIRPG eq. 4–5; BiPaRS's meta-gradient variant)

    dJ(η')/dθ = ∇_η' J(η')ᵀ · dη'/dθ ≈ α Σ_t c_t · ∂Â^F_t(θ)/∂θ,    c_t = ∇_η log π_η(a_t|s_t) · g,
    g = ∇_η J ≈ (1/N) Σ_t ∇_η log π_η(a_t|s_t) (G^r_t − b^r_t)   (REINFORCE with a baseline, Williams 1992),

with ``∇_η' J ≈ ∇_η J`` (first order in α). ``G^r_t`` and ``G^F_t(θ)`` are the discounted returns-to-go of the
task reward and of the shaping term inside each *complete* episode of the inner loop's last rollouts (an episode
that ends by termination or by the task's time limit; cut-off ones are dropped), ``b_t`` the mean return-to-go at
the same time index over those episodes, and ``Â^F_t = G^F_t − b^F_t``. ``c_t`` (a directional derivative of
``log π`` along ``g``) is obtained exactly by double backpropagation; the surrogate ``−(1/N) Σ_t c_t Â^F_t(θ)`` is
then differentiated in ``θ`` by autograd through the reward model, so any shaping family of the shared reward
interface works. The inner-solver-independent pieces (returns-to-go, time baseline, ``c_t``, the surrogate) are
:mod:`irl_bilevel.shaping`'s; this module supplies the SB3 rollouts and log-probabilities. ``α`` is absorbed into
the outer step size (Adam). The estimate reuses the inner loop's own transitions: it costs no extra environment
steps. Known bias: the rollouts come from the policies of the whole solve (PPO updated in between), the estimate
is first order in the inner step, and PPO's clipped, advantage-normalized update differs from the plain
policy-gradient step the chain rule assumes. In sparse tasks ``g`` is
zero until the learner first reaches the goal, so the outer loop can only learn from episodes that succeed.

Shaping signals (:class:`PotentialSignals`): named state features ``ψ_k(s) ∈ [0, 1]`` per task, as the aspects of
one reward model whose aggregator (fixed or ``SimplexWeights``) combines them. A ``"potential"`` feature enters as
the potential term ``c_k = S (γ ψ̃_k(s') (1 − done) − ψ̃_k(s))`` with ``ψ̃ = ψ − offset`` (``offset = 1`` makes the
potential ≤ 0 and zero where ψ is highest, e.g. near the goal, so that ``Φ(terminal) = 0`` costs nothing at the
goal); any weighting of these is potential-based, so optimal policies are kept (Ng, Harada, Russell 1999).
Time-limit truncations keep ``Φ(s')`` (SB3 bootstraps the critic there). A ``"bonus"`` feature enters as the
per-step bonus ``S (1 − γ) ψ_k(s')``; it is not potential-based and can change the optimal policy — the
deliberately harmful ``wrong_goal`` candidate is one (it pays for being at a wrong goal). :func:`learned_potential`
builds the learned-potential family ``Φ_θ(s) = S θᵀ ψ̃(s)`` (all features as potentials, free signs and scale)
through the core's ``PotentialShaping``. :class:`ScaledObservation` maps the observation box onto ``[−1, 1]``
(the features read the observations back in task units).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from classic_rl.experts import float32_default
from classic_rl.sb3_inner import SB3InnerSolver
from irl_bilevel.hypergradients import BilevelProblem, Hypergradient, HypergradientMethod, parameter_gradients
from irl_bilevel.objectives import OuterObjective
from irl_bilevel.rewards import Aggregator, PotentialShaping, RewardModel, SimplexWeights, Transitions
from irl_bilevel.shaping import one_step_shaping_surrogate, policy_gradient_directions, task_advantages
from irl_bilevel.validation import ValidationError

# ---------------------------------------------------------------------- state potentials per task
_MC_FORCE_GRAVITY = 0.0025  # MountainCar-v0: v ← v + (a − 1)·0.001 − 0.0025 cos(3x)
_MC_MAX_SPEED = 0.07


def _mountain_car(states: torch.Tensor) -> torch.Tensor:
    """``[B, 2] → [B, 3]``: energy, height, wrong_goal features of MountainCar-v0, each in [0, 1].

    Mechanical energy per unit mass ``E = (g/3) sin(3x) + v²/2`` (``dE/dt = force · v``: it grows only by pumping);
    height ``(sin(3x) + 1)/2``; ``wrong_goal = clip((−0.9 − x)/0.3, 0, 1)``, 1 at the left wall (the wrong hilltop)
    and 0 right of ``x = −0.9``: as a per-step bonus it rewards staying at the wrong goal (the deliberately harmful
    candidate).
    """
    x, v = states[:, 0], states[:, 1]
    low, high = -_MC_FORCE_GRAVITY / 3, _MC_FORCE_GRAVITY / 3 + _MC_MAX_SPEED**2 / 2
    energy = (_MC_FORCE_GRAVITY / 3 * torch.sin(3 * x) + v**2 / 2 - low) / (high - low)
    height = (torch.sin(3 * x) + 1) / 2
    wrong_goal = ((-0.9 - x) / 0.3).clamp(0.0, 1.0)
    return torch.stack([energy, height, wrong_goal], dim=-1)


def _acrobot(states: torch.Tensor) -> torch.Tensor:
    """``[B, 6] → [B, 3]``: tip height, kinetic (angular speed), wrong_goal (tip low) potentials of Acrobot-v1.

    Observation ``(cos θ1, sin θ1, cos θ2, sin θ2, θ̇1, θ̇2)``; tip height ``h = −cos θ1 − cos(θ1 + θ2) ∈ [−2, 2]``
    (the goal is ``h > 1``), normalized to ``(h + 2)/4``; kinetic ``((θ̇1/4π)² + (θ̇2/9π)²)/2``; ``wrong_goal =
    1 − (h + 2)/4``: as a per-step bonus it rewards hanging down (harmful).
    """
    c1, s1, c2, s2, d1, d2 = states.unbind(-1)
    height = (-c1 - (c1 * c2 - s1 * s2) + 2) / 4
    kinetic = ((d1 / (4 * math.pi)) ** 2 + (d2 / (9 * math.pi)) ** 2) / 2
    return torch.stack([height, kinetic, 1 - height], dim=-1)


# task → (feature names, features, observation size, kind of each candidate signal: a potential term or a bonus)
POTENTIALS: dict[str, tuple[tuple[str, ...], Callable[[torch.Tensor], torch.Tensor], int, tuple[str, ...]]] = {
    "MountainCar-v0": (("energy", "height", "wrong_goal"), _mountain_car, 2, ("potential", "potential", "bonus")),
    "Acrobot-v1": (("height", "kinetic", "wrong_goal"), _acrobot, 6, ("potential", "potential", "bonus")),
}


def observation_bounds(env_id: str) -> tuple[np.ndarray, np.ndarray]:
    """The observation space's declared ``(low, high)`` (finite for the tasks of :data:`POTENTIALS`)."""
    env = gym.make(env_id)
    space = env.observation_space
    env.close()
    assert isinstance(space, gym.spaces.Box)
    low, high = np.asarray(space.low, dtype=np.float64), np.asarray(space.high, dtype=np.float64)
    if not (np.isfinite(low).all() and np.isfinite(high).all()):
        raise ValidationError(f"env_id: {env_id} has unbounded observations; cannot rescale them")
    return low, high


class ScaledObservation(gym.ObservationWrapper):
    """A fixed affine map of the observation box onto ``[−1, 1]^D`` (its declared bounds; no running statistics).

    MountainCar's velocity lives in ``±0.07``: unscaled, PPO's MLP barely sees it. rl-baselines3-zoo uses
    ``VecNormalize`` (running statistics) for this; a fixed map keeps every method's input identical and the
    reward models' inputs stationary.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        space = env.observation_space
        assert isinstance(space, gym.spaces.Box)
        self.low, self.high = np.asarray(space.low, np.float64), np.asarray(space.high, np.float64)
        self.observation_space = gym.spaces.Box(-1.0, 1.0, space.shape, np.float32)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return (2.0 * (observation - self.low) / (self.high - self.low) - 1.0).astype(np.float32)


class StatePotentials(nn.Module):
    """The named candidate potentials ``ψ(s) − offset`` (``ψ ∈ [0, 1]^K``) of a task: ``[B, D] → [B, K]``.

    ``scaled``: the states are :class:`ScaledObservation`'s (mapped back to the task's units first).
    """

    low: torch.Tensor
    high: torch.Tensor

    def __init__(self, env_id: str, offset: float = 0.0, scaled: bool = False) -> None:
        super().__init__()
        if env_id not in POTENTIALS:
            raise ValidationError(f"env_id: no candidate potentials for {env_id!r}; expected one of {list(POTENTIALS)}")
        self.names, self.function, self.state_dim, self.kinds = POTENTIALS[env_id]
        self.offset, self.scaled = float(offset), bool(scaled)
        low, high = observation_bounds(env_id) if scaled else (np.zeros(self.state_dim), np.zeros(self.state_dim))
        self.register_buffer("low", torch.from_numpy(low))
        self.register_buffer("high", torch.from_numpy(high))

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        if states.dim() != 2 or states.shape[-1] != self.state_dim:
            raise ValidationError(f"states: expected shape [B, {self.state_dim}], got {list(states.shape)}")
        if self.scaled:
            low, high = self.low.to(states.dtype), self.high.to(states.dtype)
            states = low + (states + 1.0) / 2.0 * (high - low)
        return self.function(states) - self.offset


class PotentialSignals(RewardModel):
    """Candidate shaping signals as aspects ``[B, K]``: for a ``"potential"`` feature the potential term
    ``c_k = S (γ ψ_k(s') (1 − done) − ψ_k(s))`` (``ψ`` with its offset: policy-preserving), for a ``"bonus"``
    feature the per-step bonus ``c_k = S (1 − γ) ψ_k(s')`` (raw ``ψ ∈ [0, 1]``, the per-step size of a potential
    term ``S(γ − 1)ψ``; it can change the optimal policy: that is how a harmful candidate misleads).

    The total is the aggregator's (default ``SimplexWeights``: the weights the outer loop learns).
    """

    def __init__(self, potentials: StatePotentials, discount: float, scale: float = 1.0,
                 aggregator: Aggregator | None = None) -> None:
        if not 0.0 <= discount < 1.0:
            raise ValidationError(f"discount: expected 0 <= discount < 1, got {discount}")
        names = potentials.names
        super().__init__(names, aggregator or SimplexWeights(len(names)), uses_actions=False)
        self.potentials, self.discount, self.scale = potentials, float(discount), float(scale)

    def aspect_rewards(self, batch: Transitions) -> torch.Tensor:
        if batch.next_states is None:
            raise ValidationError("next_states: potential signals need the next states of the batch")
        not_done = 1.0 if batch.dones is None else 1.0 - batch.dones.to(batch.states.dtype).unsqueeze(-1)
        psi, psi_next = self.potentials(batch.states), self.potentials(batch.next_states)
        terms = self.discount * psi_next * not_done - psi
        bonus = torch.tensor([kind == "bonus" for kind in self.potentials.kinds])
        if bonus.any():
            terms[:, bonus] = (1.0 - self.discount) * (psi_next[:, bonus] + self.potentials.offset)
        return self.scale * terms


class ZeroReward(RewardModel):
    """``r = 0`` (no parameters): the base of a pure shaping term ``PotentialShaping(ZeroReward(), Φ, γ)``."""

    def __init__(self) -> None:
        super().__init__(("zero",), None, uses_actions=False)

    def aspect_rewards(self, batch: Transitions) -> torch.Tensor:
        return torch.zeros(len(batch), 1, dtype=batch.states.dtype)


class LinearPotential(nn.Module):
    """``Φ_θ(s) = scale · θᵀ ψ(s)``: ``[B, D] → [B, 1]``, ``θ [K]`` initialized to ``initial``."""

    def __init__(self, potentials: StatePotentials, scale: float, initial: list[float]) -> None:
        super().__init__()
        if len(initial) != len(potentials.names):
            raise ValidationError(f"initial: expected {len(potentials.names)} coefficients, got {len(initial)}")
        self.potentials, self.scale = potentials, float(scale)
        self.coefficients = nn.Parameter(torch.tensor(initial, dtype=torch.get_default_dtype()))

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.scale * (self.potentials(states) @ self.coefficients.to(states.dtype)).unsqueeze(-1)


def learned_potential(potentials: StatePotentials, discount: float, scale: float,
                      initial: list[float]) -> PotentialShaping:
    """The learned-potential family: ``F_θ = γ Φ_θ(s')(1 − done) − Φ_θ(s)``, ``Φ_θ = scale · θᵀ (ψ(s) − offset)``."""
    return PotentialShaping(ZeroReward(), LinearPotential(potentials, scale, initial), discount)


# ---------------------------------------------------------------------- the outer objective and its hypergradient
class SB3TaskReturnObjective(OuterObjective):
    """``loss = −J``: minus the learner's mean true (environment) return over its recent training episodes. Estimated
    from rollouts: no loss of a log-policy table and no expert data (:class:`OuterObjective`'s defaults refuse them)."""

    def evaluate(self, inner: object) -> torch.Tensor:
        if not isinstance(inner, SB3InnerSolver):
            raise ValidationError(f"inner: expected an SB3InnerSolver, got {type(inner).__name__}")
        return torch.tensor(-inner.recent_true_return())


def complete_episodes(data: dict[str, np.ndarray], num_envs: int) -> list[np.ndarray]:
    """Row indices (into ``SB3InnerSolver.env.recorded()``, step-major) of each complete recorded episode.

    An episode is complete when its first step (``time == 0``) and its last (``ended``) are both in the window.
    """
    if "ended" not in data:
        raise ValidationError("data: the recorded transitions lack 'ended'")
    steps = len(data["time"]) // num_envs
    episodes = []
    for env in range(num_envs):
        rows = np.arange(steps) * num_envs + env
        start = None
        for row in rows:
            if data["time"][row] == 0:
                start = row
            if data["ended"][row] and start is not None:
                episodes.append(np.arange(start, row + 1, num_envs))
                start = None
    return episodes


class OneStepPolicyGradientHypergradient(HypergradientMethod):
    """LIRPG/BiPaRS one-step chain rule for the task return through an SB3 learner (module docstring).

    ``compute`` trains the inner solver for one outer step on ``r + F_θ`` (warm start), then estimates
    ``dL/dθ = −(1/N) Σ_t c_t ∂Â^F_t/∂θ`` from its recorded complete episodes. The reported loss is minus the
    mean undiscounted true return of those episodes (the recent training return if none is complete; the
    gradient is then zero). ``after_solve`` is called after every inner solve (e.g. to evaluate the policy).

    The window: the inner solver records its last ``learner_steps`` transitions of each solve; consecutive solves
    continue the same episodes, so the window is extended with the previous solve's records (up to
    ``learner_steps`` in all), which lets episodes longer than one solve per env complete inside it. (Not kept in
    checkpoints: a resumed run starts with one solve's window.)
    """

    name = "one_step_policy_gradient"
    fresh_each_step = True  # every compute trains the inner learner: one solve per outer step, even if θ is still

    def __init__(self, after_solve: Callable[[], None] | None = None) -> None:
        self.after_solve = after_solve
        self.last: dict[str, Any] = {}
        self._window: tuple[int, dict[str, np.ndarray]] | None = None  # (solve count, recorded transitions)

    def _recorded_window(self, inner: SB3InnerSolver) -> dict[str, np.ndarray]:
        """This solve's records, preceded by the previous solve's when the episodes ran on between them."""
        data = inner.env.recorded()
        capacity = (inner.env.records.maxlen or 1) * inner.env.num_envs
        if self._window is not None and self._window[0] == inner.solves - 1 and not inner.restart_episodes:
            data = {key: np.concatenate([self._window[1][key], value])[-capacity:] for key, value in data.items()}
        self._window = (inner.solves, data)
        return data

    def compute(self, problem: BilevelProblem) -> Hypergradient:
        inner = problem.inner
        if not isinstance(inner, SB3InnerSolver):
            raise ValidationError(f"inner: {self.name} needs an SB3InnerSolver, got {type(inner).__name__}")
        if not inner.env.add_env_reward:
            raise ValidationError("inner: shaping needs SB3InnerSolver(add_env_reward=True) (r_env + F_θ)")
        if inner.env.termination != "none":
            raise ValidationError("inner: the shaping returns are recomputed with termination='none' semantics "
                                  "(Φ(terminal) = 0); build the SB3InnerSolver with termination='none'")
        inner.solve(problem.reward_model)
        if self.after_solve is not None:
            self.after_solve()
        data = self._recorded_window(inner)
        episodes = complete_episodes(data, inner.env.num_envs)
        parameters = problem.parameters
        if not episodes:
            # No finished episode in the window: no estimate, so a zero task gradient (recorded as such).
            self.last = {"episodes": 0, "train_return": None, "task_gradient_norm": 0.0}
            return Hypergradient(-inner.recent_true_return(), [torch.zeros_like(p) for p in parameters])
        rows = np.concatenate(episodes)
        dtype = torch.float64
        gamma = inner.discount
        n = len(episodes)
        advantages, _ = task_advantages([torch.as_tensor(data["true_rewards"][e], dtype=dtype) for e in episodes],
                                        gamma)  # [N]
        # g = ∇_η J (REINFORCE), then c_t = ∇_η log π(a_t|s_t) · g by double backpropagation.
        policy = inner.model.policy
        actor = [p for p in policy.parameters() if p.requires_grad]
        with float32_default():
            policy.set_training_mode(False)
            observations = torch.as_tensor(data["states"][rows], dtype=torch.float32)
            actions = (torch.as_tensor(data["actions"][rows].argmax(-1)) if inner.env.discrete
                       else torch.as_tensor(data["actions"][rows], dtype=torch.float32))
            log_prob = policy.get_distribution(observations).log_prob(actions)  # [N]
            c, g = policy_gradient_directions(log_prob, actor, advantages.float(), n)
        # Â^F_t(θ): the shaping term's returns-to-go, differentiable in θ through the reward model.
        states = torch.as_tensor(data["states"][rows], dtype=dtype)
        next_states = torch.as_tensor(data["next_states"][rows], dtype=dtype)
        dones = torch.as_tensor(data["terminated"][rows])
        action_inputs = torch.as_tensor(data["actions"][rows], dtype=dtype)
        shaping = problem.reward_model(Transitions(states, action_inputs, next_states, dones)).total.to(dtype)
        pieces = torch.split(shaping, [len(e) for e in episodes])
        surrogate = one_step_shaping_surrogate(c.to(dtype), pieces, gamma, n)
        episode_returns = [float(data["true_rewards"][e].sum()) for e in episodes]
        squared_norm = torch.zeros((), dtype=torch.float64)
        for x in g:
            squared_norm = squared_norm + (x.double() ** 2).sum()
        self.last = {"episodes": len(episodes), "train_return": float(np.mean(episode_returns)),
                     "task_gradient_norm": float(torch.sqrt(squared_norm))}
        return Hypergradient(-float(np.mean(episode_returns)), parameter_gradients(surrogate, parameters))


# ---------------------------------------------------------------------- evaluation
def evaluate_goal_rate(model: Any, env_id: str, seeds: list[int],
                       wrapper_class: Callable[[gym.Env], gym.Env] | None = None) -> dict[str, Any]:
    """Deterministic episodes of an SB3 model, episode ``i`` reset with ``seeds[i]``, stepped as one batch.

    Returns ``goal_rate`` (share of episodes that *terminated*, i.e. reached the goal, before the time limit),
    ``mean_return`` (true return) and ``returns``. ``wrapper_class``: as the model was trained (observations).
    """
    if not seeds:
        raise ValidationError("seeds: expected at least one evaluation seed")
    envs = [gym.make(env_id) if wrapper_class is None else wrapper_class(gym.make(env_id)) for _ in seeds]
    observations = np.stack([env.reset(seed=seed)[0] for env, seed in zip(envs, seeds)])
    returns = np.zeros(len(seeds))
    goals = np.zeros(len(seeds), dtype=bool)
    running = np.ones(len(seeds), dtype=bool)
    with float32_default():
        while running.any():
            actions, _ = model.predict(observations, deterministic=True)
            for i in np.flatnonzero(running):
                observation, reward, terminated, truncated, _ = envs[i].step(int(actions[i]))
                observations[i] = observation
                returns[i] += float(reward)
                if terminated or truncated:
                    running[i] = False
                    goals[i] = bool(terminated)
    for env in envs:
        env.close()
    return {"goal_rate": float(goals.mean()), "mean_return": float(returns.mean()), "returns": returns.tolist()}
