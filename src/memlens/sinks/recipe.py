"""The MemSinks experiment: standard vs deduplicated vs MemSinks training at equal compute.

Ghosal, Maini & Raghunathan, "Memorization Sinks: Isolating Memorization during LLM Training",
ICML 2025, arXiv:2507.09937. The setting, as in the paper: a small set of sequences repeated many
times, mixed into a larger corpus of unrepeated sequences from the same source
(:mod:`memlens.sinks.data`). Three models with the same architecture, initialization and number of
optimizer steps on rows of the same width (equal compute):

* ``standard``: trained on the corpus with the repetitions;
* ``dedup``: trained on the exactly deduplicated corpus (every repeated sequence once), cycled
  to the same number of rows;
* ``memsinks``: the ``standard`` stream, with MemSinks masks (:mod:`memlens.sinks.masks`).

Every model is scored by the shared engine (:mod:`memlens.sinks.evaluation`); all losses are in
**bits per token** (token-weighted means over predicted tokens):

* ``val_loss``: loss on held-out sequences drawn fresh from the same source (capability);
* ``repeated_loss``: loss on the repeated sequences;
* ``mem_gap = val_loss - repeated_loss`` (the paper's memorization gap);
* ``fresh_train_loss``: loss on unrepeated training sequences (seen once);
* extraction: a sequence is extracted when greedy decoding from its first ``prefix`` tokens
  reproduces the rest exactly (Carlini et al. 2023), read exactly from one teacher-forced pass
  under the rule of :mod:`memlens.scoring.extraction` (``suffix=None``: the rest of each
  document, eligible with at least 4 tokens after the prefix). Rates for repeated and held-out
  sequences and their difference.

MemSinks is evaluated in every inference mode: ``memsinks`` (each sequence's own mask, as in
training), ``memsinks_sinks_dropped`` (sinks off, general units rescaled by
``(p_gen + p_mem)/p_gen``), ``memsinks_sinks_dropped_unscaled`` (sinks off, no rescaling) and
``memsinks_sinks_scaled`` (all units on, sinks times ``p_mem``). The published claim: dropping
sinks closes at least 50% of standard training's memorization gap while the validation loss stays
within 2% of standard's.

Each arm is a resumable cell (weights in ``models/<arm>.safetensors``) run by the shared cell
runner (:func:`memlens.scale.run_stored_cells`: worker processes or Ray tasks); localization
(:mod:`memlens.sinks.localize`) is one more cell.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from memlens.config import require_config
from memlens.progress import ProgressFn
from memlens.results import RunResult
from memlens.sinks.config import SinksConfig
from memlens.sinks.data import SinksData, build_data
from memlens.sinks.evaluation import _curve_point, _eval_rows, score_set
from memlens.sinks.plots import plot_sinks
from memlens.sinks.summary import SinksSummary

ARMS = ("standard", "dedup", "memsinks")

CLAIM = (
    "dropping sinks closes at least 50% of standard training's memorization gap while validation "
    "loss stays within 2% of standard's (Ghosal, Maini & Raghunathan, ICML 2025, arXiv:2507.09937)"
)


def run(
    config: SinksConfig,
    out: str | Path | None = None,
    *,
    progress: ProgressFn | None = None,
    backend: str = "local",
    workers: int | None = None,
    ray_address: str | None = None,
    ray_num_cpus: float = 1,
    ray_num_gpus: float = 0,
) -> RunResult[SinksSummary]:
    """Run (or resume) the experiment and write ``sinks.json``, ``arms.csv`` and plots.

    Parameters
    ----------
    config: the experiment (see :class:`SinksConfig` and :data:`memlens.sinks.config.PRESETS`).
    out: run directory (default ``memlens-runs/sinks-<time>``); re-running with the same
        directory and config reuses finished arms.
    progress: receives a :class:`~memlens.progress.ProgressEvent` per arm every 10 steps.
    backend, workers, ray_address, ray_num_cpus, ray_num_gpus: where the unfinished arms train (:func:`memlens.scale.run_stored_cells`:
        ``local`` in ``workers`` processes, one per CPU core by default; ``ray`` as Ray tasks).
        Same seeds, same numbers.
    """
    require_config(config, SinksConfig)
    import torch

    from memlens.models.gpt import GPT, GPTConfig
    from memlens.scale import check_backend, run_stored_cells
    from memlens.sinks.masks import SinkConfig
    from memlens.store import RunDir, atomic_path, default_out_dir

    cfg = config
    t0 = time.perf_counter()
    sink = SinkConfig(cfg.p_gen, cfg.p_mem, drop_scale=cfg.drop_scale)
    data = build_data(cfg)  # bad data stops here, before anything is written
    check_backend(backend, ray_address)
    rd = RunDir(out or default_out_dir("sinks"), "sinks", cfg, cfg.seed)
    rd.write_manifest(status="running")
    n_rows = len(data.streams["standard"])
    steps = cfg.steps if cfg.train_path is None else math.ceil(n_rows / cfg.batch_size)
    gcfg = GPTConfig(data.vocab_size, cfg.seq_len, cfg.n_layer, cfg.d_model)
    tcfg = cfg.train_config(steps)
    weights = {arm: rd.path / "models" / f"{arm}.safetensors" for arm in ARMS}

    def load(arm: str) -> dict | None:
        cell = rd.load_cell(arm)
        return cell if cell is not None and weights[arm].exists() else None

    def save(arm: str, result: dict) -> None:
        weights[arm].parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(weights[arm]) as tmp:
            tmp.write_bytes(result["weights"])
        rd.save_cell(arm, result["cell"])

    done = run_stored_cells(
        rd, [(arm, _arm_task, (arm, cfg, data, sink, gcfg, tcfg, n_rows)) for arm in ARMS],
        load=load, save=save, progress=progress, backend=backend, workers=workers,
        ray_address=ray_address, ray_num_cpus=ray_num_cpus, ray_num_gpus=ray_num_gpus,
    )  # fmt: skip
    from safetensors.torch import load_file

    models: dict[str, GPT] = {}
    cells: dict[str, dict] = {}
    for arm in ARMS:
        model = GPT(gcfg, 1, generator=torch.Generator().manual_seed(cfg.seed))
        model.load_state_dict(load_file(weights[arm]))
        model.eval()
        models[arm] = model
        cells[arm] = {**rd.load_cell(arm), "resumed": arm in done.reused}

    loc = rd.load_cell("localization")
    if loc is None:
        loc = localization(models, sink, data, cfg)
        rd.save_cell("localization", loc)

    summary = _summarize(cfg, data, sink, cells, loc, gcfg, tcfg, n_rows)
    summary.seconds_total_this_invocation = time.perf_counter() - t0
    rd.write_json(summary.file, summary.to_json())
    _write_tables(rd, summary)
    plot_sinks(rd, summary.to_json(), cells, loc)
    rd.write_manifest(
        status="finished", seconds=summary.seconds_total_this_invocation, backend=backend
    )
    return RunResult(summary, rd.path, done.reused)


def _train_arm(arm: str, model, cfg, data, sink, tcfg, n_rows: int, progress) -> dict:
    """Train one arm's ``model`` in place; return its cell (training info, curve, eval rows)."""
    from memlens.sinks.train import train_model

    arm_sink = sink if arm == "memsinks" else None
    steps = tcfg.max_steps
    curve: list[dict] = []

    def cb(step: int) -> None:
        curve.append(_curve_point(model, arm_sink, arm, data, cfg, step))

    every = max(1, min(cfg.eval_every, steps))
    cb(0)
    info = train_model(
        model, data.streams[arm], np.arange(n_rows), tcfg, arm_sink, seed=cfg.seed, callback=cb,
        callback_every=every, progress=progress, task=f"training {arm}",
    )  # fmt: skip
    if steps % every:
        cb(steps)
    return {
        "arm": arm,
        "train": info,
        "curve": curve,
        "rows": _eval_rows(arm, model, sink, data, cfg),
    }


