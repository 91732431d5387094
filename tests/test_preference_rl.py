"""RL from preferences through the bilevel solver: the wrapper's true rewards, segments that span terminations,
oracle labels on learner segments, the direct hypergradient against finite differences, the exact query budget, a
tiny run's files, and bad inputs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from classic_rl.preference_rl import (
    PreferenceRLConfig,
    PreferenceRLObjective,
    TransitionWindow,
    cut_learner_segments,
    run_preference_rl,
    segment_starts,
    session_schedule,
)
from classic_rl.sb3_inner import SB3InnerSolver
from irl_bilevel.hypergradients import (
    BilevelProblem,
    DirectHypergradient,
    FiniteDifferenceHypergradient,
    make_hypergradient,
)
from irl_bilevel.objectives import OuterObjective
from irl_bilevel.preference_likelihood import PreferenceLikelihood
from irl_bilevel.reward_ensemble import RewardEnsemble
from irl_bilevel.reward_io import load_reward_model
from irl_bilevel.rewards import MLPReward, Transitions
from irl_bilevel.teachers import Teacher
from irl_bilevel.validation import ValidationError

PPO_TINY = {"n_steps": 64, "batch_size": 64, "n_epochs": 1}
REFERENCES = (22.0, 500.0)


def cartpole_inner(steps: int = 512, seed: int = 0) -> SB3InnerSolver:
    inner = SB3InnerSolver("CartPole-v1", "ppo", steps, n_envs=2, hyperparameters=PPO_TINY, seed=seed,
                           learner_steps=steps, absorbing_indicator=True)
    inner.solve(MLPReward(4 + 1, [8]))
    return inner


@pytest.fixture(scope="module")
def cartpole_window():
    torch.set_default_dtype(torch.float64)
    inner = cartpole_inner()
    window = TransitionWindow(inner.env.num_envs, 4096)
    window.extend(inner.env.recorded())
    yield inner, window
    inner.close()


# ---------------------------------------------------------------------- the wrapper records true rewards
def test_wrapper_records_the_true_reward_of_every_step():
    """Pendulum-v1's reward is −(θ² + 0.1 θ̇² + 0.001 u²) of the state and action: the recorded true rewards must
    equal it on every recorded step (and differ from the learned reward the agent saw)."""
    inner = SB3InnerSolver("Pendulum-v1", "ppo", 64, hyperparameters=PPO_TINY, seed=3, learner_steps=64)
    inner.solve(MLPReward(3, [8]))
    data = inner.env.recorded()
    inner.close()
    cos, sin, velocity = data["states"].T
    torque = np.clip(data["actions"][:, 0], -2.0, 2.0)
    expected = -(np.arctan2(sin, cos) ** 2 + 0.1 * velocity**2 + 0.001 * torque**2)
    assert data["true_rewards"].shape == (64,)
    np.testing.assert_allclose(data["true_rewards"], expected, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------- segments
def test_segment_starts_run_into_terminations_but_not_across_breaks():
    # env stream: an episode of 6 steps that terminates, then one of 4 steps cut by a restart (time resets), then 3.
    time_index = np.array([0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 0, 1, 2])
    terminated = np.zeros(13, dtype=bool)
    terminated[5] = True
    starts = segment_starts(time_index, terminated, 3)
    # (3, 3, False): three real steps, the last one terminal, fill the segment: no absorbing step is needed.
    assert starts == [(0, 3, False), (1, 3, False), (2, 3, False), (3, 3, False), (4, 2, True), (5, 1, True),
                      (6, 3, False), (7, 3, False), (10, 3, False)]


def test_segments_spanning_terminations_have_the_right_true_returns(cartpole_window):
    inner, window = cartpole_window
    length = 15  # about the random policy's episode length: some segments terminate, some do not
    segments = cut_learner_segments(window, inner.env, length, 200, torch.Generator().manual_seed(0))
    assert len(segments) > 50
    # CartPole-v1 pays 1 per real step, 0 while absorbed: the true return is the number of real steps.
    assert torch.equal(segments.true_returns, segments.real_steps.double())
    assert bool(segments.terminated.any()) and bool((~segments.terminated).any())
    assert bool((segments.real_steps[segments.terminated] < length).all())
    assert bool((segments.real_steps[~segments.terminated] == length).all())
    states = segments.inputs.states.reshape(len(segments), length, -1)
    absorbed = torch.arange(length)[None, :] >= segments.real_steps[:, None]
    # Absorbing rows are DAC's state [0, 0, 0, 0, 1] with a zero action; real rows carry indicator 0.
    assert torch.equal(states[absorbed], torch.tensor([[0.0, 0, 0, 0, 1]]).expand(int(absorbed.sum()), 5))
    assert bool((states[~absorbed][:, -1] == 0).all())
    actions = segments.inputs.actions.reshape(len(segments), length, -1)
    assert bool((actions[absorbed] == 0).all()) and bool((actions[~absorbed].sum(-1) == 1).all())
    # Distinct returns exist: equal-length segments without terminations would all return `length`.
    assert len(set(segments.true_returns.tolist())) > 5


def test_oracle_labels_on_learner_segments_follow_true_returns(cartpole_window):
    inner, window = cartpole_window
    config = PreferenceRLConfig(segment_length=60, selection="uniform", ensemble_size=1, query_budget=40,
                                loss="rao_kupper", total_env_steps=1024, env_steps_per_outer_step=512)
    reward = MLPReward(4 + 1 + 2, [8], uses_actions=True)
    objective = PreferenceRLObjective(reward, config, inner.env.num_envs, [40])
    objective.window = window
    assert objective.ask(inner.env, reward, 40) == 40
    assert objective.queries_used == 40 and len(objective) == 40  # rao_kupper keeps ties
    first_returns = objective.segment_returns(_true_count_model(), objective.first)
    second_returns = objective.segment_returns(_true_count_model(), objective.second)
    expected = torch.where(first_returns > second_returns, 1.0, torch.where(first_returns < second_returns, 0.0, 0.5))
    assert torch.equal(objective.labels, expected)
    assert objective.stats()["label_agreement"] == 1.0


class _RealStepCounter(torch.nn.Module):
    """A 'reward model' that pays 1 on real states (indicator 0) and 0 on the absorbing state: CartPole's truth."""

    aspect_names = ("reward",)
    uses_actions = False

    def __init__(self) -> None:
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, batch: Transitions):
        total = 1.0 - batch.states[:, -1] + 0 * self.dummy
        return type("Out", (), {"total": total})()


