"""Known answers for the shadow-model math: design, signals, LiRA, RMIA, counterfactual."""

from __future__ import annotations

import math

import numpy as np
import pytest

from memlens.errors import UserError
from memlens.scoring import TokenScores
from memlens.shadow.attacks import (
    calibrate_offline_a,
    fit_gaussians,
    fit_online_a,
    gaussian_logpdf,
    lira_offline,
    lira_online,
    rmia,
)
from memlens.shadow.counterfactual import counterfactual
from memlens.shadow.design import (
    balanced_keep,
    copy_groups,
    first_copies,
    is_balanced,
    partner,
    references_for,
    text_keep,
    text_membership,
)
from memlens.shadow.signals import logit_bits, signals_from_scores

# -- design ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("K,n", [(2, 2), (4, 7), (16, 101), (8, 1000)])
def test_keep_matrix_is_balanced_both_ways(K, n):
    keep = balanced_keep(K, n, seed=3)
    assert keep.shape == (K, n) and keep.dtype == bool
    assert np.all(keep.sum(axis=0) == K // 2) and is_balanced(keep)
    sizes = keep.sum(axis=1)
    assert sizes.min() >= n // 2 and sizes.max() <= n // 2 + 1
    for k in range(K):  # partners split the pool
        assert np.all(keep[k] ^ keep[partner(k)])


def test_keep_matrix_is_deterministic_in_the_seed():
    assert np.array_equal(balanced_keep(8, 50, seed=1), balanced_keep(8, 50, seed=1))
    assert not np.array_equal(balanced_keep(8, 50, seed=1), balanced_keep(8, 50, seed=2))


def test_leave_one_model_out_references_hide_the_target_membership():
    K, n = 8, 40
    keep = balanced_keep(K, n, seed=0)
    for t in range(K):
        refs = references_for(t, K)
        assert t not in refs and partner(t) not in refs and len(refs) == K - 2
        # K/2 - 1 IN references for members and for non-members alike
        assert np.all(keep[refs].sum(axis=0) == K // 2 - 1)


def test_text_membership_counts_any_copy_of_a_text():
    # 4 models (pairs 0/1, 2/3), 5 examples: 0, 2 and 4 are copies of one text, 1 and 3 unique
    keep = np.array(
        [[1, 0, 0, 1, 0], [0, 1, 1, 0, 1], [0, 1, 0, 0, 0], [1, 0, 1, 1, 1]], dtype=bool
    )
    tokens = np.array([[5, 6, 7], [5, 6, 0], [5, 6, 7], [5, 6, 8], [5, 6, 7]])
    groups = copy_groups(tokens, np.array([3, 2, 3, 3, 3]))
    assert groups.tolist() == [0, 1, 0, 2, 0]  # [5, 6] alone is another text than [5, 6, 7]
    # by hand: models 0, 1 and 3 saw a copy of the text, model 2 none
    expect = np.array(
        [[1, 0, 1, 1, 1], [1, 1, 1, 0, 1], [0, 1, 0, 0, 0], [1, 0, 1, 1, 1]], dtype=bool
    )
    assert text_membership(keep, groups).tolist() == expect.tolist()
    assert text_membership(keep, np.arange(5)).tolist() == keep.tolist()  # no copies: keep
    with pytest.raises(UserError, match="one group id per example"):
        text_membership(keep, np.arange(4))


def test_split_by_text_keeps_the_copies_of_a_text_together():
    # 9 examples, 5 texts: text 0 three times, text 2 twice
    groups = np.array([0, 1, 0, 2, 3, 2, 0, 4, 5]) % 5
    K = 8
    keep = text_keep(K, groups, seed=4)
    assert keep.shape == (K, 9) and np.all(keep.sum(axis=0) == K // 2)
    for g in range(5):  # every copy carries its text's column ...
        cols = np.flatnonzero(groups == g)
        assert all(np.array_equal(keep[:, cols[0]], keep[:, c]) for c in cols)
    # ... and the texts are split as balanced_keep splits 5 examples, with the same seed
    assert np.array_equal(keep[:, first_copies(groups)], balanced_keep(K, 5, seed=4))
    for k in range(K):  # partners split the texts; a model's size counts the copies it drew
        assert np.all(keep[k] ^ keep[partner(k)])
        assert keep[k].sum() == sum(int((groups == g).sum()) for g in set(groups[keep[k]]))
    assert first_copies(groups).tolist() == [0, 1, 3, 4, 7]
    # no copies: the same matrix as per-copy splitting
    assert np.array_equal(text_keep(K, np.arange(6), seed=1), balanced_keep(K, 6, seed=1))
    with pytest.raises(UserError, match="at least 2 distinct texts"):
        text_keep(4, np.zeros(5, dtype=int))


@pytest.mark.parametrize("K,n", [(3, 10), (0, 10), (4, 1)])
def test_bad_designs_are_one_sentence(K, n):
    with pytest.raises(UserError):
        balanced_keep(K, n)


# -- signals ---------------------------------------------------------------------------------------


def test_logit_bits_closed_form():
    # p = 1/2: logit 0; p = 1/4: -2 - log2(3/4); tiny p: the log-likelihood itself
    out = logit_bits(np.array([-1.0, -2.0, -300.0]))
    assert out[0] == pytest.approx(0.0, abs=1e-15)
    assert out[1] == pytest.approx(-2.0 - math.log2(0.75), rel=1e-14)
    assert out[2] == -300.0
    # p near 1: log2 p - log2(1 - p) with 1 - p = 1e-10
    lp = math.log2(1 - 1e-10)
    assert logit_bits(np.array([lp]))[0] == pytest.approx(lp - math.log2(1e-10), rel=1e-6)
    assert np.isfinite(logit_bits(np.array([0.0]))[0])


def test_signals_from_a_hand_scoring_pass():
    log2p = np.array([[[-1.0, -2.0, np.nan], [-0.5, -0.5, -1.0]]])  # [K=1, N=2, T-1=3]
    mask = np.array([[[True, True, False], [True, True, True]]])
    am = np.array([[[True, False, False], [True, True, False]]])
    sig = signals_from_scores(TokenScores(log2p=log2p, mask=mask, is_argmax=am))
    assert sig.loglik_bits.tolist() == [[-3.0, -2.0]]
    assert sig.mean_log2p.tolist() == [[-1.5, -2.0 / 3.0]]
    assert sig.accuracy.tolist() == [[0.5, 2.0 / 3.0]]
    assert sig.n_tokens.tolist() == [2, 3]


# -- LiRA ------------------------------------------------------------------------------------------


def _normal_logpdf(x, mu, sd):
    return -0.5 * np.log(2 * math.pi * sd * sd) - (x - mu) ** 2 / (2 * sd * sd)


def test_lira_online_hand_computation():
    # one example, IN references 1, 3 (mean 2, sd sqrt(2)), OUT references 0, 0, 3 (mean 1, sd sqrt(3))
    phi = np.array([[1.0], [3.0], [0.0], [0.0], [3.0]])
    inn = np.array([[1], [1], [0], [0], [0]], dtype=bool)
    got = lira_online(np.array([2.5]), phi, inn)[0]
    want = _normal_logpdf(2.5, 2.0, math.sqrt(2.0)) - _normal_logpdf(2.5, 1.0, math.sqrt(3.0))
    assert got == pytest.approx(want, rel=1e-13)
    # median centre (public code): OUT median 0, spread still around the mean
    got = lira_online(np.array([2.5]), phi, inn, center="median")[0]
    want = _normal_logpdf(2.5, 2.0, math.sqrt(2.0)) - _normal_logpdf(2.5, 0.0, math.sqrt(3.0))
    assert got == pytest.approx(want, rel=1e-13)
    # offline, the paper's one-sided test argument and the public code's density
    assert lira_offline(np.array([2.5]), phi, inn)[0] == pytest.approx(1.5 / math.sqrt(3.0))
    assert lira_offline(np.array([2.5]), phi, inn, test="density")[0] == pytest.approx(
        -_normal_logpdf(2.5, 1.0, math.sqrt(3.0))
    )


def test_lira_on_gaussian_signals_equals_the_closed_form_likelihood_ratio():
    """Shadow signals drawn from known Gaussians: LiRA converges to the exact log LR."""
    rng = np.random.default_rng(0)
    R = 40_000  # references per side
    mu_in = np.array([2.0, -5.0, 10.0])
    sd_in = np.array([1.0, 3.0, 0.5])
    mu_out = np.array([0.0, -8.0, 9.0])
    sd_out = np.array([1.5, 2.0, 0.5])
    phi = np.concatenate([rng.normal(mu_in, sd_in, (R, 3)), rng.normal(mu_out, sd_out, (R, 3))])
    inn = np.r_[np.ones(R, bool), np.zeros(R, bool)][:, None].repeat(3, axis=1)
    target = np.array([1.0, -6.0, 9.7])
    exact = _normal_logpdf(target, mu_in, sd_in) - _normal_logpdf(target, mu_out, sd_out)
    assert lira_online(target, phi, inn) == pytest.approx(exact, abs=0.02)
    # offline: Phi((phi - mu_out) / sd_out) has argument (target - mu_out) / sd_out
    assert lira_offline(target, phi, inn) == pytest.approx((target - mu_out) / sd_out, abs=0.02)
    # gaussian_logpdf is the closed form
    assert gaussian_logpdf(target, mu_in, sd_in) == pytest.approx(
        _normal_logpdf(target, mu_in, sd_in), rel=1e-14
    )


def test_fixed_variance_pools_within_example_spread():
    # two examples with very different centres; within-example deviations +-1 everywhere
    phi = np.array([[0.0, 100.0], [2.0, 102.0], [5.0, -5.0], [7.0, -3.0]])
    inn = np.array([[1, 1], [1, 1], [0, 0], [0, 0]], dtype=bool)
    mu, sd = fit_gaussians(phi, inn, fixed_variance=True)
    # pooled: sum of squares 2 + 2 over dof 1 + 1 -> variance 2
    assert mu.tolist() == [1.0, 101.0] and sd == pytest.approx([math.sqrt(2.0)] * 2)
    # public code: the spread of all IN signals together (between-example spread included)
    _, sd_all = fit_gaussians(phi, inn, fixed_variance=True, global_variance="all")
    assert sd_all[0] == pytest.approx(np.std([0.0, 2.0, 100.0, 102.0]))


def test_per_example_variance_needs_two_references_a_side():
    phi = np.zeros((2, 3))
    inn = np.array([[1, 1, 1], [0, 0, 0]], dtype=bool)
    with pytest.raises(UserError, match="at least two reference models"):
        lira_online(np.zeros(3), phi, inn)


# -- RMIA ------------------------------------------------------------------------------------------


def _lp(p):
    return np.log2(np.asarray(p, dtype=np.float64))


# Target T and references A, B; A trained on x1, x2 and B on x3, x4; population z1, z2.
P_T = [0.8, 0.4, 0.5, 0.2]
P_A = [0.6, 0.5, 0.2, 0.4]
P_B = [0.2, 0.3, 0.6, 0.2]
Z_T = [0.3, 0.59]
Z_A = [0.3, 0.4]
Z_B = [0.5, 0.2]
IN_AB = np.array([[1, 1, 0, 0], [0, 0, 1, 1]], dtype=bool)


def _rmia(**kw):
    return rmia(_lp(P_T), _lp([P_A, P_B]), IN_AB, _lp(Z_T), _lp([Z_A, Z_B]), **kw)


def test_rmia_online_hand_computation():
    # P(x) = (P_IN + P_OUT)/2 = .4, .4, .4, .3; ratios P(x|T)/P(x) = 2, 1, 1.25, 2/3
    # P(z), the marginal over references half of which would have trained on z: z is OUT for
    # A and B, so P_IN(z) = a P_OUT(z) + (1 - a) with a fitted on x1..x4, where both sides are
    # seen: 1 - P_IN = .4 .5 .4 .8, 1 - P_OUT = .8 .7 .8 .6 -> a = 1.47 / 2.13
    a = 1.47 / 2.13
    assert fit_online_a(_lp([P_A, P_B]), IN_AB) == pytest.approx(a, rel=1e-12)
    # P_OUT(z) = .4, .3 -> P(z) = ((1 + a) P_OUT + 1 - a) / 2 = .49296, .40845;
    # ratios P(z|T)/P(z) = .60857, 1.44448
    # gamma 1: x1 beats both z; x2, x3 and x4 (2/3 >= .60857) beat z1 only
    assert _rmia(gamma=1.0).tolist() == [1.0, 0.5, 0.5, 0.5]
    # gamma 2: ratio_x / 2 = 1, .5, .625, .33 against z1's .60857: x1 and x3
    assert _rmia(gamma=2.0).tolist() == [0.5, 0.0, 0.5, 0.0]
    # online_pz="out": P(z) = mean over A, B = .4, .3 (all OUT); ratios .75, 1.9667
    # gamma 1: x1 beats both z; x2, x3 beat z1 only; x4 none
    assert _rmia(gamma=1.0, online_pz="out").tolist() == [1.0, 0.5, 0.5, 0.0]
    # gamma 2: need ratio_z <= ratio_x / 2 = 1, .5, .625, .33: only x1 with z1
    assert _rmia(gamma=2.0, online_pz="out").tolist() == [0.5, 0.0, 0.0, 0.0]


def test_rmia_gamma_threshold_sits_at_the_pairwise_ratio():
    # x1's LR with z1 is 2 / .75 = 8/3 (its LR with z2 is 1.017): gamma just below 8/3 counts
    # z1, just above does not (equality itself is lost to rounding in log space)
    assert _rmia(gamma=8 / 3 * (1 - 1e-9), online_pz="out").tolist()[0] == 0.5
    assert _rmia(gamma=8 / 3 * (1 + 1e-9), online_pz="out").tolist()[0] == 0.0


def test_rmia_gamma_compare_counts_exact_ties_only_with_ge():
    """An exact tie LR(x, z) = gamma: a candidate x that no reference trained on, with the
    target's and the references' probabilities of a population sample z. Offline with a = 1,
    P(x) and P(z) are the same mean over the same values, so LR(x, z) = 1 exactly."""
    lp_x, lp_z = _lp([0.5]), _lp([0.5, 0.1])
    refs_x, refs_z = _lp([[0.3], [0.6]]), _lp([[0.3, 0.2], [0.6, 0.1]])
    out = np.zeros((2, 1), dtype=bool)
    kw = {"offline": True, "a": 1.0, "gamma": 1.0}
    # z1 ties (LR = 1); z2's ratio .1/.15 = .667 is below x's .5/.45 = 1.11: LR > 1
    assert rmia(lp_x, refs_x, out, lp_z, refs_z, **kw).tolist() == [1.0]
    assert rmia(lp_x, refs_x, out, lp_z, refs_z, gamma_compare="gt", **kw).tolist() == [0.5]
    # away from ties the two agree (the hand case above)
    assert _rmia(gamma=2.0, gamma_compare="gt").tolist() == [0.5, 0.0, 0.5, 0.0]
    with pytest.raises(UserError, match="gamma_compare"):
        _rmia(gamma_compare="eq")


def test_online_rmia_members_are_not_tied_at_zero_with_the_default_gamma():
    """Members far above the OUT references: with an all-OUT P(z) a member's LR is about
    2 P_IN / (P_IN + P_OUT) < 2, so with gamma = 2 they score 0 like the non-members."""
    rng = np.random.default_rng(0)
    K, n, m = 8, 300, 200
    keep = balanced_keep(K, n, seed=1)
    refs = references_for(0, K)
    base = rng.normal(-4.0, 0.5, n)
    lp = np.where(keep, -0.3, base) + rng.normal(0, 0.05, (K, n))  # IN: p = 0.81 per token
    lpz = rng.normal(-4.0, 0.5, m) + rng.normal(0, 0.05, (K, m))
    marginal = rmia(lp[0], lp[refs], keep[refs], lpz[0], lpz[refs], gamma=2.0)
    out = rmia(lp[0], lp[refs], keep[refs], lpz[0], lpz[refs], gamma=2.0, online_pz="out")
    members = keep[0]
    # the all-OUT P(z): a third of the members score 0, tied with every non-member
    assert np.all(out[~members] == 0) and np.mean(out[members] == 0) > 0.3
    # the marginal P(z): every member above every non-member
    assert marginal[members].min() == 1.0 and marginal[~members].max() < 0.9


def test_rmia_offline_hand_computation():
    # a = .5: P(x) = (1.5 P_OUT + .5)/2 with P_OUT = B, B, A, A = .2, .3, .2, .4
    #   -> .4, .475, .4, .55; ratios 2, .8421, 1.25, .3636
    # P(z): P_OUT = .4, .3 -> .55, .475; ratios .5455, 1.2421
    assert _rmia(offline=True, a=0.5, gamma=1.0).tolist() == [1.0, 0.5, 1.0, 0.0]
    # a = 1: P(x) = P_OUT: ratios 4, 1.333, 2.5, .5; P(z) = .4, .3: ratios .75, 1.9667
    assert _rmia(offline=True, a=1.0, gamma=2.0).tolist() == [1.0, 0.0, 0.5, 0.0]


def test_rmia_geometric_averaging_and_sequence_scale():
    # (P(z) as the mean over the all-OUT references, where the two averages differ)
    # geometric: one reference a side leaves P(x) as before (ratios 2, 1, 1.25, 2/3), but
    # P(z) = sqrt(.3 * .5), sqrt(.4 * .2) = .3873, .2828: ratios .7746, 2.086 > 2, so x1 now
    # beats z1 only
    assert _rmia(gamma=1.0, averaging="geometric", online_pz="out").tolist() == [0.5, 0.5, 0.5, 0.0]
    # whole-sequence probabilities of 2^-900 are handled in log space (and 1 - P_OUT = 1 fits
    # a = 1: P(z) = P_OUT(z))
    lp_t = _lp(P_T) - 900
    s = rmia(lp_t, _lp([P_A, P_B]) - 900, IN_AB, _lp(Z_T) - 900, _lp([Z_A, Z_B]) - 900, gamma=1)
    assert s.tolist() == [1.0, 0.5, 0.5, 0.0]


def test_offline_a_is_chosen_on_the_grid_by_attacking_a_reference():
    rng = np.random.default_rng(1)
    K, n, m = 6, 200, 100
    keep = balanced_keep(K, n, seed=0)
    base = rng.normal(-3, 1, n)
    lp = base + 0.8 * keep + rng.normal(0, 0.1, (K, n))
    lpz = rng.normal(-3, 1, m) + rng.normal(0, 0.1, (K, m))
    a, aucs = calibrate_offline_a(lp, keep, lpz, references_for(0, K))
    assert a in [round(0.1 * i, 1) for i in range(11)] and len(aucs) == 11
    assert aucs[repr(a)] == max(aucs.values()) and aucs[repr(a)] > 0.9


def test_offline_a_calibration_keeps_the_pseudo_targets_partner_out(monkeypatch):
    """The pseudo-target's partner trained on exactly its non-members: as a reference it would
    leak the answer. Every example must keep the same number of IN references."""
    import memlens.shadow.attacks as attacks

    K, n, m = 8, 40, 10
    keep = balanced_keep(K, n, seed=2)
    rng = np.random.default_rng(0)
    lp, lpz = rng.normal(-3, 1, (K, n)), rng.normal(-3, 1, (K, m))
    seen = []
    real = attacks.rmia

    def spy(lp_t, lp_r, in_refs, *args, **kw):
        seen.append((lp_t.copy(), np.asarray(in_refs).copy()))
        return real(lp_t, lp_r, in_refs, *args, **kw)

    monkeypatch.setattr(attacks, "rmia", spy)
    refs = references_for(0, K)  # 2..7; pseudo-target 2, its partner 3
    calibrate_offline_a(lp, keep, lpz, refs)
    assert len(seen) == 11
    for lp_t, in_refs in seen:
        assert np.array_equal(lp_t, lp[2]) and in_refs.shape == (K - 4, n)
        assert np.all(in_refs.sum(axis=0) == (K - 4) // 2)  # 3 IN and 3 OUT for every example


# -- counterfactual memorization -------------------------------------------------------------------


def test_counterfactual_hand_case_and_standard_error():
    v = np.array([[0.9], [0.3], [0.7], [0.1]])
    keep = np.array([[1], [0], [1], [0]], dtype=bool)
    r = counterfactual(v, keep)
    assert r["mem"][0] == pytest.approx(0.8 - 0.2)
    # s_in^2 = s_out^2 = 0.02 (ddof 1): se = sqrt(.02/2 + .02/2) = 0.1414
    assert r["se"][0] == pytest.approx(math.sqrt(0.02), rel=1e-12)
    assert (r["n_in"][0], r["n_out"][0]) == (2, 2)


def test_counterfactual_of_an_example_every_model_saw_or_none_is_exactly_zero():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(6, 3))
    keep = np.array([[1, 0, 1]] * 3 + [[1, 0, 0]] * 3, dtype=bool)
    r = counterfactual(v, keep)
    assert r["mem"][0] == 0.0 and r["n_out"][0] == 0  # every model saw it
    assert r["mem"][1] == 0.0 and r["n_in"][1] == 0  # no model saw it
    assert np.isnan(r["se"][0]) and np.isnan(r["se"][1])
    assert r["mem"][2] == pytest.approx(v[:3, 2].mean() - v[3:, 2].mean())
    # models that agree on an example give exactly 0 whatever the split
    same = np.ones((6, 1)) * 0.37
    assert counterfactual(same, keep[:, 2:]).get("mem")[0] == 0.0


# -- worlds ----------------------------------------------------------------------------------------


def test_one_long_text_is_a_pool_of_many_examples(tmp_path):
    from memlens.shadow.world import text_pool

    words = ["the", "king", "said", "to", "a", "fool", "and", "his", "queen", "of", "night"]
    rng = np.random.default_rng(0)
    (tmp_path / "one.txt").write_text(" ".join(rng.choice(words, size=400)) + "\n")
    pool = text_pool(str(tmp_path / "one.txt"), seq_len=16, vocab_size=280, population_frac=0.2)
    assert pool.meta["n_texts"] == 1 and len(pool.lengths) > 20
    assert len(pool.candidates) >= 2 and pool.lengths.max() <= 16
    (tmp_path / "short.txt").write_text("only one line\n")
    with pytest.raises(UserError, match="at least 2 examples"):
        text_pool(str(tmp_path / "short.txt"), seq_len=16, vocab_size=280)
