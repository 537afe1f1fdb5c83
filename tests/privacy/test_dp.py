"""DP-SGD through Opacus and the audit recipe: exact per-sample gradients (memlens GPT and a
tied-embedding Hugging Face GPT-2), soundness of the one-run bound against the accountant across
seeds, exposure of inserted vs never-inserted canaries, determinism and resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers_hf import (
    all_words,
    make_sentences,
    save_lm,
    tiny_gpt2,
    wordlevel_tokenizer,
    write_lines,
)
from memlens.errors import UserError
from memlens.models.gpt import GPT, GPTConfig
from memlens.privacy import DPAuditConfig, run
from memlens.privacy.dp import (
    DPSettings,
    PoissonBatches,
    RowModel,
    batch_loss,
    per_sample_grads,
    private_backward,
    quiet,
    row_loss,
    train_rows,
)
from memlens.training import TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_thread")

# A tiny audit that runs in seconds: 100 canaries of 8 tokens over 32 ids, 64 Markov rows.
TINY = dict(
    canaries=100,
    n_train=64,
    seq_len=12,
    canary_length=8,
    vocab_size=32,
    d_model=32,
    n_layer=1,
    epochs=30,
    batch_size=32,
    lr=0.01,
    candidates=200,
    accountant="rdp",
)


def _grads_one_by_one(module, ids, lengths):
    out = []
    for i in range(len(ids)):
        module.zero_grad()
        row_loss(module(ids[i : i + 1]), ids[i : i + 1], lengths[i : i + 1]).sum().backward()
        out.append({k: p.grad.clone() for k, p in module.named_parameters()})
    return out


@pytest.mark.parametrize("kind", ["gpt", "hf"])
def test_per_sample_gradients_equal_one_backward_per_row(kind):
    torch.manual_seed(0)
    if kind == "gpt":
        model = GPT(
            GPTConfig(40, 16, 2, 32, 4), n_models=1, generator=torch.Generator().manual_seed(1)
        )
    else:
        model = tiny_gpt2(40, n_positions=16)  # tied input/output embedding
    module = RowModel(model).train()
    ids = torch.randint(0, 40, (5, 16))
    lengths = torch.tensor([16, 9, 16, 2, 12])  # right padding beyond each length is ignored
    params = {k: p.detach() for k, p in module.named_parameters()}
    grads, losses = per_sample_grads(module, params, ids, lengths)
    ref = _grads_one_by_one(module, ids, lengths)
    for i in range(5):
        for k in params:
            torch.testing.assert_close(grads[k][i], ref[i][k], atol=2e-6, rtol=1e-4)
    torch.testing.assert_close(losses, row_loss(module(ids), ids, lengths).detach())


def test_row_loss_ignores_padding():
    logits = torch.randn(1, 6, 7)
    ids = torch.randint(0, 7, (1, 6))
    full = F.cross_entropy(logits[0, :3], ids[0, 1:4])
    torch.testing.assert_close(row_loss(logits, ids, torch.tensor([4]))[0], full)


def test_dp_training_hits_the_target_epsilon_and_is_deterministic():
    model_a = GPT(GPTConfig(32, 12, 1, 16), generator=torch.Generator().manual_seed(0))
    model_b = GPT(GPTConfig(32, 12, 1, 16), generator=torch.Generator().manual_seed(0))
    rows = torch.randint(0, 32, (96, 12), generator=torch.Generator().manual_seed(3))
    lens = torch.full((96,), 12)
    kw = dict(epochs=2, batch_size=16, lr=1e-2, dp=DPSettings(2.0, 1e-5, 1.0, "rdp"), seed=4)
    seen = []
    sa = train_rows(model_a, rows, lens, physical_batch_size=7, **kw)
    sb = train_rows(model_b, rows, lens, progress=lambda *a: seen.append(a), **kw)
    assert sa.steps == sb.steps == 2 * 6 and sa.private
    assert seen[0] == (0, 12) and seen[-1] == (12, 12)  # shown before the sigma search
    assert sa.epsilon_spent == sb.epsilon_spent
    assert 1.9 < sa.epsilon_spent <= 2.0 and sa.noise_multiplier > 0.5
    # the same seed gives the same model, whatever the per-sample-gradient chunking
    for pa, pb in zip(model_a.parameters(), model_b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, atol=1e-6, rtol=1e-5)
    with pytest.raises(UserError, match="strictly between 0 and 1"):
        DPSettings(1.0, delta=1.0)


def test_an_epsilon_opacus_cannot_reach_is_one_sentence():
    """The RDP accountant cannot certify ε = 0.001 at δ = 1e-5 whatever the noise: Opacus's σ
    search gives up (ValueError); memlens says so in one sentence, at the door and in train_rows."""
    from memlens.privacy.dp import check_reachable

    dp = DPSettings(0.001, 1e-5, 1.0, "rdp")
    with pytest.raises(UserError, match="out of reach for Opacus's RDP accountant"):
        check_reachable(dp, 0.25, 8)
    check_reachable(DPSettings(1.0, 1e-5, 1.0, "rdp"), 0.25, 8)  # reachable: no error
    model = GPT(GPTConfig(32, 12, 1, 16), generator=torch.Generator().manual_seed(0))
    rows = torch.randint(0, 32, (16, 12), generator=torch.Generator().manual_seed(3))
    with pytest.raises(UserError, match="out of reach"):
        train_rows(model, rows, torch.full((16,), 12), epochs=2, batch_size=4, lr=1e-2, dp=dp)


@pytest.mark.parametrize("private", [False, True])
def test_a_model_with_dropout_trains_the_same_under_the_same_seed(private):
    """GPT-2 has dropout 0.1 by default, drawn from torch's global generator: whatever state it
    is in before (another arm trained first, or skipped on resume), the same seed trains the
    same model."""
    from transformers import GPT2Config, GPT2LMHeadModel

    rows = torch.randint(0, 40, (24, 12), generator=torch.Generator().manual_seed(3))
    dp = DPSettings(4.0, 1e-5, 1.0, "rdp") if private else None
    models = []
    for before in (100, 101):
        torch.manual_seed(0)
        cfg = GPT2Config(vocab_size=40, n_positions=12, n_embd=16, n_layer=1, n_head=2)
        model = GPT2LMHeadModel(cfg)
        assert cfg.resid_pdrop > 0
        torch.manual_seed(before)  # the global generator as something else left it
        train_rows(model, rows, torch.full((24,), 12), epochs=1, batch_size=8, lr=1e-2, dp=dp,
                   seed=4)  # fmt: skip
        models.append(model)
        after = torch.rand(())  # the global generator is left where it was
        assert after == torch.rand((), generator=torch.Generator().manual_seed(before))
    for pa, pb in zip(models[0].parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(pa, pb, atol=0, rtol=0)


def _poisson_rows_by_hand(N, q, seed):
    """The rows of the first Poisson batch: the DataLoader iterator draws its base seed from the
    generator, then Opacus's sampler keeps row i when a uniform draw is below q."""
    g = torch.Generator().manual_seed(seed)
    torch.empty((), dtype=torch.int64).random_(generator=g)
    return (torch.rand(N, generator=g) < q).nonzero().flatten()


