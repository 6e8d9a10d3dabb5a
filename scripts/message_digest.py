"""Print the digest of every message the generator sends for days 0..N-1 of one hospital.

Run before and after a change that must not alter what the pipeline sends::

    python scripts/message_digest.py --days 41                 # the default hospital
    python scripts/message_digest.py --days 41 --beds 120 --population 40000 --seed 7
"""

from __future__ import annotations

import argparse

from hospital_stream.model import HospitalConfig
from hospital_stream.tools.digest import message_digest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=41)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--beds", type=int, default=1800)
    parser.add_argument("--population", type=int, default=5_000_000)
    args = parser.parse_args()
    config = HospitalConfig(seed=args.seed, beds=args.beds, population=args.population)
    print(message_digest(config, args.days))


if __name__ == "__main__":
    main()
