"""Decision-aware shaping with the LoRA inner loop: the shared one-step surrogate math against hand computations,
the LoRA hypergradient's sign on a harmful vs a helpful candidate, the aspect checks, and the experiment at tiny
scale (with its figure).

The SB3 counterpart (same shared math) is ``tests/test_shaping_classic_control.py``.
"""

from __future__ import annotations

import json
from collections import deque

import pytest
import torch

from figures import agentic_shaping as figure
from irl_bilevel.rewards import FixedWeights, SimplexWeights
from irl_bilevel.shaping import (
    one_step_shaping_surrogate,
    policy_gradient_directions,
    returns_to_go,
    task_advantages,
    time_baseline,
)
from irl_bilevel.validation import ValidationError
from llm.agentic import HanoiEnv, build_tabular_mdp
from llm.agentic.export import episode_steps
from llm.agentic.metrics import EpisodeRecord
from llm.agentic.shaping import (
    CANDIDATES,
    LoRAOneStepShapingHypergradient,
    ShapedTaskReward,
    TextShapingSignals,
    episode_sequences,
)
from llm.builtin_model import CACHE_ENV, build_builtin_model
from llm.experiments import agentic_shaping as experiment
from llm.experiments.agentic_reward_learning import agentic_recipe
from llm.lora_inner import LoRAInnerConfig, LoRAInnerSolver, TextEpisode
from llm.models import LoraSettings, load_causal_lm, with_lora

GAMMA = 0.9


@pytest.fixture(scope="module")
def lm_cache(tmp_path_factory):
    """The tiny built-in LM with Hanoi-3's and steppath's text (the experiment's tiny recipe), built once."""
    cache = tmp_path_factory.mktemp("lm_cache")
    path = build_builtin_model(agentic_recipe("builtin-tiny", 1), cache_dir=cache, progress=False)
    return cache, path


# ---------------------------------------------------------------------- the shared math (irl_bilevel.shaping)
def test_returns_to_go_and_time_baseline_match_a_hand_computation():
    assert returns_to_go(torch.tensor([1.0, 0.0, 2.0]), 0.5).tolist() == [1.5, 1.0, 2.0]
    # Episodes of lengths 3 and 1: b_0 = (1.5 + 4)/2, b_1 = 1, b_2 = 2 (only the first is still running).
    centred = time_baseline([torch.tensor([1.5, 1.0, 2.0]), torch.tensor([4.0])])
    assert centred[0].tolist() == [-1.25, 0.0, 0.0] and centred[1].tolist() == [1.25]
    with pytest.raises(ValidationError, match="returns"):
        time_baseline([])


def test_task_advantages_are_exact_zeros_when_every_episode_is_the_same():
    rewards = [torch.tensor([0.0, 0.0, 0.1 + 0.2 - 0.3]), torch.tensor([0.0, 0.0, 0.0])]
    advantages, _ = task_advantages(rewards, GAMMA)
    assert torch.equal(advantages, torch.zeros(6))  # the 5.6e-17 residue is rounded to an exact zero
    advantages, returns = task_advantages([torch.tensor([0.0, 1.0]), torch.tensor([0.0, 0.0])], GAMMA)
    assert returns[0].tolist() == pytest.approx([GAMMA, 1.0])
    assert advantages.tolist() == pytest.approx([GAMMA / 2, 0.5, -GAMMA / 2, -0.5])


