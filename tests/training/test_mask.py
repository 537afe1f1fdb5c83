"""Padding is not trained on: the masked fused loss against log-softmax by hand, the masked
next-token loss, and ``train_to_saturation(lengths=...)`` blind to what the padding holds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from memlens.models.gpt import GPT, GPTConfig
from memlens.scoring import gpt_forward, score_tokens
from memlens.training import (
    SaturationConfig,
    evaluate_memorization,
    linear_cross_entropy,
    next_token_loss,
    train_to_saturation,
)


def _by_hand(h, w, y, mask):
    """Per model: the mean over its real targets of -log_softmax(h w^T)[y], summed over models."""
    total = 0.0
    for k in range(h.shape[0]):
        logp = torch.log_softmax(h[k] @ w[k].T, dim=-1)  # [M, V]
        nll = -logp[torch.arange(len(y[k])), y[k]]
        total = total + nll[mask[k]].sum() / mask[k].sum()
    return total


@pytest.mark.parametrize("chunk_bytes", [64, 4096, 1 << 20])  # many chunks, ragged last, one
def test_masked_loss_is_the_mean_over_real_targets_by_hand(chunk_bytes):
    g = torch.Generator().manual_seed(0)
    K, M, d, V = 3, 41, 8, 23
    h = torch.randn(K, M, d, generator=g, dtype=torch.float64) * 2
    w = torch.randn(K, V, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, V, (K, M), generator=g)
    mask = torch.rand(K, M, generator=g) < 0.6  # a different number of real targets per model
    mask[:, 0] = True
    h1, w1 = h.clone().requires_grad_(), w.clone().requires_grad_()
    ref = _by_hand(h1, w1, y, mask)
    ref.mul(1.5).backward()
    h2, w2 = h.float().requires_grad_(), w.float().requires_grad_()
    loss = linear_cross_entropy(h2, w2, y, chunk_bytes=chunk_bytes, mask=mask)
    loss.mul(1.5).backward()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    torch.testing.assert_close(h2.grad.double(), h1.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(w2.grad.double(), w1.grad, rtol=1e-4, atol=1e-6)
    assert h2.grad[~mask].abs().max() == 0  # a padded target sends no gradient to its position


def test_masked_loss_known_answer_uniform_logits_and_a_model_without_targets():
    # zero hidden states: every real target costs ln V; a model with no real target costs 0
    K, M, d, V = 3, 6, 4, 64
    mask = torch.tensor([[1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0]]).bool()
    loss = linear_cross_entropy(
        torch.zeros(K, M, d), torch.randn(K, V, d), torch.randint(0, V, (K, M)), mask=mask
    )
    assert loss.item() == pytest.approx(2 * np.log(V), rel=1e-6)


def test_all_true_mask_equals_no_mask():
    g = torch.Generator().manual_seed(1)
    h, w = torch.randn(2, 30, 8, generator=g), torch.randn(2, 11, 8, generator=g)
    y = torch.randint(0, 11, (2, 30), generator=g)
    full = linear_cross_entropy(h, w, y)
    masked = linear_cross_entropy(h, w, y, mask=torch.ones(2, 30, dtype=torch.bool))
    assert masked.item() == pytest.approx(full.item(), rel=1e-6)
    with pytest.raises(ValueError):
        linear_cross_entropy(h, w, y, mask=torch.ones(2, 29, dtype=torch.bool))


def test_next_token_loss_with_lengths_counts_targets_inside_each_row():
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=20, seq_len=8, n_layer=1, d_model=16)
    model = GPT(cfg, n_models=2)
    x = torch.randint(0, 20, (2, 3, 8))
    lengths = torch.tensor([[8, 5, 2], [3, 8, 1]])
    loss = next_token_loss(model, x, lengths=lengths)
    # by hand with log_softmax: row r predicts tokens 1..lengths[r]-1
    with torch.no_grad():
        logp = torch.log_softmax(model(x[..., :-1]), dim=-1)
    ref = 0.0
    for k in range(2):
        nll = [
            -logp[k, r, t - 1, x[k, r, t]] for r in range(3) for t in range(1, int(lengths[k, r]))
        ]
        ref += float(torch.stack(nll).mean())
    assert loss.item() == pytest.approx(ref, rel=1e-5)
    # full lengths: the unmasked loss
    full = next_token_loss(model, x, lengths=torch.full((2, 3), 8))
    assert full.item() == pytest.approx(next_token_loss(model, x).item(), rel=1e-6)


def _padded_world(pad_seed: int):
    g = torch.Generator().manual_seed(0)
    K, N, S, V = 2, 12, 10, 16
    data = torch.randint(1, V, (K, N, S), generator=g)
    lengths = torch.randint(3, S + 1, (K, N), generator=g)
    junk = torch.randint(0, V, (K, N, S), generator=torch.Generator().manual_seed(pad_seed))
    beyond = torch.arange(S) >= lengths.unsqueeze(-1)
    return torch.where(beyond, junk, data), lengths, beyond, V, S


def test_train_to_saturation_with_lengths_never_sees_the_padding():
    # the same real tokens with different junk in the padding train exactly the same models,
    # and the measured code lengths charge real tokens only (scored with per-row lengths)
    cfg_t = SaturationConfig(
        lr=1e-2, batch_size=4, max_steps=12, min_steps=12, warmup_steps=2, eval_every=6
    )
    results = []
    for pad_seed in (1, 2):
        data, lengths, beyond, V, S = _padded_world(pad_seed)
        model = GPT(
            GPTConfig(V, S, 1, 16, 0), n_models=2, generator=torch.Generator().manual_seed(0)
        )
        res = train_to_saturation(
            model, data, [12, 9], cfg_t, entropy_bits=0.0, first_token_bits=0.0, lengths=lengths
        )
        results.append((model, res, data, lengths))
    (m1, r1, d1, L1), (m2, r2, d2, _) = results
    assert not torch.equal(d1, d2)  # the padding differs
    for p1, p2 in zip(m1.parameters(), m2.parameters(), strict=True):
        torch.testing.assert_close(p1, p2, rtol=0, atol=1e-6)
    for k, n in enumerate([12, 9]):
        ref = score_tokens(gpt_forward(m1), d1[:, :n], L1[k, :n])  # model k's row lengths
        np.testing.assert_allclose(r1.final_nll_bits[k], ref.nll_bits[k], rtol=1e-6)
        np.testing.assert_allclose(r2.final_nll_bits[k], r1.final_nll_bits[k], rtol=1e-5)
        per_token = r1.final_nll_bits[k].sum() / float(L1[k, :n].sum())
        assert r1.curves[k].nll_bits_per_token[-1] == pytest.approx(per_token)


def test_evaluate_memorization_full_lengths_equals_no_lengths():
    data, _, _, V, S = _padded_world(1)
    model = GPT(GPTConfig(V, S, 1, 16, 0), n_models=2, generator=torch.Generator().manual_seed(0))
    a = evaluate_memorization(model, data, [12, 9], 40.0, 4.0)
    b = evaluate_memorization(model, data, [12, 9], 40.0, 4.0, lengths=torch.full((2, 12), S))
    assert a[0] == pytest.approx(b[0])
    for x, y in zip(a[1], b[1], strict=True):
        np.testing.assert_allclose(x, y)
