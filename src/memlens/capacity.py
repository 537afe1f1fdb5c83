"""The capacity lab: how many bits can a GPT of a given shape store?

Reproduces the experiment of Morris et al. 2025, "How much do language models memorize?"
(arXiv:2505.24832), §3-4, on uniform random tokens where every bit a model knows about its
training set is memorization:

1. For each model shape and each dataset size N, draw N sequences of S tokens uniformly from V.
   A sequence holds ``H(x) = S * log2 V`` bits (the first token is coded uniformly and can never
   count as memorized).
2. Train the model to saturation (all dataset sizes of one shape train together as one batched
   stack of models, see :mod:`memlens.train`).
3. Memorized bits of a run = ``sum_x max(0, H(x) - NLL_bits(x | model))``.
4. Capacity of a shape = max over N of memorized bits; α = least-squares slope of capacity on
   parameter count through the origin (plus each model's own ratio). Predicted memorization of a
   run: ``min(α * P, H(dataset))``.

Every capacity is a lower bound (gradient descent need not find the best model): each run
records whether it saturated.
"""

from __future__ import annotations

import math
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from memlens.errors import UserError

PUBLISHED_ALPHA = 3.64  # bits/param, the headline figure of Morris et al. 2025

# Published 16-model table (capacity in bits, fp32) is summarized in docs; the paper grid:
PAPER_LAYERS = (1, 2, 4, 8)
PAPER_WIDTHS = (32, 64, 128, 256)


