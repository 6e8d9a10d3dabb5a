"""What the dashboard's panels compute from what they read: whether the tables can be believed
yet and where the generator runs, ward pressure, staffing minimums and gaps, retirements and
their replacements, rates and the ETA, the ward and staff boards, stream-against-batch
reconciliation and consumer lag.

Pure functions of plain values: this module imports neither Faust nor the app (an import-linter
contract in setup.cfg keeps it so), so the panels unit-test without building either.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

from hospital_stream.model import RETIREMENT_AGE, STAFF_PER_BED, Ward
from hospital_stream.stream import rules

#: occupancy (percent of staffed beds) from which a ward is amber, and above which it is red
AMBER_FROM_PCT = 85.0
RED_ABOVE_PCT = 95.0
#: roles with a minimum per ward; the minimum is the simulator's ratio rounded down, at least 1
MINIMUM_STAFFED_ROLES = ("doctor", "nurse")
RETIREMENT_WINDOW_DAYS = 90
REPLACEMENT_WINDOW_DAYS = 30
RECONCILIATION_DAYS = 14
CHART_DAYS = 120
#: samples older than these are dropped from the rates
ROWS_RATE_WINDOW_SECONDS = 30.0
DAYS_RATE_WINDOW_SECONDS = 300.0
#: seconds a simulated day takes at speed 1 (a batch every 15 minutes)
SECONDS_PER_DAY_AT_SPEED_1 = 900.0


#: what a worker's tables are worth: nothing assigned yet, being rebuilt from their changelogs,
#: or up to date (only then do the ward and staff boards show numbers)
TABLES_STATES = ("unassigned", "recovering", "ready")


Partition = TypeVar("Partition")


def recovered_partitions(
    partitions: Iterable[Partition],
    highwaters: Mapping[Partition, int | None],
    offsets: Mapping[Partition, int | None],
) -> int:
    """How many of a table's changelog ``partitions`` recovery has read to the end.

    Faust's recovery keeps, per changelog partition, the offset of the last message it must read
    (its highwater) and the offset of the last one it read, both -1 for an empty partition. A
    partition whose highwater it has not asked for yet is not recovered.
    """
    done = 0
    for tp in partitions:
        end, read = highwaters.get(tp), offsets.get(tp)
        if end is not None and read is not None and read >= end:
            done += 1
    return done


def tables_state(assigned: bool, actives_ready: bool, partitions: int, recovered: int) -> dict[str, Any]:
    """The tables' state from the consumer's assignment (``assigned``: any partition at all), the
    table manager's ``actives_ready`` and the changelog partitions this worker holds and has
    recovered, with the line every panel shows while it is not ``ready``."""
    if not assigned:
        state, message = "unassigned", "no partition assigned yet: the worker is joining its group"
    elif not actives_ready:
        state = "recovering"
        message = f"recovering tables: {min(recovered, partitions)} of {partitions} partitions"
    else:
        state, message = "ready", f"tables ready: {partitions} partitions"
        recovered = partitions
    return {"state": state, "partitions": partitions, "recovered": recovered, "message": message}


def generator_state(assigned: bool, leading: bool, holders: Iterable[str], own_url: str) -> dict[str, Any]:
    """Where the generator runs: ``here`` when this worker holds the leader partition, ``elsewhere``
    when the group's assignment gave it to another worker (``holders``: the URLs of the workers
    it went to), ``unknown`` otherwise, and always while this worker has no assignment of its
    own (what it remembers of the group may be a rebalance old)."""
    others = sorted(url for url in holders if url != own_url)
    if assigned and leading:
        return {"state": "here", "leader_url": own_url, "message": "generator runs here (the leader)"}
    if assigned and others:
        return {
            "state": "elsewhere",
            "leader_url": others[0],
            "message": f"generator on another worker ({others[0]})",
        }
    return {"state": "unknown", "leader_url": None, "message": "generator: unknown yet"}


def occupancy_pct(occupied: int, beds: int) -> float:
    return round(100.0 * occupied / beds, 1) if beds > 0 else 0.0


def pressure(occupied: int, beds: int) -> str:
    """``green`` below 85 % of beds occupied, ``amber`` from 85 % to 95 %, ``red`` above 95 %."""
    pct = 100.0 * occupied / beds if beds > 0 else 100.0
    if pct > RED_ABOVE_PCT:
        return "red"
    if pct >= AMBER_FROM_PCT:
        return "amber"
    return "green"


def minimum_staffing(beds: int) -> dict[str, int]:
    """The fewest doctors and nurses a ward of ``beds`` may have: the simulator's staff per bed
    (``sim.STAFF_PER_BED``) rounded down, and at least one of each."""
    return {role: max(1, math.floor(beds * STAFF_PER_BED[role])) for role in MINIMUM_STAFFED_ROLES}


def staffing_gaps(beds: int, assigned: Mapping[str, int]) -> dict[str, int]:
    """How many people of each role a ward is short of its minimum (only roles that are short)."""
    return {
        role: minimum - assigned.get(role, 0)
        for role, minimum in minimum_staffing(beds).items()
        if assigned.get(role, 0) < minimum
    }


def turns_65_on(birth: dt.date) -> dt.date:
    """The retirement day, as the simulator has it (29 February birthdays: 1 March)."""
    try:
        return birth.replace(year=birth.year + RETIREMENT_AGE)
    except ValueError:
        return dt.date(birth.year + RETIREMENT_AGE, 3, 1)


def retires_within(birth: dt.date, today: dt.date, days: int) -> bool:
    """Whether someone born on ``birth`` turns 65 after ``today`` and at most ``days`` later."""
    return today < turns_65_on(birth) <= today + dt.timedelta(days=days)


def retirement_birth_range(today: dt.date, days: int) -> tuple[dt.date, dt.date]:
    """Birth dates that may retire within ``days`` after ``today`` (a day wider on both sides,
    for 29 February; :func:`retires_within` decides exactly)."""

    def years_before(day: dt.date) -> dt.date:
        try:
            return day.replace(year=day.year - RETIREMENT_AGE)
        except ValueError:
            return dt.date(day.year - RETIREMENT_AGE, 2, 28)

    one = dt.timedelta(days=1)
    return years_before(today + one) - one, years_before(today + dt.timedelta(days=days)) + one


def pair_replacements(
    retirements: Sequence[Mapping[str, Any]], hires: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Each retirement with the hire that replaced it: same day, role, specialty and ward.

    Both are dicts with ``staff_id``, ``role``, ``specialty``, ``ward_id`` and ``on`` (the
    retirement or hiring day); a hire replaces at most one retirement. Newest first.
    """
    waiting: dict[tuple[Any, ...], list[int]] = {}
    for hire in sorted(hires, key=lambda h: h["staff_id"]):
        key = (hire["on"], hire["role"], hire["specialty"], hire["ward_id"])
        waiting.setdefault(key, []).append(hire["staff_id"])
    paired = []
    for retired in sorted(retirements, key=lambda r: (r["on"], r["staff_id"])):
        candidates = waiting.get((retired["on"], retired["role"], retired["specialty"], retired["ward_id"]))
        paired.append(
            {
                "retired_on": retired["on"],
                "staff_id": retired["staff_id"],
                "role": retired["role"],
                "specialty": retired["specialty"],
                "ward_id": retired["ward_id"],
                "replacement_staff_id": candidates.pop(0) if candidates else None,
            }
        )
    return sorted(paired, key=lambda p: (p["retired_on"], p["staff_id"]), reverse=True)


