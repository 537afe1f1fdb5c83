"""memlens laws fit-mia: the MIA scaling law fitted by least squares (Concepts §2 (docs/concepts.md))."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from memlens import laws
from memlens.cli import app
from memlens.errors import UserError

runner = CliRunner()

OBSERVED = [(r["params"], r["n_sequences"], r["observed_f1"]) for r in laws.PUBLISHED_VALIDATION]


def _csv(path, rows, header="params,n_sequences,f1") -> str:
    path.write_text(header + "\n" + "\n".join(",".join(str(v) for v in r) for r in rows) + "\n")
    return str(path)


def test_fit_mia_reproduces_the_published_observed_values(tmp_path):
    # Rows in a scrambled order: predictions must come back in input order.
    order = [4, 0, 5, 2, 1, 3]
    rows = [OBSERVED[i] for i in order]
    res = runner.invoke(app, ["laws", "fit-mia", _csv(tmp_path / "obs.csv", rows), "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert set(d["constants"]) == {"c1", "c2", "c3"}
    preds = d["predictions"]
    assert [p["n_sequences"] for p in preds] == [r[1] for r in rows]
    for p, (_, _, f1) in zip(preds, rows, strict=True):
        assert p["f1"] == f1
        assert abs(p["fitted_f1"] - f1) < 0.05
    # The least-squares answer, found apart from the library: with c1 at its bound 2, Nelder-Mead
    # (scipy.optimize.minimize) over (c2, c3) of the sum of squared residuals gives c2 = 0.29830,
    # c3 = 129.023 and SSR = 0.0021730. That is far below the corrected published constants'
    # (1.3405, 1.1159, 120.61) SSR on these rows, 0.011423 = .004^2 + .039^2 + .009^2 + .016^2
    # + .093^2 + .030^2 (they reproduce the target F1s to 1e-5, so their residuals are
    # observed - target).
    assert d["constants"]["c2"] == pytest.approx(0.29830, abs=1e-4)
    assert d["constants"]["c3"] == pytest.approx(129.023, rel=1e-5)
    ssr_fit = sum((p["fitted_f1"] - p["f1"]) ** 2 for p in preds)
    assert ssr_fit == pytest.approx(0.0021730, rel=1e-4)
    published = laws.mia_f1(
        np.array([r[1] for r in rows]), 3.64 * np.array([r[0] for r in rows], dtype=float)
    )
    ssr_published = float(((published - np.array([r[2] for r in rows])) ** 2).sum())
    assert ssr_published == pytest.approx(0.011423, abs=5e-6)
    # The six observed values sit at only 3 distinct |D|/C, so the ceiling constant c1 is not
    # identifiable: it runs to its upper bound (2, formulas.FIT_BOUNDS) and the
    # fit says so rather than report a confident interval.
    assert d["at_bound"] == {"c1": True, "c2": False, "c3": False}
    assert d["constants"]["c1"] == pytest.approx(2.0)
    assert d["warnings"][0].startswith("c1 stopped at its bound")


def test_fit_recovers_known_constants_from_noiseless_data():
    true = laws.MiaLawConstants(1.2, 0.8, 30.0)
    x = np.geomspace(1e-3, 0.3, 12)
    cap = np.full_like(x, 1e6)
    f1 = laws.mia_f1(x * cap, cap, true)
    fit = laws.fit_mia_law(cap, x * cap, f1)
    assert fit.constants.c1 == pytest.approx(1.2, rel=1e-4)
    assert fit.constants.c2 == pytest.approx(0.8, abs=1e-4)
    assert fit.constants.c3 == pytest.approx(30.0, rel=1e-4)
    assert fit.max_abs_residual < 1e-6


def test_confidence_intervals_match_the_linearized_theory():
    # Known answer for the Wald interval: with seeded Gaussian noise of sd 0.01 on 40 rows the
    # standard errors match the delta-method values sigma * sqrt(diag((J^T J)^-1)) at the truth
    # (to ~25%, the sampling error of s), and the intervals cover the true constants.
    rng = np.random.default_rng(0)
    true = laws.MiaLawConstants(1.0, 1.0, 20.0)
    x = np.repeat(np.geomspace(2e-3, 0.4, 10), 4)
    cap = np.full_like(x, 1e5)
    f1 = laws.mia_f1(x * cap, cap, true) + rng.normal(0, 0.01, x.size)
    fit = laws.fit_mia_law(cap, x * cap, f1)
    s = 1 / (1 + np.exp(-(1.0 - 20.0 * x)))
    J = np.stack([0.5 * s, 0.5 * s * (1 - s), -0.5 * s * (1 - s) * x], axis=1)
    se_theory = 0.01 * np.sqrt(np.diag(np.linalg.inv(J.T @ J)))
    for i, k in enumerate(("c1", "c2", "c3")):
        assert fit.se[k] == pytest.approx(se_theory[i], rel=0.25)
        lo, hi = fit.ci[k]
        assert lo < getattr(true, k) < hi


def test_fit_mia_accepts_capacity_bits_and_writes_a_run_dir(tmp_path):
    rows = [(3.64 * p, n, f) for p, n, f in OBSERVED]
    path = _csv(tmp_path / "cap.csv", rows, header="capacity_bits,n_sequences,f1")
    out = tmp_path / "run"
    res = runner.invoke(app, ["laws", "fit-mia", path, "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "c3" in res.output
    for name in ("manifest.json", "fit_mia.json", "predictions.csv", "fit_mia.png"):
        assert (out / name).exists()
    saved = json.loads((out / "fit_mia.json").read_text())
    assert saved["capacity_source"] == "capacity_bits column"
    assert json.loads((out / "manifest.json").read_text())["kind"] == "laws-fit-mia"


@pytest.mark.parametrize(
    ("header", "rows", "match"),
    [
        ("params,n_sequences", [(1e6, 10)] * 5, "missing column"),
        ("n_sequences,f1", [(10, 0.9)] * 5, "params"),
        ("params,n_sequences,f1", OBSERVED[:3], "at least 4 rows"),
        (
            "params,n_sequences,f1",
            [(1e6, 10, 0.9), (1e6, 20, 0.8), (1e6, 10, 0.9), (1e6, 20, 0.8)],
            "distinct",
        ),
        ("params,n_sequences,f1", [(1e6, -10, 0.9)] + list(OBSERVED[1:]), "positive"),
        ("params,n_sequences,f1", [(1e6, 10, 1.9)] + list(OBSERVED[1:]), "between 0 and 1"),
        ("params,n_sequences,f1", [(1e6, "x", 0.9)] + list(OBSERVED[1:]), "non-numeric"),
        # the message names the file's own column and row, not the derived capacity
        (
            "params,n_sequences,f1",
            list(OBSERVED[:2]) + [("inf", 10, 0.9)] + list(OBSERVED[3:]),
            "column params has a missing or non-numeric value in row 2 ('inf')",
        ),
        (
            "params,n_sequences,f1",
            list(OBSERVED[:4]) + [(1e6, 10, "")] + list(OBSERVED[5:]),
            "column f1 has a missing or non-numeric value in row 4",
        ),
    ],
)
def test_fit_mia_bad_input(tmp_path, header, rows, match):
    res = runner.invoke(
        app,
        ["laws", "fit-mia", _csv(tmp_path / "t.csv", rows, header), "--out", str(tmp_path / "o")],
    )
    assert isinstance(res.exception, UserError), res.output
    assert match in str(res.exception)
    assert not (tmp_path / "o").exists()  # nothing half-written


def test_fit_mia_reads_csv_jsonl_and_parquet_alike(tmp_path):
    # one table reader for every table memlens reads (memlens.data.tables.read_table)
    import json

    import pandas as pd

    rows = [dict(zip(("params", "n_sequences", "f1"), r, strict=True)) for r in OBSERVED]
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pd.DataFrame(rows).to_parquet(tmp_path / "t.parquet")
    fits = [
        laws.fit_mia_table(p)["constants"]
        for p in (_csv(tmp_path / "t.csv", OBSERVED), tmp_path / "t.jsonl", tmp_path / "t.parquet")
    ]
    assert fits[0] == fits[1] == fits[2]
    with pytest.raises(UserError, match=r"unsupported suffix '\.tsv'"):
        laws.fit_mia_table(_csv(tmp_path / "t.tsv", OBSERVED))


def test_fit_mia_missing_file(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        laws.fit_mia_table(tmp_path / "nope.csv")


def test_fit_mia_warns_when_f1_rises_with_the_dataset():
    # F1 rising with |D|/Capacity (swapped columns, a reversed score) cannot follow the law (c3 >= 0
    # makes it fall); the fit only flattens it, and the one warning was "rows with smaller and
    # larger n_sequences/capacity would help", which is not the problem
    n = [1, 10, 30, 60, 100]
    rising = laws.fit_mia_law([1000.0] * 5, n, [0.5, 0.6, 0.8, 0.95, 0.99])
    assert any("F1 rises with n_sequences/capacity (Spearman correlation +1.00)" in w
               for w in rising.warnings)  # fmt: skip
    falling = laws.fit_mia_law([1000.0] * 5, n, [0.99, 0.95, 0.8, 0.6, 0.5])
    assert not any("rises" in w for w in falling.warnings)
    cap = [3.64 * p for p, _, _ in OBSERVED]
    published = laws.fit_mia_law(cap, [d for _, d, _ in OBSERVED], [f for _, _, f in OBSERVED])
    assert not any("rises" in w for w in published.warnings)
