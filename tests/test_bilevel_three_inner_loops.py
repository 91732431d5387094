"""One bilevel solver class, three inner loops: exact soft value iteration on Hanoi-3's tabular MDP, SB3 PPO on
CartPole-v1 and a LoRA-tuned LM acting in the Hanoi-3 text environment; each runs two outer steps of MaxEnt IRL
with the same hypergradient class and a multi-aspect reward. Plus the LoRA inner solver's bad-input handling:
unparseable text is counted and penalised, a reward with the wrong aspects is rejected."""

from __future__ import annotations

import pytest
import torch

from classic_rl.experts import rollout_demonstrations
from classic_rl.sb3_inner import SB3InnerSolver
from irl_bilevel.hypergradients import BilevelProblem, MaxEntHypergradient
from irl_bilevel.inner import InnerSolver, Policy, SoftValueIterationSolver
from irl_bilevel.objectives import MaxEntDemonstrationLoss, SampleMaxEntObjective
from irl_bilevel.rewards import LinearReward, PotentialShaping, SimplexWeights, Transitions
from irl_bilevel.runs import load_checkpoint, save_checkpoint
from irl_bilevel.solver import BilevelSolver, OuterConfig
from irl_bilevel.validation import ValidationError
from llm.agentic import ASPECT_NAMES, GraphNavEnv, HanoiEnv, build_tabular_mdp, optimal_demonstrations, run_episode
from llm.agentic.export import AspectTableReward, episode_steps, step_inputs
from llm.builtin_model import BuiltinRecipe, build_builtin_model
from llm.lora_inner import LoRAInnerConfig, LoRAInnerSolver, demonstration_objective
from llm.models import LoraSettings, load_causal_lm, with_lora

DISCOUNT = 0.9
TINY_LORA = LoRAInnerConfig(updates_per_solve=1, starts_per_update=2, episodes_per_start=2, max_new_tokens=3,
                            discount=DISCOUNT, learning_rate=1e-2, seed=0)
AGENTIC_RECIPE = BuiltinRecipe.tiny(agentic_envs=("hanoi-3", "steppath"), n_positions=96)


@pytest.fixture(scope="module")
def agentic_lm_path(tmp_path_factory):
    """The tiny built-in LM with Hanoi-3's and steppath's text in its corpus, built once into a private cache."""
    return build_builtin_model(AGENTIC_RECIPE, cache_dir=tmp_path_factory.mktemp("lm_cache"), progress=False)


def _lora_solver(path, env: HanoiEnv, config: LoRAInnerConfig = TINY_LORA, lora_seed: int = 0) -> LoRAInnerSolver:
    model, tokenizer = load_causal_lm(path)
    return LoRAInnerSolver(with_lora(model, LoraSettings(r=2, alpha=4.0), seed=lora_seed), tokenizer, env, config)


def _parameters(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1).clone() for p in model.parameters() if p.requires_grad])


def _two_outer_steps(reward_model, inner: InnerSolver, objective) -> torch.Tensor:
    """Two Adam steps of the same solver class and hypergradient class; returns the parameters before."""
    assert isinstance(inner, InnerSolver)
    before = _parameters(reward_model)
    problem = BilevelProblem(reward_model, inner, objective)
    result = BilevelSolver(problem, MaxEntHypergradient(), OuterConfig(steps=2, optimizer="adam", lr=0.1),
                           progress=False).run()
    assert result.steps == 2 and len(result.history) == 2
    assert all(torch.isfinite(torch.tensor(row["loss"])) for row in result.history)
    return before


