"""How long should the example's shadows train? A sweep of training lengths on the example world.

For each number of steps it trains the 16 shadow GPTs of ``examples/shadow_world.py`` on the same
pool (same seed, same halves), attacks them leave-one-model-out and measures counterfactual
memorization, and prints one row: the loss on the models' own half and on the other half (bits
per token); AUC and TPR at 1% and 0.1% FPR of the loss attack, of online LiRA and of online and
offline RMIA, over all candidates (a copy of a repeated text counts as a member when the target
trained on any copy) and over the candidates whose text occurs once; and the counterfactual
memorization of the random canaries against the speeches that occur once and those planted 4
times (per-token accuracy, the paper's measure, by which memlens ranks, and bits per token).

Run: ``python examples/shadow_world_sweep.py [--steps 150,200,300,600,1000] [--out
examples-out/shadow-sweep] [--also DIR]`` (``--also``: finished shadows of the same world, e.g.
an earlier run of the example, evaluated as one more row); finished trainings are reused. The
tables are markdown (docs/shadow.md shows them).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from shadow_world import BATCH, LR, build_pool, train_settings  # noqa: E402

ATTACKS = ("loss", "lira_online", "rmia_online", "rmia_offline")


def _metrics(s: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    from memlens.mia.metrics import roc_auc, tpr_at_fpr

    y = y.astype(int)
    return roc_auc(s, y), tpr_at_fpr(s, y, 0.01)["tpr"], tpr_at_fpr(s, y, 0.001)["tpr"]


def evaluate(shadows: Path, d: Path, kind: dict[str, str]) -> dict:
    """One row of the sweep: attacks (leave-one-model-out) and counterfactual memorization."""

    from memlens.shadow import MemorizationConfig, ShadowAttackConfig, load_shadows, run

    sh = load_shadows(shadows)
    s = sh.summary
    atk = run(ShadowAttackConfig(shadows=str(shadows), n_boot=10), d / "attack")
    table = atk.scores
    count = sh.pool["count"].to_numpy()
    names = [c for c in table.columns if c not in ("target", "example", "pool_id", "label")]
    scored = np.all([np.isfinite(table[a].to_numpy()) for a in names], axis=0)
    table = table[scored]  # the samples every attack scored, as mia.json counts them
    once = count[table["pool_id"].to_numpy()] == 1
    cfg = json.loads((shadows / "manifest.json").read_text())["config"]
    half = sh.keep.sum(1).mean()  # examples per model
    row = {"steps": s.steps, "batch": cfg["batch_size"], "lr": cfg["lr"],
           "epochs": s.steps * cfg["batch_size"] / half,
           "in": s.mean_in_bits_per_token, "out": s.mean_out_bits_per_token}  # fmt: skip
    labels = table["label"].to_numpy()
    for name in ATTACKS:
        v = table[name].to_numpy()
        row[name] = _metrics(v, labels)
        row[name + ":once"] = _metrics(v[once], labels[once])
    mem = run(MemorizationConfig(shadows=str(shadows)), d / "memorization").table
    mem["kind"] = [kind.get(t, "natural") for t in mem["text"]]
    canary = mem.loc[mem["kind"] == "canary", "rank"]
    repeated = mem.loc[mem["kind"] == "repeated", "rank"]
    row["canary_mean_rank"], row["repeated_best_rank"] = canary.mean(), repeated.min()
    row["canaries_above"] = f"{int((canary < repeated.min()).sum())}/{len(canary)}"
    for k in ("canary", "natural", "repeated"):
        row[k + "_mem"] = mem.loc[mem["kind"] == k, "mem_accuracy"].mean()
        row[k + "_bits"] = mem.loc[mem["kind"] == k, "mem_bits_per_token"].mean()
    row["n"] = (len(mem), int(once.sum() // s.n_models))
    print(f"  {s.steps} steps evaluated ({atk.summary.n_relabelled} pairs relabelled)", flush=True)
    return row


def main() -> None:
    import torch

    from memlens.shadow import ShadowTrainConfig, run

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="examples-out/shadow-sweep")
    ap.add_argument("--steps", default="150,200,300,600,1000")
    ap.add_argument("--batch-size", type=int, default=BATCH)
    ap.add_argument("--lr", type=float, default=LR)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-only", action="store_true")
    ap.add_argument(
        "--also", action="append", default=[], help="finished shadows of the same world to add"
    )
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out).resolve()  # the pool's path is in the shadows' config: one spelling
    pool = out / "world.jsonl"
    kind = build_pool(pool, args.seed)
    dirs = []
    for steps in (int(v) for v in args.steps.split(",")):
        t0 = time.perf_counter()
        cfg = train_settings(
            pool, steps=steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed
        )
        d = out / f"steps-{steps}"
        s = run(ShadowTrainConfig(**cfg), d / "shadows").summary
        print(
            f"{steps} steps: {time.perf_counter() - t0:.0f} s wall "
            f"({s.train_seconds_total:.0f} s training in the workers)",
            flush=True,
        )
        dirs.append((d / "shadows", d))
    for also in args.also:
        dirs.append((Path(also), out / f"also-{Path(also).resolve().parent.name}"))
    if args.train_only:
        return
    rows = [evaluate(shadows, d, kind) for shadows, d in dirs]
    if not rows:
        return
    print(f"\n16 shadow GPTs (2 layers, width 32); {rows[0]['n'][0]} candidates, "
          f"{rows[0]['n'][1]} of them texts that occur once; cells: AUC / TPR@1%FPR / "
          "TPR@0.1%FPR, leave-one-model-out, pooled over the 16 targets")  # fmt: skip
    for sfx, what in ((":once", "texts that occur once"), ("", "all candidates, labels by text")):
        print(f"\n{what}:\n")
        print("| steps | batch, lr | epochs | bits/token own half | other half | "
              + " | ".join(ATTACKS) + " |")  # fmt: skip
        print("|" + "---:|" * (5 + len(ATTACKS)))
        for r in rows:
            cells = " | ".join("{:.3f} / {:.3f} / {:.3f}".format(*r[n + sfx]) for n in ATTACKS)
            print(f"| {r['steps']} | {r['batch']}, {r['lr']:g} | {r['epochs']:.1f} | "
                  f"{r['in']:.2f} | {r['out']:.2f} | {cells} |")  # fmt: skip
    print("\ncounterfactual memorization (per-token accuracy, IN minus OUT models; rank 1 = most "
          "memorized):\n")  # fmt: skip
    print("| steps | canaries | unique speeches | repeated speeches | canaries' mean rank | "
          "best repeated rank | canaries above every repeated | "
          "bits/token: canaries, unique, repeated |")  # fmt: skip
    print("|" + "---:|" * 8)
    for r in rows:
        print(f"| {r['steps']} | {r['canary_mem']:.3f} | {r['natural_mem']:.3f} | "
              f"{r['repeated_mem']:.3f} | {r['canary_mean_rank']:.1f} | "
              f"{r['repeated_best_rank']} | {r['canaries_above']} | {r['canary_bits']:.2f}, "
              f"{r['natural_bits']:.2f}, {r['repeated_bits']:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
