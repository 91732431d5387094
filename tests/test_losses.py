"""Preference losses (irl_bilevel.losses): values against independent numpy evaluations of the published
formulas (including log-ratios of ±1e4), gradcheck, hypothesis properties, metrics and input validation."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from irl_bilevel.losses import (
    PREFERENCE_LOSSES,
    PreferenceBatch,
    RankingBatch,
    UnpairedBatch,
    aspect_dissent_rate,
    loss_metrics,
    preference_loss,
)
from irl_bilevel.validation import ValidationError

TRL_NAMES = ["sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
             "aot_unpaired", "apo_zero", "apo_down", "discopop", "sigmoid_norm"]
REFERENCE_FREE = ["simpo", "cpo", "orpo", "slic"]
STRUCTURED = ["modpo", "aspect_dpo", "lexicographic_dpo"]
PAIRED = TRL_NAMES + REFERENCE_FREE + STRUCTURED
PREFERENCE_MODELS = ["rao_kupper", "davidson", "robust_bradley_terry", "smoothed_bradley_terry",
                     "aspect_bradley_terry"]
ALL_NAMES = [*PAIRED, "kto", "bradley_terry", "plackett_luce", *PREFERENCE_MODELS]
EXTREME = 1e4
FAST = settings(max_examples=15, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


# ------------------------------------------------------------------------------------------ numpy reference
def logsig(z):
    """log σ(z), stable for any finite z."""
    return -np.logaddexp(0.0, -z)


def sig(z):
    return np.exp(logsig(z))


def np_log1mexp(x):
    return np.where(x > -math.log(2), np.log(-np.expm1(np.minimum(x, -1e-300))), np.log1p(-np.exp(x)))


def smoothed(z, eps):
    return -(1 - eps) * logsig(z) - eps * logsig(-z)


def formula(name, data, beta, params):
    """The published per-pair loss, written out in numpy from docs/losses.md (never calls the package)."""
    pw, pl = data["pw"], data["pl"]
    sw, sl = pw - data.get("rw", 0.0), pl - data.get("rl", 0.0)
    d = sw - sl
    z = None if beta is None else beta * d
    lw, ll = data.get("lw"), data.get("ll")
    if name == "sigmoid":
        return smoothed(z, params.get("label_smoothing", 0.0))
    if name == "hinge":
        return np.maximum(0.0, 1 - z)
    if name == "ipo":
        return (sw / lw - sl / ll - 1 / (2 * beta)) ** 2
    if name == "exo_pair":
        eps = params["label_smoothing"]
        qw, ql = sig(z), sig(-z)
        return qw * (logsig(z) - np.log(1 - eps)) + ql * (logsig(-z) - np.log(eps))
    if name == "nca_pair":
        return -logsig(beta * sw) - 0.5 * logsig(-beta * sw) - 0.5 * logsig(-beta * sl)
    if name == "robust":
        eps = params["label_smoothing"]
        return (-(1 - eps) * logsig(z) + eps * logsig(-z)) / (1 - 2 * eps)
    if name == "bco_pair":
        shift = params["reward_shift"]
        return -logsig(beta * sw - shift) - logsig(-(beta * sl - shift))
    if name == "sppo_hard":
        return (sw - 1 / (2 * beta)) ** 2 + (sl + 1 / (2 * beta)) ** 2
    if name == "aot":
        delta = np.sort(pw - pl) - np.sort(data["rw"] - data["rl"])
        return smoothed(beta * delta, params["label_smoothing"])
    if name == "aot_unpaired":
        return smoothed(beta * (np.sort(sw) - np.sort(sl)), params["label_smoothing"])
    if name == "apo_zero":
        return (1 - sig(beta * sw)) + sig(beta * sl)
    if name == "apo_down":
        return sig(beta * sw) + (1 - sig(z))
    if name == "discopop":
        tau = params["tau"]
        m = sig(z / tau)
        # m·e^{−z} written as exp(log m − z): the product itself overflows to 0·inf beyond |z| ≈ 700.
        return (1 - m) * (-logsig(z)) + np.exp(logsig(z / tau) - z)
    if name == "sigmoid_norm":
        return -logsig(beta * (sw / lw - sl / ll))
    if name == "simpo":
        return -logsig(beta * (pw / lw - pl / ll) - params["gamma"])
    if name == "cpo":
        return -logsig(beta * (pw - pl)) + params["nll_weight"] * (-pw / lw)
    if name == "orpo":
        mw, ml = pw / lw, pl / ll
        log_odds_w, log_odds_l = mw - np_log1mexp(mw), ml - np_log1mexp(ml)
        return -mw - params["odds_ratio_weight"] * logsig(log_odds_w - log_odds_l)
    if name == "slic":
        return np.maximum(0.0, params["calibration_margin"] - beta * (pw - pl)) + params["regularization"] * (-pw / lw)
    if name == "modpo":
        w = params["weights"]
        hat_w = (beta * sw - params["other_chosen_rewards"] @ w[1:]) / w[0]
        hat_l = (beta * sl - params["other_rejected_rewards"] @ w[1:]) / w[0]
        return -logsig(hat_w - hat_l)
    if name == "aspect_dpo":
        # The definition (a weighted sum of per-aspect soft-label losses), not the reduced form.
        labels, weights, mask = params["aspect_labels"], params["aspect_weights"], params["aspect_mask"]
        total = np.zeros_like(z)
        for i in range(len(z)):
            w = weights * mask[i]
            w = w / w.sum()
            for k, y in enumerate(labels[i]):
                total[i] += w[k] * (-y * logsig(z[i]) - (1 - y) * logsig(-z[i]))
        return total
    if name == "lexicographic_dpo":
        labels, step = params["aspect_labels"], params["margin_step"]
        out = np.zeros_like(z)
        for i in range(len(z)):
            decided = [k for k, y in enumerate(labels[i]) if y != 0.5]
            if not decided:
                out[i] = -0.5 * logsig(z[i]) - 0.5 * logsig(-z[i])
                continue
            k = decided[0]
            sign = 1.0 if labels[i][k] == 1 else -1.0
            out[i] = -logsig(sign * z[i] - step * (labels.shape[1] - 1 - k))
        return out
    raise KeyError(name)


def kto_formula(data, beta, params):
    s = data["p"] - data["r"]
    z0 = max(0.0, float(np.mean(data["kl_p"] - data["kl_r"])))
    return np.where(data["desirable"], params["desirable_weight"] * (1 - sig(beta * (s - z0))),
                    params["undesirable_weight"] * (1 - sig(beta * (z0 - s))))


def bradley_terry_formula(scores, beta, margin):
    return -logsig(beta * (scores[:, 0] - scores[:, 1]) - margin)


def plackett_luce_formula(scores, beta):
    out = np.zeros(scores.shape[0])
    for i, row in enumerate(beta * scores):
        for k in range(len(row)):
            out[i] -= row[k] - np.logaddexp.reduce(row[k:])
    return out


# ------------------------------------------------------------------------------------------ batches
def pair_data(seed, size=16, extreme=True, negative=False):
    """Random pairs; the first six carry log-ratios of ±1e4 (or log-probs down to −1e4 when ``negative``)."""
    rng = np.random.default_rng(seed)
    data = {"lw": rng.integers(1, 200, size).astype(float), "ll": rng.integers(1, 200, size).astype(float)}
    if negative:  # policy log-probs < 0 (reference-free losses; ORPO needs probabilities < 1)
        data["pw"] = -np.exp(rng.uniform(-3, 6, size))
        data["pl"] = -np.exp(rng.uniform(-3, 6, size))
        if extreme:
            data["pw"][:4] = [-EXTREME, -1e-6, -EXTREME, -1e-3]
            data["pl"][:4] = [-1e-6, -EXTREME, -EXTREME, -1e-3]
        return data
    data["rw"], data["rl"] = rng.normal(-60, 20, size), rng.normal(-60, 20, size)
    sw, sl = rng.normal(0, 8, size), rng.normal(0, 8, size)
    if extreme:
        sw[:6] = [EXTREME, -EXTREME, EXTREME, -EXTREME, EXTREME, 0.0]
        sl[:6] = [-EXTREME, EXTREME, EXTREME, -EXTREME, 0.0, -EXTREME]
    data["pw"], data["pl"] = data["rw"] + sw, data["rl"] + sl
    return data


def to_batch(data):
    t = {k: torch.as_tensor(v) for k, v in data.items()}
    return PreferenceBatch(t["pw"], t["pl"], t.get("rw"), t.get("rl"), t["lw"], t["ll"])


def example_params(name, size, seed=0):
    """(beta, params) used for ``name``; tensor parameters drawn for ``size`` pairs."""
    rng = np.random.default_rng(seed + 1)
    fixed = {
        "sigmoid": (0.1, {"label_smoothing": 0.1}),
        "exo_pair": (0.1, {"label_smoothing": 0.01}),
        "robust": (0.1, {"label_smoothing": 0.2}),
        "bco_pair": (0.1, {"reward_shift": 0.25}),
        "aot": (0.1, {"label_smoothing": 0.1}),
        "aot_unpaired": (0.1, {"label_smoothing": 0.1}),
        "discopop": (0.1, {"tau": 0.05}),
        "simpo": (2.0, {"gamma": 0.7}),
        "cpo": (0.1, {"nll_weight": 0.8}),
        "orpo": (None, {"odds_ratio_weight": 0.3}),
        "slic": (1.0, {"calibration_margin": 1.5, "regularization": 0.2}),
        "lexicographic_dpo": (0.1, {"margin_step": 0.7}),
    }
    beta, params = fixed.get(name, (0.1, {}))  # any other loss: β = 0.1 and its default parameters
    params = dict(params)
    if name == "modpo":
        params = {"other_chosen_rewards": rng.normal(size=(size, 2)),
                  "other_rejected_rewards": rng.normal(size=(size, 2)), "weights": np.array([0.6, 0.3, 0.1])}
    if name == "aspect_dpo":
        mask = rng.random((size, 3)) < 0.8
        mask[:, 0] = True
        params = {"aspect_labels": rng.choice([0.0, 0.5, 1.0], size=(size, 3)),
                  "aspect_weights": np.array([0.5, 0.3, 0.2]), "aspect_mask": mask}
    if name == "lexicographic_dpo":
        labels = rng.choice([0.0, 0.5, 1.0], size=(size, 3), p=[0.3, 0.4, 0.3])
        labels[0] = 0.5  # a pair tied on every aspect
        params["aspect_labels"] = labels
    return beta, params


def torch_params(params):
    return {k: torch.as_tensor(v) if isinstance(v, np.ndarray) else v for k, v in params.items()}


def unpaired_data(seed, size=16, extreme=True):
    rng = np.random.default_rng(seed)
    data = {"r": rng.normal(-60, 20, size), "desirable": rng.random(size) < 0.5,
            "kl_p": rng.normal(-50, 5, 8), "kl_r": rng.normal(-51, 5, 8)}
    s = rng.normal(0, 8, size)
    if extreme:
        s[:4] = [EXTREME, -EXTREME, EXTREME, -EXTREME]
        data["desirable"][:4] = [True, True, False, False]
    data["p"] = data["r"] + s
    return data


def to_unpaired(data):
    t = {k: torch.as_tensor(v) for k, v in data.items()}
    return UnpairedBatch(t["p"], t["r"], t["desirable"], kl_policy_logps=t["kl_p"], kl_reference_logps=t["kl_r"])


def score_data(seed, size=16, candidates=2, extreme=True):
    rng = np.random.default_rng(seed)
    scores = rng.normal(0, 3, (size, candidates))
    if extreme:
        scores[0, :2] = [EXTREME, -EXTREME]
        scores[1, :2] = [-EXTREME, EXTREME]
        scores[2, :] = EXTREME
    return scores


# ------------------------------------------------------------------------------------------ the registry
def test_registry_holds_every_loss_with_trl_names():
    assert sorted(PREFERENCE_LOSSES) == sorted(ALL_NAMES)
    for name in TRL_NAMES:
        assert PREFERENCE_LOSSES[name].trl_name == name
        assert PREFERENCE_LOSSES[name].needs_reference
    for name in REFERENCE_FREE:
        assert not PREFERENCE_LOSSES[name].needs_reference and PREFERENCE_LOSSES[name].needs_lengths
    assert {n for n, loss in PREFERENCE_LOSSES.items() if not loss.per_pair} == {"aot", "aot_unpaired"}
    assert PREFERENCE_LOSSES["sigmoid"].defaults == {"label_smoothing": 0.0}
    assert PREFERENCE_LOSSES["exo_pair"].defaults == {"label_smoothing": 1e-3}
    assert PREFERENCE_LOSSES["bco_pair"].defaults == {"reward_shift": 0.0}


def test_docs_table_lists_every_loss():
    text = (Path(__file__).resolve().parents[1] / "docs" / "losses.md").read_text()
    table_names = set(re.findall(r"^\| `([a-z_]+)` \|", text, flags=re.MULTILINE))
    assert table_names == set(PREFERENCE_LOSSES)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_docstring_states_formula_and_source(name):
    loss = PREFERENCE_LOSSES[name]
    doc = loss.function.__doc__ or ""
    assert "Source" in doc and ("σ" in doc or "log" in doc or "²" in doc), name
    assert loss.source


# ------------------------------------------------------------------------------------------ values
@pytest.mark.parametrize("name", PAIRED)
def test_paired_values_match_published_formula(name):
    data = pair_data(seed=3, negative=name in REFERENCE_FREE)
    beta, params = example_params(name, len(data["pw"]))
    output = preference_loss(name, to_batch(data), beta, **torch_params(params))
    expected = formula(name, data, beta, params)
    assert np.all(np.isfinite(expected))
    np.testing.assert_allclose(output.losses.numpy(), expected, rtol=1e-12, atol=1e-12)


def test_kto_values_match_published_formula():
    data = unpaired_data(seed=5)
    params = {"desirable_weight": 1.2, "undesirable_weight": 0.8}
    output = preference_loss("kto", to_unpaired(data), 0.1, **params)
    np.testing.assert_allclose(output.losses.numpy(), kto_formula(data, 0.1, params), rtol=1e-12, atol=1e-14)
    rewards = 0.1 * (data["p"] - data["r"])
    np.testing.assert_allclose(output.chosen_rewards.numpy(), rewards[data["desirable"]])
    np.testing.assert_allclose(output.rejected_rewards.numpy(), rewards[~data["desirable"]])


def test_kto_clamps_a_negative_kl_estimate_to_zero():
    data = unpaired_data(seed=6, extreme=False)
    data["kl_r"] = data["kl_p"] + 3.0  # mean log-ratio −3: z0 = 0
    batch = to_unpaired(data)
    assert float(batch.kl_baseline) == 0.0
    explicit = UnpairedBatch(batch.policy_logps, batch.reference_logps, batch.desirable, kl_estimate=0.0)
    torch.testing.assert_close(preference_loss("kto", batch).losses, preference_loss("kto", explicit).losses)


@pytest.mark.parametrize("beta, margin", [(1.0, 0.0), (0.5, 0.3), (1.0, "per-pair")])
def test_bradley_terry_values(beta, margin):
    scores = score_data(seed=7)
    if margin == "per-pair":
        margin = np.random.default_rng(0).uniform(0, 2, len(scores))
    m = torch.as_tensor(margin) if isinstance(margin, np.ndarray) else margin
    output = preference_loss("bradley_terry", RankingBatch(torch.as_tensor(scores)), beta, margin=m)
    np.testing.assert_allclose(output.losses.numpy(), bradley_terry_formula(scores, beta, margin), rtol=1e-12)


@pytest.mark.parametrize("candidates", [2, 3, 5])
def test_plackett_luce_values(candidates):
    scores = score_data(seed=8, candidates=candidates)
    output = preference_loss("plackett_luce", RankingBatch(torch.as_tensor(scores)), 0.7)
    np.testing.assert_allclose(output.losses.numpy(), plackett_luce_formula(scores, 0.7), rtol=1e-12, atol=1e-12)


def test_plackett_luce_with_two_candidates_is_bradley_terry():
    batch = RankingBatch(torch.as_tensor(score_data(seed=9)))
    torch.testing.assert_close(preference_loss("plackett_luce", batch, 0.5).losses,
                               preference_loss("bradley_terry", batch, 0.5).losses)


def _single_pair(sw, sl, length=1.0):
    t = torch.tensor
    return PreferenceBatch(t([sw]), t([sl]), t([0.0]), t([0.0]), t([length]), t([length]))


@pytest.mark.parametrize("name, d, limit", [
    ("sigmoid", -EXTREME, 0.1 * EXTREME), ("sigmoid", EXTREME, 0.0),
    ("discopop", -EXTREME, 0.1 * EXTREME),  # TRL: 0·inf = nan here
    ("discopop", EXTREME, 0.0),
    ("exo_pair", EXTREME, -math.log1p(-1e-3)), ("exo_pair", -EXTREME, -math.log(1e-3)),
    ("hinge", EXTREME, 0.0), ("apo_down", EXTREME, 1.0), ("apo_zero", EXTREME, 0.0), ("robust", EXTREME, 0.0),
])
def test_limits_at_extreme_margins(name, d, limit):
    loss = float(preference_loss(name, _single_pair(d / 2, -d / 2)).losses)
    assert math.isfinite(loss)
    assert loss == pytest.approx(limit, rel=1e-9, abs=1e-12)


def test_orpo_limits_as_probabilities_approach_one_and_zero():
    t = torch.tensor
    near_one = PreferenceBatch(t([-1e-9]), t([-EXTREME]), chosen_lengths=t([1.0]), rejected_lengths=t([1.0]))
    output = preference_loss("orpo", near_one)
    assert float(output.losses) == pytest.approx(1e-9, abs=1e-12)  # NLL ≈ 0, log σ(huge odds ratio) ≈ 0
    assert float(output.chosen_rewards) == pytest.approx(-math.log(1e-9), rel=1e-6)  # odds ≈ 1/(−ℓ̄)


def test_ipo_with_unit_lengths_is_the_paper_form():
    data = pair_data(seed=10, extreme=False)
    data["lw"][:] = 1.0
    data["ll"][:] = 1.0
    d = (data["pw"] - data["rw"]) - (data["pl"] - data["rl"])
    np.testing.assert_allclose(preference_loss("ipo", to_batch(data), 0.2).losses.numpy(), (d - 2.5) ** 2)


def test_aspect_dpo_is_conservative_dpo_with_the_dissent_rate():
    data = pair_data(seed=11)
    batch = to_batch(data)
    size = batch.batch_size
    labels = torch.tensor([[1.0, 1.0, 0.0, 0.5]] * size)  # weights below give ε = 0.2 + 0.1·½ = 0.25
    weights = torch.tensor([0.4, 0.3, 0.2, 0.1])
    rate = aspect_dissent_rate(labels, weights)
    torch.testing.assert_close(rate, torch.full((size,), 0.25))
    torch.testing.assert_close(
        preference_loss("aspect_dpo", batch, aspect_labels=labels, aspect_weights=weights).losses,
        preference_loss("sigmoid", batch, label_smoothing=0.25).losses)
    unanimous = preference_loss("aspect_dpo", batch, aspect_labels=torch.ones(size, 2)).losses
    torch.testing.assert_close(unanimous, preference_loss("sigmoid", batch).losses)


def test_aspect_dpo_minimizer_is_the_calibrated_margin():
    epsilon = 0.2
    optimum = math.log((1 - epsilon) / epsilon) / 0.1  # β d* = logit(1 − ε)
    labels = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0]])
    weights = preference_loss("aspect_dpo", _single_pair(optimum / 2, -optimum / 2), 0.1, aspect_labels=labels,
                              gradient_weights=True).gradient_weights
    assert weights is not None and abs(float(weights.margin)) < 1e-12


def test_lexicographic_single_aspect_is_dpo():
    batch = to_batch(pair_data(seed=12))
    ones = torch.ones(batch.batch_size, 1)
    torch.testing.assert_close(preference_loss("lexicographic_dpo", batch, aspect_labels=ones).losses,
                               preference_loss("sigmoid", batch).losses)


# ------------------------------------------------------------------------------------------ gradients
def _gradcheck_inputs(name, seed=20, size=4):
    data = pair_data(seed, size=size, extreme=False, negative=name in REFERENCE_FREE)
    beta, params = example_params(name, size, seed)
    return to_batch(data), beta, torch_params(params)


@pytest.mark.parametrize("name", PAIRED)
def test_gradcheck_paired(name):
    batch, beta, params = _gradcheck_inputs(name)

    def losses(chosen, rejected):
        return preference_loss(name, batch.with_policy(chosen, rejected), beta, **params).losses

    inputs = (batch.policy_chosen_logps.clone().requires_grad_(True),
              batch.policy_rejected_logps.clone().requires_grad_(True))
    assert torch.autograd.gradcheck(losses, inputs)


def test_gradcheck_kto():
    batch = to_unpaired(unpaired_data(seed=21, size=6, extreme=False))
    policy = batch.policy_logps.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: preference_loss("kto", batch.with_policy(p), 0.3).losses, (policy,))


@pytest.mark.parametrize("name, candidates", [("bradley_terry", 2), ("plackett_luce", 4)])
def test_gradcheck_scores(name, candidates):
    scores = torch.as_tensor(score_data(seed=22, size=4, candidates=candidates, extreme=False)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda s: preference_loss(name, RankingBatch(s)).losses, (scores,))


def test_gradient_weights_of_dpo_and_hinge_are_the_textbook_ones():
    batch = to_batch(pair_data(seed=23))
    d = batch.chosen_logratios - batch.rejected_logratios
    sigmoid = preference_loss("sigmoid", batch, 0.1, gradient_weights=True).gradient_weights
    assert sigmoid is not None
    torch.testing.assert_close(sigmoid.margin, 0.1 * torch.sigmoid(-0.1 * d))  # Rafailov et al. 2023, Eq. 7
    torch.testing.assert_close(sigmoid.chosen, -sigmoid.rejected)
    hinge = preference_loss("hinge", batch, 0.1, gradient_weights=True).gradient_weights
    assert hinge is not None
    torch.testing.assert_close(hinge.margin, 0.1 * (0.1 * d < 1).double())


@pytest.mark.parametrize("name", ["nca_pair", "apo_zero", "sppo_hard", "simpo"])
def test_gradient_weight_is_the_directional_derivative_along_the_margin(name):
    """For losses not of d alone: −½(∂ℓ/∂s_w − ∂ℓ/∂s_l), checked by central differences of the numpy formula."""
    data = pair_data(seed=24, size=5, extreme=False, negative=name in REFERENCE_FREE)
    beta, params = example_params(name, 5)
    weights = preference_loss(name, to_batch(data), beta, gradient_weights=True, **params).gradient_weights
    assert weights is not None
    h = 1e-5
    up, down = dict(data), dict(data)
    up["pw"], up["pl"] = data["pw"] + h / 2, data["pl"] - h / 2
    down["pw"], down["pl"] = data["pw"] - h / 2, data["pl"] + h / 2
    numeric = -(formula(name, up, beta, params) - formula(name, down, beta, params)) / (2 * h)
    np.testing.assert_allclose(weights.margin.numpy(), numeric, rtol=1e-6, atol=1e-9)


def test_gradient_weights_leave_the_callers_graph_alone():
    data = pair_data(seed=25, extreme=False)
    chosen = torch.as_tensor(data["pw"]).requires_grad_(True)
    batch = to_batch(data).with_policy(chosen, torch.as_tensor(data["pl"]))
    output = preference_loss("sigmoid", batch, gradient_weights=True)
    output.loss.backward()
    assert output.gradient_weights is not None and chosen.grad is not None
    torch.testing.assert_close(chosen.grad, output.gradient_weights.chosen / batch.batch_size)


# ------------------------------------------------------------------------------------------ metrics
def test_metrics_report_accuracy_margin_and_weights():
    t = torch.tensor
    batch = PreferenceBatch(t([1.0, 0.0, 2.0, -1.0]), t([0.0, 1.0, 0.0, 0.0]), t([0.0] * 4), t([0.0] * 4))
    output = preference_loss("sigmoid", batch, 1.0, gradient_weights=True)
    metrics = loss_metrics(output)
    assert metrics["reward_accuracy"] == 0.5
    assert metrics["mean_margin"] == pytest.approx((1 - 1 + 2 - 1) / 4)
    assert metrics["loss"] == pytest.approx(float(output.losses.mean()))
    assert metrics["mean_gradient_weight"] == pytest.approx(float(torch.sigmoid(-t([1.0, -1.0, 2.0, -1.0])).mean()))


def test_unpaired_metrics_use_all_cross_pairs():
    t = torch.tensor
    batch = UnpairedBatch(t([3.0, 1.0, 2.0, 0.0]), t([0.0] * 4), t([True, True, False, False]), kl_estimate=0.0)
    output = preference_loss("kto", batch, 1.0, gradient_weights=True)
    assert output.reward_accuracy == 0.75  # 3>2, 3>0, 1>0, not 1>2
    assert output.mean_margin == pytest.approx(1.0)
    assert output.gradient_weights is not None and bool((output.gradient_weights.margin > 0).all())
    with pytest.raises(ValidationError, match="margins"):
        _ = output.margins


# ------------------------------------------------------------------------------------------ properties
finite = st.floats(-EXTREME, EXTREME, allow_nan=False, allow_infinity=False)


@st.composite
def pairs(draw, size_max=4):
    n = draw(st.integers(1, size_max))
    vectors = [draw(st.lists(finite, min_size=n, max_size=n)) for _ in range(4)]
    lengths = [draw(st.lists(st.integers(1, 1000), min_size=n, max_size=n)) for _ in range(2)]
    return {"pw": np.array(vectors[0]), "pl": np.array(vectors[1]), "rw": np.array(vectors[2]),
            "rl": np.array(vectors[3]), "lw": np.array(lengths[0], float), "ll": np.array(lengths[1], float)}


def each_paired_loss_on_drawn_pairs(test):
    """``test(name, data)`` for every paired loss ``name`` on hypothesis-drawn pairs ``data`` (FAST settings)."""
    return pytest.mark.parametrize("name", PAIRED)(FAST(given(data=pairs())(test)))


def _for(name, data):
    if name in REFERENCE_FREE:  # log-probs < 0 (ORPO needs probabilities < 1)
        data = {**data, "pw": -np.abs(data["pw"]) - 1e-6, "pl": -np.abs(data["pl"]) - 1e-6}
    return data


@each_paired_loss_on_drawn_pairs
def test_property_finite_loss_and_gradients(name, data):
    data = _for(name, data)
    beta, params = example_params(name, len(data["pw"]))
    output = preference_loss(name, to_batch(data), beta, gradient_weights=True, **torch_params(params))
    assert output.gradient_weights is not None
    for tensor in (output.losses, output.chosen_rewards, output.gradient_weights.chosen,
                   output.gradient_weights.rejected, output.gradient_weights.margin):
        assert bool(torch.isfinite(tensor).all()), (name, tensor)


def _swapped_params(name, params):
    params = dict(params)
    if name == "modpo":
        params["other_chosen_rewards"], params["other_rejected_rewards"] = (params["other_rejected_rewards"],
                                                                            params["other_chosen_rewards"])
    if "aspect_labels" in params:
        params["aspect_labels"] = 1 - params["aspect_labels"]
    return params


@each_paired_loss_on_drawn_pairs
def test_property_swapping_chosen_and_rejected_negates_the_margin(name, data):
    data = _for(name, data)
    beta, params = example_params(name, len(data["pw"]))
    batch = to_batch(data)
    forward = preference_loss(name, batch, beta, **torch_params(params))
    backward = preference_loss(name, batch.swapped(), beta, **torch_params(_swapped_params(name, params)))
    torch.testing.assert_close(backward.margins, -forward.margins, rtol=1e-12, atol=0)


@FAST
@given(data=pairs(), epsilon=st.floats(0.0, 0.49))
def test_property_symmetric_logistic_losses(data, epsilon):
    """DPO and Bradley-Terry assign the two orders probabilities summing to one; conservative DPO is the ε-mixture
    of both orders; robust DPO is unbiased under flips at rate ε; aspect and lexicographic DPO are invariant under
    swapping the pair together with every label. (β d within ±200: probabilities not all rounded to 0 or 1.)"""
    data = {key: value / 200 if key in ("pw", "pl", "rw", "rl") else value for key, value in data.items()}
    batch, swapped = to_batch(data), to_batch(data).swapped()
    forward, backward = preference_loss("sigmoid", batch).losses, preference_loss("sigmoid", swapped).losses
    torch.testing.assert_close(torch.exp(-forward) + torch.exp(-backward), torch.ones_like(forward))
    scores = RankingBatch.from_pairs(batch.chosen_logratios, batch.rejected_logratios)
    bt, bt_swapped = (preference_loss("bradley_terry", b, 0.1).losses for b in (scores, scores.swapped()))
    torch.testing.assert_close(torch.exp(-bt) + torch.exp(-bt_swapped), torch.ones_like(bt))
    conservative = preference_loss("sigmoid", batch, label_smoothing=epsilon).losses
    torch.testing.assert_close(conservative, (1 - epsilon) * forward + epsilon * backward)
    robust = [preference_loss("robust", b, label_smoothing=epsilon).losses for b in (batch, swapped)]
    torch.testing.assert_close((1 - epsilon) * robust[0] + epsilon * robust[1], forward)
    for name in ("aspect_dpo", "lexicographic_dpo"):
        _, params = example_params(name, batch.batch_size)
        params = torch_params(params)
        torch.testing.assert_close(preference_loss(name, batch, **params).losses,
                                   preference_loss(name, swapped, **torch_params(_swapped_params(name, params))).losses)
    ties = torch.full((batch.batch_size, 2), 0.5)
    torch.testing.assert_close(preference_loss("aspect_dpo", batch, aspect_labels=ties).losses,
                               preference_loss("aspect_dpo", swapped, aspect_labels=ties).losses)


@FAST
@given(data=pairs(size_max=6), seed=st.integers(0, 1000))
def test_property_pair_order(data, seed):
    """Per-pair losses permute with the pairs; AOT's batch mean is invariant under any permutation."""
    permutation = torch.as_tensor(np.random.default_rng(seed).permutation(len(data["pw"])))
    batch = to_batch(data)
    permuted = to_batch({k: v[permutation.numpy()] for k, v in data.items()})
    for name in ("sigmoid", "ipo", "nca_pair", "apo_down"):
        torch.testing.assert_close(preference_loss(name, permuted).losses,
                                   preference_loss(name, batch).losses[permutation])
    for name in ("aot", "aot_unpaired"):
        torch.testing.assert_close(preference_loss(name, permuted).loss, preference_loss(name, batch).loss)


