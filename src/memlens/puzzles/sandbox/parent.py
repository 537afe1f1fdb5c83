"""The parent side: start the sandboxed interpreter, collect its output under caps, kill what is
left and classify the outcome."""

from __future__ import annotations

import json
import os
import random
import selectors
import shutil
import signal
import subprocess
import tempfile
import time

from memlens.puzzles.sandbox.child import _child_setup, _kill_uid, _tasks_of
from memlens.puzzles.sandbox.limits import Limits, Result
from memlens.puzzles.sandbox.runner import BLOCKED_MARK, RUNNER

STDERR_CAP = 64 * 1024


def _run(interp: str, source: str, limits: Limits, *, drop_uid: bool, audit_hook: bool) -> Result:
    base = tempfile.mkdtemp(prefix="memlens-sandbox-")
    workdir = os.path.join(base, "work")
    uid = random.SystemRandom().randrange(1 << 24, 1 << 30) if drop_uid else None
    report_r, report_w = os.pipe()
    proc = None
    try:
        os.chmod(base, 0o711)
        os.mkdir(workdir, 0o700)
        program = os.path.join(workdir, "program.py")
        with open(program, "w", encoding="utf-8") as f:
            f.write(source)
        if uid is not None:
            os.chown(workdir, uid, uid)
            os.chown(program, uid, uid)
            nproc = limits.processes
        else:
            nproc = _tasks_of(os.getuid()) + limits.processes
        env = {"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8"}
        if audit_hook:
            argv = [interp, "-I", "-S", "-B", "-c", RUNNER, workdir, program]
        else:
            argv = [interp, "-I", "-S", "-B", program]
        start = time.monotonic()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,
            close_fds=True,
            preexec_fn=lambda: _child_setup(workdir, limits, uid, nproc, report_w),
        )
        os.close(report_w)
        report_w = -1
        with os.fdopen(report_r, "rb") as fh:
            report_r = -1
            report = fh.read()
        applied = json.loads(report or b"{}")
        out, err, status, detail = _collect(proc, limits, start)
        wall = time.monotonic() - start
    finally:
        for fd in (report_r, report_w):
            if fd >= 0:
                os.close(fd)
        if proc is not None:
            _kill_group(proc)
            if uid is not None:
                _kill_uid(interp, uid)
        shutil.rmtree(base, ignore_errors=True)

    code = proc.returncode
    stdout = out.decode("utf-8", "replace")
    stderr = err.decode("utf-8", "replace")
    blocked = [
        line[len(BLOCKED_MARK) :].strip()
        for line in stderr.splitlines()
        if line.startswith(BLOCKED_MARK)
    ]
    if status == "ok":
        status, detail = _classify(code, stderr, blocked)
    layers = {
        "workdir": "on",
        "session": "on",
        "rlimits": applied.get("rlimits", "off"),
        "network": applied.get("network", "off"),
        "mounts": applied.get("mounts", "off"),
        "unique_uid": applied.get("unique_uid", "off: not root"),
        "no_new_privs": applied.get("no_new_privs", "off"),
        "isolated_python": "on",
        "audit_hook": "on" if audit_hook else "off: disabled by the caller",
    }
    return Result(status, detail, code, stdout, stderr, wall, blocked, layers)


def _collect(proc: subprocess.Popen, limits: Limits, start: float) -> tuple[bytes, bytes, str, str]:
    """Read stdout/stderr with caps until both close or a limit is hit."""
    assert proc.stdout is not None and proc.stderr is not None
    bufs = {proc.stdout.fileno(): bytearray(), proc.stderr.fileno(): bytearray()}
    caps = {proc.stdout.fileno(): limits.output_bytes, proc.stderr.fileno(): STDERR_CAP}
    sel = selectors.DefaultSelector()
    for f in (proc.stdout, proc.stderr):
        os.set_blocking(f.fileno(), False)
        sel.register(f.fileno(), selectors.EVENT_READ)
    status, detail = "ok", ""
    deadline = start + limits.wall_seconds
    try:
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                status, detail = (
                    "timeout",
                    f"killed after {limits.wall_seconds:g} s of wall-clock time",
                )
                break
            for key, _ in sel.select(timeout=min(left, 0.5)):
                fd = key.fd
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    sel.unregister(fd)
                    continue
                room = caps[fd] - len(bufs[fd])
                bufs[fd] += chunk[: max(room, 0)]
                if len(chunk) > room and fd == proc.stdout.fileno():
                    status = "output_limit"
                    detail = f"stopped after {limits.output_bytes} bytes of output"
                    sel.close()
                    break
            if status != "ok":
                break
        if status == "ok":
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                status, detail = (
                    "timeout",
                    f"killed after {limits.wall_seconds:g} s of wall-clock time",
                )
    finally:
        sel.close()
    return bytes(bufs[proc.stdout.fileno()]), bytes(bufs[proc.stderr.fileno()]), status, detail


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not fail
        pass
    for f in (proc.stdout, proc.stderr):
        if f is not None:
            f.close()


def _classify(code: int | None, stderr: str, blocked: list[str]) -> tuple[str, str]:
    if blocked:
        return "blocked", f"the program attempted {len(blocked)} blocked operation(s): {blocked[0]}"
    if code == 0:
        return "ok", ""
    if code is not None and code < 0:
        sig = -code
        if sig in (signal.SIGXCPU, signal.SIGKILL):
            return "cpu_limit", "killed at the CPU-time limit"
        if sig == signal.SIGXFSZ:
            return "file_limit", "killed at the file-size limit"
        return "signal", f"killed by signal {signal.Signals(sig).name}"
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    last = lines[-1] if lines else ""
    if "MemoryError" in last:
        return "memory_limit", "ran out of memory at the address-space limit"
    if "[Errno 27]" in last:
        return "file_limit", "a file exceeded the file-size limit"
    return "error", f"exited with code {code}: {last[:200]}"
