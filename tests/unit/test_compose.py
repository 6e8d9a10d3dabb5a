"""The Docker Compose deployment agrees with the code: settings, ports, commands, secrets.

Docker is not needed: the files are parsed and checked against ``hospital_stream.settings``.
"""

from __future__ import annotations

import base64
import dataclasses
import fnmatch
import json
import re
import shlex
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from hospital_stream.settings import Settings, documented_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

WORKER_COMMAND = ["faust", "-A", "hospital_stream.app", "worker", "-l", "info"]
#: .env's PostgreSQL logins: (user, password) variables of the owner, the worker and the reader
OWNER_LOGIN = ("POSTGRES_USER", "POSTGRES_PASSWORD")
WORKER_LOGIN = ("POSTGRES_WORKER_USER", "POSTGRES_WORKER_PASSWORD")
READER_LOGIN = ("POSTGRES_READER_USER", "POSTGRES_READER_PASSWORD")
SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN")
LOCALHOST = "127.0.0.1"

# Compose interpolation: $$, $VAR, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ...
_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


# --- helpers ---------------------------------------------------------------------------------


def load_compose() -> dict[str, Any]:
    """The compose file as data (merge keys resolved)."""
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict) and isinstance(data.get("services"), dict), "no services"
    return data


def service(name: str) -> dict[str, Any]:
    services = load_compose()["services"]
    assert name in services, f"service {name!r} missing from docker-compose.yml"
    return services[name]


def load_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a dotenv file; comments and blank lines skipped."""
    env = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = stripped.partition("=")
        assert sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key), f"{path}:{number}: {line!r}"
        env[key] = value.strip().strip("'\"")
    return env


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Substitute ``text`` the way ``docker compose`` does; KeyError for a missing required one."""

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["bare"]
        op, arg = match["op"], match["arg"] or ""
        is_set = name in env
        has_value = is_set and env[name] != ""
        present = has_value if op and op.startswith(":") else is_set
        if op in (":-", "-"):
            return env[name] if present else arg
        if op in (":?", "?"):
            if not present:
                raise KeyError(f"{name}: {arg}")
            return env[name]
        if op in (":+", "+"):
            return arg if present else ""
        return env.get(name, "")

    return _VARIABLE.sub(substitute, text)


def strings(node: Any) -> Iterator[str]:
    """Every string value in a YAML tree (keys are not interpolated by compose)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


def variable_references(data: Any) -> dict[str, set[str | None]]:
    """Variable name -> the operators it is referenced with (None: plain ``${VAR}``)."""
    refs: dict[str, set[str | None]] = {}
    for text in strings(data):
        for match in _VARIABLE.finditer(text):
            if not match["escaped"]:
                refs.setdefault(match["braced"] or match["bare"], set()).add(match["op"])
    return refs


def environment(svc: Mapping[str, Any]) -> dict[str, str]:
    """A service's environment as a mapping, whether written as a list or a mapping."""
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def command(svc: Mapping[str, Any]) -> list[str]:
    cmd = svc.get("command")
    return shlex.split(cmd) if isinstance(cmd, str) else list(cmd or [])


def depends_on(svc: Mapping[str, Any]) -> dict[str, str]:
    """Dependency -> condition (the short list form means ``service_started``)."""
    deps = svc.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


@dataclasses.dataclass(frozen=True)
class PublishedPort:
    host_ip: str | None
    host_ports: range | None
    container_port: int


def _port_range(text: str) -> range:
    first, _, last = text.partition("-")
    return range(int(first), int(last or first) + 1)


def published_ports(svc: Mapping[str, Any]) -> list[PublishedPort]:
    """The ``ports:`` entries in short (``ip:host:container``) or long syntax."""
    result = []
    for entry in svc.get("ports") or []:
        if isinstance(entry, dict):
            published = entry.get("published")
            result.append(
                PublishedPort(
                    entry.get("host_ip"),
                    _port_range(str(published)) if published is not None else None,
                    int(entry["target"]),
                )
            )
            continue
        parts = str(entry).split("/")[0].split(":")
        if len(parts) == 3:
            result.append(PublishedPort(parts[0], _port_range(parts[1]), int(parts[2])))
        elif len(parts) == 2:
            result.append(PublishedPort(None, _port_range(parts[0]), int(parts[1])))
        else:
            result.append(PublishedPort(None, None, int(parts[0])))
    return result


