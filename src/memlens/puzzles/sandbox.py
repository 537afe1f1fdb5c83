"""A sandbox for program answers: run untrusted Python, get its output, contain everything else.

Model-written code is a security boundary, and memlens may run as root (it does on the machine
this was built on), so file permissions alone protect nothing. Every run stacks these layers;
:attr:`Result.layers` records which ones were in force for that run.

Kernel-enforced (cannot be undone from inside the program):

``workdir``
    A fresh private temporary directory (mode 0700) is the program's cwd, ``HOME`` and ``TMPDIR``;
    it is deleted afterwards.
``rlimits``
    ``RLIMIT_CPU`` (SIGXCPU at the limit, SIGKILL a second later), ``RLIMIT_AS`` (memory),
    ``RLIMIT_NPROC`` (processes/threads), ``RLIMIT_FSIZE`` (largest file), ``RLIMIT_NOFILE``,
    ``RLIMIT_CORE = 0``; hard limits equal soft limits, so the program cannot raise them.
``session``
    The program leads its own session and process group; on wall-clock timeout, output overflow
    or exit, the whole group is killed with SIGKILL.
``unique_uid`` (when started as root)
    The program runs as a fresh unprivileged uid/gid with no supplementary groups and
    ``PR_SET_NO_NEW_PRIVS``: it cannot write anything it does not own, cannot signal or trace other
    processes, and ``RLIMIT_NPROC`` (ignored for root) counts only its own processes. After the
    run every process of that uid is killed (``kill(-1)`` as that uid), so even a process that
    left the group dies.
``network`` (``unshare(CLONE_NEWNET)``; a new user namespace when not root)
    A new network namespace with no interfaces but a down loopback: no connection can be made.
``mounts`` (``unshare(CLONE_NEWNS)``)
    A private mount namespace where the world-writable directories (``/tmp``, ``/var/tmp``,
    ``/dev/shm``, ``/run/lock``) are read-only bind mounts, except the work directory itself.

In the interpreter (defence in depth; Python audit hooks are not a boundary by themselves):

``isolated_python``
    ``python -I -S -B`` (no environment variables, user site, site-packages or bytecode writes),
    stdin from ``/dev/null``, a minimal environment.
``audit_hook``
    A :pep:`578` audit hook installed before the program runs. It refuses imports of ``socket``,
    ``ssl``, ``subprocess``, ``_posixsubprocess``, ``multiprocessing``, ``ctypes``, ``pty``,
    ``select``, ``fcntl``, ``mmap``; the events for sockets, fork, exec, spawn, ``os.system``,
    ``os.kill``, ``setrlimit``, ctypes, symlinks and ``gc.get_objects``; opening a file for
    writing (or removing, renaming, creating, chmod-ing one) outside the work directory; reading
    anything but the work directory and the Python standard library, and opening directories
    outside (no ``dir_fd`` tricks). It resolves paths with its own copy of ``realpath`` built
    on ``os`` functions and builtins captured before the program starts, so patching
    ``os.getcwd``, ``posixpath`` or ``builtins`` does not blind it; paths must be plain ``str``
    or ``bytes``. Each refusal is printed to stderr as ``memlens-sandbox: blocked ...`` and
    raises ``PermissionError``; any refusal makes the run's status ``blocked``.

Not covered: with the hook defeated, the unique uid can still *read* world-readable files;
there is no seccomp filter and no CPU-share or disk-quota control beyond the limits above.

What a run reports: :class:`Result` with stdout (at most ``Limits.output_bytes``; reading stops
and the group is killed past it), stderr (first 64 KiB), a status (``ok``, ``error``,
``timeout``, ``cpu_limit``, ``memory_limit``, ``file_limit``, ``output_limit``, ``blocked``,
``signal``), the blocked operations and the layers in force.
"""

from __future__ import annotations

import ctypes
import json
import os
import random
import resource
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

from pydantic import ConfigDict, Field

from memlens.config import Config

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV = 1, 2, 4
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
PR_SET_NO_NEW_PRIVS = 38
WORLD_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/var/lock")
STDERR_CAP = 64 * 1024
BLOCKED_MARK = "memlens-sandbox: blocked "


