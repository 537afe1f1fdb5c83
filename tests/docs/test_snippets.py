"""The Python snippets of the pages run, as a notebook user would run them.

``test_commands.py`` checks that every ``memlens`` name a snippet uses exists; here the cheap
snippets are executed. Every ``python`` block of README.md and docs/*.md must be listed below,
keyed by ``(page, first line of the block)``: in :data:`RUN` (executed) or in :data:`NAME_ONLY`
(checked by name only, with the reason). A new block that is in neither fails
:func:`test_every_snippet_is_listed`, so the pages cannot grow an unrun snippet unnoticed.

How a snippet runs (:func:`run_snippet`): in a fresh directory of its own (the page's relative
paths land there), as the ``__main__`` module, after

* ``setup(ctx)`` wrote the tiny inputs the page assumes (a random 1-layer GPT-2 for "the
  fine-tuned model", a few toy-language sentences for "train.txt", the run directories a report
  reads) and returned the names the snippet uses without defining them (``X``, ``hf_model``);
* ``swap``: exact text substitutions that shrink a run (``seed=1)`` -> ``seed=1, max_steps=20)``)
  or cut pseudo-code lines. Each substitution must match the snippet, so a page edit that
  removes its target fails here instead of silently running something else.

Then ``check(ns, out)`` asserts on the snippet's names and printed output: the values a page
shows in comments (``# 0.95, 3.33, 'generalization'``) are checked where the snippet runs
unchanged; the typed results have the attributes the page uses.

Checked by name only (seconds are on an idle 2-core machine; each was run by hand with tiny
substitutes while writing this test):

* capacity.md: ``capacity.run(load_config("smoke"))`` trains in worker processes (45 s);
* privacy.md: ``privacy.run(DPAuditConfig(dp_epsilons=(None, 1.0, 8.0)))``, three trainings and
  two accountants (30 s even with 200 rows and 40 canaries);
* real-models.md: fetches SmolLM2-135M (a 270 MB download) and scores with it;
* shadow.md: trains 16 shadow models (6 tiny ones still take 20-30 s);
* sinks.md, the ``run`` snippet: three arms in worker processes, then localization (30 s).
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import helpers_hf as H
from helpers_docs import code_blocks

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file())

pytestmark = pytest.mark.usefixtures("one_thread")


def python_blocks(text: str) -> list[str]:
    """The code of every ``python`` fenced block of ``text``, in order."""
    return [code + "\n" for code in code_blocks(text, ("python", "py"))]


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def snippets() -> dict[tuple[str, str], str]:
    """``(page, first line) -> code`` for every python block of the pages."""
    found: dict[tuple[str, str], str] = {}
    for page in pages():
        for code in python_blocks(page.read_text(encoding="utf-8")):
            first = next(line for line in code.splitlines() if line.strip())
            found[(page.name, first.strip())] = code
    return found


# -- the tiny inputs ----------------------------------------------------------------------------


class Ctx:
    """What a setup needs: the snippet's directory and tiny saved models, built once."""

    def __init__(self, cwd: Path, cache: Path) -> None:
        self.cwd, self.cache = cwd, cache

    def lm(self, name: str, seed: int = 0, n_layer: int = 1, n_embd: int = 32) -> Path:
        """A random GPT-2 with the toy language's word tokenizer (context 64) at ``cwd/name``."""
        key = self.cache / f"gpt2-{seed}-{n_layer}-{n_embd}"
        if not key.exists():
            tok = H.wordlevel_tokenizer()
            H.save_lm(H.tiny_gpt2(len(tok), n_layer=n_layer, n_embd=n_embd, seed=seed), tok, key)
        dest = self.cwd / name
        shutil.copytree(key, dest)
        return dest

    def sentences(self, name: str, n: int, seed: int, jsonl: bool = False) -> list[str]:
        texts = H.make_sentences(n, seed=seed)
        (H.write_jsonl if jsonl else H.write_lines)(self.cwd / name, texts)
        return texts


@dataclass
class Run:
    """How one snippet runs: see the module docstring."""

    setup: Callable[[Ctx], dict[str, Any]] = lambda ctx: {}
    swap: dict[str, str] = field(default_factory=dict)
    check: Callable[[dict[str, Any], str], None] = lambda ns, out: None


def _audit_models(ctx: Ctx, target: str, reference: str) -> dict[str, Any]:
    ctx.lm(target, seed=0)
    ctx.lm(reference, seed=1)
    ctx.sentences("train.txt", 12, seed=1)
    ctx.sentences("held.txt", 12, seed=2)
    return {}


