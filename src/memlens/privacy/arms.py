"""The arms of a privacy audit: one model trained per target ε, scored and audited.

Every arm starts from the same initialization (:func:`fresh_model`: a seeded memlens GPT, or
the Hugging Face model as loaded) and trains on the same rows (:func:`train_arm`) through the
shared training loop (:func:`memlens.training.train`): a memlens GPT without DP by
:func:`memlens.training.train_to_saturation` (a fixed step budget, random permutations); every
other arm by :func:`memlens.privacy.dp.train_rows` (Poisson-sampled batches, Opacus's DP-SGD step
through the loop's ``backward`` hook; plain Adam for a Hugging Face model without DP).
Each arm is a resumable cell of :func:`memlens.scale.run_stored_cells` (:func:`arm_cell`;
its weights saved as safetensors by :func:`store_arm`).
:func:`audit_arm` scores the canaries and candidates with the shared scoring pass
(:func:`score_bits`), guesses, bounds ε (:func:`memlens.privacy.bound.audit_scores`) and
measures exposure (:mod:`memlens.privacy.exposure`). Units: ε in nats; code lengths, losses and
exposures in bits.
"""

from __future__ import annotations

import contextlib
import math
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from memlens.errors import UserError
from memlens.privacy.bound import CanaryAudit, audit_scores
from memlens.privacy.config import DPAuditConfig
from memlens.privacy.data import Prepared, Vocab
from memlens.privacy.summary import ArmSummary
from memlens.progress import ProgressFn, emit


@dataclass
class ArmResult:
    """One trained model and its audit (ε in nats, code lengths and exposures in bits)."""

    name: str
    epsilon_target: float | None
    train: dict[str, Any]
    included: np.ndarray
    audit: CanaryAudit
    exposure: dict[str, Any] | None
    canary_bits: np.ndarray
    canary_loss: np.ndarray
    scores: np.ndarray
    rank_exposure: np.ndarray | None = None
    extrapolated_exposure: np.ndarray | None = None
    candidate_bits: np.ndarray | None = None
    reused: bool = False

    @property
    def epsilon_spent(self) -> float | None:
        return self.train.get("epsilon_spent")

    def summary(self) -> ArmSummary:
        """The arm's entry of ``dp_audit.json``."""
        inc = self.included
        return ArmSummary(
            name=self.name,
            dp=self.epsilon_target is not None,
            epsilon_target=self.epsilon_target,
            accountant_epsilon=self.epsilon_spent,
            epsilon_lower_bound=self.audit.epsilon_lower_bound,
            audit=self.audit,
            exposure=self.exposure,
            mean_loss_inserted_bits_per_token=float(self.canary_loss[inc].mean())
            if inc.any()
            else None,
            mean_loss_not_inserted_bits_per_token=float(self.canary_loss[~inc].mean())
            if (~inc).any()
            else None,
            train=self.train,
            reused_weights=self.reused,
        )


# -- models -------------------------------------------------------------------------------------


def _gpt_config(cfg: DPAuditConfig, vocab_size: int) -> Any:
    from memlens.models.gpt import GPTConfig

    return GPTConfig(vocab_size, cfg.seq_len, cfg.n_layer, cfg.d_model, cfg.n_head)


def fresh_model(cfg: DPAuditConfig, vocab: Vocab, device: Any) -> Any:
    """The initial model of every arm: a seeded GPT, or the Hugging Face model as loaded; with
    LoRA (``cfg.lora``) that model wrapped in a fresh adapter initialized under ``cfg.seed``
    (:func:`memlens.models.finetune.attach_lora`: the base frozen, only the adapter trainable),
    the same in every arm."""
    import torch

    if cfg.model is None:
        from memlens.models.gpt import GPT

        g = torch.Generator().manual_seed(cfg.seed)
        return GPT(_gpt_config(cfg, vocab.size), n_models=1, generator=g).to(device)
    return _fresh_hf(cfg, device)[1]


def _fresh_hf(cfg: DPAuditConfig, device: Any) -> tuple[Any, Any]:
    """The loaded :class:`~memlens.models.hf.CausalLM` (its ``model`` the base) and the model to
    train: the base itself, or the base wrapped in a fresh seeded LoRA adapter."""
    import torch

    from memlens.models.hf import load_causal_lm

    lm = load_causal_lm(cfg.model, device=str(device), dtype="float32")
    if cfg.lora is None:
        return lm, lm.model
    from memlens.models.finetune import attach_lora

    # the seeded initialization leaves torch's RNG as it was
    with torch.random.fork_rng(devices=[]):
        return lm, attach_lora(lm.model, cfg.lora, name=str(cfg.model))