def settings_env(svc: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    """A service's ``HOSPITAL_*`` variables with compose's ``${...}`` substituted from ``env``."""
    return {
        key: interpolate(value, env) for key, value in environment(svc).items() if key.startswith("HOSPITAL_")
    }


def required_only(env: Mapping[str, str]) -> dict[str, str]:
    """The variables compose cannot do without: an .env that sets only those."""
    refs = variable_references(load_compose())
    return {name: env[name] for name, ops in refs.items() if _is_required(ops) and name in env}


def _is_required(ops: set[str | None]) -> bool:
    return any(op in (None, ":?", "?") for op in ops)


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    instructions = []
    pending = ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        if line.strip().startswith("#") or not line.strip():
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    assert not pending, "Dockerfile ends inside a continued line"
    return instructions


def exec_form(args: str) -> list[str]:
    """Arguments of CMD/ENTRYPOINT/COPY, whether JSON (exec) form or shell form."""
    return json.loads(args) if args.startswith("[") else shlex.split(args)


def dockerignore_patterns() -> list[str]:
    return [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def is_dockerignored(path: str, patterns: list[str]) -> bool:
    path = path.strip("/").removeprefix("./")
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        if pattern.startswith("!"):
            continue
        pattern = pattern.strip("/")
        bare = pattern.removeprefix("**/")
        if any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes):
            return True
        if pattern.startswith("**/") and any(fnmatch.fnmatch(part, bare) for part in parts):
            return True
    return False


# --- the helpers themselves ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("${A}", {"A": "x"}, "x"),
        ("$A/${B:-d}", {"A": "x"}, "x/d"),
        ("${B:-d}", {"B": ""}, "d"),
        ("${B-d}", {"B": ""}, ""),
        ("$${NOT_A_VARIABLE}", {}, "${NOT_A_VARIABLE}"),
        ("${A:?set A}", {"A": "x"}, "x"),
        ("${A:+yes}", {"A": "x"}, "yes"),
    ],
)
def test_interpolate_follows_compose_rules(text: str, env: dict[str, str], expected: str) -> None:
    assert interpolate(text, env) == expected


def test_interpolate_refuses_a_missing_required_variable() -> None:
    with pytest.raises(KeyError, match="set A"):
        interpolate("${A:?set A}", {})


def test_published_ports_parses_ranges_and_missing_ip() -> None:
    ports = published_ports({"ports": ["127.0.0.1:6066-6068:6066", "5432:5432", "80"]})
    assert ports == [
        PublishedPort(LOCALHOST, range(6066, 6069), 6066),
        PublishedPort(None, range(5432, 5433), 5432),
        PublishedPort(None, None, 80),
    ]


# --- the compose file ------------------------------------------------------------------------


def test_expected_services_exist_and_no_zookeeper() -> None:
    services = load_compose()["services"]
    assert {"kafka", "postgres", "pgadmin", "migrate", "worker"} <= set(services)
    assert not [name for name in services if "zookeeper" in name.lower()]


def test_every_hospital_variable_is_a_real_setting() -> None:
    known = {name for name, _default, _doc in documented_settings()}
    for name, svc in load_compose()["services"].items():
        unknown = {key for key in environment(svc) if key.startswith("HOSPITAL_")} - known
        assert not unknown, f"{name} sets variables Settings does not read: {sorted(unknown)}"
    assert {key for key in environment(service("worker")) if key.startswith("HOSPITAL_")}


