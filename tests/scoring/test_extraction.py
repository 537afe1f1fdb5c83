"""memlens.scoring.extraction: the one k-extraction rule, read off argmax flags by hand and
checked against Hugging Face ``generate`` and the KV-cached decoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers_hf import tiny_gpt2
from memlens.errors import UserError
from memlens.scoring import (
    TokenScores,
    extraction_eligible,
    hf_forward,
    k_extraction,
    score_sequences,
    teacher_forced_extraction,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_rule_and_flags_by_hand():
    # BOS + text; prefix 2, suffix 3: the suffix is tokens 3..5, predicted by columns 2..4.
    #   row 0: 6 ids (5 text tokens = 2 + 3): eligible; suffix columns all argmax -> extracted
    #   row 1: 5 ids (4 text tokens): not eligible, whatever its flags say
    #   row 2: 8 ids: eligible; suffix columns T, F, T -> not extracted, accuracy 2/3; the
    #          columns after the suffix (5, 6) do not count
    lengths = [6, 5, 8]
    flags = np.array(
        [
            [False, False, True, True, True, False, False],
            [True, True, True, True, False, False, False],
            [True, True, True, False, True, False, False],
        ]
    )
    mask = np.arange(7)[None, :] < np.array(lengths)[:, None] - 1
    scores = TokenScores(log2p=np.where(mask, -1.0, np.nan), mask=mask, is_argmax=flags & mask)
    ext = teacher_forced_extraction(scores, prefix=2, suffix=3, n_lead=1)
    assert ext.eligible.tolist() == [True, False, True]
    assert extraction_eligible(lengths, prefix=2, suffix=3, n_lead=1).tolist() == [
        True,
        False,
        True,
    ]
    assert ext.exact.tolist() == [True, False, False]
    np.testing.assert_allclose(ext.suffix_accuracy, [1.0, np.nan, 2 / 3])
    assert (
        ext.n_eligible == 2 and ext.rate == 0.5 and ext.mean_suffix_accuracy == pytest.approx(5 / 6)
    )
    # without the lead the window moves one column to the left: row 2's columns 1..3 are T, T, F
    ext0 = teacher_forced_extraction(scores, prefix=2, suffix=3, n_lead=0)
    assert ext0.eligible.tolist() == [True, True, True] and ext0.exact.tolist() == [
        False,
        True,
        False,
    ]
    # suffix=None (MemSinks): the rest of each sequence, at least min_suffix tokens of it.
    #   row 0: 3 tokens after the prefix, columns 2..4 all argmax -> extracted
    #   row 1: 2 tokens after the prefix, columns 2..3 argmax -> extracted (min_suffix 2)
    #   row 2: 5 tokens after the prefix, columns 2..6 = T, F, T, F, F -> accuracy 2/5
    rest = teacher_forced_extraction(scores, prefix=2, suffix=None, n_lead=1, min_suffix=2)
    assert rest.eligible.tolist() == [True, True, True]
    assert rest.exact.tolist() == [True, True, False]
    np.testing.assert_allclose(rest.suffix_accuracy, [1.0, 1.0, 2 / 5])
    rest3 = teacher_forced_extraction(scores, prefix=2, suffix=None, n_lead=1, min_suffix=3)
    assert rest3.eligible.tolist() == [True, False, True]
    with pytest.raises(UserError, match="at least 1 token"):
        teacher_forced_extraction(scores, prefix=0, suffix=3)
    with pytest.raises(UserError, match="do not fit the context of 4"):
        k_extraction(None, [], prefix=2, suffix=3, n_lead=1, context_length=4)


def test_teacher_forced_flags_and_kv_decoding_agree_with_hf_generate():
    # Sequences built from the model's own greedy continuations are extracted by construction;
    # the same with one suffix token changed are not, and real decoding then matches the true
    # suffix everywhere but that token (Pythia's match fraction 3/4, whatever the teacher-forced
    # accuracy after the change is).
    V, prefix, suffix = 40, 3, 4
    model = tiny_gpt2(V, n_positions=16, seed=3)
    g = torch.Generator().manual_seed(0)
    prompts = torch.cat(
        [torch.zeros(8, 1, dtype=torch.long), torch.randint(3, V, (8, prefix), generator=g)], 1
    )
    with torch.no_grad():
        gen = model.generate(
            prompts, attention_mask=torch.ones_like(prompts), do_sample=False, max_new_tokens=suffix,
            min_new_tokens=suffix, eos_token_id=None, pad_token_id=1,
        )[:, 1 + prefix :]  # fmt: skip
    seqs = []
    for i in range(8):
        cont = gen[i].clone()
        if i % 2:
            cont[i % suffix] = (cont[i % suffix] + 1) % V  # one wrong suffix token
        seqs.append(torch.cat([prompts[i], cont]).numpy())
    seqs.append(seqs[0][:-1])  # one suffix token short: not eligible
    scores = score_sequences(hf_forward(model), seqs, argmax=True, context_length=16)
    tf = teacher_forced_extraction(scores, prefix=prefix, suffix=suffix, n_lead=1)
    assert tf.eligible.tolist() == [True] * 8 + [False]
    assert tf.exact.tolist() == [True, False] * 4 + [False]
    decoded = k_extraction(model, seqs, prefix=prefix, suffix=suffix, n_lead=1, batch_size=3)
    np.testing.assert_array_equal(decoded.eligible, tf.eligible)
    np.testing.assert_array_equal(decoded.exact, tf.exact)
    np.testing.assert_allclose(decoded.match_fraction, [1.0, 0.75] * 4 + [np.nan])
    for i in range(8):
        np.testing.assert_array_equal(decoded.generated[i], gen[i].numpy())
