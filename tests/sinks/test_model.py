"""Where the MemSinks mask acts (after the nonlinearity, before the down-projection) in memlens's GPT,
Hugging Face GPT-2 and LLaMA; packed rows never attend across documents; the training loss and
masks follow each position's document.

Known answers come from weight surgery: multiplying hidden unit j by m_j is the same function as
multiplying row j of the down-projection weight (GPT-2 layout ``[H, d]``) or column j of LLaMA's
``down_proj.weight`` (``[d, H]``) by m_j.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from memlens.errors import UserError
from memlens.models.gpt import GPT, GPTConfig
from memlens.sinks import (
    SinkConfig,
    SinkPatch,
    SinkTrainConfig,
    masked_forward,
    mode_mask,
    own_masks,
    pack_documents,
    sequence_ids,
    train_model,
)
from memlens.sinks.train import lm_loss, row_masks

CFG = SinkConfig()


def _gpt(seed=0, V=40, S=16, L=2, d=32):
    m = GPT(GPTConfig(V, S, L, d), 1, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():  # non-zero biases so that masking a unit is visible everywhere
        for b in m.blocks:
            b.fc_b.normal_(0, 0.5, generator=torch.Generator().manual_seed(seed + 1))
            b.mlp_proj_w.mul_(20)
    return m.eval()


def _surgery(model: GPT, masks_per_layer: np.ndarray) -> GPT:
    """A copy whose down-projection rows are scaled by the mask (``[L, H]``)."""
    m = copy.deepcopy(model)
    with torch.no_grad():
        for layer, b in enumerate(m.blocks):
            b.mlp_proj_w[0] *= torch.from_numpy(masks_per_layer[layer])[:, None]
    return m


@torch.no_grad()
def test_gpt_modes_equal_weight_surgery():
    model = _gpt()
    x = torch.randint(0, 40, (5, 16), generator=torch.Generator().manual_seed(3))
    H = 128
    for mode in ("drop", "mean"):
        got = masked_forward(model, CFG, mode)(x)
        m = np.stack([mode_mask(mode, H, CFG)] * 2)
        want = _surgery(model, m)(x[None])[0]
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # own mode: row i behaves as the surgery model for its own mask
    got = masked_forward(model, CFG, "own")(x)
    ids = sequence_ids(x)
    masks = own_masks(ids, 2, H, CFG)
    for i in range(5):
        want = _surgery(model, masks[i])(x[None, i : i + 1])[0, 0]
        torch.testing.assert_close(got[i], want, rtol=1e-5, atol=1e-5)
    # "all" is the plain model, and the masks matter
    torch.testing.assert_close(masked_forward(model, CFG, "all")(x), model(x[None])[0])
    assert (got - model(x[None])[0]).abs().max() > 1e-2


@torch.no_grad()
def test_hf_gpt2_patch_matches_memlens_gpt_in_every_mode():
    model = _gpt()
    hf = model.to_hf(0)
    x = torch.randint(0, 40, (4, 16), generator=torch.Generator().manual_seed(4))
    plain = hf(input_ids=x).logits
    patch = SinkPatch(hf, CFG)
    assert [n for n, _, _ in patch.projections] == [
        "transformer.h.0.mlp.c_proj",
        "transformer.h.1.mlp.c_proj",
    ]
    torch.testing.assert_close(hf(input_ids=x).logits, plain)  # mode "all" = unpatched
    for mode in ("drop", "mean", "own"):
        ids = sequence_ids(x) if mode == "own" else None
        with patch.use(mode, ids):
            got = hf(input_ids=x).logits
        torch.testing.assert_close(got, masked_forward(model, CFG, mode)(x), rtol=1e-4, atol=1e-4)
    patch.remove()
    torch.testing.assert_close(hf(input_ids=x).logits, plain)


def _tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=48,
        hidden_size=32,
        intermediate_size=80,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32,
    )
    m = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for layer in m.model.layers:
            layer.mlp.down_proj.weight.mul_(30)
    return m


@torch.no_grad()
def test_llama_patch_masks_the_gated_product_before_down_proj():
    model = _tiny_llama()
    x = torch.randint(0, 48, (3, 12), generator=torch.Generator().manual_seed(5))
    patch = SinkPatch(model, CFG)
    assert patch.hidden == 80 and patch.n_layer == 2
    ids = sequence_ids(x)
    masks = own_masks(ids, 2, 80, CFG)
    with patch.use("own", ids):
        got = model(input_ids=x).logits
    with patch.use("drop"):
        got_drop = model(input_ids=x).logits
    patch.remove()
    for i in range(3):
        ref = copy.deepcopy(model)
        for layer, blk in enumerate(ref.model.layers):
            blk.mlp.down_proj.weight *= torch.from_numpy(masks[i, layer])[None, :]
        torch.testing.assert_close(
            got[i], ref(input_ids=x[i : i + 1]).logits[0], rtol=1e-4, atol=1e-4
        )
    ref = copy.deepcopy(model)
    for blk in ref.model.layers:
        blk.mlp.down_proj.weight *= torch.from_numpy(mode_mask("drop", 80, CFG))[None, :]
    torch.testing.assert_close(got_drop, ref(input_ids=x).logits, rtol=1e-4, atol=1e-4)
    assert (got_drop - model(input_ids=x).logits).abs().max() > 1e-2


def test_hf_training_through_the_patch_never_updates_a_sequences_off_sinks():
    model = _tiny_llama().train()
    x = torch.randint(0, 48, (1, 12), generator=torch.Generator().manual_seed(6))
    patch = SinkPatch(model, CFG)
    ids = sequence_ids(x)
    with patch.use("own", ids):
        loss = model(input_ids=x, labels=x).loss
    loss.backward()
    m = own_masks(ids, 2, 80, CFG)[0]
    for layer, blk in enumerate(model.model.layers):
        g = blk.mlp.gate_proj.weight.grad  # [H, d]: row j feeds unit j
        off = m[layer] == 0
        assert g[torch.from_numpy(off)].abs().max() == 0
        assert g[torch.from_numpy(~off)].abs().sum(-1).gt(0).all()


def test_patching_a_model_without_mlps_is_a_user_error():
    with pytest.raises(UserError, match="MLP"):
        SinkPatch(torch.nn.Linear(3, 3), CFG)


@torch.no_grad()
def test_packed_rows_never_attend_across_documents():
    model = _gpt(S=24)
    g = torch.Generator().manual_seed(7)
    docs = [torch.randint(0, 40, (n,), generator=g).numpy() for n in (7, 9, 5)]
    rows = pack_documents(docs, [0, 1, 2], width=24)
    assert rows.tokens.shape == (1, 24)
    np.testing.assert_array_equal(rows.doc_index[0], [0] * 7 + [1] * 9 + [2] * 5 + [-1] * 3)
    np.testing.assert_array_equal(rows.positions[0], [*range(7), *range(9), *range(5), 0, 0, 0])
    x = torch.from_numpy(rows.tokens)[None]
    di = torch.from_numpy(rows.doc_index)[None]
    pos = torch.from_numpy(rows.positions)[None]
    packed = model(x, doc_ids=di, position_ids=pos)[0, 0]
    start = 0
    for d in docs:  # each document's logits equal those of the document alone at position 0
        alone = model(torch.from_numpy(d)[None, None])[0, 0]
        torch.testing.assert_close(packed[start : start + len(d)], alone, rtol=1e-5, atol=1e-5)
        start += len(d)
    # changing document 0 leaves documents 1 and 2 untouched; without doc_ids it does not
    x2 = x.clone()
    x2[0, 0, :7] = (x2[0, 0, :7] + 1) % 40
    torch.testing.assert_close(model(x2, doc_ids=di, position_ids=pos)[0, 0, 7:21], packed[7:21])
    assert (
        model(x2, position_ids=pos)[0, 0, 7:21] - model(x, position_ids=pos)[0, 0, 7:21]
    ).abs().max() > 1e-4


def test_packing_layout_and_too_long_documents():
    docs = [np.arange(n) + 1 for n in (5, 5, 3, 6)]
    rows = pack_documents(docs, [0, 1, 2, 3, 0], width=10)
    # 5+5 | 3+6 | 5
    np.testing.assert_array_equal(rows.doc_index[:, :1].ravel(), [0, 2, 0])
    np.testing.assert_array_equal(rows.doc_index[1], [2, 2, 2, 3, 3, 3, 3, 3, 3, -1])
    np.testing.assert_array_equal(rows.tokens[1, :3], [1, 2, 3])
    assert not rows.one_doc_per_row
    np.testing.assert_array_equal(rows.doc_ids, sequence_ids(docs))
    with pytest.raises(UserError, match="does not fit"):
        pack_documents([np.arange(11)], [0], width=10)


def test_loss_on_packed_rows_ignores_cross_document_targets():
    model = _gpt(S=24)
    g = torch.Generator().manual_seed(8)
    docs = [torch.randint(0, 40, (n,), generator=g).numpy() for n in (7, 9, 5)]
    rows = pack_documents(docs, [0, 1, 2], width=24)
    x = torch.from_numpy(rows.tokens)
    di = torch.from_numpy(rows.doc_index)
    pos = torch.from_numpy(rows.positions)
    with torch.no_grad():
        loss = lm_loss(model(x[None], doc_ids=di[None], position_ids=pos[None])[0], x, di)
        total, n = 0.0, 0
        for d in docs:  # sum of per-document next-token losses / number of predicted tokens
            t = torch.from_numpy(d)
            lg = model(t[None, None])[0, 0]
            total += torch.nn.functional.cross_entropy(lg[:-1], t[1:], reduction="sum").item()
            n += len(d) - 1
    assert loss.item() == pytest.approx(total / n, rel=1e-5)


def test_each_position_gets_its_documents_mask_and_training_respects_it():
    g = torch.Generator().manual_seed(9)
    docs = [torch.randint(0, 40, (n,), generator=g).numpy() for n in (7, 9, 5, 12, 8)]
    rows = pack_documents(docs, [0, 1, 2, 3, 4], width=24)
    masks = row_masks(rows, np.arange(len(rows)), CFG, 2, 128)
    assert masks[0].shape == (1, len(rows), 24, 128)
    own = own_masks(rows.doc_ids, 2, 128, CFG)
    for r in range(len(rows)):
        for t in range(24):
            d = rows.doc_index[r, t]
            want = own[d] if d >= 0 else np.ones((2, 128), dtype=np.float32)
            for layer in range(2):
                np.testing.assert_array_equal(masks[layer][0, r, t].numpy(), want[layer])
    # one training step on row 0: fc_w columns of sink units off for every document in the row
    # get no gradient (the units never fire), so Adam leaves them exactly unchanged (no decay).
    model = _gpt(S=24).train()
    before = [b.fc_w.detach().clone() for b in model.blocks]
    train_model(
        model,
        rows,
        np.array([0]),
        SinkTrainConfig(max_steps=1, batch_size=1, weight_decay=0.0, warmup_steps=1),
        CFG,
    )
    docs_in_row = np.unique(rows.doc_index[0][rows.doc_index[0] >= 0])
    for layer, b in enumerate(model.blocks):
        never_on = (own[docs_in_row, layer] == 0).all(0)
        changed = (b.fc_w.detach() != before[layer])[0].any(0).numpy()  # per hidden unit
        assert never_on.any()
        assert not changed[never_on].any()
        assert changed[~never_on].all()
