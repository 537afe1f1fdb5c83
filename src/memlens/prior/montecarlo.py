"""Non-Gaussian priors by Monte Carlo, with Tweedie's formula for the Bayes fit.

Cheng & Barber, "Is Memorization Helpful or Harmful? Prior Information Sets the Threshold",
COLT 2026 (arXiv:2602.09405), state Theorem 2 and its corollaries for *every* prior ``pi``.
For priors that are finite mixtures of Gaussians with diagonal covariances -- which include a
symmetric two-point prior (``+-mu``, optionally blurred) and sparse priors (a uniform choice of a
``k``-sparse support with a Gaussian on it) -- everything the theory needs is available in closed
form per draw:

* the push-forward of ``theta`` under ``X`` is the mixture ``sum_k pi_k N(X mu_k, X D_k X^T)``, whose
  score gives the Fisher information ``J_pi = E||grad log p(X theta)||^2 / n`` by Monte Carlo
  (``J_pi = inf`` when some component is singular: the push-forward then has no density);
* ``y`` has density ``p_sigma = p * N(0, sigma^2 I)``, and **Tweedie's formula** (Robbins 1956;
  Efron 2011, "Tweedie's formula and selection bias") gives the Bayes fit
  ``X theta_B = E[X theta | y] = y + sigma^2 grad log p_sigma(y)``, so
  ``Train(theta_B) = sigma^4 E||grad log p_sigma(y)||^2 / n`` -- the Fisher information of the
  smoothed density, which is how Theorem 2's bounds arise (Cramer-Rao below, the Fisher
  information inequality above);
* the posterior mean ``theta_B`` itself is a mixture of Gaussian posterior means.

:func:`simulate` draws ``(theta, tau)`` with a fixed seed and reports every estimate with its
Monte Carlo standard error, so tests can use tolerances of a few standard errors.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from memlens.errors import UserError
from memlens.prior import linear

MAX_COMPONENTS = 20_000


@dataclass(frozen=True)
class GaussianMixturePrior:
    """``theta ~ sum_k weights_k N(means_k, diag(variances_k))``.

    ``variances`` may contain zeros (point masses and exactly sparse priors).
    """

    weights: np.ndarray
    means: np.ndarray
    variances: np.ndarray
    name: str = "mixture"

    def __post_init__(self) -> None:
        w, m, v = self.weights, self.means, self.variances
        if w.ndim != 1 or m.ndim != 2 or v.shape != m.shape or m.shape[0] != w.size:
            raise UserError("mixture weights (K), means (K x d) and variances (K x d) disagree.")
        if np.any(w <= 0) or abs(w.sum() - 1) > 1e-9:
            raise UserError("mixture weights must be positive and sum to 1.")
        if np.any(v < 0) or not (np.all(np.isfinite(v)) and np.all(np.isfinite(m))):
            raise UserError("mixture variances must be finite and non-negative.")

    @property
    def d(self) -> int:
        return self.means.shape[1]

    def second_moment(self) -> np.ndarray:
        """``E theta theta^T``: all the exact linear-estimator risks depend on."""
        w = self.weights
        return np.diag(w @ self.variances) + (self.means.T * w) @ self.means

    def sample(self, size: int, rng: np.random.Generator) -> np.ndarray:
        k = rng.choice(self.weights.size, size=size, p=self.weights)
        z = rng.standard_normal((size, self.d))
        return self.means[k] + np.sqrt(self.variances[k]) * z


def gaussian_prior(variances: np.ndarray) -> GaussianMixturePrior:
    """``N(0, diag(variances))`` (one component)."""
    v = np.asarray(variances, dtype=float)[None, :]
    return GaussianMixturePrior(np.ones(1), np.zeros_like(v), v, "gaussian")


def two_point_prior(mean: np.ndarray, blur: float = 0.0) -> GaussianMixturePrior:
    """``theta = +-mean`` with probability 1/2 each, plus ``N(0, blur I)`` (``blur = 0``: exact)."""
    m = np.asarray(mean, dtype=float)
    if m.ndim != 1 or not np.any(m != 0):
        raise UserError("the two-point prior needs a non-zero 1-D mean vector.")
    if blur < 0:
        raise UserError("the two-point prior's blur variance must be non-negative.")
    return GaussianMixturePrior(
        np.array([0.5, 0.5]), np.stack([m, -m]), np.full((2, m.size), float(blur)), "two-point"
    )


def sparse_prior(d: int, k: int, scale2: float, floor: float = 0.0) -> GaussianMixturePrior:
    """A uniformly chosen support of size ``k``; ``N(0, scale2)`` on it, ``N(0, floor)`` off it.

    ``floor = 0`` is exactly ``k``-sparse; ``floor > 0`` is the approximately sparse version whose
    push-forward has a density (finite ``J_pi``) even when ``k < n``.
    """
    if not (1 <= k <= d):
        raise UserError(f"the sparsity k must lie in [1, d = {d}], got {k}.")
    if scale2 <= 0 or floor < 0:
        raise UserError(
            "sparse prior variances must be positive on and non-negative off the support."
        )
    count = math.comb(d, k)
    if count > MAX_COMPONENTS:
        raise UserError(
            f"a {k}-sparse prior in d = {d} has {count} supports; at most {MAX_COMPONENTS} are enumerated."
        )
    supports = list(itertools.combinations(range(d), k))
    var = np.full((len(supports), d), float(floor))
    for i, sup in enumerate(supports):
        var[i, list(sup)] = scale2
    K = len(supports)
    return GaussianMixturePrior(np.full(K, 1 / K), np.zeros((K, d)), var, f"sparse(k={k})")


# -- mixture calculus in the n-dimensional observation space ---------------------------------


@dataclass
class _Components:
    means: np.ndarray  # K x n
    chol: list[np.ndarray]  # K lower Cholesky factors of the n x n covariances
    logdet: np.ndarray  # K
    logw: np.ndarray  # K
    singular: bool = False


def _components(prior: GaussianMixturePrior, X: np.ndarray, sigma2: float) -> _Components:
    n = X.shape[0]
    means = prior.means @ X.T
    chol, logdet, singular = [], [], False
    for v in prior.variances:
        C = (X * v) @ X.T + sigma2 * np.eye(n)
        ev_min = np.linalg.eigvalsh(C)[0]
        if ev_min <= 1e-12 * max(1.0, np.trace(C) / n):
            singular = True
            chol.append(None)
            logdet.append(np.nan)
            continue
        Lc = np.linalg.cholesky(C)
        chol.append(Lc)
        logdet.append(2 * np.sum(np.log(np.diag(Lc))))
    return _Components(means, chol, np.array(logdet), np.log(prior.weights), singular)


def _score_and_resp(comp: _Components, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Score ``grad log p(u)``, responsibilities ``(S x K)`` and whitened solves ``C_k^-1 (u - m_k)``."""
    from scipy.linalg import cho_solve

    K = len(comp.chol)
    S = u.shape[0]
    logp = np.empty((S, K))
    sol = np.empty((K, S, u.shape[1]))
    for k, Lc in enumerate(comp.chol):
        r = u - comp.means[k]
        sk = cho_solve((Lc, True), r.T).T
        sol[k] = sk
        logp[:, k] = comp.logw[k] - 0.5 * comp.logdet[k] - 0.5 * np.sum(r * sk, axis=1)
    logp -= logp.max(axis=1, keepdims=True)
    resp = np.exp(logp)
    resp /= resp.sum(axis=1, keepdims=True)
    score = -np.einsum("sk,ksn->sn", resp, sol)
    return score, resp, sol