@pytest.mark.parametrize("which", ["env_example", "defaults_only"])
@pytest.mark.parametrize("name", ["worker", "migrate"])
def test_app_settings_parse_and_point_at_the_compose_services(name: str, which: str) -> None:
    env = load_env_file(ENV_EXAMPLE)
    if which == "defaults_only":
        env = required_only(env)
    settings = Settings.from_env(settings_env(service(name), env))

    assert settings.embedded is False
    services = load_compose()["services"]
    kafka_host, kafka_port = settings.kafka_address
    assert kafka_host in services and kafka_host == "kafka"
    assert f"PLAINTEXT://kafka:{kafka_port}" in environment(services["kafka"])[
        "KAFKA_ADVERTISED_LISTENERS"
    ].split(",")
    postgres_ports = {port.container_port for port in published_ports(services["postgres"])}
    logins = [(settings.database_url, WORKER_LOGIN), (settings.reader_url, READER_LOGIN)]
    if name == "migrate":
        logins.append((settings.admin_url, OWNER_LOGIN))
    for database_url, (user, password) in logins:
        url = urlsplit(database_url)
        assert (url.hostname, url.port) == ("postgres", settings.database_address[1])
        assert url.port in postgres_ports
        assert (url.username, url.password) == (env[user], env[password])
        assert url.path == "/" + env["POSTGRES_DB"]


def test_least_privilege_only_migrate_holds_the_owners_credentials():
    env = load_env_file(ENV_EXAMPLE)
    assert len({env[user] for user, _ in (OWNER_LOGIN, WORKER_LOGIN, READER_LOGIN)}) == 3
    assert len({env[password] for _, password in (OWNER_LOGIN, WORKER_LOGIN, READER_LOGIN)}) == 3
    for name, svc in load_compose()["services"].items():
        uses_owner_password = any("${POSTGRES_PASSWORD" in text for text in strings(svc))
        assert uses_owner_password == (name in {"postgres", "migrate"}), name
    worker = Settings.from_env(settings_env(service("worker"), env))
    assert worker.admin_database_url is None
    assert urlsplit(worker.admin_url).password is None


def test_worker_settings_take_the_values_of_env_example() -> None:
    env = load_env_file(ENV_EXAMPLE)
    settings = Settings.from_env(settings_env(service("worker"), env))
    assert settings.web_host == "0.0.0.0"
    assert settings.seed == int(env["HOSPITAL_SEED"])
    assert settings.topic_partitions == int(env["HOSPITAL_TOPIC_PARTITIONS"])
    speed = env["HOSPITAL_SPEED"]
    assert settings.speed == (None if speed == "max" else float(speed))
    assert settings.stall_seconds == float(env["HOSPITAL_STALL_SECONDS"])


def test_worker_runs_the_faust_worker_and_migrate_the_admin_command() -> None:
    assert command(service("worker")) == WORKER_COMMAND
    assert command(service("migrate")) == ["hospital-stream", "db", "migrate"]
    setup_cfg = (ROOT / "setup.cfg").read_text(encoding="utf-8")
    assert re.search(r"^\s*hospital-stream\s*=\s*hospital_stream\.cli:main\s*$", setup_cfg, re.MULTILINE)


def test_migrate_command_resolves_in_the_cli() -> None:
    import click

    from hospital_stream import cli

    main = getattr(cli, "main", None)
    if not isinstance(main, click.Group):
        pytest.skip("hospital_stream.cli.main is not a click group yet")
    group: click.Command = main
    for word in command(service("migrate"))[1:]:
        assert isinstance(group, click.Group), f"{group.name} has no subcommand {word!r}"
        found = group.get_command(click.Context(group), word)
        assert found is not None, f"`{group.name} {word}` does not exist"
        group = found
    assert not isinstance(group, click.Group), "the migrate command names a group, not a command"


def test_migrate_runs_the_worker_image() -> None:
    worker, migrate = service("worker"), service("migrate")
    assert migrate.get("image") == worker.get("image")
    assert migrate.get("build") == worker.get("build")
    build = worker["build"]
    context = build if isinstance(build, str) else build.get("context", ".")
    dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    assert (ROOT / context / dockerfile).resolve() == DOCKERFILE
    assert migrate.get("restart", "no") == "no"


