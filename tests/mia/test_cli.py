"""End-to-end tests of ``memlens mia`` and ``memlens mia metrics`` (input layouts, outputs, errors)."""

from __future__ import annotations

import json
import math
import zlib

import numpy as np
import pandas as pd
import pytest
import torch

import helpers_hf as H
from helpers_cli import cli
from memlens.mia.metrics import roc_auc
from memlens.mia.recipe import load_samples

# Content words are capitalized (as names are in real text), so lowercasing changes the text and
# the lowercase attack has something to measure.
CONTENT = {"cat", "dog", "aunt", "king", "robot", "cook", "pilot", "child", "apple", "boat", "lamp"}
CONTENT |= {
    "shoe",
    "river",
    "coin",
    "tree",
    "song",
    "town",
    "sea",
    "home",
    "monday",
    "spring",
    "dawn",
}


def capitalized(texts):
    return [" ".join(w.capitalize() if w in CONTENT else w for w in t.split()) for t in texts]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """A target GPT-2 overfit to 24 member sentences and a reference trained on 24 others."""
    from memlens.models.gpt import GPT, GPTConfig

    root = tmp_path_factory.mktemp("mia")
    sentences = capitalized(H.make_sentences(72, seed=99))
    members, nonmembers, ref_train = sentences[:24], sentences[24:48], sentences[48:]
    words = sorted(
        {w for s in sentences for w in s.split()}
        | {w.lower() for s in sentences for w in s.split()}
    )
    tok = H.wordlevel_tokenizer(words)
    ids, mask = H.encode_batch(tok, members + ref_train)
    ids, mask = ids.view(2, 24, -1), mask.view(2, 24, -1)  # model 0: members, model 1: reference
    targets = ids[..., 1:].masked_fill(~mask[..., 1:], -100)
    with torch.random.fork_rng():
        torch.set_num_threads(1)
        g = torch.Generator().manual_seed(0)
        model = GPT(GPTConfig(len(tok), 32, 1, 32, 2), n_models=2, generator=g)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(60):
            logits = model(ids[..., :-1])
            loss = sum(
                torch.nn.functional.cross_entropy(
                    logits[k].flatten(0, 1), targets[k].flatten(), ignore_index=-100
                )
                for k in range(2)
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    H.save_lm(model.to_hf(0), tok, root / "target")
    H.save_lm(model.to_hf(1), tok, root / "reference")
    # One non-member of a single word: 1 predicted token, too short for min-k (floor(0.2) = 0).
    H.write_lines(root / "members.txt", members)
    H.write_lines(root / "nonmembers.txt", nonmembers + ["Cat"])
    return root, members, nonmembers + ["Cat"]


def test_mia_end_to_end_every_attack_separates(bundle, tmp_path, capsys, monkeypatch):
    root, members, nonmembers = bundle
    out = tmp_path / "run"
    args = ["mia", "--model", root / "target", "--reference", root / "reference"]
    args += ["--members", root / "members.txt", "--nonmembers", root / "nonmembers.txt"]
    args += ["--out", out, "--n-boot", "200"]
    code, stdout, stderr = cli(args, capsys, monkeypatch)
    assert code == 0, stderr
    result = json.loads((out / "mia.json").read_text())
    attacks = result["attacks"]
    assert list(attacks) == [
        "loss", "zlib", "zlib_mimir", "ref", "min_k", "min_k_pp", "lowercase", "gradnorm",
        "gradnorm_mimir",
    ]  # fmt: skip
    table = pd.read_parquet(out / "scores.parquet")
    keep = table.index != 48  # the one sample min-k cannot score (below)
    for name, m in attacks.items():
        assert m["auc"] > 0.8, (name, m["auc"])  # an overfit target: every attack separates
        # the metrics are those of the written scores, on the samples every attack scored
        assert m["auc"] == roc_auc(table.loc[keep, name], table.loc[keep, "label"])
        assert m["auc_ci"][0] <= m["auc"] <= m["auc_ci"][1]
        assert set(m["tpr_at_fpr"]) == {"0.001", "0.01"}
        assert m["n_members"] == 24 and m["n_nonmembers"] == 24
    # zlib: whole-text bits over zlib bytes (level 6); MIMIR's form: bits per token over them
    z = np.array([len(zlib.compress(t.encode("utf-8"), 6)) for t in table["text"]])
    np.testing.assert_allclose(table["zlib"], -table["target_bits"] / z, rtol=1e-12)
    np.testing.assert_allclose(
        table["zlib_mimir"], -table["target_bits"] / table["n_tokens"] / z, rtol=1e-12
    )
    assert result["references"][0]["first_token"] == "model"  # both tokenizers have a BOS
    # target bits by hand for three texts: BOS + tokens through the saved target, -sum log2 p of
    # every token after BOS; loss is minus their mean, ref the reference's bits minus them
    from memlens.data.text import encode_texts
    from memlens.models.hf import load_causal_lm

    lm = load_causal_lm(root / "target", device="cpu")
    for i in (0, 1, 30):
        ids = torch.as_tensor(encode_texts([table.loc[i, "text"]], lm.tokenizer).tokens[0])[None]
        with torch.no_grad():
            logp = torch.log_softmax(lm.model(input_ids=ids).logits[0, :-1].double(), -1)
        bits = -logp.gather(-1, ids[0, 1:, None]).sum().item() / math.log(2)
        assert table.loc[i, "target_bits"] == pytest.approx(bits, rel=1e-5)
        assert table.loc[i, "n_tokens"] == ids.shape[1] - 1
    np.testing.assert_allclose(table["loss"], -table["target_bits"] / table["n_tokens"], rtol=1e-12)
    (ref_col,) = [c for c in table.columns if c.startswith("ref_bits:")]
    np.testing.assert_allclose(table["ref"], table[ref_col] - table["target_bits"], rtol=1e-12)
    assert attacks["loss"]["auc"] > 0.9
    # The one-word text cannot be scored by min-k: reported, and excluded from every attack.
    assert result["n_samples"] == 49 and result["n_evaluated"] == 48
    assert result["unscored"] == [{"id": 48, "label": 0, "attacks": ["min_k", "min_k_pp"]}]
    assert result["n_members"] == 24 and result["n_nonmembers"] == 25
    assert "<=" in result["rule"]
    assert len(table) == 49 and {"id", "label", "text", "target_bits", "n_tokens", *attacks} <= set(
        table.columns
    )
    assert np.isnan(table.loc[48, "min_k"]) and np.isfinite(table.loc[48, "loss"])
    assert table.loc[:23, "label"].eq(1).all() and table.loc[24:, "label"].eq(0).all()
    assert (out / "roc.png").stat().st_size > 0 and (out / "roc_min_k_pp.png").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert (
        manifest["kind"] == "mia"
        and manifest["status"] == "finished"
        and manifest["config"]["references"] == [str(root / "reference")]
    )
    assert "gradnorm" in stdout and "1 of 49 samples" in stdout

    # The same samples as one WikiMIA-style table (input, label) give the same numbers.
    rows = [{"input": t, "label": 1} for t in members] + [
        {"input": t, "label": 0} for t in nonmembers
    ]
    (tmp_path / "wikimia.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out2 = tmp_path / "run2"
    args = ["mia", "--model", root / "target", "--data", tmp_path / "wikimia.jsonl"]
    args += ["--attacks", "loss,min_k", "--out", out2, "--n-boot", "200", "--fpr", "0.05"]
    code, _, stderr = cli(args, capsys, monkeypatch)
    assert code == 0, stderr
    r2 = json.loads((out2 / "mia.json").read_text())
    assert set(r2["attacks"]) == {"loss", "min_k"}
    assert r2["attacks"]["loss"]["auc"] == attacks["loss"]["auc"]
    assert r2["attacks"]["loss"]["tpr_at_fpr"].keys() == {"0.05"}
    assert r2["data"]["text_column"] == "input"


def test_load_samples_layouts(tmp_path):
    # MIMIR layout: one member and one non-member per row.
    pd.DataFrame({"member": ["a b", "c d", "a b"], "nonmember": ["e f", "g h", " "]}).to_parquet(
        tmp_path / "mimir.parquet"
    )
    s = load_samples(data=str(tmp_path / "mimir.parquet"))
    assert s.texts == ["a b", "c d", "e f", "g h"]
    np.testing.assert_array_equal(s.labels, [1, 1, 0, 0])
    assert s.info["n_duplicates_removed"] == 1 and s.info["n_empty_dropped"] == 1
    # Label column with strings and a text in both classes (excluded from both and reported).
    pd.DataFrame(
        {"text": ["x", "y", "z", "x"], "label": ["member", "nonmember", "member", 0]}
    ).to_csv(tmp_path / "t.csv", index=False)
    s = load_samples(data=str(tmp_path / "t.csv"))
    assert s.texts == ["y", "z"] and list(s.labels) == [0, 1]
    assert s.info["n_conflicts_excluded"] == 1


LABELLED = ["--model", "{t}", "--members", "{m}", "--nonmembers", "{n}"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--model", "{tmp}/nope", "--members", "{m}", "--nonmembers", "{n}"], "does not exist"),
        ([*LABELLED, "--attacks", "loss,bogus"], "unknown attack"),
        ([*LABELLED, "--attacks", "ref"], "needs at least one reference"),
        (
            [*LABELLED, "--attacks", "loss", "--reference", "{tmp}/never-read"],
            "only the ref attack uses them and the chosen --attacks leave it out; add ref or "
            "drop the --references.",
        ),
        (
            ["--model", "{t}", "--members", "{tmp}/missing.txt", "--nonmembers", "{n}"],
            "does not exist",
        ),
        (["--model", "{t}", "--members", "{m}"], "--nonmembers"),
        ([*LABELLED, "--fpr", "2"], "at least 0 and below 1"),
        (["--model", "{t}", "--data", "{tmp}/bad.csv"], "not a membership label"),
    ],
)
def test_mia_bad_input_one_sentence_exit_2(bundle, tmp_path, capsys, monkeypatch, extra, message):
    root, _, _ = bundle
    pd.DataFrame({"text": ["a", "b"], "label": [1, "maybe"]}).to_csv(
        tmp_path / "bad.csv", index=False
    )
    fill = {
        "tmp": tmp_path,
        "t": root / "target",
        "m": root / "members.txt",
        "n": root / "nonmembers.txt",
    }
    out = tmp_path / "out"
    code, _, stderr = cli(
        ["mia", *[a.format(**fill) for a in extra], "--out", out], capsys, monkeypatch
    )
    assert code == 2
    assert message in stderr and stderr.count("\n") == 1 and "Traceback" not in stderr
    assert not (out / "mia.json").exists()


def test_mia_metrics_command(tmp_path, capsys, monkeypatch):
    from helpers_mia import HAND_MEMBERS, HAND_NONMEMBERS

    f = tmp_path / "scores.csv"
    pd.DataFrame({"score": HAND_MEMBERS + HAND_NONMEMBERS, "label": [1] * 10 + [0] * 10}).to_csv(
        f, index=False
    )
    code, stdout, _ = cli(
        ["mia", "metrics", "--scores", f, "--fpr", "0.1", "--json"], capsys, monkeypatch
    )
    assert code == 0
    r = json.loads(stdout)["attacks"]["score"]
    assert r["tpr_at_fpr"] == {"0.1": 1.0} and r["auc"] == pytest.approx(0.94)
    # FPR 0 (what `shadow attack` reports by default) is a level too: the TPR with no false positive
    code, stdout, _ = cli(
        ["mia", "metrics", "--scores", f, "--fpr", "0,0.1", "--json"], capsys, monkeypatch
    )
    assert code == 0
    tpr0 = json.loads(stdout)["attacks"]["score"]["tpr_at_fpr"]["0.0"]
    assert tpr0 == 0.4  # 0.95, 0.90, 0.85, 0.80 score above every non-member (the top one: 0.70)
    assert r["n_nonmembers"] == 10 and len(r["warnings"]) == 1
    code, stdout, _ = cli(
        ["mia", "metrics", "--scores", f, "--out", tmp_path / "m"], capsys, monkeypatch
    )
    assert code == 0 and "0.940" in stdout
    assert (tmp_path / "m" / "manifest.json").exists() and (tmp_path / "m" / "roc.png").exists()
    pd.DataFrame({"s": [0.1, 0.2], "label": [1, 0]}).to_csv(tmp_path / "wrong.csv", index=False)
    code, _, stderr = cli(
        ["mia", "metrics", "--scores", tmp_path / "wrong.csv"], capsys, monkeypatch
    )
    assert code == 2 and "no column 'score'" in stderr and "--columns" in stderr
    pd.DataFrame({"score": [0.1, 0.2], "label": [1, 1]}).to_csv(tmp_path / "one.csv", index=False)
    code, _, stderr = cli(["mia", "metrics", "--scores", tmp_path / "one.csv"], capsys, monkeypatch)
    assert code == 2 and "both members and non-members" in stderr
    # a 'nan' written as text (Python's csv module) is not a missing score: the sentence says
    # which value and how to write a missing one (it said only "holds values that are not numbers")
    (tmp_path / "nan.csv").write_text("score,label\n0.1,1\nnan,0\n0.3,0\n")
    code, _, stderr = cli(["mia", "metrics", "--scores", tmp_path / "nan.csv"], capsys, monkeypatch)
    assert code == 2 and stderr.count("\n") == 1
    assert "holds 'nan' in row 1, which is not a number; leave a missing score empty" in stderr


def test_rerun_from_python_names_the_reused_cells(bundle, tmp_path):
    """``run(MIAConfig(...), out)`` twice on the same ``out``: the reference's code lengths and the
    gradient norms come from the stored cells, and the result says so in ``reused`` (it was
    always empty); the metrics are the same."""
    from memlens.mia.recipe import MIAConfig, run

    root, _, _ = bundle
    config = MIAConfig(
        model=str(root / "target"),
        references=[str(root / "reference")],
        members=str(root / "members.txt"),
        nonmembers=str(root / "nonmembers.txt"),
        attacks=["loss", "ref", "gradnorm"],
        n_boot=20,
    )
    first = run(config, tmp_path / "run")
    again = run(config, tmp_path / "run")
    assert first.reused == [] and again.reused == ["reference-0", "gradnorm"]
    for name in ("loss", "ref", "gradnorm"):
        assert again.summary.attacks[name].auc == first.summary.attacks[name].auc


def test_rerun_from_the_command_line_says_what_it_reused(bundle, tmp_path, capsys, monkeypatch):
    root, _, _ = bundle
    args = ["mia", "--model", root / "target", "--reference", root / "reference"]
    args += ["--members", root / "members.txt", "--nonmembers", root / "nonmembers.txt"]
    args += ["--attacks", "loss,ref", "--n-boot", "20", "--out", tmp_path / "run"]
    code, first, _ = cli(args, capsys, monkeypatch)
    assert code == 0 and "reused" not in first
    code, again, _ = cli(args, capsys, monkeypatch)
    assert code == 0
    assert "reused 1 stored result(s) of an earlier run in this directory: reference-0" in again


def test_rerun_after_inputs_changed_in_place_recomputes(bundle, tmp_path):
    """The config names files, not their contents: a rerun into the same ``out`` after the
    members file was edited, or a checkpoint saved again under the same path, recomputes the
    stored reference code lengths and gradient norms (they were reused, keyed only by the path
    and the number of texts: the ref AUC then mixed scores of two different sets of texts)."""
    import shutil

    from memlens.mia.recipe import MIAConfig, run

    root, members, nonmembers = bundle
    for name in ("target", "reference"):
        shutil.copytree(root / name, tmp_path / name)
    H.write_lines(tmp_path / "members.txt", members)
    H.write_lines(tmp_path / "nonmembers.txt", nonmembers)
    config = MIAConfig(
        model=str(tmp_path / "target"),
        references=[str(tmp_path / "reference")],
        members=str(tmp_path / "members.txt"),
        nonmembers=str(tmp_path / "nonmembers.txt"),
        attacks=["loss", "ref", "gradnorm"],
        n_boot=20,
    )

    def aucs(result):
        return {a: result.summary.attacks[a].auc for a in ("loss", "ref", "gradnorm")}

    assert run(config, tmp_path / "run").reused == []
    # Half the members swapped for non-members: same file name, same count, other texts.
    H.write_lines(tmp_path / "members.txt", members[:12] + nonmembers[:12])
    edited = run(config, tmp_path / "run")
    fresh = run(config, tmp_path / "fresh")
    assert edited.reused == [] and aucs(edited) == aucs(fresh)
    assert run(config, tmp_path / "run").reused == ["reference-0", "gradnorm"]
    # The reference saved again with the target's weights: its stored scores are not reused,
    # and the ref attack (target against itself) scores 0 for every text.
    shutil.rmtree(tmp_path / "reference")
    shutil.copytree(tmp_path / "target", tmp_path / "reference")
    swapped = run(config, tmp_path / "run")
    assert swapped.reused == ["gradnorm"] and swapped.summary.attacks["ref"].auc == 0.5
