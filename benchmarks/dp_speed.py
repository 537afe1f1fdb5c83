"""What DP-SGD costs in ``memlens dp-audit``, on this machine (prints both times and the ratio).

1. A training step: DP-SGD (per-sample gradients from ``torch.func.vmap``, Opacus's clipping,
   noise and Adam in ``no_op`` grad-sample mode; :func:`memlens.privacy.dp.train_rows`) versus
   the plain step on the same Poisson-sampled batches (one batched backward, Adam), both through
   memlens's one training loop (:func:`memlens.training.train`).
2. Per-sample gradients alone: ``vmap(grad(...))`` over the batch versus the obvious
   alternative, one backward pass per row.
3. The accountant: choosing the noise multiplier for a target ε and reading the ε spent
   (``make_private_with_epsilon`` + ``get_epsilon``), PRV versus RDP, once per DP arm.

Usage: ``.venv/bin/python benchmarks/dp_speed.py [--threads 1] [--epochs 2]``
"""

from __future__ import annotations

import argparse
import timeit

import torch

from memlens.models.gpt import GPT, GPTConfig
from memlens.privacy.dp import DPSettings, RowModel, per_sample_grads, quiet, row_loss, train_rows


def timed(fn, repeats: int = 3) -> float:
    """Best wall time of ``repeats`` calls (seconds)."""
    return min(timeit.repeat(fn, number=1, repeat=repeats))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    V, S, L, d, B, N = 64, 32, 2, 64, 64, 2560  # the README run's shape: 2,000 rows + ~500 canaries
    cfg = GPTConfig(V, S, L, d)
    g = torch.Generator().manual_seed(0)
    rows = torch.randint(0, V, (N, S), generator=g)
    lens = torch.full((N,), S)
    steps = a.epochs * (N // B)
    print(
        f"GPT L={L} d={d} V={V} ({cfg.n_params:,} parameters), rows of {S} tokens, expected batch "
        f"{B}, {steps} steps, {a.threads} thread(s); best of 3"
    )

    # 1. a DP-SGD step vs the plain step, same sampler and optimizer (RDP: cheap set-up)
    def train(dp):
        model = GPT(cfg, 1, generator=torch.Generator().manual_seed(0))
        return train_rows(model, rows, lens, epochs=a.epochs, batch_size=B, lr=3e-3, dp=dp, seed=0)

    t_plain = timed(lambda: train(None))
    t_dp = timed(lambda: train(DPSettings(8.0, 1e-5, 1.0, "rdp")))
    print(
        f"[step]       plain Adam {t_plain / steps * 1e3:.1f} ms/step   DP-SGD {t_dp / steps * 1e3:.1f} "
        f"ms/step   ratio {t_dp / t_plain:.2f}x (the cost of DP-SGD)"
    )

    # 2. per-sample gradients: vmap over the batch vs one backward per row
    module = RowModel(GPT(cfg, 1, generator=torch.Generator().manual_seed(0))).train()
    ids, n = rows[:B], lens[:B]
    params = {k: p.detach() for k, p in module.named_parameters()}

    def loop():
        out = []
        for i in range(B):
            module.zero_grad()
            row_loss(module(ids[i : i + 1]), ids[i : i + 1], n[i : i + 1]).sum().backward()
            out.append([p.grad.clone() for p in module.parameters()])
        return out

    with quiet():
        per_sample_grads(module, params, ids, n)  # warm-up
        t_vmap = timed(lambda: per_sample_grads(module, params, ids, n), repeats=5)
    t_loop = timed(loop, repeats=5)
    print(
        f"[per-sample] one backward per row {t_loop * 1e3:.0f} ms   vmap {t_vmap * 1e3:.0f} ms   "
        f"ratio {t_loop / t_vmap:.2f}x faster with vmap ({B} rows)"
    )

    # 3. the accountant's one-off cost per DP arm (20 epochs, as in the README run)
    from opacus import PrivacyEngine
    from opacus.data_loader import DPDataLoader
    from torch.utils.data import DataLoader, TensorDataset

    def account(name):
        model = RowModel(GPT(cfg, 1))
        loader = DPDataLoader.from_data_loader(DataLoader(TensorDataset(rows, lens), batch_size=B))
        with quiet():
            engine = PrivacyEngine(accountant=name)
            _, opt, _ = engine.make_private_with_epsilon(
                module=model,
                optimizer=torch.optim.Adam(model.parameters()),
                data_loader=loader,
                target_epsilon=8.0,
                target_delta=1e-5,
                epochs=20,
                max_grad_norm=1.0,
                poisson_sampling=False,
                grad_sample_mode="no_op",
            )
            engine.accountant.history = [(opt.noise_multiplier, 1 / len(loader), 20 * len(loader))]
            return engine.get_epsilon(1e-5), opt.noise_multiplier

    t_rdp = timed(lambda: account("rdp"), repeats=1)
    t_prv = timed(lambda: account("prv"), repeats=1)
    (e_rdp, s_rdp), (e_prv, s_prv) = account("rdp"), account("prv")
    print(
        f"[accountant] RDP {t_rdp:.1f} s (sigma {s_rdp:.3f}, eps {e_rdp:.3f})   PRV {t_prv:.1f} s "
        f"(sigma {s_prv:.3f}, eps {e_prv:.3f})   ratio {t_prv / t_rdp:.1f}x, once per DP arm; "
        f"PRV needs {100 * (1 - s_prv / s_rdp):.0f}% less noise for the same eps"
    )


if __name__ == "__main__":
    main()
