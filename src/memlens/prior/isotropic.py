"""Isotropic closed forms: known answers for the fixed point of :mod:`memlens.prior.asymptotic`.

With ``Sigma_x = I`` and an isotropic prior of signal ``r^2`` the limits are explicit in the
Marchenko-Pastur Stieltjes transform (Dobriban & Wager 2018, Ann. Statist.; Hastie, Montanari,
Rosset & Tibshirani 2022, Ann. Statist.); the tests check the general fixed point against them.
"""

from __future__ import annotations

import math

from memlens.errors import UserError


def mp_stieltjes(z: float, ratio: float) -> float:
    """Stieltjes transform ``E[1/(mu - z)]`` of Marchenko-Pastur with ratio ``c`` at ``z < 0``.

    Law of the eigenvalues of ``X^T X / n`` for ``X`` (``n x d``) with i.i.d. unit-variance
    entries, ``c = d / n`` (an atom ``1 - 1/c`` at 0 when ``c > 1``)::

        m(z) = (1 - c - z - sqrt((1 - c - z)^2 - 4 c z)) / (2 c z)
    """
    if not z < 0:
        raise UserError("mp_stieltjes is implemented for real z < 0 only.")
    c = ratio
    return float((1 - c - z - math.sqrt((1 - c - z) ** 2 - 4 * c * z)) / (2 * c * z))


def isotropic_minnorm_risk(gamma: float, r2: float, sigma2: float) -> float:
    """``r^2 (1 - 1/gamma) + sigma^2 / (gamma - 1)`` for ``gamma > 1``; ``sigma^2 gamma/(1-gamma)``
    below (Hastie et al. 2022, Thm. 1)."""
    if gamma > 1:
        return r2 * (1 - 1 / gamma) + sigma2 / (gamma - 1)
    if gamma < 1:
        return sigma2 * gamma / (1 - gamma)
    return math.inf


def isotropic_bayes_risk(gamma: float, r2: float, sigma2: float) -> float:
    """``sigma^2 gamma m(-lambda*)`` with ``lambda* = sigma^2 gamma / r^2`` (Dobriban & Wager)."""
    if sigma2 == 0:
        return max(0.0, r2 * (1 - 1 / gamma))
    lam = sigma2 * gamma / r2
    return sigma2 * gamma * mp_stieltjes(-lam, gamma)


def isotropic_train_bayes(gamma: float, r2: float, sigma2: float) -> float:
    """``Train_B = sigma^4 E[1/(r^2 mu + sigma^2)]``, ``mu`` Marchenko-Pastur with ratio ``1/gamma``."""
    if sigma2 == 0:
        return 0.0
    return sigma2**2 / r2 * mp_stieltjes(-sigma2 / r2, 1 / gamma)


def isotropic_fisher_information(gamma: float, r2: float) -> float:
    """``J_pi = gamma / (r^2 (gamma - 1))`` for ``gamma > 1`` (mean of 1/MP), else infinite."""
    return gamma / (r2 * (gamma - 1)) if gamma > 1 else math.inf