def test_the_agentic_recipe_encodes_hanoi_text_and_review_recipes_keep_their_hash(agentic_lm_path):
    _, tokenizer = load_causal_lm(agentic_lm_path)
    env = HanoiEnv(3)
    for state in env.reachable_states():
        ids = tokenizer(env.render_state(state) + "A C")["input_ids"]
        assert tokenizer.unk_token_id not in ids and len(ids) + 2 <= AGENTIC_RECIPE.n_positions
    assert tokenizer.decode(tokenizer("A C", add_special_tokens=False)["input_ids"]) == "A C"
    # The review-only recipes' dictionaries (hence their cache keys) do not mention agentic text.
    assert "agentic_envs" not in BuiltinRecipe().as_dict() and "agentic_envs" in AGENTIC_RECIPE.as_dict()
    assert BuiltinRecipe.from_dict(AGENTIC_RECIPE.as_dict()) == AGENTIC_RECIPE
    with pytest.raises(ValidationError, match="agentic_envs"):
        BuiltinRecipe.tiny(agentic_envs=("chess",))
    # Every steppath document fits the context whole (its move is never cut), and a context too short is an error.
    nav = GraphNavEnv(["steppath"])
    for state in nav.reachable_states():
        if not nav.is_terminal(state):
            ids = tokenizer(nav.render_state(state) + "7")["input_ids"]
            assert tokenizer.unk_token_id not in ids and len(ids) + 1 <= AGENTIC_RECIPE.n_positions
    with pytest.raises(ValidationError, match="n_positions"):
        BuiltinRecipe.tiny(agentic_envs=("steppath",), n_positions=64).agentic_documents()


def test_one_bilevel_solver_drives_the_tabular_sb3_and_lora_inner_loops(agentic_lm_path):
    env = HanoiEnv(3)
    export = build_tabular_mdp(env, DISCOUNT)

    # (a) exact soft value iteration on the exported MDP, multi-aspect reward over the env's aspects.
    tabular_reward = AspectTableReward(export, initial_scales=[0.5] * 5)
    demos = optimal_demonstrations(env, export, absorbing_steps=100)
    before = _two_outer_steps(tabular_reward, SoftValueIterationSolver(export.mdp),
                              MaxEntDemonstrationLoss.from_demonstrations(export.mdp, demos))
    assert not torch.allclose(before, _parameters(tabular_reward))

    # (b) SB3 PPO on CartPole-v1: two linear aspects of (state, action) with learned simplex weights.
    cartpole_demos = rollout_demonstrations(lambda observation: int(observation[2] > 0), "CartPole-v1", 2, seed=0)
    sb3_reward = LinearReward(6, ("cart", "pole"), SimplexWeights(2), uses_actions=True, bias=True)
    sb3 = SB3InnerSolver("CartPole-v1", env_steps_per_outer_step=64, seed=0,
                         hyperparameters={"n_steps": 64, "batch_size": 64, "n_epochs": 1, "gamma": DISCOUNT})
    before = _two_outer_steps(sb3_reward, sb3, SampleMaxEntObjective(cartpole_demos, DISCOUNT))
    assert not torch.allclose(before, _parameters(sb3_reward))
    sb3.close()

    # (c) the LoRA-tuned LM acting in the Hanoi-3 text env, the same aspect reward class as (a).
    lora = _lora_solver(agentic_lm_path, env)
    adapter_before = _parameters(lora.model)
    lora_reward = AspectTableReward(export, initial_scales=[0.5] * 5)
    before = _two_outer_steps(lora_reward, lora, demonstration_objective(env, lora.export, DISCOUNT))
    assert not torch.allclose(before, _parameters(lora_reward))
    assert lora.updates == 3  # one solve per hypergradient: two steps, plus the evaluation after the first
    assert not torch.allclose(adapter_before, _parameters(lora.model))  # warm-started adapter kept training
    assert isinstance(lora.policy, Policy)


