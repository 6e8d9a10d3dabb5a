"""The README is where a newcomer learns the settings and commands: keep it true to the code."""

from pathlib import Path

from click.testing import CliRunner

from hospital_stream.cli import main
from hospital_stream.settings import documented_settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_in_the_readme_with_its_default():
    for name, default, _ in documented_settings():
        row = next((line for line in README.splitlines() if line.startswith(f"| `{name}` |")), None)
        assert row is not None, f"{name} is missing from the README's settings table"
        shown = f"`{default}`" if default else "(empty)"
        assert shown in row, row


def test_every_admin_command_is_in_the_readme():
    groups = {"stack": ["up", "down", "status", "env"], "db": ["migrate"], "dlq": ["list", "replay"]}
    for command in main.commands:
        assert f"`{command}" in README or f" {command} " in README, command
    for group, subcommands in groups.items():
        for sub in subcommands:
            assert CliRunner().invoke(main, [group, sub, "--help"]).exit_code == 0
            assert f"`{group} {sub}" in README, f"{group} {sub}"


def test_the_two_commands_are_at_the_top():
    top = README[: README.index("## What a run shows")]
    assert "make demo" in top and "make test" in top
