"""Membership-inference attacks computed from one shared scoring pass.

Every attack maps a batch of samples to one score per sample with the convention **higher score
= more likely a member** (tested). All of them read the per-token numbers of
:func:`memlens.scoring.score_tokens` (log2-probabilities, and for Min-K%++ the mean and standard
deviation of ``log2 p`` over the vocabulary, computed on the device); ``gradnorm`` reads
:func:`memlens.scoring.grad_norms`. Units are bits; rank-based metrics do not depend on the unit.

================  ==============================================================  ========================
name              score (higher = member)                                         reference
================  ==============================================================  ========================
``loss``          ``-(1/n) sum_t -log2 p(x_t)``: minus the mean code length        Yeom et al. 2018
                  per predicted token
``zlib``          ``-NLL_bits(x) / zlib_bytes(x)``: the whole text's code length    memlens (Concepts §4)
                  over its zlib-compressed UTF-8 size (two code lengths of the
                  same text)
``zlib_mimir``    ``-(1/n) sum_t -log2 p(x_t) / zlib_bytes(x)``: the mean code      Carlini et al. 2021;
                  length per token over the compressed size, the form of            MIMIR (Duan et al. 2024)
                  Carlini et al.'s code and MIMIR (compare AUCs with their tables)
``ref``           ``NLL_bits(x | R) - NLL_bits(x | T)``: code length under a       Carlini et al. 2021;
                  reference model R minus under the target T (whole texts, first    Morris et al. 2025
                  token charged alike, see :func:`memlens.scoring.comparable_bits`)
``min_k``         mean of the lowest ``floor(k*n)`` token ``log2 p`` (k=0.2)        Shi et al. 2024
``min_k_pp``      mean of the lowest ``floor(k*n)`` of                              Zhang et al. 2025
                  ``(log2 p(x_t) - mu_t) / sigma_t``, mu/sigma of ``log2 p`` over
                  the vocabulary under p itself
``lowercase``     ``mean NLL(lower(x)) / mean NLL(x)``: ratio of the                Carlini et al. 2021
                  log-perplexities of the lowercased and the original text
``gradnorm``      ``-|| grad_theta mean_t -log2 p(x_t) ||_2`` over all trainable   Wang et al. 2024
                  parameters concatenated (the norm of the gradient)
``gradnorm_mimir`` minus the mean over parameter tensors of each tensor's            MIMIR (Duan et al. 2024)
                  ``||grad||_inf``, what MIMIR's public ``GradNormAttack`` computes
================  ==============================================================  ========================

``zlib_bytes`` is :func:`memlens.units.zlib_bytes` (zlib's default level 6, the level of the
audit's ``zlib_bytes`` column, Carlini et al.'s code and MIMIR). ``n`` is the number of predicted
tokens of a sample (text pipelines prepend BOS, so every real token is predicted; MIMIR scores a
GPT-2-style text without a BOS, so its mean runs over ``n - 1`` tokens). The ``_mimir`` forms use
bits where MIMIR uses nats, a constant factor that no ranking (hence no AUC or TPR) sees.
Min-K% and Min-K%++ cannot score a sample with ``floor(k*n) = 0``; they return NaN for it and
:func:`memlens.mia.metrics.evaluate_attacks` reports it (never silently dropped from one attack
only). A zero ``sigma_t`` (a one-hot prediction) is clamped to ``1e-12`` bits.

References: Yeom et al., "Privacy risk in machine learning" (CSF 2018); Carlini et al.,
"Extracting training data from large language models" (USENIX Security 2021); Shi et al.,
"Detecting pretraining data from large language models" (ICLR 2024, Min-K%); Zhang et al.,
"Min-K%++: improved baseline for detecting pre-training data" (ICLR 2025); Wang et al.,
"Pandora's white-box: precise training data detection and extraction in large language models"
(arXiv:2402.17012); Duan et al., "Do membership inference attacks work on large language
models?" (COLM 2024, MIMIR); Morris et al., "How much do language models memorize?"
(arXiv:2505.24832).

A new attack is one function::

    @register_attack("my_attack", needs=("stats",))
    def my_attack(x: AttackInputs) -> np.ndarray:
        '''One line that says what it computes.'''
        return ...
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from memlens.errors import UserError
from memlens.scoring import TokenScores
from memlens.units import zlib_bytes

#: What an attack may need beyond the target's log-probabilities.
NEEDS = {
    "stats": "per-token mean/std of log2 p over the vocabulary (one extra reduction on the device)",
    "text": "the raw text of every sample",
    "reference": "at least one reference model",
    "lowercase": "the target's scores on the lowercased texts",
    "gradnorm": "per-sample gradient norms of the target (a backward pass per sample)",
}


@dataclass
class AttackInputs:
    """Everything the attacks read, for N samples.

    Attributes
    ----------
    target: the target model's :class:`~memlens.scoring.TokenScores` (``[N, T-1]``), with
        ``stats=True`` when ``min_k_pp`` runs.
    texts: the N raw texts (for ``zlib``).
    target_bits: code length of each sample under the target in bits; defaults to
        ``target.nll_bits``. Pass :attr:`memlens.models.hf.ScoredTexts.bits` for texts, so a
        tokenizer without BOS charges its first token consistently.
    references: reference name -> code length in bits of each of the N samples under that
        reference (its own tokenizer; e.g. ``score_texts(ref, texts).bits``).
    reference_target_bits: reference name -> the target's code lengths to subtract for that
        reference, when the pair charges the first token differently from ``target_bits``
        (:func:`memlens.scoring.comparable_bits`); default ``target_bits``.
    lowercase: the target's scores on the N lowercased texts.
    grad_norms: per-sample ``||grad NLL||_2`` (bits per token per unit parameter).
    grad_norms_mimir: per-sample mean over parameter tensors of ``||grad NLL||_inf``.
    k: the Min-K% fraction.
    """

    target: TokenScores
    texts: Sequence[str] | None = None
    target_bits: np.ndarray | None = None
    references: Mapping[str, np.ndarray] = field(default_factory=dict)
    reference_target_bits: Mapping[str, np.ndarray] = field(default_factory=dict)
    lowercase: TokenScores | None = None
    grad_norms: np.ndarray | None = None
    grad_norms_mimir: np.ndarray | None = None
    k: float = 0.2

    @property
    def n(self) -> int:
        return int(self.target.mask.shape[-2])


AttackFn = Callable[[AttackInputs], "np.ndarray | dict[str, np.ndarray]"]


@dataclass(frozen=True)
class Attack:
    """A registered attack: its name, function, needs and one-line description."""

    name: str
    fn: AttackFn
    needs: frozenset[str]
    description: str


#: The registered attacks by name (filled by :func:`register_attack`), in registration order.
ATTACKS: dict[str, Attack] = {}


def register_attack(name: str, *, needs: Iterable[str] = ()) -> Callable[[AttackFn], AttackFn]:
    """Register ``fn`` as attack ``name``. ``fn`` returns one score per sample (higher = member),
    or a dict of named score columns (e.g. one per reference model)."""
    needs = frozenset(needs)
    unknown = needs - NEEDS.keys()
    if unknown:
        raise ValueError(f"unknown needs {sorted(unknown)}; allowed: {sorted(NEEDS)}")

    def deco(fn: AttackFn) -> AttackFn:
        doc = (fn.__doc__ or name).strip().splitlines()[0]
        ATTACKS[name] = Attack(name, fn, needs, doc)
        return fn

    return deco


def lowest_k_mean(values: np.ndarray, n: np.ndarray, k: float) -> np.ndarray:
    """Mean of the ``floor(k * n_i)`` smallest entries of each row (NaN where that is 0).

    ``values`` is ``[N, T]`` with NaN at padded positions; ``n`` the count of real entries.
    """
    if not 0.0 < k <= 1.0:
        raise UserError(f"min-k fraction k must be in (0, 1], got {k}.")
    values = np.asarray(values, dtype=np.float64)
    n = np.asarray(n)
    m = np.floor(n * k + 1e-9).astype(np.int64)
    ordered = np.sort(values, axis=-1)  # NaN (padding) sorts last
    csum = np.cumsum(np.where(np.isnan(ordered), 0.0, ordered), axis=-1)
    idx = np.clip(m - 1, 0, max(values.shape[-1] - 1, 0))
    total = (
        np.take_along_axis(csum, idx[..., None], axis=-1)[..., 0]
        if values.shape[-1]
        else np.zeros(m.shape)
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(m > 0, total / np.maximum(m, 1), np.nan)


@register_attack("loss")
def loss_attack(x: AttackInputs) -> np.ndarray:
    """Minus the mean code length per token, -(1/n) sum -log2 p (Yeom et al. 2018)."""
    return -x.target.mean_nll_bits


def _zlib_sizes(x: AttackInputs) -> np.ndarray:
    if x.texts is None:
        raise UserError(
            "the zlib attacks need the samples' text; they cannot run on bare token ids."
        )
    return np.array([zlib_bytes(t) for t in x.texts], dtype=np.float64)


@register_attack("zlib", needs=("text",))
def zlib_attack(x: AttackInputs) -> np.ndarray:
    """Minus the text's code length in bits over its zlib-compressed byte length."""
    bits = x.target.nll_bits if x.target_bits is None else np.asarray(x.target_bits, float)
    return -bits / _zlib_sizes(x)


