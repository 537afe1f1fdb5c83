"""Tests of the grokking experiment: the data, the scoring protocol against a direct computation,
hand-computed summaries, resume after an interruption, and command-line errors."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from memlens.errors import UserError
from memlens.track.grok import (
    GrokConfig,
    ModAddMLP,
    evaluate,
    modular_addition_split,
    summarize,
)
from memlens.track.grok import run as run_grok

pytestmark = pytest.mark.usefixtures("one_thread")


def test_split_is_the_whole_table():
    seqs, train = modular_addition_split(7, 0.5, seed=0)
    assert seqs.shape == (49, 3) and int(train.sum()) == round(0.5 * 49)
    assert {(int(a), int(b)) for a, b, _ in seqs} == {(a, b) for a in range(7) for b in range(7)}
    assert all(int(c) == (int(a) + int(b)) % 7 for a, b, c in seqs)
    assert torch.equal(train, modular_addition_split(7, 0.5, seed=0)[1])
    assert not torch.equal(train, modular_addition_split(7, 0.5, seed=1)[1])


def test_evaluate_matches_direct_cross_entropy():
    p = 11
    seqs, train = modular_addition_split(p, 0.4, seed=3)
    torch.manual_seed(0)
    model = ModAddMLP(p, 16, 32)
    with torch.no_grad():
        logits = model.answer_logits(seqs[:, 0], seqs[:, 1])
        ce = torch.nn.functional.cross_entropy(
            logits, seqs[:, 2], reduction="none"
        ).double() / math.log(2)
        correct = logits.argmax(-1) == seqs[:, 2]
    r = evaluate(model, seqs, train)
    assert r["train_acc"] == pytest.approx(correct[train].double().mean().item())
    assert r["test_acc"] == pytest.approx(correct[~train].double().mean().item())
    assert r["train_bits"] == pytest.approx(ce[train].mean().item(), rel=1e-6)
    assert r["test_bits"] == pytest.approx(ce[~train].mean().item(), rel=1e-6)
    assert r["gap_bits"] == pytest.approx(r["test_bits"] - r["train_bits"])
    norm = math.sqrt(sum(float((q.detach().double() ** 2).sum()) for q in model.parameters()))
    assert r["weight_norm"] == pytest.approx(norm)
    # the other positions of the scoring protocol are uniform: exactly log2 p bits
    from memlens.scoring import score_tokens

    sc = score_tokens(model, seqs[:5])
    np.testing.assert_allclose(sc.log2p[:, 0], -math.log2(p), atol=1e-6)


def test_summary_known_answer():
    curve = pd.DataFrame(
        {
            "step": [0, 10, 20, 30, 40],
            "train_acc": [0.0, 0.995, 1.0, 1.0, 1.0],
            "test_acc": [0.0, 0.01, 0.5, 0.96, 0.995],
            "train_bits": [6.0, 0.5, 0.1, 0.05, 0.01],
            "test_bits": [6.0, 9.0, 4.0, 0.5, 0.02],
            "gap_bits": [0.0, 8.5, 3.9, 0.45, 0.01],
            "weight_norm": [10.0, 9.0, 8.0, 7.0, 6.0],
        }
    )
    s = summarize(curve, GrokConfig(p=7, train_fraction=0.5), n_train=25).to_json()
    assert (s["step_train_acc_99"], s["step_test_acc_95"], s["step_test_acc_99"]) == (10, 30, 40)
    assert s["grok_delay_steps"] == 30 and s["grok_delay_ratio"] == 4.0
    assert s["test_acc_at_step_train_acc_99"] == 0.01
    assert (s["memorization_gap_bits_peak"], s["step_memorization_gap_peak"]) == (8.5, 10)
    assert s["memorization_gap_total_bits_peak"] == 8.5 * 25
    assert s["weight_norm_at_train_acc_99"] == 9.0 and s["n_test"] == 49 - 25
    assert (s["train_acc_final"], s["test_acc_final"]) == (1.0, 0.995)
    never = curve.assign(test_acc=0.0)
    assert summarize(never, GrokConfig(p=7, train_fraction=0.5), 25).step_test_acc_99 is None


SMALL = dict(
    p=13, train_fraction=0.5, d_embed=16, d_hidden=32, max_steps=60, eval_every=10, flush_every=20
)


def curve(run) -> pd.DataFrame:
    return pd.read_parquet(run.out_dir / "curve.parquet")


def test_interrupted_run_resumes_to_the_same_curve(tmp_path, capsys):
    full = run_grok(GrokConfig(**SMALL), tmp_path / "full")
    d = json.loads((tmp_path / "full" / "grok.json").read_text())
    # p = 13: 169 pairs, 84 trained on and 85 held out. Under seed 0 the 60 steps memorize the
    # training half (84/84 first reached at step 60) and generalize to none of the rest.
    assert (d["train_acc_final"], d["test_acc_final"]) == (1.0, 0.0)
    assert (d["step_train_acc_99"], d["step_test_acc_99"]) == (60, None)
    for f in ("manifest.json", "curve.parquet", "grok_accuracy.png", "grok_bits.png"):
        assert (tmp_path / "full" / f).exists()
    assert curve(full)["step"].tolist() == [0, 10, 20, 30, 40, 50, 60]

    def interrupt(event):
        if event.completed == 50:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_grok(GrokConfig(**SMALL), tmp_path / "cut", progress=interrupt)
    assert not (tmp_path / "cut" / "grok.json").exists()
    resumed = run_grok(GrokConfig(**SMALL), tmp_path / "cut")
    pd.testing.assert_frame_equal(curve(resumed), curve(full), rtol=1e-5)
    # the result says what was reused: nothing the first time, on the rerun the checkpoint the
    # interruption at step 50 left
    assert full.reused == [] and resumed.reused == ["checkpoint at step 50"]
    # the console says the run resumed (from the checkpoint Ctrl-C saved), and a rerun of the
    # finished run trains nothing and says so
    from memlens.commands.track import _print_grok

    assert resumed.summary.resumed_from_step == 50 and full.summary.resumed_from_step == 0
    _print_grok(resumed.summary, None)
    assert "resumed from step 50 of the interrupted run" in capsys.readouterr().out
    again = run_grok(GrokConfig(**SMALL), tmp_path / "cut")
    assert again.summary.resumed_from_step == 60
    pd.testing.assert_frame_equal(curve(again), curve(full), rtol=1e-5)
    _print_grok(again.summary, None)
    text = capsys.readouterr().out
    assert "had finished: nothing was trained again" in text and "interrupted" not in text


def test_config_validation_and_cli_errors(tmp_path, capsys, monkeypatch):
    from memlens import cli

    with pytest.raises(UserError):
        GrokConfig(train_fraction=1.0)
    for args, fragment in [
        (["--p", "1"], "at least 2"),
        (["--p", "1000000"], "at most 2000 (training is full-batch"),  # 8 TB: allocator traceback
        (["--train-fraction", "0"], "strictly between 0 and 1"),
        (["--preset", "full"], "unknown preset"),
        (["--weight-decay", "-1"], "non-negative"),
    ]:
        out = tmp_path / "out"
        monkeypatch.setattr(sys, "argv", ["memlens", "grok", *args, "--out", str(out)])
        with pytest.raises(SystemExit) as exc:
            cli.main()
        err = capsys.readouterr().err.strip()
        assert exc.value.code == 2 and fragment in err and "\n" not in err, err
        assert not out.exists()


def test_early_stop_and_a_finished_run_is_not_trained_further(tmp_path, monkeypatch):
    import memlens.track.grok as grok

    real = grok.evaluate

    def perfect_test(model, seqs, train_mask):
        return {**real(model, seqs, train_mask), "test_acc": 1.0}

    monkeypatch.setattr(grok, "evaluate", perfect_test)
    cfg = GrokConfig(**{**SMALL, "max_steps": 500, "stop_patience": 20})
    first = run_grok(cfg, tmp_path / "run")
    # test accuracy >= 0.99 from the first evaluation in the loop (step 10): stop 20 steps later
    assert curve(first)["step"].tolist() == [0, 10, 20, 30] and first.summary.stopped_early
    again = run_grok(cfg, tmp_path / "run")
    assert curve(again)["step"].tolist() == [0, 10, 20, 30]


def test_console_says_which_marks_were_not_reached(capsys, monkeypatch):
    """A run too short to generalize prints "-" for the steps it never reached; the console says
    what that means and what to pass, instead of a bare dash."""
    from types import SimpleNamespace

    from memlens.commands.track import _print_grok

    monkeypatch.setenv("COLUMNS", "300")
    s = SimpleNamespace(
        task="(a + b) mod 97", n_train=3764, train_fraction=0.4, n_test=5645, steps=200,
        step_train_acc_99=30, test_acc_at_step_train_acc_99=0.0, step_test_acc_95=None,
        step_test_acc_99=None, train_acc_final=1.0, test_acc_final=0.0002,
        memorization_gap_bits_peak=19.81, step_memorization_gap_peak=40,
        memorization_gap_bits_final=14.5, weight_norm_initial=158.2, weight_norm_final=94.2,
        resumed_from_step=0,
    )  # fmt: skip
    _print_grok(s, None)
    out = capsys.readouterr().out
    assert "test accuracy >= 0.95 at step -, >= 0.99 at step -" in out
    assert (
        "not reached within 200 steps: test accuracy 0.95, test accuracy 0.99; raise --steps" in out
    )
    s.step_test_acc_95, s.step_test_acc_99 = 160, 190
    _print_grok(s, None)
    assert "not reached" not in capsys.readouterr().out


def test_console_gives_the_share_of_pairs_actually_trained_on(capsys, monkeypatch):
    """p = 2 with a requested 40%: round(0.4 * 4) = 2 of the 4 pairs train, which is 50%."""
    from types import SimpleNamespace

    from memlens.commands.track import _print_grok

    monkeypatch.setenv("COLUMNS", "300")
    s = SimpleNamespace(
        task="(a + b) mod 2", n_train=2, train_fraction=0.4, n_test=2, steps=20,
        step_train_acc_99=10, test_acc_at_step_train_acc_99=0.0, step_test_acc_95=None,
        step_test_acc_99=None, train_acc_final=1.0, test_acc_final=0.0,
        memorization_gap_bits_peak=26.2, step_memorization_gap_peak=20,
        memorization_gap_bits_final=26.2, weight_norm_initial=24.8, weight_norm_final=21.7,
        resumed_from_step=0,
    )  # fmt: skip
    _print_grok(s, None)
    assert "(a + b) mod 2: 2 training pairs (50%), 2 test pairs" in capsys.readouterr().out
    assert modular_addition_split(2, 0.4, 0)[1].sum() == 2