def score(
    prior: GaussianMixturePrior, X: np.ndarray, u: np.ndarray, sigma2: float = 0.0
) -> np.ndarray:
    """``grad log p_sigma(u)`` for the density of ``X theta + sigma tau`` (rows of ``u``)."""
    X = linear._design(X)
    comp = _components(prior, X, sigma2)
    if comp.singular:
        raise UserError(
            "the push-forward of this prior under X has no density (singular component)."
        )
    return _score_and_resp(comp, np.atleast_2d(u))[0]


def tweedie_fit(
    prior: GaussianMixturePrior, X: np.ndarray, y: np.ndarray, sigma2: float
) -> np.ndarray:
    """Bayes fitted values ``E[X theta | y] = y + sigma^2 grad log p_sigma(y)`` (Tweedie)."""
    if sigma2 <= 0:
        raise UserError("Tweedie's formula needs a positive noise variance.")
    y = np.atleast_2d(y)
    return y + sigma2 * score(prior, X, y, sigma2)


def posterior_mean(
    prior: GaussianMixturePrior, X: np.ndarray, y: np.ndarray, sigma2: float
) -> np.ndarray:
    """``E[theta | y]``: responsibility-weighted Gaussian posterior means, one row per row of ``y``.

    Component ``k``: ``mu_k + D_k X^T (X D_k X^T + sigma^2 I)^-1 (y - X mu_k)``.
    """
    X = linear._design(X)
    if sigma2 <= 0:
        raise UserError("the posterior mean is computed for a positive noise variance.")
    y = np.atleast_2d(y)
    comp = _components(prior, X, sigma2)
    _, resp, sol = _score_and_resp(comp, y)
    out = np.zeros((y.shape[0], prior.d))
    for k in range(len(comp.chol)):
        post_k = prior.means[k] + (sol[k] @ X) * prior.variances[k]
        out += resp[:, k : k + 1] * post_k
    return out


