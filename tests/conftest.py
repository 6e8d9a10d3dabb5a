"""What every test run shares: a CI log shows where the fault tests' faults landed."""

from __future__ import annotations

from typing import Any


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The ``record_property("fault", text)`` lines of the tests that passed, one section."""
    lines = [
        f"{report.nodeid}: {value}"
        for report in terminalreporter.stats.get("passed", [])
        if report.when == "call"
        for name, value in report.user_properties
        if name == "fault"
    ]
    if lines:
        terminalreporter.write_sep("=", "where the faults landed (tests that passed)")
        for line in lines:
            terminalreporter.write_line(line)
