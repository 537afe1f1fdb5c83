"""Non-Gaussian priors by Monte Carlo (memlens.prior.montecarlo), Tweedie's formula and
Theorem 2 of Cheng & Barber (COLT 2026, arXiv:2602.09405).

Known answers: one-dimensional quadrature for the two-point prior (Bayes fit a*tanh(a y/s^2))
and for the Fisher information of a two-component Gaussian mixture; exact Gaussian-prior
formulas. Monte Carlo tolerances are 4 standard errors (fixed seeds).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats
from threadpoolctl import threadpool_limits

from memlens.errors import UserError
from memlens.prior import linear as L
from memlens.prior import montecarlo as M


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    with threadpool_limits(1):
        yield


def _design(seed=0, n=6, d=12):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d))


def _two_point_train_1d(a: float, s2: float) -> float:
    """E (y - a tanh(a y / s2))^2 with y ~ N(a, s2) (by symmetry = the mixture average)."""
    s = math.sqrt(s2)
    f = lambda y: (y - a * math.tanh(a * y / s2)) ** 2 * stats.norm.pdf(y, a, s)  # noqa: E731
    return integrate.quad(f, a - 12 * s, a + 12 * s, limit=200)[0]


def test_tweedie_equals_posterior_mean_fit():
    X = _design()
    rng = np.random.default_rng(1)
    for prior in (
        M.two_point_prior(rng.standard_normal(12) * 0.3, blur=0.01),
        M.sparse_prior(12, 2, 1.0, floor=0.01),
        M.gaussian_prior(rng.uniform(0.05, 0.2, 12)),
    ):
        y = prior.sample(7, rng) @ X.T + 0.5 * rng.standard_normal((7, 6))
        tw = M.tweedie_fit(prior, X, y, 0.25)
        pm = M.posterior_mean(prior, X, y, 0.25) @ X.T
        assert np.allclose(tw, pm, atol=1e-10)


def test_gaussian_posterior_mean_is_bayes_matrix():
    X = _design(seed=2)
    sw = np.full(12, 0.1)
    y = np.random.default_rng(3).standard_normal((4, 6))
    assert np.allclose(
        M.posterior_mean(M.gaussian_prior(sw), X, y, 0.3), y @ L.bayes_matrix(X, sw, 0.3).T
    )


def test_two_point_bayes_train_error_matches_quadrature():
    X = _design(seed=4)
    n = X.shape[0]
    mean = np.random.default_rng(5).standard_normal(12) * 0.25
    s2 = 0.3
    prior = M.two_point_prior(mean)
    res = M.simulate(prior, X, s2, n_samples=20000, seed=6)
    a = float(np.linalg.norm(X @ mean))
    exact = ((n - 1) * s2 + _two_point_train_1d(a, s2)) / n  # along X mean, plus pure noise
    assert abs(res.train_bayes.mean - exact) < 4 * res.train_bayes.se
    assert res.J.mean == math.inf  # point masses: the push-forward has no density
    lo, hi = res.train_bounds
    assert hi == pytest.approx(s2)  # sigma^4 / (1/J + sigma^2) with J = inf
    assert lo < res.train_bayes.mean < hi


def test_fisher_information_of_1d_mixture_matches_quadrature():
    X = np.array([[1.0]])
    prior = M.two_point_prior(np.array([0.8]), blur=0.09)
    res = M.simulate(prior, X, 0.2, n_samples=40000, seed=7)
    p = lambda u: 0.5 * (stats.norm.pdf(u, 0.8, 0.3) + stats.norm.pdf(u, -0.8, 0.3))  # noqa: E731

    def integrand(u):
        dp = 0.5 * (
            -(u - 0.8) / 0.09 * stats.norm.pdf(u, 0.8, 0.3)
            - (u + 0.8) / 0.09 * stats.norm.pdf(u, -0.8, 0.3)
        )
        return dp * dp / p(u)

    J = integrate.quad(integrand, -5, 5, limit=200)[0]
    assert abs(res.J.mean - J) < 4 * res.J.se
    assert res.V == pytest.approx(0.8**2 + 0.09)


def test_gaussian_prior_monte_carlo_confirms_exact_formulas():
    X = _design(seed=8)
    rng = np.random.default_rng(9)
    sw, sx, s2 = rng.uniform(0.03, 0.2, 12), rng.uniform(0.5, 2, 12), 0.3
    Ls = {"ridge": L.ridge_matrix(X, 0.3), "minnorm": L.minnorm_matrix(X)}
    res = M.simulate(M.gaussian_prior(sw), X, s2, sx, n_samples=20000, seed=10, estimators=Ls)
    b = L.bayes_risk(X, sw, sx, s2)
    assert abs(res.J.mean - L.fisher_information(X, sw)) < 4 * res.J.se
    assert res.V == pytest.approx(L.prior_variance(X, sw))
    assert abs(res.train_bayes.mean - b.train) < 4 * res.train_bayes.se
    assert abs(res.pred_bayes.mean - b.pred) < 4 * res.pred_bayes.se
    for name, Lm in Ls.items():
        r = L.linear_risk(Lm, X, sw, sx, s2)
        assert abs(res.linear[name]["pred"].mean - r.pred) < 4 * res.linear[name]["pred"].se
        ex = L.excess_risk(Lm, X, sw, sx, s2)
        assert abs(res.linear[name]["excess"].mean - ex) < 4 * res.linear[name]["excess"].se


def _upper_se(J, seJ, s2):
    # delta method for sigma^4 / (1/J + sigma^2) in J
    return s2**2 / (1 / J + s2) ** 2 / J**2 * seJ


@pytest.mark.parametrize(
    "make",
    [
        lambda rng: M.two_point_prior(rng.standard_normal(10) * 0.3, blur=0.02),
        lambda rng: M.sparse_prior(10, 2, 0.5, floor=0.005),
    ],
    ids=["two-point", "sparse"],
)
def test_theorem2_bounds_hold_for_non_gaussian_priors(make):
    rng = np.random.default_rng(11)
    X = rng.standard_normal((5, 10))
    prior = make(rng)
    for s2 in (0.02, 0.3, 3.0):
        res = M.simulate(prior, X, s2, n_samples=4000, seed=12)
        J, V, tb = res.J, res.V, res.train_bayes
        assert V >= 1 / J.mean
        lo = s2**2 / (V + s2)
        hi = s2**2 / (1 / J.mean + s2)
        tol_hi = 4 * math.hypot(tb.se, _upper_se(J.mean, J.se, s2))
        assert tb.mean >= lo - 4 * tb.se
        assert tb.mean <= hi + tol_hi


def test_sparse_prior_bayes_beats_ridge_and_corollary_bound_holds():
    rng = np.random.default_rng(13)
    X = rng.standard_normal((5, 10))
    prior = M.sparse_prior(10, 1, 2.0, floor=0.001)
    s2 = 4.0  # overfitting-harmful side: sigma^2 >= V
    Ls = {"minnorm": L.minnorm_matrix(X)}
    res = M.simulate(prior, X, s2, n_samples=4000, seed=14, estimators=Ls)
    assert s2 >= res.V
    tr = res.linear["minnorm"]["train"].mean
    ex = res.linear["minnorm"]["excess"]
    bound = L.overfitting_excess_bound(tr, res.V, res.lambda_sigma, s2)
    assert bound > 0
    assert ex.mean + 4 * ex.se >= bound


def test_sparse_prior_enumerates_supports():
    p = M.sparse_prior(6, 2, 1.0)
    assert p.weights.size == 15
    assert np.allclose(p.second_moment(), np.eye(6) * 2 / 6)
    with pytest.raises(UserError):
        M.sparse_prior(60, 5, 1.0)  # 5.4 million supports


def test_bad_inputs():
    X = _design()
    with pytest.raises(UserError):
        M.simulate(M.gaussian_prior(np.ones(5)), X, 0.1)  # wrong dimension
    with pytest.raises(UserError):
        M.simulate(M.gaussian_prior(np.ones(12)), X, 0.0)
    with pytest.raises(UserError):
        M.two_point_prior(np.zeros(3))
    with pytest.raises(UserError):
        M.score(M.sparse_prior(12, 1, 1.0), X, np.zeros((1, 6)))  # singular push-forward
