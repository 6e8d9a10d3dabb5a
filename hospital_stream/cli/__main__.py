"""``python -m hospital_stream.cli``: the same commands as ``hospital-stream``."""

from hospital_stream.cli.main import main

main()
