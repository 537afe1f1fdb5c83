"""MemSinks evaluation pieces against independent computations: exact extraction read from one
teacher-forced pass equals real greedy decoding (KV-cached, Hugging Face export with the sink
patch), and the per-unit attribution equals a finite-difference derivative of the code length."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from memlens.data.synthetic import MarkovSource
from memlens.models.gpt import GPT, GPTConfig
from memlens.scoring import TokenScores, score_tokens
from memlens.scoring.extraction import k_extraction
from memlens.sinks import (
    SinkConfig,
    SinkPatch,
    SinkTrainConfig,
    masked_forward,
    rows_of_equal_docs,
    sequence_ids,
    train_model,
)
from memlens.sinks.evaluation import _extraction
from memlens.sinks.localize import unit_attribution

CFG = SinkConfig()


@pytest.fixture(scope="module")
def memorizer():
    """A 1-layer GPT trained with sinks on 8 sequences (20 times each) among 160 fresh ones."""
    torch.manual_seed(0)
    src = MarkovSource(24, 3, seed=1)
    rep = src.sample(8, 16, seed=2).numpy()
    fresh = src.sample(160, 16, seed=3).numpy()
    held = src.sample(8, 16, seed=4).numpy()
    docs = np.concatenate([fresh, rep])
    order = np.concatenate([np.arange(160), np.repeat(np.arange(160, 168), 20)])
    np.random.default_rng(0).shuffle(order)
    model = GPT(GPTConfig(24, 16, 1, 32), 1, generator=torch.Generator().manual_seed(0))
    tc = SinkTrainConfig(max_steps=40, batch_size=8, lr=2e-2, warmup_steps=5)
    train_model(model, rows_of_equal_docs(docs, order), np.arange(len(order)), tc, CFG)
    return model, rep, held


@pytest.mark.parametrize("mode", ["own", "drop"])
def test_teacher_forced_exact_extraction_equals_greedy_decoding(memorizer, mode):
    model, rep, held = memorizer
    seqs = np.concatenate([rep, held])
    prefix = 6
    scores = score_tokens(masked_forward(model, CFG, mode), seqs[None], argmax=True)
    start = prefix - 1
    tf_exact = scores.is_argmax[0, :, start:].all(axis=1)
    hf = model.to_hf(0)
    patch = SinkPatch(hf, CFG)
    with patch.use(mode, sequence_ids(seqs) if mode == "own" else None):
        greedy = k_extraction(hf, list(seqs), prefix=prefix, suffix=16 - prefix, batch_size=64)
    np.testing.assert_array_equal(tf_exact, greedy.exact)
    # the first mismatch of greedy decoding is the first teacher-forced miss
    first_tf = np.argmax(~scores.is_argmax[0, :, start:], axis=1)
    truth = seqs[:, prefix:]
    for i in np.flatnonzero(~greedy.exact):
        assert np.argmax(greedy.generated[i] != truth[i]) == first_tf[i]
    if mode == "own":
        assert greedy.exact[:8].sum() >= 1  # the trained model does reproduce repeated sequences
    # the experiment's reader of the flags gives the same rate
    flat = TokenScores(log2p=scores.log2p[0], mask=scores.mask[0], is_argmax=scores.is_argmax[0])
    rate, _, n = _extraction(flat, prefix, 0)
    assert n == 16 and rate == pytest.approx(greedy.exact.mean())


def test_attribution_is_minus_mask_times_derivative_of_code_length(memorizer):
    model, rep, _ = memorizer
    x = rep[:3]
    A, M = unit_attribution(model, CFG, "own", x)
    H = 128
    ids = sequence_ids(x).tolist()
    rng = np.random.default_rng(0)
    eps = 1e-2
    for i in range(3):
        on = np.flatnonzero(M[i, 0] > 0)
        for j in rng.choice(on, size=4, replace=False):

            def bits(f, j=j, i=i):
                a = np.ones((1, H), dtype=np.float32)
                a[0, j] = f
                fwd = masked_forward(model, CFG, "own", ablate={ids[i]: a})
                return float(score_tokens(fwd, x[None, i : i + 1]).nll_bits[0, 0])

            deriv = (bits(1 + eps) - bits(1 - eps)) / (2 * eps)  # dL/dm_j at m_j = 1
            assert A[i, 0, j] == pytest.approx(-deriv, rel=2e-2, abs=2e-3)
    # units that are off for a sequence carry no attribution (ablating them changes nothing)
    assert (A[M == 0] == 0).all()
    # per-row gradients: attributions of sequence 0 do not depend on the batch around it
    A0, _ = unit_attribution(model, CFG, "own", x[:1])
    np.testing.assert_allclose(A0[0], A[0], rtol=1e-4, atol=1e-6)


def test_claim_check_hand_values_and_no_gap_is_untestable_not_nan():
    from memlens.sinks.recipe import claim_check

    def rows(std_gap, drop_gap, drop_val=1.0):
        return {
            "standard": {"mem_gap": std_gap, "val_loss": 1.0},
            "memsinks_sinks_dropped": {"mem_gap": drop_gap, "val_loss": drop_val},
            "memsinks_sinks_dropped_unscaled": {"mem_gap": drop_gap / 2, "val_loss": 1.01},
        }

    c = claim_check(rows(0.8, 0.2, 1.015))
    assert c["gap_closed_fraction"] == pytest.approx(0.75)
    assert c["unscaled_drop"]["gap_closed_fraction"] == pytest.approx(0.875)
    assert c["testable"] and c["holds"] is True
    assert claim_check(rows(0.8, 0.5))["holds"] is False  # closes 37.5%
    # standard training without a positive gap: nothing to close, the claim cannot be tested
    c = claim_check(rows(-0.09, -0.09))
    assert c["testable"] is False and c["holds"] is None
    assert c["gap_closed_fraction"] is None and c["unscaled_drop"]["gap_closed_fraction"] is None


def test_ablation_shares_are_none_without_a_positive_gap(memorizer):
    """Held-out sequences scored against the memorized ones have a negative 'gap': the share of
    it removed is undefined (None), never NaN; the repeated ones against held-out have one."""
    import json

    from memlens.sinks.localize import ablation_curve

    model, rep, held = memorizer
    ok = ablation_curve(model, CFG, "own", rep[:4], held, [2], n_random=2, n_collateral=4)
    assert ok["mean_gap"] > 0 and isinstance(ok["ks"][0]["top_removed"], float)
    none = ablation_curve(model, CFG, "own", held[:4], rep, [2], n_random=2, n_collateral=4)
    assert none["mean_gap"] < 0
    r = none["ks"][0]
    assert r["top_removed"] is None and r["random_removed"] is None
    assert r["random_removed_draws"] == [None, None]
    assert "NaN" not in json.dumps(none) and np.isfinite(r["random_collateral"])


def test_extraction_rate_without_an_eligible_document_is_none_and_printed_as_a_dash(
    memorizer, capsys, monkeypatch
):
    """Documents of 16 tokens with an extraction prefix of 14 (+ 4 needed): no document is
    eligible, so the rates are None (not NaN) and the console prints '-' and says why."""
    import json

    from memlens.commands.sinks import _print_summary
    from memlens.sinks import SinksConfig
    from memlens.sinks.data import SinksData
    from memlens.sinks.evaluation import evaluate

    model, rep, held = memorizer
    data = SinksData(
        docs=[*held, *rep], fresh=np.arange(8), repeated=np.arange(8, 16), heldout=list(held),
        vocab_size=24, n_lead=0, source="test",
    )  # fmt: skip
    cfg = SinksConfig(vocab_size=24, seq_len=16, extraction_prefix=14, n_repeated=8, steps=100)
    e = evaluate(model, CFG, "own", data, cfg)["extraction"]
    assert (e["n_repeated_eligible"], e["n_heldout_eligible"]) == (0, 0)
    assert e["repeated_rate"] is None and e["heldout_rate"] is None
    assert e["rate_difference"] is None and "NaN" not in json.dumps(e)
    ok = evaluate(
        model, CFG, "own", data, SinksConfig(**{**cfg.model_dump(), "extraction_prefix": 8})
    )
    assert ok["extraction"]["n_repeated_eligible"] == 8  # 8 + 4 <= 16
    assert 0 <= ok["extraction"]["repeated_rate"] <= 1

    class Row:
        val_loss, repeated_loss, mem_gap, extraction = 1.0, 0.5, 0.5, e

    summary = type("S", (), {name: Row for name in (
        "standard", "dedup", "memsinks", "memsinks_sinks_scaled", "memsinks_sinks_dropped",
        "memsinks_sinks_dropped_unscaled")})()  # fmt: skip
    summary.preset, summary.data, summary.localization = "test", {}, {}
    summary.claim = {"gap_closed_fraction": 0.0, "val_loss_ratio_dropped_to_standard": 1.0,
                     "holds": False}  # fmt: skip
    summary.compute, summary.seconds_total_this_invocation = {"train_seconds": {}}, 0.0
    monkeypatch.setenv("COLUMNS", "300")
    _print_summary(summary, None)
    out = " ".join(capsys.readouterr().out.split())
    assert "nan" not in out and "│ - │ - │" in out
    assert "no document is long enough for the extraction prefix of 14 tokens and 4 more" in out