def test_dependencies_wait_for_health_and_for_migrations() -> None:
    assert depends_on(service("worker")) == {
        "kafka": "service_healthy",
        "postgres": "service_healthy",
        "migrate": "service_completed_successfully",
    }
    assert depends_on(service("migrate")) == {"postgres": "service_healthy"}
    assert depends_on(service("pgadmin")) == {"postgres": "service_healthy"}


def test_every_service_waited_on_for_health_has_a_healthcheck() -> None:
    services = load_compose()["services"]
    for name, svc in services.items():
        for dependency, condition in depends_on(svc).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            if condition == "service_healthy":
                check = services[dependency].get("healthcheck") or {}
                assert check.get("test") and not check.get("disable"), (
                    f"{name} waits for {dependency} to be healthy, but it has no healthcheck"
                )


@pytest.mark.parametrize("name", ["kafka", "postgres", "pgadmin", "worker"])
def test_long_running_services_have_healthchecks_and_restart(name: str) -> None:
    svc = service(name)
    assert svc["healthcheck"]["test"]
    assert svc.get("restart") == "unless-stopped"


def test_postgres_healthcheck_asks_over_tcp() -> None:
    # The first-start init server listens on the Unix socket only; TCP readiness is the real one.
    test = " ".join(service("postgres")["healthcheck"]["test"])
    assert "pg_isready" in test
    assert re.search(r"-h\s+(127\.0\.0\.1|localhost)\b", test)


def test_every_published_port_binds_localhost_only() -> None:
    for name, svc in load_compose()["services"].items():
        for port in published_ports(svc):
            assert port.host_ip == LOCALHOST, f"{name} publishes {port} beyond 127.0.0.1"
            assert port.host_ports is not None, f"{name} publishes {port} on a random port"


def test_worker_web_port_matches_settings_and_scales() -> None:
    worker = service("worker")
    env = load_env_file(ENV_EXAMPLE)
    settings = Settings.from_env(settings_env(worker, env))
    assert settings.web_port == Settings().web_port

    (port,) = published_ports(worker)
    assert port.container_port == settings.web_port
    assert port.host_ports is not None and len(port.host_ports) >= 3, "one host port per replica"
    assert "container_name" not in worker, "a fixed container name forbids --scale"
    # Faust tells the other workers where it lives by web_host, which is the container's own
    # hostname when the worker binds 0.0.0.0: a fixed hostname would give every replica one name.
    assert "hostname" not in worker and settings.web_host == "0.0.0.0"
    # Each scaled worker needs at least one partition of its own.
    assert settings.topic_partitions >= len(port.host_ports)
    defaults = Settings.from_env(settings_env(worker, required_only(env)))
    assert defaults.topic_partitions >= len(port.host_ports)

    check = worker["healthcheck"]["test"]
    url = re.search(r"https?://[^'\"\s]+", " ".join(check))
    assert url, f"worker healthcheck fetches no URL: {check}"
    parts = urlsplit(url.group(0))
    assert (parts.hostname, parts.port) == (LOCALHOST, settings.web_port)


def test_worker_healthcheck_path_is_a_view_of_the_app() -> None:
    views = ROOT / "hospital_stream" / "web" / "views.py"
    check = " ".join(service("worker")["healthcheck"]["test"])
    path = urlsplit(re.search(r"https?://[^'\"\s]+", check).group(0)).path
    assert path.strip("/") and path.strip("/") in views.read_text(encoding="utf-8")


