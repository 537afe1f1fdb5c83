"""``memlens track`` and ``memlens grok``: training dynamics of memorization (thin wrappers over
:mod:`memlens.track` and :mod:`memlens.track.grok`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from memlens.commands import options

TRACK_HELP = (
    "When, and which, examples does a model memorize while it trains? Tracks code length, "
    "unintended bits and greedy extraction of repeated, unique and held-out examples on a "
    "log-spaced step schedule. Use --preset quick for the built-in synthetic experiment, or "
    "--model/--train/--track to fine-tune your own Hugging Face model on your texts. Writes "
    "dynamics.json, examples.parquet, append-only track/parts/*.parquet and plots."
)

GROK_HELP = (
    "Does a network memorize its training data before it generalizes? Trains an MLP on a "
    "fraction of (a + b) mod p with weight decay and records train/test accuracy, the "
    "memorization gap in bits and the weight norm. Writes grok.json, curve.parquet and plots."
)


def register(app: typer.Typer) -> None:
    @app.command("track", help=TRACK_HELP)
    def track(
        preset: str | None = typer.Option(
            None,
            "--preset",
            help="Built-in experiment: quick (synthetic Markov source, small GPT).",
        ),
        model: str | None = typer.Option(
            None,
            "--model",
            help="A Hugging Face causal LM directory (or memlens GPT checkpoint) to fine-tune.",
        ),
        train: str | None = typer.Option(
            None,
            "--train",
            help="Training texts: .txt (one per line), .jsonl, .csv, .parquet or a dataset.",
        ),
        track_texts: str | None = typer.Option(
            None,
            "--track",
            help="Texts to track (same formats); texts in --train are grouped repeated/unique by their "
            "count there, the others are held-out controls. Default: a sample of --train.",
        ),
        reference: options.Reference = None,
        out: options.Out = None,
        steps: int | None = typer.Option(
            None, "--steps", help="Optimizer steps (preset default: 3000; text: 200)."
        ),
        seed: int = typer.Option(0, "--seed", help="Seed for data, initialization and batches."),
        threshold: float = typer.Option(
            0.5, "--threshold", help="Memorized when unintended bits >= threshold x reference bits."
        ),
        points_per_decade: int = typer.Option(
            12, "--points-per-decade", help="Log-spaced observations per decade of steps."
        ),
        prefix: int | None = typer.Option(
            None, "--prefix", help="Extraction prompt length in tokens (quick: 16, text: 32)."
        ),
        suffix: int | None = typer.Option(
            None, "--suffix", help="Extraction target length in tokens (quick: 16, text: 32)."
        ),
        lr: float | None = typer.Option(
            None, "--lr", help="Learning rate (quick: 3e-3, text: 5e-4)."
        ),
        batch_size: int | None = typer.Option(
            None, "--batch-size", help="Training batch size (quick: 32, text: 8)."
        ),
        seq_len: options.SeqLen = None,
        max_track: int = typer.Option(
            512, "--max-track", help="Text mode: at most this many tracked texts."
        ),
        text_column: options.TextColumn = "text",
        tokenizer: options.Tokenizer = None,
        device: options.Device = "cpu",
        threads: int | None = typer.Option(
            None,
            "--threads",
            min=0,
            help="CPU threads for torch (default: 1 for --preset, torch's default for --model).",
        ),
    ) -> None:
        from memlens.commands._ui import progress_bars
        from memlens.errors import UserError

        options.set_threads(threads if threads is not None else (1 if preset is not None else 0))
        if (preset is None) == (model is None):
            raise UserError(
                "give either --preset quick or --model with --train (not both, not neither)."
            )
        # training settings given on the command line, shared by both modes
        overrides = {
            k: v
            for k, v in {
                "steps": steps, "prefix": prefix, "suffix": suffix, "lr": lr,
                "batch_size": batch_size,
            }.items()
            if v is not None
        }  # fmt: skip
        if preset is not None:
            if preset != "quick":
                raise UserError(f"unknown preset {preset!r}; the available preset is quick.")
            if train is not None or track_texts is not None or reference is not None:
                raise UserError(
                    "--train, --track and --reference belong to --model mode, not to --preset."
                )
            text_only = {
                "--seq-len": seq_len is not None,
                "--tokenizer": tokenizer is not None,
                "--max-track": max_track != 512,
                "--text-column": text_column != "text",
            }
            given = [flag for flag, on in text_only.items() if on]
            if given:  # the preset would ignore them silently
                raise UserError(
                    f"{', '.join(given)} belong{'s' if len(given) == 1 else ''} to --model mode; "
                    "the quick preset has its own data (sequences of 32 tokens)."
                )
            from memlens.track import QuickConfig, run_quick

            cfg = QuickConfig(
                seed=seed, threshold=threshold, points_per_decade=points_per_decade,
                device=device, **overrides,
            )  # fmt: skip
            recipe = run_quick
        else:
            if train is None:
                raise UserError("--model needs --train (the texts to fine-tune on).")
            from memlens.track import TextTrackConfig, run_text

            cfg = TextTrackConfig(
                model=model, train=train, track=track_texts, reference=reference, tokenizer=tokenizer,
                text_column=text_column, seq_len=seq_len, max_track=max_track, seed=seed,
                threshold=threshold, points_per_decade=points_per_decade, device=device, **overrides,
            )  # fmt: skip
            recipe = run_text
        with progress_bars() as progress:
            result = recipe(cfg, out, progress=progress)
        _print_track(result.summary, result.out_dir)

    @app.command("grok", help=GROK_HELP)
    def grok(
        preset: str = typer.Option(
            "quick", "--preset", help="Built-in experiment: quick (p = 97, MLP)."
        ),
        out: options.Out = None,
        p: int | None = typer.Option(None, "--p", help="Modulus (quick: 97)."),
        train_fraction: float | None = typer.Option(
            None, "--train-fraction", help="Fraction of pairs to train on (quick: 0.4)."
        ),
        weight_decay: float | None = typer.Option(
            None, "--weight-decay", help="AdamW weight decay (quick: 1.0)."
        ),
        lr: float | None = typer.Option(None, "--lr", help="Learning rate (quick: 1e-2)."),
        steps: int | None = typer.Option(
            None,
            "--steps",
            help="Step budget (quick: 4000; stops 200 steps after test accuracy 0.99).",
        ),
        seed: int = typer.Option(0, "--seed", help="Seed for the split and the initialization."),
        threads: options.Threads = 1,
    ) -> None:
        from memlens.commands._ui import progress_bars
        from memlens.errors import UserError

        options.set_threads(threads)
        if preset != "quick":
            raise UserError(f"unknown preset {preset!r}; the available preset is quick.")
        from memlens.track import GrokConfig, run_grok

        overrides = {
            "p": p, "train_fraction": train_fraction, "weight_decay": weight_decay, "lr": lr,
            "max_steps": steps,
        }  # fmt: skip
        cfg = GrokConfig(seed=seed, **{k: v for k, v in overrides.items() if v is not None})
        with progress_bars() as progress:
            result = run_grok(cfg, out, progress=progress)
        _print_grok(result.summary, result.out_dir)


def _fmt(v, spec: str = ".3f") -> str:  # noqa: ANN001
    return "-" if v is None else format(v, spec)


def _print_track(s: Any, out_dir: Path | None) -> None:
    """Print a :class:`memlens.track.TrackSummary`."""
    from rich import box
    from rich.table import Table

    from memlens.commands._ui import make_console

    console = make_console()
    crit = s.criterion
    thr = f" >= {crit['threshold']} x reference bits" if crit["threshold"] is not None else ""
    table = Table(
        title=f"memorization during training ({s.final_step} steps; criterion: {crit['name']}{thr})",
        box=box.SIMPLE_HEAD,
        caption="seen: occurrences in training; memorized, extracted: fractions at the last step; "
        "1st step: median first memorized step; forgot: forgetting events; bits: mean unintended bits",
        pad_edge=False,
    )
    table.add_column("group", no_wrap=True)
    for col in ("n", "seen", "memorized", "1st step", "forgot", "bits", "extracted"):
        table.add_column(col, justify="right", no_wrap=True)
    for g, m in s.groups.items():
        table.add_row(
            g,
            str(m.n),
            _fmt(m.training_occurrences, ".0f") + "x",
            _fmt(m.fraction_memorized),
            _fmt(m.median_first_memorized_step, ".0f"),
            str(m.forgetting_events),
            _fmt(m.mean_unintended_bits_final, ".1f"),
            _fmt(m.extraction_rate_final),
        )
    console.print(table)
    short = {
        g: (getattr(m, "n_extraction_eligible", m.n), m.n)
        for g, m in s.groups.items()
        if getattr(m, "n_extraction_eligible", m.n) < m.n
    }
    if short:  # extraction rates are among the texts long enough for prefix + suffix
        counts = ", ".join(f"{g} {e} of {n}" for g, (e, n) in short.items())
        console.print(
            f"extracted: among the examples long enough for --prefix + --suffix ({counts}); "
            "'-' where none is, shorten them to measure extraction there."
        )
    if "heldout" not in s.groups:  # say what is missing and how to get it
        console.print(
            "no held-out controls: every tracked text occurs in the training texts, so nothing "
            "shows how the model codes texts it never saw; give --track texts of which some are "
            "not in --train."
        )
    resumed = (s.training or {}).get("resumed_from_step") or 0
    if resumed and resumed >= (s.training or {}).get("steps", resumed + 1):
        console.print(
            "the run in this directory had finished: nothing was trained again (results "
            "recomputed from its checkpoint and observations)"
        )
    elif resumed:
        console.print(
            f"resumed from step {resumed} of the interrupted run in this directory (its "
            "observations kept; training continued from its checkpoint)"
        )
    ct = s.continued_training
    te = ct.get("training_examples")
    if ct.get("from_step") is None and s.final_step > 1:  # say why there is no comparison
        console.print(
            f"continued training: no observation between step {s.final_step / 2:g} and the final "
            f"step {s.final_step} to compare with; raise --points-per-decade."
        )
    if te is not None:
        key = "mean_unintended_bits" if "mean_unintended_bits" in te else "fraction_memorized"
        a, b = te[key]
        console.print(
            f"continued training, step {ct['from_step']} -> {ct['to_step']}: training examples' {key.replace('_', ' ')} "
            f"{a:.3f} -> {b:.3f} ({'increases' if ct['increases'] else 'does not increase'})"
        )
    c = s.cost
    console.print(
        f"tracker: {c['n_observations']} observations of {c['n_examples']} examples, "
        f"{c['score_seconds']:.1f} s scoring vs {c['train_seconds']:.1f} s training "
        f"(overhead {_fmt(c['overhead_fraction'], '.1%')})"
    )
    console.print(f"reference: {s.reference}")
    if out_dir is not None:
        console.print(
            f"wrote {out_dir}/dynamics.json, examples.parquet, heatmap.png, group_curves.png"
        )


def _print_grok(s: Any, out_dir: Path | None) -> None:
    """Print a :class:`memlens.track.GrokSummary`."""
    from memlens.commands._ui import make_console

    console = make_console()
    console.print(
        # the share actually trained on (the requested fraction of p*p pairs, rounded)
        f"{s.task}: {s.n_train} training pairs ({s.n_train / (s.n_train + s.n_test):.0%}), "
        f"{s.n_test} test pairs, "
        f"{s.steps} steps"
    )
    console.print(
        f"train accuracy >= 0.99 at step {_fmt(s.step_train_acc_99, 'd')} "
        f"(test accuracy then {_fmt(s.test_acc_at_step_train_acc_99)}); "
        f"test accuracy >= 0.95 at step {_fmt(s.step_test_acc_95, 'd')}, >= 0.99 at step {_fmt(s.step_test_acc_99, 'd')}"
    )
    console.print(
        f"final accuracy: train {s.train_acc_final:.4f}, test {s.test_acc_final:.4f}; "
        f"memorization gap peak {s.memorization_gap_bits_peak:.2f} bits/answer at step {s.step_memorization_gap_peak}, "
        f"final {s.memorization_gap_bits_final:.3f}; weight norm {s.weight_norm_initial:.1f} -> {s.weight_norm_final:.1f}"
    )
    missing = [
        name
        for name, step in (
            ("train accuracy 0.99", s.step_train_acc_99),
            ("test accuracy 0.95", s.step_test_acc_95),
            ("test accuracy 0.99", s.step_test_acc_99),
        )
        if step is None
    ]
    if missing:  # a "-" above: say what it means and what to pass
        console.print(
            f"not reached within {s.steps} steps: {', '.join(missing)}; "
            "raise --steps to see the model generalize (the quick preset grokked at step 610)."
        )
    if s.resumed_from_step and s.resumed_from_step >= s.steps:
        console.print(
            "the run in this directory had finished: nothing was trained again (results "
            "recomputed from its stored curve)"
        )
    elif s.resumed_from_step:
        console.print(
            f"resumed from step {s.resumed_from_step} of the interrupted run in this directory "
            "(its curve kept; training continued from its checkpoint)"
        )
    if out_dir is not None:
        console.print(f"wrote {out_dir}/grok.json, curve.parquet, grok_accuracy.png, grok_bits.png")
