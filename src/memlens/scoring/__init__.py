"""The scoring core: per-token log2-probabilities and per-sequence code lengths in bits.

Every memlens analysis (capacity, unintended memorization, extraction, membership inference,
dynamics, sinks, shadow models, privacy audits) reads the numbers computed here; nothing else
calls a model forward for scoring.

* :mod:`.core`: :func:`score_tokens`, the batched pass over equal-length sequences (with a
  leading model axis for stacks of GPTs), the forwards for memlens GPTs and Hugging Face models,
  and per-sample gradient norms.
* :mod:`.ragged`: :func:`score_sequences` over ragged sequences (length-sorted batches, attention
  masks), :func:`windowed_forward` for sequences longer than the context, :func:`score_texts`.
* :mod:`.extraction`: teacher-forced greedy k-extraction read off the same pass.
"""

from memlens.scoring.core import (
    Forward,
    TokenScores,
    code_length_bits,
    gpt_forward,
    grad_norms,
    hf_forward,
    memorized_bits,
    score_tokens,
)
from memlens.scoring.ragged import ScoredTexts, score_sequences, score_texts, windowed_forward

__all__ = [
    "Forward",
    "ScoredTexts",
    "TokenScores",
    "code_length_bits",
    "gpt_forward",
    "grad_norms",
    "hf_forward",
    "memorized_bits",
    "score_sequences",
    "score_texts",
    "score_tokens",
    "windowed_forward",
]