@FAST
@given(scores=st.lists(st.lists(finite, min_size=3, max_size=3), min_size=1, max_size=4), shift=finite)
def test_property_plackett_luce_shift_invariant_and_finite(scores, shift):
    batch = RankingBatch(torch.tensor(scores) / 10)
    shifted = RankingBatch(batch.scores + shift / 10)
    output = preference_loss("plackett_luce", batch, gradient_weights=True)
    assert bool(torch.isfinite(output.losses).all())
    assert output.gradient_weights is not None and bool(torch.isfinite(output.gradient_weights.margin).all())
    torch.testing.assert_close(preference_loss("plackett_luce", shifted).losses, output.losses, rtol=1e-9,
                               atol=1e-9)


@FAST
@given(logratios=st.lists(finite, min_size=1, max_size=5), z0=st.floats(0, 100), beta=st.floats(0.01, 2.0))
def test_property_kto_reflection_and_finite(logratios, z0, beta):
    """KTO is symmetric around z0: a desirable example at s loses what an undesirable one at 2 z0 − s loses."""
    s = torch.tensor(logratios)
    zeros = torch.zeros_like(s)
    desirable = preference_loss("kto", UnpairedBatch(s, zeros, torch.ones_like(s, dtype=torch.bool), z0), beta,
                                gradient_weights=True)
    undesirable = preference_loss("kto", UnpairedBatch(2 * z0 - s, zeros, torch.zeros_like(s, dtype=torch.bool), z0),
                                  beta)
    torch.testing.assert_close(desirable.losses, undesirable.losses, rtol=1e-9, atol=1e-12)
    assert desirable.gradient_weights is not None and bool(torch.isfinite(desirable.gradient_weights.margin).all())


