"""``python -m hospital_stream.cli``: the same commands as ``hospital-stream``."""

from hospital_stream.cli import main

# Faust's autodiscovery imports every module of the package: run only as a program.
if __name__ == "__main__":
    main()
