"""The whole table of ``memlens prior theory`` and the curves behind its plots.

Every limiting quantity for one population and noise level (:func:`theory`), which of Cheng &
Barber's regimes the noise falls in (:func:`~memlens.prior.linear.regime`), and the risks over noise levels
(:func:`curve_vs_sigma2`) and over ridge penalties (:func:`curve_vs_lambda`), all from the fixed
point of :mod:`memlens.prior.asymptotic`.
"""

from __future__ import annotations

import math
from dataclasses import asdict

import numpy as np

from memlens.prior.asymptotic import (
    Population,
    _check_gamma,
    _check_sigma2,
    bayes_limit,
    fisher_information,
    lambda_min,
    lambda_sigma,
    minnorm_limit,
    optimal_ridge,
    prior_variance,
    ridge_limit,
    sign_change_noise,
)
from memlens.prior.linear import regime


def theory(pop: Population, gamma: float, sigma2: float) -> dict:
    """Every limiting quantity of ``memlens prior theory`` for one population and noise level.

    Returns a flat dict: ``minnorm_risk``, ``minnorm_train``, ``bayes_risk``, ``train_bayes``,
    Theorem 2's ``train_bayes_lower``/``_upper``, ``lambda_opt`` and ``ridge_opt_risk``,
    ``lambda_min`` (admissibility edge), ``J``, ``V``, ``threshold_memorization = 1/J``,
    ``threshold_overfitting = V``, ``lambda_sigma``, ``regime``, ``sigma2_sign_change``.
    """
    gamma = _check_gamma(gamma)
    sigma2 = _check_sigma2(sigma2)
    J = fisher_information(pop, gamma)
    V = prior_variance(pop)
    mn = minnorm_limit(pop, gamma, sigma2) if gamma != 1 else None
    b = bayes_limit(pop, gamma, sigma2)
    opt = optimal_ridge(pop, gamma, sigma2)
    return {
        "prior": pop.name,
        "prior_params": pop.params,
        "gamma": gamma,
        "r2": pop.signal,
        "sigma2": sigma2,
        "minnorm_risk": mn.pred if mn else math.inf,
        "minnorm_train": mn.train if mn else math.nan,
        "bayes_risk": b.risk,
        "train_bayes": b.train,
        "train_bayes_lower": sigma2**2 / (V + sigma2) if V + sigma2 > 0 else 0.0,
        "train_bayes_upper": sigma2**2 / (1 / J + sigma2) if (1 / J + sigma2) > 0 else 0.0,
        "lambda_opt": opt.lam,
        "ridge_opt_risk": opt.pred,
        "lambda_min": lambda_min(pop, gamma),
        "J": J,
        "V": V,
        "threshold_memorization": 1 / J,
        "threshold_overfitting": V,
        "lambda_sigma": lambda_sigma(gamma),
        "regime": regime(sigma2, J, V),
        "sigma2_sign_change": sign_change_noise(pop, gamma) if gamma != 1 else math.nan,
        "population": {k: v for k, v in asdict(pop).items() if k != "params"},
    }


def curve_vs_sigma2(pop: Population, gamma: float, sigma2s: np.ndarray) -> dict[str, np.ndarray]:
    """Bayes, min-norm and optimally tuned ridge risks, ``Train_B`` and Theorem 2's band."""
    J, V = fisher_information(pop, gamma), prior_variance(pop)
    out: dict[str, list[float]] = {
        k: []
        for k in ("sigma2", "bayes_risk", "minnorm_risk", "ridge_opt_risk", "lambda_opt",
                  "train_bayes", "train_bayes_lower", "train_bayes_upper")
    }  # fmt: skip
    for s2 in np.asarray(sigma2s, dtype=float):
        b = bayes_limit(pop, gamma, s2)
        opt = optimal_ridge(pop, gamma, s2)
        out["sigma2"].append(s2)
        out["bayes_risk"].append(b.risk)
        out["minnorm_risk"].append(minnorm_limit(pop, gamma, s2).pred if gamma != 1 else math.inf)
        out["ridge_opt_risk"].append(opt.pred)
        out["lambda_opt"].append(opt.lam)
        out["train_bayes"].append(b.train)
        out["train_bayes_lower"].append(s2**2 / (V + s2))
        out["train_bayes_upper"].append(s2**2 / (1 / J + s2))
    return {k: np.asarray(v) for k, v in out.items()}


def curve_vs_lambda(
    pop: Population, gamma: float, sigma2: float, lambdas: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Ridge risk and training error over admissible penalties (negative ones included)."""
    lmin = lambda_min(pop, gamma)
    if lambdas is None:
        lam_opt = optimal_ridge(pop, gamma, sigma2).lam
        top = max(4 * abs(lam_opt), 4 * abs(lmin), 1.0)
        lambdas = np.concatenate(
            [
                lmin + (0 - lmin) * (1 - np.logspace(-3, 0, 60)[::-1] + 1e-3),
                np.linspace(0, top, 140),
            ]
        )
        lambdas = np.unique(lambdas[lambdas > lmin])
    lims = [ridge_limit(pop, gamma, sigma2, float(lam)) for lam in lambdas]
    return {
        "lambda": np.array([x.lam for x in lims]),
        "pred": np.array([x.pred for x in lims]),
        "bias": np.array([x.bias for x in lims]),
        "variance": np.array([x.variance for x in lims]),
        "train": np.array([x.train for x in lims]),
    }
