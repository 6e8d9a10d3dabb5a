"""An embedded stack of its own: a home, free broker, PostgreSQL and web ports, on 127.0.0.1.
The benchmarks and the integration tests start theirs this way, beside any other."""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path

from hospital_stream.settings import Settings


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stack_settings(home: Path) -> Settings:
    """Settings of an embedded stack of its own: ``home``, free broker, PostgreSQL and web ports."""
    return Settings.from_env(
        {
            "HOSPITAL_HOME": str(home),
            "HOSPITAL_KAFKA_URL": f"kafka://127.0.0.1:{free_port()}",
            "HOSPITAL_DATABASE_URL": f"postgresql://hospital@127.0.0.1:{free_port()}/hospital",
            "HOSPITAL_WEB_PORT": str(free_port()),
        }
    )


def traversable_tempdir(prefix: str) -> Path:
    """A new temporary folder others may traverse: when run as root, PostgreSQL runs as an
    unprivileged user that must reach its data folder (pytest's tmp_path is mode 700)."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    base.chmod(0o755)
    return base
