"""**Double descent** (:func:`run`): one shape, dataset sizes spanning a range of
capacity ratios (dataset bits / ``alpha * params``) on a seeded Markov source whose entropy is
exact (:class:`memlens.data.synthetic.MarkovSource`; uniform tokens have nothing to
generalize). Every model trains for the same step budget; we record held-out code length per
token on fresh samples against the source's entropy rate, and where its peak lands.

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
from memlens.laws.settings import DoubleDescentConfig
from memlens.laws.summaries import DoubleDescentSummary
from memlens.progress import ProgressFn
from memlens.results import RunResult
from memlens.units import capacity_bits


def _source(config: DoubleDescentConfig) -> Any:
    from memlens.data.synthetic import MarkovSource

    s = config.source
    return MarkovSource(config.vocab_size, s.branching, s.concentration, seed=s.seed)


def dd_sizes(config: DoubleDescentConfig) -> tuple[int, list[int], float]:
    """Parameter count, dataset sizes for the requested ratios, and expected bits per sequence."""
    from memlens.models.gpt import GPTConfig

    sh = config.shape
    P = GPTConfig(config.vocab_size, config.seq_len, sh.n_layer, sh.d_model, sh.n_head).n_params
    src = _source(config)
    h_seq = math.log2(config.vocab_size) + (config.seq_len - 1) * src.entropy_rate_bits()
    cap = capacity_bits(P, config.alpha)
    sizes = [max(1, round(r * cap / h_seq)) for r in config.capacity_ratios]
    seen: dict[int, float] = {}
    for r, n in zip(config.capacity_ratios, sizes, strict=True):
        if n in seen:
            # two models on datasets of one size would make a "peak" out of seed noise
            raise UserError(
                f"capacity ratios {seen[n]:g} and {r:g} both give datasets of {n} sequences for "
                f"this {P:,}-parameter shape; give distinct, farther-apart ratios."
            )
        seen[n] = r
    return P, sizes, h_seq


def dd_cells(config: DoubleDescentConfig) -> list[dict[str, Any]]:
    P, sizes, _ = dd_sizes(config)
    cells = []
    for j, idx in enumerate(_chunks(list(range(len(sizes))), config.models_per_cell)):
        ident = {
            "V": config.vocab_size,
            "S": config.seq_len,
            "shape": config.shape.model_dump(),
            "source": config.source.model_dump(),
            "sizes": [sizes[k] for k in idx],
            "size_index": idx,
            "n_test": config.n_test,
            "train": config.train.model_dump(),
            "seed": config.seed,
        }
        cells.append({"key": _cell_key(f"dd-g{j}", ident), "size_index": idx,
                      "sizes": [sizes[k] for k in idx], "params": P})  # fmt: skip
    return cells


def run_dd_cell(
    config: DoubleDescentConfig, cell: dict[str, Any], *, progress: ProgressFn | None = None
) -> dict[str, Any]:
    """Train one cell's models on the Markov source and measure train and held-out code lengths."""
    import torch

    from memlens.models.gpt import GPT, GPTConfig
    from memlens.scoring import gpt_forward, score_tokens
    from memlens.training import pick_device, train_to_saturation

    V, S, sh = config.vocab_size, config.seq_len, config.shape
    gcfg = GPTConfig(V, S, sh.n_layer, sh.d_model, sh.n_head)
    P = gcfg.n_params
    src = _source(config)
    rate = src.entropy_rate_bits()
    sizes, idx = cell["sizes"], cell["size_index"]
    K = len(sizes)
    dev = pick_device(config.device)
    base = config.seed * 1_000_003
    train = [src.sample(n, S, seed=base + 1 + k) for k, n in zip(idx, sizes, strict=True)]
    data = _stack(train)
    H = np.stack([src.code_length_bits(data[k].numpy()) for k in range(K)])  # exact, [K, n_max]
    test = src.sample(config.n_test, S, seed=base + 999_983)  # one held-out set for every size
    test_code = src.code_length_bits(test.numpy(), include_first=False)
    gen = torch.Generator().manual_seed(base + idx[0])
    model = GPT(gcfg, n_models=K, generator=gen).to(dev)
    res = train_to_saturation(
        model, data, sizes, config.train, entropy_bits=H, first_token_bits=math.log2(V),
        seed=base + idx[0], device=dev, progress=progress, task=f"N={','.join(map(str, sizes))}",
    )  # fmt: skip
    model.eval()
    st = score_tokens(
        gpt_forward(model), test.unsqueeze(0).expand(K, -1, -1), device=dev, batch_size=256
    )
    test_bpt = st.nll_bits.sum(-1) / (config.n_test * (S - 1))  # predicted tokens only
    src_test_bpt = float(test_code.sum() / (config.n_test * (S - 1)))
    runs = []
    for k, n in enumerate(sizes):
        train_nll = res.final_nll_bits[k] - math.log2(V)  # predicted tokens only
        d_bits = float(H[k, :n].sum())
        runs.append(
            {
                "n_sequences": n,
                "dataset_bits": d_bits,
                "capacity_bits": capacity_bits(P, config.alpha),
                "capacity_ratio": d_bits / capacity_bits(P, config.alpha),
                "train_bits_per_token": float(train_nll.sum() / (n * (S - 1))),
                "test_bits_per_token": float(test_bpt[k]),
                "source_test_bits_per_token": src_test_bpt,
                "excess_test_bits_per_token": float(test_bpt[k] - src_test_bpt),
                "memorized_bits": res.final_memorized_bits[k],
                "saturated": bool(res.saturated[k]),
                "steps": res.steps,
                "seconds": res.seconds,
            }
        )
    return {"key": cell["key"], "runs": runs, "seconds": res.seconds, "entropy_rate_bits": rate}


