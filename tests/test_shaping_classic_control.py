"""Decision-aware shaping with the SB3 inner loop: the env wrapper's shaping term, the one-step policy-gradient
hypergradient (its sign on an aligned vs a harmful candidate), and the classic-control experiment at tiny scale.

The tabular counterpart of the harmful-candidate check (exact hypergradients on a gridworld) is
``tests/test_shaping.py::test_learned_weights_drop_a_harmful_candidate``.
"""

import itertools
import json

import numpy as np
import pytest
import torch

from classic_rl import shaping_sb3
from classic_rl.experiments import shaping_classic_control
from classic_rl.sb3_inner import SB3InnerSolver
from irl_bilevel.hypergradients import BilevelProblem
from irl_bilevel.rewards import PotentialShaping, RewardModel, SimplexWeights, Transitions
from irl_bilevel.solver import BilevelSolver, OuterConfig
from irl_bilevel.validation import ValidationError

GAMMA = 0.9


@pytest.fixture(autouse=True)
def _sb3_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    torch.manual_seed(0)


def _inner(env_id: str = "CartPole-v1", **options) -> SB3InnerSolver:
    defaults = {"n_steps": 64, "batch_size": 64, "n_epochs": 1, "gamma": GAMMA}
    return SB3InnerSolver(env_id, "ppo", 128, 2, defaults, seed=0, termination="none", learner_steps=256,
                          add_env_reward=True, **options)


def test_wrapper_adds_potential_shaping_to_the_env_reward():
    """``r_env + γΦ(s')(1 − terminated) − Φ(s)``: ``Φ(terminal) = 0`` on terminations (CartPole falls fast
    under a constant action); every non-terminal step keeps ``γΦ(s')``."""
    potential = torch.nn.Linear(4, 1)
    torch.nn.init.normal_(potential.weight)
    model = PotentialShaping(shaping_sb3.ZeroReward(), potential, GAMMA)
    inner = _inner()
    env = inner.env
    env.set_reward_model(model)
    observations = env.reset()
    checked_terminal = checked_step = 0
    for _ in range(60):
        env.step_async(np.zeros(env.num_envs, dtype=np.int64))
        next_observations, rewards, dones, infos = env.step_wait()
        for i in range(env.num_envs):
            terminated = bool(dones[i]) and not infos[i].get("TimeLimit.truncated", False)
            s_next = infos[i]["terminal_observation"] if dones[i] else next_observations[i]
            dtype = potential.weight.dtype
            with torch.no_grad():
                phi = float(potential(torch.as_tensor(observations[i], dtype=dtype)))
                phi_next = 0.0 if terminated else float(potential(torch.as_tensor(s_next, dtype=dtype)))
            expected = infos[i]["true_reward"] + GAMMA * phi_next - phi
            assert rewards[i] == pytest.approx(expected, abs=1e-4)
            checked_terminal += terminated
            checked_step += not terminated
        observations = next_observations
    inner.close()
    assert checked_terminal >= 2 and checked_step >= 10


def test_add_env_reward_is_on_policy_only():
    with pytest.raises(ValidationError, match="add_env_reward"):
        SB3InnerSolver("Pendulum-v1", "sac", 100, add_env_reward=True)


def test_potential_signals_and_scaled_observations():
    """The candidate potentials read scaled observations back in task units; the signals telescope."""
    scaled = shaping_sb3.StatePotentials("MountainCar-v0", scaled=True)
    plain = shaping_sb3.StatePotentials("MountainCar-v0")
    states = torch.tensor([[-0.5, 0.0], [0.5, 0.07], [-1.2, -0.07]], dtype=torch.float64)
    low, high = torch.tensor([-1.2, -0.07], dtype=torch.float64), torch.tensor([0.6, 0.07], dtype=torch.float64)
    z = 2 * (states - low) / (high - low) - 1
    assert torch.allclose(scaled(z), plain(states))
    assert plain(states).min() >= -1e-9 and plain(states).max() <= 1 + 1e-9
    signals = shaping_sb3.PotentialSignals(plain, GAMMA, scale=2.0)
    dones = torch.tensor([False, True, False])
    aspects = signals(Transitions(states, None, states.roll(1, 0), dones)).aspects
    psi, psi_next = plain(states), plain(states.roll(1, 0))
    assert plain.kinds == ("potential", "potential", "bonus")
    potential_terms = 2.0 * (GAMMA * psi_next * (~dones).double().unsqueeze(-1) - psi)
    assert torch.allclose(aspects[:, :2], potential_terms[:, :2])
    assert torch.allclose(aspects[:, 2], 2.0 * (1 - GAMMA) * psi_next[:, 2])  # the wrong-goal bonus
    assert psi[:, 2].tolist() == pytest.approx([0.0, 0.0, 1.0])  # only the left wall is the wrong goal
    env = shaping_sb3.ScaledObservation(__import__("gymnasium").make("MountainCar-v0"))
    observation, _ = env.reset(seed=0)
    assert np.all(np.abs(observation) <= 1.0)
    with pytest.raises(ValidationError, match="env_id"):
        shaping_sb3.StatePotentials("CartPole-v1")


def test_complete_episodes_need_start_and_end_in_the_window():
    data = {"time": np.array([3, 0, 4, 1, 0, 2, 1, 0]), "ended": np.array([0, 0, 1, 0, 0, 1, 1, 0], dtype=bool)}
    # step-major, 2 envs: env 0 rows 0,2,4,6 (times 3,4,0,1 / ended at rows 2 and 6), env 1 rows 1,3,5,7.
    episodes = shaping_sb3.complete_episodes(data, 2)
    assert [e.tolist() for e in episodes] == [[4, 6], [1, 3, 5]]