class Shape(BaseModel):
    """One model shape: ``n_layer`` blocks of width ``d_model`` with ``n_head`` heads.

    ``n_head = 0`` derives the head count from the sweep's ``head_dim``; ``steps`` (optional)
    overrides the sweep's step budget for this shape.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    n_layer: int = Field(ge=1)
    d_model: int = Field(ge=1)
    n_head: int = Field(default=0, ge=0)
    steps: int | None = Field(default=None, ge=1)


class TrainSettings(BaseModel):
    """Optimizer and stopping settings (see :class:`memlens.train.TrainConfig`)."""

    model_config = ConfigDict(extra="forbid")
    lr: float = Field(default=1e-2, gt=0)
    batch_size: int = Field(default=64, ge=1)
    max_steps: int = Field(default=6000, ge=1)
    min_steps: int = Field(default=500, ge=1)
    warmup_steps: int = Field(default=100, ge=0)
    decay_frac: float = Field(default=0.3, ge=0, lt=0.8)
    final_lr_frac: float = Field(default=0.1, ge=0, le=1)
    beta2: float = Field(default=0.98, gt=0, lt=1)
    eval_every: int = Field(default=250, ge=1)
    plateau_frac: float = Field(default=0.2, gt=0, lt=1)
    plateau_tol: float = Field(default=0.01, gt=0)

    def to_train_config(self, max_steps: int | None = None, precision: str = "fp32") -> Any:
        """The :class:`memlens.train.TrainConfig` for these settings (``max_steps`` overrides)."""
        from memlens.train import TrainConfig

        fields = self.model_dump()
        if max_steps is not None:
            fields["max_steps"] = max_steps
        return TrainConfig(**fields, precision=precision)


class CapacityConfig(BaseModel):
    """A capacity sweep: model shapes × dataset sizes on uniform tokens.

    Dataset sizes are given either explicitly (``n_sequences``, the same list for every shape) or
    as multiples of each shape's *expected* capacity (``capacity_multiples``): N is chosen so that
    the dataset holds ``m * alpha_prior * params`` bits.
    """

    model_config = ConfigDict(extra="forbid")
    preset: str = "custom"
    vocab_size: int = Field(default=2048)
    seq_len: int = Field(default=64)
    shapes: list[Shape]
    capacity_multiples: list[float] | None = None
    n_sequences: list[int] | None = None
    alpha_prior: float = Field(default=PUBLISHED_ALPHA, gt=0)
    steps_reference_params: int | None = Field(default=None, ge=1)
    steps_exponent: float = Field(default=1.0, ge=0, le=2)
    head_dim: int = Field(default=0, ge=0)
    train: TrainSettings = TrainSettings()
    precision: Literal["fp32", "bf16"] = "fp32"
    seed: int = 0
    device: str = "auto"
    time_budget_s: float | None = None

    @field_validator("vocab_size")
    @classmethod
    def _v(cls, v: int) -> int:
        if v < 2:
            raise ValueError(f"vocab size must be at least 2, got {v}")
        return v

    @field_validator("seq_len")
    @classmethod
    def _s(cls, v: int) -> int:
        if v < 2:
            raise ValueError(f"sequence length must be at least 2, got {v}")
        return v

    @model_validator(mode="after")
    def _sizes(self) -> CapacityConfig:
        if not self.shapes:
            raise ValueError("at least one model shape is needed")
        if (self.capacity_multiples is None) == (self.n_sequences is None):
            raise ValueError("give exactly one of capacity_multiples or n_sequences")
        if self.n_sequences is not None and (not self.n_sequences or min(self.n_sequences) < 1):
            raise ValueError("every dataset size N must be at least 1")
        if self.capacity_multiples is not None and (
            not self.capacity_multiples or min(self.capacity_multiples) <= 0
        ):
            raise ValueError("capacity multiples must be positive")
        for s in self.shapes:
            if s.n_head == 0 and self.head_dim and s.d_model % self.head_dim:
                raise ValueError(
                    f"d_model {s.d_model} is not divisible by head_dim {self.head_dim}"
                )
            head = self.n_head_for(s)
            if s.d_model % head:
                raise ValueError(f"d_model {s.d_model} is not divisible by n_head {s.n_head}")
        return self

    def n_head_for(self, shape: Shape) -> int:
        """Heads of a shape: its own ``n_head``, else ``d_model / head_dim``, else GPTConfig's
        automatic choice (head size 16 when ``d_model`` allows it, otherwise one head)."""
        if shape.n_head:
            return shape.n_head
        if self.head_dim:
            return max(1, shape.d_model // self.head_dim)
        return max(1, shape.d_model // 16) if shape.d_model % 16 == 0 else 1

    def gpt_config(self, shape: Shape) -> Any:
        """The :class:`memlens.models.gpt.GPTConfig` of one shape of this sweep."""
        from memlens.models.gpt import GPTConfig

        return GPTConfig(
            self.vocab_size, self.seq_len, shape.n_layer, shape.d_model, self.n_head_for(shape)
        )

    def steps_for_shape(self, shape: Shape) -> int:
        """Step budget of one shape: its own ``steps``, else :meth:`steps_for` its parameters."""
        if shape.steps is not None:
            return shape.steps
        return self.steps_for(self.gpt_config(shape).n_params)

    def steps_for(self, params: int) -> int:
        """Step budget for a shape: ``train.max_steps``, or, with ``steps_reference_params`` set,
        ``max_steps * (reference / params) ** steps_exponent`` (never fewer than ``max_steps``):
        smaller shapes are cheaper per step, so they get more steps (exponent 1 equalizes the
        ``6 * params`` FLOPs per token; on a CPU the softmax over V does not shrink with the model,
        so 0.5 is closer to equal time). A shape's own ``steps`` overrides this (the quick preset
        sets each shape's budget from its measured step time)."""
        if self.steps_reference_params is None:
            return self.train.max_steps
        ratio = self.steps_reference_params / params
        scaled = self.train.max_steps * ratio**self.steps_exponent
        return max(self.train.max_steps, int(round(scaled / 100.0)) * 100)

    def bits_per_sequence(self) -> float:
        return self.seq_len * math.log2(self.vocab_size)

    def sizes_for(self, params: int) -> list[int]:
        """Dataset sizes (sequences) for a model with ``params`` parameters."""
        if self.n_sequences is not None:
            return list(self.n_sequences)
        h = self.bits_per_sequence()
        return [
            max(1, math.ceil(m * self.alpha_prior * params / h))
            for m in self.capacity_multiples or []
        ]