def test_directions_and_surrogate_match_per_step_gradients():
    """A softmax policy ``π(a|s) = softmax(W s)``: ``c_t = ∇ log π_t · g`` with ``g = (1/N) Σ ∇ log π_t Â_t``
    from explicit per-step gradients; the surrogate's θ-gradient is ``−(1/N) Σ c_t ∂Â^F_t/∂θ`` by hand."""
    torch.manual_seed(0)
    weight = torch.randn(3, 4, requires_grad=True)
    states, actions = torch.randn(5, 4), torch.tensor([0, 2, 1, 1, 0])
    log_prob = torch.log_softmax(states @ weight.T, -1)[torch.arange(5), actions]
    advantages = torch.tensor([0.5, -0.2, 0.0, 1.0, -1.3])
    c, g = policy_gradient_directions(log_prob, [weight], advantages, num_episodes=2)
    per_step = torch.stack([torch.autograd.grad(log_prob[t], weight, retain_graph=True)[0] for t in range(5)])
    g_hand = (per_step * advantages.view(5, 1, 1)).sum(0) / 2
    assert torch.allclose(g[0], g_hand)
    assert torch.allclose(c, (per_step * g_hand).sum((1, 2)))
    # Shaping F_θ = θ · features; episodes of 3 and 2 steps, the first with a trailing absorbing entry.
    theta = torch.tensor(0.7, requires_grad=True)
    features = [torch.tensor([1.0, 0.0, 2.0, 3.0]), torch.tensor([0.5, -1.0])]
    surrogate = one_step_shaping_surrogate(c, [theta * f for f in features], GAMMA, 2, steps=[3, 2])
    (grad,) = torch.autograd.grad(surrogate, theta)
    g1 = [1 + GAMMA**2 * 2 + GAMMA**3 * 3, GAMMA * 2 + GAMMA**2 * 3, 2 + GAMMA * 3]  # ∂G^F_t/∂θ, episode 1
    g2 = [0.5 - GAMMA, -1.0]
    b = [(g1[0] + g2[0]) / 2, (g1[1] + g2[1]) / 2, g1[2]]
    centred = [g1[0] - b[0], g1[1] - b[1], g1[2] - b[2], g2[0] - b[0], g2[1] - b[1]]
    assert float(grad) == pytest.approx(-float((c * torch.tensor(centred)).sum()) / 2)
    with pytest.raises(ValidationError, match="directions"):
        one_step_shaping_surrogate(c[:4], [theta * f for f in features], GAMMA, 2, steps=[3, 2])
    with pytest.raises(ValidationError, match="advantages"):
        policy_gradient_directions(log_prob, [weight], advantages[:3], 2)


# ---------------------------------------------------------------------- candidates and aspect checks
class _NoMalformedHanoi(HanoiEnv):
    aspect_names = ("success", "invalid", "progress", "step")


class _ReorderedHanoi(HanoiEnv):
    aspect_names = ("invalid", "success", "malformed", "progress", "step")


def test_candidate_signals_are_what_the_docstring_says():
    env = HanoiEnv(3)
    export = build_tabular_mdp(env, GAMMA)
    signals = TextShapingSignals(env, export, CANDIDATES, GAMMA, potential_scale=2.0, stall_bonus=0.5,
                                 aggregator=FixedWeights([1.0] * 4))
    start = env.starts[0]  # all on A: 7 moves from the goal, the largest distance
    move = env.optimal_plan(start)[0]
    after = env.transition(start, move)
    s, s_next = export.state_index[start], export.state_index[after]
    num_actions = export.num_action_inputs
    onehot = torch.eye(export.mdp.num_states, dtype=torch.float64)
    columns = torch.eye(num_actions, dtype=torch.float64)
    from irl_bilevel.rewards import Transitions

    legal = Transitions(onehot[[s]], columns[[export.action_index[move]]], onehot[[s_next]])
    aspects = signals(legal).aspects[0].tolist()
    assert aspects == pytest.approx([2.0 * (GAMMA * -6 / 7 + 1.0), 0.0, 0.0, 0.5])
    malformed = Transitions(onehot[[s]], columns[[num_actions - 2]], onehot[[s]])
    assert signals(malformed).aspects[0].tolist() == pytest.approx([2.0 * (1 - GAMMA), 0.0, -1.0, 0.5])
    goal = export.state_index[((), (), (0, 1, 2))]
    last = Transitions(onehot[[s]], columns[[0]], onehot[[goal]])
    assert signals(last).aspects[0, 3] == 0.0  # a step that ends the episode earns no stall bonus
    absorbing = Transitions(onehot[[goal]], torch.zeros(1, num_actions, dtype=torch.float64), onehot[[goal]])
    assert signals(absorbing).aspects.abs().sum() == 0.0


