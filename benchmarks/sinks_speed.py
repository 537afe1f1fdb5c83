"""What MemSinks training costs, on this machine (prints both times and the ratio for each).

1. Sink masks: a training step with each row's own MemSinks mask (IDs hashed, masks built per
   batch) versus the same step without masks.
2. Packing: one epoch over variable-length documents packed into rows with document attention
   masks and per-document positions, versus one document per row right-padded to the row width.
3. The three arms: one batched K=3 model stack (``GPT(n_models=3)``) versus three K=1 models
   trained one after another (what ``memlens sinks`` does, so each arm is its own resumable cell).

Usage: ``.venv/bin/python benchmarks/sinks_speed.py [--threads 1] [--steps 30]``
"""

from __future__ import annotations

import argparse
import timeit

import numpy as np
import torch

from memlens.models.gpt import GPT, GPTConfig
from memlens.sinks import (
    SinkConfig,
    SinkTrainConfig,
    pack_documents,
    rows_of_equal_docs,
    train_model,
)


def timed(fn, repeats: int = 3) -> float:
    """Best wall time of ``repeats`` calls (seconds)."""
    return min(timeit.repeat(fn, number=1, repeat=repeats))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=30)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    V, S, L, d, B = 128, 64, 2, 64, 32
    cfg = GPTConfig(V, S, L, d)
    rng = np.random.default_rng(0)
    tc = SinkTrainConfig(max_steps=a.steps, batch_size=B, warmup_steps=1)
    print(
        f"GPT L={L} d={d} V={V}, rows of {S} tokens, batch {B}, {a.steps} steps, {a.threads} thread(s); best of 3"
    )

    # 1. sink masks
    docs = rng.integers(0, V, size=(a.steps * B, S))
    rows = rows_of_equal_docs(docs, np.arange(len(docs)))

    def run(sink):
        model = GPT(cfg, 1, generator=torch.Generator().manual_seed(0))
        train_model(model, rows, np.arange(len(docs)), tc, sink)

    t_plain = timed(lambda: run(None))
    t_sink = timed(lambda: run(SinkConfig()))
    print(
        f"[masks]   standard {t_plain:.2f} s   MemSinks {t_sink:.2f} s   ratio {t_sink / t_plain:.2f}x"
    )

    # 2. packing variable-length documents (lengths 8..64) vs one padded document per row
    lengths = rng.integers(8, S + 1, size=a.steps * B)
    vdocs = [rng.integers(0, V, size=n) for n in lengths]
    order = np.arange(len(vdocs))
    packed = pack_documents(vdocs, order, S)
    padded = pack_documents(vdocs, order, S)  # fill the layout one document per row
    padded.tokens = np.zeros((len(vdocs), S), dtype=np.int64)
    padded.doc_index = np.full((len(vdocs), S), -1, dtype=np.int64)
    padded.positions = np.zeros((len(vdocs), S), dtype=np.int64)
    for i, doc in enumerate(vdocs):
        padded.tokens[i, : len(doc)] = doc
        padded.doc_index[i, : len(doc)] = i
        padded.positions[i, : len(doc)] = np.arange(len(doc))

    def epoch(r):
        model = GPT(cfg, 1, generator=torch.Generator().manual_seed(0))
        steps = int(np.ceil(len(r) / B))
        train_model(
            model,
            r,
            np.arange(len(r)),
            SinkTrainConfig(max_steps=steps, batch_size=B, warmup_steps=1),
            SinkConfig(),
        )

    t_pad = timed(lambda: epoch(padded))
    t_pack = timed(lambda: epoch(packed))
    fill = lengths.sum() / (len(packed) * S)
    print(
        f"[packing] {len(vdocs)} documents, {lengths.sum()} tokens: padded {len(padded)} rows {t_pad:.2f} s   "
        f"packed {len(packed)} rows ({fill:.0%} full) {t_pack:.2f} s   ratio {t_pad / t_pack:.2f}x faster packed"
    )

    # 3. three arms batched (K=3) vs sequential (3 x K=1), forward + backward + Adam
    x = torch.from_numpy(docs[: a.steps * B].reshape(a.steps, B, S))

    def train_k(k: int, n_runs: int):
        for _ in range(n_runs):
            model = GPT(cfg, k, generator=torch.Generator().manual_seed(0))
            opt = torch.optim.Adam(model.parameters(), 1e-3)
            for s in range(a.steps):
                ids = x[s][None].expand(k, B, S)
                logits = model(ids[..., :-1])
                loss = (
                    torch.nn.functional.cross_entropy(
                        logits.reshape(-1, V), ids[..., 1:].reshape(-1)
                    )
                    * k
                )
                opt.zero_grad()
                loss.backward()
                opt.step()

    t_batched = timed(lambda: train_k(3, 1))
    t_seq = timed(lambda: train_k(1, 3))
    print(
        f"[arms]    batched K=3 {t_batched:.2f} s   sequential 3 x K=1 {t_seq:.2f} s   ratio {t_seq / t_batched:.2f}x"
    )


if __name__ == "__main__":
    main()
