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
    with pytest.raises(ValueError):
        parse_speed("fast")
