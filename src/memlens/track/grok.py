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

Training is :func:`memlens.training.train` (constant schedule, full batch). The curve is stored
append-only (one Parquet part per ``flush_every`` steps in a :class:`memlens.store.PartStore`,
with a checkpoint of model and optimizer), so an interrupted run resumes from its last flush.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator
from torch import Tensor, nn

from memlens.config import Config, require_config
from memlens.progress import ProgressFn, emit
from memlens.results import RunResult
from memlens.track.summary import GrokSummary

#: The largest modulus: full-batch training holds all p^2 pairs (p = 2000: 4 million pairs;
#: p = 1e6 asked the allocator for 8 TB).
MAX_P = 2000


class GrokConfig(Config):
    """Settings of the modular-addition experiment (the ``quick`` preset is the default).

    Attributes
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

    what: ClassVar[str] = "grok config"

    p: int = 97
    train_fraction: float = 0.4
    d_embed: int = Field(default=128, ge=1)
    d_hidden: int = Field(default=256, ge=1)
    lr: float = Field(default=1e-2, gt=0)
    weight_decay: float = 1.0
    beta1: float = Field(default=0.9, ge=0, lt=1)
    beta2: float = Field(default=0.98, ge=0, lt=1)
    max_steps: int = Field(default=4000, ge=1)
    eval_every: int = Field(default=10, ge=1)
    stop_patience: int = Field(default=200, ge=0)
    flush_every: int = Field(default=250, ge=1)
    seed: int = 0

    @field_validator("p")
    @classmethod
    def _p(cls, v: int) -> int:
        if v < 2:
            raise ValueError(f"the modulus p must be at least 2, got {v}")
        if v > MAX_P:
            raise ValueError(
                f"the modulus p must be at most {MAX_P} (training is full-batch over all p^2 "
                f"pairs), got {v}"
            )
        return v

    @field_validator("train_fraction")
    @classmethod
    def _fraction(cls, v: float) -> float:
        if not 0 < v < 1:
            raise ValueError(f"the training fraction must be strictly between 0 and 1, got {v}")
        return v

    @field_validator("weight_decay")
    @classmethod
    def _wd(cls, v: float) -> float:
        if v < 0:
            raise ValueError(f"the weight decay must be non-negative, got {v}")
        return v

    @model_validator(mode="after")
    def _split(self) -> GrokConfig:
        n_train = int(round(self.train_fraction * self.p * self.p))
        if n_train < 1 or n_train >= self.p * self.p:
            raise ValueError(
                f"a training fraction of {self.train_fraction} leaves no training or no test pairs "
                f"for p = {self.p}"
            )
        return self

    def train_config(self) -> Any:
        """Full-batch AdamW at a constant learning rate (:class:`memlens.training.TrainConfig`)."""
        from memlens.training import TrainConfig

        return TrainConfig(
            schedule="constant", lr=self.lr, max_steps=self.max_steps, batch_size=1,
            beta1=self.beta1, beta2=self.beta2, weight_decay=self.weight_decay,
        )  # fmt: skip


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


def answer_loss(model: ModAddMLP, batch: tuple[Tensor, Tensor, Tensor]) -> Tensor:
    """Mean cross-entropy (nats) of the answers ``c`` given ``(a, b)``: the training loss."""
    a, b, c = batch
    return nn.functional.cross_entropy(model.answer_logits(a, b), c)


def first_step_at_least(steps: np.ndarray, values: np.ndarray, level: float) -> int | None:
    """The first step whose value is ``>= level`` (``None`` when never)."""
    hit = np.flatnonzero(values >= level)
    return int(steps[hit[0]]) if len(hit) else None


def summarize(curve: Any, cfg: GrokConfig, n_train: int) -> GrokSummary:
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
    return GrokSummary(**{
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
    })  # fmt: skip


def _load_curve(parts: Path) -> Any:
    """Every stored evaluation, one row per step (a step recorded twice keeps its latest row)."""
    import pandas as pd

    from memlens.store import PartStore

    frames = [t.to_pandas() for t, _ in PartStore(parts).read()]
    if not frames:
        return None
    df = pd.concat(frames, ignore_index=True)
    return df.drop_duplicates("step", keep="last").sort_values("step").reset_index(drop=True)


def run(
    config: GrokConfig,
    out: str | os.PathLike[str] | None = None,
    *,
    progress: ProgressFn | None = None,
) -> RunResult[GrokSummary]:
    """Train :class:`ModAddMLP` on a fraction of ``(a + b) mod p`` and record grokking.

    Writes ``grok.json`` (see :func:`summarize`), ``curve.parquet`` (every evaluation), the
    append-only ``curve/part-*.parquet``, ``grok_accuracy.png``, ``grok_bits.png`` and
    ``manifest.json``. A rerun with the same ``out`` and settings resumes from the last checkpoint
    (``reused`` names it). ``progress`` receives
    a :class:`~memlens.progress.ProgressEvent` after every evaluation (note: the accuracies).
    """
    require_config(config, GrokConfig)
    import pandas as pd

    from memlens.store import PartStore, RunDir, default_out_dir
    from memlens.track.plots import plot_grok_accuracy, plot_grok_bits
    from memlens.training import every, load_checkpoint, save_checkpoint, train

    cfg = config
    rd = RunDir(out or default_out_dir("grok"), "grok", cfg, cfg.seed)
    rd.write_manifest(status="running")
    parts = PartStore(rd.path / "curve")
    ckpt = rd.path / "checkpoint.pt"

    seqs, train_mask = modular_addition_split(cfg.p, cfg.train_fraction, cfg.seed)
    n_train = int(train_mask.sum())
    torch.manual_seed(cfg.seed)
    model = ModAddMLP(cfg.p, cfg.d_embed, cfg.d_hidden)
    tcfg = cfg.train_config()
    opt = tcfg.make_optimizer(model.parameters())
    step = start_step = load_checkpoint(ckpt, model, opt)
    reused = [f"checkpoint at step {step}"] if step else []
    rows: list[dict[str, float]] = []
    prev = _load_curve(parts.directory)
    if prev is not None:
        prev = prev[prev["step"] <= step]
    batch = seqs[train_mask].unbind(dim=1)  # a, b, c: the full batch

    reached_at: int | None = None  # first step of the current streak of test accuracy >= 0.99
    if prev is not None and len(prev):
        ok = prev["test_acc"].to_numpy() >= 0.99
        if ok[-1]:
            k = len(ok) - 1
            while k > 0 and ok[k - 1]:
                k -= 1
            reached_at = int(prev["step"].iloc[k])
    else:
        rows.append({"step": 0, **evaluate(model, seqs, train_mask)})

    def patience_done(at: int) -> bool:
        return (
            bool(cfg.stop_patience)
            and reached_at is not None
            and at - reached_at >= cfg.stop_patience
        )

    def measure(info: Any) -> bool:
        nonlocal reached_at
        r = {"step": info.step, **evaluate(model, seqs, train_mask)}
        rows.append(r)
        note = f"train {r['train_acc']:.3f} test {r['test_acc']:.3f}"
        emit(progress, "training (grok)", info.step, cfg.max_steps, note)
        reached_at = (reached_at or info.step) if r["test_acc"] >= 0.99 else None
        return patience_done(info.step)

    def flush(at: int) -> None:
        nonlocal rows
        if rows:
            parts.write(pd.DataFrame(rows), rows[0]["step"], rows[-1]["step"])
            rows = []
        save_checkpoint(ckpt, model, opt, at)

    t0 = time.perf_counter()
    if patience_done(step):  # a finished run is not trained further
        flush(step)
    else:
        step = train(
            model, tcfg, lambda s: batch, answer_loss, optimizer=opt, start_step=step,
            observers=[every(cfg.eval_every, measure)], check_every=cfg.eval_every,
            checkpoint=flush, checkpoint_every=cfg.flush_every,
        )  # fmt: skip
    seconds = time.perf_counter() - t0
    curve = _load_curve(parts.directory)
    summary = summarize(curve, cfg, n_train)
    summary.model = {
        "kind": "embeddings(a) + embeddings(b) -> ReLU layer -> linear readout",
        "d_embed": cfg.d_embed,
        "d_hidden": cfg.d_hidden,
        "n_params": sum(q.numel() for q in model.parameters()),
    }
    summary.optimizer = {
        "name": "AdamW, full batch",
        "lr": cfg.lr,
        "weight_decay": cfg.weight_decay,
        "betas": [cfg.beta1, cfg.beta2],
    }
    summary.seconds_this_session = seconds
    summary.stopped_early = step < cfg.max_steps
    summary.resumed_from_step = start_step
    rd.write_table("curve.parquet", curve)
    rd.save_figure("grok_accuracy.png", plot_grok_accuracy(curve, summary.to_json()))
    rd.save_figure("grok_bits.png", plot_grok_bits(curve, summary.to_json()))
    rd.write_json(summary.file, summary.to_json())
    rd.write_manifest(status="finished")
    return RunResult(summary, rd.path, reused)
