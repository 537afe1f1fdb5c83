"""Proportional-asymptotic risk curves for ridge, min-norm and Bayes estimators.

Setting (Cheng & Barber, "Is Memorization Helpful or Harmful? Prior Information Sets the
Threshold", COLT 2026, arXiv:2602.09405): ``y = X theta + sigma tau`` with Gaussian rows
``x ~ N(0, Sigma_x)`` and prior ``theta ~ N(0, Sigma_w)``, ``n, d -> infinity`` with
``d / n = gamma``. Feature covariance and prior covariance share one eigenbasis (they
"commute"), so the problem is described by a finite *population*: atoms ``k`` carrying a fraction
``mass_k`` of the ``d`` directions, feature variance ``s_k`` and prior variance ``omega_k / d``
per direction. The signal strength is ``r^2 = E||theta||^2_{Sigma_x} = sum_k mass_k s_k omega_k``.

Everything here comes from one fixed point, the Marchenko-Pastur / Silverstein equation in its
deterministic-equivalent form (Dobriban & Wager 2018, Ann. Statist.; Hastie, Montanari, Rosset &
Tibshirani 2022, Ann. Statist.; Bach 2024, SIAM J. Math. Data Sci.). For the normalized ridge
``theta_hat = (X^T X / n + lam I)^+ X^T y / n`` the effective regularization ``kappa`` solves::

    lam = kappa * (1 - gamma * E[s / (s + kappa)])

and, with ``D2(kappa) = gamma * E[s^2 / (s + kappa)^2]``,::

    Pred  = (kappa^2 * E[omega s / (s + kappa)^2] + sigma^2 * D2) / (1 - D2)
    Train = (lam / kappa)^2 * (Pred + sigma^2)

``lam / kappa = 1 - gamma E[s/(s+kappa)]`` is used directly, so the ridgeless limit is exact.
Negative penalties are admissible on the branch ``kappa > kappa_*`` where ``D2(kappa_*) = 1``;
the edge ``lambda_min = lam(kappa_*) < 0`` is minus the lower edge of the limiting non-zero
spectrum of ``X^T X / n`` (for ``Sigma_x = I``: ``-(1 - sqrt(gamma))^2``), i.e. the regularized
matrix stays positive definite on the row space of ``X``.

The Bayes estimator is a generalized ridge with penalty ``Sigma_w^{-1}``; rotating to
``x' = Sigma_w^{1/2} x`` turns it into a plain ridge with feature variances ``s * omega``, unit
prior and ``lam = sigma^2 * gamma``, so the same fixed point gives the Bayes risk, the Bayes
training error ``Train_B = sigma^4 gamma / kappa'`` and the prior's Fisher information
``J_pi = gamma / kappa'(0)`` (``trace(A^{-1}) / n`` with ``A = X Sigma_w X^T``). The paper's closed
form for its Prop. 8 (approximately low-rank prior) disagrees with simulation at finite ``eta``;
this module solves the fixed point instead and the tests check it against Monte Carlo.

Isotropic check values (``gamma = 2, r^2 = 1, sigma^2 = 0.25``): min-norm risk 0.75, Bayes risk
0.6404, ``Train_B = 0.0702`` inside Theorem 2's band ``[0.05, 0.0833]``, ``lambda_opt = 0.5``,
``J_pi = 2``; their closed forms are in :mod:`memlens.prior.isotropic`. The whole table of
``memlens prior theory`` and its curves are assembled in :mod:`memlens.prior.table`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from memlens.errors import UserError

PRIOR_KINDS = ("isotropic", "aligned", "misaligned", "lowrank")


#: The feature and prior variances the limits are computed for: beyond them the fixed point's
#: kappa^2 * variance overflows double precision (r2 = 1e300 did).
SCALE_RANGE = (1e-100, 1e100)

#: The signal variance ``r2`` (and the largest noise variance ``sigma2``) the limits are computed
#: for: below about 1e-20 the admissible penalties are lost to rounding, above about 1e150 the
#: fixed point overflows; rescale the responses to bring them into range.
R2_RANGE = (1e-8, 1e8)

#: The overparameterization ratios the fixed point is solved for: beyond them (about 1e150 and
#: 1e-300) kappa^2 overflows or underflows double precision.
GAMMA_RANGE = (1e-12, 1e12)


@dataclass(frozen=True)
class Population:
    """A commuting feature/prior population for the proportional limit.

    Parameters
    ----------
    mass:
        Fraction of the ``d`` directions in each atom (sums to 1).
    feature_var:
        Eigenvalue ``s_k > 0`` of ``Sigma_x`` on the atom.
    prior_var:
        ``omega_k >= 0``; a direction of the atom has prior variance ``omega_k / d``.
    name:
        A label for tables and plots.
    """

    mass: tuple[float, ...]
    feature_var: tuple[float, ...]
    prior_var: tuple[float, ...]
    name: str = "custom"
    params: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        p, s, w = (
            np.asarray(v, dtype=float) for v in (self.mass, self.feature_var, self.prior_var)
        )
        if not (p.shape == s.shape == w.shape and p.ndim == 1 and p.size >= 1):
            raise UserError(
                "mass, feature_var and prior_var must be 1-D sequences of equal length."
            )
        if not (np.all(np.isfinite(p)) and np.all(p > 0) and abs(p.sum() - 1) < 1e-9):
            raise UserError("atom masses must be positive and sum to 1.")
        if not (np.all(np.isfinite(s)) and np.all(s > 0)):
            raise UserError("feature variances must be positive and finite.")
        if not (np.all(np.isfinite(w)) and np.all(w >= 0) and np.any(w > 0)):
            raise UserError("prior variances must be non-negative, finite and not all zero.")
        lo, hi = SCALE_RANGE
        if np.any((s < lo) | (s > hi)) or np.any((w > 0) & ((w < lo) | (w > hi))):
            raise UserError(
                f"feature and prior variances must lie between {lo:g} and {hi:g} (got feature "
                f"variances {', '.join(f'{v:g}' for v in s)} and prior variances "
                f"{', '.join(f'{v:g}' for v in w)}), beyond which the fixed point overflows."
            )

    @property
    def p(self) -> np.ndarray:
        return np.asarray(self.mass, dtype=float)

    @property
    def s(self) -> np.ndarray:
        return np.asarray(self.feature_var, dtype=float)

    @property
    def w(self) -> np.ndarray:
        return np.asarray(self.prior_var, dtype=float)

    @property
    def signal(self) -> float:
        """``r^2 = E[s omega]``: the prior's expected signal variance ``E||theta||^2_Sigma``."""
        return float(np.sum(self.p * self.s * self.w))

    def finite(self, d: int) -> tuple[np.ndarray, np.ndarray]:
        """Diagonals ``(Sigma_x, Sigma_w)`` of a ``d``-dimensional instance of the population.

        Directions are allotted to atoms by largest remainder, so ``d * mass_k`` is matched as
        closely as integers allow.
        """
        if d < len(self.mass):
            raise UserError(f"d = {d} is smaller than the number of atoms ({len(self.mass)}).")
        raw = self.p * d
        counts = np.floor(raw).astype(int)
        for k in np.argsort(-(raw - counts))[: d - counts.sum()]:
            counts[k] += 1
        sx = np.repeat(self.s, counts)
        sw = np.repeat(self.w, counts) / d
        return sx, sw