@pytest.mark.parametrize(("batch_size", "seed", "B"), [(3, 0, 4), (1, 6, 0)])
def test_one_dp_step_of_the_loop_equals_a_hand_computation(batch_size, seed, B):
    """One DP-SGD step through memlens.training.train, by hand: the Poisson batch, each row's
    gradient (one backward per row) clipped to C, summed, plus N(0, (sigma C)^2) noise from the
    seeded generator, divided by the expected batch size, SGD at lr 0.5. B = 4 rows in chunks of
    3 (clip-and-accumulate, then the last chunk in the optimizer's step); B = 0: pure noise."""
    from opacus import PrivacyEngine

    N, C, sigma, lr = 6, 0.05, 0.8, 0.5
    ids = torch.randint(0, 20, (N, 8), generator=torch.Generator().manual_seed(1))
    lens = torch.tensor([8, 5, 8, 3, 7, 8])
    model = GPT(GPTConfig(20, 8, 1, 16), generator=torch.Generator().manual_seed(2))
    module = RowModel(model)
    start = {k: p.detach().clone() for k, p in module.named_parameters()}
    batches = PoissonBatches.of_rows(
        ids, lens, batch_size, generator=torch.Generator().manual_seed(seed)
    )
    q = 1 / batches.steps_per_epoch
    with quiet():
        _, opt, _ = PrivacyEngine(accountant="rdp").make_private(
            module=module, optimizer=torch.optim.SGD(module.parameters(), lr=0.0),
            data_loader=batches.loader, noise_multiplier=sigma, max_grad_norm=C,
            poisson_sampling=False, grad_sample_mode="no_op",
            noise_generator=torch.Generator().manual_seed(9),
        )  # fmt: skip
        trainable = dict(module.named_parameters())
        backward = private_backward(opt, trainable, physical=3)
        steps = train(module, TrainConfig(lr=lr, max_steps=1), batches, batch_loss,
                      optimizer=opt, backward=backward)  # fmt: skip
    assert steps == 1

    rows = _poisson_rows_by_hand(N, q, seed)
    assert len(rows) == B
    ref = RowModel(GPT(GPTConfig(20, 8, 1, 16), generator=torch.Generator().manual_seed(2)))
    summed = {k: torch.zeros_like(v) for k, v in start.items()}
    factors = []
    for i in rows.tolist():
        g = _grads_one_by_one(ref, ids[i : i + 1], lens[i : i + 1])[0]
        norm = torch.sqrt(sum(g[k].double().square().sum() for k in g)).item()
        factors.append(min(1.0, C / (norm + 1e-6)))
        for k in summed:
            summed[k] += factors[-1] * g[k]
    assert all(f < 0.5 for f in factors)  # at C = 0.05 clipping binds for every row
    g_noise = torch.Generator().manual_seed(9)
    expected_batch = int(N * q)
    for k, p in trainable.items():  # Opacus draws the noise parameter by parameter, in order
        noise = torch.normal(0.0, sigma * C, size=p.shape, generator=g_noise)
        want = start[k] - lr * (summed[k] + noise) / expected_batch
        torch.testing.assert_close(p.detach(), want, atol=1e-6, rtol=1e-5)


