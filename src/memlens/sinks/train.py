"""Training with sequence IDs flowing with the batch, on packed rows that never mix documents.

Ghosal, Maini & Raghunathan, "Memorization Sinks", ICML 2025, arXiv:2507.09937. Each training
document (a "sequence") carries its ID (:func:`memlens.sinks.masks.sequence_ids`); a row of the
batch may hold several documents (:func:`pack_documents`), each position knows its document, the
attention is block-diagonal causal (a position sees only earlier positions of its own document)
and every position's MLP mask is its document's mask. No loss term is added: the loss is the
ordinary next-token cross-entropy over positions whose target belongs to the same document.

:func:`masked_forward` builds the forward that the scoring engine (:mod:`memlens.scoring`) calls to
evaluate a model in any sink mode (and with optional per-sequence ablations); it identifies each
row's sequence by hashing the row's tokens, so it works under the engine's own batching.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from memlens.errors import UserError
from memlens.models.gpt import GPT
from memlens.progress import ProgressFn, emit
from memlens.sinks.masks import SinkConfig, batch_masks, check_mode, own_masks, sequence_ids
from memlens.training import StepInfo, TrainConfig, train


@dataclass
class PackedRows:
    """Documents packed into fixed-width rows.

    Attributes
    ----------
    tokens: int64 ``[R, T]`` (padding is token 0).
    doc_index: int64 ``[R, T]``: which document each position holds, ``-1`` for padding.
    doc_ids: uint64 ``[D]``: each document's sequence ID.
    positions: int64 ``[R, T]``: each position's offset inside its document (0 at a document's
        first token), so a document gets the same position embeddings wherever it is packed.
    """

    tokens: np.ndarray
    doc_index: np.ndarray
    doc_ids: np.ndarray
    positions: np.ndarray

    @property
    def multi_doc(self) -> bool:
        """Some row holds more than one document (attention needs the document mask)."""
        starts = (self.doc_index[:, 1:] != self.doc_index[:, :-1]) & (self.doc_index[:, 1:] >= 0)
        return bool(starts.any())

    @property
    def one_doc_per_row(self) -> bool:
        """Every row is exactly one document with no padding (no document mask needed)."""
        first = self.doc_index[:, :1]
        return bool((self.doc_index == first).all() and (first >= 0).all())

    def __len__(self) -> int:
        return self.tokens.shape[0]


def pack_documents(docs: Sequence[np.ndarray], order: Sequence[int], width: int) -> PackedRows:
    """Pack document occurrences ``order`` (indices into ``docs``, repeats allowed) into rows.

    Documents are placed in the given order, each wholly in one row (a document longer than
    ``width`` is an error); a new row starts when the next document does not fit. IDs are
    computed once per distinct document.
    """
    lengths = np.array([len(d) for d in docs])
    if len(lengths) and lengths.max() > width:
        raise UserError(
            f"a document of {lengths.max()} tokens does not fit rows of {width} tokens."
        )
    rows_tok: list[np.ndarray] = []
    rows_doc: list[np.ndarray] = []
    rows_pos: list[np.ndarray] = []

    def new_row() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return np.zeros(width, np.int64), np.full(width, -1, np.int64), np.zeros(width, np.int64)

    cur_tok, cur_doc, cur_pos = new_row()
    fill = 0
    for d in order:
        n = int(lengths[d])
        if fill + n > width:
            rows_tok.append(cur_tok)
            rows_doc.append(cur_doc)
            rows_pos.append(cur_pos)
            cur_tok, cur_doc, cur_pos = new_row()
            fill = 0
        cur_tok[fill : fill + n] = docs[d]
        cur_doc[fill : fill + n] = d
        cur_pos[fill : fill + n] = np.arange(n)
        fill += n
    if fill:
        rows_tok.append(cur_tok)
        rows_doc.append(cur_doc)
        rows_pos.append(cur_pos)
    empty = np.zeros((0, width), dtype=np.int64)
    return PackedRows(
        tokens=np.stack(rows_tok) if rows_tok else empty,
        doc_index=np.stack(rows_doc) if rows_doc else empty,
        doc_ids=sequence_ids(list(docs)),
        positions=np.stack(rows_pos) if rows_pos else empty,
    )


def pad_sequences(seqs: Sequence[np.ndarray] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad token arrays with 0 into ``[N, T_max]``; returns ``(tokens, lengths)``."""
    seqs = [np.asarray(x, dtype=np.int64) for x in seqs]
    lengths = np.array([len(x) for x in seqs], dtype=np.int64)
    out = np.zeros((len(seqs), int(lengths.max()) if len(seqs) else 0), dtype=np.int64)
    for i, x in enumerate(seqs):
        out[i, : len(x)] = x
    return out, lengths


