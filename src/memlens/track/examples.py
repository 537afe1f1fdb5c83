"""The tracked examples: token sequences in groups (repeated, unique, heldout ...), their reference
code lengths and TF-IDF rarity.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from memlens.errors import UserError
from memlens.scoring.ragged import FIRST_TOKEN_CONVENTIONS


@dataclass
class TrackSet:
    """The examples a :class:`Tracker` watches.

    Attributes
    ----------
    tokens: one int64 array of token ids per example (BOS first when ``n_lead = 1``).
    groups: a group name per example (e.g. ``repeated``, ``unique``, ``heldout``).
    reference_bits: the code length of each example under the reference, in bits, with the same
        first-token convention as the model (``first_token``); NaN when there is none.
    first_token_bits: bits charged for token 0 (``log2 V`` for synthetic data, 0 after a BOS).
    first_token: how the first *text* token is charged: ``"model"``, as the model codes it (after
        its BOS when ``n_lead = 1``); ``"uniform"``, ``first_token_bits`` (``log2 V``) instead of
        the model's code after the BOS, for a reference whose tokenizer has no BOS (the two are
        then charged alike; :func:`memlens.scoring.comparable_bits` does the same in the audit).
    n_lead: leading ids that are context, not text (1 for a BOS), excluded from extraction.
    counts: how many times each example occurs in the training data (0 for held-out controls).
    rarity: TF-IDF rarity of each example (Morris et al. 2025), NaN when unknown.
    reference: a description of the reference (reported with every result).
    texts: the texts, when the examples came from text.
    """

    tokens: list[np.ndarray]
    groups: np.ndarray
    reference_bits: np.ndarray
    first_token_bits: float = 0.0
    n_lead: int = 0
    first_token: str = "model"
    counts: np.ndarray | None = None
    rarity: np.ndarray | None = None
    reference: str = "none"
    texts: list[str] | None = None

    def __post_init__(self) -> None:
        self.tokens = [np.asarray(t, dtype=np.int64).reshape(-1) for t in self.tokens]
        n = len(self.tokens)
        if n == 0:
            raise UserError("there are no examples to track.")
        if any(len(t) < 2 for t in self.tokens):
            raise UserError("every tracked example needs at least 2 tokens (1 to condition on).")
        if self.first_token not in FIRST_TOKEN_CONVENTIONS:
            raise ValueError(f"first_token must be model or uniform, got {self.first_token!r}")
        self.groups = np.asarray(self.groups, dtype=object).astype(str)
        self.reference_bits = np.asarray(self.reference_bits, dtype=np.float64).reshape(-1)
        if self.reference_bits.size == 1 and n > 1:
            self.reference_bits = np.full(n, float(self.reference_bits[0]))
        self.counts = (
            np.zeros(n, dtype=np.int64)
            if self.counts is None
            else np.asarray(self.counts, dtype=np.int64)
        )
        self.rarity = (
            np.full(n, np.nan) if self.rarity is None else np.asarray(self.rarity, dtype=np.float64)
        )
        for name, arr in (("groups", self.groups), ("reference_bits", self.reference_bits),
                          ("counts", self.counts), ("rarity", self.rarity)):  # fmt: skip
            if len(arr) != n:
                raise ValueError(f"{name} must have one entry per example ({n}), got {len(arr)}")

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(t) for t in self.tokens], dtype=np.int64)

    @property
    def has_reference(self) -> bool:
        return bool(np.isfinite(self.reference_bits).any())

    def fingerprint(self) -> str:
        """A hash of the tokens, groups, reference bits and first-token convention."""
        h = hashlib.sha256()
        for t, g, r in zip(self.tokens, self.groups, self.reference_bits, strict=True):
            h.update(t.tobytes())
            h.update(g.encode())
            h.update(b"nan" if not np.isfinite(r) else f"{r:.6f}".encode())
        h.update(f"{self.first_token_bits:.9f}/{self.n_lead}".encode())
        if self.first_token != "model":  # (the fingerprints of earlier runs stay as they were)
            h.update(self.first_token.encode())
        return h.hexdigest()[:16]

    def table(self) -> Any:
        """One row per example: index, group, counts, rarity, length, reference bits (and text)."""
        import pandas as pd

        df = pd.DataFrame(
            {
                "example": np.arange(len(self), dtype=np.int64),
                "group": self.groups,
                "count": self.counts,
                "rarity_tfidf": self.rarity,
                "n_tokens": self.lengths - self.n_lead,
                "reference_bits": self.reference_bits,
            }
        )
        if self.texts is not None:
            df["text"] = list(self.texts)
        return df


def tfidf_rarity_tokens(
    examples: Sequence[np.ndarray],
    corpus: Sequence[np.ndarray],
    counts: Sequence[int] | None,
    members: np.ndarray,
) -> np.ndarray:
    """TF-IDF rarity of each example's tokens against a token corpus (Morris et al. 2025).

    ``TFIDF(d) = (1/|d|) sum_{w in d} log(|D| / tf(w, D))`` with natural log, via
    :class:`memlens.audit.rarity.TfidfCorpus`; ``members[i]`` says whether example ``i`` is in
    the corpus (a held-out example is scored against the corpus plus itself).
    """
    from memlens.audit.rarity import TfidfCorpus

    corp = TfidfCorpus([np.asarray(d).tolist() for d in corpus], counts)
    return np.array(
        [
            corp.score(np.asarray(x).tolist(), member=bool(m))
            for x, m in zip(examples, members, strict=True)
        ]
    )
