"""The fused output layer + cross-entropy equals the plain path, loss and gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from memlens.models.gpt import GPT, GPTConfig
from memlens.training import linear_cross_entropy


def _plain(h, w, y):
    K = h.shape[0]
    logits = torch.bmm(h, w.transpose(1, 2))
    return F.cross_entropy(logits.reshape(-1, w.shape[1]), y.reshape(-1)) * K


@pytest.mark.parametrize("chunk_bytes", [64, 4096, 1 << 20])  # many chunks, ragged last, one
def test_loss_and_gradients_equal_plain_cross_entropy(chunk_bytes):
    g = torch.Generator().manual_seed(0)
    K, M, d, V = 3, 101, 8, 37
    h = torch.randn(K, M, d, generator=g, dtype=torch.float64) * 3
    w = torch.randn(K, V, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, V, (K, M), generator=g)
    h1, w1 = h.clone().requires_grad_(), w.clone().requires_grad_()
    _plain(h1, w1, y).mul(2.5).backward()
    h2, w2 = h.float().requires_grad_(), w.float().requires_grad_()
    loss = linear_cross_entropy(h2, w2, y, chunk_bytes=chunk_bytes)
    loss.mul(2.5).backward()  # a non-unit upstream gradient is applied in backward
    ref = _plain(h, w, y)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    torch.testing.assert_close(h2.grad.double(), h1.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(w2.grad.double(), w1.grad, rtol=1e-4, atol=1e-6)


def test_known_answer_uniform_logits():
    # zero hidden states give uniform predictions: loss = K * ln V exactly
    K, M, d, V = 2, 5, 4, 64
    loss = linear_cross_entropy(
        torch.zeros(K, M, d), torch.randn(K, V, d), torch.randint(0, V, (K, M))
    )
    assert loss.item() == pytest.approx(K * math.log(V), rel=1e-6)


def test_gpt_hidden_path_matches_logits_path():
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=50, seq_len=12, n_layer=2, d_model=16)
    model = GPT(cfg, n_models=2)
    x = torch.randint(0, 50, (2, 4, 12))
    fused = linear_cross_entropy(model.hidden(x[..., :-1]), model.wte, x[..., 1:].reshape(2, -1))
    fused.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    logits = model(x[..., :-1])
    plain = F.cross_entropy(logits.reshape(-1, 50), x[..., 1:].reshape(-1)) * 2
    plain.backward()
    assert fused.item() == pytest.approx(plain.item(), rel=1e-5)
    for g1, p in zip(grads, model.parameters(), strict=True):
        torch.testing.assert_close(g1, p.grad, rtol=1e-4, atol=1e-6)


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError):
        linear_cross_entropy(torch.zeros(2, 3, 4), torch.zeros(2, 5, 4), torch.zeros(2, 4).long())