def _two_level_spectrum(spread: float) -> np.ndarray:
    if not (math.isfinite(spread) and spread >= 1):
        raise UserError(f"`spread` must be a finite number >= 1, got {spread}.")
    return np.array([2 * spread / (1 + spread), 2 / (1 + spread)])


def make_population(
    kind: str,
    r2: float = 1.0,
    *,
    spread: float = 10.0,
    alpha: float = 1.0,
    eta: float = 0.1,
    eps: float = 0.05,
) -> Population:
    """One of the four named priors of ``memlens prior theory``, with signal ``r^2``.

    * ``isotropic``: ``Sigma_x = I``, prior variance ``r^2 / d`` on every direction.
    * ``aligned``: half the directions have feature variance ``2 spread / (1 + spread)``, half
      ``2 / (1 + spread)`` (mean 1, condition number ``spread``); prior variance proportional to
      ``s^alpha`` -- the prior puts its mass on the high-variance features (Wu & Xu 2020,
      "On the optimal weighted l2 regularization in overparameterized linear regression").
    * ``misaligned``: the same spectrum with prior variance proportional to ``s^-alpha``.
    * ``lowrank``: ``Sigma_x = I``; a fraction ``eta`` of the directions carries a fraction
      ``1 - eps`` of the signal and the rest carries ``eps`` (the "approximately low-rank" prior
      of Cheng & Barber 2026, Sec. 4; ``eps = 0`` is exactly low rank).

    Each is scaled so that ``E||theta||^2_{Sigma_x} = r^2``.
    """
    if not (math.isfinite(r2) and r2 > 0):
        raise UserError(f"`r2` must be a positive number, got {r2}.")
    if not R2_RANGE[0] <= r2 <= R2_RANGE[1]:
        raise UserError(
            f"`r2` must lie between {R2_RANGE[0]:g} and {R2_RANGE[1]:g} (rescale the "
            f"responses), got {r2:g}."
        )
    if kind == "isotropic":
        return Population((1.0,), (1.0,), (r2,), name=kind)
    if kind in ("aligned", "misaligned"):
        if not (math.isfinite(alpha) and alpha >= 0):
            raise UserError(f"`alpha` must be a finite number >= 0, got {alpha}.")
        s = _two_level_spectrum(spread)
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):  # checked by Population
            w = s ** (alpha if kind == "aligned" else -alpha)
            w = w * r2 / np.sum(0.5 * s * w)
        return Population(
            (0.5, 0.5), tuple(s), tuple(w), name=kind, params={"spread": spread, "alpha": alpha}
        )
    if kind == "lowrank":
        if not (0 < eta < 1):
            raise UserError(f"`eta` must lie strictly between 0 and 1, got {eta}.")
        if not (0 <= eps < 1):
            raise UserError(f"`eps` must lie in [0, 1), got {eps}.")
        w = (r2 * (1 - eps) / eta, r2 * eps / (1 - eta))
        return Population((eta, 1 - eta), (1.0, 1.0), w, name=kind, params={"eta": eta, "eps": eps})
    raise UserError(f"unknown prior {kind!r}; choose one of {', '.join(PRIOR_KINDS)}.")