@register_attack("zlib_mimir", needs=("text",))
def zlib_mimir_attack(x: AttackInputs) -> np.ndarray:
    """Minus the mean code length per token over the zlib-compressed byte length (Carlini et al.
    2021's code, MIMIR)."""
    return -x.target.mean_nll_bits / _zlib_sizes(x)


@register_attack("ref", needs=("reference",))
def ref_attack(x: AttackInputs) -> dict[str, np.ndarray]:
    """Code length under the reference minus under the target, in bits (one column per reference)."""
    if not x.references:
        raise UserError("the ref attack needs at least one reference model; pass `references`.")
    target = x.target.nll_bits if x.target_bits is None else np.asarray(x.target_bits, float)
    cols = {}
    for name, ref in x.references.items():
        ref = np.asarray(ref, dtype=np.float64).reshape(-1)
        if ref.shape != (x.n,):
            raise ValueError(f"reference {name!r} has {ref.size} code lengths, expected {x.n}")
        own = x.reference_target_bits.get(name)
        cols[name] = ref - (target if own is None else np.asarray(own, dtype=np.float64))
    if len(cols) == 1:
        return {"ref": next(iter(cols.values()))}
    return {f"ref:{name}": v for name, v in cols.items()}


@register_attack("min_k")
def min_k_attack(x: AttackInputs) -> np.ndarray:
    """Mean of the lowest k% token log2-probabilities (Shi et al. 2024, Min-K% Prob)."""
    return lowest_k_mean(x.target.log2p, x.target.n_predicted, x.k)


