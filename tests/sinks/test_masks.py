"""MemSinks masks (Ghosal, Maini & Raghunathan 2025): deterministic per ID, documented fractions,
no all-ones mask, the inference modes, and the hash/generator against reference values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from memlens.errors import UserError
from memlens.sinks.masks import (
    SinkConfig,
    mode_mask,
    own_masks,
    sequence_id,
    sequence_ids,
    sink_subsets,
    splitmix64_stream,
)


def test_splitmix64_matches_reference_outputs():
    # Reference SplitMix64 (Vigna's splitmix64.c) seeded with 1234567: first three outputs.
    out = splitmix64_stream(np.array([1234567], dtype=np.uint64), 3)[0]
    assert out.tolist() == [6457827717110365317, 3203168211198807973, 9817491932198370423]


def test_sequence_id_is_blake2b_of_int64_tokens_and_ignores_dtype_and_padding():
    import hashlib

    toks = [5, 0, 17, 255]
    expected = int.from_bytes(
        hashlib.blake2b(np.array(toks, dtype="<i8").tobytes(), digest_size=8).digest(), "little"
    )
    assert sequence_id(toks) == expected
    assert sequence_id(np.array(toks, dtype=np.int32)) == expected
    assert sequence_id(torch.tensor(toks)) == expected
    padded = np.array([toks + [0, 0], [1, 2, 3, 4, 5, 6]])
    ids = sequence_ids(padded, lengths=[4, 6])
    assert int(ids[0]) == expected
    assert int(ids[1]) == sequence_id([1, 2, 3, 4, 5, 6])
    # order matters: a permutation is a different sequence
    assert sequence_id([17, 0, 5, 255]) != expected


def test_split_numbers_are_the_documented_fractions():
    cfg = SinkConfig()  # p_gen 0.7, p_mem 0.3
    # H = 256: round(0.7*256) = 179 general, 77 sinks, round(0.3*77) = 23 on per sequence
    assert cfg.split(256) == (179, 77, 23)
    assert cfg.split(128) == (90, 38, 11)
    assert cfg.active_fraction(256) == pytest.approx((179 + 23) / 256)
    assert cfg.sink_drop_scale == pytest.approx(1.0 / 0.7)
    assert SinkConfig(0.5, 0.2).sink_drop_scale == pytest.approx(0.7 / 0.5)
    assert SinkConfig(drop_scale=1.0).sink_drop_scale == 1.0


def test_masks_are_deterministic_per_id_and_independent_of_the_batch():
    cfg = SinkConfig()
    ids = sequence_ids(np.random.default_rng(0).integers(0, 50, size=(40, 12)))
    a = own_masks(ids, 3, 256, cfg)
    b = own_masks(ids[::-1].copy(), 3, 256, cfg)[::-1]
    c = np.stack([own_masks(ids[i : i + 1], 3, 256, cfg)[0] for i in range(len(ids))])
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    # the same tokens give the same mask; a repeated sequence always trains the same sinks
    again = own_masks(
        sequence_ids(np.random.default_rng(0).integers(0, 50, size=(40, 12))), 3, 256, cfg
    )
    np.testing.assert_array_equal(a, again)
    # a different mask seed gives different masks for the same IDs
    other = own_masks(ids, 3, 256, SinkConfig(mask_seed=1))
    assert (other != a).any(axis=(1, 2)).all()


def test_general_units_always_on_and_exactly_k_sinks_never_all_ones():
    cfg = SinkConfig()
    n_general, n_sink, k = cfg.split(256)
    ids = np.arange(5000, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    m = own_masks(ids, 2, 256, cfg)
    assert set(np.unique(m).tolist()) == {0.0, 1.0}
    assert (m[:, :, :n_general] == 1).all()
    on = m[:, :, n_general:].sum(-1)
    assert (on == k).all()  # exactly p_mem of the pool: never all ones, never all zeros
    assert not (m[:, :, n_general:] == 1).all(-1).any()
    # every sink unit is on for a fraction k / n_sink of IDs (binomial, 5000 x 2 draws)
    freq = m[:, :, n_general:].mean(0)
    p = k / n_sink
    sd = np.sqrt(p * (1 - p) / len(ids))
    assert np.abs(freq - p).max() < 5 * sd
    # layers choose independently: the overlap of two layers' subsets is hypergeometric, mean k*k/n
    overlap = (m[:, 0, n_general:] * m[:, 1, n_general:]).sum(-1)
    assert overlap.mean() == pytest.approx(k * k / n_sink, rel=0.05)


def test_subsets_of_distinct_ids_differ():
    ids = sequence_ids(np.arange(2000).reshape(1000, 2))
    sub = sink_subsets(ids, 1, 77, 23)[:, 0]
    assert len({row.tobytes() for row in sub}) == 1000


def test_inference_mode_masks():
    cfg = SinkConfig()
    n_general = 179
    drop = mode_mask("drop", 256, cfg)
    np.testing.assert_allclose(drop[:n_general], (0.7 + 0.3) / 0.7)
    assert (drop[n_general:] == 0).all()
    mean = mode_mask("mean", 256, cfg)
    assert (mean[:n_general] == 1).all()
    np.testing.assert_allclose(mean[n_general:], 0.3)
    assert (mode_mask("all", 256, cfg) == 1).all()
    # "mean" is the expected training mask up to rounding: each sink on with prob k/n_sink = 23/77
    ids = np.arange(20000, dtype=np.uint64)
    emp = own_masks(ids, 1, 256, cfg)[:, 0].astype(np.float64).mean(0)
    np.testing.assert_allclose(emp[n_general:].mean(), 23 / 77, rtol=1e-9)
    with pytest.raises(UserError):
        mode_mask("nope", 256, cfg)


@pytest.mark.parametrize(
    "kwargs",
    [{"p_gen": 1.0}, {"p_gen": 0.0}, {"p_mem": 1.0}, {"p_mem": -0.1}, {"drop_scale": 0.0}],
)
def test_bad_fractions_are_user_errors(kwargs):
    with pytest.raises(UserError):
        SinkConfig(**kwargs)


def test_too_few_sink_units_is_a_user_error():
    with pytest.raises(UserError, match="sink units"):
        SinkConfig().split(4)  # 3 general, 1 sink: cannot be neither all on nor all off
    with pytest.raises(UserError):
        SinkConfig(p_mem=0.01).split(64)  # round(0.01 * 19) = 0 sinks on