def _check_gamma(gamma: float) -> float:
    if not (math.isfinite(gamma) and gamma > 0):
        raise UserError(f"`gamma` must be a positive number, got {gamma}.")
    lo, hi = GAMMA_RANGE
    if not lo <= gamma <= hi:
        raise UserError(f"`gamma` must lie between {lo:g} and {hi:g}, got {gamma:g}.")
    return float(gamma)


def _check_sigma2(sigma2: float) -> float:
    if not (math.isfinite(sigma2) and sigma2 >= 0):
        raise UserError(f"`sigma2` must be a non-negative number, got {sigma2}.")
    return float(sigma2)


# -- the fixed point -----------------------------------------------------------------------------


def _moments(p: np.ndarray, s: np.ndarray, gamma: float, kappa: float):
    q = s / (s + kappa)
    return gamma * np.sum(p * q), gamma * np.sum(p * q * q)


def kappa_star(pop: Population, gamma: float) -> float:
    """The branch point ``kappa_*``: ``gamma E[s^2/(s+kappa)^2] = 1`` (``D2 = 1``)."""
    from scipy.optimize import brentq

    gamma = _check_gamma(gamma)
    p, s = pop.p, pop.s
    lo = -s.min()

    def f(k: float) -> float:
        return _moments(p, s, gamma, k)[1] - 1.0

    hi = max(1.0, s.max()) * (1 + math.sqrt(gamma))
    while f(hi) > 0:
        hi *= 2
    a = lo + (hi - lo) * 1e-15
    step = 1e-12 * max(1.0, abs(lo))
    while f(a) < 0:  # pragma: no cover - only when s_min is tiny
        step *= 0.1
        a = lo + step
    return float(brentq(f, a, hi, xtol=1e-15, rtol=1e-14, maxiter=500))


def lambda_of_kappa(pop: Population, gamma: float, kappa: float) -> float:
    """``lam(kappa) = kappa (1 - gamma E[s/(s+kappa)])``."""
    d1, _ = _moments(pop.p, pop.s, gamma, kappa)
    return float(kappa * (1 - d1))


def lambda_min(pop: Population, gamma: float) -> float:
    """Smallest admissible normalized ridge penalty in the limit (negative for ``gamma != 1``).

    Admissibility rule: ``X^T X / n + lam I`` must stay positive definite on the row space of
    ``X``; in the limit that is ``lam > -mu_-``, with ``mu_-`` the lower edge of the non-zero
    limiting spectrum, and ``-mu_- = lam(kappa_*)``.
    """
    return lambda_of_kappa(pop, gamma, kappa_star(pop, gamma))