def test_no_literal_secret_in_the_compose_file() -> None:
    data = load_compose()
    for name, svc in data["services"].items():
        for key, value in environment(svc).items():
            if any(word in key for word in SECRET_WORDS):
                assert re.fullmatch(r"\$\{[A-Za-z_][A-Za-z0-9_]*(:?\?[^}]*)?\}", value), (
                    f"{name}.{key} must come from .env as a required ${{VAR}}"
                )
            if key.endswith("_URL"):
                password = urlsplit(value).password
                assert password is None or password.startswith("${"), f"{name}.{key}"
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    env = load_env_file(ENV_EXAMPLE)
    for key, value in env.items():
        if any(word in key for word in SECRET_WORDS):
            assert value not in text, f"the .env.example value of {key} is written into compose"
    assert not re.search(r"admin[:/]admin", text, re.IGNORECASE)


def test_env_example_defines_exactly_the_variables_compose_uses() -> None:
    refs = variable_references(load_compose())
    env = load_env_file(ENV_EXAMPLE)
    required = {name for name, ops in refs.items() if _is_required(ops)}
    assert required <= set(env), f"missing from .env.example: {sorted(required - set(env))}"
    assert set(env) <= set(refs), f"unused in compose: {sorted(set(env) - set(refs))}"
    assert {"POSTGRES_PASSWORD", "PGADMIN_DEFAULT_PASSWORD"} <= required


def test_env_example_secrets_are_placeholders() -> None:
    env = load_env_file(ENV_EXAMPLE)
    for key, value in env.items():
        if any(word in key for word in SECRET_WORDS):
            assert "change-me" in value and value.lower() not in {"admin", "password", "postgres"}
    assert "change-me" in env["PGADMIN_DEFAULT_EMAIL"]
    assert re.fullmatch(r"[^@\s]+@[^@\s]+\.(com|org|net)", env["PGADMIN_DEFAULT_EMAIL"])
    # The passwords are spliced into the HOSPITAL_*DATABASE_URLs unencoded.
    for _, password in (OWNER_LOGIN, WORKER_LOGIN, READER_LOGIN):
        assert re.fullmatch(r"[A-Za-z0-9_-]+", env[password]), password
    assert "cp .env.example .env" in ENV_EXAMPLE.read_text(encoding="utf-8")


def test_a_missing_env_file_stops_compose() -> None:
    variables = variable_references(load_compose())
    for name in ("POSTGRES_DB", *OWNER_LOGIN, *WORKER_LOGIN, *READER_LOGIN):
        assert variables[name] == {":?"}, f"{name} should be ${{{name}:?message}} everywhere"
    with pytest.raises(KeyError):
        settings_env(service("worker"), {})


def test_kafka_is_a_single_kraft_node_with_internal_and_host_listeners() -> None:
    kafka = service("kafka")
    assert kafka["image"].startswith("apache/kafka:")
    env = environment(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert not [key for key in env if "ZOOKEEPER" in key]
    assert len(base64.urlsafe_b64decode(env["CLUSTER_ID"] + "==")) == 16
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "true"

    listeners = {
        item.split("://")[0]: int(item.rsplit(":", 1)[1]) for item in env["KAFKA_LISTENERS"].split(",")
    }
    protocol_map = env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
    protocols = dict(item.split(":") for item in protocol_map.split(","))
    assert set(listeners) <= set(protocols)
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    node_id, _, voter = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].partition("@")
    assert node_id == env["KAFKA_NODE_ID"]
    assert voter == f"kafka:{listeners[controller]}"

    advertised = {}
    for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","):
        listener, address = item.split("://")
        host, port = address.rsplit(":", 1)
        assert listener in listeners and listener != controller
        assert int(port) == listeners[listener]
        advertised[listener] = host
    assert advertised[env["KAFKA_INTER_BROKER_LISTENER_NAME"]] == "kafka"

    # The host listener advertises the address a host client reaches through the published port.
    (published,) = published_ports(kafka)
    host_listener = next(name for name, host in advertised.items() if host == LOCALHOST)
    assert published.container_port == listeners[host_listener]
    assert published.host_ports == range(listeners[host_listener], listeners[host_listener] + 1)

    test = " ".join(kafka["healthcheck"]["test"])
    assert "--bootstrap-server localhost:" in test