def _preset(name: str) -> dict[str, Any]:
    if name == "smoke":
        return {
            "preset": "smoke",
            "vocab_size": 64,
            "seq_len": 16,
            "head_dim": 4,
            "shapes": [{"n_layer": 1, "d_model": 16}, {"n_layer": 1, "d_model": 32}],
            "capacity_multiples": [0.6, 1.2],
            "train": {"max_steps": 900, "min_steps": 300, "eval_every": 100, "warmup_steps": 50,
                      "lr": 1e-2, "batch_size": 32},
        }  # fmt: skip
    if name == "quick":
        # Four shapes at the published S = 64 (V = 512 keeps the softmax cheap on a CPU), head size
        # 4 (more heads store more bits at the same parameter count; README "the recipe"), and a
        # step budget per shape of about 3.5 CPU-minutes: about 8 minutes on two CPU cores (one
        # worker process per core).
        return {
            "preset": "quick",
            "vocab_size": 512,
            "seq_len": 64,
            "head_dim": 4,
            "shapes": [
                # listed so that two workers finish together: (16, 32) and (24, L2 24)
                {"n_layer": 1, "d_model": 16, "steps": 5400},
                {"n_layer": 1, "d_model": 24, "steps": 4400},
                {"n_layer": 1, "d_model": 32, "steps": 4000},
                {"n_layer": 2, "d_model": 24, "steps": 2500},
            ],
            "capacity_multiples": [1.0, 1.3],
            "train": {
                "max_steps": 3000,
                "eval_every": 100,
                "lr": 8e-2,
                "batch_size": 64,
                "warmup_steps": 300,
                "decay_frac": 0.6,
            },
        }
    if name == "paper":
        return {
            "preset": "paper",
            "vocab_size": 2048,
            "seq_len": 64,
            "shapes": [{"n_layer": L, "d_model": d} for L in PAPER_LAYERS for d in PAPER_WIDTHS],
            "capacity_multiples": [0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0],
            "train": {"max_steps": 1_000_000, "min_steps": 20_000, "batch_size": 2048, "lr": 1e-3,
                      "eval_every": 2000, "warmup_steps": 1000, "decay_frac": 0.1},
        }  # fmt: skip
    raise UserError(f"unknown preset {name!r}; choose smoke, quick or paper.")


PRESETS = ("smoke", "quick", "paper")


def _validation_message(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(x) for x in err.get("loc", ())) or "config"
    msg = err.get("msg", "invalid value").removeprefix("Value error, ")
    return f"invalid capacity config ({loc}): {msg}."


def load_config(
    preset: str | None = "quick", config_file: str | Path | None = None, **overrides: Any
) -> CapacityConfig:
    """Build a :class:`CapacityConfig` from a preset, a TOML/YAML file and keyword overrides.

    ``overrides`` with value ``None`` are ignored. Raises :class:`UserError` on bad input.
    """
    base: dict[str, Any] = _preset(preset) if preset else {}
    if config_file is not None:
        path = Path(config_file)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(
                f"cannot read config file {path}: {getattr(exc, 'strerror', None) or exc}."
            ) from None
        try:
            if path.suffix in (".yaml", ".yml"):
                import yaml  # type: ignore[import-untyped]

                loaded = yaml.safe_load(text) or {}
            else:
                loaded = tomllib.loads(text)
        except Exception as exc:  # noqa: BLE001 - any parse error is the user's file
            raise UserError(f"cannot parse config file {path}: {exc}.") from None
        if not isinstance(loaded, dict):
            raise UserError(f"config file {path} must hold a table of settings.")
        train = {**base.get("train", {}), **loaded.pop("train", {})}
        base = {**base, **loaded, "train": train}
        if "n_sequences" in loaded:
            base.pop("capacity_multiples", None)
        if "capacity_multiples" in loaded:
            base.pop("n_sequences", None)
        base.setdefault("preset", "custom")
    train_over = {k: overrides.pop(k) for k in list(overrides) if k in TrainSettings.model_fields}
    if train_over.get("max_steps") is not None:  # one budget for every shape, as asked
        shapes = base.get("shapes")
        if isinstance(shapes, list):
            base["shapes"] = [{**s, "steps": None} if isinstance(s, dict) else s for s in shapes]
    base["train"] = {
        **base.get("train", {}),
        **{k: v for k, v in train_over.items() if v is not None},
    }
    base.update({k: v for k, v in overrides.items() if v is not None})
    if overrides.get("n_sequences") is not None:
        base.pop("capacity_multiples", None)
    try:
        return CapacityConfig.model_validate(base)
    except ValidationError as exc:
        raise UserError(_validation_message(exc)) from None


# --------------------------------------------------------------------------------------------
# Fitting
# --------------------------------------------------------------------------------------------


def fit_alpha(params: np.ndarray, capacity_bits: np.ndarray) -> dict[str, float]:
    """α as the least-squares slope of capacity on parameters through the origin.

    ``alpha = sum(P_i C_i) / sum(P_i^2)``; also the mean of the per-model ratios ``C_i / P_i`` and
    the slope's standard error. Units: bits per parameter.
    """
    P = np.asarray(params, dtype=np.float64)
    C = np.asarray(capacity_bits, dtype=np.float64)
    alpha = float((P * C).sum() / (P * P).sum())
    ratios = C / P
    n = len(P)
    if n > 1:
        resid = C - alpha * P
        se = float(math.sqrt((resid**2).sum() / (n - 1) / (P * P).sum()))
    else:
        se = float("nan")
    return {"alpha": alpha, "alpha_se": se, "mean_ratio": float(ratios.mean())}


