"""The embedded PostgreSQL: finding its binaries, initdb and pg_ctl, the unprivileged user it
runs as when we are root, and the owner's role and database with the worker's and the reader's
logins.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import logging
import os
import pwd
import re
import shlex
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from hospital_stream import db
from hospital_stream.devstack.processes import (
    START_TIMEOUT,
    STOP_TIMEOUT,
    _check_port_free,
    _cmdline,
    _host_port,
    _is_executable,
    _locked,
    _log_tail,
    _one_line,
    _parse_pid,
    _Paths,
    _paths,
    _pid_alive,
    _read_lines,
    _terminate,
    _wait_port,
)
from hospital_stream.errors import StackError
from hospital_stream.settings import Settings

logger = logging.getLogger(__name__)

PG_BIN_ENV = "HOSPITAL_PG_BIN"
PG_USER = "hospitalpg"
SYSTEM_PG_ROOT = Path("/usr/lib/postgresql")
PG_PROGRAMS = ("initdb", "pg_ctl", "postgres")
PG_SUPERUSER = "postgres"
# Server settings for a dev box; fsync stays on so a crash does not corrupt the data.
PG_SERVER_OPTIONS = {"max_connections": "50", "shared_buffers": "256MB"}


@dataclasses.dataclass(frozen=True)
class _PgUser:
    name: str
    uid: int
    gid: int


def find_pg_bin(env: Mapping[str, str] | None = None, pgdata: Path | None = None) -> Path:
    """The folder of initdb/pg_ctl/postgres to use (of the version that made ``pgdata``)."""
    env = os.environ if env is None else env
    return _choose_pg_bin(_pg_bin_candidates(env), pgdata)


def _up_postgres(settings: Settings, paths: _Paths) -> bool:
    """Make PostgreSQL run and hold the owner's database and the three URLs' roles; True when
    started here."""
    _check_one_server(settings)
    host, port = settings.database_address
    pid = _postgres_pid(paths)
    if pid is not None:
        running_port = _postmaster_port(paths)
        if running_port != port:
            raise StackError(
                f"the embedded PostgreSQL of {paths.home} already runs on port {running_port} "
                f"(pid {pid}), not {port}; stop it first with `hospital-stream stack down`"
            )
        if not _wait_port(host, port, START_TIMEOUT, lambda: _postgres_pid(paths) is not None):
            raise StackError(
                f"the embedded PostgreSQL (pid {pid}) does not accept connections on "
                f"{_host_port(host, port)}{_log_tail(paths.postgres_log)}"
            )
        _ensure_role_and_database(settings)
        return False
    _remove_stale_postmaster_pid(paths)
    _check_port_free(host, port, "HOSPITAL_DATABASE_URL")

    initialised = _data_version(paths.pgdata) is not None
    bin_dir = find_pg_bin(pgdata=paths.pgdata)
    user = _pg_user(paths, bin_dir)
    for folder in (paths.pgdata, paths.socket_dir):
        folder.mkdir(mode=0o700, exist_ok=True)
        _give_to(folder, user)
    paths.postgres_log.touch()
    _give_to(paths.postgres_log, user)

    t0 = time.monotonic()
    if not initialised:
        logger.info("initialising PostgreSQL data folder %s with %s", paths.pgdata, bin_dir)
        _run_pg(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(paths.pgdata),
                "-U",
                PG_SUPERUSER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
            ],
            user,
            paths,
            "initdb failed",
        )
    options = [
        "-c",
        f"listen_addresses={host}",
        "-p",
        str(port),
        "-k",
        str(paths.socket_dir),
        *[arg for key, value in PG_SERVER_OPTIONS.items() for arg in ("-c", f"{key}={value}")],
    ]
    _run_pg(
        [
            str(bin_dir / "pg_ctl"),
            "-D",
            str(paths.pgdata),
            "-l",
            str(paths.postgres_log),
            "-o",
            shlex.join(options),
            "-w",
            "-t",
            str(int(START_TIMEOUT)),
            "start",
        ],
        user,
        paths,
        f"PostgreSQL did not start on {_host_port(host, port)}",
    )
    pid = _postgres_pid(paths)
    if pid is None or not _wait_port(host, port, START_TIMEOUT, lambda: _postgres_pid(paths)):
        raise StackError(
            f"PostgreSQL did not start on {_host_port(host, port)}{_log_tail(paths.postgres_log)}"
        )
    _ensure_role_and_database(settings)
    logger.info(
        "started PostgreSQL (pid %d, %s) on %s in %.1f s",
        pid,
        bin_dir,
        _host_port(host, port),
        time.monotonic() - t0,
    )
    return True


def _down_postgres(paths: _Paths) -> bool:
    pid = _postgres_pid(paths)
    if pid is None:
        _remove_stale_postmaster_pid(paths)
        return False
    t0 = time.monotonic()
    stopped_by_pg_ctl = False
    try:
        bin_dir = find_pg_bin(pgdata=paths.pgdata)
        user = _pg_user(paths, bin_dir)
        _run_pg(
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(paths.pgdata),
                "-m",
                "fast",
                "-w",
                "-t",
                str(int(STOP_TIMEOUT)),
                "stop",
            ],
            user,
            paths,
            "pg_ctl stop failed",
        )
        stopped_by_pg_ctl = True
    except StackError as exc:
        logger.warning("pg_ctl could not stop PostgreSQL (%s); signalling pid %d", exc, pid)
    if not stopped_by_pg_ctl or _pid_alive(pid):
        # SIGINT is PostgreSQL's fast shutdown; SIGKILL follows after the timeout.
        _terminate(pid, signal.SIGINT)
    _remove_stale_postmaster_pid(paths)
    if not paths.socket_dir.is_relative_to(paths.home):
        with contextlib.suppress(OSError):
            paths.socket_dir.rmdir()  # the short fallback under /tmp, empty once stopped
    logger.info("stopped PostgreSQL (pid %d) in %.1f s", pid, time.monotonic() - t0)
    return True


def crash_postgres(settings: Settings, timeout: float = STOP_TIMEOUT) -> int:
    """Crash the embedded PostgreSQL and start it again; return the PID killed (for fault tests).

    The postmaster (the PID in ``postmaster.pid``) gets SIGKILL: no shutdown checkpoint, open
    transactions cut off. Its backends notice their postmaster died and exit; once they all
    have, the server starts again and replays its WAL (crash recovery), as after a power cut.
    """
    paths = _paths(settings)
    with _locked(paths):
        pid = _postgres_pid(paths)
        if pid is None:
            raise StackError(f"the embedded PostgreSQL of {paths.home} is not running")
        children = _read_lines(Path(f"/proc/{pid}/task/{pid}/children"))
        backends = [child for line in children for child in map(int, line.split())]
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while any(map(_pid_alive, [pid, *backends])):
            if time.monotonic() > deadline:
                raise StackError(f"PostgreSQL's processes outlived its postmaster {pid} by {timeout:.0f} s")
            time.sleep(0.05)
        # a dead postmaster no one has reaped yet still "exists" for the new one's lock check
        _, port = settings.database_address
        socket_lock = paths.socket_dir / f".s.PGSQL.{port}.lock"
        if _parse_pid((_read_lines(socket_lock) or [""])[0]) == pid:
            socket_lock.unlink(missing_ok=True)
        logger.warning("crashed PostgreSQL (SIGKILL to postmaster %d); starting it again", pid)
        _up_postgres(settings, paths)
    return pid


def _postgres_pid(paths: _Paths) -> int | None:
    """The postmaster's PID when it runs from our data folder, else None."""
    lines = _read_lines(paths.postmaster_pid)
    pid = _parse_pid(lines[0] if lines else "")
    if pid is None or not _pid_alive(pid):
        return None
    argv = _cmdline(pid)
    if not argv or Path(argv[0]).name not in ("postgres", "postmaster"):
        return None
    return pid if str(paths.pgdata) in argv else None


