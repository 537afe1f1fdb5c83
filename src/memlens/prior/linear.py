"""Exact finite-sample theory of the Bayesian linear model, conditional on the design ``X``.

Cheng & Barber, "Is Memorization Helpful or Harmful? Prior Information Sets the Threshold",
COLT 2026 (arXiv:2602.09405). Model: ``y = X theta + sigma tau``, ``X`` (``n x d``) fixed,
``theta ~ pi`` with ``E theta = 0`` and ``E theta theta^T = Sigma_w``, ``tau ~ N(0, I_n)``;
``Sigma_x`` is the covariance of a fresh feature vector. Definitions (all conditional on ``X``)::

    Train(theta_hat) = E[ ||X theta_hat - y||^2 / n ]
    Pred(theta_hat)  = E[ ||theta_hat - theta||^2_{Sigma_x} ]       (excess risk, no sigma^2)
    A = X Sigma_w X^T,  C_y = A + sigma^2 I
    J_pi = tr(A^-1) / n   (Fisher information of the push-forward N(0, A) of theta)
    V_pi = tr(A) / n      (>= 1 / J_pi by the AM-HM inequality)
    lambda_Sigma = ||X Sigma_x^{-1/2}||_op^2 / n

For any linear estimator ``theta_hat = L y`` the risks depend on the prior only through its
covariance and are exact::

    Pred  = tr(Sigma_x (I - L X) Sigma_w (I - L X)^T) + sigma^2 tr(Sigma_x L L^T)
    Train = tr((X L - I) C_y (X L - I)^T) / n
    Pred(L) - Pred(L_B) = tr(Sigma_x (L - L_B) C_y (L - L_B)^T)

For a Gaussian prior the Bayes estimator is the generalized ridge ``L_B = Sigma_w X^T C_y^-1``
with ``Pred(L_B) = tr(Sigma_x (Sigma_w - Sigma_w X^T C_y^-1 X Sigma_w))`` and
``Train_B = sigma^4 tr(C_y^-1) / n``; Theorem 2 brackets it between
``sigma^4 / (V_pi + sigma^2)`` and ``sigma^4 / (1/J_pi + sigma^2)`` for every prior.

Ridge here is normalized, ``(X^T X / n + lam I)``, and computed as
``theta_hat = V diag(s / (s^2 + n lam)) U^T y`` from the thin SVD ``X = U diag(s) V^T``, which is
``X^T (X X^T + n lam I)^-1 y`` when ``d >= n`` and ``(X^T X + n lam I)^-1 X^T y`` when ``d <= n``.
**Admissibility of negative penalties:** ``lam`` is admissible iff ``X^T X / n + lam I`` is
positive definite on the row space of ``X`` (the space every such estimator lives in), i.e.
``lam > -s_min^2 / n`` with ``s_min`` the smallest non-zero singular value of ``X``
(Kobak, Lomond & Sanchez 2020, JMLR 21(169); Tsigler & Bartlett 2023, JMLR 24(123)).
``lam = 0`` is the min-norm interpolator (least squares when ``d < n``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from memlens.errors import UserError

# -- input handling ------------------------------------------------------------------------------


def _design(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[0] < 1 or X.shape[1] < 1:
        raise UserError(f"the design X must be a non-empty 2-D array, got shape {X.shape}.")
    if not np.all(np.isfinite(X)):
        raise UserError("the design X contains NaN or infinite values.")
    return X


def as_cov(c: np.ndarray | float, d: int, name: str) -> np.ndarray:
    """A ``d x d`` covariance from a scalar (times I), a diagonal (1-D) or a full matrix."""
    c = np.asarray(c, dtype=float)
    if c.ndim == 0:
        c = np.full(d, float(c))
    if c.ndim == 1:
        if c.shape != (d,):
            raise UserError(f"{name} must have {d} diagonal entries, got {c.shape[0]}.")
        if np.any(c < 0) or not np.all(np.isfinite(c)):
            raise UserError(f"{name} must have finite non-negative diagonal entries.")
        return np.diag(c)
    if c.shape != (d, d):
        raise UserError(f"{name} must be {d} x {d}, got shape {c.shape}.")
    if not np.all(np.isfinite(c)) or not np.allclose(
        c, c.T, atol=1e-10 * max(1.0, np.abs(c).max())
    ):
        raise UserError(f"{name} must be a finite symmetric matrix.")
    return c


def _sigma2(sigma2: float) -> float:
    if not (math.isfinite(sigma2) and sigma2 >= 0):
        raise UserError(f"the noise variance sigma^2 must be non-negative, got {sigma2}.")
    return float(sigma2)


def _thin_svd(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``U, s, Vt`` restricted to the non-zero singular values (numpy's rank tolerance)."""
    U, s, Vt = np.linalg.svd(X, full_matrices=False)
    tol = s.max(initial=0.0) * max(X.shape) * np.finfo(float).eps
    r = int(np.sum(s > tol))
    return U[:, :r], s[:r], Vt[:r]


