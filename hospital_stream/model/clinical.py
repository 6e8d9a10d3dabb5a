"""Clinical records of one simulated day: lab results, vital signs, prescriptions, procedures.

``clinical_day(rng, day, start_date, stays)`` turns the admissions present during ``day`` into
that day's rows of the four bulk tables (after MIMIC-IV's ``labevents``, ``chartevents``,
``prescriptions`` and ``procedures_icd``). They are most of the database, so all per-row work
is vectorised with NumPy: loops run over tables, columns or a handful of groups, never over
rows, and each table comes back as :class:`columns.Columns`, whose COPY text is rendered in one pass.

The model is calibrated by mechanism (see docs/realism.md): lab panels are ordered at admission
and then on daily rounds at rates that fall with the day of stay and rise in the ICU; results
spread around each test's reference interval, abnormal more often in the ICU, in older patients
and early in a stay; vital signs follow the ward's observation schedule; prescriptions are
written at admission and changed on later rounds; procedures (ICD-10-PCS) are coded on an
admission's first day. Traits that must persist across days (a patient's anaemia, their blood
pressure) come from a hash of the admission and patient ids, not from the day's generator, so a
patient's results stay consistent from one day to the next while each day draws afresh.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Sequence

import numpy as np

from hospital_stream.model import columns, reference
from hospital_stream.model.calendar import MINUTES_PER_DAY
from hospital_stream.schema import CLINICAL_COLUMNS

TABLE_COLUMNS = CLINICAL_COLUMNS
#: natural keys: the day, then the row's number that day (``day * 10**width + n``)
ID_WIDTHS = {"lab_results": 8, "vital_signs": 8, "prescriptions": 7}
LAB_FLAGS = ("N", "L", "H", "LL", "HH")

#: the clinical services of sim.SPECIALTIES, in the order of the catalogues' weight columns
SERVICES = reference.CLINICAL_SERVICES[:-1]
ICU_COLUMN = len(SERVICES)


# --- the admissions present during a day --------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Stays:
    """One entry per admission in hospital at some time during the day (NumPy arrays of equal
    length). Times are model minutes since the start date's midnight (SAST)."""

    admission_id: np.ndarray  # int64
    patient_id: np.ndarray  # int64
    ward_id: np.ndarray  # int32, the ward at the start of the day's interval
    specialty: np.ndarray  # <U16, the admitting service: a sim.SPECIALTIES name
    in_icu: np.ndarray  # bool, the ward is the ICU
    age: np.ndarray  # float64 years
    sex: np.ndarray  # <U1 "F" / "M"
    admitted_at: np.ndarray  # int64 minute
    present_from: np.ndarray  # int64 minute: max(admitted_at, the day's start)
    present_until: np.ndarray  # int64 minute: the discharge if it is today, else the day's end
    planned_discharge: np.ndarray  # int64 minute: the stay's planned end
    admission_type: np.ndarray  # <U20, a sim.ADMISSION_TYPES name

    def __post_init__(self) -> None:
        lengths = {len(getattr(self, f.name)) for f in dataclasses.fields(self)}
        if len(lengths) > 1:
            raise ValueError(f"Stays arrays differ in length: {sorted(lengths)}")

    def __len__(self) -> int:
        return len(self.admission_id)


def _table(table: str, data: Sequence[columns.Column]) -> columns.Columns:
    return columns.Columns(TABLE_COLUMNS[table], data)


