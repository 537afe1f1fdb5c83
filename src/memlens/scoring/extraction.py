"""k-extraction: does greedy decoding from a sample's first tokens reproduce the next ones?

Carlini et al. 2023, "Quantifying memorization across neural language models" (arXiv:2202.07646);
the Pythia memorization score of Biderman et al. 2023 ("Emergent and predictable memorization in
large language models"). One rule, written once here and used by the audit, the dynamics tracker
and the MemSinks experiment:

**The rule.** A sequence of token ids starts with ``n_lead`` context ids that are not text (1 for
the BOS memlens puts before every text, 0 for synthetic data). Its *prefix* is the next ``prefix``
tokens and its *suffix* the ``suffix`` tokens after those (Carlini et al.'s fixed-length suffix;
the audit and the tracker), or, with ``suffix=None``, every token after the prefix (MemSinks:
"reproduces the rest of the document"). The sequence is **eligible** iff it has at least
``prefix + suffix`` tokens after the lead, or with ``suffix=None`` at least
``prefix + min_suffix`` (:func:`extraction_eligible`); a shorter one is not eligible and is left
out of every rate (never counted as "not extracted"). An eligible sequence is **extracted** iff
greedy (argmax) decoding from its lead + prefix reproduces its suffix exactly.

Two readings of the rule:

* :func:`teacher_forced_extraction` reads ``extracted`` off the argmax flags of one teacher-forced
  scoring pass (:func:`memlens.scoring.score_tokens` with ``argmax=True``): greedy decoding
  reproduces the suffix *if and only if* every suffix token is the model's argmax given the true
  tokens before it (by induction over the suffix: while the decoded tokens equal the true ones,
  the decoder sees the true prefix). It costs nothing beyond the scoring pass. Its
  ``suffix_accuracy`` is the fraction of suffix tokens that are the argmax *given the true
  tokens before them*.
* :func:`k_extraction` really decodes (batched, KV cache, :func:`greedy_continue`), because
  Pythia's memorization score, the ``match_fraction`` (the fraction of the ``suffix`` greedy
  tokens equal to the true ones, position by position, decoding on past the first mismatch),
  depends on what the model generates after a mistake, which no teacher-forced pass shows. Its
  ``exact`` equals the teacher-forced one (tested). The audit reports Pythia's score, so it
  decodes; the tracker and MemSinks, which observe many models or many steps, read the flags.

Both live here, in the scoring package, because both read a model's argmax over the same
sequences and share the rule; decoding is the only forward in memlens that is not a scoring pass,
and it stays next to the pass it must agree with.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from memlens.errors import UserError
from memlens.progress import ProgressFn, emit


def check_window(
    prefix: int,
    suffix: int | None,
    n_lead: int = 0,
    context_length: int | None = None,
    min_suffix: int = 1,
) -> None:
    """:class:`UserError` unless ``prefix`` and ``suffix`` (or ``min_suffix``) are at least 1 and
    lead + prefix + suffix - 1 tokens fit the context (the last suffix token is predicted, never
    fed)."""
    n = min_suffix if suffix is None else suffix
    if prefix < 1 or n < 1:
        raise UserError(f"`prefix` and `suffix` must be at least 1 token, got {prefix} and {n}.")
    if context_length is not None and n_lead + prefix + n - 1 > context_length:
        raise UserError(
            f"prefix {prefix} + suffix {n} tokens do not fit the context of {context_length}; "
            "use a shorter `prefix` or `suffix`."
        )


def extraction_eligible(
    lengths: Sequence[int] | np.ndarray,
    *,
    prefix: int,
    suffix: int | None,
    n_lead: int = 0,
    min_suffix: int = 1,
) -> np.ndarray:
    """The eligibility rule: ``length - n_lead >= prefix + suffix`` for each sequence (with
    ``suffix=None``: ``length - n_lead >= prefix + min_suffix``).

    ``lengths`` count every id of a sequence, the ``n_lead`` context ids (a BOS) included.
    """
    need = prefix + (min_suffix if suffix is None else suffix)
    return np.asarray(lengths, dtype=np.int64) - n_lead >= need


@dataclass
class _Extracted:
    """What both readings share: per-sequence ``eligible`` and ``exact`` flags."""

    eligible: np.ndarray
    exact: np.ndarray

    @property
    def n_eligible(self) -> int:
        return int(self.eligible.sum())

    @property
    def rate(self) -> float:
        """Exact-extraction rate among eligible sequences (NaN when none is eligible)."""
        return float(self.exact[self.eligible].mean()) if self.n_eligible else float("nan")


@dataclass
class TeacherForcedExtraction(_Extracted):
    """k-extraction read off one teacher-forced pass (see the module docstring).

    Attributes
    ----------
    eligible: the sequence is long enough under the rule.
    exact: every suffix token is the argmax given the true tokens before it, i.e. greedy decoding
        from the prefix reproduces the suffix (False when not eligible).
    suffix_accuracy: fraction of suffix tokens that are the argmax given the true tokens before
        them, in [0, 1] (NaN when not eligible). Not Pythia's match fraction.
    prefix, suffix, n_lead: lengths in tokens (``suffix`` ``None``: the rest of each sequence).
    """

    suffix_accuracy: np.ndarray
    prefix: int
    suffix: int | None
    n_lead: int = 0

    @property
    def mean_suffix_accuracy(self) -> float:
        """Mean ``suffix_accuracy`` over eligible sequences (NaN when none is eligible)."""
        return (
            float(self.suffix_accuracy[self.eligible].mean()) if self.n_eligible else float("nan")
        )


def teacher_forced_extraction(
    scores: Any, *, prefix: int, suffix: int | None, n_lead: int = 0, min_suffix: int = 1
) -> TeacherForcedExtraction:
    """k-extraction of every sequence from the argmax flags of a teacher-forced scoring pass.

    Parameters
    ----------
    scores: :class:`~memlens.scoring.TokenScores` computed with ``argmax=True`` (shape
        ``[..., N, W]``; column ``j`` predicts token ``j + 1``, so a sequence has
        ``mask.sum() + 1`` tokens).
    prefix, suffix: prompt and target lengths in tokens after the ``n_lead`` context ids;
        ``suffix=None`` takes every token after the prefix, of which there must be at least
        ``min_suffix``.

    Returns
    -------
    TeacherForcedExtraction with arrays of shape ``[..., N]``.

    Examples
    --------
    Token ``t`` of a sequence is predicted by column ``t - 1``. With ``prefix=1, suffix=2`` the
    suffix is tokens 1..2, i.e. columns 0..1:

    >>> import numpy as np
    >>> from memlens.scoring import TokenScores
    >>> am = np.array([[True, True, False], [True, False, True], [True, False, False]])
    >>> mask = np.array([[True, True, True], [True, True, True], [True, False, False]])
    >>> r = teacher_forced_extraction(
    ...     TokenScores(log2p=np.zeros((3, 3)), mask=mask, is_argmax=am & mask), prefix=1, suffix=2)
    >>> r.eligible.tolist(), r.exact.tolist(), r.suffix_accuracy.tolist()[:2]
    ([True, True, False], [True, False, False], [1.0, 0.5])
    """
    check_window(prefix, suffix, n_lead, min_suffix=min_suffix)
    if scores.is_argmax is None:
        raise ValueError("teacher-forced extraction needs scores computed with argmax=True")
    lengths = np.asarray(scores.mask).sum(axis=-1) + 1
    eligible = extraction_eligible(
        lengths, prefix=prefix, suffix=suffix, n_lead=n_lead, min_suffix=min_suffix
    )
    start = n_lead + prefix - 1  # the column that predicts the first suffix token
    stop = None if suffix is None else start + suffix
    hits = np.asarray(scores.is_argmax)[..., start:stop].sum(axis=-1)  # False beyond a length
    n_suffix = np.maximum(lengths - n_lead - prefix, 1) if suffix is None else suffix
    exact = eligible & (hits == n_suffix)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.where(eligible, hits / n_suffix, np.nan)
    return TeacherForcedExtraction(eligible, exact, accuracy, prefix, suffix, n_lead)


@dataclass
class ExtractionResult(_Extracted):
    """Per-sample k-extraction results of real greedy decoding (:func:`k_extraction`).

    Attributes
    ----------
    eligible: the sample has at least ``prefix + suffix`` tokens after its lead.
    exact: greedy decoding reproduced the whole suffix (False when not eligible).
    match_fraction: fraction of suffix tokens reproduced in place, in [0, 1] (NaN when not eligible).
    generated: the greedy continuation of each eligible sample (``None`` otherwise).
    prefix, suffix: lengths in tokens.
    """

    match_fraction: np.ndarray
    generated: list[np.ndarray | None]
    prefix: int
    suffix: int

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
    progress: ProgressFn | None = None,
    task: str = "extraction",
) -> ExtractionResult:
    """Greedy k-extraction, by real decoding, of every eligible sample (see the module's rule).

    Parameters
    ----------
    model: a Hugging Face causal LM.
    sequences: token ids per sample; the first ``n_lead`` ids (a BOS) are context, not text.
    prefix, suffix: prompt and target lengths in text tokens (defaults 32/32, as Pythia).
    context_length: the model's context; ``n_lead + prefix + suffix - 1`` tokens must fit.
    progress: receives a :class:`~memlens.progress.ProgressEvent` for ``task`` after every
        batch (eligible samples done, out of all eligible samples).
    """
    check_window(prefix, suffix, n_lead, context_length)
    N = len(sequences)
    eligible = extraction_eligible(
        [len(s) for s in sequences], prefix=prefix, suffix=suffix, n_lead=n_lead
    )
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
            emit(progress, task, stop, len(idx))
        match = gen == truth
        exact[idx] = match.all(axis=1)
        frac[idx] = match.mean(axis=1)
        for r, i in enumerate(idx):
            generated[i] = gen[r]
    return ExtractionResult(eligible, exact, frac, generated, prefix, suffix)