# --------------------------------------------------------------------------------------------
# The experiment
# --------------------------------------------------------------------------------------------


def _cell_key(config: CapacityConfig, shape: Shape, sizes: list[int]) -> str:
    from memlens.store import config_hash

    ident = {
        "V": config.vocab_size,
        "S": config.seq_len,
        "shape": shape.model_dump(),
        "sizes": sizes,
        "train": config.train.model_dump(),
        "n_head": config.n_head_for(shape),
        "steps": config.steps_for_shape(shape),
        "precision": config.precision,
        "seed": config.seed,
    }
    return f"L{shape.n_layer}-d{shape.d_model}-{config_hash(ident)}"


def train_shape(
    config: CapacityConfig,
    shape: Shape,
    shape_index: int,
    device: str | None = None,
    progress: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    """Train one shape on all its dataset sizes at once; return the cell's result dict.

    ``progress`` (optional) receives ``(step, best memorized bits so far)`` after each evaluation.
    """
    import torch

    from memlens.data.synthetic import uniform_sequences
    from memlens.models.gpt import GPT
    from memlens.train import pick_device, train_to_saturation

    dev = pick_device(device or config.device)
    gcfg = config.gpt_config(shape)
    P = gcfg.n_params
    sizes = config.sizes_for(P)
    K = len(sizes)
    base_seed = config.seed * 1_000_003 + shape_index * 1009
    data = torch.stack(
        [
            torch.nn.functional.pad(
                uniform_sequences(config.vocab_size, config.seq_len, n, seed=base_seed + k),
                (0, 0, 0, max(sizes) - n),
            )
            for k, n in enumerate(sizes)
        ]
    )
    gen = torch.Generator().manual_seed(base_seed)
    model = GPT(gcfg, n_models=K, generator=gen).to(dev)
    tcfg = config.train.to_train_config(
        max_steps=config.steps_for_shape(shape), precision=config.precision
    )
    h_seq = config.bits_per_sequence()
    res = train_to_saturation(
        model,
        data,
        sizes,
        tcfg,
        entropy_bits=h_seq,
        first_token_bits=math.log2(config.vocab_size),
        seed=base_seed,
        device=dev,
        progress=(lambda step, totals: progress((step, max(totals)))) if progress else None,
        time_budget_s=config.time_budget_s,
    )
    runs = []
    for k, n in enumerate(sizes):
        c = res.curves[k]
        runs.append(
            {
                "n_sequences": n,
                "dataset_bits": n * h_seq,
                "memorized_bits": res.final_memorized_bits[k],
                "steps": res.steps,
                "saturated": bool(res.saturated[k]),
                "seconds": res.seconds,
                "curve": {
                    "step": c.steps,
                    "seconds": c.seconds,
                    "memorized_bits": c.memorized_bits,
                    "nll_bits_per_token": c.nll_bits_per_token,
                },
            }
        )
    best = max(range(K), key=lambda k: runs[k]["memorized_bits"])
    return {
        "n_layer": shape.n_layer,
        "d_model": shape.d_model,
        "n_head": gcfg.n_head,
        "params": P,
        "capacity_bits": runs[best]["memorized_bits"],
        "bits_per_param": runs[best]["memorized_bits"] / P,
        # the capacity is the max over N; it is saturated when every run of the shape is
        "saturated": all(r["saturated"] for r in runs),
        "runs": runs,
        "seconds": res.seconds,
    }


def summarize(
    config: CapacityConfig, models: list[dict[str, Any]], wall_seconds: float
) -> dict[str, Any]:
    """Fit α over the finished shapes and assemble ``capacity.json``."""
    params = np.array([m["params"] for m in models], dtype=float)
    caps = np.array([m["capacity_bits"] for m in models], dtype=float)
    fit = fit_alpha(params, caps)
    alpha = fit["alpha"]
    out_models = []
    for m in models:
        runs = []
        for r in m["runs"]:
            pred = min(alpha * m["params"], r["dataset_bits"])
            runs.append({**{k: v for k, v in r.items() if k != "curve"}, "predicted_bits": pred})
        out_models.append(
            {**{k: v for k, v in m.items() if k not in ("runs", "seconds")}, "runs": runs}
        )
    return {
        "alpha_bits_per_param": alpha,
        "alpha_method": "least-squares slope of capacity on params through the origin",
        "alpha_se": fit["alpha_se"],
        "alpha_mean_per_model": fit["mean_ratio"],
        "published_alpha": {"headline": PUBLISHED_ALPHA, "fp32_slope": 3.88, "bf16_slope": 3.60,
                            "fp32_mean_per_model": 3.83},
        "vocab_size": config.vocab_size,
        "seq_len": config.seq_len,
        "bits_per_sequence": config.bits_per_sequence(),
        "first_token": "coded uniformly at log2(V) bits; never counted as memorized",
        "precision": config.precision,
        "preset": config.preset,
        "seed": config.seed,
        "all_saturated": all(m["saturated"] for m in models),
        "wall_seconds": wall_seconds,
        "models": out_models,
    }  # fmt: skip


def run(
    config: CapacityConfig,
    out: str | Path,
    *,
    console: Any | None = None,
    backend: str = "local",
    workers: int | None = None,
    ray_address: str | None = None,
    ray_cpus_per_cell: float = 1,
    ray_gpus_per_cell: float = 0,
) -> dict[str, Any]:
    """Run (or resume) a capacity sweep into ``out`` and return ``capacity.json``'s content.

    Each shape is one cell (all its dataset sizes train together); cells run on ``backend``
    (``local``: one worker process per core by default; ``ray``: one Ray task per cell, see
    :mod:`memlens.scale`; each task asks Ray for ``ray_cpus_per_cell`` CPUs and
    ``ray_gpus_per_cell`` GPUs, fractions allowed). Finished cells are stored at once and reused when the same command is
    rerun with the same ``out``; a finished sweep returns at once.
    """
    from memlens.scale import check_backend, run_cells
    from memlens.store import RunDir

    check_backend(backend, ray_address)
    rd = RunDir(out, "capacity", config.model_dump(), config.seed)
    previous_wall = 0.0
    old = rd.load_cell("_wall")
    if old:
        previous_wall = float(old.get("wall_seconds", 0.0))
    rd.write_manifest(status="running")
    start = time.perf_counter()
    params = [config.gpt_config(s).n_params for s in config.shapes]
    keys = [
        _cell_key(config, s, config.sizes_for(p))
        for s, p in zip(config.shapes, params, strict=True)
    ]
    results: list[dict[str, Any] | None] = [rd.load_cell(k) for k in keys]
    reused = sum(r is not None for r in results)
    todo = [i for i, r in enumerate(results) if r is None]
    if console is not None and reused:
        console.print(f"resuming: {reused} of {len(keys)} shapes already finished in {rd.path}")

    def save(j: int, r: dict[str, Any]) -> None:
        i = todo[j]
        rd.save_cell(keys[i], r)
        results[i] = r
        rd.save_cell("_wall", {"wall_seconds": previous_wall + time.perf_counter() - start})

    cells = [(train_shape, (config, config.shapes[i], i)) for i in todo]
    if todo:
        with _progress(
            console, config, [config.shapes[i] for i in todo], [params[i] for i in todo]
        ) as on_progress:
            run_cells(
                cells,
                backend=backend,
                workers=workers,
                on_result=save,
                on_progress=on_progress,
                ray_address=ray_address,
                ray_num_cpus=ray_cpus_per_cell,
                ray_num_gpus=ray_gpus_per_cell,
            )

    finished = [r for r in results if r is not None]
    wall = previous_wall + time.perf_counter() - start
    rd.save_cell("_wall", {"wall_seconds": wall})
    summary = summarize(config, finished, wall_seconds=wall)
    summary["reused_cells"] = reused
    summary["backend"] = backend
    write_outputs(rd, summary, finished)
    rd.write_manifest(status="finished", reused_cells=reused, cells=len(keys), backend=backend)
    return summary


class _progress:
    """Rich progress bars, one per shape, fed by progress reports from the cells."""

    def __init__(
        self, console: Any | None, config: CapacityConfig, shapes: list[Shape], params: list[int]
    ):
        self.console, self.config, self.shapes, self.params = console, config, shapes, params
        self.prog = None

    def __enter__(self) -> Callable[[int, Any], None]:
        if self.console is None:
            return lambda i, payload: None
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.prog = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("step {task.completed:>6.0f}"),
            TextColumn("{task.fields[bpp]}"),
            TimeElapsedColumn(),
            console=self.console,
        )
        self.prog.__enter__()
        self.tasks = [
            self.prog.add_task(
                f"[bold]L={s.n_layer} d={s.d_model} h={self.config.n_head_for(s)}[/] ({p:,} params)",
                total=self.config.steps_for_shape(s),
                bpp="",
            )
            for s, p in zip(self.shapes, self.params, strict=True)
        ]

        def update(i: int, payload: Any) -> None:
            step, best = payload
            self.prog.update(
                self.tasks[i], completed=step, bpp=f"best {best / self.params[i]:.2f} bits/param"
            )

        return update

    def __exit__(self, *exc: Any) -> None:
        if self.prog is not None:
            self.prog.__exit__(*exc)