def parameter_counts(model: Any) -> dict[str, int]:
    """``{"trainable_parameters": ..., "total_parameters": ...}`` of ``model`` (trainable: the
    parameters with ``requires_grad``, all that DP-SGD clips and noises; with LoRA, the adapter's;
    total: every parameter, the adapter's included)."""
    params = list(model.parameters())
    return {
        "trainable_parameters": int(sum(p.numel() for p in params if p.requires_grad)),
        "total_parameters": int(sum(p.numel() for p in params)),
    }


def lora_record(cfg: DPAuditConfig) -> dict[str, Any] | None:
    """The LoRA settings of the arms as recorded in the stats and the manifest (``None``: none)."""
    s = cfg.lora
    if s is None:
        return None
    targets = s.target_modules if isinstance(s.target_modules, str) else list(s.target_modules)
    return {
        "r": s.r,
        "alpha": s.alpha,
        "target_modules": targets,
        "last_layers": s.last_layers,
        "dropout": s.dropout,
        "init_seed": s.seed,
    }


@contextlib.contextmanager
def _no_hf_bars() -> Iterator[None]:
    """No "Writing model shards" / "Loading weights" bars from transformers in memlens output."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def _save_weights(model: Any, path: Path, is_gpt: bool) -> None:
    """Save trained weights (safetensors) into ``path`` atomically (a temporary directory renamed)."""
    import os

    tmp = path.parent / f".{path.name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    if is_gpt:
        from memlens.models.hf import save_gpt_checkpoint

        save_gpt_checkpoint(model, tmp)
    else:
        with _no_hf_bars():
            model.save_pretrained(tmp, safe_serialization=True)
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)


def _save_lora(lm: Any, model: Any, path: Path) -> None:
    """Save a trained LoRA adapter (``adapter_model.safetensors``, ``adapter_config.json`` and the
    base's fingerprint, :func:`memlens.models.adapters.save_adapter`) into ``path`` atomically."""
    import os

    from memlens.models.adapters import save_adapter
    from memlens.privacy.dp import quiet

    tmp = path.parent / f".{path.name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    with quiet(), _no_hf_bars():
        save_adapter(model, tmp, lm)
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)


def _load_weights(
    path: Path, is_gpt: bool, device: Any, cfg: DPAuditConfig | None = None
) -> Any | None:
    try:
        if cfg is not None and cfg.lora is not None:  # base + the arm's adapter, merged
            from memlens.models.hf import load_causal_lm
            from memlens.privacy.dp import quiet

            with quiet(), _no_hf_bars():
                lm = load_causal_lm(cfg.model, device=str(device), dtype="float32", adapter=path)
            return lm.model.eval()
        if is_gpt:
            from memlens.models.hf import load_gpt_checkpoint

            return load_gpt_checkpoint(path).to(device).eval()
        from transformers import AutoModelForCausalLM

        from memlens.privacy.dp import quiet

        with quiet(), _no_hf_bars():
            return AutoModelForCausalLM.from_pretrained(path, dtype="float32").to(device).eval()
    except (UserError, OSError, ValueError, RuntimeError):
        return None


# -- scoring ------------------------------------------------------------------------------------


