"""The scoring reduction in blocks (bounded memory) gives the same numbers as in one piece."""

from __future__ import annotations

import pytest
import torch

from memlens.scoring import core


@pytest.mark.parametrize("chunk", [4, 10, 35, 70, 1 << 24])  # pieces of rows, rows, row blocks
def test_blockwise_reduction_equals_one_block(monkeypatch, chunk):
    g = torch.Generator().manual_seed(0)
    full = torch.randn(2, 3, 6, 7, generator=g) * 3  # [K, B, T, V]
    logits = full[..., :-1, :]  # the engine reduces this (non-contiguous) slice: T' = 5
    targets = torch.randint(0, 7, (2, 3, 5), generator=g)
    want = core._reduce_block(logits, targets, True, True)
    monkeypatch.setattr(core, "REDUCE_CHUNK", chunk)
    got = core._reduce_logits(logits, targets, True, True)
    assert got.keys() == want.keys()
    for k in want:
        assert got[k].shape == want[k].shape == (2, 3, 5)
        assert torch.equal(got[k], want[k]), k
    # log2 p by hand for one position
    lp = torch.log_softmax(logits[1, 2, 3], -1)[targets[1, 2, 3]] / torch.log(torch.tensor(2.0))
    assert torch.isclose(got["log2p"][1, 2, 3], lp)
