"""Known-answer tests for memlens.mia.metrics (AUC, TPR at FPR <= alpha, F1, NaN policy)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from helpers_mia import HAND_MEMBERS, HAND_NONMEMBERS
from memlens.errors import UserError
from memlens.mia.metrics import (
    auc_bootstrap_ci,
    best_threshold,
    evaluate,
    evaluate_attacks,
    parse_labels,
    roc_auc,
    step_roc,
    tpr_at_fpr,
)


def pairwise_auc(scores, labels) -> float:
    """The definition: P[s(member) > s(non-member)] + 1/2 P[tie], by brute force over pairs."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y == 1]
    neg = [s for s, y in zip(scores, labels, strict=True) if y == 0]
    wins = sum((p > n) + 0.5 * (p == n) for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def hand_case():
    scores = np.array(HAND_MEMBERS + HAND_NONMEMBERS)
    labels = np.array([1] * 10 + [0] * 10)
    return scores, labels


def test_hand_case_le_rule_allows_one_false_positive():
    s, y = hand_case()
    r = tpr_at_fpr(s, y, 0.1)
    assert r == {"tpr": 1.0, "fpr": 0.1, "threshold": 0.35, "tp": 10}
    # Just below 0.1 no false positive is allowed: only the 4 members above 0.70 are flagged.
    r = tpr_at_fpr(s, y, 0.099)
    assert r == {"tpr": 0.4, "fpr": 0.0, "threshold": 0.80, "tp": 4}
    # AUC by hand: 6 members each lose to the non-member at 0.70, 94 of 100 pairs won.
    assert roc_auc(s, y) == pytest.approx(0.94, abs=1e-15)


def test_tpr_ties_cross_together():
    # A member and a non-member tied at 0.5: a threshold at 0.5 flags both, so with zero
    # false positives allowed only the member at 0.9 counts (no interpolation inside the tie).
    s = np.array([0.9, 0.5, 0.5, 0.1])
    y = np.array([1, 1, 0, 0])
    assert tpr_at_fpr(s, y, 0.4)["tpr"] == 0.5
    assert tpr_at_fpr(s, y, 0.5)["tpr"] == 1.0  # one false positive of 2 allowed
    assert roc_auc(s, y) == pytest.approx((1 + 1 + 0.5 + 1) / 4)


def test_floor_is_robust_to_float_rounding():
    # 0.29 * 100 = 28.999999999999996 in floating point; 29 false positives must be allowed.
    assert 0.29 * 100 < 29
    y = np.r_[np.ones(1), np.zeros(100)].astype(int)
    # One member placed just under the 29th-highest of 100 evenly spaced non-members.
    s = np.r_[1.0 + 70.5 / 99, np.linspace(1, 2, 100)]
    r = tpr_at_fpr(s, y, 0.29)
    assert r["tpr"] == 1.0 and r["fpr"] == pytest.approx(0.29)
    assert tpr_at_fpr(s, y, 0.28)["tpr"] == 0.0


def test_auc_matches_sklearn_and_definition_with_ties():
    rng = np.random.default_rng(7)
    for trial in range(20):
        n = int(rng.integers(5, 300))
        s = rng.integers(0, 6, size=n).astype(float)  # heavy ties
        y = rng.integers(0, 2, size=n)
        if y.min() == y.max():
            y[0] = 1 - y[0]
        assert roc_auc(s, y) == roc_auc_score(y, s)  # exactly the same number
        if trial < 5:
            assert roc_auc(s, y) == pytest.approx(pairwise_auc(s, y), abs=1e-12)


def test_step_roc_equals_sklearn_without_dropping_points():
    rng = np.random.default_rng(3)
    s = rng.normal(size=200).round(1)
    y = rng.integers(0, 2, size=200)
    r = step_roc(s, y)
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_array_equal(r["fpr"], fpr)
    np.testing.assert_array_equal(r["tpr"], tpr)
    np.testing.assert_array_equal(r["threshold"][1:], thr[1:])


def test_score_direction_and_label_direction():
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(50), np.zeros(50)].astype(int)
    s = rng.normal(size=100) + 1.5 * y  # members score higher
    auc = roc_auc(s, y)
    assert auc > 0.8
    assert roc_auc(-s, y) == pytest.approx(1 - auc, abs=1e-12)  # reversed score
    assert roc_auc(s, 1 - y) == pytest.approx(1 - auc, abs=1e-12)  # reversed positive class
    # Strings map with the member class positive; the reversed benchmark trap cannot happen silently.
    np.testing.assert_array_equal(
        parse_labels(["member", "nonmember", 1, 0, True, "0"]), [1, 0, 1, 0, 1, 0]
    )
    with pytest.raises(UserError, match="not a membership label"):
        parse_labels([1, 2])