def _arm_task(
    arm: str, cfg, data, sink, gcfg, tcfg, n_rows: int, *, progress: ProgressFn | None = None
) -> dict:
    """One arm as a cell of :func:`memlens.scale.run_stored_cells`: its cell and its weights
    (safetensors bytes, so no filesystem is shared with the worker or node that trained it)."""
    import torch
    from safetensors.torch import save

    from memlens.models.gpt import GPT

    model = GPT(gcfg, 1, generator=torch.Generator().manual_seed(cfg.seed))
    cell = _train_arm(arm, model, cfg, data, sink, tcfg, n_rows, progress)
    weights = save({k: v.contiguous() for k, v in model.state_dict().items()})
    return {"cell": cell, "weights": weights}


def localization(models: dict, sink, data: SinksData, cfg: SinksConfig) -> dict:
    """Top-k vs random-k ablation on the repeated sequences each model memorized most."""
    from memlens.sinks.localize import ablation_curve

    out = {}
    rep = [data.docs[i] for i in data.repeated]
    for arm, mode in (("standard", "all"), ("memsinks", "own")):
        model = models[arm]
        s = sink if arm == "memsinks" else None
        per_seq = score_set(model, s, mode, rep).mean_nll_bits
        chosen = np.argsort(per_seq, kind="stable")[: cfg.localize_n]  # most memorized first
        ks = [k for k in cfg.localize_ks if k <= cfg.n_layer * 4 * cfg.d_model]
        out[arm] = ablation_curve(
            model, s, mode, [rep[i] for i in chosen], data.heldout, ks,
            n_random=cfg.localize_random, seed=cfg.seed,
        )  # fmt: skip
        out[arm]["mode"] = mode
    return out