def _true_count_model() -> _RealStepCounter:
    return _RealStepCounter()


# ---------------------------------------------------------------------- the direct hypergradient
class _NoInner:
    """An inner solver with nothing to solve (the preference loss does not depend on the policy)."""

    def solve(self, reward_model) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def _random_segments(n: int, length: int, seed: int) -> tuple[Transitions, Transitions, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    first = Transitions(torch.randn(n * length, 3, generator=g), torch.randn(n * length, 2, generator=g))
    second = Transitions(torch.randn(n * length, 3, generator=g), torch.randn(n * length, 2, generator=g))
    labels = torch.tensor([1.0, 0.0, 0.5, 1.0, 0.0, 1.0])[:n]
    return first, second, labels


@pytest.mark.parametrize("loss,options,members", [("bradley_terry", {}, 1),
                                                  ("robust_bradley_terry", {"flip_rate": 0.2}, 1),
                                                  ("rao_kupper", {"theta": 2.0}, 2),
                                                  ("smoothed_bradley_terry", {"label_smoothing": 0.1, "beta": 0.5}, 1)])
def test_direct_hypergradient_equals_finite_differences(loss, options, members):
    torch.manual_seed(0)
    models = [MLPReward(5, [4], uses_actions=True) for _ in range(members)]
    reward = RewardEnsemble(models) if members > 1 else models[0]
    objective = PreferenceLikelihood(reward, 4, loss, options)
    first, second, labels = _random_segments(6, 4, seed=1)
    added = objective.add(first, second, labels)
    assert added == (5 if loss == "bradley_terry" else 6)  # bradley_terry has no tie model: the tie is left out
    problem = BilevelProblem(reward, _NoInner(), objective)  # type: ignore[arg-type]
    direct = make_hypergradient("direct").compute(problem)
    reference = FiniteDifferenceHypergradient(epsilon=1e-6).compute(problem)
    assert direct.loss == pytest.approx(reference.loss, abs=1e-12)
    error = (direct.flat() - reference.flat()).norm() / reference.flat().norm()
    assert error < 1e-7


def test_bradley_terry_orients_pairs_by_label():
    """A label 0 (second preferred) must give the same loss as the swapped pair labelled 1."""
    torch.manual_seed(0)
    reward = MLPReward(5, [4], uses_actions=True)
    first, second, _ = _random_segments(2, 3, seed=2)
    a = PreferenceLikelihood(reward, 3)
    a.add(first, second, torch.tensor([0.0, 0.0]))
    b = PreferenceLikelihood(reward, 3)
    b.add(second, first, torch.tensor([1.0, 1.0]))
    assert float(a.reward_loss(reward).detach()) == pytest.approx(float(b.reward_loss(reward).detach()), abs=1e-14)


def test_the_labelled_dataset_is_the_likelihoods_run_state():
    torch.manual_seed(0)
    reward = MLPReward(5, [4], uses_actions=True)
    objective = PreferenceLikelihood(reward, 4)
    assert objective.state_dict()["labels"].numel() == 0
    first, second, labels = _random_segments(6, 4, seed=1)
    objective.add(first, second, labels)
    state = objective.state_dict()
    restored = PreferenceLikelihood(reward, 4)
    restored.load_state_dict(state)
    assert len(restored) == len(objective) == 5
    assert torch.equal(restored.reward_loss(reward), objective.reward_loss(reward))


def test_a_query_loop_without_a_checkpointable_state_refuses_a_run_folder(tmp_path):
    config = PreferenceRLConfig(**TINY)
    reward = MLPReward(4 + 1, [8])
    objective = PreferenceRLObjective(reward, config, 2, session_schedule(config))
    assert objective.feedback_may_grow()  # sessions ahead: a zero gradient is not convergence
    from irl_bilevel.solver import BilevelSolver

    problem = BilevelProblem(reward, _NoInner(), objective)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="output_dir: PreferenceRLObjective cannot save its run state"):
        BilevelSolver(problem, DirectHypergradient(refresh="every_step"), output_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []
    objective.refreshes = len(objective.schedule)
    assert not objective.feedback_may_grow()  # every session ran and nothing is owed


def test_direct_hypergradient_needs_a_reward_loss():
    class Other(OuterObjective):
        def evaluate(self, inner):
            return torch.zeros(())

    problem = BilevelProblem(MLPReward(3, [4]), _NoInner(), Other())  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="reward_loss"):
        DirectHypergradient().compute(problem)


