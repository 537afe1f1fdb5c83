"""``memlens shadow train``: a candidate pool, a balanced keep matrix, K shadow GPTs.

:func:`train` builds the world (:mod:`memlens.shadow.world`), draws the balanced keep matrix
(:mod:`memlens.shadow.design`), trains the K models as batched stacks (the training cell
:func:`memlens.shadow.train.train_stack`, one resumable cell per stack over the local or Ray
backend of :func:`memlens.scale.run_stored_cells`), scores the whole pool once per stack and gathers the
stacks' arrays into the shadows directory (:mod:`memlens.shadow.directory`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from memlens.errors import UserError
from memlens.progress import ProgressFn
from memlens.results import RunResult
from memlens.shadow.config import ShadowTrainConfig
from memlens.shadow.summary import ShadowTrainSummary


def build_pool(config: ShadowTrainConfig) -> Any:
    """The world of ``config`` (a :class:`memlens.shadow.world.Pool`)."""
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


def _stack_info(res: dict[str, Any], fingerprint: str) -> dict[str, Any]:
    """What a finished stack's cell records (its arrays are stored beside it)."""
    return {
        "models": res["models"],
        "fingerprint": fingerprint,
        "steps": res["steps"],
        "train_seconds": res["train_seconds"],
        "score_seconds": res["score_seconds"],
    }


def _check_candidates(pool: Any, split_by: str) -> None:
    """Refuse a pool whose population leaves fewer than 2 candidates (or distinct candidate
    texts, split by text) to split into halves, saying that the population took the rest."""
    from memlens.shadow.design import copy_groups

    cand = pool.candidates
    n_pop = int(pool.population.sum())
    if n_pop == 0:
        return  # the design's own checks say what is missing
    if split_by == "text":
        n = int(np.unique(copy_groups(pool.tokens[cand], pool.lengths[cand])).size)
        what = "distinct text" if n == 1 else "distinct texts"
    else:
        n = int(cand.size)
        what = "example" if n == 1 else "examples"
    if n < 2:
        raise UserError(
            f"holding out {n_pop} of the pool's {len(pool.lengths)} examples as the population "
            f"leaves {n} {what} to split into halves (at least 2 needed); lower "
            "`population_frac` or add examples."
        )


def _stack_seed(seed: int, index: int) -> int:
    return int(seed) * 1_000_003 + 7919 * (index + 1)


