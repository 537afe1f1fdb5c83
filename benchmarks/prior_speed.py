"""Speed of the prior lab against plain baselines, measured in the same run.

1. Exact leave-one-out over a penalty grid (negative penalties included), with an unpenalized
   intercept: memlens (one SVD, closed form per penalty) vs refitting the n leave-one-out
   problems for every penalty (kernel ridge solve per fit, intercept re-estimated).
2. Exact conditional prediction risk and training error over the same grid: memlens
   ``RidgePath`` (one SVD, O(r^2) per penalty) vs forming ``L`` and evaluating the trace
   formulas per penalty (``linear_risk``, O(d^3)).

Both sides run single-threaded BLAS (``threadpoolctl``) so the ratio reflects the algorithm,
not thread scheduling on a shared machine. Each result is checked against its baseline.

Usage: ``python benchmarks/prior_speed.py [--n 150] [--d 400] [--grid 25] [--seed 0]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.optimize  # noqa: F401  (load scipy's BLAS before limiting threads)
from threadpoolctl import threadpool_limits

from memlens.prior.linear import RidgePath, linear_risk, ridge_matrix
from memlens.prior.loo import LooPath


def naive_loo(X: np.ndarray, y: np.ndarray, lambdas: np.ndarray) -> np.ndarray:
    """Mean squared LOO error by n refits per penalty (the textbook definition)."""
    n = len(y)
    out = np.empty(len(lambdas))
    for k, lam in enumerate(lambdas):
        err = np.empty(n)
        for i in range(n):
            keep = np.arange(n) != i
            Xi, yi = X[keep], y[keep]
            mx, my = Xi.mean(0), yi.mean()
            Xc = Xi - mx
            K = Xc @ Xc.T + n * lam * np.eye(n - 1)
            # lam = 0: centered K is singular along 1; the min-norm interpolator uses pinv.
            alpha = (
                np.linalg.pinv(K, hermitian=True) @ (yi - my)
                if lam == 0
                else np.linalg.solve(K, yi - my)
            )
            err[i] = y[i] - (my + (X[i] - mx) @ (Xc.T @ alpha))
        out[k] = np.mean(err**2)
    return out


def naive_risks(X, sw, sx, sigma2, lambdas):
    preds, trains = [], []
    for lam in lambdas:
        r = linear_risk(ridge_matrix(X, lam), X, sw, sx, sigma2)
        preds.append(r.pred)
        trains.append(r.train)
    return np.array(preds), np.array(trains)


def _time(f, repeat=1):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        out = f()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=150)
    ap.add_argument("--d", type=int, default=400)
    ap.add_argument("--grid", type=int, default=25)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    n, d = args.n, args.d
    s = np.ones(d)
    s[:10] = 10.0
    X = rng.standard_normal((n, d)) * np.sqrt(s)
    y = X @ (rng.standard_normal(d) / np.sqrt(d)) + 0.5 * rng.standard_normal(n)

    with threadpool_limits(1):
        path0 = LooPath(X, y)
        lambdas = np.concatenate(
            [path0.lambda_min * np.linspace(0.9, 0.1, args.grid // 3), [0.0]]
            + [np.logspace(-2, 2, args.grid - args.grid // 3 - 1)]
        )
        t_fast, fast = _time(lambda: LooPath(X, y).loo(lambdas), repeat=3)
        t_naive, naive = _time(lambda: naive_loo(X, y, lambdas))
        err = float(np.max(np.abs(fast - naive) / naive))
        print(
            f"exact leave-one-out, n={n}, d={d}, {len(lambdas)} penalties (negative ones included)"
        )
        print(f"  memlens (one SVD)      : {t_fast * 1e3:9.2f} ms")
        print(f"  baseline ({n} refits/λ): {t_naive * 1e3:9.2f} ms")
        print(
            f"  speed-up               : {t_naive / t_fast:9.1f}x   max relative difference {err:.1e}"
        )

        sw = s / np.sum(s * s)
        lam_r = lambdas[lambdas > path0.lambda_min]
        Xr = X  # the exact theory has no intercept
        sigma2 = 0.25
        t_fast, (pf, tf) = _time(
            lambda: (lambda p: (p.pred(lam_r, sigma2), p.train(lam_r, sigma2)))(
                RidgePath(Xr, sw, s)
            ),
            repeat=3,
        )
        t_naive, (pn, tn) = _time(lambda: naive_risks(Xr, sw, s, sigma2, lam_r))
        # training error is exactly 0 at lam = 0 (interpolation): compare on the scale of sigma^2
        err = float(max(np.max(np.abs(pf - pn) / pn), np.max(np.abs(tf - tn)) / sigma2))
        print(f"exact ridge risk and training error, n={n}, d={d}, {len(lam_r)} penalties")
        print(f"  memlens (RidgePath)    : {t_fast * 1e3:9.2f} ms")
        print(f"  baseline (L per λ)     : {t_naive * 1e3:9.2f} ms")
        print(
            f"  speed-up               : {t_naive / t_fast:9.1f}x   max difference {err:.1e} (relative; train vs sigma^2)"
        )


if __name__ == "__main__":
    main()
