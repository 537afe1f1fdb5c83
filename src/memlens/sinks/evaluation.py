"""Evaluating a MemSinks experiment's models through the shared scoring engine: validation loss,
repeated loss, memorization gap and exact extraction, in bits per token.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from memlens.sinks.config import SinksConfig
from memlens.sinks.data import SinksData


def score_set(model, sink, mode: str, seqs: list[np.ndarray], argmax: bool = False, scale_cfg=None):
    """Teacher-forced scores of ``seqs`` under ``model`` in a sink ``mode`` (shared engine)."""
    from memlens.scoring import score_tokens
    from memlens.sinks.train import masked_forward, pad_sequences

    tokens, lengths = pad_sequences(seqs)
    fwd = masked_forward(model, scale_cfg or sink, mode)
    return score_tokens(
        fwd, tokens, lengths, batch_size=128, argmax=argmax, pass_attention_mask=True
    )


def _bits_per_token(scores) -> float:
    return float(np.nansum(np.where(scores.mask, -scores.log2p, 0.0)) / scores.mask.sum())


def _extraction(scores, prefix: int, n_lead: int) -> tuple[float, float, int]:
    """(exact extraction rate, mean suffix argmax accuracy, eligible count) from argmax flags,
    under the shared rule of :mod:`memlens.scoring.extraction`: the suffix is the rest of each
    sequence, at least 4 tokens."""
    from memlens.scoring import teacher_forced_extraction

    ext = teacher_forced_extraction(scores, prefix=prefix, suffix=None, n_lead=n_lead, min_suffix=4)
    return ext.rate, ext.mean_suffix_accuracy, ext.n_eligible


def _finite(x: float | int) -> float | int | None:
    return x if np.isfinite(x) else None


def evaluate(
    model, sink, mode: str, data: SinksData, cfg: SinksConfig, scale_cfg=None, n_fresh: int = 256
) -> dict:
    """Validation loss, repeated loss, memorization gap and extraction (bits per token)."""
    held = score_set(model, sink, mode, data.heldout, argmax=True, scale_cfg=scale_cfg)
    rep = score_set(
        model, sink, mode, [data.docs[i] for i in data.repeated], argmax=True, scale_cfg=scale_cfg
    )
    fresh_idx = data.fresh[: min(n_fresh, len(data.fresh))]
    fresh = score_set(model, sink, mode, [data.docs[i] for i in fresh_idx], scale_cfg=scale_cfg)
    val = _bits_per_token(held)
    rl = _bits_per_token(rep)
    # a rate over no eligible document (none has prefix + 4 tokens) is None, not NaN
    rep_rate, rep_acc, rep_n = (_finite(x) for x in _extraction(rep, cfg.prefix, data.n_lead))
    held_rate, held_acc, held_n = (_finite(x) for x in _extraction(held, cfg.prefix, data.n_lead))
    return {
        "val_loss": val,
        "repeated_loss": rl,
        "mem_gap": val - rl,
        "fresh_train_loss": _bits_per_token(fresh),
        "repeated_loss_per_sequence": rep.mean_nll_bits.tolist(),
        "extraction": {
            "prefix_tokens": cfg.prefix,
            "repeated_rate": rep_rate,
            "heldout_rate": held_rate,
            "rate_difference": None if None in (rep_rate, held_rate) else rep_rate - held_rate,
            "repeated_suffix_argmax_accuracy": rep_acc,
            "heldout_suffix_argmax_accuracy": held_acc,
            "n_repeated_eligible": rep_n,
            "n_heldout_eligible": held_n,
        },
    }


def _eval_rows(arm: str, model, sink, data, cfg) -> dict[str, dict]:
    from memlens.sinks.masks import SinkConfig

    if arm != "memsinks":
        return {arm: evaluate(model, None, "all", data, cfg)}
    unscaled = SinkConfig(sink.p_gen, sink.p_mem, drop_scale=1.0, mask_seed=sink.mask_seed)
    return {
        "memsinks": evaluate(model, sink, "own", data, cfg),
        "memsinks_sinks_dropped": evaluate(model, sink, "drop", data, cfg),
        "memsinks_sinks_dropped_unscaled": evaluate(
            model, sink, "drop", data, cfg, scale_cfg=unscaled
        ),
        "memsinks_sinks_scaled": evaluate(model, sink, "mean", data, cfg),
    }


def _curve_point(model, sink, arm: str, data: SinksData, cfg: SinksConfig, step: int) -> dict:
    n = min(128, len(data.heldout))
    held = data.heldout[:n]
    rep = [data.docs[i] for i in data.repeated]
    modes = ["own", "drop"] if arm == "memsinks" else ["all"]
    point: dict[str, Any] = {"step": step}
    for mode in modes:
        v = _bits_per_token(score_set(model, sink if arm == "memsinks" else None, mode, held))
        r = _bits_per_token(score_set(model, sink if arm == "memsinks" else None, mode, rep))
        point[mode] = {"val_loss": v, "repeated_loss": r}
    return point
