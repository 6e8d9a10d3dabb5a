"""Hypothesis profiles for the property tests (tests/unit/test_props_*.py).

``repeatable`` (the default) derandomises the search, so a run fails or passes the same way each
time and the whole property suite stays within seconds; ``HYPOTHESIS_PROFILE=explore`` searches
afresh with many more examples, to hunt for new counterexamples.
"""

import os

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