def write_outputs(rd: Any, summary: dict[str, Any], models: list[dict[str, Any]]) -> None:
    """Write capacity.json, runs.csv, curves.csv and the two plots."""
    import pandas as pd

    rows, curve_rows = [], []
    for m in models:
        for r in m["runs"]:
            rows.append(
                {
                    "n_layer": m["n_layer"],
                    "d_model": m["d_model"],
                    "params": m["params"],
                    "n_sequences": r["n_sequences"],
                    "dataset_bits": r["dataset_bits"],
                    "memorized_bits": r["memorized_bits"],
                    "predicted_bits": min(
                        summary["alpha_bits_per_param"] * m["params"], r["dataset_bits"]
                    ),
                    "steps": r["steps"],
                    "saturated": r["saturated"],
                    "seconds": r["seconds"],
                }
            )
            c = r["curve"]
            for j in range(len(c["step"])):
                curve_rows.append(
                    {
                        "n_layer": m["n_layer"],
                        "d_model": m["d_model"],
                        "params": m["params"],
                        "n_sequences": r["n_sequences"],
                        "step": c["step"][j],
                        "seconds": c["seconds"][j],
                        "memorized_bits": c["memorized_bits"][j],
                        "nll_bits_per_token": c["nll_bits_per_token"][j],
                    }
                )
    rd.write_table("runs.csv", pd.DataFrame(rows))
    rd.write_table("curves.csv", pd.DataFrame(curve_rows))
    rd.write_json("capacity.json", summary)
    plot_capacity(rd, summary, models)


