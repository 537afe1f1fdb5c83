"""End-to-end smoke runs of the two laws experiments: outputs, direction of the effect, resume."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from memlens.cli import app
from memlens.errors import UserError
from memlens.laws import (
    describe_peak,
    double_descent_config,
    mia_config,
    run_double_descent,
    run_mia_experiment,
)

runner = CliRunner()


@pytest.fixture(scope="module")
def mia_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("mia")
    res = runner.invoke(
        app, ["laws", "mia-experiment", "--preset", "smoke", "--out", str(out), "--json"]
    )
    assert res.exit_code == 0, res.output
    return out, json.loads(res.output)


def test_mia_experiment_outputs(mia_run):
    out, s = mia_run
    for name in ("manifest.json", "mia_experiment.json", "runs.csv", "mia_experiment.png"):
        assert (out / name).exists(), name
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "laws-mia-experiment" and manifest["status"] == "finished"
    assert manifest["config"]["preset"] == "smoke" and manifest["seed"] == 0
    runs = s["runs"]
    assert len(runs) == 4
    for r in runs:
        # |D| in sequences; capacity = 3.64 * params; ratio = N * S * log2 V / capacity
        assert r["capacity_bits"] == pytest.approx(3.64 * r["params"])
        assert r["capacity_ratio"] == pytest.approx(
            r["n_sequences"] * 16 * math.log2(64) / r["capacity_bits"]
        )
        # 1 layer, d = 8, V = 64, S = 16, tied head: wte 512 + wpe 128 + block 872 (two norms 32,
        # attention 216 + 72, MLP 288 + 264) + final norm 16.
        assert r["params"] == 1528
        # N = ceil(multiple * capacity / (S log2 V)), at least 1
        assert r["n_sequences"] == math.ceil(r["capacity_multiple"] * 3.64 * 1528 / 96)
        # n members and n non-members: flagging every sample has precision 1/2 and recall 1, so
        # the best threshold's F1 is never below 2/3.
        assert r["f1_max"] >= 2 / 3 - 1e-12
    # At capacity ratio 1 the members' mean code length (67 bits under seed 0) lies more than 5
    # non-member standard deviations (14 bits) below the non-members' (138): fully separated.
    assert runs[0]["capacity_ratio"] == pytest.approx(5568 / 5561.92)
    assert runs[0]["f1"] == 1.0 and runs[0]["auc"] == 1.0


def test_mia_f1_falls_from_near_one_toward_half_past_capacity(mia_run):
    _, s = mia_run
    runs = sorted(s["runs"], key=lambda r: r["capacity_ratio"])
    f1 = np.array([r["f1"] for r in runs])
    auc = np.array([r["auc"] for r in runs])
    assert runs[0]["capacity_ratio"] < 1.01 and f1[0] > 0.95 and auc[0] > 0.98  # memorized
    assert runs[-1]["capacity_ratio"] > 100 and f1[-1] < 0.6 and auc[-1] < 0.6  # near chance
    assert np.all(np.diff(auc) < 0.02)  # (weakly) decreasing with dataset size
    # the fit ran on our 4 measurements and its curve passes near them
    assert s["fit"] is not None and s["fit"]["rmse"] < 0.06

    # every run's fitted and published-law F1 is the law written out by hand,
    # F1 = 1/2 (1 + c1 sigmoid(c2 - c3 N / C)), and the fit's residual statistics are of those
    def law(c1: float, c2: float, c3: float, r: dict) -> float:
        return 0.5 * (1 + c1 / (1 + math.exp(-(c2 - c3 * r["n_sequences"] / r["capacity_bits"]))))

    fit = s["fit"]
    c = fit["constants"]
    for r in runs:
        assert r["fitted_f1"] == pytest.approx(law(c["c1"], c["c2"], c["c3"], r), abs=1e-12)
        assert r["published_law_f1"] == pytest.approx(law(1.3405, 1.1159, 120.61, r), abs=1e-12)
    res = np.array([r["f1"] - r["fitted_f1"] for r in runs])
    assert (fit["n"], fit["dof"]) == (4, 1)
    assert fit["rmse"] == pytest.approx(math.sqrt(np.mean(res**2)), rel=1e-9)
    assert fit["max_abs_residual"] == pytest.approx(np.abs(res).max(), rel=1e-9)


def test_mia_experiment_resumes_from_cells(mia_run):
    out, s = mia_run
    again = run_mia_experiment(mia_config("smoke"), out).summary
    # the smoke grid is one shape in two cells (its 4 dataset sizes, up to models_per_cell each)
    assert again.reused_cells == len(list((out / "cells").glob("*.json"))) == 2
    assert [r.f1 for r in again.runs] == [r["f1"] for r in s["runs"]]


def test_mia_experiment_refuses_a_different_config_in_the_same_dir(mia_run):
    out, _ = mia_run
    with pytest.raises(UserError, match="different config"):
        run_mia_experiment(mia_config("smoke", seed=1), out)


def test_double_descent_smoke(tmp_path):
    s = run_double_descent(double_descent_config("smoke"), tmp_path).summary.to_json()
    s["runs"] = [dict(r) for r in s["runs"]]
    for name in ("manifest.json", "double_descent.json", "runs.csv", "double_descent.png"):
        assert (tmp_path / name).exists(), name
    runs = s["runs"]
    ratios = [r["capacity_ratio"] for r in runs]
    assert ratios == sorted(ratios) and ratios[0] < 0.2 and ratios[-1] > 5
    h = s["source"]["entropy_rate_bits"]
    for r in runs:
        # dataset bits are exact code lengths under the source: close to N * (log2 V + (S-1) h)
        assert r["dataset_bits"] == pytest.approx(
            r["n_sequences"] * (math.log2(s["vocab_size"]) + (s["seq_len"] - 1) * h), rel=0.25
        )
        # no model beats the source on fresh samples by more than sampling noise
        assert r["test_bits_per_token"] > r["source_test_bits_per_token"] - 0.05
    assert runs[-1]["excess_test_bits_per_token"] < runs[0]["excess_test_bits_per_token"]
    # the peak is read off these runs: the argmax of held-out loss, described in one sentence
    test = [r["test_bits_per_token"] for r in runs]
    assert s["peak"]["argmax_ratio"] == ratios[int(np.argmax(test))]
    assert s["peak"]["argmax_test_bits_per_token"] == max(test)
    assert s["peak"]["verdict"] == describe_peak(runs)["verdict"]
    again = run_double_descent(double_descent_config("smoke"), tmp_path).summary
    assert again.reused_cells >= 1


def test_describe_peak_known_answers():
    def mk(xs, ys):
        return [
            {"capacity_ratio": x, "test_bits_per_token": y} for x, y in zip(xs, ys, strict=True)
        ]

    p = describe_peak(mk([0.1, 0.5, 1.0, 2.0, 10.0], [3.0, 2.5, 2.8, 2.0, 1.5]))
    assert p["peak_ratio"] == 1.0 and not p["argmax_is_interior"]
    p = describe_peak(mk([0.1, 1.0, 10.0], [3.0, 2.0, 1.0]))
    assert p["peak_ratio"] is None and "no interior peak" in p["verdict"]


@pytest.mark.parametrize(
    ("cmd", "args", "match"),
    [
        ("mia-experiment", ["--preset", "huge"], "unknown preset"),
        ("mia-experiment", ["--preset", "smoke", "--max-steps", "0"], "max_steps"),
        ("double-descent", ["--preset", "nope"], "unknown preset"),
        # a bad device is refused before the run directory exists (it was found in a cell)
        ("mia-experiment", ["--preset", "smoke", "--device", "tpu"], "unknown device 'tpu'"),
        ("double-descent", ["--preset", "smoke", "--device", "tpu"], "unknown device 'tpu'"),
    ],
)
def test_experiment_bad_input(tmp_path, cmd, args, match):
    res = runner.invoke(app, ["laws", cmd, *args, "--out", str(tmp_path / "o")])
    assert isinstance(res.exception, UserError), res.output
    assert match in str(res.exception)
    assert not (tmp_path / "o").exists()


def test_quick_presets_use_the_capacity_lab_recipe():
    """Head size 4 and a linear LR decay: without them the quick models store ~0.4-0.6 bits/param
    less in the same time (README, laws section)."""
    from memlens.models.gpt import GPTConfig

    mia = mia_config("quick")
    dd = double_descent_config("quick")
    for cfg, shapes in ((mia, mia.shapes), (dd, [dd.shape])):
        for sh in shapes:
            g = GPTConfig(cfg.vocab_size, cfg.seq_len, sh.n_layer, sh.d_model, sh.n_head)
            assert g.n_head == sh.d_model // 4
        assert cfg.train.decay_frac > 0 and cfg.train.min_steps == cfg.train.max_steps


def test_double_descent_refuses_ratios_that_give_one_dataset_size(tmp_path):
    # smoke shape: 1,144 params, capacity 3.64 * 1,144 = 4,164 bits; a sequence of the source
    # holds log2(16) + 15 * 2.507 = 41.6 bits, so ratios 1.0 and 1.004 both round to N = 100 and
    # the "peak" between them would be seed noise (it was reported as one).
    cfg = double_descent_config("smoke", capacity_ratios=[0.1, 1.0, 1.004])
    with pytest.raises(UserError, match="1 and 1.004 both give datasets of 100 sequences"):
        run_double_descent(cfg, tmp_path / "o")
    assert not (tmp_path / "o").exists()  # refused before the run directory is written
