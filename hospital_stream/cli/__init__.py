"""The command line: ``hospital-stream ...``, click commands thin over the layers."""

from hospital_stream.cli.main import main

__all__ = ["main"]
