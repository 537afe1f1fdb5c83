"""``memlens dp-audit`` on the command line: the bound for counts made elsewhere (JSON), a tiny
audit end to end with its console (accountant's ε beside ε̂, no library warnings), and bad input
(one sentence on stderr, exit code 2, nothing written)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from helpers_cli import run_main as _main
from helpers_hf import make_sentences, save_lm, wordlevel_tokenizer, write_lines
from memlens.cli import app

TINY = [
    "--canaries", "60", "--n-train", "48", "--seq-len", "12", "--canary-length", "8",
    "--vocab-size", "32", "--d-model", "16", "--n-layer", "1", "--epochs", "20",
    "--batch-size", "32", "--lr", "0.01", "--candidates", "100", "--accountant", "rdp",
]  # fmt: skip


def test_bound_json_has_the_check_values():
    argv = ["dp-audit", "bound", "--guesses", "1000", "--correct", "900", "--canaries", "1000"]
    res = CliRunner().invoke(app, [*argv, "--delta", "1e-5", "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert round(d["epsilon_lower_bound"], 2) == 2.02
    assert round(d["ceiling"], 3) == round(d["ceiling_at_guesses"], 3) == 5.782
    res = CliRunner().invoke(
        app, ["dp-audit", "bound", "-r", "100", "-v", "100", "-M", "100", "--delta", "0"]
    )
    assert res.exit_code == 0 and "epsilon lower bound: 3.493" in res.output
    # a confidence close to 1 is not rounded to "100%" (6 significant digits did)
    argv = ["dp-audit", "bound", "-r", "10", "-v", "10", "-M", "10", "--delta", "0"]
    res = CliRunner().invoke(app, [*argv, "--confidence", "0.999999999"])
    assert res.exit_code == 0 and "at 99.9999999% confidence" in res.output, res.output
    # counts that can only give 0 say why
    argv = ["dp-audit", "bound", "-r", "4", "-v", "4", "-M", "1000", "--delta", "1e-5"]
    res = CliRunner().invoke(app, argv)
    assert "note: 4 guesses cannot certify any epsilon above 0" in res.output, res.output


def test_tiny_audit_end_to_end(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    code, cap = _main(
        ["dp-audit", *TINY, "--dp-epsilon", "none,2", "--out", str(out)], monkeypatch, capsys
    )
    assert code in (0, None), cap.err
    assert "Warning" not in cap.err and "warn" not in cap.out.lower()
    assert "accountant ε" in cap.out and "ε̂ (95%)" in cap.out and "∞ (no DP)" in cap.out
    assert "fixed before the scores were seen" in " ".join(cap.out.split())
    d = json.loads((out / "dp_audit.json").read_text())
    dp = d["arms"]["dp-eps2"]
    assert dp["accountant_epsilon"] <= 2.0 and dp["epsilon_lower_bound"] <= dp["accountant_epsilon"]
    assert d["arms"]["no-dp"]["epsilon_lower_bound"] > dp["epsilon_lower_bound"]
    assert f"{dp['accountant_epsilon']:.2f}" in cap.out
    # each arm's audit by hand from canaries.parquet: IN for the k+ highest scores, OUT for the
    # k- lowest, v = right guesses; eps-hat is Appendix D's bound for (m = 60, r, v, delta), the
    # bound itself pinned by the published check values in test_bound.py
    import numpy as np
    import pandas as pd

    from memlens.privacy.bound import epsilon_lower_bound

    table = pd.read_parquet(out / "canaries.parquet")
    inc = table["included"].to_numpy(dtype=bool)
    for arm in ("no-dp", "dp-eps2"):
        a = d["arms"][arm]["audit"]
        order = np.argsort(-table[f"{arm}:score"].to_numpy(), kind="stable")
        k_in, k_out = a["k_in"], a["k_out"]
        assert (k_in, k_out) == (15, 15)  # m // 4 each way, fixed in advance
        v = int(inc[order[:k_in]].sum() + (~inc[order[len(order) - k_out :]]).sum())
        assert (a["canaries"], a["guesses"], a["correct"]) == (60, 30, v)
        assert a["epsilon_lower_bound"] == pytest.approx(
            epsilon_lower_bound(60, 30, v, 1e-5), abs=1e-9
        )
    m = json.loads((out / "manifest.json").read_text())
    assert (
        m["status"] == "finished" and m["accountant_epsilon"]["dp-eps2"] == dp["accountant_epsilon"]
    )
    assert m["config"]["dp_epsilons"] == [None, 2.0] and m["seed"] == 0
    # memlens report shows the audit's headline numbers, read from the typed dp_audit.json
    from memlens.report.html import esc, fmt

    html = tmp_path / "report.html"
    code, cap = _main(["report", str(out), "--out", str(html)], monkeypatch, capsys)
    assert code in (0, None), cap.err
    page = html.read_text(encoding="utf-8")
    expected = [
        ("canaries", 60),
        ("inserted", d["canaries"]["n_included"]),
        ("ε̂ no-dp", d["arms"]["no-dp"]["epsilon_lower_bound"]),
        ("ε̂ dp-eps2", dp["epsilon_lower_bound"]),
        ("accountant's ε dp-eps2", dp["accountant_epsilon"]),
        ("ceiling (all canaries right)", dp["audit"]["ceiling"]),
    ]
    for label, value in expected:
        assert f'<th>{esc(label)}</th><td class="num">{fmt(value)}</td>' in page, label
    assert "headline numbers for" not in page


def test_arms_as_cells_in_two_workers_give_the_same_audit(tmp_path, monkeypatch, capsys):
    # the arms run through the shared stored-cell runner: two worker processes (one arm each)
    # give the numbers of one after another in this process, and a rerun reuses both arms
    runs = {}
    for name, extra in (("one", []), ("two", ["--workers", "2"])):
        out = tmp_path / name
        argv = ["dp-audit", *TINY, "--dp-epsilon", "none,2", "--out", str(out), *extra]
        code, cap = _main(argv, monkeypatch, capsys)
        assert code in (0, None), cap.err
        runs[name] = json.loads((out / "dp_audit.json").read_text())
    for arm in ("no-dp", "dp-eps2"):
        a, b = runs["one"]["arms"][arm], runs["two"]["arms"][arm]
        assert a["epsilon_lower_bound"] == b["epsilon_lower_bound"]
        assert a["accountant_epsilon"] == b["accountant_epsilon"]
        assert a["mean_loss_inserted_bits_per_token"] == b["mean_loss_inserted_bits_per_token"]
    assert json.loads((tmp_path / "two" / "manifest.json").read_text())["backend"] == "local"
    code, cap = _main(
        ["dp-audit", *TINY, "--dp-epsilon", "none,2", "--out", str(tmp_path / "two"), "--json"],
        monkeypatch, capsys,
    )  # fmt: skip
    assert code in (0, None), cap.err
    again = json.loads(cap.out)
    assert [again["arms"][a]["reused_weights"] for a in ("no-dp", "dp-eps2")] == [True, True]
    assert (
        again["arms"]["dp-eps2"]["epsilon_lower_bound"]
        == (runs["two"]["arms"]["dp-eps2"]["epsilon_lower_bound"])
    )


def test_console_names_each_arms_guess_counts_when_they_differ(capsys):
    """Under split or bonferroni every arm chooses its own k±: the console says each one, not
    only the first arm's."""
    from types import SimpleNamespace as NS

    from memlens.commands.dp_audit import _summary

    def arm(name, eps, note, guesses):
        audit = NS(note=note, selection="split", guesses=guesses, correct=guesses // 2,
                   canaries=50, ceiling=2.78, ceiling_at_guesses=2.0)  # fmt: skip
        train = {"noise_multiplier": None if eps is None else 2.0, "accountant": "rdp"}
        return NS(name=name, audit=audit, accountant_epsilon=eps, train=train,
                  epsilon_lower_bound=0.0, exposure=None,
                  mean_loss_inserted_bits_per_token=1.0,
                  mean_loss_not_inserted_bits_per_token=2.0)  # fmt: skip

    arms = {
        "no-dp": arm("no-dp", None, "k+ = 15, k- = 25 chosen on 50", 40),
        "dp-eps8": arm("dp-eps8", 8.0, "k+ = 5, k- = 15 chosen on 50", 20),
    }
    s = NS(canaries=NS(kind="random", m=100, length_tokens=8, n_included=50), delta=1e-5,
           confidence=0.95, arms=arms)  # fmt: skip
    _summary(s, [])
    out = " ".join(capsys.readouterr().out.split())
    assert "no-dp: k+ = 15, k- = 25 chosen on 50" in out
    assert "dp-eps8: k+ = 5, k- = 15 chosen on 50" in out
    assert "(40 guesses)" not in out