def test_poisson_batches_resume_at_a_later_step():
    ids = torch.arange(40).view(10, 4)
    lens = torch.full((10,), 4)
    seq = PoissonBatches.of_rows(ids, lens, 3, generator=torch.Generator().manual_seed(0))
    with quiet():
        drawn = [seq(k)[0] for k in range(9)]  # two epochs of four steps and one more
        resumed = PoissonBatches.of_rows(ids, lens, 3, generator=torch.Generator().manual_seed(0))
        assert torch.equal(resumed(6)[0], drawn[6]) and torch.equal(resumed(8)[0], drawn[8])
    assert seq.steps_per_epoch == 4 and {len(b) for b in drawn} != {3}  # variable batch sizes
    with pytest.raises(ValueError, match="step order"):
        resumed(3)


def test_audit_is_sound_against_the_accountant_across_seeds(tmp_path):
    """DP-SGD at ε = 1: ε̂ never exceeds the accountant's ε; without DP the same canaries give an
    ε̂ far above the DP models' (the ceiling of 50 guesses is 2.78)."""
    no_dp, dp = [], []
    for seed in (0, 1, 2):
        res = run(DPAuditConfig(**TINY, dp_epsilons=(None, 1.0), seed=seed), tmp_path / f"s{seed}")
        arms = {a.name: a for a in res.arms}
        a_dp = arms["dp-eps1"]
        assert a_dp.epsilon_spent is not None and 0.9 < a_dp.epsilon_spent <= 1.0
        assert a_dp.audit.epsilon_lower_bound <= a_dp.epsilon_spent
        dp.append(a_dp.audit.epsilon_lower_bound)
        no_dp.append(arms["no-dp"].audit.epsilon_lower_bound)
        manifest = json.loads((tmp_path / f"s{seed}" / "manifest.json").read_text())
        assert manifest["accountant_epsilon"]["dp-eps1"] == pytest.approx(a_dp.epsilon_spent)
        assert manifest["accountant_epsilon"]["no-dp"] is None
    assert min(no_dp) > max(dp) + 1.5, (no_dp, dp)


