"""The Ray backend: cells as Ray tasks give the local backend's numbers (same seeds).

One local Ray instance is started for the module (2 CPUs); the capacity command then joins it
through ``--ray-address``, which also exercises joining an existing cluster. Skipped when Ray is
not installed (``pip install 'memlens[ray]'``; the ``dev`` extra includes it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import torch

ray = pytest.importorskip("ray")

from memlens import capacity as cap  # noqa: E402
from memlens.errors import UserError  # noqa: E402
from memlens.scale import run_cells  # noqa: E402

STEPS = 30  # the smoke preset with a short step budget: seconds per shape


@pytest.fixture(scope="module")
def ray_cluster():
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # cells defined here
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def square_cell(x: int, marks: str, progress) -> dict:
    """Cell 0 finishes only after every other cell has (they leave a mark file each)."""
    from pathlib import Path

    progress(("started", x))
    if x == 0:
        deadline = time.monotonic() + 600  # Ray starts workers slowly on a loaded machine
        while len(list(Path(marks).glob("*.done"))) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    else:
        Path(marks, f"{x}.done").write_text("")
    progress(("done", x))
    return {"x": x, "square": x * x}


def failing_cell(x: int, progress) -> dict:
    raise UserError(f"cell {x} has no data.")


def test_cells_come_back_in_order_with_progress(ray_cluster, tmp_path):
    seen: list[int] = []
    progress: list[object] = []
    # the first cell finishes last, so results arrive out of order
    cells = [(square_cell, (i, str(tmp_path))) for i in range(4)]
    out = run_cells(
        cells,
        backend="ray",
        on_result=lambda i, r: seen.append(i),
        progress=progress.append,
    )
    assert out == [{"x": i, "square": i * i} for i in range(4)]
    assert sorted(seen) == [0, 1, 2, 3] and seen[-1] == 0
    assert sorted(progress) == sorted(
        [("started", i) for i in range(4)] + [("done", i) for i in range(4)]
    )
    assert ray.is_initialized()  # a Ray it did not start is left running


def test_cell_user_error_is_one_sentence(ray_cluster, tmp_path):
    with pytest.raises(UserError) as info:
        run_cells([(square_cell, (1, str(tmp_path))), (failing_cell, (2,))], backend="ray")
    assert str(info.value) == "cell 2 has no data."


def test_capacity_smoke_ray_matches_local(ray_cluster, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # Ray tasks run with one thread per CPU asked for
    try:
        local = cap.run(
            cap.load_config("smoke", max_steps=STEPS), tmp_path / "local", workers=1
        ).summary.to_json()
    finally:
        torch.set_num_threads(threads)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [sys.executable, "-m", "memlens.cli", "capacity", "--preset", "smoke",
         "--max-steps", str(STEPS), "--backend", "ray", "--ray-address", ray_cluster,
         "--out", str(tmp_path / "ray"), "--json"],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    on_ray = json.loads(r.stdout)
    assert on_ray["backend"] == "ray" and local["backend"] == "local"
    a_local, a_ray = local["alpha_bits_per_param"], on_ray["alpha_bits_per_param"]
    assert a_local > 0
    assert abs(a_ray - a_local) <= 0.02 * a_local  # the acceptance criterion
    # and in fact the same numbers: each cell carries its seed, whatever runs it
    for m_local, m_ray in zip(local["models"], on_ray["models"], strict=True):
        for run_l, run_r in zip(m_local["runs"], m_ray["runs"], strict=True):
            assert run_r["n_sequences"] == run_l["n_sequences"]
            assert run_r["memorized_bits"] == pytest.approx(run_l["memorized_bits"], rel=1e-6)
    manifest = json.loads((tmp_path / "ray" / "manifest.json").read_text())
    assert manifest["backend"] == "ray" and manifest["status"] == "finished"


def _no_run_cells(*args, **kwargs):
    raise AssertionError("a finished run must not run cells")


def test_laws_mia_experiment_ray_matches_local(ray_cluster, tmp_path, monkeypatch):
    from memlens.laws import mia_config, run_mia_experiment
    from memlens.progress import ProgressEvent

    config = mia_config("smoke", max_steps=STEPS)
    local = run_mia_experiment(config, tmp_path / "local", workers=1).summary
    progress: list[ProgressEvent] = []
    on_ray = run_mia_experiment(config, tmp_path / "ray", backend="ray", progress=progress.append)
    assert len(local.runs) == len(on_ray.summary.runs) == 4
    for a, b in zip(local.runs, on_ray.summary.runs, strict=True):
        assert (a.n_sequences, a.f1) == (b.n_sequences, b.f1)
        assert b.memorized_bits == pytest.approx(a.memorized_bits, rel=1e-6)
    # progress events came back from the Ray tasks: the step budget of each cell
    assert progress and all(isinstance(e, ProgressEvent) for e in progress)
    assert {e.total for e in progress} == {STEPS}
    # a rerun reuses every stored cell without touching Ray
    monkeypatch.setattr("memlens.scale.run_cells", _no_run_cells)
    again = run_mia_experiment(config, tmp_path / "ray", backend="ray").summary
    assert again.reused_cells == len(list((tmp_path / "ray" / "cells").glob("*.json"))) > 0
    with pytest.raises(UserError, match="unknown backend"):
        run_mia_experiment(config, tmp_path / "other", backend="dask")


def test_laws_double_descent_ray_matches_local(ray_cluster, tmp_path, monkeypatch):
    from memlens.laws import double_descent_config, run_double_descent

    config = double_descent_config("smoke", max_steps=STEPS, models_per_cell=1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # Ray tasks run with one thread per CPU asked for
    try:
        local = run_double_descent(config, tmp_path / "local", workers=1).summary
    finally:
        torch.set_num_threads(threads)
    on_ray = run_double_descent(config, tmp_path / "ray", backend="ray").summary
    assert len(local.runs) == len(on_ray.runs) == 3
    for a, b in zip(local.runs, on_ray.runs, strict=True):
        assert a.n_sequences == b.n_sequences
        assert b.test_bits_per_token == pytest.approx(a.test_bits_per_token, rel=1e-6)
        assert b.memorized_bits == pytest.approx(a.memorized_bits, rel=1e-6)
    assert on_ray.peak["peak_ratio"] == local.peak["peak_ratio"]
    assert on_ray.peak["argmax_test_bits_per_token"] == pytest.approx(
        local.peak["argmax_test_bits_per_token"], rel=1e-6
    )
    manifest = json.loads((tmp_path / "ray" / "manifest.json").read_text())
    assert manifest["backend"] == "ray" and manifest["reused_cells"] == 0
    monkeypatch.setattr("memlens.scale.run_cells", _no_run_cells)
    assert run_double_descent(config, tmp_path / "ray", backend="ray").summary.reused_cells == 3


def test_sinks_ray_matches_local(ray_cluster, tmp_path, monkeypatch):
    from memlens.sinks import ARMS, get_preset, run

    cfg = get_preset("smoke")
    local = run(cfg, tmp_path / "local", workers=1).summary.to_json()
    seen: list[str] = []
    on_ray = run(cfg, tmp_path / "ray", backend="ray", progress=lambda e: seen.append(e.task))
    summary = on_ray.summary.to_json()
    for key in (*ARMS, "memsinks_sinks_dropped", "claim", "localization"):
        assert summary[key] == local[key], key
    assert summary["compute"]["resumed"] == dict.fromkeys(ARMS, False)
    assert set(seen) == {f"training {arm}" for arm in ARMS}  # progress came back from every task
    for arm in ARMS:
        assert (tmp_path / "ray" / "models" / f"{arm}.safetensors").stat().st_size > 0
    monkeypatch.setattr("memlens.scale.run_cells", _no_run_cells)
    again = run(cfg, tmp_path / "ray", backend="ray").summary
    assert again.compute["resumed"] == dict.fromkeys(ARMS, True)
    assert again.claim == local["claim"]


def test_ray_backend_bad_address_is_one_sentence(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [sys.executable, "-m", "memlens.cli", "capacity", "--preset", "smoke", "--max-steps", "1",
         "--backend", "ray", "--ray-address", "127.0.0.1:1", "--out", str(tmp_path / "x")],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert r.returncode == 2, r.stderr[-2000:]
    last = r.stderr.strip().splitlines()[-1]
    assert "cannot start or join Ray (127.0.0.1:1)" in last and "Traceback" not in r.stderr
    assert "nothing answers there" in last