def score_bits(
    model: Any, seqs: list[np.ndarray], *, is_gpt: bool, device: Any, batch_size: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """Code length in bits of the predicted tokens of each sequence and their number, through the
    shared scoring pass (:func:`memlens.scoring.score_tokens` for a memlens GPT, one model on a
    leading axis; :func:`memlens.models.hf.score_sequences` for a Hugging Face model)."""
    import torch

    from memlens.scoring import gpt_forward, hf_forward, score_sequences, score_tokens

    model.eval()
    if is_gpt:
        lengths = np.array([len(s) for s in seqs], dtype=np.int64)
        T = int(lengths.max())
        ids = np.zeros((len(seqs), T), dtype=np.int64)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = s
        sc = score_tokens(
            gpt_forward(model),
            torch.from_numpy(ids)[None],
            lengths,
            batch_size=batch_size,
            device=device,
        )
        return sc.nll_bits[0], sc.n_predicted[0]
    sc = score_sequences(hf_forward(model), seqs, batch_size=batch_size, device=device)
    return sc.nll_bits, sc.n_predicted


# -- training (all through memlens.training.train: DP-SGD on Poisson batches, or plain) ---------


def train_arm(
    cfg: DPAuditConfig,
    model: Any,
    rows: np.ndarray,
    epsilon: float | None,
    device: Any,
    is_gpt: bool,
    progress: Callable[[int, int], None] | None,
) -> dict[str, Any]:
    import torch

    from memlens.privacy.dp import DPSettings, train_rows

    N = len(rows)
    steps_per_epoch = math.ceil(N / min(cfg.batch_size, N))
    tokens = torch.from_numpy(rows)
    if epsilon is None and is_gpt:
        # The shared training loop, for a fixed budget of the same number of steps.
        from memlens.training import SaturationConfig, train_to_saturation
        from memlens.units import uniform_entropy_bits

        steps = cfg.epochs * steps_per_epoch
        tc = SaturationConfig(
            lr=cfg.lr,
            batch_size=min(cfg.batch_size, N),
            max_steps=steps,
            min_steps=steps,
            warmup_steps=max(cfg.warmup_steps, 1),
            eval_every=steps,
            decay_frac=0.0,
        )
        V = model.config.vocab_size
        res = train_to_saturation(
            model,
            tokens[None],
            [N],
            tc,
            entropy_bits=uniform_entropy_bits(cfg.seq_len, V),
            first_token_bits=math.log2(V),
            seed=cfg.seed,
            device=device,
            progress=(lambda e: progress(int(e.completed), steps)) if progress else None,
        )
        model.eval()
        nll = res.final_nll_bits[0]
        return {
            "steps": res.steps,
            "epochs": cfg.epochs,
            "seconds": res.seconds,
            "private": False,
            "expected_batch_size": min(cfg.batch_size, N),
            "sample_rate": None,
            "final_loss_bits_per_token": float(nll.sum() / (N * cfg.seq_len)),
            "loop": "memlens.training.train_to_saturation (fixed budget, random permutations)",
            **parameter_counts(model),
            "lora": None,
        }
    dp = None
    if epsilon is not None:
        dp = DPSettings(epsilon, cfg.dp_delta, cfg.max_grad_norm, cfg.accountant)
    counts = parameter_counts(model)
    stats = train_rows(
        model,
        tokens,
        torch.full((N,), rows.shape[1]),
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        dp=dp,
        warmup_steps=cfg.warmup_steps,
        physical_batch_size=cfg.physical_batch_size,
        seed=cfg.seed,
        device=device,
        progress=progress,
    )
    return {**stats.to_dict(), **counts, "lora": lora_record(cfg)}


# -- one arm: trained weights (a resumable cell), then its audit ----------------------------------


def arm_cell(
    cfg: DPAuditConfig,
    prep: Prepared,
    name: str,
    epsilon: float | None,
    inputs_sha256: str | None = None,
    *,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """One arm as a cell of :func:`memlens.scale.run_stored_cells`: trained from the shared
    initialization; returns its training stats and its weights (a ``torch.save``'d state dict as
    bytes, only the adapter's with LoRA, so that no filesystem is shared with the worker process
    or Ray node that trained it)."""
    import io

    import torch

    model = fresh_model(cfg, prep.vocab, prep.device)

    def tick(done: int, total: int) -> None:
        emit(progress, f"training {name}", done, total)

    stats = train_arm(cfg, model, prep.rows, epsilon, prep.device, prep.is_gpt, tick)
    if inputs_sha256 is not None:  # what it trained on (:func:`inputs_digest`), for reruns
        stats["inputs_sha256"] = inputs_sha256
    if cfg.lora is not None:  # only the adapter's weights: the base is the one loaded
        from peft import get_peft_model_state_dict

        state = get_peft_model_state_dict(model)
    else:
        state = model.state_dict()
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in state.items()}, buf)
    return {"stats": stats, "weights": buf.getvalue()}


def inputs_digest(prep: Prepared) -> str:
    """SHA-256 (16 hex digits) of what an arm is trained and audited on: the training rows
    (canary rows included), every canary's tokens and inclusion coin, and for a Hugging Face
    model the fingerprint of its input embedding (:func:`memlens.models.adapters.base_fingerprint`).

    The config names files (``train``, ``canary_file``, ``model``), not their contents: a file
    edited between two runs into the same ``out`` leaves the config unchanged, so the stored arms
    carry this digest and are reused only when it matches (:func:`check_stored_inputs`).
    """
    import hashlib

    h = hashlib.sha256(repr(prep.rows.shape).encode())
    h.update(np.ascontiguousarray(prep.rows, dtype=np.int64).tobytes())
    h.update(np.asarray(prep.canaries.included, dtype=np.uint8).tobytes())
    for t in prep.canaries.tokens:
        h.update(np.asarray(t, dtype=np.int64).tobytes())
        h.update(b"|")
    if prep.hf_model is not None:
        from memlens.models.adapters import base_fingerprint

        h.update(base_fingerprint(prep.hf_model).encode())
    return h.hexdigest()[:16]


def check_stored_inputs(run_dir: Any, names: list[str], digest: str) -> None:
    """Raise :class:`UserError` if an arm stored in ``run_dir`` was trained on other inputs
    (training rows, canaries, their coins or the starting model) than ``digest`` describes."""
    for name in names:
        stats = run_dir.load_cell(arm_key(name))
        old = None if stats is None else stats.get("inputs_sha256")
        if old is not None and old != digest:
            raise UserError(
                f"{run_dir.path} holds arm {name} trained on other training rows, canaries or "
                f"starting model (a file changed under the same name: inputs {old} there, "
                f"{digest} now); use a new `out` directory."
            )


