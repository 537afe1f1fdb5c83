"""A shadow-model world on real text: 16 shadow GPTs, LiRA and RMIA, counterfactual memorization.

The pipeline an auditor runs to ask "which examples does training on this pool memorize, and how
well can membership be inferred?":

1. A candidate pool from Shakespeare (the public-domain ``shakespeare`` corpus, fetched once with
   ``memlens fetch shakespeare``): speeches of 60-100 characters, plus planted examples
   *repeated* 4 times each and random *canaries* (32 random letters, digits and spaces, each
   once).
2. ``memlens.shadow.run(ShadowTrainConfig(..., split_by="text"))``: a byte-level BPE tokenizer
   trained on the pool, and 16 shadow GPTs trained as two batched stacks of 8 (one worker
   process per core), each on a random half of the distinct texts (every text IN, with all its
   copies, for exactly 8 of them: the membership game "did the model train on this text?") for
   200 steps of 16 (about 12 epochs: the shadows generalize partly; ``shadow_world_sweep.py``
   measures other lengths); 40% of the pool is the population, OUT for all.
3. ``run(ShadowAttackConfig(...))``: leave-one-model-out LiRA and RMIA against the loss, zlib and
   Min-K% attacks on the same (target, text) pairs; then the same scores on the texts that occur
   once.
4. The same shadows split per copy (``split_by="copy"``, the default: each copy of a repeated
   speech drawn on its own, so the OUT models of a copy mostly saw another copy), the design of
   Zhang et al.'s counterfactual memorization, with the attacks on them for comparison.
5. ``run(MemorizationConfig(...))``: counterfactual memorization per example, by kind, on the
   per-copy shadows. At 200 steps little is memorized and the repeated speeches rank highest; so
   the same shadows (pool, seed, halves) are also trained to convergence, 2000 steps
   (``--converged-steps``), as Zhang et al. measure it, where the canaries top it (and the loss
   attack is perfect: docs/shadow.md).

Run: ``memlens fetch shakespeare`` once, then
``python examples/shadow_world.py [--out examples-out/shadow-world]`` (about a minute on the
2-core machine for each set of 200-step shadows, about 5 minutes idle more for the 2000;
``--converged-steps 0`` skips those). Rerunning with the same
``--out`` reuses the trained shadows. It prints the equivalent ``memlens shadow`` commands.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

N_NATURAL = 700  # speeches seen once
N_REPEATED, COPIES = 32, 4  # speeches planted 4 times each
N_CANARIES = 48  # random strings, once each
STEPS, BATCH, LR = 200, 16, 1e-2  # training of every shadow (chosen by the sweep, docs/shadow.md)
CONVERGED_STEPS = 2000  # the same shadows trained to convergence, for counterfactual memorization
ALPHABET = list("abcdefghijklmnopqrstuvwxyz0123456789     ")


def build_pool(path: Path, seed: int = 0) -> dict[str, str]:
    """Write the pool (``.jsonl``, one example per line) and return each text's kind."""
    from memlens.data.corpora import load_corpus

    rng = np.random.default_rng(seed)
    speeches = list(dict.fromkeys(load_corpus("shakespeare", min_chars=60, max_chars=100)))
    order = rng.permutation(len(speeches))
    picked = [speeches[i] for i in order[: N_NATURAL + N_REPEATED]]
    natural, repeated = picked[:N_NATURAL], picked[N_NATURAL:]
    canaries = ["".join(rng.choice(ALPHABET, 32)).strip() for _ in range(N_CANARIES)]
    kind = {t: "natural" for t in natural} | {t: "repeated" for t in repeated}
    kind |= {t: "canary" for t in canaries}
    examples = natural + [t for t in repeated for _ in range(COPIES)] + canaries
    examples = [examples[i] for i in rng.permutation(len(examples))]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for t in examples:
            fh.write(json.dumps({"text": t, "kind": kind[t]}) + "\n")
    return kind


def train_settings(
    pool: Path,
    *,
    models: int = 16,
    steps: int = STEPS,
    batch_size: int = BATCH,
    lr: float = LR,
    seed: int = 0,
    split_by: str = "copy",
) -> dict:
    """The ``ShadowTrainConfig`` fields of the example (100 warm-up steps, the default)."""
    return {
        "pool": str(pool), "n_models": models, "vocab_size": 512, "seq_len": 64,
        "n_layer": 2, "d_model": 32, "steps": steps, "batch_size": batch_size, "lr": lr,
        "warmup_steps": 100, "seed": seed, "population_frac": 0.4,
        "stack_size": models // 2, "workers": 2, "split_by": split_by,
    }  # fmt: skip


