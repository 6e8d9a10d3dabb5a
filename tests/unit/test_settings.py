import datetime as dt

import pytest

from hospital_stream.errors import ConfigError
from hospital_stream.settings import DEFAULT_KAFKA_URL, Settings, documented_settings, parse_speed


def test_defaults_run_the_embedded_stack_with_no_variables():
    settings = Settings.from_env({})
    assert settings.embedded is True
    assert settings.kafka_url == DEFAULT_KAFKA_URL
    assert settings.kafka_address == ("127.0.0.1", 19092)
    assert settings.database_address == ("127.0.0.1", 15432)
    assert settings.web_host == "127.0.0.1"
    assert settings.start_date == dt.date(2020, 1, 1)
    assert settings.schedule_days == 864
    assert settings.speed == 1.0


def test_values_are_parsed_from_the_mapping():
    settings = Settings.from_env(
        {
            "HOSPITAL_SPEED": "max",
            "HOSPITAL_EMBEDDED": "no",
            "HOSPITAL_SEED": "7",
            "HOSPITAL_SINK_FLUSH_SECONDS": "0.25",
            "HOSPITAL_RUN_UNTIL_DAY": "30",
        }
    )
    assert settings.speed is None
    assert settings.embedded is False
    assert settings.seed == 7
    assert settings.sink_flush_seconds == 0.25
    assert settings.run_until_day == 30


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("HOSPITAL_SEED", "abc", "must be a whole number"),
        ("HOSPITAL_BEDS", "0", "at least 1"),
        ("HOSPITAL_EMBEDDED", "maybe", "expected true/false"),
        ("HOSPITAL_SPEED", "-2", "above 0 or 'max'"),
        ("HOSPITAL_KAFKA_URL", "localhost:9092", "kafka://"),
        ("HOSPITAL_START_DATE", "01/01/2020", "a date like"),
        ("HOSPITAL_TOPIC_PREFIX", "a b", "letters, digits"),
    ],
)
def test_nonsense_gets_one_clear_line_naming_the_variable(variable, value, message):
    with pytest.raises(ConfigError) as error:
        Settings.from_env({variable: value})
    text = str(error.value)
    assert text.startswith(f"{variable}={value!r}")
    assert message in text
    assert "\n" not in text


def test_to_env_reproduces_the_settings():
    settings = Settings.from_env(
        {"HOSPITAL_SPEED": "max", "HOSPITAL_SEED": "9", "HOSPITAL_EMBEDDED": "false"}
    )
    assert Settings.from_env(settings.to_env()) == settings


def test_database_url_is_kept_out_of_repr():
    settings = Settings.from_env({"HOSPITAL_DATABASE_URL": "postgresql://u:secret@db:5432/x"})
    assert "secret" not in repr(settings)


def test_every_setting_is_documented_and_prefixed():
    names = [name for name, _, _ in documented_settings()]
    assert all(name.startswith("HOSPITAL_") for name in names)
    assert len(names) == len(set(names))
    assert all(doc for _, _, doc in documented_settings())


def test_parse_speed():
    assert parse_speed("MAX") is None
    assert parse_speed("1800") == 1800.0
    with pytest.raises(ValueError, match=r"above 0 or .max"):
        parse_speed("fast")


def test_least_privilege_by_default_three_logins_on_one_database():
    settings = Settings.from_env({})
    assert settings.database_url == "postgresql://hospital_worker@127.0.0.1:15432/hospital"
    assert settings.admin_url == "postgresql://hospital@127.0.0.1:15432/hospital"
    assert settings.reader_url == "postgresql://hospital_readonly@127.0.0.1:15432/hospital"
    assert settings.admin_database_url is None and settings.reader_database_url is None


def test_admin_and_reader_urls_follow_the_worker_url_without_its_password():
    settings = Settings.from_env(
        {"HOSPITAL_DATABASE_URL": "postgresql://w:secret@db.example:6543/h1?sslmode=require"}
    )
    assert settings.admin_url == "postgresql://hospital@db.example:6543/h1?sslmode=require"
    assert settings.reader_url == "postgresql://hospital_readonly@db.example:6543/h1?sslmode=require"
    assert (
        settings.replace(database_url="postgresql://w@other/h2").admin_url == "postgresql://hospital@other/h2"
    )


def test_explicit_admin_and_reader_urls_win_and_round_trip():
    env = {
        "HOSPITAL_DATABASE_URL": "postgresql://w:pw1@db:5432/h",
        "HOSPITAL_ADMIN_DATABASE_URL": "postgresql://owner:pw2@db:5432/h",
        "HOSPITAL_READER_DATABASE_URL": "postgres://viewer:pw3@replica:5432/h",
    }
    settings = Settings.from_env(env)
    assert settings.admin_url == env["HOSPITAL_ADMIN_DATABASE_URL"]
    assert settings.reader_url == env["HOSPITAL_READER_DATABASE_URL"]
    assert Settings.from_env(settings.to_env()) == settings
    assert {k: v for k, v in settings.to_env().items() if k in env} == env
    assert not any(word in repr(settings) for word in ("pw1", "pw2", "pw3"))
    # Empty means derived, and stays derived through to_env (a later DATABASE_URL moves it along).
    empty = Settings.from_env({**env, "HOSPITAL_ADMIN_DATABASE_URL": " "})
    assert empty.admin_database_url is None and empty.to_env()["HOSPITAL_ADMIN_DATABASE_URL"] == ""


@pytest.mark.parametrize("variable", ["HOSPITAL_ADMIN_DATABASE_URL", "HOSPITAL_READER_DATABASE_URL"])
def test_a_bad_admin_or_reader_url_names_its_variable(variable):
    with pytest.raises(ConfigError, match=f"^{variable}='mysql://x/y': expected a URL like postgresql://"):
        Settings.from_env({variable: "mysql://x/y"})


def test_settings_command_shows_every_url_with_passwords_hidden():
    from click.testing import CliRunner

    from hospital_stream.cli import main

    env = {
        "HOSPITAL_DATABASE_URL": "postgresql://w:pw-one@db:5432/h",
        "HOSPITAL_READER_DATABASE_URL": "postgresql://viewer:pw-two@db:5432/h",
    }
    result = CliRunner().invoke(main, ["settings"], env=env)
    assert result.exit_code == 0, result.output
    assert "pw-one" not in result.output and "pw-two" not in result.output
    lines = result.output.splitlines()
    assert "HOSPITAL_DATABASE_URL=postgresql://w:***@db:5432/h" in lines
    assert "HOSPITAL_READER_DATABASE_URL=postgresql://viewer:***@db:5432/h" in lines
    assert "HOSPITAL_ADMIN_DATABASE_URL=  # empty, so postgresql://hospital@db:5432/h" in lines
