"""How an export reports: the progress callback the exporters advance, the console's progress bar
or periodic lines, and the summary of each file written."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import click

#: ``progress(label, estimated_rows)`` -> a context manager yielding ``advance(rows)``
Progress = Callable[[str, int], contextlib.AbstractContextManager[Callable[[int], None]]]


@dataclasses.dataclass(frozen=True)
class Written:
    """One file an export wrote."""

    name: str
    path: Path
    rows: int
    size_bytes: int
    seconds: float

    def summary(self) -> str:
        what = "resources" if self.path.suffix == ".ndjson" else "rows"
        rate = self.rows / max(self.seconds, 1e-6)
        return (
            f"{self.path}: {self.rows:,} {what}, {self.size_bytes / 1e6:,.1f} MB in {self.seconds:.1f} s"
            f" ({rate:,.0f} {what}/s, {self.size_bytes / 1e6 / max(self.seconds, 1e-6):,.1f} MB/s)"
        )


class ConsoleProgress:
    """A progress bar on a terminal; elsewhere a plain line every ``interval`` seconds."""

    def __init__(self, tty: bool, interval: float = 10.0) -> None:
        self.tty, self.interval = tty, interval

    @contextlib.contextmanager
    def __call__(self, label: str, estimate: int) -> Iterator[Callable[[int], None]]:
        if self.tty:
            with click.progressbar(length=max(estimate, 1), label=f"{label} (~{estimate:,} rows)") as bar:
                yield bar.update
            return
        done, last_report = 0, time.monotonic()

        def advance(rows: int) -> None:
            nonlocal done, last_report
            done += rows
            now = time.monotonic()
            if now - last_report >= self.interval:
                last_report = now
                click.echo(f"{label}: {done:,} rows of about {estimate:,}")

        yield advance
