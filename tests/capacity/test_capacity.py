"""Capacity lab: fit, saturation criterion, trainer known answers, end-to-end smoke, resume, bad input."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from memlens import capacity as cap
from memlens.data.synthetic import uniform_sequences
from memlens.errors import UserError
from memlens.models.gpt import GPT, GPTConfig
from memlens.training import ModelCurve, SaturationConfig, train_to_saturation

MEMLENS = [sys.executable, "-m", "memlens.cli"]


def test_fit_alpha_known_answer():
    P = np.array([1000.0, 2000.0, 4000.0])
    C = np.array([3700.0, 7000.0, 14800.0])
    fit = cap.fit_alpha(P, C)
    # slope through the origin: sum(P*C)/sum(P^2) = (3.7e6 + 14e6 + 59.2e6) / 21e6
    assert fit["alpha"] == pytest.approx(76.9e6 / 21e6)
    assert fit["mean_ratio"] == pytest.approx((3.7 + 3.5 + 3.7) / 3)
    assert cap.fit_alpha(P, 3.64 * P)["alpha"] == pytest.approx(3.64)
    # standard error sqrt(SSR / (n - 1) / sum(P^2)), residuals C - alpha * P
    a = 76.9e6 / 21e6
    ssr = sum((c - a * p) ** 2 for p, c in zip(P, C, strict=True))
    assert fit["alpha_se"] == pytest.approx(math.sqrt(ssr / 2 / 21e6))


def test_one_shape_has_no_standard_error_and_writes_strict_json():
    # a slope from one point has no error estimate: None (JSON null), not NaN, which strict JSON
    # readers (jq, JavaScript) refuse; the console said "± nan s.e."
    fit = cap.fit_alpha([4592.0], [8948.5])
    assert fit == {"alpha": 8948.5 / 4592, "alpha_se": None, "mean_ratio": 8948.5 / 4592}
    cfg = cap.load_config("smoke")
    run = {
        "n_sequences": 105,
        "dataset_bits": 10080.0,
        "memorizable_bits": 9450.0,
        "memorized_bits": 8948.5,
        "steps": 900,
        "saturated": False,
        "stopped_by": "steps",
        "seconds": 1.0,
    }
    model = {
        "n_layer": 1,
        "d_model": 16,
        "n_head": 4,
        "params": 4592,
        "capacity_bits": 8948.5,
        "bits_per_param": 8948.5 / 4592,
        "saturated": False,
        "runs": [run],
    }
    s = cap.summarize(cfg, [model], 1.0)
    assert s.alpha_se is None
    assert json.loads(json.dumps(s.model_dump(), allow_nan=False))["alpha_se"] is None
    with pytest.raises(UserError, match="at least one shape"):
        cap.fit_alpha([], [])


def test_saturation_criterion():
    c = ModelCurve(steps=[100, 200, 300, 400, 500], memorized_bits=[10, 50, 99.0, 99.5, 99.9])
    # last 20% of 500 steps: from step 400 (99.5) to 99.9 -> 0.4% growth
    assert c.saturated(0.2, 0.01)
    c2 = ModelCurve(steps=[100, 200, 300, 400, 500], memorized_bits=[10, 50, 90, 95, 99.9])
    assert not c2.saturated(0.2, 0.01)
    assert not ModelCurve(steps=[100], memorized_bits=[5.0]).saturated(0.2, 0.01)


def test_paper_sizes_follow_published_params():
    cfg = cap.load_config("paper")
    assert len(cfg.shapes) == 16 and cfg.vocab_size == 2048 and cfg.seq_len == 64
    assert cfg.bits_per_sequence() == 704
    # N for a multiple m of the expected capacity: m * 3.64 * params / 704
    assert cfg.sizes_for(80_352)[2] == math.ceil(1.0 * 3.64 * 80_352 / 704)


def test_trainer_memorizes_a_small_dataset_completely():
    V, S, N = 16, 8, 6
    torch.manual_seed(0)
    data = uniform_sequences(V, S, N, seed=0)[None]
    model = GPT(GPTConfig(V, S, 1, 32), n_models=1, generator=torch.Generator().manual_seed(0))
    cfg = SaturationConfig(
        lr=1e-2, batch_size=6, max_steps=600, min_steps=200, eval_every=50, decay_frac=0.3
    )
    res = train_to_saturation(model, data, [N], cfg, entropy_bits=S * 4.0, first_token_bits=4.0)
    predictable = N * (S - 1) * math.log2(V)  # the first token is coded uniformly
    assert res.final_memorized_bits[0] == pytest.approx(predictable, rel=0.02)
    assert res.final_memorized_bits[0] <= predictable + 1e-6
    assert res.saturated == [True]


def test_trainer_is_deterministic():
    def once():
        data = uniform_sequences(32, 8, 10, seed=1)[None].repeat(2, 1, 1)
        model = GPT(GPTConfig(32, 8, 1, 16), n_models=2, generator=torch.Generator().manual_seed(3))
        cfg = SaturationConfig(lr=1e-2, batch_size=4, max_steps=60, min_steps=10, eval_every=20)
        return train_to_saturation(
            model, data, [10, 7], cfg, entropy_bits=40.0, first_token_bits=5.0, seed=4
        )

    a, b = once(), once()
    assert a.final_memorized_bits == b.final_memorized_bits


def run_cli(*args, cwd=None):
    return subprocess.run([*MEMLENS, *args], capture_output=True, text=True, cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cap") / "run"
    r = run_cli("capacity", "--preset", "smoke", "--out", str(out))
    assert r.returncode == 0, r.stderr
    return out, r


def test_smoke_end_to_end(smoke_run):
    out, r = smoke_run
    result = json.loads((out / "capacity.json").read_text())
    # smoke preset: V = 64, S = 16, fp32; a sequence holds 16 * log2(64) = 96 bits, of which the
    # 15 predicted tokens' 90 bits can be memorized (the first token never is).
    assert (result["vocab_size"], result["seq_len"], result["precision"]) == (64, 16, "fp32")
    assert (result["bits_per_sequence"], result["memorizable_bits_per_sequence"]) == (96.0, 90.0)
    assert result["alpha_method"] == "least-squares slope of capacity on params through the origin"
    assert result["backend"] == "local" and result["stopped_by_time_budget"] == 0
    assert len(result["models"]) == 2
    for m in result["models"]:
        assert m["params"] == GPTConfig(64, 16, m["n_layer"], m["d_model"]).n_params
        assert m["saturated"] is False
        assert m["capacity_bits"] == max(run["memorized_bits"] for run in m["runs"])
        for run in m["runs"]:
            assert run["memorized_bits"] <= run["dataset_bits"]  # never more than the data holds
            assert run["dataset_bits"] == 96 * run["n_sequences"]
            assert run["memorizable_bits"] == 90 * run["n_sequences"]
            # the fitted alpha times the parameters, capped by what the data can hold
            alpha = result["alpha_bits_per_param"]
            assert run["predicted_bits"] == min(alpha * m["params"], run["memorizable_bits"])
            # no time budget, and under seed 0 no smoke run saturates: all 900 steps are used
            assert (run["saturated"], run["stopped_by"], run["steps"]) == (False, "steps", 900)
    P = np.array([m["params"] for m in result["models"]])
    C = np.array([m["capacity_bits"] for m in result["models"]])
    assert result["alpha_bits_per_param"] == pytest.approx((P * C).sum() / (P * P).sum())
    # under seed 0 (900 steps, far from saturation): 1.81 bits/param, half the published 3.64
    assert result["alpha_bits_per_param"] == pytest.approx(1.81, abs=0.02)
    man = json.loads((out / "manifest.json").read_text())
    assert man["seed"] == 0 and "torch" in man["versions"] and "git_revision" in man
    for f in ("runs.csv", "curves.csv", "memorized_vs_dataset.png", "capacity_vs_params.png"):
        assert (out / f).stat().st_size > 0
    assert "bits/param" in r.stdout
    # beside our slope: the published like-for-like fp32 figures (Morris et al. 2025, Table)
    assert "Published fp32: slope 3.88, mean of per-model ratios 3.83." in " ".join(
        r.stdout.split()
    )
    # predicted bits: min(alpha * P, N * (S - 1) * log2 V), the first token never memorized
    for m in result["models"]:
        for run in m["runs"]:
            assert run["memorizable_bits"] == run["n_sequences"] * 15 * 6
            assert run["predicted_bits"] == pytest.approx(
                min(result["alpha_bits_per_param"] * m["params"], run["memorizable_bits"])
            )


def test_rerun_returns_at_once_and_resume_reuses_cells(smoke_run, tmp_path):
    out, _ = smoke_run
    before = json.loads((out / "capacity.json").read_text())
    r = run_cli("capacity", "--preset", "smoke", "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    again = json.loads(r.stdout)
    assert again["reused_cells"] == 2
    assert again["alpha_bits_per_param"] == before["alpha_bits_per_param"]
    # simulate an interruption after the first shape: copy the run and drop one cell
    import shutil

    part = tmp_path / "partial"
    shutil.copytree(out, part)
    cells = sorted(p for p in (part / "cells").glob("L*.json"))
    cells[-1].unlink()
    cfg = cap.load_config("smoke")
    resumed = cap.run(cfg, part, workers=1).summary
    assert resumed.reused_cells == 1
    # the retrained shape gives the same numbers as the first time (deterministic under a seed)
    assert resumed.alpha_bits_per_param == pytest.approx(before["alpha_bits_per_param"], rel=1e-4)


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--preset", "bogus"], "unknown preset"),
        (["--preset", "smoke", "--n-sequences", "0,5"], "at least 1"),
        (["--preset", "smoke", "--vocab", "1"], "vocab size"),
        (["--preset", "smoke", "--config", "/nonexistent/cap.toml"], "cannot read config"),
        (["--preset", "smoke", "--precision", "fp8"], "precision"),
        # the library names the parameter, the command line its flag
        (["--preset", "smoke", "--n-sequences", "a,b"], "--n-sequences must be comma-separated"),
    ],
)
def test_bad_input_one_sentence_exit_2(args, needle, tmp_path):
    out = tmp_path / "out"
    r = run_cli("capacity", *args, "--out", str(out))
    assert r.returncode == 2
    assert needle in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (out / "capacity.json").exists()


def test_bad_head_count_and_unwritable_out(tmp_path):
    conf = tmp_path / "c.toml"
    conf.write_text("shapes = [{n_layer = 1, d_model = 16, n_head = 3}]\n")
    r = run_cli(
        "capacity", "--preset", "smoke", "--config", str(conf), "--out", str(tmp_path / "o")
    )
    assert r.returncode == 2 and "not divisible" in r.stderr and "Traceback" not in r.stderr
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = run_cli("capacity", "--preset", "smoke", "--out", str(blocker / "sub"))
    assert r.returncode == 2 and "is a file" in r.stderr and "Traceback" not in r.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("shapes = [[[")
    r = run_cli("capacity", "--config", str(bad), "--out", str(tmp_path / "o2"))
    assert r.returncode == 2 and "cannot parse" in r.stderr


def test_a_bad_device_leaves_no_run_directory(tmp_path):
    # checked before the run directory is made (the cell found it, after manifest.json was written);
    # with Ray only the name is checked, since a worker may have a GPU this process lacks
    from memlens.scale import check_backend

    cfg = cap.load_config("smoke", device="tpu")
    with pytest.raises(UserError, match="unknown device 'tpu'"):
        cap.run(cfg, tmp_path / "o")
    assert not (tmp_path / "o").exists()
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA device"):
            cap.run(cap.load_config("smoke", device="cuda"), tmp_path / "o")
        assert not (tmp_path / "o").exists()
    with pytest.raises(UserError, match="unknown device 'cuda:x'"):
        check_backend("ray", device="cuda:x")


def test_custom_config_file(tmp_path):
    conf = tmp_path / "c.toml"
    conf.write_text(
        "vocab_size = 32\nseq_len = 8\nn_sequences = [4, 8]\nshapes = [{n_layer = 1, d_model = 16}]\n"
        "[train]\nmax_steps = 40\nmin_steps = 10\neval_every = 20\n"
    )
    cfg = cap.load_config(None, conf)
    assert cfg.preset == "custom" and cfg.steps_for(10**6) == 40
    assert cfg.vocab_size == 32 and cfg.capacity_multiples is None and cfg.sizes_for(999) == [4, 8]
    with pytest.raises(UserError):
        cap.load_config(None, conf, seq_len=1)
    res = cap.run(cfg, tmp_path / "r", workers=1).summary
    assert [r.n_sequences for r in res.models[0].runs] == [4, 8]
    assert Path(tmp_path / "r" / "capacity.json").exists()


def test_head_dim_and_per_shape_steps(tmp_path):
    conf = tmp_path / "c.toml"
    conf.write_text(
        "vocab_size = 32\nseq_len = 8\nn_sequences = [4]\nhead_dim = 4\n"
        "shapes = [{n_layer = 1, d_model = 16, steps = 30}, {n_layer = 1, d_model = 8, n_head = 1}]\n"
        "[train]\nmax_steps = 40\nmin_steps = 10\neval_every = 10\n"
    )
    cfg = cap.load_config(None, conf)
    a, b = cfg.shapes
    assert cfg.n_head_for(a) == 4 and cfg.n_head_for(b) == 1  # explicit n_head wins
    assert cfg.steps_for_shape(a) == 30 and cfg.steps_for_shape(b) == 40
    res = cap.run(cfg, tmp_path / "r", workers=1).summary
    assert [m.n_head for m in res.models] == [4, 1]
    assert [m.runs[0].steps for m in res.models] == [30, 40]
    # the head count changes the model, not its parameter count
    assert res.models[0].params == GPTConfig(32, 8, 1, 16).n_params
    # the quick preset: head size 4 everywhere
    quick = cap.load_config("quick")
    assert all(quick.n_head_for(s) == s.d_model // 4 for s in quick.shapes)
    with pytest.raises(UserError, match="head_dim"):
        cap.load_config(None, conf, head_dim=5)


def test_unreachable_ray_address_leaves_nothing_behind(tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "out"
    r = run_cli(
        "capacity",
        "--preset",
        "smoke",
        "--backend",
        "ray",
        "--ray-address",
        "127.0.0.1:9",
        "--out",
        str(out),
    )
    assert r.returncode == 2 and "Ray" in r.stderr and "Traceback" not in r.stderr
    assert not (out / "manifest.json").exists()


def test_max_steps_override_replaces_per_shape_budgets():
    cfg = cap.load_config("quick", max_steps=123)
    assert {cfg.steps_for_shape(s) for s in cfg.shapes} == {123}
    quick = cap.load_config("quick")
    assert len({quick.steps_for_shape(s) for s in quick.shapes}) > 1


def test_bf16_training_learns_like_fp32(tmp_path):
    # bf16 autocasts the transformer body (the fused output layer and its loss stay fp32): a
    # model with too little training to memorize everything (about 79% of the data's bits in
    # fp32) memorizes as much in bf16, within a few percent, and the runs are not identical.
    conf = tmp_path / "c.toml"
    conf.write_text(
        "vocab_size = 32\nseq_len = 8\nn_sequences = [96]\nhead_dim = 4\n"
        "shapes = [{n_layer = 1, d_model = 16}]\n"
        "[train]\nmax_steps = 300\nmin_steps = 300\neval_every = 100\nlr = 3e-2\nbatch_size = 16\n"
    )
    bits = {}
    for precision in ("fp32", "bf16"):
        cfg = cap.load_config(None, conf, precision=precision)
        res = cap.run(cfg, tmp_path / precision, workers=1).summary
        assert res.precision == precision
        run = res.models[0].runs[0]
        bits[precision] = run.memorized_bits
        assert 0.6 * run.dataset_bits < run.memorized_bits < 0.95 * run.dataset_bits
    assert bits["bf16"] == pytest.approx(bits["fp32"], rel=0.05) and bits["bf16"] != bits["fp32"]


def test_predicted_bits_charge_the_first_token():
    # V = 16, S = 4, N = 10: the data holds 10 * 4 * 4 = 160 bits, of which 10 * 3 * 4 = 120 can be
    # memorized; a model with more capacity than that is predicted to memorize 120, not 160
    conf = cap.CapacityConfig(
        vocab_size=16, seq_len=4, n_sequences=[10], shapes=[{"n_layer": 1, "d_model": 8}]
    )
    assert conf.bits_per_sequence() == 16.0 and conf.memorizable_bits_per_sequence() == 12.0
    assert cap.predicted_bits(3.64, 1000, 10 * conf.memorizable_bits_per_sequence()) == 120.0
    assert cap.predicted_bits(3.64, 10, 120.0) == pytest.approx(36.4)


def _two_sequences_and_a_model():
    """2 uniform sequences of 8 tokens over V = 16 and one GPT (1 layer, width 32) for them."""
    V, S = 16, 8
    data = uniform_sequences(V, S, 2, seed=0)[None]
    model = GPT(GPTConfig(V, S, 1, 32), n_models=1, generator=torch.Generator().manual_seed(0))
    return data, model


def test_time_budget_stop_is_never_saturated(tmp_path):
    # a budget of 1 ms stops training at the first evaluation: the result says so, and the run
    # is not saturated even though its (tiny) dataset is memorized at once
    N, S = 2, 8
    data, model = _two_sequences_and_a_model()
    cfg = SaturationConfig(
        lr=1e-2, batch_size=2, max_steps=400, min_steps=1, eval_every=10, decay_frac=0.0
    )
    res = train_to_saturation(
        model, data, [N], cfg, entropy_bits=S * 4.0, first_token_bits=4.0, time_budget_s=1e-3
    )
    assert res.stopped_by == "time_budget" and res.steps == 10 and res.saturated == [False]
    conf = tmp_path / "c.toml"
    conf.write_text(
        "vocab_size = 16\nseq_len = 8\nn_sequences = [2]\ntime_budget_s = 0.001\n"
        "shapes = [{n_layer = 1, d_model = 16}]\n[train]\nmax_steps = 400\nmin_steps = 1\neval_every = 10\n"
    )
    r = run_cli("capacity", "--config", str(conf), "--out", str(tmp_path / "r"), "--workers", "1")
    assert r.returncode == 0, r.stderr
    s = json.loads((tmp_path / "r" / "capacity.json").read_text())
    run = s["models"][0]["runs"][0]
    assert run["stopped_by"] == "time_budget" and run["saturated"] is False and run["steps"] == 10
    assert s["stopped_by_time_budget"] == 1 and s["all_saturated"] is False
    assert "stopped by the time budget" in " ".join(r.stdout.split())


class _Clock:
    """A stand-in for the ``time`` module of :mod:`memlens.training.saturation`: every call of
    ``perf_counter`` is one second later than the one before."""

    def __init__(self) -> None:
        self.now = -1.0

    def perf_counter(self) -> float:
        self.now += 1.0
        return self.now


def test_time_budget_stop_on_a_plateau_is_not_saturated(monkeypatch):
    # The clock reads 0 at the start and k at the k-th evaluation (step 10 k): a budget of 30.5 s
    # stops the run at step 310 of 400, long after the 2 sequences are memorized, so the curve
    # itself is flat over its last 20% (it would pass the plateau test); the run is still not
    # called saturated, because the budget, not the plateau criterion, ended it.
    from memlens.training import saturation

    monkeypatch.setattr(saturation, "time", _Clock())
    N, S = 2, 8
    data, model = _two_sequences_and_a_model()
    cfg = SaturationConfig(
        lr=1e-2, batch_size=2, max_steps=400, min_steps=1, eval_every=10, decay_frac=0.3
    )
    res = train_to_saturation(
        model, data, [N], cfg, entropy_bits=S * 4.0, first_token_bits=4.0, time_budget_s=30.5
    )
    assert res.stopped_by == "time_budget" and res.steps == 310
    assert res.final_memorized_bits[0] == pytest.approx(N * (S - 1) * 4.0, rel=0.02)
    assert res.curves[0].saturated(cfg.plateau_frac, cfg.plateau_tol)  # flat, as said
    assert res.saturated == [False]


def test_bf16_console_shows_the_published_bf16_figures(tmp_path):
    from rich.console import Console

    from memlens.commands.capacity import print_summary

    conf = tmp_path / "c.toml"
    conf.write_text(
        "vocab_size = 16\nseq_len = 4\nn_sequences = [2]\nshapes = [{n_layer = 1, d_model = 8}]\n"
        "[train]\nmax_steps = 20\nmin_steps = 10\neval_every = 10\nprecision = 'bf16'\n"
    )
    s = cap.run(cap.load_config(None, conf), tmp_path / "r", workers=1).summary
    assert s.published_alpha == {
        "headline": 3.64,
        "precision": "bf16",
        "slope": 3.60,
        "mean_per_model": 3.51,
    }
    console = Console(record=True, width=200)
    print_summary(console, s, tmp_path / "r")
    text = console.export_text()
    assert "Published bf16: slope 3.60, mean of per-model ratios 3.51." in text
    # one shape: no standard error (it printed "± nan s.e.")
    assert "one shape: no s.e.)" in text and "nan" not in text


def test_documented_grid_file_loads(tmp_path):
    """The grid file docs/capacity.md shows for `--config grid.toml` is a valid config: its shapes,
    sizes, head size, per-shape steps and training settings land where the page says."""
    page = (Path(__file__).resolve().parents[2] / "docs" / "capacity.md").read_text()
    block = page.split("```toml\n", 1)[1].split("```", 1)[0]
    conf = tmp_path / "grid.toml"
    conf.write_text(block)
    cfg = cap.load_config("quick", conf)  # the command line's default preset under the file
    assert (cfg.vocab_size, cfg.seq_len, cfg.head_dim) == (64, 16, 4)
    assert cfg.capacity_multiples == [0.5, 1.0] and cfg.n_sequences is None
    assert [(s.n_layer, s.d_model, s.steps) for s in cfg.shapes] == [(1, 16, None), (1, 32, 800)]
    assert (cfg.train.lr, cfg.train.batch_size, cfg.train.max_steps) == (0.08, 32, 600)
