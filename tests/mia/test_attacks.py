"""Known-answer tests for the attacks of memlens.mia.attacks and memlens.scoring.grad_norms."""

from __future__ import annotations

import math
import random
import zlib

import numpy as np
import pytest
import torch

from memlens.errors import UserError
from memlens.mia import attacks as A
from memlens.mia.metrics import roc_auc
from memlens.scoring import TokenScores, gpt_forward, grad_norms, score_tokens
from memlens.units import zlib_bytes

NAN = np.nan


pytestmark = pytest.mark.usefixtures("one_thread")


def scores_of(rows, mu=None, sigma=None) -> TokenScores:
    """TokenScores from ragged rows of log2 p (NaN padding)."""
    width = max(map(len, rows))
    lp = np.full((len(rows), width), NAN)
    for i, r in enumerate(rows):
        lp[i, : len(r)] = r
    mask = ~np.isnan(lp)

    def pad(x):
        if x is None:
            return None
        out = np.full_like(lp, NAN)
        for i, r in enumerate(x):
            out[i, : len(r)] = r
        return out

    return TokenScores(log2p=lp, mask=mask, mu_log2p=pad(mu), sigma_log2p=pad(sigma))


ROWS = [
    [-1.0, -5.0, -2.0, -3.0, -4.0, -0.5, -0.25, -6.0, -1.5, -2.5],  # n = 10
    [-2.0, -2.0, -2.0, -2.0, -2.0],  # n = 5
    [-0.5, -7.0, -1.0, -1.0],  # n = 4: floor(0.2 * 4) = 0, min-k cannot score it
]


def _words(seed_text: int) -> str:
    """300 words drawn from 9: a text whose zlib size differs between levels 6 and 9."""
    rng = random.Random(0)
    words = ["the", "cat", "sees", "a", "red", "boat", "dog", "old", "lamp"]
    texts = [" ".join(rng.choice(words) for _ in range(300)) for _ in range(2)]
    return texts[seed_text]


def test_zlib_size_is_zlibs_default_level():
    # One level for the audit's zlib_bytes column and the MIA's zlib attacks: zlib's default (6),
    # as Carlini et al.'s code and MIMIR. The text below compresses to 301 bytes at level 6 and
    # 304 at level 9 (the level the MIA used before).
    text = _words(1)
    assert zlib_bytes(text) == 301 == len(zlib.compress(text.encode("utf-8")))
    assert len(zlib.compress(text.encode("utf-8"), 9)) == 304
    assert zlib_bytes("hello world " * 5) == 23 and zlib_bytes("abc") == 11


def test_loss_zlib_ref_by_hand():
    t = scores_of(ROWS)
    texts = ["hello world " * 5, "abc", _words(1)]  # 23, 11 and 301 bytes (see above)
    x = A.AttackInputs(target=t, texts=texts, references={"R": np.array([30.0, 5.0, 20.0])})
    cols = A.compute_attacks(["loss", "zlib", "zlib_mimir", "ref"], x)
    nll = np.array([25.75, 10.0, 9.5])  # sum of -log2 p per row, in bits
    np.testing.assert_allclose(cols["loss"], -nll / np.array([10, 5, 4]))
    # zlib: whole-text bits per compressed byte; MIMIR's form: bits per token per byte
    np.testing.assert_allclose(cols["zlib"], [-25.75 / 23, -10.0 / 11, -9.5 / 301])
    np.testing.assert_allclose(cols["zlib_mimir"], [-2.575 / 23, -2.0 / 11, -2.375 / 301])
    np.testing.assert_allclose(cols["ref"], np.array([30.0, 5.0, 20.0]) - nll)
    # the two forms rank differently: row 1 is more member-like than row 0 by zlib
    # (-0.909 > -1.120) and less by zlib_mimir (-0.182 < -0.112)
    assert cols["zlib"][1] > cols["zlib"][0] and cols["zlib_mimir"][1] < cols["zlib_mimir"][0]
    # target_bits (code length of the text incl. a first-token charge) replaces nll when given.
    x.target_bits = nll + 3.0
    np.testing.assert_allclose(
        A.compute_attacks(["ref"], x)["ref"], np.array([27.0, 2.0, 17.0]) - nll
    )
    # Several references: one column each.
    x.references = {"a": nll + 1, "b": nll + 2}
    assert set(A.compute_attacks(["ref"], x)) == {"ref:a", "ref:b"}


