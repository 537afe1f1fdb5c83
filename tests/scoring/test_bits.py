"""Known answers for the scoring engine (bits, not nats)."""

import math

import numpy as np
import pytest
import torch
from transformers import GPT2LMHeadModel

from memlens.data.synthetic import MarkovSource, uniform_sequences
from memlens.models.gpt import GPT, GPTConfig
from memlens.scoring import code_length_bits, gpt_forward, hf_forward, memorized_bits, score_tokens

V, S, N = 50, 12, 20


def uniform_forward(ids, attention_mask=None):
    return torch.zeros(*ids.shape, V)


def test_uniform_model_memorizes_zero_bits():
    data = uniform_sequences(V, S, N, seed=0)
    sc = score_tokens(uniform_forward, data, batch_size=7)
    nll = code_length_bits(sc, first_token_bits=math.log2(V))
    np.testing.assert_allclose(nll, S * math.log2(V), rtol=1e-6)
    assert memorized_bits(S * math.log2(V), nll).sum() == pytest.approx(0.0, abs=1e-3)


def test_zero_weight_gpt_is_uniform():
    model = GPT(GPTConfig(V, S, 1, 16), n_models=2)
    with torch.no_grad():
        model.wte.zero_()
    data = torch.stack([uniform_sequences(V, S, N, seed=s) for s in (0, 1)])
    sc = score_tokens(gpt_forward(model), data, batch_size=8)
    assert sc.log2p.shape == (2, N, S - 1)
    np.testing.assert_allclose(sc.log2p, -math.log2(V), atol=1e-5)


def make_lookup_forward(data):
    table = {tuple(row.tolist()): row for row in data}

    def fwd(ids, attention_mask=None):
        logits = torch.full((*ids.shape, V), -50.0)
        for i, row in enumerate(ids):
            full = table[tuple(row.tolist())]
            logits[i, torch.arange(S - 1), full[1:]] = 50.0  # knows every next token
        return logits

    return fwd


def test_lookup_model_memorizes_every_predictable_bit():
    data = uniform_sequences(V, S, N, seed=1)
    sc = score_tokens(make_lookup_forward(data), data, batch_size=6)
    H = S * math.log2(V)
    # predicted tokens cost nothing; the first token is coded uniformly (log2 V) by convention
    np.testing.assert_allclose(sc.nll_bits, 0.0, atol=1e-6)
    mem = memorized_bits(H, code_length_bits(sc, first_token_bits=math.log2(V)))
    np.testing.assert_allclose(mem, H - math.log2(V), atol=1e-5)
    # with the first token given (BOS convention), all of H(x) minus nothing is recovered
    np.testing.assert_allclose(
        memorized_bits(H - math.log2(V), sc.nll_bits), H - math.log2(V), atol=1e-5
    )


def test_max_is_per_sequence_not_per_token():
    # a model that is right on half the tokens and wrong on the rest: per-token clipping would
    # count the good tokens; the per-sequence max counts the net saving only.
    H = np.array([10.0, 10.0])
    nll = np.array([12.0, 7.0])
    np.testing.assert_allclose(memorized_bits(H, nll), [0.0, 3.0])


def test_bits_agree_with_gpt2lmheadmodel_loss(tmp_path):
    torch.manual_seed(0)
    model = GPT(GPTConfig(V, S, 2, 32), n_models=1, init_std=0.2)
    model.to_hf(0).save_pretrained(tmp_path)
    hf = GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    data = uniform_sequences(V, S, N, seed=2)
    ours = score_tokens(gpt_forward(model), data[None], batch_size=5).nll_bits[0]
    with torch.no_grad():
        loss_nats = hf(data, labels=data).loss.item()  # mean over N * (S-1) predicted tokens
    assert ours.sum() == pytest.approx(loss_nats * N * (S - 1) / math.log(2), rel=1e-5)
    theirs = score_tokens(hf_forward(hf), data, batch_size=5, pass_attention_mask=True)
    np.testing.assert_allclose(theirs.nll_bits, ours, rtol=1e-5)


