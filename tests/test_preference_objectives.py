"""Preference objectives with ties, label noise and aspects (irl_bilevel.losses.preference_models) and reward-model
ensembles: values against independent numpy evaluations of the published formulas, limits, gradcheck, bad inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from irl_bilevel.losses import PREFERENCE_LOSSES, AspectPairBatch, RankingBatch, preference_loss
from irl_bilevel.reward_ensemble import RewardEnsemble
from irl_bilevel.rewards import LinearReward, Transitions
from irl_bilevel.validation import ValidationError

NEW = ["rao_kupper", "davidson", "robust_bradley_terry", "smoothed_bradley_terry", "aspect_bradley_terry"]
LABELLED = ["rao_kupper", "davidson", "robust_bradley_terry", "smoothed_bradley_terry"]


def sig(z):
    return 1.0 / (1.0 + np.exp(-z))


def data(seed=0, n=7):
    rng = np.random.default_rng(seed)
    scores = rng.normal(scale=2.0, size=(n, 2))
    labels = rng.choice([0.0, 0.5, 1.0], size=n)
    return scores, labels


def reference(name, scores, labels, beta, params):
    """Per-pair losses written from the papers' probability formulas (in probabilities, not log-space)."""
    p1, p2 = np.exp(beta * scores[:, 0]), np.exp(beta * scores[:, 1])
    if name == "rao_kupper":
        th = params["theta"]
        win1, win2 = p1 / (p1 + th * p2), p2 / (p2 + th * p1)
        tie = (th ** 2 - 1) * p1 * p2 / ((p1 + th * p2) * (th * p1 + p2))
    elif name == "davidson":
        nu = params["nu"]
        z = p1 + p2 + nu * np.sqrt(p1 * p2)
        win1, win2, tie = p1 / z, p2 / z, nu * np.sqrt(p1 * p2) / z
    elif name == "robust_bradley_terry":
        e = params["flip_rate"]
        d = beta * (scores[:, 0] - scores[:, 1])
        win1, win2 = (1 - e) * sig(d) + e * sig(-d), (1 - e) * sig(-d) + e * sig(d)
        return np.where(labels == 1, -np.log(win1), np.where(labels == 0, -np.log(win2),
                                                             -0.5 * (np.log(win1) + np.log(win2))))
    else:  # smoothed_bradley_terry
        e, m = params["label_smoothing"], params["margin"]
        d = beta * (scores[:, 0] - scores[:, 1])
        y = (1 - e) * labels + e * (1 - labels)
        return -y * np.log(sig(d - m)) - (1 - y) * np.log(sig(-d - m))
    return -np.log(np.where(labels == 1, win1, np.where(labels == 0, win2, tie)))


PARAMS = {"rao_kupper": {"theta": 1.7}, "davidson": {"nu": 0.8}, "robust_bradley_terry": {"flip_rate": 0.15},
          "smoothed_bradley_terry": {"label_smoothing": 0.1, "margin": 0.3}}


def test_registered_with_docstrings_and_sources():
    for name in NEW:
        loss = PREFERENCE_LOSSES[name]
        doc = loss.function.__doc__ or ""
        assert "Source" in doc and ("σ" in doc or "log" in doc), name
        assert loss.source and loss.default_beta == 1.0


@pytest.mark.parametrize("name", LABELLED)
@pytest.mark.parametrize("beta", [1.0, 0.4])
def test_values_match_the_published_formulas(name, beta):
    scores, labels = data(seed=1)
    output = preference_loss(name, RankingBatch(torch.tensor(scores)), beta, labels=torch.tensor(labels),
                             **PARAMS[name])
    np.testing.assert_allclose(output.losses.numpy(), reference(name, scores, labels, beta, PARAMS[name]),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["rao_kupper", "davidson"])
def test_tie_models_are_distributions(name):
    scores, _ = data(seed=2, n=9)
    batch = RankingBatch(torch.tensor(scores))
    total = sum(torch.exp(-preference_loss(name, batch, labels=torch.full((9,), y)).losses) for y in (0.0, 0.5, 1.0))
    torch.testing.assert_close(total, torch.ones(9, dtype=torch.float64))


