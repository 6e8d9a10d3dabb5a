"""What every test run shares.

Hypothesis profiles for the property tests (tests/unit/test_props_*.py): ``repeatable`` (the
default) derandomises the search, so a run fails or passes the same way each time and the whole
property suite stays within seconds; ``HYPOTHESIS_PROFILE=explore`` searches afresh with many more
examples, to hunt for new counterexamples.

And a CI log shows where the fault tests' faults landed.
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, settings

settings.register_profile(
    "repeatable",
    derandomize=True,
    max_examples=100,
    deadline=None,  # a shared 2-core machine can pause any example; speed is benchmarked elsewhere
    suppress_health_check=[HealthCheck.too_slow],
    database=None,  # nothing carried between runs: the same examples every time
    print_blob=True,
)
settings.register_profile("explore", max_examples=5_000, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


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