class Limits(Config):
    """Resource limits for one sandboxed run.

    Attributes
    ----------
    cpu_seconds:
        CPU time (``RLIMIT_CPU``), whole seconds.
    wall_seconds:
        Wall-clock time before the process group is killed.
    memory_mb:
        Address space (``RLIMIT_AS``) in MiB.
    output_bytes:
        Most stdout kept; more kills the program (status ``output_limit``).
    file_bytes:
        Largest file the program may write in its directory (``RLIMIT_FSIZE``).
    open_files:
        ``RLIMIT_NOFILE``.
    processes:
        Processes (and threads) the program may have in all, itself included (``RLIMIT_NPROC``,
        enforced per uid, so exactly only with ``unique_uid``).
    """

    what: ClassVar[str] = "sandbox limits"
    model_config = ConfigDict(frozen=True)
    cpu_seconds: int = Field(default=5, ge=1)
    wall_seconds: float = Field(default=10.0, gt=0)
    memory_mb: int = Field(default=512, ge=1)
    output_bytes: int = Field(default=8 * 1024 * 1024, ge=1)
    file_bytes: int = Field(default=1024 * 1024, ge=1)
    open_files: int = Field(default=64, ge=1)
    processes: int = Field(default=1, ge=1)


@dataclass
class Result:
    """The outcome of one sandboxed run (see the module docstring for ``status``)."""

    status: str
    detail: str
    returncode: int | None
    stdout: str
    stderr: str
    wall_seconds: float
    blocked: list[str] = field(default_factory=list)
    layers: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def summary(self) -> dict[str, Any]:
        """Everything but the captured output (for per-item records)."""
        d = asdict(self)
        d.pop("stdout")
        d["stderr_tail"] = d.pop("stderr")[-500:]
        return d


# -- the code that runs first inside the sandboxed interpreter --------------------------------

RUNNER = r"""
import sys, os


def _install(work):
    # Everything the hook uses is bound here, so the program cannot swap it out later: builtins,
    # os functions (C functions captured before any user code runs), the path resolver.
    import stat as _stat
    type_, str_, bytes_, int_, len_, reversed_ = type, str, bytes, int, len, reversed
    PermissionError_, OSError_, Exception_ = PermissionError, OSError, Exception
    getcwd, lstat, stat_, readlink, write = os.getcwd, os.lstat, os.stat, os.readlink, os.write
    S_ISDIR, S_ISLNK = _stat.S_ISDIR, _stat.S_ISLNK

    def resolve_str(p):
        # realpath with captured primitives: symlinks followed, '..' applied, missing parts kept.
        if not p.startswith("/"):
            p = getcwd() + "/" + p
        out, todo, links = [], p.split("/"), 0
        todo.reverse()
        while todo:
            part = todo.pop()
            if part == "" or part == ".":
                continue
            if part == "..":
                if out:
                    out.pop()
                continue
            cur = "/" + "/".join(out + [part])
            try:
                is_link = S_ISLNK(lstat(cur).st_mode)
            except OSError_:
                is_link = False
            if not is_link:
                out.append(part)
                continue
            links += 1
            if links > 40:
                return None
            target = readlink(cur)
            if target.startswith("/"):
                out = []
            more = target.split("/")
            more.reverse()
            todo.extend(more)
        return "/" + "/".join(out)

    def resolve(p):
        if type_(p) is bytes_:
            p = p.decode("utf-8", "surrogateescape")
        return resolve_str(p) if type_(p) is str_ else None  # str subclasses and PathLike: no

    work = resolve_str(work)
    roots = tuple(resolve_str(p) for p in (
        sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.__file__),
        "/dev/null", "/dev/urandom", "/dev/random", "/etc/localtime", "/usr/share/zoneinfo",
    ))
    mods = frozenset((
        "socket", "_socket", "ssl", "_ssl", "subprocess", "_posixsubprocess", "multiprocessing",
        "_multiprocessing", "ctypes", "_ctypes", "pty", "asyncio", "_asyncio", "select",
        "selectors", "fcntl", "termios", "mmap",
    ))
    banned = (
        "socket.", "ctypes.", "subprocess.", "os.exec", "os.spawn", "os.posix_spawn", "os.fork",
        "os.forkpty", "os.system", "os.kill", "os.killpg", "os.symlink", "os.link", "pty.",
        "resource.setrlimit", "resource.prlimit", "gc.get_", "signal.pthread_kill",
        "sys.addaudithook", "os.startfile", "webbrowser.", "_posixsubprocess",
    )
    paths = {
        "os.remove": (0,), "os.rmdir": (0,), "os.rename": (0, 1), "os.mkdir": (0,),
        "os.chmod": (0,), "os.chown": (0,), "os.truncate": (0,), "os.utime": (0,),
        "os.setxattr": (0,), "os.removexattr": (0,), "os.chflags": (0,), "os.lchflags": (0,),
        "shutil.rmtree": (0,), "shutil.copyfile": (1,), "shutil.copymode": (1,),
        "shutil.copystat": (1,), "shutil.move": (1,), "shutil.chown": (0,),
        "tempfile.mkstemp": (0,), "tempfile.mkdtemp": (0,), "os.mkfifo": (0,), "os.mknod": (0,),
    }
    dir_fd_events = frozenset(("os.rename", "os.remove", "os.mkdir", "os.rmdir", "os.chmod"))
    writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def deny(event, detail):
        try:
            write(2, ("memlens-sandbox: blocked %s %s\n" % (event, detail)).encode("utf-8", "replace"))
        except Exception_:
            pass
        raise PermissionError_("memlens sandbox: %s is not allowed" % event)

    def inside(p, base):
        return p == base or p.startswith(base + "/")

    def readable(p):
        for root in roots:
            if inside(p, root):
                return True
        return False

    def hook(event, args):
        if type_(event) is not str_:
            return
        if event == "import":
            name = args[0]
            if type_(name) is not str_ or name.partition(".")[0] in mods:
                deny(event, name if type_(name) is str_ else "a non-str module name")
            return
        if event == "open":
            path, mode, flags = args
            if type_(path) is int_:
                return
            r = resolve(path)
            if r is None:
                deny(event, "a path that is not a plain str or bytes")
            if inside(r, work):
                return
            wants_write = (type_(mode) is str_ and ("w" in mode or "a" in mode or "x" in mode
                           or "+" in mode)) or (type_(flags) is int_ and flags & writing)
            if wants_write:
                deny(event, "writing " + r)
            try:
                is_dir = S_ISDIR(stat_(r).st_mode)
            except OSError_:
                is_dir = False
            if is_dir or not readable(r):
                deny(event, "reading " + r)
            return
        slots = paths.get(event)
        if slots is not None:
            for i in slots:
                if i < len_(args) and type_(args[i]) is not int_:
                    r = resolve(args[i])
                    if r is None or not inside(r, work):
                        deny(event, "%s" % (r,))
            if event in dir_fd_events:
                for a in args[2:]:
                    if type_(a) is int_:
                        deny(event, "a dir_fd path")
            return
        if event.startswith(banned):
            deny(event, "")

    sys.addaudithook(hook)


def _main():
    work, program = sys.argv[1], sys.argv[2]
    with open(program, encoding="utf-8") as f:
        source = f.read()
    code = compile(source, "program.py", "exec")
    sys.argv = ["program.py"]
    sys.dont_write_bytecode = True
    _install(work)
    exec(code, {"__name__": "__main__", "__builtins__": __builtins__})


_main()
"""


