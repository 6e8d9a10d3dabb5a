-- HL7 ADT cancellations: A11 cancel admit, A12 cancel transfer, A13 cancel discharge. A
-- cancellation is a later row of `transfers` that reverses the admission's last event, so its
-- wards are that event's, swapped: a cancelled discharge puts the patient back in the ward, a
-- cancelled transfer moves them back, a cancelled admit frees the bed. Replaying transfers in
-- order therefore still gives every ward's census. A cancelled admission keeps its row, marked
-- with the time it was cancelled; it is never discharged.

ALTER TABLE transfers
    DROP CONSTRAINT transfers_event_type_check,
    DROP CONSTRAINT transfers_check1,  -- (event_type = 'admit') = (from_ward_id IS NULL)
    DROP CONSTRAINT transfers_check2,  -- (event_type = 'discharge') = (to_ward_id IS NULL)
    ADD CONSTRAINT transfers_event_type_check CHECK (event_type IN (
        'admit', 'transfer', 'discharge', 'cancel_admit', 'cancel_transfer', 'cancel_discharge')),
    ADD CONSTRAINT transfers_from_ward_check
        CHECK ((from_ward_id IS NULL) = (event_type IN ('admit', 'cancel_discharge'))),
    ADD CONSTRAINT transfers_to_ward_check
        CHECK ((to_ward_id IS NULL) = (event_type IN ('discharge', 'cancel_admit')));

ALTER TABLE admissions
    ADD COLUMN cancelled_at timestamptz,
    ADD CONSTRAINT admissions_cancelled_check
        CHECK (cancelled_at IS NULL OR (cancelled_at > admitted_at AND discharged_at IS NULL));
