# The hospital-stream image: the Faust worker by default, and `hospital-stream` admin commands.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system hospital \
    && useradd --system --gid hospital --home-dir /app --no-create-home hospital

WORKDIR /app
COPY setup.cfg pyproject.toml README.md ./
COPY hospital_stream/ ./hospital_stream/

# A regular install: the migrations ship inside the package (hospital_stream/db/sql).
# The code stays root-owned; the worker only gets to create its state (Faust's data dir) in /app.
RUN pip install --no-cache-dir . \
    && chown hospital:hospital /app

USER hospital

EXPOSE 6066
CMD ["faust", "-A", "hospital_stream.app", "worker", "-l", "info"]
