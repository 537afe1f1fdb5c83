"""Fused output projection + cross-entropy for training K stacked models on a CPU (or GPU).

For the small models of the capacity lab the output layer dominates a training step: the logits
``[K, M, V]`` (M = batch × positions) are larger than every other activation, and the plain
``cross_entropy(bmm(h, Wᵀ))`` path makes five full passes over them and allocates three or four
tensors of that size per step (logits, log-softmax, the zero-filled NLL gradient, the
log-softmax gradient). On a CPU that is memory traffic and page faults, not arithmetic.

:class:`LinearCrossEntropy` computes the loss and its gradients in one sweep over row chunks
small enough to stay in cache: for each chunk it forms the logits, turns them *in place* into
``softmax - onehot`` (the gradient of the summed cross-entropy with respect to the logits), and
immediately contracts that with the weights and hidden states. Only ``grad_h [K, M, d]`` and
``grad_W [K, V, d]`` are kept for the backward pass, which merely scales them by the incoming
gradient. The ``[K, M, V]`` tensor is never materialized.

The loss returned is the sum over models of each model's mean next-token cross-entropy in nats,
the same number as ``K * F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))`` when the
models have equally many targets (tested against it, loss and gradients). With a ``mask``
``[K, M]`` only the targets where it is True count: each model's loss is the mean over its real
targets (right padding of variable-length texts is not trained on), the same number as
``F.cross_entropy(..., ignore_index=...)`` per model (tested against log-softmax by hand).
"""

from __future__ import annotations

import torch
from torch import Tensor


def _chunk_rows(k: int, v: int, target_bytes: int) -> int:
    return max(16, target_bytes // (4 * k * v))


class LinearCrossEntropy(torch.autograd.Function):
    """``sum_k mean_m CE(h[k, m] @ W[k]ᵀ, y[k, m])`` with gradients computed in the forward."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, h: Tensor, weight: Tensor, targets: Tensor, chunk_bytes: int, mask: Tensor | None
    ) -> Tensor:
        # h [K, M, d], weight [K, V, d], targets [K, M] (int64), mask None or [K, M] (float 0/1)
        K, M, _ = h.shape
        V = weight.shape[1]
        needs_h, needs_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        compute_dtype = torch.float32
        hf = h.to(compute_dtype)
        wf = weight.to(compute_dtype)
        wt = wf.transpose(1, 2)  # [K, d, V]
        grad_h = torch.empty_like(hf) if needs_h else None
        grad_w = torch.zeros_like(wf) if needs_w else None
        loss = torch.zeros(K, dtype=torch.float64, device=h.device)
        rows = _chunk_rows(K, V, chunk_bytes)
        buf = torch.empty(K, min(rows, M), V, dtype=compute_dtype, device=h.device)
        for start in range(0, M, rows):
            stop = min(M, start + rows)
            n = stop - start
            hc = hf[:, start:stop]
            yc = targets[:, start:stop].unsqueeze(-1)  # [K, n, 1]
            logits = buf[:, :n]
            torch.bmm(hc, wt, out=logits)
            target_logit = logits.gather(-1, yc)  # [K, n, 1]
            mx = logits.amax(-1, keepdim=True)
            logits.sub_(mx).exp_()
            z = logits.sum(-1, keepdim=True)
            # loss = logsumexp - target logit = mx + log z - target
            if mask is None:
                loss += (mx + z.log() - target_logit).sum((1, 2)).double()
            else:
                mc = mask[:, start:stop].unsqueeze(-1)  # [K, n, 1]
                loss += ((mx + z.log() - target_logit) * mc).sum((1, 2)).double()
            if needs_h or needs_w:
                logits.div_(z)  # softmax
                logits.scatter_add_(-1, yc, torch.full_like(target_logit, -1.0))
                if mask is not None:
                    logits.mul_(mc)  # a padded target contributes no gradient
                if needs_h:
                    torch.bmm(logits, wf, out=grad_h[:, start:stop])
                if needs_w:
                    grad_w.baddbmm_(logits.transpose(1, 2), hc)
        if mask is None:
            scale = 1.0 / M  # per-model mean over its M targets
        else:  # per-model mean over its real targets (a model with none contributes 0)
            scale = 1.0 / mask.sum(1, dtype=torch.float64).clamp_min(1.0)  # [K]
            loss = loss * scale
            scale = scale.to(compute_dtype).view(K, 1, 1)
        if grad_h is not None:
            grad_h.mul_(scale)
        if grad_w is not None:
            grad_w.mul_(scale)
        ctx.save_for_backward(
            grad_h if grad_h is not None else torch.empty(0),
            grad_w if grad_w is not None else torch.empty(0),
        )
        ctx.dtypes = (h.dtype, weight.dtype)
        if mask is not None:
            return loss.sum().to(torch.float32)
        return (loss.sum() * scale).to(torch.float32)

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        grad_h, grad_w = ctx.saved_tensors
        gh = gw = None
        if ctx.needs_input_grad[0]:
            gh = (grad_h * grad_out).to(ctx.dtypes[0])
        if ctx.needs_input_grad[1]:
            gw = (grad_w * grad_out).to(ctx.dtypes[1])
        return gh, gw, None, None, None


def linear_cross_entropy(
    h: Tensor,
    weight: Tensor,
    targets: Tensor,
    chunk_bytes: int = 1 << 20,
    mask: Tensor | None = None,
) -> Tensor:
    """Sum over the K models of the mean cross-entropy (nats) of ``h @ weightᵀ`` against ``targets``.

    Parameters
    ----------
    h: hidden states ``[K, M, d]`` (after the final layer norm).
    weight: output embedding ``[K, V, d]`` (tied to the input embedding in GPT-2).
    targets: next-token ids ``[K, M]``.
    chunk_bytes: size of the logits working buffer; about the size of the L2 cache is fastest.
    mask: optional ``[K, M]`` (bool or 0/1): only targets where it is True count, and each
        model's loss is the mean over its real targets (none: every target counts, the same
        numbers bit for bit as without the argument).
    """
    if h.dim() != 3 or weight.dim() != 3 or targets.shape != h.shape[:2]:
        raise ValueError("need h [K, M, d], weight [K, V, d] and targets [K, M]")
    if mask is not None:
        if mask.shape != targets.shape:
            raise ValueError("need a mask [K, M] like the targets")
        mask = mask.to(device=h.device, dtype=torch.float32)
    return LinearCrossEntropy.apply(h, weight, targets.long(), chunk_bytes, mask)
