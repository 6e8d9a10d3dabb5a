"""The table values' update rules: idempotent, ordered per key, never above the beds."""

from hospital_stream import sim
from hospital_stream.stream import rules
from hospital_stream.wire.messages import OccupancyChange, StaffChange, StreamedTransfer


def _batch(day, moves, ward_id=1):
    return OccupancyChange(ward_id=ward_id, day=day, source="batch", moves=moves)


def _stream(day, transfer_id, admission_id, delta, ward_id=1):
    return OccupancyChange(
        ward_id=ward_id,
        day=day,
        source="stream",
        transfer_id=transfer_id,
        moves=[[admission_id, admission_id * 10, delta]],
    )


def test_batch_applies_once_and_replays_republish_only_the_latest_census():
    ward = rules.new_ward(1, beds=3)
    ward, closed = rules.apply_occupancy_change(ward, _batch(0, [[1, 10, 1], [2, 20, 1]]))
    assert closed and ward["day"] == 0 and set(ward["patients"]) == {"1", "2"}
    again, closed_again = rules.apply_occupancy_change(ward, _batch(0, [[1, 10, 1], [2, 20, 1]]))
    assert again == ward and closed_again  # same day: census published again, nothing changes
    ward, _ = rules.apply_occupancy_change(ward, _batch(1, [[1, 10, -1]]))
    older, closed_older = rules.apply_occupancy_change(ward, _batch(0, [[3, 30, 1]]))
    assert older == ward and not closed_older


def test_live_moves_show_on_top_of_the_closed_day_and_are_dropped_by_its_batch():
    ward, _ = rules.apply_occupancy_change(rules.new_ward(1, beds=3), _batch(0, [[1, 10, 1]]))
    ward, _ = rules.apply_occupancy_change(ward, _stream(1, 100, 2, +1))
    ward, _ = rules.apply_occupancy_change(ward, _stream(1, 101, 1, -1))
    view = rules.ward_view(ward)
    assert view["occupied"] == 1 and view["patients"] == [20] and view["live_moves"] == 2
    replay, _ = rules.apply_occupancy_change(ward, _stream(1, 100, 2, +1))
    assert replay == ward
    ward, _ = rules.apply_occupancy_change(ward, _batch(1, [[2, 20, 1], [1, 10, -1]]))
    assert ward["live"] == {} and rules.ward_view(ward)["patients"] == [20]


def test_streamed_arrival_into_a_full_ward_waits_instead_of_overfilling():
    ward, _ = rules.apply_occupancy_change(rules.new_ward(1, beds=2), _batch(0, [[1, 10, 1], [2, 20, 1]]))
    ward, _ = rules.apply_occupancy_change(ward, _stream(1, 100, 3, +1))
    view = rules.ward_view(ward)
    assert view["occupied"] == 2 and view["waiting_for_bed"] == 1


def test_snapshot_resets_a_ward_behind_or_ahead_of_it():
    snapshot = OccupancyChange(ward_id=1, day=5, source="snapshot", moves=[[7, 70, 1]])
    fresh, closed = rules.apply_occupancy_change(rules.new_ward(1, beds=3), snapshot)
    assert fresh["day"] == 5 and fresh["patients"] == {"7": 70} and not closed
    ahead = {**rules.new_ward(1, beds=3), "day": 8, "patients": {"9": 90}}
    ahead, _ = rules.apply_occupancy_change(ahead, _stream(9, 100, 4, +1))
    reset, closed = rules.apply_occupancy_change(ahead, snapshot)
    assert reset["day"] == 5 and reset["patients"] == {"7": 70} and not closed
    assert list(reset["live"]) == ["100"]  # a live move of a later day stays
    assert rules.apply_occupancy_change(reset, snapshot) == (reset, False)


def test_batch_days_close_in_order_only():
    ward, closed = rules.apply_occupancy_change(rules.new_ward(1, beds=3), _batch(0, [[1, 10, 1]]))
    assert ward["day"] == 0 and closed
    skipped, closed = rules.apply_occupancy_change(ward, _batch(2, [[2, 20, 1]]))
    assert skipped == ward and not closed  # day 1 has not closed: day 2 waits for its replay
    again, closed = rules.apply_occupancy_change(ward, _batch(0, [[1, 10, 1]]))
    assert again == ward and closed  # the census of the ward's last day is published again
    ward, _ = rules.apply_occupancy_change(ward, _batch(1, [[2, 20, 1]]))
    older, closed = rules.apply_occupancy_change(ward, _batch(0, [[1, 10, 1]]))
    assert older == ward and not closed


