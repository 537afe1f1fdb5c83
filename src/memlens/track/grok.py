"""Grokking on modular addition: memorization first, generalization much later.

Power et al. 2022 ("Grokking: generalization beyond overfitting on small algorithmic datasets",
arXiv:2201.02177) train small networks on a fraction of the table ``a + b mod p`` and observe
training accuracy reach 100% long before test accuracy leaves chance, then a late jump to
perfect generalization, driven by weight decay. Nanda et al. 2023 ("Progress measures for
grokking via mechanistic interpretability", arXiv:2301.05217) use p = 113, 30% of pairs,
full-batch AdamW with weight decay 1; Gromov 2023 ("Grokking modular arithmetic",
arXiv:2301.02679) shows the same with a two-layer MLP. The capacity view (Morris et al. 2025,
arXiv:2505.24832) reads it as memorization (storing the training pairs) giving way to
generalization (a rule that compresses them), which the weight-norm and memorization-gap curves
here make visible.

The experiment (:func:`run_grok`): all ``p * p`` pairs ``(a, b)``, a seeded ``train_fraction`` of
them for training, the rest held out. The model embeds ``a`` and ``b`` (separate tables, summed),
applies one ReLU layer and reads out ``p`` logits (:class:`ModAddMLP`); full-batch AdamW with
weight decay ``weight_decay``. Every ``eval_every`` steps all pairs are scored through the shared
scoring pass (:func:`memlens.scoring.score_tokens`) as the token sequences ``[a, b, c]``,
``c = (a + b) mod p``; the model's forward puts its answer logits at position 1 (after it has
seen ``a`` and ``b``) and uniform logits elsewhere. Recorded per evaluation: train and test
accuracy (the answer is the argmax), mean code length of the answer in bits on train and on test
pairs, the memorization gap ``test bits - train bits`` (Ghosal et al. 2025's held-out minus
training loss, here per answer; total gap bits = gap * n_train) and the parameter L2 norm.

The curve is stored append-only (one Parquet part per ``flush_every`` steps, with a checkpoint of
model and optimizer), so an interrupted run resumes from its last flush.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from memlens.errors import UserError


@dataclass(frozen=True)
class GrokConfig:
    """Settings of the modular-addition experiment (the ``quick`` preset is the default).

    Parameters
    ----------
    p: the modulus; the data are all ``p * p`` pairs.
    train_fraction: fraction of pairs used for training.
    d_embed, d_hidden: embedding width and ReLU layer width.
    lr, weight_decay, beta1, beta2: full-batch AdamW.
    max_steps: step budget.
    eval_every: steps between evaluations (the resolution of the reported steps).
    stop_patience: stop once test accuracy has stayed >= 0.99 for this many steps (0: never).
    flush_every: steps between curve flushes and checkpoints.
    seed: seeds the split and the initialization.
    """

    p: int = 97
    train_fraction: float = 0.4
    d_embed: int = 128
    d_hidden: int = 256
    lr: float = 1e-2
    weight_decay: float = 1.0
    beta1: float = 0.9
    beta2: float = 0.98
    max_steps: int = 4000
    eval_every: int = 10
    stop_patience: int = 200
    flush_every: int = 250
    seed: int = 0

    def __post_init__(self) -> None:
        if self.p < 2:
            raise UserError(f"the modulus p must be at least 2, got {self.p}.")
        if not 0 < self.train_fraction < 1:
            raise UserError(
                f"the training fraction must be strictly between 0 and 1, got {self.train_fraction}."
            )
        n_train = int(round(self.train_fraction * self.p * self.p))
        if n_train < 1 or n_train >= self.p * self.p:
            raise UserError(
                f"a training fraction of {self.train_fraction} leaves no training or no test pairs for p = {self.p}."
            )
        if self.lr <= 0 or self.weight_decay < 0:
            raise UserError("the learning rate must be positive and the weight decay non-negative.")
        if self.max_steps < 1 or self.eval_every < 1 or self.flush_every < 1:
            raise UserError("max_steps, eval_every and flush_every must be at least 1.")
        if self.d_embed < 1 or self.d_hidden < 1:
            raise UserError("the model widths must be at least 1.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ModAddMLP(nn.Module):
    """``logits(a, b) = W_out relu(W_in (E_a[a] + E_b[b]) + b_in) + b_out`` over ``p`` answers.

    :meth:`forward` follows memlens's scoring protocol (ids ``[B, 3]`` -> logits ``[B, 3, p]``):
    the answer logits sit at position 1, which predicts token 2 (``c``) after ``a`` and ``b``;
    positions 0 and 2 get zero logits (a uniform prediction that uses no future token).
    """

    def __init__(self, p: int, d_embed: int, d_hidden: int) -> None:
        super().__init__()
        self.p = p
        self.embed_a = nn.Embedding(p, d_embed)
        self.embed_b = nn.Embedding(p, d_embed)
        self.hidden = nn.Linear(d_embed, d_hidden)
        self.out = nn.Linear(d_hidden, p)

    def answer_logits(self, a: Tensor, b: Tensor) -> Tensor:
        return self.out(torch.relu(self.hidden(self.embed_a(a) + self.embed_b(b))))

    def forward(self, ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        ans = self.answer_logits(ids[..., 0], ids[..., 1])
        zeros = torch.zeros_like(ans)
        return torch.stack([zeros, ans, zeros], dim=-2)


def modular_addition_split(p: int, train_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """All ``[a, b, (a + b) mod p]`` sequences ``[p*p, 3]`` and a boolean training mask ``[p*p]``."""
    a = torch.arange(p).repeat_interleave(p)
    b = torch.arange(p).repeat(p)
    seqs = torch.stack([a, b, (a + b) % p], dim=1)
    n_train = int(round(train_fraction * p * p))
    perm = torch.randperm(p * p, generator=torch.Generator().manual_seed(seed))
    train = torch.zeros(p * p, dtype=torch.bool)
    train[perm[:n_train]] = True
    return seqs, train


@torch.no_grad()
def evaluate(model: ModAddMLP, seqs: Tensor, train_mask: Tensor) -> dict[str, float]:
    """Accuracy and mean answer code length (bits) on train and test pairs, via the scoring pass."""
    from memlens.scoring import score_tokens

    was = model.training
    model.eval()
    sc = score_tokens(model, seqs, batch_size=len(seqs), argmax=True)
    model.train(was)
    bits = -sc.log2p[:, 1]
    correct = sc.is_argmax[:, 1]
    tm = train_mask.numpy()
    out = {
        "train_acc": float(correct[tm].mean()),
        "test_acc": float(correct[~tm].mean()),
        "train_bits": float(bits[tm].mean()),
        "test_bits": float(bits[~tm].mean()),
    }
    out["gap_bits"] = out["test_bits"] - out["train_bits"]
    out["weight_norm"] = float(
        torch.sqrt(sum(q.detach().double().square().sum() for q in model.parameters()))
    )
    return out


def first_step_at_least(steps: np.ndarray, values: np.ndarray, level: float) -> int | None:
    """The first step whose value is ``>= level`` (``None`` when never)."""
    hit = np.flatnonzero(values >= level)
    return int(steps[hit[0]]) if len(hit) else None


def summarize(curve: Any, cfg: GrokConfig, n_train: int) -> dict[str, Any]:
    """``grok.json``: final accuracies, the steps at which 99% (and 95%) are first reached, gaps."""
    steps = curve["step"].to_numpy()
    tr, te = curve["train_acc"].to_numpy(), curve["test_acc"].to_numpy()
    gap = curve["gap_bits"].to_numpy()
    wn = curve["weight_norm"].to_numpy()
    s_tr99 = first_step_at_least(steps, tr, 0.99)
    s_te99 = first_step_at_least(steps, te, 0.99)
    s_te95 = first_step_at_least(steps, te, 0.95)
    i_peak = int(np.argmax(gap))
    at = lambda s: float(wn[np.searchsorted(steps, s)]) if s is not None else None  # noqa: E731
    return {
        "task": f"(a + b) mod {cfg.p}",
        "p": cfg.p,
        "train_fraction": cfg.train_fraction,
        "n_train": n_train,
        "n_test": cfg.p * cfg.p - n_train,
        "chance_accuracy": 1.0 / cfg.p,
        "steps": int(steps[-1]),
        "eval_every": cfg.eval_every,
        "train_acc_final": float(tr[-1]),
        "test_acc_final": float(te[-1]),
        "step_train_acc_99": s_tr99,
        "step_test_acc_95": s_te95,
        "step_test_acc_99": s_te99,
        "grok_delay_steps": (s_te99 - s_tr99)
        if s_te99 is not None and s_tr99 is not None
        else None,
        "grok_delay_ratio": (s_te99 / s_tr99) if s_te99 is not None and s_tr99 else None,
        "test_acc_at_step_train_acc_99": float(te[np.searchsorted(steps, s_tr99)])
        if s_tr99 is not None
        else None,
        "train_bits_final": float(curve["train_bits"].iloc[-1]),
        "test_bits_final": float(curve["test_bits"].iloc[-1]),
        "memorization_gap_bits_peak": float(gap[i_peak]),
        "step_memorization_gap_peak": int(steps[i_peak]),
        "memorization_gap_bits_final": float(gap[-1]),
        "memorization_gap_total_bits_peak": float(gap[i_peak] * n_train),
        "weight_norm_initial": float(wn[0]),
        "weight_norm_at_train_acc_99": at(s_tr99),
        "weight_norm_final": float(wn[-1]),
        "definitions": {
            "step_*_acc_99": "first evaluated step with accuracy >= 0.99 (resolution eval_every)",
            "memorization_gap_bits": "mean code length of the answer on test pairs minus on training pairs, bits per answer",
            "memorization_gap_total_bits": "memorization gap times the number of training pairs",
        },
    }


def _load_curve(parts: Path) -> Any:
    import pandas as pd

    files = sorted(parts.glob("part-*.parquet"), key=lambda f: (f.stat().st_mtime_ns, f.name))
    frames = []
    for f in files:
        try:
            frames.append(pd.read_parquet(f))
        except Exception:  # a torn part from a crash; atomic writes make this unlikely
            continue
    if not frames:
        return None
    df = pd.concat(frames, ignore_index=True)
    return df.drop_duplicates("step", keep="last").sort_values("step").reset_index(drop=True)


@dataclass
class GrokResult:
    summary: dict[str, Any]
    curve: Any
    out_dir: Path | None = None


def run_grok(
    cfg: GrokConfig,
    out_dir: str | os.PathLike[str] | None = None,
    *,
    progress: Callable[[int, dict[str, float]], None] | None = None,
) -> GrokResult:
    """Train :class:`ModAddMLP` on a fraction of ``(a + b) mod p`` and record grokking.

    Writes ``grok.json`` (see :func:`summarize`), ``curve.parquet`` (every evaluation), the
    append-only ``curve/part-*.parquet``, ``grok_accuracy.png``, ``grok_bits.png`` and
    ``manifest.json``. A rerun with the same ``out_dir`` and settings resumes.
    """
    import pandas as pd

    from memlens.store import RunDir, atomic_path, default_out_dir

    run = RunDir(out_dir or default_out_dir("grok"), "grok", cfg.to_dict(), cfg.seed)
    run.write_manifest(status="running")
    parts = run.path / "curve"
    parts.mkdir(exist_ok=True)
    ckpt = run.path / "checkpoint.pt"

    seqs, train_mask = modular_addition_split(cfg.p, cfg.train_fraction, cfg.seed)
    n_train = int(train_mask.sum())
    torch.manual_seed(cfg.seed)
    model = ModAddMLP(cfg.p, cfg.d_embed, cfg.d_hidden)
    opt = torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(cfg.beta1, cfg.beta2)
    )
    step = 0
    rows: list[dict[str, float]] = []
    if ckpt.exists():
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step = int(state["step"])
    prev = _load_curve(parts)
    if prev is not None:
        prev = prev[prev["step"] <= step]
    a_tr, b_tr, c_tr = seqs[train_mask].unbind(dim=1)

    def flush() -> None:
        nonlocal rows
        if rows:
            df = pd.DataFrame(rows)
            with atomic_path(
                parts / f"part-{int(df['step'].iloc[0]):09d}-{int(df['step'].iloc[-1]):09d}.parquet"
            ) as tmp:
                df.to_parquet(tmp, index=False)
            rows = []
        with atomic_path(ckpt) as tmp:
            torch.save(
                {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step}, tmp
            )

    t0 = time.perf_counter()
    reached_at: int | None = None
    if prev is not None and len(prev):
        ok = prev["test_acc"].to_numpy() >= 0.99
        # the start of the current run of evaluations with test accuracy >= 0.99
        if ok[-1]:
            k = len(ok) - 1
            while k > 0 and ok[k - 1]:
                k -= 1
            reached_at = int(prev["step"].iloc[k])
    else:
        rows.append({"step": 0, **evaluate(model, seqs, train_mask)})
    finished = (
        cfg.stop_patience and reached_at is not None and step - reached_at >= cfg.stop_patience
    )
    model.train()
    try:
        while step < cfg.max_steps and not finished:
            loss = nn.functional.cross_entropy(model.answer_logits(a_tr, b_tr), c_tr)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if step % cfg.eval_every == 0 or step == cfg.max_steps:
                if not math.isfinite(loss.item()):
                    raise UserError(
                        "training diverged (NaN or infinite loss); lower the learning rate."
                    )
                r = {"step": step, **evaluate(model, seqs, train_mask)}
                rows.append(r)
                if progress is not None:
                    progress(step, r)
                reached_at = (reached_at or step) if r["test_acc"] >= 0.99 else None
                if (
                    cfg.stop_patience
                    and reached_at is not None
                    and step - reached_at >= cfg.stop_patience
                ):
                    break
            if step % cfg.flush_every == 0:
                flush()
    except KeyboardInterrupt:
        flush()
        raise
    flush()
    seconds = time.perf_counter() - t0
    curve = _load_curve(parts)
    summary = summarize(curve, cfg, n_train)
    summary["model"] = {
        "kind": "embeddings(a) + embeddings(b) -> ReLU layer -> linear readout",
        "d_embed": cfg.d_embed,
        "d_hidden": cfg.d_hidden,
        "n_params": sum(q.numel() for q in model.parameters()),
    }
    summary["optimizer"] = {
        "name": "AdamW, full batch",
        "lr": cfg.lr,
        "weight_decay": cfg.weight_decay,
        "betas": [cfg.beta1, cfg.beta2],
    }
    summary["seconds_this_session"] = seconds
    summary["stopped_early"] = step < cfg.max_steps
    run.write_table("curve.parquet", curve)
    run.save_figure("grok_accuracy.png", plot_accuracy(curve, summary))
    run.save_figure("grok_bits.png", plot_bits(curve, summary))
    run.write_json("grok.json", summary)
    run.write_manifest(status="finished")
    return GrokResult(summary, curve, run.path)


def plot_accuracy(curve: Any, summary: dict[str, Any]) -> Any:
    """Train and test accuracy against step (log axis), with the 99% steps marked."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    s = curve["step"].to_numpy()
    ax.plot(s, curve["train_acc"], label="train")
    ax.plot(s, curve["test_acc"], label="test")
    for key, style in (("step_train_acc_99", ":"), ("step_test_acc_99", "--")):
        if summary.get(key) is not None:
            ax.axvline(summary[key], color="grey", ls=style, lw=1, label=f"{key} = {summary[key]}")
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xlim(left=0)
    ax.set_xlabel("step")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(
        f"grokking: {summary['task']}, {summary['train_fraction']:.0%} of pairs for training"
    )
    ax.legend(loc="center left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_bits(curve: Any, summary: dict[str, Any]) -> Any:
    """Answer code length (bits) on train and test, the memorization gap, and the weight norm."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    s = curve["step"].to_numpy()
    ax.plot(s, curve["train_bits"], label="train bits/answer")
    ax.plot(s, curve["test_bits"], label="test bits/answer")
    ax.plot(s, curve["gap_bits"], label="memorization gap (test - train)")
    ax.axhline(math.log2(summary["p"]), color="grey", ls=":", lw=1, label="uniform: log2 p")
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xlim(left=0)
    ax.set_xlabel("step")
    ax.set_ylabel("bits")
    ax.legend()
    ax.grid(alpha=0.3)
    ax2.plot(s, curve["weight_norm"], color="C3")
    ax2.set_xscale("symlog", linthresh=10)
    ax2.set_xlim(left=0)
    ax2.set_xlabel("step")
    ax2.set_ylabel("parameter L2 norm")
    ax2.grid(alpha=0.3)
    fig.suptitle("memorization then generalization")
    fig.tight_layout()
    return fig