def test_limits_reduce_to_bradley_terry():
    scores, _ = data(seed=3)
    batch = RankingBatch(torch.tensor(scores))
    bt = preference_loss("bradley_terry", batch).losses
    torch.testing.assert_close(preference_loss("robust_bradley_terry", batch, flip_rate=0.0).losses, bt)
    torch.testing.assert_close(preference_loss("smoothed_bradley_terry", batch).losses, bt)
    torch.testing.assert_close(preference_loss("rao_kupper", batch, theta=1 + 1e-9).losses, bt, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(preference_loss("davidson", batch, nu=1e-9).losses, bt, rtol=1e-6, atol=1e-8)
    with_margin = preference_loss("bradley_terry", batch, margin=0.4).losses
    torch.testing.assert_close(preference_loss("smoothed_bradley_terry", batch, margin=0.4).losses, with_margin)


def test_label_orientation_and_rewards():
    scores = torch.tensor([[2.0, -1.0], [0.5, 3.0]], dtype=torch.float64)
    labels = torch.tensor([0.0, 0.0])
    out = preference_loss("rao_kupper", RankingBatch(scores), labels=labels)
    swapped = preference_loss("rao_kupper", RankingBatch(scores.flip(1)), labels=1 - labels)
    torch.testing.assert_close(out.losses, swapped.losses)
    assert out.chosen_rewards.tolist() == [-1.0, 3.0] and out.reward_accuracy == 0.5


def test_robust_loss_is_bounded_by_minus_log_epsilon():
    scores = torch.tensor([[-1e4, 1e4], [-50.0, 50.0]], dtype=torch.float64)
    losses = preference_loss("robust_bradley_terry", RankingBatch(scores), flip_rate=0.1).losses
    assert bool(torch.isfinite(losses).all()) and float(losses.max()) <= -math.log(0.1) + 1e-12


def test_extreme_scores_stay_finite():
    scores = torch.tensor([[1e4, -1e4], [-1e4, 1e4], [0.0, 0.0]], dtype=torch.float64)
    for name in LABELLED:
        for y in (0.0, 0.5, 1.0):
            out = preference_loss(name, RankingBatch(scores), labels=torch.full((3,), y), **PARAMS[name])
            assert bool(torch.isfinite(out.losses).all()), (name, y)


@pytest.mark.parametrize("name", LABELLED)
def test_gradcheck(name):
    scores, labels = data(seed=4, n=5)
    s = torch.tensor(scores, requires_grad=True)
    y = torch.tensor(labels)
    assert torch.autograd.gradcheck(lambda x: preference_loss(name, RankingBatch(x), 0.7, labels=y,
                                                              **PARAMS[name]).losses, (s,))


def aspect_data(seed=5, n=4, k=3):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, k)), rng.normal(size=(n, k)), rng.choice([0.0, 0.5, 1.0], size=(n, k)),
            rng.random((n, k)) < 0.7)


def test_aspect_bradley_terry_values_and_gradcheck():
    first, second, labels, mask = aspect_data()
    mask[:, 0] = True
    weights = np.array([1.0, 2.0, 0.5])
    beta = 0.8
    out = preference_loss("aspect_bradley_terry", AspectPairBatch(torch.tensor(first), torch.tensor(second)), beta,
                          aspect_labels=torch.tensor(labels), aspect_mask=torch.tensor(mask),
                          aspect_weights=torch.tensor(weights))
    d = beta * (first - second)
    per = -labels * np.log(sig(d)) - (1 - labels) * np.log(sig(-d))
    w = weights * mask
    np.testing.assert_allclose(out.losses.numpy(), (w * per).sum(1) / w.sum(1), rtol=1e-12)
    f = torch.tensor(first, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x: preference_loss("aspect_bradley_terry", AspectPairBatch(x, torch.tensor(second)),
                                  aspect_labels=torch.tensor(labels), aspect_mask=torch.tensor(mask)).losses, (f,))


def test_aspect_bradley_terry_with_one_aspect_is_bradley_terry():
    first, second, _, _ = aspect_data(k=1)
    out = preference_loss("aspect_bradley_terry", AspectPairBatch(torch.tensor(first), torch.tensor(second)),
                          aspect_labels=torch.ones(4, 1))
    bt = preference_loss("bradley_terry", RankingBatch(torch.tensor(np.concatenate([first, second], 1))))
    torch.testing.assert_close(out.losses, bt.losses)


