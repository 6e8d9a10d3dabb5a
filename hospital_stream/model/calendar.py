"""The hospital's calendar: its time zone and the clock helpers every layer shares.

The model counts whole minutes since the first simulated day's midnight in the hospital's time
(South African Standard Time, UTC+2 all year: South Africa keeps no daylight saving).
"""

from __future__ import annotations

import datetime as dt
import functools

#: the IANA name PostgreSQL knows the hospital's zone by
TIME_ZONE_NAME = "Africa/Johannesburg"
UTC_OFFSET = "+02:00"
SAST = dt.timezone(dt.timedelta(hours=2), "SAST")
MINUTES_PER_DAY = 1440


def date_of(start: dt.date, day: int) -> dt.date:
    """The date of simulated day ``day`` of a run that started on ``start``."""
    return start + dt.timedelta(days=day)


def local(when: dt.datetime) -> dt.datetime:
    """``when`` in the hospital's time."""
    return when.astimezone(SAST)


def midnight(date: dt.date) -> dt.datetime:
    """The start of ``date`` in the hospital's time."""
    return dt.datetime.combine(date, dt.time(), SAST)


def ts(minute: int, start: dt.date) -> str:
    """A model minute as an ISO timestamp in SAST (``2020-01-01T08:05:00+02:00``)."""
    day, minute_of_day = divmod(int(minute), MINUTES_PER_DAY)
    return iso_date(start, day) + _TIME_OF_DAY[minute_of_day]


#: every minute of a day as "THH:MM:00" + UTC_OFFSET
_TIME_OF_DAY = tuple(f"T{m // 60:02d}:{m % 60:02d}:00" + UTC_OFFSET for m in range(MINUTES_PER_DAY))


@functools.lru_cache(maxsize=4096)
def iso_date(start: dt.date, day: int) -> str:
    return (start + dt.timedelta(days=day)).isoformat()


def birthday(birth: dt.date, age: int) -> dt.date:
    """The date someone turns ``age`` (29 February birthdays fall on 1 March in other years)."""
    try:
        return birth.replace(year=birth.year + age)
    except ValueError:
        return dt.date(birth.year + age, 3, 1)