def _postmaster_port(paths: _Paths) -> int | None:
    lines = _read_lines(paths.postmaster_pid)
    try:
        return int(lines[3])
    except (IndexError, ValueError):
        return None


def _remove_stale_postmaster_pid(paths: _Paths) -> None:
    if paths.postmaster_pid.exists() and _postgres_pid(paths) is None:
        logger.info("removing stale %s", paths.postmaster_pid)
        paths.postmaster_pid.unlink(missing_ok=True)


def _database_urls(settings: Settings) -> dict[str, str]:
    """The owner's, the worker's and the reader's URLs, each by its variable."""
    return {
        "HOSPITAL_ADMIN_DATABASE_URL": settings.admin_url,
        "HOSPITAL_DATABASE_URL": settings.database_url,
        "HOSPITAL_READER_DATABASE_URL": settings.reader_url,
    }


def _check_one_server(settings: Settings) -> None:
    """StackError unless the three URLs name the one embedded server (of HOSPITAL_DATABASE_URL)."""
    address = settings.database_address
    for variable, url in _database_urls(settings).items():
        parts = urlsplit(url)
        named = (parts.hostname or "127.0.0.1", parts.port or 5432)
        if named != address:
            raise StackError(
                f"{variable} names {_host_port(*named)}, but the embedded PostgreSQL listens on "
                f"{_host_port(*address)} (from HOSPITAL_DATABASE_URL)"
            )


