"""The embedded stack really starts, answers, refuses busy ports and stops."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from hospital_stream import db
from hospital_stream.devstack import postgres, stack
from hospital_stream.errors import StackError
from hospital_stream.settings import DEFAULT_ADMIN_USER, DEFAULT_READER_USER, DEFAULT_WORKER_USER, with_user

pytestmark = pytest.mark.integration


def _running(pid: int) -> bool:
    """True when ``pid`` is a live (non-zombie) process."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _listening_socket(port: int) -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    sock.listen()
    return sock


def test_session_stack_is_running_and_up_again_starts_nothing(embedded_stack):
    states = stack.status(embedded_stack)
    assert set(states) == {"postgres", "broker"}
    for name, state in states.items():
        assert state.running, name
        assert state.pid is not None and _running(state.pid)
        assert state.log_file.parent == embedded_stack.home.resolve()
    assert states["broker"].address == "{}:{}".format(*embedded_stack.kafka_address)
    assert states["postgres"].address == "{}:{}".format(*embedded_stack.database_address)
    assert stack.up(embedded_stack) == []
    assert {n: s.pid for n, s in stack.status(embedded_stack).items()} == {
        n: s.pid for n, s in states.items()
    }


def test_postgres_accepts_the_settings_url_on_localhost_only(embedded_stack):
    with psycopg.connect(embedded_stack.database_url, connect_timeout=5) as conn:
        assert conn.execute("SELECT current_user, current_database(), 1").fetchone() == (
            "hospital",
            "hospital",
            1,
        )
        assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
        assert conn.execute("SHOW fsync").fetchone() == ("on",)
        # The role owns its database, so migrations can create tables there.
        conn.execute("CREATE TEMP TABLE probe (x int)")


def test_broker_round_trips_a_message(embedded_stack):
    bootstrap = "{}:{}".format(*embedded_stack.kafka_address)
    topic = f"test.stack.{uuid.uuid4().hex[:8]}"

    async def round_trip() -> tuple[bytes, bytes]:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"hello", key=b"k1")
        finally:
            await producer.stop()
        # No group: Tansu holds a JoinGroup for half the session timeout.
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            group_id=None,
        )
        await consumer.start()
        try:
            message = await asyncio.wait_for(consumer.getone(), timeout=20)
        finally:
            await consumer.stop()
        return message.key, message.value

    assert asyncio.run(round_trip()) == (b"k1", b"hello")


def test_env_lines_let_a_shell_reach_the_stack(embedded_stack):
    lines = stack.env_lines(embedded_stack)
    names = [
        "HOSPITAL_HOME",
        "HOSPITAL_KAFKA_URL",
        "HOSPITAL_DATABASE_URL",
        "HOSPITAL_ADMIN_DATABASE_URL",
        "HOSPITAL_READER_DATABASE_URL",
    ]
    assert [line.split("=")[0] for line in lines] == [f"export {name}" for name in names]
    script = "\n".join(lines) + '\nprintf "%s\\n"' + "".join(f' "${name}"' for name in names)
    out = subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={},
    ).stdout.splitlines()
    assert out == [
        str(embedded_stack.home),
        embedded_stack.kafka_url,
        embedded_stack.database_url,
        embedded_stack.admin_url,
        embedded_stack.reader_url,
    ]
    # The session stack's worker URL names the owner; the reader follows it as the default login.
    for url, user in zip(out[2:], [DEFAULT_ADMIN_USER, DEFAULT_ADMIN_USER, DEFAULT_READER_USER], strict=True):
        with psycopg.connect(url, connect_timeout=5) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (user,)


def test_up_makes_the_default_logins_members_of_their_groups_and_is_idempotent(embedded_stack):
    settings = embedded_stack.replace(
        database_url=with_user(embedded_stack.database_url, DEFAULT_WORKER_USER)
    )
    assert stack.up(settings) == []  # PostgreSQL already runs: only the roles are seen to
    assert stack.up(settings) == []
    with psycopg.connect(settings.admin_url, autocommit=True) as conn:
        assert db.ensure_logins(conn, settings.database_url, settings.reader_url) == []  # nothing left
        for login, group in ((DEFAULT_WORKER_USER, db.WRITER_ROLE), (DEFAULT_READER_USER, db.READER_ROLE)):
            row = conn.execute(
                "SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, pg_has_role(rolname, %s, 'MEMBER')"
                " FROM pg_roles WHERE rolname = %s",
                (group, login),
            ).fetchone()
            assert row == (True, False, False, False, True), login
        assert conn.execute(
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (db.WRITER_ROLE,)
        ).fetchone() == (False,)
    for url, user in (
        (settings.database_url, DEFAULT_WORKER_USER),
        (settings.reader_url, DEFAULT_READER_USER),
    ):
        with psycopg.connect(url, connect_timeout=5) as conn:
            assert conn.execute("SELECT current_user, current_database()").fetchone() == (user, "hospital")


