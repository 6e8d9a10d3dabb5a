"""Reference data shipped with the package: ICD-10 codes, the name and address pools, and the
clinical catalogues (lab tests, medicines, procedure codes).

The pools are read once from Faker's locale data (no per-row Faker calls): the simulator then
draws from them with NumPy. Names mix Faker's ``zu_ZA`` locale with others, so the catchment
is not one name pool.

The clinical catalogues in ``data/`` carry, beside the columns of their SQL tables, the model
parameters :mod:`hospital_stream.model.clinical` draws with (distributions, dose options, weights
per clinical service). Their codes come from public code systems:

* ``lab_tests.csv``: LOINC codes and names (Regenstrief Institute, loinc.org), adult reference
  intervals in SI units as South African laboratories (NHLS) report them;
* ``medicines.csv``: WHO ATC codes (WHO Collaborating Centre for Drug Statistics Methodology,
  ATC/DDD index), drugs of the South African Essential Medicines List (hospital level);
* ``procedure_codes.csv``: ICD-10-PCS codes and long descriptions (CMS ICD-10-PCS 2024).
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import importlib
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).parent / "data"

#: (Faker locale, share of the catchment population): isiZulu names dominate, as in Gauteng.
NAME_LOCALES = (("zu_ZA", 0.72), ("en_GB", 0.12), ("nl_NL", 0.08), ("hi_IN", 0.04), ("pt_PT", 0.04))


@dataclasses.dataclass(frozen=True)
class Icd10Code:
    code: str
    description: str
    category: str


@functools.cache
def icd10_codes() -> tuple[Icd10Code, ...]:
    """ICD-10 codes used by the simulator (WHO ICD-10, 2019 edition; see data/icd10.csv)."""
    with (DATA_DIR / "icd10.csv").open(newline="", encoding="utf-8") as handle:
        return tuple(Icd10Code(r["code"], r["description"], r["group"]) for r in csv.DictReader(handle))


@dataclasses.dataclass(frozen=True)
class NamePool:
    locale: str
    share: float
    first_female: tuple[str, ...]
    first_male: tuple[str, ...]
    last: tuple[str, ...]


def _names(value: Any) -> tuple[str, ...]:
    # Faker stores a pool either as a sequence or as an ordered mapping of name -> weight.
    return tuple(sorted(value.keys() if isinstance(value, dict) else value))


@functools.cache
def name_pools() -> tuple[NamePool, ...]:
    pools = []
    for locale, share in NAME_LOCALES:
        provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
        pools.append(
            NamePool(
                locale,
                share,
                _names(provider.first_names_female),
                _names(provider.first_names_male),
                _names(provider.last_names),
            )
        )
    return tuple(pools)


@dataclasses.dataclass(frozen=True)
class AddressPool:
    streets: tuple[str, ...]
    cities: tuple[str, ...]


@functools.cache
def address_pool() -> AddressPool:
    provider = importlib.import_module("faker.providers.address.zu_ZA").Provider
    return AddressPool(_names(provider.street_names), _names(provider.cities))


# --- clinical catalogues ------------------------------------------------------------------------

#: the clinical services the catalogues weight their entries for (sim's specialties and the ICU)
CLINICAL_SERVICES = (
    "medicine",
    "surgery",
    "orthopaedics",
    "paediatrics",
    "maternity",
    "psychiatry",
    "oncology",
    "cardiology",
    "icu",
)


def _read(name: str) -> list[dict[str, str]]:
    with (DATA_DIR / name).open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _optional(text: str) -> float | None:
    return float(text) if text else None


def _weights(row: dict[str, str]) -> tuple[float, ...]:
    return tuple(float(row[f"w_{service}"]) for service in CLINICAL_SERVICES)


@dataclasses.dataclass(frozen=True)
class LabTest:
    """A laboratory test (LOINC), its reference interval and how the model draws its results."""

    code: str
    name: str
    specimen: str
    unit: str
    ref_low: float
    ref_high: float
    #: critical (panic) limits: a result beyond them is flagged LL or HH
    crit_low: float | None
    crit_high: float | None
    decimals: int
    #: "linear" or "log": the scale on which results spread around the healthy range
    scale: str
    #: the central 95% of healthy results (the reference interval unless it starts at 0)
    dist_low: float
    dist_high: float
    min_value: float
    max_value: float
    #: share of acutely ill patients with a persistently abnormal result, and how many high
    abnormal_rate: float
    high_share: float
    female_factor: float
    child_factor: float
    #: the order set the test comes in (a full blood count yields five results)
    panel: str


@functools.cache
def lab_tests() -> tuple[LabTest, ...]:
    """Lab tests the simulator reports (LOINC codes; see data/lab_tests.csv)."""
    tests = []
    for r in _read("lab_tests.csv"):
        ref_low, ref_high = float(r["ref_low"]), float(r["ref_high"])
        tests.append(
            LabTest(
                code=r["test_code"],
                name=r["name"],
                specimen=r["specimen"],
                unit=r["unit"],
                ref_low=ref_low,
                ref_high=ref_high,
                crit_low=_optional(r["crit_low"]),
                crit_high=_optional(r["crit_high"]),
                decimals=int(r["decimals"]),
                scale=r["scale"],
                dist_low=float(r["dist_low"] or ref_low),
                dist_high=float(r["dist_high"] or ref_high),
                min_value=float(r["min_value"]),
                max_value=float(r["max_value"]),
                abnormal_rate=float(r["abnormal_rate"]),
                high_share=float(r["high_share"]),
                female_factor=float(r["female_factor"]),
                child_factor=float(r["child_factor"]),
                panel=r["panel"],
            )
        )
    return tuple(tests)


def lab_test_rows() -> list[tuple[str, str, str, str, float, float]]:
    """Rows of the ``lab_tests`` table."""
    return [(t.code, t.name, t.specimen, t.unit, t.ref_low, t.ref_high) for t in lab_tests()]


@dataclasses.dataclass(frozen=True)
class Medicine:
    """A medicine (ATC code) and how it is prescribed: options listed most common first."""

    code: str
    name: str
    form: str
    #: a South African trade name some prescribers write instead ("" if none)
    brand: str
    routes: tuple[str, ...]
    doses: tuple[float, ...]
    dose_unit: str
    frequencies: tuple[str, ...]
    #: a typical course; 0 means until discharge
    duration_days: float
    #: for children: "scale" the dose by body weight, give the listed dose ("fixed"), or "no"
    paediatric: str
    #: relative frequency of orders per clinical service, in CLINICAL_SERVICES order
    weights: tuple[float, ...]


@functools.cache
def medicines() -> tuple[Medicine, ...]:
    """Medicines the simulator prescribes (WHO ATC codes; see data/medicines.csv)."""
    return tuple(
        Medicine(
            code=r["atc_code"],
            name=r["name"],
            form=r["form"],
            brand=r["brand"],
            routes=tuple(r["routes"].split("|")),
            doses=tuple(float(d) for d in r["doses"].split("|")),
            dose_unit=r["dose_unit"],
            frequencies=tuple(r["frequencies"].split("|")),
            duration_days=float(r["duration_days"]),
            paediatric=r["paediatric"],
            weights=_weights(r),
        )
        for r in _read("medicines.csv")
    )


def medicine_rows() -> list[tuple[str, str, str]]:
    """Rows of the ``medicines`` table."""
    return [(m.code, m.name, m.form) for m in medicines()]


@dataclasses.dataclass(frozen=True)
class ProcedureCode:
    """An ICD-10-PCS procedure and when the model performs it."""

    code: str
    description: str
    category: str
    #: "main": an admission's principal procedure; "extra": one that accompanies it
    role: str
    #: at most one procedure of an exclusive group per admission ("" for none)
    exclusive: str
    #: an extra only accompanies these main procedures (empty: any)
    requires: tuple[str, ...]
    weights: tuple[float, ...]


@functools.cache
def procedure_codes() -> tuple[ProcedureCode, ...]:
    """ICD-10-PCS codes the simulator records (CMS ICD-10-PCS; see data/procedure_codes.csv)."""
    return tuple(
        ProcedureCode(
            code=r["procedure_code"],
            description=r["description"],
            category=r["category"],
            role=r["role"],
            exclusive=r["exclusive"],
            requires=tuple(c for c in r["requires"].split("|") if c),
            weights=_weights(r),
        )
        for r in _read("procedure_codes.csv")
    )


def procedure_code_rows() -> list[tuple[str, str, str]]:
    """Rows of the ``procedure_codes`` table."""
    return [(p.code, p.description, p.category) for p in procedure_codes()]