# ------------------------------------------------------------------------------------------ bad inputs
def _batch(**overrides):
    t = torch.tensor
    fields = {"policy_chosen_logps": t([-1.0, -2.0]), "policy_rejected_logps": t([-2.0, -3.0]),
              "reference_chosen_logps": t([-1.5, -2.0]), "reference_rejected_logps": t([-1.5, -2.5]),
              "chosen_lengths": t([3.0, 4.0]), "rejected_lengths": t([2.0, 5.0])}
    fields.update(overrides)
    return PreferenceBatch(**fields)


@pytest.mark.parametrize("overrides, field", [
    ({"policy_rejected_logps": torch.tensor([-1.0, -2.0, -3.0])}, "policy_rejected_logps"),
    ({"reference_chosen_logps": torch.tensor([[-1.0, -2.0]])}, "reference_chosen_logps"),
    ({"reference_rejected_logps": None}, "reference_rejected_logps"),
    ({"chosen_lengths": torch.tensor([0.0, 3.0])}, "chosen_lengths"),
    ({"rejected_lengths": None}, "rejected_lengths"),
    ({"policy_chosen_logps": torch.tensor([float("nan"), -1.0])}, "policy_chosen_logps"),
    ({"policy_chosen_logps": torch.tensor([])}, "policy_chosen_logps"),
])
def test_bad_batches_name_the_field(overrides, field):
    with pytest.raises(ValidationError, match=rf"^{field}"):
        _batch(**overrides)


