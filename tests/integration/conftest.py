"""Fixtures that start the real embedded stack (Tansu broker + PostgreSQL) on free ports."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from hospital_stream.devstack import stack
from hospital_stream.devstack.isolated import stack_settings, traversable_tempdir
from hospital_stream.settings import Settings
from tests.helpers import DAYS, STARTED, cli, hospital_env


def _stack_settings(home: Path) -> Settings:
    return stack_settings(home)


def _traversable_tempdir() -> Path:
    return traversable_tempdir("hospital-stream-test-")


@pytest.fixture(scope="session")
def embedded_stack() -> Iterator[Settings]:
    """Settings of a running embedded stack shared by the session (stopped at the end)."""
    base = _traversable_tempdir()
    settings = _stack_settings(base / "home")
    try:
        stack.up(settings)
        yield settings
    finally:
        stack.down(settings)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def reference_run(embedded_stack: Settings) -> dict[str, str]:
    """The environment of one uninterrupted single-worker run (test_pipeline's DAYS at max speed),
    made once per session: the pipeline tests inspect it, the others compare their runs with it."""
    env = hospital_env(embedded_stack)
    result = cli(env, "run", "--days", str(DAYS), "--speed", "max")
    assert result.returncode == 0, result.stdout + result.stderr
    return env


@pytest.fixture
def new_stack_settings() -> Iterator[Callable[[], Settings]]:
    """A factory of Settings for extra stacks (own home, own ports), stopped after the test."""
    made: list[tuple[Path, Settings]] = []

    def make() -> Settings:
        base = _traversable_tempdir()
        settings = _stack_settings(base / "home")
        made.append((base, settings))
        return settings

    yield make
    for base, settings in made:
        stack.down(settings)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def database_url(embedded_stack: Settings) -> Iterator[str]:
    """A fresh, empty database of its own on the session's stack (dropped after the test)."""
    host, port = embedded_stack.database_address
    name = "db_" + uuid.uuid4().hex[:10]
    with psycopg.connect(embedded_stack.database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = f"postgresql://hospital@{host}:{port}/{name}"
    try:
        yield url
    finally:
        with psycopg.connect(embedded_stack.database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(autouse=True)
def _no_run_outlives_its_test() -> Iterator[None]:
    """A failed test must not leave a run behind (its worker dies with it: PR_SET_PDEATHSIG)."""
    yield
    while STARTED:
        run = STARTED.pop()
        if run.poll() is None:
            run.kill()
            run.wait()
