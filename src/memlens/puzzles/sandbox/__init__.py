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

from memlens.puzzles.sandbox.limits import Limits, Result
from memlens.puzzles.sandbox.parent import _run
from memlens.puzzles.sandbox.plan import _plan

__all__ = ["Limits", "Result", "layers", "run_python"]


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


def layers() -> dict[str, str]:
    """The layers a run gets on this machine (``"on"`` or ``"off: why"``), by running a probe."""
    return run_python("print('ok')").layers
