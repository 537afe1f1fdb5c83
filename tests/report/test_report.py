"""The HTML report: every plot embedded, nothing loaded from the network, any run type.

The capacity run is real (the smoke preset with a short step budget); the other runs are a
prior-theory run, a laws fit-mia run and a hand-made run of a kind memlens does not know.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from memlens.errors import UserError
from memlens.report import build_report, load_run, write_report
from memlens.report.headline import generic_headline, get
from memlens.report.html import fmt
from memlens.store import RunDir

MEMLENS = [sys.executable, "-m", "memlens.cli"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*MEMLENS, *args], capture_output=True, text=True, timeout=300, env=ENV)


@pytest.fixture(scope="module")
def capacity_run(tmp_path_factory) -> Path:
    from memlens import capacity as cap

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is fastest on a shared 2-core machine
    try:
        out = tmp_path_factory.mktemp("cap") / "smoke"
        cap.run(cap.load_config("smoke", max_steps=40), out, workers=1)
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.fixture(scope="module")
def prior_run(tmp_path_factory) -> Path:
    from memlens.prior.recipe import TheoryConfig, run

    out = run(TheoryConfig(), tmp_path_factory.mktemp("prior") / "theory").out_dir
    return Path(out)


@pytest.fixture(scope="module")
def laws_run(tmp_path_factory) -> Path:
    """What ``memlens laws fit-mia`` writes, on the published validation rows (Concepts §2 (docs/concepts.md))."""
    from memlens.laws import fit_mia_table, plot_mia_fit

    base = tmp_path_factory.mktemp("laws")
    rows = [
        (1_556_075_200, 170_654_583, 0.546), (1_556_075_200, 76_795_021, 0.711),
        (1_556_075_200, 18_851_574, 0.959), (123_702_528, 13_566_442, 0.534),
        (123_702_528, 6_104_935, 0.657), (123_702_528, 1_498_634, 0.980),
    ]  # fmt: skip
    pd.DataFrame(rows, columns=["params", "n_sequences", "f1"]).to_csv(
        base / "obs.csv", index=False
    )
    result = fit_mia_table(base / "obs.csv", alpha=3.64)
    rd = RunDir(base / "fit", "laws-fit-mia", {"file": str(base / "obs.csv"), "alpha": 3.64}, None)
    rd.write_json("fit_mia.json", result)
    rd.write_table("predictions.csv", pd.DataFrame(result["predictions"]))
    rd.save_figure("fit_mia.png", plot_mia_fit(result, title="MIA law fit"))
    rd.write_manifest()
    return rd.path


def _png(path: Path, color: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1, 2], [0, 1, 0], color=color)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    plt.close(fig)
    return path.read_bytes()


@pytest.fixture(scope="module")
def odd_run(tmp_path_factory) -> Path:
    """A run of an unknown kind with nested plots, every table format, hostile text and junk."""
    out = tmp_path_factory.mktemp("odd") / "odd-run"
    evil = '<script>fetch("https://evil.example/x")</script><img src="http://evil.example/i.png">'
    rd = RunDir(out, "future-kind", {"note": evil, "nested": {"depth": 3, "lr": 1e-3}}, 7)
    rd.write_json("future-kind.json", {"score": 0.125, "n": 12, "label": evil, "curve": [1, 2]})
    rd.write_json("extra.json", {"more": True})
    rd.write_table("rows.csv", pd.DataFrame({"text": [evil, "b"], "x": [1.5, float("nan")]}))
    rd.write_table("rows.parquet", pd.DataFrame({"id": np.arange(50), "v": np.arange(50) / 7}))
    (out / "items.jsonl").write_text('{"a": 1, "b": [1, 2]}\n{"a": 2}\n\n')
    (out / "broken.json").write_text("{not json")
    (out / "empty.csv").write_text("")
    (out / "fake.png").write_text("not a png")
    _png(out / "plots" / "nested.png", "tab:green")
    _png(out / "top.png", "tab:red")
    (out / "cells").mkdir(exist_ok=True)
    _png(out / "cells" / "ignored.png", "black")  # finished-cell storage is not a result
    rd.write_manifest(status="finished")
    return out


class Refs(HTMLParser):
    """Every URL-bearing attribute, every tag name and the text of <style> blocks."""

    URL_ATTRS = {"src", "href", "srcset", "action", "formaction", "poster", "data", "background"}

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str, str]] = []
        self.tags: list[str] = []
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self._in_style = tag == "style"
        for k, v in attrs:
            if k in self.URL_ATTRS or k.startswith("on"):
                self.urls.append((tag, k, v or ""))

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.styles.append(data)


def parse(html_text: str) -> Refs:
    p = Refs()
    p.feed(html_text)
    p.close()
    return p


def assert_loads_nothing(html_text: str) -> Refs:
    p = parse(html_text)
    for tag, attr, value in p.urls:
        v = value.strip().lower()
        assert not v.startswith(("http:", "https:", "//", "ftp:", "file:")), (tag, attr, value)
        assert not attr.startswith("on"), (tag, attr)  # no inline event handlers
        if attr == "src":
            assert tag == "img" and v.startswith("data:image/png;base64,"), (tag, value[:40])
        else:
            assert v.startswith("#") or v.startswith("data:"), (tag, attr, value[:60])
    assert not {"script", "link", "iframe", "object", "embed", "base"} & set(p.tags)
    css = " ".join(p.styles)
    assert "url(" not in css and "@import" not in css
    # and the browser is told to refuse any load that might slip in
    assert re.search(r"Content-Security-Policy\" content=\"default-src 'none'", html_text)
    return p


def embedded_pngs(p: Refs) -> list[bytes]:
    prefix = "data:image/png;base64,"
    return [base64.b64decode(v[len(prefix) :]) for t, a, v in p.urls if a == "src"]


def test_capacity_report_embeds_every_plot_and_loads_nothing(capacity_run, tmp_path):
    out = tmp_path / "report.html"
    r = run_cli("report", str(capacity_run), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "2 plots embedded" in r.stdout
    page = out.read_text(encoding="utf-8")
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # shareable, not mkstemp's 0600
    p = assert_loads_nothing(page)
    # every PNG of the run is in the page, byte for byte
    want = sorted(f.read_bytes() for f in capacity_run.glob("*.png"))
    assert len(want) == 2 and sorted(embedded_pngs(p)) == want
    # headline numbers come from capacity.json, config and provenance from the manifest
    result = json.loads((capacity_run / "capacity.json").read_text())
    manifest = json.loads((capacity_run / "manifest.json").read_text())
    alpha = fmt(result["alpha_bits_per_param"])
    assert re.search(rf"α \(bits/param\)</th><td class=\"num\">{re.escape(alpha)}</td>", page)
    for m in result["models"]:
        assert f'<td class="num">{m["params"]:,}</td>' in page
    assert 'train.max_steps</th><td class="num">40</td>' in page
    assert 'vocab_size</th><td class="num">64</td>' in page
    assert str(manifest["git_revision"]) in page and "versions.torch" in page
    for table in ("runs.csv", "curves.csv"):
        n = len(pd.read_csv(capacity_run / table))
        assert f"<h3>{table}</h3>" in page and f"{n:,} rows" in page


def test_several_run_types_side_by_side(capacity_run, prior_run, laws_run, odd_run, tmp_path):
    runs = [capacity_run, prior_run, laws_run, odd_run]
    info = write_report(runs, tmp_path / "all.html", title="four runs")
    page = info.path.read_text(encoding="utf-8")
    p = assert_loads_nothing(page)
    pngs = [
        f for r in runs for f in r.rglob("*.png") if "cells" not in f.parts and f.name != "fake.png"
    ]
    assert info.n_plots == len(pngs) == 2 + 2 + 1 + 2
    assert sorted(embedded_pngs(p)) == sorted(f.read_bytes() for f in pngs)
    assert info.n_bytes == len(page.encode()) and info.n_runs == 4
    # one column per run in every section, and a comparison table with a column per run
    assert page.count('style="--n:4"') == 6
    compare = page.split("<h2>Side by side</h2>")[1].split("</table>")[0]
    assert compare.count("<th>") - 1 >= 4 and "future-kind: odd-run" in compare
    # per-kind headline numbers
    theory = json.loads((prior_run / "theory.json").read_text())
    assert f"<th>regime</th><td>{theory['limit']['regime']}</td>" in page
    fit = json.loads((laws_run / "fit_mia.json").read_text())
    assert f'<th>fitted c3</th><td class="num">{fmt(fit["constants"]["c3"])}</td>' in page
    # the unknown kind: generic headline, tables of every format, notes instead of crashes
    assert '<th>score</th><td class="num">0.125</td>' in page
    assert 'rows.parquet</h3><p class="muted">50 rows × 2 columns; first 20 shown' in page
    assert 'items.jsonl</h3><p class="muted">2 rows × 2 columns' in page
    assert "broken.json could not be read" in page and "fake.png is not a readable PNG" in page
    assert 'empty.csv</h3><p class="note">could not be read' in page
    # hostile text is shown as text, never as markup
    assert "<script" not in page and 'src="http' not in page
    assert "&lt;script&gt;fetch(" in page


def test_load_run_generic_layout(odd_run):
    run = load_run(odd_run, max_rows=5)
    assert run.kind == "future-kind" and run.main_name == "future-kind.json"
    assert run.main["n"] == 12 and set(run.jsons) == {"extra.json"}
    assert [str(p) for p in run.plots] == ["fake.png", "top.png", "plots/nested.png"]
    tables = {t.name: t for t in run.tables}
    assert set(tables) == {"rows.csv", "rows.parquet", "items.jsonl", "empty.csv"}
    assert tables["rows.parquet"].n_rows == 50 and len(tables["rows.parquet"].rows) == 5
    assert tables["rows.csv"].rows[1] == ["b", None]  # NaN shown as missing
    assert tables["items.jsonl"].rows == [[1, "[1, 2]"], [2, None]]
    assert "plots/" in run.other_files and "cells" not in " ".join(run.other_files)


def test_headline_helpers_known_answers():
    obj = {"a": {"b": [10, {"c": 3}]}, "s": "x" * 81, "t": "ok", "n": None, "f": 0.5}
    assert get(obj, "a.b.1.c") == 3 and get(obj, "a.z", "none") == "none"
    assert generic_headline(obj) == [("t", "ok"), ("n", None), ("f", 0.5)]
    assert [fmt(v) for v in (None, True, 1234567, 7851.59, 0.0256894, 3.0, float("nan"))] == [
        "—", "yes", "1,234,567", "7,852", "0.02569", "3", "nan"
    ]  # fmt: skip
    assert fmt("<b>") == "&lt;b&gt;"


def test_run_without_result_json_shows_manifest_fields(tmp_path):
    from memlens.report import headline

    rd = RunDir(tmp_path / "bare", "puzzles-make", {"puzzle": "hanoi"}, None)
    (rd.path / "prompts.jsonl").write_text('{"prompt": "move the disks"}\n')
    rd.write_manifest(n_items=1, status="done")
    run = load_run(rd.path)
    assert run.main is None and [t.name for t in run.tables] == ["prompts.jsonl"]
    assert headline(run) == ([("n_items", 1), ("status", "done")], [])


def test_a_run_missing_its_result_file_says_so(capacity_run, tmp_path):
    # a finished manifest without capacity.json showed the manifest's fields and nothing else
    import shutil

    half = tmp_path / "half"
    shutil.copytree(capacity_run, half)
    (half / "capacity.json").unlink()
    assert any(
        "capacity.json is missing, so this run has no results" in n for n in load_run(half).notes
    )
    manifest = json.loads((half / "manifest.json").read_text())
    (half / "manifest.json").write_text(json.dumps({**manifest, "status": "running"}))
    assert "capacity.json is missing: the run is still running or was interrupted" in (
        load_run(half).notes
    )
    assert not any("is missing" in n for n in load_run(capacity_run).notes)


def test_bad_input_one_sentence_exit_2(capacity_run, tmp_path):
    no_manifest = tmp_path / "plain"
    no_manifest.mkdir()
    bad_manifest = tmp_path / "bad"
    bad_manifest.mkdir()
    (bad_manifest / "manifest.json").write_text("{oops")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cases = [
        ([str(tmp_path / "missing")], "does not exist"),
        ([str(no_manifest)], "no manifest.json"),
        ([str(bad_manifest)], "cannot read"),
        ([str(blocker)], "not a directory"),
    ]
    for dirs, needle in cases:
        out = tmp_path / "r.html"
        r = run_cli("report", *dirs, "--out", str(out))
        assert r.returncode == 2, (dirs, r.stderr)
        assert needle in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        assert not out.exists()
    for out, needle in ((blocker / "sub" / "r.html", "cannot write"), (tmp_path, "directory")):
        with pytest.raises(UserError, match=needle):
            write_report([capacity_run], out)
    with pytest.raises(UserError, match="at least one"):
        build_report([])
    r = run_cli("report", str(capacity_run), "--out", str(blocker / "r.html"))
    assert r.returncode == 2 and "cannot write the report" in r.stderr