def test_padding_lengths_and_stats():
    torch.manual_seed(0)
    model = GPT(GPTConfig(V, S, 1, 16), n_models=1, init_std=0.3)
    data = uniform_sequences(V, S, 4, seed=3)
    lengths = [S, 5, 2, 9]
    sc = score_tokens(gpt_forward(model), data[None], lengths=lengths, stats=True, argmax=True)
    assert sc.n_predicted[0].tolist() == [S - 1, 4, 1, 8]
    assert np.isnan(sc.log2p[0, 1, 4:]).all() and not np.isnan(sc.log2p[0, 1, :4]).any()
    # the prefix of a causal model's scores does not depend on later tokens
    full = score_tokens(gpt_forward(model), data[None, 1:2, :5]).log2p[0, 0]
    np.testing.assert_allclose(sc.log2p[0, 1, :4], full, rtol=1e-6)
    # Min-K%++ statistics by hand from the logits: mu = E_p[log2 p] = -entropy and
    # sigma = sqrt(E_p[(log2 p)^2] - mu^2), over the vocabulary under p itself
    with torch.no_grad():
        lp = torch.log_softmax(model(data[None])[0, :, :-1].double(), -1) / math.log(2)
    p = lp.exp2()
    mu = (p * lp).sum(-1).numpy()
    sigma = ((p * lp**2).sum(-1).numpy() - mu**2).clip(0) ** 0.5
    m = sc.mask[0]
    np.testing.assert_allclose(sc.mu_log2p[0][m], mu[m], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(sc.sigma_log2p[0][m], sigma[m], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(sc.entropy_bits[sc.mask], -sc.mu_log2p[sc.mask])


def test_markov_source_code_length_is_exact():
    src = MarkovSource(vocab_size=7, branching=2, seed=0)
    x = src.sample(3, 5, seed=1)
    P = src.transition
    for row, bits in zip(x.numpy(), src.code_length_bits(x), strict=True):
        p = 1 / 7
        for a, b in zip(row[:-1], row[1:], strict=True):
            p *= P[a, b]
        assert bits == pytest.approx(-math.log2(p))
    # entropy rate = sum_i pi_i H(P_i), pi the stationary distribution (pi P = pi)
    from scipy.stats import entropy

    pi = src.stationary
    np.testing.assert_allclose(pi @ P, pi, atol=1e-12)
    assert pi.sum() == pytest.approx(1.0)
    want = sum(pi[i] * entropy(P[i], base=2) for i in range(7))
    assert src.entropy_rate_bits() == pytest.approx(want, rel=1e-12)
    assert want < 1.0  # two successors per token: below 1 bit unless both are equally likely


def test_uniform_prefix_stable_across_n():
    a = uniform_sequences(V, S, 10, seed=5)
    b = uniform_sequences(V, S, 2000, seed=5)
    assert torch.equal(a, b[:10])


def test_token_log2p_by_hand_and_differentiable():
    from memlens.scoring import token_log2p

    # logits [0, ln 3] -> p = [1/4, 3/4]: log2 p(1) = log2 0.75, log2 p(0) = -2 bits
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, math.log(3.0)]], requires_grad=True)
    got = token_log2p(logits, torch.tensor([1, 0]))
    np.testing.assert_allclose(got.detach().numpy(), [math.log2(0.75), -2.0], rtol=1e-6)
    # d(-log2 p(y))/d logits = (softmax - onehot) / ln 2
    (-got.sum()).backward()
    want = np.array([[0.25, -0.25], [-0.75, 0.75]]) / math.log(2)
    np.testing.assert_allclose(logits.grad.numpy(), want, rtol=1e-6)


def test_take_rows_trims_padding_and_picks_a_model():
    from memlens.scoring import TokenScores

    nan = np.nan
    log2p = np.array(
        [
            [[-1.0, -2.0, nan], [-0.5, nan, nan], [-1.0, -1.0, -1.0]],
            [[-3.0, nan, nan], [-2.0, -2.0, nan], [-4.0, nan, nan]],
        ]
    )
    ts = TokenScores(log2p=log2p, mask=~np.isnan(log2p))
    # model 1, sequences 0-1: the longest has 2 predicted tokens, so one column is dropped
    one = ts.take(slice(0, 2), model=1)
    assert one.log2p.shape == (2, 2) and one.nll_bits.tolist() == [3.0, 4.0]
    assert one.mu_log2p is None
    # without a model axis: index arrays work too
    flat = TokenScores(log2p=log2p[0], mask=~np.isnan(log2p[0]))
    two = flat.take(np.array([1, 0]))
    assert two.log2p.shape == (2, 2) and two.nll_bits.tolist() == [0.5, 3.0]
    assert flat.take(slice(0, 3)).nll_bits.tolist() == [3.0, 0.5, 3.0]