class _AlignedAndHarmful(RewardModel):
    """Two candidate signals: the task's own reward (+1 per CartPole step) and its negation (harmful)."""

    def __init__(self) -> None:
        super().__init__(("aligned", "harmful"), SimplexWeights(2), uses_actions=False)

    def aspect_rewards(self, batch: Transitions) -> torch.Tensor:
        ones = torch.ones(len(batch), dtype=batch.states.dtype)
        return torch.stack([ones, -ones], dim=-1)


def test_outer_loop_drives_a_harmful_candidate_weight_down():
    """For ``F = w_1 r − w_2 r`` the one-step estimate is exactly ``dJ/dw_k = ±|g|²`` (``Σ_t c_t Â_t / N = g·g``),
    whatever the samples: the outer loop must lower the harmful weight at every step."""
    model = _AlignedAndHarmful()
    inner = _inner()
    hypergradient = shaping_sb3.OneStepPolicyGradientHypergradient()
    problem = BilevelProblem(model, inner, shaping_sb3.SB3TaskReturnObjective())  # type: ignore[arg-type]
    weights = []
    solver = BilevelSolver(problem, hypergradient, OuterConfig(steps=3, optimizer="adam", lr=0.5, grad_tol=-1.0),
                           metrics=lambda: {"w": model.aggregator.weights.detach().tolist()}, progress=False)
    history = solver.run(resume=False).history
    inner.close()
    weights = [row["w"][1] for row in history]
    assert hypergradient.last["episodes"] > 0 and hypergradient.last["task_gradient_norm"] > 0
    assert weights[0] < 0.5 and all(b < a for a, b in itertools.pairwise(weights))
    assert weights[-1] < 0.25
    assert inner.env_steps == 4 * 128  # one solve per outer step plus the first: no cached (skipped) solves


def test_no_success_gives_an_exactly_zero_hypergradient():
    """MountainCar's random policy never reaches the flag: every episode returns −200, the task gradient carries no
    information, and Adam (which normalizes steps) must see exact zeros, not rounding residues, or it would move the
    weights by a full step size on noise."""
    potentials = shaping_sb3.StatePotentials("MountainCar-v0", offset=1.0)
    model = shaping_sb3.PotentialSignals(potentials, GAMMA, scale=1.0)
    inner = SB3InnerSolver("MountainCar-v0", "ppo", 1536, 3, {"n_steps": 256, "batch_size": 64, "n_epochs": 1,
                           "gamma": GAMMA}, seed=0, termination="none", learner_steps=1536, add_env_reward=True)
    hypergradient = shaping_sb3.OneStepPolicyGradientHypergradient()
    start = model.aggregator.weights.detach().clone()
    solver = BilevelSolver(BilevelProblem(model, inner, shaping_sb3.SB3TaskReturnObjective()),  # type: ignore[arg-type]
                           hypergradient, OuterConfig(steps=2, optimizer="adam", lr=0.5, grad_tol=-1.0),
                           progress=False)
    solver.run(resume=False)
    inner.close()
    assert hypergradient.last["episodes"] > 0 and hypergradient.last["train_return"] == -200.0
    assert hypergradient.last["task_gradient_norm"] == 0.0
    assert torch.equal(model.aggregator.weights.detach(), start)


def test_steps_to_threshold_needs_a_sustained_goal_rate():
    curve = [{"env_steps": 100 * (i + 1), "goal_rate": rate} for i, rate in enumerate([0.0, 1.0, 0.0, 0.9, 0.9, 1.0])]
    assert shaping_classic_control.steps_to_threshold(curve, 0.9) == 200  # one lucky evaluation
    assert shaping_classic_control.steps_to_threshold(curve, 0.9, sustain=3) == 600  # mean of 0.9, 0.9, 1.0
    assert shaping_classic_control.steps_to_threshold(curve[:5], 0.9, sustain=3) is None
    with pytest.raises(ValidationError, match="sustain_checkpoints"):
        shaping_classic_control.steps_to_threshold(curve, 0.9, sustain=0)


def test_experiment_tiny_end_to_end(tmp_path):
    path = shaping_classic_control.run("tiny", tmp_path, progress=False)
    record = json.loads(path.read_text())
    assert path.name == "shaping_classic_control.json"
    assert {"config", "provenance", "testbeds", "seconds"} <= set(record)
    testbed = record["testbeds"][0]
    assert testbed["env_id"] == "MountainCar-v0" and "wrong_goal" in testbed["candidates"]
    assert set(testbed["summary"]) == set(shaping_classic_control.METHODS)
    config = record["config"]["testbeds"][0]
    solves = config["total_steps"] // config["steps_per_outer_step"]
    for run in testbed["runs"]:
        assert [row["env_steps"] for row in run["curve"]] == [config["steps_per_outer_step"] * (i + 1)
                                                               for i in range(solves)]
        assert all(0.0 <= row["goal_rate"] <= 1.0 for row in run["curve"])
    learned = next(r for r in testbed["runs"] if r["method"] == "learned_weights")
    assert len(learned["parameters"]) == solves and len(learned["parameters"][-1]["weights"]) == 3
    assert sum(learned["parameters"][-1]["weights"]) == pytest.approx(1.0, abs=1e-6)
    summary = testbed["summary"]["learned_weights"]
    assert {"steps_to_threshold", "final_goal_rate", "curve", "final_weights"} <= set(summary)
    assert set(testbed["goal_check"]) == set(shaping_classic_control.METHODS) - {"none"}
    for entry in shaping_classic_control.SCALES.values():
        shaping_classic_control.CONFIG.from_dict(entry)