@pytest.mark.parametrize("name, batch_overrides, call, field", [
    ("sigmoid", {"reference_chosen_logps": None, "reference_rejected_logps": None}, {}, "reference_chosen_logps"),
    ("ipo", {"chosen_lengths": None, "rejected_lengths": None}, {}, "chosen_lengths"),
    ("simpo", {"chosen_lengths": None, "rejected_lengths": None}, {}, "chosen_lengths"),
    ("sigmoid", {}, {"beta": 0.0}, "beta"),
    ("hinge", {}, {"beta": -1.0}, "beta"),
    ("sigmoid", {}, {"beta": float("nan")}, "beta"),
    ("sigmoid", {}, {"label_smoothing": 0.5}, "label_smoothing"),
    ("robust", {}, {"label_smoothing": -0.1}, "label_smoothing"),
    ("aot", {}, {"label_smoothing": 0.7}, "label_smoothing"),
    ("exo_pair", {}, {"label_smoothing": 0.0}, "label_smoothing"),
    ("sigmoid", {}, {"label_smooting": 0.1}, "label_smooting"),
    ("hinge", {}, {"label_smoothing": 0.1}, "label_smoothing"),
    ("discopop", {}, {"tau": 2.0}, "tau"),
    ("orpo", {}, {"beta": 0.1}, "beta"),
    ("orpo", {"policy_chosen_logps": torch.tensor([0.5, -1.0])}, {}, "policy_chosen_logps"),
    ("simpo", {}, {"gamma": -1.0}, "gamma"),
    ("bco_pair", {}, {"reward_shift": True}, "reward_shift"),
    ("modpo", {}, {}, "other_chosen_rewards"),
    ("modpo", {}, {"other_chosen_rewards": torch.zeros(2, 1), "other_rejected_rewards": torch.zeros(2, 1),
                   "weights": torch.tensor([0.0, 1.0])}, "weights"),
    ("modpo", {}, {"other_chosen_rewards": torch.zeros(2, 1), "other_rejected_rewards": torch.zeros(2, 2),
                   "weights": torch.tensor([0.5, 0.5])}, "other_rejected_rewards"),
    ("aspect_dpo", {}, {"aspect_labels": torch.tensor([[1.0, 0.3], [1.0, 1.0]])}, "aspect_labels"),
    ("aspect_dpo", {}, {"aspect_labels": torch.ones(3, 2)}, "aspect_labels"),
    ("aspect_dpo", {}, {"aspect_labels": torch.ones(2, 2), "aspect_weights": torch.tensor([-1.0, 2.0])},
     "aspect_weights"),
    ("aspect_dpo", {}, {"aspect_labels": torch.ones(2, 2), "aspect_mask": torch.tensor([[True, True], [False, False]])},
     "aspect_mask"),
    ("lexicographic_dpo", {}, {"aspect_labels": torch.ones(2, 2), "margin_step": -1.0}, "margin_step"),
])
def test_bad_loss_arguments_name_the_field(name, batch_overrides, call, field):
    call = dict(call)
    beta = call.pop("beta", None)
    with pytest.raises(ValidationError, match=rf"^{field}"):
        preference_loss(name, _batch(**batch_overrides), beta, **call)


