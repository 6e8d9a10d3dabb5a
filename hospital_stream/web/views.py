"""Web views over the tables (read-only): ``GET /occupancy/`` and ``GET /staff/``.

Each worker answers from the table partitions it holds; with one worker that is everything.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from faust import web

from hospital_stream import services
from hospital_stream.app import app
from hospital_stream.stream import rules
from hospital_stream.tables import assignment_by_staff, occupancy_by_ward


@app.page("/occupancy/")
async def occupancy(self: web.View, request: web.Request) -> web.Response:
    """Per ward: beds, occupied beds and the patients in them, from ``occupancy_by_ward``."""
    wards = []
    for _, value in sorted(occupancy_by_ward.items(), key=lambda kv: int(kv[0])):
        ward = services.wards().get(value["ward_id"])
        wards.append(rules.ward_view(value, ward.name if ward else "", ward.specialty if ward else ""))
    totals = {
        "beds": sum(w["beds"] for w in wards),
        "occupied": sum(w["occupied"] for w in wards),
    }
    return self.json({"wards": wards, "totals": totals})


@app.page("/staff/")
async def staff(self: web.View, request: web.Request) -> web.Response:
    """Current assignments per ward and specialty, from ``assignment_by_staff``."""
    grouped: dict[int, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for member in assignment_by_staff.values():
        if rules.is_assigned(member):
            grouped[member["ward_id"]][member["specialty"]].append(
                {
                    "staff_id": member["staff_id"],
                    "role": member["role"],
                    "shift": member["shift"],
                    "since": member["since"],
                }
            )
    wards = []
    for ward_id in sorted(grouped):
        ward = services.wards().get(ward_id)
        specialties = {
            name: sorted(people, key=lambda p: p["staff_id"])
            for name, people in sorted(grouped[ward_id].items())
        }
        wards.append(
            {
                "ward_id": ward_id,
                "name": ward.name if ward else "",
                "staff_count": sum(len(p) for p in specialties.values()),
                "specialties": specialties,
            }
        )
    return self.json({"wards": wards, "staff_count": sum(w["staff_count"] for w in wards)})