def test_mismatched_aspects_and_candidates_raise_validation_errors(lm_cache):
    env = HanoiEnv(3)
    export = build_tabular_mdp(env, GAMMA)
    with pytest.raises(ValidationError, match="unknown shaping candidate"):
        TextShapingSignals(env, export, ["progress_potential", "distance"], GAMMA)
    with pytest.raises(ValidationError, match="at most once"):
        TextShapingSignals(env, export, ["stall", "stall"], GAMMA)
    with pytest.raises(ValidationError, match="malformed"):
        TextShapingSignals(_NoMalformedHanoi(3, weights=[1.0, 1.0, 0.1, 0.1]), export, ["malformed"], GAMMA)
    reordered = _ReorderedHanoi(3)
    with pytest.raises(ValidationError, match="aspect names"):
        ShapedTaskReward(reordered, export, None)  # the export's aspects are Hanoi's, not this env's
    with pytest.raises(ValidationError, match="aspect names"):
        TextShapingSignals(reordered, export, ["stall"], GAMMA)
    # The LoRA inner loop rejects a reward whose task aspects are another env's.
    _, path = lm_cache
    inner = _solver(path, env)
    wrong = ShapedTaskReward(reordered, build_tabular_mdp(reordered, GAMMA), None)
    with pytest.raises(ValidationError, match="aspect names"):
        inner.solve(wrong)


# ---------------------------------------------------------------------- the LoRA hypergradient
def _solver(path, env: HanoiEnv) -> LoRAInnerSolver:
    model, tokenizer = load_causal_lm(path)
    config = LoRAInnerConfig(updates_per_solve=1, starts_per_update=2, episodes_per_start=2, max_new_tokens=3,
                             discount=GAMMA, learning_rate=1e-2, seed=0)
    return LoRAInnerSolver(with_lora(model, LoraSettings(r=2, alpha=4.0), seed=0), tokenizer, env, config)


