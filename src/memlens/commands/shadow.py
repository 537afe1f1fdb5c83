"""``memlens shadow``: shadow models, LiRA and RMIA, counterfactual memorization.

Thin wrappers over :mod:`memlens.shadow.recipe`:

* ``memlens shadow train --pool FILE --models K --out DIR`` (:func:`~memlens.shadow.recipe.run_train`);
* ``memlens shadow attack --shadows DIR [--target M --members F --nonmembers G] --out DIR``
  (:func:`~memlens.shadow.recipe.run_attack`);
* ``memlens shadow memorization --shadows DIR --out DIR``
  (:func:`~memlens.shadow.recipe.run_memorization`).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import typer

from memlens.errors import UserError

HELP = (
    "Shadow models: K GPTs trained on random halves of a pool as one batched stack, the attacks "
    "auditors trust on top of them (LiRA, RMIA; Carlini et al. 2022, Zarifzadeh et al. 2024) and "
    "counterfactual memorization (Zhang et al. 2023). Units: bits."
)


def _read_config(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"cannot read config file {path}: {exc.strerror or exc}.") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"cannot parse config file {path}: {exc}.") from None


def _shape(spec: str | None) -> dict[str, int]:
    if spec is None:
        return {}
    try:
        layers, width = (int(x) for x in spec.lower().replace("x", ",").split(","))
    except ValueError:
        raise UserError(f"--shape {spec!r} is not LAYERS,WIDTH (e.g. 2,64).") from None
    return {"n_layer": layers, "d_model": width}


def _fprs(values: list[str] | None) -> list[float] | None:
    if not values:
        return None
    out = []
    for v in values:
        for part in str(v).split(","):
            if part.strip():
                try:
                    out.append(float(part))
                except ValueError:
                    raise UserError(f"--fpr {part!r} is not a number.") from None
    return sorted(set(out))


def _progress_bar():
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(),
        TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(), transient=True,
    )  # fmt: skip


def _with_progress(fn, *args, what: str = "steps"):
    with _progress_bar() as bar:
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(f"{stage} ({what})", total=total)
            bar.update(tasks[stage], completed=done)

        return fn(*args, progress=progress)


def register(app: typer.Typer) -> None:
    shadow_app = typer.Typer(help=HELP, no_args_is_help=True, add_completion=False)

    @shadow_app.command("train")
    def train(
        out: Path = typer.Option(..., "--out", help="Shadows directory; rerun to resume."),
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
        config: Path | None = typer.Option(
            None, "--config", help="TOML file of settings (flags override)."
        ),
        shape: str | None = typer.Option(
            None, "--shape", help="LAYERS,WIDTH of each GPT (default 2,64)."
        ),
        tokenizer: str | None = typer.Option(
            None,
            "--tokenizer",
            help="Tokenizer directory (default: byte-level BPE trained on the pool).",
        ),
        vocab_size: int | None = typer.Option(
            None, "--vocab-size", help="Vocabulary of the trained tokenizer or synthetic world."
        ),
        text_column: str | None = typer.Option(
            None, "--text-column", help="Text field of pool tables."
        ),
        seq_len: int | None = typer.Option(
            None, "--seq-len", help="Tokens per example (BOS included)."
        ),
        n_examples: int | None = typer.Option(
            None, "--n-examples", help="Examples of a synthetic world."
        ),
        population: float | None = typer.Option(
            None, "--population", help="Share of the pool held out of every model (RMIA's z; 0.2)."
        ),
        steps: int | None = typer.Option(None, "--steps", help="Training steps of every model."),
        lr: float | None = typer.Option(None, "--lr", help="Peak Adam learning rate."),
        batch_size: int | None = typer.Option(
            None, "--batch-size", help="Examples per model per step."
        ),
        stack_size: int | None = typer.Option(
            None, "--stack-size", help="Models per batched stack (default: all K in one)."
        ),
        seed: int | None = typer.Option(
            None, "--seed", help="Seed of the split, initialization and order."
        ),
        device: str | None = typer.Option(None, "--device", help="auto, cpu, cuda or mps."),
        backend: str | None = typer.Option(
            None, "--backend", help="local or ray (stacks as Ray tasks)."
        ),
        workers: int | None = typer.Option(
            None, "--workers", help="Local worker processes (one stack each)."
        ),
        ray_address: str | None = typer.Option(
            None, "--ray-address", help="Join an existing Ray cluster."
        ),
    ) -> None:
        """Train K shadow GPTs, each on a random half of the pool (every example IN for exactly K/2)."""
        from memlens.shadow.recipe import run_train, train_config

        flags = {
            "pool": pool, "synthetic": synthetic, "n_models": models, "tokenizer": tokenizer,
            "vocab_size": vocab_size, "text_column": text_column, "seq_len": seq_len,
            "n_examples": n_examples, "population_frac": population, "steps": steps, "lr": lr,
            "batch_size": batch_size, "stack_size": stack_size, "seed": seed, "device": device,
            "backend": backend, "workers": workers, "ray_address": ray_address, **_shape(shape),
        }  # fmt: skip
        values = _read_config(config) | {k: v for k, v in flags.items() if v is not None}
        cfg = train_config(**values)
        result = _with_progress(run_train, cfg, out)
        _print_train(result)

    @shadow_app.command("attack")
    def attack(
        shadows: str = typer.Option(
            ..., "--shadows", help="Directory written by memlens shadow train."
        ),
        out: Path = typer.Option(
            ..., "--out", help="Run directory for mia.json, scores and ROC plots."
        ),
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
        text_column: str = typer.Option("text", "--text-column", help="Text field of tables."),
        pool: str | None = typer.Option(
            None, "--pool", help="Check that the shadows were trained on this pool."
        ),
        gamma: float | None = typer.Option(
            None, "--gamma", help="RMIA threshold on LR(x, z) (paper: 2)."
        ),
        offline_a: float | None = typer.Option(
            None, "--offline-a", help="Offline RMIA's a (default: calibrated on a reference model)."
        ),
        rmia_signal: str | None = typer.Option(
            None, "--rmia-signal", help="token (per-token geometric mean probability) or sequence."
        ),
        center: str | None = typer.Option(
            None, "--center", help="LiRA centre: mean (paper) or median (public code)."
        ),
        offline_test: str | None = typer.Option(
            None, "--offline-test", help="Offline LiRA: one_sided (paper) or density (public code)."
        ),
        fpr: list[str] = typer.Option(
            None, "--fpr", help="FPR levels (default 0,0.0001,0.001,0.01)."
        ),
        n_boot: int | None = typer.Option(
            None, "--n-boot", help="Bootstrap resamples of the AUC CI."
        ),
        device: str | None = typer.Option(None, "--device", help="Device for the target model."),
    ) -> None:
        """LiRA and RMIA (online, offline) against the loss, zlib and Min-K% baselines."""
        from memlens.shadow.recipe import attack_config, run_attack

        values = {
            "shadows": shadows, "target": target, "members": members, "nonmembers": nonmembers,
            "text_column": text_column, "pool": pool, "gamma": gamma, "offline_a": offline_a,
            "rmia_signal": rmia_signal, "center": center, "offline_test": offline_test,
            "fprs": _fprs(fpr), "n_boot": n_boot, "device": device,
        }  # fmt: skip
        cfg = attack_config(**{k: v for k, v in values.items() if v is not None})
        result = _with_progress(run_attack, cfg, out, what="models")
        _print_attack(result)

    @shadow_app.command("memorization")
    def memorization(
        shadows: str = typer.Option(
            ..., "--shadows", help="Directory written by memlens shadow train."
        ),
        out: Path = typer.Option(
            ..., "--out", help="Run directory for the table, summary and histogram."
        ),
        pool: str | None = typer.Option(
            None, "--pool", help="Check that the shadows were trained on this pool."
        ),
        audit: str | None = typer.Option(
            None, "--audit", help="An audit directory: correlate with its unintended bits."
        ),
        top: int = typer.Option(10, "--top", help="Most memorized examples to show."),
    ) -> None:
        """Counterfactual memorization: IN-model mean minus OUT-model mean, per example."""
        from memlens.shadow.recipe import memorization_config, run_memorization

        cfg = memorization_config(shadows=shadows, pool=pool, audit=audit, top=top)
        result = run_memorization(cfg, out)
        _print_memorization(result, top)

    app.add_typer(shadow_app, name="shadow")


def _print_train(r) -> None:
    from rich.console import Console

    s = r.summary
    console = Console()
    console.print(f"world: {s['world']}")
    console.print(
        f"{r.n_models} shadow GPTs ({s['shape']['n_layer']} layers, d={s['shape']['d_model']}, "
        f"{r.n_params:,} parameters each), {s['steps']} steps, in {len(r.stacks)} stack(s) of "
        f"{s['models_per_stack']}; {r.n_candidates} candidates (each IN for {r.n_models // 2} of "
        f"them), {r.n_population} population examples OUT for all"
    )
    reused = r.n_reused
    if reused:
        console.print(f"reused {reused} finished stack(s) of an earlier run")
    console.print(
        f"training {s['train_seconds_total']:.1f} s, scoring {s['score_seconds_total']:.1f} s; "
        f"this invocation {r.seconds:.1f} s"
    )
    console.print(
        f"mean loss on own examples {s['mean_in_bits_per_token']:.3f} bits/token, on the other "
        f"half {s['mean_out_bits_per_token']:.3f} bits/token"
    )
    console.print(f"wrote {r.out}/keep.npy, signals.npz, models/ ({r.n_models} checkpoints)")


def _print_attack(r) -> None:
    from rich.console import Console

    from memlens.commands.mia import _summary
    from memlens.mia.summary import MIAMetricsSummary

    m = r.mia
    title = (
        f"shadow attacks, {m['mode']} ({m['n_members']} member and {m['n_nonmembers']} "
        "non-member scores)"
    )
    _summary(MIAMetricsSummary.model_validate(m), title)
    console = Console()
    if m["mode"] == "leave-one-model-out":
        console.print(f"pooling: {m['pooling']}")
        a = m["offline_a"]
        console.print(f"offline RMIA a (calibrated per target): {min(a):.1f}-{max(a):.1f}")
    console.print(f"wrote {r.out}/mia.json, scores.parquet, roc.png")


def _print_memorization(r, top: int) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    s = r.summary
    console = Console()
    table = Table(
        title=f"counterfactual memorization, top {top} of {s['n_examples']} examples "
        f"({s['models_per_estimate']['in']} IN / {s['models_per_estimate']['out']} OUT models each)",
        box=box.SIMPLE_HEAD,
    )
    for col in ("rank", "mem acc", "± se", "mem bits", "count", "text"):
        table.add_column(col, justify="left" if col == "text" else "right")
    for row in s["top"]:
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
    u, rep = s["unique_mean_mem_accuracy"], s["repeated_mean_mem_accuracy"]
    line = f"mean counterfactual memorization {s['mean_mem_accuracy']:.3f} (accuracy), {s['mean_mem_bits']:.1f} bits"
    if rep is not None and u is not None:
        line += f"; unique examples {u:.3f}, repeated ({s['n_repeated']}) {rep:.3f}"
    console.print(line)
    for key, c in s["spearman"].items():
        if key.endswith(":all"):
            console.print(f"Spearman {key[:-4]}: rho {c['rho']:+.3f} (n={c['n']})")
    if s["audit"]:
        console.print(s["audit"])
    console.print(f"wrote {r.out}/memorization.parquet, memorization.json, memorization_hist.png")