def test_inserted_canaries_are_more_exposed_and_runs_resume(tmp_path):
    cfg = DPAuditConfig(**TINY, seed=5)
    res = run(cfg, tmp_path / "a")
    arm = res.arms[0]
    ex = arm.exposure
    assert ex["rank_inserted_mean"] > ex["rank_not_inserted_mean"] + 3.0
    assert ex["extrapolated_inserted_mean"] > ex["extrapolated_not_inserted_mean"] + 3.0
    # never-inserted canaries are random strings like the candidates: mean rank exposure near
    # E[-log2 U] = 1/ln 2 = 1.44 bits
    assert 0.9 < ex["rank_not_inserted_mean"] < 2.1
    assert ex["rank_inserted_mean"] <= np.log2(201) + 1e-9
    # rerun: trained weights are reused, every number is the same
    again = run(cfg, tmp_path / "a")
    assert again.reused == ["no-dp"] and again.summary.arms["no-dp"].reused_weights
    np.testing.assert_array_equal(again.arms[0].scores, arm.scores)
    # deterministic under the seed: a fresh directory gives the same scores
    fresh = run(cfg, tmp_path / "b")
    np.testing.assert_allclose(fresh.arms[0].scores, arm.scores, rtol=0, atol=1e-9)
    assert (tmp_path / "a" / "models" / "no-dp" / "model.safetensors").exists()
    for name in ("dp_audit.json", "arms.csv", "canaries.parquet", "dp_audit.png"):
        assert (tmp_path / "a" / name).exists()


def test_a_run_stopped_while_scoring_reuses_its_trained_model(tmp_path):
    """Stopped after training (here: an exception at the first scoring event), the rerun with the
    same out reuses the saved weights and gives the numbers of an uninterrupted run."""
    cfg = DPAuditConfig(**{**TINY, "canaries": 40, "candidates": 20, "epochs": 5}, seed=2)

    def stop(event):
        if event.task.startswith("scoring"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path / "a", progress=stop)
    assert (tmp_path / "a" / "cells" / "arm-no-dp.json").exists()
    assert not (tmp_path / "a" / "dp_audit.json").exists()
    resumed = run(cfg, tmp_path / "a")
    assert resumed.reused == ["no-dp"]
    whole = run(cfg, tmp_path / "b")
    assert whole.reused == []
    np.testing.assert_array_equal(resumed.arms[0].scores, whole.arms[0].scores)


def test_hugging_face_model_trains_with_dp_sgd(tmp_path):
    tok = wordlevel_tokenizer()
    model_dir = save_lm(tiny_gpt2(len(tok), n_positions=16), tok, tmp_path / "gpt2")
    train = write_lines(tmp_path / "train.txt", make_sentences(120, seed=3))
    cfg = DPAuditConfig(
        model=str(model_dir),
        train=str(train),
        canaries=20,
        canary_length=5,
        seq_len=16,
        epochs=4,
        batch_size=16,
        candidates=50,
        dp_epsilons=(None, 4.0),
        accountant="rdp",
        score="loss_diff",
    )
    res = run(cfg, tmp_path / "run")
    arms = {a.name: a for a in res.arms}
    assert arms["dp-eps4"].epsilon_spent <= 4.0
    assert arms["dp-eps4"].train["loop"].startswith("memlens.training.train")
    assert arms["no-dp"].train["private"] is False
    assert (tmp_path / "run" / "models" / "dp-eps4" / "model.safetensors").exists()
    # canaries are random non-special ids behind the BOS: no special token is ever a canary token
    specials = set(tok.all_special_ids)
    assert not specials & set(np.concatenate(res.canaries.tokens).tolist())
    assert res.summary.data["tokens"].startswith("tokenizer")