def test_main_table_fits_80_columns_without_lora(capsys, monkeypatch):
    """The "trained params" column (added for LoRA) squeezed the table of a memlens GPT audit at
    80 columns ("accoun… ε", "∞ (no / DP)" on two lines); it shows only with a LoRA arm."""
    from types import SimpleNamespace as NS

    from memlens.commands.dp_audit import _summary

    def arm(name, eps, lora):
        audit = NS(note="k+ = 250, k- = 250 fixed", selection="fixed", guesses=500, correct=465,
                   canaries=1000, ceiling=5.78, ceiling_at_guesses=5.09)  # fmt: skip
        train = {"noise_multiplier": None if eps is None else 0.77, "accountant": "prv",
                 "trainable_parameters": 106240, "seconds": 83.0, "lora": lora}  # fmt: skip
        return NS(name=name, audit=audit, accountant_epsilon=eps, train=train,
                  epsilon_lower_bound=2.291, exposure=None,
                  mean_loss_inserted_bits_per_token=6.06,
                  mean_loss_not_inserted_bits_per_token=6.8)  # fmt: skip

    monkeypatch.setenv("COLUMNS", "80")
    s = NS(canaries=NS(kind="random", m=1000, length_tokens=16, n_included=501), delta=1e-5,
           confidence=0.95, arms={"no-dp": arm("no-dp", None, None), "dp-eps8": arm("dp-eps8", 8.0, None)})  # fmt: skip
    _summary(s, [])
    out = capsys.readouterr().out
    assert "trained params" not in out
    assert "…" not in out and "accountant ε" in out and "right/guesses" in out
    row = next(line for line in out.splitlines() if line.strip().startswith("no-dp"))
    assert row.split() == ["no-dp", "∞", "(no", "DP)", "-", "2.291", "465/500", "5.09", "83"]
    assert "for any model" not in out
    # 8 canaries, k± = 2 each: 4 guesses can only give 0, and the console says why
    small = arm("no-dp", None, None)
    small.audit = NS(note="k+ = 2, k- = 2 fixed", selection="fixed", guesses=4, correct=4,
                     canaries=8, ceiling=0.79, ceiling_at_guesses=0.0,
                     effective_confidence=0.95)  # fmt: skip
    small.epsilon_lower_bound = 0.0
    _summary(NS(canaries=s.canaries, delta=1e-5, confidence=0.95, arms={"no-dp": small}), [])
    out = " ".join(capsys.readouterr().out.split())
    assert "ε̂ is 0 for any model here: 4 guesses cannot certify any epsilon above 0" in out


