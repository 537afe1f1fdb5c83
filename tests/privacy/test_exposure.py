"""Exposure (Carlini et al. 2019): rank exposure by hand, the skew-normal extrapolation against a
known distribution, and canaries drawn with probability ½ under a seed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from memlens.errors import UserError
from memlens.privacy.canaries import allowed_token_ids, include_with_half, random_canaries
from memlens.privacy.exposure import (
    exposure_summary,
    extrapolated_exposure,
    fit_skew_normal,
    rank_exposure,
)


def test_rank_exposure_equals_a_hand_count():
    candidates = [1.0, 2.0, 4.0, 5.0, 5.5, 6.0, 7.0]  # |R| = 7 candidates + the canary = 8
    canaries = [3.0, 10.0, 5.5, 0.5]
    # ranks (1 = lowest code length, ties before the canary): 3, 8, 6, 1
    expected = [3 - math.log2(3), 0.0, 3 - math.log2(6), 3.0]
    assert rank_exposure(canaries, candidates) == pytest.approx(expected, abs=1e-12)


def test_exposure_of_a_given_skew_normal_is_minus_log2_of_its_cdf():
    from memlens.privacy.exposure import SkewNormalFit

    # a = 0 is the normal: F(loc) = 1/2 (1 bit), F(loc - 1.6448536 scale) = 0.05 (4.3219 bits);
    # a skew-normal's CDF at its location is 1/2 - arctan(a)/pi: a = 1 gives 1/4 (2 bits),
    # a = -1 gives 3/4 (0.415 bits)
    normal = SkewNormalFit(a=0.0, loc=10.0, scale=2.0, n=100)
    got = normal.exposure(np.array([10.0, 10.0 - 2 * 1.6448536269514722]))
    assert got == pytest.approx([1.0, -math.log2(0.05)], rel=1e-9)
    assert SkewNormalFit(a=1.0, loc=3.0, scale=5.0, n=100).exposure(np.array([3.0]))[
        0
    ] == pytest.approx(2.0, rel=1e-12)
    assert SkewNormalFit(a=-1.0, loc=3.0, scale=5.0, n=100).exposure(np.array([3.0]))[
        0
    ] == pytest.approx(-math.log2(0.75), rel=1e-12)


def test_extrapolated_exposure_recovers_a_known_tail():
    from scipy.stats import skewnorm

    a, loc, scale = 4.0, 100.0, 12.0
    cand = skewnorm.rvs(a, loc=loc, scale=scale, size=5000, random_state=np.random.default_rng(1))
    fit = fit_skew_normal(cand)
    assert fit.a == pytest.approx(a, rel=0.25) and fit.loc == pytest.approx(loc, abs=1.5)
    # a canary at the true 2^-k quantile has exposure k bits, far beyond log2 |R| ~ 12.3 for k = 20
    for k in (3.0, 20.0):
        q = skewnorm.ppf(2.0**-k, a, loc=loc, scale=scale)
        ext, _ = extrapolated_exposure([q], cand)
        assert ext[0] == pytest.approx(k, abs=0.15 * k)
    # in the bulk, extrapolated and rank exposure agree
    mid = np.quantile(cand, [0.05, 0.3])
    ext, _ = extrapolated_exposure(mid, cand)
    assert ext == pytest.approx(rank_exposure(mid, cand), abs=0.1)


def test_exposure_summary_margin():
    rank = np.array([5.0, 6.0, 1.0, 0.0])
    ext = np.array([9.0, 7.0, 1.0, 1.0])
    s = exposure_summary(rank, ext, np.array([True, True, False, False]), n_candidates=63)
    assert s["rank_margin"] == pytest.approx(5.0) and s["extrapolated_margin"] == pytest.approx(7.0)
    assert s["max_rank_exposure"] == pytest.approx(6.0)


def test_too_few_candidates_or_constant_ones_are_refused():
    with pytest.raises(UserError, match="at least 10"):
        fit_skew_normal([1.0, 2.0])
    with pytest.raises(UserError, match="same code length"):
        fit_skew_normal([3.0] * 20)
    # 49 tied lengths and one other: the fit was a spike that gave a canary tied with the 49
    # (rank 50 of 51, 0.03 bits of rank exposure) 15 bits of extrapolated exposure
    with pytest.raises(UserError, match="only 2 different values"):
        fit_skew_normal([96.0] * 49 + [96.0000001])
    with pytest.raises(UserError, match="only 9 different values"):
        fit_skew_normal(np.repeat(np.arange(9.0), 3))
    assert fit_skew_normal(np.repeat(np.arange(10.0), 3)).n == 30


def test_canaries_are_seeded_and_included_with_probability_half():
    ids = allowed_token_ids(50, exclude=[0, 1])
    a = random_canaries(2000, 6, ids, seed=5, n_candidates=10)
    b = random_canaries(2000, 6, ids, seed=5, n_candidates=300)
    assert np.array_equal(np.stack(a.tokens), np.stack(b.tokens))  # candidates never shift canaries
    assert np.array_equal(a.included, b.included)
    assert np.array_equal(np.stack(a.candidates), np.stack(b.candidates[:10]))
    assert set(np.unique(np.stack(a.tokens)).tolist()) <= set(ids.tolist())
    assert abs(a.included.mean() - 0.5) < 0.035  # 3 standard deviations at m = 2000
    assert not np.array_equal(include_with_half(2000, 5), include_with_half(2000, 6))
    with pytest.raises(UserError, match="at least 2 canaries"):
        random_canaries(1, 6, ids, seed=0)


def test_extrapolated_exposure_stays_finite_deep_in_the_tail():
    """scipy's skew-normal CDF underflows to 0 near 2^-1000: a well memorized canary against a
    fit with a short left tail (a > 0) got exposure inf (Infinity in dp_audit.json). Known
    answers: a = 1 is the law of the larger of two standard normals, F(z) = Φ(z)²; a = 0 is Φ."""
    from scipy.special import log_ndtr

    from memlens.privacy.exposure import SkewNormalFit

    z = np.array([-5.0, -12.0, -40.0, -1000.0])
    got = SkewNormalFit(a=1.0, loc=100.0, scale=10.0, n=50).exposure(100.0 + 10.0 * z)
    assert np.isfinite(got).all()
    assert got == pytest.approx(-2.0 * log_ndtr(z) / math.log(2.0), rel=1e-6)
    got = SkewNormalFit(a=0.0, loc=0.0, scale=1.0, n=50).exposure(z)
    assert got == pytest.approx(-log_ndtr(z) / math.log(2.0), rel=1e-6)
    # a canary ranked first among candidates fitted with a positive skew: finite, above log2 |R|
    from scipy.stats import skewnorm

    cand = skewnorm.rvs(20.0, loc=100.0, scale=10.0, size=200, random_state=1)
    ext, fit = extrapolated_exposure([0.0, 90.0], cand)
    assert fit.a > 5 and np.isfinite(ext).all() and ext[0] > ext[1] > math.log2(201)