def rate_per_second(samples: Sequence[tuple[float, float]]) -> float | None:
    """The rate between the first and the last ``(seconds, value)`` sample; None if they are
    less than a second apart."""
    if len(samples) < 2 or samples[-1][0] - samples[0][0] < 1.0:
        return None
    (t0, v0), (t1, v1) = samples[0], samples[-1]
    return max(0.0, (v1 - v0) / (t1 - t0))


def eta_seconds(last_day: int, end_day: int, days_per_second: float | None) -> float | None:
    """Seconds until day ``end_day - 1`` is stored, when ``last_day`` is and days come at the
    given rate; 0 when done, None when the rate is unknown or zero."""
    remaining = end_day - 1 - last_day
    if remaining <= 0:
        return 0.0
    if not days_per_second:
        return None
    return remaining / days_per_second


#: what a ward's tile shows of the table while the tables are not ready
_FROM_THE_TABLE = ("occupied", "as_of_day", "live_moves", "waiting_for_bed", "occupancy_pct")


def ward_board(
    values: Mapping[int, Mapping[str, Any]],
    wards: Iterable[Ward],
    requests: Mapping[int, Mapping[str, int]] | None,
    tables_ready: bool = True,
) -> dict[str, Any]:
    """The ward board from the table's values (ward id -> value), with each ward's bed requests
    of the day by outcome (None: unknown). Until the tables are ready, what comes from them is
    None and every ward's pressure ``unknown`` (grey): an empty table is no empty hospital."""
    rows = []
    for ward in wards:
        value = values.get(ward.ward_id) or rules.new_ward(ward.ward_id, ward.beds)
        view = rules.ward_view(dict(value), ward.name, ward.specialty)
        del view["patients"]
        outcomes = None if requests is None else dict(requests.get(ward.ward_id, {}))
        row = {
            **view,
            "code": ward.code,
            "occupancy_pct": occupancy_pct(view["occupied"], view["beds"]),
            "pressure": pressure(view["occupied"], view["beds"]),
            "requests": None
            if outcomes is None
            else {k: outcomes.get(k, 0) for k in ("admitted", "diverted", "postponed")},
        }
        if not tables_ready:
            row.update(dict.fromkeys(_FROM_THE_TABLE), pressure="unknown")
        rows.append(row)
    beds = sum(w["beds"] for w in rows)
    occupied = sum(w["occupied"] for w in rows) if tables_ready else None
    totals: dict[str, Any] = {
        "wards": len(rows),
        "beds": beds,
        "occupied": occupied,
        "occupancy_pct": None if occupied is None else occupancy_pct(occupied, beds),
        "pressure": "unknown" if occupied is None else pressure(occupied, beds),
        "waiting_for_bed": sum(w["waiting_for_bed"] for w in rows) if tables_ready else None,
        "by_pressure": {
            p: sum(1 for w in rows if w["pressure"] == p) for p in ("green", "amber", "red", "unknown")
        },
    }
    for outcome in ("admitted", "diverted", "postponed"):
        totals[outcome] = None if requests is None else sum(w["requests"][outcome] for w in rows)
    return {"wards": rows, "totals": totals}