def test_stateful_services_keep_data_in_named_volumes() -> None:
    data = load_compose()
    declared = set(data.get("volumes") or {})
    expected = {
        "kafka": environment(data["services"]["kafka"])["KAFKA_LOG_DIRS"],
        "postgres": "/var/lib/postgresql/data",
        "pgadmin": "/var/lib/pgadmin",
    }
    for name, target in expected.items():
        mounts = dict(reversed(str(volume).split(":")[:2]) for volume in data["services"][name]["volumes"])
        assert mounts.get(target) in declared, f"{name} keeps {target} outside a named volume"


def test_pgadmin_registers_the_postgres_service() -> None:
    pgadmin = service("pgadmin")
    env = environment(pgadmin)
    target = env.get("PGADMIN_SERVER_JSON_FILE", "/pgadmin4/servers.json")
    mounts = {}
    for volume in pgadmin["volumes"]:
        source, container_path = str(volume).split(":")[:2]
        mounts[container_path] = source
    assert target in mounts, "servers.json is not mounted where pgAdmin reads it"
    servers_json = ROOT / mounts[target]
    servers = json.loads(servers_json.read_text(encoding="utf-8"))["Servers"]
    assert servers

    postgres_ports = {port.container_port for port in published_ports(service("postgres"))}
    example = load_env_file(ENV_EXAMPLE)
    for server in servers.values():
        assert server["Host"] == "postgres"
        assert server["Port"] in postgres_ports
        # servers.json cannot read .env: it names the users and database of .env.example.
        assert server["MaintenanceDB"] == example["POSTGRES_DB"]
        assert "Password" not in server and "PassFile" not in server
    # The first server, the one people open, is the read-only login; the owner is there for schema work.
    users = [server["Username"] for server in servers.values()]
    assert users == [example["POSTGRES_READER_USER"], example["POSTGRES_USER"]]
    assert {port.container_port for port in published_ports(pgadmin)} == {80}


# --- the image -------------------------------------------------------------------------------


def test_dockerfile_builds_a_non_root_regular_install_of_the_package() -> None:
    instructions = dockerfile_instructions()
    keywords = [keyword for keyword, _args in instructions]
    assert instructions[0] == ("FROM", "python:3.11-slim")

    runs = [args for keyword, args in instructions if keyword == "RUN"]
    assert any(re.search(r"pip install\b.*--no-cache-dir.*\s\.(\s|$)", run) for run in runs)
    assert not any(re.search(r"\s-e\s", run) for run in runs), "the migrations ship in the package"

    users = [args for keyword, args in instructions if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    last_user = len(keywords) - 1 - keywords[::-1].index("USER")
    assert "RUN" not in keywords[last_user:], "commands after USER run as the app user"

    (expose,) = [args for keyword, args in instructions if keyword == "EXPOSE"]
    assert int(expose.split("/")[0]) == Settings().web_port
    (cmd,) = [args for keyword, args in instructions if keyword == "CMD"]
    assert exec_form(cmd) == WORKER_COMMAND == command(service("worker"))


def test_dockerfile_copies_the_package_metadata_that_exists() -> None:
    copied: dict[str, str] = {}
    for keyword, args in dockerfile_instructions():
        if keyword in {"COPY", "ADD"}:
            words = [word for word in exec_form(args) if not word.startswith("--")]
            *sources, destination = words
            copied.update(dict.fromkeys(sources, destination))
    assert {"setup.cfg", "pyproject.toml", "README.md", "hospital_stream/"} <= set(copied)

    patterns = dockerignore_patterns()
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
        assert not is_dockerignored(source, patterns), f"COPY {source}: excluded by .dockerignore"


def test_dockerignore_keeps_local_state_and_secrets_out() -> None:
    patterns = dockerignore_patterns()
    local = (".venv", ".hospital", ".git", ".env", ".pytest_cache", "hospital_stream/__pycache__")
    for path in local:
        assert is_dockerignored(path, patterns), f"{path} would be sent to the Docker daemon"
