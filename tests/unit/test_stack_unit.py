"""Pure parts of the embedded stack: binary discovery, shell quoting, stale PID files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from hospital_stream.devstack import postgres, processes, stack
from hospital_stream.errors import StackError
from hospital_stream.settings import Settings


def _fake_bin(folder: Path, version: str = "15.4", programs=postgres.PG_PROGRAMS) -> Path:
    folder.mkdir(parents=True)
    for name in programs:
        path = folder / name
        path.write_text(f"#!/bin/sh\necho 'postgres (PostgreSQL) {version}'\n")
        path.chmod(0o755)
    return folder


def _settings(home: Path) -> Settings:
    return Settings.from_env({"HOSPITAL_HOME": str(home)})


@pytest.fixture
def sleeper():
    """A live process that is not ours to stop."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def test_explicit_pg_bin_wins_over_system_and_bundled(tmp_path):
    explicit = _fake_bin(tmp_path / "mine")
    _fake_bin(tmp_path / "system" / "16" / "bin")
    candidates = postgres._pg_bin_candidates(
        {"HOSPITAL_PG_BIN": str(explicit)},
        tmp_path / "system",
        _fake_bin(tmp_path / "wheel"),
    )
    assert candidates == [("HOSPITAL_PG_BIN", explicit)]


def test_explicit_pg_bin_without_programs_is_an_error(tmp_path):
    folder = _fake_bin(tmp_path / "mine", programs=("initdb", "postgres"))
    with pytest.raises(StackError, match=r"HOSPITAL_PG_BIN=.*pg_ctl"):
        postgres._pg_bin_candidates({"HOSPITAL_PG_BIN": str(folder)}, tmp_path, None)


def test_system_versions_sort_numerically_then_bundled(tmp_path):
    root = tmp_path / "system"
    for version in ("9.6", "15", "13"):
        _fake_bin(root / version / "bin")
    _fake_bin(root / "17" / "bin", programs=("initdb", "pg_ctl"))  # client only: skipped
    wheel = _fake_bin(tmp_path / "wheel")
    candidates = postgres._pg_bin_candidates({}, root, wheel)
    assert candidates == [
        ("system", root / "15" / "bin"),
        ("system", root / "13" / "bin"),
        ("system", root / "9.6" / "bin"),
        ("pgserver", wheel),
    ]


def test_no_binaries_is_one_clear_error(tmp_path):
    assert postgres._pg_bin_candidates({}, tmp_path / "none", tmp_path / "nowheel") == []
    with pytest.raises(StackError, match="no PostgreSQL binaries found"):
        postgres._choose_pg_bin([], None)


def test_existing_data_folder_picks_binaries_of_its_version(tmp_path):
    v15 = _fake_bin(tmp_path / "a", "15.18")
    v16 = _fake_bin(tmp_path / "b", "16.2")
    candidates = [("system", v15), ("pgserver", v16)]
    pgdata = tmp_path / "pgdata"
    pgdata.mkdir()
    assert postgres._choose_pg_bin(candidates, pgdata) == v15
    (pgdata / "PG_VERSION").write_text("16\n")
    assert postgres._choose_pg_bin(candidates, pgdata) == v16
    (pgdata / "PG_VERSION").write_text("14\n")
    with pytest.raises(StackError, match=r"pgdata was made by PostgreSQL 14 .*15 \(system\), 16"):
        postgres._choose_pg_bin(candidates, pgdata)


def test_bundled_pg_bin_is_found_without_importing_pgserver():
    sys.modules.pop("pgserver", None)
    folder = postgres._bundled_pg_bin()
    assert "pgserver" not in sys.modules
    assert folder is not None and folder.parts[-3:] == ("pgserver", "pginstall", "bin")


def test_env_lines_survive_shell_eval_with_awkward_home(tmp_path):
    home = tmp_path / "my home's $HOME `x`"
    settings = _settings(home)
    script = "\n".join(stack.env_lines(settings)) + '\nprintf "%s" "$HOSPITAL_HOME"'
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout == str(home)


