"""Two models compared on the same texts charge the first token the same way (audit, ref attack).

When only one tokenizer starts texts with a BOS, the other model cannot predict its first token
and charges it log2 V; comparing that with the first model's own prediction used to add about
log2 V bits to every sample's unintended memorization. Known answers with a bigram model (its
prediction depends on the current token only), saved once with a BOS tokenizer and once with a
tokenizer of the same vocabulary and no BOS: the two are the same model, so every sample must
get exactly 0 unintended bits and a ref score of 0.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from helpers_hf import (
    make_sentences,
    save_lm,
    tiny_gpt2,
    wordlevel_tokenizer,
    write_lines,
)
from memlens.scoring import CodeLengths, comparable_bits, first_token_convention

pytestmark = pytest.mark.usefixtures("one_thread")


def test_comparable_bits_by_hand():
    bos = CodeLengths(
        bits=np.array([10.0, 20.0]), first_token_bits=np.array([2.0, 3.0]), uniform_bits=5.0,
        has_bos=True,
    )  # fmt: skip
    nobos = CodeLengths(
        bits=np.array([15.0, 30.0]), first_token_bits=np.array([6.0, 6.0]), uniform_bits=6.0,
        has_bos=False,
    )  # fmt: skip
    t, r, conv = comparable_bits(bos, nobos)
    assert conv == "uniform"
    np.testing.assert_allclose(t, [10 - 2 + 5, 20 - 3 + 5])  # first token now log2 V = 5 bits
    np.testing.assert_allclose(r, [15.0, 30.0])  # already charged log2 V = 6 bits
    t, r, conv = comparable_bits(bos, bos)
    assert conv == "model" and t.tolist() == [10.0, 20.0]
    assert first_token_convention(nobos, nobos) == "uniform"


@pytest.fixture(scope="module")
def bigram_pair(tmp_path_factory):
    """The same bigram GPT-2 saved with a BOS tokenizer and with a no-BOS tokenizer."""
    from transformers import PreTrainedTokenizerFast

    root = tmp_path_factory.mktemp("first-token")
    tok = wordlevel_tokenizer()
    model = tiny_gpt2(len(tok), n_positions=32, seed=4)
    with torch.no_grad():  # the block adds nothing and positions add nothing: a bigram model
        model.transformer.wpe.weight.zero_()
        model.transformer.wte.weight.mul_(40.0)  # sharp predictions (tied output layer)
        for lin in (model.transformer.h[0].attn.c_proj, model.transformer.h[0].mlp.c_proj):
            lin.weight.zero_()
            lin.bias.zero_()
    nobos = PreTrainedTokenizerFast(
        tokenizer_object=tok.backend_tokenizer, pad_token="[PAD]", unk_token="[UNK]"
    )
    assert nobos.bos_token_id is None and nobos.eos_token_id is None and len(nobos) == len(tok)
    texts = make_sentences(12, seed=5)
    return {
        "bos": save_lm(model, tok, root / "bos"),
        "nobos": save_lm(model, nobos, root / "nobos"),
        "train": write_lines(root / "train.txt", texts[:8]),
        "heldout": write_lines(root / "heldout.txt", texts[8:]),
        "texts": texts,
        "model": model,
        "tok": tok,
        "root": root,
    }


def _bigram_bits(model, ids: list[int], first: float) -> float:
    """Code length of ``ids`` under the bigram model, the first token charged ``first`` bits:
    each later token costs -log2 p(t_i | t_{i-1}), read from a one-token forward of t_{i-1}."""
    with torch.no_grad():
        table = torch.log_softmax(
            model(input_ids=torch.arange(model.config.vocab_size)[:, None]).logits[:, 0], -1
        )
    return first + sum(
        -float(table[a, b]) / math.log(2) for a, b in zip(ids[:-1], ids[1:], strict=True)
    )


def test_audit_charges_both_first_tokens_log2_v(bigram_pair, tmp_path):
    from memlens.audit.recipe import AuditConfig, run
    from memlens.models.hf import load_causal_lm
    from memlens.scoring import score_texts

    p = bigram_pair
    cfg = AuditConfig(
        model=str(p["bos"]), reference=str(p["nobos"]), train=str(p["train"]),
        heldout=str(p["heldout"]), prefix=2, suffix=2, device="cpu",
    )  # fmt: skip
    res = run(cfg, tmp_path / "audit")
    df, s = res.samples, res.summary
    assert s.first_token == "uniform"
    np.testing.assert_allclose(df["unintended_bits"], 0.0, atol=1e-9)
    np.testing.assert_allclose(df["target_bits"], df["reference_bits"], atol=1e-9)
    # the code lengths themselves, by hand: log2 V for the first word, bigram costs after it
    V = len(p["tok"])
    for text, bits in zip(df["text"], df["target_bits"], strict=True):
        ids = p["tok"](text, add_special_tokens=False)["input_ids"]
        assert bits == pytest.approx(_bigram_bits(p["model"], ids, math.log2(V)), rel=1e-5)
    # without the fix every sample would carry log2 V - (-log2 p(t_1 | BOS)) bits
    lm = load_causal_lm(p["bos"], device="cpu")
    raw = score_texts(lm, list(df["text"])).bits
    inflation = df["reference_bits"].to_numpy() - raw
    first = [p["tok"](t, add_special_tokens=False)["input_ids"][0] for t in df["text"]]
    want = [math.log2(V) - _bigram_bits(p["model"], [0, f], 0.0) for f in first]  # BOS is id 0
    np.testing.assert_allclose(inflation, want, rtol=1e-5)
    assert np.abs(inflation).mean() > 1.0, inflation


def test_ref_attack_charges_both_first_tokens_log2_v(bigram_pair):
    from memlens.mia.recipe import score_samples
    from memlens.models.hf import load_causal_lm
    from memlens.scoring import score_texts

    p = bigram_pair
    target = load_causal_lm(p["bos"], device="cpu")
    ref = score_texts(load_causal_lm(p["nobos"], device="cpu"), p["texts"]).code_lengths()
    res = score_samples(target, p["texts"], ["loss", "ref"], references={"same": ref})
    assert res.first_token == {"same": "uniform"}
    np.testing.assert_allclose(res.scores["ref"], 0.0, atol=1e-9)
    # the loss attack still reads the target's own pass (the first word predicted after BOS)
    assert not np.allclose(res.target_bits, res.reference_bits["same"])


@pytest.mark.parametrize("target, reference", [("bos", "nobos"), ("nobos", "bos")])
def test_track_charges_both_first_tokens_log2_v(bigram_pair, target, reference):
    # memlens track --reference: the untrained target is the reference model itself, so every
    # text's code length equals the reference's and no text has unintended bits, whichever of
    # the two tokenizers has the BOS. Before, the BOS side coded its first word after the BOS
    # and the other charged it log2 V: every text carried the difference.
    from memlens.models.hf import load_causal_lm
    from memlens.track import Schedule, Tracker
    from memlens.track.text import TextTrackConfig, build_text_trackset

    p = bigram_pair
    cfg = TextTrackConfig(
        model=str(p[target]), reference=str(p[reference]), train=str(p["train"]), device="cpu"
    )
    lm = load_causal_lm(cfg.model, device="cpu")
    examples, _, _ = build_text_trackset(cfg, lm)
    V = len(p["tok"])
    assert examples.first_token == "uniform" and examples.first_token_bits == math.log2(V)
    assert examples.reference.endswith("log2 V under both tokenizers, as only one has a BOS)")
    tracker = Tracker(examples, None, schedule=Schedule.every(1), prefix=2, suffix=2)
    tracker.observe(lm.model, 0)
    obs = tracker.observations()
    np.testing.assert_allclose(obs.code_bits[:, 0], examples.reference_bits, rtol=1e-6)
    np.testing.assert_allclose(obs.unintended_bits[:, 0], 0.0, atol=1e-4)
    # and by hand: log2 V for the first word, the bigram's costs after it
    texts = examples.texts
    want = [
        _bigram_bits(p["model"], p["tok"](t, add_special_tokens=False)["input_ids"], math.log2(V))
        for t in texts
    ]
    np.testing.assert_allclose(obs.code_bits[:, 0], want, rtol=1e-5)
