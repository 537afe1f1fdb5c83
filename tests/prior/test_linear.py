"""Exact finite-sample formulas of memlens.prior.linear (Cheng & Barber, COLT 2026).

Known answers: Monte Carlo over (theta, tau) for a fixed design with fixed seeds (tolerance
4 Monte Carlo standard errors: a two-sided normal tail of 6e-5 per check), closed forms on
designs where A = X Sigma_w X^T is a multiple of I (Theorem 2's bounds are then equalities),
Pythagoras for the Bayes estimator, and brute-force matrices for the one-SVD ridge path.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from memlens.errors import UserError
from memlens.prior import asymptotic as asy
from memlens.prior import linear as L


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    with threadpool_limits(1):
        yield


def _problem(seed=0, n=8, d=20):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) * rng.uniform(0.5, 1.5, d)
    sw = rng.uniform(0.02, 0.15, d)
    sx = rng.uniform(0.5, 2.0, d)
    return X, sw, sx


def _mc_linear(X, sw, sx, sigma2, Ls, S, seed):
    """Monte Carlo over theta ~ N(0, diag(sw)), tau ~ N(0, I) of ||Ly-theta||^2_Sx and train."""
    rng = np.random.default_rng(seed)
    n, d = X.shape
    theta = rng.standard_normal((S, d)) * np.sqrt(sw)
    y = theta @ X.T + math.sqrt(sigma2) * rng.standard_normal((S, n))
    out = {}
    for name, M in Ls.items():
        th = y @ M.T
        pred = np.sum((th - theta) ** 2 * sx, axis=1)
        train = np.sum((th @ X.T - y) ** 2, axis=1) / n
        out[name] = [(a.mean(), a.std(ddof=1) / math.sqrt(S)) for a in (pred, train)]
    return out


def test_exact_risks_match_monte_carlo():
    X, sw, sx = _problem()
    s2 = 0.3
    lmin = L.admissible_lambda_min(X)
    Ls = {
        "minnorm": L.minnorm_matrix(X),
        "ridge": L.ridge_matrix(X, 0.2),
        "negative_ridge": L.ridge_matrix(X, 0.5 * lmin),
        "generalized": L.generalized_ridge_matrix(X, 0.1, 1 / sx),
        "bayes": L.bayes_matrix(X, sw, s2),
    }
    mc = _mc_linear(X, sw, sx, s2, Ls, S=20000, seed=1)
    for name, M in Ls.items():
        r = L.linear_risk(M, X, sw, sx, s2)
        (pm, pse), (tm, tse) = mc[name]
        assert abs(pm - r.pred) < 4 * pse, name
        assert abs(tm - r.train) < 4 * tse + 1e-12, name
    b = L.bayes_risk(X, sw, sx, s2)
    (pm, pse), (tm, tse) = mc["bayes"]
    assert abs(pm - b.pred) < 4 * pse
    assert abs(tm - b.train) < 4 * tse


def test_bayes_formulas_agree_and_pythagoras():
    X, sw, sx = _problem(seed=2)
    for s2 in (0.05, 0.5):
        b = L.bayes_risk(X, sw, sx, s2)
        r = L.linear_risk(L.bayes_matrix(X, sw, s2), X, sw, sx, s2)
        assert r.pred == pytest.approx(b.pred, rel=1e-10)
        assert r.train == pytest.approx(b.train, rel=1e-10)
        for lam in (0.0, 0.1, 2.0):
            M = L.ridge_matrix(X, lam)
            ex = L.excess_risk(M, X, sw, sx, s2)
            assert ex >= 0
            assert L.linear_risk(M, X, sw, sx, s2).pred - b.pred == pytest.approx(ex, rel=1e-9)


def test_bayes_is_generalized_ridge_with_prior_precision():
    X, sw, sx = _problem(seed=4)
    n = X.shape[0]
    s2 = 0.2
    G = L.generalized_ridge_matrix(X, s2 / n, 1 / sw)  # n * lam = sigma^2, P = Sigma_w^-1
    assert np.allclose(G, L.bayes_matrix(X, sw, s2), atol=1e-10)


def test_min_norm_is_pseudo_inverse_and_interpolates():
    X, sw, sx = _problem(seed=5)
    assert np.allclose(L.minnorm_matrix(X), np.linalg.pinv(X), atol=1e-10)
    assert L.linear_risk(L.minnorm_matrix(X), X, sw, sx, 0.4).train == pytest.approx(0, abs=1e-20)
    # Least squares when d < n: train error = sigma^2 (n - d) / n exactly.
    Xt = X[:, :5]
    r = L.linear_risk(L.minnorm_matrix(Xt), Xt, sw[:5], sx[:5], 0.4)
    assert r.train == pytest.approx(0.4 * (8 - 5) / 8, rel=1e-10)


def test_ridge_path_matches_matrices_including_negative_penalties():
    for n, d in ((8, 20), (20, 8)):
        X, sw, sx = _problem(seed=6, n=n, d=d)
        path = L.RidgePath(X, np.diag(sw), sx)
        lams = np.array([0.9 * path.lambda_min, 0.3 * path.lambda_min, 0.0, 0.05, 1.0, 30.0])
        for s2 in (0.0, 0.7):
            pred, train = path.pred(lams, s2), path.train(lams, s2)
            for k, lam in enumerate(lams):
                r = L.linear_risk(L.ridge_matrix(X, lam), X, sw, sx, s2)
                assert pred[k] == pytest.approx(r.pred, rel=1e-9)
                assert train[k] == pytest.approx(r.train, rel=1e-9, abs=1e-14)


def test_isotropic_optimal_ridge_is_bayes_exactly_at_finite_n():
    rng = np.random.default_rng(7)
    n, d, r2, s2 = 30, 60, 1.0, 0.25
    X = rng.standard_normal((n, d))
    path = L.RidgePath(X, np.full(d, r2 / d), np.ones(d))
    lam, pred = path.optimal(s2)
    assert lam == pytest.approx(s2 * d / (n * r2), rel=1e-6)  # sigma^2 gamma / r^2
    assert pred == pytest.approx(L.bayes_risk(X, np.full(d, r2 / d), np.ones(d), s2).pred, rel=1e-9)


def test_theorem2_bounds_are_equalities_when_A_is_scalar():
    # Orthogonal rows scaled so that X Sigma_w X^T = a I: V = 1/J = a, Train_B = sigma^4/(a+s2).
    rng = np.random.default_rng(8)
    n, d, a, s2 = 5, 12, 0.7, 0.3
    Q, _ = np.linalg.qr(rng.standard_normal((d, n)))
    X = math.sqrt(a * d) * Q.T  # Sigma_w = I / d
    sw = np.full(d, 1 / d)
    J, V = L.fisher_information(X, sw), L.prior_variance(X, sw)
    assert J == pytest.approx(1 / a) and V == pytest.approx(a)
    lo, hi = L.train_bounds(J, V, s2)
    tb = L.bayes_risk(X, sw, np.ones(d), s2).train
    assert lo == pytest.approx(s2**2 / (a + s2)) and hi == pytest.approx(lo)
    assert tb == pytest.approx(lo, rel=1e-12)


def test_theorem2_band_and_thresholds_on_random_designs():
    for seed in range(5):
        X, sw, sx = _problem(seed=seed)
        J, V = L.fisher_information(X, sw), L.prior_variance(X, sw)
        assert V >= 1 / J
        for s2 in (0.001, 0.1, 1.0, 10.0):
            lo, hi = L.train_bounds(J, V, s2)
            tb = L.bayes_risk(X, sw, sx, s2).train
            assert lo <= tb * (1 + 1e-12) and tb <= hi * (1 + 1e-12)


def test_corollary_lower_bounds_hold_and_bind_for_ridge():
    """Exact excess risk of every ridge penalty >= the corollaries' bounds; bounds not vacuous."""
    X, sw, sx = _problem(seed=9)
    J, V = L.fisher_information(X, sw), L.prior_variance(X, sw)
    ls = L.lambda_sigma(X, sx)
    path = L.RidgePath(X, sw, sx)
    lams = np.concatenate([path.lambda_min * np.array([0.9, 0.5]), [0.0], np.logspace(-3, 3, 40)])
    positive = {"mem": 0, "over": 0}
    for s2 in (0.2 / J, 0.5 / J, 2 * V, 6 * V):
        bayes = L.bayes_risk(X, sw, sx, s2).pred
        for lam in lams:
            excess = float(path.pred([lam], s2)[0]) - bayes
            train = float(path.train([lam], s2)[0])
            b1 = L.memorization_excess_bound(train, J, ls, s2)
            b2 = L.overfitting_excess_bound(train, V, ls, s2)
            assert excess >= b1 - 1e-12 and excess >= b2 - 1e-12
            positive["mem"] += b1 > 0
            positive["over"] += b2 > 0
    assert positive["mem"] > 5 and positive["over"] > 5


