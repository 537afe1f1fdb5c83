"""The scoring core: per-token log2-probabilities and per-sequence code lengths in bits.

Every memlens analysis (capacity, unintended memorization, extraction, membership inference,
dynamics, sinks, shadow models, privacy audits) reads the numbers computed here; nothing else
calls a model forward for scoring.

* :mod:`.core`: :func:`token_log2p` (the one ``log_softmax + gather``), :func:`score_tokens`,
  the batched pass over equal-length sequences (with a leading model axis for stacks of GPTs),
  the forwards for memlens GPTs and Hugging Face models, and per-sample gradient norms.
* :mod:`.ragged`: :func:`score_sequences` over ragged sequences (length-sorted batches under a
  row count and a token budget, :func:`length_batches`; attention masks), :func:`windowed_forward` for sequences longer than the context, :func:`score_texts`,
  and :func:`comparable_bits` (two models' code lengths with the first token charged alike).
* :mod:`.extraction`: k-extraction under one eligibility rule, read off the argmax flags of the
  teacher-forced pass (:func:`teacher_forced_extraction`) or by batched KV-cached greedy decoding
  (:func:`k_extraction`, for Pythia's match fraction).
"""

from memlens.scoring.core import (
    GRAD_NORMS,
    Forward,
    TokenScores,
    code_length_bits,
    gpt_forward,
    grad_norms,
    hf_forward,
    memorized_bits,
    score_tokens,
    token_log2p,
)
from memlens.scoring.extraction import (
    ExtractionResult,
    TeacherForcedExtraction,
    check_window,
    extraction_eligible,
    greedy_continue,
    k_extraction,
    teacher_forced_extraction,
)
from memlens.scoring.ragged import (
    LOGITS_BUDGET,
    CodeLengths,
    ScoredTexts,
    comparable_bits,
    first_token_convention,
    length_batches,
    score_sequences,
    score_texts,
    windowed_forward,
)

__all__ = [
    "GRAD_NORMS",
    "LOGITS_BUDGET",
    "CodeLengths",
    "ExtractionResult",
    "Forward",
    "ScoredTexts",
    "TeacherForcedExtraction",
    "TokenScores",
    "check_window",
    "code_length_bits",
    "comparable_bits",
    "extraction_eligible",
    "first_token_convention",
    "gpt_forward",
    "grad_norms",
    "greedy_continue",
    "hf_forward",
    "k_extraction",
    "length_batches",
    "memorized_bits",
    "score_sequences",
    "score_texts",
    "score_tokens",
    "teacher_forced_extraction",
    "token_log2p",
    "windowed_forward",
]
