"""The built-in track experiment (``memlens track --preset quick``): a small GPT trained on a
structured Markov source with repeated sequences, tracked as it trains (Ghosal, Maini & Raghunathan
2025, arXiv:2507.09937: repeated sequences are memorized early).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from memlens.errors import UserError
from memlens.track.analysis import analyze, first_true_step, forgetting_events, memorized_matrix
from memlens.track.examples import TrackSet, tfidf_rarity_tokens
from memlens.track.plots import plot_group_curves, plot_heatmap
from memlens.track.schedules import Schedule
from memlens.track.tracker import Tracker


@dataclass(frozen=True)
class QuickConfig:
    """The ``memlens track --preset quick`` experiment.

    A first-order Markov source (``vocab_size`` tokens, ``branching`` successors per token) gives
    structure to learn. The training set mixes ``n_unique`` sequences seen once per epoch with
    ``n_repeated`` sequences duplicated ``repeats`` times (the memorization-sinks setting of
    Ghosal et al. 2025: a few sequences repeated many times inside a larger corpus). Tracked:
    every repeated sequence, ``n_track_unique`` of the unique ones and ``n_heldout`` fresh
    sequences of the same source that are never trained on. Unintended bits use the exact source
    code length; the first token is charged ``log2 V`` under both model and source.
    """

    vocab_size: int = 64
    branching: int = 4
    concentration: float = 1.0
    seq_len: int = 32
    n_unique: int = 2048
    n_repeated: int = 64
    repeats: int = 16
    n_track_unique: int = 256
    n_heldout: int = 256
    n_layer: int = 2
    d_model: int = 64
    lr: float = 3e-3
    warmup_steps: int = 50
    batch_size: int = 32
    steps: int = 3000
    points_per_decade: int = 12
    prefix: int = 16
    suffix: int = 16
    threshold: float = 0.5
    checkpoint_every: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.lr <= 0:
            raise UserError("steps, batch size and learning rate must be positive.")
        if self.n_unique < 1 or self.n_repeated < 1 or self.repeats < 2:
            raise UserError(
                "the quick preset needs unique sequences and repeated ones (repeats >= 2)."
            )
        if self.prefix + self.suffix > self.seq_len:
            raise UserError(
                f"extraction prefix {self.prefix} + suffix {self.suffix} exceed the sequence length {self.seq_len}."
            )
        if not 0 < self.threshold <= 1:
            raise UserError(f"the memorization threshold must be in (0, 1], got {self.threshold}.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrackResult:
    """What a track run produced: the ``dynamics.json`` summary and where it was written."""

    summary: dict[str, Any]
    out_dir: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def quick_data(cfg: QuickConfig) -> tuple[torch.Tensor, TrackSet, Any]:
    """The training rows ``[N, S]`` (repeats included), the :class:`TrackSet` and the source."""
    from memlens.data.synthetic import MarkovSource

    src = MarkovSource(cfg.vocab_size, cfg.branching, cfg.concentration, seed=cfg.seed)
    unique = src.sample(cfg.n_unique, cfg.seq_len, seed=cfg.seed + 1)
    repeated = src.sample(cfg.n_repeated, cfg.seq_len, seed=cfg.seed + 2)
    heldout = src.sample(cfg.n_heldout, cfg.seq_len, seed=cfg.seed + 3)
    train = torch.cat([unique, repeated.repeat(cfg.repeats, 1)])
    g = torch.Generator().manual_seed(cfg.seed + 4)
    track_unique = unique[torch.randperm(cfg.n_unique, generator=g)[: cfg.n_track_unique]]
    tracked = torch.cat([repeated, track_unique, heldout])
    groups = (
        ["repeated"] * cfg.n_repeated + ["unique"] * len(track_unique) + ["heldout"] * cfg.n_heldout
    )
    counts = [cfg.repeats] * cfg.n_repeated + [1] * len(track_unique) + [0] * cfg.n_heldout
    corpus = [unique[i].numpy() for i in range(cfg.n_unique)] + [
        repeated[i].numpy() for i in range(cfg.n_repeated)
    ]
    corpus_counts = [1] * cfg.n_unique + [cfg.repeats] * cfg.n_repeated
    rarity = tfidf_rarity_tokens(
        [t.numpy() for t in tracked], corpus, corpus_counts, np.array(counts) > 0
    )
    examples = TrackSet(
        tokens=[t.numpy() for t in tracked],
        groups=np.array(groups),
        reference_bits=src.code_length_bits(tracked, include_first=True),
        first_token_bits=math.log2(cfg.vocab_size),
        counts=np.array(counts),
        rarity=rarity,
        reference=(
            f"exact code length under the Markov source (V={cfg.vocab_size}, branching={cfg.branching}, "
            f"entropy rate {src.entropy_rate_bits():.3f} bits/token); first token log2 V bits"
        ),
    )
    return train, examples, src


def epoch_batch(n_rows: int, batch_size: int, step: int, seed: int) -> torch.Tensor:
    """Row indices of the batch for optimizer step ``step`` (0-based): epoch-wise permutations.

    A pure function of ``step`` (each epoch's permutation is seeded by ``(seed, epoch)``), so a
    resumed run draws exactly the batches the interrupted one would have.
    """
    start = step * batch_size
    idx = []
    while len(idx) < batch_size:
        epoch, off = divmod(start + len(idx), n_rows)
        perm = torch.randperm(
            n_rows, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        )
        idx.extend(perm[off : off + batch_size - len(idx)].tolist())
    return torch.tensor(idx, dtype=torch.long)


def _save_checkpoint(
    path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, step: int
) -> None:
    from memlens.store import atomic_path

    with atomic_path(path) as tmp:
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step}, tmp)


def _load_checkpoint(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer) -> int:
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    return int(state["step"])


def run_quick(
    cfg: QuickConfig,
    out_dir: str | os.PathLike[str] | None = None,
    *,
    device: str | None = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> TrackResult:
    """Train a small GPT on the :class:`QuickConfig` data and track memorization as it trains.

    Writes ``dynamics.json``, ``examples.parquet`` (per-example first memorized step and final
    bits), the tracker's append-only ``track/parts/*.parquet``, ``heatmap.png``,
    ``group_curves.png``, a training checkpoint (for resuming) and ``manifest.json``. Rerunning
    with the same ``out_dir`` and settings resumes from the last checkpoint.
    """
    from memlens.models.gpt import GPT, GPTConfig
    from memlens.store import RunDir, default_out_dir
    from memlens.training import pick_device

    dev = pick_device(device)
    train, examples, _ = quick_data(cfg)
    run = RunDir(
        out_dir or default_out_dir("track"), "track", {"preset": "quick", **cfg.to_dict()}, cfg.seed
    )
    run.write_manifest(status="running")
    torch.manual_seed(cfg.seed)
    model = GPT(
        GPTConfig(cfg.vocab_size, cfg.seq_len, cfg.n_layer, cfg.d_model),
        generator=torch.Generator().manual_seed(cfg.seed),
    ).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.98), weight_decay=0.0)
    ckpt = run.path / "checkpoint.pt"
    step = _load_checkpoint(ckpt, model, opt) if ckpt.exists() else 0
    tracker = Tracker(
        examples,
        run.path / "track",
        schedule=Schedule.log(cfg.points_per_decade),
        prefix=cfg.prefix,
        suffix=cfg.suffix,
        batch_size=256,
    )
    train = train.to(dev)
    loss_bits: list[tuple[int, float]] = []
    t_start = time.perf_counter()
    tracker.start()
    tracker.observe(model, step)
    model.train()
    try:
        while step < cfg.steps:
            batch = train[epoch_batch(len(train), cfg.batch_size, step, cfg.seed).to(dev)][None]
            for group in opt.param_groups:
                group["lr"] = cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps)
            logits = model(batch[..., :-1])
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), batch[..., 1:].reshape(-1)
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if tracker.observe(model, step):
                value = loss.item()
                if not math.isfinite(value):
                    raise UserError(
                        "training diverged (NaN or infinite loss); lower the learning rate."
                    )
                loss_bits.append((step, value / math.log(2)))
            if step % cfg.checkpoint_every == 0:
                _save_checkpoint(ckpt, model, opt, step)
            if progress is not None:
                progress(step, cfg.steps)
    except KeyboardInterrupt:
        tracker.flush()
        _save_checkpoint(ckpt, model, opt, step)
        raise
    tracker.observe(model, step, force=True)
    tracker.close()
    _save_checkpoint(ckpt, model, opt, step)
    summary = _finish(
        run, tracker, cfg.threshold, "bits",
        training={
            "steps": step,
            "wall_seconds_this_session": time.perf_counter() - t_start,
            "model": {"n_layer": cfg.n_layer, "d_model": cfg.d_model, "n_params": model.config.n_params},
            "train_rows": len(train),
            "epochs": step * cfg.batch_size / len(train),
            "batch_loss_bits_per_token_this_session": [[s, v] for s, v in loss_bits],
        },
    )  # fmt: skip
    return TrackResult(summary, run.path)


def _finish(
    run: Any,
    tracker: Tracker,
    threshold: float,
    criterion: str,
    training: dict[str, Any],
    **manifest: Any,
) -> dict[str, Any]:
    """Analyses, plots, tables, ``dynamics.json`` and the final manifest of a track run."""
    obs = tracker.observations()
    ex = tracker.examples
    analysis = analyze(obs, ex, tracker.eligible, threshold=threshold, criterion=criterion)
    mem, _ = memorized_matrix(obs, ex, tracker.eligible, threshold, analysis["criterion"]["name"])
    per = ex.table()
    per["first_memorized_step"] = first_true_step(mem, obs.steps)
    per["forgetting_events"] = forgetting_events(mem)
    per["memorized_final"] = mem[:, -1]
    per["code_bits_final"] = obs.code_bits[:, -1]
    per["unintended_bits_final"] = obs.unintended_bits[:, -1]
    per["extracted_final"] = obs.extracted[:, -1]
    per["extraction_eligible"] = tracker.eligible
    run.write_table("examples.parquet", per)
    run.save_figure("heatmap.png", plot_heatmap(obs, ex, analysis, tracker.eligible))
    run.save_figure("group_curves.png", plot_group_curves(analysis))
    summary = {**analysis, "cost": tracker.cost(), "training": training}
    run.write_json("dynamics.json", summary)
    run.write_manifest(status="finished", **manifest)
    return summary