@pytest.mark.parametrize(("name", "call", "field"), [
    ("rao_kupper", {"labels": torch.tensor([1.0, 2.0])}, "labels"),
    ("rao_kupper", {"theta": 1.0}, "theta"),
    ("davidson", {"nu": 0.0}, "nu"),
    ("davidson", {"labels": torch.tensor([1.0])}, "labels"),
    ("robust_bradley_terry", {"flip_rate": 0.5}, "label_smoothing"),
    ("robust_bradley_terry", {"labels": torch.tensor([float("nan"), 1.0])}, "labels"),
    ("smoothed_bradley_terry", {"label_smoothing": -0.1}, "label_smoothing"),
    ("smoothed_bradley_terry", {"margin": torch.zeros(3)}, "margin"),
    ("davidson", {"tau": 1.0}, "tau"),
])
def test_bad_arguments_name_the_field(name, call, field):
    with pytest.raises(ValidationError, match=rf"^{field}"):
        preference_loss(name, RankingBatch(torch.zeros(2, 2)), **call)


def test_bad_batches_are_refused():
    with pytest.raises(ValidationError, match=r"^scores"):
        preference_loss("rao_kupper", RankingBatch(torch.zeros(2, 3)))
    with pytest.raises(ValidationError, match=r"^batch"):
        preference_loss("aspect_bradley_terry", RankingBatch(torch.zeros(2, 2)), aspect_labels=torch.ones(2, 1))
    with pytest.raises(ValidationError, match=r"^second"):
        AspectPairBatch(torch.zeros(2, 3), torch.zeros(2, 2))
    with pytest.raises(ValidationError, match=r"^first"):
        AspectPairBatch(torch.zeros(0, 3), torch.zeros(0, 3))
    with pytest.raises(ValidationError, match=r"^first"):
        AspectPairBatch(torch.tensor([[float("nan")]]), torch.zeros(1, 1))
    batch = AspectPairBatch(torch.zeros(2, 2), torch.zeros(2, 2))
    with pytest.raises(ValidationError, match=r"^aspect_labels"):
        preference_loss("aspect_bradley_terry", batch)
    with pytest.raises(ValidationError, match=r"^aspect_labels"):
        preference_loss("aspect_bradley_terry", batch, aspect_labels=torch.full((2, 2), 0.3))
    with pytest.raises(ValidationError, match=r"^aspect_mask"):
        preference_loss("aspect_bradley_terry", batch, aspect_labels=torch.ones(2, 2),
                        aspect_mask=torch.tensor([[True, False], [False, False]]))
    with pytest.raises(ValidationError, match=r"^aspect_weights"):
        preference_loss("aspect_bradley_terry", batch, aspect_labels=torch.ones(2, 2),
                        aspect_weights=torch.tensor([1.0, -1.0]))


# ------------------------------------------------------------------------------------------ ensembles
def test_reward_ensemble_mean_std_and_disagreement():
    torch.manual_seed(0)
    members = [LinearReward(3, bias=True) for _ in range(3)]
    for i, member in enumerate(members):
        with torch.no_grad():
            member.linear.weight.fill_(float(i))
            member.linear.bias.fill_(0.0)
    ensemble = RewardEnsemble(members)
    states = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    mean, std = ensemble.mean_and_std(Transitions(states))
    totals = np.array([[0.0, 0.0], [1.0, 3.0], [2.0, 6.0]])
    np.testing.assert_allclose(mean.detach().numpy(), totals.mean(0), rtol=1e-6)
    np.testing.assert_allclose(std.detach().numpy(), totals.std(0), rtol=1e-6)
    torch.testing.assert_close(ensemble(Transitions(states)).total, mean)
    returns = ensemble.segment_returns(Transitions(states), torch.tensor([[True, True]]))
    np.testing.assert_allclose(returns.detach().numpy()[:, 0], totals.sum(1), rtol=1e-6)
    first, second = torch.tensor([[1.0], [2.0]]), torch.tensor([[0.0], [0.0]])
    expected = np.std([sig(1.0), sig(2.0)])
    np.testing.assert_allclose(RewardEnsemble.disagreement(first, second).numpy(), [expected], rtol=1e-6)


def test_reward_ensemble_bad_inputs():
    with pytest.raises(ValidationError, match=r"^members"):
        RewardEnsemble([])
    with pytest.raises(ValidationError, match=r"^members"):
        RewardEnsemble([LinearReward(2), LinearReward(2, aspect_names=("a", "b"))])
    with pytest.raises(ValidationError, match=r"^steps"):
        RewardEnsemble([LinearReward(2)]).segment_returns(Transitions(torch.zeros(3, 2)), torch.ones(2, 2))