# -- prior functionals ------------------------------------------------------------------------


def pushforward_cov(X: np.ndarray, prior_cov) -> np.ndarray:
    """``A = X Sigma_w X^T``: the covariance of ``X theta`` (its density is ``N(0, A)``)."""
    X = _design(X)
    return X @ as_cov(prior_cov, X.shape[1], "prior_cov") @ X.T


def fisher_information(X: np.ndarray, prior_cov) -> float:
    """``J_pi = tr(A^-1) / n`` for ``theta ~ N(0, Sigma_w)``; ``inf`` when ``A`` is singular.

    The push-forward of a Gaussian prior is ``N(0, A)`` with score ``-A^-1 u``, so
    ``E||grad log p||^2 / n = tr(A^-1) / n`` (Cheng & Barber 2026, Sec. 3).
    """
    A = pushforward_cov(X, prior_cov)
    ev = np.linalg.eigvalsh(A)
    if ev.min() <= ev.max() * A.shape[0] * 1e-13:
        return math.inf
    return float(np.mean(1 / ev))


def prior_variance(X: np.ndarray, prior_cov) -> float:
    """``V_pi = E||X theta||^2 / n = tr(X Sigma_w X^T) / n``."""
    A = pushforward_cov(X, prior_cov)
    return float(np.trace(A) / A.shape[0])


def lambda_sigma(X: np.ndarray, feature_cov) -> float:
    """``lambda_Sigma = ||X Sigma_x^{-1/2}||_op^2 / n`` (the corollaries' norm conversion)."""
    X = _design(X)
    S = as_cov(feature_cov, X.shape[1], "feature_cov")
    ev, Q = np.linalg.eigh(S)
    if ev.min() <= 0:
        raise UserError("feature_cov must be positive definite to compute lambda_Sigma.")
    W = (X @ Q) / np.sqrt(ev)
    return float(np.linalg.norm(W, 2) ** 2 / X.shape[0])


def train_bounds(J: float, V: float, sigma2: float) -> tuple[float, float]:
    """Theorem 2: ``sigma^4/(V + sigma^2) <= Train(theta_B) <= sigma^4/(1/J + sigma^2)``."""
    s4 = sigma2 * sigma2
    lo = s4 / (V + sigma2) if V + sigma2 > 0 else 0.0
    hi = s4 / (1 / J + sigma2) if 1 / J + sigma2 > 0 else 0.0
    return lo, hi


def regime(sigma2: float, J: float, V: float) -> str:
    """``memorization necessary`` (``sigma^2 <= 1/J``), ``overfitting harmful`` (``>= V``) or
    ``between thresholds`` (Cheng & Barber 2026, Cor. 1 and 2)."""
    if sigma2 <= 1 / J:
        return "memorization necessary"
    if sigma2 >= V:
        return "overfitting harmful"
    return "between thresholds"


def memorization_excess_bound(train: float, J: float, lam_sigma: float, sigma2: float) -> float:
    """Corollary 1 ("memorization is necessary"): a lower bound on the excess risk.

    If ``Train(theta_hat) >= C J sigma^4`` with ``C > 1`` then
    ``Pred(theta_hat) - Pred(theta_B) >= (1 - C^{-1/2})^2 Train / lambda_Sigma``; the bound
    is applied with the largest valid ``C = Train / (J sigma^4)`` and is 0 when ``C <= 1``.
    (Proof sketch: ``sqrt(Train) <= sqrt(Train_B) + sqrt(lambda_Sigma * excess)`` and
    ``Train_B <= J sigma^4`` by Theorem 2.)
    """
    if not math.isfinite(J) or sigma2 == 0:
        # J = inf: Train_B <= sigma^2 only, no constraint of this form.
        return 0.0
    C = train / (J * sigma2 * sigma2)
    if C <= 1:
        return 0.0
    return float((1 - C**-0.5) ** 2 * train / lam_sigma)


