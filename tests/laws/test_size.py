"""memlens size and the sizing laws: known answers from Morris et al. 2025 (Concepts §1-2 (docs/concepts.md))."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from memlens import laws
from memlens.cli import app
from memlens.errors import UserError

runner = CliRunner()

# Concepts §2 (docs/concepts.md): params, |D| (sequences), target F1.
PUBLISHED = [(r["params"], r["n_sequences"], r["target_f1"]) for r in laws.PUBLISHED_VALIDATION]


def size_json(*args: str) -> dict:
    res = runner.invoke(app, ["size", *args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


@pytest.mark.parametrize(("params", "n", "target"), PUBLISHED)
def test_size_reproduces_published_validation_targets(params, n, target):
    d = size_json(
        "--params", str(params), "--n-sequences", str(n), "--seq-len", "64", "--vocab", "50257"
    )
    assert abs(d["predicted_mia_f1"] - target) < 0.02
    # capacity = 3.64 bits/param; dataset bits = N * 64 * log2(50257) (uniform upper bound)
    assert d["capacity_bits"] == pytest.approx(3.64 * params)
    assert d["dataset_bits"] == pytest.approx(n * 64 * math.log2(50257))
    assert d["capacity_ratio"] == pytest.approx(d["dataset_bits"] / d["capacity_bits"])
    assert d["tokens_per_param"] == pytest.approx(n * 64 / params)
    # |D| * 64 * log2(50257) / (3.64 * params): 30.11, 13.55 and 3.327 for F1 targets 0.55, 0.75
    # and 0.95 at both sizes (the paper's sizes keep the ratio fixed per target); all >= 2.
    ratio = {0.55: 30.11, 0.75: 13.55, 0.95: 3.327}[target]
    assert d["capacity_ratio"] == pytest.approx(ratio, rel=1e-3)
    assert d["regime"] == "generalization"


def test_printed_law_is_wrong_and_corrected_law_has_right_limits():
    # Concepts §2 (docs/concepts.md): the printed law tends to 1.006 (not 0.5) as |D| grows, and rises with |D|.
    assert float(laws.mia_f1_printed(1e15, 1.0)) == pytest.approx(1.006, abs=5e-4)
    assert laws.mia_f1_printed(2e7, 5.6e9) > laws.mia_f1_printed(1e7, 5.6e9)
    assert float(laws.mia_f1(1e15, 1.0)) == pytest.approx(0.5, abs=1e-9)
    assert laws.mia_f1(2e7, 5.6e9) < laws.mia_f1(1e7, 5.6e9)
    # ceiling as |D| -> 0: 1/2 (1 + 1.3405 sigmoid(1.1159)) = 1.0048
    assert laws.mia_f1_ceiling() == pytest.approx(0.5 * (1 + 1.3405 / (1 + math.exp(-1.1159))))


def test_regime_thresholds():
    assert [laws.regime(r) for r in (0.01, 0.49, 0.5, 1.0, 1.99, 2.0, 50)] == [
        "memorization", "memorization", "critical", "critical", "critical",
        "generalization", "generalization",
    ]  # fmt: skip


@pytest.mark.parametrize(("params", "n", "target"), PUBLISHED)
def test_inverse_recovers_the_published_rows(params, n, target):
    # The published rows sit (to 1e-5) on the corrected law, so asking for the largest model that
    # keeps F1 <= target on that dataset must return that row's model, and vice versa.
    d = size_json("--n-sequences", str(n), "--target-f1", str(target), "--vocab", "50257")
    assert d["inverse"]["max_params"] == pytest.approx(params, rel=2e-3)
    d = size_json("--params", str(params), "--target-f1", str(target))
    assert d["inverse"]["min_n_sequences"] == pytest.approx(n, rel=2e-3)
    assert d["inverse"]["min_tokens"] == d["inverse"]["min_n_sequences"] * 64


def test_inverse_target_above_ceiling_means_any_size():
    d = size_json("--params", "1e9", "--n-sequences", "10", "--vocab", "2", "--target-f1", "1.0")
    assert d["inverse"]["max_params"] is None and d["inverse"]["min_n_sequences"] == 0
    assert d["predicted_mia_f1"] == 1.0  # clipped; the law itself gives 1.0048
    assert d["predicted_mia_f1_unclipped"] > 1.0


def test_tokens_and_bits_per_token():
    d = size_json(
        "--params", "1e6", "--tokens", "6400000", "--seq-len", "64", "--bits-per-token", "2"
    )
    assert d["n_sequences"] == pytest.approx(100_000)
    assert d["dataset_bits"] == pytest.approx(6_400_000 * 2)
    assert d["capacity_ratio"] == pytest.approx(12.8e6 / 3.64e6)
    assert d["regime"] == "generalization"


def _write(path, obj) -> str:
    path.write_text(json.dumps(obj))
    return str(path)


def test_hf_gpt2_config_matches_the_paper_param_counts(tmp_path):
    # GPT-2 XL and GPT-2 small with n_positions = 64 are the two models of the published table.
    xl = {
        "model_type": "gpt2",
        "vocab_size": 50257,
        "n_positions": 64,
        "n_embd": 1600,
        "n_layer": 48,
        "n_head": 25,
    }
    small = {
        "model_type": "gpt2",
        "vocab_size": 50257,
        "n_positions": 64,
        "n_embd": 768,
        "n_layer": 12,
        "n_head": 12,
    }
    assert laws.params_from_hf_config(xl)["params"] == 1_556_075_200
    assert laws.params_from_hf_config(small)["params"] == 123_702_528
    # Concepts §1 (docs/concepts.md): (1 layer, d=32, V=2048, S=64) -> 80,352
    tiny = {"model_type": "gpt2", "vocab_size": 2048, "n_positions": 64, "n_embd": 32, "n_layer": 1}
    assert laws.params_from_hf_config(tiny)["params"] == 80_352
    d = size_json("--config", _write(tmp_path / "config.json", xl), "--n-sequences", "18851574")
    assert d["params"] == 1_556_075_200 and d["vocab_size"] == 50257
    assert abs(d["predicted_mia_f1"] - 0.95) < 0.02


def _hf_models():
    import transformers as tf

    return [
        (
            tf.GPT2Config(
                vocab_size=101,
                n_positions=48,
                n_embd=24,
                n_layer=2,
                n_head=4,
                n_inner=40,
                tie_word_embeddings=False,
            ),
            tf.GPT2LMHeadModel,
        ),  # fmt: skip
        (
            tf.LlamaConfig(
                vocab_size=97,
                hidden_size=32,
                intermediate_size=56,
                num_hidden_layers=1,
                num_attention_heads=4,
                attention_bias=True,
                mlp_bias=True,
                tie_word_embeddings=True,
            ),
            tf.LlamaForCausalLM,
        ),  # fmt: skip
        (
            tf.MistralConfig(
                vocab_size=97,
                hidden_size=32,
                intermediate_size=48,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=1,
            ),
            tf.MistralForCausalLM,
        ),  # fmt: skip
        (
            tf.Qwen2Config(
                vocab_size=97,
                hidden_size=32,
                intermediate_size=48,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
            ),
            tf.Qwen2ForCausalLM,
        ),  # fmt: skip
        (
            tf.GPTNeoXConfig(
                vocab_size=97,
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
            ),
            tf.GPTNeoXForCausalLM,
        ),  # fmt: skip
    ]


def test_hf_param_counts_match_transformers(tmp_path):
    # Independent check: instantiate each model with Transformers and count its parameters. The
    # config is saved with use_diff (only non-default keys), so our defaults are tested too.
    import torch

    torch.manual_seed(0)
    for i, (cfg, cls) in enumerate(_hf_models()):
        with torch.device("meta"):  # shapes only: no memory, no initialization
            model = cls(cfg)
        expected = sum(p.numel() for p in model.parameters())
        path = tmp_path / f"c{i}" / "config.json"
        path.parent.mkdir()
        cfg.to_json_file(str(path), use_diff=True)
        got = laws.load_config_file(path)
        assert got["kind"] == "hf"
        assert got["params"] == expected, (cfg.model_type, got["params"], expected)


def test_capacity_json_supplies_measured_alpha(tmp_path):
    cap = {
        "alpha_bits_per_param": 2.5,
        "all_saturated": False,
        "models": [{"params": 8000}, {"params": 20000}],
    }
    path = _write(tmp_path / "capacity.json", cap)
    d = size_json("--config", path, "--params", "1e6", "--n-sequences", "1e5", "--vocab", "2048")
    assert d["alpha"] == 2.5 and d["capacity_bits"] == pytest.approx(2.5e6)
    assert "measured" in d["alpha_source"]
    assert any("lower bound" in w for w in d["warnings"])
    assert any("outside" in w for w in d["warnings"])  # 1e6 params is far from 8k-20k


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from memlens.cli import main; main()", *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


BAD = [
    (["--params", "-5", "--n-sequences", "10", "--vocab", "50257"], "must be positive"),
    (["--params", "1e6", "--n-sequences", "0", "--vocab", "50257"], "must be positive"),
    (["--params", "1e6", "--n-sequences", "10"], "vocabulary size"),
    (["--params", "1e6", "--target-f1", "0.5"], "above 0.5"),
    (["--params", "1e6", "--n-sequences", "10", "--tokens", "640", "--vocab", "5"], "not both"),
    (["--n-sequences", "10", "--vocab", "5"], "`params`"),
    # a token of a 50,257-token vocabulary carries at most log2 50257 = 15.62 bits
    (
        ["--params", "1e9", "--tokens", "1e9", "--bits-per-token", "15.7", "--vocab", "50257"],
        "(log2 V = 15.62)",
    ),
]


@pytest.mark.parametrize(("args", "match"), BAD)
def test_bad_input_raises_user_error(args, match):
    res = runner.invoke(app, ["size", *args])
    assert isinstance(res.exception, UserError), res.output
    assert match in str(res.exception)


def test_bits_per_token_up_to_log2_vocab_is_accepted():
    # exactly log2 V (uniform tokens) is the largest measured entropy: it gives the uniform bound
    at_bound = laws.size(params=1e6, n_sequences=10, vocab_size=512, bits_per_token=9.0)
    assert at_bound.dataset_bits == 10 * 64 * 9.0
    with pytest.raises(UserError, match="9.01 bits per token is more than"):
        laws.size(params=1e6, n_sequences=10, vocab_size=512, bits_per_token=9.01)


@pytest.mark.parametrize("i", [0, 3])
def test_bad_input_is_one_sentence_and_exit_2(i):
    res = _cli("size", *BAD[i][0])
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    assert res.stderr.strip().startswith("error:") and len(res.stderr.strip().splitlines()) == 1


def test_library_names_parameters_and_the_cli_names_flags():
    # the library speaks to a notebook user (parameter names), the command line to a shell user
    with pytest.raises(UserError, match="give `params` \\(or `config`\\) as well"):
        laws.size(n_sequences=10, vocab_size=5)
    res = _cli("size", "--n-sequences", "10", "--vocab", "5")
    assert (
        "give --params (or --config) as well, or ask an inverse question with --target-f1."
        in res.stderr
    )


def test_bad_configs(tmp_path):
    with pytest.raises(UserError, match="model_type"):
        laws.load_config_file(_write(tmp_path / "a.json", {"model_type": "t5", "vocab_size": 3}))
    with pytest.raises(UserError, match="neither"):
        laws.load_config_file(_write(tmp_path / "b.json", {"hello": 1}))
    with pytest.raises(UserError, match="does not exist"):
        laws.load_config_file(tmp_path / "missing.json")
    (tmp_path / "c.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        laws.load_config_file(tmp_path / "c.json")
    with pytest.raises(UserError, match="n_layer"):
        laws.params_from_hf_config(
            {"model_type": "gpt2", "vocab_size": 5, "n_embd": 8, "n_positions": 4}
        )


def test_a_vocabulary_other_than_the_configs_is_named(tmp_path):
    # the parameters come from the config's V = 50,257, the dataset bits from the V passed: the
    # two disagreeing went unsaid (a contradicting parameter count is refused)
    cfg = {"model_type": "gpt2", "vocab_size": 50257, "n_positions": 64, "n_embd": 768,
           "n_layer": 12, "n_head": 12}  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    rep = laws.size(config=tmp_path, n_sequences=1000, vocab_size=1024)
    # 1000 sequences * 64 tokens * log2(1024) = 640,000 bits
    assert rep.dataset_bits == pytest.approx(640_000.0)
    assert any("vocabulary size 1,024 differs from the 50,257" in w for w in rep.warnings)
    same = laws.size(config=tmp_path, n_sequences=1000, vocab_size=50257)
    assert not any("vocabulary" in w for w in same.warnings)
