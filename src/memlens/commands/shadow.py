"""``memlens shadow``: shadow models, LiRA and RMIA, counterfactual memorization.

Thin wrappers over :func:`memlens.shadow.run`, one config each:

* ``memlens shadow train --pool FILE --models K --out DIR`` (:class:`~memlens.shadow.ShadowTrainConfig`);
* ``memlens shadow attack --shadows DIR [--target M --members F --nonmembers G] --out DIR``
  (:class:`~memlens.shadow.ShadowAttackConfig`);
* ``memlens shadow memorization --shadows DIR --out DIR``
  (:class:`~memlens.shadow.MemorizationConfig`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from memlens.commands import options
from memlens.errors import UserError

HELP = (
    "Shadow models: K GPTs trained on random halves of a pool as one batched stack, the attacks "
    "auditors trust on top of them (LiRA, RMIA; Carlini et al. 2022, Zarifzadeh et al. 2024) and "
    "counterfactual memorization (Zhang et al. 2023). Units: bits."
)

Shadows = Annotated[
    str, typer.Option("--shadows", help="Directory written by memlens shadow train.")
]
Pool = Annotated[
    str | None, typer.Option("--pool", help="Check that the shadows were trained on this pool.")
]


def _shape(spec: str | None) -> dict[str, int]:
    if spec is None:
        return {}
    try:
        layers, width = (int(x) for x in spec.lower().replace("x", ",").split(","))
    except ValueError:
        raise UserError(f"--shape {spec!r} is not LAYERS,WIDTH (e.g. 2,64).") from None
    return {"n_layer": layers, "d_model": width}


def _baselines(spec: str | None) -> list[str] | None:
    """``--baselines loss,zlib`` as a list (``none``: no baseline; unset: the config's default)."""
    if spec is None:
        return None
    names = [b.strip() for b in spec.split(",") if b.strip()]
    return [] if names == ["none"] else names


def _run(config: Any, out: Path | None, as_json: bool, bars: bool = True) -> Any:
    """Run ``config`` with progress bars (on stderr under ``--json``, which prints the summary)."""
    from memlens.commands._ui import make_console, progress_bars
    from memlens.shadow import run
    from memlens.store import to_json

    console = make_console(stderr=True) if as_json else None
    with progress_bars(console, enabled=bars) as progress:
        result = run(config, out, progress=progress)
    if as_json:
        typer.echo(to_json(result.summary.to_json()))
    return result


def register(app: typer.Typer) -> None:
    shadow_app = typer.Typer(help=HELP, no_args_is_help=True, add_completion=False)

    @shadow_app.command("train")
    def train(
        out: options.Out = None,
        pool: str | None = typer.Option(
            None,
            "--pool",
            help="Candidate pool: .txt (one example per line), .jsonl/.csv/.parquet or a dataset.",
        ),
        synthetic: str | None = typer.Option(
            None, "--synthetic", help="A synthetic world instead of a pool: uniform or markov."
        ),
        models: int | None = typer.Option(
            None, "--models", "-k", help="K shadow models (even; default 16)."
        ),
        config: options.ConfigFile = None,
        shape: str | None = typer.Option(
            None, "--shape", help="LAYERS,WIDTH of each GPT (default 2,64)."
        ),
        tokenizer: str | None = typer.Option(
            None,
            "--tokenizer",
            help="Tokenizer directory (default: byte-level BPE trained on the pool).",
        ),
        vocab_size: int | None = typer.Option(
            None,
            "--vocab-size",
            help="Vocabulary of the trained tokenizer or synthetic world (default 1024).",
        ),
        text_column: options.TextColumn = None,
        seq_len: int | None = typer.Option(
            None, "--seq-len", help="Tokens per example (BOS included; default 64)."
        ),
        n_examples: int | None = typer.Option(
            None, "--n-examples", help="Examples of a synthetic world (default 512)."
        ),
        population: float | None = typer.Option(
            None,
            "--population",
            "--population-frac",
            help="Share of the pool held out of every model (RMIA's z; 0.2).",
        ),
        split_by: str | None = typer.Option(
            None,
            "--split-by",
            help="Draw the halves per copy (copy, default) or per distinct text (text: a model "
            "trains on all copies of a text or none).",
        ),
        steps: int | None = typer.Option(
            None, "--steps", help="Training steps of every model (default 1500)."
        ),
        lr: float | None = typer.Option(
            None, "--lr", help="Peak Adam learning rate (default 3e-3)."
        ),
        batch_size: int | None = typer.Option(
            None, "--batch-size", help="Examples per model per step (default 32)."
        ),
        stack_size: int | None = typer.Option(
            None, "--stack-size", help="Models per batched stack (default: all K in one)."
        ),
        seed: options.Seed = None,
        device: options.TrainDevice = None,
        backend: options.Backend = None,
        workers: int | None = typer.Option(
            None, "--workers", min=1, help="Local worker processes, one stack each (default 1)."
        ),
        ray_address: options.RayAddress = None,
        ray_cpus_per_cell: options.RayCpusPerCell = None,
        ray_gpus_per_cell: options.RayGpusPerCell = None,
        as_json: options.Json = False,
    ) -> None:
        """Train K shadow GPTs, each on a random half of the pool (every example IN for exactly K/2)."""
        from memlens.config import build_config
        from memlens.shadow import ShadowTrainConfig

        cfg = build_config(
            ShadowTrainConfig, None, config,
            pool=pool, synthetic=synthetic, n_models=models, tokenizer=tokenizer,
            vocab_size=vocab_size, text_column=text_column, seq_len=seq_len,
            n_examples=n_examples, population_frac=population, split_by=split_by, steps=steps,
            lr=lr, batch_size=batch_size, stack_size=stack_size, seed=seed, device=device,
            backend=backend, workers=workers, ray_address=ray_address,
            ray_num_cpus=ray_cpus_per_cell, ray_num_gpus=ray_gpus_per_cell, **_shape(shape),
        )  # fmt: skip
        result = _run(cfg, out, as_json)
        if not as_json:
            _print_train(result)

    @shadow_app.command("attack")
    def attack(
        shadows: Shadows,
        out: options.Out = None,
        target: str | None = typer.Option(
            None,
            "--target",
            help="Target model (default: each shadow in turn, leave-one-model-out).",
        ),
        members: str | None = typer.Option(
            None, "--members", help="The target's member texts (from the pool)."
        ),
        nonmembers: str | None = typer.Option(
            None, "--nonmembers", help="Its non-member texts (from the pool)."
        ),
        text_column: options.TextColumn = None,
        pool: Pool = None,
        gamma: float | None = typer.Option(
            None, "--gamma", help="RMIA threshold on LR(x, z) (paper: 2)."
        ),
        gamma_compare: str | None = typer.Option(
            None,
            "--gamma-compare",
            help="RMIA counts LR(x, z) >= gamma (ge, the paper) or > gamma (gt, the research code).",
        ),
        offline_a: float | None = typer.Option(
            None, "--offline-a", help="Offline RMIA's a (default: calibrated on a reference model)."
        ),
        rmia_signal: str | None = typer.Option(
            None, "--rmia-signal", help="token (per-token geometric mean probability) or sequence."
        ),
        online_pz: str | None = typer.Option(
            None,
            "--online-pz",
            help="Online RMIA's P(z): marginal (IN side from P_IN = a P_OUT + 1 - a, a fitted) or out.",
        ),
        averaging: str | None = typer.Option(
            None,
            "--averaging",
            help="RMIA's mean over references: arithmetic (paper) or geometric.",
        ),
        center: str | None = typer.Option(
            None, "--center", help="LiRA centre: mean (paper) or median (public code)."
        ),
        global_variance: str | None = typer.Option(
            None,
            "--global-variance",
            help="LiRA fixed variance: pooled (within examples) or all (public code).",
        ),
        offline_test: str | None = typer.Option(
            None, "--offline-test", help="Offline LiRA: one_sided (paper) or density (public code)."
        ),
        membership: str | None = typer.Option(
            None,
            "--membership",
            help="Leave-one-model-out labels of a repeated text's copies: text (a member when "
            "the target saw any copy; default) or copy (keep.npy).",
        ),
        candidates: str | None = typer.Option(
            None,
            "--candidates",
            help="Leave-one-model-out evaluates all candidates (default) or once: those whose "
            "text occurs once in the pool (deduplicated).",
        ),
        baselines: str | None = typer.Option(
            None,
            "--baselines",
            help="Reference-free attacks run on the same targets, comma-separated "
            "(default loss,zlib,min_k,min_k_pp; none for no baseline).",
        ),
        k: float | None = typer.Option(
            None,
            "--k",
            help="Min-K% fraction of the baselines: the lowest floor(k*n) tokens (0.2).",
        ),
        fpr: list[str] = typer.Option(
            None, "--fpr", help="FPR levels (default 0,0.0001,0.001,0.01)."
        ),
        n_boot: int | None = typer.Option(
            None, "--n-boot", help="Bootstrap resamples of the AUC CI."
        ),
        batch_size: options.BatchSize = None,
        device: options.Device = None,
        seed: Annotated[int | None, typer.Option("--seed", help="Seed of the bootstrap.")] = None,
        as_json: options.Json = False,
    ) -> None:
        """LiRA and RMIA (online, offline) against the loss, zlib and Min-K% baselines."""
        from memlens.config import build_config, merge
        from memlens.shadow import ShadowAttackConfig

        settings = {
            "gamma": gamma, "gamma_compare": gamma_compare, "offline_a": offline_a, "rmia_signal": rmia_signal, "center": center,
            "offline_test": offline_test, "online_pz": online_pz, "averaging": averaging,
            "global_variance": global_variance,
        }  # fmt: skip
        cfg = build_config(
            ShadowAttackConfig,
            shadows=shadows, target=target, members=members, nonmembers=nonmembers,
            text_column=text_column, pool=pool, settings=merge({}, settings) or None,
            membership=membership, candidates=candidates, baselines=_baselines(baselines), k=k,
            fprs=options.fpr_levels(fpr), n_boot=n_boot, batch_size=batch_size, device=device,
            seed=seed,
        )  # fmt: skip
        result = _run(cfg, out, as_json)
        if not as_json:
            _print_attack(result)

    @shadow_app.command("memorization")
    def memorization(
        shadows: Shadows,
        out: options.Out = None,
        pool: Pool = None,
        text_column: options.TextColumn = None,
        audit: str | None = typer.Option(
            None, "--audit", help="An audit directory: correlate with its unintended bits."
        ),
        top: int = typer.Option(10, "--top", help="Most memorized examples to show."),
        as_json: options.Json = False,
    ) -> None:
        """Counterfactual memorization: IN-model mean minus OUT-model mean, per example."""
        from memlens.config import build_config
        from memlens.shadow import MemorizationConfig

        cfg = build_config(
            MemorizationConfig,
            shadows=shadows,
            pool=pool,
            text_column=text_column,
            audit=audit,
            top=top,
        )
        result = _run(cfg, out, as_json, bars=False)  # a second's work: no progress to show
        if not as_json:
            _print_memorization(result, top)

    app.add_typer(shadow_app, name="shadow")


def _print_train(result: Any) -> None:
    """Print a :class:`~memlens.shadow.ShadowTrainSummary`."""
    from memlens.commands._ui import make_console

    s = result.summary
    console = make_console()
    console.print(f"world: {s.world}")
    console.print(
        f"{s.n_models} shadow GPTs ({s.shape['n_layer']} "
        f"layer{'s' if s.shape['n_layer'] != 1 else ''}, d={s.shape['d_model']}, "
        f"{s.n_params_per_model:,} parameters each), {s.steps} steps, in {len(s.stacks)} "
        f"stack(s) of {s.models_per_stack}; {s.n_candidates} candidates (each IN for "
        f"{s.n_models // 2} of them), {s.n_population} population examples OUT for all"
    )
    if s.split_by == "text" and s.n_repeated_examples:
        console.print(
            f"split by text: the {s.n_repeated_examples} candidates that are copies of a repeated "
            "text are IN for the same models as their other copies"
        )
    elif s.n_repeated_examples:
        console.print(
            f"split by copy: the {s.n_repeated_examples} candidates that are copies of a repeated "
            "text were drawn one by one (--split-by text draws a text with all its copies: "
            "membership inference on texts)"
        )
    for w in s.warnings:
        console.print(f"[yellow]warning:[/yellow] {w}")
    if result.reused:
        console.print(f"reused {len(result.reused)} finished stack(s) of an earlier run")
    console.print(
        f"training {s.train_seconds_total:.1f} s, scoring {s.score_seconds_total:.1f} s; "
        f"this invocation {s.seconds_this_invocation:.1f} s"
    )
    console.print(
        f"mean loss on own examples {s.mean_in_bits_per_token:.3f} bits/token, on the other "
        f"half {s.mean_out_bits_per_token:.3f} bits/token"
    )
    console.print(
        f"wrote {result.out_dir}/keep.npy, signals.npz, models/ ({s.n_models} checkpoints)"
    )


def _print_attack(result: Any) -> None:
    """Print a :class:`~memlens.shadow.ShadowAttackSummary` (the table of ``memlens mia``)."""
    from memlens.commands._ui import make_console
    from memlens.commands.mia import _summary

    s = result.summary
    title = (
        f"shadow attacks, {s.mode} ({s.n_members} member and {s.n_nonmembers} non-member scores)"
    )
    _summary(s, title)
    console = make_console()
    if s.mode == "leave-one-model-out":
        console.print(f"pooling: {s.pooling}")
        if s.candidates == "once":
            console.print(
                f"candidates: the {s.n_candidates_evaluated} whose text occurs once in the pool "
                "(scored and calibrated with all; for them labels per copy and per text agree; "
                "--candidates all to evaluate every one)"
            )
        else:
            console.print(membership_line(s))
    else:
        ref = s.references[0] if s.references else {}
        line = f"references: {ref.get('n_models')} shadows ({ref.get('design')})"
        if s.target_shadow is not None:
            line += (
                f"; the target is shadow {s.target_shadow} (its scores reproduce that shadow's), "
                "left out of its own references with its pair partner"
            )
        console.print(line)
        short = (s.data or {}).get("n_without_two_references_a_side", 0)
        if short:
            console.print(
                f"{short} of the texts have fewer than two IN or two OUT shadows (a shadow that "
                "trained on any copy of a text saw it): LiRA and RMIA cannot score them, so "
                "every attack leaves them out"
            )
    if s.offline_a:
        a = s.offline_a
        how = (
            "fixed"
            if s.settings.get("offline_a") is not None
            else "calibrated per target"
            if s.mode == "leave-one-model-out"
            else "calibrated on the references"
        )
        console.print(f"offline RMIA a ({how}): {min(a):.1f}-{max(a):.1f}")
    if s.online_a:
        b = s.online_a
        console.print(
            f"online RMIA P(z): P_IN(z) = a P_OUT(z) + 1 - a with a fitted on the references' "
            f"candidates: {min(b):.3f}-{max(b):.3f}"
        )
    console.print(f"wrote {result.out_dir}/mia.json, scores.parquet, roc.png")


def membership_line(s: Any) -> str:
    """How leave-one-model-out labelled the copies of repeated texts, and how much it mattered."""
    if s.split_by == "text":
        return (
            f"split by text: each of the {s.n_candidates_evaluated} distinct texts evaluated "
            "once; a target trained on all copies of a text or on none, so labels per copy and "
            "per text agree"
        )
    if s.membership == "copy":
        return (
            f"labels per copy (membership copy): {s.n_relabelled} non-member (target, copy) "
            "pairs are copies of a text the target trained on through another copy"
        )
    return (
        f"labels by text (membership text): {s.n_relabelled} (target, copy) pairs that are "
        "non-members by keep.npy are members, the target having trained on another copy of "
        "their text (--membership copy: per copy)"
    )


def _print_memorization(result: Any, top: int) -> None:
    """Print a :class:`~memlens.shadow.MemorizationSummary`."""
    from rich import box
    from rich.table import Table

    from memlens.commands._ui import make_console

    s = result.summary
    console = make_console()
    table = Table(
        title=f"counterfactual memorization, top {min(top, s.n_examples)} of {s.n_examples} "
        f"{'distinct texts' if s.split_by == 'text' else 'examples'} "
        f"({s.models_per_estimate['in']} IN / {s.models_per_estimate['out']} OUT models each)",
        box=box.SIMPLE_HEAD,
    )
    for col in ("rank", "mem acc", "± se", "mem bits", "count", "text"):
        table.add_column(col, justify="left" if col == "text" else "right")
    for row in s.top:
        text = row.get("text") or f"example {row['pool_id']}"
        table.add_row(
            str(row["rank"]),
            f"{row['mem_accuracy']:.3f}",
            "-" if row["se_accuracy"] is None else f"{row['se_accuracy']:.3f}",
            f"{row['mem_bits']:.1f}",
            str(row["count"]),
            text[:48].replace("\n", " "),
        )
    console.print(table)
    u, rep = s.unique_mean_mem_accuracy, s.repeated_mean_mem_accuracy
    line = (
        f"mean counterfactual memorization {s.mean_mem_accuracy:.3f} (accuracy), "
        f"{s.mean_mem_bits:.1f} bits"
    )
    if rep is not None and u is not None:
        line += f"; unique examples {u:.3f}, repeated ({s.n_repeated}) {rep:.3f}"
    console.print(line)
    if s.median_se_accuracy is None:
        console.print(
            "no standard errors: each estimate rests on one IN and one OUT model, and a standard "
            "error needs two a side (train at least 4 shadows)"
        )
    for key, c in s.spearman.items():
        if key.endswith(":all"):
            console.print(f"Spearman {key[:-4]}: rho {c['rho']:+.3f} (n={c['n']})")
    if s.audit:
        console.print(s.audit)
    console.print(
        f"wrote {result.out_dir}/memorization.parquet, memorization.json, memorization_hist.png"
    )
