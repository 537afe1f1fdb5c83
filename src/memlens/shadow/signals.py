"""Per-model, per-example signals of shadow models, from the shared scoring pass.

For every shadow model ``k`` and example ``x`` (all in bits, base-2 logarithms):

* ``loglik_bits``: ``log2 p(x | f_k) = sum_t log2 p(x_t | x_<t)`` over the predicted tokens
  (minus the code length; text examples start with a free BOS, synthetic ones are scored from
  their second token, their first being coded uniformly by every model alike);
* ``mean_log2p``: ``loglik_bits / n``, the per-token mean over the ``n`` predicted tokens;
* ``accuracy``: the fraction of predicted tokens that were the model's greedy (argmax) choice,
  teacher forced: the measure ``M`` of counterfactual memorization (Zhang et al. 2023);
* ``lira_phi``: the LiRA signal, the logit-scaled confidence of the *whole sequence*
  ``phi = log2 p - log2(1 - p)`` with ``p = p(x | f_k)`` (Carlini et al. 2022 use
  ``log p_y - log(1 - p_y)`` of the true label for classifiers; for a sequence the label is the
  whole sequence). It is in bits (base-2 logit). For the long sequences of language models
  ``p`` is tiny and ``phi`` is ``loglik_bits`` to within ``p / ln 2`` bits; it differs only for
  sequences a model predicts almost surely, where the logit keeps growing while the
  log-likelihood saturates at 0.

All four come from one :func:`memlens.scoring.score_tokens` pass over a ``[K, N, T]`` stack (with
``argmax=True``; ``stats=True`` also keeps what Min-K%++ needs for the baseline attacks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from memlens.scoring import TokenScores

SIGNALS = ("loglik_bits", "mean_log2p", "accuracy", "lira_phi")


def logit_bits(loglik_bits: np.ndarray) -> np.ndarray:
    """``log2 p - log2(1 - p)`` for ``p = 2**loglik_bits``, stable for tiny and near-1 ``p``.

    ``log2(1 - p) = log1p(-p) / ln 2`` when ``p`` is small and ``log2(-expm1(l ln 2))`` near 1;
    ``p = 1`` exactly (``loglik_bits = 0``) is clamped to ``1 - 2**-52`` (about 52 bits).
    """
    lp = np.minimum(np.asarray(loglik_bits, dtype=np.float64), -(2.0**-52) / math.log(2.0))
    with np.errstate(over="ignore"):
        one_minus = -np.expm1(lp * math.log(2.0))  # 1 - p, exact for p near 1 and near 0
    return lp - np.log2(one_minus)


@dataclass
class Signals:
    """Signals of ``K`` models on ``N`` examples (arrays ``[K, N]``; ``n_tokens`` is ``[N]``)."""

    loglik_bits: np.ndarray
    mean_log2p: np.ndarray
    accuracy: np.ndarray
    n_tokens: np.ndarray

    @property
    def lira_phi(self) -> np.ndarray:
        return logit_bits(self.loglik_bits)

    def arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        return {
            f"{prefix}loglik_bits": self.loglik_bits,
            f"{prefix}mean_log2p": self.mean_log2p,
            f"{prefix}accuracy": self.accuracy,
            f"{prefix}lira_phi": self.lira_phi,
            f"{prefix}n_tokens": self.n_tokens,
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str = "") -> Signals:
        return cls(
            loglik_bits=np.asarray(arrays[f"{prefix}loglik_bits"], dtype=np.float64),
            mean_log2p=np.asarray(arrays[f"{prefix}mean_log2p"], dtype=np.float64),
            accuracy=np.asarray(arrays[f"{prefix}accuracy"], dtype=np.float64),
            n_tokens=np.asarray(arrays[f"{prefix}n_tokens"], dtype=np.int64),
        )

    def take(self, models: np.ndarray | slice | None = None, examples=None) -> Signals:
        """A subset of models (rows) and/or examples (columns)."""
        m = slice(None) if models is None else models
        e = slice(None) if examples is None else examples
        return Signals(
            self.loglik_bits[m][:, e],
            self.mean_log2p[m][:, e],
            self.accuracy[m][:, e],
            self.n_tokens[e],
        )


def signals_from_scores(scores: TokenScores) -> Signals:
    """Signals from a scoring pass with ``argmax=True`` (arrays ``[..., N, T-1]``)."""
    if scores.is_argmax is None:
        raise ValueError("signals need TokenScores computed with argmax=True")
    n = scores.n_predicted
    loglik = -scores.nll_bits
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, loglik / np.maximum(n, 1), np.nan)
        acc = np.where(n > 0, scores.is_argmax.sum(axis=-1) / np.maximum(n, 1), np.nan)
    n_tokens = n.reshape(-1, n.shape[-1])[0] if n.ndim > 1 else n
    return Signals(
        np.atleast_2d(loglik),
        np.atleast_2d(mean),
        np.atleast_2d(acc),
        np.asarray(n_tokens, dtype=np.int64),
    )
