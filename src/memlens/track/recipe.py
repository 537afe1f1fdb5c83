"""The built-in track experiment (``memlens track --preset quick``): a small GPT trained on a
structured Markov source with repeated sequences, tracked as it trains (Ghosal, Maini & Raghunathan
2025, arXiv:2507.09937: repeated sequences are memorized early).
"""

from __future__ import annotations

import math
import os
import time
from typing import Annotated, Any, ClassVar

import numpy as np
import torch
from pydantic import AfterValidator, Field, field_validator, model_validator

from memlens.config import Config, require_config
from memlens.progress import ProgressFn, emit
from memlens.results import RunResult
from memlens.track.analysis import analyze, first_true_step, forgetting_events, memorized_matrix
from memlens.track.examples import TrackSet, tfidf_rarity_tokens
from memlens.track.plots import plot_group_curves, plot_heatmap
from memlens.track.schedules import Schedule
from memlens.track.summary import TrackSummary
from memlens.track.tracker import Tracker


def _threshold(v: float) -> float:
    if not 0 < v <= 1:
        raise ValueError(f"the memorization threshold must be in (0, 1], got {v}")
    return v


#: A memorization threshold: memorized when unintended bits >= threshold * reference bits.
Threshold = Annotated[float, AfterValidator(_threshold)]


class QuickConfig(Config):
    """The ``memlens track --preset quick`` experiment.

    A first-order Markov source (``vocab_size`` tokens, ``branching`` successors per token) gives
    structure to learn. The training set mixes ``n_unique`` sequences seen once per epoch with
    ``n_repeated`` sequences duplicated ``repeats`` times (the memorization-sinks setting of
    Ghosal et al. 2025: a few sequences repeated many times inside a larger corpus). Tracked:
    every repeated sequence, ``n_track_unique`` of the unique ones and ``n_heldout`` fresh
    sequences of the same source that are never trained on. Unintended bits use the exact source
    code length; the first token is charged ``log2 V`` under both model and source. Training:
    AdamW (β = 0.9, 0.98, no weight decay), ``warmup_steps`` of linear warm-up then a constant
    ``lr``, batches of ``batch_size`` rows from epoch-wise permutations.
    """

    what: ClassVar[str] = "track config"

    vocab_size: int = Field(default=64, ge=2)
    branching: int = Field(default=4, ge=1)
    concentration: float = Field(default=1.0, gt=0)
    seq_len: int = Field(default=32, ge=2)
    n_unique: int = Field(default=2048, ge=1)
    n_repeated: int = Field(default=64, ge=1)
    repeats: int = 16
    n_track_unique: int = Field(default=256, ge=1)
    n_heldout: int = Field(default=256, ge=1)
    n_layer: int = Field(default=2, ge=1)
    d_model: int = Field(default=64, ge=1)
    lr: float = Field(default=3e-3, gt=0)
    warmup_steps: int = Field(default=50, ge=0)
    batch_size: int = Field(default=32, ge=1)
    steps: int = Field(default=3000, ge=1)
    points_per_decade: int = Field(default=12, ge=1)
    prefix: int = Field(default=16, ge=1)
    suffix: int = Field(default=16, ge=1)
    threshold: Threshold = 0.5
    checkpoint_every: int = Field(default=500, ge=1)
    device: str = "cpu"
    seed: int = Field(default=0, ge=0)

    @field_validator("repeats")
    @classmethod
    def _repeats(cls, v: int) -> int:
        if v < 2:
            raise ValueError(f"repeated sequences must be repeated at least twice, got {v}")
        return v

    @model_validator(mode="after")
    def _extraction_fits(self) -> QuickConfig:
        if self.prefix + self.suffix > self.seq_len:
            raise ValueError(
                f"extraction prefix {self.prefix} + suffix {self.suffix} exceed the sequence "
                f"length {self.seq_len}"
            )
        return self

    def train_config(self) -> Any:
        """The :class:`memlens.training.TrainConfig` of this run."""
        from memlens.training import TrainConfig

        return TrainConfig(
            schedule="constant", lr=self.lr, warmup_steps=self.warmup_steps,
            max_steps=self.steps, batch_size=self.batch_size,
        )  # fmt: skip


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