# --- shared helpers of the model ----------------------------------------------------------------

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a well-spread 64-bit hash of each uint64."""
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _MIX1
    x = (x ^ (x >> np.uint64(27))) * _MIX2
    return x ^ (x >> np.uint64(31))


def _trait(salt: int, *keys: np.ndarray) -> np.ndarray:
    """Uniforms in (0, 1) that depend only on the keys: a patient's persistent traits."""
    h = np.full(np.broadcast(*keys).shape, np.uint64(salt), dtype=np.uint64)
    for key in keys:
        h = _mix(h ^ np.asarray(key).astype(np.uint64))
    return ((h >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53


def _bits_uniform(bits: np.ndarray) -> np.ndarray:
    """A uniform in (0, 1) from the low 21 bits of each hash."""
    return ((bits & np.uint64(0x1FFFFF)).astype(np.float64) + 0.5) * 2.0**-21


def _normal_trait(salt: int, *keys: np.ndarray) -> np.ndarray:
    u1, u2 = _trait(salt, *keys), _trait(salt + 1, *keys)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def _profile(hour_weights: Sequence[float]) -> np.ndarray:
    """A time-of-day profile as cumulative weights per minute (1441 entries)."""
    if len(hour_weights) != 24 or min(hour_weights) <= 0:
        raise ValueError("a profile has 24 positive hourly weights")
    return np.concatenate(([0.0], np.cumsum(np.repeat(np.asarray(hour_weights, dtype=float), 60))))


#: phlebotomy rounds at 05:00-07:00, fewer draws later in the day
LAB_HOURS = _profile([0.3] * 4 + [1.5, 8, 8, 3] + [1.0] * 10 + [0.6] * 4 + [0.3] * 2)
#: ward rounds write most new orders in the morning
ROUND_HOURS = _profile([0.1] * 7 + [0.6, 3, 3, 3, 3, 2, 2, 1.2, 1.2, 1.2, 0.6, 0.6, 0.6] + [0.3] * 4)
#: elective theatre lists 08:00-16:00; emergencies at any hour
THEATRE_HOURS = _profile([0.15] * 7 + [0.5] + [2.5] * 8 + [1.2] * 2 + [0.4] * 6)
BEDSIDE_HOURS = _profile([0.2] * 7 + [0.5] + [2.0] * 9 + [0.8] * 3 + [0.4] * 4)
ANY_HOUR = _profile([1.0] * 24)


def _times(rng: np.random.Generator, hours: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Minutes in ``[lo, hi)`` (hi > lo), drawn from a time-of-day profile restricted to them."""
    total = hours[-1]

    def cumulative(t: np.ndarray) -> np.ndarray:
        days = t // MINUTES_PER_DAY
        return days * total + hours[t - days * MINUTES_PER_DAY]

    a, b = cumulative(lo), cumulative(hi)
    target = a + rng.random(len(lo)) * (b - a)
    days = np.floor(target / total)
    minute = np.searchsorted(hours, target - days * total, side="right") - 1
    when = days.astype(np.int64) * MINUTES_PER_DAY + np.clip(minute, 0, MINUTES_PER_DAY - 1)
    return np.clip(when, lo, hi - 1)


def _choose_by_keys(keys: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest finite keys of each row, as (row, column) pairs, row-major."""
    take = np.minimum(k, np.isfinite(keys).sum(axis=1))
    most = int(take.max(initial=0))
    if most == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if most == 1:
        rows = np.flatnonzero(take)
        return rows, keys[rows].argmax(axis=1)
    if most < keys.shape[1]:
        # partition off the largest keys, then sort only that block
        order = np.argpartition(-keys, most - 1, axis=1)[:, :most]
        block = np.take_along_axis(keys, order, axis=1)
        order = np.take_along_axis(order, np.argsort(-block, axis=1, kind="stable"), axis=1)
    else:
        order = np.argsort(-keys, axis=1, kind="stable")
    rows, ranks = np.nonzero(np.arange(most)[None, :] < take[:, None])
    return rows, order[rows, ranks]


def _option(u: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """An option index in [0, count), each about 0.6 times as likely as the one before it
    (the catalogues list the usual choice first)."""
    ratio = 0.6
    # inverse CDF of the truncated geometric distribution
    mass = 1.0 - ratio**counts
    return np.minimum(np.floor(np.log1p(-u * mass) / np.log(ratio)).astype(np.int64), counts - 1)


def _stable_order(*keys: np.ndarray) -> np.ndarray:
    """The permutation that sorts by the last key, then the one before it, ... (like lexsort).
    Keys whose range fits 16 bits use NumPy's linear-time radix sort, one pass a key."""
    order = np.arange(len(keys[0]))
    for key in keys:
        ranked = key[order]
        low = int(ranked.min(initial=0))
        if len(ranked) and int(ranked.max()) - low < 2**16:
            ranked = (ranked - low).astype(np.uint16)
        order = order[np.argsort(ranked, kind="stable")]
    return order


def _rank_within_runs(sizes: np.ndarray) -> np.ndarray:
    """0, 1, ..., size - 1 for each of the consecutive runs of the given sizes."""
    return np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)


def _rank_within(group: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... within each run of equal values of ``group`` (sorted)."""
    n = len(group)
    if not n:
        return np.zeros(0, dtype=np.int64)
    starts = np.r_[0, np.flatnonzero(np.diff(group)) + 1]
    sizes = np.diff(np.r_[starts, n])
    return np.arange(n) - np.repeat(starts, sizes)


# --- the day's context ----------------------------------------------------------------------------


@dataclasses.dataclass
class _Day:
    """Per-admission arrays the four generators share."""

    day: int
    start_date: dt.date
    stays: Stays
    service: np.ndarray  # index into SERVICES
    icu: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    #: calendar day of stay: 0 on the admission day
    day_of_stay: np.ndarray
    #: the admission's first day in the records (its admission day, or day 0 for admissions
    #: made before the records begin): admission orders and procedures are written then
    first: np.ndarray
    #: the first 24 hours of the admission that fall in the records' first day or later
    window_lo: np.ndarray
    window_hi: np.ndarray
    key_a: np.ndarray
    key_p: np.ndarray

    @property
    def n(self) -> int:
        return len(self.stays)

    @property
    def fraction(self) -> np.ndarray:
        return (self.hi - self.lo) / MINUTES_PER_DAY

    @property
    def child(self) -> np.ndarray:
        return self.stays.age < 13

    def trait(self, salt: int) -> np.ndarray:
        """A uniform per admission that is the same every day of the stay."""
        return _trait(salt, self.key_a, self.key_p)

    def normal_trait(self, salt: int) -> np.ndarray:
        return _normal_trait(salt, self.key_a, self.key_p)

    @functools.cached_property
    def stay_hash(self) -> np.ndarray:
        return _mix(_mix(self.key_a.astype(np.uint64)) ^ self.key_p.astype(np.uint64))


def _day_context(day: int, start_date: dt.date, stays: Stays) -> _Day:
    index = {name: i for i, name in enumerate(SERVICES)}
    names, inverse = np.unique(np.asarray(stays.specialty, dtype=str), return_inverse=True)
    unknown = [str(name) for name in names if name not in index]
    if unknown:
        raise ValueError(f"unknown specialty {unknown[0]!r}; expected one of {', '.join(SERVICES)}")
    service = np.array([index[str(name)] for name in names], dtype=np.int64)[inverse.ravel()]
    day_start = day * MINUTES_PER_DAY
    admitted = np.asarray(stays.admitted_at, dtype=np.int64)
    lo = np.asarray(stays.present_from, dtype=np.int64)
    hi = np.asarray(stays.present_until, dtype=np.int64)
    admission_day = admitted // MINUTES_PER_DAY
    carried_in = (day == 0) & (admitted < day_start)
    first = (admission_day == day) | carried_in
    window_lo = np.where(carried_in, admitted, lo)
    window_hi = np.where(carried_in, np.minimum(admitted + MINUTES_PER_DAY, hi), hi)
    return _Day(
        day=day,
        start_date=start_date,
        stays=stays,
        service=service,
        icu=np.asarray(stays.in_icu, dtype=bool),
        lo=lo,
        hi=hi,
        day_of_stay=np.maximum(day - admission_day, 0),
        first=first,
        window_lo=window_lo,
        window_hi=window_hi,
        key_a=np.asarray(stays.admission_id, dtype=np.int64),
        key_p=np.asarray(stays.patient_id, dtype=np.int64),
    )


def clinical_day(
    rng: np.random.Generator, day: int, start_date: dt.date, stays: Stays
) -> dict[str, columns.Columns]:
    """The day's lab results, vital signs, prescriptions and procedures of ``stays``."""
    context = _day_context(day, start_date, stays)
    return {
        "lab_results": _lab_results(rng, context),
        "vital_signs": _vital_signs(rng, context),
        "prescriptions": _prescriptions(rng, context),
        "procedures": _procedures(rng, context),
    }


def _ids(day: int, table: str, n: int) -> np.ndarray:
    return day * 10 ** ID_WIDTHS[table] + np.arange(1, n + 1, dtype=np.int64)


# --- lab results ----------------------------------------------------------------------------------

#: Panels ordered with the admission work-up, by service (SERVICES order). A panel yields one
#: result per test (a full blood count five), so day-1 counts land near 11 results a medical
#: admission and 16-18 a surgical one (Valencia et al. 2017; the by-day-of-stay study).
ADMISSION_PANELS = {
    #         med   surg  orth  paed  mat   psy   onc   card
    "FBC": (0.75, 0.95, 0.95, 0.80, 0.90, 0.70, 0.95, 0.95),
    "UE": (0.60, 0.92, 0.90, 0.60, 0.45, 0.60, 0.85, 0.95),
    "LFT": (0.10, 0.45, 0.15, 0.12, 0.12, 0.30, 0.50, 0.12),
    "CMP": (0.08, 0.35, 0.15, 0.08, 0.05, 0.05, 0.35, 0.30),
    "CRP": (0.30, 0.60, 0.35, 0.55, 0.20, 0.10, 0.35, 0.25),
    "GLU": (0.25, 0.40, 0.30, 0.30, 0.35, 0.25, 0.25, 0.40),
    "COAG": (0.08, 0.75, 0.65, 0.05, 0.30, 0.02, 0.30, 0.40),
    "ABG": (0.03, 0.05, 0.01, 0.03, 0.01, 0.00, 0.01, 0.05),
    "CARD": (0.05, 0.02, 0.01, 0.00, 0.00, 0.00, 0.02, 0.90),
    "LIPID": (0.02, 0.00, 0.00, 0.00, 0.00, 0.05, 0.00, 0.40),
    "HBA1C": (0.05, 0.05, 0.04, 0.00, 0.02, 0.03, 0.02, 0.25),
    "TSH": (0.03, 0.01, 0.01, 0.02, 0.01, 0.30, 0.02, 0.10),
    "CD4": (0.10, 0.03, 0.03, 0.02, 0.08, 0.05, 0.05, 0.03),
    "FERRITIN": (0.02, 0.01, 0.01, 0.02, 0.02, 0.00, 0.05, 0.02),
    "PCT": (0.03, 0.05, 0.01, 0.04, 0.00, 0.00, 0.05, 0.02),
    "PANC": (0.03, 0.20, 0.01, 0.02, 0.01, 0.00, 0.02, 0.03),
    "URATE": (0.02, 0.01, 0.02, 0.00, 0.10, 0.00, 0.05, 0.03),
    "DDIMER": (0.03, 0.02, 0.03, 0.00, 0.02, 0.00, 0.03, 0.08),
    "LITHIUM": (0.00, 0.00, 0.00, 0.00, 0.00, 0.12, 0.00, 0.00),
}
#: Panels ordered on the morning rounds of the second day (expected per patient-day); later
#: days fall towards LATER_DAY_SHARE of it (about seven results a day on a medical ward).
DAILY_PANELS = {
    #         med   surg  orth  paed  mat   psy   onc   card
    "FBC": (0.70, 0.75, 0.55, 0.40, 0.40, 0.06, 0.85, 0.55),
    "UE": (0.85, 0.85, 0.55, 0.35, 0.18, 0.06, 0.75, 0.90),
    "LFT": (0.15, 0.18, 0.03, 0.06, 0.06, 0.02, 0.35, 0.06),
    "CMP": (0.30, 0.30, 0.06, 0.06, 0.02, 0.00, 0.35, 0.35),
    "CRP": (0.40, 0.45, 0.30, 0.35, 0.06, 0.01, 0.35, 0.18),
    "GLU": (0.25, 0.18, 0.12, 0.22, 0.12, 0.01, 0.12, 0.25),
    "COAG": (0.10, 0.18, 0.12, 0.02, 0.02, 0.00, 0.06, 0.30),
    "ABG": (0.02, 0.02, 0.00, 0.02, 0.00, 0.00, 0.01, 0.03),
    "CARD": (0.03, 0.00, 0.00, 0.00, 0.00, 0.00, 0.01, 0.40),
    "LIPID": (0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.02),
    "HBA1C": (0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00),
    "TSH": (0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00),
    "CD4": (0.01, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00),
    "FERRITIN": (0.01, 0.00, 0.00, 0.00, 0.00, 0.00, 0.02, 0.00),
    "PCT": (0.03, 0.02, 0.00, 0.01, 0.00, 0.00, 0.05, 0.00),
    "PANC": (0.01, 0.04, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00),
    "URATE": (0.00, 0.00, 0.00, 0.00, 0.05, 0.00, 0.05, 0.00),
    "DDIMER": (0.01, 0.00, 0.01, 0.00, 0.00, 0.00, 0.00, 0.01),
    "LITHIUM": (0.00, 0.00, 0.00, 0.00, 0.00, 0.03, 0.00, 0.00),
}
LATER_DAY_SHARE = 0.85
LATER_DAY_DECAY_DAYS = 2.0
#: the admission day's own repeats (post-operative bloods, a second potassium) per present day
ADMISSION_DAY_ROUTINE = (0.3, 0.6, 0.6, 0.3, 0.3, 0.1, 0.3, 0.3)
#: ICU: every panel more often, and blood gases (with lactate) about every six hours
ICU_PANEL_FACTOR = 2.2
ICU_EXTRA_PANELS = {"ABG": 4.0, "GLU": 1.5, "CMP": 0.5, "COAG": 0.5}
#: how ill a service's patients are, scaling the share with abnormal results
SERVICE_ACUITY = (1.0, 0.9, 0.6, 0.8, 0.5, 0.35, 1.1, 1.0)


@dataclasses.dataclass(frozen=True)
class _LabTable:
    codes: tuple[str, ...]
    panels: tuple[str, ...]
    #: the tests of panel p are panel_order[panel_start[p] : panel_start[p] + panel_size[p]]
    panel_order: np.ndarray
    panel_start: np.ndarray
    panel_size: np.ndarray
    log: np.ndarray
    centre: np.ndarray
    spread: np.ndarray
    ref_low: np.ndarray
    ref_high: np.ndarray
    crit_low: np.ndarray
    crit_high: np.ndarray
    min_value: np.ndarray
    max_value: np.ndarray
    decimals: np.ndarray
    abnormal_rate: np.ndarray
    high_share: np.ndarray
    female_factor: np.ndarray
    child_factor: np.ndarray
    admission: np.ndarray  # panels x services
    daily: np.ndarray
    icu_extra: np.ndarray


@functools.cache
def _lab_table() -> _LabTable:
    tests = reference.lab_tests()
    panels = tuple(dict.fromkeys(t.panel for t in tests))
    if set(panels) != set(ADMISSION_PANELS) or set(panels) != set(DAILY_PANELS):
        raise ValueError("lab_tests.csv panels and the panel rates disagree")
    sizes = [sum(t.panel == p for t in tests) for p in panels]
    log = np.array([t.scale == "log" for t in tests])
    low = np.array([t.dist_low for t in tests])
    high = np.array([t.dist_high for t in tests])
    low_t = np.where(log, np.log(np.where(log, low, 1.0)), low)
    high_t = np.where(log, np.log(np.where(log, high, 1.0)), high)

    def limits(values: list[float | None], missing: float) -> np.ndarray:
        return np.array([missing if v is None else v for v in values])

    return _LabTable(
        codes=tuple(t.code for t in tests),
        panels=panels,
        panel_order=np.array([i for p in panels for i, t in enumerate(tests) if t.panel == p]),
        panel_start=np.cumsum([0, *sizes[:-1]]),
        panel_size=np.array(sizes),
        log=log,
        centre=(low_t + high_t) / 2,
        spread=(high_t - low_t) / 2 / 1.96,
        ref_low=np.array([t.ref_low for t in tests]),
        ref_high=np.array([t.ref_high for t in tests]),
        crit_low=limits([t.crit_low for t in tests], -np.inf),
        crit_high=limits([t.crit_high for t in tests], np.inf),
        min_value=np.array([t.min_value for t in tests]),
        max_value=np.array([t.max_value for t in tests]),
        decimals=np.array([t.decimals for t in tests], dtype=np.int64),
        abnormal_rate=np.array([t.abnormal_rate for t in tests]),
        high_share=np.array([t.high_share for t in tests]),
        female_factor=np.array([t.female_factor for t in tests]),
        child_factor=np.array([t.child_factor for t in tests]),
        admission=np.array([ADMISSION_PANELS[p] for p in panels]),
        daily=np.array([DAILY_PANELS[p] for p in panels]),
        icu_extra=np.array([ICU_EXTRA_PANELS.get(p, 0.0) for p in panels]),
    )


def _later_day_factor(day_of_stay: np.ndarray) -> np.ndarray:
    """1 on the second day of a stay, falling towards LATER_DAY_SHARE."""
    return LATER_DAY_SHARE + (1 - LATER_DAY_SHARE) * np.exp(
        -np.maximum(day_of_stay - 1, 0) / LATER_DAY_DECAY_DAYS
    )


def _lab_results(rng: np.random.Generator, c: _Day) -> columns.Columns:
    table = _lab_table()
    admitted = np.asarray(c.stays.admitted_at, dtype=np.int64)
    present = c.hi > c.lo
    admission_day = c.first & (admitted >= c.day * MINUTES_PER_DAY) & present
    routine = np.where(
        admission_day, np.asarray(ADMISSION_DAY_ROUTINE)[c.service], _later_day_factor(c.day_of_stay)
    )
    routine = np.where(present, routine * c.fraction, 0.0)
    icu_factor = np.where(c.icu, ICU_PANEL_FACTOR, 1.0)
    # the admission work-up is drawn within the first two hours
    workup = admitted + 20 + rng.integers(0, 100, c.n)
    workup = np.clip(workup, c.lo, np.maximum(c.hi - 1, c.lo))

    n_panels = len(table.panels)
    arriving = np.flatnonzero(admission_day)
    chance = table.admission[:, c.service[arriving]].T * icu_factor[arriving, None]
    first, first_panel = np.nonzero(rng.random(chance.shape) < chance)
    first_stay = arriving[first]
    rates = (
        routine[:, None]
        * (table.daily[:, c.service].T * icu_factor[:, None] + c.icu[:, None] * table.icu_extra[None, :])
    ).ravel()
    positive = np.flatnonzero(rates > 0)
    repeated = np.repeat(positive, rng.poisson(rates[positive]))
    later_stay, later_panel = np.divmod(repeated, n_panels)
    # one row per test of each panel ordered
    order_stay = np.concatenate((first_stay, later_stay))
    order_panel = np.concatenate((first_panel, later_panel))
    order_time = np.concatenate(
        (workup[first_stay], _times(rng, LAB_HOURS, c.lo[later_stay], c.hi[later_stay]))
    )
    size = table.panel_size[order_panel]
    stay = np.repeat(order_stay, size)
    when = np.repeat(order_time, size)
    test = table.panel_order[np.repeat(table.panel_start[order_panel], size) + _rank_within_runs(size)]
    order = _stable_order(stay, when)  # generation order keeps a panel's tests together
    stay, when, test = stay[order], when[order], test[order]

    units, flags = _lab_values(rng, c, table, stay, test)
    s = c.stays
    return _table(
        "lab_results",
        (
            columns.Int(_ids(c.day, "lab_results", len(stay))),
            columns.IntLookup(s.admission_id, stay),
            columns.IntLookup(s.patient_id, stay),
            columns.Text(test, table.codes),
            columns.Time(when, c.start_date),
            columns.Decimal(units, table.decimals[test]),
            columns.Text(flags, LAB_FLAGS),
            columns.Constant(c.day, len(stay)),
        ),
    )


def _lab_values(
    rng: np.random.Generator, c: _Day, table: _LabTable, stay: np.ndarray, test: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Results (in units of the test's last decimal) and their HL7 flags."""
    # per admission: how ill (the chance of abnormal results) and how far it has eased
    acuity = (
        np.asarray(SERVICE_ACUITY)[c.service]
        * np.where(c.icu, 1.8, 1.0)
        * (1 + 0.015 * np.clip(c.stays.age - 45, 0, 45))
        * (1 + 0.6 * np.exp(-c.day_of_stay / 2))
    )
    severity = (0.45 + 0.55 * np.exp(-c.day_of_stay / 3)) * np.where(c.icu, 1.4, 1.0)
    # three persistent uniforms per admission and test, from one 63-bit hash
    bits = _mix(c.stay_hash[stay] ^ (test.astype(np.uint64) + np.uint64(0x5EED)))
    u1, u2, u3 = (_bits_uniform(bits >> np.uint64(shift)) for shift in (0, 21, 42))
    abnormal = u1 < np.minimum(table.abnormal_rate[test] * acuity[stay], 0.9)
    direction = np.where(u2 < table.high_share[test], 1.0, -1.0)
    magnitude = 1.4 - 1.3 * np.log(u3)  # mostly mildly abnormal, a few far out
    z = abnormal * direction * magnitude * severity[stay] + rng.normal(0.0, 0.8, len(stay))
    x = table.centre[test] + z * table.spread[test]
    value = np.where(table.log[test], np.exp(np.where(table.log[test], x, 0.0)), x)
    value *= np.where((c.stays.sex == "F")[stay], table.female_factor[test], 1.0)
    value *= np.where(c.child[stay], table.child_factor[test], 1.0)
    value = np.clip(value, table.min_value[test], table.max_value[test])
    scale = columns.POW10[table.decimals[test]]
    units = np.rint(value * scale).astype(np.int64)
    reported = units / scale
    flags = np.select(
        [
            reported < table.crit_low[test],
            reported > table.crit_high[test],
            reported < table.ref_low[test],
            reported > table.ref_high[test],
        ],
        [3, 4, 1, 2],
        default=0,
    )
    return units, flags


# --- vital signs ---------------------------------------------------------------------------------

#: minutes between observation sets and the first set's clock time (ward routine charts)
ICU_OBSERVATIONS = (60, 0)
EARLY_WARD_OBSERVATIONS = (240, 120)  # 02, 06, 10, 14, 18, 22 h: the first two days of a stay
WARD_OBSERVATIONS = (360, 0)  # 00, 06, 12, 18 h
PSYCHIATRY_OBSERVATIONS = (720, 360)  # 06 and 18 h
#: share of a service's patients with a respiratory illness or a febrile one (before the ICU)
RESPIRATORY_SHARE = (0.25, 0.06, 0.03, 0.30, 0.03, 0.02, 0.10, 0.12)
FEVER_SHARE = (0.20, 0.12, 0.06, 0.30, 0.08, 0.03, 0.18, 0.06)


def _vital_signs(rng: np.random.Generator, c: _Day) -> columns.Columns:
    present = c.hi > c.lo
    psychiatry = c.service == SERVICES.index("psychiatry")
    schedules = (
        (ICU_OBSERVATIONS, c.icu),
        (PSYCHIATRY_OBSERVATIONS, ~c.icu & psychiatry),
        (EARLY_WARD_OBSERVATIONS, ~c.icu & ~psychiatry & (c.day_of_stay <= 1)),
        (WARD_OBSERVATIONS, ~c.icu & ~psychiatry & (c.day_of_stay > 1)),
    )
    day_start = c.day * MINUTES_PER_DAY
    stay_parts, time_parts = [], []
    for (interval, phase), selected in schedules:
        chosen = np.flatnonzero(selected & present)
        grid = day_start + phase + interval * np.arange(MINUTES_PER_DAY // interval)
        late = rng.normal(8.0, 4.0 if interval == 60 else 12.0, (len(chosen), len(grid)))
        when = grid[None, :] + np.clip(np.rint(late), -20, 45).astype(np.int64)
        inside = (when >= c.lo[chosen, None]) & (when < c.hi[chosen, None])
        rows, cols = np.nonzero(inside)
        stay_parts.append(chosen[rows])
        time_parts.append(when[rows, cols])
    # a set of observations on arrival
    admitted = np.asarray(c.stays.admitted_at, dtype=np.int64)
    arriving = np.flatnonzero(c.first & (admitted >= day_start) & present)
    arrival = np.minimum(admitted[arriving] + rng.integers(5, 40, len(arriving)), c.hi[arriving] - 1)
    stay_parts.append(arriving)
    time_parts.append(arrival)
    stay = np.concatenate(stay_parts)
    when = np.concatenate(time_parts)
    order = _stable_order(stay, when)
    stay, when = stay[order], when[order]
    heart, systolic, diastolic, breathing, temperature, saturation = _vital_values(rng, c, stay)
    s = c.stays
    return _table(
        "vital_signs",
        (
            columns.Int(_ids(c.day, "vital_signs", len(stay))),
            columns.IntLookup(s.admission_id, stay),
            columns.IntLookup(s.patient_id, stay),
            columns.IntLookup(s.ward_id, stay),
            columns.Time(when, c.start_date),
            columns.Int(heart),
            columns.Int(systolic),
            columns.Int(diastolic),
            columns.Int(breathing),
            columns.Decimal(temperature, 1),
            columns.Int(saturation),
            columns.Constant(c.day, len(stay)),
        ),
    )


def _influenza_season(date: dt.date) -> float:
    """Southern-hemisphere influenza: more respiratory illness from April to August."""
    distance = min(abs(date.timetuple().tm_yday - 167), 365 - abs(date.timetuple().tm_yday - 167))
    return 1 + 0.6 * float(np.exp(-((distance / 45) ** 2)))


def _vital_values(rng: np.random.Generator, c: _Day, stay: np.ndarray) -> tuple[np.ndarray, ...]:
    """Heart rate, blood pressure, respiratory rate, temperature (tenths) and SpO2 per set."""
    # per admission: norms for age, persistent offsets, the illness and how far it has eased
    age = c.stays.age
    band = np.digitize(age, [1, 5, 13])  # infant, toddler, child, adult
    adult = band == 3
    season = _influenza_season(c.start_date + dt.timedelta(days=c.day))
    icu_risk = np.where(c.icu, 2.5, 1.0)
    respiratory = c.trait(21) < np.asarray(RESPIRATORY_SHARE)[c.service] * season * icu_risk
    febrile = c.trait(22) < np.asarray(FEVER_SHARE)[c.service] * icu_risk
    shocked = c.icu & (c.trait(23) < 0.3)
    severity = (0.3 + 0.7 * np.exp(-c.day_of_stay / 2.5)) * np.where(c.icu, 1.3, 1.0)
    base_temperature = 36.7 + 0.25 * c.normal_trait(24)
    base_heart = np.array([130.0, 110.0, 90.0, 76.0])[band] + 8 * c.normal_trait(26)
    base_heart += (respiratory * 12 + shocked * 22) * severity
    base_breathing = np.array([38.0, 26.0, 20.0, 16.0])[band]
    base_saturation = np.where(adult, 97.6 - 0.03 * np.clip(age - 50, 0, 40), 98.0) - c.icu
    base_systolic = np.array([80.0, 95.0, 105.0, 0.0])[band] + adult * (112 + 0.5 * np.clip(age - 30, 0, 50))
    base_systolic += 13 * c.normal_trait(28) - shocked * 30 * severity
    base_diastolic = 12 + 4 * c.normal_trait(30)
    # per set of observations
    n = len(stay)
    ill = severity[stay]
    fever = febrile[stay] * (rng.random(n) < 0.55) * rng.uniform(0.7, 2.2, n) * ill
    temperature = base_temperature[stay] + rng.normal(0, 0.25, n) + fever
    heart = base_heart[stay] + 9 * np.maximum(temperature - 37.2, 0) + rng.normal(0, 6, n)
    breathing = (
        base_breathing[stay]
        + respiratory[stay] * rng.uniform(4, 12, n) * ill
        + 2 * (temperature > 38)
        + rng.normal(0, 1.8, n)
    )
    saturation = base_saturation[stay] - respiratory[stay] * rng.uniform(2, 10, n) * ill
    saturation += rng.normal(0, 1.1, n)
    systolic = np.clip(np.rint(base_systolic[stay] + rng.normal(0, 9, n)), 60, 240)
    diastolic = np.rint(0.55 * systolic + base_diastolic[stay] + rng.normal(0, 5, n))
    diastolic = np.clip(diastolic, 30, systolic - 10)
    return (
        np.clip(np.rint(heart), 30, 220).astype(np.int64),
        systolic.astype(np.int64),
        diastolic.astype(np.int64),
        np.clip(np.rint(breathing), 6, 55).astype(np.int64),
        np.rint(np.clip(temperature, 34.0, 42.0) * 10).astype(np.int64),
        np.clip(np.rint(saturation), 60, 100).astype(np.int64),
    )


# --- prescriptions ---------------------------------------------------------------------------------

#: orders written with the admission (Poisson means, by service) and new orders or changes a
#: later day; over a stay they come to about 36 rows an admission (MIMIC-IV)
ADMISSION_ORDERS = (18.0, 17.0, 15.0, 11.0, 11.0, 9.0, 15.0, 15.0)
DAILY_ORDERS = (7.0, 6.0, 4.0, 5.5, 5.0, 1.6, 5.5, 5.0)
ICU_ORDER_FACTOR = (1.3, 2.5)  # the admission orders, the later days' orders
SHORT_STAY_ORDER_FACTOR = 0.6  # observation and same-day surgical admissions
BRAND_SHARE = 0.15
FREQUENCY_STAT = "STAT"


@dataclasses.dataclass(frozen=True)
class _MedicineTable:
    codes: tuple[str, ...]
    names: tuple[str, ...]  # the drug as written: generic names, then brands
    brand: np.ndarray  # index into names, -1 if none
    weights: np.ndarray  # medicines x (services + icu)
    child_ok: np.ndarray
    scale_for_children: np.ndarray
    dose_units: np.ndarray  # medicines x options: the dose in 10**-decimals units
    dose_decimals: np.ndarray
    dose_count: np.ndarray
    dose_unit: np.ndarray
    routes: np.ndarray
    route_count: np.ndarray
    frequencies: np.ndarray
    frequency_count: np.ndarray
    duration_days: np.ndarray
    unit_vocabulary: tuple[str, ...]
    route_vocabulary: tuple[str, ...]
    frequency_vocabulary: tuple[str, ...]


def _decimals_of(value: float) -> int:
    text = repr(float(value))
    return 0 if text.endswith(".0") else len(text.split(".")[1])


def _padded(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    width = max(map(len, rows))
    out = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out, np.array([len(row) for row in rows], dtype=np.int64)


@functools.cache
def _medicine_table() -> _MedicineTable:
    medicines = reference.medicines()
    units = tuple(sorted({m.dose_unit for m in medicines}))
    routes = tuple(sorted({r for m in medicines for r in m.routes}))
    frequencies = tuple(sorted({f for m in medicines for f in m.frequencies}))
    brands = tuple(m.brand for m in medicines if m.brand)
    names = tuple(m.name for m in medicines) + brands
    brand_index = np.full(len(medicines), -1, dtype=np.int64)
    at = len(medicines)
    for i, m in enumerate(medicines):
        if m.brand:
            brand_index[i] = at
            at += 1
    dose_decimals, _ = _padded([[_decimals_of(d) for d in m.doses] for m in medicines])
    dose_units, dose_count = _padded([[round(d * 10 ** _decimals_of(d)) for d in m.doses] for m in medicines])
    route_index, route_count = _padded([[routes.index(r) for r in m.routes] for m in medicines])
    frequency_index, frequency_count = _padded(
        [[frequencies.index(f) for f in m.frequencies] for m in medicines]
    )
    return _MedicineTable(
        codes=tuple(m.code for m in medicines),
        names=names,
        brand=brand_index,
        weights=np.array([m.weights for m in medicines]),
        child_ok=np.array([m.paediatric != "no" for m in medicines]),
        scale_for_children=np.array([m.paediatric == "scale" for m in medicines]),
        dose_units=dose_units,
        dose_decimals=dose_decimals,
        dose_count=dose_count,
        dose_unit=np.array([units.index(m.dose_unit) for m in medicines], dtype=np.int64),
        routes=route_index,
        route_count=route_count,
        frequencies=frequency_index,
        frequency_count=frequency_count,
        duration_days=np.array([m.duration_days for m in medicines]),
        unit_vocabulary=units,
        route_vocabulary=routes,
        frequency_vocabulary=frequencies,
    )


def _order_groups(table: _MedicineTable, c: _Day) -> tuple[np.ndarray, np.ndarray]:
    """The stays' prescribing groups (service, ICU, child) and each group's medicine weights."""
    group = (c.service * 2 + c.icu) * 2 + c.child
    service, rest = np.divmod(np.arange(len(SERVICES) * 4), 4)
    icu, child = np.divmod(rest, 2)
    weights = table.weights[:, service].T + (icu[:, None] * 1.5) * table.weights[None, :, ICU_COLUMN]
    return group, weights * np.where(child[:, None] == 1, table.child_ok[None, :], True)


def _draw_with_replacement(rng: np.random.Generator, weights: np.ndarray, group: np.ndarray) -> np.ndarray:
    """One column per entry of ``group``, drawn in proportion to that group's row of weights."""
    cumulative = np.cumsum(weights, axis=1)
    total = cumulative[:, -1:]
    # every group's cumulative shares, offset by the group number, in one increasing array
    shares = np.divide(cumulative, total, out=np.ones_like(cumulative), where=total > 0)
    flat = (shares + np.arange(len(weights))[:, None]).ravel()
    target = group + (1.0 - rng.random(len(group)))  # in (g, g + 1]: skips zero weights
    return np.searchsorted(flat, target) - group * weights.shape[1]


def _prescriptions(rng: np.random.Generator, c: _Day) -> columns.Columns:
    table = _medicine_table()
    present = c.hi > c.lo
    short = np.isin(c.stays.admission_type, ("OBSERVATION", "SURGICAL SAME DAY"))
    # orders written with the admission, all different medicines
    admitting = np.flatnonzero(c.first & (c.window_hi > c.window_lo))
    mean = (
        np.asarray(ADMISSION_ORDERS)[c.service[admitting]]
        * np.where(c.icu[admitting], ICU_ORDER_FACTOR[0], 1.0)
        * np.where(short[admitting], SHORT_STAY_ORDER_FACTOR, 1.0)
    )
    group, group_weights = _order_groups(table, c)
    log_weights = np.full(group_weights.shape, -np.inf)
    np.log(group_weights, out=log_weights, where=group_weights > 0)
    keys = log_weights[group[admitting]] + rng.gumbel(size=(len(admitting), group_weights.shape[1]))
    rows, medicine = _choose_by_keys(keys, rng.poisson(mean))
    first_stay = admitting[rows]
    clerked = c.window_lo + 20 + rng.exponential(80.0, c.n).astype(np.int64)
    later_review = rng.random(len(first_stay)) < 0.2
    start_first = np.where(
        later_review,
        _times(rng, ANY_HOUR, c.window_lo[first_stay], c.window_hi[first_stay]),
        clerked[first_stay] + rng.exponential(15.0, len(first_stay)).astype(np.int64),
    )
    start_first = np.clip(start_first, c.window_lo[first_stay], c.window_hi[first_stay] - 1)
    # new orders and changes on the later days' rounds
    later = present & (c.day_of_stay >= 1)
    mean = (
        np.asarray(DAILY_ORDERS)[c.service]
        * (0.6 + 0.4 * np.exp(-np.maximum(c.day_of_stay - 1, 0) / 3))
        * np.where(c.icu, ICU_ORDER_FACTOR[1], 1.0)
        * np.where(short, SHORT_STAY_ORDER_FACTOR, 1.0)
        * c.fraction
    )
    reviewed = np.repeat(np.arange(c.n), rng.poisson(np.where(later, mean, 0.0)))
    later_medicine = _draw_with_replacement(rng, group_weights, group[reviewed])
    later_start = _times(rng, ROUND_HOURS, c.lo[reviewed], c.hi[reviewed])

    stay = np.concatenate((first_stay, reviewed))
    medicine = np.concatenate((medicine, later_medicine)).astype(np.int64)
    start = np.concatenate((start_first, later_start)).astype(np.int64)
    order = _stable_order(medicine, stay, start)
    stay, medicine, start = stay[order], medicine[order], start[order]
    n = len(stay)

    dose = _option(rng.random(n), table.dose_count[medicine])
    units = table.dose_units[medicine, dose]
    decimals = table.dose_decimals[medicine, dose]
    units, decimals = _children_doses(c, table, stay, medicine, units, decimals)
    route = table.routes[medicine, _option(rng.random(n), table.route_count[medicine])]
    frequency = table.frequencies[medicine, _option(rng.random(n), table.frequency_count[medicine])]
    stat = frequency == table.frequency_vocabulary.index(FREQUENCY_STAT)
    planned = np.asarray(c.stays.planned_discharge, dtype=np.int64)[stay]
    course = table.duration_days[medicine] * MINUTES_PER_DAY * np.exp(rng.normal(0, 0.3, n))
    stop = np.where(table.duration_days[medicine] > 0, start + course.astype(np.int64), planned)
    stop = np.where(stat, start + 60, np.minimum(stop, planned))
    stop = np.maximum(stop, start + 60)
    brand = table.brand[medicine]
    written = np.where((brand >= 0) & (rng.random(n) < BRAND_SHARE), brand, medicine)
    s = c.stays
    return _table(
        "prescriptions",
        (
            columns.Int(_ids(c.day, "prescriptions", n)),
            columns.IntLookup(s.admission_id, stay),
            columns.IntLookup(s.patient_id, stay),
            columns.Text(medicine, table.codes),
            columns.Text(written, table.names),
            columns.Decimal(units, decimals),
            columns.Text(table.dose_unit[medicine], table.unit_vocabulary),
            columns.Text(route, table.route_vocabulary),
            columns.Text(frequency, table.frequency_vocabulary),
            columns.Time(start, c.start_date),
            columns.Time(stop, c.start_date),
            columns.Constant(c.day, n),
        ),
    )


def _children_doses(
    c: _Day,
    table: _MedicineTable,
    stay: np.ndarray,
    medicine: np.ndarray,
    units: np.ndarray,
    decimals: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Children's doses scaled by body weight and rounded to two significant figures."""
    age = c.stays.age[stay]
    scaled = c.child[stay] & table.scale_for_children[medicine]
    if not scaled.any():
        return units, decimals
    weight_kg = np.where(age < 1, 3.5 + 6.5 * age, 8.0 + 2.0 * age)
    dose = units / columns.POW10[decimals] * np.minimum(weight_kg / 70.0, 1.0)
    exponent = np.floor(np.log10(np.maximum(dose, 1e-9))).astype(np.int64)
    child_decimals = np.clip(1 - exponent, 0, 4)
    child_units = np.maximum(np.rint(dose * columns.POW10[child_decimals]).astype(np.int64), 1)
    return np.where(scaled, child_units, units), np.where(scaled, child_decimals, decimals)


# --- procedures ----------------------------------------------------------------------------------

#: how many procedures an admission has (probabilities of 0, 1, 2, 3, 4), by service
PROCEDURE_COUNTS = (
    (0.55, 0.30, 0.10, 0.04, 0.01),  # medicine
    (0.08, 0.42, 0.30, 0.15, 0.05),  # surgery
    (0.10, 0.45, 0.30, 0.12, 0.03),  # orthopaedics
    (0.55, 0.30, 0.10, 0.05, 0.00),  # paediatrics
    (0.04, 0.45, 0.35, 0.13, 0.03),  # maternity
    (0.80, 0.18, 0.02, 0.00, 0.00),  # psychiatry
    (0.35, 0.40, 0.18, 0.06, 0.01),  # oncology
    (0.30, 0.35, 0.20, 0.10, 0.05),  # cardiology
)
ICU_PROCEDURE_COUNTS = (0.05, 0.20, 0.30, 0.25, 0.20)
#: when a category of procedure happens: on theatre lists, at any hour (births, resuscitation)
#: or at the bedside during the day (the rest)
PROCEDURE_HOURS = {"theatre": THEATRE_HOURS, "any hour": ANY_HOUR, "bedside": BEDSIDE_HOURS}
CATEGORY_HOURS = {"operation": "theatre", "obstetric": "any hour", "critical care": "any hour"}


@dataclasses.dataclass(frozen=True)
class _ProcedureTable:
    codes: tuple[str, ...]
    main: np.ndarray
    weights: np.ndarray  # codes x (services + icu)
    exclusive: np.ndarray  # group number, 0 for none
    #: allowed[main, code]: may ``code`` accompany the main procedure ``main``
    allowed: np.ndarray
    #: log-weights per (service, ICU) group: group x codes, -inf for never
    log_weights: np.ndarray
    #: the time-of-day profiles, and each code's
    hours: tuple[np.ndarray, ...]
    hours_of: np.ndarray


@functools.cache
def _procedure_table() -> _ProcedureTable:
    procedures = reference.procedure_codes()
    codes = tuple(p.code for p in procedures)
    groups = sorted({p.exclusive for p in procedures if p.exclusive})
    allowed = np.ones((len(codes), len(codes)), dtype=bool)
    for j, p in enumerate(procedures):
        if p.requires:
            allowed[:, j] = False
            allowed[[codes.index(code) for code in p.requires], j] = True
    weights = np.array([p.weights for p in procedures])
    service, icu = np.divmod(np.arange(2 * len(SERVICES)), 2)
    grouped = weights[:, service].T + (3.0 * icu)[:, None] * weights[None, :, ICU_COLUMN]
    log_weights = np.full(grouped.shape, -np.inf)
    np.log(grouped, out=log_weights, where=grouped > 0)
    profiles = list(PROCEDURE_HOURS)
    return _ProcedureTable(
        codes=codes,
        main=np.array([p.role == "main" for p in procedures]),
        weights=weights,
        exclusive=np.array([groups.index(p.exclusive) + 1 if p.exclusive else 0 for p in procedures]),
        allowed=allowed,
        log_weights=log_weights,
        hours=tuple(PROCEDURE_HOURS.values()),
        hours_of=np.array([profiles.index(CATEGORY_HOURS.get(p.category, "bedside")) for p in procedures]),
    )


def _procedures(rng: np.random.Generator, c: _Day) -> columns.Columns:
    table = _procedure_table()
    coded = np.flatnonzero(c.first & (c.window_hi > c.window_lo))
    icu = c.icu[coded]
    probabilities = np.where(
        icu[:, None],
        np.asarray(ICU_PROCEDURE_COUNTS)[None, :],
        np.asarray(PROCEDURE_COUNTS)[c.service[coded]],
    )
    cumulative = np.cumsum(probabilities, axis=1)
    count = (cumulative < rng.random(len(coded))[:, None] * cumulative[:, -1:]).sum(axis=1)
    log_weights = table.log_weights[c.service[coded] * 2 + icu]
    # the principal procedure first, then others that may accompany it, one per exclusive group
    main_keys = np.where(table.main, log_weights, -np.inf)
    with_main = np.flatnonzero((count > 0) & np.isfinite(main_keys).any(axis=1))
    main = (main_keys[with_main] + rng.gumbel(size=(len(with_main), len(table.codes)))).argmax(axis=1)
    same_group = (table.exclusive[None, :] == table.exclusive[main][:, None]) & (table.exclusive > 0)
    possible = ~table.main & table.allowed[main] & ~same_group
    extra_keys = np.where(possible, log_weights[with_main], -np.inf)
    extra_keys += rng.gumbel(size=extra_keys.shape)
    rows, extra = _choose_by_keys(extra_keys, np.full(len(with_main), 2 * len(PROCEDURE_COUNTS[0])))
    keep = _first_of_groups(rows, table.exclusive[extra])
    rows, extra = rows[keep], extra[keep]
    keep = _rank_within(rows) < count[with_main][rows] - 1
    rows, extra = rows[keep], extra[keep]
    stay = coded[np.concatenate((with_main, with_main[rows]))]
    code = np.concatenate((main, extra))
    when = np.empty(len(code), dtype=np.int64)
    for profile, hours in enumerate(table.hours):
        mine = table.hours_of[code] == profile
        lo, hi = c.window_lo[stay[mine]], c.window_hi[stay[mine]]
        # a procedure follows the arrival by at least half an hour when the day allows it
        lo = np.minimum(lo + 30, hi - 1)
        when[mine] = _times(rng, hours, lo, hi)
    order = np.lexsort((code, when, stay))
    stay, code, when = stay[order], code[order], when[order]
    seq = _rank_within(stay) + 1
    order = np.lexsort((seq, c.key_a[stay]))
    stay, code, when, seq = stay[order], code[order], when[order], seq[order]
    return _table(
        "procedures",
        (
            columns.IntLookup(c.stays.admission_id, stay),
            columns.Int(seq),
            columns.Text(code, table.codes),
            columns.Time(when, c.start_date),
            columns.Constant(c.day, len(stay)),
        ),
    )


def _first_of_groups(rows: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Within each row (rows sorted), keep only the first entry of each non-zero group."""
    if not len(rows):
        return np.zeros(0, dtype=bool)
    key = rows * (group.max() + 1) + group
    order = np.lexsort((np.arange(len(rows)), key))
    first = np.ones(len(rows), dtype=bool)
    first[order[1:]] = key[order[1:]] != key[order[:-1]]
    return first | (group == 0)