@pytest.fixture(scope="module")
def batchnorm_model(tmp_path_factory):
    """A tiny causal LM with a BatchNorm, which DP-SGD cannot train (per-example gradients are not
    defined when examples are normalized by their batch)."""
    import torch
    from torch import nn
    from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig, PreTrainedModel
    from transformers.modeling_outputs import CausalLMOutput

    class BNConfig(PretrainedConfig):
        model_type = "memlens-test-batchnorm"

        def __init__(self, vocab_size=40, n_positions=32, hidden=16, **kw):
            self.vocab_size, self.n_positions, self.hidden = vocab_size, n_positions, hidden
            super().__init__(**kw)

    class BNLM(PreTrainedModel):
        config_class = BNConfig

        def __init__(self, config):
            super().__init__(config)
            self.emb = nn.Embedding(config.vocab_size, config.hidden)
            self.bn = nn.BatchNorm1d(config.hidden)
            self.head = nn.Linear(config.hidden, config.vocab_size)
            self.post_init()

        def get_input_embeddings(self):
            return self.emb

        def forward(self, input_ids=None, attention_mask=None, use_cache=None, **kw):
            x = self.bn(self.emb(input_ids).transpose(1, 2)).transpose(1, 2)
            return CausalLMOutput(logits=self.head(x))

    AutoConfig.register(BNConfig.model_type, BNConfig, exist_ok=True)
    AutoModelForCausalLM.register(BNConfig, BNLM, exist_ok=True)
    tok = wordlevel_tokenizer()
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("bn")
    texts = write_lines(root / "train.txt", make_sentences(100, seed=1))
    return save_lm(BNLM(BNConfig(vocab_size=len(tok))), tok, root / "model"), texts


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--canaries", "1"], "at least 2 canaries"),
        (["--dp-epsilon", "1", "--dp-delta", "1"], "delta must be strictly between 0 and 1"),
        (["--canary-length", "40", "--seq-len", "32"], "longer than the context"),
        (["--dp-epsilon", "x"], "is not a number"),
        (["--dp-epsilon", "-1"], "positive number"),
        (["--selection", "split", "--k-in", "3"], "only with fixed"),
        (["--k-in", "50", "--k-out", "50", "--canaries", "60"], "exceed the 60 canaries"),
        (["--train", "/nonexistent/file.txt"], "does not exist"),
        (["bound", "-r", "10", "-v", "10", "-M", "1", "--delta", "0"], "at least 2 canaries"),
        (["bound", "-r", "10", "-v", "10", "-M", "10", "--delta", "1"], "below 1"),
        (["bound", "-r", "10", "-v", "11", "-M", "10", "--delta", "0"], "correct <= guesses"),
        (["bound", "-r", "11", "-v", "10", "-M", "10", "--delta", "0"], "guesses <= canaries"),
        (["bound", "-r", "10", "-v", "10", "-M", "10", "--delta", "-0.1"], "at least 0"),
        (["bound", "-r", "0", "-v", "0", "-M", "10", "--delta", "0"], "with no guesses"),
        (
            ["bound", "-r", "9", "-v", "9", "-M", "10", "--delta", "0", "--confidence", "1"],
            "strictly between 0 and 1",
        ),
        (["--dp-epsilon", "1", "--dp-delta", "-0.1"], "delta must be strictly between 0 and 1"),
        (["--confidence", "1.5"], "confidence must be strictly between 0 and 1"),
        (["--dp-epsilon", "0.001", "--accountant", "rdp"], "out of reach"),
        (["--candidates", "5"], "at least 10 random candidates"),
        (["--canaries", "3", "--selection", "split"], "too few to split"),
        (["--k-in", "0", "--k-out", "0"], "guess at least one"),
        # one arm name (dp-eps8) for both: the second arm silently took the first's cell
        (["--dp-epsilon", "8,8.0000001"], "agree to 6 digits (both arm dp-eps8)"),
    ],
)
def test_bad_input_exits_2_with_one_sentence_and_writes_nothing(
    args, fragment, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "out"
    argv = ["dp-audit", *args] if args[0] == "bound" else ["dp-audit", *args, "--out", str(out)]
    code, cap = _main(argv, monkeypatch, capsys)
    err = cap.err.strip()
    assert code == 2 and err.startswith("error: ") and fragment in err, err
    assert "\n" not in err and "Traceback" not in err
    assert not out.exists()


def test_dp_on_a_model_opacus_cannot_train_exits_2(batchnorm_model, tmp_path, monkeypatch, capsys):
    model, texts = batchnorm_model
    out = tmp_path / "out"
    argv = ["dp-audit", "--model", str(model), "--train", str(texts), "--canaries", "10",
            "--canary-length", "4", "--seq-len", "12", "--dp-epsilon", "1", "--out", str(out)]  # fmt: skip
    code, cap = _main(argv, monkeypatch, capsys)
    err = cap.err.strip()
    assert code == 2 and "Opacus cannot train BNLM with DP-SGD: BatchNorm" in err, err
    assert "\n" not in err and not out.exists()


def test_lora_placement_reads_as_english():
    from memlens.commands.dp_audit import _blocks

    assert [_blocks(n) for n in (None, 1, 2)] == [
        "every block",
        "the last block",  # was "the last 1 blocks"
        "the last 2 blocks",
    ]