def test_min_k_by_hand_and_short_sequences_are_nan():
    t = scores_of(ROWS)
    got = A.compute_attacks(["min_k"], A.AttackInputs(target=t, k=0.2))["min_k"]
    # Row 0: floor(0.2*10) = 2 lowest of log2 p are -6 and -5 -> -5.5. Row 1: 1 lowest -> -2.
    assert got[0] == pytest.approx(-5.5) and got[1] == pytest.approx(-2.0)
    assert math.isnan(got[2])
    got = A.compute_attacks(["min_k"], A.AttackInputs(target=t, k=0.5))["min_k"]
    assert got[0] == pytest.approx((-6 - 5 - 4 - 3 - 2.5) / 5)
    assert got[2] == pytest.approx((-7 - 1) / 2)  # ties: either -1 gives the same mean
    # k = 1 is the mean log2 p, i.e. the loss attack.
    x = A.AttackInputs(target=t, k=1.0)
    np.testing.assert_allclose(
        A.compute_attacks(["min_k"], x)["min_k"], A.compute_attacks(["loss"], x)["loss"]
    )
    with pytest.raises(UserError, match=r"\(0, 1\]"):
        A.compute_attacks(["min_k"], A.AttackInputs(target=t, k=0.0))


def test_min_k_pp_by_hand():
    rows = [[-1.0, -3.0, -2.0, -4.0, -1.0]]
    mu = [[-1.5, -2.0, -2.0, -2.0, -0.5]]
    sigma = [[0.5, 1.0, 2.0, 1.0, 0.25]]
    t = scores_of(rows, mu, sigma)
    # z = (log2p - mu) / sigma = [1, -1, 0, -2, -2]; k = 0.4 -> 2 lowest: -2, -2.
    got = A.compute_attacks(["min_k_pp"], A.AttackInputs(target=t, k=0.4))["min_k_pp"]
    assert got[0] == pytest.approx(-2.0)
    got = A.compute_attacks(["min_k_pp"], A.AttackInputs(target=t, k=0.6))["min_k_pp"]
    assert got[0] == pytest.approx(-5 / 3)


def test_lowercase_and_gradnorm_by_hand():
    t = scores_of([[-1.0, -1.0], [-2.0, -4.0]])
    low = scores_of([[-3.0, -3.0, -3.0], [-3.0, -3.0]])
    x = A.AttackInputs(target=t, lowercase=low, grad_norms=np.array([0.5, 2.0]))
    cols = A.compute_attacks(["lowercase", "gradnorm"], x)
    np.testing.assert_allclose(cols["lowercase"], [3.0 / 1.0, 3.0 / 3.0])
    np.testing.assert_allclose(cols["gradnorm"], [-0.5, -2.0])


def test_registry_parsing_and_new_attack_is_one_function():
    assert A.parse_attacks("loss, min-k ,LOSS") == ["loss", "min_k"]
    with pytest.raises(UserError, match="unknown attack 'bogus'"):
        A.parse_attacks("loss,bogus")
    assert A.requirements(["min_k_pp", "zlib"]) == {"stats", "text"}

    @A.register_attack("neg_max_nll")
    def neg_max(x: A.AttackInputs) -> np.ndarray:
        """Minus the largest per-token code length."""
        return np.nanmin(x.target.log2p, axis=-1)

    try:
        got = A.compute_attacks(["neg_max_nll"], A.AttackInputs(target=scores_of(ROWS)))
        np.testing.assert_allclose(got["neg_max_nll"], [-6.0, -2.0, -7.0])
    finally:
        del A.ATTACKS["neg_max_nll"]


