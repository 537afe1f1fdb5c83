"""The one training loop: schedules against hand values, the loop's step, stop, checkpoint and
interrupt contract on a one-parameter model, per-model gradient clipping, the shared cell runner
and the Parquet part store."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from memlens.errors import UserError
from memlens.models.gpt import GPT, GPTConfig
from memlens.training import TrainConfig, clip_gradients, make_schedule, train


def test_wsd_schedule_hand_values():
    # lr 1, 100 steps, warm-up 10, decay over 50% then a 20% hold: stable until 30% (step 30),
    # decay over round(30 * 0.5 / 0.3) = 50 steps to 0.1, then hold
    s = make_schedule("wsd", 1.0, 100, 10, decay_frac=0.5, final_lr_frac=0.1, hold_frac=0.2)
    assert s.lr_at(0) == pytest.approx(0.1) and s.lr_at(9) == 1.0 and s.lr_at(29) == 1.0
    assert s.lr_at(55) == pytest.approx(1 - 25 / 50 * 0.9)
    assert s.lr_at(80) == pytest.approx(0.1) and s.lr_at(99) == pytest.approx(0.1)
    # ending the stable phase at step 20: decay over round(20 * 0.5 / 0.3) = 33 steps, and the
    # run shortened to round((20 + 33) / 0.8) = 66 steps, the hold keeping its 20% share
    s.end_stable(20)
    assert s.total == 66 and s.lr_at(20) == 1.0 and s.lr_at(53) == pytest.approx(0.1)
    assert make_schedule("wsd", 1.0, 100, 0, decay_frac=0.0, hold_frac=0.2).lr_at(99) == 1.0


def test_cosine_and_constant_schedules_hand_values():
    c = make_schedule("cosine", 2.0, 110, 10, final_lr_frac=0.0)
    assert c.lr_at(4) == pytest.approx(1.0)  # warm-up: 2 * 5 / 10
    assert c.lr_at(10) == pytest.approx(2.0) and c.lr_at(60) == pytest.approx(1.0)
    assert c.lr_at(110) == pytest.approx(0.0)
    k = make_schedule("cosine", 1.0, 20, 0, final_lr_frac=0.1)
    assert k.lr_at(20) == pytest.approx(0.1)
    assert make_schedule("constant", 0.5, 10, 4).lr_at(1) == pytest.approx(0.25)
    with pytest.raises(UserError, match="unknown schedule"):
        make_schedule("step", 1.0, 10)


class Scalar(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))


def quadratic(model: Scalar, target: float) -> torch.Tensor:
    return (model.w - target) ** 2


def test_loop_steps_observers_checkpoints_by_hand():
    # SGD at lr 0.1 on (w - 3)^2 from w = 0: w1 = 0.6, w2 = 0.6 + 0.1 * 2 * 2.4 = 1.08
    model = Scalar()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    seen, saved = [], []

    def observe(info):
        seen.append((info.step, round(float(info.loss.detach()), 6)))
        return info.step == 2  # stop after the second step

    steps = train(
        model, TrainConfig(lr=0.1, max_steps=10), lambda step: 3.0, quadratic, optimizer=opt,
        observers=[observe], checkpoint=saved.append, checkpoint_every=1,
    )  # fmt: skip
    assert steps == 2 and float(model.w.detach()) == pytest.approx(1.08)
    assert seen == [(1, 9.0), (2, 5.76)]  # the loss of each step, before its update
    assert saved == [1, 2, 2]  # every step, then once more at the end

    def interrupt(info):
        if info.step == 3:
            raise KeyboardInterrupt

    saved.clear()
    with pytest.raises(KeyboardInterrupt):
        train(model, TrainConfig(lr=0.1, max_steps=10), lambda s: 3.0, quadratic, optimizer=opt,
              start_step=2, observers=[interrupt], checkpoint=saved.append)  # fmt: skip
    assert saved == [3]  # the interrupted step is saved, so a rerun resumes after it


def test_loop_refuses_a_diverged_loss():
    model = Scalar()
    with pytest.raises(UserError, match="diverged"):
        train(model, TrainConfig(max_steps=3), lambda s: None, lambda m, b: m.w * float("nan"))


def test_per_model_gradient_clipping():
    model = GPT(GPTConfig(8, 4, 1, 8), n_models=2)
    P = model.num_parameters_per_model()
    for p in model.parameters():
        p.grad = torch.ones_like(p)
        p.grad[1] = 1e-4  # model 1: norm 1e-4 * sqrt(P), far below the clip
    clip_gradients(model, 1.0)
    norms = [
        math.sqrt(sum(float(p.grad[k].double().square().sum()) for p in model.parameters()))
        for k in range(2)
    ]
    assert norms[0] == pytest.approx(1.0, rel=1e-5)  # sqrt(P) scaled down to 1
    assert norms[1] == pytest.approx(1e-4 * math.sqrt(P), rel=1e-5)  # untouched


def square(x: int, *, progress) -> dict:
    progress(("done", x))
    return {"x": x, "square": x * x}


def test_run_stored_cells_reuses_and_stores(tmp_path):
    from memlens.scale import run_stored_cells
    from memlens.store import RunDir

    rd = RunDir(tmp_path, "test", {"a": 1}, 0)
    rd.save_cell("c1", {"x": 1, "square": -1})  # a finished cell is reused as stored
    events: list = []
    done = run_stored_cells(
        rd, [(f"c{i}", square, (i,)) for i in range(3)], progress=events.append, workers=1
    )
    assert done.results == [{"x": 0, "square": 0}, {"x": 1, "square": -1}, {"x": 2, "square": 4}]
    assert done.reused == ["c1"] and events == [("done", 0), ("done", 2)]
    assert rd.load_cell("c2") == {"x": 2, "square": 4}


def test_part_store_round_trip_and_order(tmp_path):
    from memlens.store import PartStore

    store = PartStore(tmp_path / "parts")
    store.write(pd.DataFrame({"step": [0, 10], "v": [1.0, 2.0]}), 0, 10, meta={"k": 1})
    store.write(pd.DataFrame({"step": [10, 20], "v": [2.5, 3.0]}), 10, 20)
    (tmp_path / "parts" / "part-000000000030-000000000040.parquet").write_bytes(b"torn")
    parts = store.read()
    assert [m for _, m in parts] == [{"k": 1}, None]  # the torn part is skipped
    df = pd.concat([t.to_pandas() for t, _ in parts]).drop_duplicates("step", keep="last")
    assert df["v"].tolist() == [1.0, 2.5, 3.0]  # a step recorded twice keeps its latest value
    assert sorted(p.name for p in (tmp_path / "parts").glob("part-0*.parquet"))[0] == (
        "part-000000000000-000000000010.parquet"
    )
    assert np.isfinite(df["v"]).all()
