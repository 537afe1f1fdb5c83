"""The shadow-model experiments as functions a notebook can call.

* :func:`run_train` (``memlens shadow train``): a candidate pool, a balanced keep matrix, K
  shadow GPTs trained as batched stacks (resumable per stack), one scoring pass per stack;
* :func:`run_attack` (``memlens shadow attack``): LiRA and RMIA (online and offline) and the
  reference-free baselines, leave-one-model-out over the shadows or against a user's target;
  ``mia.json`` in the schema of ``memlens mia``;
* :func:`run_memorization` (``memlens shadow memorization``): counterfactual memorization per
  example.

Shadows directory (written by :func:`run_train`)::

    manifest.json        config, seed, versions, git revision
    shadow.json          summary: world, shape, parameters, steps, timings
    pool.parquet         one row per example: id, role (candidate/population), text, tokens, count
    tokens.npz           token ids [N, S] and lengths [N] of every example
    keep.npy             bool [K, n]: True = candidate i in model k's training set
    signals.npz          [K, n] loglik_bits, mean_log2p, accuracy, lira_phi (and z_* [K, m] for
                         the population); n_tokens
    token_scores.npz     float32 [K, N, S-1] per-token log2 p, mu and sigma (the baselines)
    tokenizer/           the tokenizer (text worlds)
    models/model_XX/     each shadow as a memlens GPT checkpoint (safetensors), loadable by
                         every memlens command that takes a model
    cells/               one finished stack per cell (resume)
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from memlens.errors import UserError
from memlens.mia.metrics import LOW_FPRS
from memlens.shadow.attacks import SHADOW_ATTACKS, AttackSettings

Progress = Callable[[str, int, int], None]


def _validation_message(what: str, exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(x) for x in err.get("loc", ()))
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ").rstrip(".")
    return f"invalid {what} setting {loc}: {msg}." if loc else f"{msg}."


def _build(cls: type[BaseModel], what: str, values: dict[str, Any]) -> Any:
    try:
        return cls.model_validate({k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        raise UserError(_validation_message(what, exc)) from None


# =================================================================================================
# train
# =================================================================================================


class ShadowTrainConfig(BaseModel):
    """Settings of ``memlens shadow train`` (saved in the manifest).

    World: ``pool`` (a file of texts; tokenizer from ``tokenizer`` or trained on the pool with
    ``vocab_size`` tokens) or ``synthetic`` (``uniform``/``markov`` with ``n_examples``,
    ``vocab_size``, ``branching``); examples of at most ``seq_len`` tokens; a share
    ``population_frac`` held out of every model (the RMIA population).
    Models: ``n_models`` (K, even) GPTs of ``n_layer`` x ``d_model`` (``n_head`` 0 = automatic),
    ``stack_size`` per batched stack (default all K in one), trained ``steps`` steps of
    ``batch_size`` examples per model (Adam at ``lr``, ``warmup_steps``, linear decay over
    ``decay_frac`` of the steps then a hold at a tenth of ``lr``).
    Scale: ``backend`` local (``workers`` processes) or ray (``ray_address``).
    """

    model_config = ConfigDict(extra="forbid")
    pool: str | None = None
    text_column: str = "text"
    tokenizer: str | None = None
    synthetic: Literal["uniform", "markov"] | None = None
    n_examples: int = Field(default=512, ge=1)
    vocab_size: int = Field(default=1024, ge=2)
    branching: int = Field(default=4, ge=1)
    seq_len: int = Field(default=64, ge=4)
    population_frac: float = Field(default=0.2, ge=0, lt=0.9)
    n_models: int = 16
    stack_size: int | None = Field(default=None, ge=1)
    n_layer: int = Field(default=2, ge=1)
    d_model: int = Field(default=64, ge=4)
    n_head: int = Field(default=0, ge=0)
    steps: int = Field(default=1500, ge=1)
    lr: float = Field(default=3e-3, gt=0)
    batch_size: int = Field(default=32, ge=1)
    warmup_steps: int = Field(default=100, ge=0)
    decay_frac: float = Field(default=0.3, ge=0, lt=0.8)
    n_evals: int = Field(default=4, ge=1)
    score_batch: int = Field(default=16, ge=1)
    seed: int = 0
    device: str = "auto"
    backend: Literal["local", "ray"] = "local"
    workers: int = Field(default=1, ge=1)
    ray_address: str | None = None

    @model_validator(mode="after")
    def _world(self) -> ShadowTrainConfig:
        if (self.pool is None) == (self.synthetic is None):
            raise ValueError("give exactly one of a pool file or a synthetic world")
        if self.tokenizer is not None and self.pool is None:
            raise ValueError("a tokenizer applies to a pool of texts only")
        if self.n_models < 2 or self.n_models % 2:
            raise ValueError(
                f"the number of shadow models must be even and at least 2 (each example is IN "
                f"for exactly half of them), got {self.n_models}"
            )
        return self

    @property
    def models_per_stack(self) -> int:
        return min(self.stack_size or self.n_models, self.n_models)

    def gpt_config(self, vocab_size: int) -> Any:
        from memlens.models.gpt import GPTConfig

        return GPTConfig(vocab_size, self.seq_len, self.n_layer, self.d_model, self.n_head)

    def train_config(self) -> Any:
        from memlens.training import TrainConfig

        return TrainConfig(
            lr=self.lr,
            batch_size=self.batch_size,
            max_steps=self.steps,
            min_steps=self.steps,
            warmup_steps=min(self.warmup_steps, self.steps),
            decay_frac=self.decay_frac,
            eval_every=max(1, self.steps // self.n_evals),
        )


def train_config(**values: Any) -> ShadowTrainConfig:
    """A validated :class:`ShadowTrainConfig` (``None`` values take the defaults)."""
    return _build(ShadowTrainConfig, "shadow train", values)


@dataclass
class ShadowTrainResult:
    """What :func:`run_train` did. ``stacks`` lists each stack: models, reused, seconds."""

    out: Path
    n_models: int
    n_candidates: int
    n_population: int
    n_params: int
    stacks: list[dict[str, Any]]
    seconds: float
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def n_reused(self) -> int:
        return sum(1 for s in self.stacks if s["reused"])


def build_pool(config: ShadowTrainConfig) -> Any:
    """The world of ``config`` (:mod:`memlens.shadow.world`)."""
    from memlens.shadow.world import synthetic_pool, text_pool

    if config.pool is not None:
        return text_pool(
            config.pool,
            seq_len=config.seq_len,
            tokenizer=config.tokenizer,
            vocab_size=config.vocab_size,
            text_column=config.text_column,
            population_frac=config.population_frac,
            seed=config.seed,
        )
    return synthetic_pool(
        config.synthetic or "uniform",
        n_examples=config.n_examples,
        seq_len=config.seq_len,
        vocab_size=config.vocab_size,
        branching=config.branching,
        population_frac=config.population_frac,
        seed=config.seed,
    )


def _write_world(rd: Any, pool: Any, keep: np.ndarray) -> None:
    import pandas as pd

    from memlens.store import atomic_path

    N = len(pool.lengths)
    cand_index = np.full(N, -1, dtype=np.int64)
    cand_index[pool.candidates] = np.arange(len(pool.candidates))
    table = pd.DataFrame(
        {
            "id": np.arange(N),
            "role": np.where(pool.population, "population", "candidate"),
            "candidate_index": cand_index,
            "n_tokens": pool.lengths,
            "count": pool.counts,
            "text": pool.texts if pool.texts is not None else [None] * N,
            **({"entropy_bits": pool.entropy_bits} if pool.entropy_bits is not None else {}),
        }
    )
    rd.write_table("pool.parquet", table)
    with atomic_path(rd.path / "tokens.npz") as tmp, open(tmp, "wb") as fh:
        np.savez(fh, tokens=pool.tokens, lengths=pool.lengths, population=pool.population)
    with atomic_path(rd.path / "keep.npy") as tmp, open(tmp, "wb") as fh:
        np.save(fh, keep)
    if pool.tokenizer is not None:
        pool.tokenizer.save_pretrained(rd.path / "tokenizer")


def _stack_seed(seed: int, index: int) -> int:
    return int(seed) * 1_000_003 + 7919 * (index + 1)


def run_train(
    config: ShadowTrainConfig,
    out: str | Path,
    *,
    progress: Progress | None = None,
) -> ShadowTrainResult:
    """Train the K shadow models of ``config`` into ``out`` (resumable; see the module docstring).

    ``progress(stage, done, total)`` receives ``("stack i", step, steps)`` during training.
    Rerunning with the same ``out`` reuses every finished stack; a directory that holds shadows
    of another pool is refused.
    """
    from memlens.models.gpt import GPT
    from memlens.models.hf import save_gpt_checkpoint
    from memlens.scale import check_backend, run_cells
    from memlens.shadow.design import balanced_keep, check_design
    from memlens.shadow.train import stack_layout, train_stack
    from memlens.store import RunDir

    t_start = time.perf_counter()
    check_backend(config.backend, config.ray_address)
    pool = build_pool(config)
    K = config.n_models
    cand = pool.candidates
    check_design(K, len(cand))
    keep = balanced_keep(K, len(cand), config.seed)
    gcfg = config.gpt_config(pool.vocab_size)
    tcfg = config.train_config()
    fp = pool.fingerprint()
    out = Path(out)
    if (out / "manifest.json").exists():
        world = (
            json.loads((out / "cells" / "world.json").read_text())
            if (out / "cells" / "world.json").exists()
            else None
        )
        if world is not None and world.get("fingerprint") != fp:
            raise UserError(
                f"{out} holds shadow models trained on another pool; use a new output directory."
            )
    rd = RunDir(out, "shadow-train", config.model_dump(), config.seed)
    if rd.load_cell("world") is None:
        _write_world(rd, pool, keep)
        rd.save_cell("world", {"fingerprint": fp, "pool_sha256": pool.pool_sha256})
    rd.write_manifest(status="running")

    layout = stack_layout(K, config.models_per_stack)
    stacks: list[dict[str, Any]] = []
    cells, cell_of = [], []
    first_bits = pool.meta.get("first_token_bits", 0.0)
    for i, models in enumerate(layout):
        cell = rd.load_cell(f"stack-{i}")
        if (
            cell is not None
            and cell.get("fingerprint") == fp
            and cell.get("models") == models
            and rd.load_arrays(f"stack-{i}") is not None
        ):
            stacks.append({**cell, "index": i, "reused": True})
            continue
        stacks.append({"index": i, "models": models, "reused": False})
        job = {
            "index": i,
            "models": models,
            "gpt": gcfg.to_dict(),
            "train": tcfg.to_dict(),
            "tokens": pool.tokens,
            "lengths": pool.lengths,
            "rows": [cand[keep[k]] for k in models],
            "seed": _stack_seed(config.seed, i),
            "device": config.device,
            "score_batch": config.score_batch,
            "first_token_bits": first_bits,
            "entropy_bits": pool.entropy_bits,
        }
        cells.append((train_stack, (job,)))
        cell_of.append(i)

    def save(j: int, res: dict[str, Any]) -> None:
        i = cell_of[j]
        if not res["finite"]:
            raise UserError(
                f"shadow stack {i} produced NaN or infinite log-probabilities; lower the learning rate."
            )
        stack = GPT(gcfg, n_models=len(res["models"]))
        stack.load_state_dict(res["state"])
        for pos, k in enumerate(res["models"]):
            save_gpt_checkpoint(stack, rd.path / "models" / f"model_{k:02d}", pos, pool.tokenizer)
        rd.save_arrays(
            f"stack-{i}",
            {
                **res["signals"],
                "log2p": res["log2p"],
                "mu_log2p": res["mu_log2p"],
                "sigma_log2p": res["sigma_log2p"],
            },
        )
        info = {
            "models": res["models"],
            "fingerprint": fp,
            "steps": res["steps"],
            "train_seconds": res["train_seconds"],
            "score_seconds": res["score_seconds"],
        }
        rd.save_cell(f"stack-{i}", info)
        stacks[i].update(info)

    def relay(j: int, payload: Any) -> None:
        if progress is not None and isinstance(payload, dict):
            progress(f"stack {cell_of[j]}", int(payload["step"]), int(payload["total"]))

    if cells:
        run_cells(
            cells,
            backend=config.backend,
            workers=config.workers,
            on_result=save,
            on_progress=relay,
            ray_address=config.ray_address,
        )

    summary = _assemble(rd, pool, keep, layout, config, gcfg, stacks, fp)
    seconds = time.perf_counter() - t_start
    summary["seconds_this_invocation"] = seconds
    rd.write_json("shadow.json", summary)
    rd.write_manifest(
        status="finished",
        outputs=["shadow.json", "pool.parquet", "keep.npy", "signals.npz", "models/"],
    )
    return ShadowTrainResult(
        out=rd.path,
        n_models=K,
        n_candidates=len(cand),
        n_population=int(pool.population.sum()),
        n_params=gcfg.n_params,
        stacks=stacks,
        seconds=seconds,
        summary=summary,
    )


def _assemble(rd, pool, keep, layout, config, gcfg, stacks, fp) -> dict[str, Any]:
    """Gather the stacks' arrays into signals.npz and token_scores.npz; the summary dict."""
    from memlens.shadow.signals import SIGNALS
    from memlens.store import atomic_path

    K = config.n_models
    N = len(pool.lengths)
    parts = {i: rd.load_arrays(f"stack-{i}") for i in range(len(layout))}
    full: dict[str, np.ndarray] = {}
    for name in (*SIGNALS, "log2p", "mu_log2p", "sigma_log2p"):
        first = parts[0][name]
        arr = np.empty((K, *first.shape[1:]), dtype=first.dtype)
        for i, models in enumerate(layout):
            arr[models] = parts[i][name]
        full[name] = arr
    cand, popi = pool.candidates, pool.population_index
    n_tokens = pool.lengths - 1
    sig = {name: full[name][:, cand] for name in SIGNALS}
    sig |= {f"z_{name}": full[name][:, popi] for name in SIGNALS}
    sig |= {"n_tokens": n_tokens[cand], "z_n_tokens": n_tokens[popi]}
    with atomic_path(rd.path / "signals.npz") as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **sig)
    with atomic_path(rd.path / "token_scores.npz") as tmp, open(tmp, "wb") as fh:
        np.savez(
            fh,
            log2p=full["log2p"],
            mu_log2p=full["mu_log2p"],
            sigma_log2p=full["sigma_log2p"],
        )
    # Mean training loss of each model on its own examples (bits per token), from the signals.
    ll = sig["loglik_bits"]
    ntok = sig["n_tokens"][None, :]
    in_bits = (-(ll * keep).sum(1) / (ntok * keep).sum(1)).tolist()
    out_bits = (-(ll * ~keep).sum(1) / (ntok * ~keep).sum(1)).tolist()
    train_s = [float(s.get("train_seconds", 0.0)) for s in stacks]
    score_s = [float(s.get("score_seconds", 0.0)) for s in stacks]
    return {
        "world": pool.source,
        "synthetic": config.synthetic,
        "fingerprint": fp,
        "pool_sha256": pool.pool_sha256,
        "n_models": K,
        "n_examples": N,
        "n_candidates": int(len(cand)),
        "n_population": int(len(popi)),
        "n_repeated_examples": int((pool.counts[cand] > 1).sum()),
        "vocab_size": pool.vocab_size,
        "seq_len": config.seq_len,
        "shape": gcfg.to_dict(),
        "n_params_per_model": gcfg.n_params,
        "steps": config.steps,
        "stacks": [
            {
                k: s[k]
                for k in ("index", "models", "reused", "train_seconds", "score_seconds")
                if k in s
            }
            for s in stacks
        ],
        "models_per_stack": config.models_per_stack,
        "train_seconds_total": float(sum(train_s)),
        "score_seconds_total": float(sum(score_s)),
        "in_bits_per_token": in_bits,
        "out_bits_per_token": out_bits,
        "mean_in_bits_per_token": float(np.mean(in_bits)),
        "mean_out_bits_per_token": float(np.mean(out_bits)),
        "units": "bits (log base 2); signals per model and candidate example",
        "first_token": (
            "BOS prepended, free; every text token predicted"
            if pool.texts is not None
            else "first token coded uniformly by every model (log2 V bits), not scored"
        ),
    }


