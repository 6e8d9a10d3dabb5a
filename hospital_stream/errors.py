"""The project's exception family: every error meant for a person derives from one base."""


class HospitalStreamError(Exception):
    """Base of every error this project raises on purpose; its text is shown as one line."""


class ConfigError(HospitalStreamError):
    """A setting or command-line option has a value that cannot be used."""


class StackError(HospitalStreamError):
    """The embedded broker or PostgreSQL could not be started, reached or stopped."""


class DatabaseError(HospitalStreamError):
    """PostgreSQL refused, is unreachable, or its schema is not what the code expects."""


class SinkStopped(HospitalStreamError):
    """The sink is stopping with the worker: a buffer it was given is not stored (nor acknowledged)."""


class InvalidMessage(HospitalStreamError):
    """A consumed message cannot be parsed or validated; it belongs in the dead-letter table.

    ``kind`` names why, as a dead letter's kind (a ``wire.dead_letters.DeadLetterKind`` value:
    this layer sits below the wire, so it holds the value, not the enum).
    """

    def __init__(self, reason: str, kind: str = "invalid_message") -> None:
        super().__init__(reason)
        self.kind = kind


class UnencodableText(InvalidMessage):
    """A value PostgreSQL's COPY text cannot carry (a NUL, a lone surrogate): refused, never altered."""


class BrokerLost(HospitalStreamError):
    """The broker no longer holds what this worker sent it (restarted empty, topics deleted).

    The worker exits with :attr:`exit_code` at once; started again, it resumes from the last
    day PostgreSQL holds completely (``hospital-stream run`` does that by itself).
    """

    exit_code = 75  # EX_TEMPFAIL: try again


class WorkerStalled(HospitalStreamError):
    """The sink stored nothing for the stall limit while it had work: a worker that is alive but
    stuck (a lock it waits on, a consumer that stopped delivering).

    The worker exits with :attr:`exit_code` at once, without an orderly shutdown; whatever it
    had not acknowledged is read again by the worker that starts next (``hospital-stream run``
    and the compose restart policy start one).
    """

    exit_code = 70  # EX_SOFTWARE
