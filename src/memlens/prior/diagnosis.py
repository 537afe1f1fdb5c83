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
of penalties that includes every admissible negative value (:class:`memlens.prior.loo.LooPath`);
the signal-to-noise and alignment answers come from the empirical-Bayes fit
:func:`memlens.prior.empirical_bayes.fit_prior`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from memlens.errors import UserError
from memlens.prior.empirical_bayes import fit_prior
from memlens.prior.linear import regime
from memlens.prior.loo import LooPath


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
    reg = regime(fit.sigma2, fit.J, fit.V)
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
