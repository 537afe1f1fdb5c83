"""A lower bound on ε from one training run (Steinke, Nasr & Jagielski 2023, Appendix D).

The audit game (Steinke, Nasr & Jagielski, "Privacy Auditing with One (1) Training Run",
NeurIPS 2023, arXiv:2305.08846): ``m`` canaries are each included in the training data
independently with probability ½; the model is trained once; the auditor scores every canary
and guesses IN for the ``k₊`` highest scores, OUT for the ``k₋`` lowest and abstains on the rest:
``r = k₊ + k₋`` guesses of which ``v`` are correct. An (ε, δ)-DP training run makes each guess
no more accurate than randomized response, ``q = e^ε / (1 + e^ε)``; Appendix D turns this into a
p-value for "the run is (ε, δ)-DP" given ``v`` correct guesses:

    β = P[Bin(r, q) ≥ v]
    α = max_{1 ≤ i ≤ v} (1/i) · P[v > Bin(r, q) ≥ v − i]
    p = β + 2·m·δ·α                       (capped at 1)

and ε̂ is the largest ε whose p-value is below ``1 − confidence`` (found by bisection, as in the
paper's code): with 95% confidence the run is not (ε, δ)-DP for any ε < ε̂, so an accountant's
ε below ε̂ would be a bug. Check values (δ = 0, every guess right, 95%): 1.052 for 10 guesses,
3.493 for 100, 5.809 for 1,000; m = 1,000, 900 of 1,000 right, δ = 1e-5: 2.021.

The *ceiling* is the bound when every guess is right: what ``m`` canaries allow at this δ at
best (``r = v = m``), and what the guesses made allow (``r = v``). ε is in nats (the unit of
differential privacy), not bits.

Choosing k₊ and k₋ after seeing the scores inflates ε̂ (a p-value minimized over many choices
is no longer a p-value). :func:`audit_scores` offers three honest ways (the same three as
jax_privacy's ``CanaryScoreAuditor``): counts fixed in advance, counts chosen on a random split
of the canaries and applied to the other part, or the best choice over a fixed grid with a
Bonferroni-corrected confidence.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from memlens.errors import UserError

Selection = Literal["fixed", "split", "bonferroni"]

_BISECTION_TOL = 1e-10  # nats; the paper's code stops after 30 halvings of [0, 1+]


def _check_counts(m: int, r: int, v: int, delta: float) -> None:
    for name, x in (("canaries", m), ("guesses", r), ("correct guesses", v)):
        if int(x) != x:
            raise UserError(f"the number of {name} must be a whole number, got {x}.")
    if m < 1:
        raise UserError(f"the number of canaries must be at least 1, got {m}.")
    if not 0 <= v <= r <= m:
        raise UserError(
            f"need 0 <= correct <= guesses <= canaries, got {v} correct of {r} guesses with {m} canaries."
        )
    if not (0.0 <= delta < 1.0) or math.isnan(delta):
        raise UserError(f"delta must be at least 0 and below 1, got {delta}.")


def _check_confidence(confidence: float) -> None:
    if not (0.0 < confidence < 1.0):
        raise UserError(f"confidence must be strictly between 0 and 1, got {confidence}.")


def p_value(m: int, r: int, v: int, epsilon: float, delta: float) -> float:
    """Probability of ``v`` or more correct guesses out of ``r`` if the run is (ε, δ)-DP.

    Steinke, Nasr & Jagielski 2023, Appendix D (``p_value_DP_audit``):
    ``q = e^ε/(1+e^ε)``, ``β = P[Bin(r,q) ≥ v]``,
    ``α = max_{1≤i≤v} (1/i)·P[v > Bin(r,q) ≥ v−i]``, ``p = min(1, β + 2mδα)``.

    Parameters
    ----------
    m : int
        Canaries, each included independently with probability ½.
    r : int
        Guesses made (abstentions excluded).
    v : int
        Correct guesses.
    epsilon : float
        ε of the null hypothesis, in nats (≥ 0).
    delta : float
        δ of the null hypothesis.

    Returns
    -------
    float
        The p-value, in [0, 1].
    """
    from scipy.special import betainc, gammaln, log_expit

    if epsilon < 0:
        raise UserError(f"epsilon must be at least 0, got {epsilon}.")
    # q = e^ε/(1+e^ε) and 1 - q, in logs without overflow
    log_q, log_1mq = float(log_expit(epsilon)), float(log_expit(-epsilon))
    q = math.exp(log_q)
    # P[Bin(r, q) >= v] = I_q(v, r - v + 1), the regularized incomplete beta (what
    # scipy.stats.binom.sf computes; scipy.special.bdtrc casts counts to 32-bit integers, NaN
    # above 2^31 guesses, and drifts before: 0.84 for P[Bin(1e9, 1/2) >= 5e8])
    beta = 1.0 if v == 0 else float(betainc(v, r - v + 1, q))
    alpha = 0.0
    if delta > 0 and v > 0:
        # P[v > Bin(r, q) >= v - i] for i = 1..v: cumulative sums of pmf(v-1), pmf(v-2), ...
        # pmf(k) < e^-882 (0 in float64) for |k - rq| > 21 sqrt(r) (Hoeffding): such terms
        # add nothing, so only k within that band is summed (the same floats; millions of
        # canaries need no array of millions)
        band = 21.0 * math.sqrt(r)
        top = min(v - 1, int(math.ceil(r * q + band)))
        lowest = max(0, int(math.floor(r * q - band)))
        if top >= lowest:
            k = np.arange(top, lowest - 1, -1, dtype=np.float64)
            log_pmf = (
                gammaln(r + 1) - gammaln(k + 1) - gammaln(r - k + 1)
                + k * log_q + (r - k) * log_1mq
            )  # fmt: skip
            window = np.cumsum(np.exp(log_pmf))
            alpha = float(np.max(window / (v - k)))
    return min(1.0, beta + 2.0 * m * delta * alpha)


def epsilon_lower_bound(
    m: int, r: int, v: int, delta: float = 0.0, confidence: float = 0.95
) -> float:
    """ε̂: the largest ε for which "(ε, δ)-DP" is rejected at ``confidence`` by ``v`` of ``r``.

    Bisection on ε as in Steinke, Nasr & Jagielski 2023, Appendix D (``get_eps_audit``): keep
    ``p(ε_lo) < 1 − confidence ≤ p(ε_hi)``, widening ``ε_hi`` by 1 until it holds, then halve
    the interval (to 1e-10 nats here, 30 halvings in the paper's code). Returns 0 when even ε = 0
    cannot be rejected.

    Parameters
    ----------
    m, r, v : int
        Canaries, guesses made, correct guesses (``0 ≤ v ≤ r ≤ m``).
    delta : float
        δ of the DP claim being tested (``0 ≤ δ < 1``).
    confidence : float
        Confidence of the bound (0.95 in the paper).

    Returns
    -------
    float
        ε̂ in nats.

    Examples
    --------
    >>> round(epsilon_lower_bound(10, 10, 10), 3)
    1.052
    >>> round(epsilon_lower_bound(1000, 1000, 900, delta=1e-5), 3)
    2.021
    """
    _check_counts(m, r, v, delta)
    _check_confidence(confidence)
    level = 1.0 - confidence
    if r == 0 or p_value(m, r, v, 0.0, delta) >= level:
        return 0.0
    lo, hi = 0.0, 1.0
    while p_value(m, r, v, hi, delta) < level:
        lo, hi = hi, hi + 1.0
        if hi > 1e4:  # cannot happen for r >= 1 (p -> 1 as ε grows); a guard, not a result
            return float("inf")
    while hi - lo > _BISECTION_TOL:
        mid = 0.5 * (lo + hi)
        if p_value(m, r, v, mid, delta) < level:
            lo = mid
        else:
            hi = mid
    return lo


def ceiling(m: int, delta: float = 0.0, confidence: float = 0.95, r: int | None = None) -> float:
    """The best ε̂ possible: every guess right (``v = r``), with ``r = m`` unless given.

    With ``m`` canaries no audit can certify more than this at this δ and confidence, whatever
    the model leaks; a ε̂ at the ceiling means "at least this much, possibly far more".
    """
    r = m if r is None else r
    return epsilon_lower_bound(m, r, r, delta, confidence)


def ceiling_hint(m: int, r: int, delta: float = 0.0, confidence: float = 0.95) -> str | None:
    """Why ``r`` guesses among ``m`` canaries cannot certify any ε > 0, in one sentence, or
    ``None`` when they can (every guess right would give ε̂ > 0).

    An audit whose ceiling is 0 reports ε̂ = 0 for any model, so saying so beats a bare 0: at
    95% and δ = 0 at least 5 guesses are needed (½⁵ < 0.05), and a large δ makes
    ``2·m·δ·α`` swamp the p-value however many guesses are right.
    """
    if r > 0 and ceiling(m, delta, confidence, r=r) > 0:
        return None
    if ceiling(m, delta, confidence) > 0:
        return (
            f"{r} guesses cannot certify any epsilon above 0 even if all are right; "
            "guess IN or OUT for more canaries."
        )
    if ceiling(m, 0.0, confidence) > 0:
        return (
            f"with {m} canaries at delta {delta:g} no audit can certify any epsilon above 0, "
            "even with every canary guessed right; use a smaller delta."
        )
    return (
        f"{m} canaries are too few to certify any epsilon above 0 at {confidence * 100:.10g}% "
        "confidence, even with every canary guessed right; use more canaries."
    )


@dataclass
class OneRunBound:
    """ε̂ for counts of guesses, with the ceilings (all in nats).

    Attributes
    ----------
    epsilon_lower_bound : ε̂ at ``confidence``.
    ceiling : ε̂ if all ``m`` canaries were guessed and every guess were right.
    ceiling_at_guesses : ε̂ if each of the ``guesses`` made were right.
    canaries, guesses, correct, delta, confidence : the inputs.
    """

    epsilon_lower_bound: float
    ceiling: float
    ceiling_at_guesses: float
    canaries: int
    guesses: int
    correct: int
    delta: float
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def one_run_bound(
    canaries: int, guesses: int, correct: int, delta: float = 0.0, confidence: float = 0.95
) -> OneRunBound:
    """ε̂ and the ceilings for counts obtained elsewhere (``memlens dp-audit bound``)."""
    if canaries < 2:
        raise UserError(f"an audit needs at least 2 canaries, got {canaries}.")
    _check_counts(canaries, guesses, correct, delta)
    _check_confidence(confidence)
    if guesses == 0:
        raise UserError(
            "with no guesses the bound is 0 for any model; give the counts of an audit that "
            "guessed at least one canary."
        )
    return OneRunBound(
        epsilon_lower_bound=epsilon_lower_bound(canaries, guesses, correct, delta, confidence),
        ceiling=ceiling(canaries, delta, confidence),
        ceiling_at_guesses=ceiling(canaries, delta, confidence, r=guesses),
        canaries=int(canaries),
        guesses=int(guesses),
        correct=int(correct),
        delta=float(delta),
        confidence=float(confidence),
    )


# -- guessing from scores ------------------------------------------------------------------------


def guess(scores: np.ndarray, k_in: int, k_out: int) -> np.ndarray:
    """Guesses from scores: +1 (IN) for the ``k_in`` highest, −1 (OUT) for the ``k_out`` lowest,
    0 (abstain) for the rest. Ties are broken by position (stable sort), never by the labels."""
    s = np.asarray(scores, dtype=np.float64)
    n = len(s)
    if k_in < 0 or k_out < 0 or k_in + k_out > n:
        raise UserError(
            f"cannot guess IN for {k_in} and OUT for {k_out} of {n} canaries (need k_in + k_out <= {n})."
        )
    if np.isnan(s).any():
        raise UserError("some canary scores are NaN; the model produced no usable loss for them.")
    order = np.argsort(-s, kind="stable")  # highest first
    g = np.zeros(n, dtype=np.int8)
    g[order[:k_in]] = 1
    if k_out:
        g[order[n - k_out :]] = -1
    return g


def count_correct(guesses: np.ndarray, included: np.ndarray) -> tuple[int, int]:
    """``(r, v)``: guesses made and correct guesses against the inclusion labels."""
    g = np.asarray(guesses)
    inc = np.asarray(included, dtype=bool)
    made = g != 0
    right = (g == 1) & inc | (g == -1) & ~inc
    return int(made.sum()), int(right.sum())


DEFAULT_GRID_FRACTIONS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)


def candidate_counts(
    m: int, fractions: tuple[float, ...] = DEFAULT_GRID_FRACTIONS
) -> list[tuple[int, int]]:
    """The grid of ``(k₊, k₋)`` searched by the ``split`` and ``bonferroni`` selections: each of
    k₊, k₋ a fraction of ``m`` from ``fractions`` (rounded, deduplicated), at least one guess,
    at most ``m`` guesses. Fixed before any score is seen."""
    ks = sorted({int(round(f * m)) for f in fractions})
    return [(a, b) for a in ks for b in ks if 0 < a + b <= m]


@dataclass
class CanaryAudit:
    """The one-run audit of scored canaries (ε in nats).

    Attributes
    ----------
    selection : how k₊, k₋ were chosen: ``fixed`` (in advance), ``split`` (on a random part of
        the canaries, bound from the rest) or ``bonferroni`` (best over a fixed grid, confidence
        corrected for the grid's size).
    epsilon_lower_bound : ε̂.
    k_in, k_out : guesses IN and OUT (on the bound's canaries).
    guesses, correct : r and v.
    canaries : m of the bound (the held-out part under ``split``).
    confidence : the confidence the bound holds at (the user's; the per-test level under
        Bonferroni is ``effective_confidence``).
    ceiling, ceiling_at_guesses : see :class:`OneRunBound`.
    note : one sentence saying how k₊, k₋ were chosen.
    """

    selection: str
    epsilon_lower_bound: float
    k_in: int
    k_out: int
    guesses: int
    correct: int
    canaries: int
    delta: float
    confidence: float
    effective_confidence: float
    ceiling: float
    ceiling_at_guesses: float
    note: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_guess_counts(m: int) -> tuple[int, int]:
    """k₊, k₋ of the ``fixed`` selection when none are given: a quarter of the ``m`` canaries
    each, and at least one guess each (so that 2 or 3 canaries still get guesses)."""
    k = max(1, int(m) // 4)
    return k, k


def check_guess_counts(m: int, k_in: int, k_out: int) -> None:
    """Raise :class:`UserError` unless ``k_in``, ``k_out`` make at least one and at most ``m``
    guesses (an audit without guesses would report ε̂ = 0 for any model)."""
    if k_in < 0 or k_out < 0:
        raise UserError(f"guess counts must be 0 or more, got k_in = {k_in}, k_out = {k_out}.")
    if k_in + k_out == 0:
        raise UserError(
            "with no guesses IN and none OUT the audit can only report 0; guess at least one."
        )
    if k_in + k_out > m:
        raise UserError(f"`k_in` + `k_out` = {k_in + k_out} guesses exceed the {m} canaries.")


def split_sizes(m: int, split_fraction: float = 0.5) -> tuple[int, int]:
    """Canaries that choose k₊, k₋ and canaries the bound is computed from under ``split``;
    raises :class:`UserError` unless each part has at least 2 (so ``m`` ≥ 4 at one half)."""
    if not 0.0 < split_fraction < 1.0:
        raise UserError(f"the split fraction must be between 0 and 1, got {split_fraction}.")
    n_sel = int(round(split_fraction * m))
    if n_sel < 2 or m - n_sel < 2:
        raise UserError(
            f"{m} canaries are too few to split into a selection part and an audit part of 2 or "
            "more each; use at least 4 canaries or the fixed selection."
        )
    return n_sel, m - n_sel


def _best_on_grid(
    scores: np.ndarray, included: np.ndarray, delta: float, confidence: float, m: int
) -> tuple[float, int, int, int, int]:
    best = (-1.0, 0, 0, 0, 0)
    for k_in, k_out in candidate_counts(len(scores)):
        r, v = count_correct(guess(scores, k_in, k_out), included)
        if r == 0 or v <= r / 2:  # cannot reject ε = 0 (q = ½); skip the bisection
            eps = 0.0
        else:
            eps = epsilon_lower_bound(m, r, v, delta, confidence)
        if eps > best[0]:
            best = (eps, k_in, k_out, r, v)
    return best


def audit_scores(
    scores: np.ndarray,
    included: np.ndarray,
    *,
    delta: float,
    confidence: float = 0.95,
    selection: Selection = "fixed",
    k_in: int | None = None,
    k_out: int | None = None,
    split_fraction: float = 0.5,
    seed: int = 0,
) -> CanaryAudit:
    """ε̂ from canary scores (higher = more likely IN) and the true inclusion labels.

    Parameters
    ----------
    scores : [m] float
        Membership scores (e.g. minus the loss in bits per token).
    included : [m] bool
        Whether each canary was in the training data.
    delta, confidence : the DP claim's δ and the bound's confidence.
    selection : ``fixed``, ``split`` or ``bonferroni`` (see :class:`CanaryAudit`).
    k_in, k_out : guesses IN and OUT for ``fixed`` (default: a quarter of the canaries each,
        at least 1; at least one guess in all).
    split_fraction : share of canaries used to choose k₊, k₋ under ``split``.
    seed : seeds the split.

    Returns
    -------
    CanaryAudit
    """
    s = np.asarray(scores, dtype=np.float64)
    inc = np.asarray(included, dtype=bool)
    m = len(s)
    if m < 2:
        raise UserError(f"an audit needs at least 2 canaries, got {m}.")
    if len(inc) != m:
        raise UserError(f"got {m} scores but {len(inc)} inclusion labels.")
    _check_counts(m, 0, 0, delta)
    _check_confidence(confidence)
    if selection == "fixed":
        k_in = default_guess_counts(m)[0] if k_in is None else int(k_in)
        k_out = default_guess_counts(m)[1] if k_out is None else int(k_out)
        check_guess_counts(m, k_in, k_out)
        r, v = count_correct(guess(s, k_in, k_out), inc)
        eps = epsilon_lower_bound(m, r, v, delta, confidence)
        return CanaryAudit(
            selection="fixed",
            epsilon_lower_bound=eps,
            k_in=k_in,
            k_out=k_out,
            guesses=r,
            correct=v,
            canaries=m,
            delta=delta,
            confidence=confidence,
            effective_confidence=confidence,
            ceiling=ceiling(m, delta, confidence),
            ceiling_at_guesses=ceiling(m, delta, confidence, r=r),
            note=f"k+ = {k_in}, k- = {k_out} fixed before the scores were seen",
        )
    if k_in is not None or k_out is not None:
        raise UserError(
            f"guess counts are chosen by the {selection} selection; give them only with the fixed selection."
        )
    if selection == "bonferroni":
        grid = candidate_counts(m)
        eff = 1.0 - (1.0 - confidence) / len(grid)
        eps, a, b, r, v = _best_on_grid(s, inc, delta, eff, m)
        return CanaryAudit(
            selection="bonferroni",
            epsilon_lower_bound=max(eps, 0.0),
            k_in=a,
            k_out=b,
            guesses=r,
            correct=v,
            canaries=m,
            delta=delta,
            confidence=confidence,
            effective_confidence=eff,
            ceiling=ceiling(m, delta, eff),
            ceiling_at_guesses=ceiling(m, delta, eff, r=r),
            note=(
                f"best k+ = {a}, k- = {b} of {len(grid)} fixed choices, each tested at "
                f"{eff:.5f} confidence (Bonferroni)"
            ),
            details={"grid_size": len(grid)},
        )
    if selection == "split":
        n_sel, _ = split_sizes(m, split_fraction)
        perm = np.random.default_rng(seed).permutation(m)
        sel, rest = perm[:n_sel], perm[n_sel:]
        _, a, b, _, _ = _best_on_grid(s[sel], inc[sel], delta, confidence, len(sel))
        # apply the chosen counts as fractions of the audited part
        m2 = len(rest)
        a2 = int(round(a * m2 / len(sel)))
        b2 = min(int(round(b * m2 / len(sel))), m2 - a2)
        if a2 + b2 == 0:
            a2 = 1
        r, v = count_correct(guess(s[rest], a2, b2), inc[rest])
        return CanaryAudit(
            selection="split",
            epsilon_lower_bound=epsilon_lower_bound(m2, r, v, delta, confidence),
            k_in=a2,
            k_out=b2,
            guesses=r,
            correct=v,
            canaries=m2,
            delta=delta,
            confidence=confidence,
            effective_confidence=confidence,
            ceiling=ceiling(m2, delta, confidence),
            ceiling_at_guesses=ceiling(m2, delta, confidence, r=r),
            note=(
                f"k+ = {a2}, k- = {b2} chosen on {n_sel} random canaries, bound from the other {m2}"
            ),
            details={"selection_canaries": n_sel, "selection_k_in": a, "selection_k_out": b},
        )
    raise UserError(f"unknown selection '{selection}'; use fixed, split or bonferroni.")