# ---------------------------------------------------------------------- budget and a tiny run
TINY = {"total_env_steps": 768, "env_steps_per_outer_step": 256, "segment_length": 20, "query_budget": 7,
        "query_sessions": 3, "query_fraction": 1.0, "candidate_factor": 3, "hidden_sizes": [8], "eval_every": 2,
        "eval_episodes": 2, "n_envs": 2, "hyperparameters": {"n_steps": 128, "batch_size": 64, "n_epochs": 1,
                                                             "gamma": 0.98}}


def test_session_schedule_spends_the_budget_exactly():
    for budget, sessions, solves in ((7, 3, 3), (500, 10, 40), (1, 5, 2), (250, 30, 9)):
        config = PreferenceRLConfig(query_budget=budget, query_sessions=sessions, total_env_steps=512 * solves,
                                    env_steps_per_outer_step=512)
        schedule = session_schedule(config)
        assert sum(schedule) == budget and len(schedule) == solves == config.outer_steps
        assert all(count >= 0 for count in schedule)


def test_tiny_run_writes_its_files_and_spends_the_budget_exactly(tmp_path):
    from stable_baselines3 import PPO

    config = PreferenceRLConfig(**TINY)
    summary = run_preference_rl(config, tmp_path, progress=False, references=REFERENCES)
    for name in ("config.json", "metrics.jsonl", "policy.zip", "summary.json", "reward_member_0.safetensors",
                 "reward_member_0.json", "reward_member_2.json"):
        assert (tmp_path / name).exists(), name
    assert summary["queries_used"] == 7 and summary["outer_steps"] == 3
    assert summary["labelled_pairs"] + summary["ties"] + summary["skipped"] == 7  # bradley_terry: ties left out
    assert json.loads((tmp_path / "summary.json").read_text()) == json.loads(json.dumps(summary))
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2, 3]
    assert [row["queries_used"] for row in rows][-1] == 7
    assert [("normalized_return" in row) for row in rows] == [False, True, True]
    assert rows[-1]["env_steps"] == 768 and math.isfinite(summary["final_normalized_return"])
    PPO.load(tmp_path / "policy.zip", device="cpu")
    _, spec = load_reward_model(tmp_path, stem="reward_member_0")
    assert spec.input_dim == 4 + 1 and not spec.uses_actions  # CartPole's state + the absorbing indicator
    # A finished folder is not rerun.
    assert run_preference_rl(config, tmp_path, progress=False, references=REFERENCES) == summary


