"""Running the cells of a sweep: in this process, in worker processes, or as Ray tasks.

A *cell* is a picklable ``(function, args)`` pair whose result is a JSON-serializable dict;
:func:`run_stored_cells` is what every sweep calls: it loads the cells a run directory already
holds (:class:`memlens.store.RunDir`), runs the missing ones with :func:`run_cells` and stores
each result as soon as it arrives, so an interrupted sweep loses only the cells in flight.

* ``local`` with ``workers=1``: cells run one after another in this process.
* ``local`` with ``workers>1``: cells run in spawned worker processes, each pinned to
  ``cpu_count // workers`` threads. Tiny models do not keep two cores busy with intra-op
  threads; one process per core does (this is how the capacity lab uses a 2-core machine).
* ``ray``: each cell is a Ray task with ``num_cpus`` CPUs (and ``num_gpus`` when asked), on a
  local Ray started for the run or on an existing cluster (``address``). Ray is an optional
  extra: ``pip install memlens[ray]``.

Results are returned in the order of the cells, whatever the backend, and a cell computes the
same numbers on every backend (seeds are part of its arguments). A cell reports progress by
calling its ``progress`` keyword with :class:`memlens.progress.ProgressEvent` values (any
picklable value travels); they reach the caller's ``progress`` unchanged, from worker processes
and Ray tasks alike.
"""

from __future__ import annotations

import logging
import os
import queue as _queue
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from memlens.errors import UserError

Cell = tuple[Callable[..., dict[str, Any]], tuple[Any, ...]]
OnResult = Callable[[int, dict[str, Any]], None]
Relay = Callable[[Any], None]


def available_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def _set_threads(n: int) -> None:
    from memlens.training.devices import set_threads

    set_threads(max(1, n))


_progress_queue: Any = None


def _worker_init(threads: int, q: Any) -> None:
    global _progress_queue
    import signal

    # Ctrl-C reaches the whole process group: the parent alone handles it (it stops the workers),
    # so a worker does not drop its cell and start the next one
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _set_threads(threads)
    _progress_queue = q


def _stop_workers(pool: Any) -> None:
    """Cancel the cells not started and end the worker processes now (an interrupted sweep
    keeps its finished cells; the running ones restart on resume)."""
    terminate = getattr(pool, "terminate_workers", None)  # Python >= 3.14
    if terminate is not None:
        terminate()
        return
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        proc.terminate()
    pool.shutdown(wait=False, cancel_futures=True)


def _call_in_worker(fn: Callable[..., dict[str, Any]], args: tuple[Any, ...]) -> dict[str, Any]:
    q = _progress_queue

    def report(payload: Any) -> None:
        if q is not None:
            q.put(payload)

    return fn(*args, progress=report)


def check_backend(backend: str, ray_address: str | None = None, device: str | None = None) -> None:
    """Refuse an unknown backend, a missing Ray, an unreachable ``host:port`` address, or a
    ``device`` that is unknown or (with the local backend) not present here; with Ray only the
    name is checked, as a worker may have a GPU this process lacks.

    Sweeps call this before creating their run directory, so bad input leaves nothing behind.
    """
    if device is not None:
        from memlens.training.devices import check_device_name, pick_device

        if backend == "local":
            pick_device(device)
        else:
            check_device_name(device)
    if backend not in ("local", "ray"):
        raise UserError(f"unknown backend {backend!r}; choose local or ray.")
    if backend == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UserError("the ray backend needs Ray: pip install 'memlens[ray]'.") from None
        address = ray_address or os.environ.get("RAY_ADDRESS") or None
        if address:
            _check_reachable(address)