def rows_of_equal_docs(tokens: np.ndarray, order: Sequence[int]) -> PackedRows:
    """Rows for equal-length documents: row ``i`` is document ``order[i]`` (no packing needed)."""
    tokens = np.asarray(tokens)
    order = np.asarray(order, dtype=np.int64)
    return PackedRows(
        tokens=tokens[order],
        doc_index=np.repeat(order[:, None], tokens.shape[1], axis=1),
        doc_ids=sequence_ids(tokens),
        positions=np.broadcast_to(np.arange(tokens.shape[1]), (len(order), tokens.shape[1])),
    )


class SinkTrainConfig(TrainConfig):
    """Optimization for :func:`train_model`: :class:`memlens.training.TrainConfig` with this
    experiment's defaults (AdamW with weight decay 0.1 on matrices, linear warm-up then a cosine
    decay to 10% of ``lr``, global gradient-norm clip 1.0)."""

    schedule: Literal["constant", "wsd", "cosine"] = "cosine"
    max_steps: int = Field(default=1000, ge=1)
    batch_size: int = Field(default=32, ge=1)
    warmup_steps: int = Field(default=50, ge=0)
    weight_decay: float = Field(default=0.1, ge=0)
    grad_clip: float = Field(default=1.0, ge=0)


def row_masks(
    rows: PackedRows, r: np.ndarray, sink: SinkConfig, n_layer: int, hidden: int
) -> list[Tensor]:
    """Per-layer training masks for the rows ``r``: each position gets its document's mask.

    Returns ``[1, B, 1, H]`` per layer when every row is one document (then right padding, never
    attended by a real token and never a target, takes the row's mask), else ``[1, B, T, H]``
    (padding positions all ones).
    """
    di = rows.doc_index[r]  # [B, T]
    one_doc = ((di == di[:, :1]) | (di < 0)).all() and (di[:, 0] >= 0).all()
    if one_doc:
        return batch_masks("own", sink, n_layer, hidden, rows.doc_ids[di[:, 0]])
    docs = np.unique(di[di >= 0])
    table = np.ones((len(docs) + 1, n_layer, hidden), dtype=np.float32)  # last row: padding
    table[:-1] = own_masks(rows.doc_ids[docs], n_layer, hidden, sink)
    pos = np.where(di >= 0, np.searchsorted(docs, np.maximum(di, 0)), len(docs))
    m = torch.from_numpy(table[pos])  # [B, T, L, H]
    return [m[None, :, :, layer, :] for layer in range(n_layer)]


def lm_loss(logits: Tensor, tokens: Tensor, doc_index: Tensor | None) -> Tensor:
    """Mean next-token cross-entropy (nats) over targets in the same document as their context."""
    V = logits.shape[-1]
    pred = logits[..., :-1, :].reshape(-1, V).float()
    tgt = tokens[..., 1:].reshape(-1)
    if doc_index is None:
        return F.cross_entropy(pred, tgt)
    valid = ((doc_index[..., 1:] == doc_index[..., :-1]) & (doc_index[..., 1:] >= 0)).reshape(-1)
    loss = F.cross_entropy(pred, tgt, reduction="none")
    return (loss * valid).sum() / valid.sum().clamp_min(1)


