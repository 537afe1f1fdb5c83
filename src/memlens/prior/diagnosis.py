"""Should this data be memorized? A diagnostic for a user's ``(X, y)``.

It answers the three questions of Cheng & Barber, "Is Memorization Helpful or Harmful? Prior
Information Sets the Threshold" (COLT 2026, arXiv:2602.09405), for linear regression on the
user's features:

1. **Signal to noise.** An empirical-Bayes fit of the Gaussian model
   ``y = X theta + sigma tau``, ``theta ~ N(0, c * Sigma_hat^alpha)`` (``Sigma_hat = X^T X / n`` on
   the row space of ``X``) by maximum likelihood gives ``sigma^2_hat``, the signal variance
   ``V_hat = tr(A) / n`` and the Fisher information ``J_hat = tr(A^-1) / n`` of the fitted prior
   (``A = X Sigma_w X^T``), hence the paper's two thresholds ``1/J`` and ``V``.
2. **Prior alignment with the feature spectrum.** ``alpha_hat > 0`` means the signal sits on the
   high-variance directions (an "aligned" prior), ``alpha = 0`` is isotropic, ``alpha < 0``
   misaligned; a likelihood-ratio test against ``alpha = 0`` says whether the data can tell.
   Aligned priors make the optimal ridge penalty zero or negative at low noise (Kobak, Lomond &
   Sanchez 2020, JMLR 21(169); Wu & Xu 2020, NeurIPS).
3. **Overparameterization** ``gamma = d / n``: only for ``d >= n`` can a linear model interpolate.

The decision itself is empirical: **exact leave-one-out** error of ridge regression over a grid
of penalties that includes every admissible negative value, from one SVD of ``X`` (Hastie,
Tibshirani & Friedman, ESL Sec. 7.10; for kernel form Cawley & Talbot 2003). Ridge is normalized,
``(X^T X / n + lam I)``, the intercept is fitted and not penalized (``center=True``), and each
leave-one-out fit keeps the full fit's absolute penalty ``n * lam`` (the convention of the
closed form). With ``X_c = U diag(s) V^T`` (rank ``r``) and ``z = U^T y``:

* ``d >= n`` (every sample direction is in the row space, "kernel regime")::

      y_i - yhat_{-i} = [sum_j U_ij z_j / (s_j^2 + n lam)] / [sum_j U_ij^2 / (s_j^2 + n lam)]

  which stays finite at ``lam = 0`` (the min-norm interpolator);
* ``d < n``: the usual ``(y_i - yhat_i) / (1 - H_ii)``.

Admissible penalties: ``lam > -s_min^2 / n`` (``X^T X / n + lam I`` positive definite on the row
space of ``X``), and when ``d < n`` also ``H_ii < 1`` for every ``i`` (each leave-one-out problem
stays positive definite).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from memlens.errors import UserError
from memlens.prior.files import check_xy

# -- exact leave-one-out over a penalty grid --------------------------------------------------


class LooPath:
    """Exact leave-one-out and GCV errors of ridge for any penalties, from one SVD.

    Parameters
    ----------
    X, y:
        Design (``n x d``) and response.
    center:
        Fit an unpenalized intercept (centering ``X`` and ``y``); the leave-one-out formulas
        account for it exactly.
    """

    def __init__(self, X: np.ndarray, y: np.ndarray, center: bool = True) -> None:
        X = np.asarray(X, dtype=float)
        y = np.asarray(y, dtype=float)
        check_xy(X, y)
        self.n, self.d = X.shape
        self.center = bool(center)
        self.c = 1.0 if center else 0.0
        scale = float(np.max(np.abs(y)))
        if center:
            X = X - X.mean(axis=0)
            y = y - y.mean()
        if float(np.max(np.abs(y))) <= 1e-12 * scale or scale == 0:
            what = "constant" if center else "identically zero"
            raise UserError(f"y is {what}; there is nothing to predict.")
        self.y = y
        U, s, Vt = np.linalg.svd(X, full_matrices=False)
        tol = s.max(initial=0.0) * max(X.shape) * np.finfo(float).eps
        r = int(np.sum(s > tol))
        if r == 0:
            raise UserError("X has no variation (all columns constant); nothing to fit.")
        self.U, self.s, self.Vt = U[:, :r], s[:r], Vt[:r]
        self.s2 = self.s**2
        self.r = r
        self.n_eff = self.n - (1 if center else 0)
        self.kernel = r >= self.n_eff  # every sample direction is reachable: interpolation possible
        self.z = self.U.T @ y
        self.null = y - self.U @ self.z  # part of y no linear fit can reach
        self.lev_null = 1 - self.c / self.n - np.sum(self.U**2, axis=1)
        self.lambda_min = float(-self.s2.min() / self.n)

    def _lam(self, lambdas) -> np.ndarray:
        return np.atleast_1d(np.asarray(lambdas, dtype=float))

    def admissible(self, lambdas) -> np.ndarray:
        """Mask of admissible penalties (see the module docstring)."""
        lam = self._lam(lambdas)
        ok = np.isfinite(lam) & (lam > self.lambda_min)
        if not self.kernel:
            for k in np.flatnonzero(ok):
                if np.min(self._one_minus_h(lam[k])) <= 1e-12:
                    ok[k] = False
        return ok

    def _one_minus_h(self, lam: float) -> np.ndarray:
        return self.lev_null + (self.U**2) @ (self.n * lam / (self.s2 + self.n * lam))

    def loo_residuals(self, lam: float) -> np.ndarray:
        """``y_i - yhat_{-i}`` for every sample at penalty ``lam``."""
        if not self.admissible([lam])[0]:
            raise UserError(f"ridge penalty {lam:g} is not admissible for this X.")
        den = self.s2 + self.n * lam
        if self.kernel:
            return (self.U @ (self.z / den)) / ((self.U**2) @ (1 / den))
        resid = self.null + self.U @ (self.n * lam / den * self.z)
        return resid / self._one_minus_h(lam)

    def loo(self, lambdas) -> np.ndarray:
        """Mean squared leave-one-out error for each penalty (NaN where inadmissible)."""
        lam = self._lam(lambdas)
        ok = self.admissible(lam)
        out = np.full(lam.shape, np.nan)
        if self.kernel:
            L = lam[ok]
            W = 1 / (self.s2[None, :] + self.n * L[:, None])  # m x r
            num = (W * self.z) @ self.U.T  # m x n
            den = W @ (self.U**2).T
            out[ok] = np.mean((num / den) ** 2, axis=1)
        else:
            for k in np.flatnonzero(ok):
                out[k] = float(np.mean(self.loo_residuals(lam[k]) ** 2))
        return out

    def gcv(self, lambdas) -> np.ndarray:
        """Generalized cross-validation ``(||y - yhat||^2/n) / (1 - tr(H)/n)^2`` (Craven & Wahba 1979)."""
        lam = self._lam(lambdas)
        ok = self.admissible(lam)
        out = np.full(lam.shape, np.nan)
        L = lam[ok]
        W = 1 / (self.s2[None, :] + self.n * L[:, None])
        if self.kernel:
            out[ok] = self.n * ((W**2) @ self.z**2) / W.sum(axis=1) ** 2
        else:
            rss = (self.n * L[:, None] * W) ** 2 @ self.z**2 + self.null @ self.null
            dof = self.c + (self.s2[None, :] * W).sum(axis=1)
            out[ok] = (rss / self.n) / (1 - dof / self.n) ** 2
        return out

    def train(self, lambdas) -> np.ndarray:
        """Training mean squared error ``||y - yhat||^2 / n`` (0 at ``lam = 0`` when ``d >= n``)."""
        lam = self._lam(lambdas)
        W = self.n * lam[:, None] / (self.s2[None, :] + self.n * lam[:, None])
        return ((W**2) @ self.z**2 + self.null @ self.null) / self.n

    def coef(self, lam: float) -> np.ndarray:
        """Ridge coefficients (on centered features when ``center``)."""
        return self.Vt.T @ (self.s / (self.s2 + self.n * lam) * self.z)

    def default_grid(self, num: int = 160) -> np.ndarray:
        """Every admissible negative penalty region, 0, and positive penalties on a log scale."""
        scale = float(np.mean(self.s2) / self.n)
        neg = self.lambda_min * np.concatenate(
            [np.linspace(0.999, 0.1, num // 4), np.logspace(-1, -4, num // 8)[1:]]
        )
        pos = scale * np.logspace(-5, 3, num - num // 4 - num // 8)
        grid = np.unique(np.concatenate([neg, [0.0], pos]))
        return grid[self.admissible(grid)]

    def optimal(
        self, grid: np.ndarray | None = None, criterion: str = "loo"
    ) -> tuple[float, float]:
        """``(lambda_opt, error)`` minimizing leave-one-out (or GCV) error, refined by Brent."""
        from scipy.optimize import minimize_scalar

        f = self.loo if criterion == "loo" else self.gcv
        grid = self.default_grid() if grid is None else np.sort(self._lam(grid))
        vals = f(grid)
        if np.all(np.isnan(vals)):
            raise UserError("no admissible ridge penalty on the grid.")
        i = int(np.nanargmin(vals))
        lo = grid[max(i - 1, 0)]
        hi = grid[min(i + 1, len(grid) - 1)]
        best_l, best_v = float(grid[i]), float(vals[i])
        if hi > lo:

            def obj(t: float) -> float:
                v = f([t])[0]
                return float(v) if np.isfinite(v) else math.inf

            res = minimize_scalar(
                obj,
                bounds=(lo, hi),
                method="bounded",
                options={"xatol": 1e-9 * max(abs(lo), abs(hi), 1e-12)},
            )
            if np.isfinite(res.fun) and res.fun < best_v:
                best_l, best_v = float(res.x), float(res.fun)
        return best_l, best_v


# -- empirical-Bayes fit of the prior ---------------------------------------------------------


@dataclass(frozen=True)
class PriorFit:
    """Maximum-likelihood fit of ``theta ~ N(0, c Sigma_hat^alpha)`` and noise ``sigma^2``."""

    sigma2: float
    alpha: float
    V: float  # tr(A)/n_eff: the fitted prior's signal variance per sample
    J: float  # tr(A^-1)/n_eff (inf when d < n: A is singular)
    loglik: float
    alpha_lr_pvalue: float  # likelihood-ratio test of alpha = 0 (isotropic prior)
    sigma2_interval: tuple[float, float]  # 95% Wald interval on the log scale
    alpha_at_bound: bool


def _negloglik(params, e, z2, null_ss, n_null) -> float:
    log_a, alpha, log_s2 = params
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        g = np.exp((1 + alpha) * np.log(e))
        g = g / g.mean()
        v = np.exp(log_a) * g + np.exp(log_s2)
        out = float(np.sum(np.log(v) + z2 / v) + n_null * log_s2 + null_ss / np.exp(log_s2))
    return out if math.isfinite(out) else 1e300


def fit_prior(path: LooPath, alpha_bounds: tuple[float, float] = (-3.0, 3.0)) -> PriorFit:
    """Empirical Bayes: maximize the Gaussian marginal likelihood of ``y`` over ``(c, alpha, sigma^2)``.

    In the eigenbasis of ``X X^T`` the coordinates ``z_j = u_j^T y`` are independent
    ``N(0, a g_j(alpha) + sigma^2)`` with ``g_j proportional to (s_j^2/n)^(1+alpha)``, and the part of
    ``y`` outside the column space of ``X`` is pure noise. ``alpha`` is bounded to ``alpha_bounds``.
    """
    from scipy.optimize import minimize
    from scipy.stats import chi2

    e = path.s2 / path.n
    z2 = path.z**2
    n_null = path.n_eff - path.r
    null_ss = float(path.null @ path.null)
    tot = (float(z2.sum()) + null_ss) / path.n_eff
    tot = max(tot, 1e-300)

    def fit(alpha_fixed: float | None):
        best = None
        for a0 in (0.9, 0.5, 0.1):
            starts = [0.0, 1.0, -1.0] if alpha_fixed is None else [alpha_fixed]
            for al0 in starts:
                x0 = np.array(
                    [
                        math.log(a0 * tot * path.n_eff / max(path.r, 1)),
                        al0,
                        math.log((1 - a0) * tot),
                    ]
                )
                bounds = [
                    (math.log(tot) - 40, math.log(tot) + 12),
                    alpha_bounds if alpha_fixed is None else (alpha_fixed, alpha_fixed),
                    (math.log(tot) - 40, math.log(tot) + 5),
                ]
                res = minimize(
                    _negloglik, x0, args=(e, z2, null_ss, n_null), method="L-BFGS-B", bounds=bounds
                )
                if best is None or res.fun < best.fun:
                    best = res
        return best

    full = fit(None)
    iso = fit(0.0)
    lr = max(0.0, iso.fun - full.fun)  # the objective is -2 log-likelihood up to a constant
    pvalue = float(chi2.sf(lr, 1))
    # alpha and sigma^2 trade off (a flatter signal spectrum looks like noise), so the noise
    # level is read from the isotropic model unless the data reject it.
    chosen = full if pvalue < 0.05 else iso
    log_a, alpha, log_s2 = chosen.x
    g = e ** (1 + alpha)
    a_eig = math.exp(log_a) * g / g.mean()  # eigenvalues of A = X Sigma_w X^T on the row space
    V = float(a_eig.sum() / path.n_eff)
    J = float(np.sum(1 / a_eig) / path.n_eff) if path.kernel else math.inf
    free = [0, 1, 2] if chosen is full else [0, 2]
    H = _hessian(lambda q: _negloglik(q, e, z2, null_ss, n_null), chosen.x, free)
    try:
        cov = np.linalg.inv(H / 2)  # the objective is -2 log-likelihood
        se = math.sqrt(cov[-1, -1]) if cov[-1, -1] > 0 else math.inf
    except np.linalg.LinAlgError:
        se = math.inf
    lo_s2 = math.exp(log_s2 - 1.96 * se) if math.isfinite(se) else 0.0
    hi_s2 = math.exp(log_s2 + 1.96 * se) if math.isfinite(se) else math.inf
    return PriorFit(
        sigma2=float(math.exp(log_s2)),
        alpha=float(full.x[1]),
        V=V,
        J=J,
        loglik=float(-0.5 * chosen.fun),
        alpha_lr_pvalue=pvalue,
        sigma2_interval=(lo_s2, hi_s2),
        alpha_at_bound=bool(min(abs(full.x[1] - b) for b in alpha_bounds) < 1e-6),
    )


def _hessian(f, x: np.ndarray, free: list[int], h: float = 1e-3) -> np.ndarray:
    """Central-difference Hessian of ``f`` at ``x`` in the coordinates ``free``."""
    k = len(free)
    H = np.empty((k, k))
    for a, i in enumerate(free):
        for b, j in enumerate(free[a:], start=a):

            def at(di: float, dj: float, i: int = i, j: int = j) -> float:
                q = np.array(x, dtype=float)
                q[i] += di
                q[j] += dj
                return f(q)

            H[a, b] = H[b, a] = (at(h, h) - at(h, -h) - at(-h, h) + at(-h, -h)) / (4 * h * h)
    return H


# -- the diagnosis ------------------------------------------------------------------------------


@dataclass
class Diagnosis:
    """Everything ``memlens prior diagnose`` reports; ``curve`` is the penalty sweep."""

    n: int
    d: int
    gamma: float
    center: bool
    lambda_opt: float
    lambda_min: float
    loo_opt: float
    loo_interp: float  # leave-one-out MSE at lam = 0 (min-norm interpolator when d >= n)
    loo_gain: float  # (loo_interp - loo_opt) / loo_interp
    loo_gain_se: float  # standard error of the paired difference of squared LOO residuals
    loo_null: float  # leave-one-out MSE of predicting the mean (no features)
    gcv_lambda_opt: float
    lambda_opt_at_edge: bool  # optimum at the most negative admissible penalty
    train_opt: float
    train_interp: float
    interpolates: bool
    sigma2_hat: float
    sigma2_interval: tuple[float, float]
    signal_var_hat: float
    snr: float
    alpha_hat: float
    alpha_pvalue: float
    J_hat: float
    threshold_memorization: float
    threshold_overfitting: float
    regime: str
    verdict: str
    answers: dict[str, str]
    summary: str
    curve: dict[str, list[float]] = field(repr=False)

    def to_dict(self, with_curve: bool = False) -> dict:
        out = asdict(self)
        if not with_curve:
            out.pop("curve")
        return out


def _fmt(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.4g}"


def diagnose(
    X: np.ndarray, y: np.ndarray, center: bool = True, grid: np.ndarray | None = None
) -> Diagnosis:
    """Diagnose whether interpolating ``(X, y)`` is harmless, helpful or harmful.

    Verdict: ``memorize`` when the leave-one-out optimal penalty is ``<= 0`` (interpolation, or
    an even weaker, negative penalty, predicts best); ``regularize`` when it is positive and beats
    ``lam = 0`` by more than two standard errors of the paired leave-one-out difference and by
    more than 1%; ``either`` otherwise (the gain from regularizing is within the noise).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((100, 200)); theta = rng.standard_normal(200) / np.sqrt(200)
    >>> y = X @ theta + 2.0 * rng.standard_normal(100)  # noise variance 4, signal variance 1
    >>> res = diagnose(X, y)
    >>> bool(res.lambda_opt > 0), res.verdict
    (True, 'regularize')
    """
    path = LooPath(X, y, center=center)
    n, d = path.n, path.d
    gamma = d / n
    grid = path.default_grid() if grid is None else np.sort(np.asarray(grid, dtype=float))
    grid = grid[path.admissible(grid)]
    if grid.size == 0:
        raise UserError("no admissible ridge penalty on the grid.")
    if not np.any(grid == 0) and path.admissible([0.0])[0]:
        grid = np.sort(np.append(grid, 0.0))
    lam_opt, loo_opt = path.optimal(grid, "loo")
    gcv_opt, _ = path.optimal(grid, "gcv")
    res0 = path.loo_residuals(0.0)
    resopt = path.loo_residuals(lam_opt)
    diff = res0**2 - resopt**2
    loo0 = float(np.mean(res0**2))
    gain_se = float(np.std(diff, ddof=1) / math.sqrt(n))
    loo_null = (
        float(np.mean((path.y * n / (n - path.c)) ** 2)) if center else float(np.mean(path.y**2))
    )
    fit = fit_prior(path)
    thr_mem = 1 / fit.J
    thr_over = fit.V
    if fit.sigma2 <= thr_mem:
        reg = "memorization necessary"
    elif fit.sigma2 >= thr_over:
        reg = "overfitting harmful"
    else:
        reg = "between thresholds"
    gain = (loo0 - loo_opt) / loo0 if loo0 > 0 else 0.0
    if lam_opt <= 0:
        verdict = "memorize"
    elif loo0 - loo_opt > 2 * gain_se and gain > 0.01:
        verdict = "regularize"
    else:
        verdict = "either"
    train = path.train([lam_opt, 0.0])
    snr = fit.V / fit.sigma2 if fit.sigma2 > 0 else math.inf

    a = fit.alpha
    if fit.alpha_lr_pvalue > 0.05:
        align = "indistinguishable from isotropic"
    elif a > 0:
        align = "aligned with the high-variance features"
    else:
        align = "misaligned (on the low-variance features)"
    answers = {
        "signal_to_noise": (
            f"noise variance {_fmt(fit.sigma2)} (95% interval {_fmt(fit.sigma2_interval[0])} to "
            f"{_fmt(fit.sigma2_interval[1])}) against signal variance {_fmt(fit.V)} per sample "
            f"(SNR {_fmt(snr)}); the fitted prior's thresholds are 1/J = {_fmt(thr_mem)} and "
            f"V = {_fmt(thr_over)}, so the noise is in the regime '{reg}'."
        ),
        "prior_alignment": (
            f"the signal's prior covariance fits Sigma_hat^alpha with alpha = {a:.2f}"
            + (" (at the search bound)" if fit.alpha_at_bound else "")
            + " "
            f"(0 is isotropic; likelihood-ratio p = {fit.alpha_lr_pvalue:.2g}): {align}."
        ),
        "overparameterization": (
            f"d/n = {gamma:.3g} ({d} features, {n} samples): "
            + (
                "the model can interpolate the training data."
                if path.kernel
                else "the model cannot interpolate; lam = 0 is least squares."
            )
        ),
    }
    words = {
        "memorize": "memorization is harmless here: no positive penalty beats "
        + ("the interpolator" if path.kernel else "least squares"),
        "regularize": "regularize: a positive penalty predicts clearly better than "
        + ("interpolating" if path.kernel else "least squares"),
        "either": "either: regularizing gains less than the leave-one-out noise",
    }[verdict]
    at_edge = bool(lam_opt < 0 and lam_opt <= 0.99 * path.lambda_min)
    edge = (
        "; the optimum sits at the most negative admissible penalty, so the low-variance "
        "features already over-regularize and any explicit shrinkage hurts"
        if at_edge
        else ""
    )
    summary = (
        f"{words} (leave-one-out MSE {_fmt(loo_opt)} at lambda_opt = {lam_opt:.4g} vs "
        f"{_fmt(loo0)} at lambda = 0; predicting the mean gives {_fmt(loo_null)}){edge}."
    )
    curve = {
        "lambda": grid.tolist(),
        "loo": path.loo(grid).tolist(),
        "gcv": path.gcv(grid).tolist(),
        "train": path.train(grid).tolist(),
    }
    return Diagnosis(
        n=n,
        d=d,
        gamma=gamma,
        center=center,
        lambda_opt=lam_opt,
        lambda_min=path.lambda_min,
        loo_opt=loo_opt,
        loo_interp=loo0,
        loo_gain=gain,
        loo_gain_se=gain_se / loo0 if loo0 > 0 else 0.0,
        loo_null=loo_null,
        gcv_lambda_opt=gcv_opt,
        lambda_opt_at_edge=at_edge,
        train_opt=float(train[0]),
        train_interp=float(train[1]),
        interpolates=bool(path.kernel),
        sigma2_hat=fit.sigma2,
        sigma2_interval=fit.sigma2_interval,
        signal_var_hat=fit.V,
        snr=snr,
        alpha_hat=a,
        alpha_pvalue=fit.alpha_lr_pvalue,
        J_hat=fit.J,
        threshold_memorization=thr_mem,
        threshold_overfitting=thr_over,
        regime=reg,
        verdict=verdict,
        answers=answers,
        summary=summary,
        curve=curve,
    )
