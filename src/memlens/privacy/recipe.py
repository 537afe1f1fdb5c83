"""The privacy audit, as one function: :func:`run` (``memlens dp-audit``).

Read it as the experiment of Steinke, Nasr & Jagielski 2023 ("Privacy Auditing with One (1)
Training Run", arXiv:2305.08846), with the exposure of Carlini et al. 2019 ("The Secret Sharer",
arXiv:1802.08232) measured on the same canaries:

1. **Data.** Training rows of ``seq_len`` tokens from a built-in source (a seeded
   :class:`~memlens.data.synthetic.MarkovSource`, or uniform tokens) or from the user's texts
   (UTF-8 bytes, or a tokenizer; a Hugging Face model always uses its own).
2. **Canaries.** ``canaries`` random token strings of ``canary_length`` tokens (or the user's
   canary texts), each included *independently with probability ½* (seeded). An included canary
   is one training row: [BOS] + canary, filled up to ``seq_len`` tokens with data tokens that
   appear nowhere else. ``candidates`` random strings of the same format are never trained on;
   they rank the canaries for exposure.
3. **Train once per arm** from the same initialization on the same rows: an arm without DP
   and one arm per target ε with DP-SGD through Opacus (:mod:`memlens.privacy.dp`), all through
   the shared training loop (:func:`memlens.training.train`). A memlens GPT without DP trains with
   :func:`memlens.training.train_to_saturation` (a fixed step budget); every other arm with
   :func:`memlens.privacy.dp.train_rows`: Poisson-sampled batches and Opacus's DP-SGD step
   (per-sample gradients in the loop's ``backward`` hook; without clipping and noise for a
   Hugging Face model without DP). All arms take ``epochs`` epochs of ``ceil(N / batch_size)``
   steps. Trained weights are saved (safetensors) and reused when the run is repeated with the
   same ``out``.
4. **Score** every canary and candidate with the shared scoring pass
   (:func:`memlens.scoring.score_tokens`): its code length in bits and its loss in bits per
   predicted token. The membership score is minus the loss (``loss``) or the loss before
   training minus the loss after (``loss_diff``); higher means "more likely IN".
5. **Audit.** Guess IN for the k₊ highest scores and OUT for the k₋ lowest; ε̂ at
   ``confidence`` from Appendix D (:mod:`memlens.privacy.bound`), with k₊, k₋ fixed in advance,
   chosen on a split, or Bonferroni-corrected (``selection``). Reported beside the accountant's ε:
   a sound accountant never has ε below ε̂ (except with probability 1 − confidence).
6. **Exposure** of every canary: rank exposure among the candidates and the skew-normal
   extrapolation (:mod:`memlens.privacy.exposure`), for inserted and never-inserted canaries.

The steps live in :mod:`memlens.privacy.data` (1, 2), :mod:`memlens.privacy.arms` (3 to 6) and
:mod:`memlens.privacy.outputs` (the tables and the plot); ``dp_audit.json`` is
:class:`~memlens.privacy.summary.DPAuditSummary`.

Units: code lengths and exposures in bits; ε in nats (as in differential privacy).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from memlens.config import require_config
from memlens.privacy.arms import ArmResult
from memlens.privacy.canaries import Canaries
from memlens.privacy.config import DPAuditConfig
from memlens.privacy.summary import CanarySet, DPAuditSummary
from memlens.progress import ProgressFn, emit
from memlens.results import RunResult

METHOD = (
    "one-run epsilon lower bound (Steinke, Nasr & Jagielski 2023, Appendix D) and "
    "canary exposure (Carlini et al. 2019)"
)


@dataclass(repr=False)
class DPAuditResult(RunResult[DPAuditSummary]):
    """What :func:`run` returns: the typed ``dp_audit.json`` (``summary``), the run directory,
    the ``reused`` arms (trained weights taken from an earlier run), and the per-canary data:
    ``arms`` (one :class:`~memlens.privacy.arms.ArmResult` per trained model: code lengths,
    losses, scores and exposures of every canary) and the ``canaries``."""

    arms: list[ArmResult] = field(default_factory=list)
    canaries: Canaries | None = None


def _opacus_version() -> str | None:
    import importlib.metadata as md

    try:
        return md.version("opacus")
    except md.PackageNotFoundError:  # pragma: no cover
        return None


def _lora_manifest(cfg: DPAuditConfig, arms: list[ArmResult]) -> dict | None:
    """The LoRA settings and parameter counts of the arms (the same in every arm), or ``None``."""
    from memlens.privacy.arms import lora_record

    rec = lora_record(cfg)
    if rec is None:
        return None
    t = arms[0].train
    return {
        **rec,
        "trainable_parameters": t.get("trainable_parameters"),
        "total_parameters": t.get("total_parameters"),
    }


def run(
    config: DPAuditConfig,
    out: str | Path | None = None,
    *,
    progress: ProgressFn | None = None,
    backend: str = "local",
    workers: int | None = 1,
    ray_address: str | None = None,
    ray_num_cpus: float = 1,
    ray_num_gpus: float = 0,
) -> DPAuditResult:
    """Run the privacy audit described by ``config`` into the run directory ``out``.

    Every arm is a resumable cell of :func:`memlens.scale.run_stored_cells`: rerunning with the
    same ``out`` and config reuses its trained weights and only scores again
    (``DPAuditResult.reused`` names those arms). The arms train one after another in this process
    by default (``workers=1``); ``workers`` > 1 trains them in that many processes, ``backend="ray"``
    as Ray tasks (``ray_address``, ``ray_num_cpus``, ``ray_num_gpus`` per arm). Every arm seeds
    itself, so the numbers do not depend on where it trained. Bad input
    raises :class:`~memlens.errors.UserError` before anything is written; ``out=None`` writes a
    fresh timestamped directory. ``progress`` receives the tasks ``"training <arm>"`` (step of
    steps) and ``"scoring <arm>"``.

    Writes ``dp_audit.json`` (:class:`~memlens.privacy.summary.DPAuditSummary`), ``arms.csv``,
    ``canaries.parquet``, ``dp_audit.png``, ``models/<arm>/`` and ``manifest.json`` (with the
    accountant's ε and ε̂ per arm).
    """
    require_config(config, DPAuditConfig)

    from memlens.privacy.arms import (
        arm_cell,
        arm_key,
        audit_arm,
        check_stored_inputs,
        fresh_model,
        inputs_digest,
        score_bits,
        store_arm,
        stored_arm,
        trained_model,
    )
    from memlens.privacy.data import prepare
    from memlens.privacy.outputs import write_outputs
    from memlens.scale import check_backend, run_stored_cells
    from memlens.store import RunDir, default_out_dir
    from memlens.training import pick_device
    from memlens.training.devices import threads

    cfg = config
    start = time.perf_counter()
    with threads(cfg.threads or 0):
        prep = prepare(cfg, pick_device(cfg.device))
        check_backend(backend, ray_address)
        out = Path(out) if out is not None else default_out_dir(DPAuditSummary.kind)
        digest = inputs_digest(prep)
        run_dir = RunDir(out, DPAuditSummary.kind, cfg, cfg.seed)
        check_stored_inputs(run_dir, [name for name, _ in cfg.arms], digest)
        run_dir.write_manifest(status="running", inputs_sha256=digest)
        (run_dir.path / "models").mkdir(exist_ok=True)
        base_bits = None
        if cfg.score == "loss_diff":  # the same initial model for every arm
            init = fresh_model(cfg, prep.vocab, prep.device) if prep.is_gpt else prep.hf_model
            base_bits, _ = score_bits(
                init, prep.canary_seqs, is_gpt=prep.is_gpt, device=prep.device,
                batch_size=cfg.batch_size_scoring,
            )  # fmt: skip
        prep.hf_model = None
        done = run_stored_cells(
            run_dir,
            [(arm_key(name), arm_cell, (cfg, prep, name, eps, digest)) for name, eps in cfg.arms],
            load=lambda key: stored_arm(run_dir, key),
            save=lambda key, result: store_arm(cfg, prep, run_dir, key, result),
            progress=progress,
            backend=backend,
            workers=workers,
            ray_address=ray_address,
            ray_num_cpus=ray_num_cpus,
            ray_num_gpus=ray_num_gpus,
        )
        arms: list[ArmResult] = []
        for (name, eps), cell in zip(cfg.arms, done.results, strict=True):
            stats = cell if arm_key(name) in done.reused else cell["stats"]
            model = trained_model(prep, run_dir, name, cfg)
            emit(progress, f"scoring {name}", 0, 1)
            reused = arm_key(name) in done.reused
            arms.append(audit_arm(cfg, prep, model, name, eps, stats, reused, base_bits))
            emit(progress, f"scoring {name}", 1, 1)
            del model
        c = prep.canaries
        summary = DPAuditSummary(
            method=METHOD,
            units="epsilon in nats; code lengths, losses and exposures in bits",
            canaries=CanarySet(
                kind=c.kind,
                m=c.m,
                n_included=c.n_included,
                length_tokens=int(np.median([len(t) for t in c.tokens])),
                n_candidates=0 if c.candidates is None else len(c.candidates),
                inclusion="each independently with probability 1/2 (seeded)",
            ),
            score=cfg.score,
            delta=cfg.dp_delta,
            confidence=cfg.confidence,
            selection=cfg.selection,
            data={
                **prep.data.info,
                "n_training_rows": int(len(prep.rows)),
                "tokens": prep.vocab.describe,
            },
            arms={a.name: a.summary() for a in arms},
            seconds=time.perf_counter() - start,
        )
        write_outputs(run_dir, summary, c, arms)
        reused_arms = [a.name for a in arms if a.reused]
        run_dir.write_manifest(
            status="finished",
            inputs_sha256=digest,
            backend=backend,
            opacus=_opacus_version(),
            accountant_epsilon={a.name: a.epsilon_spent for a in arms},
            epsilon_lower_bound={a.name: a.audit.epsilon_lower_bound for a in arms},
            reused_arms=reused_arms,
            lora=_lora_manifest(cfg, arms),
            seconds=summary.seconds,
        )
        return DPAuditResult(
            summary=summary, out_dir=run_dir.path, reused=reused_arms, arms=arms, canaries=c
        )
