"""The model's state as bytes and back: the checkpoint each day's closing message carries."""

from __future__ import annotations

import dataclasses
import itertools
import json
import operator
import zlib
from collections.abc import Iterable
from typing import Any

import numpy as np

from hospital_stream.model.state import CHECKPOINT_WORDS, HospitalState, Inpatient, StaffMember

CHECKPOINT_MAGIC = b"HSC2"
#: the Inpatient's fields, with the plan's length in place of the plan (its steps follow apart)
_INPATIENT_ATTRIBUTES = (
    "admission_id",
    "patient_id",
    "ward_id",
    "admitted_at",
    "dies",
    "discharge_location",
    "delays",
    "service",
    "admission_type",
    "steps",
)
_INPATIENT_FIELDS = len(_INPATIENT_ATTRIBUTES)
_STAFF_FIELDS = len(dataclasses.fields(StaffMember))


def encode_checkpoint(state: HospitalState) -> bytes:
    """The state, exact and safe to load: a JSON header (the day, the strings, the shapes and
    types), then three little-endian integer arrays (inpatients, their plans' steps, staff),
    zlib-compressed. Equal states give equal bytes."""
    word = CHECKPOINT_WORDS
    inpatients = list(state.inpatients.values())
    arrays = [
        _int_rows(inpatients, _INPATIENT_ATTRIBUTES, word),
        _flat((step for p in inpatients for step in p.plan), 2),
        _flat((member.checkpoint_row for member in state.staff.values()), _STAFF_FIELDS),
    ]
    # int32 where every value fits (ids and minutes do for years): half the bytes to compress
    arrays = [a.astype("<i4") if not a.size or -(2**31) <= a.min() <= a.max() < 2**31 else a for a in arrays]
    header = json.dumps(
        {
            "next_day": state.next_day,
            "words": list(word),
            "rows": [len(a) for a in arrays],
            "types": [a.dtype.str for a in arrays],
        },
        separators=(",", ":"),
    ).encode()
    body = len(header).to_bytes(4, "little") + header + b"".join(a.tobytes() for a in arrays)
    return CHECKPOINT_MAGIC + zlib.compress(body, 1)


def _int_rows(objects: list[Any], attributes: tuple[str, ...], word: dict[str, int]) -> np.ndarray:
    """The attributes of ``objects`` as rows of int64, strings as their numbers in ``word``."""
    out = np.empty((len(objects), len(attributes)), dtype="<i8")
    for j, attribute in enumerate(attributes):
        values = map(operator.attrgetter(attribute), objects)
        if objects and isinstance(getattr(objects[0], attribute), str):
            values = map(word.__getitem__, values)
        out[:, j] = np.fromiter(values, dtype="<i8", count=len(objects))
    return out


def _flat(rows: Iterable[Iterable[int]], width: int) -> np.ndarray:
    """Rows of ``width`` integers as an int64 array (np.fromiter: no per-row conversion)."""
    return np.fromiter(itertools.chain.from_iterable(rows), dtype="<i8").reshape(-1, width)


def decode_checkpoint(blob: bytes) -> HospitalState:
    if not blob.startswith(CHECKPOINT_MAGIC):
        return _state_from_json(json.loads(zlib.decompress(blob)))  # a checkpoint of an older version
    body = zlib.decompress(blob[len(CHECKPOINT_MAGIC) :])
    size = int.from_bytes(body[:4], "little")
    header = json.loads(body[4 : 4 + size])
    words, offset, arrays = header["words"], 4 + size, []
    widths = (_INPATIENT_FIELDS, 2, _STAFF_FIELDS)
    for rows, width, dtype in zip(header["rows"], widths, header["types"], strict=True):
        array = np.frombuffer(body, dtype=dtype, count=rows * width, offset=offset).reshape(rows, width)
        arrays.append(array)
        offset += array.nbytes
    patients, steps, staff = (a.tolist() for a in arrays)
    inpatients, first = {}, 0
    for admission, patient, ward, admitted, dies, location, delays, service, kind, length in patients:
        plan, first = steps[first : first + length], first + length
        inpatients[admission] = Inpatient(
            admission,
            patient,
            ward,
            admitted,
            plan,
            bool(dies),
            words[location],
            delays,
            words[service],
            words[kind],
        )
    members = {
        s[0]: StaffMember(s[0], words[s[1]], words[s[2]], s[3], s[4], words[s[5]], s[6], s[7]) for s in staff
    }
    return HospitalState(next_day=header["next_day"], inpatients=inpatients, staff=members)


def _state_from_json(obj: dict[str, Any]) -> HospitalState:
    inpatients = [Inpatient(*fields) for fields in obj["inpatients"]]
    staff = [StaffMember(*fields) for fields in obj["staff"]]
    return HospitalState(
        next_day=obj["next_day"],
        inpatients={p.admission_id: p for p in inpatients},
        staff={s.staff_id: s for s in staff},
    )