def print_attacks(atk) -> None:
    """The AUC and low-FPR TPRs of every attack of a ``ShadowAttackSummary``."""
    print(f"{'attack':24s} {'AUC':>6s} {'TPR@1%':>7s} {'TPR@0.1%':>9s} {'TPR@0%':>7s}")
    for name, m in atk.attacks.items():
        t = m.tpr_at_fpr
        print(f"{name:24s} {m.auc:6.3f} {t['0.01']:7.3f} {t['0.001']:9.3f} {t['0.0']:7.3f}")


def versus_loss(label: str, atk, names=("lira_online", "rmia_online", "rmia_offline")) -> None:
    """Does each shadow attack beat the loss attack at AUC and at TPR@1% FPR?"""
    loss = atk.attacks["loss"]
    for name in names:
        m = atk.attacks[name]
        auc, tpr, auc0, tpr0 = m.auc, m.tpr_at_fpr["0.01"], loss.auc, loss.tpr_at_fpr["0.01"]
        beats = auc > auc0 and tpr > tpr0
        print(
            f"{name} vs loss ({label}): AUC {auc:.3f} vs {auc0:.3f}, TPR@1%FPR {tpr:.3f} vs "
            f"{tpr0:.3f}: " + ("beats it on both" if beats else "does NOT beat it on both")
        )


def print_shadows(tr) -> None:
    s = tr.summary
    print(
        f"{s.n_models} shadow GPTs of {s.n_params_per_model:,} parameters, {s.steps} steps as "
        f"{len(s.stacks)} batched stack(s), split by {s.split_by}: "
        f"{s.train_seconds_total:.0f} s training + {s.score_seconds_total:.0f} s scoring"
        + (" (reused from an earlier run)" if tr.reused else "")
    )
    print(
        f"loss on own half {s.mean_in_bits_per_token:.3f} bits/token, on the other half "
        f"{s.mean_out_bits_per_token:.3f}; {s.n_candidates} candidates, "
        f"{s.n_population} population"
    )


def report_memorization(run, config_cls, shadows: Path, out: Path, kind: dict[str, str]) -> None:
    """Counterfactual memorization of the shadows in ``shadows``, by kind of example."""
    df = run(config_cls(shadows=str(shadows)), out).table
    df["kind"] = [kind.get(t, "natural") for t in df["text"]]
    print(
        f"\ncounterfactual memorization of {shadows.name} (per-token accuracy, IN minus OUT models):"
    )
    for k in ("canary", "repeated", "natural"):
        part = df[df["kind"] == k]
        if len(part):
            print(
                f"  {k:9s} {len(part):5d} examples: mean {part['mem_accuracy'].mean():.3f} "
                f"(± {part['se_accuracy'].median():.3f} se), mean rank {part['rank'].mean():7.1f}, "
                f"best rank {part['rank'].min()}"
            )
    canary_ranks = df.loc[df["kind"] == "canary", "rank"]
    repeated_best = df.loc[df["kind"] == "repeated", "rank"].min()
    above = int((canary_ranks < repeated_best).sum())
    print(
        f"  {above} of {len(canary_ranks)} candidate canaries rank above every repeated example; "
        f"top 10: {', '.join(df['kind'].head(10))}"
    )