# =================================================================================================
# loading a shadows directory
# =================================================================================================


@dataclass
class Shadows:
    """A finished shadows directory, loaded (see the module docstring for the files)."""

    path: Path
    summary: dict[str, Any]
    config: dict[str, Any]
    keep: np.ndarray
    signals: Any  # Signals [K, n] over the candidates
    z_signals: Any  # Signals [K, m] over the population
    pool: Any  # pandas DataFrame
    tokens: np.ndarray
    lengths: np.ndarray

    @property
    def n_models(self) -> int:
        return int(self.keep.shape[0])

    @property
    def candidates(self) -> np.ndarray:
        return np.flatnonzero(self.pool["role"].to_numpy() == "candidate")

    @property
    def population(self) -> np.ndarray:
        return np.flatnonzero(self.pool["role"].to_numpy() == "population")

    @property
    def texts(self) -> list[str] | None:
        t = self.pool["text"].tolist()
        return None if all(v is None for v in t) else t

    @property
    def tokenizer_dir(self) -> Path | None:
        p = self.path / "tokenizer"
        return p if p.is_dir() else None

    def token_scores(self, model: int, rows: np.ndarray) -> Any:
        """The stored per-token scores of one shadow on pool rows ``rows`` (a TokenScores)."""
        from memlens.scoring import TokenScores

        with np.load(self.path / "token_scores.npz") as z:
            log2p = z["log2p"][model][rows].astype(np.float64)
            mu = z["mu_log2p"][model][rows].astype(np.float64)
            sigma = z["sigma_log2p"][model][rows].astype(np.float64)
        width = log2p.shape[-1]
        mask = np.arange(width)[None, :] < (self.lengths[rows] - 1)[:, None]
        return TokenScores(log2p=log2p, mask=mask, mu_log2p=mu, sigma_log2p=sigma)