def test_canary_texts_with_candidates_on_bytes(tmp_path, capsys, monkeypatch):
    rng = np.random.default_rng(0)
    codes = [f"pin {x:06d}" for x in rng.choice(10**6, size=260, replace=False)]
    canaries = write_lines(tmp_path / "canaries.txt", codes[:40])
    candidates = write_lines(tmp_path / "candidates.txt", codes[40:])
    train = write_lines(tmp_path / "train.txt", make_sentences(150, seed=2))
    kw = dict(train=str(train), canary_file=str(canaries), seq_len=24, d_model=16, n_layer=1,
              epochs=2)  # fmt: skip
    res = run(DPAuditConfig(**kw, candidate_file=str(candidates)), tmp_path / "run")
    arm = res.arms[0]
    assert res.canaries.kind == "file" and res.summary.data["tokens"].startswith("UTF-8 bytes")
    assert arm.exposure["n_candidates"] == 220 and arm.rank_exposure.shape == (40,)
    # the console says where the candidates came from (it called the file's texts "random")
    from memlens.commands.dp_audit import _summary

    monkeypatch.setenv("COLUMNS", "200")
    capsys.readouterr()
    _summary(res.summary, [])
    flat = " ".join(capsys.readouterr().out.split())
    assert "ranked among 220 never-trained texts of the candidate file" in flat
    # the default guess counts are a quarter of the file's 40 canaries each (not of `canaries`)
    assert (arm.audit.k_in, arm.audit.k_out, arm.audit.guesses) == (10, 10, 20)
    with pytest.raises(UserError, match="exceed the 40 canaries"):
        run(DPAuditConfig(**kw, k_in=30, k_out=20), tmp_path / "too-many")
    with pytest.raises(UserError, match="at least 10 candidate texts"):
        few = write_lines(tmp_path / "few.txt", codes[40:45])
        run(DPAuditConfig(**kw, candidate_file=str(few)), tmp_path / "few")
    assert not (tmp_path / "too-many").exists() and not (tmp_path / "few").exists()
    with pytest.raises(UserError, match="longer than the context"):
        run(DPAuditConfig(**{**kw, "seq_len": 8}), tmp_path / "short")
    assert not (tmp_path / "short").exists()
    with pytest.raises(UserError, match="also canaries"):
        run(DPAuditConfig(**kw, candidate_file=str(canaries)), tmp_path / "same")


def test_a_changed_canary_or_training_file_is_not_resumed_from_old_weights(tmp_path):
    """The config names files, not their contents: a rerun into the same out after the canary
    file (or the training texts) changed must not audit weights trained on the old canaries."""
    rng = np.random.default_rng(1)
    codes = [f"pin {x:06d}" for x in rng.choice(10**6, size=40, replace=False)]
    canaries = write_lines(tmp_path / "canaries.txt", codes[:20])
    train = write_lines(tmp_path / "train.txt", make_sentences(150, seed=2))
    cfg = DPAuditConfig(
        train=str(train), canary_file=str(canaries), seq_len=24, d_model=16, n_layer=1, epochs=1
    )
    first = run(cfg, tmp_path / "run")
    digest = json.loads((tmp_path / "run" / "manifest.json").read_text())["inputs_sha256"]
    assert first.summary.arms["no-dp"].train["inputs_sha256"] == digest
    assert run(cfg, tmp_path / "run").reused == ["no-dp"]  # unchanged files: reused
    write_lines(canaries, codes[20:])
    with pytest.raises(UserError, match="other training rows, canaries or starting model"):
        run(cfg, tmp_path / "run")
    write_lines(canaries, codes[:20])
    write_lines(train, make_sentences(150, seed=3))
    with pytest.raises(UserError, match="use a new `out` directory"):
        run(cfg, tmp_path / "run")
    write_lines(train, make_sentences(150, seed=2))
    assert run(cfg, tmp_path / "run").reused == ["no-dp"]


def test_a_canary_that_the_training_texts_hold_anyway_is_refused(tmp_path):
    """A canary must reach the training data only through its coin: one that also occurs in the
    training texts (a whole text or inside one) is trained on in its "out" world too."""
    rng = np.random.default_rng(2)
    codes = [f"pin {x:06d}" for x in rng.choice(10**6, size=20, replace=False)]
    sentences = make_sentences(150, seed=2)
    kw = dict(seq_len=24, d_model=16, n_layer=1, epochs=1)
    for i, leaked in enumerate([codes[3], f"{sentences[7]} {codes[3]} and more"]):
        train = write_lines(tmp_path / f"train{i}.txt", [*sentences, leaked])
        canaries = write_lines(tmp_path / "canaries.txt", codes)
        cfg = DPAuditConfig(train=str(train), canary_file=str(canaries), **kw)
        with pytest.raises(UserError, match="canary 3 .* also occurs in the training texts"):
            run(cfg, tmp_path / f"run{i}")
        assert not (tmp_path / f"run{i}").exists()