# -- planning: which interpreter, which layers ------------------------------------------------


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_ulong,
        ctypes.c_void_p,
    ]
    libc.unshare.argtypes = [ctypes.c_int]
    libc.prctl.argtypes = [
        ctypes.c_int,
        ctypes.c_ulong,
        ctypes.c_ulong,
        ctypes.c_ulong,
        ctypes.c_ulong,
    ]
    return libc


def _world_reachable(path: str, need: int) -> bool:
    """Whether "others" can traverse to ``path`` and have the ``need`` permission bits on it."""
    p = Path(path)
    try:
        for parent in list(p.parents)[::-1]:
            if not os.stat(parent).st_mode & stat.S_IXOTH:
                return False
        return (os.stat(p).st_mode & need) == need
    except OSError:
        return False


def _interpreters() -> list[str]:
    """Candidate interpreters: this one first, then system ones (all with the same major)."""
    seen: list[str] = []
    for c in (
        getattr(sys, "_base_executable", None) or sys.executable,
        sys.executable,
        shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin"),
    ):
        if c and os.path.exists(c):
            real = os.path.realpath(c)
            if real not in seen:
                seen.append(real)
    return seen


def _unprivileged_ok(interp: str) -> bool:
    """An unprivileged uid can run ``interp`` and read its standard library."""
    if not _world_reachable(interp, stat.S_IXOTH | stat.S_IROTH):
        return False
    if interp == os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable):
        stdlib = os.path.dirname(os.__file__)
        return _world_reachable(stdlib, stat.S_IXOTH | stat.S_IROTH)
    prefix = os.path.dirname(os.path.dirname(interp))
    return _world_reachable(os.path.join(prefix, "lib"), stat.S_IXOTH | stat.S_IROTH)


@dataclass(frozen=True)
class _Plan:
    interpreter: str
    drop_uid: bool
    note: str


@lru_cache(maxsize=1)
def _plan() -> _Plan:
    """Choose the interpreter; drop to a unique uid when root and an interpreter allows it."""
    candidates = _interpreters()
    if os.geteuid() != 0:
        return _Plan(candidates[0], False, "not root: runs as the current user")
    for interp in candidates:
        if _unprivileged_ok(interp):
            probe = _run(
                interp,
                "print(6 * 7)",
                Limits(cpu_seconds=10, wall_seconds=30),
                drop_uid=True,
                audit_hook=True,
            )
            if probe.status == "ok" and probe.stdout.strip() == "42":
                return _Plan(interp, True, "")
    return _Plan(
        candidates[0],
        False,
        "no Python interpreter is readable by an unprivileged uid, so the program runs as root",
    )