def run_cells(
    cells: Sequence[Cell],
    *,
    backend: str = "local",
    workers: int | None = None,
    on_result: OnResult | None = None,
    progress: Relay | None = None,
    ray_address: str | None = None,
    ray_num_cpus: float = 1,
    ray_num_gpus: float = 0,
) -> list[dict[str, Any]]:
    """Run ``cells`` and return their results in order.

    Each cell function must accept a keyword ``progress`` (a callable taking one picklable
    payload, normally a :class:`~memlens.progress.ProgressEvent`) and return a dict.
    ``on_result(i, result)`` is called in this process as each cell finishes (use it to save the
    cell); ``progress(payload)`` receives the cells' progress reports in this process.
    """
    if backend == "ray":
        return _run_ray(cells, on_result, ray_address, ray_num_cpus, ray_num_gpus, progress)
    if backend != "local":
        raise UserError(f"unknown backend {backend!r}; choose local or ray.")
    n_workers = min(len(cells), workers or available_cpus())
    results: list[dict[str, Any] | None] = [None] * len(cells)
    if n_workers <= 1:
        relay = progress if progress is not None else (lambda payload: None)
        for i, (fn, args) in enumerate(cells):
            results[i] = fn(*args, progress=relay)
            if on_result is not None:
                on_result(i, results[i])
        return results  # type: ignore[return-value]

    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    if _unguarded_script_in_worker():
        # A spawned process re-imports the user's script; its top level called memlens again.
        # Leave quietly: the parent says what to do in one sentence (below).
        raise SystemExit(1)
    ctx = mp.get_context("spawn")
    try:
        manager = ctx.Manager()
    except (EOFError, OSError, RuntimeError):
        raise UserError(_SPAWN_GUARD) from None
    q = manager.Queue()
    threads = max(1, available_cpus() // n_workers)
    try:
        pool = ProcessPoolExecutor(
            max_workers=n_workers, mp_context=ctx, initializer=_worker_init, initargs=(threads, q)
        )
        try:
            futures = {
                pool.submit(_call_in_worker, fn, args): i for i, (fn, args) in enumerate(cells)
            }
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                _drain(q, progress)
                for f in done:
                    i = futures[f]
                    results[i] = f.result()
                    if on_result is not None:
                        on_result(i, results[i])
            _drain(q, progress)
        except BaseException:  # Ctrl-C, a failed cell: do not wait for the running cells
            _stop_workers(pool)
            raise
        pool.shutdown(wait=True)
    except BrokenProcessPool:
        raise UserError(_SPAWN_GUARD) from None
    finally:
        manager.shutdown()
    return results  # type: ignore[return-value]


_SPAWN_GUARD = (
    "the local worker processes could not start: a script that runs memlens with several "
    'workers must make the call under `if __name__ == "__main__":` (the workers re-import the '
    "script), or pass `workers` = 1 to run in this process."
)


def _unguarded_script_in_worker() -> bool:
    """True in a spawned process that is re-importing the user's script (``__mp_main__``) and
    whose top level, not guarded by ``if __name__ == "__main__":``, called memlens."""
    import sys

    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "<module>" and frame.f_globals.get("__name__") == "__mp_main__":
            return True
        frame = frame.f_back
    return False


def _drain(q: Any, progress: Relay | None) -> None:
    while True:
        try:
            payload = q.get_nowait()
        except (_queue.Empty, EOFError, OSError):
            return
        if progress is not None:
            progress(payload)


def _check_reachable(address: str, timeout: float = 10.0) -> None:
    """Fail fast on a ``host:port`` nobody listens on (``ray.init`` retries for minutes)."""
    import socket

    if address == "auto" or "://" in address:
        return  # "auto" and ray:// client addresses are resolved by Ray itself
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return  # not host:port: let Ray judge it
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise UserError(
            f"cannot start or join Ray ({address}): nothing answers there ({exc.strerror or exc})."
        ) from None


def _drain_ray(q: Any, progress: Relay | None) -> None:
    if q is None or progress is None:
        return
    from ray.util.queue import Empty

    while True:
        try:
            payload = q.get_nowait()
        except Empty:
            return
        progress(payload)


def _run_ray(
    cells: Sequence[Cell],
    on_result: OnResult | None,
    address: str | None,
    num_cpus: float,
    num_gpus: float,
    progress: Relay | None = None,
) -> list[dict[str, Any]]:
    try:
        import ray
    except ImportError:
        raise UserError("the ray backend needs Ray: pip install 'memlens[ray]'.") from None
    started_here = False
    if not ray.is_initialized():
        # RAY_ADDRESS (set inside Ray jobs) counts as --ray-address; without either, a fresh local
        # Ray is started, never a cluster someone else left running on this node ("auto" joins it)
        address = address or os.environ.get("RAY_ADDRESS") or None
        if address:
            _check_reachable(address)
        try:
            # Ray's own start-up notices (token authentication, "Started a local Ray
            # instance") are not memlens's output: only its errors reach the console
            quiet = {"log_to_driver": False, "logging_level": logging.ERROR}
            if address:
                ray.init(address=address, **quiet)
            else:
                ray.init(
                    address="local", num_cpus=available_cpus(), include_dashboard=False, **quiet
                )
                started_here = True
        except Exception as exc:  # noqa: BLE001 - Ray's connection errors vary by version
            raise UserError(f"cannot start or join Ray ({address or 'local'}): {exc}.") from None

    from ray.exceptions import RayTaskError
    from ray.util.queue import Queue

    def _task(
        fn: Callable[..., dict[str, Any]], args: tuple[Any, ...], threads: int, q: Any
    ) -> dict[str, Any]:
        _set_threads(threads)

        def report(payload: Any) -> None:
            if q is not None:
                try:
                    q.put_nowait(payload)
                except Exception:  # noqa: BLE001 - progress is best effort, the result is not
                    pass

        return fn(*args, progress=report)

    results: list[dict[str, Any] | None] = [None] * len(cells)
    try:
        # progress reports travel through a queue actor that takes no CPU from the cells
        q = Queue(actor_options={"num_cpus": 0}) if progress is not None else None
        remote = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus)(_task)
        threads = max(1, int(num_cpus))
        refs = [remote.remote(fn, args, threads, q) for fn, args in cells]
        index = {r: i for i, r in enumerate(refs)}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1, timeout=0.5)
            _drain_ray(q, progress)
            for r in done:
                i = index[r]
                try:
                    results[i] = ray.get(r)
                except RayTaskError as exc:
                    # a cell's UserError stays one sentence, not a remote traceback
                    if isinstance(exc.cause, UserError):
                        raise UserError(str(exc.cause)) from None
                    raise
                if on_result is not None:
                    on_result(i, results[i])
        _drain_ray(q, progress)
    finally:
        if started_here:
            ray.shutdown()
    return results  # type: ignore[return-value]


