"""Seeded synthetic sources whose entropy is known exactly.

* :func:`uniform_sequences`: tokens drawn i.i.d. uniformly from ``V``; every sequence of ``S``
  tokens has code length ``S * log2 V`` under the source, so anything a model does better than
  that is memorization (Morris et al. 2025, arXiv:2505.24832).
* :class:`MarkovSource`: a first-order Markov chain with a seeded sparse transition matrix; the
  exact code length of any sequence under the source is computable, so a model can be compared
  with the truth, and there is structure to generalize (used by double descent, dynamics, sinks).

First-token convention: memlens codes the first token of a synthetic sequence with the source's
own first-token distribution (uniform, ``log2 V`` bits) and never counts it as memorized; the
model predicts tokens ``1..S-1``. ``H(x)`` is still the full ``S * log2 V``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from memlens.errors import UserError


def _check(vocab_size: int, seq_len: int, n_sequences: int) -> None:
    if vocab_size < 2:
        raise UserError(f"vocab size must be at least 2, got {vocab_size}.")
    if seq_len < 2:
        raise UserError(f"sequence length must be at least 2, got {seq_len}.")
    if n_sequences < 1:
        raise UserError(f"number of sequences must be at least 1, got {n_sequences}.")


def uniform_sequences(vocab_size: int, seq_len: int, n_sequences: int, seed: int) -> torch.Tensor:
    """``n_sequences`` sequences of ``seq_len`` tokens drawn uniformly from ``vocab_size`` ids.

    Deterministic in ``seed``; the first ``n`` sequences for a seed do not depend on
    ``n_sequences`` (a larger dataset extends a smaller one), which keeps sweeps comparable.
    Returns an int64 tensor ``[N, S]``.
    """
    _check(vocab_size, seq_len, n_sequences)
    g = torch.Generator().manual_seed(int(seed))
    out = torch.empty(n_sequences, seq_len, dtype=torch.long)
    block = 1024
    for start in range(0, n_sequences, block):  # block-wise so prefixes are stable across N
        stop = min(n_sequences, start + block)
        out[start:stop] = torch.randint(0, vocab_size, (block, seq_len), generator=g)[
            : stop - start
        ]
    return out


@dataclass
class MarkovSource:
    """A seeded first-order Markov chain over ``vocab_size`` tokens.

    Each token has ``branching`` possible successors with Dirichlet(``concentration``) weights;
    the first token is uniform. Code lengths under the source are exact.

    Parameters
    ----------
    vocab_size: V.
    branching: successors per token (``1 <= branching <= V``); small values give low entropy.
    concentration: Dirichlet concentration of the successor weights.
    seed: seeds the transition matrix.
    """

    vocab_size: int
    branching: int = 4
    concentration: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.vocab_size < 2:
            raise UserError(f"vocab size must be at least 2, got {self.vocab_size}.")
        if not 1 <= self.branching <= self.vocab_size:
            raise UserError(
                f"branching must be between 1 and the vocab size, got {self.branching}."
            )
        rng = np.random.default_rng(self.seed)
        V, b = self.vocab_size, self.branching
        P = np.zeros((V, V))
        for i in range(V):
            succ = rng.choice(V, size=b, replace=False)
            P[i, succ] = rng.dirichlet(np.full(b, self.concentration))
        self.transition = P
        with np.errstate(divide="ignore"):
            self._log2P = np.log2(P)

    @property
    def stationary(self) -> np.ndarray:
        """Stationary distribution (left eigenvector of the transition matrix for eigenvalue 1)."""
        w, v = np.linalg.eig(self.transition.T)
        pi = np.real(v[:, np.argmin(np.abs(w - 1))])
        pi = np.abs(pi)
        return pi / pi.sum()

    def entropy_rate_bits(self) -> float:
        """Entropy per transition ``sum_i pi_i H(P_i)`` under the stationary distribution, in bits."""
        with np.errstate(divide="ignore", invalid="ignore"):
            rows = -np.nansum(
                np.where(self.transition > 0, self.transition * self._log2P, 0.0), axis=1
            )
        return float(self.stationary @ rows)

    def sample(self, n_sequences: int, seq_len: int, seed: int) -> torch.Tensor:
        """``[N, S]`` int64 sequences; the first token is uniform."""
        _check(self.vocab_size, seq_len, n_sequences)
        rng = np.random.default_rng(seed)
        V = self.vocab_size
        cdf = np.cumsum(self.transition, axis=1)
        cdf[:, -1] = 1.0
        x = np.empty((n_sequences, seq_len), dtype=np.int64)
        x[:, 0] = rng.integers(0, V, size=n_sequences)
        u = rng.random((n_sequences, seq_len))
        for t in range(1, seq_len):
            rows = cdf[x[:, t - 1]]
            x[:, t] = (u[:, t, None] > rows).sum(axis=1)
        return torch.from_numpy(x)

    def code_length_bits(
        self, tokens: torch.Tensor | np.ndarray, include_first: bool = True
    ) -> np.ndarray:
        """Exact ``-log2 p(x)`` of each sequence under the source, in bits.

        With ``include_first=False`` only tokens ``1..S-1`` are charged (what a model scores).
        """
        x = np.asarray(tokens)
        bits = -self._log2P[x[:, :-1], x[:, 1:]].sum(axis=1)
        if include_first:
            bits = bits + math.log2(self.vocab_size)
        return bits