# ---------------------------------------------------------------------- bad inputs
def test_bad_inputs_give_clear_errors():
    with pytest.raises(ValidationError, match="query_budget"):
        PreferenceRLConfig(query_budget=0)
    with pytest.raises(ValidationError, match="ensemble_size"):
        PreferenceRLConfig(selection="disagreement", ensemble_size=1)
    with pytest.raises(ValidationError, match="teacher"):
        PreferenceRLConfig(teacher="lazy")
    with pytest.raises(ValidationError, match="loss"):
        PreferenceRLConfig(loss="sigmoid")  # a DPO loss on log-probs, not on reward scores
    reward = MLPReward(5, [4], uses_actions=True)
    objective = PreferenceLikelihood(reward, 4)
    first, second, _ = _random_segments(2, 4, seed=3)
    with pytest.raises(ValidationError, match="empty"):
        objective.add(Transitions(first.states[:0], first.actions[:0]),
                      Transitions(second.states[:0], second.actions[:0]), torch.zeros(0))
    with pytest.raises(ValidationError, match="labels"):
        objective.add(first, second, torch.tensor([1.0, 2.0]))
    with pytest.raises(ValidationError, match="labels"):
        objective.add(first, second, torch.tensor([1.0, math.nan]))
    bad = Transitions(first.states.clone(), first.actions)
    bad.states[0, 0] = math.nan
    with pytest.raises(ValidationError, match=r"first\.states"):
        objective.add(bad, second, torch.tensor([1.0, 0.0]))
    with pytest.raises(ValidationError, match="N·T"):
        objective.add(first, second, torch.tensor([1.0, 0.0, 1.0]))
    with pytest.raises(ValidationError, match="no labelled query"):
        objective.reward_loss(reward)
    with pytest.raises(ValidationError, match="loss_options"):
        PreferenceLikelihood(reward, 4, "robust_bradley_terry", {"flip": 0.1})
    # NaN true returns and an empty batch reach the teacher's own checks.
    teacher = Teacher.oracle()
    with pytest.raises(ValidationError, match="first_rewards"):
        teacher.label(torch.tensor([[1.0, math.nan]]), torch.tensor([[1.0, 1.0]]))
    with pytest.raises(ValidationError, match="empty"):
        teacher.label(torch.zeros(0, 3), torch.zeros(0, 3))