def test_lambda_sigma_by_hand():
    X = np.array([[3.0, 0.0], [0.0, 1.0]])
    assert L.lambda_sigma(X, np.array([1.0, 1.0])) == pytest.approx(9 / 2)
    assert L.lambda_sigma(X, np.array([9.0, 1.0])) == pytest.approx(1 / 2)


def test_fisher_information_infinite_when_A_singular():
    X, sw, _ = _problem(seed=10)
    sw[:15] = 0  # only 5 < n = 8 directions carry prior mass
    assert L.fisher_information(X, sw) == math.inf
    # 1/J = 0: memorization is never forced by Corollary 1 once there is any noise.
    assert L.regime(0.01, math.inf, 1.0) == "between thresholds"
    assert L.memorization_excess_bound(0.5, math.inf, 1.0, 0.01) == 0.0


def test_finite_sample_sign_change_matches_numerical_optimum():
    pop = asy.make_population("aligned", 1.0)
    sx, sw = pop.finite(400)
    X = L.sample_design(sx, 200, seed=0)
    path = L.RidgePath(X, sw, sx)
    s0 = path.sign_change_noise()
    assert s0 > 0
    assert path.optimal(0.9 * s0)[0] < 0 < path.optimal(1.1 * s0)[0]
    # Converges to the proportional limit (0.0267 for these defaults).
    assert s0 == pytest.approx(asy.sign_change_noise(pop, 2.0), rel=0.05)