def kappa_of_lambda(pop: Population, gamma: float, lam: float) -> float:
    """Solve the deterministic-equivalent equation for ``kappa`` on the admissible branch."""
    from scipy.optimize import brentq

    gamma = _check_gamma(gamma)
    ks = kappa_star(pop, gamma)
    lmin = lambda_of_kappa(pop, gamma, ks)
    if not math.isfinite(lam):
        raise UserError(f"the ridge penalty must be finite, got {lam}.")
    if lam < lmin:
        raise UserError(
            f"ridge penalty {lam:g} is not admissible: it must exceed lambda_min = {lmin:.6g}."
        )
    if lam == lmin:
        return ks
    hi = max(1.0, lam + gamma * float(np.sum(pop.p * pop.s))) * 2
    while lambda_of_kappa(pop, gamma, hi) < lam:
        hi *= 2
    return float(
        brentq(lambda k: lambda_of_kappa(pop, gamma, k) - lam, ks, hi, xtol=1e-14, rtol=1e-13)
    )


@dataclass(frozen=True)
class RidgeLimit:
    """Limits of one ridge fit: prediction risk ``Pred = bias + variance``, training error."""

    lam: float
    kappa: float
    pred: float
    bias: float
    variance: float
    train: float


def _risk_at_kappa(pop: Population, gamma: float, sigma2: float, kappa: float) -> RidgeLimit:
    p, s, w = pop.p, pop.s, pop.w
    d1, d2 = _moments(p, s, gamma, kappa)
    ratio = 1 - d1  # lam / kappa
    lam = kappa * ratio
    if d2 >= 1:
        return RidgeLimit(lam, kappa, math.inf, math.inf, math.inf if sigma2 > 0 else 0.0, math.nan)
    b = kappa**2 * float(np.sum(p * w * s / (s + kappa) ** 2)) / (1 - d2)
    v = sigma2 * d2 / (1 - d2)
    pred = b + v
    return RidgeLimit(lam, kappa, pred, b, v, ratio**2 * (pred + sigma2))


def ridge_limit(pop: Population, gamma: float, sigma2: float, lam: float) -> RidgeLimit:
    """Limiting risk and training error of normalized ridge with penalty ``lam``.

    ``lam = 0`` is the min-norm interpolator for ``gamma > 1`` (least squares for ``gamma < 1``);
    negative ``lam`` down to :func:`lambda_min` is allowed. Prediction risk is the excess risk
    ``E||theta_hat - theta||^2_{Sigma_x}`` (no ``sigma^2`` added), as in Cheng & Barber (2026).
    """
    sigma2 = _check_sigma2(sigma2)
    return _risk_at_kappa(pop, gamma, sigma2, kappa_of_lambda(pop, gamma, lam))


def generalized_ridge_limit(
    pop: Population, gamma: float, sigma2: float, lam: float, penalty: np.ndarray
) -> RidgeLimit:
    """Limit of the generalized ridge ``(X^T X / n + lam P)^-1 X^T y / n`` with ``P`` diagonal in the
    population's eigenbasis (``penalty[k] > 0`` on atom ``k``).

    Rotating by ``P^{-1/2}`` gives a plain ridge with feature variances ``s / p`` and prior
    variances ``omega * p`` and the same prediction norm, so :func:`ridge_limit` applies. With
    ``P = 1/omega`` and ``lam = sigma^2 gamma`` it is the Bayes estimator.
    """
    pen = np.asarray(penalty, dtype=float)
    if pen.shape != pop.p.shape or not np.all(np.isfinite(pen)) or np.any(pen <= 0):
        raise UserError("the generalized ridge penalty needs one positive value per atom.")
    rot = Population(pop.mass, tuple(pop.s / pen), tuple(pop.w * pen), pop.name)
    return ridge_limit(rot, gamma, sigma2, lam)


def minnorm_limit(pop: Population, gamma: float, sigma2: float) -> RidgeLimit:
    """Min-norm interpolator (``gamma > 1``) or least squares (``gamma < 1``): ``lam -> 0``."""
    return ridge_limit(pop, gamma, sigma2, 0.0)


