"""The two experiments behind memlens's sizing laws (Morris et al. 2025, arXiv:2505.24832).

**Membership-inference scaling** (:func:`run`): for a grid of GPT shapes and dataset sizes on
uniform random tokens, train each model to saturation with the capacity lab's trainer
(:func:`memlens.training.train_to_saturation`; all dataset sizes of a cell train as one batched
stack), attack it with the loss threshold (:func:`memlens.mia.attacks.loss_attack`, higher score =
member) against as many unseen sequences from the same source, and record F1 at the threshold
maximizing balanced accuracy (:func:`memlens.mia.metrics.best_threshold`) and ROC-AUC
(scikit-learn) per cell. The law ``F1 = 1/2 (1 + c1 sigmoid(c2 - c3 |D| / Capacity))`` is then
fitted to our own measurements (:func:`memlens.laws.fit_mia_law`; the law as printed in the
paper tends to 1.006 as |D| grows, memlens uses the corrected form) and plotted against the
corrected published constants. Capacity is ``alpha * params`` with ``alpha = 3.64`` by default,
so the fitted constants are comparable with the published ones; the measured bits/param of every
shape is reported too.

Resumable: every finished cell is saved in the run directory and reused on rerun; cells run on
the local or the Ray backend (:func:`memlens.scale.run_stored_cells`).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from memlens.config import require_config
from memlens.errors import UserError
from memlens.laws.cells import _cell_key, _chunks, _stack
from memlens.laws.fit import fit_mia_law
from memlens.laws.formulas import CORRECTED, LAW_FORM, LAW_NOTE, MiaLawConstants, mia_f1
from memlens.laws.settings import MiaExperimentConfig
from memlens.laws.summaries import MiaExperimentSummary
from memlens.progress import ProgressFn
from memlens.results import RunResult
from memlens.units import capacity_bits


def mia_cells(config: MiaExperimentConfig) -> list[dict[str, Any]]:
    """The experiment's cells: one per (shape, group of up to ``models_per_cell`` sizes)."""
    from memlens.models.gpt import GPTConfig

    cells = []
    for i, shape in enumerate(config.shapes):
        gcfg = GPTConfig(
            config.vocab_size, config.seq_len, shape.n_layer, shape.d_model, shape.n_head
        )
        sizes = config.sizes_for(gcfg.n_params)
        mults = list(config.capacity_multiples)
        for j, idx in enumerate(_chunks(list(range(len(sizes))), config.models_per_cell)):
            ident = {
                "V": config.vocab_size,
                "S": config.seq_len,
                "shape": shape.model_dump(),
                "shape_index": i,
                "sizes": [sizes[k] for k in idx],
                "size_index": idx,
                "train": config.train.model_dump(),
                "seed": config.seed,
            }
            cells.append(
                {
                    "key": _cell_key(f"mia-L{shape.n_layer}-d{shape.d_model}-g{j}", ident),
                    "shape_index": i,
                    "shape": shape,
                    "params": gcfg.n_params,
                    "n_head": gcfg.n_head,
                    "size_index": idx,
                    "sizes": [sizes[k] for k in idx],
                    "multiples": [mults[k] for k in idx],
                }
            )
    return cells