def test_finite_sample_check_values_approach_the_limits():
    pop = asy.make_population("isotropic", 1.0)
    sx, sw = pop.finite(600)
    t = L.finite_sample_theory(sx, sw, 0.25, 300, seed=0)
    assert t["minnorm_risk"] == pytest.approx(0.75, abs=0.02)
    assert t["bayes_risk"] == pytest.approx(0.6404, abs=0.01)
    assert t["train_bayes"] == pytest.approx(0.0702, abs=0.003)
    assert t["lambda_opt"] == pytest.approx(0.5, rel=1e-6)  # exact at every n (isotropic prior)
    assert t["J"] == pytest.approx(2.0, abs=0.05)
    assert t["train_bayes_lower"] <= t["train_bayes"] <= t["train_bayes_upper"]


def test_inadmissible_penalty_and_bad_shapes():
    X, sw, sx = _problem()
    lmin = L.admissible_lambda_min(X)
    with pytest.raises(UserError, match="not admissible"):
        L.ridge_matrix(X, 1.01 * lmin)
    with pytest.raises(UserError):
        L.RidgePath(X, sw, sx).pred([lmin], 0.1)
    with pytest.raises(UserError):
        L.linear_risk(np.zeros((3, 3)), X, sw, sx, 0.1)
    with pytest.raises(UserError):
        L.bayes_risk(X, sw[:-1], sx, 0.1)
    with pytest.raises(UserError):
        L.bayes_risk(X, sw, sx, -1.0)
    with pytest.raises(UserError):
        L.fisher_information(np.array([1.0, np.nan]), sw)


def test_corollary_bounds_by_hand():
    # Cor. 1: Train = 0.9, J = 1, sigma^2 = 0.5 -> C = 0.9 / 0.25 = 3.6.
    expected = (1 - 3.6**-0.5) ** 2 * 0.9 / 2.0
    assert L.memorization_excess_bound(0.9, 1.0, 2.0, 0.5) == pytest.approx(expected)
    assert L.memorization_excess_bound(0.2, 1.0, 2.0, 0.5) == 0.0  # C = 0.8 <= 1: no claim
    # Cor. 2: Train = 1, V = 0.5, sigma^2 = 3 -> C = (3 - 1) / 0.5 = 4.
    expected = (1 - 1 / 4) ** 2 * (3 - 1) ** 2 / (4 * 2.0 * 3)
    assert L.overfitting_excess_bound(1.0, 0.5, 2.0, 3.0) == pytest.approx(expected)
    assert L.overfitting_excess_bound(2.8, 0.5, 2.0, 3.0) == 0.0  # C = 0.4
    assert L.train_bounds(2.0, 1.0, 0.25) == pytest.approx((0.05, 0.0625 / 0.75))
