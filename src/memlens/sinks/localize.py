"""Is memorization localized? Per-neuron attribution and top-k versus random-k ablation.

For each memorized sequence ``x`` of a model (Maini et al. 2023, "Can neural network memorization
be localized?"; Ghosal, Maini & Raghunathan 2025, "Memorization Sinks", arXiv:2507.09937, Sec. on
localization), with ``L(x)`` its code length in bits over the predicted tokens:

1. **Attribution** (activation x gradient, first order): every MLP hidden unit ``j`` of every layer
   is multiplied by a mask value ``m_j`` (1 for a standard model; the sequence's own MemSinks mask
   otherwise). The predicted increase of ``L(x)`` when unit ``j`` is zeroed is
   ``A_j = -m_j * dL(x)/dm_j = -sum_t a_tj * dL/d(a_tj m_j) * m_j``, read off one backward pass
   through per-row masks.
2. **Ablation**: zero the ``k`` units with the largest ``A_j`` (among units that are on for ``x``),
   or ``k`` units drawn uniformly from the units that are on, and re-score ``x`` through the
   scoring engine.
3. **Collateral damage** ``c(x)``: the increase of the held-out loss (bits per token, on a
   fixed sample of held-out sequences) when the units chosen for ``x`` are ablated.
4. **Fraction of memorization removed** at ``k``: the relative reduction of the memorization gap,
   ``1 - sum_x [(val + c(x)) - loss_ablated(x)] / sum_x [val - loss(x)]``, losses in bits per
   token, ``val`` the model's held-out loss. It is net of collateral damage: an ablation that
   raises every loss alike removes nothing. 1 means the sequences are predicted no better than
   held-out ones; 0 means nothing was removed. Undefined (``None``) when the sequences have no
   positive gap to remove (they are not predicted better than held-out ones).

Memorization is *localized* when top-k ablation removes much more than k random units at little
collateral cost.
"""

from __future__ import annotations

import numpy as np
import torch

from memlens.models.gpt import GPT
from memlens.scoring import score_tokens, token_log2p
from memlens.sinks.masks import SinkConfig, batch_masks, sequence_ids
from memlens.sinks.train import masked_forward, pad_sequences


