"""The dashboard's pure helpers, its metrics and its static page (no Kafka, no PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hospital_stream import sim
from hospital_stream.metrics import CONTENT_TYPE, Metrics
from hospital_stream.model import Ward, calendar
from hospital_stream.stream import rules
from hospital_stream.web import page, panels

STATIC = Path(page.__file__).parent / "static"


@pytest.mark.parametrize(
    ("occupied", "beds", "colour"),
    [
        (0, 40, "green"),
        (33, 40, "green"),  # 82.5 %
        (84, 100, "green"),
        (85, 100, "amber"),  # 85 % is amber
        (95, 100, "amber"),  # 95 % still amber
        (96, 100, "red"),
        (38, 40, "amber"),  # exactly 95 %
        (39, 40, "red"),  # 97.5 %
        (6, 6, "red"),
        (5, 6, "green"),  # 83.3 %
        (0, 0, "red"),  # no beds: nowhere to put anyone
    ],
)
def test_pressure_colours_follow_the_thresholds(occupied, beds, colour):
    assert panels.pressure(occupied, beds) == colour


def test_occupancy_percent_is_rounded_to_a_tenth():
    assert panels.occupancy_pct(73, 101) == 72.3
    assert panels.occupancy_pct(0, 0) == 0.0


def test_minimum_staffing_is_the_simulators_ratio_rounded_down_and_at_least_one():
    assert panels.minimum_staffing(40) == {"doctor": 8, "nurse": 42}  # 8.8 and 42.0
    assert panels.minimum_staffing(4) == {"doctor": 1, "nurse": 4}  # 0.88 -> at least one doctor
    # The simulator hires round(beds * ratio) (at least 1) per ward and keeps that number through
    # retirements and rotations, so a ward it staffed is never below the minimum.
    for ward in sim.HospitalConfig().wards:
        for role, minimum in panels.minimum_staffing(ward.beds).items():
            assert max(1, round(ward.beds * sim.STAFF_PER_BED[role])) >= minimum


def test_staffing_gaps_name_only_the_roles_that_are_short():
    assert panels.staffing_gaps(40, {"doctor": 7, "nurse": 42, "support": 1}) == {"doctor": 1}
    assert panels.staffing_gaps(40, {"doctor": 9, "nurse": 50}) == {}
    assert panels.staffing_gaps(4, {}) == {"doctor": 1, "nurse": 4}


def _member(staff_id, role, ward_id, specialty="medicine", ends_on=None, retired_on=None):
    return {
        "staff_id": staff_id,
        "role": role,
        "specialty": specialty,
        "assignment_id": staff_id,
        "ward_id": ward_id,
        "shift": "day",
        "since": "2020-01-01",
        "ends_on": ends_on,
        "retired_on": retired_on,
    }


def test_staff_board_counts_current_assignments_and_lists_wards_below_minimum():
    wards = [
        Ward(1, "MED-01", "Medical Ward 1", "medicine", 4),
        Ward(2, "ICU", "Intensive Care Unit", "icu", 4),
    ]
    members = [_member(i, "nurse", 1) for i in range(1, 5)]
    members += [
        _member(10, "doctor", 1),
        _member(11, "doctor", 2, specialty="icu"),
        _member(12, "nurse", 2, specialty="icu", ends_on="2020-01-05"),  # moved on: not counted
        _member(13, "nurse", 2, specialty="icu", retired_on="2020-01-05"),
        _member(14, "support", 2, specialty="porter"),
        _member(15, "nurse", None),  # hired, not yet assigned
    ]
    board = panels.staff_board(members, wards)
    med, icu = board["wards"]
    assert med["roles"] == {"doctor": 1, "nurse": 4, "allied": 0, "support": 0} and med["short"] == {}
    assert icu["roles"] == {"doctor": 1, "nurse": 0, "allied": 0, "support": 1}
    assert icu["specialties"] == {"icu": 1, "porter": 1}
    assert board["staff_count"] == 7
    (gap,) = board["gaps"]
    assert gap == {
        **gap,
        "ward_id": 2,
        "code": "ICU",
        "role": "nurse",
        "assigned": 0,
        "minimum": 4,
        "short": 4,
    }


def test_retirement_day_matches_the_simulator_including_29_february():
    assert panels.turns_65_on(dt.date(1955, 6, 15)) == dt.date(2020, 6, 15)
    assert panels.turns_65_on(dt.date(1956, 2, 29)) == dt.date(2021, 3, 1)
    day = dt.date(1952, 1, 1)
    while day < dt.date(1960, 1, 1):
        assert panels.turns_65_on(day) == calendar.birthday(day, sim.RETIREMENT_AGE)
        day += dt.timedelta(days=1)


def test_retirement_window_is_the_next_90_days_after_today():
    today = dt.date(2020, 3, 10)
    born = lambda offset: dt.date(1955, 3, 10) + dt.timedelta(days=offset)  # noqa: E731
    assert not panels.retires_within(born(0), today, 90)  # retired today: no longer upcoming
    assert panels.retires_within(born(1), today, 90)
    assert panels.retires_within(born(90), today, 90)
    assert not panels.retires_within(born(91), today, 90)
    assert not panels.retires_within(born(-30), today, 90)


@pytest.mark.parametrize(
    "today",
    [
        dt.date(2020, 1, 1),
        dt.date(2020, 12, 2),
        dt.date(2020, 12, 1),
        dt.date(2021, 2, 28),
        dt.date(2023, 12, 1),
    ],
)
def test_the_birth_date_range_holds_everyone_in_the_window(today):
    lo, hi = panels.retirement_birth_range(today, 90)
    day = dt.date(today.year - 66, 1, 1)
    inside = []
    while day < dt.date(today.year - 64, 12, 31):
        if panels.retires_within(day, today, 90):
            inside.append(day)
            assert lo <= day <= hi, day
        day += dt.timedelta(days=1)
    assert 89 <= len(inside) <= 91
    assert (hi - lo).days <= 93  # only a day wider on each side


def test_replacements_pair_each_retirement_with_its_own_hire():
    on = dt.date(2020, 5, 4)
    retired = [
        {"staff_id": 1, "role": "nurse", "specialty": "medicine", "ward_id": 3, "on": on},
        {"staff_id": 2, "role": "nurse", "specialty": "medicine", "ward_id": 3, "on": on},
        {"staff_id": 3, "role": "doctor", "specialty": "surgery", "ward_id": 5, "on": on},
        {"staff_id": 4, "role": "nurse", "specialty": "icu", "ward_id": 2, "on": dt.date(2020, 5, 1)},
    ]
    hired = [
        {"staff_id": 91, "role": "nurse", "specialty": "medicine", "ward_id": 3, "on": on},
        {"staff_id": 90, "role": "nurse", "specialty": "medicine", "ward_id": 3, "on": on},
        {"staff_id": 92, "role": "doctor", "specialty": "surgery", "ward_id": 6, "on": on},  # another ward
        {"staff_id": 93, "role": "nurse", "specialty": "icu", "ward_id": 2, "on": dt.date(2020, 5, 1)},
    ]
    pairs = panels.pair_replacements(retired, hired)
    assert [(p["staff_id"], p["replacement_staff_id"]) for p in pairs] == [
        (3, None),
        (2, 91),
        (1, 90),
        (4, 93),
    ]


def test_rates_and_eta():
    assert panels.rate_per_second([]) is None
    assert panels.rate_per_second([(0.0, 5.0)]) is None
    assert panels.rate_per_second([(0.0, 5.0), (0.5, 9.0)]) is None  # under a second apart
    assert panels.rate_per_second([(10.0, 100.0), (12.0, 150.0), (20.0, 600.0)]) == 50.0
    assert panels.rate_per_second([(0.0, 10.0), (5.0, 4.0)]) == 0.0  # a count that fell (a reset)
    assert panels.eta_seconds(9, 10, None) == 0.0  # day 9 of a run that ends before day 10: done
    assert panels.eta_seconds(4, 10, 0.5) == 10.0  # days 5..9 at half a day a second
    assert panels.eta_seconds(-1, 864, 2.0) == 432.0
    assert panels.eta_seconds(4, 10, None) is None
    assert panels.eta_seconds(4, 10, 0.0) is None


def _ward_value(ward_id, beds, patients, live=()):
    value = rules.new_ward(ward_id, beds)
    value["day"] = 7
    value["patients"] = {str(a): a * 10 for a in patients}
    value["live"] = {str(t): [8, a, a * 10, delta] for t, a, delta in live}
    return value


def test_ward_board_totals_and_waiting_arrivals():
    wards = [
        Ward(1, "MED-01", "Medical Ward 1", "medicine", 3),
        Ward(2, "ICU", "Intensive Care Unit", "icu", 4),
    ]
    values = {1: _ward_value(1, 3, [1, 2, 3], live=[(100, 4, 1), (101, 5, 1)])}  # full: two wait
    board = panels.ward_board(values, wards, {1: {"admitted": 2, "diverted": 3}})
    med, icu = board["wards"]
    assert (med["occupied"], med["waiting_for_bed"], med["pressure"], med["code"]) == (3, 2, "red", "MED-01")
    assert med["requests"] == {"admitted": 2, "diverted": 3, "postponed": 0}
    assert "patients" not in med  # the board shows counts, never who
    assert (icu["occupied"], icu["as_of_day"], icu["pressure"]) == (0, -1, "green")  # no table entry yet
    assert board["totals"] == {
        "wards": 2,
        "beds": 7,
        "occupied": 3,
        "occupancy_pct": 42.9,
        "pressure": "green",
        "waiting_for_bed": 2,
        "by_pressure": {"green": 1, "amber": 0, "red": 1, "unknown": 0},
        "admitted": 2,
        "diverted": 3,
        "postponed": 0,
    }
    unknown = panels.ward_board(values, wards, None)
    assert unknown["totals"]["diverted"] is None and unknown["wards"][0]["requests"] is None


def test_a_partition_is_recovered_once_recovery_has_read_to_its_highwater():
    tps = [("t-occupancy-changelog", 0), ("t-occupancy-changelog", 1), ("t-staff-changelog", 0), ("x", 0)]
    highwaters = {tps[0]: 41, tps[1]: -1, tps[2]: 900}  # last offsets; -1: an empty partition
    offsets = {tps[0]: 41, tps[1]: -1, tps[2]: 12, tps[3]: 5}
    assert panels.recovered_partitions(tps, highwaters, offsets) == 2  # tps[3]: highwater not asked yet
    assert panels.recovered_partitions(tps, {}, {}) == 0  # recovery has not started
    assert panels.recovered_partitions([tps[0]], {tps[0]: 41}, {tps[0]: None}) == 0


@pytest.mark.parametrize(
    ("assigned", "actives_ready", "partitions", "recovered", "state", "message"),
    [
        (False, False, 0, 0, "unassigned", "no partition assigned yet: the worker is joining its group"),
        (False, True, 48, 48, "unassigned", "no partition assigned yet: the worker is joining its group"),
        (True, False, 48, 12, "recovering", "recovering tables: 12 of 48 partitions"),
        (True, False, 2, 0, "recovering", "recovering tables: 0 of 2 partitions"),
        (True, True, 48, 47, "ready", "tables ready: 48 partitions"),  # Faust says done: done
        (True, True, 0, 0, "ready", "tables ready: 0 partitions"),  # another worker holds them all
    ],
)
def test_tables_state(assigned, actives_ready, partitions, recovered, state, message):
    shown = panels.tables_state(assigned, actives_ready, partitions, recovered)
    assert (shown["state"], shown["message"], shown["partitions"]) == (state, message, partitions)
    assert shown["state"] in panels.TABLES_STATES
    if state == "ready":
        assert shown["recovered"] == partitions


def test_the_generator_is_elsewhere_only_when_the_group_gave_the_leader_partition_to_another_worker():
    me, other = "http://127.0.0.1:6066", "http://127.0.0.1:6067"
    here = panels.generator_state(True, True, [me], me)
    assert (here["state"], here["leader_url"], here["message"]) == (
        "here",
        me,
        "generator runs here (the leader)",
    )
    there = panels.generator_state(True, False, [other], me)
    assert (there["state"], there["leader_url"]) == ("elsewhere", other)
    assert there["message"] == f"generator on another worker ({other})"
    for assigned, leading, holders in [
        (False, False, []),  # not in the group yet
        (False, False, [other]),  # no assignment of its own: what it knows may be a rebalance old
        (False, True, [me]),
        (True, False, []),  # nobody holds it in what the group told this worker
        (True, False, [me]),  # the group said this worker, but the consumer does not hold it (yet)
    ]:
        unknown = panels.generator_state(assigned, leading, holders, me)
        assert unknown == {"state": "unknown", "leader_url": None, "message": "generator: unknown yet"}


def test_until_the_tables_are_ready_the_boards_show_no_numbers_from_them():
    wards = [
        Ward(1, "MED-01", "Medical Ward 1", "medicine", 3),
        Ward(2, "ICU", "Intensive Care Unit", "icu", 4),
    ]
    values = {1: _ward_value(1, 3, [1, 2, 3])}  # what a half-recovered table may hold
    board = panels.ward_board(values, wards, {1: {"admitted": 2}}, tables_ready=False)
    for ward in board["wards"]:
        assert ward["pressure"] == "unknown"  # grey, not red
        assert (
            ward["occupied"] is ward["occupancy_pct"] is ward["waiting_for_bed"] is ward["as_of_day"] is None
        )
        assert ward["beds"] in (3, 4)  # the hospital's plan, not the table
    assert board["wards"][0]["requests"] == {"admitted": 2, "diverted": 0, "postponed": 0}  # PostgreSQL's
    totals = board["totals"]
    assert (totals["beds"], totals["occupied"], totals["occupancy_pct"], totals["pressure"]) == (
        7,
        None,
        None,
        "unknown",
    )
    assert totals["waiting_for_bed"] is None
    assert totals["by_pressure"] == {"green": 0, "amber": 0, "red": 0, "unknown": 2}
    ready = panels.ward_board(values, wards, None)
    assert ready["totals"]["by_pressure"] == {"green": 1, "amber": 0, "red": 1, "unknown": 0}

    staff = panels.staff_board([_member(1, "doctor", 1)], wards, tables_ready=False)
    assert staff["gaps"] is None and staff["staff_count"] is None  # not known: not "all wards short"
    for row in staff["wards"]:
        assert row["short"] == {} and row["specialties"] == {} and row["staff_count"] is None
        assert row["roles"] == {"doctor": None, "nurse": None, "allied": None, "support": None}
        assert row["minimum"] == panels.minimum_staffing(row["beds"])
    assert len(panels.staff_board([], wards)["gaps"]) == 4  # once ready, an empty table is short


def test_reconciliation_flags_days_whose_stream_and_batch_disagree():
    rows = [(5, 3, 300, 3, 3, 0, 0), (6, 3, 310, 3, 2, 1, 0), (7, 2, 280, 2, 2, 0, 0)]
    days = panels.reconcile(rows, {7: 1}, dt.date(2020, 1, 1))
    assert [(x["sim_day"], x["sim_date"], x["ok"]) for x in days] == [
        (7, "2020-01-08", False),  # one streamed transfer the batch never held
        (6, "2020-01-07", False),  # one streamed copy differed from the batch
        (5, "2020-01-06", True),
    ]
    assert days[0]["streamed"] == 3 and days[0]["unconfirmed"] == 1


def test_consumer_lag_per_partition():
    tps = [("h.records.batch", 0), ("h.census.daily", 0), ("h.deadletter", 0)]
    lag = panels.consumer_lag(
        tps,
        highwater={tps[0]: 120, tps[1]: 40, tps[2]: None},
        committed={tps[0]: 100, tps[1]: None, tps[2]: None},
        position={tps[1]: 38},
    )
    assert [(p["topic"], p["lag"]) for p in lag] == [
        ("h.census.daily", 2),  # nothing committed by this worker yet: from its read position
        ("h.deadletter", None),  # end not known yet
        ("h.records.batch", 20),
    ]


def _families(text: str) -> dict:
    return {family.name: family for family in text_string_to_metric_families(text)}


def test_metrics_render_in_the_text_format_from_a_registry_of_their_own():
    metrics, other = Metrics(), Metrics()  # no clash: neither uses the global registry
    metrics.record_flush(0.2, messages=40, rows=1000, transfers=3, dead_letters=1, at=1_700_000_000.0)
    metrics.record_flush(0.05, messages=10, rows=0, transfers=2, dead_letters=0, at=1_700_000_001.0)
    metrics.set_wards([{"code": "MED-01", "beds": 40, "occupied": 35, "waiting_for_bed": 2}])
    metrics.set_consumer_lag([{"topic": "h.records.batch", "partition": 0, "lag": 7}])
    metrics.set_table_rows({"admissions": 1234, "patients": 20000})
    metrics.dead_letters.set(3)
    metrics.simulated_day.set(41)
    assert CONTENT_TYPE.startswith("text/plain; version=0.0.4")
    families = _families(metrics.render().decode())
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples
    }
    assert samples[("hospital_sink_rows_total", ())] == 1000
    assert samples[("hospital_sink_messages_total", ())] == 50
    assert samples[("hospital_sink_flush_seconds_count", ())] == 2
    assert samples[("hospital_sink_flush_seconds_sum", ())] == pytest.approx(0.25)
    assert samples[("hospital_sink_flush_seconds_bucket", (("le", "0.1"),))] == 1
    assert samples[("hospital_sink_last_flush_timestamp_seconds", ())] == 1_700_000_001.0
    assert samples[("hospital_ward_occupied_beds", (("ward", "MED-01"),))] == 35
    assert samples[("hospital_ward_waiting_for_bed", (("ward", "MED-01"),))] == 2
    assert (
        samples[("hospital_consumer_lag_messages", (("partition", "0"), ("topic", "h.records.batch")))] == 7
    )
    assert samples[("hospital_table_rows", (("table", "admissions"),))] == 1234
    assert samples[("hospital_dead_letters", ())] == 3 and samples[("hospital_simulated_day", ())] == 41
    assert families["hospital_sink_flush_seconds"].type == "histogram"
    assert _families(other.render().decode())["hospital_sink_rows"].samples[0].value == 0
    metrics.set_wards([])  # a ward this worker no longer holds disappears
    assert "MED-01" not in metrics.render().decode()
    metrics.set_wards([{"code": "ICU", "beds": 4, "occupied": None, "waiting_for_bed": None}])  # not ready
    samples = {
        (s.name, s.labels.get("ward"))
        for f in _families(metrics.render().decode()).values()
        for s in f.samples
    }
    assert ("hospital_ward_beds", "ICU") in samples  # its beds are known, its occupancy is not
    assert ("hospital_ward_occupied_beds", "ICU") not in samples
    assert ("hospital_ward_waiting_for_bed", "ICU") not in samples


def test_the_page_loads_nothing_from_elsewhere_and_never_writes_html():
    html = (STATIC / "dashboard.html").read_text()
    scripts = re.findall(r'<script[^>]*src="([^"]+)"', html)
    styles = re.findall(r'<link rel="stylesheet" href="([^"]+)"', html)
    assert scripts == ["/dashboard/static/app.js"] and styles == ["/dashboard/static/style.css"]
    assert "<script>" not in html and " style=" not in html  # nothing inline (the CSP forbids it)
    for name in ("dashboard.html", "app.js", "style.css"):
        text = (STATIC / name).read_text()
        text = text.replace('"http://www.w3.org/2000/svg"', "")  # the SVG namespace: a name, not a load
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text), name
        if name == "app.js":
            for sink in (
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
                "Function(",
            ):
                assert sink not in text, sink
    for name in [*(s.rsplit("/", 1)[1] for s in scripts + styles)]:
        assert page.STATIC_NAME.match(name) and (STATIC / name).is_file()
    assert "script-src 'self'" in page.PAGE_HEADERS["Content-Security-Policy"]