def arm_key(name: str) -> str:
    """The stored cell of arm ``name`` (its weights are in ``models/<name>/``)."""
    return f"arm-{name}"


def store_arm(cfg: DPAuditConfig, prep: Prepared, run_dir: Any, key: str, result: dict) -> None:
    """Save a finished :func:`arm_cell`: its weights (safetensors, atomically; with LoRA the
    adapter only, a PEFT adapter directory over the base) into ``models/<name>/``, then its cell (a cell means "weights complete")."""
    import io

    import torch

    name = key.removeprefix("arm-")
    state = torch.load(io.BytesIO(result["weights"]), map_location="cpu", weights_only=True)
    path = run_dir.path / "models" / name
    if cfg.lora is not None:
        from peft import set_peft_model_state_dict

        lm, model = _fresh_hf(cfg, torch.device("cpu"))
        set_peft_model_state_dict(model, state)
        _save_lora(lm, model, path)
    else:
        model = fresh_model(cfg, prep.vocab, torch.device("cpu"))
        model.load_state_dict(state)
        _save_weights(model, path, prep.is_gpt)
    run_dir.save_cell(key, result["stats"])


def stored_arm(run_dir: Any, key: str) -> dict[str, Any] | None:
    """A finished arm's cell, when its weights are there too (written before the cell,
    atomically); else ``None`` (the arm trains)."""
    stats = run_dir.load_cell(key)
    path = run_dir.path / "models" / key.removeprefix("arm-")
    return stats if stats is not None and path.is_dir() and any(path.iterdir()) else None


def trained_model(prep: Prepared, run_dir: Any, name: str, cfg: DPAuditConfig | None = None) -> Any:
    """The trained model of arm ``name``, read back from the run directory for scoring (with
    LoRA: the base with the arm's adapter merged into it)."""
    path = run_dir.path / "models" / name
    model = _load_weights(path, prep.is_gpt, prep.device, cfg)
    if model is None:
        raise UserError(
            f"the saved weights of arm {name} in {path} cannot be read; delete that directory to "
            "train the arm again."
        )
    return model


def audit_arm(
    cfg: DPAuditConfig,
    prep: Prepared,
    model: Any,
    name: str,
    epsilon: float | None,
    stats: dict[str, Any],
    reused: bool,
    base_bits: np.ndarray | None,
) -> ArmResult:
    """Score the canaries (and candidates), guess, bound ε and measure exposure for one model."""
    from memlens.privacy.exposure import (
        MIN_DISTINCT,
        exposure_summary,
        extrapolated_exposure,
        rank_exposure,
    )

    kw = dict(is_gpt=prep.is_gpt, device=prep.device, batch_size=cfg.batch_size_scoring)
    bits, n_pred = score_bits(model, prep.canary_seqs, **kw)
    loss = bits / np.maximum(n_pred, 1)  # bits per predicted token
    scores = -loss if base_bits is None else base_bits / np.maximum(n_pred, 1) - loss
    k_in, k_out = cfg.guess_counts(prep.canaries.m)
    audit = audit_scores(
        scores,
        prep.canaries.included,
        delta=cfg.dp_delta,
        confidence=cfg.confidence,
        selection=cfg.selection,
        k_in=k_in,
        k_out=k_out,
        seed=cfg.seed,
    )
    arm = ArmResult(
        name=name,
        epsilon_target=epsilon,
        train=stats,
        included=prep.canaries.included,
        audit=audit,
        exposure=None,
        canary_bits=bits,
        canary_loss=loss,
        scores=scores,
        reused=reused,
    )
    if prep.candidate_seqs:
        cbits, _ = score_bits(model, prep.candidate_seqs, **kw)
        arm.candidate_bits = cbits
        arm.rank_exposure = rank_exposure(bits, cbits)
        fit_note: dict[str, Any] = {}
        distinct = len(np.unique(cbits))
        if distinct >= MIN_DISTINCT:
            ext, fit = extrapolated_exposure(bits, cbits)
            fit_note["skew_normal"] = fit.to_dict()
        else:  # e.g. a model predicting every candidate token alike: no spread to fit
            ext = np.full(len(bits), np.nan)
            fit_note["skew_normal"] = None
            fit_note["extrapolated_note"] = (
                f"every candidate has the same code length ({cbits[0]:.4g} bits) under this "
                "model, so no skew-normal can be fitted; only rank exposure is given"
                if distinct == 1
                else f"the candidates' code lengths take only {distinct} different values under "
                f"this model (a skew-normal fit needs {MIN_DISTINCT}); only rank exposure is given"
            )
        arm.extrapolated_exposure = ext
        arm.exposure = {
            **exposure_summary(arm.rank_exposure, ext, prep.canaries.included, len(cbits)),
            **fit_note,
        }
    return arm