def unit_attribution(
    model: GPT, sink: SinkConfig | None, mode: str, tokens, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """``(A, m)``: per-sequence predicted loss increase ``A [N, L, H]`` (bits) and masks ``m``.

    ``tokens`` is ``[N, T]`` or a list of token arrays (right-padded here; padding is neither
    context nor target). ``mode`` is ``"all"`` for a standard model or ``"own"`` for a MemSinks
    model with each sequence's own mask.
    """
    n_layer, hidden = model.config.n_layer, 4 * model.config.d_model
    tokens, lengths = pad_sequences(tokens)
    N, T = tokens.shape
    valid_all = torch.arange(T - 1)[None, :] < torch.as_tensor(lengths)[:, None] - 1  # [N, T-1]
    A = np.zeros((N, n_layer, hidden))
    M = np.ones((N, n_layer, hidden), dtype=np.float32)
    was = model.training
    model.eval()
    for start in range(0, N, batch_size):
        x = torch.as_tensor(tokens[start : start + batch_size])
        b = x.shape[0]
        valid = valid_all[start : start + b]
        if mode == "own":
            ids = sequence_ids(x, lengths[start : start + b])
            base = batch_masks("own", sink, n_layer, hidden, ids)
            m = torch.stack([t[0, :, 0, :] for t in base], dim=1)  # [b, L, H]
        else:
            m = torch.ones(b, n_layer, hidden)
        m = m.clone().requires_grad_(True)
        masks = [m[None, :, layer, None, :] for layer in range(n_layer)]
        logits = model(x[None], mlp_masks=masks)[0]
        # summed over rows: each row's mask only sees its own row's code length
        bits = -(token_log2p(logits[:, :-1], x[:, 1:]) * valid).sum()
        (g,) = torch.autograd.grad(bits, m)
        A[start : start + b] = (-(m * g)).detach().double().numpy()
        M[start : start + b] = m.detach().numpy()
    model.train(was)
    return A, M


def _mean_loss(model, sink, mode, seqs, ablate=None, scale=None) -> np.ndarray:
    """Per-sequence mean code length, bits per predicted token, through the scoring engine."""
    tokens, lengths = pad_sequences(seqs)
    fwd = masked_forward(model, sink, mode, ablate=ablate, scale=scale)
    s = score_tokens(fwd, tokens[None], lengths, pass_attention_mask=True)
    return s.mean_nll_bits[0]


def ablation_curve(
    model: GPT,
    sink: SinkConfig | None,
    mode: str,
    memorized: list[np.ndarray] | np.ndarray,
    heldout: list[np.ndarray] | np.ndarray,
    ks: list[int],
    *,
    n_random: int = 3,
    n_collateral: int = 16,
    seed: int = 0,
) -> dict:
    """Top-k versus random-k ablation for the ``memorized`` sequences (see module doc).

    Sequences are token arrays (any lengths up to the context); losses are per-sequence means
    in bits per predicted token, averaged over sequences.

    Returns per ``k`` the fraction of memorization removed and the collateral held-out loss
    increase (bits per token) for the top-k and the random units, plus, for MemSinks models, the
    share of the top-k units that are sink units.
    """
    rng = np.random.default_rng(seed)
    memorized = [np.asarray(x) for x in memorized]
    heldout = [np.asarray(x) for x in heldout]
    n_layer, hidden = model.config.n_layer, 4 * model.config.d_model
    val = float(np.mean(_mean_loss(model, sink, mode, heldout)))
    base = _mean_loss(model, sink, mode, memorized)
    gap = val - base  # per sequence, bits per token
    A, M = unit_attribution(model, sink, mode, memorized)
    ids = sequence_ids(memorized).tolist()
    if len(set(ids)) != len(ids):
        raise ValueError("memorized sequences must be distinct")
    on = (M > 0).reshape(len(ids), -1)
    flatA = np.where(on, A.reshape(len(ids), -1), -np.inf)
    order = np.argsort(-flatA, axis=1, kind="stable")
    coll_idx = rng.choice(len(heldout), size=min(n_collateral, len(heldout)), replace=False)
    coll = [heldout[i] for i in coll_idx]
    coll_base = float(np.mean(_mean_loss(model, sink, mode, coll)))
    n_general = sink.split(hidden)[0] if sink is not None else hidden
    out = {
        "val_loss": val,
        "n_sequences": len(ids),
        "mean_gap": float(gap.mean()),
        "n_collateral_sequences": len(coll),
        "attribution": "activation x gradient (first order)",
        "ks": [],
    }
    for k in ks:
        res: dict[str, list] = {}
        share = None
        for kind in ["top"] + ["random"] * n_random:
            abl: dict[int, np.ndarray] = {}
            chosen_all = []
            for i, sid in enumerate(ids):
                if kind == "top":
                    chosen = order[i, : min(k, int(on[i].sum()))]
                else:
                    cand = np.flatnonzero(on[i])
                    chosen = rng.choice(cand, size=min(k, len(cand)), replace=False)
                a = np.ones(n_layer * hidden, dtype=np.float32)
                a[chosen] = 0.0
                abl[sid] = a.reshape(n_layer, hidden)
                chosen_all.append(chosen)
            after = _mean_loss(model, sink, mode, memorized, ablate=abl)
            # collateral: the same units ablated while predicting held-out sequences
            coll_inc = np.array(
                [
                    float(np.mean(_mean_loss(model, sink, mode, coll, scale=abl[sid]))) - coll_base
                    for sid in ids
                ]
            )
            gap_after = (val + coll_inc) - after
            res.setdefault(kind, []).append(
                (
                    # no positive gap to remove: the share is undefined (None, not NaN)
                    float(1.0 - gap_after.sum() / gap.sum()) if gap.sum() > 0 else None,
                    float((after - base).mean()),
                    float(coll_inc.mean()),
                )
            )
            if kind == "top" and sink is not None:
                units = np.concatenate(chosen_all) % hidden
                share = float(np.mean(units >= n_general))
        top = res["top"][0]
        draws = [r[0] for r in res["random"]]
        rnd = np.array([r[1:] for r in res["random"]])
        out["ks"].append(
            {
                "k": int(k),
                "top_removed": top[0],
                "random_removed": None if None in draws else float(np.mean(draws)),
                "random_removed_draws": draws,
                "top_repeated_loss_increase": top[1],
                "random_repeated_loss_increase": float(rnd[:, 0].mean()),
                "top_collateral": top[2],
                "random_collateral": float(rnd[:, 1].mean()),
                "top_share_sink_units": share,
            }
        )
    return out