def plot_capacity(rd: Any, summary: dict[str, Any], models: list[dict[str, Any]]) -> None:
    """Memorized vs dataset bits per shape (with plateau and H(X) diagonal); capacity vs params."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    alpha = summary["alpha_bits_per_param"]
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    colors = plt.cm.viridis(np.linspace(0, 0.9, max(1, len(models))))
    xmax = max(r["dataset_bits"] for m in models for r in m["runs"]) * 1.1
    ax.plot([0, xmax], [0, xmax], "k:", lw=1, label="H(X) (all data memorized)")
    for m, col in zip(models, colors, strict=True):
        xs = [r["dataset_bits"] for r in m["runs"]]
        ys = [r["memorized_bits"] for r in m["runs"]]
        ax.plot(
            xs, ys, "o-", color=col, label=f"L={m['n_layer']} d={m['d_model']} ({m['params']:,})"
        )
        ax.axhline(m["capacity_bits"], color=col, lw=0.8, ls="--")
        for x, y, r in zip(xs, ys, m["runs"], strict=True):
            if not r["saturated"]:
                ax.plot([x], [y], "x", color="red", ms=8)
    ax.set_xlabel("dataset bits H(X)")
    ax.set_ylabel("memorized bits")
    ax.set_title(f"Memorization plateaus at capacity (red x: not saturated); α = {alpha:.2f}")
    ax.legend(fontsize=7)
    rd.save_figure("memorized_vs_dataset.png", fig)

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    P = np.array([m["params"] for m in models], dtype=float)
    C = np.array([m["capacity_bits"] for m in models], dtype=float)
    ax.scatter(P, C, c="C0", zorder=3, label="measured capacity")
    xs = np.linspace(0, P.max() * 1.1, 50)
    ax.plot(xs, alpha * xs, "C0-", label=f"fit: {alpha:.2f} bits/param")
    ax.plot(xs, PUBLISHED_ALPHA * xs, "k--", lw=1, label=f"published: {PUBLISHED_ALPHA} bits/param")
    ax.set_xlabel("parameters")
    ax.set_ylabel("capacity (bits)")
    ax.set_title("Capacity vs parameters")
    ax.legend(fontsize=8)
    rd.save_figure("capacity_vs_params.png", fig)
