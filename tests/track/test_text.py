"""The tracker inside a real Hugging Face ``Trainer`` (tiny local GPT-2), and ``memlens track
--model/--train/--track`` on text, checked against independent computations: the model's own
loss and KV-cached greedy decoding (:func:`memlens.scoring.extraction.k_extraction`)."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pandas as pd
import pytest
import torch

import helpers_hf as H
from memlens.track import Schedule, Tracker, TrackSet, trainer_callback

pytestmark = pytest.mark.usefixtures("one_thread")


def test_trainer_callback_with_a_real_trainer(tmp_path):
    from transformers import Trainer, TrainingArguments

    from memlens.data.text import encode_texts
    from memlens.scoring.extraction import k_extraction
    from memlens.track.text import _collator, _Rows

    tok = H.wordlevel_tokenizer()
    sentences = H.make_sentences(16, seed=7)
    train, held = sentences[:8], sentences[8:]
    enc = encode_texts(train + held, tok)
    model = H.tiny_gpt2(len(tok), n_positions=32, n_layer=1, n_embd=32, seed=0)
    examples = TrackSet(
        tokens=enc.tokens,
        groups=["repeated"] * 8 + ["heldout"] * 8,
        reference_bits=np.full(16, np.nan),
        first_token_bits=enc.first_token_bits,
        n_lead=1,
        counts=[1] * 8 + [0] * 8,
    )
    tracker = Tracker(examples, tmp_path / "track", schedule=Schedule.log(12), prefix=3, suffix=5)
    args = TrainingArguments(
        output_dir=str(tmp_path / "hf"), max_steps=40, per_device_train_batch_size=8, learning_rate=1e-2,
        lr_scheduler_type="constant", logging_strategy="no", save_strategy="no", report_to="none",
        use_cpu=True, disable_tqdm=True, remove_unused_columns=False, seed=0,
    )  # fmt: skip
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=_Rows([t for t in enc.tokens[:8] for _ in range(4)]),
        data_collator=_collator(tok.pad_token_id),
        callbacks=[trainer_callback(tracker)],
    )
    trainer.train()
    obs = tracker.observations()
    # every step is reported to the callback, so observations fall exactly on the schedule,
    # plus the end of training (40 is not a log-spaced step)
    assert obs.steps.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 15, 18, 22, 26, 32, 38, 40]
    assert len(list((tmp_path / "track" / "parts").glob("*.parquet"))) == len(obs.steps)

    model.eval()
    ids, mask = H.encode_batch(tok, train + held)
    labels = ids.masked_fill(~mask, -100)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask.long()).logits
    nll = torch.nn.functional.cross_entropy(
        logits[:, :-1].transpose(1, 2), labels[:, 1:], reduction="none", ignore_index=-100
    ).sum(1)
    np.testing.assert_allclose(obs.code_bits[:, -1], nll.double().numpy() / math.log(2), rtol=1e-5)

    greedy = k_extraction(model, enc.tokens, prefix=3, suffix=5, n_lead=1)
    assert obs.extracted[:, -1].tolist() == greedy.exact.tolist()
    assert greedy.exact[:8].any() and not greedy.exact[8:].any()  # both outcomes occur
    # the first observation is the untrained model: nothing extracted yet
    assert not obs.extracted[:, 0].any()


@pytest.fixture(scope="module")
def text_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("tracktext")
    tok = H.wordlevel_tokenizer()
    H.save_lm(
        H.tiny_gpt2(len(tok), n_positions=32, n_layer=1, n_embd=32, seed=0), tok, root / "model"
    )
    H.save_lm(
        H.tiny_gpt2(len(tok), n_positions=32, n_layer=1, n_embd=32, seed=1), tok, root / "ref"
    )
    s = H.make_sentences(40, seed=11)
    H.write_lines(root / "train.txt", s[:4] * 6 + s[4:20])
    H.write_jsonl(root / "track.jsonl", s[:30])
    return root, s


def test_track_cli_on_user_model_and_text(text_files, tmp_path, capsys, monkeypatch):
    from memlens import cli

    root, s = text_files
    out = tmp_path / "run"
    argv = [
        "memlens", "track", "--model", str(root / "model"), "--train", str(root / "train.txt"),
        "--track", str(root / "track.jsonl"), "--reference", str(root / "ref"), "--steps", "25",
        "--lr", "1e-2", "--batch-size", "8", "--prefix", "3", "--suffix", "5", "--out", str(out),
    ]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exc:
        cli.main()
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "repeated" in text and "heldout" in text
    d = json.loads((out / "dynamics.json").read_text())
    g = d["groups"]
    assert (g["repeated"]["n"], g["unique"]["n"], g["heldout"]["n"]) == (4, 16, 10)
    assert (
        g["repeated"]["training_occurrences"] == 6.0 and g["heldout"]["training_occurrences"] == 0.0
    )
    assert d["criterion"]["name"] == "bits" and str(root / "ref") in d["reference"]
    assert d["training"]["steps"] == 25
    per = pd.read_parquet(out / "examples.parquet")
    assert per["text"].tolist() == s[:30]
    # the reference bits are the reference model's own code lengths of the texts
    from memlens.models.hf import load_causal_lm
    from memlens.scoring import score_texts

    ref_bits = score_texts(load_causal_lm(root / "ref", device="cpu"), s[:30]).bits
    np.testing.assert_allclose(per["reference_bits"], ref_bits, rtol=1e-6)
    np.testing.assert_allclose(
        per["unintended_bits_final"],
        np.maximum(0, per["reference_bits"] - per["code_bits_final"]),
        atol=1e-9,
    )
    assert (out / "manifest.json").exists() and (out / "heatmap.png").exists()


def test_track_cli_text_errors(text_files, tmp_path, capsys, monkeypatch):
    from memlens import cli

    root, _ = text_files
    (tmp_path / "empty.txt").write_text("\n \n")
    cases = [
        (["--train", str(tmp_path / "empty.txt")], "no non-empty texts"),
        (
            ["--train", str(root / "train.txt"), "--prefix", "40", "--suffix", "40"],
            "no tracked text has 80 tokens",
        ),
        (
            ["--train", str(root / "train.txt"), "--seq-len", "4", "--prefix", "3"],
            "texts are cut into pieces of 4 tokens (--seq-len), fewer than the 35 that extraction",
        ),
        (
            ["--train", str(root / "train.txt"), "--threshold", "2"],
            "threshold must be in (0, 1], got 2.0",
        ),
    ]
    for extra, fragment in cases:
        out = tmp_path / "out"
        monkeypatch.setattr(
            sys,
            "argv",
            ["memlens", "track", "--model", str(root / "model"), *extra, "--out", str(out)],
        )
        with pytest.raises(SystemExit) as exc:
            cli.main()
        err = capsys.readouterr().err.strip()
        assert exc.value.code == 2 and fragment in err, err
        assert not out.exists()


def test_text_run_resumes_past_a_torn_checkpoint_and_a_finished_run_trains_no_more(
    text_files, tmp_path
):
    """A crash while the Trainer writes a checkpoint leaves it torn (its trainer_state.json,
    written last, missing or cut): the rerun resumes from the one before instead of failing on
    it. The mean training loss spans both sessions, and a rerun of the finished run trains no
    step more (the Trainer, resumed at its last step, would) and changes nothing."""
    from memlens.track.text import TextTrackConfig
    from memlens.track.text import run as run_text

    root, _ = text_files
    cfg = TextTrackConfig(
        model=str(root / "model"), train=str(root / "train.txt"), track=str(root / "track.jsonl"),
        steps=30, checkpoint_every=10, lr=1e-2, batch_size=8, prefix=3, suffix=5,
    )  # fmt: skip
    full = run_text(cfg, tmp_path / "full")

    def interrupt(event):
        if event.completed == 25:
            raise KeyboardInterrupt

    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        run_text(cfg, cut, progress=interrupt)
    ckpts = cut / "hf-checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["checkpoint-20"]
    torn = ckpts / "checkpoint-30"  # killed while writing step 30's checkpoint
    torn.mkdir()
    (torn / "model.safetensors").write_bytes(b"\0" * 10)
    (torn / "trainer_state.json").write_text('{"global_step": 3')
    resumed = run_text(cfg, cut)
    assert resumed.summary.training["resumed_from_step"] == 20
    a, b = full.summary, resumed.summary
    assert b.training["steps"] == 30 and b.curves["steps"] == a.curves["steps"]
    for g in ("repeated", "unique", "heldout"):
        np.testing.assert_allclose(
            b.curves[g]["mean_code_bits"], a.curves[g]["mean_code_bits"], rtol=1e-5
        )
    loss = "mean_training_loss_bits_per_token"
    assert b.training[loss] == pytest.approx(a.training[loss], rel=1e-5)

    again = run_text(cfg, tmp_path / "full")
    assert not (tmp_path / "full" / "hf-checkpoints" / "checkpoint-31").exists()
    assert again.summary.training["steps"] == 30
    assert again.summary.training["resumed_from_step"] == 30
    assert again.summary.curves == a.curves and again.summary.groups == a.groups
    assert again.summary.training[loss] == pytest.approx(a.training[loss], rel=1e-9)


def test_track_cli_without_heldout_texts_says_there_are_no_controls(
    text_files, tmp_path, capsys, monkeypatch
):
    """Without --track every tracked text is a training text: the table has no heldout row,
    and the console says so instead of leaving the controls silently out."""
    from memlens import cli

    root, _ = text_files
    out = tmp_path / "run"
    argv = [
        "memlens", "track", "--model", str(root / "model"), "--train", str(root / "train.txt"),
        "--steps", "2", "--prefix", "3", "--suffix", "5", "--out", str(out),
    ]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exc:
        cli.main()
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "no held-out controls: every tracked text occurs in the training texts" in text
    d = json.loads((out / "dynamics.json").read_text())
    assert (
        set(d["groups"]) == {"repeated", "unique"}
        and "heldout_never_memorized" not in (d["comparisons"])
    )


def test_track_cli_says_how_many_texts_are_long_enough_for_extraction(
    text_files, tmp_path, capsys, monkeypatch
):
    """With a reference, texts shorter than prefix + suffix still count by bits, but their
    extraction is not measured: the console gives each group's eligible count instead of a
    bare '-' (the sentences are 13 or 14 tokens; 6 + 8 = 14)."""
    from memlens import cli

    root, _ = text_files
    out = tmp_path / "run"
    argv = [
        "memlens", "track", "--model", str(root / "model"), "--train", str(root / "train.txt"),
        "--track", str(root / "track.jsonl"), "--reference", str(root / "ref"), "--steps", "2",
        "--prefix", "6", "--suffix", "8", "--out", str(out),
    ]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exc:
        cli.main()
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    per = pd.read_parquet(out / "examples.parquet")
    long = per.assign(ok=per["n_tokens"] >= 14).groupby("group")["ok"].agg(["sum", "size"])
    want = ", ".join(
        f"{g} {long.loc[g, 'sum']} of {long.loc[g, 'size']}"
        for g in ("repeated", "unique", "heldout")
    )
    assert 0 < long["sum"].sum() < len(per)  # some texts are long enough, some are not
    assert f"extracted: among the examples long enough for --prefix + --suffix ({want})" in text
    d = json.loads((out / "dynamics.json").read_text())
    assert [d["groups"][g]["n_extraction_eligible"] for g in long.index.sort_values()] == [
        int(long.loc[g, "sum"]) for g in long.index.sort_values()
    ]