def layers() -> dict[str, str]:
    """The layers a run gets on this machine (``"on"`` or ``"off: why"``), by running a probe."""
    return run_python("print('ok')").layers


# -- the child side: set up namespaces, limits and identity, then exec ------------------------


def _child_setup(workdir: str, limits: Limits, uid: int | None, nproc: int, report_fd: int) -> None:
    """Runs in the forked child before exec (``preexec_fn``); reports what it applied."""
    libc = _LIBC
    applied: dict[str, str] = {}

    def err() -> str:
        return os.strerror(ctypes.get_errno())

    root = os.geteuid() == 0
    flags = CLONE_NEWNS | CLONE_NEWNET if root else CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET
    if libc is not None and libc.unshare(flags) == 0:
        applied["network"] = "on"
        ok = libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) == 0
        ok = ok and libc.mount(workdir.encode(), workdir.encode(), None, MS_BIND, None) == 0
        for d in WORLD_WRITABLE:
            if not ok:
                break
            if not os.path.isdir(d) or os.path.islink(d):
                continue
            b = d.encode()
            ok = libc.mount(b, b, None, MS_BIND | MS_REC, None) == 0 and (
                libc.mount(
                    None, b, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, None
                )
                == 0
            )
        applied["mounts"] = "on" if ok else f"off: mount failed ({err()})"
    else:
        applied["network"] = f"off: unshare failed ({err()})"
        applied["mounts"] = "off: no mount namespace"

    lim = {
        resource.RLIMIT_CPU: (limits.cpu_seconds, limits.cpu_seconds + 1),
        resource.RLIMIT_AS: (limits.memory_mb * 2**20,) * 2,
        resource.RLIMIT_NPROC: (nproc, nproc),
        resource.RLIMIT_FSIZE: (limits.file_bytes,) * 2,
        resource.RLIMIT_NOFILE: (limits.open_files,) * 2,
        resource.RLIMIT_CORE: (0, 0),
    }
    for which, (soft, hard) in lim.items():
        resource.setrlimit(which, (soft, hard))
    applied["rlimits"] = "on"

    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        applied["unique_uid"] = f"on (uid {uid})"
    if libc is not None and libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0:
        applied["no_new_privs"] = "on"
    os.chdir(workdir)
    os.write(report_fd, json.dumps(applied).encode())
    os.close(report_fd)


try:
    _LIBC = _libc()
except (
    OSError,
    AttributeError,
):  # pragma: no cover - not Linux: no namespaces, rlimits still apply
    _LIBC = None


def _tasks_of(uid: int) -> int:
    """Processes and threads owned by ``uid`` (what ``RLIMIT_NPROC`` counts)."""
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid != uid:
                    continue
                with open(f"/proc/{entry.name}/stat", "rb") as f:
                    if f.read().rsplit(b")", 1)[-1].split()[0] == b"Z":
                        continue  # killed already, waiting for its parent to reap it
                count += len(os.listdir(f"/proc/{entry.name}/task"))
            except (OSError, IndexError):
                continue
    return count


def _kill_uid(interp: str, uid: int) -> None:
    """Kill every process of ``uid`` (``kill(-1)`` as that uid reaches exactly them)."""
    for _ in range(3):
        if _tasks_of(uid) == 0:
            return
        subprocess.run(
            [interp, "-I", "-S", "-c", "import os; os.kill(-1, 9)"],
            user=uid,
            group=uid,
            extra_groups=[],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=10,
            check=False,
        )


# -- the parent side ---------------------------------------------------------------------------


def run_python(source: str, limits: Limits | None = None, *, audit_hook: bool = True) -> Result:
    """Run the Python program ``source`` in the sandbox and return its output and status.

    Parameters
    ----------
    source:
        The program text (standard library only; it gets no input).
    limits:
        :class:`Limits` (defaults: 5 s CPU, 10 s wall, 512 MiB, 8 MiB of output, 1 process).
    audit_hook:
        Leave on. Turning it off exists only so tests can show what the kernel layers contain
        on their own.

    Examples
    --------
    >>> run_python("print(sum(range(10)))").stdout
    '45\\n'
    """
    plan = _plan()
    result = _run(
        plan.interpreter, source, limits or Limits(), drop_uid=plan.drop_uid, audit_hook=audit_hook
    )
    if not plan.drop_uid:
        result.layers["unique_uid"] = f"off: {plan.note}"
    return result


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
