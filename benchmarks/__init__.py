"""Benchmarks run by hand (`make bench-sim`); not part of the installed package."""