def train_model(
    model: GPT,
    rows: PackedRows,
    order: np.ndarray,
    config: SinkTrainConfig,
    sink: SinkConfig | None = None,
    *,
    seed: int = 0,
    callback: Callable[[int], None] | None = None,
    callback_every: int = 0,
    progress: ProgressFn | None = None,
    task: str = "training",
) -> dict:
    """Train a single-model :class:`GPT` on ``rows`` in the order ``order`` (row indices).

    Step ``s`` uses rows ``order[s*B : (s+1)*B]`` (wrapping around), through the one training
    loop (:func:`memlens.training.train`). With ``sink`` the MemSinks masks of each row's documents
    are applied (Ghosal et al. 2025); without it this is standard training. Packed rows get the
    document attention mask and positions restarting at 0 in every document. Weight decay applies
    to the weight matrices and the token embedding only. ``callback(step)`` runs every
    ``callback_every`` steps; ``progress`` receives a :class:`~memlens.progress.ProgressEvent`
    for ``task`` every 10 steps. Returns ``{"steps", "seconds", "train_loss_bits"}`` (the mean
    training loss, bits per token, in 20 equal windows of the run).
    """
    if model.n_models != 1:
        raise ValueError("train_model trains one model (n_models=1)")
    torch.manual_seed(seed)
    n_layer, hidden = model.config.n_layer, 4 * model.config.d_model
    if sink is not None:
        sink.split(hidden)
    padded = not rows.one_doc_per_row  # some targets must be ignored (padding, boundaries)
    packed = rows.multi_doc  # attention must be kept inside documents
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if name.endswith(("_w", "wte")) else no_decay).append(p)
    optimizer = config.make_optimizer(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
    )
    tokens_all = torch.from_numpy(rows.tokens)
    doc_all = torch.from_numpy(rows.doc_index)
    pos_all = torch.from_numpy(np.ascontiguousarray(rows.positions))
    B, steps = config.batch_size, config.max_steps
    order = np.asarray(order, dtype=np.int64)
    windows = np.zeros(20)
    counts = np.zeros(20)

    def batch_at(step: int) -> tuple[Tensor, Tensor | None, list[Tensor] | None, Tensor | None]:
        r = order[np.arange(step * B, (step + 1) * B) % len(order)]
        x = tokens_all[r]
        di = doc_all[r] if padded else None
        masks = row_masks(rows, r, sink, n_layer, hidden) if sink is not None else None
        pos = pos_all[r][None] if packed else None
        return x, di, masks, pos

    def loss_of(model: GPT, batch: tuple) -> Tensor:
        x, di, masks, pos = batch
        logits = model(
            x[None], doc_ids=di[None] if packed else None, mlp_masks=masks, position_ids=pos
        )
        return lm_loss(logits[0], x, di)

    def observe(info: StepInfo) -> None:
        w = min(19, (info.step - 1) * 20 // steps)
        windows[w] += float(info.loss.detach())
        counts[w] += 1
        if callback is not None and callback_every and info.step % callback_every == 0:
            callback(info.step)
            model.train()
        if info.step % 10 == 0 or info.last:
            emit(progress, task, info.step, steps)

    start = time.perf_counter()
    train(model, config, batch_at, loss_of, optimizer=optimizer, observers=[observe])
    model.eval()
    with np.errstate(invalid="ignore"):
        curve = (windows / np.maximum(counts, 1) / math.log(2)).tolist()
    return {"steps": steps, "seconds": time.perf_counter() - start, "train_loss_bits": curve}


def masked_forward(
    model: GPT,
    sink: SinkConfig | None,
    mode: str = "all",
    ablate: dict[int, np.ndarray] | None = None,
    scale: np.ndarray | None = None,
) -> Callable[..., Tensor]:
    """A forward for :func:`memlens.scoring.score_tokens` that applies a sink mode and ablations.

    Rows are identified by hashing their tokens; with right padding, call the engine with
    ``pass_attention_mask=True`` so the lengths are known.

    Parameters
    ----------
    model: a single-model :class:`GPT`.
    sink: the sink configuration (``None`` for a standard model: only ``"all"`` is allowed).
    mode: ``"own"`` (each row's own mask, from the hash of its tokens), ``"drop"``, ``"mean"`` or
        ``"all"`` (see :mod:`memlens.sinks.masks`).
    ablate: optional ``{sequence ID: float [L, H] multiplier}``; a row whose sequence ID is a key
        has its MLP units multiplied by it as well (zeros ablate units).
    scale: optional float ``[L, H]`` multiplier for every row (e.g. one ablation for all rows).
    """
    check_mode(mode)
    n_layer, hidden = model.config.n_layer, 4 * model.config.d_model
    if sink is None and mode != "all":
        raise ValueError("a model trained without sinks has only mode 'all'")

    def fwd(ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        squeeze = ids.dim() == 2
        x = ids if not squeeze else ids[None]
        rows = x[0]
        need_ids = mode == "own" or ablate is not None
        masks: list[Tensor] | None = None
        if need_ids:
            lengths = (
                None
                if attention_mask is None
                else attention_mask.reshape(-1, rows.shape[-1])[: rows.shape[0]].sum(-1).tolist()
            )
            row_ids = sequence_ids(rows.cpu(), lengths)
        if sink is not None and mode != "all":
            masks = batch_masks(
                mode, sink, n_layer, hidden, row_ids if mode == "own" else None, rows.device
            )
        if ablate is not None:
            extra = np.ones((rows.shape[0], n_layer, hidden), dtype=np.float32)
            for i, sid in enumerate(row_ids.tolist()):
                a = ablate.get(sid)
                if a is not None:
                    extra[i] = a
            extra_t = torch.from_numpy(extra).to(rows.device)
            base = masks or [None] * n_layer
            masks = [
                extra_t[None, :, layer, None, :] * (1.0 if b is None else b)
                for layer, b in enumerate(base)
            ]
        if scale is not None:
            s_t = torch.as_tensor(scale, dtype=torch.float32, device=rows.device)
            base = masks or [None] * n_layer
            masks = [s_t[layer] * (1.0 if b is None else b) for layer, b in enumerate(base)]
        out = model(x, mlp_masks=masks)
        return out[0] if squeeze else out

    return fwd