def test_unknown_names_and_wrong_batch_types_are_refused():
    with pytest.raises(ValidationError, match=r"^name: unknown preference loss 'dpo'"):
        preference_loss("dpo", _batch())
    with pytest.raises(ValidationError, match=r"^batch: kto takes a UnpairedBatch"):
        preference_loss("kto", _batch())
    with pytest.raises(ValidationError, match=r"^scores: bradley_terry takes pairs"):
        preference_loss("bradley_terry", RankingBatch(torch.zeros(2, 3)))


@pytest.mark.parametrize("kwargs, field", [
    ({"kl_estimate": -0.1}, "kl_estimate"),
    ({}, "kl_estimate"),
    ({"kl_estimate": 0.1, "kl_policy_logps": torch.zeros(2), "kl_reference_logps": torch.zeros(2)}, "kl_estimate"),
    ({"kl_policy_logps": torch.zeros(2)}, "kl_reference_logps"),
    ({"kl_estimate": 0.0, "desirable": torch.tensor([0.5, 1.0])}, "desirable"),
    ({"kl_estimate": 0.0, "reference_logps": torch.zeros(3)}, "reference_logps"),
])
def test_bad_unpaired_batches_name_the_field(kwargs, field):
    fields = {"policy_logps": torch.zeros(2), "reference_logps": torch.zeros(2),
              "desirable": torch.tensor([True, False])}
    fields.update(kwargs)
    with pytest.raises(ValidationError, match=rf"^{field}"):
        UnpairedBatch(**fields)


