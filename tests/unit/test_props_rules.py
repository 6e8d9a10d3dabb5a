"""Properties of the table rules (stream/rules.py): any order and any duplication of one set of
changes ends in the same table state, under the delivery the pipeline guarantees.

Preconditions (what Kafka and the routing agent guarantee, and the design relies on):
- a ward's ``batch`` changes are first delivered in day order (one partition per ward, and the
  generator sends every day again in order after a crash); ``stream`` changes come in any order
  relative to them and to each other (they come from other partitions of the streamed topic);
- a staff member's changes are first delivered in the order they happened (one partition per
  staff id, routed from the one batch partition in chunk order);
- any change may be delivered again, any number of times, at any later point (at least once);
- no ``snapshot``: it is a reset, sent when a generator resumes, and every later change follows
  it again (tests/unit/test_rules.py covers it).
"""

from hypothesis import given
from hypothesis import strategies as st

from hospital_stream.stream import rules
from hospital_stream.wire.messages import OccupancyChange, StaffChange

BEDS = 4
admissions = st.integers(1, 6)
moves = st.lists(
    st.tuples(admissions, st.sampled_from([1, -1])).map(lambda m: [m[0], m[0] * 10, m[1]]), max_size=5
)


@st.composite
def ward_history(draw):
    """A ward's batch days (in day order) and live moves streamed for those days and the next."""
    days = draw(st.lists(moves, max_size=5))
    batches = [OccupancyChange(ward_id=1, day=d, source="batch", moves=m) for d, m in enumerate(days)]
    streams = [
        OccupancyChange(ward_id=1, day=d, source="stream", transfer_id=d * 100 + i + 1, moves=[move])
        for d, day_moves in enumerate([*days, draw(moves)])
        for i, move in enumerate(day_moves)
        if draw(st.booleans())
    ]
    return batches, streams


@st.composite
def deliveries(draw, in_order, any_order):
    """``in_order`` first delivered in its order, ``any_order`` anywhere, then copies of any
    change inserted anywhere after the change's first delivery."""
    slots = draw(st.permutations([True] * len(in_order) + [False] * len(any_order)))
    ordered, shuffled = iter(in_order), iter(draw(st.permutations(any_order)))
    sequence = [next(ordered) if slot else next(shuffled) for slot in slots]
    for _ in range(draw(st.integers(0, 6))):
        if not sequence:
            break
        original = draw(st.integers(0, len(sequence) - 1))
        sequence.insert(draw(st.integers(original + 1, len(sequence))), sequence[original])
    return sequence


def _occupancy(changes):
    ward, published = rules.new_ward(1, BEDS), []
    for change in changes:
        ward, closed = rules.apply_occupancy_change(ward, change)
        if closed:
            published.append((change.day, len(ward["patients"])))
    return ward, published


@given(ward_history().flatmap(lambda h: st.tuples(st.just(h), deliveries(*h))))
def test_occupancy_ends_the_same_whatever_the_order_and_duplicates(case):
    (batches, streams), delivered = case
    expected, census = _occupancy(batches + streams)  # each once, days in order, live on top
    ward, published = _occupancy(delivered)
    assert ward == expected
    assert rules.current_patients(ward) == rules.current_patients(expected)
    # every census published again (a redelivered batch) is the one its day closed with
    assert set(published) == set(census)


@st.composite
def staff_history(draw):
    """One staff member's changes in the order they happened: a hire, assignments each starting
    after the one before, some ended, perhaps a retirement."""
    history = [StaffChange(staff_id=7, change="hire", role="nurse", specialty="medicine")]
    assignment = 0
    for _ in range(draw(st.integers(0, 4))):
        assignment += draw(st.integers(1, 3))
        ward = draw(st.integers(1, 3))
        history.append(
            StaffChange(staff_id=7, assignment_id=assignment, change="start", ward_id=ward, on="2020-01-02")
        )
        if draw(st.booleans()):
            history.append(StaffChange(staff_id=7, assignment_id=assignment, change="end", on="2020-02-03"))
    if draw(st.booleans()):
        history.append(StaffChange(staff_id=7, change="retire", on="2021-03-04"))
    return history


def _staff(changes):
    member = None
    for change in changes:
        member = rules.apply_staff_change(member, change)
    return member


@given(staff_history().flatmap(lambda h: st.tuples(st.just(h), deliveries(h, []))))
def test_staff_assignments_end_the_same_whatever_the_duplicates(case):
    history, delivered = case
    assert _staff(delivered) == _staff(history)