def test_ref_attack_subtracts_the_target_bits_of_each_pair():
    # A reference whose pair charges the first token otherwise gets its own target bits.
    t = scores_of(ROWS)
    x = A.AttackInputs(
        target=t,
        references={"a": np.array([30.0, 5.0, 20.0]), "b": np.array([30.0, 5.0, 20.0])},
        reference_target_bits={"b": np.array([20.0, 4.0, 12.0])},
    )
    cols = A.compute_attacks(["ref"], x)
    np.testing.assert_allclose(cols["ref:a"], [30 - 25.75, 5 - 10.0, 20 - 9.5])
    np.testing.assert_allclose(cols["ref:b"], [10.0, 1.0, 8.0])


class Bigram(torch.nn.Module):
    """logits[t] = W[x_t]: a bigram model with a V x V table."""

    def __init__(self, V: int) -> None:
        super().__init__()
        self.W = torch.nn.Parameter(torch.zeros(V, V))

    def forward(self, ids, attention_mask=None):
        return self.W[ids]


def test_grad_norms_closed_form():
    # With W = 0 every prediction is uniform over V. For a sequence whose n predicted tokens
    # follow n distinct tokens, d(mean NLL_bits)/dW[a] = (softmax - onehot) / (n ln 2) for each
    # of the n rows, so ||grad||^2 = n * ((V-1)/V) / (n ln 2)^2 and ||grad|| = sqrt((V-1)/(V n)) / ln 2.
    V = 4
    m = Bigram(V)
    fwd = lambda ids, attention_mask=None: m(ids)  # noqa: E731
    tokens = torch.tensor([[0, 1, 2, 3], [2, 3, 0, 0], [1, 1, 1, 1]])
    got = grad_norms(fwd, list(m.parameters()), tokens, lengths=[4, 2, 4])
    assert got[0] == pytest.approx(math.sqrt(3 / 4 / 3) / math.log(2), rel=1e-6)
    assert got[1] == pytest.approx(math.sqrt(3 / 4 / 1) / math.log(2), rel=1e-6)  # padding ignored
    # Row [1,1,1,1]: all 3 predictions come from row 1, the gradients add: ||3 (u - e_1)|| / (3 ln 2).
    assert got[2] == pytest.approx(math.sqrt(3 / 4) / math.log(2), rel=1e-6)
    assert np.isnan(grad_norms(fwd, list(m.parameters()), tokens[:1], lengths=[1])[0])


class ScaledBigram(torch.nn.Module):
    """logits[t] = W[x_t] + 2 b: two parameter tensors whose gradients differ."""

    def __init__(self, V: int) -> None:
        super().__init__()
        self.W = torch.nn.Parameter(torch.zeros(V, V))
        self.b = torch.nn.Parameter(torch.zeros(V))

    def forward(self, ids, attention_mask=None):
        return self.W[ids] + 2 * self.b


def test_grad_norms_mimir_is_the_mean_of_per_tensor_max_norms():
    # W = 0, b = 0: predictions uniform over V = 4. Sequence [0, 1, 2, 3]: n = 3 predictions
    # from rows 0, 1, 2 with targets 1, 2, 3, each contributing (u - e_target) / (n ln 2), u = 1/4.
    #   grad W: rows 0..2 hold (u - e) / (3 ln 2): max |.| = (3/4) / (3 ln 2) = 0.25 / ln 2;
    #           ||.||^2 = 3 * (3/4) / (9 ln^2 2) = 0.25 / ln^2 2.
    #   grad b: 2 (3u - e1 - e2 - e3) / (3 ln 2) = 2 [.75, -.25, -.25, -.25] / (3 ln 2):
    #           max |.| = 0.5 / ln 2; ||.||^2 = 4 * 0.75 / (9 ln^2 2) = (1/3) / ln^2 2.
    # MIMIR's norm: mean of the per-tensor max norms = (0.25 + 0.5) / 2 / ln 2 = 0.375 / ln 2;
    # the L2 norm of the whole gradient: sqrt(0.25 + 1/3) / ln 2 = sqrt(7/12) / ln 2.
    m = ScaledBigram(4)
    fwd = lambda ids, attention_mask=None: m(ids)  # noqa: E731
    got = grad_norms(fwd, list(m.parameters()), torch.tensor([[0, 1, 2, 3]]), norm=["l2", "mimir"])
    assert got["mimir"][0] == pytest.approx(0.375 / math.log(2), rel=1e-6)  # float32 model
    assert got["l2"][0] == pytest.approx(math.sqrt(7 / 12) / math.log(2), rel=1e-6)
    # one norm by name gives the same array
    one = grad_norms(fwd, list(m.parameters()), torch.tensor([[0, 1, 2, 3]]), norm="mimir")
    np.testing.assert_array_equal(one, got["mimir"])
    with pytest.raises(UserError, match="unknown gradient norm"):
        grad_norms(fwd, list(m.parameters()), torch.tensor([[0, 1]]), norm="l3")
    # the attacks read them, higher = member
    x = A.AttackInputs(
        target=scores_of([[-1.0]]), grad_norms=got["l2"], grad_norms_mimir=got["mimir"]
    )
    cols = A.compute_attacks(["gradnorm", "gradnorm_mimir"], x)
    assert cols["gradnorm"][0] == -got["l2"][0] and cols["gradnorm_mimir"][0] == -got["mimir"][0]