def test_canary_texts_that_tokenize_alike_are_refused(tmp_path):
    """Two canary texts the tokenizer maps to the same ids (here unknown words, both [UNK]) are
    one canary to the model, not two independent ones."""
    import torch

    from memlens.privacy.data import prepare

    tok = wordlevel_tokenizer()
    tok.save_pretrained(tmp_path / "tok")
    words = all_words()
    texts = [f"{words[i]} {words[-1 - i]} {words[i]}" for i in range(8)]
    texts += ["xyzzy1 the the", "xyzzy2 the the"]  # [UNK] the the, twice
    canaries = write_lines(tmp_path / "canaries.txt", texts)
    train = write_lines(tmp_path / "train.txt", make_sentences(120, seed=3))
    cfg = DPAuditConfig(
        train=str(train), tokenizer=str(tmp_path / "tok"), canary_file=str(canaries), seq_len=16
    )
    with pytest.raises(UserError, match="canaries 8 and 9 are different texts but the same tokens"):
        prepare(cfg, torch.device("cpu"))


def test_candidate_texts_are_checked_before_training(tmp_path):
    """A candidate text longer than the context failed only when scored, after every arm had
    trained (and left models/ behind); one the training texts hold is not "never trained on"."""
    import torch

    from memlens.privacy.data import prepare

    rng = np.random.default_rng(3)
    codes = [f"pin {x:06d}" for x in rng.choice(10**6, size=40, replace=False)]
    sentences = make_sentences(150, seed=2)
    canaries = write_lines(tmp_path / "canaries.txt", codes[:10])
    train = write_lines(tmp_path / "train.txt", [*sentences, f"{sentences[0]} {codes[12]}"])
    kw = dict(train=str(train), canary_file=str(canaries), seq_len=24, d_model=16, n_layer=1)
    long = write_lines(tmp_path / "long.txt", [*codes[13:30], "pin " + "9" * 40])
    with pytest.raises(UserError, match="candidate 17 has 44 tokens, longer than the context"):
        prepare(DPAuditConfig(**kw, candidate_file=str(long)), torch.device("cpu"))
    seen = write_lines(tmp_path / "seen.txt", codes[10:30])
    with pytest.raises(UserError, match="candidate 2 .* occurs in the training texts"):
        prepare(DPAuditConfig(**kw, candidate_file=str(seen)), torch.device("cpu"))
    ok = write_lines(tmp_path / "ok.txt", codes[13:30])
    prep = prepare(DPAuditConfig(**kw, candidate_file=str(ok)), torch.device("cpu"))
    assert len(prep.candidate_seqs) == 17


def test_candidates_all_alike_still_give_the_audit_and_rank_exposure(tmp_path):
    """A model that codes every candidate in the same number of bits (here a GPT-2 with every
    weight zero, trained at a vanishing rate: uniform predictions) leaves no spread for the
    skew-normal. The audit stopped after training ("every random candidate has the same code
    length; nothing to fit"), and a rerun reused the weights and stopped again; now the bound and
    rank exposure are reported, and the extrapolated exposure is absent with the reason."""
    from helpers_hf import uniform_gpt2

    tok = wordlevel_tokenizer()
    model = save_lm(uniform_gpt2(len(tok)), tok, tmp_path / "uniform")
    train = write_lines(tmp_path / "train.txt", make_sentences(80, seed=3))
    cfg = DPAuditConfig(model=str(model), train=str(train), canaries=16, canary_length=4,
                        seq_len=12, epochs=1, batch_size=16, candidates=20, lr=1e-30)  # fmt: skip
    res = run(cfg, tmp_path / "run")
    ex = res.summary.arms["no-dp"].exposure
    # every canary ties with all 20 candidates and ranks after them: rank 21 of 21, 0 bits
    assert ex["rank_inserted_mean"] == ex["rank_not_inserted_mean"] == 0.0
    assert ex["skew_normal"] is None and ex["extrapolated_inserted_mean"] is None
    assert "same code length" in ex["extrapolated_note"]
    assert res.summary.arms["no-dp"].audit.guesses == 8
    text = (tmp_path / "run" / "dp_audit.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
