"""The embedded stack's files under ``settings.home`` (PID files, lock, logs) and the generic
process helpers: PID files read against ``/proc``, terminating, ports, log tails.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from hospital_stream.errors import StackError
from hospital_stream.settings import Settings

logger = logging.getLogger(__name__)

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
# sun_path holds 108 bytes including the NUL; PostgreSQL refuses longer socket paths.
_MAX_SOCKET_PATH = 107


@dataclasses.dataclass(frozen=True)
class _Paths:
    home: Path
    lock: Path
    broker_pid: Path
    broker_log: Path
    pgdata: Path
    postgres_log: Path
    socket_dir: Path

    @property
    def postmaster_pid(self) -> Path:
        return self.pgdata / "postmaster.pid"


_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def _paths(settings: Settings) -> _Paths:
    home = settings.home.resolve()
    _, port = settings.database_address
    socket_dir = home / "run"
    if len(f"{socket_dir}/.s.PGSQL.{port}") > _MAX_SOCKET_PATH:
        digest = hashlib.sha256(str(home).encode()).hexdigest()[:12]
        socket_dir = Path("/tmp") / f"hospital-stream-{digest}"
    return _Paths(
        home=home,
        lock=home / "stack.lock",
        broker_pid=home / "broker.pid",
        broker_log=home / "broker.log",
        pgdata=home / "pgdata",
        postgres_log=home / "postgres.log",
        socket_dir=socket_dir,
    )


@contextlib.contextmanager
def _locked(paths: _Paths) -> Iterator[None]:
    """Serialise up/down of one home across processes."""
    with open(paths.lock, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _make_dirs(path: Path) -> None:
    """Create ``path`` and missing parents, each searchable by all (PostgreSQL's user needs it)."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        folder.mkdir(exist_ok=True)
        folder.chmod(0o755)


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return []


def _parse_pid(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.isdigit() and int(text) > 0 else None


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _pid_alive(pid: int) -> bool:
    """True when ``pid`` exists and is not a zombie (reaping it if it is our child)."""
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        del _CHILDREN[pid]
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _terminate(pid: int, sig: signal.Signals, timeout: float = STOP_TIMEOUT) -> None:
    """Send ``sig``, wait up to ``timeout`` seconds, then SIGKILL."""
    for current in (sig, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, current)
        deadline = time.monotonic() + (timeout if current is sig else 5.0)
        while time.monotonic() < deadline:
            if not _pid_alive(pid):
                return
            time.sleep(0.05)
        if current is sig:
            logger.warning("pid %d ignored %s for %.0f s; sending SIGKILL", pid, sig.name, timeout)
    raise StackError(f"process {pid} did not stop even after SIGKILL")


def _check_port_free(host: str, port: int, variable: str) -> None:
    """StackError unless a server could bind host:port (as the servers do, with SO_REUSEADDR)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise StackError(f"cannot resolve host {host!r} from {variable}: {exc}") from exc
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise StackError(
                    f"port {port} on {host} is already in use by another program; "
                    f"set {variable} to another port"
                ) from exc
            raise StackError(f"cannot listen on {host}:{port} ({exc.strerror})") from exc


def _wait_port(host: str, port: int, timeout: float, alive: Callable[[], object]) -> bool:
    """Wait until host:port accepts TCP connections, while ``alive()`` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        with contextlib.suppress(OSError):
            socket.create_connection((host, port), timeout=1.0).close()
            return True
        time.sleep(0.05)
    return False


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _log_tail(log_file: Path, lines: int = 3) -> str:
    """'; last log lines: ...' (one line) or '' when the log is empty."""
    tail = [line.strip() for line in _read_lines(log_file) if line.strip()][-lines:]
    if not tail:
        return ""
    return f" (see {log_file}; last lines: {_one_line(' | '.join(tail))})"


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)