def _check_audit(ns: dict[str, Any], out: str) -> None:
    res = ns["res"]
    assert res.out_dir is not None and (res.out_dir / "audit.json").is_file()
    assert json.loads((res.out_dir / "audit.json").read_text())["train"]["n"] == 12
    assert len(res.samples) == 24 and "unintended_bits" in res.samples.columns
    assert res.summary.first_token == "model"  # both tiny models' tokenizers start texts with BOS


def _check_readme_audit(ns: dict[str, Any], out: str) -> None:
    _check_audit(ns, out)
    s = ns["res"].summary
    assert out.split() == [str(s.train.mean_unintended_bits), str(s.extraction_rate_difference)]


def _mia_inputs(ctx: Ctx) -> dict[str, Any]:
    ctx.lm("runs/ft", seed=0)
    ctx.lm("runs/base", seed=1)
    ctx.sentences("train.jsonl", 12, seed=1, jsonl=True)
    ctx.sentences("heldout.jsonl", 12, seed=2, jsonl=True)
    return {}


def _check_mia(ns: dict[str, Any], out: str) -> None:
    result, loss = ns["result"], ns["loss"]
    assert (result.out_dir / "mia.json").is_file() and (result.out_dir / "scores.parquet").is_file()
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    table = pd.read_parquet(result.out_dir / "scores.parquet")
    assert loss.auc == pytest.approx(roc_auc_score(table["label"], table["loss"]), abs=1e-12)
    assert loss.auc_ci[0] <= loss.auc <= loss.auc_ci[1]
    assert str(loss.auc) in out and {"loss", "ref"} <= set(result.summary.attacks)


def _laws_data(ctx: Ctx) -> dict[str, Any]:
    from memlens import laws

    cap = [1e4, 1e4, 1e4, 1e5, 1e5, 1e5]
    n = [10, 100, 300, 100, 1000, 3000]
    f1 = [float(laws.mia_f1(k, c)) for c, k in zip(cap, n, strict=True)]  # the law's own F1
    return {"capacity_bits": cap, "n_sequences": n, "f1": f1}


def _check_laws(ns: dict[str, Any], out: str) -> None:
    from memlens import laws

    rep = ns["rep"]
    # the comment of the page: 0.95, 3.33, 'generalization'
    assert (round(rep.predicted_mia_f1, 2), round(rep.capacity_ratio, 2)) == (0.95, 3.33)
    assert rep.regime == "generalization"
    assert ns["fit"].constants.c3 == pytest.approx(laws.CORRECTED.c3, rel=1e-3)  # recovered
    assert callable(ns["run_mia_experiment"])


def _prior_xy(ctx: Ctx) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 80))
    return {"X": X, "y": X @ (rng.standard_normal(80) / 10) + 0.1 * rng.standard_normal(40)}


def _check_prior(ns: dict[str, Any], out: str) -> None:
    from memlens.prior import make_population, theory

    lam = theory(make_population("aligned"), gamma=2.0, sigma2=0.01)["lambda_opt"]
    assert round(lam, 4) == -0.0297  # the comment of the page
    res = ns["res"]
    assert res.verdict in ("memorize", "regularize", "either") and set(res.answers) == {
        "signal_to_noise",
        "prior_alignment",
        "overparameterization",
    }


def _puzzle_prompts(ctx: Ctx) -> dict[str, Any]:
    """The two prompt files of the page's console session (``memlens puzzles make ...``)."""
    from memlens.puzzles.recipe import MakeConfig, run

    run(MakeConfig(puzzle="hanoi", sizes="6-15"), ctx.cwd / "prompts-hanoi")
    run(MakeConfig(puzzle="river", k=3, sizes="3-8"), ctx.cwd / "prompts-river")
    return {}


def _check_simulate(ns: dict[str, Any], out: str) -> None:
    from memlens.puzzles.recipe import EvalConfig, run

    graded = run(EvalConfig(responses="responses.jsonl"), "eval-demo").summary
    # the page's `memlens puzzles eval` output: 16 items, accuracy 0.812, 3 truncated
    assert (graded.items, round(graded.accuracy, 3)) == (16, 0.812)
    assert graded.categories["truncated"] == 3 and graded.accuracy_within_budget == 1.0