def run(
    config: QuickConfig,
    out: str | os.PathLike[str] | None = None,
    *,
    progress: ProgressFn | None = None,
) -> RunResult[TrackSummary]:
    """Train a small GPT on the :class:`QuickConfig` data and track memorization as it trains.

    Training is :func:`memlens.training.train` (the fused next-token loss of a GPT), with the
    tracker as its observer. Writes ``dynamics.json``, ``examples.parquet`` (per-example first
    memorized step and final bits), the tracker's append-only ``track/parts/*.parquet``,
    ``heatmap.png``, ``group_curves.png``, a training checkpoint (for resuming) and
    ``manifest.json``. Rerunning with the same ``out`` and settings resumes from the last
    checkpoint (``reused`` names it). ``progress`` receives a :class:`~memlens.progress.ProgressEvent` every step.
    """
    require_config(config, QuickConfig)
    from memlens.models.gpt import GPT, GPTConfig
    from memlens.store import RunDir, default_out_dir
    from memlens.training import load_checkpoint, next_token_loss, pick_device, save_checkpoint
    from memlens.training import train as train_loop

    dev = pick_device(config.device)
    train, examples, _ = quick_data(config)
    rd = RunDir(
        out or default_out_dir("track"),
        "track",
        {"preset": "quick", **config.to_dict()},
        config.seed,
    )
    rd.write_manifest(status="running")
    torch.manual_seed(config.seed)
    model = GPT(
        GPTConfig(config.vocab_size, config.seq_len, config.n_layer, config.d_model),
        generator=torch.Generator().manual_seed(config.seed),
    ).to(dev)
    tcfg = config.train_config()
    opt = tcfg.make_optimizer(model.parameters())
    ckpt = rd.path / "checkpoint.pt"
    start_step = load_checkpoint(ckpt, model, opt)
    tracker = Tracker(
        examples,
        rd.path / "track",
        schedule=Schedule.log(config.points_per_decade),
        prefix=config.prefix,
        suffix=config.suffix,
        batch_size=256,
    )
    train = train.to(dev)
    # the batch losses at observed steps, kept with each checkpoint so a resumed run reports the
    # whole curve (entries past the checkpoint, stored before a crash, are trained again)
    stored = (rd.load_cell("training_loss") or {}) if start_step else {}
    loss_bits: list[tuple[int, float]] = [
        (int(s), float(v))
        for s, v in stored.get("batch_loss_bits_per_token", [])
        if s <= start_step
    ]
    t_start = time.perf_counter()
    tracker.start()
    tracker.observe(model, start_step)

    def batch_at(step: int) -> torch.Tensor:
        return train[epoch_batch(len(train), config.batch_size, step, config.seed).to(dev)][None]

    def observe(info: Any) -> None:
        if tracker.observe(model, info.step):
            loss_bits.append((info.step, info.loss.item() / math.log(2)))
        emit(progress, "training (quick preset)", info.step, config.steps)

    def checkpoint(step: int) -> None:
        tracker.flush()
        rd.save_cell("training_loss", {"batch_loss_bits_per_token": loss_bits})
        save_checkpoint(ckpt, model, opt, step)

    step = train_loop(
        model, tcfg, batch_at, next_token_loss, optimizer=opt, start_step=start_step,
        observers=[observe], check_every=50, checkpoint=checkpoint,
        checkpoint_every=config.checkpoint_every,
    )  # fmt: skip
    tracker.observe(model, step, force=True)
    tracker.close()
    summary = _finish(
        rd, tracker, config.threshold, "bits",
        training={
            "steps": step,
            "resumed_from_step": start_step,
            "wall_seconds_this_session": time.perf_counter() - t_start,
            "model": {"n_layer": config.n_layer, "d_model": config.d_model, "n_params": model.config.n_params},
            "train_rows": len(train),
            "epochs": step * config.batch_size / len(train),
            "batch_loss_bits_per_token": [[s, v] for s, v in loss_bits],
        },
    )  # fmt: skip
    return RunResult(summary, rd.path, [f"checkpoint at step {start_step}"] if start_step else [])


def _finish(
    run: Any,
    tracker: Tracker,
    threshold: float,
    criterion: str,
    training: dict[str, Any],
    **manifest: Any,
) -> TrackSummary:
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
    summary = TrackSummary(
        **analysis, cost=tracker.cost(until_last_observation=True), training=training
    )
    run.write_json(summary.file, summary.to_json())
    run.write_manifest(status="finished", **manifest)
    return summary