def test_bootstrap_ci_known_cases():
    # Perfect separation: every stratified resample keeps AUC = 1.
    assert auc_bootstrap_ci([3, 4, 1, 2], [1, 1, 0, 0], n_boot=200) == (1.0, 1.0)
    # Large sample: the bootstrap standard error matches Hanley & McNeil (1982) within 15%.
    rng = np.random.default_rng(1)
    n = 400
    y = np.r_[np.ones(n), np.zeros(n)].astype(int)
    s = rng.normal(size=2 * n) + 1.0 * y
    a = roc_auc(s, y)
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    se_hm = np.sqrt((a * (1 - a) + (n - 1) * (q1 - a * a) + (n - 1) * (q2 - a * a)) / (n * n))
    lo, hi = auc_bootstrap_ci(s, y, n_boot=1000, level=0.95, seed=0)
    assert lo < a < hi
    assert (hi - lo) / (2 * 1.96) == pytest.approx(se_hm, rel=0.15)
    assert auc_bootstrap_ci(s, y, n_boot=300, seed=5) == auc_bootstrap_ci(s, y, n_boot=300, seed=5)


def test_best_threshold_f1_and_balanced_accuracy_by_hand():
    s, y = hand_case()
    r = best_threshold(s, y)
    # Threshold 0.35: TP 10, FP 1, FN 0 -> TPR 1, TNR 0.9, balanced accuracy 0.95,
    # F1 = 2*10 / (2*10 + 1 + 0) = 20/21, precision 10/11.
    assert r["threshold"] == 0.35
    assert r["balanced_accuracy"] == pytest.approx(0.95)
    assert r["f1"] == pytest.approx(20 / 21)
    assert r["precision"] == pytest.approx(10 / 11)
    assert r["recall"] == 1.0
    # Chance level of f1_max: predicting everyone a member gives 2*n1/(2*n1+n0) = 2/3.
    y2 = np.r_[np.ones(10), np.zeros(10)].astype(int)
    r2 = best_threshold(np.r_[np.zeros(10), np.ones(10)], y2)  # members all below non-members
    assert r2["f1_max"] == pytest.approx(2 / 3)
    assert r2["balanced_accuracy"] == 0.5


def test_evaluate_reports_counts_and_low_fpr_warning():
    s, y = hand_case()
    r = evaluate(s, y, fprs=[0.001, 0.1], n_boot=100)
    assert r.n_members == 10 and r.n_nonmembers == 10
    assert r.tpr_at_fpr == {"0.001": 0.4, "0.1": 1.0}
    assert r.threshold_at_fpr["0.1"] == 0.35
    # the evaluation carries the hand values of the functions it combines (see above)
    assert r.auc == pytest.approx(0.94, abs=1e-15)
    assert r.fpr_reached == {"0.001": 0.0, "0.1": 0.1}
    assert (r.threshold, r.f1, r.recall) == (0.35, pytest.approx(20 / 21), 1.0)
    assert r.balanced_accuracy == pytest.approx(0.95)
    # TPR intervals are Clopper-Pearson on the counted members: 4 of 10 and 10 of 10
    assert r.tpr_ci["0.1"][1] == 1.0 and r.tpr_ci["0.1"][0] == pytest.approx(0.025**0.1)
    assert len(r.warnings) == 2  # 10 * 0.001 and 10 * 0.1 are both < 10
    assert "n_nonmembers * alpha = 0.01 < 10" in r.warnings[0]
    big = evaluate(np.r_[s, np.zeros(90)], np.r_[y, np.zeros(90, int)], fprs=[0.1], n_boot=10)
    assert big.warnings == []  # 100 * 0.1 = 10: no warning