def train(
    config: ShadowTrainConfig, out: str | Path | None = None, *, progress: ProgressFn | None = None
) -> RunResult[ShadowTrainSummary]:
    """Train the K shadow models of ``config`` into ``out`` (see :mod:`memlens.shadow.directory`).

    ``progress`` receives the task ``"stack i"`` (step of steps) during training. Rerunning with
    the same ``out`` reuses every finished stack (``RunResult.reused`` names them); a directory
    that holds shadows of another pool is refused. ``out=None`` writes a fresh timestamped one.
    """
    from memlens.models.gpt import GPT
    from memlens.models.hf import save_gpt_checkpoint
    from memlens.scale import check_backend, run_stored_cells
    from memlens.shadow.design import balanced_keep, check_design, copy_groups, text_keep
    from memlens.shadow.train import stack_layout, train_stack
    from memlens.store import RunDir, default_out_dir

    t_start = time.perf_counter()
    check_backend(config.backend, config.ray_address, config.device)
    pool = build_pool(config)
    K = config.n_models
    cand = pool.candidates
    _check_candidates(pool, config.split_by)
    check_design(K, len(cand))
    if config.split_by == "text":
        keep = text_keep(K, copy_groups(pool.tokens[cand], pool.lengths[cand]), config.seed)
    else:
        keep = balanced_keep(K, len(cand), config.seed)
    gcfg = config.gpt_config(pool.vocab_size)
    tcfg = config.train_config()
    fp = pool.fingerprint()
    out = Path(out) if out is not None else default_out_dir("shadow-train")
    if (out / "manifest.json").exists():
        world = (
            json.loads((out / "cells" / "world.json").read_text())
            if (out / "cells" / "world.json").exists()
            else None
        )
        if world is not None and world.get("fingerprint") != fp:
            raise UserError(
                f"{out} holds shadow models trained on another pool; use a new `out` directory."
            )
    rd = RunDir(out, ShadowTrainSummary.kind, config.run_identity(), config.seed)
    if rd.load_cell("world") is None:
        _write_world(rd, pool, keep)
        rd.save_cell("world", {"fingerprint": fp, "pool_sha256": pool.pool_sha256})
    rd.write_manifest(status="running")

    layout = stack_layout(K, config.models_per_stack)
    first_bits = pool.meta.get("first_token_bits", 0.0)
    keys = [f"stack-{i}" for i in range(len(layout))]

    def job(i: int, models: list[int]) -> dict[str, Any]:
        return {
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

    def load(key: str) -> dict[str, Any] | None:
        """A finished stack of this pool and layout (its cell and its arrays), else None."""
        cell = rd.load_cell(key)
        models = layout[keys.index(key)]
        if (
            cell is not None
            and cell.get("fingerprint") == fp
            and cell.get("models") == models
            and rd.load_arrays(key) is not None
        ):
            return cell
        return None

    def save(key: str, res: dict[str, Any]) -> None:
        if not res["finite"]:
            raise UserError(
                f"shadow {key.replace('-', ' ')} produced NaN or infinite log-probabilities; "
                "lower `lr`."
            )
        stack = GPT(gcfg, n_models=len(res["models"]))
        stack.load_state_dict(res["state"])
        for pos, k in enumerate(res["models"]):
            save_gpt_checkpoint(stack, rd.path / "models" / f"model_{k:02d}", pos, pool.tokenizer)
        rd.save_arrays(
            key,
            {
                **res["signals"],
                "log2p": res["log2p"],
                "mu_log2p": res["mu_log2p"],
                "sigma_log2p": res["sigma_log2p"],
            },
        )
        rd.save_cell(key, _stack_info(res, fp))

    done = run_stored_cells(
        rd, [(key, train_stack, (job(i, models),)) for i, (key, models) in enumerate(
            zip(keys, layout, strict=True))],
        load=load, save=save, progress=progress, backend=config.backend, workers=config.workers,
        ray_address=config.ray_address, ray_num_cpus=config.ray_num_cpus,
        ray_num_gpus=config.ray_num_gpus,
    )  # fmt: skip
    stacks = [
        {**(r if key in done.reused else _stack_info(r, fp)), "index": i,
         "reused": key in done.reused}
        for i, (key, r) in enumerate(zip(keys, done.results, strict=True))
    ]  # fmt: skip

    summary = _assemble(rd, pool, keep, layout, config, gcfg, stacks, fp)
    summary.seconds_this_invocation = time.perf_counter() - t_start
    rd.write_json(summary.file, summary.to_json())
    rd.write_manifest(
        status="finished",
        outputs=["shadow.json", "pool.parquet", "keep.npy", "signals.npz", "models/"],
        backend=config.backend,
    )
    reused = [f"stack {s['index']}" for s in stacks if s["reused"]]
    return RunResult(summary=summary, out_dir=rd.path, reused=reused)


def _assemble(rd, pool, keep, layout, config, gcfg, stacks, fp) -> ShadowTrainSummary:
    """Gather the stacks' arrays into signals.npz and token_scores.npz; the summary."""
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
    warnings = []
    want = int(round(config.population_frac * N))
    if len(popi) < want:
        n_once = int((pool.counts == 1).sum())
        warnings.append(
            f"the population holds {len(popi)} of the {want} examples asked for: it is drawn "
            f"among the examples whose text occurs once in the pool, and {n_once} do"
            + ("; the attacks need one for RMIA" if len(popi) == 0 else "")
        )
    train_s = [float(s.get("train_seconds", 0.0)) for s in stacks]
    score_s = [float(s.get("score_seconds", 0.0)) for s in stacks]
    return ShadowTrainSummary(
        world=pool.source,
        synthetic=config.synthetic,
        fingerprint=fp,
        pool_sha256=pool.pool_sha256,
        n_models=K,
        n_examples=N,
        n_candidates=int(len(cand)),
        n_population=int(len(popi)),
        n_repeated_examples=int((pool.counts[cand] > 1).sum()),
        split_by=config.split_by,
        vocab_size=pool.vocab_size,
        seq_len=config.seq_len,
        shape=gcfg.to_dict(),
        n_params_per_model=gcfg.n_params,
        steps=config.steps,
        stacks=[
            {
                k: s[k]
                for k in ("index", "models", "reused", "train_seconds", "score_seconds")
                if k in s
            }
            for s in stacks
        ],
        models_per_stack=config.models_per_stack,
        train_seconds_total=float(sum(train_s)),
        score_seconds_total=float(sum(score_s)),
        in_bits_per_token=in_bits,
        out_bits_per_token=out_bits,
        mean_in_bits_per_token=float(np.mean(in_bits)),
        mean_out_bits_per_token=float(np.mean(out_bits)),
        units="bits (log base 2); signals per model and candidate example",
        first_token=(
            "BOS prepended, free; every text token predicted"
            if pool.texts is not None
            else "first token coded uniformly by every model (log2 V bits), not scored"
        ),
        warnings=warnings,
    )