def _ensure_role_and_database(settings: Settings) -> None:
    """Create the owner role and its database when missing, and the worker's and the reader's
    logins in their group roles; then check that all three URLs connect."""
    host, port = settings.database_address
    info = conninfo_to_dict(settings.admin_url)
    owner = str(info.get("user") or pwd.getpwuid(os.geteuid()).pw_name)
    dbname = str(info.get("dbname") or owner)
    try:
        with psycopg.connect(
            host=host,
            port=port,
            user=PG_SUPERUSER,
            dbname="postgres",
            autocommit=True,
            connect_timeout=10,
        ) as conn:
            if (
                owner != PG_SUPERUSER
                and not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (owner,)).fetchone()
            ):
                conn.execute(
                    sql.SQL("CREATE ROLE {} LOGIN CREATEROLE CREATEDB").format(sql.Identifier(owner))
                )
                logger.info("created PostgreSQL role %s", owner)
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone():
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(dbname), sql.Identifier(owner)
                    )
                )
                logger.info("created PostgreSQL database %s", dbname)
            db.ensure_logins(conn, settings.database_url, settings.reader_url)
        for url in _database_urls(settings).values():
            with psycopg.connect(url, connect_timeout=10) as conn:
                conn.execute("SELECT 1")
    except psycopg.Error as exc:
        message = " ".join(str(exc).split())
        raise StackError(
            f"the embedded PostgreSQL on {_host_port(host, port)} is up but refused setup: {message}"
        ) from exc


# --- binaries


def _pg_bin_candidates(
    env: Mapping[str, str],
    system_root: Path = SYSTEM_PG_ROOT,
    bundled: Path | None = None,
) -> list[tuple[str, Path]]:
    """(where it came from, bin folder) in order of preference."""
    explicit = env.get(PG_BIN_ENV, "").strip()
    if explicit:
        folder = Path(explicit).expanduser()
        missing = [name for name in PG_PROGRAMS if not _is_executable(folder / name)]
        if missing:
            raise StackError(
                f"{PG_BIN_ENV}={explicit} holds no executable {', '.join(missing)}; "
                "point it at a PostgreSQL bin folder"
            )
        return [(PG_BIN_ENV, folder)]
    candidates = []
    system = [
        folder
        for folder in system_root.glob("*/bin")
        if all(_is_executable(folder / name) for name in PG_PROGRAMS)
    ]
    system.sort(key=lambda folder: _version_key(folder.parent.name), reverse=True)
    candidates += [("system", folder) for folder in system]
    bundled = _bundled_pg_bin() if bundled is None else bundled
    if bundled is not None and all(_is_executable(bundled / name) for name in PG_PROGRAMS):
        candidates.append(("pgserver", bundled))
    return candidates


def _choose_pg_bin(candidates: list[tuple[str, Path]], pgdata: Path | None = None) -> Path:
    if not candidates:
        raise StackError(
            "no PostgreSQL binaries found: install the pgserver wheel or a system PostgreSQL "
            f"(/usr/lib/postgresql/*/bin), or set {PG_BIN_ENV} to a folder with initdb and pg_ctl"
        )
    data_version = _data_version(pgdata) if pgdata is not None else None
    if data_version is None:
        return candidates[0][1]
    found = []
    for source, folder in candidates:
        version = _pg_major_version(folder)
        if version == data_version:
            return folder
        found.append(f"{version} ({source})")
    raise StackError(
        f"{pgdata} was made by PostgreSQL {data_version} but only PostgreSQL "
        f"{', '.join(found)} was found; set {PG_BIN_ENV} to PostgreSQL {data_version} binaries "
        "or remove the data folder"
    )


