"""Rarity of a sample: TF-IDF over its tokens (zlib size: :func:`memlens.units.zlib_bytes`).

TF-IDF rarity as defined by Morris et al. 2025 ("How much do language models memorize?",
arXiv:2505.24832, Sec. on text)::

    TFIDF(d) = (1/|d|) * sum_{w in d} log(|D| / tf(w, D))

``d`` is a document as a sequence of tokens (the sum runs over its token *occurrences*, so
``|d|`` is its length in tokens), ``|D|`` the number of documents in the corpus and ``tf(w, D)``
the number of occurrences of token ``w`` in the whole corpus. The logarithm is natural (the score
is a rarity index, not a code length, so it carries no bit unit). Higher means rarer. Morris et
al. report a strong positive correlation between this score and memorization among samples with
positive memorization.

memlens counts tokens of the *target* model's tokenizer (no BOS) and takes the corpus ``D`` to be
the training set as the model saw it, duplicates included (a text that occurred 3 times counts as
3 documents). A sample outside the corpus (a held-out text) is scored against ``D`` plus itself,
so every token has ``tf >= 1``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np


class TfidfCorpus:
    """Token counts of a corpus, for :meth:`score`.

    Parameters
    ----------
    documents: each document's tokens (any hashable items).
    counts: how many times each document occurs in the corpus (default 1 each).
    """

    def __init__(
        self, documents: Sequence[Sequence[object]], counts: Sequence[int] | None = None
    ) -> None:
        if counts is None:
            counts = [1] * len(documents)
        if len(counts) != len(documents):
            raise ValueError("counts must have one entry per document")
        self.n_documents = int(sum(int(c) for c in counts))
        self.tf: Counter = Counter()
        for doc, c in zip(documents, counts, strict=True):
            for w, k in Counter(doc).items():
                self.tf[w] += int(c) * k

    def score(self, document: Sequence[object], member: bool = True) -> float:
        """TF-IDF rarity of ``document``; ``member=False`` adds it to the corpus first.

        Returns NaN for an empty document.
        """
        if len(document) == 0:
            return math.nan
        n_docs = self.n_documents if member else self.n_documents + 1
        own = Counter(document)
        total = 0.0
        for w, k in own.items():
            tf = self.tf.get(w, 0) + (0 if member else k)
            if tf <= 0:
                raise ValueError(
                    f"token {w!r} does not occur in the corpus; score it with member=False"
                )
            total += k * math.log(n_docs / tf)
        return total / len(document)


def tfidf_rarity(
    documents: Sequence[Sequence[object]],
    counts: Sequence[int] | None = None,
    others: Sequence[Sequence[object]] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """TF-IDF rarity of every corpus document and, optionally, of documents outside the corpus.

    Returns ``(corpus_scores, other_scores)``; ``other_scores`` is ``None`` without ``others``.
    """
    corpus = TfidfCorpus(documents, counts)
    inside = np.array([corpus.score(d) for d in documents], dtype=np.float64)
    outside = (
        None
        if others is None
        else np.array([corpus.score(d, member=False) for d in others], dtype=np.float64)
    )
    return inside, outside
