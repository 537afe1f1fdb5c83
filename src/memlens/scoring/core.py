"""The scoring engine: per-token log2-probabilities and per-sequence code lengths in bits.

Every memlens analysis (capacity, unintended memorization, membership inference, dynamics,
sinks) reads the numbers computed here; nothing else calls a model forward for scoring.

Definitions (Morris et al. 2025, "How much do language models memorize?", arXiv:2505.24832):

* ``log2 p(x_t | x_<t)`` for every predicted token, in bits (negative numbers).
* Code length ``NLL_bits(x) = -sum_t log2 p(x_t | x_<t)``; arithmetic coding achieves it to within
  2 bits.

The engine works in batches under ``torch.inference_mode``. The full ``[T, V]`` distribution
never leaves the device: it is reduced on the device to the token's log-probability and, when
asked, to the distribution's mean and standard deviation of ``log p`` (for Min-K%++), its entropy,
and whether the token was the greedy (argmax) choice. Only ``[B, T]``-sized results move to the
host.

A *forward* is any callable mapping token ids ``[..., B, T]`` (and an optional attention mask of
the same shape) to logits ``[..., B, T, V]``: memlens's own :class:`~memlens.models.gpt.GPT`
(with a leading model axis), or a Hugging Face causal LM wrapped by :func:`hf_forward`.

First-token convention: the engine scores tokens ``1..T-1`` given their prefixes. What to charge
for token 0 is the caller's choice, made explicit with ``first_token_bits`` in
:func:`code_length_bits`: memlens's synthetic experiments code it at ``log2 V`` (exactly its
entropy under the uniform source, so it never counts as memorized); text pipelines prepend a BOS
token so every real token is predicted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from memlens.errors import UserError
from memlens.progress import ProgressFn, emit
from memlens.units import LN2

Forward = Callable[..., Tensor]


@dataclass
class TokenScores:
    """Per-token results of one scoring pass, as numpy arrays on the host.

    All arrays have shape ``[..., N, T-1]`` (one column per predicted token ``x_1..x_{T-1}``);
    positions beyond a sequence's length hold NaN (floats) or False (booleans).

    Attributes
    ----------
    log2p: ``log2 p(x_t | x_<t)`` in bits (<= 0).
    mask: True where a real token was predicted.
    mu_log2p, sigma_log2p: mean and standard deviation of ``log2 p(v | x_<t)`` over the vocabulary
        under p itself (``E_{v~p}[log2 p(v)]`` and its spread), for Min-K%++ (Zhang et al. 2024).
    entropy_bits: Shannon entropy of the predicted distribution, in bits.
    is_argmax: True where ``x_t`` was the model's greedy choice (teacher forced).
    """

    log2p: np.ndarray
    mask: np.ndarray
    mu_log2p: np.ndarray | None = None
    sigma_log2p: np.ndarray | None = None
    entropy_bits: np.ndarray | None = None
    is_argmax: np.ndarray | None = None
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_predicted(self) -> np.ndarray:
        """Number of predicted tokens per sequence."""
        return self.mask.sum(axis=-1)

    @property
    def nll_bits(self) -> np.ndarray:
        """Code length of the predicted tokens per sequence, ``-sum_t log2 p``, in bits."""
        return -np.where(self.mask, self.log2p, 0.0).sum(axis=-1)

    @property
    def mean_nll_bits(self) -> np.ndarray:
        """Mean code length per predicted token, in bits (NaN for sequences with none)."""
        n = self.n_predicted
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, self.nll_bits / np.maximum(n, 1), np.nan)

    def take(self, rows: slice | np.ndarray, *, model: int | None = None) -> TokenScores:
        """The sequences ``rows`` (a slice or an index array), trimmed to the longest of them.

        For a stack of models (arrays ``[K, N, T-1]``), ``model`` picks one model first. Columns
        past the longest kept sequence (all padding) are dropped, so per-sequence numbers are
        unchanged; ``extras`` are not carried over.
        """

        def pick(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else (a if model is None else a[model])[rows]

        mask = pick(self.mask)
        width = max(int(mask.sum(axis=-1).max(initial=0)), 1)

        def cut(a: np.ndarray | None) -> np.ndarray | None:
            a = pick(a)
            return None if a is None else a[..., :width]

        return TokenScores(
            log2p=cut(self.log2p),
            mask=mask[..., :width],
            mu_log2p=cut(self.mu_log2p),
            sigma_log2p=cut(self.sigma_log2p),
            entropy_bits=cut(self.entropy_bits),
            is_argmax=cut(self.is_argmax),
        )


def code_length_bits(scores: TokenScores, first_token_bits: float = 0.0) -> np.ndarray:
    """Per-sequence code length ``NLL_bits(x)`` in bits, charging ``first_token_bits`` for token 0.

    Use ``first_token_bits = log2(V)`` for uniform synthetic data (the first token is coded with
    the uniform code), and ``0`` when token 0 is a BOS marker that carries no information.
    """
    return scores.nll_bits + first_token_bits


def _log_softmax(logits: Tensor) -> Tensor:
    """Natural-log softmax over the vocabulary axis, always in float32."""
    return torch.log_softmax(logits.float(), dim=-1)


def _pick_log2p(logp: Tensor, targets: Tensor) -> Tensor:
    """The target entries of a natural-log distribution ``[..., V]``, in bits."""
    return logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1) / LN2


def token_log2p(logits: Tensor, targets: Tensor) -> Tensor:
    """``log2 p(targets)`` in bits for logits ``[..., V]`` and ids ``[...]`` (softmax in float32).

    The one place memlens turns logits into token log-probabilities; differentiable, so the
    gradient-norm attack (:func:`grad_norms`) and MemSinks' unit attribution
    (:func:`memlens.sinks.localize.unit_attribution`) take gradients of exactly what the scoring
    pass reports.
    """
    return _pick_log2p(_log_softmax(logits), targets)


REDUCE_CHUNK = 1 << 24
"""Logit elements reduced at once (64 MB in float32): the log-softmax and the Min-K%++ moments
are taken in blocks of this size, so their temporaries never approach the size of the logits of
a whole batch (a batch of 16 texts of 200 tokens over a 49152-token vocabulary has 157M)."""


def _reduce_block(
    logits: Tensor, targets: Tensor, want_stats: bool, want_argmax: bool
) -> dict[str, Tensor]:
    logp = _log_softmax(logits)
    out = {"log2p": _pick_log2p(logp, targets)}
    if want_stats:
        p = logp.exp()
        mu = (p * logp).sum(-1)
        var = (p * logp.square()).sum(-1) - mu.square()
        out["mu"] = mu / LN2
        out["sigma"] = var.clamp_min(0).sqrt() / LN2
        out["entropy"] = -out["mu"]
    if want_argmax:
        out["is_argmax"] = logits.argmax(-1) == targets
    return out


def _reduce_logits(
    logits: Tensor, targets: Tensor, want_stats: bool, want_argmax: bool
) -> dict[str, Tensor]:
    """Reduce logits ``[..., T', V]`` against ``targets [..., T']`` on the device, in blocks of
    at most :data:`REDUCE_CHUNK` elements (whole rows when they fit, else pieces of a row)."""
    if logits.numel() <= REDUCE_CHUNK:
        return _reduce_block(logits, targets, want_stats, want_argmax)
    *lead, Tp, V = logits.shape
    x = logits.reshape(-1, Tp, V)  # a view: the leading axes of a [..., T', V] slice merge
    y = targets.reshape(-1, Tp)
    R = x.shape[0]
    out: dict[str, Tensor] = {}
    if Tp * V <= REDUCE_CHUNK:
        step = max(1, REDUCE_CHUNK // (Tp * V))
        blocks = [(slice(r, r + step), slice(None)) for r in range(0, R, step)]
    else:
        step = max(1, REDUCE_CHUNK // V)
        blocks = [
            (slice(r, r + 1), slice(t, t + step)) for r in range(R) for t in range(0, Tp, step)
        ]
    for rows, cols in blocks:
        part = _reduce_block(x[rows, cols], y[rows, cols], want_stats, want_argmax)
        for k, v in part.items():
            if k not in out:
                out[k] = torch.empty((R, Tp), dtype=v.dtype, device=v.device)
            out[k][rows, cols] = v
    return {k: v.reshape(*lead, Tp) for k, v in out.items()}


@torch.inference_mode()
def score_tokens(
    forward: Forward,
    tokens: Tensor | np.ndarray,
    lengths: Sequence[int] | np.ndarray | Tensor | None = None,
    *,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    stats: bool = False,
    argmax: bool = False,
    pass_attention_mask: bool = False,
    autocast_dtype: torch.dtype | None = None,
) -> TokenScores:
    """Score token sequences with one batched pass.

    Parameters
    ----------
    forward:
        Maps ids ``[..., b, T]`` (and ``attention_mask=`` when ``pass_attention_mask``) to logits
        ``[..., b, T, V]``.
    tokens:
        Integer ids ``[..., N, T]``; leading axes (e.g. one per model of a
        :class:`~memlens.models.gpt.GPT` stack) are passed through unchanged.
    lengths:
        Optional true length of each of the N sequences (right padding beyond it).
    batch_size:
        Sequences per forward pass (along the N axis).
    stats:
        Also compute ``mu_log2p``, ``sigma_log2p`` and ``entropy_bits`` on the device.
    argmax:
        Also record whether each token was the greedy choice.
    autocast_dtype:
        Run the forward under ``torch.autocast`` with this dtype (e.g. ``torch.bfloat16``); the
        softmax is always taken in float32.

    Returns
    -------
    TokenScores with arrays of shape ``[..., N, T-1]``.
    """
    tokens = torch.as_tensor(tokens)
    if tokens.dim() < 2:
        raise ValueError("tokens must have shape [..., N, T]")
    if device is None:
        device = tokens.device
    device = torch.device(device)
    *lead, N, T = tokens.shape
    if lengths is None:
        length_t = torch.full((N,), T, dtype=torch.long)
    else:
        length_t = torch.as_tensor(np.asarray(lengths), dtype=torch.long)
    positions = torch.arange(T)
    pad_mask = positions.unsqueeze(0) < length_t.unsqueeze(1)  # [N, T]

    chunks: dict[str, list[Tensor]] = {}
    for start in range(0, N, batch_size):
        stop = min(N, start + batch_size)
        ids = tokens[..., start:stop, :].to(device, non_blocking=True)
        kwargs = {}
        if pass_attention_mask:
            am = pad_mask[start:stop].to(device).long().expand(*lead, stop - start, T)
            kwargs["attention_mask"] = am
        if autocast_dtype is not None:
            with torch.autocast(device_type=device.type, dtype=autocast_dtype):
                logits = forward(ids, **kwargs)
        else:
            logits = forward(ids, **kwargs)
        red = _reduce_logits(logits[..., :-1, :], ids[..., 1:], stats, argmax)
        for k, v in red.items():
            chunks.setdefault(k, []).append(v.cpu())

    mask = pad_mask[:, 1:].expand(*lead, N, T - 1).numpy().copy()
    cat = {k: torch.cat(v, dim=-2).numpy() for k, v in chunks.items()}

    def masked(a: np.ndarray) -> np.ndarray:
        a = a.astype(np.float64)
        a[~mask] = np.nan
        return a

    return TokenScores(
        log2p=masked(cat["log2p"]),
        mask=mask,
        mu_log2p=masked(cat["mu"]) if stats else None,
        sigma_log2p=masked(cat["sigma"]) if stats else None,
        entropy_bits=masked(cat["entropy"]) if stats else None,
        is_argmax=(cat["is_argmax"] & mask) if argmax else None,
    )


def gpt_forward(model: torch.nn.Module) -> Forward:
    """A forward for memlens's :class:`~memlens.models.gpt.GPT` (ids ``[K, b, T]``)."""

    def fwd(ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        return model(ids)

    return fwd


def hf_forward(model: torch.nn.Module) -> Forward:
    """A forward for a Hugging Face causal LM (ids ``[b, T]``, attention mask passed through)."""

    def fwd(ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        return model(input_ids=ids, attention_mask=attention_mask, use_cache=False).logits

    return fwd


def memorized_bits(entropy_bits: np.ndarray | float, nll_bits: np.ndarray) -> np.ndarray:
    """Unintended memorization per sequence, ``max(0, H(x) - NLL_bits(x))``, in bits.

    The max is taken over whole-sequence code lengths, never per token (Morris et al. 2025).
    ``entropy_bits`` is the code length under the reference: the true source for synthetic data,
    a reference model for text.
    """
    return np.maximum(
        0.0, np.asarray(entropy_bits, dtype=np.float64) - np.asarray(nll_bits, dtype=np.float64)
    )


#: Per-sample gradient norms offered by :func:`grad_norms`.
GRAD_NORMS = {
    "l2": "||g||_2 over all parameters concatenated (the norm of the gradient)",
    "mimir": "mean over parameter tensors of each tensor's ||g||_inf (MIMIR's GradNormAttack as run)",
}


def _norm_of(grads: Sequence[Tensor], norm: str) -> float:
    if norm == "l2":
        return float(torch.stack([g.double().square().sum() for g in grads]).sum().sqrt())
    return float(torch.stack([g.double().abs().max() for g in grads]).mean())


def grad_norms(
    forward: Forward,
    parameters: Sequence[torch.nn.Parameter],
    tokens: Tensor | np.ndarray,
    lengths: Sequence[int] | np.ndarray | Tensor | None = None,
    *,
    norm: str | Sequence[str] = "l2",
    device: str | torch.device | None = None,
    pass_attention_mask: bool = False,
    progress: ProgressFn | None = None,
    task: str = "gradnorm",
) -> np.ndarray | dict[str, np.ndarray]:
    """Per-sequence norm of ``grad_theta (1/n) sum_t -log2 p(x_t | x_<t)`` over ``parameters``.

    The loss is the mean code length per predicted token in bits (the quantity of the ``loss``
    membership-inference attack). Used by the gradient-norm attacks (Wang et al. 2024, "Pandora's
    white-box: precise training data detection and extraction in large language models",
    arXiv:2402.17012; MIMIR, Duan et al. 2024). ``tokens`` is ``[N, T]`` (right-padded to
    ``lengths``); the model should be in eval mode (no dropout).

    Parameters
    ----------
    norm:
        ``"l2"`` (default): ``||g||_2`` over all given parameters concatenated, the norm of the
        gradient as the attack is defined. ``"mimir"``: the mean over parameter tensors (those
        that receive a gradient) of each tensor's ``||g||_inf``, which is what MIMIR's public
        ``GradNormAttack`` computes (it averages per-tensor p-norms, ``p = inf`` unless the caller
        passes another; its loss is in nats, a constant factor that no ranking sees). A sequence
        of names computes several norms from the same backward pass and returns a dict.
    progress:
        Receives a :class:`~memlens.progress.ProgressEvent` for ``task`` after every sequence.

    Returns
    -------
    numpy.ndarray or dict of str to numpy.ndarray
        float64 ``[N]`` (a dict of them for several norms); NaN for a sequence that predicts no
        token.

    Notes
    -----
    Each sequence gets its own forward and backward pass, trimmed to its length (no padding, so
    no masking is needed). On CPU this measured faster than a batched forward with a vmapped
    backward (``torch.autograd.grad(..., is_grads_batched=True)``), and ``torch.func.vmap`` over
    a Hugging Face forward fails on its data-dependent attention-mask code.
    """
    names = [norm] if isinstance(norm, str) else list(norm)
    for name in names:
        if name not in GRAD_NORMS:
            raise UserError(f"unknown gradient norm {name!r}; use one of {', '.join(GRAD_NORMS)}.")
    tokens = torch.as_tensor(tokens)
    if tokens.dim() != 2:
        raise ValueError("tokens must have shape [N, T]")
    N, T = tokens.shape
    lengths_np = np.full(N, T) if lengths is None else np.asarray(lengths).reshape(-1)
    params = [p for p in parameters if p.requires_grad]
    if not params:
        raise ValueError("no trainable parameters to differentiate")
    if device is None:
        device = params[0].device
    out = {name: np.full(N, np.nan) for name in names}
    with torch.enable_grad():
        for i in range(N):
            n = int(lengths_np[i])
            if n >= 2:
                ids = tokens[i : i + 1, :n].to(device)
                kwargs = {"attention_mask": torch.ones_like(ids)} if pass_attention_mask else {}
                logits = forward(ids, **kwargs).reshape(n, -1)[:-1]
                nll_bits = -token_log2p(logits, ids[0, 1:]).mean()
                grads = torch.autograd.grad(nll_bits, params, allow_unused=True)
                grads = [g.detach() for g in grads if g is not None]
                for name in names:
                    out[name][i] = _norm_of(grads, name)
            emit(progress, task, i + 1, N)
    return out[norm] if isinstance(norm, str) else out
