import pytest
import torch
from conftest import random_mdp

from irl_bilevel import rewards
from irl_bilevel.tabular import soft_value_iteration
from irl_bilevel.validation import ValidationError


def batch(n=5, state_dim=3, num_actions=2):
    g = torch.Generator().manual_seed(0)
    actions = torch.nn.functional.one_hot(torch.randint(0, num_actions, (n,), generator=g), num_actions)
    return rewards.Transitions(torch.randn(n, state_dim, generator=g), actions,
                               torch.randn(n, state_dim, generator=g), torch.tensor([0, 0, 1, 0, 1]))


def test_scalar_reward_is_the_one_aspect_case():
    model = rewards.LinearReward(3)
    with torch.no_grad():
        model.linear.weight.copy_(torch.tensor([[1.0, 2.0, 3.0]]))
    out = model(batch())
    assert out.aspects.shape == (5, 1) and out.total.shape == (5,)
    assert torch.allclose(out.total, batch().states @ torch.tensor([1.0, 2.0, 3.0]))
    assert out.aspect_names == ("reward",)


@pytest.mark.parametrize(
    "aggregator, expected",
    [
        (rewards.FixedWeights([0.5, 2.0]), lambda a: a @ torch.tensor([0.5, 2.0])),
        (rewards.SimplexWeights(2), lambda a: a.mean(-1)),  # zero logits: uniform weights
        (rewards.SoftMin(0.01), lambda a: a.min(-1).values),
        (rewards.Lexicographic([1, 0], epsilon=1e-3), lambda a: a[:, 1] + 1e-3 * a[:, 0]),
    ],
)
def test_aggregators_follow_their_formulas(aggregator, expected):
    model = rewards.MLPReward(3 + 2, (8,), aspect_names=("helpful", "safe"), aggregator=aggregator, uses_actions=True)
    out = model(batch())
    assert out.aspects.shape == (5, 2)
    atol = 0.02 if isinstance(aggregator, rewards.SoftMin) else 1e-12
    assert torch.allclose(out.total, expected(out.aspects), atol=atol)


def test_gated_aggregator_weights_are_a_softmax_of_the_state():
    model = rewards.LinearReward(3, aspect_names=("a", "b", "c"), aggregator=rewards.Gated(3, 3))
    torch.nn.init.normal_(model.linear.weight)
    b = batch()
    out = model(b)
    weights = torch.softmax(model.aggregator.gate(b.states), -1)
    assert torch.allclose(out.total, (weights * out.aspects).sum(-1))
    # Gradients reach the gate, the learned part of the aggregator.
    out.total.sum().backward()
    assert model.aggregator.gate[0].weight.grad.abs().sum() > 0


def test_make_aggregator_rejects_unknown_names():
    assert isinstance(rewards.make_aggregator("softmin", 2, 3), rewards.SoftMin)
    with pytest.raises(ValidationError, match="aggregator"):
        rewards.make_aggregator("median", 2, 3)


def test_potential_shaping_adds_gamma_phi_next_minus_phi():
    base = rewards.LinearReward(3, uses_actions=False)
    potential = torch.nn.Linear(3, 1)
    shaped = rewards.PotentialShaping(base, potential, discount=0.9)
    b = batch()
    out = shaped(b)
    phi, phi_next = potential(b.states).squeeze(-1), potential(b.next_states).squeeze(-1)
    expected_shaping = 0.9 * phi_next * (1 - b.dones) - phi
    assert out.aspect_names == ("reward", "shaping")
    assert torch.allclose(out.aspects[:, 1], expected_shaping)
    assert torch.allclose(out.total, base(b).total + expected_shaping)
    with pytest.raises(ValidationError, match="next_states"):
        shaped(rewards.Transitions(b.states))


def test_shaping_leaves_the_optimal_policy_unchanged_on_a_tabular_mdp():
    mdp = random_mdp(num_states=6, num_actions=3)
    base = rewards.TabularReward(6)
    with torch.no_grad():
        base.table.copy_(mdp.true_reward)
    potential = torch.nn.Linear(4, 1)
    shaped = rewards.PotentialShaping(base, potential, discount=mdp.discount)
    plain = base.reward_table(mdp.features, 3, mdp.expected_next)
    with torch.no_grad():
        shaped_table = shaped.reward_table(mdp.features, 3, mdp.expected_next)
    # Hard optimal (temperature → 0) actions agree; soft Q differs exactly by −Φ(s).
    plain_q = soft_value_iteration(mdp, plain, temperature=1e-3).q
    shaped_q = soft_value_iteration(mdp, shaped_table, temperature=1e-3).q
    assert torch.equal(plain_q.argmax(-1), shaped_q.argmax(-1))
    phi = potential(mdp.features).squeeze(-1).detach()
    soft_plain = soft_value_iteration(mdp, plain).q
    soft_shaped = soft_value_iteration(mdp, shaped_table).q
    assert torch.allclose(soft_shaped, soft_plain - phi[:, None], atol=1e-8)


def test_state_action_model_needs_actions():
    model = rewards.LinearReward(5, uses_actions=True)
    with pytest.raises(ValidationError, match="actions"):
        model(rewards.Transitions(torch.zeros(2, 3)))
