"""memlens audit: unintended bits, extraction, rarity; end to end on a model overfit to its data."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import spearmanr
from typer.testing import CliRunner

from helpers_hf import (
    bpe_tokenizer,
    save_lm,
    single_thread,
    uniform_gpt2,
    write_jsonl,
    write_lines,
)
from memlens.audit import AuditSummary, TfidfCorpus, tfidf_rarity, unintended_bits
from memlens.cli import app, main
from memlens.models.hf import load_causal_lm
from memlens.scoring import greedy_continue, score_texts
from memlens.units import capacity_bits

FLAGS = ["--prefix", "4", "--suffix", "4", "--device", "cpu"]

pytestmark = pytest.mark.usefixtures("one_thread")


# -- definitions with hand-computed answers ------------------------------------------------------


def test_tfidf_hand_computed():
    # D = {[a, b] once, [a, c] twice}: |D| = 3, tf(a) = 3, tf(b) = 1, tf(c) = 2 (duplicates count).
    docs, counts = [["a", "b"], ["a", "c"]], [1, 2]
    inside, outside = tfidf_rarity(docs, counts, others=[["b", "d", "d"]])
    assert inside[0] == pytest.approx((math.log(3 / 3) + math.log(3 / 1)) / 2)
    assert inside[1] == pytest.approx((math.log(3 / 3) + math.log(3 / 2)) / 2)
    # a non-member is scored against D plus itself: |D| = 4, tf(b) = 2, tf(d) = 2
    assert outside[0] == pytest.approx((math.log(4 / 2) + 2 * math.log(4 / 2)) / 3)
    with pytest.raises(ValueError):
        TfidfCorpus(docs).score(["z"])


def test_spearman_by_hand():
    from memlens.audit.recipe import _spearman

    # ranks [1, 2, 3, 4] vs [1, 3, 2, 4]: sum d^2 = 2, rho = 1 - 6 * 2 / (4 * 15) = 0.8
    r = _spearman(np.array([1.0, 2.0, 3.0, 4.0]), np.array([10.0, 30.0, 20.0, 40.0]))
    assert r["rho"] == pytest.approx(0.8) and r["n"] == 4
    # undefined below 3 samples or for a constant input; NaN pairs are left out
    assert _spearman(np.array([1.0, 2.0]), np.array([2.0, 1.0]))["rho"] is None
    assert _spearman(np.array([1.0, 1.0, 1.0]), np.array([1.0, 2.0, 3.0]))["rho"] is None
    r = _spearman(np.array([1.0, np.nan, 2.0, 3.0]), np.array([3.0, 0.0, 2.0, 1.0]))
    assert r["rho"] == pytest.approx(-1.0) and r["n"] == 3


def test_unintended_bits_is_a_whole_sample_max_and_capacity():
    got = unintended_bits(np.array([10.0, 5.0, 7.0]), np.array([12.5, 3.0, 7.0]))
    assert got.tolist() == [2.5, 0.0, 0.0]
    # Morris et al. 2025: 1 layer, d = 32, V = 2048, S = 64 has 80,352 parameters
    assert capacity_bits(80_352) == pytest.approx(3.64 * 80_352)


# -- end to end -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def files(overfit, tmp_path_factory):
    d = tmp_path_factory.mktemp("audit-data")
    train = list(overfit.train) + list(overfit.train[:2])  # two samples occur twice in the file
    return {
        "train_txt": write_lines(d / "train.txt", train),
        "train_jsonl": write_jsonl(d / "train.jsonl", train),
        "held_txt": write_lines(d / "held.txt", overfit.heldout),
        "dir": d,
    }


def run_cli(*args: str) -> tuple[dict, pd.DataFrame, Path]:
    out = Path(args[args.index("--out") + 1])
    with single_thread():
        res = CliRunner().invoke(app, ["audit", *args])
    assert res.exit_code == 0, (res.output, res.exception)
    return (
        json.loads((out / "audit.json").read_text()),
        pd.read_parquet(out / "samples.parquet"),
        out,
    )


@pytest.fixture(scope="module")
def base_run(overfit, files):
    return run_cli(
        "--model", str(overfit.target), "--reference", str(overfit.reference),
        "--train", str(files["train_txt"]), "--heldout", str(files["held_txt"]),
        "--out", str(files["dir"] / "run-txt"), *FLAGS,
    )  # fmt: skip


def test_overfit_model_memorizes_train_not_heldout(base_run, overfit):
    summary, df, out = base_run
    tr, ho = summary["train"], summary["heldout"]
    assert tr["n"] == 30 and ho["n"] == 30 and tr["n_duplicates_removed"] == 2
    # the target reproduces its training sentences; the reference (other sentences) cannot
    assert tr["mean_unintended_bits"] > 30
    assert ho["mean_unintended_bits"] < tr["mean_unintended_bits"] / 3
    assert tr["extraction_rate"] >= 0.6 and ho["extraction_rate"] <= 0.1
    assert summary["extraction_rate_difference"] == pytest.approx(
        tr["extraction_rate"] - ho["extraction_rate"]
    )
    assert tr["n_extraction_eligible"] == 30
    cap = summary["capacity"]
    n_params = 53 * 64 + 32 * 64 + 2 * (12 * 64**2 + 13 * 64) + 2 * 64  # the paper's GPT-2 count
    assert cap["n_params"] == n_params
    assert cap["fraction_of_capacity"] == pytest.approx(
        tr["total_unintended_bits"] / (3.64 * n_params)
    )
    # per-sample table: counts from the file, unintended = max(0, ref - target)
    train_rows = df[df.split == "train"]
    # the Spearman of the summary is that of the table's positive training rows
    pos = train_rows[train_rows.unintended_bits > 0]
    assert len(pos) == summary["tfidf_spearman_detail"]["positive_train"]["n"] >= 3
    rho = spearmanr(pos["tfidf"], pos["unintended_bits"]).statistic
    assert summary["tfidf_spearman"] == pytest.approx(rho, abs=1e-12)
    # the typed summary reads the same file, and gives the report its headline
    typed = AuditSummary.model_validate(summary)
    assert typed.headline()[2] == ("training samples", 30)
    assert typed.train.mean_unintended_bits == tr["mean_unintended_bits"]
    assert summary["first_token"] == "model"  # both tokenizers have a BOS
    assert train_rows["count"].tolist() == [2, 2] + [1] * 28
    np.testing.assert_array_equal(
        df["unintended_bits"], np.maximum(0, df["reference_bits"] - df["target_bits"])
    )
    top = summary["top_memorized"]
    assert len(top) == 10 and top[0]["unintended_bits"] == train_rows["unintended_bits"].max()
    for name in ("manifest.json", "unintended_hist.png", "unintended_vs_tfidf.png"):
        assert (out / name).exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "audit" and manifest["config"]["prefix"] == 4


def test_txt_and_jsonl_give_identical_numbers(base_run, overfit, files):
    s_txt, df_txt, _ = base_run
    s_js, df_js, _ = run_cli(
        "--model", str(overfit.target), "--reference", str(overfit.reference),
        "--train", str(files["train_jsonl"]), "--heldout", str(files["held_txt"]),
        "--out", str(files["dir"] / "run-jsonl"), *FLAGS,
    )  # fmt: skip
    pd.testing.assert_frame_equal(df_txt, df_js)
    for key in ("mean_unintended_bits", "total_unintended_bits", "extraction_rate", "n", "n_raw"):
        assert s_txt["train"][key] == s_js["train"][key]


def test_identical_reference_gives_zero_bits(base_run, overfit, files):
    twin = shutil.copytree(overfit.target, files["dir"] / "twin")
    summary, df, _ = run_cli(
        "--model", str(overfit.target), "--reference", str(twin),
        "--train", str(files["train_txt"]), "--heldout", str(files["held_txt"]),
        "--out", str(files["dir"] / "run-twin"), *FLAGS,
    )  # fmt: skip
    assert (df["unintended_bits"] == 0.0).all()
    assert (
        summary["train"]["total_unintended_bits"]
        == 0.0
        == summary["heldout"]["total_unintended_bits"]
    )
    assert summary["train"]["extraction_rate"] == base_run[0]["train"]["extraction_rate"]


def test_reference_with_another_tokenizer_is_compared_in_bits_per_text(base_run, overfit, files):
    # Closed form: a zero-weight reference codes every one of its own tokens at log2 V_ref bits.
    bpe = bpe_tokenizer(list(overfit.train) + list(overfit.heldout), vocab_size=70)
    ref = save_lm(uniform_gpt2(len(bpe)), bpe, files["dir"] / "uniform-bpe")
    summary, df, _ = run_cli(
        "--model", str(overfit.target), "--reference", str(ref),
        "--train", str(files["train_txt"]), "--heldout", str(files["held_txt"]),
        "--out", str(files["dir"] / "run-bpe"), *FLAGS,
    )  # fmt: skip
    n_ref = np.array([len(bpe(t, add_special_tokens=False)["input_ids"]) for t in df["text"]])
    assert (n_ref != df["n_tokens_target"]).any()  # really a different tokenization
    np.testing.assert_array_equal(df["n_tokens_reference"], n_ref)
    np.testing.assert_allclose(df["reference_bits"], n_ref * math.log2(len(bpe)), rtol=1e-6)
    np.testing.assert_allclose(df["target_bits"], base_run[1]["target_bits"])
    assert summary["reference"]["vocab_size"] == len(bpe)


def test_extraction_agrees_with_teacher_forcing_and_hf_generate(base_run, overfit):
    # Greedy decoding reproduces a suffix exactly iff every suffix token is the argmax given the
    # true prefix: check the batched greedy decoder against the scoring pass's argmax flags.
    _, df, _ = base_run
    lm = load_causal_lm(overfit.target, device="cpu")
    texts = df["text"].tolist()
    sc = score_texts(lm, texts, argmax=True)
    # column j predicts token j+1; with BOS at 0, suffix tokens 5..8 are columns 4..7
    teacher = sc.scores.is_argmax[:, 4:8].all(axis=1)
    np.testing.assert_array_equal(df["extracted"].to_numpy(), teacher)
    assert df["extracted"].any() and not df["extracted"].all()
    prompts = torch.tensor(np.stack([t[:5] for t in sc.tokens[:6]]))
    mine = greedy_continue(lm.model, prompts, 6, batch_size=4)
    ref = lm.model.generate(
        prompts, attention_mask=torch.ones_like(prompts), do_sample=False, max_new_tokens=6,
        min_new_tokens=6, eos_token_id=None, pad_token_id=1,
    )[:, 5:]  # fmt: skip
    torch.testing.assert_close(mine, ref)


def test_audit_and_mia_report_the_same_zlib_size(base_run):
    # The audit's zlib_bytes column and the MIA's zlib attacks divide by the same size of the
    # same text (memlens.units.zlib_bytes, zlib's default level 6).
    from memlens.mia import attacks as A
    from memlens.scoring import TokenScores

    _, df, _ = base_run
    z = np.array([len(zlib.compress(t.encode("utf-8"), 6)) for t in df["text"]])
    np.testing.assert_array_equal(df["zlib_bytes"], z)
    n = len(df)
    dummy = TokenScores(log2p=np.full((n, 1), -1.0), mask=np.ones((n, 1), bool))
    x = A.AttackInputs(
        target=dummy, texts=list(df["text"]), target_bits=df["target_bits"].to_numpy()
    )
    score = A.compute_attacks(["zlib"], x)["zlib"]
    np.testing.assert_allclose(-df["target_bits"] / score, df["zlib_bytes"], rtol=1e-12)


def test_long_texts_are_scored_with_a_window_when_asked(base_run, overfit, files):
    long = " ".join(overfit.train[:3])  # ~45 tokens, context 32
    p = write_lines(files["dir"] / "long.txt", [long, *overfit.train[3:10]])
    summary, df, _ = run_cli(
        "--model", str(overfit.target), "--reference", str(overfit.reference),
        "--train", str(p), "--heldout", str(files["held_txt"]), "--window-stride", "8",
        "--out", str(files["dir"] / "run-window"), *FLAGS,
    )  # fmt: skip
    assert df["n_tokens_target"].max() > 32 and np.isfinite(df["target_bits"]).all()
    # texts that fit the context are scored whole, as in the run without a window
    base = base_run[1].drop_duplicates("text").set_index("text")["target_bits"]
    short = df[df["text"] != long]
    np.testing.assert_allclose(short["target_bits"], base.loc[short["text"]], rtol=1e-6)
    # the long text by hand: its tokens (BOS first) through the target, position i predicted
    # by the window [0, 32) when i < 32, else by the first window ending 8, 16, ... tokens later
    # (at most at T) that holds it; bits = -sum log2 p of tokens 1..T-1
    from memlens.data.text import encode_texts

    lm = load_causal_lm(overfit.target, device="cpu")
    ids = torch.as_tensor(encode_texts([long], lm.tokenizer).tokens[0])[None]
    T = ids.shape[1]
    bits = 0.0
    with torch.no_grad():
        for i in range(T - 1):
            end = 32 if i < 32 else min(32 + 8 * math.ceil((i + 1 - 32) / 8), T)
            logits = lm.model(input_ids=ids[:, end - 32 : end]).logits[0, i - (end - 32)]
            bits -= torch.log_softmax(logits.double(), -1)[ids[0, i + 1]].item() / math.log(2)
    row = df[df["text"] == long].iloc[0]
    assert row["n_tokens_target"] == T - 1 and T > 40
    assert row["target_bits"] == pytest.approx(bits, rel=1e-5)


# -- bad input: one sentence, exit code 2, nothing written ----------------------------------------


def _bad_files(d: Path, overfit) -> dict[str, Path]:
    (d / "nontext.txt").write_bytes(b"the cat sees\n\xff\xfe broken\n")
    (d / "empty.txt").write_bytes(b"")
    write_jsonl(d / "wrongcol.jsonl", overfit.train, column="body")
    write_lines(d / "long.txt", [" ".join(overfit.train[:3])])
    return {p.stem: p for p in d.iterdir()}


@pytest.mark.parametrize(
    ("case", "fragment"),
    [
        ("missing_model", "model directory"),
        ("prefix_too_long", "do not fit the context of 32"),
        ("wrong_column", "has no 'text' field"),
        ("empty", "is empty"),
        ("non_utf8", "not valid UTF-8"),
        ("too_long", "longer than the context of 32 of model"),
        ("reference_tokenizer", "; pass --reference-tokenizer."),
        (
            "same_heldout",
            "held-out data must be disjoint (both were read from the same data "
            "with the same split: name the held-out split with --heldout-split).",
        ),
    ],
)
def test_bad_input_exits_2_with_one_sentence(
    case, fragment, overfit, files, tmp_path, capsys, monkeypatch
):
    bad = _bad_files(tmp_path, overfit)
    args = {
        "--model": str(overfit.target), "--reference": str(overfit.reference),
        "--train": str(files["train_txt"]), "--heldout": str(files["held_txt"]),
    }  # fmt: skip
    if case == "missing_model":
        args["--model"] = str(tmp_path / "no-such-model")
    elif case == "wrong_column":
        args["--train"] = str(bad["wrongcol"])
    elif case == "empty":
        args["--heldout"] = str(bad["empty"])
    elif case == "prefix_too_long":
        args["--prefix"] = "30"
    elif case == "non_utf8":
        args["--train"] = str(bad["nontext"])
    elif case == "reference_tokenizer":
        (tmp_path / "no-vocab").mkdir()
        args["--reference-tokenizer"] = str(tmp_path / "no-vocab")
    elif case == "same_heldout":
        args["--heldout"] = args["--train"]
    else:
        args["--train"] = str(bad["long"])
    out = tmp_path / "out"
    argv = ["memlens", "audit", *FLAGS, *[x for kv in args.items() for x in kv], "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and fragment in err
    assert "\n" not in err and "Traceback" not in err
    assert not out.exists()


def test_real_binary_exits_2(tmp_path):
    exe = Path(sys.executable).with_name("memlens")
    res = subprocess.run(
        [str(exe), "audit", "--model", str(tmp_path / "nope"), "--reference", "x", "--train", "a.txt", "--heldout", "b.txt"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 2
    assert res.stderr.strip() == f"error: model directory {tmp_path / 'nope'} does not exist."


def test_out_dir_holding_another_run_fails_before_any_work(
    base_run, overfit, files, capsys, monkeypatch
):
    _, _, out = base_run
    before = (out / "audit.json").read_bytes()
    argv = [
        "memlens", "audit", "--model", str(overfit.target), "--reference", str(overfit.reference),
        "--train", str(files["train_txt"]), "--heldout", str(files["held_txt"]), "--out", str(out),
        "--prefix", "3", "--suffix", "4", "--device", "cpu",
    ]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2 and "already holds an audit run" in capsys.readouterr().err
    assert (out / "audit.json").read_bytes() == before


def test_interrupted_audit_resumes_finished_stages(base_run, overfit, files, tmp_path, monkeypatch):
    # A run interrupted during extraction keeps its two finished scoring stages; the rerun
    # reuses them (no model forward for scoring) and gives the same numbers as an uninterrupted run.
    import shutil

    import memlens.audit.recipe as audit_run
    import memlens.scoring as hf

    summary, df, out = base_run
    part = tmp_path / "part"
    shutil.copytree(out, part)
    for f in ("audit.json", "samples.parquet"):
        (part / f).unlink()
    ext_cells = list((part / "cells").glob("extraction-*.npz"))
    assert len(ext_cells) == 1 and len(list((part / "cells").glob("*.npz"))) == 3
    ext_cells[0].unlink()  # interrupted before extraction finished

    calls = []
    real = hf.score_texts
    monkeypatch.setattr(hf, "score_texts", lambda *a, **k: calls.append(1) or real(*a, **k))
    cfg = audit_run.AuditConfig(**json.loads((out / "manifest.json").read_text())["config"])
    events = []
    with single_thread():
        res = audit_run.run(cfg, part, progress=events.append)
    assert calls == [] and res.reused == ["target", "reference"]
    # progress: only the stage that ran reports, ending at all eligible samples
    n_eligible = (
        summary["train"]["n_extraction_eligible"] + summary["heldout"]["n_extraction_eligible"]
    )
    assert {e.task for e in events} == {"greedy extraction"}
    assert events[-1].completed == events[-1].total == n_eligible
    pd.testing.assert_frame_equal(res.samples.reset_index(drop=True), df, check_dtype=False)
    again = audit_run.run(cfg, part)  # a finished audit rerun reuses all three stages
    assert again.reused == ["target", "reference", "extraction"]
    manifest = json.loads((part / "manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["reused_stages"] == again.reused
    args = ["audit", "--model", str(overfit.target), "--reference", str(overfit.reference),
            "--train", str(files["train_txt"]), "--heldout", str(files["held_txt"]),
            "--out", str(part), *FLAGS]  # fmt: skip
    with single_thread():
        res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "reused 3 finished stage(s) from an earlier run: target, reference, extraction" in (
        " ".join(res.output.split())
    )


def test_undefined_spearman_says_why():
    """An undefined rank correlation carries the reason the console prints instead of a bare "-"
    (no positive samples when target and reference agree; every text seen once)."""
    from memlens.audit.recipe import _spearman

    none = _spearman(np.array([]), np.array([]), "TF-IDF", "training sample(s) with positive bits")
    assert none == {
        "rho": None, "p_value": None, "n": 0,
        "why": "only 0 training sample(s) with positive bits, 3 needed",
    }  # fmt: skip
    once = _spearman(np.ones(5), np.arange(5.0), "duplicate count")
    assert once["rho"] is None and once["why"] == "every sample has duplicate count 1"
    flat = _spearman(np.arange(5.0), np.zeros(5), "TF-IDF")
    assert flat["why"] == "every sample has 0 unintended bits"
    rho = _spearman(np.arange(5.0), np.arange(5.0) ** 2, "TF-IDF")
    assert rho["rho"] == pytest.approx(1.0) and "why" not in rho


def test_rerun_after_the_model_was_saved_again_rescores_it(overfit, files, tmp_path):
    """A model saved again under the same path (retrained in place) between two runs into the
    same ``out``: its stored scores and extraction are not reused (they were: the stage key held
    the model's description, which names the path but not the files), the unchanged reference's
    are, and the result equals a fresh run's."""
    import memlens.audit.recipe as audit_run

    shutil.copytree(overfit.target, tmp_path / "model")
    cfg = audit_run.AuditConfig(
        model=str(tmp_path / "model"),
        reference=str(overfit.reference),
        train=str(files["train_txt"]),
        heldout=str(files["held_txt"]),
        prefix=4,
        suffix=4,
        device="cpu",
    )
    with single_thread():
        first = audit_run.run(cfg, tmp_path / "run")
        shutil.rmtree(tmp_path / "model")  # "retrained": the reference's weights in its place
        shutil.copytree(overfit.reference, tmp_path / "model")
        again = audit_run.run(cfg, tmp_path / "run")
        fresh = audit_run.run(cfg, tmp_path / "fresh")
    assert first.reused == [] and again.reused == ["reference"]
    pd.testing.assert_frame_equal(again.samples, fresh.samples)
    # the model is now its own reference: no unintended bits at all (the target had > 30)
    assert first.summary.train.mean_unintended_bits > 30
    assert again.summary.train.mean_unintended_bits == 0.0