def run_mia_cell(
    config: MiaExperimentConfig, cell: dict[str, Any], *, progress: ProgressFn | None = None
) -> dict[str, Any]:
    """Train one cell's models, attack each, and return its JSON-ready result."""
    import torch

    from memlens.data.synthetic import uniform_sequences
    from memlens.mia.attacks import AttackInputs, loss_attack
    from memlens.mia.metrics import best_threshold, roc_auc
    from memlens.models.gpt import GPT, GPTConfig
    from memlens.scoring import gpt_forward, score_tokens
    from memlens.training import pick_device, train_to_saturation

    V, S = config.vocab_size, config.seq_len
    shape = cell["shape"]
    gcfg = GPTConfig(V, S, shape.n_layer, shape.d_model, shape.n_head)
    P = gcfg.n_params
    sizes = cell["sizes"]
    K = len(sizes)
    dev = pick_device(config.device)
    h_seq = config.bits_per_sequence()
    base = config.seed * 1_000_003 + cell["shape_index"] * 1009
    # Members and non-members come from disjoint seed streams of the same uniform source.
    members = _stack(
        [
            uniform_sequences(V, S, n, seed=base + 10 * k)
            for k, n in zip(cell["size_index"], sizes, strict=True)
        ]
    )
    nonmembers = _stack(
        [
            uniform_sequences(V, S, n, seed=base + 10 * k + 5)
            for k, n in zip(cell["size_index"], sizes, strict=True)
        ]
    )
    gen = torch.Generator().manual_seed(base + cell["size_index"][0])
    model = GPT(gcfg, n_models=K, generator=gen).to(dev)
    res = train_to_saturation(
        model,
        members,
        sizes,
        config.train,
        entropy_bits=h_seq,
        first_token_bits=math.log2(V),
        seed=base + cell["size_index"][0],
        device=dev,
        progress=progress,
        task=f"L={shape.n_layer} d={shape.d_model} N={','.join(map(str, sizes))}",
    )
    model.eval()
    fwd = gpt_forward(model)
    s_mem = score_tokens(fwd, members, device=dev, batch_size=256)
    s_non = score_tokens(fwd, nonmembers, device=dev, batch_size=256)
    runs = []
    for k, n in enumerate(sizes):
        a_mem = loss_attack(AttackInputs(target=s_mem.take(slice(0, n), model=k)))
        a_non = loss_attack(AttackInputs(target=s_non.take(slice(0, n), model=k)))
        scores = np.concatenate([a_mem, a_non])
        labels = np.concatenate([np.ones(n, dtype=np.int8), np.zeros(n, dtype=np.int8)])
        bt = best_threshold(scores, labels)
        nll_mem = s_mem.nll_bits[k, :n] + math.log2(V)
        nll_non = s_non.nll_bits[k, :n] + math.log2(V)
        cap = capacity_bits(P, config.alpha)
        runs.append(
            {
                "n_layer": shape.n_layer,
                "d_model": shape.d_model,
                "params": P,
                "capacity_multiple": cell["multiples"][k],
                "n_sequences": n,
                "dataset_bits": n * h_seq,
                "capacity_bits": cap,
                "capacity_ratio": n * h_seq / cap,
                "sequences_per_capacity_bit": n / cap,
                "memorized_bits": res.final_memorized_bits[k],
                "memorized_bits_per_param": res.final_memorized_bits[k] / P,
                "saturated": bool(res.saturated[k]),
                "steps": res.steps,
                "f1": bt["f1"],
                "balanced_accuracy": bt["balanced_accuracy"],
                "f1_max": bt["f1_max"],
                "auc": roc_auc(scores, labels),
                "member_nll_bits_mean": float(nll_mem.mean()),
                "nonmember_nll_bits_mean": float(nll_non.mean()),
                "nonmember_nll_bits_std": float(nll_non.std()),
                "seconds": res.seconds,
            }
        )
    return {"key": cell["key"], "runs": runs, "seconds": res.seconds}


def fit_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Fit the MIA law to the runs' (capacity bits, n_sequences, F1); ``fit: None`` if too few."""
    cap = np.array([r["capacity_bits"] for r in runs], dtype=float)
    n = np.array([r["n_sequences"] for r in runs], dtype=float)
    f1 = np.array([r["f1"] for r in runs], dtype=float)
    try:
        fit = fit_mia_law(cap, n, f1)
    except UserError as exc:
        return {"fit": None, "fit_skipped": str(exc)}
    out = fit.to_dict()
    out["published_constants"] = CORRECTED.to_dict()
    for r, p in zip(runs, fit.predictions, strict=True):
        r["fitted_f1"] = float(p)
    return {"fit": out}


def run(
    config: MiaExperimentConfig,
    out: str | Path | None = None,
    *,
    progress: ProgressFn | None = None,
    backend: str = "local",
    workers: int | None = None,
    ray_address: str | None = None,
    ray_num_cpus: float = 1,
    ray_num_gpus: float = 0,
) -> RunResult[MiaExperimentSummary]:
    """Run (or resume) the MIA scaling experiment into ``out``.

    Cells run on ``backend`` (``local``: ``workers`` processes, one per CPU core by default;
    ``ray``: one Ray task per cell, see :func:`memlens.scale.run_stored_cells`); every cell seeds
    itself, so the numbers do not depend on where it ran. Writes ``manifest.json``,
    ``cells/*.json`` (one per finished cell), ``runs.csv``, ``mia_experiment.json`` (runs, fitted
    law with CIs, published constants) and ``mia_experiment.png``. A rerun with the same config
    and ``out`` reuses finished cells.
    """
    require_config(config, MiaExperimentConfig)
    import pandas as pd

    from memlens.scale import check_backend, run_stored_cells
    from memlens.store import RunDir, default_out_dir

    check_backend(backend, ray_address, config.device)
    rd = RunDir(out or default_out_dir("laws-mia"), "laws-mia-experiment", config, config.seed)
    rd.write_manifest(status="running")
    cells = mia_cells(config)
    start = time.perf_counter()
    done = run_stored_cells(
        rd, [(c["key"], run_mia_cell, (config, c)) for c in cells], progress=progress,
        backend=backend, workers=workers, ray_address=ray_address, ray_num_cpus=ray_num_cpus,
        ray_num_gpus=ray_num_gpus,
    )  # fmt: skip
    results = done.results
    runs = [run for r in results for run in r["runs"]]
    runs.sort(key=lambda r: (r["params"], r["n_sequences"]))
    fitted = fit_runs(runs)
    for r in runs:
        r["published_law_f1"] = float(mia_f1(r["n_sequences"], r["capacity_bits"]))
    per_shape = {}
    for r in runs:
        key = f"L{r['n_layer']}-d{r['d_model']}"
        s = per_shape.setdefault(
            key, {"params": r["params"], "max_memorized_bits": 0.0, "all_saturated": True}
        )
        s["max_memorized_bits"] = max(s["max_memorized_bits"], r["memorized_bits"])
        s["all_saturated"] = s["all_saturated"] and r["saturated"]
    for s in per_shape.values():
        s["measured_bits_per_param"] = s["max_memorized_bits"] / s["params"]
    summary = MiaExperimentSummary(
        experiment="MIA scaling law on uniform tokens (Morris et al. 2025, arXiv:2505.24832)",
        attack="loss threshold (score = -mean NLL bits/token, higher = member); F1 at the threshold "
        "maximizing balanced accuracy (oracle), AUC via scikit-learn",
        nonmembers="as many fresh sequences from the same uniform source as members",
        capacity=f"alpha * params with alpha = {config.alpha} bits/param",
        first_token="coded at log2(V) bits; never counted as memorized",
        form=LAW_FORM,
        law_note=LAW_NOTE,
        vocab_size=config.vocab_size,
        seq_len=config.seq_len,
        bits_per_sequence=config.bits_per_sequence(),
        preset=config.preset,
        seed=config.seed,
        **fitted,
        published_constants=CORRECTED.to_dict(),
        shapes=per_shape,
        all_saturated=all(r["saturated"] for r in runs),
        train_seconds=sum(r["seconds"] for r in results),
        wall_seconds_this_invocation=time.perf_counter() - start,
        reused_cells=len(done.reused),
        runs=runs,
    )
    rd.write_table("runs.csv", pd.DataFrame(runs))
    rd.write_json(summary.file, summary.to_json())
    rd.save_figure("mia_experiment.png", plot_mia_experiment(summary))
    rd.write_manifest(
        status="finished", cells=len(cells), reused_cells=len(done.reused), backend=backend
    )
    return RunResult(summary, rd.path, done.reused)


