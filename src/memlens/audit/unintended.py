"""Unintended memorization in bits (Morris et al. 2025, "How much do language models memorize?",
arXiv:2505.24832).

For a sample ``x``, target model ``T`` and reference model ``R``::

    mem_U(x) = max(0, NLL_bits(x | R) - NLL_bits(x | T))

with ``NLL_bits`` the code length of the *whole* sample in bits (never a per-token max). For text
the reference is a model of the same family trained on a superset, or the best available model:
the answer depends on ``R``, so every result records which ``R`` was used. Summing ``mem_U`` over
samples gives a lower bound on the dataset-level memorization.

The capacity of the target is ``alpha * params`` bits (:func:`memlens.units.capacity_bits`).
"""

from __future__ import annotations

import numpy as np

from memlens.scoring import memorized_bits


def unintended_bits(target_bits: np.ndarray, reference_bits: np.ndarray) -> np.ndarray:
    """``max(0, reference_bits - target_bits)`` per sample, in bits.

    Parameters
    ----------
    target_bits, reference_bits: whole-sample code lengths in bits under the target and under
        the reference (each model with its own tokenizer; see :mod:`memlens.models.hf`).
    """
    t = np.asarray(target_bits, dtype=np.float64)
    r = np.asarray(reference_bits, dtype=np.float64)
    if t.shape != r.shape:
        raise ValueError(
            f"target and reference code lengths differ in shape: {t.shape} vs {r.shape}"
        )
    return memorized_bits(r, t)
