"""Proportional limits of memlens.prior.asymptotic against closed forms and Concepts §6 (docs/concepts.md).

Known answers: the isotropic check values of Cheng & Barber (COLT 2026, arXiv:2602.09405) as
listed in docs/concepts.md, the closed-form Marchenko-Pastur Stieltjes transform (Dobriban & Wager
2018), the min-norm risk of Hastie et al. (2022), the MP spectral edge, and exact
finite-sample traces on sampled designs (simulation) for the low-rank prior.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from memlens.errors import UserError
from memlens.prior import asymptotic as asy
from memlens.prior import isotropic, linear, table
from memlens.prior.recipe import TheoryConfig, theory_result


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    # Small LAPACK calls are ~50x slower with OpenBLAS threads on a contended machine.
    with threadpool_limits(1):
        yield


ISO = asy.make_population("isotropic", 1.0)


def test_check_values_from_science_md():
    t = table.theory(ISO, gamma=2.0, sigma2=0.25)
    assert t["minnorm_risk"] == pytest.approx(0.75, abs=1e-12)
    assert round(t["bayes_risk"], 4) == 0.6404
    assert round(t["train_bayes"], 4) == 0.0702
    assert t["train_bayes_lower"] == pytest.approx(0.05)
    assert t["train_bayes_upper"] == pytest.approx(0.0625 / 0.75)
    assert 0.05 < t["train_bayes"] < 0.0833
    assert t["lambda_opt"] == pytest.approx(0.5, abs=1e-12)
    assert t["ridge_opt_risk"] == pytest.approx(t["bayes_risk"], abs=1e-12)  # ridge is Bayes here
    assert t["J"] == pytest.approx(2.0, abs=1e-12)
    assert t["V"] == pytest.approx(1.0)
    assert t["threshold_memorization"] == pytest.approx(0.5)
    assert t["regime"] == "memorization necessary"
    assert t["lambda_sigma"] == pytest.approx((1 + math.sqrt(2)) ** 2)


@pytest.mark.parametrize("gamma", [0.3, 0.7, 1.5, 2.0, 5.0])
@pytest.mark.parametrize("r2,sigma2", [(1.0, 0.25), (2.0, 0.05), (0.5, 1.5)])
def test_fixed_point_matches_isotropic_closed_forms(gamma, r2, sigma2):
    pop = asy.make_population("isotropic", r2)
    assert asy.minnorm_limit(pop, gamma, sigma2).pred == pytest.approx(
        isotropic.isotropic_minnorm_risk(gamma, r2, sigma2), rel=1e-10
    )
    b = asy.bayes_limit(pop, gamma, sigma2)
    assert b.risk == pytest.approx(isotropic.isotropic_bayes_risk(gamma, r2, sigma2), rel=1e-10)
    assert b.train == pytest.approx(isotropic.isotropic_train_bayes(gamma, r2, sigma2), rel=1e-10)
    assert asy.fisher_information(pop, gamma) == pytest.approx(
        isotropic.isotropic_fisher_information(gamma, r2), rel=1e-10
    )
    opt = asy.optimal_ridge(pop, gamma, sigma2)
    assert opt.lam == pytest.approx(sigma2 * gamma / r2, rel=1e-9)
    assert opt.pred == pytest.approx(b.risk, rel=1e-10)
    # Lower edge of the limiting non-zero spectrum of X^T X / n.
    assert asy.lambda_min(pop, gamma) == pytest.approx(-((1 - math.sqrt(gamma)) ** 2), rel=1e-9)


def test_mp_stieltjes_against_eigenvalues_of_a_large_sample():
    rng = np.random.default_rng(3)
    n, d = 400, 800
    X = rng.standard_normal((n, d))
    ev = np.linalg.eigvalsh(X.T @ X / n)
    empirical = np.mean(1 / (ev + 0.5))
    assert isotropic.mp_stieltjes(-0.5, d / n) == pytest.approx(empirical, rel=0.01)


def test_ridge_train_error_limits():
    # Interpolation for gamma > 1; least squares (1 - gamma) sigma^2 for gamma < 1.
    assert asy.minnorm_limit(ISO, 2.0, 0.3).train == pytest.approx(0.0, abs=1e-14)
    assert asy.minnorm_limit(ISO, 0.5, 0.3).train == pytest.approx(0.3 * 0.5, rel=1e-9)


def test_bayes_train_inside_theorem2_band_for_every_prior_and_noise():
    for kind in asy.PRIOR_KINDS:
        pop = asy.make_population(kind, 1.3)
        J, V = asy.fisher_information(pop, 2.5), asy.prior_variance(pop)
        assert V >= 1 / J  # AM-HM
        for s2 in (0.001, 0.05, 0.3, 1.0, 5.0):
            tb = asy.bayes_limit(pop, 2.5, s2).train
            assert s2**2 / (V + s2) <= tb * (1 + 1e-12)
            assert tb <= s2**2 / (1 / J + s2) * (1 + 1e-12)


def test_min_norm_beats_no_estimator_and_bayes_is_optimal():
    for kind in asy.PRIOR_KINDS:
        pop = asy.make_population(kind)
        for s2 in (0.01, 0.25, 2.0):
            bayes = asy.bayes_limit(pop, 2.0, s2).risk
            for lam in (asy.lambda_min(pop, 2.0) / 2, 0.0, 0.3, 3.0):
                assert asy.ridge_limit(pop, 2.0, s2, lam).pred >= bayes - 1e-12


def test_bayes_noise_free_is_min_norm_in_prior_metric_and_isotropic_interpolation():
    # sigma^2 = 0: interpolation is Bayes-optimal; for the isotropic prior it is min-norm.
    assert asy.bayes_limit(ISO, 2.0, 0.0).risk == pytest.approx(asy.minnorm_limit(ISO, 2.0, 0).pred)
    assert asy.bayes_limit(ISO, 2.0, 0.0).train == 0.0


def test_optimal_penalty_changes_sign_at_predicted_noise_for_aligned_prior():
    pop = asy.make_population("aligned", 1.0, spread=10.0, alpha=1.0)
    s0 = asy.sign_change_noise(pop, 2.0)
    assert s0 > 0
    assert asy.optimal_ridge(pop, 2.0, 0.9 * s0).lam < 0
    assert asy.optimal_ridge(pop, 2.0, 1.1 * s0).lam > 0
    assert abs(asy.optimal_ridge(pop, 2.0, s0).lam) < 1e-9
    assert asy.optimal_ridge(pop, 2.0, 0.0).lam < 0  # low noise: negative ridge is optimal
    # Independent route: the root in sigma^2 of the numerically minimized lambda_opt.
    from scipy.optimize import brentq

    root = brentq(lambda s2: asy.optimal_ridge(pop, 2.0, s2).lam, 0.5 * s0, 2 * s0, xtol=1e-12)
    assert root == pytest.approx(s0, rel=1e-6)


def test_sign_criterion_isotropic_zero_misaligned_negative():
    assert asy.sign_change_noise(ISO, 2.0) == 0.0
    assert asy.sign_change_noise(asy.make_population("lowrank"), 2.0) == 0.0
    mis = asy.make_population("misaligned")
    assert asy.sign_change_noise(mis, 2.0) < 0
    for s2 in (0.0, 0.01, 1.0):
        assert asy.optimal_ridge(mis, 2.0, s2).lam > 0


def test_low_rank_fixed_point_matches_simulation():
    """The Prop. 8 limit (approximately low-rank prior) from the fixed point vs exact traces.

    Finite-size bias of tr(A^-1)/n is O(1/n); averaging 3 designs per n, the error must shrink
    with n and be within 2.5% at n = 300.
    """
    pop = asy.make_population("lowrank", 1.0, eta=0.1, eps=0.05)
    J_lim = asy.fisher_information(pop, 2.0)
    errs = []
    for n in (75, 300):
        sx, sw = pop.finite(2 * n)
        Js = [linear.fisher_information(linear.sample_design(sx, n, seed), sw) for seed in range(3)]
        errs.append(abs(np.mean(Js) / J_lim - 1))
    assert errs[1] < errs[0]
    assert errs[1] < 0.025
    assert asy.prior_variance(pop) == pytest.approx(1.0)


def test_exact_low_rank_prior_has_infinite_fisher_information():
    pop = asy.make_population("lowrank", 1.0, eta=0.2, eps=0.0)
    assert asy.fisher_information(pop, 2.0) == math.inf  # rank 0.2 d = 0.4 n < n
    assert table.theory(pop, 2.0, 0.1)["threshold_memorization"] == 0.0
    assert asy.make_population("lowrank", 1.0, eta=0.8, eps=0.0).name == "lowrank"
    assert math.isfinite(
        asy.fisher_information(asy.make_population("lowrank", 1.0, eta=0.8, eps=0.0), 2.0)
    )


def test_regimes():
    assert table.regime(0.1, 2.0, 1.0) == "memorization necessary"
    assert table.regime(0.7, 2.0, 1.0) == "between thresholds"
    assert table.regime(1.0, 2.0, 1.0) == "overfitting harmful"


def test_population_finite_instance_matches_moments():
    pop = asy.make_population("aligned", 2.0)
    sx, sw = pop.finite(1000)
    assert np.sum(sx * sw) == pytest.approx(2.0)
    assert np.mean(sx) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "call",
    [
        lambda: asy.make_population("gaussian"),
        lambda: asy.make_population("isotropic", -1.0),
        lambda: asy.make_population("lowrank", eta=1.5),
        lambda: asy.make_population("aligned", spread=0.5),
        lambda: table.theory(ISO, -2.0, 0.1),
        lambda: table.theory(ISO, 2.0, -0.1),
        lambda: asy.ridge_limit(ISO, 2.0, 0.1, -0.5),  # below lambda_min = -0.1716
    ],
)
def test_bad_input_raises_user_error(call):
    with pytest.raises(UserError):
        call()


@pytest.mark.parametrize(
    ("call", "match"),
    [
        # beyond these the fixed point overflowed (OverflowError, ZeroDivisionError), failed to
        # converge (RuntimeError) or drew a plot with infinite limits; and no numpy overflow warning
        (lambda: table.theory(ISO, 1e300, 0.1), "`gamma` must lie between 1e-12 and 1e"),
        (lambda: table.theory(ISO, 1e-300, 0.1), "`gamma` must lie between"),
        (lambda: asy.make_population("isotropic", 1e300), "`r2` must lie between 1e-08 and"),
        (lambda: asy.make_population("isotropic", 1e-30), "`r2` must lie between"),
        (lambda: asy.make_population("lowrank", eta=1e-300), "prior variances must lie between"),
        (lambda: asy.make_population("aligned", alpha=1e5), "prior variances must be"),
        (lambda: theory_result(TheoryConfig(sigma2=1e300)), "`sigma2` must be at most 1e"),
    ],
)
def test_values_beyond_double_precision_are_one_sentence(call, match):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserError, match=match):
            call()


@pytest.mark.parametrize("eta", [0.8, 0.3])
def test_exactly_low_rank_prior_limits_match_finite_sample(eta):
    """Directions without prior mass drop out of the Bayes problem (gamma' = eta * gamma)."""
    pop = asy.make_population("lowrank", 1.0, eta=eta, eps=0.0)
    n, s2 = 300, 0.2
    sx, sw = pop.finite(2 * n)
    X = linear.sample_design(sx, n, seed=1)
    b_lim = asy.bayes_limit(pop, 2.0, s2)
    b = linear.bayes_risk(X, sw, sx, s2)
    assert b.pred == pytest.approx(b_lim.risk, rel=0.03)
    assert b.train == pytest.approx(b_lim.train, rel=0.03)
    J_lim = asy.fisher_information(pop, 2.0)
    if eta * 2.0 > 1:
        assert linear.fisher_information(X, sw) == pytest.approx(J_lim, rel=0.03)
    else:
        assert J_lim == math.inf and linear.fisher_information(X, sw) == math.inf


def test_generalized_ridge_limit_with_prior_precision_is_bayes_and_matches_finite_sample():
    pop = asy.make_population("aligned", 1.0)
    s2 = 0.3
    g = asy.generalized_ridge_limit(pop, 2.0, s2, s2 * 2.0, 1 / pop.w)
    assert g.pred == pytest.approx(asy.bayes_limit(pop, 2.0, s2).risk, rel=1e-10)
    # Another penalty (P = 1/s): limit vs exact finite-sample generalized ridge at n = 300.
    sx, sw = pop.finite(600)
    X = linear.sample_design(sx, 300, seed=2)
    lim = asy.generalized_ridge_limit(pop, 2.0, s2, 0.2, 1 / pop.s)
    exact = linear.linear_risk(linear.generalized_ridge_matrix(X, 0.2, 1 / sx), X, sw, sx, s2)
    assert exact.pred == pytest.approx(lim.pred, rel=0.03)
    assert exact.train == pytest.approx(lim.train, rel=0.03)


@pytest.mark.parametrize("kind", ["isotropic", "aligned", "misaligned"])
def test_ridge_limit_including_negative_penalty_matches_exact_finite_sample(kind):
    """Deterministic equivalent vs exact conditional risks on two designs with n = 300, d = 600."""
    pop = asy.make_population(kind)
    sx, sw = pop.finite(600)
    for lam in (0.5 * asy.lambda_min(pop, 2.0), 0.3):
        lim = asy.ridge_limit(pop, 2.0, 0.1, lam)
        paths = [linear.RidgePath(linear.sample_design(sx, 300, seed), sw, sx) for seed in (0, 1)]
        pred = np.mean([p.pred([lam], 0.1)[0] for p in paths])
        train = np.mean([p.train([lam], 0.1)[0] for p in paths])
        assert pred == pytest.approx(lim.pred, rel=0.03)
        assert train == pytest.approx(lim.train, rel=0.08)