def overfitting_excess_bound(train: float, V: float, lam_sigma: float, sigma2: float) -> float:
    """Corollary 2 ("overfitting is harmful"): a lower bound on the excess risk.

    If ``Train(theta_hat) <= sigma^2 - C V`` with ``C > 1`` then
    ``Pred(theta_hat) - Pred(theta_B) >= (1 - 1/C)^2 (sigma^2 - Train)^2 / (4 lambda_Sigma sigma^2)``;
    applied with the largest valid ``C = (sigma^2 - Train) / V``, 0 when ``C <= 1``.
    """
    if sigma2 == 0 or V <= 0:
        return 0.0
    C = (sigma2 - train) / V
    if C <= 1:
        return 0.0
    return float((1 - 1 / C) ** 2 * (sigma2 - train) ** 2 / (4 * lam_sigma * sigma2))


# -- estimators as matrices L (theta_hat = L y) ------------------------------------------------


def admissible_lambda_min(X: np.ndarray) -> float:
    """``-s_min^2 / n``: ridge penalties must be strictly larger (see the module docstring)."""
    X = _design(X)
    _, s, _ = _thin_svd(X)
    if s.size == 0:
        raise UserError("the design X is identically zero.")
    return float(-(s.min() ** 2) / X.shape[0])


def ridge_matrix(X: np.ndarray, lam: float) -> np.ndarray:
    """``L`` of the normalized ridge ``(X^T X/n + lam I)^+ X^T / n`` on the row space of ``X``."""
    X = _design(X)
    U, s, Vt = _thin_svd(X)
    n = X.shape[0]
    lmin = -(s.min() ** 2) / n
    if not lam > lmin:
        raise UserError(f"ridge penalty {lam:g} is not admissible: it must exceed {lmin:.6g}.")
    return (Vt.T * (s / (s * s + n * lam))) @ U.T


def minnorm_matrix(X: np.ndarray) -> np.ndarray:
    """The min-norm interpolator ``X^+`` (``lam -> 0`` ridge; least squares when ``d < n``)."""
    return ridge_matrix(X, 0.0)


def generalized_ridge_matrix(X: np.ndarray, lam: float, penalty) -> np.ndarray:
    """``(X^T X / n + lam P)^-1 X^T / n`` for a positive definite penalty ``P``.

    Computed as ``P^{-1/2} L_ridge(X P^{-1/2})``, so admissibility and ``lam = 0`` (the min
    ``P``-norm interpolator) follow the plain ridge rules in the rotated coordinates.
    """
    X = _design(X)
    P = as_cov(penalty, X.shape[1], "penalty")
    ev, Q = np.linalg.eigh(P)
    if ev.min() <= 0:
        raise UserError("the generalized ridge penalty matrix must be positive definite.")
    R = (Q / np.sqrt(ev)) @ Q.T  # P^{-1/2}
    return R @ ridge_matrix(X @ R, lam)


def bayes_matrix(X: np.ndarray, prior_cov, sigma2: float) -> np.ndarray:
    """``L_B = Sigma_w X^T (X Sigma_w X^T + sigma^2 I)^-1``: the posterior mean for a Gaussian prior.

    With ``sigma^2 = 0`` this is the min ``Sigma_w^{-1}``-norm interpolator (pseudo-inverse form),
    the only case in which interpolation is exactly Bayes-optimal.
    """
    X = _design(X)
    sigma2 = _sigma2(sigma2)
    Sw = as_cov(prior_cov, X.shape[1], "prior_cov")
    C = X @ Sw @ X.T + sigma2 * np.eye(X.shape[0])
    return Sw @ X.T @ np.linalg.pinv(C, hermitian=True)


# -- risks -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Risk:
    """Exact conditional risks of one estimator: ``pred = bias + variance``, ``train``."""

    pred: float
    bias: float
    variance: float
    train: float


def linear_risk(L: np.ndarray, X: np.ndarray, prior_cov, feature_cov, sigma2: float) -> Risk:
    """Exact ``Pred`` and ``Train`` of ``theta_hat = L y`` (any prior with covariance ``Sigma_w``)."""
    X = _design(X)
    n, d = X.shape
    sigma2 = _sigma2(sigma2)
    Sw = as_cov(prior_cov, d, "prior_cov")
    Sx = as_cov(feature_cov, d, "feature_cov")
    L = np.asarray(L, dtype=float)
    if L.shape != (d, n):
        raise UserError(f"the estimator matrix L must be {d} x {n}, got {L.shape}.")
    M = np.eye(d) - L @ X
    bias = float(np.trace(Sx @ M @ Sw @ M.T))
    var = float(sigma2 * np.trace(Sx @ L @ L.T))
    R = X @ L - np.eye(n)
    C = X @ Sw @ X.T + sigma2 * np.eye(n)
    train = float(np.trace(R @ C @ R.T) / n)
    return Risk(bias + var, bias, var, train)


