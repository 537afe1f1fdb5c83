"""``memlens dp-audit``: an ε lower bound from one training run, canary exposure, DP-SGD.

Two spellings, one group:

* ``memlens dp-audit [--dp-epsilon none,1,8] ... --out DIR`` inserts random canaries (each with
  probability ½), trains one model per arm (without DP, or with DP-SGD through Opacus at each
  target ε), scores the canaries and reports ε̂ beside the accountant's ε, and exposure
  (:func:`memlens.privacy.run`);
* ``memlens dp-audit bound --guesses R --correct V --canaries M --delta D [--json]`` turns counts
  obtained elsewhere into ε̂ (:func:`memlens.privacy.bound.one_run_bound`).
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import typer

from memlens.commands import options
from memlens.errors import UserError

HELP = (
    "Privacy audit: a 95% lower bound on epsilon from ONE training run (Steinke, Nasr & "
    "Jagielski 2023) and canary exposure (Carlini et al. 2019). Inserts random canaries, each "
    "with probability 1/2, trains a memlens GPT (or fine-tunes a local Hugging Face model) "
    "without DP and/or with DP-SGD (Opacus) at target epsilons, and shows the audit's epsilon "
    "beside the accountant's. 'dp-audit bound' computes the bound for counts made elsewhere."
)


def parse_epsilons(value: str | None) -> tuple[float | None, ...] | None:
    """``"none,1,8"`` -> ``(None, 1.0, 8.0)``; ``none``/``inf``/``off`` mean training without DP."""
    if value is None:
        return None
    out: list[float | None] = []
    for part in str(value).split(","):
        p = part.strip().lower()
        if not p:
            continue
        if p in ("none", "inf", "off", "no", "nodp", "no-dp"):
            out.append(None)
            continue
        try:
            e = float(p)
        except ValueError:
            raise UserError(
                f"--dp-epsilon {part.strip()!r} is not a number; use e.g. --dp-epsilon none,1,8."
            ) from None
        if math.isinf(e):
            out.append(None)
            continue
        if not e > 0:
            raise UserError(f"--dp-epsilon {part.strip()} must be a positive number or none.")
        out.append(e)
    if not out:
        raise UserError("--dp-epsilon is empty; use e.g. --dp-epsilon none,1,8.")
    return tuple(out)


def _fmt(x: float | None, nd: int = 2) -> str:
    if x is None:
        return "-"
    return f"{x:.{nd}f}"


def _blocks(last_layers: int | None) -> str:
    """Where a LoRA adapter sits: ``every block``, ``the last block``, ``the last N blocks``."""
    if not last_layers:
        return "every block"
    return "the last block" if last_layers == 1 else f"the last {last_layers} blocks"


def _summary(s: Any, reused: list[str]) -> None:
    """Print a :class:`~memlens.privacy.summary.DPAuditSummary`."""
    from rich import box
    from rich.table import Table

    from memlens.commands._ui import make_console

    console = make_console()
    c = s.canaries
    arms = list(s.arms.values())
    first = arms[0].audit
    what = "random" if c.kind == "random" else "file"
    table = Table(
        title=(
            f"{c.m} {what} canaries of {c.length_tokens} tokens, {c.n_included} inserted; "
            f"δ = {s.delta:g}, ε in nats"
        ),
        box=box.SIMPLE_HEAD,
    )
    table.add_column("arm")
    table.add_column("accountant ε", justify="right")
    table.add_column("σ", justify="right")
    table.add_column(f"ε̂ ({s.confidence * 100:.10g}%)", justify="right")
    table.add_column("right/guesses", justify="right")
    table.add_column("ceiling", justify="right")
    # the trained share matters with LoRA; a memlens GPT or a full fine-tune trains every weight
    # (the count is in dp_audit.json), and the column would squeeze the table at 80 columns
    with_lora = any(a.train.get("lora") for a in arms)
    if with_lora:
        table.add_column("trained params", justify="right")
    table.add_column("train s", justify="right")
    for a in arms:
        seconds = a.train.get("seconds")
        n_train = a.train.get("trainable_parameters")
        lora = a.train.get("lora")
        trained = "-" if n_train is None else f"{n_train:,}"
        if lora:
            trained = f"LoRA r{lora['r']}: {trained}"
        table.add_row(
            a.name,
            "∞ (no DP)" if a.accountant_epsilon is None else _fmt(a.accountant_epsilon),
            _fmt(a.train.get("noise_multiplier")),
            _fmt(a.epsilon_lower_bound, 3),
            f"{a.audit.correct}/{a.audit.guesses}",
            _fmt(a.audit.ceiling_at_guesses),
            *([trained] if with_lora else []),
            "-" if seconds is None else f"{seconds:.0f}",
        )
    console.print(table)
    ex_table = Table(
        title="canaries inserted (in) vs never inserted (out): loss and exposure in bits",
        box=box.SIMPLE_HEAD,
    )
    ex_table.add_column("arm")
    ex_table.add_column("loss/token\nin", justify="right")
    ex_table.add_column("\nout", justify="right")
    has_exposure = any(a.exposure for a in arms)
    if has_exposure:
        ex_table.add_column("rank exposure\nin", justify="right")
        ex_table.add_column("\nout", justify="right")
        ex_table.add_column("extrapolated\nin", justify="right")
        ex_table.add_column("\nout", justify="right")
    for a in arms:
        row = [
            a.name,
            _fmt(a.mean_loss_inserted_bits_per_token),
            _fmt(a.mean_loss_not_inserted_bits_per_token),
        ]
        if has_exposure:
            ex = a.exposure or {}
            row += [
                _fmt(ex.get("rank_inserted_mean")),
                _fmt(ex.get("rank_not_inserted_mean")),
                _fmt(ex.get("extrapolated_inserted_mean")),
                _fmt(ex.get("extrapolated_not_inserted_mean")),
            ]
        ex_table.add_row(*row)
    console.print(ex_table)
    if has_exposure:
        n_cand = next(a.exposure for a in arms if a.exposure)["n_candidates"]
        # with a canary file the candidates are the candidate file's texts, not random strings
        where = (
            "never-trained texts of the candidate file"
            if s.canaries.kind == "file"
            else "random candidates"
        )
        console.print(
            f"exposure: mean over canaries, ranked among {n_cand} {where} "
            f"(rank exposure at most log2 {n_cand + 1} = {math.log2(n_cand + 1):.2f} bits)."
        )
    for a in arms:
        if a.exposure and a.exposure.get("extrapolated_note"):
            console.print(f"extrapolated exposure of {a.name}: {a.exposure['extrapolated_note']}.")
    if len({a.audit.note for a in arms}) == 1:
        console.print(
            f"σ: DP-SGD noise multiplier. k±: {first.note} ({first.selection} selection)."
        )
    else:  # split and bonferroni choose k± per arm
        per_arm = "; ".join(f"{a.name}: {a.audit.note}" for a in arms)
        console.print(
            f"σ: DP-SGD noise multiplier. k± per arm ({first.selection} selection): {per_arm}."
        )
    same = len({a.audit.guesses for a in arms}) == 1
    console.print(
        f"ceiling: ε̂ if every guess were right "
        f"({f'{first.guesses} guesses' if same else 'the arm’s guesses'}); with all "
        f"{first.canaries} canaries guessed right at most {first.ceiling:.2f}. ε in nats."
    )
    from memlens.privacy.bound import ceiling_hint

    vacuous = next((a.audit for a in arms if a.audit.ceiling_at_guesses <= 0), None)
    if vacuous is not None:  # ε̂ = 0 whatever the model: say why
        hint = ceiling_hint(
            vacuous.canaries, vacuous.guesses, s.delta, vacuous.effective_confidence
        )
        console.print(f"[yellow]ε̂ is 0 for any model here:[/yellow] {hint}")
    dp = [a for a in arms if a.accountant_epsilon is not None]
    if dp:
        bad = [a.name for a in dp if a.epsilon_lower_bound > a.accountant_epsilon]
        acc = dp[0].train.get("accountant", "?").upper()
        if bad:
            console.print(
                f"[red]ε̂ exceeds the {acc} accountant's ε for {', '.join(bad)}[/red]: either the "
                f"{(1 - s.confidence) * 100:.10g}% chance of a wrong bound, or the DP guarantee does not hold."
            )
        else:
            console.print(
                f"ε̂ ≤ the {acc} accountant's ε in every DP arm, as a sound guarantee requires."
            )
    lora = arms[0].train.get("lora")
    if lora:
        targets = lora["target_modules"]
        if targets == "all-linear":
            targets = "every linear layer"
        elif not isinstance(targets, str):
            targets = ",".join(targets)
        where = _blocks(lora["last_layers"])
        total = arms[0].train.get("total_parameters")
        share = (
            f" of {total:,} ({100 * arms[0].train['trainable_parameters'] / total:.2f}%)"
            if total
            else ""
        )
        console.print(
            f"LoRA r = {lora['r']}, alpha = {lora['alpha']} on {targets} in {where}: only the "
            f"adapter's {arms[0].train.get('trainable_parameters'):,} parameters{share} are "
            "trained, clipped and noised; every arm starts from the same adapter initialization."
        )
    if reused:
        console.print(f"reused trained weights: {', '.join(reused)} (rerun of the same --out).")


def register(app: typer.Typer) -> None:
    dp_app = typer.Typer(help=HELP, no_args_is_help=False, add_completion=False)

    @dp_app.callback(invoke_without_command=True)
    def dp_audit(
        ctx: typer.Context,
        dp_epsilon: str = typer.Option(
            None,
            "--dp-epsilon",
            help="Arms to train, comma-separated: target epsilons for DP-SGD and/or 'none' "
            "(no DP), e.g. none,1,8. Default: none.",
        ),
        dp_delta: float = typer.Option(
            None, "--dp-delta", help="delta of DP-SGD and of the audited claim (default 1e-5)."
        ),
        max_grad_norm: float = typer.Option(
            None, "--max-grad-norm", help="DP-SGD per-example clipping norm C (default 1.0)."
        ),
        accountant: str = typer.Option(
            None, "--accountant", help="Opacus accountant: prv (default, tight) or rdp."
        ),
        canaries: int = typer.Option(
            None,
            "--canaries",
            "-M",
            help="Random canaries, each inserted with probability 1/2 (1000).",
        ),
        canary_length: int = typer.Option(
            None, "--canary-length", help="Tokens per random canary (16)."
        ),
        canary_file: str = typer.Option(
            None,
            "--canary-file",
            help="Your canary texts instead (.txt one per line, .jsonl, ...).",
        ),
        candidates: int = typer.Option(
            None,
            "--candidates",
            help="Random never-trained strings that rank canaries for exposure (1000).",
        ),
        candidate_file: str = typer.Option(
            None,
            "--candidate-file",
            help="Never-trained texts of the canaries' format, for exposure.",
        ),
        model: str = typer.Option(
            None,
            "--model",
            "-m",
            help="A local Hugging Face causal LM to fine-tune (default: train a memlens GPT).",
        ),
        train: str = typer.Option(
            None, "--train", help="Training texts (default: a synthetic Markov source)."
        ),
        text_column: options.TextColumn = None,
        tokenizer: str = typer.Option(
            None,
            "--tokenizer",
            help="Tokenizer for --train with a memlens GPT (default: UTF-8 bytes).",
        ),
        source: str = typer.Option(
            None, "--source", help="Built-in data: markov (default) or uniform."
        ),
        vocab_size: int = typer.Option(
            None, "--vocab-size", help="Built-in data's vocabulary (64)."
        ),
        n_train: int = typer.Option(
            None, "--n-train", help="Training rows besides canaries (2000)."
        ),
        seq_len: int = typer.Option(None, "--seq-len", help="Tokens per training row (32)."),
        n_layer: int = typer.Option(None, "--n-layer", help="memlens GPT blocks (2)."),
        d_model: int = typer.Option(None, "--d-model", help="memlens GPT width (64)."),
        epochs: int = typer.Option(None, "--epochs", help="Epochs per arm (20)."),
        batch_size: int = typer.Option(None, "--batch-size", help="(Expected) rows per step (64)."),
        lr: float = typer.Option(None, "--lr", help="Adam learning rate (3e-3)."),
        physical_batch_size: int = typer.Option(
            None,
            "--physical-batch-size",
            help="Rows per per-sample-gradient chunk (default: within 1 GiB).",
        ),
        lora_r: int = typer.Option(
            None,
            "--lora-r",
            help="Fine-tune --model through a LoRA adapter of this rank: only the adapter is "
            "trained, clipped and noised (default 0: every weight).",
        ),
        lora_alpha: int = typer.Option(
            None, "--lora-alpha", help="LoRA alpha; the update is (alpha / r) B A (default 2r)."
        ),
        lora_target_modules: str = typer.Option(
            None,
            "--lora-target-modules",
            help="Comma-separated module names to adapt, e.g. q_proj,v_proj (default: every "
            "linear layer but the output head).",
        ),
        lora_last_layers: int = typer.Option(
            None, "--lora-last-layers", help="Adapt only the last N blocks (default: all)."
        ),
        selection: str = typer.Option(
            None,
            "--selection",
            help="How k+/k- are chosen: fixed (default, before scoring), split (on half the "
            "canaries) or bonferroni (best of a fixed grid, corrected).",
        ),
        k_in: int = typer.Option(
            None, "--k-in", help="Guess IN for the k+ best scores (M/4, at least 1)."
        ),
        k_out: int = typer.Option(
            None, "--k-out", help="Guess OUT for the k- worst scores (M/4, at least 1)."
        ),
        score: str = typer.Option(
            None, "--score", help="loss (default) or loss_diff (loss before minus after training)."
        ),
        confidence: float = typer.Option(
            None, "--confidence", help="Confidence of the bound (0.95)."
        ),
        seed: options.Seed = None,
        device: options.TrainDevice = None,
        threads: Annotated[
            int | None,
            typer.Option(
                "--threads",
                min=0,
                help="Torch CPU threads (default 1, fastest for tiny models; 0: torch's default).",
            ),
        ] = None,
        out: options.Out = None,
        as_json: options.Json = False,
        backend: options.Backend = "local",
        workers: int = typer.Option(
            1, "--workers", min=1, help="Local processes training arms (default 1: one by one)."
        ),
        ray_address: options.RayAddress = None,
        ray_cpus_per_cell: options.RayCpusPerCell = 1,
        ray_gpus_per_cell: options.RayGpusPerCell = 0,
    ) -> None:
        """Insert canaries, train (with and without DP-SGD), and bound epsilon from one run."""
        if ctx.invoked_subcommand is not None:
            return
        from memlens.commands._ui import make_console, progress_bars
        from memlens.config import build_config
        from memlens.privacy import DPAuditConfig, run
        from memlens.privacy.outputs import OUTPUTS
        from memlens.store import to_json

        config = build_config(
            DPAuditConfig,
            model=model,
            train=train,
            text_column=text_column,
            tokenizer=tokenizer,
            source=source,
            vocab_size=vocab_size,
            n_train=n_train,
            seq_len=seq_len,
            n_layer=n_layer,
            d_model=d_model,
            canaries=canaries,
            canary_length=canary_length,
            canary_file=canary_file,
            candidates=candidates,
            candidate_file=candidate_file,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            physical_batch_size=physical_batch_size,
            lora_r=lora_r,
            lora_alpha=lora_alpha,
            lora_target_modules=None
            if lora_target_modules is None
            else tuple(lora_target_modules.split(",")),
            lora_last_layers=lora_last_layers,
            dp_epsilons=parse_epsilons(dp_epsilon),
            dp_delta=dp_delta,
            max_grad_norm=max_grad_norm,
            accountant=accountant,
            confidence=confidence,
            selection=selection,
            k_in=k_in,
            k_out=k_out,
            score=score,
            seed=seed,
            device=device,
            threads=threads,
        )
        with progress_bars(make_console(stderr=True) if as_json else None) as progress:
            result = run(
                config, out, progress=progress,
                **options.scale_kwargs(
                    backend, workers, ray_address, ray_cpus_per_cell, ray_gpus_per_cell
                ),
            )  # fmt: skip
        if as_json:
            typer.echo(to_json(result.summary.to_json()))
            return
        _summary(result.summary, result.reused)
        typer.echo(f"wrote {result.out_dir}/{', '.join(OUTPUTS)}")

    @dp_app.command("bound")
    def bound(
        guesses: int = typer.Option(
            ..., "--guesses", "-r", help="Guesses made (abstentions excluded)."
        ),
        correct: int = typer.Option(..., "--correct", "-v", help="Correct guesses."),
        canaries: int = typer.Option(
            ...,
            "--canaries",
            "-M",
            help="Canaries, each inserted independently with probability 1/2.",
        ),
        delta: float = typer.Option(
            ..., "--delta", help="delta of the DP claim tested (0 <= delta < 1)."
        ),
        confidence: float = typer.Option(0.95, "--confidence", help="Confidence of the bound."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON only."),
    ) -> None:
        """The one-run epsilon lower bound for counts obtained elsewhere (Appendix D)."""
        from memlens.privacy.bound import ceiling_hint, one_run_bound
        from memlens.store import to_json

        res = one_run_bound(canaries, guesses, correct, delta, confidence)
        if as_json:
            typer.echo(to_json(res.to_dict()))
            return
        typer.echo(
            f"epsilon lower bound: {res.epsilon_lower_bound:.3f} at {confidence * 100:.10g}% "
            f"confidence (delta = {delta:g}): {correct} of {guesses} guesses right, "
            f"{canaries} canaries."
        )
        typer.echo(
            f"ceiling: {res.ceiling_at_guesses:.3f} if all {guesses} guesses were right; "
            f"{res.ceiling:.3f} with all {canaries} canaries guessed right. epsilon in nats."
        )
        hint = ceiling_hint(canaries, guesses, delta, confidence)
        if hint:
            typer.echo(f"note: {hint}")

    app.add_typer(dp_app, name="dp-audit", help=HELP)
