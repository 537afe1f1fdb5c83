"""Tests of the training-dynamics tracker: schedules, closed-form scores, agreement with independent
implementations (plain cross-entropy, KV-cached greedy decoding), hand-computed analyses,
append-only storage with resume, and the quick preset end to end."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pandas as pd
import pytest
import torch

import memlens
from memlens.errors import UserError
from memlens.models.gpt import GPT, GPTConfig
from memlens.track import (
    Observations,
    QuickConfig,
    Schedule,
    Tracker,
    TrackSet,
    analyze,
    epoch_batch,
    first_true_step,
    forgetting_events,
    load_observations,
    run_quick,
)
from memlens.track.analysis import median_first_step_all

pytestmark = pytest.mark.usefixtures("one_thread")


# -- schedules ----------------------------------------------------------------------------------


def test_log_schedule_hand_values():
    # 10 ** (k / d) rounded: d = 1 -> 1, 10, 100, 1000; d = 2 -> 1, 3.16, 10, 31.6, 100
    assert Schedule.log(1).steps_until(1000) == [0, 1, 10, 100, 1000]
    assert Schedule.log(2).steps_until(100) == [0, 1, 3, 10, 32, 100]
    # d = 4: 1, 1.78, 3.16, 5.62, 10, 17.8, 31.6, 56.2, 100
    assert Schedule.log(4).steps_until(99) == [0, 1, 2, 3, 6, 10, 18, 32, 56]


def test_log_schedule_cost_is_bounded():
    steps = Schedule.log(12).steps_until(1_000_000)
    assert len(steps) <= 12 * 6 + 2 and steps == sorted(set(steps))
    # consecutive ratios never exceed one point per decade's factor (after the dense start)
    big = np.array([s for s in steps if s >= 100], dtype=float)
    assert np.all(big[1:] / big[:-1] <= 10 ** (1 / 12) + 0.01)


def test_schedule_due_and_other_kinds():
    s = Schedule.log(1)
    assert s.due(None, 0) and not s.due(1, 9) and s.due(1, 10) and s.due(1, 500)
    assert Schedule.every(5).steps_until(12) == [0, 5, 10]
    assert Schedule.at([7, 3, 3]).steps_until(100) == [3, 7]
    assert Schedule.at([3]).next_at_or_after(4) is None
    with pytest.raises(UserError):
        Schedule.every(0)


# -- closed-form scoring ------------------------------------------------------------------------


def zero_gpt(V: int, S: int) -> GPT:
    """All weights zero: every logit is 0, so predictions are uniform and the argmax is token 0."""
    m = GPT(GPTConfig(V, S, 1, 16))
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
    return m


def test_uniform_model_closed_form():
    V, S = 8, 10
    a = np.zeros(S, dtype=np.int64)  # every token is the argmax 0: greedy decoding reproduces it
    b = np.array([0, 1, 2, 3, 0, 0, 0, 5, 0, 6])  # suffix (positions 3..6): 3, 0, 0, 0
    c = np.zeros(6, dtype=np.int64)  # too short for prefix 3 + suffix 4
    ex = TrackSet(
        tokens=[a, b, c],
        groups=["repeated", "unique", "heldout"],
        reference_bits=[40.0, 20.0, 5.0],
        first_token_bits=3.0,  # log2 V
    )
    tr = Tracker(ex, schedule=Schedule.every(1), prefix=3, suffix=4)
    assert tr.observe(zero_gpt(V, S), 0)
    obs = tr.observations()
    # code length: first token log2 V plus (T - 1) uniform tokens at log2 V = 3 bits each
    np.testing.assert_allclose(obs.code_bits[:, 0], [3 + 9 * 3, 3 + 9 * 3, 3 + 5 * 3], atol=1e-9)
    np.testing.assert_allclose(obs.unintended_bits[:, 0], [10.0, 0.0, 0.0], atol=1e-9)
    assert obs.extracted[:, 0].tolist() == [True, False, False]
    np.testing.assert_allclose(obs.suffix_top1[:2, 0], [1.0, 0.75])
    assert np.isnan(obs.suffix_top1[2, 0])
    assert tr.eligible.tolist() == [True, True, False]


def test_observe_respects_schedule_and_never_repeats_a_step():
    ex = TrackSet(tokens=[np.zeros(6, np.int64)], groups=["unique"], reference_bits=[np.nan])
    tr = Tracker(ex, schedule=Schedule.log(1), prefix=2, suffix=2)
    m = zero_gpt(4, 6)
    recorded = [s for s in range(0, 120) if tr.observe(m, s)]
    assert recorded == [0, 1, 10, 100]
    assert not tr.observe(m, 100, force=True)  # a step already recorded
    assert tr.observe(m, 101, force=True)
    # sparse calls record at the first call at or after a scheduled step
    tr2 = Tracker(ex, schedule=Schedule.log(1), prefix=2, suffix=2)
    assert [s for s in (0, 5, 7, 30, 40, 150) if tr2.observe(m, s)] == [0, 5, 30, 150]


# -- agreement with independent implementations -------------------------------------------------


def test_tracker_matches_cross_entropy_and_kv_cached_greedy_decoding():
    from memlens.scoring.extraction import greedy_continue

    V, S, prefix, suffix = 16, 12, 4, 6
    g = torch.Generator().manual_seed(0)
    train = torch.randint(0, V, (8, S), generator=g)
    held = torch.randint(0, V, (6, S), generator=g)
    tokens = torch.cat([train, held])
    ex = TrackSet(
        tokens=list(tokens.numpy()),
        groups=["unique"] * 8 + ["heldout"] * 6,
        reference_bits=np.full(14, S * math.log2(V)),
        first_token_bits=math.log2(V),
    )
    model = GPT(GPTConfig(V, S, 1, 32), generator=torch.Generator().manual_seed(1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    tr = Tracker(ex, schedule=Schedule.every(40), prefix=prefix, suffix=suffix)
    checked = []
    for step in range(0, 161):
        if step:
            logits = model(train[None, :, :-1])[0]
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, V), train[:, 1:].reshape(-1)
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
        if tr.observe(model, step):
            obs = tr.observations()
            with torch.no_grad():
                logits = model(tokens[None, :, :-1])[0]
                ce = torch.nn.functional.cross_entropy(
                    logits.transpose(1, 2), tokens[:, 1:], reduction="none"
                ).sum(1)
            expected_bits = ce.double().numpy() / math.log(2) + math.log2(V)
            np.testing.assert_allclose(obs.code_bits[:, -1], expected_bits, rtol=1e-5)
            np.testing.assert_allclose(
                obs.unintended_bits[:, -1],
                np.maximum(0, S * math.log2(V) - expected_bits),
                atol=1e-4,
            )
            gen = greedy_continue(model.to_hf(0), tokens[:, :prefix], suffix)
            greedy = (gen == tokens[:, prefix : prefix + suffix]).all(1).numpy()
            assert obs.extracted[:, -1].tolist() == greedy.tolist()
            checked.append(int(greedy[:8].sum()))
    assert tr.observations().steps.tolist() == [0, 40, 80, 120, 160]
    assert checked[0] == 0 and checked[-1] >= 4  # the training rows become extractable
    assert not tr.observations().extracted[8:].any()  # held-out rows never are


def test_callback_for_memlens_trainer_tracks_one_model_of_a_stack():
    from memlens.training import SaturationConfig, train_to_saturation

    V, S, N = 16, 8, 12
    data = torch.stack(
        [torch.randint(0, V, (N, S), generator=torch.Generator().manual_seed(k)) for k in range(2)]
    )
    ex = TrackSet(
        tokens=list(data[1].numpy()),
        groups=["unique"] * N,
        reference_bits=np.full(N, S * math.log2(V)),
        first_token_bits=math.log2(V),
    )
    tr = Tracker(ex, schedule=Schedule.every(1), prefix=2, suffix=4, model_index=1)
    model = GPT(GPTConfig(V, S, 1, 16), n_models=2, generator=torch.Generator().manual_seed(0))
    cfg = SaturationConfig(
        lr=1e-2, batch_size=N, max_steps=30, min_steps=30, warmup_steps=1, eval_every=10
    )
    res = train_to_saturation(
        model, data, [N, N], cfg, entropy_bits=S * math.log2(V), first_token_bits=math.log2(V),
        callbacks=[tr.callback],
    )  # fmt: skip
    obs = tr.observations()
    assert obs.steps.tolist() == [10, 20, 30]  # the trainer calls back after each evaluation
    np.testing.assert_allclose(obs.code_bits[:, -1], res.final_nll_bits[1], rtol=1e-6)
    assert not np.allclose(obs.code_bits[:, -1], np.r_[res.final_nll_bits[0]])


# -- hand-computed analyses ---------------------------------------------------------------------


def hand_observations() -> tuple[Observations, TrackSet]:
    steps = np.array([0, 250, 500, 750, 1000])
    U = np.array(
        [
            [0, 6, 3, 9, 9],  # repeated: memorized at 250, forgotten at 500, back at 750
            [0, 4, 7, 6, 8],  # repeated: memorized from 500 on
            [0, 0, 2, 2, 6],  # unique: memorized at the last step
            [0, 1, 1, 1, 1],  # unique: never
            [0, 0, 0, 0, 0],  # heldout: never
        ],
        dtype=float,
    )
    ref = np.full(5, 10.0)
    obs = Observations(
        steps=steps,
        code_bits=ref[:, None] - U,
        unintended_bits=U,
        extracted=np.zeros_like(U, dtype=bool),
        suffix_top1=np.zeros_like(U),
        score_seconds=np.ones(5),
        train_seconds=np.arange(5.0),
    )
    ex = TrackSet(
        tokens=[np.zeros(4, np.int64)] * 5,
        groups=["repeated", "repeated", "unique", "unique", "heldout"],
        reference_bits=ref,
        counts=[4, 4, 1, 1, 0],
    )
    return obs, ex


def test_analysis_known_answer():
    obs, ex = hand_observations()
    a = analyze(obs, ex, threshold=0.5)  # memorized when unintended >= 5 of 10 bits
    assert a["criterion"]["name"] == "bits"
    r, u, h = a["groups"]["repeated"], a["groups"]["unique"], a["groups"]["heldout"]
    assert (r["fraction_memorized"], r["fraction_ever_memorized"]) == (1.0, 1.0)
    assert r["median_first_memorized_step"] == 375.0 == r["median_first_memorized_step_all"]
    assert (r["forgetting_events"], r["examples_forgotten"]) == (1, 0)
    assert (u["fraction_memorized"], u["median_first_memorized_step"]) == (0.5, 1000.0)
    assert u["median_first_memorized_step_all"] is None  # half of the unique ones never memorized
    assert h["fraction_ever_memorized"] == 0.0 and h["median_first_memorized_step"] is None
    assert r["mean_unintended_bits_final"] == 8.5 and u["mean_unintended_bits_final"] == 3.5
    assert a["comparisons"] == {
        "repeated_vs_unique": {"memorized_more": True, "memorized_earlier": True},
        "heldout_never_memorized": True,
    }
    ct = a["continued_training"]
    assert (ct["from_step"], ct["to_step"]) == (500, 1000)
    assert ct["training_examples"]["fraction_memorized"] == [0.25, 0.75]
    assert ct["training_examples"]["mean_unintended_bits"] == [3.25, 6.0]
    assert ct["increases"] is True
    assert a["curves"]["repeated"]["fraction_memorized"] == [0.0, 0.5, 0.5, 1.0, 1.0]
    # a stricter threshold (8 of 10 bits) changes the answer as computed by hand
    strict = analyze(obs, ex, threshold=0.8)["groups"]["repeated"]
    assert strict["median_first_memorized_step"] == 875.0 and strict["forgetting_events"] == 0


def test_tfidf_rarity_of_token_rows_hand_computed():
    from memlens.track import tfidf_rarity_tokens

    # D = {[1, 2] once, [1, 3] twice}: |D| = 3, tf(1) = 3, tf(2) = 1, tf(3) = 2 (natural log)
    corpus = [np.array([1, 2]), np.array([1, 3])]
    got = tfidf_rarity_tokens(
        [np.array([1, 2]), np.array([2, 4, 4])], corpus, [1, 2], np.array([True, False])
    )
    assert got[0] == pytest.approx((math.log(3 / 3) + math.log(3 / 1)) / 2, abs=1e-12)
    # a held-out row is scored against D plus itself: |D| = 4, tf(2) = 2, tf(4) = 2
    assert got[1] == pytest.approx((math.log(4 / 2) + 2 * math.log(4 / 2)) / 3, abs=1e-12)


def test_by_rarity_split_and_spearman_known_answer():
    # 8 unique training examples with TF-IDF 1..8 (median 4.5: the last four are "rare"), final
    # unintended bits y of a 10-bit reference (memorized at >= 5), all 0 at step 0; plus held-out
    # controls (count 0) and two repeated examples (fewer than 4: no rarity entry), both left out.
    y = np.array([0, 6, 1, 2, 9, 7, 8, 3], dtype=float)
    U = np.zeros((12, 2))
    U[:8, 1] = y
    U[8:10, 1] = 9.0
    ref = np.full(12, 10.0)
    obs = Observations(
        steps=np.array([0, 100]),
        code_bits=ref[:, None] - U,
        unintended_bits=U,
        extracted=np.zeros_like(U, dtype=bool),
        suffix_top1=np.zeros_like(U),
        score_seconds=np.ones(2),
        train_seconds=np.arange(2.0),
    )
    ex = TrackSet(
        tokens=[np.zeros(4, np.int64)] * 12,
        groups=["unique"] * 8 + ["repeated"] * 2 + ["heldout"] * 2,
        reference_bits=ref,
        counts=[1] * 8 + [4, 4, 0, 0],
        rarity=[1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 1, 2],
    )
    br = analyze(obs, ex, threshold=0.5)["by_rarity"]
    assert set(br) == {"unique"}
    u = br["unique"]
    assert u["median_tfidf"] == 4.5
    # rare: y = 9, 7, 8, 3 -> 3 of 4 memorized (at step 100); common: 0, 6, 1, 2 -> 1 of 4
    assert u["rare"] == {
        "n": 4,
        "fraction_memorized": 0.75,
        "median_first_memorized_step_all": 100.0,
        "mean_unintended_bits_final": 6.75,
    }
    assert u["common"] == {
        "n": 4,
        "fraction_memorized": 0.25,
        "median_first_memorized_step_all": None,  # 3 of 4 never memorized
        "mean_unintended_bits_final": 2.25,
    }
    # ranks of y: 1 5 2 3 8 6 7 4 against 1..8: sum d^2 = 36, rho = 1 - 6*36/(8*63) = 4/7
    assert u["spearman_tfidf_vs_unintended_bits"] == pytest.approx(4 / 7, abs=1e-12)


def test_analysis_without_reference_uses_extraction():
    obs, ex = hand_observations()
    ex = TrackSet(
        tokens=ex.tokens, groups=ex.groups, reference_bits=np.full(5, np.nan), counts=ex.counts
    )
    obs.extracted[0, 2:] = True
    obs.unintended_bits[:] = np.nan
    a = analyze(obs, ex)
    assert a["criterion"]["name"] == "extraction"
    assert a["groups"]["repeated"]["fraction_memorized"] == 0.5
    assert a["groups"]["repeated"]["median_first_memorized_step"] == 500.0
    with pytest.raises(UserError):
        analyze(obs, ex, criterion="bits")


def test_small_helpers():
    flags = np.array([[False, True, False, True], [False, False, False, False]])
    steps = np.array([0, 10, 20, 30])
    f = first_true_step(flags, steps)
    assert f[0] == 10 and np.isnan(f[1])
    assert forgetting_events(flags).tolist() == [1, 0]
    assert median_first_step_all(np.array([10.0, 20.0, np.nan])) == 20.0
    assert median_first_step_all(np.array([10.0, np.nan])) is None


def test_epoch_batches_are_permutations_and_pure_functions_of_step():
    rows = torch.cat([epoch_batch(10, 4, s, seed=3) for s in range(5)])  # 20 rows = 2 epochs
    assert sorted(rows[:10].tolist()) == list(range(10)) and sorted(rows[10:].tolist()) == list(
        range(10)
    )
    assert torch.equal(epoch_batch(10, 4, 3, seed=3), rows[12:16])


# -- storage and resume -------------------------------------------------------------------------


def test_append_only_storage_resume_and_mismatch(tmp_path):
    V, S = 8, 10
    tokens = [np.arange(S) % V, np.zeros(S, np.int64)]
    ex = TrackSet(
        tokens=tokens,
        groups=["unique", "heldout"],
        reference_bits=[30.0, 30.0],
        first_token_bits=3.0,
    )
    m = zero_gpt(V, S)
    tr = Tracker(ex, tmp_path / "t", schedule=Schedule.every(1), prefix=3, suffix=4, flush_every=2)
    for s in range(5):
        tr.observe(m, s)
    # steps 0-3 were flushed as two parts; step 4 was still buffered when the "crash" happened
    assert len(list((tmp_path / "t" / "parts").glob("*.parquet"))) == 2
    # a tracker in the user's own loop records what a run manifest does: versions, revision
    meta = json.loads((tmp_path / "t" / "tracker.json").read_text())
    assert meta["versions"]["memlens"] == memlens.__version__ and "git_revision" in meta
    assert meta["versions"]["torch"] == torch.__version__
    del tr
    tr2 = Tracker(ex, tmp_path / "t", schedule=Schedule.every(1), prefix=3, suffix=4)
    assert tr2.last_step == 3
    assert not tr2.observe(m, 2)
    assert tr2.observe(m, 4) and tr2.observe(m, 5)
    obs = load_observations(tmp_path / "t")
    assert obs.steps.tolist() == [0, 1, 2, 3, 4, 5]
    np.testing.assert_allclose(obs.code_bits, 30.0)
    assert tr2.cost()["n_observations"] == 6
    other = TrackSet(
        tokens=tokens[::-1],
        groups=["unique", "heldout"],
        reference_bits=[30.0, 30.0],
        first_token_bits=3.0,
    )
    with pytest.raises(UserError, match="different examples"):
        Tracker(other, tmp_path / "t", schedule=Schedule.every(1), prefix=3, suffix=4)


def test_max_overhead_skips_observations_and_reports_them():
    ex = TrackSet(
        tokens=[np.zeros(6, np.int64)] * 64,
        groups=["unique"] * 64,
        reference_bits=np.full(64, 20.0),
    )
    tr = Tracker(ex, schedule=Schedule.every(1), prefix=2, suffix=2, max_overhead=1e-6)
    m = zero_gpt(4, 6)
    got = [s for s in range(20) if tr.observe(m, s)]
    assert got[0] == 0 and len(got) < 20 and tr.cost()["n_skipped"] == 20 - len(got)


# -- the quick preset ---------------------------------------------------------------------------

TINY = dict(
    vocab_size=16, branching=2, seq_len=16, n_unique=64, n_repeated=8, repeats=8, n_track_unique=16,
    n_heldout=16, n_layer=1, d_model=32, lr=1e-2, warmup_steps=5, batch_size=16, steps=120,
    prefix=4, suffix=8, checkpoint_every=40, points_per_decade=6,
)  # fmt: skip


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("quick") / "run"
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # module-scoped: runs before the function-scoped one_thread fixture
    try:
        return run_quick(QuickConfig(**TINY), out), out
    finally:
        torch.set_num_threads(n)


def test_quick_preset_writes_results(tiny_run):
    res, out = tiny_run
    d = json.loads((out / "dynamics.json").read_text())
    # each group's figures are those of its rows in examples.parquet (8 repeated, 16 unique
    # tracked, 16 held out)
    per = pd.read_parquet(out / "examples.parquet")
    for g, n in (("repeated", 8), ("unique", 16), ("heldout", 16)):
        rows = per[per["group"] == g]
        first = rows["first_memorized_step"].dropna()
        assert d["groups"][g]["n"] == len(rows) == n
        assert d["groups"][g]["fraction_memorized"] == pytest.approx(rows["memorized_final"].mean())
        assert d["groups"][g]["fraction_ever_memorized"] == pytest.approx(len(first) / n)
        want = float(first.median()) if len(first) else None
        assert d["groups"][g]["median_first_memorized_step"] == want
    for f in (
        "manifest.json",
        "examples.parquet",
        "heatmap.png",
        "group_curves.png",
        "track/tracker.json",
    ):
        assert (out / f).exists(), f
    per = pd.read_parquet(out / "examples.parquet")
    assert (per["group"] == "repeated").sum() == 8 and (
        per["count"][per["group"] == "heldout"] == 0
    ).all()
    # the repeated rows are seen 8x as often: they are memorized, held-out controls are not
    assert (
        d["groups"]["repeated"]["fraction_memorized"] > d["groups"]["unique"]["fraction_memorized"]
    )
    assert d["groups"]["heldout"]["fraction_ever_memorized"] == 0.0
    cost = d["cost"]
    assert cost["n_observations"] == len(d["curves"]["steps"])
    assert cost["overhead_fraction"] == pytest.approx(cost["score_seconds"] / cost["train_seconds"])
    assert cost["tokens_scored_per_observation"] == 40 * 15  # 8 + 16 + 16 rows of 16 tokens
    # training time runs to the final observation (step 120), not through the analysis and plots
    obs = load_observations(out / "track")
    assert obs.steps[-1] == 120
    assert cost["train_seconds"] == float(obs.train_seconds[-1])
    assert cost["score_seconds"] == pytest.approx(float(obs.score_seconds.sum()), rel=1e-12)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["config"]["steps"] == 120


def test_quick_preset_interrupted_and_resumed_matches_uninterrupted(tiny_run, tmp_path, capsys):
    _, ref_out = tiny_run
    out = tmp_path / "run"

    def interrupt(event):
        if event.completed == 70:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_quick(QuickConfig(**TINY), out, progress=interrupt)
    assert not (out / "dynamics.json").exists()
    resumed = run_quick(QuickConfig(**TINY), out)  # resumes from the checkpoint at step 70
    assert resumed.summary.training["resumed_from_step"] == 70
    assert resumed.reused == ["checkpoint at step 70"]  # the result says so too (it was empty)
    from memlens.commands.track import _print_track

    _print_track(resumed.summary, None)
    assert "resumed from step 70 of the interrupted run" in capsys.readouterr().out
    a = load_observations(ref_out / "track")
    b = load_observations(out / "track")
    assert a.steps.tolist() == b.steps.tolist()
    np.testing.assert_allclose(b.code_bits, a.code_bits, rtol=1e-5, atol=1e-5)
    # the training-loss curve spans both sessions, as in the uninterrupted run
    want = json.loads((ref_out / "dynamics.json").read_text())["training"]
    got = resumed.summary.training["batch_loss_bits_per_token"]
    assert [s for s, _ in got] == [s for s, _ in want["batch_loss_bits_per_token"]]
    assert got[0][0] == 1 and any(s > 70 for s, _ in got)
    np.testing.assert_allclose(got, want["batch_loss_bits_per_token"], rtol=1e-5)


def test_quick_preset_finished_run_rerun_trains_nothing_and_says_so(tiny_run, tmp_path, capsys):
    import shutil

    from memlens.commands.track import _print_track

    _, ref_out = tiny_run
    out = tmp_path / "run"
    shutil.copytree(ref_out, out)
    before = json.loads((out / "dynamics.json").read_text())
    again = run_quick(QuickConfig(**TINY), out)
    assert again.summary.training["resumed_from_step"] == 120
    after = json.loads((out / "dynamics.json").read_text())
    assert after["curves"] == before["curves"] and after["groups"] == before["groups"]
    assert after["cost"] == before["cost"]  # nothing trained or scored again (it grew by the plots)
    loss = "batch_loss_bits_per_token"
    assert after["training"][loss] == before["training"][loss] != []
    _print_track(again.summary, None)
    text = capsys.readouterr().out
    assert "had finished: nothing was trained again" in text and "interrupted" not in text


def test_track_cli_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, monkeypatch):
    from memlens import cli

    for args, fragment in [
        (["--preset", "quick", "--steps", "0"], "invalid track config (steps)"),
        (["--preset", "full"], "unknown preset"),
        ([], "either --preset quick or --model"),
        (["--model", str(tmp_path / "nope"), "--train", "x.txt"], "does not exist"),
        (["--preset", "quick", "--prefix", "20", "--suffix", "20"], "exceed the sequence length"),
        (["--preset", "quick", "--seed", "-1"], "invalid track config (seed)"),
        (["--preset", "quick", "--seq-len", "8"], "--seq-len belongs to --model mode"),
        (["--preset", "quick", "--max-track", "9", "--tokenizer", "t"], "--tokenizer, --max-track"),
        (["--model", "m", "--train", "x.txt", "--seed", "-1"], "invalid track config (seed)"),
    ]:
        out = tmp_path / "out"
        monkeypatch.setattr(sys, "argv", ["memlens", "track", *args, "--out", str(out)])
        with pytest.raises(SystemExit) as exc:
            cli.main()
        err = capsys.readouterr().err.strip()
        assert exc.value.code == 2 and err.startswith("error: ") and fragment in err, err
        assert "\n" not in err and not out.exists()


def test_reanalyze_a_finished_run_with_another_threshold(tiny_run, tmp_path):
    """The docs' promise: a finished run is re-read with another threshold without scoring.
    At the run's own threshold it equals dynamics.json; at another one each group's final
    fraction is that of its examples with unintended bits >= threshold x reference bits."""
    from memlens.track import reanalyze

    _, out = tiny_run
    d = json.loads((out / "dynamics.json").read_text())
    same = reanalyze(out)
    for key in ("groups", "comparisons", "continued_training", "by_rarity", "curves"):
        assert same[key] == d[key], key
    per = pd.read_parquet(out / "examples.parquet")
    for tau in (0.05, 0.2):
        again = reanalyze(out, threshold=tau)
        for g, rows in per.groupby("group"):
            u, ref = rows["unintended_bits_final"], rows["reference_bits"]
            want = ((u >= tau * ref) & (u > 0)).mean()
            assert again["groups"][g]["fraction_memorized"] == pytest.approx(want)
    assert reanalyze(out / "track", threshold=0.2) == reanalyze(out, threshold=0.2)
    with pytest.raises(UserError, match="holds no tracked run"):
        reanalyze(tmp_path)


def test_tracker_refuses_examples_that_nothing_could_count_as_memorized():
    """No reference bits and no example long enough for prefix + suffix: every group would
    come back empty (n = 0, all None), so the tracker says so when it is built."""
    rows = [np.arange(8) % 5 for _ in range(3)]
    ex = TrackSet(tokens=rows, groups=["repeated", "unique", "heldout"], reference_bits=np.nan)
    with pytest.raises(UserError, match="no tracked example has the 12 tokens"):
        Tracker(ex, None, prefix=6, suffix=6)
    assert Tracker(ex, None, prefix=4, suffix=4).eligible.all()  # 8 tokens: exactly enough
    with_ref = TrackSet(tokens=rows, groups=["repeated", "unique", "heldout"], reference_bits=9.0)
    assert not Tracker(with_ref, None, prefix=6, suffix=6).eligible.any()  # bits still count


def test_continued_training_without_an_observation_in_the_second_half_is_none():
    """Observations at 0, 250 and 1000: the first at or after step 500 is the final one, and
    comparing it with itself said "does not increase" for any run. Now there is no comparison
    (from_step None, no groups, increases None), and with 750 kept it is 750 -> 1000."""
    obs, ex = hand_observations()
    keep = np.array([0, 1, 4])
    sparse = Observations(
        steps=obs.steps[keep], code_bits=obs.code_bits[:, keep],
        unintended_bits=obs.unintended_bits[:, keep], extracted=obs.extracted[:, keep],
        suffix_top1=obs.suffix_top1[:, keep], score_seconds=obs.score_seconds[keep],
        train_seconds=obs.train_seconds[keep],
    )  # fmt: skip
    ct = analyze(sparse, ex)["continued_training"]
    assert ct["from_step"] is None and ct["to_step"] == 1000
    assert ct["groups"] == {} and ct["increases"] is None and "training_examples" not in ct
    keep = np.array([0, 1, 3, 4])
    ct = analyze(
        Observations(
            steps=obs.steps[keep], code_bits=obs.code_bits[:, keep],
            unintended_bits=obs.unintended_bits[:, keep], extracted=obs.extracted[:, keep],
            suffix_top1=obs.suffix_top1[:, keep], score_seconds=obs.score_seconds[keep],
            train_seconds=obs.train_seconds[keep],
        ),
        ex,
    )["continued_training"]  # fmt: skip
    assert (ct["from_step"], ct["to_step"]) == (750, 1000)
    # training examples' unintended bits at 750: 9, 6, 2, 1 -> 4.5; at 1000: 9, 8, 6, 1 -> 6.0
    assert ct["training_examples"]["mean_unintended_bits"] == [4.5, 6.0] and ct["increases"]