def bayes_risk(X: np.ndarray, prior_cov, feature_cov, sigma2: float) -> Risk:
    """Bayes risk ``tr(Sigma_x (Sigma_w - Sigma_w X^T C^-1 X Sigma_w))`` and
    ``Train_B = sigma^4 tr(C^-1) / n`` for ``theta ~ N(0, Sigma_w)`` (Cheng & Barber 2026, Sec. 3).

    Computed from the posterior covariance, not from :func:`linear_risk`, so the two can be
    checked against each other.
    """
    X = _design(X)
    n, d = X.shape
    sigma2 = _sigma2(sigma2)
    Sw = as_cov(prior_cov, d, "prior_cov")
    Sx = as_cov(feature_cov, d, "feature_cov")
    B = X @ Sw  # n x d
    C = B @ X.T + sigma2 * np.eye(n)
    Ci = np.linalg.pinv(C, hermitian=True)
    # tr(Sx (Sw - Sw X^T C^-1 X Sw)) = tr(Sx Sw) - tr(C^-1 (X Sw Sx Sw X^T))
    pred = float(np.sum(Sx * Sw.T) - np.sum(Ci * (B @ Sx @ B.T)))
    train = float(sigma2**2 * np.trace(Ci) / n) if sigma2 > 0 else 0.0
    return Risk(pred, pred, 0.0, train)


def excess_risk(L: np.ndarray, X: np.ndarray, prior_cov, feature_cov, sigma2: float) -> float:
    """``Pred(L) - Pred(L_B) = tr(Sigma_x (L - L_B) C_y (L - L_B)^T)`` (Gaussian prior)."""
    X = _design(X)
    n, d = X.shape
    Sw = as_cov(prior_cov, d, "prior_cov")
    Sx = as_cov(feature_cov, d, "feature_cov")
    D = np.asarray(L, dtype=float) - bayes_matrix(X, Sw, sigma2)
    C = X @ Sw @ X.T + sigma2 * np.eye(n)
    return float(np.trace(Sx @ D @ C @ D.T))


# -- the whole ridge path from one SVD -------------------------------------------------------


