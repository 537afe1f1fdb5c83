"""``memlens shadow attack``: LiRA and RMIA on the shadows, beside the reference-free baselines.

:func:`attack` runs the attacks of :mod:`memlens.shadow.attacks` (online and offline) and the
baselines of :mod:`memlens.mia.attacks` on the same targets, either leave-one-model-out over the
shadows or against a user's target model, evaluates them with
:func:`memlens.mia.metrics.evaluate_attacks` and writes ``mia.json`` in the schema of
``memlens mia`` (:class:`~memlens.shadow.summary.ShadowAttackSummary`), ``scores.parquet`` and a
log-log ROC plot. Everything is computed before the run directory is created.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from memlens.errors import UserError
from memlens.progress import ProgressFn, emit
from memlens.results import RunResult
from memlens.shadow.attacks import SHADOW_ATTACKS, AttackSettings
from memlens.shadow.config import ShadowAttackConfig
from memlens.shadow.directory import Shadows, check_pool, load_shadows
from memlens.shadow.summary import ShadowAttackSummary

UNITS = "bits (log base 2); LiRA scores in nats of likelihood ratio, RMIA in fractions of Z"


@dataclass(repr=False)
class ShadowAttackResult(RunResult[ShadowAttackSummary]):
    """The typed ``mia.json`` (``summary``), the run directory, and ``scores``: the
    per-(target, example) table of ``scores.parquet`` (a pandas DataFrame)."""

    scores: Any = None


def attack(
    config: ShadowAttackConfig, out: str | Path | None = None, *, progress: ProgressFn | None = None
) -> ShadowAttackResult:
    """Run the shadow attacks and write ``mia.json``, ``scores.parquet`` and ``roc.png``.

    Leave-one-model-out (no ``target``): each shadow ``t`` in turn is the target; its references
    are the other shadows except its pair partner (:func:`memlens.shadow.design.references_for`),
    so every example has ``K/2 - 1`` IN and ``K/2 - 1`` OUT references. The ``K`` ROC problems
    are **pooled**: the scores of every (target, candidate) pair form one ROC with
    ``K * n / 2`` members and as many non-members under ``membership="copy"`` (each target's
    labels are its keep row). Under ``membership="text"`` (the default) a copy of a text that
    occurs several times is a member of every target that trained on any of its copies
    (:func:`memlens.shadow.design.text_membership`), the convention of the target mode; the
    references' IN and OUT stay per copy (the balanced design). Per-target AUCs are reported alongside (mean and standard deviation). A low-FPR
    TPR pooled over targets is not calibrated per example (Concepts §8, docs/concepts.md).
    ``progress`` receives the task ``"targets"``.

    With a ``target``: the user's model is scored on its member and non-member texts (texts of
    the shadows' pool) and on the population, in one pass; all shadows are its references, except
    when the target is itself one of them (its log-likelihoods reproduce that shadow's): then it
    and its pair partner are left out, as in leave-one-model-out (``target_shadow``).
    """
    sh = load_shadows(config.shadows)
    check_pool(sh, config.pool, config.text_column)
    if config.target is not None:
        return _target_attack(config, sh, out)
    return _leave_one_out(config, sh, out, progress)


def _evaluate(
    config: ShadowAttackConfig, scores: dict[str, np.ndarray], labels: np.ndarray, **fields: Any
) -> ShadowAttackSummary:
    """Metrics of every attack (one NaN policy for all) as the typed ``mia.json``."""
    from memlens.mia.metrics import evaluate_attacks

    evaluation = evaluate_attacks(
        scores,
        labels,
        ids=fields.pop("ids", None),
        fprs=config.fprs,
        n_boot=config.n_boot,
        level=config.level,
        seed=config.seed,
    )
    n1 = int(labels.sum())
    by = {a for u in evaluation.unscored for a in u.get("attacks", [])}
    if by and by <= set(config.baselines):
        # Only baselines left these samples unscored (Min-K% on texts of fewer than 1/k
        # predicted tokens), yet the common evaluation drops them from LiRA and RMIA too.
        evaluation.warnings.append(
            f"the {len(evaluation.unscored)} unscored samples were left out by the baseline(s) "
            f"{', '.join(sorted(by))} alone (Min-K% needs at least 1/k predicted tokens, "
            f"k = {config.k:g}), which also removes them from LiRA and RMIA; `baselines` without "
            "them, or a larger `k`, keeps them."
        )
    if "zlib" in config.baselines and "zlib" not in scores:
        evaluation.warnings.append(
            "the zlib baseline is left out: it compresses each example's text, and these shadows "
            "were trained on a synthetic source of token ids that has none."
        )
    st = config.settings
    for name in ("rmia_online", "rmia_offline"):
        v = np.asarray(scores.get(name, []), dtype=np.float64)
        v = v[np.isfinite(v)]
        if v.size and not v.any():
            op = ">=" if st.gamma_compare == "ge" else ">"
            generic = f"attack {name!r} gave every sample the same score"
            evaluation.warnings = [w for w in evaluation.warnings if not w.startswith(generic)]
            evaluation.warnings.append(
                f"{name}: no pair of a sample x and a population sample z reached "
                f"LR(x, z) {op} gamma = {st.gamma:g}, so every score is 0 (the target's "
                "probabilities are within that factor of the references' mean, as for shadows "
                "that barely learned their halves); a lower `gamma` counts smaller ratios "
                "(1 is the Privacy Meter tool's)."
            )
    return ShadowAttackSummary(
        **dict(evaluation),
        n_members=n1,
        n_nonmembers=int(labels.size - n1),
        k=config.k,
        settings=config.settings.model_dump(),
        units=UNITS,
        **fields,
    )


def _write(
    config: ShadowAttackConfig,
    out: str | Path | None,
    summary: ShadowAttackSummary,
    scores: dict[str, np.ndarray],
    labels: np.ndarray,
    table: Any,
) -> ShadowAttackResult:
    from memlens.mia.plots import plot_roc
    from memlens.store import RunDir, default_out_dir

    out = Path(out) if out is not None else default_out_dir(ShadowAttackSummary.kind)
    rd = RunDir(out, ShadowAttackSummary.kind, config, config.seed)
    rd.write_table("scores.parquet", table)
    plot_roc(scores, labels, rd, summary, each=False)
    rd.write_json(summary.file, summary.to_json())
    rd.write_manifest(outputs=["mia.json", "scores.parquet", "roc.png"])
    return ShadowAttackResult(summary=summary, out_dir=rd.path, scores=table)


def _check_out(config: ShadowAttackConfig, out: str | Path | None) -> None:
    """Fail now, not after the work, if ``out`` holds another run."""
    from memlens.store import RunDir

    if out is not None and (Path(out) / "manifest.json").exists():
        RunDir(out, ShadowAttackSummary.kind, config, config.seed)


def _baseline_scores(
    names: list[str], ts: Any, texts: list[str] | None, bits: np.ndarray, k: float
) -> dict[str, np.ndarray]:
    from memlens.mia.attacks import AttackInputs, compute_attacks

    names = [n for n in names if n != "zlib" or texts is not None]
    inputs = AttackInputs(target=ts, texts=texts, target_bits=bits, k=k)
    return compute_attacks(names, inputs)


def _rmia_lp(sig: Any, st: AttackSettings) -> np.ndarray:
    from memlens.shadow.attacks import rmia_signal

    return rmia_signal(sig, st.rmia_signal)


def _leave_one_out(
    config: ShadowAttackConfig, sh: Shadows, out: str | Path | None, progress: ProgressFn | None
) -> ShadowAttackResult:
    import pandas as pd

    from memlens.mia.metrics import roc_auc
    from memlens.shadow.attacks import attack_target, calibrate_offline_a, fit_online_a
    from memlens.shadow.design import first_copies, references_for, text_membership

    K = sh.n_models
    if K < 6:
        raise UserError(
            f"leave-one-model-out attacks need at least 6 shadow models (each target keeps K - 2 "
            f"references, two IN and two OUT per example), got {K}."
        )
    _check_out(config, out)
    st = config.settings
    keep = sh.keep
    n = keep.shape[1]
    lp_c = _rmia_lp(sh.signals, st)
    lp_z = _rmia_lp(sh.z_signals, st)
    if lp_z.shape[1] == 0:
        if not (sh.pool["count"].to_numpy() == 1).any():
            raise UserError(
                f"the shadows in {sh.path} have no population examples for RMIA: the population "
                "is drawn among the examples whose text occurs once in the pool, and none does; "
                "train them on a pool with such texts."
            )
        raise UserError(
            f"the shadows in {sh.path} have no population examples for RMIA; train them with "
            "`population_frac` above 0."
        )
    cand = sh.candidates
    texts = sh.texts
    cand_texts = [texts[i] for i in cand] if texts is not None else None
    names: list[str] = []
    table: dict[str, np.ndarray] = {}
    a_used, online_a = [], []
    for t in range(K):
        refs = references_for(t, K)
        if st.offline_a is None:
            a, _ = calibrate_offline_a(lp_c, keep, lp_z, refs, **st.rmia_options())
        else:
            a = st.offline_a
        a_used.append(a)
        online_a.append(fit_online_a(lp_c[refs], keep[refs], averaging=st.averaging))
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
        emit(progress, "targets", t + 1, K)
    groups = sh.groups
    by_text = text_membership(keep, groups)
    member = by_text if config.membership == "text" else keep
    by_split = sh.summary.split_by == "text"
    if config.candidates == "once":
        cols = np.flatnonzero(np.bincount(groups)[groups] == 1)
        if cols.size == 0:
            raise UserError(
                f"no candidate of the shadows in {sh.path} has a text that occurs once in the "
                "pool; evaluate all candidates."
            )
    elif by_split:
        # Split by text: the copies of a text share their membership and their scores, so the
        # text is evaluated once (counting its copies would weigh it by its multiplicity).
        cols = first_copies(groups)
    else:
        cols = np.arange(n)
    member, keep_eval, by_text = member[:, cols], keep[:, cols], by_text[:, cols]
    table = {name: v[:, cols] for name, v in table.items()}
    n_eval = cols.size
    n_relabelled = int((by_text != keep_eval).sum())
    labels = member.astype(np.int8).ravel()
    scores = {name: table[name].ravel() for name in names}
    per_target = {}
    for name in names:
        aucs = []
        for t in range(K):
            ok = np.isfinite(table[name][t])
            aucs.append(roc_auc(table[name][t][ok], member[t][ok].astype(int)))
        per_target[name] = {"mean": float(np.mean(aucs)), "sd": float(np.std(aucs, ddof=1))}
    summary = _evaluate(
        config,
        scores,
        labels,
        ids=[f"{t}:{i}" for t in range(K) for i in cols],
        mode="leave-one-model-out",
        pooling=(
            f"each of the {K} shadows in turn is the target, with the other shadows except its "
            f"pair partner as references ({K // 2 - 1} IN and {K // 2 - 1} OUT per example); "
            f"the {K} ROC problems are pooled into one ({K} x {n_eval} scores"
            + (
                f" of the candidates whose text occurs once in the pool, {n_eval} of {n}"
                if config.candidates == "once"
                else f", one per distinct text: the pool was split by text, so the copies of a "
                f"text share their halves and their scores, {n_eval} texts of {n} candidates"
                if by_split and n_eval < n
                else ""
            )
            + ", labels "
            + (
                "by text: a member when the target trained on any copy of its text"
                if config.membership == "text"
                else "per copy, from keep.npy"
            )
            + ")"
        ),
        membership=config.membership,
        n_relabelled=n_relabelled,
        candidates=config.candidates,
        n_candidates_evaluated=n_eval,
        split_by=sh.summary.split_by,
        per_target_auc=per_target,
        offline_a=a_used,
        online_a=online_a if st.online_pz == "marginal" else [],
        model={
            "name": "each shadow in turn",
            "source": "memlens-gpt",
            "shape": sh.summary.shape,
            "n_params": sh.summary.n_params_per_model,
            "steps": sh.summary.steps,
        },
        references=[
            {
                "name": str(sh.path),
                "n_models": K - 2,
                "design": "balanced pairs" + (", split by text" if by_split else ""),
            }
        ],
        data={
            "shadows": str(sh.path),
            "world": sh.summary.world,
            "n_candidates": n,
            "n_population": int(sh.z_signals.loglik_bits.shape[1]),
        },
    )
    df = pd.DataFrame(
        {
            "target": np.repeat(np.arange(K), n_eval),
            "example": np.tile(cols, K),
            "pool_id": np.tile(cand[cols], K),
            "label": labels.astype(np.int64),
            **scores,
        }
    )
    return _write(config, out, summary, scores, labels, df)


def _which_shadow(target_bits: np.ndarray, shadow_bits: np.ndarray) -> int | None:
    """The shadow whose stored log-likelihoods (``shadow_bits [K, n]``, bits) the target's
    (``target_bits [n]``) reproduce, to scoring noise (0.01 bit plus 1e-4 of the value on every
    text), or None. Two models trained apart differ by bits on some text."""
    tol = 0.01 + 1e-4 * np.abs(target_bits)
    same = np.all(np.abs(shadow_bits - target_bits[None, :]) <= tol[None, :], axis=1)
    hits = np.flatnonzero(same)
    return int(hits[0]) if hits.size else None


def _same_tokenizer(a: Any, b: Any) -> bool:
    try:
        return a.get_vocab() == b.get_vocab() and a.bos_token_id == b.bos_token_id
    except AttributeError:
        return False


def _target_attack(
    config: ShadowAttackConfig, sh: Shadows, out: str | Path | None
) -> ShadowAttackResult:
    """A user's target model with labelled texts of the pool; all shadows are its references."""
    import pandas as pd

    from memlens.mia.samples import load_samples
    from memlens.models.hf import load_causal_lm, load_tokenizer
    from memlens.scoring import score_sequences
    from memlens.shadow.attacks import attack_target, calibrate_offline_a, fit_online_a
    from memlens.shadow.design import partner, references_for
    from memlens.shadow.signals import signals_from_scores

    if sh.tokenizer_dir is None or sh.texts is None:
        raise UserError(
            f"the shadows in {sh.path} were trained on a synthetic world, which has no texts; "
            "evaluate them leave-one-model-out (without a `target`)."
        )
    K = sh.n_models
    if K < 4:
        raise UserError(f"attacking a target needs at least 4 shadow models, got {K}.")
    by_split = sh.summary.split_by == "text"
    samples = load_samples(
        members=config.members, nonmembers=config.nonmembers, text_column=config.text_column
    )
    _check_out(config, out)
    no_tokenizer = UserError(
        f"target {config.target} has no tokenizer of its own to compare with the shadows'; if "
        f"it was trained with theirs, copy the files of {sh.tokenizer_dir} beside its weights."
    )
    try:
        lm = load_causal_lm(config.target, device=config.device)
    except UserError as exc:
        if "tokenizer at" in str(exc) and Path(config.target).expanduser().is_dir():
            raise no_tokenizer from None
        raise
    if lm.tokenizer is None:
        raise no_tokenizer
    if not _same_tokenizer(lm.tokenizer, load_tokenizer(sh.tokenizer_dir)):
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
        population = {texts[i] for i in sh.population}
        held = sum(t in population for t in missing)
        why = f"{held} of them are population texts, held out of every shadow, and " if held else ""
        raise UserError(
            f"{len(missing)} of the {len(samples)} texts are not candidates of the shadows' pool "
            f"(first: {missing[0][:40]!r}); {why}the target's texts must be candidate examples "
            f"as pool.parquet lists them (texts longer than {sh.tokens.shape[1] - 1} tokens were "
            "cut into pieces)."
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
    # A target that is one of the shadows must not be its own reference (its IN references
    # would hold its own signal): it is attacked as leave-one-model-out attacks it, with the
    # other shadows except its pair partner.
    own = _which_shadow(
        tsig.loglik_bits[0],
        np.concatenate([sh.signals.loglik_bits[:, cols], sh.z_signals.loglik_bits], axis=1),
    )
    if own is None:
        refs = np.arange(K)
    else:
        refs = references_for(own, K)
        if refs.size < 4:
            raise UserError(
                f"target {config.target} is shadow {own} of {sh.path}, so its references are "
                f"the other shadows except its pair partner, {refs.size} of them; attacking it "
                "needs at least 6 shadow models."
            )
    in_refs = in_refs[refs]
    st = config.settings
    lp_c, lp_z = _rmia_lp(sh.signals, st), _rmia_lp(sh.z_signals, st)
    a = st.offline_a
    if a is None:
        a, _ = calibrate_offline_a(lp_c, sh.keep, lp_z, refs, **st.rmia_options())
    n_in, n_out = in_refs.sum(0), (~in_refs).sum(0)
    ok = (n_in >= 2) & (n_out >= 2)
    shadow_scores = {name: np.full(n, np.nan) for name in SHADOW_ATTACKS}
    online_a = []
    if ok.any():
        if st.online_pz == "marginal":
            lp_ok = _rmia_lp(sh.signals.take(refs, np.asarray(cols)[ok]), st)
            online_a = [fit_online_a(lp_ok, in_refs[:, ok], averaging=st.averaging)]
        res = attack_target(
            t_c.take(None, ok),
            t_z,
            sh.signals.take(refs, np.asarray(cols)[ok]),
            sh.z_signals.take(refs),
            in_refs[:, ok],
            st,
            a,
        )
        for name, v in res.items():
            shadow_scores[name][ok] = v
    ts = scored.take(slice(0, n))
    base = _baseline_scores(
        list(config.baselines), ts, samples.texts, -t_c.loglik_bits[0], config.k
    )
    scores = {**shadow_scores, **base}
    summary = _evaluate(
        config,
        scores,
        samples.labels,
        mode="target",
        offline_a=[a],
        online_a=online_a,
        model=lm.describe(),
        references=[
            {
                "name": str(sh.path),
                "n_models": int(refs.size),
                "design": "balanced pairs" + (", split by text" if by_split else ""),
                **(
                    {"excluded": f"shadow {own} (the target) and its pair partner {partner(own)}"}
                    if own is not None
                    else {}
                ),
            }
        ],
        data=samples.info | {"n_without_two_references_a_side": int((~ok).sum())},
        split_by=sh.summary.split_by,
        target_shadow=own,
    )
    df = pd.DataFrame(
        {
            "id": np.arange(n),
            "label": samples.labels.astype(np.int64),
            **scores,
            "text": samples.texts,
        }
    )
    return _write(config, out, summary, scores, samples.labels, df)