def test_a_missing_login_is_created_with_its_password_and_an_existing_role_is_left_alone(embedded_stack):
    name = f"login_{uuid.uuid4().hex[:8]}"
    host, port = embedded_stack.database_address
    superuser = f"postgresql://{postgres.PG_SUPERUSER}@{host}:{port}/postgres"  # as compose's migrate runs
    with psycopg.connect(superuser, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{name}" LOGIN')
        writer = with_user(embedded_stack.database_url, f"{name}_w").replace("@", ":pw-1@", 1)
        reader = with_user(embedded_stack.database_url, name).replace("@", ":pw-2@", 1)
        assert db.ensure_logins(conn, writer, reader) == [f"created login {name}_w in {db.WRITER_ROLE}"]
        assert db.ensure_logins(conn, writer, reader) == []
        rows = conn.execute(
            "SELECT rolname, rolpassword IS NOT NULL, pg_has_role(rolname, %s, 'MEMBER'),"
            " pg_has_role(rolname, %s, 'MEMBER') FROM pg_authid WHERE rolname IN (%s, %s) ORDER BY 1",
            (db.WRITER_ROLE, db.READER_ROLE, name, f"{name}_w"),
        ).fetchall()
        # The new login has the URL's password and its group; the role someone made gains nothing.
        assert rows == [(name, False, False, False), (f"{name}_w", True, True, False)]
        conn.execute(f'DROP ROLE "{name}", "{name}_w"')


def test_busy_postgres_port_is_one_clear_line_and_starts_nothing(new_stack_settings):
    settings = new_stack_settings()
    _, port = settings.database_address
    with _listening_socket(port), pytest.raises(StackError) as caught:
        stack.up(settings)
    message = str(caught.value)
    assert message == (
        f"port {port} on 127.0.0.1 is already in use by another program; "
        "set HOSPITAL_DATABASE_URL to another port"
    )
    assert not any(s.running for s in stack.status(settings).values())


def test_lifecycle_busy_broker_port_partial_down_restart_and_down(new_stack_settings):
    settings = new_stack_settings()
    _, kafka_port = settings.kafka_address
    with (
        _listening_socket(kafka_port),
        pytest.raises(StackError, match=f"port {kafka_port} .*HOSPITAL_KAFKA_URL") as caught,
    ):
        stack.up(settings)
    assert "\n" not in str(caught.value)
    states = stack.status(settings)
    assert states["postgres"].running and not states["broker"].running

    assert stack.up(settings) == ["broker"]
    assert stack.up(settings) == []
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE survives_restart (x int)")
        conn.execute("INSERT INTO survives_restart VALUES (42)")

    broker_pid = stack.status(settings)["broker"].pid
    assert stack.down(settings, only=["broker"]) == ["broker"]
    assert not _running(broker_pid)
    states = stack.status(settings)
    assert states["postgres"].running and not states["broker"].running
    assert stack.up(settings) == ["broker"]

    pids = [s.pid for s in stack.status(settings).values()]
    assert stack.down(settings) == ["postgres", "broker"]
    assert not any(_running(pid) for pid in pids)
    assert not any(s.running for s in stack.status(settings).values())
    home = settings.home.resolve()
    assert not (home / "broker.pid").exists()
    assert not (home / "pgdata" / "postmaster.pid").exists()
    assert stack.down(settings) == []

    assert stack.up(settings) == ["postgres", "broker"]
    with psycopg.connect(settings.database_url) as conn:
        assert conn.execute("SELECT x FROM survives_restart").fetchall() == [(42,)]
    assert stack.down(settings, only=["broker", "postgres"]) == ["broker", "postgres"]


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands PostgreSQL to another user")
def test_root_refuses_a_home_postgres_cannot_reach(tmp_path, new_stack_settings):
    # tmp_path is under /tmp/pytest-of-root, which is mode 700.
    settings = new_stack_settings().replace(home=tmp_path / "home")
    with pytest.raises(StackError, match=r"cannot enter .*chmod o\+x"):
        stack.up(settings)
    assert not any(s.running for s in stack.status(settings).values())
