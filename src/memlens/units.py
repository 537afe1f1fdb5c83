"""Units and constants shared by every memlens analysis (and by the command line's defaults).

Units are bits unless a name says otherwise.

* Published capacity constants of Morris et al. 2025, "How much do language models memorize?"
  (arXiv:2505.24832): the headline ``alpha = 3.64`` bits per parameter, and the like-for-like
  figures of its 16-model table (least-squares slope of capacity on parameters through the origin:
  3.88 fp32, 3.60 bf16; mean of per-model ratios: 3.83 fp32, 3.51 bf16). See the Concepts page
  (``docs/concepts.md``, section 1).
* :func:`capacity_bits`: ``alpha * params``.
* :func:`uniform_code_bits`, :func:`uniform_entropy_bits`, :func:`memorizable_bits`: code lengths of
  uniform random tokens. The first token of a sequence is coded at ``log2 V`` and can never be
  memorized (nothing precedes it), so a sequence of S uniform tokens holds ``S * log2 V`` bits of
  which at most ``(S - 1) * log2 V`` can be memorized.
* :func:`zlib_bytes`: the zlib-compressed size of a text, at one documented level.
"""

from __future__ import annotations

import math
import zlib

from memlens.errors import UserError

#: ln 2: a code length in nats divided by ``LN2`` is in bits.
LN2 = math.log(2.0)

#: Headline capacity of Morris et al. 2025, bits per parameter.
PUBLISHED_ALPHA = 3.64
#: Least-squares slope of capacity on parameters through the origin, fp32 and bf16 (Morris et al.).
PUBLISHED_ALPHA_FP32_SLOPE = 3.88
PUBLISHED_ALPHA_BF16_SLOPE = 3.60
#: Mean of the per-model ratios capacity / params, fp32 and bf16 (Morris et al.).
PUBLISHED_ALPHA_FP32_MEAN = 3.83
PUBLISHED_ALPHA_BF16_MEAN = 3.51

#: zlib level of :func:`zlib_bytes`: the library default (6), as in Carlini et al. 2021
#: ("Extracting training data from large language models") and MIMIR (Duan et al. 2024).
ZLIB_LEVEL = zlib.Z_DEFAULT_COMPRESSION


def positive(value: float, name: str) -> float:
    """``value`` as a float, or :class:`UserError` naming ``name`` unless it is finite and > 0."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{name} must be a positive number, got {value!r}.") from None
    if not math.isfinite(v) or v <= 0:
        raise UserError(f"{name} must be positive, got {v:g}.")
    return v


def published_alpha(precision: str = "fp32") -> dict[str, float]:
    """The published like-for-like alpha figures for ``precision`` (``fp32`` or ``bf16``)."""
    if precision == "bf16":
        return {"slope": PUBLISHED_ALPHA_BF16_SLOPE, "mean_per_model": PUBLISHED_ALPHA_BF16_MEAN}
    if precision != "fp32":
        raise UserError(f"unknown precision {precision!r}; use fp32 or bf16.")
    return {"slope": PUBLISHED_ALPHA_FP32_SLOPE, "mean_per_model": PUBLISHED_ALPHA_FP32_MEAN}


def capacity_bits(params: float, alpha: float = PUBLISHED_ALPHA) -> float:
    """Capacity of a model, ``alpha * params`` bits (Morris et al. 2025, arXiv:2505.24832).

    Parameters
    ----------
    params: parameter count (distinct parameters; tied embeddings counted once).
    alpha: bits per parameter (default 3.64, the paper's headline figure).
    """
    return positive(alpha, "alpha (bits per parameter)") * positive(params, "the parameter count")


def uniform_code_bits(vocab_size: int) -> float:
    """``log2 V``: the uniform code length of one token over a vocabulary of V, in bits."""
    return math.log2(positive(vocab_size, "the vocabulary size"))


def uniform_entropy_bits(seq_len: int, vocab_size: int) -> float:
    """``H(x) = S * log2 V``: the entropy of one sequence of S uniform tokens over V, in bits."""
    return seq_len * uniform_code_bits(vocab_size)


def memorizable_bits(seq_len: int, vocab_size: int) -> float:
    """``(S - 1) * log2 V``: the most a model can memorize of one sequence of S uniform tokens.

    The first token is coded uniformly at ``log2 V`` under both the model and the source (nothing
    precedes it), so only the S - 1 predicted tokens can carry memorized bits.
    """
    return (seq_len - 1) * uniform_code_bits(vocab_size)


def zlib_bytes(text: str) -> int:
    """Size in bytes of the UTF-8 text compressed by ``zlib.compress`` at :data:`ZLIB_LEVEL`.

    Used by the zlib membership-inference attack (Carlini et al. 2021) and the audit's rarity
    columns, so both report the same number for the same text.
    """
    return len(zlib.compress(text.encode("utf-8"), ZLIB_LEVEL))