def describe_peak(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Where held-out loss peaks, and whether it is an interior peak (a double descent)."""
    ratios = np.array([r["capacity_ratio"] for r in runs])
    test = np.array([r["test_bits_per_token"] for r in runs])
    i = int(np.argmax(test))
    interior = 0 < i < len(runs) - 1
    # A local maximum anywhere (a bump after a first descent) also counts as double descent.
    local = [j for j in range(1, len(runs) - 1) if test[j] > test[j - 1] and test[j] > test[j + 1]]
    best_local = max(local, key=lambda j: test[j]) if local else None
    out = {
        "argmax_ratio": float(ratios[i]),
        "argmax_test_bits_per_token": float(test[i]),
        "argmax_is_interior": bool(interior),
        "local_peaks": [
            {"ratio": float(ratios[j]), "test_bits_per_token": float(test[j])} for j in local
        ],
        "peak_ratio": float(ratios[best_local]) if best_local is not None else None,
    }
    if best_local is not None:
        j = best_local
        out["verdict"] = (
            f"held-out loss peaks at capacity ratio {ratios[j]:.3g} "
            f"({test[j]:.3f} bits/token, vs {test[j - 1]:.3f} at {ratios[j - 1]:.3g} and "
            f"{test[j + 1]:.3f} at {ratios[j + 1]:.3g})"
        )
    else:
        out["verdict"] = (
            "no interior peak: held-out loss is highest at capacity ratio "
            f"{ratios[i]:.3g} ({'the smallest' if i == 0 else 'the largest'} dataset) and has no local maximum"
        )
    return out


def run(
    config: DoubleDescentConfig,
    out: str | Path | None = None,
    *,
    progress: ProgressFn | None = None,
    backend: str = "local",
    workers: int | None = None,
    ray_address: str | None = None,
    ray_num_cpus: float = 1,
    ray_num_gpus: float = 0,
) -> RunResult[DoubleDescentSummary]:
    """Run (or resume) the double-descent experiment into ``out``.

    Cells (groups of up to ``models_per_cell`` dataset sizes) run on ``backend`` (``local``:
    ``workers`` processes, one per CPU core by default; ``ray``: one Ray task per cell). Writes
    ``manifest.json``, ``cells/*.json``, ``runs.csv``, ``double_descent.json`` and
    ``double_descent.png`` (held-out and train code length per token against capacity ratio,
    ratio 1 and the source's entropy rate marked; memorized bits on the right).
    """
    require_config(config, DoubleDescentConfig)
    import pandas as pd

    from memlens.scale import check_backend, run_stored_cells
    from memlens.store import RunDir, default_out_dir

    check_backend(backend, ray_address, config.device)
    cells = dd_cells(config)  # refuses bad sizes before anything is written
    rd = RunDir(
        out or default_out_dir("laws-double-descent"), "laws-double-descent", config,
        config.seed,
    )  # fmt: skip
    rd.write_manifest(status="running")
    start = time.perf_counter()
    done = run_stored_cells(
        rd, [(c["key"], run_dd_cell, (config, c)) for c in cells], progress=progress,
        backend=backend, workers=workers, ray_address=ray_address, ray_num_cpus=ray_num_cpus,
        ray_num_gpus=ray_num_gpus,
    )  # fmt: skip
    results = done.results
    runs = sorted((run for r in results for run in r["runs"]), key=lambda r: r["capacity_ratio"])
    P = cells[0]["params"]
    # The capacity these models actually reached: max over dataset sizes of memorized bits (the
    # definition of capacity, Morris et al. 2025), a lower bound when runs are not saturated.
    measured = max(r["memorized_bits"] for r in runs)
    for r in runs:
        r["measured_capacity_ratio"] = r["dataset_bits"] / measured if measured > 0 else None
    peak = describe_peak(runs)
    if peak["peak_ratio"] is not None and measured > 0:
        j = [r["capacity_ratio"] for r in runs].index(peak["peak_ratio"])
        peak["peak_measured_capacity_ratio"] = runs[j]["measured_capacity_ratio"]
        peak["verdict"] += (
            f"; measured against the capacity these models reached ({measured:,.0f} bits = "
            f"{measured / P:.2f} bits/param) the peak is at ratio {runs[j]['measured_capacity_ratio']:.3g}"
        )
    summary = DoubleDescentSummary(
        experiment="double descent on a seeded Markov source (Morris et al. 2025, arXiv:2505.24832)",
        capacity=f"alpha * params = {config.alpha} * {P:,} = {capacity_bits(P, config.alpha):,.0f} bits",
        capacity_ratio="dataset bits (exact code length under the source) / capacity bits",
        loss="held-out code length per predicted token (bits), fresh samples from the source; "
        "the first token is not predicted",
        vocab_size=config.vocab_size,
        seq_len=config.seq_len,
        shape={**config.shape.model_dump(), "params": P},
        source={**config.source.model_dump(), "entropy_rate_bits": results[0]["entropy_rate_bits"]},
        preset=config.preset,
        seed=config.seed,
        measured_capacity_bits=measured,
        measured_bits_per_param=measured / P,
        peak=peak,
        all_saturated=all(r["saturated"] for r in runs),
        train_seconds=sum(r["seconds"] for r in results),
        wall_seconds_this_invocation=time.perf_counter() - start,
        reused_cells=len(done.reused),
        runs=runs,
    )
    rd.write_table("runs.csv", pd.DataFrame(runs))
    rd.write_json(summary.file, summary.to_json())
    rd.save_figure("double_descent.png", plot_double_descent(summary))
    rd.write_manifest(
        status="finished", cells=len(cells), reused_cells=len(done.reused), backend=backend
    )
    return RunResult(summary, rd.path, done.reused)


def plot_double_descent(summary: DoubleDescentSummary) -> Any:
    """Held-out and train loss (bits/token) and memorized bits against capacity ratio."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r.model_dump() for r in summary.runs]
    summary = summary.model_dump()
    x = [r["capacity_ratio"] for r in runs]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.6))
    a1.plot(x, [r["test_bits_per_token"] for r in runs], "o-", color="C3", label="held-out")
    a1.plot(x, [r["train_bits_per_token"] for r in runs], "s-", color="C0", label="train")
    a1.axhline(runs[0]["source_test_bits_per_token"], color="grey", ls=":",
               label="source code length (entropy)")  # fmt: skip
    a1.axvline(1.0, color="k", ls="--", lw=0.8, label="capacity ratio 1")
    cap_ratio = summary["measured_capacity_bits"] / runs[0]["capacity_bits"]
    a1.axvline(cap_ratio, color="C1", ls="-.", lw=0.8,
               label=f"dataset bits = measured capacity ({summary['measured_bits_per_param']:.2f} bits/param)")  # fmt: skip
    pk = summary["peak"]
    if pk.get("peak_ratio"):
        y = next(r["test_bits_per_token"] for r in runs if r["capacity_ratio"] == pk["peak_ratio"])
        a1.annotate(f"peak at ratio {pk['peak_ratio']:.2g}", (pk["peak_ratio"], y), textcoords="offset points",
                    xytext=(12, -4), fontsize=8)  # fmt: skip
    for r in runs:
        if not r["saturated"]:
            a1.plot([r["capacity_ratio"]], [r["train_bits_per_token"]], "x", color="red", ms=7)
    a1.set_xscale("log")
    a1.set_yscale("log")
    a1.set_xlabel("capacity ratio = dataset bits / (alpha * params)")
    a1.set_ylabel("code length (bits per predicted token)")
    sh = summary["shape"]
    a1.set_title(
        f"Held-out loss vs capacity ratio: L={sh['n_layer']} d={sh['d_model']} ({sh['params']:,} params)"
    )
    a1.legend(fontsize=7)
    a2.plot(x, [r["memorized_bits"] for r in runs], "o-", color="C2")
    a2.axvline(1.0, color="k", ls="--", lw=0.8)
    a2.axhline(runs[0]["capacity_bits"], color="grey", ls=":", label="alpha * params")
    a2.axvline(cap_ratio, color="C1", ls="-.", lw=0.8)
    a2.set_xscale("log")
    a2.set_xlabel("capacity ratio")
    a2.set_ylabel("unintended memorization (bits, vs the true source)")
    a2.set_title("Memorized bits rise until capacity fills, then fall")
    a2.legend(fontsize=7)
    fig.tight_layout()
    return fig