def main() -> None:
    import torch

    from memlens.progress import ProgressEvent
    from memlens.shadow import (
        MemorizationConfig,
        ShadowAttackConfig,
        ShadowTrainConfig,
        run,
    )

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="examples-out/shadow-world")
    ap.add_argument("--models", type=int, default=16)
    ap.add_argument("--steps", type=int, default=STEPS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--converged-steps",
        type=int,
        default=CONVERGED_STEPS,
        help="also train the shadows this long and measure counterfactual memorization on "
        "them (0: skip)",
    )
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    pool = out / "world.jsonl"
    kind = build_pool(pool, args.seed)
    n = {k: sum(1 for v in kind.values() if v == k) for k in ("natural", "repeated", "canary")}
    print(
        f"pool {pool}: {n['natural']} speeches once, {n['repeated']} speeches x {COPIES}, "
        f"{n['canary']} random canaries"
    )
    settings = train_settings(pool, models=args.models, steps=args.steps, seed=args.seed)
    t0 = time.perf_counter()
    last = {"t": 0.0}

    def progress(event: ProgressEvent) -> None:
        done, total = event.completed, event.total
        if time.perf_counter() - last["t"] > 60 or done == total:
            last["t"] = time.perf_counter()
            print(
                f"  {event.task}: step {done:g}/{total:g} ({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )

    # 1. the membership game: a text, with all its copies, is IN for half of the shadows
    by_text = out / "shadows-by-text"
    tr = run(ShadowTrainConfig(**{**settings, "split_by": "text"}), by_text, progress=progress)
    print(f"world: {tr.summary.world}")
    print_shadows(tr)
    atk = run(ShadowAttackConfig(shadows=str(by_text)), out / "attack").summary
    print(
        f"\nleave-one-model-out attacks, pooled over the {args.models} targets, each of the "
        f"{atk.n_candidates_evaluated} distinct texts once:"
    )
    print_attacks(atk)
    # the same scores on the texts that occur once (`memlens shadow attack --candidates once`)
    dedup = run(
        ShadowAttackConfig(shadows=str(by_text), candidates="once"), out / "attack-once"
    ).summary
    print(
        f"on the {dedup.n_candidates_evaluated} texts that occur once "
        f"({dedup.n_members} member and {dedup.n_nonmembers} non-member scores):"
    )
    for name in ("loss", "lira_online", "rmia_online", "rmia_offline"):
        m = dedup.attacks[name]
        print(f"{name:24s} {m.auc:6.3f} {m.tpr_at_fpr['0.01']:7.3f} {m.tpr_at_fpr['0.001']:9.3f}")
    versus_loss("all texts", atk)
    versus_loss("texts once", dedup)

    # 2. the same world split per copy (Zhang et al.'s design for counterfactual memorization):
    # the OUT models of a repeated speech's copy mostly trained on another copy of it
    tc = run(ShadowTrainConfig(**settings), out / "shadows", progress=progress)
    print("\nthe same shadows split per copy:")
    print_shadows(tc)
    per_copy = run(ShadowAttackConfig(shadows=str(out / "shadows")), out / "attack-by-copy")
    pc = per_copy.summary
    print(
        f"attacks on them, every candidate copy evaluated, labels by text ({pc.n_relabelled} "
        "(target, copy) pairs are members through another copy of their text):"
    )
    versus_loss("split by copy", pc, names=("lira_online", "rmia_online"))
    report_memorization(run, MemorizationConfig, out / "shadows", out / "memorization", kind)
    if args.converged_steps:
        # counterfactual memorization is measured on models trained to convergence (Zhang et al.):
        # the same pool, seed and halves, trained longer
        conv = train_settings(pool, models=args.models, steps=args.converged_steps, seed=args.seed)
        done = run(ShadowTrainConfig(**conv), out / "shadows-converged", progress=progress)
        tc = done.summary
        print(
            f"\nthe same shadows trained {tc.steps} steps: {tc.train_seconds_total:.0f} s training"
            + (" (reused from an earlier run)" if done.reused else "")
            + f"; loss on own half {tc.mean_in_bits_per_token:.3f} bits/token, on the other half "
            f"{tc.mean_out_bits_per_token:.3f}"
        )
        report_memorization(
            run, MemorizationConfig, out / "shadows-converged", out / "memorization-converged", kind
        )
    print(f"\nelapsed {time.perf_counter() - t0:.0f} s; the same with the command line:")
    train_cli = (f"memlens shadow train --pool {pool} --models {args.models} --shape 2,32 "
                 f"--vocab-size 512 --steps {args.steps} --batch-size {BATCH} --lr {LR:g} "
                 f"--population 0.4 --stack-size {args.models // 2} --workers 2")  # fmt: skip
    print(f"  {train_cli} --split-by text --out {by_text}")
    print(f"  memlens shadow attack --shadows {by_text} --out {out / 'attack'}")
    print(
        f"  memlens shadow attack --shadows {by_text} --candidates once --out {out / 'attack-once'}"
    )
    print(f"  {train_cli} --out {out / 'shadows'}")
    print(f"  memlens shadow attack --shadows {out / 'shadows'} --out {out / 'attack-by-copy'}")
    print(f"  memlens shadow memorization --shadows {out / 'shadows'} --out {out / 'memorization'}")
    if args.converged_steps:
        print(
            f"  (the converged shadows: --steps {args.converged_steps} --out {out / 'shadows-converged'})"
        )


if __name__ == "__main__":
    main()
