"""Exact leave-one-out error of ridge regression over a grid of penalties, from one SVD.

The grid includes every admissible negative value; :func:`memlens.prior.diagnosis.diagnose`
decides on it (Hastie, Tibshirani & Friedman, ESL Sec. 7.10; for kernel form Cawley & Talbot
2003). Ridge is normalized, ``(X^T X / n + lam I)``, the intercept is fitted and not penalized
(``center=True``), and each leave-one-out fit keeps the full fit's absolute penalty ``n * lam``
(the convention of the closed form). With ``X_c = U diag(s) V^T`` (rank ``r``) and ``z = U^T y``:

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

import numpy as np

from memlens.errors import UserError
from memlens.prior.files import check_xy


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
