"""Observations of a tracker (one column per observed step) and their append-only Parquet store
(:class:`memlens.store.PartStore`): every flush becomes one part file written atomically, so a
crash loses at most the observations since the last flush.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from memlens.errors import UserError
from memlens.store import PartStore
from memlens.track.examples import TrackSet


@dataclass
class Observations:
    """Everything a tracker recorded, as ``[N examples, n observations]`` matrices.

    ``extracted`` is False for examples too short for extraction (see ``eligible``).
    ``score_seconds`` and ``train_seconds`` are per observation: the wall time of the scoring
    pass, and the training wall time accumulated before it.
    """

    steps: np.ndarray
    code_bits: np.ndarray
    unintended_bits: np.ndarray
    extracted: np.ndarray
    suffix_top1: np.ndarray
    score_seconds: np.ndarray
    train_seconds: np.ndarray

    @property
    def n(self) -> int:
        return len(self.steps)


CRITERIA = {
    "bits": (
        "memorized when unintended_bits >= threshold * reference_bits, i.e. the model's code length "
        "is at most (1 - threshold) of the reference's (Morris et al. 2025)"
    ),
    "extraction": (
        "memorized when greedy decoding from the first `prefix` tokens reproduces the next `suffix` "
        "tokens exactly (Carlini et al. 2023)"
    ),
}
"""The two memorization criteria. ``auto`` uses ``bits`` when the examples have reference bits,
else ``extraction``. The default threshold is 0.5: an example counts as memorized once the
model needs at most half the bits the reference needs for it."""


def resolve_criterion(criterion: str, examples: TrackSet) -> str:
    if criterion == "auto":
        return "bits" if examples.has_reference else "extraction"
    if criterion not in CRITERIA:
        raise UserError(
            f"unknown memorization criterion {criterion!r}; use auto, bits or extraction."
        )
    if criterion == "bits" and not examples.has_reference:
        raise UserError(
            "the bits criterion needs reference bits; give a reference or use extraction."
        )
    return criterion


def _stack(rows: list[dict[str, Any]]) -> Observations:
    return Observations(
        steps=np.array([r["step"] for r in rows], dtype=np.int64),
        code_bits=np.stack([r["code_bits"] for r in rows], axis=1),
        unintended_bits=np.stack([r["unintended_bits"] for r in rows], axis=1),
        extracted=np.stack([r["extracted"] for r in rows], axis=1),
        suffix_top1=np.stack([r["suffix_top1"] for r in rows], axis=1),
        score_seconds=np.array([r["score_seconds"] for r in rows]),
        train_seconds=np.array([r["train_seconds"] for r in rows]),
    )


def _concat(parts: list[Observations]) -> Observations:
    """Concatenate along observations; a step seen twice keeps its latest record."""
    parts = [p for p in parts if p.n]
    if not parts:
        return Observations(
            np.zeros(0, np.int64), *(np.zeros((0, 0)) for _ in range(4)), np.zeros(0), np.zeros(0)
        )
    cat = {
        f: np.concatenate([getattr(p, f) for p in parts], axis=-1)
        for f in Observations.__dataclass_fields__
    }
    steps = cat["steps"]
    # keep the last occurrence of each step, ordered by step
    last = {int(s): i for i, s in enumerate(steps)}
    order = np.array([last[s] for s in sorted(last)], dtype=np.int64)
    return Observations(**{k: v[..., order] for k, v in cat.items()})


def _write_part(parts_dir: Path, obs: Observations) -> Path:
    """One :class:`PartStore` part: a row per (step, example), the per-step times as metadata."""
    import pyarrow as pa

    N, n = obs.code_bits.shape
    table = pa.table(
        {
            "step": np.repeat(obs.steps, N),
            "example": np.tile(np.arange(N, dtype=np.int64), n),
            "code_bits": obs.code_bits.T.reshape(-1),
            "unintended_bits": obs.unintended_bits.T.reshape(-1),
            "extracted": obs.extracted.T.reshape(-1),
            "suffix_top1": obs.suffix_top1.T.reshape(-1),
        }
    )
    meta = [
        {"step": int(s), "score_seconds": float(a), "train_seconds": float(b)}
        for s, a, b in zip(obs.steps, obs.score_seconds, obs.train_seconds, strict=True)
    ]
    return PartStore(parts_dir).write(table, obs.steps[0], obs.steps[-1], meta)


def load_observations(
    directory: str | os.PathLike[str], n_examples: int | None = None
) -> Observations:
    """Read every Parquet part a tracker wrote to ``directory`` (unreadable parts are skipped)."""
    import pyarrow.parquet as pq

    directory = Path(directory)
    if n_examples is None:
        n_examples = len(pq.read_table(directory / "examples.parquet", columns=["example"]))
    parts = []
    for t, meta in PartStore(directory / "parts").read():
        if meta is None:
            continue
        steps = np.array([m["step"] for m in meta], dtype=np.int64)
        n = len(steps)
        cols = {
            c: t.column(c).to_numpy()
            for c in ("code_bits", "unintended_bits", "extracted", "suffix_top1")
        }
        parts.append(
            Observations(
                steps=steps,
                code_bits=cols["code_bits"].reshape(n, n_examples).T,
                unintended_bits=cols["unintended_bits"].reshape(n, n_examples).T,
                extracted=cols["extracted"].astype(bool).reshape(n, n_examples).T,
                suffix_top1=cols["suffix_top1"].reshape(n, n_examples).T,
                score_seconds=np.array([m["score_seconds"] for m in meta]),
                train_seconds=np.array([m["train_seconds"] for m in meta]),
            )
        )
    return _concat(parts)
