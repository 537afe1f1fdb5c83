"""Length-sorted batching of ragged sequences under a row count and a token budget."""

import numpy as np
import pytest

from memlens.errors import UserError
from memlens.models.hf import load_causal_lm
from memlens.scoring.ragged import LOGITS_BUDGET, length_batches, score_sequences

pytestmark = pytest.mark.usefixtures("one_thread")


def test_length_batches_by_hand():
    lengths = np.array([10, 9, 7, 5, 5, 4, 2])  # sorted, longest first
    # rows only: groups of 3
    assert [g.tolist() for g in length_batches(lengths, 3)] == [[0, 1, 2], [3, 4, 5], [6]]
    # 20 padded tokens: 10 -> 2 rows (20), 7 -> 2 rows (14 of 7x2), 5 -> 4 rows but 3 remain
    groups = length_batches(lengths, 8, max_tokens=20)
    assert [g.tolist() for g in groups] == [[0, 1], [2, 3], [4, 5, 6]]
    # a sequence longer than the budget is scored alone
    assert [g.tolist() for g in length_batches(lengths, 8, max_tokens=6)] == [
        [0], [1], [2], [3], [4], [5], [6, ]
    ]  # fmt: skip
    # every group respects both limits and together they cover every position once
    for bs, mt in [(1, None), (2, 15), (5, 30), (100, 1)]:
        gs = length_batches(lengths, bs, mt)
        assert np.concatenate(gs).tolist() == list(range(len(lengths)))
        for g in gs:
            assert len(g) <= bs
            if mt is not None and len(g) > 1:
                assert len(g) * lengths[g[0]] <= mt
    with pytest.raises(UserError):
        length_batches(lengths, 0)


def test_budget_changes_batches_not_numbers(tiny_llama_dir):
    lm = load_causal_lm(str(tiny_llama_dir))
    rng = np.random.default_rng(0)
    seqs = [rng.integers(1, lm.vocab_size, size=n) for n in (3, 40, 17, 64, 8, 25, 2, 50)]
    ref = score_sequences(lm, seqs, batch_size=1)
    calls = []
    fwd = lm.forward()

    def counting(ids, attention_mask=None):
        calls.append(tuple(ids.shape))
        return fwd(ids, attention_mask=attention_mask)

    got = score_sequences(counting, seqs, batch_size=8, max_tokens=100)
    # sorted 64, 50, 40, 25, 17, 8, 3, 2: 100 // 64 = 1 row, 100 // 50 = 2, 100 // 25 = 4, rest
    assert calls == [(1, 64), (2, 50), (4, 25), (1, 2)]
    np.testing.assert_allclose(got.log2p[got.mask], ref.log2p[ref.mask], atol=1e-9)
    np.testing.assert_array_equal(got.mask, ref.mask)
    # a CausalLM's default budget is LOGITS_BUDGET / V padded tokens per pass
    assert LOGITS_BUDGET // lm.vocab_size > 8 * 64  # the tiny vocabulary: one batch of 8


def test_a_causal_lm_gets_the_default_budget(tiny_llama_dir, monkeypatch):
    """Without ``max_tokens``, a CausalLM's passes hold at most LOGITS_BUDGET / V padded tokens."""
    import memlens.scoring.ragged as ragged

    lm = load_causal_lm(str(tiny_llama_dir))
    monkeypatch.setattr(ragged, "LOGITS_BUDGET", 100 * lm.vocab_size)  # -> 100 tokens per pass
    shapes = []
    hook = lm.model.register_forward_pre_hook(
        lambda _m, _a, kw: shapes.append(tuple(kw["input_ids"].shape)), with_kwargs=True
    )
    rng = np.random.default_rng(0)
    seqs = [rng.integers(1, lm.vocab_size, size=n) for n in (3, 40, 17, 64, 8, 25, 2, 50)]
    try:
        score_sequences(lm, seqs, batch_size=8)
    finally:
        hook.remove()
    assert shapes == [(1, 64), (2, 50), (4, 25), (1, 2)]


def test_bad_texts_and_token_ids_are_one_sentence(tiny_gpt2_dir):
    # each raised IndexError, TypeError/ValueError from the tokenizer, or scored the characters
    # of a single string as texts
    from memlens.scoring import score_texts

    lm = load_causal_lm(tiny_gpt2_dir, device="cpu")
    for texts, match in [
        ([], "there are no texts to score"),
        ("the cat", "a list of strings, not a single string"),
        (["the cat", 3], r"text 1 is not a string \(got int\)"),
    ]:
        with pytest.raises(UserError, match=match):
            score_texts(lm, texts)
    V = lm.vocab_size
    for bad in (V, -1):
        with pytest.raises(
            UserError, match=rf"token id {bad} is outside the vocabulary .*\(0 to {V - 1}\)"
        ):
            score_sequences(lm, [[0, 1, 2], [1, bad]])
