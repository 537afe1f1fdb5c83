"""Scoring ragged sequences and texts with the shared pass.

:func:`score_sequences` runs :func:`memlens.scoring.core.score_tokens` over sequences of different
lengths (sorted by length, right-padded per batch, attention-masked, returned in the caller's
order); :func:`windowed_forward` scores sequences longer than a model's context with a sliding
window; :func:`score_texts` encodes texts with a model's own tokenizer (one BOS prepended, see
:mod:`memlens.data.text`) and returns each text's code length in bits.

Bits per *text* (cross-tokenizer comparability)
-----------------------------------------------
The code length of a text under a model is ``NLL_bits(text) = -sum_i log2 p(t_i | t_<i)`` over the
tokens ``t_1..t_n`` of the text under the model's *own* tokenizer (Morris et al. 2025, "How much
do language models memorize?", arXiv:2505.24832). Because it is a code length for the text, not
for a token sequence, it is comparable between models with different tokenizers (a target and a
reference, say). Texts are encoded with ``add_special_tokens=False`` and one BOS id is prepended
(the tokenizer's ``bos_token_id``, else its ``eos_token_id``, which is how GPT-2 marks a document
start) so that every real token is predicted and the BOS itself is free. A tokenizer with neither
codes the first token at ``log2 V`` bits (``V = len(tokenizer)``), a uniform code. No end-of-text
token is charged. Units are bits throughout.

Comparing two models (:class:`CodeLengths`, :func:`comparable_bits`): when both tokenizers start
texts with a BOS, each model codes the first text token itself and the difference of code
lengths is the difference of two model codes. When only one of them has a BOS, the other charges
its first token ``log2 V`` (a uniform code, nothing precedes it) while the first model predicts it,
which would add about ``log2 V`` bits minus a few to *every* sample's difference. The unintended
bits of the audit and the ``ref`` attack therefore charge both models the same way: the first
text token at ``log2 V`` of each model's own tokenizer (the model with a BOS still sees it as
context for the later tokens).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from memlens.data.text import EncodedTexts
from memlens.errors import UserError
from memlens.progress import ProgressFn, emit
from memlens.scoring.core import Forward, TokenScores, score_tokens

if TYPE_CHECKING:
    from memlens.models.hf import CausalLM


def windowed_forward(forward: Forward, context: int, stride: int) -> Forward:
    """Wrap ``forward`` so sequences longer than ``context`` are scored with a sliding window.

    The first window covers positions ``[0, context)``; each further window ends ``stride``
    tokens later (the last one ends at ``T``) and contributes the logits of its last ``stride``
    (or fewer) positions. Every position therefore sees either its whole prefix or at least
    ``context - stride`` preceding tokens. Sequences that fit are passed through unchanged.
    This is the strided evaluation of Hugging Face's perplexity guide.
    """
    if not 1 <= stride < context:
        raise UserError(
            f"window stride must be between 1 and context - 1 = {context - 1}, got {stride}."
        )

    def fwd(ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        T = ids.shape[-1]
        if T <= context:
            return forward(ids, attention_mask=attention_mask)
        pieces = []
        done, end = 0, context
        while True:
            start = end - context
            am = attention_mask[..., start:end] if attention_mask is not None else None
            logits = forward(ids[..., start:end], attention_mask=am)
            pieces.append(logits[..., done - start :, :])
            done = end
            if end >= T:
                break
            end = min(end + stride, T)
        return torch.cat(pieces, dim=-2)

    return fwd


LOGITS_BUDGET = 1 << 25
"""Logit elements per forward pass that :func:`score_sequences` aims for by default (128 MB in
float32): the token budget of a batch is this divided by the vocabulary size."""


def length_batches(
    sorted_lengths: np.ndarray, batch_size: int, max_tokens: int | None = None
) -> list[np.ndarray]:
    """Consecutive groups of positions into ``sorted_lengths`` (longest first), each with at most
    ``batch_size`` sequences and, when ``max_tokens`` is given, at most ``max_tokens`` tokens
    once padded to the group's first (longest) sequence; a longer sequence forms a group alone."""
    if batch_size < 1 or (max_tokens is not None and max_tokens < 1):
        raise UserError("the batch size and the token budget must be at least 1.")
    groups, start, N = [], 0, len(sorted_lengths)
    while start < N:
        rows = batch_size
        if max_tokens is not None:
            rows = min(rows, max(1, max_tokens // max(int(sorted_lengths[start]), 1)))
        stop = min(N, start + rows)
        groups.append(np.arange(start, stop))
        start = stop
    return groups


def score_sequences(
    forward: Forward | CausalLM,
    sequences: Sequence[np.ndarray | Sequence[int]],
    *,
    batch_size: int = 32,
    max_tokens: int | None = None,
    context_length: int | None = None,
    window_stride: int | None = None,
    device: str | torch.device | None = None,
    stats: bool = False,
    argmax: bool = False,
    progress: ProgressFn | None = None,
    task: str = "scoring",
) -> TokenScores:
    """Score ragged token sequences with the shared pass, sorted by length to minimise padding.

    Sequences are sorted by length, grouped into batches of at most ``batch_size`` sequences and
    ``max_tokens`` padded tokens, right-padded to each batch's longest, attention-masked and
    scored by :func:`memlens.scoring.score_tokens`; results come back in the input order as one
    :class:`~memlens.scoring.TokenScores` of shape ``[N, max_len - 1]`` (NaN/False beyond each
    sequence's length).

    Parameters
    ----------
    forward: a forward, or a :class:`CausalLM` (its forward, context and device are used).
    max_tokens: most padded tokens (rows x longest) in one forward pass. Default: for a
        :class:`CausalLM`, :data:`LOGITS_BUDGET` divided by its vocabulary (about 680 tokens for
        a 49k-token vocabulary), so that a batch's logits stay near 128 MB; otherwise no limit.
        A sequence longer than the limit is scored alone. On SmolLM2-135M (two CPU cores) this
        scored 32 texts of 56-187 tokens 1.9-2.1x faster than batches of 32 sequences, whose
        padding and 1 GB of logits cost more than the larger matrix products gain.
    context_length: longest sequence the model accepts; a longer one raises :class:`UserError`
        unless ``window_stride`` is given, in which case it is scored with a sliding window.
    progress: receives a :class:`~memlens.progress.ProgressEvent` for ``task`` after every
        batch (sequences finished, out of all).
    """
    from memlens.models.hf import CausalLM

    who = "the model"
    vocab_size = None
    if isinstance(forward, CausalLM):
        lm = forward
        who = f"model {lm.name}"
        vocab_size = lm.vocab_size
        if max_tokens is None:
            max_tokens = max(1, LOGITS_BUDGET // max(lm.vocab_size, 1))
        context_length = context_length or lm.context_length
        device = device or lm.device
        forward = lm.forward(window_stride) if window_stride is not None else lm.forward()
    elif window_stride is not None:
        if context_length is None:
            raise UserError("a sliding window needs the model's context length (`context_length`).")
        forward = windowed_forward(forward, context_length, window_stride)
    seqs = [np.asarray(s, dtype=np.int64).reshape(-1) for s in sequences]
    N = len(seqs)
    if N == 0:
        raise UserError("there are no sequences to score.")
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    if lengths.min() < 1:
        raise UserError("cannot score an empty sequence.")
    lo, hi = min(int(s.min()) for s in seqs), max(int(s.max()) for s in seqs)
    if lo < 0 or (vocab_size is not None and hi >= vocab_size):
        bad = lo if lo < 0 else hi
        allowed = f"0 to {vocab_size - 1}" if vocab_size is not None else "non-negative"
        raise UserError(f"token id {bad} is outside the vocabulary of {who} ({allowed}).")
    longest = int(lengths.max())
    if context_length is not None and window_stride is None and longest > context_length:
        i = int(lengths.argmax())
        raise UserError(
            f"sequence {i} has {longest} tokens, longer than the context of {context_length} of {who}; "
            "chunk the texts (`seq_len`) or score with a sliding window (`window_stride`)."
        )
    width = max(longest - 1, 1)
    log2p = np.full((N, width), np.nan)
    mask = np.zeros((N, width), dtype=bool)
    mu = np.full((N, width), np.nan) if stats else None
    sigma = np.full((N, width), np.nan) if stats else None
    ent = np.full((N, width), np.nan) if stats else None
    is_am = np.zeros((N, width), dtype=bool) if argmax else None
    order = np.argsort(-lengths, kind="stable")
    done = 0
    for idx in length_batches(lengths[order], batch_size, max_tokens):
        idx = order[idx]
        T = max(int(lengths[idx].max()), 2)  # one token predicts nothing; pad to 2 for the engine
        batch = np.zeros((len(idx), T), dtype=np.int64)
        for r, i in enumerate(idx):
            batch[r, : lengths[i]] = seqs[i]
        sc = score_tokens(
            forward,
            torch.from_numpy(batch),
            lengths=lengths[idx],
            batch_size=len(idx),
            device=device,
            stats=stats,
            argmax=argmax,
            pass_attention_mask=True,
        )
        w = T - 1
        log2p[idx, :w] = sc.log2p
        mask[idx, :w] = sc.mask
        if stats:
            mu[idx, :w] = sc.mu_log2p
            sigma[idx, :w] = sc.sigma_log2p
            ent[idx, :w] = sc.entropy_bits
        if argmax:
            is_am[idx, :w] = sc.is_argmax
        done += len(idx)
        emit(progress, task, done, N)
    if np.isnan(log2p[mask]).any() or np.isinf(log2p[mask]).any():
        raise UserError(
            "the model produced NaN or infinite log-probabilities; check the checkpoint and `dtype`."
        )
    return TokenScores(
        log2p=log2p, mask=mask, mu_log2p=mu, sigma_log2p=sigma, entropy_bits=ent, is_argmax=is_am
    )


FIRST_TOKEN_CONVENTIONS = ("model", "uniform")


@dataclass(frozen=True)
class CodeLengths:
    """Code length of each text under one model, and what its first text token was charged.

    Attributes
    ----------
    bits: whole-text code length of each text, in bits.
    first_token_bits: the part of ``bits`` spent on the first text token: the model's own code
        ``-log2 p(t_1 | BOS)`` when its tokenizer starts texts with a BOS, else ``log2 V``.
    uniform_bits: ``log2 V`` of the model's tokenizer, in bits.
    has_bos: whether texts were scored after a BOS.
    """

    bits: np.ndarray
    first_token_bits: np.ndarray
    uniform_bits: float
    has_bos: bool

    def charged(self, convention: str) -> np.ndarray:
        """``bits`` with the first text token charged by ``convention``: ``"model"`` (as scored)
        or ``"uniform"`` (``log2 V``, the same for every text)."""
        if convention == "model":
            return np.asarray(self.bits, dtype=np.float64)
        if convention != "uniform":
            raise ValueError(f"unknown first-token convention {convention!r}")
        return self.bits - self.first_token_bits + self.uniform_bits

    def to_arrays(self) -> dict[str, np.ndarray]:
        """For a stored cell (see :meth:`from_arrays`)."""
        return {
            "bits": np.asarray(self.bits, dtype=np.float64),
            "first_token_bits": np.asarray(self.first_token_bits, dtype=np.float64),
            "uniform_bits": np.array(self.uniform_bits, dtype=np.float64),
            "has_bos": np.array(self.has_bos),
        }

    @classmethod
    def from_arrays(cls, d: dict[str, np.ndarray]) -> CodeLengths:
        return cls(
            bits=np.asarray(d["bits"], dtype=np.float64),
            first_token_bits=np.asarray(d["first_token_bits"], dtype=np.float64),
            uniform_bits=float(d["uniform_bits"]),
            has_bos=bool(d["has_bos"]),
        )


def first_token_convention(*models: CodeLengths) -> str:
    """``"model"`` when every model scored its texts after a BOS, else ``"uniform"``."""
    return "model" if all(m.has_bos for m in models) else "uniform"


def comparable_bits(
    target: CodeLengths, reference: CodeLengths
) -> tuple[np.ndarray, np.ndarray, str]:
    """Code lengths of the same texts under two models with the first token charged the same way.

    Returns ``(target_bits, reference_bits, convention)``; see the module docstring. With both
    BOS (or both without) the bits are returned as scored (``"model"``); otherwise both first
    text tokens are charged ``log2 V`` of their own tokenizer (``"uniform"``).
    """
    convention = first_token_convention(target, reference)
    return target.charged(convention), reference.charged(convention), convention


@dataclass
class ScoredTexts(EncodedTexts):
    """Per-text results of :func:`score_texts`: the :class:`~memlens.data.text.EncodedTexts`
    that were scored (``tokens``, BOS first when the tokenizer has one; ``bos_token_id``;
    ``first_token_bits``, 0 with a BOS, else ``log2 V``), plus

    Attributes
    ----------
    bits: code length of each text in bits (``scores.nll_bits`` plus ``first_token_bits``).
    scores: per-token results, column ``j`` predicting ``tokens[j + 1]``.
    uniform_bits: ``log2 V`` of the tokenizer.
    """

    bits: np.ndarray
    scores: TokenScores
    uniform_bits: float = float("nan")

    def code_lengths(self) -> CodeLengths:
        """The texts' code lengths with the first token's share (see :class:`CodeLengths`)."""
        if self.bos_token_id is not None:
            first = -np.asarray(self.scores.log2p[:, 0], dtype=np.float64)
        else:
            first = np.full(len(self.bits), self.first_token_bits)
        return CodeLengths(
            bits=np.asarray(self.bits, dtype=np.float64),
            first_token_bits=first,
            uniform_bits=float(self.uniform_bits),
            has_bos=self.bos_token_id is not None,
        )


def score_texts(
    lm: CausalLM,
    texts: Sequence[str],
    *,
    batch_size: int = 32,
    max_tokens: int | None = None,
    window_stride: int | None = None,
    stats: bool = False,
    argmax: bool = False,
    progress: ProgressFn | None = None,
    task: str = "scoring",
) -> ScoredTexts:
    """Code length in bits of each text under ``lm`` (its own tokenizer), with per-token detail.

    See the module docstring for the BOS convention that makes bits per text comparable across
    tokenizers. A text longer than the model's context raises :class:`UserError` unless
    ``window_stride`` is given. ``batch_size`` and ``max_tokens`` bound each forward pass as in
    :func:`score_sequences`.
    """
    from memlens.data.text import encode_texts

    if lm.tokenizer is None:
        raise UserError(
            f"model {lm.name} has no tokenizer, so it cannot score text; pass `tokenizer`."
        )
    enc = encode_texts(texts, lm.tokenizer)
    scores = score_sequences(
        lm,
        enc.tokens,
        batch_size=batch_size,
        max_tokens=max_tokens,
        window_stride=window_stride,
        stats=stats,
        argmax=argmax,
        progress=progress,
        task=task,
    )
    # A text of one token with no BOS predicts nothing: only its first-token code remains.
    bits = scores.nll_bits + enc.first_token_bits
    return ScoredTexts(
        tokens=enc.tokens,
        scores=scores,
        bits=bits,
        first_token_bits=enc.first_token_bits,
        bos_token_id=enc.bos_token_id,
        uniform_bits=math.log2(len(lm.tokenizer)),
    )
