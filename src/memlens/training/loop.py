"""Training K same-shaped GPTs at once, to saturation of memorized bits.

Each of the K models in a :class:`~memlens.models.gpt.GPT` stack trains on its own dataset (the
datasets may differ in size). Every ``eval_every`` steps the trainer scores every model on its
whole training set through the shared scoring engine (:mod:`memlens.scoring`) and records the
memorization curve. A model is *saturated* when its memorized bits grew by less than
``plateau_tol`` (default 1%) over the last ``plateau_frac`` (default 20%) of its steps
(Morris et al. 2025, arXiv:2505.24832, train "to saturation"; every capacity is a lower bound,
so we say whether the plateau was reached).

Schedule (a warmup-stable-decay schedule with an honest plateau check at the end):

1. *stable*: linear warm-up, then a constant learning rate until ``1 - decay_frac - plateau_frac``
   of the budget is used, or earlier if every curve is flat (grew < ``plateau_tol / 4`` over the
   last half of the steps);
2. *decay*: linear decay to ``final_lr_frac * lr`` over a further ``decay_frac`` share;
3. *hold*: training continues at the final learning rate for the last ``plateau_frac`` share of
   the steps. A model is *saturated* when its memorized bits grew by less than ``plateau_tol``
   over those last steps: the issue's criterion, measured while still training.

Recipe (chosen by measurement on two CPU cores, see README "The recipe, and the evidence for
it"): Adam (β = 0.9, 0.98, no weight decay, no dropout) at a high peak learning rate after a
warm-up, mini-batches drawn as per-model random permutations (every sequence once per epoch),
all dataset sizes of one shape trained as one batched stack of models, and the output layer
fused with its cross-entropy (:mod:`memlens.training.fused`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import Tensor

from memlens.errors import UserError
from memlens.models.gpt import GPT
from memlens.scoring.core import gpt_forward, memorized_bits, score_tokens
from memlens.training.fused import linear_cross_entropy


@dataclass(frozen=True)
class TrainConfig:
    """Optimization settings shared by the K models.

    Parameters
    ----------
    lr: peak Adam learning rate.
    batch_size: sequences per model per step.
    max_steps: step budget; training stops earlier once every model is saturated.
    min_steps: never stop before this many steps.
    warmup_steps: linear warm-up length.
    decay_frac: share of the steps used for the linear learning-rate decay (0: constant LR).
    final_lr_frac: learning rate after the decay, as a fraction of ``lr``.
    beta1, beta2, eps, weight_decay: Adam(W) settings.
    eval_every: steps between memorization measurements.
    plateau_frac, plateau_tol: saturated when bits grew < ``plateau_tol`` (relative) over the
        last ``plateau_frac`` of the steps.
    precision: "fp32" or "bf16" (autocast for the forward/backward; optimizer state stays fp32).
    grad_clip: per-model gradient-norm clip (0 disables).
    """

    lr: float = 3e-3
    batch_size: int = 64
    max_steps: int = 20_000
    min_steps: int = 500
    warmup_steps: int = 100
    decay_frac: float = 0.0
    final_lr_frac: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-8
    weight_decay: float = 0.0
    eval_every: int = 250
    plateau_frac: float = 0.2
    plateau_tol: float = 0.01
    precision: str = "fp32"
    grad_clip: float = 0.0

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "bf16"):
            raise UserError(f"precision must be fp32 or bf16, got {self.precision!r}.")
        if self.max_steps < 1 or self.batch_size < 1 or self.lr <= 0:
            raise UserError("max_steps, batch_size and lr must be positive.")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ModelCurve:
    """The memorization curve of one model: (step, seconds, memorized bits, mean NLL bits/token)."""

    steps: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    memorized_bits: list[float] = field(default_factory=list)
    nll_bits_per_token: list[float] = field(default_factory=list)

    def saturated(self, frac: float, tol: float) -> bool:
        """Memorized bits grew < ``tol`` (relative) over the last ``frac`` of the steps."""
        if len(self.steps) < 3 or self.memorized_bits[-1] <= 0:
            return False
        last = self.steps[-1]
        ref_step = last * (1.0 - frac)
        # the latest measurement at or before (1 - frac) * last
        earlier = [b for s, b in zip(self.steps, self.memorized_bits, strict=True) if s <= ref_step]
        if not earlier:
            return False
        return (self.memorized_bits[-1] - earlier[-1]) < tol * self.memorized_bits[-1]


@dataclass
class TrainResult:
    steps: int
    seconds: float
    curves: list[ModelCurve]
    saturated: list[bool]
    final_memorized_bits: list[float]
    final_nll_bits: list[np.ndarray]


class _Sampler:
    """Per-model random permutations over datasets of different sizes."""

    def __init__(self, sizes: list[int], batch_size: int, generator: torch.Generator) -> None:
        self.sizes = sizes
        self.batch = batch_size
        self.g = generator
        self.perms = [torch.randperm(n, generator=generator) for n in sizes]
        self.ptr = [0] * len(sizes)

    def next(self) -> Tensor:
        rows = []
        for k, n in enumerate(self.sizes):
            need, parts = self.batch, []
            while need > 0:
                if self.ptr[k] >= n:
                    self.perms[k] = torch.randperm(n, generator=self.g)
                    self.ptr[k] = 0
                take = min(need, n - self.ptr[k])
                parts.append(self.perms[k][self.ptr[k] : self.ptr[k] + take])
                self.ptr[k] += take
                need -= take
            rows.append(torch.cat(parts))
        return torch.stack(rows)  # [K, B]


def evaluate_memorization(
    model: GPT,
    data: Tensor,
    sizes: list[int],
    entropy_bits: float | np.ndarray,
    first_token_bits: float,
    batch_size: int = 256,
    autocast_dtype: torch.dtype | None = None,
) -> tuple[list[float], list[np.ndarray]]:
    """Memorized bits of each model on its own training set, via the shared scoring pass.

    ``data`` is ``[K, N_max, S]`` (model k uses its first ``sizes[k]`` rows); ``entropy_bits``
    is ``H(x)`` per sequence under the true source (a scalar for uniform data, or ``[K, N_max]``).
    Returns per-model total memorized bits ``sum_x max(0, H(x) - NLL_bits(x))`` and per-model
    per-sequence code lengths ``NLL_bits(x)`` (first token charged ``first_token_bits``).
    """
    was_training = model.training
    model.eval()
    n_max = max(sizes)
    scores = score_tokens(
        gpt_forward(model), data[:, :n_max], batch_size=batch_size, autocast_dtype=autocast_dtype
    )
    model.train(was_training)
    nll = scores.nll_bits + first_token_bits  # [K, N_max]
    H = np.broadcast_to(np.asarray(entropy_bits, dtype=np.float64), nll.shape)
    totals, per_seq = [], []
    for k, n in enumerate(sizes):
        per_seq.append(nll[k, :n].copy())
        totals.append(float(memorized_bits(H[k, :n], nll[k, :n]).sum()))
    return totals, per_seq


Callback = Callable[[GPT, int], None]


def train_to_saturation(
    model: GPT,
    data: Tensor,
    sizes: list[int],
    config: TrainConfig,
    *,
    entropy_bits: float | np.ndarray,
    first_token_bits: float,
    seed: int = 0,
    device: torch.device | None = None,
    callbacks: list[Callback] | None = None,
    progress: Callable[[int, list[float]], None] | None = None,
    time_budget_s: float | None = None,
) -> TrainResult:
    """Train the K models of ``model`` on their datasets until every one is saturated.

    Parameters
    ----------
    model: a :class:`GPT` stack with ``K = len(sizes)`` models.
    data: ``[K, N_max, S]`` token ids; model k trains on ``data[k, :sizes[k]]``.
    sizes: dataset size (sequences) per model.
    config: optimization settings.
    entropy_bits: ``H(x)`` per sequence (scalar or ``[K, N_max]``), in bits.
    first_token_bits: bits charged for each sequence's first token (``log2 V`` for uniform data).
    callbacks: called as ``cb(model, step)`` after every evaluation.
    progress: called as ``progress(step, memorized_bits_per_model)`` after every evaluation.
    time_budget_s: optional wall-clock cap; the run stops (unsaturated runs say so).

    Returns
    -------
    TrainResult with each model's memorization curve and saturation flag.
    """
    K = model.n_models
    if len(sizes) != K or data.shape[0] != K:
        raise ValueError("need one dataset size and one data slab per model")
    device = device or next(model.parameters()).device
    data = data.to(device)
    g = torch.Generator().manual_seed(seed)
    sampler = _Sampler(list(sizes), config.batch_size, g)
    params = list(model.parameters())
    opt = torch.optim.Adam(
        params,
        lr=config.lr,
        betas=(config.beta1, config.beta2),
        eps=config.eps,
        weight_decay=config.weight_decay,
        foreach=True,
    )
    autocast_dtype = torch.bfloat16 if config.precision == "bf16" else None
    curves = [ModelCurve() for _ in range(K)]
    done = [False] * K
    model_index = torch.arange(K, device=device).view(K, 1)
    start = time.perf_counter()
    step = 0
    per_seq: list[np.ndarray] = []
    # Phase boundaries, in steps; the stable phase may end early when every curve plateaus.
    hold_frac = config.plateau_frac if config.decay_frac > 0 else 0.0
    stable_frac = 1.0 - config.decay_frac - hold_frac
    stable_end = int(config.max_steps * stable_frac)
    total = config.max_steps

    def end_stable(at: int) -> None:
        nonlocal stable_end, total
        stable_end = at
        decay_len = int(round(at * config.decay_frac / stable_frac))
        total = int(round((at + decay_len) / (1.0 - hold_frac)))

    def lr_at(s: int) -> float:
        if s < config.warmup_steps:
            return config.lr * (s + 1) / config.warmup_steps
        if config.decay_frac <= 0 or s < stable_end:
            return config.lr
        decay_len = max(1, int(round(stable_end * config.decay_frac / stable_frac)))
        t = min(1.0, (s - stable_end) / decay_len)
        return config.lr * (1.0 - t * (1.0 - config.final_lr_frac))

    model.train()
    while step < total:
        idx = sampler.next().to(device)  # [K, B]
        batch = data[model_index, idx]  # [K, B, S]
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        if autocast_dtype is not None:
            with torch.autocast(device_type=device.type, dtype=autocast_dtype):
                hidden = model.hidden(batch[..., :-1])
        else:
            hidden = model.hidden(batch[..., :-1])
        # Sum of per-model mean losses: models share no parameter, so each gets its own gradient.
        # The output layer and its cross-entropy are fused (memlens.training.fused): the [K, B*T, V] logits
        # are never materialized, which makes a step 1.2-1.3x faster on a CPU.
        loss = linear_cross_entropy(hidden, model.wte, batch[..., 1:].reshape(K, -1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip > 0:
            _clip_per_model(params, K, config.grad_clip)
        opt.step()
        step += 1
        if not math.isfinite(loss.item() if step % config.eval_every == 0 else 0.0):
            raise UserError("training diverged (NaN or infinite loss); lower the learning rate.")

        if step % config.eval_every == 0 or step == total:
            totals, per_seq = evaluate_memorization(
                model, data, sizes, entropy_bits, first_token_bits, autocast_dtype=autocast_dtype
            )
            elapsed = time.perf_counter() - start
            for k in range(K):
                c = curves[k]
                c.steps.append(step)
                c.seconds.append(elapsed)
                c.memorized_bits.append(totals[k])
                n_tok = sizes[k] * data.shape[-1]
                c.nll_bits_per_token.append(float(per_seq[k].sum() / n_tok))
                done[k] = step >= config.min_steps and c.saturated(
                    config.plateau_frac, config.plateau_tol
                )
            for cb in callbacks or []:
                cb(model, step)
            if progress is not None:
                progress(step, totals)
            if config.decay_frac > 0:
                # A constant-LR curve is too noisy to call a plateau early (measured: it stopped
                # a quick-preset shape at 2.6 bits/param); decay early only on a strict plateau.
                strict = [
                    step >= config.min_steps and c.saturated(0.5, config.plateau_tol / 4)
                    for c in curves
                ]
                if step < stable_end and all(strict):
                    end_stable(step)  # the constant-LR phase has plateaued: decay now
                done = [False] * K  # with a decay, saturation is judged at the end only
            elif all(done):
                break
            if time_budget_s is not None and elapsed > time_budget_s:
                break

    seconds = time.perf_counter() - start
    saturated = [c.saturated(config.plateau_frac, config.plateau_tol) for c in curves]
    return TrainResult(
        steps=step,
        seconds=seconds,
        curves=curves,
        saturated=saturated,
        final_memorized_bits=[c.memorized_bits[-1] if c.memorized_bits else 0.0 for c in curves],
        final_nll_bits=per_seq,
    )


@torch.no_grad()
def _clip_per_model(params: list[Tensor], K: int, max_norm: float) -> None:
    sq = torch.zeros(K, device=params[0].device)
    for p in params:
        if p.grad is not None:
            sq += p.grad.reshape(K, -1).float().square().sum(1)
    scale = (max_norm / (sq.sqrt() + 1e-6)).clamp(max=1.0)
    for p in params:
        if p.grad is not None:
            p.grad.mul_(scale.view(K, *([1] * (p.dim() - 1))).to(p.grad.dtype))
