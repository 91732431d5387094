"""`irlb gym-irl`: ML-IRL on CartPole-v1 through the shared bilevel solver with the SB3 inner loop; its output
folder (policy, reward, config, metrics, summary) round-trips; a killed run resumes exactly; bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import classic_rl.gym_irl as gym_irl
from classic_rl.experts import rollout_demonstrations
from classic_rl.gym_irl import GymIRLConfig, run_gym_irl
from irl_bilevel.reward_io import load_reward_model
from irl_bilevel.rewards import Transitions
from irl_bilevel.runs import load_checkpoint
from irl_bilevel.validation import ValidationError

TINY = {"outer_steps": 3, "env_steps_per_outer_step": 128, "hidden_sizes": [16], "eval_episodes": 2,
        "hyperparameters": {"n_steps": 128, "batch_size": 64, "n_epochs": 2}}


def balance(observation: np.ndarray) -> int:
    """A linear controller that balances CartPole-v1 for all 500 steps: the demonstrator."""
    return int(observation[2] + 0.5 * observation[3] + 0.1 * observation[1] + 0.05 * observation[0] > 0)


@pytest.fixture(scope="module")
def demonstrations_file(tmp_path_factory):
    demos = rollout_demonstrations(balance, "CartPole-v1", 10, seed=1000)
    path = tmp_path_factory.mktemp("demos") / "cartpole.npz"
    np.savez(path, observations=demos.observations.numpy(), actions=demos.actions.numpy(),
             lengths=demos.lengths.numpy(), terminated=demos.terminated.numpy(),
             final_observations=demos.final_observations.numpy(), returns=demos.returns.numpy())
    return str(path)


def test_outputs_round_trip(tmp_path, demonstrations_file):
    from stable_baselines3 import PPO

    config = GymIRLConfig(demonstrations_file=demonstrations_file, transfer_steps=128, **TINY)
    summary = run_gym_irl(config, tmp_path, progress=False)
    for name in ("config.json", "metrics.jsonl", "checkpoint.pt", "policy.zip", "reward.safetensors", "reward.json",
                 "summary.json"):
        assert (tmp_path / name).exists(), name
    assert any((tmp_path / "tensorboard").rglob("events.out.tfevents.*"))
    assert json.loads((tmp_path / "summary.json").read_text()) == json.loads(json.dumps(summary))
    assert summary["outer_steps"] == 3 and "transfer_normalized_return" in summary
    assert 0 <= summary["epic_distance"] <= 1  # the learned reward's EPIC distance to CartPole's true reward
    recorded = json.loads((tmp_path / "config.json").read_text())
    assert recorded["config"]["env_id"] == "CartPole-v1" and "git_commit" in json.dumps(recorded)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2, 3] and all("normalized_return" in row for row in rows)

    policy = PPO.load(tmp_path / "policy.zip", device="cpu")
    again = PPO.load(tmp_path / "policy.zip", device="cpu")
    for key, value in policy.policy.state_dict().items():
        assert torch.equal(value, again.policy.state_dict()[key])
    reward, spec = load_reward_model(tmp_path)
    assert spec.input_dim == 4 + 1  # CartPole's observation + the absorbing indicator
    batch = Transitions(torch.randn(6, 5))
    reloaded, _ = load_reward_model(tmp_path)
    assert torch.equal(reward(batch).total, reloaded(batch).total)


def test_a_killed_run_resumes_and_ends_like_an_uninterrupted_one(tmp_path, demonstrations_file, monkeypatch):
    config = GymIRLConfig(demonstrations_file=demonstrations_file, **TINY)
    run_gym_irl(config, tmp_path / "whole", progress=False)

    original, calls = gym_irl.evaluate_policy_return, {"count": 0}

    def killed_at_the_third_evaluation(*args, **kwargs):
        calls["count"] += 1
        if calls["count"] == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(gym_irl, "evaluate_policy_return", killed_at_the_third_evaluation)
    with pytest.raises(KeyboardInterrupt):
        run_gym_irl(config, tmp_path / "killed", progress=False)
    assert not (tmp_path / "killed" / "summary.json").exists() and not (tmp_path / "killed" / "policy.zip").exists()
    first_segment = load_checkpoint(tmp_path / "killed" / "checkpoint.pt")["seconds"]
    monkeypatch.setattr(gym_irl, "evaluate_policy_return", original)
    summary = run_gym_irl(config, tmp_path / "killed", progress=False)
    assert summary["resumed"]
    assert summary["wall_s"] > first_segment > 0  # both segments count, not the last one alone
    whole = (tmp_path / "whole" / "metrics.jsonl").read_text()
    assert (tmp_path / "killed" / "metrics.jsonl").read_text() == whole
    assert (tmp_path / "killed" / "reward.safetensors").read_bytes() == (
        tmp_path / "whole" / "reward.safetensors").read_bytes()


def test_reaches_ninety_percent_of_the_expert_from_ten_demonstrations(tmp_path, demonstrations_file):
    # Budget stated: at most 40 outer steps of 2048 env steps (about 82k steps); the run stops at 0.9.
    config = GymIRLConfig(demonstrations_file=demonstrations_file, outer_steps=40, env_steps_per_outer_step=2048,
                          target_normalized_return=0.9, checkpoint_every=10)
    summary = run_gym_irl(config, tmp_path, progress=False)
    assert summary["final_normalized_return"] >= 0.9, summary


def test_bad_inputs_are_named(tmp_path, demonstrations_file):
    with pytest.raises(ValidationError, match="env_id"):
        GymIRLConfig(env_id="NoSuchEnv-v0")
    with pytest.raises(ValidationError, match="env_steps_per_outer_step"):
        GymIRLConfig(env_steps_per_outer_step=0)
    with pytest.raises(ValidationError, match="outer_steps"):
        GymIRLConfig(outer_steps=0)
    with pytest.raises(ValidationError, match="occupancy_discount"):
        GymIRLConfig(occupancy_discount=1.0)
    with pytest.raises(ValidationError, match="learner_solves"):
        GymIRLConfig(learner_solves=0)
    with pytest.raises(ValidationError, match="anchor_absorbing"):
        GymIRLConfig(anchor_absorbing=True, absorbing_indicator=False)
    with pytest.raises(ValidationError, match="unknown key"):
        GymIRLConfig.from_sources(None, ["learning_rate=0.1"])
    # CartPole's demonstrations do not fit Pendulum-v1 (3 observations, continuous actions): nothing is written.
    config = GymIRLConfig(env_id="Pendulum-v1", algorithm="sac", demonstrations_file=demonstrations_file)
    with pytest.raises(ValidationError, match="observations have shape"):
        run_gym_irl(config, tmp_path / "pendulum", progress=False)
    assert not (tmp_path / "pendulum").exists()
    actions_out_of_range = tmp_path / "bad.npz"
    with np.load(demonstrations_file) as archive:
        arrays = dict(archive)
    arrays["actions"] = arrays["actions"] + 5
    np.savez(actions_out_of_range, **arrays)
    with pytest.raises(ValidationError, match="actions must lie"):
        run_gym_irl(GymIRLConfig(demonstrations_file=str(actions_out_of_range)), tmp_path / "bad", progress=False)
    with pytest.raises(ValidationError, match="does not exist"):
        run_gym_irl(GymIRLConfig(demonstrations_file=str(tmp_path / "missing.npz")), tmp_path / "m", progress=False)
    first = GymIRLConfig(demonstrations_file=demonstrations_file, **TINY)
    run_gym_irl(first, tmp_path / "run", progress=False)
    with pytest.raises(ValidationError, match="different config"):
        run_gym_irl(GymIRLConfig(demonstrations_file=demonstrations_file, **{**TINY, "lr": 0.5}), tmp_path / "run",
                    progress=False)


def test_evaluations_every_k_outer_steps_and_at_the_last(tmp_path, demonstrations_file):
    config = GymIRLConfig(demonstrations_file=demonstrations_file, eval_every=2, **TINY)
    summary = run_gym_irl(config, tmp_path, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert ["true_return" in row for row in rows] == [False, True, True]
    assert summary["final_true_return"] == rows[-1]["true_return"]


def test_the_ablation_cell_runs_through_the_sweep_machinery_config(tmp_path, demonstrations_file):
    from classic_rl.experiments import irl_ablation
    from irlb.sweep import expand, load_spec, lookup

    spec = load_spec("sweeps/irl_ablation.json")
    trials = expand(spec)  # every grid point's config validates before anything runs
    assert len(trials) == 2 * 3 * 2 * 2 * len(spec.seeds)
    config = irl_ablation.CONFIG.from_dict({**irl_ablation.SCALES["tiny"], "reward_structure": "multi_aspect",
                                            "demonstrations_file": demonstrations_file})
    path = irl_ablation.run("tiny", tmp_path, seed=0, progress=False, config=config)
    record = json.loads(path.read_text())
    assert record["config"]["reward_structure"] == "multi_aspect" and len(record["curve"]) == 3
    assert (tmp_path / "run" / "reward.safetensors").exists()
    # the sweep's extra metrics are in the cell's result (transfer is None at tiny scale: no transfer run)
    assert all(path.split(".")[0] in record for path in spec.extra_metrics)
    assert 0.0 <= lookup(record, "summary.epic_distance") <= 1.0


def test_the_ablation_figure_draws_every_grid_point_of_the_sweep_summary(tmp_path):
    from figures import irl_ablation as figure
    from irl_bilevel.statistics import iqm_with_ci
    from irlb.sweep import expand, load_spec

    spec = load_spec("sweeps/irl_ablation.json")
    trials = expand(spec)
    points = {}
    for i, trial in enumerate(trials):  # the shape of irlb.sweep.summarize's sweep.json, synthetic metric values
        points.setdefault(json.dumps(trial.point, sort_keys=True), []).append(0.5 + 0.01 * i)
    grid_points = [{"point": json.loads(p), "values": v, **iqm_with_ci(v),
                    "extra_metrics": {path: {"values": v, **iqm_with_ci(v)} for path in spec.extra_metrics}}
                   for p, v in points.items()]
    summary = {"experiment": spec.experiment, "scale": spec.scale, "spec": spec.to_dict(), "provenance": {},
               "extra_metrics": list(spec.extra_metrics), "grid_points": grid_points,
               "trials": [{"point": t.point, "seed": t.seed} for t in trials]}
    (tmp_path / "irl_ablation_sweep.json").write_text(json.dumps(summary))
    paths = figure.plot(tmp_path, tmp_path / "figures")
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 0 for p in paths)


def test_an_anchored_run_learns_the_same_first_step_and_transfers_on_the_shifted_reward(tmp_path, demonstrations_file):
    """anchor_absorbing shifts what the agent sees by r_θ(absorbing); the outer gradient is unchanged, so the first
    outer step (its learner samples come from the initial policy, before the shifted reward has trained anything)
    moves θ exactly as without it."""
    steps = {**TINY, "outer_steps": 1}
    plain = run_gym_irl(GymIRLConfig(demonstrations_file=demonstrations_file, anchor_absorbing=False, **steps),
                        tmp_path / "plain", progress=False)
    anchored = run_gym_irl(GymIRLConfig(demonstrations_file=demonstrations_file, anchor_absorbing=True,
                                        transfer_steps=128, **steps), tmp_path / "anchored", progress=False)
    first, _ = load_reward_model(tmp_path / "plain")
    second, _ = load_reward_model(tmp_path / "anchored")
    for a, b in zip(first.parameters(), second.parameters()):
        torch.testing.assert_close(a, b)
    assert np.isfinite(anchored["transfer_normalized_return"]) and plain["outer_steps"] == anchored["outer_steps"]


def test_the_occupancy_weights_use_their_own_discount_and_null_means_the_agents(tmp_path, demonstrations_file):
    """With the agent's discount 0.9, the default occupancy discount (0.99) weights the expert and learner
    expectations differently from the agent's γ, so the first outer step differs; ``null`` is the agent's γ."""
    steps = {**TINY, "outer_steps": 1, "discount": 0.9}

    def first_step(name: str, **options) -> list[torch.Tensor]:
        run_gym_irl(GymIRLConfig(demonstrations_file=demonstrations_file, **steps, **options), tmp_path / name,
                    progress=False)
        return list(load_reward_model(tmp_path / name)[0].parameters())

    default, agents, explicit = first_step("default"), first_step("null", occupancy_discount=None), \
        first_step("explicit", occupancy_discount=0.9)
    assert GymIRLConfig().occupancy_discount == 0.99
    for a, b in zip(agents, explicit):
        torch.testing.assert_close(a, b)
    assert any(not torch.allclose(a, b) for a, b in zip(default, agents))


# ---------------------------------------------------------------------- a user's own environment
CORRIDOR = "custom_gym_env:Corridor-v0"  # tests/custom_gym_env.py, imported by gymnasium (tests/ is on sys.path)
CORRIDOR_SETTINGS = ["outer_steps=2", "env_steps_per_outer_step=64", "hidden_sizes=[8]", "eval_episodes=2",
                     'hyperparameters={"n_steps": 64, "batch_size": 32, "n_epochs": 1}']


def corridor_arguments(out, *settings: str) -> list[str]:
    arguments = ["gym-irl", "--env", CORRIDOR, "--out", str(out), "--quiet"]
    for setting in [*CORRIDOR_SETTINGS, *settings]:
        arguments += ["--set", setting]
    return arguments


def test_your_own_env_learns_from_demonstrations_only(tmp_path, capsys):
    from irlb.main import main

    demos = rollout_demonstrations(lambda observation: 1, CORRIDOR, 6, seed=0)  # always right: reaches the goal
    assert bool(demos.terminated.all())
    path = tmp_path / "corridor.npz"  # no `returns`: the expert's return is unknown
    np.savez(path, observations=demos.observations.numpy(), actions=demos.actions.numpy(),
             lengths=demos.lengths.numpy(), terminated=demos.terminated.numpy(),
             final_observations=demos.final_observations.numpy())
    assert main(corridor_arguments(tmp_path / "run", f'demonstrations_file="{path}"')) == 0
    printed = json.loads(capsys.readouterr().out)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert printed == summary
    assert summary["expert_return"] is None and summary["final_normalized_return"] is None
    assert any("'returns'" in note for note in summary["notes"])
    assert np.isfinite(summary["final_true_return"]) and summary["outer_steps"] == 2
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all("true_return" in row and "normalized_return" not in row for row in rows)
    # The absorbing state after the goal: the reward model reads the terminal flag's indicator feature.
    assert json.loads((tmp_path / "run" / "reward.json").read_text())["input_dim"] == 1 + 1

    # A target on the normalized return cannot be met without the expert's return: refused before any write.
    assert main(corridor_arguments(tmp_path / "target", f'demonstrations_file="{path}"',
                                   "target_normalized_return=0.9")) == 2
    assert "target_normalized_return" in capsys.readouterr().err and not (tmp_path / "target").exists()


def test_your_own_env_with_the_experts_settings(tmp_path, capsys):
    from irlb.main import main

    expert = ['expert_algorithm="ppo"', 'expert_hyperparameters={"n_steps": 64, "batch_size": 32, "n_epochs": 1}',
              "expert_timesteps=128", "num_demonstrations=2"]
    assert main(corridor_arguments(tmp_path / "run", *expert)) == 0
    summary = json.loads(capsys.readouterr().out)
    assert np.isfinite(summary["expert_return"]) and np.isfinite(summary["final_normalized_return"])
    assert "notes" not in summary


@pytest.mark.parametrize("settings, field", [
    ([], "expert_algorithm"),  # no built-in expert, no settings, no demonstrations
    (['expert_algorithm="newton"'], "expert_algorithm"),
    (['expert_hyperparameters={"n_steps": 64}'], "expert_hyperparameters"),  # without an algorithm
    (['expert_algorithm="ppo"', "expert_timesteps=0"], "expert_timesteps"),
    (['expert_algorithm="ppo"', 'expert_hyperparameters={"no_such_setting": 1}', "expert_timesteps=64"],
     "expert_hyperparameters"),
])
def test_bad_expert_settings_are_named(tmp_path, capsys, settings, field):
    from irlb.main import main

    assert main(corridor_arguments(tmp_path / "run", *settings)) == 2
    assert f"irlb: error: gym-irl.{field}" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("env_id, message", [("no_such_module_here:Corridor-v0", "cannot import"),
                                             ("custom_gym_env:Hallway-v0", "unknown gymnasium environment")])
def test_an_env_that_cannot_be_found_is_named(tmp_path, capsys, env_id, message):
    from irlb.main import main

    assert main(["gym-irl", "--env", env_id, "--out", str(tmp_path / "run"), "--quiet"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("irlb: error: gym-irl.env_id") and message in error