def test_occupancy_changes_for_a_day_cover_every_ward_in_event_order():
    rows = [
        (3, 1, 10, "transfer", 1, 2, "2020-01-01T09:00:00+02:00", 0),
        (1, 1, 10, "admit", None, 1, "2020-01-01T08:00:00+02:00", 0),
        (4, 1, 10, "discharge", 2, None, "2020-01-01T12:00:00+02:00", 0),
    ]
    changes = {c.ward_id: c for c in rules.occupancy_changes_for_day(0, [1, 2, 3], rows)}
    assert set(changes) == {1, 2, 3}
    assert changes[1].moves == [[1, 10, 1], [1, 10, -1]]
    assert changes[2].moves == [[1, 10, 1], [1, 10, -1]]
    assert changes[3].moves == []


def test_cancellations_reverse_the_event_they_cancel():
    """A13 puts a discharged patient back in the ward, A12 moves them back, A11 frees the bed."""
    rows = [
        (1, 1, 10, "admit", None, 1, "2020-01-01T08:00:00+02:00", 0),
        (2, 2, 20, "admit", None, 1, "2020-01-01T08:30:00+02:00", 0),
        (3, 1, 10, "transfer", 1, 2, "2020-01-01T09:00:00+02:00", 0),
        (4, 1, 10, "cancel_transfer", 2, 1, "2020-01-01T09:40:00+02:00", 0),
        (5, 1, 10, "discharge", 1, None, "2020-01-01T12:00:00+02:00", 0),
        (6, 2, 20, "cancel_admit", 1, None, "2020-01-01T12:10:00+02:00", 0),
        (7, 1, 10, "cancel_discharge", None, 1, "2020-01-01T13:00:00+02:00", 0),
    ]
    wards = {}
    for change in rules.occupancy_changes_for_day(0, [1, 2], rows):
        wards[change.ward_id], _ = rules.apply_occupancy_change(rules.new_ward(change.ward_id, 2), change)
    assert wards[1]["patients"] == {"1": 10} and wards[2]["patients"] == {}


def test_a_streamed_cancellation_shows_in_the_live_view():
    ward, _ = rules.apply_occupancy_change(rules.new_ward(1, beds=2), _batch(0, [[1, 10, 1]]))
    for transfer_id, event, from_ward, to_ward in (
        (5, "discharge", 1, None),
        (6, "cancel_discharge", None, 1),
    ):
        transfer = StreamedTransfer(
            run_id="r",
            day=1,
            transfer_id=transfer_id,
            admission_id=1,
            patient_id=10,
            event_type=event,
            from_ward_id=from_ward,
            to_ward_id=to_ward,
            transferred_at="2020-01-02T09:00:00+02:00",
        )
        (change,) = rules.occupancy_changes_for_transfer(transfer)
        ward, _ = rules.apply_occupancy_change(ward, change)
        assert rules.ward_view(ward)["occupied"] == (0 if event == "discharge" else 1)


def test_a_streamed_transfer_changes_both_wards():
    transfer = StreamedTransfer(
        run_id="r",
        day=1,
        transfer_id=5,
        admission_id=1,
        patient_id=10,
        event_type="transfer",
        from_ward_id=1,
        to_ward_id=2,
        transferred_at="2020-01-02T09:00:00+02:00",
    )
    changes = rules.occupancy_changes_for_transfer(transfer)
    assert [(c.ward_id, c.moves[0][2]) for c in changes] == [(1, -1), (2, 1)]


def test_staff_changes_are_idempotent_and_ordered_by_assignment():
    start_a = StaffChange(
        staff_id=1, assignment_id=10, change="start", ward_id=3, shift="day", on="2020-01-01"
    )
    end_a = StaffChange(staff_id=1, assignment_id=10, change="end", on="2020-02-01")
    start_b = StaffChange(
        staff_id=1, assignment_id=20, change="start", ward_id=4, shift="night", on="2020-02-02"
    )
    member = None
    for change in (start_a, start_a, end_a, start_b, end_a, start_a):
        member = rules.apply_staff_change(member, change)
    assert member["ward_id"] == 4 and member["assignment_id"] == 20 and rules.is_assigned(member)
    retired = rules.apply_staff_change(
        member, StaffChange(staff_id=1, assignment_id=0, change="retire", on="2021-01-01")
    )
    assert not rules.is_assigned(retired)


def test_snapshot_of_a_checkpoint_matches_its_occupancy():
    config = sim.HospitalConfig(seed=2, beds=80, population=120_000)
    records = list(sim.iter_days(config, 3))[-1]
    occupancy, staff = rules.snapshot_changes(records.state, records.day, [w.ward_id for w in config.wards])
    assert {c.ward_id: len(c.moves) for c in occupancy if c.moves} == records.state.occupancy()
    assert len(staff) == len(records.state.staff)
