"""The small GPT: parameter count and outputs equal Hugging Face GPT2LMHeadModel."""

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from memlens.errors import UserError
from memlens.models.gpt import GPT, GPTConfig, document_attention_mask


def hf_param_count(V, S, L, d, h):
    cfg = GPT2Config(
        vocab_size=V, n_positions=S, n_embd=d, n_layer=L, n_head=h, tie_word_embeddings=True
    )
    return sum(p.numel() for p in GPT2LMHeadModel(cfg).parameters())


@pytest.mark.parametrize(
    "V,S,L,d,h",
    [
        (2048, 64, 1, 32, 2),
        (2048, 64, 2, 128, 8),
        (512, 32, 1, 16, 1),
        (100, 10, 3, 48, 4),
        (64, 16, 4, 64, 4),
    ],
)
def test_param_count_equals_transformers(V, S, L, d, h):
    cfg = GPTConfig(V, S, L, d, h)
    expected = hf_param_count(V, S, L, d, h)
    assert cfg.n_params == expected
    assert GPT(cfg, n_models=3).num_parameters_per_model() == expected


def test_published_param_count():
    # docs/concepts.md §1: 1 layer, d=32, V=2048, S=64 -> 80,352 parameters
    assert GPTConfig(2048, 64, 1, 32).n_params == 80_352
    assert GPTConfig(2048, 64, 2, 128).n_params == pytest.approx(667_000, rel=0.01)
    assert GPTConfig(2048, 64, 8, 256).n_params == pytest.approx(6_860_000, rel=0.01)


def test_export_roundtrip_matches_hf_logits():
    torch.manual_seed(0)
    cfg = GPTConfig(97, 12, 2, 32, 4)
    model = GPT(cfg, n_models=3, init_std=0.1)
    x = torch.randint(0, 97, (3, 5, 12))
    with torch.no_grad():
        ours = model(x)
        for k in range(3):
            hf = model.to_hf(k)
            theirs = hf(x[k]).logits
            torch.testing.assert_close(ours[k], theirs, atol=1e-5, rtol=1e-5)
        back = GPT.from_hf(model.to_hf(2))
        torch.testing.assert_close(back(x[2:3])[0], ours[2], atol=1e-5, rtol=1e-5)


def test_models_in_a_stack_are_independent():
    torch.manual_seed(0)
    cfg = GPTConfig(31, 8, 1, 16)
    model = GPT(cfg, n_models=2)
    x = torch.randint(0, 31, (2, 4, 8))
    loss = model(x)[0].sum()  # depends on model 0 only
    loss.backward()
    for p in model.parameters():
        if p.grad is not None:
            assert p.grad[1].abs().sum() == 0


def test_document_mask_blocks_cross_document_attention():
    doc = torch.tensor([[0, 0, 1, 1, 1, 2]])
    m = document_attention_mask(doc)[0, 0]
    assert m[3, 2] and m[3, 3] and not m[3, 1] and not m[2, 4]
    assert not m[5, 4] and m[5, 5]
    # output at a position is unchanged by tokens of other documents
    torch.manual_seed(0)
    model = GPT(GPTConfig(20, 6, 1, 16), n_models=1)
    a = torch.tensor([[[1, 2, 3, 4, 5, 6]]])
    b = torch.tensor([[[9, 9, 3, 4, 5, 6]]])
    ids = doc.view(1, 1, 6)
    with torch.no_grad():
        la, lb = model(a, doc_ids=ids), model(b, doc_ids=ids)
    torch.testing.assert_close(la[..., 2:, :], lb[..., 2:, :])


def test_bad_shapes_are_user_errors():
    with pytest.raises(UserError, match="not divisible"):
        GPTConfig(64, 16, 1, 30, 4)
    with pytest.raises(UserError, match="vocab"):
        GPTConfig(1, 16, 1, 32)


def test_a_gpt_too_large_for_memory_is_one_sentence():
    # a vocabulary of 1e11 at d=16 is 6.4 TB of float32: the allocator refuses at once
    with pytest.raises(
        UserError,
        match=r"a GPT of 1,600,000,003,440 parameters \(6,400.0 GB in float32\) does not fit",
    ):
        GPT(GPTConfig(10**11, 8, 1, 16))
