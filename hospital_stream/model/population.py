"""The catchment population: birth dates and sexes from South Africa's age pyramid, names and
addresses, and valid 13-digit SA ID numbers."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np

from hospital_stream.model import columns
from hospital_stream.model.config import (
    AGE_PYRAMID,
    PATIENT_COLUMNS,
    POPULATION_BLOCK,
    HospitalConfig,
    day_rng,
)
from hospital_stream.model.reference import address_pool, name_pools

# --- the catchment population -----------------------------------------------------------------


class Population:
    """The catchment: birth dates and sexes for everyone, drawn once from the age pyramid."""

    def __init__(self, config: HospitalConfig) -> None:
        self.config = config
        rng = day_rng(config, 0, 101)
        n = config.population
        band = rng.choice(len(AGE_PYRAMID), size=n, p=AGE_PYRAMID / AGE_PYRAMID.sum())
        age_days = (band * 5 + rng.random(n) * np.where(band == len(AGE_PYRAMID) - 1, 15, 5)) * 365.25
        start_ordinal = config.start_date.toordinal()
        self.birth_ordinal = (start_ordinal - age_days).astype(np.int64)
        self.female = rng.random(n) < 0.51
        self.age_years = age_days / 365.25
        self.id_sequence = _unique_sequence_numbers(self.birth_ordinal, self.female, rng)
        self._eligibility: dict[str, np.ndarray] = {}

    def sample(self, rng: np.random.Generator, specialty: str, k: int) -> np.ndarray:
        """Indices of ``k`` people likely to be admitted to ``specialty``."""
        if k == 0:
            return np.zeros(0, dtype=np.int64)
        cumulative = self._eligibility.get(specialty)
        if cumulative is None:
            cumulative = np.cumsum(self._weights(specialty))
            self._eligibility[specialty] = cumulative
        return np.searchsorted(cumulative, rng.random(k) * cumulative[-1], side="right")

    def _weights(self, specialty: str) -> np.ndarray:
        age, female = self.age_years, self.female
        adult = age >= 13
        if specialty == "paediatrics":
            return np.where(age < 13, np.where(age < 1, 6.0, 1.0), 0.0)
        if specialty == "maternity":
            return np.where(female & (age >= 16) & (age < 45), np.exp(-(((age - 28) / 7) ** 2)), 0.0)
        if specialty == "psychiatry":
            return np.where((age >= 16) & (age < 70), 1.0, 0.0)
        if specialty == "orthopaedics":
            return np.where(
                adult, 1.0 + np.exp((age - 60) / 12) + np.where(~female & (age < 40), 1.0, 0.0), 0.0
            )
        return np.where(adult, np.exp((age - 40) / 18), 0.0)

    def block_columns(self, block: int) -> columns.Columns:
        """The patients rows of block ``block`` of ``POPULATION_BLOCK`` people (index + 1 is the
        patient id), as columns of integers and indices into vocabularies."""
        # One generator per fixed block of people: a person's row never depends on how the
        # caller slices the table.
        rng = day_rng(self.config, 0, 102, block)
        start = block * POPULATION_BLOCK
        stop = min(start + POPULATION_BLOCK, len(self.female))
        n = stop - start
        male = (~self.female[start:stop]).astype(np.int64)
        births = self.birth_ordinal[start:stop]
        names = _person_names()
        u = rng.random((3, n))
        pool = np.searchsorted(names.cumulative_share, u[0] * names.cumulative_share[-1], side="right")
        first = names.first_start[pool, male] + (u[1] * names.first_count[pool, male]).astype(np.int64)
        last = names.last_start[pool] + (u[2] * names.last_count[pool]).astype(np.int64)
        addresses = _street_addresses()
        cities = address_pool().cities
        street = rng.integers(0, len(addresses), n)
        city = rng.integers(0, len(cities), n)
        postcode = rng.integers(1, 9999, n)
        citizen = rng.random(n) < 0.93
        data = (
            columns.Int(np.arange(start + 1, stop + 1)),
            columns.Digits(national_ids(births, self.id_sequence[start:stop], citizen), 13),
            columns.Text(first, names.first),
            columns.Text(last, names.last),
            columns.Text(male, ("F", "M")),
            columns.Date(births),
            columns.Text(street, addresses),
            columns.Text(city, cities),
            columns.Digits(postcode, 4),
            columns.Constant(0, n),
        )
        return columns.Columns(PATIENT_COLUMNS, data)


@dataclasses.dataclass(frozen=True)
class _PersonNames:
    """Every name pool's first and last names in two vocabularies, and where each pool's
    lists lie in them."""

    cumulative_share: np.ndarray  # [pool]
    first: tuple[str, ...]
    first_start: np.ndarray  # [pool, 0 female / 1 male]
    first_count: np.ndarray  # [pool, 0 female / 1 male]
    last: tuple[str, ...]
    last_start: np.ndarray  # [pool]
    last_count: np.ndarray  # [pool]


@functools.cache
def _person_names() -> _PersonNames:
    pools = name_pools()
    firsts = [names for pool in pools for names in (pool.first_female, pool.first_male)]
    first_count = np.array([len(names) for names in firsts], dtype=np.int64)
    last_count = np.array([len(pool.last) for pool in pools], dtype=np.int64)
    return _PersonNames(
        cumulative_share=np.cumsum([pool.share for pool in pools]),
        first=tuple(name for names in firsts for name in names),
        first_start=(np.cumsum(first_count) - first_count).reshape(len(pools), 2),
        first_count=first_count.reshape(len(pools), 2),
        last=tuple(name for pool in pools for name in pool.last),
        last_start=np.cumsum(last_count) - last_count,
        last_count=last_count,
    )


@functools.cache
def _street_addresses() -> tuple[str, ...]:
    """Every street address a person may have: house numbers 1-399 on each street of the pool."""
    return tuple(f"{number} {street} Street" for number in range(1, 400) for street in address_pool().streets)


class PopulationColumns(columns.Columns):
    """The patients table, drawn and rendered one block of people at a time, so day 0 holds
    neither the catchment's rows nor its COPY text (only the block last asked for)."""

    def __init__(self, population: Population) -> None:
        # Columns.__init__ takes the data of a whole table; here each block makes its own
        self.columns = PATIENT_COLUMNS
        self.population = population
        self._block: tuple[int, columns.Columns] | None = None

    def __len__(self) -> int:
        return len(self.population.female)

    def __repr__(self) -> str:
        return f"<PopulationColumns {', '.join(self.columns)}: {len(self)} rows>"

    def copy_text(self, start: int = 0, stop: int | None = None) -> bytes:
        """Rows ``[start, stop)`` as COPY text, each line ending in a newline."""
        return b"".join(part.copy_text(first, last) for part, first, last in self._pieces(start, stop))

    def rows(self, start: int = 0, stop: int | None = None) -> list[tuple[Any, ...]]:
        """Rows ``[start, stop)`` as tuples of Python values (dates as ISO strings)."""
        return [row for part, first, last in self._pieces(start, stop) for row in part.rows(first, last)]

    def _pieces(self, start: int, stop: int | None) -> Iterator[tuple[columns.Columns, int, int]]:
        """The blocks that rows ``[start, stop)`` span, each with the span's rows in it."""
        start, stop, _ = slice(start, stop).indices(len(self))
        if stop <= start:
            return
        for block in range(start // POPULATION_BLOCK, (stop - 1) // POPULATION_BLOCK + 1):
            offset = block * POPULATION_BLOCK
            yield self._columns(block), max(start - offset, 0), min(stop - offset, POPULATION_BLOCK)

    def _columns(self, block: int) -> columns.Columns:
        if self._block is None or self._block[0] != block:
            self._block = (block, self.population.block_columns(block))
        return self._block[1]


#: the Luhn sum of four digits that start at an even position (the second and fourth doubled)
_LUHN_FOUR = np.array(
    [
        a + 2 * b - 9 * (b >= 5) + c + 2 * d - 9 * (d >= 5)
        for a, b, c, d in itertools.product(range(10), repeat=4)
    ]
)


def luhn_check_digit(digits: np.ndarray) -> np.ndarray:
    """Luhn check digits for rows of 12 digits (the South African ID number's last digit)."""
    doubled = digits[:, 1::2] * 2
    total = digits[:, 0::2].sum(axis=1) + (doubled // 10 + doubled % 10).sum(axis=1)
    return (10 - total % 10) % 10


def _yymmdd(birth_ordinal: np.ndarray) -> np.ndarray:
    """The YYMMDD of proleptic ordinals, as integers."""
    year, month, day = columns.calendar_days(birth_ordinal)
    return (year % 100) * 10000 + month * 100 + day


def _unique_sequence_numbers(
    birth_ordinal: np.ndarray, female: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """The SSSS digits of each ID number: 0000-4999 for women, 5000-9999 for men, never the
    same for two people whose numbers share YYMMDD (born the same day, or a century apart)."""
    n = len(birth_ordinal)
    group = _yymmdd(birth_ordinal) * 2 + np.where(female, 0, 1)
    order = np.argsort(group, kind="stable")
    starts = np.r_[0, np.flatnonzero(np.diff(group[order])) + 1]
    sizes = np.diff(np.r_[starts, n])
    if n and sizes.max() > 5000:
        raise ValueError("more than 5,000 people of one sex share a birth date")
    rank = np.arange(n) - np.repeat(starts, sizes)
    offset = np.repeat(rng.integers(0, 5000, len(starts)), sizes)
    sequence = np.empty(n, dtype=np.int64)
    sequence[order] = (offset + rank * 2919) % 5000  # 2919 is coprime to 5000: no repeats
    return sequence + np.where(female, 0, 5000)


def national_ids(birth_ordinal: np.ndarray, sequence: np.ndarray, citizen: np.ndarray) -> np.ndarray:
    """Valid South African ID numbers, YYMMDD SSSS C A Z, as integers of 13 digits (zero-padded)."""
    body = (_yymmdd(birth_ordinal) * 10_000 + sequence) * 100 + np.where(citizen, 0, 1) * 10 + 8
    high, rest = np.divmod(body, 10**8)
    middle, low = np.divmod(rest, 10**4)
    total = _LUHN_FOUR.take(high) + _LUHN_FOUR.take(middle) + _LUHN_FOUR.take(low)
    return body * 10 + (10 - total % 10) % 10


def is_valid_national_id(number: str, birth_date: dt.date | None = None, sex: str | None = None) -> bool:
    """Check an SA ID number's form and Luhn digit, and its agreement with a birth date and sex."""
    if len(number) != 13 or not number.isdigit():
        return False
    digits = np.array([[int(c) for c in number[:12]]])
    if int(luhn_check_digit(digits)[0]) != int(number[12]) or number[10] not in "01":
        return False
    if birth_date is not None and number[:6] != birth_date.strftime("%y%m%d"):
        return False
    return sex is None or (int(number[6:10]) >= 5000) == (sex == "M")
