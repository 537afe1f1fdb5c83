"""``memlens prior theory`` and ``memlens prior diagnose`` end to end.

Successful runs go through typer's in-process runner; the bad-input contract (one line on
stderr, exit code 2, nothing written) is checked on a real subprocess of ``memlens``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.optimize  # noqa: F401  (load scipy's BLAS before limiting threads)
import scipy.stats  # noqa: F401
from threadpoolctl import threadpool_limits
from typer.testing import CliRunner

from memlens.cli import app

ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    with threadpool_limits(1):
        yield


def _run(*args):
    result = CliRunner().invoke(app, ["prior", *args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.stdout


def test_theory_json_check_values_and_run_dir(tmp_path):
    out = tmp_path / "run"
    lim = json.loads(
        _run(
            "theory",
            "--gamma",
            "2",
            "--r2",
            "1",
            "--sigma2",
            "0.25",
            "--prior",
            "isotropic",
            "--json",
            "--out",
            str(out),
        )  # fmt: skip
    )["limit"]
    assert lim["minnorm_risk"] == pytest.approx(0.75)
    assert round(lim["bayes_risk"], 4) == 0.6404
    assert round(lim["train_bayes"], 4) == 0.0702
    assert lim["lambda_opt"] == pytest.approx(0.5)
    assert lim["J"] == pytest.approx(2.0)
    assert lim["threshold_memorization"] == pytest.approx(0.5)
    assert lim["threshold_overfitting"] == pytest.approx(1.0)
    for f in ("manifest.json", "theory.json", "curve_sigma2.csv", "curve_lambda.csv",
              "risk_vs_sigma2.png", "risk_vs_lambda.png"):  # fmt: skip
        assert (out / f).stat().st_size > 0, f
    manifest = json.loads((out / "manifest.json").read_text())
    assert (
        manifest["kind"] == "prior-theory"
        and manifest["status"] == "finished"
        and manifest["config"]["prior"] == "isotropic"
    )
    # Strict JSON: infinities become null (gamma < 1: J is infinite, 1/J = 0).
    lim = json.loads(_run("theory", "--gamma", "0.5", "--json", "--out", str(tmp_path / "u")))
    assert lim["limit"]["J"] is None and lim["limit"]["threshold_memorization"] == 0.0


def test_theory_table_with_finite_sample_column(tmp_path):
    text = _run("theory", "--prior", "aligned", "--sigma2", "0.01", "--n", "100",
                "--out", str(tmp_path / "a"))  # fmt: skip
    assert "exact, n=100, d=200" in text and "sigma2_sign_change" in text
    args = "theory --prior aligned --sigma2 0.01 --n 100 --json --out".split()
    fin = json.loads(_run(*args, str(tmp_path / "b")))["finite"]
    assert (fin["n"], fin["d"]) == (100, 200)
    assert (fin["prior"], fin["gamma"], fin["r2"], fin["sigma2"]) == ("aligned", 2.0, 1.0, 0.01)
    # d > n: the min-norm fit interpolates; Bayes beats the best ridge, which beats min-norm;
    # Theorem 2 brackets the Bayes training error
    assert fin["minnorm_train"] == 0.0
    assert fin["bayes_risk"] <= fin["ridge_opt_risk"] <= fin["minnorm_risk"]
    assert fin["train_bayes_lower"] <= fin["train_bayes"] <= fin["train_bayes_upper"]
    # below the memorization threshold 1/J the regime is "memorization necessary"
    assert fin["threshold_memorization"] == pytest.approx(1 / fin["J"], rel=1e-12)
    assert 0.01 < fin["threshold_memorization"] and fin["regime"] == "memorization necessary"


def test_diagnose_cli_verdict(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((100, 200))
    y = X @ (rng.standard_normal(200) / np.sqrt(200)) + 2.0 * rng.standard_normal(100)
    np.save(tmp_path / "X.npy", X)
    np.savetxt(tmp_path / "y.csv", y, delimiter=",")
    res = json.loads(
        _run(
            "diagnose",
            "--X",
            str(tmp_path / "X.npy"),
            "--y",
            str(tmp_path / "y.csv"),
            "--json",
            "--out",
            str(tmp_path / "d"),
        )  # fmt: skip
    )
    assert res["lambda_opt"] > 0 and res["verdict"] == "regularize"
    assert set(res["answers"]) == {"signal_to_noise", "prior_alignment", "overparameterization"}
    assert (tmp_path / "d" / "manifest.json").exists() and (
        tmp_path / "d" / "loo_curve.png"
    ).exists()


def test_bad_input_one_line_exit_2_nothing_written(tmp_path):
    np.save(tmp_path / "X5.npy", np.zeros((5, 3)))
    np.save(tmp_path / "y.npy", np.zeros(100))
    r = subprocess.run(
        [sys.executable, "-m", "memlens.cli", "prior", "diagnose", "--X", str(tmp_path / "X5.npy"),
         "--y", str(tmp_path / "y.npy"), "--out", str(tmp_path / "bad")],  # fmt: skip
        capture_output=True, text=True, env=ENV, timeout=120,
    )  # fmt: skip
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "5 rows but y has 100" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()
    with pytest.raises(Exception, match="unknown prior"):
        CliRunner().invoke(app, ["prior", "theory", "--prior", "gaussian", "--out",
                                 str(tmp_path / "b2")], catch_exceptions=False)  # fmt: skip
    assert not (tmp_path / "b2").exists()


def test_exact_column_caps_n_as_well_as_d(tmp_path):
    # gamma 0.01 with n = 400,000 gives d = 4,000 (within the cap on d), but the exact check builds
    # an n x n matrix: 1.3 TB. It is refused at once, before anything is written.
    from memlens.errors import UserError

    res = CliRunner().invoke(
        app,
        ["prior", "theory", "--gamma", "0.01", "--n", "400000", "--out", str(tmp_path / "o")],
    )
    assert isinstance(res.exception, UserError), res.output
    assert "needs n <= 4000 and 1 <= d <= 4000" in str(res.exception)
    assert not (tmp_path / "o").exists()