def staff_board(
    members: Iterable[Mapping[str, Any]], wards: Iterable[Ward], tables_ready: bool = True
) -> dict[str, Any]:
    """Assignments per ward, role and specialty from ``assignment_by_staff`` values, with each
    ward's minimum and the wards below it. Until the tables are ready, the counts and the gaps
    are None: nobody is missing from a ward that has not been read yet."""
    roles: dict[int, Counter[str]] = {}
    specialties: dict[int, Counter[str]] = {}
    for member in members:
        if rules.is_assigned(member):
            roles.setdefault(member["ward_id"], Counter())[member["role"]] += 1
            specialties.setdefault(member["ward_id"], Counter())[member["specialty"]] += 1
    rows, gaps = [], []
    for ward in wards:
        by_role = roles.get(ward.ward_id, Counter())
        short = staffing_gaps(ward.beds, by_role)
        minimum = minimum_staffing(ward.beds)
        rows.append(
            {
                "ward_id": ward.ward_id,
                "code": ward.code,
                "name": ward.name,
                "specialty": ward.specialty,
                "beds": ward.beds,
                "staff_count": sum(by_role.values()),
                "roles": {role: by_role.get(role, 0) for role in STAFF_PER_BED},
                "specialties": dict(sorted(specialties.get(ward.ward_id, Counter()).items())),
                "minimum": minimum,
                "short": short,
            }
        )
        for role, missing in short.items():
            gaps.append(
                {
                    "ward_id": ward.ward_id,
                    "code": ward.code,
                    "name": ward.name,
                    "role": role,
                    "assigned": by_role.get(role, 0),
                    "minimum": minimum[role],
                    "short": missing,
                }
            )
    if not tables_ready:
        for row in rows:
            row.update(staff_count=None, roles=dict.fromkeys(STAFF_PER_BED), specialties={}, short={})
        return {"wards": rows, "staff_count": None, "gaps": None}
    return {"wards": rows, "staff_count": sum(r["staff_count"] for r in rows), "gaps": gaps}


def reconcile(
    rows: Iterable[Sequence[Any]], unconfirmed: Mapping[int, int], start: dt.date
) -> list[dict[str, Any]]:
    """Per day, newest first: transfers streamed, in the batch, in both, matching or not, and
    streamed transfers the batch did not hold (dead letters). ``rows`` are (sim_day, streamed,
    in_batch, both, matching, mismatched, stream_only)."""
    days = []
    for day, streamed, in_batch, both, matching, mismatched, stream_only in rows:
        missing = unconfirmed.get(day, 0)
        days.append(
            {
                "sim_day": day,
                "sim_date": (start + dt.timedelta(days=day)).isoformat(),
                "streamed": streamed + missing,
                "in_batch": in_batch,
                "both": both,
                "matching": matching,
                "mismatched": mismatched,
                "stream_only": stream_only,
                "unconfirmed": missing,
                "ok": mismatched == 0 and stream_only == 0 and missing == 0 and matching == both,
            }
        )
    return sorted(days, key=lambda d: d["sim_day"], reverse=True)


def consumer_lag(
    partitions: Iterable[tuple[str, int]],
    highwater: Mapping[tuple[str, int], int | None],
    committed: Mapping[tuple[str, int], int | None],
    position: Mapping[tuple[str, int], int | None],
) -> list[dict[str, Any]]:
    """Per partition: its end (highwater), the next offset to commit, and the lag between them.

    Offsets follow Kafka: the highwater is the offset the next message will get, and a committed
    offset is the next one to read. A partition with nothing committed by this worker yet counts
    from its read position; one whose end is not known yet (no fetch answered) has lag None.
    """
    out = []
    for tp in sorted(partitions):
        end, done, read = highwater.get(tp), committed.get(tp), position.get(tp)
        base = done if done is not None else read
        lag = None if end is None else max(0, end - (base or 0))
        out.append(
            {
                "topic": tp[0],
                "partition": tp[1],
                "highwater": end,
                "committed": done,
                "position": read,
                "lag": lag,
            }
        )
    return out


@dataclasses.dataclass(frozen=True)
class DayFigures:
    """What the charts show of one complete day (complete days never change)."""

    census: dict[int, int]
    admissions: int
    discharges: int