def test_nan_policy_excludes_from_all_attacks_and_reports():
    s, y = hand_case()
    short = s.copy()
    short[[2, 15]] = np.nan  # e.g. texts too short for min-k
    r = evaluate_attacks(
        {"loss": s, "min_k": short}, y, ids=[f"s{i}" for i in range(20)], n_boot=50
    )
    assert r.n_samples == 20 and r.n_evaluated == 18
    assert [u["id"] for u in r.unscored] == ["s2", "s15"]
    assert r.unscored[0] == {"id": "s2", "label": 1, "attacks": ["min_k"]}
    # Both attacks are evaluated on the same 18 samples.
    for name in ("loss", "min_k"):
        assert r.attacks[name].n_members == 9 and r.attacks[name].n_nonmembers == 9
    assert r.attacks["loss"].auc == r.attacks["min_k"].auc
    assert "excluded from all attacks" in r.warnings[0]
    with pytest.raises(UserError, match="could not be scored"):
        evaluate_attacks({"loss": s, "min_k": short}, y, nan_policy="error")


def test_bad_inputs_are_user_errors():
    with pytest.raises(UserError, match="both members and non-members"):
        roc_auc([0.1, 0.2], [1, 1])
    with pytest.raises(UserError, match="match one to one"):
        roc_auc([0.1, 0.2, 0.3], [1, 0])
    with pytest.raises(UserError, match="FPR level must be at least 0 and below 1"):
        evaluate([1, 0], [1, 0], fprs=[1.5])


def test_tpr_at_zero_fpr_is_the_members_above_every_nonmember():
    # members 0.9, 0.8, 0.4; non-members 0.7, 0.3: two members beat the best non-member
    s = [0.9, 0.8, 0.4, 0.7, 0.3]
    y = [1, 1, 1, 0, 0]
    assert tpr_at_fpr(s, y, 0.0) == {"tpr": 2 / 3, "fpr": 0.0, "threshold": 0.8, "tp": 2}
    r = evaluate(s, y, fprs=[0.0, 0.0001], n_boot=10)
    assert r.tpr_at_fpr == {"0.0": 2 / 3, "0.0001": 2 / 3}
    assert not any("0.0 " in w or "<= 0 " in w for w in r.warnings)  # no noise warning at 0


def test_clopper_pearson_known_values():
    from memlens.mia.metrics import clopper_pearson

    # k = 0 of n: upper end 1 - (alpha/2)^(1/n) (closed form of the beta quantile)
    lo, hi = clopper_pearson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(1 - 0.025 ** (1 / 10), rel=1e-12)
    lo, hi = clopper_pearson(10, 10)
    assert hi == 1.0 and lo == pytest.approx(0.025 ** (1 / 10), rel=1e-12)
    # the textbook 5 of 10: (0.187086, 0.812914)
    lo, hi = clopper_pearson(5, 10)
    assert (lo, hi) == (pytest.approx(0.187086, abs=1e-6), pytest.approx(0.812914, abs=1e-6))
    r = evaluate([0.9, 0.8, 0.4, 0.7, 0.3], [1, 1, 1, 0, 0], fprs=[0.0], n_boot=10)
    assert r.tpr_ci["0.0"] == list(clopper_pearson(2, 3))
    with pytest.raises(UserError, match="0 <= k <= n"):
        clopper_pearson(4, 3)


def test_constant_attack_is_named_in_a_warning():
    """An attack that scores every sample alike ('lowercase' on lowercase texts) has AUC 0.5 by
    construction; the evaluation says which attack and why instead of a silent 0.5."""
    y = np.array([1, 1, 1, 0, 0, 0])
    r = evaluate_attacks(
        {"loss": np.array([3.0, 2.0, 1.5, 1.0, 0.5, 0.0]), "lowercase": np.ones(6)},
        y,
        fprs=[0.5],
        n_boot=10,
    )
    assert r.attacks["lowercase"].auc == 0.5 and r.attacks["loss"].auc == 1.0
    (w,) = r.warnings
    assert w.startswith("attack 'lowercase' gave every sample the same score (1)")
