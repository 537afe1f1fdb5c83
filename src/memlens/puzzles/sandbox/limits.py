"""What a sandboxed run may use (:class:`Limits`) and what it reports (:class:`Result`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from pydantic import ConfigDict, Field

from memlens.config import Config


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
    """The outcome of one sandboxed run (see :mod:`memlens.puzzles.sandbox` for ``status``)."""

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