def _episode(inner: LoRAInnerSolver, start: int, texts: list[str]) -> TextEpisode:
    """A scripted episode (the given action texts from ``starts[start]``) as the inner loop records it."""
    env, tokenizer = inner.env.__class__(3), inner.tokenizer
    observation, info = env.reset(options={"start": start})
    record = EpisodeRecord(env.name, start, 0, False, 0, 0, 0, info["optimal_length"], states=[env.state])
    prompts, completions = [], []
    for text in texts:
        prompts.append(tokenizer(observation, add_special_tokens=True)["input_ids"])
        completions.append([*tokenizer(text, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id])
        record.observations.append(observation)
        observation, _, terminated, truncated, info = env.step(text)
        record.action_texts.append(text)
        record.states.append(info["state"])
        record.reached_goal = info["success"]
        record.steps = info["steps"]
        if terminated or truncated:
            break
    steps = episode_steps(env, inner.export, record)
    return TextEpisode(record, prompts, completions, steps.state_indices, steps.action_columns, steps.final_state,
                       steps.terminated)


def test_the_lora_hypergradient_drives_the_harmful_candidate_down(lm_cache):
    """Two starts one move from the goal: per start, one episode solves at once, one dawdles with invalid moves to
    the cap. The task gradient favours the solving episodes, so the stall bonus (paid for not finishing) gets a
    positive loss gradient on its logit (its weight goes down) and the invalid penalty a negative one. (By hand:
    ``∂L/∂w_stall ∝ −Σ c_t Â^stall_t = (G^stall/2)(c_1 + c_3 − c_2 − c_4)/4 = 2 G^stall ‖g‖² > 0``.)"""
    _, path = lm_cache
    env = HanoiEnv(3)
    inner = _solver(path, env)
    near = [i for i, s in enumerate(env.starts) if env.distance_to_goal(s) == 1][:2]
    episodes = []
    for start in near:
        finish = env.format_action(env.optimal_plan(env.starts[start])[0])
        episodes += [_episode(inner, start, [finish]), _episode(inner, start, ["B B"] * env.max_steps)]
    assert [e.record.reached_goal for e in episodes] == [True, False, True, False]
    inner.recorded = deque([episodes], maxlen=1)
    shaping = TextShapingSignals(env, inner.export, CANDIDATES, GAMMA, potential_scale=1.0, stall_bonus=0.5)
    reward = ShapedTaskReward(env, inner.export, shaping)
    method = LoRAOneStepShapingHypergradient()
    estimate = method.estimate(inner, reward, list(reward.parameters()))
    (logits,) = estimate.gradients
    assert estimate.loss == pytest.approx(-0.5)
    assert method.last["task_gradient_norm"] > 0
    k = {name: i for i, name in enumerate(CANDIDATES)}
    assert logits[k["stall"]] > 0 and logits[k["invalid"]] < 0 and logits.argmax() == k["stall"]
    # One Adam step on the simplex logits (as the bilevel solver takes) lowers the harmful weight.
    assert isinstance(shaping.aggregator, SimplexWeights)
    before = shaping.aggregator.weights.detach().clone()
    optimizer = torch.optim.Adam(reward.parameters(), lr=0.1)
    shaping.aggregator.logits.grad = logits.to(shaping.aggregator.logits.dtype)
    optimizer.step()
    assert shaping.aggregator.weights[k["stall"]] < before[k["stall"]]


def test_episode_sequences_append_the_absorbing_tail():
    class _E:
        def __init__(self, steps: int, terminated: bool) -> None:
            self.state_indices, self.terminated = list(range(steps)), terminated

    rows = torch.tensor([1.0, 2.0, 3.0, 4.0, 0.5])  # steps of a 2-step (ended) and a 2-step episode, one tail
    sequences = episode_sequences(rows, [_E(2, True), _E(2, False)], GAMMA)  # type: ignore[list-item]
    assert sequences[0].tolist() == pytest.approx([1.0, 2.0, 0.5 / (1 - GAMMA)]) and sequences[1].tolist() == [3, 4]
    with pytest.raises(ValidationError, match="rows"):
        episode_sequences(rows[:4], [_E(2, True), _E(2, False)], GAMMA)  # type: ignore[list-item]


# ---------------------------------------------------------------------- the experiment
def test_every_scale_validates_into_the_typed_config():
    assert set(experiment.SCALES) == {"tiny", "quick", "full"}
    for values in experiment.SCALES.values():
        config = experiment.CONFIG.from_dict(values)
        assert config.total_updates % config.updates_per_solve == 0
    quick = experiment.SCALES["quick"]
    assert quick["seeds"] >= 3 and "hanoi-3" in quick["envs"] and set(quick["methods"]) == set(experiment.METHODS)
    with pytest.raises(ValidationError, match="total_updates"):
        experiment.run("tiny", ".", config=experiment.CONFIG.from_dict({**experiment.SCALES["tiny"],
                                                                          "total_updates": 3,
                                                                          "updates_per_solve": 2}))
    with pytest.raises(ValidationError, match="candidates"):
        experiment.CONFIG.from_dict({**experiment.SCALES["tiny"], "candidates": ["distance"]})


def test_the_tiny_run_writes_every_method_with_the_same_budget_and_its_figure(tmp_path, monkeypatch, lm_cache):
    cache, _ = lm_cache
    monkeypatch.setenv(CACHE_ENV, str(cache))
    path = experiment.run("tiny", tmp_path, seed=2, progress=False)
    results = json.loads(path.read_text())  # strict JSON
    settings = experiment.SCALES["tiny"]
    assert results["complete"] and results["scale"] == "tiny" and results["provenance"]["seed"] == 2
    entry = results["envs"]["hanoi-3"]
    assert {r["method"] for r in entry["runs"]} == set(experiment.METHODS)
    solves = settings["total_updates"] // settings["updates_per_solve"]
    for run in entry["runs"]:
        assert [row["updates"] for row in run["curve"]] == [settings["updates_per_solve"] * (i + 1)
                                                            for i in range(solves)]
        assert run["evaluations"][0] == entry["runs"][0]["evaluations"][0]  # one shared start evaluation
        assert run["evaluations"][-1]["updates"] == settings["total_updates"]
    learned = next(r for r in entry["runs"] if r["method"] == "learned_weights")
    assert len(learned["outer_history"]) == solves - 1 and len(learned["weights"]) == solves
    assert sum(learned["weights"][-1]["weights"]) == pytest.approx(1.0)
    # The changed method starts at zero shaping: its first solve is the unshaped one, update for update.
    from_none = next(r for r in entry["runs"] if r["method"] == "learned_from_none")
    none = next(r for r in entry["runs"] if r["method"] == "none")
    assert from_none["weights"][0]["weights"] == [0.0] * len(settings["candidates"])
    assert from_none["curve"][0] == none["curve"][0]
    assert results["goals"]["hanoi-3"].keys() == {"learned_weights_at_least_none", "learned_from_none_at_least_none"}
    summary = entry["summary"]
    assert set(summary) == set(experiment.METHODS)
    assert set(summary["learned_weights"]["final_weights_mean"]) == set(settings["candidates"])
    assert 0.0 <= summary["learned_from_none"]["zero_task_gradient_fraction"] <= 1.0
    assert {"iqm", "low", "high", "n"} <= set(summary["none"]["final_goal_rate"])
    paths = figure.plot(tmp_path, tmp_path / "figures")
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 0 for p in paths)
