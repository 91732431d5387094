"""The penalty-based bilevel gradient (Shen, Yang, Chen, ICML 2024) on the SB3 inner loop, sample-based: the same
``PenaltyHypergradient`` as on tabular MDPs, its upper policy a copy of the SB3 policy network (classic_rl.sb3_penalty).

CartPole-v1 with tiny budgets; the demonstrator is a linear controller that balances for all 500 steps.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from classic_rl.experts import rollout_demonstrations
from classic_rl.gym_irl import GymIRLConfig
from classic_rl.sb3_inner import SB3InnerSolver
from classic_rl.sb3_penalty import returns_to_go
from irl_bilevel.hypergradients import BilevelProblem, MaxEntHypergradient, PenaltyHypergradient, make_hypergradient
from irl_bilevel.objectives import OuterObjective, SampleMaxEntObjective
from irl_bilevel.reward_io import RewardSpec, build_reward_model
from irl_bilevel.validation import ValidationError
from irlb.main import main

ABSORBING = 4  # index of the absorbing-indicator feature in CartPole's reward inputs (4 observations + 1)
PPO_TINY = {"n_steps": 128, "batch_size": 64, "n_epochs": 2}


def balance(observation: np.ndarray) -> int:
    return int(observation[2] + 0.5 * observation[3] + 0.1 * observation[1] + 0.05 * observation[0] > 0)


@pytest.fixture(scope="module")
def demonstrations():
    return rollout_demonstrations(balance, "CartPole-v1", 5, seed=1000)


def linear_reward() -> torch.nn.Module:
    """``r_θ(s) = wᵀ[s, 1{absorbing}] + b`` with ``w = 0``: the θ-gradient is a difference of feature means."""
    torch.manual_seed(0)
    model = build_reward_model(RewardSpec(input_dim=5, hidden_sizes=[]))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
    return model


def linear_gradient(model, gradients):
    """The gradient entry of the linear layer's weights ``[5]`` (the bias's is ``E_π*[1] − E_π[1] = 0``)."""
    (weight,) = [g for p, g in zip([p for p in model.parameters() if p.requires_grad], gradients) if p.dim() == 2]
    return weight.reshape(-1)


def make_inner(budget=128, **hyperparameters) -> SB3InnerSolver:
    return SB3InnerSolver("CartPole-v1", "ppo", budget, hyperparameters={**PPO_TINY, **hyperparameters}, seed=0,
                          absorbing_indicator=True, restart_episodes=True)


def problem_for(inner, demonstrations) -> BilevelProblem:
    objective = SampleMaxEntObjective(demonstrations, inner.discount, absorbing=True, absorbing_indicator=True)
    return BilevelProblem(linear_reward(), inner, objective)


def test_bad_options_raise_validation_errors():
    for options, field in [({"penalty": 0.0}, "penalty"), ({"upper_steps": 0}, "upper_steps"),
                           ({"upper_steps": 1.5}, "upper_steps"), ({"upper_lr": -1.0}, "upper_lr"),
                           ({"upper_rollout_steps": 0}, "upper_rollout_steps"),
                           ({"upper_entropy": -0.1}, "upper_entropy"), ({"rollout": 5}, "bad options")]:
        with pytest.raises(ValidationError, match=field):
            make_hypergradient("penalty", **options)
        with pytest.raises(ValidationError, match=f"hypergradient_options: .*{field}"):
            GymIRLConfig(hypergradient="penalty", hypergradient_options=options)
    with pytest.raises(ValidationError, match="algorithm"):
        GymIRLConfig(hypergradient="penalty", algorithm="dqn")
    with pytest.raises(ValidationError, match="hypergradient_options"):
        GymIRLConfig(hypergradient="penalty", hypergradient_options=[1])  # type: ignore[arg-type]
    config = GymIRLConfig(hypergradient="penalty", hypergradient_options={"penalty": 0.5, "upper_rollout_steps": 64})
    assert config.hypergradient == "penalty"


def test_returns_to_go_restart_at_episode_ends():
    rewards = torch.tensor([1.0, 1.0, 1.0, 2.0, 2.0])
    ended = torch.tensor([False, False, True, False, True])
    expected = torch.tensor([1 + 0.5 + 0.25, 1 + 0.5, 1.0, 2 + 1.0, 2.0], dtype=torch.float64)
    assert torch.allclose(returns_to_go(rewards, ended, 0.5), expected)


def test_the_upper_policy_starts_as_a_copy_of_the_inner_policy_and_its_steps_are_counted():
    inner = make_inner()
    model = linear_reward()
    inner.solve(model)
    upper = inner.make_upper_policy(rollout_steps=100, seed=3)
    inner_state, upper_state = inner.model.policy.state_dict(), upper.network.state_dict()
    assert inner_state.keys() == upper_state.keys()
    assert all(torch.equal(inner_state[k], upper_state[k]) for k in inner_state)
    with torch.no_grad():  # a copy, not the same tensors: training it leaves π* alone
        next(upper.parameters()).add_(1.0)
    assert not torch.equal(next(inner.model.policy.parameters()), next(upper.parameters()))
    before, sb3_steps = inner.env_steps, inner.model.num_timesteps
    upper.rollout()
    assert inner.env_steps == before + 100 and inner.upper_env_steps == 100
    assert inner.model.num_timesteps == sb3_steps  # the inner learner itself did not step
    assert len(upper.batch["time"]) == 100 and upper.batch["ended"][-1]
    assert inner.state_dict()["upper_env_steps"] == 100
    inner.close()
    dqn = SB3InnerSolver("CartPole-v1", "dqn", 64, hyperparameters={"learning_starts": 0}, absorbing_indicator=True)
    with pytest.raises(ValidationError, match="algorithm"):
        dqn.make_upper_policy(10)
    dqn.close()


def test_the_gradient_vanishes_when_the_upper_policy_is_the_inner_one(demonstrations):
    # A negligible PPO and upper learning rate: the policy that recorded the learner window, π* and π coincide, so
    # λ (E_π*[∇r] − E_π[∇r]) is zero up to sampling, far below the MaxEnt gradient (expert vs. learner).
    inner = make_inner(budget=2048, n_steps=2048, n_epochs=1, batch_size=2048, learning_rate=1e-12)
    problem = problem_for(inner, demonstrations)
    method = make_hypergradient("penalty", penalty=1.0, upper_steps=1, upper_lr=1e-12, upper_rollout_steps=2048)
    assert isinstance(method, PenaltyHypergradient)
    penalty = linear_gradient(problem.reward_model, method.compute(problem).gradients)
    maxent = linear_gradient(problem.reward_model, MaxEntHypergradient().compute(problem).gradients)
    assert float(maxent.norm()) > 0.1
    assert float(penalty.norm()) < 0.2 * float(maxent.norm())
    assert inner.upper_env_steps == 2 * 2048  # the first batch (π at creation) and one per upper step
    inner.close()


def test_the_gradient_raises_the_reward_of_what_the_demonstrations_do_more(demonstrations):
    # The demonstrator never falls; the young PPO learner falls within ~20 steps. With a small λ the upper policy
    # clones the demonstrations (f falls) and falls less than π*, so the θ-gradient on the absorbing indicator's
    # weight is positive: descent lowers the reward of falling, relative to staying up — the MaxEnt direction.
    inner = make_inner()
    problem = problem_for(inner, demonstrations)
    method = make_hypergradient("penalty", penalty=0.01, upper_steps=15, upper_lr=3e-3, upper_rollout_steps=256)
    calls = []
    original = inner.make_upper_policy

    def counted(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    inner.make_upper_policy = counted  # type: ignore[method-assign]
    first = method.compute(problem)
    upper = method.upper
    assert upper is not None and len(calls) == 1
    nll_inner = float(problem.objective.policy_loss(inner.policy))
    with torch.no_grad():
        nll_upper = float(problem.objective.policy_loss(upper))
    assert nll_upper < nll_inner - 0.05
    gradient = linear_gradient(problem.reward_model, first.gradients)
    maxent = linear_gradient(problem.reward_model, MaxEntHypergradient().compute(problem).gradients)
    assert float(gradient[ABSORBING]) > 0 and float(maxent[ABSORBING]) > 0
    assert np.isfinite(first.loss)
    # Kept across calls: no new copy, the held batch is reused (no extra first rollout), training continues.
    steps = inner.upper_env_steps
    assert steps == 16 * 256
    state = {k: v.clone() for k, v in upper.network.state_dict().items()}
    method.compute(problem)
    assert method.upper is upper and len(calls) == 1
    assert inner.upper_env_steps == steps + 15 * 256
    assert any(not torch.equal(state[k], v) for k, v in upper.network.state_dict().items())
    with torch.no_grad():
        assert float(problem.objective.policy_loss(upper)) < nll_upper + 0.05
    inner.close()


def test_the_penalty_method_without_a_policy_objective_or_a_sampled_inner_is_named(demonstrations):
    class NoPolicyLoss(OuterObjective):
        def evaluate(self, inner):
            raise AssertionError

    inner = make_inner()
    with pytest.raises(ValidationError, match="policy_loss"):
        PenaltyHypergradient().compute(BilevelProblem(linear_reward(), inner, NoPolicyLoss()))
    inner.close()

    class Opaque:
        pass

    with pytest.raises(ValidationError, match="penalty needs"):
        PenaltyHypergradient().compute(BilevelProblem(linear_reward(), Opaque(), NoPolicyLoss()))  # type: ignore[arg-type]


def test_gym_irl_runs_two_outer_steps_with_the_penalty_method(tmp_path, demonstrations):
    path = tmp_path / "demos.npz"
    np.savez(path, observations=demonstrations.observations.numpy(), actions=demonstrations.actions.numpy(),
             lengths=demonstrations.lengths.numpy(), terminated=demonstrations.terminated.numpy(),
             final_observations=demonstrations.final_observations.numpy(), returns=demonstrations.returns.numpy())
    # Through the command line, exactly as `irlb gym-irl --set hypergradient='"penalty"'` runs it.
    settings = ['hypergradient="penalty"',
                'hypergradient_options={"penalty": 0.1, "upper_steps": 2, "upper_rollout_steps": 64}',
                f'demonstrations_file="{path}"', "outer_steps=2", "env_steps_per_outer_step=128", "hidden_sizes=[16]",
                "eval_episodes=1", f"hyperparameters={json.dumps(PPO_TINY)}"]
    arguments = ["gym-irl", "--out", str(tmp_path / "run"), "--quiet"]
    for setting in settings:
        arguments += ["--set", setting]
    assert main(arguments) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    for name in ("config.json", "metrics.jsonl", "checkpoint.pt", "policy.zip", "reward.safetensors", "summary.json"):
        assert (tmp_path / "run" / name).exists(), name
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2]
    # Computes: one before the first step, one after each: upper steps 64 · (1 + 2) + 64 · 2 · 2.
    assert rows[-1]["upper_env_steps"] == 64 * 3 + 64 * 2 * 2
    assert rows[-1]["env_steps"] == 3 * 128 + rows[-1]["upper_env_steps"]
    assert summary["outer_steps"] == 2 and np.isfinite(rows[-1]["loss"])
    assert json.loads((tmp_path / "run" / "config.json").read_text())["config"]["hypergradient"] == "penalty"
