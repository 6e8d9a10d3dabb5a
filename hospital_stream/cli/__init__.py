"""The command line: ``hospital-stream ...``, click commands thin over the layers."""

from hospital_stream.cli import data, run, stack  # noqa: F401  (each registers its commands on main)
from hospital_stream.cli.main import main

__all__ = ["main"]