def load_shadows(path: str | Path) -> Shadows:
    """Load a shadows directory written by :func:`run_train` (one sentence if it is not one)."""
    import pandas as pd

    from memlens.shadow.signals import Signals

    p = Path(path).expanduser()
    if not p.is_dir():
        raise UserError(f"shadows directory {p} does not exist.")
    need = ("shadow.json", "keep.npy", "signals.npz", "pool.parquet", "tokens.npz")
    missing = [f for f in need if not (p / f).exists()]
    if missing:
        raise UserError(
            f"{p} is not a finished shadows directory (no {missing[0]}); train the shadows first."
        )
    summary = json.loads((p / "shadow.json").read_text())
    manifest = (
        json.loads((p / "manifest.json").read_text()) if (p / "manifest.json").exists() else {}
    )
    keep = np.load(p / "keep.npy", allow_pickle=False)
    with np.load(p / "signals.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    with np.load(p / "tokens.npz", allow_pickle=False) as z:
        tokens, lengths = z["tokens"], z["lengths"]
    pool = pd.read_parquet(p / "pool.parquet")
    sig = Signals.from_arrays(arrays)
    zsig = Signals.from_arrays(arrays, prefix="z_")
    if sig.loglik_bits.shape != keep.shape or len(pool) != len(lengths):
        raise UserError(f"the files in {p} do not belong together; retrain the shadows.")
    return Shadows(p, summary, manifest.get("config", {}), keep, sig, zsig, pool, tokens, lengths)


def check_pool(sh: Shadows, pool: str | None, text_column: str = "text") -> None:
    """Refuse a pool file other than the one the shadows were trained on."""
    if pool is None:
        return
    from memlens.data.text import read_texts
    from memlens.shadow.world import texts_sha256

    raw, _ = read_texts(pool, text_column=text_column)
    if texts_sha256(raw) != sh.summary.get("pool_sha256"):
        raise UserError(f"the shadows in {sh.path} were trained on another pool than {pool}.")


# =================================================================================================
# attack
# =================================================================================================

BASELINES = ("loss", "zlib", "min_k", "min_k_pp")


class ShadowAttackConfig(BaseModel):
    """Settings of ``memlens shadow attack`` (saved in the manifest).

    Without ``target``: leave-one-model-out over the shadows. With ``target`` (a model directory)
    and ``members``/``nonmembers`` (texts of the shadows' pool): the shadows are the target's
    references. ``settings`` holds the attack choices (:class:`AttackSettings`); ``baselines``
    the reference-free attacks run on the same targets; ``fprs`` the FPR levels.
    """

    model_config = ConfigDict(extra="forbid")
    shadows: str
    target: str | None = None
    members: str | None = None
    nonmembers: str | None = None
    text_column: str = "text"
    pool: str | None = None
    settings: AttackSettings = AttackSettings()
    baselines: list[str] = Field(default_factory=lambda: list(BASELINES))
    k: float = Field(default=0.2, gt=0, le=1)
    fprs: list[float] = Field(default_factory=lambda: list(LOW_FPRS))
    n_boot: int = Field(default=200, ge=1)
    level: float = Field(default=0.95, gt=0, lt=1)
    batch_size: int = Field(default=32, ge=1)
    device: str = "auto"
    seed: int = 0

    @model_validator(mode="after")
    def _inputs(self) -> ShadowAttackConfig:
        if self.target is not None and (self.members is None or self.nonmembers is None):
            raise ValueError("a target needs its members and non-members")
        if self.target is None and (self.members is not None or self.nonmembers is not None):
            raise ValueError("members and non-members need a target model")
        for a in self.fprs:
            if not 0 <= a < 1:
                raise ValueError(f"FPR level must be at least 0 and below 1, got {a}")
        for b in self.baselines:
            if b not in BASELINES:
                raise ValueError(f"unknown baseline {b!r}; choose from {', '.join(BASELINES)}")
        return self


def attack_config(**values: Any) -> ShadowAttackConfig:
    """A validated :class:`ShadowAttackConfig`; settings keys may be given flat."""
    flat = {k: values.pop(k) for k in list(values) if k in AttackSettings.model_fields}
    settings = _build(AttackSettings, "shadow attack", flat)
    return _build(ShadowAttackConfig, "shadow attack", {**values, "settings": settings})


@dataclass
class ShadowAttackResult:
    """``mia`` is the ``mia.json`` content; ``scores`` the per-(target, example) table."""

    out: Path
    mia: dict[str, Any]
    scores: Any


def _baseline_scores(
    names: list[str], ts: Any, texts: list[str] | None, bits: np.ndarray, k: float
) -> dict[str, np.ndarray]:
    from memlens.mia.attacks import AttackInputs, compute_attacks

    names = [n for n in names if n != "zlib" or texts is not None]
    inputs = AttackInputs(target=ts, texts=texts, target_bits=bits, k=k)
    return compute_attacks(names, inputs)


def run_attack(
    config: ShadowAttackConfig, out: str | Path, *, progress: Progress | None = None
) -> ShadowAttackResult:
    """Run the shadow attacks and write ``mia.json``, ``scores.parquet`` and ROC plots.

    Leave-one-model-out (no target): each shadow ``t`` in turn is the target; its references
    are the other shadows except its pair partner (:func:`memlens.shadow.design.references_for`),
    so every example has ``K/2 - 1`` IN and ``K/2 - 1`` OUT references. The ``K`` ROC problems
    are **pooled**: the scores of every (target, candidate) pair form one ROC with
    ``K * n / 2`` members and as many non-members (each target's membership labels are its
    keep row). Per-target AUCs are reported alongside (mean and standard deviation). A low-FPR
    TPR pooled over targets is not calibrated per example (science §8).
    """
    import pandas as pd

    from memlens.mia.metrics import evaluate_attacks, roc_auc
    from memlens.mia.recipe import plot_roc
    from memlens.mia.summary import MIAMetricsSummary
    from memlens.store import RunDir

    sh = load_shadows(config.shadows)
    check_pool(sh, config.pool, config.text_column)
    if config.target is not None:
        return _run_target_attack(config, sh, out, progress)
    K = sh.n_models
    if K < 6:
        raise UserError(
            f"leave-one-model-out attacks need at least 6 shadow models (each target keeps K - 2 "
            f"references, two IN and two OUT per example), got {K}."
        )
    rd = RunDir(out, "shadow-attack", config.model_dump(), config.seed)
    st = config.settings
    keep = sh.keep
    n = keep.shape[1]
    lp_c = _rmia_lp(sh.signals, st)
    lp_z = _rmia_lp(sh.z_signals, st)
    if lp_z.shape[1] == 0:
        raise UserError(
            f"the shadows in {sh.path} have no population examples for RMIA; train them with a "
            "population share above 0."
        )
    cand = sh.candidates
    texts = sh.texts
    cand_texts = [texts[i] for i in cand] if texts is not None else None
    names: list[str] = []
    table: dict[str, np.ndarray] = {}
    a_used = []
    for t in range(K):
        from memlens.shadow.attacks import attack_target, calibrate_offline_a
        from memlens.shadow.design import references_for

        refs = references_for(t, K)
        if st.offline_a is None:
            a, _ = calibrate_offline_a(
                lp_c, keep, lp_z, refs, gamma=st.gamma, averaging=st.averaging
            )
        else:
            a = st.offline_a
        a_used.append(a)
        res = attack_target(
            sh.signals.take([t]),
            sh.z_signals.take([t]),
            sh.signals.take(refs),
            sh.z_signals.take(refs),
            keep[refs],
            st,
            a,
        )
        ts = sh.token_scores(t, cand)
        res |= _baseline_scores(
            list(config.baselines), ts, cand_texts, -sh.signals.loglik_bits[t], config.k
        )
        if not names:
            names = list(res)
            table = {name: np.empty((K, n)) for name in names}
        for name in names:
            table[name][t] = res[name]
        if progress is not None:
            progress("targets", t + 1, K)
    labels = keep.astype(np.int8).ravel()
    scores = {name: table[name].ravel() for name in names}
    ids = [f"{t}:{i}" for t in range(K) for i in range(n)]
    result = evaluate_attacks(
        scores,
        labels,
        ids=ids,
        fprs=config.fprs,
        n_boot=config.n_boot,
        level=config.level,
        seed=config.seed,
    ).model_dump()
    per_target = {}
    for name in names:
        aucs = []
        for t in range(K):
            ok = np.isfinite(table[name][t])
            aucs.append(roc_auc(table[name][t][ok], keep[t][ok].astype(int)))
        per_target[name] = {"mean": float(np.mean(aucs)), "sd": float(np.std(aucs, ddof=1))}
    n1 = int(labels.sum())
    mia = {
        "attacks": result.pop("attacks"),
        "n_members": n1,
        "n_nonmembers": int(labels.size - n1),
        **result,
        "k": config.k,
        "mode": "leave-one-model-out",
        "pooling": (
            f"each of the {K} shadows in turn is the target, with the other shadows except its "
            f"pair partner as references ({K // 2 - 1} IN and {K // 2 - 1} OUT per example); "
            f"the {K} ROC problems are pooled into one ({K} x {n} scores, labels from keep.npy)"
        ),
        "per_target_auc": per_target,
        "offline_a": a_used,
        "settings": st.model_dump(),
        "model": {"name": "each shadow in turn", "source": "memlens-gpt", **_shape(sh)},
        "references": [{"name": str(sh.path), "n_models": K - 2, "design": "balanced pairs"}],
        "data": {
            "shadows": str(sh.path),
            "world": sh.summary.get("world"),
            "n_candidates": n,
            "n_population": int(sh.z_signals.loglik_bits.shape[1]),
        },
        "units": "bits (log base 2); LiRA scores in nats of likelihood ratio, RMIA in fractions of Z",
    }
    df = pd.DataFrame(
        {
            "target": np.repeat(np.arange(K), n),
            "example": np.tile(np.arange(n), K),
            "pool_id": np.tile(cand, K),
            "label": labels.astype(np.int64),
            **scores,
        }
    )
    rd.write_table("scores.parquet", df)
    plot_roc(scores, labels, rd, MIAMetricsSummary.model_validate(mia), each=False)
    rd.write_json("mia.json", mia)
    rd.write_manifest(outputs=["mia.json", "scores.parquet", "roc.png"])
    return ShadowAttackResult(out=rd.path, mia=mia, scores=df)


def _shape(sh: Shadows) -> dict[str, Any]:
    return {
        "shape": sh.summary.get("shape"),
        "n_params": sh.summary.get("n_params_per_model"),
        "steps": sh.summary.get("steps"),
    }


def _rmia_lp(sig: Any, st: AttackSettings) -> np.ndarray:
    from memlens.shadow.attacks import rmia_signal

    return rmia_signal(sig, st.rmia_signal)


def _same_tokenizer(a: Any, b: Any) -> bool:
    try:
        return a.get_vocab() == b.get_vocab() and a.bos_token_id == b.bos_token_id
    except AttributeError:
        return False


def _run_target_attack(
    config: ShadowAttackConfig, sh: Shadows, out: str | Path, progress: Progress | None
) -> ShadowAttackResult:
    """A user's target model with labelled texts of the pool; all shadows are its references."""
    import pandas as pd

    from memlens.mia.metrics import evaluate_attacks
    from memlens.mia.recipe import plot_roc
    from memlens.mia.samples import load_samples
    from memlens.mia.summary import MIAMetricsSummary
    from memlens.models.hf import load_causal_lm, load_tokenizer
    from memlens.scoring import score_sequences
    from memlens.shadow.attacks import attack_target, calibrate_offline_a
    from memlens.shadow.signals import signals_from_scores
    from memlens.store import RunDir

    if sh.tokenizer_dir is None or sh.texts is None:
        raise UserError(
            f"the shadows in {sh.path} were trained on a synthetic world, which has no texts; "
            "evaluate them leave-one-model-out (without a target)."
        )
    K = sh.n_models
    if K < 4:
        raise UserError(f"attacking a target needs at least 4 shadow models, got {K}.")
    samples = load_samples(
        members=config.members, nonmembers=config.nonmembers, text_column=config.text_column
    )
    lm = load_causal_lm(config.target, device=config.device)
    if lm.tokenizer is None or not _same_tokenizer(lm.tokenizer, load_tokenizer(sh.tokenizer_dir)):
        raise UserError(
            f"the tokenizer of target {config.target} differs from the shadows' tokenizer; "
            "train the shadows with the target's tokenizer."
        )
    if lm.context_length is not None and lm.context_length < sh.tokens.shape[1]:
        raise UserError(
            f"target {config.target} has a context of {lm.context_length} tokens, shorter than "
            f"the shadows' examples of {sh.tokens.shape[1]}."
        )
    texts = sh.texts
    cand = sh.candidates
    pos_of: dict[str, list[int]] = {}
    for j, i in enumerate(cand):
        pos_of.setdefault(texts[i], []).append(j)
    missing = [t for t in samples.texts if t not in pos_of]
    if missing:
        raise UserError(
            f"{len(missing)} of the {len(samples)} texts are not candidates of the shadows' pool "
            f"(first: {missing[0][:40]!r}); the target's texts must come from that pool."
        )
    cols = [pos_of[t][0] for t in samples.texts]
    # A text with several copies in the pool: a shadow saw it when it saw any copy.
    in_refs = np.stack([sh.keep[:, pos_of[t]].any(axis=1) for t in samples.texts], axis=1)
    rows = np.r_[cand[cols], sh.population]
    seqs = [sh.tokens[i, : sh.lengths[i]] for i in rows]
    scored = score_sequences(lm, seqs, batch_size=config.batch_size, stats=True, argmax=True)
    tsig = signals_from_scores(scored)
    n = len(cols)
    t_c, t_z = tsig.take(None, np.arange(n)), tsig.take(None, np.arange(n, len(rows)))
    refs = np.arange(K)
    st = config.settings
    lp_c, lp_z = _rmia_lp(sh.signals, st), _rmia_lp(sh.z_signals, st)
    a = st.offline_a
    if a is None:
        a, _ = calibrate_offline_a(
            lp_c, sh.keep, lp_z, refs, gamma=st.gamma, averaging=st.averaging
        )
    n_in, n_out = in_refs.sum(0), (~in_refs).sum(0)
    ok = (n_in >= 2) & (n_out >= 2)
    shadow_scores = {name: np.full(n, np.nan) for name in SHADOW_ATTACKS}
    if ok.any():
        res = attack_target(
            t_c.take(None, ok),
            t_z,
            sh.signals.take(None, np.asarray(cols)[ok]),
            sh.z_signals,
            in_refs[:, ok],
            st,
            a,
        )
        for name, v in res.items():
            shadow_scores[name][ok] = v
    from memlens.mia.recipe import _take_rows

    ts = _take_rows(scored, slice(0, n))
    base = _baseline_scores(
        list(config.baselines), ts, samples.texts, -t_c.loglik_bits[0], config.k
    )
    scores = {**shadow_scores, **base}
    rd = RunDir(out, "shadow-attack", config.model_dump(), config.seed)
    result = evaluate_attacks(
        scores,
        samples.labels,
        fprs=config.fprs,
        n_boot=config.n_boot,
        level=config.level,
        seed=config.seed,
    ).model_dump()
    n1 = int(samples.labels.sum())
    mia = {
        "attacks": result.pop("attacks"),
        "n_members": n1,
        "n_nonmembers": len(samples) - n1,
        **result,
        "k": config.k,
        "mode": "target",
        "offline_a": [a],
        "settings": st.model_dump(),
        "model": lm.describe(),
        "references": [{"name": str(sh.path), "n_models": K, "design": "balanced pairs"}],
        "data": samples.info | {"n_without_two_references_a_side": int((~ok).sum())},
        "units": "bits (log base 2); LiRA scores in nats of likelihood ratio, RMIA in fractions of Z",
    }
    df = pd.DataFrame(
        {
            "id": np.arange(n),
            "label": samples.labels.astype(np.int64),
            **scores,
            "text": samples.texts,
        }
    )
    rd.write_table("scores.parquet", df)
    plot_roc(scores, samples.labels, rd, MIAMetricsSummary.model_validate(mia), each=False)
    rd.write_json("mia.json", mia)
    rd.write_manifest(outputs=["mia.json", "scores.parquet", "roc.png"])
    return ShadowAttackResult(out=rd.path, mia=mia, scores=df)


# =================================================================================================
# counterfactual memorization
# =================================================================================================


class MemorizationConfig(BaseModel):
    """Settings of ``memlens shadow memorization``: the shadows, an optional check against the
    pool file, an optional audit directory (its per-text unintended bits), the top-k shown."""

    model_config = ConfigDict(extra="forbid")
    shadows: str
    pool: str | None = None
    text_column: str = "text"
    audit: str | None = None
    top: int = Field(default=20, ge=1)


def memorization_config(**values: Any) -> MemorizationConfig:
    return _build(MemorizationConfig, "shadow memorization", values)


@dataclass
class MemorizationResult:
    out: Path
    table: Any  # pandas DataFrame, one row per candidate example, by descending mem_accuracy
    summary: dict[str, Any]


def run_memorization(
    config: MemorizationConfig, out: str | Path, *, progress: Progress | None = None
) -> MemorizationResult:
    """Counterfactual memorization of every candidate (:mod:`memlens.shadow.counterfactual`).

    Writes ``memorization.parquet`` (one row per example: text, count in the pool, ``n_in``,
    ``n_out``, ``mem_accuracy`` and its standard error, ``mem_bits`` (sequence log-likelihood,
    bits) and per token, the IN and OUT means, TF-IDF rarity, and the audit's unintended bits
    when an audit directory is given), ``memorization.json`` (summary, top examples, Spearman
    correlations) and ``memorization_hist.png``.
    """
    import pandas as pd
    from scipy.stats import spearmanr

    from memlens.shadow.counterfactual import counterfactual
    from memlens.store import RunDir

    sh = load_shadows(config.shadows)
    check_pool(sh, config.pool, config.text_column)
    rd = RunDir(out, "shadow-memorization", config.model_dump(), 0)
    keep = sh.keep
    cand = sh.candidates
    acc = counterfactual(sh.signals.accuracy, keep)
    bits = counterfactual(sh.signals.loglik_bits, keep)
    per_tok = counterfactual(sh.signals.mean_log2p, keep)
    pool = sh.pool.iloc[cand].reset_index(drop=True)
    df = pd.DataFrame(
        {
            "example": np.arange(len(cand)),
            "pool_id": cand,
            "count": pool["count"].to_numpy(),
            "n_tokens": sh.signals.n_tokens,
            "n_in": acc["n_in"],
            "n_out": acc["n_out"],
            "mem_accuracy": acc["mem"],
            "se_accuracy": acc["se"],
            "accuracy_in": acc["mean_in"],
            "accuracy_out": acc["mean_out"],
            "mem_bits": bits["mem"],
            "se_bits": bits["se"],
            "mem_bits_per_token": per_tok["mem"],
            "se_bits_per_token": per_tok["se"],
        }
    )
    texts = sh.texts
    if texts is not None:
        df["text"] = [texts[i] for i in cand]
    # TF-IDF rarity (Morris et al. 2025) over the shadows' tokens (no BOS) of every pool example.
    from memlens.audit.rarity import TfidfCorpus

    start = 1 if texts is not None else 0
    docs = [sh.tokens[i, start : sh.lengths[i]].tolist() for i in range(len(sh.lengths))]
    corpus = TfidfCorpus(docs)
    df["tfidf"] = [corpus.score(docs[i]) for i in cand]
    if "entropy_bits" in sh.pool.columns:
        df["source_bits"] = pool["entropy_bits"].to_numpy()
    audit_note = None
    if config.audit is not None:
        df, audit_note = _join_audit(df, config.audit)
    correlations = {}
    pos = df["mem_accuracy"] > 0
    for other in ("tfidf", "unintended_bits", "count"):
        if other not in df.columns:
            continue
        for measure in ("mem_accuracy", "mem_bits"):
            for subset, mask in (("all", np.ones(len(df), bool)), ("positive", pos.to_numpy())):
                x, y = df.loc[mask, measure], df.loc[mask, other]
                ok = np.isfinite(x) & np.isfinite(y)
                if ok.sum() >= 3 and np.ptp(y[ok]) > 0 and np.ptp(x[ok]) > 0:
                    r = spearmanr(x[ok], y[ok])
                    correlations[f"{measure}~{other}:{subset}"] = {
                        "rho": float(r.statistic),
                        "p": float(r.pvalue),
                        "n": int(ok.sum()),
                    }
    df = df.sort_values("mem_accuracy", ascending=False, kind="stable").reset_index(drop=True)
    df.insert(0, "rank", np.arange(1, len(df) + 1))
    unique = df["count"] == 1
    summary = {
        "n_models": sh.n_models,
        "n_examples": int(len(df)),
        "models_per_estimate": {
            "in": int(df["n_in"].min()),
            "out": int(df["n_out"].min()),
            "rule": "every example is IN for exactly K/2 shadows and OUT for the other K/2",
        },
        "measure": "M = per-token greedy accuracy (Zhang et al. 2023); also bits of log-likelihood",
        "mean_mem_accuracy": float(df["mem_accuracy"].mean()),
        "mean_mem_bits": float(df["mem_bits"].mean()),
        "median_se_accuracy": _finite_median(df["se_accuracy"]),
        "unique_mean_mem_accuracy": float(df.loc[unique, "mem_accuracy"].mean())
        if unique.any()
        else None,
        "repeated_mean_mem_accuracy": float(df.loc[~unique, "mem_accuracy"].mean())
        if (~unique).any()
        else None,
        "n_repeated": int((~unique).sum()),
        "spearman": correlations,
        "audit": audit_note,
        "top": [
            {
                k: (None if isinstance(v, float) and math.isnan(v) else v)
                for k, v in row.items()
                if k
                in (
                    "rank",
                    "pool_id",
                    "count",
                    "mem_accuracy",
                    "se_accuracy",
                    "mem_bits",
                    "se_bits",
                    "tfidf",
                    "text",
                )
            }
            for row in df.head(config.top).to_dict("records")
        ],  # fmt: skip
        "shadows": str(sh.path),
        "world": sh.summary.get("world"),
    }
    rd.write_table("memorization.parquet", df)
    _plot_hist(df, rd)
    rd.write_json("memorization.json", summary)
    rd.write_manifest(
        outputs=["memorization.json", "memorization.parquet", "memorization_hist.png"]
    )
    return MemorizationResult(out=rd.path, table=df, summary=summary)


def _finite_median(values: Any) -> float | None:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else None


def _join_audit(df: Any, audit: str) -> tuple[Any, str]:
    import pandas as pd

    path = Path(audit).expanduser() / "samples.parquet"
    if not path.exists():
        raise UserError(f"{audit} is not an audit directory (no samples.parquet).")
    if "text" not in df.columns:
        raise UserError("a synthetic world has no texts to join with an audit.")
    a = pd.read_parquet(path)
    if "text" not in a.columns or "unintended_bits" not in a.columns:
        raise UserError(f"{path} has no text and unintended_bits columns.")
    a = a.drop_duplicates("text")[["text", "unintended_bits"]]
    merged = df.merge(a, on="text", how="left")
    found = int(merged["unintended_bits"].notna().sum())
    return merged, f"{found} of {len(df)} examples found in the audit {audit}"


def _plot_hist(df: Any, rd: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    unique = df["count"] == 1
    for ax, col, label in (
        (axes[0], "mem_accuracy", "counterfactual memorization (accuracy)"),
        (axes[1], "mem_bits", "counterfactual memorization (bits)"),
    ):
        lo, hi = float(df[col].min()), float(df[col].max())
        bins = np.linspace(lo, hi if hi > lo else lo + 1, 40)
        ax.hist(df.loc[unique, col], bins=bins, alpha=0.7, label="unique in the pool")
        if (~unique).any():
            ax.hist(df.loc[~unique, col], bins=bins, alpha=0.7, label="repeated in the pool")
        ax.set_xlabel(label)
        ax.set_ylabel("examples")
        ax.set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"counterfactual memorization of {len(df)} examples")
    rd.save_figure("memorization_hist.png", fig)
