"""Exposure of canaries (Carlini et al. 2019, "The Secret Sharer", USENIX Security, arXiv:1802.08232).

A canary ``s[r]`` is one draw of randomness ``r`` from a space ``R`` of equally likely secrets of
one format (here: random token strings of one length). Its *rank* is its position when every
``s[r']`` is sorted by the model's code length ``ℓ`` (lowest first, rank 1); its exposure is

    exposure(s) = log2 |R| − log2 rank(s)        bits

0 bits for the least likely secret, ``log2 |R|`` for the most likely. ``R`` is too large to
enumerate, so memlens samples ``n`` random candidates of the same format that were never trained
on and takes ``R`` = the candidates plus the canary itself (``|R| = n + 1``); ties count against
the canary (a candidate as likely as the canary ranks before it), so rank exposure is never
over-stated. It cannot exceed ``log2 (n + 1)``.

The *extrapolated* exposure (Carlini et al. 2019, Sec. 4.3) fits a skew-normal distribution to the
candidates' code lengths and reads the canary's rank fraction off its CDF ``F``:

    exposure ≈ −log2 F(ℓ(s))              bits

which estimates exposures above ``log2 |R|`` as well (``scipy.stats.skewnorm``).

Units: code lengths and exposures are bits.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from memlens.errors import UserError

LN2 = math.log(2.0)


def _finite(x: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    if not np.isfinite(a).all():
        raise UserError(f"some {what} code lengths are not finite numbers.")
    return a


def rank_exposure(canary_bits: np.ndarray, candidate_bits: np.ndarray) -> np.ndarray:
    """Rank exposure ``log2 |R| − log2 rank`` of each canary among the candidates, in bits.

    Parameters
    ----------
    canary_bits : [n_canaries] float
        Code length of each canary under the model, in bits.
    candidate_bits : [n] float
        Code lengths of ``n`` random candidates of the same format never trained on.

    Returns
    -------
    [n_canaries] float
        ``log2 (n + 1) − log2 (1 + #{candidates with ℓ ≤ ℓ(canary)})``.

    Examples
    --------
    >>> rank_exposure([1.0, 5.0], [2.0, 3.0, 4.0])  # ranks 1 and 4 of |R| = 4
    array([2., 0.])
    """
    c = _finite(canary_bits, "canary")
    cand = np.sort(_finite(candidate_bits, "candidate"))
    if len(cand) < 1:
        raise UserError("rank exposure needs at least one random candidate.")
    rank = 1 + np.searchsorted(cand, c, side="right")
    return np.log2(len(cand) + 1) - np.log2(rank)


MIN_DISTINCT = 10  # different candidate code lengths a skew-normal fit needs

_DEEP_LOGCDF = -700.0  # nats: below this, scipy's skew-normal CDF is near or past underflow


def _skewnorm_log_left_tail(z: float, a: float) -> float:
    """``log F(z)`` of the standard skew-normal with shape ``a`` deep in its left tail (nats).

    ``F(z) = ∫_{-∞}^z f``, ``f(t) = 2 φ(t) Φ(a t)``, with ``g = log f`` (concave: the skew-normal
    is log-concave). Substituting ``t = z − u/g'(z)`` gives
    ``log F(z) = g(z) − log g'(z) + log ∫_0^∞ exp(g(z − u/g'(z)) − g(z)) du``, whose integrand is
    1 at ``u = 0`` and at most ``e^{−u}``: finite and accurate however small ``F(z)`` is.
    """
    from scipy.integrate import quad
    from scipy.special import log_ndtr
    from scipy.stats import norm

    def g(t: float) -> float:
        return float(math.log(2.0) + norm.logpdf(t) + log_ndtr(a * t))

    mills = math.exp(float(norm.logpdf(a * z) - log_ndtr(a * z)))  # φ(az)/Φ(az)
    slope = -z + a * mills  # g'(z), positive in the left tail
    if not slope > 0:  # not in the left tail: scipy's CDF was fine there
        from scipy.stats import skewnorm

        return float(skewnorm.logcdf(z, a))
    import warnings

    h = 1.0 / slope
    g0 = g(z)
    with warnings.catch_warnings():  # far out, g's differences round off; the integral is in (0, 1]
        warnings.simplefilter("ignore")
        val, _ = quad(lambda u: math.exp(g(z - u * h) - g0), 0.0, math.inf, limit=200)
    if not 0.0 < val <= 1.0:  # rounding only: the integral of e^{-u} is the tail's leading term
        val = 1.0 if not val > 0.0 else min(val, 1.0)
    return g0 + math.log(h) + math.log(val)


@dataclass(frozen=True)
class SkewNormalFit:
    """A skew-normal fitted to code lengths (``scipy.stats.skewnorm`` parameters, bits)."""

    a: float
    loc: float
    scale: float
    n: int

    def exposure(self, canary_bits: np.ndarray) -> np.ndarray:
        """``−log2 F(ℓ)`` for each code length ``ℓ``, in bits (via ``logcdf`` for deep tails)."""
        from scipy.stats import skewnorm

        c = _finite(canary_bits, "canary")
        with np.errstate(divide="ignore"):
            logcdf = np.atleast_1d(
                np.asarray(
                    skewnorm.logcdf(c, self.a, loc=self.loc, scale=self.scale), dtype=np.float64
                )
            )
        # scipy's CDF underflows to 0 (exposure inf) below about 2^-1000, which a well
        # memorized canary reaches against a fit with a short left tail: integrate there instead
        deep = ~(logcdf > _DEEP_LOGCDF)
        for i in np.flatnonzero(deep):
            logcdf[i] = _skewnorm_log_left_tail((c[i] - self.loc) / self.scale, self.a)
        return -logcdf / LN2

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit_skew_normal(candidate_bits: np.ndarray) -> SkewNormalFit:
    """Maximum-likelihood skew-normal fit of the candidates' code lengths (bits)."""
    import warnings

    from scipy.stats import skewnorm

    cand = _finite(candidate_bits, "candidate")
    if len(cand) < 10:
        raise UserError(
            f"the skew-normal fit needs at least 10 random candidates, got {len(cand)}."
        )
    if np.ptp(cand) == 0:
        raise UserError("every random candidate has the same code length; nothing to fit.")
    distinct = len(np.unique(cand))
    if distinct < MIN_DISTINCT:
        # a fit to a few tied values is a spike: a canary tied with most candidates (rank
        # exposure near 0) came out at 15 bits against 49 equal lengths and one other
        raise UserError(
            f"the candidates' code lengths take only {distinct} different values; the "
            f"skew-normal fit needs at least {MIN_DISTINCT}."
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a, loc, scale = skewnorm.fit(cand)
    return SkewNormalFit(float(a), float(loc), float(scale), int(len(cand)))


def extrapolated_exposure(
    canary_bits: np.ndarray, candidate_bits: np.ndarray
) -> tuple[np.ndarray, SkewNormalFit]:
    """Extrapolated exposure ``−log2 F(ℓ(s))`` of each canary, F the skew-normal CDF fitted to the
    candidates' code lengths (Carlini et al. 2019, Sec. 4.3); returns exposures in bits and the fit."""
    fit = fit_skew_normal(candidate_bits)
    return fit.exposure(canary_bits), fit


def exposure_summary(
    rank: np.ndarray, extrapolated: np.ndarray, included: np.ndarray, n_candidates: int
) -> dict[str, Any]:
    """Mean and median exposures of inserted and never-inserted canaries and their margin (bits)."""
    inc = np.asarray(included, dtype=bool)
    out: dict[str, Any] = {
        "n_candidates": int(n_candidates),
        "max_rank_exposure": math.log2(n_candidates + 1),
    }
    for name, arr in (("rank", np.asarray(rank)), ("extrapolated", np.asarray(extrapolated))):
        for group, mask in (("inserted", inc), ("not_inserted", ~inc)):
            vals = arr[mask]
            vals = vals[~np.isnan(vals)]  # NaN: not defined (no skew-normal fit), not a number
            out[f"{name}_{group}_mean"] = float(vals.mean()) if len(vals) else None
            out[f"{name}_{group}_median"] = float(np.median(vals)) if len(vals) else None
        a, b = out[f"{name}_inserted_mean"], out[f"{name}_not_inserted_mean"]
        out[f"{name}_margin"] = (a - b) if a is not None and b is not None else None
    return out
