"""Empirical-Bayes fit of the prior to a user's ``(X, y)`` by maximum likelihood.

The Gaussian model ``y = X theta + sigma tau``, ``theta ~ N(0, c * Sigma_hat^alpha)``
(``Sigma_hat = X^T X / n`` on the row space of ``X``) gives ``sigma^2_hat``, the signal variance
``V_hat = tr(A) / n``, the Fisher information ``J_hat = tr(A^-1) / n`` of the fitted prior
(``A = X Sigma_w X^T``) and a likelihood-ratio test of ``alpha = 0`` (isotropic); these are the
"signal to noise" and "prior alignment" answers of :mod:`memlens.prior.diagnosis` (Cheng &
Barber, "Is Memorization Helpful or Harmful? Prior Information Sets the Threshold", COLT 2026,
arXiv:2602.09405).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from memlens.prior.loo import LooPath


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
    # A flat likelihood in sigma^2 (no residual degrees of freedom, d >= n) gives a huge standard
    # error on the log scale: the interval is then (0, inf), not an overflow.
    lo_s2 = math.exp(log_s2 - 1.96 * se) if math.isfinite(se) else 0.0
    hi_log = log_s2 + 1.96 * se
    hi_s2 = math.exp(hi_log) if math.isfinite(hi_log) and hi_log < 709.0 else math.inf
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
