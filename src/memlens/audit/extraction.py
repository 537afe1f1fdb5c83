"""k-extraction by greedy decoding, batched (Carlini et al. 2023, "Quantifying memorization across
neural language models"; the Pythia memorization score of Biderman et al. 2023).

A training sample is *extractable* with a ``k = prefix``-token context if greedy decoding from its
first ``prefix`` tokens reproduces its next ``suffix`` tokens exactly. The *match fraction* is the
fraction of the ``suffix`` greedy tokens equal to the true ones, position by position (Pythia's
memorization score: 32-token prefix, 32-token suffix; 1.0 means memorized). Extraction is only
evidence of memorization where it beats held-out data of the same distribution, so
:mod:`memlens.audit.recipe` reports both rates and their difference.

Decoding is batched: every prompt has exactly ``prefix`` tokens (plus the BOS id that memlens
puts before every text, see :mod:`memlens.models.hf`), so batches need no padding; one forward
over the prompts fills the KV cache and each further step feeds one token per row.
Samples with fewer than ``prefix + suffix`` tokens are not eligible and are left out of rates.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from memlens.errors import UserError


@dataclass
class ExtractionResult:
    """Per-sample k-extraction results.

    Attributes
    ----------
    eligible: the sample has at least ``prefix + suffix`` tokens.
    exact: greedy decoding reproduced the whole suffix (False when not eligible).
    match_fraction: fraction of suffix tokens reproduced in place, in [0, 1] (NaN when not eligible).
    generated: the greedy continuation of each eligible sample (``None`` otherwise).
    prefix, suffix: lengths in tokens.
    """

    eligible: np.ndarray
    exact: np.ndarray
    match_fraction: np.ndarray
    generated: list[np.ndarray | None]
    prefix: int
    suffix: int

    @property
    def n_eligible(self) -> int:
        return int(self.eligible.sum())

    @property
    def rate(self) -> float:
        """Exact-extraction rate among eligible samples (NaN when none is eligible)."""
        return float(self.exact[self.eligible].mean()) if self.n_eligible else float("nan")

    @property
    def mean_match_fraction(self) -> float:
        return float(np.nanmean(self.match_fraction)) if self.n_eligible else float("nan")


@torch.inference_mode()
def greedy_continue(
    model: torch.nn.Module,
    prompts: Tensor | np.ndarray,
    n_new: int,
    *,
    batch_size: int = 64,
    device: str | torch.device | None = None,
) -> Tensor:
    """Greedy (argmax) continuation of equal-length prompts with a KV cache.

    Parameters
    ----------
    model: a Hugging Face causal LM.
    prompts: token ids ``[B, P]`` (no padding).
    n_new: tokens to generate per prompt.

    Returns
    -------
    ``[B, n_new]`` int64 tensor on the CPU. Equivalent to ``model.generate(do_sample=False)``
    with end-of-text stopping disabled.
    """
    prompts = torch.as_tensor(prompts, dtype=torch.long)
    if device is None:
        device = next(model.parameters()).device
    params = inspect.signature(model.forward).parameters
    # Only the last position's logits are needed: skip the LM head elsewhere when supported.
    keep = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
    # transformers >= 5.2x names the KV cache ``cache`` (``past_key_values`` is deprecated there).
    cache_arg = "cache" if "cache" in params else "past_key_values"
    outs = []
    for start in range(0, prompts.shape[0], batch_size):
        ids = prompts[start : start + batch_size].to(device)
        res = model(input_ids=ids, use_cache=True, **keep)
        past = res[cache_arg]
        nxt = res.logits[:, -1].argmax(-1)
        gen = [nxt]
        for _ in range(n_new - 1):
            res = model(input_ids=nxt[:, None], use_cache=True, **{cache_arg: past}, **keep)
            past = res[cache_arg]
            nxt = res.logits[:, -1].argmax(-1)
            gen.append(nxt)
        outs.append(torch.stack(gen, dim=1).cpu())
    if not outs:
        return torch.empty((0, n_new), dtype=torch.long)
    return torch.cat(outs)


def k_extraction(
    model: torch.nn.Module,
    sequences: Sequence[np.ndarray],
    *,
    prefix: int = 32,
    suffix: int = 32,
    n_lead: int = 0,
    context_length: int | None = None,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    progress: Callable[[int], None] | None = None,
) -> ExtractionResult:
    """Greedy k-extraction of every sample with at least ``prefix + suffix`` tokens.

    Parameters
    ----------
    model: a Hugging Face causal LM.
    sequences: token ids per sample; the first ``n_lead`` ids (a BOS) are context, not text.
    prefix, suffix: prompt and target lengths in text tokens (defaults 32/32, as Pythia).
    context_length: the model's context; ``n_lead + prefix + suffix - 1`` tokens must fit.
    progress: called with the number of eligible samples finished after every batch.
    """
    if prefix < 1 or suffix < 1:
        raise UserError(
            f"--prefix and --suffix must be at least 1 token, got {prefix} and {suffix}."
        )
    need = n_lead + prefix + suffix - 1
    if context_length is not None and need > context_length:
        raise UserError(
            f"prefix {prefix} + suffix {suffix} tokens do not fit the model's context of {context_length}; use a shorter --prefix/--suffix."
        )
    N = len(sequences)
    eligible = np.array([len(s) - n_lead >= prefix + suffix for s in sequences], dtype=bool)
    exact = np.zeros(N, dtype=bool)
    frac = np.full(N, np.nan)
    generated: list[np.ndarray | None] = [None] * N
    idx = np.flatnonzero(eligible)
    if len(idx):
        p = n_lead + prefix
        prompts = np.stack([np.asarray(sequences[i][:p], dtype=np.int64) for i in idx])
        truth = np.stack([np.asarray(sequences[i][p : p + suffix], dtype=np.int64) for i in idx])
        gen = np.empty_like(truth)
        for start in range(0, len(idx), batch_size):
            stop = min(len(idx), start + batch_size)
            gen[start:stop] = greedy_continue(
                model, prompts[start:stop], suffix, batch_size=batch_size, device=device
            ).numpy()
            if progress is not None:
                progress(stop)
        match = gen == truth
        exact[idx] = match.all(axis=1)
        frac[idx] = match.mean(axis=1)
        for r, i in enumerate(idx):
            generated[i] = gen[r]
    return ExtractionResult(eligible, exact, frac, generated, prefix, suffix)