def test_bad_rankings_name_the_field():
    with pytest.raises(ValidationError, match=r"^scores"):
        RankingBatch(torch.zeros(3))
    with pytest.raises(ValidationError, match=r"^scores"):
        RankingBatch(torch.tensor([[0.0, float("inf")]]))
    with pytest.raises(ValidationError, match=r"^rejected_scores"):
        RankingBatch.from_pairs(torch.zeros(2), torch.zeros(3))
    with pytest.raises(ValidationError, match=r"^margin"):
        preference_loss("bradley_terry", RankingBatch(torch.zeros(2, 2)), margin=torch.zeros(3))


# ------------------------------------------------------------------------------------------ the figure's data
def test_loss_gradient_weights_experiment_and_figure(tmp_path):
    import json

    from figures import loss_gradient_weights as figure
    from irlb.experiments import loss_gradient_weights as experiment

    with pytest.raises(ValidationError, match=r"^scale"):
        experiment.run("huge", tmp_path, progress=False)
    path = experiment.run("tiny", tmp_path, seed=0, progress=False)
    results = json.loads(path.read_text())
    z = np.asarray(results["scaled_margins"])
    curves = {c["label"]: c for c in results["curves"]}
    drawn = {c["loss_name"] for c in results["curves"]}
    assert drawn == set(PREFERENCE_LOSSES) - {"plackett_luce", "aspect_bradley_terry"}
    dpo = curves["sigmoid (DPO)"]
    np.testing.assert_allclose(dpo["loss"], -logsig(z), rtol=1e-12)
    np.testing.assert_allclose(dpo["gradient_weight_per_scaled_margin"], sig(-z), rtol=1e-12)
    for curve in results["curves"]:
        assert np.all(np.isfinite(curve["loss"])) and np.all(np.isfinite(curve["gradient_weight"])), curve["label"]
    files = figure.plot(tmp_path, tmp_path / "figures")
    assert [f.name for f in files] == ["loss_gradient_weights.png", "loss_gradient_weights.pdf"]
    assert all(f.stat().st_size > 10_000 for f in files)