def _bayes_population(pop: Population, gamma: float) -> tuple[Population, float]:
    """Rotate by ``Sigma_w^{1/2}``: the Bayes estimator becomes a plain ridge.

    With ``x' = sqrt(d omega) x`` and ``theta' = theta / sqrt(d omega)`` on the ``d'`` directions
    with ``omega > 0`` (directions with a zero prior are estimated by 0 and drop out), the rotated
    features have variances ``s * omega``, every direction has prior variance ``(d'/d) / d'`` and
    the penalty ``sigma^2 Sigma_w^{-1}`` becomes the normalized ridge ``sigma^2 gamma``. Returns the
    rotated population and its ratio ``gamma' = d'/n``.
    """
    keep = pop.w > 0
    p = pop.p[keep]
    frac = float(p.sum())
    rot = Population(
        tuple(p / frac),
        tuple((pop.s * pop.w)[keep]),
        tuple(np.full(int(keep.sum()), frac)),
        "bayes",
    )
    return rot, gamma * frac


@dataclass(frozen=True)
class BayesLimit:
    risk: float
    train: float
    kappa: float


def bayes_limit(pop: Population, gamma: float, sigma2: float) -> BayesLimit:
    """Limiting Bayes risk and Bayes training error ``Train_B = sigma^4 tr((A + sigma^2)^-1)/n``.

    The Bayes estimator ``Sigma_w X^T (X Sigma_w X^T + sigma^2 I)^-1 y`` is a ridge in the rotated
    problem (see :func:`_bayes_population`) with normalized penalty ``sigma^2 gamma``, so
    ``Train_B = sigma^4 gamma / kappa'`` because ``tr((K + lam)^-1) / n -> 1 / kappa(lam)`` for the
    kernel matrix ``K`` (Cheng & Barber 2026, Sec. 3-4; Bach 2024, Sec. 3).
    """
    sigma2 = _check_sigma2(sigma2)
    gamma = _check_gamma(gamma)
    rot, g = _bayes_population(pop, gamma)
    if sigma2 == 0:
        # Noise-free: the min Sigma_w^{-1}-norm interpolator is Bayes-optimal (zero training error).
        if g <= 1:
            return BayesLimit(0.0, 0.0, 0.0)
        lim = _risk_at_kappa(rot, g, 0.0, kappa_of_lambda(rot, g, 0.0))
        return BayesLimit(lim.pred, 0.0, lim.kappa)
    k = kappa_of_lambda(rot, g, sigma2 * gamma)
    lim = _risk_at_kappa(rot, g, sigma2, k)
    return BayesLimit(lim.pred, sigma2**2 * gamma / k, k)


def fisher_information(pop: Population, gamma: float) -> float:
    """``J_pi = lim tr((X Sigma_w X^T)^-1) / n``; infinite when ``X Sigma_w X^T`` is singular.

    Solved from the Marchenko-Pastur fixed point ``1 = gamma' E[s'/(s' + kappa')]`` of the rotated
    problem (``s' = s omega`` over the ``d' = gamma' n`` directions with ``omega > 0``):
    ``J_pi = gamma / kappa'``. Finite only if more than ``n`` directions carry prior mass.
    """
    gamma = _check_gamma(gamma)
    rot, g = _bayes_population(pop, gamma)
    if g <= 1:
        return math.inf
    return gamma / kappa_of_lambda(rot, g, 0.0)


def prior_variance(pop: Population) -> float:
    """``V_pi = lim E||X theta||^2 / n = tr(Sigma_x Sigma_w) = E[s omega]``."""
    return pop.signal


def lambda_sigma(gamma: float) -> float:
    """``lambda_Sigma = ||X Sigma^{-1/2}||_op^2 / n -> (1 + sqrt(gamma))^2`` (Bai-Yin edge)."""
    return (1 + math.sqrt(_check_gamma(gamma))) ** 2


def _pred_on_grid(pop: Population, gamma: float, sigma2: float, kappas: np.ndarray) -> np.ndarray:
    """Vectorized ``Pred(kappa)`` (same formula as :func:`_risk_at_kappa`)."""
    p, s, w = pop.p, pop.s, pop.w
    k = kappas[:, None]
    q = s / (s + k)
    d2 = gamma * (q * q) @ p
    e1 = (w * s / (s + k) ** 2) @ p
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (kappas**2 * e1 + sigma2 * d2) / (1 - d2)
    return np.where(d2 < 1, out, np.inf)


def _dpred_numerator(pop: Population, gamma: float, sigma2: float, k: float) -> float:
    """``(1 - D2)^2 dPred/dkappa``: its sign is the sign of the risk's slope."""
    p, s, w = pop.p, pop.s, pop.w
    e1 = float(np.sum(p * w * s / (s + k) ** 2))
    de1 = -2 * float(np.sum(p * w * s / (s + k) ** 3))
    d2 = gamma * float(np.sum(p * s**2 / (s + k) ** 2))
    dd2 = -2 * gamma * float(np.sum(p * s**2 / (s + k) ** 3))
    num = k * k * e1 + sigma2 * d2
    dnum = 2 * k * e1 + k * k * de1 + sigma2 * dd2
    return dnum * (1 - d2) + num * dd2


