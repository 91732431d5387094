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
