"""``memlens sinks`` end to end on the smoke preset: outputs, manifest, plots, resume, user texts,
and bad input (one sentence, exit 2, nothing written)."""

from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner

from memlens.cli import app, main

ROWS = (
    "standard",
    "dedup",
    "memsinks",
    "memsinks_sinks_dropped",
    "memsinks_sinks_dropped_unscaled",
    "memsinks_sinks_scaled",
)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("sinks") / "run"
    res = CliRunner().invoke(app, ["sinks", "--preset", "smoke", "--out", str(out)])
    assert res.exit_code == 0, (res.output, res.exception)
    return out, res.output


def test_smoke_writes_every_row_and_artifact(smoke):
    out, output = smoke
    s = json.loads((out / "sinks.json").read_text())
    for name in ROWS:
        r = s[name]
        assert r["mem_gap"] == pytest.approx(r["val_loss"] - r["repeated_loss"])
        # smoke preset: 8 repeated and 64 held-out sequences, every one long enough for the
        # 12-token prefix, so each rate is a count out of 8 or 64.
        e = r["extraction"]
        assert (e["n_repeated_eligible"], e["n_heldout_eligible"]) == (8, 64)
        assert (8 * e["repeated_rate"]).is_integer() and (64 * e["heldout_rate"]).is_integer()
        assert e["rate_difference"] == e["repeated_rate"] - e["heldout_rate"]
    assert s["units"].startswith("bits per token")
    # equal compute: the three arms took the same number of steps on rows of the same width
    assert s["compute"]["steps"] == 120 and s["compute"]["rows_per_arm"] == 120 * 16
    c = s["claim"]
    assert c["gap_closed_fraction"] == pytest.approx(
        1 - s["memsinks_sinks_dropped"]["mem_gap"] / s["standard"]["mem_gap"]
    )
    assert c["holds"] == (
        c["gap_closed_fraction"] >= 0.5 and c["val_loss_ratio_dropped_to_standard"] <= 1.02
    )
    # no model beats the true source on fresh held-out data by more than sampling noise
    floor = s["data"]["heldout_source_floor_bits_per_token"]
    assert all(s[n]["val_loss"] > floor - 0.05 for n in ROWS)
    # repetition is memorized: the standard model fits repeated sequences better than fresh ones
    assert s["standard"]["mem_gap"] > 0.02
    # deduplicated training sees each repeated sequence about as often as a fresh one: no gap
    assert abs(s["dedup"]["mem_gap"]) < s["standard"]["mem_gap"]
    loc = s["localization"]
    for arm in ("standard", "memsinks"):
        assert [r["k"] for r in loc[arm]["ks"]] == [2, 8]
    # the console states the gap each share is a fraction of (a tiny one made 1.885 look real)
    gaps = ", ".join(f"{a} {loc[a]['mean_gap']:.4f}" for a in ("standard", "memsinks"))
    assert f"bits per token): {gaps}; a share above 1" in " ".join(output.split())
    assert s["sinks"]["n_general"] == 90 and s["sinks"]["sinks_on_per_sequence"] == 11
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "sinks" and manifest["config"]["preset"] == "smoke"
    assert manifest["status"] == "finished" and manifest["seed"] == 0
    for f in ("arms.csv", "sinks_summary.png", "sinks_curves.png", "sinks_localization.png"):
        assert (out / f).stat().st_size > 0
    for arm in ("standard", "dedup", "memsinks"):
        assert (out / "cells" / f"{arm}.json").exists()
        assert (out / "models" / f"{arm}.safetensors").exists()
    assert "Published claim" in output


def test_rerun_resumes_every_cell_with_identical_numbers(smoke):
    out, _ = smoke
    before = json.loads((out / "sinks.json").read_text())
    res = CliRunner().invoke(app, ["sinks", "--preset", "smoke", "--out", str(out)])
    assert res.exit_code == 0, (res.output, res.exception)
    after = json.loads((out / "sinks.json").read_text())
    assert all(after["compute"]["resumed"].values())
    # the console says the arms were reused (the training seconds it prints are the earlier run's)
    flat = " ".join(res.output.split())
    assert "reused 3 trained arm(s) from an earlier run in this directory:" in flat
    assert "reused" not in smoke[1]  # the first run trained every arm
    for name in ROWS:
        assert after[name] == before[name]
    assert after["localization"] == before["localization"]


@pytest.mark.parametrize("tokenizer", [None, "wordlevel"])
def test_user_texts_are_packed_and_trained(tmp_path, tokenizer):
    from helpers_hf import make_sentences, wordlevel_tokenizer

    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(make_sentences(160, seed=0)) + "\n")
    out = tmp_path / "run"
    extra = ["--prefix", "20"]
    if tokenizer:
        wordlevel_tokenizer().save_pretrained(tmp_path / "tok")
        extra = ["--tokenizer", str(tmp_path / "tok"), "--prefix", "8"]
    res = CliRunner().invoke(
        app,
        [
            "sinks", "--preset", "smoke", "--train", str(texts), "--seq-len", "96",
            "--n-repeated", "6", "--repetitions", "12", "--out", str(out), *extra,
        ],
    )  # fmt: skip
    assert res.exit_code == 0, (res.output, res.exception)
    s = json.loads((out / "sinks.json").read_text())
    assert s["data"]["n_repeated"] == 6 and s["data"]["n_heldout"] == 32
    assert s["data"]["n_unrepeated"] == 160 - 32 - 6
    if tokenizer:
        # about 16 word tokens per sentence: several documents share each 96-token row
        assert "tokenizer" in s["data"]["source"] and s["model"]["vocab_size"] > 40
        assert s["compute"]["rows_per_arm"] < (122 + 6 * 12) // 3
    else:
        # about 70 bytes per sentence: one document per row
        assert "UTF-8 bytes" in s["data"]["source"] and s["model"]["vocab_size"] == 257
    for name in ("standard", "memsinks_sinks_dropped"):
        assert s[name]["extraction"]["n_repeated_eligible"] == 6
    assert [r["k"] for r in s["localization"]["memsinks"]["ks"]] == [2, 8]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--preset", "nope"], "unknown preset 'nope'"),
        (["--p-gen", "1.5"], "p_gen must be strictly between 0 and 1"),
        (["--repetitions", "1"], "(repetitions): Input should be greater than or equal to 2"),
        (["--n-repeated", "100", "--repetitions", "100"], "fill all"),
        (["--train", "no-such-file.txt"], "does not exist"),
        (["--d-model", "1"], "sink units"),
        (["--prefix", "40"], "--prefix must be between"),
        (["--seed", "-1"], "(seed): Input should be greater than or equal to 0"),
    ],
)
def test_bad_input_exits_2_with_one_sentence_and_writes_nothing(
    args, fragment, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "out"
    argv = ["memlens", "sinks", "--preset", "smoke", *args, "--out", str(out)]
    if args[:2] == ["--preset", "nope"]:
        argv = ["memlens", "sinks", *args, "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and fragment in err, err
    assert "\n" not in err and "Traceback" not in err
    assert not out.exists()
