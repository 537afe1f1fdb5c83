"""Canaries for privacy audits: random token strings, each inserted with probability ½.

One-run auditing (Steinke, Nasr & Jagielski 2023, arXiv:2305.08846) needs every canary to be in
the training data *independently with probability ½*; exposure (Carlini et al. 2019,
arXiv:1802.08232) needs secrets drawn uniformly from a known space so that random candidates of
the same format can be drawn for ranking. Random token strings serve both: ``m`` canaries of
``length`` tokens drawn uniformly from an allowed set of token ids (all ids of a synthetic
vocabulary, or a tokenizer's non-special ids), and as many candidates from an independent stream
of the same generator.

Everything is a pure function of the seed: the canaries, the inclusion labels and the candidates
use three independent streams (``numpy.random.SeedSequence(seed).spawn``), so changing the number
of candidates never changes the canaries or which were included.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from memlens.errors import UserError

_STREAM_CANARIES, _STREAM_INCLUDE, _STREAM_CANDIDATES, _STREAM_SPLIT = range(4)


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(int(seed)).spawn(4)[stream])


def allowed_token_ids(vocab_size: int, exclude: Sequence[int] = ()) -> np.ndarray:
    """Token ids ``0..vocab_size-1`` minus ``exclude`` (e.g. a tokenizer's special tokens)."""
    ids = np.setdiff1d(np.arange(int(vocab_size)), np.asarray(list(exclude), dtype=np.int64))
    if len(ids) < 2:
        raise UserError(
            f"need at least 2 ordinary token ids to draw canaries from, got {len(ids)}."
        )
    return ids


def random_token_strings(
    n: int, length: int, ids: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """``[n, length]`` int64 token strings, each token uniform over ``ids``."""
    return np.asarray(ids, dtype=np.int64)[rng.integers(0, len(ids), size=(n, length))]


def include_with_half(m: int, seed: int) -> np.ndarray:
    """``[m]`` bool: each canary included independently with probability ½ (seeded)."""
    return _rng(seed, _STREAM_INCLUDE).random(m) < 0.5


@dataclass
class Canaries:
    """Canaries, their inclusion labels and (for random canaries) same-format candidates.

    Attributes
    ----------
    tokens : ``m`` int64 arrays (random canaries all have ``length`` tokens; no BOS).
    included : [m] bool, inserted into the training data.
    candidates : ``[n, length]`` random strings of the same format, never trained on (``None``
        for a user's canary file without candidates).
    kind : ``random`` or ``file``.
    texts : the canary texts for a user's file (``None`` for random canaries).
    """

    tokens: list[np.ndarray]
    included: np.ndarray
    candidates: list[np.ndarray] | None
    kind: str
    texts: list[str] | None = None
    candidate_texts: list[str] | None = None

    @property
    def m(self) -> int:
        return len(self.tokens)

    @property
    def n_included(self) -> int:
        return int(self.included.sum())

    @property
    def longest(self) -> int:
        return max(len(t) for t in self.tokens)


def random_canaries(
    m: int, length: int, ids: np.ndarray, seed: int, n_candidates: int = 1000
) -> Canaries:
    """``m`` random token-string canaries of ``length`` tokens, each included with probability ½,
    and ``n_candidates`` random strings of the same format for exposure.

    Parameters
    ----------
    m : number of canaries (at least 2).
    length : tokens per canary (at least 2, so at least one token is predicted).
    ids : token ids to draw from (see :func:`allowed_token_ids`).
    seed : seeds canaries, inclusion and candidates (independent streams).
    n_candidates : random candidates of the same format (0: no exposure).
    """
    if m < 2:
        raise UserError(f"an audit needs at least 2 canaries, got {m}.")
    if length < 2:
        raise UserError(f"a canary needs at least 2 tokens, got {length}.")
    if n_candidates < 0:
        raise UserError(f"the number of exposure candidates must be 0 or more, got {n_candidates}.")
    toks = random_token_strings(m, length, ids, _rng(seed, _STREAM_CANARIES))
    if len(np.unique(toks, axis=0)) < m:
        raise UserError(
            f"{m} random canaries of {length} tokens over {len(ids)} ids are not all distinct; use longer canaries."
        )
    cands = None
    if n_candidates:
        cands = list(
            random_token_strings(n_candidates, length, ids, _rng(seed, _STREAM_CANDIDATES))
        )
    return Canaries(
        tokens=list(toks), included=include_with_half(m, seed), candidates=cands, kind="random"
    )


def file_canaries(
    texts: Sequence[str],
    tokens: Sequence[np.ndarray],
    seed: int,
    candidate_texts: Sequence[str] | None = None,
    candidate_tokens: Sequence[np.ndarray] | None = None,
) -> Canaries:
    """A user's canary texts (already tokenized), each included with probability ½; optional
    candidates of the same format (never trained on) for exposure."""
    if len(texts) < 2:
        raise UserError(f"an audit needs at least 2 canaries, got {len(texts)}.")
    if len(set(texts)) < len(texts):
        raise UserError("the canary file holds duplicate texts; every canary must be distinct.")
    return Canaries(
        tokens=[np.asarray(t, dtype=np.int64) for t in tokens],
        included=include_with_half(len(texts), seed),
        candidates=None
        if candidate_tokens is None
        else [np.asarray(t, dtype=np.int64) for t in candidate_tokens],
        kind="file",
        texts=list(texts),
        candidate_texts=None if candidate_texts is None else list(candidate_texts),
    )