def _check_puzzles_api(ns: dict[str, Any], out: str) -> None:
    # the comments of the page
    assert ns["puzzle"].solve().optimal_length == 11
    assert (ns["verdict"].category, ns["verdict"].reason) == (
        "incomplete",
        "all 2 moves are legal but the puzzle is not solved",
    )
    assert (ns["made"].summary.n_items, ns["made"].summary.prompts) == (
        8,
        "prompts-hanoi/prompts.jsonl",
    )


def _report_runs(ctx: Ctx) -> dict[str, Any]:
    """Two cheap real run directories for the report (the page's are a capacity sweep and a
    laws experiment)."""
    from memlens.laws.size import SizeConfig
    from memlens.laws.size import run as run_size
    from memlens.prior.recipe import TheoryConfig
    from memlens.prior.recipe import run as run_prior

    run_size(SizeConfig(params=1e6, n_sequences=1e4, vocab_size=512), ctx.cwd / "runs" / "size")
    run_prior(TheoryConfig(), ctx.cwd / "runs" / "theory")
    return {}


def _check_report(ns: dict[str, Any], out: str) -> None:
    info, run = ns["info"], ns["run"]
    assert info.n_runs == 2 and Path("report.html").is_file() and info.n_bytes > 0
    assert run.kind == "laws-size" and run.main["params"] == 1e6


def _offload_model(ctx: Ctx) -> dict[str, Any]:
    # 8 layers of width 48: about 0.9 MB of float32 weights, more than the 700 KB of "CPU memory"
    ctx.lm("tiny-gpt2", seed=3, n_layer=8, n_embd=48)
    return {}


def _check_offload(ns: dict[str, Any], out: str) -> None:
    placement, whole, split = out.splitlines()
    assert "disk" in set(ns["split"].device_map.values()), placement
    assert whole == split  # the page's point: the split model scores like the whole one


def _sink_inputs(ctx: Ctx) -> dict[str, Any]:
    import torch

    return {
        "hf_model": H.tiny_gpt2(40),
        "input_ids": torch.randint(3, 40, (2, 12), generator=torch.Generator().manual_seed(0)),
    }


def _check_sinks(ns: dict[str, Any], out: str) -> None:
    import torch

    assert torch.isfinite(ns["loss"]) and ns["logits"].shape == (2, 12, 40)


def _tracked_loop(ctx: Ctx) -> dict[str, Any]:
    """The names the page's loop assumes: tracked rows, a model and one training step."""
    import torch

    rng = np.random.default_rng(0)
    V = 40
    rows = [rng.integers(3, V, 40) for _ in range(8)]
    model = H.tiny_gpt2(V)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    data = torch.tensor(np.stack(rows[:4]))

    def train_one_step(model):
        model.train()
        loss = model(input_ids=data, labels=data).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.eval()

    return {
        "rows": rows,
        "groups": ["repeated"] * 4 + ["heldout"] * 4,
        "ref_bits": np.full(8, 39 * np.log2(V)),
        "model": model,
        "n_steps": 10,
        "train_one_step": train_one_step,
    }


def _check_tracker(ns: dict[str, Any], out: str) -> None:
    summary = ns["summary"]
    assert set(summary["groups"]) == {"repeated", "heldout"}
    assert summary["final_step"] == 10 and Path("runs/dynamics/tracker.json").is_file()


def _check_grok(ns: dict[str, Any], out: str) -> None:
    s, result = ns["s"], ns["result"]
    written = json.loads((result.out_dir / "grok.json").read_text())
    # the printed fields are those of grok.json
    for name in ("step_train_acc_99", "step_test_acc_99", "memorization_gap_bits_peak"):
        assert getattr(s, name) == written[name]
    assert out.split()[0] == str(s.step_train_acc_99)


_TRACK_PSEUDO = (
    "train_to_saturation(model, data, sizes, cfg, ..., callbacks=[tracker.callback])   # 2. memlens\n"
    "Trainer(model=hf_model, args=args, train_dataset=ds, callbacks=[trainer_callback(tracker)])"
    "  # 3. HF\n"
)

