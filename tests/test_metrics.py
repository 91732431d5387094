import pytest
import torch
from conftest import random_mdp

from irl_bilevel.metrics import canonicalize_reward, epic_distance, normalized_return
from irl_bilevel.tabular import soft_value_iteration


def explicit_epic(a, b, s, n, gamma):
    ca = canonicalize_reward(a, s, n, gamma).reshape(-1)
    cb = canonicalize_reward(b, s, n, gamma).reshape(-1)
    rho = torch.corrcoef(torch.stack([ca, cb]))[0, 1]
    return float(((1 - rho) / 2).clamp(min=0).sqrt())


@pytest.mark.parametrize("shape", [(7,), (7, 3)])
def test_closed_form_epic_matches_the_explicit_canonicalization(shape):
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    assert epic_distance(a, b, 7, 3, 0.9) == pytest.approx(explicit_epic(a, b, 7, 3, 0.9), abs=1e-12)
    # The explicit [S, A, S] path agrees too.
    b3 = b.reshape(7, -1)[:, :, None].expand(7, 3, 7) if b.dim() == 2 else b[:, None, None].expand(7, 3, 7)
    assert epic_distance(a, b3, 7, 3, 0.9) == pytest.approx(explicit_epic(a, b, 7, 3, 0.9), abs=1e-12)


def test_epic_is_invariant_to_shaping_and_scaling_and_detects_sign_flips():
    g = torch.Generator().manual_seed(1)
    reward = torch.randn(6, 2, generator=g)
    potential = torch.randn(6, generator=g)
    transitions = torch.rand(6, 2, 6, generator=g)
    transitions /= transitions.sum(-1, keepdim=True)
    shaped = reward[:, :, None] + 0.9 * potential[None, None, :] - potential[:, None, None]
    assert epic_distance(reward, 3.0 * shaped, 6, 2, 0.9) == pytest.approx(0.0, abs=1e-7)
    assert epic_distance(reward, -reward, 6, 2, 0.9) == pytest.approx(1.0)


def test_normalized_return_is_one_for_the_expert_and_zero_for_a_constant_reward():
    mdp = random_mdp()
    expert = soft_value_iteration(mdp, mdp.true_reward).log_policy
    assert normalized_return(mdp, mdp.true_reward, expert) == pytest.approx(1.0)
    assert normalized_return(mdp, torch.zeros(6), expert) == pytest.approx(0.0, abs=1e-12)


# ---------------------------------------------------------------------- sample-based EPIC
def _tabular_reward_function(table: torch.Tensor):
    """``[S, A]`` table as a reward function of one-hot transitions."""
    def reward(batch):
        return table[batch.states.argmax(-1), batch.actions.argmax(-1)]
    return reward


def test_sample_epic_on_every_transition_equals_the_closed_form():
    from irl_bilevel.metrics import sample_epic_distance
    from irl_bilevel.rewards import Transitions

    torch.manual_seed(0)
    num_states, num_actions, gamma = 5, 3, 0.9
    a, b = torch.randn(num_states, num_actions, dtype=torch.float64), torch.randn(num_states, num_actions,
                                                                               dtype=torch.float64)
    eye_s, eye_a = torch.eye(num_states, dtype=torch.float64), torch.eye(num_actions, dtype=torch.float64)
    s, act, s_next = torch.meshgrid(torch.arange(num_states), torch.arange(num_actions), torch.arange(num_states),
                                    indexing="ij")
    coverage = Transitions(eye_s[s.reshape(-1)], eye_a[act.reshape(-1)], eye_s[s_next.reshape(-1)])
    # Every (action, next state) pair once: the uniform joint distribution of the means, exactly.
    mean_actions, mean_states = eye_a[act[0].reshape(-1)], eye_s[s_next[0].reshape(-1)]
    sampled = sample_epic_distance(_tabular_reward_function(a), _tabular_reward_function(b), coverage, mean_states,
                                   mean_actions, gamma)
    assert sampled == pytest.approx(epic_distance(a, b, num_states, num_actions, gamma), abs=1e-12)


def test_sample_epic_is_exactly_invariant_to_shaping_and_scaling_on_continuous_states():
    from irl_bilevel.metrics import sample_epic_distance
    from irl_bilevel.rewards import MLPReward, Transitions

    torch.manual_seed(1)
    gamma = 0.99
    model = MLPReward(4 + 2, (16,), uses_actions=True).double()
    potential = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()

    def base(batch):
        return model(batch).total

    def shaped(batch):
        return 2.5 * base(batch) + gamma * potential(batch.next_states).squeeze(-1) - potential(
            batch.states).squeeze(-1)

    def flipped(batch):
        return -base(batch)

    def data(n):
        return torch.randn(n, 4, dtype=torch.float64), torch.eye(2, dtype=torch.float64)[torch.randint(0, 2, (n,))]

    states, actions = data(200)
    coverage = Transitions(states, actions, states + 0.1 * torch.randn_like(states))
    mean_states, mean_actions = data(64)
    assert sample_epic_distance(base, shaped, coverage, mean_states, mean_actions, gamma) == pytest.approx(0.0,
                                                                                                         abs=1e-6)
    assert sample_epic_distance(base, flipped, coverage, mean_states, mean_actions, gamma) == pytest.approx(1.0)
    other = MLPReward(6, (16,), uses_actions=True).double()
    distance = sample_epic_distance(base, lambda batch: other(batch).total, coverage, mean_states, mean_actions,
                                    gamma)
    assert 0.05 < distance < 1.0


def test_sample_epic_rejects_bad_inputs():
    from irl_bilevel.metrics import sample_epic_distance
    from irl_bilevel.rewards import Transitions
    from irl_bilevel.validation import ValidationError

    states = torch.zeros(3, 2)
    with pytest.raises(ValidationError, match="coverage"):
        sample_epic_distance(lambda b: b.states.sum(-1), lambda b: b.states.sum(-1), Transitions(states), states,
                             torch.zeros(3, 1), 0.9)
    coverage = Transitions(states, torch.zeros(3, 1), states)
    with pytest.raises(ValidationError, match="mean_states"):
        sample_epic_distance(lambda b: b.states.sum(-1), lambda b: b.states.sum(-1), coverage, states,
                             torch.zeros(2, 1), 0.9)
    with pytest.raises(ValidationError, match="finite"):
        sample_epic_distance(lambda b: b.states.sum(-1) + float("nan"), lambda b: b.states.sum(-1), coverage,
                             states, torch.zeros(3, 1), 0.9)