def optimal_ridge(pop: Population, gamma: float, sigma2: float) -> RidgeLimit:
    """The ridge penalty (admissible, possibly negative) minimizing the limiting risk.

    A log grid in ``kappa - kappa_*`` brackets the minimum; the root of the analytic derivative
    ``dPred/dkappa`` inside the bracket is found by Brent's method (exact to machine precision,
    unlike minimizing function values). ``lam`` is increasing in ``kappa`` on the admissible
    branch, so this is the optimal ``lam``. For the isotropic prior the answer is
    ``sigma^2 gamma / r^2`` (Dobriban & Wager 2018).
    """
    from scipy.optimize import brentq

    sigma2 = _check_sigma2(sigma2)
    ks = kappa_star(pop, gamma)
    scale = max(1.0, abs(ks), float(np.max(pop.s)))
    ks_grid = ks + scale * np.logspace(-8, 5, 400)
    vals = _pred_on_grid(pop, gamma, sigma2, ks_grid)
    i = int(np.nanargmin(vals))
    best = _risk_at_kappa(pop, gamma, sigma2, float(ks_grid[i]))
    lo = ks_grid[max(i - 1, 0)]
    hi = ks_grid[min(i + 1, len(ks_grid) - 1)]
    flo = _dpred_numerator(pop, gamma, sigma2, lo)
    fhi = _dpred_numerator(pop, gamma, sigma2, hi)
    if flo < 0 < fhi:
        k = brentq(
            lambda x: _dpred_numerator(pop, gamma, sigma2, x), lo, hi, xtol=1e-15, rtol=1e-15
        )
        cand = _risk_at_kappa(pop, gamma, sigma2, float(k))
        if cand.pred <= best.pred:
            best = cand
    if abs(best.lam) < 1e-12 * max(1.0, abs(lambda_of_kappa(pop, gamma, ks))):
        best = RidgeLimit(0.0, *dataclasses.astuple(best)[1:])  # round-off around lam = 0
    return best


def sign_change_noise(pop: Population, gamma: float) -> float:
    """Noise level ``sigma_0^2`` at which the optimal ridge penalty changes sign.

    ``dPred/dlam`` at ``lam = 0`` is ``B'(kappa_0) + sigma^2 V'(kappa_0)`` (times
    ``dkappa/dlam > 0``), with ``B`` the bias and ``V = D2 / (1 - D2)`` the variance per unit
    noise; ``V' < 0``, so ``sigma_0^2 = -B'(kappa_0) / V'(kappa_0)``. For ``sigma^2 < sigma_0^2``
    the risk decreases as ``lam`` goes below 0, so ``lambda_opt < 0``; above, ``lambda_opt > 0``
    (assuming a single minimum, which holds for the named priors). ``sigma_0^2 = 0`` for the
    isotropic prior (interpolation is optimal only without noise); it is positive for an aligned
    prior and negative (no sign change: always regularize) for a misaligned one (Kobak, Lomond &
    Sanchez 2020, JMLR; Wu & Xu 2020, NeurIPS).
    """
    gamma = _check_gamma(gamma)
    p, s, w = pop.p, pop.s, pop.w
    k = kappa_of_lambda(pop, gamma, 0.0)
    e1 = float(np.sum(p * w * s / (s + k) ** 2))
    de1 = -2 * float(np.sum(p * w * s / (s + k) ** 3))
    d2 = gamma * float(np.sum(p * s**2 / (s + k) ** 2))
    dd2 = -2 * gamma * float(np.sum(p * s**2 / (s + k) ** 3))
    if d2 >= 1:
        return math.nan
    terms = ((2 * k * e1) * (1 - d2), (k * k * de1) * (1 - d2), k * k * e1 * dd2)
    num = sum(terms)  # (1 - D2)^2 * B'(kappa_0)
    if abs(num) <= 1e-12 * max(abs(x) for x in terms):
        num = 0.0  # exact cancellation (isotropic and low-rank priors with Sigma_x = I)
    val = float(num / (-dd2))
    return 0.0 if abs(val) < 1e-12 * pop.signal else val