def claim_check(rows: dict[str, dict]) -> dict:
    """The published claim checked on the evaluated rows (``mem_gap`` and ``val_loss`` of
    ``standard``, ``memsinks_sinks_dropped`` and ``memsinks_sinks_dropped_unscaled``, bits per
    token): the share of standard's gap that dropping the sinks closes,
    ``1 - gap_dropped / gap_standard``, and the validation-loss ratio."""
    std = rows["standard"]
    drop = rows["memsinks_sinks_dropped"]
    # Without a positive gap under standard training (the repeated sequences are not predicted
    # better than held-out ones) there is no memorization to close: the share is undefined and
    # the claim cannot be tested (None for both, not NaN and not "does not hold").
    testable = bool(std["mem_gap"] > 0)
    closed = 1.0 - drop["mem_gap"] / std["mem_gap"] if testable else None
    ratio = drop["val_loss"] / std["val_loss"]
    claim = {
        "published": CLAIM,
        "testable": testable,
        "gap_closed_fraction": closed,
        "val_loss_ratio_dropped_to_standard": ratio,
        "closes_half_the_gap": bool(testable and closed >= 0.5),
        "val_loss_within_2pct": bool(ratio <= 1.02),
    }
    claim["holds"] = (
        claim["closes_half_the_gap"] and claim["val_loss_within_2pct"] if testable else None
    )
    unscaled = rows["memsinks_sinks_dropped_unscaled"]
    claim["unscaled_drop"] = {
        "gap_closed_fraction": 1.0 - unscaled["mem_gap"] / std["mem_gap"] if testable else None,
        "val_loss_ratio_to_standard": unscaled["val_loss"] / std["val_loss"],
    }
    return claim


def _summarize(cfg, data, sink, cells, loc, gcfg, tcfg, n_rows) -> SinksSummary:
    rows: dict[str, dict] = {}
    for arm in ARMS:
        for name, r in cells[arm]["rows"].items():
            rows[name] = {k: v for k, v in r.items() if k != "repeated_loss_per_sequence"}
    claim = claim_check(rows)
    n_general, n_sink, k = sink.split(4 * cfg.d_model)
    return SinksSummary(
        units="bits per token (token-weighted mean over predicted tokens)",
        paper="Ghosal, Maini & Raghunathan, Memorization Sinks, ICML 2025, arXiv:2507.09937",
        preset=cfg.preset,
        data={
            "source": data.source,
            "n_repeated": int(len(data.repeated)),
            "repetitions": cfg.repetitions,
            "n_unrepeated": int(len(data.fresh)),
            "n_heldout": len(data.heldout),
            "repeated_fraction_of_rows": (len(data.repeated) * cfg.repetitions / n_rows)
            if cfg.train_path is None
            else None,
            "heldout_source_floor_bits_per_token": data.heldout_floor_bits,
            **data.meta,
        },
        model={**gcfg.to_dict(), "n_params": gcfg.n_params, "mlp_hidden": 4 * cfg.d_model},
        sinks={
            **sink.to_dict(),
            "n_general": n_general,
            "n_sink": n_sink,
            "sinks_on_per_sequence": k,
        },  # fmt: skip
        compute={
            "steps": tcfg.max_steps,
            "batch_size": tcfg.batch_size,
            "rows_per_arm": tcfg.max_steps * tcfg.batch_size,
            "row_tokens": cfg.seq_len,
            "train_seconds": {arm: cells[arm]["train"]["seconds"] for arm in ARMS},
            "resumed": {arm: cells[arm]["resumed"] for arm in ARMS},
        },
        optimizer=tcfg.to_dict(),
        **rows,
        claim=claim,
        localization=loc,
    )


def _write_tables(rd: Any, summary: SinksSummary) -> None:
    import pandas as pd

    table = [
        {
            "row": name,
            "val_loss_bits": r.val_loss,
            "repeated_loss_bits": r.repeated_loss,
            "mem_gap_bits": r.mem_gap,
            "fresh_train_loss_bits": r.fresh_train_loss,
            "extraction_repeated": r.extraction["repeated_rate"],
            "extraction_heldout": r.extraction["heldout_rate"],
        }
        for name, r in summary.rows().items()
    ]
    rd.write_table("arms.csv", pd.DataFrame(table))