RUN: dict[tuple[str, str], Run] = {
    ("README.md", "from memlens.audit import AuditConfig, run"): Run(
        setup=lambda ctx: _audit_models(ctx, "ft", "base"), check=_check_readme_audit
    ),
    ("audit.md", "from memlens.audit import AuditConfig, run"): Run(
        setup=lambda ctx: _audit_models(ctx, "target", "ref"), check=_check_audit
    ),
    ("laws.md", "from memlens import laws"): Run(setup=_laws_data, check=_check_laws),
    ("mia.md", "from memlens.mia.recipe import MIAConfig, run"): Run(
        setup=_mia_inputs, check=_check_mia
    ),
    ("prior.md", "import numpy as np"): Run(
        check=lambda ns, out: (
            [Path(f).is_file() for f in ("X_noisy.parquet", "y_noisy.csv")] == [True, True]
        )
    ),
    (
        "prior.md",
        "from memlens.prior import make_population, theory, RidgePath, diagnose, simulate, "
        "sparse_prior",
    ): Run(setup=_prior_xy, check=_check_prior),
    ("puzzles.md", "def hanoi(n, src, dst, via):"): Run(
        check=lambda ns, out: len(out.splitlines()) == 4095
    ),
    ("puzzles.md", "# simulate.py"): Run(setup=_puzzle_prompts, check=_check_simulate),
    ("puzzles.md", "from memlens.puzzles import make_instance"): Run(check=_check_puzzles_api),
    ("report.md", "from memlens.report import load_run, write_report"): Run(
        setup=_report_runs,
        swap={"runs/capacity-smoke": "runs/size", "runs/mia-law": "runs/theory"},
        check=_check_report,
    ),
    ("scale-out.md", "from memlens.models.hf import load_causal_lm"): Run(
        setup=_offload_model, check=_check_offload
    ),
    ("sinks.md", "from memlens.sinks import SinkConfig, SinkPatch, sequence_ids"): Run(
        setup=_sink_inputs, check=_check_sinks
    ),
    ("track.md", "from memlens.track import Tracker, TrackSet, trainer_callback"): Run(
        setup=_tracked_loop, swap={_TRACK_PSEUDO: ""}, check=_check_tracker
    ),
    ("track.md", "from memlens.track import GrokConfig, run_grok"): Run(
        swap={"seed=1)": "seed=1, max_steps=20)"}, check=_check_grok
    ),
}

NAME_ONLY: dict[tuple[str, str], str] = {
    ("capacity.md", "from memlens.capacity import load_config, run"): "worker processes, 45 s",
    ("privacy.md", "from memlens.privacy import DPAuditConfig, run"): "three trainings, 30 s",
    ("real-models.md", "from memlens.models.hf import load_causal_lm"): "a 270 MB download",
    ("shadow.md", "from memlens import shadow"): "16 shadow models",
    ("sinks.md", "from memlens.sinks import get_preset, run, with_overrides"): "worker processes",
}


def run_snippet(code: str, spec: Run, cwd: Path, cache: Path) -> tuple[dict[str, Any], str]:
    """Execute ``code`` (after ``spec.swap``) in ``cwd``; return its names and printed output."""
    for old, new in spec.swap.items():
        assert old in code, f"the substitution target {old!r} is no longer in the snippet"
        code = code.replace(old, new)
    cwd.mkdir(parents=True, exist_ok=True)
    with contextlib.chdir(cwd):
        ns: dict[str, Any] = {"__name__": "__main__", **spec.setup(Ctx(cwd, cache))}
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            exec(compile(code, "<snippet>", "exec"), ns)  # noqa: S102 - the docs' own code
        out = buf.getvalue()
        verdict = spec.check(ns, out)
        assert verdict is not False, f"the check failed on the output:\n{out[:2000]}"
    return ns, out


def test_every_snippet_is_listed():
    found = set(snippets())
    unlisted = sorted(found - set(RUN) - set(NAME_ONLY))
    assert not unlisted, f"python blocks neither run nor listed as name-only: {unlisted}"
    gone = sorted((set(RUN) | set(NAME_ONLY)) - found)
    assert not gone, f"listed blocks no page has any more (first line changed?): {gone}"


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@pytest.mark.parametrize("key", list(RUN), ids=lambda k: f"{k[0]}:{k[1][:40]}")
def test_snippet_runs(key, tmp_path, model_cache):
    code = snippets().get(key)
    if code is None:
        pytest.fail(f"{key[0]} has no python block starting {key[1]!r} any more")
    run_snippet(code, RUN[key], tmp_path / "nb", model_cache)


def test_a_substitution_that_no_longer_matches_fails(tmp_path):
    with pytest.raises(AssertionError, match="no longer in the snippet"):
        run_snippet("x = 1\n", Run(swap={"seed=1)": "seed=2)"}), tmp_path, tmp_path)
    with pytest.raises(AssertionError, match="the check failed"):
        run_snippet("print(2)\n", Run(check=lambda ns, out: out == "3\n"), tmp_path, tmp_path)
