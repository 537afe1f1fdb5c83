"""The two experiments behind memlens's sizing laws (Morris et al. 2025, arXiv:2505.24832).

**Membership-inference scaling** (:func:`run_mia`): for a grid of GPT shapes and dataset sizes on
uniform random tokens, train each model to saturation with the capacity lab's trainer
(:func:`memlens.train.train_to_saturation`; all dataset sizes of a cell train as one batched
stack), attack it with the loss threshold (:func:`memlens.mia.attacks.loss_attack`, higher score =
member) against as many unseen sequences from the same source, and record F1 at the threshold
maximizing balanced accuracy (:func:`memlens.mia.metrics.best_threshold`) and ROC-AUC
(scikit-learn) per cell. The law ``F1 = 1/2 (1 + c1 sigmoid(c2 - c3 |D| / Capacity))`` is then
fitted to our own measurements (:func:`memlens.laws.fit_mia_law`; the law as printed in the
paper tends to 1.006 as |D| grows, memlens uses the corrected form) and plotted against the
corrected published constants. Capacity is ``alpha * params`` with ``alpha = 3.64`` by default,
so the fitted constants are comparable with the published ones; the measured bits/param of every
shape is reported too.

**Double descent** (:func:`run_double_descent`): one shape, dataset sizes spanning a range of
capacity ratios (dataset bits / ``alpha * params``) on a seeded Markov source whose entropy is
exact (:class:`memlens.data.synthetic.MarkovSource`; uniform tokens have nothing to
generalize). Every model trains for the same step budget; we record held-out code length per
token on fresh samples against the source's entropy rate, and where its peak lands.

Both are resumable: every finished cell (a group of dataset sizes of one shape) is saved in the
run directory and reused when the same command is rerun with the same ``--out``. All scoring goes
through :func:`memlens.bits.score_tokens`. The first token of every sequence is coded at
``log2 V`` bits (uniform under both sources) and is never counted as memorized.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from memlens.capacity import Shape
from memlens.capacity import TrainSettings as _CapacityTrainSettings
from memlens.errors import UserError
from memlens.laws import (
    CORRECTED,
    LAW_FORM,
    LAW_NOTE,
    PUBLISHED_ALPHA,
    MiaLawConstants,
    fit_mia_law,
    mia_f1,
)

Progress = Callable[[str, int, int], None]  # (label, step, max_steps)


# --------------------------------------------------------------------------------------------
# Configs and presets
# --------------------------------------------------------------------------------------------


class TrainSettings(_CapacityTrainSettings):
    """The capacity lab's optimizer and stopping settings, with this module's defaults."""

    max_steps: int = Field(default=2000, ge=1)
    warmup_steps: int = Field(default=50, ge=0)
    decay_frac: float = Field(default=0.0, ge=0, lt=0.8)
    eval_every: int = Field(default=500, ge=1)


class _Common(BaseModel):
    model_config = ConfigDict(extra="forbid")
    preset: str = "custom"
    vocab_size: int = Field(default=256, ge=2)
    seq_len: int = Field(default=32, ge=2)
    alpha: float = Field(default=PUBLISHED_ALPHA, gt=0)
    train: TrainSettings = TrainSettings()
    models_per_cell: int = Field(default=4, ge=1)
    seed: int = 0
    device: str = "cpu"
    threads: int = Field(default=1, ge=0)


class MiaExperimentConfig(_Common):
    """Shapes × dataset sizes on uniform tokens for the MIA scaling law.

    ``capacity_multiples`` sets each dataset's size relative to the shape's nominal capacity:
    ``N = ceil(m * alpha * params / (S * log2 V))`` sequences, so ``m`` is the capacity ratio
    (dataset bits / capacity bits). ``threads`` (0 = PyTorch's default) is the intra-op thread
    count; these models are too small to gain from several threads and 1 avoids oversubscribing
    a shared machine.
    """

    shapes: list[Shape]
    capacity_multiples: list[float]

    @model_validator(mode="after")
    def _check(self) -> MiaExperimentConfig:
        if not self.shapes:
            raise ValueError("at least one model shape is needed")
        if not self.capacity_multiples or min(self.capacity_multiples) <= 0:
            raise ValueError("capacity multiples must be positive")
        return self

    def bits_per_sequence(self) -> float:
        return self.seq_len * math.log2(self.vocab_size)

    def sizes_for(self, params: int) -> list[int]:
        h = self.bits_per_sequence()
        return [max(1, math.ceil(m * self.alpha * params / h)) for m in self.capacity_multiples]


class SourceSettings(BaseModel):
    """A seeded first-order Markov source (:class:`memlens.data.synthetic.MarkovSource`)."""

    model_config = ConfigDict(extra="forbid")
    branching: int = Field(default=4, ge=1)
    concentration: float = Field(default=1.0, gt=0)
    seed: int = 0


class DoubleDescentConfig(_Common):
    """One shape, dataset sizes at the given capacity ratios, on a Markov source."""

    shape: Shape
    capacity_ratios: list[float]
    source: SourceSettings = SourceSettings()
    n_test: int = Field(default=2000, ge=10)

    @model_validator(mode="after")
    def _check(self) -> DoubleDescentConfig:
        if not self.capacity_ratios or min(self.capacity_ratios) <= 0:
            raise ValueError("capacity ratios must be positive")
        if self.source.branching > self.vocab_size:
            raise ValueError("source branching must not exceed the vocab size")
        return self


def _mia_preset(name: str) -> dict[str, Any]:
    # quick: head size 4 and a linear decay over the last 60% of the steps, as in the capacity
    # lab (at ratio 1 the models store 2.65-2.93 bits/param instead of 2.24-2.28 in the same
    # time); lr 3e-2 rather than the capacity lab's 8e-2, which memorized less at ratios >= 64.
    if name == "smoke":
        return {
            "preset": "smoke",
            "vocab_size": 64,
            "seq_len": 16,
            "shapes": [{"n_layer": 1, "d_model": 8}],
            "capacity_multiples": [1.0, 16.0, 64.0, 200.0],
            "models_per_cell": 2,
            "train": {"max_steps": 300, "min_steps": 100, "eval_every": 150, "warmup_steps": 20,
                      "lr": 1e-2, "batch_size": 32},
        }  # fmt: skip
    if name == "quick":
        return {
            "preset": "quick",
            "vocab_size": 256,
            "seq_len": 32,
            "shapes": [{"n_layer": 1, "d_model": 8, "n_head": 2},
                       {"n_layer": 1, "d_model": 16, "n_head": 4}],
            "capacity_multiples": [1.0, 4.0, 16.0, 64.0, 256.0],
            "models_per_cell": 2,
            "train": {"max_steps": 2000, "min_steps": 2000, "eval_every": 500, "warmup_steps": 300,
                      "lr": 3e-2, "decay_frac": 0.6, "batch_size": 64},
        }  # fmt: skip
    if name == "full":
        return {
            "preset": "full",
            "vocab_size": 512,
            "seq_len": 64,
            "shapes": [{"n_layer": L, "d_model": d} for L in (1, 2) for d in (16, 32, 64)],
            "capacity_multiples": [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0],
            "train": {"max_steps": 20000, "min_steps": 2000, "eval_every": 1000, "lr": 3e-3,
                      "batch_size": 128, "decay_frac": 0.1},
        }  # fmt: skip
    raise UserError(f"unknown preset {name!r}; choose smoke, quick or full.")


def _dd_preset(name: str) -> dict[str, Any]:
    # quick uses the capacity lab's recipe (head size 4, Adam at 8e-2, linear decay over the last
    # 60% of the steps): these models then store 2.2 bits/param instead of 1.6 in the same time.
    # A noisy chain (16 of 32 successors, 3.4 bits/token of 5): much to memorize, a little to
    # generalize; low-noise chains (branching 4) gave a monotone held-out loss in our trials.
    ratios = [0.1, 0.2, 0.3, 0.45, 0.6, 0.8, 1.0, 3.0, 10.0]
    if name == "smoke":
        return {
            "preset": "smoke",
            "vocab_size": 16,
            "seq_len": 16,
            "shape": {"n_layer": 1, "d_model": 8},
            "source": {"branching": 8},
            "capacity_ratios": [0.1, 1.0, 10.0],
            "n_test": 200,
            "train": {"max_steps": 300, "min_steps": 300, "eval_every": 150, "warmup_steps": 20,
                      "lr": 1e-2, "batch_size": 32},
        }  # fmt: skip
    if name == "quick":
        return {
            "preset": "quick",
            "vocab_size": 32,
            "seq_len": 32,
            "shape": {"n_layer": 1, "d_model": 16, "n_head": 4},
            "source": {"branching": 16},
            "capacity_ratios": ratios,
            "models_per_cell": 5,
            "train": {"max_steps": 2000, "min_steps": 2000, "eval_every": 500, "warmup_steps": 300,
                      "lr": 8e-2, "decay_frac": 0.6, "batch_size": 64},
        }  # fmt: skip
    if name == "full":
        return {
            "preset": "full",
            "vocab_size": 64,
            "seq_len": 64,
            "shape": {"n_layer": 2, "d_model": 32},
            "source": {"branching": 32},
            "capacity_ratios": [0.05, 0.1, 0.15, 0.2, 0.3, 0.45, 0.6, 0.8, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0],
            "n_test": 5000,
            "train": {"max_steps": 20000, "min_steps": 20000, "eval_every": 1000, "lr": 3e-3,
                      "batch_size": 128},
        }  # fmt: skip
    raise UserError(f"unknown preset {name!r}; choose smoke, quick or full.")


PRESETS = ("smoke", "quick", "full")


def _build(cls: type[BaseModel], base: dict[str, Any], overrides: dict[str, Any]) -> Any:
    base = dict(base)
    train_over = {k: overrides.pop(k) for k in list(overrides) if k in TrainSettings.model_fields}
    base["train"] = {
        **base.get("train", {}),
        **{k: v for k, v in train_over.items() if v is not None},
    }
    base.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return cls.model_validate(base)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err.get("loc", ())) or "config"
        msg = err.get("msg", "invalid value").removeprefix("Value error, ")
        raise UserError(f"invalid experiment config ({loc}): {msg}.") from None


def mia_config(preset: str = "quick", **overrides: Any) -> MiaExperimentConfig:
    """A :class:`MiaExperimentConfig` from a preset (smoke, quick, full) and overrides."""
    return _build(MiaExperimentConfig, _mia_preset(preset), overrides)


def double_descent_config(preset: str = "quick", **overrides: Any) -> DoubleDescentConfig:
    """A :class:`DoubleDescentConfig` from a preset (smoke, quick, full) and overrides."""
    return _build(DoubleDescentConfig, _dd_preset(preset), overrides)


# --------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    import torch

    old = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _train_config(t: TrainSettings) -> Any:
    return t.to_train_config()


def _chunks(items: list[int], size: int) -> list[list[int]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _stack(tensors: list[Any]) -> Any:
    """Stack ``[n_k, S]`` tensors into ``[K, max n_k, S]`` (zero padding beyond each n_k)."""
    import torch

    n_max = max(t.shape[0] for t in tensors)
    return torch.stack([torch.nn.functional.pad(t, (0, 0, 0, n_max - t.shape[0])) for t in tensors])


def _slice_scores(scores: Any, k: int, n: int) -> Any:
    from memlens.bits import TokenScores

    return TokenScores(log2p=scores.log2p[k, :n], mask=scores.mask[k, :n])


def _cell_key(kind: str, ident: dict[str, Any]) -> str:
    from memlens.store import config_hash

    return f"{kind}-{config_hash(ident)}"


# --------------------------------------------------------------------------------------------
# Membership-inference scaling experiment
# --------------------------------------------------------------------------------------------


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
    config: MiaExperimentConfig, cell: dict[str, Any], progress: Progress | None = None
) -> dict[str, Any]:
    """Train one cell's models, attack each, and return its JSON-ready result."""
    import torch

    from memlens.bits import gpt_forward, score_tokens
    from memlens.data.synthetic import uniform_sequences
    from memlens.mia.attacks import AttackInputs, loss_attack
    from memlens.mia.metrics import best_threshold, roc_auc
    from memlens.models.gpt import GPT, GPTConfig
    from memlens.train import pick_device, train_to_saturation

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
    label = f"L={shape.n_layer} d={shape.d_model} N={','.join(map(str, sizes))}"
    cb = (lambda step, _totals: progress(label, step, config.train.max_steps)) if progress else None
    res = train_to_saturation(
        model,
        members,
        sizes,
        _train_config(config.train),
        entropy_bits=h_seq,
        first_token_bits=math.log2(V),
        seed=base + cell["size_index"][0],
        device=dev,
        progress=cb,
    )
    model.eval()
    fwd = gpt_forward(model)
    s_mem = score_tokens(fwd, members, device=dev, batch_size=256)
    s_non = score_tokens(fwd, nonmembers, device=dev, batch_size=256)
    runs = []
    for k, n in enumerate(sizes):
        a_mem = loss_attack(AttackInputs(target=_slice_scores(s_mem, k, n)))
        a_non = loss_attack(AttackInputs(target=_slice_scores(s_non, k, n)))
        scores = np.concatenate([a_mem, a_non])
        labels = np.concatenate([np.ones(n, dtype=np.int8), np.zeros(n, dtype=np.int8)])
        bt = best_threshold(scores, labels)
        nll_mem = s_mem.nll_bits[k, :n] + math.log2(V)
        nll_non = s_non.nll_bits[k, :n] + math.log2(V)
        cap = config.alpha * P
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


def _mia_cell_task(
    config: MiaExperimentConfig, cell: dict[str, Any], progress: Callable[[Any], None]
) -> dict[str, Any]:
    """:func:`run_mia_cell` as a :func:`memlens.scale.run_cells` cell (progress as one payload)."""
    return run_mia_cell(config, cell, lambda label, step, total: progress((label, step, total)))


def _run_mia_scaled(
    rd: Any,
    config: MiaExperimentConfig,
    cells: list[dict[str, Any]],
    progress: Progress | None,
    on_cell: Callable[[int, int, bool], None] | None,
    **scale: Any,
) -> tuple[list[dict[str, Any]], int]:
    """The unfinished cells through :func:`memlens.scale.run_cells`, each saved as it arrives."""
    from memlens.scale import run_cells

    if scale.get("backend") not in ("local", "ray"):
        raise UserError(f"unknown backend {scale.get('backend')!r}; choose local or ray.")
    results: list[Any] = [rd.load_cell(c["key"]) for c in cells]
    todo = [i for i, r in enumerate(results) if r is None]
    finished = len(cells) - len(todo)

    def save(j: int, r: dict[str, Any]) -> None:
        nonlocal finished
        rd.save_cell(cells[todo[j]]["key"], r)
        results[todo[j]] = r
        finished += 1
        if on_cell is not None:
            on_cell(finished, len(cells), True)

    relay = (lambda _j, payload: progress(*payload)) if progress is not None else None
    if todo:  # a finished run does not start Ray
        run_cells(
            [(_mia_cell_task, (config, cells[i])) for i in todo],
            on_result=save,
            on_progress=relay,
            **scale,
        )
    return results, len(cells) - len(todo)


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


def run_mia(
    config: MiaExperimentConfig,
    out: str | Path,
    *,
    progress: Progress | None = None,
    on_cell: Callable[[int, int, bool], None] | None = None,
    backend: str = "local",
    ray_address: str | None = None,
    ray_cpus_per_cell: float = 1,
    ray_gpus_per_cell: float = 0,
) -> dict[str, Any]:
    """Run (or resume) the MIA scaling experiment into ``out``; return ``mia_experiment.json``.

    ``backend="ray"`` runs the unfinished cells as Ray tasks (:func:`memlens.scale.run_cells`;
    ``ray_address`` joins a cluster, else a local Ray is started); every cell seeds itself, so the
    numbers are the local backend's.

    Writes ``manifest.json``, ``cells/*.json`` (one per finished cell), ``runs.csv``,
    ``mia_experiment.json`` (runs, fitted law with CIs, published constants) and
    ``mia_experiment.png``. A rerun with the same config and ``out`` reuses finished cells.
    """
    import pandas as pd

    from memlens.scale import check_backend
    from memlens.store import RunDir

    check_backend(backend, ray_address)
    rd = RunDir(out, "laws-mia-experiment", config.model_dump(), config.seed)
    rd.write_manifest(status="running")
    cells = mia_cells(config)
    start = time.perf_counter()
    results, reused = [], 0
    if backend != "local":
        results, reused = _run_mia_scaled(
            rd, config, cells, progress, on_cell, backend=backend, ray_address=ray_address,
            ray_num_cpus=ray_cpus_per_cell, ray_num_gpus=ray_gpus_per_cell,
        )  # fmt: skip
    else:
        with _threads(config.threads):
            for i, cell in enumerate(cells):
                r = rd.load_cell(cell["key"])
                if r is None:
                    r = run_mia_cell(config, cell, progress)
                    rd.save_cell(cell["key"], r)
                else:
                    reused += 1
                if on_cell is not None:
                    on_cell(i + 1, len(cells), r is not None)
                results.append(r)
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
    summary = {
        "experiment": "MIA scaling law on uniform tokens (Morris et al. 2025, arXiv:2505.24832)",
        "attack": "loss threshold (score = -mean NLL bits/token, higher = member); F1 at the threshold "
        "maximizing balanced accuracy (oracle), AUC via scikit-learn",
        "nonmembers": "as many fresh sequences from the same uniform source as members",
        "capacity": f"alpha * params with alpha = {config.alpha} bits/param",
        "first_token": "coded at log2(V) bits; never counted as memorized",
        "form": LAW_FORM,
        "law_note": LAW_NOTE,
        "vocab_size": config.vocab_size,
        "seq_len": config.seq_len,
        "bits_per_sequence": config.bits_per_sequence(),
        "preset": config.preset,
        "seed": config.seed,
        **fitted,
        "published_constants": CORRECTED.to_dict(),
        "shapes": per_shape,
        "all_saturated": all(r["saturated"] for r in runs),
        "train_seconds": sum(r["seconds"] for r in results),
        "wall_seconds_this_invocation": time.perf_counter() - start,
        "reused_cells": reused,
        "runs": runs,
    }
    rd.write_table("runs.csv", pd.DataFrame(runs))
    rd.write_json("mia_experiment.json", summary)
    rd.save_figure("mia_experiment.png", plot_mia_experiment(summary))
    rd.write_manifest(status="finished", cells=len(cells), reused_cells=reused)
    return summary


def plot_mia_experiment(summary: dict[str, Any]) -> Any:
    """Left: F1 and AUC against capacity ratio (ratio 1 marked). Right: F1 against |D|/Capacity
    with the fitted law and the corrected published law."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = summary["runs"]
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
    if summary.get("fit"):
        c = MiaLawConstants(**summary["fit"]["constants"])
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


# --------------------------------------------------------------------------------------------
# Double descent
# --------------------------------------------------------------------------------------------


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
    sizes = [max(1, round(r * config.alpha * P / h_seq)) for r in config.capacity_ratios]
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
    config: DoubleDescentConfig, cell: dict[str, Any], progress: Progress | None = None
) -> dict[str, Any]:
    """Train one cell's models on the Markov source and measure train and held-out code lengths."""
    import torch

    from memlens.bits import gpt_forward, score_tokens
    from memlens.models.gpt import GPT, GPTConfig
    from memlens.train import pick_device, train_to_saturation

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
    label = f"N={','.join(map(str, sizes))}"
    cb = (lambda step, _t: progress(label, step, config.train.max_steps)) if progress else None
    res = train_to_saturation(
        model, data, sizes, _train_config(config.train), entropy_bits=H,
        first_token_bits=math.log2(V), seed=base + idx[0], device=dev, progress=cb,
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
                "capacity_bits": config.alpha * P,
                "capacity_ratio": d_bits / (config.alpha * P),
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


def run_double_descent(
    config: DoubleDescentConfig,
    out: str | Path,
    *,
    progress: Progress | None = None,
    on_cell: Callable[[int, int, bool], None] | None = None,
) -> dict[str, Any]:
    """Run (or resume) the double-descent experiment into ``out``; return ``double_descent.json``.

    Writes ``manifest.json``, ``cells/*.json``, ``runs.csv``, ``double_descent.json`` and
    ``double_descent.png`` (held-out and train code length per token against capacity ratio,
    ratio 1 and the source's entropy rate marked; memorized bits on the right).
    """
    import pandas as pd

    from memlens.store import RunDir

    rd = RunDir(out, "laws-double-descent", config.model_dump(), config.seed)
    rd.write_manifest(status="running")
    cells = dd_cells(config)
    start = time.perf_counter()
    results, reused = [], 0
    with _threads(config.threads):
        for i, cell in enumerate(cells):
            r = rd.load_cell(cell["key"])
            if r is None:
                r = run_dd_cell(config, cell, progress)
                rd.save_cell(cell["key"], r)
            else:
                reused += 1
            if on_cell is not None:
                on_cell(i + 1, len(cells), r is not None)
            results.append(r)
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
    summary = {
        "experiment": "double descent on a seeded Markov source (Morris et al. 2025, arXiv:2505.24832)",
        "capacity": f"alpha * params = {config.alpha} * {P:,} = {config.alpha * P:,.0f} bits",
        "capacity_ratio": "dataset bits (exact code length under the source) / capacity bits",
        "loss": "held-out code length per predicted token (bits), fresh samples from the source; "
        "the first token is not predicted",
        "vocab_size": config.vocab_size,
        "seq_len": config.seq_len,
        "shape": {**config.shape.model_dump(), "params": P},
        "source": {
            **config.source.model_dump(),
            "entropy_rate_bits": results[0]["entropy_rate_bits"],
        },
        "preset": config.preset,
        "seed": config.seed,
        "measured_capacity_bits": measured,
        "measured_bits_per_param": measured / P,
        "peak": peak,
        "all_saturated": all(r["saturated"] for r in runs),
        "train_seconds": sum(r["seconds"] for r in results),
        "wall_seconds_this_invocation": time.perf_counter() - start,
        "reused_cells": reused,
        "runs": runs,
    }
    rd.write_table("runs.csv", pd.DataFrame(runs))
    rd.write_json("double_descent.json", summary)
    rd.save_figure("double_descent.png", plot_double_descent(summary))
    rd.write_manifest(status="finished", cells=len(cells), reused_cells=reused)
    return summary


def plot_double_descent(summary: dict[str, Any]) -> Any:
    """Held-out and train loss (bits/token) and memorized bits against capacity ratio."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = summary["runs"]
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