class RidgePath:
    """Exact ridge risks for many penalties and noise levels from one SVD of ``X``.

    With ``X = U diag(s) V^T`` (thin, rank ``r``), ``F = s^2 / (s^2 + n lam)`` and
    ``G = s / (s^2 + n lam)``::

        bias  = tr(Sx Sw) - 2 F . diag(V^T Sx Sw V) + F^T ((V^T Sx V) o (V^T Sw V)) F
        var   = sigma^2 * G^2 . diag(V^T Sx V)
        train = [ sum_i (1 - F_i)^2 (s_i^2 (V^T Sw V)_ii + sigma^2) + sigma^2 (n - r) ] / n

    so each penalty costs ``O(r^2)`` instead of ``O(n d^2)``.
    """

    def __init__(self, X: np.ndarray, prior_cov, feature_cov) -> None:
        X = _design(X)
        self.n, self.d = X.shape
        Sw = as_cov(prior_cov, self.d, "prior_cov")
        Sx = as_cov(feature_cov, self.d, "feature_cov")
        U, s, Vt = _thin_svd(X)
        if s.size == 0:
            raise UserError("the design X is identically zero.")
        self.s = s
        self.r = s.size
        Bx = Vt @ Sx @ Vt.T
        Bw = Vt @ Sw @ Vt.T
        self._tr = float(np.trace(Sx @ Sw))
        self._m1 = np.einsum("ij,jk,ik->i", Vt, Sx @ Sw, Vt)
        self._H = Bx * Bw.T
        self._bx = np.diag(Bx).copy()
        self._bw = np.diag(Bw).copy()
        self.lambda_min = float(-(s.min() ** 2) / self.n)

    def _check(self, lambdas) -> np.ndarray:
        lam = np.atleast_1d(np.asarray(lambdas, dtype=float))
        if np.any(~np.isfinite(lam)) or np.any(lam <= self.lambda_min):
            raise UserError(
                f"ridge penalties must be finite and exceed lambda_min = {self.lambda_min:.6g}."
            )
        return lam

    def bias(self, lambdas) -> np.ndarray:
        lam = self._check(lambdas)
        F = self.s**2 / (self.s**2 + self.n * lam[:, None])
        return self._tr - 2 * F @ self._m1 + np.einsum("ki,ij,kj->k", F, self._H, F)

    def variance_per_noise(self, lambdas) -> np.ndarray:
        lam = self._check(lambdas)
        G = self.s / (self.s**2 + self.n * lam[:, None])
        return (G * G) @ self._bx

    def pred(self, lambdas, sigma2: float) -> np.ndarray:
        return self.bias(lambdas) + _sigma2(sigma2) * self.variance_per_noise(lambdas)

    def train(self, lambdas, sigma2: float) -> np.ndarray:
        sigma2 = _sigma2(sigma2)
        lam = self._check(lambdas)
        one_minus_F = self.n * lam[:, None] / (self.s**2 + self.n * lam[:, None])
        t = (one_minus_F**2) @ (self.s**2 * self._bw + sigma2)
        return (t + sigma2 * (self.n - self.r)) / self.n

    def default_grid(self, num: int = 200) -> np.ndarray:
        """Admissible negative penalties up to 0, then a log grid of positive ones."""
        scale = float(np.mean(self.s**2) / self.n)
        neg = self.lambda_min * np.linspace(0.995, 0.0, num // 4, endpoint=False)
        pos = scale * np.logspace(-4, 3, num - num // 4)
        return np.concatenate([neg, [0.0], pos])

    def optimal(self, sigma2: float, grid: np.ndarray | None = None) -> tuple[float, float]:
        """``(lambda_opt, Pred)``: the admissible penalty minimizing the exact risk."""
        from scipy.optimize import minimize_scalar

        grid = self.default_grid() if grid is None else np.sort(self._check(grid))
        vals = self.pred(grid, sigma2)
        i = int(np.argmin(vals))
        lo = grid[i - 1] if i > 0 else 0.5 * (self.lambda_min + grid[0])
        hi = grid[i + 1] if i + 1 < len(grid) else grid[i] * 2 + 1
        res = minimize_scalar(
            lambda t: float(self.pred([t], sigma2)[0]), bounds=(lo, hi), method="bounded",
            options={"xatol": 1e-10 * max(1.0, abs(grid[i]))},
        )  # fmt: skip
        if res.fun <= vals[i]:
            return float(res.x), float(res.fun)
        return float(grid[i]), float(vals[i])

    def sign_change_noise(self) -> float:
        """Exact finite-sample ``sigma_0^2`` where ``dPred/dlam`` vanishes at ``lam = 0``.

        ``dPred/dlam(0) = dbias + sigma^2 dvar`` with ``dvar < 0``: below ``sigma_0^2 = -dbias/dvar``
        a small negative penalty beats interpolation, above it a positive one does.
        """
        s2 = self.s**2
        F = np.ones_like(s2)
        dF = -self.n / s2
        dbias = -2 * dF @ self._m1 + 2 * dF @ self._H @ F
        G = 1 / self.s
        dG = -self.n / self.s**3
        dvar = 2 * (G * dG) @ self._bx
        return float(-dbias / dvar)


# -- one random design from a population ------------------------------------------------------


def sample_design(feature_var: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``X`` with ``n`` Gaussian rows ``N(0, diag(feature_var))`` (seeded)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, feature_var.size)) * np.sqrt(feature_var)


def finite_sample_theory(
    feature_var: np.ndarray, prior_var: np.ndarray, sigma2: float, n: int, seed: int = 0
) -> dict:
    """Exact conditional quantities on one seeded Gaussian design with diagonal covariances.

    Same keys as :func:`memlens.prior.table.theory` where they exist; they converge to the
    proportional limits as ``n`` grows (fluctuations of order ``1/sqrt(n d)`` to ``1/n``).
    """
    sigma2 = _sigma2(sigma2)
    X = sample_design(feature_var, n, seed)
    sx, sw = feature_var, prior_var
    J = fisher_information(X, sw)
    V = prior_variance(X, sw)
    path = RidgePath(X, sw, sx)
    mn_pred = float(path.pred([0.0], sigma2)[0])
    mn_train = float(path.train([0.0], sigma2)[0])
    b = bayes_risk(X, sw, sx, sigma2)
    lam_opt, opt_pred = path.optimal(sigma2)
    lo, hi = train_bounds(J, V, sigma2)
    return {
        "n": n,
        "d": int(feature_var.size),
        "seed": seed,
        "minnorm_risk": mn_pred,
        "minnorm_train": mn_train,
        "bayes_risk": b.pred,
        "train_bayes": b.train,
        "train_bayes_lower": lo,
        "train_bayes_upper": hi,
        "lambda_opt": lam_opt,
        "ridge_opt_risk": opt_pred,
        "lambda_min": path.lambda_min,
        "J": J,
        "V": V,
        "threshold_memorization": 1 / J,
        "threshold_overfitting": V,
        "lambda_sigma": lambda_sigma(X, sx),
        "regime": regime(sigma2, J, V),
        "sigma2_sign_change": path.sign_change_noise(),
    }
