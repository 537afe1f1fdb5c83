"""memlens.prior.diagnose: exact leave-one-out, empirical Bayes and the verdict.

Known answers: brute-force leave-one-out refits (n separate fits per penalty, intercept
re-estimated on n-1 points, negative penalties included), the explicit hat-matrix GCV, and
simulated data whose truth is known (noise level, alignment of the signal with the spectrum).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.optimize  # noqa: F401  (load scipy's BLAS before limiting threads)
import scipy.stats  # noqa: F401
from threadpoolctl import threadpool_limits

from memlens.errors import UserError
from memlens.prior import diagnosis as dg
from memlens.prior.empirical_bayes import fit_prior
from memlens.prior.files import load_xy
from memlens.prior.loo import LooPath


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    with threadpool_limits(1):
        yield


def _brute_loo(X, y, lam, center):
    n = len(y)
    out = np.empty(n)
    for i in range(n):
        keep = np.arange(n) != i
        Xi, yi = X[keep], y[keep]
        mx, my = (Xi.mean(0), yi.mean()) if center else (0.0, 0.0)
        Xc, yc = Xi - mx, yi - my
        if Xc.shape[1] >= Xc.shape[0]:  # kernel form: row-space solution
            K = Xc @ Xc.T + n * lam * np.eye(n - 1)
            theta = Xc.T @ (np.linalg.pinv(K) @ yc)
        else:
            theta = np.linalg.solve(Xc.T @ Xc + n * lam * np.eye(X.shape[1]), Xc.T @ yc)
        out[i] = y[i] - (my + (X[i] - mx) @ theta)
    return out


@pytest.mark.parametrize("n,d", [(14, 40), (30, 8)])
@pytest.mark.parametrize("center", [True, False])
def test_exact_loo_equals_brute_force_refits(n, d, center):
    rng = np.random.default_rng(n * d)
    X = rng.standard_normal((n, d)) * rng.uniform(0.5, 2, d)
    y = X @ rng.standard_normal(d) / np.sqrt(d) + 0.5 * rng.standard_normal(n) + 2.0
    path = LooPath(X, y, center=center)
    lams = [0.6 * path.lambda_min, 0.2 * path.lambda_min, 0.0, 0.05, 3.0]
    for lam in lams:
        assert path.admissible([lam])[0]
        brute = _brute_loo(X, y, lam, center)
        assert np.allclose(path.loo_residuals(lam), brute, atol=1e-9)
        assert path.loo([lam])[0] == pytest.approx(np.mean(brute**2), rel=1e-9)


def test_gcv_and_train_match_explicit_hat_matrix():
    rng = np.random.default_rng(1)
    for n, d in ((12, 30), (25, 6)):
        X = rng.standard_normal((n, d))
        y = rng.standard_normal(n)
        path = LooPath(X, y, center=True)
        Xc = X - X.mean(0)
        for lam in (0.02, 0.7):
            H = np.ones((n, n)) / n + Xc @ np.linalg.solve(Xc.T @ Xc + n * lam * np.eye(d), Xc.T)
            r = y - H @ y
            assert path.gcv([lam])[0] == pytest.approx(np.mean(r**2) / (1 - np.trace(H) / n) ** 2)
            assert path.train([lam])[0] == pytest.approx(np.mean(r**2))
            assert np.allclose(Xc @ path.coef(lam), H @ y - y.mean())


def test_primal_negative_penalty_needs_leverage_below_one():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((15, 14))
    path = LooPath(X, rng.standard_normal(15), center=False)
    assert not path.kernel
    grid = np.linspace(0.99 * path.lambda_min, 0, 20)
    ok = path.admissible(grid)
    assert not ok.all()  # some negative penalties make a leave-one-out problem indefinite
    assert ok[-1]


def _aligned_low_noise(seed=0, n=100, d=1000, k=10):
    rng = np.random.default_rng(seed)
    s = np.ones(d)
    s[:k] = 10.0
    X = rng.standard_normal((n, d)) * np.sqrt(s)
    theta = np.zeros(d)
    theta[:k] = rng.standard_normal(k) / np.sqrt(10 * k)  # signal variance about 1
    return X, X @ theta + 0.1 * rng.standard_normal(n)


@pytest.mark.parametrize("seed", range(4))
def test_done_when_low_noise_signal_on_high_variance_features_gives_nonpositive_penalty(seed):
    X, y = _aligned_low_noise(seed)
    res = dg.diagnose(X, y)
    assert res.lambda_opt <= 0
    assert res.verdict == "memorize"
    assert res.loo_opt <= res.loo_interp
    assert res.loo_opt < 0.2 * res.loo_null
    assert res.alpha_hat > 0 and res.alpha_pvalue < 1e-3  # aligned prior detected
    assert res.lambda_opt > res.lambda_min  # admissible
    assert res.train_interp == pytest.approx(0, abs=1e-20)


@pytest.mark.parametrize("seed", range(4))
def test_done_when_noisy_isotropic_signal_gives_positive_penalty_and_regularize(seed):
    # gamma = 2, r^2 = 1, sigma^2 = 4 (>= V: overfitting harmful); Bayes penalty sigma^2 gamma/r^2 = 8.
    rng = np.random.default_rng(seed)
    n, d, sigma2 = 200, 400, 4.0
    X = rng.standard_normal((n, d))
    y = X @ (rng.standard_normal(d) / np.sqrt(d)) + np.sqrt(sigma2) * rng.standard_normal(n)
    res = dg.diagnose(X, y)
    assert res.lambda_opt > 1.0
    assert res.verdict == "regularize"
    assert "regularize" in res.summary
    assert res.loo_gain > 2 * res.loo_gain_se
    assert res.sigma2_interval[0] < sigma2 < res.sigma2_interval[1]


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_empirical_bayes_recovers_noise_and_alignment_when_well_specified(alpha):
    """Data drawn from the fitted model itself: theta ~ N(0, c Sigma_hat^alpha), noise 0.05."""
    rng = np.random.default_rng(3)
    n, d, sigma2 = 300, 600, 0.05
    s = np.exp(rng.uniform(np.log(0.1), np.log(10), d))
    X = rng.standard_normal((n, d)) * np.sqrt(s)
    Xc = X - X.mean(0)
    _, sv, Vt = np.linalg.svd(Xc, full_matrices=False)
    e = sv**2 / n
    coef = np.sqrt(e**alpha / np.sum(e ** (1 + alpha)))  # signal variance about 1 per sample
    theta = Vt.T @ (coef * rng.standard_normal(e.size))
    y = Xc @ theta + np.sqrt(sigma2) * rng.standard_normal(n)
    fit = fit_prior(LooPath(X, y))
    assert fit.alpha == pytest.approx(alpha, abs=0.35)
    if alpha > 0:
        assert fit.alpha_lr_pvalue < 1e-3
        assert fit.sigma2_interval[1] / fit.sigma2_interval[0] < 5  # informative interval
    else:
        assert fit.alpha_lr_pvalue > 0.05
    assert fit.sigma2_interval[0] < sigma2 < fit.sigma2_interval[1]
    assert fit.V >= 1 / fit.J


def test_underparameterized_data_cannot_interpolate():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((80, 5))
    y = X @ np.ones(5) + rng.standard_normal(80)
    res = dg.diagnose(X, y)
    assert not res.interpolates
    assert res.J_hat == np.inf and res.threshold_memorization == 0.0
    assert "least squares" in res.answers["overparameterization"]
    assert res.train_interp > 0.5


def test_load_formats(tmp_path):
    rng = np.random.default_rng(5)
    X = rng.standard_normal((6, 3))
    y = rng.standard_normal(6)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y[:, None])
    pd.DataFrame(X, columns=["a", "b", "c"]).to_csv(tmp_path / "Xh.csv", index=False)
    np.savetxt(tmp_path / "Xn.csv", X, delimiter=",")
    pd.DataFrame({"y": y}).to_parquet(tmp_path / "y.parquet")
    for xf in ("X.npy", "Xh.csv", "Xn.csv"):
        for yf in ("y.npy", "y.parquet"):
            Xl, yl = load_xy(tmp_path / xf, tmp_path / yf)
            assert np.allclose(Xl, X) and np.allclose(yl, y)


def test_csv_with_pandas_default_column_labels(tmp_path):
    # pd.DataFrame(array).to_csv writes the header 0,1,...,d-1; it was read as a sample (7 rows
    # from 6), and with y saved the same way the bogus row entered the fit without a word
    rng = np.random.default_rng(5)
    X = rng.standard_normal((6, 3))
    y = rng.standard_normal(6)
    pd.DataFrame(X).to_csv(tmp_path / "X.csv", index=False)
    assert (tmp_path / "X.csv").read_text().splitlines()[0] == "0,1,2"
    pd.DataFrame({"y": y}).to_csv(tmp_path / "y.csv", index=False)
    Xl, yl = load_xy(tmp_path / "X.csv", tmp_path / "y.csv")
    assert Xl.shape == (6, 3) and np.allclose(Xl, X) and np.allclose(yl, y)
    # a one-column y with the header "0" cannot be told from a value 0: the count mismatch says how
    pd.DataFrame(y).to_csv(tmp_path / "y0.csv", index=False)
    with pytest.raises(UserError, match="X has 6 rows but y has 7 values.*header"):
        load_xy(tmp_path / "X.csv", tmp_path / "y0.csv")


@pytest.mark.parametrize(
    "setup,match",
    [
        (lambda p: (p / "missing.npy", p / "y.npy"), "does not exist"),
        (lambda p: (p / "X.txt", p / "y.npy"), "unsupported"),
        (lambda p: (p / "X5.npy", p / "y.npy"), "rows"),
        (lambda p: (p / "Xnan.npy", p / "y.npy"), "NaN"),
        (lambda p: (p / "Xbad.csv", p / "y.npy"), "non-numeric"),
        (lambda p: (p / "X.npy", p / "y2.npy"), "single column"),
        (lambda p: (p / "Xobj.npy", p / "y.npy"), "cannot read|numeric"),
    ],
)
def test_bad_files_raise_one_sentence(tmp_path, setup, match):
    rng = np.random.default_rng(6)
    np.save(tmp_path / "X.npy", rng.standard_normal((6, 3)))
    np.save(tmp_path / "X5.npy", rng.standard_normal((5, 3)))
    Xn = rng.standard_normal((6, 3))
    Xn[2, 1] = np.nan
    np.save(tmp_path / "Xnan.npy", Xn)
    np.save(tmp_path / "y.npy", rng.standard_normal(6))
    np.save(tmp_path / "y2.npy", rng.standard_normal((6, 2)))
    np.save(tmp_path / "Xobj.npy", np.array([{"a": 1}] * 6, dtype=object), allow_pickle=True)
    (tmp_path / "X.txt").write_text("1 2 3\n")
    (tmp_path / "Xbad.csv").write_text("a,b\n1,2\n3,oops\n")
    x, y = setup(tmp_path)
    with pytest.raises(UserError, match=match) as err:
        load_xy(x, y)
    assert "\n" not in str(err.value)


def test_degenerate_data_raise_one_sentence():
    rng = np.random.default_rng(7)
    with pytest.raises(UserError, match="nothing to predict"):
        dg.diagnose(rng.standard_normal((20, 30)), np.full(20, 3.0))
    with pytest.raises(UserError, match="no variation"):
        dg.diagnose(np.ones((20, 5)), rng.standard_normal(20))
    with pytest.raises(UserError, match="at least 4"):
        dg.diagnose(rng.standard_normal((3, 5)), rng.standard_normal(3))


def test_flat_noise_likelihood_gives_unbounded_interval_not_overflow():
    """n = 30, d = 60, little noise: the likelihood is flat in sigma^2 (no residual degrees of
    freedom), its standard error on the log scale is huge, and the 95% interval is (0, inf]
    instead of an OverflowError from exp()."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 60))
    y = X @ (rng.standard_normal(60) / 8) + 0.1 * rng.standard_normal(30)
    fit = fit_prior(LooPath(X, y))
    lo, hi = fit.sigma2_interval
    assert lo <= fit.sigma2 <= hi
    assert hi == np.inf and lo == 0.0
    res = dg.diagnose(X, y)
    assert res.verdict == "memorize" and res.lambda_opt <= 0
