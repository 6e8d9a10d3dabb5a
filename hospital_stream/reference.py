"""Reference data shipped with the package: ICD-10 codes and the name and address pools.

The pools are read once from Faker's locale data (no per-row Faker calls): the simulator then
draws from them with NumPy. Names mix Faker's ``zu_ZA`` locale with others, so the catchment
is not one name pool.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import importlib
from pathlib import Path

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


def _names(value: object) -> tuple[str, ...]:
    # Faker stores a pool either as a sequence or as an ordered mapping of name -> weight.
    return tuple(sorted(value.keys() if isinstance(value, dict) else value))  # type: ignore[union-attr]


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