# -- resumable sweeps ------------------------------------------------------------------------------

StoredCell = tuple[str, Callable[..., dict[str, Any]], tuple[Any, ...]]


@dataclass
class StoredCells:
    """What :func:`run_stored_cells` returns: every cell's result in order, and which were reused."""

    results: list[dict[str, Any]]
    reused: list[str] = field(default_factory=list)


def run_stored_cells(
    rd: Any,
    cells: Sequence[StoredCell],
    *,
    load: Callable[[str], dict[str, Any] | None] | None = None,
    save: Callable[[str, dict[str, Any]], None] | None = None,
    progress: Relay | None = None,
    backend: str = "local",
    workers: int | None = None,
    ray_address: str | None = None,
    ray_num_cpus: float = 1,
    ray_num_gpus: float = 0,
) -> StoredCells:
    """The sweep's cells, resumed: stored ones loaded, the missing ones run and stored on arrival.

    Parameters
    ----------
    rd: the run directory (:class:`memlens.store.RunDir`).
    cells: ``(key, function, args)`` per cell; the key names the stored result.
    load, save: how a cell is read and stored (default ``rd.load_cell`` / ``rd.save_cell``; a
        sweep whose cells carry more than JSON, e.g. model weights, passes its own).
    progress: receives the running cells' progress events.
    backend, workers, ray_address, ray_num_cpus, ray_num_gpus: where the missing cells run (:func:`run_cells`). A sweep with
        nothing left to run starts no worker and no Ray.
    """
    load = load or rd.load_cell
    save = save or rd.save_cell
    results: list[dict[str, Any] | None] = [load(key) for key, _, _ in cells]
    todo = [i for i, r in enumerate(results) if r is None]
    reused = [cells[i][0] for i in range(len(cells)) if results[i] is not None]

    def store(j: int, result: dict[str, Any]) -> None:
        i = todo[j]
        save(cells[i][0], result)
        results[i] = result

    if todo:
        run_cells(
            [(cells[i][1], cells[i][2]) for i in todo],
            backend=backend,
            workers=workers,
            on_result=store,
            progress=progress,
            ray_address=ray_address,
            ray_num_cpus=ray_num_cpus,
            ray_num_gpus=ray_num_gpus,
        )
    return StoredCells(results, reused)  # type: ignore[arg-type]