@register_attack("min_k_pp", needs=("stats",))
def min_k_pp_attack(x: AttackInputs) -> np.ndarray:
    """Mean of the lowest k% of (log2 p - mu) / sigma over the vocabulary (Zhang et al., Min-K%++)."""
    t = x.target
    if t.mu_log2p is None or t.sigma_log2p is None:
        raise ValueError("min_k_pp needs TokenScores computed with stats=True")
    z = (t.log2p - t.mu_log2p) / np.maximum(t.sigma_log2p, 1e-12)
    return lowest_k_mean(z, t.n_predicted, x.k)


@register_attack("lowercase", needs=("lowercase",))
def lowercase_attack(x: AttackInputs) -> np.ndarray:
    """Ratio of log-perplexities, lowercased text over original (Carlini et al. 2021)."""
    if x.lowercase is None:
        raise ValueError("the lowercase attack needs the target's scores on the lowercased texts")
    with np.errstate(invalid="ignore", divide="ignore"):
        return x.lowercase.mean_nll_bits / x.target.mean_nll_bits


@register_attack("gradnorm", needs=("gradnorm",))
def gradnorm_attack(x: AttackInputs) -> np.ndarray:
    """Minus the L2 norm of the gradient of the mean code length over all parameters."""
    if x.grad_norms is None:
        raise ValueError("the gradnorm attack needs per-sample gradient norms")
    return -np.asarray(x.grad_norms, dtype=np.float64)


@register_attack("gradnorm_mimir", needs=("gradnorm",))
def gradnorm_mimir_attack(x: AttackInputs) -> np.ndarray:
    """Minus the mean over parameter tensors of each tensor's gradient L-inf norm (MIMIR)."""
    if x.grad_norms_mimir is None:
        raise ValueError("the gradnorm_mimir attack needs per-sample MIMIR gradient norms")
    return -np.asarray(x.grad_norms_mimir, dtype=np.float64)


def parse_attacks(spec: str | Sequence[str] | None) -> list[str]:
    """Validate a comma-separated list (or sequence) of attack names, keeping order, no duplicates.

    ``None``, ``""`` or ``"all"`` select every registered attack.
    """
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "all")):
        return list(ATTACKS)
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    names: list[str] = []
    for item in items:
        name = item.strip().lower().replace("-", "_")
        if not name:
            continue
        if name not in ATTACKS:
            raise UserError(f"unknown attack {item.strip()!r}; choose from {', '.join(ATTACKS)}.")
        if name not in names:
            names.append(name)
    if not names:
        raise UserError(f"no attack selected; choose from {', '.join(ATTACKS)}.")
    return names


def requirements(names: Iterable[str]) -> set[str]:
    """The union of the ``needs`` of the named attacks."""
    return set().union(*(ATTACKS[n].needs for n in names)) if names else set()


def compute_attacks(names: Sequence[str], inputs: AttackInputs) -> dict[str, np.ndarray]:
    """Run the named attacks; returns score columns (``ref`` may expand to one per reference)."""
    if not 0.0 < inputs.k <= 1.0 or math.isnan(inputs.k):
        raise UserError(f"min-k fraction k must be in (0, 1], got {inputs.k}.")
    out: dict[str, np.ndarray] = {}
    for name in names:
        res = ATTACKS[name].fn(inputs)
        cols = res if isinstance(res, dict) else {name: res}
        for col, v in cols.items():
            v = np.asarray(v, dtype=np.float64)
            if v.shape != (inputs.n,):
                raise ValueError(
                    f"attack {name!r} returned shape {v.shape}, expected ({inputs.n},)"
                )
            out[col] = v
    return out