def test_the_learner_expectation_is_the_discounted_mean_over_recorded_episodes(agentic_lm_path):
    env = HanoiEnv(3)
    lora = _lora_solver(agentic_lm_path, env)
    reward = AspectTableReward(lora.export, initial_scales=env.weights)
    lora.solve(reward)
    expectation = lora.learner_reward_expectation(reward)
    expectation.backward()
    assert reward.scales.grad is not None and bool(reward.scales.grad.abs().sum() > 0)
    # By hand: Σ γ^t r_t over every step of every recorded episode (the goal's absorbing rows add 0 reward).
    numerator, denominator = 0.0, 0.0
    for episode in lora.episodes:
        for t, aspects in enumerate(episode.record.aspects):
            numerator += DISCOUNT**t * float(env.weights @ aspects)
            denominator += DISCOUNT**t
        if episode.terminated:
            denominator += DISCOUNT ** len(episode.record.aspects) / (1 - DISCOUNT)
    assert float(expectation.detach()) == pytest.approx(numerator / denominator, rel=1e-9)
    # Recorded counts match the parsed action columns (malformed = column A).
    malformed_column = len(lora.export.actions)
    for episode in lora.episodes:
        assert episode.record.num_malformed == episode.action_columns.count(malformed_column)
    # A potential-shaped reward (aspects + "shaping") reads next states on both sides of the MaxEnt gradient.
    shaped = PotentialShaping(AspectTableReward(lora.export), torch.nn.Linear(lora.export.mdp.num_states, 1),
                              DISCOUNT)
    lora.check_reward_model(shaped)
    objective = demonstration_objective(env, lora.export, DISCOUNT)
    gap = lora.learner_reward_expectation(shaped) - objective.expert_reward_expectation(lora, shaped)
    gap.backward()
    assert bool(shaped.potential.weight.grad.abs().sum() > 0)
    # The policy scores canonical actions: log-probabilities are finite and at most 0.
    states = torch.arange(3)
    log_prob = lora.policy.log_prob(states, torch.tensor([0, 1, 2]))
    assert log_prob.shape == (3,) and bool((log_prob <= 0).all()) and bool(torch.isfinite(log_prob).all())


def test_the_lora_inner_solver_runs_a_maxent_step_on_steppath(agentic_lm_path):
    env = GraphNavEnv(kinds=("steppath",))
    lora = _lora_solver(agentic_lm_path, env)
    reward = AspectTableReward(lora.export, initial_scales=[0.5] * 5)
    before = _two_outer_steps(reward, lora, demonstration_objective(env, lora.export, DISCOUNT))
    assert not torch.allclose(before, _parameters(reward))
    assert all(episode.record.steps >= 1 for episode in lora.episodes)


def test_unparseable_actions_are_counted_and_penalised_never_crash():
    env = HanoiEnv(3)
    export = build_tabular_mdp(env, DISCOUNT)
    record = run_episode(env, lambda observation: "%% no move here", start=0)
    assert record.steps == env.max_steps and record.num_malformed == env.max_steps and not record.reached_goal
    steps = episode_steps(env, export, record)
    assert steps.action_columns == [len(export.actions)] * env.max_steps and not steps.terminated
    reward = AspectTableReward(export, initial_scales=[1.0] * 5)
    states, actions = step_inputs(export, steps.state_indices, steps.action_columns)
    malformed = reward(Transitions(states, actions)).aspects
    assert torch.allclose(malformed[:, ASPECT_NAMES.index("malformed")], torch.tensor(-1.0))
    assert torch.allclose(malformed.sum(-1), torch.tensor(-2.0))  # malformed −1 and step −1
    # An unlisted action ("A A" parses but is not a canonical move) is invalid, with the invalid penalty.
    record = run_episode(env, lambda observation: "A A", start=0)
    steps = episode_steps(env, export, record)
    assert record.num_invalid == env.max_steps and steps.action_columns[0] == len(export.actions) + 1
    states, actions = step_inputs(export, steps.state_indices[:1], steps.action_columns[:1])
    assert float(reward(Transitions(states, actions)).aspects[0, ASPECT_NAMES.index("invalid")].detach()) == -1.0


def test_a_reward_with_other_aspects_is_rejected_and_the_state_dict_round_trips(agentic_lm_path, tmp_path):
    env = HanoiEnv(3)
    lora = _lora_solver(agentic_lm_path, env)
    wrong = LinearReward(lora.export.mdp.num_states, ("success", "speed"))
    with pytest.raises(ValidationError, match=r"aspect names \['success', 'speed'\] do not match"):
        lora.solve(wrong)
    lora.solve(AspectTableReward(lora.export))
    save_checkpoint(tmp_path / "inner.pt", lora.state_dict())
    state = load_checkpoint(tmp_path / "inner.pt")  # weights_only loading
    fresh = _lora_solver(agentic_lm_path, env, lora_seed=1)
    assert not torch.allclose(_parameters(fresh.model), _parameters(lora.model))
    fresh.load_state_dict(state)
    assert torch.equal(_parameters(fresh.model), _parameters(lora.model)) and fresh.updates == lora.updates
    with pytest.raises(ValidationError, match="episodes_per_start"):
        LoRAInnerConfig(episodes_per_start=1)