def test_every_step_refresh_solves_once_per_outer_step_under_lbfgs():
    """refresh='every_step': one inner solve per outer step however many L-BFGS evaluations the step takes."""
    from irl_bilevel.solver import BilevelSolver, OuterConfig

    class CountingInner(_NoInner):
        solves = 0

        def solve(self, reward_model) -> None:
            self.solves += 1

    torch.manual_seed(0)
    reward = MLPReward(5, [4], uses_actions=True)
    objective = PreferenceLikelihood(reward, 4)
    first, second, labels = _random_segments(6, 4, seed=4)
    objective.add(first, second, labels)
    inner = CountingInner()
    solver = BilevelSolver(BilevelProblem(reward, inner, objective), DirectHypergradient(refresh="every_step"),
                           OuterConfig(steps=3, optimizer="lbfgs", lbfgs_iterations_per_step=5), progress=False)
    start = float(objective.reward_loss(reward).detach())
    result = solver.run(resume=False)
    assert inner.solves == 3 and solver.hypergradient_evaluations > 3
    assert result.loss < start
    with pytest.raises(ValidationError, match="refresh"):
        DirectHypergradient(refresh="sometimes")  # type: ignore[arg-type]


def test_no_outer_step_before_the_first_label_and_no_stop_on_its_zero_gradient():
    """An online query loop whose first sessions bring no decided label: θ stays where it was (the l2 term alone
    would shrink an MLP reward to 0, where tanh leaves no gradient for the labels), the zero gradient does not
    end the run, and the first labels are fitted from the initial θ."""
    from irl_bilevel.solver import BilevelSolver, OuterConfig

    class LateLabels(PreferenceLikelihood):
        zero_when_empty = True
        refreshes = 0

        def refresh(self, inner, reward_model) -> None:
            self.refreshes += 1
            if self.refreshes == 3:  # the third session is the first with a decided label
                self.add(*_random_segments(6, 4, seed=4))

    torch.manual_seed(0)
    reward = MLPReward(5, [4], uses_actions=True)
    initial = torch.cat([p.detach().reshape(-1).clone() for p in reward.parameters()])
    objective = LateLabels(reward, 4)
    parameters: list[torch.Tensor] = []
    solver = BilevelSolver(BilevelProblem(reward, _NoInner(), objective), DirectHypergradient(refresh="every_step"),
                           OuterConfig(steps=4, optimizer="lbfgs", l2=1.0, lbfgs_iterations_per_step=5),
                           metrics=lambda: parameters.append(torch.cat([p.detach().reshape(-1).clone()
                                                                        for p in reward.parameters()])) or {},
                           progress=False)
    result = solver.run(resume=False)
    assert result.steps == 4 and objective.refreshes == 4
    assert torch.equal(parameters[0], initial) and torch.equal(parameters[1], initial)  # no label: no step
    assert not torch.equal(parameters[2], initial)  # the first labels move θ
    assert float(parameters[2].abs().max()) > 1e-3  # from the initial θ, not from a collapsed 0


def test_cli_runs_and_reports_bad_settings(tmp_path, monkeypatch, capsys):
    import classic_rl.preference_rl as preference_rl
    from irlb.main import main

    monkeypatch.setattr(preference_rl, "reference_returns", lambda *args: REFERENCES)
    settings = [f"{key}={json.dumps(value)}" for key, value in TINY.items()]
    argv = ["preference-rl", "--out", str(tmp_path / "run"), "--quiet", "--selection", "uniform",
            "--teacher", "mistake", "--loss", "robust_bradley_terry"]
    for setting in settings:
        argv += ["--set", setting]
    assert main([*argv, "--set", "ensemble_size=1"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["queries_used"] == 7 and (tmp_path / "run" / "reward.safetensors").exists()
    assert main(["preference-rl", "--out", str(tmp_path / "bad"), "--query-budget", "0"]) == 2
    assert "query_budget" in capsys.readouterr().err