def plot_mia_experiment(summary: MiaExperimentSummary) -> Any:
    """Left: F1 and AUC against capacity ratio (ratio 1 marked). Right: F1 against |D|/Capacity
    with the fitted law and the corrected published law."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r.model_dump() for r in summary.runs]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.6))
    shapes = sorted({(r["n_layer"], r["d_model"], r["params"]) for r in runs}, key=lambda s: s[2])
    colors = plt.cm.viridis(np.linspace(0, 0.85, max(1, len(shapes))))
    for (L, d, P), col in zip(shapes, colors, strict=True):
        rs = [r for r in runs if r["params"] == P and r["n_layer"] == L]
        x = [r["capacity_ratio"] for r in rs]
        a1.plot(x, [r["f1"] for r in rs], "o-", color=col, label=f"F1, L={L} d={d} ({P:,} params)")
        a1.plot(x, [r["auc"] for r in rs], "s:", color=col, ms=4, label=f"AUC, L={L} d={d}")
        for r in rs:
            if not r["saturated"]:
                a1.plot([r["capacity_ratio"]], [r["f1"]], "x", color="red", ms=8)
        a2.scatter([r["sequences_per_capacity_bit"] for r in rs], [r["f1"] for r in rs], color=col,
                   zorder=3, label=f"measured L={L} d={d}")  # fmt: skip
    a1.axvline(1.0, color="k", lw=0.8, ls="--", label="capacity ratio 1")
    a1.axhline(0.5, color="grey", lw=0.7, ls=":")
    a1.set_xscale("log")
    a1.set_ylim(0.4, 1.05)
    a1.set_xlabel("capacity ratio = dataset bits / (alpha * params)")
    a1.set_ylabel("loss-attack F1 / AUC")
    a1.set_title("Membership inference fades as the dataset outgrows capacity (x: not saturated)")
    a1.legend(fontsize=6, loc="lower left")
    xs = np.array([r["sequences_per_capacity_bit"] for r in runs])
    grid = np.geomspace(xs.min() / 3, xs.max() * 3, 300)
    if summary.fit:
        c = MiaLawConstants(**summary.fit["constants"])
        a2.plot(grid, np.minimum(1, mia_f1(grid, 1.0, c)), "C0-",
                label=f"fitted: c1={c.c1:.3g}, c2={c.c2:.3g}, c3={c.c3:.4g}")  # fmt: skip
    a2.plot(grid, np.minimum(1, mia_f1(grid, 1.0, CORRECTED)), "k--", lw=1,
            label="published (corrected): 1.3405, 1.1159, 120.61")  # fmt: skip
    a2.axhline(0.5, color="grey", lw=0.7, ls=":")
    a2.set_xscale("log")
    a2.set_ylim(0.4, 1.05)
    a2.set_xlabel("|D| / Capacity (sequences per capacity bit)")
    a2.set_ylabel("loss-attack F1")
    a2.set_title("F1 = 1/2 (1 + c1 sigmoid(c2 - c3 |D|/C)): ours vs published")
    a2.legend(fontsize=6, loc="lower left")
    fig.tight_layout()
    return fig
