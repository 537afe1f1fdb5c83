"""A shadows directory, as ``memlens shadow train`` writes it and the other two recipes read it.

Layout::

    manifest.json        config, seed, versions, git revision
    shadow.json          summary (:class:`~memlens.shadow.summary.ShadowTrainSummary`)
    pool.parquet         one row per example: id, role (candidate/population), text, tokens, count
    tokens.npz           token ids [N, S] and lengths [N] of every example
    keep.npy             bool [K, n]: True = candidate i in model k's training set
    signals.npz          [K, n] loglik_bits, mean_log2p, accuracy, lira_phi (and z_* [K, m] for
                         the population); n_tokens
    token_scores.npz     float32 [K, N, S-1] per-token log2 p, mu and sigma (the baselines)
    tokenizer/           the tokenizer (text worlds)
    models/model_XX/     each shadow as a memlens GPT checkpoint (safetensors), loadable by
                         every memlens command that takes a model
    cells/               one finished stack per cell (resume)
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from memlens.errors import UserError
from memlens.shadow.signals import Signals
from memlens.shadow.summary import ShadowTrainSummary

#: The files every finished shadows directory holds.
REQUIRED = ("shadow.json", "keep.npy", "signals.npz", "pool.parquet", "tokens.npz")


@dataclass
class Shadows:
    """A finished shadows directory, loaded (see the module docstring for the files)."""

    path: Path
    summary: ShadowTrainSummary
    keep: np.ndarray
    signals: Signals  # [K, n] over the candidates
    z_signals: Signals  # [K, m] over the population
    pool: Any  # pandas DataFrame
    tokens: np.ndarray
    lengths: np.ndarray

    @property
    def n_models(self) -> int:
        return int(self.keep.shape[0])

    @property
    def candidates(self) -> np.ndarray:
        return np.flatnonzero(self.pool["role"].to_numpy() == "candidate")

    @property
    def population(self) -> np.ndarray:
        return np.flatnonzero(self.pool["role"].to_numpy() == "population")

    @property
    def texts(self) -> list[str] | None:
        t = self.pool["text"].tolist()
        return None if all(v is None for v in t) else t

    @property
    def groups(self) -> np.ndarray:
        """``[n]`` the text of every candidate: copies of one text share an id
        (:func:`memlens.shadow.design.copy_groups`)."""
        from memlens.shadow.design import copy_groups

        cand = self.candidates
        return copy_groups(self.tokens[cand], self.lengths[cand])

    @property
    def tokenizer_dir(self) -> Path | None:
        p = self.path / "tokenizer"
        return p if p.is_dir() else None

    def token_scores(self, model: int, rows: np.ndarray) -> Any:
        """The stored per-token scores of one shadow on pool rows ``rows`` (a TokenScores)."""
        from memlens.scoring import TokenScores

        path = self.path / "token_scores.npz"
        with _damaged(path):
            with np.load(path, allow_pickle=False) as z:
                log2p = z["log2p"][model][rows].astype(np.float64)
                mu = z["mu_log2p"][model][rows].astype(np.float64)
                sigma = z["sigma_log2p"][model][rows].astype(np.float64)
        width = log2p.shape[-1]
        mask = np.arange(width)[None, :] < (self.lengths[rows] - 1)[:, None]
        return TokenScores(log2p=log2p, mask=mask, mu_log2p=mu, sigma_log2p=sigma)


@contextlib.contextmanager
def _damaged(path: Path) -> Iterator[None]:
    """Turn a file of a shadows directory that cannot be read (truncated, not the format its name
    says, or lacking an array) into one sentence."""
    import zipfile

    try:
        yield
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile):
        raise UserError(f"{path} is damaged or incomplete; retrain the shadows.") from None


def load_shadows(path: str | Path) -> Shadows:
    """Load a shadows directory written by ``memlens shadow train`` (one sentence if it is not)."""
    import pandas as pd

    p = Path(path).expanduser()
    if not p.exists():
        raise UserError(f"shadows directory {p} does not exist.")
    if not p.is_dir():
        raise UserError(f"{p} is a file, not a shadows directory.")
    missing = [f for f in REQUIRED if not (p / f).exists()]
    if missing:
        _unfinished(p)
        raise UserError(
            f"{p} is not a finished shadows directory (no {missing[0]}); train the shadows first."
        )
    try:
        summary = ShadowTrainSummary.model_validate(json.loads((p / "shadow.json").read_text()))
    except (OSError, json.JSONDecodeError, ValidationError):
        raise UserError(f"{p / 'shadow.json'} cannot be read; retrain the shadows.") from None
    with _damaged(p / "keep.npy"):
        keep = np.load(p / "keep.npy", allow_pickle=False)
    with _damaged(p / "signals.npz"):
        with np.load(p / "signals.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        sig = Signals.from_arrays(arrays)
        zsig = Signals.from_arrays(arrays, prefix="z_")
    with _damaged(p / "tokens.npz"):
        with np.load(p / "tokens.npz", allow_pickle=False) as z:
            tokens, lengths = z["tokens"], z["lengths"]
    with _damaged(p / "pool.parquet"):
        pool = pd.read_parquet(p / "pool.parquet")
    if sig.loglik_bits.shape != keep.shape or len(pool) != len(lengths):
        raise UserError(f"the files in {p} do not belong together; retrain the shadows.")
    return Shadows(p, summary, keep, sig, zsig, pool, tokens, lengths)


def _unfinished(p: Path) -> None:
    """Say so when ``p`` holds another kind of run, or a ``shadow train`` run that was
    interrupted (resumable)."""
    try:
        manifest = json.loads((p / "manifest.json").read_text())
    except (OSError, ValueError):
        return
    kind = manifest.get("kind")
    if isinstance(kind, str) and kind != ShadowTrainSummary.kind:
        raise UserError(
            f"{p} holds a run of kind {kind!r}, not shadow models; pass the directory that "
            "the shadow training wrote."
        )
    if manifest.get("status") == "finished":
        return
    cfg = manifest.get("config") or {}
    try:
        k = int(cfg["n_models"])
        n_stacks = -(-k // min(int(cfg.get("stack_size") or k), k))
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        n_stacks = None
    done = len(list((p / "cells").glob("stack-*.json")))
    of = f" ({done} of {n_stacks} stacks finished)" if n_stacks else ""
    raise UserError(
        f"the training of the shadows in {p} did not finish{of}; rerun it with the same "
        "settings and output directory to resume."
    )


def check_pool(sh: Shadows, pool: str | None, text_column: str = "text") -> None:
    """Refuse a pool file other than the one the shadows were trained on (``None``: no check)."""
    if pool is None:
        return
    from memlens.data.text import read_texts
    from memlens.shadow.world import texts_sha256

    raw, _ = read_texts(pool, text_column=text_column)
    if texts_sha256(raw) != sh.summary.pool_sha256:
        raise UserError(f"the shadows in {sh.path} were trained on another pool than {pool}.")