def test_env_lines_export_the_three_database_urls(tmp_path):
    settings = _settings(tmp_path).replace(database_url="postgresql://hospital_worker@127.0.0.1:25432/h")
    lines = dict(line.removeprefix("export ").split("=", 1) for line in stack.env_lines(settings))
    assert lines["HOSPITAL_DATABASE_URL"] == "postgresql://hospital_worker@127.0.0.1:25432/h"
    assert lines["HOSPITAL_ADMIN_DATABASE_URL"] == "postgresql://hospital@127.0.0.1:25432/h"
    assert lines["HOSPITAL_READER_DATABASE_URL"] == "postgresql://hospital_readonly@127.0.0.1:25432/h"


@pytest.mark.parametrize("variable", ["admin_database_url", "reader_database_url"])
def test_a_database_url_naming_another_server_is_refused_before_anything_starts(tmp_path, variable):
    settings = _settings(tmp_path).replace(**{variable: "postgresql://someone@127.0.0.1:5999/hospital"})
    with pytest.raises(StackError, match=r"names 127\.0\.0\.1:5999, but the embedded PostgreSQL listens on"):
        stack.up(settings, only=["postgres"])
    assert not (tmp_path / "pgdata").exists()
    postgres._check_one_server(_settings(tmp_path))  # the derived URLs always name the one server


@pytest.mark.parametrize("content", ["not a pid\n", "", "999999999\n"])
def test_garbage_or_dead_broker_pid_file_is_cleaned_up(tmp_path, content):
    settings = _settings(tmp_path)
    (tmp_path / "broker.pid").write_text(content)
    assert not stack.status(settings)["broker"].running
    assert stack.down(settings) == []
    assert not (tmp_path / "broker.pid").exists()


def test_reused_pid_is_never_signalled(tmp_path, sleeper):
    settings = _settings(tmp_path)
    (tmp_path / "broker.pid").write_text(f"{sleeper.pid}\n")
    (tmp_path / "pgdata").mkdir()
    postmaster = tmp_path / "pgdata" / "postmaster.pid"
    postmaster.write_text(f"{sleeper.pid}\n{tmp_path / 'pgdata'}\n0\n15432\n")
    states = stack.status(settings)
    assert not states["broker"].running and not states["postgres"].running
    assert stack.down(settings) == []
    assert sleeper.poll() is None
    assert not (tmp_path / "broker.pid").exists()
    assert not postmaster.exists()


def test_down_rejects_unknown_service(tmp_path):
    with pytest.raises(StackError, match="unknown service 'kafka'"):
        stack.down(_settings(tmp_path), only=["kafka"])


def test_socket_dir_falls_back_to_short_path_for_deep_home(tmp_path):
    shallow = processes._paths(_settings(tmp_path))
    assert shallow.socket_dir == tmp_path.resolve() / "run"
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    paths = processes._paths(_settings(deep))
    assert len(f"{paths.socket_dir}/.s.PGSQL.15432") <= 107
    assert paths.socket_dir == processes._paths(_settings(deep)).socket_dir
    assert paths.socket_dir != processes._paths(_settings(deep / "other")).socket_dir


@pytest.fixture
def open_tmp():
    """A temporary folder every user may enter (pytest's own tmp_path may be mode 700)."""
    base = Path(tempfile.mkdtemp(prefix="hospital-stream-unit-"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base)


def test_untraversable_home_is_reported(open_tmp):
    nobody = postgres._PgUser("nobody", 65534, 65534)
    if os.geteuid() == nobody.uid or not all(p.stat().st_mode & 0o001 for p in open_tmp.parents):
        pytest.skip("needs a searchable temp folder and a user other than nobody")
    locked = open_tmp / "locked"
    (locked / "home").mkdir(parents=True)
    locked.chmod(0o700)
    with pytest.raises(StackError, match=f"nobody, which cannot enter {locked} \\(mode 700\\)"):
        postgres._check_traversable(locked / "home", nobody)
    locked.chmod(0o711)
    postgres._check_traversable(locked / "home", nobody)