def _data_version(pgdata: Path) -> str | None:
    """The major version of the cluster in ``pgdata``, or None when it is not initialised."""
    lines = _read_lines(pgdata / "PG_VERSION")
    return lines[0].strip() if lines else None


def _bundled_pg_bin() -> Path | None:
    """The pgserver wheel's bin folder, found without importing the package."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _pg_major_version(bin_dir: Path) -> str | None:
    try:
        out = subprocess.run(
            [str(bin_dir / "postgres"), "--version"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"\)\s*(\d+)(?:\.(\d+))?", out)
    if not match:
        return None
    major = int(match.group(1))
    # Before PostgreSQL 10 the major version had two parts (9.6).
    return f"{major}.{match.group(2)}" if major < 10 and match.group(2) else str(major)


def _version_key(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text))


# --- running as an unprivileged user when root


def _pg_user(paths: _Paths, bin_dir: Path) -> _PgUser | None:
    """The user PostgreSQL runs as when we are root (it refuses root); None otherwise."""
    if os.geteuid() != 0:
        return None
    owner = paths.pgdata.stat().st_uid if paths.pgdata.exists() else 0
    if owner != 0:
        entry = pwd.getpwuid(owner)
    else:
        entry = _find_user(PG_USER) or _find_user("postgres") or _create_pg_user()
    user = _PgUser(entry.pw_name, entry.pw_uid, entry.pw_gid)
    for folder in (paths.home, bin_dir):
        _check_traversable(folder, user)
    return user


def _find_user(name: str) -> pwd.struct_passwd | None:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return entry if entry.pw_uid != 0 else None


def _create_pg_user() -> pwd.struct_passwd:
    useradd = shutil.which("useradd")
    if useradd is None:
        raise StackError(
            f"running as root, PostgreSQL needs an unprivileged user but useradd is missing; "
            f"create a user named {PG_USER}"
        )
    logger.info("creating system user %s to run PostgreSQL", PG_USER)
    result = subprocess.run(
        [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER],
        capture_output=True,
        text=True,
    )
    entry = _find_user(PG_USER)
    if entry is None:
        raise StackError(f"could not create user {PG_USER}: {_one_line(result.stderr)}")
    return entry


def _check_traversable(path: Path, user: _PgUser) -> None:
    """Raise StackError unless ``user`` may enter every folder from / down to ``path``."""
    groups = {user.gid, *(g for g in os.getgrouplist(user.name, user.gid))}
    for folder in [*reversed(path.parents), path]:
        info = folder.stat()
        if info.st_uid == user.uid:
            allowed = info.st_mode & stat.S_IXUSR
        elif info.st_gid in groups:
            allowed = info.st_mode & stat.S_IXGRP
        else:
            allowed = info.st_mode & stat.S_IXOTH
        if not allowed:
            raise StackError(
                f"PostgreSQL runs as user {user.name}, which cannot enter {folder} "
                f"(mode {stat.S_IMODE(info.st_mode):o}); choose a HOSPITAL_HOME reachable by "
                "all users or `chmod o+x` that folder"
            )


def _give_to(path: Path, user: _PgUser | None) -> None:
    if user is not None:
        os.chown(path, user.uid, user.gid)


def _run_pg(
    cmd: list[str], user: _PgUser | None, paths: _Paths, failure: str
) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL program (as ``user`` when given); StackError with its output on failure."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(LC_ALL="C", HOME=str(paths.home))
    extra: dict[str, object] = {}
    if user is not None:
        extra = {"user": user.uid, "group": user.gid, "extra_groups": []}
    logger.debug("running %s", shlex.join(cmd))
    try:
        result = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            env=env,
            cwd=paths.home,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            timeout=START_TIMEOUT + 30,
            **extra,  # type: ignore[call-overload]
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise StackError(f"{failure}: {_one_line(str(exc))}") from exc
    if result.returncode != 0:
        output = _one_line(result.stderr or result.stdout)
        raise StackError(f"{failure}: {output}{_log_tail(paths.postgres_log)}")
    return result
