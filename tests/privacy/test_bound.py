"""The one-run ε lower bound (Steinke, Nasr & Jagielski 2023, Appendix D): check values, a closed
form, the p-value against a direct transcription with exact binomials, and the k± selection."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from memlens.errors import UserError
from memlens.privacy.bound import (
    audit_scores,
    candidate_counts,
    ceiling,
    count_correct,
    epsilon_lower_bound,
    guess,
    one_run_bound,
    p_value,
)


@pytest.mark.parametrize("r, expected", [(10, 1.052), (100, 3.493), (1000, 5.809)])
def test_all_guesses_right_delta_zero_matches_the_check_values(r, expected):
    assert round(epsilon_lower_bound(r, r, r, delta=0.0, confidence=0.95), 3) == expected


def test_900_of_1000_right_at_delta_1e5_is_2_02():
    eps = epsilon_lower_bound(1000, 1000, 900, delta=1e-5, confidence=0.95)
    assert round(eps, 2) == 2.02
    assert round(eps, 3) == 2.021


@pytest.mark.parametrize("r", [1, 2, 7, 37, 250])
def test_delta_zero_all_right_has_a_closed_form(r):
    # p = q^r < 0.05  <=>  q < 0.05^(1/r);  ε = log(q / (1 - q)), and 0 when that is negative
    q = 0.05 ** (1.0 / r)
    expected = max(0.0, math.log(q / (1 - q)))
    assert epsilon_lower_bound(r, r, r) == pytest.approx(expected, abs=1e-8)
    assert (expected == 0.0) == (r < 5)  # 4 right guesses are not yet evidence at 95%


def _p_value_by_hand(m: int, r: int, v: int, eps: float, delta: float) -> float:
    """Appendix D transcribed with exact binomial probabilities (fractions, math.comb)."""
    q = Fraction(math.exp(eps)) / (1 + Fraction(math.exp(eps)))

    def pmf(k: int) -> Fraction:
        return math.comb(r, k) * q**k * (1 - q) ** (r - k)

    beta = sum((pmf(k) for k in range(v, r + 1)), Fraction(0))
    alpha = max(
        (sum((pmf(k) for k in range(v - i, v)), Fraction(0)) / i for i in range(1, v + 1)),
        default=Fraction(0),
    )
    return min(1.0, float(beta + 2 * m * Fraction(delta) * alpha))


@pytest.mark.parametrize(
    "m, r, v, eps, delta",
    [(20, 12, 10, 1.3, 0.01), (50, 30, 21, 0.4, 1e-3), (9, 9, 9, 2.0, 0.05), (40, 25, 3, 0.1, 0.0)],
)
def test_p_value_equals_a_direct_transcription(m, r, v, eps, delta):
    assert p_value(m, r, v, eps, delta) == pytest.approx(
        _p_value_by_hand(m, r, v, eps, delta), rel=1e-9
    )


def test_bound_is_the_largest_epsilon_rejected():
    m, r, v, d = 200, 120, 100, 1e-4
    eps = epsilon_lower_bound(m, r, v, d)
    assert p_value(m, r, v, eps - 1e-6, d) < 0.05 <= p_value(m, r, v, eps + 1e-6, d)


def test_more_right_guesses_never_lower_the_bound_and_delta_lowers_it():
    vals = [epsilon_lower_bound(500, 300, v, 1e-5) for v in range(150, 301, 10)]
    assert all(b >= a for a, b in zip(vals, vals[1:], strict=False))
    assert vals[0] == 0.0  # half right: no evidence against ε = 0
    assert epsilon_lower_bound(500, 300, 290, 1e-3) < epsilon_lower_bound(500, 300, 290, 0.0)


def test_ceiling_and_counts_from_elsewhere():
    res = one_run_bound(1000, 1000, 900, delta=1e-5)
    assert res.ceiling == pytest.approx(ceiling(1000, 1e-5))
    assert res.ceiling_at_guesses == pytest.approx(res.ceiling)
    assert res.epsilon_lower_bound < res.ceiling
    small = one_run_bound(1000, 100, 100, delta=0.0)
    assert round(small.ceiling_at_guesses, 3) == 3.493
    assert round(small.ceiling, 3) == 5.809


@pytest.mark.parametrize(
    "args, fragment",
    [
        ((1, 1, 1, 0.0), "at least 2 canaries"),
        ((10, 10, 10, 1.0), "delta must be at least 0 and below 1"),
        ((10, 11, 5, 0.0), "guesses <= canaries"),
        ((10, 5, 6, 0.0), "correct <= guesses"),
    ],
)
def test_bad_counts_raise_one_sentence(args, fragment):
    with pytest.raises(UserError, match=fragment):
        one_run_bound(*args)


# -- guessing and the k± selection ---------------------------------------------------------------


def test_guess_and_count_by_hand():
    scores = np.array([0.9, 0.1, 0.5, 0.7, 0.2, 0.3])
    included = np.array([True, False, True, False, False, True])
    g = guess(scores, k_in=2, k_out=2)  # IN: 0.9, 0.7; OUT: 0.1, 0.2
    assert g.tolist() == [1, -1, 0, 1, -1, 0]
    assert count_correct(g, included) == (4, 3)  # 0.7 guessed IN but was out
    with pytest.raises(UserError, match="k_in \\+ k_out"):
        guess(scores, 4, 3)


def test_candidate_grid_is_fixed_in_advance():
    grid = candidate_counts(100)
    assert (25, 25) not in grid and (20, 20) in grid and (0, 10) in grid and (0, 0) not in grid
    assert all(a + b <= 100 for a, b in grid)


def test_choosing_k_after_the_scores_inflates_the_bound_and_the_corrections_do_not():
    """A perfectly private mechanism (scores independent of inclusion): every honest selection
    rejects ε = 0 in about 5% of runs at most; the best k± picked after seeing the scores does
    far more often."""
    rng = np.random.default_rng(7)
    trials, m = 300, 60
    hits = {"fixed": 0, "split": 0, "bonferroni": 0, "post hoc": 0}
    grid = candidate_counts(m)
    for t in range(trials):
        scores = rng.normal(size=m)
        inc = rng.random(m) < 0.5
        for sel in ("fixed", "split", "bonferroni"):
            hits[sel] += (
                audit_scores(scores, inc, delta=0.0, selection=sel, seed=t).epsilon_lower_bound > 0
            )
        best_p = min(
            p_value(m, *count_correct(guess(scores, a, b), inc), 0.0, 0.0) for a, b in grid
        )
        hits["post hoc"] += best_p < 0.05
    assert hits["post hoc"] / trials > 0.2, hits
    for sel in ("fixed", "split", "bonferroni"):
        assert hits[sel] / trials <= 0.08, (sel, hits)


def test_selection_says_which_and_uses_its_canaries():
    rng = np.random.default_rng(0)
    inc = rng.random(400) < 0.5
    scores = inc * 2.0 + rng.normal(size=400)
    fixed = audit_scores(scores, inc, delta=1e-5)
    assert (fixed.k_in, fixed.k_out, fixed.guesses) == (100, 100, 200)
    assert "fixed before the scores were seen" in fixed.note
    split = audit_scores(scores, inc, delta=1e-5, selection="split", seed=3)
    assert split.canaries == 200 and "chosen on 200 random canaries" in split.note
    bonf = audit_scores(scores, inc, delta=1e-5, selection="bonferroni")
    assert bonf.effective_confidence == pytest.approx(1 - 0.05 / len(candidate_counts(400)))
    assert "Bonferroni" in bonf.note
    for a in (fixed, split, bonf):
        assert 0 < a.epsilon_lower_bound <= a.ceiling_at_guesses <= a.ceiling + 1e-12
    with pytest.raises(UserError, match="only with the fixed selection"):
        audit_scores(scores, inc, delta=1e-5, selection="split", k_in=3)


def test_few_canaries_still_get_guesses_and_no_guesses_is_refused():
    """m // 4 is 0 for 2 or 3 canaries: the default makes one guess each way, never zero
    guesses (which would report ε̂ = 0 for any model); zero guesses asked for is an error."""
    scores, inc = np.array([2.0, -1.0, 0.5]), np.array([True, False, True])
    a = audit_scores(scores, inc, delta=0.0)
    assert (a.k_in, a.k_out, a.guesses, a.correct) == (1, 1, 2, 2)
    with pytest.raises(UserError, match="guess at least one"):
        audit_scores(scores, inc, delta=0.0, k_in=0, k_out=0)
    with pytest.raises(UserError, match="too few to split"):
        audit_scores(scores, inc, delta=0.0, selection="split")


def test_an_audit_that_can_only_report_zero_says_why():
    """At 95% and δ = 0 four right guesses cannot reject ε = 0 (½⁴ = 0.0625 ≥ 0.05) and five can
    (0.03125); at δ = 0.05 the 2·m·δ·α term swamps 1,000 right guesses. Such an audit printed a
    bare 0 (e.g. 8 canaries, k± = 2 each)."""
    from memlens.privacy.bound import ceiling_hint

    assert ceiling(1000, 0.0, r=4) == 0.0 and ceiling(1000, 0.0, r=5) > 0.0
    assert ceiling_hint(1000, 5, 0.0) is None and ceiling_hint(10, 10, 1e-5) is None
    assert "4 guesses cannot certify" in ceiling_hint(1000, 4, 0.0)
    assert "4 canaries are too few" in ceiling_hint(4, 4, 0.0)
    assert ceiling(1000, 0.05) == 0.0 and "use a smaller delta" in ceiling_hint(1000, 1000, 0.05)


def test_billions_of_guesses_keep_an_exact_p_value():
    """scipy's bdtrc casts counts to 32-bit integers: beyond 2^31 guesses β was NaN and the
    p-value silently 1 (ε̂ = 0); before that it drifted (P[Bin(1e9, ½) ≥ 5e8 + 1] came out 0.16).
    α summed an array of v terms (tens of GB at 1e10). Known answers: at ε = 0, P[Bin(r, ½) ≥
    r/2 + 1] = (1 − P[Bin = r/2]) / 2; far above the mean, α ≈ 1/(v − rq), so p ≈ 2mδ/(v − rq)."""
    r = 10**9
    pmf_mid = math.exp(-0.5 * math.log(math.pi * r / 2))  # P[Bin(r, 1/2) = r/2], Stirling
    assert p_value(r, r, r // 2 + 1, 0.0, 0.0) == pytest.approx((1 - pmf_mid) / 2, rel=1e-9)
    r, v = 10**10, 9 * 10**9
    q = 1 / (1 + math.exp(-2.0))
    assert p_value(r, r, v, 2.0, 1e-5) == pytest.approx(2 * r * 1e-5 / (v - r * q), rel=2e-3)