def test_ref_beats_loss_on_overfit_model_with_good_references():
    """An overfit GPT on a mix of easy and hard Markov text: the loss attack is confounded by
    per-sample difficulty; the reference attack is not, both with the true source as reference
    (code length under the truth minus under the target: Morris et al.'s unintended
    memorization) and with a GPT of the same shape trained on 2000 other samples of the same
    mixture (never on the members)."""
    from memlens.data.synthetic import MarkovSource
    from memlens.models.gpt import GPT, GPTConfig

    V, S = 16, 24
    easy = MarkovSource(V, branching=2, seed=1)
    hard = MarkovSource(V, branching=V, concentration=50.0, seed=2)

    def draw(n_easy, n_hard, seed):  # 3 easy : 1 hard, the mixture truth_bits assumes
        return torch.cat([easy.sample(n_easy, S, seed), hard.sample(n_hard, S, seed + 1)])

    def truth_bits(x):  # exact code length of tokens 1..S-1 under the mixture source
        a = -easy.code_length_bits(x, include_first=False)
        b = -hard.code_length_bits(x, include_first=False)
        return -np.logaddexp2(a + np.log2(0.75), b + np.log2(0.25))

    members, nonmembers, pool = draw(36, 12, 10), draw(36, 12, 20), draw(1500, 500, 30)
    # Model 0 (target): full batch of the 48 members. Model 1 (reference): 48 random pool samples
    # per step. One GPT stack, two independent models.
    model = GPT(GPTConfig(V, S, 1, 32, 2), n_models=2, generator=torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    for _ in range(120):
        ids = torch.stack([members, pool[torch.randint(0, len(pool), (48,), generator=g)]])
        logits = model(ids[:, :, :-1])
        loss = sum(
            torch.nn.functional.cross_entropy(logits[k].reshape(-1, V), ids[k, :, 1:].reshape(-1))
            for k in range(2)
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    x = torch.cat([members, nonmembers])
    y = np.r_[np.ones(48), np.zeros(48)].astype(int)
    sc = score_tokens(gpt_forward(model), x[None].expand(2, -1, -1), stats=True)
    target = TokenScores(sc.log2p[0], sc.mask[0], sc.mu_log2p[0], sc.sigma_log2p[0])
    reference = TokenScores(sc.log2p[1], sc.mask[1])
    target_model = model.select([0]).eval()
    gn = grad_norms(gpt_forward(target_model), list(target_model.parameters()), x)
    refs = {"truth": truth_bits(x.numpy()), "trained": reference.nll_bits}
    inputs = A.AttackInputs(target=target, references=refs, grad_norms=gn)
    cols = A.compute_attacks(["loss", "ref", "min_k", "min_k_pp", "gradnorm"], inputs)
    auc = {k: roc_auc(v, y) for k, v in cols.items()}
    assert auc["loss"] > 0.8
    for name in ("ref:truth", "ref:trained"):
        assert auc[name] > auc["loss"] + 0.05 and auc[name] > 0.95, auc
    for name in ("min_k", "min_k_pp", "gradnorm"):
        assert auc[name] > 0.7, (name, auc)
    # Higher = member for every attack: the reversed scores are far below chance.
    assert all(roc_auc(-v, y) < 0.3 for v in cols.values())