# -- the simulation ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """A Monte Carlo mean and its standard error."""

    mean: float
    se: float

    @staticmethod
    def of(x: np.ndarray) -> Estimate:
        x = np.asarray(x, dtype=float)
        return Estimate(float(x.mean()), float(x.std(ddof=1) / math.sqrt(x.size)))


@dataclass(frozen=True)
class MonteCarloResult:
    """Monte Carlo estimates for one prior, design and noise level (conditional on ``X``)."""

    n_samples: int
    J: Estimate  # Fisher information of the push-forward (mean = inf if it has no density)
    V: float  # exact: tr(X E[theta theta^T] X^T) / n
    train_bayes: Estimate  # sigma^4 E||grad log p_sigma(y)||^2 / n  (Tweedie)
    pred_bayes: Estimate  # E||theta_B - theta||^2_Sigma
    train_bounds: tuple[float, float]  # Theorem 2 at the point estimate of J
    lambda_sigma: float
    linear: dict[str, dict[str, Estimate]]  # per linear estimator: pred, train, excess


def simulate(
    prior: GaussianMixturePrior,
    X: np.ndarray,
    sigma2: float,
    feature_cov=None,
    *,
    n_samples: int = 4000,
    seed: int = 0,
    estimators: dict[str, np.ndarray] | None = None,
) -> MonteCarloResult:
    """Draw ``theta ~ prior`` and ``tau ~ N(0, I)`` ``n_samples`` times and estimate everything.

    ``estimators`` maps names to matrices ``L`` (``theta_hat = L y``); their excess risk over
    the Bayes estimator is estimated as ``E||L y - theta_B(y)||^2_Sigma`` (Pythagoras), which has
    much smaller variance than a difference of two risks.
    """
    X = linear._design(X)
    n, d = X.shape
    if d != prior.d:
        raise UserError(f"the prior has dimension {prior.d} but X has {d} columns.")
    if sigma2 <= 0:
        raise UserError("the Monte Carlo study needs a positive noise variance.")
    if n_samples < 2:
        raise UserError("n_samples must be at least 2.")
    Sx = linear.as_cov(np.ones(d) if feature_cov is None else feature_cov, d, "feature_cov")
    rng = np.random.default_rng(seed)
    theta = prior.sample(n_samples, rng)
    tau = rng.standard_normal((n_samples, n))
    u = theta @ X.T
    y = u + math.sqrt(sigma2) * tau

    comp0 = _components(prior, X, 0.0)
    if comp0.singular:
        J = Estimate(math.inf, 0.0)
    else:
        g0 = _score_and_resp(comp0, u)[0]
        J = Estimate.of(np.sum(g0 * g0, axis=1) / n)
    V = float(np.trace(X @ prior.second_moment() @ X.T) / n)

    compy = _components(prior, X, sigma2)
    gy = _score_and_resp(compy, y)[0]
    train_b = Estimate.of(sigma2**2 * np.sum(gy * gy, axis=1) / n)
    tb = posterior_mean(prior, X, y, sigma2)
    err = tb - theta
    pred_b = Estimate.of(np.einsum("si,ij,sj->s", err, Sx, err))

    lin: dict[str, dict[str, Estimate]] = {}
    for name, L in (estimators or {}).items():
        th = y @ L.T
        e = th - theta
        r = th @ X.T - y
        diff = th - tb
        lin[name] = {
            "pred": Estimate.of(np.einsum("si,ij,sj->s", e, Sx, e)),
            "train": Estimate.of(np.sum(r * r, axis=1) / n),
            "excess": Estimate.of(np.einsum("si,ij,sj->s", diff, Sx, diff)),
        }
    return MonteCarloResult(
        n_samples=n_samples,
        J=J,
        V=V,
        train_bayes=train_b,
        pred_bayes=pred_b,
        train_bounds=linear.train_bounds(J.mean, V, sigma2),
        lambda_sigma=linear.lambda_sigma(X, Sx),
        linear=lin,
    )
